"""Curves over time: per-demon learning curves, the spread over seeds, and RUPEE/UDE.

Each function takes a ``horde.RunResult`` and returns a ``matplotlib.figure.Figure``; many
demons are drawn as groups (``horde.plots.grouping``) with a median and a band.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from horde.evaluation import flat_returns, true_value_scores
from horde.plots.drawing import YLABELS, curve_title, draw, new_figure, save, target_axes
from horde.plots.grouping import GROUP_BY, auto_groups
from horde.plots.selection import check_max_lines, check_result, check_smoothing, choice, select_demons
from horde.plots.series import METRICS, metric_series

__all__ = ["learning_curves", "seed_curves", "diagnostics_curves", "DIAGNOSTICS"]

#: ``which=`` choices of ``diagnostics_curves``.
DIAGNOSTICS = ("rupee", "ude", "both")


def learning_curves(
    result: Any,
    *,
    metric: str = "td_error",
    demons: Any = None,
    smoothing: float | None = None,
    group_by: str | None = None,
    max_lines: int = 12,
    logy: bool | None = None,
    path: str | os.PathLike | None = None,
    ax: Any = None,
) -> Figure:
    """Per-demon learning curves against steps.

    Args:
        result: a ``horde.RunResult``.
        metric: ``"td_error"``: squared TD error, moving average over ``smoothing`` steps
            (NaN-aware); ``"normalized_rmse"`` / ``"rmse"``: (normalised) RMSE of the
            predictions against the ideal returns over consecutive windows of ``smoothing``
            steps (``horde.evaluation.error_curve``; needs ``record_every=1``). Demons whose
            return barely varies (``horde.evaluation.flat_returns``) are left out of the
            normalised RMSE: their score says nothing. A run that
            recorded true values (``run_jax(..., true_value_every=...)``) also shows, for
            ``"normalized_rmse"``, the floor as a dashed line: the median over the chosen
            demons of the score their true values get (``horde.evaluation.true_value_scores``).
        demons: names or head indices; default: all.
        smoothing: window in steps; default about 1% of the run (at least 1).
        group_by: ``None``: one line per demon while there are at most ``max_lines``, grouped
            automatically beyond that; ``"timescale"`` (the demons' recorded timescales,
            ``RunResult.demons``), ``"cumulant"`` (demons with the same cumulant) or ``"all"``:
            per group, the median over its demons with an interquartile band.
        max_lines: most curves drawn one by one (and shown in the legend).
        logy: log y axis; default: when the positive values drawn span more than two decades.
        path: also save the figure here (``.png``, ``.svg`` or ``.pdf``).
        ax: draw on this Axes instead of a new figure (its figure is returned).

    With several seeds, values are averaged over seeds first (see ``seed_curves`` for the
    spread across seeds).
    """
    return _curves(result, metric, demons, smoothing, group_by, max_lines, logy, path, ax, band="iqr")


def seed_curves(
    result: Any,
    *,
    metric: str = "td_error",
    demons: Any = None,
    smoothing: float | None = None,
    group_by: str | None = None,
    max_lines: int = 12,
    logy: bool | None = None,
    path: str | os.PathLike | None = None,
    ax: Any = None,
) -> Figure:
    """Mean over seeds with a standard-error band (across seeds), per demon or per group.

    Arguments as ``learning_curves``. Each seed's curve is smoothed first; for a group, each
    seed contributes the median over the group's demons. With one seed, no band is drawn.
    """
    return _curves(result, metric, demons, smoothing, group_by, max_lines, logy, path, ax, band="se")


def _curves(result, metric, demons, smoothing, group_by, max_lines, logy, path, ax, band):
    check_result(result)
    metric = choice(metric, "metric", METRICS)
    if group_by is not None:
        choice(group_by, "group_by", GROUP_BY)
    max_lines = check_max_lines(max_lines)
    idx = select_demons(result, demons)
    smoothing = check_smoothing(result, smoothing)
    groups = auto_groups(result, idx, group_by, max_lines)
    x, values = metric_series(result, metric, idx, smoothing, seed_mean=(band == "iqr"))
    n_flat = 0
    if metric == "normalized_rmse":
        # A return that barely varies makes RMSE / std(G) large whatever the learner does.
        flat = flat_returns(result)[idx]
        values[..., flat] = np.nan
        n_flat = int(flat.sum())
    fig, target = target_axes(ax)
    labels = [result.demon_names[i] for i in idx]
    if metric == "normalized_rmse":
        _draw_floor(target, result, idx)
    n_shown = draw(target, x, values, labels, groups, band=band, max_lines=max_lines, logy=logy)
    target.set_ylabel(YLABELS[metric])
    title = curve_title(metric, result, smoothing, groups, band, n_shown, max_lines)
    if n_flat:
        title += f"\n{n_flat} demon{'s' if n_flat > 1 else ''} whose return barely varies left out"
    target.set_title(title, fontsize="medium")
    save(fig, path)
    return fig


def _draw_floor(ax: Any, result: Any, idx: Any) -> None:
    """A dashed line at the median floor of the chosen demons (the normalised RMSE their true
    values score against the ideal returns over the run), when the run recorded true values."""
    if getattr(result, "true_values", None) is None:
        return
    floor = true_value_scores(result, last_fraction=1.0)["floor"][np.asarray(idx, int)]
    if np.isfinite(floor).any():
        level = float(np.nanmedian(floor))
        ax.axhline(level, color="0.25", ls="--", lw=1.2, label=f"floor (true values) {level:.3g}")


def diagnostics_curves(
    result: Any,
    *,
    which: str = "both",
    demons: Any = None,
    smoothing: float | None = None,
    group_by: str | None = None,
    max_lines: int = 12,
    logy: bool | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """RUPEE and/or UDE over time, per demon or grouped (as ``learning_curves``).

    The other arguments are those of ``learning_curves``; seeds are averaged first.

    Args:
        which: ``"rupee"``, ``"ude"`` or ``"both"`` (two panels, one above the other).

    Raises:
        ValueError: the run has no diagnostics (build the learner with
            ``HordeLearner(..., diagnostics=True)``).
    """
    check_result(result)
    which = choice(which, "which", DIAGNOSTICS)
    if getattr(result, "rupee", None) is None or getattr(result, "ude", None) is None:
        raise ValueError(
            "this run has no RUPEE/UDE diagnostics (result.rupee is None): build the learner "
            "with horde.HordeLearner(..., diagnostics=True) and run again"
        )
    if group_by is not None:
        choice(group_by, "group_by", GROUP_BY)
    max_lines = check_max_lines(max_lines)
    idx = select_demons(result, demons)
    smoothing = check_smoothing(result, smoothing)
    groups = auto_groups(result, idx, group_by, max_lines)
    metrics = ("rupee", "ude") if which == "both" else (which,)
    fig, axes = new_figure(len(metrics), 1, figsize=(7.5, 3.6 * len(metrics) + 0.6), sharex=True)
    labels = [result.demon_names[i] for i in idx]
    for m, target in zip(metrics, axes[:, 0]):
        x, values = metric_series(result, m, idx, smoothing, seed_mean=True)
        n_shown = draw(target, x, values, labels, groups, band="iqr", max_lines=max_lines, logy=logy)
        target.set_ylabel(YLABELS[m])
        target.set_title(curve_title(m, result, smoothing, groups, "iqr", n_shown, max_lines), fontsize="medium")
        if target is not axes[-1, 0]:
            target.set_xlabel("")
    save(fig, path)
    return fig
