"""Ground truth for a demon: Monte Carlo true values against closed forms, exhaustive
enumeration, and the records of ``run_jax(..., true_value_every=...)``."""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.envs.phys2d.cartpole import CartPoleFunctional

import envs
import horde
from demons import Demon, DemonSet
from demons import cumulants as C
from demons import discounts as D
from demons import policies as P
from envs.collision import collision_true_values
from envs.random_walk import random_walk_model, random_walk_true_values


def _within(estimate, stderr, exact, k=4.0, slack=1e-5):
    """|estimate - exact| <= k standard errors (plus float32 rounding)."""
    err = np.abs(np.asarray(estimate) - np.asarray(exact))
    assert np.all(err <= k * np.asarray(stderr) + slack), (estimate, exact, stderr)


# ---------------------------------------------------------------------------------------------
# Closed forms: the random walk and Collision


# One environment object and demon set for the direct calls, so that they share one compiled
# rollout function (the cache is keyed by the environment object).
WALK = envs.RandomWalk(n_states=5)
WALK_DEMONS = DemonSet(
    [
        Demon("r@1", C.reward(), D.constant(1.0)),
        Demon("r@0.9", C.reward(), D.constant(0.9)),
        Demon("r@0.9+z", C.reward(), D.constant(0.9), z=0.5),
        Demon("right@0.9", C.reward(), D.constant(0.9), target_policy=P.fixed((0.2, 0.8))),
        Demon("steps_to_0", C.constant(1.0), D.until(0, 0.5, gamma=1.0)),
    ]
)
WALK_STATES = jnp.arange(5, dtype=jnp.int32)
WALK_OBSERVATIONS = jnp.eye(5, dtype=jnp.float32)


def test_random_walk_true_values_match_the_closed_forms_within_standard_errors():
    """Five states, uniform behaviour: on-policy values at γ = 1 and 0.9, a terminal outcome
    (z = 0.5 is the same as rewards 0.5 / 1.5 at the ends), an off-policy demon that moves
    right w.p. 0.8, and a state-dependent discount (steps until state 0 or termination)."""
    tv = horde.evaluation.true_values(WALK, WALK_DEMONS, WALK_STATES, WALK_OBSERVATIONS, rollouts=4000, seed=3)
    assert tv.values.shape == tv.stderr.shape == tv.remainder.shape == (5, 5)
    Pm, _ = random_walk_model(5, 0.5)
    stop = np.ones(5)
    stop[0] = 0.0  # reaching state 0 ends the count
    steps_to_0 = np.linalg.solve(np.eye(5) - Pm * stop[None, :], np.ones(5))
    exact = np.stack(
        [
            random_walk_true_values(5, 1.0),
            random_walk_true_values(5, 0.9),
            random_walk_true_values(5, 0.9, reward_left=0.5, reward_right=1.5),
            random_walk_true_values(5, 0.9, p_right=0.8),
            steps_to_0,
        ],
        axis=1,
    )
    _within(tv.values, tv.stderr, exact)
    assert np.all(tv.stderr[:, :4] < 0.01) and np.all(tv.stderr[1:, 4] > 0)
    # γ = 1 and the count stop at termination; γ = 0.9 at 0.9^k <= 1e-3 (66 steps)
    assert np.all(tv.remainder <= horde.runs.ROLLOUT_TOLERANCE)
    assert tv.horizon <= horde.runs.ROLLOUT_MAX_HORIZON


def _collision_behaviour_values(gamma=0.9):
    """Reward on colliding, γ = 0.9, under the behaviour: forward in 0-3, 50/50 in 4-7."""
    v = np.zeros(8)
    for s in range(7, -1, -1):
        forward = 1.0 if s == 7 else gamma * v[s + 1]
        v[s] = forward if s < 4 else 0.5 * forward
    return v


def test_collision_target_values_are_exact_and_behaviour_values_match_their_recursion():
    """The target policy (always forward) is deterministic and so are the dynamics: every
    rollout returns 0.9^(7-s) exactly, with zero standard error."""
    env = envs.Collision()
    demons = DemonSet(
        [
            Demon("collide", C.reward(), D.constant(0.9), target_policy=P.deterministic(0, 2)),
            Demon("collide_behaviour", C.reward(), D.constant(0.9)),
        ]
    )
    env.reset(seed=5)
    states = jnp.arange(8, dtype=jnp.int32)
    observations = jnp.asarray(env.unwrapped.features())
    tv = horde.evaluation.true_values(env, demons, states, observations, policy="env", rollouts=2000, seed=5)
    np.testing.assert_allclose(tv.values[:, 0], collision_true_values(), rtol=1e-6)
    assert np.all(tv.stderr[:, 0] < 1e-7)  # zero up to the float32 rounding of the mean
    _within(tv.values[:, 1], tv.stderr[:, 1], _collision_behaviour_values())
    np.testing.assert_allclose(tv.values[:4, 1], _collision_behaviour_values()[:4], atol=0.02)


# ---------------------------------------------------------------------------------------------
# A continuous world: exhaustive enumeration of every action sequence


def _cartpole_step(state, action):
    """phys2d CartPole's Euler step in float64 (its parameters: polemass_length 0.6)."""
    g, mc, mp, length, pml, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 0.6, 10.0, 0.02
    x, x_dot, th, th_dot = state
    force = force_mag if action == 1 else -force_mag
    cos, sin = np.cos(th), np.sin(th)
    temp = (force + pml * th_dot**2 * sin) / (mc + mp)
    th_acc = (g * sin - cos * temp) / (length * (4.0 / 3.0 - mp * cos**2 / (mc + mp)))
    x_acc = temp - pml * th_acc * cos / (mc + mp)
    nxt = np.array([x + tau * x_dot, x_dot + tau * x_acc, th + tau * th_dot, th_dot + tau * th_acc])
    terminated = abs(nxt[0]) > 2.4 or abs(nxt[2]) > 12 * 2 * np.pi / 360
    return nxt, terminated


def _enumerated_values(state, gammas, cumulant_of, depth):
    """E[G] under the uniform policy, over all 2^depth action sequences (plain Python loop)."""
    total = np.zeros(len(gammas))
    for actions in itertools.product((0, 1), repeat=depth):
        s, weight, g = np.asarray(state, np.float64), np.ones(len(gammas)), np.zeros(len(gammas))
        for a in actions:
            s, terminated = _cartpole_step(s, a)
            g += weight * cumulant_of(s)
            if terminated:
                break
            weight = weight * gammas
        total += g / 2**depth
    return total


def test_cartpole_true_values_match_exhaustive_enumeration():
    """γ = 0 and γ = 0.5 demons on phys2d CartPole from states near the edge (terminations
    within the horizon); the rollouts stop at 0.5^10 <= 1e-3, the enumeration at depth 10."""
    demons = DemonSet(
        [
            Demon("x_dot@0", C.observation(1), D.constant(0.0)),
            Demon("theta@0.5", C.observation(2), D.constant(0.5)),
            Demon("alive@0.5", C.constant(1.0), D.constant(0.5)),
        ]
    )
    states = np.array([[0.0, 0.1, 0.15, 0.5], [2.3, 0.8, -0.02, 0.0], [0.01, -0.02, 0.03, -0.04]], np.float32)
    tv = horde.evaluation.true_values(CartPoleFunctional(), demons, jnp.asarray(states), states, rollouts=3000)
    assert tv.horizon == 10
    gammas = np.array([0.0, 0.5, 0.5])
    exact = np.stack(
        [
            _enumerated_values(s, gammas, lambda o: np.array([o[1], o[2], 1.0]), depth=10)
            for s in states.astype(np.float64)
        ]
    )
    _within(tv.values, tv.stderr, exact, slack=2e-4)
    # from the first two states some action sequences terminate: the "alive" value is below 2
    assert np.all(exact[:2, 2] < 1.99) and np.all(tv.stderr[:2, 1:] > 0)


def test_true_values_reject_bad_arguments_naming_them():
    env = envs.RandomWalk(n_states=5)
    demons = DemonSet([Demon("r", C.reward(), D.constant(0.9))])
    states, obs = jnp.arange(5, dtype=jnp.int32), jnp.eye(5, dtype=jnp.float32)
    with pytest.raises(ValueError, match="rollouts must be an integer >= 2"):
        horde.evaluation.true_values(env, demons, states, obs, rollouts=1)
    with pytest.raises(ValueError, match=r"observations must have shape \(S, \*\(5,\)\)"):
        horde.evaluation.true_values(env, demons, states, obs[:, :3])
    with pytest.raises(ValueError, match="leading axis S=5"):
        horde.evaluation.true_values(env, demons, states[:3], obs)
    with pytest.raises(ValueError, match=r"tolerance must be in \(0, 1\)"):
        horde.evaluation.true_values(env, demons, states, obs, tolerance=0.0)
    from gymnasium.envs.phys2d.pendulum import PendulumFunctional

    off = DemonSet([Demon("r", C.reward(), D.constant(0.9), target_policy=P.uniform(2))])
    with pytest.raises(ValueError, match="off-policy demons need a Discrete action space"):
        horde.evaluation.true_values(PendulumFunctional(), off, jnp.zeros((1, 2)), jnp.zeros((1, 3)))


# ---------------------------------------------------------------------------------------------
# run_jax records true values at S_t, and the reports read them

RUN_ENV = envs.RandomWalk(n_states=5)
RUN_LEARNER = horde.HordeLearner(
    [Demon(f"next{i}", C.observation(i), D.constant(0.0), target_policy=P.deterministic(1, 2)) for i in range(5)]
    + [Demon("r@0.9", C.reward(), D.constant(0.9))],
    hidden_sizes=(),
    step_size=0.1,
    sparsity=0.0,
)


def _walk_run(steps, n_seeds=1, seed=0):
    """Random walk; demons: each one-hot component at γ = 0 under "always right" (exact:
    component s+1 of S_t's successor), and the reward at γ = 0.9 on-policy. The same learner
    and environment objects every time, so that the compiled functions are reused."""
    return horde.run_jax(
        RUN_LEARNER,
        RUN_ENV,
        steps=steps,
        n_seeds=n_seeds,
        seed=seed,
        true_value_every=1,
        true_value_rollouts=200,
    )


@pytest.fixture(scope="module")
def walk_run():
    """Two copies of 300 steps, true values at every step."""
    return _walk_run(300, n_seeds=2)


def _states_at(result, copy):
    """The random walk's state S_t at every recorded step, read off the records: the
    successor's one-hot is the cumulant of the γ = 0 demons (start state 2 after a reset)."""
    s = np.empty(result.predictions.shape[1], int)
    s[0] = 2
    nxt = result.cumulants[copy, :, :5]
    ended = result.terminated[copy] | result.truncated[copy]
    s[1:] = np.where(ended[:-1], 2, nxt[:-1].argmax(axis=1))
    return s


def test_run_jax_true_values_are_those_of_the_state_before_the_step(walk_run):
    result = walk_run
    assert result.true_value_steps.tolist() == list(range(300))
    assert result.true_values.shape == result.true_value_stderr.shape == (2, 300, 6)
    assert result.config["true_values"]["rollouts"] == 200
    for copy in range(2):
        s = _states_at(result, copy)[result.true_value_steps]
        exact_next = np.zeros((s.size, 5))
        inside = s + 1 < 5
        exact_next[np.flatnonzero(inside), (s + 1)[inside]] = 1.0
        np.testing.assert_array_equal(result.true_values[copy, :, :5], exact_next)
        # 300 comparisons per copy: 5 standard errors (the return is skewed; 200 rollouts)
        exact = random_walk_true_values(5, 0.9)[s]
        _within(result.true_values[copy, :, 5], result.true_value_stderr[copy, :, 5], exact, k=5.0)
        z = (result.true_values[copy, :, 5] - exact) / result.true_value_stderr[copy, :, 5]
        assert 0.8 < np.sqrt(np.mean(z**2)) < 1.2  # the standard errors are the right size
    # copy 1 is the single run with seed 1 (batches of 256 states: the same compiled shape)
    single = _walk_run(300, seed=1)
    np.testing.assert_allclose(single.true_values[0], result.true_values[1], atol=1e-6)


def test_floor_equals_the_normalised_rmse_of_predictions_that_are_the_true_values(walk_run):
    """Two code paths, one definition: a run whose predictions are its true values scores
    RMSVE 0, and its normalised RMSE against the ideal returns is the floor."""
    result = walk_run
    oracle = horde.RunResult(**{**result.__dict__, "predictions": result.true_values.astype(np.float32)})
    summary = horde.evaluation.demon_summary(oracle, last_fraction=0.5)
    np.testing.assert_allclose(summary["rmsve"], 0.0, atol=1e-6)
    np.testing.assert_allclose(summary["floor"][5], summary["normalized_rmse"][5], rtol=1e-6)
    assert 0.0 < summary["floor"][5] < 1.0
    assert np.all(np.isnan(summary["floor"][:5]))  # off-policy: no observed return to score against
    learned = horde.evaluation.demon_summary(result, last_fraction=0.5)
    assert learned["rmsve"][5] > 0 and learned["normalized_rmse"][5] >= learned["floor"][5] - 0.05


def test_true_values_survive_save_load_and_then(walk_run, tmp_path):
    result = walk_run
    loaded = horde.RunResult.load(result.save(tmp_path / "run"))
    for name in ("true_value_steps", "true_values", "true_value_stderr"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name))
    joined = result.then(loaded)
    assert joined.true_values.shape == (2, 600, 6) and joined.true_value_steps.shape == (600,)
    with pytest.raises(ValueError, match="given together"):
        horde.RunResult(**{**result.__dict__, "true_value_stderr": None})
    with pytest.raises(ValueError, match=r"true_values must have shape \(2, 300, 6\)"):
        horde.RunResult(**{**result.__dict__, "true_values": result.true_values[:, :3]})


def test_summary_table_and_learning_curve_show_the_floor(walk_run, capsys):
    import matplotlib

    matplotlib.use("Agg")
    from horde.cli.report import print_summary

    result = walk_run
    print_summary(result)
    header = capsys.readouterr().out.splitlines()[1]
    assert "floor" in header and "RMSVE" in header
    floor = horde.evaluation.true_value_scores(result, last_fraction=1.0)["floor"]
    fig = horde.plots.learning_curves(result, metric="normalized_rmse", smoothing=50)
    dashed = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1
    np.testing.assert_allclose(dashed[0].get_ydata()[0], np.nanmedian(floor))
    assert not [ln for ln in horde.plots.learning_curves(result).axes[0].get_lines() if ln.get_linestyle() == "--"]


def test_run_jax_rejects_bad_true_value_arguments():
    with pytest.raises(ValueError, match="true_value_every"):
        horde.run_jax(RUN_LEARNER, RUN_ENV, steps=10, true_value_every=0)
    with pytest.raises(ValueError, match="true_value_rollouts must be at least 2"):
        horde.run_jax(RUN_LEARNER, RUN_ENV, steps=10, true_value_every=5, true_value_rollouts=1)


def test_rollout_keys_make_the_estimates_reproducible():
    def call(seed):
        return horde.evaluation.true_values(WALK, WALK_DEMONS, WALK_STATES, WALK_OBSERVATIONS, rollouts=4000, seed=seed)

    a, b, c = call(1), call(1), call(2)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
