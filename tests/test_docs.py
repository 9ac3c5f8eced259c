"""The documentation site builds cleanly, and the example scripts start.

* ``mkdocs build --strict`` (every page, every link and image, and the API reference generated
  from the docstrings) exits 0; skipped when the documentation tools are not installed.
* Every script in ``examples/`` answers ``--help`` (argparse) without running.
* ``random_walk_td_lambda.py`` runs end to end on a tiny budget and writes its figure.
* The committed figures stay small, and the docs' home page repeats the README's two commands.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))
DOCS_TOOLS = {
    "mkdocs": "mkdocs",
    "material": "mkdocs-material",
    "mkdocstrings": "mkdocstrings",
    "mkdocstrings_handlers.python": "mkdocstrings-python",
}


def _missing_docs_tools() -> list[str]:
    missing = []
    for module, package in DOCS_TOOLS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a missing parent package
            found = False
        if not found:
            missing.append(package)
    return missing


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_MKDOCS_2_WARNING"] = "1"  # mkdocs-material's notice about future versions
    env.setdefault("MPLBACKEND", "Agg")
    return env


def test_mkdocs_build_strict(tmp_path):
    missing = _missing_docs_tools()
    if missing:
        pytest.skip(f"documentation tools not installed: {', '.join(missing)} (pip install them to build the docs)")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    for page in ("index.html", "reference/horde/index.html", "guides/single-step/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    reference = (tmp_path / "site" / "reference" / "horde" / "index.html").read_text()
    assert "HordeLearner" in reference and "run_horde_learning_loop_batched" in reference


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_help(script):
    proc = subprocess.run(
        [sys.executable, str(script), "--help"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:"), proc.stdout


def test_examples_exist():
    names = {p.name for p in EXAMPLES}
    for name in (
        "quickstart.py",
        "random_walk_td_lambda.py",
        "cartpole_nexting.py",
        "off_policy_baird_collision.py",
        "thousand_demons.py",
    ):
        assert name in names


def test_random_walk_example_smoke(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "random_walk_td_lambda.py"),
            "--steps",
            "40",
            "--runs",
            "2",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "RMS error" in proc.stdout
    figure = tmp_path / "random_walk_td_lambda.png"
    assert figure.is_file() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_committed_figures_are_small():
    figures = sorted((ROOT / "docs" / "figures").glob("*.png"))
    assert figures, "docs/figures/ has no figures"
    for figure in figures:
        assert figure.stat().st_size < 200 * 1024, f"{figure.name} is {figure.stat().st_size} bytes"


def test_home_page_repeats_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", section, re.S)
    assert len(commands) == 2, section
    index = (ROOT / "docs" / "index.md").read_text()
    for command in commands:
        assert command in index, f"docs/index.md does not show the README command {command!r}"
