"""Fixed features of the input that the heads see next to the trunk's output.

With ``head_features`` set, head ``i`` predicts ``v_i = w_i · [h, φ(x)] + b_i``: ``h`` the
trunk's output and ``φ(x)`` a fixed map of the trunk's (normalised) input ``x``. The trunk
still learns from ``h``'s part of the cotangent only; ``φ`` has no parameters.

``FourierFeatures`` gives ``φ(x) = [x, cos(x W / σ + b)]``:

* the input itself, a linear "skip" path: components that are nearly linear in the input (the
  next cart position ``x + τ ẋ``) are exact in it, where a trunk of LeakyReLUs learns them
  only approximately in a few thousand steps;
* ``n`` random Fourier features (Rahimi & Recht 2007, "Random features for large-scale kernel
  machines"), ``W ~ N(0, 1)`` of shape ``(input_dim, n)`` and ``b ~ U(0, 2π)``: a fixed
  smooth basis (an approximation of the Gaussian kernel of width ``σ``) whose linear
  combinations give the heads local corrections the trunk is slow to learn, as tile codes do
  for a linear learner.

With ``input_clip = c`` the Fourier part reads the input clipped to ``[-c, c]`` (the linear
part still reads it whole): beyond the data the Fourier features, fitted where the data are,
hold their value at the edge instead of oscillating, so a prediction far out extrapolates
along the linear part only. On normalised inputs, ``c = 3`` clips at three standard deviations.

With ``n_products = K`` the map also has ``K`` product features ``(x · u_k) cos(clip(x, -c, c)
· v_k / σ_p + b'_k)``, ``u_k ~ N(0, I / d)``, ``v_k ~ N(0, I)``: a random direction of the input
times a random Fourier feature, so that a linear combination can scale a component of the
input by a smooth function of the state (a cart's position times the chance that its episode
goes on: CartPole's and Acrobot's long-horizon observation demons), which sums of ``x`` and of
cosines alone do not represent. Their size is fixed, whatever the input's length.

``W`` and ``b`` come from NumPy's ``default_rng(seed)`` and are the same for every learner
state (they are part of the configuration, like a tile coder's offsets, not of the state).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from horde.core.checks import as_bool, as_float, as_instance, as_int

__all__ = ["FourierFeatures", "head_features_from_config"]


@functools.lru_cache(maxsize=64)
def _projection(seed: int, input_dim: int, n_features: int, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((input_dim, n_features)) / bandwidth).astype(np.float32)
    b = rng.uniform(0.0, 2.0 * np.pi, n_features).astype(np.float32)
    w.setflags(write=False)
    b.setflags(write=False)
    return w, b


@functools.lru_cache(maxsize=64)
def _product_projection(
    seed: int, input_dim: int, n_products: int, bandwidth: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng((seed, 1))
    u = (rng.standard_normal((input_dim, n_products)) / np.sqrt(input_dim)).astype(np.float32)
    v = (rng.standard_normal((input_dim, n_products)) / bandwidth).astype(np.float32)
    b = rng.uniform(0.0, 2.0 * np.pi, n_products).astype(np.float32)
    for a in (u, v, b):
        a.setflags(write=False)
    return u, v, b


# A feature index must fit XLA's int32 indexing.
_MAX_FEATURES = 2**31 - 1


def _allocated(features: FourierFeatures, setting: str, input_dim: int, draw: Any, n: int, bandwidth: float) -> Any:
    """``draw(seed, input_dim, n, bandwidth)``, with NumPy's allocation failure for a map too
    large for this machine named as the setting that asked for it."""
    try:
        return draw(features.seed, int(input_dim), n, bandwidth)
    except MemoryError:
        raise ValueError(
            f"FourierFeatures: {setting}={n} for inputs of length {int(input_dim)} needs "
            f"{4 * n * int(input_dim) / 2**30:,.1f} GiB of projection weights, more than this machine "
            "could allocate; ask for fewer features"
        ) from None


def _bandwidth(name: str, value: Any) -> float:
    """A bandwidth ``σ > 0`` whose ``1 / σ`` is finite in float32 (the projection's scale)."""
    sigma = as_float(name, value, low=0, low_open=True)
    if 1.0 / sigma > float(np.finfo(np.float32).max):
        raise ValueError(f"{name} must be > 0 with 1 / {name.split(': ')[-1]} finite in float32, got {sigma!r}")
    return sigma


@dataclasses.dataclass(frozen=True)
class FourierFeatures:
    """``φ(x) = [x, cos(clip(x, -c, c) W / σ + b), (x U) ⊙ cos(clip(x, -c, c) V / σ_p + b')]``:
    the input (when ``include_input``), ``n_features`` random Fourier features of it and
    ``n_products`` product features (module docstring).

    Args:
        n_features: ``n``, the number of random Fourier features (>= 0).
        bandwidth: ``σ`` (> 0), in units of the input: with normalised inputs, 1 makes each
            feature vary over about one standard deviation of the input.
        include_input: put ``x`` itself first (the linear skip path).
        seed: the NumPy seed of ``W`` and ``b``.
        input_clip: ``c`` (> 0), in units of the input: the cosines read ``x`` clipped to
            ``[-c, c]`` (the input part and the products' linear factor read it unclipped);
            ``None`` (the default): no clipping.
        n_products: ``K`` (>= 0), the number of product features (0: none).
        product_bandwidth: ``σ_p`` (> 0), the bandwidth of the products' cosines.

    Raises:
        ValueError: a setting out of range (naming it), or no features at all.
    """

    n_features: int = 256
    bandwidth: float = 1.0
    include_input: bool = True
    seed: int = 0
    input_clip: float | None = None
    n_products: int = 0
    product_bandwidth: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "n_features", as_int("FourierFeatures: n_features", self.n_features, low=0, high=_MAX_FEATURES)
        )
        object.__setattr__(self, "bandwidth", _bandwidth("FourierFeatures: bandwidth", self.bandwidth))
        object.__setattr__(self, "include_input", as_bool("FourierFeatures: include_input", self.include_input))
        object.__setattr__(self, "seed", as_int("FourierFeatures: seed", self.seed, low=0))
        if self.input_clip is not None:
            clip = as_float("FourierFeatures: input_clip", self.input_clip, low=0, low_open=True)
            if np.float32(clip) == 0:
                raise ValueError(f"FourierFeatures: input_clip must be > 0 in float32, got {clip!r}")
            object.__setattr__(self, "input_clip", clip)
        object.__setattr__(
            self, "n_products", as_int("FourierFeatures: n_products", self.n_products, low=0, high=_MAX_FEATURES)
        )
        object.__setattr__(
            self, "product_bandwidth", _bandwidth("FourierFeatures: product_bandwidth", self.product_bandwidth)
        )
        if self.n_features + self.n_products > _MAX_FEATURES:
            raise ValueError(
                f"FourierFeatures: n_features + n_products must be at most {_MAX_FEATURES} (a feature "
                f"index is an int32), got {self.n_features} + {self.n_products}"
            )
        if self.n_features == 0 and self.n_products == 0 and not self.include_input:
            raise ValueError(
                "FourierFeatures: n_features=0 and n_products=0 with include_input=False gives no features"
            )

    def size(self, input_dim: int) -> int:
        """The length of ``φ(x)`` for inputs of length ``input_dim``."""
        return (int(input_dim) if self.include_input else 0) + self.n_features + self.n_products

    def projection(self, input_dim: int) -> tuple[np.ndarray, np.ndarray]:
        """``(W / σ, b)``, shapes ``(input_dim, n_features)`` and ``(n_features,)``, float32
        (read-only; the same arrays on every call)."""
        return _allocated(self, "n_features", input_dim, _projection, self.n_features, self.bandwidth)

    def product_projection(self, input_dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(U, V / σ_p, b')`` of the product features, shapes ``(input_dim, n_products)``
        twice and ``(n_products,)``, float32 (read-only; from ``default_rng((seed, 1))``)."""
        return _allocated(self, "n_products", input_dim, _product_projection, self.n_products, self.product_bandwidth)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``φ(x)`` for ``x`` of shape ``(..., input_dim)``: shape ``(..., size(input_dim))``."""
        parts = [x] if self.include_input else []
        xc = x if self.input_clip is None else jnp.clip(x, -self.input_clip, self.input_clip)
        if self.n_features:
            w, b = self.projection(x.shape[-1])
            parts.append(jnp.cos(xc @ w + b))
        if self.n_products:
            u, v, c = self.product_projection(x.shape[-1])
            parts.append((x @ u) * jnp.cos(xc @ v + c))
        return jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    def to_config(self) -> dict[str, Any]:
        return {
            "type": "FourierFeatures",
            "n_features": self.n_features,
            "bandwidth": self.bandwidth,
            "include_input": self.include_input,
            "seed": self.seed,
            "input_clip": self.input_clip,
            "n_products": self.n_products,
            "product_bandwidth": self.product_bandwidth,
        }


def head_features_from_config(config: dict[str, Any] | None) -> FourierFeatures | None:
    """Rebuilds head features from their ``to_config()`` dict (``None`` passes through).

    Raises:
        TypeError: ``config`` is not a dict.
        ValueError: its ``type`` is not ``"FourierFeatures"``, or a setting is out of range.
    """
    if config is None:
        return None
    config = dict(as_instance("head_features config", config, dict, example="{'type': 'FourierFeatures'}"))
    kind = config.pop("type", None)
    if kind != "FourierFeatures":
        raise ValueError(f"head_features config 'type' must be 'FourierFeatures', got {kind!r}")
    known = [f.name for f in dataclasses.fields(FourierFeatures)]
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ValueError(f"FourierFeatures config: unknown keys {unknown}; the keys are {known} (and 'type')")
    return FourierFeatures(**config)
