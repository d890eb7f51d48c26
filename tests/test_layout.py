"""The package's shape: the public API, and imports that follow the data's way (no circles, none upward).

Layers, lowest first: the shared leaves (``ntune.yamlio``, ``ntune.config``, ``ntune.labels``, ``ntune.plots``,
``ntune.console``, ``ntune.upstream``) and ``searchers``, then ``ntune.data`` -> ``ntune.learn`` -> ``ntune.study`` ->
``ntune.tune`` -> ``ntune.report`` -> ``ntune.cli``. ``python tests/test_layout.py`` prints the import
levels (longest import chain) of every module; ``--folders`` of every subpackage taken as one unit.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import ntune

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"data": 1, "learn": 2, "study": 3, "tune": 4, "report": 5, "cli": 6}


def modules() -> dict[str, Path]:
    """Every module of ntune and searchers, by dotted name (a package by its own name)."""
    out = {}
    for package in ("ntune", "searchers"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def imports() -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in the file, TYPE_CHECKING blocks included)."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        found: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def layer(module: str) -> int:
    """0 for the shared leaves and searchers, else the subpackage's place along the data's way."""
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if parts[0] == "ntune" and len(parts) > 1 else 0


def levels(graph: dict[str, set[str]]) -> dict[str, int]:
    """module -> 1 + the longest chain of imports below it (raises RecursionError on a circle)."""

    @cache
    def level(module: str) -> int:
        return 1 + max((level(m) for m in graph[module]), default=0)

    return {m: level(m) for m in graph}


def test_the_public_api_resolves_and_imports_neither_torch_nor_ray() -> None:
    assert ntune.__all__ == ["__version__", *sorted(ntune._API)]
    for name in ntune.__all__:
        assert getattr(ntune, name) is not None, name
    assert callable(ntune.fit) and callable(ntune.run) and callable(ntune.write_report)
    code = "import sys, ntune; ntune.load_config; print(sorted({'torch', 'ray'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_import_circle() -> None:
    graph = imports()
    seen: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for target in sorted(graph[module]):
            assert seen.get(target) != 1, "import circle: " + " -> ".join([*path, module, target])
            if target not in seen:
                visit(target, [*path, module])
        seen[module] = 2

    for module in sorted(graph):
        if module not in seen:
            visit(module, [])


def test_no_upward_import() -> None:
    upward = [
        f"{m} -> {t}"
        for m, targets in imports().items()
        if m not in ("ntune", "ntune.__main__")  # the public API and `python -m ntune` stand above everything
        for t in targets
        if layer(t) > layer(m)
    ]
    assert upward == []


def test_every_layer_exists_and_levels_stay_shallow() -> None:
    graph = imports()
    assert {layer(m) for m in graph} == {0, *LAYERS.values()}
    # 15 import levels before the subpackages; `python -m ntune` (ntune.__main__) is one above the CLI
    assert max(n for m, n in levels(graph).items() if m != "ntune.__main__") <= 13


def folders(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph with each subpackage of ntune, and searchers, as one unit."""

    def unit(module: str) -> str:
        parts = module.split(".")
        if parts[0] == "searchers":
            return "searchers"
        return f"ntune.{parts[1]}" if len(parts) > 1 and parts[1] in LAYERS else module

    out: dict[str, set[str]] = {}
    for module, targets in graph.items():
        out.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    return out


if __name__ == "__main__":
    graph = imports()
    found = levels(folders(graph) if "--folders" in sys.argv else graph)
    for module, n in sorted(found.items(), key=lambda kv: (kv[1], kv[0])):
        print(f"{n:3d}  {module}")
    print(f"{len(found)} units, {max(found.values())} levels")
