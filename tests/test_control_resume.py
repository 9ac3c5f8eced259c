"""Resuming a run whose behaviour acts on a control demon: ``horde.run`` for N steps, then
resumed for M more, is ``horde.run`` for N + M steps bit for bit (the learner state, the
actions, the records and the episodes); ``horde run --resume`` of a control run likewise."""

from __future__ import annotations

import gymnasium as gym
import jax
import numpy as np
import pytest

import demons
import envs  # noqa: F401  (registers horde/RandomWalk-v0)
import horde
from demons import cumulants, discounts, policies

# ε is still annealing at the resume step: its position must continue, not restart.
POLICY = horde.EpsilonGreedy("q", epsilon=0.05, start=1.0, anneal_steps=150)
N, M = 90, 150


def learner():
    q = demons.Demon("q", cumulants.reward(), discounts.constant(0.9), lamda=0.8, target_policy=policies.greedy())
    right = demons.Demon(
        "right|greedy", cumulants.observation(6), discounts.constant(0.8), target_policy=policies.greedy_in("q")
    )
    hl = horde.HordeLearner([*demons.reward_demons((2, 4)), right], hidden_sizes=(8,))
    return horde.ControlLearner([q], horde=hl, hidden_sizes=(8,))


def walk():
    return gym.make("horde/RandomWalk-v0", n_states=7)


def replayed(actions, seed):
    """The walk after ``actions`` from ``reset(seed=seed)``, and its observation: where a run
    that took them left its environment."""
    env = walk()
    obs, _ = env.reset(seed=seed)
    for a in actions.tolist():
        obs, _, term, trunc, _ = env.step(a)
        if term or trunc:
            obs, _ = env.reset()
    return env, obs


def drive(daemon, env, obs, n):
    """The ``n`` actions ``daemon`` takes driving ``env`` from ``obs``."""
    taken = [daemon.start(obs)]
    for _ in range(n - 1):
        obs, reward, term, trunc, _ = env.step(taken[-1])
        taken.append(daemon.step(reward, obs, term, trunc, env.reset()[0] if term or trunc else None))
    return taken


@pytest.fixture(scope="module")
def runs():
    lrn = learner()  # one learner: the three runs share its compiled step
    full = horde.run(lrn, walk(), steps=N + M, seed=4, policy=POLICY, chunk_size=64, record_every=3)
    first = horde.run(lrn, walk(), steps=N, seed=4, policy=POLICY, chunk_size=64, record_every=3)
    rest = horde.run(
        lrn,
        walk(),
        steps=M,
        seed=4,
        policy=POLICY,
        chunk_size=64,
        record_every=3,
        state=first.state,
        start_step=N,
        actions=first.actions[0],
    )
    return full, first, rest


def test_run_then_resume_equals_one_run_bit_for_bit(runs):
    full, first, rest = runs
    for a, b in zip(jax.tree_util.tree_leaves(full.state), jax.tree_util.tree_leaves(rest.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(full.actions, rest.actions)
    assert rest.actions.shape == (1, N + M) and len(set(full.actions[0].tolist())) == 2
    after = full.steps >= N
    np.testing.assert_array_equal(rest.steps, full.steps[after])
    for name in ("predictions", "td_errors", "cumulants", "discounts", "rewards", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(rest, name), getattr(full, name)[:, after], err_msg=name)
    later = full.episode_end_step >= N
    assert later.sum() >= 3 and (~later).sum() >= 3
    for name in ("episode_end_step", "episode_return", "episode_length"):
        np.testing.assert_array_equal(getattr(rest, name), getattr(full, name)[later], err_msg=name)
    # The first part's own records are the full run's first N steps.
    np.testing.assert_array_equal(first.predictions, full.predictions[:, ~after])
    assert rest.config["start_step"] == N and rest.total_steps == M


def test_an_acting_daemon_continues_a_run_from_its_state_and_step(runs):
    """An ``ActingDaemon`` given the state and step of the first part, driving the environment
    that replayed the first part's actions, takes the full run's actions from there on."""
    full, first, _ = runs
    env, obs = replayed(first.actions[0], seed=4)
    daemon = horde.ActingDaemon(learner(), POLICY, env.observation_space, 2, seed=4, state=first.state, start_step=N)
    np.testing.assert_array_equal(drive(daemon, env, obs, M), full.actions[0, N:])
    with pytest.raises(ValueError, match="state must be a ControlState of this learner"):
        horde.ActingDaemon(learner(), POLICY, env.observation_space, 3, state=first.state)


def test_an_acting_daemon_anneals_as_the_run_it_continues_with_the_default_annealing():
    """ε's default annealing is 5 % of the whole run, the steps before ``start_step``
    included, for a daemon as for ``horde.run``: a daemon continuing the first 100 steps of a
    300-step run (``steps=200``) takes the run's actions."""
    pol = horde.EpsilonGreedy("q", epsilon=0.05, start=1.0)  # annealed over 5 % of 300 = 15 steps
    lrn = learner()
    full = horde.run(lrn, walk(), steps=300, seed=5, policy=pol, progress=False)
    first = horde.run(lrn, walk(), steps=100, seed=5, policy=horde.EpsilonGreedy("q", 0.05, 1.0, 15), progress=False)
    np.testing.assert_array_equal(first.actions[0], full.actions[0, :100])
    env, obs = replayed(first.actions[0], seed=5)
    daemon = horde.ActingDaemon(
        lrn, pol, env.observation_space, 2, seed=5, state=first.state, start_step=100, steps=200
    )
    np.testing.assert_array_equal(drive(daemon, env, obs, 200), full.actions[0, 100:])
    # Past step 15 either length gives ε's floor, so the schedule itself is read too.
    assert float(daemon._anneal) == 15.0
    assert float(horde.ActingDaemon(lrn, pol, env.observation_space, 2, start_step=2000, steps=2000)._anneal) == 200.0


def test_resume_refuses_actions_that_are_not_the_runs():
    lrn = learner()
    with pytest.raises(ValueError, match=r"actions must be the 5 actions the run took before start_step=5"):
        horde.run(lrn, walk(), steps=5, policy=POLICY, start_step=5, actions=np.zeros(4, np.int32))
    with pytest.raises(ValueError, match=r"actions must be in \[0, 2\), got values from 0 to 3"):
        horde.run(lrn, walk(), steps=5, policy=POLICY, start_step=2, actions=np.asarray([0, 3]))
    with pytest.raises(ValueError, match="actions is only for resuming a run whose behaviour acts"):
        horde.run(horde.HordeLearner(demons.reward_demons((2,))), walk(), steps=5, actions=np.zeros(0, np.int32))


# ---------------------------------------------------------------------------------------------
# horde run --resume of a control run

CONTROL_TOML = """
[env]
id = "horde/RandomWalk-v0"
kwargs = { n_states = 7 }

[run]
steps = STEPS
seed = 3
seeds = 2
record_every = 2
chunk_size = 50

[policy]
kind = "epsilon_greedy"
demon = "q"
epsilon = 0.05
anneal_steps = 150

[control]
hidden_sizes = [8]

[learner]
hidden_sizes = [8]

[[demons]]
name = "q"
cumulant = { kind = "reward" }
discount = { kind = "constant", gamma = 0.9 }
lamda = 0.8
target_policy = { kind = "greedy" }

[[demons]]
name = "right|greedy"
cumulant = { kind = "observation", index = 6 }
discount = { kind = "constant", gamma = 0.8 }
target_policy = { kind = "greedy_in", demon = "q" }

[reward_demons]
timescales = [2]
"""


@pytest.mark.slow  # three `horde run`s with their figures: about a minute on 2 cores
def test_horde_run_resumes_a_control_run_bit_for_bit(tmp_path, monkeypatch, capsys):
    """``horde run`` for 90 steps, ``--resume --steps 150``: the checkpoint (every seed's
    ControlState, the step, the actions) and the joined records equal a 240-step run's."""
    import json

    from horde.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "full.toml").write_text(CONTROL_TOML.replace("STEPS", str(N + M)))
    (tmp_path / "first.toml").write_text(CONTROL_TOML.replace("STEPS", str(N)))
    assert main(["run", "full.toml", "--out", "full", "--no-progress"]) == 0
    assert main(["run", "first.toml", "--out", "first", "--no-progress"]) == 0
    assert main(["run", "--resume", "first", "--steps", str(M), "--out", "resumed", "--no-progress"]) == 0
    _, whole_state, whole_meta = horde.load_checkpoint(tmp_path / "full" / "checkpoint.npz")
    learner, state, meta = horde.load_checkpoint(tmp_path / "resumed" / "checkpoint.npz")
    assert isinstance(learner, horde.ControlLearner) and meta["step"] == N + M
    assert meta["control_actions"] == whole_meta["control_actions"]
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(whole_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    whole, joined = horde.RunResult.load(tmp_path / "full"), horde.RunResult.load(tmp_path / "resumed")
    np.testing.assert_array_equal(joined.steps, whole.steps)
    for name in ("predictions", "td_errors", "rewards", "episode_seed", "episode_end_step", "episode_return"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name), err_msg=name)

    # A changed control setting, behaviour or prediction demon is refused, each difference listed.
    config = json.loads((tmp_path / "first" / "config.json").read_text())
    config["control"]["hidden_sizes"] = [16]
    config["policy"]["epsilon"] = 0.1
    config["demons"][1]["discount"]["gamma"] = 0.7
    (tmp_path / "first" / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["run", "--resume", "first", "--steps", "10", "--out", "again", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "learner.hidden_sizes: [8] in the checkpoint, [16] in the config" in err
    assert "'epsilon': 0.05" in err and "'epsilon': 0.1" in err
    assert "learner.horde.demons: changed ['right|greedy']" in err


def test_a_resume_refuses_a_state_of_another_learner_naming_what_differs(runs):
    """The state is checked against the learner before any step: another learner's (another
    hidden size) or a prediction Horde's state is a ValueError naming ``state``, never a
    reshape or attribute error from inside the step."""
    _, first, _ = runs
    q = demons.Demon("q", cumulants.reward(), discounts.constant(0.9), lamda=0.8, target_policy=policies.greedy())
    wider = horde.ControlLearner([q], horde=horde.HordeLearner(list(demons.reward_demons((2,))), hidden_sizes=(8,)))
    with pytest.raises(ValueError, match=r"horde\.run: state must be a ControlState of this learner"):
        horde.run(
            wider, walk(), steps=5, seed=4, policy=POLICY, state=first.state, start_step=N, actions=first.actions[0]
        )
    with pytest.raises(ValueError, match=r"state must be a ControlState .* got HordeState"):
        horde.run(
            learner(),
            walk(),
            steps=5,
            seed=4,
            policy=POLICY,
            state=first.state.horde,
            start_step=N,
            actions=first.actions[0],
        )


def test_records_of_another_seed_are_not_appended_to(runs, tmp_path):
    """Resuming into a records store written by a run with another seed is refused, listing
    the seed: its stream is another one (a silent mix of two seeds' records before)."""
    _, first, _ = runs
    lrn = learner()
    start = horde.run(lrn, walk(), steps=N, seed=4, policy=POLICY, chunk_size=64, record_every=3, record_to=tmp_path)
    with pytest.raises(horde.RecordsError, match=r"another run \(seed: stored 4, this run 5\)"):
        horde.run(
            lrn,
            walk(),
            steps=10,
            seed=5,
            policy=POLICY,
            chunk_size=64,
            record_every=3,
            record_to=tmp_path,
            state=start.state,
            start_step=N,
            actions=start.actions[0],
        )
    assert horde.RunResult.load(tmp_path).total_steps == N  # the stored records are untouched


def test_boundary_of_an_acting_run():
    """A ControlLearner without an acting behaviour, a record_to that is not a path, and NumPy
    scalars for ε."""
    with pytest.raises(ValueError, match=r"give policy=horde\.EpsilonGreedy"):
        horde.run(learner(), walk(), steps=5)
    with pytest.raises(ValueError, match=r"record_to must be a directory path .* got 123"):
        horde.run(learner(), walk(), steps=5, policy=POLICY, record_to=123)
    assert horde.EpsilonGreedy("q", epsilon=np.float32(0.25), start=np.float64(1.0)).epsilon == 0.25
    with pytest.raises(ValueError, match="epsilon must be a number in"):
        horde.EpsilonGreedy("q", epsilon=np.bool_(True))
