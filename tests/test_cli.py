"""The ``horde`` command, end to end in subprocesses."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import demons
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
    """``horde ARGS`` run in this process (its compiled functions reused from test to test),
    in ``cwd``, with its exit status and output as a subprocess would give them."""
    import contextlib
    import io

    from horde.cli.main import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    before = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = cli_main(list(args))
            except SystemExit as e:  # the argument parser's own refusals
                status = e.code if isinstance(e.code, int) else 2
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(["horde", *args], status, out.getvalue(), err.getvalue())


def _horde_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``horde ARGS`` in a new process, for what only a process shows (its imports, signals)."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "horde.cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "tiny.toml").write_text(TINY)
    proc = _horde_process("run", "tiny.toml", "--out", "out", "--no-progress", cwd=root)
    return root, proc


def test_run_writes_everything_and_prints_the_summary(tiny_run):
    root, proc = tiny_run
    assert proc.returncode == 0, proc.stderr
    assert "Per-demon summary" in proc.stdout
    for name in ("steps_to_fall", "obs[0]@1", "obs[3]@10"):
        assert any(line.startswith(name) for line in proc.stdout.splitlines()), name
    out = root / "out"
    for f in (
        "records.zarr",
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
            "config key policy.kind must be one of 'uniform', 'fixed', 'env', 'state', 'callable', 'epsilon_greedy', got 'greedy'",
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


@pytest.mark.slow  # three CLI runs; the seeds-as-separate-runs equality is tests/test_runner.py's in the default run
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
    from horde.cli import run_command
    from horde.cli.main import main

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


# -- in-process: the command line explains itself ----------------------------------------------

PLUGIN = '''
import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

import demons
from demons.kinds import Batch


@dataclasses.dataclass(frozen=True)
class {cls}(demons.Cumulant):
    """The square of one next observation."""

    index: int
    kind: ClassVar[str] = "{kind}"

    def __call__(self, observation, action, reward, next_observation):
        return jnp.square(next_observation[self.index]).astype(jnp.float32)

    @classmethod
    def batched(cls, positions, specs):
        idx = np.asarray([s.index for s in specs])
        return [Batch(positions, lambda t: jnp.square(t.next_observation[idx]).astype(jnp.float32))]


def always_left(observation, rng):
    return 0


def env_probs(observation, info):
    return [0.25, 0.75]
'''

SQUARED = """
[[demons]]
name = "speed_squared"
cumulant = {{ kind = "{kind}", index = 1 }}
discount = {{ kind = "timescale", steps = 10 }}
"""


def test_demons_needs_no_env_and_counts_in_words(tmp_path, monkeypatch, capsys):
    from horde.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "one.toml").write_text("[nexting]\nobservation_dim = 1\ntimescales = [5]\n")
    assert main(["demons", "one.toml"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("\n1 demon")
    (tmp_path / "two.toml").write_text("[nexting]\nobservation_dim = 2\ntimescales = [5]\n")
    assert main(["demons", "two.toml"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("\n2 demons")


def test_demons_lists_them_in_the_order_declared(tmp_path, monkeypatch, capsys):
    from horde.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    assert main(["demons", "tiny.toml"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:11]]
    assert rows == [f"obs[{i}]@{t}" for i in range(4) for t in (1, 10)] + ["steps_to_fall"]


@pytest.mark.parametrize("how", ["config", "flag"])
def test_a_plugin_module_makes_its_kinds_usable(tmp_path, monkeypatch, capsys, how):
    """A cumulant kind defined in a user's module, imported by [plugins] modules or --plugin."""
    from horde.cli.main import main

    module, kind = f"lab_kinds_{how}", f"squared_{how}"
    (tmp_path / f"{module}.py").write_text(PLUGIN.format(cls=f"Squared{how.title()}", kind=kind))
    monkeypatch.chdir(tmp_path)
    text = SQUARED.format(kind=kind)
    if how == "config":
        (tmp_path / "sq.toml").write_text(f'[plugins]\nmodules = ["{module}"]\n' + text)
        assert main(["demons", "sq.toml"]) == 0
    else:
        (tmp_path / "sq.toml").write_text(text)
        assert main(["demons", "sq.toml"]) == 2  # unknown until its module is imported
        assert f"unknown cumulant kind '{kind}'" in capsys.readouterr().err
        assert main(["demons", "sq.toml", "--plugin", module]) == 0
    out = capsys.readouterr().out
    assert f"{kind}(index=1)" in out and "speed_squared" in out


def test_a_missing_plugin_is_named(tmp_path, monkeypatch, capsys):
    from horde.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_text('[plugins]\nmodules = ["no_such_lab_module"]\n' + TINY)
    assert main(["demons", "p.toml"]) == 2
    assert "config key plugins.modules: cannot import 'no_such_lab_module'" in capsys.readouterr().err


def test_policy_kinds_build_every_behaviour_of_the_python_api(tmp_path, monkeypatch):
    import gymnasium as gym

    from horde.cli.config import ConfigError, build_policy, validate_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab_policies.py").write_text(PLUGIN.format(cls="SquaredPolicies", kind="squared_policies"))
    base = {"env": {"id": "CartPole-v1"}, "nexting": {"observation_dim": 4, "timescales": [1]}}
    rng = np.random.default_rng(0)
    space = gym.spaces.Discrete(2)

    def policy(table):
        return build_policy(validate_config({**base, "policy": table})).bind(space)

    assert isinstance(policy({"kind": "uniform"}), horde.UniformRandom)
    fixed = policy({"kind": "fixed", "probabilities": [0.0, 1.0]})
    assert fixed.sample(None, {}, rng) == (1, 1.0)
    # The environment's own behaviour: the probabilities it publishes in info (Collision's).
    env = policy({"kind": "env"})
    assert env.sample(None, {"behaviour_probs": (0.0, 1.0)}, rng) == (1, 1.0)
    with pytest.raises(ValueError, match=r"info\['behaviour_probs'\], which this environment does not publish"):
        env.sample(None, {"state": 3}, rng)
    assert policy({"kind": "env", "key": "mu"}).sample(None, {"mu": (1.0, 0.0)}, rng) == (0, 1.0)
    state = policy({"kind": "state", "function": "lab_policies:env_probs"})
    assert isinstance(state, horde.StateProbabilities) and state.sample(None, {}, rng)[1] in (0.25, 0.75)
    call = policy({"kind": "callable", "function": "lab_policies:always_left"})
    assert isinstance(call, horde.CallablePolicy) and call.sample(None, {}, rng) == (0, None)
    for table, message in [
        ({"kind": "greedy"}, "policy.kind must be one of 'uniform', 'fixed', 'env', 'state', 'callable'"),
        ({"kind": "state", "function": "lab_policies"}, "policy.function must be 'module:name'"),
        ({"kind": "callable", "function": "lab_policies:nothing"}, "module 'lab_policies' has no callable 'nothing'"),
        ({"kind": "env", "probabilities": [1]}, "keys ['kind', 'key'] for kind 'env'"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            policy(table)


def test_flags_are_named_in_their_errors(tmp_path, monkeypatch, capsys):
    from horde.cli.main import main

    monkeypatch.chdir(tmp_path)
    for flag, value, minimum in [("--checkpoint-every", "-1", 0), ("--record-every", "0", 1)]:
        with pytest.raises(SystemExit) as exit_:
            main(["run", flag, value])
        assert exit_.value.code == 2
        assert f"argument {flag}: must be an integer >= {minimum}, got '{value}'" in capsys.readouterr().err


def test_large_records_are_announced_before_the_run(capsys):
    from horde.cli.report import LARGE_RECORDS_BYTES, record_bytes, warn_if_large

    # 50,000 steps x 27 demons x 6 float32 arrays (+ 16 bytes of per-step flags and rewards).
    assert record_bytes(50_000, 1, 1, 27, True) == 50_000 * (27 * 24 + 16)
    assert record_bytes(50_000, 2, 10, 27, False) == 2 * 5_000 * (27 * 16 + 16)
    assert LARGE_RECORDS_BYTES < record_bytes(50_000, 1, 1, 27, True)

    class Learner:
        n_demons, diagnostics = 27, True

    config = {"run": {"seeds": 1, "record_every": 1}}
    assert warn_if_large(config, Learner, 50_000) == 33_200_000
    err = capsys.readouterr().err
    assert "about 33 MB" in err and "--record-every 10" in err and "need every step recorded" in err
    config["run"]["record_every"] = 10
    warn_if_large(config, Learner, 50_000)
    assert capsys.readouterr().err == ""


def test_plot_takes_demons_and_a_metric(tiny_run, capsys):
    from horde.cli.main import main

    root, _ = tiny_run
    out = root / "out"
    assert main(["plot", str(out), "--demons", "steps_to_fall", "obs[2]@10", "--metric", "rmse"]) == 0
    said = capsys.readouterr().out
    assert "drawing prediction_vs_return.png: predictions against ideal returns of steps_to_fall, obs[2]@10" in said
    assert (out / "rmse.png").stat().st_size > 0
    assert said.index("prediction_vs_return.png") < said.index("rmse.png")  # how good first
    assert main(["plot", str(out), "--demons", "steps_to_fal"]) == 2
    assert "did you mean 'steps_to_fall'" in capsys.readouterr().err
    assert main(["plot", str(out), "--metric", "loss"]) == 2
    assert "unknown metric 'loss'; choose one of 'td_error', 'normalized_rmse', 'rmse'" in capsys.readouterr().err


def test_ctrl_c_while_drawing_exits_quietly(tiny_run, monkeypatch, capsys):
    from horde import plots
    from horde.cli.main import main

    root, _ = tiny_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "learning_curves", interrupted)
    assert main(["plot", str(root / "out")]) == 130
    err = capsys.readouterr().err
    assert f"the results are saved: 'horde plot {root / 'out'}' draws them" in err
    assert "Traceback" not in err


def test_summary_explains_its_marks(capsys):
    """'-' (an off-policy demon, a demon without a complete return) and '†' (a flat return)
    are explained under the table, and only the marks shown are."""
    from horde.cli.report import print_summary
    from horde.plots.series import subset

    k = 50
    rng = np.random.default_rng(0)
    names = ["varies", "flat", "never_ends", "off"]
    infos = [demons.DemonInfo(n, f"c({n})", "observation", "timescale", 1.0, 0.0, 0.0, n == "off") for n in names]
    c = rng.normal(size=(1, k, 4))
    c[..., 1] = 1.0
    g = np.zeros((1, k, 4))
    g[..., 2] = 1.0
    zeros = np.zeros((1, k))
    result = horde.RunResult(
        demon_names=tuple(names),
        steps=np.arange(k),
        predictions=rng.normal(size=(1, k, 4)),
        td_errors=np.ones((1, k, 4)),
        cumulants=c,
        discounts=g,
        rewards=zeros,
        terminated=zeros.astype(bool),
        truncated=zeros.astype(bool),
        valid=np.ones((1, k), bool),
        episode_seed=np.zeros(0, np.int64),
        episode_end_step=np.zeros(0, np.int64),
        episode_return=np.zeros(0),
        episode_length=np.zeros(0, np.int64),
        wall_time=1.0,
        total_steps=k,
        record_every=1,
        config={},
        demons=tuple(infos),
    )
    print_summary(result)
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:7]}
    assert rows["flat"][0] == "†" and rows["flat"][1] != "-"
    assert rows["never_ends"][:2] == ["-", "-"] and rows["off"][:2] == ["-", "-"]
    float(rows["varies"][0])
    notes = lines[7:]
    assert len(notes) == 3
    assert notes[0].startswith("- off-policy demon")
    assert notes[1].startswith("- no complete return") and "episodes end before the demon's horizon" in notes[1]
    assert notes[2].startswith("† the return barely varies (std(G) <= 0.05 mean |G|)")
    print_summary(subset(result, [0]))
    assert len(capsys.readouterr().out.splitlines()) == 4  # title, header, rule, one row: no notes


def test_star_import_leaves_matplotlib_alone(tmp_path):
    code = "import sys\nfrom horde import *\nimport horde\nprint('matplotlib' in sys.modules, hasattr(horde, 'plots'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]  # horde.plots still loads on first use


def test_define_demons_guide_shows_what_horde_demons_prints(tmp_path, monkeypatch, capsys):
    from horde.cli.main import main

    guide = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "define-demons.md").read_text()
    toml = guide.split("in document\norder:\n\n```toml\n", 1)[1].split("```", 1)[0]
    shown = guide.split("needed); for the file above:\n\n```text\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "guide.toml").write_text(toml)
    assert main(["demons", "guide.toml"]) == 0
    assert capsys.readouterr().out == shown


def test_an_off_policy_demon_on_continuous_actions_is_told_why(tmp_path, monkeypatch, capsys):
    from horde.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pendulum.toml").write_text(
        '[env]\nid = "Pendulum-v1"\n\n[learner]\nhidden_sizes = [8]\n\n[[demons]]\nname = "off"\n'
        'cumulant = { kind = "reward" }\ndiscount = { kind = "timescale", steps = 10 }\n'
        'target_policy = { kind = "fixed", probabilities = [0.5, 0.5] }\n'
    )
    assert main(["run", "pendulum.toml", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "off-policy demons ['off'] need a Discrete action space" in err
    assert "continuous actions have no probability mass" in err
