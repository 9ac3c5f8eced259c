"""State and result types of the HordeLearner."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from horde.core import MultiHeadMLPState

__all__ = ["BatchedHordeResult", "HordeLearningResult", "HordeState", "HordeUpdateResult"]


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
        traces: the head traces stored once per group of demons with equal traces, a
            ``SharedTraces`` (``horde.td.traces``: ``(n_groups, H)`` group traces, per-demon
            rows for detached demons); ``core.head_traces`` is then ``()``. Empty ``()`` with
            ``shared_traces=False`` (the traces are then ``core.head_traces``, one per demon)
            or when no demon keeps a trace.
        heads: the ``LSTDState`` of least-squares heads (``HordeLearner(heads=LSTDHeads())``,
            ``horde.td.least_squares``), else ``()``; the core's heads are then unused.
    """

    core: MultiHeadMLPState
    discounts: Any
    secondary_weights: Any
    diagnostics: Any = ()
    traces: Any = ()
    heads: Any = ()


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
