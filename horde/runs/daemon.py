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
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from horde.core import check_flag
from horde.td import HordeLearner, HordeState, HordeUpdateResult
from horde.core import (
    MultiHeadMLPLearner,
    MultiHeadMLPState,
    MultiHeadMLPUpdateResult,
    as_vector,
    check_observation_values,
    check_target_values,
    concrete_values,
)

__all__ = ["Daemon"]

_F32 = jnp.float32


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
            learner.check_state(state)
            self._horde = True
            core_state = state.core
            core = learner.core
        elif isinstance(learner, MultiHeadMLPLearner):
            learner.check_state(state)
            self._horde = False
            core_state = state
            core = learner
        else:
            raise TypeError(
                f"learner must be a MultiHeadMLPLearner or a HordeLearner, got {type(learner).__name__}"
            )
        self.learner = learner
        self._dim = core.feature_dim(core_state)
        self._n = core.n_heads
        self._treedef, self._leaf_types = _signature(state)
        self._counters = _counter_positions(state)
        self._copy_jit = jax.jit(lambda tree: jax.tree_util.tree_map(jnp.copy, tree))
        self._set_leaves(state)
        self._predict_jit = jax.jit(self._predict_impl)
        self._update_jit = jax.jit(self._update_impl, donate_argnums=0, static_argnums=(2,))
        self._transition_jit = jax.jit(self._transition_impl, donate_argnums=0)

    # ---------------------------------------------------------------------------------------

    # The compiled calls take and return the state's leaves less the step counters, which
    # live in ``self._counts`` as Python ints.

    def _set_leaves(self, state: Any) -> None:
        leaves = jax.tree_util.tree_leaves(state)
        self._counts = [int(np.asarray(leaves[i])) for i in self._counters]
        self._leaves = self._copy_jit(self._leaves_of(state))

    def _state_from(self, leaves: list, counts: list) -> Any:
        leaves, counts = list(leaves), iter(counts)
        for i in self._counters:
            leaves.insert(i, next(counts))
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
        return self._state_from(self._copy_jit(self._leaves), counts)

    @state.setter
    def state(self, state: Any) -> None:
        self.learner.check_state(state)
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
        core_state = state.core if self._horde else state
        core = self.learner.core if self._horde else self.learner
        return core.predict_traced(core_state, observation)

    def _update_impl(self, leaves, inputs, parts):
        """``parts``: the names of the packed fields after the observation, in order."""
        state = self._traced_state(leaves)
        d, n = self._dim, self._n
        fields, offset = {}, d
        fields["observation"] = inputs[:d]
        for name in parts:
            size = d if name == "next_observation" else 1 if name in ("terminated", "truncated") else n
            fields[name] = inputs[offset:offset + size]
            offset += size
        if not self._horde:
            r = self.learner.update_traced(state, fields["observation"], fields["targets"])
            rows = [r.predictions, r.errors, *r.per_head_metrics.T, jnp.broadcast_to(r.trunk_bounding_metric, (n,))]
            valid = jnp.isfinite(fields["observation"]).all() & ~jnp.isinf(fields["targets"]).any()
            return self._checked_outputs(valid, leaves, r.state, rows)
        # The HordeLearner's explicit-cumulant inputs are checked on the host (their messages
        # name demons); nothing is left to refuse here.
        r = self.learner.update_traced(
            state, fields["observation"], fields["cumulants"], fields["next_observation"],
            fields["terminated"][0] > 0.5, fields["truncated"][0] > 0.5,
            fields.get("discounts"), fields.get("rhos"),
        )
        return self._checked_outputs(jnp.bool_(True), leaves, r.state, self._horde_rows(r))

    def _transition_impl(self, leaves, inputs):
        state = self._traced_state(leaves)
        d = self._dim
        obs, next_obs = inputs[:d], inputs[d:2 * d]
        reward, prob = inputs[2 * d], inputs[2 * d + 1]
        action = jax.lax.bitcast_convert_type(inputs[2 * d + 2], jnp.int32)
        terminated, truncated = inputs[2 * d + 3] > 0.5, inputs[2 * d + 4] > 0.5
        r = self.learner.update_from_transition_traced(state, obs, action, reward, next_obs, terminated, truncated, prob)
        valid = jnp.isfinite(inputs[: 2 * d]).all()
        return self._checked_outputs(valid, leaves, r.state, self._horde_rows(r))

    def _horde_rows(self, r: HordeUpdateResult) -> list:
        n = self._n
        return [
            r.predictions, r.td_errors, r.td_targets, *r.per_demon_metrics.T, r.rupee, r.ude,
            r.diverged.astype(_F32), jnp.broadcast_to(r.trunk_bounding_metric, (n,)),
        ]

    def _checked_outputs(self, valid, old_leaves, new_state, rows):
        """The new state's leaves where the packed inputs were ``valid``, else the old leaves
        bit for bit, and the result rows with ``valid`` as their last row.

        The observation and target values are checked here, inside the compiled call, rather
        than by NumPy on the host before it: XLA fuses each select into the fusion that writes
        the new leaf (which reads the old one anyway), so the check costs only its own small
        reductions, and a call at 64 heads is about 3 µs quicker than with the host checks. A
        refused call is re-checked on the host for its message (see ``_run``).
        """
        new_leaves = [jnp.where(valid, new, old) for new, old in zip(self._leaves_of(new_state), old_leaves)]
        return new_leaves, jnp.stack([*rows, jnp.broadcast_to(valid.astype(_F32), (self._n,))])

    # ---------------------------------------------------------------------------------------
    # Results

    @staticmethod
    def _core_result(out: np.ndarray) -> MultiHeadMLPUpdateResult:
        return MultiHeadMLPUpdateResult(None, out[0], out[1], out[2:5].T, out[5, 0])

    @staticmethod
    def _horde_result(out: np.ndarray) -> HordeUpdateResult:
        return HordeUpdateResult(
            None, out[0], out[1], out[2], out[3:6].T, out[9, 0],
            out[6], out[7], out[8] > 0.5,
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
        return self._core_result(self._run(self._update_jit, inputs, (("targets",),), host_checks))

    def _run(self, compiled, inputs: np.ndarray, static: tuple, host_checks) -> np.ndarray:
        """One compiled update on the packed ``inputs``; returns its result rows. Where the
        compiled call refused the inputs (the state is then unchanged), ``host_checks()`` raises
        the learner's own message for them."""
        self._leaves, out = compiled(self._leaves, inputs, *static)
        out = np.asarray(out)
        if not out[-1, 0]:
            host_checks()
            raise AssertionError("inputs refused by the compiled check passed the host checks")
        self._count_update()
        return out

    def _update_horde(
        self, observation: Any, cumulants: Any, next_observation: Any, *, terminated: bool = False,
        truncated: bool = False, discounts: Any = None, rhos: Any = None,
    ):
        learner: HordeLearner = self.learner
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
        flags = np.array(
            [check_flag("terminated", terminated), check_flag("truncated", truncated)], np.float32
        )
        pieces.append(flags)
        inputs = np.concatenate([np.asarray(p, np.float32) for p in pieces])
        # Checked above; the compiled call refuses nothing here.
        return self._horde_result(self._run(self._update_jit, inputs, (tuple(parts),), lambda: None))

    def update_from_transition(
        self, observation: Any, action: Any, reward: Any, next_observation: Any, *,
        terminated: bool = False, truncated: bool = False, behaviour_prob: float = 1.0,
    ) -> HordeUpdateResult:
        """``HordeLearner.update_from_transition`` without ``state``: the demons compute their
        cumulants, discounts and importance ratios inside the compiled call. ``action`` must
        be an integer. Returns a ``HordeUpdateResult`` with NumPy fields and ``state=None``."""
        if not self._horde:
            raise TypeError("update_from_transition needs a HordeLearner; this daemon holds a MultiHeadMLPLearner")
        # Observation values are checked inside the compiled call (see _checked_outputs).
        obs, next_obs = self.learner.checked_transition_inputs(
            self._dim, observation, reward, next_observation, behaviour_prob, check_observations=False
        )
        reward_value = concrete_values(reward)
        if reward_value is None or reward_value.size != 1:
            raise ValueError(f"reward must be one number, got {reward!r}")
        inputs = np.empty(2 * self._dim + 5, np.float32)
        inputs[: self._dim] = obs
        inputs[self._dim : 2 * self._dim] = next_obs
        inputs[2 * self._dim] = reward_value.reshape(())
        inputs[2 * self._dim + 1] = behaviour_prob
        inputs.view(np.int32)[2 * self._dim + 2] = _as_action(action)
        inputs[2 * self._dim + 3] = check_flag("terminated", terminated)
        inputs[2 * self._dim + 4] = check_flag("truncated", truncated)
        host_checks = lambda: self.learner.checked_transition_inputs(self._dim, obs, reward, next_obs, behaviour_prob)
        return self._horde_result(self._run(self._transition_jit, inputs, (), host_checks))
