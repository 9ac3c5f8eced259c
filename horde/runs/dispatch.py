"""JAX's CPU dispatch mode, for loops that wait for every compiled call.

By default JAX hands each compiled call on the CPU to a worker thread and returns at once
(*asynchronous dispatch*); a loop that needs the call's result before it can go on (an acting
step's action, a single-step update's prediction) then waits for the hand-off and the wake-up
on every call. For the small calls of acting that costs about as much as the call itself: on a
2-core CPU, ``horde.run`` acting on the stream-x network (one control demon, (32, 32)) ran
6,750-7,100 steps/s with it and 14,800-15,300 without (``benchmarks/bench_control_run.py``,
with and without ``--sync-dispatch``); with 100 prediction demons around the control demon the
two were within 2 %.

JAX reads ``jax_cpu_enable_async_dispatch`` once, when it creates its CPU client, so the mode
cannot be switched for one loop: a process that acts sets it before its first JAX computation.
The ``horde`` command does so for its acting runs, and a script calls
``horde.use_synchronous_cpu_dispatch()`` at its start (:func:`use_synchronous_cpu_dispatch`);
``horde.run`` with an ``EpsilonGreedy`` behaviour and ``ActingDaemon`` say once per process
when they run on an asynchronous CPU client (:class:`AsyncDispatchWarning`). The library never
changes the setting on its own in a Python caller's process.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp

__all__ = ["AsyncDispatchWarning", "synchronous_cpu_dispatch", "use_synchronous_cpu_dispatch", "warn_if_async"]

_FLAG = "jax_cpu_enable_async_dispatch"
_warned = False


class AsyncDispatchWarning(UserWarning):
    """An acting loop runs on JAX's CPU backend with asynchronous dispatch, which roughly
    halves the steps/s of a small control network (see ``horde.runs.dispatch``). Silence it
    with ``warnings.filterwarnings("ignore", category=horde.AsyncDispatchWarning)``."""


def synchronous_cpu_dispatch() -> bool:
    """Whether JAX's CPU computations run in the calling thread.

    Before JAX has created its backends: whether ``jax_cpu_enable_async_dispatch`` is off (what
    the CPU client will be created with). After: what the CPU client does, observed once per
    process (:func:`_client_dispatches_synchronously`), since a setting changed after the
    client was created does not apply to it."""
    if not _backends_created():
        return not bool(jax.config.read(_FLAG))
    return _client_dispatches_synchronously()


@functools.cache
def _client_dispatches_synchronously() -> bool:
    """Whether compiled calls on the CPU return only once their results are computed.

    A call of about a millisecond (a 384 × 384 matrix product, far above the thousand
    operations below which XLA computes a call in the calling thread whatever the setting) is
    made ten times, its result's readiness read at once each time. A synchronous client returns
    every one computed; an asynchronous one now and then computes a call before returning, but
    returns most before their worker thread has finished them (observed: 0-2 of 10 ready)."""
    cpu = jax.devices("cpu")[0]
    a = jax.device_put(jnp.ones((384, 384), jnp.float32), cpu)
    product = jax.jit(lambda m: m @ m)
    product(a).block_until_ready()  # compiled here
    ready = []
    for _ in range(10):
        out = product(a)
        ready.append(bool(out.is_ready()))
        out.block_until_ready()
    return all(ready)


def _backends_created() -> bool:
    """Whether JAX has created its backends (after that the dispatch setting no longer applies).
    Read from JAX's internal module; where it is not there, assume they have been created."""
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - a JAX without the module
        return True
    created = getattr(xla_bridge, "backends_are_initialized", None)
    return True if created is None else bool(created())


def use_synchronous_cpu_dispatch() -> bool:
    """Turns JAX's asynchronous CPU dispatch off for this process if JAX has not created its
    backends yet: call it at the start of a script that acts (the ``horde`` command calls it
    before an acting run). Returns whether dispatch is synchronous now; where JAX's backends
    exist already it changes nothing and returns what the CPU client does (False unless the
    setting was made before the first JAX computation: call it earlier)."""
    if not _backends_created():
        jax.config.update(_FLAG, False)
        return True
    return _client_dispatches_synchronously()


def warn_if_async(where: str, stacklevel: int = 3) -> None:
    """Warns once per process (:class:`AsyncDispatchWarning`) when ``where`` (e.g.
    ``"horde.run"``) is about to act step by step on the CPU with asynchronous dispatch."""
    global _warned
    if _warned or jax.default_backend() != "cpu" or synchronous_cpu_dispatch():
        return
    warnings.warn(
        f"{where} acts step by step on JAX's CPU backend with asynchronous dispatch: every step "
        "waits for JAX's worker thread, which roughly halves the steps/s of a small network. "
        "Call horde.use_synchronous_cpu_dispatch() (or "
        f'jax.config.update("{_FLAG}", False)) before the process\'s first JAX computation '
        "to compute in the calling thread (results are the same). The horde command does this "
        "for its acting runs.",
        AsyncDispatchWarning,
        stacklevel=stacklevel,
    )
    _warned = True  # after the warning: one turned into an error is raised again next time
