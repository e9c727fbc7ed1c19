"""The package's layout: imports flow one way between stages, core modules hold no plots or CLI.

``docs/architecture.md`` draws the same rules; change both together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "facelab"

# part of facelab -> the parts it may import (besides itself).  Base modules first, then the
# stages in data-flow order; the tools at the top may import anything.
BASE = {"facelab.io", "facelab.manifest", "facelab.lazy", "facelab.lock"}
ALLOWED: dict[str, set[str]] = {
    "facelab.io": set(),
    "facelab.lazy": set(),
    "facelab.lock": set(),
    "facelab.manifest": {"facelab.io"},
    "facelab.collect": BASE,
    "facelab.faces": BASE | {"facelab.collect"},
    "facelab.data": BASE | {"facelab.collect"},   # collect.sources reads folders of crops
    "facelab.analysis": BASE | {"facelab.data"},
    "facelab.learn": BASE | {"facelab.data", "facelab.analysis", "facelab.faces"},
    "facelab.recognize": BASE | {"facelab.faces", "facelab.data", "facelab.learn",
                                 "facelab.analysis", "facelab.collect"},
    "facelab.demo": BASE | {"facelab.collect"},
}
TOOLS = {"facelab", "facelab.cli", "facelab.__main__", "facelab.doctor",
         "facelab.notebook_runner"}
# modules that may import matplotlib or argparse (plots and command lines beside a stage)
PRESENTATION = ("plots", "cli", "web_cli")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (lazy imports count)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            if node.module == "facelab":   # from facelab import collect
                names.update(f"facelab.{alias.name}" for alias in node.names)
    return names


def _part(module: str) -> str:
    """The part of facelab a module belongs to (``facelab.collect.run`` -> ``facelab.collect``)."""
    parts = module.split(".")
    return ".".join(parts[:2])


MODULES = _modules()


def test_every_part_has_a_rule() -> None:
    parts = {_part(m) for m in MODULES} - TOOLS
    assert parts <= set(ALLOWED), f"part of facelab without an import rule: {parts - set(ALLOWED)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in TOOLS))
def test_imports_flow_one_way(module: str) -> None:
    own = _part(module)
    for target in _imports(MODULES[module]):
        if not target.startswith("facelab"):
            continue
        other = _part(target)
        assert other == own or other in ALLOWED[own], (
            f"{module} imports {target}: {own} may import only {sorted(ALLOWED[own])} "
            "(see docs/architecture.md)")


def test_no_import_cycles() -> None:
    graph = {m: {t for t in _imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    graph = {m: {t for t in targets if t not in TOOLS} for m, targets in graph.items()
             if m not in TOOLS}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in TOOLS
                                          and not m.endswith(PRESENTATION)))
def test_core_modules_import_no_plots_or_cli(module: str) -> None:
    bad = {t for t in _imports(MODULES[module])
           if t.split(".")[0] in ("matplotlib", "argparse")}
    assert not bad, f"{module} imports {sorted(bad)}: move plots to plots.py, options to cli.py"
