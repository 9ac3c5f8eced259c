"""OvershootBounding: against a float64 NumPy reference of its equations, and the overshoot
it exists to prevent."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from horde import IDBD, LMS, HordeLearner, MultiHeadMLPLearner, ObGDBounding, OvershootBounding
from horde.core import bounder_from_config


def _forward(trunk_w, trunk_b, x, slope=0.01):
    """Plain float64 forward: [Dense -> LayerNorm -> LeakyReLU] x N."""
    h = x
    for w, b in zip(trunk_w, trunk_b):
        a = h @ w + b
        a = (a - a.mean()) / np.sqrt(((a - a.mean()) ** 2).mean() + 1e-5)
        h = np.where(a >= 0, a, slope * a)
    return h


def _flat(trunk_w, trunk_b):
    return np.concatenate([p.ravel() for pair in zip(trunk_w, trunk_b) for p in pair])


def _unflat(theta, trunk_w, trunk_b):
    ws, bs, i = [], [], 0
    for w, b in zip(trunk_w, trunk_b):
        ws.append(theta[i : i + w.size].reshape(w.shape))
        i += w.size
        bs.append(theta[i : i + b.size])
        i += b.size
    return ws, bs


def _numeric_jacobian(f, theta, eps=1e-6):
    """Central differences in float64, column by column: independent of any backward pass."""
    cols = []
    for k in range(theta.size):
        e = np.zeros_like(theta)
        e[k] = eps
        cols.append((f(theta + e) - f(theta - e)) / (2 * eps))
    return np.stack(cols, axis=-1)


def _reference_step(trunk_w, trunk_b, W, b, z_w, z_b, x, y, alpha, decay, kappa):
    """One OvershootBounding LMS update, written from the docstring's equations."""
    theta = _flat(trunk_w, trunk_b)

    def h_of(t):
        return _forward(*_unflat(t, trunk_w, trunk_b), x)

    h = h_of(theta)
    v = W @ h + b
    active = ~np.isnan(y)
    delta = np.where(active, y - v, 0.0)
    J_h = _numeric_jacobian(h_of, theta)  # (H, P)
    G = J_h.T @ (W.T @ delta)  # gradient of Σ δ_i v_i
    step = alpha * G
    c = np.where(active, W @ (J_h @ step), 0.0)
    progress, size = delta @ c, c @ c
    scale_t = 0.0 if progress <= 0 else 1.0 / max(kappa * size / progress, 1.0)
    new_theta = theta + scale_t * step
    z_w = decay[:, None] * z_w + h[None, :]
    z_b = decay * z_b + 1.0
    s_w, s_b = alpha * z_w, alpha * z_b
    u = s_w @ h + s_b
    scale_h = 1.0 / np.maximum(kappa * np.abs(u), 1.0)
    new_W = np.where(active[:, None], W + (delta * scale_h)[:, None] * s_w, W)
    new_b = np.where(active, b + delta * scale_h * s_b, b)
    ws, bs = _unflat(new_theta, trunk_w, trunk_b)
    return ws, bs, new_W, new_b, z_w, z_b, scale_t


@pytest.mark.parametrize("optimizer", ["lms", "idbd_without_meta"])
def test_overshoot_bounding_matches_float64_reference(optimizer):
    rng = np.random.default_rng(3)
    n, d, kappa, alpha = 4, 3, 2.0, 0.7
    decay = np.array([0.0, 0.5, 0.8, 0.9])
    opt = LMS(alpha) if optimizer == "lms" else IDBD(alpha, 0.0)  # IDBD: the materialised-step path
    learner = MultiHeadMLPLearner(
        n,
        hidden_sizes=(6, 5),
        optimizer=opt,
        bounder=OvershootBounding(kappa),
        sparsity=0.0,
        per_head_gamma_lamda=decay,
    )
    state = learner.init(d, jax.random.key(0))
    tw = [np.asarray(w, np.float64) for w in state.trunk_params.weights]
    tb = [np.asarray(b, np.float64) for b in state.trunk_params.biases]
    W = np.asarray(state.head_params.weights, np.float64)
    b = np.asarray(state.head_params.biases, np.float64)
    z_w, z_b = np.zeros_like(W), np.zeros_like(b)
    scales = []
    for t in range(3):
        x = rng.normal(size=d)
        y = rng.normal(size=n) * 3
        if t == 1:
            y[2] = np.nan  # an inactive head keeps its parameters and trace
        result = learner.update(state, x.astype(np.float32), y.astype(np.float32))
        state = result.state
        tw, tb, W_new, b_new, zw_new, zb_new, scale_t = _reference_step(
            tw, tb, W, b, z_w, z_b, x, y, alpha, decay, kappa
        )
        keep = np.isnan(y)
        z_w = np.where(keep[:, None], z_w, zw_new)
        z_b = np.where(keep, z_b, zb_new)
        W, b = W_new, b_new
        scales.append(scale_t)
        np.testing.assert_allclose(float(result.trunk_bounding_metric), scale_t, rtol=1e-4)
        for got, want in zip(state.trunk_params.weights + state.trunk_params.biases, tw + tb):
            np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(np.asarray(state.head_params.weights), W, atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(np.asarray(state.head_params.biases), b, atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(np.asarray(state.head_traces[0]), z_w, atol=1e-5, rtol=1e-5)
    # α = 0.7 is far beyond the overshoot edge: the bound was active at every step
    assert all(0 < s < 1 for s in scales)


def _post_update_errors(learner, n_heads, seed):
    rng = np.random.default_rng(seed)
    state = learner.init(4, jax.random.key(seed))
    x = rng.normal(size=4).astype(np.float32)
    y = rng.normal(size=n_heads).astype(np.float32) * 2
    before = np.asarray(learner.predict(state, x))
    after = np.asarray(learner.predict(learner.update(state, x, y).state, x))
    return y - before, y - after


def test_large_step_overshoots_without_bounding_and_not_with_it():
    """ObGD's reason to exist: at α = 1 an LMS step on a (16, 16) trunk overshoots the target
    (the post-update error on the same sample changes sign); bounded, the error keeps its sign
    and shrinks. With 50 heads and different targets nearly every head overshoots unbounded;
    bounded, none does and the sample's summed squared error (what the trunk's bound is on)
    shrinks."""
    plain = MultiHeadMLPLearner(1, hidden_sizes=(16, 16), optimizer=LMS(1.0))
    bounded = MultiHeadMLPLearner(1, hidden_sizes=(16, 16), optimizer=LMS(1.0), bounder=OvershootBounding())
    many_plain = MultiHeadMLPLearner(50, hidden_sizes=(16, 16), optimizer=LMS(1.0))
    many_bounded = MultiHeadMLPLearner(50, hidden_sizes=(16, 16), optimizer=LMS(1.0), bounder=OvershootBounding())
    for seed in range(3):
        before, after = _post_update_errors(plain, 1, seed)
        assert np.sign(after[0]) != np.sign(before[0])
        before, after = _post_update_errors(bounded, 1, seed)
        assert np.sign(after[0]) == np.sign(before[0]) and abs(after[0]) < abs(before[0])
        before, after = _post_update_errors(many_plain, 50, seed)
        assert np.mean(np.sign(after) != np.sign(before)) >= 0.9
        before, after = _post_update_errors(many_bounded, 50, seed)
        assert np.all(np.sign(after) == np.sign(before))
        assert np.sum(after**2) < np.sum(before**2)


def test_trunk_bound_does_not_grow_with_identical_heads():
    """n heads with the same weights and targets make an n times larger trunk step; the bound
    takes it back to the single head's step exactly (no overshoot), no further (no throttle).
    α = 10 puts the single head's step past the bound too."""
    states = []
    w0 = None
    for n in (1, 8):
        learner = MultiHeadMLPLearner(n, hidden_sizes=(16,), optimizer=LMS(10.0), bounder=OvershootBounding())
        state = learner.init(3, jax.random.key(0))
        w0 = np.asarray(state.head_params.weights[:1]) if w0 is None else w0
        w = np.broadcast_to(w0, (n, 16))
        state = state._replace(head_params=state.head_params._replace(weights=jax.numpy.asarray(w)))
        x = np.array([0.3, -1.0, 0.5], np.float32)
        result = learner.update(state, x, np.full(n, 2.0, np.float32))
        assert float(result.trunk_bounding_metric) < 1
        states.append(result.state)
    np.testing.assert_allclose(
        np.asarray(states[0].trunk_params.weights[0]), np.asarray(states[1].trunk_params.weights[0]), rtol=1e-5
    )


def test_overshoot_bounding_config_round_trips_and_checks_kappa():
    bounder = OvershootBounding(5.0)
    assert bounder_from_config(bounder.to_config()) == bounder
    assert bounder_from_config(ObGDBounding(3.0).to_config()) == ObGDBounding(3.0)
    from demons import Demon, cumulants, discounts

    learner = HordeLearner([Demon("x", cumulants.observation(0), discounts.constant(0.5), 0.9)], bounder=bounder)
    assert HordeLearner.from_config(learner.to_config()).core.bounder == bounder
    for bad in (0.5, float("nan")):
        with pytest.raises(ValueError, match="kappa must be a finite number >= 1"):
            OvershootBounding(bad)
    with pytest.raises(TypeError, match="kappa must be a real number, got '2'"):  # a string is not a number
        OvershootBounding("2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bounder config 'type' must be one of"):
        bounder_from_config({"type": "Nope"})
