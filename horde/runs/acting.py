r"""Acting on a control demon's latest values in ``horde.run``: one compiled call per step.

An ``EpsilonGreedy`` behaviour depends on the weights after the latest update, so ``horde.run``
cannot collect transitions ahead and learn from them in chunks. Instead each environment step
is one compiled call that learns from the transition just made and draws the next action::

    host:  A_t (chosen by the last call) --env.step--> R_{t+1}, S_{t+1}, flags
           (episode over: reset, and S' = the reset observation; else S' = S_{t+1})
    call:  learn from (S_t, A_t, R_{t+1}, S_{t+1}, terminated, truncated, μ(A_t|S_t)),
           then draw A_{t+1} ~ μ(·|S') with the new weights at step t + 1

The action and its probability stay in the call's carried state; the host reads the action
back (one integer) to step the environment, and sends one packed float32 vector
``[x(S_t), x(S_{t+1}), x(S'), R_{t+1}, terminated, truncated]``. The records of a chunk of
``chunk_size`` steps are written into buffers in the carry and read once per chunk, where the
runner checks for divergence as ``horde.run``'s chunked path does.

Randomness is ``run_jax``'s: with ``base = jax.random.key(seed)`` the learner starts from
``learner.init_traced(dim, base, n_actions)``, and the action of step ``t`` is drawn with
``k = jax.random.split(jax.random.fold_in(step_root, t), 3)[0]``,
``step_root = fold_in(fold_in(base, 1), 1)``, ``A_t = index_from_uniform(uniform(k), μ(·|S_t))``.
Where an environment's Python and JAX forms have the same dynamics and resets (e.g. the
``envs`` package's deterministic ``RandomWalk``), ``horde.run`` and ``horde.run_jax`` take the
same actions and learn the same weights up to float32 rounding.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from horde.control import ControlLearner
from horde.runs.behaviour import EpsilonGreedy, index_from_uniform
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
    learner_config,
    locate_divergence,
    record_slot,
    record_values,
    state_finite_fn,
    write_records,
)
from horde.runs.results import RunResult

__all__ = ["ActingDaemon", "run_acting"]


class _Carry(NamedTuple):
    state: Any  # the ControlState
    action: jax.Array  # A_t, int32, indexed from 0
    prob: jax.Array  # μ(A_t|S_t)
    t: jax.Array  # the global step of A_t, uint32
    j: jax.Array  # the step within the chunk, int32
    offset: jax.Array  # the chunk's first record step, int32
    buffers: tuple
    watch: DivergenceWatch
    td_sum: jax.Array
    td_count: jax.Array


def _compiled(learner: ControlLearner, policy: EpsilonGreedy, index: int, anneal: int, every: int, dim: int):
    """``(first, step)``: ``first(state, x, t, step_root) -> (action, prob)`` draws the first
    action; ``step(carry, packed, step_root, T) -> (carry, action)`` learns from one transition
    and draws the next action (``T``, static, is the chunk size the record buffers hold; the
    carry is donated)."""
    cache = compiled_cache(learner)
    key = ("act", policy.demon, policy.epsilon, policy.start, anneal, every, dim)
    if key in cache:
        return cache[key]

    def draw(state, x, t, step_root):
        q = learner.action_values_traced(state, x)[index]
        probs = policy.probabilities(q, t, anneal)
        k_policy = jax.random.split(jax.random.fold_in(step_root, t), 3)[0]
        a = index_from_uniform(jax.random.uniform(k_policy, (), jnp.float32), probs)
        return a, probs[a]

    def step(carry: _Carry, packed, step_root, T: int):
        x, x_next, x_act = packed[:dim], packed[dim : 2 * dim], packed[2 * dim : 3 * dim]
        reward, terminated, truncated = packed[3 * dim], packed[3 * dim + 1] > 0.5, packed[3 * dim + 2] > 0.5
        r, ev = learner.evaluate_and_update_traced(
            carry.state, x, carry.action, reward, x_next, terminated, truncated, carry.prob
        )
        slot = record_slot(carry.j, carry.offset, every, T)
        buffers = write_records(carry.buffers, record_values(learner, r, ev), slot)
        abs_td = jnp.abs(r.td_errors)
        seen = ~jnp.isnan(abs_td)
        t_next = carry.t + jnp.uint32(1)
        a, p = draw(r.state, x_act, t_next, step_root)
        new = _Carry(
            r.state,
            a,
            p,
            t_next,
            carry.j + 1,
            carry.offset,
            buffers,
            carry.watch.see(carry.j, r.predictions),
            carry.td_sum + jnp.sum(jnp.where(seen, abs_td, 0.0)),
            carry.td_count + jnp.sum(seen),
        )
        return new, a

    cache[key] = (jax.jit(draw), jax.jit(step, static_argnums=(3,), donate_argnums=(0,)))
    return cache[key]


def _check(learner: Any, env: Any, policy: EpsilonGreedy, start_step: int, actions: Any) -> np.ndarray:
    if not isinstance(learner, ControlLearner):
        raise ValueError(
            f"{policy!r} acts on a control demon's values: the learner must be a horde.ControlLearner "
            f"holding that demon, got {type(learner).__name__}"
        )
    if isinstance(env, gym.vector.VectorEnv):
        raise ValueError(
            f"{policy!r} acts on one learner state per step: give horde.run a single environment "
            "(one run per seed), or use horde.run_jax with n_seeds for many seeds at once"
        )
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"{policy!r} needs a Discrete action space, got {env.action_space!r}")
    # A resumed acting run replays the actions it took: they depended on the learner's weights,
    # so the behaviour alone cannot replay them.
    taken = np.zeros((0,), np.int64) if actions is None else np.asarray(actions)
    if taken.ndim != 1 or taken.shape[0] != start_step or not np.issubdtype(taken.dtype, np.integer):
        raise ValueError(
            f"actions must be the {start_step} actions the run took before start_step={start_step} "
            f"(RunResult.actions of the run it continues; integers, shape ({start_step},)), got "
            f"{'None' if actions is None else f'{taken.dtype} {taken.shape}'}"
        )
    n = int(env.action_space.n)
    if taken.size and not (0 <= taken.min() and taken.max() < n):
        raise ValueError(f"actions must be in [0, {n}), got values from {taken.min()} to {taken.max()}")
    return taken


def run_acting(
    learner: Any,
    env: gym.Env,
    env_id: str,
    policy: EpsilonGreedy,
    *,
    steps: int,
    seed: int,
    state: Any,
    record_every: int,
    chunk_size: int,
    progress: bool | None,
    callback: Any,
    stop_on_interrupt: bool,
    start_step: int = 0,
    actions: Any = None,
) -> RunResult:
    """``horde.run`` with an ``EpsilonGreedy`` behaviour: one compiled call per step (see the
    module docstring). The arguments are ``horde.run``'s, checked there.

    A run resumed at ``start_step`` (with the ``state`` learned by then and the ``actions``
    taken by then, ``RunResult.actions``) replays those actions in ``env`` from
    ``reset(seed=seed)``, then draws the action of step ``start_step`` with the keys and ε of
    that step: it continues the earlier run bit for bit. ε's default annealing is 5 % of
    ``start_step + steps``, the whole run's length.

    Raises:
        ValueError: the learner is not a ``ControlLearner`` holding ``policy.demon``, ``env`` is
            a vector environment or has no ``Discrete`` action space, ``actions`` are not the
            ``start_step`` actions taken before it, demons that do not fit the environment, or
            a non-finite observation.
        DivergenceError: as ``horde.run``.
    """
    replayed = _check(learner, env, policy, start_step, actions)
    assert isinstance(learner, ControlLearner)
    act_space = env.action_space
    assert isinstance(act_space, gym.spaces.Discrete)
    n_actions, action_start = int(act_space.n), int(act_space.start)
    features = FeatureMap(env.observation_space)
    dim = features.dim
    learner.demons.validate(dim, n_actions)
    index = learner.control_index(policy.demon)
    check_off_policy(learner, act_space, repr(policy), True)
    anneal = policy.resolved_anneal_steps(start_step + steps)
    config: dict[str, Any] = {
        "start_step": int(start_step),
        "env": env_id,
        "runner": "run",
        "steps": int(steps),
        "seed": int(seed),
        "record_every": int(record_every),
        "chunk_size": int(chunk_size),
        "n_seeds": 1,
        "policy": repr(policy),
        "anneal_steps": anneal,
        "learner": learner_config(learner),
    }
    first_fn, step_fn = _compiled(learner, policy, index, anneal, record_every, dim)
    finite_fn = state_finite_fn(learner, False)
    base = jax.random.key(seed)
    step_root = jax.random.fold_in(jax.random.fold_in(base, 1), 1)
    if state is None:
        state = learner.init_traced(dim, base, n_actions)
    # The step donates its carry: never the caller's arrays.
    good_state = jax.tree_util.tree_map(jnp.copy, state)

    recorder = Recorder(1, learner.n_demons, record_every)
    bar = Progress(steps, progress)
    episodes: list[tuple[int, int, float, int]] = []
    ep_return, ep_length = 0.0, 0
    start_time = time.perf_counter()
    raw, _ = env.reset(seed=seed)
    taken = np.zeros(start_step + steps, np.int32)
    taken[:start_step] = replayed
    for a in replayed.tolist():
        raw, reward, term, trunc, _ = env.step(a + action_start)
        ep_return, ep_length = ep_return + float(reward), ep_length + 1
        if term or trunc:
            ep_return, ep_length = 0.0, 0
            raw, _ = env.reset()
    x = features(raw)
    action, prob = first_fn(good_state, jnp.asarray(x), jnp.uint32(start_step), step_root)
    zero = jnp.zeros((), jnp.int32)
    # The chunk fields are set at the start of each chunk.
    carry = _Carry(
        jax.tree_util.tree_map(jnp.copy, good_state),
        action,
        prob,
        jnp.uint32(start_step),
        zero,
        zero,
        (),
        DivergenceWatch.start(learner.n_demons),
        zero,
        zero,
    )
    done = 0
    reward_scalar = np.empty(3, np.float32)

    def result(done: int, state: Any) -> RunResult:
        wall = time.perf_counter() - start_time
        r = assemble_result(
            learner, recorder, episodes, wall=wall, done=done, record_every=record_every, config=config, state=state
        )
        r.actions = taken[None, : start_step + done].copy()
        return r

    try:
        while done < steps:
            T = min(chunk_size, steps - done)
            offset = (-(start_step + done)) % record_every
            carry = carry._replace(
                j=jnp.zeros((), jnp.int32),
                offset=jnp.asarray(offset, jnp.int32),
                # Buffers of a full chunk even for a shorter last one: one compiled step.
                buffers=empty_records(learner, chunk_size, record_every),
                watch=DivergenceWatch.start(learner.n_demons),
                td_sum=jnp.zeros((), jnp.float32),
                td_count=jnp.zeros((), jnp.float32),
            )
            rewards, terminated, truncated = np.zeros(T, np.float32), np.zeros(T, bool), np.zeros(T, bool)
            for j in range(T):
                a = int(action)
                taken[start_step + done + j] = a
                next_raw, reward, term, trunc, _ = env.step(a + action_start)
                x_next = features(next_raw)
                if not np.isfinite(x_next).all():
                    raise ValueError(
                        f"the environment returned a non-finite observation at step {done + j}: {next_raw!r}"
                    )
                ep_return += float(reward)
                ep_length += 1
                if term or trunc:
                    episodes.append((0, start_step + done + j, ep_return, ep_length))
                    ep_return, ep_length = 0.0, 0
                    raw, _ = env.reset()
                    x_act = features(raw)
                else:
                    x_act = x_next
                reward_scalar[:] = (reward, term, trunc)
                packed = np.concatenate([x, x_next, x_act, reward_scalar])
                carry, action = step_fn(carry, packed, step_root, chunk_size)
                rewards[j], terminated[j], truncated[j] = reward, term, trunc
                x = x_act
            buffers = [np.asarray(b)[None] for b in carry.buffers]
            watch = DivergenceWatch(*(np.asarray(a)[None] for a in carry.watch))  # type: ignore[arg-type]
            rows = (rewards[None], terminated[None], truncated[None], np.ones((1, T), bool))
            diverged = locate_divergence(watch, np.atleast_2d(np.asarray(finite_fn(carry.state))), T)
            if diverged is not None:
                _, t, bad = diverged
                recorder.add(start_step + done, buffers, *(r[:, : t + 1] for r in rows))
                raise divergence_error(
                    learner,
                    step=start_step + done + t,
                    copy=0,
                    n_copies=1,
                    seed=seed,
                    demons=bad,
                    result=result(done, good_state),
                )
            recorder.add(start_step + done, buffers, *rows)
            mean_td = float(carry.td_sum) / max(float(carry.td_count), 1.0)
            # The next step donates the carry: keep a copy of the checked state.
            good_state, done = jax.tree_util.tree_map(jnp.copy, carry.state), done + T
            bar.update(T, np.asarray([mean_td]))
            if callback is not None:
                callback(start_step + done, good_state)
    except KeyboardInterrupt:
        if not stop_on_interrupt:
            raise
        config["interrupted"] = True
    finally:
        bar.close()
    jax.block_until_ready(good_state)
    return result(done, good_state)


class ActingDaemon:
    r"""A control learner that acts, one step at a time: the ``Daemon`` of a control demon.

    ``start(observation)`` returns the first action; each ``step(reward, next_observation,
    terminated, truncated, reset_observation)`` learns from the transition and returns the
    next action, drawn ε-greedily on the control demon's latest values (one compiled call,
    the step ``horde.run`` uses, with the same keys: an ``ActingDaemon`` with seed ``s`` driving
    an environment takes the actions ``horde.run(..., seed=s)`` takes).

    Args:
        learner: the ``ControlLearner``.
        policy: the ``EpsilonGreedy`` behaviour (its ``anneal_steps`` must be given, or
            ``steps``).
        observation_space: the environment's observation space (for the feature map).
        n_actions: actions of the ``Discrete`` action space (indexed from 0).
        seed: the learner's weights and the action draws (``jax.random.key(seed)``).
        steps: the run's length, for the default annealing (5 % of it).
        state: a learner state to continue from (e.g. ``daemon.state`` saved at step
            ``start_step``, or a ``horde.run`` result's); default: a fresh one from ``seed``.
        start_step: the global step the daemon starts at: ε's schedule and the action draws
            continue from there, so a daemon given the state and step of an earlier one (and
            an environment in the state it left) continues it bit for bit.

    Attributes:
        state: a copy of the learner state after the last step.
        t: the number of steps learned (the next action is that of global step ``t``).

    Unlike the runners it does not check for divergence: read ``state`` to inspect it.

    Raises:
        ValueError: not a ``ControlLearner`` holding ``policy.demon``, or no annealing length.
    """

    def __init__(
        self,
        learner: Any,
        policy: EpsilonGreedy,
        observation_space: gym.Space,
        n_actions: int,
        *,
        seed: int = 0,
        steps: int | None = None,
        state: Any = None,
        start_step: int = 0,
    ) -> None:
        if not isinstance(learner, ControlLearner):
            raise ValueError(f"ActingDaemon: learner must be a horde.ControlLearner, got {type(learner).__name__}")
        if not isinstance(policy, EpsilonGreedy):
            raise ValueError(f"ActingDaemon: policy must be a horde.EpsilonGreedy, got {policy!r}")
        if policy.anneal_steps is None and steps is None:
            raise ValueError("ActingDaemon: give steps= (the default annealing is 5 % of them) or anneal_steps")
        self.learner, self.policy = learner, policy
        self.features = FeatureMap(observation_space)
        self.n_actions = int(n_actions)
        learner.demons.validate(self.features.dim, self.n_actions)
        index = learner.control_index(policy.demon)
        anneal = policy.resolved_anneal_steps(steps or 0)
        self._first, self._step = _compiled(learner, policy, index, anneal, 1, self.features.dim)
        base = jax.random.key(seed)
        self._root = jax.random.fold_in(jax.random.fold_in(base, 1), 1)
        fresh = learner.init_traced(self.features.dim, base, self.n_actions)
        if state is not None:
            shapes = [np.shape(a) for a in jax.tree_util.tree_leaves(state)]
            want = [np.shape(a) for a in jax.tree_util.tree_leaves(fresh)]
            same = str(jax.tree_util.tree_structure(state)) == str(jax.tree_util.tree_structure(fresh))
            if not same or shapes != want:
                raise ValueError(
                    "ActingDaemon: state must be a ControlState of this learner for this environment "
                    f"(array shapes {want}), got {type(state).__name__} with shapes {shapes}"
                )
            fresh = jax.tree_util.tree_map(jnp.copy, state)
        if isinstance(start_step, bool) or not isinstance(start_step, (int, np.integer)) or start_step < 0:
            raise ValueError(f"ActingDaemon: start_step must be an integer >= 0, got {start_step!r}")
        self._state = fresh
        self._carry: _Carry | None = None
        self._x: np.ndarray | None = None
        self.t = int(start_step)

    @property
    def state(self) -> Any:
        """The learner state (a copy)."""
        state = self._state if self._carry is None else self._carry.state
        return jax.tree_util.tree_map(jnp.copy, state)

    def start(self, observation: Any) -> int:
        """The first action for ``observation`` (call once, before ``step``)."""
        self._x = self.features(observation)
        action, prob = self._first(self._state, jnp.asarray(self._x), jnp.uint32(self.t), self._root)
        zero = jnp.zeros((), jnp.int32)
        self._carry = _Carry(
            jax.tree_util.tree_map(jnp.copy, self._state),
            action,
            prob,
            jnp.uint32(self.t),
            zero,
            jnp.zeros((), jnp.int32),
            empty_records(self.learner, 1, 1),
            DivergenceWatch.start(self.learner.n_demons),
            jnp.zeros((), jnp.float32),
            jnp.zeros((), jnp.float32),
        )
        return int(action)

    def step(
        self, reward: float, next_observation: Any, terminated: bool, truncated: bool, reset_observation: Any = None
    ) -> int:
        """Learns from the transition out of the last action and returns the next action, for
        ``reset_observation`` where the episode ended (required then), else for
        ``next_observation``.

        Raises:
            ValueError: ``start`` was not called, a non-finite observation, or an episode end
                without ``reset_observation``.
        """
        if self._carry is None or self._x is None:
            raise ValueError("ActingDaemon.step: call start(observation) first")
        x_next = self.features(next_observation)
        if not np.isfinite(x_next).all():
            raise ValueError(f"ActingDaemon.step: next_observation must be finite, got {next_observation!r}")
        if terminated or truncated:
            if reset_observation is None:
                raise ValueError("ActingDaemon.step: the episode ended; give reset_observation (the next episode's)")
            x_act = self.features(reset_observation)
        else:
            x_act = x_next
        packed = np.concatenate([self._x, x_next, x_act, np.asarray([reward, terminated, truncated], np.float32)])
        carry = self._carry._replace(j=jnp.zeros((), jnp.int32), watch=DivergenceWatch.start(self.learner.n_demons))
        self._carry, action = self._step(carry, packed, self._root, 1)
        self._x = x_act
        self.t += 1
        return int(action)
