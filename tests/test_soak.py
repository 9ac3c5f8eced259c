"""Soak test: a long run stays sane. Marked slow (excluded by default); run it with

python3 -m pytest -m slow tests/test_soak.py
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import demons
import horde


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
def test_million_steps_256_demons_cartpole_stays_finite_flat_and_fast():
    steps, record_every, chunk = 1_000_000, 1000, 4096
    demon_set = demons.nexting(4, timescales=tuple(range(1, 64)), lamda=0.0)[:252] + demons.reward_demons(
        timescales=(1, 10, 100, 1000)
    )
    assert len(demon_set) == 256
    learner = horde.HordeLearner(
        demon_set,
        hidden_sizes=(128, 128),
        step_size=1.0,
        bounder=horde.ObGDBounding(),
        normalizer=horde.WelfordNormalizer(),
    )
    marks: list[tuple[int, float, int]] = []

    def callback(step, state):
        marks.append((step, time.perf_counter(), _rss_bytes()))

    result = horde.run(
        learner,
        "CartPole-v1",
        steps=steps,
        seed=0,
        record_every=record_every,
        chunk_size=chunk,
        progress=False,
        callback=callback,
    )
    # No NaN anywhere.
    assert np.isfinite(result.predictions).all()
    # The recorded log is bounded by its interval.
    assert result.predictions.shape == (1, steps // record_every, 256)
    steps_at, times, rss = (np.array(x) for x in zip(*marks))
    n = len(marks)
    tenth = max(2, n // 10)
    # Median rate over the chunks of each tenth, so that a stall of the shared machine in one
    # chunk does not decide the comparison; a real slow-down shifts every chunk.
    rates = np.diff(steps_at) / np.diff(times)
    rate_first = float(np.median(rates[1:tenth]))  # skip the compiling first chunk
    rate_last = float(np.median(rates[-tenth:]))
    assert rate_last > 0.8 * rate_first, (rate_first, rate_last)
    # Memory flat: the resident size grows by less than 50 MiB from the first tenth to the end.
    assert rss[-1] - rss[tenth] < 50 * 2**20, (rss[tenth], rss[-1])
