"""Tests for the `demons` package: GVF question specs and their vectorized evaluation."""

from __future__ import annotations

import math
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from demon_cases import N_ACTIONS, OBS_DIM, SIGMOID1, SOFTMAX, TANH0, mixed_demons, random_transitions
from hypothesis import given, settings
from hypothesis import strategies as st

import demons
from demons import Demon, DemonSet, cumulants, discounts, policies

# A hand-made transition: (S_t, A_t, R_{t+1}, S_{t+1}).
OBS = np.array([0.5, -1.0, 2.0, 0.0, 3.0], np.float32)
NEXT_OBS = np.array([1.5, -0.25, -0.3, 4.0, 0.1], np.float32)
ACTION = 2
REWARD = -1.5


def _on_demon(name, cumulant, discount=None, **kw):
    return Demon(name, cumulant, discount or discounts.constant(0.0), **kw)


# ----------------------------------------------------------------------------
# Builders: exact values on a hand-made transition.


class TestCumulantBuilders:
    def _c(self, spec):
        ds = DemonSet([_on_demon("d", spec)])
        batched = float(ds.evaluate(OBS, ACTION, REWARD, NEXT_OBS).cumulants[0])
        single = float(spec(OBS, ACTION, REWARD, NEXT_OBS))
        assert batched == single
        return batched

    def test_observation_reads_next_observation(self):
        assert self._c(cumulants.observation(0)) == 1.5
        assert self._c(cumulants.observation(3)) == 4.0

    def test_reward_and_constant(self):
        assert self._c(cumulants.reward()) == -1.5
        assert self._c(cumulants.constant(2.5)) == 2.5
        assert self._c(cumulants.constant(1)) == 1.0

    def test_threshold(self):
        assert self._c(cumulants.threshold(0, 1.0)) == 1.0  # 1.5 > 1
        assert self._c(cumulants.threshold(0, 1.5)) == 0.0  # strict
        assert self._c(cumulants.threshold(2, 0.2)) == 0.0  # -0.3 > 0.2 ? no
        assert self._c(cumulants.threshold(2, 0.2, absolute=True)) == 1.0  # |-0.3| > 0.2
        assert self._c(cumulants.threshold(2, 0.0, above=False)) == 1.0  # -0.3 < 0
        assert self._c(cumulants.threshold(2, 0.2, above=False, absolute=True)) == 0.0
        assert self._c(cumulants.threshold(4, 0.2, above=False, absolute=True)) == 1.0

    def test_action_indicator(self):
        assert self._c(cumulants.action_indicator(2)) == 1.0
        assert self._c(cumulants.action_indicator(0)) == 0.0

    def test_function(self):
        spec = cumulants.function(lambda o, a, r, n: o[0] * n[3] + r + a, "mix")
        assert self._c(spec) == 0.5 * 4.0 - 1.5 + 2

    def test_specs_are_frozen_and_hashable(self):
        spec = cumulants.threshold(1, 0.5)
        with pytest.raises(AttributeError):
            spec.index = 3
        assert spec == cumulants.threshold(1, 0.5) and hash(spec) == hash(cumulants.threshold(1, 0.5))


class TestDiscountBuilders:
    def _g(self, spec):
        ds = DemonSet([_on_demon("d", cumulants.constant(1.0), spec)])
        batched = float(ds.evaluate(OBS, ACTION, REWARD, NEXT_OBS).discounts[0])
        assert batched == float(spec(NEXT_OBS))
        return batched

    def test_constant(self):
        assert self._g(discounts.constant(0.75)) == 0.75

    def test_timescale(self):
        assert discounts.timescale(10).gamma == 0.9
        assert discounts.timescale(1).gamma == 0.0
        assert discounts.timescale(100).gamma == 0.99
        assert self._g(discounts.timescale(10)) == np.float32(0.9)
        assert self._g(discounts.timescale(4)) == 0.75

    def test_until_is_zero_exactly_where_predicate_holds(self):
        # NEXT_OBS[2] = -0.3: |x| > 0.1745 holds -> 0.
        assert self._g(discounts.until(2, 0.1745, absolute=True)) == 0.0
        assert self._g(discounts.until(2, 0.5, absolute=True)) == 1.0
        assert self._g(discounts.until(2, 0.5, absolute=True, gamma=0.9)) == np.float32(0.9)
        assert self._g(discounts.until(2, 0.0, above=False, gamma=0.5)) == 0.0
        assert self._g(discounts.until(3, 4.0, gamma=0.5)) == 0.5  # 4.0 > 4.0 is False (strict)

    def test_until_over_a_sweep(self):
        xs = np.linspace(-1, 1, 41).astype(np.float32)
        spec = discounts.until(0, 0.5, absolute=True, gamma=0.8)
        ds = DemonSet([_on_demon("d", cumulants.constant(1.0), spec)])
        next_obs = np.zeros((41, 1), np.float32)
        next_obs[:, 0] = xs
        g = np.asarray(ds.evaluate_batch(next_obs, np.zeros(41, np.int32), np.zeros(41), next_obs).discounts[:, 0])
        np.testing.assert_array_equal(g, np.where(np.abs(xs) > 0.5, 0.0, np.float32(0.8)))

    def test_function(self):
        assert self._g(discounts.function(lambda n: 0.5 * (n[0] > 1.0), "half")) == 0.5


class TestPolicies:
    def test_fixed_and_helpers(self):
        assert policies.fixed([0, 1]).probabilities == (0.0, 1.0)
        assert policies.deterministic(1, 2) == policies.fixed((0.0, 1.0))
        assert policies.uniform(4).probabilities == (0.25,) * 4
        np.testing.assert_array_equal(policies.fixed([0.25, 0.75])(OBS), [0.25, 0.75])

    def test_always_right_rho(self):
        ds = DemonSet(
            [
                _on_demon("on", cumulants.reward()),
                _on_demon("right", cumulants.reward(), target_policy=policies.fixed((0, 1))),
                _on_demon("half", cumulants.reward(), target_policy=policies.fixed((0.5, 0.5))),
            ]
        )
        mu_right, mu_left = 0.25, 0.75
        right = ds.evaluate(OBS, 1, 0.0, NEXT_OBS, mu_right).rhos
        left = ds.evaluate(OBS, 0, 0.0, NEXT_OBS, mu_left).rhos
        np.testing.assert_allclose(right, [1.0, 1 / mu_right, 0.5 / mu_right], rtol=1e-6)
        np.testing.assert_allclose(left, [1.0, 0.0, 0.5 / mu_left], rtol=1e-6)

    def test_zero_behaviour_prob_does_not_give_inf(self):
        ds = DemonSet([_on_demon("right", cumulants.reward(), target_policy=policies.fixed((0, 1)))])
        rho = ds.evaluate(OBS, 1, 0.0, NEXT_OBS, 0.0).rhos
        assert np.all(np.isfinite(rho))
        np.testing.assert_allclose(rho, [1.0 / demons.MIN_BEHAVIOUR_PROB], rtol=1e-5)
        assert float(ds.evaluate(OBS, 0, 0.0, NEXT_OBS, 0.0).rhos[0]) == 0.0

    def test_function_policy(self):
        pol = policies.function(lambda o: jax.nn.softmax(o[:2]), "softmax", 2)
        ds = DemonSet([_on_demon("p", cumulants.reward(), target_policy=pol)])
        expected = np.exp(OBS[1]) / (np.exp(OBS[0]) + np.exp(OBS[1])) / 0.5
        np.testing.assert_allclose(ds.evaluate(OBS, 1, 0.0, NEXT_OBS, 0.5).rhos, [expected], rtol=1e-5)


# ----------------------------------------------------------------------------
# Demon and standard sets.


class TestDemon:
    def test_fields_and_properties(self):
        d = Demon("x", cumulants.reward(), discounts.timescale(10), lamda=0.9, z=-1)
        assert d.lamda == 0.9 and d.z == -1.0 and not d.is_off_policy
        assert d.constant_gamma == 0.9
        off = Demon("y", cumulants.reward(), discounts.until(0, 1.0), target_policy=policies.fixed([1]))
        assert off.is_off_policy and off.constant_gamma is None
        with pytest.raises(AttributeError):
            d.lamda = 0.5

    def test_nexting(self):
        ds = DemonSet(demons.nexting(4, (1, 10)))
        assert len(ds) == 8
        assert ds.names == (
            "obs[0]@1",
            "obs[0]@10",
            "obs[1]@1",
            "obs[1]@10",
            "obs[2]@1",
            "obs[2]@10",
            "obs[3]@1",
            "obs[3]@10",
        )
        np.testing.assert_array_equal(ds.constant_gammas, np.float32([0.0, 0.9] * 4))
        assert [d.cumulant for d in ds] == [cumulants.observation(i) for i in range(4) for _ in (1, 10)]
        assert all(d.discount.kind == "timescale" for d in ds)

    def test_nexting_with_names_and_lamda(self):
        names = ["x", "x_dot", "pole_angle", "pole_velocity"]
        ds = DemonSet(demons.nexting(4, timescales=(10,), lamda=0.5, names=names))
        assert ds.names == ("x@10", "x_dot@10", "pole_angle@10", "pole_velocity@10")
        np.testing.assert_array_equal(ds.lamdas, np.float32([0.5] * 4))
        np.testing.assert_allclose(ds.gamma_lamdas, [0.45] * 4, rtol=1e-6)
        with pytest.raises(ValueError, match=r"names must have one entry per observation component"):
            demons.nexting(4, names=["a", "b"])
        with pytest.raises(ValueError, match=r"timescales for nexting must be finite numbers >= 1"):
            demons.nexting(4, timescales=(0.5,))

    def test_reward_demons(self):
        ds = DemonSet(demons.reward_demons())
        assert ds.names == ("reward@1", "reward@10", "reward@100")
        np.testing.assert_allclose(ds.constant_gammas, [0.0, 0.9, 0.99], rtol=1e-7)
        ev = ds.evaluate(OBS, 0, 3.0, NEXT_OBS)
        np.testing.assert_array_equal(ev.cumulants, [3.0, 3.0, 3.0])


# ----------------------------------------------------------------------------
# Bad inputs.


class TestValidation:
    def test_gamma_out_of_range_names_demon(self):
        with pytest.raises(ValueError, match=r"gamma for demon 'pole_angle@0\.9' must be in \[0, 1\], got 1\.3"):
            Demon("pole_angle@0.9", cumulants.observation(2), discounts.constant(1.3))
        with pytest.raises(ValueError, match=r"gamma for demon 'u' must be in \[0, 1\], got -0\.5"):
            Demon("u", cumulants.constant(1), discounts.until(0, 1.0, gamma=-0.5))
        with pytest.raises(ValueError, match=r"timescale steps for demon 't' must be .* >= 1, got 0\.5"):
            Demon("t", cumulants.constant(1), discounts.timescale(0.5))

    def test_lamda_out_of_range(self):
        with pytest.raises(ValueError, match=r"lamda for demon 'x' must be in \[0, 1\], got -0\.1"):
            Demon("x", cumulants.reward(), discounts.constant(0.5), lamda=-0.1)

    def test_other_demon_fields(self):
        with pytest.raises(ValueError, match=r"z \(terminal outcome\) for demon 'x' must be finite, got inf"):
            Demon("x", cumulants.reward(), discounts.constant(0.5), z=math.inf)
        with pytest.raises(ValueError, match=r"non-empty"):
            Demon("", cumulants.reward(), discounts.constant(0.5))
        with pytest.raises(TypeError, match=r"cumulant for demon 'x' must be a spec"):
            Demon("x", lambda *a: 1.0, discounts.constant(0.5))
        with pytest.raises(ValueError, match=r"observation index for demon 'x' must be >= 0, got -1"):
            Demon("x", cumulants.observation(-1), discounts.constant(0.5))
        with pytest.raises(TypeError, match=r"cumulants\.observation: index must be an integer, got 1\.5"):
            cumulants.observation(1.5)

    def test_probabilities_not_summing_to_one(self):
        with pytest.raises(ValueError, match=r"demon 'p'.*\[0\.3, 0\.3\].*sum 0\.6"):
            Demon("p", cumulants.reward(), discounts.constant(0.5), target_policy=policies.fixed([0.3, 0.3]))
        with pytest.raises(ValueError, match=r"demon 'n'.*non-negative.*\[-0\.5, 1\.5\]"):
            Demon("n", cumulants.reward(), discounts.constant(0.5), target_policy=policies.fixed([-0.5, 1.5]))
        # Within tolerance is fine.
        Demon("ok", cumulants.reward(), discounts.constant(0.5), target_policy=policies.fixed([0.5, 0.5 + 5e-7]))

    def test_duplicate_names(self):
        d = Demon("a", cumulants.reward(), discounts.constant(0.5))
        with pytest.raises(ValueError, match=r"duplicate demon name 'a' \(positions 0 and 2\)"):
            DemonSet([d, Demon("b", cumulants.reward(), discounts.constant(0.5)), d])

    def test_non_demon_entry(self):
        with pytest.raises(TypeError, match=r"position 0"):
            DemonSet([cumulants.reward()])

    def test_index_out_of_range_at_validate(self):
        ds = DemonSet(
            [
                Demon("ok", cumulants.observation(3), discounts.constant(0.5)),
                Demon("far", cumulants.threshold(7, 0.0), discounts.constant(0.5)),
            ]
        )
        with pytest.raises(ValueError, match=r"demon 'far'.*index 7.*observation_dim 4"):
            ds.validate(observation_dim=4)
        assert ds.validate(observation_dim=8) is ds
        until = DemonSet([Demon("u", cumulants.constant(1), discounts.until(5, 0.1))])
        with pytest.raises(ValueError, match=r"discount of demon 'u' \(until\).*index 5"):
            until.validate(observation_dim=5)

    def test_evaluate_with_short_observation_names_demon(self):
        ds = DemonSet([Demon("far", cumulants.observation(7), discounts.constant(0.5))])
        with pytest.raises(ValueError, match=r"demon 'far'.*index 7.*observation_dim 5"):
            ds.evaluate(OBS, 0, 0.0, NEXT_OBS)

    def test_wrong_number_of_actions(self):
        ds = DemonSet(
            [Demon("right", cumulants.reward(), discounts.constant(0.5), target_policy=policies.fixed([0, 1]))]
        )
        assert ds.n_actions == 2
        ds.validate(observation_dim=4, n_actions=2)
        with pytest.raises(ValueError, match=r"target policy of demon 'right' has 2 actions, expected n_actions=3"):
            ds.validate(observation_dim=4, n_actions=3)
        ind = DemonSet([Demon("a5", cumulants.action_indicator(5), discounts.constant(0.5))])
        with pytest.raises(ValueError, match=r"demon 'a5'.*action 5.*n_actions 2"):
            ind.validate(observation_dim=4, n_actions=2)

    def test_policies_disagreeing_on_n_actions(self):
        with pytest.raises(ValueError, match=r"demon 'three' has 3 actions, but demon 'two' has 2"):
            DemonSet(
                [
                    Demon("two", cumulants.reward(), discounts.constant(0.5), target_policy=policies.fixed([0, 1])),
                    Demon("three", cumulants.reward(), discounts.constant(0.5), target_policy=policies.uniform(3)),
                ]
            )

    def test_function_output_shape_checked(self):
        ds = DemonSet([Demon("v", cumulants.function(lambda o, a, r, n: n, "vec"), discounts.constant(0.5))])
        with pytest.raises(ValueError, match=r"cumulant function 'vec' must return a scalar"):
            ds.evaluate(OBS, 0, 0.0, NEXT_OBS)


# ----------------------------------------------------------------------------
# Vectorized evaluation against a slow, obviously-correct reference.


def _predicate(x, threshold, above, absolute):
    x = np.float32(x)
    y = abs(x) if absolute else x
    return y > np.float32(threshold) if above else y < np.float32(threshold)


def reference_evaluate(ds, obs, action, reward, next_obs, mu):
    """One demon at a time, each spec evaluated on its own, in NumPy/Python."""
    obs = np.asarray(obs, np.float32)
    next_obs = np.asarray(next_obs, np.float32)
    action = int(action)
    cs, gs, rs = [], [], []
    for d in ds:
        c = d.cumulant
        if c.kind == "observation":
            cs.append(next_obs[c.index])
        elif c.kind == "reward":
            cs.append(reward)
        elif c.kind == "constant":
            cs.append(c.value)
        elif c.kind == "threshold":
            cs.append(1.0 if _predicate(next_obs[c.index], c.threshold, c.above, c.absolute) else 0.0)
        elif c.kind == "action_indicator":
            cs.append(1.0 if action == c.action else 0.0)
        else:
            cs.append(float(c.fn(obs, action, reward, next_obs)))
        g = d.discount
        if g.kind == "constant":
            gs.append(g.gamma)
        elif g.kind == "timescale":
            gs.append(1.0 - 1.0 / g.steps)
        elif g.kind == "until":
            gs.append(0.0 if _predicate(next_obs[g.index], g.threshold, g.above, g.absolute) else g.gamma)
        else:
            gs.append(float(g.fn(next_obs)))
        p = d.target_policy
        if p is None:
            rs.append(1.0)
        elif p.kind == "fixed":
            rs.append(p.probabilities[action] / mu)
        else:
            rs.append(float(np.asarray(p.fn(obs))[action]) / mu)
    return tuple(np.asarray(v, np.float32) for v in (cs, gs, rs))


def reference_batch(ds, transitions):
    obs, actions, rewards, next_obs, mus = transitions
    refs = [reference_evaluate(ds, *(x[t] for x in transitions)) for t in range(len(actions))]
    return tuple(np.stack([r[k] for r in refs]) for k in range(3))


def assert_evaluation_close(ev, ref):
    for got, want, field in zip(ev, ref, ("cumulants", "discounts", "rhos")):
        assert got.dtype == jnp.float32, field
        np.testing.assert_allclose(np.asarray(got), want, rtol=2e-6, atol=1e-6, err_msg=field)


@pytest.fixture(scope="module")
def mixed_set():
    return DemonSet(mixed_demons()).validate(OBS_DIM, N_ACTIONS)


@pytest.fixture(scope="module")
def transitions():
    return random_transitions(16)


class TestEvaluate:
    def test_matches_reference_eagerly(self, mixed_set, transitions):
        for t in range(4):
            args = [x[t] for x in transitions]
            ev = mixed_set.evaluate(*args)
            assert isinstance(ev, demons.Evaluation)
            assert ev.cumulants.shape == ev.discounts.shape == ev.rhos.shape == (len(mixed_set),)
            assert_evaluation_close(ev, reference_evaluate(mixed_set, *args))

    def test_matches_reference_under_jit_and_vmap(self, mixed_set, transitions):
        ref = reference_batch(mixed_set, transitions)
        assert_evaluation_close(jax.jit(jax.vmap(mixed_set.evaluate))(*transitions), ref)
        assert_evaluation_close(jax.jit(mixed_set.evaluate_batch)(*transitions), ref)
        single = jax.jit(mixed_set.evaluate)
        for t in (0, 7, 15):
            ev = single(*(x[t] for x in transitions))
            assert_evaluation_close(ev, tuple(r[t] for r in ref))

    def test_under_scan(self, mixed_set, transitions):
        def step(carry, xs):
            ev = mixed_set.evaluate(*xs)
            return carry + ev.cumulants, ev

        total, evs = jax.lax.scan(step, jnp.zeros(len(mixed_set)), transitions)
        ref = reference_batch(mixed_set, transitions)
        assert_evaluation_close(evs, ref)
        np.testing.assert_allclose(total, ref[0].sum(0), rtol=1e-5, atol=1e-5)

    def test_jit_with_demon_set_as_static_argument(self, mixed_set, transitions):
        @jax.jit
        def f(ds_args):
            return mixed_set.evaluate(*ds_args)

        g = jax.jit(lambda ds, *a: ds.evaluate(*a), static_argnums=0)
        args = [x[3] for x in transitions]
        ref = reference_evaluate(mixed_set, *args)
        assert_evaluation_close(f(args), ref)
        assert_evaluation_close(g(DemonSet(mixed_demons()), *args), ref)

    def test_behaviour_prob_defaults_to_one(self, mixed_set, transitions):
        obs, a, r, nobs, _ = (x[0] for x in transitions)
        assert_evaluation_close(
            mixed_set.evaluate(obs, a, r, nobs), reference_evaluate(mixed_set, obs, a, r, nobs, 1.0)
        )
        batch = mixed_set.evaluate_batch(*transitions[:4])
        assert batch.rhos.shape == (16, len(mixed_set))

    def test_each_distinct_function_traced_once(self, transitions):
        calls = {"c": 0, "g": 0, "p": 0}

        def c_fn(o, a, r, n):
            calls["c"] += 1
            return n[0] + r

        def g_fn(n):
            calls["g"] += 1
            return jax.nn.sigmoid(n[0])

        def p_fn(o):
            calls["p"] += 1
            return jnp.ones(2) / 2

        c, g, p = cumulants.function(c_fn, "c"), discounts.function(g_fn, "g"), policies.function(p_fn, "p", 2)
        ds = DemonSet([Demon(f"d{i}", c, g, target_policy=p) for i in range(50)])
        jax.make_jaxpr(ds.evaluate)(*(x[0] for x in transitions))
        assert calls == {"c": 1, "g": 1, "p": 1}

    def test_demon_order_and_lookup(self, mixed_set):
        assert mixed_set.names == tuple(d.name for d in mixed_set)
        name = mixed_set.names[5]
        assert mixed_set[name] is mixed_set[5]
        assert mixed_set.index(name) == 5 and name in mixed_set
        assert isinstance(mixed_set[2:6], DemonSet) and len(mixed_set[2:6]) == 4
        with pytest.raises(KeyError, match="no demon named 'nope'"):
            mixed_set["nope"]

    def test_static_arrays(self, mixed_set):
        n = len(mixed_set)
        assert mixed_set.n_demons == n == 18
        for arr in (mixed_set.lamdas, mixed_set.z, mixed_set.constant_gammas, mixed_set.gamma_lamdas):
            assert arr.shape == (n,) and arr.dtype == np.float32
        assert mixed_set.is_off_policy.dtype == np.bool_
        by = {d.name: i for i, d in enumerate(mixed_set)}
        assert mixed_set.lamdas[by["obs0#0"]] == np.float32(0.9)
        assert mixed_set.gamma_lamdas[by["obs0#0"]] == np.float32(0.9) * np.float32(0.9)
        assert mixed_set.z[by["reward#0"]] == -1.0
        assert np.isnan(mixed_set.constant_gammas[by["steps#0"]])
        assert np.isnan(mixed_set.constant_gammas[by["fn_b2#0"]])
        assert mixed_set.constant_gammas[by["th_above#0"]] == 0.5
        assert list(np.flatnonzero(mixed_set.is_off_policy)) == sorted(
            by[k] for k in ("off_right#0", "off_uniform#0", "off_mix#0", "off_fn#0", "off_fn2#0")
        )
        with pytest.raises(ValueError):
            mixed_set.lamdas[0] = 1.0

    def test_set_is_immutable_hashable_picklable(self, mixed_set):
        with pytest.raises(AttributeError):
            mixed_set.foo = 1
        other = DemonSet(mixed_demons())
        assert other == mixed_set and hash(other) == hash(mixed_set)
        assert DemonSet(demons.nexting(2)) == pickle.loads(pickle.dumps(DemonSet(demons.nexting(2))))
        combined = DemonSet(demons.nexting(2, (10,))) + DemonSet(demons.reward_demons((10,)))
        assert combined.names == ("obs[0]@10", "obs[1]@10", "reward@10")

    def test_empty_set(self):
        ev = DemonSet([]).evaluate(OBS, 0, 0.0, NEXT_OBS)
        assert all(x.shape == (0,) for x in ev)


def scalar_form_evaluate(ds, obs, action, reward, next_obs, mu=1.0):
    """Each demon through its specs' scalar forms (``spec(...)``), one demon at a time."""
    floor = demons.MIN_BEHAVIOUR_PROB
    cs = [d.cumulant(obs, action, reward, next_obs) for d in ds]
    gs = [d.discount(next_obs) for d in ds]
    rs = [
        jnp.float32(1.0)
        if d.target_policy is None
        else d.target_policy(obs)[action] / jnp.maximum(jnp.float32(mu), floor)
        for d in ds
    ]
    return tuple(np.asarray(jnp.stack(x)) if x else np.zeros((0,), np.float32) for x in (cs, gs, rs))


class TestBatchedFormMatchesScalarForm:
    """The batched form of every kind against the scalar ``__call__`` of each demon's specs."""

    def test_cumulants_and_discounts_bit_identical_rhos_within_one_ulp(self):
        ds = DemonSet(mixed_demons(copies=3, seed=2)).validate(OBS_DIM, N_ACTIONS)
        transitions = random_transitions(12, seed=9)
        for t in range(12):
            args = [x[t] for x in transitions]
            ev = ds.evaluate(*args)
            cs, gs, rs = scalar_form_evaluate(ds, *args)
            np.testing.assert_array_equal(np.asarray(ev.cumulants).view(np.uint32), cs.view(np.uint32))
            np.testing.assert_array_equal(np.asarray(ev.discounts).view(np.uint32), gs.view(np.uint32))
            # A (k,) / scalar division is vectorised by XLA and may round differently from the
            # scalar division by one unit in the last place; the probabilities are exact.
            np.testing.assert_array_max_ulp(np.asarray(ev.rhos), rs, maxulp=1)

    def test_under_jit(self, mixed_set, transitions):
        batched = jax.jit(jax.vmap(mixed_set.evaluate))(*transitions)
        for t in range(len(transitions[1])):
            scalar = scalar_form_evaluate(mixed_set, *(x[t] for x in transitions))
            assert_evaluation_close(tuple(x[t] for x in batched), scalar)


# ----------------------------------------------------------------------------
# The traced program must not grow with the number of demons of a kind.


def _count_eqns(jaxpr):
    total = 0
    for eqn in jaxpr.eqns:
        total += 1
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if hasattr(sub, "eqns"):
                    total += _count_eqns(sub)
                elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                    total += _count_eqns(sub.jaxpr)
    return total


def _primitives(jaxpr):
    return [eqn.primitive.name for eqn in jaxpr.eqns]


def n_eqns(ds):
    args = [x[0] for x in random_transitions(1)]
    return _count_eqns(jax.make_jaxpr(ds.evaluate)(*args).jaxpr)


def _observation_demons(n):
    return [Demon(f"o{i}", cumulants.observation(i % OBS_DIM), discounts.timescale(1 + i % 7)) for i in range(n)]


def _threshold_demons(n):
    return [
        Demon(
            f"t{i}",
            cumulants.threshold(i % OBS_DIM, 0.1 * (i % 5), above=i % 2 == 0, absolute=i % 3 == 0),
            discounts.constant(0.5),
        )
        for i in range(n)
    ]


def _until_demons(n):
    return [
        Demon(
            f"u{i}",
            cumulants.constant(1),
            discounts.until(i % OBS_DIM, 0.1 * (i % 5), above=i % 2 == 0, absolute=i % 3 == 0, gamma=0.99),
        )
        for i in range(n)
    ]


def _fixed_policy_demons(n):
    probs = [(1, 0, 0), (0, 1, 0), (0.2, 0.3, 0.5), (1 / 3, 1 / 3, 1 / 3)]
    return [
        Demon(f"p{i}", cumulants.reward(), discounts.constant(0.9), target_policy=policies.fixed(probs[i % 4]))
        for i in range(n)
    ]


def _misc_demons(n):
    kinds = [
        lambda i: Demon(f"r{i}", cumulants.reward(), discounts.timescale(10)),
        lambda i: Demon(f"c{i}", cumulants.constant(i), discounts.constant(0.1)),
        lambda i: Demon(f"a{i}", cumulants.action_indicator(i % N_ACTIONS), discounts.timescale(3)),
        lambda i: Demon(f"f{i}", TANH0, SIGMOID1, target_policy=SOFTMAX),
    ]
    return [kinds[i % 4](i) for i in range(n)]


@pytest.mark.parametrize(
    "make",
    [_observation_demons, _threshold_demons, _until_demons, _fixed_policy_demons, _misc_demons],
    ids=["observation", "threshold", "until", "fixed_policy", "reward_constant_action_function"],
)
def test_jaxpr_size_independent_of_number_of_demons(make):
    small, large = n_eqns(DemonSet(make(10))), n_eqns(DemonSet(make(1000)))
    assert small == large
    assert large < 40


def test_jaxpr_size_independent_of_mixed_set_size():
    assert n_eqns(DemonSet(mixed_demons(copies=1))) == n_eqns(DemonSet(mixed_demons(copies=2)))
    assert n_eqns(DemonSet(mixed_demons(copies=1))) == n_eqns(DemonSet(mixed_demons(copies=50, seed=3)))


def test_observation_cumulants_are_one_gather():
    ds = DemonSet([Demon(f"o{i}", cumulants.observation(i % OBS_DIM), discounts.constant(0.5)) for i in range(1000)])
    args = [x[0] for x in random_transitions(1)]
    prims = _primitives(jax.make_jaxpr(ds.evaluate)(*args).jaxpr)
    assert prims.count("gather") == 1


# ----------------------------------------------------------------------------
# Property test: random compositions of built-in kinds (some kinds absent, any order).


_CUMULANT_MAKERS = [
    lambda r: cumulants.observation(r.integers(OBS_DIM)),
    lambda r: cumulants.reward(),
    lambda r: cumulants.constant(float(r.normal())),
    lambda r: cumulants.threshold(r.integers(OBS_DIM), float(r.normal()), bool(r.integers(2)), bool(r.integers(2))),
    lambda r: cumulants.action_indicator(r.integers(N_ACTIONS)),
    lambda r: TANH0,
]
_DISCOUNT_MAKERS = [
    lambda r: discounts.constant(float(r.uniform())),
    lambda r: discounts.timescale(int(r.integers(1, 100))),
    lambda r: discounts.until(
        r.integers(OBS_DIM), float(r.normal()), bool(r.integers(2)), bool(r.integers(2)), float(r.uniform())
    ),
    lambda r: SIGMOID1,
]
_POLICY_MAKERS = [
    lambda r: None,
    lambda r: policies.fixed(r.dirichlet(np.ones(N_ACTIONS)).tolist()),
    lambda r: SOFTMAX,
]


@settings(max_examples=25, deadline=None)
@given(
    kinds=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_random_sets_match_reference(kinds, seed):
    rng = np.random.default_rng(seed)
    ds = DemonSet(
        Demon(f"d{i}", _CUMULANT_MAKERS[c](rng), _DISCOUNT_MAKERS[g](rng), target_policy=_POLICY_MAKERS[p](rng))
        for i, (c, g, p) in enumerate(kinds)
    )
    args = [x[0] for x in random_transitions(1, seed=seed)]
    assert_evaluation_close(ds.evaluate(*args), reference_evaluate(ds, *args))


def test_demon_info_describes_each_demon_as_data():
    from demons import DemonInfo
    from demons import cumulants as c
    from demons import discounts as d
    from demons import policies as p

    cases = {
        "nexting": (Demon("x@10", c.observation(2), d.timescale(10), lamda=0.9), ("observation(2)", "timescale", 10.0)),
        "constant": (Demon("r", c.reward(), d.constant(0.75), z=-1.0), ("reward()", "constant", 4.0)),
        "myopic": (Demon("m", c.constant(1.0), d.constant(0.0)), ("constant(1.0)", "constant", 1.0)),
        "undiscounted": (Demon("u", c.constant(1.0), d.constant(1.0)), ("constant(1.0)", "constant", None)),
        "until": (Demon("fall", c.constant(1.0), d.until(2, 0.2, absolute=True)), ("constant(1.0)", "until", None)),
        "off": (Demon("a", c.action_indicator(1), d.timescale(4), target_policy=p.fixed([0.0, 1.0])), None),
    }
    for label, (demon, expected) in cases.items():
        info = demon.info
        assert isinstance(info, DemonInfo) and info.name == demon.name, label
        assert (info.lamda, info.z, info.off_policy) == (demon.lamda, demon.z, demon.target_policy is not None)
        assert info.cumulant_kind == demon.cumulant.kind and info.discount_kind == demon.discount.kind
        if expected is not None:
            assert (info.cumulant, info.discount_kind, info.timescale) == expected, label
    assert cases["off"][0].info.timescale == 4.0 and cases["off"][0].info.off_policy


# -- errors raised by a user's function name the demon and the signature -------------------------


def _trace(ds):
    return jax.jit(ds.evaluate)(jnp.zeros(4), 0, 0.0, jnp.zeros(4))


def test_a_python_if_in_a_cumulant_function_names_the_demons_and_suggests_jnp_where():
    def fast(observation, action, reward, next_observation):
        if next_observation[0] > 0:  # a Python branch on a traced value
            return 1.0
        return 0.0

    c = cumulants.function(fast, "fast")
    ds = demons.DemonSet(
        [demons.Demon("d1", c, discounts.timescale(10)), demons.Demon("d2", c, discounts.timescale(5))]
    )
    with pytest.raises(TypeError) as error:
        _trace(ds)
    message = str(error.value)
    assert message.startswith("the cumulant of demons 'd1', 'd2' (function 'fast') failed while JAX traced it")
    assert "fn(observation, action, reward, next_observation) -> scalar" in message
    assert "jnp.where(condition, if_true, if_false)" in message
    assert isinstance(error.value.__cause__, jax.errors.TracerBoolConversionError)


def test_a_function_with_the_wrong_signature_is_told_the_right_one():
    ds = demons.DemonSet(
        [
            demons.Demon("x@10", cumulants.observation(0), discounts.timescale(10)),
            demons.Demon("odd", cumulants.function(lambda obs: obs[0], "first"), discounts.timescale(10)),
        ]
    )
    with pytest.raises(TypeError, match=r"the cumulant of demon 'odd' \(function 'first'\)") as error:
        _trace(ds)
    assert "A function cumulant is called as fn(observation, action, reward, next_observation)" in str(error.value)
    assert "jnp.where" not in str(error.value)

    def gamma(observation, action, reward, next_observation):
        return 0.9

    ds = demons.DemonSet([demons.Demon("g", cumulants.reward(), discounts.function(gamma, "gamma"))])
    with pytest.raises(TypeError, match=r"called as fn\(next_observation\) -> scalar in \[0, 1\]"):
        _trace(ds)


def test_a_function_returning_a_vector_names_the_demon():
    ds = demons.DemonSet(
        [demons.Demon("vec", cumulants.function(lambda o, a, r, n: n, "whole"), discounts.timescale(10))]
    )
    with pytest.raises(ValueError, match=r"demon 'vec' \(function 'whole'\).*must return a scalar, got shape \(4,\)"):
        _trace(ds)


def test_demon_set_load_reads_the_demons_of_a_run_config(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        '[env]\nid = "CartPole-v1"\n\n[run]\nsteps = 100\n\n[policy]\nkind = "uniform"\n\n'
        "[learner]\nhidden_sizes = [8]\n\n[plugins]\nmodules = []\n\n"
        "[nexting]\nobservation_dim = 2\ntimescales = [1, 10]\n\n"
        '[[demons]]\nname = "fall"\ncumulant = { kind = "constant", value = 1.0 }\n'
        'discount = { kind = "until", index = 1, threshold = 0.2 }\n'
    )
    ds = demons.DemonSet.load(path)
    assert ds.names == ("obs[0]@1", "obs[0]@10", "obs[1]@1", "obs[1]@10", "fall")
    path.write_text(path.read_text() + "\n[extra]\nx = 1\n")
    with pytest.raises(ValueError, match="unknown top-level key 'extra'"):
        demons.DemonSet.load(path)
