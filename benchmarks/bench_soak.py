#!/usr/bin/env python3
"""A long run's throughput over time, and what streaming its records to disk costs.

Usage::

    python benchmarks/bench_soak.py                          # 1,000,000 steps, 256 demons (the slow soak test's run)
    python benchmarks/bench_soak.py --steps 200000           # shorter
    python benchmarks/bench_soak.py --record-to /tmp/soak    # the same run streaming its records (records.zarr)
    python benchmarks/bench_soak.py --no-fsync --record-to /tmp/soak   # ... without flushing each chunk to disk

Set-up (as ``tests/test_soak.py``): CartPole-v1, ``demons.nexting(4, timescales=1..63)[:252]``
plus 4 reward demons (256), trunk (128, 128), ``step_size=1.0`` with ``ObGDBounding`` and a
Welford normaliser, chunks of 4096 steps, one record every 1000 steps.

The table gives the median steps/s over the chunks of each tenth of the run (the first chunk,
which compiles, left out) and the resident set size at the end of each tenth. A run that slows
down or leaks shows it as a falling rate or a growing size from one tenth to the next. The
slow soak test asserts the memory and the records; this script is where the rate is read (a
test never asserts a timing: the machine's load decides it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_info  # noqa: E402


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--chunk-size", type=int, default=4096)
    p.add_argument("--record-every", type=int, default=1000)
    p.add_argument("--record-to", help="stream the records to this run directory")
    p.add_argument("--no-fsync", action="store_true", help="with --record-to: do not flush each chunk to disk")
    args = p.parse_args()

    import demons
    import horde
    import horde.runs.recording as recording

    if args.no_fsync:
        make = recording.RecordWriter
        recording.RecordWriter = lambda *a, **k: make(*a, **{**k, "fsync": False})  # type: ignore[misc]

    demon_set = demons.nexting(4, timescales=tuple(range(1, 64)), lamda=0.0)[:252] + demons.reward_demons(
        timescales=(1, 10, 100, 1000)
    )
    learner = horde.HordeLearner(
        demon_set,
        hidden_sizes=(128, 128),
        step_size=1.0,
        bounder=horde.ObGDBounding(),
        normalizer=horde.WelfordNormalizer(),
    )
    marks: list[tuple[int, float, int]] = []
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    horde.run(
        learner,
        "CartPole-v1",
        steps=args.steps,
        seed=0,
        record_every=args.record_every,
        chunk_size=args.chunk_size,
        progress=False,
        callback=lambda step, state: marks.append((step, time.perf_counter(), _rss_bytes())),
        record_to=args.record_to,
    )
    wall = time.perf_counter() - start
    import numpy as np

    steps_at, times, rss = (np.array(x) for x in zip(*marks))
    rates = np.diff(steps_at) / np.diff(times)  # rate of chunk k+1 (chunk 0, compiling, left out)
    info = machine_info()
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"machine: {info['cpu']}, {info['usable_cores']} usable cores, Python {info['python']}, jax {info['jax']} "
        f"({info['backend']}); load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    print(f"{args.steps:,} steps in {wall:.1f} s ({args.steps / wall:,.0f} steps/s overall, compile included)")
    print()
    print("| tenth | steps | median steps/s | RSS at its end (MiB) |")
    print("|---:|---:|---:|---:|")
    bounds = np.linspace(0, len(rates), 11).astype(int)
    for i in range(10):
        part = rates[bounds[i] : bounds[i + 1]]
        end = min(bounds[i + 1], len(rss) - 1)
        median = f"{np.median(part):,.0f}" if part.size else "-"
        print(f"| {i + 1} | {int(steps_at[end]):,} | {median} | {rss[end] / 2**20:,.0f} |")
    first, last = rates[: max(1, len(rates) // 10)], rates[-max(1, len(rates) // 10) :]
    print(f"\nlast tenth / first tenth median rate: {np.median(last) / np.median(first):.2f}")


if __name__ == "__main__":
    main()
