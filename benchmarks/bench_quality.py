"""Learning quality against the ground truth: the floor, tile-coded linear TD(λ) and the Horde.

For each environment, one stream per seed (uniform-random behaviour, ``run_jax``), and on it:

* **floor**: the true values ``E[G_t | S_t]`` themselves (Monte Carlo rollouts from the exact
  state, ``run_jax(..., true_value_every=...)``), scored against the ideal returns: the noise
  the policy makes, which no learner removes;
* **tile TD(λ)**: linear TD(λ = 0.9) on tile codes (8 tilings over all dimensions plus 8
  tilings of each dimension alone), a baseline written here in a few lines of JAX;
* **horde**: ``HordeLearner(demons)`` with the library's defaults (and, with ``--config``, a
  second Horde built from a JSON dict of ``HordeLearner`` keyword arguments).

Score (per demon) = RMSE of ``v(S_t)`` against the ideal return ``G_t``, divided by ``std(G)``,
both over the complete returns of the last 20 % of the steps; the floor is scored on the
sampled steps of that window. Rows: the median over all demons, the median of the γ = 0.9
demons, and one named demon (CartPole's time to termination, Pendulum's reward at γ = 0.9).
Each cell is the mean over seeds (the spread over seeds in brackets); a second table gives
every seed's value.

The tile coder sees the same stream as the Horde: the stream is regenerated from ``run_jax``'s
documented key derivation, and checked against the run's records.

    python benchmarks/bench_quality.py                          # CartPole-v1, Pendulum-v1, Acrobot-v1
    python benchmarks/bench_quality.py --envs CartPole-v1 --steps 30000 --seeds 3
    python benchmarks/bench_quality.py --config '{"step_size": 1e-3}'

CartPole-v1 is phys2d's functional CartPole with CartPole-v1's pole mass × length (0.05;
phys2d's own is 0.6). Pendulum-v1 is phys2d's Pendulum (the same dynamics) as a continuing
stream (no time limit). Acrobot-v1 needs a JAX Acrobot (``as_jax_env("gymnax:Acrobot-v1")``);
without one it is skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.envs.phys2d.cartpole import CartPoleFunctional, CartPoleParams
from gymnasium.envs.phys2d.pendulum import PendulumFunctional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _machine import machine_info  # noqa: E402

import horde  # noqa: E402
from demons import Demon, DemonSet  # noqa: E402
from demons import cumulants as C  # noqa: E402
from demons import discounts as D  # noqa: E402
from horde.evaluation import ideal_returns  # noqa: E402
from horde.runs import FeatureMap, as_jax_env  # noqa: E402

GAMMAS = (0.0, 0.5, 0.8, 0.9)
LAST = 0.2  # scored share of the run, at its end

_V1 = CartPoleParams(polemass_length=0.05)


class CartPoleV1(CartPoleFunctional):
    """phys2d CartPole with CartPole-v1's dynamics (``polemass_length = 0.05``)."""

    def transition(self, state, action, rng=None, params=_V1):
        return super().transition(state, action, rng, _V1)

    def terminal(self, state, rng, params=_V1):
        return super().terminal(state, rng, _V1)

    def reward(self, state, action, next_state, rng, params=_V1):
        return super().reward(state, action, next_state, rng, _V1)


def _obs_demons(names: list[str]) -> list[Demon]:
    return [Demon(f"{name}@{g}", C.observation(i), D.constant(g)) for i, name in enumerate(names) for g in GAMMAS]


def environments(steps: int) -> dict[str, dict[str, Any]]:
    """name -> env, demons, time limit, the named row's demon."""
    cartpole = _obs_demons(["x", "x_dot", "theta", "theta_dot"]) + [
        Demon("time_to_termination", C.constant(1.0), D.constant(0.9))
    ]
    pendulum = _obs_demons(["cos", "sin", "theta_dot"]) + [Demon("reward@0.9", C.reward(), D.constant(0.9))]
    acrobot = _obs_demons(["cos1", "sin1", "cos2", "sin2", "dtheta1", "dtheta2"]) + [
        Demon("time_to_termination", C.constant(1.0), D.constant(0.9))
    ]
    return {
        "CartPole-v1": {"env": CartPoleV1, "demons": cartpole, "limit": 500, "named": "time_to_termination"},
        # continuing: no time limit within the run
        "Pendulum-v1": {"env": PendulumFunctional, "demons": pendulum, "limit": steps + 1, "named": "reward@0.9"},
        "Acrobot-v1": {"env": "gymnax:Acrobot-v1", "demons": acrobot, "limit": 500, "named": "time_to_termination"},
    }


# ---------------------------------------------------------------------------------------------
# The stream's observations, read back from the run


def stream_features(jenv, result, copy: int, seed: int, components: list[int]):
    """``(x_t, x_{t+1})`` of every step of copy ``copy`` of a ``run_jax`` run: ``x_{t+1}`` from
    the γ = 0 observation demons' cumulants (``components[k]`` is the demon that reads
    observation component ``k``), and the reset observations (after an episode ends, and at the
    start) from ``run_jax``'s documented keys: ``fold_in(env_root, 0)`` first, then ``k_reset``
    of the step that ended the episode."""
    x_next = np.asarray(result.cumulants[copy][:, components], np.float32)
    T = x_next.shape[0]
    feat = FeatureMap(jenv.observation_space).jax_transform()
    env_root = jax.random.fold_in(jax.random.key(seed), 1)
    step_root = jax.random.fold_in(env_root, 1)

    def reset_x(key):
        return feat(jenv.reset(key)[1])

    x0 = np.asarray(reset_x(jax.random.fold_in(env_root, 0)))
    keys = jax.vmap(lambda t: jax.random.split(jax.random.fold_in(step_root, t), 3)[2])(jnp.arange(T, dtype=jnp.uint32))
    resets = np.asarray(jax.jit(jax.vmap(reset_x))(keys))
    ended = np.asarray(result.terminated[copy] | result.truncated[copy])
    x = np.concatenate([x0[None], np.where(ended[:-1, None], resets[:-1], x_next[:-1])])
    return x, x_next


# ---------------------------------------------------------------------------------------------
# Tile-coded linear TD(λ)


class TileCoder:
    """8 tilings over all dimensions and 8 tilings of each dimension alone, each tiling offset
    by a fraction of a tile; ranges from the 0.5 / 99.5 percentiles of the stream."""

    def __init__(self, x: np.ndarray, tiles_joint: int, tiles_single: int = 16, tilings: int = 8):
        self.low = np.percentile(x, 0.5, axis=0).astype(np.float32)
        high = np.percentile(x, 99.5, axis=0).astype(np.float32)
        self.width = np.maximum(high - self.low, 1e-6)
        self.d, self.tilings = x.shape[1], tilings
        self.n_joint, self.n_single = tiles_joint, tiles_single
        self.joint_size = (tiles_joint + 1) ** self.d
        self.single_size = tiles_single + 1
        self.dim = tilings * self.joint_size + tilings * self.d * self.single_size
        self.active = tilings + tilings * self.d

    def indices(self, x: jax.Array) -> jax.Array:
        """``(active,)`` int32 indices of the tiles ``x`` falls in."""
        u = jnp.clip((x - self.low) / self.width, 0.0, 1.0)  # (d,)
        off = jnp.arange(self.tilings, dtype=jnp.float32)[:, None] / self.tilings  # (k, 1)
        joint = jnp.floor(u[None, :] * self.n_joint + off).astype(jnp.int32)  # (k, d)
        strides = (self.n_joint + 1) ** jnp.arange(self.d, dtype=jnp.int32)
        joint_idx = jnp.sum(joint * strides, axis=1) + jnp.arange(self.tilings) * self.joint_size
        single = jnp.floor(u[None, :] * self.n_single + off).astype(jnp.int32)  # (k, d)
        base = self.tilings * self.joint_size
        single_idx = (
            base
            + (jnp.arange(self.tilings)[:, None] * self.d + jnp.arange(self.d)[None, :]) * self.single_size
            + single
        )
        return jnp.concatenate([joint_idx, single_idx.reshape(-1)])


def tile_td(coder: TileCoder, stream, lamda: float, alpha: float):
    """Linear TD(λ) with accumulating traces, every demon at once, on ``stream = (x, x_next,
    cumulants, discounts, terminated, truncated)``: ``δ = c + γ' v(S') - v(S)`` (no bootstrap
    where terminated), ``z ← γ λ z + x(S)`` (zeroed at an episode start), ``w += α δ z``.
    Returns ``v(S_t)``, ``(T, n)``."""
    x, x_next, cumulants, discounts, terminated, truncated = stream
    n = cumulants.shape[1]
    step = alpha / coder.active

    def body(carry, inp):
        w, z, decay = carry
        xt, xn, c, g, term, trunc = inp
        i, j = coder.indices(xt), coder.indices(xn)
        v, v_next = w[i].sum(0), w[j].sum(0)
        g = jnp.where(term, 0.0, g)
        delta = c + g * v_next - v
        z = (z * decay[None, :]).at[i].add(1.0)
        w = w + step * delta[None, :] * z
        return (w, z, jnp.where(term | trunc, 0.0, g * lamda)), v

    init = (jnp.zeros((coder.dim, n), jnp.float32), jnp.zeros((coder.dim, n), jnp.float32), jnp.zeros(n))
    inputs = tuple(jnp.asarray(a) for a in (x, x_next, cumulants, discounts, terminated, truncated))
    _, v = jax.jit(lambda: jax.lax.scan(body, init, inputs))()
    return np.asarray(v)


# ---------------------------------------------------------------------------------------------
# Scores


def scores(pred, steps, g, complete, start):
    """Normalised RMSE per demon of predictions ``pred`` ``(len(steps), n)`` at ``steps``
    against the complete ideal returns there; ``std(G)`` over the window ``start:``."""
    err = np.where(complete[steps], pred - g[steps], np.nan)
    std = np.nanstd(np.where(complete[start:], g[start:], np.nan), axis=0)
    return np.sqrt(np.nanmean(err**2, axis=0)) / std


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "Pendulum-v1", "Acrobot-v1"])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--truth-every", type=int, default=10, help="true values every this many steps")
    parser.add_argument("--rollouts", type=int, default=100, help="Monte Carlo rollouts per sampled state")
    parser.add_argument("--tile-alpha", type=float, default=0.1, help="TD(λ) step size × active tiles")
    parser.add_argument("--config", type=str, default=None, help="JSON HordeLearner kwargs for a second Horde")
    args = parser.parse_args()

    print("command: python benchmarks/bench_quality.py " + " ".join(sys.argv[1:]))
    info = machine_info()
    print(f"machine: {info}")
    print(f"load average at start: {os.getloadavg()}")
    table = environments(args.steps)
    for name in args.envs:
        if name not in table:
            print(f"\n## {name}: unknown (choose from {', '.join(table)})")
            continue
        spec = table[name]
        try:
            env_obj = spec["env"]() if callable(spec["env"]) else spec["env"]
            jenv = as_jax_env(env_obj, 0)
        except Exception as e:  # noqa: BLE001 - an environment this install cannot build
            print(f"\n## {name}: skipped ({type(e).__name__}: {e})")
            continue
        run_one(name, env_obj, jenv, spec, args)
    print(f"\nload average at end: {os.getloadavg()}")
    return 0


def run_one(name, env_obj, jenv, spec, args):
    demons = DemonSet(spec["demons"])
    T, S = args.steps, args.seeds
    start = int(T * (1 - LAST))
    rows = np.arange(start, T)
    gammas = np.asarray(demons.constant_gammas)
    named = demons.index(spec["named"])
    # the γ = 0 demon of each observation component: its cumulant is that component of S_{t+1}
    components = [demons.index(d.name) for d in spec["demons"][:: len(GAMMAS)] if d.cumulant.kind == "observation"]
    learners = {"horde (defaults)": horde.HordeLearner(demons)}
    if args.config:
        learners[f"horde {args.config}"] = horde.HordeLearner(demons, **json.loads(args.config))

    results, timings = {}, {}
    truth = None
    for label, learner in learners.items():
        t0 = time.perf_counter()
        result = horde.run_jax(
            learner,
            env_obj,
            steps=T,
            n_seeds=S,
            seed=0,
            max_episode_steps=spec["limit"],
            true_value_every=args.truth_every if truth is None else None,
            true_value_rollouts=args.rollouts,
        )
        timings[label] = time.perf_counter() - t0
        if truth is None:
            truth = result
        results[label] = result
    columns: dict[str, list[np.ndarray]] = {"floor": [], "tile TD(λ=0.9)": []}
    columns.update({label: [] for label in learners})
    t_tile = 0.0
    for s in range(S):
        ideal = ideal_returns(
            truth.cumulants[s], truth.discounts[s], truth.terminated[s], truth.truncated[s], z=demons.z
        )
        g, complete = ideal.returns, ideal.complete
        # floor: the sampled steps inside the window
        sampled = np.asarray(truth.true_value_steps)
        inside = sampled >= start
        columns["floor"].append(scores(truth.true_values[s][inside], sampled[inside], g, complete, start))
        for label, result in results.items():
            columns[label].append(scores(result.predictions[s][rows], rows, g, complete, start))
        t0 = time.perf_counter()
        x, x_next = stream_features(jenv, truth, s, s, components)
        coder = TileCoder(x, tiles_joint={3: 8, 4: 6}.get(x.shape[1], 4))
        v = tile_td(
            coder,
            (x, x_next, truth.cumulants[s], truth.discounts[s], truth.terminated[s], truth.truncated[s]),
            0.9,
            args.tile_alpha,
        )
        columns["tile TD(λ=0.9)"].append(scores(v[rows], rows, g, complete, start))
        t_tile += time.perf_counter() - t0
    cfg = truth.config["true_values"]
    print(f"\n## {name}: {T} uniform-random steps × {S} seeds, {len(demons)} demons, last {LAST:.0%} scored")
    print(
        f"true values: every {cfg['every']} steps ({int((np.asarray(truth.true_value_steps) >= start).sum())} "
        f"states per seed in the window), {cfg['rollouts']} rollouts, tolerance {cfg['tolerance']}, "
        f"horizon {cfg['horizon']} steps; {cfg['wall_time']:.1f} s for "
        f"{len(truth.true_value_steps) * S} states"
    )
    print(
        "wall: "
        + ", ".join(f"{k} {v:.1f} s (run incl. compile)" for k, v in timings.items())
        + f", tile {t_tile:.1f} s"
    )
    groups = {
        "median (all demons)": np.arange(len(demons)),
        "γ = 0.9 group (median)": np.flatnonzero(np.isclose(gammas, 0.9)),
        spec["named"]: np.array([named]),
    }
    names = list(columns)
    per_seed = {
        (row, col): np.array([np.nanmedian(c[idx]) for c in columns[col]])
        for row, idx in groups.items()
        for col in names
    }
    print("| row | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row in groups:
        cells = [f"{v.mean():.3f} [{v.min():.3f}, {v.max():.3f}]" for v in (per_seed[row, col] for col in names)]
        print(f"| {row} | " + " | ".join(cells) + " |")
    print("\nper seed (seeds 0 .. n-1):\n")
    print("| row | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row in groups:
        print(f"| {row} | " + " | ".join(" ".join(f"{x:.3f}" for x in per_seed[row, col]) for col in names) + " |")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
