"""Demon sets and transitions shared by the tests of the ``demons`` package."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from demons import Demon, cumulants, discounts, policies

OBS_DIM = 5
N_ACTIONS = 3

SUM_PRODUCT = cumulants.function(lambda o, a, r, n: jnp.sum(o * n) + r, "sum_product")
TANH0 = cumulants.function(lambda o, a, r, n: jnp.tanh(n[0]), "tanh0")
SIGMOID1 = discounts.function(lambda n: jax.nn.sigmoid(n[1]), "sigmoid1")
SOFTMAX = policies.function(lambda o: jax.nn.softmax(o[:N_ACTIONS]), "softmax", N_ACTIONS)


def mixed_demons(copies=1, seed=0):
    """Every kind, on- and off-policy, in shuffled order."""
    out = []
    for k in range(copies):
        s = f"#{k}"
        out += [
            Demon("obs0" + s, cumulants.observation(0), discounts.timescale(10), lamda=0.9),
            Demon("obs4" + s, cumulants.observation(4), discounts.constant(0.5)),
            Demon("obs2_until" + s, cumulants.observation(2), discounts.until(3, 0.5, absolute=True, gamma=0.9)),
            Demon("reward" + s, cumulants.reward(), discounts.timescale(100), z=-1.0),
            Demon("steps" + s, cumulants.constant(1), discounts.until(1, 0.0, above=False)),
            Demon("const" + s, cumulants.constant(-2.5), discounts.constant(0.0)),
            Demon("th_above" + s, cumulants.threshold(1, 0.2), discounts.timescale(2)),
            Demon("th_below_abs" + s, cumulants.threshold(3, 0.4, above=False, absolute=True), discounts.constant(0.8)),
            Demon("act0" + s, cumulants.action_indicator(0), discounts.timescale(5)),
            Demon("act2" + s, cumulants.action_indicator(2), SIGMOID1),
            Demon("fn_a" + s, SUM_PRODUCT, discounts.constant(0.3)),
            Demon("fn_b" + s, TANH0, discounts.until(0, 0.8), lamda=0.5),
            Demon("fn_b2" + s, TANH0, SIGMOID1),
            Demon(
                "off_right" + s,
                cumulants.observation(1),
                discounts.timescale(10),
                target_policy=policies.deterministic(2, N_ACTIONS),
            ),
            Demon(
                "off_uniform" + s,
                cumulants.reward(),
                discounts.until(4, 0.1),
                target_policy=policies.uniform(N_ACTIONS),
            ),
            Demon(
                "off_mix" + s,
                cumulants.threshold(0, 0.0),
                discounts.constant(0.95),
                target_policy=policies.fixed([0.2, 0.5, 0.3]),
            ),
            Demon("off_fn" + s, cumulants.action_indicator(1), discounts.timescale(3), target_policy=SOFTMAX),
            Demon("off_fn2" + s, SUM_PRODUCT, SIGMOID1, target_policy=SOFTMAX),
        ]
    order = np.random.default_rng(seed).permutation(len(out))
    return [out[i] for i in order]


def random_transitions(n, seed=1):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    next_obs = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    actions = rng.integers(0, N_ACTIONS, size=n).astype(np.int32)
    rewards = rng.normal(size=n).astype(np.float32)
    mus = rng.uniform(0.1, 1.0, size=n).astype(np.float32)
    return obs, actions, rewards, next_obs, mus
