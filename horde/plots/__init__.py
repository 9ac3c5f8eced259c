"""Figures of a recorded run (Matplotlib, object-oriented API, no ``pyplot`` state).

Every figure function takes a ``horde.RunResult`` and returns a ``matplotlib.figure.Figure``.
Nothing here touches ``pyplot``'s global state or opens a window: figures are built on an Agg
canvas, so they work on headless machines, in scripts, tests and notebooks alike (a notebook
shows a returned figure). Give ``path=`` to also save the figure; the format follows the suffix
(``.png``, ``.svg`` or ``.pdf``).

Demons are chosen by name (``"obs[2]@10"``) or head index; ``informative_demons`` picks a
few worth comparing with their returns (a spread of timescales, declared questions first). When there are many of them, curves
are grouped by timescale or by cumulant, as the run recorded them (``RunResult.demons``), and
each group is drawn as its median over demons with an interquartile band.

Example::

    result = horde.run(learner, "CartPole-v1", steps=20_000)
    horde.plots.learning_curves(result, path="td.png")
    horde.plots.prediction_vs_return(result, demons=["obs[2]@10", "reward@10"], path="nexting.pdf")

Modules: ``curves`` (learning, seed and diagnostics curves), ``nexting`` (predictions against
returns), ``returns`` (episode returns against steps with seed bands), ``series`` (the numbers
a curve draws), ``smoothing`` (NaN-aware numerics), ``grouping`` (demons into groups), ``selection`` (arguments), ``drawing`` (figures, saving).
"""

from horde.plots.curves import DIAGNOSTICS, diagnostics_curves, learning_curves, seed_curves
from horde.plots.drawing import SAVE_FORMATS
from horde.plots.grouping import GROUP_BY
from horde.plots.nexting import MAX_PANELS, prediction_vs_return
from horde.plots.returns import last_returns, plot_returns, returns_on_grid
from horde.plots.selection import choice, informative_demons, select_demons
from horde.plots.series import METRICS
from horde.plots.smoothing import moving_average

__all__ = [
    "learning_curves",
    "seed_curves",
    "prediction_vs_return",
    "informative_demons",
    "select_demons",
    "choice",
    "MAX_PANELS",
    "diagnostics_curves",
    "plot_returns",
    "returns_on_grid",
    "last_returns",
    "moving_average",
    "METRICS",
    "GROUP_BY",
    "DIAGNOSTICS",
    "SAVE_FORMATS",
]
