"""Head traces stored once per group of equal traces give the per-demon layout's numbers.

The reference is the same learner with ``shared_traces=False`` (one trace per demon, the
layout the slow float64 reference in test_horde_learner.py checks). The arithmetic per trace is
the same in both layouts: a linear Horde agrees bit for bit. With a trunk, XLA fuses the two
programs' reductions differently (a few ulps per step), so they agree to float32 rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import horde
from demons import Demon
from demons import cumulants as C
from demons import discounts as D
from demons import policies as P
from horde.td import (
    HordeLearner,
    Transitions,
    head_trace_l1,
    run_horde_learning_loop,
    total_trace_l1,
    trace_groups,
)

OBS = 3


def _sometimes_missing(observation, action, reward, next_observation):
    # A sensor that drops out: NaN (inactive demon) when the next observation's first entry is low.
    return jnp.where(next_observation[0] < -0.8, jnp.nan, next_observation[1])


def _soft_discount(next_observation):
    return 0.9 * jax.nn.sigmoid(next_observation[2])


def _mixed_demons():
    behaviour_like = P.fixed([0.3, 0.7])
    other = P.fixed([0.9, 0.1])
    return [
        # Constant discounts: three demons share one trace, one has another λ.
        Demon("c0", C.observation(0), D.constant(0.9), lamda=0.9),
        Demon("c1", C.observation(1), D.constant(0.9), lamda=0.9, z=1.0),
        Demon("c2", C.reward(), D.constant(0.9), lamda=0.9),
        Demon("c3", C.reward(), D.constant(0.9), lamda=0.5),
        # Timescales, and λ = 0 / γ = 0 demons (one "no decay" group).
        Demon("t0", C.observation(2), D.timescale(10), lamda=0.8),
        Demon("t1", C.observation(0), D.timescale(10), lamda=0.8),
        Demon("z0", C.reward(), D.constant(0.5)),
        Demon("z1", C.observation(1), D.constant(0.0), lamda=0.7),
        # State-dependent discounts.
        Demon("u0", C.constant(1.0), D.until(0, 0.5), lamda=0.9),
        Demon("u1", C.reward(), D.until(0, 0.5), lamda=0.9),
        Demon("f0", C.reward(), D.function(_soft_discount, "soft"), lamda=0.6),
        Demon("f1", C.observation(2), D.function(_soft_discount, "soft"), lamda=0.6),
        # A cumulant that goes missing: NaN makes the demon inactive at some steps.
        Demon("m0", C.function(_sometimes_missing, "missing"), D.constant(0.9), lamda=0.9),
        # Off-policy: two target policies, two demons each.
        Demon("o0", C.reward(), D.constant(0.8), lamda=0.7, target_policy=behaviour_like),
        Demon("o1", C.observation(0), D.constant(0.8), lamda=0.7, target_policy=behaviour_like),
        Demon("o2", C.reward(), D.constant(0.8), lamda=0.7, target_policy=other),
        Demon("o3", C.observation(1), D.constant(0.8), lamda=0.7, target_policy=other),
    ]


def _stream(n_steps, seed):
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, size=(n_steps + 1, OBS)).astype(np.float32)
    flag = rng.random(n_steps)
    return Transitions(
        observations=obs[:-1],
        actions=rng.integers(0, 2, size=n_steps).astype(np.int32),
        rewards=rng.normal(size=n_steps).astype(np.float32),
        next_observations=obs[1:],
        terminated=flag < 0.04,
        truncated=(flag >= 0.04) & (flag < 0.08),
        behaviour_probs=np.where(rng.random(n_steps) < 0.5, 0.3, 0.7).astype(np.float32),
    )


def _pair(demon_set, **kwargs):
    return HordeLearner(demon_set, shared_traces=True, **kwargs), HordeLearner(demon_set, shared_traces=False, **kwargs)


def _same(exact):
    if exact:
        return np.testing.assert_array_equal
    return lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)


def _assert_same_run(shared, per_demon, transitions, exact, seed=0):
    same = _same(exact)
    s0 = shared.init(OBS, jax.random.key(seed))
    p0 = per_demon.init(OBS, jax.random.key(seed))
    a = run_horde_learning_loop(shared, s0, transitions)
    b = run_horde_learning_loop(per_demon, p0, transitions)
    same(a.predictions, b.predictions)
    same(a.per_demon_metrics, b.per_demon_metrics)
    for x, y in zip(shared.head_traces(a.state), per_demon.head_traces(b.state)):
        same(x, y)
    # The traces are compared above; the rest of the core state leaf by leaf.
    core_a, core_b = a.state.core._replace(head_traces=()), b.state.core._replace(head_traces=())
    assert jax.tree_util.tree_structure(core_a) == jax.tree_util.tree_structure(core_b)
    for x, y in zip(jax.tree_util.tree_leaves(core_a), jax.tree_util.tree_leaves(core_b)):
        same(x, y)
    for x, y in zip(
        jax.tree_util.tree_leaves(a.state.secondary_weights), jax.tree_util.tree_leaves(b.state.secondary_weights)
    ):
        same(x, y)
    return a, b


def test_grouping_by_discount_spec_lambda_and_target_policy():
    groups = trace_groups(horde.td.HordeLearner(_mixed_demons(), hidden_sizes=()).demons)
    # c0-c2 | c3 | t0,t1 | z0,z1 (never decay) | u0,u1 | f0,f1 | m0 (a function cumulant, may
    # be NaN: its own group) | o0,o1 | o2,o3
    expected = [0, 0, 0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7, 7, 8, 8]
    np.testing.assert_array_equal(groups.group_of, expected)
    np.testing.assert_array_equal(groups.sizes, [3, 1, 2, 2, 2, 2, 1, 2, 2])
    np.testing.assert_array_equal(groups.representatives, [0, 3, 4, 6, 8, 10, 12, 13, 15])


def test_nexting_horde_keeps_one_trace_per_timescale():
    learner = HordeLearner(
        [Demon(f"x{i}@{k}", C.observation(i), D.timescale(k), lamda=0.9) for k in (1, 2, 5, 10, 20) for i in range(8)],
        hidden_sizes=(16,),
    )
    state = learner.init(8, jax.random.key(0))
    # a trace per head feature: the trunk's 16, and the default head features' 8 + 256
    assert state.traces.group_weights.shape == (5, 16 + 8 + 256)
    assert state.core.head_traces == ()


@pytest.mark.parametrize(
    "kwargs, exact",
    [
        (dict(hidden_sizes=(8,), step_size=0.01, bounder=horde.ObGDBounding()), False),
        (dict(hidden_sizes=(), step_size=0.05, bounder=horde.ObGDBounding()), True),
        (dict(hidden_sizes=(), step_size=0.05, diagnostics=True, head_optimizer=horde.IDBD(0.02, 0.01)), True),
    ],
    ids=["trunk-lms-obgd", "linear-lms-obgd", "linear-idbd-diagnostics"],
)
def test_scanned_run_equals_per_demon_traces(kwargs, exact):
    """Constant, timescale, until and function discounts; on- and off-policy; a cumulant that
    goes missing (NaN); terminations and truncations."""
    shared, per_demon = _pair(_mixed_demons(), **kwargs)
    _assert_same_run(shared, per_demon, _stream(120, seed=1), exact)
    # The stream made m0 inactive at some steps (its one-demon group's trace held still).
    missing = np.asarray(_stream(120, seed=1).next_observations)[:, 0] < -0.8
    assert missing.any()


def test_demon_evaluated_stream_keeps_no_per_demon_rows():
    demon_set = [d for d in _mixed_demons() if d.name != "m0"]
    shared, per_demon = _pair(demon_set, hidden_sizes=(), step_size=0.05)
    a, _ = _assert_same_run(shared, per_demon, _stream(60, seed=2), exact=True)
    # Demons that evaluate their own inputs never detach: the state keeps no per-demon rows.
    assert a.state.traces.rows == ()


def test_explicit_nan_cumulants_discounts_and_ratios_detach_demons_exactly():
    """``update`` with inputs that break a group's equality (a NaN cumulant, a discount or a ratio
    that differs within the group): the demon detaches, its numbers stay those of the per-demon
    layout, and it rejoins its group when the episode ends."""
    demon_set = [Demon(f"d{i}", C.reward(), D.constant(0.9), lamda=0.8) for i in range(4)]
    demon_set += [
        Demon(f"o{i}", C.reward(), D.constant(0.9), lamda=0.8, target_policy=P.fixed([0.5, 0.5])) for i in range(2)
    ]
    shared, per_demon = _pair(demon_set, hidden_sizes=(), step_size=0.02, bounder=horde.ObGDBounding())
    assert shared.init(2, jax.random.key(0)).traces.group_weights.shape == (2, 2)
    s, p = shared.init(2, jax.random.key(3)), per_demon.init(2, jax.random.key(3))
    rng = np.random.default_rng(5)
    ones = np.ones(6, np.float32)
    seen_detached = set()
    plan = [
        dict(),  # every demon with its group
        dict(nan=1),  # d1 inactive: detaches, keeps its trace
        dict(),
        dict(discount=(2, 0.3)),  # d2 given another discount: decays differently next step
        dict(rho=(5, 2.0)),  # o1 given another ratio
        dict(),
        dict(truncated=True),  # every demon rejoins its group
        dict(),
    ]
    for step in plan:
        c = rng.normal(size=6).astype(np.float32)
        if "nan" in step:
            c[step["nan"]] = np.nan
        gamma = np.full(6, 0.9, np.float32)
        if "discount" in step:
            gamma[step["discount"][0]] = step["discount"][1]
        rho = np.r_[ones[:4], 0.5 * ones[:2]].astype(np.float32)
        if "rho" in step:
            rho[step["rho"][0]] = step["rho"][1]
        x, x_next = rng.normal(size=2).astype(np.float32), rng.normal(size=2).astype(np.float32)
        flags = dict(truncated=step.get("truncated", False))
        a = shared.update(s, x, c, x_next, discounts=gamma, rhos=rho, **flags)
        b = per_demon.update(p, x, c, x_next, discounts=gamma, rhos=rho, **flags)
        np.testing.assert_array_equal(a.predictions, b.predictions)
        np.testing.assert_array_equal(a.td_errors, b.td_errors)
        np.testing.assert_array_equal(a.state.core.head_params.weights, b.state.core.head_params.weights)
        for u, v in zip(shared.head_traces(a.state), per_demon.head_traces(b.state)):
            np.testing.assert_array_equal(u, v)
        s, p = a.state, b.state
        detached = np.asarray(s.traces.rows.detached)
        seen_detached |= set(np.flatnonzero(detached).tolist())
        if step.get("truncated"):
            assert not detached.any()
    assert seen_detached == {1, 2, 5}
    # After the last plain step nobody is detached, and nothing was left in the rows.
    assert not np.asarray(s.traces.rows.weights).any()


def test_trace_norms_from_group_norms_equal_per_demon_norms():
    demon_set = [d for d in _mixed_demons()]
    learner = HordeLearner(demon_set, hidden_sizes=(8,), step_size=0.01)
    result = run_horde_learning_loop(learner, learner.init(OBS, jax.random.key(0)), _stream(40, seed=3))
    z_w, z_b = (np.asarray(t, np.float64) for t in learner.head_traces(result.state))
    per_head = np.abs(z_w).sum(axis=1) + np.abs(z_b)
    groups = trace_groups(learner.demons)
    np.testing.assert_allclose(head_trace_l1(result.state.traces, groups), per_head, rtol=1e-6)
    np.testing.assert_allclose(total_trace_l1(result.state.traces, groups), per_head.sum(), rtol=1e-5)


def test_shared_traces_round_trip_through_config():
    learner = HordeLearner(_mixed_demons()[:4], hidden_sizes=(4,), shared_traces=False)
    assert HordeLearner.from_config(learner.to_config()).shared_traces is False
    with pytest.raises(ValueError, match="shared_traces must be True or False, got 'yes'"):
        HordeLearner(_mixed_demons()[:4], shared_traces="yes")


def test_checkpoints_and_daemon_carry_the_shared_layout(tmp_path):
    """A state with per-demon rows (after explicit-input updates) saves and loads as it is, and a
    Daemon fed the same transitions gives the learner's numbers in the shared layout."""
    from horde.cli import load_checkpoint, save_checkpoint

    demon_set = [Demon(f"d{i}", C.observation(i % 2), D.constant(0.9), lamda=0.8) for i in range(3)]
    learner = HordeLearner(demon_set, hidden_sizes=(), step_size=0.05)
    state = learner.init(2, jax.random.key(0))
    daemon = horde.Daemon(learner, state)
    x = np.asarray([[0.5, -1.0], [1.0, 0.2], [-0.3, 0.7]], np.float32)
    for t in range(2):
        d = daemon.update_from_transition(x[t], 0, 0.0, x[t + 1])
        r = learner.update_from_transition(state, x[t], 0, 0.0, x[t + 1])
        np.testing.assert_array_equal(d.predictions, r.predictions)
        state = r.state
    np.testing.assert_array_equal(learner.head_traces(daemon.state)[0], learner.head_traces(state)[0])
    assert state.traces.rows == ()  # demon-evaluated updates keep the group traces only
    state = learner.update(state, x[0], [1.0, np.nan, 0.0], x[1]).state
    assert np.asarray(state.traces.rows.detached).tolist() == [False, True, False]
    path = save_checkpoint(tmp_path / "rows", learner, state)
    _, loaded, _ = load_checkpoint(path)
    for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(state)):
        np.testing.assert_array_equal(a, b)


def test_daemon_mixing_explicit_and_demon_evaluated_updates_equals_the_learner():
    """The Daemon skips the per-demon rows while it knows every demon follows its group, and
    reads them once an explicit update may have detached one, until the episode ends."""
    demon_set = [Demon(f"d{i}", C.observation(i % 2), D.constant(0.9), lamda=0.8) for i in range(3)]
    learner = HordeLearner(demon_set, hidden_sizes=(), step_size=0.05)
    state = learner.init(2, jax.random.key(1))
    daemon = horde.Daemon(learner, state)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(12, 2)).astype(np.float32)
    plan = ["t", "t", "explicit-nan", "t", "t", "t-end", "t", "explicit-nan", "t"]
    for t, kind in enumerate(plan):
        if kind == "explicit-nan":
            c = np.array([0.5, np.nan, 1.0], np.float32)
            d = daemon.update(x[t], c, x[t + 1])
            r = learner.update(state, x[t], c, x[t + 1])
        else:
            end = kind == "t-end"
            d = daemon.update_from_transition(x[t], 0, 0.0, x[t + 1], terminated=end)
            r = learner.update_from_transition(state, x[t], 0, 0.0, x[t + 1], terminated=end)
        state = r.state
        np.testing.assert_array_equal(d.predictions, r.predictions)
        np.testing.assert_array_equal(d.td_errors, r.td_errors)
        np.testing.assert_array_equal(learner.head_traces(daemon.state)[0], learner.head_traces(state)[0])
