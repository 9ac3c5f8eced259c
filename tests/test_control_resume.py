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


def test_resume_refuses_actions_that_are_not_the_runs():
    lrn = learner()
    with pytest.raises(ValueError, match=r"actions must be the 5 actions the run took before start_step=5"):
        horde.run(lrn, walk(), steps=5, policy=POLICY, start_step=5, actions=np.zeros(4, np.int32))
    with pytest.raises(ValueError, match=r"actions must be in \[0, 2\), got values from 0 to 3"):
        horde.run(lrn, walk(), steps=5, policy=POLICY, start_step=2, actions=np.asarray([0, 3]))
    with pytest.raises(ValueError, match="actions is only for resuming a run whose behaviour acts"):
        horde.run(horde.HordeLearner(demons.reward_demons((2,))), walk(), steps=5, actions=np.zeros(0, np.int32))
