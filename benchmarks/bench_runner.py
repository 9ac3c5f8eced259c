#!/usr/bin/env python3
"""End-to-end runner throughput: environment + behaviour policy + 100 demons + learner.

Usage::

    python benchmarks/bench_runner.py                       # all four rows
    python benchmarks/bench_runner.py --python-steps 20000 --jax-steps 200000 --seeds 8
    python benchmarks/bench_runner.py --only jax --json out.json
    python benchmarks/bench_runner.py --profile              # cProfile of the Python-env path

Set-up of every row: demons = ``demons.nexting(4, timescales=1..25)`` (each of CartPole's 4
observation components at 25 timescales: 100 demons, λ = 0), ``HordeLearner`` with trunk
(128, 128), ``LMS(0.01)`` and ``ObGDBounding()``, uniformly random actions, one record per step.

Rows:

* ``horde.run``, CartPole-v1 (the Python environment; transitions collected in Python and
  learned from in compiled chunks of ``--chunk-size``), one seed;
* ``horde.run``, ``gymnasium.make_vec("CartPole-v1", num_envs=S, vectorization_mode="sync")``;
* ``horde.run_jax``, ``phys2d`` ``CartPoleFunctional`` (everything compiled), one seed;
* ``horde.run_jax``, ``S`` seeds in one vmapped call.

Note that the ``phys2d`` CartPole's dynamics are not CartPole-v1's (its ``polemass_length``
is 0.6, not 0.05), so the episodes differ; only the throughput is compared.

Each row runs twice with the same learner and environment: the first call includes compiling
(``compile incl.``), the second reuses the compiled functions (``compile excl.``). ``steps/s``
counts environment steps over all seeds.
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
PY_TARGET = 15_000
JAX_TARGET = 50_000


def make_learner():
    import demons
    import horde

    ds = demons.nexting(4, timescales=TIMESCALES, names=["x", "x_dot", "theta", "theta_dot"])
    return horde.HordeLearner(
        ds, hidden_sizes=HIDDEN_SIZES, optimizer=horde.LMS(STEP_SIZE), bounder=horde.ObGDBounding()
    )


def _twice(fn) -> tuple[float, float, object]:
    """(first wall s, second wall s, second result)."""
    first = fn()
    second = fn()
    return first.wall_time, second.wall_time, second


def bench_python(steps: int, seeds: int, chunk_size: int):
    import gymnasium as gym

    import horde

    learner = make_learner()
    if seeds == 1:
        env = gym.make("CartPole-v1")
        fn = lambda: horde.run(learner, env, steps=steps, seed=0, chunk_size=chunk_size, progress=False)  # noqa: E731
    else:
        env = gym.make_vec("CartPole-v1", num_envs=seeds, vectorization_mode="sync")
        fn = lambda: horde.run(learner, env, steps=steps, seed=0, chunk_size=chunk_size, progress=False)  # noqa: E731
    return _twice(fn)


def bench_jax(steps: int, seeds: int, chunk_size: int):
    from gymnasium.envs.phys2d.cartpole import CartPoleFunctional

    from horde.runs.jax_runner import run_jax

    learner = make_learner()
    env = CartPoleFunctional()
    fn = lambda: run_jax(learner, env, steps=steps, seed=0, n_seeds=seeds, chunk_size=chunk_size, progress=False)  # noqa: E731
    return _twice(fn)


def profile_python(steps: int, chunk_size: int, top: int = 25) -> str:
    """cProfile of ``horde.run`` on CartPole-v1 (after a warm-up call that compiles)."""
    import cProfile
    import io
    import pstats

    import gymnasium as gym

    import horde

    learner = make_learner()
    env = gym.make("CartPole-v1")
    horde.run(learner, env, steps=steps, seed=0, chunk_size=chunk_size, progress=False)  # compiles
    prof = cProfile.Profile()
    prof.enable()
    horde.run(learner, env, steps=steps, seed=0, chunk_size=chunk_size, progress=False)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python-steps", type=int, default=20_000, help="steps per seed of the horde.run rows")
    p.add_argument("--jax-steps", type=int, default=200_000, help="steps per seed of the run_jax rows")
    p.add_argument("--seeds", type=int, default=8, help="seeds of the multi-seed rows")
    p.add_argument("--python-chunk-size", type=int, default=1024, help="horde.run chunk_size")
    p.add_argument("--jax-chunk-size", type=int, default=4096, help="run_jax chunk_size")
    p.add_argument("--only", choices=("all", "python", "jax"), default="all")
    p.add_argument("--profile", action="store_true", help="print a cProfile of the Python-env path and exit")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)

    if args.profile:
        print(profile_python(args.python_steps, args.python_chunk_size))
        return 0

    info = machine_info()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    plan = []
    if args.only in ("all", "python"):
        plan += [
            (
                "horde.run",
                "CartPole-v1 (Python)",
                1,
                args.python_steps,
                lambda: bench_python(args.python_steps, 1, args.python_chunk_size),
                PY_TARGET,
            ),
            (
                "horde.run",
                f"make_vec CartPole-v1 sync ×{args.seeds}",
                args.seeds,
                args.python_steps,
                lambda: bench_python(args.python_steps, args.seeds, args.python_chunk_size),
                None,
            ),
        ]
    if args.only in ("all", "jax"):
        plan += [
            (
                "run_jax",
                "phys2d CartPoleFunctional",
                1,
                args.jax_steps,
                lambda: bench_jax(args.jax_steps, 1, args.jax_chunk_size),
                JAX_TARGET,
            ),
            (
                "run_jax",
                f"phys2d CartPoleFunctional, vmap ×{args.seeds}",
                args.seeds,
                args.jax_steps,
                lambda: bench_jax(args.jax_steps, args.seeds, args.jax_chunk_size),
                None,
            ),
        ]
    t_start = time.perf_counter()
    for runner, env_name, seeds, steps, fn, target in plan:
        first, second, result = fn()
        total = steps * seeds
        rows.append(
            {
                "runner": runner,
                "env": env_name,
                "seeds": seeds,
                "steps_per_seed": steps,
                "wall_incl_s": first,
                "wall_excl_s": second,
                "steps_per_s_incl": total / first,
                "steps_per_s_excl": total / second,
                "episodes": int(len(result.episode_return)),
                "target": target,
            }
        )
        print(f"{runner} {env_name}: {total / second:,.0f} steps/s", file=sys.stderr)

    print(
        f"Machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable); "
        f"Python {info['python']}, jax {info['jax']} (jaxlib {info['jaxlib']}), "
        f"backend {info['backend']} ({info['device']})"
    )
    if load_before is not None:
        print(f"Load average (1 min) before the run: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")
    print(
        f"Set-up: 100 demons (nexting(4, timescales=1..25)), trunk {HIDDEN_SIZES}, LMS({STEP_SIZE}) + "
        f"ObGDBounding(), uniform random actions, record_every=1; chunk_size {args.python_chunk_size} "
        f"(horde.run) / {args.jax_chunk_size} (run_jax); total {time.perf_counter() - t_start:.0f} s"
    )
    print()
    print(
        "| runner | environment | seeds | steps/seed | steps/s (compile excl.) | wall s (excl.) | steps/s (compile incl.) | wall s (incl.) | target |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        target = (
            ""
            if r["target"] is None
            else (f"≥ {r['target']:,} {'met' if r['steps_per_s_excl'] >= r['target'] else 'MISSED'}")
        )
        print(
            f"| {r['runner']} | {r['env']} | {r['seeds']} | {r['steps_per_seed']:,} | "
            f"{r['steps_per_s_excl']:,.0f} | {r['wall_excl_s']:.2f} | {r['steps_per_s_incl']:,.0f} | "
            f"{r['wall_incl_s']:.2f} | {target} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": {**info, "loadavg_1min_before": load_before}, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
