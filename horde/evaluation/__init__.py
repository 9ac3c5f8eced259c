"""How good are the predictions? Ideal returns of a recorded run, and errors against them.

Also the ground truth: ``true_values`` estimates ``E[G_i | S = s]`` by Monte Carlo rollouts of a
JAX environment, and ``true_value_scores`` scores a run against it (RMSVE, floor).

Reads ``horde.RunResult`` only (what a demon is comes from ``RunResult.demons``, never from
its name). See ``horde.evaluation.returns`` for the definitions.
"""

from horde.evaluation.demon_data import cumulants_of, demon_infos, off_policy_mask, terminal_outcomes, timescales
from horde.evaluation.flat_returns import FLAT_RETURN_FRACTION, flat_returns
from horde.evaluation.returns import (
    ErrorCurve,
    IdealReturns,
    demon_summary,
    error_curve,
    ideal_returns,
    run_ideal_returns,
)
from horde.evaluation.true_values import TrueValues, true_value_scores, true_values

__all__ = [
    "IdealReturns",
    "ideal_returns",
    "run_ideal_returns",
    "ErrorCurve",
    "error_curve",
    "demon_summary",
    "demon_infos",
    "terminal_outcomes",
    "timescales",
    "cumulants_of",
    "off_policy_mask",
    "flat_returns",
    "FLAT_RETURN_FRACTION",
    "TrueValues",
    "true_values",
    "true_value_scores",
]
