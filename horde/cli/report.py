"""What a finished run shows: a per-demon summary table, its figures, and ``horde plot``.

Reads the ``RunResult`` only: a demon's terminal outcome and whether it is off-policy come
from ``RunResult.demons``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from horde.cli.config import ConfigError

__all__ = [
    "FIGURES_GUIDE",
    "LARGE_RECORDS_BYTES",
    "draw_figures",
    "draw_returns",
    "print_summary",
    "plot_command",
    "record_bytes",
    "warn_if_large",
]

#: ``horde run`` warns before a run whose records will take more than this many bytes.
LARGE_RECORDS_BYTES = 16_000_000

#: Where the figures a run draws are explained.
FIGURES_GUIDE = "the guide 'Read the plots' (docs/guides/plots.md)"

#: Figure file name of each learning-curve metric.
_CURVE_FILES = {"td_error": "learning_curves.png", "normalized_rmse": "normalized_rmse.png", "rmse": "rmse.png"}
_CURVE_WHAT = {
    "td_error": "squared TD error over time (noise of each question included: it need not fall to 0)",
    "normalized_rmse": "normalised RMSE against the ideal returns over time, per timescale group",
    "rmse": "RMSE against the ideal returns over time",
}


def _say(text: str) -> None:
    print(text, flush=True)


def draw_figures(result: Any, out: Path, *, demons: Any = None, metrics: Any = None) -> list[str]:
    """Draws the standard figures of ``result`` into ``out``, saying what each one shows;
    returns the file names written.

    The figures that answer "how good are the predictions" come first: the predictions of a
    few informative demons against their ideal returns (``horde.plots.informative_demons``)
    and the normalised RMSE per group of demons (both need ``record_every=1``); then the
    squared TD error and the RUPEE / UDE diagnostics.

    Args:
        result: a ``horde.RunResult``.
        out: the directory to write into.
        demons: names or head indices to draw (default: all; the prediction figure's own choice).
        metrics: learning-curve metrics to draw (``horde.plots.METRICS``); default
            ``td_error`` and, with ``record_every=1``, ``normalized_rmse``.

    Raises:
        ConfigError: an unknown demon or metric.
        KeyboardInterrupt: after saying which figures were written and how to draw the rest.
    """
    import matplotlib

    matplotlib.use("Agg")
    from horde import plots

    written: list[str] = []
    if result.predictions.shape[1] == 0:
        return written
    every_step = result.record_every == 1
    if metrics is None:
        metrics = ["td_error", "normalized_rmse"] if every_step else ["td_error"]
    try:
        idx = None if demons is None else plots.select_demons(result, demons)
        for m in metrics:
            plots.choice(m, "metric", plots.METRICS)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from e
    try:
        if every_step:
            chosen = plots.informative_demons(result) if idx is None else idx[: plots.MAX_PANELS]
            names = ", ".join(result.demon_names[i] for i in chosen)
            _say(f"drawing prediction_vs_return.png: predictions against ideal returns of {names}")
            plots.prediction_vs_return(result, demons=chosen, path=out / "prediction_vs_return.png")
            written.append("prediction_vs_return.png")
        for m in sorted(metrics, key=lambda m: m == "td_error"):
            _say(f"drawing {_CURVE_FILES[m]}: {_CURVE_WHAT[m]}")
            plots.learning_curves(result, metric=m, demons=idx, path=out / _CURVE_FILES[m])
            written.append(_CURVE_FILES[m])
        if result.rupee is not None:
            _say("drawing diagnostics.png: RUPEE and UDE, online measures of learning progress")
            plots.diagnostics_curves(result, which="both", demons=idx, path=out / "diagnostics.png")
            written.append("diagnostics.png")
    except KeyboardInterrupt:
        print(
            f"\ninterrupted while drawing figures; the results are saved: 'horde plot {out}' draws them",
            file=sys.stderr,
        )
        raise
    except ValueError as e:  # e.g. a metric that needs every step recorded
        raise ConfigError(str(e)) from e
    _say(f"what the figures show: {FIGURES_GUIDE}")
    return written


def print_summary(result: Any) -> None:
    """Prints a per-demon table over the last 10% of the run: normalised RMSE and RMSE against
    the ideal returns (each demon's own terminal outcome), mean squared TD error, RUPEE, and
    where the run recorded true values, the floor and the RMSVE.

    A ``-`` marks a value that cannot be computed (no complete return, an off-policy demon, a
    run not recorded at every step) and a ``†`` a normalised RMSE that is not meaningful
    because the return barely varies (``horde.evaluation.flat_returns``); a footnote under
    the table explains each mark shown.
    """
    from horde.evaluation import FLAT_RETURN_FRACTION, demon_summary, flat_returns, off_policy_mask

    summary = demon_summary(result)
    # An off-policy demon's target is the return under its own policy, not the observed one.
    off = off_policy_mask(result)
    every_step = result.record_every == 1 and result.predictions.shape[1] > 0
    flat = flat_returns(result) & ~off if every_step else np.zeros(result.n_demons, bool)
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
        nrmse = f"{'†':>10}" if flat[i] else fmt(summary["normalized_rmse"][i])
        line = f"{name:<{width}}  {nrmse}  {fmt(summary['rmse'][i])}  {fmt(summary['mean_squared_td_error'][i])}"
        if rupee is not None:
            line += "  " + fmt(rupee[i])
        if truth:
            line += f"  {fmt(summary['floor'][i])}  {fmt(summary['rmsve'][i])}"
        print(line)
    notes = []
    if not every_step:
        notes.append(
            f"- RMSE needs every step recorded; this run has record_every={result.record_every} (run with --record-every 1)"
        )
    else:
        if off.any():
            notes.append(
                "- off-policy demon: the observed return is not its target (RUPEE measures its error; "
                "the learner tracks it with diagnostics = true)"
            )
        if np.any(~off & ~np.isfinite(summary["rmse"])):
            notes.append(
                "- no complete return in the last 10%: episodes end before the demon's horizon, "
                "so its return is never observed in full"
            )
    if flat.any():
        notes.append(
            f"† the return barely varies (std(G) <= {FLAT_RETURN_FRACTION:g} mean |G|): a normalised "
            "RMSE is not meaningful, read the RMSE"
        )
    if truth:
        notes.append(
            "floor: the norm. RMSE the true values E[G|S] themselves score against the ideal returns "
            "(no learner beats it but by luck); RMSVE: RMSE against the true values"
        )
    for note in notes:
        print(note)


def record_bytes(steps: int, seeds: int, record_every: int, n_demons: int, diagnostics: bool) -> int:
    """Bytes a run's records take in memory: per recorded step and seed, float32 predictions,
    TD errors, cumulants and discounts (and RUPEE and UDE with diagnostics) per demon, plus
    the reward, step and episode flags."""
    records = -(-steps // record_every) * seeds
    per_demon = 4 * (6 if diagnostics else 4)
    return records * (n_demons * per_demon + 16)


def warn_if_large(config: dict[str, Any], learner: Any, steps: int) -> int:
    """Warns on stderr, before a run starts, when its records will be large
    (``record_bytes`` above ``LARGE_RECORDS_BYTES``), and says how ``--record-every`` shrinks
    them; returns the estimated bytes."""
    run = config["run"]
    size = record_bytes(steps, run["seeds"], run["record_every"], learner.n_demons, learner.diagnostics)
    if size > LARGE_RECORDS_BYTES:
        every = run["record_every"]
        print(
            f"horde run: note: the records will take about {size / 1e6:,.0f} MB in memory "
            f"({steps:,} steps x {run['seeds']} seed{'s' if run['seeds'] > 1 else ''} / record_every {every} x "
            f"{learner.n_demons} demon{'s' if learner.n_demons != 1 else ''}); --record-every {10 * every} keeps one step in {10 * every}"
            + (", but the RMSE figures and columns need every step recorded" if every == 1 else ""),
            file=sys.stderr,
        )
    return size


def plot_command(args: Any) -> int:
    """``horde plot DIR [--demons ...] [--metric ...]``: redraws the figures of a saved run;
    returns the exit status."""
    from horde.runs import RunResult

    path = Path(args.dir)
    try:
        result = RunResult.load(path)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from e
    metrics = None if getattr(args, "metric", None) is None else [args.metric]
    figures = draw_figures(result, path, demons=getattr(args, "demons", None), metrics=metrics)
    if _acted(path):
        figures += draw_returns(result, path)
    print(f"wrote {' '.join(str(path / f) for f in figures)}")
    return 0


def draw_returns(result: Any, out: Path) -> list[str]:
    """A control run's figure of its episode returns, ``returns.png`` (``horde.plots.plot_returns``),
    where it has finished episodes; returns the file names written."""
    import numpy as np

    from horde import plots

    if not np.asarray(result.episode_return).size:
        return []
    plots.plot_returns(result, path=out / "returns.png")
    return ["returns.png"]


def _acted(path: Path) -> bool:
    """Whether the run saved in ``path`` acted on a control demon (its config says so)."""
    import json

    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    policy = config.get("policy") if isinstance(config, dict) else None
    return isinstance(policy, dict) and policy.get("kind") == "epsilon_greedy"
