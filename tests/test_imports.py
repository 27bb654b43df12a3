"""Every module of ``raagr2_monai`` imports in any order, and no module imports another that (directly or not) imports
it back: not at module level, not inside a function.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` of a ``raagr2_monai`` module,
at any depth (functions, classes, ``if TYPE_CHECKING:`` blocks), relative ones resolved. ``import a.b.c`` and
``from a.b import c`` (``c`` a module) depend on ``a.b.c`` only, not on ``a.b`` (whose ``__init__`` Python also runs):
an edge to a package exists only where an import names the package itself (``from a.b import name``).
"""

import ast
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set


REPO = Path(__file__).resolve().parents[1]
PACKAGE = "raagr2_monai"

#: The layering rule of the package (lower never imports higher): sub-package -> layer.
LAYERS = {
    "constants": 0, "utils": 0,
    "networks": 1, "losses": 1, "schedules": 1,
    "data": 2,
    "metrics": 3,
    "pruning": 4, "visualize": 4,
    "handlers": 5,
    "bundle": 6,
    "benchmark": 7, "study": 7, "report": 7, "deploy": 7,
    "cli": 8,
}


def _modules() -> Dict[str, Path]:
    """Module name -> file, for every module of the package (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Set[str]:
    """The package's modules that ``name`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    unknown = sorted(m for m in found if m not in MODULES)
    assert not unknown, f"{path} imports {unknown}, which are not modules of {PACKAGE}"
    return found - {name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle (as a closed path) per strongly connected component that has one (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_through(graph, set(c)) for c in components]


def _path_through(graph: Dict[str, Set[str]], component: Set[str]) -> List[str]:
    """A closed path inside a strongly connected component, from its first member back to it (breadth first)."""
    start = min(component)
    previous = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                chain = [node]
                while previous[chain[-1]] is not None:
                    chain.append(previous[chain[-1]])
                return chain[::-1] + [start]
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"no cycle through {sorted(component)}")


def _show(cycles: List[List[str]]) -> str:
    return "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_checker_finds_cycles_and_resolves_relative_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d2"}, "d2": set()}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert GRAPH["raagr2_monai.bundle.generate"] >= {"raagr2_monai.bundle.configs", "raagr2_monai.bundle.docs"}
    assert "raagr2_monai.report.rows" in GRAPH["raagr2_monai.report"]  # from .rows import ... in a package
    assert "raagr2_monai.study" in GRAPH["raagr2_monai.cli.commands"]  # in a function: from ..study import run_study


def test_no_module_import_cycle():
    cycles = _cycles(GRAPH)
    assert not cycles, "import cycles between modules:\n" + _show(cycles)


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_sub_packages_respect_the_layers_and_form_no_cycle():
    unknown = sorted({_subpackage(m) for m in MODULES} - set(LAYERS) - {""})
    assert not unknown, f"place the new sub-package(s) {unknown} in LAYERS (and in the README's layout section)"
    upward = [
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in sorted(targets)
        if _subpackage(module) and _subpackage(target) and LAYERS[_subpackage(target)] > LAYERS[_subpackage(module)]
    ]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)
    packages: Dict[str, Set[str]] = {}
    for module, targets in GRAPH.items():
        source = _subpackage(module)
        packages.setdefault(source, set()).update(_subpackage(t) for t in targets if _subpackage(t) != source)
    cycles = _cycles(packages)
    assert not cycles, "sub-packages importing each other:\n" + _show(cycles)


def _orders() -> List[List[str]]:
    """Each module first (the others after it, sorted), all sorted, all reversed, and three shuffles."""
    names = sorted(MODULES)
    orders = [[first] + [n for n in names if n != first] for first in names] + [names, names[::-1]]
    for seed in range(3):
        shuffled = list(names)
        random.Random(seed).shuffle(shuffled)
        orders.append(shuffled)
    return orders


# One fresh interpreter imports the modules in every order; between two orders it forgets every module of the package
# (torch and MONAI stay loaded, so an order costs a fraction of a second instead of a new interpreter's start).
_IMPORT_IN_ORDERS = """
import importlib, json, sys
for order in json.load(sys.stdin):
    for loaded in [m for m in sys.modules if m == "raagr2_monai" or m.startswith("raagr2_monai.")]:
        del sys.modules[loaded]
    for name in order:
        try:
            importlib.import_module(name)
        except BaseException:
            print("importing in the order", order, "failed at", name, file=sys.stderr)
            raise
"""


def test_every_module_imports_in_any_order():
    orders = _orders()
    assert len(orders) == len(MODULES) + 5
    run = subprocess.run([sys.executable, "-c", _IMPORT_IN_ORDERS], input=json.dumps(orders), cwd=REPO,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]


def test_module_file_names_are_unique():
    """Two modules of one name in different sub-packages (``progress.py`` three times, once) make a reader open the
    wrong one; the layout names each file once."""
    names = [p.name for p in (REPO / "raagr2_monai").rglob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
