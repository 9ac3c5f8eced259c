"""``horde demons``: the demons a configuration declares, one row each."""

from __future__ import annotations

import dataclasses
from typing import Any

from horde.cli.config import build_demons, load_config

__all__ = ["demons_command"]


def _describe(spec: Any) -> str:
    """``kind(field=value, ...)`` for a cumulant, discount or policy spec."""
    if not dataclasses.is_dataclass(spec):
        return repr(spec)
    fields = ", ".join(
        f"{f.name}={getattr(spec, f.name)}" for f in dataclasses.fields(spec) if f.name not in ("fn", "kind")
    )
    return f"{getattr(spec, 'kind', type(spec).__name__)}({fields})"


def demons_command(args: Any) -> int:
    """Prints the demons of ``args.config`` as a table; returns the exit status."""
    config = load_config(args.config, require_env=False)  # the demons need no environment
    demon_set = build_demons(config)
    rows = [("name", "cumulant", "discount", "gamma", "lambda", "target policy")]
    for d in demon_set:
        gamma = d.discount.constant_gamma
        rows.append(
            (
                d.name,
                _describe(d.cumulant),
                _describe(d.discount),
                "state-dependent" if gamma is None else f"{gamma:.4g}",
                f"{d.lamda:g}",
                _describe(d.target_policy) if d.target_policy is not None else "on-policy",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    print(f"\n{len(demon_set)} demon{'' if len(demon_set) == 1 else 's'}")
    return 0
