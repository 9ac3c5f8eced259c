r"""The :class:`Demon` question and standard sets of demons.

A demon is a general value function question: "what is the expected
discounted sum of this cumulant, under this discount, following this policy?"

.. math::
    v_i(s) = \mathbb{E}_{\pi_i}\Big[\sum_{k=0}^{\infty}
        \Big(\prod_{j=1}^{k} \gamma_{i,t+j}\Big) c_{i,t+k+1} \;\Big|\; S_t = s\Big],
    \qquad G_{i,t} = c_{i,t+1} + \gamma_{i,t+1} G_{i,t+1}.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

from demons import checks
from demons import cumulants as _cumulants
from demons import discounts as _discounts
from demons.cumulants import Cumulant
from demons.discounts import Discount
from demons.policies import Policy

__all__ = ["Demon", "DemonInfo", "nexting", "reward_demons", "timescale_label"]


class DemonInfo(NamedTuple):
    """What a report needs to know about a demon, as plain data (JSON-compatible).

    Recorded with every run (``RunResult.demons``) so that evaluation and plots never parse a
    demon's name or its config.

    Attributes:
      name: the demon's name.
      cumulant: the cumulant spec's description, e.g. ``"observation(2)"``, ``"reward()"``,
        ``"function(speed)"``; demons with equal descriptions have the same cumulant.
      cumulant_kind: the cumulant's kind (``"observation"``, ``"reward"``, ...).
      discount_kind: the discount's kind (``"constant"``, ``"timescale"``, ``"until"``,
        ``"function"``).
      timescale: ``1 / (1 - γ)`` in steps for a constant ``γ < 1`` (exactly the ``steps`` of
        a ``timescale`` discount), else None.
      lamda: the trace-decay parameter λ.
      z: the terminal outcome.
      off_policy: True when the demon has its own target policy.
    """

    name: str
    cumulant: str
    cumulant_kind: str
    discount_kind: str
    timescale: float | None
    lamda: float
    z: float
    off_policy: bool


@dataclasses.dataclass(frozen=True)
class Demon:
    r"""One GVF question (immutable, hashable, validated at construction).

    Attributes:
      name: unique, non-empty identifier, e.g. ``"pole_angle@10"``.
      cumulant: a spec from :mod:`demons.cumulants`, :math:`c_{t+1}`.
      discount: a spec from :mod:`demons.discounts`, :math:`\gamma_{t+1}` on :math:`S_{t+1}`.
      lamda: eligibility-trace parameter :math:`\lambda \in [0, 1]` for the learner.
      target_policy: a spec from :mod:`demons.policies`, or None for an
        on-policy demon (its target policy is the behaviour policy).
      z: terminal outcome. On a terminated transition the learner's target is
        :math:`c_{t+1} + z` (instead of :math:`c_{t+1} + \gamma_{t+1} v(S_{t+1})`).

    Raises:
      TypeError: a field has the wrong type (e.g. a bare callable as cumulant).
      ValueError: a value is out of range; the message names the demon, e.g.
        ``gamma for demon 'pole_angle@0.9' must be in [0, 1], got 1.3``.
    """

    name: str
    cumulant: Cumulant
    discount: Discount
    lamda: float = 0.0
    target_policy: Policy | None = None
    z: float = 0.0

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise TypeError(f"demon name must be a string, got {self.name!r}")
        if not self.name:
            raise ValueError("demon name must be a non-empty string, got ''")
        owner = f"demon {self.name!r}"
        if not isinstance(self.cumulant, Cumulant):
            raise TypeError(
                f"cumulant for {owner} must be a spec from demons.cumulants "
                f"(e.g. cumulants.observation(0) or cumulants.function(fn, name)), "
                f"got {self.cumulant!r}"
            )
        if not isinstance(self.discount, Discount):
            raise TypeError(
                f"discount for {owner} must be a spec from demons.discounts "
                f"(e.g. discounts.timescale(10) or discounts.constant(0.9)), "
                f"got {self.discount!r}"
            )
        if self.target_policy is not None and not isinstance(self.target_policy, Policy):
            raise TypeError(
                f"target_policy for {owner} must be None or a spec from demons.policies "
                f"(e.g. policies.fixed([0, 1])), got {self.target_policy!r}"
            )
        lamda = checks.as_float(self.lamda, f"lamda for {owner}")
        checks.check_unit_interval(lamda, "lamda", owner)
        object.__setattr__(self, "lamda", lamda)
        z = checks.as_float(self.z, f"z for {owner}")
        checks.check_finite(z, "z (terminal outcome)", owner)
        object.__setattr__(self, "z", z)
        self.cumulant.check(owner)
        self.discount.check(owner)
        if self.target_policy is not None:
            self.target_policy.check(owner)

    @property
    def is_off_policy(self) -> bool:
        """True when the demon has its own target policy."""
        return self.target_policy is not None

    @property
    def constant_gamma(self) -> float | None:
        """The discount's constant value, or None when it is state-dependent."""
        return self.discount.constant_gamma

    @property
    def info(self) -> DemonInfo:
        """This demon's :class:`DemonInfo` (name, kinds, timescale, λ, z, off-policy)."""
        timescale = self.discount.timescale
        return DemonInfo(
            name=self.name,
            cumulant=self.cumulant.describe(),
            cumulant_kind=self.cumulant.kind,
            discount_kind=self.discount.kind,
            timescale=None if timescale is None else float(timescale),
            lamda=float(self.lamda),
            z=float(self.z),
            off_policy=self.is_off_policy,
        )

    @property
    def specs(self) -> tuple[Cumulant, Discount] | tuple[Cumulant, Discount, Policy]:
        """The cumulant, the discount and (off-policy) the target policy, in that order."""
        if self.target_policy is None:
            return (self.cumulant, self.discount)
        return (self.cumulant, self.discount, self.target_policy)

    def observation_indices(self) -> tuple[int, ...]:
        """Observation components read by the cumulant, the discount and the target policy."""
        return tuple(i for spec in self.specs for i in spec.observation_indices())


def timescale_label(steps: float) -> str:
    """Formats a timescale for demon names: ``10 -> "10"``, ``2.5 -> "2.5"``."""
    steps = float(steps)
    return str(int(steps)) if steps.is_integer() else repr(steps)


def _check_timescales(timescales: Sequence[float], where: str) -> tuple[float, ...]:
    if isinstance(timescales, (str, bytes)) or not hasattr(timescales, "__iter__"):
        raise TypeError(f"timescales for {where} must be a sequence of numbers, got {timescales!r}")
    ts = tuple(checks.as_number(t, f"timescales[{i}] for {where}") for i, t in enumerate(timescales))
    if not ts:
        raise ValueError(f"timescales for {where} must not be empty, got []")
    for t in ts:
        if not (math.isfinite(t) and t >= 1):
            raise ValueError(f"timescales for {where} must be finite numbers >= 1 (steps), got {list(ts)}")
    labels = [timescale_label(t) for t in ts]
    if len(set(labels)) != len(labels):
        raise ValueError(f"timescales for {where} must be distinct, got {list(ts)}")
    return ts


def nexting(
    observation_dim: int,
    timescales: Sequence[float] = (1, 10, 100),
    lamda: float = 0.0,
    names: Sequence[str] | None = None,
) -> list[Demon]:
    r"""Nexting demons: every observation component at several timescales.

    For component :math:`i` and timescale :math:`T` (in steps) the demon has
    cumulant :math:`c_{t+1} = S_{t+1}[i]` and discount
    :math:`\gamma = 1 - 1/T` (so :math:`T = 1` predicts the next value,
    :math:`\gamma = 0`). Order is component-major:
    ``obs[0]@1, obs[0]@10, ..., obs[1]@1, ...``.

    Args:
      observation_dim: number of observation components (>= 1).
      timescales: distinct timescales in steps (each >= 1).
      lamda: trace parameter for every demon.
      names: optional label per component; demon names become
        ``f"{names[i]}@{T}"`` instead of ``f"obs[{i}]@{T}"``.

    Returns:
      ``observation_dim * len(timescales)`` demons.
    """
    observation_dim = checks.as_int(observation_dim, "nexting: observation_dim")
    if observation_dim < 1:
        raise ValueError(f"nexting: observation_dim must be >= 1, got {observation_dim}")
    ts = _check_timescales(timescales, "nexting")
    if names is None:
        labels = [f"obs[{i}]" for i in range(observation_dim)]
    else:
        if isinstance(names, str) or not hasattr(names, "__iter__"):
            raise TypeError(f"nexting: names must be a sequence of strings, got {names!r}")
        labels = list(names)
        if len(labels) != observation_dim:
            raise ValueError(
                f"nexting: names must have one entry per observation component "
                f"(observation_dim={observation_dim}), got {len(labels)}: {labels}"
            )
        for i, label in enumerate(labels):
            if not isinstance(label, str) or not label:
                raise ValueError(f"nexting: names[{i}] must be a non-empty string, got {label!r}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"nexting: names must be distinct, got {labels}")
    return [
        Demon(
            f"{labels[i]}@{timescale_label(t)}",
            _cumulants.observation(i),
            _discounts.timescale(t),
            lamda=lamda,
        )
        for i in range(observation_dim)
        for t in ts
    ]


def reward_demons(timescales: Sequence[float] = (1, 10, 100), lamda: float = 0.0) -> list[Demon]:
    r"""Reward demons: :math:`c_{t+1} = R_{t+1}` with :math:`\gamma = 1 - 1/T` per timescale.

    Names are ``f"reward@{T}"``, in the order of ``timescales``.
    """
    ts = _check_timescales(timescales, "reward_demons")
    return [
        Demon(
            f"reward@{timescale_label(t)}",
            _cumulants.reward(),
            _discounts.timescale(t),
            lamda=lamda,
        )
        for t in ts
    ]
