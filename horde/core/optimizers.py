"""Per-weight step-size optimizers: LMS, IDBD and Autostep.

Each optimizer is an immutable configuration with two pure functions, in the shape of optax's
transformations:

* ``init_for_shape(shape) -> state``: the optimizer state for one parameter array;
* ``update_from_gradient(state, trace, error=None) -> (step, new_state)``.

The learner calls ``update_from_gradient`` with an eligibility trace ``z`` (the gradient of the
prediction, accumulated) and the TD/prediction error ``δ``. The returned ``step`` is the
*per-unit-error* step: the learner applies ``w ← w + δ · step``. When the error has already been
folded into the trace (the shared trunk, whose trace is the error-weighted gradient), the
learner passes ``error=None``; the optimizer then treats the error as 1 and the learner applies
``w ← w + step``.

Optimizers act elementwise on one parameter array, except Autostep's overshoot bound, which
sums over a whole unit: ``update_group`` steps the arrays of one unit together (a head's
weights and bias; a trunk layer's weights and biases). The multi-head learner applies the head
optimizer with ``jax.vmap`` over the head axis, so every head is bounded on its own.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax.numpy as jnp

from horde.core.checks import as_float, as_instance

Array = jnp.ndarray

__all__ = [
    "LMS",
    "IDBD",
    "Autostep",
    "LMSState",
    "IDBDState",
    "AutostepState",
    "Optimizer",
    "optimizer_from_config",
    "update_group",
]


def _check_positive(config: Any, name: str, *, allow_zero: bool = False) -> None:
    """Checks the field ``name`` of a frozen config and stores it as a Python float."""
    value = as_float(f"{type(config).__name__}: {name}", getattr(config, name), low=0, low_open=not allow_zero)
    object.__setattr__(config, name, value)


class LMSState(NamedTuple):
    """LMS keeps no per-weight state; the step size is part of the configuration."""


class IDBDState(NamedTuple):
    """IDBD state for one parameter array.

    Attributes:
        log_step_sizes: ``β``, with per-weight step size ``α = exp(β)``.
        traces: ``h``, the decaying trace of recent weight changes per unit step size.
    """

    log_step_sizes: Array
    traces: Array


class AutostepState(NamedTuple):
    """Autostep state for one parameter array.

    Attributes:
        step_sizes: ``α``, per-weight step sizes.
        traces: ``h``, as in IDBD.
        normalizers: ``v``, running maxima of ``|δ z h|`` used to normalise the meta step.
    """

    step_sizes: Array
    traces: Array
    normalizers: Array


@dataclasses.dataclass(frozen=True)
class LMS:
    """Least mean squares with a fixed step size: ``step = α z``.

    Args:
        step_size: ``α``, the step size (>= 0).
    """

    step_size: float = 0.01

    def __post_init__(self) -> None:
        _check_positive(self, "step_size", allow_zero=True)

    def init_for_shape(self, shape: tuple[int, ...]) -> LMSState:
        """LMS has no state; ``shape`` is accepted for interface symmetry."""
        del shape
        return LMSState()

    def update_from_gradient(self, state: LMSState, trace: Array, error: Array | None = None) -> tuple[Array, LMSState]:
        """Returns ``(α z, state)``; ``error`` is not needed by LMS."""
        del error
        return self.step_size * trace, state

    def step_sizes(self, state: LMSState, trace: Array) -> Array:
        """Per-weight step sizes, broadcast to the shape of ``trace``."""
        del state
        return jnp.full_like(trace, self.step_size)

    def to_config(self) -> dict[str, Any]:
        return {"type": "LMS", "step_size": self.step_size}


@dataclasses.dataclass(frozen=True)
class IDBD:
    """Incremental delta-bar-delta (Sutton 1992), per-weight step sizes.

    With trace ``z`` and error ``δ``::

        β ← β + θ δ z h
        α = exp(β)
        step = α z
        h ← h · max(0, 1 - α z²) + α δ z

    Args:
        initial_step_size: ``α₀``; every ``β`` starts at ``ln α₀``.
        meta_step_size: ``θ``, the step size of the step sizes.
    """

    initial_step_size: float = 0.01
    meta_step_size: float = 0.01

    def __post_init__(self) -> None:
        _check_positive(self, "initial_step_size")
        _check_positive(self, "meta_step_size", allow_zero=True)

    def init_for_shape(self, shape: tuple[int, ...]) -> IDBDState:
        return IDBDState(
            log_step_sizes=jnp.full(shape, math.log(self.initial_step_size), jnp.float32),
            traces=jnp.zeros(shape, jnp.float32),
        )

    def update_from_gradient(
        self, state: IDBDState, trace: Array, error: Array | None = None
    ) -> tuple[Array, IDBDState]:
        delta = 1.0 if error is None else error
        z = trace
        beta = state.log_step_sizes + self.meta_step_size * delta * z * state.traces
        alpha = jnp.exp(beta)
        step = alpha * z
        h = state.traces * jnp.maximum(0.0, 1.0 - alpha * z * z) + alpha * delta * z
        return step, IDBDState(log_step_sizes=beta, traces=h)

    def step_sizes(self, state: IDBDState, trace: Array) -> Array:
        del trace
        return jnp.exp(state.log_step_sizes)

    def to_config(self) -> dict[str, Any]:
        return {
            "type": "IDBD",
            "initial_step_size": self.initial_step_size,
            "meta_step_size": self.meta_step_size,
        }


@dataclasses.dataclass(frozen=True)
class Autostep:
    """Autostep (Mahmood, Sutton, Degris & Pilarski 2012): IDBD with a normalised meta step
    and an overshoot bound.

    With trace ``z`` and error ``δ``, elementwise except the sum::

        v ← max(|δ z h|, v + (1/τ) α z² (|δ z h| - v))
        α ← α · exp(μ δ z h / v)          (where v > 0)
        α ← α / max(Σ α z², 1)             (sum over the parameter array)
        step = α z
        h ← h (1 - α z²) + α δ z

    Args:
        initial_step_size: ``α₀``.
        meta_step_size: ``μ``.
        tau: ``τ``, the time constant of the normaliser ``v``.
    """

    initial_step_size: float = 0.01
    meta_step_size: float = 0.01
    tau: float = 10000.0

    def __post_init__(self) -> None:
        _check_positive(self, "initial_step_size")
        _check_positive(self, "meta_step_size", allow_zero=True)
        _check_positive(self, "tau")

    def init_for_shape(self, shape: tuple[int, ...]) -> AutostepState:
        return AutostepState(
            step_sizes=jnp.full(shape, self.initial_step_size, jnp.float32),
            traces=jnp.zeros(shape, jnp.float32),
            normalizers=jnp.zeros(shape, jnp.float32),
        )

    def update_from_gradient(
        self, state: AutostepState, trace: Array, error: Array | None = None
    ) -> tuple[Array, AutostepState]:
        """One array as its own unit (see ``update_group``)."""
        (step,), (new_state,) = self.update_group((state,), (trace,), error)
        return step, new_state

    def update_group(
        self, states: tuple[AutostepState, ...], traces: tuple[Array, ...], error: Array | None = None
    ) -> tuple[tuple[Array, ...], tuple[AutostepState, ...]]:
        """Steps the arrays of one unit together: the overshoot bound ``Σ α z²`` sums over all
        of them (e.g. a head's weights and its bias), as in Mahmood et al. (2012)."""
        delta = 1.0 if error is None else error
        metas = []
        for state, z in zip(states, traces):
            alpha, h, v = state.step_sizes, state.traces, state.normalizers
            dzh = delta * z * h
            abs_dzh = jnp.abs(dzh)
            v = jnp.maximum(abs_dzh, v + (1.0 / self.tau) * alpha * z * z * (abs_dzh - v))
            safe_v = jnp.where(v > 0, v, 1.0)
            alpha = jnp.where(v > 0, alpha * jnp.exp(self.meta_step_size * dzh / safe_v), alpha)
            metas.append((alpha, h, v))
        bound = jnp.maximum(sum(jnp.sum(a * z * z) for (a, _, _), z in zip(metas, traces)), 1.0)
        steps, new_states = [], []
        for (alpha, h, v), z in zip(metas, traces):
            alpha = alpha / bound
            steps.append(alpha * z)
            new_states.append(
                AutostepState(step_sizes=alpha, traces=h * (1.0 - alpha * z * z) + alpha * delta * z, normalizers=v)
            )
        return tuple(steps), tuple(new_states)

    def step_sizes(self, state: AutostepState, trace: Array) -> Array:
        del trace
        return state.step_sizes

    def to_config(self) -> dict[str, Any]:
        return {
            "type": "Autostep",
            "initial_step_size": self.initial_step_size,
            "meta_step_size": self.meta_step_size,
            "tau": self.tau,
        }


Optimizer = LMS | IDBD | Autostep

_OPTIMIZERS = {"LMS": LMS, "IDBD": IDBD, "Autostep": Autostep}


def update_group(
    optimizer: Any, states: tuple[Any, ...], traces: tuple[Array, ...], error: Array | None = None
) -> tuple[tuple[Array, ...], tuple[Any, ...]]:
    """Steps the parameter arrays of one unit: with the optimizer's ``update_group`` when it has
    one (Autostep), else array by array."""
    if hasattr(optimizer, "update_group"):
        return optimizer.update_group(tuple(states), tuple(traces), error)
    steps, new_states = [], []
    for state, z in zip(states, traces):
        step, new_state = optimizer.update_from_gradient(state, z, error)
        steps.append(step)
        new_states.append(new_state)
    return tuple(steps), tuple(new_states)


def optimizer_from_config(config: dict[str, Any] | None) -> Optimizer | None:
    """Rebuilds an optimizer from its ``to_config()`` dict (``None`` passes through)."""
    if config is None:
        return None
    config = dict(as_instance("optimizer config", config, dict, example="{'type': 'LMS', 'step_size': 0.01}"))
    kind = config.pop("type", None)
    if kind not in _OPTIMIZERS:
        raise ValueError(f"optimizer config 'type' must be one of {sorted(_OPTIMIZERS)}, got {kind!r}")
    return _OPTIMIZERS[kind](**config)
