"""Control demons in runs: ``horde.run`` acting on a control demon's latest values (one compiled
call per step) against ``run_jax`` on an environment with the same dynamics in both forms."""

from __future__ import annotations

import warnings

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
    # The trunk-only network (no head features): the stream these tests count episodes in.
    return horde.ControlLearner([q], horde=hl, hidden_sizes=(8,), head_features=None)


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
    with pytest.raises(ValueError, match=r"actions must be the 3 actions the run took before start_step=3"):
        horde.run(control_learner(False), walk(), steps=5, policy=POLICY, start_step=3)
    vec = gym.make_vec("horde/RandomWalk-v0", num_envs=2, vectorization_mode="sync")
    with pytest.raises(ValueError, match="single environment"):
        horde.run(control_learner(False), vec, steps=5, policy=POLICY)
    with pytest.raises(ValueError, match="no control demon named 'nope'"):
        horde.run(control_learner(False), walk(), steps=5, policy=horde.EpsilonGreedy("nope"))
    # The acting path goes through the same seed check as every run (1.5 was truncated to 1).
    with pytest.raises(TypeError, match="seed must be a non-negative integer, got 1.5"):
        horde.run(control_learner(False), walk(), steps=5, policy=POLICY, seed=1.5)


class _NaNReward(gym.Wrapper):
    def step(self, action):
        obs, reward, term, trunc, info = self.env.step(action)
        self.steps = getattr(self, "steps", 0) + 1
        return obs, float("nan") if self.steps == 17 else reward, term, trunc, info


def test_acting_refuses_a_nan_reward_naming_the_step():
    with pytest.raises(ValueError, match="reward must not be NaN, got nan from the environment at step 16"):
        horde.run(control_learner(False), _NaNReward(walk()), steps=40, policy=POLICY, chunk_size=10)


def test_acting_streams_the_records_it_returns(tmp_path, both_runs):
    """``record_to`` with an acting run: the stored records are the returned ones, and those of
    the first run (same seed) too."""
    python, _ = both_runs
    learner = control_learner()
    state = learner.init_traced(7, jax.random.key(3), 2)
    result = horde.run(
        learner, walk(), steps=240, seed=3, policy=POLICY, chunk_size=100, state=state, record_to=tmp_path
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # complete: no partial-run warning
        loaded = horde.RunResult.load(tmp_path)
    assert not loaded.partial and loaded.total_steps == 240 and loaded.config == result.config
    for name in ("steps", "predictions", "td_errors", "rewards", "terminated", "episode_end_step", "episode_return"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name), err_msg=name)
        np.testing.assert_array_equal(getattr(loaded, name), getattr(python, name), err_msg=name)


def test_an_acting_run_that_stops_keeps_the_records_of_every_chunk_learned(tmp_path, both_runs):
    python, _ = both_runs

    def callback(done, state):
        if done == 200:
            raise RuntimeError("disk full")

    with pytest.raises(horde.RunError, match="the callback raised RuntimeError after step 200"):
        horde.run(
            control_learner(),
            walk(),
            steps=240,
            seed=3,
            policy=POLICY,
            chunk_size=100,
            record_to=tmp_path,
            callback=callback,
        )
    with pytest.warns(UserWarning, match="partial run"):
        loaded = horde.RunResult.load(tmp_path)
    assert loaded.partial and loaded.total_steps == 200
    np.testing.assert_array_equal(loaded.predictions, python.predictions[:, :200])
    np.testing.assert_array_equal(loaded.episode_end_step, python.episode_end_step[python.episode_end_step < 200])


# ---------------------------------------------------------------------------------------------
# Returns: the numbers the plot draws, and the figure


def returns_result(episodes, n_seeds=2, total=100):
    """A RunResult with only episodes: rows (seed, end step, return)."""
    e = np.asarray(episodes, np.float64).reshape(-1, 3)
    empty = np.zeros((n_seeds, 0, 1), np.float32)
    flags = np.zeros((n_seeds, 0), bool)
    return horde.RunResult(
        demon_names=("q",),
        steps=np.zeros(0, np.int64),
        predictions=empty,
        td_errors=empty,
        cumulants=empty,
        discounts=empty,
        rewards=np.zeros((n_seeds, 0), np.float32),
        terminated=flags,
        truncated=flags,
        valid=flags,
        episode_seed=e[:, 0].astype(np.int64),
        episode_end_step=e[:, 1].astype(np.int64),
        episode_return=e[:, 2],
        episode_length=np.ones(len(e), np.int64),
        wall_time=1.0,
        total_steps=total,
        record_every=1,
        config={},
        state=None,
    )


def test_returns_on_grid_is_the_trailing_mean_of_the_latest_finished_episodes():
    # Seed 0: returns 10, 20, 60 ending at steps 9, 29, 49; seed 1: 5 ending at 79.
    r = returns_result([(0, 9, 10), (0, 29, 20), (1, 79, 5), (0, 49, 60)])
    grid, values = horde.plots.returns_on_grid(r, window=2, points=11)  # steps 0, 10, ..., 100
    np.testing.assert_array_equal(grid, np.arange(0, 101, 10))
    expected0 = [np.nan, 10, 10, 15, 15, 40, 40, 40, 40, 40, 40]
    expected1 = [np.nan] * 8 + [5, 5, 5]
    np.testing.assert_array_equal(values, [expected0, expected1])
    np.testing.assert_array_equal(horde.plots.last_returns(r, 2), [40.0, 5.0])
    np.testing.assert_array_equal(horde.plots.last_returns(r, 20), [30.0, 5.0])


def test_plot_returns_draws_the_mean_and_the_seed_band(tmp_path):
    r = returns_result([(0, 9, 10), (0, 29, 20), (1, 79, 5), (0, 49, 60)])
    fig = horde.plots.plot_returns(r, window=2, path=tmp_path / "returns.png")
    ax = fig.axes[0]
    _, values = horde.plots.returns_on_grid(r, window=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before any episode
        mean = np.nanmean(values, axis=0)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), mean)
    assert len(ax.collections) == 1  # the min-max band
    assert (tmp_path / "returns.png").stat().st_size > 0
    with pytest.raises(ValueError, match="needs finished episodes"):
        horde.plots.plot_returns(returns_result([]))


# ---------------------------------------------------------------------------------------------
# horde run with a control demon


CONTROL_TOML = """
[env]
id = "horde/RandomWalk-v0"
kwargs = { n_states = 5 }

[run]
steps = 120
seeds = 2
seed = 4
chunk_size = 50

[policy]
kind = "epsilon_greedy"
demon = "walk"
epsilon = 0.1
anneal_steps = 30

[control]
hidden_sizes = [4]

[learner]
hidden_sizes = [4]

[[demons]]
name = "walk"
cumulant = { kind = "reward" }
discount = { kind = "constant", gamma = 0.9 }
target_policy = { kind = "greedy" }

[reward_demons]
timescales = [2]
"""


@pytest.mark.slow
def test_horde_run_runs_a_control_demon_per_seed_and_prints_returns(tmp_path):
    import subprocess
    import sys

    (tmp_path / "control.toml").write_text(CONTROL_TOML)
    p = subprocess.run(
        [sys.executable, "-m", "horde.cli.main", "run", "control.toml", "--out", "out", "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    saved = horde.RunResult.load(tmp_path / "out")
    assert saved.n_seeds == 2 and saved.demon_names == ("walk", "reward@2")
    # Seed 5 (the second) is the single run with seed 5.
    single = horde.run(
        horde.ControlLearner(
            [demons.Demon("walk", cumulants.reward(), discounts.constant(0.9), target_policy=policies.greedy())],
            horde=horde.HordeLearner(demons.reward_demons((2,)), hidden_sizes=(4,)),
            hidden_sizes=(4,),
        ),
        gym.make("horde/RandomWalk-v0", n_states=5),
        steps=120,
        seed=5,
        policy=horde.EpsilonGreedy("walk", epsilon=0.1, anneal_steps=30),
    )
    np.testing.assert_array_equal(saved.episode_return[saved.episode_seed == 1], single.episode_return)
    np.testing.assert_allclose(saved.predictions[1], single.predictions[0], rtol=1e-6)
    last = horde.plots.last_returns(saved, 20)
    assert f"seed 4: {last[0]:.1f}" in p.stdout and f"seed 5: {last[1]:.1f}" in p.stdout
    assert (tmp_path / "out" / "returns.png").exists()


@pytest.mark.parametrize(
    "policy, message",
    [
        ('kind = "epsilon_greedy"\ndemon = "reward@2"', "policy.demon must name a control demon"),
        ('kind = "epsilon_greedy"\ndemon = "walk"\nepsilon = 2', "policy.epsilon must be a number in"),
        ('kind = "epsilon_greedy"\ndemon = "walk"\nwhat = 1', "config key policy must be keys"),
    ],
)
def test_control_configs_are_checked(policy, message):
    import tomllib

    from horde.cli.config import ConfigError, validate_config

    text = CONTROL_TOML.replace('kind = "epsilon_greedy"\ndemon = "walk"\nepsilon = 0.1\nanneal_steps = 30', policy)
    with pytest.raises(ConfigError, match=message):
        validate_config(tomllib.loads(text))


def test_an_acting_daemon_driving_the_env_takes_run_s_actions(both_runs):
    """The daemon's step is the runner's: driving the same environment by hand with seed 3
    gives the same stream and predictions as ``horde.run(..., seed=3)``."""
    python, _ = both_runs
    env = walk()
    learner = control_learner()
    daemon = horde.ActingDaemon(learner, POLICY, env.observation_space, 2, seed=3)
    obs, _ = env.reset(seed=3)
    action = daemon.start(obs)
    rewards, ends = [], []
    for t in range(240):
        obs, reward, term, trunc, _ = env.step(action)
        reset = env.reset()[0] if term or trunc else None
        action = daemon.step(reward, obs, term, trunc, reset)
        rewards.append(reward)
        if term or trunc:
            ends.append(t)
    np.testing.assert_array_equal(rewards, python.rewards[0])
    np.testing.assert_array_equal(ends, python.episode_end_step)
    final = learner.values_traced(daemon.state, jax.numpy.asarray(obs, jax.numpy.float32))
    assert np.isfinite(np.asarray(final)).all()
    with pytest.raises(ValueError, match="give reset_observation"):
        daemon.step(0.0, obs, True, False)


def test_an_acting_daemon_refuses_bad_arguments_and_non_finite_observations_by_name():
    learner, space = control_learner(with_horde=False), gym.spaces.Box(-1.0, 1.0, (7,))
    pol = horde.EpsilonGreedy("q", anneal_steps=5)
    for kwargs, message in (
        ({"n_actions": 2.7}, "n_actions must be an integer >= 1, got 2.7"),
        ({"n_actions": True}, "n_actions must be an integer >= 1, got True"),
        ({"n_actions": 0}, "n_actions must be an integer >= 1, got 0"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"steps": -1}, "steps must be an integer >= 1, got -1"),
    ):
        args = {"n_actions": 2, **kwargs}
        with pytest.raises(ValueError, match=f"ActingDaemon: {message}"):
            horde.ActingDaemon(learner, pol, space, args.pop("n_actions"), **args)
    daemon = horde.ActingDaemon(learner, pol, space, 2)
    with pytest.raises(ValueError, match="ActingDaemon.start: observation must be finite"):
        daemon.start(np.full(7, np.nan))
    daemon.start(np.zeros(7))
    before = daemon.state
    with pytest.raises(ValueError, match="ActingDaemon.step: reset_observation must be finite"):
        daemon.step(1.0, np.zeros(7), True, False, reset_observation=np.full(7, np.inf))
    # Refused before it learned: the state is the one before the call.
    for a, b in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(daemon.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_an_annealing_longer_than_int32_counts_runs_and_anneals():
    """ε's schedule divides in float32: a length beyond 2**31 is no overflow inside JAX."""
    pol = horde.EpsilonGreedy("q", epsilon=0.0, start=1.0, anneal_steps=10**12)
    np.testing.assert_allclose(float(pol.epsilon_at(5 * 10**11, 10**12)), 0.5, rtol=1e-6)
    r = horde.run(control_learner(with_horde=False), walk(), steps=20, policy=pol, progress=False)
    assert r.actions.shape == (1, 20)


def test_runs_of_any_length_share_one_compiled_step_and_anneal_over_their_own_length():
    """ε's default annealing (5 % of the run) is data in the carry, not compiled in: a second
    run of another length compiles nothing new, and takes the actions run_jax takes for that
    length (its ε annealed over its own length, not the first run's)."""
    from horde.runs import acting

    pol = horde.EpsilonGreedy("q", epsilon=0.1, start=1.0)  # annealed over 5 % of each run
    learner = control_learner(with_horde=False)
    sizes = []
    real = acting._compiled

    def counted(*args, **kwargs):
        fns = real(*args, **kwargs)
        sizes.append(fns.step._cache_size())
        return fns

    acting._compiled = counted
    try:
        horde.run(learner, walk(), steps=100, policy=pol, progress=False)
        second = horde.run(learner, walk(), steps=1000, policy=pol, progress=False)
    finally:
        acting._compiled = real
    assert len([k for k in learner.__dict__["_horde_runs_compiled"] if k[0] == "act"]) == 1
    assert sizes == [0, 1]  # the second run found the step compiled by the first
    # run_jax compiles the run's own length in: the same episodes, so the same actions.
    compiled = horde.run_jax(control_learner(with_horde=False), walk(), steps=1000, policy=pol)
    assert len(second.episode_end_step) >= 20
    np.testing.assert_array_equal(second.episode_end_step, compiled.episode_end_step)


def test_an_acting_run_longer_than_its_step_counter_and_an_unresolved_annealing_are_refused_by_name():
    pol = horde.EpsilonGreedy("q", anneal_steps=10)
    with pytest.raises(ValueError, match=r"start_step \+ steps must be at most 4294967295, got 0 \+ 8589934592"):
        horde.run(control_learner(with_horde=False), walk(), steps=2**33, policy=pol, progress=False)
    with pytest.raises(ValueError, match=r"anneal_steps must be a length, got None; resolved_anneal_steps"):
        horde.EpsilonGreedy("q").epsilon_at(5, None)
