"""The import graph of ``trio_uring``: layers (``_core`` < ``_ops`` < ``_files``/``_net`` <
``_run`` < the public surface < entry points), no arrow running back up, no circle.

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
    "_statistics",
    "_timeouts",
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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_graph() -> dict[str, set[str]]:
    """Every ``trio_uring`` module -> the ``trio_uring`` modules it imports at run time
    (``from x import name`` counts as importing ``x.name`` if that is a module, else ``x``)."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(path) for path in paths} | {"trio_uring._core._ring_cffi"}
    graph: dict[str, set[str]] = {}
    for path in paths:
        name = _module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        found = _imports(tree, name + ".x" if path.stem == "__init__" else name)
        graph[name] = set()
        for imported in found:
            while imported not in modules and "." in imported:
                imported = imported.rpartition(".")[0]
            if imported.startswith("trio_uring") and imported != name:
                graph[name].add(imported)
        # ``from .. import _pure`` also yields the bare package: not an import of its
        # ``__init__`` unless a name of the package itself is imported.
        if "trio_uring" in graph[name] and not _imports_package_names(tree, name):
            graph[name].discard("trio_uring")
    return graph


def _imports_package_names(tree: ast.AST, module: str) -> bool:
    """Whether ``tree`` imports ``trio_uring`` itself (``import trio_uring``, or ``from
    trio_uring import x`` / ``from .. import x`` with ``x`` not a submodule)."""
    submodules = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir() if p.is_dir()
    }
    depth = module.count(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "trio_uring" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom):
            absolute = node.module == "trio_uring" and not node.level
            relative = node.level == depth and not node.module
            if (absolute or relative) and any(a.name not in submodules for a in node.names):
                return True
    return False


#: The layers of the package, lowest first: a module imports (at run time) modules of
#: its own layer and lower ones only.  ``_files`` and ``_net`` share a rank but do not
#: import each other (the entry points may).  ``_pure`` uses the standard library only (setup.py runs it).
LAYERS = {
    "trio_uring._pure": 0,
    "trio_uring._core": 1,
    "trio_uring._ops": 2,
    "trio_uring._files": 3,
    "trio_uring._net": 3,
    "trio_uring._run": 4,
    "trio_uring": 5,  # the public surface: __init__.py and lowlevel.py
    "trio_uring.lowlevel": 5,
    "trio_uring.__main__": 6,  # entry points: python -m, the benchmarks, site start-up
    "trio_uring.bench": 6,
    "trio_uring._site": 6,
}


def _layer(module: str) -> str:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    raise AssertionError(f"{module}: a new top-level module or package, add it to LAYERS")


def test_package_imports_follow_the_layers() -> None:
    upward = sorted(
        f"{module} imports {imported}"
        for module, imports in package_graph().items()
        for imported in imports
        if LAYERS[_layer(imported)] > LAYERS[_layer(module)]
        or (
            LAYERS[_layer(imported)] == LAYERS[_layer(module)] == LAYERS["trio_uring._net"]
            and _layer(imported) != _layer(module)
        )
    )
    assert upward == []


def test_package_has_no_import_circle() -> None:
    """No circle between modules, also through imports inside functions (a package's
    ``__init__`` importing its own modules does not count)."""
    graph = {
        module: {i for i in imports if not (module.startswith(i + ".") or i == module)}
        for module, imports in package_graph().items()
    }
    done: set[str] = set()

    def walk(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            walk(imported, (*path, module))
        done.add(module)

    for module in sorted(graph):
        walk(module, ())


def test_send_file_reaches_no_stream_internals() -> None:
    """``_net/_sendfile.py`` works through what ``SocketStream`` offers: it imports
    nothing of ``_streams`` (no arrow back up) and names no private stream member."""
    assert "trio_uring._net._streams" not in package_graph()["trio_uring._net._sendfile"]
    source = (PACKAGE / "_net" / "_sendfile.py").read_text()
    assert "stream._" not in source


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


#: Modules allowed past ~600 lines (by path in the package), with the reason
#: (docs/contributing.rst says it too).
LONG_MODULES = {
    # SocketStream: trio's HalfCloseableStream with its receive queue, multishot receive
    # and zero-copy send, one class whose hot paths inline their helpers (each call
    # more per message shows in make bench-instr), and trio's docstrings.
    "_net/_streams.py": 1080,
    # Generated (tools/gen_public.py): one maker per public object of the hot modules.
    "_core/_public_generated.py": 700,
    # trio's I/O manager protocol, the one submit (with its inlined SQE writes: the hot
    # path of every operation) and withdraw, and the docstrings every public method
    # of trio's I/O manager protocol carries.
    "_core/_manager.py": 840,
}


def test_no_module_is_too_long() -> None:
    """~600 lines at most, except the modules listed with their reason."""
    long = {
        name: n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines()))
        > LONG_MODULES.get(name := path.relative_to(PACKAGE).as_posix(), 620)
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
