"""Soak test: a long run stays sane. Marked slow (excluded by default); run it with

python3 -m pytest -m slow tests/test_soak.py

Its throughput over time is measured by ``benchmarks/bench_soak.py`` (the same run), not
asserted here: the machine's load decides a timing.
"""

from __future__ import annotations

import numpy as np
import pytest

import demons
import horde


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
def test_million_steps_256_demons_cartpole_stays_finite_and_flat_in_memory():
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
    marks: list[tuple[int, int]] = []

    def callback(step, state):
        marks.append((step, _rss_bytes()))

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
    steps_at, rss = (np.array(x) for x in zip(*marks))
    assert steps_at[-1] == steps and (np.diff(steps_at) > 0).all()  # every chunk reported, in order
    n = len(marks)
    tenth = max(2, n // 10)
    # Memory flat: the resident size grows by less than 50 MiB from the first tenth to the end.
    assert rss[-1] - rss[tenth] < 50 * 2**20, (rss[tenth], rss[-1])
