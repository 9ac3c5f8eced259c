"""A new cumulant, discount or policy kind is one class, defined outside the library.

The kinds below live in this file only. Defining them registers them, and they work through
``Demon``, ``DemonSet.evaluate`` (vectorized, by kind) and the plain-data forms (dict, JSON,
TOML) without any edit to the ``demons`` package.
"""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import demons
from demons import Demon, DemonSet, checks, cumulants, discounts, kinds, policies

OBS_DIM = 4
N_ACTIONS = 3


@dataclasses.dataclass(frozen=True)
class SquaredObservation(demons.Cumulant):
    r"""Energy of a sensor: :math:`c_{t+1} = s \cdot S_{t+1}[i]^2`."""

    index: int
    scale: float = 1.0
    kind: ClassVar[str] = "test_squared_observation"

    def __post_init__(self):
        object.__setattr__(self, "index", checks.as_int(self.index, "SquaredObservation: index"))
        object.__setattr__(self, "scale", checks.as_number(self.scale, "SquaredObservation: scale"))

    def check(self, owner: str) -> None:
        checks.check_non_negative_int(self.index, "squared observation index", owner)
        checks.check_finite(self.scale, "squared observation scale", owner)

    def observation_indices(self) -> tuple[int, ...]:
        return (self.index,)

    def __call__(self, observation, action, reward, next_observation):
        x = jnp.asarray(next_observation)[self.index].astype(jnp.float32)
        return jnp.float32(self.scale) * x * x

    @classmethod
    def batched(cls, positions, specs):
        idx = np.asarray([s.index for s in specs], np.int32)
        scale = np.asarray([s.scale for s in specs], np.float32)

        def compute(t):
            x = kinds.next_observations(t, idx)
            return scale * x * x

        return [kinds.Batch(positions, compute)]


@dataclasses.dataclass(frozen=True)
class BandDiscount(demons.Discount):
    r"""Continue while a sensor stays in a band: :math:`\gamma_{t+1} = \gamma` if
    :math:`lo \le S_{t+1}[i] \le hi`, else 0."""

    index: int
    low: float
    high: float
    gamma: float = 1.0
    kind: ClassVar[str] = "test_band"

    def __post_init__(self):
        object.__setattr__(self, "index", checks.as_int(self.index, "BandDiscount: index"))
        for field in ("low", "high", "gamma"):
            object.__setattr__(self, field, checks.as_number(getattr(self, field), f"BandDiscount: {field}"))

    def check(self, owner: str) -> None:
        checks.check_non_negative_int(self.index, "band index", owner)
        checks.check_unit_interval(self.gamma, "gamma", owner)
        if not self.low <= self.high:
            raise ValueError(f"band for {owner} must have low <= high, got [{self.low}, {self.high}]")

    def observation_indices(self) -> tuple[int, ...]:
        return (self.index,)

    def __call__(self, next_observation):
        x = jnp.asarray(next_observation)[self.index].astype(jnp.float32)
        inside = (x >= jnp.float32(self.low)) & (x <= jnp.float32(self.high))
        return jnp.where(inside, jnp.float32(self.gamma), jnp.float32(0.0))

    @classmethod
    def batched(cls, positions, specs):
        idx = np.asarray([s.index for s in specs], np.int32)
        low = np.asarray([s.low for s in specs], np.float32)
        high = np.asarray([s.high for s in specs], np.float32)
        gammas = np.asarray([s.gamma for s in specs], np.float32)

        def compute(t):
            x = kinds.next_observations(t, idx)
            return jnp.where((x >= low) & (x <= high), gammas, jnp.float32(0.0))

        return [kinds.Batch(positions, compute)]


@dataclasses.dataclass(frozen=True)
class MostlyPolicy(demons.Policy):
    r"""Mostly one action: :math:`\pi(a) = 1 - \epsilon + \epsilon / n` for ``action``, else
    :math:`\epsilon / n`."""

    action: int
    n_actions: int
    epsilon: float = 0.1
    kind: ClassVar[str] = "test_mostly"

    def check(self, owner: str) -> None:
        checks.check_unit_interval(self.epsilon, "epsilon", owner)
        if not 0 <= self.action < self.n_actions:
            raise ValueError(f"action for {owner} must be in [0, {self.n_actions}), got {self.action}")

    def probabilities(self) -> np.ndarray:
        p = np.full(self.n_actions, self.epsilon / self.n_actions, np.float32)
        p[self.action] = np.float32(1.0 - self.epsilon + self.epsilon / self.n_actions)
        return p

    def __call__(self, observation):
        return jnp.asarray(self.probabilities())

    @classmethod
    def batched(cls, positions, specs):
        table = np.stack([s.probabilities() for s in specs], axis=1)  # (n_actions, k)
        return [kinds.Batch(positions, lambda t: policies.ratio(t, jnp.asarray(table)))]


def new_kind_demons(n=1):
    out = []
    for k in range(n):
        out += [
            Demon(f"energy2#{k}", SquaredObservation(2, 0.5), discounts.timescale(10)),
            Demon(f"energy0_band#{k}", SquaredObservation(0), BandDiscount(1, -0.5, 0.5, gamma=0.9), lamda=0.5),
            Demon(f"obs3_band#{k}", cumulants.observation(3), BandDiscount(3, 0.0, 1.0)),
            Demon(f"reward#{k}", cumulants.reward(), discounts.constant(0.5)),
            Demon(
                f"energy1_mostly#{k}",
                SquaredObservation(1, 2),
                BandDiscount(0, -1.0, 0.25, gamma=0.8),
                target_policy=MostlyPolicy(2, N_ACTIONS, 0.3),
            ),
            Demon(f"reward_fixed#{k}", cumulants.reward(), discounts.constant(0.9), target_policy=policies.uniform(3)),
        ]
    return out


def random_transitions(n, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    next_obs = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    next_obs[0] = [0.5, -0.5, 0.0, 1.0]  # on the band edges (inclusive)
    actions = rng.integers(0, N_ACTIONS, size=n).astype(np.int32)
    rewards = rng.normal(size=n).astype(np.float32)
    mus = rng.uniform(0.1, 1.0, size=n).astype(np.float32)
    return obs, actions, rewards, next_obs, mus


def closed_form(ds, obs, action, reward, next_obs, mu):
    """Each demon's values written out by hand, in float64."""
    x = np.asarray(next_obs, np.float64)
    cs, gs, rs = [], [], []
    for d in ds:
        c, g, p = d.cumulant, d.discount, d.target_policy
        if isinstance(c, SquaredObservation):
            cs.append(c.scale * x[c.index] ** 2)
        elif c.kind == "observation":
            cs.append(x[c.index])
        else:
            cs.append(reward)
        if isinstance(g, BandDiscount):
            gs.append(g.gamma if g.low <= x[g.index] <= g.high else 0.0)
        else:
            gs.append(g.constant_gamma)
        if p is None:
            rs.append(1.0)
        elif isinstance(p, MostlyPolicy):
            rs.append((1 - p.epsilon + p.epsilon / 3 if action == p.action else p.epsilon / 3) / mu)
        else:
            rs.append(1 / 3 / mu)
    return tuple(np.asarray(v, np.float32) for v in (cs, gs, rs))


def test_defining_a_kind_registers_it():
    assert demons.Cumulant.registered()["test_squared_observation"] is SquaredObservation
    assert demons.Discount.registered()["test_band"] is BandDiscount
    assert demons.Policy.registered()["test_mostly"] is MostlyPolicy
    assert "test_band" not in demons.Cumulant.registered()  # each family has its own kinds


def test_demon_checks_the_new_kinds_naming_the_demon():
    with pytest.raises(ValueError, match=r"squared observation index for demon 'e' must be >= 0, got -1"):
        Demon("e", SquaredObservation(-1), discounts.constant(0.5))
    with pytest.raises(ValueError, match=r"gamma for demon 'b' must be in \[0, 1\], got 1\.5"):
        Demon("b", cumulants.reward(), BandDiscount(0, 0.0, 1.0, gamma=1.5))
    with pytest.raises(ValueError, match=r"band for demon 'b' must have low <= high, got \[1\.0, 0\.0\]"):
        Demon("b", cumulants.reward(), BandDiscount(0, 1.0, 0.0))
    with pytest.raises(TypeError, match=r"SquaredObservation: index must be an integer, got 1\.5"):
        SquaredObservation(1.5)
    ds = DemonSet(new_kind_demons())
    with pytest.raises(ValueError, match=r"cumulant of demon 'energy2#0' \(test_squared_observation\).*index 2"):
        ds.validate(observation_dim=2)
    with pytest.raises(ValueError, match=r"target policy of demon 'energy1_mostly#0' has 3 actions, expected"):
        ds.validate(observation_dim=OBS_DIM, n_actions=2)
    assert ds.validate(OBS_DIM, N_ACTIONS) is ds


def test_evaluate_matches_the_closed_form_and_the_scalar_forms():
    ds = DemonSet(new_kind_demons(2)).validate(OBS_DIM, N_ACTIONS)
    transitions = random_transitions(8)
    for t in range(8):
        args = [x[t] for x in transitions]
        ev = ds.evaluate(*args)
        for got, want in zip(ev, closed_form(ds, *args)):
            assert got.dtype == jnp.float32
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
        obs, action, reward, next_obs, mu = args
        scalar_c = np.asarray([d.cumulant(obs, action, reward, next_obs) for d in ds])
        scalar_g = np.asarray([d.discount(next_obs) for d in ds])
        np.testing.assert_array_equal(np.asarray(ev.cumulants).view(np.uint32), scalar_c.view(np.uint32))
        np.testing.assert_array_equal(np.asarray(ev.discounts).view(np.uint32), scalar_g.view(np.uint32))
    batched = jax.jit(ds.evaluate_batch)(*transitions)
    for t in range(8):
        for got, want in zip(batched, closed_form(ds, *(x[t] for x in transitions))):
            np.testing.assert_allclose(np.asarray(got[t]), want, rtol=1e-6)


def test_band_edges_are_inside():
    ds = DemonSet(new_kind_demons())
    ev = ds.evaluate(np.zeros(OBS_DIM), 0, 0.0, np.asarray([0.5, -0.5, 0.0, 1.0]))
    g = dict(zip(ds.names, np.asarray(ev.discounts).tolist()))
    assert g["energy0_band#0"] == np.float32(0.9)  # S[1] = -0.5 in [-0.5, 0.5]
    assert g["obs3_band#0"] == 1.0  # S[3] = 1.0 in [0, 1]
    assert g["energy1_mostly#0"] == 0.0  # S[0] = 0.5 not in [-1, 0.25]


def _n_eqns(ds):
    args = [x[0] for x in random_transitions(1)]
    return len(jax.make_jaxpr(ds.evaluate)(*args).jaxpr.eqns)


def test_new_kinds_are_evaluated_by_kind_not_by_demon():
    small, large = _n_eqns(DemonSet(new_kind_demons(2))), _n_eqns(DemonSet(new_kind_demons(300)))
    assert small == large


def test_plain_data_round_trips():
    ds = DemonSet(new_kind_demons())
    data = ds.to_dict()
    table = data["demons"][1]
    assert table["cumulant"] == {"kind": "test_squared_observation", "index": 0, "scale": 1.0}
    assert table["discount"] == {"kind": "test_band", "index": 1, "low": -0.5, "high": 0.5, "gamma": 0.9}
    assert data["demons"][4]["target_policy"] == {"kind": "test_mostly", "action": 2, "n_actions": 3, "epsilon": 0.3}
    for back in (
        DemonSet.from_dict(data),
        DemonSet.from_dict(json.loads(json.dumps(data))),
        DemonSet.from_toml(ds.to_toml()),
    ):
        assert back == ds
        transitions = random_transitions(4, seed=3)
        for got, want in zip(back.evaluate_batch(*transitions), ds.evaluate_batch(*transitions)):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    written = """
[[demons]]
name = "energy"
cumulant = { kind = "test_squared_observation", index = 2 }
discount = { kind = "test_band", index = 0, low = -1, high = 1 }
"""
    assert DemonSet.from_toml(written)[0] == Demon("energy", SquaredObservation(2), BandDiscount(0, -1, 1))


def test_plain_data_errors_name_the_new_kind():
    def table(discount):
        return {"demons": [{"name": "a", "cumulant": {"kind": "reward"}, "discount": discount}]}

    with pytest.raises(ValueError, match=r"demons\[0\] \('a'\): discount of kind 'test_band' for demon 'a' is missing"):
        DemonSet.from_dict(table({"kind": "test_band", "index": 0, "low": 0.0}))
    with pytest.raises(ValueError, match=r"unexpected key 'hgih' in discount of kind 'test_band' for demon 'a'"):
        DemonSet.from_dict(table({"kind": "test_band", "index": 0, "low": 0.0, "hgih": 1.0}))
    with pytest.raises(ValueError, match=r"unknown discount kind 'band'.*'test_band'"):
        DemonSet.from_dict(table({"kind": "band"}))


def test_info_describes_the_new_kinds():
    info = Demon("e", SquaredObservation(2, 0.5), BandDiscount(0, -1, 1)).info
    assert info.cumulant == "test_squared_observation(2, 0.5)"
    assert (info.cumulant_kind, info.discount_kind, info.timescale) == ("test_squared_observation", "test_band", None)


def test_a_kind_name_is_unique_within_its_family():
    with pytest.raises(ValueError, match=r"cumulant kind 'observation' of .*Shadow is already registered by demons"):

        @dataclasses.dataclass(frozen=True)
        class Shadow(demons.Cumulant):
            kind: ClassVar[str] = "observation"

            def __call__(self, *args):
                return jnp.float32(0.0)

            @classmethod
            def batched(cls, positions, specs):
                return [kinds.Batch.constant(positions, np.zeros(len(specs)))]

    assert demons.Cumulant.registered()["observation"] is cumulants.ObservationCumulant


def test_a_kind_must_have_a_batched_form():
    with pytest.raises(TypeError, match=r"cumulant kind 'test_scalar_only' \(.*ScalarOnly\) must define batched"):

        class ScalarOnly(demons.Cumulant):
            kind: ClassVar[str] = "test_scalar_only"

            def __call__(self, *args):
                return jnp.float32(0.0)

    assert "test_scalar_only" not in demons.Cumulant.registered()


def test_a_wrong_batched_form_is_refused_with_the_kind_named():
    @dataclasses.dataclass(frozen=True)
    class Careless(demons.Cumulant):
        kind: ClassVar[str] = "test_careless"

        def __call__(self, *args):
            return jnp.float32(1.0)

        @classmethod
        def batched(cls, positions, specs):
            return [kinds.Batch(positions, lambda t: jnp.ones(1, jnp.float32))]  # one value, not k

    ds = DemonSet([Demon(f"c{i}", Careless(), discounts.constant(0.5)) for i in range(3)])
    with pytest.raises(
        ValueError, match=r"cumulant kind 'test_careless' \(.*Careless.batched\) computed float32 \(1,\)"
    ):
        ds.evaluate(np.zeros(OBS_DIM), 0, 0.0, np.zeros(OBS_DIM))
