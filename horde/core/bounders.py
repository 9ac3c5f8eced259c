"""Update bounding: ObGD (Elsayed, Vasan & Mahmood 2024, "Streaming Deep Reinforcement
Learning Finally Works").

ObGD limits the size of one update so that a single step cannot overshoot. For a step
``α z`` and error ``δ`` it computes::

    M = α κ max(|δ|, 1) ‖z‖₁         (over all the parameters it is given)
    α_eff = α / max(M, 1)

With per-weight step sizes the optimizer's step ``s = α ⊙ z`` stands in for ``α z``, so
``M = κ max(|δ|, 1) ‖s‖₁`` and every step is scaled by ``1 / max(M, 1)``; for LMS this is the
paper's rule exactly.

In the multi-head learner each head is bounded with its own error ``δ_i``. The shared trunk's
trace is already the error-weighted gradient ``G = Σ_i δ_i ∇v_i`` (one VJP for all heads), so it
is bounded with error 1: ``M = κ ‖α G‖₁``. With a single head and ``|δ| ≥ 1`` this is the
paper's rule; with ``|δ| < 1`` it bounds less than ``κ α ‖∇v‖₁`` would, because the error has
already scaled the step down.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from horde.core.checks import as_float, as_instance

__all__ = ["ObGDBounding", "bounder_from_config"]


@dataclasses.dataclass(frozen=True)
class ObGDBounding:
    """Overshooting-bounded gradient descent scaling of one update.

    Args:
        kappa: ``κ``, the bounding strength (the paper's default is 2).
    """

    kappa: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kappa", as_float("ObGDBounding: kappa", self.kappa, low=0, low_open=True))

    def bound(self, steps: Any, error: jax.Array | float) -> tuple[Any, jax.Array]:
        """Scales a pytree of steps as one update.

        Args:
            steps: pytree of per-unit-error steps ``α ⊙ z`` for one set of parameters.
            error: the error ``δ`` these steps will be multiplied by (1 for the trunk, whose
                trace already carries the error).

        Returns:
            ``(scaled_steps, scale)`` where ``scale = 1 / max(M, 1)`` is in (0, 1].
        """
        l1 = sum(jnp.sum(jnp.abs(s)) for s in jax.tree_util.tree_leaves(steps))
        scale = self.scale(l1, error)
        return jax.tree_util.tree_map(lambda s: s * scale, steps), scale

    def scale(self, l1: jax.typing.ArrayLike, error: jax.typing.ArrayLike) -> jax.Array:
        """``1 / max(κ max(|δ|, 1) l1, 1)`` for steps whose L1 norm ``‖α ⊙ z‖₁`` is ``l1``
        (for callers that know the norm without materialising the steps)."""
        m = self.kappa * jnp.maximum(jnp.abs(error), 1.0) * l1
        return 1.0 / jnp.maximum(m, 1.0)

    def to_config(self) -> dict[str, Any]:
        return {"type": "ObGDBounding", "kappa": self.kappa}


def bounder_from_config(config: dict[str, Any] | None) -> ObGDBounding | None:
    """Rebuilds a bounder from its ``to_config()`` dict (``None`` passes through)."""
    if config is None:
        return None
    config = dict(as_instance("bounder config", config, dict, example="{'type': 'ObGDBounding', 'kappa': 2.0}"))
    kind = config.pop("type", None)
    if kind != "ObGDBounding":
        raise ValueError(f"bounder config 'type' must be 'ObGDBounding', got {kind!r}")
    return ObGDBounding(**config)
