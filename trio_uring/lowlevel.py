"""Completion-based I/O on the io_uring of the current run.

Every function here submits io_uring requests and waits for their completion;
each is a trio checkpoint and follows one set of cancellation rules (see
``docs/semantics.rst``): a request the kernel has not seen is dropped; one it
has started is cancelled with ``IORING_OP_ASYNC_CANCEL`` and, if it completed
anyway, its real result is returned instead of ``Cancelled``.  Buffers stay
referenced until the kernel is done with them.

The socket and timer operations work only inside :func:`trio_uring.run` (or
after :func:`trio_uring.install`) and raise ``RuntimeError`` anywhere else; the
file-descriptor operations fall back to a worker thread there.  Sockets may be
given as ints or as anything with ``fileno()`` (trio or stdlib sockets).
"""

from __future__ import annotations

from ._core._manager import current_manager
from ._ops._files import (
    AT_FDCWD,
    close,
    fstat,
    fsync,
    ftruncate,
    openat,
    read,
    readinto,
    splice,
    statx,
    write,
)
from ._ops._registered import RegisteredBuffers, read_fixed, register_buffers, write_fixed
from ._ops._sockets import (
    accept,
    connect,
    poll,
    recv,
    recv_into,
    recvmsg,
    send,
    sendmsg,
    shutdown,
)
from ._ops._timers import sleep, sleep_until
from ._ops._zerocopy import send_zc

__all__ = [
    "AT_FDCWD",
    "RegisteredBuffers",
    "accept",
    "close",
    "connect",
    "current_manager",
    "fstat",
    "fsync",
    "ftruncate",
    "openat",
    "poll",
    "read",
    "read_fixed",
    "readinto",
    "recv",
    "recv_into",
    "recvmsg",
    "register_buffers",
    "send",
    "send_zc",
    "sendmsg",
    "shutdown",
    "sleep",
    "sleep_until",
    "splice",
    "statx",
    "write",
    "write_fixed",
]

# Public objects say ``trio_uring`` (``trio_uring.lowlevel``), not the private module
# that defines them, as trio's do (trio's ``fixup_module_metadata``).
from ._core._public import fixup_module_metadata

fixup_module_metadata(__name__, globals())
del fixup_module_metadata
