"""TD(0) and TD(λ) demons on the 5-state random walk, against the exact values 1/6 .. 5/6.

The classic prediction problem (Sutton & Barto 2018, Example 6.2): five states in a row, a
uniformly random walk that starts in the middle, reward 1 for stepping off the right end and 0
for stepping off the left end, no discounting. The true values of the states are
``1/6, 2/6, 3/6, 4/6, 5/6``.

One ``HordeLearner`` with ``hidden_sizes=()`` (a linear head per demon on the one-hot features,
no shared trunk) learns several demons at once, all asking the same question (cumulant = reward,
``γ = 1``) with different trace parameters ``λ``. Because there is no trunk the heads do not
interact: this is the same as running one TD(λ) learner per ``λ`` on the same stream.
Every head starts at ``v(s) = 0.5`` for every state, as in the book.

The script runs ``--runs`` independent streams of ``--steps`` steps each, feeds each stream to
the learner in compiled chunks (``horde.run_horde_learning_loop``) and reads every state's
value from the head weights after every chunk. It prints, per ``λ``, the RMS error over the
five states (averaged over runs) at the end, and the learned values of the first run.

Figure (``random_walk_td_lambda.png`` in ``--out``): left, the learned values after the last
step against the true values; right, the RMS error over time for each ``λ``.

Run: python examples/random_walk_td_lambda.py [--steps 5000] [--runs 20] [--out runs/examples]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _figures import save_png

import demons
import envs
import horde
from demons import cumulants, discounts

LAMDAS = (0.0, 0.4, 0.8, 0.9)


def collect(env: envs.RandomWalk, steps: int, seed: int) -> horde.Transitions:
    """``steps`` transitions of the uniformly random walk; resets after every episode and
    records the real final observation (the all-zeros terminal observation)."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {name: [] for name in horde.Transitions._fields}
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        action = int(rng.integers(2))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for name, value in zip(horde.Transitions._fields, (obs, action, reward, next_obs, terminated, truncated, 0.5)):
            rows[name].append(value)
        obs = env.reset()[0] if (terminated or truncated) else next_obs
    return horde.Transitions(*(np.asarray(rows[name]) for name in horde.Transitions._fields))


def state_values(state: horde.HordeState) -> np.ndarray:
    """``v_i(s)`` for every demon ``i`` and state ``s``: with one-hot features and no trunk,
    ``v_i(s) = w_i[s] + b_i``. Shape ``(n_demons, n_states)``."""
    heads = state.core.head_params
    return np.asarray(heads.weights) + np.asarray(heads.biases)[:, None]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5000, help="steps per run (default 5000)")
    parser.add_argument("--runs", type=int, default=20, help="independent runs to average (default 20)")
    parser.add_argument("--step-size", type=float, default=0.01, help="base step size α (default 0.01)")
    parser.add_argument(
        "--chunk", type=int, default=10, help="steps per compiled call; values are read after each (default 10)"
    )
    parser.add_argument("--out", default="runs/examples", help="directory for the figure (default runs/examples)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.runs < 1 or args.chunk < 1:
        parser.error("--steps, --runs and --chunk must be positive")

    env = envs.RandomWalk()  # 5 states, one-hot observations
    true = env.true_values()  # [1, 2, 3, 4, 5] / 6
    demon_set = demons.DemonSet(
        demons.Demon(f"TD({lam:g})", cumulants.reward(), discounts.constant(1.0), lamda=lam) for lam in LAMDAS
    )
    learner = horde.HordeLearner(demon_set, hidden_sizes=(), step_size=args.step_size, sparsity=0.0)

    n_chunks = -(-args.steps // args.chunk)
    rms = np.zeros((args.runs, n_chunks + 1, len(LAMDAS)))
    final_values = []
    start = time.perf_counter()
    for run in range(args.runs):
        transitions = collect(env, args.steps, seed=run)
        state = learner.init(env.n_states, jax.random.key(run))
        # Start every head at v(s) = 0.5: weights 0.5, bias 0.
        n, dim = state.core.head_params.weights.shape
        state = state._replace(
            core=state.core._replace(head_params=horde.HeadParams(jnp.full((n, dim), 0.5), jnp.zeros((n,))))
        )
        rms[run, 0] = np.sqrt(np.mean((state_values(state) - true) ** 2, axis=1))
        for c in range(n_chunks):
            chunk = horde.Transitions(*(field[c * args.chunk : (c + 1) * args.chunk] for field in transitions))
            state = horde.run_horde_learning_loop(learner, state, chunk).state
            rms[run, c + 1] = np.sqrt(np.mean((state_values(state) - true) ** 2, axis=1))
        final_values.append(state_values(state))
    elapsed = time.perf_counter() - start

    final = rms[:, -1].mean(axis=0)
    values = np.stack(final_values)  # (runs, n_demons, n_states)
    mean_values, std_values = values.mean(axis=0), values.std(axis=0)
    print(f"{args.runs} runs x {args.steps} steps, step size {args.step_size:g}, {elapsed:.1f} s")
    print(f"true values              {np.array2string(true, precision=3)}")
    for i, lam in enumerate(LAMDAS):
        print(
            f"TD({lam:<3g}) mean learned values {np.array2string(mean_values[i], precision=3)}"
            f"   RMS error {final[i]:.4f}"
        )
    print(f"(values and RMS error after the last step, averaged over the {args.runs} runs)")

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_v, ax_e = fig.subplots(1, 2)
    states = np.arange(1, env.n_states + 1)
    ax_v.plot(states, true, "k-o", lw=2, label="true value")
    for i, lam in enumerate(LAMDAS):
        offset = (i - (len(LAMDAS) - 1) / 2) * 0.06
        ax_v.errorbar(
            states + offset,
            mean_values[i],
            yerr=std_values[i],
            fmt="--o",
            ms=4,
            capsize=2,
            lw=1,
            label=f"TD({lam:g})",
        )
    ax_v.set_xticks(states, ["A", "B", "C", "D", "E"][: env.n_states] if env.n_states == 5 else states)
    ax_v.set_xlabel("state")
    ax_v.set_ylabel("value")
    ax_v.set_title(f"Learned values after {args.steps} steps\n(mean ± std over {args.runs} runs)", fontsize="medium")
    ax_v.legend(fontsize="small")
    ax_v.grid(True, alpha=0.3)
    x = np.arange(n_chunks + 1) * args.chunk
    x[-1] = args.steps
    for i, lam in enumerate(LAMDAS):
        ax_e.plot(x, rms[:, :, i].mean(axis=0), lw=1.4, label=f"λ = {lam:g}")
    ax_e.set_xlabel("steps")
    ax_e.set_ylabel("RMS error over the 5 states")
    ax_e.set_title(f"RMS error over time\n(mean of {args.runs} runs, step size {args.step_size:g})", fontsize="medium")
    ax_e.legend(fontsize="small")
    ax_e.grid(True, alpha=0.3)
    fig.set_layout_engine("tight")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "random_walk_td_lambda.png"
    save_png(fig, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
