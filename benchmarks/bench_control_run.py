"""Steps per second of ``horde.run`` acting on a control demon (one compiled call per step) on
the Python CartPole-v1, with the stream-x network (32, 32) and no prediction demons, and with
100 nexting demons around it; then where one step's time goes.

Run: python benchmarks/bench_control_run.py [--steps 5000] [--baseline DIR [--rounds N]] [--sync-dispatch]
(Compilation is excluded: each configuration is run once for 500 steps first.)

The target: 10x the official PyTorch Stream Q(λ) on the same
environment and network, 1,114 steps/s, so >= 11,000 steps/s, about 90 µs per step including
CartPole's own step and Gymnasium's wrappers. The parts printed below:

* ``env.step``: ``gym.make("CartPole-v1")`` stepped with random actions (its wrappers
  included), the part no learner can remove;
* ``empty compiled call``: a jitted function that does nothing, taking and donating arrays of
  the acting step's shapes (the packed carry, the record rows, the chunk's draws, the inputs)
  and returning a scalar read back through NumPy (``int(np.asarray(a))``): about the least one
  compiled call per step costs (the runner reads its action out of the returned carry instead);
* ``compiled step``: the compiled call ``horde.run`` makes per step
  (``horde.runs.acting.compiled_step``), called alone in a loop with its action read back each
  time as ``horde.run`` reads it, and the number of kernels XLA compiled it to (the instructions of its entry
  computation: fusions, dots, copies, ...). On the CPU each kernel costs a fraction of a
  microsecond to launch whatever its size, and a step of a (32, 32) network does little else,
  so the count is what the step's own time follows;
* the rest of a step is the runner's Python (feature map, checks, bookkeeping).

``--baseline DIR`` first runs this script on the horde package found in ``DIR`` (e.g. a
checkout of an earlier commit), then on this one, one after the other under the same load;
``--rounds N`` repeats the pair N times, alternating, and ends with the median steps/s of each.

``--sync-dispatch`` runs JAX's CPU computations in the calling thread
(``jax.config.update("jax_cpu_enable_async_dispatch", False)`` before JAX starts): the acting
loop waits for every step's action, so JAX's default hand-off of each call to a worker thread
(and the wait for it) is pure cost there.

CPU is the process's CPU time per step (all threads): on a busy machine it moves less than
the wall time, so both are printed with the load average.
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import re
import subprocess
import sys
import time

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

import demons
import horde
from demons import cumulants, discounts, policies

TARGET = 11_000  # steps/s
BASELINE = 1_114  # the official stream-x stream_q.py, PyTorch, 1 thread, same network


def timed(fn, n: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn()``, each divided by ``n``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


def env_alone(n: int):
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 2, n).tolist()

    def loop() -> None:
        for a in actions:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()

    return loop


def empty_call(learner: horde.ControlLearner, chunk: int, n: int):
    state = learner.init_traced(4, jax.random.key(0), 2)
    size = sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(state)) + 12
    fn = jax.jit(lambda g, r, d, x: (g, r, d[0].astype(jnp.int32)), donate_argnums=(0, 1))
    arrays = [
        jnp.zeros((size,), jnp.uint32),
        jnp.zeros((chunk + 1, 4, learner.n_demons), jnp.float32),
        jnp.zeros((chunk,), jnp.float32),
    ]
    int(np.asarray(fn(*[jnp.copy(a) for a in arrays], np.zeros(11, np.float32))[2]))  # compiled here

    def loop() -> None:
        g, r, d = arrays
        for _ in range(n):
            g, r, a = fn(g, r, d, np.zeros(11, np.float32))
            int(np.asarray(a))

    return loop


def kernel_count(hlo: str) -> int:
    """Instructions of the compiled program's entry computation that run as kernels (all but
    parameters, constants, tuples and bitcasts)."""
    entry = hlo[hlo.index("\nENTRY") :]
    entry = entry[: entry.index("\n}")]
    ops = re.findall(r"=\s+\S+\s+([a-z][a-z0-9-]*)\(", entry)
    return sum(op not in ("parameter", "constant", "tuple", "get-tuple-element", "bitcast") for op in ops)


def acting_step(learner: horde.ControlLearner, policy: horde.EpsilonGreedy, chunk: int):
    """``(step, arguments, read)`` of ``horde.runs.acting.compiled_step`` for CartPole-v1:
    ``read(outputs)`` is the action of the step's outputs, read as ``horde.run`` reads it."""
    from horde.runs import acting

    env = gym.make("CartPole-v1")
    if hasattr(acting, "compiled_step"):
        made = acting.compiled_step(learner, policy, env.observation_space, 2, chunk_size=chunk)
        if len(made) == 3:
            step, arguments, action = made
            return step, arguments, lambda outputs: action(outputs[0])
        return (*made, lambda outputs: int(np.asarray(outputs[2])))  # a horde whose step returned the action
    # A horde from before compiled_step: its step and carry, as that version built them.
    from horde.runs.recording import DivergenceWatch

    fns = acting._compiled(learner, policy, 0, 1000, 1, 4, 2)

    def arguments():
        state = learner.init_traced(4, jax.random.key(0), 2)
        z = jnp.zeros((), jnp.int32)
        carry = acting._Carry(
            state, jnp.zeros(4), z, jnp.float32(0.5), jnp.uint32(0), z, z, DivergenceWatch.start(learner.n_demons),
            jnp.float32(0), jnp.float32(0),
        )  # fmt: skip
        x = np.asarray([0.01, 0.02, 0.03, 0.04, 0.01, 0.02, 0.03, 0.04, 1.0, 0.0, 0.0], np.float32)
        draws = fns.uniforms(jax.random.key(1), jnp.uint32(1), chunk)
        return acting._fresh(fns.pack(carry)), acting._chunk_records(learner, chunk, 1), draws, x, chunk

    return fns.step, arguments, lambda outputs: int(np.asarray(outputs[2]))


def blocked_calls(step, arguments, read, n: int, reps: int = 3) -> tuple[float, float, int]:
    """Best of ``reps`` (wall, CPU) seconds per call of ``step`` with its action read back
    (``read(outputs)``), and its kernel count."""
    args = arguments()
    hlo = step.lower(*args).compile().as_text()
    best = (np.inf, np.inf)
    for _ in range(reps):
        carry, rows, *rest = arguments()
        out = step(carry, rows, *rest)
        carry, rows = out[0], out[1]
        read(out)

        def loop() -> None:
            nonlocal carry, rows
            for _ in range(n):
                out = step(carry, rows, *rest)
                carry, rows = out[0], out[1]
                read(out)

        best = min(best, timed(loop, n))
    return best[0], best[1], kernel_count(hlo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--baseline", help="first run this script on the horde package in this directory")
    parser.add_argument("--rounds", type=int, default=1, help="with --baseline: alternating pairs of runs")
    parser.add_argument("--sync-dispatch", action="store_true", help="JAX's CPU computations in the calling thread")
    args = parser.parse_args()
    n = args.steps
    if args.sync_dispatch:
        # Read once, when JAX creates its CPU client: set before any computation.
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    if args.baseline:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        extra = ["--sync-dispatch"] if args.sync_dispatch else []
        first: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            for label, root in (("before", args.baseline), ("after", here)):
                print(f"== {label}: PYTHONPATH={root}", flush=True)
                env = dict(os.environ, PYTHONPATH=root)
                out = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--steps", str(n), *extra],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                print(out, end="", flush=True)
                row = next(line for line in out.splitlines() if line.startswith("1 control demon (32, 32)"))
                first[label].append(float(row.split("network", 1)[1].split()[0].replace(",", "")))
        print(f"== median steps/s of the stream-x network row over {args.rounds} alternating rounds:")
        for label, values in first.items():
            print(f"  {label}: {np.median(values):,.0f} (runs: {', '.join(f'{v:,.0f}' for v in values)})")
        return
    balance = demons.Demon(
        "balance", cumulants.reward(), discounts.constant(0.99), lamda=0.8, target_policy=policies.greedy()
    )
    around = horde.HordeLearner(demons.nexting(4, timescales=tuple(range(1, 26))), hidden_sizes=(64, 64))
    print(f"python benchmarks/bench_control_run.py --steps {n}{' --sync-dispatch' if args.sync_dispatch else ''}")
    print("JAX CPU dispatch:", "synchronous" if args.sync_dispatch else "asynchronous (JAX's default)")
    print(f"horde from {os.path.dirname(horde.__file__)}, jax {jax.__version__}, gymnasium {gym.__version__}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"load average before: {os.getloadavg()}")
    print(
        f"{'configuration':<38} {'steps/s':>8} {'µs/step':>8} {'CPU µs':>7} {'of target':>9}"
        f" | {'kernels':>7} {'call µs':>8} {'CPU µs':>7} {'load':>5}"
    )
    # stream-x's network: no head features (a horde from before them has none to turn off).
    streamx_net = (
        {"head_features": None} if "head_features" in inspect.signature(horde.ControlLearner).parameters else {}
    )
    configurations = [("1 control demon (32, 32), stream-x network", horde.ControlLearner([balance], **streamx_net))]
    if streamx_net:
        configurations.append(("1 control demon, default head features", horde.ControlLearner([balance])))
    configurations.append(("1 control demon + 100 nexting demons", horde.ControlLearner([balance], horde=around)))
    for label, learner in configurations:
        pol = horde.EpsilonGreedy("balance", anneal_steps=1000)
        horde.run(learner, "CartPole-v1", steps=500, policy=pol, chunk_size=500, progress=False)
        wall, cpu = timed(
            lambda: horde.run(learner, "CartPole-v1", steps=n, policy=pol, chunk_size=500, progress=False), n
        )
        call, call_cpu, kernels = blocked_calls(*acting_step(learner, pol, 500), n)
        print(
            f"{label:<40} {1 / wall:>8,.0f} {wall * 1e6:>8.1f} {cpu * 1e6:>7.1f} {1 / wall / TARGET:>9.0%}"
            f" | {kernels:>7} {call * 1e6:>8.1f} {call_cpu * 1e6:>7.1f} {os.getloadavg()[0]:>5.1f}",
            flush=True,
        )
    print("(kernels, call µs: the compiled step alone, called in a loop with its action read back)")
    print("where one step's time goes (1 control demon):")
    wall, cpu = timed(env_alone(n), n)
    print(f"  {'env.step of CartPole-v1 (wrapped)':<38} {wall * 1e6:>9.1f} µs {cpu * 1e6:>8.1f} CPU µs")
    wall, cpu = timed(empty_call(horde.ControlLearner([balance], **streamx_net), 500, n), n)
    print(f"  {'empty compiled call, same arguments':<38} {wall * 1e6:>9.1f} µs {cpu * 1e6:>8.1f} CPU µs")
    print(f"load average after: {os.getloadavg()}")
    print(
        f"target: {TARGET:,} steps/s ({1e6 / TARGET:.0f} µs/step) = 10x the official stream-x stream_q.py "
        f"(PyTorch, 1 thread, same network): {BASELINE:,} steps/s"
    )


if __name__ == "__main__":
    main()
