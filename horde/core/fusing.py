"""Steering XLA's CPU fusion (internal helpers)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["computed_together"]


def computed_together(*arrays: jax.Array) -> tuple[jax.Array, ...]:
    """``arrays`` unchanged, bit for bit, but computed together into one buffer where they
    have one shape and dtype (otherwise returned as they are).

    XLA on the CPU has no multi-output fusion: every value with several users that XLA will
    not recompute in each (a division, a square root, a shared intermediate of a chain of
    two-sums) becomes a kernel of its own, and on small arrays a kernel costs its launch,
    whatever its size. Stacked, the arrays are one fusion that computes them all (their
    producers recomputed inside it); the barrier keeps XLA from folding the slices of the
    stack back into its operands. The arithmetic is the same operations in the same order.
    """
    if len(arrays) < 2 or len({(a.shape, a.dtype) for a in arrays}) != 1:
        return arrays
    packed = jax.lax.optimization_barrier(jnp.stack(arrays))
    return tuple(packed[i] for i in range(len(arrays)))
