"""Stream loops of the multi-head core: ``lax.scan`` over a recorded stream, ``vmap`` over seeds."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from horde.core.checks import check_keys, check_stream
from horde.core.multi_head_learner import MultiHeadMLPLearner
from horde.core.types import (
    BatchedMultiHeadResult,
    MultiHeadLearningResult,
    MultiHeadMLPState,
    MultiHeadMLPUpdateResult,
)

__all__ = ["multi_head_metrics_to_dicts", "run_multi_head_learning_loop", "run_multi_head_learning_loop_batched"]


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
