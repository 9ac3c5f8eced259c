"""Quick start: one shared trunk, many heads, learning a stream of related targets.

Sixty-four heads each predict a different nonlinear function of a 16-dimensional signal;
some heads are silent (NaN targets) at each step. The learner scans over 20,000 steps in one
compiled call and prints how the per-head error fell.

It prints the number of heads and steps, the wall time (compilation included), the mean
squared error over the first and the last tenth of the stream, and the mean variance of the
targets (the error of a head that always predicted the mean).

Run: python examples/quickstart.py [--steps 20000] [--heads 64] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import horde


def main(n_steps: int = 20_000, n_heads: int = 64, feature_dim: int = 16, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    observations = rng.uniform(-1, 1, size=(n_steps, feature_dim)).astype(np.float32)
    projections = rng.normal(size=(feature_dim, n_heads)).astype(np.float32) / np.sqrt(feature_dim)
    targets = np.sin(2.0 * observations @ projections)
    targets[rng.random(size=targets.shape) < 0.2] = np.nan  # 20% of head-steps inactive

    learner = horde.MultiHeadMLPLearner(n_heads, hidden_sizes=(128, 128), step_size=0.02, bounder=horde.ObGDBounding())
    state = learner.init(feature_dim, jax.random.key(seed))

    start = time.perf_counter()
    result = horde.run_multi_head_learning_loop(learner, state, observations, targets)
    squared = np.asarray(result.per_head_metrics[:, :, 0])
    elapsed = time.perf_counter() - start

    window = n_steps // 10
    first = np.nanmean(squared[:window])
    last = np.nanmean(squared[-window:])
    print(f"{n_heads} heads, {n_steps} steps in {elapsed:.2f} s (compile included)")
    print(f"mean squared error, first {window} steps: {first:.4f}")
    print(f"mean squared error, last  {window} steps: {last:.4f}")
    print(f"mean target variance: {np.nanvar(targets):.4f}")


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="stream length (default 20000)")
    parser.add_argument("--heads", type=int, default=64, help="number of heads (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = parser.parse_args(argv)
    if args.steps < 10 or args.heads < 1:
        parser.error("--steps must be >= 10 and --heads >= 1")
    main(n_steps=args.steps, n_heads=args.heads, seed=args.seed)


if __name__ == "__main__":
    cli()
