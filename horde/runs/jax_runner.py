"""A fully compiled runner: environment, behaviour policy, demons and learner in one ``lax.scan``.

``run_jax(learner, env, steps=...)`` does what ``horde.run`` does, for environments written in
JAX, without returning to Python between steps: each chunk of ``chunk_size`` steps (the
environment step, the time limit and reset, the behaviour policy, the demons' cumulants,
discounts and importance ratios, and the learner's update) is one compiled call, and
``n_seeds > 1`` runs independent copies in one ``jax.vmap``-ed call.

Supported environments:

* Gymnasium functional environments (``gymnasium.experimental.functional.FuncEnv``, e.g.
  ``gymnasium.envs.phys2d.cartpole.CartPoleFunctional`` and
  ``gymnasium.envs.phys2d.pendulum.PendulumFunctional``), or a ``FunctionalJaxEnv`` such as
  ``gymnasium.make("phys2d/CartPole-v1")`` whose ``func_env`` is used (the wrapper itself
  cannot be jitted). One step is exactly ``FunctionalJaxEnv.step``: with one key ``k``,
  ``S' = transition(S, A, k)``, ``O' = observation(S', k)``, ``R = reward(S, A, S', k)``,
  ``terminated = terminal(S', k)``; a reset is ``S = initial(k)``, ``O = observation(S, k)``.
  Functional environments have no time limit of their own: the runner adds one
  (``max_episode_steps``; default 500 for CartPole, 200 for Pendulum, or the registered
  ``spec.max_episode_steps`` of a made environment; required otherwise).
* The ``envs`` package's environments (``RandomWalk``, ``BairdCounterexample``, ``Collision``)
  through ``jax_reset`` / ``jax_step`` (``max_episode_steps`` optional: no time limit by
  default). The runner first calls ``env.reset(seed=seed)`` on the Python environment, as
  ``horde.run`` does, so that configuration read when the functions are traced (Collision's
  random feature table) is the one ``horde.run(..., seed=seed)`` would use; every copy of an
  ``n_seeds`` run shares it, and each distinct table compiles its own function.

Transitions follow ``horde.run`` exactly: ``(S_t, A_t, R_{t+1}, S_{t+1}, terminated,
truncated)`` with ``S_{t+1}`` the real final observation when an episode ends (never the
reset observation), then a reset; ``terminated`` is the environment's terminal flag and
``truncated`` is "the time limit was reached and the episode did not terminate" (Gymnasium's
``TimeLimit`` would set both flags at such a step; the learner treats both the same way, as a
termination).

Behaviour policies (``policy``):

* ``None``, ``"uniform"`` or ``horde.UniformRandom()``: uniform over a ``Discrete`` action
  space (``μ = 1/n``), uniform in ``[low, high]`` for a ``Box`` (no probability: on-policy
  demons only, an off-policy demon is a ``ValueError``);
* ``horde.FixedProbabilities(p)``: the same probabilities in every state;
* ``"env"``: the environment's own behaviour policy, ``env.jax_behaviour_probs(state)``
  (``envs.Collision``, ``envs.BairdCounterexample``, ``envs.RandomWalk``), whose probabilities
  give off-policy demons their importance ratios.

Randomness. Copy ``i`` (``0 <= i < n_seeds``) uses ``seed_i = seed + i``::

    base     = jax.random.key(seed_i)           # learner weights: learner.init_traced(dim, base)
    env_root = jax.random.fold_in(base, 1)
    first reset key  = jax.random.fold_in(env_root, 0)
    key of step t    = jax.random.fold_in(jax.random.fold_in(env_root, 1), t)   # t = 0, 1, ...
    k_policy, k_env, k_reset = jax.random.split(key of step t, 3)

(The draws of a whole chunk are made at once, outside the sequential loop, which gives the
same numbers as drawing step by step.) ``k_policy`` draws the action (discrete uniform: ``jax.random.randint(k_policy, (), 0, n)``;
probabilities ``p``: the first ``a`` with ``cumsum(p)[a] > jax.random.uniform(k_policy) *
sum(p)``; Box: ``jax.random.uniform(k_policy, shape, minval=low, maxval=high)``), ``k_env``
is the step's key, and ``k_reset`` resets the environment where that step ended an episode.
The step index ``t`` is global, so the numbers do not depend on ``chunk_size``, and copy ``i``
of an ``n_seeds`` run equals a single run with seed ``seed + i`` (up to floating-point
rounding of the batched computation).

Gotcha: ``phys2d`` CartPole is *not* CartPole-v1. Its ``CartPoleParams.polemass_length`` is
``masspole + length = 0.6`` (CartPole-v1 uses ``masspole * length = 0.05``), so its dynamics
differ; its reward is always 1. Compare this compiled path only with a Python loop over the
same functional environment, never with ``gymnasium.make("CartPole-v1")``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.experimental.functional import FuncEnv

from horde.runs.behaviour import FixedProbabilities, UniformRandom, check_probabilities
from horde.td import HordeLearner
from horde.runs.runner import DivergenceError, RunResult, _finite_fn, _positive_int, _Progress, _Recorder, _result, _serializable
from horde.runs.features import FeatureMap

__all__ = ["run_jax"]

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


class _Env:
    """``reset(key) -> (state, raw_obs)``, ``step(state, action, key) -> (state, raw_obs,
    reward, terminated)``, ``behaviour_probs(state)`` or None."""

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


def _func_env(func: FuncEnv, name: str, spec_limit: int | None) -> _Env:
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
    return _Env(name, func.observation_space, func.action_space, reset, step, None, limit, (), func)


def _package_env(env: Any, seed: int) -> _Env:
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
    return _Env(name, u.observation_space, u.action_space, u.jax_reset, step, probs, limit, fingerprint, u)


def _resolve_env(env: Any, seed: int) -> _Env:
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
        f"gymnasium.make('phys2d/CartPole-v1')) or an environment with jax_reset/jax_step (the "
        f"envs package); got {type(env).__name__}. Use horde.run for Python environments"
    )


# ---------------------------------------------------------------------------------------------
# Observations to features, in JAX (the same map as horde.runs.features.FeatureMap)


def _jax_feature_fn(fm: FeatureMap) -> Callable[[Any], jax.Array]:
    dim = fm.dim
    if fm.kind in ("box", "multibinary"):
        return lambda o: jnp.asarray(o, jnp.float32).reshape(dim)
    if fm.kind == "discrete":
        start = fm._start
        return lambda o: jax.nn.one_hot(jnp.asarray(o).reshape(()) - start, dim, dtype=jnp.float32)
    offsets = jnp.asarray(fm._offsets, jnp.int32)
    start = jnp.asarray(fm._start, jnp.int32)

    def multidiscrete(o):
        idx = offsets + jnp.asarray(o, jnp.int32).reshape(-1) - start
        return jnp.zeros((dim,), jnp.float32).at[idx].set(1.0)

    return multidiscrete


# ---------------------------------------------------------------------------------------------
# Behaviour policies, in JAX


class _Policy(NamedTuple):
    """A behaviour policy in two parts, so that the random draws of a whole chunk can be made at
    once, outside the sequential loop: ``noise(key)`` (independent of the state) and
    ``act(noise, env_state) -> (action, μ(action|state))``."""

    noise: Callable[[jax.Array], jax.Array]
    act: Callable[[jax.Array, Any], tuple[jax.Array, jax.Array]]
    has_probabilities: bool
    cache_key: Any
    description: str


def _uniform01(key):
    return jax.random.uniform(key, (), jnp.float32)


def _index_from_uniform(u, probs):
    """The first ``a`` with ``cumsum(probs)[a] > u * sum(probs)``."""
    cdf = jnp.cumsum(probs)
    return jnp.minimum(jnp.searchsorted(cdf, u * cdf[-1], side="right"), probs.shape[0] - 1).astype(jnp.int32)


def _resolve_policy(policy: Any, env: _Env) -> _Policy:
    space = env.action_space
    discrete = isinstance(space, gym.spaces.Discrete)
    if policy is None or isinstance(policy, UniformRandom) or (isinstance(policy, str) and policy == "uniform"):
        if discrete:
            n, start = int(space.n), int(space.start)
            prob = jnp.float32(1.0 / n)
            return _Policy(
                lambda key: jax.random.randint(key, (), 0, n, jnp.int32),
                lambda a, state: (a + start, prob),
                True, ("uniform",), "UniformRandom()",
            )
        if isinstance(space, gym.spaces.Box):
            low = np.asarray(space.low, np.float32)
            high = np.asarray(space.high, np.float32)
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                raise ValueError(f"uniform actions need a bounded Box action space, got {space!r}")
            shape = tuple(space.shape)
            return _Policy(
                lambda key: jax.random.uniform(key, shape, jnp.float32, low, high),
                lambda a, state: (a, jnp.float32(1.0)),
                False, ("uniform",), "UniformRandom()",
            )
        raise ValueError(f"run_jax supports Discrete and Box action spaces, got {space!r}")
    if isinstance(policy, FixedProbabilities):
        p = check_probabilities("probabilities", policy.probabilities)
        if not discrete or int(space.n) != len(p):
            raise ValueError(f"FixedProbabilities has {len(p)} probabilities but the action space is {space!r}")
        table = jnp.asarray(p, jnp.float32)
        start = int(space.start)

        def fixed(u, state):
            a = _index_from_uniform(u, table)
            return a + start, table[a]

        return _Policy(_uniform01, fixed, True, ("fixed", tuple(p.tolist())), repr(policy))
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
            a = _index_from_uniform(u, probs)
            return a + start, probs[a]

        return _Policy(_uniform01, from_env, True, ("env",), "env.jax_behaviour_probs")
    raise ValueError(
        f"run_jax supports policy=None/'uniform'/UniformRandom(), FixedProbabilities(p) or 'env' "
        f"(the environment's jax_behaviour_probs); got {policy!r}. Policies that run Python code "
        "(StateProbabilities, callables) need horde.run"
    )


# ---------------------------------------------------------------------------------------------
# The compiled chunk


class _Carry(NamedTuple):
    learner_state: Any
    env_state: Any
    features: jax.Array  # features of S_t
    episode_steps: jax.Array  # steps into the current episode (int32)
    step_root: jax.Array  # typed key; step t uses fold_in(step_root, t)


class _StepOut(NamedTuple):
    rewards: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    finite: jax.Array


def _record_names(learner: HordeLearner) -> tuple[str, ...]:
    names = ("predictions", "td_errors", "cumulants", "discounts")
    return names + ("rupee", "ude") if getattr(learner, "diagnostics", False) else names


def _record_slots(T: int, every: int) -> int:
    """Buffer length for the records of a chunk of ``T`` steps (one spare slot)."""
    return -(-T // every) + 1


def _build(learner: HordeLearner, env: _Env, policy: _Policy, limit: int | None, every: int, batched: bool):
    """Returns ``(init, chunk, features)``: ``init(seed_i) -> _Carry``; ``chunk(carry, start,
    first, T)`` (jitted, ``T`` static) ``-> (carry, records, _StepOut)``: one ``(K, n)`` buffer
    per name of ``_record_names`` and per-step ``(T,)`` outputs (leading seed axis when
    ``batched``)."""
    features = FeatureMap(env.observation_space)
    feat = _jax_feature_fn(features)
    dim, n = features.dim, learner.n_demons
    diagnostics = bool(getattr(learner, "diagnostics", False))
    n_buffers = len(_record_names(learner))
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    action_start = int(env.action_space.start) if discrete else 0

    def fix_types(new, old):
        return jax.tree_util.tree_map(lambda a, b: jnp.asarray(a).astype(b.dtype).reshape(b.shape), new, old)

    def env_init(seed_i):
        base = jax.random.key(seed_i)
        env_root = jax.random.fold_in(base, 1)
        env_state, raw = env.reset(jax.random.fold_in(env_root, 0))
        return env_state, feat(raw), jax.random.fold_in(env_root, 1)

    def init(seed_i):
        learner_state = learner.init_traced(dim, jax.random.key(seed_i))
        env_state, x, step_root = env_init(seed_i)
        return _Carry(learner_state, env_state, x, jnp.zeros((), jnp.int32), step_root)

    def one_step(carry: _Carry, inputs, slot, buffers):
        k_env, noise, reset_state, reset_x = inputs
        action, prob = policy.act(noise, carry.env_state)
        action = action.astype(jnp.int32) if discrete else action.astype(jnp.float32)
        next_state, raw_next, reward, terminated = env.step(carry.env_state, action, k_env)
        next_state = fix_types(next_state, carry.env_state)
        x_next = feat(raw_next)
        steps_in = carry.episode_steps + 1
        if limit is None:
            truncated = jnp.zeros((), bool)
        else:
            truncated = (steps_in >= limit) & ~terminated
        done = terminated | truncated
        # Demons index actions from 0 (action indicators, target policies).
        demon_action = action - action_start if discrete else action
        result, evaluation = learner.evaluate_and_update_traced(
            carry.learner_state, carry.features, demon_action, reward, x_next, terminated, truncated, prob
        )
        reset_state = fix_types(reset_state, carry.env_state)
        env_state = jax.tree_util.tree_map(lambda r, s: jnp.where(done, r, s), reset_state, next_state)
        x = jnp.where(done, reset_x, x_next)
        episode_steps = jnp.where(done, 0, steps_in) if limit is not None else carry.episode_steps
        values = (result.predictions, result.td_errors, evaluation.cumulants, evaluation.discounts)
        if diagnostics:
            values = values + (result.rupee, result.ude)
        buffers = tuple(
            jax.lax.dynamic_update_index_in_dim(b, v.astype(b.dtype), slot, 0) for b, v in zip(buffers, values)
        )
        out = _StepOut(reward, terminated, truncated, jnp.all(jnp.isfinite(x_next)))
        return _Carry(result.state, env_state, x, episode_steps, carry.step_root), buffers, out

    def chunk_one(carry: _Carry, start, first, T: int):
        K = _record_slots(T, every)
        buffers = tuple(jnp.zeros((K, n), jnp.float32) for _ in range(n_buffers))
        j = jnp.arange(T, dtype=jnp.int32)
        t = start + j.astype(jnp.uint32)
        # Every random draw of the chunk at once (the same numbers as drawing step by step,
        # much cheaper than drawing inside the sequential loop): the step keys, the policy's
        # noise and the reset each step would do if it ended an episode.
        keys = jax.vmap(lambda t: jax.random.split(jax.random.fold_in(carry.step_root, t), 3))(t)
        noise = jax.vmap(policy.noise)(keys[:, 0])
        reset_state, reset_raw = jax.vmap(env.reset)(keys[:, 2])
        reset_x = jax.vmap(feat)(reset_raw)

        def body(c, inputs):
            carry, buffers = c
            j, step_inputs = inputs
            # Record steps are first, first + every, ...; step j writes slot ceil((j - first) /
            # every), so the last write to slot m comes from record step first + m * every.
            slot = (j - first + every - 1) // every
            carry, buffers, out = one_step(carry, step_inputs, slot, buffers)
            return (carry, buffers), out

        xs = (j, (keys[:, 1], noise, reset_state, reset_x))
        (carry, buffers), outs = jax.lax.scan(body, (carry, buffers), xs)
        return carry, buffers, outs

    def chunk(carry: _Carry, start, first, T: int):
        fn = lambda c, s, f: chunk_one(c, s, f, T)  # noqa: E731
        return (jax.vmap(fn, in_axes=(0, None, None)) if batched else fn)(carry, start, first)

    init_fn = jax.vmap(init) if batched else init
    return init_fn, jax.jit(chunk, static_argnums=(3,)), features


def _compiled(learner, env, policy, limit, every, batched):
    cache = learner.__dict__.setdefault("_jax_runner_fns", {})
    key = (id(env.owner), env.fingerprint, policy.cache_key, limit, every, batched)
    hit = cache.get(key)
    if hit is not None and hit[0] is env.owner:
        return hit[1]
    built = _build(learner, env, policy, limit, every, batched)
    cache[key] = (env.owner, built)
    return built


# ---------------------------------------------------------------------------------------------
# Host-side bookkeeping


def _episodes_in_chunk(start, rewards, done, ep_return, ep_length):
    """Finished episodes of a chunk: rows (copy, end step, return, length); updates the running
    ``ep_return`` / ``ep_length`` (per copy) in place."""
    rows = []
    N, T = rewards.shape
    for i in range(N):
        ends = np.flatnonzero(done[i])
        r = rewards[i].astype(np.float64)
        if ends.size == 0:
            ep_return[i] += r.sum()
            ep_length[i] += T
            continue
        bounds = np.concatenate([[0], ends[:-1] + 1])
        cumulative = np.concatenate([[0.0], np.cumsum(r)])
        sums = cumulative[ends + 1] - cumulative[bounds]
        lengths = ends + 1 - bounds
        sums[0] += ep_return[i]
        lengths[0] += ep_length[i]
        for e, s, l in zip(ends, sums, lengths):
            rows.append((i, start + int(e), float(s), int(l)))
        ep_return[i] = r[ends[-1] + 1:].sum()
        ep_length[i] = T - 1 - ends[-1]
    return rows


def run_jax(
    learner: HordeLearner,
    env: Any,
    *,
    steps: int,
    seed: int = 0,
    n_seeds: int = 1,
    policy: Any = None,
    max_episode_steps: int | None = None,
    record_every: int = 1,
    chunk_size: int = 4096,
    progress: bool | None = None,
) -> RunResult:
    """Runs a behaviour policy in a JAX environment for ``steps`` steps while ``learner``
    learns, every step of a chunk inside one compiled ``jax.lax.scan``.

    Args:
        learner: the ``HordeLearner``; its demons read the flattened float32 observation
            (one-hot for a ``Discrete`` observation space, as ``horde.runs.features.FeatureMap``).
        env: a gymnasium ``FuncEnv`` (``CartPoleFunctional()``, ``PendulumFunctional()``), a
            ``FunctionalJaxEnv`` or its id (``"phys2d/CartPole-v1"``), or an environment with
            ``jax_reset``/``jax_step`` (``envs.RandomWalk``, ``envs.BairdCounterexample``,
            ``envs.Collision``, or their ``horde/...`` ids).
        steps: environment steps per copy.
        seed: copy ``i`` uses ``seed + i`` for its learner weights
            (``jax.random.key(seed + i)``, as ``horde.run``) and its environment and policy
            keys (see the module docstring for the exact derivation).
        n_seeds: independent copies, run in one ``jax.vmap``-ed call.
        policy: ``None``/``"uniform"``/``UniformRandom()``, ``FixedProbabilities(p)`` or
            ``"env"`` (the environment's ``jax_behaviour_probs``).
        max_episode_steps: time limit (truncation after this many steps of an episode).
            Default: the made environment's ``spec.max_episode_steps``, else 500 for
            ``CartPoleFunctional``, 200 for ``PendulumFunctional``; required for other
            ``FuncEnv`` s; none for the ``envs`` package's environments.
        record_every: record per-demon values every this many steps (global step index
            ``t % record_every == 0``, as ``horde.run``).
        chunk_size: steps per compiled call (does not change the numbers).
        progress: show a progress bar; default: when stderr is a terminal.

    Returns:
        ``RunResult`` with arrays ``(n_seeds, k, n_demons)`` / ``(n_seeds, k)``, ``valid`` all
        True; ``state`` is the final learner state, batched over copies (leading axis) when
        ``n_seeds > 1``; ``wall_time`` includes compilation (a second call with the same
        learner, environment object, policy and settings reuses the compiled functions).

    Raises:
        TypeError: ``env`` is not a JAX environment (use ``horde.run``), or ``learner`` is not
            a ``HordeLearner``.
        ValueError: invalid arguments; ``max_episode_steps`` missing for a ``FuncEnv`` without
            a default; an off-policy demon with a ``Box`` action space; an unsupported policy;
            demons that read observation indices out of range; a non-finite observation.
    """
    steps = _positive_int("steps", steps)
    n_seeds = _positive_int("n_seeds", n_seeds)
    record_every = _positive_int("record_every", record_every)
    chunk_size = _positive_int("chunk_size", chunk_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    if seed + n_seeds > 2**31:
        raise ValueError(f"seed + n_seeds must be at most 2**31, got {seed} + {n_seeds}")
    if not isinstance(learner, HordeLearner):
        raise TypeError(f"learner must be a HordeLearner, got {type(learner).__name__}")
    if max_episode_steps is not None:
        max_episode_steps = _positive_int("max_episode_steps", max_episode_steps)

    jenv = _resolve_env(env, seed)
    limit = max_episode_steps if max_episode_steps is not None else jenv.default_limit
    if limit is None and isinstance(jenv.owner, FuncEnv):
        raise ValueError(
            f"max_episode_steps is required for {jenv.name}: functional environments have no time "
            "limit of their own and run_jax knows no default for this one"
        )
    obs_space, act_space = jenv.observation_space, jenv.action_space
    if not isinstance(act_space, (gym.spaces.Discrete, gym.spaces.Box)):
        raise ValueError(f"run_jax supports Discrete and Box action spaces, got {act_space!r}")
    n_actions = int(act_space.n) if isinstance(act_space, gym.spaces.Discrete) else None
    pol = _resolve_policy(policy, jenv)
    off = [name for name, o in zip(learner.names, learner.demons.is_off_policy) if o]
    if off and n_actions is None:
        raise ValueError(
            f"off-policy demons {off[:3]} need a Discrete action space and the behaviour "
            f"policy's action probabilities, but {jenv.name}'s action space is {act_space!r} "
            "(uniform continuous actions have no probability mass): use on-policy demons"
        )
    if off and not pol.has_probabilities:
        raise ValueError(f"off-policy demons {off[:3]} need a behaviour policy with action probabilities")
    features = FeatureMap(obs_space)
    learner.demons.validate(features.dim, n_actions)

    batched = n_seeds > 1
    config = {
        "env": jenv.name,
        "runner": "run_jax",
        "steps": steps,
        "seed": seed,
        "n_seeds": n_seeds,
        "record_every": record_every,
        "chunk_size": chunk_size,
        "max_episode_steps": limit,
        "policy": pol.description,
        "learner": learner.to_config() if _serializable(learner) else None,
    }
    init_fn, chunk_fn, _ = _compiled(learner, jenv, pol, limit, record_every, batched)

    bar = _Progress(steps * n_seeds, progress)
    recorder = _Recorder(n_seeds, learner.n_demons, record_every)
    episodes: list[tuple[int, int, float, int]] = []
    ep_return = np.zeros(n_seeds, np.float64)
    ep_length = np.zeros(n_seeds, np.int64)

    finite_fn = _finite_fn(learner, batched)

    def assemble(state, done, wall):
        # Only checked chunks reach the recorder, so it holds exactly the first `done` steps.
        return _result(learner, recorder, episodes, wall, done, record_every, config, state)

    def collect(start, T, first, buffers, outs, chunk_state):
        """Host-side bookkeeping of one finished chunk; raises DivergenceError when the
        chunk's predictions or final parameters are not finite."""
        outs = jax.tree_util.tree_map(np.asarray, outs)
        buffers = [np.asarray(b) for b in buffers]
        if not batched:
            outs = jax.tree_util.tree_map(lambda a: a[None], outs)
            buffers = [b[None] for b in buffers]
        finite = np.atleast_2d(np.asarray(finite_fn(chunk_state))) & np.isfinite(buffers[0]).all(axis=1)
        if not finite.all():
            seed_i = int(np.argwhere(~finite.all(axis=-1))[0][0])
            names = [learner.names[i] for i in np.flatnonzero(~finite[seed_i])]
            shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise DivergenceError(
                f"learning diverged between steps {start} and {start + T - 1}"
                f"{f' (seed {seed}+{seed_i})' if n_seeds > 1 else ''}: non-finite predictions or "
                f"parameters for demon{'s' if len(names) > 1 else ''} {shown}. error.result holds the "
                "steps before that chunk and the last good state; try a smaller step size or ObGDBounding.",
                step=start, demons=tuple(names), result=assemble(good[0], start, time.perf_counter() - start_time),
            )
        if not outs.finite.all():
            i, t = np.argwhere(~outs.finite)[0]
            raise ValueError(f"the environment returned a non-finite observation at step {start + t} (copy {i})")
        recorder.add(start, buffers, outs.rewards, outs.terminated, outs.truncated, np.ones(outs.rewards.shape, bool))
        episodes.extend(_episodes_in_chunk(start, outs.rewards, outs.terminated | outs.truncated, ep_return, ep_length))
        k = len(range(first, T, record_every))
        bar.update(T * n_seeds, buffers[1][:, :k] if k else np.zeros(0))

    start_time = time.perf_counter()
    carry = init_fn(jnp.arange(seed, seed + n_seeds, dtype=jnp.int32)) if batched else init_fn(seed)
    good = [carry.learner_state]  # the state after the last chunk that was checked
    done_steps = 0
    pending = None
    try:
        while done_steps < steps:
            T = min(chunk_size, steps - done_steps)
            first = (-done_steps) % record_every
            # Dispatched asynchronously: the previous chunk's bookkeeping overlaps this one.
            carry, buffers, outs = chunk_fn(carry, np.uint32(done_steps % 2**32), np.int32(first), T)
            if pending is not None:
                collect(*pending)
                good[0] = pending[-1]
            pending = (done_steps, T, first, buffers, outs, carry.learner_state)
            done_steps += T
        collect(*pending)
    finally:
        bar.close()
    jax.block_until_ready(carry)
    return assemble(carry.learner_state, steps, time.perf_counter() - start_time)
