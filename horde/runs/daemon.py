"""``Daemon``: a learner and its state, for one update at a time at the lowest latency.

A robot loop or a server learns from one observation at a time and needs the answer at once.
``learner.update(state, ...)`` is a pure function: every call allocates a new state and leaves
the old one intact (so it can be kept, compared or thrown away), hands JAX each input and
result array separately, and builds the result pytree in Python. For a small learner on a CPU
that bookkeeping costs about as much as the arithmetic.

A ``Daemon`` owns the state instead. Its state arrays are *donated* to each compiled call, so
the update writes the new state into the old buffers; the inputs of one call are packed on the
host into one NumPy vector, and the results come back as one array whose rows are the result's
fields (NumPy views, no further transfers). Observation and target values are checked inside
the compiled call, which keeps the old state bit for bit where it refuses them (the host then
raises the learner's own message), and the step counters, which the update never reads, are
counted on the host instead of travelling through every call. The arithmetic is the learner's
own traced update, so a daemon step equals ``learner.update`` to float32 rounding (XLA may fuse
the packed program differently, which can move the last bit; tested over whole runs).

``daemon.state`` returns a copy of the state (for checkpoints, plots or inspection) and
assigning to it replaces the state.
"""

from __future__ import annotations

import operator
from typing import Any, Generic, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from horde.control import check_greedy_in
from horde.core import (
    MultiHeadMLPLearner,
    MultiHeadMLPState,
    MultiHeadMLPUpdateResult,
    as_vector,
    check_flag,
    check_observation_values,
    check_target_values,
    concrete_values,
)
from horde.td import HordeLearner, HordeState, HordeUpdateResult

__all__ = ["Daemon"]

_F32 = jnp.float32


_Fields = TypeVar("_Fields", bound=NamedTuple)


class _Layout(Generic[_Fields]):
    """Names for the positions in a packed vector or in the rows of a packed result.

    ``index`` is a ``fields`` NamedTuple holding each field's position: an int, or a slice for
    a field that takes ``sizes[name]`` consecutive positions. The same layout packs (host
    inputs, traced result rows) and unpacks, so the two cannot disagree.
    """

    def __init__(self, fields: type[_Fields], sizes: dict[str, int] | None = None):
        sizes = sizes or {}
        index, start = [], 0
        for name in fields._fields:
            size = sizes.get(name)
            index.append(start if size is None else slice(start, start + size))
            start += 1 if size is None else size
        self.fields, self.index, self.size = fields, fields._make(index), start

    def stack(self, rows: Any) -> jax.Array:
        """The traced rows (a ``fields`` tuple) as one ``(size, n)`` array; a field of several
        rows is given as ``(its size, n)``."""
        flat: list[Any] = []
        for value, where in zip(rows, self.index):
            if isinstance(where, slice):
                flat.extend(value[k] for k in range(where.stop - where.start))
            else:
                flat.append(value)
        return jnp.stack(flat)

    def unpack(self, packed: Any) -> Any:
        """Each field of ``packed`` (views for NumPy input), as a ``fields`` tuple."""
        return self.fields._make(packed[where] for where in self.index)


class _CoreRows(NamedTuple):
    """The rows of a packed ``MultiHeadMLPLearner`` update, ``(n_heads,)`` each."""

    predictions: Any
    errors: Any
    per_head_metrics: Any  # 3 rows: the columns of ``per_head_metrics``
    trunk_bounding_metric: Any  # broadcast
    valid: Any  # whether the inputs were accepted (broadcast; 1.0 or 0.0)


class _HordeRows(NamedTuple):
    """The rows of a packed ``HordeLearner`` update, ``(n_demons,)`` each."""

    predictions: Any
    td_errors: Any
    td_targets: Any
    per_demon_metrics: Any  # 3 rows: the columns of ``per_demon_metrics``
    rupee: Any
    ude: Any
    diverged: Any  # 1.0 where diverged
    trunk_bounding_metric: Any  # broadcast
    valid: Any  # whether the inputs were accepted (broadcast; 1.0 or 0.0)


_CORE_ROWS = _Layout(_CoreRows, {"per_head_metrics": 3})
_HORDE_ROWS = _Layout(_HordeRows, {"per_demon_metrics": 3})


class _TransitionInputs(NamedTuple):
    """The packed float32 input of ``update_from_transition``."""

    observation: Any  # feature_dim entries
    next_observation: Any  # feature_dim entries, right after the observation
    reward: Any
    behaviour_prob: Any
    action: Any  # the int32 bits of the action
    terminated: Any  # 1.0 or 0.0
    truncated: Any  # 1.0 or 0.0


def _signature(state: Any) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(state)
    return treedef, tuple((tuple(x.shape), np.dtype(x.dtype)) for x in leaves)


def _counter_positions(state: Any) -> tuple[int, ...]:
    """Positions, among the state's leaves, of the ``step_count`` fields: counters that the
    update only increments and never reads, so the daemon counts them in Python instead of
    passing them through every compiled call (one array fewer each way)."""
    paths = jax.tree_util.tree_flatten_with_path(state)[0]
    return tuple(i for i, (path, _) in enumerate(paths) if getattr(path[-1], "name", None) == "step_count")


def _int32(count: int) -> int:
    """``count`` wrapped to int32 as the learner's own ``step_count + 1`` wraps."""
    return (count + 2**31) % 2**32 - 2**31


def _as_action(action: Any) -> int:
    """An integer action, stored in the packed float32 input by its int32 bits (unpacked
    exactly inside the compiled call)."""
    try:
        value = operator.index(action.item() if isinstance(action, np.ndarray) and action.ndim == 0 else action)
    except TypeError:
        raise TypeError(f"action must be an integer (a discrete action index), got {action!r}") from None
    if not -(2**31) <= value < 2**31:
        raise ValueError(f"action must fit in int32, got {value}")
    return value


class Daemon:
    """A ``MultiHeadMLPLearner`` or ``HordeLearner`` with its state, for single-step use.

    Args:
        learner: the learner.
        state: its state (from ``learner.init`` or a checkpoint). The daemon keeps a copy; the
            ``state`` passed in is left as it was.

    Every call checks its inputs as the learner's own entry points do and refuses bad ones with
    a ``ValueError`` naming the argument, leaving the state untouched. Results hold NumPy
    arrays, and their ``state`` field is ``None``: the daemon keeps the state (``.state``).

    Example::

        daemon = horde.Daemon(learner, learner.init(4, jax.random.key(0)))
        result = daemon.update_from_transition(obs, action, reward, next_obs)
        result.td_errors          # NumPy, one per demon
        daemon.predict(next_obs)  # NumPy, v_i(S_{t+1})
    """

    def __init__(self, learner: MultiHeadMLPLearner | HordeLearner, state: Any) -> None:
        if isinstance(learner, HordeLearner):
            check_greedy_in(learner.demons, None)
            learner.check_state(state)
            # One state structure for explicit-input and demon-evaluated updates alike.
            state = learner.with_trace_rows(state)
            self._horde = True
            core_state = state.core
            core = learner.core
        elif isinstance(learner, MultiHeadMLPLearner):
            learner.check_state(state)
            self._horde = False
            core_state = state
            core = learner
        else:
            raise TypeError(f"learner must be a MultiHeadMLPLearner or a HordeLearner, got {type(learner).__name__}")
        self.learner = learner
        self._dim = core.feature_dim(core_state)
        self._n = core.n_heads
        self._treedef, self._leaf_types = _signature(state)
        self._counters = _counter_positions(state)
        self._transition = _Layout(_TransitionInputs, {"observation": self._dim, "next_observation": self._dim})
        self._copy_jit = jax.jit(lambda tree: jax.tree_util.tree_map(jnp.copy, tree))
        self._set_leaves(state)
        self._predict_jit = jax.jit(self._predict_impl)
        self._update_jit = jax.jit(self._update_impl, donate_argnums=0, static_argnums=(2,))
        self._transition_jit = jax.jit(self._transition_impl, donate_argnums=0, static_argnums=(2,))
        # No demon detached from its trace group (known on the host): demon-evaluated updates
        # then leave the per-demon trace rows untouched.
        self._attached = not isinstance(learner, HordeLearner) or learner.all_attached(state)

    # ---------------------------------------------------------------------------------------

    # The compiled calls take and return the state's leaves less the step counters, which
    # live in ``self._counts`` as Python ints.

    def _set_leaves(self, state: Any) -> None:
        leaves = jax.tree_util.tree_leaves(state)
        self._counts = [int(np.asarray(leaves[i])) for i in self._counters]
        self._leaves = self._copy_jit(self._leaves_of(state))

    def _state_from(self, leaves: list, counts: list) -> Any:
        leaves, remaining = list(leaves), iter(counts)
        for i in self._counters:
            leaves.insert(i, next(remaining))
        return jax.tree_util.tree_unflatten(self._treedef, leaves)

    def _leaves_of(self, state: Any) -> list:
        return [x for i, x in enumerate(jax.tree_util.tree_leaves(state)) if i not in self._counters]

    def _traced_state(self, leaves: list) -> Any:
        # The update never reads a step counter, so any value serves inside the compiled call.
        return self._state_from(leaves, [jnp.zeros((), jnp.int32)] * len(self._counters))

    def _count_update(self) -> None:
        self._counts = [_int32(c + 1) for c in self._counts]

    @property
    def state(self) -> MultiHeadMLPState | HordeState:
        """A copy of the current state (the daemon's own buffers are overwritten by the next
        update)."""
        counts = [jnp.asarray(c, jnp.int32) for c in self._counts]
        state = self._state_from(self._copy_jit(self._leaves), counts)
        if isinstance(self.learner, HordeLearner) and self._attached:
            # No demon detached: the layout of the learner's own demon-evaluated updates.
            state = self.learner.without_trace_rows(state)
        return state

    @state.setter
    def state(self, state: Any) -> None:
        self.learner.check_state(state)
        if isinstance(self.learner, HordeLearner):
            state = self.learner.with_trace_rows(state)
            self._attached = self.learner.all_attached(state)
        treedef, leaf_types = _signature(state)
        if treedef != self._treedef or leaf_types != self._leaf_types:
            raise ValueError(
                "state does not have the structure, shapes and dtypes of the daemon's state "
                "(a state of another learner configuration or observation size); build a new "
                "Daemon for it"
            )
        self._set_leaves(state)

    @property
    def n_heads(self) -> int:
        return self._n

    def __repr__(self) -> str:
        nbytes = sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in self._leaf_types)
        return f"Daemon({self.learner!r}, {nbytes} state bytes)"

    # ---------------------------------------------------------------------------------------
    # Traced bodies

    def _predict_impl(self, leaves, observation):
        state = self._traced_state(leaves)
        # The HordeLearner's own prediction: with least-squares heads it is not its core's.
        return self.learner.predict_traced(state, observation)

    def _update_impl(self, leaves, inputs, parts):
        """``parts``: the names of the packed fields after the observation, in order."""
        state = self._traced_state(leaves)
        d, n = self._dim, self._n
        fields, offset = {}, d
        fields["observation"] = inputs[:d]
        for name in parts:
            size = d if name == "next_observation" else 1 if name in ("terminated", "truncated") else n
            fields[name] = inputs[offset : offset + size]
            offset += size
        if not self._horde:
            r = self.learner.update_traced(state, fields["observation"], fields["targets"])
            trunk = jnp.broadcast_to(r.trunk_bounding_metric, (n,))
            rows = _CoreRows(r.predictions, r.errors, r.per_head_metrics.T, trunk, None)
            valid = jnp.isfinite(fields["observation"]).all() & ~jnp.isinf(fields["targets"]).any()
            return self._checked_outputs(valid, leaves, r.state, rows, _CORE_ROWS)
        # The HordeLearner's explicit-cumulant inputs are checked on the host (their messages
        # name demons); nothing is left to refuse here.
        r = self.learner.update_traced(
            state,
            fields["observation"],
            fields["cumulants"],
            fields["next_observation"],
            fields["terminated"][0] > 0.5,
            fields["truncated"][0] > 0.5,
            fields.get("discounts"),
            fields.get("rhos"),
        )
        return self._checked_outputs(jnp.bool_(True), leaves, r.state, self._horde_rows(r), _HORDE_ROWS)

    def _transition_impl(self, leaves, inputs, attached):
        state = self._traced_state(leaves)
        x = self._transition.unpack(inputs)
        action = jax.lax.bitcast_convert_type(x.action, jnp.int32)
        r = self.learner.update_from_transition_traced(
            state,
            x.observation,
            action,
            x.reward,
            x.next_observation,
            x.terminated > 0.5,
            x.truncated > 0.5,
            x.behaviour_prob,
            attached,
        )
        # One reduction over both observations, which lie side by side.
        where = self._transition.index
        valid = jnp.isfinite(inputs[where.observation.start : where.next_observation.stop]).all()
        return self._checked_outputs(valid, leaves, r.state, self._horde_rows(r), _HORDE_ROWS)

    def _horde_rows(self, r: HordeUpdateResult) -> _HordeRows:
        trunk = jnp.broadcast_to(r.trunk_bounding_metric, (self._n,))
        diverged = r.diverged.astype(_F32)
        return _HordeRows(
            r.predictions, r.td_errors, r.td_targets, r.per_demon_metrics.T, r.rupee, r.ude, diverged, trunk, None
        )

    def _checked_outputs(self, valid, old_leaves, new_state, rows: Any, layout: _Layout):
        """The new state's leaves where the packed inputs were ``valid``, else the old leaves
        bit for bit, and the result ``rows`` packed by ``layout``, with ``valid`` filled in.

        The observation and target values are checked here, inside the compiled call, rather
        than by NumPy on the host before it: XLA fuses each select into the fusion that writes
        the new leaf (which reads the old one anyway), so the check costs only its own small
        reductions, and a call at 64 heads is about 3 µs quicker than with the host checks. A
        refused call is re-checked on the host for its message (see ``_run``).
        """
        new_leaves = [jnp.where(valid, new, old) for new, old in zip(self._leaves_of(new_state), old_leaves)]
        rows = rows._replace(valid=jnp.broadcast_to(valid.astype(_F32), (self._n,)))
        return new_leaves, layout.stack(rows)

    # ---------------------------------------------------------------------------------------
    # Results

    @staticmethod
    def _core_result(rows: _CoreRows) -> MultiHeadMLPUpdateResult:
        return MultiHeadMLPUpdateResult(
            state=None,  # type: ignore[arg-type]  # the daemon keeps the state; its results carry None
            predictions=rows.predictions,
            errors=rows.errors,
            per_head_metrics=rows.per_head_metrics.T,
            trunk_bounding_metric=rows.trunk_bounding_metric[0],
        )

    @staticmethod
    def _horde_result(rows: _HordeRows) -> HordeUpdateResult:
        return HordeUpdateResult(
            state=None,  # type: ignore[arg-type]  # the daemon keeps the state; its results carry None
            predictions=rows.predictions,
            td_errors=rows.td_errors,
            td_targets=rows.td_targets,
            per_demon_metrics=rows.per_demon_metrics.T,
            trunk_bounding_metric=rows.trunk_bounding_metric[0],
            rupee=rows.rupee,
            ude=rows.ude,
            diverged=rows.diverged > 0.5,
        )

    # ---------------------------------------------------------------------------------------
    # Public entry points

    def predict(self, observation: Any) -> np.ndarray:
        """Every head's prediction for ``observation``, shape ``(n_heads,)``, as NumPy."""
        obs = as_vector("observation", observation, self._dim, "feature_dim")
        check_observation_values("observation", obs)
        return np.asarray(self._predict_jit(self._leaves, obs))

    def update(self, observation: Any, *args: Any, **kwargs: Any):
        """One update; the arguments are the learner's ``update`` arguments without ``state``.

        * ``MultiHeadMLPLearner``: ``update(observation, targets)``.
        * ``HordeLearner``: ``update(observation, cumulants, next_observation, *,
          terminated=False, truncated=False, discounts=None, rhos=None)``.

        Returns the learner's result type with NumPy fields and ``state=None``.
        """
        if not self._horde:
            return self._update_core(observation, *args, **kwargs)
        return self._update_horde(observation, *args, **kwargs)

    def _update_core(self, observation: Any, targets: Any):
        obs = as_vector("observation", observation, self._dim, "feature_dim")
        tgt = as_vector("targets", targets, self._n, "one target per head, NaN = inactive")

        def host_checks():
            check_observation_values("observation", obs)
            check_target_values("targets", tgt)

        # Values are checked inside the compiled call (see _checked_outputs).
        inputs = np.concatenate((obs, tgt), dtype=np.float32)
        return self._core_result(self._run(self._update_jit, inputs, (("targets",),), host_checks, _CORE_ROWS))

    def _run(self, compiled, inputs: np.ndarray, static: tuple, host_checks, layout: _Layout) -> Any:
        """One compiled update on the packed ``inputs``; returns its result rows, unpacked by
        ``layout`` (NumPy views). Where the compiled call refused the inputs (the state is then
        unchanged), ``host_checks()`` raises the learner's own message for them."""
        self._leaves, out = compiled(self._leaves, inputs, *static)
        rows = layout.unpack(np.asarray(out))
        if not rows.valid[0]:
            host_checks()
            raise AssertionError("inputs refused by the compiled check passed the host checks")
        self._count_update()
        return rows

    def _update_horde(
        self,
        observation: Any,
        cumulants: Any,
        next_observation: Any,
        *,
        terminated: bool = False,
        truncated: bool = False,
        discounts: Any = None,
        rhos: Any = None,
    ):
        learner = self.learner
        assert isinstance(learner, HordeLearner)  # update() sends only a HordeLearner's calls here
        # The learner's own checks (shapes, values, off-policy rhos); only its compiled call
        # is replaced by the packed one.
        obs, c, next_obs, d, r = learner.checked_update_inputs(
            self._dim, observation, cumulants, next_observation, discounts, rhos
        )
        parts = ["cumulants", "next_observation"]
        pieces = [obs, c, next_obs]
        if d is not None:
            parts.append("discounts")
            pieces.append(d)
        if r is not None:
            parts.append("rhos")
            pieces.append(r)
        parts += ["terminated", "truncated"]
        flags = np.array([check_flag("terminated", terminated), check_flag("truncated", truncated)], np.float32)
        pieces.append(flags)
        inputs = np.concatenate([np.asarray(p, np.float32) for p in pieces])
        # Checked above; the compiled call refuses nothing here.
        result = self._horde_result(self._run(self._update_jit, inputs, (tuple(parts),), lambda: None, _HORDE_ROWS))
        # Explicit inputs may detach demons; an episode end rejoins them all.
        self._attached = bool(flags.any())
        return result

    def update_from_transition(
        self,
        observation: Any,
        action: Any,
        reward: Any,
        next_observation: Any,
        *,
        terminated: bool = False,
        truncated: bool = False,
        behaviour_prob: float = 1.0,
    ) -> HordeUpdateResult:
        """``HordeLearner.update_from_transition`` without ``state``: the demons compute their
        cumulants, discounts and importance ratios inside the compiled call. ``action`` must
        be an integer. Returns a ``HordeUpdateResult`` with NumPy fields and ``state=None``."""
        learner = self.learner
        if not isinstance(learner, HordeLearner):
            raise TypeError("update_from_transition needs a HordeLearner; this daemon holds a MultiHeadMLPLearner")
        # Observation values are checked inside the compiled call (see _checked_outputs).
        obs, next_obs = learner.checked_transition_inputs(
            self._dim, observation, reward, next_observation, behaviour_prob, check_observations=False
        )
        reward_value = concrete_values(reward)
        if reward_value is None or reward_value.size != 1:
            raise ValueError(f"reward must be one number, got {reward!r}")
        where = self._transition.index
        inputs = np.empty(self._transition.size, np.float32)
        inputs[where.observation] = obs
        inputs[where.next_observation] = next_obs
        inputs[where.reward] = reward_value.reshape(())
        inputs[where.behaviour_prob] = behaviour_prob
        inputs.view(np.int32)[where.action] = _as_action(learner.checked_action(action))
        inputs[where.terminated] = check_flag("terminated", terminated)
        inputs[where.truncated] = check_flag("truncated", truncated)
        host_checks = lambda: learner.checked_transition_inputs(self._dim, obs, reward, next_obs, behaviour_prob)
        result = self._horde_result(
            self._run(self._transition_jit, inputs, (self._attached,), host_checks, _HORDE_ROWS)
        )
        if terminated or truncated:
            self._attached = True
        return result
