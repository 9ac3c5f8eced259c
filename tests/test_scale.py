"""Scale: sharded sweeps equal unsharded ones, vmapped seeds equal separate runs, and the state
of a big Horde has the expected shapes and size (memory per demon O(hidden size))."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import demons
import horde

SHARDED_SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, numpy as np
    import demons, horde
    from horde.runs.sharding import run_horde_learning_loop_sharded, run_multi_head_learning_loop_sharded
    assert len(jax.devices()) == 4, jax.devices()

    rng = np.random.default_rng(0)
    T = 200
    obs = rng.normal(size=(T + 1, 4)).astype(np.float32)
    t = horde.Transitions(obs[:-1], rng.integers(0, 2, T), rng.normal(size=T), obs[1:],
                          rng.random(T) < 0.05, np.zeros(T, bool), np.full(T, 0.5))
    learner = horde.HordeLearner(demons.nexting(4, (1, 10), lamda=0.5), hidden_sizes=(16,), step_size=0.01,
                                 bounder=horde.ObGDBounding())
    keys = jax.random.split(jax.random.key(0), 8)
    plain = horde.run_horde_learning_loop_batched(learner, t, keys)
    sharded = run_horde_learning_loop_sharded(learner, t, keys)
    assert len(sharded.predictions.sharding.device_set) == 4
    # Same per-seed arithmetic; each device's smaller batch may vectorise differently, so
    # equality is to float32 rounding.
    np.testing.assert_allclose(np.asarray(sharded.predictions), np.asarray(plain.predictions), rtol=1e-4, atol=1e-6)

    core = horde.MultiHeadMLPLearner(3, hidden_sizes=(8,), step_size=0.05)
    targets = rng.normal(size=(T, 3)).astype(np.float32)
    a = horde.run_multi_head_learning_loop_batched(core, obs[:-1], targets, keys)
    b = run_multi_head_learning_loop_sharded(core, obs[:-1], targets, keys)
    assert len(b.per_head_metrics.sharding.device_set) == 4
    np.testing.assert_allclose(np.asarray(b.per_head_metrics), np.asarray(a.per_head_metrics), rtol=1e-4, atol=1e-6)
    try:
        run_multi_head_learning_loop_sharded(core, obs[:-1], targets, keys[:3])
    except ValueError as e:
        assert "multiple of the number of devices" in str(e), e
    else:
        raise AssertionError("3 seeds on 4 devices should be refused")
    print("OK")
    """
)


@pytest.mark.slow  # 35 s; sharding over devices is checked by test_distributed in the default run
def test_sharded_sweep_equals_unsharded_on_four_simulated_devices():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")


def test_ten_thousand_demon_state_has_expected_shapes_and_size():
    n, H = 10_000, 128
    demon_set = demons.nexting(16, timescales=tuple(range(1, 626)))[:n]
    assert len(demon_set) == n
    learner = horde.HordeLearner(demon_set, hidden_sizes=(H, H), bounder=horde.ObGDBounding())
    state = jax.eval_shape(lambda k: learner.init(16, k), jax.random.key(0))
    heads = state.core.head_params
    # The heads see the trunk's H outputs, and the default head features: the 16 inputs and
    # 256 random Fourier features of them.
    W = H + 16 + 256
    assert learner.core.head_features.size(16) == 16 + 256
    assert heads.weights.shape == (n, W) and heads.biases.shape == (n,)
    assert state.core.head_traces == () and state.secondary_weights == ()  # λ = 0: no traces stored
    total = sum(np.prod(leaf.shape) * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(state))
    trunk = (16 * H + H + H * H + H) * 4 + 4  # trunk parameters and the int32 step count
    # The default input normaliser (EMA with compensated mean and variance): 4 words per input
    # and its weight, independent of the demons.
    normaliser = sum(
        np.prod(leaf.shape) * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(state.core.normalizer_state)
    )
    assert normaliser == (4 * 16 + 1) * 4
    trunk += normaliser
    per_demon = (total - trunk) / n
    # One float32 weight row and bias, and the default head optimizer's (Autostep's) step size,
    # normaliser and trace of the meta-gradient per weight: O(head input size).
    assert per_demon == 4 * (W + 1) * 4
    # No array anywhere scales as n_demons x trunk parameters.
    assert max(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(state)) == n * W
