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

import ctypes
import functools
import math
import time
from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from horde.control import ControlLearner
from horde.core import as_int, as_seed
from horde.runs.behaviour import EpsilonGreedy, index_from_uniform
from horde.runs.dispatch import warn_if_async
from horde.runs.features import FeatureMap
from horde.runs.recording import (
    DivergenceWatch,
    Progress,
    Recorder,
    assemble_result,
    check_off_policy,
    compiled_cache,
    divergence_error,
    finish_chunk,
    learner_config,
    locate_divergence,
    open_records,
    record_names,
    record_slot,
    record_values,
)
from horde.runs.records import RecordsError
from horde.runs.results import RunError, RunResult
from horde.runs.streams import checked_reward

__all__ = ["ActingDaemon", "compiled_step", "run_acting"]


class _Carry(NamedTuple):
    state: Any  # the ControlState
    x: jax.Array  # x(S_t), float32 (dim,)
    action: jax.Array  # A_t, int32, indexed from 0
    prob: jax.Array  # μ(A_t|S_t)
    t: jax.Array  # the global step of A_t, uint32
    j: jax.Array  # the step within the chunk, int32
    offset: jax.Array  # the chunk's first record step, int32
    watch: DivergenceWatch
    td_sum: jax.Array
    td_count: jax.Array
    anneal: jax.Array  # ε's annealing length in steps, float32: the run's, passed through


class _Packing:
    """The carry as one flat ``float32`` array, and back (both traceable).

    A compiled call's host cost grows with the number of arrays it takes and returns (about
    fifty in the carry of a small control learner); packed, the step takes and returns one.
    float32 leaves are stored as they are, other 32-bit leaves bit-cast and bools converted to
    0 or 1, so nothing is rounded (the stored integers are only copied, never computed with,
    so their bits survive); a leaf of another dtype gets a flat array of its own. float32 is
    the stored type because most of the carry is float32: those leaves then go into the packed
    array without a conversion kernel each.
    """

    def __init__(self, example: Any) -> None:
        leaves, self.treedef = jax.tree_util.tree_flatten(example)
        self.dtypes: list[np.dtype] = []  # each group's dtype
        self.slots: list[tuple[int, int, int, tuple[int, ...], np.dtype]] = []  # group, start, size, shape, dtype
        sizes: list[int] = []
        for leaf in leaves:
            dtype = np.dtype(leaf.dtype)
            stored = np.dtype(np.float32) if dtype.itemsize == 4 or dtype == np.bool_ else dtype
            if stored not in self.dtypes:
                self.dtypes.append(stored)
                sizes.append(0)
            g = self.dtypes.index(stored)
            size = int(np.prod(leaf.shape, dtype=np.int64))
            self.slots.append((g, sizes[g], size, tuple(leaf.shape), dtype))
            sizes[g] += size

    def _stored(self, tree: Any) -> list[jax.Array]:
        out = []
        for leaf, (g, _, _, _, dtype) in zip(jax.tree_util.tree_leaves(tree), self.slots):
            flat = jnp.ravel(leaf)
            if dtype == np.bool_:
                flat = flat.astype(self.dtypes[g])
            elif dtype != self.dtypes[g]:
                flat = jax.lax.bitcast_convert_type(flat, self.dtypes[g])
            out.append(flat)
        return out

    def pack(self, tree: Any) -> tuple[jax.Array, ...]:
        groups: list[list[jax.Array]] = [[] for _ in self.dtypes]
        for flat, (g, *_) in zip(self._stored(tree), self.slots):
            groups[g].append(flat)
        return tuple(_concatenate(parts) for parts in groups)

    def unpack(self, groups: tuple[jax.Array, ...]) -> Any:
        leaves = []
        for g, i, size, shape, dtype in self.slots:
            flat = groups[g][i : i + size]
            if dtype == np.bool_:
                flat = flat != 0
            elif dtype != self.dtypes[g]:
                flat = jax.lax.bitcast_convert_type(flat, dtype)
            leaves.append(flat.reshape(shape))
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def _concatenate(parts: list[jax.Array], fan_in: int = 8) -> jax.Array:
    """``jnp.concatenate(parts)`` as a tree of concatenations of at most ``fan_in`` parts.

    XLA on the CPU does not fuse a concatenation of many operands: each operand becomes a
    kernel of its own. Nested ones of a few operands each fuse with what computes them; the
    barrier keeps XLA from flattening the tree back into one concatenation.
    """
    while len(parts) > fan_in:
        parts = [
            jax.lax.optimization_barrier(jnp.concatenate(parts[i : i + fan_in]))
            if len(parts[i : i + fan_in]) > 1
            else parts[i]
            for i in range(0, len(parts), fan_in)
        ]
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts)


class _Layout:
    """The carry split in two packed parts (each a ``_Packing``): the leaves a step changes,
    which the step takes and returns, and the leaves it passes through unchanged
    (e.g. Greedy-GQ's secondary weights of demons that learn with another rule, a third of a
    small network's carry), which it takes each step among the chunk's constants and never
    writes: copying them into the returned carry at every step was most of its largest kernel.
    """

    def __init__(self, example: Any, fixed: list[bool]) -> None:
        leaves, self.treedef = jax.tree_util.tree_flatten(example)
        self.fixed = fixed
        self.moving_packing = _Packing([leaf for leaf, f in zip(leaves, fixed) if not f])
        self.fixed_packing = _Packing([leaf for leaf, f in zip(leaves, fixed) if f])

    def pack_moving(self, tree: Any) -> tuple[jax.Array, ...]:
        leaves = jax.tree_util.tree_leaves(tree)
        return self.moving_packing.pack([leaf for leaf, f in zip(leaves, self.fixed) if not f])

    def pack(self, tree: Any) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
        leaves = jax.tree_util.tree_leaves(tree)
        fixed = self.fixed_packing.pack([leaf for leaf, f in zip(leaves, self.fixed) if f])
        return self.pack_moving(tree), fixed

    def unpack(self, moving: tuple[jax.Array, ...], fixed: tuple[jax.Array, ...]) -> Any:
        parts = {False: iter(self.moving_packing.unpack(moving)), True: iter(self.fixed_packing.unpack(fixed))}
        return jax.tree_util.tree_unflatten(self.treedef, [next(parts[f]) for f in self.fixed])


class _ActionReader:
    """Reads the action a step drew out of the packed carry it returned, as an ``int``.

    The step returns no array of its own for the action: each output array costs the call
    several microseconds, and reading a fresh one through NumPy as many again. On the CPU the
    carry's buffer is host memory, read in place once the step has finished; elsewhere the
    action's group is copied to the host.
    """

    def __init__(self, layout: _Layout) -> None:
        index = jax.tree_util.tree_unflatten(layout.treedef, list(range(len(layout.fixed)))).action
        self.group, self.start, _, _, dtype = layout.moving_packing.slots[index - sum(layout.fixed[:index])]
        assert not layout.fixed[index] and dtype == np.int32
        assert layout.moving_packing.dtypes[self.group] == np.float32
        self.on_cpu: bool | None = None

    def __call__(self, groups: tuple[jax.Array, ...]) -> int:
        group = groups[self.group]
        if self.on_cpu is None:
            self.on_cpu = all(d.platform == "cpu" for d in group.devices())
        if self.on_cpu:
            group.block_until_ready()
            return ctypes.c_int32.from_address(group.unsafe_buffer_pointer() + 4 * self.start).value
        return int(np.asarray(group).view(np.int32)[self.start])


def _passed_through(advance: Any, example: Any, *others: Any) -> list[bool]:
    """Per leaf of ``example``, whether ``advance(carry, *others)``'s first output passes it
    through unchanged: its jaxpr returns that input variable itself, bit for bit."""
    leaves, treedef = jax.tree_util.tree_flatten(example)

    def flat(leaves, *rest):
        return jax.tree_util.tree_leaves(advance(jax.tree_util.tree_unflatten(treedef, leaves), *rest)[0])

    jaxpr = jax.make_jaxpr(flat)(leaves, *others).jaxpr
    return [out is inp for out, inp in zip(jaxpr.outvars, jaxpr.invars[: len(leaves)])]


class _Compiled(NamedTuple):
    """The compiled functions of one acting configuration (see ``_compiled``)."""

    layout: _Layout
    pack: Any
    unpack: Any
    uniforms: Any
    first: Any
    step: Any
    begin: Any
    end: Any
    action: _ActionReader


def _compiled(learner: ControlLearner, policy: EpsilonGreedy, index: int, every: int, dim: int, n_actions: int):
    """The compiled functions of acting with ``policy`` on ``learner`` (cached on the learner).

    ``uniforms(step_root, t0, n)``: the uniform numbers of the action draws at global steps
    ``t0 .. t0 + n - 1`` (``n`` static). They depend on the key alone, not on the weights, so
    they are drawn once per chunk, outside the per-step call (threefry's loops are the costliest
    part of a small step on the CPU). ``first(state, x, t, u, anneal)``: the first action and
    its probability (``t``: its global step; ``anneal``: ε's annealing length, float32, which the
    carry then holds). ``pack(carry) -> (groups, fixed)``: the carry's
    packed parts (see ``_Layout``), ``unpack(groups, fixed)`` its inverse.
    ``step(groups, records, (draws, fixed), inputs, T)``: learns from one transition and draws
    the next action; ``groups`` is the packed changing part of the carry, ``records`` the
    chunk's record rows ``(rows, n_values, n_demons)``, ``draws`` the chunk's uniforms,
    ``fixed`` the packed unchanging part of the carry, ``inputs`` the packed ``[x(S_{t+1}),
    x(S'), R_{t+1}, terminated, truncated]``; returns ``(groups, records)`` and donates
    ``records`` (written in place; the carry is rewritten whole each step, and donating it
    only added a copy of it inside the call); ``action(groups)`` reads the action it drew (``_ActionReader``).

    A chunk's bookkeeping is one compiled call at each end (op by op, its dozen small arrays cost
    about as much as a few dozen steps): ``begin(carry, offset, step_root, t0, T)`` sets the
    chunk's fields of the carry and returns the step's ``(groups, records, (draws, fixed))``
    for a chunk of ``T`` steps whose first action is drawn at global step ``t0``;
    ``end(groups, fixed)`` returns ``(carry, finite)``: the carry and ``learner.finite_demons``
    of its state.
    """
    cache = compiled_cache(learner)
    # ε's annealing length is in the carry, not compiled in: runs of any length share the compiled step.
    key = ("act", policy.demon, policy.epsilon, policy.start, every, dim, n_actions)
    if key in cache:
        return cache[key]
    example = jax.eval_shape(
        lambda: _Carry(
            learner.init_traced(dim, jax.random.key(0), n_actions),
            jnp.zeros((dim,), jnp.float32),
            jnp.zeros((), jnp.int32),
            jnp.zeros((), jnp.float32),
            jnp.zeros((), jnp.uint32),
            jnp.zeros((), jnp.int32),
            jnp.zeros((), jnp.int32),
            DivergenceWatch.start(learner.n_demons),
            jnp.zeros((), jnp.float32),
            jnp.zeros((), jnp.float32),
            jnp.zeros((), jnp.float32),
        )
    )

    def uniforms(step_root, t0, n: int):
        def one(t):
            k_policy = jax.random.split(jax.random.fold_in(step_root, t), 3)[0]
            return jax.random.uniform(k_policy, (), jnp.float32)

        return jax.vmap(one)(t0 + jnp.arange(n, dtype=jnp.uint32))

    def draw(state, x, t, u, anneal):
        q = learner.action_values_traced(state, x)[index]
        probs = policy.probabilities(q, t, anneal)
        a = index_from_uniform(u, probs)
        return a, probs[a]

    def first(state, x, t, u, anneal):
        return draw(state, x, t, u, anneal)

    def advance(carry: _Carry, records, draws, inputs, T: int):
        x_next, x_act = inputs[:dim], inputs[dim : 2 * dim]
        reward, terminated, truncated = inputs[2 * dim], inputs[2 * dim + 1] > 0.5, inputs[2 * dim + 2] > 0.5
        r, ev = learner.evaluate_and_update_traced(
            carry.state, carry.x, carry.action, reward, x_next, terminated, truncated, carry.prob
        )
        slot = record_slot(carry.j, carry.offset, every, T)
        values = jnp.stack([v.astype(jnp.float32) for v in record_values(learner, r, ev)])
        records = jax.lax.dynamic_update_index_in_dim(records, values, slot, 0)
        abs_td = jnp.abs(r.td_errors)
        seen = ~jnp.isnan(abs_td)
        t_next = carry.t + jnp.uint32(1)
        a, p = draw(r.state, x_act, t_next, jax.lax.dynamic_index_in_dim(draws, carry.j, keepdims=False), carry.anneal)
        new = _Carry(
            r.state,
            x_act,
            a,
            p,
            t_next,
            carry.j + 1,
            carry.offset,
            carry.watch.see(carry.j, r.predictions),
            carry.td_sum + jnp.sum(jnp.where(seen, abs_td, 0.0)),
            carry.td_count + jnp.sum(seen),
            carry.anneal,
        )
        return new, records, a

    records_example = jax.ShapeDtypeStruct((2, len(record_names(learner)), learner.n_demons), jnp.float32)
    fixed = _passed_through(
        functools.partial(advance, T=1),
        example,
        records_example,
        jax.ShapeDtypeStruct((1,), jnp.float32),
        jax.ShapeDtypeStruct((2 * dim + 3,), jnp.float32),
    )
    layout = _Layout(example, fixed)

    def step(groups, records, constants, inputs, T: int):
        draws, fixed = constants
        new, records, a = advance(layout.unpack(groups, fixed), records, draws, inputs, T)
        # One concatenation (not an update per leaf in place): a kernel per leaf is what a
        # step of this size costs.
        return layout.pack_moving(new), records

    def begin(carry: _Carry, offset, step_root, t0, T: int):
        carry = carry._replace(
            j=jnp.zeros((), jnp.int32),
            offset=offset,
            watch=DivergenceWatch.start(learner.n_demons),
            td_sum=jnp.zeros((), jnp.float32),
            td_count=jnp.zeros((), jnp.float32),
        )
        groups, fixed = layout.pack(carry)
        return groups, _chunk_records(learner, T, every), (uniforms(step_root, t0, T), fixed)

    def end(groups, fixed):
        carry = layout.unpack(groups, fixed)
        return carry, learner.finite_demons(carry.state)

    cache[key] = _Compiled(
        layout,
        jax.jit(layout.pack),
        jax.jit(layout.unpack),
        jax.jit(uniforms, static_argnums=(2,)),
        jax.jit(first),
        jax.jit(step, static_argnums=(4,), donate_argnums=(1,)),
        jax.jit(begin, static_argnums=(4,)),
        jax.jit(end),
        _ActionReader(layout),
    )
    return cache[key]


def _all_finite(x: np.ndarray) -> bool:
    """Whether every entry of ``x`` is finite. A short observation is checked in Python: right
    after the compiled step has run, each NumPy call costs several times its usual time."""
    if x.size <= 32:
        return all(map(math.isfinite, x.tolist()))
    return bool(np.isfinite(x).all())


def _initial_state(learner: ControlLearner, dim: int, key: jax.Array, n_actions: int) -> Any:
    """``learner.init_traced(dim, key, n_actions)`` as one compiled call (cached on the learner):
    run op by op, the sparse initialisation took as long as a few hundred steps of a run. XLA
    computes the same bits either way."""
    cache = compiled_cache(learner)
    if "act-init" not in cache:
        cache["act-init"] = jax.jit(learner.init_traced, static_argnums=(0, 2))
    return cache["act-init"](dim, key, n_actions)


def _chunk_records(learner: ControlLearner, T: int, every: int) -> jax.Array:
    """Zeroed record rows of a chunk of ``T`` steps, ``(rows, n_values, n_demons)`` (the rows
    of ``empty_records``, the values of ``record_names`` stacked)."""
    rows = -(-T // every) + 1
    return jnp.zeros((rows, len(record_names(learner)), learner.n_demons), jnp.float32)


@jax.jit
def _fresh(tree: Any) -> Any:
    """Copies of ``tree``'s arrays (a compiled call may hand back an input array itself): a
    run's and a daemon's states are their own arrays, never the caller's. One compiled call for the whole tree: a ``jnp.copy`` per leaf,
    dispatched one by one, cost about as much per chunk as a hundred steps."""
    return jax.tree_util.tree_map(jnp.copy, tree)


def _checked_state(where: str, learner: ControlLearner, state: Any, dim: int, n_actions: int) -> Any:
    """``state`` if it is a ``ControlState`` of ``learner`` for this environment (its tree, shapes
    and dtypes those of ``learner.init_traced``), else a ValueError naming what differs."""
    want = jax.eval_shape(lambda: learner.init_traced(dim, jax.random.key(0), n_actions))
    got_def, want_def = jax.tree_util.tree_structure(state), jax.tree_util.tree_structure(want)
    got = [
        (tuple(np.shape(a)), np.dtype(getattr(a, "dtype", np.float64)).name) for a in jax.tree_util.tree_leaves(state)
    ]
    exp = [(tuple(a.shape), np.dtype(a.dtype).name) for a in jax.tree_util.tree_leaves(want)]
    if str(got_def) != str(want_def) or got != exp:
        bad = [f"leaf {i}: {g} where {e} was expected" for i, (g, e) in enumerate(zip(got, exp)) if g != e]
        detail = (
            "; ".join(bad[:3]) if bad and len(got) == len(exp) else f"{len(got)} arrays where {len(exp)} were expected"
        )
        raise ValueError(
            f"{where}: state must be a ControlState of this learner for this environment "
            f"({len(exp)} arrays, as learner.init_traced gives), got {type(state).__name__} ({detail})"
        )
    return state


def _check(learner: Any, env: Any, policy: EpsilonGreedy, start_step: int, steps: int, actions: Any) -> np.ndarray:
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
    if start_step + steps > 2**32 - 1:  # the step counter of the action draws is a uint32
        raise ValueError(f"an acting run's start_step + steps must be at most {2**32 - 1}, got {start_step} + {steps}")
    # A resumed acting run replays the actions it took: they depended on the learner's weights,
    # so the behaviour alone cannot replay them.
    taken = np.zeros((0,), np.int64) if actions is None else np.asarray(actions)
    if taken.ndim == 2 and taken.shape[0] == 1:
        taken = taken[0]  # RunResult.actions of the one-seed run it continues: (1, start_step)
    if taken.ndim != 1 or taken.shape[0] != start_step or not np.issubdtype(taken.dtype, np.integer):
        raise ValueError(
            f"actions must be the {start_step} actions the run took before start_step={start_step} "
            f"(RunResult.actions of the run it continues; integers, shape ({start_step},) or "
            f"(1, {start_step})), got "
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
    record_to: Any = None,
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
            ``start_step`` actions taken before it, ``start_step + steps`` beyond 2**32 - 1 (the
            step counter), demons that do not fit the environment, a non-finite observation or a
            NaN reward.
        DivergenceError: as ``horde.run``.
        RunError: ``callback`` raised, or the records could not be written (as ``horde.run``).
        RecordsError: ``record_to`` cannot be written, or holds another run's records.
    """
    replayed = _check(learner, env, policy, start_step, steps, actions)
    assert isinstance(learner, ControlLearner)
    act_space = env.action_space
    assert isinstance(act_space, gym.spaces.Discrete)
    n_actions, action_start = int(act_space.n), int(act_space.start)
    features = FeatureMap(env.observation_space)
    dim = features.dim
    learner.demons.validate(dim, n_actions)
    index = learner.control_index(policy.demon)
    check_off_policy(learner, act_space, repr(policy), True)
    warn_if_async("horde.run", stacklevel=4)  # the caller of horde.run
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
    fns = _compiled(learner, policy, index, record_every, dim, n_actions)
    anneal_length = jnp.float32(anneal)
    base = jax.random.key(seed)
    step_root = jax.random.fold_in(jax.random.fold_in(base, 1), 1)
    if state is None:
        state = _initial_state(learner, dim, base, n_actions)
    else:
        state = _checked_state("horde.run", learner, state, dim, n_actions)
    good_state = _fresh(state)

    writer = open_records(
        record_to, learner, record_every=record_every, n_seeds=1, config=config, chunk_size=chunk_size
    )
    recorder = Recorder(1, learner.n_demons, record_every, writer)
    bar = Progress(steps, progress)
    episodes: list[tuple[int, int, float, int]] = []
    ep_return, ep_length = 0.0, 0
    start_time = time.perf_counter()
    taken = np.zeros(start_step + steps, np.int32)
    taken[:start_step] = replayed
    done = 0

    def result(done: int, state: Any) -> RunResult:
        wall = time.perf_counter() - start_time
        r = assemble_result(
            learner, recorder, episodes, wall=wall, done=done, record_every=record_every, config=config, state=state
        )
        r.actions = taken[None, : start_step + done].copy()
        return r

    def stop(reason: str) -> None:
        nonlocal writer
        if writer is not None:
            closing, writer = writer, None  # once: the first reason is the one kept
            try:
                closing.close(complete=False, stopped=reason, wall_time=time.perf_counter() - start_time)
            except RecordsError:
                pass  # the error being raised says more; the committed records stay readable

    def env_error(cause: Exception, step: int, during: str = "") -> RunError:
        """The environment raised at ``step``: the run stops with what it learned in full."""
        what = f"the environment raised {type(cause).__name__} at step {step}{during}: {cause}"
        stop(what)
        return RunError(
            f"{what}. error.result holds the records and the last good state, after step "
            f"{start_step + done} (the last chunk learned in full)",
            step=step,
            result=result(done, good_state),
        )

    try:
        raw, _ = env.reset(seed=seed)
    except Exception as cause:
        bar.close()
        raise env_error(cause, 0, " (its first reset)") from cause
    # A resumed run first replays the actions taken before it: the environment must reach the
    # state it was in, and an error on the way is the run's error like any other.
    for replay_step, a in enumerate(replayed.tolist()):
        try:
            raw, reward, term, trunc, _ = env.step(a + action_start)
            ep_return, ep_length = ep_return + float(reward), ep_length + 1
            if term or trunc:
                ep_return, ep_length = 0.0, 0
                raw, _ = env.reset()
        except Exception as cause:
            bar.close()
            raise env_error(
                cause, replay_step, f" while replaying the {start_step} actions taken before the resume"
            ) from cause
    x = features(raw)
    t0 = jnp.uint32(start_step)
    action, prob = fns.first(good_state, jnp.asarray(x), t0, fns.uniforms(step_root, t0, 1)[0], anneal_length)
    a = int(action)
    carry = _Carry(
        good_state,
        jnp.asarray(x),
        action,
        prob,
        t0,
        # The chunk fields are set at the start of each chunk.
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
        DivergenceWatch.start(learner.n_demons),
        jnp.zeros((), jnp.float32),
        jnp.zeros((), jnp.float32),
        anneal_length,
    )

    try:
        while done < steps:
            T = min(chunk_size, steps - done)
            # Buffers of a full chunk even for a shorter last one: one compiled step.
            groups, records, constants = fns.begin(
                carry,
                np.int32((-(start_step + done)) % record_every),
                step_root,
                np.uint32(start_step + done + 1),
                chunk_size,
            )
            # Per step the host does as little NumPy as it can: each call costs several times
            # its usual time right after the compiled step has run. The chunk's actions,
            # rewards and flags gather in lists, written out once per chunk.
            actions_now: list[int] = []
            rewards_now: list[float] = []
            terminated_now: list[bool] = []
            truncated_now: list[bool] = []
            for j in range(T):
                actions_now.append(a)
                try:
                    next_raw, reward, term, trunc, _ = env.step(a + action_start)
                except Exception as cause:
                    raise env_error(cause, start_step + done + j) from cause
                x_next = features(next_raw)
                if not _all_finite(x_next):
                    raise ValueError(
                        f"the environment returned a non-finite observation at step {start_step + done + j}: {next_raw!r}"
                    )
                reward = checked_reward(reward, start_step + done + j)
                ended = bool(term or trunc)
                if ended:
                    try:
                        raw, _ = env.reset()
                    except Exception as cause:
                        raise env_error(cause, start_step + done + j) from cause
                    x_act = features(raw)
                    if not np.isfinite(x_act).all():
                        raise ValueError(
                            f"the environment's reset returned a non-finite observation after step {start_step + done + j}: {raw!r}"
                        )
                else:
                    x_act = x_next
                inputs = np.concatenate((x_next, x_act, np.array((reward, term, trunc), np.float32)))
                groups, records = fns.step(groups, records, constants, inputs, chunk_size)
                # Bookkeeping while the step runs; the action is read last.
                rewards_now.append(reward)
                terminated_now.append(term)
                truncated_now.append(trunc)
                ep_return += reward
                ep_length += 1
                if ended:
                    episodes.append((0, start_step + done + j, ep_return, ep_length))
                    ep_return, ep_length = 0.0, 0
                a = fns.action(groups)
            taken[start_step + done : start_step + done + T] = actions_now
            rewards = np.asarray(rewards_now, np.float32)
            terminated, truncated = np.asarray(terminated_now, bool), np.asarray(truncated_now, bool)
            carry, finite = fns.end(groups, constants[1])
            rows_np = np.asarray(records)
            buffers = [rows_np[None, :, i] for i in range(rows_np.shape[1])]
            watch = DivergenceWatch(*(np.asarray(v)[None] for v in carry.watch))  # type: ignore[arg-type]
            rows = (rewards[None], terminated[None], truncated[None], np.ones((1, T), bool))
            diverged = locate_divergence(watch, np.atleast_2d(np.asarray(finite)), T)
            if diverged is not None:
                _, t, bad = diverged
                recorder.add(start_step + done, buffers, *(r[:, : t + 1] for r in rows))
                error = divergence_error(
                    learner,
                    step=start_step + done + t,
                    copy=0,
                    n_copies=1,
                    seed=seed,
                    demons=bad,
                    result=result(done, good_state),
                )
                recorder.commit(start_step, start_step + done, episodes, time.perf_counter() - start_time)
                stop(f"diverged at step {start_step + done + t}")
                raise error
            recorder.add(start_step + done, buffers, *rows)
            mean_td = float(carry.td_sum) / max(float(carry.td_count), 1.0)
            good_state, done = carry.state, done + T
            bar.update(T, np.asarray([mean_td]))
            finish_chunk(
                recorder,
                first_step=start_step,
                step=start_step + done,
                episodes=episodes,
                wall=time.perf_counter() - start_time,
                state=good_state,
                result=functools.partial(result, done, good_state),
                callback=callback,
                stop=stop,
            )
    except KeyboardInterrupt:
        if not stop_on_interrupt:
            stop("interrupted")
            raise
        config["interrupted"] = True
    except (ValueError, RunError) as e:
        stop(f"{type(e).__name__} after step {done}: {e}")
        raise
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


def compiled_step(
    learner: ControlLearner,
    policy: EpsilonGreedy,
    observation_space: gym.Space,
    n_actions: int,
    *,
    chunk_size: int = 500,
    record_every: int = 1,
    seed: int = 0,
) -> tuple[Any, Any, Any]:
    """The compiled call ``horde.run`` makes once per environment step when acting, for
    measuring it (its compiled kernels, its time per call) outside a run.

    Args:
        learner: the ``ControlLearner``.
        policy: the ``EpsilonGreedy`` behaviour (``anneal_steps`` given).
        observation_space: the environment's observation space (for the feature map).
        n_actions: actions of the ``Discrete`` action space.
        chunk_size: ``horde.run``'s chunk size (the record buffers' length).
        record_every: ``horde.run``'s record interval.
        seed: the learner's initial weights.

    Returns:
        ``(step, arguments, action)``: ``arguments()`` builds a fresh tuple ``args`` for
        ``step(*args)``, which returns ``(packed carry, record rows)`` and donates ``args[1]``; the next call takes the returned carry and rows in their place.
        ``action(packed carry)`` reads the action the step drew, as ``horde.run`` reads it
        (an ``int``). ``step.lower(*args).compile().as_text()`` is the compiled program.
    """
    features = FeatureMap(observation_space)
    dim = features.dim
    anneal = jnp.float32(policy.resolved_anneal_steps(0))
    fns = _compiled(learner, policy, learner.control_index(policy.demon), record_every, dim, n_actions)
    base = jax.random.key(seed)
    root = jax.random.fold_in(jax.random.fold_in(base, 1), 1)

    def arguments() -> tuple:
        state = _initial_state(learner, dim, base, n_actions)
        x = jnp.asarray(features(observation_space.sample()))
        action, prob = fns.first(state, x, jnp.uint32(0), fns.uniforms(root, jnp.uint32(0), 1)[0], anneal)
        carry = _Carry(
            state,
            x,
            action,
            prob,
            jnp.uint32(0),
            jnp.zeros((), jnp.int32),
            jnp.zeros((), jnp.int32),
            DivergenceWatch.start(learner.n_demons),
            jnp.zeros((), jnp.float32),
            jnp.zeros((), jnp.float32),
            anneal,
        )
        x_next = features(observation_space.sample())
        inputs = np.concatenate([x_next, x_next, np.asarray([1.0, 0.0, 0.0], np.float32)]).astype(np.float32)
        groups, fixed = fns.pack(carry)
        constants = (fns.uniforms(root, jnp.uint32(1), chunk_size), fixed)
        return _fresh(groups), _chunk_records(learner, chunk_size, record_every), constants, inputs, chunk_size

    return fns.step, arguments, fns.action


#: Draws an ``ActingDaemon`` takes per compiled call of ``uniforms``.
_DAEMON_DRAWS = 256


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
        steps: the number of steps this daemon is to take, for the default annealing: 5 % of
            ``start_step + steps``, the whole run's length, as ``horde.run`` resumed at
            ``start_step`` anneals.
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
        ValueError: not a ``ControlLearner`` holding ``policy.demon``, no annealing length, or
            ``n_actions``, ``seed``, ``steps`` or ``start_step`` not an integer in range
            (``n_actions`` >= 1, ``seed`` in [0, 2**31 - 1], ``steps`` >= 1, ``start_step`` in
            [0, 2**32 - 2]).
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
        seed = as_seed("ActingDaemon: seed", seed)
        if steps is not None:
            steps = as_int("ActingDaemon: steps", steps, low=1)
        # The step counter is a uint32: room for at least one step after the start.
        start_step = as_int("ActingDaemon: start_step", start_step, low=0, high=2**32 - 2)
        self.learner, self.policy = learner, policy
        self.features = FeatureMap(observation_space)
        self.n_actions = as_int("ActingDaemon: n_actions", n_actions, low=1)
        learner.demons.validate(self.features.dim, self.n_actions)
        index = learner.control_index(policy.demon)
        warn_if_async("ActingDaemon")
        # As horde.run's: 5 % of the whole run's length, the steps before a resume included.
        self._anneal = jnp.float32(policy.resolved_anneal_steps(start_step + (steps or 0)))
        self._fns = _compiled(learner, policy, index, 1, self.features.dim, self.n_actions)
        base = jax.random.key(seed)
        self._root = jax.random.fold_in(jax.random.fold_in(base, 1), 1)
        fresh = _initial_state(learner, self.features.dim, base, self.n_actions)
        if state is not None:
            fresh = _fresh(_checked_state("ActingDaemon", learner, state, self.features.dim, self.n_actions))
        self._state = fresh
        self._groups: tuple | None = None
        self._fixed: tuple = ()
        self._records = _chunk_records(learner, 1, 1)
        self._draws: jax.Array | None = None
        self._j = 0  # steps taken with the current block of draws
        self.t = int(start_step)

    @property
    def state(self) -> Any:
        """The learner state (a copy)."""
        if self._groups is None:
            return _fresh(self._state)
        return _fresh(self._fns.unpack(self._groups, self._fixed).state)

    def start(self, observation: Any) -> int:
        """The first action for ``observation`` (call once, before ``step``).

        Raises:
            ValueError: a non-finite ``observation``.
        """
        x_host = self.features(observation)
        if not np.isfinite(x_host).all():
            raise ValueError(f"ActingDaemon.start: observation must be finite, got {observation!r}")
        x = jnp.asarray(x_host)
        t = jnp.uint32(self.t)
        action, prob = self._fns.first(self._state, x, t, self._fns.uniforms(self._root, t, 1)[0], self._anneal)
        carry = _Carry(
            self._state,
            x,
            action,
            prob,
            jnp.uint32(self.t),
            jnp.zeros((), jnp.int32),
            jnp.zeros((), jnp.int32),
            DivergenceWatch.start(self.learner.n_demons),
            jnp.zeros((), jnp.float32),
            jnp.zeros((), jnp.float32),
            self._anneal,
        )
        groups, self._fixed = self._fns.pack(carry)
        self._groups = _fresh(groups)
        self._draws, self._j = None, 0
        return int(np.asarray(action))

    def step(
        self, reward: float, next_observation: Any, terminated: bool, truncated: bool, reset_observation: Any = None
    ) -> int:
        """Learns from the transition out of the last action and returns the next action, for
        ``reset_observation`` where the episode ended (required then), else for
        ``next_observation``.

        Raises:
            ValueError: ``start`` was not called, a non-finite ``next_observation`` or
                ``reset_observation``, a NaN reward, or an episode end without
                ``reset_observation``.
        """
        if self._groups is None:
            raise ValueError("ActingDaemon.step: call start(observation) first")
        x_next = self.features(next_observation)
        if not np.isfinite(x_next).all():
            raise ValueError(f"ActingDaemon.step: next_observation must be finite, got {next_observation!r}")
        reward = checked_reward(reward, self.t)
        if terminated or truncated:
            if reset_observation is None:
                raise ValueError("ActingDaemon.step: the episode ended; give reset_observation (the next episode's)")
            x_act = self.features(reset_observation)
            if not np.isfinite(x_act).all():
                raise ValueError(f"ActingDaemon.step: reset_observation must be finite, got {reset_observation!r}")
        else:
            x_act = x_next
        if self._draws is None or self._j == _DAEMON_DRAWS:
            # A block of draws at a time; the chunk step restarts with it.
            carry = self._fns.unpack(self._groups, self._fixed)._replace(j=jnp.zeros((), jnp.int32))
            groups, self._fixed = self._fns.pack(carry)
            self._groups = _fresh(groups)
            self._draws = self._fns.uniforms(self._root, jnp.uint32(self.t + 1), _DAEMON_DRAWS)
            self._j = 0
        inputs = np.concatenate([x_next, x_act, np.asarray([reward, terminated, truncated], np.float32)])
        constants = (self._draws, self._fixed)
        self._groups, self._records = self._fns.step(self._groups, self._records, constants, inputs, 1)
        self.t += 1
        self._j += 1
        return self._fns.action(self._groups)
