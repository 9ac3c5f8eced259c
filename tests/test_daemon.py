"""``horde.Daemon``: the donated, packed single-step path must give the learner's own update (to
float32 rounding: XLA may fuse the packed program differently), check its inputs like the
learner does, and never lose its state to a bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import horde
from demons import Demon
from demons import cumulants as C
from demons import discounts as D
from demons import policies as P


def _assert_trees_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _assert_trees_close(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=RTOL, atol=ATOL)


RTOL, ATOL = 1e-5, 1e-6


def _horde_learner():
    demon_list = [
        Demon("r@0.9", C.reward(), D.constant(0.9), lamda=0.7),
        Demon("x0@0.5", C.observation(0), D.constant(0.5)),
        Demon("a2", C.action_indicator(2), D.timescale(4)),
        Demon("off:a1", C.reward(), D.constant(0.8), lamda=0.5, target_policy=P.fixed([0.1, 0.6, 0.1, 0.2])),
        Demon("until", C.constant(1.0), D.until(1, 0.3)),
    ]
    return horde.HordeLearner(
        demon_list,
        hidden_sizes=(8, 8),
        optimizer=horde.IDBD(0.02, 0.01),
        bounder=horde.ObGDBounding(),
        normalizer=horde.WelfordNormalizer(),
        diagnostics=True,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(optimizer=horde.LMS(0.05), bounder=horde.ObGDBounding()),
        dict(
            optimizer=horde.Autostep(0.02), per_head_gamma_lamda=[0.0, 0.5, 0.9, 0.0], normalizer=horde.EMANormalizer()
        ),
    ],
)
def test_core_daemon_equals_learner_update(kwargs):
    learner = horde.MultiHeadMLPLearner(4, hidden_sizes=(16, 16), **kwargs)
    state = learner.init(5, jax.random.key(1))
    daemon = horde.Daemon(learner, state)
    rng = np.random.default_rng(0)
    for _ in range(40):
        x = rng.standard_normal(5).astype(np.float32)
        y = rng.standard_normal(4).astype(np.float32)
        y[rng.random(4) < 0.3] = np.nan
        expected = learner.update(state, x, y)
        state = expected.state
        got = daemon.update(x, y)
        assert got.state is None and isinstance(got.predictions, np.ndarray)
        np.testing.assert_allclose(got.predictions, np.asarray(expected.predictions), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(got.errors, np.asarray(expected.errors), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(got.per_head_metrics, np.asarray(expected.per_head_metrics), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(float(got.trunk_bounding_metric), float(expected.trunk_bounding_metric), rtol=RTOL)
        np.testing.assert_allclose(daemon.predict(x), np.asarray(learner.predict(state, x)), rtol=RTOL, atol=ATOL)
    _assert_trees_close(daemon.state, state)


def test_horde_daemon_transitions_equal_learner():
    """Integer actions travel as int32 bits inside a float32 vector: action-indicator
    cumulants and the off-policy ratio must see exactly the action given."""
    learner = _horde_learner()
    state = learner.init(3, jax.random.key(4))
    daemon = horde.Daemon(learner, state)
    rng = np.random.default_rng(1)
    obs = rng.standard_normal(3).astype(np.float32)
    for t in range(60):
        action = int(rng.integers(4))
        next_obs = rng.standard_normal(3).astype(np.float32)
        reward = float(rng.standard_normal())
        terminated, truncated = t % 17 == 16, t % 23 == 22
        kwargs = dict(terminated=terminated, truncated=truncated, behaviour_prob=0.25)
        expected = learner.update_from_transition(state, obs, action, reward, next_obs, **kwargs)
        state = expected.state
        got = daemon.update_from_transition(obs, np.int64(action), reward, next_obs, **kwargs)
        for field in ("predictions", "td_errors", "td_targets", "per_demon_metrics", "rupee", "ude", "diverged"):
            np.testing.assert_allclose(
                getattr(got, field), np.asarray(getattr(expected, field)), err_msg=field, rtol=RTOL, atol=ATOL
            )
        np.testing.assert_allclose(float(got.trunk_bounding_metric), float(expected.trunk_bounding_metric), rtol=RTOL)
        obs = next_obs
    _assert_trees_close(daemon.state, state)
    assert np.all(np.isfinite(daemon.predict(obs)))


@pytest.mark.parametrize("with_discounts", [False, True])
def test_horde_daemon_update_with_explicit_cumulants(with_discounts):
    learner = _horde_learner()
    state = learner.init(3, jax.random.key(5))
    daemon = horde.Daemon(learner, state)
    rng = np.random.default_rng(2)
    for t in range(30):
        obs, next_obs = rng.standard_normal((2, 3)).astype(np.float32)
        c = rng.standard_normal(5).astype(np.float32)
        c[1] = np.nan  # an inactive demon
        kwargs = dict(terminated=t % 7 == 6, rhos=rng.uniform(0, 2, 5).astype(np.float32))
        if with_discounts:
            kwargs["discounts"] = rng.uniform(0, 1, 5).astype(np.float32)
        expected = learner.update(state, obs, c, next_obs, **kwargs)
        state = expected.state
        got = daemon.update(obs, c, next_obs, **kwargs)
        np.testing.assert_allclose(got.td_errors, np.asarray(expected.td_errors), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(got.td_targets, np.asarray(expected.td_targets), rtol=RTOL, atol=ATOL)
    _assert_trees_close(daemon.state, state)


def test_bad_inputs_are_refused_and_the_state_is_kept():
    learner = _horde_learner()
    daemon = horde.Daemon(learner, learner.init(3, jax.random.key(6)))
    good = np.zeros(3, np.float32)
    daemon.update_from_transition(good, 1, 0.5, good)
    before = daemon.state
    with pytest.raises(ValueError, match="observation must be finite"):
        daemon.update_from_transition(np.array([0.0, np.nan, 0.0], np.float32), 1, 0.5, good)
    with pytest.raises(ValueError, match=r"next_observation must have shape \(3,\)"):
        daemon.update_from_transition(good, 1, 0.5, np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="action must be an integer"):
        daemon.update_from_transition(good, 0.5, 0.5, good)
    with pytest.raises(ValueError, match="behaviour_prob must be in"):
        daemon.update_from_transition(good, 1, 0.5, good, behaviour_prob=0.0)
    with pytest.raises(ValueError, match="reward must be finite"):
        daemon.update_from_transition(good, 1, np.inf, good)
    with pytest.raises(ValueError, match="rhos must be given"):
        daemon.update(good, np.zeros(5, np.float32), good)
    with pytest.raises(ValueError, match="discount of demon 'x0@0.5' must be in"):
        daemon.update(good, np.zeros(5), good, discounts=[0.5, 1.5, 0.5, 0.5, 0.5], rhos=np.ones(5))
    _assert_trees_equal(daemon.state, before)

    with pytest.raises(ValueError, match="next_observation must be finite"):
        daemon.update_from_transition(good, 1, 0.5, np.array([0.0, 0.0, -np.inf], np.float32))
    _assert_trees_equal(daemon.state, before)

    core = horde.MultiHeadMLPLearner(2, hidden_sizes=(4,))
    core_daemon = horde.Daemon(core, core.init(3, jax.random.key(0)))
    core_daemon.update(good, np.ones(2, np.float32))
    core_before = core_daemon.state
    with pytest.raises(ValueError, match="targets must be finite or NaN"):
        core_daemon.update(good, np.array([np.inf, 0.0], np.float32))
    with pytest.raises(ValueError, match="observation must be finite"):
        core_daemon.update(np.array([np.nan, 0.0, 0.0], np.float32), np.ones(2, np.float32))
    _assert_trees_equal(core_daemon.state, core_before)  # step_count included
    with pytest.raises(ValueError, match=r"targets must have shape \(2,\)"):
        core_daemon.update(good, np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="needs a HordeLearner"):
        core_daemon.update_from_transition(good, 0, 0.0, good)


def test_the_given_state_survives_and_state_assignment_round_trips():
    learner = horde.MultiHeadMLPLearner(3, hidden_sizes=(8,))
    state = learner.init(2, jax.random.key(2))
    snapshot = jax.tree_util.tree_map(np.asarray, state)
    daemon = horde.Daemon(learner, state)
    for _ in range(5):
        daemon.update(np.ones(2, np.float32), np.ones(3, np.float32))
    _assert_trees_equal(state, snapshot)  # donation never touches the caller's arrays
    assert int(daemon.state.step_count) == 5

    daemon.state = state  # back to the start
    _assert_trees_equal(daemon.state, snapshot)
    copy = daemon.state
    daemon.update(np.ones(2, np.float32), np.ones(3, np.float32))
    _assert_trees_equal(copy, snapshot)  # a copy, not a view of the donated buffers

    other = horde.MultiHeadMLPLearner(3, hidden_sizes=(8,)).init(4, jax.random.key(0))
    with pytest.raises(ValueError, match="structure, shapes and dtypes"):
        daemon.state = other
    with pytest.raises(TypeError, match="MultiHeadMLPLearner or a HordeLearner"):
        horde.Daemon(object(), state)
    with pytest.raises(ValueError, match="heads"):
        horde.Daemon(horde.MultiHeadMLPLearner(4, hidden_sizes=(8,)), state)


def test_step_count_is_counted_on_the_host_and_wraps_like_the_learner():
    """The daemon keeps ``step_count`` out of its compiled calls; it must still read as the
    learner's own count, int32 wrap-around included."""
    learner = horde.MultiHeadMLPLearner(2, hidden_sizes=(4,))
    state = learner.init(3, jax.random.key(0))
    state = state._replace(step_count=jnp.asarray(2**31 - 2, jnp.int32))
    daemon = horde.Daemon(learner, state)
    x, y = np.ones(3, np.float32), np.ones(2, np.float32)
    for _ in range(2):
        state = learner.update(state, x, y).state
        daemon.update(x, y)
    assert int(state.step_count) == -(2**31)
    _assert_trees_close(daemon.state, state)
    assert daemon.state.step_count.dtype == jnp.int32 and int(daemon.state.step_count) == -(2**31)


def _welford_reference(xs):
    """The normalizer's own algorithm step by step in NumPy float32, every operation
    rounded on its own (quotients for every scaling, Knuth's two-sum)."""
    f = np.float32

    def two_sum(a, b):
        s = f(a + b)
        b_virtual = f(s - a)
        return s, f(f(a - f(s - b_virtual)) + f(b - b_virtual))

    def accumulate(hi, lo, inc):
        s, e = two_sum(hi, inc)
        return two_sum(s, f(lo + e))

    mean = mean_low = var = var_low = np.zeros(xs.shape[1], f)
    for n, x in enumerate(xs, 1):
        delta = f(f(x - mean) - mean_low)
        mean, mean_low = accumulate(mean, mean_low, f(delta / f(n)))
        delta_new = f(f(x - mean) - mean_low)
        var_old = f(var + var_low)
        spread = f(f(delta_new * delta) / f(n))
        var, var_low = accumulate(var, var_low, f(spread - f(var_old / f(n))))
    return mean, mean_low, var, var_low


def test_normalizer_state_is_the_same_in_every_compiled_program():
    """The Daemon's packed step and ``update_from_transition`` compile the normalizer into
    different programs; XLA contracts ``a*b + c`` into a fused multiply-add where a product
    and a sum share a fused kernel, which once made the two-sum's low word (and so RUPEE)
    differ between them. Both programs must give the float32 reference bit for bit."""
    normalizer = horde.WelfordNormalizer()
    xs = np.random.default_rng(3).standard_normal((40, 5)).astype(np.float32)
    alone = jax.jit(normalizer.update)

    @jax.jit
    def embedded(state, x):  # a consumer of every output fuses the program differently
        y, new = normalizer.update(state, 2.0 * x - 1.0)
        return y * 3.0 + new.mean * new.var, new

    s1 = s2 = normalizer.init(5)
    for x in xs:
        s1 = alone(s1, x)[1]
        s2 = embedded(s2, (x + 1.0) / 2.0)[1]
    want = _welford_reference(xs)
    want2 = _welford_reference((2.0 * ((xs + 1.0) / 2.0) - 1.0).astype(np.float32))
    for state, ref in ((s1, want), (s2, want2)):
        got = (state.mean, state.mean_low, state.var, state.var_low)
        for g, w in zip(got, ref):
            np.testing.assert_array_equal(np.asarray(g), w)
