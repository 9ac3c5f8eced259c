"""GTD(λ) for off-policy demons, on the head features (Maei 2011; Sutton et al. 2011, Horde).

With secondary weights ``uᵢ``, traces ``zᵢ = ρ_{i,t}(γ_{i,t} λᵢ zᵢ + h_t)`` and TD error ``δᵢ``::

    wᵢ += α [δᵢ zᵢ - γ_{i,t+1} (1 - λᵢ) (zᵢ·uᵢ) h_{t+1}]
    uᵢ += β [δᵢ zᵢ - (uᵢ·h_t) h_t]

The ``α δᵢ zᵢ`` part is the ordinary TD(λ) step the heads already take; these functions add
the gradient correction and update ``u``. Biases take part as a feature that is always 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from horde.core import HeadParams

__all__ = ["gtd_correction", "secondary_update"]


def gtd_correction(
    weights: jax.Array,
    biases: jax.Array,
    traces: tuple[jax.Array, jax.Array],
    secondary: HeadParams,
    step_sizes: tuple[jax.Array, jax.Array],
    next_discounts: jax.Array,
    lamdas: jax.typing.ArrayLike,
    next_features: jax.Array,
    off_policy: jax.typing.ArrayLike,
) -> tuple[jax.Array, jax.Array]:
    """Subtracts ``α γ_{i,t+1} (1-λᵢ) (zᵢ·uᵢ) h_{t+1}`` from the off-policy heads.

    Args:
        weights: head weights after the TD(λ) step, ``(n_demons, H)``.
        biases: head biases after the TD(λ) step, ``(n_demons,)``.
        traces: ``(z_w (n_demons, H), z_b (n_demons,))`` of this step.
        secondary: ``uᵢ`` as ``HeadParams``.
        step_sizes: per-weight step sizes ``α`` after bounding, ``((n_demons, H), (n_demons,))``.
        next_discounts: ``γ_{i,t+1}`` (0 where terminated), ``(n_demons,)``.
        lamdas: ``λᵢ``, ``(n_demons,)``.
        next_features: ``h_{t+1}``, ``(H,)``.
        off_policy: ``(n_demons,)`` bool; on-policy heads are returned unchanged (TD(λ)).

    Returns:
        ``(weights, biases)``.
    """
    z_w, z_b = traces
    u_w, u_b = secondary
    alpha_w, alpha_b = step_sizes
    z_dot_u = jnp.sum(z_w * u_w, axis=-1) + z_b * u_b
    coef = jnp.where(off_policy, next_discounts * (1.0 - lamdas) * z_dot_u, 0.0)
    return weights - alpha_w * coef[:, None] * next_features[None, :], biases - alpha_b * coef


def secondary_update(
    secondary: HeadParams,
    traces: tuple[jax.Array, jax.Array],
    td_errors: jax.Array,
    features: jax.Array,
    step_size: float,
    off_policy: jax.Array,
) -> HeadParams:
    """``uᵢ += β [δᵢ zᵢ - (uᵢ·h_t) h_t]`` for the off-policy demons.

    Args:
        secondary: ``uᵢ`` as ``HeadParams``, ``(n_demons, H)`` and ``(n_demons,)``.
        traces: ``(z_w, z_b)`` of this step.
        td_errors: ``δᵢ``, ``(n_demons,)``.
        features: ``h_t``, ``(H,)``.
        step_size: ``β``.
        off_policy: ``(n_demons,)`` bool; on-policy demons keep ``u`` (zero) unchanged.

    Returns:
        The new ``u``.
    """
    z_w, z_b = traces
    u_w, u_b = secondary
    u_dot_h = u_w @ features + u_b
    u_w = u_w + step_size * (td_errors[:, None] * z_w - u_dot_h[:, None] * features[None, :])
    u_b = u_b + step_size * (td_errors * z_b - u_dot_h)
    return HeadParams(
        jnp.where(off_policy[:, None], u_w, secondary.weights), jnp.where(off_policy, u_b, secondary.biases)
    )
