"""``horde run`` of a control run: the behaviour acts on a control demon's latest values.

Each seed is one ``horde.run`` (the behaviour depends on that seed's own learner state),
streaming its records to a store of its own; at the end they are stacked along the seed axis.
Checkpoints (every ``run.checkpoint_every`` steps and at the end) hold every seed's
``ControlState`` and the actions each seed took, which ``--resume`` replays to continue the run
bit for bit (docs/concepts/control.md).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from horde.cli.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from horde.cli.config import ConfigError, build_policy
from horde.cli.report import draw_figures, draw_returns, print_summary
from horde.cli.run_command import CHECKPOINT_FILE, identity_differences, load_quietly, run_identity, stack_seeds
from horde.runs import RECORDS_DIR

__all__ = ["decode_actions", "encode_actions", "run_control_command", "seed_dir", "seed_of"]


def run_control_command(args: Any, config: dict[str, Any], learner: Any, out: Path) -> int:
    """``horde run`` with ``[policy] kind = "epsilon_greedy"``: one ``horde.run`` per seed (the
    behaviour depends on each seed's own learner state), their results stacked along the seed
    axis; the figures add the episode returns, the summary each seed's last-20 mean return.

    Nothing learned is lost to a crash or a kill: each seed streams its records, chunk by
    chunk, to a store of its own, ``out/seeds/seed-<seed>/`` (``RunResult.load`` reads it), and
    with ``run.checkpoint_every = N`` (or ``--checkpoint-every N``) the seeds run in segments
    ending at multiples of ``N``, each followed by a checkpoint of every seed's
    ``ControlState`` (the control networks, the Horde, the normaliser and return statistics)
    with, in its metadata, the step reached and the actions each seed took
    (``control_actions``). The run also ends with one. ``--resume`` replays those actions in the
    environment, draws the next action with the keys and ε of that step, and continues bit for
    bit (``horde.run(..., start_step=, actions=)``); segments are resumes, so a run with
    checkpoints equals one without. At the end the seeds' records are stacked into
    ``out/records.zarr`` and the per-seed stores removed. ε's annealing length is fixed in the
    saved config at the first run (5 % of its steps unless given), so ``--steps`` does not move it.
    """
    import gymnasium as gym
    import numpy as np

    import envs  # noqa: F401  (registers the horde/... environments)
    from horde import plots
    from horde.runs import DivergenceError, RecordsError, RunError, mark_unfinished, run

    run_cfg = config["run"]
    state, start_step, steps, actions, wall = None, 0, run_cfg["steps"], None, 0.0
    if args.resume:
        state, start_step, steps, actions, wall = _prepare_control_resume(args, config, learner, out)
    else:
        policy_cfg = config["policy"]
        policy_cfg.setdefault("anneal_steps", build_policy(config).resolved_anneal_steps(run_cfg["steps"]))
    policy = build_policy(config)
    env_id, kwargs = config["env"]["id"], config["env"]["kwargs"]
    n_seeds, seed0, every = run_cfg["seeds"], run_cfg["seed"], run_cfg["checkpoint_every"]
    end = start_step + steps
    envs_: list[Any] = []
    for _ in range(n_seeds):
        try:
            envs_.append(gym.make(env_id, **kwargs))
        except (gym.error.Error, TypeError, ValueError) as e:
            given = "--env" if getattr(args, "env", None) else "config key env.id"
            raise ConfigError(f"{given}: cannot make {env_id!r} with kwargs {kwargs}: {e}") from e
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    states = [None if state is None else (state if n_seeds == 1 else jax_tree_index(state, i)) for i in range(n_seeds)]
    taken = [None if actions is None else actions[i] for i in range(n_seeds)]
    done, checkpointed = start_step, start_step if args.resume else None
    written: list[str] = []
    while done < end:
        stop = min(end, (done // every + 1) * every) if every else end
        for i in range(n_seeds):
            seed = seed0 + i
            try:
                r = run(
                    learner,
                    envs_[i],
                    steps=stop - done,
                    seed=seed,
                    policy=policy,
                    record_every=run_cfg["record_every"],
                    chunk_size=run_cfg["chunk_size"],
                    progress=False if args.no_progress else None,
                    stop_on_interrupt=True,
                    state=states[i],
                    start_step=done,
                    actions=taken[i],
                    record_to=seed_dir(out, seed),
                )
            except DivergenceError as e:
                print(f"horde run: seed {seed}: {e}", file=sys.stderr)
                print(_kept(out, seed0, n_seeds, checkpointed), file=sys.stderr)
                return 3
            except (RunError, RecordsError) as e:
                print(f"horde run: seed {seed}: stopped: {e}", file=sys.stderr)
                print(_kept(out, seed0, n_seeds, checkpointed), file=sys.stderr)
                return 4
            except ValueError as e:
                raise ConfigError(str(e)) from e
            wall += r.wall_time
            if r.config.get("interrupted"):
                print("horde run: interrupted", file=sys.stderr)
                print(_kept(out, seed0, n_seeds, checkpointed), file=sys.stderr)
                return 130
            assert r.actions is not None  # an acting run returns the actions it took
            states[i], taken[i] = r.state, r.actions[0]
            if stop < end:  # killed before the next segment, the store reads as the partial run it is
                try:
                    mark_unfinished(seed_dir(out, seed), f"the run goes on after step {stop} (segment of {end} steps)")
                except RecordsError as e:
                    print(f"horde run: seed {seed}: stopped: {e}", file=sys.stderr)
                    return 4
        done = stop
        try:
            _checkpoint(out, learner, config, states, taken, done, wall)
            checkpointed = done
        except OSError as e:
            print(f"horde run: writing the checkpoint {out / CHECKPOINT_FILE} failed ({e})", file=sys.stderr)
            if done < end:
                print(_kept(out, seed0, n_seeds, checkpointed), file=sys.stderr)
                return 4
        else:
            if done == end:
                written.append(CHECKPOINT_FILE)
    result = _stack_stores(out, seed0, states, taken, end, wall)
    result.save(out)
    shutil.rmtree(out / SEEDS_DIR, ignore_errors=True)  # the stacked records hold them all now
    print_summary(result)
    last = plots.last_returns(result, 20)
    print("\nEpisode returns (mean of the last 20 episodes) per seed:")
    for i, v in enumerate(last):
        n = int(np.sum(result.episode_seed == i))
        print(f"  seed {seed0 + i}: {v:.1f} ({n} episodes)")
    figures = draw_figures(result, out) + draw_returns(result, out)
    print(
        f"\n{result.total_steps * result.n_seeds:,} steps in {result.wall_time:.1f} s "
        f"({result.steps_per_second:,.0f} steps/s); wrote {out}/: {RECORDS_DIR} config.json "
        f"{' '.join(written + figures)}"
    )
    return 0


SEEDS_DIR = "seeds"


def seed_dir(out: Path, seed: int) -> Path:
    """Where a control run streams seed ``seed``'s records while it runs."""
    return out / SEEDS_DIR / f"seed-{seed}"


def _kept(out: Path, seed0: int, n_seeds: int, checkpointed: int | None) -> str:
    """The sentence saying what a stopped control run keeps."""
    stores = ", ".join(str(seed_dir(out, seed0 + i)) for i in range(n_seeds))
    if checkpointed is None:
        where = "no checkpoint was reached (set run.checkpoint_every to write them during the run)"
    else:
        where = f"{out / CHECKPOINT_FILE} holds step {checkpointed}: `horde run --resume {out}` continues from it"
    return f"the records learned so far are in {stores} (horde.RunResult.load reads each); {where}"


def _checkpoint(
    out: Path, learner: Any, config: dict[str, Any], states: list, taken: list, step: int, wall: float
) -> None:
    """Every seed's state and actions at ``step`` (and the wall time to it), written as the
    run's checkpoint."""
    import jax
    import numpy as np

    state = states[0] if len(states) == 1 else jax.tree_util.tree_map(lambda *a: np.stack(a), *states)
    meta = {
        "step": step,
        "seed": config["run"]["seed"],
        "run": run_identity(config),
        "control_actions": encode_actions(np.stack([np.asarray(a)[:step] for a in taken])),
        "wall_time": wall,
    }
    save_checkpoint(out / CHECKPOINT_FILE, learner, state, meta)


def _stack_stores(out: Path, seed0: int, states: list, taken: list, end: int, wall: float) -> Any:
    """The whole run: every seed's store read back and stacked along the seed axis, with each
    seed's final state and actions and the run's whole wall time."""
    import numpy as np

    per_seed = []
    for i, (state, actions) in enumerate(zip(states, taken)):
        whole = load_quietly(seed_dir(out, seed0 + i))
        whole.state, whole.actions = state, np.asarray(actions)[None, :end]
        whole.config = {**whole.config, "start_step": 0}
        whole.partial = False
        per_seed.append(whole)
    result = stack_seeds(per_seed)
    result.wall_time = wall
    return result


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


def _prepare_control_resume(args: Any, config: dict[str, Any], learner: Any, out: Path):
    """Loads a control run's checkpoint, refuses it where the config no longer describes that
    run (every difference listed), and puts each seed's earlier records in ``out``'s per-seed
    store, where the continuation appends to them (records after the checkpoint's step, from a
    run stopped later, are cut off there). Returns ``(state, start_step, steps, actions,
    earlier wall time)``."""
    import numpy as np

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
    seeds = [run_cfg["seed"] + i for i in range(run_cfg["seeds"])]
    stores = [seed_dir(source, seed) for seed in seeds]
    stopped = [d for d in stores if d.exists()]
    ends = _store_ends(args, stores) if stopped else []
    steps = args.steps if args.steps is not None else run_cfg["steps"] - start_step
    if steps < 1 and not (stopped and args.steps is None):  # stopped after its last checkpoint: only stacked
        raise ConfigError(
            f"--resume {args.resume}: the run already has {start_step} of its {run_cfg['steps']} "
            "steps; give --steps N to continue further"
        )
    for d, last in zip(stores, ends):
        if last < start_step:
            raise ConfigError(
                f"--resume {args.resume}: {d}'s records end at step {last}, before the checkpoint's step "
                f"{start_step}: steps in between would be missing (were they replaced by another run's?)"
            )
        if last > start_step + steps:
            raise ConfigError(
                f"--resume {args.resume} --steps {steps}: {d} holds records to step {last}, past the step "
                f"{start_step + steps} this resume would end at, and they would be cut off; resume without "
                f"--steps (to the run's {run_cfg['steps']} steps) or with --steps >= {last - start_step}"
            )
    try:
        if stopped:  # stopped before its end
            if source.resolve() != out.resolve():
                for seed in seeds:
                    shutil.copytree(seed_dir(source, seed), seed_dir(out, seed), dirs_exist_ok=True)
            wall = float(meta.get("wall_time", 0.0))  # of the steps up to the checkpoint
        else:  # a finished run: its stacked records, one store per seed again
            earlier = load_quietly(source)
            for i, seed in enumerate(seeds):
                seed_of(earlier, i, seed).save(seed_dir(out, seed))
            wall = float(earlier.wall_time)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise ConfigError(f"--resume {args.resume}: its records cannot be read ({e})") from e
    run_cfg["steps"] = start_step + max(steps, 0)
    return state, start_step, max(steps, 0), np.asarray(decode_actions(meta["control_actions"])), wall


def _store_ends(args: Any, stores: list[Path]) -> list[int]:
    """The last step each seed's store of a stopped run holds; every seed must have one."""
    from horde.runs import read_records

    ends = []
    for d in stores:
        try:
            meta, _ = read_records(d)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(
                f"--resume {args.resume}: the run stopped before its end, and the records of seed "
                f"{d.name.split('-')[-1]} cannot be read ({e}); every seed's store {d.parent}/seed-<seed> is needed"
            ) from e
        ends.append(int(meta["first_step"]) + int(meta["total_steps"]))
    return ends


def seed_of(result: Any, i: int, seed: int) -> Any:
    """Seed ``i`` of a result with a seed axis, as the single-seed result ``horde.run`` with
    ``seed`` returns (its rows and episodes; the state and actions are not kept)."""
    import numpy as np

    from horde.runs import RunResult

    mine = result.episode_seed == i
    per_step = ("predictions", "td_errors", "cumulants", "discounts", "rewards", "terminated", "truncated", "valid")
    fields: dict[str, Any] = {name: getattr(result, name)[i : i + 1] for name in per_step}
    for name in ("rupee", "ude"):
        value = getattr(result, name)
        fields[name] = None if value is None else value[i : i + 1]
    return RunResult(
        demon_names=result.demon_names,
        steps=result.steps,
        wall_time=float(result.wall_time) / max(1, result.n_seeds),
        total_steps=result.total_steps,
        record_every=result.record_every,
        config={**result.config, "seed": seed, "n_seeds": 1},
        state=None,
        demons=result.demons,
        actions=None,
        episode_seed=np.zeros(int(mine.sum()), np.int64),
        episode_end_step=result.episode_end_step[mine],
        episode_return=result.episode_return[mine],
        episode_length=result.episode_length[mine],
        **fields,
    )
