"""Seeds spread over devices and processes give the numbers of one device.

Each test starts fresh Python processes: the number of CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count``) and ``jax.distributed`` are fixed when
JAX starts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SETUP = """
import jax, numpy as np
import horde
from demons import Demon, cumulants as C, discounts as D

demon_set = [Demon(f"x{i}", C.observation(i % 3), D.constant(0.9), lamda=0.8 if i % 2 else 0.0) for i in range(6)]
learner = horde.HordeLearner(demon_set, hidden_sizes=(8,), step_size=0.01, bounder=horde.ObGDBounding())
rng = np.random.default_rng(0)
x = rng.normal(size=(41, 3)).astype(np.float32)
stream = horde.Transitions(x[:-1], np.zeros(40, np.int32), rng.normal(size=40).astype(np.float32), x[1:],
                           rng.random(40) < 0.05, np.zeros(40, bool), np.ones(40, np.float32))
keys = jax.random.split(jax.random.key(7), 8)
"""


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env, timeout=240
    )


def test_batched_runs_shard_seeds_over_every_device_by_default(tmp_path):
    out = tmp_path / "out.npz"
    code = (
        _SETUP
        + f"""
assert jax.device_count() == 4
result = horde.run_horde_learning_loop_batched(learner, stream, keys)
assert len(result.predictions.sharding.device_set) == 4, result.predictions.sharding
reference = learner.batched_compiled(horde.td.as_transitions(stream, 3), keys, 3)  # keys on one device
assert len(reference.predictions.sharding.device_set) == 1
np.savez({str(out)!r}, sharded=np.asarray(result.predictions), single=np.asarray(reference.predictions))
"""
    )
    proc = _run(code, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = np.load(out)
    np.testing.assert_array_equal(data["sharded"], data["single"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_run_in_one_process_equals_the_batched_run():
    """The fast variant of the two-process test: the global-mesh path in this process alone."""
    namespace: dict = {}
    exec(_SETUP, namespace)
    from horde.runs import run_horde_learning_loop_distributed
    from horde.td import run_horde_learning_loop_batched

    learner, stream, keys = namespace["learner"], namespace["stream"], namespace["keys"]
    distributed = run_horde_learning_loop_distributed(learner, stream, keys)
    batched = run_horde_learning_loop_batched(learner, stream, keys)
    np.testing.assert_array_equal(np.asarray(distributed.predictions), np.asarray(batched.predictions))
    with pytest.raises(ValueError, match=r"number of seeds \(3\) must be a multiple"):
        import jax
        from jax.sharding import Mesh

        two = [jax.devices()[0], jax.devices()[0]]
        run_horde_learning_loop_distributed(learner, stream, keys[:3], mesh=Mesh(np.asarray(two), ("seeds",)))


@pytest.mark.slow
def test_two_processes_with_jax_distributed_give_the_numbers_of_one(tmp_path):
    """Two local CPU processes joined by ``jax.distributed`` (coordinator on the loopback
    address) learn 8 seeds on a global mesh, 4 each; together they give one process's numbers."""
    port = _free_port()
    worker = (
        """
import sys
import jax
process_id = int(sys.argv[1])
jax.distributed.initialize(coordinator_address=sys.argv[2], num_processes=2, process_id=process_id)
"""
        + _SETUP
        + """
assert jax.process_count() == 2 and jax.device_count() == 2
from horde.runs import run_horde_learning_loop_distributed
result = run_horde_learning_loop_distributed(learner, stream, keys)
local = {str(s.index[0].start): np.asarray(s.data) for s in result.predictions.addressable_shards}
np.savez(sys.argv[3], **local)
jax.distributed.shutdown()
"""
    )
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", worker, str(i), f"127.0.0.1:{port}", str(tmp_path / f"p{i}.npz")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]
    single = tmp_path / "single.npz"
    proc = _run(
        _SETUP
        + f"np.savez({str(single)!r}, predictions=np.asarray(horde.run_horde_learning_loop_batched(learner, stream, keys).predictions))"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = np.load(single)["predictions"]
    pieces = {}
    for i in range(2):
        with np.load(tmp_path / f"p{i}.npz") as data:
            pieces.update({int(k): data[k] for k in data.files})
    assert sorted(pieces) == [0, 4]
    np.testing.assert_array_equal(np.concatenate([pieces[0], pieces[4]]), expected)


_RUN_JAX = """
result = horde.run_jax(learner, "phys2d/CartPole-v1", steps=300, n_seeds=4, record_every=1, chunk_size=300)
devices = result.state.core.head_params.weights.sharding.device_set
np.savez(OUT, predictions=np.asarray(result.predictions), returns=np.asarray(result.episode_return),
         seeds=np.asarray(result.episode_seed), devices=len(devices))
"""


def test_run_jax_spreads_its_seeds_over_every_device(tmp_path):
    """``run_jax`` with several devices runs each device's seeds on it (the learner state comes
    back sharded over both) and gives the numbers of one device, to float32 rounding (each
    device vectorises a smaller batch, and 300 steps of learning carry the differences; a seed
    given another seed's stream would differ by the predictions' own scale)."""
    runs = {}
    for n in (1, 2):
        out = tmp_path / f"devices{n}.npz"
        code = _SETUP + f"OUT = {str(out)!r}\n" + _RUN_JAX
        code = code.replace("C.observation(i % 3)", "C.observation(i % 4)")
        proc = _run(code, {"XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[n] = np.load(out)
    assert int(runs[1]["devices"]) == 1 and int(runs[2]["devices"]) == 2
    np.testing.assert_array_equal(runs[2]["returns"], runs[1]["returns"])  # the uniform policy's episodes
    np.testing.assert_array_equal(runs[2]["seeds"], runs[1]["seeds"])
    np.testing.assert_allclose(runs[2]["predictions"], runs[1]["predictions"], rtol=1e-3, atol=1e-4)
    assert np.abs(runs[1]["predictions"]).max() > 0.1  # the demons learned something to compare


def test_run_jax_with_least_squares_heads_finishes_on_two_devices():
    """Least-squares heads keep their copies on one device: sharded, XLA's partitioning of their
    periodic solve stalled the run (a hang, caught here by the subprocess timeout)."""
    code = """
import jax, numpy as np, horde
from demons import Demon, cumulants as C, discounts as D
assert jax.device_count() == 2
demons = [Demon(f"x{i}", C.observation(i), D.constant(0.9), lamda=0.5) for i in range(4)]
learner = horde.HordeLearner(demons, heads=horde.LSTDHeads(burn_in=40, solve_every=20))
result = horde.run_jax(learner, "phys2d/CartPole-v1", steps=100, n_seeds=2, chunk_size=100)
# the default learner of a new user (2 groups, a solve at step 250): sharded, this one hung
default = horde.HordeLearner(__import__("demons").nexting(4, timescales=(1, 10)))
assert horde.run_jax(default, "phys2d/CartPole-v1", steps=300, n_seeds=2).predictions.shape == (2, 300, 8)
# the batched loop keeps them on one device too (it hung sharded), and the sharded loop refuses them
from horde.td import Transitions, run_horde_learning_loop_batched
from horde.runs.sharding import run_horde_learning_loop_sharded
o = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
t = Transitions(o, np.zeros(300, np.int32), np.zeros(300, np.float32), np.roll(o, -1, 0),
                np.zeros(300, bool), np.zeros(300, bool), np.ones(300, np.float32))
keys = jax.random.split(jax.random.key(0), 2)
assert np.isfinite(np.asarray(run_horde_learning_loop_batched(default, t, keys).predictions)).all()
try:
    run_horde_learning_loop_sharded(default, t, keys)
    raise AssertionError("sharded least-squares heads were not refused")
except ValueError as e:
    assert "least-squares heads" in str(e) and "heads='td'" in str(e), e
assert result.predictions.shape == (2, 100, 4) and np.isfinite(np.asarray(result.predictions)).all()
"""
    proc = _run(code, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
