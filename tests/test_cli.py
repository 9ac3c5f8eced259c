"""The ``horde`` command, end to end in subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import horde

TINY = """
[env]
id = "CartPole-v1"

[run]
steps = 300
seed = 1
chunk_size = 128

[learner]
hidden_sizes = [8]
step_size = 0.001
diagnostics = true

[nexting]
observation_dim = 4
timescales = [1, 10]

[[demons]]
name = "steps_to_fall"
cumulant = { kind = "constant", value = 1.0 }
discount = { kind = "until", index = 2, threshold = 0.2095, absolute = true }
"""


def _horde(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "horde.cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "tiny.toml").write_text(TINY)
    proc = _horde("run", "tiny.toml", "--out", "out", "--no-progress", cwd=root)
    return root, proc


def test_run_writes_everything_and_prints_the_summary(tiny_run):
    root, proc = tiny_run
    assert proc.returncode == 0, proc.stderr
    assert "Per-demon summary" in proc.stdout
    for name in ("steps_to_fall", "obs[0]@1", "obs[3]@10"):
        assert any(line.startswith(name) for line in proc.stdout.splitlines()), name
    out = root / "out"
    for f in (
        "metrics.npz",
        "run.json",
        "config.json",
        "checkpoint.npz",
        "learning_curves.png",
        "normalized_rmse.png",
        "prediction_vs_return.png",
        "diagnostics.png",
    ):
        assert (out / f).stat().st_size > 0, f
    result = horde.RunResult.load(out)
    assert result.predictions.shape == (1, 300, 9)
    learner, state, meta = horde.load_checkpoint(out / "checkpoint.npz")
    assert meta["step"] == 300 and learner.names == result.demon_names
    assert json.loads((out / "config.json").read_text())["run"]["steps"] == 300


def test_plot_redraws_a_saved_run(tiny_run):
    root, _ = tiny_run
    (root / "out" / "learning_curves.png").unlink()
    proc = _horde("plot", "out", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert (root / "out" / "learning_curves.png").stat().st_size > 0


def test_resume_continues_the_saved_run_bit_for_bit(tiny_run):
    root, _ = tiny_run
    (root / "longer.toml").write_text(TINY.replace("steps = 300", "steps = 350"))
    full = _horde("run", "longer.toml", "--out", "full", "--no-progress", cwd=root)
    assert full.returncode == 0, full.stderr
    proc = _horde("run", "--resume", "out", "--steps", "50", "--out", "resumed", "--no-progress", cwd=root)
    assert proc.returncode == 0, proc.stderr
    _, after, meta = horde.load_checkpoint(root / "resumed" / "checkpoint.npz")
    _, uninterrupted, _ = horde.load_checkpoint(root / "full" / "checkpoint.npz")
    assert meta["step"] == 350
    for a, b in zip(jax.tree_util.tree_leaves(after), jax.tree_util.tree_leaves(uninterrupted)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    joined, whole = horde.RunResult.load(root / "resumed"), horde.RunResult.load(root / "full")
    np.testing.assert_array_equal(joined.steps, np.arange(350))  # the first 300 steps kept
    np.testing.assert_array_equal(joined.predictions, whole.predictions)


def test_resume_refuses_to_change_the_run(tiny_run):
    root, _ = tiny_run
    proc = _horde("run", "--resume", "out", "--seed", "5", "--no-progress", cwd=root)
    assert proc.returncode == 2 and "--seed cannot change them" in proc.stderr
    proc = _horde("run", "--resume", "out", "--no-progress", cwd=root)  # all 300 steps done
    assert proc.returncode == 2 and "give --steps N" in proc.stderr


def test_demons_lists_the_declared_demons(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    proc = _horde("demons", "tiny.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "steps_to_fall" in proc.stdout and "state-dependent" in proc.stdout
    assert "9 demons" in proc.stdout


@pytest.mark.parametrize(
    "text, message",
    [
        (TINY.replace("steps = 300", 'steps = "many"'), "config key run.steps must be an integer >= 1, got 'many'"),
        (TINY.replace("[learner]", "[lerner]"), "unknown section 'lerner'"),
        (TINY.replace("hidden_sizes = [8]", "hidden_size = [8]"), "learner.hidden_size is not a learner setting"),
        (
            TINY.replace('kind = "constant", value = 1.0', 'kind = "konstant", value = 1.0'),
            "unknown cumulant kind 'konstant'",
        ),
        (
            TINY + '\n[policy]\nkind = "greedy"\n',
            "config key policy.kind must be 'uniform', 'fixed' or 'epsilon_greedy', got 'greedy'",
        ),
        ("[env\n", "is not valid TOML"),
        (TINY.replace("observation_dim = 4", "observation_dim = 6"), "config does not fit environment CartPole-v1"),
        (
            TINY + '\n[policy]\nkind = "fixed"\nprobabilities = [0.2, 0.3, 0.5]\n',
            "FixedProbabilities has 3 probabilities",
        ),
    ],
)
def test_bad_config_exits_2_with_a_message_naming_the_key(tmp_path, text, message):
    (tmp_path / "bad.toml").write_text(text)
    proc = _horde("run", "bad.toml", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr, proc.stderr


def test_help_explains_every_option(tmp_path):
    proc = _horde("run", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    for option in ("--env", "--steps", "--seeds", "--out", "--resume", "--checkpoint-every"):
        assert option in proc.stdout


def test_multi_seed_run_from_the_command_line(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY.replace("steps = 300", "steps = 100"))
    proc = _horde("run", "tiny.toml", "--seeds", "2", "--out", "two", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = horde.RunResult.load(tmp_path / "two")
    assert result.n_seeds == 2
    assert np.isfinite(result.predictions[result.valid]).all()
    # Copy i is seed 1 + i: its real transitions are those of a single run with that seed (the
    # vector env adds an autoreset step after each episode, which records nothing).
    for i in range(2):
        proc = _horde("run", "tiny.toml", "--seed", str(1 + i), "--out", f"one{i}", "--no-progress", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        single = horde.RunResult.load(tmp_path / f"one{i}")
        real = result.valid[i]
        n = int(real.sum())
        assert 50 < n < 100  # CartPole episodes under a random policy end within 100 steps
        for name in ("predictions", "td_errors", "cumulants", "discounts"):
            np.testing.assert_allclose(
                getattr(result, name)[i][real], getattr(single, name)[0, :n], rtol=1e-5, atol=1e-6, err_msg=name
            )
        for name in ("rewards", "terminated", "truncated"):
            np.testing.assert_array_equal(getattr(result, name)[i][real], getattr(single, name)[0, :n], err_msg=name)


def test_checkpoint_every_writes_checkpoints_a_run_resumes_from(tmp_path, monkeypatch, capsys):
    """--checkpoint-every 100 on a 300-step run: checkpoints at steps 100, 200 and 300; the
    one at step 100, resumed, continues the run bit for bit."""
    from horde.cli import main, run_command

    (tmp_path / "tiny.toml").write_text(TINY.replace("chunk_size = 128", "chunk_size = 50"))
    written = []
    save = run_command.save_checkpoint

    def keep_every_checkpoint(path, learner, state, metadata):
        out = save(path, learner, state, metadata)
        written.append((metadata["step"], shutil.copy(out, tmp_path / f"written-{len(written)}.npz")))
        return out

    monkeypatch.setattr(run_command, "save_checkpoint", keep_every_checkpoint)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "tiny.toml", "--out", "every", "--checkpoint-every", "100", "--no-progress"]) == 0
    steps = [step for step, _ in written]
    assert sorted(set(steps)) == [100, 200, 300] and steps[-1] == 300
    for step, path in written:
        assert horde.load_checkpoint(path)[2]["step"] == step

    # Resume from the intermediate checkpoint at step 100 (the directory holds no results).
    mid = tmp_path / "mid"
    mid.mkdir()
    shutil.copy(tmp_path / "every" / "config.json", mid / "config.json")
    shutil.copy(written[steps.index(100)][1], mid / "checkpoint.npz")
    assert main(["run", "--resume", "mid", "--out", "resumed", "--no-progress"]) == 0
    whole, rest = horde.RunResult.load(tmp_path / "every"), horde.RunResult.load(tmp_path / "resumed")
    np.testing.assert_array_equal(rest.steps, np.arange(100, 300))
    np.testing.assert_array_equal(rest.predictions, whole.predictions[:, 100:])
    _, after, meta = horde.load_checkpoint(tmp_path / "resumed" / "checkpoint.npz")
    _, uninterrupted, _ = horde.load_checkpoint(tmp_path / "every" / "checkpoint.npz")
    assert meta["step"] == 300
    for a, b in zip(jax.tree_util.tree_leaves(after), jax.tree_util.tree_leaves(uninterrupted)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
