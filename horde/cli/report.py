"""What a finished run shows: its figures and a per-demon summary table, and ``horde plot``.

Reads the ``RunResult`` only: a demon's terminal outcome and whether it is off-policy come
from ``RunResult.demons``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from horde.cli.config import ConfigError

__all__ = ["draw_figures", "print_summary", "plot_command"]


def draw_figures(result: Any, out: Path) -> list[str]:
    """Draws the standard figures of ``result`` into ``out``; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    from horde import plots

    written: list[str] = []
    T = result.predictions.shape[1]
    if T == 0:
        return written
    plots.learning_curves(result, path=out / "learning_curves.png")
    written.append("learning_curves.png")
    if result.record_every == 1:
        plots.learning_curves(result, metric="normalized_rmse", path=out / "normalized_rmse.png")
        written.append("normalized_rmse.png")
        chosen = list(result.demon_names[:: max(1, result.n_demons // 4)][:4])
        plots.prediction_vs_return(result, demons=chosen, path=out / "prediction_vs_return.png")
        written.append("prediction_vs_return.png")
    if result.rupee is not None:
        plots.diagnostics_curves(result, which="both", path=out / "diagnostics.png")
        written.append("diagnostics.png")
    return written


def print_summary(result: Any) -> None:
    """Prints a per-demon table over the last 10% of the run: normalised RMSE and RMSE against
    the ideal returns (each demon's own terminal outcome), mean squared TD error, RUPEE, and
    where the run recorded true values, the floor and the RMSVE."""
    from horde.evaluation import demon_summary, off_policy_mask

    summary = demon_summary(result)
    # An off-policy demon's target is the return under its own policy, not the observed one.
    off = off_policy_mask(result)
    summary["rmse"] = np.where(off, np.nan, summary["rmse"])
    summary["normalized_rmse"] = np.where(off, np.nan, summary["normalized_rmse"])
    rupee = None
    if result.rupee is not None and result.rupee.shape[1]:
        tail = max(1, result.rupee.shape[1] // 10)
        with np.errstate(all="ignore"):
            rupee = np.nanmean(result.rupee[:, -tail:], axis=(0, 1))
    truth = result.true_values is not None
    width = max(5, max(len(n) for n in result.demon_names))
    header = f"{'demon':<{width}}  {'norm. RMSE':>10}  {'RMSE':>10}  {'mean δ²':>10}" + (
        "  " + f"{'RUPEE':>10}" if rupee is not None else ""
    )
    if truth:
        header += f"  {'floor':>10}  {'RMSVE':>10}"
    print(f"Per-demon summary over the last 10% of the run ({result.n_seeds} seed{'s' if result.n_seeds > 1 else ''}):")
    print(header)
    print("-" * len(header))

    def fmt(v: float) -> str:
        return f"{v:>10.4g}" if np.isfinite(v) else f"{'-':>10}"

    for i, name in enumerate(result.demon_names):
        line = f"{name:<{width}}  {fmt(summary['normalized_rmse'][i])}  {fmt(summary['rmse'][i])}  {fmt(summary['mean_squared_td_error'][i])}"
        if rupee is not None:
            line += "  " + fmt(rupee[i])
        if truth:
            line += f"  {fmt(summary['floor'][i])}  {fmt(summary['rmsve'][i])}"
        print(line)
    if truth:
        print(
            "floor: the norm. RMSE the true values E[G|S] themselves score against the ideal returns "
            "(no learner beats it but by luck); RMSVE: RMSE against the true values"
        )


def plot_command(args: Any) -> int:
    """``horde plot DIR``: redraws the figures of a saved run; returns the exit status."""
    from horde.runs import RunResult

    path = Path(args.dir)
    try:
        result = RunResult.load(path)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from e
    figures = draw_figures(result, path)
    print(f"wrote {' '.join(str(path / f) for f in figures)}")
    return 0
