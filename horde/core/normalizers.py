"""Online feature normalizers.

Both normalizers follow the same shape: ``init(feature_dim) -> state``,
``update(state, x) -> (x_normalized, new_state)`` (statistics updated with ``x`` first, then
``x`` normalised) and ``normalize(state, x)`` (no update, for prediction).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from horde.core.checks import as_float, as_instance

__all__ = [
    "WelfordNormalizer",
    "EMANormalizer",
    "WelfordState",
    "EMAState",
    "Normalizer",
    "normalizer_from_config",
]


class WelfordState(NamedTuple):
    """Running mean and sum of squared deviations (Welford 1962).

    Attributes:
        mean: running mean, shape ``(feature_dim,)``.
        m2: running sum of squared deviations from the mean, shape ``(feature_dim,)``.
        count: number of observations seen (float32 scalar).
    """

    mean: jax.Array
    m2: jax.Array
    count: jax.Array  # type: ignore[assignment]  # a field named like tuple.count, read by users and checkpoints


class EMAState(NamedTuple):
    """Exponential moving mean and variance with bias correction.

    Attributes:
        mean: biased moving mean, shape ``(feature_dim,)``.
        var: biased moving variance, shape ``(feature_dim,)``.
        weight: ``1 - decay^t``, the total weight of the observations seen so far.
    """

    mean: jax.Array
    var: jax.Array
    weight: jax.Array


@dataclasses.dataclass(frozen=True)
class WelfordNormalizer:
    """Welford running normalisation: ``(o - μ) / sqrt(σ² + ε)``, updated on every observation.

    ``μ`` and ``σ²`` are the mean and population variance of every observation seen so far,
    the current one included.

    Args:
        epsilon: ``ε``, added to the variance.
    """

    epsilon: float = 1e-8

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", as_float("WelfordNormalizer: epsilon", self.epsilon, low=0, low_open=True))

    def init(self, feature_dim: int) -> WelfordState:
        return WelfordState(
            mean=jnp.zeros((feature_dim,), jnp.float32),
            m2=jnp.zeros((feature_dim,), jnp.float32),
            count=jnp.zeros((), jnp.float32),
        )

    def update(self, state: WelfordState, x: jax.Array) -> tuple[jax.Array, WelfordState]:
        count = state.count + 1.0
        delta = x - state.mean
        mean = state.mean + delta / count
        m2 = state.m2 + delta * (x - mean)
        new_state = WelfordState(mean=mean, m2=m2, count=count)
        return self.normalize(new_state, x), new_state

    def normalize(self, state: WelfordState, x: jax.Array) -> jax.Array:
        var = state.m2 / jnp.maximum(state.count, 1.0)
        return (x - state.mean) / jnp.sqrt(var + self.epsilon)

    def to_config(self) -> dict[str, Any]:
        return {"type": "WelfordNormalizer", "epsilon": self.epsilon}


@dataclasses.dataclass(frozen=True)
class EMANormalizer:
    """Exponential-moving normalisation, for non-stationary streams.

    ``μ ← d μ + (1-d) o``, ``σ² ← d σ² + (1-d)(o - μ_old)(o - μ_new)``, both divided by the
    total weight ``1 - dᵗ`` so that early estimates are unbiased; output
    ``(o - μ) / sqrt(σ² + ε)``.

    Args:
        decay: ``d`` in [0, 1); the effective window is about ``1 / (1 - d)`` observations.
        epsilon: ``ε``, added to the variance.
    """

    decay: float = 0.999
    epsilon: float = 1e-8

    def __post_init__(self) -> None:
        object.__setattr__(self, "decay", as_float("EMANormalizer: decay", self.decay, low=0, high=1, high_open=True))
        object.__setattr__(self, "epsilon", as_float("EMANormalizer: epsilon", self.epsilon, low=0, low_open=True))

    def init(self, feature_dim: int) -> EMAState:
        return EMAState(
            mean=jnp.zeros((feature_dim,), jnp.float32),
            var=jnp.zeros((feature_dim,), jnp.float32),
            weight=jnp.zeros((), jnp.float32),
        )

    def update(self, state: EMAState, x: jax.Array) -> tuple[jax.Array, EMAState]:
        d = self.decay
        weight = d * state.weight + (1.0 - d)
        old_mean = state.mean / jnp.maximum(state.weight, 1e-30)
        old_mean = jnp.where(state.weight > 0, old_mean, x)
        mean = d * state.mean + (1.0 - d) * x
        new_mean = mean / weight
        var = d * state.var + (1.0 - d) * (x - old_mean) * (x - new_mean)
        new_state = EMAState(mean=mean, var=var, weight=weight)
        return self.normalize(new_state, x), new_state

    def normalize(self, state: EMAState, x: jax.Array) -> jax.Array:
        w = jnp.maximum(state.weight, 1e-30)
        mean = jnp.where(state.weight > 0, state.mean / w, 0.0)
        var = jnp.where(state.weight > 0, jnp.maximum(state.var / w, 0.0), 0.0)
        return (x - mean) / jnp.sqrt(var + self.epsilon)

    def to_config(self) -> dict[str, Any]:
        return {"type": "EMANormalizer", "decay": self.decay, "epsilon": self.epsilon}


Normalizer = WelfordNormalizer | EMANormalizer

_NORMALIZERS = {"WelfordNormalizer": WelfordNormalizer, "EMANormalizer": EMANormalizer}


def normalizer_from_config(config: dict[str, Any] | None) -> Normalizer | None:
    """Rebuilds a normalizer from its ``to_config()`` dict (``None`` passes through)."""
    if config is None:
        return None
    config = dict(as_instance("normalizer config", config, dict, example="{'type': 'WelfordNormalizer'}"))
    kind = config.pop("type", None)
    if kind not in _NORMALIZERS:
        raise ValueError(f"normalizer config 'type' must be one of {sorted(_NORMALIZERS)}, got {kind!r}")
    return _NORMALIZERS[kind](**config)
