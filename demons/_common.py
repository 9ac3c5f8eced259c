"""Private helpers shared by the spec modules: argument coercion and checks.

Spec builders only coerce *types* (raising ``TypeError`` that names the builder
argument); *value* checks (ranges, finiteness, sums) run when a spec is
attached to a :class:`~demons.Demon`, so that every message can name the demon.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

ArrayLike = Any  # jax.Array | np.ndarray | float | int


def _is_real_scalar_array(value: Any) -> bool:
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    return shape == () and dtype is not None and np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.bool_)


def as_float(value: Any, what: str) -> float:
    """Returns ``value`` as a Python float or raises a TypeError naming ``what``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be a real number, got {value!r}")
    if isinstance(value, numbers.Real) or _is_real_scalar_array(value):
        return float(value)
    raise TypeError(f"{what} must be a real number, got {value!r}")


def as_int(value: Any, what: str) -> int:
    """Returns ``value`` as a Python int or raises a TypeError naming ``what``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if _is_real_scalar_array(value) and np.issubdtype(value.dtype, np.integer):
        return int(value)
    raise TypeError(f"{what} must be an integer, got {value!r}")


def as_number(value: Any, what: str) -> int | float:
    """Like :func:`as_float` but keeps Python ints as ints (for round trips)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    return as_float(value, what)


def as_bool(value: Any, what: str) -> bool:
    """Returns ``value`` as a Python bool or raises a TypeError naming ``what``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{what} must be a bool, got {value!r}")


def as_name(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {value!r}")
    return value


def check_callable(fn: Any, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what} must be callable, got {fn!r}")


# ---------------------------------------------------------------------------
# Value checks (raise ValueError naming the owner, e.g. "demon 'x'").


def check_unit_interval(value: float, field: str, owner: str) -> None:
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"{field} for {owner} must be in [0, 1], got {value!r}")


def check_finite(value: float, field: str, owner: str) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{field} for {owner} must be finite, got {value!r}")


def check_non_negative_int(value: int, field: str, owner: str) -> None:
    if value < 0:
        raise ValueError(f"{field} for {owner} must be >= 0, got {value!r}")


def check_non_empty(value: str, field: str, owner: str) -> None:
    if not value:
        raise ValueError(f"{field} for {owner} must be a non-empty string, got {value!r}")


# ---------------------------------------------------------------------------
# Traceable helpers.


def predicate(x: ArrayLike, threshold: ArrayLike, above: ArrayLike, absolute: ArrayLike) -> jax.Array:
    r"""Elementwise threshold predicate used by threshold cumulants and ``until``.

    .. math::
        p = \begin{cases} y > \theta & \text{above} \\ y < \theta & \text{otherwise}
        \end{cases}, \qquad y = |x| \text{ if absolute else } x.

    Works with Python bools (single spec) or boolean arrays (vectorized groups).
    """
    if isinstance(absolute, bool):
        y = jnp.abs(x) if absolute else x
    else:
        y = jnp.where(absolute, jnp.abs(x), x)
    if isinstance(above, bool):
        return (y > threshold) if above else (y < threshold)
    return jnp.where(above, y > threshold, y < threshold)


_GATHER_DIMS = lax.GatherDimensionNumbers(offset_dims=(), collapsed_slice_dims=(0,), start_index_map=(0,))


def gather(x: jax.Array, indices: np.ndarray) -> jax.Array:
    """``x[indices]`` for a static, in-bounds int32 index vector as ONE gather op.

    The caller guarantees ``0 <= indices < x.shape[0]`` (checked at trace time),
    so no negative-index normalisation is emitted.
    """
    idx = np.asarray(indices, dtype=np.int32).reshape(-1, 1)
    return lax.gather(
        x,
        idx,
        _GATHER_DIMS,
        (1,),
        mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )
