r"""Target policies over discrete actions, for off-policy demons.

An off-policy demon asks what its return would be if actions were chosen by a
target policy :math:`\pi` while experience comes from a behaviour policy
:math:`\mu`. The learner weights updates with the importance-sampling ratio

.. math::
    \rho_t = \frac{\pi(A_t \mid S_t)}{\mu(A_t \mid S_t)}.

Each spec is callable on a single observation and returns the float32
probability vector of shape ``(n_actions,)``. Value checks (non-negative
probabilities summing to 1) run when the spec is attached to a
:class:`demons.Demon`, so that error messages name the demon.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from demons import _common

__all__ = [
    "PROBABILITY_TOLERANCE",
    "FixedPolicy",
    "FunctionPolicy",
    "Policy",
    "POLICY_TYPES",
    "fixed",
    "deterministic",
    "uniform",
    "function",
]

PROBABILITY_TOLERANCE = 1e-6
"""Allowed absolute deviation of a fixed policy's probability sum from 1."""


@dataclasses.dataclass(frozen=True)
class FixedPolicy:
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
        probs = tuple(_common.as_float(p, f"policies.fixed: probabilities[{i}]") for i, p in enumerate(probs))
        object.__setattr__(self, "probabilities", probs)

    @property
    def n_actions(self) -> int:
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


@dataclasses.dataclass(frozen=True)
class FunctionPolicy:
    r"""Any JAX-traceable :math:`\pi(\cdot \mid s) = f(s)`, a vector of ``n_actions`` probabilities.

    The output cannot be validated on traced values (non-negativity, sum to 1):
    it is the caller's responsibility. Its shape is checked at trace time.
    """

    fn: Callable[[Any], Any]
    name: str
    n_actions: int
    kind: ClassVar[str] = "function"

    def __post_init__(self):
        _common.check_callable(self.fn, "policies.function: fn")
        _common.as_name(self.name, "policies.function: name")
        object.__setattr__(self, "n_actions", _common.as_int(self.n_actions, "policies.function: n_actions"))

    def check(self, owner: str = "this policy") -> None:
        _common.check_non_empty(self.name, "policy function name", owner)
        if self.n_actions < 1:
            raise ValueError(f"n_actions for {owner} must be >= 1, got {self.n_actions!r}")

    def __call__(self, observation) -> jax.Array:
        out = jnp.asarray(self.fn(observation))
        if out.shape != (self.n_actions,):
            raise ValueError(f"policy function {self.name!r} must return shape ({self.n_actions},), got {out.shape}")
        return out.astype(jnp.float32)


Policy = FixedPolicy | FunctionPolicy
POLICY_TYPES = (FixedPolicy, FunctionPolicy)


def fixed(probabilities: Sequence[float]) -> FixedPolicy:
    r"""A fixed distribution :math:`\pi(a \mid s) = p_a` over discrete actions.

    Args:
      probabilities: non-negative, summing to 1 within 1e-6 (checked when the
        policy is attached to a Demon), e.g. ``(0, 1)`` for "always right".
    """
    return FixedPolicy(probabilities)


def deterministic(action: int, n_actions: int) -> FixedPolicy:
    """``fixed`` one-hot policy that always picks ``action`` (e.g. ``deterministic(1, 2)``)."""
    action = _common.as_int(action, "policies.deterministic: action")
    n_actions = _common.as_int(n_actions, "policies.deterministic: n_actions")
    if not 0 <= action < n_actions:
        raise ValueError(f"policies.deterministic: action must be in [0, {n_actions}), got {action}")
    return FixedPolicy(tuple(1.0 if a == action else 0.0 for a in range(n_actions)))


def uniform(n_actions: int) -> FixedPolicy:
    """``fixed`` uniform random policy over ``n_actions`` actions."""
    n_actions = _common.as_int(n_actions, "policies.uniform: n_actions")
    if n_actions < 1:
        raise ValueError(f"policies.uniform: n_actions must be >= 1, got {n_actions}")
    return FixedPolicy((1.0 / n_actions,) * n_actions)


def function(fn: Callable[[Any], Any], name: str, n_actions: int) -> FunctionPolicy:
    r"""Target policy from any JAX-traceable ``fn(observation) -> probs`` of shape ``(n_actions,)``."""
    return FunctionPolicy(fn, name, n_actions)
