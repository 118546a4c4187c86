"""Issue 23, finding 1: public async callables are coroutine functions in every build.

mypyc compiles an ``async def`` into something that is not a coroutine function:
a forgotten ``await`` was silent, ``nursery.start_soon(f())`` raised an
``AttributeError`` instead of trio's ``TypeError``, ``inspect.iscoroutinefunction``
answered False, and ``help()`` showed no docstring and no signature.  These tests
run in whichever build the session uses (``make test`` runs them compiled, pure and
compiled without the ring extension); trio's own socket methods, as
``UringSocket`` provides them, are compared with the same checks on trio's epoll
backend.
"""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import trio

import trio_uring
from tests._child import TESTS_ROOT, child_env
from tests._public_api import describe, public_api
from trio_uring import lowlevel

#: Where the compiled build may differ from the source: ``UringIOManager``'s methods
#: stay compiled objects (trio's I/O-manager interface: trio calls them from its own
#: coroutine functions, ``trio.lowlevel.wait_readable`` and friends, and the file
#: operations call ``perform`` on every request; see tools/gen_public.py).
LEFT_COMPILED = re.compile(r"trio_uring\.UringIOManager\.")
#: trio's socket methods that ``UringSocket`` implements itself.
TRIO_SOCKET_METHODS = ("recv", "recv_into", "send", "accept", "connect")


def _never_awaited(make: Callable[[], object]) -> list[str]:
    """The ``RuntimeWarning``\\ s of calling ``make()`` and dropping what it returned."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coro = make()
        del coro
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


async def _start_soon_error(make: Callable[[], object]) -> str:
    """trio's error for ``nursery.start_soon(make())`` (addresses masked)."""
    async with trio.open_nursery() as nursery:
        try:
            nursery.start_soon(make())  # type: ignore[arg-type]
        except TypeError as exc:
            return re.sub(r"0x[0-9a-f]+", "0x...", str(exc))
    raise AssertionError("start_soon took a coroutine object")


def _trio_message(name: str, qualname: str) -> str:
    """The text of trio's ``TypeError`` for a coroutine object passed as an async function."""
    return (
        "Trio was expecting an async function, but instead it got a coroutine object "
        f"<coroutine object {qualname} at 0x...>\n\nProbably you did something like:\n\n"
        f"  trio.run({name}(...))            # incorrect!\n"
        f"  nursery.start_soon({name}(...))  # incorrect!\n\n"
        "Instead, you want (notice the parentheses!):\n\n"
        f"  trio.run({name}, ...)            # correct!\n"
        f"  nursery.start_soon({name}, ...)  # correct!"
    )


async def _observe(name: str, make: Callable[[], Any], method: Any) -> dict[str, Any]:
    return {
        **describe(method),
        "never awaited": _never_awaited(make),
        "start_soon": await _start_soon_error(make),
    }


# ---------------------------------------------------------------- trio_uring's own API
async def test_lowlevel_operations_are_coroutine_functions() -> None:
    a, b = trio.socket.socketpair()
    with a, b:
        for name, make in [
            ("send", lambda: lowlevel.send(a, b"x")),
            ("recv", lambda: lowlevel.recv(a, 10)),
        ]:
            seen = await _observe(name, make, getattr(lowlevel, name))
            assert seen["coroutine function"] and seen["iscoroutinefunction"], name
            assert seen["never awaited"] == [f"coroutine '{name}' was never awaited"]
            assert seen["start_soon"] == _trio_message(name, name)
            assert seen["doc"]
        # Nothing was sent by the calls never awaited.
        await lowlevel.send(a, b"z")
        assert await lowlevel.recv(b, 10) == b"z"


async def test_stream_methods_are_coroutine_functions() -> None:
    a, b = trio.socket.socketpair()
    stream = trio_uring.SocketStream(a)
    async with stream:
        with b:
            for name, make in [
                ("send_all", lambda: stream.send_all(b"x")),
                ("receive_some", lambda: stream.receive_some(10)),
                ("aclose", stream.aclose),
            ]:
                seen = await _observe(name, make, getattr(stream, name))
                qualname = f"SocketStream.{name}"
                assert seen["coroutine function"] and seen["iscoroutinefunction"], name
                assert seen["never awaited"] == [f"coroutine '{qualname}' was never awaited"]
                assert seen["start_soon"] == _trio_message(name, qualname)
                assert seen["doc"]
            await stream.send_all(b"still works")
            assert await b.recv(100) == b"still works"


# ------------------------------------------------------- trio's sockets, as trio has them
def _trio_socket_view() -> dict[str, Any]:
    """What the checks see of a trio socket's own methods, in the current run."""
    seen: dict[str, Any] = {}

    async def main() -> None:
        a, b = trio.socket.socketpair()
        with a, b:
            seen["class"] = type(a).__name__
            for name in TRIO_SOCKET_METHODS:
                method = getattr(a, name)
                seen[name] = describe(method)
                # (Not compared: trio_uring's are KeyboardInterrupt-protected on purpose,
                # their frames lie between an SQE's submit and the park; trio's are not.)
                del seen[name]["ki_protected"]
                seen[name]["qualname"] = method.__qualname__
                seen[name]["name"] = method.__name__
            seen["send never awaited"] = _never_awaited(lambda: a.send(b"x"))
            seen["recv never awaited"] = _never_awaited(lambda: a.recv(1))
            seen["start_soon"] = await _start_soon_error(lambda: a.send(b"y"))
            # Nothing was sent by the calls never awaited.
            await a.send(b"z")
            seen["received"] = await b.recv(10)

    if trio_uring.installed():
        trio_uring.run(main)
    else:  # (the io_uring-unavailable fallback: the same as trio)
        trio.run(main)
    return seen


@pytest.mark.no_uring_ok
def test_trio_socket_methods_as_on_epoll() -> None:
    on_uring = _trio_socket_view()
    # (The view of trio's epoll backend: the session installed io_uring.)
    installed = trio_uring.installed()
    trio_uring.uninstall()
    try:
        seen_epoll = _trio_socket_view()
    finally:
        if installed:
            trio_uring.install()
    assert seen_epoll.pop("class") == "_SocketType"
    if trio_uring.installed():
        assert on_uring.pop("class") == "UringSocket"
    else:
        on_uring.pop("class")
    assert on_uring == seen_epoll
    assert seen_epoll["send"]["coroutine function"]
    assert seen_epoll["received"] == b"z"


# ------------------------------------------------------------------ the whole surface
def _pure_view() -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, os.path.join(TESTS_ROOT, "tests", "_public_api.py")],
        env=child_env(TRIO_URING_PURE="1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    view: dict[str, Any] = json.loads(out.stdout)
    return view


@pytest.mark.no_uring_ok
def test_every_public_callable_is_as_in_the_source() -> None:
    """Every public callable (a new one too) reads as the source defines it: a
    coroutine function where the source has one, same signature, same docstring."""
    here = json.loads(json.dumps(public_api()))  # (tuples as the child's JSON has them)
    pure = _pure_view()
    assert sorted(p for p in here if not LEFT_COMPILED.match(p)) == sorted(
        p for p in pure if not LEFT_COMPILED.match(p)
    )
    differ = {
        path: (pure[path], here[path])
        for path in pure
        if not LEFT_COMPILED.match(path) and pure[path] != here[path]
    }
    assert not differ
    # (KeyboardInterrupt protection too: the coroutine function standing for a compiled
    # body the source protects is protected, as the body's own frame is in the source.)
    assert here["trio_uring.SocketStream.send_all"]["ki_protected"]
    assert here["trio_uring.lowlevel.recv"]["ki_protected"]
    assert not here["trio_uring.SocketStream.aclose"]["ki_protected"]
    coroutine_functions = [p for p, d in here.items() if d.get("coroutine function")]
    assert "trio_uring.SocketStream.send_all" in coroutine_functions
    assert "trio_uring.lowlevel.recv" in coroutine_functions
    for path, seen in pure.items():
        if seen.get("iscoroutinefunction") and not LEFT_COMPILED.match(path):
            assert here[path]["coroutine function"], path


@pytest.mark.no_uring_ok
def test_public_objects_are_documented() -> None:
    """Every public coroutine function of trio_uring, every name in the two ``__all__`` lists
    and every public member of the stream classes has a docstring."""
    undocumented = [
        path
        for path, seen in public_api().items()
        if not seen["doc"]
        and not LEFT_COMPILED.match(path)
        and (
            (seen.get("coroutine function") and seen["module"].startswith("trio_uring"))
            or path.count(".") == path.startswith("trio_uring.lowlevel.") + 1
            or path.startswith(("trio_uring.SocketStream.", "trio_uring.SocketListener."))
        )
    ]
    assert not undocumented


@pytest.mark.no_uring_ok
def test_generated_public_objects_are_current() -> None:
    """``_core/_public_generated.py`` is what tools/gen_public.py makes of the source now."""
    tool = os.path.join(TESTS_ROOT, "tools", "gen_public.py")
    out = subprocess.run(
        [sys.executable, tool, "--check"],
        env=child_env(TRIO_URING_PURE="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_public_objects_name_the_public_module() -> None:
    """As trio's ``fixup_module_metadata`` does for ``trio.SocketStream``: what
    ``trio_uring.__all__`` and ``trio_uring.lowlevel.__all__`` export says it comes from
    there (not from the private module that defines it), methods too, and pickling by
    reference finds it (in either build)."""
    import pickle

    for package in (trio_uring, lowlevel):
        for name in package.__all__:
            obj = getattr(package, name)
            module = getattr(obj, "__module__", None)
            if module is None or type(obj).__module__ == "typing" or name == "UringIOManager":
                continue  # (UringIOManager keeps its module: trio_uring/__init__.py says why)
            assert not module.startswith("trio_uring._"), f"{package.__name__}.{name}: {module}"
            if isinstance(obj, type) or callable(obj):
                assert pickle.loads(pickle.dumps(obj)) is obj
    assert trio_uring.SocketStream.__module__ == "trio_uring"
    assert trio_uring.SocketStream.send_all.__module__ == "trio_uring"
    assert lowlevel.recv.__module__ == "trio_uring.lowlevel"
    assert repr(trio_uring.SocketListener) == "<class 'trio_uring.SocketListener'>"
    # trio's methods that UringSocket stands in for keep trio's names (like_trio).
    assert trio_uring.UringSocket.recv.__module__ == "trio._socket"
    error = pickle.loads(pickle.dumps(trio_uring.UringUnavailableError("no ring")))
    assert type(error) is trio_uring.UringUnavailableError and error.args == ("no ring",)
