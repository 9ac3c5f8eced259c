"""Records that survive the run, a run's identity on resume, and states that must fit their
learner: each fault tried here is named in its test, with the records or the message it must
leave."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import gymnasium as gym
import jax
import numpy as np
import pytest
import zarr

import demons
import horde
from horde.cli.main import main
from horde.runs import RecordWriter, read_records

NEXTING = demons.nexting(4, timescales=(1, 10), lamda=0.5) + demons.reward_demons(timescales=(1, 10))
RECORDED = (
    "steps", "predictions", "td_errors", "cumulants", "discounts", "rewards", "terminated", "truncated", "valid",
    "episode_seed", "episode_end_step", "episode_return", "episode_length", "rupee", "ude",
)  # fmt: skip

TINY = """
[env]
id = "CartPole-v1"

[run]
steps = 600
seed = 1
chunk_size = 50

[learner]
hidden_sizes = [8]
step_size = 0.001
diagnostics = true

[nexting]
observation_dim = 4
timescales = [1, 10]
"""


def _learner(**kw):
    kw.setdefault("hidden_sizes", (8,))
    kw.setdefault("step_size", 0.01)
    return horde.HordeLearner(NEXTING, diagnostics=True, **kw)


def _same_records(a, b, upto=None):
    """``a``'s records are ``b``'s (its first ``upto`` steps, with the episodes that ended
    within them, where given; one record per step from step 0)."""
    ended = slice(None) if upto is None else b.episode_end_step < upto
    for name in RECORDED:
        x, y = getattr(a, name), getattr(b, name)
        if y is None:
            assert x is None, name
            continue
        if name.startswith("episode_"):
            y = y[ended]
        elif upto is not None:
            y = y[:upto] if name == "steps" else y[:, :upto]
        np.testing.assert_array_equal(x, y, err_msg=name)


def _load_partial(path):
    with pytest.warns(UserWarning, match="partial run"):
        return horde.RunResult.load(path)


# ---------------------------------------------------------------------------------------------
# Streamed records


@pytest.mark.parametrize("vector", [False, True])
def test_streamed_records_are_the_returned_records_and_open_with_plain_zarr(tmp_path, vector):
    env = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync") if vector else "CartPole-v1"
    result = horde.run(_learner(), env, steps=300, seed=3, chunk_size=64, progress=False, record_to=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete run loads without a warning
        loaded = horde.RunResult.load(tmp_path)
    assert not loaded.partial and loaded.total_steps == 300 and loaded.config == result.config
    _same_records(loaded, result)
    # Without horde: a Zarr group whose arrays are cut to the committed counts.
    group = zarr.open_group(tmp_path / "records.zarr", mode="r")
    meta = group.attrs["horde"]
    assert meta["complete"] and meta["n_records"] == 300 and meta["demon_names"] == list(result.demon_names)
    np.testing.assert_array_equal(group["predictions"][:, : meta["n_records"]], result.predictions)
    assert group["predictions"].metadata.dimension_names == ("seed", "record", "demon")
    np.testing.assert_array_equal(group["episode_end_step"][: meta["n_episodes"]], result.episode_end_step)


def test_records_open_in_xarray(tmp_path):
    xr = pytest.importorskip("xarray")
    result = horde.run(_learner(), "CartPole-v1", steps=100, seed=0, chunk_size=64, progress=False, record_to=tmp_path)
    ds = xr.open_zarr(tmp_path / "records.zarr", consolidated=False)
    np.testing.assert_array_equal(ds["predictions"].values, result.predictions)


def test_save_then_load_round_trips_and_the_earlier_format_still_loads(tmp_path):
    result = horde.run(_learner(), "CartPole-v1", steps=120, seed=4, record_every=3, progress=False)
    result.save(tmp_path / "new")
    _same_records(horde.RunResult.load(tmp_path / "new"), result)
    # The earlier format, written as it was: metrics.npz (no pickle) and run.json.
    old = tmp_path / "old"
    old.mkdir()
    arrays = {name: getattr(result, name) for name in RECORDED}
    np.savez_compressed(old / "metrics.npz", **arrays)
    meta = {
        "format_version": 1,
        "demon_names": list(result.demon_names),
        "wall_time": result.wall_time,
        "total_steps": 120,
        "record_every": 3,
        "config": result.config,
        "demons": [d._asdict() for d in result.demons],
    }
    (old / "run.json").write_text(json.dumps(meta))
    loaded = horde.RunResult.load(old)
    _same_records(loaded, result)
    assert loaded.demons == result.demons and not loaded.partial


_KILLED_APPEND = """
import os, sys
import numpy as np
from horde.runs import RecordWriter

path = sys.argv[1]
w = RecordWriter(path, demon_names=("a", "b"), demons=[], record_every=1, n_seeds=1, diagnostics=False,
                 config={}, rows_per_chunk=3)
def rows(i):
    return {"steps": np.arange(5) + 5 * i, "predictions": np.full((1, 5, 2), i, np.float32),
            "td_errors": np.zeros((1, 5, 2), np.float32), "cumulants": np.zeros((1, 5, 2), np.float32),
            "discounts": np.zeros((1, 5, 2), np.float32), "rewards": np.ones((1, 5), np.float32),
            "terminated": np.zeros((1, 5), bool), "truncated": np.zeros((1, 5), bool), "valid": np.ones((1, 5), bool)}
for i in range(2):
    w.append(rows(i), {}, 5 * (i + 1), 0.0)
w.wait()
# The third chunk's arrays are written, then the process dies before its commit.
w._commit = lambda: os._exit(9)
w.append(rows(2), {}, 15, 0.0)
w.wait()
"""


def test_a_process_killed_between_writing_a_chunk_and_committing_it_keeps_the_chunks_before(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _KILLED_APPEND, str(tmp_path)], capture_output=True, timeout=300)
    assert proc.returncode == 9, proc.stderr
    assert zarr.open_array(tmp_path / "records.zarr" / "predictions").shape == (1, 15, 2)  # written, not committed
    meta, arrays = read_records(tmp_path)
    assert meta["n_records"] == 10 and meta["total_steps"] == 10 and not meta["complete"]
    np.testing.assert_array_equal(arrays["steps"], np.arange(10))
    np.testing.assert_array_equal(arrays["predictions"][0, :, 0], np.repeat([0.0, 1.0], 5))
    # Appending again (a resumed run from step 10) cuts the uncommitted rows off first.
    w = RecordWriter(
        tmp_path, demon_names=("a", "b"), demons=[], record_every=1, n_seeds=1, diagnostics=False, config={},
        first_step=10,
    )  # fmt: skip
    w.close(complete=False)
    assert zarr.open_array(tmp_path / "records.zarr" / "predictions").shape == (1, 10, 2)


def test_records_of_another_run_are_never_appended_to(tmp_path):
    horde.run(_learner(), "CartPole-v1", steps=60, seed=0, chunk_size=30, progress=False, record_to=tmp_path)
    other = horde.HordeLearner(demons.reward_demons(timescales=(1,)), hidden_sizes=(8,))
    with pytest.raises(horde.RecordsError, match="another run.*demon_names"):
        horde.run(other, "CartPole-v1", steps=60, seed=0, progress=False, record_to=tmp_path)
    with pytest.raises(horde.RecordsError, match="another run.*record_every: stored 1, this run 2"):
        horde.run(_learner(), "CartPole-v1", steps=60, record_every=2, progress=False, record_to=tmp_path)
    with pytest.raises(horde.RecordsError, match="end at step 60, before this run's first step 100"):
        horde.run(_learner(), "CartPole-v1", steps=60, start_step=100, progress=False, record_to=tmp_path)
    assert horde.RunResult.load(tmp_path).total_steps == 60  # untouched


# ---------------------------------------------------------------------------------------------
# An environment that raises mid-run


class _Raising(gym.Wrapper):
    """CartPole whose ``step`` raises at global step ``at`` (counted over resets)."""

    def __init__(self, at: int):
        super().__init__(gym.make("CartPole-v1"))
        self.at, self.t = at, 0

    def step(self, action):
        if self.t == self.at:
            raise RuntimeError("sensor cable unplugged")
        self.t += 1
        return self.env.step(action)


def test_an_environment_that_raises_stops_the_run_naming_the_step_and_keeps_the_records(tmp_path):
    learner = _learner()
    whole = horde.run(learner, "CartPole-v1", steps=400, seed=5, chunk_size=100, progress=False)
    with pytest.raises(horde.RunError, match=r"raised RuntimeError at step 237: sensor cable unplugged") as info:
        horde.run(learner, _Raising(237), steps=400, seed=5, chunk_size=100, progress=False, record_to=tmp_path)
    err = info.value
    assert err.step == 237 and isinstance(err.__cause__, RuntimeError)
    # The last chunk learned in full ends at step 200: records and state up to there.
    assert err.result.total_steps == 200
    _same_records(err.result, whole, upto=200)
    on_disk = _load_partial(tmp_path)
    assert on_disk.total_steps == 200
    _same_records(on_disk, whole, upto=200)
    assert read_records(tmp_path)[0]["stopped"].startswith("the environment raised RuntimeError at step 237")
    # The state kept is the one after step 200 of the uninterrupted run.
    first = horde.run(learner, "CartPole-v1", steps=200, seed=5, chunk_size=100, progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(err.result.state), jax.tree_util.tree_leaves(first.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_failing_callback_stops_the_run_with_its_records(tmp_path):
    def callback(step, state):
        if step >= 100:
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(horde.RunError, match=r"callback raised OSError after step 100.*No space left") as info:
        horde.run(
            _learner(), "CartPole-v1", steps=300, chunk_size=50, progress=False, callback=callback, record_to=tmp_path
        )
    assert info.value.result.total_steps == 100 and _load_partial(tmp_path).total_steps == 100


# ---------------------------------------------------------------------------------------------
# The command line: faults end with a paragraph, the records and a checkpoint of the last good state


@pytest.fixture
def cli_dir(tmp_path, monkeypatch):
    (tmp_path / "tiny.toml").write_text(TINY)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _checkpoint_step(path):
    return horde.load_checkpoint(path)[2]["step"]


def test_cli_environment_error_exits_4_with_a_paragraph_records_and_the_last_good_checkpoint(cli_dir, capsys):
    gym.register("horde-test/Raising-v0", entry_point=lambda: _Raising(237))
    try:
        (cli_dir / "raising.toml").write_text(TINY.replace('"CartPole-v1"', '"horde-test/Raising-v0"'))
        assert main(["run", "raising.toml", "--out", "r", "--no-progress"]) == 4
    finally:
        gym.registry.pop("horde-test/Raising-v0")
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "raised RuntimeError at step 237: sensor cable unplugged" in err and "up to step 200" in err
    assert _checkpoint_step(cli_dir / "r" / "checkpoint.npz") == 200 and "checkpoint.npz" in err
    assert _load_partial(cli_dir / "r").total_steps == 200


def test_cli_divergence_without_periodic_checkpoints_still_writes_the_last_good_state(cli_dir, capsys):
    (cli_dir / "wild.toml").write_text(TINY.replace("step_size = 0.001", "step_size = 1e6"))
    assert main(["run", "wild.toml", "--out", "w", "--checkpoint-every", "0", "--no-progress"]) == 3
    err = capsys.readouterr().err
    step = _checkpoint_step(cli_dir / "w" / "checkpoint.npz")
    assert f"the last good state (step {step}) is in w/checkpoint.npz" in err
    _, state, _ = horde.load_checkpoint(cli_dir / "w" / "checkpoint.npz")
    assert all(
        np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(state) if np.asarray(x).dtype.kind == "f"
    )
    assert _load_partial(cli_dir / "w").total_steps == step


@pytest.mark.parametrize("fault", ["directory", "disk-full"])
def test_cli_failing_checkpoint_write_is_a_clear_error_that_keeps_the_records(cli_dir, capsys, monkeypatch, fault):
    from horde.cli import run_command

    (cli_dir / "o").mkdir()
    if fault == "directory":
        (cli_dir / "o" / "checkpoint.npz").mkdir()  # a directory where the file should be
        expected = "IsADirectoryError"
    else:

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(run_command, "save_checkpoint", full)
        expected = "No space left on device"
    assert main(["run", "tiny.toml", "--out", "o", "--checkpoint-every", "100", "--no-progress"]) == 4
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "writing the checkpoint o/checkpoint.npz after step 100 failed" in err and expected in err
    assert "could not be checkpointed" in err  # never names a checkpoint that does not exist
    assert _load_partial(cli_dir / "o").total_steps == 100


# ---------------------------------------------------------------------------------------------
# Resume: appends, never overwrites; refuses another run


def _horde(*args, cwd):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.Popen(
        [sys.executable, "-m", "horde.cli.main", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow  # three killed CLI processes and their resumes: ~40 s on two cores
def test_sigkill_at_random_moments_keeps_the_records_of_the_last_committed_chunk_and_resume_appends(cli_dir):
    """A CLI run is SIGKILLed at three seeded random moments after its first chunk is on disk;
    each time the records load (partial) and equal the uninterrupted run's first rows, and
    resuming the killed run from its checkpoint appends the rest: the whole run, bit for bit."""
    text = TINY.replace("steps = 600", "steps = 3000")
    (cli_dir / "long.toml").write_text(text)
    assert main(["run", "long.toml", "--out", "whole", "--no-progress", "--checkpoint-every", "500"]) == 0
    whole = horde.RunResult.load(cli_dir / "whole")
    rng = np.random.default_rng(15)
    kills = []
    for k in range(3):
        out = f"killed{k}"
        proc = _horde("run", "long.toml", "--out", out, "--no-progress", "--checkpoint-every", "500", cwd=cli_dir)
        try:
            marker = cli_dir / out / "records.zarr" / "zarr.json"
            for _ in range(3000):  # a guard against a hang, not a measurement
                if proc.poll() is not None:
                    break
                if marker.exists() and json.loads(marker.read_text())["attributes"].get("horde", {}).get(
                    "n_records", 0
                ):
                    break
                time.sleep(0.05)
            time.sleep(float(rng.uniform(0.0, 1.5)))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        if proc.returncode == 0:
            continue  # finished before the kill: nothing to check
        assert proc.returncode == -signal.SIGKILL
        kept = _load_partial(cli_dir / out)
        kills.append(kept.total_steps)
        last_killed = cli_dir / out
        assert kept.total_steps % 50 == 0 and 0 < kept.total_steps < 3000  # whole chunks only
        _same_records(kept, whole, upto=kept.total_steps)
        np.testing.assert_array_equal(
            kept.episode_end_step, whole.episode_end_step[whole.episode_end_step < kept.total_steps]
        )
    assert kills, "every run finished before its kill"
    # Resume the last killed run where its checkpoint left it: records after the checkpoint are
    # recorded again, the earlier ones kept; the result is the whole run.
    out = last_killed  # not killed{len(kills) - 1}: a run that finished before its kill is skipped
    if (out / "checkpoint.npz").exists():
        assert main(["run", "--resume", str(out), "--no-progress"]) == 0
        resumed = horde.RunResult.load(out)
        _same_records(resumed, whole)


def test_resume_appends_to_the_records_never_overwrites_them(cli_dir):
    assert main(["run", "tiny.toml", "--out", "a", "--no-progress"]) == 0
    first = horde.RunResult.load(cli_dir / "a")
    assert main(["run", "--resume", "a", "--steps", "200", "--no-progress"]) == 0
    after = horde.RunResult.load(cli_dir / "a")
    np.testing.assert_array_equal(after.steps, np.arange(800))
    _same_records(first, after, upto=600)
    (cli_dir / "longer.toml").write_text(TINY.replace("steps = 600", "steps = 800"))
    assert main(["run", "longer.toml", "--out", "b", "--no-progress"]) == 0
    _same_records(after, horde.RunResult.load(cli_dir / "b"))


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda c: c["env"].update(id="Acrobot-v1"), "env.id: 'CartPole-v1' in the checkpoint, 'Acrobot-v1'"),
        (lambda c: c["run"].update(seed=2), "run.seed: 1 in the checkpoint, 2 in the config"),
        (lambda c: c.update(policy={"kind": "fixed", "probabilities": [0.9, 0.1]}), "policy: {'kind': 'uniform'}"),
        (lambda c: c["learner"].update(step_size=0.5), "learner.step_size: 0.001 in the checkpoint, 0.5"),
        (lambda c: c["nexting"].update(timescales=[1, 20]), "demons: removed ['obs[0]@10'"),
        (lambda c: c["run"].update(record_every=2), "run.record_every: 1 in the checkpoint, 2"),
    ],
    ids=["env", "seed", "policy", "learner", "demons", "record_every"],
)
def test_resume_refuses_a_config_that_no_longer_describes_the_run(cli_dir, capsys, edit, named):
    assert main(["run", "tiny.toml", "--out", "a", "--no-progress"]) == 0
    config_file = cli_dir / "a" / "config.json"
    config = json.loads(config_file.read_text())
    edit(config)
    config_file.write_text(json.dumps(config))
    before = (cli_dir / "a" / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert main(["run", "--resume", "a", "--steps", "50", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no longer describes the run its checkpoint holds" in err and named in err
    assert (cli_dir / "a" / "checkpoint.npz").read_bytes() == before  # nothing advanced
    assert json.loads(config_file.read_text()) == config  # nor rewritten
    assert horde.RunResult.load(cli_dir / "a").total_steps == 600


# ---------------------------------------------------------------------------------------------
# A state must fit its learner


def _other_learners():
    base = dict(hidden_sizes=(8,), step_size=0.01)
    no_traces = demons.nexting(4, timescales=(1, 10), lamda=0.0) + demons.reward_demons(timescales=(1, 10), lamda=0.0)
    return {
        "trunk": (horde.HordeLearner(NEXTING, **{**base, "hidden_sizes": (16,)}), 4, r"trunk has hidden sizes \(16,\), this learner \(8,\)"),
        "observation size": (horde.HordeLearner(NEXTING, **base), 6, "made for observations of size 6, here they have size 4"),
        "demon count": (horde.HordeLearner(NEXTING[:3], **base), 4, "state has 3 heads but the learner has n_heads=10"),
        "trace layout": (horde.HordeLearner(no_traces, **base), 4, "traces"),
    }  # fmt: skip


@pytest.mark.parametrize("kind", ["trunk", "observation size", "demon count", "trace layout"])
def test_a_state_of_another_learner_is_refused_everywhere_naming_what_differs(tmp_path, kind):
    learner = horde.HordeLearner(NEXTING, hidden_sizes=(8,), step_size=0.01)
    other, dim, named = _other_learners()[kind]
    state = other.init(dim, jax.random.key(0))
    x = np.zeros(4, np.float32)
    calls = {
        "update": lambda: learner.update(state, x, np.zeros(10), x),
        "update_from_transition": lambda: learner.update_from_transition(state, x, 0, 1.0, x),
        "run": lambda: horde.run(learner, "CartPole-v1", steps=10, state=state, progress=False),
        "Daemon": lambda: horde.Daemon(learner, state),
        "save_checkpoint": lambda: horde.save_checkpoint(tmp_path / "ck", learner, state),
    }
    expected = dict.fromkeys(calls, named)
    if kind == "observation size":
        # A state made for 6 observations is one this learner makes (its demons read 4 of
        # them): only a place that gives 4 observations refuses it.
        for where in ("Daemon", "save_checkpoint"):
            calls.pop(where)
        expected.update(update="observation must have shape", update_from_transition="observation must have shape")
    for where, call in calls.items():
        with pytest.raises(ValueError, match=expected[where]):
            call()
    assert not (tmp_path / "ck.npz").exists()


def test_a_vector_run_refuses_a_batched_state_of_another_learner():
    learner = horde.HordeLearner(NEXTING, hidden_sizes=(8,), step_size=0.01)
    other = horde.HordeLearner(NEXTING, hidden_sizes=(16,), step_size=0.01)
    states = jax.vmap(lambda k: other.init_traced(4, k))(jax.random.split(jax.random.key(0), 2))
    env = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    with pytest.raises(ValueError, match=r"trunk has hidden sizes \(16,\), this learner \(8,\)"):
        horde.run(learner, env, steps=10, state=states, progress=False)


def test_a_state_with_one_array_of_another_dtype_or_shape_is_refused_by_path():
    learner = horde.HordeLearner(NEXTING, hidden_sizes=(8,), step_size=0.01, diagnostics=True)
    state = learner.init(4, jax.random.key(0))
    bad = state._replace(discounts=np.asarray(state.discounts, np.float64))
    with pytest.raises(ValueError, match="discounts has dtype float64, expected float32"):
        learner.update(bad, np.zeros(4), np.zeros(10), np.zeros(4))
    leaves, treedef = jax.tree_util.tree_flatten(state.diagnostics)
    short = jax.tree_util.tree_unflatten(treedef, [leaves[0][:-1]] + leaves[1:])
    with pytest.raises(ValueError, match=r"diagnostics/.* has shape \(9.*expected \(10"):
        learner.update(state._replace(diagnostics=short), np.zeros(4), np.zeros(10), np.zeros(4))
    learner.update(state, np.zeros(4), np.zeros(10), np.zeros(4))  # the learner's own state: accepted


def test_core_learner_refuses_a_state_of_another_trunk(tmp_path):
    a = horde.MultiHeadMLPLearner(3, hidden_sizes=(8,))
    b = horde.MultiHeadMLPLearner(3, hidden_sizes=(8, 8))
    state = b.init(4, jax.random.key(0))
    with pytest.raises(ValueError, match=r"trunk has hidden sizes \(8, 8\), this learner \(8,\)"):
        a.update(state, np.zeros(4), np.zeros(3))
    with pytest.raises(ValueError, match=r"trunk has hidden sizes"):
        horde.save_checkpoint(tmp_path / "never.npz", a, state)
    assert not (tmp_path / "never.npz").exists()


def test_run_jax_streams_the_records_it_returns(tmp_path):
    import envs

    learner = horde.HordeLearner(demons.reward_demons(timescales=(1, 10)), hidden_sizes=(8,), step_size=0.01)
    result = horde.run_jax(
        learner, envs.RandomWalk(), steps=300, n_seeds=2, chunk_size=64, progress=False, record_to=tmp_path
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = horde.RunResult.load(tmp_path)
    assert not loaded.partial and loaded.total_steps == 300
    _same_records(loaded, result)


def test_a_records_chunk_damaged_on_disk_fails_its_checksum_when_read(tmp_path):
    """One flipped byte in a committed chunk: reading the records is a ValueError naming the
    store and the checksum, not other numbers."""
    w = RecordWriter(
        tmp_path, demon_names=("a", "b"), demons=[], record_every=1, n_seeds=1, diagnostics=False, config={},
    )  # fmt: skip
    row = {
        "steps": np.arange(5),
        "predictions": np.arange(10, dtype=np.float32).reshape(1, 5, 2),
        "td_errors": np.zeros((1, 5, 2), np.float32),
        "cumulants": np.zeros((1, 5, 2), np.float32),
        "discounts": np.zeros((1, 5, 2), np.float32),
        "rewards": np.ones((1, 5), np.float32),
        "terminated": np.zeros((1, 5), bool),
        "truncated": np.zeros((1, 5), bool),
        "valid": np.ones((1, 5), bool),
    }
    w.append(row, {}, 5, 0.0)
    w.close(complete=True)
    _, arrays = read_records(tmp_path)
    np.testing.assert_array_equal(arrays["predictions"], row["predictions"])
    chunk = next(
        p for p in (tmp_path / "records.zarr" / "predictions").rglob("*") if p.is_file() and p.name != "zarr.json"
    )
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"records.zarr could not be read: .*checksum"):
        read_records(tmp_path)


def test_a_records_chunk_missing_from_the_store_is_an_error_not_nan(tmp_path):
    """Chunks of fill values only (a demon with NaN predictions for a whole chunk) are written
    too, so they read back; a chunk deleted from the store is a ValueError naming the chunk and
    its records, not NaN."""
    w = RecordWriter(
        tmp_path, demon_names=("a", "b"), demons=[], record_every=1, n_seeds=1, diagnostics=False, config={},
        rows_per_chunk=4,
    )  # fmt: skip
    nan = np.full((1, 10, 2), np.nan, np.float32)
    row = {
        "steps": np.arange(10),
        "predictions": nan,
        "td_errors": nan,
        "cumulants": np.zeros((1, 10, 2), np.float32),
        "discounts": np.zeros((1, 10, 2), np.float32),
        "rewards": np.ones((1, 10), np.float32),
        "terminated": np.zeros((1, 10), bool),
        "truncated": np.zeros((1, 10), bool),
        "valid": np.ones((1, 10), bool),
    }
    w.append(row, {}, 10, 0.0)
    w.close(complete=True)
    _, arrays = read_records(tmp_path)
    assert arrays["predictions"].shape == (1, 10, 2) and np.isnan(arrays["predictions"]).all()
    np.testing.assert_array_equal(arrays["rewards"], row["rewards"])
    (tmp_path / "records.zarr" / "rewards" / "c" / "0" / "1").unlink()  # records 4-7
    with pytest.raises(
        ValueError, match=r"records.zarr could not be read: ValueError: chunk rewards/c/0/1 \(records 4-7\) is missing"
    ):
        read_records(tmp_path)
