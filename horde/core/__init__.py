"""The multi-head core: a shared MLP trunk with one linear head per prediction.

This room imports nothing above it. It holds the seed API's ``MultiHeadMLPLearner`` and what it
stands on: state and result types, boundary checks, the trunk's forward pass with its tape and
hand-written backward pass, stacked-head traces and steps, optimizers (LMS, IDBD, Autostep),
ObGD bounding, online normalizers, sparse initialisation, and the scan/vmap learning loops.

Other rooms import what they need from this package (``from horde.core import ...``), never
from its modules' private names.
"""

from horde.core.bounders import ObGDBounding
from horde.core.initializers import sparse_init
from horde.core.multi_head_learner import (
    BatchedMultiHeadResult,
    HeadParams,
    MLPParams,
    MultiHeadLearningResult,
    MultiHeadMLPLearner,
    MultiHeadMLPState,
    MultiHeadMLPUpdateResult,
    all_finite,
    any_inf,
    as_vector,
    check_flag,
    check_keys,
    check_observation_values,
    check_stream,
    check_target_values,
    concrete_values,
    is_tracer,
    multi_head_metrics_to_dicts,
    run_multi_head_learning_loop,
    run_multi_head_learning_loop_batched,
    select_heads,
)
from horde.core.normalizers import EMANormalizer, Normalizer, WelfordNormalizer
from horde.core.optimizers import IDBD, LMS, Autostep, Optimizer

__all__ = [
    "Autostep",
    "BatchedMultiHeadResult",
    "EMANormalizer",
    "HeadParams",
    "IDBD",
    "LMS",
    "MLPParams",
    "MultiHeadLearningResult",
    "MultiHeadMLPLearner",
    "MultiHeadMLPState",
    "MultiHeadMLPUpdateResult",
    "Normalizer",
    "ObGDBounding",
    "Optimizer",
    "WelfordNormalizer",
    "all_finite",
    "any_inf",
    "as_vector",
    "check_flag",
    "check_keys",
    "check_observation_values",
    "check_stream",
    "check_target_values",
    "concrete_values",
    "is_tracer",
    "multi_head_metrics_to_dicts",
    "run_multi_head_learning_loop",
    "run_multi_head_learning_loop_batched",
    "select_heads",
    "sparse_init",
]
