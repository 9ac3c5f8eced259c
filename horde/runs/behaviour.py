"""Behaviour policies for the runner: what the agent does while the demons learn.

A behaviour policy picks an action for an observation and, where it can, reports the
probability ``μ(a|s)`` it gave the action. Off-policy demons need that probability for their
importance ratios ``ρ = π(a|s) / μ(a|s)``.

* ``UniformRandom()``: uniform over a ``Discrete`` action space (``μ = 1/n``); any other
  space is sampled by its own sampler (``space.sample()``, seeded from the runner's generator):
  uniform on a bounded ``Box``, normal or exponential along an unbounded side. ``μ`` is
  reported where it is a probability: ``1/∏(high - low + 1)`` for a bounded integer ``Box``,
  ``∏ 1/n_k`` for ``MultiDiscrete``, ``2^-n`` for ``MultiBinary``; none for a float ``Box``
  (a density, not a probability mass: on-policy demons only).
* ``FixedProbabilities(p)``: the same probabilities in every state.
* ``StateProbabilities(fn)``: probabilities from ``fn(observation, info)`` (e.g. an
  environment that publishes its behaviour probabilities in ``info``).
* any callable ``(observation, rng) -> action``: a policy without known probabilities.
* ``EpsilonGreedy(demon, ...)``: ε-greedy on a control demon's current action values (a
  ``horde.ControlLearner``'s demon); the only one that sees the learner, so acting happens
  inside the compiled step (``run_jax``).

The others do not see the learner, so the runner may collect a chunk of transitions and learn
from it in one compiled call.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from demons import policies

__all__ = [
    "BehaviourPolicy",
    "UniformRandom",
    "FixedProbabilities",
    "StateProbabilities",
    "CallablePolicy",
    "EpsilonGreedy",
    "as_behaviour_policy",
    "index_from_uniform",
]


def check_probabilities(name: str, probs: Any) -> np.ndarray:
    p = np.asarray(probs, np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"{name} must be a 1-D vector of action probabilities, got {probs!r}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > 1e-6:
        raise ValueError(f"{name} must be non-negative and sum to 1, got {probs!r} (sum {p.sum()})")
    return p


def _sample_index(p: np.ndarray, rng: np.random.Generator) -> int:
    cdf = np.cumsum(p)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(p) - 1))


def index_from_uniform(u: jax.Array, probs: jax.Array) -> jax.Array:
    """The action drawn by the uniform number ``u`` in [0, 1) from ``probs`` (traced): the first
    ``a`` with ``cumsum(probs)[a] > u * sum(probs)``, int32. Both runners draw this way, so the
    same key gives the same action in ``horde.run`` and ``horde.run_jax``."""
    cdf = jnp.cumsum(probs)
    # Comparing with every entry gives the binary search's index without its loop, which costs
    # more than the rest of a small acting step on the CPU.
    return jnp.minimum(
        jnp.searchsorted(cdf, u * cdf[-1], side="right", method="compare_all"), probs.shape[0] - 1
    ).astype(jnp.int32)


class BehaviourPolicy:
    """Base class: ``sample(observation, info, rng) -> (action, probability or None)``."""

    #: whether ``sample`` reports ``μ(a|s)``
    has_probabilities: bool = True

    def bind(self, action_space: gym.Space) -> BehaviourPolicy:
        """Checks the policy against the environment's action space; returns ``self``."""
        return self

    def sample(self, observation: Any, info: dict, rng: np.random.Generator) -> tuple[Any, float | None]:
        raise NotImplementedError


class UniformRandom(BehaviourPolicy):
    """Uniformly random actions (the runner's default)."""

    _space: gym.Space
    _n: int | None  # None for a space sampled by its own sampler
    _start: int
    _prob: float | None
    _seeded: bool

    def bind(self, action_space: gym.Space) -> UniformRandom:
        if isinstance(action_space, gym.spaces.Discrete):
            self._space = action_space
            self._n, self._start = int(action_space.n), int(action_space.start)
            self._prob = 1.0 / self._n
            self.has_probabilities = True
            return self
        if not isinstance(action_space, (gym.spaces.Box, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
            raise ValueError(
                f"UniformRandom supports Discrete, Box, MultiDiscrete and MultiBinary action spaces, got {action_space!r}"
            )
        # A copy, seeded from the runner's generator on the first draw: the environment's own
        # space keeps its generator, and each stream's draws depend on its seed alone.
        self._space = copy.deepcopy(action_space)
        self._n, self._seeded = None, False
        self._prob = _action_probability(action_space)
        self.has_probabilities = self._prob is not None
        return self

    def sample(self, observation, info, rng):
        if self._n is not None:
            return int(rng.integers(self._n)) + self._start, self._prob
        if not self._seeded:
            self._space.seed(int(rng.integers(2**32 - 1)))
            self._seeded = True
        return self._space.sample(), self._prob

    def __repr__(self) -> str:
        return "UniformRandom()"


def _action_probability(space: gym.Space) -> float | None:
    """The probability ``space.sample()`` gives each action, where it is a probability mass."""
    if isinstance(space, gym.spaces.MultiBinary):
        return float(0.5 ** int(np.prod(space.shape)))
    if isinstance(space, gym.spaces.MultiDiscrete):
        return float(np.prod(1.0 / np.asarray(space.nvec, np.float64)))
    if isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.integer) and space.is_bounded("both"):
        sizes = space.high.astype(np.float64) - space.low.astype(np.float64) + 1.0
        return float(np.prod(1.0 / sizes))
    return None


class FixedProbabilities(BehaviourPolicy):
    """The same action probabilities in every state.

    Args:
        probabilities: ``μ(a)`` for each discrete action.
    """

    def __init__(self, probabilities: Any) -> None:
        self.probabilities = check_probabilities("probabilities", probabilities)

    def bind(self, action_space: gym.Space) -> FixedProbabilities:
        if not isinstance(action_space, gym.spaces.Discrete) or action_space.n != len(self.probabilities):
            raise ValueError(
                f"FixedProbabilities has {len(self.probabilities)} probabilities but the action "
                f"space is {action_space!r}"
            )
        self._start = int(action_space.start)
        return self

    def sample(self, observation, info, rng):
        a = _sample_index(self.probabilities, rng)
        return a + self._start, float(self.probabilities[a])

    def __repr__(self) -> str:
        return f"FixedProbabilities({self.probabilities.tolist()})"


class StateProbabilities(BehaviourPolicy):
    """Action probabilities that depend on the state.

    Args:
        fn: ``fn(observation, info) -> probabilities`` over the discrete actions.
    """

    def __init__(self, fn: Callable[[Any, dict], Any]) -> None:
        self.fn = fn

    def bind(self, action_space: gym.Space) -> StateProbabilities:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"StateProbabilities needs a Discrete action space, got {action_space!r}")
        self._n, self._start = int(action_space.n), int(action_space.start)
        return self

    def sample(self, observation, info, rng):
        p = np.asarray(self.fn(observation, info), np.float64)
        if p.shape != (self._n,):
            raise ValueError(f"StateProbabilities fn returned shape {p.shape}, expected ({self._n},)")
        if not (np.all(p >= 0) and abs(p.sum() - 1.0) <= 1e-6):
            raise ValueError(f"StateProbabilities fn must return probabilities summing to 1, got {p.tolist()}")
        a = _sample_index(p, rng)
        return a + self._start, float(p[a])

    def __repr__(self) -> str:
        return f"StateProbabilities({getattr(self.fn, '__name__', self.fn)!r})"


class CallablePolicy(BehaviourPolicy):
    """Wraps a callable ``(observation, rng) -> action``; its probabilities are unknown."""

    has_probabilities = False

    def __init__(self, fn: Callable[[Any, np.random.Generator], Any]) -> None:
        self.fn = fn

    def sample(self, observation, info, rng):
        return self.fn(observation, rng), None

    def __repr__(self) -> str:
        return f"CallablePolicy({getattr(self.fn, '__name__', self.fn)!r})"


class EpsilonGreedy(BehaviourPolicy):
    r"""ε-greedy on a control demon's current action values, ε annealed linearly.

    At global step :math:`t`, :math:`\epsilon_t = s + (\epsilon - s) \min(t / T, 1)` with
    :math:`s` = ``start`` and :math:`T` = ``anneal_steps``, and

    .. math::
        \mu(a \mid s) = \frac{\epsilon_t}{|A|} + (1 - \epsilon_t)\,
        \frac{\mathbb{1}[q(s, a) = \max_b q(s, b)]}{|\arg\max_b q(s, b)|}

    (ties split evenly), exactly the probability the runner reports, so off-policy demons get
    exact importance ratios. The values are those of the control demon ``demon`` of the run's
    ``horde.ControlLearner``, with the latest weights: acting happens inside the compiled step.

    Args:
        demon: the control demon's name (or the ``Demon`` itself).
        epsilon: the final ε, in [0, 1] (stream-x: 0.01).
        start: the initial ε, in [0, 1] (stream-x: 1.0).
        anneal_steps: steps over which ε goes from ``start`` to ``epsilon``; None: the first
            5 % of the run's steps (stream-x); 0: ``epsilon`` from the start.

    Raises:
        ValueError: an ε outside [0, 1], or a negative ``anneal_steps``.
    """

    def __init__(self, demon: Any, epsilon: float = 0.01, start: float = 1.0, anneal_steps: int | None = None) -> None:
        name = getattr(demon, "name", demon)
        if not isinstance(name, str) or not name:
            raise ValueError(f"EpsilonGreedy: demon must be a control demon's name or the Demon, got {demon!r}")
        for what, value in (("epsilon", epsilon), ("start", start)):
            if (
                isinstance(value, (bool, np.bool_))
                or not isinstance(value, (int, float, np.integer, np.floating))
                or not 0.0 <= value <= 1.0
            ):
                raise ValueError(f"EpsilonGreedy: {what} must be a number in [0, 1], got {value!r}")
        if anneal_steps is not None and (
            isinstance(anneal_steps, bool) or not isinstance(anneal_steps, (int, np.integer)) or anneal_steps < 0
        ):
            raise ValueError(f"EpsilonGreedy: anneal_steps must be None or an integer >= 0, got {anneal_steps!r}")
        self.demon = name
        self.epsilon = float(epsilon)
        self.start = float(start)
        self.anneal_steps = None if anneal_steps is None else int(anneal_steps)

    def resolved_anneal_steps(self, steps: int) -> int:
        """``anneal_steps``, or 5 % of a run of ``steps`` steps where it is None."""
        return int(0.05 * steps) if self.anneal_steps is None else self.anneal_steps

    def epsilon_at(self, t: Any, anneal_steps: Any) -> jax.Array:
        """:math:`\\epsilon_t` at global step ``t`` (a number or a traced integer), float32.
        ``anneal_steps`` is an integer or a traced scalar (the acting step carries the run's
        length as data, so that runs of any length share one compiled step); 0 means no
        annealing."""
        if anneal_steps is None:
            raise ValueError(
                "EpsilonGreedy.epsilon_at: anneal_steps must be a length, got None; "
                "resolved_anneal_steps(steps) gives the default (5 % of the run)"
            )
        # A float32 length: one beyond int32 would not fit a traced integer.
        length = jnp.asarray(anneal_steps, jnp.float32)
        frac = jnp.clip(jnp.asarray(t, jnp.float32) / jnp.where(length > 0, length, 1.0), 0.0, 1.0)
        annealed = jnp.float32(self.start) + jnp.float32(self.epsilon - self.start) * frac
        return jnp.where(length > 0, annealed, jnp.float32(self.epsilon))

    def probabilities(self, q: jax.Array, t: Any, anneal_steps: Any) -> jax.Array:
        """:math:`\\mu(\\cdot \\mid s)` at global step ``t`` for the action values ``q``
        ``(n_actions,)`` (traced; ties split evenly)."""
        eps = self.epsilon_at(t, anneal_steps)
        return eps / q.shape[-1] + (1.0 - eps) * policies.greedy_probabilities(q)

    def bind(self, action_space: gym.Space) -> BehaviourPolicy:
        raise ValueError(
            f"{self!r} acts on a control demon's latest values inside the compiled step, so it has "
            "no per-step Python form: pass it as policy= to horde.run (a single Gymnasium "
            "environment), or use horde.run_jax with a horde.ControlLearner"
        )

    def sample(self, observation, info, rng):
        raise ValueError(f"{self!r} acts inside the compiled step of horde.run / horde.run_jax")

    def __repr__(self) -> str:
        return (
            f"EpsilonGreedy({self.demon!r}, epsilon={self.epsilon}, start={self.start}, "
            f"anneal_steps={self.anneal_steps})"
        )


def as_behaviour_policy(policy: Any, action_space: gym.Space) -> BehaviourPolicy:
    """``None`` → ``UniformRandom``; a ``BehaviourPolicy`` as is; a callable
    ``(observation, rng) -> action`` → ``CallablePolicy``; then bound to ``action_space``."""
    if policy is None:
        policy = UniformRandom()
    elif not isinstance(policy, BehaviourPolicy):
        if not callable(policy):
            raise ValueError(
                f"policy must be None, a BehaviourPolicy or a callable (observation, rng) -> action, got {policy!r}"
            )
        try:
            n_params = len(inspect.signature(policy).parameters)
        except (TypeError, ValueError):
            n_params = 2
        if n_params != 2:
            raise ValueError(f"a callable policy must take (observation, rng), got one with {n_params} parameters")
        policy = CallablePolicy(policy)
    return policy.bind(action_space)
