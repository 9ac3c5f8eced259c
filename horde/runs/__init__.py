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
from horde.runs.records import RECORDS_DIR, RecordsError, RecordWriter, read_records
from horde.runs.results import DivergenceError, RunError, RunResult
from horde.runs.runner import run

__all__ = [
    "BehaviourPolicy",
    "CallablePolicy",
    "Daemon",
    "DivergenceError",
    "FeatureMap",
    "FixedProbabilities",
    "RECORDS_DIR",
    "RecordWriter",
    "RecordsError",
    "RunError",
    "RunResult",
    "StateProbabilities",
    "UniformRandom",
    "as_behaviour_policy",
    "read_records",
    "run",
    "run_jax",
]
