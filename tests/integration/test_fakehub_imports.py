"""The fake GitHub's modules import one way: resources under the model, routes over it, the hub on top."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "agentz_app" / "fakehub"
PREFIX = "agentz_app.fakehub"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text("utf-8")) for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(node: ast.Import | ast.ImportFrom, modules: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in modules}
    base = node.module or ""
    found = {base} if base in modules else set()
    found |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
    return found


def _graph() -> dict[str, set[str]]:
    sources = _sources()
    modules = set(sources)
    return {name: set().union(*(_imported(n, modules) for n in ast.walk(tree)
                                if isinstance(n, ast.Import | ast.ImportFrom)))
            for name, tree in sources.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name):], name]
        if name in done:
            return None
        for target in sorted(graph.get(name, ())):
            found = visit(target, [*path, name])
            if found:
                return found
        done.add(name)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def test_fakehub_modules_import_each_other_without_a_cycle() -> None:
    graph = _graph()
    graph.pop(PREFIX, None)  # the package re-exports FakeHub; its modules never import it
    assert _cycle(graph) is None


def test_fakehub_has_no_import_inside_a_function() -> None:
    hidden = []
    for name, tree in _sources().items():
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                hidden += [f"{name}.{func.name}" for n in ast.walk(func) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert hidden == []


def test_fakehub_resources_know_neither_http_nor_the_hub() -> None:
    graph = _graph()
    above = {f"{PREFIX}.hub", f"{PREFIX}.model", f"{PREFIX}.server"}
    for name, targets in graph.items():
        if name.startswith(f"{PREFIX}.resources") or name == f"{PREFIX}.core":
            assert not targets & above, name
            assert not any(t.startswith(f"{PREFIX}.routes") for t in targets), name
        if name.startswith(f"{PREFIX}.routes") or name == f"{PREFIX}.server":
            assert f"{PREFIX}.hub" not in targets, name
