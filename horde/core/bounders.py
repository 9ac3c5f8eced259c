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

Both bound the L1 norm of a step against the error, a loose proxy for the change the step
makes to the predictions: with many heads the trunk's ``‖α Σ_i δ_i ∇v_i‖₁`` grows with the
number of heads, and once the bound is active (it is at every step for ``α`` near 1) the
step no longer depends on ``α`` at all. ``OvershootBounding`` bounds the change itself: each
head by the change its own step makes to its own prediction, and the trunk by the change its
step makes to every head's prediction (one forward-mode pass through the trunk).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from horde.core.checks import as_float, as_instance

__all__ = ["Bounder", "ObGDBounding", "OvershootBounding", "bounder_from_config"]


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


@dataclasses.dataclass(frozen=True)
class OvershootBounding:
    """Bounds each head, and the shared trunk, by the overshoot its own step would make on
    the current sample (a many-head form of ObGD's protection).

    ObGD (Elsayed, Vasan & Mahmood 2024) keeps a step from overshooting the target with the
    proxy ``α κ max(|δ|, 1) ‖z‖₁``. In a Horde the trunk's step ``α Σ_i δ_i ∇v_i`` serves
    every head at once, and its L1 norm grows with the number of heads; this bounder
    measures the first-order change each step makes to the predictions instead.

    **Heads**, each by its own error and trace. Head ``i``'s step (per unit error)
    ``s_i = α ⊙ z_i`` (bias ``s_{b,i}``) changes its prediction of the current features
    ``h`` by exactly ``Δv_i = δ_i u_i`` with ``u_i = s_i·h + s_{b,i}`` (the head is
    linear), so the post-update error is ``δ_i (1 - u_i)``::

        M_i     = κ |u_i|
        scale_i = 1 / max(M_i, 1)          (step s_i · scale_i)

    so the step removes at most ``1/κ`` of the error and never changes its sign for
    ``κ ≥ 1`` (ObGD's ``max(|δ|, 1)`` factor is left out: it makes the bound depend on
    the cumulant's units).

    **Trunk**, by its own error and trace: the trunk step ``Δθ`` (the optimizer's step for
    the error-weighted gradient ``G = Σ_i δ_i ∇v_i``) changes the predictions, to first
    order, by ``c = (∂v/∂θ) Δθ``, one forward-mode (JVP) pass through the trunk and
    ``c = W Δh``. Along ``Δθ`` the current sample's squared error ``½ Σ_i (δ_i - s c_i)²``
    (active heads) is least at ``s* = δ·c / ‖c‖²``; the bound stops at ``s*/κ``::

        M_T     = κ ‖c‖² / (δ·c)           (``δ·c ≤ 0``: the step would not reduce the
        scale_T = 1 / max(M_T, 1)            error, and ``scale_T = 0``)

    With one head this is ``M_T = κ α ‖∇v‖²`` for LMS, the exact first-order overshoot of
    the step. With ``n`` heads whose gradients point the same way ``c`` is ``n`` times
    larger and so is ``M_T`` (as it must be: the summed step moves every head ``n`` times as
    far); with heads whose gradients are orthogonal ``M_T`` does not grow with ``n``.

    Args:
        kappa: ``κ``, at least 1: a bounded step removes at most ``1/κ`` of the error
            (heads) or goes ``1/κ`` of the way to the least squared error (trunk).
    """

    kappa: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kappa", as_float("OvershootBounding: kappa", self.kappa, low=1))

    def head_scale(self, change: jax.Array) -> jax.Array:
        """``1 / max(κ |u|, 1)`` for a head whose step changes its prediction by ``δ u``.

        Args:
            change: ``u = s·h + s_b``, the change of the head's prediction per unit error
                (any shape; one value per head).

        Returns:
            The scale, in (0, 1], shaped like ``change``.
        """
        return 1.0 / jnp.maximum(self.kappa * jnp.abs(change), 1.0)

    def trunk_scale(self, errors: jax.Array, changes: jax.Array) -> jax.Array:
        """``1 / max(κ ‖c‖² / (δ·c), 1)``, or 0 where ``δ·c ≤ 0``.

        Args:
            errors: ``δ``, ``(n_heads,)``, 0 for inactive heads.
            changes: ``c``, the first-order change of every prediction the unbounded trunk
                step makes, ``(n_heads,)`` (0 for inactive heads).

        Returns:
            The scalar scale, in [0, 1].
        """
        progress = jnp.sum(errors * changes)
        size = jnp.sum(changes * changes)
        m = self.kappa * size / jnp.where(progress > 0, progress, 1.0)
        return jnp.where(progress > 0, 1.0 / jnp.maximum(m, 1.0), 0.0)

    def to_config(self) -> dict[str, Any]:
        return {"type": "OvershootBounding", "kappa": self.kappa}


Bounder = ObGDBounding | OvershootBounding


def bounder_from_config(config: dict[str, Any] | None) -> ObGDBounding | OvershootBounding | None:
    """Rebuilds a bounder from its ``to_config()`` dict (``None`` passes through)."""
    if config is None:
        return None
    config = dict(as_instance("bounder config", config, dict, example="{'type': 'ObGDBounding', 'kappa': 2.0}"))
    kind = config.pop("type", None)
    kinds: dict[str, type[ObGDBounding] | type[OvershootBounding]] = {
        "ObGDBounding": ObGDBounding,
        "OvershootBounding": OvershootBounding,
    }
    if kind not in kinds:
        raise ValueError(f"bounder config 'type' must be one of {sorted(kinds)}, got {kind!r}")
    return kinds[kind](**config)
