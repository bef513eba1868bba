"""The package's import graph: no cycle between modules, imports inside functions counted too."""

from __future__ import annotations

import ast
from pathlib import Path

from checkout import REPO

PACKAGE = REPO / "src" / "finsent"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``module -> finsent modules it imports``, every import statement (module top and function bodies)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}

    def owner(name: str) -> str | None:  # "finsent.core.labels.SCHEMES" -> "finsent.core.labels"
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path}: relative import (finsent imports are absolute)")
            if isinstance(node, ast.ImportFrom) and node.module:
                targets |= {owner(f"{node.module}.{a.name}") or owner(node.module) for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {owner(a.name) for a in node.names}
        graph[name] = {t for t in targets if t and t.startswith("finsent") and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 50 and "finsent.core.classify" in graph["finsent.evaluation.runs"]  # the graph is read
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_through_a_function_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
