"""Multi-head MLP learner for multi-task continual learning.

A shared trunk and one linear head per prediction::

    Input -> [Dense(H) -> LayerNorm -> LeakyReLU] x N -> {Head_i: Dense(1)} x n_heads

(``use_layer_norm=False`` drops the LayerNorm; ``hidden_sizes=()`` gives a multi-head linear
model whose heads read the input features directly.) Every head can be active or inactive at
each step: a NaN target marks a head inactive, and an inactive head keeps its parameters,
traces and optimizer state bit for bit.

One update makes a single backward pass through the trunk whatever the number of heads: the
VJP of the trunk at the error-weighted cotangent ``Σ_i δ_i w_i`` is the gradient of
``Σ_i δ_i v_i`` with respect to the trunk parameters.

Heads are stored as stacked arrays, ``(n_heads, H)`` weights and ``(n_heads,)`` biases, and so
are their traces and optimizer states: no Python loop over heads is ever traced, so the compiled
program (and its compile time) does not grow with the number of heads.

Reference: Elsayed, Vasan & Mahmood 2024, "Streaming Deep Reinforcement Learning Finally Works".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from horde.core.bounders import Bounder, OvershootBounding, bounder_from_config
from horde.core.checks import (
    ArgumentTypeError,
    as_bool,
    as_float,
    as_instance,
    as_int,
    as_vector,
    check_observation_values,
    check_target_values,
    check_unit_interval,
)
from horde.core.head_features import FourierFeatures, head_features_from_config
from horde.core.heads import HeadUpdate, head_forward, head_update, select_heads
from horde.core.initializers import sparse_init
from horde.core.normalizers import Normalizer, normalizer_from_config
from horde.core.optimizers import LMS, Optimizer, optimizer_from_config
from horde.core.shared_traces import (
    TraceGroups,
    decay_groups,
    init_shared_traces,
    shared_head_step,
    traces_per_head,
    with_trace_rows,
)
from horde.core.state_fit import StateTemplate
from horde.core.trunk import TrunkTape, trunk_forward_with_tape, trunk_step
from horde.core.types import (
    BatchedMultiHeadResult,
    HeadParams,
    MLPParams,
    MultiHeadLearningResult,
    MultiHeadMLPState,
    MultiHeadMLPUpdateResult,
)

__all__ = ["MultiHeadMLPLearner"]


class MultiHeadMLPLearner:
    """Multi-head MLP with shared trunk and independent prediction heads.

    Architecture::

        Input -> [Dense(H) -> LayerNorm -> LeakyReLU] x N -> {Head_i: Dense(1)} x n_heads

    All hidden layers are shared (the trunk). Each head is an independent linear projection from
    the last hidden representation to a scalar. Heads are stacked arrays (see
    ``MultiHeadMLPState``): ``state.head_params.weights[i]`` is head ``i``.

    One update, for features ``x``, trunk output ``h`` and targets ``y`` (NaN = inactive):

    * ``δ_i = y_i - v_i(x)`` for active heads, 0 for inactive ones;
    * trunk gradient ``G`` = VJP of the trunk at cotangent ``Σ_i δ_i w_i``; trunk trace
      ``z_T ← γλ z_T + G``; trunk step from ``optimizer`` with ``error=None``, bounded with
      pseudo-error 1; ``θ_T += step``;
    * head traces ``z_i ← (γλ)_i z_i + h`` (bias trace ``+ 1``); head step ``s_i`` from the head
      optimizer with ``error=δ_i``, bounded with error ``δ_i``; ``w_i += δ_i s_i``.

    Trunk trace constraint: with a non-empty trunk, the trunk ``gamma * lamda`` must be 0. The
    per-head errors are folded into the trunk cotangent before trace accumulation, which is
    only correct when the trunk trace resets every step. Per-head trace decay lives on the
    heads only (``per_head_gamma_lamda``; ``HordeLearner`` sets it per demon). With
    ``hidden_sizes=()`` there is no trunk and any ``gamma * lamda`` is allowed.

    Single-step (daemon) use: ``predict`` and ``update`` take one unbatched observation (a 1-D
    array, NumPy accepted) and are compiled on first call. Warm up once at start-up::

        learner.predict(state, np.zeros(feature_dim)).block_until_ready()
        learner.update(state, np.zeros(feature_dim), np.full(n_heads, np.nan))

    Args:
        n_heads: number of prediction heads (>= 1).
        hidden_sizes: hidden layer sizes; ``()`` for a multi-head linear model.
        optimizer: optimizer for the trunk (and for the heads when ``head_optimizer`` is
            None). Defaults to ``LMS(step_size)``. Must have ``init_for_shape`` and
            ``update_from_gradient``.
        step_size: base step size, used only when ``optimizer`` is None.
        bounder: optional update bounder, ``ObGDBounding()`` or ``OvershootBounding()``.
        gamma: discount for trace decay (default 0, supervised).
        lamda: trace-decay parameter (default 0).
        normalizer: optional online feature normalizer.
        sparsity: fraction of each unit's inputs zeroed at initialisation, in [0, 1).
        leaky_relu_slope: negative slope of the LeakyReLU.
        use_layer_norm: apply the parameterless LayerNorm after each hidden Dense.
        head_optimizer: optional separate optimizer for the heads (e.g. LMS trunk with
            Autostep heads).
        per_head_gamma_lamda: optional per-head trace decay ``(γλ)_i`` (length ``n_heads``),
            used instead of the global ``gamma * lamda`` for the heads.
        store_head_traces: whether the state keeps the heads' traces between steps
            (``state.head_traces``). ``None`` (the default) decides from the decays: traces
            are stored when some head's ``(γλ)_i > 0``, since with every decay 0 a trace is
            just this step's features. ``True`` stores them whatever the decays, for a caller
            that passes its own per-step decays to ``head_update`` (the ``HordeLearner``,
            whose decays ``γ_{i,t} λ_i`` change every step). ``False`` with some decay > 0 is
            a ``ValueError``: those traces would be lost between steps.
        head_features: optional fixed features of the trunk's input that the heads see next
            to the trunk's output (``FourierFeatures``: the input itself and random Fourier
            features of it; ``horde.core.head_features``): head ``i`` predicts
            ``w_i · [h, φ(x)] + b_i`` and the trunk learns from ``h``'s part of the
            cotangent. Needs a trunk. Default None: the heads see ``h`` only.
        trace_mode: ``"accumulating"`` (the default, ``z ← γλ z + ∇``) or ``"replacing"``
            (element by element, ``z[j] ← ∇[j]`` where ``∇[j] ≠ 0``, else ``γλ z[j]``; Singh &
            Sutton 1996), as alberta-framework's ``TraceMode`` (its enum members are accepted
            too). It changes the heads' traces only: the trunk's trace decay is 0, where both
            modes give ``z = ∇``.
        shared_traces: store each distinct head trace once (``horde.core.shared_traces``).
            Heads with the same ``(γλ)_i`` (as float32) that have been active at the same
            steps have the same trace, bit for bit: the state keeps one trace per distinct
            decay (``state.head_traces`` is then a ``SharedTraces``: ``(n_groups, H)`` group
            traces and per-head rows) and a head keeps its own row only while its trace
            differs from its group's (from a step where it was inactive until its trace is
            its group's again). An update in which every head is active and none is detached
            reads and writes the group traces only. The results are those of ``False`` (one
            trace per head, ``(n_heads, H)``): bit for bit with LMS heads and with IDBD heads
            without a bounder, to float32 rounding where a reduction over a head's per-weight
            step sizes enters (Autostep, a bounder over IDBD). Used only where traces are
            stored because of the decays (``store_head_traces=None``) and some heads share a
            decay; ``learner.head_traces(state)`` gives every head's trace in either layout.
    """

    #: The eligibility-trace modes ``trace_mode`` accepts.
    TRACE_MODES = ("accumulating", "replacing")

    def __init__(
        self,
        n_heads: int,
        hidden_sizes: tuple[int, ...] = (128, 128),
        optimizer: Optimizer | None = None,
        step_size: float = 1.0,
        bounder: Bounder | None = None,
        gamma: float = 0.0,
        lamda: float = 0.0,
        normalizer: Normalizer | None = None,
        sparsity: float = 0.9,
        leaky_relu_slope: float = 0.01,
        use_layer_norm: bool = True,
        head_optimizer: Optimizer | None = None,
        per_head_gamma_lamda: Any = None,
        store_head_traces: bool | None = None,
        trace_mode: str = "accumulating",
        shared_traces: bool = True,
        head_features: FourierFeatures | None = None,
    ) -> None:
        n_heads = as_int("n_heads", n_heads, low=1)
        if isinstance(hidden_sizes, (str, bytes)) or not hasattr(hidden_sizes, "__iter__"):
            raise ArgumentTypeError(f"hidden_sizes must be a tuple of positive integers, got {hidden_sizes!r}")
        hidden_sizes = tuple(hidden_sizes)
        for i, size in enumerate(hidden_sizes):
            as_int(f"hidden_sizes[{i}]", size, low=1, expected="a positive integer")
        step_size = as_float("step_size", step_size, low=0)
        sparsity = as_float("sparsity", sparsity, low=0, high=1, high_open=True)
        gamma = check_unit_interval("gamma", gamma)
        lamda = check_unit_interval("lamda", lamda)
        if hidden_sizes and gamma * lamda > 0:
            raise ValueError(
                f"trunk gamma * lamda must be 0 when hidden_sizes is non-empty, got "
                f"gamma={gamma} * lamda={lamda} = {gamma * lamda}: the trunk trace folds the "
                "errors in and is only correct when it resets every step. Use "
                "per_head_gamma_lamda (or HordeLearner) for trace decay on the heads, or "
                "hidden_sizes=() for a linear model"
            )
        leaky_relu_slope = as_float("leaky_relu_slope", leaky_relu_slope)
        use_layer_norm = as_bool("use_layer_norm", use_layer_norm)
        for name, opt in (("optimizer", optimizer), ("head_optimizer", head_optimizer)):
            as_instance(
                name,
                opt,
                methods=("init_for_shape", "update_from_gradient"),
                example="LMS(0.01), IDBD(), Autostep()",
                allow_none=True,
            )
        as_instance(
            "bounder",
            bounder,
            OvershootBounding,
            methods=("bound",),
            example="ObGDBounding(), OvershootBounding()",
            allow_none=True,
        )
        as_instance(
            "normalizer", normalizer, methods=("init", "update"), example="WelfordNormalizer()", allow_none=True
        )
        as_instance("head_features", head_features, FourierFeatures, example="FourierFeatures()", allow_none=True)
        if head_features is not None and not hidden_sizes:
            raise ValueError(
                f"head_features={head_features!r} needs a trunk, got hidden_sizes=(): without one the "
                "heads already read the input features directly"
            )
        if per_head_gamma_lamda is not None:
            values = np.asarray(per_head_gamma_lamda, dtype=object).ravel()
            wrong = [
                v
                for v in values
                if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating))
            ]
            if isinstance(per_head_gamma_lamda, (str, bytes, dict)) or wrong:
                raise ArgumentTypeError(
                    f"per_head_gamma_lamda must be a sequence of n_heads={n_heads} real numbers in [0, 1], "
                    f"got {per_head_gamma_lamda!r}" + (f" (holding {wrong[0]!r})" if wrong else "")
                )
            phgl = np.asarray(per_head_gamma_lamda, dtype=np.float64)
            if phgl.shape != (n_heads,):
                raise ValueError(f"per_head_gamma_lamda must have length n_heads={n_heads}, got shape {phgl.shape}")
            bad = np.flatnonzero(~((phgl >= 0) & (phgl <= 1)))
            if bad.size:
                raise ValueError(f"per_head_gamma_lamda[{bad[0]}] must be in [0, 1], got {float(phgl[bad[0]])}")
            per_head_gamma_lamda = tuple(float(v) for v in phgl)

        # An enum such as alberta-framework's TraceMode is read by its value.
        mode = getattr(trace_mode, "value", trace_mode)
        if not isinstance(mode, str) or mode not in self.TRACE_MODES:
            raise ValueError(f"trace_mode must be one of {list(self.TRACE_MODES)}, got {trace_mode!r}")
        self.trace_mode: str = mode

        self._n_heads: int = int(n_heads)
        self.hidden_sizes: tuple[int, ...] = tuple(int(s) for s in hidden_sizes)
        self.step_size: float = float(step_size)
        self.optimizer: Optimizer = optimizer if optimizer is not None else LMS(self.step_size)
        self._optimizer_given: Optimizer | None = optimizer
        self.head_optimizer: Optimizer | None = head_optimizer
        self.bounder: Bounder | None = bounder
        self.gamma: float = gamma
        self.lamda: float = lamda
        self._normalizer: Normalizer | None = normalizer
        self.sparsity: float = float(sparsity)
        self.leaky_relu_slope: float = float(leaky_relu_slope)
        self.use_layer_norm: bool = bool(use_layer_norm)
        self.head_features: FourierFeatures | None = head_features
        self.per_head_gamma_lamda: tuple[float, ...] | None = per_head_gamma_lamda
        if per_head_gamma_lamda is None:
            self._head_decay: np.ndarray = np.full((self._n_heads,), gamma * lamda, np.float32)
        else:
            self._head_decay = np.asarray(per_head_gamma_lamda, np.float32)
        decays_need_traces = bool(np.any(self._head_decay > 0))
        if store_head_traces is not None and not isinstance(store_head_traces, (bool, np.bool_)):
            raise ArgumentTypeError(f"store_head_traces must be True, False or None, got {store_head_traces!r}")
        if store_head_traces is not None and not store_head_traces and decays_need_traces:
            i = int(np.flatnonzero(self._head_decay > 0)[0])
            raise ValueError(
                f"store_head_traces=False but head {i} has trace decay gamma*lamda = "
                f"{float(self._head_decay[i])} > 0, whose trace must be kept between steps"
            )
        self.store_head_traces: bool | None = None if store_head_traces is None else bool(store_head_traces)
        self._stores_head_traces: bool = decays_need_traces if store_head_traces is None else bool(store_head_traces)
        self.shared_traces: bool = as_bool("shared_traces", shared_traces)
        # Grouped only where the decays are the learner's own (a caller that stores traces for
        # its own per-step decays reads them per head) and some heads share one.
        groups = decay_groups(self._head_decay) if decays_need_traces and store_head_traces is None else None
        share = self.shared_traces and groups is not None and groups.n_groups < self._n_heads
        self._trace_groups: TraceGroups | None = groups if share else None

        self._predict_jit: Callable[..., Any] = jax.jit(self.predict_traced)
        self._update_jit: Callable[..., Any] = jax.jit(self.update_traced)
        self.scan_compiled: Callable[..., Any] = jax.jit(self.scan_traced)
        self.batched_compiled: Callable[..., Any] = jax.jit(self.batched_traced, static_argnums=(3,))

    # ---------------------------------------------------------------------------------------
    # Properties and configuration

    @property
    def n_heads(self) -> int:
        """Number of prediction heads."""
        return self._n_heads

    @property
    def normalizer(self) -> Normalizer | None:
        """The feature normalizer, or None if normalization is disabled."""
        return self._normalizer

    @property
    def stores_head_traces(self) -> bool:
        """Whether states keep the heads' traces (``state.head_traces`` non-empty); see the
        ``store_head_traces`` argument."""
        return self._stores_head_traces

    @property
    def trace_groups(self) -> TraceGroups | None:
        """The heads' trace groups (equal ``(γλ)_i``) when states store one trace per group
        (``state.head_traces`` a ``SharedTraces``), else None (one trace per head, or none)."""
        return self._trace_groups

    @property
    def head_opt(self) -> Optimizer:
        """The optimizer the heads use (``head_optimizer`` or else ``optimizer``)."""
        return self.head_optimizer if self.head_optimizer is not None else self.optimizer

    def to_config(self) -> dict[str, Any]:
        """Serialize learner configuration to a JSON-serializable dict.

        Returns:
            Dict with all constructor arguments needed to recreate the learner via
            ``from_config()``, and ``"type": "MultiHeadMLPLearner"`` (as alberta-framework
            writes it); ``"head_features"`` only when they are set.
        """
        config = {
            "type": "MultiHeadMLPLearner",
            "n_heads": self._n_heads,
            "hidden_sizes": list(self.hidden_sizes),
            "optimizer": None if self._optimizer_given is None else self._optimizer_given.to_config(),
            "step_size": self.step_size,
            "bounder": None if self.bounder is None else self.bounder.to_config(),
            "gamma": self.gamma,
            "lamda": self.lamda,
            "normalizer": None if self._normalizer is None else self._normalizer.to_config(),
            "sparsity": self.sparsity,
            "leaky_relu_slope": self.leaky_relu_slope,
            "use_layer_norm": self.use_layer_norm,
            "head_optimizer": None if self.head_optimizer is None else self.head_optimizer.to_config(),
            "per_head_gamma_lamda": None if self.per_head_gamma_lamda is None else list(self.per_head_gamma_lamda),
            "store_head_traces": self.store_head_traces,
            "trace_mode": self.trace_mode,
            "shared_traces": self.shared_traces,
        }
        # Written only when set: the seed's (and alberta-framework's) configs keep their keys.
        if self.head_features is not None:
            config["head_features"] = self.head_features.to_config()
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MultiHeadMLPLearner:
        """Reconstruct a learner from a config dict produced by ``to_config()``, or by
        alberta-framework's ``MultiHeadMLPLearner.to_config()`` (same keys, with ``"type"`` and
        ``"trace_mode"``; see the guide "Coming from alberta-framework").

        Args:
            config: the dict; missing keys take the constructor's defaults.

        Returns:
            The learner.

        Raises:
            ValueError: an unknown key, a ``"type"`` other than ``"MultiHeadMLPLearner"``, a
                missing ``"n_heads"`` or an invalid value.
        """
        config = dict(config)
        kind = config.pop("type", "MultiHeadMLPLearner")
        if kind != "MultiHeadMLPLearner":
            raise ValueError(f"config 'type' must be 'MultiHeadMLPLearner', got {kind!r}")
        expected = (set(cls(1, ()).to_config()) - {"type"}) | {"head_features"}
        unknown = set(config) - expected
        if unknown:
            raise ValueError(f"config has unknown keys {sorted(unknown)}; expected keys {sorted(expected)}")
        if "n_heads" not in config:
            raise ValueError("config is missing the required key 'n_heads'")
        config["hidden_sizes"] = tuple(config.get("hidden_sizes", (128, 128)))
        config["optimizer"] = optimizer_from_config(config.get("optimizer"))
        config["head_optimizer"] = optimizer_from_config(config.get("head_optimizer"))
        config["bounder"] = bounder_from_config(config.get("bounder"))
        config["normalizer"] = normalizer_from_config(config.get("normalizer"))
        config["head_features"] = head_features_from_config(config.get("head_features"))
        return cls(**config)

    def __repr__(self) -> str:
        return (
            f"MultiHeadMLPLearner(n_heads={self._n_heads}, hidden_sizes={self.hidden_sizes}, "
            f"optimizer={self.optimizer}, head_optimizer={self.head_optimizer}, "
            f"bounder={self.bounder}, normalizer={self._normalizer}"
            + ("" if self.head_features is None else f", head_features={self.head_features}")
            + ")"
        )

    # ---------------------------------------------------------------------------------------
    # Initialisation

    def init(self, feature_dim: int, key: jax.Array) -> MultiHeadMLPState:
        """Initialize the learner state with sparse weights.

        Args:
            feature_dim: dimension of the input feature vector.
            key: JAX random key for weight initialization.

        Returns:
            Initial state: sparse trunk weights, zero biases, sparse stacked head weights and
            zero head biases, zero traces, fresh optimizer and normalizer states.
        """
        feature_dim = as_int("feature_dim", feature_dim, low=1)
        keys = jax.random.split(key, len(self.hidden_sizes) + 1)
        weights, biases = [], []
        fan_in = int(feature_dim)
        for k, size in zip(keys[:-1], self.hidden_sizes):
            weights.append(sparse_init(k, fan_in, size, self.sparsity))
            biases.append(jnp.zeros((size,), jnp.float32))
            fan_in = size
        head_w = sparse_init(keys[-1], fan_in, self._n_heads, self.sparsity, units_first=True)
        if self.head_features is not None:
            # the fixed features' weights start at 0: the heads start as the seed's
            extra = self.head_features.size(int(feature_dim))
            head_w = jnp.concatenate([head_w, jnp.zeros((self._n_heads, extra), jnp.float32)], axis=1)
        head_b = jnp.zeros((self._n_heads,), jnp.float32)

        trunk_opt = []
        for w, b in zip(weights, biases):
            trunk_opt += [self.optimizer.init_for_shape(w.shape), self.optimizer.init_for_shape(b.shape)]
        head_opt = self.head_opt
        head_traces: Any = ()
        if self._trace_groups is not None:
            # Per-head rows from the start: any update's NaN targets can detach a head.
            width = int(head_w.shape[1])  # the heads' input: h, and the head features where set
            head_traces = with_trace_rows(init_shared_traces(self._trace_groups, width), self._trace_groups)
        elif self._stores_head_traces:
            head_traces = (jnp.zeros_like(head_w), jnp.zeros_like(head_b))
        return MultiHeadMLPState(
            trunk_params=MLPParams(tuple(weights), tuple(biases)),
            head_params=HeadParams(head_w, head_b),
            trunk_optimizer_states=tuple(trunk_opt),
            head_optimizer_states=(
                head_opt.init_for_shape(head_w.shape),
                head_opt.init_for_shape(head_b.shape),
            ),
            trunk_traces=(),
            head_traces=head_traces,
            normalizer_state=None if self._normalizer is None else self._normalizer.init(int(feature_dim)),
            step_count=jnp.zeros((), jnp.int32),
        )

    def feature_dim(self, state: MultiHeadMLPState) -> int:
        """The input feature dimension a state was initialised for."""
        if self.hidden_sizes:
            return int(state.trunk_params.weights[0].shape[-2])
        return int(state.head_params.weights.shape[-1])

    def head_traces(self, state: MultiHeadMLPState) -> tuple[jax.Array, jax.Array] | tuple[()]:
        """Every head's trace ``(z_w (n_heads, H), z_b (n_heads,))`` whatever the layout that
        stores them: with shared traces, the group's trace ``Z_{g(i)}`` for a head that follows
        its group and its own row for a detached one. ``()`` when no trace is stored. Works on a
        batched state too (leading seed axis)."""
        if self._trace_groups is None:
            if not state.head_traces:
                return ()
            z_w, z_b = state.head_traces
            return z_w, z_b
        return traces_per_head(state.head_traces, self._trace_groups)

    # ---------------------------------------------------------------------------------------
    # Pure pieces (traced); the math lives in trunk.py and heads.py

    def trunk_forward(self, trunk_params: MLPParams, x: jax.Array) -> jax.Array:
        """The heads' features for features ``x``: the trunk's output ``h`` (``x`` itself in
        linear mode), followed by ``head_features(x)`` when set."""
        return self.trunk_forward_with_tape(trunk_params, x)[0]

    def trunk_forward_with_tape(self, trunk_params: MLPParams, x: jax.Array) -> tuple[jax.Array, TrunkTape]:
        """The heads' features (as ``trunk_forward``) and what the trunk's backward pass
        needs: each layer's input, its LeakyReLU input and, with LayerNorm, its ``1/σ`` (see
        ``horde.core.trunk``). ``x`` may carry leading batch axes."""
        h, tape = trunk_forward_with_tape(trunk_params, x, self.use_layer_norm, self.leaky_relu_slope)
        if self.head_features is None:
            return h, tape
        return jnp.concatenate([h, self.head_features(x).astype(h.dtype)], axis=-1), tape

    @staticmethod
    def head_forward(head_params: HeadParams, h: jax.Array) -> jax.Array:
        """All heads' predictions ``W h + b``, shape ``(n_heads,)``."""
        return head_forward(head_params, h)

    def normalized_features(
        self, state: MultiHeadMLPState, observation: jax.Array, update: bool
    ) -> tuple[jax.Array, Any]:
        """The features the trunk sees for ``observation``.

        Args:
            state: the learner state (its ``normalizer_state``).
            observation: ``(feature_dim,)``.
            update: fold ``observation`` into the normalizer's statistics first (as an update
                does); ``False`` normalises with the current statistics (as ``predict`` does).

        Returns:
            ``(features, normalizer_state)``: ``observation`` as float32 and the state unchanged
            without a normalizer.
        """
        x = jnp.asarray(observation, jnp.float32)
        if self._normalizer is None:
            return x, state.normalizer_state
        if update:
            return self._normalizer.update(state.normalizer_state, x)
        return self._normalizer.normalize(state.normalizer_state, x), state.normalizer_state

    def trunk_part(self, x: jax.Array) -> jax.Array:
        """The entries of a head-input-sized last axis that belong to the trunk's output: with
        ``head_features`` the heads read ``[h, φ(x)]`` and only ``h``'s first ``H`` entries (its
        weights, its cotangent) reach the trunk; without, ``x`` itself.

        Args:
            x: ``(..., H)``, or ``(..., H + head_features.size(d))`` with head features.

        Returns:
            ``(..., H)``.
        """
        return x if self.head_features is None else x[..., : self.hidden_sizes[-1]]

    def trunk_step(
        self,
        state: MultiHeadMLPState,
        tape: TrunkTape,
        cotangent: jax.Array,
        errors: jax.Array | None = None,
        active: jax.Array | None = None,
    ):
        """Applies one trunk update from the error-weighted cotangent ``Σ_i δ_i w_i``
        (``horde.core.trunk.trunk_step`` with this learner's optimizer and bounder).
        ``errors`` (the cotangent's ``δ``) and ``active`` (``(n_heads,)`` bool) are read by
        ``OvershootBounding`` only.

        With ``head_features`` the cotangent and the head weights cover every head feature;
        the trunk reads their first ``H`` entries, its own output's.

        Returns ``(trunk_params, trunk_optimizer_states, bounding_scale)``.
        """
        cotangent, head_weights = self.trunk_part(cotangent), self.trunk_part(state.head_params.weights)
        return trunk_step(
            state.trunk_params,
            state.trunk_optimizer_states,
            tape,
            cotangent,
            self.optimizer,
            self.bounder,
            self.use_layer_norm,
            self.leaky_relu_slope,
            errors,
            active,
            head_weights,
        )

    def head_update(
        self,
        state: MultiHeadMLPState,
        h: jax.Array,
        decay: jax.Array,
        rho: jax.Array | None,
        delta: jax.Array,
        cotangent: jax.Array,
    ) -> HeadUpdate:
        """Every head's traces, optimizer step and new parameters for errors ``δ`` (before the
        select that keeps inactive heads); see ``horde.core.heads.head_update``.

        Args:
            state: current state (its head parameters, optimizer states and every head's trace,
                ``head_traces(state)``, whatever the layout that stores them).
            h: head features ``(H,)``.
            decay: per-head trace decay ``(γλ)_i``, ``(n_heads,)``.
            rho: importance ratios ``(n_heads,)`` or ``None``.
            delta: ``δ``, ``(n_heads,)``, 0 for inactive heads.
            cotangent: the trunk's cotangent (the head update is ordered after it).
        """
        return head_update(
            self.head_opt,
            self.bounder,
            state.head_params,
            self.head_traces(state),
            state.head_optimizer_states,
            h,
            decay,
            rho,
            delta,
            cotangent,
            self.trace_mode == "replacing",
        )

    def _update_with(
        self,
        state: MultiHeadMLPState,
        observation: jax.Array,
        targets: jax.Array,
        head_decay: jax.Array,
    ) -> MultiHeadMLPUpdateResult:
        """One update with an explicit per-head trace decay ``(γλ)_i``."""
        targets = jnp.asarray(targets, jnp.float32)
        x, norm_state = self.normalized_features(state, observation, update=True)
        h, tape = self.trunk_forward_with_tape(state.trunk_params, x)
        predictions = self.head_forward(state.head_params, h)
        active = ~jnp.isnan(targets)
        delta = jnp.where(active, targets - predictions, 0.0)

        cotangent = delta @ state.head_params.weights
        trunk_params, trunk_opt, trunk_scale = self.trunk_step(state, tape, cotangent, delta, active)

        if self._trace_groups is None:
            step = self.head_update(state, h, head_decay, None, delta, cotangent)
            z_w, z_b = step.traces
            new_heads, head_opt, mean_step = step.heads, step.optimizer_states, step.mean_step_size
            head_params, head_traces, head_opt = select_heads(
                active,
                (new_heads, (z_w, z_b) if state.head_traces else (), head_opt),
                (state.head_params, state.head_traces, state.head_optimizer_states),
            )
        else:
            head_params, head_opt, head_traces, mean_step = shared_head_step(
                self.head_opt,
                self.bounder,
                state.head_params,
                state.head_optimizer_states,
                state.head_traces,
                self._trace_groups,
                h,
                head_decay,
                delta,
                cotangent,
                active,
                self.trace_mode == "replacing",
            )
        new_state = state._replace(
            trunk_params=trunk_params,
            head_params=head_params,
            trunk_optimizer_states=trunk_opt,
            head_optimizer_states=head_opt,
            head_traces=head_traces,
            normalizer_state=norm_state,
            step_count=state.step_count + 1,
        )
        errors = jnp.where(active, delta, jnp.nan)
        metrics = jnp.stack([errors * errors, errors, jnp.where(active, mean_step, jnp.nan)], axis=-1)
        return MultiHeadMLPUpdateResult(new_state, predictions, errors, metrics, trunk_scale)

    def update_traced(self, state, observation, targets) -> MultiHeadMLPUpdateResult:
        """``update`` without its boundary checks, for use inside traced code (a runner's scan,
        the Daemon's compiled step): ``observation (feature_dim,)`` and ``targets (n_heads,)``
        must already be checked."""
        return self._update_with(state, observation, targets, jnp.asarray(self._head_decay))

    def predict_traced(self, state, observation) -> jax.Array:
        """``predict`` without its boundary checks, for use inside traced code; ``(n_heads,)``."""
        x, _ = self.normalized_features(state, observation, update=False)
        return self.head_forward(state.head_params, self.trunk_forward(state.trunk_params, x))

    def scan_traced(self, state, observations, targets) -> MultiHeadLearningResult:
        """``update_traced`` scanned over ``(num_steps, feature_dim)`` observations and
        ``(num_steps, n_heads)`` targets; ``scan_compiled`` is its jitted form."""

        def body(s, inputs):
            result = self.update_traced(s, *inputs)
            return result.state, result.per_head_metrics

        final, metrics = jax.lax.scan(body, state, (observations, targets))
        return MultiHeadLearningResult(final, metrics)

    def batched_traced(self, observations, targets, keys, feature_dim: int) -> BatchedMultiHeadResult:
        """``scan_traced`` from one fresh state per key, vmapped over the keys;
        ``batched_compiled`` is its jitted form (``feature_dim`` static)."""

        def one_seed(key):
            return self.scan_traced(self.init(feature_dim, key), observations, targets)

        result = jax.vmap(one_seed)(keys)
        return BatchedMultiHeadResult(result.state, result.per_head_metrics)

    # ---------------------------------------------------------------------------------------
    # Public, checked entry points

    def check_state(self, state: Any, *, copies: int | None = None, observation_dim: int | None = None) -> None:
        """Checks that ``state`` is a ``MultiHeadMLPState`` this learner made: the tree,
        shapes and dtypes of ``init`` (trunk, heads, traces, optimizer and normalizer states).

        Args:
            state: the state.
            copies: the state is batched over this many copies (a leading axis on every
                leaf); None: unbatched.
            observation_dim: the observation size the state must have been made for; None:
                any.

        Raises:
            TypeError: ``state`` is not a ``MultiHeadMLPState``.
            ValueError: it does not fit: the message names what differs (head count, trunk,
                observation size, or the first array of another shape or dtype).
        """
        if not isinstance(state, MultiHeadMLPState):
            raise TypeError(f"state must be a MultiHeadMLPState (from learner.init), got {type(state).__name__}")
        lead = () if copies is None else (int(copies),)
        n = tuple(np.shape(state.head_params.biases))
        if copies is None and n != (self._n_heads,):
            raise ValueError(
                f"state has {n[0] if n else 'unbatched?'} heads but the learner has "
                f"n_heads={self._n_heads} (biases shape {n}); a batched state must be indexed "
                "per seed first"
            )
        mismatch = self.state_difference(state, lead, observation_dim)
        if mismatch:
            raise ValueError(f"state does not fit this learner: {mismatch}")

    def state_template(self, feature_dim: int) -> StateTemplate:
        """The tree, shapes and dtypes of ``init(feature_dim, key)`` (computed once per size)."""
        cache = self.__dict__.setdefault("_state_templates", {})
        if feature_dim not in cache:
            cache[feature_dim] = StateTemplate(jax.eval_shape(lambda k: self.init(feature_dim, k), jax.random.key(0)))
        return cache[feature_dim]

    def state_difference(
        self, state: MultiHeadMLPState, leading: tuple[int, ...] = (), observation_dim: int | None = None
    ) -> str | None:
        """How ``state`` differs from a state of this learner (batched over ``leading``), in
        the learner's terms first (head count, trunk sizes, observation size), then by the
        first array of another shape or dtype; None where it fits.

        Args:
            state: a ``MultiHeadMLPState``.
            leading: leading batch axes every leaf carries.
            observation_dim: the observation size it must have; None: any.
        """
        k = len(leading)
        weights = tuple(state.trunk_params.weights) if isinstance(state.trunk_params, MLPParams) else ()
        try:
            hidden = tuple(int(np.shape(w)[-1]) for w in weights)
            dim = int(np.shape(weights[0])[-2]) if weights else int(np.shape(state.head_params.weights)[-1])
            heads = int(np.shape(state.head_params.biases)[k])
        except (IndexError, TypeError):
            hidden, dim, heads = (), 0, 0
        differ = []
        if heads != self._n_heads:
            differ.append(f"it has {heads} heads (demons), this learner {self._n_heads}")
        if hidden != self.hidden_sizes:
            differ.append(f"its trunk has hidden sizes {hidden}, this learner {self.hidden_sizes}")
        if observation_dim is not None and dim != observation_dim:
            differ.append(f"it was made for observations of size {dim}, here they have size {observation_dim}")
        if differ:
            return "; ".join(differ)
        if dim < 1:
            return "it holds no trunk or head weights"
        return self.state_template(dim).mismatch(state, tuple(leading))

    def predict(self, state: MultiHeadMLPState, observation: Any) -> jax.Array:
        """Compute predictions from all heads.

        Compiled on first call; later calls with the same learner reuse the compilation.

        Args:
            state: current state.
            observation: input feature vector, shape ``(feature_dim,)``.

        Returns:
            Array of shape ``(n_heads,)``, one prediction per head.
        """
        self.check_state(state)
        obs = as_vector("observation", observation, self.feature_dim(state), "feature_dim")
        check_observation_values("observation", obs)
        return self._predict_jit(state, obs)

    def update(self, state: MultiHeadMLPState, observation: Any, targets: Any) -> MultiHeadMLPUpdateResult:
        """Update the learner from one observation and per-head targets.

        Compiled on first call. One VJP through the trunk with the error-weighted cotangent
        makes the trunk update; each active head takes its own traced, optimised, bounded step.

        Args:
            state: current state.
            observation: input feature vector, shape ``(feature_dim,)``; NumPy accepted. Must
                be finite: a NaN or inf observation is refused with ``ValueError`` (it would
                turn every weight to NaN).
            targets: per-head targets, shape ``(n_heads,)``; NaN marks an inactive head.

        Returns:
            ``MultiHeadMLPUpdateResult`` with the updated state, predictions, errors and
            per-head metrics.
        """
        self.check_state(state)
        obs = as_vector("observation", observation, self.feature_dim(state), "feature_dim")
        tgt = as_vector("targets", targets, self._n_heads, "one target per head, NaN = inactive")
        check_observation_values("observation", obs)
        check_target_values("targets", tgt)
        return self._update_jit(state, obs, tgt)
