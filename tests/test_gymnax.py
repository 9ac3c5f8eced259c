"""gymnax environments through ``run_jax``'s ``JaxEnv`` adapter: CartPole-v1 against Gymnasium's
CartPole-v1 from the same states with the same actions, and termination told apart from
truncation exactly as gymnax's own predicates define them."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import demons
import horde
from horde.runs.jax_envs import as_jax_env

gymnax = pytest.importorskip("gymnax")

SUITES = {
    "CartPole-v1": ((4,), 2, 500),
    "Acrobot-v1": ((6,), 3, 500),
    "MountainCar-v0": ((2,), 3, 200),
    "Pendulum-v1": ((3,), None, 200),
    "Asterix-MinAtar": ((10, 10, 4), 5, 1000),
    "Breakout-MinAtar": ((10, 10, 4), 3, 1000),
    "Freeway-MinAtar": ((10, 10, 7), 3, 2500),
    "Seaquest-MinAtar": ((10, 10, 10), 6, 1000),
    "SpaceInvaders-MinAtar": ((10, 10, 6), 4, 1000),
}


def _cartpole_vector(state) -> np.ndarray:
    return np.array([state.x, state.x_dot, state.theta, state.theta_dot], np.float64)


def test_cartpole_one_step_from_each_state_equals_gymnasium_cartpole_v1():
    """From 60 states along random episodes, one step of each action: the same observation
    (to float32 rounding), reward and terminal flag as gymnasium.make("CartPole-v1")."""
    jenv = as_jax_env("gymnax:CartPole-v1", 0)
    step, reset = jax.jit(jenv.step), jax.jit(jenv.reset)
    genv = gym.make("CartPole-v1").unwrapped
    genv.reset(seed=0)
    rng = np.random.default_rng(0)
    key = jax.random.key(0)
    state, _ = reset(key)
    compared = 0
    while compared < 120:
        for action in (0, 1):
            genv.state, genv.steps_beyond_terminated = _cartpole_vector(state), None
            want_obs, want_reward, want_term, _, _ = genv.step(action)
            _, obs, reward, term = step(state, jnp.int32(action), key)
            np.testing.assert_allclose(np.asarray(obs), want_obs, rtol=2e-6, atol=1e-7)
            assert float(reward) == want_reward and bool(term) == want_term
            compared += 1
        state, _, _, term = step(state, jnp.int32(rng.integers(2)), key)
        if term:
            key = jax.random.fold_in(key, compared)
            state, _ = reset(key)


def test_cartpole_episodes_from_the_same_state_with_the_same_actions_equal_gymnasium():
    """Ten whole episodes of uniform random actions from gymnax's initial states: gymnax's
    float32 trajectory stays on Gymnasium's float64 one to float32 rounding (CartPole's upright
    equilibrium is unstable, so rounding differences grow slowly along an episode), and both
    end at the same step."""
    jenv = as_jax_env("gymnax:CartPole-v1", 0)
    step, reset = jax.jit(jenv.step), jax.jit(jenv.reset)
    genv = gym.make("CartPole-v1").unwrapped
    genv.reset(seed=0)
    rng = np.random.default_rng(1)
    lengths = []
    for episode in range(10):
        key = jax.random.key(episode)
        state, _ = reset(key)
        genv.state, genv.steps_beyond_terminated = _cartpole_vector(state), None
        for t in range(500):
            action = int(rng.integers(2))
            state, obs, reward, term = step(state, jnp.int32(action), key)
            want, want_reward, want_term, _, _ = genv.step(action)
            np.testing.assert_allclose(np.asarray(obs), want, rtol=1e-5, atol=1e-6)
            assert bool(term) == want_term and float(reward) == want_reward
            if want_term:
                break
        lengths.append(t + 1)
    assert sum(lengths) > 100 and all(n < 500 for n in lengths)


def _reference_flags(env, params, steps: int, seed: int):
    """A Python loop over gymnax's own ``step_env`` with run_jax's documented keys and uniform
    actions: per step (terminated, truncated) from gymnax's ``is_terminated`` and
    ``is_truncated`` (``state.time >= max_steps_in_episode``, not terminated)."""
    step_env = jax.jit(lambda k, s, a: env.step_env(k, s, a, params))
    reset_env = jax.jit(lambda k: env.reset_env(k, params))
    env_root = jax.random.fold_in(jax.random.key(seed), 1)
    _, state = reset_env(jax.random.fold_in(env_root, 0))
    step_root = jax.random.fold_in(env_root, 1)
    terms, truncs = [], []
    for t in range(steps):
        k_policy, k_env, k_reset = jax.random.split(jax.random.fold_in(step_root, t), 3)
        action = jax.random.randint(k_policy, (), 0, env.num_actions, jnp.int32)
        _, state, _, _, _ = step_env(k_env, state, action)
        term = bool(env.is_terminated(state, params))
        trunc = bool(env.is_truncated(state, params)) and not term
        terms.append(term)
        truncs.append(trunc)
        if term or trunc:
            _, state = reset_env(k_reset)
    return np.array(terms), np.array(truncs)


def test_termination_and_truncation_are_gymnaxs_own_predicates():
    """CartPole with a 20-step limit (given as gymnax parameters): run_jax marks a step
    terminated exactly where gymnax's ``is_terminated`` holds and truncated exactly where the
    limit is reached without termination; the episodes' lengths follow."""
    env, params = gymnax.make("CartPole-v1")
    params = params.replace(max_steps_in_episode=20)
    learner = horde.HordeLearner(demons.nexting(4, timescales=(1, 5)), hidden_sizes=())
    result = horde.run_jax(learner, (env, params), steps=600, seed=3, progress=False)
    terms, truncs = _reference_flags(env, params, 600, 3)
    assert terms.sum() > 5 and truncs.sum() > 5  # both kinds of ending happen
    np.testing.assert_array_equal(result.terminated[0], terms)
    np.testing.assert_array_equal(result.truncated[0], truncs)
    assert not np.any(terms & truncs)
    assert result.config["max_episode_steps"] == 20
    assert len(result.episode_length) == terms.sum() + truncs.sum()
    assert np.all(result.episode_length <= 20) and (result.episode_length == 20).sum() >= truncs.sum()


@pytest.mark.parametrize("name", sorted(SUITES))
def test_every_suite_has_its_spaces_and_time_limit(name):
    shape, n_actions, limit = SUITES[name]
    jenv = as_jax_env("gymnax:" + name, 0)
    assert jenv.name == "gymnax:" + name and jenv.default_limit == limit
    assert jenv.observation_space.shape == shape
    if n_actions is None:
        assert isinstance(jenv.action_space, gym.spaces.Box)
    else:
        assert jenv.action_space == gym.spaces.Discrete(n_actions)


def _one_step(name):
    jenv = as_jax_env("gymnax:" + name, 0)
    shape, n_actions, _ = SUITES[name]
    action = jnp.zeros((1,), jnp.float32) if n_actions is None else jnp.int32(n_actions - 1)
    state, obs = jax.jit(jenv.reset)(jax.random.key(0))
    _, obs, reward, term = jax.jit(jenv.step)(state, action, jax.random.key(1))
    assert np.asarray(obs).shape == shape and reward.shape == () and reward.dtype == jnp.float32
    assert term.shape == () and term.dtype == jnp.bool_


@pytest.mark.parametrize("name", ["Acrobot-v1", "MountainCar-v0", "Pendulum-v1"])
def test_classic_control_steps_compile_to_scalar_reward_and_flag(name):
    _one_step(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in sorted(SUITES) if n.endswith("MinAtar")])
def test_minatar_steps_compile_to_scalar_reward_and_flag(name):
    _one_step(name)


def test_the_time_limit_never_reaches_gymnaxs_done():
    """The step handed to the runner passes gymnax an unreachable limit, so its ``done`` is a
    termination only, whatever version folds the limit into it: a Pendulum state at its
    200th step does not end."""
    jenv = as_jax_env("gymnax:Pendulum-v1", 0)
    state, _ = jenv.reset(jax.random.key(0))
    state = state.replace(time=10**6)
    _, _, _, term = jenv.step(state, jnp.zeros((1,), jnp.float32), jax.random.key(1))
    assert not bool(term)


def test_unknown_gymnax_ids_and_objects_name_the_choices():
    with pytest.raises(ValueError, match="gymnax:CartPole-v1"):
        as_jax_env("gymnax:CartPole-v9", 0)
    with pytest.raises(TypeError, match="gymnax"):
        as_jax_env(object(), 0)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SUITES))
def test_run_jax_runs_every_suite_over_two_seeds(name):
    """Each suite end to end, vmapped over two seeds: endings are exclusive, Pendulum and
    MountainCar/Acrobot (under uniform actions) end only by truncation at their limit."""
    jenv = as_jax_env("gymnax:" + name, 0)
    learner = horde.HordeLearner(
        demons.nexting(min(jenv.observation_space.shape[-1], 4), timescales=(1, 10))
        + demons.reward_demons(timescales=(1, 10)),
        hidden_sizes=(16,),
    )
    result = horde.run_jax(learner, "gymnax:" + name, steps=3000, n_seeds=2, progress=False)
    assert result.predictions.shape == (2, 3000, learner.n_demons)
    assert np.all(np.isfinite(result.predictions))
    assert not np.any(result.terminated & result.truncated)
    if name in ("Pendulum-v1", "MountainCar-v0", "Acrobot-v1"):
        assert not result.terminated.any() and np.all(result.episode_length == SUITES[name][2])


def test_minatar_grid_reaches_the_learner_as_its_400_cells_in_zero_one():
    """Breakout-MinAtar's 10×10×4 grid becomes 400 features, flattened in C order (the channel
    varies fastest), each 0.0 or 1.0: at a reset, one paddle cell (channel 0), one ball cell
    (1), one trail cell (2) and three rows of ten bricks (3)."""
    jenv = as_jax_env("gymnax:Breakout-MinAtar", 0)
    _, obs = jenv.reset(jax.random.key(0))
    features = horde.FeatureMap(jenv.observation_space)
    x = np.asarray(jax.jit(features.jax_transform())(obs))
    assert features.dim == 400 and x.shape == (400,) and x.dtype == np.float32
    assert set(np.unique(x)) <= {0.0, 1.0}
    assert [int(x[c::4].sum()) for c in range(4)] == [1, 1, 1, 30]
    grid = x.reshape(10, 10, 4)
    assert np.all(grid[1:4, :, 3] == 1.0) and grid[:, :, 3].sum() == 30
