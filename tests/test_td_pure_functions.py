"""The Horde's pure array functions (TD target, trace decay, GTD(λ), RUPEE and UDE) against
slow float64 Python loops, one demon and one step at a time, with and without ``jit``."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from horde.core import HeadParams
from horde.td import (
    DiagnosticsState,
    decay_traces,
    diagnostics_step,
    gtd_correction,
    reset_traces,
    secondary_update,
    td_targets,
    trace_decay,
)

N, H = 5, 3
JIT = pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])


def _maybe_jit(fn, jit):
    return jax.jit(fn) if jit else fn


def _f32(rng, *shape, low=-1.0, high=1.0):
    return rng.uniform(low, high, size=shape).astype(np.float32)


@JIT
@pytest.mark.parametrize("terminated", [False, True])
def test_td_targets_match_python_reference(jit, terminated):
    rng = np.random.default_rng(0)
    c, v_next, z = _f32(rng, N), _f32(rng, N), _f32(rng, N)
    gamma = _f32(rng, N, low=0.0)
    c[2] = np.nan
    targets, bootstrap = _maybe_jit(td_targets, jit)(c, v_next, gamma, np.bool_(terminated), z)
    for i in range(N):
        g = 0.0 if terminated else float(gamma[i])  # no bootstrap through termination
        want = float(c[i]) + g * float(v_next[i]) + (float(z[i]) if terminated else 0.0)
        assert float(bootstrap[i]) == pytest.approx(g)
        if math.isnan(want):
            assert np.isnan(targets[i])
        else:
            assert float(targets[i]) == pytest.approx(want, rel=1e-6, abs=1e-7)


@JIT
def test_trace_decay_and_reset_over_a_stream_match_python_reference(jit):
    """``z_i ← ρ_{i,t}(γ_{i,t} λ_i z_i + h_t)`` with ``γ_{i,t}`` the previous step's next discount,
    zeroed when an episode ends; ρ away from {0, 1} so that ρ applied twice shows."""
    rng = np.random.default_rng(1)
    T = 12
    lamdas = np.array([0.0, 0.5, 0.9, 1.0, 0.7], np.float32)
    h_seq = _f32(rng, T, H)
    gamma_next = _f32(rng, T, N, low=0.0)
    rhos = rng.choice([0.0, 0.5, 2.0, 1.5], size=(T, N)).astype(np.float32)
    done = np.zeros(T, bool)
    done[[4, 9]] = True

    def step(traces, discounts, h, rho, ended):
        z = decay_traces(traces, h, discounts, lamdas, rho)
        return reset_traces(z, ended)

    step = _maybe_jit(step, jit)
    traces = (jnp.zeros((N, H)), jnp.zeros((N,)))
    discounts = np.zeros(N, np.float32)
    ref_w, ref_b = np.zeros((N, H)), np.zeros(N)
    ref_gamma = np.zeros(N)
    for t in range(T):
        traces = step(traces, discounts, h_seq[t], rhos[t], done[t])
        discounts = gamma_next[t]
        for i in range(N):
            decay = ref_gamma[i] * float(lamdas[i])
            ref_w[i] = float(rhos[t, i]) * (decay * ref_w[i] + h_seq[t].astype(np.float64))
            ref_b[i] = float(rhos[t, i]) * (decay * ref_b[i] + 1.0)
            ref_gamma[i] = float(gamma_next[t, i])
        if done[t]:
            ref_w[:], ref_b[:] = 0.0, 0.0
        np.testing.assert_allclose(traces[0], ref_w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(traces[1], ref_b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(trace_decay(gamma_next[0], lamdas), gamma_next[0] * lamdas, rtol=1e-7)


@JIT
def test_gtd_correction_and_secondary_update_match_python_reference(jit):
    rng = np.random.default_rng(2)
    w, b = _f32(rng, N, H), _f32(rng, N)
    z_w, z_b = _f32(rng, N, H), _f32(rng, N)
    u = HeadParams(_f32(rng, N, H), _f32(rng, N))
    alpha_w, alpha_b = _f32(rng, N, H, low=0.01, high=0.1), _f32(rng, N, low=0.01, high=0.1)
    gamma_next, lamdas = _f32(rng, N, low=0.0), _f32(rng, N, low=0.0)
    h, h_next, delta = _f32(rng, H), _f32(rng, H), _f32(rng, N)
    off = np.array([True, False, True, True, False])
    beta = 0.05
    new_w, new_b = _maybe_jit(gtd_correction, jit)(
        w, b, (z_w, z_b), u, (alpha_w, alpha_b), gamma_next, lamdas, h_next, off
    )
    new_u = _maybe_jit(secondary_update, jit)(u, (z_w, z_b), delta, h, beta, off)
    for i in range(N):
        zi, ui = np.r_[z_w[i], z_b[i]].astype(np.float64), np.r_[u.weights[i], u.biases[i]].astype(np.float64)
        xi, xn = np.r_[h, 1.0].astype(np.float64), np.r_[h_next, 1.0].astype(np.float64)
        alpha = np.r_[alpha_w[i], alpha_b[i]].astype(np.float64)
        wi = np.r_[w[i], b[i]].astype(np.float64)
        if off[i]:
            wi = wi - alpha * float(gamma_next[i]) * (1.0 - float(lamdas[i])) * (zi @ ui) * xn
            ui = ui + beta * (float(delta[i]) * zi - (ui @ xi) * xi)
        np.testing.assert_allclose(np.r_[new_w[i], new_b[i]], wi, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.r_[new_u.weights[i], new_u.biases[i]], ui, rtol=1e-5, atol=1e-6)


def _reference_diagnostics(h_seq, z_seq, delta_seq, rho_seq, active_seq, lamdas, alpha):
    """RUPEE and UDE one demon and one step at a time in float64, unbiased averages included."""
    T, n = delta_seq.shape
    width = h_seq.shape[1] + 1
    rupee, ude = np.zeros((T, n)), np.zeros((T, n))
    for i in range(n):
        h_hat, d_bar, tau = np.zeros(width), np.zeros(width), 0.0
        mean, var, tau_u = 0.0, 0.0, 0.0
        beta0 = max(1.0 - float(lamdas[i]), 0.01) * alpha / 30.0
        beta0_u = 10.0 * alpha
        for t in range(T):
            if active_seq[t, i]:
                x = np.r_[h_seq[t], 1.0].astype(np.float64)
                dz = float(delta_seq[t, i]) * z_seq[t, i].astype(np.float64)
                h_hat = h_hat + 5.0 * alpha * (dz - (h_hat @ x) * x)
                tau = (1.0 - beta0) * tau + beta0
                beta = beta0 / tau
                d_bar = (1.0 - beta) * d_bar + beta * dz
                e = float(rho_seq[t, i]) * float(delta_seq[t, i])
                tau_u = (1.0 - beta0_u) * tau_u + beta0_u
                bu = beta0_u / tau_u
                var = (1.0 - bu) * (var + bu * (e - mean) ** 2)
                mean = (1.0 - bu) * mean + bu * e
            rupee[t, i] = math.sqrt(abs(h_hat @ d_bar))
            ude[t, i] = abs(mean) / (math.sqrt(var) + 1e-6)
    return rupee, ude


@JIT
def test_rupee_and_ude_match_python_reference_with_unbiased_averages(jit):
    """With τ starting at 0 the first step's averaging rate is 1, so d̄ is exactly δz after one
    step; an average that kept τ but did not use it would stay near 0 (β₀ ≈ 1e-4 here)."""
    rng = np.random.default_rng(3)
    T, alpha = 15, 0.01
    lamdas = np.array([0.0, 0.5, 0.9, 1.0, 0.3], np.float32)
    h_seq = _f32(rng, T, H)
    z_seq = _f32(rng, T, N, H + 1)
    delta_seq = _f32(rng, T, N, low=-2.0, high=2.0)
    rho_seq = rng.choice([0.0, 0.5, 2.0], size=(T, N)).astype(np.float32)
    active_seq = rng.random((T, N)) > 0.2
    rupee_ref, ude_ref = _reference_diagnostics(h_seq, z_seq, delta_seq, rho_seq, active_seq, lamdas, alpha)
    if jit:
        step = jax.jit(lambda *a: diagnostics_step(*a, lamdas, alpha))
    else:
        step = lambda *a: diagnostics_step(*a, lamdas, alpha)  # noqa: E731
    zeros = jnp.zeros((N,), jnp.float32)
    d = DiagnosticsState(jnp.zeros((N, H + 1)), jnp.zeros((N, H + 1)), zeros, zeros, zeros, zeros)
    for t in range(T):
        traces = (z_seq[t, :, :H], z_seq[t, :, H])
        delta = np.where(active_seq[t], delta_seq[t], 0.0).astype(np.float32)
        d, rupee, ude = step(d, h_seq[t], traces, delta, rho_seq[t], active_seq[t])
        np.testing.assert_allclose(rupee, rupee_ref[t], rtol=2e-4, atol=1e-6)
        np.testing.assert_allclose(ude, ude_ref[t], rtol=2e-4, atol=1e-5)
