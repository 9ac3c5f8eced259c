"""Head features beyond the trunk's output (``FourierFeatures``): known answers.

With a zero, frozen trunk the heads see ``[0, φ(x)]``, so a Horde is linear TD(λ) on the
features ``[φ(x), 1]``: compared here with a float64 NumPy TD(λ) loop whose features are
computed from the map's definition, ``[x, cos(x W / σ + b)]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from demons import Demon, DemonSet
from demons import cumulants as C
from demons import discounts as D
from horde import LMS, FourierFeatures, HordeLearner, MLPParams, MultiHeadMLPLearner
from horde.core import head_features_from_config
from horde.td.horde_learner import DEFAULT_HEAD_FEATURES


def _phi64(features: FourierFeatures, x: np.ndarray) -> np.ndarray:
    """``[x, cos(x W + b)]`` in float64, from the map's projection."""
    w, b = features.projection(x.shape[-1])
    return np.concatenate([x, np.cos(x @ w.astype(np.float64) + b.astype(np.float64))], axis=-1)


def test_fourier_features_are_the_input_and_cosines_of_a_fixed_projection():
    f = FourierFeatures(n_features=5, bandwidth=2.0, seed=3)
    w, b = f.projection(3)
    assert w.shape == (3, 5) and b.shape == (5,)
    rng = np.random.default_rng(3)
    np.testing.assert_allclose(w, rng.standard_normal((3, 5)) / 2.0, rtol=1e-6)
    np.testing.assert_allclose(b, rng.uniform(0.0, 2.0 * np.pi, 5), rtol=1e-6)
    x = np.array([[0.5, -1.0, 2.0], [0.0, 0.1, -0.3]], np.float32)
    np.testing.assert_allclose(np.asarray(f(jnp.asarray(x))), _phi64(f, x.astype(np.float64)), atol=1e-5)
    assert f.size(3) == 8 and FourierFeatures(4, include_input=False).size(3) == 4
    assert FourierFeatures(0).size(3) == 3


def test_fourier_features_reject_bad_settings_naming_them():
    with pytest.raises(ValueError, match="bandwidth"):
        FourierFeatures(bandwidth=0.0)
    with pytest.raises(ValueError, match="n_features"):
        FourierFeatures(n_features=-1)
    with pytest.raises(ValueError, match="gives no features"):
        FourierFeatures(n_features=0, include_input=False)
    with pytest.raises(ValueError, match="needs a trunk"):
        MultiHeadMLPLearner(2, hidden_sizes=(), head_features=FourierFeatures())
    with pytest.raises(ValueError, match="'type' must be 'FourierFeatures'"):
        head_features_from_config({"type": "Tiles"})


def test_input_clip_holds_the_fourier_part_at_the_edge_and_leaves_the_input_part_whole():
    """``input_clip = c``: the cosines read ``clip(x, -c, c)`` (so they are constant beyond
    the edge), the input part reads ``x``; inside the edge the map equals the unclipped one."""
    clipped, plain = (
        FourierFeatures(6, bandwidth=0.7, seed=2, input_clip=1.5),
        FourierFeatures(6, bandwidth=0.7, seed=2),
    )
    inside = np.array([[0.3, -1.4, 1.5], [1.0, 0.0, -0.2]], np.float32)
    np.testing.assert_array_equal(np.asarray(clipped(jnp.asarray(inside))), np.asarray(plain(jnp.asarray(inside))))
    far = np.array([[7.0, -1.0, -30.0]], np.float32)
    at_edge = np.array([[1.5, -1.0, -1.5]], np.float32)
    phi_far, phi_edge = np.asarray(clipped(jnp.asarray(far))), np.asarray(clipped(jnp.asarray(at_edge)))
    np.testing.assert_array_equal(phi_far[:, :3], far)  # the input part: unclipped
    np.testing.assert_allclose(phi_far[:, 3:], _phi64(plain, at_edge.astype(np.float64))[:, 3:], atol=1e-5)
    np.testing.assert_array_equal(phi_far[:, 3:], phi_edge[:, 3:])
    # the setting travels with the configuration; a configuration from before it means no clip
    assert head_features_from_config(clipped.to_config()) == clipped
    old = {k: v for k, v in plain.to_config().items() if k != "input_clip"}
    assert head_features_from_config(old) == plain and plain.input_clip is None
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="input_clip"):
            FourierFeatures(input_clip=bad)


def test_product_features_are_a_random_direction_times_a_clipped_cosine():
    """``n_products = K``: ``(x · u_k) cos(clip(x) · v_k + b'_k)``, from ``product_projection``,
    against a float64 evaluation of the definition; ``U ~ N(0, I / d)`` from ``(seed, 1)``."""
    f = FourierFeatures(3, bandwidth=0.5, seed=4, input_clip=1.0, n_products=6, product_bandwidth=2.0)
    u, v, c = f.product_projection(3)
    rng = np.random.default_rng((4, 1))
    np.testing.assert_allclose(u, rng.standard_normal((3, 6)) / np.sqrt(3), rtol=1e-6)
    np.testing.assert_allclose(v, rng.standard_normal((3, 6)) / 2.0, rtol=1e-6)
    np.testing.assert_allclose(c, rng.uniform(0.0, 2.0 * np.pi, 6), rtol=1e-6)
    x = np.array([[0.4, -2.5, 1.0], [3.0, 0.2, -0.7]])
    xc = np.clip(x, -1.0, 1.0)
    expected = np.concatenate(
        [x, _phi64(FourierFeatures(3, bandwidth=0.5, seed=4), xc)[:, 3:], (x @ u) * np.cos(xc @ v + c)], axis=1
    )
    assert f.size(3) == 3 + 3 + 6
    np.testing.assert_allclose(np.asarray(f(jnp.asarray(x, jnp.float32))), expected, rtol=1e-5, atol=1e-5)
    assert FourierFeatures(0, include_input=False, n_products=2).size(5) == 2
    assert head_features_from_config(f.to_config()) == f
    with pytest.raises(ValueError, match="n_products"):
        FourierFeatures(n_products=-1)
    with pytest.raises(ValueError, match="product_bandwidth"):
        FourierFeatures(n_products=4, product_bandwidth=0.0)
    with pytest.raises(ValueError, match="input_clip must be > 0 in float32"):
        FourierFeatures(input_clip=1e-300)
    for name in ("bandwidth", "product_bandwidth"):
        with pytest.raises(ValueError, match=f"{name} must be > 0 with 1 / {name} finite in float32"):
            FourierFeatures(**{name: 1e-40})
    with pytest.raises(ValueError, match=r"unknown keys \['input_clipp'\]; the keys are .*'n_products'"):
        head_features_from_config({"type": "FourierFeatures", "input_clipp": 3.0})


def test_feature_counts_beyond_what_can_be_indexed_or_allocated_are_refused_by_name():
    for name in ("n_features", "n_products"):
        with pytest.raises(ValueError, match=rf"{name} must be an integer in \[0, 2147483647\], got 10000000000"):
            FourierFeatures(**{name: 10**10})
    with pytest.raises(ValueError, match=r"n_features \+ n_products must be at most 2147483647"):
        FourierFeatures(n_features=2**31 - 1, n_products=1)
    # Indexable, but its weights do not fit: the setting is named, not NumPy's MemoryError.
    huge = FourierFeatures(n_features=2**31 - 1, n_products=0)
    with pytest.raises(ValueError, match=r"n_features=2147483647 for inputs of length 100000 needs 800,000.0 GiB"):
        huge.projection(100_000)
    with pytest.raises(ValueError, match=r"n_products=2147483647 for inputs of length 100000"):
        FourierFeatures(n_features=0, n_products=2**31 - 1).product_projection(100_000)


def test_initial_predictions_are_those_of_the_trunk_alone():
    """The fixed features' weights start at 0: the same key gives the seed learner's predictions."""
    plain = MultiHeadMLPLearner(3, hidden_sizes=(8,))
    extra = MultiHeadMLPLearner(3, hidden_sizes=(8,), head_features=FourierFeatures(16))
    key, x = jax.random.key(1), jnp.array([0.3, -1.2, 0.7])
    s_plain, s_extra = plain.init(3, key), extra.init(3, key)
    assert s_extra.head_params.weights.shape == (3, 8 + 3 + 16)
    np.testing.assert_array_equal(s_extra.head_params.weights[:, :8], s_plain.head_params.weights)
    np.testing.assert_array_equal(extra.predict(s_extra, x), plain.predict(s_plain, x))


def test_trunk_step_is_the_gradient_through_h_only():
    """The trunk step equals α ∇θ Σ_i δ_i v_i(θ) with v_i = w_i·[h(θ), φ(x)] + b_i (φ does
    not depend on θ), from one jax.grad."""
    learner = MultiHeadMLPLearner(4, hidden_sizes=(6,), step_size=0.1, sparsity=0.0, head_features=FourierFeatures(7))
    state = learner.init(3, jax.random.key(3))
    w = jax.random.normal(jax.random.key(4), state.head_params.weights.shape)
    state = state._replace(head_params=state.head_params._replace(weights=w))
    x = jnp.array([0.3, -1.0, 2.0])
    result = learner.update(state, x, jnp.array([1.0, jnp.nan, -1.0, 0.5]))
    delta = jnp.nan_to_num(result.errors)

    def weighted_sum(trunk):
        return jnp.dot(delta, learner.head_forward(state.head_params, learner.trunk_forward(trunk, x)))

    grads = jax.grad(weighted_sum)(state.trunk_params)
    for new, old, g in zip(result.state.trunk_params.weights, state.trunk_params.weights, grads.weights):
        np.testing.assert_allclose(new, old + 0.1 * g, rtol=1e-5, atol=1e-7)


def test_zero_trunk_horde_is_linear_td_lambda_on_the_head_features():
    """A zero, frozen trunk (h = 0): every demon is linear TD(λ) on [φ(x), 1] with step α,
    against a float64 loop: z ← γλ z + x(S_t), δ = c + γ v(S_{t+1}) - v(S_t) (no bootstrap
    at termination), w += α δ z, traces cleared after an episode ends."""
    features = FourierFeatures(n_features=6, bandwidth=1.5, seed=7)
    ds = DemonSet(
        [
            Demon("x0@0.9", C.observation(0), D.constant(0.9), lamda=0.8),
            Demon("x1@0.5", C.observation(1), D.constant(0.5), lamda=0.0),
            Demon("reward@0.7", C.reward(), D.constant(0.7), lamda=0.95),
        ]
    )
    alpha = 0.02
    learner = HordeLearner(
        ds,
        hidden_sizes=(5,),
        optimizer=LMS(0.0),
        head_optimizer=LMS(alpha),
        normalizer=None,
        head_features=features,
    )
    state = learner.init(2, jax.random.key(0))
    trunk = state.core.trunk_params
    state = state._replace(
        core=state.core._replace(trunk_params=MLPParams(tuple(jnp.zeros_like(w) for w in trunk.weights), trunk.biases))
    )
    rng = np.random.default_rng(0)
    steps = 60
    obs = rng.normal(size=(steps + 1, 2))
    rewards = rng.normal(size=steps)
    terminated = np.zeros(steps, bool)
    terminated[25] = True

    # reference
    n, k = len(ds), features.size(2) + 1
    gammas, lamdas = np.array([0.9, 0.5, 0.7]), np.array([0.8, 0.0, 0.95])
    w64, z = np.zeros((n, k)), np.zeros((n, k))
    w64[:, : features.size(2)] = np.asarray(state.core.head_params.weights)[:, 5:]
    w64[:, -1] = np.asarray(state.core.head_params.biases)
    decay = np.zeros(n)
    expected = []
    for t in range(steps):
        f, f_next = np.append(_phi64(features, obs[t]), 1.0), np.append(_phi64(features, obs[t + 1]), 1.0)
        c = np.array([obs[t + 1, 0], obs[t + 1, 1], rewards[t]])
        v, v_next = w64 @ f, w64 @ f_next
        expected.append(v)
        target = c if terminated[t] else c + gammas * v_next
        z = decay[:, None] * z + f
        w64 += alpha * (target - v)[:, None] * z
        decay = np.zeros(n) if terminated[t] else gammas * lamdas

    got = []
    for t in range(steps):
        r = learner.update_from_transition(state, obs[t], 0, rewards[t], obs[t + 1], terminated=bool(terminated[t]))
        got.append(np.asarray(r.predictions))
        state = r.state
    np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(state.core.head_params.weights)[:, 5:], w64[:, :-1], rtol=1e-4, atol=1e-5)


def test_horde_defaults_use_the_default_head_features_and_configs_round_trip():
    ds = DemonSet([Demon("r", C.reward(), D.constant(0.9))])
    # TD heads on a trunk (heads="td"; HordeLearner(ds) alone chooses least-squares heads)
    assert HordeLearner(ds, heads="td").core.head_features == DEFAULT_HEAD_FEATURES
    assert HordeLearner(ds, step_size=1e-3).core.head_features is None
    assert HordeLearner(ds, hidden_sizes=()).core.head_features is None
    assert HordeLearner(ds, head_features=None).core.head_features is None
    custom = HordeLearner(ds, head_features=FourierFeatures(32, bandwidth=0.5, seed=2))
    assert HordeLearner.from_config(custom.to_config()).core.head_features == FourierFeatures(32, 0.5, True, 2)
    core = custom.core
    assert MultiHeadMLPLearner.from_config(core.to_config()).head_features == core.head_features
    state = custom.init(3, jax.random.key(0))
    assert state.core.head_params.weights.shape == (1, 128 + 3 + 32)


def test_shared_head_traces_cover_the_head_features():
    """Heads with equal γλ share one trace over their whole input ``[h, φ(x)]``: a scan with
    shared traces equals the per-head layout bit for bit, NaN targets included."""
    rng = np.random.default_rng(5)
    xs = jnp.asarray(rng.normal(size=(40, 3)), jnp.float32)
    ys = rng.normal(size=(40, 4)).astype(np.float32)
    ys[10:14, 1] = np.nan
    out = []
    for shared in (True, False):
        learner = MultiHeadMLPLearner(
            4,
            hidden_sizes=(8,),
            step_size=0.01,
            per_head_gamma_lamda=(0.5, 0.5, 0.9, 0.9),
            head_features=FourierFeatures(16),
            shared_traces=shared,
        )
        state = learner.init(3, jax.random.key(0))
        for x, y in zip(xs, jnp.asarray(ys)):
            result = learner.update(state, x, y)
            state = result.state
        out.append((np.asarray(result.predictions), np.asarray(learner.head_traces(state)[0])))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])
    assert out[0][1].shape == (4, 8 + 3 + 16)


def test_a_checkpoint_saved_before_head_features_loads_without_them(tmp_path, monkeypatch):
    """Saved with the defaults of before (no ``head_features`` key), a checkpoint rebuilds a
    learner without them, which fits its state; today's default would not."""
    import horde

    demon_set = DemonSet([Demon("x0", C.observation(0), D.constant(0.5))])
    old = HordeLearner(demon_set, hidden_sizes=(4,), head_features=None)
    state = old.init(2, jax.random.key(0))
    written = HordeLearner.to_config

    def as_before(self):
        config = written(self)
        config.pop("head_features")
        return config

    monkeypatch.setattr(HordeLearner, "to_config", as_before)
    horde.save_checkpoint(tmp_path / "old", old, state, {"step": 0})
    monkeypatch.setattr(HordeLearner, "to_config", written)
    learner, loaded, _ = horde.load_checkpoint(tmp_path / "old.npz")
    assert learner.to_config()["head_features"] is None
    for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
