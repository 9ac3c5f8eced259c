"""Attach a Horde to a Gymnasium environment and let it learn.

``run(learner, env, steps=...)`` drives a behaviour policy in the environment, turns each
observation into features (``horde.runs.features.FeatureMap``), lets the demons compute their
cumulants, discounts and importance ratios, and updates the learner on every transition.

Episode boundaries follow Gymnasium exactly (``horde.runs.streams``):

* single environments: after ``terminated or truncated`` the runner resets the environment
  itself; the transition that ended the episode carries the real final observation (no
  bootstrap where terminated; bootstrap from that observation where truncated);
* vector environments with next-step autoreset (Gymnasium ≥ 1.0's default): the step after an
  episode ends returns the reset observation with reward 0 and both flags false; that is not a
  real transition and is never learned from (the state is left exactly as it was). Same-step
  autoreset takes the real final observation from ``info["final_obs"]``.

Because no behaviour policy here looks at the learner, the runner collects ``chunk_size``
transitions and learns from them in one compiled ``lax.scan``: the numbers are the same as
learning after every step (``chunk_size=1``).
"""

from __future__ import annotations

import functools
import time
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from horde.control import ControlLearner
from horde.core import as_bool, as_int, as_seed
from horde.runs.acting import run_acting
from horde.runs.behaviour import EpsilonGreedy, as_behaviour_policy
from horde.runs.features import FeatureMap
from horde.runs.recording import (
    DivergenceWatch,
    Progress,
    Recorder,
    assemble_result,
    check_off_policy,
    compiled_cache,
    divergence_error,
    empty_records,
    finish_chunk,
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
from horde.runs.records import RecordsError
from horde.runs.results import RunError, RunResult
from horde.runs.streams import SingleStream, VectorStream, replay
from horde.td import HordeLearner, HordeState

__all__ = ["run"]


def _chunk_fn(learner: HordeLearner, batched: bool, masked: bool, every: int):
    """The compiled function that learns from one chunk, cached on the learner.

    ``fn(state, transitions, valid, offset) -> (state, records, watch, mean_abs_td)``:
    ``records`` are the record buffers of ``horde.runs.recording`` (rows at the chunk's steps
    ``offset + every·k``), ``watch`` the chunk's ``DivergenceWatch``. With ``masked``, steps
    whose ``valid`` is False leave the state as it was; with ``batched``, everything carries a
    leading copy axis.
    """
    cache = compiled_cache(learner)
    key = ("run", batched, masked, every)
    if key in cache:
        return cache[key]

    # Runs beside the learner's step (a user target policy must be a distribution), so the
    # learner's own step stays as small as it is.
    policy_check = target_policy_check(learner)

    def scan(state, transitions, valid, offset):
        T = valid.shape[0]

        def body(carry, inputs):
            s, buffers, watch, td_sum, td_count = carry
            j, t, ok = inputs
            r, ev = learner.evaluate_and_update_traced(s, *t)
            new = r.state
            if masked:
                new = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, s)
            buffers = write_records(buffers, record_values(learner, r, ev), record_slot(j, offset, every, T))
            abs_td = jnp.abs(r.td_errors)
            seen = ~jnp.isnan(abs_td) & ok
            td_sum = td_sum + jnp.sum(jnp.where(seen, abs_td, 0.0))
            td_count = td_count + jnp.sum(seen)
            faults = None if policy_check is None else policy_check(t[0])
            return (new, buffers, watch.see(j, r.predictions, ok, ev, faults), td_sum, td_count), None

        zero = jnp.zeros((), jnp.float32)
        init = (state, empty_records(learner, T, every), DivergenceWatch.start(learner.n_demons), zero, zero)
        steps = jnp.arange(T, dtype=jnp.int32)
        (final, records, watch, td_sum, td_count), _ = jax.lax.scan(body, init, (steps, transitions, valid))
        mean_abs_td = jnp.where(td_count > 0, td_sum / jnp.maximum(td_count, 1.0), jnp.nan)
        return final, records, watch, mean_abs_td

    fn = jax.vmap(scan, in_axes=(0, 0, 0, None)) if batched else scan
    cache[key] = jax.jit(fn)
    return cache[key]


class _StepCounter:
    """The environment as the stream sees it, counting the steps it completed: when the
    environment (or the behaviour policy, which acts just before it) raises, ``steps`` is the
    global step that failed."""

    def __init__(self, env: Any) -> None:
        self.env, self.steps = env, 0

    def step(self, action: Any) -> Any:
        out = self.env.step(action)
        self.steps += 1
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)


def _learn(
    learner,
    fn,
    state,
    stream,
    *,
    steps,
    start_step,
    chunk_size,
    record_every,
    progress,
    callback,
    stop_on_interrupt,
    config,
    n_seeds,
    batched,
    counter,
    writer,
) -> RunResult:
    """The loop shared by single and vector runs: collect a chunk, learn from it in one
    compiled call, check for divergence, record, report.

    Pipelined on two cores: while the compiled call learns from chunk k, Python collects chunk
    k + 1 from the environment (and dispatches it after chunk k's state, which JAX orders).
    Chunk k is then checked; if it diverged, the state before it is kept and later work is
    dropped. Where collecting raises, the chunks already learned are checked and recorded,
    then the run stops with a ``RunError``.
    """
    recorder = Recorder(n_seeds, learner.n_demons, record_every, writer)
    bar = Progress(steps * n_seeds, progress)
    check = state_finite_fn(learner, batched)
    seeds_first = (lambda a: a) if batched else (lambda a: a[None])  # recorded arrays: (n_seeds, ...)
    good_state, latest_state = state, state
    collected = done = 0
    inflight: list[tuple] = []
    failed: tuple[int, Exception] | None = None
    start_time = time.perf_counter()

    def result(done: int, state: Any) -> RunResult:
        wall = time.perf_counter() - start_time
        return assemble_result(
            learner,
            recorder,
            stream.episodes,
            wall=wall,
            done=done,
            record_every=record_every,
            config=config,
            state=state,
        )

    def stop(reason: str) -> None:
        if writer is not None:
            try:
                writer.close(complete=False, stopped=reason, wall_time=time.perf_counter() - start_time)
            except RecordsError:
                pass  # the error being raised says more; the committed records stay readable

    try:
        while done < steps:
            while failed is None and collected < steps and len(inflight) < 2:
                T = min(chunk_size, steps - collected)
                first = start_step + collected
                try:
                    transitions, valid = stream.collect(T, first)
                except Exception as e:  # the environment's or the policy's; reported below
                    failed = (counter.steps, e)
                    break
                offset = (-first) % record_every
                outputs = fn(latest_state, transitions, valid, offset)
                latest_state = outputs[0]
                inflight.append((first, T, transitions, valid, outputs))
                collected += T
            if not inflight:
                break
            first, T, transitions, valid, (new_state, records, watch, td) = inflight.pop(0)
            records = [seeds_first(np.asarray(b)) for b in records]
            watch = DivergenceWatch(*(seeds_first(np.asarray(a)) for a in watch))
            rows = tuple(
                seeds_first(a) for a in (transitions.rewards, transitions.terminated, transitions.truncated, valid)
            )
            diverged = locate_divergence(watch, np.atleast_2d(np.asarray(check(new_state))), T)
            if diverged is not None:
                copy, t, bad = diverged
                recorder.add(first, records, *(a[:, : t + 1] for a in rows))
                error = divergence_error(
                    learner,
                    step=first + t,
                    copy=copy,
                    n_copies=n_seeds,
                    seed=config["seed"],
                    demons=bad,
                    result=result(done, good_state),
                    watch=watch,
                )
                recorder.commit(start_step, start_step + done, stream.episodes, time.perf_counter() - start_time)
                stop(f"diverged at step {first + t}")
                raise error
            recorder.add(first, records, *rows)
            good_state, done = new_state, done + T  # together: an interrupt sees both or neither
            bar.update(T * n_seeds, np.asarray(td))
            finish_chunk(
                recorder,
                first_step=start_step,
                step=start_step + done,
                episodes=stream.episodes,
                wall=time.perf_counter() - start_time,
                state=good_state,
                result=functools.partial(result, done, good_state),
                callback=callback,
                stop=stop,
            )
        if failed is not None:
            step, cause = failed
            message = (
                f"the environment (or the behaviour policy) raised {type(cause).__name__} at step {step}: {cause}. "
                f"error.result holds the records and the last good state, after step {start_step + done} "
                "(the last chunk learned in full)"
            )
            stop(f"the environment raised {type(cause).__name__} at step {step}: {cause}")
            raise RunError(message, step=step, result=result(done, good_state)) from cause
    except KeyboardInterrupt:
        if not stop_on_interrupt:
            stop("interrupted")
            raise
        config["interrupted"] = True
    finally:
        bar.close()
    jax.block_until_ready(good_state)
    if writer is not None:
        interrupted = bool(config.get("interrupted"))
        writer.close(
            complete=not interrupted,
            stopped="interrupted" if interrupted else None,
            wall_time=time.perf_counter() - start_time,
        )
    return result(done, good_state)


def _make_env(env: Any, env_kwargs: dict | None):
    if isinstance(env, str):
        return gym.make(env, **(env_kwargs or {})), env
    if env_kwargs:
        raise ValueError("env_kwargs is only used when env is an environment id string")
    spec = getattr(env, "spec", None)
    return env, getattr(spec, "id", None) or type(getattr(env, "unwrapped", env)).__name__


def run(
    learner: HordeLearner | ControlLearner,
    env: Any,
    *,
    steps: int,
    policy: Any = None,
    seed: int = 0,
    state: HordeState | None = None,
    record_every: int = 1,
    chunk_size: int = 1024,
    progress: bool | None = None,
    env_kwargs: dict | None = None,
    callback: Any = None,
    stop_on_interrupt: bool = False,
    start_step: int = 0,
    record_to: Any = None,
    actions: Any = None,
) -> RunResult:
    """Runs a behaviour policy in ``env`` for ``steps`` steps while ``learner`` learns.

    Args:
        learner: the ``HordeLearner``; its demons read the feature vector of the observation.
            Or a ``horde.ControlLearner`` with ``policy=EpsilonGreedy(demon)``: the behaviour
            acts on the control demon's latest values, so each step is one compiled call that
            learns from the transition and draws the next action (``horde.runs.acting``; a
            single environment; the actions are ``run_jax``'s for the same seed where the
            dynamics agree; ``RunResult.actions`` holds them, to resume the run).
        env: a Gymnasium environment, a Gymnasium vector environment (one independent learner
            state per copy, learned in one vmapped call), or an environment id for
            ``gymnasium.make``.
        steps: environment steps (per copy for a vector environment).
        policy: behaviour policy: ``None`` (uniform random), a ``BehaviourPolicy``, a
            callable ``(observation, rng) -> action``, or ``EpsilonGreedy(demon)`` with a
            ``ControlLearner``.
        seed: seeds the environment (``reset(seed=seed)``; copy ``i`` of a vector environment
            gets ``seed + i``), the policy's generator (``numpy.random.default_rng(seed + i)``)
            and the learner's initial weights (``jax.random.key(seed + i)``), so copy ``i`` of
            a vector run equals a single run with seed ``seed + i``.
        state: a learner state to continue from (batched over copies for a vector
            environment); default: a fresh one.
        record_every: record per-demon values every this many steps.
        chunk_size: transitions per compiled learning call; 1 learns after every step.
        progress: show a progress bar; default: when stderr is a terminal.
        env_kwargs: keyword arguments for ``gymnasium.make`` when ``env`` is an id.
        callback: called as ``callback(steps_done, state)`` after every chunk (e.g. to write
            periodic checkpoints).
        stop_on_interrupt: on Ctrl-C (``KeyboardInterrupt``) stop after the last complete
            chunk and return what was learned and recorded so far, with
            ``config["interrupted"] = True``, instead of raising.
        start_step: resume a run at this step: the environment and the behaviour policy are
            first stepped ``start_step`` times without learning (their stream depends on the
            seed alone, so this restores it exactly), then learning continues from ``state``.
            With the state checkpointed at ``start_step``, the result continues the
            interrupted run bit for bit (on the same machine).
        record_to: a run directory to stream the records to as they are made
            (``records.zarr``, see ``horde.runs.records``): each chunk is committed to disk
            before the next one is, so a run killed at any moment keeps the records of its
            last committed chunk (``RunResult.load`` reads them, with ``partial=True``). Where
            the directory already holds this run's records (a resumed run), the records from
            ``start_step`` on are replaced by the new ones and the earlier ones kept.
        actions: with an ``EpsilonGreedy`` behaviour resumed at ``start_step``: the
            ``start_step`` actions the run took before it (``RunResult.actions`` of the run it
            continues, shape ``(1, start_step)``, or its row ``actions[0]``), which are replayed in the environment from ``reset(seed=seed)``
            because they depended on the learner; with ``state`` the learner state at
            ``start_step``, the result continues the run bit for bit.

    Returns:
        ``RunResult``.

    Raises:
        DivergenceError: a prediction or parameter became non-finite; the message names the
            demons and the exact step, and ``error.result`` holds the records up to that step,
            with the last good state (see ``DivergenceError``).
        RunError: the environment, the behaviour policy or ``callback`` raised, or the
            records could not be written; the message names the step, the original exception
            is ``__cause__``, and ``error.result`` holds the records and the state of every
            chunk learned in full before it.
        RecordsError: ``record_to`` cannot be written, or holds another run's records.
    """
    steps = positive_int("steps", steps)
    record_every = positive_int("record_every", record_every)
    chunk_size = positive_int("chunk_size", chunk_size)
    if isinstance(policy, EpsilonGreedy):
        env, env_id = _make_env(env, env_kwargs)
        return run_acting(
            learner,
            env,
            env_id,
            policy,
            steps=steps,
            seed=as_seed("seed", seed),
            state=state,
            record_every=record_every,
            chunk_size=chunk_size,
            progress=progress,
            callback=callback,
            stop_on_interrupt=stop_on_interrupt,
            start_step=as_int("start_step", start_step, low=0),
            actions=actions,
            record_to=record_to,
        )
    if actions is not None:
        raise ValueError(
            f"actions is only for resuming a run whose behaviour acts on the learner (EpsilonGreedy), "
            f"got actions with the behaviour {policy!r} (its stream replays from the seed alone)"
        )
    if isinstance(learner, ControlLearner):
        raise ValueError(
            f"a ControlLearner's control demons drive the behaviour: give policy=horde.EpsilonGreedy(<control demon>), "
            f"got policy={policy!r}"
        )
    if not isinstance(learner, HordeLearner):
        raise TypeError(f"learner must be a HordeLearner, got {type(learner).__name__}")
    env, env_id = _make_env(env, env_kwargs)
    vector = isinstance(env, gym.vector.VectorEnv)
    counter: Any = _StepCounter(env)  # the streams see the environment through it
    obs_space = env.single_observation_space if vector else env.observation_space
    act_space = env.single_action_space if vector else env.action_space
    features = FeatureMap(obs_space)
    n_actions = int(act_space.n) if isinstance(act_space, gym.spaces.Discrete) else None
    learner.demons.validate(features.dim, n_actions)
    start_step = as_int("start_step", start_step, low=0)
    seed = as_seed("seed", seed, count=int(env.num_envs) if vector else 1)
    if progress is not None:
        progress = as_bool("progress", progress)
    stop_on_interrupt = as_bool("stop_on_interrupt", stop_on_interrupt)
    config = {
        "start_step": int(start_step),
        "env": env_id,
        "steps": int(steps),
        "seed": int(seed),
        "record_every": int(record_every),
        "chunk_size": int(chunk_size),
        "n_seeds": int(env.num_envs) if vector else 1,
        "learner": learner_config(learner),
    }
    stream: SingleStream | VectorStream
    if vector:
        vector_stream = VectorStream(counter, features, policy, act_space, seed)
        config["seeded_per_copy"] = vector_stream.seeded_per_copy
        behaviour, stream = vector_stream.policies[0], vector_stream
    else:
        behaviour = as_behaviour_policy(policy, act_space)
    check_off_policy(learner, act_space, repr(behaviour), behaviour.has_probabilities)
    config["policy"] = repr(behaviour)
    state = _initial_state(learner, state, features.dim, int(seed), config["n_seeds"] if vector else None)
    if not vector:
        stream = SingleStream(counter, features, behaviour, act_space, seed)
    fn = _chunk_fn(learner, batched=vector, masked=vector, every=int(record_every))
    replay(stream, int(start_step), chunk_size)
    writer = open_records(
        record_to, learner, record_every=record_every, n_seeds=config["n_seeds"], config=config, chunk_size=chunk_size
    )
    return _learn(
        learner,
        fn,
        state,
        stream,
        steps=steps,
        start_step=int(start_step),
        chunk_size=chunk_size,
        record_every=record_every,
        progress=progress,
        callback=callback,
        stop_on_interrupt=stop_on_interrupt,
        config=config,
        n_seeds=config["n_seeds"],
        batched=vector,
        counter=counter,
        writer=writer,
    )


def _initial_state(learner: HordeLearner, state: Any, dim: int, seed: int, copies: int | None) -> Any:
    """The given state, checked against the learner and the observation size (batched over
    ``copies`` for a vector environment), or a fresh one: for ``copies`` vector copies, copy
    ``i`` starts from ``jax.random.key(seed + i)``; a single environment from ``key(seed)``."""
    if state is not None:
        if copies is not None and np.shape(state.core.head_params.biases)[:1] != (copies,):
            raise ValueError(
                f"state must be batched over the {copies} copies (head biases of shape {(copies, learner.n_demons)}), "
                f"got {np.shape(state.core.head_params.biases)}"
            )
        learner.check_state(state, copies=copies, observation_dim=dim)
        return state
    if copies is None:
        return learner.init(dim, jax.random.key(seed))
    keys = jnp.stack([jax.random.key_data(jax.random.key(seed + i)) for i in range(copies)])
    return jax.vmap(lambda k: learner.init_traced(dim, jax.random.wrap_key_data(k)))(keys)
