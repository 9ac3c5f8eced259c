"""The multi-head core: a shared MLP trunk with one linear head per prediction.

This room imports nothing above it. It holds the seed API's ``MultiHeadMLPLearner`` and what it
stands on: state and result types, boundary checks, the trunk's forward pass with its tape and
hand-written backward pass, stacked-head traces and steps, optimizers (LMS, IDBD, Autostep),
ObGD bounding, online normalizers, sparse initialisation, and the scan/vmap learning loops.

Modules: ``types`` (state and result pytrees), ``checks`` (boundary checks), ``trunk`` (forward
with its tape, hand-written backward, trunk step), ``heads`` (stacked-head traces and steps), ``shared_traces`` (one trace per group of heads
whose traces are equal),
``optimizers``, ``bounders``, ``normalizers``, ``initializers``, ``multi_head_learner`` (the
class: configuration, initialisation, compiled and checked entry points) and ``loops``.

Other rooms import what they need from this package (``from horde.core import ...``), never
from its modules' private names.
"""

from horde.core.bounders import ObGDBounding, OvershootBounding, bounder_from_config
from horde.core.checks import (
    ArgumentTypeError,
    all_finite,
    any_inf,
    as_action,
    as_bool,
    as_float,
    as_instance,
    as_int,
    as_seed,
    as_vector,
    check_flag,
    check_keys,
    check_observation_values,
    check_stream,
    check_target_values,
    check_unit_interval,
    concrete_values,
    is_tracer,
)
from horde.core.fusing import computed_together
from horde.core.head_features import FourierFeatures, head_features_from_config
from horde.core.heads import (
    HeadUpdate,
    accumulate_traces,
    head_forward,
    head_step_from_traces,
    materialized,
    select_heads,
)
from horde.core.initializers import sparse_init
from horde.core.loops import (
    multi_head_metrics_to_dicts,
    run_multi_head_learning_loop,
    run_multi_head_learning_loop_batched,
    shard_seeds,
)
from horde.core.multi_head_learner import MultiHeadMLPLearner
from horde.core.normalizers import EMANormalizer, Normalizer, WelfordNormalizer, normalizer_from_config
from horde.core.optimizers import IDBD, LMS, Autostep, Optimizer, optimizer_from_config
from horde.core.shared_traces import (
    SharedTraces,
    TraceGroups,
    TraceRows,
    advance_group_traces,
    decay_groups,
    gather_group_traces,
    group_trace_l1,
    head_step_l1,
    head_trace_l1,
    init_shared_traces,
    reset_shared_traces,
    shared_head_step,
    shared_trace_step,
    total_trace_l1,
    traces_per_head,
    with_trace_rows,
)
from horde.core.state_fit import StateTemplate, leaf_name, state_mismatch
from horde.core.trunk import TrunkTape, trunk_backward
from horde.core.types import (
    BatchedMultiHeadResult,
    HeadParams,
    MLPParams,
    MultiHeadLearningResult,
    MultiHeadMLPState,
    MultiHeadMLPUpdateResult,
)

__all__ = [
    "Autostep",
    "BatchedMultiHeadResult",
    "EMANormalizer",
    "FourierFeatures",
    "HeadParams",
    "HeadUpdate",
    "IDBD",
    "LMS",
    "MLPParams",
    "MultiHeadLearningResult",
    "MultiHeadMLPLearner",
    "MultiHeadMLPState",
    "MultiHeadMLPUpdateResult",
    "Normalizer",
    "ObGDBounding",
    "OvershootBounding",
    "Optimizer",
    "SharedTraces",
    "StateTemplate",
    "TraceGroups",
    "TraceRows",
    "TrunkTape",
    "WelfordNormalizer",
    "accumulate_traces",
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
    "ArgumentTypeError",
    "all_finite",
    "any_inf",
    "as_action",
    "as_bool",
    "as_float",
    "as_instance",
    "as_int",
    "as_seed",
    "bounder_from_config",
    "as_vector",
    "check_flag",
    "check_keys",
    "check_observation_values",
    "check_stream",
    "check_target_values",
    "check_unit_interval",
    "concrete_values",
    "head_features_from_config",
    "head_forward",
    "head_step_from_traces",
    "materialized",
    "computed_together",
    "is_tracer",
    "leaf_name",
    "multi_head_metrics_to_dicts",
    "normalizer_from_config",
    "optimizer_from_config",
    "run_multi_head_learning_loop",
    "run_multi_head_learning_loop_batched",
    "select_heads",
    "shard_seeds",
    "sparse_init",
    "state_mismatch",
    "trunk_backward",
]
