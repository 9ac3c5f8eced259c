"""``horde.run`` acting: every observation the environment returns is checked at its step, with
the exact answer for values at the edges of float32 (the largest finite ones pass, an infinity or
a NaN in any entry stops the run naming the step and the observation)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import demons
import horde
from demons import cumulants, discounts, policies

POLICY = horde.EpsilonGreedy("q", epsilon=0.1, anneal_steps=20)
BIG = float(np.finfo(np.float32).max)


class _Line(gym.Env):
    """Two actions, a three-entry observation; ``bad`` maps a step (counted from 1) to the
    observation the environment returns there; episodes of 7 steps (truncated)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, bad: dict[int, list[float]], bad_reset: dict[int, list[float]] | None = None):
        self.bad, self.bad_reset, self.steps, self.resets, self.t = bad, bad_reset or {}, 0, 0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.resets, self.t = self.resets + 1, 0
        return np.asarray(self.bad_reset.get(self.resets, [0.1, -0.2, 0.3]), np.float32), {}

    def step(self, action):
        self.steps, self.t = self.steps + 1, self.t + 1
        obs = np.asarray(self.bad.get(self.steps, [0.1 * action, 0.2, -0.1]), np.float32)
        return obs, 1.0, False, self.t == 7, {}


_Q = demons.Demon("q", cumulants.reward(), discounts.constant(0.9), lamda=0.8, target_policy=policies.greedy())
# One learner for every test: its compiled step is cached on it.
_LEARNER = horde.ControlLearner([_Q], hidden_sizes=(4,), head_features=None)


def learner():
    return _LEARNER


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("entry", [0, 2])
def test_a_non_finite_observation_stops_the_run_at_its_step(value, entry):
    obs = [0.5, 0.5, 0.5]
    obs[entry] = value
    with pytest.raises(ValueError, match=r"non-finite observation at step 11: array\(\[") as e:
        horde.run(learner(), _Line({12: obs}), steps=30, policy=POLICY, chunk_size=8)
    assert str(value) in str(e.value)


def test_the_largest_finite_observations_pass_the_check():
    # Their squares and sums overflow float32: a check through either would refuse them. The
    # learner does not survive them: the run stops on its divergence, after the check.
    with pytest.raises(horde.DivergenceError, match=r"learning diverged at step 1[01]:"):
        horde.run(learner(), _Line({11: [BIG, BIG, -BIG]}), steps=30, policy=POLICY, chunk_size=8)


def test_a_non_finite_reset_observation_stops_the_run_after_its_step():
    with pytest.raises(ValueError, match=r"reset returned a non-finite observation after step 13: array\(\["):
        horde.run(learner(), _Line({}, {3: [0.0, np.nan, 0.0]}), steps=30, policy=POLICY, chunk_size=8)
