"""Control demons: policies on a demon's own values, the ControlLearner's rules against slow
float64 NumPy references on a small MDP, EpsilonGreedy's exact probabilities, run_jax acting."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import demons
import horde
from demons import cumulants, discounts, policies
from horde.control import ControlLearner, ReturnStats, scale_cumulants

GAMMA, LAMDA, SLOPE, KAPPA = 0.9, 0.8, 0.01, 2.0

# ---------------------------------------------------------------------------------------------
# A small MDP and its transition stream


def mdp_stream(n_states=5, n_actions=2, steps=300, seed=0):
    """Transitions of a random 5-state MDP under a uniform behaviour, with terminations and
    time-limit truncations: observations are one-hot."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(n_states), size=(n_states, n_actions))
    R = rng.normal(size=(n_states, n_actions))
    eye = np.eye(n_states, dtype=np.float32)
    s = 0
    rows = []
    for _ in range(steps):
        a = int(rng.integers(n_actions))
        s2 = int(rng.choice(n_states, p=P[s, a]))
        r = R[s, a] + 0.1 * rng.normal()
        terminated = s2 == n_states - 1 and rng.random() < 0.5
        truncated = not terminated and rng.random() < 0.05
        rows.append((eye[s], a, np.float32(r), eye[s2], terminated, truncated, 1.0 / n_actions))
        s = int(rng.integers(n_states)) if terminated or truncated else s2
    cols = list(zip(*rows))
    return tuple(np.asarray(c) for c in cols)


def run_learner(learner, stream, n_actions=2, key=0):
    state = learner.init_traced(stream[0].shape[1], jax.random.key(key), n_actions)

    def body(s, t):
        r, _ = learner.evaluate_and_update_traced(s, *t)
        return r.state, (r.predictions, r.td_errors, r.explored)

    final, outs = jax.jit(lambda s, xs: jax.lax.scan(body, s, xs))(state, tuple(jnp.asarray(c) for c in stream))
    return state, final, [np.asarray(o) for o in outs]


# ---------------------------------------------------------------------------------------------
# The slow reference: one network (optional hidden layer with LayerNorm), Python loop, float64


def leaky(a):
    return np.where(a >= 0, a, SLOPE * a)


def forward(p, x, fourier=None):
    """``q`` and the pieces ``grad`` needs; ``p = [W1, b1, Wh, bh]`` or ``[Wh, bh]``. With
    ``fourier = (W, b)`` the heads read ``[h, x, cos(x W + b)]``."""
    if len(p) == 2:
        return p[0] @ x + p[1], (x,)
    w1, b1, wh, bh = p
    a = x @ w1 + b1
    c = a - a.mean()
    inv = 1.0 / np.sqrt(np.mean(c * c) + 1e-5)
    ln = c * inv
    h = leaky(ln)
    if fourier is not None:
        h = np.concatenate([h, x, np.cos(x @ fourier[0] + fourier[1])])
    return wh @ h + bh, (x, ln, inv, h)


def grad(p, x, action, fourier=None):
    """``∇_θ q(x, action)`` as a list like ``p``, written out by hand."""
    _, tape = forward(p, x, fourier)
    if len(p) == 2:
        gw = np.zeros_like(p[0])
        gw[action] = x
        gb = np.zeros_like(p[1])
        gb[action] = 1.0
        return [gw, gb]
    w1, b1, wh, bh = p
    x, ln, inv, h = tape
    gwh = np.zeros_like(wh)
    gwh[action] = h
    gbh = np.zeros_like(bh)
    gbh[action] = 1.0
    g = wh[action, : ln.size] * np.where(ln >= 0, 1.0, SLOPE)  # the fixed features pass nothing back
    ga = (g - g.mean() - ln * np.mean(g * ln)) * inv
    return [np.outer(x, ga), ga, gwh, gbh]


def greedy(q):
    m = (q == q.max()).astype(np.float64)
    return m / m.sum()


def reference(params, stream, rule, epsilon=0.0, normalize=False, scale=False, alpha=1.0, beta=0.01, fourier=None):
    """Stream Q(λ) / Expected SARSA(λ) / Greedy-GQ(λ) for one demon, step by step in float64."""
    p = [np.asarray(a, np.float64) for a in params]
    if fourier is not None:
        fourier = tuple(np.asarray(a, np.float64) for a in fourier)
    e = [np.zeros_like(a) for a in p]
    w = [np.zeros_like(a) for a in p]
    count, mean, m2 = 0, None, None  # observation Welford (population variance)
    g_ret, r_count, r_mean, r_m2 = 0.0, 0, 0.0, 0.0
    gamma_now = 0.0
    values, deltas = [], []

    def norm(o):
        var = m2 / max(count, 1)
        return (o - mean) / np.sqrt(var + 1e-8)

    def observe(o):
        nonlocal count, mean, m2
        if mean is None:
            mean, m2 = np.zeros_like(o), np.zeros_like(o)
        count += 1
        d = o - mean
        mean = mean + d / count
        m2 = m2 + d * (o - mean)

    for obs, a, r, obs2, term, trunc, mu in zip(*stream):
        obs, obs2 = obs.astype(np.float64), obs2.astype(np.float64)
        if normalize:
            if count == 0:
                observe(obs)
            x = norm(obs)
            observe(obs2)
            x2 = norm(obs2)
        else:
            x, x2 = obs, obs2
        c, sigma = float(r), 1.0
        if scale:
            g_ret = GAMMA * g_ret + c
            r_count += 1
            d = g_ret - r_mean
            r_mean += d / r_count
            r_m2 += d * (g_ret - r_mean)
            var = 1.0 if r_count < 2 else r_m2 / (r_count - 1)
            sigma = np.sqrt(var + 1e-8)
            c = c / sigma
        q, _ = forward(p, x, fourier)
        q2, _ = forward(p, x2, fourier)
        n = q.shape[0]
        pi2 = epsilon / n + (1 - epsilon) * greedy(q2)
        delta = c + (0.0 if term else GAMMA * pi2 @ q2) - q[a]
        phi = grad(p, x, a, fourier)
        decay = gamma_now * LAMDA
        if rule == "greedy_gq":
            decay *= (epsilon / n + (1 - epsilon) * greedy(q))[a] / mu
        e = [decay * ei + gi for ei, gi in zip(e, phi)]
        l1 = sum(np.abs(ei).sum() for ei in e)
        step = alpha / max(KAPPA * alpha * max(abs(delta), 1.0) * l1, 1.0)
        if rule == "greedy_gq":
            phi2 = grad(p, x2, int(np.argmax(q2)), fourier)
            we = sum((wi * ei).sum() for wi, ei in zip(w, e))
            wphi = sum((wi * gi).sum() for wi, gi in zip(w, phi))
            g2 = 0.0 if term else GAMMA
            p = [pi + step * (delta * ei - g2 * (1 - LAMDA) * we * fi) for pi, ei, fi in zip(p, e, phi2)]
            w = [wi + beta * (delta * ei - wphi * gi) for wi, ei, gi in zip(w, e, phi)]
        else:
            p = [pi + step * delta * ei for pi, ei in zip(p, e)]
        explored = q[a] < q.max()
        if term or trunc or (rule == "q_lambda" and explored):
            e = [np.zeros_like(ei) for ei in e]
        if scale and (term or trunc):
            g_ret = 0.0
        gamma_now = 0.0 if (term or trunc) else GAMMA
        values.append(q.max() * sigma)
        deltas.append(delta * sigma)
    return p, np.asarray(values), np.asarray(deltas)


def flat_params(state, hidden):
    trunk, heads = state.params
    if hidden:
        return [trunk.weights[0][0], trunk.biases[0][0], heads.weights[0], heads.biases[0]]
    return [heads.weights[0], heads.biases[0]]


def control_demon(policy, name="q"):
    return demons.Demon(name, cumulants.reward(), discounts.constant(GAMMA), lamda=LAMDA, target_policy=policy)


@pytest.mark.parametrize(
    "policy, rule, greedy_rule",
    [
        (policies.greedy(), "q_lambda", "q_lambda"),
        (policies.epsilon_greedy(0.2), "sarsa", "q_lambda"),
        (policies.greedy(), "greedy_gq", "greedy_gq"),
    ],
)
def test_linear_rules_match_the_float64_reference(policy, rule, greedy_rule):
    stream = mdp_stream()
    learner = ControlLearner(
        [control_demon(policy)],
        hidden_sizes=(),
        sparsity=0.0,
        normalize_observations=False,
        scale_cumulants=False,
        greedy_rule=greedy_rule,
    )
    assert learner.rules == (rule,)
    init, final, (values, deltas, explored) = run_learner(learner, stream)
    eps = getattr(policy, "epsilon", 0.0)
    p, ref_values, ref_deltas = reference(flat_params(init, False), stream, rule, epsilon=eps)
    np.testing.assert_allclose(values[:, 0], ref_values, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(deltas[:, 0], ref_deltas, rtol=1e-4, atol=1e-5)
    for got, want in zip(flat_params(final, False), p):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert explored.any() and not explored.all()  # both the cut and the uncut path were taken


def test_stream_q_lambda_with_a_trunk_normalisation_and_scaling_matches_the_reference():
    """Traces over the whole network (trunk and heads), observation normalisation and reward
    scaling, against the hand-written float64 network."""
    stream = mdp_stream(steps=200, seed=3)
    learner = ControlLearner(
        [control_demon(policies.greedy())], hidden_sizes=(8,), sparsity=0.5, head_features=None
    )  # stream-x's network: the heads read the trunk's output alone
    init, final, (values, deltas, _) = run_learner(learner, stream)
    p, ref_values, ref_deltas = reference(flat_params(init, True), stream, "q_lambda", normalize=True, scale=True)
    np.testing.assert_allclose(values[:, 0], ref_values, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(deltas[:, 0], ref_deltas, rtol=2e-4, atol=2e-5)
    for got, want in zip(flat_params(final, True), p):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_stream_q_lambda_with_fourier_head_features_matches_the_reference():
    """Heads on ``[h, x, cos(x W / σ + b)]``: q, δ and every parameter (the fixed features'
    head weights included) against the float64 network whose trunk hears only ``h``'s weights."""
    stream = mdp_stream(steps=200, seed=3)
    features = horde.FourierFeatures(n_features=6, bandwidth=0.7, seed=2)
    learner = ControlLearner(
        [control_demon(policies.greedy())], hidden_sizes=(8,), sparsity=0.5, head_features=features
    )
    init, final, (values, deltas, _) = run_learner(learner, stream)
    assert flat_params(init, True)[2].shape == (2, 8 + 5 + 6)
    p, ref_values, ref_deltas = reference(
        flat_params(init, True), stream, "q_lambda", normalize=True, scale=True, fourier=features.projection(5)
    )
    np.testing.assert_allclose(values[:, 0], ref_values, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(deltas[:, 0], ref_deltas, rtol=2e-4, atol=2e-5)
    for got, want in zip(flat_params(final, True), p):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    assert np.abs(p[2][:, 8:]).max() > 0.01  # the fixed features' weights moved off zero
    again = ControlLearner.from_config(learner.to_config())
    assert again.head_features == features


def test_control_head_features_default_with_a_trunk_only_and_not_for_old_configs():
    q = control_demon(policies.greedy())
    default = ControlLearner([q])
    assert default.head_features == horde.FourierFeatures(n_features=256, bandwidth=1.0)
    assert default.head_features is horde.control.DEFAULT_CONTROL_HEAD_FEATURES
    heads = default.init_traced(6, jax.random.key(0), 3).params[1]
    assert heads.weights.shape == (1, 3, 32 + 6 + 256)
    assert ControlLearner([q], hidden_sizes=()).head_features is None
    assert ControlLearner([q], head_features=None).head_features is None
    old = default.to_config()
    del old["head_features"]  # a config written before the default
    assert ControlLearner.from_config(old).head_features is None
    assert ControlLearner.from_config(default.to_config()).head_features == default.head_features


def test_control_learner_refuses_head_features_that_are_not_fourier_features():
    with pytest.raises(TypeError, match="head_features must be a horde.FourierFeatures or None, got 3"):
        ControlLearner([control_demon(policies.greedy())], head_features=3)
    with pytest.raises(ValueError, match="head_features"):
        ControlLearner([control_demon(policies.greedy())], hidden_sizes=(), head_features=horde.FourierFeatures())


def test_stacked_demons_learn_as_each_would_alone():
    """Two control demons in one learner (one vmapped update) equal each learned alone."""
    stream = mdp_stream(steps=100, seed=1)
    a, b = control_demon(policies.greedy(), "a"), control_demon(policies.epsilon_greedy(0.1), "b")
    kw = dict(hidden_sizes=(), sparsity=0.0, normalize_observations=False, scale_cumulants=False)
    _, both, (vals, _, _) = run_learner(ControlLearner([a, b], **kw), stream)
    for k, demon in enumerate((a, b)):
        alone = ControlLearner([demon], **kw)
        init = alone.init_traced(5, jax.random.key(0), 2)
        init = init._replace(params=jax.tree_util.tree_map(lambda x: x[k : k + 1], both_init(a, b, kw)))
        final, outs = jax.lax.scan(
            lambda s, t: (lambda r: (r[0].state, r[0].predictions))(alone.evaluate_and_update_traced(s, *t)),
            init,
            tuple(jnp.asarray(c) for c in stream),
        )
        np.testing.assert_allclose(np.asarray(outs)[:, 0], vals[:, k], rtol=1e-6, atol=1e-6)


def both_init(a, b, kw):
    return ControlLearner([a, b], **kw).init_traced(5, jax.random.key(0), 2).params


def test_scale_cumulants_is_the_running_return_standard_deviation():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(50, 2)).astype(np.float32)
    ends = rng.random(50) < 0.2
    stats, g = ReturnStats.zeros(2), jnp.zeros(2)
    history, ret = [], np.zeros(2)
    for t in range(50):
        scaled, g, stats, sigma = scale_cumulants(stats, g, jnp.asarray(c[t]), jnp.full(2, GAMMA), jnp.asarray(ends[t]))
        ret = GAMMA * ret + c[t]
        history.append(ret.copy())
        want = 1.0 if t == 0 else np.var(np.asarray(history), axis=0, ddof=1)
        np.testing.assert_allclose(np.asarray(sigma), np.sqrt(want + 1e-8), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(scaled), c[t] / np.sqrt(want + 1e-8), rtol=1e-5)
        if ends[t]:
            ret = np.zeros(2)


# ---------------------------------------------------------------------------------------------
# Policies on the demon's own values


def test_greedy_and_epsilon_greedy_probabilities_split_ties_evenly():
    q = jnp.asarray([1.0, 3.0, 3.0, 0.0])
    np.testing.assert_allclose(policies.greedy().probabilities(q), [0, 0.5, 0.5, 0])
    np.testing.assert_allclose(policies.epsilon_greedy(0.2).probabilities(q), [0.05, 0.45, 0.45, 0.05], rtol=1e-6)


def test_control_policies_round_trip_through_toml():
    ds = demons.DemonSet([control_demon(policies.greedy(), "g"), control_demon(policies.epsilon_greedy(0.1), "e")])
    text = ds.to_toml()
    assert 'target_policy = { kind = "greedy" }' in text
    assert 'target_policy = { kind = "epsilon_greedy", epsilon = 0.1 }' in text
    assert demons.DemonSet.from_toml(text) == ds


def test_control_demons_live_beside_fixed_policy_demons_in_a_set():
    fixed = demons.Demon("f", cumulants.reward(), discounts.constant(0.5), target_policy=policies.fixed([0.2, 0.8]))
    ds = demons.DemonSet([control_demon(policies.greedy()), fixed]).validate(4, 2)
    assert ds.n_actions == 2


def test_epsilon_greedy_target_rejects_an_epsilon_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"epsilon of the target policy of demon 'q' must be in \[0, 1\], got 1.5"):
        control_demon(policies.epsilon_greedy(1.5))


def test_control_learner_refuses_prediction_demons_and_horde_refuses_none():
    with pytest.raises(ValueError, match="demon 'r' is not a control demon"):
        ControlLearner([demons.Demon("r", cumulants.reward(), discounts.constant(0.5))])
    with pytest.raises(ValueError, match="greedy_rule must be 'q_lambda' or 'greedy_gq', got 'sarsa'"):
        ControlLearner([control_demon(policies.greedy())], greedy_rule="sarsa")


# ---------------------------------------------------------------------------------------------
# EpsilonGreedy


def test_epsilon_anneals_linearly_from_start():
    pol = horde.EpsilonGreedy("q", epsilon=0.1, start=0.9, anneal_steps=100)
    np.testing.assert_allclose(pol.epsilon_at(np.arange(0, 201, 50), 100), [0.9, 0.5, 0.1, 0.1, 0.1], rtol=1e-6)
    assert pol.resolved_anneal_steps(1000) == 100
    assert horde.EpsilonGreedy("q").resolved_anneal_steps(100_000) == 5000


def test_epsilon_greedy_behaviour_probabilities_are_exact():
    """The reported μ(a|s) is ε/|A| + (1-ε)·1[a ∈ argmax]/|argmax|, and a uniform draw picks
    each action with exactly that probability."""
    from horde.runs.jax_envs import as_jax_env, as_jax_policy

    learner = ControlLearner([control_demon(policies.greedy())], hidden_sizes=(), normalize_observations=False)
    env = as_jax_env(envs_random_walk(), 0)
    pol = as_jax_policy(horde.EpsilonGreedy("q", epsilon=0.3, start=0.3, anneal_steps=0), env, learner, 10)
    state = learner.init_traced(5, jax.random.key(0), 2)
    # Values (1, 1) for the first observation: a tie.
    state = state._replace(
        params=(state.params[0], state.params[1]._replace(weights=jnp.zeros((1, 2, 5)), biases=jnp.ones((1, 2))))
    )
    x = jnp.zeros(5).at[0].set(1.0)
    u = (jnp.arange(10_000) + 0.5) / 10_000
    actions, probs = jax.vmap(lambda ui: pol.act(ui, (state, x, jnp.uint32(0))))(u)
    np.testing.assert_allclose(np.bincount(np.asarray(actions), minlength=2) / 10_000, [0.5, 0.5], atol=1e-4)
    np.testing.assert_allclose(np.asarray(probs), 0.5, rtol=1e-6)
    state = state._replace(params=(state.params[0], state.params[1]._replace(biases=jnp.asarray([[0.0, 1.0]]))))
    actions, probs = jax.vmap(lambda ui: pol.act(ui, (state, x, jnp.uint32(0))))(u)
    np.testing.assert_allclose(np.bincount(np.asarray(actions), minlength=2) / 10_000, [0.15, 0.85], atol=1e-4)
    np.testing.assert_allclose(np.asarray(probs), np.where(np.asarray(actions) == 1, 0.85, 0.15), rtol=1e-6)


def envs_random_walk():
    import gymnasium as gym

    import envs  # noqa: F401  (registers horde/RandomWalk-v0)

    return gym.make("horde/RandomWalk-v0")


def test_epsilon_greedy_needs_a_control_learner_holding_the_demon():
    hl = horde.HordeLearner(demons.reward_demons((2,)), hidden_sizes=(8,))
    with pytest.raises(ValueError, match="must be a horde.ControlLearner"):
        horde.run_jax(hl, envs_random_walk(), steps=10, policy=horde.EpsilonGreedy("q"))
    learner = ControlLearner([control_demon(policies.greedy())], hidden_sizes=(4,))
    with pytest.raises(ValueError, match="no control demon named 'nope'"):
        horde.run_jax(learner, envs_random_walk(), steps=10, policy=horde.EpsilonGreedy("nope"))


# ---------------------------------------------------------------------------------------------
# run_jax


@pytest.mark.slow  # 26 s; run_jax acting is checked against horde.run by test_control_runs in the default run
def test_run_jax_acts_on_the_control_demon_and_records_every_demon():
    learner = ControlLearner(
        [control_demon(policies.greedy())],
        horde=horde.HordeLearner(demons.reward_demons((2, 4)), hidden_sizes=(8,)),
        hidden_sizes=(8,),
    )
    pol = horde.EpsilonGreedy("q", epsilon=0.1, anneal_steps=50)
    r = horde.run_jax(learner, envs_random_walk(), steps=300, seed=3, n_seeds=2, policy=pol, max_episode_steps=50)
    assert r.demon_names == ("q", "reward@2", "reward@4")
    assert r.predictions.shape == (2, 300, 3)
    assert np.isfinite(r.predictions).all()
    assert set(np.unique(r.episode_seed)) == {0, 1}
    assert [d.off_policy for d in r.demons] == [True, False, False]
    # The control demon's cumulant is the reward, recorded unscaled.
    np.testing.assert_array_equal(r.cumulants[..., 0], r.cumulants[..., 1])


def test_the_horde_inside_learns_exactly_as_it_would_alone():
    stream = mdp_stream(steps=100, seed=2)
    hl = horde.HordeLearner(demons.reward_demons((2, 4)), hidden_sizes=(8,))
    learner = ControlLearner([control_demon(policies.greedy())], horde=hl, hidden_sizes=(4,))
    _, _, (values, _, _) = run_learner(learner, stream)
    state = hl.init_traced(5, jax.random.key(0))

    def body(s, t):
        r, _ = hl.evaluate_and_update_traced(s, *t)
        return r.state, r.predictions

    _, alone = jax.lax.scan(body, state, tuple(jnp.asarray(c) for c in stream))
    np.testing.assert_array_equal(values[:, 1:], np.asarray(alone))


def test_a_demon_set_refuses_to_evaluate_a_control_demons_ratio():
    ds = demons.DemonSet([control_demon(policies.greedy())])
    with pytest.raises(ValueError, match="'greedy' target policy is a control demon.*horde.ControlLearner"):
        ds.evaluate(jnp.zeros(4), 0, 1.0, jnp.zeros(4), behaviour_prob=0.5)


def test_horde_run_refuses_epsilon_greedy_at_the_boundary():
    with pytest.raises(ValueError, match="use horde.run_jax with a horde.ControlLearner"):
        horde.runs.as_behaviour_policy(horde.EpsilonGreedy("q"), envs_random_walk().action_space)


def test_values_read_the_greedy_value_in_cumulant_units():
    """``values_traced`` is ``max_a q(s, a)`` times σ, the sample standard deviation of the
    discounted return so far."""
    stream = mdp_stream(steps=60, seed=4)
    learner = ControlLearner([control_demon(policies.greedy())], hidden_sizes=(4,))
    _, final, _ = run_learner(learner, stream)
    obs = jnp.asarray(stream[3][-1])
    q = np.asarray(learner.action_values_traced(final, obs))[0]
    sigma = float(learner.cumulant_scales(final)[0])
    np.testing.assert_allclose(np.asarray(learner.values_traced(final, obs)), [q.max() * sigma], rtol=1e-6)
    n, m2 = float(final.return_stats.n), np.asarray(final.return_stats.m2)[0]
    np.testing.assert_allclose(sigma, np.sqrt(m2 / (n - 1) + 1e-8), rtol=1e-6)


def test_run_config_control_head_features_is_a_table_or_false(tmp_path):
    from horde.cli.config import ConfigError, build_learner, load_config

    demon = (
        '[[demons]]\nname = "q"\ncumulant = { kind = "reward" }\ndiscount = { kind = "constant", gamma = 0.9 }\n'
        'target_policy = { kind = "greedy" }\n'
    )

    def learner(control):
        path = tmp_path / "c.toml"
        path.write_text(f"[control]\nhidden_sizes = [8]\n{control}\n{demon}")
        return build_learner(load_config(path, require_env=False))

    assert learner("").head_features == horde.FourierFeatures(256, bandwidth=1.0)
    assert learner("head_features = false").head_features is None
    table = 'head_features = { type = "FourierFeatures", n_features = 16, bandwidth = 0.5 }'
    assert learner(table).head_features == horde.FourierFeatures(16, bandwidth=0.5)
    with pytest.raises(ConfigError, match="control.head_features must be a table .* or false, got 3"):
        learner("head_features = 3")


def test_a_control_checkpoint_saved_before_head_features_loads_without_them(tmp_path, monkeypatch):
    """Saved with the defaults of before (no ``head_features`` key), a control checkpoint
    rebuilds a learner without them, which fits its state; today's default would not."""
    old = ControlLearner([control_demon(policies.greedy())], hidden_sizes=(4,), head_features=None)
    state = old.init_traced(3, jax.random.key(0), 2)
    written = ControlLearner.to_config

    def as_before(self):
        config = written(self)
        config.pop("head_features")
        return config

    monkeypatch.setattr(ControlLearner, "to_config", as_before)
    horde.save_checkpoint(tmp_path / "old", old, state, {"step": 0})
    monkeypatch.setattr(ControlLearner, "to_config", written)
    learner, loaded, _ = horde.load_checkpoint(tmp_path / "old.npz")
    assert learner.head_features is None
    assert learner.action_count(loaded) == 2
    for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    again, _, _ = horde.load_checkpoint(tmp_path / "old.npz", learner=old)  # the caller's own learner
    assert again is old
