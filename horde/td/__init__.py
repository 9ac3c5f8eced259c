"""Temporal-difference learning of demons on the multi-head core: the ``HordeLearner``.

Each demon is a head. This room holds the TD target and trace decay, off-policy GTD(λ), the
RUPEE and UDE diagnostics, ``Transitions`` and the Horde's scan/vmap loops. It imports only
``horde.core`` and ``demons``. Other rooms import from this package, never from its modules'
private names.
"""

from horde.td.horde_learner import (
    BatchedHordeResult,
    DiagnosticsState,
    HordeLearner,
    HordeLearningResult,
    HordeState,
    HordeUpdateResult,
    Transitions,
    as_transitions,
    run_horde_learning_loop,
    run_horde_learning_loop_batched,
)

__all__ = [
    "BatchedHordeResult",
    "DiagnosticsState",
    "HordeLearner",
    "HordeLearningResult",
    "HordeState",
    "HordeUpdateResult",
    "Transitions",
    "as_transitions",
    "run_horde_learning_loop",
    "run_horde_learning_loop_batched",
]
