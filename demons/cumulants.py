r"""Cumulants: the signal a demon accumulates.

A transition is :math:`(S_t, A_t, R_{t+1}, S_{t+1})`. A cumulant maps it to a
scalar :math:`c_{t+1}`, and a demon predicts

.. math::
    G_t = c_{t+1} + \gamma_{t+1} G_{t+1}.

Every builder returns a small frozen dataclass (hashable, comparable), an instance of a
*kind*: a subclass of :class:`Cumulant` that owns its scalar form
``spec(observation, action, reward, next_observation) -> float32 scalar`` (handy for
debugging), its batched form (what :meth:`demons.DemonSet.evaluate` runs: all specs of the
kind in one vectorized operation) and its plain-data form. A new kind is one such class,
anywhere (see :mod:`demons.kinds`).

Value checks (e.g. finiteness) run when the spec is attached to a
:class:`demons.Demon` so that error messages can name the demon; builders only
check argument types.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from demons import checks
from demons.kinds import (
    Batch,
    Kind,
    Transition,
    next_observations,
    per_distinct_spec,
    predicate,
    scalar_float32,
    threshold_crossings,
)

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


class Cumulant(Kind):
    r"""Base of every cumulant kind: :math:`c_{t+1}` from :math:`(S_t, A_t, R_{t+1}, S_{t+1})`.

    A subclass that sets ``kind`` is registered (see :mod:`demons.kinds` for the contract).
    Its scalar form is ``spec(observation, action, reward, next_observation) -> float32
    scalar``; its batched form computes :math:`c_{t+1}` for every spec of the kind.
    """

    family: ClassVar[str] = "cumulant"


@dataclasses.dataclass(frozen=True)
class ObservationCumulant(Cumulant):
    r"""Sensor value at the next step: :math:`c_{t+1} = S_{t+1}[\text{index}]`."""

    index: int
    kind: ClassVar[str] = "observation"

    def __post_init__(self):
        object.__setattr__(self, "index", checks.as_int(self.index, "cumulants.observation: index"))

    def check(self, owner: str = "this cumulant") -> None:
        checks.check_non_negative_int(self.index, "observation index", owner)

    def observation_indices(self) -> tuple[int, ...]:
        return (self.index,)

    def __call__(self, observation, action, reward, next_observation) -> jax.Array:
        return jnp.asarray(next_observation)[self.index].astype(jnp.float32)

    @classmethod
    def batched(cls, positions: np.ndarray, specs: Sequence[ObservationCumulant]) -> list[Batch]:
        """One gather with the index vector."""
        idx = np.asarray([s.index for s in specs], np.int32)
        return [Batch(positions, lambda t: next_observations(t, idx))]


@dataclasses.dataclass(frozen=True)
class RewardCumulant(Cumulant):
    r"""The environment reward: :math:`c_{t+1} = R_{t+1}`."""

    kind: ClassVar[str] = "reward"

    def __call__(self, observation, action, reward, next_observation) -> jax.Array:
        return jnp.asarray(reward, jnp.float32)

    @classmethod
    def batched(cls, positions: np.ndarray, specs: Sequence[RewardCumulant]) -> list[Batch]:
        """The reward, broadcast."""
        n = len(specs)
        return [Batch(positions, lambda t: jnp.broadcast_to(t.reward, (n,)))]


@dataclasses.dataclass(frozen=True)
class ConstantCumulant(Cumulant):
    r"""A constant: :math:`c_{t+1} = v` (``v = 1`` counts steps)."""

    value: float
    kind: ClassVar[str] = "constant"

    def __post_init__(self):
        object.__setattr__(self, "value", checks.as_number(self.value, "cumulants.constant: value"))

    def check(self, owner: str = "this cumulant") -> None:
        checks.check_finite(self.value, "constant cumulant value", owner)

    def __call__(self, observation, action, reward, next_observation) -> jax.Array:
        return jnp.asarray(self.value, jnp.float32)

    @classmethod
    def batched(cls, positions: np.ndarray, specs: Sequence[ConstantCumulant]) -> list[Batch]:
        """One constant array."""
        return [Batch.constant(positions, [s.value for s in specs])]


@dataclasses.dataclass(frozen=True)
class ThresholdCumulant(Cumulant):
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
        object.__setattr__(self, "index", checks.as_int(self.index, "cumulants.threshold: index"))
        object.__setattr__(self, "threshold", checks.as_number(self.threshold, "cumulants.threshold: threshold"))
        object.__setattr__(self, "above", checks.as_bool(self.above, "cumulants.threshold: above"))
        object.__setattr__(self, "absolute", checks.as_bool(self.absolute, "cumulants.threshold: absolute"))

    def check(self, owner: str = "this cumulant") -> None:
        checks.check_non_negative_int(self.index, "threshold cumulant observation index", owner)
        checks.check_finite(self.threshold, "threshold cumulant threshold", owner)

    def observation_indices(self) -> tuple[int, ...]:
        return (self.index,)

    def __call__(self, observation, action, reward, next_observation) -> jax.Array:
        x = jnp.asarray(next_observation)[self.index].astype(jnp.float32)
        hit = predicate(x, jnp.float32(self.threshold), self.above, self.absolute)
        return hit.astype(jnp.float32)

    @classmethod
    def batched(cls, positions: np.ndarray, specs: Sequence[ThresholdCumulant]) -> list[Batch]:
        """One gather and one comparison."""
        hit = threshold_crossings(specs)
        return [Batch(positions, lambda t: hit(t).astype(jnp.float32))]


@dataclasses.dataclass(frozen=True)
class ActionIndicatorCumulant(Cumulant):
    r"""Indicator of a discrete action: :math:`c_{t+1} = \mathbb{1}[A_t = a]`."""

    action: int
    kind: ClassVar[str] = "action_indicator"

    def __post_init__(self):
        object.__setattr__(self, "action", checks.as_int(self.action, "cumulants.action_indicator: action"))

    def check(self, owner: str = "this cumulant") -> None:
        checks.check_non_negative_int(self.action, "action_indicator action", owner)

    def __call__(self, observation, action, reward, next_observation) -> jax.Array:
        return (jnp.asarray(action) == self.action).astype(jnp.float32)

    def check_n_actions(self, n_actions: int, owner: str) -> None:
        if not 0 <= self.action < n_actions:
            raise ValueError(
                f"action_indicator cumulant of {owner} has action {self.action}, out of range for "
                f"n_actions {n_actions} (expected 0 <= action < {n_actions})"
            )

    @classmethod
    def batched(cls, positions: np.ndarray, specs: Sequence[ActionIndicatorCumulant]) -> list[Batch]:
        """One comparison of the action with the action vector."""
        acts = np.asarray([s.action for s in specs], np.int32)
        return [Batch(positions, lambda t: (t.action == acts).astype(jnp.float32))]


@dataclasses.dataclass(frozen=True)
class FunctionCumulant(Cumulant):
    r"""Any JAX-traceable :math:`c_{t+1} = f(S_t, A_t, R_{t+1}, S_{t+1})`.

    ``fn`` must return a scalar. Demons that share one ``FunctionCumulant``
    (equal ``fn`` and ``name``) are evaluated with a single call to ``fn``.
    Function cumulants cannot be serialized.
    """

    fn: Callable[..., Any]
    name: str
    kind: ClassVar[str] = "function"
    plain_data: ClassVar[bool] = False

    def __post_init__(self):
        checks.check_callable(self.fn, "cumulants.function: fn")
        checks.as_name(self.name, "cumulants.function: name")

    def check(self, owner: str = "this cumulant") -> None:
        checks.check_non_empty(self.name, "cumulant function name", owner)

    def __call__(self, observation, action, reward, next_observation) -> jax.Array:
        out = self.fn(observation, action, reward, next_observation)
        return scalar_float32(out, f"cumulant function {self.name!r}")

    @classmethod
    def batched(cls, positions: np.ndarray, specs: Sequence[FunctionCumulant]) -> list[Batch]:
        """One call per distinct function, broadcast to the demons that share it."""
        return per_distinct_spec(positions, specs, _call_on)


def _call_on(spec: Cumulant, t: Transition) -> jax.Array:
    return spec(t.observation, t.action, t.reward, t.next_observation)


CUMULANT_TYPES = (
    ObservationCumulant,
    RewardCumulant,
    ConstantCumulant,
    ThresholdCumulant,
    ActionIndicatorCumulant,
    FunctionCumulant,
)
"""The built-in cumulant kinds (any registered subclass of :class:`Cumulant` is a cumulant)."""


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
