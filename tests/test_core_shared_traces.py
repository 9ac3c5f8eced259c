"""The core's head traces stored once per distinct ``(γλ)_i`` give the per-head layout's numbers.

The reference is the same ``MultiHeadMLPLearner`` with ``shared_traces=False`` (one trace per
head, the layout the float64 reference of test_multi_head_learner.py checks). A head's trace is
computed with the same elementwise arithmetic in both layouts, so traces agree bit for bit
whenever the parameters do; the updates agree bit for bit with LMS heads and with IDBD heads
without a bounder, and to float32 rounding where a reduction over a head's per-weight step sizes
enters (Autostep's bound over a unit, a bounder over IDBD's or Autostep's steps: XLA fuses those
reductions differently when the trace is gathered from its group). The core has no
episodes: nothing resets its traces.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import horde
from horde.core import (
    IDBD,
    LMS,
    Autostep,
    MultiHeadMLPLearner,
    ObGDBounding,
    OvershootBounding,
    SharedTraces,
    decay_groups,
)

FEATURES = 4
N_HEADS = 8
# Three heads at 0.72, two at 0, two at 0.5 and one alone at 0.9: four groups of eight heads.
DECAYS = (0.72, 0.0, 0.72, 0.5, 0.72, 0.0, 0.5, 0.9)
SEGMENT = 30


def _stream(seed: int = 0):
    """Two segments of ``SEGMENT`` steps. NaN targets come and go in the first (some at its
    last step, so heads are detached at its end); the second starts with every head active
    for a while (heads rejoin, then updates take the group-only path) and ends with a burst."""
    rng = np.random.default_rng(seed)
    steps = 2 * SEGMENT
    obs = rng.standard_normal((steps, FEATURES)).astype(np.float32)
    targets = rng.standard_normal((steps, N_HEADS)).astype(np.float32)
    inactive = rng.random((steps, N_HEADS)) < 0.2
    inactive[SEGMENT - 1, [0, 1, 3, 7]] = True
    inactive[SEGMENT : 2 * SEGMENT - 6] = False
    targets[inactive] = np.nan
    return obs, targets


def _pair(**kwargs):
    kwargs = {"n_heads": N_HEADS, "per_head_gamma_lamda": DECAYS, **kwargs}
    return MultiHeadMLPLearner(**kwargs), MultiHeadMLPLearner(**kwargs, shared_traces=False)


def _assert_same(a, b, exact: bool, what: str, rtol: float = 2e-5, atol: float = 2e-6) -> None:
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        if exact:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=what)
        else:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol, err_msg=what)


def _assert_states_agree(shared, per_head, a, b, exact: bool) -> None:
    _assert_same(
        (a.head_params, a.head_optimizer_states, a.trunk_params, a.trunk_optimizer_states),
        (b.head_params, b.head_optimizer_states, b.trunk_params, b.trunk_optimizer_states),
        exact,
        "parameters and optimizer states",
    )
    _assert_same(shared.head_traces(a), per_head.head_traces(b), exact, "every head's trace")


def test_heads_are_grouped_by_their_float32_decay():
    groups = decay_groups(np.asarray(DECAYS))
    assert groups.group_of.tolist() == [0, 1, 0, 2, 0, 1, 2, 3]
    assert groups.representatives.tolist() == [0, 1, 3, 7]
    assert groups.sizes.tolist() == [3, 2, 2, 1]
    # Decays equal as float32 share; -0.0 and +0.0 do not (their traces' zeros can differ).
    assert decay_groups(np.asarray([0.3, 0.3 + 1e-12, -0.0, 0.0])).group_of.tolist() == [0, 0, 1, 2]

    learner = MultiHeadMLPLearner(N_HEADS, hidden_sizes=(8,), per_head_gamma_lamda=DECAYS)
    state = learner.init(FEATURES, jax.random.key(0))
    assert isinstance(state.head_traces, SharedTraces)
    assert state.head_traces.group_weights.shape == (4, 8)
    assert state.head_traces.rows.weights.shape == (N_HEADS, 8)
    # Nothing to share: distinct decays, the per-head layout asked for, a caller's own decays,
    # or no decaying trace at all.
    for other in (
        MultiHeadMLPLearner(3, hidden_sizes=(8,), per_head_gamma_lamda=[0.1, 0.2, 0.3]),
        MultiHeadMLPLearner(N_HEADS, hidden_sizes=(8,), per_head_gamma_lamda=DECAYS, shared_traces=False),
        MultiHeadMLPLearner(N_HEADS, hidden_sizes=(8,), per_head_gamma_lamda=DECAYS, store_head_traces=True),
        MultiHeadMLPLearner(N_HEADS, hidden_sizes=(8,)),
    ):
        assert other.trace_groups is None
    assert not isinstance(other.init(FEATURES, jax.random.key(0)).head_traces, SharedTraces)


def test_inactive_head_detaches_and_rejoins_with_the_closed_form_traces():
    """Linear heads on features ``x_t = t x`` (t = 1..4), ``γλ = d = 0.5`` for heads 0-2 and 0
    for head 3. Head 1 is inactive at step 2 and head 3 at step 3; an inactive head keeps its
    trace, so after step 4::

        head 0: x (4 + 3d + 2d² + d³)      head 1: x (4 + 3d + d²)      head 3: x_4 = 4 x
    """
    d = 0.5
    learner = MultiHeadMLPLearner(4, hidden_sizes=(), per_head_gamma_lamda=[d, d, d, 0.0], optimizer=LMS(0.01))
    x = np.asarray([1.0, -2.0, 0.5], np.float32)
    state = learner.init(3, jax.random.key(0))
    targets = np.ones((4, 4), np.float32)
    targets[1, 1] = np.nan
    targets[2, 3] = np.nan
    detached = []
    for t in range(4):
        state = learner.update(state, (t + 1) * x, targets[t]).state
        detached.append(np.asarray(state.head_traces.rows.detached).tolist())
    z_w, z_b = (np.asarray(z, np.float64) for z in learner.head_traces(state))
    np.testing.assert_allclose(z_w[0], x * (4 + 3 * d + 2 * d**2 + d**3), rtol=1e-6)
    np.testing.assert_allclose(z_w[2], z_w[0], rtol=0)
    np.testing.assert_allclose(z_w[1], x * (4 + 3 * d + d**2), rtol=1e-6)
    np.testing.assert_allclose(z_w[3], 4 * x, rtol=0)
    np.testing.assert_allclose(z_b, [1 + d + d**2 + d**3, 1 + d + d**2, 1 + d + d**2 + d**3, 1.0], rtol=1e-6)
    # Head 1 stays detached (its trace differs by d² x); head 3 rejoins at its next active step
    # (with γλ = 0 its trace is x_4 again, bit for bit).
    assert detached == [
        [False, False, False, False],
        [False, True, False, False],
        [False, True, False, True],
        [False, True, False, False],
    ]


CASES = [
    # (optimizer, bounder, hidden_sizes, trace_mode, exact)
    (LMS(0.05), ObGDBounding(), (8,), "accumulating", True),
    (LMS(0.05), OvershootBounding(), (), "replacing", True),
    (IDBD(), OvershootBounding(), (8,), "accumulating", False),
    (Autostep(), ObGDBounding(), (), "accumulating", False),
]


@pytest.mark.parametrize("optimizer, bounder, hidden, mode, exact", CASES)
def test_scan_equals_per_head_traces(optimizer, bounder, hidden, mode, exact):
    shared, per_head = _pair(hidden_sizes=hidden, optimizer=optimizer, bounder=bounder, trace_mode=mode)
    obs, targets = _stream()
    a = shared.init(FEATURES, jax.random.key(3))
    b = per_head.init(FEATURES, jax.random.key(3))
    for k, segment in enumerate((slice(0, SEGMENT), slice(SEGMENT, 2 * SEGMENT))):
        ra = horde.run_multi_head_learning_loop(shared, a, obs[segment], targets[segment])
        rb = horde.run_multi_head_learning_loop(per_head, b, obs[segment], targets[segment])
        _assert_same(ra.per_head_metrics, rb.per_head_metrics, exact, f"metrics of segment {k}")
        a, b = ra.state, rb.state
        _assert_states_agree(shared, per_head, a, b, exact)
        if k == 0:
            # The first segment ends with heads 0, 1, 3 and 7 inactive: they are detached.
            assert set(np.flatnonzero(np.asarray(a.head_traces.rows.detached))) >= {0, 1, 3, 7}
    # Rows hold only detached heads' traces.
    rows = a.head_traces.rows
    assert not np.asarray(rows.weights)[~np.asarray(rows.detached)].any()


def test_single_step_updates_equal_per_head_traces():
    # IDBD without a bounder: elementwise arithmetic only, so bit for bit.
    shared, per_head = _pair(hidden_sizes=(8,), optimizer=IDBD(), bounder=None)
    obs, targets = _stream(seed=1)
    a = shared.init(FEATURES, jax.random.key(5))
    b = per_head.init(FEATURES, jax.random.key(5))
    for t in range(SEGMENT - 8, SEGMENT + 8):
        ra, rb = shared.update(a, obs[t], targets[t]), per_head.update(b, obs[t], targets[t])
        np.testing.assert_array_equal(np.asarray(ra.per_head_metrics), np.asarray(rb.per_head_metrics))
        np.testing.assert_array_equal(np.asarray(ra.predictions), np.asarray(rb.predictions))
        a, b = ra.state, rb.state
        _assert_states_agree(shared, per_head, a, b, exact=True)


@pytest.mark.slow
def test_batched_seeds_equal_per_head_traces():
    # Under vmap each path runs for every seed where one of them needs it; XLA fuses the
    # batched loops differently, so the seeds agree to float32 rounding (the trunk carries a
    # rounding difference of one head to every head in later steps).
    shared, per_head = _pair(hidden_sizes=(8,), optimizer=LMS(0.05), bounder=ObGDBounding())
    obs, targets = _stream(seed=2)
    keys = jax.random.split(jax.random.key(7), 2)
    ra = horde.run_multi_head_learning_loop_batched(shared, obs, targets, keys)
    rb = horde.run_multi_head_learning_loop_batched(per_head, obs, targets, keys)
    _assert_same(ra.per_head_metrics, rb.per_head_metrics, False, "batched metrics", rtol=1e-4, atol=1e-5)
    _assert_same(
        shared.head_traces(ra.states), per_head.head_traces(rb.states), False, "batched traces", rtol=1e-4, atol=1e-5
    )


def test_shared_traces_round_trip_and_layouts_do_not_mix():
    shared, per_head = _pair(hidden_sizes=(8,))
    assert shared.to_config()["shared_traces"] is True
    assert MultiHeadMLPLearner.from_config(per_head.to_config()).trace_groups is None
    assert MultiHeadMLPLearner.from_config(shared.to_config()).trace_groups is not None
    with pytest.raises(ValueError, match="state does not fit this learner"):
        shared.update(per_head.init(FEATURES, jax.random.key(0)), np.zeros(FEATURES), np.zeros(N_HEADS))
    with pytest.raises(horde.core.ArgumentTypeError, match="shared_traces"):
        MultiHeadMLPLearner(2, shared_traces="yes")


@pytest.mark.parametrize("optimizer, bounder", [(LMS(0.05), ObGDBounding()), (IDBD(), None)])
def test_branch_free_head_step_equals_the_loops_bit_for_bit(monkeypatch, optimizer, bounder):
    """On GPUs and TPUs the shared head step computes both of its paths and selects
    (``branch_free``) instead of running each in a loop of zero or one iteration: the same
    numbers bit for bit, through detaching, rejoining and the group-only path, in the scan and
    in single steps."""
    from horde.core import shared_traces as module

    obs, targets = _stream()

    def run(select: bool):
        monkeypatch.setattr(module, "branch_free", lambda: select)
        # A new learner per path: its compiled loop is cached per learner.
        learner = MultiHeadMLPLearner(
            N_HEADS, hidden_sizes=(8,), optimizer=optimizer, bounder=bounder, per_head_gamma_lamda=DECAYS
        )
        state = learner.init(FEATURES, jax.random.key(3))
        scanned = horde.run_multi_head_learning_loop(learner, state, obs, targets)
        single = state
        for t in range(12):
            single = learner.update(single, obs[t], targets[t]).state
        return scanned.state, scanned.per_head_metrics, single

    loops, selected = run(False), run(True)
    assert np.asarray(loops[0].head_traces.rows.detached).any() or np.asarray(loops[2].head_traces.rows.detached).any()
    _assert_same(selected, loops, True, "branch-free against loops")
