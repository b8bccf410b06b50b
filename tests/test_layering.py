"""bpcore is the maths: it must never import Prefect or MLflow. bpcore and flows each stand in layers of packages
that import only their own and those below, with no import cycle anywhere."""

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
    modules = sorted(name for name in _modules() if name.startswith("bpcore."))  # every sub-package's, rglob'd
    assert "bpcore.data.mnist.load" in modules and "bpcore.kinds" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in {sorted(FORBIDDEN)!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


# flows' packages from the bottom up: a module may import its own package and those before it, never one after
LAYERS = ["runtime", "tracking", "server", "experiments", "sweep", "deployments", "stack", "cli"]
# bpcore's the same way, one concern a layer: a sub-package, or a module that is a layer of its own (errors, kinds)
BPCORE_LAYERS = ["errors", "config", "data", "train", "kinds", "search"]


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


def _upward(graph: dict[str, set[str]], top: str, layers: list[str]) -> list[str]:
    """Each import by a module of ``top`` of a module in a later layer of ``top`` than its own (``module ->
    target``), and each module of ``top`` in no layer. A module's layer is the package or module of ``top`` that
    holds it: ``flows.sweep.flow`` is in ``sweep``."""
    layer = {f"{top}.{name}": i for i, name in enumerate(layers)}

    def place(module: str) -> int | None:
        return layer.get(".".join(module.split(".")[:2]))

    found = []
    for module, targets in graph.items():
        if not module.startswith(f"{top}."):
            continue
        here = place(module)
        if here is None:
            found.append(f"{module}: in no layer")
            continue
        found += [f"{module} -> {target}" for target in sorted(targets)
                  if target.startswith(f"{top}.") and (place(target) is None or place(target) > here)]
    return found


def _top_level(top: str) -> set[str]:
    """The packages of ``top`` and its modules that stand alone (not its ``__init__``)."""
    return {p.stem if p.is_file() else p.name for p in (REPO / top).iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}


def test_flows_packages_import_only_their_own_and_those_below():
    packages = {p.name for p in (REPO / "flows").iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)  # a new package must be given its place
    assert not _upward(_imports(_modules()), "flows", LAYERS)


def test_bpcore_layers_import_only_their_own_and_those_below():
    assert _top_level("bpcore") == set(BPCORE_LAYERS)  # a new package or module must be given its place
    assert not _upward(_imports(_modules()), "bpcore", BPCORE_LAYERS)


def test_the_layer_check_finds_an_upward_import_and_a_module_with_no_place():
    graph = {"top.low.a": {"top.high.b"}, "top.high.b": {"top.low.a"}, "top.stray": set()}
    assert _upward(graph, "top", ["low", "high"]) == ["top.low.a -> top.high.b", "top.stray: in no layer"]


def test_bpcore_packages_hold_a_docstring_only():
    """No package re-exports: a caller imports each name from the module that defines it."""
    more = []
    for path in sorted((REPO / "bpcore").rglob("__init__.py")):
        tree = ast.parse(path.read_text(), str(path))
        if ast.get_docstring(tree) is None or len(tree.body) != 1:
            more.append(str(path.relative_to(REPO)))
    assert not more



def sizes_over(root: Path, module_limit: int = 300, function_limit: int = 60) -> list[str]:
    """The modules under ``root`` longer than ``module_limit`` lines and the functions longer than ``function_limit``,
    named relative to ``root``'s parent."""
    over = []
    for path in sorted(root.rglob("*.py")):
        source, name = path.read_text(), path.relative_to(root.parent)
        if len(source.splitlines()) > module_limit:
            over.append(f"{name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            length = node.end_lineno - node.lineno + 1 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                else 0
            if length > function_limit:
                over.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    return over


def test_no_module_over_300_lines_nor_function_over_60_in_bpcore_flows_and_benchmarks():
    assert [line for package in ("bpcore", "flows", "benchmarks") for line in sizes_over(REPO / package)] == []


def test_the_size_check_finds_a_long_module_and_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "long.py").write_text("def long():\n" + body + "\n" + "\n" * 240)
    assert sizes_over(tmp_path / "pkg") == ["pkg/long.py: 302 lines", "pkg/long.py:1 long: 62 lines"]
