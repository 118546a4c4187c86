"""Which build of the hot path runs: mypyc-compiled extension modules, or the ``.py`` files.

``pip install`` compiles the :data:`HOT` modules with mypyc (``setup.py`` reads this
list), from the same source, into extension modules beside their ``.py`` files; Python
imports the extension first.  ``TRIO_URING_COMPILE=0`` at install time builds none.
``TRIO_URING_PURE=1`` in the environment at run time makes these modules load from
their ``.py`` files instead: a finder placed first on ``sys.meta_path`` by
``trio_uring/__init__.py`` before anything else of the package is imported (to debug,
to compare, or to run the tests on both builds).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Final

#: The modules the install compiles: the one list, which setup.py and the Makefile read by
#: running this file as a script (so it imports only the standard library).
HOT: Final = (
    "trio_uring._core._operation",
    "trio_uring._core._manager",
    "trio_uring._core._readiness",
    "trio_uring._core._sqe",
    "trio_uring._core._trio_fast",
    "trio_uring._streams",
    "trio_uring._ops._provided",
    "trio_uring._ops._zerocopy",
    "trio_uring._ops._sockets",
    "trio_uring._trio_sockets",
)


class _PureFinder:
    """Finds the ``.py`` file of a :data:`HOT` module, never its extension."""

    @classmethod
    def find_spec(
        cls, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in HOT or not path:
            return None
        leaf = name.rpartition(".")[2]
        for entry in path:
            source = os.path.join(entry, leaf + ".py")
            if os.path.exists(source):
                loader = importlib.machinery.SourceFileLoader(name, source)
                return importlib.util.spec_from_file_location(name, source, loader=loader)
        return None


def select() -> None:
    """Honour ``TRIO_URING_PURE=1`` (called before any hot module is imported)."""
    if os.environ.get("TRIO_URING_PURE") == "1" and _PureFinder not in sys.meta_path:
        sys.meta_path.insert(0, _PureFinder)


def build() -> str:
    """``"compiled"`` if every hot module runs compiled, ``"pure"`` if every one runs
    from its ``.py`` file, ``"mixed (...)"`` otherwise; a compiled module older than
    its ``.py`` file in a source checkout (edited since the install: re-run ``pip install
    -e .``) is named."""
    kinds = {}
    stale = []
    # (Staleness only means something in a source checkout, an editable install: an
    # installed wheel's file times are the archive's.)
    here = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.exists(os.path.join(os.path.dirname(here), "setup.py"))
    for name in HOT:
        module = sys.modules.get(name) or __import__(name, fromlist=["_"])
        file = getattr(module, "__file__", "") or ""
        if file.endswith(".py"):
            kinds[name] = "pure"
            continue
        kinds[name] = "compiled"
        group = sys.modules.get("trio_uring._hot__mypyc")  # the code; `file` is a shim
        if not checkout or group is None or not group.__file__:
            continue
        # (from the name: a mypyc shim's __file__ repeats the package directory)
        source = os.path.join(os.path.dirname(here), *name.split(".")) + ".py"
        try:
            if os.path.getmtime(source) > os.path.getmtime(group.__file__):
                stale.append(name.rpartition(".")[2])
        except OSError:
            pass
    found = set(kinds.values())
    if len(found) == 1:
        result = found.pop()
    else:
        result = (
            "mixed (" + ", ".join(f"{n.rpartition('.')[2]}: {k}" for n, k in kinds.items()) + ")"
        )
    if stale:
        edited = ", ".join(f"{leaf}.py" for leaf in stale)
        result += f" [stale: {edited} edited after the build: reinstall]"
    return result


select()


def sources() -> list[str]:
    """The :data:`HOT` modules' source files, relative to the project's root."""
    return [name.replace(".", "/") + ".py" for name in HOT]


if __name__ == "__main__":  # the Makefile's HOT_SOURCES
    print(" ".join(sources()))
