"""State and result types of the multi-head core: one pytree each, printable, saveable, vmappable.

Heads are stacked: every head leaf carries a leading head axis, so head ``i`` is index ``i``
of every leaf (the seed's nested per-head tuples would make the compiled program grow with the
number of heads).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

__all__ = [
    "MLPParams",
    "HeadParams",
    "MultiHeadMLPState",
    "MultiHeadMLPUpdateResult",
    "MultiHeadLearningResult",
    "BatchedMultiHeadResult",
]


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
            storing it would only cost memory traffic), or, where heads share a decay and the
            learner shares traces (``shared_traces=True``), a ``SharedTraces``: one trace per
            group of heads with equal ``(γλ)_i`` and per-head rows for heads detached from
            their group (``horde.core.shared_traces``; ``learner.head_traces(state)`` gives
            every head's trace in either layout).
        normalizer_state: online feature normalizer state, or ``None``.
        step_count: int32 scalar, number of updates made.
    """

    trunk_params: MLPParams
    head_params: HeadParams
    trunk_optimizer_states: tuple[Any, ...]
    head_optimizer_states: tuple[Any, Any]
    trunk_traces: tuple[jax.Array, ...]
    head_traces: Any
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
