#!/usr/bin/env python3
"""What the RUPEE / UDE diagnostics cost: steps/s of the compiled runner with and without them.

Usage::

    python benchmarks/bench_diagnostics.py                      # 27 and 100 demons, 20,000 steps
    python benchmarks/bench_diagnostics.py --demons 27 --steps 50000 --repeats 5

Set-up: ``horde.run_jax`` on ``phys2d/CartPole-v1`` (everything compiled, so the learner's
step dominates), uniformly random actions, demons ``demons.nexting(4, timescales=...)`` (``n``
demons), trunk (128, 128), ``WelfordNormalizer``, one record per step, the same learner built
with ``diagnostics=False`` and ``diagnostics=True``. Each configuration runs once to compile,
then ``--repeats`` times; the table shows the median steps/s of the repeats and the ratio
(time with diagnostics / time without). Baseline: ``diagnostics=False``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_info  # noqa: E402


def _learner(n_demons: int, diagnostics: bool):
    import demons
    import horde

    per_obs = max(1, n_demons // 4)
    ds = demons.nexting(4, timescales=tuple(range(1, per_obs + 1)))
    return horde.HordeLearner(
        ds, hidden_sizes=(128, 128), step_size=0.001, normalizer=horde.WelfordNormalizer(), diagnostics=diagnostics
    )


def _steps_per_second(n_demons: int, diagnostics: bool, steps: int, repeats: int) -> tuple[int, float]:
    import horde

    learner = _learner(n_demons, diagnostics)
    horde.run_jax(learner, "phys2d/CartPole-v1", steps=steps, progress=False)  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        horde.run_jax(learner, "phys2d/CartPole-v1", steps=steps, progress=False)
        times.append(time.perf_counter() - start)
    return learner.n_demons, steps / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demons", type=int, nargs="+", default=[27, 100], help="numbers of demons (default 27 100)")
    parser.add_argument("--steps", type=int, default=20_000, help="steps per run (default 20000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (default 3)")
    args = parser.parse_args(argv)
    info = machine_info()
    print(f"$ python benchmarks/bench_diagnostics.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"machine: {info['cpu']}, {info['usable_cores']} usable cores, jax {info['jax']} on {info['device']}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print("\n| demons | steps/s, diagnostics off (baseline) | steps/s, diagnostics on | time ratio |")
    print("|---:|---:|---:|---:|")
    for n in args.demons:
        n_off, off = _steps_per_second(n, False, args.steps, args.repeats)
        _, on = _steps_per_second(n, True, args.steps, args.repeats)
        print(f"| {n_off} | {off:,.0f} | {on:,.0f} | {off / on:.2f} |", flush=True)
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
