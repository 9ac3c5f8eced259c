#!/usr/bin/env python3
"""What ``HordeLearner``'s default head features cost per step: a scanned step of a nexting
Horde (16 observations) with the defaults, beside the same Horde with ``head_features=None``,
in one run.

Usage::

    python benchmarks/bench_head_features.py                  # 10,000 demons, 200 steps
    python benchmarks/bench_head_features.py --demons 256 --steps 1000

Each head's input grows from the trunk's H outputs to ``H + d + 256`` (the normalised input
and 256 random Fourier features), so the heads' weights, their Autostep state and their
traces grow by that factor; the table shows the step time of each and their ratio (best of
three timed calls of a compiled ``lax.scan`` over ``--steps`` transitions, compilation
excluded), with the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_info  # noqa: E402


def step_time(learner, observations, steps: int) -> tuple[float, int]:
    """Best-of-three µs per scanned step, and the heads' input width."""
    import jax
    import jax.numpy as jnp

    state = learner.init(observations.shape[1], jax.random.key(0))

    def body(st, t):
        return learner.update_from_transition(
            st, observations[t], 0, 0.0, observations[t + 1], behaviour_prob=1.0
        ).state, None

    run = jax.jit(lambda st: jax.lax.scan(body, st, jnp.arange(steps))[0])
    state = jax.block_until_ready(run(state))  # compiled here
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        state = jax.block_until_ready(run(state))
        best = min(best, time.perf_counter() - start)
    return best / steps * 1e6, int(state.core.head_params.weights.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demons", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    import jax.numpy as jnp
    import numpy as np

    import demons
    import horde

    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print("machine:", machine_info())
    demon_set = demons.nexting(16, timescales=tuple(range(1, -(-args.demons // 16) + 1)))[: args.demons]
    observations = jnp.asarray(np.random.default_rng(0).normal(size=(args.steps + 1, 16)), jnp.float32)
    rows = []
    for label, kwargs in (
        ("defaults (256 Fourier head features)", {}),
        ("head_features=None", {"head_features": None}),
    ):
        us, width = step_time(horde.HordeLearner(demon_set, **kwargs), observations, args.steps)
        rows.append((label, width, us, os.getloadavg()[0]))
    print(f"\n{args.demons:,} nexting demons, HordeLearner defaults otherwise, trunk (128, 128)")
    print("| learner | head input width | µs/step | × without | load |")
    print("|---|---:|---:|---:|---:|")
    for label, width, us, load in rows:
        print(f"| {label} | {width} | {us:,.0f} | {us / rows[1][2]:.2f} | {load:.1f} |")


if __name__ == "__main__":
    main()
