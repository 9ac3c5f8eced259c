"""``horde run`` of a control run: the behaviour acts on a control demon's latest values.

Each seed is one ``horde.run`` (the behaviour depends on that seed's own learner state); the
results are stacked along the seed axis. The run ends with a checkpoint of every seed's
``ControlState`` and the actions each seed took, which ``--resume`` replays to continue the run
bit for bit (docs/concepts/control.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from horde.cli.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from horde.cli.config import ConfigError, build_policy
from horde.cli.report import draw_figures, print_summary
from horde.cli.run_command import CHECKPOINT_FILE, identity_differences, load_quietly, run_identity, stack_seeds
from horde.runs import RECORDS_DIR

__all__ = ["decode_actions", "encode_actions", "join_runs", "run_control_command"]


def run_control_command(args: Any, config: dict[str, Any], learner: Any, out: Path) -> int:
    """``horde run`` with ``[policy] kind = "epsilon_greedy"``: one ``horde.run`` per seed (the
    behaviour depends on each seed's own learner state), their results stacked along the seed
    axis; the figures add the episode returns, the summary each seed's last-20 mean return.

    The run ends with a checkpoint of every seed's ``ControlState`` (the control networks, the
    Horde, the normaliser and return statistics) and, in its metadata, the step reached and
    the actions each seed took (``control_actions``): ``--resume`` replays those actions in the
    environment, draws the next action with the keys and ε of that step, and continues bit for
    bit (``horde.run(..., start_step=, actions=)``). ε's annealing length is fixed in the
    saved config at the first run (5 % of its steps unless given), so ``--steps`` does not move it.
    """
    import gymnasium as gym
    import numpy as np

    import envs  # noqa: F401  (registers the horde/... environments)
    from horde import plots
    from horde.runs import DivergenceError, run

    run_cfg = config["run"]
    if run_cfg["checkpoint_every"]:
        raise ConfigError(
            f"config key run.checkpoint_every must be 0 for a control run (it checkpoints at its end, "
            f"resumable with --resume), got {run_cfg['checkpoint_every']}"
        )
    state, start_step, steps, actions, earlier = None, 0, run_cfg["steps"], None, None
    if args.resume:
        state, start_step, steps, actions, earlier = _prepare_control_resume(args, config, learner)
    else:
        policy_cfg = config["policy"]
        policy_cfg.setdefault("anneal_steps", build_policy(config).resolved_anneal_steps(run_cfg["steps"]))
    policy = build_policy(config)
    env_id, kwargs = config["env"]["id"], config["env"]["kwargs"]
    n_seeds = run_cfg["seeds"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    results: list[Any] = []
    for i in range(n_seeds):
        try:
            env = gym.make(env_id, **kwargs)
        except (gym.error.Error, TypeError, ValueError) as e:
            raise ConfigError(f"config key env.id: cannot make {env_id!r} with kwargs {kwargs}: {e}") from e
        own = None
        if state is not None:
            own = state if n_seeds == 1 else jax_tree_index(state, i)
        try:
            r = run(
                learner,
                env,
                steps=steps,
                seed=run_cfg["seed"] + i,
                policy=policy,
                record_every=run_cfg["record_every"],
                chunk_size=run_cfg["chunk_size"],
                progress=False if args.no_progress else None,
                stop_on_interrupt=True,
                state=own,
                start_step=start_step,
                actions=None if actions is None else actions[i],
            )
        except DivergenceError as e:
            if earlier is None:
                e.result.save(out)
            else:  # the records there are the whole run's up to the resume step: keep them
                print(f"horde run: the records of steps before {start_step} are unchanged", file=sys.stderr)
            print(f"horde run: seed {run_cfg['seed'] + i}: {e}", file=sys.stderr)
            return 3
        except ValueError as e:
            raise ConfigError(str(e)) from e
        if r.config.get("interrupted") and results:
            break  # keep the seeds that finished: seeds are stacked at equal length
        results.append(r)
        if r.config.get("interrupted"):
            break
    result = stack_seeds(results)
    if earlier is not None:
        result = join_runs(earlier, result)
    result.save(out)
    written = []
    if len(results) == n_seeds:  # every seed at the same step: a checkpoint to resume from
        meta = {
            "step": start_step + int(results[0].total_steps),
            "seed": run_cfg["seed"],
            "run": run_identity(config),
            "control_actions": encode_actions(np.concatenate([r.actions for r in results])),
        }
        try:
            save_checkpoint(out / CHECKPOINT_FILE, learner, result.state, meta)
            written.append(CHECKPOINT_FILE)
        except OSError as e:
            print(f"horde run: writing the checkpoint {out / CHECKPOINT_FILE} failed ({e})", file=sys.stderr)
    print_summary(result)
    last = plots.last_returns(result, 20)
    print("\nEpisode returns (mean of the last 20 episodes) per seed:")
    for i, v in enumerate(last):
        n = int(np.sum(result.episode_seed == i))
        print(f"  seed {run_cfg['seed'] + i}: {v:.1f} ({n} episodes)")
    figures = draw_figures(result, out)
    if np.asarray(result.episode_return).size:
        plots.plot_returns(result, path=out / "returns.png")
        figures.append("returns.png")
    print(
        f"\n{result.total_steps * result.n_seeds:,} steps in {result.wall_time:.1f} s "
        f"({result.steps_per_second:,.0f} steps/s); wrote {out}/: {RECORDS_DIR} config.json "
        f"{' '.join(written + figures)}"
    )
    if result.config.get("interrupted"):
        print("interrupted: the partial results were written", file=sys.stderr)
        return 130
    return 0


def jax_tree_index(tree: Any, i: int) -> Any:
    """Entry ``i`` of a pytree batched along a leading seed axis."""
    import jax

    return jax.tree_util.tree_map(lambda a: a[i], tree)


def encode_actions(actions: Any) -> dict[str, Any]:
    """``(n_seeds, steps)`` integer actions as JSON-safe data for a checkpoint's metadata
    (little-endian bytes in base64: a few bytes per step, checksummed with the checkpoint)."""
    import base64

    import numpy as np

    a = np.asarray(actions)
    dtype = "<u1" if a.size == 0 or a.max() < 256 else "<i4"
    return {"dtype": dtype, "shape": list(a.shape), "data": base64.b64encode(a.astype(dtype).tobytes()).decode()}


def decode_actions(data: dict[str, Any]) -> Any:
    """Inverse of :func:`encode_actions`: an int64 array."""
    import base64

    import numpy as np

    raw = base64.b64decode(data["data"])
    return np.frombuffer(raw, dtype=data["dtype"]).reshape(data["shape"]).astype(np.int64)


def _prepare_control_resume(args: Any, config: dict[str, Any], learner: Any):
    """Loads a control run's checkpoint and records, refuses them where the config no longer
    describes that run (every difference listed), and returns ``(state, start_step, steps,
    actions, earlier records)``."""
    run_cfg = config["run"]
    source = Path(args.resume)
    try:
        saved_learner, state, meta = load_checkpoint(source / CHECKPOINT_FILE)
    except CheckpointError as e:
        raise ConfigError(f"--resume {args.resume}: {e}") from e
    if "control_actions" not in meta:
        raise ConfigError(
            f"--resume {args.resume}: its checkpoint holds no control run (no actions to replay); "
            "it was written by a run whose behaviour does not act on a control demon"
        )
    saved = dict(meta.get("run", {}))
    differ = identity_differences(saved, config, saved_learner, learner)
    if differ:
        raise ConfigError(
            f"--resume {args.resume}: config.json no longer describes the run its checkpoint holds, "
            "so the continuation would not be that run; it differs in "
            + "; ".join(differ)
            + ". Restore config.json, or start a new run."
        )
    start_step = int(meta["step"])
    steps = args.steps if args.steps is not None else run_cfg["steps"] - start_step
    if steps < 1:
        raise ConfigError(
            f"--resume {args.resume}: the run already has {start_step} of its {run_cfg['steps']} "
            "steps; give --steps N to continue further"
        )
    try:
        earlier = load_quietly(source)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"--resume {args.resume}: its records cannot be read ({e})") from e
    run_cfg["steps"] = start_step + steps
    return state, start_step, steps, decode_actions(meta["control_actions"]), earlier


def join_runs(first: Any, rest: Any) -> Any:
    """A run's records followed by those of its continuation (``rest`` resumed where ``first``
    ended): per-step arrays and episodes joined along time, wall times added, the state and
    actions of ``rest``."""
    import numpy as np

    from horde.runs import RunResult

    fields: dict[str, Any] = {}
    for name in ("predictions", "td_errors", "cumulants", "discounts", "rewards", "terminated", "truncated", "valid"):
        fields[name] = np.concatenate([getattr(first, name), getattr(rest, name)], axis=1)
    for name in ("rupee", "ude"):
        parts = [getattr(first, name), getattr(rest, name)]
        fields[name] = None if any(p is None for p in parts) else np.concatenate(parts, axis=1)
    for name in ("episode_seed", "episode_end_step", "episode_return", "episode_length"):
        fields[name] = np.concatenate([getattr(first, name), getattr(rest, name)])
    return RunResult(
        demon_names=rest.demon_names,
        steps=np.concatenate([first.steps, rest.steps]),
        wall_time=float(first.wall_time + rest.wall_time),
        total_steps=int(first.total_steps + rest.total_steps),
        record_every=rest.record_every,
        config={**rest.config, "start_step": 0, "resumed_at": int(rest.config.get("start_step", 0))},
        state=rest.state,
        demons=rest.demons,
        actions=rest.actions,
        **fields,
    )
