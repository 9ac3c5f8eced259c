r"""Baird's counterexample: Sutton & Barto (2018), Section 11.2.

Module contents:

* :func:`baird_features` -- the (7, 8) feature matrix ``X``.
* :func:`behaviour_transition_matrix`, :func:`target_transition_matrix`,
  :func:`stationary_distribution` -- the exact Markov chains.
* :func:`projected_bellman_error`, :func:`bellman_error`, :func:`value_error`
  -- exact error measures of a linear weight vector.
* :class:`BairdCounterexample` -- the Gymnasium environment, with a pure-JAX
  functional form.

Notation (all exact, no sampling). States ``s = 0..6``; ``d`` is a state
distribution and ``D = diag(d)``; ``X`` is the 7x8 feature matrix;
``P_pi`` is the target policy's transition matrix (every row sends all mass
to the lower state 6); the expected reward ``r`` is 0 everywhere, so the true
values ``v_pi`` are 0.

* Expected TD error (Bellman error vector):
  ``delta_bar(w) = r + gamma P_pi X w - X w``.
* Projection onto the span of the features, D-orthogonally:
  ``Pi = X (X^T D X)^+ X^T D``. ``X^T D X`` is 8x8 of rank 7, hence the
  pseudo-inverse. Because ``X`` itself has rank 7 = number of states, its
  columns span all of R^7 and ``Pi`` is the identity: here the projected and
  the plain Bellman error coincide (every value function is representable;
  the true ``v_pi = 0`` is ``X w`` for ``w = 0``, among others).
* ``PBE(w) = ||Pi delta_bar(w)||_D``; ``BE(w) = ||delta_bar(w)||_D``;
  ``VE(w) = ||X w - v_pi||_D``, with ``||u||_D = sqrt(sum_s d(s) u(s)^2)``.

The default ``d`` is the behaviour policy's stationary distribution, which is
uniform: from any state the behaviour policy goes to each upper state with
probability ``(6/7)(1/6) = 1/7`` and to the lower state with probability
``1/7``, so every row of its transition matrix is uniform and so is its
stationary distribution.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from numpy.typing import ArrayLike, NDArray

N_STATES = 7
N_FEATURES = 8
N_UPPER = 6
LOWER_STATE = 6
DASHED = 0
SOLID = 1
GAMMA = 0.99
BEHAVIOUR_PROBS: tuple[float, float] = (6.0 / 7.0, 1.0 / 7.0)
TARGET_PROBS: tuple[float, float] = (0.0, 1.0)
INITIAL_WEIGHTS: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 10.0, 1.0)


def baird_features() -> NDArray[np.float64]:
    """Feature matrix ``X`` of shape (7, 8), one row per state.

    Upper states ``i = 0..5``: ``x(i) = 2 e_i + e_7`` (index ``i`` is 2, index
    7 is 1). Lower state 6: ``x(6) = e_6 + 2 e_7`` (index 6 is 1, index 7 is 2).
    In the book's 1-based notation: ``2 w_i + w_8`` and ``w_7 + 2 w_8``.
    """
    X = np.zeros((N_STATES, N_FEATURES), dtype=np.float64)
    for i in range(N_UPPER):
        X[i, i] = 2.0
        X[i, 7] = 1.0
    X[LOWER_STATE, 6] = 1.0
    X[LOWER_STATE, 7] = 2.0
    return X


def policy_transition_matrix(probs: tuple[float, float]) -> NDArray[np.float64]:
    """State-transition matrix of the policy taking (dashed, solid) with ``probs`` in every state.

    Dashed goes to each upper state with probability 1/6; solid goes to the
    lower state. The dynamics do not depend on the current state.
    """
    p_dashed, p_solid = float(probs[0]), float(probs[1])
    P = np.zeros((N_STATES, N_STATES), dtype=np.float64)
    P[:, :N_UPPER] = p_dashed / N_UPPER
    P[:, LOWER_STATE] = p_solid
    return P


def behaviour_transition_matrix() -> NDArray[np.float64]:
    """Transition matrix under the behaviour policy (dashed 6/7, solid 1/7): all entries 1/7."""
    return policy_transition_matrix(BEHAVIOUR_PROBS)


def target_transition_matrix() -> NDArray[np.float64]:
    """Transition matrix under the target policy (always solid): column 6 is all ones."""
    return policy_transition_matrix(TARGET_PROBS)


def stationary_distribution(P: ArrayLike) -> NDArray[np.float64]:
    """Stationary distribution ``d`` of a row-stochastic matrix: ``d P = d``, ``sum(d) = 1``.

    Solved as a least-squares linear system (exact for an ergodic chain).
    """
    P = np.asarray(P, dtype=np.float64)
    n = P.shape[0]
    A = np.vstack([P.T - np.eye(n), np.ones((1, n))])
    b = np.zeros(n + 1)
    b[-1] = 1.0
    d, *_ = np.linalg.lstsq(A, b, rcond=None)
    return d


def _distribution(d: ArrayLike | None) -> NDArray[np.float64]:
    if d is None:
        return np.full(N_STATES, 1.0 / N_STATES)
    d = np.asarray(d, dtype=np.float64)
    if d.shape != (N_STATES,) or np.any(d < 0) or not np.isclose(d.sum(), 1.0):
        raise ValueError("d must be a probability vector of length 7")
    return d


def _weights(w: ArrayLike) -> NDArray[np.float64]:
    w = np.asarray(w, dtype=np.float64)
    if w.shape != (N_FEATURES,):
        raise ValueError(f"w must have shape (8,), got {w.shape}")
    return w


def projection_matrix(d: ArrayLike | None = None) -> NDArray[np.float64]:
    """``Pi = X (X^T D X)^+ X^T D``: the D-orthogonal projection onto span(X) (the identity here)."""
    X = baird_features()
    D = np.diag(_distribution(d))
    return X @ np.linalg.pinv(X.T @ D @ X) @ X.T @ D


def bellman_error_vector(w: ArrayLike, gamma: float = GAMMA) -> NDArray[np.float64]:
    """``delta_bar(w) = r + gamma P_pi X w - X w`` with ``r = 0`` (length 7)."""
    X = baird_features()
    v = X @ _weights(w)
    return gamma * target_transition_matrix() @ v - v


def _d_norm(u: NDArray[np.float64], d: NDArray[np.float64]) -> float:
    return float(np.sqrt(np.sum(d * u * u)))


def projected_bellman_error(w: ArrayLike, gamma: float = GAMMA, d: ArrayLike | None = None) -> float:
    """``PBE(w) = ||Pi delta_bar(w)||_D`` (square root of the d-weighted squared norm).

    ``d`` defaults to the behaviour policy's stationary distribution (uniform
    over the 7 states); the target policy is "always solid".
    """
    dd = _distribution(d)
    return _d_norm(projection_matrix(dd) @ bellman_error_vector(w, gamma), dd)


def bellman_error(w: ArrayLike, gamma: float = GAMMA, d: ArrayLike | None = None) -> float:
    """``BE(w) = ||delta_bar(w)||_D`` (equal to the PBE here since ``Pi = I``)."""
    return _d_norm(bellman_error_vector(w, gamma), _distribution(d))


def value_error(w: ArrayLike, d: ArrayLike | None = None) -> float:
    """``VE(w) = ||X w - v_pi||_D`` with ``v_pi = 0``: the d-weighted RMS of ``X w``."""
    return _d_norm(baird_features() @ _weights(w), _distribution(d))


class BairdCounterexample(gym.Env):
    """Baird's counterexample (Sutton & Barto 2018, Section 11.2).

    ## Description

    Seven states: six "upper" states ``0..5`` and one "lower" state ``6``.
    The "dashed" action goes to one of the six upper states uniformly at
    random; the "solid" action goes to the lower state. Rewards are all zero,
    so the true value of every policy is 0. The classic experiment learns the
    values of the target policy "always solid" (``TARGET_PROBS``) from the
    behaviour policy "dashed 6/7, solid 1/7" (``BEHAVIOUR_PROBS``) with linear
    features (``features()``), ``GAMMA = 0.99`` and initial weights
    ``INITIAL_WEIGHTS``; off-policy semi-gradient TD diverges.

    ## Action Space

    ``Discrete(2)``:

    | Num | Action                                              |
    |-----|-----------------------------------------------------|
    | 0   | dashed: go to an upper state (0..5), each w.p. 1/6  |
    | 1   | solid: go to the lower state 6                      |

    ## Observation Space

    ``Box(0, 2, (8,), float32)``: the feature vector of the current state,
    row ``s`` of :meth:`features`:

    | State      | Features (0-based)                       |
    |------------|------------------------------------------|
    | ``i=0..5`` | index ``i`` = 2, index 7 = 1, others 0   |
    | ``6``      | index 6 = 1, index 7 = 2, others 0       |

    ``info["state"]`` is the integer state.

    ## Rewards

    Always 0.

    ## Starting State

    Uniformly random among all 7 states (the behaviour policy's stationary
    distribution).

    ## Episode End

    * Termination: never (a continuing task).
    * Truncation: none from the environment; registered with
      ``max_episode_steps=None``. Wrap with ``gymnasium.wrappers.TimeLimit``
      (or pass ``max_episode_steps`` to ``gymnasium.make``) if needed.

    ## Arguments

    ``gymnasium.make("horde/Baird-v0", render_mode=None)``; ``render_mode``
    is ``None`` or ``"ansi"``.

    ## Exact quantities

    Class attributes ``BEHAVIOUR_PROBS``, ``TARGET_PROBS``, ``GAMMA``,
    ``INITIAL_WEIGHTS``, ``N_STATES``, ``N_FEATURES``; static methods
    :meth:`features`, :meth:`projected_bellman_error`, :meth:`bellman_error`,
    :meth:`value_error`, :meth:`behaviour_transition_matrix`,
    :meth:`target_transition_matrix`, :meth:`stationary_distribution`,
    :meth:`behaviour_probs`, :meth:`target_probs`. The mathematics is in the
    :mod:`envs.baird` module docstring.

    ## Functional (JAX) form

    :meth:`jax_reset` ``(key) -> (state, observation)`` and :meth:`jax_step`
    ``(state, action, key) -> (next_state, observation, reward, terminated)``
    are pure and jit/vmap/scan-compatible; ``terminated`` is always False.
    The state is an int32 scalar as in ``info["state"]``.

    ## Reference

    L. Baird, "Residual algorithms: Reinforcement learning with function
    approximation", ICML 1995. R. S. Sutton and A. G. Barto, *Reinforcement
    Learning: An Introduction*, 2nd ed., MIT Press, 2018, Section 11.2
    (Example 11.1).
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}

    N_STATES = N_STATES
    N_FEATURES = N_FEATURES
    LOWER_STATE = LOWER_STATE
    DASHED = DASHED
    SOLID = SOLID
    GAMMA = GAMMA
    BEHAVIOUR_PROBS = BEHAVIOUR_PROBS
    TARGET_PROBS = TARGET_PROBS
    INITIAL_WEIGHTS = INITIAL_WEIGHTS

    features = staticmethod(baird_features)
    projected_bellman_error = staticmethod(projected_bellman_error)
    bellman_error = staticmethod(bellman_error)
    value_error = staticmethod(value_error)
    projection_matrix = staticmethod(projection_matrix)
    behaviour_transition_matrix = staticmethod(behaviour_transition_matrix)
    target_transition_matrix = staticmethod(target_transition_matrix)
    stationary_distribution = staticmethod(stationary_distribution)

    def __init__(self, render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unsupported render_mode {render_mode!r}")
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(2)
        self.observation_space = spaces.Box(0.0, 2.0, (N_FEATURES,), np.float32)
        self._table = baird_features().astype(np.float32)
        self._state: int | None = None

    @staticmethod
    def behaviour_probs(state: int | None = None) -> tuple[float, float]:
        """Behaviour policy ``(mu(dashed), mu(solid)) = (6/7, 1/7)`` in every state."""
        return BEHAVIOUR_PROBS

    @staticmethod
    def target_probs(state: int | None = None) -> tuple[float, float]:
        """Target policy ``(pi(dashed), pi(solid)) = (0, 1)`` in every state."""
        return TARGET_PROBS

    @staticmethod
    def true_values(gamma: float = GAMMA) -> NDArray[np.float64]:
        """True values of any policy: all rewards are zero, so ``v = 0`` (length 7)."""
        return np.zeros(N_STATES, dtype=np.float64)

    # ------------------------------------------------------------ gymnasium
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        self._state = int(self.np_random.integers(N_STATES))
        return self._table[self._state].copy(), {"state": self._state}

    def step(self, action: int) -> tuple[NDArray[np.float32], SupportsFloat, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}")
        if int(action) == SOLID:
            self._state = LOWER_STATE
        else:
            self._state = int(self.np_random.integers(N_UPPER))
        return self._table[self._state].copy(), 0.0, False, False, {"state": self._state}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        s = self._state
        upper = " ".join("A" if s == i else "." for i in range(N_UPPER))
        lower = "A" if s == LOWER_STATE else "."
        return f"upper[{upper}] lower[{lower}]\n"

    # --------------------------------------------------------- JAX functional
    def jax_reset(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Pure reset: state uniform over 0..6; returns ``(state, observation)``."""
        state = jax.random.randint(key, (), 0, N_STATES, dtype=jnp.int32)
        return state, jnp.asarray(self._table)[state]

    def jax_step(
        self, state: jax.Array, action: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Pure step: ``(next_state, observation, reward, terminated)``; reward 0, never terminated."""
        del state
        upper = jax.random.randint(key, (), 0, N_UPPER, dtype=jnp.int32)
        next_state = jnp.where(jnp.asarray(action) == SOLID, LOWER_STATE, upper).astype(jnp.int32)
        obs = jnp.asarray(self._table)[next_state]
        return next_state, obs, jnp.float32(0.0), jnp.asarray(False)

    def jax_behaviour_probs(self, state: jax.Array) -> jax.Array:
        """Behaviour policy as a float32 array ``[6/7, 1/7]``."""
        del state
        return jnp.asarray(BEHAVIOUR_PROBS, dtype=jnp.float32)

    def jax_target_probs(self, state: jax.Array) -> jax.Array:
        """Target policy as a float32 array ``[0, 1]``."""
        del state
        return jnp.asarray(TARGET_PROBS, dtype=jnp.float32)
