"""Plain-data (dict / JSON / TOML) forms of demons.

A demon set is ``{"demons": [table, ...]}`` where each table is::

    {"name": "pole_angle@10",
     "cumulant": {"kind": "observation", "index": 2},
     "discount": {"kind": "timescale", "steps": 10},
     "lamda": 0.0,
     "z": 0.0,
     "target_policy": {"kind": "fixed", "probabilities": [0.0, 1.0]}}  # optional

In TOML this is an array of tables::

    [[demons]]
    name = "pole_angle@10"
    cumulant = { kind = "observation", index = 2 }
    discount = { kind = "timescale", steps = 10 }
    lamda = 0.0
    z = 0.0

Standard sets have a compact form that expands when loading, in document
order: ``{"nexting": {"observation_dim": 4, "timescales": [1, 10]}}`` and
``{"reward_demons": {"timescales": [1, 10]}}`` (each may also be a list of
such tables, i.e. ``[[nexting]]`` in TOML).

Each kind owns its table (``to_dict`` / ``from_dict``, see :mod:`demons.kinds`) and is found
by its ``kind`` key among the registered kinds of its family. ``function`` kinds hold Python
callables and cannot be serialized.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

from demons.cumulants import Cumulant
from demons.demon import Demon, nexting, reward_demons
from demons.discounts import Discount
from demons.kinds import Kind, label
from demons.policies import Policy

__all__ = [
    "spec_to_dict",
    "spec_from_dict",
    "demon_to_dict",
    "demon_from_dict",
    "demons_to_dict",
    "demons_from_dict",
    "dumps_toml",
]

K = TypeVar("K", bound=Kind)

_DEMON_REQUIRED = ("name", "cumulant", "discount")
_DEMON_OPTIONAL = ("lamda", "target_policy", "z")


def spec_to_dict(spec: Kind) -> dict[str, Any]:
    """Plain-data form ``{"kind": ..., **fields}`` of a cumulant, discount or policy spec.

    Raises:
      ValueError: for kinds that hold Python callables (``function`` kinds).
    """
    return spec.to_dict()


def demon_to_dict(demon: Demon) -> dict[str, Any]:
    """Plain-data (JSON/TOML-compatible) table for one demon.

    Raises:
      ValueError: naming the demon if any of its specs is a ``function`` kind.
    """
    out: dict[str, Any] = {"name": demon.name}
    for spec in demon.specs:
        if not spec.plain_data:
            raise ValueError(
                f"demon {demon.name!r} cannot be serialized: its {spec.family} is a Python function "
                f"({label(spec)!r}); only kinds without callables have a plain-data form"
            )
        out[spec.family] = spec.to_dict()
    out["lamda"] = demon.lamda
    out["z"] = demon.z
    # Keep the key order stable and readable: name, cumulant, discount, lamda, z, target_policy.
    if "target_policy" in out:
        out["target_policy"] = out.pop("target_policy")
    return out


def demons_to_dict(demons: Iterable[Demon]) -> dict[str, Any]:
    """``{"demons": [demon_to_dict(d) for d in demons]}``."""
    return {"demons": [demon_to_dict(d) for d in demons]}


def spec_from_dict(family: type[K], data: Any, owner: str) -> K:
    """A spec of ``family`` (:class:`~demons.Cumulant`, ...) from its table, by its ``kind`` key.

    Args:
      family: the family base class; its registered kinds are looked up.
      data: the table, e.g. ``{"kind": "observation", "index": 2}``.
      owner: who the spec belongs to, for messages (``"demon 'x'"``).

    Raises:
      ValueError: not a table, no or unknown ``kind``, a kind without a plain-data form, or
        the kind's own ``from_dict`` errors; each names ``owner``.
    """
    what = family.family
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} for {owner} must be a table with a 'kind' key, got {data!r}")
    if "kind" not in data:
        raise ValueError(f"{what} for {owner} is missing key 'kind' (got keys {sorted(data)})")
    kind = data["kind"]
    registered = family.registered()
    cls = registered.get(kind) if isinstance(kind, str) else None
    if cls is not None and not cls.plain_data:
        raise ValueError(
            f"{what} for {owner} has kind {kind!r}, which holds a Python function and "
            f"cannot be loaded from plain data; build it in Python instead"
        )
    if cls is None:
        expected = sorted(k for k, c in registered.items() if c.plain_data)
        raise ValueError(f"unknown {what} kind {kind!r} for {owner}; expected one of {expected}")
    return cast(K, cls.from_dict(data, owner))


def demon_from_dict(data: Mapping[str, Any], position: int | None = None) -> Demon:
    """Builds a :class:`Demon` from its plain-data table.

    Args:
      data: table with keys ``name``, ``cumulant``, ``discount`` and optional
        ``lamda`` (default 0), ``z`` (default 0), ``target_policy`` (default: on-policy).
      position: index in the enclosing list, used in error messages.

    Raises:
      ValueError: missing/unknown keys, unknown kinds or invalid values; the
        message names the demon (and its position when given).
    """
    where = f"demons[{position}]" if position is not None else "demon table"
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a table, got {data!r}")
    name = data.get("name")
    prefix = f"{where} ({name!r})" if isinstance(name, str) else where
    try:
        for key in data:
            if key not in (*_DEMON_REQUIRED, *_DEMON_OPTIONAL):
                raise ValueError(
                    f"unexpected key {key!r}; expected keys {sorted((*_DEMON_REQUIRED, *_DEMON_OPTIONAL))}"
                )
        for key in _DEMON_REQUIRED:
            if key not in data:
                raise ValueError(f"missing key {key!r} (got keys {sorted(data)})")
        if not isinstance(name, str) or not name:
            raise ValueError(f"'name' must be a non-empty string, got {name!r}")
        owner = f"demon {name!r}"
        cumulant = spec_from_dict(Cumulant, data["cumulant"], owner)
        discount = spec_from_dict(Discount, data["discount"], owner)
        policy = None
        if data.get("target_policy") is not None:
            policy = spec_from_dict(Policy, data["target_policy"], owner)
        return Demon(
            name,
            cumulant,
            discount,
            lamda=data.get("lamda", 0.0),
            target_policy=policy,
            z=data.get("z", 0.0),
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"{prefix}: {e}") from e


def _expand_standard(
    key: str,
    value: Any,
    builder: Callable[..., list[Demon]],
    required: Sequence[str],
    optional: Sequence[str],
) -> list[Demon]:
    entries = value if isinstance(value, list) else [value]
    out: list[Demon] = []
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]" if isinstance(value, list) else key
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a table, got {entry!r}")
        for k in entry:
            if k not in (*required, *optional):
                raise ValueError(f"unexpected key {k!r} in {where}; expected keys {sorted((*required, *optional))}")
        for k in required:
            if k not in entry:
                raise ValueError(f"{where} is missing key {k!r}")
        try:
            out.extend(builder(**entry))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from e
    return out


def demons_from_dict(data: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Demon]:
    """Demons from plain data: ``{"demons": [...], "nexting": {...}, "reward_demons": {...}}``.

    Sections are expanded in the mapping's order (document order for TOML).
    A bare list is read as the ``demons`` list.

    Raises:
      ValueError: unknown top-level keys, or any error in a demon table
        (naming its position and name) or a compact section.
    """
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        data = {"demons": list(data)}
    if not isinstance(data, Mapping):
        raise ValueError(f"demon set data must be a table (dict), got {data!r}")
    out: list[Demon] = []
    for key, value in data.items():
        if key == "demons":
            if not isinstance(value, list):
                raise ValueError(f"'demons' must be a list of tables, got {value!r}")
            out.extend(demon_from_dict(entry, i) for i, entry in enumerate(value))
        elif key == "nexting":
            out.extend(_expand_standard(key, value, nexting, ("observation_dim",), ("timescales", "lamda", "names")))
        elif key == "reward_demons":
            out.extend(_expand_standard(key, value, reward_demons, (), ("timescales", "lamda")))
        else:
            raise ValueError(
                f"unknown top-level key {key!r} in demon set data; expected 'demons', 'nexting' or 'reward_demons'"
            )
    return out


# ---------------------------------------------------------------------------
# Minimal TOML emitter for the restricted structure produced above: top-level
# arrays of tables / tables whose values are strings, numbers, bools, arrays of
# scalars and inline tables of those.

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    if not isinstance(key, str):
        raise ValueError(f"TOML keys must be strings, got {key!r}")
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_string(s: str) -> str:
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise ValueError(f"cannot write {type(value).__name__} value {value!r} as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def dumps_toml(data: Mapping[str, Any], header: str | None = None) -> str:
    """Writes ``data`` as TOML (top-level tables/arrays of tables; nested tables inline)."""
    lines: list[str] = []
    if header:
        lines.extend(f"# {line}" if line else "#" for line in header.splitlines())
        lines.append("")
    sections: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, Mapping) or _is_table_array(value):
            sections.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in sections:
        tables = value if isinstance(value, list) else [value]
        brackets = ("[[", "]]") if isinstance(value, list) else ("[", "]")
        for table in tables:
            if lines and lines[-1] != "":
                lines.append("")
            lines.append(f"{brackets[0]}{_toml_key(key)}{brackets[1]}")
            for k, v in table.items():
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"
