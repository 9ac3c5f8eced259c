"""The ``horde`` command: run a Horde on a Gymnasium environment, redraw its figures, list the
demons a configuration declares.

    horde run [CONFIG.toml] [--env ID] [--steps N] [--seeds K] [--seed S] [--out DIR]
              [--resume DIR] [--checkpoint-every N] [--no-progress]
    horde plot DIR
    horde demons CONFIG.toml

Exit status: 0 on success, 2 for a bad command line or configuration (the message names the
key and what it expected), 3 when learning diverged (the last good checkpoint is kept and the
results up to the divergence are written), 130 when interrupted (after writing a final
checkpoint and the partial results).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from horde.cli.config import DEFAULT_CONFIG, ConfigError, build_demons, build_learner, load_config, validate_config

__all__ = ["main"]

CHECKPOINT_FILE = "checkpoint.npz"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="horde",
        description="Learn many general value functions (demons) at once on a Gymnasium environment.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a Horde and write metrics, config, checkpoint and figures",
        description=(
            "Run a Horde on a Gymnasium environment declared in a TOML config (env, behaviour "
            "policy, learner, demons). Without a config: CartPole-v1 nexting with 27 demons, "
            "50,000 steps. Prints a per-demon summary table and writes metrics.npz, run.json, "
            "config.json, checkpoint.npz and PNG figures into the output directory."
        ),
    )
    run.add_argument(
        "config", nargs="?", help="TOML (or .json) run configuration; default: built-in CartPole-v1 nexting"
    )
    run.add_argument("--env", help="Gymnasium environment id, overriding [env] id")
    run.add_argument("--steps", type=int, help="environment steps per seed, overriding [run] steps")
    run.add_argument("--seeds", type=int, help="independent seeds (a synchronous vector env), overriding [run] seeds")
    run.add_argument("--seed", type=int, help="first seed, overriding [run] seed")
    run.add_argument("--out", help="output directory (default: runs/<env>-<time>)")
    run.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run saved in DIR (its checkpoint and config) for --steps more steps; "
        "results are written to DIR (or --out)",
    )
    run.add_argument(
        "--checkpoint-every", type=int, metavar="N", help="write a checkpoint every N steps (and at the end)"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    plot = sub.add_parser(
        "plot",
        help="redraw the figures of a saved run",
        description="Redraw the figures of a run saved by 'horde run'.",
    )
    plot.add_argument("dir", help="the run's output directory")

    dem = sub.add_parser(
        "demons", help="list the demons a config declares", description="List the demons a run configuration declares."
    )
    dem.add_argument("config", help="TOML (or .json) run configuration")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "plot":
            return _cmd_plot(args)
        return _cmd_demons(args)
    except ConfigError as e:
        print(f"horde {args.command}: error: {e}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------------------------------


def _resolve_config(args) -> dict[str, Any]:
    if args.resume:
        saved = Path(args.resume) / "config.json"
        if not saved.exists():
            raise ConfigError(f"--resume {args.resume}: no config.json there (not a directory written by 'horde run')")
        given = [f"--{n}" for n in ("env", "seed", "seeds") if getattr(args, n) is not None] + (
            ["CONFIG"] if args.config else []
        )
        if given:
            raise ConfigError(
                f"--resume continues the saved run with its own environment, seeds and config; "
                f"{', '.join(given)} cannot change them"
            )
        config = load_config(saved)
    elif args.config:
        config = load_config(args.config)
    else:
        config = validate_config(DEFAULT_CONFIG)
    if args.env:
        config["env"] = {"id": args.env, "kwargs": {}}
        if not args.config and not args.resume:
            # The built-in demons read CartPole's 4 observations; size nexting to the new env.
            import gymnasium as gym

            from horde.runs import FeatureMap

            try:
                dim = FeatureMap(gym.make(args.env).observation_space).dim
            except gym.error.Error as e:
                raise ConfigError(f"--env {args.env}: {e}") from e
            config["nexting"] = {"observation_dim": dim, "timescales": config["nexting"]["timescales"]}
    for name in ("steps", "seeds", "seed", "checkpoint_every"):
        value = getattr(args, name)
        if value is not None and not (args.resume and name == "steps"):
            config["run"][name] = value
    return validate_config(config)


def _make_env(config: dict[str, Any]):
    import gymnasium as gym

    import envs  # noqa: F401  (registers the horde/... environments)

    env_id, kwargs, seeds = config["env"]["id"], config["env"]["kwargs"], config["run"]["seeds"]
    try:
        if seeds > 1:
            return gym.make_vec(env_id, num_envs=seeds, vectorization_mode="sync", **kwargs)
        return gym.make(env_id, **kwargs)
    except (gym.error.Error, TypeError, ValueError) as e:
        raise ConfigError(f"config key env.id: cannot make {env_id!r} with kwargs {kwargs}: {e}") from e


def _policy(config: dict[str, Any]):
    from horde.runs import FixedProbabilities, UniformRandom

    policy = config["policy"]
    if policy.get("kind", "uniform") == "fixed":
        return FixedProbabilities(policy["probabilities"])
    return UniformRandom()


def _cmd_run(args) -> int:
    from horde.cli.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from horde.runs import DivergenceError, RunResult, run

    config = _resolve_config(args)
    out = Path(
        args.out or args.resume or f"runs/{config['env']['id'].replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    learner = build_learner(config)
    env = _make_env(config)
    policy = _policy(config)
    run_cfg = config["run"]
    state, start_step, earlier = None, 0, None
    steps = run_cfg["steps"]
    if args.resume:
        try:
            learner, state, meta = load_checkpoint(Path(args.resume) / CHECKPOINT_FILE)
        except CheckpointError as e:
            raise ConfigError(f"--resume {args.resume}: {e}") from e
        start_step = int(meta.get("step", 0))
        # --steps: that many more steps; else what the config still asks for.
        steps = args.steps if args.steps is not None else run_cfg["steps"] - start_step
        if steps < 1:
            raise ConfigError(
                f"--resume {args.resume}: the run already has {start_step} of its {run_cfg['steps']} "
                "steps; give --steps N to continue further"
            )
        try:
            earlier = RunResult.load(args.resume)
        except (FileNotFoundError, ValueError):
            earlier = None  # only the checkpoint survived: the output holds the continuation
        run_cfg["steps"] = start_step + steps
    _check_against_env(learner, env, policy)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2))

    every = run_cfg["checkpoint_every"]
    last_saved = [start_step]

    def checkpoint(step: int, st: Any) -> None:
        save_checkpoint(out / CHECKPOINT_FILE, learner, st, {"step": step, "seed": run_cfg["seed"]})
        last_saved[0] = step

    def callback(step: int, st: Any) -> None:
        if every and step // every > last_saved[0] // every:
            checkpoint(step, st)

    # A resumed run replays the behaviour stream to the checkpoint's step (it depends on the
    # seed alone), then continues learning from the checkpointed state: bit for bit the run
    # that was interrupted.
    try:
        result = run(
            learner,
            env,
            steps=steps,
            seed=run_cfg["seed"],
            state=state,
            policy=policy,
            record_every=run_cfg["record_every"],
            chunk_size=run_cfg["chunk_size"],
            progress=False if args.no_progress else None,
            callback=callback,
            stop_on_interrupt=True,
            start_step=start_step,
        )
    except DivergenceError as e:
        e.result.save(out)
        print(f"horde run: {e}", file=sys.stderr)
        print(
            f"the last good checkpoint ({out / CHECKPOINT_FILE}, step {last_saved[0]}) was kept; "
            f"the results up to the divergence are in {out}",
            file=sys.stderr,
        )
        return 3
    except ValueError as e:  # what only the environment can tell (e.g. its observations)
        raise ConfigError(str(e)) from e
    checkpoint(start_step + result.total_steps, result.state)
    if earlier is not None:
        result = earlier.then(result)
    result.save(out)
    figures = _draw_figures(result, out)
    _print_summary(result, learner)
    print(
        f"\n{result.total_steps * result.n_seeds:,} steps in {result.wall_time:.1f} s "
        f"({result.steps_per_second:,.0f} steps/s); wrote {out}/: metrics.npz run.json config.json "
        f"{CHECKPOINT_FILE} {' '.join(figures)}"
    )
    if result.config.get("interrupted"):
        print("interrupted: the final checkpoint and the partial results were written", file=sys.stderr)
        return 130
    return 0


def _check_against_env(learner, env, policy) -> None:
    """The demons and the behaviour policy against the environment's spaces, before anything
    is written: a mismatch is a configuration error."""
    import gymnasium as gym

    from horde.runs import FeatureMap, as_behaviour_policy

    vector = isinstance(env, gym.vector.VectorEnv)
    obs_space = env.single_observation_space if vector else env.observation_space
    act_space = env.single_action_space if vector else env.action_space
    try:
        dim = FeatureMap(obs_space).dim
        n_actions = int(act_space.n) if isinstance(act_space, gym.spaces.Discrete) else None
        learner.demons.validate(dim, n_actions)
        as_behaviour_policy(policy, act_space)
    except ValueError as e:
        raise ConfigError(f"config does not fit environment {getattr(env.spec, 'id', env)}: {e}") from e


def _draw_figures(result, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    from horde import plots

    written = []
    T = result.predictions.shape[1]
    if T == 0:
        return written
    plots.learning_curves(result, path=out / "learning_curves.png")
    written.append("learning_curves.png")
    if result.record_every == 1:
        plots.learning_curves(result, metric="normalized_rmse", path=out / "normalized_rmse.png")
        written.append("normalized_rmse.png")
        chosen = list(result.demon_names[:: max(1, result.n_demons // 4)][:4])
        plots.prediction_vs_return(result, demons=chosen, path=out / "prediction_vs_return.png")
        written.append("prediction_vs_return.png")
    if result.rupee is not None:
        plots.diagnostics_curves(result, which="both", path=out / "diagnostics.png")
        written.append("diagnostics.png")
    return written


def _print_summary(result, learner) -> None:
    from horde.evaluation import demon_summary

    summary = demon_summary(result, z=learner.demons.z)
    # An off-policy demon's target is the return under its own policy, not the observed one.
    off = np.asarray(learner.demons.is_off_policy)
    summary["rmse"] = np.where(off, np.nan, summary["rmse"])
    summary["normalized_rmse"] = np.where(off, np.nan, summary["normalized_rmse"])
    rupee = None
    if result.rupee is not None and result.rupee.shape[1]:
        tail = max(1, result.rupee.shape[1] // 10)
        with np.errstate(all="ignore"):
            rupee = np.nanmean(result.rupee[:, -tail:], axis=(0, 1))
    width = max(5, max(len(n) for n in result.demon_names))
    header = f"{'demon':<{width}}  {'norm. RMSE':>10}  {'RMSE':>10}  {'mean δ²':>10}" + (
        "  " + f"{'RUPEE':>10}" if rupee is not None else ""
    )
    print(f"Per-demon summary over the last 10% of the run ({result.n_seeds} seed{'s' if result.n_seeds > 1 else ''}):")
    print(header)
    print("-" * len(header))

    def fmt(v: float) -> str:
        return f"{v:>10.4g}" if np.isfinite(v) else f"{'-':>10}"

    for i, name in enumerate(result.demon_names):
        line = f"{name:<{width}}  {fmt(summary['normalized_rmse'][i])}  {fmt(summary['rmse'][i])}  {fmt(summary['mean_squared_td_error'][i])}"
        if rupee is not None:
            line += "  " + fmt(rupee[i])
        print(line)


def _cmd_plot(args) -> int:
    from horde.runs import RunResult

    path = Path(args.dir)
    try:
        result = RunResult.load(path)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from e
    figures = _draw_figures(result, path)
    print(f"wrote {' '.join(str(path / f) for f in figures)}")
    return 0


def _describe(spec: Any) -> str:
    """``kind(field=value, ...)`` for a cumulant, discount or policy spec."""
    if not dataclasses.is_dataclass(spec):
        return repr(spec)
    fields = ", ".join(
        f"{f.name}={getattr(spec, f.name)}" for f in dataclasses.fields(spec) if f.name not in ("fn", "kind")
    )
    return f"{getattr(spec, 'kind', type(spec).__name__)}({fields})"


def _cmd_demons(args) -> int:
    config = load_config(args.config)
    demon_set = build_demons(config)
    rows = [("name", "cumulant", "discount", "gamma", "lambda", "target policy")]
    for d in demon_set:
        gamma = d.discount.constant_gamma
        rows.append(
            (
                d.name,
                _describe(d.cumulant),
                _describe(d.discount),
                "state-dependent" if gamma is None else f"{gamma:.4g}",
                f"{d.lamda:g}",
                _describe(d.target_policy) if d.target_policy is not None else "on-policy",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    print(f"\n{len(demon_set)} demons")
    return 0


if __name__ == "__main__":
    sys.exit(main())
