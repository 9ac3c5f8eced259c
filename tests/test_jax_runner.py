"""The compiled runner ``horde.runs.jax_runner.run_jax``: the same transitions as a plain Python loop
over the same functional environment, known answers on the ``envs`` tasks, seeds and chunks."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.envs.phys2d.cartpole import CartPoleFunctional
from gymnasium.envs.phys2d.pendulum import PendulumFunctional
from gymnasium.experimental.functional import FuncEnv

import demons
import envs
import horde
from demons import Demon
from demons import cumulants as C
from demons import discounts as D
from demons import policies as P
from horde.runs.jax_runner import run_jax

CARTPOLE_DEMONS = demons.nexting(4, timescales=(1, 10), lamda=0.5) + demons.reward_demons(timescales=(1, 10))


def _keys(seed: int):
    """The documented key derivation of run_jax for one copy."""
    base = jax.random.key(seed)
    env_root = jax.random.fold_in(base, 1)
    return base, jax.random.fold_in(env_root, 0), jax.random.fold_in(env_root, 1)


def _python_loop(learner, func: FuncEnv, steps: int, seed: int, limit: int, sample_action):
    """Steps ``func``'s methods one transition at a time, with run_jax's keys, and learns with
    ``update_from_transition`` after every step. Returns (predictions, rewards, terminated,
    truncated, final state)."""
    transition, observation = jax.jit(func.transition), jax.jit(func.observation)
    reward_fn, terminal = jax.jit(func.reward), jax.jit(func.terminal)
    initial = jax.jit(func.initial)
    base, first_key, step_root = _keys(seed)
    dim = int(np.prod(func.observation_space.shape))
    state = learner.init(dim, base)
    s = initial(first_key)
    obs = observation(s, first_key)
    in_episode = 0
    preds, rewards, terms, truncs = [], [], [], []
    for t in range(steps):
        k_policy, k_env, k_reset = jax.random.split(jax.random.fold_in(step_root, t), 3)
        action, prob = sample_action(k_policy)
        s_next = transition(s, action, k_env)
        obs_next = observation(s_next, k_env)
        reward = float(reward_fn(s, action, s_next, k_env))
        term = bool(terminal(s_next, k_env))
        in_episode += 1
        trunc = in_episode >= limit and not term
        r = learner.update_from_transition(
            state,
            np.asarray(obs, np.float32).ravel(),
            action,
            reward,
            np.asarray(obs_next, np.float32).ravel(),
            terminated=term,
            truncated=trunc,
            behaviour_prob=prob,
        )
        state = r.state
        preds.append(np.asarray(r.predictions))
        rewards.append(reward)
        terms.append(term)
        truncs.append(trunc)
        if term or trunc:
            s = initial(k_reset)
            obs = observation(s, k_reset)
            in_episode = 0
        else:
            s, obs = s_next, obs_next
    return np.stack(preds), np.asarray(rewards), np.asarray(terms), np.asarray(truncs), state


def _uniform_discrete(n):
    return lambda key: (jax.random.randint(key, (), 0, n, jnp.int32), 1.0 / n)


def _tree_allclose(a: Any, b: Any, **kw) -> None:
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


def test_cartpole_scan_equals_python_loop_over_the_same_functional_env():
    learner = horde.HordeLearner(CARTPOLE_DEMONS, hidden_sizes=(16, 16), step_size=0.01, bounder=horde.ObGDBounding())
    func = CartPoleFunctional()
    steps, limit = 160, 12  # random CartPole episodes last ~20 steps: both kinds of episode end
    result = run_jax(learner, func, steps=steps, seed=3, max_episode_steps=limit, chunk_size=64, progress=False)
    preds, rewards, terms, truncs, state = _python_loop(learner, func, steps, 3, limit, _uniform_discrete(2))
    assert terms.sum() >= 2 and truncs.sum() >= 5
    np.testing.assert_array_equal(result.terminated[0], terms)
    np.testing.assert_array_equal(result.truncated[0], truncs)
    np.testing.assert_array_equal(result.rewards[0], rewards.astype(np.float32))
    np.testing.assert_allclose(result.predictions[0], preds, rtol=1e-5, atol=1e-6)
    _tree_allclose(result.state, state, rtol=1e-5, atol=1e-6)
    # Episodes: one per end, lengths add up to the finished steps, CartPole's reward is 1.
    ends = np.flatnonzero(terms | truncs)
    np.testing.assert_array_equal(result.episode_end_step, ends)
    np.testing.assert_array_equal(result.episode_length, np.diff(np.concatenate([[-1], ends])))
    np.testing.assert_array_equal(result.episode_return, result.episode_length.astype(float))
    assert result.valid.all() and result.predictions.shape == (1, steps, len(CARTPOLE_DEMONS))


def test_pendulum_box_actions_scan_equals_python_loop():
    learner = horde.HordeLearner(
        demons.nexting(3, timescales=(1, 5)) + demons.reward_demons(timescales=(1,)),
        hidden_sizes=(8,),
        step_size=0.01,
    )
    func = PendulumFunctional()
    low, high = func.action_space.low, func.action_space.high

    def uniform_box(key):
        return jax.random.uniform(key, (1,), jnp.float32, low, high), 1.0

    result = run_jax(learner, func, steps=60, seed=1, max_episode_steps=25, chunk_size=32, progress=False)
    preds, rewards, terms, truncs, _ = _python_loop(learner, func, 60, 1, 25, uniform_box)
    assert truncs.sum() == 2 and not terms.any()
    np.testing.assert_array_equal(result.truncated[0], truncs)
    np.testing.assert_allclose(result.rewards[0], rewards, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.predictions[0], preds, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.episode_length, [25, 25])


def test_random_walk_td0_reaches_true_values():
    learner = horde.HordeLearner(
        [Demon("v", C.reward(), D.constant(1.0))], hidden_sizes=(), step_size=0.002, sparsity=0.0
    )
    env = envs.RandomWalk()
    result = run_jax(learner, env, steps=30_000, seed=0, record_every=100, progress=False)
    values = np.asarray([float(learner.predict(result.state, x)[0]) for x in np.eye(5, dtype=np.float32)])
    rms = float(np.sqrt(np.mean((values - np.arange(1, 6) / 6) ** 2)))
    assert rms < 0.05, (values, rms)
    assert len(result.episode_return) > 1000
    assert set(np.unique(result.episode_return)) <= {0.0, 1.0}
    assert result.predictions.shape == (1, 300, 1)
    np.testing.assert_array_equal(result.steps, np.arange(0, 30_000, 100))


def test_collision_off_policy_with_the_envs_behaviour_policy_approaches_true_values():
    forward = Demon("collide", C.reward(), D.constant(0.9), target_policy=P.fixed([1.0, 0.0]))
    learner = horde.HordeLearner([forward], hidden_sizes=(), step_size=0.02, sparsity=0.0, secondary_step_size=0.02)
    env = envs.Collision(features="onehot")
    result = run_jax(learner, env, steps=40_000, seed=0, policy="env", record_every=1000, progress=False)
    values = np.asarray([float(learner.predict(result.state, x)[0]) for x in np.eye(8, dtype=np.float32)])
    true = envs.Collision.true_values()
    np.testing.assert_allclose(values, true, atol=0.1)
    assert float(np.sqrt(np.mean((values - true) ** 2))) < 0.05


# One learner, environment object and settings for the seed and chunk tests, so that their
# single-seed runs share one compiled function (run_jax caches it on the learner).
SHARED = dict(max_episode_steps=20, record_every=3, progress=False)


@pytest.fixture(scope="module")
def shared_setup():
    learner = horde.HordeLearner(CARTPOLE_DEMONS, hidden_sizes=(8,), step_size=0.01, bounder=horde.ObGDBounding())
    return learner, CartPoleFunctional()


def test_chunk_size_does_not_change_results(shared_setup):
    learner, func = shared_setup
    # 25-step chunks: records every 3 steps fall at different offsets within each chunk.
    runs = [run_jax(learner, func, steps=100, seed=2, chunk_size=c, **SHARED) for c in (100, 25)]
    for name in (
        "steps",
        "predictions",
        "td_errors",
        "cumulants",
        "discounts",
        "rewards",
        "terminated",
        "truncated",
        "episode_end_step",
        "episode_return",
        "episode_length",
    ):
        np.testing.assert_array_equal(getattr(runs[1], name), getattr(runs[0], name), err_msg=name)
    for a, b in zip(jax.tree_util.tree_leaves(runs[1].state), jax.tree_util.tree_leaves(runs[0].state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(runs[0].steps, np.arange(0, 100, 3))
    assert runs[0].predictions.shape == (1, 34, len(CARTPOLE_DEMONS))
    assert runs[0].episode_end_step.size >= 4


def test_n_seeds_copies_equal_single_seed_runs(shared_setup):
    learner, func = shared_setup
    batched = run_jax(learner, func, steps=100, seed=7, n_seeds=3, **SHARED)
    assert batched.n_seeds == 3 and batched.predictions.shape == (3, 34, len(CARTPOLE_DEMONS))
    for i in range(3):
        single = run_jax(learner, func, steps=100, seed=7 + i, **SHARED)
        np.testing.assert_allclose(batched.predictions[i], single.predictions[0], rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(batched.terminated[i], single.terminated[0])
        np.testing.assert_array_equal(batched.truncated[i], single.truncated[0])
        mine = batched.episode_seed == i
        np.testing.assert_array_equal(batched.episode_end_step[mine], single.episode_end_step)
        np.testing.assert_array_equal(batched.episode_length[mine], single.episode_length)
        _tree_allclose(jax.tree_util.tree_map(lambda a: a[i], batched.state), single.state, rtol=1e-6, atol=1e-7)
    assert not np.allclose(batched.predictions[0], batched.predictions[1])  # copies differ
    assert np.all(np.diff(batched.episode_end_step) >= 0)  # episodes in time order


def test_index_observations_become_one_hot_features():
    """RandomWalk's "index" observation (Discrete) is one-hot encoded like horde.run's
    FeatureMap, so it learns exactly as the "onehot" observation does (the two differ only in
    the terminal observation, from which nothing bootstraps)."""
    learner = horde.HordeLearner(
        [Demon("v", C.reward(), D.constant(1.0))], hidden_sizes=(), step_size=0.05, sparsity=0.0
    )
    a = run_jax(learner, envs.RandomWalk(observation="index"), steps=300, seed=4, progress=False)
    b = run_jax(learner, envs.RandomWalk(), steps=300, seed=4, progress=False)
    np.testing.assert_allclose(a.predictions, b.predictions, rtol=1e-6, atol=1e-7)
    assert a.terminated.sum() > 10


def test_fixed_probabilities_and_behaviour_ratios():
    """With mu = (0.8, 0.2) and a target that always moves right, rho is 1.25 or 0 and the
    off-policy demon's cumulant-driven values move towards the always-right values (1 for a
    undiscounted walk that always ends on the right)."""
    right = Demon("right", C.reward(), D.constant(1.0), target_policy=P.fixed([0.0, 1.0]))
    learner = horde.HordeLearner([right], hidden_sizes=(), step_size=0.02, sparsity=0.0, secondary_step_size=0.02)
    result = run_jax(
        learner, envs.RandomWalk(), steps=20_000, seed=0, policy=horde.FixedProbabilities([0.2, 0.8]), progress=False
    )
    values = np.asarray([float(learner.predict(result.state, x)[0]) for x in np.eye(5, dtype=np.float32)])
    np.testing.assert_allclose(values, np.ones(5), atol=0.1)
    assert result.config["policy"].startswith("FixedProbabilities")


class _NoDefaultFuncEnv(FuncEnv):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def initial(self, rng, params=None):
        return jnp.zeros(2, jnp.float32)

    def transition(self, state, action, rng, params=None):
        return state + 0.1

    def observation(self, state, rng, params=None):
        return state

    def reward(self, state, action, next_state, rng, params=None):
        return 1.0

    def terminal(self, state, rng, params=None):
        return state[0] > 0.45


def test_clear_errors():
    on = horde.HordeLearner(demons.nexting(3, timescales=(1,)), hidden_sizes=(4,))
    off = horde.HordeLearner(
        [Demon("off", C.reward(), D.constant(0.5), target_policy=P.fixed([0.5, 0.5]))], hidden_sizes=(4,)
    )
    with pytest.raises(ValueError, match="off-policy demons"):
        run_jax(off, PendulumFunctional(), steps=5, progress=False)
    with pytest.raises(TypeError, match="horde.run"):
        run_jax(on, gym.make("CartPole-v1"), steps=5, progress=False)
    with pytest.raises(TypeError, match="JAX"):
        run_jax(on, object(), steps=5, progress=False)
    two = horde.HordeLearner(demons.nexting(2, timescales=(1,)), hidden_sizes=(4,))
    with pytest.raises(ValueError, match="max_episode_steps is required"):
        run_jax(two, _NoDefaultFuncEnv(), steps=5, progress=False)
    r = run_jax(two, _NoDefaultFuncEnv(), steps=12, max_episode_steps=3, progress=False)
    np.testing.assert_array_equal(r.episode_length, [3, 3, 3, 3])
    with pytest.raises(ValueError, match="jax_behaviour_probs"):
        run_jax(two, _NoDefaultFuncEnv(), steps=5, max_episode_steps=3, policy="env", progress=False)
    with pytest.raises(ValueError, match="StateProbabilities"):
        run_jax(two, _NoDefaultFuncEnv(), steps=5, max_episode_steps=3, policy=lambda o, rng: 0, progress=False)
    nine = horde.HordeLearner(demons.nexting(9, timescales=(1,)), hidden_sizes=(4,))
    with pytest.raises(ValueError, match="out of range"):
        run_jax(nine, envs.Collision(), steps=5, progress=False)  # 6 features
    with pytest.raises(ValueError, match="steps"):
        run_jax(two, _NoDefaultFuncEnv(), steps=0, max_episode_steps=3)


def test_time_limit_defaults():
    from horde.runs.jax_envs import as_jax_env

    assert as_jax_env(CartPoleFunctional(), 0).default_limit == 500
    assert as_jax_env(PendulumFunctional(), 0).default_limit == 200
    assert as_jax_env(envs.RandomWalk(), 0).default_limit is None
    learner = horde.HordeLearner(demons.nexting(4, timescales=(1,)), hidden_sizes=(4,))
    made = gym.make("phys2d/CartPole-v1", max_episode_steps=5)  # the made env's time limit is used
    result = run_jax(learner, made, steps=40, progress=False)
    assert result.config["max_episode_steps"] == 5
    assert result.truncated.sum() >= 1 and result.episode_length.max() <= 5


def test_diagnostics_are_recorded_when_the_learner_tracks_them():
    learner = horde.HordeLearner(
        [Demon("v", C.reward(), D.constant(0.9))], hidden_sizes=(), step_size=0.05, diagnostics=True
    )
    result = run_jax(learner, envs.RandomWalk(), steps=40, record_every=4, progress=False)
    assert result.rupee.shape == result.ude.shape == (1, 10, 1)
    assert np.isfinite(result.rupee).all()
    plain = horde.HordeLearner([Demon("v", C.reward(), D.constant(0.9))], hidden_sizes=(), step_size=0.05)
    assert run_jax(plain, envs.RandomWalk(), steps=8, progress=False).rupee is None


def test_run_jax_divergence_guard_names_the_demon():
    import envs
    from demons import Demon
    from demons import cumulants as C
    from demons import discounts as D

    learner = horde.HordeLearner(
        [Demon("wild", C.observation(0), D.constant(0.99))], hidden_sizes=(), step_size=50.0, sparsity=0.0
    )
    with pytest.raises(horde.DivergenceError, match="'wild'") as info:
        horde.run_jax(learner, envs.RandomWalk(), steps=5000, chunk_size=100, progress=False)
    result, step = info.value.result, info.value.step
    # The step is exact (the first non-finite prediction), the records run up to it, and the
    # state is the last good one: after the whole chunks before the one that diverged.
    assert result.total_steps % 100 == 0 and result.total_steps <= step < result.total_steps + 100
    np.testing.assert_array_equal(result.steps, np.arange(step + 1))
    assert np.isfinite(result.predictions[0, :step]).all() and not np.isfinite(result.predictions[0, step]).all()
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree_util.tree_leaves(result.state))


def test_discrete_actions_with_nonzero_start_are_indexed_from_zero_for_demons():
    """An action space Discrete(2, start=1): the demons see actions 0 and 1."""
    import gymnasium as gym

    from demons import Demon
    from demons import cumulants as C
    from demons import discounts as D
    from demons import policies as P

    class Shifted(gym.Env):
        observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        action_space = gym.spaces.Discrete(2, start=1)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return np.ones(1, np.float32), {}

        def step(self, action):
            assert action in (1, 2)
            return np.ones(1, np.float32), float(action == 1), True, False, {}

    demon_set = [
        Demon("first_action", C.action_indicator(0), D.constant(0.0)),
        Demon("reward_if_first", C.reward(), D.constant(0.0), target_policy=P.fixed([1.0, 0.0])),
    ]
    learner = horde.HordeLearner(demon_set, hidden_sizes=(), step_size=0.002, sparsity=0.0)
    result = horde.run(learner, Shifted(), steps=8000, policy=horde.FixedProbabilities([0.5, 0.5]), progress=False)
    # Averaged over the last 2,000 steps: P(first action) = 0.5; the off-policy demon's target
    # policy always takes the first action, whose reward is 1.
    v = result.predictions[0, -2000:].mean(axis=0)
    np.testing.assert_allclose(v, [0.5, 1.0], atol=0.05)
