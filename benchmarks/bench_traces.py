#!/usr/bin/env python3
"""The Horde's workload with traces, against the no-trace figures and the machine's limit.

Usage::

    python benchmarks/bench_traces.py                    # every table, sizes 256 and 10000
    python benchmarks/bench_traces.py --heads 256 --json out.json
    python benchmarks/bench_traces.py --only peak nexting daemon seeds

Tables (every figure from this one run, the load average printed next to each):

* ``peak``: the machine's measured limit: a streaming copy (``y = x + 1`` over 256 MiB float32,
  read + write) in GB/s and a large matmul (2048 x 2048 float32) in GFLOP/s.
* ``traces``: ``HordeLearner`` scan, trunk (128, 128), 16 observations, LMS(0.01) + ObGD, random
  transitions; demons ``x_i`` (cumulant: observation i mod 16) at γ = 0.9 with λ = 0 for every
  demon ("no traces"), and with half of them at λ = 0.8 (γλ = 0.72) stored per demon
  (``shared_traces=False``, the per-demon layout) and shared (the default). Each row gives
  µs/step, steps/s, bytes moved and FLOPs per step (counted from the shapes, see below), the
  achieved GB/s and GFLOP/s and their fractions of the measured peaks.
* ``core`` rows of the same table: the multi-head core alone (``MultiHeadMLPLearner`` scan, the
  same trunk, optimizer and bounder, random targets for every head), with no traces and with
  half the heads at ``per_head_gamma_lamda`` 0.72, stored per head (``shared_traces=False``) and
  shared (the default: two traces, γλ = 0 and 0.72): the workload of the core's table (the
  workload the targets were set on), so the HordeLearner's rows can be read against it in the
  same run. The last column gives each traced row as a multiple of the no-trace row of the
  same learner and size (``--only core`` runs the core rows alone).
* ``nexting``: 10,000 nexting demons (16 observations x 5 timescales 1, 2, 5, 10, 20 steps,
  each pair repeated) at λ = 0.9 against λ = 0.
* ``daemon``: single-step ``Daemon.update_from_transition`` at 64 demons, λ = 0.9 against
  λ = 0 (sync dispatch, in a subprocess: the flag must be set before any computation).
* ``seeds``: 32 seeds of the traces workload at 256 demons, one vmapped loop on one device and
  sharded over one simulated CPU device per core (a subprocess with
  ``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``), as a fraction of the memory
  bandwidth.

Counting (per step, per seed). ``n`` demons, ``H`` = 128 head features, ``G`` trace groups:

* bytes: every state array the step rewrites is read once and written once (``2 x`` its bytes:
  head weights and biases, stored traces, the trunk's parameters, the discounts), plus the
  per-step outputs written (predictions and the ``(n, 3)`` metrics, float32). The per-demon
  trace rows of the shared layout are not touched while every demon is active and are not
  counted. This is the compulsory traffic: what no implementation can avoid.
* FLOPs: a multiply-add is 2. Heads: predictions at ``S_t`` and ``S_{t+1}`` (2), the trunk's
  cotangent ``Σ δ_i w_i`` (1), the step ``w += δ α z`` (1) and ObGD's ``‖α z‖₁`` (1): ``10 n H``;
  traces ``z ← γλ z + h``: ``2 n H`` per demon trace, ``2 G H`` shared. Trunk with ``P`` weights:
  two forward passes, one backward (2 x a forward) and the update: ``10 P``. The core predicts
  at ``S_t`` only: ``8 n H`` for the heads and ``8 P`` for the trunk.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_info, usable_cores  # noqa: E402

OBS = 16
HIDDEN = (128, 128)
STEP_SIZE = 0.01
GAMMA = 0.9
TRACE_LAMBDA = 0.8  # γλ = 0.72
TIMESCALES = (1, 2, 5, 10, 20)
TARGET_CALL_S = 0.6
MARKER = "BENCH_ROW "


def load() -> float:
    return os.getloadavg()[0]


def _timed_min(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# --------------------------------------------------------------------------------------------
# The machine's limit


def measure_peak(repeats: int = 5) -> dict:
    import jax
    import jax.numpy as jnp

    n = 64 * 1024 * 1024  # 256 MiB of float32
    # The input is donated, so every call reads and rewrites the same (already mapped) buffer.
    stream = jax.jit(lambda a: a + 1.0, donate_argnums=0)
    x = stream(jnp.ones((n,), jnp.float32))
    x.block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        x = stream(x)
        x.block_until_ready()
        best = min(best, time.perf_counter() - t0)
    gbs = 2 * 4 * n / best / 1e9
    m = 2048
    a = jnp.ones((m, m), jnp.float32)
    mm = jax.jit(lambda p, q: p @ q)
    mm(a, a).block_until_ready()
    t_mm = _timed_min(lambda: mm(a, a).block_until_ready(), repeats)
    return {"stream_gb_s": gbs, "matmul_gflop_s": 2 * m**3 / t_mm / 1e9, "load": load()}


# --------------------------------------------------------------------------------------------
# Workloads


def trace_demons(n: int, lamda_half: float):
    """``n`` demons ``x_i`` at γ = 0.9; the second half with λ = ``lamda_half``, the first λ = 0."""
    import demons

    return [
        demons.Demon(
            f"x{i}",
            demons.cumulants.observation(i % OBS),
            demons.discounts.constant(GAMMA),
            lamda=lamda_half if i >= n // 2 else 0.0,
        )
        for i in range(n)
    ]


def nexting_demons(n: int, lamda: float):
    """``n`` demons over 16 observations x 5 timescales (each (observation, timescale) pair
    repeated until there are ``n``)."""
    import demons

    return [
        demons.Demon(
            f"x{i % OBS}@{TIMESCALES[(i // OBS) % len(TIMESCALES)]}#{i}",
            demons.cumulants.observation(i % OBS),
            demons.discounts.timescale(TIMESCALES[(i // OBS) % len(TIMESCALES)]),
            lamda=lamda,
        )
        for i in range(n)
    ]


def transitions(n_steps: int, seed: int = 0):
    import numpy as np

    import horde

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_steps + 1, OBS)).astype(np.float32)
    return horde.Transitions(
        observations=x[:-1],
        actions=rng.integers(0, 2, n_steps).astype(np.int32),
        rewards=rng.standard_normal(n_steps).astype(np.float32),
        next_observations=x[1:],
        terminated=rng.random(n_steps) < 0.01,
        truncated=np.zeros(n_steps, bool),
        behaviour_probs=np.full(n_steps, 0.5, np.float32),
    )


def learner_for(demon_set, shared: bool):
    import horde

    return horde.HordeLearner(
        demon_set,
        hidden_sizes=HIDDEN,
        optimizer=horde.LMS(STEP_SIZE),
        bounder=horde.ObGDBounding(),
        shared_traces=shared,
    )


def counts(learner, state) -> dict:
    """Bytes moved and FLOPs per step (see the module docstring)."""
    import jax
    import numpy as np

    n, h = learner.n_demons, HIDDEN[-1]
    touched = state.core._replace(step_count=np.zeros(()))
    traces = state.traces
    shared_bytes = 0
    n_groups = 0
    if traces != ():
        shared_bytes = traces.group_weights.nbytes + traces.group_biases.nbytes
        n_groups = int(traces.group_weights.shape[0])
    state_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves((touched, state.discounts, state.secondary_weights)))
    moved = 2 * (state_bytes + shared_bytes) + 4 * n * 4
    trunk_weights = sum(int(np.prod(w.shape)) for w in state.core.trunk_params.weights)
    per_demon_traces = bool(state.core.head_traces)
    trace_rows = n if per_demon_traces else n_groups
    flops = 10 * n * h + 2 * trace_rows * h + 10 * trunk_weights
    return {"bytes": int(moved), "flops": int(flops), "groups": n_groups}


def time_scan(learner, repeats: int) -> dict:
    import jax

    import horde

    state = learner.init(OBS, jax.random.key(0))
    probe = transitions(64, seed=1)
    run = horde.run_horde_learning_loop
    jax.block_until_ready(run(learner, state, probe).state)
    per_step = _timed_min(lambda: jax.block_until_ready(run(learner, state, probe).state), 2) / 64
    n_steps = int(min(20_000, max(128, TARGET_CALL_S / per_step)))
    stream = transitions(n_steps)
    jax.block_until_ready(run(learner, state, stream).state)
    t = _timed_min(lambda: jax.block_until_ready(run(learner, state, stream).state), repeats)
    row = {"us_per_step": t / n_steps * 1e6, "steps": n_steps, "load": load()}
    row.update(counts(learner, state))
    return row


def core_counts(learner, state) -> dict:
    """Bytes moved and FLOPs per step of the core alone (see the module docstring)."""
    import jax
    import numpy as np

    n, h = learner.n_heads, HIDDEN[-1]
    groups = getattr(learner, "trace_groups", None)  # None in a horde from before shared traces
    traces = state.head_traces
    if groups is not None:
        # The per-head rows are not touched while every head is active and none is detached.
        traces = (traces.group_weights, traces.group_biases)
    touched = state._replace(step_count=np.zeros(()), head_traces=traces)
    state_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(touched))
    moved = 2 * state_bytes + 3 * n * 4 + n * 4  # the (n, 3) metrics out, the targets in
    trunk_weights = sum(int(np.prod(w.shape)) for w in state.trunk_params.weights)
    trace_rows = (n if groups is None else groups.n_groups) if state.head_traces else 0
    flops = 8 * n * h + 2 * trace_rows * h + 8 * trunk_weights
    return {"bytes": int(moved), "flops": int(flops), "groups": 0 if groups is None else groups.n_groups}


def time_core_scan(n: int, traces: bool, repeats: int, shared: bool | None = True) -> dict:
    """The multi-head core alone: ``n`` heads, random targets, half of the heads at
    ``per_head_gamma_lamda`` = γλ = 0.72 when ``traces``, stored once per distinct γλ when
    ``shared``. ``shared=None`` builds the learner with the seed API's arguments only (no
    ``shared_traces``), so the same workload runs on a horde from before shared traces."""
    import jax
    import numpy as np

    import horde

    decays = [GAMMA * TRACE_LAMBDA if i >= n // 2 else 0.0 for i in range(n)] if traces else None
    layout = {} if shared is None else {"shared_traces": shared}
    learner = horde.MultiHeadMLPLearner(
        n_heads=n,
        hidden_sizes=HIDDEN,
        optimizer=horde.LMS(STEP_SIZE),
        bounder=horde.ObGDBounding(),
        per_head_gamma_lamda=decays,
        **layout,
    )
    state = learner.init(OBS, jax.random.key(0))
    run = horde.run_multi_head_learning_loop

    def stream(n_steps: int, seed: int):
        rng = np.random.default_rng(seed)
        return (
            rng.standard_normal((n_steps, OBS)).astype(np.float32),
            rng.standard_normal((n_steps, n)).astype(np.float32),
        )

    probe = stream(64, 1)
    jax.block_until_ready(run(learner, state, *probe).state)
    per_step = _timed_min(lambda: jax.block_until_ready(run(learner, state, *probe).state), 2) / 64
    n_steps = int(min(20_000, max(128, TARGET_CALL_S / per_step)))
    data = stream(n_steps, 0)
    jax.block_until_ready(run(learner, state, *data).state)
    t = _timed_min(lambda: jax.block_until_ready(run(learner, state, *data).state), repeats)
    row = {"us_per_step": t / n_steps * 1e6, "steps": n_steps, "load": load()}
    row.update(core_counts(learner, state))
    return row


def bench_core(n: int, repeats: int) -> dict:
    return {
        "core, no traces": time_core_scan(n, False, repeats),
        "core, per-head traces": time_core_scan(n, True, repeats, shared=False),
        "core, shared traces": time_core_scan(n, True, repeats),
    }


def bench_traces(n: int, repeats: int) -> dict:
    rows = bench_core(n, repeats)
    for name, lamda, shared in (
        ("no traces", 0.0, True),
        ("per-demon traces", TRACE_LAMBDA, False),
        ("shared traces", TRACE_LAMBDA, True),
    ):
        rows[f"HordeLearner, {name}"] = time_scan(learner_for(trace_demons(n, lamda), shared), repeats)
    return rows


def bench_nexting(n: int, repeats: int) -> dict:
    return {
        "λ = 0": time_scan(learner_for(nexting_demons(n, 0.0), True), repeats),
        "λ = 0.9, per-demon traces": time_scan(learner_for(nexting_demons(n, 0.9), False), repeats),
        "λ = 0.9, shared traces": time_scan(learner_for(nexting_demons(n, 0.9), True), repeats),
    }


def bench_daemon_child(n: int) -> dict:
    import statistics

    import jax

    jax.config.update("jax_cpu_enable_async_dispatch", False)
    import horde

    out = {}
    tp = transitions(256, seed=2)
    for name, lamda in (("λ = 0", 0.0), ("λ = 0.9", 0.9)):
        learner = learner_for(nexting_demons(n, lamda), True)
        daemon = horde.Daemon(learner, learner.init(OBS, jax.random.key(0)))
        actions = [int(a) for a in tp.actions]

        def call(j):
            daemon.update_from_transition(
                tp.observations[j], actions[j], float(tp.rewards[j]), tp.next_observations[j], behaviour_prob=0.5
            )

        for j in range(400):  # compile and warm up
            call(j % 256)
        blocks = []
        for _b in range(5):
            times = []
            for j in range(600):
                t0 = time.perf_counter()
                call(j % 256)
                times.append(time.perf_counter() - t0)
            blocks.append(statistics.median(times))
        out[name] = {"us": min(blocks) * 1e6, "load": load()}
    return out


def bench_seeds_child(n: int, seeds: int, sharded: bool) -> dict:
    import jax

    import horde

    learner = learner_for(trace_demons(n, TRACE_LAMBDA), True)
    keys = jax.random.split(jax.random.key(0), seeds)
    stream = transitions(400)
    if sharded:
        from horde.runs import run_horde_learning_loop_sharded

        def run():
            return run_horde_learning_loop_sharded(learner, stream, keys)

    else:

        def run():
            return horde.run_horde_learning_loop_batched(learner, stream, keys)

    jax.block_until_ready(run().states)
    t = _timed_min(lambda: jax.block_until_ready(run().states), 3)
    row = {"us_per_step": t / 400 * 1e6, "devices": jax.device_count(), "load": load()}
    c = counts(learner, learner.init(OBS, jax.random.key(0)))
    row.update(bytes=c["bytes"] * seeds, flops=c["flops"] * seeds)
    return row


def _child(args: list[str], env: dict | None = None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    raise RuntimeError(f"benchmark child {args} failed:\n{proc.stderr[-3000:]}")


# --------------------------------------------------------------------------------------------
# Tables


def roofline_cells(row: dict, peak: dict) -> list[str]:
    s = row["us_per_step"] * 1e-6
    gbs, gflops = row["bytes"] / s / 1e9, row["flops"] / s / 1e9
    return [
        f"{row['bytes'] / 1e6:.2f} MB",
        f"{row['flops'] / 1e6:.2f} M",
        f"{gbs:.1f} ({gbs / peak['stream_gb_s']:.0%})",
        f"{gflops:.1f} ({gflops / peak['matmul_gflop_s']:.0%})",
    ]


def table(title: str, header: list[str], lines: list[list[str]]) -> str:
    out = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", type=int, nargs="+", default=[256, 10000])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["peak", "traces", "core", "nexting", "daemon", "seeds"],
        default=["peak", "traces", "nexting", "daemon", "seeds"],
        help="the tables to print (the peak is always measured: the other tables read it)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="DIR",
        help="also time the core rows (no traces, per-head traces) on the horde package in DIR, "
        "e.g. a checkout of an earlier commit, in the same run",
    )
    parser.add_argument("--child", nargs="+", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.heads):
        parser.error(f"--heads must be integers >= 1, got {args.heads}")
    if args.child:
        kind, n = args.child[0], int(args.child[1])
        if kind == "baseline-core":
            row = {
                "core, no traces": time_core_scan(n, False, int(args.child[2]), shared=None),
                "core, per-head traces": time_core_scan(n, True, int(args.child[2]), shared=None),
            }
        elif kind == "daemon":
            row = bench_daemon_child(n)
        else:
            row = bench_seeds_child(n, int(args.child[2]), kind == "sharded")
        print(MARKER + json.dumps(row))
        return 0

    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    info = machine_info()
    print(f"machine: {info['cpu']}, {info['usable_cores']} usable cores, jax {info['jax']} ({info['backend']})")
    print(f"load average (1 min) at start: {load():.2f}\n")
    results: dict = {"machine": info}
    peak = measure_peak()
    results["peak"] = peak
    print(
        table(
            "Machine peak (measured)",
            ["streaming copy GB/s", "matmul 2048² GFLOP/s", "load"],
            [[f"{peak['stream_gb_s']:.1f}", f"{peak['matmul_gflop_s']:.1f}", f"{peak['load']:.1f}"]],
        )
    )
    head = [
        "n_demons",
        "workload",
        "µs/step",
        "steps/s",
        "bytes/step",
        "FLOPs/step",
        "GB/s (of peak)",
        "GFLOP/s (of peak)",
        "load",
    ]
    if "traces" in args.only or "core" in args.only:
        lines = []
        for n in args.heads:
            rows = bench_traces(n, args.repeats) if "traces" in args.only else bench_core(n, args.repeats)
            if args.baseline:
                # The earlier horde on the same workload, between this one's rows, under the same load.
                before = _child(
                    ["--child", "baseline-core", str(n), str(args.repeats)],
                    {"PYTHONPATH": os.path.abspath(args.baseline)},
                )
                rows = {f"baseline {k}": v for k, v in before.items()} | rows
            results[f"traces_{n}"] = rows
            for name, r in rows.items():
                base = rows[
                    "baseline core, no traces"
                    if name.startswith("baseline")
                    else "core, no traces"
                    if name.startswith("core")
                    else "HordeLearner, no traces"
                ]
                lines.append(
                    [
                        f"{n:,}",
                        name,
                        f"{r['us_per_step']:.1f}",
                        f"{1e6 / r['us_per_step']:,.0f}",
                        *roofline_cells(r, peak),
                        f"{r['load']:.1f}",
                        f"{r['us_per_step'] / base['us_per_step']:.2f}x",
                    ]
                )
        print(
            table(
                ("Core and HordeLearner scans" if "traces" in args.only else "Core scans")
                + ", half the heads at γλ = 0.72 (LMS + ObGD, trunk (128, 128))",
                head + ["/ no traces"],
                lines,
            )
        )
    if "nexting" in args.only:
        n = 10_000
        rows = bench_nexting(n, args.repeats)
        results["nexting"] = rows
        base = rows["λ = 0"]["us_per_step"]
        lines = [
            [
                f"{n:,}",
                name,
                f"{r['us_per_step']:.1f}",
                f"{1e6 / r['us_per_step']:,.0f}",
                *roofline_cells(r, peak),
                f"{r['load']:.1f}",
                f"{r['us_per_step'] / base:.2f}x",
            ]
            for name, r in rows.items()
        ]
        print(table("Nexting Horde, 16 observations x 5 timescales", head + ["/ λ = 0"], lines))
    if "daemon" in args.only:
        rows = _child(["--child", "daemon", "64"])
        results["daemon"] = rows
        lines = [[name, f"{r['us']:.1f}", f"{r['load']:.1f}"] for name, r in rows.items()]
        lines.append(["difference", f"{rows['λ = 0.9']['us'] - rows['λ = 0']['us']:+.1f}", ""])
        print(table("Daemon.update_from_transition, 64 nexting demons, sync dispatch", ["", "µs/call", "load"], lines))
    if "seeds" in args.only:
        cores = usable_cores()
        one = time_scan(learner_for(trace_demons(256, TRACE_LAMBDA), True), args.repeats)
        batched = _child(["--child", "batched", "256", "32"])
        sharded = _child(
            ["--child", "sharded", "256", "32"], {"XLA_FLAGS": f"--xla_force_host_platform_device_count={cores}"}
        )
        results["seeds"] = {"one": one, "batched": batched, "sharded": sharded}
        lines = [
            [label, f"{r['us_per_step']:.1f}", *roofline_cells(r, peak), f"{r['load']:.1f}"]
            for label, r in (
                ("1 seed", one),
                ("32 seeds, one device", batched),
                (f"32 seeds, sharded over {cores} devices", sharded),
            )
        ]
        print(
            table(
                "Many seeds, 256 demons (half at γλ = 0.72)",
                ["", "µs/step (all seeds)", "bytes/step", "FLOPs/step", "GB/s (of peak)", "GFLOP/s (of peak)", "load"],
                lines,
            )
        )
    print(f"load average (1 min) at end: {load():.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
