"""``horde run``: a Horde on a Gymnasium environment, with checkpoints and resume.

The configuration comes from a TOML file (or the built-in CartPole-v1 nexting), with command
line overrides; the run writes its metrics, config, checkpoint and figures into one directory.
A resumed run replays the behaviour stream to the checkpoint's step and continues from the
checkpointed state: bit for bit the run that was interrupted.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from horde.cli.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from horde.cli.config import (
    DEFAULT_CONFIG,
    ConfigError,
    build_learner,
    build_policy,
    is_control_config,
    load_config,
    validate_config,
)
from horde.cli.jax_run_command import is_jax_env_id, jax_observation_dim, run_jax_command
from horde.cli.report import draw_figures, print_summary, warn_if_large
from horde.runs import RECORDS_DIR

__all__ = [
    "CHECKPOINT_FILE",
    "identity_differences",
    "load_quietly",
    "resolve_config",
    "run_command",
    "run_identity",
    "stack_seeds",
]

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
        if not args.config and not args.resume and is_jax_env_id(args.env):
            dim = jax_observation_dim(args.env)
            config["nexting"] = {"observation_dim": dim, "timescales": config["nexting"]["timescales"]}
        elif not args.config and not args.resume:
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


def run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """What makes a run the run it is, from its configuration: the environment (id and
    arguments), the seeds, the behaviour policy and the recording interval. With the learner's
    own configuration (its settings and demons, held by the checkpoint), a resumed run must
    match it exactly."""
    run = config["run"]
    return {
        "env.id": config["env"]["id"],
        "env.kwargs": config["env"]["kwargs"],
        "run.seed": run["seed"],
        "run.seeds": run["seeds"],
        "run.record_every": run["record_every"],
        "policy": config["policy"],
    }


def identity_differences(saved: dict[str, Any], config: dict[str, Any], saved_learner: Any, learner: Any) -> list[str]:
    """What differs between the run a checkpoint holds (``saved``: its ``run_identity`` and
    the seed, as far as the checkpoint recorded them; ``saved_learner``) and the run
    ``config`` and ``learner`` describe; one line each, empty when they are the same run."""
    now = run_identity(config)
    out = [
        f"{key}: {saved[key]!r} in the checkpoint, {now[key]!r} in the config"
        for key in now
        if key in saved and saved[key] != now[key]
    ]
    return out + _learner_differences(saved_learner.to_config(), learner.to_config(), "learner")


def _demon_tables(demons: Any) -> list[dict[str, Any]]:
    """A configuration's demon tables: a list, or a ``{"demons": [...]}`` table (a
    ControlLearner's control demons)."""
    if isinstance(demons, dict):
        demons = demons.get("demons", [])
    return list(demons or [])


def _learner_differences(before: dict[str, Any], after: dict[str, Any], prefix: str) -> list[str]:
    """What differs between two learner configurations, one line each (a ControlLearner's
    ``horde`` compared key by key as ``learner.horde.*``)."""
    out = []
    for key in sorted(set(before) | set(after)):
        if key == "horde" and isinstance(before.get(key), dict) and isinstance(after.get(key), dict):
            out += _learner_differences(before[key], after[key], f"{prefix}.horde")
            continue
        if key == "demons":
            old = {d["name"]: d for d in _demon_tables(before.get("demons"))}
            new = {d["name"]: d for d in _demon_tables(after.get("demons"))}
            if list(old) != list(new) or old != new:
                gone = [n for n in old if n not in new]
                added = [n for n in new if n not in old]
                changed = [n for n in old if n in new and old[n] != new[n]]
                parts = [
                    f"{label} {names[:5]}" + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                    for label, names in (("removed", gone), ("added", added), ("changed", changed))
                    if names
                ]
                name = "demons" if prefix == "learner" else f"{prefix}.demons"
                out.append(f"{name}: " + ("; ".join(parts) if parts else "their order changed"))
        elif before.get(key) != after.get(key):
            out.append(f"{prefix}.{key}: {before.get(key)!r} in the checkpoint, {after.get(key)!r} in the config")
    return out


def _prepare_resume(args: Any, config: dict[str, Any], learner: Any, out: Path) -> tuple[Any, int, int]:
    """Loads ``--resume``'s checkpoint, refuses it where the run's config no longer describes
    the checkpointed run, and puts the earlier records where the continuation appends to
    them. Returns ``(state, start_step, steps)``."""
    from horde.runs import RECORDS_DIR, RunResult

    run_cfg = config["run"]
    try:
        saved_learner, state, meta = load_checkpoint(Path(args.resume) / CHECKPOINT_FILE)
    except CheckpointError as e:
        raise ConfigError(f"--resume {args.resume}: {e}") from e
    saved = dict(meta.get("run", {}))
    if "seed" in meta:
        saved.setdefault("run.seed", meta["seed"])
    differ = identity_differences(saved, config, saved_learner, learner)
    if differ:
        raise ConfigError(
            f"--resume {args.resume}: config.json no longer describes the run its checkpoint holds, "
            "so the continuation would not be that run; it differs in "
            + "; ".join(differ)
            + ". Restore config.json, or start a new run."
        )
    start_step = int(meta.get("step", 0))
    # --steps: that many more steps; else what the config still asks for.
    steps = args.steps if args.steps is not None else run_cfg["steps"] - start_step
    if steps < 1:
        raise ConfigError(
            f"--resume {args.resume}: the run already has {start_step} of its {run_cfg['steps']} "
            "steps; give --steps N to continue further"
        )
    source = Path(args.resume)
    if source.resolve() != out.resolve() and not (out / RECORDS_DIR).exists():
        if (source / RECORDS_DIR).exists():
            out.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source / RECORDS_DIR, out / RECORDS_DIR)
    if not (out / RECORDS_DIR).exists() and (source / "metrics.npz").exists():
        try:  # records of the earlier format: rewritten as a store the continuation appends to
            RunResult.load(source).save(out)
        except (FileNotFoundError, ValueError):
            pass  # only the checkpoint survived: the output holds the continuation
    run_cfg["steps"] = start_step + steps
    return state, start_step, steps


_RUN_FILES = ("config.json", CHECKPOINT_FILE, "records.zarr/zarr.json", "seeds", "run.json", "metrics.npz")


def _refuse_to_overwrite(args: Any, out: Path) -> None:
    """A run never writes over another run's directory: only a resume continues the run in
    its own directory (``--resume DIR`` without ``--out``, or with ``--out DIR``)."""
    if args.resume and out.resolve() == Path(args.resume).resolve():
        return
    held = [
        name.split("/")[0]
        for name in _RUN_FILES
        if (out / name).is_file() or (name == "seeds" and (out / name).is_dir() and any((out / name).iterdir()))
    ]
    if held:
        what = "--out" if args.out else "the output directory"
        raise ConfigError(
            f"{what} {out} already holds a run ({', '.join(held)}); a new run "
            f"{'(the continuation of --resume ' + str(args.resume) + ') ' if args.resume else ''}"
            "is written to a directory of its own: give another --out, continue that run with "
            f"--resume {out}, or remove it first"
        )


def run_command(args: Any) -> int:
    """Runs ``horde run`` with parsed ``args``; returns the exit status (0, 3 diverged, 4
    stopped by an error of the environment or the file system, 130 interrupted). Raises
    ``ConfigError`` for a bad command line or configuration."""
    from horde.runs import DivergenceError, RecordsError, RunError, RunResult, run

    config = resolve_config(args)
    out = Path(
        args.out or args.resume or f"runs/{config['env']['id'].replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    _refuse_to_overwrite(args, out)
    if is_jax_env_id(config["env"]["id"]):
        return run_jax_command(args, config, out)
    learner = build_learner(config)
    if is_control_config(config):
        from horde.cli.control_run_command import run_control_command
        from horde.runs import use_synchronous_cpu_dispatch

        # Acting waits for every step's compiled call: computed in this thread, not handed to
        # JAX's worker thread and back (horde.runs.dispatch). Nothing has touched JAX yet.
        use_synchronous_cpu_dispatch()

        return run_control_command(args, config, learner, out)
    env = _make_env(config)
    policy = build_policy(config)
    run_cfg = config["run"]
    state, start_step = None, 0
    steps = run_cfg["steps"]
    if args.resume:
        state, start_step, steps = _prepare_resume(args, config, learner, out)
    _check_against_env(learner, env, policy)
    warn_if_large(config, learner, steps)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2))

    every = run_cfg["checkpoint_every"]
    last_saved: list[int | None] = [
        start_step if args.resume and out.resolve() == Path(args.resume).resolve() else None
    ]
    identity = {"step": 0, "seed": run_cfg["seed"], "run": run_identity(config)}

    def checkpoint(step: int, st: Any) -> None:
        save_checkpoint(out / CHECKPOINT_FILE, learner, st, {**identity, "step": step})
        last_saved[0] = step

    failed_write: list[OSError] = []

    def callback(step: int, st: Any) -> None:
        if every and step // every > (last_saved[0] or start_step) // every:
            try:
                checkpoint(step, st)
            except OSError as e:
                failed_write.append(e)
                raise

    def final_checkpoint(step: int, st: Any) -> str:
        """Writes the last good state; the sentence saying where it is (or why it is not)."""
        try:
            checkpoint(step, st)
            return f"the last good state (step {step}) is in {out / CHECKPOINT_FILE}"
        except OSError as e:
            kept = f"; the checkpoint of step {last_saved[0]} is unchanged" if last_saved[0] is not None else ""
            return f"the last good state (step {step}) could not be checkpointed ({type(e).__name__}: {e}){kept}"

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
            record_to=out,
        )
    except DivergenceError as e:
        where = final_checkpoint(start_step + e.result.total_steps, e.result.state)
        print(f"horde run: {e}", file=sys.stderr)
        print(f"{where}; the records up to the divergence are in {out}", file=sys.stderr)
        return 3
    except RunError as e:
        good = start_step + e.result.total_steps
        if failed_write:
            cause = failed_write[0]
            what = f"writing the checkpoint {out / CHECKPOINT_FILE} after step {good} failed ({type(cause).__name__}: {cause})"
        else:
            what = str(e).split(". error.result")[0].split("; the run stopped")[0]
        where = final_checkpoint(good, e.result.state)
        print(
            f"horde run: stopped: {what}. The records up to step {good} are in {out / RECORDS_DIR}; {where}.",
            file=sys.stderr,
        )
        return 4
    except RecordsError as e:
        raise ConfigError(f"--out {out}: {e}") from e
    except ValueError as e:  # what only the environment can tell (e.g. its observations)
        raise ConfigError(str(e)) from e
    try:
        checkpoint(start_step + result.total_steps, result.state)
    except OSError as e:
        print(
            f"horde run: writing the final checkpoint {out / CHECKPOINT_FILE} failed ({type(e).__name__}: {e}); "
            f"the records of all {start_step + result.total_steps} steps are in {out}",
            file=sys.stderr,
        )
        return 4
    state_after = result.state
    result = RunResult.load(out) if not result.config.get("interrupted") else load_quietly(out)
    result.state = state_after
    print_summary(result)
    figures = draw_figures(result, out)
    print(
        f"\n{result.total_steps * result.n_seeds:,} steps in {result.wall_time:.1f} s "
        f"({result.steps_per_second:,.0f} steps/s); wrote {out}/: {RECORDS_DIR} config.json "
        f"{CHECKPOINT_FILE} {' '.join(figures)}"
    )
    if result.partial:
        print("interrupted: the final checkpoint and the partial results were written", file=sys.stderr)
        return 130
    return 0


def load_quietly(out: Path):
    """``RunResult.load(out)`` without its warning about a partial run."""
    import warnings

    from horde.runs import RunResult

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return RunResult.load(out)


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


def stack_seeds(results: list[Any]) -> Any:
    """Single-seed ``RunResult`` s of the same run length as one result with a seed axis: per-step
    arrays stacked, episodes joined with ``episode_seed`` the position in ``results``, wall
    times added, states stacked along a leading seed axis."""
    import jax
    import numpy as np

    from horde.runs import RunResult

    if len(results) == 1:
        return results[0]
    first = results[0]
    fields: dict[str, Any] = {}
    for name in ("predictions", "td_errors", "cumulants", "discounts", "rewards", "terminated", "truncated", "valid"):
        fields[name] = np.concatenate([getattr(r, name) for r in results], axis=0)
    for name in ("rupee", "ude"):
        parts = [getattr(r, name) for r in results]
        fields[name] = None if any(p is None for p in parts) else np.concatenate(parts, axis=0)
    order = np.concatenate([np.full(len(r.episode_return), i) for i, r in enumerate(results)]).astype(np.int64)
    ends = np.concatenate([r.episode_end_step for r in results])
    sort = np.lexsort((order, ends))  # (step, seed) order, as the other runners
    fields["episode_seed"] = order[sort]
    for name in ("episode_end_step", "episode_return", "episode_length"):
        fields[name] = np.concatenate([getattr(r, name) for r in results])[sort]
    return RunResult(
        demon_names=first.demon_names,
        steps=first.steps,
        wall_time=float(sum(r.wall_time for r in results)),
        total_steps=first.total_steps,
        record_every=first.record_every,
        config={**first.config, "n_seeds": len(results)},
        state=jax.tree_util.tree_map(lambda *a: np.stack(a), *(r.state for r in results)),
        demons=first.demons,
        actions=None if any(r.actions is None for r in results) else np.concatenate([r.actions for r in results]),
        **fields,
    )
