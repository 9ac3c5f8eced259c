"""Specification tests for the HordeLearner: exact TD targets, traces, episode boundaries and
off-policy demons, against known answers."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import demons
import envs
import horde
from demons import Demon, DemonSet
from demons import cumulants as C
from demons import discounts as D
from demons import policies as P
from horde import HeadParams, HordeLearner, MultiHeadMLPLearner, Transitions, run_horde_learning_loop


def _zero_heads(learner: HordeLearner, state, weights=None):
    n, dim = state.core.head_params.weights.shape
    w = jnp.zeros((n, dim)) if weights is None else jnp.asarray(weights, jnp.float32)
    return state._replace(core=state.core._replace(head_params=HeadParams(w, jnp.zeros((n,)))))


def _collect(env, policy, n_steps, seed):
    """Runs ``policy(obs, info, rng) -> (action, prob)`` on a single Gymnasium env; resets
    itself after terminated or truncated, recording the real final observation."""
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in Transitions._fields}
    obs, info = env.reset(seed=seed)
    for _ in range(n_steps):
        action, prob = policy(obs, info, rng)
        next_obs, reward, terminated, truncated, next_info = env.step(action)
        for key, value in zip(Transitions._fields, (obs, action, reward, next_obs, terminated, truncated, prob)):
            rows[key].append(value)
        if terminated or truncated:
            obs, info = env.reset()
        else:
            obs, info = next_obs, next_info
    return Transitions(*(np.asarray(rows[k]) for k in Transitions._fields))


def _uniform(obs, info, rng):
    return int(rng.integers(2)), 0.5


def _rms(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


# ---------------------------------------------------------------------------------------------
# Random walk (Sutton & Barto 2018, Example 6.2): true values 1/6 ... 5/6.

RW_TRUE = np.arange(1, 6) / 6.0


def _random_walk_values(learner, state, transitions):
    result = run_horde_learning_loop(learner, state, transitions)
    onehots = np.eye(5, dtype=np.float32)
    return np.stack([np.asarray(learner.predict(result.state, x)) for x in onehots]), result


def test_random_walk_td0_and_td_lambda_reach_true_values():
    transitions = _collect(envs.RandomWalk(), _uniform, 40_000, seed=0)
    demon_set = [
        Demon("td0", C.reward(), D.constant(1.0)),
        Demon("td(0.8)", C.reward(), D.constant(1.0), lamda=0.8),
    ]
    learner = HordeLearner(demon_set, hidden_sizes=(), step_size=0.005, sparsity=0.0)
    state = _zero_heads(learner, learner.init(5, jax.random.key(0)))
    values, _ = _random_walk_values(learner, state, transitions)
    for i, name in enumerate(learner.names):
        assert _rms(values[:, i], RW_TRUE) < 0.05, f"{name}: values {values[:, i]} vs {RW_TRUE}"


def test_random_walk_terminal_transition_does_not_bootstrap():
    """Bootstrapping from the (all-zero) terminal observation would add γ·b to every target at
    the ends; with a constant offset in the features the error is large."""
    transitions = _collect(envs.RandomWalk(), _uniform, 40_000, seed=1)

    # Append a constant feature so that v(terminal obs) = w_6 ≠ 0 when learned.
    def with_const(x):
        return np.concatenate([x, np.ones((len(x), 1), np.float32)], axis=1)

    transitions = transitions._replace(
        observations=with_const(transitions.observations),
        next_observations=with_const(transitions.next_observations),
    )
    learner = HordeLearner([Demon("td0", C.reward(), D.constant(1.0))], hidden_sizes=(), step_size=0.005, sparsity=0.0)
    state = _zero_heads(learner, learner.init(6, jax.random.key(0)))
    result = run_horde_learning_loop(learner, state, transitions)
    values = [float(learner.predict(result.state, np.r_[np.eye(5)[s], 1.0])[0]) for s in range(5)]
    assert _rms(values, RW_TRUE) < 0.05

    # The same stream with terminated flags dropped (as if bootstrapping) learns other values.
    wrong = transitions._replace(terminated=np.zeros_like(transitions.terminated))
    result = run_horde_learning_loop(learner, state, wrong)
    values = [float(learner.predict(result.state, np.r_[np.eye(5)[s], 1.0])[0]) for s in range(5)]
    assert _rms(values, RW_TRUE) > 0.1


def test_terminal_target_is_cumulant_plus_terminal_outcome_exactly():
    learner = HordeLearner(
        [Demon("a", C.reward(), D.constant(0.9)), Demon("b", C.constant(2.0), D.constant(0.5), z=3.0)],
        hidden_sizes=(4,),
    )
    state = learner.init(3, jax.random.key(0))
    obs, next_obs = np.array([0.1, 0.2, 0.3]), np.array([1.0, -1.0, 0.5])
    result = learner.update_from_transition(state, obs, 0, 1.5, next_obs, terminated=True)
    np.testing.assert_allclose(result.td_targets, [1.5, 2.0 + 3.0], rtol=1e-6)
    cut = learner.update_from_transition(state, obs, 0, 1.5, next_obs, truncated=True)
    # The weights before the update, and the default normalizer's statistics after S_t (the
    # update normalises S_{t+1} with them).
    before = state.core._replace(normalizer_state=cut.state.core.normalizer_state)
    v_next = learner.predict(state._replace(core=before), next_obs)
    np.testing.assert_allclose(cut.td_targets, [1.5 + 0.9 * v_next[0], 2.0 + 0.5 * v_next[1]], rtol=1e-5)


def test_random_walk_with_small_mlp_trunk():
    transitions = _collect(envs.RandomWalk(), _uniform, 60_000, seed=2)
    learner = HordeLearner(
        [Demon("td0", C.reward(), D.constant(1.0))], hidden_sizes=(16,), step_size=0.005, sparsity=0.5
    )
    state = learner.init(5, jax.random.key(0))
    values, _ = _random_walk_values(learner, state, transitions)
    assert _rms(values[:, 0], RW_TRUE) < 0.1, values[:, 0]


# ---------------------------------------------------------------------------------------------
# A deterministic cyclic signal


PERIOD = 6


def _cyclic_transitions(n_steps):
    phases = np.arange(n_steps + 1) % PERIOD
    onehot = np.eye(PERIOD, dtype=np.float32)[phases]
    return Transitions(
        onehot[:-1],
        np.zeros(n_steps, np.int32),
        np.zeros(n_steps),
        onehot[1:],
        np.zeros(n_steps, bool),
        np.zeros(n_steps, bool),
        np.ones(n_steps),
    )


def test_cyclic_signal_multi_timescale_and_until_demons_converge_to_analytic_values():
    signal_index = 2  # cumulant: the phase-2 indicator of the next observation
    demon_set = [
        Demon("phase2@0.5", C.observation(signal_index), D.constant(0.5)),
        Demon("phase2@10", C.observation(signal_index), D.timescale(10)),
        Demon("phase2@10,λ=0.9", C.observation(signal_index), D.timescale(10), lamda=0.9),
        Demon("steps_to_phase0", C.constant(1.0), D.until(0, 0.5)),
    ]
    learner = HordeLearner(demon_set, hidden_sizes=(), step_size=0.05, sparsity=0.0)
    state = _zero_heads(learner, learner.init(PERIOD, jax.random.key(0)))
    result = run_horde_learning_loop(learner, state, _cyclic_transitions(12_000))

    def discounted(gamma, phase):
        # G(p) = Σ_k γ^k c_{p+1+k}, c_j = 1 when phase j = 2; periodic closed form.
        c = np.array([1.0 if (phase + 1 + k) % PERIOD == signal_index else 0.0 for k in range(PERIOD)])
        return float(np.sum(c * gamma ** np.arange(PERIOD)) / (1 - gamma**PERIOD))

    for phase in range(PERIOD):
        v = np.asarray(learner.predict(result.state, np.eye(PERIOD)[phase]))
        np.testing.assert_allclose(v[0], discounted(0.5, phase), atol=1e-3)
        np.testing.assert_allclose(v[1], discounted(0.9, phase), atol=1e-2)
        np.testing.assert_allclose(v[2], discounted(0.9, phase), atol=1e-2)
        steps_to_zero = PERIOD - phase  # phase 0 itself: a whole period
        np.testing.assert_allclose(v[3], steps_to_zero, atol=1e-2)


def test_continuing_chain_cut_by_time_limit_learns_continuing_values():
    """Reward 1 every step of an endless cycle, γ = 0.9: v = 10 everywhere. Episodes are cut
    every 7 steps; treating the cut as termination would pull values near the cut down."""
    n_steps = 20_000
    t = np.arange(n_steps)
    base = _cyclic_transitions(n_steps)
    # Episodes restart at a random phase after each cut.
    rng = np.random.default_rng(3)
    phases = np.zeros(n_steps + 1, int)
    for i in range(n_steps):
        phases[i + 1] = rng.integers(PERIOD) if (i + 1) % 7 == 0 else (phases[i] + 1) % PERIOD
    onehot = np.eye(PERIOD, dtype=np.float32)
    truncated = (t + 1) % 7 == 0
    next_phase = np.where(truncated, (phases[:-1] + 1) % PERIOD, phases[1:])  # real final obs
    transitions = base._replace(
        observations=onehot[phases[:-1]],
        next_observations=onehot[next_phase],
        rewards=np.ones(n_steps),
        truncated=truncated,
    )
    learner = HordeLearner(
        [Demon("r@0.9", C.reward(), D.constant(0.9), lamda=0.5)], hidden_sizes=(), step_size=0.05, sparsity=0.0
    )
    state = _zero_heads(learner, learner.init(PERIOD, jax.random.key(0)))
    result = run_horde_learning_loop(learner, state, transitions)
    values = [float(learner.predict(result.state, onehot[p])[0]) for p in range(PERIOD)]
    np.testing.assert_allclose(values, 10.0, atol=0.1)

    as_terminal = transitions._replace(terminated=truncated, truncated=np.zeros_like(truncated))
    result = run_horde_learning_loop(learner, state, as_terminal)
    values = [float(learner.predict(result.state, onehot[p])[0]) for p in range(PERIOD)]
    assert min(values) < 9.0


# ---------------------------------------------------------------------------------------------
# Traces


def test_trace_decays_by_the_discount_of_the_step_it_decays_over():
    """Demon with λ = 1 and discount 0 where x[0] > 0.5: after a transition into such a state
    (γ_{t+1} = 0) the next step's trace restarts from h_{t+1} alone."""
    learner = HordeLearner([Demon("d", C.constant(0.0), D.until(0, 0.5), lamda=1.0)], hidden_sizes=(), step_size=0.0)
    state = learner.init(3, jax.random.key(0))
    a, b, c = np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
    s1 = learner.update(state, a, [0.0], a).state  # γ(a) = 1
    np.testing.assert_allclose(learner.head_traces(s1)[0][0], a)
    s2 = learner.update(s1, a, [0.0], b).state  # trace decays by γ(a) = 1: z = a + a
    np.testing.assert_allclose(learner.head_traces(s2)[0][0], 2 * a)
    s3 = learner.update(s2, b, [0.0], c).state  # decays by γ(b) = 0: z = b
    np.testing.assert_allclose(learner.head_traces(s3)[0][0], b)


def test_traces_are_zeroed_at_episode_start():
    # No normalizer: the default one maps this constant observation to exactly 0, whose trunk
    # features (and so the weights' traces) are 0.
    learner = HordeLearner([Demon("d", C.reward(), D.constant(0.9), lamda=0.9)], hidden_sizes=(4,), normalizer=None)
    state = learner.init(2, jax.random.key(0))
    x = np.ones(2)
    state = learner.update(state, x, [0.0], x).state
    assert np.abs(np.asarray(learner.head_traces(state)[0])).sum() > 0
    for flag in ("terminated", "truncated"):
        ended = learner.update(state, x, [0.0], x, **{flag: True}).state
        assert np.all(np.asarray(learner.head_traces(ended)[0]) == 0)
        assert np.all(np.asarray(learner.head_traces(ended)[1]) == 0)


def test_lambda_zero_demons_store_no_traces():
    learner = HordeLearner([Demon("d", C.reward(), D.constant(0.9))], hidden_sizes=(4,))
    state = learner.init(2, jax.random.key(0))
    assert state.core.head_traces == () and state.discounts == () and state.secondary_weights == ()


# ---------------------------------------------------------------------------------------------
# The exact update against a slow reference


def _reference_horde(learner, state, steps, alpha, beta, diag_alpha):
    """Linear TD(λ)/GTD(λ) with LMS, one demon and one step at a time in float64, with RUPEE
    and UDE: the Horde semantics written out (``h = x``, no trunk)."""
    n = learner.n_demons
    lamdas = np.asarray(learner.demons.lamdas, np.float64)
    z_out = np.asarray(learner.demons.z, np.float64)
    off = np.asarray(learner.demons.is_off_policy, bool)
    w = np.asarray(state.core.head_params.weights, np.float64).copy()
    b = np.asarray(state.core.head_params.biases, np.float64).copy()
    dim = w.shape[1]
    z_w, z_b = np.zeros((n, dim)), np.zeros(n)
    u_w, u_b = np.zeros((n, dim)), np.zeros(n)
    gamma_t = np.zeros(n)
    h_hat, d_bar, tau = np.zeros((n, dim + 1)), np.zeros((n, dim + 1)), np.zeros(n)
    mean, var, tau_u = np.zeros(n), np.zeros(n), np.zeros(n)
    out = []
    for x, c, x_next, gamma_next, rho, terminated, truncated in steps:
        x, x_next = np.asarray(x, np.float64), np.asarray(x_next, np.float64)
        targets, deltas, rupee, ude = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n), np.zeros(n)
        for i in range(n):
            if not np.isnan(c[i]):
                v, v_next = w[i] @ x + b[i], w[i] @ x_next + b[i]
                g = 0.0 if terminated else float(gamma_next[i])
                targets[i] = c[i] + g * v_next + (z_out[i] if terminated else 0.0)
                delta = deltas[i] = targets[i] - v
                z_w[i] = rho[i] * (gamma_t[i] * lamdas[i] * z_w[i] + x)
                z_b[i] = rho[i] * (gamma_t[i] * lamdas[i] * z_b[i] + 1.0)
                u_old_w, u_old_b = u_w[i].copy(), u_b[i]
                w[i] += alpha * delta * z_w[i]
                b[i] += alpha * delta * z_b[i]
                if off[i]:
                    zu = z_w[i] @ u_old_w + z_b[i] * u_old_b
                    w[i] -= alpha * g * (1.0 - lamdas[i]) * zu * x_next
                    b[i] -= alpha * g * (1.0 - lamdas[i]) * zu
                    uh = u_old_w @ x + u_old_b
                    u_w[i] = u_old_w + beta * (delta * z_w[i] - uh * x)
                    u_b[i] = u_old_b + beta * (delta * z_b[i] - uh)
                xb = np.r_[x, 1.0]
                dz = delta * np.r_[z_w[i], z_b[i]]
                h_hat[i] += 5.0 * diag_alpha * (dz - (h_hat[i] @ xb) * xb)
                beta0 = max(1.0 - lamdas[i], 0.01) * diag_alpha / 30.0
                tau[i] = (1.0 - beta0) * tau[i] + beta0
                d_bar[i] = (1.0 - beta0 / tau[i]) * d_bar[i] + beta0 / tau[i] * dz
                beta_u = 10.0 * diag_alpha
                tau_u[i] = (1.0 - beta_u) * tau_u[i] + beta_u
                bu = beta_u / tau_u[i]
                e = rho[i] * delta
                var[i] = (1.0 - bu) * (var[i] + bu * (e - mean[i]) ** 2)
                mean[i] = (1.0 - bu) * mean[i] + bu * e
            rupee[i] = np.sqrt(abs(h_hat[i] @ d_bar[i]))
            ude[i] = abs(mean[i]) / (np.sqrt(var[i]) + 1e-6)
        gamma_t = np.asarray(gamma_next, np.float64).copy()
        if terminated or truncated:
            z_w[:], z_b[:] = 0.0, 0.0
        out.append((targets, deltas, w.copy(), b.copy(), z_w.copy(), rupee, ude))
    return out


def test_linear_horde_update_matches_slow_td_lambda_gtd_reference():
    """On- and off-policy demons with traces, terminal outcomes, NaN cumulants, state-dependent
    discounts, terminations and truncations: every target, error, weight, trace, RUPEE and UDE
    of the compiled update against ``_reference_horde``."""
    demon_set = [
        Demon("on", C.reward(), D.constant(0.9), lamda=0.8, z=1.5),
        Demon("on0", C.reward(), D.constant(0.7)),
        Demon("off", C.reward(), D.constant(0.9), lamda=0.6, target_policy=P.fixed([0.2, 0.8]), z=-1.0),
        Demon("off0", C.reward(), D.constant(0.8), target_policy=P.fixed([0.0, 1.0])),
    ]
    alpha, beta, diag_alpha = 0.05, 0.1, 0.02
    learner = HordeLearner(
        demon_set,
        hidden_sizes=(),
        step_size=alpha,
        sparsity=0.0,
        secondary_step_size=beta,
        diagnostics=True,
        diagnostics_step_size=diag_alpha,
    )
    rng = np.random.default_rng(21)
    state = learner.init(3, jax.random.key(0))
    w0 = rng.uniform(-1, 1, size=(4, 3)).astype(np.float32)
    state = state._replace(core=state.core._replace(head_params=HeadParams(jnp.asarray(w0), jnp.full((4,), 0.3))))
    steps = []
    for t in range(30):
        c = rng.normal(size=4).astype(np.float32)
        c[rng.random(4) < 0.2] = np.nan
        rho = np.r_[1.0, 1.0, rng.choice([0.0, 0.5, 2.5], size=2)].astype(np.float32)
        flag = rng.random()
        steps.append(
            (
                rng.normal(size=3).astype(np.float32),
                c,
                rng.normal(size=3).astype(np.float32),
                rng.uniform(0, 1, size=4).astype(np.float32),
                rho,
                flag < 0.15,
                0.15 <= flag < 0.3,
            )
        )
    reference = _reference_horde(learner, state, steps, alpha, beta, diag_alpha)
    for (x, c, x_next, gamma, rho, terminated, truncated), ref in zip(steps, reference):
        r = learner.update(state, x, c, x_next, terminated=terminated, truncated=truncated, discounts=gamma, rhos=rho)
        targets, deltas, w, b, z_w, rupee, ude = ref
        np.testing.assert_allclose(r.td_targets, targets, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(r.td_errors, deltas, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(r.state.core.head_params.weights, w, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(r.state.core.head_params.biases, b, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(learner.head_traces(r.state)[0], z_w, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(r.rupee, rupee, rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(r.ude, ude, rtol=1e-3, atol=1e-4)
        state = r.state


def test_horde_stores_traces_through_the_explicit_core_argument():
    """The trace-storage decision is the core's ``store_head_traces``, not a disguised decay:
    the Horde's core keeps no per-head decay of its own."""
    with_traces = HordeLearner(
        [Demon("d", C.reward(), D.until(0, 0.5), lamda=0.5)], hidden_sizes=(4,), shared_traces=False
    )
    assert with_traces.core.stores_head_traces and with_traces.core.store_head_traces is True
    assert with_traces.core.per_head_gamma_lamda is None
    # Shared traces live in the Horde's own state, so the core then stores none.
    shared = HordeLearner([Demon("d", C.reward(), D.until(0, 0.5), lamda=0.5)], hidden_sizes=(4,))
    assert not shared.core.stores_head_traces
    # a trace per head feature: the trunk's 4, and the default head features' 2 + 256
    assert shared.init(2, jax.random.key(0)).traces.group_weights.shape == (1, 4 + 2 + 256)
    without = HordeLearner([Demon("d", C.reward(), D.constant(0.0), lamda=0.5)], hidden_sizes=(4,))
    assert not without.core.stores_head_traces
    assert without.init(2, jax.random.key(0)).core.head_traces == ()


# ---------------------------------------------------------------------------------------------
# Equivalence with the core


def test_all_gamma_zero_horde_equals_core_fed_cumulants_as_targets():
    rng = np.random.default_rng(4)
    demon_set = [Demon(f"obs{i}", C.observation(i), D.constant(0.0)) for i in range(4)]
    demon_set.append(Demon("r", C.reward(), D.constant(0.0)))
    horde_learner = HordeLearner(demon_set, hidden_sizes=(8, 8), step_size=0.05, bounder=horde.ObGDBounding())
    core = MultiHeadMLPLearner(5, hidden_sizes=(8, 8), step_size=0.05, bounder=horde.ObGDBounding())
    h_state = horde_learner.init(4, jax.random.key(7))
    c_state = core.init(4, jax.random.key(7))
    obs = rng.normal(size=(20, 4)).astype(np.float32)
    for t in range(19):
        reward = float(rng.normal())
        cumulants = np.r_[obs[t + 1], reward].astype(np.float32)
        hr = horde_learner.update_from_transition(h_state, obs[t], 0, reward, obs[t + 1])
        cr = core.update(c_state, obs[t], cumulants)
        # two differently compiled programs: float32 rounding differs in the last bits (the
        # CPU's vector width and FMA contraction decide where)
        np.testing.assert_allclose(hr.predictions, cr.predictions, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(hr.td_errors, cr.errors, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(hr.per_demon_metrics, cr.per_head_metrics, rtol=1e-5, atol=1e-7)
        h_state, c_state = hr.state, cr.state
    for a, b in zip(jax.tree_util.tree_leaves(h_state.core), jax.tree_util.tree_leaves(c_state)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_nan_cumulant_makes_a_demon_inactive():
    learner = HordeLearner(
        [Demon(f"d{i}", C.reward(), D.constant(0.5), lamda=0.5) for i in range(3)], hidden_sizes=(4,)
    )
    state = learner.init(2, jax.random.key(0))
    state = learner.update(state, np.ones(2), [1.0, 1.0, 1.0], np.ones(2)).state
    result = learner.update(state, np.ones(2), [1.0, np.nan, 1.0], np.zeros(2))
    assert np.isnan(result.td_errors[1]) and np.isnan(result.td_targets[1])
    assert np.isnan(np.asarray(result.per_demon_metrics)[1]).all()
    np.testing.assert_array_equal(result.state.core.head_params.weights[1], state.core.head_params.weights[1])
    np.testing.assert_array_equal(learner.head_traces(result.state)[0][1], learner.head_traces(state)[0][1])


# ---------------------------------------------------------------------------------------------
# Off-policy


def _baird_transitions(n_steps, seed=0):
    env = envs.BairdCounterexample()

    def behaviour(obs, info, rng):
        solid = rng.random() < 1 / 7
        return (1, 1 / 7) if solid else (0, 6 / 7)

    return env, _collect(env, behaviour, n_steps, seed)


BAIRD_W0 = [[1, 1, 1, 1, 1, 1, 10, 1]]


def test_baird_semi_gradient_off_policy_td_diverges():
    env, transitions = _baird_transitions(1000)
    learner = HordeLearner([Demon("semi", C.reward(), D.constant(0.99))], hidden_sizes=(), step_size=0.01, sparsity=0.0)
    state = _zero_heads(learner, learner.init(8, jax.random.key(0)), BAIRD_W0)
    rhos = np.where(transitions.actions == 1, 7.0, 0.0).astype(np.float32)
    w0 = np.linalg.norm(BAIRD_W0)
    for t in range(1000):
        state = learner.update(
            state, transitions.observations[t], [0.0], transitions.next_observations[t], rhos=rhos[t : t + 1]
        ).state
    w = np.linalg.norm(np.asarray(state.core.head_params.weights))
    assert w > 10 * w0, f"semi-gradient TD should diverge: |w| {w0:.1f} -> {w:.1f}"


def test_baird_gtd_demon_stays_bounded_with_small_bellman_error():
    env, transitions = _baird_transitions(1000)
    demon = Demon("gtd", C.reward(), D.constant(0.99), target_policy=P.fixed([0.0, 1.0]))
    learner = HordeLearner([demon], hidden_sizes=(), step_size=0.005, secondary_step_size=0.05, sparsity=0.0)
    state = _zero_heads(learner, learner.init(8, jax.random.key(0)), BAIRD_W0)
    result = run_horde_learning_loop(learner, state, transitions)

    X = env.features()
    P_target = env.target_transition_matrix()

    def bellman_error(w, b):
        # X has rank 7 = number of states (with or without the bias), so the projection is the
        # identity and the projected Bellman error equals the Bellman error under the uniform
        # behaviour distribution.
        v = X @ w + b
        return float(np.sqrt(np.mean((0.99 * P_target @ v - v) ** 2)))

    w = np.asarray(result.state.core.head_params.weights[0])
    b = float(result.state.core.head_params.biases[0])
    pbe0 = bellman_error(np.asarray(BAIRD_W0[0], float), 0.0)
    assert np.linalg.norm(w) < 2 * np.linalg.norm(BAIRD_W0)
    assert bellman_error(w, b) < 0.05 * pbe0, (bellman_error(w, b), pbe0)
    assert np.isfinite(np.asarray(result.per_demon_metrics[:, 0, 0])).all()


def test_off_policy_random_walk_approaches_target_policy_values():
    env = envs.RandomWalk()
    transitions = _collect(env, _uniform, 60_000, seed=5)
    demon = Demon("right@0.9", C.reward(), D.constant(0.9), target_policy=P.fixed([0.0, 1.0]))
    learner = HordeLearner([demon], hidden_sizes=(), step_size=0.01, secondary_step_size=0.05, sparsity=0.0)
    state = _zero_heads(learner, learner.init(5, jax.random.key(0)))
    result = run_horde_learning_loop(learner, state, transitions)
    values = [float(learner.predict(result.state, np.eye(5)[s])[0]) for s in range(5)]
    true = env.true_values(gamma=0.9, p_right=1.0)
    assert _rms(values, true) < 0.05, (values, true)


def test_on_policy_and_off_policy_demons_mix():
    learner = HordeLearner(
        [
            Demon("on", C.reward(), D.constant(0.9)),
            Demon("off", C.reward(), D.constant(0.9), target_policy=P.fixed([0.0, 1.0])),
        ],
        hidden_sizes=(4,),
        normalizer=None,  # the default one maps the constant observation to 0: no features
    )
    state = learner.init(2, jax.random.key(0))
    with pytest.raises(ValueError, match="rhos must be given: demon 'off' is off-policy"):
        learner.update(state, np.ones(2), [0.0, 0.0], np.ones(2))
    r = learner.update_from_transition(state, np.ones(2), 0, 1.0, np.ones(2), behaviour_prob=0.5)
    # Action 0 has target probability 0: the off-policy trace is zero, so its head does not move.
    np.testing.assert_array_equal(r.state.core.head_params.weights[1], state.core.head_params.weights[1])
    assert not np.array_equal(r.state.core.head_params.weights[0], state.core.head_params.weights[0])


# ---------------------------------------------------------------------------------------------
# Loops, config, compiled size


def test_scan_loop_equals_stepping_one_transition_at_a_time():
    transitions = _collect(envs.RandomWalk(), _uniform, 60, seed=6)
    learner = HordeLearner(
        [
            Demon("a", C.reward(), D.constant(0.9), lamda=0.7),
            Demon("b", C.observation(2), D.timescale(3)),
            Demon("c", C.reward(), D.constant(0.9), target_policy=P.fixed([0.2, 0.8])),
        ],
        hidden_sizes=(8,),
        step_size=0.05,
        bounder=horde.ObGDBounding(),
    )
    state = learner.init(5, jax.random.key(0))
    scanned = run_horde_learning_loop(learner, state, transitions)
    s = state
    for t in range(60):
        r = learner.update_from_transition(
            s,
            transitions.observations[t],
            transitions.actions[t],
            transitions.rewards[t],
            transitions.next_observations[t],
            terminated=bool(transitions.terminated[t]),
            truncated=bool(transitions.truncated[t]),
            behaviour_prob=transitions.behaviour_probs[t],
        )
        np.testing.assert_allclose(scanned.predictions[t], r.predictions, rtol=1e-5, atol=1e-6)
        s = r.state
    # 60 updates of two differently compiled programs: float32 rounding (vector width, FMA
    # contraction) accumulates to a few parts in 10^5
    for a, b in zip(jax.tree_util.tree_leaves(scanned.state), jax.tree_util.tree_leaves(s)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_batched_seeds_each_equal_their_own_run():
    transitions = _collect(envs.RandomWalk(), _uniform, 50, seed=7)
    learner = HordeLearner([Demon("a", C.reward(), D.constant(0.9), lamda=0.5)], hidden_sizes=(8,), step_size=0.05)
    keys = jax.random.split(jax.random.key(3), 3)
    batched = horde.run_horde_learning_loop_batched(learner, transitions, keys)
    assert batched.per_demon_metrics.shape == (3, 50, 1, 3)
    for i in range(3):
        single = run_horde_learning_loop(learner, learner.init(5, keys[i]), transitions)
        np.testing.assert_allclose(batched.predictions[i], single.predictions, rtol=1e-5, atol=1e-6)


def test_config_round_trip_with_demons():
    learner = HordeLearner(
        demons.nexting(3, timescales=(1, 10))
        + [Demon("off", C.reward(), D.constant(0.9), lamda=0.3, target_policy=P.fixed([0.5, 0.5]))],
        hidden_sizes=(8,),
        optimizer=horde.IDBD(0.01),
        bounder=horde.ObGDBounding(),
        normalizer=horde.WelfordNormalizer(),
        secondary_step_size=0.02,
    )
    config = json.loads(json.dumps(learner.to_config()))
    clone = HordeLearner.from_config(config)
    assert clone.to_config() == learner.to_config()
    assert clone.names == learner.names
    rng = np.random.default_rng(8)
    obs = rng.normal(size=(2, 3)).astype(np.float32)
    a = learner.update_from_transition(learner.init(3, jax.random.key(0)), obs[0], 1, 0.5, obs[1], behaviour_prob=0.5)
    b = clone.update_from_transition(clone.init(3, jax.random.key(0)), obs[0], 1, 0.5, obs[1], behaviour_prob=0.5)
    np.testing.assert_array_equal(a.per_demon_metrics, b.per_demon_metrics)


def test_compiled_update_does_not_grow_with_demons():
    def n_equations(n):
        demon_set = demons.nexting(4, timescales=tuple(range(1, n + 1)), lamda=0.5)
        learner = HordeLearner(demon_set, hidden_sizes=(8,))
        state = learner.init(4, jax.random.key(0))
        args = (state, jnp.zeros(4), 0, 0.0, jnp.zeros(4), False, False, 1.0)
        return len(jax.make_jaxpr(learner.update_from_transition_traced)(*args).eqns)

    assert n_equations(3) == n_equations(250)  # 12 demons vs 1,000 demons


# ---------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_names_the_argument_or_demon():
    learner = HordeLearner(
        [Demon("a", C.reward(), D.constant(0.9)), Demon("b", C.observation(3), D.constant(0.5))], hidden_sizes=(4,)
    )
    with pytest.raises(ValueError, match=r"demon 'b'.*index 3.*observation_dim 3"):
        learner.init(3, jax.random.key(0))
    with pytest.raises(TypeError, match=r"observation_dim must be an integer, got .*key<fry>"):
        learner.init(jax.random.key(0), 4)  # arguments swapped: named, not NumPy's dtype error
    state = learner.init(4, jax.random.key(0))
    x = np.zeros(4)
    with pytest.raises(ValueError, match=r"cumulants must have shape \(2,\).*got shape \(3,\)"):
        learner.update(state, x, [0.0, 0.0, 0.0], x)
    with pytest.raises(ValueError, match=r"discount of demon 'b' must be in \[0, 1\], got 1.5"):
        learner.update(state, x, [0.0, 0.0], x, discounts=[0.5, 1.5])
    with pytest.raises(ValueError, match=r"rho of demon 'a' must be finite and >= 0, got -1.0"):
        learner.update(state, x, [0.0, 0.0], x, rhos=[-1.0, 1.0])
    with pytest.raises(ValueError, match=r"next_observation must be finite, got nan at index 2"):
        learner.update(state, x, [0.0, 0.0], np.array([0, 0, np.nan, 0]))
    with pytest.raises(ValueError, match=r"observation must have shape \(4,\)"):
        learner.update_from_transition(state, np.zeros(5), 0, 0.0, x)
    with pytest.raises(ValueError, match=r"behaviour_prob must be in \(0, 1\], got 0.0"):
        learner.update_from_transition(state, x, 0, 0.0, x, behaviour_prob=0.0)
    with pytest.raises(ValueError, match="terminated must be a scalar bool"):
        learner.update(state, x, [0.0, 0.0], x, terminated=[True, False])
    with pytest.raises(ValueError, match=r"cumulant of demon 'a' must be finite or NaN, got inf"):
        learner.update(state, x, [np.inf, 0.0], x)


def test_bad_demon_specifications_fail_at_construction():
    with pytest.raises(ValueError, match=r"gamma for demon 'x' must be in \[0, 1\], got 1.3"):
        HordeLearner([Demon("x", C.reward(), D.constant(1.3))])
    with pytest.raises(ValueError, match=r"lamda.*'x'.*-0.1"):
        HordeLearner([Demon("x", C.reward(), D.constant(0.9), lamda=-0.1)])
    with pytest.raises(ValueError, match="duplicate demon name 'x'"):
        HordeLearner([Demon("x", C.reward(), D.constant(0.9)), Demon("x", C.reward(), D.constant(0.5))])
    with pytest.raises(ValueError, match="at least one Demon"):
        HordeLearner([])
    with pytest.raises(ValueError, match="secondary_step_size"):
        HordeLearner([Demon("x", C.reward(), D.constant(0.9))], secondary_step_size=-1.0)
    assert isinstance(DemonSet([Demon("x", C.reward(), D.constant(0.9))]), DemonSet)


def test_default_learner_keeps_rupee_finite_on_cartpole():
    """With heads that tune their own step sizes (the default Autostep), RUPEE's LMS rule once
    took the heads' initial step 0.01 as its α and diverged to inf within 100 steps on CartPole
    (5α ‖h‖² ≈ 6.5 > 2): its α is capped at 0.1 / (H + 1 + n), with n the default head
    features' Fourier features (256), whose squares add about n / 2 to the features' norm."""
    learner = HordeLearner(demons.nexting(4, timescales=(1, 10)), diagnostics=True)
    assert learner.diagnostics_step_size == pytest.approx(0.1 / (129 + 256))
    assert learner.secondary_step_size == pytest.approx(1.0 / (129 + 256))
    result = horde.run(learner, "CartPole-v1", steps=1000, progress=False)
    assert np.isfinite(result.rupee).all() and np.isfinite(result.ude).all()
