"""What a run returns: ``RunResult`` (the recorded arrays, saved and loaded without pickle),
``RunError`` (a run that stopped early, with what it recorded) and ``DivergenceError`` (raised
by both runners when learning stops being finite)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from demons import DemonInfo
from horde.runs.records import (
    RECORDS_DIR,
    RECORDS_FORMAT_VERSION,
    RecordWriter,
    read_records,
    read_true_values,
    write_true_values,
)

__all__ = ["DivergenceError", "RESULT_FORMAT_VERSION", "RunError", "RunResult"]

# The format ``RunResult.save`` writes (the ``records.zarr`` store of ``horde.runs.records``);
# ``load`` also reads format 1 (``metrics.npz`` and ``run.json``) and refuses others.
RESULT_FORMAT_VERSION = RECORDS_FORMAT_VERSION


class RunError(RuntimeError):
    """A run stopped before its last step: the environment, the behaviour policy or a
    ``callback`` raised (the original exception is ``__cause__``), or learning diverged
    (``DivergenceError``).

    Attributes:
        step: the global step that failed (``start_step`` included).
        result: the ``RunResult`` of the run so far: the records of every chunk learned before
            the failure and ``state``, the last good state, after ``result.total_steps`` steps.
            A run that streams its records (``record_to``) has them on disk too.
    """

    def __init__(self, message: str, *, step: int, result: RunResult):
        super().__init__(message)
        self.step, self.result = step, result


class DivergenceError(RunError):
    """Learning produced non-finite predictions or parameters.

    Both runners raise it with the same message and the same meaning.

    Attributes:
        step: the global step of the first non-finite prediction (``start_step`` included;
            with several copies, the earliest over the copies). Where only the parameters
            became non-finite, the last step of the chunk, whose update made them so.
        demons: names of the demons affected at that step.
        result: the ``RunResult`` of the run so far: records of every step up to and
            including ``step`` (the row at ``step`` shows the non-finite values), and
            ``state``, the last good state, after ``result.total_steps`` steps (the start
            of the chunk that diverged; ``result.total_steps <= step``).
    """

    def __init__(self, message: str, *, step: int, demons: tuple[str, ...], result: RunResult):
        super().__init__(message, step=step, result=result)
        self.demons = demons


@dataclasses.dataclass
class RunResult:
    """What a run recorded, every ``record_every`` steps.

    Per-step arrays have a leading seed axis (length 1 for a single environment, the number of
    copies for a vector environment).

    Attributes:
        demon_names: the demons, in head order.
        steps: global step index of each record, ``(k,)``.
        predictions: ``v_i(S_t)`` before the update, ``(n_seeds, k, n_demons)``.
        td_errors: ``δ_i`` (NaN for inactive demons), ``(n_seeds, k, n_demons)``.
        cumulants: ``c_{i,t+1}``, ``(n_seeds, k, n_demons)``.
        discounts: ``γ_{i,t+1}`` as the demons define it (before termination), same shape.
        rewards: ``R_{t+1}``, ``(n_seeds, k)``.
        terminated: ``(n_seeds, k)`` bool.
        truncated: ``(n_seeds, k)`` bool.
        valid: ``(n_seeds, k)`` bool; False at a vector environment's autoreset steps (not
            real transitions: their per-demon values are NaN).
        episode_seed, episode_end_step, episode_return, episode_length: one entry per finished
            episode (``(E,)`` each).
        wall_time: seconds the run took (compilation included).
        total_steps: environment steps per seed.
        record_every: the recording interval.
        config: plain-data description of the run (environment, seed, policy, learner).
        state: final learner state (batched over seeds for a vector environment); not saved
            by ``save``.
        rupee: RUPEE per demon, ``(n_seeds, k, n_demons)``, when the learner tracks
            diagnostics (``HordeLearner(diagnostics=True)``); else None.
        ude: UDE per demon, same shape, or None.
        demons: one ``demons.DemonInfo`` per demon, in head order (its kinds, timescale, λ,
            terminal outcome and whether it is off-policy), so that reports read what a demon
            is as data; empty for a result built by hand without it.
        true_value_steps: global steps at which true values were estimated, ``(m,)``
            (``run_jax(..., true_value_every=...)``); None when none were.
        true_values: Monte Carlo estimates of ``E[G_i | S_t]`` at those steps,
            ``(n_seeds, m, n_demons)`` (``horde.evaluation.true_values``), or None.
        true_value_stderr: their standard errors, same shape, or None.
        actions: ``(n_seeds, start_step + total_steps)`` int32, every action a ``horde.run``
            whose behaviour acts on the learner (``EpsilonGreedy``) took from global step 0,
            the replayed ones included: what resuming it needs (``horde.run(...,
            actions=...)``); None for other runs. Not saved by ``save`` (``horde run``'s
            checkpoint holds it).
        partial: True for a run that stopped before its last step (killed, interrupted,
            diverged, or stopped by an error), as loaded from its records: it holds the
            records up to its last committed chunk; ``config["stopped"]`` says why where the
            run could say it.
    """

    demon_names: tuple[str, ...]
    steps: np.ndarray
    predictions: np.ndarray
    td_errors: np.ndarray
    cumulants: np.ndarray
    discounts: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray
    episode_seed: np.ndarray
    episode_end_step: np.ndarray
    episode_return: np.ndarray
    episode_length: np.ndarray
    wall_time: float
    total_steps: int
    record_every: int
    config: dict[str, Any]
    state: Any = None
    rupee: np.ndarray | None = None
    ude: np.ndarray | None = None
    demons: tuple[DemonInfo, ...] = ()
    true_value_steps: np.ndarray | None = None
    true_values: np.ndarray | None = None
    true_value_stderr: np.ndarray | None = None
    partial: bool = False
    actions: np.ndarray | None = None

    # Arrays that a result may lack (None): the diagnostics and the true values.
    OPTIONAL_FIELDS = ("rupee", "ude", "true_value_steps", "true_values", "true_value_stderr")
    TRUE_VALUE_FIELDS = ("true_value_steps", "true_values", "true_value_stderr")

    # The per-step and per-episode arrays, saved in ``metrics.npz`` (a class attribute, not a
    # field).
    ARRAY_FIELDS = (
        "steps",
        "predictions",
        "td_errors",
        "cumulants",
        "discounts",
        "rewards",
        "terminated",
        "truncated",
        "valid",
        "episode_seed",
        "episode_end_step",
        "episode_return",
        "episode_length",
    )

    def __post_init__(self) -> None:
        # A result is read by evaluation and plots long after it was made: check its shapes
        # here, where a wrong one can still be named, rather than in a broadcast far away.
        self.demon_names = tuple(self.demon_names)
        if not all(isinstance(name, str) for name in self.demon_names):
            raise TypeError(f"demon_names must be strings, got {self.demon_names!r}")
        n = len(self.demon_names)
        per_demon = np.shape(self.predictions)
        if len(per_demon) != 3 or per_demon[2] != n:
            raise ValueError(
                f"predictions must have shape (n_seeds, k, n_demons={n}) for the {n} demon_names, got {per_demon}"
            )
        seeds, k = per_demon[0], per_demon[1]
        expected: dict[str, tuple[Any, ...]] = {name: (seeds, k, n) for name in ("td_errors", "cumulants", "discounts")}
        expected.update({name: (seeds, k) for name in ("rewards", "terminated", "truncated", "valid")})
        expected["steps"] = (k,)
        for name in ("rupee", "ude"):
            if getattr(self, name) is not None:
                expected[name] = (seeds, k, n)
        truth = [getattr(self, name) is None for name in self.TRUE_VALUE_FIELDS]
        if any(truth) != all(truth):
            raise ValueError("true_value_steps, true_values and true_value_stderr must be given together or not at all")
        if self.true_value_steps is not None:
            m = np.shape(self.true_value_steps)[0] if np.ndim(self.true_value_steps) == 1 else -1
            expected["true_value_steps"] = (m,) if m >= 0 else (None,)
            expected["true_values"] = expected["true_value_stderr"] = (seeds, m, n)
        episodes = np.shape(self.episode_seed)
        for name in ("episode_seed", "episode_end_step", "episode_return", "episode_length"):
            expected[name] = episodes if len(episodes) == 1 else (None,)
        for name, shape in expected.items():
            got = np.shape(getattr(self, name))
            if got != shape:
                raise ValueError(f"{name} must have shape {shape} (predictions are {per_demon}), got {got}")
        infos = []
        for i, info in enumerate(self.demons):
            if isinstance(info, dict):
                info = DemonInfo(**info)
            if not isinstance(info, DemonInfo):
                raise TypeError(f"demons[{i}] must be a demons.DemonInfo (Demon.info), got {info!r}")
            infos.append(info)
        self.demons = tuple(infos)
        if self.demons and [d.name for d in self.demons] != list(self.demon_names):
            raise ValueError(
                f"demons must describe the demon_names in order (one DemonInfo each, or none), got "
                f"{[d.name for d in self.demons]} for {list(self.demon_names)}"
            )

    @property
    def n_seeds(self) -> int:
        return int(self.predictions.shape[0])

    @property
    def n_demons(self) -> int:
        return len(self.demon_names)

    @property
    def steps_per_second(self) -> float:
        """Environment steps per second over all seeds."""
        return self.total_steps * self.n_seeds / self.wall_time if self.wall_time > 0 else math.inf

    def then(self, later: RunResult) -> RunResult:
        """This run followed by ``later``, its continuation (e.g. a resumed run): per-step
        arrays joined along time, episodes and wall time added up, ``later``'s state."""
        if later.record_every != self.record_every or later.demon_names != self.demon_names:
            raise ValueError(
                "only a continuation with the same demons and record_every can be joined, got "
                f"record_every {self.record_every} and {later.record_every}"
            )
        joined: dict[str, Any] = {}
        for name in self.ARRAY_FIELDS:
            axis = 0 if name == "steps" or name.startswith("episode_") else 1
            joined[name] = np.concatenate([getattr(self, name), getattr(later, name)], axis=axis)
        for name in self.OPTIONAL_FIELDS:
            a, b = getattr(self, name), getattr(later, name)
            axis = 0 if name == "true_value_steps" else 1
            joined[name] = None if a is None or b is None else np.concatenate([a, b], axis=axis)
        return RunResult(
            demon_names=self.demon_names,
            wall_time=self.wall_time + later.wall_time,
            total_steps=self.total_steps + later.total_steps,
            record_every=self.record_every,
            config={**later.config, "start_step": self.config.get("start_step", 0)},
            state=later.state,
            demons=self.demons or later.demons,
            **joined,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the records into the run directory ``path`` as ``records.zarr`` (a Zarr
        group, see ``horde.runs.records``; no pickle), replacing any records there; returns
        ``path``. The state is not saved (checkpoints hold states)."""
        path = Path(path)
        store = path / RECORDS_DIR
        if store.exists():
            shutil.rmtree(store)
        writer = RecordWriter(
            path,
            demon_names=self.demon_names,
            demons=[d._asdict() for d in self.demons],
            record_every=self.record_every,
            n_seeds=self.n_seeds,
            diagnostics=self.rupee is not None and self.ude is not None,
            config=self.config,
            first_step=int(self.config.get("start_step", 0)),
            rows_per_chunk=max(1, min(len(self.steps), 8192)),
        )
        rows = {name: np.asarray(getattr(self, name)) for name in self.ARRAY_FIELDS if not name.startswith("episode_")}
        if self.rupee is not None and self.ude is not None:
            rows.update(rupee=np.asarray(self.rupee), ude=np.asarray(self.ude))
        episodes = {name: np.asarray(getattr(self, name)) for name in self.ARRAY_FIELDS if name.startswith("episode_")}
        writer.append(rows, episodes, int(self.config.get("start_step", 0)) + self.total_steps, self.wall_time)
        writer.close(complete=not self.partial, stopped=self.config.get("stopped"))
        if self.true_values is not None:
            write_true_values(path, self.true_value_steps, self.true_values, self.true_value_stderr)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunResult:
        """Reads a run directory: the records a run streamed there (``record_to``, the
        ``horde run`` command) or ``save`` wrote, or a directory of the earlier format
        (``metrics.npz`` and ``run.json``).

        A run that stopped before its last step (killed, interrupted, diverged, stopped by
        an error) loads with the records of its last committed chunk, ``partial=True`` and a
        ``UserWarning`` saying so.

        Raises:
            FileNotFoundError: ``path`` holds no records.
            ValueError: they cannot be read.
        """
        path = Path(path)
        if (path / RECORDS_DIR / "zarr.json").exists() or (path.name == RECORDS_DIR and path.exists()):
            meta, arrays = read_records(path)
            result = cls(
                demon_names=tuple(meta["demon_names"]),
                wall_time=float(meta["wall_time"]),
                total_steps=int(meta["total_steps"]),
                record_every=int(meta["record_every"]),
                config=meta["config"],
                demons=tuple(DemonInfo(**d) for d in meta.get("demons", [])),
                partial=not meta["complete"],
                **arrays,
                **read_true_values(path),
            )
            if result.partial:
                why = meta.get("stopped") or "killed, or still running"
                warnings.warn(
                    f"{path} holds a partial run ({why}): the records of its first "
                    f"{result.total_steps} steps, up to its last committed chunk",
                    UserWarning,
                    stacklevel=2,
                )
            return result
        return cls._load_npz(path)

    @classmethod
    def _load_npz(cls, path: Path) -> RunResult:
        # The format written before records were streamed (format_version 1).
        meta_file, npz_file = path / "run.json", path / "metrics.npz"
        for f in (meta_file, npz_file):
            if not f.exists():
                raise FileNotFoundError(f"{f} not found: {path} is not a saved run")
        try:
            meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{meta_file} is not valid JSON: {e}") from e
        version = meta.get("format_version")
        if version != 1:
            raise ValueError(f"{meta_file} has format_version {version!r}, expected 1 (or a {RECORDS_DIR} store)")
        try:
            with np.load(npz_file, allow_pickle=False) as data:
                arrays = {name: data[name] for name in cls.ARRAY_FIELDS}
                for name in cls.OPTIONAL_FIELDS:
                    if name in data.files:
                        arrays[name] = data[name]
        except Exception as e:  # zipfile/npz errors vary by corruption
            raise ValueError(f"{npz_file} could not be read: {e}") from e
        return cls(
            demon_names=tuple(meta["demon_names"]),
            wall_time=float(meta["wall_time"]),
            total_steps=int(meta["total_steps"]),
            record_every=int(meta["record_every"]),
            config=meta["config"],
            demons=tuple(DemonInfo(**d) for d in meta.get("demons", [])),
            **arrays,
        )
