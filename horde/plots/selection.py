"""Checking a figure's arguments: the result, which demons (by name or head index), the
smoothing window and the number of curves; and which demons are worth showing by default."""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from horde.evaluation import cumulants_of, flat_returns, off_policy_mask, run_ideal_returns, timescales

__all__ = ["choice", "check_result", "select_demons", "check_smoothing", "check_max_lines", "informative_demons"]


def choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """``value`` when it is one of ``choices``; else a ``ValueError`` listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
    return value


def check_result(result: Any) -> None:
    """Raises ``TypeError`` unless ``result`` looks like a ``horde.RunResult``, and
    ``ValueError`` when it recorded nothing."""
    for attr in ("demon_names", "steps", "predictions", "td_errors"):
        if not hasattr(result, attr):
            raise TypeError(f"result must be a horde.RunResult, got {type(result).__name__}")
    if np.asarray(result.steps).size == 0:
        raise ValueError("the run recorded nothing (no steps): there is nothing to plot")


def select_demons(result: Any, demons: Any, *, required: bool = False) -> list[int]:
    """Head indices of ``demons`` (names or indices; a single one is allowed), in the order
    given, without repeats; every demon when ``demons`` is None and not ``required``."""
    names = tuple(result.demon_names)
    n = len(names)
    if demons is None:
        if required:
            raise ValueError(f"demons must be given (names or indices), e.g. demons={list(names[:2])!r}")
        return list(range(n))
    if isinstance(demons, (str, int, np.integer)) and not isinstance(demons, bool):
        demons = [demons]
    try:
        items = list(demons)
    except TypeError:
        raise TypeError(f"demons must be names or indices, got {demons!r}") from None
    if not items:
        raise ValueError("demons must not be empty")
    lookup = {name: i for i, name in enumerate(names)}
    out: list[int] = []
    for item in items:
        if isinstance(item, str):
            if item not in lookup:
                close = difflib.get_close_matches(item, names, n=3)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                shown = ", ".join(map(repr, names[:6])) + (", ..." if n > 6 else "")
                raise ValueError(f"unknown demon {item!r}{hint} This run has {n} demon{'s' if n != 1 else ''}: {shown}")
            i = lookup[item]
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            i = int(item)
            if not -n <= i < n:
                raise ValueError(f"demon index {i} is out of range: this run has {n} demon{'s' if n != 1 else ''}")
            i %= n
        else:
            raise TypeError(f"demons must be names (str) or indices (int), got {item!r}")
        if i not in out:
            out.append(i)
    return out


def check_smoothing(result: Any, smoothing: Any) -> int:
    """The smoothing window in steps; default about 1% of the run (at least 1)."""
    if smoothing is None:
        steps = np.asarray(result.steps)
        span = int(steps[-1] - steps[0]) + int(result.record_every)
        return max(1, int(round(0.01 * span)))
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float, np.integer, np.floating)):
        raise ValueError(f"smoothing must be a window in steps (a number >= 1), got {smoothing!r}")
    if not (math.isfinite(smoothing) and smoothing >= 1):
        raise ValueError(f"smoothing must be a window in steps (a number >= 1), got {smoothing!r}")
    return int(round(smoothing))


def check_max_lines(max_lines: Any) -> int:
    """``max_lines`` as an int, or a ``ValueError`` unless it is a positive integer."""
    if isinstance(max_lines, bool) or not isinstance(max_lines, (int, np.integer)) or max_lines < 1:
        raise ValueError(f"max_lines must be a positive integer, got {max_lines!r}")
    return int(max_lines)


def informative_demons(result: Any, n: int = 4) -> list[int]:
    """Head indices of ``n`` demons worth comparing with their returns: the default choice of
    the prediction-vs-return figure.

    Only on-policy demons with complete ideal returns whose return varies (not
    ``horde.evaluation.flat_returns``) are candidates. Demons with a state-dependent discount
    (no timescale: the questions a user declared, such as ``steps_to_fall``) come first, at
    most half of ``n``; the rest spread over the recorded timescales (evenly over the distinct
    timescales above 1 step, the longest included), each from a cumulant used least so far.
    Fewer candidates than ``n``: all of them; none: the first ``n`` demons.

    Args:
        result: a ``horde.RunResult`` recorded with ``record_every=1``.
        n: how many demons, at least 1.

    Returns:
        Up to ``n`` head indices: state-dependent discounts first, then by ascending timescale.

    Raises:
        ValueError: ``n`` is not a positive integer, or the run was not recorded at every step.
    """
    n = check_max_lines(n)
    ideal = run_ideal_returns(result)
    usable = ideal.complete.any(axis=(0, 1)) & ~off_policy_mask(result) & ~flat_returns(result, ideal=ideal)
    candidates = [int(i) for i in np.flatnonzero(usable)]
    if not candidates:
        return list(range(min(n, result.n_demons)))
    scales = timescales(result, candidates)
    kinds = cumulants_of(result, candidates)
    declared = [i for i, t in zip(candidates, scales) if t is None][: max(1, n // 2)]
    by_scale: dict[float, list[int]] = {}
    for i, t in zip(candidates, scales):
        if t is not None:
            by_scale.setdefault(t, []).append(i)
    distinct = sorted(by_scale)
    if len(distinct) > 1 and distinct[0] <= 1:
        distinct = distinct[1:]  # a one-step question (γ = 0) only echoes the next observation
    wanted = n - len(declared)
    picks = sorted({int(round(p)) for p in np.linspace(0, len(distinct) - 1, wanted)}) if distinct and wanted else []
    used: dict[Any, int] = {}
    kind_of = dict(zip(candidates, kinds))
    scale_of = dict(zip(candidates, scales))
    spread: list[int] = []
    for p in picks:
        pick = min(by_scale[distinct[p]], key=lambda i: used.get(kind_of[i], 0))
        used[kind_of[pick]] = used.get(kind_of[pick], 0) + 1
        spread.append(pick)
    chosen = declared + spread
    # Filling up: longer questions before one-step ones, as above.
    rest = sorted((i for i in candidates if i not in chosen), key=lambda i: (scale_of[i] or 0.0) <= 1)
    chosen += rest[: n - len(chosen)]
    order = {i: (t is not None, t or 0.0) for i, t in zip(candidates, scales)}
    return sorted(chosen[:n], key=lambda i: order[i])
