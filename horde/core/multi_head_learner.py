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

import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from horde.core.bounders import ObGDBounding, bounder_from_config
from horde.core.initializers import sparse_init
from horde.core.normalizers import Normalizer, normalizer_from_config
from horde.core.optimizers import LMS, Optimizer, optimizer_from_config, update_group

__all__ = [
    "MLPParams",
    "HeadParams",
    "MultiHeadMLPState",
    "MultiHeadMLPUpdateResult",
    "MultiHeadLearningResult",
    "BatchedMultiHeadResult",
    "MultiHeadMLPLearner",
    "multi_head_metrics_to_dicts",
    "run_multi_head_learning_loop",
    "run_multi_head_learning_loop_batched",
]

LAYER_NORM_EPS = 1e-5


class MLPParams(NamedTuple):
    """Trunk parameters.

    Attributes:
        weights: one array per hidden layer, ``weights[l]`` of shape ``(in_l, out_l)``
            (a layer computes ``x @ weights[l] + biases[l]``).
        biases: one array per hidden layer, ``biases[l]`` of shape ``(out_l,)``.
    """

    weights: tuple[jax.Array, ...]
    biases: tuple[jax.Array, ...]


class HeadParams(NamedTuple):
    """Stacked head parameters: head ``i`` is ``weights[i]`` and ``biases[i]``.

    Attributes:
        weights: shape ``(n_heads, H)``, H the last hidden size (the feature size in linear mode).
        biases: shape ``(n_heads,)``.
    """

    weights: jax.Array
    biases: jax.Array


class MultiHeadMLPState(NamedTuple):
    """State for a multi-head MLP learner: one pytree, printable, saveable and vmappable.

    Trunk optimizer states and traces use an interleaved layout ``(w0, b0, w1, b1, ...)``.
    Head parameters, traces and optimizer states are *stacked*: each is a pair
    ``(weights_part, biases_part)`` whose arrays carry a leading head axis (``(n_heads, H)`` and
    ``(n_heads,)``), so head ``i`` is index ``i`` of every leaf.

    Attributes:
        trunk_params: shared hidden-layer parameters (``MLPParams``).
        head_params: stacked head parameters (``HeadParams``); ``weights[i]`` / ``biases[i]``
            is head ``i``.
        trunk_optimizer_states: interleaved ``(w0, b0, w1, b1, ...)`` optimizer states.
        head_optimizer_states: ``(weights_state, biases_state)``, every leaf with a leading
            head axis.
        trunk_traces: interleaved ``(w0, b0, w1, b1, ...)`` eligibility traces. Empty: with a
            trunk, its ``gamma * lamda`` is 0, so the trunk trace is exactly this step's
            gradient and is not stored between steps (a linear model has no trunk).
        head_traces: ``(weights_trace (n_heads, H), biases_trace (n_heads,))``, or ``()`` when
            every head's trace decay is 0 (each trace is then just this step's features, so
            storing it would only cost memory traffic).
        normalizer_state: online feature normalizer state, or ``None``.
        step_count: int32 scalar, number of updates made.
    """

    trunk_params: MLPParams
    head_params: HeadParams
    trunk_optimizer_states: tuple[Any, ...]
    head_optimizer_states: tuple[Any, Any]
    trunk_traces: tuple[jax.Array, ...]
    head_traces: tuple[jax.Array, ...]
    normalizer_state: Any
    step_count: jax.Array


class MultiHeadMLPUpdateResult(NamedTuple):
    """Result of one update.

    Attributes:
        state: the updated state.
        predictions: predictions of all heads before the update, shape ``(n_heads,)``.
        errors: ``δ_i = y_i - v_i``, shape ``(n_heads,)``; NaN for inactive heads.
        per_head_metrics: shape ``(n_heads, 3)``, columns
            ``[squared_error, raw_error, mean_step_size]``; NaN rows for inactive heads.
            ``mean_step_size`` is the mean per-weight step size of the head (weights and
            bias) after bounding.
        trunk_bounding_metric: scalar scale the bounder applied to the trunk step
            (``1 / max(M, 1)`` for ObGD, so 1 means unbounded; always 1 without a bounder
            or without a trunk).
    """

    state: MultiHeadMLPState
    predictions: jax.Array
    errors: jax.Array
    per_head_metrics: jax.Array
    trunk_bounding_metric: jax.Array


class MultiHeadLearningResult(NamedTuple):
    """Result of ``run_multi_head_learning_loop``.

    Attributes:
        state: final learner state.
        per_head_metrics: shape ``(num_steps, n_heads, 3)``.
    """

    state: MultiHeadMLPState
    per_head_metrics: jax.Array


class BatchedMultiHeadResult(NamedTuple):
    """Result of ``run_multi_head_learning_loop_batched``.

    Attributes:
        states: final learner states with a leading seed axis on every leaf.
        per_head_metrics: shape ``(n_seeds, num_steps, n_heads, 3)``.
    """

    states: MultiHeadMLPState
    per_head_metrics: jax.Array


# --------------------------------------------------------------------------------------------
# Argument checks


def check_unit_interval(name: str, value: Any) -> float:
    if not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def is_tracer(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def as_vector(name: str, value: Any, expected: int, what: str) -> Any:
    """Checks that ``value`` is a 1-D vector of length ``expected``; returns a float32 array.

    Concrete inputs become NumPy arrays (cheap to hand to a compiled function); traced inputs
    are only checked for shape.
    """
    if type(value) is np.ndarray and value.dtype == np.float32 and value.shape == (expected,):
        return value  # the daemon fast path
    if is_tracer(value) or isinstance(value, jax.Array):
        shape = value.shape
        arr = value
    else:
        try:
            arr = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name} must be a numeric array of shape ({expected},), got {value!r}") from e
        shape = arr.shape
    if shape != (expected,):
        raise ValueError(f"{name} must have shape ({expected},) ({what}), got shape {tuple(shape)}")
    if isinstance(arr, jax.Array) and not is_tracer(arr) and arr.dtype != jnp.float32:
        arr = arr.astype(jnp.float32)
    return arr


def concrete_values(x: Any) -> np.ndarray | None:
    if type(x) is np.ndarray:
        return x
    if is_tracer(x):
        return None
    return np.asarray(x)


def all_finite(values: np.ndarray) -> bool:
    """``np.isfinite(values).all()``, about 5x quicker for the single-step vectors: a float
    vector's dot product with itself is finite exactly when every entry is finite, unless the
    sum of squares overflows, and then the elementwise test decides."""
    if values.ndim == 1 and values.dtype.kind == "f" and math.isfinite(values.dot(values)):
        return True
    return bool(np.isfinite(values).all())


def any_inf(values: np.ndarray) -> bool:
    """``np.isinf(values).any()`` (NaN entries are not infinite), without ``ndarray.any``'s
    Python-level dispatch."""
    return np.count_nonzero(np.isinf(values)) > 0


def check_observation_values(name: str, x: Any) -> None:
    values = concrete_values(x)
    if values is not None and not all_finite(values):
        bad = np.argwhere(~np.isfinite(values))
        first = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"{name} must be finite, got {float(values[first])} at index "
            f"{first if len(first) > 1 else first[0]} ({len(bad)} non-finite entries); "
            "the update was refused and the state is unchanged"
        )


def check_target_values(name: str, y: Any) -> None:
    values = concrete_values(y)
    if values is not None and any_inf(values):
        bad = np.argwhere(np.isinf(values))
        first = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"{name} must be finite or NaN (NaN marks an inactive head), got {float(values[first])} "
            f"at index {first if len(first) > 1 else first[0]}; the update was refused"
        )


# --------------------------------------------------------------------------------------------
# Pure building blocks, shared with the HordeLearner


def check_flag(name: str, value: Any) -> Any:
    """A scalar bool flag (``terminated``/``truncated``) checked at the boundary.

    Tracers pass through; a concrete value must be a scalar bool or integer.

    Raises:
      ValueError: ``value`` is not a scalar bool (names ``name``).
    """
    if is_tracer(value):
        return value
    arr = np.asarray(value)
    if arr.shape != () or arr.dtype.kind not in "bi":
        raise ValueError(f"{name} must be a scalar bool, got {value!r}")
    return np.bool_(arr)


class _TrunkTape(NamedTuple):
    """What the trunk's backward pass keeps from the forward pass, one entry per layer."""

    inputs: tuple[jax.Array, ...]
    pre_activations: tuple[jax.Array, ...]  # LeakyReLU inputs (after LayerNorm when used)
    inv_std: tuple[jax.Array, ...]  # LayerNorm's 1/σ, shape (1,); empty without LayerNorm


class _HeadUpdate(NamedTuple):
    """One step of every head, before inactive heads are masked out."""

    traces: tuple[jax.Array, jax.Array]  # (z_w, z_b) of this step
    heads: HeadParams  # the updated head parameters
    optimizer_states: Any
    scale: jax.Array  # per-head bounding scale
    mean_step_size: jax.Array
    delta: jax.Array  # δ, ordered after the cotangent (use it for any further head update)


def _leaky_relu(a: jax.Array, slope: float) -> jax.Array:
    return jnp.where(a >= 0, a, slope * a)


def _mask_like(active: jax.Array, leaf: jax.Array) -> jax.Array:
    return active.reshape(active.shape + (1,) * (leaf.ndim - 1))


def _after(x: jax.Array, dependency: jax.Array) -> jax.Array:
    """``x`` unchanged (multiplied by exactly 1), but as a value that depends on ``dependency``.

    XLA updates a loop-carried buffer in place only when every read of the old value is ordered
    before the write. The head weights are read twice (predictions, then the trunk's cotangent
    ``Σ δ_i w_i``) and the head update does not otherwise depend on the cotangent, so without
    this ordering XLA copies the whole ``(n_heads, H)`` weight buffer on every scanned step
    (about 3.5 µs of a 25 µs step at 256 heads on a 2-core CPU). Routing the head update's error
    through this no-op makes it wait for the cotangent. The factor is ``1 + 0 * [d > 0]``, never
    NaN, so ``x`` keeps every bit, NaN and signed zero included.
    """
    first = jnp.ravel(dependency)[:1]
    return x * (1.0 + 0.0 * (first > 0).astype(x.dtype))


def select_heads(active: jax.Array, new: Any, old: Any) -> Any:
    """Per-head select on stacked pytrees: head ``i`` takes ``new`` where ``active[i]``."""
    return jax.tree_util.tree_map(lambda n, o: jnp.where(_mask_like(active, n), n, o), new, old)


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
        bounder: optional update bounder, e.g. ``ObGDBounding()``.
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
    """

    def __init__(
        self,
        n_heads: int,
        hidden_sizes: tuple[int, ...] = (128, 128),
        optimizer: Optimizer | None = None,
        step_size: float = 1.0,
        bounder: ObGDBounding | None = None,
        gamma: float = 0.0,
        lamda: float = 0.0,
        normalizer: Normalizer | None = None,
        sparsity: float = 0.9,
        leaky_relu_slope: float = 0.01,
        use_layer_norm: bool = True,
        head_optimizer: Optimizer | None = None,
        per_head_gamma_lamda: Any = None,
    ) -> None:
        if isinstance(n_heads, bool) or not isinstance(n_heads, numbers.Integral) or n_heads < 1:
            raise ValueError(f"n_heads must be an integer >= 1, got {n_heads!r}")
        try:
            hidden_sizes = tuple(hidden_sizes)
        except TypeError:
            raise ValueError(f"hidden_sizes must be a tuple of positive integers, got {hidden_sizes!r}") from None
        for i, size in enumerate(hidden_sizes):
            if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
                raise ValueError(
                    f"hidden_sizes[{i}] must be a positive integer, got {size!r} (hidden_sizes={hidden_sizes!r})"
                )
        if not isinstance(step_size, numbers.Real) or not math.isfinite(step_size) or step_size < 0:
            raise ValueError(f"step_size must be a finite number >= 0, got {step_size!r}")
        if not isinstance(sparsity, numbers.Real) or not 0.0 <= float(sparsity) < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
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
        if not isinstance(leaky_relu_slope, numbers.Real) or not math.isfinite(leaky_relu_slope):
            raise ValueError(f"leaky_relu_slope must be a finite number, got {leaky_relu_slope!r}")
        for name, opt in (("optimizer", optimizer), ("head_optimizer", head_optimizer)):
            if opt is not None and not (hasattr(opt, "init_for_shape") and hasattr(opt, "update_from_gradient")):
                raise ValueError(
                    f"{name} must have init_for_shape and update_from_gradient (e.g. LMS, IDBD, Autostep), got {opt!r}"
                )
        if bounder is not None and not hasattr(bounder, "bound"):
            raise ValueError(f"bounder must have a bound method (e.g. ObGDBounding), got {bounder!r}")
        if normalizer is not None and not (hasattr(normalizer, "init") and hasattr(normalizer, "update")):
            raise ValueError(f"normalizer must have init and update (e.g. WelfordNormalizer), got {normalizer!r}")
        if per_head_gamma_lamda is not None:
            phgl = np.asarray(per_head_gamma_lamda, dtype=np.float64)
            if phgl.shape != (n_heads,):
                raise ValueError(f"per_head_gamma_lamda must have length n_heads={n_heads}, got shape {phgl.shape}")
            bad = np.flatnonzero(~((phgl >= 0) & (phgl <= 1)))
            if bad.size:
                raise ValueError(f"per_head_gamma_lamda[{bad[0]}] must be in [0, 1], got {float(phgl[bad[0]])}")
            per_head_gamma_lamda = tuple(float(v) for v in phgl)

        self._n_heads = int(n_heads)
        self.hidden_sizes = tuple(int(s) for s in hidden_sizes)
        self.step_size = float(step_size)
        self.optimizer = optimizer if optimizer is not None else LMS(self.step_size)
        self._optimizer_given = optimizer
        self.head_optimizer = head_optimizer
        self.bounder = bounder
        self.gamma = gamma
        self.lamda = lamda
        self._normalizer = normalizer
        self.sparsity = float(sparsity)
        self.leaky_relu_slope = float(leaky_relu_slope)
        self.use_layer_norm = bool(use_layer_norm)
        self.per_head_gamma_lamda = per_head_gamma_lamda
        if per_head_gamma_lamda is None:
            self._head_decay = np.full((self._n_heads,), gamma * lamda, np.float32)
        else:
            self._head_decay = np.asarray(per_head_gamma_lamda, np.float32)
        self._stores_head_traces = bool(np.any(self._head_decay > 0))

        self._predict_jit = jax.jit(self.predict_traced)
        self._update_jit = jax.jit(self.update_traced)
        self.scan_compiled = jax.jit(self.scan_traced)
        self.batched_compiled = jax.jit(self.batched_traced, static_argnums=(3,))

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
    def head_opt(self) -> Optimizer:
        """The optimizer the heads use (``head_optimizer`` or else ``optimizer``)."""
        return self.head_optimizer if self.head_optimizer is not None else self.optimizer

    def to_config(self) -> dict[str, Any]:
        """Serialize learner configuration to a JSON-serializable dict.

        Returns:
            Dict with all constructor arguments needed to recreate the learner via
            ``from_config()``.
        """
        return {
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
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MultiHeadMLPLearner:
        """Reconstruct a learner from a config dict produced by ``to_config()``."""
        config = dict(config)
        expected = set(cls(1, ()).to_config())
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
        return cls(**config)

    def __repr__(self) -> str:
        return (
            f"MultiHeadMLPLearner(n_heads={self._n_heads}, hidden_sizes={self.hidden_sizes}, "
            f"optimizer={self.optimizer}, head_optimizer={self.head_optimizer}, "
            f"bounder={self.bounder}, normalizer={self._normalizer})"
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
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, numbers.Integral) or feature_dim < 1:
            raise ValueError(f"feature_dim must be an integer >= 1, got {feature_dim!r}")
        keys = jax.random.split(key, len(self.hidden_sizes) + 1)
        weights, biases = [], []
        fan_in = int(feature_dim)
        for k, size in zip(keys[:-1], self.hidden_sizes):
            weights.append(sparse_init(k, fan_in, size, self.sparsity))
            biases.append(jnp.zeros((size,), jnp.float32))
            fan_in = size
        head_w = sparse_init(keys[-1], fan_in, self._n_heads, self.sparsity, units_first=True)
        head_b = jnp.zeros((self._n_heads,), jnp.float32)

        trunk_opt = []
        for w, b in zip(weights, biases):
            trunk_opt += [self.optimizer.init_for_shape(w.shape), self.optimizer.init_for_shape(b.shape)]
        head_opt = self.head_opt
        return MultiHeadMLPState(
            trunk_params=MLPParams(tuple(weights), tuple(biases)),
            head_params=HeadParams(head_w, head_b),
            trunk_optimizer_states=tuple(trunk_opt),
            head_optimizer_states=(
                head_opt.init_for_shape(head_w.shape),
                head_opt.init_for_shape(head_b.shape),
            ),
            trunk_traces=(),
            head_traces=(jnp.zeros_like(head_w), jnp.zeros_like(head_b)) if self._stores_head_traces else (),
            normalizer_state=None if self._normalizer is None else self._normalizer.init(int(feature_dim)),
            step_count=jnp.zeros((), jnp.int32),
        )

    def feature_dim(self, state: MultiHeadMLPState) -> int:
        """The input feature dimension a state was initialised for."""
        if self.hidden_sizes:
            return int(state.trunk_params.weights[0].shape[-2])
        return int(state.head_params.weights.shape[-1])

    # ---------------------------------------------------------------------------------------
    # Pure pieces (traced)

    def trunk_forward(self, trunk_params: MLPParams, x: jax.Array) -> jax.Array:
        """The trunk's output ``h`` for features ``x`` (``x`` itself in linear mode)."""
        return self.trunk_forward_with_tape(trunk_params, x)[0]

    def trunk_forward_with_tape(self, trunk_params: MLPParams, x: jax.Array) -> tuple[jax.Array, _TrunkTape]:
        """The trunk's output and what its backward pass needs: each layer's input, its
        LeakyReLU input and, with LayerNorm, its ``1/σ``."""
        h = x
        inputs, pre, inv_std = [], [], []
        for w, b in zip(trunk_params.weights, trunk_params.biases):
            inputs.append(h)
            a = h @ w + b
            if self.use_layer_norm:
                centred = a - jnp.mean(a, axis=-1, keepdims=True)
                inv = 1.0 / jnp.sqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + LAYER_NORM_EPS)
                a = centred * inv
                inv_std.append(inv)
            pre.append(a)
            h = _leaky_relu(a, self.leaky_relu_slope)
        return h, _TrunkTape(tuple(inputs), tuple(pre), tuple(inv_std))

    def _trunk_backward(self, trunk_params: MLPParams, tape: _TrunkTape, cotangent: jax.Array):
        """The trunk's VJP at ``cotangent``, in factored form.

        Returns one ``(input, g)`` pair per layer, where ``g`` is the gradient with respect to
        the layer's pre-activation: the weight gradient is ``outer(input, g)`` and the bias
        gradient is ``g``. Written out rather than taken from ``jax.vjp`` so that the weight
        gradients need never be materialised (LMS applies ``outer(input, g)`` inside the
        update) and LayerNorm's two backward means are one reduction.
        """
        g = cotangent
        factors = []
        for layer in reversed(range(len(trunk_params.weights))):
            a = tape.pre_activations[layer]
            g = jnp.where(a >= 0, g, self.leaky_relu_slope * g)
            if self.use_layer_norm:
                # d/da of (a - mean) / σ: (g - mean(g) - â mean(g â)) / σ
                means = jnp.mean(jnp.stack([g, g * a]), axis=-1)
                g = (g - means[0] - a * means[1]) * tape.inv_std[layer]
            factors.append((tape.inputs[layer], g))
            if layer:
                g = trunk_params.weights[layer] @ g
        return factors[::-1]

    @staticmethod
    def head_forward(head_params: HeadParams, h: jax.Array) -> jax.Array:
        """All heads' predictions ``W h + b``, shape ``(n_heads,)``."""
        return head_params.weights @ h + head_params.biases

    def normalized_features(self, state: MultiHeadMLPState, observation: jax.Array, update: bool):
        x = jnp.asarray(observation, jnp.float32)
        if self._normalizer is None:
            return x, state.normalizer_state
        if update:
            return self._normalizer.update(state.normalizer_state, x)
        return self._normalizer.normalize(state.normalizer_state, x), state.normalizer_state

    def trunk_step(self, state: MultiHeadMLPState, tape: _TrunkTape, cotangent: jax.Array):
        """Applies one trunk update from the error-weighted cotangent ``Σ_i δ_i w_i``.

        The trunk's ``gamma * lamda`` is 0 (enforced at construction), so its trace is this
        step's gradient ``G`` and nothing is carried between steps.

        With LMS the weight gradients stay factored: ObGD's ``‖α G‖₁`` of a layer is
        ``α ‖g‖₁ (‖input‖₁ + 1)`` and the update adds ``α' outer(input, g)`` in one pass over
        the weights. Other optimizers step the materialised gradients.

        Returns ``(trunk_params, trunk_optimizer_states, bounding_scale)``.
        """
        if not self.hidden_sizes:
            return state.trunk_params, state.trunk_optimizer_states, jnp.ones((), jnp.float32)
        factors = self._trunk_backward(state.trunk_params, tape, cotangent)
        params = state.trunk_params
        if isinstance(self.optimizer, LMS):
            alpha = self.optimizer.step_size
            if self.bounder is not None:
                l1 = sum(alpha * jnp.sum(jnp.abs(g)) * (jnp.sum(jnp.abs(x)) + 1.0) for x, g in factors)
                scale = self.bounder.scale(l1, 1.0)
            else:
                scale = jnp.ones((), jnp.float32)
            step = alpha * scale
            new = MLPParams(
                tuple(w + step * jnp.outer(x, g) for w, (x, g) in zip(params.weights, factors)),
                tuple(b + step * g for b, (_, g) in zip(params.biases, factors)),
            )
            return new, state.trunk_optimizer_states, jnp.asarray(scale, jnp.float32)
        flat_grads = [g for x, g_a in factors for g in (jnp.outer(x, g_a), g_a)]
        flat_params = [p for pair in zip(params.weights, params.biases) for p in pair]
        steps, opt_states = [], []
        for layer in range(len(params.weights)):
            pair = slice(2 * layer, 2 * layer + 2)  # a layer's weights and biases, one unit
            s, new = update_group(self.optimizer, state.trunk_optimizer_states[pair], tuple(flat_grads[pair]), None)
            steps += s
            opt_states += new
        if self.bounder is not None:
            steps, scale = self.bounder.bound(steps, 1.0)
        else:
            scale = jnp.ones((), jnp.float32)
        new_flat = [p + s for p, s in zip(flat_params, steps)]
        params = MLPParams(tuple(new_flat[0::2]), tuple(new_flat[1::2]))
        return params, tuple(opt_states), jnp.asarray(scale, jnp.float32)

    def _head_traces(self, head_traces, h: jax.Array, decay: jax.Array, rho: jax.Array | None):
        """``z_i ← ρ_i ((γλ)_i z_i + h)``; bias trace ``z_b ← ρ_i ((γλ)_i z_b + 1)``.

        Without stored traces (every decay 0) this is ``ρ_i h`` and ``ρ_i``.
        """
        n = decay.shape[0]
        if head_traces:
            z_w, z_b = head_traces
            z_w = decay[:, None] * z_w + h[None, :]
            z_b = decay * z_b + 1.0
        else:
            z_w = jnp.broadcast_to(h, (n,) + h.shape)
            z_b = jnp.ones((n,), h.dtype)
        if rho is not None:
            z_w = rho[:, None] * z_w
            z_b = rho * z_b
        return z_w, z_b

    def _head_steps(self, head_optimizer_states, head_traces, errors: jax.Array):
        """Per-head optimizer steps and bounding, vmapped over the head axis.

        Returns ``(step_w, step_b, new_optimizer_states, scale, mean_step_size)`` where the
        steps are per unit error (the caller applies ``w += δ · step``).
        """
        opt, bounder = self.head_opt, self.bounder

        def one_head(opt_w, opt_b, z_w, z_b, delta):
            (s_w, s_b), (opt_w, opt_b) = update_group(opt, (opt_w, opt_b), (z_w, z_b), delta)
            if bounder is not None:
                (s_w, s_b), scale = bounder.bound((s_w, s_b), delta)
            else:
                scale = jnp.ones((), jnp.float32)
            alphas = jnp.sum(opt.step_sizes(opt_w, z_w)) + opt.step_sizes(opt_b, z_b)
            mean_step = alphas / (z_w.shape[-1] + 1) * scale
            return s_w, s_b, opt_w, opt_b, scale, mean_step

        opt_w, opt_b = head_optimizer_states
        z_w, z_b = head_traces
        s_w, s_b, opt_w, opt_b, scale, mean_step = jax.vmap(one_head)(opt_w, opt_b, z_w, z_b, errors)
        return s_w, s_b, (opt_w, opt_b), scale, mean_step

    def head_update(self, state: MultiHeadMLPState, h, decay, rho, delta, cotangent) -> _HeadUpdate:
        """Every head's traces, optimizer step and new parameters for errors ``δ`` (before the
        select that keeps inactive heads). The head update waits for the trunk's ``cotangent``
        (see ``_after``), so XLA updates the head weights in place."""
        head_delta = _after(delta, cotangent)
        z_w, z_b = self._head_traces(state.head_traces, h, decay, rho)
        s_w, s_b, head_opt, scale, mean_step = self._head_steps(state.head_optimizer_states, (z_w, z_b), head_delta)
        heads = HeadParams(
            state.head_params.weights + head_delta[:, None] * s_w,
            state.head_params.biases + head_delta * s_b,
        )
        return _HeadUpdate((z_w, z_b), heads, head_opt, scale, mean_step, head_delta)

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
        trunk_params, trunk_opt, trunk_scale = self.trunk_step(state, tape, cotangent)

        step = self.head_update(state, h, head_decay, None, delta, cotangent)
        z_w, z_b = step.traces
        new_heads, head_opt, mean_step = step.heads, step.optimizer_states, step.mean_step_size
        head_params, head_traces, head_opt = select_heads(
            active,
            (new_heads, (z_w, z_b) if state.head_traces else (), head_opt),
            (state.head_params, state.head_traces, state.head_optimizer_states),
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
        return self._update_with(state, observation, targets, jnp.asarray(self._head_decay))

    def predict_traced(self, state, observation) -> jax.Array:
        x, _ = self.normalized_features(state, observation, update=False)
        return self.head_forward(state.head_params, self.trunk_forward(state.trunk_params, x))

    def scan_traced(self, state, observations, targets) -> MultiHeadLearningResult:
        def body(s, inputs):
            result = self.update_traced(s, *inputs)
            return result.state, result.per_head_metrics

        final, metrics = jax.lax.scan(body, state, (observations, targets))
        return MultiHeadLearningResult(final, metrics)

    def batched_traced(self, observations, targets, keys, feature_dim: int) -> BatchedMultiHeadResult:
        def one_seed(key):
            return self.scan_traced(self.init(feature_dim, key), observations, targets)

        result = jax.vmap(one_seed)(keys)
        return BatchedMultiHeadResult(result.state, result.per_head_metrics)

    # ---------------------------------------------------------------------------------------
    # Public, checked entry points

    def check_state(self, state: Any) -> None:
        if not isinstance(state, MultiHeadMLPState):
            raise TypeError(f"state must be a MultiHeadMLPState (from learner.init), got {type(state).__name__}")
        n = state.head_params.biases.shape
        if n != (self._n_heads,):
            raise ValueError(
                f"state has {n[0] if n else 'unbatched?'} heads but the learner has "
                f"n_heads={self._n_heads} (biases shape {n}); a batched state must be indexed "
                "per seed first"
            )

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


def multi_head_metrics_to_dicts(result: MultiHeadMLPUpdateResult) -> list[dict[str, float] | None]:
    """Convert the per-head metrics of one update to a list of dicts for online use.

    Active heads get ``{'squared_error', 'error', 'mean_step_size'}``; inactive heads ``None``.

    Args:
        result: update result from ``MultiHeadMLPLearner.update``.

    Returns:
        List of ``n_heads`` entries, one per head.
    """
    metrics = np.asarray(result.per_head_metrics)
    out: list[dict[str, float] | None] = []
    for row in metrics:
        if np.isnan(row[1]):
            out.append(None)
        else:
            out.append({"squared_error": float(row[0]), "error": float(row[1]), "mean_step_size": float(row[2])})
    return out


def check_stream(learner: MultiHeadMLPLearner, observations: Any, targets: Any, feature_dim: int | None):
    obs_shape = np.shape(observations)
    tgt_shape = np.shape(targets)
    if len(obs_shape) != 2:
        raise ValueError(f"observations must have shape (num_steps, feature_dim), got shape {obs_shape}")
    if feature_dim is not None and obs_shape[1] != feature_dim:
        raise ValueError(
            f"observations must have shape (num_steps, {feature_dim}) to match the state's "
            f"feature_dim, got shape {obs_shape}"
        )
    if tgt_shape != (obs_shape[0], learner.n_heads):
        raise ValueError(
            f"targets must have shape (num_steps={obs_shape[0]}, n_heads={learner.n_heads}), got shape {tgt_shape}"
        )
    check_observation_values("observations", observations)
    check_target_values("targets", targets)
    return jnp.asarray(observations, jnp.float32), jnp.asarray(targets, jnp.float32)


def run_multi_head_learning_loop(
    learner: MultiHeadMLPLearner, state: MultiHeadMLPState, observations: Any, targets: Any
) -> MultiHeadLearningResult:
    """Run the learner over a stream with ``jax.lax.scan``.

    Scans over pre-provided observation and target arrays, for data that comes from an
    external source (logs, a recorded run). Equal to calling ``update`` once per step.

    Args:
        learner: multi-head MLP learner.
        state: initial learner state.
        observations: shape ``(num_steps, feature_dim)``.
        targets: shape ``(num_steps, n_heads)``; NaN = inactive head for that step.

    Returns:
        ``MultiHeadLearningResult`` with the final state and per-head metrics of shape
        ``(num_steps, n_heads, 3)``.
    """
    learner.check_state(state)
    obs, tgt = check_stream(learner, observations, targets, learner.feature_dim(state))
    return learner.scan_compiled(state, obs, tgt)


def run_multi_head_learning_loop_batched(
    learner: MultiHeadMLPLearner, observations: Any, targets: Any, keys: jax.Array
) -> BatchedMultiHeadResult:
    """Run the learning loop for several seeds at once with ``jax.vmap``.

    Each seed gets its own initial state (its own sparse masks and weights) from its key; all
    seeds see the same observations and targets.

    Args:
        learner: multi-head MLP learner.
        observations: shared observations, shape ``(num_steps, feature_dim)``.
        targets: shared targets, shape ``(num_steps, n_heads)``; NaN = inactive head.
        keys: JAX random keys, shape ``(n_seeds,)`` (typed keys) or ``(n_seeds, 2)`` (raw
            uint32 keys).

    Returns:
        ``BatchedMultiHeadResult`` with batched states and per-head metrics of shape
        ``(n_seeds, num_steps, n_heads, 3)``.
    """
    obs, tgt = check_stream(learner, observations, targets, None)
    return learner.batched_compiled(obs, tgt, check_keys(keys), int(obs.shape[1]))


def check_keys(keys: Any) -> jax.Array:
    """One key per seed: typed keys ``(n_seeds,)`` or raw uint32 keys ``(n_seeds, 2)``."""
    keys = jnp.asarray(keys)
    typed = jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)
    if not ((typed and keys.ndim == 1) or (not typed and keys.ndim == 2 and keys.shape[1] == 2)):
        raise ValueError(
            "keys must be typed keys of shape (n_seeds,) (jax.random.split(jax.random.key(0), n)) "
            f"or raw keys of shape (n_seeds, 2), got shape {keys.shape} and dtype {keys.dtype}"
        )
    return keys
