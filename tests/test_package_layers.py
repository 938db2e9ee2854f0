"""The layers of ``scot_data``: no import cycle between its parts, and no Prefect.

Every module is read with ``ast`` (nothing is imported). A part is the first component
under ``scot_data``: a subpackage (``captions``, ``embed``, ``clipart``, ...) or a top-level
module (``images``, ``manifest``, ``pipeline``, ...). An edge A -> B is any import in A of
something in B, at any level: imports inside functions count too. Lazy imports keep startup
light, but a cycle through them is still a cycle in the design (neither side can be
understood, tested or moved without the other), so they are counted like the others.
Names loaded by ``importlib`` from strings (the lazy ``__getattr__`` of ``embed`` and
``combiner``) only ever point into their own package, so they add no edge.

The ground floor (``GROUND``) imports no subpackage at all; the orchestration modules
(pipeline, spec, verify, run_view, __main__) sit on top and are imported by ``cli`` only.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import scot_data

PACKAGE = Path(scot_data.__file__).parent
GROUND = {"__init__", "atomic", "config_files", "errors", "hashing", "ids", "images", "lazy", "manifest", "memory", "outdir", "stages"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path) -> list[tuple[str, int]]:
    """Every absolute module name ``path`` imports (``from m import n`` gives m and m.n)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _part(module: str) -> str | None:
    """The part of ``scot_data`` a module name belongs to, or None outside it."""
    parts = module.split(".")
    if parts[0] != "scot_data":
        return None
    if len(parts) == 1:
        return "__init__"
    first = parts[1]
    if (PACKAGE / first).is_dir() or (PACKAGE / f"{first}.py").is_file():
        return first
    return "__init__"  # a name imported from the package itself (``from scot_data import ids``)


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def part_graph() -> dict[str, dict[str, list[str]]]:
    """part -> imported part -> ["module:line", ...] (self-edges left out)."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in _modules():
        source = _part(_module_name(path))
        for target, line in _imported(path):
            dest = _part(target)
            if dest is not None and dest != source:
                where = f"{path.relative_to(PACKAGE.parent)}:{line}"
                if where not in graph[source][dest]:
                    graph[source][dest].append(where)
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components of more than one part (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(set(graph) | {d for edges in graph.values() for d in edges}):
        if node not in index:
            visit(node)
    return found


def _describe(component: list[str], graph: dict[str, dict[str, list[str]]]) -> str:
    edges = [
        f"  {a} -> {b}: {', '.join(graph[a][b][:3])}"
        for a in component
        for b in component
        if b in graph.get(a, {})
    ]
    return " <-> ".join(component) + "\n" + "\n".join(edges)


def test_no_import_cycle_between_parts():
    graph = part_graph()
    found = cycles(graph)
    assert not found, "import cycles between parts of scot_data:\n" + "\n".join(
        _describe(c, graph) for c in found
    )


def test_ground_floor_imports_no_subpackage():
    graph = part_graph()
    wrong = {
        f"{low} -> {high}: {', '.join(where)}"
        for low in GROUND
        for high, where in graph.get(low, {}).items()
        if high not in GROUND
    }
    assert not wrong, "ground-floor modules import upper parts:\n" + "\n".join(sorted(wrong))


def test_scot_data_never_imports_prefect():
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for path in _modules()
        for name, line in _imported(path)
        if name == "prefect" or name.startswith("prefect.")
    ]
    assert not wrong, "Prefect belongs in flows/, not scot_data:\n" + "\n".join(wrong)


def test_the_checker_sees_a_cycle():
    graph = {"a": {"b": ["a.py:1"]}, "b": {"c": ["b.py:1"]}, "c": {"a": ["c.py:1"]}, "d": {"a": ["d.py:1"]}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert "a -> b: a.py:1" in _describe(["a", "b", "c"], graph)
