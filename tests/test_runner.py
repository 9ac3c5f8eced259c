"""The Gymnasium runner: episode boundaries exactly as Gymnasium defines them, identical fast
paths, vector environments, features from spaces, results on disk."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.experimental.functional import FuncEnv

import demons
import horde
from demons import Demon
from demons import cumulants as C
from demons import discounts as D
from demons import policies as P


class ConstantRewardEnv(gym.Env):
    """One feature that is always 1; reward 1 every step. ``episode_length`` steps then
    terminates (``terminate=True``) or never ends (wrap in a TimeLimit)."""

    def __init__(self, episode_length: int = 1, terminate: bool = True):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.episode_length, self.terminate = episode_length, terminate

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.ones(1, np.float32), {}

    def step(self, action):
        self.t += 1
        done = self.terminate and self.t >= self.episode_length
        return np.ones(1, np.float32), 1.0, done, False, {}


class CountdownEnv(gym.Env):
    """One-hot of the step within the episode (``length`` states); reward 1 per step;
    terminates after ``length`` steps (``terminate=True``) or runs on, cycling, to be cut by a
    TimeLimit."""

    def __init__(self, length: int = 5, terminate: bool = True):
        self.length, self.terminate = length, terminate
        self.observation_space = gym.spaces.Box(0.0, 1.0, (length,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        return np.eye(self.length, dtype=np.float32)[self.t % self.length]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        done = self.terminate and self.t >= self.length
        return self._obs() if not done else np.zeros(self.length, np.float32), 1.0, done, False, {}


def _linear_learner(demon_list, step_size=0.05):
    return horde.HordeLearner(demon_list, hidden_sizes=(), step_size=step_size, sparsity=0.0)


def _values(learner, state, observations):
    return np.stack([np.asarray(learner.predict(state, x)) for x in observations])


NEXTING = demons.nexting(4, timescales=(1, 10), lamda=0.5) + demons.reward_demons(timescales=(1, 10))


def test_chunked_scan_and_per_step_give_identical_predictions_on_cartpole():
    learner = horde.HordeLearner(NEXTING, hidden_sizes=(32, 32), step_size=0.01, bounder=horde.ObGDBounding())
    chunked = horde.run(learner, "CartPole-v1", steps=400, seed=3, chunk_size=128, progress=False)
    stepped = horde.run(learner, "CartPole-v1", steps=400, seed=3, chunk_size=1, progress=False)
    np.testing.assert_array_equal(chunked.predictions, stepped.predictions)
    np.testing.assert_array_equal(chunked.td_errors, stepped.td_errors)
    assert len(chunked.episode_return) > 5  # several episode boundaries were crossed


def test_per_step_run_equals_update_from_transition_by_hand():
    learner = horde.HordeLearner(NEXTING, hidden_sizes=(8,), step_size=0.01)
    result = horde.run(learner, "CartPole-v1", steps=60, seed=0, chunk_size=1, progress=False)
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(0)
    state = learner.init(4, jax.random.key(0))
    obs, _ = env.reset(seed=0)
    for t in range(60):
        action = int(rng.integers(2))
        next_obs, reward, term, trunc, _ = env.step(action)
        r = learner.update_from_transition(
            state, obs, action, reward, next_obs, terminated=term, truncated=trunc, behaviour_prob=0.5
        )
        np.testing.assert_allclose(result.predictions[0, t], r.predictions, rtol=1e-6, atol=1e-7)
        state = r.state
        obs = env.reset()[0] if term or trunc else next_obs


def test_vector_env_autoreset_transition_is_never_learned_from():
    """Every real transition has reward 1; the autoreset step has reward 0 from the same
    observation. Learning from it would pull the reward demon from 1 towards 0.5."""
    learner = _linear_learner([Demon("r", C.reward(), D.constant(0.0))], step_size=0.1)
    venv = gym.vector.SyncVectorEnv([lambda: ConstantRewardEnv(1) for _ in range(2)])
    result = horde.run(learner, venv, steps=400, seed=0, progress=False)
    assert result.valid.sum() == 400  # every other step of each copy is an autoreset step
    assert np.isnan(result.predictions[~result.valid]).all()
    for i in range(2):
        state_i = jax.tree_util.tree_map(lambda a: a[i], result.state)
        v = float(learner.predict(state_i, np.ones(1))[0])
        np.testing.assert_allclose(v, 1.0, atol=1e-3)


def test_vector_env_seeds_equal_separate_runs():
    learner = horde.HordeLearner(NEXTING, hidden_sizes=(16,), step_size=0.01, bounder=horde.ObGDBounding())
    venv = gym.make_vec("CartPole-v1", num_envs=3, vectorization_mode="sync")
    vector = horde.run(learner, venv, steps=300, seed=5, chunk_size=64, progress=False)
    assert vector.n_seeds == 3
    for i in range(3):
        n_real = int(vector.valid[i].sum())
        single = horde.run(learner, "CartPole-v1", steps=n_real, seed=5 + i, chunk_size=50, progress=False)
        np.testing.assert_allclose(vector.predictions[i][vector.valid[i]], single.predictions[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("vector", [False, True])
def test_termination_does_not_bootstrap_and_truncation_does(vector):
    gamma = 0.9
    demon = [Demon("r@0.9", C.reward(), D.constant(gamma), lamda=0.5)]
    true_terminating = np.array([sum(gamma**k for k in range(5 - s)) for s in range(5)])

    def make(terminate):
        env = CountdownEnv(5, terminate=terminate)
        return env if terminate else gym.wrappers.TimeLimit(env, max_episode_steps=5)

    for terminate, true in ((True, true_terminating), (False, np.full(5, 1 / (1 - gamma)))):
        learner = _linear_learner(demon, step_size=0.05)
        env = gym.vector.SyncVectorEnv([lambda: make(terminate)]) if vector else make(terminate)
        result = horde.run(learner, env, steps=6000, seed=0, progress=False)
        state = jax.tree_util.tree_map(lambda a: a[0], result.state) if vector else result.state
        values = _values(learner, state, np.eye(5, dtype=np.float32))[:, 0]
        np.testing.assert_allclose(values, true, atol=0.05, err_msg=f"terminate={terminate}")
        assert (result.truncated.any() != terminate) and (result.terminated.any() == terminate)


def test_record_every_subsamples_the_full_record():
    learner = horde.HordeLearner(NEXTING, hidden_sizes=(8,), step_size=0.01)
    full = horde.run(learner, "CartPole-v1", steps=250, seed=1, chunk_size=64, progress=False)
    sparse = horde.run(learner, "CartPole-v1", steps=250, seed=1, chunk_size=64, record_every=10, progress=False)
    np.testing.assert_array_equal(sparse.steps, np.arange(0, 250, 10))
    np.testing.assert_array_equal(sparse.predictions, full.predictions[:, ::10])
    np.testing.assert_array_equal(sparse.cumulants, full.cumulants[:, ::10])


def test_recorded_cumulants_and_discounts_are_the_demons_values():
    learner = horde.HordeLearner(NEXTING, hidden_sizes=(8,), step_size=0.01)
    result = horde.run(learner, "CartPole-v1", steps=50, seed=2, progress=False)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=2)
    rng = np.random.default_rng(2)
    next_obs, reward, *_ = env.step(int(rng.integers(2)))
    expected = learner.demons.evaluate(obs, 0, reward, next_obs)
    np.testing.assert_allclose(result.cumulants[0, 0], expected.cumulants, rtol=1e-6)
    np.testing.assert_allclose(result.discounts[0, 0], expected.discounts, rtol=1e-6)


def test_off_policy_demons_get_importance_ratios_from_fixed_probabilities():
    import envs

    demon = Demon("right@0.9", C.reward(), D.constant(0.9), target_policy=P.fixed([0.0, 1.0]))
    learner = horde.HordeLearner([demon], hidden_sizes=(), step_size=0.01, secondary_step_size=0.05, sparsity=0.0)
    result = horde.run(
        learner, envs.RandomWalk(), steps=40_000, seed=0, policy=horde.FixedProbabilities([0.5, 0.5]), progress=False
    )
    values = _values(learner, result.state, np.eye(5, dtype=np.float32))[:, 0]
    np.testing.assert_allclose(values, envs.RandomWalk().true_values(gamma=0.9, p_right=1.0), atol=0.08)
    with pytest.raises(ValueError, match="gives no action probabilities.*right@0.9"):
        horde.run(learner, envs.RandomWalk(), steps=10, policy=lambda obs, rng: 1, progress=False)


def test_callable_policy_is_used():
    learner = horde.HordeLearner(demons.reward_demons(timescales=(1,)), hidden_sizes=(4,), step_size=0.01)
    seen = []

    def always_left(observation, rng):
        seen.append(observation.shape)
        return 0

    result = horde.run(learner, "CartPole-v1", steps=30, policy=always_left, progress=False)
    assert len(seen) == 30 and result.config["policy"].startswith("CallablePolicy")


# ---------------------------------------------------------------------------------------------
# Features from spaces


def test_feature_map_for_supported_spaces():
    fm = horde.FeatureMap(gym.spaces.Discrete(4, start=1))
    np.testing.assert_array_equal(fm(3), [0, 0, 1, 0])
    np.testing.assert_array_equal(fm.batch(np.array([1, 4])), [[1, 0, 0, 0], [0, 0, 0, 1]])
    fm = horde.FeatureMap(gym.spaces.MultiDiscrete([2, 3]))
    assert fm.dim == 5
    np.testing.assert_array_equal(fm(np.array([1, 2])), [0, 1, 0, 0, 1])
    np.testing.assert_array_equal(fm.batch(np.array([[1, 2], [0, 0]])), [[0, 1, 0, 0, 1], [1, 0, 1, 0, 0]])
    fm = horde.FeatureMap(gym.spaces.Box(-1, 1, (2, 3)))
    assert fm.dim == 6 and fm(np.ones((2, 3))).dtype == np.float32


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Discrete(4, start=1),
        gym.spaces.MultiDiscrete([2, 3], start=[1, -1]),
        gym.spaces.MultiBinary(3),
        gym.spaces.Box(-1, 1, (2, 3)),
    ],
)
def test_feature_map_jax_form_equals_the_numpy_form(space):
    fm = horde.FeatureMap(space)
    f = jax.jit(fm.jax_transform())
    space.seed(0)
    for _ in range(20):
        o = space.sample()
        np.testing.assert_array_equal(np.asarray(f(jnp.asarray(o))), fm(o))


@pytest.mark.parametrize(
    "space",
    [gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), gym.spaces.Text(5), gym.spaces.Tuple((gym.spaces.Discrete(2),))],
)
def test_unsupported_observation_space_fails_with_clear_message(space):
    with pytest.raises(ValueError, match=rf"observation space .*{type(space).__name__}.* is not supported"):
        horde.FeatureMap(space)


def test_discrete_observation_env_runs_with_one_hot_features():
    learner = horde.HordeLearner([Demon("r", C.reward(), D.constant(0.9))], hidden_sizes=(), step_size=0.1)
    result = horde.run(learner, "FrozenLake-v1", steps=200, progress=False, env_kwargs={"is_slippery": False})
    assert result.predictions.shape == (1, 200, 1)


def test_bad_run_arguments():
    learner = horde.HordeLearner([Demon("x", C.observation(7), D.constant(0.9))], hidden_sizes=(4,))
    with pytest.raises(ValueError, match=r"demon 'x'.*index 7.*observation_dim 4"):
        horde.run(learner, "CartPole-v1", steps=10, progress=False)
    ok = horde.HordeLearner([Demon("x", C.observation(0), D.constant(0.9))], hidden_sizes=(4,))
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        horde.run(ok, "CartPole-v1", steps=0)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        horde.run(ok, "CartPole-v1", steps=5, chunk_size=0)
    with pytest.raises(ValueError, match="FixedProbabilities has 3 probabilities"):
        horde.run(ok, "CartPole-v1", steps=5, policy=horde.FixedProbabilities([0.2, 0.3, 0.5]))


class TupleActionEnv(gym.Env):
    """Actions are (Discrete(2), Discrete(3)) pairs: a space with no fixed shape."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3)))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.ones(1, np.float32), {}

    def step(self, action):
        return np.ones(1, np.float32), 1.0, False, False, {}


def test_action_space_without_a_shape_fails_with_clear_message():
    # Actions are stored as arrays: a Tuple action space used to end in a bare
    # "can only concatenate tuple" TypeError on the first chunk.
    learner = horde.HordeLearner([Demon("x", C.observation(0), D.constant(0.9))], hidden_sizes=(4,))
    with pytest.raises(ValueError, match=r"action space Tuple\(Discrete\(2\), Discrete\(3\)\).*no fixed shape"):
        horde.run(learner, TupleActionEnv(), steps=5, policy=lambda o, rng: (0, 1), progress=False)


# ---------------------------------------------------------------------------------------------
# Results on disk and progress


def test_run_result_save_and_load_round_trip(tmp_path):
    learner = horde.HordeLearner(NEXTING, hidden_sizes=(8,), step_size=0.01)
    result = horde.run(learner, "CartPole-v1", steps=120, seed=4, record_every=3, progress=False)
    result.save(tmp_path / "run")
    loaded = horde.RunResult.load(tmp_path / "run")
    for name in horde.RunResult.ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name))
    assert loaded.demon_names == result.demon_names and loaded.config == result.config
    assert loaded.record_every == 3 and loaded.total_steps == 120
    (tmp_path / "run" / "records.zarr" / "predictions" / "c" / "0" / "0" / "0").write_bytes(b"not a zarr chunk")
    with pytest.raises(ValueError, match="could not be read"):
        horde.RunResult.load(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="is not a saved run"):
        horde.RunResult.load(tmp_path / "nothing")


def test_progress_bar_shows_rate_and_td_error_and_is_silent_when_off(capsys):
    learner = horde.HordeLearner(demons.reward_demons(timescales=(1,)), hidden_sizes=(4,), step_size=0.01)
    horde.run(learner, "CartPole-v1", steps=50, progress=False)
    assert capsys.readouterr().err == ""
    horde.run(learner, "CartPole-v1", steps=50, progress=True, chunk_size=10)
    err = capsys.readouterr().err
    assert "50/50" in err and "|δ|" in err


# ---------------------------------------------------------------------------------------------
# Divergence, and what both runners record about the demons


class InfiniteRewardEnv(gym.Env):
    """One feature, always 1; reward 1 at every step but step ``at`` (counted over the whole
    run), whose reward is +inf; never ends. A reward demon with γ = 0 learns
    ``w += α (R - w)``: the update at step ``at`` makes ``w`` infinite, so the first
    non-finite prediction is exactly at step ``at + 1``."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, at: int):
        self.at, self.t = at, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.ones(1, np.float32), {}

    def step(self, action):
        reward = np.inf if self.t == self.at else 1.0
        self.t += 1
        return np.ones(1, np.float32), reward, False, False, {}


class InfiniteRewardFuncEnv(FuncEnv):
    """``InfiniteRewardEnv`` as a functional environment (its state counts the steps)."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def initial(self, rng, params=None):
        return jnp.zeros((), jnp.int32)

    def transition(self, state, action, rng, params=None):
        return state + 1

    def observation(self, state, rng, params=None):
        return jnp.ones(1, jnp.float32)

    def reward(self, state, action, next_state, rng, params=None):
        return jnp.where(state == self.at, jnp.inf, 1.0)

    def terminal(self, state, rng, params=None):
        return jnp.zeros((), bool)


def test_both_runners_report_the_exact_divergence_step_with_the_records_up_to_it():
    at, chunk = 37, 16  # the divergence (step 38) falls inside the chunk of steps 32-47
    learner = _linear_learner([Demon("r", C.reward(), D.constant(0.0))], step_size=0.5)
    errors = {}
    with pytest.raises(horde.DivergenceError) as info:
        horde.run(learner, InfiniteRewardEnv(at), steps=200, chunk_size=chunk, progress=False)
    errors["run"] = info.value
    with pytest.raises(horde.DivergenceError) as info:
        horde.run_jax(
            learner, InfiniteRewardFuncEnv(at), steps=200, chunk_size=chunk, max_episode_steps=1000, progress=False
        )
    errors["run_jax"] = info.value
    # The same stream without the infinite reward: the same predictions up to step `at`.
    good = horde.run(learner, InfiniteRewardEnv(10**9), steps=at + 1, chunk_size=chunk, progress=False)
    good_state = horde.run(learner, InfiniteRewardEnv(at), steps=32, chunk_size=chunk, progress=False).state
    for runner, err in errors.items():
        result = err.result
        assert err.step == at + 1 and err.demons == ("r",), runner
        np.testing.assert_array_equal(result.steps, np.arange(at + 2), err_msg=runner)
        np.testing.assert_array_equal(result.predictions[:, : at + 1], good.predictions, err_msg=runner)
        assert not np.isfinite(result.predictions[0, at + 1]).any(), runner
        np.testing.assert_array_equal(result.rewards[0, at], np.inf, err_msg=runner)
        assert result.total_steps == 32, runner  # the last good state: after the chunks before it
        for leaf, expected in zip(jax.tree_util.tree_leaves(result.state), jax.tree_util.tree_leaves(good_state)):
            np.testing.assert_array_equal(np.asarray(leaf), np.asarray(expected), err_msg=runner)
    assert str(errors["run"]) == str(errors["run_jax"])
    assert str(errors["run"]).startswith("learning diverged at step 38: non-finite predictions")


def test_vector_run_reports_the_earliest_divergence_over_the_copies():
    learner = _linear_learner([Demon("r", C.reward(), D.constant(0.0))], step_size=0.5)
    venv = gym.vector.SyncVectorEnv([lambda: InfiniteRewardEnv(50), lambda: InfiniteRewardEnv(20)])
    with pytest.raises(horde.DivergenceError, match=r"at step 21 in copy 1 \(seed 3\)") as info:
        horde.run(learner, venv, steps=100, seed=2, chunk_size=64, progress=False)
    result = info.value.result
    assert info.value.step == 21 and result.total_steps == 0
    np.testing.assert_array_equal(result.steps, np.arange(22))
    assert np.isfinite(result.predictions[0]).all() and np.isfinite(result.predictions[1, :21]).all()


def test_both_runners_record_the_demons_info_and_it_survives_save_and_load(tmp_path):
    import envs

    demon_set = [
        Demon("r@0.9", C.reward(), D.constant(0.9), lamda=0.5),
        Demon("x1@until", C.observation(1), D.until(4, 0.8), z=1.0),
        Demon("right", C.reward(), D.timescale(10), target_policy=P.fixed([0.0, 1.0])),
    ]
    learner = _linear_learner(demon_set)
    expected = tuple(d.info for d in learner.demons)
    assert len(expected) == 3 and expected[2].off_policy and expected[1].z == 1.0
    policy = horde.FixedProbabilities([0.5, 0.5])
    results = {
        "run": horde.run(learner, envs.RandomWalk(), steps=20, policy=policy, progress=False),
        "run_jax": horde.run_jax(learner, envs.RandomWalk(), steps=20, policy=policy, progress=False),
    }
    for runner, result in results.items():
        assert result.demons == expected, runner
        loaded = horde.RunResult.load(result.save(tmp_path / runner))
        assert loaded.demons == expected, runner
        assert all(isinstance(d, demons.DemonInfo) for d in loaded.demons), runner


def _hand_built(n_names, k=4, n=2, **overrides):
    fields = dict(
        demon_names=tuple(f"d{i}" for i in range(n_names)),
        steps=np.arange(k),
        predictions=np.zeros((1, k, n)),
        td_errors=np.zeros((1, k, n)),
        cumulants=np.zeros((1, k, n)),
        discounts=np.zeros((1, k, n)),
        rewards=np.zeros((1, k)),
        terminated=np.zeros((1, k), bool),
        truncated=np.zeros((1, k), bool),
        valid=np.ones((1, k), bool),
        episode_seed=np.zeros(0, np.int64),
        episode_end_step=np.zeros(0, np.int64),
        episode_return=np.zeros(0),
        episode_length=np.zeros(0, np.int64),
        wall_time=1.0,
        total_steps=k,
        record_every=1,
        config={},
    )
    fields.update(overrides)
    return horde.RunResult(**fields)


def test_run_result_refuses_arrays_that_do_not_fit_its_demons():
    _hand_built(2)  # consistent: accepted
    with pytest.raises(ValueError, match=r"predictions must have shape \(n_seeds, k, n_demons=3\).*got \(1, 4, 2\)"):
        _hand_built(3)
    with pytest.raises(ValueError, match=r"td_errors must have shape \(1, 4, 2\).*got \(1, 5, 2\)"):
        _hand_built(2, td_errors=np.zeros((1, 5, 2)))
    with pytest.raises(ValueError, match=r"rewards must have shape \(1, 4\).*got \(4,\)"):
        _hand_built(2, rewards=np.zeros(4))
    with pytest.raises(ValueError, match=r"episode_end_step must have shape \(2,\).*got \(0,\)"):
        _hand_built(2, episode_seed=np.zeros(2, np.int64))


def test_run_result_demons_are_demon_infos_in_name_order():
    infos = [demons.Demon(f"d{i}", demons.cumulants.reward(), demons.discounts.constant(0.5)).info for i in range(2)]
    r = _hand_built(2, demons=[infos[0]._asdict(), infos[1]])  # plain data is read back as DemonInfo
    assert r.demons == tuple(infos)
    with pytest.raises(ValueError, match="demons must describe the demon_names in order"):
        _hand_built(2, demons=infos[::-1])
    with pytest.raises(TypeError, match=r"demons\[0\] must be a demons.DemonInfo"):
        _hand_built(2, demons=["d0", "d1"])


def test_loading_a_run_whose_names_do_not_fit_its_arrays_is_refused(tmp_path):
    import json

    _hand_built(2).save(tmp_path / "r")
    group = tmp_path / "r" / "records.zarr" / "zarr.json"
    meta = json.loads(group.read_text())
    meta["attributes"]["horde"]["demon_names"] = meta["attributes"]["horde"]["demon_names"][:1]
    group.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"predictions must have shape \(n_seeds, k, n_demons=1\)"):
        horde.RunResult.load(tmp_path / "r")


@pytest.mark.parametrize("vector", [False, True])
def test_episodes_end_at_the_recorded_steps_that_terminated_or_were_truncated(vector):
    """Each finished episode's end step, length and return agree with the per-step records."""
    learner = horde.HordeLearner(NEXTING, hidden_sizes=(8,))
    env = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")]) if vector else "CartPole-v1"
    result = horde.run(learner, env, steps=600, seed=2, chunk_size=64, progress=False)
    ended = (result.terminated[0] | result.truncated[0]) & result.valid[0]
    assert ended.sum() > 5
    np.testing.assert_array_equal(result.episode_end_step, result.steps[ended])
    starts = np.concatenate([[0], result.steps[ended][:-1] + (2 if vector else 1)])  # a vector env's autoreset step
    np.testing.assert_array_equal(result.episode_length, result.steps[ended] - starts + 1)
    returns = [
        result.rewards[0][s : e + 1][result.valid[0][s : e + 1]].sum() for s, e in zip(starts, result.steps[ended])
    ]
    np.testing.assert_allclose(result.episode_return, returns)
