"""The operation lifecycle: one record per io_uring request, from its SQE to its final CQE.

This is the one place that says what an in-flight request is (the role
tokio-uring's ``op.rs`` plays).  The manager (:mod:`trio_uring._core._manager`)
starts, cancels and completes operations; the modules above only say how to
fill an SQE and how to read its CQE(s), through the manager's public methods.

States (``Operation.state``) and the transitions between them, one method each
(the diagram is :data:`TRANSITIONS`, checked by ``tests/test_operation.py``)::

    PREPARED   ──start────────▶ SUBMITTED    the manager wrote its SQE
    COMPLETED  ──start────────▶ SUBMITTED    a recycled record starts again
    SUBMITTED  ──start────────▶ SUBMITTED    a poll re-arms under a fresh user_data
    SUBMITTED  ──cancelling───▶ CANCELLING   IORING_OP_ASYNC_CANCEL submitted
    SUBMITTED  ──expire───────▶ EXPIRED      its linked timeout fired, trio did not cancel
    EXPIRED    ──restart──────▶ SUBMITTED    the next loop tick writes the SQE again
    SUBMITTED  ──detach───────▶ ABANDONED    the waiter left for good
    CANCELLING ──detach───────▶ ABANDONED    the waiter left for good
    SUBMITTED  ──retire───────▶ COMPLETED    final CQE, or withdrawn before the kernel saw it
    CANCELLING ──retire───────▶ COMPLETED    final CQE (the real result, or -ECANCELED)
    EXPIRED    ──retire───────▶ COMPLETED    trio cancelled it, or its fd was closed
    ABANDONED  ──retire───────▶ COMPLETED    final CQE
    PREPARED   ──retire───────▶ COMPLETED    the SQE could not be written (nothing happened)

* ``PREPARED``: a new record, no SQE in flight.
* ``SUBMITTED``: its SQE is written (maybe not yet consumed by the kernel); a
  task may be parked on it (``op.task``).
* ``CANCELLING``: ``IORING_OP_ASYNC_CANCEL`` was submitted; the waiter stays
  parked until the final CQE, which carries the real result if the operation
  completed anyway (trio's IOCP ``wait_overlapped`` pattern).
* ``EXPIRED``: the final CQE of a linked operation was the ``-ECANCELED`` of its
  ``IORING_OP_LINK_TIMEOUT``, but trio has not cancelled the task: the kernel is
  done with it, the task stays parked, and the manager starts it again (trio
  stays authoritative for deadlines).
* ``ABANDONED``: nobody waits any more (a readiness wait that was cancelled, a
  zero-copy send of ``bytes`` whose notification is pending, a run that
  closed), but the kernel may still touch the operation's memory: the record
  keeps it referenced until the final CQE.
* ``COMPLETED``: the final CQE arrived (or the SQE was withdrawn before the
  kernel saw it: then it never happened).  Only here are the buffer exports
  released, exactly once.  A recycled record (a stream's send slot) starts again
  from here.

Only the methods named in the diagram assign ``state`` (``grep "\\.state = "``
finds them all in this module).

The buffer rule: a caller's buffer is exported to C only by the operation
(:meth:`Operation.export`), and released in :meth:`Operation.release` when the
operation completes.  Waits return or raise only after that, so the caller's
object (a ``bytearray`` to resize, a ``memoryview`` to release, an ``mmap`` to
close) is free again the moment the awaiting call returns or raises.  The only
exceptions are documented where they happen (zero-copy ``bytes`` sends).

A cancelled or failed wait leaves no cyclic garbage: the outcome a task is
woken with is never kept in a frame that its exception's traceback holds.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Final

import outcome
import trio
from trio.lowlevel import Abort

from ._ring import ext
from ._ring_cffi import ffi
from ._trio_compat import READY, WaitTaskRescheduled, ki_protect

if TYPE_CHECKING:
    from trio.lowlevel import Task

    from ._manager import UringIOManager

    RaiseCancel = Callable[[], object]

PREPARED: Final = 0
SUBMITTED: Final = 1
CANCELLING: Final = 2
EXPIRED: Final = 3
ABANDONED: Final = 4
COMPLETED: Final = 5

STATE_NAMES: Final = ("PREPARED", "SUBMITTED", "CANCELLING", "EXPIRED", "ABANDONED", "COMPLETED")

#: The state diagram: (state, transition) -> the state it leads to.  Each transition is
#: the :class:`Operation` method of that name; the module docstring draws this table
#: (``tests/test_operation.py`` checks that they agree, and with docs/contributing.rst).
TRANSITIONS: Final[dict[tuple[str, str], str]] = {
    ("PREPARED", "start"): "SUBMITTED",
    ("COMPLETED", "start"): "SUBMITTED",
    ("SUBMITTED", "start"): "SUBMITTED",
    ("SUBMITTED", "cancelling"): "CANCELLING",
    ("SUBMITTED", "expire"): "EXPIRED",
    ("EXPIRED", "restart"): "SUBMITTED",
    ("SUBMITTED", "detach"): "ABANDONED",
    ("CANCELLING", "detach"): "ABANDONED",
    ("SUBMITTED", "retire"): "COMPLETED",
    ("CANCELLING", "retire"): "COMPLETED",
    ("EXPIRED", "retire"): "COMPLETED",
    ("ABANDONED", "retire"): "COMPLETED",
    ("PREPARED", "retire"): "COMPLETED",
}

#: ``user_data`` values below :data:`UD_FIRST` are the manager's own; :data:`UD_IGNORE` (0)
#: marks a CQE to ignore (a linked timeout's, an ``ASYNC_CANCEL``'s), :data:`UD_WAKEUP`
#: the eventfd poll of ``force_wakeup``.  Operations get fresh ones from :data:`UD_FIRST` on.
UD_IGNORE: Final = 0
UD_WAKEUP: Final = 1
UD_FIRST: Final = 16
_ECANCELED: Final = -errno.ECANCELED
_EINTR: Final = -errno.EINTR
#: The kernel's internal "restart the syscall" codes (ERESTARTSYS, ERESTARTNOINTR,
#: ERESTARTNOHAND, ERESTART_RESTARTBLOCK): io-wq reports them for a blocking
#: request (an open of a FIFO, ...) that a cancel interrupted.  They mean
#: "cancelled" and never reach the user.
RESTART_CODES: Final = frozenset({-512, -513, -514, -516})

#: Releases an export: the ring extension's (which also takes cffi's), else cffi's.
_release: Final = ffi.release if ext is None else ext.release
_READY: Final = READY


def export(obj: object, writable: bool = False) -> Any:
    """Export ``obj``'s buffer to C: the one place a caller's buffer is exported.

    Raises ``TypeError`` the way the stdlib's socket and os functions do for a
    ``str``, a non-buffer or (``writable``) a read-only buffer.  The export must
    be released with ``ffi.release``; :meth:`Operation.export` does that at
    completion.
    """
    if isinstance(obj, str):
        raise TypeError("a bytes-like object is required, not 'str'")
    try:
        return ffi.from_buffer(obj, require_writable=writable)
    except (TypeError, BufferError):
        pass
    buffer_nbytes(obj, writable)  # raises the TypeError that says why (non-contiguous, ...)
    if writable:
        raise TypeError(f"a writable bytes-like object is required, not {type(obj).__name__!r}")
    raise TypeError(f"a bytes-like object is required, not {type(obj).__name__!r}")


def buffer_nbytes(obj: object, writable: bool = False) -> int:
    """Check ``obj`` the way :func:`export` will, without keeping an export; return its size.

    For validating arguments before anything is submitted.
    """
    if isinstance(obj, str):
        raise TypeError("a bytes-like object is required, not 'str'")
    try:
        view = memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not {type(obj).__name__!r}") from None
    with view:
        if not view.c_contiguous:
            raise TypeError(f"a contiguous bytes-like object is required, not {view!r}")
        if writable and view.readonly:
            raise TypeError(f"a writable bytes-like object is required, not {type(obj).__name__!r}")
        return view.nbytes


class Operation:
    """One io_uring request: its identity, state, waiter and the memory it lends the kernel.

    Subclasses decide what their CQEs mean (:meth:`on_cqe`); everything else (one
    start, one cancel, one wait) is shared.
    """

    __slots__ = (
        "closing",
        "exports",
        "fd",
        "fd_in",
        "keep",
        "link_pos",
        "manager",
        "raise_cancel",
        "res",
        "sq_pos",
        "sqe",
        "state",
        "sticky",
        "task",
        "user_data",
    )

    def __init__(self, manager: UringIOManager, fd: int = -1) -> None:
        self.manager = manager
        #: Identity of the request in flight (its SQE's user_data).
        self.user_data = 0
        self.fd = fd
        #: A second fd the request uses (a splice's input), else -1: notify_closing
        #: of either fd reaches the operation.
        self.fd_in = -1
        #: The waiter, if a task is parked on this operation.
        self.task: Task | None = None
        self.state = PREPARED
        self.sq_pos = -1
        self.link_pos = -1
        self.res = 0
        #: Memory the kernel may touch (not exported buffers): kept until completion.
        self.keep: object = None
        #: Buffer exports this operation owns: None, one (a cffi cdata or the ring
        #: extension's Export), or a list of them.
        self.exports: Any = None
        self.raise_cancel: RaiseCancel | None = None
        self.closing = False
        #: The SQE's fields, kept to resubmit after a linked timeout (None: not linked).
        self.sqe: tuple[Any, ...] | None = None  # an _sqe.Sqe, kept to write it again
        #: A recycled record that stays in the manager's notify_closing index between
        #: operations (see ``UringIOManager.recycled_operation``).
        self.sticky = False

    # ------------------------------------------------------- transitions
    # The only code that assigns ``state`` (see the module docstring's diagram;
    # on_cqe's inlined retire is the one copy, for speed).
    def start(self, user_data: int, task: Task | None, keep: object) -> None:
        """``SUBMITTED`` under ``user_data``: the manager is writing its SQE.

        ``task`` parks on it (None: nobody does); ``keep`` is memory the kernel
        touches, held until completion.
        """
        self.user_data = user_data
        self.task = task
        self.state = SUBMITTED
        self.keep = keep

    def cancelling(self) -> None:
        """``CANCELLING``: the manager submitted ``IORING_OP_ASYNC_CANCEL`` for it."""
        self.state = CANCELLING

    def expire(self) -> None:
        """``EXPIRED``: its linked timeout ended it in the kernel, trio did not cancel it."""
        self.state = EXPIRED

    def restart(self) -> None:
        """``SUBMITTED`` again after ``EXPIRED``: the manager writes the same SQE again."""
        self.state = SUBMITTED

    def detach(self) -> None:
        """The waiter leaves for good: nobody is woken; memory stays held until the final CQE.

        ``SUBMITTED`` or ``CANCELLING`` become ``ABANDONED``; any other state stays.
        """
        self.task = None
        if self.state == SUBMITTED or self.state == CANCELLING:
            self.state = ABANDONED

    def retire(self) -> None:
        """``COMPLETED`` without waking anyone; its memory is released.  Idempotent.

        Only once the kernel is done with it: its final CQE arrived, its SQE was
        withdrawn before the kernel saw it, or it was never written.
        """
        self.state = COMPLETED
        self.release()

    # ------------------------------------------------------------ memory
    def export(self, obj: object, writable: bool = False) -> Any:
        """Export ``obj`` (see :func:`~trio_uring._core._operation.export`); released when
        this operation completes."""
        cdata = export(obj, writable)
        self.hold(cdata)
        return cdata

    def hold(self, cdata: Any) -> None:
        """Keep the export ``cdata`` until this operation completes (:meth:`release`
        lets go of it): the one place an operation takes an export into its care."""
        held = self.exports
        if held is None:
            self.exports = cdata
        elif type(held) is list:
            held.append(cdata)
        else:
            self.exports = [held, cdata]

    def release(self) -> None:
        """Let go of the exports and the memory the kernel could touch.  Idempotent.

        Only for a record the kernel is done with: never submitted, withdrawn, or
        completed (:meth:`retire`).
        """
        held = self.exports
        if held is not None:
            self.exports = None
            if type(held) is list:
                for cdata in held:
                    _release(cdata)
            else:
                _release(held)
        self.keep = None

    # ------------------------------------------------------- completion
    def on_cqe(self, res: int, flags: int) -> None:
        """The final CQE of a one-shot request (subclasses with several CQEs override)."""
        self.res = res
        if (
            res == _ECANCELED
            and self.state == SUBMITTED
            and self.sqe is not None
            and self.task is not None
        ):
            # Our linked timeout fired, but trio has not cancelled the task (yet):
            # trio stays authoritative.  Park until it aborts, else resubmit.
            self.manager.linked_timeout_expired(self)
            return
        # complete() (retire() + wake), inlined: this is every one-shot operation's path.
        # (the one assignment of ``state`` outside the transition methods above)
        self.state = COMPLETED
        self.release()
        task = self.task
        if task is not None:
            self.task = None
            self.manager.reschedule(task, _READY)

    def complete(self) -> None:
        """The kernel is done: release the memory, wake the waiter with ``READY``."""
        self.retire()
        task = self.task
        if task is not None:
            self.task = None
            self.manager.reschedule(task, _READY)

    # ------------------------------------------------------------- wait
    def __await__(self) -> Generator[Any, Any, int]:
        """Park until the final CQE; return ``cqe->res`` or raise (see :meth:`result`)."""
        msg = yield WaitTaskRescheduled(self.abort)
        if msg is not _READY:
            try:
                msg.unwrap()
            finally:
                del msg  # the outcome must not outlive the raise (no cycle via the frame)
        res = self.res
        return res if res >= 0 else self.result()

    def abort(self, raise_cancel: RaiseCancel) -> Abort:
        """trio's abort function for a parked waiter (the manager's ``withdraw`` decides).

        Before the kernel saw the SQE: it becomes a NOP, the operation never
        happened, ``Abort.SUCCEEDED``.  After: ``ASYNC_CANCEL``, ``Abort.FAILED``;
        the final CQE decides (``-ECANCELED`` raises ``Cancelled``, anything else is
        the real result).
        """
        manager = self.manager
        if self.state == EXPIRED:
            # The linked timeout already ended it in the kernel: nothing to cancel.
            manager.forget_expired(self)
            self.task = None
            self.retire()
            return Abort.SUCCEEDED
        if manager.withdraw(self):
            self.task = None
            return Abort.SUCCEEDED
        self.raise_cancel = raise_cancel
        return Abort.FAILED

    def on_closing(self) -> None:
        """``notify_closing`` for this operation's fd: the waiter gets ``ClosedResourceError``
        unless the operation completes anyway."""
        if self.task is None or self.closing:
            return
        self.closing = True
        manager = self.manager
        if self.state == EXPIRED:
            manager.forget_expired(self)
            self.retire()
            self.wake_closed()
        elif manager.withdraw(self):
            self.wake_closed()

    def wake_closed(self, what: str = "resource") -> None:
        """Wake the waiter, if any, with ``ClosedResourceError`` (its fd was closed)."""
        task = self.task
        if task is not None:
            self.task = None
            error = trio.ClosedResourceError(f"another task closed this {what}")
            trio.lowlevel.reschedule(task, outcome.Error(error))

    def cancellable(self) -> bool:
        """Whether an ``ASYNC_CANCEL`` can end this operation (not: a pending notification)."""
        return True

    def pinned_bytes(self) -> int:
        """Bytes of exported buffers the kernel may still touch (for reports)."""
        held = self.exports
        if held is None:
            return 0
        if type(held) is list:
            return sum(len(c) for c in held)
        return len(held)

    def result(self) -> int:
        """Turn the final CQE into the operation's result, or raise.

        ``-ECANCELED`` (and the kernel's restart codes) after a cancel raise
        ``Cancelled``, after ``notify_closing`` ``ClosedResourceError``; any other
        negative result raises ``OSError`` with that errno.
        """
        res = self.res
        if res >= 0:
            return res
        if res in RESTART_CODES:
            res = _ECANCELED
        if res == _ECANCELED or (res == _EINTR and self.raise_cancel is not None):
            if self.raise_cancel is not None:
                self.raise_cancel()
            if self.closing:
                raise trio.ClosedResourceError("another task closed this resource")
        raise OSError(-res, os.strerror(-res))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ud={self.user_data} fd={self.fd} {STATE_NAMES[self.state]}>"


# The wait and the cancel run KeyboardInterrupt-protected (see _manager's list).
ki_protect(
    Operation.__await__,
    Operation.abort,
    Operation.on_cqe,
    Operation.on_closing,
    Operation.export,
    Operation.release,
    Operation.complete,
    Operation.retire,
    Operation.wake_closed,
    Operation.detach,
    Operation.start,
    Operation.cancelling,
    Operation.expire,
    Operation.restart,
    Operation.result,
)
