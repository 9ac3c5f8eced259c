"""The TD target and the trace decay of a Horde's demons, as pure array functions.

For demon ``i`` on transition ``(S_t, A_t, R_{t+1}, S_{t+1})`` with cumulant ``c_{i,t+1}``,
discount ``γ_{i,t+1} = γ_i(S_{t+1})``, terminal outcome ``z_i`` and importance ratio ``ρ_{i,t}``::

    yᵢ = c_{i,t+1} + γ'_{i,t+1} vᵢ(S_{t+1}) + [terminated] zᵢ
    γ'_{i,t+1} = 0 where terminated, else γ_{i,t+1}
    zᵢ ← ρ_{i,t} (γ_{i,t} λᵢ zᵢ + h_t)         (zeroed when an episode ends)

Where ``truncated`` the target still bootstraps, from the real final observation ``S_{t+1}``
(never from a reset observation). The trace decays by the discount of the step it decays over,
``γ_{i,t}`` (the previous transition's next discount), not ``γ_{i,t+1}``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from horde.core import accumulate_traces

__all__ = ["decay_traces", "reset_traces", "td_targets", "trace_decay"]


def td_targets(
    cumulants: jax.Array,
    next_values: jax.Array,
    next_discounts: jax.Array,
    terminated: jax.Array,
    terminal_outcomes: jax.typing.ArrayLike,
) -> tuple[jax.Array, jax.Array]:
    """Every demon's TD target ``yᵢ = c_{i,t+1} + γ'_{i,t+1} vᵢ(S_{t+1}) + [terminated] zᵢ``.

    Args:
        cumulants: ``c_{t+1}``, ``(n_demons,)``; NaN (an inactive demon) stays NaN.
        next_values: ``vᵢ(S_{t+1})`` from the weights before the update, ``(n_demons,)``.
        next_discounts: ``γ_{i,t+1}``, ``(n_demons,)``.
        terminated: scalar bool; no bootstrap where true (a truncated step bootstraps).
        terminal_outcomes: ``zᵢ``, ``(n_demons,)``, added where terminated.

    Returns:
        ``(targets, bootstrap_discounts)``: ``y`` and ``γ'`` (0 where terminated), each
        ``(n_demons,)``.
    """
    gamma_next = jnp.where(terminated, 0.0, next_discounts)
    targets = cumulants + gamma_next * next_values + jnp.where(terminated, terminal_outcomes, 0.0)
    return targets, gamma_next


def trace_decay(discounts: jax.Array, lamdas: jax.typing.ArrayLike) -> jax.Array:
    """Each demon's trace decay for this step, ``γ_{i,t} λᵢ``.

    Args:
        discounts: ``γ_{i,t}``, the discount of the current state ``S_t`` (the previous
            transition's next discount), ``(n_demons,)``.
        lamdas: ``λᵢ``, ``(n_demons,)``.

    Returns:
        ``(n_demons,)``.
    """
    return discounts * lamdas


def decay_traces(
    traces: tuple[jax.Array, ...],
    features: jax.Array,
    discounts: jax.Array,
    lamdas: jax.Array,
    rhos: jax.Array | None,
) -> tuple[jax.Array, jax.Array]:
    """``zᵢ ← ρ_{i,t} (γ_{i,t} λᵢ zᵢ + h_t)`` and the bias trace ``ρ_{i,t} (γ_{i,t} λᵢ z_b + 1)``.

    Args:
        traces: ``(z_w (n_demons, H), z_b (n_demons,))``, or ``()`` when not stored (then
            every decay is 0).
        features: ``h_t``, ``(H,)``.
        discounts: ``γ_{i,t}``, ``(n_demons,)``.
        lamdas: ``λᵢ``, ``(n_demons,)``.
        rhos: ``ρ_{i,t}``, ``(n_demons,)``, or ``None`` for 1 (on-policy).

    Returns:
        ``(z_w, z_b)``.
    """
    return accumulate_traces(traces, features, trace_decay(discounts, lamdas), rhos)


def reset_traces(traces: Any, episode_ended: jax.Array) -> Any:
    """Every trace zeroed where ``episode_ended`` (terminated or truncated), so that the next
    episode's traces start from zero; a pytree of traces in, the same structure out."""
    return jax.tree_util.tree_map(lambda t: jnp.where(episode_ended, 0.0, t), traces)
