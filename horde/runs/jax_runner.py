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
* ``horde.EpsilonGreedy(demon, ...)`` with a ``horde.ControlLearner``: ε-greedy on the control
  demon's action values with the latest weights, so the action is chosen inside the scanned
  step, from ``(learner state, features of S_t, t)``, just before the update that learns from
  it; its exact probabilities give every off-policy demon its ratio.

Randomness. Copy ``i`` (``0 <= i < n_seeds``) uses ``seed_i = seed + i``::

    base     = jax.random.key(seed_i)           # learner weights: learner.init_traced(dim, base)
    env_root = jax.random.fold_in(base, 1)
    first reset key  = jax.random.fold_in(env_root, 0)
    key of step t    = jax.random.fold_in(jax.random.fold_in(env_root, 1), t)   # t = 0, 1, ...
    k_policy, k_env, k_reset = jax.random.split(key of step t, 3)

(The draws of a whole chunk are made at once, outside the sequential loop, which gives the
same numbers as drawing step by step.) ``k_policy`` draws the action (discrete uniform: ``jax.random.randint(k_policy, (), 0, n)``;
probabilities ``p``, fixed or ``EpsilonGreedy``'s ``μ(·|S_t)``: the first ``a`` with
``cumsum(p)[a] > jax.random.uniform(k_policy) * sum(p)``; Box: ``jax.random.uniform(k_policy, shape, minval=low, maxval=high)``), ``k_env``
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

import dataclasses
import time
from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.experimental.functional import FuncEnv

from horde.control import ControlLearner
from horde.core import as_seed, shard_seeds
from horde.runs.features import FeatureMap
from horde.runs.jax_envs import JaxEnv, JaxPolicy, as_jax_env, as_jax_policy
from horde.runs.recording import (
    CAUSE_REWARD,
    DivergenceWatch,
    Progress,
    Recorder,
    assemble_result,
    check_off_policy,
    compiled_cache,
    divergence_error,
    empty_records,
    learner_config,
    locate_divergence,
    open_records,
    positive_int,
    record_slot,
    record_values,
    state_finite_fn,
    target_policy_check,
    write_records,
)
from horde.runs.records import write_true_values
from horde.runs.results import RunResult
from horde.runs.rollouts import ROLLOUT_MAX_HORIZON, ROLLOUT_TOLERANCE, rollout_returns
from horde.td import HordeLearner

__all__ = ["run_jax"]

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


def _build(
    learner: HordeLearner | ControlLearner,
    env: JaxEnv,
    policy: JaxPolicy,
    limit: int | None,
    every: int,
    batched: bool,
    visits: bool,
):
    """Returns ``(init, chunk)``: ``init(seed_i) -> _Carry``; ``chunk(carry, start, first, T)``
    (jitted, ``T`` static) ``-> (carry, records, watch, _StepOut, visited)``: the record buffers
    and ``DivergenceWatch`` of ``horde.runs.recording``, per-step ``(T,)`` outputs and, when
    ``visits``, every step's ``(S_t env state, x_t)`` (else None) (leading copy axis when
    ``batched``)."""
    features = FeatureMap(env.observation_space)
    feat = features.jax_transform()
    dim, n = features.dim, learner.n_demons
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    action_start = int(env.action_space.start) if discrete else 0
    policy_check = target_policy_check(learner)

    def step_faults(features_t, reward):
        """The faults of the step that are not the learner's: a user target policy that is not
        a distribution, and a NaN reward from the environment (which would silently make the
        reward demons inactive), for every demon."""
        if policy_check is None:
            cause, value = jnp.zeros((n,), jnp.int32), jnp.zeros((n,), jnp.float32)
        else:
            cause, value = policy_check(features_t)
        nan_reward = jnp.isnan(reward)
        return jnp.where(nan_reward, CAUSE_REWARD, cause), jnp.where(nan_reward, reward, value)

    def fix_types(new, old):
        return jax.tree_util.tree_map(lambda a, b: jnp.asarray(a).astype(b.dtype).reshape(b.shape), new, old)

    def env_init(seed_i):
        base = jax.random.key(seed_i)
        env_root = jax.random.fold_in(base, 1)
        env_state, raw = env.reset(jax.random.fold_in(env_root, 0))
        return env_state, feat(raw), jax.random.fold_in(env_root, 1)

    def init(seed_i):
        if isinstance(learner, ControlLearner):
            learner_state = learner.init_traced(dim, jax.random.key(seed_i), int(env.action_space.n))
        else:
            learner_state = learner.init_traced(dim, jax.random.key(seed_i))
        env_state, x, step_root = env_init(seed_i)
        return _Carry(learner_state, env_state, x, jnp.zeros((), jnp.int32), step_root)

    def one_step(carry: _Carry, inputs, j, slot, buffers, watch):
        k_env, noise, reset_state, reset_x, t = inputs
        if policy.on_learner:  # acts on the latest weights: EpsilonGreedy on a control demon
            action, prob = policy.act(noise, (carry.learner_state, carry.features, t))
        else:
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
        buffers = write_records(buffers, record_values(learner, result, evaluation), slot)
        faults = step_faults(carry.features, reward)
        watch = watch.see(j, result.predictions, evaluation=evaluation, faults=faults)
        out = _StepOut(reward, terminated, truncated, jnp.all(jnp.isfinite(x_next)))
        visited = (carry.env_state, carry.features) if visits else None
        return _Carry(result.state, env_state, x, episode_steps, carry.step_root), buffers, watch, (out, visited)

    def chunk_one(carry: _Carry, start, first, T: int):
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
            carry, buffers, watch = c
            j, step_inputs = inputs
            slot = record_slot(j, first, every, T)
            carry, buffers, watch, out = one_step(carry, step_inputs, j, slot, buffers, watch)
            return (carry, buffers, watch), out

        xs = (j, (keys[:, 1], noise, reset_state, reset_x, t))
        init = (carry, empty_records(learner, T, every), DivergenceWatch.start(n))
        (carry, buffers, watch), outs = jax.lax.scan(body, init, xs)
        outs, visited = outs
        return carry, buffers, watch, outs, visited

    def chunk(carry: _Carry, start, first, T: int):
        fn = lambda c, s, f: chunk_one(c, s, f, T)  # noqa: E731
        return (jax.vmap(fn, in_axes=(0, None, None)) if batched else fn)(carry, start, first)

    init_fn = jax.vmap(init) if batched else init
    return init_fn, jax.jit(chunk, static_argnums=(3,))


def _compiled(learner, env, policy, limit, every, batched, visits=False):
    cache = compiled_cache(learner)
    key = ("run_jax", id(env.owner), env.fingerprint, policy.cache_key, limit, every, batched, visits)
    hit = cache.get(key)
    if hit is not None and hit[0] is env.owner:
        return hit[1]
    built = _build(learner, env, policy, limit, every, batched, visits)
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
        ep_return[i] = r[ends[-1] + 1 :].sum()
        ep_length[i] = T - 1 - ends[-1]
    return rows


def run_jax(
    learner: HordeLearner | ControlLearner,
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
    true_value_every: int | None = None,
    true_value_rollouts: int = 100,
    record_to: Any = None,
) -> RunResult:
    """Runs a behaviour policy in a JAX environment for ``steps`` steps while ``learner``
    learns, every step of a chunk inside one compiled ``jax.lax.scan``.

    Args:
        learner: the ``HordeLearner``; its demons read the flattened float32 observation
            (one-hot for a ``Discrete`` observation space, as ``horde.runs.features.FeatureMap``).
            Or a ``horde.ControlLearner``: its control demons (and its Horde's demons, recorded
            after them) learn from the same stream, and ``policy=EpsilonGreedy(demon)`` acts on
            a control demon's latest values inside the compiled step.
        env: a gymnasium ``FuncEnv`` (``CartPoleFunctional()``, ``PendulumFunctional()``), a
            ``FunctionalJaxEnv`` or its id (``"phys2d/CartPole-v1"``), or an environment with
            ``jax_reset``/``jax_step`` (``envs.RandomWalk``, ``envs.BairdCounterexample``,
            ``envs.Collision``, or their ``horde/...`` ids).
        steps: environment steps per copy.
        seed: copy ``i`` uses ``seed + i`` for its learner weights
            (``jax.random.key(seed + i)``, as ``horde.run``) and its environment and policy
            keys (see the module docstring for the exact derivation).
        n_seeds: independent copies, run in one ``jax.vmap``-ed call. With several devices
            (``jax.devices()``: GPUs, or a CPU split into one device per core with
            ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before JAX starts) the copies
            are spread over the largest number of them that divides ``n_seeds``, each device
            running its own copies; the numbers equal one device's to float32 rounding. A learner
            with least-squares heads (``LSTDHeads``) keeps its copies on one device.
        policy: ``None``/``"uniform"``/``UniformRandom()``, ``FixedProbabilities(p)``,
            ``"env"`` (the environment's ``jax_behaviour_probs``) or ``EpsilonGreedy(demon)``
            (a ``ControlLearner``'s control demon).
        max_episode_steps: time limit (truncation after this many steps of an episode).
            Default: the made environment's ``spec.max_episode_steps``, else 500 for
            ``CartPoleFunctional``, 200 for ``PendulumFunctional``; required for other
            ``FuncEnv`` s; none for the ``envs`` package's environments.
        record_every: record per-demon values every this many steps (global step index
            ``t % record_every == 0``, as ``horde.run``).
        chunk_size: steps per compiled call (does not change the numbers).
        progress: show a progress bar; default: when stderr is a terminal.
        true_value_every: every this many steps (global step ``t % true_value_every == 0``),
            keep the environment state ``S_t`` and, after the run, estimate every demon's true
            value ``E[G_i | S_t]`` there by ``true_value_rollouts`` Monte Carlo rollouts
            (``horde.evaluation.true_values``; its tolerance and horizon defaults) into
            ``RunResult.true_values``; the rollouts from copy ``i``'s step ``t`` use the key
            ``fold_in(fold_in(jax.random.key(seed_i), 2), t)``. Costs ``rollouts × horizon ×
            steps / true_value_every`` environment steps per copy (and per distinct target
            policy). Default None: no true values.
        true_value_rollouts: rollouts per sampled state (at least 2).
        record_to: a run directory to stream the records to as they are made
            (``records.zarr``; see ``horde.run``).

    Returns:
        ``RunResult`` with arrays ``(n_seeds, k, n_demons)`` / ``(n_seeds, k)``, ``valid`` all
        True; ``state`` is the final learner state, batched over copies (leading axis) when
        ``n_seeds > 1``; ``wall_time`` includes compilation (a second call with the same
        learner, environment object, policy and settings reuses the compiled functions) and
        not the true values (their seconds are ``config["true_values"]["wall_time"]``).

    Raises:
        TypeError: ``env`` is not a JAX environment (use ``horde.run``), or ``learner`` is not
            a ``HordeLearner``.
        ValueError: invalid arguments; ``max_episode_steps`` missing for a ``FuncEnv`` without
            a default; an off-policy demon with a ``Box`` action space; an unsupported policy;
            demons that read observation indices out of range; a non-finite observation.
    """
    steps = positive_int("steps", steps)
    n_seeds = positive_int("n_seeds", n_seeds)
    record_every = positive_int("record_every", record_every)
    chunk_size = positive_int("chunk_size", chunk_size)
    seed = as_seed("seed", seed, count=n_seeds)
    if not isinstance(learner, (HordeLearner, ControlLearner)):
        raise TypeError(f"learner must be a HordeLearner or a ControlLearner, got {type(learner).__name__}")
    if max_episode_steps is not None:
        max_episode_steps = positive_int("max_episode_steps", max_episode_steps)
    if true_value_every is not None:
        true_value_every = positive_int("true_value_every", true_value_every)
        true_value_rollouts = positive_int("true_value_rollouts", true_value_rollouts)
        if true_value_rollouts < 2:
            raise ValueError(
                f"true_value_rollouts must be at least 2 (a standard error needs two), got {true_value_rollouts}"
            )

    jenv = as_jax_env(env, seed)
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
    if isinstance(learner, ControlLearner) and not isinstance(act_space, gym.spaces.Discrete):
        raise ValueError(f"control demons need a Discrete action space, got {act_space!r}")
    pol = as_jax_policy(policy, jenv, learner, steps)
    check_off_policy(learner, act_space, pol.description, pol.has_probabilities)
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
        "learner": learner_config(learner),
    }
    visits = true_value_every is not None
    init_fn, chunk_fn = _compiled(learner, jenv, pol, limit, record_every, batched, visits)
    visited_states: list[Any] = []  # (env states, features, global steps) of sampled steps, per chunk

    writer = open_records(
        record_to, learner, record_every=record_every, n_seeds=n_seeds, config=config, chunk_size=chunk_size
    )
    bar = Progress(steps * n_seeds, progress)
    recorder = Recorder(n_seeds, learner.n_demons, record_every, writer)
    episodes: list[tuple[int, int, float, int]] = []
    ep_return = np.zeros(n_seeds, np.float64)
    ep_length = np.zeros(n_seeds, np.int64)
    finite_fn = state_finite_fn(learner, batched)
    seeds_first = (lambda a: a) if batched else (lambda a: a[None])  # host arrays: (n_seeds, ...)

    def assemble(state, done):
        # Only checked chunks reach the recorder, so it holds exactly the first `done` steps
        # (and, after a divergence, the failing chunk's steps up to it).
        wall = time.perf_counter() - start_time
        return assemble_result(
            learner, recorder, episodes, wall=wall, done=done, record_every=record_every, config=config, state=state
        )

    def collect(start, T, first, buffers, watch, outs, visited, chunk_state):
        """Host-side bookkeeping of one finished chunk; raises DivergenceError where the
        chunk's predictions or final parameters are not finite."""
        outs = _StepOut(*(seeds_first(np.asarray(a)) for a in outs))
        buffers = [seeds_first(np.asarray(b)) for b in buffers]
        watch = DivergenceWatch(*(seeds_first(np.asarray(a)) for a in watch))
        if not outs.finite.all():
            i, t = np.argwhere(~outs.finite)[0]
            raise ValueError(f"the environment returned a non-finite observation at step {start + t} (copy {i})")
        rows = (outs.rewards, outs.terminated, outs.truncated, np.ones(outs.rewards.shape, bool))
        diverged = locate_divergence(watch, np.atleast_2d(np.asarray(finite_fn(chunk_state))), T)
        if diverged is not None:
            copy, t, bad = diverged
            recorder.add(start, buffers, *(a[:, : t + 1] for a in rows))
            error = divergence_error(
                learner,
                step=start + t,
                copy=copy,
                n_copies=n_seeds,
                seed=seed,
                demons=bad,
                result=assemble(good[0], start),
                watch=watch,
            )
            recorder.commit(0, start, episodes, time.perf_counter() - start_time)
            if writer is not None:
                writer.close(complete=False, stopped=f"diverged at step {start + t}")
            raise error
        recorder.add(start, buffers, *rows)
        if visited is not None:
            j = np.flatnonzero((start + np.arange(T)) % true_value_every == 0)
            axis = 1 if batched else 0
            visited_states.append((jax.tree_util.tree_map(lambda a: jnp.take(a, j, axis=axis), visited), start + j))
        episodes.extend(_episodes_in_chunk(start, outs.rewards, outs.terminated | outs.truncated, ep_return, ep_length))
        recorder.commit(0, start + T, episodes, time.perf_counter() - start_time)
        k = len(range(first, T, record_every))
        bar.update(T * n_seeds, buffers[1][:, :k] if k else np.zeros(0))

    start_time = time.perf_counter()
    # With several devices (GPUs, or CPU cores split into devices) the seed axis is spread over
    # them: each device runs its own seeds' steps (horde.core.shard_seeds), unless the learner
    # keeps them on one device (learner.shards_seeds: least-squares heads).
    seeds = jnp.arange(seed, seed + n_seeds, dtype=jnp.int32)
    carry = init_fn(shard_seeds(seeds) if learner.shards_seeds else seeds) if batched else init_fn(seed)
    good = [carry.learner_state]  # the state after the last chunk that was checked
    done_steps = 0
    pending = None
    try:
        while done_steps < steps:
            T = min(chunk_size, steps - done_steps)
            first = (-done_steps) % record_every
            # Dispatched asynchronously: the previous chunk's bookkeeping overlaps this one.
            carry, buffers, watch, outs, visited = chunk_fn(carry, np.uint32(done_steps % 2**32), np.int32(first), T)
            if pending is not None:
                collect(*pending)
                good[0] = pending[-1]
            pending = (done_steps, T, first, buffers, watch, outs, visited, carry.learner_state)
            done_steps += T
        assert pending is not None  # steps >= 1: the loop ran
        collect(*pending)
    finally:
        bar.close()
    jax.block_until_ready(carry)
    if writer is not None:
        writer.close(complete=True, wall_time=time.perf_counter() - start_time)
    result = assemble(carry.learner_state, steps)
    if visits:
        result = _with_true_values(
            result, learner, jenv, pol, visited_states, seed, n_seeds, true_value_every, true_value_rollouts
        )
        if record_to is not None:
            write_true_values(record_to, result.true_value_steps, result.true_values, result.true_value_stderr)
    return result


def _with_true_values(result, learner, jenv, pol, visited_states, seed, n_seeds, every, rollouts):
    """``result`` with the true values of the sampled steps (``rollout_returns``)."""
    start = time.perf_counter()
    batched = n_seeds > 1
    steps = np.concatenate([s for _, s in visited_states]).astype(np.int64)
    m = steps.shape[0]
    axis = 1 if batched else 0
    states, features = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis=axis), *[v for v, _ in visited_states])
    if batched:  # copies first: (n_seeds, m, ...) -> (n_seeds * m, ...)
        flat = lambda a: a.reshape((n_seeds * m,) + a.shape[2:])  # noqa: E731
        states, features = jax.tree_util.tree_map(flat, states), flat(features)
    seeds = np.repeat(np.arange(seed, seed + n_seeds), m)
    t = np.tile(steps, n_seeds)
    keys = jax.vmap(lambda s, t: jax.random.fold_in(jax.random.fold_in(jax.random.key(s), 2), t))(
        jnp.asarray(seeds, jnp.int32), jnp.asarray(t % 2**32, jnp.uint32)
    )
    out = rollout_returns(jenv, learner.demons, states, features, keys, policy=pol, rollouts=rollouts)
    shape = (n_seeds, m, learner.n_demons)
    config = dict(result.config)
    config["true_values"] = {
        "every": int(every),
        "rollouts": int(rollouts),
        "tolerance": ROLLOUT_TOLERANCE,
        "max_horizon": ROLLOUT_MAX_HORIZON,
        "horizon": out.horizon,
        "max_remainder": float(out.remainder.max()) if out.remainder.size else 0.0,
        "wall_time": time.perf_counter() - start,
    }
    return dataclasses.replace(
        result,
        config=config,
        true_value_steps=steps,
        true_values=out.values.reshape(shape),
        true_value_stderr=out.stderr.reshape(shape),
    )
