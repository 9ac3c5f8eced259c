#!/usr/bin/env python3
"""Compiled-runner throughput on gymnax environments, next to the phys2d CartPole.

Usage::

    python benchmarks/bench_gymnax.py                                   # 8 rows, 50,000 steps/seed
    python benchmarks/bench_gymnax.py --steps 200000 --seeds 8 --minatar SpaceInvaders-MinAtar
    python benchmarks/bench_gymnax.py --json out.json

Set-up of every row (as ``bench_runner.py``'s run_jax rows): 100 demons
(``demons.nexting(4, timescales=1..25)``: the first 4 features at 25 timescales; for a MinAtar
game these are 4 cells of its 10×10 grid), ``HordeLearner`` with trunk (128, 128), ``LMS(0.01)``
and ``ObGDBounding()``, uniformly random actions, one record per step, ``horde.run_jax`` with
``n_seeds`` 1 and ``--seeds`` (one vmapped call). Environments: ``phys2d``
``CartPoleFunctional`` (Gymnasium's functional CartPole, whose dynamics differ from CartPole-v1),
``gymnax:CartPole-v1``, ``gymnax:Acrobot-v1`` and one MinAtar game (``--minatar``, default
``Breakout-MinAtar``). The input width differs (4, 4, 6 and 400 features), so the trunk's first
layer costs more on MinAtar.

Each row runs twice with the same learner and environment: the first call includes compiling
(``compile incl.``), the second reuses the compiled functions (``compile excl.``). ``steps/s``
counts environment steps over all seeds. Needs the ``gymnax`` extra (``pip install
'horde[gymnax]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_info  # noqa: E402

TIMESCALES = tuple(range(1, 26))
HIDDEN_SIZES = (128, 128)
STEP_SIZE = 0.01


def make_learner():
    import demons
    import horde

    ds = demons.nexting(4, timescales=TIMESCALES)
    return horde.HordeLearner(
        ds, hidden_sizes=HIDDEN_SIZES, optimizer=horde.LMS(STEP_SIZE), bounder=horde.ObGDBounding()
    )


def make_env(name: str):
    if name == "phys2d CartPoleFunctional":
        from gymnasium.envs.phys2d.cartpole import CartPoleFunctional

        return CartPoleFunctional()
    import gymnax

    env, _ = gymnax.make(name.removeprefix("gymnax:"))
    return env


def bench(name: str, steps: int, seeds: int, chunk_size: int):
    """(first wall s, second wall s, second result) of two identical run_jax calls."""
    import horde

    learner, env = make_learner(), make_env(name)
    walls = []
    result = None
    for _ in range(2):
        result = horde.run_jax(learner, env, steps=steps, seed=0, n_seeds=seeds, chunk_size=chunk_size, progress=False)
        walls.append(result.wall_time)
    return walls[0], walls[1], result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=50_000, help="steps per seed of every row")
    p.add_argument("--seeds", type=int, default=8, help="seeds of the multi-seed rows")
    p.add_argument("--minatar", default="Breakout-MinAtar", help="the MinAtar game of the last rows")
    p.add_argument("--chunk-size", type=int, default=4096, help="run_jax chunk_size")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)

    info = machine_info()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    names = ["phys2d CartPoleFunctional", "gymnax:CartPole-v1", "gymnax:Acrobot-v1", f"gymnax:{args.minatar}"]
    rows = []
    t_start = time.perf_counter()
    for name in names:
        for seeds in (1, args.seeds):
            first, second, result = bench(name, args.steps, seeds, args.chunk_size)
            total = args.steps * seeds
            rows.append(
                {
                    "env": name,
                    "seeds": seeds,
                    "steps_per_seed": args.steps,
                    "wall_incl_s": first,
                    "wall_excl_s": second,
                    "steps_per_s_incl": total / first,
                    "steps_per_s_excl": total / second,
                    "episodes": int(len(result.episode_return)),
                }
            )
            print(f"{name} ×{seeds}: {total / second:,.0f} steps/s", file=sys.stderr)

    print(f"Command: python benchmarks/bench_gymnax.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    print(
        f"Machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable); "
        f"Python {info['python']}, jax {info['jax']} (jaxlib {info['jaxlib']}), "
        f"backend {info['backend']} ({info['device']})"
    )
    if load_before is not None:
        print(f"Load average (1 min) before the run: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")
    print(
        f"Set-up: 100 demons (nexting(4, timescales=1..25)), trunk {HIDDEN_SIZES}, LMS({STEP_SIZE}) + "
        f"ObGDBounding(), uniform random actions, record_every=1, chunk_size {args.chunk_size}; "
        f"baseline: the phys2d rows; total {time.perf_counter() - t_start:.0f} s"
    )
    print()
    print(
        "| environment | seeds | steps/seed | steps/s (compile excl.) | wall s (excl.) | steps/s (compile incl.) | wall s (incl.) | episodes |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['env']} | {r['seeds']} | {r['steps_per_seed']:,} | {r['steps_per_s_excl']:,.0f} | "
            f"{r['wall_excl_s']:.2f} | {r['steps_per_s_incl']:,.0f} | {r['wall_incl_s']:.2f} | {r['episodes']:,} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": {**info, "loadavg_1min_before": load_before}, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
