r"""What a cumulant, discount or target-policy *kind* is, and the pieces its batched form uses.

A kind (``observation`` cumulants, ``until`` discounts, ``fixed`` policies, ...) is one class
that owns all three forms of its specs:

* the **scalar form**, ``spec(...)``: one spec on one transition, in plain JAX (the obviously
  correct version, handy for debugging and tests);
* the **batched form**, the classmethod ``batched(positions, specs)``: every spec of the kind in
  a :class:`~demons.DemonSet` at once, as a few array operations whose number does not depend
  on how many specs there are (one gather with an index vector, one constant array, ...);
* the **plain-data form**, ``to_dict()`` / ``from_dict(data, owner)``: the JSON/TOML table.

The contract, for a class that subclasses :class:`demons.Cumulant`, :class:`demons.Discount`
or :class:`demons.Policy`:

* it is a frozen dataclass (hashable and comparable; its fields are its plain data) with a
  unique class attribute ``kind`` (the ``"kind"`` key of its table). Defining the class
  registers it: :class:`~demons.DemonSet` and :mod:`demons.serialization` find it by its type
  and its ``kind``, with no table to edit;
* ``__post_init__`` coerces field *types* (raising ``TypeError``, see :mod:`demons.checks`);
  ``check(owner)`` checks *values* when the spec is attached to a :class:`~demons.Demon`,
  naming the ``owner`` (``"demon 'x'"``);
* ``observation_indices()`` lists the observation components the spec reads, so that a set is
  checked against an environment once, at the boundary (the batched form may then gather
  without bounds checks);
* ``__call__`` is the scalar form (signature per family, below);
* ``batched(positions, specs)`` returns :class:`Batch` es covering exactly ``positions``, each
  computing a float32 vector from a :class:`Transition` (what it means per family, below);
* a kind whose specs hold a Python callable sets ``plain_data = False`` and has a ``name``
  field (a label for messages, reports and reprs); it has no plain-data form;
* optional: ``check_n_actions(n_actions, owner)`` checks a spec against the environment's
  discrete actions; a discount kind whose value is a constant overrides ``constant_gamma``
  (the learner's :math:`\gamma\lambda` and the reports' timescale read it); a policy kind has
  ``n_actions``.

Per family, the scalar form and what each batch computes (float32, one value per demon):

* cumulant: ``spec(observation, action, reward, next_observation)`` -> scalar
  :math:`c_{t+1}`; batches compute :math:`c_{t+1}`.
* discount: ``spec(next_observation)`` -> scalar :math:`\gamma_{t+1}`; batches compute
  :math:`\gamma_{t+1}`.
* target policy: ``spec(observation)`` -> ``(n_actions,)`` :math:`\pi(\cdot \mid S_t)`;
  batches compute the importance ratio
  :math:`\rho_t = \pi(A_t \mid S_t) / \max(\mu(A_t \mid S_t), \epsilon)` with
  :func:`demons.policies.ratio` (the set gives on-policy demons exactly 1).

Example (a cumulant that squares a sensor; one gather and one multiply for any number of
demons)::

    @dataclasses.dataclass(frozen=True)
    class SquaredObservation(demons.Cumulant):
        index: int
        kind: ClassVar[str] = "squared_observation"

        def observation_indices(self):
            return (self.index,)

        def __call__(self, observation, action, reward, next_observation):
            return jnp.square(jnp.asarray(next_observation)[self.index].astype(jnp.float32))

        @classmethod
        def batched(cls, positions, specs):
            idx = np.asarray([s.index for s in specs], np.int32)
            return [kinds.Batch(positions, lambda t: jnp.square(kinds.next_observations(t, idx)))]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "Kind",
    "Transition",
    "Batch",
    "per_distinct_spec",
    "next_observations",
    "gather",
    "predicate",
    "threshold_crossings",
    "scalar_float32",
    "label",
]


class Transition(NamedTuple):
    r"""One transition :math:`(S_t, A_t, R_{t+1}, S_{t+1})` as JAX arrays, what batched forms read.

    Attributes:
      observation: :math:`S_t`, ``(observation_dim,)``.
      action: :math:`A_t`, as given (an integer scalar for discrete actions).
      reward: :math:`R_{t+1}`, float32 scalar.
      next_observation: :math:`S_{t+1}`, ``(observation_dim,)``, at least as long as every
        registered spec's ``observation_indices`` require (checked by the set).
      behaviour_prob: :math:`\mu(A_t \mid S_t)`, float32 scalar, the behaviour probability
        of the action taken.
      min_behaviour_prob: the floor :math:`\epsilon` a ratio applies to ``behaviour_prob``.
      control_policies: the control demons' greedy policies at :math:`S_t`
        (``demons.policies.ControlPolicies``) where a control learner evaluates the demons, else
        None; what ``greedy_in`` target policies read.
    """

    observation: jax.Array
    action: jax.Array
    reward: jax.Array
    next_observation: jax.Array
    behaviour_prob: jax.Array
    min_behaviour_prob: Any
    control_policies: Any = None


class Batch(NamedTuple):
    """Part of a batched form: the demons at ``positions`` and how to compute their values.

    Attributes:
      positions: int64 ``(k,)``, positions of demons in the set, in the order ``compute``
        returns their values.
      compute: ``Transition -> float32 (k,)``; traceable, and its traced size must not depend
        on ``k``.
    """

    positions: np.ndarray
    compute: Callable[[Transition], jax.Array]

    @classmethod
    def constant(cls, positions: np.ndarray, values: Sequence[float] | np.ndarray) -> Batch:
        """A batch whose values do not depend on the transition (one constant array)."""
        const = np.asarray(values, np.float32)
        return cls(positions, lambda t: jnp.asarray(const))


def per_distinct_spec(
    positions: np.ndarray, specs: Sequence[Any], compute_one: Callable[[Any, Transition], jax.Array]
) -> list[Batch]:
    """One :class:`Batch` per distinct spec: ``compute_one(spec, t)`` traced once, broadcast.

    For kinds whose specs are opaque (a Python function): demons that share one spec share one
    call. The traced size grows with the number of *distinct* specs, never with the number of
    demons.

    Args:
      positions: int64 ``(k,)`` demon positions, aligned with ``specs``.
      specs: the ``k`` specs (hashable).
      compute_one: ``(spec, Transition) -> scalar``.

    Returns:
      One batch per distinct spec, in order of first appearance.
    """
    by_spec: dict[Any, list[int]] = {}
    for pos, spec in zip(positions.tolist(), specs):
        by_spec.setdefault(spec, []).append(pos)
    batches = []
    for spec, where in by_spec.items():
        n = len(where)

        def compute(t: Transition, spec=spec, n=n) -> jax.Array:
            return jnp.broadcast_to(compute_one(spec, t), (n,))

        batches.append(Batch(np.asarray(where, np.int64), compute))
    return batches


_GATHER_DIMS = lax.GatherDimensionNumbers(offset_dims=(), collapsed_slice_dims=(0,), start_index_map=(0,))


def gather(x: jax.Array, indices: np.ndarray) -> jax.Array:
    """``x[indices]`` for a static, in-bounds int32 index vector as ONE gather op.

    The caller guarantees ``0 <= indices < x.shape[0]`` (a set checks its specs'
    ``observation_indices`` at trace time), so no negative-index normalisation is emitted.

    Args:
      x: ``(m,)``.
      indices: ``(k,)`` integers in ``[0, m)``.

    Returns:
      ``(k,)``, same dtype as ``x``.
    """
    idx = np.asarray(indices, dtype=np.int32).reshape(-1, 1)
    return lax.gather(
        x,
        idx,
        _GATHER_DIMS,
        (1,),
        mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )


def next_observations(t: Transition, indices: np.ndarray) -> jax.Array:
    r""":math:`S_{t+1}[\text{indices}]` as float32 ``(k,)``, one gather."""
    return gather(t.next_observation, indices).astype(jnp.float32)


def predicate(x: Any, threshold: Any, above: Any, absolute: Any) -> jax.Array:
    r"""Elementwise threshold predicate used by threshold cumulants and ``until`` discounts.

    .. math::
        p = \begin{cases} y > \theta & \text{above} \\ y < \theta & \text{otherwise}
        \end{cases}, \qquad y = |x| \text{ if absolute else } x.

    Works with Python bools (single spec, or a group whose flags agree: no select emitted)
    or boolean arrays (a group with mixed flags).
    """
    if isinstance(absolute, bool):
        y = jnp.abs(x) if absolute else x
    else:
        y = jnp.where(absolute, jnp.abs(x), x)
    if isinstance(above, bool):
        return (y > threshold) if above else (y < threshold)
    return jnp.where(above, y > threshold, y < threshold)


def _uniform_or_array(values: np.ndarray) -> bool | np.ndarray:
    """A static Python bool when all flags agree (cheaper trace), else the array."""
    return bool(values[0]) if np.all(values == values[0]) else values


def threshold_crossings(specs: Sequence[Any]) -> Callable[[Transition], jax.Array]:
    """Batched :func:`predicate` for specs with ``index``, ``threshold``, ``above``, ``absolute``.

    Returns:
      ``Transition -> bool (k,)``: one gather and one comparison for all ``k`` specs.
    """
    idx = np.asarray([s.index for s in specs], np.int32)
    thr = np.asarray([s.threshold for s in specs], np.float32)
    above = _uniform_or_array(np.asarray([s.above for s in specs], bool))
    absolute = _uniform_or_array(np.asarray([s.absolute for s in specs], bool))

    def hit(t: Transition) -> jax.Array:
        return predicate(next_observations(t, idx), thr, above, absolute)

    return hit


def scalar_float32(value: Any, what: str) -> jax.Array:
    """``value`` as a float32 scalar; a ValueError naming ``what`` when it is not a scalar."""
    out = jnp.asarray(value)
    if out.shape != ():
        raise ValueError(f"{what} must return a scalar, got shape {out.shape}")
    return out.astype(jnp.float32)


def _fields(spec: Any) -> tuple[dataclasses.Field, ...]:
    if not dataclasses.is_dataclass(spec):
        name = spec.__qualname__ if isinstance(spec, type) else type(spec).__qualname__
        raise TypeError(f"kind class {name} must be a dataclass (its fields are its plain data)")
    return dataclasses.fields(spec)


def label(spec: Kind) -> str:
    """A spec's label for messages: its ``name`` (kinds holding a callable have one), else its kind."""
    return str(getattr(spec, "name", spec.kind))


class Kind:
    """Base of every cumulant, discount and policy kind (see the module docstring's contract).

    Subclass a family (:class:`demons.Cumulant`, :class:`demons.Discount`,
    :class:`demons.Policy`), not this class. A subclass that sets ``kind`` in its body is
    registered in its family when the class is created.

    Attributes:
      family: the :class:`~demons.Demon` field the spec fills (``"cumulant"``,
        ``"discount"``, ``"target_policy"``); set by the family base.
      kind: the kind's name, unique within its family.
      plain_data: False for kinds that hold a Python callable (they have no plain-data form
        and must have a ``name`` field).
    """

    family: ClassVar[str]
    kind: ClassVar[str]
    plain_data: ClassVar[bool] = True
    _registries: ClassVar[dict[str, dict[str, type[Kind]]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" not in cls.__dict__:
            return  # a family base or an abstract helper class: nothing to register
        for method in ("__call__", "batched"):
            if not any(method in klass.__dict__ for klass in cls.__mro__ if klass is not Kind):
                raise TypeError(f"{cls.family} kind {cls.kind!r} ({cls.__qualname__}) must define {method}")
        registry = Kind._registries.setdefault(cls.family, {})
        old = registry.get(cls.kind)
        # Re-running a class statement (a reloaded module) replaces its own earlier version.
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(
                f"{cls.family} kind {cls.kind!r} of {cls.__module__}.{cls.__qualname__} is already "
                f"registered by {old.__module__}.{old.__qualname__}; kind names must be unique per family"
            )
        registry[cls.kind] = cls

    @classmethod
    def registered(cls) -> dict[str, type[Kind]]:
        """``{kind: class}`` of every kind registered in this family (a copy)."""
        return dict(Kind._registries.get(cls.family, {}))

    def check(self, owner: str = "this spec") -> None:
        """Checks field values; raises ValueError naming ``owner`` (e.g. ``"demon 'x'"``)."""

    def observation_indices(self) -> tuple[int, ...]:
        """Observation components this spec reads (checked against the environment)."""
        return ()

    def check_n_actions(self, n_actions: int, owner: str) -> None:
        """Checks the spec against the environment's number of discrete actions."""

    def __call__(self, *args: Any) -> jax.Array:
        raise NotImplementedError

    @classmethod
    def batched(cls, positions: np.ndarray, specs: Sequence[Any]) -> Sequence[Batch]:
        """The batched form of every spec of this kind in a set.

        Args:
          positions: int64 ``(k,)``, the demons' positions in the set.
          specs: the ``k`` specs (instances of ``cls``), aligned with ``positions``.

        Returns:
          Batches whose positions together are exactly ``positions``.
        """
        raise NotImplementedError(
            f"{cls.__qualname__} is not a registered {cls.family} kind: a kind class sets `kind` and "
            "defines `__call__` and `batched` (see demons.kinds)"
        )

    def describe(self) -> str:
        """Short text for reports, e.g. ``"observation(2)"``, ``"function(speed)"``."""
        if not self.plain_data:
            return f"{self.kind}({label(self)})"
        return f"{self.kind}({', '.join(repr(getattr(self, f.name)) for f in _fields(self))})"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form ``{"kind": ..., **fields}`` (tuples become lists).

        Raises:
          ValueError: the kind holds a Python callable (``plain_data`` is False).
        """
        if not self.plain_data:
            raise ValueError(f"{type(self).__name__} {label(self)!r} holds a Python function and cannot be serialized")
        out: dict[str, Any] = {"kind": self.kind}
        for field in _fields(self):
            value = getattr(self, field.name)
            out[field.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], owner: str) -> Kind:
        """Inverse of :meth:`to_dict`: fields without a default are required keys.

        Args:
          data: the table, including its ``"kind"`` key.
          owner: who the spec belongs to, for messages (``"demon 'x'"``).

        Raises:
          ValueError: an unexpected or missing key, or a value of the wrong type, naming
            the key, the kind and ``owner``.
        """
        what = cls.family
        fields = _fields(cls)
        required = [f.name for f in fields if f.default is dataclasses.MISSING]
        allowed = {"kind", *(f.name for f in fields)}
        for key in data:  # unexpected keys first: a typo then names the typo
            if key not in allowed:
                raise ValueError(
                    f"unexpected key {key!r} in {what} of kind {cls.kind!r} for {owner}; "
                    f"expected keys {sorted(allowed)}"
                )
        for key in required:
            if key not in data:
                raise ValueError(f"{what} of kind {cls.kind!r} for {owner} is missing key {key!r}")
        try:
            return cls(**{k: v for k, v in data.items() if k != "kind"})
        except TypeError as e:  # type coercion failures
            raise ValueError(f"invalid {what} for {owner}: {e}") from e
