r"""Target policies over discrete actions, for off-policy demons.

An off-policy demon asks what its return would be if actions were chosen by a
target policy :math:`\pi` while experience comes from a behaviour policy
:math:`\mu`. The learner weights updates with the importance-sampling ratio

.. math::
    \rho_t = \frac{\pi(A_t \mid S_t)}{\mu(A_t \mid S_t)}.

Each builder returns an instance of a *kind*, a subclass of :class:`Policy` that owns its
scalar form (``spec(observation)``, the float32 probability vector of shape
``(n_actions,)``), its batched form (:math:`\rho_t` for every spec of the kind in one
vectorized operation) and its plain-data form (see :mod:`demons.kinds`). Value checks (non-negative
probabilities summing to 1) run when the spec is attached to a
:class:`demons.Demon`, so that error messages name the demon.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from demons import checks
from demons.kinds import Batch, Kind, Transition, per_distinct_spec

__all__ = [
    "PROBABILITY_TOLERANCE",
    "FixedPolicy",
    "FunctionPolicy",
    "Policy",
    "POLICY_TYPES",
    "ratio",
    "fixed",
    "deterministic",
    "uniform",
    "function",
]

PROBABILITY_TOLERANCE = 1e-6
"""Allowed absolute deviation of a fixed policy's probability sum from 1."""


class Policy(Kind):
    r"""Base of every target-policy kind: :math:`\pi(\cdot \mid S_t)` over ``n_actions`` actions.

    A subclass that sets ``kind`` is registered (see :mod:`demons.kinds` for the contract) and
    has an ``n_actions`` attribute. Its scalar form is ``spec(observation) -> float32
    (n_actions,)``; its batched form computes the importance ratio
    :math:`\rho_t = \pi(A_t \mid S_t) / \mu(A_t \mid S_t)` (see :func:`ratio`) for every spec of
    the kind.
    """

    family: ClassVar[str] = "target_policy"
    n_actions: int

    def check_n_actions(self, n_actions: int, owner: str) -> None:
        if self.n_actions != n_actions:
            raise ValueError(f"target policy of {owner} has {self.n_actions} actions, expected n_actions={n_actions}")


def ratio(t: Transition, probabilities: jax.Array) -> jax.Array:
    r"""Importance ratio :math:`\rho_t = \pi(A_t \mid S_t) / \mu(A_t \mid S_t)` from ``probabilities``.

    Args:
      t: the transition; ``t.action`` is an integer scalar in ``[0, n_actions)`` (clamped
        otherwise).
      probabilities: ``(n_actions, ...)``, :math:`\pi(a \mid S_t)` along the leading axis.

    Returns:
      ``probabilities[A_t] / max(t.behaviour_prob, t.min_behaviour_prob)``, shape ``(...)``.
    """
    pi = lax.dynamic_index_in_dim(probabilities, t.action.astype(jnp.int32), 0, keepdims=False)
    return pi / jnp.maximum(t.behaviour_prob, t.min_behaviour_prob)


@dataclasses.dataclass(frozen=True)
class FixedPolicy(Policy):
    r"""A state-independent policy :math:`\pi(a \mid s) = p_a`.

    ``probabilities`` is stored as a tuple of floats (hashable); "always right"
    in a two-action task is ``(0.0, 1.0)``.
    """

    probabilities: tuple[float, ...]
    kind: ClassVar[str] = "fixed"

    def __post_init__(self):
        probs = self.probabilities
        if isinstance(probs, (str, bytes)) or not hasattr(probs, "__iter__"):
            raise TypeError(f"policies.fixed: probabilities must be a sequence of numbers, got {probs!r}")
        probs = tuple(checks.as_float(p, f"policies.fixed: probabilities[{i}]") for i, p in enumerate(probs))
        object.__setattr__(self, "probabilities", probs)

    # The contract's ``n_actions`` attribute, derived here (a property cannot be declared on the
    # base: a dataclass field of the same name would take it as its default).
    @property
    def n_actions(self) -> int:  # type: ignore[override]
        return len(self.probabilities)

    def check(self, owner: str = "this policy") -> None:
        probs = self.probabilities
        if not probs:
            raise ValueError(f"target policy probabilities for {owner} must not be empty, got []")
        if not all(math.isfinite(p) and p >= 0.0 for p in probs):
            raise ValueError(
                f"target policy probabilities for {owner} must be finite and non-negative, got {list(probs)}"
            )
        total = math.fsum(probs)
        if abs(total - 1.0) > PROBABILITY_TOLERANCE:
            raise ValueError(
                f"target policy probabilities for {owner} must sum to 1 "
                f"(tolerance {PROBABILITY_TOLERANCE:g}), got {list(probs)} (sum {total:g})"
            )

    def __call__(self, observation) -> jax.Array:
        return jnp.asarray(self.probabilities, jnp.float32)

    @classmethod
    def batched(cls, positions: np.ndarray, specs: Sequence[FixedPolicy]) -> list[Batch]:
        """One row of an ``(n_actions, k)`` probability table."""
        # Row a holds pi_i(a) for every spec i: the action taken picks one row.
        table = np.asarray([s.probabilities for s in specs], np.float32).T.copy()
        return [Batch(positions, lambda t: ratio(t, jnp.asarray(table)))]


@dataclasses.dataclass(frozen=True)
class FunctionPolicy(Policy):
    r"""Any JAX-traceable :math:`\pi(\cdot \mid s) = f(s)`, a vector of ``n_actions`` probabilities.

    The output cannot be validated on traced values (non-negativity, sum to 1):
    it is the caller's responsibility. Its shape is checked at trace time.
    """

    fn: Callable[[Any], Any]
    name: str
    n_actions: int
    kind: ClassVar[str] = "function"
    plain_data: ClassVar[bool] = False

    def __post_init__(self):
        checks.check_callable(self.fn, "policies.function: fn")
        checks.as_name(self.name, "policies.function: name")
        object.__setattr__(self, "n_actions", checks.as_int(self.n_actions, "policies.function: n_actions"))

    def check(self, owner: str = "this policy") -> None:
        checks.check_non_empty(self.name, "policy function name", owner)
        if self.n_actions < 1:
            raise ValueError(f"n_actions for {owner} must be >= 1, got {self.n_actions!r}")

    def __call__(self, observation) -> jax.Array:
        out = jnp.asarray(self.fn(observation))
        if out.shape != (self.n_actions,):
            raise ValueError(f"policy function {self.name!r} must return shape ({self.n_actions},), got {out.shape}")
        return out.astype(jnp.float32)

    @classmethod
    def batched(cls, positions: np.ndarray, specs: Sequence[FunctionPolicy]) -> list[Batch]:
        """One call per distinct function, broadcast to the demons that share it."""
        return per_distinct_spec(positions, specs, lambda spec, t: ratio(t, spec(t.observation)))


POLICY_TYPES = (FixedPolicy, FunctionPolicy)
"""The built-in policy kinds (any registered subclass of :class:`Policy` is a policy)."""


def fixed(probabilities: Sequence[float]) -> FixedPolicy:
    r"""A fixed distribution :math:`\pi(a \mid s) = p_a` over discrete actions.

    Args:
      probabilities: non-negative, summing to 1 within 1e-6 (checked when the
        policy is attached to a Demon), e.g. ``(0, 1)`` for "always right".
    """
    # __post_init__ checks any sequence and stores it as a tuple of floats.
    return FixedPolicy(cast(tuple[float, ...], probabilities))


def deterministic(action: int, n_actions: int) -> FixedPolicy:
    """``fixed`` one-hot policy that always picks ``action`` (e.g. ``deterministic(1, 2)``)."""
    action = checks.as_int(action, "policies.deterministic: action")
    n_actions = checks.as_int(n_actions, "policies.deterministic: n_actions")
    if not 0 <= action < n_actions:
        raise ValueError(f"policies.deterministic: action must be in [0, {n_actions}), got {action}")
    return FixedPolicy(tuple(1.0 if a == action else 0.0 for a in range(n_actions)))


def uniform(n_actions: int) -> FixedPolicy:
    """``fixed`` uniform random policy over ``n_actions`` actions."""
    n_actions = checks.as_int(n_actions, "policies.uniform: n_actions")
    if n_actions < 1:
        raise ValueError(f"policies.uniform: n_actions must be >= 1, got {n_actions}")
    return FixedPolicy((1.0 / n_actions,) * n_actions)


def function(fn: Callable[[Any], Any], name: str, n_actions: int) -> FunctionPolicy:
    r"""Target policy from any JAX-traceable ``fn(observation) -> probs`` of shape ``(n_actions,)``."""
    return FunctionPolicy(fn, name, n_actions)
