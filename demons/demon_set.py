r"""An immutable, validated collection of demons with vectorized evaluation.

:meth:`DemonSet.evaluate` turns one transition
:math:`(S_t, A_t, R_{t+1}, S_{t+1})` into, for every demon :math:`i`,

.. math::
    c_{i,t+1}, \qquad \gamma_{i,t+1} = \gamma_i(S_{t+1}), \qquad
    \rho_{i,t} = \begin{cases}
        \pi_i(A_t \mid S_t) / \mu(A_t \mid S_t) & \text{off-policy} \\
        1 & \text{on-policy.}
    \end{cases}

Demons are grouped **by kind** when the set is built, and each kind's class supplies the
batched form of all its specs (see :mod:`demons.kinds`): all observation cumulants become
one gather with an index vector, all thresholds one vectorized comparison, all constant
discounts one constant array, all fixed target policies one ``(n_actions, n_fixed)`` matrix,
and so on; each distinct ``function`` spec is traced once. The batch results are
concatenated and put back into demon order with a single static permutation. The traced program
therefore has a number of operations that depends on which *kinds* are present,
never on how many demons there are of each kind.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from demons import checks, user_errors
from demons import serialization as _serialization
from demons.demon import Demon
from demons.kinds import Batch, Kind, Transition, gather, label

__all__ = ["Evaluation", "DemonSet", "MIN_BEHAVIOUR_PROB", "RUN_CONFIG_SECTIONS"]

MIN_BEHAVIOUR_PROB = 1e-6
r"""Default floor on :math:`\mu(A_t \mid S_t)` in :math:`\rho = \pi / \max(\mu, \epsilon)`.

The action was taken, so its behaviour probability must be positive; the
floor only prevents ``inf``/``nan`` when a caller passes 0 by mistake, and
bounds :math:`\rho \le 1/\epsilon`.
"""

#: Sections of a ``horde run`` configuration that hold no demons (``DemonSet.load`` skips them).
RUN_CONFIG_SECTIONS = ("env", "run", "policy", "learner", "control", "plugins")


class Evaluation(NamedTuple):
    """Per-demon quantities for one transition (each float32, shape ``(n_demons,)``,
    or ``(T, n_demons)`` from :meth:`DemonSet.evaluate_batch`).

    Attributes:
      cumulants: :math:`c_{i,t+1}`.
      discounts: :math:`\\gamma_{i,t+1}` (before the learner applies termination).
      rhos: importance-sampling ratios :math:`\\rho_{i,t}` (1 for on-policy demons).
    """

    cumulants: jax.Array
    discounts: jax.Array
    rhos: jax.Array


_F32 = jnp.float32


def _checked(cls: type[Kind], batch: Batch, names: Sequence[str], labels: Mapping[int, str]) -> Batch:
    """``batch`` whose output shape and dtype are checked when traced (a kind's contract), and
    whose user code's errors name the demons (``demons.user_errors``)."""
    k = len(batch.positions)
    user = user_errors.is_user_kind(cls)
    where = np.asarray(batch.positions).tolist()
    owners, functions = [names[p] for p in where], [labels[p] for p in where]

    def compute(t: Transition) -> jax.Array:
        try:
            out = batch.compute(t)
        except Exception as e:
            if not user:
                raise
            raise user_errors.explain(cls, owners, e, functions if not cls.plain_data else ()) from e
        if getattr(out, "shape", None) != (k,) or getattr(out, "dtype", None) != np.float32:
            raise ValueError(
                f"{cls.family} kind {cls.kind!r} ({cls.__qualname__}.batched) computed "
                f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')} for {k} demon{'s' if k != 1 else ''}, "
                f"expected float32 ({k},)"
            )
        return out

    return Batch(np.asarray(batch.positions, np.int64), compute)


def _by_kind(specs: Sequence[tuple[int, Kind]], names: Sequence[str]) -> list[Batch]:
    """Groups ``(position, spec)`` pairs by kind and collects each kind's batched form
    (``names``: every demon's name, by position)."""
    groups: dict[type[Kind], tuple[list[int], list[Kind]]] = {}
    for pos, spec in specs:
        where, same = groups.setdefault(type(spec), ([], []))
        where.append(pos)
        same.append(spec)
    batches: list[Batch] = []
    for cls, (where, same) in groups.items():
        positions = np.asarray(where, np.int64)
        labels = {p: label(spec) for p, spec in zip(where, same)}
        made = [_checked(cls, b, names, labels) for b in cls.batched(positions, tuple(same))]
        covered = np.concatenate([b.positions for b in made]) if made else np.zeros((0,), np.int64)
        if not np.array_equal(np.sort(covered), positions):  # positions are increasing
            raise ValueError(
                f"{cls.family} kind {cls.kind!r} ({cls.__qualname__}.batched) returned batches for "
                f"positions {sorted(covered.tolist())}, expected each of {positions.tolist()} exactly once"
            )
        batches += made
    return batches


class _Stage:
    """Computes one output vector (cumulants, discounts or rhos) batch by batch.

    The batches' results are concatenated and put back into demon order with one static
    permutation (none when they already are in order).
    """

    def __init__(self, n: int, batches: Sequence[Batch]):
        self.n = n
        self.batches = tuple(batches)
        order = (
            np.concatenate([b.positions for b in self.batches]).astype(np.int64)
            if self.batches
            else np.zeros((0,), np.int64)
        )
        assert sorted(order.tolist()) == list(range(n)), "internal error: batches must cover demons"
        # result[order[k]] = concatenated[k]  <=>  result = concatenated[argsort(order)]
        perm = np.argsort(order, kind="stable").astype(np.int32)
        self.perm = None if np.array_equal(perm, np.arange(n)) else perm

    def __call__(self, t: Transition) -> jax.Array:
        if self.n == 0:
            return jnp.zeros((0,), _F32)
        parts = [b.compute(t) for b in self.batches]
        out = parts[0] if len(parts) == 1 else jnp.concatenate(parts)
        if self.perm is not None:
            out = gather(out, self.perm)
        return out


def _spec_stage(demons: Sequence[Demon], field: str) -> _Stage:
    names = [d.name for d in demons]
    return _Stage(len(demons), _by_kind([(pos, getattr(d, field)) for pos, d in enumerate(demons)], names))


def _rho_stage(demons: Sequence[Demon]) -> _Stage:
    r""":math:`\rho_i = \pi_i(A_t \mid S_t) / \max(\mu, \epsilon)` off-policy, exactly 1 on-policy."""
    on_policy = np.asarray([pos for pos, d in enumerate(demons) if d.target_policy is None], np.int64)
    off_policy = [(pos, d.target_policy) for pos, d in enumerate(demons) if d.target_policy is not None]
    batches = []
    if len(on_policy):
        batches.append(Batch.constant(on_policy, np.ones(len(on_policy))))
    return _Stage(len(demons), batches + _by_kind(off_policy, [d.name for d in demons]))


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


class DemonSet:
    r"""An immutable, validated, ordered collection of :class:`Demon` s.

    Construction checks that every entry is a Demon, that names are unique and
    that all target policies agree on the number of actions, then compiles an
    evaluation plan grouped by kind (see :meth:`evaluate`).

    A DemonSet is hashable and compares equal to another with the same demons
    in the same order, so it can be a static argument of ``jax.jit``.

    Args:
      demons: an iterable of :class:`Demon`.

    Raises:
      TypeError: an entry is not a Demon.
      ValueError: duplicate names (naming the duplicate) or target policies
        with different numbers of actions (naming both demons).
    """

    __slots__ = (
        "_demons",
        "_by_name",
        "_arrays",
        "_n_actions",
        "_max_obs_index",
        "_cumulant_stage",
        "_discount_stage",
        "_rho_stage",
    )
    # Declared for the type checker: the slots are filled once, through object.__setattr__.
    _demons: tuple[Demon, ...]
    _by_name: dict[str, int]
    _arrays: dict[str, np.ndarray]
    _n_actions: int | None
    _max_obs_index: int
    _cumulant_stage: _Stage
    _discount_stage: _Stage
    _rho_stage: _Stage

    def __init__(self, demons: Iterable[Demon]):
        if isinstance(demons, DemonSet):
            demons = demons.demons
        demons = tuple(demons)
        by_name: dict[str, int] = {}
        for pos, demon in enumerate(demons):
            if not isinstance(demon, Demon):
                raise TypeError(f"DemonSet entries must be Demon objects, got {demon!r} at position {pos}")
            if demon.name in by_name:
                raise ValueError(
                    f"duplicate demon name {demon.name!r} (positions {by_name[demon.name]} and {pos}); "
                    f"demon names must be unique"
                )
            by_name[demon.name] = pos
        n_actions = None
        first = None
        for demon in demons:
            if demon.target_policy is None or demon.target_policy.n_actions is None:
                continue  # a policy on a control demon's values: the environment's actions
            k = demon.target_policy.n_actions
            if n_actions is None:
                n_actions, first = k, demon.name
            elif k != n_actions:
                raise ValueError(
                    f"target policy of demon {demon.name!r} has {k} actions, but demon {first!r} "
                    f"has {n_actions}; all target policies in a DemonSet must share n_actions"
                )
        n = len(demons)
        lamdas = np.asarray([d.lamda for d in demons], np.float32).reshape(n)
        gammas = np.asarray(
            [np.nan if d.constant_gamma is None else d.constant_gamma for d in demons], np.float32
        ).reshape(n)
        arrays = {
            "lamdas": _readonly(lamdas),
            "z": _readonly(np.asarray([d.z for d in demons], np.float32).reshape(n)),
            "is_off_policy": _readonly(np.asarray([d.is_off_policy for d in demons], bool).reshape(n)),
            "constant_gammas": _readonly(gammas),
            "gamma_lamdas": _readonly((gammas * lamdas).astype(np.float32)),
        }
        max_obs = max((max(d.observation_indices(), default=-1) for d in demons), default=-1)
        init = object.__setattr__
        init(self, "_demons", demons)
        init(self, "_by_name", by_name)
        init(self, "_arrays", arrays)
        init(self, "_n_actions", n_actions)
        init(self, "_max_obs_index", max_obs)
        init(self, "_cumulant_stage", _spec_stage(demons, "cumulant"))
        init(self, "_discount_stage", _spec_stage(demons, "discount"))
        init(self, "_rho_stage", _rho_stage(demons))

    # -- immutability, equality, hashing ---------------------------------------

    def __setattr__(self, name, value):
        raise AttributeError(f"DemonSet is immutable; cannot set {name!r}")

    def __delattr__(self, name):
        raise AttributeError(f"DemonSet is immutable; cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DemonSet):
            return NotImplemented
        return self._demons == other._demons

    def __hash__(self) -> int:
        return hash(self._demons)

    def __reduce__(self):
        return (DemonSet, (self._demons,))

    def __repr__(self) -> str:
        kinds = collections.Counter(d.cumulant.kind for d in self._demons)
        summary = ", ".join(f"{k}={v}" for k, v in kinds.items())
        n_off = int(self._arrays["is_off_policy"].sum())
        return f"DemonSet(n_demons={len(self)}, cumulants: {summary or 'none'}, off_policy={n_off})"

    # -- sequence protocol --------------------------------------------------------

    def __len__(self) -> int:
        return len(self._demons)

    def __iter__(self) -> Iterator[Demon]:
        return iter(self._demons)

    def __getitem__(self, key: int | str | slice) -> Demon | DemonSet:
        """``ds[i]`` -> Demon, ``ds["name"]`` -> Demon, ``ds[a:b]`` -> DemonSet."""
        if isinstance(key, str):
            return self._demons[self.index(key)]
        if isinstance(key, slice):
            return DemonSet(self._demons[key])
        return self._demons[key]

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return item in self._by_name
        return item in self._demons

    def __add__(self, other: DemonSet | Iterable[Demon]) -> DemonSet:
        """Concatenation; names must stay unique."""
        return DemonSet(self._demons + tuple(other))

    def index(self, name: str) -> int:
        """Position of the demon called ``name`` (KeyError naming it if absent)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no demon named {name!r} in this DemonSet") from None

    # -- static per-demon arrays ------------------------------------------------------

    @property
    def demons(self) -> tuple[Demon, ...]:
        return self._demons

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self._demons)

    @property
    def n_demons(self) -> int:
        return len(self._demons)

    @property
    def n_actions(self) -> int | None:
        """Number of actions shared by all target policies, or None if all on-policy."""
        return self._n_actions

    @property
    def lamdas(self) -> np.ndarray:
        r""":math:`\lambda_i`, float32 ``(n,)`` (read-only)."""
        return self._arrays["lamdas"]

    @property
    def z(self) -> np.ndarray:
        """Terminal outcomes :math:`z_i`, float32 ``(n,)`` (read-only)."""
        return self._arrays["z"]

    @property
    def is_off_policy(self) -> np.ndarray:
        """bool ``(n,)``: True where the demon has a target policy (read-only)."""
        return self._arrays["is_off_policy"]

    @property
    def constant_gammas(self) -> np.ndarray:
        r"""Constant :math:`\gamma_i`, float32 ``(n,)``; NaN where the discount is
        state-dependent (``until``/``function``). Read-only."""
        return self._arrays["constant_gammas"]

    @property
    def gamma_lamdas(self) -> np.ndarray:
        r""":math:`\gamma_i \lambda_i` for constant discounts, float32 ``(n,)``; NaN
        where the discount is state-dependent. Read-only."""
        return self._arrays["gamma_lamdas"]

    # -- validation against an environment ---------------------------------------------

    def validate(self, observation_dim: int, n_actions: int | None = None) -> DemonSet:
        """Checks the demons against an environment's dimensions.

        Args:
          observation_dim: length of the (flat) observation vector.
          n_actions: number of discrete actions, or None to skip action checks.

        Returns:
          ``self``, for chaining.

        Raises:
          ValueError: naming the demon, when an observation index is out of
            range, a target policy has a different number of actions, or an
            action_indicator action is out of range.
        """
        observation_dim = checks.as_int(observation_dim, "validate: observation_dim")
        if observation_dim < 1:
            raise ValueError(f"validate: observation_dim must be >= 1, got {observation_dim}")
        if n_actions is not None:
            n_actions = checks.as_int(n_actions, "validate: n_actions")
            if n_actions < 1:
                raise ValueError(f"validate: n_actions must be >= 1, got {n_actions}")
        for demon in self._demons:
            owner = f"demon {demon.name!r}"
            for spec in demon.specs:
                for index in spec.observation_indices():
                    if not 0 <= index < observation_dim:
                        raise ValueError(
                            f"{spec.family} of {owner} ({spec.kind}) reads observation "
                            f"index {index}, out of range for observation_dim {observation_dim} "
                            f"(expected 0 <= index < {observation_dim})"
                        )
            if n_actions is not None:
                for spec in demon.specs:
                    spec.check_n_actions(n_actions, owner)
        return self

    # -- evaluation -----------------------------------------------------------------

    def evaluate(
        self,
        observation: Any,
        action: Any,
        reward: Any,
        next_observation: Any,
        behaviour_prob: Any = 1.0,
        *,
        min_behaviour_prob: float = MIN_BEHAVIOUR_PROB,
        control_policies: Any = None,
    ) -> Evaluation:
        r"""Cumulants, discounts and importance ratios of every demon for one transition.

        Pure and traceable: works on concrete or traced arguments, inside
        ``jax.jit``, ``lax.scan`` and ``jax.vmap`` (map over a leading time or
        batch axis with ``jax.vmap(ds.evaluate)`` or use :meth:`evaluate_batch`).

        .. math::
            \rho_i = \pi_i(A_t \mid S_t) / \max(\mu(A_t \mid S_t), \epsilon)
            \text{ (off-policy)}, \qquad \rho_i = 1 \text{ (on-policy)},

        with :math:`\epsilon` = ``min_behaviour_prob``. The action was taken,
        so :math:`\mu(A_t \mid S_t) > 0`; the floor only keeps a mistaken 0 from
        producing ``inf``.

        Args:
          observation: :math:`S_t`, shape ``(observation_dim,)`` (only read by
            ``function`` cumulants and target policies).
          action: :math:`A_t`; an integer scalar for discrete actions (required
            by action indicators and target policies, which index with it and
            assume ``0 <= action < n_actions``; out-of-range actions are clamped).
            Passed through unchanged to ``function`` cumulants.
          reward: :math:`R_{t+1}`, scalar.
          next_observation: :math:`S_{t+1}`, shape ``(observation_dim,)``.
          behaviour_prob: :math:`\mu(A_t \mid S_t)`, scalar; ignored by on-policy demons.
          min_behaviour_prob: floor :math:`\epsilon` applied to ``behaviour_prob``.
          control_policies: the control demons' greedy policies at :math:`S_t`
            (:class:`demons.policies.ControlPolicies`), which ``greedy_in`` target policies
            need; a control learner passes them.

        Returns:
          :class:`Evaluation` of float32 arrays of shape ``(n_demons,)``, in demon order.

        Raises:
          ValueError (at trace time): ``next_observation`` is not 1-D or is too
            short for an observation index (naming the demon); a ``function``
            spec returns the wrong shape; a ``greedy_in`` target policy without
            ``control_policies`` or naming a demon they do not hold.
        """
        next_obs = jnp.asarray(next_observation)
        if self._max_obs_index >= 0:
            if next_obs.ndim != 1:
                raise ValueError(
                    f"next_observation must be a 1-D vector for one transition, got shape "
                    f"{next_obs.shape}; use evaluate_batch or jax.vmap(demon_set.evaluate) for batches"
                )
            if next_obs.shape[0] <= self._max_obs_index:
                self.validate(observation_dim=next_obs.shape[0])
        transition = Transition(
            observation=jnp.asarray(observation),
            action=jnp.asarray(action),
            reward=jnp.asarray(reward, _F32),
            next_observation=next_obs,
            behaviour_prob=jnp.asarray(behaviour_prob, _F32),
            min_behaviour_prob=min_behaviour_prob,
            control_policies=control_policies,
        )
        return Evaluation(
            cumulants=self._cumulant_stage(transition),
            discounts=self._discount_stage(transition),
            rhos=self._rho_stage(transition),
        )

    def evaluate_batch(
        self,
        observations: Any,
        actions: Any,
        rewards: Any,
        next_observations: Any,
        behaviour_probs: Any = 1.0,
        *,
        min_behaviour_prob: float = MIN_BEHAVIOUR_PROB,
    ) -> Evaluation:
        """:meth:`evaluate` vmapped over a leading axis of length ``T``.

        Args:
          observations: ``(T, observation_dim)``.
          actions: ``(T,)`` (or ``(T, ...)`` for function-only sets).
          rewards: ``(T,)``.
          next_observations: ``(T, observation_dim)``.
          behaviour_probs: scalar or ``(T,)``.

        Returns:
          :class:`Evaluation` of float32 arrays of shape ``(T, n_demons)``.
        """
        rewards = jnp.asarray(rewards, _F32)
        if rewards.ndim != 1:
            raise ValueError(f"rewards must have shape (T,), got {rewards.shape}")
        probs = jnp.broadcast_to(jnp.asarray(behaviour_probs, _F32), rewards.shape)
        fn = functools.partial(self.evaluate, min_behaviour_prob=min_behaviour_prob)
        return jax.vmap(fn)(observations, actions, rewards, next_observations, probs)

    # -- plain data -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-compatible ``{"demons": [table, ...]}`` (see :mod:`demons.serialization`).

        Raises:
          ValueError: naming the first demon with a ``function`` kind.
        """
        return _serialization.demons_to_dict(self._demons)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> DemonSet:
        """Inverse of :meth:`to_dict`; also expands compact ``nexting`` /
        ``reward_demons`` sections. Raises ValueError naming the demon/position and key."""
        return cls(_serialization.demons_from_dict(data))

    def to_toml(self) -> str:
        """TOML text with one ``[[demons]]`` table per demon (inline sub-tables)."""
        return _serialization.dumps_toml(
            self.to_dict(), header=f"horde demon set: {len(self)} demon{'s' if len(self) != 1 else ''}"
        )

    @classmethod
    def from_toml(cls, text: str) -> DemonSet:
        """Parses TOML text (``[[demons]]``, ``[nexting]``/``[[nexting]]``, ``[reward_demons]``)."""
        return cls.from_dict(tomllib.loads(text))

    @classmethod
    def load(cls, path: str | os.PathLike) -> DemonSet:
        """Reads a ``.json`` file as JSON and any other file as TOML: a demon set, or the
        demons of a whole ``horde run`` configuration (its ``[[demons]]``, ``[nexting]`` and
        ``[reward_demons]`` sections, in file order; the run's own sections, listed in
        ``RUN_CONFIG_SECTIONS``, are skipped).

        A configuration whose demons use kinds of a plugin module (``[plugins] modules``) needs
        that module imported first.

        Raises:
          ValueError: an unknown section or a bad demon (naming it).
        """
        with open(path, "rb") as f:
            raw = f.read()
        text = raw.decode("utf-8")
        data = json.loads(text) if str(path).lower().endswith(".json") else tomllib.loads(text)
        if isinstance(data, Mapping):
            data = {k: v for k, v in data.items() if k not in RUN_CONFIG_SECTIONS}
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> None:
        """Writes ``.json`` files as JSON and any other file as TOML."""
        if str(path).lower().endswith(".json"):
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        else:
            text = self.to_toml()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
