"""The recording layer both runners share: what is recorded inside a compiled chunk, how the
host collects it, where a divergence happened and how it is reported, the progress bar and
the assembly of the ``RunResult``.

Inside a chunk of ``T`` steps (``lax.scan``), per-demon values are kept only at the record
steps ``offset + every·k`` (global step ``% every == 0``), in small buffers carried through the
loop: nothing of size ``T x n_demons`` is materialised. Step ``j`` writes slot
``ceil((j - offset) / every)``, so the last write to slot ``k`` comes from record step
``offset + k·every``; steps after the chunk's last record step spill into one extra slot.
The carry also tracks the first step with a non-finite prediction (``DivergenceWatch``), so a
divergence is located to the step whatever the chunk size.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from horde.control import ControlLearner, check_greedy_in
from horde.core import as_int
from horde.runs.records import RecordsError, RecordWriter
from horde.runs.results import DivergenceError, RunError, RunResult
from horde.td import HordeLearner

__all__ = [
    "finish_chunk",
    "CAUSE_DISCOUNT",
    "CAUSE_POLICY_NEGATIVE",
    "CAUSE_POLICY_SUM",
    "CAUSE_PREDICTION",
    "CAUSE_RATIO",
    "CAUSE_REWARD",
    "POLICY_SUM_TOLERANCE",
    "DivergenceWatch",
    "Progress",
    "Recorder",
    "assemble_result",
    "check_off_policy",
    "compiled_cache",
    "divergence_error",
    "empty_records",
    "learner_config",
    "locate_divergence",
    "open_records",
    "positive_int",
    "record_names",
    "record_slot",
    "record_values",
    "state_finite_fn",
    "target_policy_check",
    "write_records",
]

# ---------------------------------------------------------------------------------------------
# Arguments

Learner = HordeLearner | ControlLearner
"""What the runners drive: a Horde of prediction demons, or control demons with one around them."""


def positive_int(name: str, value: Any) -> int:
    """``value`` as an ``int``; ``ValueError`` naming ``name`` unless it is an integer >= 1
    (``horde.core.as_int``: a bool or a float is not an integer)."""
    return as_int(name, value, low=1, expected="a positive integer")


def learner_config(learner: Learner) -> dict[str, Any] | None:
    """``learner.to_config()`` when it is plain JSON data (a run's ``config["learner"]``), else
    None (e.g. demons with Python callables)."""
    try:
        config = learner.to_config()
        json.dumps(config)
    except (ValueError, TypeError):
        return None
    return config


def check_off_policy(learner: Learner, action_space: gym.Space, policy: str, has_probabilities: bool) -> None:
    """Refuses a behaviour policy that cannot give the learner's off-policy demons their
    importance ratios ``ρ = π(a|s) / μ(a|s)``.

    Args:
        learner: the learner whose demons are checked.
        action_space: the environment's (single) action space.
        policy: the behaviour policy, as shown in the message.
        has_probabilities: whether the policy reports ``μ(a|s)`` for the actions it takes.

    Raises:
        ValueError: an off-policy demon with a non-``Discrete`` action space or with a policy
            that gives no probabilities (the message names up to three such demons), or a
            ``greedy_in`` demon without a ``ControlLearner``.
    """
    if not isinstance(learner, ControlLearner) and hasattr(learner, "demons"):
        check_greedy_in(learner.demons, None)
    off = [name for name, o in zip(learner.names, learner.demons.is_off_policy) if o]
    if not off:
        return
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(
            f"off-policy demons {off[:3]} need a Discrete action space and the behaviour "
            f"policy's action probabilities, got the action space {action_space!r} (continuous "
            "actions have no probability mass): use on-policy demons"
        )
    if not has_probabilities:
        raise ValueError(
            f"policy {policy} gives no action probabilities, but demons {off[:3]} are "
            "off-policy and need mu(a|s) for their importance ratios: use FixedProbabilities "
            "or StateProbabilities"
        )


# ---------------------------------------------------------------------------------------------
# Inside the compiled chunk


def compiled_cache(learner: Learner) -> dict:
    """A dict, stored on ``learner``, for the runners' compiled functions of that learner.

    The compiled functions close over the learner, so they must live exactly as long as it
    does: a module-level cache keyed by the learner would keep every learner alive. Writing
    one key into the learner's instance dict is the one place this package touches another
    object's attributes.
    """
    return learner.__dict__.setdefault("_horde_runs_compiled", {})


def record_names(learner: Learner) -> tuple[str, ...]:
    """The per-demon values recorded each record step, in buffer order."""
    names = ("predictions", "td_errors", "cumulants", "discounts")
    return names + ("rupee", "ude") if learner.diagnostics else names


def record_values(learner: Learner, result: Any, evaluation: Any) -> tuple[jax.Array, ...]:
    """The values named by ``record_names`` from one update's result and its demons'
    evaluation (traced)."""
    values = (result.predictions, result.td_errors, evaluation.cumulants, evaluation.discounts)
    return values + (result.rupee, result.ude) if learner.diagnostics else values


def empty_records(learner: Learner, T: int, every: int) -> tuple[jax.Array, ...]:
    """Zeroed record buffers for a chunk of ``T`` steps: ``ceil(T / every) + 1`` rows (the last
    one takes the spill) of ``n_demons`` float32 each, one per ``record_names``."""
    rows = -(-T // every) + 1
    return tuple(jnp.zeros((rows, learner.n_demons), jnp.float32) for _ in record_names(learner))


def record_slot(j: jax.Array, offset: jax.Array, every: int, T: int) -> jax.Array:
    """The buffer row that chunk step ``j`` writes (see the module docstring); ``offset`` is
    the chunk's first record step."""
    return jnp.minimum((j - offset + every - 1) // every, -(-T // every))


def write_records(buffers: tuple, values: tuple, slot: jax.Array) -> tuple:
    """``buffers`` with row ``slot`` of each set to the matching value (traced)."""
    return tuple(jax.lax.dynamic_update_index_in_dim(b, v.astype(b.dtype), slot, 0) for b, v in zip(buffers, values))


#: ``DivergenceWatch.cause`` codes: why a demon's step was bad.
CAUSE_PREDICTION, CAUSE_DISCOUNT, CAUSE_RATIO, CAUSE_POLICY_SUM, CAUSE_POLICY_NEGATIVE, CAUSE_REWARD = 0, 1, 2, 3, 4, 5

#: How far a user target policy's probabilities may sum from 1 (float32 rounding of, e.g., a
#: softmax over many actions stays far below it).
POLICY_SUM_TOLERANCE = 1e-3


def target_policy_check(learner: Learner):
    """The in-step check of the demons whose target policy is a user function
    (``demons.policies.function``): their probabilities ``π(·|S_t)`` must be finite, ``>= 0``
    and sum to 1 (within ``POLICY_SUM_TOLERANCE``).

    Only the runners call it, beside the learner's own step, so the learner's step (and its
    jaxpr) is the same with or without user policies; XLA computes each function once.

    Args:
        learner: the runner's learner.

    Returns:
        None when no demon has a user-function target policy (nothing to check); else
        ``check(observation) -> (cause, value)``, traceable, int32 and float32
        ``(n_demons,)``: ``CAUSE_POLICY_NEGATIVE`` with the smallest probability (NaN when
        one is NaN), else ``CAUSE_POLICY_SUM`` with the sum, else 0.
    """
    if not isinstance(learner, HordeLearner):
        return None
    groups: dict[int, tuple[Any, list[int]]] = {}
    for i, demon in enumerate(learner.demons):
        policy = demon.target_policy
        if policy is not None and getattr(policy, "kind", None) == "function":
            groups.setdefault(id(getattr(policy, "fn", policy)), (policy, []))[1].append(i)
    if not groups:
        return None
    n = learner.n_demons
    specs = [(policy, np.asarray(rows, np.int32)) for policy, rows in groups.values()]

    def check(observation):
        cause = jnp.zeros((n,), jnp.int32)
        value = jnp.zeros((n,), jnp.float32)
        for policy, rows in specs:  # one call per distinct user function, not per demon
            probs = policy(observation)
            low, total = jnp.min(probs), jnp.sum(probs)
            negative = ~(low >= 0)  # NaN fails it too
            off_sum = ~(jnp.abs(total - 1.0) <= POLICY_SUM_TOLERANCE)
            code = jnp.where(negative, CAUSE_POLICY_NEGATIVE, jnp.where(off_sum, CAUSE_POLICY_SUM, 0))
            cause = cause.at[rows].set(code)
            value = value.at[rows].set(jnp.where(negative, low, total))
        return cause, value

    return check


class DivergenceWatch(NamedTuple):
    """Where a chunk first went wrong, carried through its scan: a non-finite prediction, or a
    demon whose own functions left their range (a discount outside ``[0, 1]`` or NaN, an
    importance ratio that is NaN or negative, i.e. a target-policy probability that is NaN or
    negative for the action taken), a user target policy whose probabilities are not a
    distribution (``target_policy_check``), or a NaN reward from a JAX environment. All but the
    first are faults of the question or the environment, not of the step size, and are
    reported as such. (An infinite cumulant, e.g. from an infinite reward, is left to show as
    the divergence it causes.)

    Attributes:
        any: whether anything went wrong so far, bool ``()``.
        first: chunk step of the first fault, int32 ``()`` (0 while ``any`` is False).
        mask: at that step, which demons were at fault, bool ``(n_demons,)``.
        cause: at that step, per demon, ``CAUSE_PREDICTION`` (a non-finite prediction),
            ``CAUSE_DISCOUNT``, ``CAUSE_RATIO``, ``CAUSE_POLICY_SUM``, ``CAUSE_POLICY_NEGATIVE``
            or ``CAUSE_REWARD``, int32 ``(n_demons,)``.
        value: at that step, per demon, the value at fault (the discount, the ratio, the
            policy's sum or smallest probability, the reward),
            float32 ``(n_demons,)``.
    """

    any: jax.Array
    first: jax.Array
    mask: jax.Array
    cause: jax.Array
    value: jax.Array

    @classmethod
    def start(cls, n_demons: int) -> DivergenceWatch:
        """Nothing seen yet."""
        return cls(
            jnp.zeros((), bool),
            jnp.zeros((), jnp.int32),
            jnp.zeros((n_demons,), bool),
            jnp.zeros((n_demons,), jnp.int32),
            jnp.zeros((n_demons,), jnp.float32),
        )

    def see(
        self,
        j: jax.Array,
        predictions: jax.Array,
        live: Any = True,
        evaluation: Any = None,
        faults: tuple[jax.Array, jax.Array] | None = None,
    ) -> DivergenceWatch:
        """After chunk step ``j`` predicted ``predictions`` (ignored where ``live`` is False:
        a vector environment's autoreset step), with the demons' ``evaluation`` of the step
        (``demons.Evaluation``: discounts and ratios are checked) when given, and ``faults``
        found by the runner, ``(cause, value)`` per demon (0 where none: see
        ``target_policy_check``), when given."""
        cause = jnp.zeros(predictions.shape, jnp.int32)
        value = jnp.zeros(predictions.shape, jnp.float32)
        checks: list[tuple[Any, Any, Any]] = []
        if faults is not None:
            checks.append((faults[0], faults[0] > 0, faults[1]))
        if evaluation is not None:
            d, rho = evaluation.discounts, evaluation.rhos
            checks.append((CAUSE_RATIO, ~(rho >= 0), rho))  # NaN fails it too
            checks.append((CAUSE_DISCOUNT, ~((d >= 0) & (d <= 1)), d))
        # The last one written wins: a discount fault is named first, then the importance
        # ratio (the value that entered the update), then the rest of the target policy.
        for code, bad_value, v in checks:
            cause = jnp.where(bad_value, code, cause)
            value = jnp.where(bad_value, v.astype(jnp.float32), value)
        bad = (~jnp.isfinite(predictions) | (cause > 0)) & live
        new = bad.any() & ~self.any
        return DivergenceWatch(
            self.any | bad.any(),
            jnp.where(new, j, self.first),
            jnp.where(new, bad, self.mask),
            jnp.where(new, cause, self.cause),
            jnp.where(new, value, self.value),
        )


def state_finite_fn(learner: Learner, batched: bool):
    """Compiled check of a learner state (batched over copies when ``batched``): per demon,
    are the parameters it predicts with finite (``finite_demons``)? ``fn(state) -> bool (n_demons,)`` (or
    ``(n_copies, n_demons)``)."""
    cache = compiled_cache(learner)
    key = ("finite", batched)
    if key not in cache:
        finite = learner.finite_demons  # each learner knows its own layout

        cache[key] = jax.jit(jax.vmap(finite) if batched else finite)
    return cache[key]


# ---------------------------------------------------------------------------------------------
# On the host


def locate_divergence(watch: DivergenceWatch, finite_after: np.ndarray, T: int) -> tuple[int, int, np.ndarray] | None:
    """Where a checked chunk of ``T`` steps diverged, or None where it did not.

    Args:
        watch: the chunk's final ``DivergenceWatch`` as NumPy, with a leading copy axis.
        finite_after: ``state_finite_fn`` of the state after the chunk, ``(n_copies, n_demons)``.
        T: the chunk's length.

    Returns:
        ``(copy, chunk_step, demon_indices)`` of the earliest non-finite prediction over the
        copies (the lowest copy on a tie); where every prediction was finite but a state is
        not, the last step of the chunk (its update made the parameters non-finite).
    """
    bad = np.asarray(watch.any)
    if bad.any():
        first = np.where(bad, np.asarray(watch.first), T)
        copy = int(np.argmin(first))
        return copy, int(first[copy]), np.flatnonzero(np.asarray(watch.mask)[copy])
    if finite_after.all():
        return None
    copy = int(np.argwhere(~finite_after.all(axis=-1))[0][0])
    return copy, T - 1, np.flatnonzero(~finite_after[copy])


def divergence_error(
    learner: Learner,
    *,
    step: int,
    copy: int,
    n_copies: int,
    seed: int,
    demons: np.ndarray,
    result: RunResult,
    watch: DivergenceWatch | None = None,
) -> DivergenceError:
    """The ``DivergenceError`` of both runners, with its one message.

    Args:
        learner: the learner (for the demons' names).
        step: global step of the first non-finite value.
        copy: the copy (seed index) where it happened.
        n_copies: copies in the run (the copy is named when there are several).
        seed: the run's seed (copy ``i`` uses ``seed + i``).
        demons: indices of the demons affected.
        result: the result recorded up to ``step``, with the last good state.
        watch: the chunk's ``DivergenceWatch`` as NumPy with a leading copy axis; where its
            causes name a demon's function, the message names the function's fault instead
            of a divergence.
    """
    names = [learner.names[i] for i in demons]
    if watch is not None and bool(np.asarray(watch.any)[copy]):
        causes, values = np.asarray(watch.cause)[copy], np.asarray(watch.value)[copy]
        faults = [i for i in demons if causes[i] != CAUSE_PREDICTION]
        if any(causes[i] == CAUSE_REWARD for i in faults):
            where = f" in copy {copy} (seed {seed + copy})" if n_copies > 1 else ""
            return DivergenceError(
                f"the environment returned a NaN reward at step {step}{where}; a reward must be a "
                f"number (a NaN would make every reward demon silently skip the step). error.result "
                f"holds the records up to that step and the last good state (after {result.total_steps} steps).",
                step=step,
                demons=tuple(learner.names[i] for i in faults),
                result=result,
            )
        if faults:
            return _question_fault_error(learner, step, copy, n_copies, seed, faults, causes, values, result)
    shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    where = f" in copy {copy} (seed {seed + copy})" if n_copies > 1 else ""
    return DivergenceError(
        f"learning diverged at step {step}{where}: non-finite predictions (or parameters after "
        f"that step's update) for demon{'s' if len(names) > 1 else ''} {shown}. error.result "
        f"holds the records up to that step and the last good state (after "
        f"{result.total_steps} steps); try a smaller step size or ObGDBounding.",
        step=step,
        demons=tuple(names),
        result=result,
    )


_FAULTS = {
    CAUSE_DISCOUNT: "its discount is {v:g}, outside [0, 1] (γ must be a probability of continuing)",
    CAUSE_RATIO: (
        "its importance ratio π(a|s)/μ(a|s) is {v:g}: its target policy's probabilities are not a "
        "distribution (each must be finite and >= 0, and they must sum to 1)"
    ),
    CAUSE_POLICY_SUM: (
        "its target policy's probabilities sum to {v:g}, not 1 (within "
        + f"{POLICY_SUM_TOLERANCE:g}): π(·|s) must be a distribution"
    ),
    CAUSE_POLICY_NEGATIVE: "its target policy gives a probability of {v:g} (each must be finite and >= 0)",
}


def _question_fault_error(learner, step, copy, n_copies, seed, faults, causes, values, result) -> DivergenceError:
    """The error of a demon whose own functions left their range (see ``DivergenceWatch``)."""
    where = f" in copy {copy} (seed {seed + copy})" if n_copies > 1 else ""
    parts = [f"demon {learner.names[i]!r}: " + _FAULTS[int(causes[i])].format(v=float(values[i])) for i in faults[:5]]
    more = f"; and {len(faults) - 5} more demons" if len(faults) > 5 else ""
    names = tuple(learner.names[i] for i in faults)
    return DivergenceError(
        f"a demon's question left its range at step {step}{where}: " + "; ".join(parts) + more + ". This is a "
        "fault of the demon's own function (custom discount or target policy), not of the step size: "
        f"fix the function. error.result holds the records up to that step and the last good state (after "
        f"{result.total_steps} steps).",
        step=step,
        demons=names,
        result=result,
    )


class Recorder:
    """Collects the recorded rows of checked chunks, in order, on the host, and streams each
    committed chunk to a run directory's ``records.zarr`` when given a ``RecordWriter``.

    Args:
        n_seeds: copies (leading axis of every array).
        n_demons: demons.
        record_every: the recording interval (global step ``% record_every == 0``).
        writer: where to stream the records, or None.
    """

    _PER_DEMON = ("predictions", "td_errors", "cumulants", "discounts", "rupee", "ude")
    _PER_STEP = ("rewards", "terminated", "truncated", "valid")

    def __init__(self, n_seeds: int, n_demons: int, record_every: int, writer: RecordWriter | None = None):
        self.n_seeds, self.n_demons, self.every = n_seeds, n_demons, record_every
        self.parts: dict[str, list[np.ndarray]] = {k: [] for k in ("steps", *self._PER_DEMON, *self._PER_STEP)}
        self.writer = writer
        self._sent = 0  # parts already handed to the writer
        self._episodes_until: int | None = None  # episodes ending before this step were sent

    def add(self, start: int, buffers, rewards, terminated, truncated, valid) -> None:
        """Adds the chunk that starts at global step ``start``.

        Args:
            start: global step of the chunk's first step.
            buffers: the chunk's record buffers, ``(n_seeds, slots, n_demons)`` each, in
                ``record_names`` order.
            rewards: every step of the chunk, ``(n_seeds, T)``; only these ``T`` steps are
                recorded (a diverged chunk passes the steps up to its divergence).
            terminated: same shape, bool.
            truncated: same shape, bool.
            valid: same shape, bool (False at a vector environment's autoreset steps).
        """
        T = rewards.shape[1]
        offset = (-start) % self.every
        idx = np.arange(offset, T, self.every)
        if idx.size == 0:
            return
        self.parts["steps"].append(start + idx)
        for name, arr in zip(self._PER_DEMON, buffers):
            arr = np.asarray(arr)[:, : idx.size]
            if not valid.all():
                arr = np.where(valid[:, idx, None], arr, np.nan)
            self.parts[name].append(arr)
        for name, arr in zip(self._PER_STEP, (rewards, terminated, truncated, valid)):
            self.parts[name].append(arr[:, idx])

    def commit(self, first_step: int, last_step: int, episodes: list[tuple[int, int, float, int]], wall: float) -> None:
        """Streams the rows added since the last commit, and the episodes that ended before
        ``last_step`` (the global step the learned state has reached), to the writer.

        Args:
            first_step: the run's first global step (episodes before it are not the run's).
            last_step: the global step the learned state has reached.
            episodes: every finished episode so far, ``(copy, end step, return, length)``.
            wall: seconds the run has taken.

        Raises:
            RecordsError: an earlier chunk could not be written.
        """
        if self.writer is None:
            return
        n = len(self.parts["steps"])
        rows = {
            name: np.concatenate(parts[self._sent : n], axis=0 if name == "steps" else 1)
            for name, parts in self.parts.items()
            if parts[self._sent : n]
        }
        if not rows:
            rows = {"steps": np.zeros((0,), np.int64)}
        since = first_step if self._episodes_until is None else self._episodes_until
        new = sorted((e for e in episodes if since <= e[1] < last_step), key=lambda e: (e[1], e[0]))
        self._sent, self._episodes_until = n, max(since, last_step)
        self.writer.append(rows, _episode_arrays(new), last_step, wall)

    def arrays(self) -> dict[str, Any]:
        """The recorded arrays, named as ``RunResult``'s fields (``rupee`` and ``ude`` None
        where they were not recorded)."""
        out: dict[str, np.ndarray | None] = {}
        for name, parts in self.parts.items():
            if name in ("rupee", "ude"):
                out[name] = np.concatenate(parts, axis=1) if parts else None
            elif parts:
                out[name] = np.concatenate(parts, axis=0 if name == "steps" else 1)
            elif name == "steps":
                out[name] = np.zeros((0,), np.int64)
            elif name in self._PER_STEP:
                out[name] = np.zeros((self.n_seeds, 0), np.float32 if name == "rewards" else bool)
            else:
                out[name] = np.zeros((self.n_seeds, 0, self.n_demons), np.float32)
        return out


def finish_chunk(
    recorder: Recorder,
    *,
    first_step: int,
    step: int,
    episodes: list[tuple[int, int, float, int]],
    wall: float,
    state: Any,
    result: Callable[[], RunResult],
    callback: Any,
    stop: Callable[[str], None],
) -> None:
    """The end of a learned chunk in ``horde.run``: commits its records (``Recorder.commit``),
    then calls ``callback(step, state)``.

    Args:
        first_step: the run's first global step; ``step``: the global step reached.
        result: builds the run's result so far (for the error).
        stop: closes the records store as stopped, with the reason.

    Raises:
        RunError: the records could not be written, or ``callback`` raised; ``error.result``
            holds the records and ``state``, and the cause is ``__cause__``.
    """
    try:
        recorder.commit(first_step, step, episodes, wall)
    except RecordsError as e:
        raise RunError(
            f"{e}; the run stopped after step {step}: error.result holds its records and state",
            step=step,
            result=result(),
        ) from e
    if callback is None:
        return
    try:
        callback(step, state)
    except Exception as e:
        stop(f"the callback raised {type(e).__name__} after step {step}: {e}")
        raise RunError(
            f"the callback raised {type(e).__name__} after step {step}: {e}. "
            "error.result holds the records and the state after that step",
            step=step,
            result=result(),
        ) from e


def open_records(
    record_to: Any, learner: Learner, *, record_every: int, n_seeds: int, config: dict, chunk_size: int
) -> RecordWriter | None:
    """The ``RecordWriter`` of a run that streams its records to the directory ``record_to``
    (None: it does not), appending after ``config["start_step"]``.

    Raises:
        RecordsError: the store cannot be written, or one there belongs to another run.
    """
    if record_to is None:
        return None
    if not isinstance(record_to, (str, os.PathLike)):
        raise ValueError(f"record_to must be a directory path (str or os.PathLike) or None, got {record_to!r}")
    return RecordWriter(
        record_to,
        demon_names=learner.names,
        demons=[d.info._asdict() for d in learner.demons],
        record_every=record_every,
        n_seeds=n_seeds,
        diagnostics=bool(learner.diagnostics),
        config=config,
        first_step=int(config.get("start_step", 0)),
        rows_per_chunk=max(64, -(-chunk_size // record_every) + 1),
    )


def _episode_arrays(episodes: list[tuple[int, int, float, int]]) -> dict[str, Any]:
    e = np.asarray(episodes, dtype=np.float64).reshape(-1, 4)
    return {
        "episode_seed": e[:, 0].astype(np.int64),
        "episode_end_step": e[:, 1].astype(np.int64),
        "episode_return": e[:, 2],
        "episode_length": e[:, 3].astype(np.int64),
    }


def assemble_result(
    learner: Learner,
    recorder: Recorder,
    episodes: list[tuple[int, int, float, int]],
    *,
    wall: float,
    done: int,
    record_every: int,
    config: dict[str, Any],
    state: Any,
) -> RunResult:
    """The ``RunResult`` of ``done`` learned steps.

    Args:
        learner: the learner (demon names and ``DemonInfo``).
        recorder: the recorded rows.
        episodes: finished episodes as ``(copy, end step, return, length)``; those that ended
            within the ``done`` steps are kept, in (step, copy) order.
        wall: seconds the run took.
        done: steps learned into ``state`` (per copy).
        record_every: the recording interval.
        config: the run's plain-data description.
        state: the learner state after ``done`` steps.
    """
    last = config.get("start_step", 0) + done
    kept = sorted((e for e in episodes if e[1] < last), key=lambda e: (e[1], e[0]))
    return RunResult(
        demon_names=learner.names,
        wall_time=wall,
        total_steps=int(done),
        record_every=int(record_every),
        config=config,
        state=state,
        demons=tuple(d.info for d in learner.demons),
        **recorder.arrays(),
        **_episode_arrays(kept),
    )


class Progress:
    """tqdm bar with steps/s and the mean recent |TD error|; silent when disabled.

    Args:
        total: steps over all copies.
        enabled: show it; None: when stderr is a terminal.
    """

    def __init__(self, total: int, enabled: bool | None):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, mininterval=0.5)

    def update(self, n: int, td_errors) -> None:
        """``n`` more steps; ``td_errors`` (any shape, NaN ignored) give the shown |δ|."""
        if self.bar is None:
            return
        with np.errstate(all="ignore"):
            err = float(np.nanmean(np.abs(np.asarray(td_errors)))) if np.size(td_errors) else float("nan")
        self.bar.set_postfix_str(f"|δ| {err:.3g}", refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
