"""Zero-copy sends: ``IORING_OP_SEND_ZC`` and its two completions.

A zero-copy send posts two CQEs under one ``user_data``:

1. the result (bytes sent or ``-errno``), with ``IORING_CQE_F_MORE`` if a
   notification follows.  Errors may have ``F_MORE`` too, so only the flag says
   whether to wait;
2. the notification (``IORING_CQE_F_NOTIF``): the kernel dropped its last
   reference to the pages.  Only now may the buffer change.  With
   ``IORING_SEND_ZC_REPORT_USAGE``, ``res & IORING_NOTIF_USAGE_ZC_COPIED`` says the
   data was copied after all (always on loopback).

Return policy (:func:`send_zc` and ``SocketStream.send_all``):

* a mutable buffer (anything but ``bytes``) is released only after the
  notification, and the call returns only then;
* an immutable ``bytes`` object cannot change, so the call returns after the
  result CQE; the operation record keeps the object referenced until the
  notification.  For TCP the notification waits for the peer's ACK, which
  may be a delayed ACK (~40 ms) when the peer does not answer at once, so
  waiting for it would put an RTT (or worse) into every ``bytes`` send; when
  the peer does not read at once, only the early return keeps the sender going
  (measured: docs/performance-history.rst, "Measurements once in docstrings").

Cancellation: before submission the SQE becomes a NOP and nothing was sent.
After submission ``IORING_OP_ASYNC_CANCEL`` is submitted and the task stays
parked until the result CQE.  ``Cancelled`` is raised if the kernel cancelled
it; a real result (with ``MSG_WAITALL`` possibly a partial count) is returned.

A cancelled send of a mutable buffer whose notification is still pending must
neither outlive its cancel scope (a peer that stops reading would keep the
pages forever) nor let the peer see bytes the caller changes afterwards.  So
the connection is aborted: ``connect(AF_UNSPEC)`` resets a TCP socket and
drops its send queue, the kernel lets go of the pages at once, the
notification arrives, and the call raises ``Cancelled``.  A cancelled
``send_all`` leaves a stream broken anyway (trio's rule); here it is reset,
and later calls raise ``BrokenResourceError``.  Run exit never waits for
notifications: see :meth:`UringIOManager.close`.

Closing: the operation never acts on its fd after ``notify_closing`` for it
(trio's ``aclose``/``socket.close`` call it just before closing the fd): from
then on the number may belong to the next socket the process opens.
``notify_closing`` itself comes while the fd is still open, so that is when an
in-flight send is ended: withdrawn if the kernel has not seen it, else
cancelled, and the connection reset so that the kernel lets go of the pages
(a closed socket whose peer does not read would pin them for minutes).  The
waiter gets ``ClosedResourceError`` at once; the record keeps the buffer
exported until the notification, so memory the kernel may still read is
never released early (a ``bytearray`` stays unresizable until then).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Final, Protocol, SupportsIndex

import trio
from trio.lowlevel import Abort

from .._core import _kernels, _sqe
from .._core._constants import (
    CQE_F_MORE,
    CQE_F_NOTIF,
    NOTIF_USAGE_ZC_COPIED,
    SEND_ZC_REPORT_USAGE,
)
from .._core._constants import (
    MSG_NOSIGNAL as _MSG_NOSIGNAL,
)
from .._core._manager import current_manager
from .._core._operation import COMPLETED, EXPIRED, Operation
from .._core._ring_cffi import lib
from .._core._trio_compat import READY, ki_protect

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._core._manager import UringIOManager


_ECANCELED: Final = -errno.ECANCELED


class _ZcOwner(Protocol):
    def _zerocopy_copied(self) -> None: ...


class ZcSendOp(Operation):
    """One ``IORING_OP_SEND_ZC`` request: result CQE, then (if ``F_MORE``) a notification.

    The manager keeps the record until the final CQE (the notification), so
    the exported buffer stays exported until the kernel let go of its pages.
    ``wait_notif``: the waiter is woken only then (mutable buffers); otherwise
    at the result, and the record stays ``ABANDONED`` until the notification.
    """

    __slots__ = ("copied", "got_result", "notif_pending", "owner", "reset", "wait_notif")

    def __init__(self, manager: UringIOManager, fd: int, wait_notif: bool) -> None:
        super().__init__(manager, fd)
        self.wait_notif = wait_notif
        self.got_result = False
        self.notif_pending = False
        self.copied = False
        self.reset = False
        self.owner: _ZcOwner | None = None

    def on_cqe(self, res: int, flags: int) -> None:
        if flags & CQE_F_NOTIF:
            manager = self.manager
            manager.zerocopy_notifications += 1
            if res & NOTIF_USAGE_ZC_COPIED:
                manager.zerocopy_copied += 1
                self.copied = True
                if self.owner is not None:
                    self.owner._zerocopy_copied()
            self.notif_pending = False
            if self.reset:
                self.res = _ECANCELED  # the data may never have left: report the cancel
            self.complete()
            return
        self.res = res
        self.got_result = True
        if not flags & CQE_F_MORE:
            self.complete()
            return
        self.notif_pending = True
        if self.wait_notif and self.task is not None:
            if self.raise_cancel is not None:
                self._abort_connection()  # cancelled while sending: don't wait for the peer
            return
        task = self.task
        self.detach()  # ABANDONED: nobody waits; the bytes object stays referenced
        if task is not None:
            self.manager.reschedule(task, READY)

    def _abort_connection(self) -> None:
        """Reset the connection so the kernel lets go of the pages now.

        Never after ``notify_closing`` for the fd (``closing``): the number may be
        another socket's by then (the reset for a close is done in :meth:`on_closing`).
        """
        if not self.reset and self.notif_pending and self.wait_notif and not self.closing:
            self.reset = True
            lib.tu_disconnect(self.fd)

    def abort(self, raise_cancel: Callable[[], object]) -> Abort:
        if self.got_result:
            # Only the notification is outstanding: nothing to cancel in the ring.
            # Reset the connection so the kernel lets go of the pages now, and raise
            # Cancelled once it did.
            self.raise_cancel = raise_cancel
            self._abort_connection()
            return Abort.FAILED
        return super().abort(raise_cancel)

    def on_closing(self) -> None:
        """``notify_closing`` for the fd, which is still open: end the send now.

        Withdrawn before the kernel saw it: nothing was sent.  Otherwise the send is
        cancelled (if still running) and the connection reset while the fd is still
        ours, so the kernel drops the queued data and lets go of the pages; the
        waiter gets ``ClosedResourceError`` at once, and the record stays in the
        manager, keeping the buffer exported, until the notification.
        """
        if self.closing:
            return
        if self.state == EXPIRED or (not self.got_result and self.task is not None):
            super().on_closing()  # withdrawn at once, or cancelled (CANCELLING)
            if self.state == COMPLETED:
                return  # never reached the kernel: nothing to reset
        self.closing = True
        if not self.reset:
            self.reset = True
            lib.tu_disconnect(self.fd)  # the fd is still open: notify_closing comes first
        self.wake_closed()
        self.detach()  # nobody waits; the final CQE releases the buffer

    def cancellable(self) -> bool:
        return not self.got_result


def submit_zc(
    manager: UringIOManager,
    fd: int,
    data: object,
    offset: int,
    length: int,
    flags: int,
    wait_notif: bool,
) -> ZcSendOp:
    """Start a SEND_ZC of ``data[offset:offset + length]`` for the current task (does not wait).

    The operation exports ``data`` (``TypeError`` for a non-buffer, before
    anything is submitted) and releases it at the notification.
    """
    op = ZcSendOp(manager, fd, wait_notif)
    # Usage reports (6.2): without them a 6.0/6.1 kernel refuses the flag (EINVAL).
    report = SEND_ZC_REPORT_USAGE if manager.ring.has(_kernels.ZC_REPORT_USAGE) else 0
    manager.submit(_sqe.send_zc(fd, length, flags, offset, report), op=op, buffer=data)
    manager.zerocopy_sends += 1
    return op


async def send_zc(sock: Any, data: Any, flags: SupportsIndex = 0) -> int:
    """Send ``data`` on the socket ``sock`` (fd or object with ``fileno()``) with SEND_ZC.

    Returns the number of bytes sent (``flags`` are ``MSG_*`` flags, e.g.
    ``MSG_WAITALL`` to send everything; ``MSG_NOSIGNAL`` is always added).
    Arguments are checked like :func:`trio_uring.lowlevel.send` (``TypeError``,
    ``OSError(EBADF)`` for a closed socket), and a bad call is still a
    checkpoint.  Raises ``OSError`` with the CQE's errno, for example
    ``EOPNOTSUPP`` on AF_UNIX or ``ENOMEM`` when the pinned pages exceed
    ``RLIMIT_MEMLOCK``.

    When the buffer is free again: for ``bytes``, the call returns after the
    result and the object stays referenced until the notification; for every
    other buffer the call returns only after the notification, so the buffer
    may be reused or resized as soon as this returns (or raises).  Cancelled
    while only the notification is pending, a mutable buffer's TCP connection
    is reset (see the module docstring) and ``Cancelled`` is raised.  Counts
    ``zerocopy_sends``, ``zerocopy_notifications`` and ``zerocopy_copied`` in
    the manager's statistics.
    """
    from ._sockets import checked_flags, fileno_of

    manager = current_manager()
    try:
        fd = fileno_of(sock)
        fl = checked_flags(flags) | _MSG_NOSIGNAL
        op = submit_zc(manager, fd, data, 0, -1, fl, type(data) is not bytes)
    except Exception:
        await trio.lowlevel.checkpoint()  # bad input is still a checkpoint, as in trio
        raise
    return await op


# KeyboardInterrupt protection (issue 19, finding 3): ``send_zc`` submits and then
# awaits the operation in one frame (see ``_trio_compat.ki_protect``).
ki_protect(submit_zc, send_zc)

# Compiled: the public objects become real coroutine functions (and get their
# docstrings and signatures) over the compiled bodies; see _core/_public.py.
from .._core._public import dress  # noqa: E402

dress(__name__)
