"""The numbers a curve draws: a metric per recorded step and chosen demon, smoothed over a
window in steps and thinned to at most ``MAX_POINTS`` points."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from horde.evaluation import error_curve
from horde.plots.smoothing import moving_average, nanmean, thin

if TYPE_CHECKING:
    from horde.runs import RunResult

__all__ = ["METRICS", "subset", "effective_smoothing", "metric_series"]

#: ``metric=`` choices: squared TD error (from the log), and windowed (normalised) RMSE against
#: the ideal returns (needs ``record_every=1``).
METRICS = ("td_error", "normalized_rmse", "rmse")


def subset(result: RunResult, idx: Sequence[int]) -> RunResult:
    """A shallow copy of ``result`` restricted to the demons at heads ``idx`` (their arrays,
    names and ``DemonInfo``)."""
    if not dataclasses.is_dataclass(result) or isinstance(result, type):
        raise TypeError(f"result must be a horde.RunResult, got {type(result).__name__}")
    idx = list(idx)
    fields: dict[str, Any] = {
        name: np.asarray(getattr(result, name))[..., idx]
        for name in ("predictions", "td_errors", "cumulants", "discounts")
    }
    for name in ("rupee", "ude"):
        if getattr(result, name, None) is not None:
            fields[name] = np.asarray(getattr(result, name))[..., idx]
    fields["demon_names"] = tuple(result.demon_names[i] for i in idx)
    infos = tuple(getattr(result, "demons", ()) or ())
    if infos:
        fields["demons"] = tuple(infos[i] for i in idx)
    return dataclasses.replace(result, **fields)


def effective_smoothing(result: Any, metric: str, smoothing: int) -> int:
    """The window in steps actually used: a whole number of records for logged metrics."""
    if metric in ("normalized_rmse", "rmse"):
        return smoothing
    every = max(int(result.record_every), 1)
    return max(1, int(round(smoothing / every))) * every


def metric_series(
    result: Any, metric: str, idx: Sequence[int], smoothing: int, seed_mean: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One metric of the chosen demons over time.

    Args:
        result: a ``horde.RunResult``.
        metric: one of ``METRICS``, or ``"rupee"`` / ``"ude"``.
        idx: head indices of the chosen demons.
        smoothing: window in steps.
        seed_mean: average over seeds before smoothing.

    Returns:
        ``(steps (m,), values (S or 1, m, len(idx)))``, thinned to at most ``MAX_POINTS``.

    Raises:
        ValueError: an RMSE metric on a run not recorded at every step.
    """
    steps = np.asarray(result.steps)
    if metric in ("normalized_rmse", "rmse"):
        if result.record_every != 1:
            raise ValueError(
                f"metric={metric!r} compares predictions with ideal returns and needs every step "
                f"recorded (record_every=1); this run has record_every={result.record_every}: "
                "use metric='td_error', or run again with record_every=1"
            )
        curve = error_curve(subset(result, idx), window=smoothing)
        values = curve.normalized_rmse if metric == "normalized_rmse" else curve.rmse
        x = np.asarray(curve.steps)
        if seed_mean:
            values = nanmean(values, 0)[None]
        keep = thin(x.shape[0])
        return x[keep], values[:, keep]
    if metric == "td_error":
        raw = np.asarray(result.td_errors)[..., list(idx)].astype(np.float64) ** 2
    else:  # rupee / ude
        raw = np.asarray(getattr(result, metric))[..., list(idx)].astype(np.float64)
    if seed_mean:
        raw = nanmean(raw, 0)[None]
    window = max(1, int(round(smoothing / max(int(result.record_every), 1))))
    smooth = moving_average(raw, window, axis=1)
    keep = thin(steps.shape[0])
    return steps[keep], smooth[:, keep]
