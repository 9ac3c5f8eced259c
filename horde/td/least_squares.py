"""Least-squares TD(λ) heads: every demon's TD fixed point on a fixed basis, solved online.

LSTD(λ) (Bradtke & Barto 1996; Boyan 2002) finds the weights ``w`` at which the expected TD
update on a fixed basis ``φ`` vanishes, ``E[z_t δ_t] = 0``, by accumulating the statistics

    A = ridge·D + Σ_t z_t (φ_t - γ'_{t+1} φ_{t+1})ᵀ        b_i = Σ_t z_t c_{i,t+1}
    D = diag(CONSTANT_RIDGE_SCALE, 1, ..., 1)                (a small ridge on the constant)
    z_t = ρ_t (γ_t λ z_{t-1} + φ_t)                          (zeroed when an episode ends)
    γ'_{t+1} = 0 where the episode terminated, else γ(S_{t+1})

and solving ``A w_i = b_i``. There is no step size and so no step-size noise: the weights are
the TD(λ) solution of everything seen so far. With the importance ratio ``ρ_t = π(A_t|S_t) /
μ(A_t|S_t)`` in the trace it is off-policy LSTD(λ) (Yu 2010, per-decision form, the trace of
GTD(λ)), whose solution is the off-policy TD(λ) fixed point; on-policy ``ρ = 1``. Where an
episode terminates the target is ``c + z_i`` (the demon's terminal outcome).

A and the trace depend on a demon only through its discount spec, ``λ`` and target policy, so
demons that agree on them (a **group**, ``lstd_groups``) share one ``A`` (``(m, m)``) and one
trace; ``b`` and ``w`` are per demon. A nexting Horde over 5 timescales keeps 5 matrices.

**Averages, not sums.** ``A`` and ``b`` are held as running averages with rate
``β_n = max((p + 1) / (n + p), forgetting)`` (``n`` the number of steps the statistic took,
``p`` = ``averaging_power``): a sum grows without bound and its float32 increments vanish, an
average stays of the data's size. ``p = 0`` (the default) gives the plain mean; ``p = 1``
weighs step ``k`` by ``k`` (polynomial-decay averaging, Shamir & Zhang 2013), so that early
steps fade.
Once ``β_n < forgetting`` the averages are exponential, with a window of ``1/forgetting``
steps. The ridge keeps the strength it has in the sums, relative to the ``1/β`` steps the
average holds: ``(Ā_g + β_g ridge I) w_i = (β_g / β_i) b̄_i``, which with ``p = 0`` and
``forgetting = 0`` is exactly ``(ridge I + Σ A_t)⁻¹ Σ b_t``.

**A fixed basis.** LSTD's statistics describe one basis; a basis computed from a moving
normaliser is a different one at every step, and a mean over all steps mixes them. So the
learner's normaliser learns for ``burn_in`` steps (3,000 by default) and is then frozen, and
the statistics start again there. On Pendulum-v1, whose random-torque stream drifts for
thousands of steps, this takes one seed's median from 0.158 (the normaliser learning
throughout, and a burn-in of 1,000 steps) to 0.064, the score with the normalisation fixed at
the first 80 %'s statistics; 3,000 steps rather than 1,000 do better on Acrobot-v1, whose
random-torque stream also drifts (``docs/guides/choosing-settings.md``). Before that the
statistics also start again at ``burn_in // 16`` and ``burn_in // 4``, and from the first of
these the basis reads a snapshot of the normaliser taken at the latest restart, so that short
runs predict from statistics of one basis too.

**Inactive demons.** A NaN cumulant leaves the demon's ``b_i``, count and weights untouched.
The group's ``A`` and trace move while any member is active: a demon inactive on its own steps
solves with its group's ``A`` over all of them; a demon whose cumulant is a ``function`` (the
only kind that can be NaN when demons evaluate themselves) gets a group of its own.

**When.** The solve (an LU factorisation per group, ``O(G m³)``, and ``O(n m²)`` for the
right-hand sides) runs every ``solve_every`` steps; each step predicts with the weights of the
last solve, so a prediction never uses the step it predicts. The solve sits in a
``jax.lax.while_loop`` of at most one pass rather than a ``cond``: under ``jax.vmap`` (many
seeds at once) a ``cond`` with a batched predicate becomes a ``select`` that evaluates the solve
at every step, whereas a batched while loop runs while any copy is due, so copies that step
together (``run_jax``'s seeds) still solve once every ``solve_every`` steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from demons import DemonSet
from horde.core import FourierFeatures, TraceGroups, as_float, as_instance, as_int, head_features_from_config

__all__ = [
    "CONSTANT_RIDGE_SCALE",
    "LSTDHeads",
    "LSTDState",
    "init_lstd",
    "lstd_restart",
    "lstd_basis",
    "lstd_groups",
    "lstd_heads_from_config",
    "lstd_rate",
    "lstd_solve",
    "lstd_step",
]

#: The ridge on the constant feature, as a fraction of ``ridge`` (``lstd_solve``).
CONSTANT_RIDGE_SCALE = 1e-3

_COUNT_CAP = 2**31 - 2  # int32 counts stop here instead of wrapping (1/n is then ~5e-10)


@dataclasses.dataclass(frozen=True)
class LSTDHeads:
    """Least-squares TD(λ) heads for a ``HordeLearner`` (module docstring): each demon's
    weights on the fixed basis ``φ(x) = [1, features(x)]`` of the normalised observation ``x``
    are its LSTD(λ) solution, re-solved every ``solve_every`` steps.

    Args:
        ridge: the ridge added to ``A`` (> 0), in the units of a sum over steps (as
            ``ridge·I + Σ_t z_t (φ_t - γ' φ_{t+1})ᵀ``): it weighs like ``ridge`` steps of
            data and fades as ``1/n``.
        solve_every: steps between solves (>= 1).
        forgetting: the smallest rate of the running averages of ``A`` and ``b``, in
            ``[0, 1)``: ``1e-5`` gives a window of about 100,000 steps once the polynomial
            rate falls below it. ``0`` keeps averaging over every step forever, but a float32
            average stops moving once its rate is below float32's resolution (about
            ``n = 10^7``).
        averaging_power: ``p >= 0``: the average weighs step ``k`` about ``k^p`` (exactly
            ``k`` for ``p = 1``); ``0`` the plain mean.
        burn_in: steps (>= 0) during which the learner's normaliser learns the
            observations' mean and spread; after them it is frozen, so that the basis stays
            fixed as LSTD assumes. On the way the statistics start again at ``restarts``
            (``burn_in // 16``, ``burn_in // 4`` and ``burn_in``), and from the first of them
            the basis reads a snapshot of the normaliser taken at the latest restart: each
            stretch of statistics describes one basis, so a run shorter than ``burn_in``
            predicts on the scale of its returns (without the snapshots a 2,000-step CartPole
            run predicted up to 3,000 for returns of at most 12). The weights of the last solve
            serve until the next. ``0``: the normaliser learns at every step and nothing is
            dropped.
        features: the basis after the constant: ``FourierFeatures`` of the normalised
            observation (the observation itself and random Fourier features of it). The
            default, ``FourierFeatures(256, bandwidth=1.0, input_clip=3.0, n_products=128,
            product_bandwidth=2.0)`` (which ``FourierFeatures``' own defaults do not give:
            spell ``input_clip`` and ``n_products`` out to keep them), feeds the cosines the
            observation clipped at three standard deviations, so that a state beyond the data
            seen is predicted by extrapolating along the linear parts only (unclipped, the
            weights fitted inside the data gave a sum of arbitrary phases there: a cart at 7
            standard deviations predicted at three times its return), and adds 128 products
            of a random direction of the observation and a cosine (a position scaled by a
            smooth function of the state): ``docs/concepts/least-squares-heads.md``, "Far
            from the data: the input clip" and "Products: a component scaled by the state".
    """

    ridge: float = 10.0
    solve_every: int = 250
    forgetting: float = 1e-5
    averaging_power: float = 0.0
    burn_in: int = 3000
    features: FourierFeatures = dataclasses.field(
        default_factory=lambda: FourierFeatures(
            256, bandwidth=1.0, input_clip=3.0, n_products=128, product_bandwidth=2.0
        )
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "ridge", as_float("LSTDHeads: ridge", self.ridge, low=0, low_open=True))
        object.__setattr__(self, "solve_every", as_int("LSTDHeads: solve_every", self.solve_every, low=1))
        object.__setattr__(
            self, "forgetting", as_float("LSTDHeads: forgetting", self.forgetting, low=0, high=1, high_open=True)
        )
        object.__setattr__(self, "averaging_power", as_float("LSTDHeads: averaging_power", self.averaging_power, low=0))
        object.__setattr__(self, "burn_in", as_int("LSTDHeads: burn_in", self.burn_in, low=0))
        as_instance(
            "LSTDHeads: features",
            self.features,
            FourierFeatures,
            example="FourierFeatures(256, input_clip=3.0, n_products=128)",
        )

    @property
    def restarts(self) -> tuple[int, ...]:
        """The steps after which the statistics start again and the basis's normaliser is
        snapshotted: ``burn_in / 16``, ``burn_in / 4`` and ``burn_in`` (rounded down; those
        above 0). Until the first the basis follows the learning normaliser; from each one to
        the next it reads the snapshot, so every stretch of statistics has one fixed basis and
        a run shorter than ``burn_in`` still predicts from a consistent one."""
        return tuple(sorted({b for b in (self.burn_in // 16, self.burn_in // 4, self.burn_in) if b > 0}))

    def basis_size(self, observation_dim: int) -> int:
        """``m``, the length of ``φ(x)`` for observations of length ``observation_dim``."""
        return 1 + self.features.size(observation_dim)

    def to_config(self) -> dict[str, Any]:
        return {
            "type": "LSTDHeads",
            "ridge": self.ridge,
            "solve_every": self.solve_every,
            "forgetting": self.forgetting,
            "averaging_power": self.averaging_power,
            "burn_in": self.burn_in,
            "features": self.features.to_config(),
        }


def lstd_heads_from_config(config: dict[str, Any] | None) -> LSTDHeads | None:
    """Rebuilds ``LSTDHeads`` from their ``to_config()`` dict (``None`` passes through).

    Raises:
        TypeError: ``config`` is not a dict.
        ValueError: its ``type`` is not ``"LSTDHeads"``, or a setting is out of range.
    """
    if config is None:
        return None
    config = dict(
        as_instance("heads config", config, dict, example="{'type': 'LSTDHeads'}, or 'td' / 'lstd' in a run config")
    )
    kind = config.pop("type", None)
    if kind != "LSTDHeads":
        raise ValueError(f"heads config 'type' must be 'LSTDHeads', got {kind!r}")
    if "features" in config:
        config["features"] = head_features_from_config(config["features"])
    known = {f.name for f in dataclasses.fields(LSTDHeads)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"heads config has unknown keys {unknown}; expected keys among {sorted(known | {'type'})}")
    return LSTDHeads(**config)


def lstd_groups(demons: DemonSet) -> TraceGroups:
    """Groups demons that share ``A`` and a trace: the same discount spec (so the same
    ``γ_t`` and ``γ'_{t+1}``), the same ``λ`` (as float32) and the same target policy (the same
    ``ρ_t``). A demon whose cumulant is a ``function`` (which may be NaN) has its own group.
    Unlike ``trace_groups``, demons with ``λ = 0`` and different discounts are apart: their
    traces agree but their ``A`` do not.

    Returns:
        ``TraceGroups``, groups numbered in order of their first demon.
    """
    keys = []
    for i, demon in enumerate(demons):
        own = i if getattr(demon.cumulant, "plain_data", True) is False else None
        keys.append((demon.discount, float(np.float32(demon.lamda)), demon.target_policy, own))
    return TraceGroups.from_keys(keys)


class LSTDState(NamedTuple):
    """The statistics and weights of LSTD(λ) heads (``G`` groups, ``n`` demons, basis ``m``).

    Attributes:
        a: ``Ā_g``, the running average of ``z_t (φ_t - γ'_{t+1} φ_{t+1})ᵀ``, ``(G, m, m)``.
        b: ``b̄_i``, the running average of ``z_t c_{i,t+1}``, ``(n, m)``.
        weights: ``w_i`` of the last solve, ``(n, m)``: ``v_i(s) = w_i · φ(s)``.
        traces: ``z_g``, ``(G, m)``.
        discounts: ``γ_{g,t}``, the group's discount of the current state (decays the trace
            at the next step), ``(G,)``.
        group_counts: steps in ``Ā_g``, int32 ``(G,)`` (stops at ``2^31 - 2``).
        demon_counts: steps in ``b̄_i`` (the demon's active steps), int32 ``(n,)``.
        since_solve: steps since the last solve, int32 scalar.
        steps: steps taken, int32 scalar; stops counting after ``burn_in``.
        basis_normalizer: the normaliser's state that the basis reads (``()`` without a
            normaliser): it follows the learner's normaliser until the first restart, and is
            then a snapshot of it taken at each restart (``LSTDHeads.restarts``).
    """

    a: jax.Array
    b: jax.Array
    weights: jax.Array
    traces: jax.Array
    discounts: jax.Array
    group_counts: jax.Array
    demon_counts: jax.Array
    since_solve: jax.Array
    steps: jax.Array
    basis_normalizer: Any = ()


def init_lstd(groups: TraceGroups, n_demons: int, basis_size: int, basis_normalizer: Any = ()) -> LSTDState:
    """Zero statistics and weights for ``groups`` and a basis of ``basis_size``, the basis read
    through ``basis_normalizer`` (the normaliser's initial state, or ``()``)."""
    g, m = groups.n_groups, int(basis_size)
    zeros = jnp.zeros
    return LSTDState(
        a=zeros((g, m, m), jnp.float32),
        b=zeros((n_demons, m), jnp.float32),
        weights=zeros((n_demons, m), jnp.float32),
        traces=zeros((g, m), jnp.float32),
        discounts=zeros((g,), jnp.float32),
        group_counts=zeros((g,), jnp.int32),
        demon_counts=zeros((n_demons,), jnp.int32),
        since_solve=zeros((), jnp.int32),
        steps=zeros((), jnp.int32),
        basis_normalizer=basis_normalizer,
    )


def lstd_restart(heads: LSTDHeads, steps: jax.Array) -> jax.Array:
    """Whether the statistics start again after step ``steps`` (counted from 1): a scalar bool,
    true at each of ``heads.restarts``."""
    if not heads.restarts:
        return jnp.zeros((), bool)
    return jnp.any(steps == jnp.asarray(heads.restarts, jnp.int32))


def lstd_basis(features: FourierFeatures, x: jax.Array) -> jax.Array:
    """``φ(x) = [1, features(x)]``, shape ``(..., 1 + features.size(d))``."""
    f = features(x)
    return jnp.concatenate([jnp.ones(f.shape[:-1] + (1,), f.dtype), f], axis=-1)


def lstd_rate(count: jax.Array, forgetting: float, power: float) -> jax.Array:
    """The averaging rate after ``count`` steps, ``max((p + 1) / (n + p), forgetting)`` (1 for
    ``n <= 1``), float32 of ``count``'s shape."""
    n = jnp.maximum(count, 1).astype(jnp.float32)
    return jnp.maximum((power + 1.0) / (n + power), jnp.float32(forgetting))


def lstd_solve(state: LSTDState, groups: TraceGroups, ridge: float, forgetting: float, power: float) -> jax.Array:
    """Every demon's weights ``w_i`` from ``(Ā_g + β_g ridge I) w_i = (β_g / β_i) b̄_i``.

    The right-hand sides of a group are solved together against one LU factorisation: they are
    scattered into a ``(G, m, K)`` block (``K`` the largest group), so the cost is one
    factorisation per group and no per-demon matrix is ever formed.

    Returns:
        ``(n, m)`` weights.
    """
    n, m = state.b.shape
    k = int(groups.sizes.max())
    group_of = np.asarray(groups.group_of)
    slot = np.zeros(n, np.int32)
    for g in range(groups.n_groups):  # static NumPy indexing, computed once at trace time
        members = np.flatnonzero(group_of == g)
        slot[members] = np.arange(members.size)
    beta_g = lstd_rate(state.group_counts, forgetting, power)
    beta_i = lstd_rate(state.demon_counts, forgetting, power)
    # The constant feature gets a thousandth of the ridge: a ridge on it pulls every
    # prediction's level toward 0 (by about 3 % at 1,600 steps for γ = 0.9), which matters for
    # cumulants far from 0, while a small one still keeps A invertible where γ = 1.
    penalty = jnp.ones(m, jnp.float32).at[0].set(CONSTANT_RIDGE_SCALE)
    matrices = state.a + (beta_g * jnp.float32(ridge))[:, None, None] * jnp.diag(penalty)
    rhs = state.b * (beta_g[group_of] / beta_i)[:, None]
    block = jnp.zeros((groups.n_groups, k, m), jnp.float32).at[group_of, slot].set(rhs)
    # LAPACK factorises column-major matrices: factorising Āᵀ (and solving with ``trans=1``)
    # lets XLA keep Ā row-major in the carry, where the per-step update writes it contiguously.
    factors = jax.scipy.linalg.lu_factor(jnp.swapaxes(matrices, 1, 2))
    solved = jax.scipy.linalg.lu_solve(factors, jnp.swapaxes(block, 1, 2), trans=1)  # (G, m, K)
    return solved[group_of, :, slot]


def lstd_step(
    state: LSTDState,
    groups: TraceGroups,
    heads: LSTDHeads,
    phi: jax.Array,
    phi_next: jax.Array,
    cumulants: jax.Array,
    group_discounts: jax.Array,
    group_rhos: jax.Array | None,
    lamdas: jax.Array,
    terminated: jax.Array,
    episode_ended: jax.Array,
) -> LSTDState:
    """One step of the statistics, and a solve when ``solve_every`` steps have passed.

    Args:
        state: the current ``LSTDState``.
        groups: the demons' ``lstd_groups``.
        heads: the settings.
        phi: ``φ(S_t)``, ``(m,)``.
        phi_next: ``φ(S_{t+1})``, ``(m,)`` (the real final observation where truncated).
        cumulants: ``c_{i,t+1}`` plus the terminal outcome where terminated, ``(n,)``; NaN
            makes a demon inactive.
        group_discounts: ``γ_g(S_{t+1})`` of each group, ``(G,)``.
        group_rhos: ``ρ_{g,t}``, ``(G,)``, or ``None`` for 1.
        lamdas: each group's ``λ_g``, ``(G,)``.
        terminated: scalar bool: no bootstrap (``γ' = 0``).
        episode_ended: scalar bool: terminated or truncated; the traces are zeroed after the step.

    Returns:
        The new state.
    """
    group_of = jnp.asarray(groups.group_of)
    n_groups = groups.n_groups
    active = ~jnp.isnan(cumulants)
    group_active = jax.ops.segment_max(active.astype(jnp.int32), group_of, num_segments=n_groups) > 0

    z = (state.discounts * lamdas)[:, None] * state.traces + phi
    if group_rhos is not None:
        z = group_rhos[:, None] * z
    z = jnp.where(group_active[:, None], z, state.traces)
    bootstrap = jnp.where(terminated, 0.0, group_discounts)
    td_features = phi[None, :] - bootstrap[:, None] * phi_next[None, :]  # (G, m)

    group_counts = jnp.where(group_active, jnp.minimum(state.group_counts, _COUNT_CAP) + 1, state.group_counts)
    demon_counts = jnp.where(active, jnp.minimum(state.demon_counts, _COUNT_CAP) + 1, state.demon_counts)
    beta_g = jnp.where(group_active, lstd_rate(group_counts, heads.forgetting, heads.averaging_power), 0.0)
    beta_i = jnp.where(active, lstd_rate(demon_counts, heads.forgetting, heads.averaging_power), 0.0)
    sample_a = z[:, :, None] * td_features[:, None, :]
    # (1 - β) Ā + β sample: the first step after a restart (count 1, β = 1) replaces the old
    # statistics exactly, so a restart only resets the counts.
    a = (1.0 - beta_g)[:, None, None] * state.a + beta_g[:, None, None] * sample_a
    sample_b = z[group_of] * jnp.where(active, cumulants, 0.0)[:, None]
    b = jnp.where(active[:, None], (1.0 - beta_i)[:, None] * state.b + beta_i[:, None] * sample_b, state.b)

    since = state.since_solve + 1
    steps = jnp.minimum(state.steps, heads.burn_in) + 1
    # At each of ``heads.restarts`` the statistics start again (the weights stay until the
    # next solve): the basis has just changed.
    restart = lstd_restart(heads, steps)
    new = state._replace(
        a=a,
        b=b,
        traces=jnp.where(episode_ended, 0.0, z),
        discounts=jnp.where(group_active, group_discounts, state.discounts),
        group_counts=group_counts,
        demon_counts=demon_counts,
        since_solve=since,
        steps=steps,
    )

    # A while loop of at most one pass rather than a ``cond``: under ``jax.vmap`` a batched
    # ``cond`` becomes a ``select`` that solves at every step, whereas a batched while loop runs
    # while any copy is due, so copies that step together still solve once per ``solve_every``.
    # Its carry is only the weights and the counter (the statistics are read, not carried).
    def due(carry: tuple[jax.Array, jax.Array]) -> jax.Array:
        return carry[1] >= heads.solve_every

    def solve(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        # Tied to the carry by the barrier, so that XLA cannot hoist the solve out of the loop
        # (where it would run at every step).
        stats, _ = jax.lax.optimization_barrier((new, carry[1]))
        weights = lstd_solve(stats, groups, heads.ridge, heads.forgetting, heads.averaging_power)
        return weights, jnp.zeros_like(carry[1])

    weights, since = jax.lax.while_loop(due, solve, (new.weights, since))
    # The restart comes after a solve due on its step, which so reads the statistics before it:
    # the weights from them serve until the next solve (zeroed ones would predict 0 until then).
    # Resetting the counts is the restart: the next step's rate is 1 (``Ā``, ``b̄`` replaced).
    return new._replace(
        group_counts=jnp.where(restart, 0, new.group_counts),
        demon_counts=jnp.where(restart, 0, new.demon_counts),
        weights=weights,
        since_solve=since,
    )
