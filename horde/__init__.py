"""horde: learn thousands of general value functions at once, in real time, with JAX."""

from horde import evaluation
from horde.cli import CheckpointError, load_checkpoint, save_checkpoint
from horde.control import ControlLearner, ControlState
from horde.core import (
    IDBD,
    LMS,
    Autostep,
    BatchedMultiHeadResult,
    EMANormalizer,
    HeadParams,
    MLPParams,
    MultiHeadLearningResult,
    MultiHeadMLPLearner,
    MultiHeadMLPState,
    MultiHeadMLPUpdateResult,
    ObGDBounding,
    WelfordNormalizer,
    multi_head_metrics_to_dicts,
    run_multi_head_learning_loop,
    run_multi_head_learning_loop_batched,
    sparse_init,
)
from horde.evaluation import error_curve, ideal_returns, run_ideal_returns
from horde.runs import (
    ActingDaemon,
    BehaviourPolicy,
    CallablePolicy,
    Daemon,
    DivergenceError,
    EpsilonGreedy,
    FeatureMap,
    FixedProbabilities,
    RunResult,
    StateProbabilities,
    UniformRandom,
    run,
    run_jax,
)
from horde.td import (
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

__version__ = "0.1.0"


def __getattr__(name: str):
    # Plots need Matplotlib, which `import horde` does not load: `horde.plots` is imported on
    # first use.
    if name == "plots":
        import importlib

        return importlib.import_module("horde.plots")
    raise AttributeError(f"module 'horde' has no attribute {name!r}")


__all__ = [
    "Autostep",
    "BehaviourPolicy",
    "CheckpointError",
    "ControlLearner",
    "ControlState",
    "EpsilonGreedy",
    "ActingDaemon",
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
