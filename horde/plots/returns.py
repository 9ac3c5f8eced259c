"""Episode returns against steps, with seed bands: how well a control demon's behaviour does.

Each seed's finished episodes (``RunResult.episode_seed`` / ``episode_end_step`` /
``episode_return``) are smoothed by the mean of the last ``window`` episodes, read on a common
grid of steps (the smoothed return of the latest episode finished by that step), and drawn as
the mean over seeds with a band from the lowest to the highest seed, over faint per-seed lines.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from horde.plots.drawing import save, target_axes

__all__ = ["last_returns", "plot_returns", "returns_on_grid"]


def last_returns(result: Any, last: int = 20) -> np.ndarray:
    """Mean return of each seed's last ``last`` finished episodes, ``(n_seeds,)`` (NaN for a seed
    without a finished episode).

    Raises:
        ValueError: ``last`` is not an integer >= 1.
    """
    if isinstance(last, bool) or not isinstance(last, (int, np.integer)) or last < 1:
        raise ValueError(f"last must be an integer >= 1, got {last!r}")
    out = np.full(result.n_seeds, np.nan)
    for s in range(result.n_seeds):
        r = np.asarray(result.episode_return)[np.asarray(result.episode_seed) == s]
        if r.size:
            out[s] = r[-last:].mean()
    return out


def returns_on_grid(result: Any, window: int = 20, points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Each seed's return, smoothed over its last ``window`` episodes, on a grid of steps.

    Args:
        result: a ``RunResult`` with finished episodes.
        window: episodes in the trailing mean.
        points: grid points over ``[0, total_steps]``.

    Returns:
        ``(steps (points,), returns (n_seeds, points))``; NaN before a seed's first episode ends.
    """
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    start = int(result.config.get("start_step", 0)) if isinstance(result.config, dict) else 0
    grid = np.linspace(start, start + max(result.total_steps, 1), points)
    values = np.full((result.n_seeds, points), np.nan)
    seeds = np.asarray(result.episode_seed)
    for s in range(result.n_seeds):
        mine = seeds == s
        ends = np.asarray(result.episode_end_step)[mine]
        r = np.asarray(result.episode_return, np.float64)[mine]
        if r.size == 0:
            continue
        csum = np.concatenate([[0.0], np.cumsum(r)])
        k = np.arange(1, r.size + 1)
        smooth = (csum[k] - csum[np.maximum(k - window, 0)]) / np.minimum(k, window)
        latest = np.searchsorted(ends, grid, side="right") - 1  # the last episode ended by then
        values[s] = np.where(latest >= 0, smooth[np.maximum(latest, 0)], np.nan)
    return grid, values


def plot_returns(
    result: Any,
    *,
    window: int = 20,
    ax: Any = None,
    label: str | None = None,
    path: str | os.PathLike | None = None,
) -> Any:
    """Episode returns against environment steps: the mean over seeds of each seed's trailing
    mean over ``window`` episodes, with a min-max band over seeds and each seed faintly.

    Args:
        result: a ``RunResult`` (``horde.run`` / ``horde.run_jax`` record episode returns).
        window: episodes in each seed's trailing mean.
        ax: Matplotlib axes to draw on; default a new figure.
        label: the curve's legend label (default ``"mean of N seeds"``).
        path: also save the figure here (``.png``, ``.svg`` or ``.pdf``).

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        ValueError: no episode finished in the run, or a bad ``window``.
    """
    if np.asarray(result.episode_return).size == 0:
        raise ValueError("plot_returns needs finished episodes; the run recorded none")
    grid, values = returns_on_grid(result, window)
    fig, ax = target_axes(ax)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=0)
            low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
    (line,) = ax.plot(grid, mean, lw=2, label=label or f"mean of {result.n_seeds} seed{'s' * (result.n_seeds > 1)}")
    if result.n_seeds > 1:
        ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, lw=0, label="min-max over seeds")
        for v in values:
            ax.plot(grid, v, color=line.get_color(), lw=0.6, alpha=0.35)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"episode return (mean of last {window})")
    ax.set_title("Episode returns")
    ax.legend(loc="best", fontsize="small")
    save(fig, path)
    return fig
