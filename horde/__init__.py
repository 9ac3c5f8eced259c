"""horde: learn thousands of general value functions at once, in real time, with JAX."""

from horde.behaviour import (
    BehaviourPolicy,
    CallablePolicy,
    FixedProbabilities,
    StateProbabilities,
    UniformRandom,
)
from horde.bounders import ObGDBounding
from horde.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from horde.daemon import Daemon
from horde import evaluation, plots
from horde.evaluation import error_curve, ideal_returns, run_ideal_returns
from horde.horde_learner import (
    BatchedHordeResult,
    DiagnosticsState,
    HordeLearner,
    HordeLearningResult,
    HordeState,
    HordeUpdateResult,
    Transitions,
    run_horde_learning_loop,
    run_horde_learning_loop_batched,
)
from horde.initializers import sparse_init
from horde.multi_head_learner import (
    BatchedMultiHeadResult,
    HeadParams,
    MLPParams,
    MultiHeadLearningResult,
    MultiHeadMLPLearner,
    MultiHeadMLPState,
    MultiHeadMLPUpdateResult,
    multi_head_metrics_to_dicts,
    run_multi_head_learning_loop,
    run_multi_head_learning_loop_batched,
)
from horde.normalizers import EMANormalizer, WelfordNormalizer
from horde.optimizers import IDBD, LMS, Autostep
from horde.jax_runner import run_jax
from horde.runner import DivergenceError, RunResult, run
from horde.spaces import FeatureMap

__version__ = "0.1.0"

__all__ = [
    "Autostep",
    "BehaviourPolicy",
    "CheckpointError",
    "Daemon",
    "DivergenceError",
    "load_checkpoint",
    "save_checkpoint",
    "CallablePolicy",
    "FeatureMap",
    "FixedProbabilities",
    "RunResult",
    "StateProbabilities",
    "UniformRandom",
    "run",
    "run_jax",
    "BatchedHordeResult",
    "DiagnosticsState",
    "error_curve",
    "evaluation",
    "plots",
    "ideal_returns",
    "run_ideal_returns",
    "BatchedMultiHeadResult",
    "HordeLearner",
    "HordeLearningResult",
    "HordeState",
    "HordeUpdateResult",
    "Transitions",
    "run_horde_learning_loop",
    "run_horde_learning_loop_batched",
    "EMANormalizer",
    "HeadParams",
    "IDBD",
    "LMS",
    "MLPParams",
    "MultiHeadLearningResult",
    "MultiHeadMLPLearner",
    "MultiHeadMLPState",
    "MultiHeadMLPUpdateResult",
    "ObGDBounding",
    "WelfordNormalizer",
    "multi_head_metrics_to_dicts",
    "run_multi_head_learning_loop",
    "run_multi_head_learning_loop_batched",
    "sparse_init",
]
