"""trio's own :class:`trio.SocketStream` on trio_uring's stream machinery.

Under a run on io_uring, trio's sockets are :class:`~trio_uring.UringSocket`
(:mod:`trio_uring._net._trio_sockets`), but trio's ``SocketStream`` on top of them
still receives with one syscall (or SQE) per call, through its error-translating
context manager and conflict detector.  At the start of the first run on
io_uring, a run-start hook (beside the one that patches trio's socket
constructors) wraps ``trio.SocketStream.__init__``: a stream made inside a run
on io_uring over a :class:`~trio_uring.UringSocket`, with completion streams
enabled, gets an *engine*, a :class:`trio_uring.SocketStream` over the same
socket object, and its ``send_all``, ``receive_some``, ``send_eof``,
``wait_send_all_might_not_block`` and ``aclose`` are the engine's bound methods,
set as instance attributes (they shadow the class's functions: no extra call
level).  So every ``trio.SocketStream`` trio makes (``serve_tcp``,
``open_tcp_stream``, ``SocketListener.accept``, hypercorn, trio-websocket,
``SocketStream(sock)`` in user code; anyio's trio backend has its own stream class
over trio's sockets) receives from a multishot
``IORING_OP_RECV`` into the provided-buffer ring, sends one ``SEND`` per
``send_all`` chunk and parks on the compiled path, while staying a
``trio.SocketStream``: ``socket``, ``setsockopt``/``getsockopt`` (trio's own
methods, on the same socket), ``BusyResourceError`` for concurrent use,
``BrokenResourceError`` caused by the ``OSError`` and ``ClosedResourceError``
with its context suppressed (as trio chains them), ``receive_some(max_bytes)``
limits and ``ValueError``, ``ClosedResourceError`` after ``aclose`` or when
another task closes ``stream.socket``.  The engine follows the memory and fd
rules of docs/semantics.rst ("Memory and fds the kernel may touch"): it is the
same code as :class:`trio_uring.SocketStream`.

Zero-copy: the engine is made with ``zerocopy="never"``.  trio documents that
``send_all`` returns when the caller may reuse the buffer and that closing the
socket only closes it; a zero-copy send would either wait for the kernel's
notification or reset the connection when closed while in flight (see
:class:`trio_uring.SocketStream`), and gains nothing below 16 KiB or on loopback.
Programs that want zero-copy use :class:`trio_uring.SocketStream` directly.

Anywhere else (trio's epoll backend, a kernel without multishot receive into a
provided-buffer ring (before 6.0), a socket that is not a ``UringSocket``, a
``UringSocket`` whose ``_sock`` was swapped for something else, or with the mode
off) ``trio.SocketStream.__init__`` is trio's own, and so are all its methods.
``TRIO_URING_STREAMS=0`` in the environment, or
:func:`set_completion_streams` (``False``), keeps trio's own stream code under
io_uring too; :func:`trio_uring.uninstall` gives trio its ``__init__`` back
(the next run on io_uring wraps it again).

References: the stream holds the engine (through its bound methods); the engine
holds the socket, never the stream, so a stream adds no reference cycle.
"""

from __future__ import annotations

import functools
import os
import socket as _stdlib_socket
from typing import TYPE_CHECKING, Any, Final

import trio
from trio._util import ConflictDetector

from .._core._manager import UringIOManager, run_start_hooks
from .._core._trio_compat import STDLIB_SOCKET_FIELD
from .._ops import _provided
from . import _streams
from ._trio_sockets import UringSocket, _current_uring

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio.socket import SocketType

__all__ = ["completion_streams_enabled", "engine_of", "set_completion_streams"]

#: trio's own ``SocketStream.__init__``, as shipped.
_trio_init: Final[Callable[[trio.SocketStream, SocketType], None]] = trio.SocketStream.__init__
_plain_socket: Final = _stdlib_socket.socket

_enabled = os.environ.get("TRIO_URING_STREAMS", "1").strip().lower() not in (
    "0",
    "false",
    "no",
    "off",
)
_patched = False

#: The instance attributes that shadow trio's methods: the engine's bound methods.
HOT_METHODS: Final = (
    "send_all",
    "receive_some",
    "send_eof",
    "wait_send_all_might_not_block",
    "aclose",
)
#: Where the engine is kept on a ``trio.SocketStream`` (see :func:`engine_of`).
_ENGINE: Final = "_trio_uring_engine"


def set_completion_streams(enabled: bool) -> bool:
    """Choose whether ``trio.SocketStream`` objects created from now on use trio_uring's
    stream machinery (multishot receive, one SEND per chunk) under a run on io_uring.

    With ``True`` (the default unless ``TRIO_URING_STREAMS=0``), a
    ``trio.SocketStream`` made inside a run on io_uring over a
    :class:`~trio_uring.UringSocket` runs on a :class:`trio_uring.SocketStream`
    (without zero-copy) while staying a ``trio.SocketStream``; with ``False`` it
    runs trio's own code.  Existing streams keep what they have.  Returns the
    previous setting.
    """
    global _enabled
    old, _enabled = _enabled, bool(enabled)
    return old


def completion_streams_enabled() -> bool:
    """The current :func:`set_completion_streams` setting."""
    return _enabled


def engine_of(stream: object) -> _streams.SocketStream | None:
    """The :class:`trio_uring.SocketStream` a ``trio.SocketStream`` runs on, or ``None``
    (trio's own code)."""
    engine = getattr(stream, "__dict__", {}).get(_ENGINE)
    return engine if isinstance(engine, _streams.SocketStream) else None


def _upgradable(socket: object) -> bool:
    """Whether a ``trio.SocketStream`` over ``socket`` made now gets an engine: in a run
    on io_uring whose kernel does multishot receive into a provided-buffer ring (without
    it the engine would submit an SQE for every receive and send, where trio's code on a
    ``UringSocket`` tries the syscall first)."""
    if not (
        _enabled
        and type(socket) is UringSocket
        and type(getattr(socket, STDLIB_SOCKET_FIELD, None)) is _plain_socket
    ):
        return False
    manager = _current_uring()
    return manager is not None and _provided.stream_ring(manager) is not None


@functools.wraps(_trio_init)
def _init(self: trio.SocketStream, socket: SocketType) -> None:
    if not _upgradable(socket):
        _trio_init(self, socket)
        return
    # The engine checks the socket as trio does (same errors, same messages) and sets
    # TCP_NODELAY and TCP_NOTSENT_LOWAT (16 KiB) as trio's __init__ does.
    engine = _streams.SocketStream(socket, zerocopy="never")
    attrs: dict[str, Any] = self.__dict__
    attrs["socket"] = socket
    # (Unused by the engine's methods; there for code that calls trio's class functions.)
    attrs["_send_conflict_detector"] = ConflictDetector(
        "another task is currently sending data on this SocketStream"
    )
    attrs[_ENGINE] = engine
    attrs["send_all"] = engine.send_all
    attrs["receive_some"] = engine.receive_some
    attrs["send_eof"] = engine.send_eof
    attrs["wait_send_all_might_not_block"] = engine.wait_send_all_might_not_block
    attrs["aclose"] = engine.aclose


def _install_patch(manager: UringIOManager) -> None:
    """Run-start hook: wrap ``trio.SocketStream.__init__`` (once)."""
    global _patched
    if _patched:
        return
    _patched = True
    type.__setattr__(trio.SocketStream, "__init__", _init)


def _uninstall_patch() -> None:
    """Give trio its own ``SocketStream.__init__`` back (:func:`trio_uring.uninstall`)."""
    global _patched
    _patched = False
    type.__setattr__(trio.SocketStream, "__init__", _trio_init)


run_start_hooks.append(_install_patch)
