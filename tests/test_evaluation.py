"""Evaluation against known answers: ideal returns (brute force), errors, RUPEE vs the exact
MSPBE, UDE."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
import horde
from demons import Demon
from demons import cumulants as C
from demons import discounts as D
from horde.evaluation import error_curve, ideal_returns, run_ideal_returns


def _brute_force(c, g, term, trunc, z, tolerance):
    """Double loop: G_t = Σ_k (Π_{j<k} γ_{t+j}) c_{t+k}, stopping at the episode's end."""
    T, n = c.shape
    G = np.zeros((T, n))
    complete = np.zeros((T, n), bool)
    for i in range(n):
        for t in range(T):
            total, weight = 0.0, 1.0
            for k in range(t, T):
                total += weight * c[k, i]
                if term[k]:
                    total += weight * z[i]
                    remainder = 0.0
                    break
                if trunc[k] or k == T - 1:
                    remainder = weight * g[k, i]
                    break
                weight *= g[k, i]
            G[t, i] = total
            complete[t, i] = remainder <= tolerance
    return G, complete


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ideal_returns_equal_brute_force_double_sum(seed):
    rng = np.random.default_rng(seed)
    T, n = 300, 4
    c = rng.normal(size=(T, n))
    g = np.stack([np.full(T, 0.9), np.full(T, 0.5), rng.uniform(0.6, 1.0, T), (rng.random(T) > 0.1) * 0.95], axis=1)
    term = rng.random(T) < 0.03
    trunc = (rng.random(T) < 0.02) & ~term
    z = np.array([0.0, 1.0, -2.0, 0.5])
    got = ideal_returns(c, g, term, trunc, z=z)
    want, complete = _brute_force(c, g, term, trunc, z, 0.01)
    np.testing.assert_allclose(got.returns, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(got.complete, complete)


def test_incomplete_tail_is_ceil_log_001_over_log_gamma_steps():
    T = 200
    result = ideal_returns(np.ones((T, 2)), np.tile([0.9, 0.99], (T, 1)), np.zeros(T, bool), np.zeros(T, bool))
    for i, gamma in enumerate((0.9, 0.99)):
        horizon = math.ceil(math.log(0.01) / math.log(gamma))
        assert result.complete[:, i].sum() == max(T - horizon + 1, 0)
        assert not result.complete[-horizon + 1 :, i].any()


def test_invalid_steps_have_no_return():
    c = np.ones((6, 1))
    term = np.array([0, 1, 0, 0, 0, 1], bool)
    valid = np.array([1, 1, 0, 1, 1, 1], bool)
    r = ideal_returns(c, np.full((6, 1), 0.5), term, np.zeros(6, bool), valid=valid)
    assert np.isnan(r.returns[2, 0]) and not r.complete[2, 0]
    np.testing.assert_allclose(r.returns[[0, 1, 3, 4, 5], 0], [1.5, 1.0, 1.75, 1.5, 1.0])


def test_run_ideal_returns_take_each_demons_terminal_outcome_from_the_result(tmp_path):
    env = envs.RandomWalk()
    # RandomWalk: terminating on the left gives reward 0, on the right 1; z = 5 is added at
    # every termination, whichever side.
    ds = [Demon("r", C.reward(), D.constant(1.0)), Demon("r+5", C.reward(), D.constant(1.0), z=5.0)]
    learner = horde.HordeLearner(ds, hidden_sizes=(), step_size=0.0, sparsity=0.0)
    result = horde.run(learner, env, steps=300, seed=0, progress=False)
    assert [d.z for d in result.demons] == [0.0, 5.0]
    ideal = run_ideal_returns(result)
    done = result.terminated[0]
    np.testing.assert_allclose(ideal.returns[0, done, 1], ideal.returns[0, done, 0] + 5.0)
    np.testing.assert_allclose(ideal.returns[0, done, 0], result.rewards[0, done])
    explicit = run_ideal_returns(result, z=[0.0, 0.0])
    np.testing.assert_allclose(explicit.returns[..., 1], explicit.returns[..., 0])
    loaded = horde.RunResult.load(result.save(tmp_path / "run"))
    assert loaded.demons == result.demons
    np.testing.assert_array_equal(run_ideal_returns(loaded).returns, ideal.returns)


def test_error_curve_scores_perfect_and_mean_predictors():
    learner = horde.HordeLearner([Demon("r", C.reward(), D.constant(0.9))], hidden_sizes=(4,), step_size=0.01)
    result = horde.run(learner, "CartPole-v1", steps=600, seed=0, progress=False)
    ideal = run_ideal_returns(result)
    perfect = result.__class__(
        **{**result.__dict__, "predictions": np.where(ideal.complete, ideal.returns, 0.0).astype(np.float32)}
    )
    curve = error_curve(perfect, window=100)
    assert np.nanmax(curve.rmse) < 1e-5
    mean = np.nanmean(np.where(ideal.complete, ideal.returns, np.nan))
    flat = result.__class__(**{**result.__dict__, "predictions": np.full_like(result.predictions, mean)})
    whole = error_curve(flat, window=600)
    np.testing.assert_allclose(whole.normalized_rmse[0, 0, 0], 1.0, rtol=1e-4)
    summary = horde.evaluation.demon_summary(result)
    assert summary["rmse"].shape == (1,) and np.isfinite(summary["mean_squared_td_error"]).all()


def test_rupee_approaches_sqrt_mspbe_on_random_walk():
    """Frozen weights w = 0 on the 5-state random walk with one-hot features: the expected TD
    error is 0.5 in the rightmost state and 0 elsewhere; visits per episode are 1, 2, 3, 2, 1,
    so d = (1, 2, 3, 2, 1)/9 and MSPBE = Σ_s d(s) δ̄(s)² = 0.25/9 (tabular: Π = I)."""
    learner = horde.HordeLearner(
        [Demon("r", C.reward(), D.constant(1.0))],
        hidden_sizes=(),
        step_size=0.0,
        sparsity=0.0,
        diagnostics=True,
        diagnostics_step_size=0.01,
    )
    state = learner.init(5, jax.random.key(0))
    state = state._replace(core=state.core._replace(head_params=horde.HeadParams(jnp.zeros((1, 5)), jnp.zeros(1))))
    result = horde.run(learner, envs.RandomWalk(), steps=150_000, seed=0, state=state, progress=False, chunk_size=8192)
    rupee = float(np.mean(result.rupee[0, -20_000:, 0]))
    np.testing.assert_allclose(rupee, math.sqrt(0.25 / 9), rtol=0.15)
    assert result.ude is not None and result.ude.shape == result.rupee.shape


def test_ude_separates_biased_from_unbiased_demons():
    learner = horde.HordeLearner(
        [Demon("r", C.reward(), D.constant(1.0))],
        hidden_sizes=(),
        step_size=0.02,
        sparsity=0.0,
        diagnostics=True,
        diagnostics_step_size=0.001,
    )
    state = learner.init(5, jax.random.key(0))
    frozen = horde.HordeLearner(
        [Demon("r", C.reward(), D.constant(1.0))],
        hidden_sizes=(),
        step_size=0.0,
        sparsity=0.0,
        diagnostics=True,
        diagnostics_step_size=0.001,
    )
    biased = state._replace(core=state.core._replace(head_params=horde.HeadParams(jnp.full((1, 5), 2.0), jnp.zeros(1))))
    learned = horde.run(learner, envs.RandomWalk(), steps=30_000, seed=1, state=state, progress=False)
    stuck = horde.run(frozen, envs.RandomWalk(), steps=30_000, seed=1, state=biased, progress=False)
    assert np.mean(stuck.ude[0, -2000:, 0]) > 5 * np.mean(learned.ude[0, -2000:, 0])
