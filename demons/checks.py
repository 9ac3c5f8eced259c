"""Argument checks for demon specs: type coercion at build time, value checks at attach time.

Spec builders only coerce *types* (``as_int``, ``as_float``, ... raise a ``TypeError`` that
names the builder argument); *value* checks (``check_unit_interval``, ``check_finite``, ...)
run when a spec is attached to a :class:`~demons.Demon`, so that every message can name the
demon (the ``owner``, e.g. ``"demon 'pole_angle@10'"``). A new cumulant, discount or policy
kind uses the same functions so that its messages read like the built-in ones.

The type converters make the same decisions as ``horde.core``'s (``as_float``, ``as_int``,
``as_bool``): a bool or a string is not a number, a NumPy or JAX scalar is. ``demons`` imports
nothing of ``horde``, so the two sets are held together by a test (``tests/test_boundary.py``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


def _is_real_scalar_array(value: Any) -> bool:
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape != () or dtype is None:
        return False
    try:
        return bool(np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.bool_))
    except TypeError:  # a dtype NumPy does not know (a JAX PRNG key's): not a real number
        return False


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
    """Returns ``value`` if it is a string, else raises a TypeError naming ``what``."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {value!r}")
    return value


def check_callable(fn: Any, what: str) -> None:
    """Raises a TypeError naming ``what`` unless ``fn`` is callable."""
    if not callable(fn):
        raise TypeError(f"{what} must be callable, got {fn!r}")


# ---------------------------------------------------------------------------
# Value checks (raise ValueError naming the owner, e.g. "demon 'x'").


def check_unit_interval(value: float, field: str, owner: str) -> None:
    """Raises a ValueError naming ``field``, ``owner`` and the value unless ``value`` in [0, 1] (NaN fails)."""
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"{field} for {owner} must be in [0, 1], got {value!r}")


def check_finite(value: float, field: str, owner: str) -> None:
    """Raises a ValueError naming ``field``, ``owner`` and the value unless ``value`` finite."""
    if not math.isfinite(value):
        raise ValueError(f"{field} for {owner} must be finite, got {value!r}")


def check_non_negative_int(value: int, field: str, owner: str) -> None:
    """Raises a ValueError naming ``field``, ``owner`` and the value unless ``value >= 0``."""
    if value < 0:
        raise ValueError(f"{field} for {owner} must be >= 0, got {value!r}")


def check_non_empty(value: str, field: str, owner: str) -> None:
    """Raises a ValueError naming ``field``, ``owner`` and the value unless a non-empty string."""
    if not value:
        raise ValueError(f"{field} for {owner} must be a non-empty string, got {value!r}")
