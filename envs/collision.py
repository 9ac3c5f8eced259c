"""The Collision task: Ghiassian & Sutton (2021), arXiv:2106.00922.

Module contents:

* :func:`collision_true_values` -- exact target-policy values ``gamma ** (7 - s)``.
* :func:`behaviour_probs`, :func:`target_probs` -- the two policies.
* :func:`feature_patterns`, :func:`draw_random_features` -- the 6-dim binary
  representation with exactly three ones.
* :class:`Collision` -- the Gymnasium environment, with a pure-JAX functional
  form.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

N_STATES = 8
N_START_STATES = 4
N_FEATURES = 6
N_ACTIVE = 3
FORWARD = 0
RETREAT = 1
GAMMA = 0.9
TERMINAL = -1
TARGET_PROBS: tuple[float, float] = (1.0, 0.0)


def collision_true_values(gamma: float = GAMMA) -> NDArray[np.float64]:
    """Target-policy ("always forward") values: ``v(s) = gamma ** (7 - s)``, s = 0..7.

    From state 7 moving forward gives reward 1 and ends the episode, so
    ``v(7) = 1``; from ``s < 7`` moving forward gives reward 0 and leads to
    ``s + 1``, so ``v(s) = gamma v(s + 1)``.
    """
    return float(gamma) ** (N_STATES - 1 - np.arange(N_STATES, dtype=np.float64))


def _check_state(state: int) -> int:
    state = int(state)
    if not 0 <= state < N_STATES:
        raise ValueError(f"state must be a non-terminal state in 0..7, got {state}")
    return state


def behaviour_probs(state: int) -> tuple[float, float]:
    """Behaviour policy ``(mu(forward), mu(retreat))``: (1, 0) in states 0..3, (0.5, 0.5) in 4..7."""
    return (1.0, 0.0) if _check_state(state) < N_START_STATES else (0.5, 0.5)


def target_probs(state: int) -> tuple[float, float]:
    """Target policy ``(pi(forward), pi(retreat)) = (1, 0)`` in every state."""
    _check_state(state)
    return TARGET_PROBS


def feature_patterns() -> NDArray[np.float32]:
    """All 20 binary vectors of length 6 with exactly three ones, shape (20, 6), in lexicographic order of the positions of the ones."""
    rows = []
    for ones in itertools.combinations(range(N_FEATURES), N_ACTIVE):
        row = np.zeros(N_FEATURES, dtype=np.float32)
        row[list(ones)] = 1.0
        rows.append(row)
    return np.stack(rows)


def draw_random_features(rng: np.random.Generator, distinct: bool = True) -> NDArray[np.float32]:
    """Draw a (8, 6) feature table: one three-ones pattern per state.

    With ``distinct=True`` the 8 patterns are drawn without replacement from
    the 20 possible ones (no two states share a vector, though they share
    active features); with ``distinct=False`` they are drawn independently, so
    two states can have identical vectors.
    """
    patterns = feature_patterns()
    idx = rng.choice(len(patterns), size=N_STATES, replace=not distinct)
    return patterns[idx].copy()


class Collision(gym.Env):
    """The Collision task (Ghiassian & Sutton 2021).

    ## Description

    A vehicle moves along a chain of 8 states ``0..7`` towards an obstacle.
    Moving forward from state 7 collides with it (reward 1, episode ends);
    retreating ends the episode with reward 0. The prediction problem is to
    learn, off-policy, the probability of collision if the vehicle always went
    forward (target policy, ``TARGET_PROBS``), discounted by ``GAMMA = 0.9``,
    from data of a behaviour policy that always goes forward in states 0..3 and
    goes forward or retreats 50/50 in states 4..7 (:meth:`behaviour_probs`).
    The exact answer is ``v(s) = 0.9 ** (7 - s)`` (:meth:`true_values`).

    ## Action Space

    ``Discrete(2)``:

    | Num | Action                                                        |
    |-----|---------------------------------------------------------------|
    | 0   | forward: ``s -> s + 1``; from state 7, collide (end, reward 1) |
    | 1   | retreat: end the episode, reward 0                           |

    ## Observation Space

    | ``features``       | Space                        | Value                                           |
    |--------------------|------------------------------|-------------------------------------------------|
    | ``"random"``       | ``Box(0, 1, (6,), float32)`` | the state's binary vector with exactly 3 ones    |
    | ``"onehot"``       | ``Box(0, 1, (8,), float32)`` | one-hot of the state (for tests and debugging)   |

    The random feature table (:meth:`features`) is drawn from the
    environment's random generator in ``reset(seed=...)`` whenever a seed is
    given (or at the first reset if none has been given) and kept until
    another seed is given, so the same seed gives the same features. By
    default (``distinct_features=False``, as in the task's definition) each
    state's vector is drawn independently, so states may share a vector
    (alias); with ``True`` the 8 vectors are drawn without replacement from
    the 20 possible ones. Six features for eight states means the values
    generally cannot be represented exactly either way.

    On termination the observation is the all-zeros vector (the terminal state
    has zero features). ``info["state"]`` is the integer state (``-1`` once
    terminated) and ``info["behaviour_probs"]`` is the behaviour policy's
    ``(forward, retreat)`` probabilities in that state (``(1.0, 0.0)`` at the
    terminal state, where no action is taken); :meth:`current_behaviour_probs`
    and :meth:`current_target_probs` give the same for the current state, so a
    runner can form importance ratios ``pi(a|s) / mu(a|s)`` even though
    observations do not identify states.

    ## Rewards

    1 on colliding (forward from state 7); 0 otherwise (including retreat).

    ## Starting State

    Uniformly random among states 0, 1, 2, 3.

    ## Episode End

    * Termination: collision (forward from state 7) or retreat.
    * Truncation: none (every episode ends within 8 steps).

    ## Arguments

    ``gymnasium.make("horde/Collision-v0", features="random",
    distinct_features=False, render_mode=None)``

    * ``features``: ``"random"`` or ``"onehot"``.
    * ``distinct_features``: draw the random patterns without replacement
      (no two states alias).
    * ``render_mode``: ``None`` or ``"ansi"``.

    ## Functional (JAX) form

    :meth:`jax_reset` ``(key) -> (state, observation)`` and :meth:`jax_step`
    ``(state, action, key) -> (next_state, observation, reward, terminated)``
    are pure and jit/vmap/scan-compatible; the transitions are deterministic
    (``key`` is unused by ``jax_step``). The state is an int32 scalar as in
    ``info["state"]``; the terminal state ``-1`` is absorbing (reward 0).
    The feature table in use is read when the functions are traced: re-trace
    (re-jit) after reseeding with a new seed.
    :meth:`jax_behaviour_probs` and :meth:`jax_target_probs` give the policies.

    ## Reference

    S. Ghiassian and R. S. Sutton, "An Empirical Comparison of Off-policy
    Prediction Learning Algorithms on the Collision Task", arXiv:2106.00922,
    2021.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}

    N_STATES = N_STATES
    N_FEATURES = N_FEATURES
    FORWARD = FORWARD
    RETREAT = RETREAT
    GAMMA = GAMMA
    TERMINAL = TERMINAL
    TARGET_PROBS = TARGET_PROBS

    behaviour_probs = staticmethod(behaviour_probs)
    target_probs = staticmethod(target_probs)
    true_values = staticmethod(collision_true_values)

    def __init__(
        self,
        features: Literal["random", "onehot"] = "random",
        distinct_features: bool = False,
        render_mode: str | None = None,
    ) -> None:
        if features not in ("random", "onehot"):
            raise ValueError(f"features must be 'random' or 'onehot', got {features!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unsupported render_mode {render_mode!r}")
        self.feature_type = features
        self.distinct_features = bool(distinct_features)
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(2)
        self._obs_dim = N_FEATURES if features == "random" else N_STATES
        self.observation_space = spaces.Box(0.0, 1.0, (self._obs_dim,), np.float32)
        self._table: NDArray[np.float32] | None = np.eye(N_STATES, dtype=np.float32) if features == "onehot" else None
        self._state: int | None = None

    # ------------------------------------------------------------------ model
    def features(self) -> NDArray[np.float32]:
        """The feature table in use, shape (8, 6) or (8, 8); row ``s`` is state ``s``'s observation.

        For ``"random"`` features the table is drawn (from ``np_random``) if no
        reset has drawn one yet.
        """
        if self._table is None:
            self._table = draw_random_features(self.np_random, self.distinct_features)
        return self._table.copy()

    def current_behaviour_probs(self) -> tuple[float, float]:
        """Behaviour probabilities ``(forward, retreat)`` in the current state."""
        if self._state is None or self._state == TERMINAL:
            raise RuntimeError("no current non-terminal state; call reset()")
        return behaviour_probs(self._state)

    def current_target_probs(self) -> tuple[float, float]:
        """Target probabilities ``(forward, retreat)`` in the current state."""
        if self._state is None or self._state == TERMINAL:
            raise RuntimeError("no current non-terminal state; call reset()")
        return target_probs(self._state)

    # ------------------------------------------------------------ gymnasium
    def _obs(self, state: int) -> NDArray[np.float32]:
        if state == TERMINAL:
            return np.zeros(self._obs_dim, dtype=np.float32)
        assert self._table is not None
        return self._table[state].copy()

    def _info(self, state: int) -> dict[str, Any]:
        probs = (1.0, 0.0) if state == TERMINAL else behaviour_probs(state)
        return {"state": state, "behaviour_probs": probs}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        if self.feature_type == "random" and (seed is not None or self._table is None):
            self._table = draw_random_features(self.np_random, self.distinct_features)
        self._state = int(self.np_random.integers(N_START_STATES))
        return self._obs(self._state), self._info(self._state)

    def step(self, action: int) -> tuple[NDArray[np.float32], SupportsFloat, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self._state == TERMINAL:
            raise RuntimeError("the episode has terminated; call reset()")
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}")
        if int(action) == RETREAT:
            s, reward, terminated = TERMINAL, 0.0, True
        elif self._state == N_STATES - 1:
            s, reward, terminated = TERMINAL, 1.0, True
        else:
            s, reward, terminated = self._state + 1, 0.0, False
        self._state = s
        return self._obs(s), reward, terminated, False, self._info(s)

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        s = self._state
        cells = " ".join("A" if s == i else "." for i in range(N_STATES))
        return f"[{cells}]#{' (ended)' if s == TERMINAL else ''}\n"

    # --------------------------------------------------------- JAX functional
    def _jax_table(self) -> jax.Array:
        table = self.features()
        return jnp.asarray(np.vstack([table, np.zeros((1, table.shape[1]), np.float32)]))

    def _jax_obs(self, state: jax.Array) -> jax.Array:
        return self._jax_table()[jnp.where(state == TERMINAL, N_STATES, state)]

    def jax_reset(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Pure reset: state uniform over 0..3; returns ``(state, observation)``."""
        state = jax.random.randint(key, (), 0, N_START_STATES, dtype=jnp.int32)
        return state, self._jax_obs(state)

    def jax_step(
        self, state: jax.Array, action: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Pure step: ``(next_state, observation, reward, terminated)`` (deterministic; ``key`` unused)."""
        del key
        state = jnp.asarray(state, dtype=jnp.int32)
        forward = jnp.asarray(action) == FORWARD
        already_done = state == TERMINAL
        collide = ~already_done & forward & (state == N_STATES - 1)
        advance = ~already_done & forward & (state < N_STATES - 1)
        next_state = jnp.where(advance, state + 1, TERMINAL).astype(jnp.int32)
        reward = jnp.where(collide, 1.0, 0.0).astype(jnp.float32)
        terminated = next_state == TERMINAL
        return next_state, self._jax_obs(next_state), reward, terminated

    def jax_behaviour_probs(self, state: jax.Array) -> jax.Array:
        """Behaviour policy as float32 ``[forward, retreat]``: ``[1, 0]`` in 0..3 (and at the terminal), ``[0.5, 0.5]`` in 4..7."""
        state = jnp.asarray(state)
        risky = state >= N_START_STATES
        return jnp.where(risky, jnp.array([0.5, 0.5], jnp.float32), jnp.array([1.0, 0.0], jnp.float32))

    def jax_target_probs(self, state: jax.Array) -> jax.Array:
        """Target policy as float32 ``[1, 0]``."""
        del state
        return jnp.asarray(TARGET_PROBS, dtype=jnp.float32)
