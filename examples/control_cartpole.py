"""A control demon balances CartPole-v1 while 113 prediction demons learn from its stream.

The Horde of Sutton et al. (2011): one demon acts, the others predict. The control demon
``balance`` (cumulant: the reward, γ = 0.99, λ = 0.8, target policy greedy on its own action
values) learns with Stream Q(λ) on a (32, 32) network of its own with the stream-x defaults
(Elsayed, Vasan & Mahmood 2024) and the default head features, and the behaviour is ε-greedy on its latest values
(``horde.EpsilonGreedy``, ε from 1 to 0.01 over the first 5 % of the run). ``horde.run`` acts
and learns in one compiled call per environment step.

Around it, in a ``HordeLearner`` on its own (64, 64) trunk, from the same transitions:

* 96 on-policy nexting demons: each of the 4 sensors at 24 timescales from 1 to 200 steps,
  under the behaviour itself (as it improves, "how far will the pole lean over the next T
  steps" changes, and the demons track it);
* 5 reward demons (timescales 2 to 200): how soon the pole falls, under the behaviour;
* 12 off-policy demons: each sensor at timescales 2, 10 and 50 *if the greedy policy of
  ``balance`` acted from now on* (``policies.greedy_in("balance")``: "what would the angle be
  under the greedy policy"), learned with GTD(λ) from exact importance ratios
  π(a|s)/μ(a|s), π the greedy policy on ``balance``'s current action values at S_t and μ the
  ε-greedy probability the behaviour reports.

It prints the control demon's episode returns and the prediction demons' error summary, and
draws ``control_cartpole_returns.png`` (the episode returns against steps) and
``control_cartpole_predictions.png`` (over the last 300 steps, the control demon's value and two
predictions against their ideal returns).

Run: python examples/control_cartpole.py [--full] [--steps N] [--seed 0] [--out runs/examples]
(default 20,000 steps, a few minutes on 2 cores; ``--full``: 100,000 steps, where CartPole is
usually balanced for most of its 500-step episodes.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _figures import save_png

import demons
import horde
from demons import cumulants, discounts, policies
from horde import plots
from horde.evaluation import demon_summary

SENSORS = ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"]
TIMESCALES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 25, 30, 40, 50, 60, 75, 100, 125, 150, 175, 200)
SHOWN = ["balance", "pole_angle@10", "reward@20"]


def prediction_demons() -> list[demons.Demon]:
    on_policy = demons.nexting(4, timescales=TIMESCALES, names=SENSORS) + demons.reward_demons((2, 5, 20, 100, 200))
    greedy = policies.greedy_in("balance")
    off_policy = [
        demons.Demon(
            f"{name}@{t}|greedy",
            cumulants.observation(i),
            discounts.timescale(t),
            lamda=0.0,
            target_policy=greedy,
        )
        for i, name in enumerate(SENSORS)
        for t in (2, 10, 50)
    ]
    return on_policy + off_policy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="environment steps (default 20000; --full: 100000)")
    parser.add_argument("--full", action="store_true", help="the full run: 100,000 steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the environment, behaviour and weights")
    parser.add_argument("--out", default="runs/examples", help="output directory (default runs/examples)")
    args = parser.parse_args(argv)
    steps = args.steps if args.steps is not None else (100_000 if args.full else 20_000)
    if steps < 400:
        parser.error("--steps must be at least 400")

    balance = demons.Demon(
        "balance", cumulants.reward(), discounts.constant(0.99), lamda=0.8, target_policy=policies.greedy()
    )
    around = horde.HordeLearner(
        prediction_demons(),
        hidden_sizes=(64, 64),
        step_size=0.001,
        normalizer=horde.WelfordNormalizer(),
        bounder=horde.ObGDBounding(2.0),
    )
    learner = horde.ControlLearner([balance], horde=around)  # the defaults: stream-x's, and head features
    result = horde.run(
        learner, "CartPole-v1", steps=steps, seed=args.seed, policy=horde.EpsilonGreedy("balance"), progress=False
    )
    returns = result.episode_return
    print(
        f"1 control demon and {around.n_demons} prediction demons, {steps:,} steps, {len(returns)} episodes, "
        f"{result.wall_time:.1f} s ({result.steps_per_second:,.0f} steps/s, compilation included)"
    )
    print(f"episode returns: first 20 mean {returns[:20].mean():.1f}, last 20 mean {returns[-20:].mean():.1f}")

    summary = demon_summary(result)
    names = np.asarray(result.demon_names)
    on = np.asarray([not d.off_policy for d in result.demons])
    print(
        f"on-policy prediction demons: median normalised RMSE over the last 10% "
        f"{np.nanmedian(summary['normalized_rmse'][on][1:]):.3f}; off-policy demons (the greedy policy): "
        f"median mean squared TD error {np.nanmedian(summary['mean_squared_td_error'][~on]):.3g}"
    )
    for name in SHOWN:
        i = int(np.flatnonzero(names == name)[0])
        print(f"  {name:<14} normalised RMSE {summary['normalized_rmse'][i]:.3f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_png(plots.plot_returns(result), out / "control_cartpole_returns.png")
    fig = plots.prediction_vs_return(result, demons=SHOWN, length=300)
    save_png(fig, out / "control_cartpole_predictions.png")
    print(f"wrote {out}/: control_cartpole_returns.png control_cartpole_predictions.png")


if __name__ == "__main__":
    # This process acts step by step: JAX computes in this thread instead of handing each step
    # to its worker thread and back (about twice the steps/s on the CPU; same results). Set
    # before the first JAX computation (docs/concepts/control.md).
    horde.use_synchronous_cpu_dispatch()
    main()
