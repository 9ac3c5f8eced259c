"""The Horde's stream loops: ``lax.scan`` over recorded transitions, ``vmap`` over seeds."""

from __future__ import annotations

import jax

from horde.core import check_keys, shard_seeds
from horde.td.horde_learner import HordeLearner
from horde.td.transitions import Transitions, as_transitions
from horde.td.types import BatchedHordeResult, HordeLearningResult, HordeState

__all__ = ["run_horde_learning_loop", "run_horde_learning_loop_batched"]


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

    With several devices the seeds are spread over them (``horde.core.shard_seeds``: each
    device learns its own seeds, same numbers as one device) and the results are sharded over
    the seed axis; not where ``learner.shards_seeds`` is False (least-squares heads: their
    seeds stay on one device).
    """
    t = as_transitions(transitions, None)
    dim = int(t.observations.shape[1])
    learner.demons.validate(dim)
    keys = check_keys(keys)
    return learner.batched_compiled(t, shard_seeds(keys) if learner.shards_seeds else keys, dim)
