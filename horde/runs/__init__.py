"""What drives learners against worlds.

Behaviour policies, the feature map (NumPy and JAX forms), streams over single and vector
Gymnasium environments, the Gymnasium runner ``run``, the compiled JAX runner ``run_jax``, the
single-step ``Daemon``, sharding over devices and ``RunResult``.
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
from horde.runs.features import FeatureMap
from horde.runs.jax_runner import run_jax
from horde.runs.results import DivergenceError, RunResult
from horde.runs.runner import run

__all__ = [
    "ActingDaemon",
    "BehaviourPolicy",
    "CallablePolicy",
    "Daemon",
    "DivergenceError",
    "EpsilonGreedy",
    "FeatureMap",
    "FixedProbabilities",
    "RunResult",
    "StateProbabilities",
    "UniformRandom",
    "as_behaviour_policy",
    "run",
    "run_jax",
]
