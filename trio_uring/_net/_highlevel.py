"""trio's high-level networking helpers, returning trio_uring's streams and listeners.

Each function has the signature and semantics of its trio namesake.  Connecting,
resolving and binding reuse trio's implementations (happy eyeballs, dual-stack
listeners, ...); the resulting trio sockets are then wrapped in
:class:`trio_uring.SocketStream` / :class:`trio_uring.SocketListener`, which own
them from then on.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

import trio

from ._listener import SocketListener
from ._streams import SocketStream

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "open_tcp_listeners",
    "open_tcp_stream",
    "open_unix_socket",
    "serve_listeners",
    "serve_tcp",
]

DEFAULT_DELAY: Final = 0.250

#: trio's :func:`trio.serve_listeners` works with any :class:`trio.abc.Listener`.
serve_listeners = trio.serve_listeners


async def open_tcp_stream(
    host: str | bytes,
    port: int,
    *,
    happy_eyeballs_delay: float | None = DEFAULT_DELAY,
    local_address: str | None = None,
) -> SocketStream:
    """Connect over TCP like :func:`trio.open_tcp_stream`; returns a trio_uring :class:`SocketStream`.

    Cancellation: as trio's (no connection is left open).
    """
    stream = await trio.open_tcp_stream(
        host, port, happy_eyeballs_delay=happy_eyeballs_delay, local_address=local_address
    )
    return SocketStream(stream.socket)


async def open_unix_socket(
    filename: str | bytes | os.PathLike[str] | os.PathLike[bytes],
) -> SocketStream:
    """Connect to an AF_UNIX stream socket like :func:`trio.open_unix_socket`."""
    stream = await trio.open_unix_socket(filename)
    return SocketStream(stream.socket)


async def open_tcp_listeners(
    port: int,
    *,
    host: str | bytes | None = None,
    backlog: int | None = None,
) -> list[SocketListener]:
    """Listen for TCP connections like :func:`trio.open_tcp_listeners`."""
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    return [SocketListener(listener.socket) for listener in listeners]


async def serve_tcp(
    handler: Callable[[SocketStream], Awaitable[object]],
    port: int,
    *,
    host: str | bytes | None = None,
    backlog: int | None = None,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[list[SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve TCP connections like :func:`trio.serve_tcp`, handing ``handler`` trio_uring streams.

    Never returns unless cancelled; ``task_status.started`` gets the listeners.
    """
    listeners = await open_tcp_listeners(port, host=host, backlog=backlog)
    await serve_listeners(
        handler, listeners, handler_nursery=handler_nursery, task_status=task_status
    )
