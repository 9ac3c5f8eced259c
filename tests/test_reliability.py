"""Reliability: checkpoints that never lose a run, resume that continues bit for bit, a
divergence guard, determinism, and bad input refused loudly (property-based)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import demons
import horde
from demons import Demon
from demons import cumulants as C
from demons import discounts as D
from horde import CheckpointError, load_checkpoint, save_checkpoint

NEXTING = demons.nexting(4, timescales=(1, 10), lamda=0.5) + demons.reward_demons(timescales=(1, 10))


# Every per-step and per-episode array a RunResult records.
RECORDED = (
    "steps", "predictions", "td_errors", "cumulants", "discounts", "rewards", "terminated", "truncated", "valid",
    "episode_seed", "episode_end_step", "episode_return", "episode_length", "rupee", "ude",
)  # fmt: skip


def _learner(**kw):
    kw.setdefault("hidden_sizes", (16,))
    kw.setdefault("step_size", 0.01)
    return horde.HordeLearner(NEXTING, bounder=horde.ObGDBounding(), diagnostics=True, **kw)


def _leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


# ---------------------------------------------------------------------------------------------
# Resume


# The vector-env copy compiles three more chunk programs; its resume is the same code path.
@pytest.mark.parametrize("vector", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_resume_from_checkpoint_continues_bit_identically(tmp_path, vector):
    learner = _learner()

    def env():
        return gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync") if vector else "CartPole-v1"

    full = horde.run(learner, env(), steps=500, seed=7, chunk_size=100, progress=False)
    first = horde.run(learner, env(), steps=230, seed=7, chunk_size=115, progress=False)
    path = save_checkpoint(tmp_path / "ck", learner, first.state, {"step": 230})
    learner2, state, meta = load_checkpoint(path)
    rest = horde.run(
        learner2, env(), steps=270, seed=7, state=state, start_step=meta["step"], chunk_size=135, progress=False
    )
    np.testing.assert_array_equal(np.concatenate([first.predictions, rest.predictions], axis=1), full.predictions)
    np.testing.assert_array_equal(rest.steps, np.arange(230, 500))
    assert _leaves_equal(rest.state, full.state)


def test_same_seed_gives_identical_runs():
    learner = _learner()
    a = horde.run(learner, "CartPole-v1", steps=300, seed=3, progress=False)
    b = horde.run(_learner(), "CartPole-v1", steps=300, seed=3, progress=False)
    for name in RECORDED:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert _leaves_equal(a.state, b.state)


# ---------------------------------------------------------------------------------------------
# Checkpoints


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    learner = horde.HordeLearner(demons.reward_demons(timescales=(1, 10)), hidden_sizes=(4,), step_size=0.01)
    state = horde.run(learner, "CartPole-v1", steps=20, progress=False).state
    path = save_checkpoint(tmp_path_factory.mktemp("ck") / "small.npz", learner, state, {"step": 20})
    return learner, state, path


def test_checkpoint_round_trip(small_checkpoint):
    learner, state, path = small_checkpoint
    loaded_learner, loaded_state, meta = load_checkpoint(path)
    assert meta == {"step": 20}
    assert loaded_learner.to_config() == learner.to_config()
    assert _leaves_equal(loaded_state, state)


def test_truncated_checkpoint_fails_cleanly_at_every_tenth_byte(small_checkpoint, tmp_path):
    _, _, path = small_checkpoint
    data = path.read_bytes()
    target = tmp_path / "cut.npz"
    for offset in range(0, len(data), 10):
        target.write_bytes(data[:offset])
        with pytest.raises(CheckpointError):
            load_checkpoint(target)


def _documented_checksum(meta, leaves):
    """The checksum as the checkpoint format documents it, written out independently."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode("utf-8"))
    for name, arr in leaves:
        for part in (name, str(arr.dtype), repr(arr.shape)):
            h.update(part.encode("utf-8"))
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _arrays_and_meta(path):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return arrays, json.loads(str(arrays.pop("__meta__")))


def test_checksum_is_the_documented_digest(small_checkpoint):
    _, _, path = small_checkpoint
    arrays, meta = _arrays_and_meta(path)
    stored = meta.pop("checksum")
    leaves = [(name, arrays[f"leaf_{i:05d}"]) for i, name in enumerate(meta["leaves"])]
    assert stored == _documented_checksum(meta, leaves)


def test_an_edited_state_array_fails_the_checksum(small_checkpoint, tmp_path):
    # A well-formed file whose weights were changed after saving: only the checksum can tell.
    _, state, path = small_checkpoint
    arrays, meta = _arrays_and_meta(path)
    i = meta["leaves"].index("core/head_params/weights")
    edited = arrays[f"leaf_{i:05d}"].copy()
    edited.flat[0] += 1.0
    arrays[f"leaf_{i:05d}"] = edited
    np.savez(tmp_path / "edited.npz", __meta__=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(tmp_path / "edited.npz")


def test_corrupted_wrong_version_and_mismatched_checkpoints_are_refused(small_checkpoint, tmp_path):
    learner, state, path = small_checkpoint
    data = bytearray(path.read_bytes())
    for position in (len(data) // 3, len(data) // 2, 2 * len(data) // 3):
        flipped = bytearray(data)
        flipped[position] ^= 0xFF
        (tmp_path / "flip.npz").write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError, match="corrupted|checksum|not a horde"):
            load_checkpoint(tmp_path / "flip.npz")

    def rewrite(edit):
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays["__meta__"]))
        edit(meta, arrays)
        arrays["__meta__"] = np.array(json.dumps(meta))
        out = tmp_path / "edited.npz"
        np.savez(out, **arrays)
        return out

    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(rewrite(lambda m, a: m.update(format_version=99)))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(rewrite(lambda m, a: m["metadata"].update(step=21)))

    # A checkpoint whose arrays are for 2 demons but whose config declares 3.
    three = horde.HordeLearner(demons.reward_demons(timescales=(1, 10, 100)), hidden_sizes=(4,), step_size=0.01)

    def swap_config(meta, arrays):
        meta["learner_config"] = three.to_config()
        meta.pop("checksum")
        leaves = [(name, arrays[f"leaf_{i:05d}"]) for i, name in enumerate(meta["leaves"])]
        meta["checksum"] = _documented_checksum(meta, leaves)

    with pytest.raises(CheckpointError, match=r"shape \(2, 4\), expected .* shape \(3, 4\)"):
        load_checkpoint(rewrite(swap_config))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.npz")


_STALLING_SAVE = """
import builtins, json, os, sys, time
import jax
import horde

target, marker, stall = sys.argv[1], sys.argv[2], sys.argv[3]
learner = horde.MultiHeadMLPLearner(64, hidden_sizes=(32,))
state = learner.init(16, jax.random.key(0))
horde.save_checkpoint(target, learner, state, {"version": 0})


def block_here():
    open(marker, "w").close()
    time.sleep(600)


class HalfWriter:
    # A file whose first write puts half the bytes on disk, then blocks.
    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        os.fsync(self.f.fileno())
        block_here()

    def __getattr__(self, name):
        return getattr(self.f, name)


if stall == "mid-write":
    real_fdopen, real_open = os.fdopen, builtins.open
    os.fdopen = lambda *a, **k: HalfWriter(real_fdopen(*a, **k))
    builtins.open = lambda file, mode="r", *a, **k: (
        HalfWriter(real_open(file, mode, *a, **k)) if "w" in mode else real_open(file, mode, *a, **k)
    )
else:  # everything written, not yet renamed over the target
    os.replace = os.rename = lambda *a, **k: block_here()
state = state._replace(step_count=state.step_count + 1)
horde.save_checkpoint(target, learner, state, {"version": 1})
print("the save returned without blocking", flush=True)
"""


@pytest.mark.parametrize("stall", ["mid-write", "before-rename"])
def test_kill_during_save_leaves_the_previous_checkpoint_loadable(tmp_path, stall):
    """A save is SIGKILLed while in progress (its writer blocks at a known point, half-way
    through writing the bytes or before the rename, and touches a marker file): the previous
    checkpoint still loads bit for bit, and the partial file is never taken for one."""
    target, marker = tmp_path / "ck.npz", tmp_path / "writing"
    proc = subprocess.Popen(
        [sys.executable, "-c", _STALLING_SAVE, str(target), str(marker), stall],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # A guard against a hang, not a measurement: the writer reaches the marker in seconds.
        for _ in range(1200):
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert marker.exists(), f"the save never blocked where expected: {proc.communicate(timeout=60)}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    learner, state, meta = load_checkpoint(target)
    assert meta == {"version": 0}
    assert int(state.step_count) == meta["version"]
    assert _leaves_equal(state, horde.MultiHeadMLPLearner(64, hidden_sizes=(32,)).init(16, jax.random.key(0)))
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".npz") and f != "ck.npz"]
    partial = [tmp_path / f for f in os.listdir(tmp_path) if f not in ("ck.npz", "writing")]
    assert len(partial) == 1 and partial[0].stat().st_size > 0  # a save was indeed under way
    if stall == "mid-write":
        with pytest.raises(CheckpointError):
            load_checkpoint(partial[0])
    # The next save over the same target is unaffected by the leftover.
    state = state._replace(step_count=state.step_count + 2)
    save_checkpoint(target, learner, state, {"version": 2})
    assert load_checkpoint(target)[2] == {"version": 2}


# ---------------------------------------------------------------------------------------------
# Divergence guard


def test_divergence_guard_names_the_demon_and_keeps_the_last_good_state():
    # "calm" predicts a constant 0 from zero weights: its TD error is exactly 0 at every step,
    # whatever the step size. "unstable" takes steps far beyond LMS's stable range.
    unstable = Demon("unstable", C.observation(1), D.timescale(100))
    learner = horde.HordeLearner(
        [Demon("calm", C.constant(0.0), D.constant(0.0)), unstable], hidden_sizes=(), step_size=5.0
    )
    state = learner.init(4, jax.random.key(0))
    heads = state.core.head_params
    state = state._replace(core=state.core._replace(head_params=heads._replace(weights=heads.weights.at[0].set(0.0))))
    with pytest.raises(horde.DivergenceError, match=r"diverged at step \d+.*'unstable'") as info:
        horde.run(learner, "CartPole-v1", steps=5000, seed=0, state=state, chunk_size=50, progress=False)
    err = info.value
    assert "unstable" in err.demons and "calm" not in err.demons
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree_util.tree_leaves(err.result.state))
    assert err.step < 5000 and err.result.total_steps <= err.step + 50


def test_daemon_update_reports_divergence_per_demon():
    learner = horde.HordeLearner(
        [Demon("a", C.reward(), D.constant(0.9)), Demon("b", C.reward(), D.constant(0.9))],
        hidden_sizes=(),
        step_size=1e30,
    )
    state = learner.init(2, jax.random.key(0))
    x = np.array([1e5, 1e5], np.float32)
    flags = []
    for _ in range(4):
        r = learner.update(state, x, [1.0, np.nan], x)
        flags.append(np.asarray(r.diverged))
        state = r.state
    flags = np.array(flags)
    assert flags[:, 0].any() and not flags[:, 1].any()


# ---------------------------------------------------------------------------------------------
# Bad input, tried systematically


finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)
bad_value = st.sampled_from([np.nan, np.inf, -np.inf])


@pytest.fixture(scope="module")
def horde_learner():
    learner = horde.HordeLearner(
        [Demon("a", C.reward(), D.constant(0.9), lamda=0.5), Demon("b", C.observation(1), D.constant(0.5))],
        hidden_sizes=(8,),
        step_size=0.01,
    )
    return learner, learner.init(3, jax.random.key(0))


def _assert_state_finite(state):
    assert all(
        np.isfinite(np.asarray(leaf)).all()
        for leaf in jax.tree_util.tree_leaves(state)
        if np.asarray(leaf).dtype.kind == "f"
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(["observation", "next_observation", "cumulants", "discounts", "rhos"]),
    index=st.integers(0, 1),
    value=bad_value,
)
def test_non_finite_inputs_are_refused_naming_the_argument(horde_learner, which, index, value):
    learner, state = horde_learner
    args = {
        "observation": np.zeros(3, np.float32),
        "next_observation": np.zeros(3, np.float32),
        "cumulants": np.zeros(2, np.float32),
        "discounts": np.full(2, 0.5, np.float32),
        "rhos": np.ones(2, np.float32),
    }
    if which == "cumulants" and np.isnan(value):
        # NaN cumulant = inactive demon: accepted, and nothing turns NaN.
        args["cumulants"][index] = value
        result = learner.update(
            state, **{k: args[k] for k in ("observation", "cumulants", "next_observation")}, discounts=args["discounts"]
        )
        _assert_state_finite(result.state)
        return
    arr = args[which]
    arr[index % arr.shape[0]] = value
    names = {
        "observation": "observation",
        "next_observation": "next_observation",
        "cumulants": "cumulant",
        "discounts": "discount",
        "rhos": "rho",
    }
    with pytest.raises(ValueError, match=names[which]):
        learner.update(
            state,
            args["observation"],
            args["cumulants"],
            args["next_observation"],
            discounts=args["discounts"],
            rhos=args["rhos"],
        )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(["observation", "cumulants", "next_observation", "discounts", "rhos"]),
    shape=st.sampled_from([(), (1,), (4,), (2, 3), (0,)]),
)
def test_wrong_shapes_are_refused_naming_the_argument(horde_learner, which, shape):
    learner, state = horde_learner
    good = {"observation": (3,), "next_observation": (3,), "cumulants": (2,), "discounts": (2,), "rhos": (2,)}
    if shape == good[which]:
        return
    args = {k: np.full(v, 0.5, np.float32) for k, v in good.items()}
    args[which] = np.full(shape, 0.5, np.float32)
    with pytest.raises(ValueError, match=rf"{which} must have shape"):
        learner.update(
            state,
            args["observation"],
            args["cumulants"],
            args["next_observation"],
            discounts=args["discounts"],
            rhos=args["rhos"],
        )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.text(max_size=3), st.just(None), st.just([1, "x"]), st.just({"a": 1})))
def test_non_numeric_inputs_are_type_or_value_errors(horde_learner, value):
    learner, state = horde_learner
    with pytest.raises((TypeError, ValueError), match="observation"):
        learner.update(state, value, np.zeros(2), np.zeros(3))


_core = horde.MultiHeadMLPLearner(3, hidden_sizes=(8,), step_size=0.01, bounder=horde.ObGDBounding())
CORE = (_core, _core.init(4, jax.random.key(0)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    targets=st.lists(st.one_of(finite, st.just(np.nan)), min_size=3, max_size=3),
    obs=st.lists(finite, min_size=4, max_size=4),
)
def test_core_update_never_produces_silent_nan(targets, obs):
    learner, state = CORE
    result = learner.update(state, np.asarray(obs, np.float32), np.asarray(targets, np.float32))
    _assert_state_finite(result.state)
    np.testing.assert_array_equal(np.isnan(result.errors), np.isnan(np.asarray(targets, np.float32)))


@settings(max_examples=40, deadline=None)
@given(
    gamma=st.one_of(st.floats(-10, -1e-6), st.floats(1 + 1e-6, 10), st.just(np.nan)),
    lamda=st.one_of(st.floats(-10, -1e-6), st.floats(1 + 1e-6, 10)),
    which=st.sampled_from(["gamma", "lamda"]),
)
def test_out_of_range_demon_parameters_are_refused(gamma, lamda, which):
    with pytest.raises(ValueError, match=rf"{which}.*demon 'x'"):
        if which == "gamma":
            Demon("x", C.reward(), D.constant(gamma))
        else:
            Demon("x", C.reward(), D.constant(0.5), lamda=lamda)
