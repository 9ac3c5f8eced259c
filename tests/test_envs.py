"""Tests for the ``envs`` package: Gymnasium environments with known answers.

Monte Carlo tolerances are stated next to each check; every sampling test
uses a fixed seed, so the tests are deterministic.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import warnings

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from envs import BairdCounterexample, Collision, RandomWalk, autoreset_step
from envs import collision as collision_mod
from envs.random_walk import random_walk_model, random_walk_true_values

ENV_CASES = [
    ("horde/RandomWalk-v0", {}),
    ("horde/RandomWalk-v0", {"observation": "index"}),
    ("horde/RandomWalk-v0", {"n_states": 7, "p_right": 0.3, "reward_left": -1.0}),
    ("horde/Baird-v0", {}),
    ("horde/Collision-v0", {}),
    ("horde/Collision-v0", {"features": "onehot"}),
    ("horde/Collision-v0", {"distinct_features": False}),
]


# --------------------------------------------------------------------------- API


@pytest.mark.parametrize("env_id,kwargs", ENV_CASES)
def test_make_and_check_env(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker reports problems as warnings
        check_env(env.unwrapped)
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    assert isinstance(info["state"], int)
    env.close()


@pytest.mark.parametrize("env_id,kwargs", ENV_CASES)
def test_render_ansi(env_id, kwargs):
    env = gym.make(env_id, render_mode="ansi", **kwargs)
    env.reset(seed=0)
    frame = env.render()
    assert isinstance(frame, str) and "A" in frame


def test_reimport_does_not_fail():
    importlib.reload(envs)
    importlib.reload(envs)
    for env_id in envs.ENV_IDS:
        assert env_id in gym.registry
        gym.make(env_id).reset(seed=0)


def test_classes_registered_under_their_ids():
    assert isinstance(gym.make("horde/RandomWalk-v0").unwrapped, RandomWalk)
    assert isinstance(gym.make("horde/Baird-v0").unwrapped, BairdCounterexample)
    assert isinstance(gym.make("horde/Collision-v0").unwrapped, Collision)
    assert gym.spec("horde/Baird-v0").max_episode_steps is None


# ------------------------------------------------------------------ RandomWalk


def test_random_walk_classic_true_values_exact():
    np.testing.assert_allclose(RandomWalk().true_values(), np.arange(1, 6) / 6, rtol=0, atol=1e-15)
    v = random_walk_true_values(n_states=19)  # v(s) = (s+1)/(n+1) for the 50/50 walk
    np.testing.assert_allclose(v, np.arange(1, 20) / 20, rtol=0, atol=1e-13)
    assert v.dtype == np.float64 and v.shape == (19,)


@pytest.mark.parametrize("p", [0.2, 0.7, 0.9])
def test_random_walk_true_values_gamblers_ruin(p):
    # gamma = 1, reward 1 on the right: P(exit right from s) = (1 - rho^(s+1)) / (1 - rho^(n+1)).
    n, rho = 6, (1 - p) / p
    expected = (1 - rho ** np.arange(1, n + 1)) / (1 - rho ** (n + 1))
    np.testing.assert_allclose(RandomWalk(n_states=n).true_values(1.0, p), expected, rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 12),
    gamma=st.floats(0.0, 1.0),
    p=st.floats(0.0, 1.0),
    rl=st.floats(-5, 5),
    rr=st.floats(-5, 5),
)
def test_random_walk_true_values_solve_bellman_equation(n, gamma, p, rl, rr):
    P, r = random_walk_model(n, p, rl, rr)
    v = random_walk_true_values(n, gamma, p, rl, rr)
    np.testing.assert_allclose(v, r + gamma * P @ v, atol=1e-9)
    # rows: mass kept among non-terminal states plus termination mass is 1
    term = np.zeros(n)
    term[-1] += p
    term[0] += 1 - p
    np.testing.assert_allclose(P.sum(1) + term, 1.0)


def test_random_walk_episode_structure():
    env = RandomWalk(n_states=5, reward_left=-1.0, reward_right=2.0)
    obs, info = env.reset(seed=0)
    assert info["state"] == 2
    np.testing.assert_array_equal(obs, [0, 0, 1, 0, 0])
    rewards = []
    for expected_state in (3, 4, 5):
        obs, r, term, trunc, info = env.step(1)
        rewards.append(r)
        assert info["state"] == expected_state and not trunc
    assert term and rewards == [0.0, 0.0, 2.0]
    np.testing.assert_array_equal(obs, np.zeros(5))  # terminal observation: zero features
    with pytest.raises(RuntimeError):
        env.step(0)
    env.reset()
    for _ in range(3):
        obs, r, term, _, info = env.step(0)
    assert term and r == -1.0 and info["state"] == -1

    idx_env = RandomWalk(n_states=4, observation="index")
    obs, info = idx_env.reset(seed=0)
    assert obs == 2 == info["state"]
    obs, *_ = idx_env.step(0)
    assert obs == 1


def _first_visit_mc(env, n_episodes, gamma, policy_p_right, seed):
    """First-visit Monte Carlo returns per state; returns (sums, counts)."""
    rng = np.random.default_rng(seed)
    n = env.unwrapped.n_states
    sums, counts = np.zeros(n), np.zeros(n)
    env.reset(seed=seed)
    for _ in range(n_episodes):
        _, info = env.reset()
        states, rewards = [info["state"]], []
        while True:
            action = int(rng.random() < policy_p_right)
            _, r, term, trunc, info = env.step(action)
            rewards.append(r)
            if term or trunc:
                break
            states.append(info["state"])
        g, returns = 0.0, []
        for r in reversed(rewards):
            g = r + gamma * g
            returns.append(g)
        returns.reverse()
        seen = set()
        for s, g in zip(states, returns):
            if s not in seen:
                seen.add(s)
                sums[s] += g
                counts[s] += 1
    return sums, counts


@pytest.mark.parametrize(
    "env_kwargs,policy_p,gamma,true_p",
    [
        ({}, 0.5, 1.0, 0.5),  # classic: random policy, undiscounted
        ({}, 0.3, 0.9, 0.3),  # the action decides; policy goes right w.p. 0.3
        ({"p_right": 0.7}, 0.5, 0.9, 0.7),  # the env decides (action ignored)
        ({"n_states": 7, "reward_left": -1.0}, 0.5, 0.95, 0.5),
    ],
)
def test_random_walk_monte_carlo_matches_true_values(env_kwargs, policy_p, gamma, true_p):
    env = RandomWalk(**env_kwargs)
    sums, counts = _first_visit_mc(env, 3000, gamma, policy_p, seed=123)
    assert np.all(counts > 300)
    mc = sums / counts
    v = env.true_values(gamma, true_p)
    # returns lie in [-1, 1] so their s.d. is at most 1: allow 4 standard errors.
    tol = 4.0 / np.sqrt(counts)
    assert np.all(np.abs(mc - v) < tol), (mc, v, tol)


# ----------------------------------------------------------------------- Baird


def test_baird_features_match_book():
    X = BairdCounterexample.features()
    assert X.shape == (7, 8)
    for i in range(6):  # book (1-based): 2 w_i + w_8
        expected = np.zeros(8)
        expected[i], expected[7] = 2, 1
        np.testing.assert_array_equal(X[i], expected)
    np.testing.assert_array_equal(X[6], [0, 0, 0, 0, 0, 0, 1, 2])  # w_7 + 2 w_8
    assert np.linalg.matrix_rank(X) == 7
    assert np.linalg.matrix_rank(X.T @ X) == 7


def test_baird_constants():
    B = BairdCounterexample
    assert B.BEHAVIOUR_PROBS == (6 / 7, 1 / 7) and B.TARGET_PROBS == (0.0, 1.0)
    assert B.GAMMA == 0.99 and B.INITIAL_WEIGHTS == (1, 1, 1, 1, 1, 1, 10, 1)
    assert B.behaviour_probs(3) == B.BEHAVIOUR_PROBS and B.target_probs(6) == B.TARGET_PROBS


def test_baird_behaviour_stationary_distribution_is_uniform():
    P_mu = BairdCounterexample.behaviour_transition_matrix()
    np.testing.assert_allclose(P_mu, np.full((7, 7), 1 / 7), atol=1e-15)
    d = BairdCounterexample.stationary_distribution(P_mu)
    np.testing.assert_allclose(d, np.full(7, 1 / 7), atol=1e-12)
    np.testing.assert_allclose(d @ P_mu, d, atol=1e-12)
    P_pi = BairdCounterexample.target_transition_matrix()
    np.testing.assert_array_equal(P_pi[:, 6], 1.0)
    np.testing.assert_array_equal(P_pi[:, :6], 0.0)


def test_baird_error_measures_known_values():
    B = BairdCounterexample
    zero = np.zeros(8)
    assert B.projected_bellman_error(zero) == 0.0
    assert B.value_error(zero) == 0.0
    # A non-zero w in the null space of X also represents v = 0 exactly.
    w_null = np.array([-1, -1, -1, -1, -1, -1, -4, 2.0])
    assert B.projected_bellman_error(w_null) == pytest.approx(0, abs=1e-12)
    assert B.value_error(w_null) == pytest.approx(0, abs=1e-12)
    # At INITIAL_WEIGHTS: upper values 2+1 = 3, lower 10+2 = 12.
    w0 = B.INITIAL_WEIGHTS
    assert B.value_error(w0) == pytest.approx(np.sqrt((6 * 9 + 144) / 7), rel=1e-12)
    # delta_bar = 0.99 * 12 - v: 8.88 on the six upper states, -0.12 on the lower one.
    expected_pbe = np.sqrt((6 * 8.88**2 + 0.12**2) / 7)
    assert B.projected_bellman_error(w0) == pytest.approx(expected_pbe, rel=1e-12)
    assert B.bellman_error(w0) == pytest.approx(expected_pbe, rel=1e-12)
    assert B.value_error(w0) > 0
    # X has rank 7 = number of states, so the projection is the identity.
    np.testing.assert_allclose(B.projection_matrix(), np.eye(7), atol=1e-10)
    # gamma = 0: delta_bar = -v, so PBE = VE.
    assert B.projected_bellman_error(w0, gamma=0.0) == pytest.approx(B.value_error(w0))


def test_baird_transitions_and_behaviour_sampling():
    env = BairdCounterexample()
    X = env.features()
    rng = np.random.default_rng(7)
    obs, info = env.reset(seed=7)
    n = 7000
    solid = 0
    visits = np.zeros(7)
    for _ in range(n):
        a = int(rng.choice(2, p=env.BEHAVIOUR_PROBS))
        obs, r, term, trunc, info = env.step(a)
        s = info["state"]
        assert r == 0.0 and not term and not trunc
        np.testing.assert_array_equal(obs, X[s])
        if a == 1:
            solid += 1
            assert s == 6
        else:
            assert 0 <= s <= 5
        visits[s] += 1
    # Binomial(7000, 1/7): s.d. of the frequency is 0.0042; allow 0.02.
    assert abs(solid / n - 1 / 7) < 0.02
    # every state visited 1/7 of the time under behaviour (uniform stationary distribution)
    assert np.all(np.abs(visits / n - 1 / 7) < 0.02)


def test_baird_dashed_is_uniform_over_upper_and_start_is_uniform():
    env = BairdCounterexample()
    env.reset(seed=3)
    nxt = np.bincount([env.step(0)[4]["state"] for _ in range(6000)], minlength=7)
    assert nxt[6] == 0
    assert np.all(np.abs(nxt[:6] / 6000 - 1 / 6) < 0.025)  # s.d. 0.0048
    starts = np.bincount([env.reset()[1]["state"] for _ in range(7000)], minlength=7)
    assert np.all(np.abs(starts / 7000 - 1 / 7) < 0.02)


# ------------------------------------------------------------------- Collision


def test_collision_true_values():
    v = Collision.true_values()
    np.testing.assert_allclose(v, 0.9 ** (7 - np.arange(8)), rtol=1e-15)
    assert v[7] == 1.0
    np.testing.assert_allclose(v[:-1], 0.9 * v[1:], rtol=1e-15)
    assert Collision.GAMMA == 0.9


def test_collision_policies():
    for s in range(4):
        assert Collision.behaviour_probs(s) == (1.0, 0.0)
    for s in range(4, 8):
        assert Collision.behaviour_probs(s) == (0.5, 0.5)
    for s in range(8):
        assert Collision.target_probs(s) == (1.0, 0.0)
    with pytest.raises(ValueError):
        Collision.behaviour_probs(8)
    env = Collision()
    _, info = env.reset(seed=0)
    assert env.current_behaviour_probs() == info["behaviour_probs"]
    assert env.current_behaviour_probs() == Collision.behaviour_probs(info["state"])
    assert env.current_target_probs() == (1.0, 0.0)


def test_collision_episode_structure():
    env = Collision(features="onehot")
    starts = [env.reset(seed=s)[1]["state"] for s in range(200)]
    assert set(starts) == {0, 1, 2, 3}
    for start in range(4):
        seed = starts.index(start)
        # always forward: collide after 8 - start steps, reward 1 at the end only
        obs, info = env.reset(seed=seed)
        np.testing.assert_array_equal(obs, np.eye(8)[start])
        traj = []
        while True:
            obs, r, term, trunc, info = env.step(0)
            traj.append((info["state"], r, term))
            assert not trunc
            if term:
                break
        assert traj == [(s, 0.0, False) for s in range(start + 1, 8)] + [(-1, 1.0, True)]
        np.testing.assert_array_equal(obs, np.zeros(8))
        # retreat ends the episode with reward 0, from any state
        for k in range(8 - start):
            env.reset(seed=seed)
            for _ in range(k):
                env.step(0)
            obs, r, term, trunc, info = env.step(1)
            assert (r, term, trunc, info["state"]) == (0.0, True, False, -1)
            with pytest.raises(RuntimeError):
                env.step(0)


def _table_for(seed):
    env = Collision()
    env.reset(seed=seed)
    return env.features()


def test_collision_random_features():
    env = Collision()
    assert env.observation_space.shape == (6,)
    obs, _ = env.reset(seed=11)
    table = env.features()
    assert table.shape == (8, 6)
    np.testing.assert_array_equal(table.sum(axis=1), 3)
    assert set(np.unique(table)) == {0.0, 1.0}
    # Drawn independently by default: states may alias. Over many seeds some table aliases.
    assert any(len({tuple(r) for r in _table_for(s)}) < 8 for s in range(20))
    distinct = Collision(distinct_features=True)
    distinct.reset(seed=11)
    assert len({tuple(row) for row in distinct.features()}) == 8
    # observations are rows of the table and the table is kept without a new seed
    for _ in range(20):
        obs, info = env.reset()
        np.testing.assert_array_equal(obs, table[info["state"]])
        while True:
            obs, r, term, _, info = env.step(env.action_space.sample())
            if term:
                np.testing.assert_array_equal(obs, np.zeros(6))
                break
            np.testing.assert_array_equal(obs, table[info["state"]])
            assert obs.sum() == 3
    np.testing.assert_array_equal(env.features(), table)
    # same seed -> same features (also in a fresh env); new seeds -> new features
    env.reset(seed=11)
    np.testing.assert_array_equal(env.features(), table)
    other = Collision()
    other.reset(seed=11)
    np.testing.assert_array_equal(other.features(), table)
    tables = set()
    for seed in range(20):
        other.reset(seed=seed)
        tables.add(other.features().tobytes())
    assert len(tables) >= 18
    # with replacement, rows still have exactly three ones
    alias = Collision()
    for seed in range(10):
        alias.reset(seed=seed)
        np.testing.assert_array_equal(alias.features().sum(axis=1), 3)
    assert len(collision_mod.feature_patterns()) == 20


def test_collision_monte_carlo_target_policy_returns():
    env = Collision()
    env.reset(seed=5)
    returns = {s: [] for s in range(8)}
    for _ in range(200):
        _, info = env.reset()
        states, rewards = [info["state"]], []
        while True:
            _, r, term, _, info = env.step(0)  # target policy: always forward
            rewards.append(r)
            if term:
                break
            states.append(info["state"])
        g = 0.0
        for s, r in zip(reversed(states), reversed(rewards)):
            g = r + 0.9 * g
            returns[s].append(g)
    mc = np.array([np.mean(returns[s]) for s in range(8)])
    np.testing.assert_allclose(mc, 0.9 ** (7 - np.arange(8)), rtol=1e-12)


def test_collision_importance_sampling_recovers_target_values():
    # Ordinary importance sampling of whole-episode returns under the behaviour
    # policy: X = rho * G / v(s0) has mean 1; X is 16 w.p. 1/16 for s0 = 0..3
    # (forward through states 4..7), else 0, so Var X = 15 and with 8000
    # episodes the s.e. is 0.043. Allow 0.2.
    env = Collision()
    rng = np.random.default_rng(9)
    v = Collision.true_values()
    _, info = env.reset(seed=9)
    xs = []
    for _ in range(8000):
        _, info = env.reset()
        s0, rho, g, disc = info["state"], 1.0, 0.0, 1.0
        while True:
            mu = env.current_behaviour_probs()
            pi = env.current_target_probs()
            a = int(rng.random() >= mu[0])
            rho *= pi[a] / mu[a]
            _, r, term, _, info = env.step(a)
            g += disc * r
            disc *= 0.9
            if term:
                break
        xs.append(rho * g / v[s0])
    assert abs(np.mean(xs) - 1.0) < 0.2
    assert set(np.round(xs, 9)) <= {0.0, 16.0}


# ------------------------------------------------------------- JAX functional


@functools.cache
def _jitted(env):
    return jax.jit(env.jax_reset), jax.jit(env.jax_step)


_RW_DET = {
    "onehot": RandomWalk(n_states=6, reward_left=-0.5, reward_right=2.0),
    "index": RandomWalk(n_states=6, observation="index"),
}


@settings(max_examples=25, deadline=None)
@given(
    observation=st.sampled_from(["onehot", "index"]),
    actions=st.lists(st.integers(0, 1), min_size=1, max_size=40),
)
def test_jax_random_walk_matches_python_deterministic(observation, actions):
    env = _RW_DET[observation]
    reset, step = _jitted(env)
    key = jax.random.key(0)
    obs, info = env.reset(seed=0)
    state, jobs = reset(key)
    assert int(state) == info["state"]
    np.testing.assert_array_equal(np.asarray(jobs), obs)
    for a in actions:
        obs, r, term, _, info = env.step(a)
        state, jobs, jr, jterm = step(state, jnp.int32(a), key)
        assert int(state) == info["state"]
        np.testing.assert_array_equal(np.asarray(jobs), obs)
        assert float(jr) == pytest.approx(r) and bool(jterm) == term
        if term:
            # functional terminal states are absorbing with zero reward
            s2, _, r2, t2 = step(state, jnp.int32(a), key)
            assert int(s2) == int(state) and float(r2) == 0.0 and bool(t2)
            break


def _scan_episodes(env, policy_p_right, n_steps, seed):
    """Run the functional env in lax.scan with autoreset; per-step rewards and terminations."""

    def body(carry, key):
        state, _ = carry
        k_act, k_env = jax.random.split(key)
        action = (jax.random.uniform(k_act) < policy_p_right).astype(jnp.int32)
        out = autoreset_step(env, state, action, k_env)
        return (out.state, out.obs), (out.reward, out.terminated)

    key0, key_steps = jax.random.split(jax.random.key(seed))
    init = env.jax_reset(key0)
    keys = jax.random.split(key_steps, n_steps)
    _, (rewards, terms) = jax.jit(lambda c, k: jax.lax.scan(body, c, k))(init, keys)
    return np.asarray(rewards), np.asarray(terms)


@pytest.mark.parametrize(
    "env_kwargs,policy_p,p",
    [({}, 0.5, 0.5), ({"p_right": 0.7}, 0.5, 0.7), ({"n_states": 4}, 0.2, 0.2)],
)
def test_jax_random_walk_scan_statistics(env_kwargs, policy_p, p):
    # Undiscounted, reward 1 on the right: the fraction of episodes ending on the
    # right equals v(start); the mean episode length from start s is the
    # expected absorption time of the walk, computed from the model.
    env = RandomWalk(**env_kwargs)
    rewards, terms = _scan_episodes(env, policy_p, 40_000, seed=1)
    n_episodes = terms.sum()
    assert n_episodes > 1500
    v = env.true_values(1.0, p)
    frac_right = rewards[terms].mean()
    assert abs(frac_right - v[env.start_state]) < 4 * 0.5 / np.sqrt(n_episodes)
    P, _ = env.transition_model(p)
    steps = np.linalg.solve(np.eye(env.n_states) - P, np.ones(env.n_states))
    last = np.flatnonzero(terms)[-1] + 1
    mean_len = last / n_episodes
    assert abs(mean_len - steps[env.start_state]) < 0.1 * steps[env.start_state]
    if not env_kwargs:
        assert steps[2] == pytest.approx(9.0)  # (s+1)(n-s) for the 5-state walk


def test_jax_baird_matches_python():
    env = BairdCounterexample()
    reset, step = _jitted(env)
    X = env.features().astype(np.float32)
    keys = jax.random.split(jax.random.key(2), 7000)
    # solid: from every state to 6, observation = Python features
    for s in range(7):
        ns, obs, r, term = step(jnp.int32(s), jnp.int32(1), keys[s])
        assert int(ns) == 6 and float(r) == 0.0 and not bool(term)
        np.testing.assert_array_equal(np.asarray(obs), X[6])
    # dashed: uniform over the six upper states, with matching observations
    ns, obs, r, term = jax.vmap(step, in_axes=(None, None, 0))(jnp.int32(6), jnp.int32(0), keys)
    ns = np.asarray(ns)
    np.testing.assert_array_equal(np.asarray(obs), X[ns])
    assert not np.asarray(term).any() and not np.asarray(r).any()
    freq = np.bincount(ns, minlength=7) / len(ns)
    assert freq[6] == 0 and np.all(np.abs(freq[:6] - 1 / 6) < 0.025)
    # reset: uniform over all 7 states
    s0, obs0 = jax.vmap(reset)(keys)
    s0 = np.asarray(s0)
    np.testing.assert_array_equal(np.asarray(obs0), X[s0])
    assert np.all(np.abs(np.bincount(s0, minlength=7) / len(s0) - 1 / 7) < 0.02)


def test_jax_baird_scan_under_behaviour():
    env = BairdCounterexample()

    def body(state, key):
        k_act, k_env = jax.random.split(key)
        action = jax.random.categorical(k_act, jnp.log(env.jax_behaviour_probs(state)))
        ns, _, _, _ = env.jax_step(state, action, k_env)
        return ns, (action, ns)

    s0, _ = env.jax_reset(jax.random.key(4))
    _, (actions, states) = jax.jit(lambda s, k: jax.lax.scan(body, s, k))(
        s0, jax.random.split(jax.random.key(5), 14_000)
    )
    actions, states = np.asarray(actions), np.asarray(states)
    assert abs(actions.mean() - 1 / 7) < 0.015  # s.d. 0.003
    np.testing.assert_array_equal(states[actions == 1], 6)
    assert np.all(np.abs(np.bincount(states, minlength=7) / len(states) - 1 / 7) < 0.015)


@pytest.mark.parametrize("features", ["random", "onehot"])
def test_jax_collision_matches_python(features):
    env = Collision(features=features)
    env.reset(seed=21)
    table = env.features()
    reset, step = _jitted(env)
    key = jax.random.key(0)
    # every transition, by every path: forward k times, then one more action
    for start, k, last in itertools.product(range(4), range(8), (0, 1)):
        if start + k > 7:
            continue
        while env.reset()[1]["state"] != start:  # same features: no new seed
            pass
        state = jnp.int32(start)
        for a in [0] * k + [last]:
            obs, r, term, _, info = env.step(a)
            state, jobs, jr, jterm = step(state, jnp.int32(a), key)
            assert int(state) == info["state"]
            np.testing.assert_array_equal(np.asarray(jobs), obs)
            assert float(jr) == r and bool(jterm) == term
            np.testing.assert_allclose(np.asarray(env.jax_behaviour_probs(state)), info["behaviour_probs"])
        assert term == (last == 1 or start + k == 7)
        if term:
            s2, o2, r2, t2 = step(state, jnp.int32(0), key)  # absorbing terminal
            assert int(s2) == -1 and float(r2) == 0.0 and bool(t2) and not np.asarray(o2).any()
    s0, obs0 = jax.vmap(reset)(jax.random.split(jax.random.key(3), 4000))
    s0 = np.asarray(s0)
    np.testing.assert_array_equal(np.asarray(obs0), table[s0])
    assert np.all(np.abs(np.bincount(s0, minlength=4) / 4000 - 0.25) < 0.03)


def test_jax_collision_scan_collision_rate():
    # Under the behaviour policy an episode collides iff it goes forward in
    # all of states 4..7: probability 1/16. s.e. with ~4000 episodes is 0.004.
    env = Collision()
    env.reset(seed=0)

    def body(state, key):
        k_act, k_env = jax.random.split(key)
        action = jax.random.categorical(k_act, jnp.log(env.jax_behaviour_probs(state)))
        out = autoreset_step(env, state, action, k_env)
        return out.state, (out.reward, out.terminated)

    s0, _ = env.jax_reset(jax.random.key(1))
    _, (rewards, terms) = jax.jit(lambda s, k: jax.lax.scan(body, s, k))(
        s0, jax.random.split(jax.random.key(2), 24_000)
    )
    rewards, terms = np.asarray(rewards), np.asarray(terms)
    assert terms.sum() > 3000
    assert abs(rewards[terms].mean() - 1 / 16) < 0.02
    assert rewards[~terms].sum() == 0
