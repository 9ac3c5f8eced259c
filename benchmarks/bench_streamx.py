#!/usr/bin/env python3
"""Stream Q(λ) on CartPole-v1 side by side: the official stream-x script and horde's two runners.

Usage::

    python benchmarks/bench_streamx.py --streamx-dir /path/to/streaming-drl     # 100,000 steps, seed 0
    python benchmarks/bench_streamx.py --streamx-dir /path/to/streaming-drl --steps 20000   # throughput only
    python benchmarks/bench_streamx.py                                         # horde's side, quoted baseline
    python benchmarks/bench_streamx.py --streamx-dir DIR --only streamx --env Acrobot-v1 --seeds 5   # stream-x alone

``--streamx-dir`` is a checkout of the paper's public repository (Elsayed, Vasan & Mahmood 2024,
"Streaming Deep Reinforcement Learning Finally Works", github.com/mohmdelsayed/streaming-drl):
its ``stream_q.py`` and the modules it imports (``optim.py``, ``sparse_init.py``,
``normalization_wrappers.py``, ``time_wrapper.py``). Nothing of it is part of horde; it needs
PyTorch importable by this interpreter (``pip install torch``, CPU wheel), and runs in a child
process with one thread (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``).

Three rows, each Stream Q(λ) with stream-x's defaults ((32, 32) network with LayerNorm, sparse
init 0.9, ObGD α = 1, κ = 2, λ = 0.8, γ = 0.99, observation normalisation, reward scaling, ε from
1 to 0.01 over the first 5 % of the steps), CartPole-v1 with its standard 500-step limit:

* **stream-x** (``--streamx-dir``): the script's ``StreamQ`` agent and its wrappers, stacked as
  its ``main`` stacks them, driven step by step as its ``main`` drives them, except that the time
  limit is CartPole-v1's 500 (the script raises it to 10,000) and the episode return is read as
  a scalar (``info["episode"]["r"]`` is one with current Gymnasium). Seed ``--seed``; steps/s
  over the whole run.
* **horde.run**: ``horde.run(ControlLearner([demon]), "CartPole-v1", policy=EpsilonGreedy(...))``
  on the Python Gymnasium CartPole-v1 (one compiled call per step), seed ``--seed``; steps/s over
  the whole run, compilation included, and, from a second run of ``--speed-steps`` steps,
  excluded.
* **run_jax, 8 seeds**: the same learner fully compiled in ``horde.run_jax`` on gymnasium's
  ``CartPoleFunctional`` with CartPole-v1's parameters, ``--jax-seeds`` seeds vmapped (seeds
  ``--seed`` onwards); the return shown is seed ``--seed``'s; steps/s count all seeds, timed on a
  second call (the first compiles).

The ratio column is each row's steps/s over stream-x's, beside the targets (10× for
``horde.run``, 100× for ``run_jax`` with 8 seeds). Without ``--streamx-dir`` (or without PyTorch)
the stream-x row shows a reference measurement of ``stream_q.py`` (last-20 mean 447 at 1,114 steps/s, seed
0, 100,000 steps), labelled as quoted, and the ratios use them.

Differences that remain between the two implementations (they do not change what is timed):
stream-x appends the episode's elapsed time to the observation and treats a time-limit
truncation as a termination (no bootstrap); horde bootstraps from the final observation of a
truncated episode and appends no time. stream-x cuts the trace at episode ends only (its
``reset_for_random`` is off by default); horde's Stream Q(λ) also cuts it after an exploratory
action. Their ε-greedy counts a random action equal to the greedy one as greedy, as horde's
exact probabilities do. horde's control network also gives its action heads fixed features of
the observation by default (``FourierFeatures(256)``; ``head_features=None`` is stream-x's
network), which the horde rows use.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_info  # noqa: E402

QUOTED = {"last20": 447.0, "steps_per_s": 1114.0}  # stream_q.py measured on a quiet 2-core machine (same settings)
TARGETS = {"horde.run": 10.0, "run_jax": 100.0}


def streamx_worker(streamx_dir: str, steps: int, seed: int, env_name: str = "CartPole-v1") -> dict:
    """Runs the official ``StreamQ`` agent (child process): last-20 mean, steps/s."""
    import numpy as np

    sys.path.insert(0, streamx_dir)
    import gymnasium as gym
    import torch
    from normalization_wrappers import NormalizeObservation, ScaleReward
    from stream_q import StreamQ
    from time_wrapper import AddTimeInfo

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    np.random.seed(seed)
    gamma, lamda = 0.99, 0.8
    env = gym.make(env_name, max_episode_steps=500)  # both CartPole-v1 and Acrobot-v1 stop at 500
    env = gym.wrappers.FlattenObservation(env)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env = ScaleReward(env, gamma=gamma)
    env = NormalizeObservation(env)
    env = AddTimeInfo(env)
    agent = StreamQ(
        n_obs=env.observation_space.shape[0],
        n_actions=env.action_space.n,
        lr=1.0,
        gamma=gamma,
        lamda=lamda,
        epsilon_target=0.01,
        epsilon_start=1.0,
        exploration_fraction=0.05,
        total_steps=steps,
        kappa_value=2.0,
    )
    returns = []
    start = time.perf_counter()
    s, _ = env.reset(seed=seed)
    for _ in range(steps):
        a, random_action = agent.sample_action(s)
        s_next, r, terminated, truncated, info = env.step(a)
        agent.update_params(s, a, r, s_next, terminated or truncated, random_action)
        s = s_next
        if terminated or truncated:
            returns.append(float(np.asarray(info["episode"]["r"]).reshape(-1)[0]))
            s, _ = env.reset()
    wall = time.perf_counter() - start
    return {
        "last20": float(np.mean(returns[-20:])) if returns else float("nan"),
        "episodes": len(returns),
        "steps_per_s": steps / wall,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def streamx(streamx_dir: str | None, steps: int, seed: int, env_name: str = "CartPole-v1") -> tuple[dict, str]:
    """The stream-x row, run in a child process, or the quoted figures and why."""
    if not streamx_dir:
        return dict(QUOTED), "quoted (no --streamx-dir)"
    if not os.path.isfile(os.path.join(streamx_dir, "stream_q.py")):
        return dict(QUOTED), f"quoted ({streamx_dir}/stream_q.py not found)"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", streamx_dir, "--steps", str(steps)]
    cmd += ["--seed", str(seed), "--env", env_name]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return dict(QUOTED), f"quoted (stream_q.py failed: {last})"
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    return row, f"measured: stream_q.py from {streamx_dir}, torch {row['torch']}, {row['threads']} thread"


def horde_run(steps: int, speed_steps: int, seed: int) -> dict:
    """``horde.run`` on the Python CartPole-v1: the full run, then a timed run without compiling."""
    import numpy as np
    from bench_control import learner

    import horde

    start = time.perf_counter()
    r = horde.run(learner(), "CartPole-v1", steps=steps, seed=seed, policy=horde.EpsilonGreedy("balance"))
    wall = time.perf_counter() - start
    mine = r.episode_return
    nan = bool(np.isnan(r.predictions).any() or np.isnan(r.td_errors).any())
    lrn = learner()  # a new learner: the compiled step is cached per configuration
    # The timed run's own schedule (5 % of its steps) fixed for the warm-up too: the compiled step
    # is specialised on the annealing length, so a warm-up with another would compile again.
    policy = horde.EpsilonGreedy("balance", anneal_steps=int(0.05 * speed_steps))
    horde.run(lrn, "CartPole-v1", steps=min(500, speed_steps), seed=seed, policy=policy, progress=False)
    t = time.perf_counter()
    horde.run(lrn, "CartPole-v1", steps=speed_steps, seed=seed, policy=policy, progress=False)
    return {
        "last20": float(np.mean(mine[-20:])) if mine.size else float("nan"),
        "episodes": int(mine.size),
        "nan": nan,
        "steps_per_s_incl": steps / wall,
        "steps_per_s": speed_steps / (time.perf_counter() - t),
    }


def horde_run_jax(steps: int, seeds: int, seed: int) -> dict:
    """``run_jax`` with ``seeds`` seeds vmapped: seed ``seed``'s return, steps/s of a second call."""
    import numpy as np
    from bench_control import cartpole_v1, learner

    import horde

    lrn, env = learner(), cartpole_v1()
    walls = []
    for _ in range(2):
        start = time.perf_counter()
        r = horde.run_jax(
            lrn,
            env,
            steps=steps,
            seed=seed,
            n_seeds=seeds,
            policy=horde.EpsilonGreedy("balance"),
            max_episode_steps=500,
            record_every=1000,
            chunk_size=min(steps, 10_000),
        )
        walls.append(time.perf_counter() - start)
    mine = r.episode_return[r.episode_seed == 0]
    per_seed = [float(np.mean(r.episode_return[r.episode_seed == i][-20:])) for i in range(seeds)]
    return {
        "last20": float(np.mean(mine[-20:])) if mine.size else float("nan"),
        "episodes": int(mine.size),
        "last20_all_seeds": per_seed,
        "nan": bool(np.isnan(r.predictions).any() or np.isnan(r.td_errors).any()),
        "steps_per_s_incl": steps * seeds / walls[0],
        "steps_per_s": steps * seeds / walls[1],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--streamx-dir", help="checkout of mohmdelsayed/streaming-drl (needs torch)")
    p.add_argument("--steps", type=int, default=100_000, help="steps of each run (default 100,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed-steps", type=int, default=5_000, help="horde.run's timed run without compiling")
    p.add_argument("--jax-seeds", type=int, default=8)
    p.add_argument("--only", choices=("streamx", "horde"), help="one side only")
    p.add_argument("--json")
    p.add_argument(
        "--env",
        default="CartPole-v1",
        choices=("CartPole-v1", "Acrobot-v1"),
        help="the stream-x side's environment; Acrobot-v1 only with --only streamx (horde's Acrobot: "
        "bench_control.py --only acrobot)",
    )
    p.add_argument("--seeds", type=int, default=1, help="stream-x runs for seeds --seed onwards (--only streamx)")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a._worker:
        print(json.dumps(streamx_worker(a._worker, a.steps, a.seed, a.env)))
        return
    if (a.env != "CartPole-v1" or a.seeds != 1) and a.only != "streamx":
        p.error(f"--env {a.env} --seeds {a.seeds}: another environment or several seeds need --only streamx")
    if a.only == "streamx" and a.streamx_dir is None:
        p.error("--only streamx needs --streamx-dir")
    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print("machine:", json.dumps(machine_info()))
    print("load average at start:", " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    out: dict = {}
    if a.only == "streamx":
        print(f"\nstream-x stream_q.py, {a.env} (500-step limit), {a.steps:,} steps per seed, (32, 32) network")
        print("| seed | last-20-episode mean return | episodes | steps/s |")
        print("|---:|---:|---:|---:|")
        for seed in range(a.seed, a.seed + a.seeds):
            row, source = streamx(a.streamx_dir, a.steps, seed, a.env)
            if source.startswith("quoted"):
                raise SystemExit(f"stream-x did not run: {source}")
            out[f"seed {seed}"] = row
            print(f"| {seed} | {row['last20']:.1f} | {row['episodes']} | {row['steps_per_s']:,.0f} |", flush=True)
        print("load average at end:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(out, f, indent=2)
        return
    if a.only is None:
        out["streamx"], source = streamx(a.streamx_dir, a.steps, a.seed)
        print(f"stream-x: {source}; load average now", " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    else:
        out["streamx"], source = dict(QUOTED), "quoted (--only horde)"
    if a.only in (None, "horde"):
        out["horde.run"] = horde_run(a.steps, a.speed_steps, a.seed)
        print("horde.run done; load average now", " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
        out["run_jax"] = horde_run_jax(a.steps, a.jax_seeds, a.seed)
    base = out["streamx"]["steps_per_s"]
    quoted = source.startswith("quoted")
    print(f"\nStream Q(λ), CartPole-v1 (500-step limit), {a.steps:,} steps, seed {a.seed}, (32, 32) network")
    print("| implementation | last-20-episode mean return | steps/s | × stream-x | target |")
    print("|---|---:|---:|---:|---:|")
    label = "stream-x stream_q.py, PyTorch, 1 thread" + (" (quoted)" if quoted else "")
    print(f"| {label} | {out['streamx']['last20']:.1f} | {base:,.0f} | 1.0 | |")
    if "horde.run" in out:
        h = out["horde.run"]
        print(
            f"| horde.run, Python CartPole-v1 (compile excl.; incl.: {h['steps_per_s_incl']:,.0f}) "
            f"| {h['last20']:.1f} | {h['steps_per_s']:,.0f} | {h['steps_per_s'] / base:.1f} | ≥ {TARGETS['horde.run']:.0f} |"
        )
        j = out["run_jax"]
        print(
            f"| run_jax, {a.jax_seeds} seeds vmapped, all seeds' steps (compile excl.; incl.: "
            f"{j['steps_per_s_incl']:,.0f}); return of seed {a.seed} "
            f"| {j['last20']:.1f} | {j['steps_per_s']:,.0f} | {j['steps_per_s'] / base:.1f} | ≥ {TARGETS['run_jax']:.0f} |"
        )
        print(
            f"run_jax: last-20 means of seeds {a.seed}-{a.seed + a.jax_seeds - 1}:",
            " / ".join(f"{x:.1f}" for x in j["last20_all_seeds"]),
            "; NaN:",
            "yes" if (j["nan"] or h["nan"]) else "no",
        )
    print("load average at end:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
