r"""Discounts (continuation functions) :math:`\gamma_{t+1} = \gamma(S_{t+1})`.

A demon's return is :math:`G_t = c_{t+1} + \gamma_{t+1} G_{t+1}`, where the
discount is evaluated on the *next* observation. A constant discount
:math:`\gamma` gives a prediction over a timescale of about
:math:`1 / (1 - \gamma)` steps; a state-dependent discount that drops to 0
ends the question ("until the pole passes 10 degrees").

Episode termination is handled by the learner (it sets :math:`\gamma = 0` on
terminated transitions), not here.

Each spec is callable on a single next observation and returns a float32
scalar. Value checks (e.g. ``gamma`` in [0, 1]) run when the spec is attached
to a :class:`demons.Demon`, so that error messages name the demon.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from demons import _common

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


@dataclasses.dataclass(frozen=True)
class ConstantDiscount:
    r"""A constant discount :math:`\gamma_{t+1} = \gamma \in [0, 1]`."""

    gamma: float
    kind: ClassVar[str] = "constant"

    def __post_init__(self):
        object.__setattr__(self, "gamma", _common.as_number(self.gamma, "discounts.constant: gamma"))

    def check(self, owner: str = "this discount") -> None:
        _common.check_unit_interval(self.gamma, "gamma", owner)

    @property
    def constant_gamma(self) -> float | None:
        """The constant value of the discount, or None if state-dependent."""
        return float(self.gamma)

    def observation_indices(self) -> tuple[int, ...]:
        return ()

    def __call__(self, next_observation) -> jax.Array:
        return jnp.asarray(self.gamma, jnp.float32)


@dataclasses.dataclass(frozen=True)
class TimescaleDiscount:
    r"""A constant discount given as a timescale: :math:`\gamma = 1 - 1/\text{steps}`.

    ``steps >= 1``; ``steps = 1`` gives :math:`\gamma = 0` (predict the next
    cumulant only), ``steps = 10`` gives :math:`\gamma = 0.9`.
    """

    steps: float
    kind: ClassVar[str] = "timescale"

    def __post_init__(self):
        object.__setattr__(self, "steps", _common.as_number(self.steps, "discounts.timescale: steps"))

    def check(self, owner: str = "this discount") -> None:
        if not (math.isfinite(self.steps) and self.steps >= 1):
            raise ValueError(f"timescale steps for {owner} must be a finite number >= 1, got {self.steps!r}")

    @property
    def gamma(self) -> float:
        return 1.0 - 1.0 / self.steps

    @property
    def constant_gamma(self) -> float | None:
        """The constant value of the discount, or None if state-dependent."""
        return self.gamma

    def observation_indices(self) -> tuple[int, ...]:
        return ()

    def __call__(self, next_observation) -> jax.Array:
        return jnp.asarray(self.gamma, jnp.float32)


@dataclasses.dataclass(frozen=True)
class UntilDiscount:
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
        object.__setattr__(self, "index", _common.as_int(self.index, "discounts.until: index"))
        object.__setattr__(self, "threshold", _common.as_number(self.threshold, "discounts.until: threshold"))
        object.__setattr__(self, "above", _common.as_bool(self.above, "discounts.until: above"))
        object.__setattr__(self, "absolute", _common.as_bool(self.absolute, "discounts.until: absolute"))
        object.__setattr__(self, "gamma", _common.as_number(self.gamma, "discounts.until: gamma"))

    def check(self, owner: str = "this discount") -> None:
        _common.check_non_negative_int(self.index, "until-discount observation index", owner)
        _common.check_finite(self.threshold, "until-discount threshold", owner)
        _common.check_unit_interval(self.gamma, "gamma", owner)

    @property
    def constant_gamma(self) -> float | None:
        return None

    def observation_indices(self) -> tuple[int, ...]:
        return (self.index,)

    def __call__(self, next_observation) -> jax.Array:
        x = jnp.asarray(next_observation)[self.index].astype(jnp.float32)
        hit = _common.predicate(x, jnp.float32(self.threshold), self.above, self.absolute)
        return jnp.where(hit, jnp.float32(0.0), jnp.float32(self.gamma))


@dataclasses.dataclass(frozen=True)
class FunctionDiscount:
    r"""Any JAX-traceable :math:`\gamma_{t+1} = f(S_{t+1}) \in [0, 1]`.

    The range cannot be checked on traced values: it is the caller's
    responsibility. Demons sharing one ``FunctionDiscount`` are evaluated with a
    single call to ``fn``. Function discounts cannot be serialized.
    """

    fn: Callable[[Any], Any]
    name: str
    kind: ClassVar[str] = "function"

    def __post_init__(self):
        _common.check_callable(self.fn, "discounts.function: fn")
        _common.as_name(self.name, "discounts.function: name")

    def check(self, owner: str = "this discount") -> None:
        _common.check_non_empty(self.name, "discount function name", owner)

    @property
    def constant_gamma(self) -> float | None:
        return None

    def observation_indices(self) -> tuple[int, ...]:
        return ()

    def __call__(self, next_observation) -> jax.Array:
        out = jnp.asarray(self.fn(next_observation))
        if out.shape != ():
            raise ValueError(f"discount function {self.name!r} must return a scalar, got shape {out.shape}")
        return out.astype(jnp.float32)


Discount = ConstantDiscount | TimescaleDiscount | UntilDiscount | FunctionDiscount
DISCOUNT_TYPES = (ConstantDiscount, TimescaleDiscount, UntilDiscount, FunctionDiscount)


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
