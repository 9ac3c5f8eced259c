"""What a recorded run says each demon is, read from ``RunResult.demons`` and nothing else.

Reports never parse a demon's name or the run's config: a runner records one
``demons.DemonInfo`` per demon and these functions read it. A result built by hand without
``demons`` is allowed; its demons then have no known timescale or cumulant and a terminal
outcome of 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["demon_infos", "terminal_outcomes", "timescales", "cumulants_of", "off_policy_mask"]


def demon_infos(result: Any) -> tuple | None:
    """The ``DemonInfo`` of every demon of ``result`` in head order, or None when unrecorded.

    Args:
        result: a ``horde.RunResult``.

    Returns:
        ``result.demons`` (a tuple of ``n_demons`` ``demons.DemonInfo``), or None when the
        result carries none (e.g. built by hand).

    Raises:
        ValueError: ``result.demons`` is neither empty nor one entry per demon, or an entry's
            name differs from ``result.demon_names`` at the same head.
    """
    infos = tuple(getattr(result, "demons", ()) or ())
    if not infos:
        return None
    names = tuple(result.demon_names)
    if len(infos) != len(names):
        raise ValueError(f"result.demons must hold one DemonInfo per demon ({len(names)}) or none, got {len(infos)}")
    for i, (info, name) in enumerate(zip(infos, names)):
        if info.name != name:
            raise ValueError(f"result.demons[{i}] describes demon {info.name!r}, expected {name!r} (head order)")
    return infos


def _chosen(result: Any, heads: Sequence[int] | None) -> list[int]:
    return list(range(len(result.demon_names))) if heads is None else [int(i) for i in heads]


def terminal_outcomes(result: Any, heads: Sequence[int] | None = None) -> np.ndarray:
    """Terminal outcomes ``z_i`` of the chosen demons (0 where the result records none).

    Args:
        result: a ``horde.RunResult``.
        heads: head indices; default: every demon.

    Returns:
        float64 array of shape ``(len(heads),)``.
    """
    infos, idx = demon_infos(result), _chosen(result, heads)
    if infos is None:
        return np.zeros(len(idx))
    return np.asarray([float(infos[i].z) for i in idx], np.float64)


def timescales(result: Any, heads: Sequence[int] | None = None) -> list[float | None]:
    """Timescales in steps (``1 / (1 - γ)`` for a constant ``γ < 1``) of the chosen demons;
    None where a demon has none (a state-dependent discount) or the result records none."""
    infos, idx = demon_infos(result), _chosen(result, heads)
    if infos is None:
        return [None] * len(idx)
    return [None if infos[i].timescale is None else float(infos[i].timescale) for i in idx]


def cumulants_of(result: Any, heads: Sequence[int] | None = None) -> list[str | None]:
    """Cumulant descriptions of the chosen demons (equal strings: the same cumulant); None
    where the result records none."""
    infos, idx = demon_infos(result), _chosen(result, heads)
    if infos is None:
        return [None] * len(idx)
    return [infos[i].cumulant for i in idx]


def off_policy_mask(result: Any) -> np.ndarray:
    """``(n_demons,)`` bool, True for a demon with its own target policy (whose ideal return
    is not the observed one); all False where the result records none."""
    infos = demon_infos(result)
    if infos is None:
        return np.zeros(len(result.demon_names), bool)
    return np.asarray([bool(d.off_policy) for d in infos], bool)
