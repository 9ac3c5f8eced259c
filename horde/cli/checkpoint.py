"""Checkpoints: a learner and its state in one file, never pickled.

A checkpoint is one ``.npz`` file holding

* ``__meta__``: JSON text with the format version, the learner's configuration (demons
  included), the observation size, the number of seeds (for a batched state), free-form user
  metadata, the leaves' names and a SHA-256 checksum of everything else: the digest of the
  metadata without its ``checksum`` key as JSON with sorted keys (``json.dumps(meta,
  sort_keys=True)``, UTF-8), followed for each leaf in order by its name, its dtype's name,
  ``repr`` of its shape (all UTF-8) and its C-ordered bytes;
* one array per leaf of the state pytree, named by its path (``core/head_params/weights``).

It is written to a temporary file in the same directory, flushed to disk, then renamed over
the target, so a crash mid-write leaves the previous checkpoint intact. Loading uses
``allow_pickle=False`` and checks the version, the checksum and every array's shape and dtype
against a freshly built state: a truncated, corrupted, wrong-version or mismatched file is a
``CheckpointError``, never a partial load.

A learner whose demons hold Python functions (custom cumulants, discounts or target
policies) has no plain-data form. Its checkpoint stores the state, every other setting
(``learner_settings``) and each demon as data (``demons``: ``DemonInfo``, which names each
function); ``learner_config`` is then ``null``. Load it with the learner rebuilt by your own
code, ``load_checkpoint(path, learner=...)``: the rebuilt learner's settings and demons must
match the stored ones.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from demons import DemonSet
from horde.control import ControlLearner, ControlState
from horde.core import MultiHeadMLPLearner, MultiHeadMLPState
from horde.td import HordeLearner, HordeState

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "check_learner_matches", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, truncated, corrupted, of another format
    version, or not matching the learner it describes."""


def _path_name(path) -> str:
    parts = []
    for p in path:
        if isinstance(p, jax.tree_util.GetAttrKey):
            parts.append(p.name)
        elif isinstance(p, jax.tree_util.SequenceKey):
            parts.append(str(p.idx))
        elif isinstance(p, jax.tree_util.DictKey):
            parts.append(str(p.key))
        else:
            parts.append(str(p))
    return "/".join(parts)


def _leaves(state: Any) -> list[tuple[str, np.ndarray]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(state)
    out = []
    for path, leaf in flat:
        arr = np.asarray(
            jax.random.key_data(leaf)
            if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)
            else leaf
        )
        out.append((_path_name(path), arr))
    return out


def _checksum(meta_without_checksum: dict, leaves: list[tuple[str, np.ndarray]]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(meta_without_checksum, sort_keys=True).encode())
    for name, arr in leaves:
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(repr(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _learner_kind(learner: Any) -> str:
    if isinstance(learner, HordeLearner):
        return "HordeLearner"
    if isinstance(learner, MultiHeadMLPLearner):
        return "MultiHeadMLPLearner"
    if isinstance(learner, ControlLearner):
        return "ControlLearner"
    raise TypeError(
        f"learner must be a HordeLearner, ControlLearner or MultiHeadMLPLearner, got {type(learner).__name__}"
    )


def _template(learner: Any, observation_dim: int, n_seeds: int | None, n_actions: int | None = None) -> Any:
    """Shapes and dtypes of a fresh state (``jax.eval_shape``: nothing is computed)."""

    def init(key: jax.Array) -> Any:
        if isinstance(learner, ControlLearner):
            return learner.init_traced(observation_dim, key, int(n_actions or 0))
        return learner.init(observation_dim, key)

    key = jax.random.key(0)
    if n_seeds is None:
        return jax.eval_shape(init, key)
    return jax.eval_shape(jax.vmap(init), jax.random.split(key, n_seeds))


def save_checkpoint(path: str | os.PathLike, learner: Any, state: Any, metadata: dict | None = None) -> Path:
    """Saves ``learner`` (its configuration) and ``state`` atomically to ``path``.

    Args:
        path: the checkpoint file (``.npz`` is appended when missing).
        learner: a ``HordeLearner``, ``ControlLearner`` or ``MultiHeadMLPLearner``.
        state: its state (``HordeState``/``ControlState``/``MultiHeadMLPState``), optionally
            batched over seeds.
        metadata: JSON-serializable extra data (e.g. the step a run reached).

    Returns:
        The path written.

    Raises:
        TypeError: ``learner`` or ``state`` is of another kind.
        ValueError: ``state`` does not fit ``learner`` (the message names what differs).
        OSError: the file cannot be written (the previous checkpoint there is left as it was).
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    kind = _learner_kind(learner)
    expected_type: type = {"HordeLearner": HordeState, "ControlLearner": ControlState}.get(kind, MultiHeadMLPState)
    if not isinstance(state, expected_type):
        raise TypeError(f"state must be a {expected_type.__name__} for a {kind}, got {type(state).__name__}")
    if isinstance(state, ControlState):
        return _save(path, learner, state, metadata, *_control_shape(learner, state))
    core: Any = state.core if isinstance(state, HordeState) else state
    biases = np.shape(core.head_params.biases)
    n_seeds = None if len(biases) == 1 else int(biases[0])
    try:  # a state of another configuration would be written, and never load again
        learner.check_state(state, copies=n_seeds)
    except ValueError as e:
        raise ValueError(f"save_checkpoint: {e}") from e
    feature_dim = learner.core.feature_dim(core) if kind == "HordeLearner" else learner.feature_dim(core)
    return _save(path, learner, state, metadata, int(feature_dim), n_seeds, None)


def _control_shape(learner: ControlLearner, state: ControlState) -> tuple[int, int | None, int]:
    """``(observation_dim, n_seeds, n_actions)`` of a control state, checked against a fresh
    one's shapes (a state of another configuration would be written, and never load again)."""
    returns = np.shape(state.returns)
    n_seeds = None if len(returns) == 1 else int(returns[0])
    dim, n_actions = learner.observation_dim(state), learner.action_count(state)
    template = _template(learner, dim, n_seeds, n_actions)
    got = [(name, arr.shape) for name, arr in _leaves(state)]
    want = [(_path_name(p), tuple(spec.shape)) for p, spec in jax.tree_util.tree_flatten_with_path(template)[0]]
    if got != want:
        raise ValueError(f"save_checkpoint: the state does not fit the learner: arrays {got}, expected {want}")
    return dim, n_seeds, n_actions


def _save(
    path: Path, learner: Any, state: Any, metadata: dict | None, feature_dim: int, n_seeds: int | None, n_actions
) -> Path:
    kind = _learner_kind(learner)
    leaves = _leaves(state)
    meta = {
        "format": "horde-checkpoint",
        "format_version": CHECKPOINT_VERSION,
        "learner_kind": kind,
        **_learner_description(learner),
        "observation_dim": int(feature_dim),
        "n_seeds": n_seeds,
        **({"n_actions": n_actions} if n_actions is not None else {}),
        "leaves": [name for name, _ in leaves],
        "metadata": metadata or {},
    }
    meta["checksum"] = _checksum(meta, leaves)
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {f"leaf_{i:05d}": arr for i, (_, arr) in enumerate(leaves)}
    np.savez(buffer, __meta__=np.array(json.dumps(meta)), **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _as_saved(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """A saved learner configuration with the settings it was made with where it predates
    them: a checkpoint written before ``head_features`` (a HordeLearner's and a
    ControlLearner's default since) or
    the core's ``shared_traces`` holds a state without them, so they are off."""
    config = dict(config)
    if kind == "HordeLearner":
        config.setdefault("head_features", None)
    elif kind == "ControlLearner":
        config.setdefault("head_features", None)
        if isinstance(config.get("horde"), dict):
            config["horde"] = {"head_features": None, **config["horde"]}
    else:  # the core
        config.setdefault("shared_traces", False)
    return config


def _stored_config(kind: str, config: Any) -> Any:
    """A stored learner configuration as today's ``to_config`` writes it (``_as_saved``)."""
    return _as_saved(kind, config) if isinstance(config, dict) else config


def load_checkpoint(path: str | os.PathLike, learner: Any = None) -> tuple[Any, Any, dict]:
    """Loads a checkpoint written by ``save_checkpoint``.

    Args:
        path: the checkpoint file.
        learner: the learner, rebuilt by the caller's code; required when the saved learner
            has demons with Python functions (they cannot be stored), optional otherwise.
            Its settings and demons are checked against the stored ones.

    Returns:
        ``(learner, state, metadata)``: the given learner, or the one the file describes.

    Raises:
        CheckpointError: the file is missing, truncated, corrupted, of another format version,
            its arrays do not match the learner it describes, the given learner differs from
            the stored one, or a learner with Python functions was not given.
    """
    if learner is not None:
        _learner_kind(learner)
    path = Path(path)
    if not path.exists() and path.with_name(path.name + ".npz").exists():
        path = path.with_name(path.name + ".npz")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            if "__meta__" not in files:
                raise CheckpointError(f"{path} is not a horde checkpoint (no __meta__ entry)")
            meta = json.loads(str(data["__meta__"]))
            arrays = {name: data[name] for name in files if name != "__meta__"}
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupted: {type(e).__name__}: {e}") from e
    if meta.get("format") != "horde-checkpoint":
        raise CheckpointError(f"{path} is not a horde checkpoint")
    version = meta.get("format_version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this horde reads version {CHECKPOINT_VERSION}"
        )
    names = meta["leaves"]
    leaves = []
    for i, name in enumerate(names):
        key = f"leaf_{i:05d}"
        if key not in arrays:
            raise CheckpointError(f"{path} is missing the array for {name!r}")
        leaves.append((name, arrays[key]))
    stored = meta.pop("checksum", None)
    if stored != _checksum(meta, leaves):
        raise CheckpointError(f"{path} failed its checksum: the file is corrupted")
    if learner is not None:
        check_learner_matches(path, meta, learner)
    elif meta.get("learner_config") is None and meta.get("custom_demons"):
        raise CheckpointError(
            f"{path} holds a learner whose demons {meta['custom_demons']} have Python functions, which "
            "a checkpoint cannot store: rebuild the learner with your code and pass it, "
            "load_checkpoint(path, learner=learner)"
        )
    else:
        try:
            classes: dict[str, Any] = {"HordeLearner": HordeLearner, "ControlLearner": ControlLearner}
            cls = classes.get(meta["learner_kind"], MultiHeadMLPLearner)
            learner = cls.from_config(_as_saved(meta["learner_kind"], meta["learner_config"]))
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"{path} holds a learner configuration that cannot be rebuilt: {e}") from e
    try:
        template = _template(learner, int(meta["observation_dim"]), meta["n_seeds"], meta.get("n_actions"))
    except ValueError as e:  # e.g. a demon reading an observation the checkpoint's size lacks
        raise CheckpointError(f"{path} holds a learner that does not fit its own observation size: {e}") from e
    if isinstance(learner, HordeLearner) and any(name.startswith("traces/rows/") for name, _ in leaves):
        # A state saved after explicit-input updates carries per-demon trace rows.
        template = learner.with_trace_rows(template)
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    if len(flat) != len(leaves):
        raise CheckpointError(f"{path} has {len(leaves)} state arrays but the learner it describes has {len(flat)}")
    restored = []
    for (tpath, spec), (name, arr) in zip(flat, leaves):
        want = _path_name(tpath)
        if want != name or tuple(spec.shape) != arr.shape:
            raise CheckpointError(
                f"{path}: state array {name!r} has shape {arr.shape}, expected {want!r} with shape {tuple(spec.shape)}"
            )
        if jax.dtypes.issubdtype(spec.dtype, jax.dtypes.prng_key):
            restored.append(jax.random.wrap_key_data(arr))
        else:
            if np.dtype(spec.dtype) != arr.dtype:
                raise CheckpointError(f"{path}: state array {name!r} has dtype {arr.dtype}, expected {spec.dtype}")
            restored.append(jax.numpy.asarray(arr))
    state = jax.tree_util.tree_unflatten(treedef, restored)
    return learner, state, meta.get("metadata", {})


# ---------------------------------------------------------------------------------------------
# Learners with Python functions: stored as settings and demon descriptions, checked on loading


def _learner_description(learner: Any) -> dict[str, Any]:
    """The stored description of ``learner``: its full configuration where it has a plain-data
    form (else ``None``), and always its settings and demons as data."""
    if isinstance(learner, (MultiHeadMLPLearner, ControlLearner)):
        return {"learner_config": learner.to_config()}
    try:
        config: dict[str, Any] | None = learner.to_config()
        custom: list[str] = []
    except ValueError:
        config = None
        custom = [d.name for d in learner.demons if not _has_plain_data_form(d)]
    return {
        "learner_config": config,
        "learner_settings": learner.settings_config(),
        "demons": [d.info._asdict() for d in learner.demons],
        "custom_demons": custom,
    }


def _has_plain_data_form(demon: Any) -> bool:
    try:
        DemonSet([demon]).to_dict()
    except ValueError:
        return False
    return True


def _differing(stored: Any, given: Any) -> list[str]:
    """``"key: stored …, given …"`` for each top-level key on which two settings dicts differ
    (none when either is not a dict)."""
    if not (isinstance(stored, dict) and isinstance(given, dict)):
        return []
    return [
        f"{key}: stored {stored.get(key)!r}, given {given.get(key)!r}"
        for key in sorted(set(stored) | set(given))
        if stored.get(key) != given.get(key)
    ]


def check_learner_matches(path: str | os.PathLike, meta: dict[str, Any], learner: Any) -> None:
    """Checks that ``learner`` is the learner a checkpoint describes: same kind, same settings,
    same demons (each demon's name, kinds, function names, timescale, λ, terminal outcome and
    off-policy flag, as ``Demon.info`` gives them) as stored by ``save_checkpoint``.

    Args:
        path: the checkpoint file, for the message.
        meta: the checkpoint's metadata (its ``__meta__`` entry).
        learner: the learner given to ``load_checkpoint``.

    Raises:
        CheckpointError: listing every difference.
    """
    kind = _learner_kind(learner)
    if kind != meta.get("learner_kind"):
        raise CheckpointError(f"{path} holds a {meta.get('learner_kind')}, but a {kind} was given")
    given = json.loads(json.dumps(_learner_description(learner)))  # as stored: tuples become lists
    differences = []
    if "learner_settings" in meta:
        differences += _differing(meta["learner_settings"], given["learner_settings"])
        if len(meta["demons"]) != len(given["demons"]):
            differences.append(f"number of demons: stored {len(meta['demons'])}, given {len(given['demons'])}")
        for i, (a, b) in enumerate(zip(meta["demons"], given["demons"])):
            differences += [f"demon {i} ({a.get('name')!r}) {d}" for d in _differing(a, b)]
    else:
        stored, now = _stored_config(kind, meta.get("learner_config")), given["learner_config"]
        if stored != now:
            differences += _differing(stored, now) or [
                "its configuration (learner.to_config()) differs from the stored one"
            ]
    if differences:
        raise CheckpointError(f"{path}: the given learner does not match the stored one: " + "; ".join(differences))
