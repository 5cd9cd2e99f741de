"""The package's layering, read from the source: inference never pulls in training, and no import cycles.

Checked with `ast` (function-level imports included), so a lazy import cannot hide a violation.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "ganforge"
INFERENCE = ("ganforge.api", "ganforge.pipelines", "ganforge.latent", "ganforge.tiling", "ganforge.fill")
FRONT_ENDS = ("ganforge.cli", "ganforge.studio")  # nothing below the API imports them


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(name: str) -> set[str]:
    """The ganforge modules `name` imports anywhere in its source (`from a import b` counts a.b where that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    # The package root runs before any of its modules whatever they import, so `from ganforge import __version__`
    # orders nothing; what the root itself imports is checked by test_the_root_imports_lazily.
    return {m for m in found if m in MODULES and m not in (name, ROOT_PACKAGE)}


ROOT_PACKAGE = "ganforge"
GRAPH = {name: imports(name) for name in MODULES}


def test_the_root_imports_lazily():
    """`import ganforge` stays cheap: the root package imports ganforge's modules only inside functions (PEP 562)."""
    tree = ast.parse(MODULES[ROOT_PACKAGE].read_text())
    top = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not top, [ast.unparse(node) for node in top]
    assert "ganforge.api" in GRAPH[ROOT_PACKAGE]  # the lazy `ganforge.load` is seen by the checks below


def within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_sees_imports():
    """Guards the checks below against passing on an empty or unresolved graph."""
    assert "ganforge.nets.build" in GRAPH["ganforge.pipelines.sampling"]  # a module-level import
    assert "ganforge.training.run" in GRAPH["ganforge.cli"]  # a function-level one


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for other in sorted(GRAPH[name]):
            if state.get(other) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(other):] + [other]))
            if other not in state:
                visit(other, path + [other])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("layer, forbidden", [
    (INFERENCE, ("ganforge.training", "ganforge.tasks", *FRONT_ENDS)),
    (("ganforge.training",), ("ganforge.api", "ganforge.pipelines", *FRONT_ENDS)),
    (("ganforge.studio",), ("ganforge.training", "ganforge.tasks", "ganforge.nets", "ganforge.cli")),
])
def test_layers(layer, forbidden):
    wrong = sorted(f"{name} imports {other}" for name in GRAPH if within(name, layer)
                   for other in GRAPH[name] if within(other, forbidden))
    assert not wrong, wrong
