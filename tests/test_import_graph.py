"""The import graph of ``trio_uring._core``: no circle, and nothing above ``_core`` imported.

Read from the source (the ``ast``), so it holds for both builds.  Imports under
``if TYPE_CHECKING:`` are annotations only and do not count; imports inside
functions do.
"""

from __future__ import annotations

import ast
import runpy
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "trio_uring"
CORE = PACKAGE / "_core"

#: ``_core``'s modules, lowest first: each imports (at run time) only modules before it.
CORE_LAYERS = (
    "_constants",
    "_kernels",
    "_fingerprint",
    "_trio_fingerprints",
    "_build_ring",
    "_ring_cffi",
    "_ring",
    "_trio_compat",
    "_public_generated",
    "_public",
    "_trio_fast",
    "_sqe",
    "_operation",
    "_readiness",
    "_shutdown",
    "_manager",
)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str) -> set[str]:
    """Absolute names of the modules ``tree`` (the module ``module``) imports at run time."""
    package = module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            for alias in node.names:  # ``from . import _sqe`` imports a module
                found.add(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def core_graph() -> dict[str, set[str]]:
    """``_core`` module -> the ``trio_uring`` modules it imports at run time."""
    graph: dict[str, set[str]] = {}
    for path in sorted(CORE.glob("*.py")):
        name = f"trio_uring._core.{path.stem}"
        if path.stem == "__init__":
            name = "trio_uring._core"
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = {
            imported
            for imported in _imports(tree, name if path.stem != "__init__" else name + ".x")
            if imported.startswith("trio_uring") and imported != name
        }
    return graph


def test_core_imports_nothing_above_it() -> None:
    above = {
        module: sorted(i for i in imported if not i.startswith("trio_uring._core"))
        for module, imported in core_graph().items()
    }
    assert {m: i for m, i in above.items() if i} == {}


def test_core_modules_import_only_lower_layers() -> None:
    rank = {f"trio_uring._core.{name}": n for n, name in enumerate(CORE_LAYERS)}
    graph = core_graph()
    assert set(graph) - {"trio_uring._core"} <= set(rank), "a new _core module: add it to the list"
    upward = sorted(
        f"{module} imports {imported}"
        for module, imports in graph.items()
        if module in rank
        for imported in imports
        if imported in rank and rank[imported] >= rank[module]
    )
    assert upward == []


def test_core_has_no_import_circle() -> None:
    graph = core_graph()
    done: set[str] = set()

    def walk(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for imported in graph.get(module, ()):
            walk(imported, (*path, module))
        done.add(module)

    for module in graph:
        walk(module, ())


#: Modules allowed past ~600 lines, with the reason (docs/contributing.rst says it too).
LONG_MODULES = {
    # trio's I/O manager protocol, the one submit/withdraw, and still the linked
    # timeouts and the statistics (those two could move out next), and the
    # docstrings every public method of trio's I/O manager protocol carries.
    "_manager.py": 940,
}


def test_no_core_module_is_too_long() -> None:
    """~600 lines at most, except the modules listed with their reason."""
    long = {
        path.name: n
        for path in CORE.glob("*.py")
        if (n := len(path.read_text().splitlines())) > LONG_MODULES.get(path.name, 620)
    }
    assert long == {}


def test_one_hot_list_read_by_running_pure() -> None:
    """setup.py and the Makefile run trio_uring/_pure.py to read HOT: with the standard
    library only, printing source files that exist."""
    from trio_uring._pure import HOT

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-I", "-S", "trio_uring/_pure.py"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [name.replace(".", "/") + ".py" for name in HOT]
    assert all((root / path).is_file() for path in out)
    assert tuple(runpy.run_path(str(root / "trio_uring" / "_pure.py"))["HOT"]) == HOT
