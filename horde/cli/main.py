"""The ``horde`` command: run a Horde on a Gymnasium environment, redraw its figures, list the
demons a configuration declares.

    horde run [CONFIG.toml] [--env ID] [--steps N] [--seeds K] [--seed S] [--out DIR]
              [--resume DIR] [--checkpoint-every N] [--no-progress]
    horde plot DIR
    horde demons CONFIG.toml

Exit status: 0 on success, 2 for a bad command line or configuration (the message names the
key and what it expected), 3 when learning diverged (the last good state is checkpointed and the
records up to the divergence are kept), 4 when the environment, a checkpoint write or the
records failed (one paragraph says which step; the records and, where it can be written, a
checkpoint of the last good state are kept), 130 when interrupted (after writing a final
checkpoint and the partial results).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from horde.cli.config import ConfigError

__all__ = ["main"]


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
            "50,000 steps. Prints a per-demon summary table and writes records.zarr (streamed as "
            "the run goes), config.json, checkpoint.npz and PNG figures into the output directory."
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
    """Runs the ``horde`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit
    status (see the module docstring)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "run":
            from horde.cli.run_command import run_command

            return run_command(args)
        if args.command == "plot":
            from horde.cli.report import plot_command

            return plot_command(args)
        from horde.cli.demons_command import demons_command

        return demons_command(args)
    except ConfigError as e:
        print(f"horde {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
