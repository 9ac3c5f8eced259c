#!/usr/bin/env python3
"""A control demon balancing CartPole in ``run_jax``: returns over seeds and throughput.

Usage::

    python benchmarks/bench_control.py                          # both parts, the defaults below
    python benchmarks/bench_control.py --only returns --steps 100000 --seeds 5
    python benchmarks/bench_control.py --only speed --speed-seeds 8 --speed-steps 50000

Set-up: one control demon ``Demon("balance", cumulants.reward(), discounts.constant(0.99),
lamda=0.8, target_policy=policies.greedy())`` in a ``horde.ControlLearner`` with its defaults
(network (32, 32) with LayerNorm, sparse init 0.9, LMS α = 1 with ObGD κ = 2, observation
normalisation, reward scaling, Stream Q(λ)), acting with ``horde.EpsilonGreedy("balance")`` (ε
from 1 to 0.01 over the first 5 % of the steps), all inside ``horde.run_jax``.

The environment is gymnasium's ``CartPoleFunctional`` with CartPole-v1's parameters (the
functional class's default ``polemass_length`` is ``masspole + length = 0.6``; CartPole-v1's is
``masspole * length = 0.05``) and the standard 500-step time limit.

* ``returns``: ``--seeds`` seeds in one vmapped call, ``--steps`` steps each; per seed, the mean
  return of its last 20 finished episodes, its number of episodes, and whether any recorded
  value was NaN.
* ``speed``: ``--speed-seeds`` seeds in one vmapped call, timed on a second call (the first
  compiles); steps/s counts environment steps over all seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_info  # noqa: E402


def cartpole_v1():
    """``CartPoleFunctional`` with CartPole-v1's parameters."""
    from gymnasium.envs.phys2d.cartpole import CartPoleFunctional, CartPoleParams

    class CartPoleV1Params(CartPoleParams):
        polemass_length: float = 0.05  # masspole * length, as CartPole-v1

    class CartPoleV1Functional(CartPoleFunctional):
        def transition(self, state, action, rng=None, params=CartPoleV1Params):
            return super().transition(state, action, rng, params)

    return CartPoleV1Functional()


def learner():
    import demons
    import horde
    from demons import cumulants, discounts, policies

    demon = demons.Demon(
        "balance", cumulants.reward(), discounts.constant(0.99), lamda=0.8, target_policy=policies.greedy()
    )
    return horde.ControlLearner([demon])


def returns(steps: int, seeds: int, seed: int) -> list[dict]:
    import numpy as np

    import horde

    r = horde.run_jax(
        learner(),
        cartpole_v1(),
        steps=steps,
        seed=seed,
        n_seeds=seeds,
        policy=horde.EpsilonGreedy("balance"),
        max_episode_steps=500,
        record_every=100,
    )
    rows = []
    for i in range(seeds):
        mine = r.episode_return[r.episode_seed == i]
        rows.append(
            {
                "seed": seed + i,
                "episodes": int(mine.size),
                "last20": float(np.mean(mine[-20:])) if mine.size else float("nan"),
                "nan": bool(np.isnan(r.predictions[i]).any() or np.isnan(r.td_errors[i]).any()),
            }
        )
    return rows


def speed(steps: int, seeds: int) -> dict:
    import horde

    lrn, env = learner(), cartpole_v1()
    out = {}
    for label in ("compile incl.", "compile excl."):
        t = time.perf_counter()
        horde.run_jax(
            lrn,
            env,
            steps=steps,
            n_seeds=seeds,
            policy=horde.EpsilonGreedy("balance"),
            max_episode_steps=500,
            record_every=1000,
            chunk_size=min(steps, 10_000),
        )
        out[label] = steps * seeds / (time.perf_counter() - t)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=("returns", "speed"))
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed-steps", type=int, default=50_000)
    p.add_argument("--speed-seeds", type=int, default=8)
    p.add_argument("--json")
    a = p.parse_args()
    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print("machine:", json.dumps(machine_info()))
    print("load average at start:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    out: dict = {}
    if a.only in (None, "returns"):
        rows = returns(a.steps, a.seeds, a.seed)
        out["returns"] = rows
        print(f"\nCartPole-v1 dynamics, 500-step limit, {a.steps:,} steps per seed, defaults of a greedy demon")
        print("| seed | episodes | last-20-episode mean return | NaN |")
        print("|---:|---:|---:|---|")
        for r in rows:
            print(f"| {r['seed']} | {r['episodes']} | {r['last20']:.1f} | {'yes' if r['nan'] else 'no'} |")
        hits = sum(r["last20"] >= 450 for r in rows)
        print(f"seeds with last-20 mean >= 450: {hits} of {len(rows)}")
        print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if a.only in (None, "speed"):
        s = speed(a.speed_steps, a.speed_seeds)
        out["speed"] = s
        print(f"\nthroughput, (32, 32) network, {a.speed_seeds} seeds vmapped, {a.speed_steps:,} steps each")
        print("| | steps/s (all seeds) |")
        print("|---|---:|")
        for k, v in s.items():
            print(f"| {k} | {v:,.0f} |")
        print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
