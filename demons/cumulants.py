r"""Cumulants: the signal a demon accumulates.

A transition is :math:`(S_t, A_t, R_{t+1}, S_{t+1})`. A cumulant maps it to a
scalar :math:`c_{t+1}`, and a demon predicts

.. math::
    G_t = c_{t+1} + \gamma_{t+1} G_{t+1}.

Every builder returns a small frozen dataclass (hashable, comparable). Each
spec is callable on a single transition,
``spec(observation, action, reward, next_observation) -> float32 scalar``, which
is handy for debugging; :meth:`demons.DemonSet.evaluate` evaluates many specs
of the same kind in one vectorized operation instead.

Value checks (e.g. finiteness) run when the spec is attached to a
:class:`demons.Demon` so that error messages can name the demon; builders only
check argument types.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from demons import _common

__all__ = [
    "ObservationCumulant",
    "RewardCumulant",
    "ConstantCumulant",
    "ThresholdCumulant",
    "ActionIndicatorCumulant",
    "FunctionCumulant",
    "Cumulant",
    "CUMULANT_TYPES",
    "observation",
    "reward",
    "constant",
    "threshold",
    "action_indicator",
    "function",
]


@dataclasses.dataclass(frozen=True)
class ObservationCumulant:
    r"""Sensor value at the next step: :math:`c_{t+1} = S_{t+1}[\text{index}]`."""

    index: int
    kind: ClassVar[str] = "observation"

    def __post_init__(self):
        object.__setattr__(self, "index", _common.as_int(self.index, "cumulants.observation: index"))

    def check(self, owner: str = "this cumulant") -> None:
        _common.check_non_negative_int(self.index, "observation index", owner)

    def observation_indices(self) -> tuple[int, ...]:
        return (self.index,)

    def __call__(self, observation, action, reward, next_observation) -> jax.Array:
        return jnp.asarray(next_observation)[self.index].astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class RewardCumulant:
    r"""The environment reward: :math:`c_{t+1} = R_{t+1}`."""

    kind: ClassVar[str] = "reward"

    def check(self, owner: str = "this cumulant") -> None:
        pass

    def observation_indices(self) -> tuple[int, ...]:
        return ()

    def __call__(self, observation, action, reward, next_observation) -> jax.Array:
        return jnp.asarray(reward, jnp.float32)


@dataclasses.dataclass(frozen=True)
class ConstantCumulant:
    r"""A constant: :math:`c_{t+1} = v` (``v = 1`` counts steps)."""

    value: float
    kind: ClassVar[str] = "constant"

    def __post_init__(self):
        object.__setattr__(self, "value", _common.as_number(self.value, "cumulants.constant: value"))

    def check(self, owner: str = "this cumulant") -> None:
        _common.check_finite(self.value, "constant cumulant value", owner)

    def observation_indices(self) -> tuple[int, ...]:
        return ()

    def __call__(self, observation, action, reward, next_observation) -> jax.Array:
        return jnp.asarray(self.value, jnp.float32)


@dataclasses.dataclass(frozen=True)
class ThresholdCumulant:
    r"""Indicator of a threshold crossing on the next observation.

    .. math::
        y = |S_{t+1}[i]| \text{ if absolute else } S_{t+1}[i], \qquad
        c_{t+1} = \mathbb{1}[y > \theta] \text{ (above) or } \mathbb{1}[y < \theta].
    """

    index: int
    threshold: float
    above: bool = True
    absolute: bool = False
    kind: ClassVar[str] = "threshold"

    def __post_init__(self):
        object.__setattr__(self, "index", _common.as_int(self.index, "cumulants.threshold: index"))
        object.__setattr__(self, "threshold", _common.as_number(self.threshold, "cumulants.threshold: threshold"))
        object.__setattr__(self, "above", _common.as_bool(self.above, "cumulants.threshold: above"))
        object.__setattr__(self, "absolute", _common.as_bool(self.absolute, "cumulants.threshold: absolute"))

    def check(self, owner: str = "this cumulant") -> None:
        _common.check_non_negative_int(self.index, "threshold cumulant observation index", owner)
        _common.check_finite(self.threshold, "threshold cumulant threshold", owner)

    def observation_indices(self) -> tuple[int, ...]:
        return (self.index,)

    def __call__(self, observation, action, reward, next_observation) -> jax.Array:
        x = jnp.asarray(next_observation)[self.index].astype(jnp.float32)
        hit = _common.predicate(x, jnp.float32(self.threshold), self.above, self.absolute)
        return hit.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class ActionIndicatorCumulant:
    r"""Indicator of a discrete action: :math:`c_{t+1} = \mathbb{1}[A_t = a]`."""

    action: int
    kind: ClassVar[str] = "action_indicator"

    def __post_init__(self):
        object.__setattr__(self, "action", _common.as_int(self.action, "cumulants.action_indicator: action"))

    def check(self, owner: str = "this cumulant") -> None:
        _common.check_non_negative_int(self.action, "action_indicator action", owner)

    def observation_indices(self) -> tuple[int, ...]:
        return ()

    def __call__(self, observation, action, reward, next_observation) -> jax.Array:
        return (jnp.asarray(action) == self.action).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class FunctionCumulant:
    r"""Any JAX-traceable :math:`c_{t+1} = f(S_t, A_t, R_{t+1}, S_{t+1})`.

    ``fn`` must return a scalar. Demons that share one ``FunctionCumulant``
    (equal ``fn`` and ``name``) are evaluated with a single call to ``fn``.
    Function cumulants cannot be serialized.
    """

    fn: Callable[..., Any]
    name: str
    kind: ClassVar[str] = "function"

    def __post_init__(self):
        _common.check_callable(self.fn, "cumulants.function: fn")
        _common.as_name(self.name, "cumulants.function: name")

    def check(self, owner: str = "this cumulant") -> None:
        _common.check_non_empty(self.name, "cumulant function name", owner)

    def observation_indices(self) -> tuple[int, ...]:
        return ()

    def __call__(self, observation, action, reward, next_observation) -> jax.Array:
        out = jnp.asarray(self.fn(observation, action, reward, next_observation))
        if out.shape != ():
            raise ValueError(f"cumulant function {self.name!r} must return a scalar, got shape {out.shape}")
        return out.astype(jnp.float32)


Cumulant = (
    ObservationCumulant
    | RewardCumulant
    | ConstantCumulant
    | ThresholdCumulant
    | ActionIndicatorCumulant
    | FunctionCumulant
)
CUMULANT_TYPES = (
    ObservationCumulant,
    RewardCumulant,
    ConstantCumulant,
    ThresholdCumulant,
    ActionIndicatorCumulant,
    FunctionCumulant,
)


def observation(index: int) -> ObservationCumulant:
    r"""Cumulant :math:`c_{t+1} = S_{t+1}[\text{index}]` (the next sensor value).

    Args:
      index: component of the observation vector, ``0 <= index < observation_dim``.
    """
    return ObservationCumulant(index)


def reward() -> RewardCumulant:
    r"""Cumulant :math:`c_{t+1} = R_{t+1}`."""
    return RewardCumulant()


def constant(value: float) -> ConstantCumulant:
    r"""Cumulant :math:`c_{t+1} = \text{value}` (finite).

    With ``value = 1`` and a discount that terminates on an event, the demon
    predicts the (discounted) number of steps until the event.
    """
    return ConstantCumulant(value)


def threshold(index: int, threshold: float, above: bool = True, absolute: bool = False) -> ThresholdCumulant:
    r"""Cumulant :math:`c_{t+1} = \mathbb{1}[y \gtrless \theta]` on the next observation.

    Args:
      index: observation component :math:`i`.
      threshold: :math:`\theta` (finite).
      above: if True :math:`c = \mathbb{1}[y > \theta]`, else :math:`\mathbb{1}[y < \theta]`
        (both strict).
      absolute: if True :math:`y = |S_{t+1}[i]|`, else :math:`y = S_{t+1}[i]`.
    """
    return ThresholdCumulant(index, threshold, above, absolute)


def action_indicator(action: int) -> ActionIndicatorCumulant:
    r"""Cumulant :math:`c_{t+1} = \mathbb{1}[A_t = \text{action}]` (discrete actions)."""
    return ActionIndicatorCumulant(action)


def function(fn: Callable[..., Any], name: str) -> FunctionCumulant:
    r"""Cumulant from any JAX-traceable ``fn(observation, action, reward, next_observation)``.

    Args:
      fn: returns a scalar :math:`c_{t+1}`; must be traceable (no Python control
        flow on values). Called once per distinct spec per evaluation.
      name: a non-empty label used in error messages and reprs.
    """
    return FunctionCumulant(fn, name)
