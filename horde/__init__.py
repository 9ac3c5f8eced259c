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
    FourierFeatures,
    HeadParams,
    MLPParams,
    MultiHeadLearningResult,
    MultiHeadMLPLearner,
    MultiHeadMLPState,
    MultiHeadMLPUpdateResult,
    ObGDBounding,
    OvershootBounding,
    WelfordNormalizer,
    multi_head_metrics_to_dicts,
    run_multi_head_learning_loop,
    run_multi_head_learning_loop_batched,
    sparse_init,
)
from horde.evaluation import error_curve, ideal_returns, run_ideal_returns, true_values
from horde.runs import (
    ActingDaemon,
    AsyncDispatchWarning,
    BehaviourPolicy,
    CallablePolicy,
    Daemon,
    DivergenceError,
    EpsilonGreedy,
    FeatureMap,
    FixedProbabilities,
    RecordsError,
    RunError,
    RunResult,
    StateProbabilities,
    UniformRandom,
    run,
    run_jax,
    use_synchronous_cpu_dispatch,
)
from horde.td import (
    BatchedHordeResult,
    DiagnosticsState,
    HordeLearner,
    HordeLearningResult,
    HordeState,
    HordeUpdateResult,
    LSTDHeads,
    Transitions,
    run_horde_learning_loop,
    run_horde_learning_loop_batched,
)

__version__ = "0.1.0"


def __getattr__(name: str):
    # Plots need Matplotlib, which `import horde` does not load: `horde.plots` is imported on
    # first use. It is left out of __all__ so that `from horde import *` does not load it.
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
    "AsyncDispatchWarning",
    "Daemon",
    "DivergenceError",
    "load_checkpoint",
    "save_checkpoint",
    "CallablePolicy",
    "FeatureMap",
    "FixedProbabilities",
    "RecordsError",
    "RunError",
    "RunResult",
    "StateProbabilities",
    "UniformRandom",
    "run",
    "run_jax",
    "use_synchronous_cpu_dispatch",
    "BatchedHordeResult",
    "DiagnosticsState",
    "error_curve",
    "evaluation",
    "ideal_returns",
    "run_ideal_returns",
    "true_values",
    "BatchedMultiHeadResult",
    "HordeLearner",
    "HordeLearningResult",
    "HordeState",
    "HordeUpdateResult",
    "LSTDHeads",
    "Transitions",
    "run_horde_learning_loop",
    "run_horde_learning_loop_batched",
    "EMANormalizer",
    "FourierFeatures",
    "HeadParams",
    "IDBD",
    "LMS",
    "MLPParams",
    "MultiHeadLearningResult",
    "MultiHeadMLPLearner",
    "MultiHeadMLPState",
    "MultiHeadMLPUpdateResult",
    "ObGDBounding",
    "OvershootBounding",
    "WelfordNormalizer",
    "multi_head_metrics_to_dicts",
    "run_multi_head_learning_loop",
    "run_multi_head_learning_loop_batched",
    "sparse_init",
]
