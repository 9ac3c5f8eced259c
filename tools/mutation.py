"""Mutation testing: plant small bugs in the learner, demons and runner, and count the ones the tests catch.

An occasional command, not part of CI (a full campaign takes hours on two cores). It drives
cosmic-ray (``pip install cosmic-ray``) over the targets listed in ``tools/mutation.toml``:

    python tools/mutation.py --sample 100                 # about an hour on 2 cores
    python tools/mutation.py --target core --sample 20    # one room
    python tools/mutation.py --modules horde/core/initializers.py \\
        --tests tests/test_multi_head_learner.py -k sparse --sample 5   # a quick check

Each mutant is one small edit of one module (``+`` for ``-``, ``<`` for ``<=``, a constant
changed, ``and`` for ``or``, a ``break`` for a ``continue``, ...). The target's test files run
against it with ``pytest -x``; a failing test (or a run past the timeout) *kills* the mutant,
a passing run means it *survived*: no test tells that bug from the real code. The kill rate is
killed / (killed + survived) over the mutants run.

Nothing is mutated in place: the script copies the working tree (tracked and untracked files
that git does not ignore) to a temporary folder and runs everything there, with
``PYTHONPATH`` pointing at that copy. The cosmic-ray sessions and a summary listing every
survivor (file, line, operator, diff) are written to ``--out`` (default ``.mutation/``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "tools" / "mutation.toml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="targets file (default: %(default)s)")
    parser.add_argument("--target", action="append", help="run only this target of the config (repeatable)")
    parser.add_argument("--modules", nargs="+", help="mutate these files instead of the config's targets")
    parser.add_argument("--tests", nargs="+", help="with --modules: the test files to run (required)")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression added to every test run")
    parser.add_argument("--sample", type=int, help="run a random sample of N mutants over all targets")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / ".mutation", help="results folder (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy of the tree")
    args = parser.parse_args(argv)
    if args.modules and not args.tests:
        parser.error("--modules needs --tests (the test files that should kill its mutants)")
    if args.tests and not args.modules:
        parser.error("--tests goes with --modules; to change a target's tests, edit the config")
    if args.sample is not None and args.sample < 1:
        parser.error(f"--sample must be a positive integer, got {args.sample}")
    return args


def load_targets(args: argparse.Namespace) -> tuple[dict, list[dict]]:
    config = tomllib.loads(args.config.read_text())
    settings = config.get("settings", {})
    if args.modules:
        return settings, [{"name": "custom", "modules": args.modules, "tests": args.tests}]
    targets = config.get("target", [])
    if args.target:
        known = {t["name"] for t in targets}
        unknown = sorted(set(args.target) - known)
        if unknown:
            raise SystemExit(f"--target {unknown[0]!r} is not in {args.config}; expected one of {sorted(known)}")
        targets = [t for t in targets if t["name"] in args.target]
    return settings, targets


def expand(patterns: list[str], root: Path, what: str) -> list[str]:
    """Relative paths matching the glob patterns under ``root``, without ``__init__.py``."""
    paths: list[str] = []
    for pattern in patterns:
        matches = sorted(
            str(Path(p).relative_to(root))
            for p in glob.glob(str(root / pattern), recursive=True)
            if Path(p).name != "__init__.py"
        )
        if not matches:
            raise SystemExit(f"{what} pattern {pattern!r} matches no file: has it moved? Edit tools/mutation.toml")
        paths += [m for m in matches if m not in paths]
    return paths


def copy_tree(dest: Path) -> None:
    """Copy the files git would commit (tracked and untracked, not ignored) to ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        source = ROOT / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)


def pytest_command(tests: list[str], keyword: str | None) -> str:
    parts = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    if keyword:
        parts += ["-k", keyword]
    return shlex.join(parts)


def cosmic_ray(*args: str, cwd: Path, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "cosmic_ray.cli", *args], cwd=cwd, env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from cosmic_ray.work_db import WorkDB, use_db
        from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult
    except ImportError:
        raise SystemExit("cosmic-ray is not installed: pip install -e '.[dev,mutation]'") from None

    settings, targets = load_targets(args)
    exclude = [re.compile(p) for p in settings.get("exclude-operators", [])]
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="horde-mutation-"))
    env = dict(os.environ, PYTHONPATH=str(work), MPLBACKEND="Agg")
    try:
        copy_tree(work)
        sessions = []
        for target in targets:
            modules = expand(target["modules"], work, "module")
            tests = expand(target["tests"], work, "test")
            command = pytest_command(tests, args.keyword)
            start = time.monotonic()
            baseline = subprocess.run(shlex.split(command), cwd=work, env=env, capture_output=True, text=True)
            seconds = time.monotonic() - start
            if baseline.returncode != 0:
                raise SystemExit(
                    f"target {target['name']!r}: the tests fail before any mutation (exit {baseline.returncode});"
                    f" fix them first:\n{baseline.stdout[-3000:]}"
                )
            timeout = settings.get("timeout-factor", 3.0) * seconds + settings.get("timeout-slack", 60.0)
            cfg = work / f"mutation-{target['name']}.toml"
            cfg.write_text(
                "[cosmic-ray]\n"
                f"module-path = {json.dumps(modules)}\n"
                f"timeout = {timeout:.0f}\n"
                "excluded-modules = []\n"
                f"test-command = {json.dumps(command)}\n"
                '[cosmic-ray.distributor]\nname = "local"\n'
            )
            session = work / f"mutation-{target['name']}.sqlite"
            cosmic_ray("init", str(cfg), str(session), cwd=work, env=env)
            print(f"{target['name']}: {len(modules)} modules, tests pass unmutated in {seconds:.0f} s", flush=True)
            sessions.append((target["name"], cfg, session))

        # Exclusions and the sample are recorded as skipped results, which cosmic-ray leaves alone.
        candidates = []
        for name, _, session in sessions:
            with use_db(str(session), WorkDB.Mode.open) as db:
                skipped = []
                for item in db.work_items:
                    if any(p.fullmatch(m.operator_name) for p in exclude for m in item.mutations):
                        skipped.append(item.job_id)
                    else:
                        candidates.append((name, item.job_id))
                db.set_multiple_results(skipped, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
        chosen = set(candidates)
        if args.sample is not None and args.sample < len(candidates):
            chosen = set(random.Random(args.seed).sample(candidates, args.sample))
        print(f"{len(chosen)} of {len(candidates)} mutants will run", flush=True)
        for name, _, session in sessions:
            with use_db(str(session), WorkDB.Mode.open) as db:
                rest = [job for target, job in candidates if target == name and (target, job) not in chosen]
                db.set_multiple_results(rest, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))

        for name, cfg, session in sessions:
            print(f"{name}: running", flush=True)
            cosmic_ray("exec", str(cfg), str(session), cwd=work, env=env)

        summary = {"targets": {}, "killed": 0, "survived": 0}
        lines = []
        for name, _, session in sessions:
            killed = survived = 0
            with use_db(str(session), WorkDB.Mode.open) as db:
                items = {item.job_id: item for item in db.work_items}
                for job_id, result in db.results:
                    if result.worker_outcome == WorkerOutcome.SKIPPED:
                        continue
                    if result.test_outcome == TestOutcome.SURVIVED:
                        survived += 1
                        for m in items[job_id].mutations:
                            lines.append(f"SURVIVED {m.module_path}:{m.start_pos[0]} {m.operator_name}\n{result.diff}")
                    else:
                        killed += 1
            summary["targets"][name] = {"killed": killed, "survived": survived}
            summary["killed"] += killed
            summary["survived"] += survived
            shutil.copy2(session, args.out / session.name)
        run = summary["killed"] + summary["survived"]
        summary["kill_rate"] = summary["killed"] / run if run else None
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (args.out / "survivors.txt").write_text("\n".join(lines))
        for name, counts in summary["targets"].items():
            print(f"{name}: killed {counts['killed']}, survived {counts['survived']}")
        if run:
            print(f"kill rate {summary['killed']}/{run} = {summary['kill_rate']:.1%}; survivors in {args.out}")
        return 0
    finally:
        if args.keep:
            print(f"tree kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
