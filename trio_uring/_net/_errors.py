"""trio's translation of a socket's ``OSError`` into a stream's error, in one place.

``SocketStream`` (``send_all``, ``receive_some``, ``send_eof``), ``SocketStream.send_file``
and ``SocketListener.accept`` raise what :class:`trio.SocketStream` and
:class:`trio.SocketListener` raise for the same ``errno``.
"""

from __future__ import annotations

import errno
from typing import Final

import trio

__all__ = ["CLOSED_ERRNOS", "translate"]

#: The ``errno`` of an operation on a socket that was closed (``ClosedResourceError``).
CLOSED_ERRNOS: Final = frozenset({errno.EBADF, errno.ENOTSOCK})


def translate(exc: OSError) -> trio.ClosedResourceError | trio.BrokenResourceError:
    """trio's translation: ``ClosedResourceError`` (context suppressed) for a closed
    socket, else ``BrokenResourceError`` caused by ``exc``.  Raise it without ``from``."""
    if exc.errno in CLOSED_ERRNOS:
        closed = trio.ClosedResourceError("this socket was already closed")
        closed.__suppress_context__ = True
        return closed
    err = trio.BrokenResourceError(f"socket connection broken: {exc}")
    err.__cause__ = exc
    return err
