"""Nexting on CartPole-v1: predict every sensor at several timescales, plus the reward.

"Nexting" (Modayil, White & Sutton 2014) is predicting what the sensors will read next, over a
range of timescales. This script asks, for each of CartPole's four observations, "what is the
discounted sum of this sensor over roughly the next T steps?" for T in 1, 2, 5, 10, 20 and 50
(``demons.nexting``: cumulant ``S_{t+1}[i]``, ``γ = 1 - 1/T``), and, with ``demons.reward_demons``,
the discounted sum of the reward over 5, 20 and 50 steps (in CartPole every step pays 1 and
``z = 0``, so these predict how soon the pole falls). That is 27 demons on one shared
128-128 trunk, learned at once from a uniformly random behaviour policy with ``horde.run``.

It prints the per-demon summary of ``horde.evaluation.demon_summary`` over the last 10% of the
run: the RMSE of the predictions against the ideal returns ``G_t`` computed backwards from what
was observed, and the normalised RMSE (RMSE divided by the standard deviation of ``G``; a demon
that always predicted the mean return would score 1). The random policy makes long-horizon
sensor sums partly unpredictable, so the normalised RMSE grows with the timescale.

Figures (in ``--out``):

* ``cartpole_learning_curves.png``: normalised RMSE against the ideal returns (how good the
  predictions are) and squared TD error over time, demons grouped by timescale (median and
  interquartile range over the demons of each timescale);
* ``cartpole_prediction_vs_return.png``: predictions against the ideal returns over the last
  300 steps for four demons.

Run: python examples/cartpole_nexting.py [--steps 50000] [--seed 0] [--out runs/examples]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _figures import save_png

import demons
import horde
from horde import plots
from horde.evaluation import demon_summary

SENSORS = ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"]
TIMESCALES = (1, 2, 5, 10, 20, 50)
REWARD_TIMESCALES = (5, 20, 50)
SHOWN = ["cart_position@1", "pole_angle@10", "pole_angular_velocity@5", "reward@20"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50_000, help="environment steps (default 50000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the environment, policy and weights (default 0)")
    parser.add_argument("--out", default="runs/examples", help="directory for the figures (default runs/examples)")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2")

    demon_set = demons.DemonSet(
        demons.nexting(4, timescales=TIMESCALES, names=SENSORS) + demons.reward_demons(REWARD_TIMESCALES)
    )
    learner = horde.HordeLearner(
        demon_set, hidden_sizes=(128, 128), step_size=0.001, normalizer=horde.WelfordNormalizer()
    )
    result = horde.run(learner, "CartPole-v1", steps=args.steps, seed=args.seed, progress=False)
    print(
        f"{learner.n_demons} demons, {result.total_steps} steps, {len(result.episode_return)} episodes, "
        f"{result.wall_time:.1f} s ({result.steps_per_second:,.0f} steps/s, compilation included)"
    )

    summary = demon_summary(result)
    width = max(len(name) for name in result.demon_names)
    print("\nPer-demon summary over the last 10% of the run:")
    print(f"{'demon':<{width}}  {'norm. RMSE':>10}  {'RMSE':>8}")
    for i, name in enumerate(result.demon_names):
        nrmse, rmse = summary["normalized_rmse"][i], summary["rmse"][i]
        print(f"{name:<{width}}  {nrmse:>10.3f}  {rmse:>8.4f}")
    by_ts = {}
    for i, name in enumerate(result.demon_names):
        by_ts.setdefault(int(name.rpartition("@")[2]), []).append(summary["normalized_rmse"][i])
    print(
        "median normalised RMSE by timescale: "
        + ", ".join(f"{t}: {np.nanmedian(v):.2f}" for t, v in sorted(by_ts.items()))
    )

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(13, 4.6))
    FigureCanvasAgg(fig)
    # How good the predictions are comes first; the TD error (noise of each question included,
    # so it need not fall) second.
    ax_rmse, ax_td = fig.subplots(1, 2)
    smoothing = max(1, args.steps // 50)
    plots.learning_curves(result, metric="normalized_rmse", group_by="timescale", smoothing=smoothing, ax=ax_rmse)
    plots.learning_curves(result, metric="td_error", group_by="timescale", smoothing=smoothing, ax=ax_td)
    fig.set_layout_engine("tight")
    path = out / "cartpole_learning_curves.png"
    save_png(fig, path)
    print(f"\nwrote {path}")

    fig = plots.prediction_vs_return(result, demons=SHOWN, length=min(300, args.steps))
    path = out / "cartpole_prediction_vs_return.png"
    save_png(fig, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
