"""Spread many seeds over every device: the seed axis of a batched run, sharded on a mesh.

A batched run (``run_horde_learning_loop_batched``, ``run_multi_head_learning_loop_batched``)
is a ``vmap`` over seeds with no interaction between them, so placing the seed axis of the keys
on a one-dimensional ``jax.sharding.Mesh`` lets XLA split the whole computation across the
devices: each device learns its own seeds, and the numbers are those of the unsharded run.

On one host, every local device (GPUs, or CPU devices simulated with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``) joins the mesh. Across hosts, call
``jax.distributed.initialize()`` on every host first; ``jax.devices()`` then lists all hosts'
devices and the same call shards over all of them.

Sweeps over configurations (step sizes, trunk sizes, demon sets) run one learner per
configuration, each sharded over its seeds.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from horde.core import BatchedMultiHeadResult, MultiHeadMLPLearner, check_keys, check_stream
from horde.td import BatchedHordeResult, HordeLearner, Transitions, as_transitions

__all__ = [
    "seed_mesh",
    "run_horde_learning_loop_distributed",
    "run_horde_learning_loop_sharded",
    "run_multi_head_learning_loop_sharded",
]

SEED_AXIS = "seeds"


def seed_mesh(devices: Any = None) -> Mesh:
    """A one-dimensional mesh named ``"seeds"`` over ``devices`` (default: all devices)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (SEED_AXIS,))


def _place(keys: Any, mesh: Mesh | None):
    mesh = seed_mesh() if mesh is None else mesh
    if SEED_AXIS not in mesh.axis_names:
        raise ValueError(f"mesh must have an axis named {SEED_AXIS!r}, got axes {mesh.axis_names}")
    keys = check_keys(keys)
    n_seeds, n_devices = keys.shape[0], mesh.shape[SEED_AXIS]
    if n_seeds % n_devices:
        raise ValueError(
            f"the number of seeds ({n_seeds}) must be a multiple of the number of devices on the "
            f"mesh's {SEED_AXIS!r} axis ({n_devices})"
        )
    sharded = jax.device_put(keys, NamedSharding(mesh, PartitionSpec(SEED_AXIS)))
    replicated = NamedSharding(mesh, PartitionSpec())
    return mesh, sharded, replicated


def run_horde_learning_loop_sharded(
    learner: HordeLearner, transitions: Transitions, keys: Any, mesh: Mesh | None = None
) -> BatchedHordeResult:
    """``run_horde_learning_loop_batched`` with the seeds spread over the devices of ``mesh``.

    Args:
        learner: the HordeLearner.
        transitions: shared ``Transitions`` (replicated to every device).
        keys: typed keys ``(n_seeds,)`` or raw keys ``(n_seeds, 2)``; ``n_seeds`` a multiple of
            the number of devices.
        mesh: a mesh with a ``"seeds"`` axis; default ``seed_mesh()`` over all devices.

    Returns:
        ``BatchedHordeResult`` whose arrays are sharded over the seed axis.

    Raises:
        ValueError: ``learner`` has least-squares heads (``learner.heads``, the default for
            modest Hordes) and the mesh has several devices: XLA's partitioning of their
            periodic solve stalls the devices.
    """
    t = as_transitions(transitions, None)
    dim = int(t.observations.shape[1])
    learner.demons.validate(dim)
    if not learner.shards_seeds and (mesh.size if mesh is not None else jax.device_count()) > 1:
        raise ValueError(
            f"learner has least-squares heads ({learner.heads!r}), which cannot be sharded over several "
            "devices (XLA's partitioning of their solve stalls them): use run_horde_learning_loop_batched "
            "(one device), or pass heads='td' to the HordeLearner"
        )
    mesh, keys, replicated = _place(keys, mesh)
    t = jax.device_put(t, replicated)
    return learner.batched_compiled(t, keys, dim)


def run_multi_head_learning_loop_sharded(
    learner: MultiHeadMLPLearner, observations: Any, targets: Any, keys: Any, mesh: Mesh | None = None
) -> BatchedMultiHeadResult:
    """``run_multi_head_learning_loop_batched`` with the seeds spread over ``mesh``'s devices."""
    obs, tgt = check_stream(learner, observations, targets, None)
    mesh, keys, replicated = _place(keys, mesh)
    obs, tgt = jax.device_put((obs, tgt), replicated)
    return learner.batched_compiled(obs, tgt, keys, int(obs.shape[1]))


def _global(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array over every process's devices, each process supplying its own shards
    from the same host data (every process holds the whole ``array``)."""
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def run_horde_learning_loop_distributed(
    learner: HordeLearner, transitions: Transitions, keys: Any, mesh: Mesh | None = None
) -> BatchedHordeResult:
    """``run_horde_learning_loop_batched`` over the devices of every process of a
    ``jax.distributed`` job: the seeds spread over a global mesh, the transitions replicated.

    Call it in every process, after ``jax.distributed.initialize(...)``, with the same
    arguments (the same transitions and keys in every process). Each process then holds the
    results of its own seeds: ``result.predictions.addressable_shards`` (the shard's
    ``index[0]`` says which seeds). The numbers are those of one process running every seed.

    Args:
        learner: the HordeLearner (built the same way in every process).
        transitions: shared ``Transitions``.
        keys: typed keys ``(n_seeds,)`` or raw keys ``(n_seeds, 2)``; ``n_seeds`` a multiple of
            the number of devices on the mesh.
        mesh: a mesh with a ``"seeds"`` axis over the devices of all processes; default
            ``seed_mesh()`` (every device of the job, ``jax.devices()``).

    Returns:
        ``BatchedHordeResult`` of global arrays sharded over the seed axis.

    Raises:
        ValueError: the number of seeds is not a multiple of the mesh's devices.
    """
    t = as_transitions(transitions, None)
    dim = int(t.observations.shape[1])
    learner.demons.validate(dim)
    mesh = seed_mesh() if mesh is None else mesh
    raw = np.asarray(jax.random.key_data(check_keys(keys)))
    n_seeds, n_devices = raw.shape[0], mesh.shape[SEED_AXIS]
    if n_seeds % n_devices:
        raise ValueError(
            f"the number of seeds ({n_seeds}) must be a multiple of the number of devices on the "
            f"mesh's {SEED_AXIS!r} axis ({n_devices}) across all processes"
        )
    global_keys = _global(raw, NamedSharding(mesh, PartitionSpec(SEED_AXIS)))
    replicated = NamedSharding(mesh, PartitionSpec())
    global_t = jax.tree_util.tree_map(lambda a: _global(np.asarray(a), replicated), t)
    return learner.batched_compiled(Transitions(*global_t), global_keys, dim)
