"""The packages form stairs that go one way, and no module imports another that imports it back.

capture < models < train < demos < bench: a module may import its own package and lower ones only,
at module level and inside functions alike (a function-level import is still an import). Read from
the source with `ast`, so nothing is imported to check it.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("capture", "models", "train", "demos", "bench")  # lowest first
RANK = {name: i for i, name in enumerate(LAYERS)}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """{dotted module name: source path} of every module in the layered packages."""
    return {_module_name(p): p for layer in LAYERS for p in sorted((ROOT / layer).rglob("*.py"))}


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of `from .target import ...` written in `module` (`level` dots)."""
    base = module.split(".")
    if not is_package:
        base = base[:-1]  # a module's own package is one dot
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def imported_names(module: str, path: Path) -> list[tuple[str, int]]:
    """(absolute imported name, line) for every import statement anywhere in the file.

    `from a.b import c` yields "a.b.c" (c may be a submodule; the caller walks up to the deepest
    name that is a module, so a function or class c counts as an import of a.b).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            found += [(f"{base}.{alias.name}" if alias.name != "*" else base, node.lineno) for alias in node.names]
    return found


def module_graph() -> dict[str, dict[str, int]]:
    """{module: {project module it imports: first line}}; edges point from importer to imported."""
    modules = project_modules()
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for name, line in imported_names(module, path):
            # `import models.store` also imports `models`; the module named is the deepest one that exists.
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                edges.setdefault(name, line)
        graph[module] = edges
    return graph


def _layer(module: str) -> str:
    return module.split(".")[0]


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    out = []
    for module, edges in graph.items():
        for target, line in edges.items():
            if RANK[_layer(target)] > RANK[_layer(module)]:
                out.append(f"{module} (line {line}) imports {target}: {_layer(module)} is below {_layer(target)}")
    return sorted(out)


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every strongly connected group of modules larger than one (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups)


def _describe_cycle(group: list[str], graph: dict[str, dict[str, int]]) -> str:
    members = set(group)
    edges = [f"{a}:{line} -> {b}" for a in group for b, line in sorted(graph[a].items()) if b in members]
    return "loop among " + ", ".join(group) + " (" + "; ".join(edges) + ")"


# --- the checker checks itself on a made-up tree, so a broken parser cannot pass silently -------------


def test_checker_finds_function_level_relative_and_plain_imports(tmp_path, monkeypatch):
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
        (tmp_path / layer / "__init__.py").write_text("")
    (tmp_path / "capture" / "low.py").write_text("def f():\n    import train.high\n")
    (tmp_path / "train" / "high.py").write_text("from . import other\n")
    (tmp_path / "train" / "other.py").write_text("def g():\n    from train.high import x\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    graph = module_graph()
    assert graph["capture.low"] == {"train.high": 2}
    assert graph["train.high"] == {"train.other": 1}
    assert graph["train.other"] == {"train.high": 2}
    assert upward_imports(graph) == ["capture.low (line 2) imports train.high: capture is below train"]
    assert import_cycles(graph) == [["train.high", "train.other"]]


def test_every_package_exists():
    for layer in LAYERS:
        assert (ROOT / layer).is_dir(), layer


def test_no_upward_imports():
    offenders = upward_imports(module_graph())
    assert not offenders, "imports that point up the stairs " + " < ".join(LAYERS) + ":\n" + "\n".join(offenders)


def test_no_import_loops():
    graph = module_graph()
    loops = [_describe_cycle(g, graph) for g in import_cycles(graph)]
    assert not loops, "modules that import each other (directly or round a loop):\n" + "\n".join(loops)


if __name__ == "__main__":  # a quick report: python tests/test_layers.py
    g = module_graph()
    print("\n".join(upward_imports(g)) or "no upward imports")
    print("\n".join(_describe_cycle(c, g) for c in import_cycles(g)) or "no import loops")
    pytest.main([__file__, "-q"])
