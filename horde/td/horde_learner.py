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

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from demons import Demon, DemonSet
from horde.core import (
    LMS,
    ArgumentTypeError,
    Autostep,
    EMANormalizer,
    FourierFeatures,
    HeadParams,
    MultiHeadMLPLearner,
    Normalizer,
    ObGDBounding,
    Optimizer,
    OvershootBounding,
    StateTemplate,
    WelfordNormalizer,
    accumulate_traces,
    all_finite,
    any_inf,
    as_action,
    as_bool,
    as_float,
    as_instance,
    as_vector,
    bounder_from_config,
    check_flag,
    check_observation_values,
    concrete_values,
    head_features_from_config,
    head_step_from_traces,
    is_tracer,
    normalizer_from_config,
    optimizer_from_config,
    select_heads,
)
from horde.td.diagnostics import DiagnosticsState, diagnostics_step, init_diagnostics
from horde.td.gtd import gtd_correction, secondary_update
from horde.td.least_squares import (
    LSTDHeads,
    LSTDState,
    init_lstd,
    lstd_basis,
    lstd_groups,
    lstd_heads_from_config,
    lstd_rate,
    lstd_restart,
    lstd_step,
)
from horde.td.targets import reset_traces, td_targets, trace_decay
from horde.td.traces import (
    SharedTraces,
    TraceGroups,
    TraceRows,
    head_step_l1,
    init_shared_traces,
    reset_shared_traces,
    shared_trace_step,
    trace_groups,
    traces_per_head,
    with_trace_rows,
)
from horde.td.transitions import Transitions
from horde.td.types import BatchedHordeResult, HordeLearningResult, HordeState, HordeUpdateResult

__all__ = [
    "DEFAULT_BOUNDER",
    "DEFAULT_HEAD_FEATURES",
    "DEFAULT_HEAD_OPTIMIZER",
    "DEFAULT_LSTD_NORMALIZER",
    "DEFAULT_NORMALIZER",
    "DEFAULT_SPARSITY",
    "DEFAULT_TRUNK_STEP_SIZE",
    "AUTO_LSTD_MAX_BYTES",
    "AUTO_LSTD_MAX_GROUPS",
    "HordeLearner",
    "choose_heads",
]

#: The Horde's defaults, chosen by ``benchmarks/sweep_defaults.py`` (see the guide "Choosing
#: the learner's settings"): the trunk's LMS step size when neither ``optimizer`` nor
#: ``step_size`` is given, and then the heads' optimizer unless ``head_optimizer`` is given,
#: and the normalizer of a learner with a trunk unless ``normalizer`` is given (``None``
#: included). Autostep's heads start at 1e-3, not its own 0.01: after LayerNorm
#: ``‖h‖² ≈ H/2``, so 0.01 makes each step remove most of the current sample's error (about
#: 0.64 of it for ``H = 128``), which on noisy returns is noise.
DEFAULT_TRUNK_STEP_SIZE = 2e-4
DEFAULT_HEAD_OPTIMIZER = Autostep(initial_step_size=1e-3)
DEFAULT_NORMALIZER: Normalizer | None = EMANormalizer()
DEFAULT_BOUNDER: ObGDBounding | OvershootBounding | None = None
#: The heads' features beyond the trunk's output, for a learner with a trunk and the defaults
#: above unless ``head_features`` is given (``None`` included): the normalised observation
#: itself (a linear path the trunk learns only approximately) and 256 random Fourier features
#: of it (local corrections, as tile codes give a linear learner), of bandwidth 1 normalised
#: unit (2 did better on Acrobot's six dimensions but worse on CartPole's time to termination
#: and Pendulum's reward).
DEFAULT_HEAD_FEATURES: FourierFeatures | None = FourierFeatures(n_features=256, bandwidth=1.0)
DEFAULT_SPARSITY = 0.9
#: The normalizer of a learner with least-squares heads (``heads=LSTDHeads()``) unless
#: ``normalizer`` is given: the basis's bandwidth is in normalised units, and the statistics
#: average over every step, so the normalisation should settle rather than follow the last
#: thousand steps (``benchmarks/sweep_defaults.py``, rows "LSTD heads ...").
DEFAULT_LSTD_NORMALIZER: Normalizer | None = WelfordNormalizer()


class _Unset:
    """The type of a keyword argument that was not given (``None`` means "none")."""

    def __repr__(self) -> str:
        return "<not given>"


_UNSET = _Unset()


#: The most groups of demons (``lstd_groups``: same discount spec, λ and target policy) for
#: which ``HordeLearner(demons)`` with no trunk setting chooses least-squares heads: each group
#: holds an ``(m, m)`` matrix (``m = 1 + d + 384`` for ``d`` observation components with the
#: default basis) updated at every step, so 256 groups of a 16-component observation hold
#: 165 MB (``benchmarks/bench_lstd_heads.py`` measures the step).
AUTO_LSTD_MAX_GROUPS = 256
#: The most bytes of matrices that least-squares heads chosen by default may hold: ``init``
#: for a larger observation (``m = 1 + d + 384`` with the default basis) raises, naming
#: ``heads='td'``.
AUTO_LSTD_MAX_BYTES = 2**30


def choose_heads(heads: Any, demons: DemonSet, trunk_settings: dict[str, Any]) -> LSTDHeads | None:
    """The heads a ``HordeLearner`` learns with: ``LSTDHeads`` or ``None`` (TD heads on a
    trunk), from its ``heads`` argument.

    ``heads`` is an ``LSTDHeads``, ``"td"`` (heads learned by TD(λ)/GTD(λ) steps on a trunk's
    output), ``"lstd"`` (``LSTDHeads()``) or ``None``, the default, which chooses: least-squares
    heads when no setting of a trunk or of TD heads is given (``trunk_settings``, the arguments
    given among ``hidden_sizes``, ``optimizer``, ``step_size``, ``bounder``, ``sparsity``,
    ``leaky_relu_slope``, ``use_layer_norm``, ``head_optimizer``, ``secondary_step_size``,
    ``diagnostics``, ``diagnostics_step_size``, ``shared_traces``, ``head_features``) and the
    demons fall into at most ``AUTO_LSTD_MAX_GROUPS`` groups; TD heads otherwise. On the
    nexting streams of ``benchmarks/sweep_defaults.py`` least-squares heads are closer to the
    true values than TD heads with every setting swept (the guide "Choosing the learner's
    settings").

    Raises:
        TypeError: ``heads`` is none of these.
        ValueError: ``heads`` is a string other than ``"td"`` or ``"lstd"``.
    """
    if isinstance(heads, str):
        if heads not in ("td", "lstd"):
            raise ValueError(f"heads must be 'td', 'lstd', an LSTDHeads or None, got {heads!r}")
        return None if heads == "td" else LSTDHeads()
    if heads is not None and not isinstance(heads, LSTDHeads):
        raise ArgumentTypeError(
            f"heads must be 'td', 'lstd', an LSTDHeads or None, got {heads!r} ({type(heads).__name__})"
        )
    if heads is not None:
        return heads
    if trunk_settings or lstd_groups(demons).n_groups > AUTO_LSTD_MAX_GROUPS:
        return None
    return LSTDHeads()


class _HeadStep(NamedTuple):
    heads: HeadParams
    stored_traces: Any
    optimizer_states: Any
    secondary: Any
    mean_step: jax.Array
    diagnostics: Any
    rupee: jax.Array
    ude: jax.Array


class HordeLearner:
    """Learns a set of demons (GVF questions) at once on a shared trunk, one head per demon.

    The trunk's ``gamma * lamda`` is 0 (the multi-head core's constraint); each demon's
    ``γ λ`` lives on its own head. See the module docstring for the exact update.

    Args:
        demons: a ``DemonSet`` or a sequence of ``Demon``.
        hidden_sizes: trunk hidden sizes; ``()`` gives one linear learner per demon on the
            raw features. Not given: ``()`` with least-squares ``heads`` (the default, see
            ``heads``), else ``(128, 128)``.
        optimizer: trunk optimizer (and head optimizer when ``head_optimizer`` is None);
            defaults to ``LMS(step_size)``.
        step_size: base step size of ``LMS(step_size)`` for the trunk and the heads, used
            when ``optimizer`` is None. Neither given: the Horde's defaults, an
            ``LMS(DEFAULT_TRUNK_STEP_SIZE)`` trunk (2e-4: it is shared by every demon and
            must move slowly enough for the heads to follow), ``DEFAULT_HEAD_OPTIMIZER``
            heads (``Autostep(1e-3)``) and ``DEFAULT_NORMALIZER``. With LayerNorm every
            hidden unit has unit scale, so a head's effective LMS step is about
            ``step_size · H / 2``; LMS diverges once it nears 2. For larger steps use
            ``bounder=ObGDBounding()`` or ``OvershootBounding()``.
        bounder: optional update bounder (``ObGDBounding``, or ``OvershootBounding`` which
            does not throttle a many-head Horde).
        normalizer: online feature normalizer, or ``None`` for none. Not given: with the
            defaults above (neither ``optimizer`` nor ``step_size`` given) and a trunk,
            ``DEFAULT_NORMALIZER`` (``EMANormalizer()``): the trunk's first layer sees every
            observation component on one scale; otherwise none (a linear learner's features,
            one-hot or tabular, keep their meaning).
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

            They are not free: up to about twice the time of a learning step
            (``benchmarks/bench_diagnostics.py`` measured 1.1 to 1.4 times on a loaded
            2-core machine); turn them on when you will read them.

        diagnostics_step_size: ``α`` for the diagnostics; defaults to the heads' base step size
            (for heads that tune their own step sizes, their initial one, at most
            ``0.1 / (H + 1)`` for the last hidden size ``H``, where RUPEE's and GTD's LMS rules
            on the head features stay stable).
        shared_traces: store each distinct head trace once (``horde.td.traces``): demons with
            the same discount spec, ``λ`` and target policy share one trace in
            ``state.traces``, and a demon keeps its own only from a step where it differs
            (inactive, or given another discount or ratio) to the episode's end. The results
            equal those of ``False`` to float32 rounding (bit for bit where the updates are
            elementwise), which keeps one trace per demon in
            ``state.core.head_traces`` (the reference layout).
        head_features: fixed features of the (normalised) observation that the heads see
            next to the trunk's output (``FourierFeatures``, ``horde.core.head_features``), or
            ``None`` for the trunk's output only. Not given: with the defaults above and a
            trunk, ``DEFAULT_HEAD_FEATURES`` (the observation and 256 random Fourier features
            of it, bandwidth 1); otherwise none.
        heads: how each demon's head learns. ``LSTDHeads(...)`` (or ``"lstd"`` for
            ``LSTDHeads()``): least-squares TD(λ) heads (``horde.td.least_squares``): each
            demon's weights on the fixed basis ``[1, x, cos(x W / σ + b)]`` of the normalised
            observation are its LSTD(λ) solution, re-solved every ``heads.solve_every`` steps,
            with no step size. ``"td"``: heads learned by TD(λ) (GTD(λ) off-policy) steps of the
            optimizer on the trunk's output. ``None`` (the default) chooses (``choose_heads``):
            least-squares heads unless a setting of a trunk or of TD heads is given (any of
            ``hidden_sizes``, ``optimizer``, ``step_size``, ``bounder``, ``sparsity``,
            ``leaky_relu_slope``, ``use_layer_norm``, ``head_optimizer``,
            ``secondary_step_size``, ``diagnostics``, ``diagnostics_step_size``,
            ``shared_traces``, ``head_features``) or the demons fall into more than
            ``AUTO_LSTD_MAX_GROUPS`` (256) groups that share a matrix; ``learner.heads`` says
            which (``None`` for TD heads). Least-squares heads have no trunk (a trunk's output
            drifts, and ``A`` averages over every step) and take no ``optimizer``,
            ``step_size``, ``head_optimizer``, ``bounder``, ``head_features`` (their basis is
            ``heads.features``) or ``diagnostics``; the normalizer defaults to
            ``DEFAULT_LSTD_NORMALIZER`` (``WelfordNormalizer()``) and learns for the first
            ``heads.burn_in`` steps only (the basis then stays fixed). Explicit ``discounts``
            or ``rhos`` given to ``update`` must be equal within each group of demons that
            share ``A`` (``lstd_groups``).

    Raises:
        TypeError: ``heads`` is not an ``LSTDHeads``, a string or ``None``; a setting has the
            wrong type.
        ValueError: ``heads`` is another string; a setting is out of range, or given with
            least-squares heads that have no use for it.
    """

    #: The keys of ``to_config()`` (and so of a run config's ``[learner]`` table).
    CONFIG_KEYS = frozenset(
        {
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
            "shared_traces",
            "head_features",
            "heads",
        }
    )

    def __init__(
        self,
        demons: DemonSet | Sequence[Demon],
        hidden_sizes: tuple[int, ...] | _Unset = _UNSET,
        optimizer: Optimizer | None = None,
        step_size: float | None = None,
        bounder: ObGDBounding | OvershootBounding | None = DEFAULT_BOUNDER,
        normalizer: Normalizer | None | _Unset = _UNSET,
        sparsity: float | _Unset = _UNSET,
        leaky_relu_slope: float | _Unset = _UNSET,
        use_layer_norm: bool | _Unset = _UNSET,
        head_optimizer: Optimizer | None = None,
        secondary_step_size: float | None = None,
        diagnostics: bool = False,
        diagnostics_step_size: float | None = None,
        shared_traces: bool | _Unset = _UNSET,
        head_features: FourierFeatures | None | _Unset = _UNSET,
        heads: LSTDHeads | str | None = None,
    ) -> None:
        if not isinstance(demons, DemonSet):
            if isinstance(demons, (str, bytes, Demon)) or not hasattr(demons, "__iter__"):
                raise ArgumentTypeError(
                    f"demons must be a DemonSet or a sequence of Demon, got {demons!r} ({type(demons).__name__})"
                )
            demons = DemonSet(demons)
        if len(demons) == 0:
            raise ValueError("demons must hold at least one Demon, got an empty set")
        self.demons: DemonSet = demons
        trunk_settings = {
            name: value
            for name, value, unset in (
                ("hidden_sizes", hidden_sizes, _UNSET),
                ("optimizer", optimizer, None),
                ("step_size", step_size, None),
                ("bounder", bounder, None),
                ("sparsity", sparsity, _UNSET),
                ("leaky_relu_slope", leaky_relu_slope, _UNSET),
                ("use_layer_norm", use_layer_norm, _UNSET),
                ("head_optimizer", head_optimizer, None),
                ("secondary_step_size", secondary_step_size, None),
                ("diagnostics", diagnostics, False),
                ("diagnostics_step_size", diagnostics_step_size, None),
                ("shared_traces", shared_traces, _UNSET),
                ("head_features", head_features, _UNSET),
            )
            if value is not unset
        }
        #: Whether ``heads=None`` chose least-squares heads (``choose_heads``).
        self.heads_chosen_by_default: bool = heads is None
        heads = choose_heads(heads, demons, trunk_settings)
        self.heads_chosen_by_default = self.heads_chosen_by_default and heads is not None
        sparsity = DEFAULT_SPARSITY if isinstance(sparsity, _Unset) else sparsity
        leaky_relu_slope = 0.01 if isinstance(leaky_relu_slope, _Unset) else leaky_relu_slope
        use_layer_norm = True if isinstance(use_layer_norm, _Unset) else use_layer_norm
        shared_traces = True if isinstance(shared_traces, _Unset) else shared_traces
        self.heads: LSTDHeads | None = heads
        if heads is not None:
            hidden_sizes, normalizer, diagnostics = self._lstd_settings(
                heads,
                hidden_sizes,
                optimizer,
                step_size,
                bounder,
                normalizer,
                head_optimizer,
                head_features,
                diagnostics,
            )
            head_features = None
            # Settings of a trunk or of TD heads that least-squares heads would ignore: refused
            # unless at the value a saved configuration writes (the defaults).
            for name, value, default in (
                ("sparsity", sparsity, DEFAULT_SPARSITY),
                ("leaky_relu_slope", leaky_relu_slope, 0.01),
                ("use_layer_norm", use_layer_norm, True),
                ("shared_traces", shared_traces, True),
                ("secondary_step_size", secondary_step_size, None),
                ("diagnostics_step_size", diagnostics_step_size, None),
            ):
                if value != default:  # unset ones hold their defaults by now
                    raise ValueError(
                        f"{name} has no use with least-squares heads (no trunk, no TD step), got {value!r}; "
                        f"leave it out (or {default!r})"
                    )
        elif isinstance(hidden_sizes, _Unset):
            hidden_sizes = (128, 128)
        assert not isinstance(hidden_sizes, _Unset)
        lamdas = np.asarray(demons.lamdas, np.float64)
        gammas = np.asarray(demons.constant_gammas, np.float64)
        # A demon needs a stored trace when its λ > 0 and its discount is not the constant 0;
        # a state-dependent discount (NaN constant gamma) counts as possibly positive. The
        # decays themselves change every step (γ_{i,t} λ_i), so the core stores the traces and
        # the update passes it each step's decays.
        trace_bound = lamdas * np.where(np.isnan(gammas), 1.0, gammas)
        # Least-squares heads keep their own traces (of their basis) in ``state.heads``.
        self._has_traces: bool = heads is None and bool(np.any(trace_bound.astype(np.float32) > 0))
        self._given: dict[str, Any] = {
            "optimizer": optimizer,
            "step_size": step_size,
            "head_optimizer": head_optimizer,
        }
        defaults = optimizer is None and step_size is None
        if defaults:
            # The defaults: a slow LMS trunk under heads that tune their own step sizes.
            optimizer = LMS(DEFAULT_TRUNK_STEP_SIZE)
            if head_optimizer is None:
                head_optimizer = DEFAULT_HEAD_OPTIMIZER
        has_trunk = len(hidden_sizes) > 0 if hasattr(hidden_sizes, "__len__") else True
        if isinstance(normalizer, _Unset):
            normalizer = DEFAULT_NORMALIZER if defaults and has_trunk else None
        if isinstance(head_features, _Unset):
            head_features = DEFAULT_HEAD_FEATURES if defaults and has_trunk else None
        self.shared_traces: bool = as_bool("shared_traces", shared_traces)
        # Without any decaying trace every trace is this step's ρ h: nothing to store or share.
        self._trace_groups: TraceGroups | None = (
            trace_groups(demons) if self.shared_traces and self._has_traces else None
        )
        self.core: MultiHeadMLPLearner = MultiHeadMLPLearner(
            n_heads=len(demons),
            hidden_sizes=hidden_sizes,
            optimizer=optimizer,
            step_size=DEFAULT_TRUNK_STEP_SIZE if step_size is None else step_size,
            bounder=bounder,
            gamma=0.0,
            lamda=0.0,
            normalizer=normalizer,
            sparsity=sparsity,
            leaky_relu_slope=leaky_relu_slope,
            use_layer_norm=use_layer_norm,
            head_optimizer=head_optimizer,
            store_head_traces=self._has_traces and self._trace_groups is None,
            head_features=head_features,
        )
        head_opt = self.core.head_opt
        base_or_none: float | None = getattr(head_opt, "step_size", None)
        base: float = getattr(head_opt, "initial_step_size", 0.0) if base_or_none is None else base_or_none
        if base_or_none is None and hidden_sizes:
            # Heads that tune their own step sizes (Autostep, IDBD) start at a size their own
            # normalisation keeps stable; the plain LMS rules derived from it (RUPEE's 5α,
            # GTD's 10α on the head features, ‖h‖² ≈ H + 1 after LayerNorm) diverge unless
            # α (H + 1) stays well below 2 / 10: cap it there.
            # The fixed head features add up to about their count (cos² averages 1/2, and the
            # normalised observation has unit components).
            extra = 0 if head_features is None else head_features.n_features + head_features.n_products
            base = min(base, 0.1 / (int(hidden_sizes[-1]) + 1 + extra))
        if secondary_step_size is None:
            secondary_step_size = 10.0 * base
        self.secondary_step_size: float = as_float("secondary_step_size", secondary_step_size, low=0)
        self.diagnostics: bool = as_bool("diagnostics", diagnostics)
        given = diagnostics_step_size is not None
        if diagnostics_step_size is None:
            diagnostics_step_size = base if base > 0 else 0.01
        self.diagnostics_step_size: float = as_float(
            "diagnostics_step_size", diagnostics_step_size, low=0, low_open=True
        )
        self._diagnostics_given: float | None = self.diagnostics_step_size if given else None
        self._lamdas: np.ndarray = lamdas.astype(np.float32)
        self._z: np.ndarray = np.asarray(demons.z, np.float32)
        self._off_policy: np.ndarray = np.asarray(demons.is_off_policy, bool)
        self._has_off_policy: bool = bool(self._off_policy.any())
        self._lstd_groups: TraceGroups | None = None if heads is None else lstd_groups(demons)

        self._update_jit: Callable[..., Any] = jax.jit(self.update_traced)
        self._transition_jit: Callable[..., Any] = jax.jit(self.update_from_transition_traced)
        self._predict_jit: Callable[..., Any] = jax.jit(self.predict_traced)
        self.scan_compiled: Callable[..., Any] = jax.jit(self.scan_traced)
        self.batched_compiled: Callable[..., Any] = jax.jit(self.batched_traced, static_argnums=(2,))

    @staticmethod
    def _lstd_settings(
        heads, hidden_sizes, optimizer, step_size, bounder, normalizer, head_optimizer, head_features, diagnostics
    ):
        """The checked settings of a learner with least-squares heads: ``(hidden_sizes,
        normalizer, diagnostics)``; a setting they have no use for is refused by name."""
        if isinstance(hidden_sizes, _Unset):
            hidden_sizes = ()
        elif tuple(hidden_sizes) != ():
            raise ValueError(
                f"hidden_sizes must be () with heads={heads!r}, got {hidden_sizes!r}: least-squares heads "
                "read a fixed basis of the observation (heads.features), not a trunk's drifting output"
            )
        unused = {
            "optimizer": optimizer,
            "step_size": step_size,
            "bounder": bounder,
            "head_optimizer": head_optimizer,
        }
        for name, value in unused.items():
            if value is not None:
                raise ValueError(
                    f"{name} must be None with least-squares heads (heads=LSTDHeads(...) solve for their "
                    f"weights and have no step size), got {value!r}"
                )
        if not isinstance(head_features, _Unset) and head_features is not None:
            raise ValueError(
                f"head_features must be None with least-squares heads, got {head_features!r}: their basis is "
                "heads.features (LSTDHeads(features=...))"
            )
        if as_bool("diagnostics", diagnostics):
            raise ValueError("diagnostics must be False with least-squares heads (RUPEE and UDE read a step size)")
        if isinstance(normalizer, _Unset):
            normalizer = DEFAULT_LSTD_NORMALIZER
        return (), normalizer, False

    # ---------------------------------------------------------------------------------------

    @property
    def n_demons(self) -> int:
        """Number of demons (heads)."""
        return len(self.demons)

    @property
    def names(self) -> tuple[str, ...]:
        """Demon names, in head order."""
        return self.demons.names

    @property
    def shards_seeds(self) -> bool:
        """Whether the batched loops may spread this learner's seeds over several devices
        (``horde.core.shard_seeds``): not with least-squares heads, whose periodic solve stalls
        the devices when XLA partitions it, so their seeds stay on one device."""
        return self.heads is None

    def to_config(self) -> dict[str, Any]:
        """JSON-serializable configuration, the demons included.

        Raises:
            ValueError: a demon holds a Python function (it has no plain-data form; its
                settings still do, see ``settings_config``).
        """
        return {"demons": self.demons.to_dict()["demons"], **self.settings_config()}

    def settings_config(self) -> dict[str, Any]:
        """``to_config()`` without the demons: every other setting, as plain data, also for
        demons with Python functions (a checkpoint stores these and checks them on loading)."""
        core = self.core.to_config()
        # "heads" only when set, so that configurations and checkpoints from before it read alike.
        heads = {} if self.heads is None else {"heads": self.heads.to_config()}
        return {
            **heads,
            "hidden_sizes": core["hidden_sizes"],
            "optimizer": None if self._given["optimizer"] is None else self._given["optimizer"].to_config(),
            "step_size": self._given["step_size"],
            "bounder": core["bounder"],
            "normalizer": core["normalizer"],
            "sparsity": core["sparsity"],
            "leaky_relu_slope": core["leaky_relu_slope"],
            "use_layer_norm": core["use_layer_norm"],
            "head_optimizer": None
            if self._given["head_optimizer"] is None
            else self._given["head_optimizer"].to_config(),
            "secondary_step_size": None if self.heads is not None else self.secondary_step_size,
            "diagnostics": self.diagnostics,
            "diagnostics_step_size": self._diagnostics_given,
            "shared_traces": self.shared_traces,
            "head_features": core.get("head_features"),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HordeLearner:
        """Rebuilds a HordeLearner from ``to_config()`` output.

        Raises:
            TypeError: ``config`` is not a dict, or a setting has the wrong type.
            ValueError: a key is missing or unknown, or a setting is out of range.
        """
        config = dict(as_instance("config", config, dict, example="HordeLearner.to_config()"))
        if "demons" not in config:
            raise ValueError("config is missing the required key 'demons'")
        allowed = cls.CONFIG_KEYS
        unknown = set(config) - allowed
        if unknown:
            raise ValueError(f"config has unknown keys {sorted(unknown)}; expected keys {sorted(allowed)}")
        config["demons"] = DemonSet.from_dict({"demons": config["demons"]})
        if "hidden_sizes" in config:
            sizes = config["hidden_sizes"]
            as_instance("hidden_sizes", sizes, (list, tuple), example="[128, 128]")
            config["hidden_sizes"] = tuple(sizes)
        for key, rebuild in (
            ("optimizer", optimizer_from_config),
            ("head_optimizer", optimizer_from_config),
            ("bounder", bounder_from_config),
            ("normalizer", normalizer_from_config),
            ("head_features", head_features_from_config),
            ("heads", lstd_heads_from_config),
        ):
            if key == "heads" and isinstance(config.get(key), str):
                continue  # "td" or "lstd", as the argument takes them
            if key in config:
                config[key] = rebuild(config[key])
        return cls(**config)

    def __repr__(self) -> str:
        if self.heads is not None:  # no trunk and no optimizer: the core's would mislead
            return f"HordeLearner(n_demons={self.n_demons}, heads={self.heads!r}, normalizer={self.core.normalizer!r})"
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
        """``init`` without the demons' check against ``observation_dim``, for use inside
        traced code (one state per seed under ``vmap``).

        Raises:
            ValueError: least-squares heads chosen by default (``heads=None``) would hold more
                than ``AUTO_LSTD_MAX_BYTES`` of matrices for observations of this size.
        """
        if self.heads_chosen_by_default and self.heads is not None and self._lstd_groups is not None:
            m = self.heads.basis_size(int(observation_dim))
            size = self._lstd_groups.n_groups * m * m * 4
            if size > AUTO_LSTD_MAX_BYTES:
                raise ValueError(
                    f"observation_dim {observation_dim}: the least-squares heads HordeLearner(demons) chose "
                    f"would hold {self._lstd_groups.n_groups} matrices of {m}x{m} ({size / 2**30:.1f} GiB, more than "
                    f"AUTO_LSTD_MAX_BYTES = {AUTO_LSTD_MAX_BYTES / 2**30:.0f} GiB); pass heads='td' for TD heads on a "
                    "trunk, or heads=LSTDHeads(...) to ask for least-squares heads of this size"
                )
        core = self.core.init(observation_dim, key)
        n = self.n_demons
        discounts = jnp.zeros((n,), jnp.float32) if self._has_traces else ()
        secondary = (
            HeadParams(jnp.zeros_like(core.head_params.weights), jnp.zeros((n,), jnp.float32))
            if self._has_off_policy and self.heads is None
            else ()
        )
        diagnostics: DiagnosticsState | tuple[()] = ()
        if self.diagnostics:
            diagnostics = init_diagnostics(n, core.head_params.weights.shape[-1] + 1)
        traces = (
            ()
            if self._trace_groups is None
            else init_shared_traces(self._trace_groups, core.head_params.weights.shape[-1])
        )
        heads: LSTDState | tuple[()] = ()
        if self.heads is not None and self._lstd_groups is not None:
            heads = init_lstd(self._lstd_groups, n, self.heads.basis_size(observation_dim), core.normalizer_state)
        return HordeState(
            core=core,
            discounts=discounts,
            secondary_weights=secondary,
            diagnostics=diagnostics,
            traces=traces,
            heads=heads,
        )

    def finite_demons(self, state: HordeState) -> jax.Array:
        """Per demon, are the parameters it predicts with finite? ``bool (n_demons,)``: its
        least-squares weights, or its head and the whole trunk (traceable)."""
        if self.heads is not None:
            return jnp.isfinite(state.heads.weights).all(-1)
        core = state.core
        ok = jnp.isfinite(core.head_params.weights).all(-1) & jnp.isfinite(core.head_params.biases)
        trunk = jax.tree_util.tree_leaves(core.trunk_params)
        if trunk:
            ok = ok & jnp.all(jnp.stack([jnp.isfinite(t).all() for t in trunk]))
        return ok

    def predict_traced(self, state: HordeState, observation: jax.Array) -> jax.Array:
        """``predict`` without its boundary checks, for use inside traced code:
        ``(n_demons,)``."""
        if self.heads is None:
            return self.core.predict_traced(state.core, observation)
        x = self._lstd_features(state.heads.basis_normalizer, observation)
        return state.heads.weights @ lstd_basis(self.heads.features, x)

    def _lstd_features(self, basis_normalizer: Any, observation: jax.Array) -> jax.Array:
        """The observation as least-squares heads' basis reads it: normalised by
        ``basis_normalizer`` (``LSTDState.basis_normalizer``), float32 ``(d,)``."""
        x = jnp.asarray(observation, jnp.float32)
        normalizer = self.core.normalizer
        return x if normalizer is None else normalizer.normalize(basis_normalizer, x)

    # ---------------------------------------------------------------------------------------
    # Traced update

    def update_traced(
        self,
        state: HordeState,
        observation: jax.Array,
        cumulants: jax.Array,
        next_observation: jax.Array,
        terminated: jax.Array,
        truncated: jax.Array,
        discounts: jax.Array | None,
        rhos: jax.Array | None,
    ) -> HordeUpdateResult:
        """``update`` without its boundary checks, for use inside traced code (a runner's scan,
        the Daemon's compiled step).

        Args:
            state: current state.
            observation: ``S_t``, ``(observation_dim,)``.
            cumulants: ``c_{t+1}``, ``(n_demons,)``; NaN makes a demon inactive.
            next_observation: ``S_{t+1}``, ``(observation_dim,)``.
            terminated: scalar bool.
            truncated: scalar bool.
            discounts: ``γ_{t+1}``, ``(n_demons,)``, or ``None`` to evaluate each demon's own
                discount on ``next_observation``.
            rhos: ``ρ_t``, ``(n_demons,)``, or ``None`` for 1.

        Returns:
            ``HordeUpdateResult``.
        """
        return self._update(
            state, observation, cumulants, next_observation, terminated, truncated, discounts, rhos, explicit=True
        )

    def _update(
        self,
        state,
        observation,
        cumulants,
        next_observation,
        terminated,
        truncated,
        discounts,
        rhos,
        explicit: bool,
        attached: bool = False,
    ) -> HordeUpdateResult:
        """The update; ``explicit``: the cumulants, discounts or ratios come from the caller,
        not from the demons' own evaluation (so demons of one trace group may differ);
        ``attached``: demon-evaluated inputs on a state whose per-demon rows hold no detached
        demon (the caller knows), so the rows are passed through untouched."""
        core, learner = state.core, self.core
        cumulants = jnp.asarray(cumulants, jnp.float32)
        terminated = jnp.asarray(terminated, bool)
        truncated = jnp.asarray(truncated, bool)
        if discounts is None:
            discounts = self._default_discounts(jnp.asarray(next_observation, jnp.float32))
        next_discounts = jnp.asarray(discounts, jnp.float32)
        rho = None if rhos is None else jnp.asarray(rhos, jnp.float32)
        if self.heads is not None:
            return self._lstd_update(
                state, observation, cumulants, next_observation, terminated, truncated, next_discounts, rho
            )

        x, norm_state = learner.normalized_features(core, observation, update=True)
        x_next = (
            learner.normalizer.normalize(norm_state, jnp.asarray(next_observation, jnp.float32))
            if learner.normalizer is not None
            else jnp.asarray(next_observation, jnp.float32)
        )
        # S_t and S_{t+1} go through the trunk together: one pass of (2, ·) operations instead
        # of two passes of vector ones (a step of a few hundred heads is dominated by the
        # number of operations, not their size); each row is computed as it was alone.
        both, tapes = learner.trunk_forward_with_tape(core.trunk_params, jnp.stack([x, x_next]))
        h, h_next = both[0], both[1]
        tape = jax.tree_util.tree_map(lambda t: t[0], tapes)
        w = core.head_params
        predictions = learner.head_forward(w, h)
        next_predictions = learner.head_forward(w, h_next)

        targets, gamma_next = td_targets(cumulants, next_predictions, next_discounts, terminated, self._z)
        active = ~jnp.isnan(cumulants)
        delta = jnp.where(active, targets - predictions, 0.0)

        weighted = delta if rho is None else rho * delta
        cotangent = weighted @ w.weights
        trunk_params, trunk_opt, trunk_scale = learner.trunk_step(core, tape, cotangent, weighted, active)

        decay = (
            trace_decay(state.discounts, self._lamdas) if self._has_traces else jnp.zeros((self.n_demons,), jnp.float32)
        )
        heads = functools.partial(self._head_step, state, h, h_next, rho, delta, cotangent, active, gamma_next)
        traces = state.traces
        if self._trace_groups is None:
            z = accumulate_traces(core.head_traces, h, decay, rho)
            out = heads(z, core.head_traces)
            head_traces = reset_traces(out.stored_traces, terminated | truncated)
        else:
            if explicit:
                # Explicit inputs can break a group's equality: keep per-demon rows from now on.
                traces = with_trace_rows(traces, self._trace_groups)
            rows = traces.rows
            if attached:
                # The caller knows that no demon is detached: the rows stay zero, untouched.
                traces = traces._replace(rows=())
            z, traces = shared_trace_step(traces, self._trace_groups, h, decay, rho, active)
            step_l1 = None
            head_opt = learner.head_opt
            if traces.rows == () and learner.bounder is not None and isinstance(head_opt, LMS):
                # Heads that read one trace share their LMS step's norm: one per group.
                step_l1 = head_step_l1(
                    (traces.group_weights, traces.group_biases), self._trace_groups, head_opt.step_size
                )
            out = heads(z, (), step_l1)
            traces = reset_shared_traces(traces, terminated | truncated)
            if attached:
                traces = traces._replace(rows=rows)
            head_traces = ()
        head_params, head_opt, secondary, mean_step = out.heads, out.optimizer_states, out.secondary, out.mean_step

        new_core = core._replace(
            trunk_params=trunk_params,
            head_params=head_params,
            trunk_optimizer_states=trunk_opt,
            head_optimizer_states=head_opt,
            head_traces=head_traces,
            normalizer_state=norm_state,
            step_count=core.step_count + 1,
        )
        new_state = HordeState(
            core=new_core,
            discounts=next_discounts if self._has_traces else (),
            secondary_weights=secondary,
            diagnostics=out.diagnostics,
            traces=traces,
        )
        rupee, ude = out.rupee, out.ude
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

    def _lstd_update(
        self, state, observation, cumulants, next_observation, terminated, truncated, next_discounts, rho
    ) -> HordeUpdateResult:
        """The update with least-squares heads (``horde.td.least_squares``): predictions and TD
        errors with the weights of the last solve, then the statistics and, every
        ``solve_every`` steps, the solve. Each group reads its first demon's discount and ratio
        (equal within a group by construction; ``update`` checks explicit ones)."""
        heads, groups, core, learner = self.heads, self._lstd_groups, state.core, self.core
        assert heads is not None and groups is not None
        # The normaliser learns for the first ``burn_in`` steps. The basis reads it through
        # ``basis_normalizer``: the learning normaliser itself until the first restart, then a
        # snapshot taken at each restart, so that each stretch of statistics sees one basis.
        steps = state.heads.steps
        _, live = learner.normalized_features(core, observation, update=True)
        if heads.burn_in > 0:
            live = jax.tree_util.tree_map(
                lambda old, new: jnp.where(steps < heads.burn_in, new, old), core.normalizer_state, live
            )
        following = steps < (heads.restarts[0] if heads.restarts else 0) if heads.burn_in > 0 else True
        basis_state = jax.tree_util.tree_map(
            lambda snapshot, new: jnp.where(following, new, snapshot), state.heads.basis_normalizer, live
        )
        x = self._lstd_features(basis_state, observation)
        x_next = self._lstd_features(basis_state, next_observation)
        restart = lstd_restart(heads, jnp.minimum(steps, heads.burn_in) + 1)
        next_basis = jax.tree_util.tree_map(
            lambda snapshot, new: jnp.where(following | restart, new, snapshot), basis_state, live
        )
        norm_state = live
        phi, phi_next = lstd_basis(heads.features, jnp.stack([x, x_next]))
        w = state.heads.weights
        predictions, next_predictions = w @ phi, w @ phi_next
        targets, _ = td_targets(cumulants, next_predictions, next_discounts, terminated, self._z)
        active = ~jnp.isnan(cumulants)
        delta = jnp.where(active, targets - predictions, 0.0)
        reps = np.asarray(groups.representatives)
        new_heads = lstd_step(
            state.heads,
            groups,
            heads,
            phi,
            phi_next,
            cumulants + jnp.where(terminated, jnp.asarray(self._z), 0.0),
            next_discounts[reps],
            None if rho is None else rho[reps],
            jnp.asarray(self._lamdas[reps]),
            terminated,
            terminated | truncated,
        )
        new_state = state._replace(
            core=core._replace(normalizer_state=norm_state, step_count=core.step_count + 1),
            heads=new_heads._replace(basis_normalizer=next_basis),
        )
        # The "step size" of a least-squares head: the weight this step took in its b̄.
        rate = lstd_rate(new_heads.demon_counts, heads.forgetting, heads.averaging_power)
        td_errors = jnp.where(active, delta, jnp.nan)
        metrics = jnp.stack([td_errors * td_errors, td_errors, jnp.where(active, rate, jnp.nan)], axis=-1)
        nan = jnp.full((self.n_demons,), jnp.nan, jnp.float32)
        diverged = (
            ~jnp.isfinite(predictions) | (active & ~jnp.isfinite(delta)) | ~jnp.isfinite(new_heads.weights).all(-1)
        )
        return HordeUpdateResult(
            new_state,
            predictions,
            td_errors,
            jnp.where(active, targets, jnp.nan),
            metrics,
            jnp.ones((), jnp.float32),
            nan,
            nan,
            diverged,
        )

    def _head_step(
        self, state, h, h_next, rho, delta, cotangent, active, gamma_next, z, stored, step_l1=None
    ) -> _HeadStep:
        """Everything after this step's per-head traces ``z``: the heads' TD(λ) step, GTD(λ)'s
        correction and secondary weights, the select that keeps inactive demons, and the
        diagnostics. ``stored`` is the core's stored trace layout (``()`` when not kept there)."""
        core, learner = state.core, self.core
        step = head_step_from_traces(
            learner.head_opt,
            learner.bounder,
            core.head_params,
            core.head_optimizer_states,
            z,
            delta,
            cotangent,
            step_l1,
            features=h,
        )
        z_w, z_b = step.traces
        new_w, new_b = step.heads
        head_opt, mean_step = step.optimizer_states, step.mean_step_size
        secondary = state.secondary_weights
        if self._has_off_policy:
            opt = learner.head_opt
            step_sizes = (
                jax.vmap(opt.step_sizes)(head_opt[0], z_w) * step.scale[:, None],
                jax.vmap(opt.step_sizes)(head_opt[1], z_b) * step.scale,
            )
            off = jnp.asarray(self._off_policy)
            new_w, new_b = gtd_correction(
                new_w, new_b, (z_w, z_b), secondary, step_sizes, gamma_next, self._lamdas, h_next, off
            )
            secondary = secondary_update(secondary, (z_w, z_b), step.delta, h, self.secondary_step_size, off)
        stored_traces = (z_w, z_b) if stored else ()
        head_params, stored_traces, head_opt, secondary = select_heads(
            active,
            (HeadParams(new_w, new_b), stored_traces, head_opt, secondary),
            (core.head_params, stored, core.head_optimizer_states, state.secondary_weights),
        )
        diagnostics: DiagnosticsState | tuple[()] = ()
        if self.diagnostics:
            diagnostics, rupee, ude = diagnostics_step(
                state.diagnostics, h, (z_w, z_b), delta, rho, active, self._lamdas, self.diagnostics_step_size
            )
        else:
            rupee = ude = jnp.full((self.n_demons,), jnp.nan, jnp.float32)
        return _HeadStep(head_params, stored_traces, head_opt, secondary, mean_step, diagnostics, rupee, ude)

    def _default_discounts(self, next_observation):
        n = self.n_demons
        evaluation = self.demons.evaluate(
            jnp.zeros_like(next_observation), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32), next_observation
        )
        return evaluation.discounts.reshape((n,))

    def update_from_transition_traced(
        self,
        state,
        observation,
        action,
        reward,
        next_observation,
        terminated,
        truncated,
        behaviour_prob,
        attached: bool = False,
    ) -> HordeUpdateResult:
        """``update_from_transition`` without its boundary checks, for use inside traced code:
        the demons compute cumulants, discounts and ratios from the transition. ``attached``
        (static): the caller knows that no demon of ``state`` is detached from its trace group
        (``horde.td.traces``), so a state with per-demon rows takes the group-only update."""
        return self.evaluate_and_update_traced(
            state, observation, action, reward, next_observation, terminated, truncated, behaviour_prob, attached
        )[0]

    def evaluate_and_update_traced(
        self,
        state,
        observation,
        action,
        reward,
        next_observation,
        terminated,
        truncated,
        behaviour_prob,
        attached: bool = False,
        *,
        control_policies: Any = None,
    ):
        """Evaluates the demons on the transition and updates; returns ``(result, evaluation)``
        (``attached`` as in ``update_from_transition_traced``; ``control_policies``, the
        control demons' greedy policies at :math:`S_t` that ``greedy_in`` target policies
        read, as in ``DemonSet.evaluate``)."""
        evaluation = self.demons.evaluate(
            observation, action, reward, next_observation, behaviour_prob, control_policies=control_policies
        )
        rhos = evaluation.rhos if self._has_off_policy else None
        result = self._update(
            state,
            observation,
            evaluation.cumulants,
            next_observation,
            terminated,
            truncated,
            evaluation.discounts,
            rhos,
            explicit=False,
            attached=attached,
        )
        return result, evaluation

    def scan_traced(self, state: HordeState, transitions: Transitions) -> HordeLearningResult:
        """``update_from_transition_traced`` scanned over checked ``Transitions``;
        ``scan_compiled`` is its jitted form."""

        def body(s, t):
            r = self.update_from_transition_traced(s, *t)
            return r.state, (r.predictions, r.per_demon_metrics)

        final, (predictions, metrics) = jax.lax.scan(body, state, transitions)
        return HordeLearningResult(final, predictions, metrics)

    def batched_traced(self, transitions: Transitions, keys, observation_dim: int) -> BatchedHordeResult:
        """``scan_traced`` from one fresh state per key, vmapped over the keys;
        ``batched_compiled`` is its jitted form (``observation_dim`` static)."""

        def one_seed(key):
            return self.scan_traced(self.init_traced(observation_dim, key), transitions)

        r = jax.vmap(one_seed)(keys)
        return BatchedHordeResult(r.state, r.predictions, r.per_demon_metrics)

    # ---------------------------------------------------------------------------------------
    # Public, checked entry points

    def check_state(self, state: Any, *, copies: int | None = None, observation_dim: int | None = None) -> int:
        """Checks that ``state`` is a ``HordeState`` this learner made: the tree, shapes and
        dtypes of ``init`` (its trunk, demon count, traces, secondary weights, diagnostics),
        whatever layout this learner's configuration gives them.

        Args:
            state: the state.
            copies: the state is batched over this many copies (a leading axis on every
                leaf); None: unbatched.
            observation_dim: the observation size the state must have been made for; None:
                any.

        Returns:
            The observation size the state was initialised for.

        Raises:
            TypeError: ``state`` is not a ``HordeState``.
            ValueError: it does not fit; the message names what differs (demon count, trunk,
                observation size, or the first array of another shape or dtype, e.g. a trace
                layout of another configuration).
        """
        if not isinstance(state, HordeState):
            raise TypeError(f"state must be a HordeState (from HordeLearner.init), got {type(state).__name__}")
        self.core.check_state(state.core, copies=copies, observation_dim=observation_dim)
        dim = self.core.feature_dim(state.core)
        # A shared-traces state carries per-demon trace rows after updates with explicit inputs
        # (``with_trace_rows``): it is checked against the template of that layout.
        rows = self._trace_groups is not None and isinstance(state.traces, SharedTraces) and state.traces.rows != ()
        cache = self.__dict__.setdefault("_state_templates", {})
        if (dim, rows) not in cache:
            make = (
                (lambda k: self.with_trace_rows(self.init_traced(dim, k)))
                if rows
                else (lambda k: self.init_traced(dim, k))
            )
            cache[(dim, rows)] = StateTemplate(jax.eval_shape(make, jax.random.key(0)))
        mismatch = cache[(dim, rows)].mismatch(state, () if copies is None else (int(copies),))
        if mismatch:
            raise ValueError(
                f"state does not fit this learner: {mismatch} (a state of a learner with other demons, "
                "diagnostics or trace layout (shared_traces))"
            )
        return dim

    def head_traces(self, state: HordeState) -> tuple[jax.Array, jax.Array] | tuple[()]:
        """Every demon's head trace ``(z_w (n_demons, H), z_b (n_demons,))`` whatever the
        layout that stores them: with shared traces, the group's trace ``Z_{g(i)}`` for a
        demon that follows its group and its own row for a detached one. ``()`` when no demon
        keeps a trace. Works on a batched state too (leading seed axis)."""
        if self._trace_groups is None:
            if not state.core.head_traces:
                return ()
            z_w, z_b = state.core.head_traces
            return z_w, z_b
        return traces_per_head(state.traces, self._trace_groups)

    def all_attached(self, state: HordeState) -> bool:
        """Whether every demon of ``state`` follows its trace group (no per-demon rows, or none
        detached); reads the flags back from the device."""
        if self._trace_groups is None or state.traces.rows == ():
            return True
        rows: TraceRows = state.traces.rows
        return not bool(np.asarray(rows.detached).any())

    def without_trace_rows(self, state: HordeState) -> HordeState:
        """``state`` without per-demon trace rows, the layout of ``init`` and of demon-evaluated
        updates. Unchanged without shared traces or rows.

        Raises:
            ValueError: some demon of ``state`` is detached from its group (its own row holds
                its trace until the episode ends).
        """
        if self._trace_groups is None or state.traces.rows == ():
            return state
        if not self.all_attached(state):
            detached = np.flatnonzero(np.asarray(state.traces.rows.detached).reshape(-1, self.n_demons).any(axis=0))
            raise ValueError(
                f"state has demons detached from their trace group ({[self.names[i] for i in detached[:5]]}); "
                "their per-demon trace rows cannot be dropped before the episode ends"
            )
        return state._replace(traces=state.traces._replace(rows=()))

    def with_trace_rows(self, state: HordeState) -> HordeState:
        """``state`` with per-demon trace rows (``horde.td.traces``): the layout every update
        with explicit cumulants, discounts or ratios returns. A caller that needs one state
        structure for both kinds of update (the ``Daemon``) converts its state once. Unchanged
        without shared traces or where the rows exist. Works on batched states too."""
        if self._trace_groups is None:
            return state
        return state._replace(traces=with_trace_rows(state.traces, self._trace_groups))

    def predict(self, state: HordeState, observation: Any) -> jax.Array:
        """Every demon's prediction ``v_i(observation)``, shape ``(n_demons,)``."""
        dim = self.check_state(state)
        obs = as_vector("observation", observation, dim, "observation_dim")
        check_observation_values("observation", obs)
        return self._predict_jit(state, obs)

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
        if self._lstd_groups is not None:
            self._check_group_values("discounts", d)
            self._check_group_values("rhos", r)
        return self._update_jit(
            state, obs, c, next_obs, check_flag("terminated", terminated), check_flag("truncated", truncated), d, r
        )

    def _check_group_values(self, name: str, values: Any) -> None:
        """Least-squares heads share ``A`` and a trace per group (``lstd_groups``): explicit
        ``values`` (discounts or ratios) must be equal within each group."""
        if values is None or self._lstd_groups is None:
            return
        concrete = concrete_values(values)
        if concrete is None:
            raise ValueError(
                f"{name} must be concrete values with least-squares heads (checked equal within each group "
                "that shares A), got a traced array; call update_traced inside traced code"
            )
        group_of = self._lstd_groups.group_of
        first = concrete[self._lstd_groups.representatives][group_of]
        bad = np.flatnonzero(first != concrete)
        if bad.size:
            i = int(bad[0])
            j = int(self._lstd_groups.representatives[group_of[i]])
            raise ValueError(
                f"{name} of demon {self.names[i]!r} must equal that of {self.names[j]!r} with least-squares "
                f"heads (they share A: same discount, λ and target policy), got {concrete[i]} and {concrete[j]}"
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

    def checked_action(self, action: Any) -> Any:
        """``action`` checked against the demons' discrete actions: an integer in
        ``[0, demons.n_actions)`` when some target policy needs it (so that its importance ratio
        is right), unchecked otherwise (e.g. a continuous action read by on-policy demons).

        Raises:
            TypeError: the action is not an integer.
            ValueError: the action is out of range.
        """
        n_actions = self.demons.n_actions
        return action if n_actions is None else as_action("action", action, n_actions)

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
            self.checked_action(action),
            reward if is_tracer(reward) else np.float32(reward),
            next_obs,
            check_flag("terminated", terminated),
            check_flag("truncated", truncated),
            behaviour_prob if is_tracer(behaviour_prob) else np.float32(behaviour_prob),
        )
