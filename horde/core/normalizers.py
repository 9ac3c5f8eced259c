"""Online feature normalizers that stay right over any run length.

Both normalizers follow the same shape: ``init(feature_dim) -> state``,
``update(state, x) -> (x_normalized, new_state)`` (statistics updated with ``x`` first, then
``x`` normalised) and ``normalize(state, x)`` (no update, for prediction).

Why the states look the way they do. JAX computes in float32, whose 24-bit significand loses
an increment smaller than half a unit in the last place of the running value:

* a float32 count stops at 2^24 = 16,777,216 (``2^24 + 1`` rounds back to ``2^24``), so the
  count is an exact integer in two uint32 words (``count`` and ``count_high``: ``2^64``
  observations before it wraps);
* a running mean of 1e9 observations moves by ``δ / 1e9`` per step, far below float32's
  resolution, and a running sum of squared deviations (``M2 ≈ n σ²``) grows until ``σ²``-sized
  increments vanish and overflows for large features. So the mean and the variance are held
  directly (not as sums) and each as a double-float pair ``hi + lo`` (two float32 words,
  about 48 significant bits), updated with an error-free two-sum (Knuth, TAOCP vol. 2,
  4.2.2; Dekker 1971): the rounding error of every increment is kept in ``lo`` instead of lost;
* the bias-corrected moving mean is held already divided by the total weight (not as
  ``Σ dᵏ oₖ`` and ``1 - dᵗ`` separately, whose quotient is not exactly ``o`` for a constant
  ``o``), so its first update sets it to exactly ``o`` and a constant feature never moves it:
  a constant feature normalises to exactly 0.

Range: a feature's values and spread may have any magnitude whose deviations from the mean
multiply to a finite float32 (standard deviation up to about 1e19) and whose variance is not
below float32's smallest normal number (about 1e-19 standard deviation, far below the default ``ε = 1e-8``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from horde.core.checks import as_float, as_instance
from horde.core.fusing import computed_together

__all__ = [
    "WelfordNormalizer",
    "EMANormalizer",
    "WelfordState",
    "EMAState",
    "Normalizer",
    "normalizer_from_config",
]


def _two_sum(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``s = fl(a + b)`` and its exact rounding error ``e``: ``a + b = s + e`` (Knuth's
    branch-free two-sum, valid for any order of magnitude of ``a`` and ``b``)."""
    s = a + b
    b_virtual = s - a
    e = (a - (s - b_virtual)) + (b - b_virtual)
    return s, e


def _accumulate(hi: jax.Array, lo: jax.Array, increment: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(hi, lo) + increment`` for a double-float pair, renormalised so that ``|lo|`` is at
    most half a unit in the last place of ``hi``."""
    s, e = _two_sum(hi, increment)
    return _two_sum(s, lo + e)


def _count_as_float(count: jax.Array, count_high: jax.Array) -> jax.Array:
    """The exact two-word count ``count_high · 2^32 + count`` as float32 (relative rounding
    at most 2^-24: only the weight ``1/n`` of an update is rounded, never the count)."""
    return count_high.astype(jnp.float32) * jnp.float32(2.0**32) + count.astype(jnp.float32)


class WelfordState(NamedTuple):
    """Running mean and population variance of every observation seen (Welford 1962), each a
    double-float pair ``hi + lo``, and the exact count.

    Attributes:
        mean: running mean (high word), shape ``(feature_dim,)``.
        var: running population variance ``(1/n) Σ (oₖ - μ)²`` (high word), ``(feature_dim,)``.
        count: number of observations seen, low uint32 word (the whole count below 2^32).
        mean_low: low word of the mean: the mean is ``mean + mean_low``.
        var_low: low word of the variance.
        count_high: high uint32 word of the count: ``n = count_high · 2^32 + count``.
    """

    mean: jax.Array
    var: jax.Array
    count: jax.Array  # type: ignore[assignment]  # a field named like tuple.count, read by users and checkpoints
    mean_low: jax.Array
    var_low: jax.Array
    count_high: jax.Array

    @property
    def m2(self) -> jax.Array:
        """Sum of squared deviations from the mean, ``n σ²`` (computed from the variance)."""
        return (self.var + self.var_low) * _count_as_float(self.count, self.count_high)


class EMAState(NamedTuple):
    """Bias-corrected exponential moving mean and variance, each a double-float pair.

    Attributes:
        mean: moving mean, already bias-corrected (high word), shape ``(feature_dim,)``.
        var: moving variance, already bias-corrected (high word), shape ``(feature_dim,)``.
        weight: ``1 - decay^t``, the total weight of the observations seen so far.
        mean_low: low word of the mean: the mean is ``mean + mean_low``.
        var_low: low word of the variance.
    """

    mean: jax.Array
    var: jax.Array
    weight: jax.Array
    mean_low: jax.Array
    var_low: jax.Array


def _normalized(mean, mean_low, var, var_low, epsilon: float, x: jax.Array) -> jax.Array:
    centred = (x - mean) - mean_low
    return centred / jnp.sqrt(jnp.maximum(var + var_low, 0.0) + epsilon)


def _moments_step(state_mean, state_mean_low, state_var, state_var_low, x, n):
    """One step of ``μ ← μ + (o - μ)/n``, ``σ² ← σ² + ((o - μ_old)(o - μ_new) - σ²)/n`` on
    double-float pairs; ``n`` is the count (Welford) or ``wₜ/(1-d)`` (bias-corrected EMA).

    Every scaling is a division, never a product that meets a sum: XLA may contract
    ``a*b + c`` into one fused multiply-add in one compiled program and not in another
    (it depends on how the surrounding program is fused), which would change the two-sum's
    ``lo`` word from program to program (e.g. ``HordeLearner.update_from_transition`` against
    the Daemon's packed step). A quotient is always rounded on its own. The product
    ``δ_old δ_new`` overflows only for a spread beyond the documented range (module docstring)."""
    delta = (x - state_mean) - state_mean_low
    mean, mean_low = _accumulate(state_mean, state_mean_low, delta / n)
    delta_new = (x - mean) - mean_low
    var_old = state_var + state_var_low
    spread = (delta_new * delta) / n
    var, var_low = _accumulate(state_var, state_var_low, spread - var_old / n)
    return mean, mean_low, var, var_low


@dataclasses.dataclass(frozen=True)
class WelfordNormalizer:
    """Welford running normalisation: ``(o - μ) / sqrt(σ² + ε)``, updated on every observation.

    ``μ`` and ``σ²`` are the mean and population variance of every observation seen so far,
    the current one included: ``μₙ = μₙ₋₁ + (o - μₙ₋₁)/n``,
    ``σ²ₙ = σ²ₙ₋₁ + ((o - μₙ₋₁)(o - μₙ) - σ²ₙ₋₁)/n`` (Welford 1962, the variance held directly
    rather than as a sum). The count is exact and the statistics are double-float pairs, so
    they stay right for any run length (see the module docstring).

    Args:
        epsilon: ``ε``, added to the variance.
    """

    epsilon: float = 1e-8

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", as_float("WelfordNormalizer: epsilon", self.epsilon, low=0, low_open=True))

    def init(self, feature_dim: int) -> WelfordState:
        zeros = jnp.zeros((feature_dim,), jnp.float32)
        word = jnp.zeros((), jnp.uint32)
        return WelfordState(mean=zeros, var=zeros, count=word, mean_low=zeros, var_low=zeros, count_high=word)

    def update(self, state: WelfordState, x: jax.Array) -> tuple[jax.Array, WelfordState]:
        count = state.count + jnp.uint32(1)
        count_high = state.count_high + (count == 0).astype(jnp.uint32)  # the low word wrapped
        n = _count_as_float(count, count_high)
        mean, mean_low, var, var_low = _moments_step(state.mean, state.mean_low, state.var, state.var_low, x, n)
        # One kernel on the CPU for the whole update (see computed_together), not one for each
        # shared intermediate of the two-sums.
        x_normalized = _normalized(mean, mean_low, var, var_low, self.epsilon, x)
        x_normalized, mean, mean_low, var, var_low = computed_together(x_normalized, mean, mean_low, var, var_low)
        new_state = WelfordState(
            mean=mean, var=var, count=count, mean_low=mean_low, var_low=var_low, count_high=count_high
        )
        return x_normalized, new_state

    def normalize(self, state: WelfordState, x: jax.Array) -> jax.Array:
        return _normalized(state.mean, state.mean_low, state.var, state.var_low, self.epsilon, x)

    def to_config(self) -> dict[str, Any]:
        return {"type": "WelfordNormalizer", "epsilon": self.epsilon}


@dataclasses.dataclass(frozen=True)
class EMANormalizer:
    """Exponential-moving normalisation, for non-stationary streams.

    The bias-corrected moving mean and variance of Adam-style bias correction: with total
    weight ``wₜ = 1 - dᵗ`` and rate ``αₜ = (1-d)/wₜ`` (``α₁ = 1``),
    ``μ ← μ + αₜ (o - μ)``, ``σ² ← σ² + αₜ ((o - μ_old)(o - μ_new) - σ²)``, which equal
    ``Σₖ dᵗ⁻ᵏ oₖ / wₜ`` and the matching variance; output ``(o - μ) / sqrt(σ² + ε)``. A
    constant feature normalises to exactly 0.

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
        zeros = jnp.zeros((feature_dim,), jnp.float32)
        return EMAState(mean=zeros, var=zeros, weight=jnp.zeros((), jnp.float32), mean_low=zeros, var_low=zeros)

    def update(self, state: EMAState, x: jax.Array) -> tuple[jax.Array, EMAState]:
        one_minus_d = jnp.float32(1.0 - self.decay)
        # d·w as w / (1/d): a quotient cannot be contracted with the sum (see _moments_step).
        decayed = jnp.zeros_like(state.weight) if self.decay == 0 else state.weight / jnp.float32(1.0 / self.decay)
        weight = decayed + one_minus_d
        # weight == 1 - d exactly at the first step, so the first n is exactly 1.
        n = weight / one_minus_d
        mean, mean_low, var, var_low = _moments_step(state.mean, state.mean_low, state.var, state.var_low, x, n)
        x_normalized = _normalized(mean, mean_low, var, var_low, self.epsilon, x)
        x_normalized, mean, mean_low, var, var_low = computed_together(x_normalized, mean, mean_low, var, var_low)
        new_state = EMAState(mean=mean, var=var, weight=weight, mean_low=mean_low, var_low=var_low)
        return x_normalized, new_state

    def normalize(self, state: EMAState, x: jax.Array) -> jax.Array:
        return _normalized(state.mean, state.mean_low, state.var, state.var_low, self.epsilon, x)

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
