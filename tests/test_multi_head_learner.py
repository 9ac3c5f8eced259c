"""Specification tests for the multi-head MLP learner core."""

from __future__ import annotations

import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import horde
from horde import (
    IDBD,
    LMS,
    Autostep,
    EMANormalizer,
    MultiHeadMLPLearner,
    ObGDBounding,
    WelfordNormalizer,
    run_multi_head_learning_loop,
    run_multi_head_learning_loop_batched,
)
from horde.core import HeadParams, materialized

FEATURES = 5


def _random_stream(rng, n_steps, n_heads, feature_dim=FEATURES, inactive_fraction=0.3):
    obs = rng.normal(size=(n_steps, feature_dim)).astype(np.float32)
    targets = rng.normal(size=(n_steps, n_heads)).astype(np.float32)
    targets[rng.random(size=targets.shape) < inactive_fraction] = np.nan
    return obs, targets


# ---------------------------------------------------------------------------------------------
# A slow, obviously-correct reference: a Python loop over heads, jax.grad of each head's
# prediction, an LMS step.


def _reference_forward(trunk_w, trunk_b, x, use_layer_norm, slope):
    h = x
    for w, b in zip(trunk_w, trunk_b):
        a = h @ w + b
        if use_layer_norm:
            a = (a - a.mean()) / jnp.sqrt(((a - a.mean()) ** 2).mean() + 1e-5)
        h = jnp.where(a >= 0, a, slope * a)
    return h


def _reference_update(state, x, y, alpha, head_gamma_lamda, use_layer_norm=True, slope=0.01, traces=None):
    trunk_w = [np.asarray(w, np.float64) for w in state.trunk_params.weights]
    trunk_b = [np.asarray(b, np.float64) for b in state.trunk_params.biases]
    head_w = np.asarray(state.head_params.weights, np.float64).copy()
    head_b = np.asarray(state.head_params.biases, np.float64).copy()
    n_heads = len(head_b)
    # Every head's trace in the per-head layout (``learner.head_traces(state)``), given by a
    # caller whose learner shares traces.
    traces = state.head_traces if traces is None else traces
    if traces:
        z_w = np.asarray(traces[0], np.float64).copy()
        z_b = np.asarray(traces[1], np.float64).copy()
    else:  # no stored traces: every head's trace decay is 0
        z_w, z_b = np.zeros_like(head_w), np.zeros(n_heads)
    x = np.asarray(x, np.float64)

    def prediction(trunk, i):
        h = _reference_forward(trunk[0], trunk[1], jnp.asarray(x), use_layer_norm, slope)
        return jnp.dot(jnp.asarray(head_w[i]), h) + head_b[i]

    trunk = ([jnp.asarray(w) for w in trunk_w], [jnp.asarray(b) for b in trunk_b])
    h = np.asarray(_reference_forward(trunk[0], trunk[1], jnp.asarray(x), use_layer_norm, slope))
    grad_w = [np.zeros_like(w) for w in trunk_w]
    grad_b = [np.zeros_like(b) for b in trunk_b]
    predictions = np.zeros(len(head_b))
    for i in range(len(head_b)):
        predictions[i] = float(prediction(trunk, i))
        if np.isnan(y[i]):
            continue
        delta = float(y[i]) - predictions[i]
        if trunk_w:
            g = jax.grad(prediction)(trunk, i)
            for layer in range(len(trunk_w)):
                grad_w[layer] += delta * np.asarray(g[0][layer])
                grad_b[layer] += delta * np.asarray(g[1][layer])
        z_w[i] = head_gamma_lamda[i] * z_w[i] + h
        z_b[i] = head_gamma_lamda[i] * z_b[i] + 1.0
        head_w[i] += alpha * delta * z_w[i]
        head_b[i] += alpha * delta * z_b[i]
    new_trunk_w = [w + alpha * g for w, g in zip(trunk_w, grad_w)]
    new_trunk_b = [b + alpha * g for b, g in zip(trunk_b, grad_b)]
    return predictions, new_trunk_w, new_trunk_b, head_w, head_b, z_w, z_b


@pytest.mark.parametrize("use_layer_norm", [True, False])
def test_update_matches_per_head_reference_with_trunk(use_layer_norm):
    rng = np.random.default_rng(0)
    n_heads, alpha = 6, 0.05
    learner = MultiHeadMLPLearner(
        n_heads, hidden_sizes=(8, 7), step_size=alpha, sparsity=0.5, use_layer_norm=use_layer_norm
    )
    state = learner.init(FEATURES, jax.random.key(1))
    # Non-zero head biases so that the reference checks their use too.
    state = state._replace(head_params=state.head_params._replace(biases=jnp.linspace(-0.5, 0.5, n_heads)))
    obs, targets = _random_stream(rng, 4, n_heads)
    targets[0, [1, 4]] = np.nan
    for x, y in zip(obs, targets):
        ref = _reference_update(state, x, y, alpha, np.zeros(n_heads), use_layer_norm)
        result = learner.update(state, x, y)
        np.testing.assert_allclose(result.predictions, ref[0], rtol=1e-5, atol=1e-6)
        new = result.state
        for got, want in zip(new.trunk_params.weights, ref[1]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        for got, want in zip(new.trunk_params.biases, ref[2]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(new.head_params.weights, ref[3], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(new.head_params.biases, ref[4], rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(np.isnan(result.errors), np.isnan(y))
        state = new


def test_update_matches_reference_in_linear_mode_with_traces():
    rng = np.random.default_rng(1)
    n_heads, alpha = 4, 0.1
    per_head = (0.0, 0.5, 0.9, 0.99)
    learner = MultiHeadMLPLearner(
        n_heads, hidden_sizes=(), step_size=alpha, per_head_gamma_lamda=per_head, sparsity=0.0
    )
    state = learner.init(FEATURES, jax.random.key(2))
    obs, targets = _random_stream(rng, 6, n_heads)
    for x, y in zip(obs, targets):
        ref = _reference_update(state, x, y, alpha, per_head)
        result = learner.update(state, x, y)
        np.testing.assert_allclose(result.predictions, ref[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result.state.head_params.weights, ref[3], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result.state.head_params.biases, ref[4], rtol=1e-5, atol=1e-6)
        active = ~np.isnan(y)
        np.testing.assert_allclose(np.asarray(result.state.head_traces[0])[active], ref[5][active], rtol=1e-5)
        # An inactive head's trace is kept as it was, bit for bit.
        np.testing.assert_array_equal(
            np.asarray(result.state.head_traces[0])[~active], np.asarray(state.head_traces[0])[~active]
        )
        state = result.state


def test_global_gamma_lamda_applies_to_heads_in_linear_mode():
    learner = MultiHeadMLPLearner(1, hidden_sizes=(), gamma=0.9, lamda=0.5, step_size=0.0)
    state = learner.init(2, jax.random.key(0))
    x = np.array([1.0, 2.0], np.float32)
    for _ in range(3):
        state = learner.update(state, x, np.array([0.0], np.float32)).state
    # z = x (1 + 0.45 + 0.45²) after three steps
    np.testing.assert_allclose(state.head_traces[0][0], x * (1 + 0.45 + 0.45**2), rtol=1e-6)


def test_trunk_is_one_vjp_of_error_weighted_cotangent():
    """The trunk step equals α · ∇θ Σ_i δ_i v_i(θ), computed here as one jax.grad."""
    learner = MultiHeadMLPLearner(5, hidden_sizes=(6,), step_size=0.1, sparsity=0.0)
    state = learner.init(3, jax.random.key(3))
    x = jnp.array([0.3, -1.0, 2.0])
    y = jnp.array([1.0, jnp.nan, -1.0, 0.5, jnp.nan])
    result = learner.update(state, x, y)
    delta = jnp.nan_to_num(result.errors)

    def weighted_sum(trunk):
        h = learner.trunk_forward(trunk, x)
        return jnp.dot(delta, learner.head_forward(state.head_params, h))

    grads = jax.grad(weighted_sum)(state.trunk_params)
    np.testing.assert_allclose(
        result.state.trunk_params.weights[0],
        state.trunk_params.weights[0] + 0.1 * grads.weights[0],
        rtol=1e-5,
        atol=1e-7,
    )


@pytest.mark.parametrize("use_layer_norm", [True, False])
def test_bounded_lms_trunk_step_equals_materialised_obgd(use_layer_norm):
    """The LMS trunk step never materialises its gradients: ObGD's ‖αG‖₁ comes from the factors
    α‖g‖₁(‖input‖₁ + 1). Large errors force a scale well below 1; the result must equal
    θ + α s G with G = ∇θ Σ_i δ_i v_i from jax.grad and s = 1 / max(κ ‖αG‖₁, 1)."""
    alpha, kappa = 0.5, 2.0
    learner = MultiHeadMLPLearner(
        4,
        hidden_sizes=(8, 6),
        step_size=alpha,
        bounder=ObGDBounding(kappa),
        sparsity=0.0,
        use_layer_norm=use_layer_norm,
    )
    state = learner.init(3, jax.random.key(11))
    x = jnp.array([0.7, -1.5, 2.0])
    y = jnp.array([40.0, jnp.nan, -25.0, 10.0])
    result = learner.update(state, x, y)
    delta = jnp.nan_to_num(result.errors)

    def weighted_sum(trunk):
        return jnp.dot(delta, learner.head_forward(state.head_params, learner.trunk_forward(trunk, x)))

    grads = jax.grad(weighted_sum)(state.trunk_params)
    l1 = sum(float(jnp.sum(jnp.abs(alpha * g))) for g in jax.tree_util.tree_leaves(grads))
    scale = 1.0 / max(kappa * l1, 1.0)
    assert scale < 0.1
    np.testing.assert_allclose(float(result.trunk_bounding_metric), scale, rtol=1e-5)
    for new, old, g in zip(
        jax.tree_util.tree_leaves(result.state.trunk_params),
        jax.tree_util.tree_leaves(state.trunk_params),
        jax.tree_util.tree_leaves(grads),
    ):
        np.testing.assert_allclose(new, old + alpha * scale * g, rtol=1e-5, atol=1e-6)


def test_idbd_without_meta_learning_equals_lms_through_the_trunk():
    """IDBD with θ = 0 keeps α = α₀: its materialised trunk step must equal LMS's factored one."""
    kwargs = dict(n_heads=3, hidden_sizes=(8, 8), bounder=ObGDBounding(), sparsity=0.5)
    lms = MultiHeadMLPLearner(optimizer=LMS(0.05), **kwargs)
    idbd = MultiHeadMLPLearner(optimizer=IDBD(0.05, 0.0), **kwargs)
    rng = np.random.default_rng(5)
    obs = rng.standard_normal((200, 4)).astype(np.float32)
    targets = (3.0 * rng.standard_normal((200, 3))).astype(np.float32)
    a = run_multi_head_learning_loop(lms, lms.init(4, jax.random.key(2)), obs, targets)
    b = run_multi_head_learning_loop(idbd, idbd.init(4, jax.random.key(2)), obs, targets)
    for u, v in zip(jax.tree_util.tree_leaves(a.state.trunk_params), jax.tree_util.tree_leaves(b.state.trunk_params)):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.per_head_metrics[:, :, 0], b.per_head_metrics[:, :, 0], rtol=1e-3, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Inactive heads


@pytest.mark.parametrize(
    "optimizer, bounder",
    [(LMS(0.1), None), (IDBD(0.05, 0.01), ObGDBounding()), (Autostep(0.05, 0.01), ObGDBounding())],
)
def test_inactive_head_state_is_bit_identical(optimizer, bounder):
    rng = np.random.default_rng(4)
    n_heads = 5
    learner = MultiHeadMLPLearner(
        n_heads, hidden_sizes=(8,), optimizer=optimizer, bounder=bounder, per_head_gamma_lamda=[0.5] * 5
    )
    state = learner.init(FEATURES, jax.random.key(0))
    obs, targets = _random_stream(rng, 30, n_heads, inactive_fraction=0.0)
    targets[:, 2] = np.nan  # head 2 never active
    # Warm all heads' states first so that "unchanged" is not trivially "still zero".
    warm = learner.update(state, obs[0], rng.normal(size=n_heads).astype(np.float32)).state
    before = jax.tree_util.tree_map(np.asarray, warm)
    state = warm
    for x, y in zip(obs, targets):
        state = learner.update(state, x, y).state
    after = jax.tree_util.tree_map(np.asarray, state)
    # Every head's trace as the per-head layout holds it (the learner shares equal traces).
    head_leaves = [after.head_params, learner.head_traces(after), after.head_optimizer_states]
    head_before = [before.head_params, learner.head_traces(before), before.head_optimizer_states]
    n_leaves = 0
    for new_leaf, old_leaf in zip(jax.tree_util.tree_leaves(head_leaves), jax.tree_util.tree_leaves(head_before)):
        np.testing.assert_array_equal(new_leaf[2], old_leaf[2])  # bit-identical: exact equality
        assert not np.array_equal(new_leaf[0], old_leaf[0]), "active heads should have changed"
        n_leaves += 1
    assert n_leaves >= 4


def test_inactive_heads_report_nan_metrics_and_all_inactive_changes_no_head():
    learner = MultiHeadMLPLearner(3, hidden_sizes=(4,))
    state = learner.init(2, jax.random.key(0))
    result = learner.update(state, np.ones(2), np.array([np.nan, 1.0, np.nan]))
    metrics = np.asarray(result.per_head_metrics)
    assert np.isnan(metrics[[0, 2]]).all()
    assert np.isfinite(result.per_head_metrics[1]).all()
    np.testing.assert_allclose(result.per_head_metrics[1, 0], result.per_head_metrics[1, 1] ** 2, rtol=1e-6)
    dicts = horde.multi_head_metrics_to_dicts(result)
    assert dicts[0] is None and dicts[2] is None
    assert set(dicts[1]) == {"squared_error", "error", "mean_step_size"}
    none = learner.update(state, np.ones(2), np.full(3, np.nan))
    np.testing.assert_array_equal(none.state.head_params.weights, state.head_params.weights)
    np.testing.assert_array_equal(none.state.trunk_params.weights[0], state.trunk_params.weights[0])


# ---------------------------------------------------------------------------------------------
# It learns


def test_learns_fixed_nonlinear_multi_target_regression():
    rng = np.random.default_rng(5)
    n_steps, n_heads = 20000, 4
    obs = rng.uniform(-1, 1, size=(n_steps, 3)).astype(np.float32)
    x0, x1, x2 = obs.T
    targets = np.stack([np.sin(2 * x0), x1 * x2, np.abs(x0) - 0.5, np.cos(x1 + x2)], axis=1).astype(np.float32)
    learner = MultiHeadMLPLearner(n_heads, hidden_sizes=(64, 64), step_size=0.01, sparsity=0.5)
    state = learner.init(3, jax.random.key(0))
    result = run_multi_head_learning_loop(learner, state, obs, targets)
    mse = np.asarray(result.per_head_metrics[:, :, 0])
    first, last = mse[:1000].mean(axis=0), mse[-2000:].mean(axis=0)
    assert (last < 0.01).all(), f"final per-head MSE {last} should be below 0.01"
    assert (last < first / 10).all()


# ---------------------------------------------------------------------------------------------
# Step-size optimizers


def _python_idbd(x_seq, y_seq, alpha0, theta):
    """Sutton (1992) IDBD on a linear unit with a bias input, one weight at a time."""
    n = len(x_seq[0]) + 1
    w, beta, h = [0.0] * n, [math.log(alpha0)] * n, [0.0] * n
    for x, y in zip(x_seq, y_seq):
        xs = list(x) + [1.0]
        delta = y - sum(wi * xi for wi, xi in zip(w, xs))
        for i in range(n):
            beta[i] += theta * delta * xs[i] * h[i]
            a = math.exp(beta[i])
            w[i] += a * delta * xs[i]
            h[i] = h[i] * max(0.0, 1.0 - a * xs[i] ** 2) + a * delta * xs[i]
    return w


def _python_autostep(x_seq, y_seq, alpha0, mu, tau):
    """Mahmood et al. (2012) Autostep on a linear unit; the bias is one more input (x = 1), so
    the overshoot bound Σ α x² runs over the weights and the bias together."""
    nw = len(x_seq[0])
    w, b = [0.0] * nw, 0.0
    a, h, v = [alpha0] * nw, [0.0] * nw, [0.0] * nw
    ab, hb, vb = alpha0, 0.0, 0.0

    def meta(a, h, v, z, delta):
        dzh = delta * z * h
        v = max(abs(dzh), v + (1.0 / tau) * a * z * z * (abs(dzh) - v))
        if v > 0:
            a = a * math.exp(mu * dzh / v)
        return a, v

    for x, y in zip(x_seq, y_seq):
        delta = y - (sum(wi * xi for wi, xi in zip(w, x)) + b)
        for i in range(nw):
            a[i], v[i] = meta(a[i], h[i], v[i], x[i], delta)
        ab, vb = meta(ab, hb, vb, 1.0, delta)
        m = max(sum(a[i] * x[i] ** 2 for i in range(nw)) + ab, 1.0)
        a = [ai / m for ai in a]
        ab = ab / m
        for i in range(nw):
            w[i] += a[i] * delta * x[i]
            h[i] = h[i] * (1 - a[i] * x[i] ** 2) + a[i] * delta * x[i]
        b += ab * delta
        hb = hb * (1 - ab) + ab * delta
    return w + [b]


def _linear_learner_weights(optimizer, x_seq, y_seq):
    learner = MultiHeadMLPLearner(1, hidden_sizes=(), optimizer=optimizer)
    state = learner.init(len(x_seq[0]), jax.random.key(0))
    state = state._replace(head_params=HeadParams(jnp.zeros((1, len(x_seq[0]))), jnp.zeros((1,))))
    for x, y in zip(x_seq, y_seq):
        state = learner.update(state, np.asarray(x), np.array([y])).state
    return list(np.asarray(state.head_params.weights[0])) + [float(state.head_params.biases[0])]


def test_idbd_first_two_steps_by_hand():
    # Step 1: δ = 1, h = 0, α = 0.1: w = 0.1·x = (0.1, 0.2), b = 0.1, h = (0.1, 0.2), h_b = 0.1.
    # Step 2: prediction 0.6, δ = 0.4, β += 0.5·0.4·x·h, w += 0.4·exp(β)·x.
    got = _linear_learner_weights(IDBD(0.1, 0.5), [[1.0, 2.0]] * 2, [1.0, 1.0])
    a = [0.1 * math.exp(0.2 * 0.1), 0.1 * math.exp(0.2 * 0.4), 0.1 * math.exp(0.2 * 0.1)]
    want = [0.1 + 0.4 * a[0], 0.2 + 0.4 * a[1] * 2, 0.1 + 0.4 * a[2]]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_autostep_bounds_the_whole_head_against_overshooting():
    """One input x = 10 and a bias: Σ α z² over weight and bias is 101 α₀ ≫ 1, so the bound
    scales both so that one step lands exactly on the target (no oscillation)."""
    got = _linear_learner_weights(Autostep(1.0, 0.0, 100.0), [[10.0]] * 3, [1.0] * 3)
    np.testing.assert_allclose(10.0 * got[0] + got[1], 1.0, rtol=1e-5)


def test_autostep_first_two_steps_by_hand():
    # Step 2: δ = 0.4, v = |δ x h|, so α = 0.1·e^μ for every weight; Σ α x² (bias included)
    # = 0.1·e^0.5·6 = 0.989 < 1.
    got = _linear_learner_weights(Autostep(0.1, 0.5, 100.0), [[1.0, 2.0]] * 2, [1.0, 1.0])
    a = 0.1 * math.exp(0.5)
    want = [0.1 + 0.4 * a, 0.2 + 0.4 * a * 2, 0.1 + 0.4 * a]
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("which", ["IDBD", "Autostep"])
def test_step_size_optimizers_match_python_reference(which):
    rng = np.random.default_rng(6)
    x_seq = rng.normal(size=(40, 3)).tolist()
    y_seq = (rng.normal(size=40) * 2).tolist()
    if which == "IDBD":
        got = _linear_learner_weights(IDBD(0.05, 0.05), x_seq, y_seq)
        want = _python_idbd(x_seq, y_seq, 0.05, 0.05)
    else:
        got = _linear_learner_weights(Autostep(0.3, 0.05, 50.0), x_seq, y_seq)
        want = _python_autostep(x_seq, y_seq, 0.3, 0.05, 50.0)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5)


def _sutton_1992_stream(n_steps, seed):
    """Experiment 1 of Sutton (1992): 20 inputs, the first 5 relevant with weights ±1 whose
    signs flip (one at random) every 20 steps; the other 15 irrelevant."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_steps, 20)).astype(np.float32)
    s = np.ones(5)
    y = np.zeros(n_steps, np.float32)
    for t in range(n_steps):
        if t % 20 == 0:
            s[rng.integers(5)] *= -1
        y[t] = x[t, :5] @ s
    return x, y[:, None]


@pytest.mark.parametrize("optimizer", [IDBD(0.01, 0.01), Autostep(0.01, 0.01)])
def test_adaptive_step_sizes_beat_badly_tuned_lms_on_nonstationary_target(optimizer):
    x, y = _sutton_1992_stream(20000, seed=7)

    def final_mse(opt):
        learner = MultiHeadMLPLearner(1, hidden_sizes=(), optimizer=opt, sparsity=0.0)
        state = learner.init(20, jax.random.key(0))
        result = run_multi_head_learning_loop(learner, state, x, y)
        return float(np.mean(result.per_head_metrics[-5000:, 0, 0]))

    lms = final_mse(LMS(0.005))
    adaptive = final_mse(optimizer)
    assert adaptive < 0.5 * lms, f"{type(optimizer).__name__} MSE {adaptive:.3f} vs badly tuned LMS {lms:.3f}"


def test_traces_are_stored_only_where_some_decay_is_positive():
    assert MultiHeadMLPLearner(3, hidden_sizes=(4,)).init(2, jax.random.key(0)).head_traces == ()
    assert MultiHeadMLPLearner(3, hidden_sizes=(4,)).init(2, jax.random.key(0)).trunk_traces == ()
    learner = MultiHeadMLPLearner(3, hidden_sizes=(4,), per_head_gamma_lamda=[0, 0, 0.5])
    state = learner.init(2, jax.random.key(0))
    # Every head's trace (heads 0 and 1 share one stored trace, see test_core_shared_traces.py).
    assert [t.shape for t in learner.head_traces(state)] == [(3, 4), (3,)]


def test_head_optimizer_gives_hybrid_configuration():
    learner = MultiHeadMLPLearner(3, hidden_sizes=(4,), optimizer=LMS(0.01), head_optimizer=Autostep(0.02))
    state = learner.init(2, jax.random.key(0))
    assert state.trunk_optimizer_states[0] == ()  # LMS keeps no state
    assert state.head_optimizer_states[0].step_sizes.shape == (3, 4)
    result = learner.update(state, np.ones(2), np.ones(3))
    assert np.isfinite(result.per_head_metrics).all()

    # Three updates against separately computed steps: the trunk takes LMS's α·G (G = ∇θ Σ δ_i v_i
    # from jax.grad), each head takes Autostep's step for its trace (h, 1) and error δ_i.
    autostep, alpha = Autostep(0.02), 0.01
    rng = np.random.default_rng(13)
    heads_opt = [(autostep.init_for_shape((4,)), autostep.init_for_shape(())) for _ in range(3)]
    for _ in range(3):
        x = rng.normal(size=2).astype(np.float32)
        y = (3.0 * rng.normal(size=3)).astype(np.float32)
        result = learner.update(state, x, y)
        delta = np.asarray(result.errors)
        h = learner.trunk_forward(state.trunk_params, jnp.asarray(x))

        def weighted_sum(trunk, x=x, delta=delta):
            return jnp.dot(delta, learner.head_forward(state.head_params, learner.trunk_forward(trunk, x)))

        grads = jax.grad(weighted_sum)(state.trunk_params)
        for new, old, g in zip(
            jax.tree_util.tree_leaves(result.state.trunk_params),
            jax.tree_util.tree_leaves(state.trunk_params),
            jax.tree_util.tree_leaves(grads),
        ):
            np.testing.assert_allclose(new, old + alpha * g, rtol=1e-5, atol=1e-7)
        for i in range(3):
            (s_w, s_b), heads_opt[i] = autostep.update_group(heads_opt[i], (h, jnp.ones(())), delta[i])
            np.testing.assert_allclose(
                result.state.head_params.weights[i], state.head_params.weights[i] + delta[i] * s_w, rtol=1e-5, atol=1e-7
            )
            np.testing.assert_allclose(
                result.state.head_params.biases[i], state.head_params.biases[i] + delta[i] * s_b, rtol=1e-5, atol=1e-7
            )
            np.testing.assert_allclose(
                result.state.head_optimizer_states[0].step_sizes[i], heads_opt[i][0].step_sizes, rtol=1e-5
            )
        state = result.state
    # Autostep's step sizes moved away from α₀ = 0.02 (LMS's never would).
    assert not np.allclose(np.asarray(state.head_optimizer_states[0].step_sizes), 0.02, rtol=1e-4, atol=0)


def test_obgd_bounds_a_huge_step():
    learner = MultiHeadMLPLearner(1, hidden_sizes=(), step_size=1.0, bounder=ObGDBounding(kappa=2.0), sparsity=0.0)
    state = learner.init(2, jax.random.key(0))
    state = state._replace(head_params=HeadParams(jnp.zeros((1, 2)), jnp.zeros((1,))))
    x = np.array([1.0, 3.0], np.float32)
    result = learner.update(state, x, np.array([10.0]))
    # M = α κ max(|δ|,1) ‖z‖₁ = 1·2·10·(1+3+1) = 100: effective step 1/100.
    np.testing.assert_allclose(result.state.head_params.weights[0], 10.0 * x / 100.0, rtol=1e-6)
    np.testing.assert_allclose(result.per_head_metrics[0, 2], 1.0 / 100.0, rtol=1e-6)
    assert float(result.trunk_bounding_metric) == 1.0


def test_obgd_trunk_bounding_metric_reports_scale():
    learner = MultiHeadMLPLearner(2, hidden_sizes=(16,), step_size=1.0, bounder=ObGDBounding())
    state = learner.init(4, jax.random.key(0))
    result = learner.update(state, np.ones(4), np.array([50.0, -50.0]))
    assert 0.0 < float(result.trunk_bounding_metric) < 1.0


# ---------------------------------------------------------------------------------------------
# Normalizers and initialisation


def test_welford_normalizer_matches_numpy_running_statistics():
    rng = np.random.default_rng(8)
    data = rng.normal(3.0, 2.0, size=(50, 3)).astype(np.float32)
    norm = WelfordNormalizer()
    state = norm.init(3)
    for t, x in enumerate(data):
        out, state = norm.update(state, jnp.asarray(x))
        seen = data[: t + 1]
        want = (x - seen.mean(0)) / np.sqrt(seen.var(0) + 1e-8)
        np.testing.assert_allclose(out, want, rtol=1e-3, atol=1e-4)


def test_ema_normalizer_tracks_a_shifted_stream():
    norm = EMANormalizer(decay=0.99)
    state = norm.init(1)
    rng = np.random.default_rng(9)
    update = jax.jit(norm.update)  # the same arithmetic as eager calls, compiled once
    for x in rng.normal(0.0, 1.0, size=2000):
        _, state = update(state, jnp.array([x], jnp.float32))
    for x in rng.normal(10.0, 3.0, size=2000):
        out, state = update(state, jnp.array([x], jnp.float32))
    mean = float(state.mean[0])  # held bias-corrected
    var = float(state.var[0])
    assert abs(mean - 10.0) < 1.0 and 4.0 < var < 16.0


def test_ema_normalizer_output_matches_a_float64_loop():
    """Every output against a float64 loop over the documented recursions (bias-corrected
    moving mean and variance, output ``(o - μ) / sqrt(σ² + ε)``), with an ε large enough to
    matter."""
    d, eps = 0.9, 0.5
    norm = EMANormalizer(decay=d, epsilon=eps)
    state = norm.init(2)
    data = np.random.default_rng(4).normal([1.0, -3.0], [0.5, 2.0], size=(40, 2))
    mean = var = np.zeros(2)
    weight = 0.0
    for t, x in enumerate(data):
        new_weight = d * weight + (1 - d)
        old_mean = x if t == 0 else mean / weight
        mean = d * mean + (1 - d) * x
        var = d * var + (1 - d) * (x - old_mean) * (x - mean / new_weight)
        weight = new_weight
        want = (x - mean / weight) / np.sqrt(np.maximum(var / weight, 0.0) + eps)
        out, state = norm.update(state, jnp.asarray(x, jnp.float32))
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


def test_normalizer_is_used_by_the_learner():
    learner = MultiHeadMLPLearner(2, hidden_sizes=(4,), normalizer=WelfordNormalizer())
    state = learner.init(3, jax.random.key(0))
    state = learner.update(state, np.array([1.0, 2.0, 3.0]), np.zeros(2)).state
    assert float(state.normalizer_state.count) == 1.0
    np.testing.assert_allclose(state.normalizer_state.mean, [1.0, 2.0, 3.0])

    # Predictions read the normalised observation: (o - mean) / sqrt(var + 1e-8) over the
    # observations seen so far, computed here by hand, then the reference trunk and the heads.
    seen = [np.array([1.0, 2.0, 3.0])]
    rng = np.random.default_rng(14)
    for _ in range(4):
        o = rng.normal(size=3).astype(np.float32)
        seen.append(o.astype(np.float64))
        result = learner.update(state, o, np.zeros(2))
        data = np.stack(seen)
        x = (o - data.mean(0)) / np.sqrt(data.var(0) + 1e-8)
        h = _reference_forward(state.trunk_params.weights, state.trunk_params.biases, jnp.asarray(x), True, 0.01)
        want = np.asarray(state.head_params.weights) @ np.asarray(h) + np.asarray(state.head_params.biases)
        np.testing.assert_allclose(result.predictions, want, rtol=1e-4, atol=1e-5)
        state = result.state
    probe = np.array([0.5, -1.0, 2.0], np.float32)
    data = np.stack(seen)
    x = (probe - data.mean(0)) / np.sqrt(data.var(0) + 1e-8)
    h = _reference_forward(state.trunk_params.weights, state.trunk_params.biases, jnp.asarray(x), True, 0.01)
    want = np.asarray(state.head_params.weights) @ np.asarray(h) + np.asarray(state.head_params.biases)
    np.testing.assert_allclose(learner.predict(state, probe), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fan_in, sparsity", [(4, 0.9), (5, 0.9), (16, 0.9), (128, 0.9), (10, 0.0), (3, 0.5)])
def test_sparse_init_zeroes_the_same_count_per_unit_and_keeps_one(fan_in, sparsity):
    w = np.asarray(horde.sparse_init(jax.random.key(0), fan_in, 64, sparsity))
    assert w.shape == (fan_in, 64)
    zeros_per_unit = (w == 0).sum(axis=0)
    expected = min(math.floor(sparsity * fan_in), fan_in - 1)
    assert (zeros_per_unit == expected).all()
    assert np.abs(w).max() <= 1 / math.sqrt(fan_in)


@pytest.mark.parametrize("fan_in, sparsity", [(128, 0.9), (128, 0.3), (16, 0.5), (7, 0.9), (5, 0.2)])
def test_sparse_init_drops_the_inputs_with_the_smallest_draws(fan_in, sparsity):
    """Reference: the first n_zero inputs of each unit's random order (an argsort of its
    uniform draws) are zeroed. The fast path selects with top_k and must give the same
    weights bit for bit, on both sides of its half-way switch."""
    key = jax.random.key(7)
    n_zero = min(math.floor(sparsity * fan_in), fan_in - 1)
    k_val, k_mask = jax.random.split(key)
    bound = 1 / math.sqrt(fan_in)
    expected = np.array(jax.random.uniform(k_val, (64, fan_in), jnp.float32, -bound, bound))
    order = np.argsort(np.asarray(jax.random.uniform(k_mask, (64, fan_in))), axis=1, kind="stable")
    for unit in range(64):
        expected[unit, order[unit, :n_zero]] = 0.0
    got = np.asarray(horde.sparse_init(key, fan_in, 64, sparsity, units_first=True))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_init_sparsifies_every_trunk_layer_and_the_head_matrix(sparsity):
    """``init`` itself, not only ``sparse_init``: every unit of every layer, and every head,
    has exactly ``floor(sparsity · fan_in)`` zero inputs; biases start at zero."""
    learner = MultiHeadMLPLearner(7, hidden_sizes=(16, 12), sparsity=sparsity)
    state = learner.init(10, jax.random.key(5))
    fan_ins = (10, 16, 12)
    for w, b, fan_in in zip(state.trunk_params.weights, state.trunk_params.biases, fan_ins):
        zeros_per_unit = (np.asarray(w) == 0).sum(axis=0)  # (in, out): a unit is a column
        assert (zeros_per_unit == math.floor(sparsity * fan_in)).all(), (fan_in, zeros_per_unit)
        np.testing.assert_array_equal(b, 0.0)
    zeros_per_head = (np.asarray(state.head_params.weights) == 0).sum(axis=1)  # a head is a row
    assert (zeros_per_head == math.floor(sparsity * 12)).all(), zeros_per_head
    np.testing.assert_array_equal(state.head_params.biases, 0.0)
    linear = MultiHeadMLPLearner(7, hidden_sizes=(), sparsity=sparsity).init(10, jax.random.key(5))
    assert ((np.asarray(linear.head_params.weights) == 0).sum(axis=1) == math.floor(sparsity * 10)).all()


def test_cartpole_sized_input_gives_non_constant_predictions():
    learner = MultiHeadMLPLearner(1, hidden_sizes=(8,), sparsity=0.9)
    state = learner.init(4, jax.random.key(0))
    a = learner.predict(state, np.array([0.1, 0.0, -0.2, 0.3]))
    b = learner.predict(state, np.array([-1.0, 2.0, 0.5, -0.3]))
    assert not np.allclose(a, b)


# ---------------------------------------------------------------------------------------------
# Loops


def test_scan_loop_equals_repeated_update():
    rng = np.random.default_rng(10)
    learner = MultiHeadMLPLearner(4, hidden_sizes=(8, 8), optimizer=IDBD(0.02), bounder=ObGDBounding())
    state = learner.init(FEATURES, jax.random.key(0))
    obs, targets = _random_stream(rng, 25, 4)
    scanned = run_multi_head_learning_loop(learner, state, obs, targets)
    metrics = []
    s = state
    for x, y in zip(obs, targets):
        r = learner.update(s, x, y)
        metrics.append(r.per_head_metrics)
        s = r.state
    np.testing.assert_allclose(scanned.per_head_metrics, np.stack(metrics), rtol=1e-5, atol=1e-7)
    for a, b in zip(jax.tree_util.tree_leaves(scanned.state), jax.tree_util.tree_leaves(s)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("typed_keys", [True, False])
def test_batched_seeds_differ_and_each_equals_its_own_run(typed_keys):
    rng = np.random.default_rng(11)
    learner = MultiHeadMLPLearner(3, hidden_sizes=(8,), step_size=0.05)
    obs, targets = _random_stream(rng, 20, 3)
    keys = jax.random.split(jax.random.key(42), 3)
    if not typed_keys:
        keys = jax.random.key_data(keys)
    batched = run_multi_head_learning_loop_batched(learner, obs, targets, keys)
    assert batched.per_head_metrics.shape == (3, 20, 3, 3)
    w0 = np.asarray(batched.states.trunk_params.weights[0])
    assert not np.array_equal(w0[0], w0[1])
    for i in range(3):
        key = keys[i] if typed_keys else jax.random.wrap_key_data(keys[i])
        single = run_multi_head_learning_loop(learner, learner.init(FEATURES, key), obs, targets)
        np.testing.assert_allclose(batched.per_head_metrics[i], single.per_head_metrics, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(w0[i], single.state.trunk_params.weights[0], rtol=1e-5, atol=1e-7)


def test_compiled_program_does_not_grow_with_heads():
    def n_equations(n_heads):
        learner = MultiHeadMLPLearner(n_heads, hidden_sizes=(8, 8), optimizer=Autostep(), bounder=ObGDBounding())
        state = learner.init(4, jax.random.key(0))
        return len(jax.make_jaxpr(learner.update_traced)(state, jnp.zeros(4), jnp.zeros(n_heads)).eqns)

    assert n_equations(3) == n_equations(300)


# ---------------------------------------------------------------------------------------------
# Configuration


def test_config_round_trip_gives_identical_behaviour():
    learner = MultiHeadMLPLearner(
        3,
        hidden_sizes=(8, 4),
        optimizer=LMS(0.02),
        bounder=ObGDBounding(1.5),
        normalizer=EMANormalizer(0.95),
        sparsity=0.7,
        leaky_relu_slope=0.1,
        use_layer_norm=False,
        head_optimizer=Autostep(0.01, 0.02, 500.0),
        per_head_gamma_lamda=[0.1, 0.2, 0.3],
    )
    config = json.loads(json.dumps(learner.to_config()))
    clone = MultiHeadMLPLearner.from_config(config)
    assert clone.to_config() == learner.to_config()
    rng = np.random.default_rng(12)
    obs, targets = _random_stream(rng, 10, 3)
    a = run_multi_head_learning_loop(learner, learner.init(FEATURES, jax.random.key(0)), obs, targets)
    b = run_multi_head_learning_loop(clone, clone.init(FEATURES, jax.random.key(0)), obs, targets)
    np.testing.assert_array_equal(a.per_head_metrics, b.per_head_metrics)


def test_default_config_matches_the_documented_defaults():
    config = MultiHeadMLPLearner(2).to_config()
    assert config == {
        "type": "MultiHeadMLPLearner",
        "n_heads": 2,
        "hidden_sizes": [128, 128],
        "optimizer": None,
        "step_size": 1.0,
        "bounder": None,
        "gamma": 0.0,
        "lamda": 0.0,
        "normalizer": None,
        "sparsity": 0.9,
        "leaky_relu_slope": 0.01,
        "use_layer_norm": True,
        "head_optimizer": None,
        "per_head_gamma_lamda": None,
        "store_head_traces": None,
        "trace_mode": "accumulating",
        "shared_traces": True,
    }
    assert MultiHeadMLPLearner(2).n_heads == 2
    assert MultiHeadMLPLearner(2).normalizer is None


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_heads": 0}, "n_heads must be an integer >= 1, got 0"),
        ({"n_heads": 2, "sparsity": 1.0}, r"sparsity must be in \[0, 1\), got 1.0"),
        ({"n_heads": 2, "sparsity": -0.1}, r"sparsity must be in \[0, 1\), got -0.1"),
        ({"n_heads": 2, "step_size": -0.1}, "step_size must be a finite number >= 0, got -0.1"),
        ({"n_heads": 2, "hidden_sizes": (8, 0)}, r"hidden_sizes\[1\] must be a positive integer, got 0"),
        ({"n_heads": 2, "gamma": 1.5, "hidden_sizes": ()}, r"gamma must be in \[0, 1\], got 1.5"),
        ({"n_heads": 2, "lamda": -0.5, "hidden_sizes": ()}, r"lamda must be in \[0, 1\], got -0.5"),
        ({"n_heads": 2, "gamma": 0.9, "lamda": 0.5}, r"trunk gamma \* lamda must be 0"),
        ({"n_heads": 3, "per_head_gamma_lamda": [0.1, 0.2]}, r"per_head_gamma_lamda must have length n_heads=3"),
        ({"n_heads": 2, "per_head_gamma_lamda": [0.1, 1.2]}, r"per_head_gamma_lamda\[1\] must be in \[0, 1\], got 1.2"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadMLPLearner(**kwargs)


@pytest.mark.parametrize(
    "value, holding",
    [(["0.5", "0"], "'0.5'"), ([True, False], "True"), ([None, 0.0], "None"), ([1j, 0], "1j"), ({"a": 1}, "{'a': 1}")],
)
def test_per_head_gamma_lamda_of_the_wrong_kind_is_refused_naming_it(value, holding):
    """Strings, bools, None or complex numbers are not decays (``float`` would convert some of
    them silently: "0.5" to 0.5, True to 1.0)."""
    with pytest.raises(
        horde.core.ArgumentTypeError,
        match=rf"per_head_gamma_lamda must be a sequence of n_heads=2 real numbers in \[0, 1\], got .* \(holding {re.escape(holding)}\)",
    ):
        MultiHeadMLPLearner(2, hidden_sizes=(4,), per_head_gamma_lamda=value)


def test_linear_mode_allows_any_gamma_lamda():
    MultiHeadMLPLearner(2, hidden_sizes=(), gamma=0.99, lamda=0.9)
    # ... and then every head follows linear TD(λ)/LMS with traces decayed by γλ = 0.891.
    rng = np.random.default_rng(15)
    alpha = 0.05
    learner = MultiHeadMLPLearner(3, hidden_sizes=(), gamma=0.99, lamda=0.9, step_size=alpha)
    state = learner.init(FEATURES, jax.random.key(6))
    state = state._replace(head_params=state.head_params._replace(biases=jnp.array([0.2, -0.1, 0.0])))
    # Every head's trace (the three heads share one stored trace, see test_core_shared_traces.py).
    assert [t.shape for t in learner.head_traces(state)] == [(3, FEATURES), (3,)]
    obs, targets = _random_stream(rng, 8, 3)
    for x, y in zip(obs, targets):
        ref = _reference_update(state, x, y, alpha, [0.99 * 0.9] * 3, traces=learner.head_traces(state))
        result = learner.update(state, x, y)
        np.testing.assert_allclose(result.predictions, ref[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result.state.head_params.weights, ref[3], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result.state.head_params.biases, ref[4], rtol=1e-5, atol=1e-6)
        active = ~np.isnan(y)
        np.testing.assert_allclose(
            np.asarray(learner.head_traces(result.state)[0])[active], ref[5][active], rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            np.asarray(learner.head_traces(result.state)[1])[active], ref[6][active], rtol=1e-5, atol=1e-6
        )
        state = result.state


def test_store_head_traces_is_its_own_decision():
    """``store_head_traces``: ``None`` decides from the decays, ``True`` stores traces with every
    decay 0 (a caller that passes its own decays), ``False`` with a positive decay is refused."""
    assert not MultiHeadMLPLearner(2, hidden_sizes=(4,)).stores_head_traces
    assert MultiHeadMLPLearner(2, hidden_sizes=(4,), per_head_gamma_lamda=[0.0, 0.5]).stores_head_traces
    stored = MultiHeadMLPLearner(2, hidden_sizes=(4,), store_head_traces=True)
    assert stored.stores_head_traces
    state = stored.init(3, jax.random.key(0))
    assert [t.shape for t in state.head_traces] == [(2, 4), (2,)]
    # With every decay 0 a stored trace is this step's features: the same numbers as unstored.
    plain = MultiHeadMLPLearner(2, hidden_sizes=(4,))
    a = stored.update(state, np.ones(3), np.array([1.0, np.nan]))
    b = plain.update(plain.init(3, jax.random.key(0)), np.ones(3), np.array([1.0, np.nan]))
    np.testing.assert_array_equal(a.per_head_metrics, b.per_head_metrics)
    h = plain.trunk_forward(state.trunk_params, jnp.ones(3))
    np.testing.assert_allclose(a.state.head_traces[0][0], h, rtol=1e-6)
    np.testing.assert_array_equal(a.state.head_traces[0][1], 0.0)  # inactive head: unchanged
    assert stored.to_config()["store_head_traces"] is True
    assert MultiHeadMLPLearner.from_config(stored.to_config()).stores_head_traces
    with pytest.raises(ValueError, match=r"store_head_traces=False but head 1 has trace decay"):
        MultiHeadMLPLearner(2, hidden_sizes=(), per_head_gamma_lamda=[0.0, 0.5], store_head_traces=False)
    with pytest.raises(ValueError, match=r"store_head_traces must be True, False or None, got 'yes'"):
        MultiHeadMLPLearner(2, store_head_traces="yes")


def test_bad_optimizer_arguments():
    with pytest.raises(ValueError, match="step_size must be a finite number >= 0, got -1"):
        LMS(-1)
    with pytest.raises(ValueError, match="initial_step_size"):
        IDBD(initial_step_size=0.0)
    with pytest.raises(ValueError, match="tau"):
        Autostep(tau=-1.0)
    with pytest.raises(ValueError, match="kappa"):
        ObGDBounding(kappa=0.0)
    with pytest.raises(ValueError, match="optimizer config 'type'"):
        MultiHeadMLPLearner.from_config({"n_heads": 1, "optimizer": {"type": "Adam"}})
    with pytest.raises(ValueError, match="unknown keys"):
        MultiHeadMLPLearner.from_config({"n_heads": 1, "n_head": 2})


def test_wrong_shapes_are_refused_not_broadcast():
    learner = MultiHeadMLPLearner(3, hidden_sizes=(4,))
    state = learner.init(5, jax.random.key(0))
    with pytest.raises(ValueError, match=r"targets must have shape \(3,\).*got shape \(2,\)"):
        learner.update(state, np.zeros(5), np.zeros(2))
    with pytest.raises(ValueError, match=r"targets must have shape \(3,\).*got shape \(\)"):
        learner.update(state, np.zeros(5), 1.0)
    with pytest.raises(ValueError, match=r"observation must have shape \(5,\).*got shape \(4,\)"):
        learner.update(state, np.zeros(4), np.zeros(3))
    with pytest.raises(ValueError, match=r"observation must have shape \(5,\).*got shape \(1, 5\)"):
        learner.predict(state, np.zeros((1, 5)))
    with pytest.raises(ValueError, match=r"targets must have shape \(num_steps=7, n_heads=3\)"):
        run_multi_head_learning_loop(learner, state, np.zeros((7, 5)), np.zeros((7, 2)))
    with pytest.raises(TypeError, match="state must be a MultiHeadMLPState"):
        learner.update({"not": "a state"}, np.zeros(5), np.zeros(3))


def test_nan_observation_is_refused_and_state_is_not_poisoned():
    learner = MultiHeadMLPLearner(2, hidden_sizes=(4,))
    state = learner.init(3, jax.random.key(0))
    with pytest.raises(ValueError, match=r"observation must be finite, got nan at index 1"):
        learner.update(state, np.array([0.0, np.nan, 1.0]), np.zeros(2))
    with pytest.raises(ValueError, match="observations must be finite"):
        run_multi_head_learning_loop(learner, state, np.array([[0.0, 0.0, np.inf]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="targets must be finite or NaN"):
        learner.update(state, np.zeros(3), np.array([np.inf, 0.0]))
    result = learner.update(state, np.ones(3), np.ones(2))
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(result.state))


def test_materialized_keeps_every_bit_in_compiled_code():
    """``materialized`` divides by a runtime 1 so that XLA computes the head features once
    instead of inside every element of the head update; the value must not change at all,
    infinities, NaN and signed zeros included (a divisor ``1 + 0 * x`` would turn ±inf into
    NaN)."""
    x = np.array([0.0, -0.0, 1.5, -2.25, np.inf, -np.inf, np.nan, 3.4e38, -1.2e-38], np.float32)
    got = np.asarray(jax.jit(materialized)(jnp.asarray(x)))
    np.testing.assert_array_equal(got.view(np.uint32), x.view(np.uint32))
