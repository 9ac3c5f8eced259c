"""Boundary checks: scalars, shapes, finiteness, flags and keys, checked once where data enters.

The traced math assumes what these establish. Concrete inputs are checked by value; traced
inputs (inside another ``jax.jit``) by shape only. Errors name the argument, the value received
and what was expected. Other rooms use these through ``horde.core``.

Every public argument that is one number, flag, seed or configuration object goes through one
of the converters below, so the same kind of value gets the same check everywhere:

| converter | accepts | refuses |
|---|---|---|
| ``as_float`` | ``int``, ``float``, NumPy / JAX real scalars (0-d arrays) | ``bool``, strings, ``None``, complex, arrays, NaN (unless ``allow_nan``), ±inf (unless ``allow_inf``), values outside the bounds |
| ``as_int`` | ``int``, NumPy / JAX integer scalars | ``bool``, floats (even ``1.0``), strings, values outside the bounds |
| ``as_bool`` | ``bool``, ``numpy.bool_`` | everything else (``"false"``, ``0``, ``1``, ``None``) |
| ``as_seed`` | an integer in ``[0, 2**31)`` | negatives, floats, ``bool`` |
| ``as_instance`` | an instance of the class(es), or with the methods | a class where an instance is expected, ``None`` unless allowed |

A value of the wrong kind raises ``ArgumentTypeError`` (a ``TypeError`` and, for code written
against earlier messages, a ``ValueError``); a value of the right kind out of range raises
``ValueError``. The ``demons`` package, which imports nothing of ``horde``, applies the same
rules in ``demons.checks`` (a test holds the two to the same decisions).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ArgumentTypeError",
    "all_finite",
    "as_action",
    "as_bool",
    "as_float",
    "as_instance",
    "as_int",
    "as_seed",
    "any_inf",
    "as_vector",
    "check_flag",
    "check_keys",
    "check_observation_values",
    "check_stream",
    "check_target_values",
    "check_unit_interval",
    "concrete_values",
    "is_tracer",
]


#: The largest seed plus one: seeds become ``jax.random.key(seed)`` and NumPy generators, and
#: ``seed + i`` of the copies must stay a non-negative int32.
SEED_LIMIT = 2**31


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong kind (a string or a bool where a number is expected, a class
    where an instance is expected). A ``TypeError``; also a ``ValueError``, which the boundary
    raised for some of these before."""


def _scalar_kind(value: Any) -> str | None:
    """``"int"``, ``"float"`` or ``None`` (not a real number; bools are not numbers)."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    if is_tracer(value):
        return None
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    if shape == () and dtype is not None and not isinstance(value, type):
        kind = np.dtype(dtype).kind
        return "int" if kind in "iu" else "float" if kind == "f" else None
    return None


def _bound_text(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"  # 0.0 reads "0", as in "[0, 1]"


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{_bound_text(low)}, {_bound_text(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_bound_text(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_bound_text(high)}"
    return ""


def as_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_nan: bool = False,
    allow_inf: bool = False,
) -> float:
    """One real number, returned as a Python float.

    Args:
        name: the argument's name, for the error message.
        value: an ``int``, ``float`` or NumPy / JAX real scalar; not a ``bool`` or a string.
        low: the lower bound, or ``None`` for none.
        high: the upper bound, or ``None`` for none.
        low_open: exclude the lower bound itself.
        high_open: exclude the upper bound itself.
        allow_nan: accept NaN (bounds do not apply to it).
        allow_inf: accept ±inf (bounds still apply).

    Returns:
        ``float(value)``.

    Raises:
        ArgumentTypeError: ``value`` is not a real number.
        ValueError: ``value`` is NaN, infinite or outside the bounds (unless allowed).
    """
    if _scalar_kind(value) is None:
        raise ArgumentTypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    x = float(value)
    rng = _range_text(low, high, low_open, high_open)
    # Two bounds imply finiteness: "in [0, 1)"; otherwise "a finite number >= 0".
    expected = rng if low is not None and high is not None else f"a finite number{' ' + rng if rng else ''}"
    if math.isnan(x):
        if allow_nan:
            return x
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    if math.isinf(x) and not allow_inf:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    too_low = low is not None and (x <= low if low_open else x < low)
    too_high = high is not None and (x >= high if high_open else x > high)
    if too_low or too_high:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return x


def as_int(name: str, value: Any, *, low: int | None = None, high: int | None = None, expected: str = "") -> int:
    """One integer, returned as a Python int.

    Args:
        name: the argument's name, for the error message.
        value: an ``int`` or NumPy / JAX integer scalar; not a ``bool``, a float (even ``1.0``)
            or a string.
        low: the inclusive lower bound, or ``None`` for none.
        high: the inclusive upper bound, or ``None`` for none.
        expected: what the message says was expected (default ``"an integer >= low"``, ...).

    Returns:
        ``int(value)``.

    Raises:
        ArgumentTypeError: ``value`` is not an integer.
        ValueError: ``value`` is outside the bounds.
    """
    expected = expected or f"an integer {_range_text(low, high, False, False)}".rstrip()
    if _scalar_kind(value) != "int":
        raise ArgumentTypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    n = int(value)
    if (low is not None and n < low) or (high is not None and n > high):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return n


def as_bool(name: str, value: Any) -> bool:
    """One flag, returned as a Python bool.

    Args:
        name: the argument's name, for the error message.
        value: ``True``, ``False`` or a ``numpy.bool_``; a string (``"false"`` would be true),
            a number or ``None`` is refused.

    Raises:
        ArgumentTypeError: ``value`` is not a bool.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ArgumentTypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def as_seed(name: str, value: Any, *, count: int = 1) -> int:
    """A seed: an integer in ``[0, 2**31 - count]``, so that ``count`` seeds from it (``seed +
    i``, one per copy) are all valid.

    Args:
        name: the argument's name, for the error message.
        value: an ``int`` or NumPy / JAX integer scalar.
        count: how many consecutive seeds start at ``value``.

    Returns:
        ``int(value)``.

    Raises:
        ArgumentTypeError: ``value`` is not an integer.
        ValueError: ``value`` is negative or too large.
    """
    if _scalar_kind(value) != "int":
        raise ArgumentTypeError(f"{name} must be a non-negative integer, got {value!r} ({type(value).__name__})")
    seed = int(value)
    if seed < 0 or seed + count > SEED_LIMIT:
        limit = "" if count == 1 else f" (seed + {count} copies must be at most 2**31)"
        raise ValueError(f"{name} must be a non-negative integer below {SEED_LIMIT - count + 1}{limit}, got {value!r}")
    return seed


def as_instance(
    name: str,
    value: Any,
    kinds: type | tuple[type, ...] = (),
    *,
    methods: tuple[str, ...] = (),
    example: str = "",
    allow_none: bool = False,
) -> Any:
    """An object of the expected kind, returned unchanged.

    Accepted when it is an instance of ``kinds`` or, for duck-typed arguments (a user's own
    optimizer or normalizer), when it has every one of ``methods``. A class passed where an
    instance is expected (``optimizer=horde.LMS``) is refused: its methods exist but are unbound.

    Args:
        name: the argument's name, for the error message.
        value: the object.
        kinds: accepted classes.
        methods: method names that also make an object acceptable.
        example: an example of a valid value, for the message (e.g. ``"LMS(0.01)"``).
        allow_none: accept ``None``.

    Raises:
        ArgumentTypeError: ``value`` is a class, or neither of the kinds nor has the methods.
    """
    if value is None and allow_none:
        return None
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    hint = f" (e.g. {example})" if example else ""
    if isinstance(value, type):
        raise ArgumentTypeError(f"{name} must be an instance{hint}, got the class {value.__name__}; call it")
    if (kinds and isinstance(value, kinds)) or (methods and all(callable(getattr(value, m, None)) for m in methods)):
        return value
    wanted = " or ".join(("an " if k.__name__[0] in "AEIOUaeiou" else "a ") + k.__name__ for k in kinds)
    if methods:
        wanted = (wanted + " or " if wanted else "") + "an object with " + ", ".join(methods)
    raise ArgumentTypeError(f"{name} must be {wanted}{hint}, got {value!r} ({type(value).__name__})")


def as_action(name: str, value: Any, n_actions: int | None, start: int = 0) -> Any:
    """A discrete action: an integer in ``[start, start + n_actions)``; tracers pass unchecked.

    A float action (``1.7``, even ``1.0``) is refused rather than truncated, and an index out of
    range rather than clamped (either would give a wrong importance ratio).

    Args:
        name: the argument's name, for the error message.
        value: an ``int``, NumPy / JAX integer scalar or 0-d integer array.
        n_actions: the number of actions, or ``None`` when unknown (only the type is checked).
        start: the first action (Gymnasium's ``Discrete.start``).

    Returns:
        ``int(value)`` for a concrete value, the tracer itself otherwise.

    Raises:
        ArgumentTypeError: ``value`` is not an integer.
        ValueError: ``value`` is outside the action space.
    """
    if is_tracer(value):
        return value
    if type(value) is not int:
        if _scalar_kind(value) != "int":
            raise ArgumentTypeError(
                f"{name} must be an integer (a discrete action index), got {value!r} ({type(value).__name__})"
            )
        value = int(value)
    if n_actions is not None and not start <= value < start + n_actions:
        raise ValueError(f"{name} must be one of the {n_actions} actions {start}..{start + n_actions - 1}, got {value}")
    return value


def check_unit_interval(name: str, value: Any) -> float:
    """A real number in ``[0, 1]``, returned as a float.

    Raises:
        ArgumentTypeError: ``value`` is not a real number.
        ValueError: ``value`` is not in ``[0, 1]`` (names ``name``).
    """
    return as_float(name, value, low=0.0, high=1.0)


def is_tracer(x: Any) -> bool:
    """Whether ``x`` is a JAX tracer (a value inside a traced function), which has no value."""
    return isinstance(x, jax.core.Tracer)


def as_vector(name: str, value: Any, expected: int, what: str) -> Any:
    """Checks that ``value`` is a 1-D vector of length ``expected``; returns a float32 array.

    Concrete inputs become NumPy arrays (cheap to hand to a compiled function); traced inputs
    are only checked for shape.

    Args:
        name: the argument's name, for the error message.
        value: array-like, expected shape ``(expected,)``.
        expected: the required length.
        what: what the length means, for the error message (e.g. ``"feature_dim"``).

    Returns:
        ``value`` as a float32 NumPy array (concrete input) or JAX array (traced or JAX input).

    Raises:
        TypeError: ``value`` is not numeric.
        ValueError: ``value`` does not have shape ``(expected,)``.
    """
    if type(value) is np.ndarray and value.dtype == np.float32 and value.shape == (expected,):
        return value  # the daemon fast path
    if is_tracer(value) or isinstance(value, jax.Array):
        shape = value.shape
        arr = value
    else:
        try:
            arr = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name} must be a numeric array of shape ({expected},), got {value!r}") from e
        shape = arr.shape
    if shape != (expected,):
        raise ValueError(f"{name} must have shape ({expected},) ({what}), got shape {tuple(shape)}")
    if isinstance(arr, jax.Array) and not is_tracer(arr) and arr.dtype != jnp.float32:
        arr = arr.astype(jnp.float32)
    return arr


def concrete_values(x: Any) -> np.ndarray | None:
    """``x`` as a NumPy array, or ``None`` when ``x`` is a tracer (its values are not known)."""
    if type(x) is np.ndarray:
        return x
    if is_tracer(x):
        return None
    return np.asarray(x)


def all_finite(values: np.ndarray) -> bool:
    """``np.isfinite(values).all()``, about 5x quicker for the single-step vectors: a float
    vector's dot product with itself is finite exactly when every entry is finite, unless the
    sum of squares overflows, and then the elementwise test decides."""
    if values.ndim == 1 and values.dtype.kind == "f" and math.isfinite(values.dot(values)):
        return True
    return bool(np.isfinite(values).all())


def any_inf(values: np.ndarray) -> bool:
    """``np.isinf(values).any()`` (NaN entries are not infinite), without ``ndarray.any``'s
    Python-level dispatch."""
    return bool(np.count_nonzero(np.isinf(values)) > 0)


def check_observation_values(name: str, x: Any) -> None:
    """Refuses a concrete observation (any shape) with a NaN or infinite entry; tracers pass.

    Raises:
        ValueError: naming ``name``, the first bad value, its index and the count of bad ones.
    """
    values = concrete_values(x)
    if values is not None and not all_finite(values):
        bad = np.argwhere(~np.isfinite(values))
        first = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"{name} must be finite, got {float(values[first])} at index "
            f"{first if len(first) > 1 else first[0]} ({len(bad)} non-finite entries); "
            "the update was refused and the state is unchanged"
        )


def check_target_values(name: str, y: Any) -> None:
    """Refuses concrete targets with an infinite entry (NaN is allowed: an inactive head).

    Raises:
        ValueError: naming ``name``, the first infinite value and its index.
    """
    values = concrete_values(y)
    if values is not None and any_inf(values):
        bad = np.argwhere(np.isinf(values))
        first = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"{name} must be finite or NaN (NaN marks an inactive head), got {float(values[first])} "
            f"at index {first if len(first) > 1 else first[0]}; the update was refused"
        )


def check_flag(name: str, value: Any) -> Any:
    """A scalar bool flag (``terminated``/``truncated``) checked at the boundary.

    Tracers pass through; a concrete value must be a scalar bool or integer.

    Returns:
        ``np.bool_`` for a concrete value, the tracer itself otherwise.

    Raises:
      ValueError: ``value`` is not a scalar bool (names ``name``).
    """
    if is_tracer(value):
        return value
    arr = np.asarray(value)
    if arr.shape != () or arr.dtype.kind not in "bi":
        raise ValueError(f"{name} must be a scalar bool, got {value!r}")
    return np.bool_(arr)


def check_stream(learner: Any, observations: Any, targets: Any, feature_dim: int | None) -> tuple[jax.Array, jax.Array]:
    """Checks a recorded stream for a learner with ``learner.n_heads`` heads.

    Args:
        learner: anything with an ``n_heads`` attribute (a ``MultiHeadMLPLearner``).
        observations: shape ``(num_steps, feature_dim)``, finite.
        targets: shape ``(num_steps, n_heads)``, finite or NaN (inactive head).
        feature_dim: the required feature size, or ``None`` to accept any.

    Returns:
        ``(observations, targets)`` as float32 JAX arrays.

    Raises:
        ValueError: a shape does not match, or a value is not finite.
    """
    obs_shape = np.shape(observations)
    tgt_shape = np.shape(targets)
    if len(obs_shape) != 2:
        raise ValueError(f"observations must have shape (num_steps, feature_dim), got shape {obs_shape}")
    if feature_dim is not None and obs_shape[1] != feature_dim:
        raise ValueError(
            f"observations must have shape (num_steps, {feature_dim}) to match the state's "
            f"feature_dim, got shape {obs_shape}"
        )
    if tgt_shape != (obs_shape[0], learner.n_heads):
        raise ValueError(
            f"targets must have shape (num_steps={obs_shape[0]}, n_heads={learner.n_heads}), got shape {tgt_shape}"
        )
    check_observation_values("observations", observations)
    check_target_values("targets", targets)
    return jnp.asarray(observations, jnp.float32), jnp.asarray(targets, jnp.float32)


def check_keys(keys: Any) -> jax.Array:
    """One key per seed: typed keys ``(n_seeds,)`` or raw uint32 keys ``(n_seeds, 2)``.

    Returns:
        ``keys`` as a JAX array.

    Raises:
        ArgumentTypeError: ``keys`` is a string, not an array, or an array of floats or bools.
        ValueError: any other shape.
    """
    expected = (
        "keys must be typed keys of shape (n_seeds,) (jax.random.split(jax.random.key(0), n)) "
        "or raw uint32 keys of shape (n_seeds, 2)"
    )
    if isinstance(keys, (str, bytes)) or not hasattr(keys, "dtype") and not isinstance(keys, (list, tuple)):
        raise ArgumentTypeError(f"{expected}, got {keys!r} ({type(keys).__name__})")
    try:
        keys = jnp.asarray(keys)
    except (TypeError, ValueError) as e:
        raise ArgumentTypeError(f"{expected}, got {keys!r}") from e
    typed = jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)
    if not typed and np.dtype(keys.dtype).kind not in "iu":
        raise ArgumentTypeError(f"{expected}, got an array of dtype {keys.dtype} (shape {keys.shape})")
    if not ((typed and keys.ndim == 1) or (not typed and keys.ndim == 2 and keys.shape[1] == 2)):
        raise ValueError(
            "keys must be typed keys of shape (n_seeds,) (jax.random.split(jax.random.key(0), n)) "
            f"or raw keys of shape (n_seeds, 2), got shape {keys.shape} and dtype {keys.dtype}"
        )
    return keys
