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

The arithmetic per trace is that of the per-demon layout, so results equal those of
``HordeLearner(..., shared_traces=False)``: bit for bit where the updates are elementwise, to
float32 rounding where a reduction over a demon's per-weight steps enters (Autostep, the
default head optimizer; ObGD's norms), which XLA may sum in another order.

The machinery (group traces, per-demon rows, their step, reset and norms) is the core's
(``horde.core.shared_traces``, which the ``MultiHeadMLPLearner`` uses for heads sharing a
``per_head_gamma_lamda``); this module adds the demons' grouping and re-exports it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from demons import DemonSet
from horde.core import (
    SharedTraces,
    TraceGroups,
    TraceRows,
    advance_group_traces,
    gather_group_traces,
    group_trace_l1,
    head_step_l1,
    head_trace_l1,
    init_shared_traces,
    reset_shared_traces,
    shared_trace_step,
    total_trace_l1,
    traces_per_head,
    with_trace_rows,
)

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
    "traces_per_head",
    "with_trace_rows",
]


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
    keys: list[Any] = []
    for i, demon in enumerate(demons):
        constant = demon.discount.constant_gamma
        never_decays = float(np.float32(demon.lamda)) == 0.0 or (constant is not None and float(constant) == 0.0)
        decay_key = ("no decay",) if never_decays else (demon.discount, float(np.float32(demon.lamda)))
        # A cumulant that is a user function may be NaN (the demon inactive) at any step.
        own = i if getattr(demon.cumulant, "plain_data", True) is False else None
        keys.append((decay_key, demon.target_policy, own))
    return TraceGroups.from_keys(keys)
