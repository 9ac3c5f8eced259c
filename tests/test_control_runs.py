"""Control demons in runs: ``horde.run`` acting on a control demon's latest values (one compiled
call per step) against ``run_jax`` on an environment with the same dynamics in both forms."""

from __future__ import annotations

import gymnasium as gym
import jax
import numpy as np
import pytest

import demons
import envs  # noqa: F401  (registers horde/RandomWalk-v0)
import horde
from demons import cumulants, discounts, policies


def control_learner(with_horde=True):
    q = demons.Demon("q", cumulants.reward(), discounts.constant(0.9), lamda=0.8, target_policy=policies.greedy())
    hl = horde.HordeLearner(demons.reward_demons((2, 4)), hidden_sizes=(8,)) if with_horde else None
    return horde.ControlLearner([q], horde=hl, hidden_sizes=(8,))


def walk():
    # Deterministic moves and start: the Python and JAX forms have the same dynamics.
    return gym.make("horde/RandomWalk-v0", n_states=7)


POLICY = horde.EpsilonGreedy("q", epsilon=0.1, anneal_steps=60)


@pytest.fixture(scope="module")
def both_runs():
    learner = control_learner()
    state = learner.init_traced(7, jax.random.key(3), 2)  # what run_jax starts from with seed 3
    before = np.asarray(state.params[1].weights).copy()
    python = horde.run(learner, walk(), steps=240, seed=3, policy=POLICY, chunk_size=100, state=state)
    # The step donates its carry, never the caller's state.
    np.testing.assert_array_equal(np.asarray(state.params[1].weights), before)
    compiled = horde.run_jax(control_learner(), walk(), steps=240, seed=3, policy=POLICY)
    return python, compiled


def test_run_acts_as_run_jax_does_for_the_same_seed(both_runs):
    """Same key derivation, same weights: the same actions, so the same stream, episodes and
    (to float32 rounding) the same predictions of every demon."""
    python, compiled = both_runs
    assert len(python.episode_return) >= 10
    np.testing.assert_array_equal(python.episode_end_step, compiled.episode_end_step)
    np.testing.assert_array_equal(python.episode_return, compiled.episode_return)
    np.testing.assert_array_equal(python.episode_length, compiled.episode_length)
    np.testing.assert_array_equal(python.rewards, compiled.rewards)
    np.testing.assert_array_equal(python.terminated, compiled.terminated)
    np.testing.assert_allclose(python.predictions, compiled.predictions, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(python.td_errors, compiled.td_errors, rtol=1e-5, atol=1e-6)
    assert python.demon_names == ("q", "reward@2", "reward@4")
    assert python.config["runner"] == "run" and python.config["anneal_steps"] == 60


def test_episode_returns_add_up_the_recorded_rewards(both_runs):
    python, _ = both_runs
    ends = python.episode_end_step
    rewards = python.rewards[0]
    starts = np.concatenate([[0], ends[:-1] + 1])
    np.testing.assert_allclose(python.episode_return, [rewards[s : e + 1].sum() for s, e in zip(starts, ends)])
    np.testing.assert_array_equal(python.episode_length, ends - starts + 1)


@pytest.mark.slow
def test_chunk_size_and_record_every_do_not_change_the_numbers(both_runs):
    python, _ = both_runs
    other = horde.run(control_learner(), walk(), steps=240, seed=3, policy=POLICY, chunk_size=7, record_every=3)
    np.testing.assert_array_equal(other.steps, np.arange(0, 240, 3))
    np.testing.assert_allclose(other.predictions, python.predictions[:, ::3], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(other.episode_end_step, python.episode_end_step)


def test_run_refuses_what_acting_cannot_do():
    with pytest.raises(ValueError, match="must be a horde.ControlLearner"):
        horde.run(horde.HordeLearner(demons.reward_demons((2,)), hidden_sizes=(4,)), walk(), steps=5, policy=POLICY)
    with pytest.raises(ValueError, match="start_step must be 0"):
        horde.run(control_learner(False), walk(), steps=5, policy=POLICY, start_step=3)
    vec = gym.make_vec("horde/RandomWalk-v0", num_envs=2, vectorization_mode="sync")
    with pytest.raises(ValueError, match="single environment"):
        horde.run(control_learner(False), vec, steps=5, policy=POLICY)
    with pytest.raises(ValueError, match="no control demon named 'nope'"):
        horde.run(control_learner(False), walk(), steps=5, policy=horde.EpsilonGreedy("nope"))
