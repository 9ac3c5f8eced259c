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
then until the episode ends its trace is kept on its own row of the per-demon traces. The
episode start zeroes every trace, so every demon rejoins its group there. The per-demon rows
are read and written only at steps where some demon is (or becomes) detached, in one
``lax.cond`` branch; a stream in which every demon is active touches the group traces only.
Under ``vmap`` with a predicate that differs across the batch, JAX evaluates both branches
(and the per-demon rows cost what they always cost).

The arithmetic per trace is that of the per-demon layout, so results are bit for bit those of
``HordeLearner(..., shared_traces=False)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from demons import DemonSet
from horde.core import accumulate_traces

__all__ = [
    "SharedTraceStep",
    "SharedTraces",
    "TraceGroups",
    "advance_shared_traces",
    "gather_group_traces",
    "group_trace_l1",
    "head_trace_l1",
    "init_shared_traces",
    "per_demon_traces",
    "reset_shared_traces",
    "trace_groups",
    "total_trace_l1",
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


class SharedTraces(NamedTuple):
    """Head traces stored once per group, plus per-demon rows for detached demons.

    Attributes:
        group_weights: ``Z_g``, ``(n_groups, H)``.
        group_biases: the groups' bias traces, ``(n_groups,)``.
        weights: per-demon traces of detached demons, ``(n_demons, H)``; zero rows for
            demons that follow their group.
        biases: per-demon bias traces, ``(n_demons,)``; zero where attached.
        detached: ``(n_demons,)`` bool, True where the demon's trace is its own row until
            the episode ends.
    """

    group_weights: jax.Array
    group_biases: jax.Array
    weights: jax.Array
    biases: jax.Array
    detached: jax.Array


def trace_groups(demons: DemonSet) -> TraceGroups:
    """Groups demons whose traces are equal by construction.

    Two demons share a trace when they have the same target policy (``None`` = on-policy, so
    ``ρ = 1``) and either both have ``γλ = 0`` at every step (``λ = 0`` or the constant
    discount 0) or the same discount spec and the same ``λ``. Specs compare as frozen
    dataclasses (a ``function`` spec by its function).

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
        key = (decay_key, demon.target_policy)
        if key not in index:
            index[key] = len(representatives)
            representatives.append(i)
        group_of[i] = index[key]
    sizes = np.bincount(group_of, minlength=len(representatives)).astype(np.int32)
    return TraceGroups(group_of, np.asarray(representatives, np.int32), sizes)


def init_shared_traces(groups: TraceGroups, n_features: int) -> SharedTraces:
    """Zero traces for ``groups`` over ``n_features`` head features."""
    n, g = int(groups.group_of.shape[0]), groups.n_groups
    return SharedTraces(
        jnp.zeros((g, n_features), jnp.float32),
        jnp.zeros((g,), jnp.float32),
        jnp.zeros((n, n_features), jnp.float32),
        jnp.zeros((n,), jnp.float32),
        jnp.zeros((n,), bool),
    )


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


class SharedTraceStep(NamedTuple):
    """This step's traces in the shared layout (see ``advance_shared_traces``).

    Attributes:
        group: the groups' new traces ``(Z_g, Z^b_g)``.
        needs_rows: scalar bool, True when some demon is or becomes detached this step (the
            per-demon rows must then be read and written).
        decay: ``γ_{i,t} λ_i``, ``(n_demons,)``.
        rho: ``ρ_{i,t}`` or ``None``.
        departs: ``(n_demons,)`` bool, the demons whose trace leaves the group's at this step.
    """

    group: tuple[jax.Array, jax.Array]
    needs_rows: jax.Array
    decay: jax.Array
    rho: jax.Array | None
    departs: jax.Array


def advance_shared_traces(
    traces: SharedTraces,
    groups: TraceGroups,
    features: jax.Array,
    decay: jax.Array,
    rho: jax.Array | None,
    active: jax.Array,
) -> SharedTraceStep:
    """Advances the group traces, ``Z_g ← ρ_g (γ_g λ_g Z_g + h_t)``, and finds the demons
    whose own trace leaves its group's at this step.

    Args:
        traces: the stored ``SharedTraces``.
        groups: the static grouping.
        features: ``h_t``, ``(H,)``.
        decay: each demon's ``γ_{i,t} λ_i``, ``(n_demons,)``.
        rho: ``ρ_{i,t}``, ``(n_demons,)``, or ``None`` for 1.
        active: ``(n_demons,)`` bool (False for a NaN cumulant).

    Returns:
        ``SharedTraceStep``.
    """
    reps = groups.representatives
    group_decay = _rows(decay, reps)
    group_rho = None if rho is None else _rows(rho, reps)
    group = accumulate_traces((traces.group_weights, traces.group_biases), features, group_decay, group_rho)
    departs = ~active | (decay != _rows(group_decay, groups.group_of))
    if rho is not None and group_rho is not None:
        departs = departs | (rho != _rows(group_rho, groups.group_of))
    needs_rows = jnp.any(traces.detached) | jnp.any(departs)
    return SharedTraceStep(group, needs_rows, decay, rho, departs)


def per_demon_traces(
    traces: SharedTraces, groups: TraceGroups, step: SharedTraceStep, features: jax.Array, active: jax.Array
) -> tuple[tuple[jax.Array, jax.Array], SharedTraces]:
    """Every demon's trace of this step when some demon is detached, and the new per-demon rows.

    A detached demon's trace continues from its own row, an attached one's from its group's;
    an inactive demon keeps the trace it had (its row holds it from now on).

    Args:
        traces: the stored ``SharedTraces`` (before this step).
        groups: the static grouping.
        step: ``advance_shared_traces``'s result for this step.
        features: ``h_t``, ``(H,)``.
        active: ``(n_demons,)`` bool.

    Returns:
        ``((z_w (n_demons, H), z_b (n_demons,)), new_traces)`` with the groups' new traces.
    """
    detached = traces.detached
    old_group_w, old_group_b = gather_group_traces((traces.group_weights, traces.group_biases), groups)
    before_w = jnp.where(detached[:, None], traces.weights, old_group_w)
    before_b = jnp.where(detached, traces.biases, old_group_b)
    own_w, own_b = accumulate_traces((before_w, before_b), features, step.decay, step.rho)
    new_group_w, new_group_b = gather_group_traces(step.group, groups)
    now_detached = detached | step.departs
    z_w = jnp.where(now_detached[:, None], own_w, new_group_w)
    z_b = jnp.where(now_detached, own_b, new_group_b)
    kept_w = jnp.where(active[:, None], own_w, before_w)
    kept_b = jnp.where(active, own_b, before_b)
    rows = SharedTraces(
        step.group[0],
        step.group[1],
        jnp.where(now_detached[:, None], kept_w, 0.0),
        jnp.where(now_detached, kept_b, 0.0),
        now_detached,
    )
    return (z_w, z_b), rows


def reset_shared_traces(traces: SharedTraces, episode_ended: jax.Array, rows: bool) -> SharedTraces:
    """Every trace zeroed where ``episode_ended``; every demon rejoins its group.

    Args:
        traces: the new ``SharedTraces``.
        episode_ended: scalar bool (terminated or truncated).
        rows: also reset the per-demon rows; ``False`` where they are known to be all zero
            (no demon detached), so that they are not touched.
    """
    group_w = jnp.where(episode_ended, 0.0, traces.group_weights)
    group_b = jnp.where(episode_ended, 0.0, traces.group_biases)
    if not rows:
        return traces._replace(group_weights=group_w, group_biases=group_b)
    return SharedTraces(
        group_w,
        group_b,
        jnp.where(episode_ended, 0.0, traces.weights),
        jnp.where(episode_ended, 0.0, traces.biases),
        traces.detached & ~episode_ended,
    )


def group_trace_l1(group_traces: tuple[jax.Array, jax.Array]) -> jax.Array:
    """``‖Z_g‖₁`` of every group's trace, weights and bias together, ``(n_groups,)``."""
    z_w, z_b = group_traces
    return jnp.sum(jnp.abs(z_w), axis=-1) + jnp.abs(z_b)


def head_trace_l1(traces: SharedTraces, groups: TraceGroups) -> jax.Array:
    """Each head's trace norm ``‖z_i‖₁`` (weights and bias), ``(n_demons,)``, from the group
    norms: ``‖Z_{g(i)}‖₁`` for attached demons, the own row's norm for detached ones.

    This is the per-head quantity a per-head bounder (ObGD, Elsayed et al. 2024: ``M_i = α κ
    max(|δ_i|, 1) ‖z_i‖₁``) needs, at the cost of one norm per group.
    """
    shared = _rows(group_trace_l1((traces.group_weights, traces.group_biases)), groups.group_of)
    own = group_trace_l1((traces.weights, traces.biases))
    return jnp.where(traces.detached, own, shared)


def total_trace_l1(traces: SharedTraces, groups: TraceGroups) -> jax.Array:
    """``Σ_i ‖z_i‖₁`` over all heads, as the per-demon layout would sum it: each group's norm
    weighted by its number of attached demons, plus the detached demons' own norms."""
    group_norm = group_trace_l1((traces.group_weights, traces.group_biases))
    attached = jnp.zeros_like(group_norm).at[jnp.asarray(groups.group_of)].add((~traces.detached).astype(jnp.float32))
    own = jnp.where(traces.detached, group_trace_l1((traces.weights, traces.biases)), 0.0)
    return jnp.sum(attached * group_norm) + jnp.sum(own)
