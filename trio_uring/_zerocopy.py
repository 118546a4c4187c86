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
  waiting for it would put an RTT (or worse) into every ``bytes`` send.
  Measured on loopback (``examples/zerocopy_sender.py --compare``, ping-pong
  of one ``send_all`` and a 1-byte reply, this 2-vCPU machine): 64 KiB
  ``bytes`` 5,306 round trips/s returning after the result vs 4,924 for a
  ``bytearray`` that waits for the notification (+8%); 16 KiB: 7,400 vs 7,207
  (+3%).  There the peer reads at once; when it does not, loopback defers the
  copy (and a real link the ACK) until it does, and only the early return
  keeps the sender going.

Cancellation: before submission the SQE becomes a NOP and nothing was sent.
After submission ``IORING_OP_ASYNC_CANCEL`` is submitted and the task stays
parked until the result CQE, and for mutable buffers until the notification,
even while cancelled.  ``Cancelled`` is raised if the kernel cancelled it; a
real result (with ``MSG_WAITALL`` possibly a partial count) is returned.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Final, Protocol

from trio.lowlevel import Abort, current_task, reschedule, wait_task_rescheduled

from ._constants import (
    CQE_F_MORE,
    CQE_F_NOTIF,
    NOTIF_USAGE_ZC_COPIED,
    SEND_ZC_REPORT_USAGE,
    Op,
)
from ._install import current_manager
from ._manager import _DataOp
from ._ring_cffi import ffi

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio.lowlevel import Task

    from ._manager import UringIOManager


_ECANCELED: Final = -errno.ECANCELED


class _ZcOwner(Protocol):
    def _zerocopy_copied(self) -> None: ...


class ZcSendOp(_DataOp):
    """One ``IORING_OP_SEND_ZC`` request: result CQE, then (if ``F_MORE``) a notification.

    The manager keeps the record in ``_ops`` until the final CQE, so ``keep``
    (the buffer) stays referenced until the notification; it is dropped then.
    """

    __slots__ = ("copied", "got_result", "notif_pending", "owner", "wait_notif")

    def __init__(self, manager: UringIOManager, user_data: int, fd: int, task: Task | None) -> None:
        super().__init__(manager, user_data, fd, task)
        self.wait_notif = True
        self.got_result = False
        self.notif_pending = False
        self.copied = False
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
            self.keep = None  # the kernel is done with the pages
        else:
            self.res = res
            self.cqe_flags = flags
            self.got_result = True
            if flags & CQE_F_MORE:
                self.notif_pending = True
                if self.wait_notif:
                    return
        task = self.task
        if task is not None:
            self.task = None
            reschedule(task)

    def abort(self, raise_cancel: Callable[[], object]) -> Abort:
        if self.got_result:
            # Only the notification is outstanding: nothing to cancel, but the
            # buffer is not free yet.  Stay parked; raise Cancelled afterwards.
            self.raise_cancel = raise_cancel
            return Abort.FAILED
        return super().abort(raise_cancel)

    def on_closing(self) -> None:
        if self.got_result:
            self.closing = True  # the send is done; waiting for the notification only
            return
        super().on_closing()


def submit_zc(
    manager: UringIOManager,
    fd: int,
    addr: Any,
    length: int,
    flags: int,
    keep: object,
    wait_notif: bool,
) -> ZcSendOp:
    """Write the SEND_ZC SQE for the current task and track it (does not wait)."""
    if manager._guest is None:
        manager._bind_run()
    op = ZcSendOp(manager, manager.new_user_data(), fd, current_task())
    op.keep = keep
    op.wait_notif = wait_notif
    op.sq_pos = manager._prep(
        Op.SEND_ZC, 0, fd, 0, addr, length, flags, op.user_data, 0, 0, SEND_ZC_REPORT_USAGE
    )
    manager.register_op(op)
    manager.zerocopy_sends += 1
    if manager._guest:
        manager._submit_now()
    return op


async def wait_notification(op: ZcSendOp) -> None:
    """Park until ``op``'s notification arrived (no-op if none is pending).

    Not cancellable early: a cancel is remembered and raised once the buffer is free.
    """
    if not op.notif_pending:
        return
    op.task = current_task()
    await wait_task_rescheduled(op.abort)
    if op.raise_cancel is not None:
        op.raise_cancel()


async def send_zc(sock: Any, data: Any, flags: int = 0) -> int:
    """Send ``data`` on the socket ``sock`` (fd or object with ``fileno()``) with SEND_ZC.

    Returns the number of bytes sent (``flags`` are ``MSG_*`` flags, e.g.
    ``MSG_WAITALL`` to send everything).  Raises ``OSError`` with the CQE's
    errno, for example ``EOPNOTSUPP`` on AF_UNIX or ``ENOMEM`` when the pinned
    pages exceed ``RLIMIT_MEMLOCK``.

    When the buffer is free again: for ``bytes``, the call returns after the
    result and the object stays referenced until the notification; for every
    other buffer the call returns only after the notification, so the buffer
    may be reused or resized as soon as this returns (or raises).  Counts
    ``zerocopy_sends``, ``zerocopy_notifications`` and ``zerocopy_copied`` in the
    manager's statistics.  See the module docstring for cancellation.
    """
    fd = sock if isinstance(sock, int) else sock.fileno()
    if fd < 0:
        import trio

        raise trio.ClosedResourceError("socket was already closed")
    cbuf = ffi.from_buffer(data)
    manager = current_manager()
    op = submit_zc(manager, fd, cbuf, len(cbuf), flags, (data, cbuf), type(data) is not bytes)
    await wait_task_rescheduled(op.abort)
    return op.result()
