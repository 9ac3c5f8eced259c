#!/usr/bin/env python3
"""What least-squares heads (``HordeLearner(demons, heads=LSTDHeads())``, the default up to 256
demon groups) cost per step, beside TD heads on a trunk (``heads="td"``), and under ``vmap``.

Usage::

    python benchmarks/bench_lstd_heads.py                       # 10,000 demons, 500 steps
    python benchmarks/bench_lstd_heads.py --demons 256 --steps 1000

Rows:

* a nexting Horde on 16 observation components (``demons.nexting``, as
  ``bench_head_features.py``: 10,000 demons over 625 timescales, so 625 groups that share an
  ``A``): TD heads on a trunk, and LSTD heads (basis ``[1, x, 256 Fourier features]``, m = 273).
  Their cost is ``O(G m²)`` per step for the ``A`` of ``G`` groups, ``O(n m)`` for ``b`` and
  the predictions, and an LU factorisation per group every ``solve_every`` steps;
* the same with 16 × 5 = 80 demons (5 groups), where ``A`` is small;
* ``vmap`` over 2 seeds of the 80-demon Horde against 2 seeds one after the other (the solve
  sits in a ``lax.while_loop`` that under ``vmap`` still runs once every ``solve_every`` steps).

Best of three timed calls of a compiled ``lax.scan`` over ``--steps`` transitions
(compilation excluded), per step, with the load average at each row.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_info  # noqa: E402


def step_time(learner, observations, steps: int, seeds: int = 1, vmapped: bool = False) -> float:
    """Best-of-three µs per scanned step (all seeds together)."""
    import jax
    import jax.numpy as jnp

    def body(st, t):
        return learner.update_from_transition_traced(
            st, observations[t], 0, jnp.float32(0.0), observations[t + 1], False, False, jnp.float32(1.0)
        ).state, None

    def one(st):
        return jax.lax.scan(body, st, jnp.arange(steps))[0]

    states = [learner.init(observations.shape[1], jax.random.key(s)) for s in range(seeds)]
    if vmapped:
        batched = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *states)
        run_v = jax.jit(jax.vmap(one))

        def call():
            return jax.block_until_ready(run_v(batched))
    else:
        run_1 = jax.jit(one)

        def call():
            return [jax.block_until_ready(run_1(s)) for s in states]

    call()  # compiled here
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demons", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    import jax.numpy as jnp
    import numpy as np

    import demons
    import horde

    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print("machine:", machine_info())
    many = demons.nexting(16, timescales=tuple(range(1, -(-args.demons // 16) + 1)))[: args.demons]
    few = demons.nexting(16, timescales=(1, 2, 4, 8, 16))
    observations = jnp.asarray(np.random.default_rng(0).normal(size=(args.steps + 1, 16)), jnp.float32)
    lstd = horde.LSTDHeads()
    rows = []
    for label, make, seeds, vmapped in (
        (f"{len(many):,} demons: TD heads (heads='td')", lambda: horde.HordeLearner(many, heads="td"), 1, False),
        (f"{len(many):,} demons: LSTD heads", lambda: horde.HordeLearner(many, heads=lstd), 1, False),
        (f"{len(few)} demons: TD heads (heads='td')", lambda: horde.HordeLearner(few, heads="td"), 1, False),
        (f"{len(few)} demons: LSTD heads", lambda: horde.HordeLearner(few, heads=lstd), 1, False),
        (
            f"{len(few)} demons: LSTD heads, 2 seeds one after the other",
            lambda: horde.HordeLearner(few, heads=lstd),
            2,
            False,
        ),
        (
            f"{len(few)} demons: LSTD heads, 2 seeds vmapped",
            lambda: horde.HordeLearner(few, heads=lstd),
            2,
            True,
        ),
    ):
        us = step_time(make(), observations, args.steps, seeds, vmapped)
        rows.append((label, us, os.getloadavg()[0]))
        print(f"| {label} | {us:,.0f} | {os.getloadavg()[0]:.1f} |", flush=True)
    print("\n| learner | µs/step | load |")
    print("|---|---:|---:|")
    for label, us, load in rows:
        print(f"| {label} | {us:,.0f} | {load:.1f} |")


if __name__ == "__main__":
    main()
