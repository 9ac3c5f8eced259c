"""The command line (``horde run``, ``horde plot``, ``horde demons``), run configs and checkpoints.

``import horde`` loads only the checkpoint doors from here; the argument parser and the
commands load when the ``horde`` command runs (``horde.cli.main:main``).
"""

from collections.abc import Sequence

from horde.cli.checkpoint import CHECKPOINT_VERSION, CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["CHECKPOINT_VERSION", "CheckpointError", "load_checkpoint", "save_checkpoint", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """The ``horde`` command (see ``horde.cli.main.main``)."""
    from horde.cli.main import main as _main

    # Importing the submodule ``horde.cli.main`` rebinds this package's ``main`` to it: put the
    # function back so that ``horde.cli.main(...)`` keeps working after the first call.
    globals()["main"] = _package_main
    return _main(argv)


_package_main = main
