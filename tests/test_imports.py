"""Every module of ``raagr2_monai`` imports in any order, and no module imports another that (directly or not) imports
it back: not at module level, not inside a function, not by dotted path.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` of a ``raagr2_monai`` module,
at any depth (functions, classes, ``if TYPE_CHECKING:`` blocks), relative ones resolved. ``import a.b.c`` and
``from a.b import c`` (``c`` a module) depend on ``a.b.c`` only, not on ``a.b`` (whose ``__init__`` Python also runs):
an edge to a package exists only where an import names the package itself (``from a.b import name``).

A dotted path in a string is an import too, made later: a bundle config's ``"_target_": "raagr2_monai.deploy.X"`` or
``"$raagr2_monai.bundle.checked(...)"`` makes MONAI import that package while the config runs. So every string
constant of a module (docstrings aside) that names a module of the package, or a name one defines, is an edge from
that module, and every dotted path in the shipped bundles' JSON is an edge from the generator that writes them.
"""

import ast
import json
import random
import re
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
    "deploy": 7,
    "generator": 8,
    "benchmark": 9, "study": 9, "report": 9, "federated": 9,
    "cli": 10,
}

#: The module that writes the shipped bundles' configs: the dotted paths in ``bundles/*/configs/*.json`` are its.
CONFIG_WRITER = f"{PACKAGE}.generator.configs"

_DOTTED = re.compile(rf"\b{PACKAGE}(?:\.[A-Za-z_]\w*)+")


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
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
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
    return (found | _string_references(tree)) - {name}


def _top_level_names(module: str) -> Set[str]:
    """The names a module defines or imports at its top level (what a dotted path can name in it)."""
    names = set()
    for node in ast.parse(MODULES[module].read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def resolve_dotted(path: str) -> str:
    """The module a dotted path makes Python import: the path itself when it is a module, else the longest module
    prefix whose top level defines the next part (``raagr2_monai.bundle.checked`` -> ``raagr2_monai.bundle``);
    ``""`` when it names nothing (a format name such as ``raagr2_monai.export/2``)."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        module = ".".join(parts[:end])
        if module in MODULES and module != PACKAGE:
            return module if end == len(parts) or parts[end] in _top_level_names(module) else ""
    return ""


def _string_references(tree: ast.AST) -> Set[str]:
    """The modules named by dotted paths in a module's string constants (docstrings are prose, not references)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.update(resolve_dotted(path) for path in _DOTTED.findall(node.value))
    return found - {""}


def _bundle_config_references() -> Dict[str, Set[str]]:
    """Each dotted path in the shipped bundles' JSON configs -> the configs that hold it."""
    found: Dict[str, Set[str]] = {}
    for config in sorted((REPO / "bundles").glob("*/configs/*.json")):
        for path in _DOTTED.findall(config.read_text()):
            found.setdefault(path, set()).add(str(config.relative_to(REPO)))
    return found


BUNDLE_REFERENCES = _bundle_config_references()
GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}
GRAPH[CONFIG_WRITER] |= {resolve_dotted(path) for path in BUNDLE_REFERENCES} - {""}


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
    assert GRAPH["raagr2_monai.generator.generate"] >= {"raagr2_monai.generator.configs", "raagr2_monai.generator.docs"}
    assert "raagr2_monai.report.rows" in GRAPH["raagr2_monai.report"]  # from .rows import ... in a package
    assert "raagr2_monai.study" in GRAPH["raagr2_monai.cli.commands"]  # in a function: from ..study import run_study


def test_dotted_paths_in_strings_and_bundle_configs_are_imports():
    assert resolve_dotted("raagr2_monai.bundle.checked") == "raagr2_monai.bundle"
    assert resolve_dotted("raagr2_monai.data.chains.check_roi_size") == "raagr2_monai.data.chains"
    assert resolve_dotted("raagr2_monai.data.layouts") == "raagr2_monai.data.layouts"
    assert resolve_dotted("raagr2_monai.export") == ""  # a format name, not a module or a name in one
    assert resolve_dotted("raagr2_monai.bundle.no_such_function") == ""
    # the inference config's network (torch or an exported backend), read from the JSON on disk
    assert "raagr2_monai.deploy.inference_network" in BUNDLE_REFERENCES
    assert {"raagr2_monai.deploy", "raagr2_monai.bundle"} <= GRAPH[CONFIG_WRITER]
    # a pruning run writing its bundle through the generator (as it did) closes a loop the checker must see:
    # generator configs -> (dotted path) raagr2_monai.bundle -> bundle.pruned -> generator configs
    graph = {name: set(targets) for name, targets in GRAPH.items()}
    graph["raagr2_monai.bundle.pruned"].add(CONFIG_WRITER)
    assert any(CONFIG_WRITER in cycle for cycle in _cycles(graph))


def test_every_dotted_path_in_the_bundle_configs_names_something():
    unresolved = {path: sorted(configs) for path, configs in BUNDLE_REFERENCES.items() if not resolve_dotted(path)}
    assert not unresolved, f"dotted paths in bundle configs that name nothing: {unresolved}"


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
