#!/usr/bin/env python3
"""How close to the floor can anything get on the CartPole-v1 stream of ``sweep_defaults.py``:
the floor per seed, the least-squares ceiling of the heads' fixed features, and online learners
on the same features.

Usage::

    python benchmarks/cartpole_ceilings.py                  # seeds 0 1 2, every part
    python benchmarks/cartpole_ceilings.py --parts floor    # only the floor

Same streams, demons and score as ``sweep_defaults.py`` (30,000 uniformly random steps,
17 demons, RMSE against the ideal return over the last 20 % of the steps divided by the
return's standard deviation; the median over the demons, over the γ = 0.9 group, and time to
termination). Parts:

* ``floor``: what the true values ``E[G_t | S_t]`` score. They are Monte Carlo estimates,
  200 rollouts of CartPole's own equations (Euler, the registered masses, force 10, the
  termination thresholds) under the uniformly random policy from each state of the last
  20 % of the stream, cut after 130 steps (``0.9^130 < 1e-5``).
* ``lsq``: the least-squares ceiling of a fixed basis: ridge regression of the ideal returns
  of the first 80 % of the steps on ``[1, x, cos(x W + b)]`` (``x`` standardised with the
  first 80 %'s mean and spread, ``W ~ N(0, 1/σ²)``, ``b ~ U(0, 2π)``, the head features'
  form), scored on the last 20 %. It sees whole returns and fits all 24,000 steps at once, so
  it is what the basis allows, not what an online learner reaches.
* ``linear``: online linear TD(λ) on the same 256-feature basis (step size ``α / mean ‖φ‖²``),
  which sees the stream once, as the Horde does.
* ``averaged``: ``HordeLearner(demons)`` whose predictions use an exponential average of its
  head weights (rate ``β``), not the current ones (Polyak-style averaging of the noise a
  constant step size leaves in the weights).
* ``lstd``: online LSTD(0) (Bradtke & Barto 1996) on the same 256-feature basis: one matrix
  ``A = εI + Σ_t φ_t (φ_t - γ φ_{t+1})ᵀ`` per discount (no bootstrap where the episode
  terminates) and ``b = Σ_t φ_t c_{t+1}``, the weights ``A⁻¹ b`` re-solved every 250 steps from
  the steps before; each step's prediction uses only earlier steps, as an online learner's.
* ``windows``: ``HordeLearner(demons)``'s time to termination scored on each 3,000-step window
  after step 12,000, to show how much one window's score moves.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweep_defaults as sd  # noqa: E402
from _machine import machine_info  # noqa: E402

from horde import HordeLearner  # noqa: E402

ENV = "CartPole-v1"
ROLLOUTS, HORIZON = 200, 130
THETA_LIMIT, X_LIMIT = 12 * 2 * np.pi / 360, 2.4


def true_values(states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Monte Carlo ``E[G | S = s]`` of the 17 demons (``sd.demon_set`` order), ``(n, 17)``."""
    n = len(states)
    x, x_dot, theta, theta_dot = np.repeat(states.astype(np.float64), ROLLOUTS, 0).T
    alive = np.ones(n * ROLLOUTS, bool)
    gammas = np.asarray(sd.GAMMAS)
    obs_returns = np.zeros((n * ROLLOUTS, 4, len(gammas)))
    time_left = np.zeros(n * ROLLOUTS)
    masspole, total_mass, half_length = 0.1, 1.1, 0.5
    for k in range(HORIZON):
        force = np.where(rng.integers(0, 2, n * ROLLOUTS) == 1, 10.0, -10.0)
        cos, sin = np.cos(theta), np.sin(theta)
        temp = (force + masspole * half_length * theta_dot**2 * sin) / total_mass
        theta_acc = (9.8 * sin - cos * temp) / (half_length * (4 / 3 - masspole * cos**2 / total_mass))
        x_acc = temp - masspole * half_length * theta_acc * cos / total_mass
        x, x_dot, theta, theta_dot = (
            x + 0.02 * x_dot,
            x_dot + 0.02 * x_acc,
            theta + 0.02 * theta_dot,
            theta_dot + 0.02 * theta_acc,
        )
        # the cumulant of the step into S_{t+k+1}, the terminal one included
        obs_returns += (alive[:, None] * gammas**k)[:, None, :] * np.stack([x, x_dot, theta, theta_dot], 1)[:, :, None]
        time_left += alive * 0.9**k
        alive &= ~((np.abs(x) > X_LIMIT) | (np.abs(theta) > THETA_LIMIT))
    values = np.concatenate([obs_returns.reshape(n * ROLLOUTS, -1), time_left[:, None]], 1)
    return values.reshape(n, ROLLOUTS, -1).mean(1)


def score_window(predictions: np.ndarray, returns: np.ndarray, complete: np.ndarray) -> np.ndarray:
    """Per demon: RMSE against the ideal returns / their standard deviation, ``(n_demons,)``."""
    err = np.where(complete, predictions - returns, np.nan)
    g = np.where(complete, returns, np.nan)
    return np.sqrt(np.nanmean(err**2, 0)) / np.nanstd(g, 0)


def summary(per_demon: np.ndarray, ds) -> tuple[float, float, float]:
    g9 = np.isclose(np.asarray(ds.constant_gammas), 0.9)
    ttt = per_demon[ds.names.index("time_to_termination")] if "time_to_termination" in ds.names else np.nan
    return float(np.median(per_demon)), float(np.median(per_demon[g9])), float(ttt)


def basis(x: np.ndarray, n: int, bandwidth: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((x.shape[1], n)) / bandwidth
    b = rng.uniform(0, 2 * np.pi, n)
    return np.concatenate([np.ones((len(x), 1)), x, np.cos(x @ w + b)], 1)


def standardised(stream, s: int, train: int) -> tuple[np.ndarray, np.ndarray]:
    o, o2 = stream.observations[s].astype(np.float64), stream.next_observations[s].astype(np.float64)
    mean, spread = o[:train].mean(0), o[:train].std(0)
    return (o - mean) / spread, (o2 - mean) / spread


def least_squares(stream, returns, complete, ds, n: int, bandwidth: float, ridge: float) -> list[tuple]:
    train = int(stream.observations.shape[1] * 0.8)
    rows = []
    for s in range(stream.observations.shape[0]):
        features = basis(standardised(stream, s, train)[0], n, bandwidth)
        a = features[:train]
        weights = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ returns[s, :train].astype(np.float64))
        rows.append(summary(score_window(features[train:] @ weights, returns[s, train:], complete[s, train:]), ds))
    return rows


def linear_td(stream, returns, complete, ds, alpha: float, lamda: float) -> list[tuple]:
    train = int(stream.observations.shape[1] * 0.8)
    rows = []
    for s in range(stream.observations.shape[0]):
        x, x_next = standardised(stream, s, train)
        phi, phi_next = (basis(v, 256, 1.0).astype(np.float32) for v in (x, x_next))
        ev = ds.evaluate_batch(
            stream.observations[s], stream.actions[s], stream.rewards[s], stream.next_observations[s]
        )
        step = alpha / float(np.mean(np.sum(phi**2, 1)))

        def body(carry, inputs):
            w, z, gamma_prev = carry
            f, f_next, c, gamma, terminated, ended = inputs
            delta = jnp.where(terminated, c, c + gamma * (w @ f_next)) - w @ f
            z = (gamma_prev * lamda)[:, None] * z + f[None, :]
            v = w @ f
            w = w + step * delta[:, None] * z
            return (w, jnp.where(ended, 0.0, z), gamma), v

        n, m = len(ds), phi.shape[1]
        inputs = (
            phi,
            phi_next,
            np.asarray(ev.cumulants),
            np.asarray(ev.discounts),
            stream.terminated[s],
            stream.terminated[s] | stream.truncated[s],
        )
        init = (jnp.zeros((n, m)), jnp.zeros((n, m)), jnp.zeros(n))
        predictions = np.asarray(jax.lax.scan(jax.jit(body), init, tuple(map(jnp.asarray, inputs)))[1])
        rows.append(summary(score_window(predictions[train:], returns[s, train:], complete[s, train:]), ds))
    return rows


def online_lstd(stream, returns, complete, ds, ridge: float, every: int = 250) -> list[tuple]:
    train = int(stream.observations.shape[1] * 0.8)
    gammas = np.asarray(ds.constant_gammas)
    rows = []
    for s in range(stream.observations.shape[0]):
        x, x_next = standardised(stream, s, train)
        phi, phi_next = basis(x, 256, 1.0), basis(x_next, 256, 1.0)
        ev = ds.evaluate_batch(
            stream.observations[s], stream.actions[s], stream.rewards[s], stream.next_observations[s]
        )
        cumulants = np.asarray(ev.cumulants, np.float64)
        bootstraps = (~stream.terminated[s]).astype(np.float64)[:, None]
        groups = sorted(set(gammas.tolist()))
        m = phi.shape[1]
        a_matrix = {g: ridge * np.eye(m) for g in groups}
        b = np.zeros((m, len(ds)))
        weights = np.zeros((m, len(ds)))
        predictions = np.zeros((len(phi), len(ds)))
        for start in range(0, len(phi), every):
            block = slice(start, start + every)
            predictions[block] = phi[block] @ weights
            for g in groups:
                a_matrix[g] += phi[block].T @ (phi[block] - g * bootstraps[block] * phi_next[block])
            b += phi[block].T @ cumulants[block]
            for g in groups:
                members = np.isclose(gammas, g)
                weights[:, members] = np.linalg.solve(a_matrix[g], b[:, members])
        rows.append(summary(score_window(predictions[train:], returns[s, train:], complete[s, train:]), ds))
    return rows


def averaged_heads(stream, returns, complete, ds, seeds: list[int], rate: float, env: str) -> list[tuple]:
    learner = HordeLearner(sd.demon_set(env, 0.0))
    dim = stream.observations.shape[-1]

    def one(transitions, key):
        state = learner.init_traced(dim, key)

        def body(carry, t):
            s, average = carry
            v = learner.core.predict_traced(s.core._replace(head_params=average), t[0])
            s = learner.update_from_transition_traced(s, *t).state
            average = jax.tree_util.tree_map(lambda a, w: a + rate * (w - a), average, s.core.head_params)
            return (s, average), v

        return jax.lax.scan(body, (state, state.core.head_params), transitions)[1]

    keys = jnp.stack([jax.random.key(s) for s in seeds])
    predictions = np.asarray(jax.jit(jax.vmap(one))(stream, keys))
    train = int(stream.observations.shape[1] * 0.8)
    return [
        summary(score_window(predictions[s, train:], returns[s, train:], complete[s, train:]), ds)
        for s in range(len(seeds))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=ENV, choices=sd.ENVS, help="the stream (floor and windows: CartPole-v1 only)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["floor", "lsq", "linear", "averaged", "lstd", "windows"],
        choices=["floor", "lsq", "linear", "averaged", "lstd", "windows"],
    )
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"command: python benchmarks/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}")
    print(f"seeds {args.seeds}, {args.steps} steps; machine: {machine_info()}")
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    if args.env != ENV and {"floor", "windows"} & set(args.parts):
        parser.error(f"--parts floor and windows are for {ENV} only")
    stream = sd.streams(args.env, args.seeds, args.steps)
    ds = sd.demon_set(args.env)
    returns, complete = sd.ideal(stream, ds)
    train = int(args.steps * 0.8)
    print("| row | median (per seed) | γ = 0.9 group | time to termination | s |")
    print("|---|---|---|---|---|")

    def show(name: str, rows: list[tuple], start: float) -> None:
        cols = [
            " ".join(f"{r[j]:.3f}" for r in rows) if np.all(np.isfinite([r[j] for r in rows])) else "-"
            for j in range(3)
        ]
        print(f"| {name} | {cols[0]} | {cols[1]} | {cols[2]} | {time.time() - start:.0f} |", flush=True)

    if "floor" in args.parts:
        start, rows = time.time(), []
        for s in range(len(args.seeds)):
            rng = np.random.default_rng(args.seeds[s])
            states = stream.observations[s, train:]
            values = np.concatenate([true_values(states[i : i + 1000], rng) for i in range(0, len(states), 1000)])
            rows.append(summary(score_window(values, returns[s, train:], complete[s, train:]), ds))
        show(f"floor (true values, {ROLLOUTS} rollouts per state)", rows, start)
    if "lsq" in args.parts:
        for n, bandwidth, ridge in (
            (256, 1.0, 1.0),
            (256, 1.0, 10.0),
            (256, 0.5, 1.0),
            (512, 1.0, 10.0),
            (1024, 0.5, 10.0),
        ):
            start = time.time()
            rows = least_squares(stream, returns, complete, ds, n, bandwidth, ridge)
            show(f"least squares on [1, x, {n} Fourier, σ = {bandwidth}], ridge {ridge:g}", rows, start)
    if "linear" in args.parts:
        for alpha, lamda in ((0.1, 0.0), (0.1, 0.9), (0.03, 0.9)):
            start = time.time()
            rows = linear_td(stream, returns, complete, ds, alpha, lamda)
            show(f"online linear TD(λ = {lamda}) on [1, x, 256 Fourier, σ = 1], α = {alpha:g} / ‖φ‖²", rows, start)
    if "averaged" in args.parts:
        for rate in (1e-3, 2e-3):
            start = time.time()
            show(
                f"defaults, predictions from head weights averaged at rate {rate:g}",
                averaged_heads(stream, returns, complete, ds, args.seeds, rate, args.env),
                start,
            )
    if "lstd" in args.parts:
        for ridge in (1.0, 10.0):
            start = time.time()
            rows = online_lstd(stream, returns, complete, ds, ridge)
            show(
                f"online LSTD(0) on [1, x, 256 Fourier, σ = 1], ridge {ridge:g}, re-solved every 250 steps", rows, start
            )
    if "windows" in args.parts:
        predictions = sd.horde_predictions(HordeLearner(sd.demon_set(ENV, 0.0)), stream, args.seeds)
        i = ds.names.index("time_to_termination")
        print("\ntime to termination of the defaults per 3,000-step window (rows: seeds; columns: window start)")
        starts = range(12_000, args.steps - 2_999, 3_000)
        print("| seed | " + " | ".join(str(a) for a in starts) + " |")
        for s in range(len(args.seeds)):
            cells = [
                score_window(predictions[s, a : a + 3_000], returns[s, a : a + 3_000], complete[s, a : a + 3_000])[i]
                for a in starts
            ]
            print(f"| {args.seeds[s]} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    load = os.getloadavg()
    print(f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
