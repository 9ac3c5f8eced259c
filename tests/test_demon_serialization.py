"""Plain-data forms of demon sets: dict, JSON and TOML round trips, and clear errors."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from demon_cases import SIGMOID1, SOFTMAX, TANH0, mixed_demons, random_transitions

import demons
from demons import Demon, DemonSet, cumulants, discounts, policies

# ----------------------------------------------------------------------------
# Plain-data round trips.


def serializable_demons():
    return [
        d
        for d in mixed_demons(seed=4)
        if "function" not in (d.cumulant.kind, d.discount.kind)
        and (d.target_policy is None or d.target_policy.kind != "function")
    ] + [Demon('odd "name" \\ with\ttab and ü', cumulants.reward(), discounts.constant(0.25), lamda=1, z=2.5)]


class TestSerialization:
    def test_dict_form(self):
        ds = DemonSet(
            [
                Demon(
                    "right",
                    cumulants.observation(3),
                    discounts.timescale(10),
                    lamda=0.5,
                    target_policy=policies.fixed([0, 1]),
                ),
                Demon("fall", cumulants.constant(1), discounts.until(2, 0.1745, absolute=True)),
            ]
        )
        assert ds.to_dict() == {
            "demons": [
                {
                    "name": "right",
                    "cumulant": {"kind": "observation", "index": 3},
                    "discount": {"kind": "timescale", "steps": 10},
                    "lamda": 0.5,
                    "z": 0.0,
                    "target_policy": {"kind": "fixed", "probabilities": [0.0, 1.0]},
                },
                {
                    "name": "fall",
                    "cumulant": {"kind": "constant", "value": 1},
                    "discount": {
                        "kind": "until",
                        "index": 2,
                        "threshold": 0.1745,
                        "above": True,
                        "absolute": True,
                        "gamma": 1.0,
                    },
                    "lamda": 0.0,
                    "z": 0.0,
                },
            ]
        }

    def test_dict_and_json_round_trip(self):
        ds = DemonSet(serializable_demons())
        d = ds.to_dict()
        back = DemonSet.from_dict(json.loads(json.dumps(d)))
        assert back == ds
        assert back.to_dict() == d
        transitions = random_transitions(8, seed=5)
        np.testing.assert_array_equal(
            np.asarray(jax.vmap(back.evaluate)(*transitions)), np.asarray(jax.vmap(ds.evaluate)(*transitions))
        )

    def test_toml_round_trip_and_files(self, tmp_path):
        ds = DemonSet(serializable_demons())
        text = ds.to_toml()
        assert "[[demons]]" in text
        back = DemonSet.from_toml(text)
        assert back == ds
        transitions = random_transitions(8, seed=6)
        np.testing.assert_array_equal(
            np.asarray(back.evaluate_batch(*transitions)), np.asarray(ds.evaluate_batch(*transitions))
        )
        for name in ("demons.toml", "demons.json"):
            path = tmp_path / name
            ds.save(path)
            assert DemonSet.load(path) == ds
        assert DemonSet.from_toml(DemonSet([]).to_toml()) == DemonSet([])

    def test_timescale_stays_timescale(self):
        ds = DemonSet.from_toml(DemonSet(demons.nexting(1, (10,))).to_toml())
        assert ds[0].discount == discounts.timescale(10)
        assert ds.to_dict()["demons"][0]["discount"] == {"kind": "timescale", "steps": 10}

    def test_handwritten_toml_with_compact_sections(self, tmp_path):
        text = """
[nexting]
observation_dim = 4
timescales = [1, 10]

[[demons]]
name = "steps_to_fall"
cumulant = { kind = "constant", value = 1.0 }
discount = { kind = "until", index = 2, threshold = 0.1745, absolute = true }

[reward_demons]
timescales = [10]
lamda = 0.9
"""
        path = tmp_path / "horde.toml"
        path.write_text(text)
        ds = DemonSet.load(path)
        expected = (
            demons.nexting(4, (1, 10))
            + [Demon("steps_to_fall", cumulants.constant(1.0), discounts.until(2, 0.1745, absolute=True))]
            + demons.reward_demons((10,), lamda=0.9)
        )
        assert ds == DemonSet(expected)
        assert len(DemonSet.from_dict({"nexting": {"observation_dim": 4, "timescales": [1, 10]}})) == 8
        two = DemonSet.from_dict(
            {
                "nexting": [
                    {"observation_dim": 2, "timescales": [10]},
                    {"observation_dim": 1, "timescales": [5], "names": ["a"]},
                ]
            }
        )
        assert two.names == ("obs[0]@10", "obs[1]@10", "a@5")

    def test_function_kinds_cannot_be_serialized(self):
        ds = DemonSet(
            [Demon("ok", cumulants.reward(), discounts.constant(0.5)), Demon("fn", TANH0, discounts.constant(0.5))]
        )
        with pytest.raises(
            ValueError, match=r"demon 'fn' cannot be serialized: its cumulant is a Python function \('tanh0'\)"
        ):
            ds.to_dict()
        with pytest.raises(ValueError, match=r"demon 'g'.*discount"):
            DemonSet([Demon("g", cumulants.reward(), SIGMOID1)]).to_toml()
        with pytest.raises(ValueError, match=r"demon 'p'.*target_policy"):
            DemonSet([Demon("p", cumulants.reward(), discounts.constant(0.5), target_policy=SOFTMAX)]).to_dict()

    def _table(self, **overrides):
        table = {
            "name": "a",
            "cumulant": {"kind": "observation", "index": 1},
            "discount": {"kind": "timescale", "steps": 10},
        }
        table.update(overrides)
        return {
            "demons": [
                {"name": "first", "cumulant": {"kind": "reward"}, "discount": {"kind": "constant", "gamma": 0.5}},
                table,
            ]
        }

    def test_unknown_kinds_and_missing_keys_fail_clearly(self):
        with pytest.raises(ValueError, match=r"demons\[1\] \('a'\): unknown cumulant kind 'obsrvation' for demon 'a'"):
            DemonSet.from_dict(self._table(cumulant={"kind": "obsrvation", "index": 1}))
        with pytest.raises(ValueError, match=r"unknown discount kind 'hyperbolic' for demon 'a'; expected one of"):
            DemonSet.from_dict(self._table(discount={"kind": "hyperbolic"}))
        # (``greedy`` is a kind now, a control demon's target policy: ``softmax`` is not.)
        with pytest.raises(ValueError, match=r"unknown target_policy kind 'softmax'"):
            DemonSet.from_dict(self._table(target_policy={"kind": "softmax"}))
        with pytest.raises(
            ValueError,
            match=r"demons\[1\] \('a'\): cumulant of kind 'observation' for demon 'a' is missing key 'index'",
        ):
            DemonSet.from_dict(self._table(cumulant={"kind": "observation"}))
        with pytest.raises(ValueError, match=r"demons\[1\] \('a'\): discount for demon 'a' is missing key 'kind'"):
            DemonSet.from_dict(self._table(discount={"steps": 10}))
        with pytest.raises(ValueError, match=r"demons\[1\]: missing key 'name'"):
            table = self._table()
            del table["demons"][1]["name"]
            DemonSet.from_dict(table)
        with pytest.raises(ValueError, match=r"demons\[1\] \('a'\): missing key 'discount'"):
            table = self._table()
            del table["demons"][1]["discount"]
            DemonSet.from_dict(table)
        with pytest.raises(ValueError, match=r"unexpected key 'stpes' in discount of kind 'timescale' for demon 'a'"):
            DemonSet.from_dict(self._table(discount={"kind": "timescale", "stpes": 10}))
        with pytest.raises(ValueError, match=r"demons\[1\] \('a'\): unexpected key 'gamma'"):
            DemonSet.from_dict(self._table(gamma=0.9))
        with pytest.raises(ValueError, match=r"kind 'function'.*cannot be loaded"):
            DemonSet.from_dict(self._table(cumulant={"kind": "function", "name": "f"}))
        with pytest.raises(ValueError, match=r"unknown top-level key 'demon'"):
            DemonSet.from_dict({"demon": []})
        with pytest.raises(ValueError, match=r"nexting is missing key 'observation_dim'"):
            DemonSet.from_dict({"nexting": {"timescales": [1]}})

    def test_invalid_values_in_data_name_demon_and_position(self):
        with pytest.raises(ValueError, match=r"demons\[1\] \('a'\): gamma for demon 'a' must be in \[0, 1\], got 1\.3"):
            DemonSet.from_dict(self._table(discount={"kind": "constant", "gamma": 1.3}))
        with pytest.raises(
            ValueError, match=r"demons\[1\] \('a'\): invalid cumulant for demon 'a'.*index must be an integer, got '1'"
        ):
            DemonSet.from_dict(self._table(cumulant={"kind": "observation", "index": "1"}))
        with pytest.raises(ValueError, match=r"duplicate demon name 'first'"):
            DemonSet.from_dict(self._table(name="first"))
        with pytest.raises(ValueError, match=r"demon 'a'.*sum to 1"):
            DemonSet.from_dict(self._table(target_policy={"kind": "fixed", "probabilities": [0.5, 0.6]}))
