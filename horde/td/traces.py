"""Traces stored once per distinct trace: demons whose traces are provably equal share one.

A demon's head trace ``z_i ← ρ_{i,t} (γ_{i,t} λ_i z_i + h_t)`` (bias trace with ``1`` for
``h_t``), zeroed at every episode start, depends on the demon only through its discount spec
(``γ_{i,t}``), ``λ_i``, its target policy (``ρ_{i,t}``) and whether it was active at each step.
Demons that agree on the first three form a **group**, fixed when the learner is built; a demon
whose ``γ_{i,t} λ_i`` is always 0 (``λ_i = 0`` or the constant discount 0) needs only its target
policy to agree. The state keeps one trace per group, ``Z_g ← ρ_g (γ_g λ_g Z_g + h_t)`` with the
decay and ratio of the group's first demon, and each head's step reads its group's row::

    w_i += α δ_i Z_{g(i)}

A nexting Horde of 10,000 demons over 5 timescales keeps 5 traces instead of 10,000.

A demon **detaches** from its group at a step where its trace would differ from the group's:
it is inactive (a NaN cumulant: its trace is kept as it was), or its decay ``γ_{i,t} λ_i`` or
ratio ``ρ_{i,t}`` is not its group's (explicit discounts or ratios given to ``update``). From
then until the episode ends its trace is kept on its own row of the per-demon rows
(``TraceRows``). The episode start zeroes every trace, so every demon rejoins its group there.

The per-demon rows are part of the state only where they can be needed, so that a stream in
which no demon can detach touches the group traces only:

* the demons evaluate their own cumulants, discounts and ratios (``update_from_transition``,
  the runners, the scans): demons of one group then have equal discounts and ratios by
  construction, and their cumulants are finite (a demon whose cumulant is a ``function``, which
  may return NaN, gets a group of its own, whose row simply stays as it was while the demon is
  inactive). A fresh state has no rows (``rows=()``) and these updates keep none.
* explicit cumulants, discounts or ratios (``update``, the ``Daemon``) can break any group's
  equality: the update adds the rows (``with_trace_rows``) and keeps them; from then on every
  update of that state reads and writes them (the cost of one trace per demon).

The arithmetic per trace is that of the per-demon layout, so results are bit for bit those of
``HordeLearner(..., shared_traces=False)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from demons import DemonSet
from horde.core import accumulate_traces, materialized

__all__ = [
    "SharedTraces",
    "TraceRows",
    "TraceGroups",
    "advance_group_traces",
    "gather_group_traces",
    "group_trace_l1",
    "head_step_l1",
    "head_trace_l1",
    "init_shared_traces",
    "shared_trace_step",
    "reset_shared_traces",
    "trace_groups",
    "total_trace_l1",
    "with_trace_rows",
]


class TraceGroups(NamedTuple):
    """The static grouping of demons by equal traces (NumPy arrays, fixed at construction).

    Attributes:
        group_of: ``g(i)``, each demon's group, int32 ``(n_demons,)``.
        representatives: the first demon of each group, int32 ``(n_groups,)``; its decay and
            ratio advance the group's trace.
        sizes: demons per group, int32 ``(n_groups,)``.
    """

    group_of: np.ndarray
    representatives: np.ndarray
    sizes: np.ndarray

    @property
    def n_groups(self) -> int:
        """Number of distinct traces kept."""
        return int(self.representatives.shape[0])


class TraceRows(NamedTuple):
    """Per-demon trace rows, for demons detached from their group.

    Attributes:
        weights: the detached demons' traces, ``(n_demons, H)``; zero rows for demons that
            follow their group.
        biases: their bias traces, ``(n_demons,)``; zero where attached.
        detached: ``(n_demons,)`` bool, True where the demon's trace is its own row until the
            episode ends.
    """

    weights: jax.Array
    biases: jax.Array
    detached: jax.Array


class SharedTraces(NamedTuple):
    """Head traces stored once per group, and per-demon rows where demons can detach.

    Attributes:
        group_weights: ``Z_g``, ``(n_groups, H)``.
        group_biases: the groups' bias traces, ``(n_groups,)``.
        rows: ``TraceRows``, or ``()`` for a state in which no demon is detached and whose
            updates cannot detach one (see the module docstring).
    """

    group_weights: jax.Array
    group_biases: jax.Array
    rows: Any = ()


def trace_groups(demons: DemonSet) -> TraceGroups:
    """Groups demons whose traces are equal by construction.

    Two demons share a trace when they have the same target policy (``None`` = on-policy, so
    ``ρ = 1``) and either both have ``γλ = 0`` at every step (``λ = 0`` or the constant
    discount 0) or the same discount spec and the same ``λ``. Specs compare as frozen
    dataclasses (a ``function`` spec by its function). A demon whose cumulant is a
    ``function`` (which may return NaN) keeps a group of its own.

    Args:
        demons: the demon set.

    Returns:
        ``TraceGroups``, groups numbered in order of their first demon.
    """
    index: dict[Any, int] = {}
    group_of = np.zeros((len(demons),), np.int32)
    representatives: list[int] = []
    for i, demon in enumerate(demons):
        constant = demon.discount.constant_gamma
        never_decays = float(np.float32(demon.lamda)) == 0.0 or (constant is not None and float(constant) == 0.0)
        decay_key = ("no decay",) if never_decays else (demon.discount, float(np.float32(demon.lamda)))
        # A cumulant that is a user function may be NaN (the demon inactive) at any step.
        own = i if getattr(demon.cumulant, "plain_data", True) is False else None
        key = (decay_key, demon.target_policy, own)
        if key not in index:
            index[key] = len(representatives)
            representatives.append(i)
        group_of[i] = index[key]
    sizes = np.bincount(group_of, minlength=len(representatives)).astype(np.int32)
    return TraceGroups(group_of, np.asarray(representatives, np.int32), sizes)


def init_shared_traces(groups: TraceGroups, n_features: int) -> SharedTraces:
    """Zero group traces for ``groups`` over ``n_features`` head features, without rows."""
    g = groups.n_groups
    return SharedTraces(jnp.zeros((g, n_features), jnp.float32), jnp.zeros((g,), jnp.float32))


def with_trace_rows(traces: SharedTraces, groups: TraceGroups) -> SharedTraces:
    """``traces`` with per-demon rows (zero, nobody detached) if it has none yet.

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
    """Each demon's row of the group traces, ``(Z_{g(i)}, Z^b_{g(i)})``: ``(n_demons, H)`` and
    ``(n_demons,)``."""
    z_w, z_b = group_traces
    return _rows(z_w, groups.group_of), _rows(z_b, groups.group_of)


def advance_group_traces(
    traces: SharedTraces,
    groups: TraceGroups,
    features: jax.Array,
    decay: jax.Array,
    rho: jax.Array | None,
    active: jax.Array | None,
) -> tuple[jax.Array, jax.Array]:
    """The groups' new traces, ``Z_g ← ρ_g (γ_g λ_g Z_g + h_t)`` with the decay and ratio of
    the group's first demon; with ``active`` given, a group whose first demon is inactive keeps
    its trace (so a one-demon group is exactly that demon's trace).

    Args:
        traces: the stored ``SharedTraces``.
        groups: the static grouping.
        features: ``h_t``, ``(H,)``.
        decay: each demon's ``γ_{i,t} λ_i``, ``(n_demons,)``.
        rho: ``ρ_{i,t}``, ``(n_demons,)``, or ``None`` for 1.
        active: ``(n_demons,)`` bool, or ``None`` to advance every group.

    Returns:
        ``(Z_w (n_groups, H), Z_b (n_groups,))``.
    """
    reps = groups.representatives
    group_rho = None if rho is None else _rows(rho, reps)
    old = (traces.group_weights, traces.group_biases)
    new_w, new_b = accumulate_traces(old, features, _rows(decay, reps), group_rho)
    if active is None:
        return new_w, new_b
    keep = _rows(active, reps)
    return jnp.where(keep[:, None], new_w, old[0]), jnp.where(keep, new_b, old[1])


def shared_trace_step(
    traces: SharedTraces,
    groups: TraceGroups,
    features: jax.Array,
    decay: jax.Array,
    rho: jax.Array | None,
    active: jax.Array,
) -> tuple[tuple[jax.Array, jax.Array], SharedTraces]:
    """Every demon's trace of this step and the new ``SharedTraces``.

    Without rows (``traces.rows == ()``) every demon reads its group's new trace; the caller
    guarantees that no demon departs from its group (see the module docstring). With rows, a
    demon departs where it is inactive or its decay or ratio is not its group's; a detached
    demon's trace continues from its own row, an inactive one keeps the trace it had.

    Args:
        traces: the stored ``SharedTraces``.
        groups: the static grouping.
        features: ``h_t``, ``(H,)``.
        decay: each demon's ``γ_{i,t} λ_i``, ``(n_demons,)``.
        rho: ``ρ_{i,t}``, ``(n_demons,)``, or ``None`` for 1.
        active: ``(n_demons,)`` bool.

    Returns:
        ``((z_w (n_demons, H), z_b (n_demons,)), new_traces)``.
    """
    # With rows, an inactive first demon detaches and the group advances for the others.
    group = advance_group_traces(traces, groups, features, decay, rho, active if traces.rows == () else None)
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
    own_w, own_b = accumulate_traces((before_w, before_b), features, decay, rho)
    detached = rows.detached | departs
    z_w = jnp.where(detached[:, None], own_w, new_group_w)
    z_b = jnp.where(detached, own_b, new_group_b)
    kept_w = jnp.where(active[:, None], own_w, before_w)
    kept_b = jnp.where(active, own_b, before_b)
    new_rows = TraceRows(jnp.where(detached[:, None], kept_w, 0.0), jnp.where(detached, kept_b, 0.0), detached)
    return (z_w, z_b), SharedTraces(group[0], group[1], new_rows)


def reset_shared_traces(traces: SharedTraces, episode_ended: jax.Array) -> SharedTraces:
    """Every trace zeroed where ``episode_ended`` (terminated or truncated); every demon
    rejoins its group."""
    zero = jax.tree_util.tree_map(lambda t: jnp.where(episode_ended, jnp.zeros_like(t), t), traces)
    return zero


def group_trace_l1(group_traces: tuple[jax.Array, jax.Array]) -> jax.Array:
    """``‖Z_g‖₁`` of every group's trace, weights and bias together, ``(n_groups,)``."""
    z_w, z_b = group_traces
    return jnp.sum(jnp.abs(z_w), axis=-1) + jnp.abs(z_b)


def head_step_l1(group_traces: tuple[jax.Array, jax.Array], groups: TraceGroups, step_size: float) -> jax.Array:
    """Each head's LMS step norm ``‖α Z_{g(i)}‖₁`` (weights and bias), ``(n_demons,)``, computed
    once per group and gathered: what ObGD bounds each head's step by, without a per-head
    reduction over ``H``."""
    z_w, z_b = group_traces
    norms = jnp.sum(jnp.abs(step_size * z_w), axis=-1) + jnp.abs(step_size * z_b)
    return _rows(norms, groups.group_of)


def head_trace_l1(traces: SharedTraces, groups: TraceGroups) -> jax.Array:
    """Each head's trace norm ``‖z_i‖₁`` (weights and bias), ``(n_demons,)``, from the group
    norms: ``‖Z_{g(i)}‖₁`` for demons that follow their group, the own row's norm for detached
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
    """``Σ_i ‖z_i‖₁`` over all heads, as the per-demon layout would sum it: each group's norm
    weighted by its number of demons that follow it, plus the detached demons' own norms."""
    group_norm = group_trace_l1((traces.group_weights, traces.group_biases))
    if traces.rows == ():
        return jnp.sum(jnp.asarray(groups.sizes, jnp.float32) * group_norm)
    rows = traces.rows
    following = jnp.zeros_like(group_norm).at[jnp.asarray(groups.group_of)].add((~rows.detached).astype(jnp.float32))
    own = jnp.where(rows.detached, group_trace_l1((rows.weights, rows.biases)), 0.0)
    return jnp.sum(following * group_norm) + jnp.sum(own)
