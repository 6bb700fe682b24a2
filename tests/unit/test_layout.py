"""The shape the architecture promises, read from the code (docs/architecture.md): flows only
sequence tasks (short functions, no flow importing another), nothing outside the lab imports the
lab, and the core imports nothing else of Atlas."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_FLOW_FUNCTION_LINES = 60


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_no_function_in_flows_is_longer_than_60_lines() -> None:
    long = [
        f"{path.name}:{node.name} {node.end_lineno - node.lineno + 1} lines"
        for path in modules("flows")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FLOW_FUNCTION_LINES
    ]
    assert long == []
    assert len(modules("flows")) >= 6  # the check read the flows


def test_no_flow_imports_another_flow() -> None:
    crossing = [
        f"{path.name} imports {name}"
        for path in modules("flows")
        for name in imported(path)
        if name == "flows" or name.startswith("flows.")
    ]
    assert crossing == []


def test_only_the_lab_and_the_clis_lab_commands_import_the_lab() -> None:
    outside = [
        f"{path.relative_to(ROOT)} imports {name}"
        for folder in ("atlas", "flows")
        for path in modules(folder)
        if "lab" not in path.relative_to(ROOT).parts[:2]
        for name in sorted(imported(path))
        if name == "atlas.lab" or name.startswith("atlas.lab.")
    ]
    # atlas/cli.py mounts the lab's commands (atlas/lab/cli.py) and imports them only when asked for
    assert all(line.startswith("atlas/cli.py imports atlas.lab.") for line in outside), outside


def test_the_core_imports_nothing_else_of_atlas() -> None:
    upward = [
        f"{path.name} imports {name}"
        for path in modules("atlas/core")
        for name in sorted(imported(path))
        if name.startswith("atlas.") and not name.startswith("atlas.core")
    ]
    assert upward == []
