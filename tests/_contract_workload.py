"""A child process's trio workload for tests/test_trio_contract.py, optionally with one
piece of trio replaced by an equivalent function whose code differs (so its fingerprint
is not a recorded one).

``python -m tests._contract_workload [TARGET]``: replace ``TARGET`` (a
``_trio_compat.TRIO_MIRRORS`` target) *before* trio_uring is imported, import
trio_uring recording its warnings, run the workload on io_uring, print one JSON line:
the warnings, ``MIRRORED``, and the workload's results (which must not depend on
which path ran).
"""

from __future__ import annotations

import importlib
import inspect
import json
import socket
import sys
import types
import warnings
from typing import Any


def replace(target: str) -> None:
    """Put an equivalent of ``target`` in trio's place, with other code."""
    module_name, _, qualname = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    if name == "__slots__":  # the layout as read: a class attribute, not the real layout
        owner.__slots__ = (*owner.__dict__.get("__slots__", ()), "_tu_extra")
        return
    original = inspect.getattr_static(owner, name)
    if isinstance(original, type):  # a class: one more method changes its fingerprint
        original._tu_extra = lambda self: None
        return
    if isinstance(original, property):
        getter = original.fget

        def fget(self: Any) -> Any:
            return getter(self)

        setattr(owner, name, property(fget))
        return
    replacement: Any
    if getattr(original.__code__, "co_flags", 0) & inspect.CO_ITERABLE_COROUTINE:

        @types.coroutine
        def replacement(*args: Any, **kwargs: Any) -> Any:
            return (yield from original(*args, **kwargs))

    elif inspect.iscoroutinefunction(original):

        async def replacement(*args: Any, **kwargs: Any) -> Any:
            return await original(*args, **kwargs)

    else:

        def replacement(*args: Any, **kwargs: Any) -> Any:
            return original(*args, **kwargs)

    replacement.__name__ = original.__name__
    replacement.__qualname__ = original.__qualname__
    setattr(owner, name, replacement)
    if module_name == "trio._core._run" and hasattr(sys.modules["trio.lowlevel"], name):
        setattr(sys.modules["trio.lowlevel"], name, replacement)
    if module_name == "trio._core._traps" and hasattr(sys.modules["trio.lowlevel"], name):
        setattr(sys.modules["trio.lowlevel"], name, replacement)


async def workload() -> dict[str, Any]:
    """Sockets (trio's, on the completion path), streams, cancellation, a deadline."""
    import trio
    import trio.testing

    import trio_uring

    results: dict[str, Any] = {}
    a, b = trio.socket.socketpair()
    with a, b:
        results["socket_class"] = type(a).__name__
        await a.send(b"ping")
        with trio.testing.assert_checkpoints():
            results["recv_ready"] = (await b.recv(10)).decode()
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await b.recv(10)
            except trio.Cancelled:
                results["recv_cancelled"] = "Cancelled"
        async with trio.open_nursery() as nursery:

            async def later() -> None:
                await trio.testing.wait_all_tasks_blocked()
                await a.send(b"late")

            nursery.start_soon(later)
            results["recv_waited"] = (await b.recv(10)).decode()
        with trio.move_on_after(0.05) as timeout:
            await b.recv(10)
        results["deadline"] = timeout.cancelled_caught

    listener = trio.socket.socket()
    with listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        client = trio.socket.socket()
        with client:
            await client.connect(listener.getsockname())
            server, _ = await listener.accept()
            with server:
                await client.send(b"hello")
                results["accepted_recv"] = (await server.recv(10)).decode()

    left, right = socket.socketpair()
    s1 = trio_uring.SocketStream(trio.socket.from_stdlib_socket(left))
    s2 = trio_uring.SocketStream(trio.socket.from_stdlib_socket(right))
    async with s1, s2:
        with trio.testing.assert_checkpoints():
            await s1.send_all(b"stream")
        results["stream"] = (await s2.receive_some(100)).decode()
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await s1.send_all(b"x")
            except trio.Cancelled:
                results["send_all_cancelled"] = "Cancelled"
        await s1.send_eof()
        results["eof"] = (await s2.receive_some(100)).decode()
    await trio.sleep(0)
    return results


async def paths() -> dict[str, Any]:
    """Which path each piece took in this process."""
    import trio

    from trio_uring._core import _trio_compat
    from trio_uring._core._ring import ext
    from trio_uring._net import _trio_sockets

    manager = _trio_compat.current_runner().io_manager
    a, b = trio.socket.socketpair()
    with a, b, trio.move_on_after(100):
        deadline = _trio_compat.task_deadline(trio.lowlevel.current_task())
        return {
            "ext": ext is not None,
            "reschedule": "method"
            if hasattr(manager.reschedule, "__self__")
            else type(manager.reschedule).__name__,
            "cancel_pending": "always" if _trio_compat.cancel_pending() else "mirror",
            "park": _trio_compat.park.__name__,
            "completed_checkpoint": _trio_compat.completed_checkpoint.__name__,
            "try_first": _trio_sockets._try_first,
            "connect_mirrored": _trio_sockets._connect_mirrored,
            "sockets_enabled": _trio_sockets.completion_sockets_enabled(),
            "plain_trio_socket": _trio_compat.plain_trio_socket(a),
            "task_deadline": "inf" if deadline == float("inf") else "finite",
        }


def main(argv: list[str]) -> None:
    for target in argv:
        replace(target)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import trio_uring
        from trio_uring._core import _trio_compat
    results = trio_uring.run(workload)
    taken = trio_uring.run(paths)
    print(
        json.dumps(
            {
                "warnings": [
                    [type(w.message).__name__, str(w.message)]
                    for w in caught
                    if isinstance(w.message, trio_uring.TrioVersionWarning)
                ],
                "mirrored": _trio_compat.MIRRORED,
                "results": results,
                "paths": taken,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
