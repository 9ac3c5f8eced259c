"""Online normalizers against float64 references, at the run lengths and magnitudes where
float32 statistics fail: past a count of 2^24, near 10^9 and across 2^32 observations, constant
features, and features of very large or very small magnitude."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from horde.core import EMANormalizer, WelfordNormalizer, normalizer_from_config


def _scan(norm, state, xs):
    """All of ``xs`` (shape (T, dim)) through ``norm.update`` in one lax.scan."""

    def body(s, x):
        out, s = norm.update(s, x)
        return s, out

    state, outs = jax.jit(lambda s, xs: jax.lax.scan(body, s, xs))(state, jnp.asarray(xs, jnp.float32))
    return np.asarray(outs, np.float64), state


def _welford64(mean, var, n, xs, eps):
    """Float64 Welford from a given mean, population variance and count: every output."""
    outs = []
    for x in np.asarray(xs, np.float64):
        n += 1
        delta = x - mean
        mean = mean + delta / n
        var = var + (delta * (x - mean) - var) / n
        outs.append((x - mean) / np.sqrt(var + eps))
    return np.array(outs), mean, var, n


def _ema64(decay, xs, eps):
    """Float64 reference of the documented biased sums divided by ``1 - dᵗ``."""
    mean = var = np.zeros(np.shape(xs)[1])
    weight, outs = 0.0, []
    for t, x in enumerate(np.asarray(xs, np.float64)):
        new_weight = decay * weight + (1 - decay)
        old_mean = x if t == 0 else mean / weight
        mean = decay * mean + (1 - decay) * x
        var = decay * var + (1 - decay) * (x - old_mean) * (x - mean / new_weight)
        weight = new_weight
        outs.append((x - mean / weight) / np.sqrt(np.maximum(var / weight, 0.0) + eps))
    return np.array(outs), mean / weight, var / weight


def _welford_state_at(mean, var, n):
    """A WelfordState holding float64 ``mean`` and ``var`` (as high and low words) after ``n``
    observations."""
    mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
    hi_m, hi_v = mean.astype(np.float32), var.astype(np.float32)
    state = WelfordNormalizer().init(mean.shape[0])
    return state._replace(
        mean=jnp.asarray(hi_m),
        mean_low=jnp.asarray((mean - hi_m).astype(np.float32)),
        var=jnp.asarray(hi_v),
        var_low=jnp.asarray((var - hi_v).astype(np.float32)),
        count=jnp.asarray(n % 2**32, jnp.uint32),
        count_high=jnp.asarray(n // 2**32, jnp.uint32),
    )


def _count(state) -> int:
    return int(state.count_high) * 2**32 + int(state.count)


def test_welford_matches_a_float64_loop_from_the_start():
    data = np.random.default_rng(0).normal([3.0, -1.0], [2.0, 0.1], size=(300, 2))
    outs, state = _scan(WelfordNormalizer(), WelfordNormalizer().init(2), data)
    want, mean, var, n = _welford64(np.zeros(2), np.zeros(2), 0, data.astype(np.float32), 1e-8)
    np.testing.assert_allclose(outs, want, rtol=1e-5, atol=1e-5)
    assert _count(state) == 300
    np.testing.assert_allclose(np.asarray(state.mean, np.float64) + np.asarray(state.mean_low), mean, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(state.m2), var * 300, rtol=1e-6)


@pytest.mark.parametrize("n0", [2**24 - 3, 10**9, 2**32 - 2])
def test_welford_count_and_statistics_stay_exact_at_long_run_lengths(n0):
    """From a state after ``n0`` observations (just below 2^24, 10^9, across 2^32), the next
    500 updates agree with float64: the count is exact, and the mean and variance move by
    increments of size ``1/n`` that a float32 sum would lose (the mean to 1e-11, the variance to
    1e-9 of the truth). A float32 count stuck at 2^24 with an ``M2`` sum fails this."""
    rng = np.random.default_rng(n0 % 1000)
    mean0, var0 = np.array([293.15, 0.0]), np.array([4.0, 1.0])
    xs = (mean0 + np.sqrt(var0) * rng.normal(size=(500, 2))).astype(np.float32)
    state = _welford_state_at(mean0, var0, n0)
    outs, state = _scan(WelfordNormalizer(), state, xs)
    want, mean, var, n = _welford64(mean0, var0, n0, xs, 1e-8)
    assert _count(state) == n == n0 + 500
    got_mean = np.asarray(state.mean, np.float64) + np.asarray(state.mean_low, np.float64)
    got_var = np.asarray(state.var, np.float64) + np.asarray(state.var_low, np.float64)
    np.testing.assert_allclose(got_mean - mean0, mean - mean0, rtol=1e-4, atol=1e-11)
    np.testing.assert_allclose(got_var - var0, var - var0, rtol=1e-4, atol=4e-9)
    np.testing.assert_allclose(outs, want, rtol=1e-5, atol=1e-5)


def test_welford_count_carries_into_the_high_word():
    state = _welford_state_at([0.0], [0.0], 2**32 - 1)
    _, state = WelfordNormalizer().update(state, jnp.zeros(1))
    assert (int(state.count_high), int(state.count)) == (1, 0)
    _, state = WelfordNormalizer().update(state, jnp.zeros(1))
    assert _count(state) == 2**32 + 1


@pytest.mark.slow
def test_welford_variance_after_2_to_the_25_standard_normal_samples():
    """The reported failure, driven for real: 2^25 standard-normal samples (a float32 count
    stops at 2^24 and the variance drifted to 1.85); the estimate is the sample variance."""
    n = 2**25
    keys = jax.random.split(jax.random.key(0), 32)
    norm = WelfordNormalizer()
    state = norm.init(1)
    total = total_sq = 0.0
    step = jax.jit(
        lambda s, k: jax.lax.scan(lambda s, x: (norm.update(s, x)[1], None), s, jax.random.normal(k, (n // 32, 1)))[0]
    )
    for k in keys:
        xs = np.asarray(jax.random.normal(k, (n // 32, 1)), np.float64)
        total, total_sq = total + xs.sum(), total_sq + (xs**2).sum()
        state = step(state, k)
    assert _count(state) == n
    sample_var = total_sq / n - (total / n) ** 2
    got = float(state.var[0]) + float(state.var_low[0])
    assert abs(got - sample_var) < 1e-5 and abs(got - 1.0) < 1e-3


@pytest.mark.parametrize("norm", [WelfordNormalizer(), EMANormalizer(), EMANormalizer(decay=0.9)], ids=repr)
@pytest.mark.parametrize("value", [293.15, 123456.0, -7.3e20, 3.1e-30])
def test_a_constant_feature_normalises_to_exactly_zero(norm, value):
    """A constant came out of the float32 EMA as noise (293.15: up to ±2.9, settling near 0.56;
    123456: ±78); every output must be exactly 0, next to a varying feature."""
    rng = np.random.default_rng(1)
    xs = np.stack([np.full(3000, value), rng.normal(size=3000)], axis=1)
    outs, state = _scan(norm, norm.init(2), xs)
    assert np.all(outs[:, 0] == 0.0)
    assert float(state.var[0]) == 0.0 and float(state.mean[0]) == np.float32(value)
    assert np.all(np.isfinite(outs[:, 1])) and np.std(outs[:, 1]) > 0.5


def test_ema_matches_its_float64_recursion_over_a_long_stream_with_a_large_offset():
    """A small spread on a large offset (293.15 ± 0.01) with a slow decay: each increment of the
    mean is below float32's resolution at 293; the compensated mean keeps them."""
    d = 0.9999
    rng = np.random.default_rng(2)
    xs = (293.15 + 0.01 * rng.normal(size=(20000, 1))).astype(np.float32)
    norm = EMANormalizer(decay=d)
    outs, state = _scan(norm, norm.init(1), xs)
    want, mean, var = _ema64(float(np.float32(d)), xs, 1e-8)
    got_mean = float(state.mean[0]) + float(state.mean_low[0])
    got_var = float(state.var[0]) + float(state.var_low[0])
    assert abs(got_mean - mean[0]) < 1e-7 * 0.01
    assert abs(got_var - var[0]) < 1e-4 * var[0]
    np.testing.assert_allclose(outs, want, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("scale, offset, eps", [(1e15, 1e18, 1e-8), (1e-15, 3e-14, 1e-36)])
def test_large_and_tiny_magnitudes_neither_overflow_nor_underflow(scale, offset, eps):
    """Features near 1e18 with spread 1e15 (variance 1e30, sums of squares near 1e33) and near
    3e-14 with spread 1e-15 (variance 1e-30): outputs standardised as in float64."""
    xs = (offset + scale * np.random.default_rng(3).normal(size=(400, 1))).astype(np.float32)
    for norm in (WelfordNormalizer(epsilon=eps), EMANormalizer(decay=0.99, epsilon=eps)):
        outs, _ = _scan(norm, norm.init(1), xs)
        if isinstance(norm, WelfordNormalizer):
            want = _welford64(np.zeros(1), np.zeros(1), 0, xs, eps)[0]
        else:
            want = _ema64(float(np.float32(0.99)), xs, eps)[0]
        assert np.all(np.isfinite(outs))
        np.testing.assert_allclose(outs[1:], want[1:], rtol=1e-4, atol=1e-4)


def test_configs_round_trip():
    for norm in (WelfordNormalizer(epsilon=1e-6), EMANormalizer(decay=0.9, epsilon=1e-4)):
        assert normalizer_from_config(norm.to_config()) == norm
