"""Grouping many demons into a few curves: by timescale, by cumulant, or all together.

What a demon is comes from ``RunResult.demons`` (through ``horde.evaluation``), never from
its name: demons group by their recorded timescale, or by their cumulant description (equal
descriptions, same cumulant). A result without ``demons`` has no known timescale or cumulant:
its demons fall in one "no timescale" or "unknown cumulant" group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from demons import timescale_label
from horde.evaluation import cumulants_of, timescales
from horde.plots.selection import choice

__all__ = ["GROUP_BY", "Groups", "groups", "auto_groups"]

#: ``group_by=`` choices (besides ``None``).
GROUP_BY = ("timescale", "cumulant", "all")

#: ``[(label, positions in the chosen demons)]``, in drawing order.
Groups = list[tuple[str, list[int]]]


def _count(n: int) -> str:
    return f"{n} demon" if n == 1 else f"{n} demons"


def _by_timescale(result: Any, idx: Sequence[int]) -> Groups:
    keyed: dict[float | None, list[int]] = {}
    for p, t in enumerate(timescales(result, idx)):
        keyed.setdefault(t, []).append(p)
    keys = sorted(k for k in keyed if k is not None) + ([None] if None in keyed else [])
    out = []
    for k in keys:
        if k is None:
            ts = "no timescale"
        else:
            label = timescale_label(round(k, 6))
            ts = f"timescale {label} {'step' if label == '1' else 'steps'}"
        out.append((f"{ts} ({_count(len(keyed[k]))})", keyed[k]))
    return out


def _by_cumulant(result: Any, idx: Sequence[int]) -> Groups:
    keyed: dict[str | None, list[int]] = {}
    for p, c in enumerate(cumulants_of(result, idx)):
        keyed.setdefault(c, []).append(p)
    # The label only: the members' shared name stem reads better than the cumulant's
    # description ("obs[2]" rather than "observation(2)"); the grouping never uses names.
    labels: dict[str | None, str] = {}
    for c, members in keyed.items():
        stems = {result.demon_names[idx[p]].rpartition("@")[0] or result.demon_names[idx[p]] for p in members}
        labels[c] = "unknown cumulant" if c is None else stems.pop() if len(stems) == 1 else c
    taken = list(labels.values())
    for c in keyed:
        if c is not None and taken.count(labels[c]) > 1:
            labels[c] = c  # two cumulants behind one stem: the descriptions tell them apart
    return [(f"{labels[c]} ({_count(len(v))})", v) for c, v in keyed.items()]


def groups(result: Any, idx: Sequence[int], group_by: str) -> Groups:
    """The chosen demons ``idx`` (head indices) in groups, ``[(label, positions in idx)]``.

    Args:
        result: a ``horde.RunResult``.
        idx: head indices of the chosen demons.
        group_by: ``"timescale"`` (ascending, "no timescale" last), ``"cumulant"`` (in order
            of first appearance) or ``"all"``.
    """
    group_by = choice(group_by, "group_by", GROUP_BY)
    if group_by == "all":
        return [(f"all demons ({len(idx)})", list(range(len(idx))))]
    if group_by == "timescale":
        return _by_timescale(result, idx)
    return _by_cumulant(result, idx)


def auto_groups(result: Any, idx: Sequence[int], group_by: str | None, max_lines: int) -> Groups | None:
    """The groups to draw, or None for one line per demon.

    With ``group_by=None``: one line per demon while there are at most ``max_lines``; beyond
    that, by timescale or by cumulant, whichever gives more than one and at most
    ``max_lines`` groups (timescale first), else all demons as one group.
    """
    if group_by is not None:
        return groups(result, idx, group_by)
    if len(idx) <= max_lines:
        return None
    candidates = [groups(result, idx, g) for g in ("timescale", "cumulant")]
    for ok in (lambda g: 1 < len(g) <= max_lines, lambda g: len(g) <= max_lines):
        for g in candidates:
            if ok(g):
                return g
    return groups(result, idx, "all")
