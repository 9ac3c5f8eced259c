"""NaN-aware numerics behind the curves: trailing moving averages, means, percentiles and
standard errors that skip NaN (an inactive demon's record), and thinning long curves."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["moving_average", "nanmean", "nanpercentiles", "mean_and_se", "thin", "wants_log", "MAX_POINTS"]

#: Points per plotted curve; longer curves are thinned after smoothing.
MAX_POINTS = 2000
# A log y axis pays off once the values span more than this many decades.
_LOG_DECADES = 2.0


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


def nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean over ``axis`` of the non-NaN values; NaN (without a warning) where there are none."""
    ok = ~np.isnan(x)
    n = ok.sum(axis=axis)
    s = np.where(ok, x, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def nanpercentiles(x: np.ndarray, qs: Sequence[float], axis: int) -> list[np.ndarray]:
    """``np.nanpercentile`` for each of ``qs`` without the all-NaN warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return [np.nanpercentile(x, q, axis=axis) for q in qs]


def mean_and_se(x: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error (ddof 1) over ``axis``, NaN-aware; SE is NaN with < 2 values."""
    ok = ~np.isnan(x)
    n = ok.sum(axis=axis)
    mean = nanmean(x, axis)
    dev = np.where(ok, x - np.expand_dims(mean, axis), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (dev**2).sum(axis=axis) / (n - 1)
        se = np.where(n > 1, np.sqrt(var / n), np.nan)
    return mean, se


def thin(n: int) -> np.ndarray:
    """Indices of at most ``MAX_POINTS`` evenly spaced points of ``n``, the last included."""
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_POINTS).round().astype(np.int64))


def wants_log(arrays: Iterable[np.ndarray]) -> bool:
    """True when the positive finite values span more than two decades."""
    lo, hi = math.inf, 0.0
    for a in arrays:
        a = np.asarray(a, np.float64)
        a = a[np.isfinite(a) & (a > 0)]
        if a.size:
            lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
    return hi > 0 and math.log10(hi / lo) > _LOG_DECADES
