"""The command line (``horde run``, ``horde plot``, ``horde demons``), run configs and checkpoints."""

from horde.cli.main import main

__all__ = ["main"]
