"""Off-policy demons: semi-gradient TD diverges on Baird's counterexample, GTD(λ) does not;
GTD(λ) demons learn the Collision task's target values while RUPEE tracks their error.

**Baird's counterexample** (Sutton & Barto 2018, Section 11.2). Seven states, eight linear
features, all rewards 0 (every true value is 0), ``γ = 0.99``. The behaviour policy takes
"dashed" with probability 6/7 and "solid" with 1/7; the demon asks about the target policy
"always solid" (``target_policy=demons.policies.fixed([0, 1])``), so the importance ratio is 7
after a solid step and 0 after a dashed one. Two linear learners (``hidden_sizes=()``,
``sparsity=0``, step size 0.005) start from the classic weights ``(1, 1, 1, 1, 1, 1, 10, 1)``:

* *semi-gradient off-policy TD*: the same off-policy demon with ``secondary_step_size=0``, so
  the GTD(λ) secondary weights ``u`` stay 0 and the gradient correction vanishes: what is left
  is ``w += α ρ δ x``, which diverges;
* *GTD(λ)*: ``secondary_step_size=0.05``; the weights stay bounded and the Bellman error falls.

**Collision** (Ghiassian & Sutton 2021). A vehicle drives towards an obstacle along 8 states;
the behaviour policy always goes forward in states 0-3 and goes forward or retreats 50/50 in
states 4-7 (the environment publishes these probabilities in ``info["behaviour_probs"]``, which
``horde.StateProbabilities`` passes to the runner). Demons ask for the discounted probability of
colliding if the vehicle always went forward (cumulant = reward, ``γ = 0.9``, target policy
``fixed([1, 0])``); the true values are ``0.9 ** (7 - s)``. Two GTD demons (``λ = 0`` and
``λ = 0.9``) on the task's six binary features (three ones per state, drawn at random, so
states may alias) are learned with ``HordeLearner(diagnostics=True)``, which tracks RUPEE, an
online estimate of each demon's error that needs no ideal return.

Printed: the Baird weight norm and Bellman error at the start and the end for both learners;
for Collision, the learned value of every state against the true value, the RMS value error
over the 8 states, and the mean RUPEE over the first and the last 10% of the run.

Figure (``off_policy.png`` in ``--out``): Baird weight norms over time (log scale); Collision
RUPEE over time; Collision learned values against the true values.

Run: python examples/off_policy_baird_collision.py [--baird-steps 3000] [--collision-steps 50000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from _figures import save_png

import demons
import envs
import horde
from demons import cumulants, discounts, policies
from horde.plots import moving_average

BAIRD = envs.BairdCounterexample


def baird_bellman_error(w: np.ndarray, b: float) -> float:
    """``||γ P_π v - v||_D`` for ``v = X w + b`` and ``D`` uniform (the behaviour policy's
    stationary distribution); the expected reward is 0 everywhere."""
    v = BAIRD.features() @ w + b
    return float(np.sqrt(np.mean((BAIRD.GAMMA * BAIRD.target_transition_matrix() @ v - v) ** 2)))


def run_baird(secondary_step_size: float, steps: int, seed: int):
    """One off-policy demon on Baird's counterexample; returns ``(steps, weight norms)`` after
    every 10 steps and the final state."""
    demon = demons.Demon(
        "always_solid",
        cumulants.reward(),
        discounts.constant(BAIRD.GAMMA),
        target_policy=policies.fixed(BAIRD.TARGET_PROBS),
    )
    learner = horde.HordeLearner(
        [demon], hidden_sizes=(), step_size=0.005, secondary_step_size=secondary_step_size, sparsity=0.0
    )
    state = learner.init(BAIRD.N_FEATURES, jax.random.key(seed))
    w0 = jnp.asarray(BAIRD.INITIAL_WEIGHTS, jnp.float32)[None]
    state = state._replace(core=state.core._replace(head_params=horde.HeadParams(w0, jnp.zeros((1,)))))
    record = [(0, float(jnp.linalg.norm(w0)))]

    def callback(done: int, st: horde.HordeState) -> None:
        record.append((done, float(np.linalg.norm(np.asarray(st.core.head_params.weights[0])))))

    result = horde.run(
        learner,
        gym.make("horde/Baird-v0"),
        steps=steps,
        seed=seed,
        state=state,
        policy=horde.FixedProbabilities(BAIRD.BEHAVIOUR_PROBS),
        chunk_size=10,
        callback=callback,
        progress=False,
    )
    x, norms = (np.asarray(a) for a in zip(*record))
    return x, norms, result.state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baird-steps", type=int, default=3000, help="steps on Baird's counterexample (default 3000)")
    parser.add_argument("--collision-steps", type=int, default=50_000, help="steps on Collision (default 50000)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--out", default="runs/examples", help="directory for the figure (default runs/examples)")
    args = parser.parse_args(argv)
    if args.baird_steps < 1 or args.collision_steps < 10:
        parser.error("--baird-steps must be >= 1 and --collision-steps >= 10")

    # --- Baird's counterexample -------------------------------------------------------------
    w0 = np.asarray(BAIRD.INITIAL_WEIGHTS, float)
    print(f"Baird's counterexample, {args.baird_steps} steps, step size 0.005")
    print(f"  start: |w| = {np.linalg.norm(w0):.2f}, Bellman error {baird_bellman_error(w0, 0.0):.3f}")
    baird = {}
    for label, beta in (("semi-gradient TD", 0.0), ("GTD(λ)", 0.05)):
        x, norms, state = run_baird(beta, args.baird_steps, args.seed)
        w = np.asarray(state.core.head_params.weights[0], float)
        b = float(state.core.head_params.biases[0])
        baird[label] = (x, norms)
        print(f"  {label:<16s} end: |w| = {norms[-1]:.4g}, Bellman error {baird_bellman_error(w, b):.4g}")

    # --- Collision ------------------------------------------------------------------------
    lamdas = (0.0, 0.9)
    collision_demons = [
        demons.Demon(
            f"collision λ={lam:g}",
            cumulants.reward(),
            discounts.constant(envs.Collision.GAMMA),
            lamda=lam,
            target_policy=policies.fixed(envs.Collision.TARGET_PROBS),
        )
        for lam in lamdas
    ]
    learner = horde.HordeLearner(
        collision_demons,
        hidden_sizes=(),
        step_size=0.01,
        secondary_step_size=0.05,
        sparsity=0.0,
        diagnostics=True,
    )
    env = gym.make("horde/Collision-v0")
    behaviour = horde.StateProbabilities(lambda obs, info: info["behaviour_probs"])
    result = horde.run(learner, env, steps=args.collision_steps, seed=args.seed, policy=behaviour, progress=False)
    table = env.unwrapped.features()  # (8, 6): row s is state s's observation
    values = np.stack([np.asarray(learner.predict(result.state, table[s])) for s in range(8)], axis=1)
    true = envs.Collision.true_values()
    tail = max(1, args.collision_steps // 10)
    rupee = result.rupee[0]
    print(f"\nCollision, {args.collision_steps} steps ({len(result.episode_return)} episodes), step size 0.01")
    print(f"  {'state':<16s}" + "".join(f"{s:>7d}" for s in range(8)))
    print(f"  {'true value':<16s}" + "".join(f"{v:>7.3f}" for v in true))
    for i, name in enumerate(learner.names):
        print(f"  {name:<16s}" + "".join(f"{v:>7.3f}" for v in values[i]))
    for i, name in enumerate(learner.names):
        rmsve = np.sqrt(np.mean((values[i] - true) ** 2))
        print(
            f"  {name}: RMS value error {rmsve:.4f}; RUPEE {np.nanmean(rupee[:tail, i]):.4f} "
            f"(first 10%) -> {np.nanmean(rupee[-tail:, i]):.4f} (last 10%)"
        )

    # --- Figure -------------------------------------------------------------------------------
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.3))
    FigureCanvasAgg(fig)
    ax_b, ax_r, ax_v = fig.subplots(1, 3)
    for label, (x, norms) in baird.items():
        ax_b.plot(x, norms, lw=1.5, label=label)
    ax_b.set_yscale("log")
    ax_b.set_xlabel("steps")
    ax_b.set_ylabel("weight norm |w|")
    ax_b.set_title("Baird's counterexample: off-policy demon, α = 0.005", fontsize="medium")
    ax_b.legend(fontsize="small")
    ax_b.grid(True, alpha=0.3, which="both")

    window = max(1, args.collision_steps // 100)
    for i, name in enumerate(learner.names):
        ax_r.plot(result.steps, moving_average(rupee[:, i], window), lw=1.3, label=name)
    ax_r.set_xlabel("steps")
    ax_r.set_ylabel("RUPEE")
    ax_r.set_title(f"Collision: RUPEE (moving average over {window} steps)", fontsize="medium")
    ax_r.legend(fontsize="small")
    ax_r.grid(True, alpha=0.3)

    states = np.arange(8)
    ax_v.plot(states, true, "k-o", lw=2, label="true value 0.9^(7-s)")
    for i, name in enumerate(learner.names):
        ax_v.plot(states, values[i], "--o", ms=4, label=name)
    ax_v.set_xlabel("state s")
    ax_v.set_ylabel("value")
    ax_v.set_title(f"Collision: learned values after {args.collision_steps} steps", fontsize="medium")
    ax_v.legend(fontsize="small")
    ax_v.grid(True, alpha=0.3)
    fig.set_layout_engine("tight")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "off_policy.png"
    save_png(fig, path)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
