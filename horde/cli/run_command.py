"""``horde run``: a Horde on a Gymnasium environment, with checkpoints and resume.

The configuration comes from a TOML file (or the built-in CartPole-v1 nexting), with command
line overrides; the run writes its metrics, config, checkpoint and figures into one directory.
A resumed run replays the behaviour stream to the checkpoint's step and continues from the
checkpointed state: bit for bit the run that was interrupted.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from horde.cli.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from horde.cli.config import DEFAULT_CONFIG, ConfigError, build_learner, build_policy, load_config, validate_config
from horde.cli.report import draw_figures, print_summary, warn_if_large

__all__ = ["CHECKPOINT_FILE", "resolve_config", "run_command"]

#: The checkpoint's file name in a run's output directory.
CHECKPOINT_FILE = "checkpoint.npz"


def resolve_config(args: Any) -> dict[str, Any]:
    """The run's configuration: ``--resume``'s saved one, the given file or the built-in
    default, with the command line's overrides applied and checked."""
    if args.resume:
        saved = Path(args.resume) / "config.json"
        if not saved.exists():
            raise ConfigError(f"--resume {args.resume}: no config.json there (not a directory written by 'horde run')")
        given = (
            [f"--{n}" for n in ("env", "seed", "seeds") if getattr(args, n) is not None]
            + (["--record-every"] if getattr(args, "record_every", None) is not None else [])
            + (["CONFIG"] if args.config else [])
        )
        if given:
            raise ConfigError(
                f"--resume continues the saved run with its own environment, seeds and config; "
                f"{', '.join(given)} cannot change them"
            )
        config = load_config(saved)
    elif args.config:
        config = load_config(args.config, require_env=not args.env)
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
    plugins = config.setdefault("plugins", {}).setdefault("modules", [])
    plugins += [m for m in getattr(args, "plugin", None) or () if m not in plugins]
    for name in ("steps", "seeds", "seed", "checkpoint_every", "record_every"):
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


def run_command(args: Any) -> int:
    """Runs ``horde run`` with parsed ``args``; returns the exit status (0, 3 diverged, 130
    interrupted). Raises ``ConfigError`` for a bad command line or configuration."""
    from horde.runs import DivergenceError, RunResult, run

    config = resolve_config(args)
    out = Path(
        args.out or args.resume or f"runs/{config['env']['id'].replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    learner = build_learner(config)
    env = _make_env(config)
    policy = build_policy(config)
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
    warn_if_large(config, learner, steps)
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
    print_summary(result)
    figures = draw_figures(result, out)
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
