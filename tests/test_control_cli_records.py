"""``horde run`` of a control run keeps what it learned: each seed streams its records to a
store of its own, checkpoints come every ``run.checkpoint_every`` steps, and a run that
crashed is resumed from its last checkpoint into the run it would have been."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import jax
import numpy as np
import pytest

import demons
import envs  # noqa: F401  (registers horde/RandomWalk-v0)
import horde
from demons import cumulants, discounts, policies
from horde.cli import control_run_command
from horde.cli.control_run_command import seed_dir

CONTROL_TOML = """
[env]
id = "horde/RandomWalk-v0"
kwargs = { n_states = 7 }

[run]
steps = 100
seed = 3
seeds = 2
record_every = 2
chunk_size = 50
checkpoint_every = EVERY

[policy]
kind = "epsilon_greedy"
demon = "q"
epsilon = 0.05
anneal_steps = 30

[control]
hidden_sizes = [8]

[[demons]]
name = "q"
cumulant = { kind = "reward" }
discount = { kind = "constant", gamma = 0.9 }
lamda = 0.8
target_policy = { kind = "greedy" }
"""

RECORDED = ("predictions", "td_errors", "rewards", "terminated", "truncated", "valid")
EPISODES = ("episode_seed", "episode_end_step", "episode_return", "episode_length")


def test_a_crashed_control_run_keeps_its_records_and_resumes_into_the_uninterrupted_run(tmp_path, monkeypatch, capsys):
    from horde.cli.main import main
    from horde.runs import run as real_run

    monkeypatch.chdir(tmp_path)
    # Figures are another test's subject; here they would only take time.
    monkeypatch.setattr(control_run_command, "draw_figures", lambda result, out: [])
    drawn: list = []
    monkeypatch.setattr(horde.plots, "plot_returns", lambda result, path: drawn.append(path))
    (tmp_path / "whole.toml").write_text(CONTROL_TOML.replace("EVERY", "0"))
    (tmp_path / "every.toml").write_text(CONTROL_TOML.replace("EVERY", "40"))
    assert main(["run", "whole.toml", "--out", "whole", "--no-progress"]) == 0
    assert not (tmp_path / "whole" / "seeds").exists()  # stacked into whole/records.zarr at the end

    # Segments [0, 40), [40, 80), [80, 100); the second seed crashes in the third.
    def crashing(*args, **kwargs):
        if kwargs["seed"] == 4 and kwargs["start_step"] == 80:
            raise RuntimeError("the machine went down")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(horde.runs, "run", crashing)
    with pytest.raises(RuntimeError, match="the machine went down"):
        main(["run", "every.toml", "--out", "every", "--no-progress"])
    monkeypatch.setattr(horde.runs, "run", real_run)

    # What was learned is on disk: seed 3 to its end, seed 4 to step 80, the checkpoint at 80.
    whole = horde.RunResult.load(tmp_path / "whole")
    for i, seed, last in ((0, 3, 100), (1, 4, 80)):
        if seed == 4:  # stopped between segments: its store reads as the partial run it is
            with pytest.warns(UserWarning, match="holds a partial run .the run goes on after step 80"):
                kept = horde.RunResult.load(seed_dir(tmp_path / "every", seed))
        else:
            kept = horde.RunResult.load(seed_dir(tmp_path / "every", seed))
        np.testing.assert_array_equal(kept.steps, np.arange(0, last, 2))
        np.testing.assert_array_equal(kept.predictions[0], whole.predictions[i, : last // 2])
        assert kept.partial == (seed == 4)
    _, _, meta = horde.load_checkpoint(tmp_path / "every" / "checkpoint.npz")
    assert meta["step"] == 80

    # Nothing kept is overwritten: not by a new run, not by a resume ending before seed 3's records.
    capsys.readouterr()
    assert main(["run", "every.toml", "--out", "every", "--no-progress"]) == 2
    assert "--out every already holds a run (config.json, checkpoint.npz, seeds)" in capsys.readouterr().err
    assert main(["run", "--resume", "every", "--steps", "10", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds records to step 100, past the step 90 this resume would end at" in err

    # Resumed: bit for bit the uninterrupted run (records, episodes, state, actions), even
    # when the resume itself is killed after its last checkpoint, before the seeds are stacked.
    stack = control_run_command._stack_stores

    def killed_while_stacking(*args, **kwargs):
        raise RuntimeError("killed while stacking")

    monkeypatch.setattr(control_run_command, "_stack_stores", killed_while_stacking)
    with pytest.raises(RuntimeError, match="killed while stacking"):
        main(["run", "--resume", "every", "--no-progress"])
    monkeypatch.setattr(control_run_command, "_stack_stores", stack)
    assert horde.load_checkpoint(tmp_path / "every" / "checkpoint.npz")[2]["step"] == 100
    assert main(["run", "--resume", "every", "--no-progress"]) == 0  # nothing left to run: stacked
    joined = horde.RunResult.load(tmp_path / "every")
    np.testing.assert_array_equal(joined.steps, whole.steps)
    for name in RECORDED + EPISODES:
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name), err_msg=name)
    _, state, meta = horde.load_checkpoint(tmp_path / "every" / "checkpoint.npz")
    _, whole_state, whole_meta = horde.load_checkpoint(tmp_path / "whole" / "checkpoint.npz")
    assert meta["step"] == 100 and meta["control_actions"] == whole_meta["control_actions"]
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(whole_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not (tmp_path / "every" / "seeds").exists()
    # `horde plot` of a control run redraws its returns too.
    drawn.clear()
    assert main(["plot", "every"]) == 0
    assert drawn == [Path("every") / "returns.png"]


class _FailingWalk(gym.Wrapper):
    """The random walk, whose ``step`` raises at its ``fail_at``-th call."""

    def __init__(self, fail_at: int):
        super().__init__(gym.make("horde/RandomWalk-v0", n_states=7))
        self.calls, self.fail_at = 0, fail_at

    def step(self, action):
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError("sensor unplugged")
        return self.env.step(action)


def test_an_acting_run_whose_environment_raises_stops_with_what_it_learned_in_full():
    """The environment raising at step 130 (chunks of 50): a ``RunError`` naming the step, its
    cause the environment's exception, and the result of the first 100 steps, equal to a run
    of 100 steps."""
    q = demons.Demon("q", cumulants.reward(), discounts.constant(0.9), lamda=0.8, target_policy=policies.greedy())
    learner = horde.ControlLearner([q], hidden_sizes=(8,))
    policy = horde.EpsilonGreedy("q", epsilon=0.1, anneal_steps=60)
    with pytest.raises(horde.RunError, match="the environment raised OSError at step 130: sensor unplugged") as info:
        horde.run(learner, _FailingWalk(131), steps=200, seed=1, policy=policy, chunk_size=50, progress=False)
    assert info.value.step == 130 and isinstance(info.value.__cause__, OSError)
    kept = info.value.result
    assert kept.total_steps == 100
    whole = horde.run(learner, _FailingWalk(0), steps=100, seed=1, policy=policy, chunk_size=50, progress=False)
    np.testing.assert_array_equal(kept.predictions, whole.predictions)
    np.testing.assert_array_equal(kept.actions, whole.actions)
    for a, b in zip(jax.tree_util.tree_leaves(kept.state), jax.tree_util.tree_leaves(whole.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_resumed_acting_run_whose_environment_raises_while_replaying_is_a_run_error():
    """A resume replays the actions taken before it; the environment raising on the way (its
    30th step of 100 replayed) is a ``RunError`` naming the step and the replay, with the
    given state as the last good one, not the environment's bare exception."""
    q = demons.Demon("q", cumulants.reward(), discounts.constant(0.9), lamda=0.8, target_policy=policies.greedy())
    learner = horde.ControlLearner([q], hidden_sizes=(8,))
    policy = horde.EpsilonGreedy("q", epsilon=0.1, anneal_steps=60)
    first = horde.run(learner, _FailingWalk(0), steps=100, seed=1, policy=policy, chunk_size=50, progress=False)
    with pytest.raises(
        horde.RunError,
        match="the environment raised OSError at step 29 while replaying the 100 actions taken before the resume",
    ) as info:
        horde.run(
            learner, _FailingWalk(30), steps=50, seed=1, policy=policy, chunk_size=50, progress=False,
            state=first.state, start_step=100, actions=first.actions,
        )  # fmt: skip
    assert info.value.step == 29 and isinstance(info.value.__cause__, OSError)
    kept = info.value.result
    assert kept.total_steps == 0
    for a, b in zip(jax.tree_util.tree_leaves(kept.state), jax.tree_util.tree_leaves(first.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
