"""HordeLearner: many general value functions (demons) learned at once on a multi-head core.

Each demon ``i`` is one head of a ``MultiHeadMLPLearner``, with prediction
``v_i(s) = w_i·h(s) + b_i``. For a transition ``(S_t, A_t, R_{t+1}, S_{t+1})`` with cumulants
``c_{i,t+1}``, next discounts ``γ_{i,t+1} = γ_i(S_{t+1})`` and importance ratios
``ρ_{i,t} = π_i(A_t|S_t) / μ(A_t|S_t)`` the update is (White 2015; Sutton et al. 2011, Horde;
Maei 2011, GTD(λ)):

* TD target ``y_i = c_{i,t+1} + γ_{i,t+1} v_i(S_{t+1})`` with the weights *before* the update;
  where ``terminated`` there is no bootstrap and the target is ``c_{i,t+1} + z_i`` (the demon's
  terminal outcome); where ``truncated`` the target bootstraps from the real final observation.
* TD error ``δ_i = y_i - v_i(S_t)``; a NaN cumulant makes the demon inactive for the step.
* head traces ``z_i ← ρ_{i,t} (γ_{i,t} λ_i z_i + h_t)``, decayed by the discount of the step
  they decay over (``γ_{i,t}``, from the previous transition), zeroed at every episode start;
* on-policy demons: TD(λ), ``w_i += δ_i s_i`` with ``s_i`` the optimizer's step for ``z_i``;
* off-policy demons: GTD(λ) on the head features, with secondary weights ``u_i``::

      w_i += α [δ_i z_i - γ_{i,t+1} (1 - λ_i) (z_i·u_i) h_{t+1}]
      u_i += β [δ_i z_i - (u_i·h_t) h_t]

* the trunk keeps ``γλ = 0`` and takes the ρ-weighted semi-gradient: one VJP at the
  cotangent ``Σ_i ρ_i δ_i w_i``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from demons import Demon, DemonSet
from horde.core.bounders import ObGDBounding, bounder_from_config
from horde.core.multi_head_learner import (
    HeadParams,
    MultiHeadMLPLearner,
    MultiHeadMLPState,
    all_finite,
    any_inf,
    as_vector,
    check_flag,
    check_keys,
    check_observation_values,
    concrete_values,
    is_tracer,
    select_heads,
)
from horde.core.normalizers import Normalizer, normalizer_from_config
from horde.core.optimizers import Optimizer, optimizer_from_config

__all__ = [
    "DiagnosticsState",
    "HordeLearner",
    "HordeState",
    "HordeUpdateResult",
    "Transitions",
    "HordeLearningResult",
    "BatchedHordeResult",
    "run_horde_learning_loop",
    "run_horde_learning_loop_batched",
]


class HordeState(NamedTuple):
    """State of a HordeLearner.

    Attributes:
        core: the multi-head core's state; head ``i`` is demon ``i``.
        discounts: ``γ_{i,t}``, each demon's discount of the current state (from the last
            transition), shape ``(n_demons,)``; decays the traces at the next step. Empty
            ``()`` when no demon keeps a trace (every ``λ_i = 0``).
        diagnostics: ``DiagnosticsState`` when the learner tracks RUPEE and UDE, else ``()``.
        secondary_weights: GTD(λ) secondary weights ``u`` as ``HeadParams`` (``(n_demons, H)``
            and ``(n_demons,)``), or ``()`` when every demon is on-policy.
    """

    core: MultiHeadMLPState
    discounts: Any
    secondary_weights: Any
    diagnostics: Any = ()


class DiagnosticsState(NamedTuple):
    """Online error estimates per demon (White, Modayil & Sutton 2012), all with a leading
    demon axis.

    Attributes:
        rupee_h: ``ĥ`` over the head features and the bias, ``(n_demons, H + 1)``.
        rupee_d: ``d̄``, the moving average of ``δ z``, ``(n_demons, H + 1)``.
        rupee_tau: unbiasing trace ``τ`` of the RUPEE average, ``(n_demons,)``.
        ude_mean: moving average of ``δ``, ``(n_demons,)``.
        ude_var: moving variance of ``δ``, ``(n_demons,)``.
        ude_tau: unbiasing trace of the UDE averages, ``(n_demons,)``.
    """

    rupee_h: jax.Array
    rupee_d: jax.Array
    rupee_tau: jax.Array
    ude_mean: jax.Array
    ude_var: jax.Array
    ude_tau: jax.Array


class HordeUpdateResult(NamedTuple):
    """Result of one HordeLearner update.

    Attributes:
        state: the updated state.
        predictions: ``v_i(S_t)`` before the update, shape ``(n_demons,)``.
        td_errors: ``δ_i``, shape ``(n_demons,)``; NaN for inactive demons.
        td_targets: ``y_i``, shape ``(n_demons,)``; NaN for inactive demons.
        per_demon_metrics: ``(n_demons, 3)``: ``[δ², δ, mean step size]``, NaN rows for
            inactive demons.
        trunk_bounding_metric: scale the bounder applied to the trunk step (1 = unbounded).
        rupee: RUPEE per demon after this step, ``(n_demons,)``; NaN unless the learner was
            built with ``diagnostics=True``.
        ude: UDE per demon after this step, ``(n_demons,)``; NaN unless ``diagnostics=True``.
        diverged: ``(n_demons,)`` bool, True where the demon's prediction, TD error or
            updated bias is not finite (a non-finite weight shows in the next prediction). A
            daemon can check ``result.diverged.any()`` and keep its last good state.
    """

    state: HordeState
    predictions: jax.Array
    td_errors: jax.Array
    td_targets: jax.Array
    per_demon_metrics: jax.Array
    trunk_bounding_metric: jax.Array
    rupee: jax.Array
    ude: jax.Array
    diverged: jax.Array


class Transitions(NamedTuple):
    """A stream of transitions, every field with a leading time axis of length ``T``.

    Attributes:
        observations: ``S_t``, ``(T, observation_dim)``.
        actions: ``A_t``, ``(T,)`` (integers for discrete actions).
        rewards: ``R_{t+1}``, ``(T,)``.
        next_observations: ``S_{t+1}``, ``(T, observation_dim)``: the real final observation
            where an episode ended, never a reset observation.
        terminated: ``(T,)`` bool.
        truncated: ``(T,)`` bool.
        behaviour_probs: ``μ(A_t|S_t)``, ``(T,)``; only off-policy demons read it.
    """

    observations: Any
    actions: Any
    rewards: Any
    next_observations: Any
    terminated: Any
    truncated: Any
    behaviour_probs: Any


class HordeLearningResult(NamedTuple):
    """Result of ``run_horde_learning_loop``.

    Attributes:
        state: final state.
        predictions: ``v_i(S_t)`` before each update, ``(T, n_demons)``.
        per_demon_metrics: ``(T, n_demons, 3)`` as in ``HordeUpdateResult``.
    """

    state: HordeState
    predictions: jax.Array
    per_demon_metrics: jax.Array


class BatchedHordeResult(NamedTuple):
    """Result of ``run_horde_learning_loop_batched``: every field with a leading seed axis."""

    states: HordeState
    predictions: jax.Array
    per_demon_metrics: jax.Array


class HordeLearner:
    """Learns a set of demons (GVF questions) at once on a shared trunk, one head per demon.

    The trunk's ``gamma * lamda`` is 0 (the multi-head core's constraint); each demon's
    ``γ λ`` lives on its own head. See the module docstring for the exact update.

    Args:
        demons: a ``DemonSet`` or a sequence of ``Demon``.
        hidden_sizes: trunk hidden sizes; ``()`` gives one linear learner per demon on the
            raw features.
        optimizer: trunk optimizer (and head optimizer when ``head_optimizer`` is None);
            defaults to ``LMS(step_size)``.
        step_size: base step size, used when ``optimizer`` is None. The default, 0.001, is
            small on purpose: with LayerNorm every hidden unit has unit scale, so a head's
            effective step is about ``step_size · H`` (0.128 for H = 128); LMS diverges once it
            nears 2. For larger steps use ``bounder=ObGDBounding()``.
        bounder: optional update bounder (``ObGDBounding``).
        normalizer: optional online feature normalizer.
        sparsity: fraction of inputs zeroed per unit at initialisation.
        leaky_relu_slope: LeakyReLU negative slope.
        use_layer_norm: parameterless LayerNorm after each hidden Dense.
        head_optimizer: optional separate optimizer for the heads.
        secondary_step_size: ``β``, the step size of the GTD(λ) secondary weights of
            off-policy demons. Defaults to 10 times the heads' base step size.
        diagnostics: track RUPEE and UDE online for every demon (White, Modayil & Sutton
            2012); they work off-policy too, where no ideal return exists. With ``α`` =
            ``diagnostics_step_size``::

                RUPEE: ĥ += α_h (δz - (ĥ·x) x),  τ ← (1-β₀)τ + β₀,  β = β₀/τ,
                       d̄ ← (1-β) d̄ + β δ z,  RUPEE = sqrt(|ĥ·d̄|),
                       α_h = 5α, β₀ = max(1-λ, 0.01) α / 30   (x = head features and bias)
                UDE:   the mean and variance of ρδ with the same unbiased average, β₀ = 10α,
                       UDE = |mean| / (sqrt(var) + 1e-6)   (ρ = 1 on-policy)

        diagnostics_step_size: ``α`` for the diagnostics; defaults to the heads' base step size.
    """

    def __init__(
        self,
        demons: DemonSet | Sequence[Demon],
        hidden_sizes: tuple[int, ...] = (128, 128),
        optimizer: Optimizer | None = None,
        step_size: float = 0.001,
        bounder: ObGDBounding | None = None,
        normalizer: Normalizer | None = None,
        sparsity: float = 0.9,
        leaky_relu_slope: float = 0.01,
        use_layer_norm: bool = True,
        head_optimizer: Optimizer | None = None,
        secondary_step_size: float | None = None,
        diagnostics: bool = False,
        diagnostics_step_size: float | None = None,
    ) -> None:
        if not isinstance(demons, DemonSet):
            demons = DemonSet(demons)
        if len(demons) == 0:
            raise ValueError("demons must hold at least one Demon, got an empty set")
        self.demons = demons
        lamdas = np.asarray(demons.lamdas, np.float64)
        gammas = np.asarray(demons.constant_gammas, np.float64)
        # The core decides from these whether head traces are stored: a demon needs a trace
        # when its λ > 0 and its discount is not the constant 0. State-dependent discounts
        # (NaN constant gamma) count with γ ≤ 1.
        trace_bound = lamdas * np.where(np.isnan(gammas), 1.0, gammas)
        self.core = MultiHeadMLPLearner(
            n_heads=len(demons),
            hidden_sizes=hidden_sizes,
            optimizer=optimizer,
            step_size=step_size,
            bounder=bounder,
            gamma=0.0,
            lamda=0.0,
            normalizer=normalizer,
            sparsity=sparsity,
            leaky_relu_slope=leaky_relu_slope,
            use_layer_norm=use_layer_norm,
            head_optimizer=head_optimizer,
            per_head_gamma_lamda=trace_bound,
        )
        head_opt = self.core.head_opt
        base = getattr(head_opt, "step_size", None)
        if base is None:
            base = getattr(head_opt, "initial_step_size", 0.0)
        if secondary_step_size is None:
            secondary_step_size = 10.0 * base
        if (
            not isinstance(secondary_step_size, numbers.Real)
            or not math.isfinite(secondary_step_size)
            or secondary_step_size < 0
        ):
            raise ValueError(f"secondary_step_size must be a finite number >= 0, got {secondary_step_size!r}")
        self.secondary_step_size = float(secondary_step_size)
        self.diagnostics = bool(diagnostics)
        self._diagnostics_given = diagnostics_step_size
        if diagnostics_step_size is None:
            diagnostics_step_size = base if base > 0 else 0.01
        if (
            not isinstance(diagnostics_step_size, numbers.Real)
            or not math.isfinite(diagnostics_step_size)
            or diagnostics_step_size <= 0
        ):
            raise ValueError(f"diagnostics_step_size must be a finite number > 0, got {diagnostics_step_size!r}")
        self.diagnostics_step_size = float(diagnostics_step_size)
        self._lamdas = lamdas.astype(np.float32)
        self._z = np.asarray(demons.z, np.float32)
        self._off_policy = np.asarray(demons.is_off_policy, bool)
        self._has_off_policy = bool(self._off_policy.any())
        self._has_traces = self.core._stores_head_traces

        self._update_jit = jax.jit(self.update_traced)
        self._transition_jit = jax.jit(self.update_from_transition_traced)
        self._predict_jit = jax.jit(self.core.predict_traced)
        self.scan_compiled = jax.jit(self.scan_traced)
        self.batched_compiled = jax.jit(self.batched_traced, static_argnums=(2,))

    # ---------------------------------------------------------------------------------------

    @property
    def n_demons(self) -> int:
        """Number of demons (heads)."""
        return len(self.demons)

    @property
    def names(self) -> tuple[str, ...]:
        """Demon names, in head order."""
        return self.demons.names

    def to_config(self) -> dict[str, Any]:
        """JSON-serializable configuration, the demons included."""
        core = self.core.to_config()
        return {
            "demons": self.demons.to_dict()["demons"],
            "hidden_sizes": core["hidden_sizes"],
            "optimizer": core["optimizer"],
            "step_size": core["step_size"],
            "bounder": core["bounder"],
            "normalizer": core["normalizer"],
            "sparsity": core["sparsity"],
            "leaky_relu_slope": core["leaky_relu_slope"],
            "use_layer_norm": core["use_layer_norm"],
            "head_optimizer": core["head_optimizer"],
            "secondary_step_size": self.secondary_step_size,
            "diagnostics": self.diagnostics,
            "diagnostics_step_size": self._diagnostics_given,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HordeLearner:
        """Rebuilds a HordeLearner from ``to_config()`` output."""
        config = dict(config)
        if "demons" not in config:
            raise ValueError("config is missing the required key 'demons'")
        allowed = {
            "demons",
            "hidden_sizes",
            "optimizer",
            "step_size",
            "bounder",
            "normalizer",
            "sparsity",
            "leaky_relu_slope",
            "use_layer_norm",
            "head_optimizer",
            "secondary_step_size",
            "diagnostics",
            "diagnostics_step_size",
        }
        unknown = set(config) - allowed
        if unknown:
            raise ValueError(f"config has unknown keys {sorted(unknown)}; expected keys {sorted(allowed)}")
        config["demons"] = DemonSet.from_dict({"demons": config["demons"]})
        if "hidden_sizes" in config:
            config["hidden_sizes"] = tuple(config["hidden_sizes"])
        for key, rebuild in (
            ("optimizer", optimizer_from_config),
            ("head_optimizer", optimizer_from_config),
            ("bounder", bounder_from_config),
            ("normalizer", normalizer_from_config),
        ):
            if key in config:
                config[key] = rebuild(config[key])
        return cls(**config)

    def __repr__(self) -> str:
        return f"HordeLearner(n_demons={self.n_demons}, core={self.core!r})"

    # ---------------------------------------------------------------------------------------

    def init(self, observation_dim: int, key: jax.Array) -> HordeState:
        """Initial state for observations of length ``observation_dim``.

        Checks the demons against the observation size (an observation index out of range is
        a ``ValueError`` naming the demon).
        """
        self.demons.validate(observation_dim)
        return self.init_traced(observation_dim, key)

    def init_traced(self, observation_dim: int, key: jax.Array) -> HordeState:
        core = self.core.init(observation_dim, key)
        n = self.n_demons
        discounts = jnp.zeros((n,), jnp.float32) if self._has_traces else ()
        secondary = (
            HeadParams(jnp.zeros_like(core.head_params.weights), jnp.zeros((n,), jnp.float32))
            if self._has_off_policy
            else ()
        )
        diagnostics = ()
        if self.diagnostics:
            width = core.head_params.weights.shape[-1] + 1
            zeros = jnp.zeros((n,), jnp.float32)
            diagnostics = DiagnosticsState(
                rupee_h=jnp.zeros((n, width), jnp.float32),
                rupee_d=jnp.zeros((n, width), jnp.float32),
                rupee_tau=zeros,
                ude_mean=zeros,
                ude_var=zeros,
                ude_tau=zeros,
            )
        return HordeState(core=core, discounts=discounts, secondary_weights=secondary, diagnostics=diagnostics)

    # ---------------------------------------------------------------------------------------
    # Traced update

    def update_traced(
        self,
        state: HordeState,
        observation,
        cumulants,
        next_observation,
        terminated,
        truncated,
        discounts,
        rhos,
    ) -> HordeUpdateResult:
        core, learner = state.core, self.core
        cumulants = jnp.asarray(cumulants, jnp.float32)
        terminated = jnp.asarray(terminated, bool)
        truncated = jnp.asarray(truncated, bool)
        if discounts is None:
            discounts = self._default_discounts(jnp.asarray(next_observation, jnp.float32))
        next_discounts = jnp.asarray(discounts, jnp.float32)
        rho = None if rhos is None else jnp.asarray(rhos, jnp.float32)

        x, norm_state = learner.normalized_features(core, observation, update=True)
        x_next = (
            learner.normalizer.normalize(norm_state, jnp.asarray(next_observation, jnp.float32))
            if learner.normalizer is not None
            else jnp.asarray(next_observation, jnp.float32)
        )
        h, tape = learner.trunk_forward_with_tape(core.trunk_params, x)
        h_next = learner.trunk_forward(core.trunk_params, x_next)
        w = core.head_params
        predictions = learner.head_forward(w, h)
        next_predictions = learner.head_forward(w, h_next)

        # No bootstrap where terminated: target c + z. Truncated bootstraps from S_{t+1}.
        gamma_next = jnp.where(terminated, 0.0, next_discounts)
        targets = cumulants + gamma_next * next_predictions + jnp.where(terminated, self._z, 0.0)
        active = ~jnp.isnan(cumulants)
        delta = jnp.where(active, targets - predictions, 0.0)

        weighted = delta if rho is None else rho * delta
        cotangent = weighted @ w.weights
        trunk_params, trunk_opt, trunk_scale = learner.trunk_step(core, tape, cotangent)

        if self._has_traces:
            decay = state.discounts * self._lamdas
        else:
            decay = jnp.zeros((self.n_demons,), jnp.float32)
        step = learner.head_update(core, h, decay, rho, delta, cotangent)
        z_w, z_b = step.traces
        new_w, new_b = step.heads
        head_opt, mean_step = step.optimizer_states, step.mean_step_size
        secondary = state.secondary_weights
        if self._has_off_policy:
            new_w, new_b, secondary = self._gtd_correction(
                new_w, new_b, secondary, head_opt, (z_w, z_b), step.scale, step.delta, gamma_next, h, h_next
            )
        new_heads = HeadParams(new_w, new_b)
        stored_traces = (z_w, z_b) if core.head_traces else ()
        head_params, head_traces, head_opt, secondary = select_heads(
            active,
            (new_heads, stored_traces, head_opt, secondary),
            (core.head_params, core.head_traces, core.head_optimizer_states, state.secondary_weights),
        )
        # Every trace starts from zero in a new episode.
        done = terminated | truncated
        head_traces = jax.tree_util.tree_map(lambda t: jnp.where(done, 0.0, t), head_traces)

        new_core = core._replace(
            trunk_params=trunk_params,
            head_params=head_params,
            trunk_optimizer_states=trunk_opt,
            head_optimizer_states=head_opt,
            head_traces=head_traces,
            normalizer_state=norm_state,
            step_count=core.step_count + 1,
        )
        if self.diagnostics:
            diagnostics, rupee, ude = self._diagnostics_step(state.diagnostics, h, (z_w, z_b), delta, rho, active)
        else:
            diagnostics = ()
            rupee = ude = jnp.full((self.n_demons,), jnp.nan, jnp.float32)
        new_state = HordeState(
            core=new_core,
            discounts=next_discounts if self._has_traces else (),
            secondary_weights=secondary,
            diagnostics=diagnostics,
        )
        td_errors = jnp.where(active, delta, jnp.nan)
        metrics = jnp.stack([td_errors * td_errors, td_errors, jnp.where(active, mean_step, jnp.nan)], axis=-1)
        diverged = ~jnp.isfinite(predictions) | (active & ~jnp.isfinite(delta)) | ~jnp.isfinite(head_params.biases)
        return HordeUpdateResult(
            new_state,
            predictions,
            td_errors,
            jnp.where(active, targets, jnp.nan),
            metrics,
            trunk_scale,
            rupee,
            ude,
            diverged,
        )

    def _diagnostics_step(self, d: DiagnosticsState, h, traces, delta, rho, active):
        """One step of RUPEE and UDE (see the class docstring); inactive demons keep theirs.

        RUPEE's averaging rate ``β₀ = (1-λ) α / 30`` is floored at ``0.01 α / 30`` so that a
        λ = 1 demon still averages. UDE averages ``ρ δ``, whose expectation under the behaviour
        policy is the target policy's expected TD error (``ρ = 1`` on-policy).
        """
        alpha = self.diagnostics_step_size
        x = jnp.concatenate([h, jnp.ones((1,), h.dtype)])
        z = jnp.concatenate([traces[0], traces[1][:, None]], axis=1)  # (n, H + 1)
        dz = delta[:, None] * z
        rupee_h = d.rupee_h + 5.0 * alpha * (dz - (d.rupee_h @ x)[:, None] * x[None, :])
        beta0 = np.maximum(1.0 - self._lamdas, 0.01) * alpha / 30.0
        rupee_tau = (1.0 - beta0) * d.rupee_tau + beta0
        beta = beta0 / rupee_tau
        rupee_d = (1.0 - beta)[:, None] * d.rupee_d + beta[:, None] * dz
        ude_beta0 = 10.0 * alpha
        ude_tau = (1.0 - ude_beta0) * d.ude_tau + ude_beta0
        ub = ude_beta0 / ude_tau
        weighted = delta if rho is None else rho * delta
        ude_mean = (1.0 - ub) * d.ude_mean + ub * weighted
        ude_var = (1.0 - ub) * (d.ude_var + ub * (weighted - d.ude_mean) ** 2)
        new = DiagnosticsState(rupee_h, rupee_d, rupee_tau, ude_mean, ude_var, ude_tau)
        new = select_heads(active, new, d)
        rupee = jnp.sqrt(jnp.abs(jnp.sum(new.rupee_h * new.rupee_d, axis=-1)))
        ude = jnp.abs(new.ude_mean) / (jnp.sqrt(new.ude_var) + 1e-6)
        return new, rupee, ude

    def _gtd_correction(self, new_w, new_b, secondary, head_opt, traces, scale, delta, gamma_next, h, h_next):
        """GTD(λ) for off-policy heads: the gradient correction on ``w`` and the update of ``u``.

        ``w -= α γ_{t+1}(1-λ)(z·u) h_{t+1}`` (α the head's per-weight step sizes after
        bounding) and ``u += β [δ z - (u·h_t) h_t]``; on-policy heads are left as plain TD(λ).
        """
        opt = self.core.head_opt
        z_w, z_b = traces
        u_w, u_b = secondary
        alpha_w = jax.vmap(opt.step_sizes)(head_opt[0], z_w) * scale[:, None]
        alpha_b = jax.vmap(opt.step_sizes)(head_opt[1], z_b) * scale
        off = jnp.asarray(self._off_policy)
        z_dot_u = jnp.sum(z_w * u_w, axis=-1) + z_b * u_b
        coef = jnp.where(off, gamma_next * (1.0 - self._lamdas) * z_dot_u, 0.0)
        new_w = new_w - alpha_w * coef[:, None] * h_next[None, :]
        new_b = new_b - alpha_b * coef
        u_dot_h = u_w @ h + u_b
        beta = self.secondary_step_size
        u_w = u_w + beta * (delta[:, None] * z_w - u_dot_h[:, None] * h[None, :])
        u_b = u_b + beta * (delta * z_b - u_dot_h)
        u = HeadParams(jnp.where(off[:, None], u_w, secondary.weights), jnp.where(off, u_b, secondary.biases))
        return new_w, new_b, u

    def _default_discounts(self, next_observation):
        n = self.n_demons
        evaluation = self.demons.evaluate(
            jnp.zeros_like(next_observation), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32), next_observation
        )
        return evaluation.discounts.reshape((n,))

    def update_from_transition_traced(
        self, state, observation, action, reward, next_observation, terminated, truncated, behaviour_prob
    ) -> HordeUpdateResult:
        return self.evaluate_and_update_traced(
            state, observation, action, reward, next_observation, terminated, truncated, behaviour_prob
        )[0]

    def evaluate_and_update_traced(
        self, state, observation, action, reward, next_observation, terminated, truncated, behaviour_prob
    ):
        """Evaluates the demons on the transition and updates; returns ``(result, evaluation)``."""
        evaluation = self.demons.evaluate(observation, action, reward, next_observation, behaviour_prob)
        rhos = evaluation.rhos if self._has_off_policy else None
        result = self.update_traced(
            state,
            observation,
            evaluation.cumulants,
            next_observation,
            terminated,
            truncated,
            evaluation.discounts,
            rhos,
        )
        return result, evaluation

    def scan_traced(self, state: HordeState, transitions: Transitions) -> HordeLearningResult:
        def body(s, t):
            r = self.update_from_transition_traced(s, *t)
            return r.state, (r.predictions, r.per_demon_metrics)

        final, (predictions, metrics) = jax.lax.scan(body, state, transitions)
        return HordeLearningResult(final, predictions, metrics)

    def batched_traced(self, transitions: Transitions, keys, observation_dim: int) -> BatchedHordeResult:
        def one_seed(key):
            return self.scan_traced(self.init_traced(observation_dim, key), transitions)

        r = jax.vmap(one_seed)(keys)
        return BatchedHordeResult(r.state, r.predictions, r.per_demon_metrics)

    # ---------------------------------------------------------------------------------------
    # Public, checked entry points

    def check_state(self, state: Any) -> int:
        if not isinstance(state, HordeState):
            raise TypeError(f"state must be a HordeState (from HordeLearner.init), got {type(state).__name__}")
        self.core.check_state(state.core)
        return self.core.feature_dim(state.core)

    def predict(self, state: HordeState, observation: Any) -> jax.Array:
        """Every demon's prediction ``v_i(observation)``, shape ``(n_demons,)``."""
        dim = self.check_state(state)
        obs = as_vector("observation", observation, dim, "observation_dim")
        check_observation_values("observation", obs)
        return self._predict_jit(state.core, obs)

    def update(
        self,
        state: HordeState,
        observation: Any,
        cumulants: Any,
        next_observation: Any,
        *,
        terminated: bool = False,
        truncated: bool = False,
        discounts: Any = None,
        rhos: Any = None,
    ) -> HordeUpdateResult:
        """One update from a transition with explicit cumulants.

        Args:
            state: current state.
            observation: ``S_t``, shape ``(observation_dim,)``; must be finite.
            cumulants: ``c_{t+1}``, shape ``(n_demons,)``; NaN makes a demon inactive.
            next_observation: ``S_{t+1}``: where ``truncated`` the real final observation,
                never the reset observation.
            terminated: the episode ended in a terminal state: no bootstrap, target ``c + z``.
            truncated: the episode was cut (time limit): bootstrap from ``next_observation``.
            discounts: ``γ_{t+1}``, shape ``(n_demons,)`` in [0, 1]; default: each demon's
                discount evaluated on ``next_observation``.
            rhos: importance ratios ``ρ_t``, shape ``(n_demons,)``, >= 0; default 1. Required
                when any demon is off-policy (or use ``update_from_transition``).

        Returns:
            ``HordeUpdateResult``.
        """
        dim = self.check_state(state)
        obs, c, next_obs, d, r = self.checked_update_inputs(
            dim, observation, cumulants, next_observation, discounts, rhos
        )
        return self._update_jit(
            state, obs, c, next_obs, check_flag("terminated", terminated), check_flag("truncated", truncated), d, r
        )

    def checked_update_inputs(self, dim: int, observation, cumulants, next_observation, discounts, rhos):
        """``update``'s input checks; returns ``(obs, cumulants, next_obs, discounts, rhos)``
        with ``None`` for the optional ones not given."""
        n = self.n_demons
        obs = as_vector("observation", observation, dim, "observation_dim")
        next_obs = as_vector("next_observation", next_observation, dim, "observation_dim")
        c = as_vector("cumulants", cumulants, n, "one cumulant per demon, NaN = inactive")
        check_observation_values("observation", obs)
        check_observation_values("next_observation", next_obs)
        values = concrete_values(c)
        if values is not None and any_inf(values):
            i = int(np.flatnonzero(np.isinf(values))[0])
            raise ValueError(f"cumulant of demon {self.names[i]!r} must be finite or NaN, got {values[i]}")
        if discounts is None:
            d = None  # each demon's own discount, evaluated inside the compiled update
        else:
            d = as_vector("discounts", discounts, n, "one discount per demon")
            values = concrete_values(d)
            if values is not None:
                bad = np.flatnonzero(~((values >= 0) & (values <= 1)))
                if bad.size:
                    i = int(bad[0])
                    raise ValueError(f"discount of demon {self.names[i]!r} must be in [0, 1], got {values[i]}")
        if rhos is None:
            if self._has_off_policy:
                i = int(np.flatnonzero(self._off_policy)[0])
                raise ValueError(
                    f"rhos must be given: demon {self.names[i]!r} is off-policy and needs the "
                    "importance ratio pi(a|s)/mu(a|s) (or call update_from_transition)"
                )
            r = None
        else:
            r = as_vector("rhos", rhos, n, "one importance ratio per demon")
            values = concrete_values(r)
            if values is not None:
                bad = np.flatnonzero(~(np.isfinite(values) & (values >= 0)))
                if bad.size:
                    i = int(bad[0])
                    raise ValueError(f"rho of demon {self.names[i]!r} must be finite and >= 0, got {values[i]}")
        return obs, c, next_obs, d, r

    def checked_transition_inputs(
        self, dim: int, observation, reward, next_observation, behaviour_prob, check_observations: bool = True
    ):
        """``update_from_transition``'s input checks; returns the checked ``(obs, next_obs)``.
        ``check_observations=False`` checks their shapes but leaves their values to the caller."""
        obs = as_vector("observation", observation, dim, "observation_dim")
        next_obs = as_vector("next_observation", next_observation, dim, "observation_dim")
        if check_observations:
            check_observation_values("observation", obs)
            check_observation_values("next_observation", next_obs)
        if not is_tracer(behaviour_prob):
            p = float(behaviour_prob)
            if not (0.0 < p <= 1.0):
                raise ValueError(f"behaviour_prob must be in (0, 1], got {behaviour_prob!r}")
        reward_value = concrete_values(reward)
        if reward_value is not None and not all_finite(reward_value.reshape(-1)):
            raise ValueError(f"reward must be finite, got {reward!r}")
        return obs, next_obs

    def update_from_transition(
        self,
        state: HordeState,
        observation: Any,
        action: Any,
        reward: Any,
        next_observation: Any,
        *,
        terminated: bool = False,
        truncated: bool = False,
        behaviour_prob: float = 1.0,
    ) -> HordeUpdateResult:
        """One update from a whole transition; the demons compute their own cumulants,
        discounts and importance ratios (``ρ = π(a|s) / behaviour_prob``).

        Args:
            state: current state.
            observation: ``S_t``.
            action: ``A_t`` (an integer for discrete actions).
            reward: ``R_{t+1}``.
            next_observation: ``S_{t+1}`` (the real final observation where the episode ended).
            terminated: the episode ended in a terminal state.
            truncated: the episode was cut by a time limit.
            behaviour_prob: ``μ(A_t|S_t)``, the probability the behaviour policy gave the action.
        """
        dim = self.check_state(state)
        obs, next_obs = self.checked_transition_inputs(dim, observation, reward, next_observation, behaviour_prob)
        return self._transition_jit(
            state,
            obs,
            action,
            reward if is_tracer(reward) else np.float32(reward),
            next_obs,
            check_flag("terminated", terminated),
            check_flag("truncated", truncated),
            behaviour_prob if is_tracer(behaviour_prob) else np.float32(behaviour_prob),
        )


def as_transitions(transitions: Transitions, observation_dim: int | None) -> Transitions:
    if not isinstance(transitions, Transitions):
        raise TypeError(f"transitions must be a Transitions tuple, got {type(transitions).__name__}")
    obs = np.asarray(transitions.observations, np.float32)
    if obs.ndim != 2 or (observation_dim is not None and obs.shape[1] != observation_dim):
        want = "observation_dim" if observation_dim is None else observation_dim
        raise ValueError(f"transitions.observations must have shape (T, {want}), got {obs.shape}")
    T = obs.shape[0]
    next_obs = np.asarray(transitions.next_observations, np.float32)
    if next_obs.shape != obs.shape:
        raise ValueError(
            f"transitions.next_observations must have shape {obs.shape} like observations, got {next_obs.shape}"
        )
    check_observation_values("transitions.observations", obs)
    check_observation_values("transitions.next_observations", next_obs)
    fields = {}
    for name, dtype in (
        ("actions", None),
        ("rewards", np.float32),
        ("terminated", bool),
        ("truncated", bool),
        ("behaviour_probs", np.float32),
    ):
        value = getattr(transitions, name)
        arr = np.asarray(value) if dtype is None else np.asarray(value, dtype)
        if arr.ndim == 0 and name == "behaviour_probs":
            arr = np.full((T,), arr, np.float32)
        if arr.shape[:1] != (T,):
            raise ValueError(f"transitions.{name} must have a leading time axis of length {T}, got shape {arr.shape}")
        fields[name] = arr
    if not np.all(np.isfinite(fields["rewards"])):
        raise ValueError("transitions.rewards must be finite")
    probs = fields["behaviour_probs"]
    if not np.all((probs > 0) & (probs <= 1)):
        i = int(np.flatnonzero(~((probs > 0) & (probs <= 1)))[0])
        raise ValueError(f"transitions.behaviour_probs must be in (0, 1], got {probs[i]} at step {i}")
    return Transitions(
        obs, fields["actions"], fields["rewards"], next_obs, fields["terminated"], fields["truncated"], probs
    )


def run_horde_learning_loop(learner: HordeLearner, state: HordeState, transitions: Transitions) -> HordeLearningResult:
    """Runs the HordeLearner over a stream of transitions with ``jax.lax.scan``.

    Equal to calling ``update_from_transition`` once per step; the demons are evaluated inside
    the compiled loop.

    Args:
        learner: the HordeLearner.
        state: initial state.
        transitions: ``Transitions`` with a leading time axis.

    Returns:
        ``HordeLearningResult`` with the final state, predictions ``(T, n_demons)`` and
        per-demon metrics ``(T, n_demons, 3)``.
    """
    dim = learner.check_state(state)
    return learner.scan_compiled(state, as_transitions(transitions, dim))


def run_horde_learning_loop_batched(
    learner: HordeLearner, transitions: Transitions, keys: jax.Array
) -> BatchedHordeResult:
    """Runs the loop for several seeds at once (``jax.vmap``); each seed its own initial
    weights, all seeds the same transitions.

    Args:
        learner: the HordeLearner.
        transitions: shared ``Transitions`` with a leading time axis.
        keys: typed keys ``(n_seeds,)`` or raw keys ``(n_seeds, 2)``.
    """
    t = as_transitions(transitions, None)
    dim = int(t.observations.shape[1])
    learner.demons.validate(dim)
    return learner.batched_compiled(t, check_keys(keys), dim)
