"""Figures of a recorded run: per-demon learning curves, seeds, predictions against returns, and
RUPEE/UDE diagnostics.

Every function takes a ``horde.RunResult`` and returns a ``matplotlib.figure.Figure``. Nothing
here touches ``pyplot``'s global state or opens a window: figures are built with the
object-oriented API on an Agg canvas, so they work on headless machines, in scripts, tests and
notebooks alike (a notebook shows a returned figure). Give ``path=`` to also save the figure;
the format follows the suffix (``.png``, ``.svg`` or ``.pdf``).

Demons are chosen by name (``"obs[2]@10"``) or head index. When there are many of them, curves
are grouped by timescale (the number after ``@`` in the name) or by cumulant (the part before
``@``) and each group is drawn as its median over demons with an interquartile band.

Example::

    result = horde.run(learner, "CartPole-v1", steps=20_000)
    horde.plots.learning_curves(result, path="td.png")
    horde.plots.prediction_vs_return(result, demons=["obs[2]@10", "reward@10"], path="nexting.pdf")
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from demons.demon import timescale_label as _timescale_label
from horde.evaluation import returns as _evaluation

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

#: ``metric=`` choices: squared TD error (from the log), and windowed (normalised) RMSE against
#: the ideal returns (needs ``record_every=1``).
METRICS = ("td_error", "normalized_rmse", "rmse")
#: ``group_by=`` choices (besides ``None``).
GROUP_BY = ("timescale", "cumulant", "all")
#: ``which=`` choices of ``diagnostics_curves``.
DIAGNOSTICS = ("rupee", "ude", "both")
#: File suffixes ``path=`` accepts.
SAVE_FORMATS = (".png", ".svg", ".pdf")

_MAX_POINTS = 2000  # points per plotted curve; longer curves are thinned after smoothing
_MAX_SUBPLOTS = 24
_LOG_DECADES = 2.0

_YLABELS = {
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


# ---------------------------------------------------------------------------------------------
# Numerics


def moving_average(values: Any, window: int, axis: int = 0) -> np.ndarray:
    """Trailing, NaN-aware moving average.

    Element ``j`` is the mean of the non-NaN values among ``values[j - window + 1 .. j]`` along
    ``axis`` (fewer at the start: the first element is the first value itself); NaN where that
    stretch holds no number. ``window=1`` returns the values unchanged (as float64).
    """
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    x = np.moveaxis(np.asarray(values, np.float64), axis, 0)
    ok = ~np.isnan(x)
    csum = np.cumsum(np.where(ok, x, 0.0), axis=0)
    ccnt = np.cumsum(ok, axis=0, dtype=np.int64)
    if window < x.shape[0]:
        csum[window:] = csum[window:] - csum[:-window].copy()
        ccnt[window:] = ccnt[window:] - ccnt[:-window].copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(ccnt > 0, csum / np.maximum(ccnt, 1), np.nan)
    return np.moveaxis(out, 0, axis)


def _nanmean(x: np.ndarray, axis) -> np.ndarray:
    ok = ~np.isnan(x)
    n = ok.sum(axis=axis)
    s = np.where(ok, x, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def _nanpercentiles(x: np.ndarray, qs: Sequence[float], axis: int) -> list[np.ndarray]:
    """``np.nanpercentile`` without the all-NaN warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return [np.nanpercentile(x, q, axis=axis) for q in qs]


def _mean_and_se(x: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error (ddof 1) over ``axis``, NaN-aware; SE is NaN with < 2 values."""
    ok = ~np.isnan(x)
    n = ok.sum(axis=axis)
    mean = _nanmean(x, axis)
    dev = np.where(ok, x - np.expand_dims(mean, axis), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (dev**2).sum(axis=axis) / (n - 1)
        se = np.where(n > 1, np.sqrt(var / n), np.nan)
    return mean, se


def _thin(n: int) -> np.ndarray:
    """Indices of at most ``_MAX_POINTS`` evenly spaced points of ``n``, the last included."""
    if n <= _MAX_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, _MAX_POINTS).round().astype(np.int64))


def _wants_log(arrays: Iterable[np.ndarray]) -> bool:
    """True when the positive finite values span more than ``_LOG_DECADES`` decades."""
    lo, hi = math.inf, 0.0
    for a in arrays:
        a = np.asarray(a, np.float64)
        a = a[np.isfinite(a) & (a > 0)]
        if a.size:
            lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
    return hi > 0 and math.log10(hi / lo) > _LOG_DECADES


# ---------------------------------------------------------------------------------------------
# Arguments


def _choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
    return value


def _check_result(result: Any) -> None:
    for attr in ("demon_names", "steps", "predictions", "td_errors"):
        if not hasattr(result, attr):
            raise TypeError(f"result must be a horde.RunResult, got {type(result).__name__}")
    if np.asarray(result.steps).size == 0:
        raise ValueError("the run recorded nothing (no steps): there is nothing to plot")


def _select(result: Any, demons: Any, *, required: bool = False) -> list[int]:
    """Head indices of ``demons`` (names or indices; a single one is allowed)."""
    names = tuple(result.demon_names)
    n = len(names)
    if demons is None:
        if required:
            raise ValueError(f"demons must be given (names or indices), e.g. demons={list(names[:2])!r}")
        return list(range(n))
    if isinstance(demons, (str, int, np.integer)) and not isinstance(demons, bool):
        demons = [demons]
    try:
        items = list(demons)
    except TypeError:
        raise TypeError(f"demons must be names or indices, got {demons!r}") from None
    if not items:
        raise ValueError("demons must not be empty")
    lookup = {name: i for i, name in enumerate(names)}
    out: list[int] = []
    for item in items:
        if isinstance(item, str):
            if item not in lookup:
                close = difflib.get_close_matches(item, names, n=3)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                shown = ", ".join(map(repr, names[:6])) + (", ..." if n > 6 else "")
                raise ValueError(f"unknown demon {item!r}{hint} This run has {n} demons: {shown}")
            i = lookup[item]
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            i = int(item)
            if not -n <= i < n:
                raise ValueError(f"demon index {i} is out of range: this run has {n} demons")
            i %= n
        else:
            raise TypeError(f"demons must be names (str) or indices (int), got {item!r}")
        if i not in out:
            out.append(i)
    return out


def _default_smoothing(result: Any) -> int:
    steps = np.asarray(result.steps)
    span = int(steps[-1] - steps[0]) + int(result.record_every)
    return max(1, int(round(0.01 * span)))


def _check_smoothing(result: Any, smoothing: Any) -> int:
    if smoothing is None:
        return _default_smoothing(result)
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float, np.integer, np.floating)):
        raise ValueError(f"smoothing must be a window in steps (a number >= 1), got {smoothing!r}")
    if not (math.isfinite(smoothing) and smoothing >= 1):
        raise ValueError(f"smoothing must be a window in steps (a number >= 1), got {smoothing!r}")
    return int(round(smoothing))


def _check_max_lines(max_lines: Any) -> int:
    if isinstance(max_lines, bool) or not isinstance(max_lines, (int, np.integer)) or max_lines < 1:
        raise ValueError(f"max_lines must be a positive integer, got {max_lines!r}")
    return int(max_lines)


def _demon_configs(result: Any) -> list[dict] | None:
    learner = (getattr(result, "config", None) or {}).get("learner") or {}
    ds = learner.get("demons")
    if isinstance(ds, list) and len(ds) == len(result.demon_names):
        return ds
    return None


def _z(result: Any, idx: Sequence[int]) -> np.ndarray:
    """Terminal outcomes of the chosen demons, from the run's config (0 where unknown)."""
    ds = _demon_configs(result)
    if ds is None:
        return np.zeros(len(idx))
    return np.asarray([float(ds[i].get("z", 0.0) or 0.0) for i in idx])


# ---------------------------------------------------------------------------------------------
# Grouping


def _timescale_of(result: Any, i: int) -> float | None:
    name = result.demon_names[i]
    head, sep, tail = name.rpartition("@")
    if sep:
        try:
            t = float(tail)
            if math.isfinite(t) and t > 0:
                return t
        except ValueError:
            pass
    ds = _demon_configs(result)
    if ds is not None:
        disc = ds[i].get("discount") or {}
        if disc.get("kind") == "timescale" and "steps" in disc:
            return float(disc["steps"])
        if disc.get("kind") == "constant" and "gamma" in disc and float(disc["gamma"]) < 1:
            return 1.0 / (1.0 - float(disc["gamma"]))
    return None


def _groups(result: Any, idx: Sequence[int], group_by: str) -> list[tuple[str, list[int]]]:
    """``[(label, positions in idx)]`` in a readable order."""
    if group_by == "all":
        return [(f"all demons ({len(idx)})", list(range(len(idx))))]
    if group_by == "timescale":
        keyed: dict[float | None, list[int]] = {}
        for p, i in enumerate(idx):
            keyed.setdefault(_timescale_of(result, i), []).append(p)
        keys = sorted(k for k in keyed if k is not None) + ([None] if None in keyed else [])
        out = []
        for k in keys:
            members = keyed[k]
            if k is None:
                ts = "no timescale"
            else:
                label = _timescale_label(round(k, 6))
                ts = f"timescale {label} {'step' if label == '1' else 'steps'}"
            out.append((f"{ts} ({_count(len(members))})", members))
        return out
    # cumulant: the part of the name before '@'
    keyed2: dict[str, list[int]] = {}
    for p, i in enumerate(idx):
        name = result.demon_names[i]
        keyed2.setdefault(name.rpartition("@")[0] or name, []).append(p)
    return [(f"{k} ({_count(len(v))})", v) for k, v in keyed2.items()]


def _count(n: int) -> str:
    return f"{n} demon" if n == 1 else f"{n} demons"


def _auto_groups(result, idx, group_by, max_lines):
    """The groups to draw, or None for one line per demon."""
    if group_by is not None:
        return _groups(result, idx, _choice(group_by, "group_by", GROUP_BY))
    if len(idx) <= max_lines:
        return None
    candidates = [_groups(result, idx, g) for g in ("timescale", "cumulant")]
    for ok in (lambda g: 1 < len(g) <= max_lines, lambda g: len(g) <= max_lines):
        for g in candidates:
            if ok(g):
                return g
    return _groups(result, idx, "all")


# ---------------------------------------------------------------------------------------------
# Data


def _subset(result: Any, idx: Sequence[int]) -> Any:
    """A shallow copy of ``result`` restricted to the chosen demons (for error curves)."""
    import dataclasses

    idx = list(idx)
    fields = {
        name: np.asarray(getattr(result, name))[..., idx]
        for name in ("predictions", "td_errors", "cumulants", "discounts")
    }
    for name in ("rupee", "ude"):
        if getattr(result, name, None) is not None:
            fields[name] = np.asarray(getattr(result, name))[..., idx]
    fields["demon_names"] = tuple(result.demon_names[i] for i in idx)
    if dataclasses.is_dataclass(result):
        return dataclasses.replace(result, **fields)
    raise TypeError(f"result must be a horde.RunResult, got {type(result).__name__}")


def _effective_smoothing(result: Any, metric: str, smoothing: int) -> int:
    """The window in steps actually used: a whole number of records for logged metrics."""
    if metric in ("normalized_rmse", "rmse"):
        return smoothing
    every = max(int(result.record_every), 1)
    return max(1, int(round(smoothing / every))) * every


def _series(result: Any, metric: str, idx: Sequence[int], smoothing: int, seed_mean: bool):
    """``(steps (m,), values (S or 1, m, n_sel))``: smoothed, thinned to at most _MAX_POINTS."""
    steps = np.asarray(result.steps)
    if metric in ("normalized_rmse", "rmse"):
        if result.record_every != 1:
            raise ValueError(
                f"metric={metric!r} compares predictions with ideal returns and needs every step "
                f"recorded (record_every=1); this run has record_every={result.record_every}: "
                "use metric='td_error', or run again with record_every=1"
            )
        curve = _evaluation.error_curve(_subset(result, idx), window=smoothing, z=_z(result, idx))
        values = curve.normalized_rmse if metric == "normalized_rmse" else curve.rmse
        x = np.asarray(curve.steps)
        if seed_mean:
            values = _nanmean(values, 0)[None]
        keep = _thin(x.shape[0])
        return x[keep], values[:, keep]
    if metric == "td_error":
        raw = np.asarray(result.td_errors)[..., list(idx)].astype(np.float64) ** 2
    else:  # rupee / ude
        raw = np.asarray(getattr(result, metric))[..., list(idx)].astype(np.float64)
    if seed_mean:
        raw = _nanmean(raw, 0)[None]
    window = max(1, int(round(smoothing / max(int(result.record_every), 1))))
    smooth = moving_average(raw, window, axis=1)
    keep = _thin(steps.shape[0])
    return steps[keep], smooth[:, keep]


# ---------------------------------------------------------------------------------------------
# Figures


def _new_figure(nrows: int = 1, ncols: int = 1, figsize=None, sharex: bool = False):
    fig = Figure(figsize=figsize or (7.5, 4.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, sharex=sharex, squeeze=False)
    fig.set_layout_engine("tight")
    return fig, axes


def _save(fig: Figure, path: str | os.PathLike | None) -> None:
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


def _draw(ax, x, values, labels, groups, *, band: str, max_lines: int, logy):
    """Draws one metric on ``ax``.

    ``values``: ``(S, m, n)``. ``band="iqr"``: seeds are averaged first; a line per demon, or a
    median line and interquartile band per group. ``band="se"``: mean over seeds with a
    standard-error band, per demon, or per group of the per-seed median over its demons.
    Returns a description of what was drawn.
    """
    drawn: list[np.ndarray] = []
    if groups is None:
        series = [(labels[p], [p]) for p in range(len(labels))]
    else:
        series = groups
    colors = _colors(len(series))
    for (label, members), color in zip(series, colors):
        v = values[:, :, members]  # (S, m, g)
        if band == "iqr":
            per_demon = _nanmean(v, 0)  # (m, g)
            if groups is None:
                y, lo, hi = per_demon[:, 0], None, None
            else:
                y, lo, hi = _nanpercentiles(per_demon, (50, 25, 75), axis=1)
        else:
            per_seed = v[:, :, 0] if groups is None else _nanpercentiles(v, (50,), axis=2)[0]
            y, se = _mean_and_se(per_seed, 0)
            lo, hi = (y - se, y + se) if values.shape[0] > 1 else (None, None)
        ax.plot(x, y, color=color, lw=1.4, label=label)
        drawn.append(y)
        if lo is not None:
            ax.fill_between(x, lo, hi, color=color, alpha=0.22, lw=0)
            drawn += [lo, hi]
    use_log = _wants_log(drawn) if logy is None else bool(logy)
    if use_log:
        ax.set_yscale("log")
    ax.set_xlabel("steps")
    ax.grid(True, alpha=0.3, which="major")
    if len(series) <= max_lines:
        outside = len(series) > 6
        ax.legend(
            fontsize="small",
            loc="upper left" if outside else "best",
            bbox_to_anchor=(1.01, 1.0) if outside else None,
            frameon=False if outside else True,
            title=None,
        )
    return len(series)


def _curve_title(metric: str, result: Any, smoothing: int, groups, band: str, n_shown: int, max_lines: int) -> str:
    title = _TITLES[metric]
    if metric in ("normalized_rmse", "rmse"):
        title += f" (windows of {smoothing} steps"
    else:
        window = _effective_smoothing(result, metric, smoothing)
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


def _target_axes(ax, figsize=None):
    if ax is None:
        fig, axes = _new_figure(figsize=figsize)
        return fig, axes[0, 0]
    return ax.figure, ax


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
            steps (``horde.evaluation.error_curve``; needs ``record_every=1``).
        demons: names or head indices; default: all.
        smoothing: window in steps; default about 1% of the run (at least 1).
        group_by: ``None``: one line per demon while there are at most ``max_lines``, grouped
            automatically beyond that; ``"timescale"`` (the number after ``@`` in the name),
            ``"cumulant"`` (the part before ``@``) or ``"all"``: per group, the median over its
            demons with an interquartile band.
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
    _check_result(result)
    metric = _choice(metric, "metric", METRICS)
    if group_by is not None:
        _choice(group_by, "group_by", GROUP_BY)
    max_lines = _check_max_lines(max_lines)
    idx = _select(result, demons)
    smoothing = _check_smoothing(result, smoothing)
    groups = _auto_groups(result, idx, group_by, max_lines)
    x, values = _series(result, metric, idx, smoothing, seed_mean=(band == "iqr"))
    fig, target = _target_axes(ax)
    labels = [result.demon_names[i] for i in idx]
    n_shown = _draw(target, x, values, labels, groups, band=band, max_lines=max_lines, logy=logy)
    target.set_ylabel(_YLABELS[metric])
    target.set_title(_curve_title(metric, result, smoothing, groups, band, n_shown, max_lines), fontsize="medium")
    _save(fig, path)
    return fig


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
    _check_result(result)
    which = _choice(which, "which", DIAGNOSTICS)
    if getattr(result, "rupee", None) is None or getattr(result, "ude", None) is None:
        raise ValueError(
            "this run has no RUPEE/UDE diagnostics (result.rupee is None): build the learner "
            "with horde.HordeLearner(..., diagnostics=True) and run again"
        )
    if group_by is not None:
        _choice(group_by, "group_by", GROUP_BY)
    max_lines = _check_max_lines(max_lines)
    idx = _select(result, demons)
    smoothing = _check_smoothing(result, smoothing)
    groups = _auto_groups(result, idx, group_by, max_lines)
    metrics = ("rupee", "ude") if which == "both" else (which,)
    fig, axes = _new_figure(len(metrics), 1, figsize=(7.5, 3.6 * len(metrics) + 0.6), sharex=True)
    labels = [result.demon_names[i] for i in idx]
    for m, target in zip(metrics, axes[:, 0]):
        x, values = _series(result, m, idx, smoothing, seed_mean=True)
        n_shown = _draw(target, x, values, labels, groups, band="iqr", max_lines=max_lines, logy=logy)
        target.set_ylabel(_YLABELS[m])
        target.set_title(_curve_title(m, result, smoothing, groups, "iqr", n_shown, max_lines), fontsize="medium")
        if target is not axes[-1, 0]:
            target.set_xlabel("")
    _save(fig, path)
    return fig


def prediction_vs_return(
    result: Any,
    *,
    demons: Any,
    start: int | None = None,
    length: int | None = None,
    seed: int = 0,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Predictions against ideal returns over a time window: the classic nexting figure.

    One panel per demon: its prediction ``v(S_t)`` and its ideal return ``G_t`` (computed
    backwards from what was observed, ``horde.evaluation.ideal_returns``; returns that are not
    yet complete near a cut or the end of the log are not drawn). Thin grey lines mark episode
    ends.

    Args:
        demons: names or head indices (at most 24).
        start: first step of the window; default: ``length`` steps before the end.
        length: window length in steps; default 1000 (or the whole run if shorter).
        seed: which seed (copy of a vector environment) to show.
        path: also save the figure here (``.png``, ``.svg`` or ``.pdf``).

    Needs a run recorded with ``record_every=1``.
    """
    _check_result(result)
    idx = _select(result, demons, required=True)
    if len(idx) > _MAX_SUBPLOTS:
        raise ValueError(
            f"prediction_vs_return draws one panel per demon; choose at most {_MAX_SUBPLOTS}, got {len(idx)}"
        )
    if result.record_every != 1:
        raise ValueError(
            "prediction_vs_return compares predictions with ideal returns and needs every step "
            f"recorded (record_every=1); this run has record_every={result.record_every}"
        )
    n_seeds = np.asarray(result.predictions).shape[0]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < n_seeds:
        raise ValueError(f"seed must be an integer in [0, {n_seeds}), got {seed!r}")
    steps = np.asarray(result.steps)
    T = steps.shape[0]
    if length is None:
        length = min(1000, T)
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"length must be a positive integer (steps), got {length!r}")
    if start is None:
        i0 = max(0, T - int(length))
    else:
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
            raise ValueError(f"start must be an integer step, got {start!r}")
        if not steps[0] <= start <= steps[-1]:
            raise ValueError(f"start must be a recorded step in [{steps[0]}, {steps[-1]}], got {start}")
        i0 = int(np.searchsorted(steps, start))
    i1 = min(T, i0 + int(length))
    s = int(seed)
    # Returns depend on the future only: compute from the window's start to the end of the log.
    ideal = _evaluation.ideal_returns(
        np.asarray(result.cumulants)[s, i0:][:, idx],
        np.asarray(result.discounts)[s, i0:][:, idx],
        np.asarray(result.terminated)[s, i0:],
        np.asarray(result.truncated)[s, i0:],
        z=_z(result, idx),
        valid=np.asarray(result.valid)[s, i0:],
    )
    n = i1 - i0
    returns = np.where(ideal.complete[:n], ideal.returns[:n], np.nan)
    preds = np.asarray(result.predictions)[s, i0:i1][:, idx].astype(np.float64)
    x = steps[i0:i1]
    ends = x[(np.asarray(result.terminated)[s, i0:i1] | np.asarray(result.truncated)[s, i0:i1])]

    fig, axes = _new_figure(len(idx), 1, figsize=(8.0, 1.2 + 2.1 * len(idx)), sharex=True)
    for p, (target, i) in enumerate(zip(axes[:, 0], idx)):
        target.plot(x, preds[:, p], color="C0", lw=1.2, label="prediction")
        target.plot(x, returns[:, p], color="C1", lw=1.2, ls="--", label="ideal return")
        if ends.size:
            target.vlines(
                ends,
                0,
                1,
                transform=target.get_xaxis_transform(),
                colors="0.5",
                lw=0.6,
                alpha=0.6,
                label="episode end",
            )
        target.set_title(result.demon_names[i], fontsize="medium", loc="left")
        target.set_ylabel("return")
        target.grid(True, alpha=0.3)
        if p == 0:
            target.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    axes[-1, 0].set_xlabel("steps")
    seeds = f"seed {s}, " if n_seeds > 1 else ""
    fig.suptitle(
        f"Predictions and ideal returns ({seeds}steps {x[0]}–{x[-1]})" if n else "Predictions and ideal returns",
        fontsize="medium",
    )
    _save(fig, path)
    return fig
