"""What a user sees of every public callable: kind, signature, docstring (in either build).

``python tests/_public_api.py`` prints it as JSON: ``tests/test_coroutine_api.py``
runs that under ``TRIO_URING_PURE=1`` (the source's own objects) and compares the
compiled build's view with it.
"""

from __future__ import annotations

import inspect
import json
import types
from typing import Any

import trio_uring
import trio_uring.lowlevel


def genuine_coroutine_function(fn: Any) -> bool:
    """A real ``async def`` (a Python function whose code is a coroutine's): calling it
    makes a coroutine object, with everything Python and trio do for one."""
    fn = getattr(fn, "__func__", fn)
    return type(fn) is types.FunctionType and bool(fn.__code__.co_flags & inspect.CO_COROUTINE)


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (ValueError, TypeError) as exc:
        return type(exc).__name__


def ki_protected(obj: Any) -> bool | None:
    """Whether trio runs ``obj``'s frames KeyboardInterrupt-protected (None: no code
    of its own, e.g. a compiled function).  (trio's private table of protected code.)"""
    from trio._core import _ki

    code = getattr(getattr(obj, "__func__", obj), "__code__", None)
    if not isinstance(code, types.CodeType):
        return None
    try:
        return bool(_ki._CODE_KI_PROTECTION_STATUS_WMAP[code])
    except KeyError:
        return False


def describe(obj: Any) -> dict[str, Any]:
    return {
        "ki_protected": ki_protected(obj),
        "coroutine function": genuine_coroutine_function(obj),
        "iscoroutinefunction": inspect.iscoroutinefunction(obj),
        "signature": _signature(obj),
        "doc": obj.__doc__,
        "module": getattr(obj, "__module__", None),
    }


def public_api() -> dict[str, dict[str, Any]]:
    """Every name in ``trio_uring.__all__`` and ``trio_uring.lowlevel.__all__`` that is a
    class or callable, and every public attribute (methods, properties, inherited
    ones too) of those classes, described by :func:`describe`."""
    found: dict[str, dict[str, Any]] = {}
    for package in (trio_uring, trio_uring.lowlevel):
        for name in package.__all__:
            obj = getattr(package, name)
            path = f"{package.__name__}.{name}"
            if not callable(obj) or type(obj).__module__ == "typing":
                continue  # (a type alias such as ZeroCopyPolicy)
            found[path] = describe(obj)
            if not inspect.isclass(obj):
                continue
            for attr in dir(obj):
                if attr.startswith("_"):
                    continue
                static = inspect.getattr_static(obj, attr)
                if isinstance(static, property):
                    found[f"{path}.{attr}"] = {"property": True, "doc": static.__doc__}
                elif callable(value := getattr(obj, attr)):
                    found[f"{path}.{attr}"] = describe(value)
    return found


if __name__ == "__main__":
    print(json.dumps(public_api()))
