#!/usr/bin/env python3
"""A greedy demon on gymnax's Acrobot-v1: a sweep of ControlLearner/EpsilonGreedy settings.

Usage::

    python benchmarks/sweep_acrobot.py                       # every setting below
    python benchmarks/sweep_acrobot.py --only "kappa 1" "defaults"
    python benchmarks/sweep_acrobot.py --list
    python benchmarks/sweep_acrobot.py --env cartpole --only "Fourier head features 256, σ 1"
    python benchmarks/sweep_acrobot.py --runner gymnasium --only "Fourier head features 256, σ 1"

Each setting is one vmapped ``horde.run_jax`` call over seeds 0-4 (``--seeds``), 100,000 steps
each (``--steps``), of the demon and behaviour of ``bench_control.py --only acrobot``
(``Demon("balance", cumulants.reward(), discounts.constant(γ), lamda=λ,
target_policy=policies.greedy())`` in a ``horde.ControlLearner``, acting with
``horde.EpsilonGreedy("balance")``, ε from 1 to 0.01 over the first 5 % of the steps) with the
listed settings changed. Per setting it prints one table row: each seed's mean return of its
last 20 episodes (the behaviour's own episodes, ε included), how many seeds reach ≥ −100 (the
target: 4 of 5), whether any recorded value was NaN, and the wall-clock time with the load
average before and after.

Every row without "Fourier head features" in its label is the trunk-only network it was first
measured with (``head_features=None``, the ``ControlLearner``'s default until head features
became it); "Fourier head features N, σ S" gives the action heads ``horde.FourierFeatures(N,
bandwidth=S)`` (the observation and N random Fourier features of it), and "Fourier head features
256, σ 1" is today's default.

``--env cartpole`` runs the rows on CartPole-v1 (``bench_control.py``'s ``CartPoleFunctional``;
target ≥ 450) and ``--runner gymnasium`` through ``horde.run`` on the Python Gymnasium
environment, one seed after another, instead of one vmapped ``run_jax`` call.

``elapsed`` appends the episode's elapsed time ``t / 500`` to the observation (as the stream-x
scripts do with their time-information wrapper); it is this script's subclass of gymnax's
``Acrobot``, not a library feature. ``sarsa`` makes the demon's target policy
``policies.epsilon_greedy(ε)`` (Expected SARSA(λ)) instead of greedy (Stream Q(λ)).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_info  # noqa: E402
from bench_control import cartpole_v1, per_seed  # noqa: E402

TARGETS = {"acrobot": -100.0, "cartpole": 450.0}


# (label, settings): ControlLearner keywords, plus gamma, lamda, anneal (EpsilonGreedy's
# anneal_steps), sarsa (the target policy's ε) and elapsed (the time input).
SETTINGS: list[tuple[str, dict]] = [
    ("defaults", {}),
    ("step_size 0.5", {"step_size": 0.5}),
    ("kappa 0.5", {"kappa": 0.5}),
    ("kappa 0.75", {"kappa": 0.75}),
    ("kappa 1", {"kappa": 1.0}),
    ("kappa 1.25", {"kappa": 1.25}),
    ("kappa 1.5", {"kappa": 1.5}),
    ("no ObGD, step_size 0.01", {"kappa": None, "step_size": 0.01}),
    ("no ObGD, step_size 0.003", {"kappa": None, "step_size": 0.003}),
    ("no LayerNorm", {"use_layer_norm": False}),
    ("sparsity 0", {"sparsity": 0.0}),
    ("lamda 0.5", {"lamda": 0.5}),
    ("Expected SARSA(λ), target ε 0.01", {"sarsa": 0.01}),
    ("elapsed-time input", {"elapsed": True}),
    ("elapsed-time input, lamda 0.9", {"elapsed": True, "lamda": 0.9}),
    ("elapsed-time input, anneal 20k", {"elapsed": True, "anneal": 20_000}),
    ("lamda 0.9, (64, 64)", {"lamda": 0.9, "hidden_sizes": (64, 64)}),
    ("lamda 0.9, anneal 20k", {"lamda": 0.9, "anneal": 20_000}),
    ("lamda 0.9, gamma 0.995", {"lamda": 0.9, "gamma": 0.995}),
    (
        "lamda 0.9, (64, 64), anneal 20k, gamma 0.995",
        {"lamda": 0.9, "hidden_sizes": (64, 64), "anneal": 20_000, "gamma": 0.995},
    ),
    ("kappa 1, elapsed-time input", {"kappa": 1.0, "elapsed": True}),
    ("kappa 1, lamda 0.9", {"kappa": 1.0, "lamda": 0.9}),
    ("kappa 1, lamda 0.95", {"kappa": 1.0, "lamda": 0.95}),
    ("kappa 1, (64, 64)", {"kappa": 1.0, "hidden_sizes": (64, 64)}),
    ("kappa 1, gamma 0.995", {"kappa": 1.0, "gamma": 0.995}),
    ("kappa 1, gamma 0.995, (64, 64)", {"kappa": 1.0, "gamma": 0.995, "hidden_sizes": (64, 64)}),
    ("kappa 1, no observation normalisation", {"kappa": 1.0, "normalize_observations": False}),
    ("kappa 1, anneal 20k", {"kappa": 1.0, "anneal": 20_000}),
    ("kappa 1, Expected SARSA(λ)", {"kappa": 1.0, "sarsa": 0.01}),
    ("kappa 1, sparsity 0", {"kappa": 1.0, "sparsity": 0.0}),
    ("one hidden layer of 64", {"hidden_sizes": (64,)}),
    ("kappa 1, (128, 128)", {"kappa": 1.0, "hidden_sizes": (128, 128)}),
    ("gamma 0.995, (64, 64)", {"gamma": 0.995, "hidden_sizes": (64, 64)}),
    ("kappa 1, lamda 0.9, gamma 0.995", {"kappa": 1.0, "lamda": 0.9, "gamma": 0.995}),
    ("kappa 1.5, gamma 0.995", {"kappa": 1.5, "gamma": 0.995}),
    (
        "kappa 1, lamda 0.9, gamma 0.995, (64, 64)",
        {"kappa": 1.0, "lamda": 0.9, "gamma": 0.995, "hidden_sizes": (64, 64)},
    ),
    ("kappa 0.75, gamma 0.995", {"kappa": 0.75, "gamma": 0.995}),
    ("kappa 1.25, gamma 0.995", {"kappa": 1.25, "gamma": 0.995}),
    ("kappa 1, gamma 0.995, elapsed-time input", {"kappa": 1.0, "gamma": 0.995, "elapsed": True}),
    ("Fourier head features 256, σ 1", {"fourier": {"n_features": 256}}),
    ("Fourier head features 64, σ 1", {"fourier": {"n_features": 64}}),
    ("Fourier head features 256, σ 0.5", {"fourier": {"n_features": 256, "bandwidth": 0.5}}),
    ("Fourier head features 256, σ 2", {"fourier": {"n_features": 256, "bandwidth": 2.0}}),
    ("Fourier head features 256, σ 1, projection seed 1", {"fourier": {"n_features": 256, "seed": 1}}),
    ("Fourier head features 512, σ 1", {"fourier": {"n_features": 512}}),
    ("input only in the heads (Fourier head features 0)", {"fourier": {"n_features": 0}}),
    ("Fourier head features 256, σ 1, kappa 1", {"fourier": {"n_features": 256}, "kappa": 1.0}),
    ("Fourier head features 256, σ 1, kappa 1.5", {"fourier": {"n_features": 256}, "kappa": 1.5}),
    ("Fourier head features 256, σ 1, gamma 0.995", {"fourier": {"n_features": 256}, "gamma": 0.995}),
    ("Fourier head features 256, σ 1, lamda 0.9", {"fourier": {"n_features": 256}, "lamda": 0.9}),
    ("Fourier head features 512, σ 1, kappa 1", {"fourier": {"n_features": 512}, "kappa": 1.0}),
    ("Fourier head features 256, σ 1, (64, 64)", {"fourier": {"n_features": 256}, "hidden_sizes": (64, 64)}),
]


def acrobot_with_elapsed_time():
    """gymnax's Acrobot-v1 with ``t / 500`` appended to its observation (7 features)."""
    import jax.numpy as jnp
    from gymnax.environments import spaces
    from gymnax.environments.classic_control.acrobot import Acrobot

    class AcrobotElapsedTime(Acrobot):
        def get_obs(self, state, params=None, key=None):
            t = jnp.reshape(state.time / 500.0, (1,))
            return jnp.concatenate([super().get_obs(state, params, key), t]).astype(jnp.float32)

        def observation_space(self, params):
            box = super().observation_space(params)
            return spaces.Box(jnp.append(box.low, 0.0), jnp.append(box.high, 1.0), (7,), jnp.float32)

    return AcrobotElapsedTime()


def run_setting(
    settings: dict, steps: int, seeds: int, seed: int, env: str = "acrobot", runner: str = "run_jax"
) -> list[dict]:
    import demons
    import horde
    from demons import cumulants, discounts, policies

    kw = dict(settings)
    gamma, lamda = kw.pop("gamma", 0.99), kw.pop("lamda", 0.8)
    anneal, sarsa, elapsed = kw.pop("anneal", None), kw.pop("sarsa", None), kw.pop("elapsed", False)
    # The rows without "fourier" are the trunk-only network they were measured with (the
    # defaults before head features); "fourier" gives the heads FourierFeatures(**it).
    fourier = kw.pop("fourier", None)
    kw["head_features"] = None if fourier is None else horde.FourierFeatures(**fourier)
    target = policies.greedy() if sarsa is None else policies.epsilon_greedy(sarsa)
    demon = demons.Demon("balance", cumulants.reward(), discounts.constant(gamma), lamda=lamda, target_policy=target)
    if runner == "gymnasium":
        if elapsed:
            raise ValueError("the elapsed-time input is gymnax's only here")
        import numpy as np

        rows = []
        for i in range(seed, seed + seeds):
            r = horde.run(
                horde.ControlLearner([demon], **kw),
                "Acrobot-v1" if env == "acrobot" else "CartPole-v1",
                steps=steps,
                seed=i,
                policy=horde.EpsilonGreedy("balance", anneal_steps=anneal),
                record_every=1000,
                progress=False,
            )
            ret = np.asarray(r.episode_return)
            bad = np.isnan(np.asarray(r.predictions)).any() or np.isnan(np.asarray(r.td_errors)).any()
            rows.append({"seed": i, "episodes": int(ret.size), "last20": float(np.mean(ret[-20:])), "nan": bool(bad)})
        return rows
    if env == "cartpole":
        if elapsed:
            raise ValueError("the elapsed-time input is Acrobot's only")
        environment = cartpole_v1()
    else:
        environment = acrobot_with_elapsed_time() if elapsed else "gymnax:Acrobot-v1"
    r = horde.run_jax(
        horde.ControlLearner([demon], **kw),
        environment,
        steps=steps,
        seed=seed,
        n_seeds=seeds,
        policy=horde.EpsilonGreedy("balance", anneal_steps=anneal),
        record_every=1000,
        chunk_size=min(steps, 10_000),
    )
    return per_seed(r, seeds, seed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", help="labels of the settings to run (default: all)")
    p.add_argument("--list", action="store_true", help="list the settings and exit")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--env",
        choices=tuple(TARGETS),
        default="acrobot",
        help="cartpole: the same rows on CartPole-v1 (bench_control.py's, target ≥ 450)",
    )
    p.add_argument(
        "--runner",
        choices=("run_jax", "gymnasium"),
        default="run_jax",
        help="gymnasium: horde.run on the Python Gymnasium environment, one seed after another",
    )
    a = p.parse_args()
    labels = [label for label, _ in SETTINGS]
    if a.list:
        for label, s in SETTINGS:
            print(f"{label}: {s}")
        return
    unknown = sorted(set(a.only or ()) - set(labels))
    if unknown:
        p.error(f"--only: unknown settings {unknown}; --list shows them")
    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print("machine:", json.dumps(machine_info()))
    if a.runner == "gymnasium":
        name = "horde.run on Gymnasium's " + ("Acrobot-v1" if a.env == "acrobot" else "CartPole-v1")
    else:
        name = "run_jax on " + ("gymnax's Acrobot-v1" if a.env == "acrobot" else "CartPole-v1 (CartPoleFunctional)")
    target = TARGETS[a.env]
    print(f"\n{name}, 500-step limit, {a.steps:,} steps per seed, seeds {a.seed}-{a.seed + a.seeds - 1}")
    shown = f"{target:g}".replace("-", "−")
    print(f"| setting | last-20-episode mean per seed | seeds ≥ {shown} | NaN | wall, load average |")
    print("|---|---|---:|---|---|")
    for label, settings in SETTINGS:
        if a.only and label not in a.only:
            continue
        before, t = os.getloadavg()[0], time.perf_counter()
        rows = run_setting(settings, a.steps, a.seeds, a.seed, a.env, a.runner)
        wall, after = time.perf_counter() - t, os.getloadavg()[0]
        per = " / ".join(f"{r['last20']:.1f}" for r in rows)
        hits = sum(r["last20"] >= target for r in rows)
        nan = "yes" if any(r["nan"] for r in rows) else "no"
        print(f"| {label} | {per} | {hits} | {nan} | {wall:.0f} s, {before:.1f}-{after:.1f} |", flush=True)


if __name__ == "__main__":
    main()
