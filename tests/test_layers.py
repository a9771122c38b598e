"""The library's structure, read from its own imports (``ast``, nothing is imported):

cli -> studies -> engines (train, deploy, bench) -> (bitpack, data) -> (models, metrics, results)
-> (machine, io, paths, config). Imports point down (or sideways inside one package) only, no
two packages import each other, there is no import loop, every import of the library's own
modules sits at module top, and every module says in its docstring what it holds."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "lib" / "unetq"

LAYERS = [
    {"config", "paths", "io", "machine"},
    {"models", "metrics", "results"},
    {"bitpack", "data"},
    {"train", "deploy", "bench"},
    {"studies"},
    {"cli"},
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        if not is_package:
            parts = parts[:-1]
        parts = parts[:len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    names = [f"{base}.{a.name}" for a in node.names]
    return names + [base] if node.module else names  # "from . import x" imports x, not the package


def _imports(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """``(target, line, at_top)`` for every import of a ``unetq`` module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = _resolve(module, path.name == "__init__.py", node)
        else:
            continue
        for n in names:
            if n == "unetq" or n.startswith("unetq."):
                out.append((n, node.lineno, id(node) in top))
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for target, _, _ in _imports(m, p):
            # the longest known module the import names ("from .x import f" names module x or a name in it)
            while target not in mods and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in mods and target != m:
                graph[m].add(target)
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "unetq"


def test_every_module_belongs_to_a_layer():
    unplaced = sorted({_package(m) for m in _modules()} - set(LAYER_OF) - {"unetq"})
    assert not unplaced, f"modules outside the layer map: {unplaced}"


def test_imports_point_down_only():
    bad = []
    for m, targets in _graph().items():
        for t in targets:
            a, b = _package(m), _package(t)
            if a == "unetq" or a == b:
                continue
            if b == "unetq" or LAYER_OF[b] > LAYER_OF[a]:
                bad.append(f"{m} ({a}, layer {LAYER_OF.get(a)}) imports {t} ({b}, layer {LAYER_OF.get(b)})")
    assert not bad, "imports that point up:\n" + "\n".join(bad)


def test_no_package_pair_imports_each_other():
    edges = {(_package(m), _package(t)) for m, ts in _graph().items() for t in ts if _package(m) != _package(t)}
    both = sorted({tuple(sorted(e)) for e in edges if (e[1], e[0]) in edges})
    assert not both, f"packages importing each other: {both}"


def test_no_import_loop():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    loops = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                loops.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not loops, "import loops:\n" + "\n".join(" -> ".join(loop) for loop in loops)


def test_library_imports_sit_at_module_top():
    late = [f"{m}:{line} imports {t} inside a function"
            for m, p in _modules().items() for t, line, top in _imports(m, p) if not top]
    assert not late, "\n".join(late)


@pytest.mark.parametrize("module", sorted(_modules()))
def test_every_module_says_what_it_holds(module):
    path = _modules()[module]
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and len(doc.split()) >= 5, f"{path}: no module docstring saying what it holds"


def test_the_graph_is_read():  # the checks above are not vacuous
    g = _graph()
    assert "unetq.train.loop" in g["unetq.train.runs"]
    assert "unetq.deploy.runners" in g["unetq.deploy"]
    assert "unetq.machine" in g["unetq.bitpack.engine"]
