"""What drives learners against worlds.

Behaviour policies, the feature map (NumPy and JAX forms), streams over single and vector
Gymnasium environments, the Gymnasium runner ``run``, the compiled JAX runner ``run_jax``, the
single-step ``Daemon``, sharding over devices, ``RunResult``, and Monte Carlo rollouts of
JAX environments (``rollout_returns``, the engine of ``horde.evaluation.true_values``).
"""

from horde.runs.acting import ActingDaemon
from horde.runs.behaviour import (
    BehaviourPolicy,
    CallablePolicy,
    EpsilonGreedy,
    FixedProbabilities,
    StateProbabilities,
    UniformRandom,
    as_behaviour_policy,
)
from horde.runs.daemon import Daemon
from horde.runs.dispatch import AsyncDispatchWarning, synchronous_cpu_dispatch, use_synchronous_cpu_dispatch
from horde.runs.features import FeatureMap
from horde.runs.jax_envs import JaxEnv, as_jax_env
from horde.runs.jax_runner import run_jax
from horde.runs.records import RECORDS_DIR, RecordsError, RecordWriter, mark_unfinished, read_records
from horde.runs.results import DivergenceError, RunError, RunResult
from horde.runs.rollouts import ROLLOUT_MAX_HORIZON, ROLLOUT_TOLERANCE, RolloutReturns, rollout_returns
from horde.runs.runner import run
from horde.runs.sharding import (
    run_horde_learning_loop_distributed,
    run_horde_learning_loop_sharded,
    run_multi_head_learning_loop_sharded,
    seed_mesh,
)

__all__ = [
    "ActingDaemon",
    "AsyncDispatchWarning",
    "BehaviourPolicy",
    "CallablePolicy",
    "Daemon",
    "DivergenceError",
    "EpsilonGreedy",
    "FeatureMap",
    "FixedProbabilities",
    "JaxEnv",
    "ROLLOUT_MAX_HORIZON",
    "ROLLOUT_TOLERANCE",
    "RolloutReturns",
    "RECORDS_DIR",
    "RecordWriter",
    "RecordsError",
    "RunError",
    "RunResult",
    "StateProbabilities",
    "UniformRandom",
    "as_behaviour_policy",
    "as_jax_env",
    "mark_unfinished",
    "read_records",
    "run",
    "rollout_returns",
    "run_horde_learning_loop_distributed",
    "run_horde_learning_loop_sharded",
    "run_jax",
    "run_multi_head_learning_loop_sharded",
    "seed_mesh",
    "synchronous_cpu_dispatch",
    "use_synchronous_cpu_dispatch",
]
