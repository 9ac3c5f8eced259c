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
from typing import Any, ClassVar, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from demons import checks
from demons.kinds import Batch, Kind, Transition, gather, per_distinct_spec

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
    "GreedyPolicy",
    "EpsilonGreedyPolicy",
    "greedy",
    "epsilon_greedy",
    "greedy_probabilities",
    "GreedyInPolicy",
    "greedy_in",
    "ControlPolicies",
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
    #: True for a policy defined on the demon's own action values (a control demon): its
    #: probabilities come from ``probabilities(action_values)``, its ``n_actions`` is None (the
    #: environment's), and its ratio is computed by the control learner, not by a DemonSet.
    control: ClassVar[bool] = False

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


def greedy_probabilities(action_values: jax.Array) -> jax.Array:
    r"""The greedy distribution on action values, ties split evenly.

    .. math::
        \pi(a \mid s) = \frac{\mathbb{1}[q(s, a) = \max_b q(s, b)]}{|\{b : q(s, b) = \max_c q(s, c)\}|}

    Args:
      action_values: ``(..., n_actions)``, :math:`q(s, \cdot)` along the last axis.

    Returns:
      float32 ``(..., n_actions)`` probabilities summing to 1 along the last axis.
    """
    q = jnp.asarray(action_values)
    is_max = (q == jnp.max(q, axis=-1, keepdims=True)).astype(jnp.float32)
    return is_max / jnp.sum(is_max, axis=-1, keepdims=True)


class _ControlPolicy(Policy):
    """A policy on the demon's own action values: the base of ``greedy`` and ``epsilon_greedy``."""

    control: ClassVar[bool] = True

    # No fixed action count: a control demon has one head per action of the environment.
    @property
    def n_actions(self) -> None:  # type: ignore[override]
        return None

    def check_n_actions(self, n_actions: int, owner: str) -> None:
        if n_actions < 1:
            raise ValueError(f"target policy of {owner} needs discrete actions, got n_actions={n_actions}")

    def probabilities(self, action_values: jax.Array) -> jax.Array:
        r""":math:`\pi(\cdot \mid s)` from the demon's own action values ``(..., n_actions)``."""
        raise NotImplementedError

    def __call__(self, observation) -> jax.Array:
        raise TypeError(
            f"a {self.kind} target policy is defined on its demon's own action values, not on an "
            f"observation: call probabilities(action_values), or learn the demon with horde.ControlLearner"
        )

    @classmethod
    def batched(cls, positions: np.ndarray, specs: Sequence[Any]) -> list[Batch]:
        """No ratio here: a control demon's ratio needs its own action values, which a DemonSet
        does not have. Evaluating a set that holds one raises (at trace time) a ValueError that
        points to ``horde.ControlLearner``, which learns control demons."""
        kind = cls.kind

        def compute(t: Transition) -> jax.Array:
            raise ValueError(
                f"a demon with a {kind!r} target policy is a control demon: its importance ratio "
                "depends on its own action values, so a DemonSet cannot evaluate it (a HordeLearner "
                "cannot learn it); learn it with horde.ControlLearner"
            )

        return [Batch(positions, compute)]


@dataclasses.dataclass(frozen=True)
class GreedyPolicy(_ControlPolicy):
    r"""Greedy on the demon's own action values, :math:`\pi(a \mid s) = \mathbb{1}[a = \arg\max_b q(s, b)]`
    (ties split evenly): the demon is a control demon (Q(λ) or Greedy-GQ(λ))."""

    kind: ClassVar[str] = "greedy"

    def probabilities(self, action_values: jax.Array) -> jax.Array:
        return greedy_probabilities(action_values)


@dataclasses.dataclass(frozen=True)
class EpsilonGreedyPolicy(_ControlPolicy):
    r"""ε-greedy on the demon's own action values,
    :math:`\pi(a \mid s) = \epsilon / |A| + (1 - \epsilon)\,\pi_{greedy}(a \mid s)`: the demon is a
    control demon learned by (Expected) SARSA(λ)."""

    epsilon: float
    kind: ClassVar[str] = "epsilon_greedy"

    def __post_init__(self):
        object.__setattr__(self, "epsilon", checks.as_float(self.epsilon, "policies.epsilon_greedy: epsilon"))

    def check(self, owner: str = "this policy") -> None:
        if not (math.isfinite(self.epsilon) and 0.0 <= self.epsilon <= 1.0):
            raise ValueError(f"epsilon of the target policy of {owner} must be in [0, 1], got {self.epsilon!r}")

    def probabilities(self, action_values: jax.Array) -> jax.Array:
        g = greedy_probabilities(action_values)
        return self.epsilon / g.shape[-1] + (1.0 - self.epsilon) * g


class ControlPolicies(NamedTuple):
    r"""The greedy policies of the control demons at :math:`S_t`, what ``greedy_in`` ratios read.

    A control learner computes them from each control demon's current action values
    :math:`q_k(S_t, \cdot)` (the values the behaviour acts on) and hands them to the prediction
    demons' evaluation (``DemonSet.evaluate(..., control_policies=...)``).

    Attributes:
      names: the control demons' names, static, in the order of ``probabilities``' rows.
      probabilities: float32 ``(K, n_actions)``, :math:`\pi_k(\cdot \mid S_t)` =
        :func:`greedy_probabilities` of :math:`q_k(S_t, \cdot)` (ties split evenly).
    """

    names: tuple[str, ...]
    probabilities: jax.Array


@dataclasses.dataclass(frozen=True)
class GreedyInPolicy(Policy):
    r"""Greedy in another demon's action values: :math:`\pi(a \mid s) = \mathbb{1}[q_k(s, a) =
    \max_b q_k(s, b)] / |\arg\max_b q_k(s, b)|` with :math:`q_k` the *current* action values of
    the control demon named ``demon`` (ties split evenly).

    A demon with this target policy is a prediction demon (an off-policy one): it asks what its
    return would be if actions were chosen greedily by control demon ``demon`` ("what would the
    angle be under the greedy policy"). Its ratio
    :math:`\rho_t = \pi(A_t \mid S_t) / \mu(A_t \mid S_t)` needs :math:`q_k(S_t, \cdot)`, so
    it is learned in the ``horde=`` of a ``horde.ControlLearner`` that holds that control demon
    (which passes :class:`ControlPolicies` to the evaluation). Serialises as
    ``target_policy = { kind = "greedy_in", demon = "balance" }``.
    """

    demon: str
    kind: ClassVar[str] = "greedy_in"

    def __post_init__(self):
        object.__setattr__(self, "demon", checks.as_name(self.demon, "policies.greedy_in: demon"))

    # The control demon's action count: the environment's.
    @property
    def n_actions(self) -> None:  # type: ignore[override]
        return None

    def check(self, owner: str = "this policy") -> None:
        checks.check_non_empty(self.demon, "control demon name of the greedy_in target policy", owner)

    def check_n_actions(self, n_actions: int, owner: str) -> None:
        if n_actions < 1:
            raise ValueError(f"target policy of {owner} needs discrete actions, got n_actions={n_actions}")

    def __call__(self, observation) -> jax.Array:
        raise TypeError(
            f"a greedy_in({self.demon!r}) target policy is defined on control demon {self.demon!r}'s "
            "action values, not on an observation: call greedy_probabilities(q) on them, or learn "
            "the demon in the horde= of a horde.ControlLearner"
        )

    @classmethod
    def batched(cls, positions: np.ndarray, specs: Sequence[GreedyInPolicy]) -> list[Batch]:
        r"""Every control demon's :math:`\pi_k(A_t \mid S_t) / \mu(A_t \mid S_t)` (one row of
        ``ControlPolicies.probabilities`` transposed), then one gather to the demons that name it."""
        wanted = [s.demon for s in specs]

        def compute(t: Transition) -> jax.Array:
            control = t.control_policies
            if control is None:
                raise ValueError(
                    f"demons with target policy greedy_in({sorted(set(wanted))[0]!r}) need the control "
                    "demon's action values for their importance ratios, and this evaluation has none: "
                    "learn them in the horde= of a horde.ControlLearner that holds that control demon"
                )
            missing = sorted({n for n in wanted if n not in control.names})
            if missing:
                raise ValueError(
                    f"target policy greedy_in({missing[0]!r}) names no control demon of this "
                    f"learner; expected one of {list(control.names)}"
                )
            rows = np.asarray([control.names.index(n) for n in wanted], np.int32)
            rhos = ratio(t, jnp.asarray(control.probabilities, jnp.float32).T)
            return gather(rhos, rows)

        return [Batch(positions, compute)]


POLICY_TYPES = (FixedPolicy, FunctionPolicy, GreedyPolicy, EpsilonGreedyPolicy, GreedyInPolicy)
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


def greedy() -> GreedyPolicy:
    r"""Greedy on the demon's own action values: a **control demon**.

    The demon predicts :math:`q(s, a)` for every action (one head per action) and its value is
    :math:`v(s) = \max_a q(s, a)`; ``horde.ControlLearner`` learns it (Stream Q(λ) by default).
    Serialises as ``target_policy = { kind = "greedy" }``.
    """
    return GreedyPolicy()


def greedy_in(demon: str) -> GreedyInPolicy:
    r"""Greedy in control demon ``demon``'s current action values: an off-policy prediction demon.

    The demon predicts its return under the greedy policy of the control demon (ties split
    evenly), with exact importance ratios
    :math:`\rho_t = \pi(A_t \mid S_t) / \mu(A_t \mid S_t)` computed from that demon's action
    values at :math:`S_t`. Learn it in the ``horde=`` of a ``horde.ControlLearner`` holding
    ``demon``. Serialises as ``target_policy = { kind = "greedy_in", demon = "balance" }``.

    Args:
      demon: the control demon's name.
    """
    return GreedyInPolicy(demon)


def epsilon_greedy(epsilon: float) -> EpsilonGreedyPolicy:
    r"""ε-greedy on the demon's own action values: a control demon learned by SARSA(λ).

    Args:
      epsilon: :math:`\epsilon \in [0, 1]` (checked when attached to a Demon), the probability
        of a uniformly random action.
    """
    return EpsilonGreedyPolicy(epsilon)
