"""The rooms of the code base and their doors (docs/architecture.md), checked on the source.

Each rule is read off the import statements of every module (including imports inside
functions), so a change that breaks the layout fails here with the offending line.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("horde", "demons", "envs")

# What each room may import, besides itself. A room is named by its dotted prefix.
ALLOWED = {
    "horde.core": set(),
    "horde.td": {"horde.core", "demons"},
    "horde.control": {"horde.core", "horde.td", "demons"},
    "horde.runs": {"horde.core", "horde.td", "horde.control", "demons", "envs"},
    "horde.evaluation": {"horde.runs", "demons"},
    "horde.plots": {"horde.evaluation", "horde.runs", "demons"},
    "horde.cli": {
        "horde",
        "horde.core",
        "horde.td",
        "horde.control",
        "horde.runs",
        "horde.evaluation",
        "horde.plots",
        "demons",
        "envs",
    },
    "demons": set(),
    "envs": set(),
}
ROOMS = sorted(ALLOWED, key=len, reverse=True)


def _room_of(module: str) -> str | None:
    for room in ROOMS:
        if module == room or module.startswith(room + "."):
            return room
    return "horde" if module == "horde" else None


def _modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield path, ".".join(parts)


def _imports(path: pathlib.Path):
    """``(line, imported module, [names])`` for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, []


def _first_party(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def test_the_room_table_names_every_subpackage_of_horde():
    subpackages = {f"horde.{p.name}" for p in (ROOT / "horde").iterdir() if (p / "__init__.py").exists()}
    assert subpackages == {r for r in ALLOWED if r.startswith("horde.")}


def test_no_private_name_is_imported_from_another_module():
    offenders = []
    for path in [*(p for p, _ in _modules()), *sorted((ROOT / "tests").glob("*.py"))]:
        for line, module, names in _imports(path):
            if _first_party(module):
                offenders += [
                    f"{path.relative_to(ROOT)}:{line} {module}.{n}"
                    for n in names
                    if n.startswith("_") and not n.startswith("__")
                ]
    assert offenders == []


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_a_room_imports_only_the_rooms_below_it(room):
    offenders = []
    for path, module in _modules():
        if _room_of(module) != room:
            continue
        for line, imported, _ in _imports(path):
            if not _first_party(imported):
                continue
            target = _room_of(imported)
            if target == room:
                continue
            if target not in ALLOWED[room]:
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {imported} (room {target})")
    assert offenders == []


def test_other_rooms_come_in_through_the_package_door():
    """``from horde.core import X``, never ``from horde.core.trunk import X`` from outside."""
    offenders = []
    for path, module in _modules():
        room = _room_of(module)
        for line, imported, _ in _imports(path):
            target = _room_of(imported)
            if not _first_party(imported) or target in (room, None, "horde"):
                continue
            if room is None or room == "horde":
                continue  # the top-level package re-exports its rooms' modules
            if imported != target:
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {imported}, not the package {target}")
    assert offenders == []
