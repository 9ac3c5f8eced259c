"""JAX environments and behaviour policies for ``run_jax``: one functional interface over
Gymnasium's functional environments and the ``envs`` package, and the behaviour policies
whose random draws can be made for a whole chunk at once.

``as_jax_env(env, seed)`` accepts a gymnasium ``FuncEnv`` (e.g. ``CartPoleFunctional()``), a
``FunctionalJaxEnv`` (whose ``func_env`` is used) or its id, an environment with
``jax_reset`` / ``jax_step`` (the ``envs`` package), or a gymnax environment (the optional
extra ``horde[gymnax]``): its id with a ``"gymnax:"`` prefix (``"gymnax:CartPole-v1"``,
``"gymnax:Breakout-MinAtar"``), an environment object, or the ``(env, params)`` pair that
``gymnax.make`` returns. ``as_jax_policy(policy, env)`` accepts
``None`` / ``"uniform"`` / ``UniformRandom()``, ``FixedProbabilities(p)`` or ``"env"``. The
exact step, reset and draw semantics are in ``horde.runs.jax_runner``'s docstring.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.experimental.functional import FuncEnv

from horde.control import ControlLearner
from horde.runs.behaviour import (
    EpsilonGreedy,
    FixedProbabilities,
    UniformRandom,
    check_probabilities,
    index_from_uniform,
)

__all__ = ["JaxEnv", "JaxPolicy", "as_jax_env", "as_jax_policy"]

# Default time limits of the functional environments that have a registered Gymnasium
# counterpart (phys2d/CartPole-v1: 500 steps, phys2d/Pendulum-v0: 200 steps).
_DEFAULT_LIMITS = {
    ("gymnasium.envs.phys2d.cartpole", "CartPoleFunctional"): 500,
    ("gymnasium.envs.phys2d.pendulum", "PendulumFunctional"): 200,
}


def _default_limit(func_env: FuncEnv) -> int | None:
    for cls in type(func_env).__mro__:
        limit = _DEFAULT_LIMITS.get((cls.__module__, cls.__name__))
        if limit is not None:
            return limit
    return None


# ---------------------------------------------------------------------------------------------
# Environments: one functional interface for FuncEnv and the envs package


class JaxEnv:
    """A JAX environment as pure functions, whatever it was written as.

    Attributes:
        name: shown in configs and messages.
        observation_space, action_space: the Gymnasium spaces.
        reset: ``reset(key) -> (env_state, raw_observation)``.
        step: ``step(env_state, action, key) -> (env_state, raw_observation, reward float32 (),
            terminated bool ())``.
        behaviour_probs: ``behaviour_probs(env_state) -> (n_actions,)`` (the environment's own
            behaviour policy), or None.
        default_limit: its time limit (``max_episode_steps``) when it has one, else None.
        fingerprint: data read when the functions are traced (Collision's feature table), so
            that a changed table compiles anew.
        owner: the object whose methods are traced.
    """

    def __init__(self, name, obs_space, act_space, reset, step, behaviour_probs, default_limit, fingerprint, owner):
        self.name = name
        self.observation_space = obs_space
        self.action_space = act_space
        self.reset = reset
        self.step = step
        self.behaviour_probs = behaviour_probs
        self.default_limit = default_limit
        self.fingerprint = fingerprint
        self.owner = owner  # the object whose methods are traced (kept alive by the cache)


def _func_env(func: FuncEnv, name: str, spec_limit: int | None) -> JaxEnv:
    def reset(key):
        state = func.initial(key)
        return state, func.observation(state, key)

    def step(state, action, key):
        next_state = func.transition(state, action, key)
        obs = func.observation(next_state, key)
        reward = func.reward(state, action, next_state, key)
        terminated = func.terminal(next_state, key)
        return next_state, obs, jnp.asarray(reward, jnp.float32).reshape(()), jnp.asarray(terminated, bool).reshape(())

    limit = spec_limit if spec_limit is not None else _default_limit(func)
    return JaxEnv(name, func.observation_space, func.action_space, reset, step, None, limit, (), func)


def _package_env(env: Any, seed: int) -> JaxEnv:
    u = getattr(env, "unwrapped", env)
    env.reset(seed=seed)  # as horde.run: fixes trace-time configuration (Collision's features)
    fingerprint: tuple = ()
    features = getattr(u, "features", None)
    if callable(features):
        try:
            table = np.asarray(features())
            fingerprint = (table.shape, str(table.dtype), table.tobytes())
        except Exception:  # noqa: BLE001 - an env whose features() needs arguments
            fingerprint = ()

    def step(state, action, key):
        next_state, obs, reward, terminated = u.jax_step(state, action, key)
        return next_state, obs, jnp.asarray(reward, jnp.float32).reshape(()), jnp.asarray(terminated, bool).reshape(())

    probs = getattr(u, "jax_behaviour_probs", None)
    spec = getattr(env, "spec", None)
    limit = getattr(spec, "max_episode_steps", None)
    name = getattr(spec, "id", None) or type(u).__name__
    return JaxEnv(name, u.observation_space, u.action_space, u.jax_reset, step, probs, limit, fingerprint, u)


# ---------------------------------------------------------------------------------------------
# gymnax environments

#: The prefix that marks a gymnax id: ``"gymnax:CartPole-v1"``.
GYMNAX_PREFIX = "gymnax:"

# Larger than any episode: passed to gymnax's own step so that its ``done`` can only be a
# termination, whatever version folds the time limit into it; the runner applies the limit.
_NO_TIME_LIMIT = 2**31 - 1


def _is_gymnax_env(obj: Any) -> bool:
    return all(callable(getattr(obj, name, None)) for name in ("step_env", "reset_env", "observation_space")) and (
        hasattr(obj, "default_params")
    )


@functools.cache
def _make_gymnax(env_id: str) -> Any:
    """One gymnax environment object per id, so that repeated runs reuse compiled functions."""
    try:
        import gymnax
    except ImportError as e:
        raise ImportError(
            f"env {GYMNAX_PREFIX}{env_id} needs gymnax: pip install 'horde[gymnax]' (gymnax and six)"
        ) from e
    if env_id not in gymnax.registered_envs:
        raise ValueError(
            f"env {GYMNAX_PREFIX}{env_id!r} is not a gymnax environment; gymnax registers "
            f"{', '.join(GYMNAX_PREFIX + name for name in gymnax.registered_envs)}"
        )
    env, _ = gymnax.make(env_id)
    return env


def _gym_space(space: Any, what: str, name: str) -> gym.Space:
    """A gymnax ``Discrete`` or ``Box`` space as the Gymnasium space the runner reads (a
    boolean Box, MinAtar's grid, becomes a float32 Box on [0, 1])."""
    kind = type(space).__name__
    if kind == "Discrete":
        return gym.spaces.Discrete(int(space.n))
    if kind == "Box":
        shape = tuple(int(d) for d in space.shape)
        low = np.broadcast_to(np.asarray(space.low, np.float32), shape)
        high = np.broadcast_to(np.asarray(space.high, np.float32), shape)
        return gym.spaces.Box(low, high, shape, np.float32)
    raise ValueError(f"gymnax environment {name}: its {what} space is a {kind}; run_jax supports Discrete and Box")


def _params_fingerprint(params: Any) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(params)
    return (str(treedef),) + tuple((str(np.asarray(v).dtype), np.asarray(v).tobytes()) for v in leaves)


def _gymnax_env(env: Any, params: Any) -> JaxEnv:
    """A gymnax environment as a ``JaxEnv``: its un-reset step (``step_env``), with the time
    limit taken out of it and handed to the runner, so that ``terminated`` is only the
    environment's own terminal condition and truncation is the runner's."""
    name = GYMNAX_PREFIX + str(env.name)
    if params is None:
        params = env.default_params
    limit = getattr(params, "max_steps_in_episode", None)
    step_params = params.replace(max_steps_in_episode=_NO_TIME_LIMIT) if limit is not None else params

    def reset(key):
        obs, state = env.reset_env(key, params)
        return state, obs

    def step(state, action, key):
        obs, next_state, reward, done, _ = env.step_env(key, state, action, step_params)
        return next_state, obs, jnp.asarray(reward, jnp.float32).reshape(()), jnp.asarray(done, bool).reshape(())

    obs_space = _gym_space(env.observation_space(params), "observation", name)
    act_space = _gym_space(env.action_space(params), "action", name)
    default_limit = int(limit) if limit is not None else None
    return JaxEnv(name, obs_space, act_space, reset, step, None, default_limit, _params_fingerprint(params), env)


def as_jax_env(env: Any, seed: int) -> JaxEnv:
    """``env`` as a ``JaxEnv``.

    Args:
        env: a gymnasium ``FuncEnv``, a ``FunctionalJaxEnv`` or a Gymnasium id, an
            environment with ``jax_reset`` / ``jax_step``, or a gymnax environment: its id
            prefixed with ``"gymnax:"`` (e.g. ``"gymnax:CartPole-v1"``, ``"gymnax:Acrobot-v1"``,
            ``"gymnax:MountainCar-v0"``, ``"gymnax:Pendulum-v1"``,
            ``"gymnax:Breakout-MinAtar"``), a gymnax environment object (its default
            parameters) or the ``(env, params)`` pair of ``gymnax.make``. A gymnax step is
            its un-reset ``step_env``; ``terminated`` is its terminal condition alone and its
            ``params.max_steps_in_episode`` becomes the runner's time limit (truncation).
        seed: an ``envs`` package environment is first reset with it, as ``horde.run`` does,
            which fixes the configuration read when its functions are traced.

    Returns:
        The environment as pure functions (``JaxEnv``).

    Raises:
        TypeError: ``env`` is not written in JAX (use ``horde.run``).
        ValueError: an unknown gymnax id, or a gymnax space other than Discrete or Box.
        ImportError: a gymnax environment is asked for and gymnax is not installed.
    """
    if isinstance(env, str) and env.startswith(GYMNAX_PREFIX):
        return _gymnax_env(_make_gymnax(env[len(GYMNAX_PREFIX) :]), None)
    if isinstance(env, tuple) and len(env) == 2 and _is_gymnax_env(env[0]):
        return _gymnax_env(env[0], env[1])
    if _is_gymnax_env(env):
        return _gymnax_env(env, None)
    if isinstance(env, str):
        env = gym.make(env)
    if isinstance(env, FuncEnv):
        return _func_env(env, type(env).__name__, None)
    u = getattr(env, "unwrapped", env)
    func = getattr(u, "func_env", None)
    if isinstance(func, FuncEnv):
        spec = getattr(env, "spec", None)
        name = getattr(spec, "id", None) or type(func).__name__
        return _func_env(func, name, getattr(spec, "max_episode_steps", None))
    if callable(getattr(u, "jax_reset", None)) and callable(getattr(u, "jax_step", None)):
        return _package_env(env, seed)
    raise TypeError(
        f"run_jax needs an environment written in JAX: a gymnasium FuncEnv (e.g. "
        f"gymnasium.envs.phys2d.cartpole.CartPoleFunctional()), a FunctionalJaxEnv (e.g. "
        f"gymnasium.make('phys2d/CartPole-v1')), an environment with jax_reset/jax_step (the "
        f"envs package) or a gymnax environment ('gymnax:CartPole-v1'); got {type(env).__name__}. Use horde.run for Python environments"
    )


class JaxPolicy(NamedTuple):
    """A behaviour policy in two parts, so that the random draws of a whole chunk can be made at
    once, outside the sequential loop.

    Attributes:
        noise: ``noise(key)``, the draw, independent of the state.
        act: ``act(noise, env_state) -> (action, μ(action|state))``; a policy ``on_learner``
            acts on ``(learner_state, features, t)`` instead of ``env_state``.
        has_probabilities: whether ``μ`` is a real probability (off-policy demons need it).
        cache_key: identifies the policy among compiled functions.
        description: shown in configs and messages.
        on_learner: the policy reads the learner's latest state (``EpsilonGreedy``).
    """

    noise: Callable[[jax.Array], jax.Array]
    act: Callable[[jax.Array, Any], tuple[jax.Array, jax.Array]]
    has_probabilities: bool
    cache_key: Any
    description: str
    on_learner: bool = False


def _uniform01(key):
    return jax.random.uniform(key, (), jnp.float32)


def as_jax_policy(policy: Any, env: JaxEnv, learner: Any = None, steps: int | None = None) -> JaxPolicy:
    """``policy`` as a ``JaxPolicy`` for ``env``'s action space.

    ``learner`` and ``steps`` (the run's length, for ``EpsilonGreedy``'s default annealing) are
    needed by a policy that acts on the learner's values.

    Raises:
        ValueError: an unsupported policy or action space, or probabilities that do not match
            the action space.
    """
    space = env.action_space
    discrete = isinstance(space, gym.spaces.Discrete)
    if policy is None or isinstance(policy, UniformRandom) or (isinstance(policy, str) and policy == "uniform"):
        if discrete:
            n, start = int(space.n), int(space.start)
            prob = jnp.float32(1.0 / n)
            return JaxPolicy(
                lambda key: jax.random.randint(key, (), 0, n, jnp.int32),
                lambda a, state: (a + start, prob),
                True,
                ("uniform",),
                "UniformRandom()",
            )
        if isinstance(space, gym.spaces.Box):
            low = np.asarray(space.low, np.float32)
            high = np.asarray(space.high, np.float32)
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                raise ValueError(f"uniform actions need a bounded Box action space, got {space!r}")
            shape = tuple(space.shape)
            return JaxPolicy(
                lambda key: jax.random.uniform(key, shape, jnp.float32, low, high),
                lambda a, state: (a, jnp.float32(1.0)),
                False,
                ("uniform",),
                "UniformRandom()",
            )
        raise ValueError(f"run_jax supports Discrete and Box action spaces, got {space!r}")
    if isinstance(policy, FixedProbabilities):
        p = check_probabilities("probabilities", policy.probabilities)
        if not discrete or int(space.n) != len(p):
            raise ValueError(f"FixedProbabilities has {len(p)} probabilities but the action space is {space!r}")
        table = jnp.asarray(p, jnp.float32)
        start = int(space.start)

        def fixed(u, state):
            a = index_from_uniform(u, table)
            return a + start, table[a]

        return JaxPolicy(_uniform01, fixed, True, ("fixed", tuple(p.tolist())), repr(policy))
    if isinstance(policy, EpsilonGreedy):
        return _epsilon_greedy(policy, env, learner, steps)
    if isinstance(policy, str) and policy == "env":
        if env.behaviour_probs is None:
            raise ValueError(
                f"policy='env' needs an environment with jax_behaviour_probs(state) (envs.Collision, "
                f"envs.BairdCounterexample, envs.RandomWalk); {env.name} has none"
            )
        if not discrete:
            raise ValueError(f"policy='env' needs a Discrete action space, got {space!r}")
        start = int(space.start)
        fn = env.behaviour_probs

        def from_env(u, state):
            probs = jnp.asarray(fn(state), jnp.float32)
            a = index_from_uniform(u, probs)
            return a + start, probs[a]

        return JaxPolicy(_uniform01, from_env, True, ("env",), "env.jax_behaviour_probs")
    raise ValueError(
        f"run_jax supports policy=None/'uniform'/UniformRandom(), FixedProbabilities(p) or 'env' "
        f"(the environment's jax_behaviour_probs); got {policy!r}. Policies that run Python code "
        "(StateProbabilities, callables) need horde.run; EpsilonGreedy(demon) acts on a "
        "horde.ControlLearner's demon"
    )


def _epsilon_greedy(policy: EpsilonGreedy, env: JaxEnv, learner: Any, steps: int | None) -> JaxPolicy:
    space = env.action_space
    if not isinstance(space, gym.spaces.Discrete):
        raise ValueError(f"EpsilonGreedy needs a Discrete action space, got {space!r}")
    if not isinstance(learner, ControlLearner):
        raise ValueError(
            f"{policy!r} acts on a control demon's values: the learner must be a horde.ControlLearner "
            f"holding that demon, got {type(learner).__name__}"
        )
    index = learner.control_index(policy.demon)
    anneal = policy.resolved_anneal_steps(steps if steps is not None else 0)
    start = int(space.start)

    def act(u, context):
        learner_state, features, t = context
        q = learner.action_values_traced(learner_state, features)[index]
        probs = policy.probabilities(q, t, anneal)
        a = index_from_uniform(u, probs)
        return a + start, probs[a]

    key = ("epsilon_greedy", policy.demon, policy.epsilon, policy.start, anneal)
    return JaxPolicy(_uniform01, act, True, key, repr(policy), True)
