"""The shared trunk: ``[Dense(H) -> parameterless LayerNorm -> LeakyReLU] x N``.

The forward pass keeps a tape (each layer's input, its LeakyReLU input and LayerNorm's
``1/σ``); the backward pass is written out by hand from that tape, so that one update makes a
single backward pass at the error-weighted cotangent ``Σ_i δ_i w_i`` whatever the number of
heads, and LMS never materialises a weight gradient.

LayerNorm is ``â = (a - mean(a)) / sqrt(var(a) + 1e-5)`` with no learned scale or shift; its
backward is ``(g - mean(g) - â mean(g â)) / σ``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from horde.core.bounders import Bounder, OvershootBounding
from horde.core.heads import materialized
from horde.core.optimizers import LMS, Optimizer, update_group
from horde.core.types import MLPParams

__all__ = [
    "LAYER_NORM_EPS",
    "TrunkTape",
    "leaky_relu",
    "trunk_backward",
    "trunk_forward_with_tape",
    "trunk_jvp",
    "trunk_step",
]

LAYER_NORM_EPS = 1e-5


class TrunkTape(NamedTuple):
    """What the trunk's backward pass keeps from the forward pass, one entry per layer.

    Attributes:
        inputs: each layer's input, ``(in_l,)``.
        pre_activations: each LeakyReLU's input (after LayerNorm when used), ``(out_l,)``.
        inv_std: LayerNorm's ``1/σ`` per layer, shape ``(1,)``; empty without LayerNorm.
    """

    inputs: tuple[jax.Array, ...]
    pre_activations: tuple[jax.Array, ...]
    inv_std: tuple[jax.Array, ...]


def leaky_relu(a: jax.Array, slope: float) -> jax.Array:
    """``a`` where ``a >= 0``, else ``slope · a``."""
    return jnp.where(a >= 0, a, slope * a)


def trunk_forward_with_tape(
    params: MLPParams, x: jax.Array, use_layer_norm: bool, slope: float
) -> tuple[jax.Array, TrunkTape]:
    """The trunk's output ``h`` for features ``x`` and the tape its backward pass needs.

    Args:
        params: trunk parameters; no layers gives ``h = x`` (linear mode).
        x: features, shape ``(feature_dim,)``; or ``(B, feature_dim)``, rows passed through
            independently (``h`` and every tape entry then have the leading ``B`` axis).
        use_layer_norm: apply the parameterless LayerNorm after each Dense.
        slope: LeakyReLU negative slope.

    Returns:
        ``(h, tape)``, ``h`` of shape ``(H,)`` (or ``(B, H)``).
    """
    h = x
    inputs, pre, inv_std = [], [], []
    for w, b in zip(params.weights, params.biases):
        inputs.append(h)
        a = h @ w + b
        if use_layer_norm:
            centred = a - jnp.mean(a, axis=-1, keepdims=True)
            inv = 1.0 / jnp.sqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + LAYER_NORM_EPS)
            a = centred * inv
            inv_std.append(inv)
        pre.append(a)
        h = leaky_relu(a, slope)
    return h, TrunkTape(tuple(inputs), tuple(pre), tuple(inv_std))


def trunk_backward(
    params: MLPParams, tape: TrunkTape, cotangent: jax.Array, use_layer_norm: bool, slope: float
) -> list[tuple[jax.Array, jax.Array]]:
    """The trunk's VJP at ``cotangent``, in factored form.

    Written out rather than taken from ``jax.vjp`` so that the weight gradients need never be
    materialised (LMS applies ``outer(input, g)`` inside the update) and LayerNorm's two
    backward means are one reduction.

    Args:
        params: the trunk parameters of the forward pass.
        tape: the forward pass's tape.
        cotangent: ``∂L/∂h``, shape ``(H,)``.
        use_layer_norm: as in the forward pass.
        slope: as in the forward pass.

    Returns:
        One ``(input, g)`` pair per layer, first layer first, where ``g`` is the gradient with
        respect to the layer's pre-activation: the weight gradient is ``outer(input, g)`` and
        the bias gradient is ``g``.
    """
    g = cotangent
    factors = []
    for layer in reversed(range(len(params.weights))):
        a = tape.pre_activations[layer]
        g = jnp.where(a >= 0, g, slope * g)
        if use_layer_norm:
            # d/da of (a - mean) / σ: (g - mean(g) - â mean(g â)) / σ
            means = jnp.mean(jnp.stack([g, g * a]), axis=-1)
            g = (g - means[0] - a * means[1]) * tape.inv_std[layer]
        # g once into its own buffer: the weight update reads it for every element of
        # outer(input, g), which would otherwise recompute it (LayerNorm's backward) each time.
        g = materialized(g)
        factors.append((tape.inputs[layer], g))
        if layer:
            g = params.weights[layer] @ g
    return factors[::-1]


def trunk_jvp(
    params: MLPParams, tape: TrunkTape, direct: list[jax.Array], use_layer_norm: bool, slope: float
) -> jax.Array:
    """The first-order change of the trunk's output ``h`` for a change of its parameters.

    Forward mode along the tape: a layer's pre-activation changes by ``dx W + direct`` (its
    input's change through the weights, plus ``direct = x ΔW + Δb``, the change of its own
    parameters), then through LayerNorm (``(da - mean(da) - â mean(da â)) / σ``, the same
    symmetric Jacobian as the backward pass) and the LeakyReLU.

    Args:
        params: the trunk parameters of the forward pass.
        tape: the forward pass's tape.
        direct: per layer, ``x_l ΔW_l + Δb_l``, shape ``(out_l,)``.
        use_layer_norm: as in the forward pass.
        slope: as in the forward pass.

    Returns:
        ``Δh``, shape ``(H,)``.
    """
    dx = jnp.zeros_like(tape.inputs[0])
    for layer, w in enumerate(params.weights):
        da = dx @ w + direct[layer]
        a = tape.pre_activations[layer]
        if use_layer_norm:
            means = jnp.mean(jnp.stack([da, da * a]), axis=-1)
            da = (da - means[0] - a * means[1]) * tape.inv_std[layer]
        dx = jnp.where(a >= 0, da, slope * da)
    return dx


def _overshoot_scale(bounder, params, tape, direct, use_layer_norm, slope, errors, active, head_weights):
    if errors is None or active is None or head_weights is None:
        raise ValueError("trunk_step: OvershootBounding needs the errors, the active heads and the head weights")
    changes = jnp.where(active, head_weights @ trunk_jvp(params, tape, direct, use_layer_norm, slope), 0.0)
    return bounder.trunk_scale(jnp.where(active, errors, 0.0), changes)


def trunk_step(
    params: MLPParams,
    optimizer_states: tuple[Any, ...],
    tape: TrunkTape,
    cotangent: jax.Array,
    optimizer: Optimizer,
    bounder: Bounder | None,
    use_layer_norm: bool,
    slope: float,
    errors: jax.Array | None = None,
    active: jax.Array | None = None,
    head_weights: jax.Array | None = None,
) -> tuple[MLPParams, tuple[Any, ...], jax.Array]:
    """One trunk update from the error-weighted cotangent ``Σ_i δ_i w_i``.

    The trunk's ``gamma * lamda`` is 0, so its trace is this step's gradient ``G`` and nothing
    is carried between steps: ``θ += bound(optimizer step for G, pseudo-error 1)``.

    With LMS the weight gradients stay factored: ObGD's ``‖α G‖₁`` of a layer is
    ``α ‖g‖₁ (‖input‖₁ + 1)`` and the update adds ``α' outer(input, g)`` in one pass over the
    weights. Other optimizers step the materialised gradients.

    Args:
        params: trunk parameters (no layers: returned unchanged).
        optimizer_states: interleaved ``(w0, b0, w1, b1, ...)`` optimizer states.
        tape: the forward pass's tape.
        cotangent: ``Σ_i δ_i w_i``, shape ``(H,)``.
        optimizer: the trunk optimizer.
        bounder: optional bounder (``ObGDBounding`` or ``OvershootBounding``).
        use_layer_norm: as in the forward pass.
        slope: as in the forward pass.
        errors: the (ρ-weighted) errors ``δ`` of the cotangent, ``(n_heads,)``; only
            ``OvershootBounding`` reads them, with ``active`` and ``head_weights``.
        active: ``(n_heads,)`` bool, the heads with a target this step.
        head_weights: ``(n_heads, H)``, the head weights the cotangent was made with.

    Returns:
        ``(params, optimizer_states, bounding_scale)``; the scale is 1 when unbounded.
    """
    if not params.weights:
        return params, optimizer_states, jnp.ones((), jnp.float32)
    factors = trunk_backward(params, tape, cotangent, use_layer_norm, slope)
    if isinstance(optimizer, LMS):
        alpha = optimizer.step_size
        if isinstance(bounder, OvershootBounding):
            direct = [alpha * (jnp.sum(x * x) + 1.0) * g for x, g in factors]
            scale = _overshoot_scale(bounder, params, tape, direct, use_layer_norm, slope, errors, active, head_weights)
        elif bounder is not None:
            l1 = sum(alpha * jnp.sum(jnp.abs(g)) * (jnp.sum(jnp.abs(x)) + 1.0) for x, g in factors)
            scale = bounder.scale(l1, 1.0)
        else:
            scale = jnp.ones((), jnp.float32)
        step = alpha * scale
        new = MLPParams(
            tuple(w + step * jnp.outer(x, g) for w, (x, g) in zip(params.weights, factors)),
            tuple(b + step * g for b, (_, g) in zip(params.biases, factors)),
        )
        return new, optimizer_states, jnp.asarray(scale, jnp.float32)
    flat_grads = [g for x, g_a in factors for g in (jnp.outer(x, g_a), g_a)]
    flat_params = [p for pair in zip(params.weights, params.biases) for p in pair]
    steps: list[Any] = []
    opt_states: list[Any] = []
    for layer in range(len(params.weights)):
        pair = slice(2 * layer, 2 * layer + 2)  # a layer's weights and biases, one unit
        s, new_states = update_group(optimizer, optimizer_states[pair], tuple(flat_grads[pair]), None)
        steps += s
        opt_states += new_states
    if isinstance(bounder, OvershootBounding):
        direct = [x @ steps[2 * i] + steps[2 * i + 1] for i, (x, _) in enumerate(factors)]
        scale = _overshoot_scale(bounder, params, tape, direct, use_layer_norm, slope, errors, active, head_weights)
        steps = [s * scale for s in steps]
    elif bounder is not None:
        steps, scale = bounder.bound(steps, 1.0)
    else:
        scale = jnp.ones((), jnp.float32)
    new_flat = [p + s for p, s in zip(flat_params, steps)]
    new_params = MLPParams(tuple(new_flat[0::2]), tuple(new_flat[1::2]))
    return new_params, tuple(opt_states), jnp.asarray(scale, jnp.float32)
