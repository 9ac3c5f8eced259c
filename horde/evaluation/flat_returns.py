"""Which demons' returns barely vary, so that a normalised RMSE says nothing about them.

The normalised RMSE divides a demon's RMSE by the standard deviation of its ideal return: it
compares the predictions with always predicting the mean return. When the return is nearly
constant (a reward of -1 at every step, as in Acrobot, seen through a long horizon), that
standard deviation is tiny and the ratio is large whatever the learner does.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from horde.evaluation.returns import IdealReturns, run_ideal_returns

__all__ = ["FLAT_RETURN_FRACTION", "flat_returns"]

#: A demon's return is *flat* when its standard deviation is at most this fraction of its mean
#: magnitude (``std(G) <= 0.05 · mean |G|``).
FLAT_RETURN_FRACTION = 0.05


def flat_returns(result: Any, fraction: float = FLAT_RETURN_FRACTION, ideal: IdealReturns | None = None) -> np.ndarray:
    """Which demons' ideal returns barely vary over the run.

    A demon's return is flat when ``std(G) <= fraction · mean |G|`` over its complete ideal
    returns (each seed's standard deviation and mean magnitude over the whole run, averaged
    over seeds). A return that is identically 0 is flat. Its normalised RMSE (RMSE / std(G))
    is then not a meaningful score: reports mark it and group medians leave it out.

    Args:
        result: a ``horde.RunResult`` recorded with ``record_every=1``.
        fraction: the threshold, a number in ``[0, 1)``.
        ideal: the run's ideal returns when already computed (``run_ideal_returns(result)``).

    Returns:
        bool array ``(n_demons,)``; False for a demon without complete returns.

    Raises:
        ValueError: ``fraction`` is not in ``[0, 1)``, or the run was not recorded at every step.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ValueError(f"fraction must be a number in [0, 1), got {fraction!r}")
    if ideal is None:
        ideal = run_ideal_returns(result)
    returns = np.where(ideal.complete, ideal.returns, np.nan)  # (S, T, n)
    has = ideal.complete.any(axis=1)  # (S, n)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a demon without complete returns
        std = np.nanmean(np.where(has, np.nanstd(returns, axis=1), np.nan), axis=0)
        size = np.nanmean(np.where(has, np.nanmean(np.abs(returns), axis=1), np.nan), axis=0)
    return np.asarray(has.any(axis=0) & (std <= fraction * size), bool)
