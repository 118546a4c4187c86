"""The public face of the compiled hot path: real coroutine functions, docstrings, signatures.

mypyc compiles an ``async def`` into a function that returns a generator-like
object, not a coroutine: a forgotten ``await`` would then be silent (no
"coroutine ... was never awaited"), ``nursery.start_soon(f())`` would not get trio's
``TypeError``, ``inspect.iscoroutinefunction`` would answer False, and the
compiled objects have neither their docstrings nor their annotated signatures.
So in a compiled build every public object of a hot module (what
``trio_uring.__all__`` and ``trio_uring.lowlevel.__all__`` reach, and the public
methods of those classes) is replaced by a plain-Python one made from its own
source: an ``async def`` (or ``def``, or property) with the source's signature and
docstring whose body calls the compiled one (``return await body(...)``), and
each class gets its docstring and signature back.  The speed stays in the
compiled body; the cost is one Python coroutine frame per call (docs/performance.rst,
"Public coroutines over compiled bodies").

The plain-Python objects are generated from the hot modules' source into
``_public_generated.py`` (``python tools/gen_public.py``; a test checks it is
current, as trio checks its generated code).  A hot module calls :func:`dress`
with its own name at its end; in the pure build (its ``.py`` file runs) that does
nothing, the source objects being the real ones.

KeyboardInterrupt protection: a compiled body given to ``_trio_compat.ki_protect``
has no frame to protect, so the coroutine function that calls it is protected in
its place (its frame is the one a signal handler finds above whatever Python code
the body calls), which is what the pure build's protected frame gives.
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any

from ._trio_compat import ki_protect, ki_protected


def _resolve(owner: Any, qualname: str) -> Any:
    for part in qualname.split("."):
        owner = getattr(owner, part)
    return owner


def dress(module_name: str) -> None:
    """Give the compiled module ``module_name`` its public objects (see the module
    docstring); nothing if it runs from its ``.py`` file."""
    module = sys.modules[module_name]
    if (getattr(module, "__file__", None) or "").endswith(".py"):
        return
    from . import _public_generated as generated

    classes: dict[str, tuple[str | None, Any, bool]] = generated.CLASSES.get(module_name, {})
    for qualname, (doc, stub, made_by_attrs) in classes.items():
        cls = _resolve(module, qualname)
        cls.__doc__ = doc
        if stub is not None:
            signature = inspect.signature(stub)
            if made_by_attrs:  # (attrs writes ``-> None`` as the object, not a string)
                signature = signature.replace(return_annotation=None)
            cls.__signature__ = signature
    members: dict[str, Any] = generated.MEMBERS.get(module_name, {})
    for qualname, make in members.items():
        owner_name, _, name = qualname.rpartition(".")
        owner = _resolve(module, owner_name) if owner_name else module
        body = vars(owner)[name]
        made = make(body)
        function: Any = made.fget if isinstance(made, property) else made
        function.__module__ = module_name
        function.__qualname__ = qualname
        if ki_protected(body):
            ki_protect(function)
        setattr(owner, name, made)


def like_trio(cls: type, names: tuple[str, ...]) -> None:
    """Make ``cls``'s methods ``names``, which stand in for those of its trio base
    class, look like trio's (in every build): trio's name, qualified name (so a
    coroutine's repr, the never-awaited warning and trio's ``start_soon`` error read
    as trio's), docstring, and signature (through ``__wrapped__``, as trio's own
    wrappers give theirs)."""
    base = cls.__mro__[1]
    for name in names:
        functools.update_wrapper(vars(cls)[name], getattr(base, name))


#: Where each object :func:`fixup_module_metadata` gave a public ``__module__`` was
#: defined (by ``id``): ``tools/gen_public.py`` reads it (see :func:`defined_in`).
_DEFINED_IN: dict[int, str] = {}


def defined_in(obj: Any) -> str | None:
    """The module that defines ``obj``, also after :func:`fixup_module_metadata`."""
    return _DEFINED_IN.get(id(obj), getattr(obj, "__module__", None))


def fixup_module_metadata(
    module_name: str, namespace: dict[str, Any], keep: tuple[str, ...] = ()
) -> None:
    """Make the public objects of ``namespace`` (the names of its ``__all__``) and their
    methods show ``module_name`` as their ``__module__``, as trio's
    ``fixup_module_metadata`` makes ``trio.SocketStream`` say ``trio``: reprs, tracebacks,
    ``help()`` and the docs then name the public path, and pickling by reference finds
    it there.  Only objects of a private ``trio_uring._...`` module are changed (the
    methods that stand in for trio's keep trio's module, see :func:`like_trio`); objects
    whose ``__module__`` cannot be set (compiled methods) keep theirs, and so do the
    names in ``keep``."""
    seen: set[int] = set()

    def fix(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        module = getattr(obj, "__module__", None)
        if not isinstance(module, str) or not module.startswith("trio_uring._"):
            return
        try:
            obj.__module__ = module_name
        except (AttributeError, TypeError):
            return
        _DEFINED_IN[id(obj)] = module
        if isinstance(obj, type):
            for value in list(vars(obj).values()):
                if isinstance(value, property):
                    value = value.fget
                elif isinstance(value, (classmethod, staticmethod)):
                    value = value.__func__
                if callable(value):
                    fix(value)

    for name in namespace.get("__all__", ()):
        if name not in keep:
            fix(namespace[name])
