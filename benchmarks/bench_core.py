#!/usr/bin/env python3
"""Benchmarks of the multi-head core and of the HordeLearner against the number of heads/demons.

Usage::

    python benchmarks/bench_core.py                          # both tables, sizes 8 64 256 1024 10000
    python benchmarks/bench_core.py --table core             # only the bare multi-head core
    python benchmarks/bench_core.py --table horde --heads 64 1024
    python benchmarks/bench_core.py --heads 64 1024 --seeds 4 --json out.json
    python benchmarks/bench_core.py --steps 500              # fixed scan length for every size

Core table (``MultiHeadMLPLearner``): trunk (128, 128), 16 input features, ``LMS(0.01)`` with
``ObGDBounding()``, about 25% of the targets NaN (inactive heads) at each step.

Horde table (``HordeLearner``): the same trunk, optimizer and bounder, 16-dimensional
observations, demons = ``demons.nexting(16, timescales=1..k)`` trimmed to exactly ``n_demons``
(λ = 0), random transitions; its scan time is compared with the bare core's (all targets active,
same trunk, ``n_heads = n_demons``) measured in the same subprocess.

Each (table, size) runs in a fresh subprocess (this script with the hidden ``--one N`` flag,
which prints one JSON row), so that its peak resident set size is its own; the single-step
update is measured a second time in another fresh subprocess with JAX's CPU async dispatch off
(``jax.config.update("jax_cpu_enable_async_dispatch", False)`` before any computation; the flag
is read when the CPU client is created, so it cannot be switched within a process). See
``benchmarks/README.md`` for what each column means.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_info, usable_cores  # noqa: E402

DEFAULT_HEADS = (8, 64, 256, 1024, 10000)
FEATURE_DIM = 16
HIDDEN_SIZES = (128, 128)
STEP_SIZE = 0.01
INACTIVE_FRACTION = 0.25
TERMINATED_FRACTION = 0.01  # Horde transitions: share of terminated steps
BEHAVIOUR_PROB = 0.5  # Horde transitions: mu(A_t|S_t) of every step
N_ACTIONS = 2  # Horde transitions: actions uniform in {0, 1}
SHORT_STEPS = 64  # stream length of the scan compile measurement
SHORT_REPEATS = 3  # steady calls of the short stream; the fastest estimates the per-step cost
TARGET_SCAN_S = 0.75  # aim of the automatic stream length (each timed scan call ~0.5-1 s)
MIN_SCAN_STEPS = 64
MAX_SCAN_STEPS = 200_000
# Cap on steps * n_heads (* seeds) of a timed stream: the targets and the returned per-head
# metrics (core), or the returned predictions and per-demon metrics (Horde), 16 bytes per
# element in all, stay under ~400 MB (2400 steps at 10000 heads, enough for a ~0.5-1 s call
# there on a 2-core CPU).
MAX_STREAM_ELEMENTS = 24_000_000
MIN_UPDATE_CALLS = 200
MAX_UPDATE_CALLS = 4000
UPDATE_TIME_BUDGET_S = 1.0
UPDATE_BLOCKS = 5  # single-step calls are timed in this many blocks (see _time_single_steps)
WARM_UP_S = 1.0  # single-step warm-up before timing (see _time_single_steps)
ROW_MARKER = "BENCH_ROW "
TABLES = ("core", "horde")
ASYNC_FLAG = "jax_cpu_enable_async_dispatch"


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


# --------------------------------------------------------------------------------------------
# Shared pieces of one size, in this process


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


def _warm_up_xla() -> None:
    """Starts the backend and pays XLA's one-time, per-process start-up cost (compiler pipeline
    set-up) on an unrelated small function, so that the compile times measured afterwards are
    the learner's own and comparable across sizes."""
    import jax

    _warm = jax.jit(lambda w, x: jax.nn.leaky_relu(jax.numpy.tanh(x @ w).sum(0)))
    _warm(jax.numpy.ones((16, 16)), jax.numpy.ones((4, 16))).block_until_ready()


def _dispatch_mode() -> str:
    import jax

    try:
        return "async" if jax.config.read(ASYNC_FLAG) else "sync"
    except Exception:  # noqa: BLE001 - an older/newer jax without the flag
        return "unknown"


def _start_rss():
    """Returns ``(baseline_kib, hwm_reset)``: the RSS now, and whether the peak counter was reset."""
    baseline_kib = _current_rss_kib()
    hwm_reset = _reset_peak_rss()
    if not hwm_reset:
        baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return baseline_kib, hwm_reset


def _state_bytes(state) -> int:
    import jax

    return int(sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(state)))


def _time_single_steps(step, state, prefix: str = "update"):
    """Daemon-style single-step timing: ``step(state, i) -> state`` (blocking inside).

    One first (compiling) call, warm-up calls for at least 1 s, then 200-4000 timed calls
    (enough for ~1 s). Returns the state fed forward and the ``{prefix}_*`` fields of a row.
    """
    t0 = time.perf_counter()
    state = step(state, 0)
    first_s = time.perf_counter() - t0
    # Warm-up: at least 20 calls and WARM_UP_S seconds. The first few hundred milliseconds of
    # calls in a fresh process run up to twice as slow on this kind of machine (seen with every
    # version of the learner), and a daemon lives far longer than that.
    warm, i = [], 1
    t_warm = time.perf_counter()
    while i <= 20 or time.perf_counter() - t_warm < WARM_UP_S:
        t0 = time.perf_counter()
        state = step(state, i)
        warm.append(time.perf_counter() - t0)
        i += 1
    n_calls = int(UPDATE_TIME_BUDGET_S / max(statistics.median(warm[-20:]), 1e-9))
    n_calls = max(MIN_UPDATE_CALLS, min(MAX_UPDATE_CALLS, n_calls))
    times = []
    for j in range(n_calls):
        t0 = time.perf_counter()
        state = step(state, i + j)
        times.append(time.perf_counter() - t0)
    # The calls run in UPDATE_BLOCKS consecutive blocks; the reported figure is the median of
    # the quickest block, so that a stall of the shared machine during part of the measurement
    # does not set it (the JSON also keeps the median over all calls).
    size = n_calls // UPDATE_BLOCKS
    block_medians = [statistics.median(times[b * size : (b + 1) * size]) for b in range(UPDATE_BLOCKS)]
    median_s = min(block_medians)
    q = statistics.quantiles(times, n=10)
    return state, {
        f"{prefix}_first_call_s": first_s,
        f"{prefix}_compile_s": first_s - median_s,
        f"{prefix}_median_s": median_s,
        f"{prefix}_all_calls_median_s": statistics.median(times),
        f"{prefix}_block_medians_s": block_medians,
        f"{prefix}_p10_s": q[0],
        f"{prefix}_p90_s": q[-1],
        f"{prefix}_calls": n_calls,
    }


# --------------------------------------------------------------------------------------------
# Core table: one size


def _stream(rng, n_steps: int, n_heads: int, inactive_fraction: float = INACTIVE_FRACTION):
    import numpy as np

    obs = rng.standard_normal((n_steps, FEATURE_DIM)).astype(np.float32)
    tgt = rng.standard_normal((n_steps, n_heads)).astype(np.float32)
    if inactive_fraction > 0:
        tgt[rng.random((n_steps, n_heads)) < inactive_fraction] = np.nan
    return obs, tgt


def _core_learner(n_heads: int):
    import horde

    return horde.MultiHeadMLPLearner(
        n_heads,
        hidden_sizes=HIDDEN_SIZES,
        optimizer=horde.LMS(STEP_SIZE),
        bounder=horde.ObGDBounding(),
    )


def _time_batched(run, learner, keys, steps: int, repeats: int, prefix: str) -> tuple[dict, object]:
    """Times a learning loop over ``len(keys)`` seeds that initialises its states from ``keys``
    (the batched and the sharded loops); returns its ``{prefix}_*`` fields and the states.

    The per-step figure leaves out that initialisation, timed alone with the keys placed as
    the loop places them (``jax.jit(jax.vmap(learner.init))``)."""
    import jax

    out, first_s = _timed(run)
    del out
    steady = []
    for _ in range(repeats):
        out, t = _timed(run)
        del out
        steady.append(t)
    call_s = min(steady)
    init = jax.jit(jax.vmap(lambda k: learner.init(FEATURE_DIM, k)))
    init_s = min(_timed(lambda: init(keys))[1] for _ in range(repeats + 1))
    seeds = len(keys)
    return {
        f"{prefix}_steps": steps,
        f"{prefix}_first_call_s": first_s,
        f"{prefix}_compile_s": first_s - call_s,
        f"{prefix}_call_s": call_s,
        f"{prefix}_init_s": init_s,
        f"{prefix}_per_step_s": (call_s - init_s) / steps,
        f"{prefix}_per_seed_step_s": (call_s - init_s) / (steps * seeds),
    }, init(keys)


def bench_sharded_seeds_one(n_heads: int, steps: int | None, seeds: int, repeats: int = 3) -> dict:
    """The ``seeds`` loop of one core size sharded over this process's CPU devices (simulated
    with ``--xla_force_host_platform_device_count``, set by the parent in ``XLA_FLAGS``): XLA
    runs each device's share of the seeds on its own thread."""
    import jax
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec

    from horde.runs.sharding import SEED_AXIS, run_multi_head_learning_loop_sharded, seed_mesh

    _warm_up_xla()
    rng = np.random.default_rng(0)
    learner = _core_learner(n_heads)
    mesh = seed_mesh()
    keys = jax.device_put(jax.random.split(jax.random.key(1), seeds), NamedSharding(mesh, PartitionSpec(SEED_AXIS)))
    obs_s, tgt_s = (jax.device_put(a) for a in _stream(rng, SHORT_STEPS, n_heads))
    run_s = lambda: run_multi_head_learning_loop_sharded(learner, obs_s, tgt_s, keys, mesh=mesh)
    _timed(run_s)  # compiles
    est = min(_timed(run_s)[1] for _ in range(SHORT_REPEATS)) / SHORT_STEPS
    s_steps = steps if steps else _auto_steps(est, n_heads * seeds)
    obs_l, tgt_l = (jax.device_put(a) for a in _stream(rng, s_steps, n_heads))
    run_l = lambda: run_multi_head_learning_loop_sharded(learner, obs_l, tgt_l, keys, mesh=mesh)
    fields, _ = _time_batched(run_l, learner, keys, s_steps, repeats, "sharded")
    fields.update({"table": "core", "n_heads": n_heads, "shard_devices": len(jax.devices())})
    return fields


def _state_sweep_per_step_s(states, steps: int, repeats: int) -> float:
    """Per-step time of a scan that reads and rewrites every float of ``states`` once per step
    (``x * c + t``): the memory-traffic floor of any update that changes every parameter, as
    LMS does. A learner step makes several such passes over its weights (forward, the
    cotangent ``Σ δ_i w_i``, the update), so it cannot be quicker than this."""
    import jax
    import jax.numpy as jnp

    leaves = [x for x in jax.tree_util.tree_leaves(states) if x.dtype == jnp.float32]
    ts = jnp.linspace(0.0, 1e-3, steps, dtype=jnp.float32)

    @jax.jit
    def sweep(leaves, ts):
        return jax.lax.scan(lambda ls, t: ([x * 0.999 + t for x in ls], None), leaves, ts)[0]

    leaves, _ = _timed(lambda: sweep(leaves, ts))
    best = float("inf")
    for _ in range(repeats):
        leaves, t = _timed(lambda: sweep(leaves, ts))
        best = min(best, t)
    return best / steps


def bench_core_one(n_heads: int, steps: int | None, seeds: int | None, repeats: int = 3, sync: bool = False) -> dict:
    import jax
    import numpy as np

    import horde

    _warm_up_xla()
    rng = np.random.default_rng(0)
    learner = _core_learner(n_heads)
    baseline_kib, hwm_reset = _start_rss()

    state = learner.init(FEATURE_DIM, jax.random.key(0))
    jax.block_until_ready(state)
    state_bytes = _state_bytes(state)

    # ---- single-step update, daemon style: NumPy in, block on predictions, state fed forward
    pool = 256
    obs_pool, tgt_pool = _stream(rng, pool, n_heads)

    def step(s, i):
        res = learner.update(s, obs_pool[i % pool], tgt_pool[i % pool])
        res.predictions.block_until_ready()
        return res.state

    state, update_fields = _time_single_steps(step, state)

    # ---- the same through horde.Daemon: donated state, packed input and results
    daemon = horde.Daemon(learner, state)

    def daemon_step(s, i):
        daemon.update(obs_pool[i % pool], tgt_pool[i % pool])  # results come back as NumPy
        return s

    _, daemon_fields = _time_single_steps(daemon_step, None, prefix="daemon")
    state = daemon.state
    del daemon
    daemon_peak_kib = _peak_rss_kib(hwm_reset)
    row = {"table": "core", "n_heads": n_heads, "dispatch": _dispatch_mode(), "state_bytes": state_bytes}
    row.update(update_fields)
    row.update(daemon_fields)
    if sync:  # the sync-dispatch subprocess measures the single-step update only
        row["peak_rss_delta_daemon_mib"] = max(daemon_peak_kib - baseline_kib, 0) / 1024
        return row

    # ---- scan loop: compile on a short stream, then time the second call of a long stream
    obs_s, tgt_s = _stream(rng, SHORT_STEPS, n_heads)
    obs_s, tgt_s = jax.device_put(obs_s), jax.device_put(tgt_s)
    res, short_first_s = _timed(lambda: horde.run_multi_head_learning_loop(learner, state, obs_s, tgt_s))
    short_steady = []
    for _ in range(SHORT_REPEATS):
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

    row.update(
        {
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
    )

    # ---- optional: vmapped seeds
    if seeds:
        keys = jax.random.split(jax.random.key(1), seeds)
        b_steps = steps if steps else _auto_steps(scan_per_step_s * seeds, n_heads * seeds)
        obs_b, tgt_b = obs_l[:b_steps], tgt_l[:b_steps]
        if b_steps > scan_steps:
            obs_b, tgt_b = _stream(rng, b_steps, n_heads)
            obs_b, tgt_b = jax.device_put(obs_b), jax.device_put(tgt_b)
        run_b = lambda: horde.run_multi_head_learning_loop_batched(learner, obs_b, tgt_b, keys)
        fields, states = _time_batched(run_b, learner, keys, b_steps, repeats, "batched")
        row.update(fields)
        row.update(
            {
                "seeds": seeds,
                "batched_state_bytes": _state_bytes(states),
                "state_sweep_per_step_s": _state_sweep_per_step_s(states, b_steps, repeats),
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
# Horde table: one size


def nexting_timescales(n_demons: int) -> int:
    """``k``: the nexting set over the 16 components at timescales ``1..k`` has >= n_demons."""
    return max(1, math.ceil(n_demons / FEATURE_DIM))


def horde_demons(n_demons: int):
    """``demons.nexting(16, timescales=1..k)`` (component-major, λ = 0), trimmed to n_demons."""
    import demons

    k = nexting_timescales(n_demons)
    return demons.DemonSet(demons.nexting(FEATURE_DIM, timescales=range(1, k + 1))[:n_demons])


def _transitions(rng, n_steps: int):
    """Random transitions: one observation stream, ``S_{t+1}`` of step t = ``S_t`` of step t+1."""
    import numpy as np

    import horde

    x = rng.standard_normal((n_steps + 1, FEATURE_DIM)).astype(np.float32)
    return horde.Transitions(
        observations=x[:-1],
        actions=rng.integers(0, N_ACTIONS, n_steps).astype(np.int32),
        rewards=rng.standard_normal(n_steps).astype(np.float32),
        next_observations=x[1:],
        terminated=rng.random(n_steps) < TERMINATED_FRACTION,
        truncated=np.zeros(n_steps, bool),
        behaviour_probs=np.full(n_steps, BEHAVIOUR_PROB, np.float32),
    )


def bench_horde_one(n_demons: int, steps: int | None, repeats: int = 3, sync: bool = False) -> dict:
    import jax
    import numpy as np

    import horde

    _warm_up_xla()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    demon_set = horde_demons(n_demons)
    learner = horde.HordeLearner(
        demon_set,
        hidden_sizes=HIDDEN_SIZES,
        optimizer=horde.LMS(STEP_SIZE),
        bounder=horde.ObGDBounding(),
    )
    build_s = time.perf_counter() - t0
    assert learner.n_demons == n_demons
    baseline_kib, hwm_reset = _start_rss()

    state = learner.init(FEATURE_DIM, jax.random.key(0))
    jax.block_until_ready(state)
    state_bytes = _state_bytes(state)

    # ---- single-step update_from_transition, daemon style: NumPy/Python scalars in, block on
    # the predictions, state fed forward; the demons compute cumulants/discounts/ratios inside
    pool = 256
    tp = _transitions(rng, pool)
    actions = [int(a) for a in tp.actions]
    terminated = [bool(d) for d in tp.terminated]

    def step(s, i):
        j = i % pool
        res = learner.update_from_transition(
            s,
            tp.observations[j],
            actions[j],
            tp.rewards[j],
            tp.next_observations[j],
            terminated=terminated[j],
            truncated=False,
            behaviour_prob=BEHAVIOUR_PROB,
        )
        res.predictions.block_until_ready()
        return res.state

    state, update_fields = _time_single_steps(step, state)

    daemon = horde.Daemon(learner, state)

    def daemon_step(s, i):
        j = i % pool
        daemon.update_from_transition(
            tp.observations[j],
            actions[j],
            tp.rewards[j],
            tp.next_observations[j],
            terminated=terminated[j],
            truncated=False,
            behaviour_prob=BEHAVIOUR_PROB,
        )
        return s

    _, daemon_fields = _time_single_steps(daemon_step, None, prefix="daemon")
    state = daemon.state
    del daemon
    daemon_peak_kib = _peak_rss_kib(hwm_reset)
    row = {
        "table": "horde",
        "n_demons": n_demons,
        "nexting_timescales": nexting_timescales(n_demons),
        "dispatch": _dispatch_mode(),
        "build_s": build_s,
        "state_bytes": state_bytes,
    }
    row.update(update_fields)
    row.update(daemon_fields)
    row["peak_rss_delta_daemon_mib"] = max(daemon_peak_kib - baseline_kib, 0) / 1024
    if sync:  # the sync-dispatch subprocess measures the single-step update only
        return row

    # ---- Horde scan: compile on a short stream (estimate the per-step cost), then a long one
    run = horde.run_horde_learning_loop
    ts = _transitions(rng, SHORT_STEPS)
    res, short_first_s = _timed(lambda: run(learner, state, ts))
    short_steady = []
    for _ in range(SHORT_REPEATS):
        res, t = _timed(lambda: run(learner, res.state, ts))
        short_steady.append(t)
    del res
    est_per_step = min(short_steady) / SHORT_STEPS
    scan_steps = steps if steps else _auto_steps(est_per_step, n_demons)
    tl = _transitions(rng, scan_steps)

    # ---- the bare core at the same size, in this process: all targets active, same stream
    # length and observations, same trunk, LMS + ObGD
    core = _core_learner(n_demons)
    core_state = core.init(FEATURE_DIM, jax.random.key(0))
    _, core_tgt = _stream(rng, scan_steps, n_demons, inactive_fraction=0.0)
    core_obs, core_tgt = jax.device_put(tl.observations), jax.device_put(core_tgt)
    run_core = horde.run_multi_head_learning_loop

    hres, long_first_s = _timed(lambda: run(learner, state, tl))
    cres, core_first_s = _timed(lambda: run_core(core, core_state, core_obs, core_tgt))
    h_state, c_state = hres.state, cres.state
    del hres, cres
    steady, core_steady = [], []  # interleaved, so that drifting load hits both alike
    for _ in range(repeats):
        hres, t = _timed(lambda: run(learner, h_state, tl))
        h_state = hres.state
        del hres
        steady.append(t)
        cres, t = _timed(lambda: run_core(core, c_state, core_obs, core_tgt))
        c_state = cres.state
        del cres
        core_steady.append(t)
    scan_per_step_s = min(steady) / scan_steps
    core_per_step_s = min(core_steady) / scan_steps
    total_peak_kib = _peak_rss_kib(hwm_reset)
    row.update(
        {
            "scan_short_steps": SHORT_STEPS,
            "scan_short_first_call_s": short_first_s,
            "scan_compile_s": short_first_s - SHORT_STEPS * scan_per_step_s,
            "scan_steps": scan_steps,
            "scan_long_first_call_s": long_first_s,
            "scan_steady_calls_s": steady,
            "scan_compile_long_s": long_first_s - min(steady),
            "scan_per_step_s": scan_per_step_s,
            "scan_steps_per_s": 1.0 / scan_per_step_s,
            "core_scan_first_call_s": core_first_s,
            "core_scan_steady_calls_s": core_steady,
            "core_scan_per_step_s": core_per_step_s,
            "horde_over_core": scan_per_step_s / core_per_step_s,
            "rss_baseline_mib": baseline_kib / 1024,
            "peak_rss_delta_total_mib": max(total_peak_kib - baseline_kib, 0) / 1024,
            "peak_rss_method": "VmHWM reset" if hwm_reset else "ru_maxrss",
        }
    )
    return row


# --------------------------------------------------------------------------------------------
# Tables


def _fmt_bytes(n: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _fmt_us(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}"


def _fmt_sync(r: dict, what: str = "update") -> str:
    if "sync_error" in r:
        return "failed"
    key = f"sync_{what}_median_s"
    return _fmt_us(r[key]) if key in r else "-"


SINGLE_STEP_HEAD = [
    "update µs (async, default)",
    "update µs (sync dispatch)",
    "Daemon µs (async)",
    "Daemon µs (sync)",
]


def _single_step_cells(r: dict) -> list[str]:
    """The four single-step cells (``SINGLE_STEP_HEAD``) of a core or Horde row."""
    return [_fmt_us(r["update_median_s"]), _fmt_sync(r), _fmt_us(r["daemon_median_s"]), _fmt_sync(r, "daemon")]


def _table_lines(head: list[str]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]


def render_table(rows: list[dict], seeds: int | None) -> str:
    head = [
        "n_heads",
        "state size",
        "update compile (s)",
        "scan compile (s)",
        *SINGLE_STEP_HEAD,
        "scan µs/step",
        "scan steps/s",
        "scan stream (steps)",
        "peak RSS Δ daemon (MiB)",
        "peak RSS Δ total (MiB)",
    ]
    if seeds:
        head += [
            f"batched ×{seeds} seeds µs/step",
            f"×{seeds} / scan",
            f"×{seeds} state sweep µs/step",
            f"×{seeds} sharded over CPU devices µs/step",
        ]
    lines = _table_lines(head)
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['n_heads']} | failed: {r['error']} |")
            continue
        cells = [
            f"{r['n_heads']:,}",
            _fmt_bytes(r["state_bytes"]),
            f"{r['update_compile_s']:.2f}",
            f"{r['scan_compile_s']:.2f}",
            *_single_step_cells(r),
            _fmt_us(r["scan_per_step_s"]),
            f"{r['scan_steps_per_s']:,.0f}",
            f"{r['scan_steps']:,}",
            f"{r['peak_rss_delta_daemon_mib']:.1f}",
            f"{r['peak_rss_delta_total_mib']:.1f}",
        ]
        if seeds:
            cells += [
                _fmt_us(r["batched_per_step_s"]),
                f"{r['batched_per_step_s'] / r['scan_per_step_s']:.1f}x",
                _fmt_us(r["state_sweep_per_step_s"]),
                f"{_fmt_us(r['sharded_per_step_s'])} ({r['shard_devices']} devices)"
                if "sharded_per_step_s" in r
                else "-",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_horde_table(rows: list[dict]) -> str:
    head = [
        "n_demons",
        "state size",
        "update compile (s)",
        "scan compile (s)",
        *SINGLE_STEP_HEAD,
        "scan µs/step",
        "scan steps/s",
        "core scan µs/step",
        "Horde / core scan",
        "scan stream (steps)",
    ]
    lines = _table_lines(head)
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['n_demons']} | failed: {r['error']} |")
            continue
        cells = [
            f"{r['n_demons']:,}",
            _fmt_bytes(r["state_bytes"]),
            f"{r['update_compile_s']:.2f}",
            f"{r['scan_compile_s']:.2f}",
            *_single_step_cells(r),
            _fmt_us(r["scan_per_step_s"]),
            f"{r['scan_steps_per_s']:,.0f}",
            _fmt_us(r["core_scan_per_step_s"]),
            f"{r['horde_over_core']:.2f}×",
            f"{r['scan_steps']:,}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Driver


def _run_child(table: str, n: int, sync: bool, args, shard_devices: int = 0) -> tuple[dict | None, str]:
    """Runs one (table, size, dispatch mode) in a fresh subprocess; ``(row, error)``. With
    ``shard_devices``, the subprocess sees that many CPU devices and times only the sharded
    seeds loop."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--one",
        str(n),
        "--table",
        table,
        "--repeats",
        str(args.repeats),
    ]
    if args.steps:
        cmd += ["--steps", str(args.steps)]
    if args.seeds and table == "core" and not sync:
        cmd += ["--seeds", str(args.seeds)]
    if sync:
        cmd.append("--sync")
    env = None
    if shard_devices:
        cmd.append("--sharded")
        flags = os.environ.get("XLA_FLAGS", "")
        env = dict(os.environ, XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count={shard_devices}".strip())
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    found = [l for l in proc.stdout.splitlines() if l.startswith(ROW_MARKER)]
    if proc.returncode != 0 or not found:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        mode = "sync" if sync else "default"
        print(f"{table} n={n} ({mode} dispatch): FAILED (rc={proc.returncode}): {err}", file=sys.stderr)
        print(proc.stderr, file=sys.stderr)
        return None, err
    row = json.loads(found[-1][len(ROW_MARKER) :])
    want = "sync" if sync else "async"
    if not shard_devices and row.get("dispatch") not in (want, "unknown"):
        return None, f"dispatch mode is {row.get('dispatch')}, expected {want}"
    return row, ""


def _measure(table: str, n: int, args) -> tuple[dict, bool]:
    key = "n_heads" if table == "core" else "n_demons"
    t0 = time.perf_counter()
    row, err = _run_child(table, n, False, args)
    if row is None:
        return {key: n, "error": err}, True
    srow, serr = _run_child(table, n, True, args)
    failed = srow is None
    if failed:
        row["sync_error"] = serr
    else:
        row["sync_dispatch"] = srow["dispatch"]
        for k, v in srow.items():
            if k.startswith(("update_", "daemon_")) or k == "peak_rss_delta_daemon_mib":
                row["sync_" + k] = v
    devices = usable_cores()
    if table == "core" and args.seeds and devices > 1 and args.seeds % devices == 0:
        shrow, sherr = _run_child(table, n, False, args, shard_devices=devices)
        if shrow is None:
            row["sharded_error"] = sherr
            failed = True
        else:
            row.update({k: v for k, v in shrow.items() if k.startswith("shard")})
    print(f"{table} {key}={n}: done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return row, failed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--heads",
        type=int,
        nargs="+",
        default=list(DEFAULT_HEADS),
        help="n_heads values of the core table and n_demons values of the Horde table",
    )
    p.add_argument(
        "--table",
        choices=("core", "horde", "all"),
        default="all",
        help="which table(s) to run: the bare multi-head core, the HordeLearner, or both (default all)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="scan stream length for every size (default: chosen per size so a timed call takes ~0.75 s)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="also time run_multi_head_learning_loop_batched with K seeds (core table only)",
    )
    p.add_argument("--json", metavar="OUT", default=None, help="write machine info and all rows to this JSON file")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed steady-state scan calls after the compiling one; the fastest is reported (default 3)",
    )
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--sync", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--sharded", action="store_true", help=argparse.SUPPRESS)
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
        if args.table not in TABLES:
            p.error("--one needs --table core or --table horde")
        if args.sync:
            # Must come before any JAX computation: the flag is read when the CPU client is
            # created. (The JAX_CPU_ENABLE_ASYNC_DISPATCH environment variable is NOT read by
            # jax 0.10.2, whose flag is a plain config flag without an environment default.)
            import jax

            jax.config.update(ASYNC_FLAG, False)
        if args.sharded:
            row = bench_sharded_seeds_one(args.one, args.steps, args.seeds, args.repeats)
        elif args.table == "core":
            row = bench_core_one(args.one, args.steps, args.seeds, args.repeats, sync=args.sync)
        else:
            row = bench_horde_one(args.one, args.steps, args.repeats, sync=args.sync)
        print(ROW_MARKER + json.dumps(row), flush=True)
        return 0

    tables = TABLES if args.table == "all" else (args.table,)
    if args.seeds and "core" not in tables:
        print("note: --seeds only applies to the core table; ignored", file=sys.stderr)
    info = machine_info()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results: dict[str, list[dict]] = {t: [] for t in tables}
    failed = False
    t_start = time.perf_counter()
    for table in tables:
        for n in args.heads:
            row, bad = _measure(table, n, args)
            results[table].append(row)
            failed |= bad

    print(
        f"Machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable); "
        f"Python {info['python']}, jax {info['jax']} (jaxlib {info['jaxlib']}), "
        f"backend {info['backend']} ({info['device']})"
    )
    if load_before is not None:
        print(f"Load average (1 min) before the run: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")
    print(
        f"Common set-up: trunk {HIDDEN_SIZES}, {FEATURE_DIM} inputs, LMS({STEP_SIZE}) + ObGDBounding(); "
        f"one fresh process per size and dispatch mode (single-step 'sync dispatch' column: "
        f"{ASYNC_FLAG}=False); total {time.perf_counter() - t_start:.0f} s"
    )
    if "core" in tables:
        print()
        print(
            f"Core (MultiHeadMLPLearner.update / run_multi_head_learning_loop), "
            f"~{INACTIVE_FRACTION:.0%} NaN (inactive) targets:"
        )
        print()
        print(render_table(results["core"], args.seeds))
    if "horde" in tables:
        print()
        print(
            f"Horde (HordeLearner.update_from_transition / run_horde_learning_loop), demons = "
            f"nexting({FEATURE_DIM}, timescales=1..ceil(n/{FEATURE_DIM})) trimmed to n_demons, λ = 0; "
            f"random transitions ({N_ACTIONS} actions, ~{TERMINATED_FRACTION:.0%} terminated, "
            f"behaviour prob {BEHAVIOUR_PROB}); core scan = bare core, same size, all targets active, "
            f"same process:"
        )
        print()
        print(render_horde_table(results["horde"]))
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
                        "horde_terminated_fraction": TERMINATED_FRACTION,
                        "horde_behaviour_prob": BEHAVIOUR_PROB,
                        "horde_n_actions": N_ACTIONS,
                        "tables": list(tables),
                        "steps": args.steps,
                        "seeds": args.seeds,
                        "repeats": args.repeats,
                    },
                    "rows": results.get("core", []),
                    "horde_rows": results.get("horde", []),
                },
                f,
                indent=2,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
