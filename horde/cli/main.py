"""The ``horde`` command: run a Horde on a Gymnasium environment, redraw its figures, list the
demons a configuration declares.

    horde run [CONFIG.toml] [--env ID] [--steps N] [--seeds K] [--seed S] [--out DIR]
              [--resume DIR] [--checkpoint-every N] [--record-every N] [--plugin MODULE]
              [--no-progress]
    horde plot DIR [--demons NAME ...] [--metric METRIC]
    horde demons CONFIG.toml [--plugin MODULE]

Exit status: 0 on success, 2 for a bad command line or configuration (the message names the
key and what it expected), 3 when learning diverged (the last good state is checkpointed and the
records up to the divergence are kept), 4 when the environment, a checkpoint write or the
records failed (one paragraph says which step; the records and, where it can be written, a
checkpoint of the last good state are kept), 130 when interrupted (after writing a final
checkpoint and the partial results; Ctrl-C while the figures are drawn stops quietly, the
results being saved already).

``horde run`` prints the per-demon summary first, then names each figure as it draws it (the
ones that say how good the predictions are first). Demon kinds of your own are found once their
module is imported: ``--plugin MODULE`` or ``[plugins] modules = [...]`` in the config.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from horde.cli.config import ConfigError, import_plugins

__all__ = ["main"]


def _count(minimum: int):
    """An argparse type: an integer >= ``minimum`` (argparse names the flag in its error)."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    return convert


_PLUGIN_HELP = (
    "import MODULE first (repeatable): the cumulant, discount and policy kinds it defines can be "
    "named in the config (as [plugins] modules = [...] does)"
)


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
        "--checkpoint-every",
        type=_count(0),
        metavar="N",
        help="write a checkpoint every N steps (and at the end; 0: only at the end)",
    )
    run.add_argument(
        "--record-every",
        type=_count(1),
        metavar="N",
        help="record every N-th step, overriding [run] record_every (records of long runs with many "
        "demons are large; the RMSE figures need every step)",
    )
    run.add_argument("--plugin", action="append", metavar="MODULE", help=_PLUGIN_HELP)
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    plot = sub.add_parser(
        "plot",
        help="redraw the figures of a saved run",
        description="Redraw the figures of a run saved by 'horde run' (see the guide 'Read the plots').",
    )
    plot.add_argument("dir", help="the run's output directory")
    plot.add_argument(
        "--demons",
        nargs="+",
        metavar="NAME",
        help="draw only these demons (names as 'horde demons' lists them); default: all, and a few "
        "informative ones against their returns",
    )
    plot.add_argument(
        "--metric",
        metavar="METRIC",
        help="the learning-curve metric: td_error, normalized_rmse or rmse (default: td_error and normalized_rmse)",
    )

    dem = sub.add_parser(
        "demons", help="list the demons a config declares", description="List the demons a run configuration declares."
    )
    dem.add_argument("config", help="TOML (or .json) run configuration")
    dem.add_argument("--plugin", action="append", metavar="MODULE", help=_PLUGIN_HELP)
    return parser


def _check_out(option: str, value: str) -> None:
    """Refuses an output directory that names a file or cannot be created or written: it is
    created (as the run would create it) and a probe file is written and removed."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {value}: is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        reason = e.strerror or str(e)
        raise ConfigError(f"{option} {value}: cannot write there ({reason})") from None


def check_run_args(args: argparse.Namespace) -> None:
    """The ``horde run`` options' values, checked before anything runs: counts are integers in
    range and ``--out`` / ``--resume`` name a writable directory.

    Raises:
        ConfigError: naming the option, the value and what was expected.
    """
    for option, value, low in (
        ("--steps", args.steps, 1),
        ("--seeds", args.seeds, 1),
        ("--seed", args.seed, 0),
        ("--checkpoint-every", args.checkpoint_every, 0),
    ):
        if value is not None and value < low:
            raise ConfigError(f"{option} must be an integer >= {low}, got {value}")
    if args.out is not None:
        _check_out("--out", args.out)
    if args.resume is not None and args.out is None and Path(args.resume).exists():
        _check_out("--resume", args.resume)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``horde`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit
    status (see the module docstring)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        import_plugins(getattr(args, "plugin", None) or ())
        if args.command == "run":
            from horde.cli.run_command import run_command

            check_run_args(args)
            return run_command(args)
        if args.command == "plot":
            from horde.cli.report import plot_command

            return plot_command(args)
        from horde.cli.demons_command import demons_command

        return demons_command(args)
    except ConfigError as e:
        print(f"horde {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # what was written is kept; the command said what that is
        print(f"horde {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
