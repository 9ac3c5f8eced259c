"""Figures of a recorded run (Matplotlib, object-oriented API, no ``pyplot`` state).

Reads ``horde.RunResult`` only. See ``horde.plots.figures`` for the details.
"""

from horde.plots.figures import (
    DIAGNOSTICS,
    GROUP_BY,
    METRICS,
    SAVE_FORMATS,
    diagnostics_curves,
    learning_curves,
    moving_average,
    prediction_vs_return,
    seed_curves,
)

__all__ = [
    "learning_curves",
    "seed_curves",
    "prediction_vs_return",
    "diagnostics_curves",
    "moving_average",
    "METRICS",
    "GROUP_BY",
    "DIAGNOSTICS",
    "SAVE_FORMATS",
]
