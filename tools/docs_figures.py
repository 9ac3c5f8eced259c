"""Regenerates the figures of the documentation (``docs/figures/``) from the example scripts.

The examples write into ``runs/examples/`` by default and never into the repository; this
script is the one command that runs each figure-making example with ``--out docs/figures`` at
its default settings (the settings the docs quote):

    python tools/docs_figures.py             # every figure (about a minute on a 2-core CPU)
    python tools/docs_figures.py cartpole    # only the examples whose name contains "cartpole"
    python tools/docs_figures.py --list      # what it would run

Each example prints its numbers as it goes; compare them with the ones quoted in
``docs/examples.md`` before committing the new figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "figures"

#: The examples that draw a figure of the docs, and the figures each writes.
FIGURE_EXAMPLES = {
    "random_walk_td_lambda.py": ["random_walk_td_lambda.png"],
    "cartpole_nexting.py": ["cartpole_learning_curves.png", "cartpole_prediction_vs_return.png"],
    "off_policy_baird_collision.py": ["off_policy.png"],
    "thousand_demons.py": ["thousand_demons.png"],
    "control_cartpole.py": ["control_cartpole_returns.png", "control_cartpole_predictions.png"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="run only the examples whose file name contains one of these")
    parser.add_argument("--list", action="store_true", help="print the commands and exit")
    args = parser.parse_args(argv)
    chosen = [name for name in FIGURE_EXAMPLES if not args.only or any(o in name for o in args.only)]
    if not chosen:
        parser.error(f"no example matches {args.only}; the examples are {', '.join(FIGURE_EXAMPLES)}")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    for name in chosen:
        command = [sys.executable, str(ROOT / "examples" / name), "--out", str(OUT)]
        print(f"$ python examples/{name} --out docs/figures  ->  {', '.join(FIGURE_EXAMPLES[name])}", flush=True)
        if args.list:
            continue
        proc = subprocess.run(command, cwd=ROOT, env=env)
        if proc.returncode != 0:
            print(f"examples/{name} failed with exit status {proc.returncode}", file=sys.stderr)
            return proc.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
