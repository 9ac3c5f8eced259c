"""What drives learners against worlds.

Behaviour policies, the feature map (NumPy and JAX forms), streams over single and vector
Gymnasium environments, the Gymnasium runner ``run``, the compiled JAX runner ``run_jax``, the
single-step ``Daemon``, sharding over devices and ``RunResult``.
"""

from horde.runs.behaviour import (
    BehaviourPolicy,
    CallablePolicy,
    FixedProbabilities,
    StateProbabilities,
    UniformRandom,
    as_behaviour_policy,
)
from horde.runs.daemon import Daemon
from horde.runs.features import FeatureMap
from horde.runs.jax_runner import run_jax
from horde.runs.results import DivergenceError, RunResult
from horde.runs.runner import run
from horde.runs.sharding import (
    run_horde_learning_loop_distributed,
    run_horde_learning_loop_sharded,
    run_multi_head_learning_loop_sharded,
    seed_mesh,
)

__all__ = [
    "BehaviourPolicy",
    "CallablePolicy",
    "Daemon",
    "DivergenceError",
    "FeatureMap",
    "FixedProbabilities",
    "RunResult",
    "StateProbabilities",
    "UniformRandom",
    "as_behaviour_policy",
    "run",
    "run_horde_learning_loop_distributed",
    "run_horde_learning_loop_sharded",
    "run_jax",
    "run_multi_head_learning_loop_sharded",
    "seed_mesh",
]
