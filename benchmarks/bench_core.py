#!/usr/bin/env python3
"""Benchmark of the multi-head core: compile time, per-step time and memory versus n_heads.

Usage::

    python benchmarks/bench_core.py                          # n_heads 8 64 256 1024 10000
    python benchmarks/bench_core.py --heads 64 1024 --seeds 4 --json out.json
    python benchmarks/bench_core.py --steps 500              # fixed scan length for every size

Set-up for every size: trunk (128, 128), 16 input features, ``LMS(0.01)`` with
``ObGDBounding()``, about 25% of the targets NaN (inactive heads) at each step.

Each size runs in a fresh subprocess (this script with the hidden ``--one N`` flag, which prints
one JSON row), so that its peak resident set size is its own. See ``benchmarks/README.md`` for
what each column means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

DEFAULT_HEADS = (8, 64, 256, 1024, 10000)
FEATURE_DIM = 16
HIDDEN_SIZES = (128, 128)
STEP_SIZE = 0.01
INACTIVE_FRACTION = 0.25
SHORT_STEPS = 64  # stream length of the scan compile measurement
TARGET_SCAN_S = 0.75  # aim of the automatic stream length (each timed scan call ~0.5-1 s)
MIN_SCAN_STEPS = 64
MAX_SCAN_STEPS = 200_000
# Cap on steps * n_heads (* seeds) of a timed stream: the targets and the returned per-head
# metrics, 16 bytes per element in all, stay under ~400 MB (2400 steps at 10000 heads, enough
# for a ~0.5-1 s call there on a 2-core CPU).
MAX_STREAM_ELEMENTS = 24_000_000
MIN_UPDATE_CALLS = 200
MAX_UPDATE_CALLS = 2000
UPDATE_TIME_BUDGET_S = 0.5
ROW_MARKER = "BENCH_ROW "


# --------------------------------------------------------------------------------------------
# Memory helpers (Linux /proc; falls back to getrusage)


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS counter (VmHWM) to the current RSS; Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_kib(hwm_reset: bool) -> int:
    if hwm_reset:
        hwm = _proc_status_kib("VmHWM")
        if hwm is not None:
            return hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _current_rss_kib() -> int:
    rss = _proc_status_kib("VmRSS")
    return rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --------------------------------------------------------------------------------------------
# Machine description


def machine_info() -> dict:
    import jax
    import jaxlib
    import numpy as np

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    dev = jax.devices()[0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '?')}",
    }


# --------------------------------------------------------------------------------------------
# One size, in this process


def _stream(rng, n_steps: int, n_heads: int):
    import numpy as np

    obs = rng.standard_normal((n_steps, FEATURE_DIM)).astype(np.float32)
    tgt = rng.standard_normal((n_steps, n_heads)).astype(np.float32)
    tgt[rng.random((n_steps, n_heads)) < INACTIVE_FRACTION] = np.nan
    return obs, tgt


def _timed(fn):
    import jax

    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return out, time.perf_counter() - t0


def _auto_steps(per_step_s: float, n_elements_per_step: int) -> int:
    steps = int(TARGET_SCAN_S / max(per_step_s, 1e-9))
    steps = min(steps, MAX_STREAM_ELEMENTS // max(n_elements_per_step, 1))
    return max(MIN_SCAN_STEPS, min(MAX_SCAN_STEPS, steps))


def bench_one(n_heads: int, steps: int | None, seeds: int | None, repeats: int = 3) -> dict:
    import jax
    import numpy as np

    import horde

    # Start the backend and pay XLA's one-time, per-process start-up cost (compiler pipeline
    # set-up) on an unrelated small function, so that the compile times below are the learner's
    # own and comparable across sizes.
    _warm = jax.jit(lambda w, x: jax.nn.leaky_relu(jax.numpy.tanh(x @ w).sum(0)))
    _warm(jax.numpy.ones((16, 16)), jax.numpy.ones((4, 16))).block_until_ready()
    rng = np.random.default_rng(0)
    learner = horde.MultiHeadMLPLearner(
        n_heads,
        hidden_sizes=HIDDEN_SIZES,
        optimizer=horde.LMS(STEP_SIZE),
        bounder=horde.ObGDBounding(),
    )
    baseline_kib = _current_rss_kib()
    hwm_reset = _reset_peak_rss()
    if not hwm_reset:
        baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    state = learner.init(FEATURE_DIM, jax.random.key(0))
    jax.block_until_ready(state)
    state_bytes = int(sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(state)))

    # ---- single-step update, daemon style: NumPy in, block on predictions, state fed forward
    pool = 256
    obs_pool, tgt_pool = _stream(rng, pool, n_heads)

    def step(s, i):
        res = learner.update(s, obs_pool[i % pool], tgt_pool[i % pool])
        res.predictions.block_until_ready()
        return res.state

    t0 = time.perf_counter()
    state = step(state, 0)
    first_update_s = time.perf_counter() - t0
    warm = []
    for i in range(1, 21):
        t0 = time.perf_counter()
        state = step(state, i)
        warm.append(time.perf_counter() - t0)
    n_calls = int(UPDATE_TIME_BUDGET_S / max(statistics.median(warm), 1e-9))
    n_calls = max(MIN_UPDATE_CALLS, min(MAX_UPDATE_CALLS, n_calls))
    times = []
    for i in range(n_calls):
        t0 = time.perf_counter()
        state = step(state, 21 + i)
        times.append(time.perf_counter() - t0)
    update_median_s = statistics.median(times)
    q = statistics.quantiles(times, n=10)
    daemon_peak_kib = _peak_rss_kib(hwm_reset)

    # ---- scan loop: compile on a short stream, then time the second call of a long stream
    obs_s, tgt_s = _stream(rng, SHORT_STEPS, n_heads)
    obs_s, tgt_s = jax.device_put(obs_s), jax.device_put(tgt_s)
    res, short_first_s = _timed(lambda: horde.run_multi_head_learning_loop(learner, state, obs_s, tgt_s))
    short_steady = []
    for _ in range(2):
        res, t = _timed(lambda: horde.run_multi_head_learning_loop(learner, res.state, obs_s, tgt_s))
        short_steady.append(t)
    est_per_step = min(short_steady) / SHORT_STEPS
    scan_steps = steps if steps else _auto_steps(est_per_step, n_heads)
    obs_l, tgt_l = _stream(rng, scan_steps, n_heads)
    obs_l, tgt_l = jax.device_put(obs_l), jax.device_put(tgt_l)
    res, long_first_s = _timed(lambda: horde.run_multi_head_learning_loop(learner, state, obs_l, tgt_l))
    steady = []  # calls 2 .. repeats+1, the state fed forward
    for _ in range(repeats):
        res, t = _timed(lambda: horde.run_multi_head_learning_loop(learner, res.state, obs_l, tgt_l))
        steady.append(t)
    del res
    long_second_s = steady[0]
    scan_per_step_s = min(steady) / scan_steps

    row = {
        "n_heads": n_heads,
        "state_bytes": state_bytes,
        "update_first_call_s": first_update_s,
        "update_compile_s": first_update_s - update_median_s,
        "update_median_s": update_median_s,
        "update_p10_s": q[0],
        "update_p90_s": q[-1],
        "update_calls": n_calls,
        "scan_short_steps": SHORT_STEPS,
        "scan_short_first_call_s": short_first_s,
        "scan_compile_s": short_first_s - SHORT_STEPS * scan_per_step_s,
        "scan_steps": scan_steps,
        "scan_long_first_call_s": long_first_s,
        "scan_long_second_call_s": long_second_s,
        "scan_steady_calls_s": steady,
        "scan_compile_long_s": long_first_s - min(steady),
        "scan_per_step_s": scan_per_step_s,
        "scan_steps_per_s": 1.0 / scan_per_step_s,
    }

    # ---- optional: vmapped seeds
    if seeds:
        keys = jax.random.split(jax.random.key(1), seeds)
        b_steps = steps if steps else _auto_steps(scan_per_step_s * seeds, n_heads * seeds)
        obs_b, tgt_b = obs_l[:b_steps], tgt_l[:b_steps]
        if b_steps > scan_steps:
            obs_b, tgt_b = _stream(rng, b_steps, n_heads)
            obs_b, tgt_b = jax.device_put(obs_b), jax.device_put(tgt_b)
        run_b = lambda: horde.run_multi_head_learning_loop_batched(learner, obs_b, tgt_b, keys)
        out, b_first_s = _timed(run_b)
        del out
        b_steady = []
        for _ in range(repeats):
            out, t = _timed(run_b)
            del out
            b_steady.append(t)
        b_second_s = min(b_steady)
        row.update(
            {
                "seeds": seeds,
                "batched_steps": b_steps,
                "batched_first_call_s": b_first_s,
                "batched_compile_s": b_first_s - b_second_s,
                "batched_per_step_s": b_second_s / b_steps,
                "batched_per_seed_step_s": b_second_s / (b_steps * seeds),
            }
        )

    total_peak_kib = _peak_rss_kib(hwm_reset)
    row.update(
        {
            "rss_baseline_mib": baseline_kib / 1024,
            "peak_rss_delta_daemon_mib": max(daemon_peak_kib - baseline_kib, 0) / 1024,
            "peak_rss_delta_total_mib": max(total_peak_kib - baseline_kib, 0) / 1024,
            "peak_rss_total_mib": total_peak_kib / 1024,
            "peak_rss_method": "VmHWM reset" if hwm_reset else "ru_maxrss",
        }
    )
    return row


# --------------------------------------------------------------------------------------------
# Table


def _fmt_bytes(n: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _fmt_us(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}"


def render_table(rows: list[dict], seeds: int | None) -> str:
    head = [
        "n_heads",
        "state size",
        "update compile (s)",
        "scan compile (s)",
        "update µs/call (NumPy in, median)",
        "scan µs/step",
        "scan steps/s",
        "scan stream (steps)",
        "peak RSS Δ daemon (MiB)",
        "peak RSS Δ total (MiB)",
    ]
    if seeds:
        head.append(f"batched ×{seeds} seeds µs/step")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['n_heads']} | failed: {r['error']} |")
            continue
        cells = [
            f"{r['n_heads']:,}",
            _fmt_bytes(r["state_bytes"]),
            f"{r['update_compile_s']:.2f}",
            f"{r['scan_compile_s']:.2f}",
            _fmt_us(r["update_median_s"]),
            _fmt_us(r["scan_per_step_s"]),
            f"{r['scan_steps_per_s']:,.0f}",
            f"{r['scan_steps']:,}",
            f"{r['peak_rss_delta_daemon_mib']:.1f}",
            f"{r['peak_rss_delta_total_mib']:.1f}",
        ]
        if seeds:
            cells.append(_fmt_us(r["batched_per_step_s"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--heads", type=int, nargs="+", default=list(DEFAULT_HEADS), help="n_heads values")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="scan stream length for every size (default: chosen per size so a timed call takes ~0.75 s)",
    )
    p.add_argument("--seeds", type=int, default=None, help="also time run_multi_head_learning_loop_batched with K seeds")
    p.add_argument("--json", metavar="OUT", default=None, help="write machine info and all rows to this JSON file")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed steady-state scan calls after the compiling one; the fastest is reported (default 3)",
    )
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be >= 1")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.seeds is not None and args.seeds < 1:
        p.error("--seeds must be >= 1")
    if any(h < 1 for h in args.heads):
        p.error("--heads values must be >= 1")

    if args.one is not None:
        row = bench_one(args.one, args.steps, args.seeds, args.repeats)
        print(ROW_MARKER + json.dumps(row), flush=True)
        return 0

    info = machine_info()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows, failed = [], False
    t_start = time.perf_counter()
    for n in args.heads:
        cmd = [sys.executable, os.path.abspath(__file__), "--one", str(n), "--repeats", str(args.repeats)]
        if args.steps:
            cmd += ["--steps", str(args.steps)]
        if args.seeds:
            cmd += ["--seeds", str(args.seeds)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = [l for l in proc.stdout.splitlines() if l.startswith(ROW_MARKER)]
        if proc.returncode != 0 or not found:
            failed = True
            err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"n_heads={n}: FAILED (rc={proc.returncode}): {err}", file=sys.stderr)
            print(proc.stderr, file=sys.stderr)
            rows.append({"n_heads": n, "error": err})
            continue
        rows.append(json.loads(found[-1][len(ROW_MARKER):]))
        print(f"n_heads={n}: done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    print(
        f"Machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable); "
        f"Python {info['python']}, jax {info['jax']} (jaxlib {info['jaxlib']}), "
        f"backend {info['backend']} ({info['device']})"
    )
    if load_before is not None:
        print(f"Load average (1 min) before the run: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")
    print(
        f"Set-up: trunk {HIDDEN_SIZES}, {FEATURE_DIM} features, LMS({STEP_SIZE}) + ObGDBounding(), "
        f"~{INACTIVE_FRACTION:.0%} NaN (inactive) targets; one fresh process per n_heads; "
        f"total {time.perf_counter() - t_start:.0f} s"
    )
    print()
    print(render_table(rows, args.seeds))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": {**info, "loadavg_1min_before": load_before},
                    "config": {
                        "hidden_sizes": list(HIDDEN_SIZES),
                        "feature_dim": FEATURE_DIM,
                        "optimizer": f"LMS({STEP_SIZE})",
                        "bounder": "ObGDBounding()",
                        "inactive_fraction": INACTIVE_FRACTION,
                        "steps": args.steps,
                        "seeds": args.seeds,
                        "repeats": args.repeats,
                    },
                    "rows": rows,
                },
                f,
                indent=2,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
