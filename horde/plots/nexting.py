"""Predictions against ideal returns over a time window: the classic nexting figure."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from horde.evaluation import ideal_returns, terminal_outcomes
from horde.plots.drawing import new_figure, save
from horde.plots.selection import check_result, select_demons

__all__ = ["prediction_vs_return", "MAX_PANELS"]

#: Most demons ``prediction_vs_return`` draws (one panel each).
MAX_PANELS = 24


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
    backwards from what was observed, ``horde.evaluation.ideal_returns``, with each demon's
    terminal outcome as ``result.demons`` records it; returns that are not yet complete near a
    cut or the end of the log are not drawn). Thin grey lines mark episode ends.

    Args:
        demons: names or head indices (at most 24).
        start: first step of the window; default: ``length`` steps before the end.
        length: window length in steps; default 1000 (or the whole run if shorter).
        seed: which seed (copy of a vector environment) to show.
        path: also save the figure here (``.png``, ``.svg`` or ``.pdf``).

    Needs a run recorded with ``record_every=1``.
    """
    check_result(result)
    idx = select_demons(result, demons, required=True)
    if len(idx) > MAX_PANELS:
        raise ValueError(f"prediction_vs_return draws one panel per demon; choose at most {MAX_PANELS}, got {len(idx)}")
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
    ideal = ideal_returns(
        np.asarray(result.cumulants)[s, i0:][:, idx],
        np.asarray(result.discounts)[s, i0:][:, idx],
        np.asarray(result.terminated)[s, i0:],
        np.asarray(result.truncated)[s, i0:],
        z=terminal_outcomes(result, idx),
        valid=np.asarray(result.valid)[s, i0:],
    )
    n = i1 - i0
    returns = np.where(ideal.complete[:n], ideal.returns[:n], np.nan)
    preds = np.asarray(result.predictions)[s, i0:i1][:, idx].astype(np.float64)
    x = steps[i0:i1]
    ends = x[(np.asarray(result.terminated)[s, i0:i1] | np.asarray(result.truncated)[s, i0:i1])]

    fig, axes = new_figure(len(idx), 1, figsize=(8.0, 1.2 + 2.1 * len(idx)), sharex=True)
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
    save(fig, path)
    return fig
