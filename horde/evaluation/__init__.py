"""How good are the predictions? Ideal returns of a recorded run, and errors against them.

Reads ``horde.RunResult`` only. See ``horde.evaluation.returns`` for the definitions.
"""

from horde.evaluation.returns import (
    ErrorCurve,
    IdealReturns,
    demon_summary,
    error_curve,
    ideal_returns,
    run_ideal_returns,
)

__all__ = ["IdealReturns", "ideal_returns", "run_ideal_returns", "ErrorCurve", "error_curve", "demon_summary"]
