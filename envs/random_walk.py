"""Random walk: Sutton & Barto (2018), Example 6.2, generalised.

Module contents:

* :func:`random_walk_model` -- the exact transition model among non-terminal
  states, as arrays ``(P, r)``.
* :func:`random_walk_true_values` -- exact state values, solving
  ``(I - gamma P) v = r``.
* :class:`RandomWalk` -- the Gymnasium environment, with a pure-JAX functional
  form (:meth:`RandomWalk.jax_reset`, :meth:`RandomWalk.jax_step`).
"""

from __future__ import annotations

from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

LEFT = 0
RIGHT = 1


def _check_probability(name: str, p: float) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {p}")
    return p


def random_walk_model(
    n_states: int = 5,
    p_right: float = 0.5,
    reward_left: float = 0.0,
    reward_right: float = 1.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Exact model of the random walk among its non-terminal states.

    Args:
        n_states: number of non-terminal states.
        p_right: probability of moving right from every state.
        reward_left: reward on stepping off the left end.
        reward_right: reward on stepping off the right end.

    Returns:
        ``(P, r)`` where ``P[s, s2]`` is the probability of moving from
        non-terminal state ``s`` to non-terminal state ``s2`` (the rows of the
        two end states sum to less than one: the rest is termination) and
        ``r[s]`` is the expected immediate reward on leaving ``s``:
        ``r[n-1] = p_right * reward_right``, ``r[0] = (1 - p_right) *
        reward_left`` (both apply when ``n_states == 1``), 0 elsewhere.
    """
    if int(n_states) < 1:
        raise ValueError(f"n_states must be at least 1, got {n_states}")
    n = int(n_states)
    p = _check_probability("p_right", p_right)
    P = np.zeros((n, n), dtype=np.float64)
    r = np.zeros(n, dtype=np.float64)
    for s in range(n):
        if s + 1 < n:
            P[s, s + 1] = p
        else:
            r[s] += p * float(reward_right)
        if s - 1 >= 0:
            P[s, s - 1] = 1.0 - p
        else:
            r[s] += (1.0 - p) * float(reward_left)
    return P, r


def random_walk_true_values(
    n_states: int = 5,
    gamma: float = 1.0,
    p_right: float = 0.5,
    reward_left: float = 0.0,
    reward_right: float = 1.0,
) -> NDArray[np.float64]:
    """Exact state values of the random walk for a policy that moves right w.p. ``p_right``.

    Solves the Bellman equation ``v = r + gamma P v``, i.e. the linear system
    ``(I - gamma P) v = r`` with ``(P, r)`` from :func:`random_walk_model`
    (terminal states have value 0). The system is non-singular for every
    ``gamma`` in [0, 1] because every state reaches termination with
    probability one. For the classic case (``n_states=5, gamma=1,
    p_right=0.5, rewards 0/1``) the solution is ``[1, 2, 3, 4, 5] / 6``; in
    general, with ``gamma=1`` and ``p_right=0.5``, ``v(s) = (s + 1) /
    (n_states + 1)``.

    Returns:
        float64 array of length ``n_states``.
    """
    gamma = float(gamma)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    P, r = random_walk_model(n_states, p_right, reward_left, reward_right)
    return np.asarray(np.linalg.solve(np.eye(P.shape[0]) - gamma * P, r), dtype=np.float64)


class RandomWalk(gym.Env):
    """Random walk on a row of states (Sutton & Barto 2018, Example 6.2, generalised).

    ## Description

    ``n_states`` non-terminal states sit in a row between two terminal states::

        [T_left] 0 1 2 ... n_states-1 [T_right]

    Each step moves one state left or right. Stepping off the right end ends
    the episode with reward ``reward_right``; stepping off the left end ends it
    with reward ``reward_left``. With the defaults (5 states, rewards 0 and 1,
    undiscounted) and the 50/50 policy, the true values are
    ``1/6, 2/6, 3/6, 4/6, 5/6`` -- see :meth:`true_values`.

    ## Action Space

    ``Discrete(2)``:

    | Num | Action     |
    |-----|------------|
    | 0   | move left  |
    | 1   | move right |

    If ``p_right is None`` (the default) the action decides the move
    deterministically; the uniform-random behaviour policy (e.g.
    ``env.action_space.sample()``) then produces the classic 50/50 walk. If
    ``p_right`` is a number, the action is ignored and the walk moves right
    with probability ``p_right`` (a Markov reward process).

    ## Observation Space

    | ``observation`` | Space                                     | Value                       |
    |-----------------|-------------------------------------------|-----------------------------|
    | ``"onehot"``    | ``Box(0, 1, (n_states,), float32)``       | one-hot vector of the state |
    | ``"index"``     | ``Discrete(n_states)``                    | the state index             |

    On termination the ``"onehot"`` observation is the all-zeros vector (the
    terminal state has zero features, so a linear value of it is 0); the
    ``"index"`` observation is the end state just left (``0`` or
    ``n_states - 1``). Learners must not bootstrap from either
    (``terminated`` is True). ``info["state"]`` is always the integer state:
    ``0 .. n_states-1``, or ``-1`` / ``n_states`` for the left / right terminal.

    ## Rewards

    ``reward_right`` on stepping off the right end, ``reward_left`` on stepping
    off the left end, 0 on every other step.

    ## Starting State

    Always the middle state ``n_states // 2``.

    ## Episode End

    * Termination: stepping off either end.
    * Truncation: none from the environment (``max_episode_steps`` is not set
      at registration); a uniformly random walk ends with probability one.

    ## Arguments

    ``gymnasium.make("horde/RandomWalk-v0", n_states=5, p_right=None,
    reward_left=0.0, reward_right=1.0, observation="onehot", render_mode=None)``

    * ``n_states``: number of non-terminal states (>= 1).
    * ``p_right``: ``None`` (the action decides) or the probability of moving
      right regardless of the action.
    * ``reward_left``, ``reward_right``: terminal rewards.
    * ``observation``: ``"onehot"`` or ``"index"``.
    * ``render_mode``: ``None`` or ``"ansi"``.

    ## Functional (JAX) form

    :meth:`jax_reset` ``(key) -> (state, observation)`` and :meth:`jax_step`
    ``(state, action, key) -> (next_state, observation, reward, terminated)``
    are pure, jit/vmap/scan-compatible functions of their arguments; the
    environment's constructor arguments are read when they are traced. The
    state is an int32 scalar with the same meaning as ``info["state"]``.
    Terminal states are absorbing in the functional form (reward 0,
    ``terminated`` True); use :func:`envs.functional.autoreset_step` inside
    ``jax.lax.scan``. With ``p_right`` set the move is right iff
    ``jax.random.uniform(key) < p_right``.

    ## Reference

    R. S. Sutton and A. G. Barto, *Reinforcement Learning: An Introduction*,
    2nd ed., MIT Press, 2018, Example 6.2 (Random Walk).
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        n_states: int = 5,
        p_right: float | None = None,
        reward_left: float = 0.0,
        reward_right: float = 1.0,
        observation: Literal["onehot", "index"] = "onehot",
        render_mode: str | None = None,
    ) -> None:
        if int(n_states) < 1:
            raise ValueError(f"n_states must be at least 1, got {n_states}")
        if observation not in ("onehot", "index"):
            raise ValueError(f"observation must be 'onehot' or 'index', got {observation!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unsupported render_mode {render_mode!r}")
        self.n_states = int(n_states)
        self.p_right = None if p_right is None else _check_probability("p_right", p_right)
        self.reward_left = float(reward_left)
        self.reward_right = float(reward_right)
        self.observation = observation
        self.render_mode = render_mode
        self.start_state = self.n_states // 2

        self.action_space = spaces.Discrete(2)
        if observation == "onehot":
            self.observation_space = spaces.Box(0.0, 1.0, (self.n_states,), np.float32)
        else:
            self.observation_space = spaces.Discrete(self.n_states)
        self._state: int | None = None

    # ------------------------------------------------------------------ model
    def is_terminal(self, state: int) -> bool:
        """Whether ``state`` (as in ``info["state"]``) is one of the two terminal states."""
        return state < 0 or state >= self.n_states

    def features(self) -> NDArray[np.float32]:
        """One-hot feature table, shape ``(n_states, n_states)`` (row ``s`` = onehot observation of ``s``)."""
        return np.eye(self.n_states, dtype=np.float32)

    def _default_p_right(self, p_right: float | None) -> float:
        if p_right is not None:
            return float(p_right)
        return 0.5 if self.p_right is None else self.p_right

    def transition_model(self, p_right: float | None = None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(P, r)`` of :func:`random_walk_model` for this environment's size and rewards.

        ``p_right=None`` means the environment's own ``p_right`` if it has one,
        otherwise 0.5 (the uniform-random policy).
        """
        return random_walk_model(self.n_states, self._default_p_right(p_right), self.reward_left, self.reward_right)

    def true_values(self, gamma: float = 1.0, p_right: float | None = None) -> NDArray[np.float64]:
        """Exact state values (see :func:`random_walk_true_values`).

        ``p_right=None`` means the environment's own ``p_right`` if it has one,
        otherwise 0.5 (the uniform-random policy).
        """
        return random_walk_true_values(
            self.n_states,
            gamma,
            self._default_p_right(p_right),
            self.reward_left,
            self.reward_right,
        )

    @staticmethod
    def behaviour_probs(state: int | None = None) -> tuple[float, float]:
        """The uniform-random behaviour policy: ``(P(left), P(right)) = (0.5, 0.5)``."""
        return (0.5, 0.5)

    # ------------------------------------------------------------ gymnasium
    def _obs(self, state: int) -> NDArray[np.float32] | int:
        if self.observation == "index":
            return int(min(max(state, 0), self.n_states - 1))
        obs = np.zeros(self.n_states, dtype=np.float32)
        if not self.is_terminal(state):
            obs[state] = 1.0
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32] | int, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = self.start_state
        return self._obs(self._state), {"state": self._state}

    def step(self, action: int) -> tuple[NDArray[np.float32] | int, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self.is_terminal(self._state):
            raise RuntimeError("the episode has terminated; call reset()")
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}")
        if self.p_right is None:
            right = int(action) == RIGHT
        else:
            right = bool(self.np_random.random() < self.p_right)
        s = self._state + 1 if right else self._state - 1
        self._state = s
        if s >= self.n_states:
            reward, terminated = self.reward_right, True
        elif s < 0:
            reward, terminated = self.reward_left, True
        else:
            reward, terminated = 0.0, False
        return self._obs(s), reward, terminated, False, {"state": s}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        s = self._state
        cells = ["A" if s == i else "." for i in range(self.n_states)]
        left = "A" if s is not None and s < 0 else "T"
        right = "A" if s is not None and s >= self.n_states else "T"
        return f"{left}[{' '.join(cells)}]{right}\n"

    # --------------------------------------------------------- JAX functional
    def _jax_obs(self, state: jax.Array) -> jax.Array:
        if self.observation == "index":
            return jnp.clip(state, 0, self.n_states - 1).astype(jnp.int32)
        return (jnp.arange(self.n_states) == state).astype(jnp.float32)

    def jax_reset(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Pure reset: ``(state, observation)``; the start is deterministic, ``key`` is unused."""
        del key
        state = jnp.asarray(self.start_state, dtype=jnp.int32)
        return state, self._jax_obs(state)

    def jax_step(
        self, state: jax.Array, action: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Pure step: ``(next_state, observation, reward, terminated)``.

        Same dynamics as :meth:`step`; terminal states are absorbing with
        reward 0 and ``terminated`` True.
        """
        state = jnp.asarray(state, dtype=jnp.int32)
        if self.p_right is None:
            right = jnp.asarray(action) == RIGHT
        else:
            right = jax.random.uniform(key) < self.p_right
        already_done = (state < 0) | (state >= self.n_states)
        moved = jnp.where(right, state + 1, state - 1)
        next_state = jnp.where(already_done, state, moved).astype(jnp.int32)
        reward = jnp.where(
            moved >= self.n_states,
            self.reward_right,
            jnp.where(moved < 0, self.reward_left, 0.0),
        )
        reward = jnp.where(already_done, 0.0, reward).astype(jnp.float32)
        terminated = (next_state < 0) | (next_state >= self.n_states)
        return next_state, self._jax_obs(next_state), reward, terminated

    def jax_behaviour_probs(self, state: jax.Array) -> jax.Array:
        """Uniform-random behaviour policy as a float32 array ``[0.5, 0.5]``."""
        del state
        return jnp.array([0.5, 0.5], dtype=jnp.float32)
