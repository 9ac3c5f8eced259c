"""A run's records on disk: a Zarr (v3) group that grows one chunk of steps at a time.

``records.zarr`` in a run directory is a plain Zarr group, readable without horde::

    import zarr
    g = zarr.open_group("runs/my-run/records.zarr", mode="r")
    n = g.attrs["horde"]["n_records"]
    predictions = g["predictions"][:, :n]          # (n_seeds, k, n_demons), NumPy
    # or: xarray.open_zarr("runs/my-run/records.zarr"), dimensions named seed, record, demon

Arrays (dimension names in brackets): ``steps`` [record]; ``predictions``, ``td_errors``,
``cumulants``, ``discounts`` and, with diagnostics, ``rupee`` and ``ude`` [seed, record,
demon]; ``rewards``, ``terminated``, ``truncated``, ``valid`` [seed, record];
``episode_seed``, ``episode_end_step``, ``episode_return``, ``episode_length`` [episode];
where true values were estimated after the run (``run_jax(..., true_value_every=...)``),
``true_value_steps`` [sample] and ``true_values``, ``true_value_stderr`` [seed, sample, demon]. The
group's ``attrs["horde"]`` holds the rest: the demon names and descriptions, ``record_every``,
the run's config, ``first_step``, the committed counts ``n_records``, ``n_episodes`` and
``total_steps``, the wall time, and ``complete`` (False while the run is going on or after it
stopped early, with the reason in ``stopped``).

Crash safety. Every file of the store is written whole or not at all (Zarr's local store
writes a temporary file and renames it). A chunk of records is appended in this order: every
array is grown and written, its files are flushed to disk, then the group's attributes are
rewritten with the new counts. The counts are the commit: a run killed in the middle of an
append leaves arrays a little longer than ``n_records`` (or ``n_episodes``), and those extra
rows are not part of the run; reading through ``RunResult.load`` (or slicing to the counts,
as above) gives exactly the records of the last committed chunk. Appending again (a resumed
run) first cuts the arrays back to the counts.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "RECORDS_DIR",
    "RECORDS_FORMAT_VERSION",
    "RecordWriter",
    "RecordsError",
    "read_records",
    "read_true_values",
    "write_true_values",
]

#: The store's directory name inside a run directory.
RECORDS_DIR = "records.zarr"

#: Bumped when the store's layout changes meaning; ``read_records`` refuses others.
RECORDS_FORMAT_VERSION = 2

PER_DEMON = ("predictions", "td_errors", "cumulants", "discounts", "rupee", "ude")
PER_STEP = ("rewards", "terminated", "truncated", "valid")
EPISODE = ("episode_seed", "episode_end_step", "episode_return", "episode_length")
_DTYPES = {
    "steps": np.int64,
    "rewards": np.float32,
    "terminated": bool,
    "truncated": bool,
    "valid": bool,
    "episode_seed": np.int64,
    "episode_end_step": np.int64,
    "episode_return": np.float64,
    "episode_length": np.int64,
}


class RecordsError(OSError):
    """A run's records could not be written or read (disk full, permissions, a damaged store)."""


def _dims(name: str) -> tuple[str, ...]:
    if name == "steps":
        return ("record",)
    if name in PER_DEMON:
        return ("seed", "record", "demon")
    if name in PER_STEP:
        return ("seed", "record")
    return ("episode",)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # a chunk equal to the fill value is not written
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: The run settings an appended run must share with the stored records' run (where both record
#: them): the stream and the learner. Lengths and chunking may differ.
_RUN_IDENTITY = ("env", "env_kwargs", "seed", "n_seeds", "policy", "learner")


def _compressors() -> tuple[Any, ...]:
    """Zstandard, then a CRC-32C of each compressed chunk: a chunk damaged on disk fails its
    checksum when read (``read_records`` names the store) instead of reading back as other
    numbers."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return (ZstdCodec(level=0), Crc32cCodec())


class RecordWriter:
    """Appends a run's records to ``records.zarr`` in a run directory, one chunk at a time, on
    a background thread: the run goes on learning while a chunk is written; chunks are
    committed in order, each whole and only after the ones before it.

    Args:
        run_dir: the run directory (created if missing).
        demon_names: the demons, in head order.
        demons: their ``DemonInfo`` as plain dicts.
        record_every: the recording interval.
        n_seeds: copies (leading axis of the per-seed arrays).
        diagnostics: whether ``rupee`` and ``ude`` are recorded.
        config: the run's plain-data description.
        first_step: the global step the run (or the resumed run) starts at. Where a store
            already exists, it must describe the same demons, interval and copies and begin
            at or before ``first_step``; records at or after ``first_step`` are cut off (a
            resumed run records them again) and the new ones are appended.
        rows_per_chunk: rows of a Zarr chunk along the record axis.
        fsync: flush every written file to disk before its chunk is committed (survives a
            power cut, not only a killed process).
        max_pending: chunks that may wait while one is being written; ``append`` blocks
            beyond that, so the records on disk are never more than this many chunks behind.

    Raises:
        RecordsError: the store cannot be created, or an existing one does not fit.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        demon_names: tuple[str, ...],
        demons: list[dict],
        record_every: int,
        n_seeds: int,
        diagnostics: bool,
        config: dict[str, Any],
        first_step: int = 0,
        rows_per_chunk: int = 1024,
        fsync: bool = True,
        max_pending: int = 4,
    ) -> None:
        import zarr

        self.path = Path(run_dir) / RECORDS_DIR
        self.fsync = fsync
        self.names = ("steps", *PER_DEMON[: 6 if diagnostics else 4], *PER_STEP, *EPISODE)
        n = len(demon_names)
        try:
            exists = (self.path / "zarr.json").exists()
            if exists:
                self.group: Any = zarr.open_group(self.path, mode="r+")
                stored: Any = self.group.attrs.get("horde", {})
                self.meta = self._resume(
                    dict(stored), demon_names, record_every, n_seeds, diagnostics, first_step, config
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.group = zarr.open_group(self.path, mode="w")
                for name in self.names:
                    dims = _dims(name)
                    full = {"seed": n_seeds, "record": 0, "demon": n, "episode": 0}
                    chunk = {"seed": n_seeds, "record": rows_per_chunk, "demon": n, "episode": 4096}
                    dtype = _DTYPES.get(name, np.float32)
                    self.group.create_array(
                        name,
                        shape=tuple(full[d] for d in dims),
                        chunks=tuple(chunk[d] for d in dims),
                        dtype=dtype,
                        fill_value=np.nan if np.dtype(dtype).kind == "f" else 0,
                        dimension_names=dims,
                        compressors=_compressors(),
                    )
                self.meta = {
                    "format": "horde-run-records",
                    "format_version": RECORDS_FORMAT_VERSION,
                    "demon_names": list(demon_names),
                    "demons": demons,
                    "record_every": int(record_every),
                    "n_seeds": int(n_seeds),
                    "diagnostics": bool(diagnostics),
                    "first_step": int(first_step),
                    "n_records": 0,
                    "n_episodes": 0,
                    "total_steps": 0,
                    "wall_time": 0.0,
                    "complete": False,
                    "stopped": None,
                    # Chunks are written even when all fill values, so a missing one is damage.
                    "every_chunk_written": True,
                }
            self.meta["config"] = copy.deepcopy(config)
            self.meta["complete"], self.meta["stopped"] = False, None
            self._commit()
        except (OSError, ValueError) as e:
            raise RecordsError(f"cannot write the records in {self.path}: {type(e).__name__}: {e}") from e
        self.max_pending = max_pending
        self._pending: list[tuple[str, Any]] = []
        self._writing = False
        self._ready = threading.Condition()
        self._async_arrays: dict[str, Any] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="horde-records", daemon=True)
        self._thread.start()

    def _resume(self, meta, demon_names, record_every, n_seeds, diagnostics, first_step, config) -> dict:
        if meta.get("format") != "horde-run-records" or meta.get("format_version") != RECORDS_FORMAT_VERSION:
            raise ValueError(f"{self.path} is not a horde records store of format {RECORDS_FORMAT_VERSION}")
        differ = [
            f"{key}: stored {meta.get(key)!r}, this run {value!r}"
            for key, value in (
                ("demon_names", list(demon_names)),
                ("record_every", int(record_every)),
                ("n_seeds", int(n_seeds)),
                ("diagnostics", bool(diagnostics)),
            )
            if meta.get(key) != value
        ]
        if first_step > 0:  # an append continues the stored run: the same stream and learner

            def as_stored(value: Any) -> Any:  # the JSON the store keeps (tuples become lists)
                return json.loads(json.dumps(value, default=str))

            stored = meta.get("config") or {}
            differ += [
                f"{key}: stored {stored[key]!r}, this run {config[key]!r}"
                for key in _RUN_IDENTITY
                if key in stored and key in config and as_stored(stored[key]) != as_stored(config[key])
            ]
        if differ:
            raise ValueError("the stored records belong to another run (" + "; ".join(differ) + ")")
        if meta["first_step"] > first_step:
            raise ValueError(
                f"the stored records begin at step {meta['first_step']}, after this run's first step {first_step}"
            )
        last = meta["first_step"] + meta["total_steps"]
        if last < first_step:
            raise ValueError(
                f"the stored records end at step {last}, before this run's first step {first_step}: "
                "steps in between would be missing"
            )
        steps = np.asarray(self.group["steps"][: meta["n_records"]])
        ends = np.asarray(self.group["episode_end_step"][: meta["n_episodes"]])
        meta["n_records"] = int(np.searchsorted(steps, first_step))
        meta["n_episodes"] = int(np.searchsorted(ends, first_step))
        meta["total_steps"] = first_step - meta["first_step"]
        for name in self.names:  # cut back to the kept rows (a killed append may have left more)
            arr = self.group[name]
            axis = 0 if name == "steps" or name in EPISODE else 1
            shape = list(arr.shape)
            shape[axis] = meta["n_episodes"] if name in EPISODE else meta["n_records"]
            arr.resize(tuple(shape))
        return meta

    # -----------------------------------------------------------------------------------------

    def _commit(self) -> None:
        self.group.attrs["horde"] = self.meta
        if self.fsync:
            _fsync(self.path / "zarr.json")
            _fsync(self.path)

    async def _write(self, batch: list[tuple[dict, dict, int, float]]) -> None:
        """Writes queued chunks as one append (they queue only while an earlier append is
        being written), then commits them."""
        import asyncio

        rows: dict[str, list[np.ndarray]] = {}
        for chunk_rows, episodes, _, _ in batch:
            for name, data in (*chunk_rows.items(), *episodes.items()):
                rows.setdefault(name, []).append(data)
        data = {
            name: np.concatenate(parts, axis=0 if name == "steps" or name in EPISODE else 1)
            for name, parts in rows.items()
        }
        data = {name: v for name, v in data.items() if v.size or v.ndim and v.shape[0 if v.ndim == 1 else 1]}
        regions: dict[str, Any] = {}
        touched: set[Path] = set()
        for name, values in data.items():
            axis = 0 if name == "steps" or name in EPISODE else 1
            start = self.meta["n_episodes"] if name in EPISODE else self.meta["n_records"]
            m = values.shape[axis]
            if m == 0:
                continue
            arr = self._async_arrays[name]
            shape = list(arr.shape)
            shape[axis] = start + m
            index = [slice(None)] * arr.ndim
            index[axis] = slice(start, start + m)
            regions[name] = (tuple(shape), tuple(index), values)
            touched.update(self.path / name / key for key, _, _ in _chunk_keys(arr, start, start + m))
            touched.add(self.path / name / "zarr.json")
        arrays = self._async_arrays
        await asyncio.gather(*(arrays[name].resize(shape) for name, (shape, _, _) in regions.items()))
        await asyncio.gather(*(arrays[name].setitem(index, values) for name, (_, index, values) in regions.items()))
        if self.fsync:
            for f in touched:
                _fsync(f)
            for d in {f.parent for f in touched}:
                _fsync(d)
        if "steps" in data:
            self.meta["n_records"] += len(data["steps"])
        if "episode_seed" in data:
            self.meta["n_episodes"] += len(data["episode_seed"])
        _, _, last_step, wall = batch[-1]
        self.meta["total_steps"] = int(last_step) - self.meta["first_step"]
        self.meta["wall_time"] = float(wall)
        self._commit()

    def _work(self) -> None:
        import asyncio

        import zarr.api.asynchronous as za

        loop = asyncio.new_event_loop()
        try:

            async def open_all():
                # Every chunk is written, even one of fill values only (a demon inactive for a
                # whole chunk, diagnostics not yet defined), so that a chunk missing from the
                # store is detected when read instead of reading back as NaN.
                return {
                    n: (await za.open_array(store=self.path, path=n, mode="r+")).with_config(
                        {"write_empty_chunks": True}
                    )
                    for n in self.names
                }

            self._async_arrays = loop.run_until_complete(open_all())
        except BaseException as e:
            self._error = e
        try:
            while True:
                with self._ready:
                    while not self._pending:
                        self._ready.wait()
                    batch, self._pending = self._pending, []
                    self._ready.notify_all()
                chunks = [item for kind, item in batch if kind == "rows"]
                metas = [item for kind, item in batch if kind == "meta"]
                if self._error is None:
                    try:
                        if chunks:
                            loop.run_until_complete(self._write(chunks))
                        for meta in metas:
                            self.meta.update(meta)
                            self._commit()
                    except BaseException as e:  # reported to the run by the next append or close
                        self._error = e
                with self._ready:
                    self._writing = False
                    self._ready.notify_all()
                if any(kind == "stop" for kind, _ in batch):
                    return
        finally:
            loop.close()

    def _put(self, kind: str, item: Any) -> None:
        with self._ready:
            while len(self._pending) >= self.max_pending:
                self._ready.wait()
            self._pending.append((kind, item))
            self._writing = True
            self._ready.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            e = self._error
            raise RecordsError(f"writing the records in {self.path} failed: {type(e).__name__}: {e}") from e

    def append(
        self, rows: dict[str, np.ndarray], episodes: dict[str, np.ndarray], last_step: int, wall_time: float
    ) -> None:
        """Queues one chunk: ``rows`` (``steps`` and the per-seed arrays, the chunk's records),
        ``episodes`` (the episodes that ended within it) and ``last_step``, the global step
        the learned state has reached. Chunks queued while an earlier one is being written are
        written together; this waits while ``max_pending`` chunks are queued.

        Raises:
            RecordsError: an earlier chunk could not be written.
        """
        self._raise_error()
        self._put("rows", (rows, episodes, int(last_step), float(wall_time)))

    def close(self, *, complete: bool, stopped: str | None = None, **meta: Any) -> None:
        """Writes every queued chunk, then the final attributes (``complete``, ``stopped`` and
        any of ``meta``, e.g. ``wall_time``), and stops the writer thread.

        Raises:
            RecordsError: a chunk (or these attributes) could not be written.
        """
        if self._thread.is_alive():
            self._put("meta", {**meta, "complete": bool(complete), "stopped": stopped})
            self._put("stop", None)
            self._thread.join()
        self._raise_error()

    def wait(self) -> None:
        """Blocks until every queued chunk is committed.

        Raises:
            RecordsError: a chunk could not be written.
        """
        with self._ready:
            while self._pending or self._writing:
                self._ready.wait()
        self._raise_error()


def _chunk_keys(array: Any, start: int, stop: int) -> list[tuple[str, int, int]]:
    """The store keys of the chunks of ``array`` (a Zarr array or async array of this format)
    that hold rows ``start`` to ``stop - 1`` of its growing axis (the record axis, or the only
    one of a 1-D array), each with the first and last row it holds there."""
    axis = 0 if array.ndim == 1 else 1
    size = array.chunks[axis]
    keys = []
    for c in range(start // size, -(-stop // size)):
        coords = [0] * array.ndim
        coords[axis] = c
        keys.append((array.metadata.encode_chunk_key(tuple(coords)), c * size, min((c + 1) * size, stop) - 1))
    return keys


def _check_chunks(path: Path, name: str, array: Any, committed: int) -> None:
    """Raises ValueError naming the first chunk of ``name``'s first ``committed`` rows (its
    growing axis) that is missing from the store: read, it would be fill values (NaN)."""
    for key, first, last in _chunk_keys(array, 0, committed):
        if not (path / name / key).is_file():
            rows = "episodes" if name in EPISODE else "records"
            raise ValueError(f"chunk {name}/{key} ({rows} {first}-{last}) is missing from the store")


def read_records(run_dir: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reads the committed records of ``run_dir/records.zarr`` (or of the store itself).

    Returns:
        ``(meta, arrays)``: the group's ``attrs["horde"]`` and the arrays cut to the committed
        counts (``rupee`` and ``ude`` None where they were not recorded).

    Raises:
        FileNotFoundError: there is no store.
        ValueError: it is not a horde records store of this format, or it cannot be read.
    """
    import zarr

    path = Path(run_dir)
    if path.name != RECORDS_DIR:
        path = path / RECORDS_DIR
    if not (path / "zarr.json").exists():
        raise FileNotFoundError(f"{path} not found: {run_dir} holds no records")
    try:
        group: Any = zarr.open_group(path, mode="r")
        meta: dict[str, Any] = dict(group.attrs.get("horde", {}))
        if meta.get("format") != "horde-run-records":
            raise ValueError(f"{path} is not a horde records store")
        if meta.get("format_version") != RECORDS_FORMAT_VERSION:
            raise ValueError(
                f"{path} has records format_version {meta.get('format_version')!r}, expected {RECORDS_FORMAT_VERSION}"
            )
        k, e = int(meta["n_records"]), int(meta["n_episodes"])
        arrays: dict[str, Any] = {"steps": np.asarray(group["steps"][:k])}
        for name in PER_DEMON + PER_STEP:
            if name in ("rupee", "ude") and not meta.get("diagnostics"):
                arrays[name] = None
                continue
            arrays[name] = np.asarray(group[name][:, :k])
        for name in EPISODE:
            arrays[name] = np.asarray(group[name][:e])
        if meta.get("every_chunk_written"):
            for name, value in arrays.items():
                if value is not None:
                    _check_chunks(path, name, group[name], e if name in EPISODE else k)
    except Exception as err:  # codec and file errors vary by how the store was damaged
        raise ValueError(f"{path} could not be read: {type(err).__name__}: {err}") from err
    return meta, arrays


def mark_unfinished(run_dir: str | os.PathLike, stopped: str) -> None:
    """Marks the committed records of ``run_dir`` as those of a run that goes on later
    (``complete`` false, ``stopped`` the reason), e.g. a run made of segments between
    checkpoints, each a run of its own that closes its store complete: killed between two
    segments, the store then loads as ``partial``, as the run is.

    Raises:
        RecordsError: there is no store, or it cannot be written.
    """
    import zarr

    path = Path(run_dir) / RECORDS_DIR
    try:
        if not (path / "zarr.json").exists():
            raise FileNotFoundError(f"{path} not found")
        group: Any = zarr.open_group(path, mode="r+")
        meta = dict(group.attrs.get("horde", {}))
        meta["complete"], meta["stopped"] = False, stopped
        group.attrs["horde"] = meta
        _fsync(path / "zarr.json")
    except (OSError, ValueError) as e:
        raise RecordsError(f"cannot mark the records in {path} unfinished: {type(e).__name__}: {e}") from e


TRUE_VALUE_FIELDS = ("true_value_steps", "true_values", "true_value_stderr")


def write_true_values(run_dir: str | os.PathLike, steps: Any, values: Any, stderr: Any) -> None:
    """Adds the true values estimated after a run (``RunResult.true_values``) to the run's
    store, replacing any there: ``true_value_steps`` ``(m,)`` int64 and ``true_values`` /
    ``true_value_stderr`` ``(n_seeds, m, n_demons)`` in their own dtype.

    Raises:
        FileNotFoundError: ``run_dir`` holds no records store.
    """
    import zarr

    path = Path(run_dir)
    if path.name != RECORDS_DIR:
        path = path / RECORDS_DIR
    if not (path / "zarr.json").exists():
        raise FileNotFoundError(f"{path} not found: {run_dir} holds no records")
    group: Any = zarr.open_group(path, mode="a")
    dims = {"true_value_steps": ["sample"], "true_values": ["seed", "sample", "demon"]}
    dims["true_value_stderr"] = dims["true_values"]
    for name, data in zip(TRUE_VALUE_FIELDS, (steps, values, stderr)):
        # Kept in the dtype they were estimated in (float64 means of float32 returns).
        array = np.asarray(data, np.int64) if name == "true_value_steps" else np.asarray(data)
        group.create_array(name, data=array, dimension_names=dims[name], overwrite=True, compressors=_compressors())


def read_true_values(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The true values in a run's store (``write_true_values``) as a dict of the three
    ``RunResult`` fields, or an empty dict when the run has none."""
    import zarr

    path = Path(run_dir)
    if path.name != RECORDS_DIR:
        path = path / RECORDS_DIR
    group: Any = zarr.open_group(path, mode="r")
    if not all(name in group for name in TRUE_VALUE_FIELDS):
        return {}
    return {name: np.asarray(group[name][...]) for name in TRUE_VALUE_FIELDS}
