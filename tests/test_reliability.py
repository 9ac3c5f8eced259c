"""Reliability: checkpoints that never lose a run, resume that continues bit for bit, a
divergence guard, determinism, and bad input refused loudly (property-based)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
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


def _learner(**kw):
    kw.setdefault("hidden_sizes", (16,))
    kw.setdefault("step_size", 0.01)
    return horde.HordeLearner(NEXTING, bounder=horde.ObGDBounding(), diagnostics=True, **kw)


def _leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


# ---------------------------------------------------------------------------------------------
# Resume


@pytest.mark.parametrize("vector", [False, True])
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
    for name in horde.RunResult._ARRAYS:
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
        from horde.cli.checkpoint import _checksum

        leaves = [(name, arrays[f"leaf_{i:05d}"]) for i, name in enumerate(meta["leaves"])]
        meta["checksum"] = _checksum(meta, leaves)

    with pytest.raises(CheckpointError, match=r"shape \(2, 4\), expected .* shape \(3, 4\)"):
        load_checkpoint(rewrite(swap_config))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.npz")


def test_kill_during_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    """A writer saving large checkpoints in a loop is killed at random moments; the file on
    disk always loads, and is one of the complete versions."""
    script = textwrap.dedent(
        f"""
        import sys, jax, numpy as np
        sys.path.insert(0, {os.getcwd()!r})
        import horde, demons
        learner = horde.MultiHeadMLPLearner(2000, hidden_sizes=(256,))
        state = learner.init(16, jax.random.key(0))
        horde.save_checkpoint({str(tmp_path / "ck.npz")!r}, learner, state, {{"version": 0}})
        print("ready", flush=True)
        i = 0
        while True:
            i += 1
            state = state._replace(step_count=state.step_count + 1)
            horde.save_checkpoint({str(tmp_path / "ck.npz")!r}, learner, state, {{"version": i}})
        """
    )
    rng = np.random.default_rng(0)
    for trial in range(4):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.2, 1.0)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        learner, state, meta = load_checkpoint(tmp_path / "ck.npz")
        assert int(state.step_count) == meta["version"]
        assert not [f for f in os.listdir(tmp_path) if f.endswith(".npz") and f != "ck.npz"]


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
