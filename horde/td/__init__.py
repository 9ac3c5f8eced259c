"""Temporal-difference learning of demons on the multi-head core: the ``HordeLearner``.

Each demon is a head. This room holds the TD target and trace decay, off-policy GTD(λ), the
RUPEE and UDE diagnostics, ``Transitions`` and the Horde's scan/vmap loops. It imports only
``horde.core`` and ``demons``. Other rooms import from this package, never from its modules'
private names.

Modules: ``targets`` (the TD target and the trace decay), ``traces`` (head traces stored once
per group of demons with equal traces), ``gtd`` (GTD(λ)'s correction),
``diagnostics`` (RUPEE and UDE), ``least_squares`` (LSTD(λ) heads), ``transitions`` (``Transitions``), ``types`` (state and
results), ``horde_learner`` (the class) and ``loops`` (scan and vmap over a stream).
"""

from horde.td.diagnostics import DiagnosticsState, diagnostics_step, rupee_update, ude_update
from horde.td.gtd import gtd_correction, secondary_update
from horde.td.horde_learner import AUTO_LSTD_MAX_BYTES, AUTO_LSTD_MAX_GROUPS, HordeLearner, choose_heads
from horde.td.least_squares import (
    LSTDHeads,
    LSTDState,
    init_lstd,
    lstd_basis,
    lstd_groups,
    lstd_heads_from_config,
    lstd_rate,
    lstd_restart,
    lstd_solve,
    lstd_step,
)
from horde.td.loops import run_horde_learning_loop, run_horde_learning_loop_batched
from horde.td.targets import decay_traces, reset_traces, td_targets, trace_decay
from horde.td.traces import (
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
    trace_groups,
    with_trace_rows,
)
from horde.td.transitions import Transitions, as_transitions
from horde.td.types import BatchedHordeResult, HordeLearningResult, HordeState, HordeUpdateResult

__all__ = [
    "AUTO_LSTD_MAX_BYTES",
    "AUTO_LSTD_MAX_GROUPS",
    "BatchedHordeResult",
    "DiagnosticsState",
    "HordeLearner",
    "HordeLearningResult",
    "HordeState",
    "HordeUpdateResult",
    "LSTDHeads",
    "LSTDState",
    "choose_heads",
    "init_lstd",
    "lstd_basis",
    "lstd_groups",
    "lstd_heads_from_config",
    "lstd_rate",
    "lstd_restart",
    "lstd_solve",
    "lstd_step",
    "SharedTraces",
    "TraceGroups",
    "TraceRows",
    "Transitions",
    "as_transitions",
    "run_horde_learning_loop",
    "run_horde_learning_loop_batched",
    "decay_traces",
    "diagnostics_step",
    "gtd_correction",
    "reset_traces",
    "rupee_update",
    "secondary_update",
    "td_targets",
    "trace_decay",
    "ude_update",
    "advance_group_traces",
    "gather_group_traces",
    "group_trace_l1",
    "head_step_l1",
    "head_trace_l1",
    "init_shared_traces",
    "shared_trace_step",
    "reset_shared_traces",
    "total_trace_l1",
    "trace_groups",
    "with_trace_rows",
]
