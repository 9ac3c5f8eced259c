#!/usr/bin/env python3
"""Returns of a greedy demon with the library's defaults, acting through ``horde.run`` on a Python
Gymnasium environment: one seed after the other, each a fresh ``ControlLearner``.

Run: python benchmarks/control_returns_python.py [--env CartPole-v1] [--steps 100000] [--seeds 0 1 2 3 4]

The demon: cumulant the reward, γ = 0.99, λ = 0.8, target policy greedy; behaviour
``horde.EpsilonGreedy`` (ε from 1 to 0.01 over the first 5 % of the steps). Printed per seed:
the mean return of the last 20 episodes, the episodes, whether any prediction was NaN, and the
steps/s of the whole run (compilation and records included). JAX computes in the calling thread
(``horde.use_synchronous_cpu_dispatch()``), as the ``horde`` command does for acting runs.
Targets (issue "Demons that act"): CartPole-v1 ≥ 450 and Acrobot-v1 ≥ −100 on at least 4 of
seeds 0-4 at 100,000 steps, never a NaN. ``bench_control.py`` measures the same in ``run_jax``.
"""

from __future__ import annotations

import argparse
import os
import time

import horde

horde.use_synchronous_cpu_dispatch()  # before any JAX computation

import numpy as np  # noqa: E402

import demons  # noqa: E402
from demons import cumulants, discounts, policies  # noqa: E402

TARGETS = {"CartPole-v1": 450.0, "Acrobot-v1": -100.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    print(f"python benchmarks/control_returns_python.py --env {args.env} --steps {args.steps} --seeds {args.seeds}")
    print(f"load average at start: {os.getloadavg()}")
    print("| seed | episodes | last-20-episode mean return | NaN | steps/s |\n|---:|---:|---:|---|---:|")
    means = []
    for seed in args.seeds:
        balance = demons.Demon(
            "balance", cumulants.reward(), discounts.constant(0.99), lamda=0.8, target_policy=policies.greedy()
        )
        start = time.perf_counter()
        result = horde.run(
            horde.ControlLearner([balance]),
            args.env,
            steps=args.steps,
            seed=seed,
            policy=horde.EpsilonGreedy("balance"),
            progress=False,
        )
        wall = time.perf_counter() - start
        returns = np.asarray(result.episode_return)
        nan = not np.all(np.isfinite(np.asarray(result.predictions)))
        means.append(float(returns[-20:].mean()) if len(returns) else float("nan"))
        print(f"| {seed} | {len(returns)} | {means[-1]:.1f} | {'yes' if nan else 'no'} | {args.steps / wall:,.0f} |")
    if args.env in TARGETS:
        reached = sum(m >= TARGETS[args.env] for m in means)
        print(f"seeds with last-20 mean >= {TARGETS[args.env]:g}: {reached} of {len(means)}")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
