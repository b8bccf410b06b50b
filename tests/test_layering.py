"""bpcore is the maths: it must never import Prefect or MLflow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from support import REPO

FORBIDDEN = {"prefect", "mlflow"}


def test_bpcore_sources_import_neither_prefect_nor_mlflow():
    offenders = []
    for path in sorted((REPO / "bpcore").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders


def test_importing_every_bpcore_module_loads_neither():
    modules = sorted(p.stem for p in (REPO / "bpcore").glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module('bpcore.' + m)\n"
        f"print(sorted(m for m in {sorted(FORBIDDEN)!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


# flows' packages from the bottom up: a module may import its own package and those before it, never one after
LAYERS = ["runtime", "tracking", "server", "experiments", "sweep", "deployments", "stack", "cli"]


def _modules() -> dict[str, Path]:
    """Every module of bpcore and flows by dotted name (a package by its own name)."""
    found = {}
    for top in ("bpcore", "flows"):
        for path in (REPO / top).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of bpcore and flows it imports anywhere in its text, function bodies included."""
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                            for a in node.names}
        resolved = set()
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                resolved.add(target)
        graph[name] = resolved
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_bpcore_and_flows_have_no_import_cycle_even_through_function_level_imports():
    assert _cycle(_imports(_modules())) is None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_flows_packages_import_only_their_own_and_those_below():
    graph = _imports(_modules())
    layer = {f"flows.{package}": i for i, package in enumerate(LAYERS)}
    packages = {p.name for p in (REPO / "flows").iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)  # a new package must be given its place
    upward = []
    for module, targets in graph.items():
        if module.count(".") < 2 or not module.startswith("flows."):
            continue
        here = layer[".".join(module.split(".")[:2])]
        for target in targets:
            if target.startswith("flows.") and layer[".".join(target.split(".")[:2])] > here:
                upward.append(f"{module} -> {target}")
    assert not upward
