"""Prediction demons about a control demon's greedy policy (``policies.greedy_in``): their
importance ratios and GTD(λ) updates against a float64 reference computed from the control
demon's values, the acting runners, refusals and TOML."""

from __future__ import annotations

import tomllib

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import demons
import envs  # noqa: F401  (registers horde/RandomWalk-v0)
import horde
from demons import cumulants, discounts, policies
from horde.core import HeadParams

ALPHA, BETA = 0.05, 0.1


def balance(name="balance"):
    return demons.Demon(name, cumulants.reward(), discounts.constant(0.9), lamda=0.8, target_policy=policies.greedy())


def about(name, policy, lamda=0.6, gamma=0.8, index=0):
    return demons.Demon(
        name, cumulants.observation(index), discounts.constant(gamma), lamda=lamda, target_policy=policy
    )


def stream(steps=120, n_states=4, seed=0):
    """A random 4-state MDP (one-hot observations, two actions) under the fixed behaviour
    μ = (0.3, 0.7), with terminations and truncations."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(n_states), size=(n_states, 2))
    R = rng.normal(size=(n_states, 2))
    eye = np.eye(n_states, dtype=np.float32)
    mu = np.asarray([0.3, 0.7])
    s, rows = 0, []
    for _ in range(steps):
        a = int(rng.choice(2, p=mu))
        s2 = int(rng.choice(n_states, p=P[s, a]))
        terminated = s2 == n_states - 1 and rng.random() < 0.5
        truncated = not terminated and rng.random() < 0.05
        rows.append((eye[s], a, np.float32(R[s, a]), eye[s2], terminated, truncated, np.float32(mu[a])))
        s = int(rng.integers(n_states)) if terminated or truncated else s2
    return tuple(np.asarray(c) for c in zip(*rows))


def greedy64(q):
    top = (q == q.max()).astype(np.float64)
    return top / top.sum()


def gtd_reference(w, b, lamdas, gammas, off, xs, cs, x_nexts, rhos, terminated, truncated):
    """Linear GTD(λ) (on-policy demons: TD(λ)) with LMS, one demon and one step at a time in
    float64: ``z ← ρ(γ_t λ z + x)``, ``w ← w + α δ z − α γ'(1−λ)(zᵀu) x'``,
    ``u ← u + β(δ z − (uᵀx) x)``. Returns the weights and biases after every step."""
    n, dim = w.shape
    w, b = w.astype(np.float64), b.astype(np.float64)
    z_w, z_b, u_w, u_b, gamma_t = np.zeros((n, dim)), np.zeros(n), np.zeros((n, dim)), np.zeros(n), np.zeros(n)
    out = []
    for x, c, x2, rho, term, trunc in zip(xs, cs, x_nexts, rhos, terminated, truncated):
        x, x2 = x.astype(np.float64), x2.astype(np.float64)
        for i in range(n):
            g = 0.0 if term else gammas[i]
            delta = c[i] + g * (w[i] @ x2 + b[i]) - (w[i] @ x + b[i])
            z_w[i] = rho[i] * (gamma_t[i] * lamdas[i] * z_w[i] + x)
            z_b[i] = rho[i] * (gamma_t[i] * lamdas[i] * z_b[i] + 1.0)
            u_old_w, u_old_b = u_w[i].copy(), u_b[i]
            w[i] += ALPHA * delta * z_w[i]
            b[i] += ALPHA * delta * z_b[i]
            if off[i]:
                zu = z_w[i] @ u_old_w + z_b[i] * u_old_b
                w[i] -= ALPHA * g * (1.0 - lamdas[i]) * zu * x2
                b[i] -= ALPHA * g * (1.0 - lamdas[i]) * zu
                uh = u_old_w @ x + u_old_b
                u_w[i] = u_old_w + BETA * (delta * z_w[i] - uh * x)
                u_b[i] = u_old_b + BETA * (delta * z_b[i] - uh)
        gamma_t = np.asarray(gammas, np.float64) * (not (term or trunc))
        if term or trunc:
            z_w[:], z_b[:] = 0.0, 0.0
        out.append((w.copy(), b.copy()))
    return out


def test_greedy_in_ratios_and_gtd_updates_match_the_float64_reference():
    """π(a|S_t) is the greedy policy (ties split evenly) on the control demon's values at S_t
    before the update; ρ = π(A_t|S_t)/μ(A_t|S_t) and the prediction demons' GTD(λ) weights
    follow, step by step, the float64 reference fed with those values."""
    data = stream()
    horde_demons = [
        about("angle", policies.greedy_in("balance")),
        about("angle0", policies.greedy_in("balance"), lamda=0.0, gamma=0.5, index=2),
        about("right", policies.fixed([0.2, 0.8]), index=1),
        about("on", None, index=1),
    ]
    hl = horde.HordeLearner(horde_demons, hidden_sizes=(), step_size=ALPHA, sparsity=0.0, secondary_step_size=BETA)
    learner = horde.ControlLearner(
        [balance()], horde=hl, hidden_sizes=(), sparsity=0.0, normalize_observations=False, scale_cumulants=False
    )
    state = learner.init_traced(4, jax.random.key(0), 2)
    # Zero action values at first: the greedy policy is a tie until the control demon learns.
    trunk, heads = state.params
    state = state._replace(params=(trunk, HeadParams(jnp.zeros_like(heads.weights), jnp.zeros_like(heads.biases))))
    rng = np.random.default_rng(1)
    w0 = rng.uniform(-1, 1, size=(4, 4)).astype(np.float32)
    state = state._replace(
        horde=state.horde._replace(
            core=state.horde.core._replace(head_params=HeadParams(jnp.asarray(w0), jnp.full((4,), 0.2)))
        )
    )

    def body(s, t):
        q = learner.action_values_traced(s, t[0])[0]
        r, ev = learner.evaluate_and_update_traced(s, *t)
        hp = r.state.horde.core.head_params
        return r.state, (q, ev.rhos, ev.cumulants, hp.weights, hp.biases)

    _, (q, rhos, cs, ws, bs) = jax.jit(lambda s, xs: jax.lax.scan(body, s, xs))(
        state, tuple(jnp.asarray(c) for c in data)
    )
    q, rhos = np.asarray(q, np.float64), np.asarray(rhos, np.float64)
    obs, actions, _, next_obs, terminated, truncated, mu = data

    pi = np.stack([greedy64(qt)[a] for qt, a in zip(q, actions)])
    want = np.stack([pi / mu, pi / mu, np.where(actions == 1, 0.8, 0.2) / mu, np.ones_like(mu)], axis=1)
    np.testing.assert_allclose(rhos[:, 1:], want, rtol=1e-6)
    assert (pi == 0.5).any() and (pi == 1.0).any() and (pi == 0.0).any()  # ties, greedy and not

    ref = gtd_reference(
        w0,
        np.full(4, 0.2),
        np.asarray([0.6, 0.0, 0.6, 0.6]),
        np.asarray([0.8, 0.5, 0.8, 0.8]),
        np.asarray([True, True, True, False]),
        obs,
        np.asarray(cs)[:, 1:],
        next_obs,
        want,
        terminated,
        truncated,
    )
    for t, (w, b) in enumerate(ref):
        np.testing.assert_allclose(np.asarray(ws[t]), w, rtol=1e-4, atol=1e-5, err_msg=f"step {t}")
        np.testing.assert_allclose(np.asarray(bs[t]), b, rtol=1e-4, atol=1e-5, err_msg=f"step {t}")


# ---------------------------------------------------------------------------------------------
# The acting runners


def walk():
    # Deterministic moves and start: the Python and JAX forms have the same dynamics.
    return gym.make("horde/RandomWalk-v0", n_states=7)


def acting_learner():
    right = [about(f"right@{g}", policies.greedy_in("balance"), gamma=g, index=6) for g in (0.5, 0.9)]
    twin = [about("right@0.9 on", None, gamma=0.9, index=6)]
    hl = horde.HordeLearner(right + twin, hidden_sizes=(8,))
    return horde.ControlLearner([balance()], horde=hl, hidden_sizes=(8,))


POLICY = horde.EpsilonGreedy("balance", epsilon=0.1, anneal_steps=60)


def test_run_and_run_jax_learn_greedy_in_demons_alike():
    """``horde.run``'s compiled step (the ``ActingDaemon``'s too) and ``run_jax`` both hand the
    control demon's greedy policy to the Horde: the same predictions of the greedy_in demons,
    which differ from their on-policy twin's (their ratios are not all 1)."""
    python = horde.run(acting_learner(), walk(), steps=200, seed=2, policy=POLICY, chunk_size=64)
    compiled = horde.run_jax(acting_learner(), walk(), steps=200, seed=2, policy=POLICY)
    np.testing.assert_array_equal(python.rewards, compiled.rewards)
    np.testing.assert_allclose(python.predictions, compiled.predictions, rtol=1e-5, atol=1e-6)
    assert not np.allclose(python.predictions[0, 50:, 2], python.predictions[0, 50:, 3])


# ---------------------------------------------------------------------------------------------
# Refusals


def test_a_greedy_in_policy_must_name_a_control_demon_of_the_learner():
    with pytest.raises(ValueError, match=r"demon 'a' has target policy greedy_in\('nope'\), but 'nope' is no demon"):
        horde.ControlLearner([balance()], horde=horde.HordeLearner([about("a", policies.greedy_in("nope"))]))
    with pytest.raises(ValueError, match=r"'b' is a prediction demon, not a control demon.*\['balance'\]"):
        horde.ControlLearner(
            [balance()], horde=horde.HordeLearner([about("a", policies.greedy_in("b")), about("b", None)])
        )


def test_a_greedy_in_demon_without_a_control_learner_is_refused():
    hl = horde.HordeLearner([about("a", policies.greedy_in("balance"))], hidden_sizes=(4,))
    message = r"demon 'a' has target policy greedy_in\('balance'\).*horde.ControlLearner.*got no control learner"
    with pytest.raises(ValueError, match=message):
        horde.run(hl, walk(), steps=10, policy=horde.FixedProbabilities([0.5, 0.5]))
    with pytest.raises(ValueError, match=message):
        horde.run_jax(hl, walk(), steps=10)
    with pytest.raises(ValueError, match=message):
        horde.Daemon(hl, hl.init(7, jax.random.key(0)))
    with pytest.raises(ValueError, match="need the control demon's action values"):
        hl.demons.evaluate(jnp.zeros(7), 0, 0.0, jnp.zeros(7), 0.5)
    with pytest.raises(TypeError, match="defined on control demon 'balance'"):
        policies.greedy_in("balance")(jnp.zeros(7))


def test_greedy_in_round_trips_through_toml_and_sits_beside_fixed_policies():
    ds = demons.DemonSet([balance(), about("a", policies.greedy_in("balance")), about("f", policies.fixed([0.1, 0.9]))])
    text = ds.to_toml()
    assert 'target_policy = { kind = "greedy_in", demon = "balance" }' in text
    assert demons.DemonSet.from_toml(text) == ds
    assert ds.validate(7, 2).n_actions == 2


CONFIG = """
[env]
id = "horde/RandomWalk-v0"
kwargs = { n_states = 7 }
[policy]
kind = "epsilon_greedy"
demon = "balance"
[[demons]]
name = "balance"
cumulant = { kind = "reward" }
discount = { kind = "constant", gamma = 0.9 }
target_policy = { kind = "greedy" }
[[demons]]
name = "right"
cumulant = { kind = "observation", index = 6 }
discount = { kind = "constant", gamma = 0.9 }
target_policy = { kind = "greedy_in", demon = "DEMON" }
"""


def test_run_configs_check_greedy_in_references():
    from horde.cli.config import ConfigError, build_learner, validate_config

    learner = build_learner(validate_config(tomllib.loads(CONFIG.replace("DEMON", "balance"))))
    assert isinstance(learner, horde.ControlLearner)
    assert learner.horde is not None and learner.horde.demons["right"].target_policy == policies.greedy_in("balance")
    with pytest.raises(ConfigError, match=r"config demons: demon 'right' .*greedy_in\('balanse'\).*\['balance'\]"):
        validate_config(tomllib.loads(CONFIG.replace("DEMON", "balanse")))
