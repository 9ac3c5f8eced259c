"""``horde run`` on JAX environment ids (``gymnax:...``, ``phys2d/...``): routed to
``horde.run_jax`` with the config's settings, writing the records, summary, figures and a
checkpoint of the final state; ``--resume`` and Python behaviour policies are refused."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import horde
from horde.cli.jax_run_command import is_jax_env_id, jax_observation_dim
from horde.cli.main import main

pytest.importorskip("gymnax")

CONFIG = """
[env]
id = "gymnax:CartPole-v1"

[run]
steps = 300
seed = 1
seeds = 2
chunk_size = 128

[learner]
hidden_sizes = [8]
step_size = 0.001

[nexting]
observation_dim = 4
timescales = [1, 10]

[[demons]]
name = "steps_to_fall"
cumulant = { kind = "constant", value = 1.0 }
discount = { kind = "until", index = 2, threshold = 0.2095, absolute = true }
"""


@pytest.fixture(scope="module")
def gymnax_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("jaxrun")
    (root / "run.toml").write_text(CONFIG)
    out = root / "out"
    code = main(["run", str(root / "run.toml"), "--out", str(out), "--no-progress"])
    return code, root, out


def test_toml_gymnax_run_is_run_jax_with_the_config(gymnax_run):
    code, _, out = gymnax_run
    assert code == 0
    for name in ("records.zarr", "config.json", "checkpoint.npz", "prediction_vs_return.png"):
        assert (out / name).exists(), name
    result = horde.RunResult.load(out)
    assert not result.partial and result.total_steps == 300 and result.n_seeds == 2
    learner, state, meta = horde.load_checkpoint(out / "checkpoint.npz")
    assert meta["step"] == 300 and meta["runner"] == "run_jax"
    assert np.shape(state.core.head_params.biases)[0] == 2  # the final states of both copies


@pytest.mark.slow
def test_cli_gymnax_run_equals_the_python_api(gymnax_run):
    _, _, out = gymnax_run
    result = horde.RunResult.load(out)
    learner, state, _ = horde.load_checkpoint(out / "checkpoint.npz")
    # The same run through the Python API: the same final state and records, bit for bit.
    direct = horde.run_jax(learner, "gymnax:CartPole-v1", steps=300, seed=1, n_seeds=2, chunk_size=128, progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(direct.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(result.predictions, direct.predictions)
    np.testing.assert_array_equal(result.rewards, direct.rewards)


def test_resume_of_a_jax_run_is_refused_in_one_line(gymnax_run, capsys):
    code, _, out = gymnax_run
    capsys.readouterr()
    assert main(["run", "--resume", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "horde run: error: --resume is not supported for gymnax:CartPole-v1 (a compiled run_jax run); start a new run"
    )


def test_env_flag_routes_and_python_policies_are_refused(tmp_path, capsys):
    (tmp_path / "run.toml").write_text(
        CONFIG.replace('id = "gymnax:CartPole-v1"', 'id = "CartPole-v1"')
        + '\n[policy]\nkind = "callable"\nfunction = "math:floor"\n'
    )
    argv = ["run", str(tmp_path / "run.toml"), "--env", "gymnax:CartPole-v1", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "policy.kind: 'callable' is a Python function" in err and "gymnax:CartPole-v1" in err
    assert not (tmp_path / "o" / "config.json").exists()  # refused before anything was written


def test_jax_ids_and_their_feature_sizes():
    assert is_jax_env_id("gymnax:CartPole-v1") and is_jax_env_id("phys2d/CartPole-v1")
    assert not is_jax_env_id("CartPole-v1") and not is_jax_env_id("horde/RandomWalk-v0")
    assert jax_observation_dim("gymnax:Acrobot-v1") == 6
    assert jax_observation_dim("phys2d/CartPole-v1") == 4
