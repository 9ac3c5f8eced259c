"""Errors raised inside a user's cumulant, discount or policy code, told in the user's terms.

A ``function`` kind (``cumulants.function``, ``discounts.function``, ``policies.function``) or
a kind defined outside this package runs the user's code while JAX traces the demon set. An
error there would otherwise surface as a JAX traceback that names neither the demon nor what
the code was called with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

__all__ = ["SIGNATURES", "is_user_kind", "explain"]

#: How a ``function`` kind of each family calls the user's function, and what it must return.
SIGNATURES = {
    "cumulant": "fn(observation, action, reward, next_observation) -> scalar",
    "discount": "fn(next_observation) -> scalar in [0, 1]",
    "target_policy": "fn(observation) -> (n_actions,) action probabilities",
}


def is_user_kind(cls: Any) -> bool:
    """Whether ``cls``'s evaluation runs user code: a kind holding a callable (``plain_data``
    False) or one defined outside the ``demons`` package."""
    return not getattr(cls, "plain_data", True) or not cls.__module__.startswith("demons.")


def explain(cls: Any, names: Sequence[str], error: Exception, functions: Sequence[str] = ()) -> Exception:
    """An exception naming the demons whose ``cls`` spec raised ``error`` while traced, the
    signature their function is called with, and for a Python ``if`` on a traced value the
    traceable alternative.

    Args:
        cls: the kind class (its ``family`` and ``kind``).
        names: the names of the demons evaluated by the failing call.
        error: what the user's code raised.
        functions: the labels of the failing specs (a ``function`` kind's ``name``).

    Returns:
        A ``TypeError`` when ``error`` is one (``jax.errors.TracerBoolConversionError`` is),
        else a ``ValueError``, to be raised ``from error``.
    """
    family = getattr(cls, "family", "spec")
    shown = ", ".join(repr(n) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    owner = f"demon{'s' if len(names) > 1 else ''} {shown}"
    what = family.replace("_", " ")
    kind = f"{cls.kind} {', '.join(map(repr, dict.fromkeys(functions)))}" if functions else f"kind {cls.kind!r}"
    told = str(error).split("\n")[0].rstrip(". ")
    message = f"the {what} of {owner} ({kind}) failed while JAX traced it: {type(error).__name__}: {told}"
    if not getattr(cls, "plain_data", True) and family in SIGNATURES:
        message += f". A {cls.kind} {what} is called as {SIGNATURES[family]}, with JAX arrays"
    if isinstance(error, jax.errors.TracerBoolConversionError):
        message += (
            ". A Python `if` (or `and`/`or`/`not`, `bool(...)`) cannot branch on a traced value: "
            "compute both branches and choose with jnp.where(condition, if_true, if_false)"
        )
    return TypeError(message) if isinstance(error, TypeError) else ValueError(message)
