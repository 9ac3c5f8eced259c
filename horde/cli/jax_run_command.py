"""``horde run`` on an environment written in JAX (``gymnax:...``, ``phys2d/...``): the whole run
compiled with ``horde.run_jax``, copies over seeds vmapped.

The run directory holds what a Gymnasium run writes (records streamed as they are made, config,
summary, figures and a checkpoint of the final state). ``--resume`` is not supported: a
compiled run is not replayed to a checkpoint's step, so such a run is refused up front.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from horde.cli.checkpoint import save_checkpoint
from horde.cli.config import ConfigError, build_learner
from horde.cli.report import draw_figures, print_summary, warn_if_large
from horde.runs import RECORDS_DIR

__all__ = ["JAX_ENV_PREFIXES", "is_jax_env_id", "jax_observation_dim", "run_jax_command"]

#: Environment ids that ``horde run`` gives to ``horde.run_jax`` (``horde.runs.as_jax_env``).
JAX_ENV_PREFIXES = ("gymnax:", "phys2d/")

_CHECKPOINT_FILE = "checkpoint.npz"


def is_jax_env_id(env_id: Any) -> bool:
    """Whether ``env_id`` names an environment written in JAX that ``horde run`` runs with
    ``horde.run_jax`` (a ``"gymnax:"`` id or a Gymnasium ``"phys2d/"`` id)."""
    return isinstance(env_id, str) and env_id.startswith(JAX_ENV_PREFIXES)


def jax_observation_dim(env_id: str) -> int:
    """The feature size (``horde.runs.FeatureMap``) of a JAX environment's observations.

    Raises:
        ConfigError: the environment cannot be made (unknown id, gymnax not installed).
    """
    from horde.runs import FeatureMap, as_jax_env

    try:
        return FeatureMap(as_jax_env(env_id, 0).observation_space).dim
    except (ValueError, TypeError, ImportError) as e:
        raise ConfigError(f"--env {env_id}: {e}") from e


def _jax_policy(config: dict[str, Any]) -> Any:
    from horde.runs import FixedProbabilities

    policy = config.get("policy", {})
    kind = policy.get("kind", "uniform")
    if kind == "uniform":
        return None
    if kind == "fixed":
        return FixedProbabilities(policy["probabilities"])
    if kind == "env":
        return "env"
    raise ConfigError(
        f"config key policy.kind: {kind!r} is a Python function, which a compiled run of "
        f"{config['env']['id']} cannot call; use 'uniform', 'fixed' or 'env'"
    )


def run_jax_command(args: Any, config: dict[str, Any], out: Path) -> int:
    """Runs ``horde run`` for a JAX environment id with the resolved ``config``; returns the
    exit status (0, or 3 when the run diverged). Raises ``ConfigError`` for ``--resume``, a
    Python behaviour policy or a configuration that does not fit the environment."""
    from horde.runs import DivergenceError, RecordsError, RunResult, run_jax

    env_id = config["env"]["id"]
    if args.resume:
        raise ConfigError(f"--resume is not supported for {env_id} (a compiled run_jax run); start a new run")
    if config["env"].get("kwargs"):
        raise ConfigError(f"config key env.kwargs: {env_id} takes no arguments, got {config['env']['kwargs']}")
    learner = build_learner(config)
    policy = _jax_policy(config)
    run_cfg = config["run"]
    warn_if_large(config, learner, run_cfg["steps"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    meta = {"seed": run_cfg["seed"], "runner": "run_jax", "env.id": env_id}
    try:
        result = run_jax(
            learner,
            env_id,
            steps=run_cfg["steps"],
            seed=run_cfg["seed"],
            n_seeds=run_cfg["seeds"],
            policy=policy,
            record_every=run_cfg["record_every"],
            chunk_size=run_cfg["chunk_size"],
            progress=False if args.no_progress else None,
            record_to=out,
        )
    except DivergenceError as e:
        step = e.result.total_steps
        save_checkpoint(out / _CHECKPOINT_FILE, learner, e.result.state, {**meta, "step": step})
        print(f"horde run: {e}", file=sys.stderr)
        print(
            f"the last good state (step {step}) is in {out / _CHECKPOINT_FILE}; "
            f"the records up to the divergence are in {out}",
            file=sys.stderr,
        )
        return 3
    except RecordsError as e:
        raise ConfigError(f"--out {out}: {e}") from e
    except (ValueError, TypeError, ImportError) as e:
        raise ConfigError(f"config does not fit environment {env_id}: {e}") from e
    save_checkpoint(out / _CHECKPOINT_FILE, learner, result.state, {**meta, "step": result.total_steps})
    state = result.state
    result = RunResult.load(out)
    result.state = state
    print_summary(result)
    figures = draw_figures(result, out)
    print(
        f"\n{result.total_steps * result.n_seeds:,} steps in {result.wall_time:.1f} s "
        f"({result.steps_per_second:,.0f} steps/s); wrote {out}/: {RECORDS_DIR} config.json "
        f"{_CHECKPOINT_FILE} {' '.join(figures)}"
    )
    return 0
