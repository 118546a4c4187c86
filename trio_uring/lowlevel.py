"""Completion-based I/O on the io_uring of the current run.

Every function here submits one io_uring request and waits for its completion;
each is a trio checkpoint and follows one set of cancellation rules (see
``docs/semantics.rst``): a request the kernel has not started is dropped; one it
has started is cancelled with ``IORING_OP_ASYNC_CANCEL`` and, if it completed
anyway, its real result is returned instead of ``Cancelled``.  Buffers stay
referenced until the kernel is done with them.

They work only inside :func:`trio_uring.run` (or after
:func:`trio_uring.install`) and raise ``RuntimeError`` anywhere else.  Sockets
may be given as ints or as anything with ``fileno()`` (trio or stdlib sockets).
"""

from __future__ import annotations

from ._install import current_manager
from ._socket_ops import (
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
from ._timer_ops import sleep, sleep_until

# TODO(fd-ops): re-export the file-descriptor operations once trio_uring/_fd_ops.py lands:
# from ._fd_ops import close, fsync, openat, read, readinto, splice, statx, write

__all__ = [
    "accept",
    "connect",
    "current_manager",
    "poll",
    "recv",
    "recv_into",
    "recvmsg",
    "send",
    "sendmsg",
    "shutdown",
    "sleep",
    "sleep_until",
]
