r"""Discounts (continuation functions) :math:`\gamma_{t+1} = \gamma(S_{t+1})`.

A demon's return is :math:`G_t = c_{t+1} + \gamma_{t+1} G_{t+1}`, where the
discount is evaluated on the *next* observation. A constant discount
:math:`\gamma` gives a prediction over a timescale of about
:math:`1 / (1 - \gamma)` steps; a state-dependent discount that drops to 0
ends the question ("until the pole passes 10 degrees").

Episode termination is handled by the learner (it sets :math:`\gamma = 0` on
terminated transitions), not here.

Each builder returns an instance of a *kind*, a subclass of :class:`Discount` that owns its
scalar form (``spec(next_observation) -> float32 scalar``), its batched form (every spec of
the kind in one vectorized operation) and its plain-data form (see :mod:`demons.kinds`).
Value checks (e.g. ``gamma`` in [0, 1]) run when the spec is attached
to a :class:`demons.Demon`, so that error messages name the demon.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from demons import checks
from demons.kinds import Batch, Kind, Transition, per_distinct_spec, predicate, scalar_float32, threshold_crossings

__all__ = [
    "ConstantDiscount",
    "TimescaleDiscount",
    "UntilDiscount",
    "FunctionDiscount",
    "Discount",
    "DISCOUNT_TYPES",
    "constant",
    "timescale",
    "until",
    "function",
]


class Discount(Kind):
    r"""Base of every discount kind: :math:`\gamma_{t+1} = \gamma(S_{t+1})`.

    A subclass that sets ``kind`` is registered (see :mod:`demons.kinds` for the contract).
    Its scalar form is ``spec(next_observation) -> float32 scalar``; its batched form computes
    :math:`\gamma_{t+1}` for every spec of the kind. A constant discount overrides
    :attr:`constant_gamma`.
    """

    family: ClassVar[str] = "discount"

    @property
    def constant_gamma(self) -> float | None:
        """The constant value of the discount, or None if state-dependent."""
        return None

    @property
    def timescale(self) -> float | None:
        r""":math:`1 / (1 - \gamma)` in steps for a constant :math:`\gamma < 1`, else None."""
        gamma = self.constant_gamma
        return None if gamma is None or gamma >= 1 else 1.0 / (1.0 - gamma)


@dataclasses.dataclass(frozen=True)
class ConstantDiscount(Discount):
    r"""A constant discount :math:`\gamma_{t+1} = \gamma \in [0, 1]`."""

    gamma: float
    kind: ClassVar[str] = "constant"

    def __post_init__(self):
        object.__setattr__(self, "gamma", checks.as_number(self.gamma, "discounts.constant: gamma"))

    def check(self, owner: str = "this discount") -> None:
        checks.check_unit_interval(self.gamma, "gamma", owner)

    @property
    def constant_gamma(self) -> float:
        """The constant value of the discount."""
        return float(self.gamma)

    def __call__(self, next_observation) -> jax.Array:
        return jnp.asarray(self.gamma, jnp.float32)

    @classmethod
    def batched(cls, positions: np.ndarray, specs: Sequence[ConstantDiscount]) -> list[Batch]:
        """One constant array."""
        return [Batch.constant(positions, [s.constant_gamma for s in specs])]


@dataclasses.dataclass(frozen=True)
class TimescaleDiscount(Discount):
    r"""A constant discount given as a timescale: :math:`\gamma = 1 - 1/\text{steps}`.

    ``steps >= 1``; ``steps = 1`` gives :math:`\gamma = 0` (predict the next
    cumulant only), ``steps = 10`` gives :math:`\gamma = 0.9`.
    """

    steps: float
    kind: ClassVar[str] = "timescale"

    def __post_init__(self):
        object.__setattr__(self, "steps", checks.as_number(self.steps, "discounts.timescale: steps"))

    def check(self, owner: str = "this discount") -> None:
        if not (math.isfinite(self.steps) and self.steps >= 1):
            raise ValueError(f"timescale steps for {owner} must be a finite number >= 1, got {self.steps!r}")

    @property
    def gamma(self) -> float:
        return 1.0 - 1.0 / self.steps

    @property
    def constant_gamma(self) -> float:
        """The constant value of the discount."""
        return self.gamma

    @property
    def timescale(self) -> float:
        """The timescale as given (``steps``)."""
        return float(self.steps)

    def __call__(self, next_observation) -> jax.Array:
        return jnp.asarray(self.gamma, jnp.float32)

    @classmethod
    def batched(cls, positions: np.ndarray, specs: Sequence[TimescaleDiscount]) -> list[Batch]:
        """One constant array."""
        return [Batch.constant(positions, [s.constant_gamma for s in specs])]


@dataclasses.dataclass(frozen=True)
class UntilDiscount(Discount):
    r"""Terminates the question when a predicate on :math:`S_{t+1}[i]` holds.

    .. math::
        \gamma_{t+1} = \begin{cases} 0 & p(S_{t+1}[i]) \\ \gamma & \text{otherwise}
        \end{cases}

    with :math:`p` the same threshold predicate as
    :func:`demons.cumulants.threshold` (``above``: :math:`y > \theta`, else
    :math:`y < \theta`; ``absolute``: :math:`y = |x|`).
    """

    index: int
    threshold: float
    above: bool = True
    absolute: bool = False
    gamma: float = 1.0
    kind: ClassVar[str] = "until"

    def __post_init__(self):
        object.__setattr__(self, "index", checks.as_int(self.index, "discounts.until: index"))
        object.__setattr__(self, "threshold", checks.as_number(self.threshold, "discounts.until: threshold"))
        object.__setattr__(self, "above", checks.as_bool(self.above, "discounts.until: above"))
        object.__setattr__(self, "absolute", checks.as_bool(self.absolute, "discounts.until: absolute"))
        object.__setattr__(self, "gamma", checks.as_number(self.gamma, "discounts.until: gamma"))

    def check(self, owner: str = "this discount") -> None:
        checks.check_non_negative_int(self.index, "until-discount observation index", owner)
        checks.check_finite(self.threshold, "until-discount threshold", owner)
        checks.check_unit_interval(self.gamma, "gamma", owner)

    def observation_indices(self) -> tuple[int, ...]:
        return (self.index,)

    def __call__(self, next_observation) -> jax.Array:
        x = jnp.asarray(next_observation)[self.index].astype(jnp.float32)
        hit = predicate(x, jnp.float32(self.threshold), self.above, self.absolute)
        return jnp.where(hit, jnp.float32(0.0), jnp.float32(self.gamma))

    @classmethod
    def batched(cls, positions: np.ndarray, specs: Sequence[UntilDiscount]) -> list[Batch]:
        """One gather, one comparison and one select."""
        hit = threshold_crossings(specs)
        gammas = np.asarray([s.gamma for s in specs], np.float32)
        return [Batch(positions, lambda t: jnp.where(hit(t), jnp.float32(0.0), gammas))]


@dataclasses.dataclass(frozen=True)
class FunctionDiscount(Discount):
    r"""Any JAX-traceable :math:`\gamma_{t+1} = f(S_{t+1}) \in [0, 1]`.

    The range cannot be checked on traced values: it is the caller's
    responsibility. Demons sharing one ``FunctionDiscount`` are evaluated with a
    single call to ``fn``. Function discounts cannot be serialized.
    """

    fn: Callable[[Any], Any]
    name: str
    kind: ClassVar[str] = "function"
    plain_data: ClassVar[bool] = False

    def __post_init__(self):
        checks.check_callable(self.fn, "discounts.function: fn")
        checks.as_name(self.name, "discounts.function: name")

    def check(self, owner: str = "this discount") -> None:
        checks.check_non_empty(self.name, "discount function name", owner)

    def __call__(self, next_observation) -> jax.Array:
        return scalar_float32(self.fn(next_observation), f"discount function {self.name!r}")

    @classmethod
    def batched(cls, positions: np.ndarray, specs: Sequence[FunctionDiscount]) -> list[Batch]:
        """One call per distinct function, broadcast to the demons that share it."""
        return per_distinct_spec(positions, specs, _call_on)


def _call_on(spec: Discount, t: Transition) -> jax.Array:
    return spec(t.next_observation)


DISCOUNT_TYPES = (ConstantDiscount, TimescaleDiscount, UntilDiscount, FunctionDiscount)
"""The built-in discount kinds (any registered subclass of :class:`Discount` is a discount)."""


def constant(gamma: float) -> ConstantDiscount:
    r"""Constant discount :math:`\gamma_{t+1} = \gamma`, :math:`\gamma \in [0, 1]`."""
    return ConstantDiscount(gamma)


def timescale(steps: float) -> TimescaleDiscount:
    r"""Constant discount :math:`\gamma = 1 - 1/\text{steps}` (``steps >= 1``).

    The spec remembers the timescale (it serializes as ``{"kind": "timescale",
    "steps": ...}``); ``timescale(10).gamma == 0.9``.
    """
    return TimescaleDiscount(steps)


def until(
    index: int,
    threshold: float,
    above: bool = True,
    absolute: bool = False,
    gamma: float = 1.0,
) -> UntilDiscount:
    r"""Discount that is 0 where a predicate on :math:`S_{t+1}[\text{index}]` holds, else ``gamma``.

    Example: "how many steps until the pole passes 10 degrees" is
    ``Demon("steps_to_fall", cumulants.constant(1), discounts.until(2, 0.1745, absolute=True))``.

    Args:
      index: observation component :math:`i`.
      threshold: :math:`\theta` (finite).
      above: predicate :math:`y > \theta` if True, :math:`y < \theta` otherwise.
      absolute: use :math:`y = |S_{t+1}[i]|` instead of :math:`S_{t+1}[i]`.
      gamma: discount while the predicate does not hold, in [0, 1].
    """
    return UntilDiscount(index, threshold, above, absolute, gamma)


def function(fn: Callable[[Any], Any], name: str) -> FunctionDiscount:
    r"""Discount from any JAX-traceable ``fn(next_observation) -> gamma`` in [0, 1]."""
    return FunctionDiscount(fn, name)
