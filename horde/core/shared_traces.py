"""Head traces stored once per distinct trace: heads whose traces are provably equal share one.

A head's trace ``z_i ← ρ_{i,t} ((γλ)_{i,t} z_i + h_t)`` (bias trace with ``1`` for ``h_t``; or
the replacing form, see ``accumulate_traces``) depends on the head only through its decays
``(γλ)_{i,t}``, its ratios ``ρ_{i,t}``, the steps at which it was active (an inactive head keeps
its trace as it was) and the resets that zero it. Heads that start from the same trace, are
advanced with the same decays and ratios and are active at the same steps have the same trace,
bit for bit. Heads are put in **groups**, fixed when the learner is built (``TraceGroups``):

* the multi-head core (``MultiHeadMLPLearner`` with ``per_head_gamma_lamda``) groups heads with
  equal float32 ``(γλ)_i`` (``decay_groups``); it has no ratios and no episodes;
* the ``HordeLearner`` groups demons by discount spec, ``λ`` and target policy
  (``horde.td.trace_groups``), and zeroes every trace at episode starts.

The state keeps one trace per group, ``Z_g ← ρ_g ((γλ)_g Z_g + h_t)`` with the decay and ratio
of the group's first head (``SharedTraces``), and each head's step reads its group's row::

    w_i += α δ_i Z_{g(i)}

A head **detaches** from its group at a step where its trace would differ from the group's: it
is inactive (its trace is kept as it was), or its decay or ratio is not its group's. From then
on its trace is kept on its own row of the per-head rows (``TraceRows``), until a reset zeroes
every trace, or (with ``rejoin=True``, the core's rule) until its trace is again its group's
bit for bit (a head with ``(γλ)_i = 0`` rejoins at its next active step: its trace is ``h_t``
again; a decaying one once the difference has decayed below float32 rounding).

Each head's trace arithmetic is that of the per-head layout (the same elementwise operations
on the same values), so a head's trace is bit for bit its per-head trace, and the optimizers
(LMS, IDBD, Autostep: per-head states, one step ``s_i`` per head from ``z_{g(i)}``) and the
bounders (ObGD's ``‖s_i‖₁``, ``OvershootBounding``'s ``s_i·h``) see the same numbers. Only the
traces are shared: an optimizer or bounder never needs a trace row of its own per head. Their
results are bit for bit the per-head layout's where their arithmetic is elementwise (LMS, IDBD
without a bounder); where they reduce over a head's per-weight steps (Autostep's bound over a
unit, a bounder's norm of IDBD's or Autostep's steps) XLA may fuse the reduction differently
when the trace is gathered from its group, and they agree to float32 rounding.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from horde.core.bounders import Bounder, ObGDBounding
from horde.core.heads import accumulate_traces, head_step_from_traces, materialized, select_heads
from horde.core.optimizers import LMS, Optimizer
from horde.core.types import HeadParams

__all__ = [
    "SharedTraces",
    "TraceGroups",
    "TraceRows",
    "advance_group_traces",
    "decay_groups",
    "gather_group_traces",
    "group_trace_l1",
    "head_step_l1",
    "head_trace_l1",
    "init_shared_traces",
    "reset_shared_traces",
    "shared_head_step",
    "shared_trace_step",
    "total_trace_l1",
    "traces_per_head",
    "with_trace_rows",
]


class TraceGroups(NamedTuple):
    """The static grouping of heads by equal traces (NumPy arrays, fixed at construction).

    Attributes:
        group_of: ``g(i)``, each head's group, int32 ``(n_heads,)``.
        representatives: the first head of each group, int32 ``(n_groups,)``; its decay and
            ratio advance the group's trace.
        sizes: heads per group, int32 ``(n_groups,)``.
    """

    group_of: np.ndarray
    representatives: np.ndarray
    sizes: np.ndarray

    @property
    def n_groups(self) -> int:
        """Number of distinct traces kept."""
        return int(self.representatives.shape[0])

    @classmethod
    def from_keys(cls, keys: Any) -> TraceGroups:
        """Groups equal keys (any hashable values, one per head), numbered in order of their
        first head."""
        index: dict[Any, int] = {}
        group_of = np.zeros((len(keys),), np.int32)
        representatives: list[int] = []
        for i, key in enumerate(keys):
            if key not in index:
                index[key] = len(representatives)
                representatives.append(i)
            group_of[i] = index[key]
        sizes = np.bincount(group_of, minlength=len(representatives)).astype(np.int32)
        return cls(group_of, np.asarray(representatives, np.int32), sizes)


def decay_groups(decays: Any) -> TraceGroups:
    """Groups heads by their constant trace decay ``(γλ)_i`` as float32 (the value the trace
    arithmetic uses): heads with equal decays that are active together have equal traces.

    Args:
        decays: ``(γλ)_i``, ``(n_heads,)``, NumPy (static).

    Returns:
        ``TraceGroups``, groups numbered in order of their first head.
    """
    # By the bits: -0.0 and +0.0 decays can give traces of other signed zeros.
    bits = np.asarray(decays, np.float32).reshape(-1).view(np.int32)
    return TraceGroups.from_keys([int(b) for b in bits])


class TraceRows(NamedTuple):
    """Per-head trace rows, for heads detached from their group.

    Attributes:
        weights: the detached heads' traces, ``(n_heads, H)``; zero rows for heads that follow
            their group.
        biases: their bias traces, ``(n_heads,)``; zero where attached.
        detached: ``(n_heads,)`` bool, True where the head's trace is its own row.
    """

    weights: jax.Array
    biases: jax.Array
    detached: jax.Array


class SharedTraces(NamedTuple):
    """Head traces stored once per group, and per-head rows where heads can detach.

    Attributes:
        group_weights: ``Z_g``, ``(n_groups, H)``.
        group_biases: the groups' bias traces, ``(n_groups,)``.
        rows: ``TraceRows``, or ``()`` for a state in which no head is detached and whose
            updates cannot detach one.
    """

    group_weights: jax.Array
    group_biases: jax.Array
    rows: Any = ()


def init_shared_traces(groups: TraceGroups, n_features: int) -> SharedTraces:
    """Zero group traces for ``groups`` over ``n_features`` head features, without rows."""
    g = groups.n_groups
    return SharedTraces(jnp.zeros((g, n_features), jnp.float32), jnp.zeros((g,), jnp.float32))


def with_trace_rows(traces: SharedTraces, groups: TraceGroups) -> SharedTraces:
    """``traces`` with per-head rows (zero, nobody detached) if it has none yet.

    Works on batched traces too (leading seed axes)."""
    if traces.rows != ():
        return traces
    batch = traces.group_biases.shape[:-1]
    n, h = int(groups.group_of.shape[0]), traces.group_weights.shape[-1]
    rows = TraceRows(
        jnp.zeros(batch + (n, h), jnp.float32), jnp.zeros(batch + (n,), jnp.float32), jnp.zeros(batch + (n,), bool)
    )
    return traces._replace(rows=rows)


def _rows(x: jax.Array, indices: np.ndarray) -> jax.Array:
    # A static in-bounds index vector: one gather, no clamping or negative-index handling.
    idx = jnp.asarray(np.asarray(indices, np.int32).reshape(-1, 1))
    numbers = jax.lax.GatherDimensionNumbers(
        offset_dims=tuple(range(1, x.ndim)), collapsed_slice_dims=(0,), start_index_map=(0,)
    )
    return jax.lax.gather(x, idx, numbers, (1,) + x.shape[1:], mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)


def gather_group_traces(group_traces: tuple[jax.Array, jax.Array], groups: TraceGroups) -> tuple[jax.Array, jax.Array]:
    """Each head's row of the group traces, ``(Z_{g(i)}, Z^b_{g(i)})``: ``(n_heads, H)`` and
    ``(n_heads,)``."""
    z_w, z_b = group_traces
    return _rows(z_w, groups.group_of), _rows(z_b, groups.group_of)


def traces_per_head(traces: SharedTraces, groups: TraceGroups) -> tuple[jax.Array, jax.Array]:
    """Every head's trace in the per-head layout, ``(z_w (n_heads, H), z_b (n_heads,))``: its
    group's ``Z_{g(i)}`` where it follows its group, its own row where detached. Works on
    batched traces too (leading seed axes)."""
    of = jnp.asarray(groups.group_of)
    group_w = jnp.take(traces.group_weights, of, axis=-2)
    group_b = jnp.take(traces.group_biases, of, axis=-1)
    if traces.rows == ():
        return group_w, group_b
    rows = traces.rows
    return (
        jnp.where(rows.detached[..., None], rows.weights, group_w),
        jnp.where(rows.detached, rows.biases, group_b),
    )


def advance_group_traces(
    traces: SharedTraces,
    groups: TraceGroups,
    features: jax.Array,
    decay: jax.Array,
    rho: jax.Array | None,
    active: jax.Array | None,
    replacing: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """The groups' new traces, ``Z_g ← ρ_g ((γλ)_g Z_g + h_t)`` with the decay and ratio of
    the group's first head; with ``active`` given, a group whose first head is inactive keeps
    its trace (so a one-head group is exactly that head's trace).

    Args:
        traces: the stored ``SharedTraces``.
        groups: the static grouping.
        features: ``h_t``, ``(H,)``.
        decay: each head's ``(γλ)_{i,t}``, ``(n_heads,)``.
        rho: ``ρ_{i,t}``, ``(n_heads,)``, or ``None`` for 1.
        active: ``(n_heads,)`` bool, or ``None`` to advance every group.
        replacing: replacing instead of accumulating traces (see ``accumulate_traces``).

    Returns:
        ``(Z_w (n_groups, H), Z_b (n_groups,))``.
    """
    reps = groups.representatives
    group_rho = None if rho is None else _rows(rho, reps)
    old = (traces.group_weights, traces.group_biases)
    new_w, new_b = accumulate_traces(old, features, _rows(decay, reps), group_rho, replacing)
    if active is None:
        return new_w, new_b
    keep = _rows(active, reps)
    return jnp.where(keep[:, None], new_w, old[0]), jnp.where(keep, new_b, old[1])


def _same_bits(a: jax.Array, b: jax.Array) -> jax.Array:
    # Bit for bit, so that -0.0 and +0.0 (and two NaNs of other payloads) count as different.
    return jax.lax.bitcast_convert_type(a, jnp.int32) == jax.lax.bitcast_convert_type(b, jnp.int32)


def shared_trace_step(
    traces: SharedTraces,
    groups: TraceGroups,
    features: jax.Array,
    decay: jax.Array,
    rho: jax.Array | None,
    active: jax.Array,
    replacing: bool = False,
    rejoin: bool = False,
) -> tuple[tuple[jax.Array, jax.Array], SharedTraces]:
    """Every head's trace of this step and the new ``SharedTraces``.

    Without rows (``traces.rows == ()``) every head reads its group's new trace; the caller
    guarantees that no head departs from its group (see the module docstring). With rows, a
    head departs where it is inactive or its decay or ratio is not its group's; a detached
    head's trace continues from its own row, an inactive one keeps the trace it had.

    Args:
        traces: the stored ``SharedTraces``.
        groups: the static grouping.
        features: ``h_t``, ``(H,)``.
        decay: each head's ``(γλ)_{i,t}``, ``(n_heads,)``.
        rho: ``ρ_{i,t}``, ``(n_heads,)``, or ``None`` for 1.
        active: ``(n_heads,)`` bool.
        replacing: replacing instead of accumulating traces (see ``accumulate_traces``).
        rejoin: a detached head whose kept trace is its group's new trace bit for bit
            (weights and bias) follows its group again from the next step.

    Returns:
        ``((z_w (n_heads, H), z_b (n_heads,)), new_traces)``.
    """
    # With rows, an inactive first head detaches and the group advances for the others.
    group = advance_group_traces(traces, groups, features, decay, rho, active if traces.rows == () else None, replacing)
    # Z_g once into its own (n_groups, H) buffer, read by every head's update (see
    # ``materialized``).
    group = (materialized(group[0]), group[1])
    new_group_w, new_group_b = gather_group_traces(group, groups)
    if traces.rows == ():
        return (new_group_w, new_group_b), traces._replace(group_weights=group[0], group_biases=group[1])
    rows, of = traces.rows, groups.group_of
    reps = groups.representatives
    departs = ~active | (decay != _rows(_rows(decay, reps), of))
    if rho is not None:
        departs = departs | (rho != _rows(_rows(rho, reps), of))
    old_group_w, old_group_b = gather_group_traces((traces.group_weights, traces.group_biases), groups)
    before_w = jnp.where(rows.detached[:, None], rows.weights, old_group_w)
    before_b = jnp.where(rows.detached, rows.biases, old_group_b)
    own_w, own_b = accumulate_traces((before_w, before_b), features, decay, rho, replacing)
    detached = rows.detached | departs
    z_w = jnp.where(detached[:, None], own_w, new_group_w)
    z_b = jnp.where(detached, own_b, new_group_b)
    kept_w = jnp.where(active[:, None], own_w, before_w)
    kept_b = jnp.where(active, own_b, before_b)
    if rejoin:
        equal = jnp.all(_same_bits(kept_w, new_group_w), axis=-1) & _same_bits(kept_b, new_group_b)
        detached = detached & ~equal
    new_rows = TraceRows(jnp.where(detached[:, None], kept_w, 0.0), jnp.where(detached, kept_b, 0.0), detached)
    return (z_w, z_b), SharedTraces(group[0], group[1], new_rows)


def shared_head_step(
    optimizer: Optimizer,
    bounder: Bounder | None,
    head_params: HeadParams,
    head_optimizer_states: tuple[Any, Any],
    traces: SharedTraces,
    groups: TraceGroups,
    features: jax.Array,
    decay: jax.Array,
    delta: jax.Array,
    cotangent: jax.Array,
    active: jax.Array,
    replacing: bool = False,
) -> tuple[HeadParams, tuple[Any, Any], SharedTraces, jax.Array]:
    """Every head's step ``w_i += δ_i s_i`` with traces stored once per group (the core's head
    update in the shared layout), inactive heads kept bit for bit.

    While every head is active and none is detached, the step reads and writes the
    ``(n_groups, H)`` group traces only and leaves the per-head rows untouched (with LMS and
    ObGD each head's step norm is its group's, computed once per group); otherwise it reads and
    writes the rows too (``shared_trace_step`` with ``rejoin=True``: a head detaches while
    inactive and rejoins its group once its trace is the group's again, bit for bit). A loop of
    zero or one iteration runs each path; under ``vmap`` a path runs for every copy where one
    of them needs it, each copy keeping its own result.

    Args:
        optimizer: the head optimizer.
        bounder: optional bounder.
        head_params: current head parameters.
        head_optimizer_states: the heads' optimizer states.
        traces: the stored ``SharedTraces``, with rows.
        groups: the static grouping (heads of a group have equal decays).
        features: ``h_t``, ``(H,)``.
        decay: ``(γλ)_i``, ``(n_heads,)``.
        delta: ``δ``, ``(n_heads,)``, 0 for inactive heads.
        cotangent: the trunk's cotangent (ordering only, see ``head_step_from_traces``).
        active: ``(n_heads,)`` bool.
        replacing: replacing instead of accumulating traces.

    Returns:
        ``(head_params, head_optimizer_states, traces, mean_step_size (n_heads,))``.
    """

    # Each path reads the state from its loop's carry, so that XLA updates it in place; the
    # second path runs only where the first did not, so both start from the stored state. The
    # per-head rows are carried by the second loop only: passed through the first, XLA would
    # copy them every step.
    def together(carry):
        params, opt_states, group_w, group_b, _ = carry
        z, new = shared_trace_step(SharedTraces(group_w, group_b), groups, features, decay, None, active, replacing)
        step_l1 = None
        if isinstance(bounder, ObGDBounding) and isinstance(optimizer, LMS):
            step_l1 = head_step_l1((new.group_weights, new.group_biases), groups, optimizer.step_size)
        out = head_step_from_traces(optimizer, bounder, params, opt_states, z, delta, cotangent, step_l1, features)
        return out.heads, out.optimizer_states, new.group_weights, new.group_biases, out.mean_step_size

    def apart(carry):
        params, opt_states, stored, _ = carry
        z, new = shared_trace_step(stored, groups, features, decay, None, active, replacing, rejoin=True)
        out = head_step_from_traces(optimizer, bounder, params, opt_states, z, delta, cotangent, features=features)
        heads, head_opt = select_heads(active, (out.heads, out.optimizer_states), (params, opt_states))
        return heads, head_opt, new, out.mean_step_size

    together_now = jnp.all(active) & ~jnp.any(traces.rows.detached)
    first = (head_params, head_optimizer_states, traces.group_weights, traces.group_biases, jnp.zeros_like(delta))
    params, opt_states, group_w, group_b, mean_step = _run_if(together_now, together, first)
    second = (params, opt_states, SharedTraces(group_w, group_b, traces.rows), mean_step)
    return _run_if(~together_now, apart, second)


def branch_free() -> bool:
    """Whether ``shared_head_step`` computes both of its paths and selects (True on GPUs and
    TPUs, the backend JAX compiles for by default) instead of running each in a loop of zero or
    one iteration (the CPU). The results are the same bit for bit either way.

    On a GPU a loop's condition is read back by the host at every iteration, a synchronisation
    that costs more than the per-head arithmetic it skips: measured on an H200, the core's scan
    at 256 heads took 75.7 µs per step with the loops against 22.5 µs with per-head traces.
    """
    return jax.default_backend() != "cpu"


def _run_if(flag: jax.Array, step: Any, carry: Any) -> Any:
    """``step(carry)`` where ``flag``, else ``carry``.

    On the CPU a loop of zero or one iteration: a ``lax.cond`` would do, but XLA copies every
    large buffer that passes through a conditional inside a scan (the head weights and the
    per-head rows, ``(n_heads, H)`` each, every step); a while loop updates its carry in place.
    Elsewhere (``branch_free``) both are computed and ``flag`` selects.
    """
    if branch_free():
        return jax.tree_util.tree_map(lambda new, old: jnp.where(flag, new, old), step(carry), carry)

    def body(c):
        return jnp.zeros((), bool), step(c[1])

    return jax.lax.while_loop(lambda c: c[0], body, (flag, carry))[1]


def reset_shared_traces(traces: SharedTraces, episode_ended: jax.Array) -> SharedTraces:
    """Every trace zeroed where ``episode_ended`` (terminated or truncated); every head
    rejoins its group."""
    return jax.tree_util.tree_map(lambda t: jnp.where(episode_ended, jnp.zeros_like(t), t), traces)


def group_trace_l1(group_traces: tuple[jax.Array, jax.Array]) -> jax.Array:
    """``‖Z_g‖₁`` of every group's trace, weights and bias together, ``(n_groups,)``."""
    z_w, z_b = group_traces
    return jnp.sum(jnp.abs(z_w), axis=-1) + jnp.abs(z_b)


def head_step_l1(group_traces: tuple[jax.Array, jax.Array], groups: TraceGroups, step_size: float) -> jax.Array:
    """Each head's LMS step norm ``‖α Z_{g(i)}‖₁`` (weights and bias), ``(n_heads,)``, computed
    once per group and gathered: what ObGD bounds each head's step by, without a per-head
    reduction over ``H``."""
    z_w, z_b = group_traces
    norms = jnp.sum(jnp.abs(step_size * z_w), axis=-1) + jnp.abs(step_size * z_b)
    return _rows(norms, groups.group_of)


def head_trace_l1(traces: SharedTraces, groups: TraceGroups) -> jax.Array:
    """Each head's trace norm ``‖z_i‖₁`` (weights and bias), ``(n_heads,)``, from the group
    norms: ``‖Z_{g(i)}‖₁`` for heads that follow their group, the own row's norm for detached
    ones.

    This is the per-head quantity a per-head bounder (ObGD, Elsayed et al. 2024: ``M_i = α κ
    max(|δ_i|, 1) ‖z_i‖₁``) needs, at the cost of one norm per group.
    """
    shared = _rows(group_trace_l1((traces.group_weights, traces.group_biases)), groups.group_of)
    if traces.rows == ():
        return shared
    rows = traces.rows
    return jnp.where(rows.detached, group_trace_l1((rows.weights, rows.biases)), shared)


def total_trace_l1(traces: SharedTraces, groups: TraceGroups) -> jax.Array:
    """``Σ_i ‖z_i‖₁`` over all heads, as the per-head layout would sum it: each group's norm
    weighted by its number of heads that follow it, plus the detached heads' own norms."""
    group_norm = group_trace_l1((traces.group_weights, traces.group_biases))
    if traces.rows == ():
        return jnp.sum(jnp.asarray(groups.sizes, jnp.float32) * group_norm)
    rows = traces.rows
    following = jnp.zeros_like(group_norm).at[jnp.asarray(groups.group_of)].add((~rows.detached).astype(jnp.float32))
    own = jnp.where(rows.detached, group_trace_l1((rows.weights, rows.biases)), 0.0)
    return jnp.sum(following * group_norm) + jnp.sum(own)
