"""Steps per second of ``horde.run`` acting on a control demon (one compiled call per step) on
the Python CartPole-v1, with the stream-x network (32, 32) and no prediction demons, and with
100 nexting demons around it.

Run: python benchmarks/bench_control_run.py [--steps 5000]
(Compilation is excluded: each configuration is run once for 500 steps first.)
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import demons
import horde
from demons import cumulants, discounts, policies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args()
    balance = demons.Demon(
        "balance", cumulants.reward(), discounts.constant(0.99), lamda=0.8, target_policy=policies.greedy()
    )
    around = horde.HordeLearner(demons.nexting(4, timescales=tuple(range(1, 26))), hidden_sizes=(64, 64))
    print(f"python benchmarks/bench_control_run.py --steps {args.steps}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    print(f"{'configuration':<40} {'steps/s':>10}")
    for label, learner in (
        ("1 control demon (32, 32)", horde.ControlLearner([balance])),
        ("1 control demon + 100 nexting demons", horde.ControlLearner([balance], horde=around)),
    ):
        pol = horde.EpsilonGreedy("balance", anneal_steps=1000)
        horde.run(learner, "CartPole-v1", steps=500, policy=pol, chunk_size=500, progress=False)
        start = time.perf_counter()
        horde.run(learner, "CartPole-v1", steps=args.steps, policy=pol, chunk_size=500, progress=False)
        print(f"{label:<40} {args.steps / (time.perf_counter() - start):>10,.0f}")
    print("baseline (the official stream-x stream_q.py, PyTorch, 1 thread, same network): 1,114 steps/s")


if __name__ == "__main__":
    main()
