"""Online error estimates per demon, RUPEE and UDE (White, Modayil & Sutton 2012).

Both work off-policy, where no ideal return exists. With ``α`` the diagnostics' step size,
``x = (h_t, 1)`` the head features and the bias, ``z`` the demon's trace and ``δ`` its TD error::

    RUPEE: ĥ ← ĥ + α_h (δz - (ĥ·x) x)                  α_h = 5α
           τ ← (1-β₀) τ + β₀,   β = β₀ / τ               β₀ = max(1-λ, 0.01) α / 30
           d̄ ← (1-β) d̄ + β δz
           RUPEE = sqrt(|ĥ·d̄|)
    UDE:   τ ← (1-β₀) τ + β₀,   β = β₀ / τ               β₀ = 10α
           δ̄ ← (1-β) δ̄ + β ρδ
           var ← (1-β) (var + β (ρδ - δ̄_old)²)
           UDE = |δ̄| / (sqrt(var) + 1e-6)

The trace ``τ`` unbiases the moving averages: it starts at 0, so the first step's ``β`` is 1
and the average is not pulled towards its zero start. ``β₀`` is floored at ``0.01 α / 30`` so
that a λ = 1 demon still averages. UDE averages ``ρδ``, whose expectation under the behaviour
policy is the target policy's expected TD error (``ρ = 1`` on-policy).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from horde.core import select_heads

__all__ = [
    "DiagnosticsState",
    "diagnostics_step",
    "init_diagnostics",
    "rupee_update",
    "rupee_value",
    "ude_update",
    "ude_value",
]


class DiagnosticsState(NamedTuple):
    """Online error estimates per demon (White, Modayil & Sutton 2012), all with a leading
    demon axis.

    Attributes:
        rupee_h: ``ĥ`` over the head features and the bias, ``(n_demons, H + 1)``.
        rupee_d: ``d̄``, the moving average of ``δ z``, ``(n_demons, H + 1)``.
        rupee_tau: unbiasing trace ``τ`` of the RUPEE average, ``(n_demons,)``.
        ude_mean: moving average of ``δ``, ``(n_demons,)``.
        ude_var: moving variance of ``δ``, ``(n_demons,)``.
        ude_tau: unbiasing trace of the UDE averages, ``(n_demons,)``.
    """

    rupee_h: jax.Array
    rupee_d: jax.Array
    rupee_tau: jax.Array
    ude_mean: jax.Array
    ude_var: jax.Array
    ude_tau: jax.Array


def init_diagnostics(n_demons: int, width: int) -> DiagnosticsState:
    """All-zero diagnostics for ``n_demons`` demons over ``width = H + 1`` features."""
    zeros = jnp.zeros((n_demons,), jnp.float32)
    return DiagnosticsState(
        rupee_h=jnp.zeros((n_demons, width), jnp.float32),
        rupee_d=jnp.zeros((n_demons, width), jnp.float32),
        rupee_tau=zeros,
        ude_mean=zeros,
        ude_var=zeros,
        ude_tau=zeros,
    )


def rupee_update(
    h_hat: jax.Array,
    d_bar: jax.Array,
    tau: jax.Array,
    x: jax.Array,
    dz: jax.Array,
    lamdas: np.ndarray,
    step_size: float,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One RUPEE step (see the module docstring).

    Args:
        h_hat: ``ĥ``, ``(n_demons, H + 1)``.
        d_bar: ``d̄``, ``(n_demons, H + 1)``.
        tau: unbiasing trace ``τ``, ``(n_demons,)``.
        x: ``(h_t, 1)``, ``(H + 1,)``.
        dz: ``δ z`` with the bias trace last, ``(n_demons, H + 1)``.
        lamdas: ``λᵢ``, ``(n_demons,)``.
        step_size: ``α``.

    Returns:
        ``(h_hat, d_bar, tau)``.
    """
    h_hat = h_hat + 5.0 * step_size * (dz - (h_hat @ x)[:, None] * x[None, :])
    # float32 like λ (NumPy keeps the dtype with a Python scalar), as a JAX constant.
    beta0 = jnp.asarray(np.maximum(1.0 - lamdas, 0.01) * step_size / 30.0)
    tau = (1.0 - beta0) * tau + beta0
    beta = beta0 / tau
    d_bar = (1.0 - beta)[:, None] * d_bar + beta[:, None] * dz
    return h_hat, d_bar, tau


def ude_update(
    mean: jax.Array, var: jax.Array, tau: jax.Array, weighted_errors: jax.Array, step_size: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One UDE step over ``ρδ`` (see the module docstring).

    Args:
        mean: ``δ̄``, ``(n_demons,)``.
        var: the moving variance, ``(n_demons,)``.
        tau: unbiasing trace, ``(n_demons,)``.
        weighted_errors: ``ρδ``, ``(n_demons,)``.
        step_size: ``α``.

    Returns:
        ``(mean, var, tau)``.
    """
    beta0 = 10.0 * step_size
    tau = (1.0 - beta0) * tau + beta0
    beta = beta0 / tau
    new_mean = (1.0 - beta) * mean + beta * weighted_errors
    var = (1.0 - beta) * (var + beta * (weighted_errors - mean) ** 2)
    return new_mean, var, tau


def rupee_value(h_hat: jax.Array, d_bar: jax.Array) -> jax.Array:
    """``RUPEE = sqrt(|ĥ·d̄|)`` per demon, ``(n_demons,)``."""
    return jnp.sqrt(jnp.abs(jnp.sum(h_hat * d_bar, axis=-1)))


def ude_value(mean: jax.Array, var: jax.Array) -> jax.Array:
    """``UDE = |δ̄| / (sqrt(var) + 1e-6)`` per demon, ``(n_demons,)``."""
    return jnp.abs(mean) / (jnp.sqrt(var) + 1e-6)


def diagnostics_step(
    d: DiagnosticsState,
    features: jax.Array,
    traces: tuple[jax.Array, jax.Array],
    td_errors: jax.Array,
    rhos: jax.Array | None,
    active: jax.Array,
    lamdas: np.ndarray,
    step_size: float,
) -> tuple[DiagnosticsState, jax.Array, jax.Array]:
    """One step of RUPEE and UDE for every demon; inactive demons keep theirs bit for bit.

    Args:
        d: current diagnostics.
        features: ``h_t``, ``(H,)``.
        traces: ``(z_w (n_demons, H), z_b (n_demons,))`` of this step.
        td_errors: ``δ``, ``(n_demons,)`` (0 for inactive demons).
        rhos: ``ρ``, ``(n_demons,)``, or ``None`` for 1.
        active: ``(n_demons,)`` bool.
        lamdas: ``λᵢ``, ``(n_demons,)``.
        step_size: ``α``.

    Returns:
        ``(diagnostics, rupee, ude)``, the values ``(n_demons,)`` after this step.
    """
    x = jnp.concatenate([features, jnp.ones((1,), features.dtype)])
    z = jnp.concatenate([traces[0], traces[1][:, None]], axis=1)  # (n, H + 1)
    dz = td_errors[:, None] * z
    rupee_h, rupee_d, rupee_tau = rupee_update(d.rupee_h, d.rupee_d, d.rupee_tau, x, dz, lamdas, step_size)
    weighted = td_errors if rhos is None else rhos * td_errors
    ude_mean, ude_var, ude_tau = ude_update(d.ude_mean, d.ude_var, d.ude_tau, weighted, step_size)
    new = DiagnosticsState(rupee_h, rupee_d, rupee_tau, ude_mean, ude_var, ude_tau)
    new = select_heads(active, new, d)
    return new, rupee_value(new.rupee_h, new.rupee_d), ude_value(new.ude_mean, new.ude_var)
