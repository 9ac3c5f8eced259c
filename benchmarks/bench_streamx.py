#!/usr/bin/env python3
"""Stream Q(λ), SARSA(λ) and AC(λ) on CartPole-v1 side by side: the official stream-x scripts and horde.

Usage::

    python benchmarks/bench_streamx.py --streamx-dir /path/to/streaming-drl     # Q(λ), 100,000 steps, seed 0
    python benchmarks/bench_streamx.py --streamx-dir DIR --algo sarsa           # SARSA(λ)
    python benchmarks/bench_streamx.py --streamx-dir DIR --algo ac              # AC(λ): stream-x's row only
    python benchmarks/bench_streamx.py --streamx-dir DIR --algo all             # one table, every row
    python benchmarks/bench_streamx.py --streamx-dir /path/to/streaming-drl --steps 20000   # throughput only
    python benchmarks/bench_streamx.py --streamx-dir DIR --steps 20000 --sync-dispatch      # JAX dispatch in the caller
    python benchmarks/bench_streamx.py --algo all                              # horde's side, quoted baselines
    python benchmarks/bench_streamx.py --streamx-dir DIR --only streamx --env Acrobot-v1 --seeds 5   # stream-x alone

``--streamx-dir`` is a checkout of the paper's public repository (Elsayed, Vasan & Mahmood 2024,
"Streaming Deep Reinforcement Learning Finally Works", github.com/mohmdelsayed/streaming-drl):
its ``stream_q.py``, ``stream_sarsa.py``, ``stream_ac_discrete.py`` and the modules they import
(``optim.py``, ``sparse_init.py``, ``normalization_wrappers.py``, ``time_wrapper.py``). Nothing of
it is part of horde; it needs PyTorch importable by this interpreter (``pip install torch``, CPU
wheel), and runs in a child process with one thread (``torch.set_num_threads(1)``,
``OMP_NUM_THREADS=1``).

``--algo q`` (the default) gives three rows, each Stream Q(λ) with stream-x's defaults ((32, 32)
network with LayerNorm, sparse init 0.9, ObGD α = 1, κ = 2, λ = 0.8, γ = 0.99, observation
normalisation, reward scaling, ε from 1 to 0.01 over the first 5 % of the steps), CartPole-v1
with its standard 500-step limit:

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

``--algo sarsa`` gives the same three rows for SARSA(λ): stream-x's ``StreamSARSA`` agent
(its ``main``'s settings: the Q(λ) ones above, ``exploration_fraction`` 0.05) with its wrappers
and loop, adapted as above (500-step limit, scalar return); horde's rows one control demon with
the target policy ``policies.epsilon_greedy(0.01)`` (the ``ControlLearner``'s SARSA(λ) rule;
every other setting the defaults, which are stream-x's), acting with
``horde.EpsilonGreedy("balance")`` (ε from 1 to 0.01 over the first 5 % of the steps, as
stream-x's schedule). ``--algo ac`` gives stream-x's ``StreamAC`` row alone (its ``main``'s
settings: separate (32, 32) actor and critic, κ 3 for the policy and 2 for the value, entropy
coefficient 0.01, same wrappers and adaptations): horde has no actor-critic learner, so the row
is a reference figure. ``--algo all`` runs the three in turn and prints one table.

The ratio column is each row's steps/s over the stream-x row of the same algorithm; the targets
(10× for ``horde.run``, 100× for ``run_jax`` with 8 seeds) are set against the official Stream
Q(λ) and shown on its rows. Without ``--streamx-dir`` (or without PyTorch, or without the
algorithm's script) a stream-x row shows a reference measurement of its script, labelled as
quoted (seed 0, 100,000 steps, a quiet 2-core machine: ``stream_q.py`` last-20 mean 447 at 1,114
steps/s, ``stream_sarsa.py`` 477 at 1,157, ``stream_ac_discrete.py`` 437 at 678), and the ratios
use them.

Differences that remain between the implementations (they do not change what is timed):
stream-x appends the episode's elapsed time to the observation and treats a time-limit
truncation as a termination (no bootstrap); horde bootstraps from the final observation of a
truncated episode and appends no time. stream-x cuts the trace at episode ends only (its
``reset_for_random`` is off by default); horde's Stream Q(λ) also cuts it after an exploratory
action. Their ε-greedy counts a random action equal to the greedy one as greedy, as horde's
exact probabilities do. For SARSA(λ): stream-x bootstraps from the sampled next action
``q(S', A')``, drawn by the annealed ε_t-greedy behaviour before the update; horde's rule is
Expected SARSA, ``Σ_a π(a|S') q(S', a)`` with the target's own fixed ε = 0.01 (a
demon's target policy has one ε; the behaviour's annealing cannot be followed), so during the
first 5 % horde's target is near-greedy while the behaviour is near-random, and after it the two
targets agree in expectation. stream-x's ``main`` keeps the next action across an episode end, so
each new episode's first action was drawn on the previous episode's last observation; horde
draws it on the reset observation. Both cut SARSA's trace at episode ends only.


``--sync-dispatch`` runs JAX's CPU computations in the calling thread (JAX's
``jax_cpu_enable_async_dispatch`` off, set before JAX starts; the first line of the output says
which mode ran). ``horde.run``'s acting loop waits for each step's action before it can step the
environment, so by default every step hands its compiled call to a worker thread and waits for
it to come back; on a busy 2-core machine that hand-off is a large part of a step. The stream-x
side is unaffected (PyTorch, its own process).

horde's rows use stream-x's network, ``head_features=None`` (the comparison is of the same
network, as the targets ask); the ``ControlLearner``'s default also gives its action heads fixed
features of the observation (``FourierFeatures(256)``), which ``--head-features`` uses.
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

ALGOS = ("q", "sarsa", "ac")
SCRIPTS = {"q": "stream_q.py", "sarsa": "stream_sarsa.py", "ac": "stream_ac_discrete.py"}
NAMES = {"q": "Stream Q(λ)", "sarsa": "Stream SARSA(λ)", "ac": "Stream AC(λ)"}
# Each script measured on a quiet 2-core machine with the settings below (seed 0, 100,000 steps).
QUOTED = {
    "q": {"last20": 447.0, "steps_per_s": 1114.0},
    "sarsa": {"last20": 477.0, "steps_per_s": 1157.0},
    "ac": {"last20": 437.0, "steps_per_s": 678.0},
}
TARGETS = {"horde.run": 10.0, "run_jax": 100.0}  # × the official Stream Q(λ)


def _streamx_env(env_name: str, gamma: float):
    """stream-x's wrappers, stacked as its scripts' ``main`` stacks them, with the 500-step limit."""
    import gymnasium as gym
    from normalization_wrappers import NormalizeObservation, ScaleReward
    from time_wrapper import AddTimeInfo

    env = gym.make(env_name, max_episode_steps=500)  # both CartPole-v1 and Acrobot-v1 stop at 500
    env = gym.wrappers.FlattenObservation(env)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env = ScaleReward(env, gamma=gamma)
    env = NormalizeObservation(env)
    return AddTimeInfo(env)


def _episode_return(info: dict) -> float:
    import numpy as np

    return float(np.asarray(info["episode"]["r"]).reshape(-1)[0])  # a scalar in current Gymnasium


def _value_agent_settings(env, steps: int, gamma: float, lamda: float) -> dict:
    """The settings ``stream_q.py`` and ``stream_sarsa.py`` give their agents (their defaults)."""
    return {
        "n_obs": env.observation_space.shape[0],
        "n_actions": env.action_space.n,
        "lr": 1.0,
        "gamma": gamma,
        "lamda": lamda,
        "epsilon_target": 0.01,
        "epsilon_start": 1.0,
        "exploration_fraction": 0.05,
        "total_steps": steps,
        "kappa_value": 2.0,
    }


def _loop_q(env, steps: int, seed: int, gamma: float, lamda: float) -> list[float]:
    """``stream_q.py``'s ``main`` loop: act, step, learn (trace cut after a random action off)."""
    from stream_q import StreamQ

    agent = StreamQ(**_value_agent_settings(env, steps, gamma, lamda))
    returns = []
    s, _ = env.reset(seed=seed)
    for _ in range(steps):
        a, random_action = agent.sample_action(s)
        s_next, r, terminated, truncated, info = env.step(a)
        agent.update_params(s, a, r, s_next, terminated or truncated, random_action)
        s = s_next
        if terminated or truncated:
            returns.append(_episode_return(info))
            s, _ = env.reset()
    return returns


def _loop_sarsa(env, steps: int, seed: int, gamma: float, lamda: float) -> list[float]:
    """``stream_sarsa.py``'s ``main`` loop: the next action is drawn before the update, and kept
    across an episode end (the new episode's first action was drawn on the last observation)."""
    from stream_sarsa import StreamSARSA

    agent = StreamSARSA(**_value_agent_settings(env, steps, gamma, lamda))
    returns = []
    s, _ = env.reset(seed=seed)
    a = agent.sample_action(s)
    for _ in range(steps):
        s_next, r, terminated, truncated, info = env.step(a)
        a_next = agent.sample_action(s_next)
        agent.update_params(s, a, r, s_next, a_next, terminated or truncated)
        s, a = s_next, a_next
        if terminated or truncated:
            returns.append(_episode_return(info))
            s, _ = env.reset()
    return returns


def _loop_ac(env, steps: int, seed: int, gamma: float, lamda: float) -> list[float]:
    """``stream_ac_discrete.py``'s ``main`` loop: sample from the softmax policy, step, learn."""
    from stream_ac_discrete import StreamAC

    agent = StreamAC(
        n_obs=env.observation_space.shape[0],
        n_actions=env.action_space.n,
        lr=1.0,
        gamma=gamma,
        lamda=lamda,
        kappa_policy=3.0,
        kappa_value=2.0,
    )
    returns = []
    s, _ = env.reset(seed=seed)
    for _ in range(steps):
        a = agent.sample_action(s)
        s_next, r, terminated, truncated, info = env.step(a)
        agent.update_params(s, a, r, s_next, terminated or truncated, 0.01)  # entropy coefficient
        s = s_next
        if terminated or truncated:
            returns.append(_episode_return(info))
            s, _ = env.reset()
    return returns


LOOPS = {"q": _loop_q, "sarsa": _loop_sarsa, "ac": _loop_ac}


def streamx_worker(streamx_dir: str, steps: int, seed: int, env_name: str = "CartPole-v1", algo: str = "q") -> dict:
    """Runs the official agent of ``algo`` (child process): last-20 mean, steps/s."""
    import numpy as np

    sys.path.insert(0, streamx_dir)
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    np.random.seed(seed)
    env = _streamx_env(env_name, gamma=0.99)
    start = time.perf_counter()
    returns = LOOPS[algo](env, steps, seed, 0.99, 0.8)
    wall = time.perf_counter() - start
    return {
        "last20": float(np.mean(returns[-20:])) if returns else float("nan"),
        "episodes": len(returns),
        "steps_per_s": steps / wall,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def streamx(
    streamx_dir: str | None, steps: int, seed: int, env_name: str = "CartPole-v1", algo: str = "q"
) -> tuple[dict, str]:
    """The stream-x row of ``algo``, run in a child process, or the quoted figures and why."""
    script = SCRIPTS[algo]
    if not streamx_dir:
        return dict(QUOTED[algo]), "quoted (no --streamx-dir)"
    if not os.path.isfile(os.path.join(streamx_dir, script)):
        return dict(QUOTED[algo]), f"quoted ({streamx_dir}/{script} not found)"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", streamx_dir, "--steps", str(steps)]
    cmd += ["--seed", str(seed), "--env", env_name, "--algo", algo]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return dict(QUOTED[algo]), f"quoted ({script} failed: {last})"
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    return row, f"measured: {script} from {streamx_dir}, torch {row['torch']}, {row['threads']} thread"


def control_learner(algo: str):
    """The learner of horde's rows: one control demon on the reward (γ 0.99, λ 0.8), ``ControlLearner``
    defaults; its target policy greedy (``q``: Stream Q(λ)) or ε-greedy with ε = 0.01 (``sarsa``:
    SARSA(λ), the ε stream-x's SARSA ends its annealing at)."""
    from bench_control import LEARNER_SETTINGS, learner

    import demons
    import horde
    from demons import cumulants, discounts, policies

    if algo == "q":
        return learner()
    demon = demons.Demon(
        "balance",
        cumulants.reward(),
        discounts.constant(0.99),
        lamda=0.8,
        target_policy=policies.epsilon_greedy(0.01),
    )
    return horde.ControlLearner([demon], **LEARNER_SETTINGS)


def horde_run(steps: int, speed_steps: int, seed: int, algo: str = "q") -> dict:
    """``horde.run`` on the Python CartPole-v1: the full run, then a timed run without compiling."""
    import numpy as np

    import horde

    start = time.perf_counter()
    r = horde.run(control_learner(algo), "CartPole-v1", steps=steps, seed=seed, policy=horde.EpsilonGreedy("balance"))
    wall = time.perf_counter() - start
    mine = r.episode_return
    nan = bool(np.isnan(r.predictions).any() or np.isnan(r.td_errors).any())
    lrn = control_learner(algo)  # a new learner: the compiled step is cached per configuration
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


def horde_run_jax(steps: int, seeds: int, seed: int, algo: str = "q") -> dict:
    """``run_jax`` with ``seeds`` seeds vmapped: seed ``seed``'s return, steps/s of a second call."""
    import numpy as np
    from bench_control import cartpole_v1

    import horde

    lrn, env = control_learner(algo), cartpole_v1()
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


def load_now() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_table(out: dict, sources: dict, algos: tuple[str, ...], steps: int, seed: int, jax_seeds: int) -> None:
    """One table: per algorithm its stream-x row, then horde's rows (none for AC(λ))."""
    names = ", ".join(NAMES[a] for a in algos)
    print(f"\n{names}, CartPole-v1 (500-step limit), {steps:,} steps, seed {seed}, (32, 32) network")
    print("| implementation | last-20-episode mean return | steps/s | × stream-x (same algorithm) | target |")
    print("|---|---:|---:|---:|---:|")
    for algo in algos:
        rows = out[algo]
        base = rows["streamx"]["steps_per_s"]
        quoted = " (quoted: reference measurement, not run here)" if sources[algo].startswith("quoted") else ""
        label = f"{NAMES[algo]}: stream-x `{SCRIPTS[algo]}`, PyTorch, 1 thread{quoted}"
        print(f"| {label} | {rows['streamx']['last20']:.1f} | {base:,.0f} | 1.0 | |")
        if algo == "ac":
            print("| Stream AC(λ): horde has no actor-critic learner (the row above is a reference figure) | | | | |")
            continue
        if "horde.run" not in rows:
            continue
        rule = "Stream Q(λ)" if algo == "q" else "SARSA(λ)"
        h, j = rows["horde.run"], rows["run_jax"]
        target_run = f"≥ {TARGETS['horde.run']:.0f}" if algo == "q" else ""
        target_jax = f"≥ {TARGETS['run_jax']:.0f}" if algo == "q" else ""
        print(
            f"| {rule}: horde.run, Python CartPole-v1 (compile excl.; incl.: {h['steps_per_s_incl']:,.0f}) "
            f"| {h['last20']:.1f} | {h['steps_per_s']:,.0f} | {h['steps_per_s'] / base:.1f} | {target_run} |"
        )
        print(
            f"| {rule}: run_jax, {jax_seeds} seeds vmapped, all seeds' steps (compile excl.; incl.: "
            f"{j['steps_per_s_incl']:,.0f}); return of seed {seed} "
            f"| {j['last20']:.1f} | {j['steps_per_s']:,.0f} | {j['steps_per_s'] / base:.1f} | {target_jax} |"
        )
    for algo in algos:
        print(f"{NAMES[algo]} stream-x row: {sources[algo]}")
        if "run_jax" in out[algo]:
            j, h = out[algo]["run_jax"], out[algo]["horde.run"]
            print(
                f"{NAMES[algo]} run_jax: last-20 means of seeds {seed}-{seed + jax_seeds - 1}:",
                " / ".join(f"{x:.1f}" for x in j["last20_all_seeds"]),
                "; NaN:",
                "yes" if (j["nan"] or h["nan"]) else "no",
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--streamx-dir", help="checkout of mohmdelsayed/streaming-drl (needs torch)")
    p.add_argument(
        "--algo",
        choices=("q", "sarsa", "ac", "all"),
        default="q",
        help="Stream Q(λ) (default), Stream SARSA(λ), Stream AC(λ) (stream-x only), or all three in one table",
    )
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
    p.add_argument(
        "--head-features",
        action="store_true",
        help="horde's rows with the ControlLearner's default head features (FourierFeatures(256)); "
        "without it they use stream-x's network, head_features=None",
    )
    p.add_argument(
        "--sync-dispatch",
        action="store_true",
        help="run JAX's CPU computations in the calling thread "
        "(jax.config.update('jax_cpu_enable_async_dispatch', False), set before JAX starts): "
        "horde.run's acting loop waits for every step's action, so the hand-off to a worker thread "
        "is pure cost there",
    )
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.sync_dispatch:
        import jax

        # Read once, when JAX creates its CPU client: it must be set before any computation.
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    if not a.head_features:
        from bench_control import LEARNER_SETTINGS

        LEARNER_SETTINGS["head_features"] = None
    if a._worker:
        print(json.dumps(streamx_worker(a._worker, a.steps, a.seed, a.env, a.algo)))
        return
    algos = ALGOS if a.algo == "all" else (a.algo,)
    if (a.env != "CartPole-v1" or a.seeds != 1) and a.only != "streamx":
        p.error(f"--env {a.env} --seeds {a.seeds}: another environment or several seeds need --only streamx")
    if a.only == "streamx" and a.streamx_dir is None:
        p.error("--only streamx needs --streamx-dir")
    if a.only == "horde" and a.algo == "ac":
        p.error("--only horde --algo ac: horde has no actor-critic learner")
    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print("machine:", json.dumps(machine_info()))
    print("JAX CPU dispatch:", "synchronous (--sync-dispatch)" if a.sync_dispatch else "asynchronous (JAX's default)")
    print("load average at start:", load_now(), flush=True)
    out: dict = {}
    if a.only == "streamx":
        for algo in algos:
            print(f"\nstream-x {SCRIPTS[algo]}, {a.env} (500-step limit), {a.steps:,} steps per seed, (32, 32) network")
            print("| seed | last-20-episode mean return | episodes | steps/s |")
            print("|---:|---:|---:|---:|")
            for seed in range(a.seed, a.seed + a.seeds):
                row, source = streamx(a.streamx_dir, a.steps, seed, a.env, algo)
                if source.startswith("quoted"):
                    raise SystemExit(f"stream-x did not run: {source}")
                out[f"{algo} seed {seed}" if len(algos) > 1 else f"seed {seed}"] = row
                print(f"| {seed} | {row['last20']:.1f} | {row['episodes']} | {row['steps_per_s']:,.0f} |", flush=True)
        print("load average at end:", load_now())
        if a.json:
            with open(a.json, "w") as f:
                json.dump(out, f, indent=2)
        return
    sources: dict = {}
    for algo in algos:
        out[algo] = {}
        if a.only is None:
            out[algo]["streamx"], sources[algo] = streamx(a.streamx_dir, a.steps, a.seed, algo=algo)
            print(f"stream-x {SCRIPTS[algo]}: {sources[algo]}; load average now", load_now(), flush=True)
        else:
            out[algo]["streamx"], sources[algo] = dict(QUOTED[algo]), "quoted (--only horde)"
        if a.only in (None, "horde") and algo != "ac":
            out[algo]["horde.run"] = horde_run(a.steps, a.speed_steps, a.seed, algo)
            print(f"horde.run ({algo}) done; load average now", load_now(), flush=True)
            out[algo]["run_jax"] = horde_run_jax(a.steps, a.jax_seeds, a.seed, algo)
            print(f"run_jax ({algo}) done; load average now", load_now(), flush=True)
    print_table(out, sources, algos, a.steps, a.seed, a.jax_seeds)
    print("load average at end:", load_now())
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out if len(algos) > 1 else out[algos[0]], f, indent=2)


if __name__ == "__main__":
    main()
