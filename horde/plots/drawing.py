"""Drawing and saving: new Agg figures (no ``pyplot`` state), curves with their bands and
legend, titles that say what was averaged, and saving by file suffix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from horde.plots.grouping import Groups
from horde.plots.series import effective_smoothing
from horde.plots.smoothing import mean_and_se, nanmean, nanpercentiles, wants_log

__all__ = ["SAVE_FORMATS", "YLABELS", "new_figure", "target_axes", "save", "draw", "curve_title"]

#: File suffixes ``path=`` accepts.
SAVE_FORMATS = (".png", ".svg", ".pdf")

#: y-axis label per metric.
YLABELS = {
    "td_error": "squared TD error",
    "normalized_rmse": "normalised RMSE (RMSE / std of return)",
    "rmse": "RMSE against ideal return",
    "rupee": "RUPEE (TD-error units)",
    "ude": "UDE (unitless)",
}
_TITLES = {
    "td_error": "Squared TD error",
    "normalized_rmse": "Normalised RMSE against the ideal return",
    "rmse": "RMSE against the ideal return",
    "rupee": "RUPEE",
    "ude": "UDE",
}


def new_figure(nrows: int = 1, ncols: int = 1, figsize: Any = None, sharex: bool = False) -> tuple[Figure, np.ndarray]:
    """A figure on its own Agg canvas and its ``(nrows, ncols)`` array of axes."""
    fig = Figure(figsize=figsize or (7.5, 4.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, sharex=sharex, squeeze=False)
    fig.set_layout_engine("tight")
    return fig, axes


def target_axes(ax: Any, figsize: Any = None) -> tuple[Figure, Any]:
    """``(figure, axes)`` to draw on: ``ax`` and its figure, or a new single-axes figure."""
    if ax is None:
        fig, axes = new_figure(figsize=figsize)
        return fig, axes[0, 0]
    return ax.figure, ax


def save(fig: Figure, path: str | os.PathLike | None) -> None:
    """Saves ``fig`` to ``path`` (format from the suffix, one of ``SAVE_FORMATS``); nothing
    when ``path`` is None."""
    if path is None:
        return
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise ValueError(
            f"cannot save a figure as {str(path)!r}: the file name must end with one of {', '.join(SAVE_FORMATS)}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=suffix[1:], dpi=150)


def _colors(n: int) -> list:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def draw(
    ax: Any,
    x: np.ndarray,
    values: np.ndarray,
    labels: list[str],
    groups: Groups | None,
    *,
    band: str,
    max_lines: int,
    logy: bool | None,
) -> int:
    """Draws one metric on ``ax``.

    Args:
        ax: the axes.
        x: steps, ``(m,)``.
        values: ``(S, m, n)`` for ``n`` chosen demons.
        labels: one per chosen demon.
        groups: from ``auto_groups``; None for one line per demon.
        band: ``"iqr"``: seeds are averaged first; a line per demon, or a median line and
            interquartile band per group. ``"se"``: mean over seeds with a standard-error band,
            per demon, or per group of the per-seed median over its demons.
        max_lines: the legend is drawn only up to this many curves.
        logy: log y axis; None: when the values drawn span more than two decades.

    Returns:
        The number of curves drawn (curves without a finite value are left out).
    """
    drawn: list[np.ndarray] = []
    series = [(labels[p], [p]) for p in range(len(labels))] if groups is None else groups
    # A curve with no value (no complete return in any window) has no line, legend entry or
    # say in the axes' limits.
    series = [(label, members) for label, members in series if np.isfinite(values[:, :, members]).any()]
    for (label, members), color in zip(series, _colors(len(series))):
        v = values[:, :, members]  # (S, m, g)
        if band == "iqr":
            per_demon = nanmean(v, 0)  # (m, g)
            if groups is None:
                y, lo, hi = per_demon[:, 0], None, None
            else:
                y, lo, hi = nanpercentiles(per_demon, (50, 25, 75), axis=1)
        else:
            per_seed = v[:, :, 0] if groups is None else nanpercentiles(v, (50,), axis=2)[0]
            y, se = mean_and_se(per_seed, 0)
            lo, hi = (y - se, y + se) if values.shape[0] > 1 else (None, None)
        ax.plot(x, y, color=color, lw=1.4, label=label)
        drawn.append(y)
        if lo is not None and hi is not None:  # set together
            ax.fill_between(x, lo, hi, color=color, alpha=0.22, lw=0)
            drawn += [lo, hi]
    if wants_log(drawn) if logy is None else bool(logy):
        ax.set_yscale("log")
    ax.set_xlabel("steps")
    ax.grid(True, alpha=0.3, which="major")
    if 0 < len(series) <= max_lines:
        outside = len(series) > 6
        ax.legend(
            fontsize="small",
            loc="upper left" if outside else "best",
            bbox_to_anchor=(1.01, 1.0) if outside else None,
            frameon=not outside,
            title=None,
        )
    return len(series)


def curve_title(
    metric: str, result: Any, smoothing: int, groups: Groups | None, band: str, n_shown: int, max_lines: int
) -> str:
    """The title of a curve panel: the metric, the smoothing, what was averaged over seeds
    and demons, and whether the legend was left out."""
    title = _TITLES[metric]
    if metric in ("normalized_rmse", "rmse"):
        title += f" (windows of {smoothing} steps"
    else:
        window = effective_smoothing(result, metric, smoothing)
        title += f" (moving average over {window} steps" if window > result.record_every else " (unsmoothed"
    S = result.n_seeds if hasattr(result, "n_seeds") else np.asarray(result.predictions).shape[0]
    if band == "iqr":
        if S > 1:
            title += f", mean of {S} seeds"
    else:
        title += f", mean ± s.e. over {S} seeds" if S > 1 else ", 1 seed: no error band"
    title += ")"
    if groups is not None:
        stat = "median and interquartile range over demons" if band == "iqr" else "median over demons"
        title += f"\n{stat}, per group"
    if n_shown > max_lines:
        title += f" ({n_shown} curves; legend left out)"
    return title
