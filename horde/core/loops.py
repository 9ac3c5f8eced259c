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

__all__ = [
    "multi_head_metrics_to_dicts",
    "run_multi_head_learning_loop",
    "run_multi_head_learning_loop_batched",
    "shard_seeds",
]

SEED_AXIS = "seeds"


def shard_seeds(keys: jax.Array, devices: Any = None) -> jax.Array:
    """Places the seed axis of ``keys`` over the devices, so that a vmapped batched run
    spreads its seeds over them (each device learns its own seeds; the numbers are those of
    the unsharded run).

    Uses the largest number of ``devices`` (default: every device, ``jax.devices()``) that
    divides the number of seeds; with one device (or a prime number of seeds larger than the
    device count) the keys are returned as they are.

    Args:
        keys: checked keys with a leading seed axis, ``(n_seeds,)`` typed or ``(n_seeds, 2)``.
        devices: the devices to use, default all.

    Returns:
        ``keys``, sharded over a one-dimensional mesh named ``"seeds"`` where that helps.
    """
    devices = jax.devices() if devices is None else list(devices)
    n_seeds = int(keys.shape[0])
    count = max(d for d in range(1, len(devices) + 1) if n_seeds % d == 0)
    if count == 1:
        return keys
    mesh = jax.sharding.Mesh(np.asarray(devices[:count]), (SEED_AXIS,))
    return jax.device_put(keys, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(SEED_AXIS)))


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
        ``(n_seeds, num_steps, n_heads, 3)``; with several devices the seeds are spread over
        them (``shard_seeds``) and the results are sharded over the seed axis.
    """
    obs, tgt = check_stream(learner, observations, targets, None)
    return learner.batched_compiled(obs, tgt, shard_seeds(check_keys(keys)), int(obs.shape[1]))
