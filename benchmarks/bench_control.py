#!/usr/bin/env python3
"""A control demon balancing CartPole in ``run_jax``: returns over seeds and throughput.

Usage::

    python benchmarks/bench_control.py                          # CartPole: returns and speed
    python benchmarks/bench_control.py --only returns --steps 100000 --seeds 5
    python benchmarks/bench_control.py --only speed --speed-seeds 8 --speed-steps 50000
    python benchmarks/bench_control.py --only acrobot --steps 100000 --seeds 5
    python benchmarks/bench_control.py --only minatar --minatar-steps 1000000 --minatar-seeds 3 \
        --figure docs/figures/minatar_breakout_returns.png

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
* ``acrobot``: the same demon and behaviour on gymnax's ``Acrobot-v1`` (reward −1 per step until
  the tip swings above the bar, 500-step limit), ``--seeds`` seeds vmapped, ``--steps`` each;
  per seed the mean of the last 20 episodes (target: ≥ −100 on 4 of 5 seeds). ``--acrobot-anneal``
  changes the behaviour's ε annealing (default: the library's, 5 % of the steps).
* ``minatar``: the same demon and behaviour on a MinAtar game through gymnax
  (``--minatar-env``, default ``Breakout-MinAtar``: a 10×10×4 boolean grid, flattened to 400
  features in {0, 1}, then normalised like any observation), ``--minatar-seeds`` seeds vmapped,
  ``--minatar-steps`` each, in one timed call (compilation included); per seed the mean of the
  first and of the last 20 episodes, and the learning curve (``horde.plots.plot_returns``) saved
  to ``--figure``.

``--cpu-devices N`` splits the CPU into ``N`` JAX devices (``XLA_FLAGS=
--xla_force_host_platform_device_count=N``, set before JAX starts): ``run_jax`` then spreads the
seeds over them, one device per core (on a 2-core machine, ``--cpu-devices 2`` lets the second
core work too). Without it JAX's one CPU device runs a batched step largely on one core.

``--no-head-features`` runs every part with ``head_features=None`` (the trunk-only network of
stream-x, the default before the control networks' head features), to compare.
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


LEARNER_SETTINGS: dict = {}  # --no-head-features: {"head_features": None} for every run


def learner(**kwargs):
    """One greedy demon on the reward (γ 0.99, λ 0.8) in a ``ControlLearner`` with ``kwargs``
    (and ``LEARNER_SETTINGS``)."""
    import demons
    import horde
    from demons import cumulants, discounts, policies

    demon = demons.Demon(
        "balance", cumulants.reward(), discounts.constant(0.99), lamda=0.8, target_policy=policies.greedy()
    )
    return horde.ControlLearner([demon], **{**LEARNER_SETTINGS, **kwargs})


def per_seed(result, seeds: int, seed: int) -> list[dict]:
    """Per seed: episodes, mean return of the first and of the last 20 episodes, any NaN."""
    import numpy as np

    rows = []
    for i in range(seeds):
        mine = result.episode_return[result.episode_seed == i]
        rows.append(
            {
                "seed": seed + i,
                "episodes": int(mine.size),
                "first20": float(np.mean(mine[:20])) if mine.size else float("nan"),
                "last20": float(np.mean(mine[-20:])) if mine.size else float("nan"),
                "nan": bool(np.isnan(result.predictions[i]).any() or np.isnan(result.td_errors[i]).any()),
            }
        )
    return rows


def print_rows(rows: list[dict], first: bool = False) -> None:
    head = (
        "| seed | episodes |" + (" first-20-episode mean |" if first else "") + " last-20-episode mean return | NaN |"
    )
    print(head)
    print("|---:|---:|" + ("---:|" if first else "") + "---:|---|")
    for r in rows:
        cells = [str(r["seed"]), str(r["episodes"])] + ([f"{r['first20']:.1f}"] if first else [])
        cells += [f"{r['last20']:.1f}", "yes" if r["nan"] else "no"]
        print("| " + " | ".join(cells) + " |")


def acrobot(steps: int, seeds: int, seed: int, anneal: int | None) -> list[dict]:
    import horde

    r = horde.run_jax(
        learner(),
        "gymnax:Acrobot-v1",
        steps=steps,
        seed=seed,
        n_seeds=seeds,
        policy=horde.EpsilonGreedy("balance", anneal_steps=anneal),
        record_every=1000,
        chunk_size=min(steps, 10_000),
    )
    return per_seed(r, seeds, seed)


def minatar(env_id: str, steps: int, seeds: int, seed: int, figure: str | None) -> dict:
    import numpy as np

    import horde
    from horde.runs import as_jax_env

    jenv = as_jax_env("gymnax:" + env_id, seed)
    features = horde.FeatureMap(jenv.observation_space)
    t = time.perf_counter()
    r = horde.run_jax(
        learner(),
        "gymnax:" + env_id,
        steps=steps,
        seed=seed,
        n_seeds=seeds,
        policy=horde.EpsilonGreedy("balance"),
        record_every=1000,
        chunk_size=min(steps, 50_000),
    )
    wall = time.perf_counter() - t
    if figure:
        import matplotlib.pyplot as plt

        from horde.plots import plot_returns

        fig = plot_returns(r, path=figure)
        plt.close(fig)
    return {
        "observation_space": repr(jenv.observation_space),
        "features": features.dim,
        "wall_s": wall,
        "steps_per_s": steps * seeds / wall,
        "rows": per_seed(r, seeds, seed),
        "mean_return": float(np.mean(r.episode_return)),
    }


def returns(steps: int, seeds: int, seed: int) -> list[dict]:
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
    return per_seed(r, seeds, seed)


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
    p.add_argument("--only", choices=("returns", "speed", "acrobot", "minatar"))
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed-steps", type=int, default=50_000)
    p.add_argument("--speed-seeds", type=int, default=8)
    p.add_argument("--acrobot-anneal", type=int, help="ε annealing steps on Acrobot (default: 5 %% of --steps)")
    p.add_argument("--minatar-env", default="Breakout-MinAtar")
    p.add_argument("--minatar-steps", type=int, default=1_000_000)
    p.add_argument("--minatar-seeds", type=int, default=3)
    p.add_argument("--figure", help="save the MinAtar learning curve here (.png)")
    p.add_argument("--json")
    p.add_argument(
        "--cpu-devices",
        type=int,
        choices=range(1, (os.cpu_count() or 1) + 1),
        metavar="N",
        help="split the CPU into N JAX devices (at most the core count); run_jax spreads the seeds over them",
    )
    p.add_argument(
        "--no-head-features",
        action="store_true",
        help="the trunk-only network (head_features=None), the default before head features",
    )
    a = p.parse_args()
    if a.cpu_devices is not None:
        if "jax" in sys.modules:
            p.error("--cpu-devices must take effect before JAX starts")
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={a.cpu_devices}"
        ).strip()
    if a.no_head_features:
        LEARNER_SETTINGS["head_features"] = None
    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print("machine:", json.dumps(machine_info()))
    print("load average at start:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    out: dict = {}
    if a.only in (None, "returns"):
        rows = returns(a.steps, a.seeds, a.seed)
        out["returns"] = rows
        print(f"\nCartPole-v1 dynamics, 500-step limit, {a.steps:,} steps per seed, defaults of a greedy demon")
        print_rows(rows)
        hits = sum(r["last20"] >= 450 for r in rows)
        print(f"seeds with last-20 mean >= 450: {hits} of {len(rows)}")
        print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if a.only in (None, "speed"):
        s = speed(a.speed_steps, a.speed_seeds)
        out["speed"] = s
        import jax

        print(
            f"\nthroughput, (32, 32) network, {a.speed_seeds} seeds vmapped, {a.speed_steps:,} steps each, "
            f"{jax.device_count()} JAX device(s) ({jax.devices()[0].platform})"
        )
        print("| | steps/s (all seeds) |")
        print("|---|---:|")
        for k, v in s.items():
            print(f"| {k} | {v:,.0f} |")
        print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if a.only == "acrobot":
        rows = acrobot(a.steps, a.seeds, a.seed, a.acrobot_anneal)
        out["acrobot"] = rows
        anneal = a.acrobot_anneal if a.acrobot_anneal is not None else "5 % of the steps"
        print(f"\ngymnax Acrobot-v1, 500-step limit, {a.steps:,} steps per seed, ε annealed over {anneal}")
        print_rows(rows)
        hits = sum(r["last20"] >= -100 for r in rows)
        print(f"seeds with last-20 mean >= -100: {hits} of {len(rows)}")
        print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if a.only == "minatar":
        m = minatar(a.minatar_env, a.minatar_steps, a.minatar_seeds, a.seed, a.figure)
        out["minatar"] = m
        print(f"\ngymnax {a.minatar_env}: observation {m['observation_space']} -> {m['features']} features")
        print(
            f"{a.minatar_seeds} seeds x {a.minatar_steps:,} steps in one vmapped call: {m['wall_s']:.0f} s "
            f"with compilation ({m['steps_per_s']:,.0f} steps/s over all seeds)"
        )
        print_rows(m["rows"], first=True)
        if a.figure:
            print("learning curve:", a.figure)
        print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
