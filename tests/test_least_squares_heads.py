"""Least-squares TD(λ) heads (``HordeLearner(heads=LSTDHeads())``): a slow float64 LSTD(λ)
loop per demon, closed forms on the random walk and Collision, inactive demons, explicit
discounts and ratios, configs and checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
import horde
from demons import Demon, DemonSet, cumulants, discounts, policies
from horde import FourierFeatures, HordeLearner, LSTDHeads, run_jax
from horde.cli import load_checkpoint, save_checkpoint
from horde.td import Transitions, lstd_groups, lstd_heads_from_config

DIM = 3
FEATURES = FourierFeatures(6, bandwidth=1.5, seed=3)


def _demons():
    return [
        Demon("x0@0.5", cumulants.observation(0), discounts.constant(0.5), lamda=0.5),
        Demon("x1@0.5", cumulants.observation(1), discounts.constant(0.5), lamda=0.5),  # group of x0@0.5
        Demon("x2@0.9", cumulants.observation(2), discounts.constant(0.9)),
        Demon(
            "r@0.8 off",
            cumulants.reward(),
            discounts.constant(0.8),
            lamda=0.9,
            target_policy=policies.fixed([0.7, 0.3]),
        ),
        Demon("ttt", cumulants.constant(1.0), discounts.constant(0.8), lamda=0.9, z=-2.0),
        # a state-dependent discount: the trace decays by γ(S_t), not γ(S_{t+1})
        Demon("until", cumulants.observation(0), discounts.until(1, 0.5, gamma=0.9), lamda=0.8),
    ]


def _stream(steps=120, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(steps, DIM)).astype(np.float32)
    next_obs = np.roll(obs, -1, 0) + rng.normal(scale=0.1, size=obs.shape).astype(np.float32)
    terminated = rng.random(steps) < 0.05
    truncated = ~terminated & (rng.random(steps) < 0.05)
    actions = rng.integers(0, 2, steps).astype(np.int32)
    return Transitions(
        obs,
        actions,
        rng.normal(size=steps).astype(np.float32),
        next_obs.astype(np.float32),
        terminated,
        truncated,
        np.full(steps, 0.5, np.float32),
    )


def _reference(ds, stream, heads):
    """LSTD(λ) per demon in float64, as written: sums, ridge·I, a solve every k steps, and each
    step's prediction from the weights of the last solve. With ``averaging_power = 1`` step
    ``n`` (from 1) enters the sums with weight ``n`` and the ridge as ``n ridge I``
    (``β_n Σ_k k = n``). At ``burn_in // 16``, ``burn_in // 4`` and ``burn_in`` the sums start
    again."""
    w_proj, b_proj = FEATURES.projection(DIM)
    basis = lambda x: np.concatenate([[1.0], x, np.cos(x @ w_proj.astype(np.float64) + b_proj)])  # noqa: E731
    ev = ds.evaluate_batch(
        stream.observations, stream.actions, stream.rewards, stream.next_observations, stream.behaviour_probs
    )
    c, gammas, rhos = (np.asarray(a, np.float64) for a in (ev.cumulants, ev.discounts, ev.rhos))
    steps, n = c.shape
    m = 1 + FEATURES.size(DIM)
    predictions = np.zeros((steps, n))
    for i, demon in enumerate(ds):
        a, b, w, z, gamma_t = np.zeros((m, m)), np.zeros(m), np.zeros(m), np.zeros(m), 0.0
        for t in range(steps):
            phi = basis(stream.observations[t].astype(np.float64))
            phi_next = basis(stream.next_observations[t].astype(np.float64))
            predictions[t, i] = w @ phi
            z = rhos[t, i] * (gamma_t * demon.lamda * z + phi)
            bootstrap = 0.0 if stream.terminated[t] else gammas[t, i]
            weight = (t + 1.0) ** heads.averaging_power
            a += weight * np.outer(z, phi - bootstrap * phi_next)
            b += weight * z * (c[t, i] + (demon.z if stream.terminated[t] else 0.0))
            gamma_t = gammas[t, i]
            if stream.terminated[t] or stream.truncated[t]:
                z = np.zeros(m)
            if (t + 1) % heads.solve_every == 0:  # before a restart on the same step
                ridge = heads.ridge * (t + 1.0 if heads.averaging_power == 1 else 1.0)
                penalty = np.ones(m)
                penalty[0] = 1e-3  # the constant feature's share of the ridge
                w = np.linalg.solve(a + ridge * np.diag(penalty), b)
            if t + 1 in heads.restarts:
                a, b = np.zeros((m, m)), np.zeros(m)
    return predictions


# burn_in 56: restarts at 3, 14 and 56, the last two on steps where a solve (every 7) is due
@pytest.mark.parametrize(("lamda_scale", "power", "burn_in"), [(1.0, 0.0, 56), (0.0, 0.0, 0), (1.0, 1.0, 0)])
def test_the_scan_equals_a_float64_lstd_lambda_loop_per_demon(lamda_scale, power, burn_in):
    demons = [Demon(d.name, d.cumulant, d.discount, d.lamda * lamda_scale, d.target_policy, d.z) for d in _demons()]
    heads = LSTDHeads(
        ridge=2.0, solve_every=7, forgetting=0.0, averaging_power=power, burn_in=burn_in, features=FEATURES
    )
    learner = HordeLearner(demons, heads=heads, normalizer=None)
    stream = _stream()
    result = learner.scan_compiled(learner.init(DIM, jax.random.key(0)), stream)
    expected = _reference(learner.demons, stream, heads)
    assert np.abs(expected[7:]).max() > 0.1  # the weights moved
    np.testing.assert_allclose(np.asarray(result.predictions), expected, rtol=2e-3, atol=2e-4)


def test_x0_and_x1_share_a_matrix_and_lamda_zero_demons_of_other_discounts_do_not():
    groups = lstd_groups(HordeLearner(_demons(), heads=LSTDHeads()).demons)
    assert groups.group_of.tolist() == [0, 0, 1, 2, 3, 4]
    same_trace = [
        Demon("a", cumulants.observation(0), discounts.constant(0.5)),
        Demon("b", cumulants.observation(0), discounts.constant(0.9)),
    ]
    assert lstd_groups(HordeLearner(same_trace, heads=LSTDHeads()).demons).n_groups == 2


def test_forgetting_takes_over_once_one_over_n_reaches_it():
    """Plain means (``averaging_power = 0``) with ``forgetting = 1/50`` and ``1/10``: the rates
    ``max(1/n, forgetting)`` agree for the first 10 steps, so the solves at steps 5 and 10
    agree; after that ``1/10`` forgets and the next solves differ."""
    stream = _stream(40)

    def predictions(forgetting):
        heads = LSTDHeads(ridge=2.0, solve_every=5, forgetting=forgetting, averaging_power=0.0, features=FEATURES)
        learner = HordeLearner(_demons(), heads=heads, normalizer=None)
        return np.asarray(learner.scan_compiled(learner.init(DIM, jax.random.key(0)), stream).predictions)

    slow, fast = predictions(1 / 50), predictions(0.1)
    np.testing.assert_allclose(slow[:15], fast[:15], rtol=1e-5, atol=1e-6)
    assert np.abs(slow[15:] - fast[15:]).max() > 1e-3


def test_random_walk_run_jax_lstd_reaches_the_true_values():
    """Tabular features (``[1, one-hot]``), λ = 0, through ``run_jax``: the true values
    ``1/6 ... 5/6`` (the closed form on a recorded stream is the next test)."""
    heads = LSTDHeads(ridge=1e-3, solve_every=100, features=FourierFeatures(0))
    learner = HordeLearner([Demon("v", cumulants.reward(), discounts.constant(1.0))], heads=heads, normalizer=None)
    result = run_jax(learner, envs.RandomWalk(), steps=4000, seed=0, record_every=100, progress=False)
    values = np.asarray([float(learner.predict(result.state, x)[0]) for x in np.eye(5, dtype=np.float32)])
    assert np.sqrt(np.mean((values - np.arange(1, 6) / 6) ** 2)) < 0.05, values


def test_random_walk_closed_form_of_the_empirical_chain():
    """The same on a recorded stream: LSTD(0)'s values equal ``(I - P̂)⁻¹ r̂`` to float32 rounding."""
    rng = np.random.default_rng(1)
    state, steps = 2, 3000
    obs, nxt, rew, term = [], [], [], []
    for _ in range(steps):
        move = 1 if rng.random() < 0.5 else -1
        s2 = state + move
        obs.append(np.eye(5)[state])
        done = s2 < 0 or s2 > 4
        nxt.append(np.zeros(5) if done else np.eye(5)[s2])
        rew.append(1.0 if s2 > 4 else 0.0)
        term.append(done)
        state = 2 if done else s2
    stream = Transitions(
        np.asarray(obs, np.float32),
        np.zeros(steps, np.int32),
        np.asarray(rew, np.float32),
        np.asarray(nxt, np.float32),
        np.asarray(term),
        np.zeros(steps, bool),
        np.ones(steps, np.float32),
    )
    heads = LSTDHeads(
        ridge=1e-4, solve_every=steps, forgetting=0.0, averaging_power=0.0, burn_in=0, features=FourierFeatures(0)
    )
    learner = HordeLearner([Demon("v", cumulants.reward(), discounts.constant(1.0))], heads=heads, normalizer=None)
    final = learner.scan_compiled(learner.init(5, jax.random.key(0)), stream).state
    values = np.asarray([float(learner.predict(final, x)[0]) for x in np.eye(5, dtype=np.float32)])
    s = np.argmax(stream.observations, 1)
    counts = np.zeros((5, 5))
    visits = np.bincount(s, minlength=5).astype(float)
    r_hat = np.bincount(s, weights=stream.rewards, minlength=5) / visits
    for t in np.flatnonzero(~stream.terminated):
        counts[s[t], np.argmax(stream.next_observations[t])] += 1
    expected = np.linalg.solve(np.eye(5) - counts / visits[:, None], r_hat)
    np.testing.assert_allclose(values, expected, atol=2e-3)


def test_collision_off_policy_lstd_reaches_the_target_policys_values():
    """Off-policy LSTD(λ) (ρ in the trace) on Collision with one-hot features: the values of
    always moving forward, ``0.9^(7-s)``, from the 50/50 behaviour."""
    forward = Demon("collide", cumulants.reward(), discounts.constant(0.9), target_policy=policies.fixed([1.0, 0.0]))
    heads = LSTDHeads(ridge=1e-2, solve_every=100, features=FourierFeatures(0))
    learner = HordeLearner([forward], heads=heads, normalizer=None)
    result = run_jax(learner, envs.Collision(features="onehot"), steps=6000, seed=0, policy="env", progress=False)
    values = np.asarray([float(learner.predict(result.state, x)[0]) for x in np.eye(8, dtype=np.float32)])
    np.testing.assert_allclose(values, envs.Collision.true_values(), atol=0.05)


def test_an_inactive_demon_leaves_its_b_and_count_bit_identical():
    learner = HordeLearner(_demons(), heads=LSTDHeads(features=FEATURES), normalizer=None)
    state = learner.init(DIM, jax.random.key(0))
    for k in range(3):
        state = learner.update(state, np.ones(DIM) * k, np.arange(6.0), np.ones(DIM), rhos=np.ones(6)).state
    c = np.array([np.nan, 1.0, 2.0, np.nan, 3.0, 4.0])
    after = learner.update(state, np.ones(DIM), c, np.zeros(DIM), rhos=np.ones(6)).state
    for i in (0, 3):
        np.testing.assert_array_equal(np.asarray(after.heads.b[i]), np.asarray(state.heads.b[i]))
        assert int(after.heads.demon_counts[i]) == int(state.heads.demon_counts[i]) == 3
    assert not np.array_equal(np.asarray(after.heads.b[1]), np.asarray(state.heads.b[1]))
    # demon 3 is alone in its group: its A and trace stay too
    group = lstd_groups(learner.demons).group_of[3]
    np.testing.assert_array_equal(np.asarray(after.heads.a[group]), np.asarray(state.heads.a[group]))


def test_explicit_discounts_or_ratios_that_break_a_group_are_refused_by_name():
    learner = HordeLearner(_demons(), heads=LSTDHeads(features=FEATURES), normalizer=None)
    state = learner.init(DIM, jax.random.key(0))
    x, c = np.ones(DIM), np.ones(6)
    with pytest.raises(ValueError, match=r"discounts of demon 'x1@0.5' must equal that of 'x0@0.5'.*got 0.4"):
        learner.update(state, x, c, x, discounts=[0.5, 0.4, 0.9, 0.8, 0.8, 0.9], rhos=np.ones(6))
    with pytest.raises(ValueError, match=r"rhos of demon 'x1@0.5' must equal that of 'x0@0.5'"):
        learner.update(state, x, c, x, rhos=[1.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    # equal within each group: the same update as the demons' own discounts
    own = learner.update(state, x, c, x, rhos=np.ones(6)).state
    given = learner.update(state, x, c, x, discounts=[0.5, 0.5, 0.9, 0.8, 0.8, 0.0], rhos=np.ones(6)).state
    for a, b in zip(jax.tree_util.tree_leaves(own), jax.tree_util.tree_leaves(given)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_sizes": (8,)}, r"hidden_sizes must be \(\) with heads="),
        ({"step_size": 0.1}, "step_size must be None with least-squares heads"),
        ({"head_features": FourierFeatures(8)}, "head_features must be None with least-squares heads"),
        ({"diagnostics": True}, "diagnostics must be False with least-squares heads"),
    ],
)
def test_settings_least_squares_heads_have_no_use_for_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HordeLearner(_demons(), heads=LSTDHeads(), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ridge": 0.0}, "LSTDHeads: ridge"),
        ({"solve_every": 0}, "LSTDHeads: solve_every"),
        ({"forgetting": 1.0}, "LSTDHeads: forgetting"),
        ({"averaging_power": -1.0}, "LSTDHeads: averaging_power"),
        ({"burn_in": -1}, "LSTDHeads: burn_in"),
    ],
)
def test_lstd_heads_refuse_bad_settings_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LSTDHeads(**kwargs)


def test_config_and_checkpoint_round_trip_the_heads(tmp_path):
    heads = LSTDHeads(ridge=3.0, solve_every=5, forgetting=1e-3, features=FEATURES)
    learner = HordeLearner(_demons(), heads=heads)
    assert isinstance(learner.core.normalizer, horde.WelfordNormalizer)
    rebuilt = HordeLearner.from_config(learner.to_config())
    assert rebuilt.heads == heads and rebuilt.to_config() == learner.to_config()
    state = learner.scan_compiled(learner.init(DIM, jax.random.key(0)), _stream(12)).state
    path = save_checkpoint(tmp_path / "ck", learner, state, {"step": 12})
    loaded_learner, loaded, meta = load_checkpoint(path)
    assert loaded_learner.heads == heads and meta == {"step": 12}
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = jnp.ones(DIM)
    np.testing.assert_array_equal(np.asarray(loaded_learner.predict(loaded, x)), np.asarray(learner.predict(state, x)))
    assert "heads" not in HordeLearner(_demons(), heads="td").to_config()  # as configs from before heads
    chosen = HordeLearner(_demons())  # least-squares heads by default: stored, so they come back
    assert HordeLearner.from_config(chosen.to_config()).heads == LSTDHeads()


def test_a_daemon_predicts_and_learns_like_the_learner():
    learner = HordeLearner(_demons()[:2], heads=LSTDHeads(solve_every=2, features=FEATURES), normalizer=None)
    state = learner.init(DIM, jax.random.key(0))
    daemon = horde.Daemon(learner, state)
    obs = np.random.default_rng(0).random((6, DIM)).astype(np.float32)
    for k in range(5):
        daemon.update_from_transition(obs[k], 0, 0.0, obs[k + 1])
        state = learner.update_from_transition(state, obs[k], 0, 0.0, obs[k + 1]).state
    expected = np.asarray(learner.predict(state, obs[5]))
    assert np.abs(expected).min() > 0.01
    np.testing.assert_allclose(daemon.predict(obs[5]), expected, rtol=1e-6)


def test_the_normaliser_learns_for_burn_in_steps_and_then_stays_fixed():
    stream = _stream(30)

    def normaliser_states(burn_in):
        learner = HordeLearner(_demons(), heads=LSTDHeads(burn_in=burn_in, features=FEATURES))
        state = learner.init(DIM, jax.random.key(0))
        early = learner.scan_compiled(state, jax.tree_util.tree_map(lambda x: x[:10], stream)).state
        late = learner.scan_compiled(early, jax.tree_util.tree_map(lambda x: x[10:], stream)).state
        return early.core.normalizer_state, late.core.normalizer_state

    early, late = normaliser_states(10)
    assert int(early.count) == 10
    for a, b in zip(jax.tree_util.tree_leaves(early), jax.tree_util.tree_leaves(late)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    _, learning = normaliser_states(0)
    assert int(learning.count) == 30


def test_heads_config_with_an_unknown_key_names_it():
    with pytest.raises(ValueError, match=r"heads config has unknown keys \['foo'\]; expected keys among"):
        lstd_heads_from_config({"type": "LSTDHeads", "foo": 1})


def test_vmapped_copies_at_different_phases_solve_on_their_own_steps():
    # Under vmap the solve sits in a batched while loop: a copy solves exactly when its own
    # counter says so, whatever the other copies' counters (here 3 steps apart).
    learner = HordeLearner(_demons(), heads=LSTDHeads(solve_every=5, burn_in=0, features=FEATURES))
    stream = _stream(40)
    first = jax.tree_util.tree_map(lambda x: x[:20], stream)
    second = jax.tree_util.tree_map(lambda x: x[20:], stream)
    fresh = learner.init(DIM, jax.random.key(0))
    ahead = learner.scan_compiled(fresh, jax.tree_util.tree_map(lambda x: x[:3], first)).state
    assert int(ahead.heads.since_solve) == 3

    def run(state, transitions):
        return learner.scan_traced(state, transitions).predictions

    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), fresh, ahead)
    streams = jax.tree_util.tree_map(lambda *x: jnp.stack(x), first, second)
    batched = np.asarray(jax.jit(jax.vmap(run))(stacked, streams))
    for copy, (state, transitions) in enumerate(((fresh, first), (ahead, second))):
        alone = np.asarray(learner.scan_compiled(state, transitions).predictions)
        assert np.abs(alone).max() > 0.1  # solved at least once
        np.testing.assert_allclose(batched[copy], alone, rtol=1e-4, atol=1e-5)


def test_the_basis_reads_a_snapshot_of_the_normaliser_taken_at_each_restart():
    heads = LSTDHeads(burn_in=64, solve_every=5, features=FEATURES)
    assert heads.restarts == (4, 16, 64)
    learner = HordeLearner(_demons(), heads=heads)
    stream = _stream(80)
    state = learner.init(DIM, jax.random.key(0))

    def after(steps):
        return learner.scan_compiled(state, jax.tree_util.tree_map(lambda x: x[:steps], stream)).state

    def same(a, b):
        for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v))

    early = after(3)  # before the first restart the basis follows the learning normaliser
    same(early.heads.basis_normalizer, early.core.normalizer_state)
    at_16, at_20, at_70 = after(16), after(20), after(70)
    assert int(at_20.core.normalizer_state.count) == 20
    same(at_20.heads.basis_normalizer, at_16.core.normalizer_state)  # the snapshot of step 16
    same(at_70.heads.basis_normalizer, at_70.core.normalizer_state)  # frozen at 64, both
    assert int(at_70.core.normalizer_state.count) == 64
    # Predictions read the snapshot, not the learning normaliser.
    x = stream.observations[25]
    snapshot = learner.core.normalizer.normalize(at_20.heads.basis_normalizer, jnp.asarray(x))
    expected = np.asarray(at_20.heads.weights) @ np.concatenate(
        [
            [1.0],
            np.asarray(snapshot),
            np.cos(np.asarray(snapshot) @ FEATURES.projection(DIM)[0] + FEATURES.projection(DIM)[1]),
        ]
    )
    assert np.abs(expected).max() > 0.01
    np.testing.assert_allclose(np.asarray(learner.predict(at_20, x)), expected, rtol=1e-4, atol=1e-5)


def test_the_default_chooses_least_squares_heads_unless_a_trunk_setting_or_many_groups():
    ds = _demons()
    assert HordeLearner(ds).heads == LSTDHeads()
    assert not HordeLearner(ds).shards_seeds and HordeLearner(ds, heads="td").shards_seeds
    assert HordeLearner(ds, heads="lstd").heads == LSTDHeads()
    assert HordeLearner(ds, normalizer=None).heads == LSTDHeads()  # the normaliser serves both
    for setting in (
        {"hidden_sizes": ()},
        {"hidden_sizes": (8,)},
        {"step_size": 0.01},
        {"optimizer": horde.LMS(0.01)},
        {"head_optimizer": horde.Autostep()},
        {"bounder": horde.ObGDBounding()},
        {"diagnostics": True},
        {"sparsity": 0.5},
        {"use_layer_norm": False},
        {"shared_traces": False},
        {"head_features": None},
        {"heads": "td"},
    ):
        learner = HordeLearner(ds, **setting)
        assert learner.heads is None, setting
        assert learner.core.hidden_sizes == setting.get("hidden_sizes", (128, 128)), setting
    # 257 groups (one discount each) are past AUTO_LSTD_MAX_GROUPS = 256: TD heads
    many = [Demon(f"d{k}", cumulants.reward(), discounts.constant(0.5 + k / 1000)) for k in range(257)]
    assert horde.td.AUTO_LSTD_MAX_GROUPS == 256
    assert HordeLearner(many).heads is None
    assert HordeLearner(many[:256]).heads == LSTDHeads()
    config = {"demons": DemonSet(ds).to_dict()["demons"]}
    assert HordeLearner.from_config({**config, "heads": "td"}).heads is None  # as TOML writes it
    assert HordeLearner.from_config({**config, "heads": "lstd"}).heads == LSTDHeads()
    assert HordeLearner.from_config(config).heads == LSTDHeads()
    with pytest.raises(ValueError, match=r"heads must be 'td', 'lstd', an LSTDHeads or None, got 'least-squares'"):
        HordeLearner(ds, heads="least-squares")
    with pytest.raises(TypeError, match=r"heads must be 'td', 'lstd', an LSTDHeads or None, got 3 \(int\)"):
        HordeLearner(ds, heads=3)
    # A large observation: the automatic choice refuses at init rather than holding GiBs
    wide = HordeLearner(ds[:1])
    with pytest.raises(ValueError, match=r"observation_dim 20000: .* 1 matrices of 20385x20385 .*heads='td'"):
        wide.init(20000, jax.random.key(0))
    assert HordeLearner(ds[:1], heads="td").init(20000, jax.random.key(0)).core.head_params.weights.shape[0] == 1


def _ar1_stream(steps: int, dim: int, seed: int, offset: float = 0.0) -> Transitions:
    """A continuing stream whose observation is ``offset`` plus an AR(1) process
    ``x' = 0.9 x + N(0, I)`` of ``dim`` components, from ``x = 0``."""
    rng = np.random.default_rng(seed)
    x = np.zeros((steps + 1, dim))
    for t in range(steps):
        x[t + 1] = 0.9 * x[t] + (rng.normal() if dim == 1 else rng.normal(size=dim))
    obs = (x + offset).astype(np.float32)
    flags = np.zeros(steps, bool)
    return Transitions(
        obs[:-1],
        np.zeros(steps, np.int32),
        np.zeros(steps, np.float32),
        obs[1:],
        flags,
        flags,
        np.ones(steps, np.float32),
    )


def test_a_cumulant_far_from_zero_is_not_pulled_toward_zero_by_the_ridge():
    # An AR(1) observation around 10,000: at 2,600 steps a full ridge on the constant feature
    # predicted about 2 % (γ = 0) to 3 % (γ = 0.9) too low; a thousandth of it, about 0.03 %.
    stream = _ar1_stream(2600, 1, seed=0, offset=1e4)
    ds = [Demon(f"x@{g}", cumulants.observation(0), discounts.constant(g)) for g in (0.0, 0.9)]
    learner = HordeLearner(ds)
    predictions = np.asarray(learner.scan_compiled(learner.init(1, jax.random.key(0)), stream).predictions)
    np.testing.assert_allclose(predictions[1000:].mean(0), [1e4, 1e5], rtol=1e-3)


@pytest.mark.parametrize(
    "setting",
    [
        {"sparsity": 0.5},
        {"leaky_relu_slope": 0.3},
        {"use_layer_norm": False},
        {"shared_traces": False},
        {"secondary_step_size": 0.3},
        {"diagnostics_step_size": 0.2},
    ],
)
def test_trunk_settings_least_squares_heads_would_ignore_are_refused_by_name(setting):
    ((name, value),) = setting.items()
    with pytest.raises(ValueError, match=rf"{name} has no use with least-squares heads .* got {value!r}"):
        HordeLearner(_demons(), heads="lstd", **setting)
    # at the value a saved configuration writes, accepted (configs round trip)
    learner = HordeLearner(_demons(), heads=LSTDHeads(), sparsity=0.9, use_layer_norm=True)
    assert HordeLearner.from_config(learner.to_config()).to_config() == learner.to_config()


def test_beyond_the_input_clip_a_prediction_is_affine_in_the_observation():
    """The default basis clips the Fourier part's input at 3 standard deviations: far out, only
    the linear part moves, so predictions along a ray are affine (equal differences); without
    the clip the cosines keep turning and they are not."""
    assert LSTDHeads().features == FourierFeatures(
        256, bandwidth=1.0, input_clip=3.0, n_products=128, product_bandwidth=2.0
    )
    stream = _ar1_stream(1200, 2, seed=1)
    ds = [Demon("x0@0.9", cumulants.observation(0), discounts.constant(0.9))]
    ray = [np.array([t, 0.5], np.float32) for t in (40.0, 60.0, 80.0, 100.0)]  # ~20+ std out
    second = {}
    for clip in (3.0, None):
        features = FourierFeatures(256, bandwidth=1.0, input_clip=clip, n_products=128, product_bandwidth=2.0)
        heads = LSTDHeads(burn_in=200, solve_every=100, features=features)
        learner = HordeLearner(ds, heads=heads)
        final = learner.scan_compiled(learner.init(2, jax.random.key(0)), stream).state
        v = np.asarray([float(learner.predict(final, p)[0]) for p in ray], np.float64)
        assert np.all(np.isfinite(v))
        second[clip] = np.abs(np.diff(v, 2)).max() / np.abs(np.diff(v)).max()
    assert second[3.0] < 1e-3  # float32 rounding only
    assert second[None] > 1e-2
