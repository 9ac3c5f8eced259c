"""A thousand demons on one stream: CartPole-v1 predictions at many timescales, learned at once.

One ``HordeLearner`` (a shared 128-128 trunk, one linear head per demon) learns 1,000 general
value functions from a single stream of CartPole experience under a uniformly random behaviour
policy:

* 40 nexting demons: each of the 4 sensors at 10 timescales T from 1 to 100 steps
  (``γ = 1 - 1/T``);
* 720 threshold demons: "how often, over the next T steps, will sensor i be above (below)
  θ?", 9 thresholds per sensor, both directions, 10 timescales (``cumulants.threshold``);
* 120 "until" demons: "how many steps (discounted) until |sensor i| passes θ?", with cumulant
  1 and a discount that is ``γ = 1 - 1/T`` until the event and 0 when it happens
  (``discounts.until``), 5 thresholds per sensor and 6 timescales;
* 10 reward demons and 20 action-indicator demons (2 actions), at the 10 timescales;
* 90 off-policy demons: the sensors at 10 timescales and the reward at 5 timescales under two
  target policies that favour left or right (probabilities 0.8/0.2), learned with GTD(λ)
  from the uniform behaviour.

The heads are stacked arrays and the demons are evaluated by kind, so the compiled program does
not grow with the number of demons. The script first runs ``--warmup`` steps (this compiles the
learner; the compiled function is cached on the learner), then the measured run of ``--steps``
steps, and prints the steady-state steps per second (environment, policy and learning
together, with the run's Python loop over the environment), the compile time (the warm-up run's
wall time less what its steps cost at the measured rate), and the same numbers for a 27-demon
learner on the same trunk for comparison. It also prints the
median squared TD error per timescale over the last 10% of the run.

Figure (``thousand_demons.png`` in ``--out``): squared TD error over time, the 1,000 demons
grouped by timescale: for each timescale the median over its demons with the interquartile
range as a band.

Run: python examples/thousand_demons.py [--steps 20000] [--out runs/examples]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _figures import save_png

import demons
import horde
from demons import Demon, cumulants, discounts, policies
from horde import plots

SENSORS = ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"]
SCALES = [0.5, 0.5, 0.05, 0.5]  # a typical size of each sensor's value
TIMESCALES = (1, 2, 3, 5, 8, 13, 20, 30, 50, 100)
UNTIL_TIMESCALES = (3, 5, 13, 30, 50, 100)
OFF_POLICY_REWARD_TIMESCALES = (5, 13, 30, 50, 100)
TARGETS = {"left": (0.8, 0.2), "right": (0.2, 0.8)}


def gamma(t: float) -> float:
    return 1.0 - 1.0 / t


def build_demons() -> demons.DemonSet:
    ds: list[Demon] = list(demons.nexting(4, timescales=TIMESCALES, names=SENSORS))
    for i, (name, scale) in enumerate(zip(SENSORS, SCALES)):
        for k in np.linspace(-2, 2, 9):
            theta = float(round(k * scale, 4))
            for above in (True, False):
                sign = ">" if above else "<"
                for t in TIMESCALES:
                    ds.append(
                        Demon(
                            f"{name}{sign}{theta:g}@{t}",
                            cumulants.threshold(i, theta, above=above),
                            discounts.timescale(t),
                        )
                    )
        for k in (0.5, 1.0, 1.5, 2.0, 3.0):
            theta = float(round(k * scale, 4))
            for t in UNTIL_TIMESCALES:
                ds.append(
                    Demon(
                        f"steps_until_|{name}|>{theta:g}@{t}",
                        cumulants.constant(1.0),
                        discounts.until(i, theta, absolute=True, gamma=gamma(t)),
                    )
                )
    ds += demons.reward_demons(TIMESCALES)
    for action in (0, 1):
        for t in TIMESCALES:
            ds.append(Demon(f"action{action}@{t}", cumulants.action_indicator(action), discounts.timescale(t)))
    for label, probs in TARGETS.items():
        for i, name in enumerate(SENSORS):
            for t in TIMESCALES:
                ds.append(
                    Demon(
                        f"{name}|{label}@{t}",
                        cumulants.observation(i),
                        discounts.timescale(t),
                        target_policy=policies.fixed(probs),
                    )
                )
        for t in OFF_POLICY_REWARD_TIMESCALES:
            ds.append(
                Demon(
                    f"reward|{label}@{t}",
                    cumulants.reward(),
                    discounts.timescale(t),
                    target_policy=policies.fixed(probs),
                )
            )
    return demons.DemonSet(ds)


def timed_run(learner: horde.HordeLearner, steps: int, warmup: int, seed: int, record_every: int):
    """Compiles with a short run, then times the measured run; returns the result and the
    short run's wall time."""
    start = time.perf_counter()
    horde.run(learner, "CartPole-v1", steps=warmup, seed=seed + 1, progress=False, record_every=warmup)
    compile_s = time.perf_counter() - start
    result = horde.run(learner, "CartPole-v1", steps=steps, seed=seed, progress=False, record_every=record_every)
    return result, compile_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="measured environment steps (default 20000)")
    parser.add_argument("--warmup", type=int, default=1024, help="steps of the compile-and-warm-up run (default 1024)")
    parser.add_argument("--record-every", type=int, default=5, help="record per-demon values every N steps (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--out", default="runs/examples", help="directory for the figure (default runs/examples)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1 or args.record_every < 1:
        parser.error("--steps, --warmup and --record-every must be positive")

    demon_set = build_demons()
    kinds = {}
    for d in demon_set:
        kind = d.cumulant.kind + (" (off-policy)" if d.is_off_policy else "")
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"{len(demon_set)} demons: " + ", ".join(f"{n} {k}" for k, n in kinds.items()))

    def make(ds):
        return horde.HordeLearner(ds, hidden_sizes=(128, 128), step_size=0.001, normalizer=horde.WelfordNormalizer())

    small = demons.DemonSet(demons.nexting(4, (1, 2, 5, 10, 20, 50), names=SENSORS) + demons.reward_demons((5, 20, 50)))
    # Pay the process's one-time start-up costs (JAX backend, first use of each operation,
    # Gymnasium imports) with a throwaway learner before timing anything.
    horde.run(make(small), "CartPole-v1", steps=8, progress=False)
    rows = []
    for ds in (small, demon_set):
        result, compile_s = timed_run(make(ds), args.steps, args.warmup, args.seed, args.record_every)
        rows.append((len(ds), compile_s, result))
    print(f"\n{'demons':>7}  {'compile (s)':>11}  {'steps/s':>9}  {'µs/step':>8}")
    for n, warmup_s, result in rows:
        # The warm-up run's time less what its steps cost at the measured rate.
        compile_s = warmup_s - args.warmup / result.steps_per_second
        print(f"{n:>7}  {compile_s:>11.2f}  {result.steps_per_second:>9,.0f}  {1e6 / result.steps_per_second:>8.0f}")
    result = rows[-1][2]

    tail = max(1, result.td_errors.shape[1] // 10)
    with np.errstate(all="ignore"):
        msq = np.nanmean(result.td_errors[0, -tail:] ** 2, axis=0)
    by_ts: dict[str, list[float]] = {}
    for d, v in zip(demon_set, msq):
        t = d.name.rpartition("@")[2]
        by_ts.setdefault(t, []).append(v)
    print("\nmedian squared TD error over the last 10% of the run, by timescale:")
    for t in sorted(by_ts, key=float):
        print(f"  timescale {t:>4}: {np.nanmedian(by_ts[t]):.4g}  ({len(by_ts[t])} demons)")

    fig = plots.learning_curves(result, metric="td_error", group_by="timescale", smoothing=max(1, args.steps // 40))
    fig.set_size_inches(10, 5)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "thousand_demons.png"
    save_png(fig, path)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
