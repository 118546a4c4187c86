"""Fingerprints of the trio code that trio_uring mirrors (``_trio_compat.TRIO_MIRRORS``).

Standard library only, and importable by path (``tools/record_trio_fingerprints.py``
loads this file into any Python, with any trio, without importing trio_uring).

A fingerprint is the SHA-256 of what a function's code object says it does, without
its bytecode: its argument counts and kind (generator, coroutine, ``*args``), the names
it reads and writes (``co_names``), its local, free and cell variable names, and its
constants, with nested code objects (comprehensions, inner functions, lambdas)
fingerprinted the same way, recursively.  The docstring, line numbers, positions and
the bytecode itself are left out: a trio release that only re-words a docstring or
moves a function keeps its fingerprint, and so does a Python patch release (its
compiler keeps the names and constants of a code object).  A Python *minor* release
may compile the same source to other names (3.12 inlines comprehensions, renames
``super`` calls...), so fingerprints are recorded per Python minor.

Targets are spelt ``"module:qualified.name"``; a trailing ``.__slots__`` names a
class's slot layout (the ``__slots__`` of every class in its MRO, in order), which is
what reading a field at its slot offset depends on.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import types
from typing import Any

#: The ``co_flags`` bits that change what a code object is (not how it was compiled).
_KIND_FLAGS = (
    inspect.CO_VARARGS
    | inspect.CO_VARKEYWORDS
    | inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ITERABLE_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
)


def resolve(target: str) -> Any:
    """The object ``target`` (``"module:qualified.name"``) names; ``AttributeError`` or
    ``ImportError`` if it is gone.  A property resolves to its getter, a staticmethod or
    classmethod to its function, ``Class.__slots__`` to the class's slot layout."""
    module_name, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    parts = qualname.split(".")
    if parts[-1] == "__slots__":
        for part in parts[:-1]:
            obj = getattr(obj, part)
        if not isinstance(obj, type):
            raise AttributeError(f"{target}: not a class")
        return _SlotLayout(obj)
    owner: Any = None
    for part in parts:
        owner = obj
        obj = inspect.getattr_static(obj, part) if isinstance(owner, type) else getattr(obj, part)
    if isinstance(obj, property):
        obj = obj.fget
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    return obj


class _SlotLayout:
    """A class's slot fields, for :func:`fingerprint`."""

    def __init__(self, cls: type) -> None:
        self.layout = tuple(
            (klass.__qualname__, tuple(_slot_names(klass))) for klass in cls.__mro__
        )


def _slot_names(klass: type) -> list[str]:
    slots = klass.__dict__.get("__slots__", ())
    return [slots] if isinstance(slots, str) else list(slots)


def _const(value: object) -> object:
    """A constant as a stable, hashable description (code objects recursively)."""
    if isinstance(value, types.CodeType):
        return ("code", _code_key(value, None))
    if isinstance(value, tuple):
        return ("tuple", tuple(_const(item) for item in value))
    if isinstance(value, frozenset):  # its order depends on string hashing: sort it
        return ("frozenset", tuple(sorted(repr(_const(item)) for item in value)))
    return (type(value).__name__, repr(value))


def _code_key(code: types.CodeType, doc: str | None) -> tuple[object, ...]:
    consts = list(code.co_consts)
    if doc is not None and consts and consts[0] == doc:
        del consts[0]  # the docstring: re-wording it changes nothing
    return (
        code.co_name,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags & _KIND_FLAGS,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        tuple(_const(value) for value in consts),
    )


def fingerprint(obj: Any) -> str:
    """The fingerprint (64 hex digits) of a function, a class's slot layout from
    :func:`resolve`, or a class (every function, property and slot layout in its own
    ``__dict__``, by name).  ``TypeError`` for anything else."""
    return hashlib.sha256(repr(_key(obj)).encode()).hexdigest()


def _key(obj: Any) -> object:
    if isinstance(obj, _SlotLayout):
        return ("slots", obj.layout)
    if isinstance(obj, type):
        members = []
        for name, value in sorted(vars(obj).items()):
            if isinstance(value, property):
                value = value.fget
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, types.FunctionType):
                members.append((name, _key(value)))
        return ("class", obj.__qualname__, tuple(_slot_names(obj)), tuple(members))
    code = getattr(inspect.unwrap(obj), "__code__", None)
    if not isinstance(code, types.CodeType):
        raise TypeError(f"no code to fingerprint in {obj!r}")
    return ("function", _code_key(code, getattr(obj, "__doc__", None)))


def fingerprint_target(target: str) -> str:
    """:func:`fingerprint` of :func:`resolve` ``(target)``; ``"missing"`` if it is gone."""
    try:
        return fingerprint(resolve(target))
    except (ImportError, AttributeError, TypeError):
        return "missing"
