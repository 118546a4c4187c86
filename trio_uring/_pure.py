"""Which build of the hot path runs: mypyc-compiled extension modules, or the ``.py`` files.

``pip install`` compiles the :data:`HOT` modules with mypyc (``setup.py`` reads this
list), from the same source, into extension modules beside their ``.py`` files; Python
imports the extension first.  ``TRIO_URING_COMPILE=0`` at install time builds none.
``TRIO_URING_PURE=1`` in the environment at run time makes these modules load from
their ``.py`` files instead: a finder placed first on ``sys.meta_path`` by
``trio_uring/__init__.py`` before anything else of the package is imported (to debug,
to compare, or to run the tests on both builds).

The install records what it built, and why not more, in ``_build_record.json`` beside
this file (``setup.py``); :func:`pure_reason` reads it, ``python -m trio_uring info``
prints it, and importing trio_uring warns (``RuntimeWarning``) when the compiled build
was asked for but failed, which pip's output hides.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Final

#: The modules the install compiles: the one list, which setup.py and the Makefile read by
#: running this file as a script (so it imports only the standard library).
HOT: Final = (
    "trio_uring._core._operation",
    "trio_uring._core._manager",
    "trio_uring._core._readiness",
    "trio_uring._core._timeouts",
    "trio_uring._core._sqe",
    "trio_uring._core._trio_fast",
    "trio_uring._net._streams",
    "trio_uring._net._listener",
    "trio_uring._ops._provided",
    "trio_uring._ops._zerocopy",
    "trio_uring._ops._sockets",
    "trio_uring._net._trio_sockets",
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


#: Where ``setup.py`` records the build (beside this file).
RECORD: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_build_record.json")

#: The reason ``setup.py`` records for a pure build asked for at install time.
ASKED_PURE: Final = "TRIO_URING_COMPILE=0 at install"


def build_record() -> dict[str, str | None]:
    """What the install built, as ``setup.py`` recorded it: ``hot_path`` (``"compiled"``
    or ``"pure"``), ``hot_path_reason``, ``ring_extension`` (``"built"`` or ``"not
    built"``), ``ring_extension_reason``.  Empty if there is no record (a source tree
    that was never built, or an install older than the record)."""
    try:
        with open(RECORD, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): None if v is None else str(v) for k, v in data.items()}


def pure_reason() -> str | None:
    """Why the hot path runs from its ``.py`` files: ``TRIO_URING_PURE=1``, or the reason
    the install recorded for building no compiled hot path; ``None`` if the install
    built one (see :func:`build` for what actually runs)."""
    if os.environ.get("TRIO_URING_PURE") == "1":
        return "TRIO_URING_PURE=1"
    record = build_record()
    if record.get("hot_path") == "pure":
        return record.get("hot_path_reason") or "no reason recorded"
    return None


def _warn_if_the_build_failed() -> None:
    """Warn once per process if the install meant to compile the hot path but could
    not: pip shows a build's warnings only with ``-v``."""
    reason = pure_reason()
    if reason is None or reason in ("TRIO_URING_PURE=1", ASKED_PURE):
        return
    warnings.warn(
        f"trio_uring: pure build because {reason}. It runs correctly, with the hot path "
        "as plain Python (slower). To compile it, reinstall with a C compiler and the "
        "Python headers; to build pure on purpose (and silence this), reinstall with "
        "TRIO_URING_COMPILE=0",
        RuntimeWarning,
        stacklevel=3,
    )


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


def sources() -> list[str]:
    """The :data:`HOT` modules' source files, relative to the project's root."""
    return [name.replace(".", "/") + ".py" for name in HOT]


if __name__ == "__main__":  # the Makefile's HOT_SOURCES
    print(" ".join(sources()))
elif __name__ == "trio_uring._pure":  # (not when setup.py reads HOT with runpy)
    select()
    _warn_if_the_build_failed()
