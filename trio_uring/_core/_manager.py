"""``UringIOManager``: trio's I/O manager protocol on one io_uring instance.

trio's Runner calls ``get_events``/``process_events`` once per loop tick and the
``wait_readable``/``wait_writable``/``notify_closing`` trio API dispatches here.
Completion-based operations (``trio_uring.lowlevel``) are started by
:meth:`UringIOManager.submit` (waited for by ``perform``) and taken back by
:meth:`UringIOManager.withdraw`.

Rules this module keeps (see docs/mapping.rst):

* An operation's identity is a fresh 64-bit ``user_data``; it is never reused
  until the operation's final CQE (one without ``IORING_CQE_F_MORE``).
* SQEs are written when the operation starts and submitted in one
  ``io_uring_enter`` per loop tick (``get_events``), together with the wait.
  In guest mode (where ``get_events`` runs in a worker thread) every SQE is
  submitted at once from the trio thread instead, so no request is ever tied to
  a short-lived worker thread.
* Readiness waits (POLL_ADD) abort with ``Abort.SUCCEEDED``.  Data-moving
  operations abort with ``Abort.FAILED`` after submitting ``ASYNC_CANCEL``: the
  task stays parked until the operation's own CQE and gets its real result if
  the operation completed anyway (trio's IOCP ``wait_overlapped`` pattern).
* An SQE the kernel has not consumed yet is turned into a NOP instead of being
  cancelled, so an operation aborted before submission costs no cancel SQE.
* Memory the kernel may touch stays referenced from the operation record until
  its final CQE (the lifecycle and the buffer rule: :mod:`trio_uring._core._operation`).
* A forked child cannot use its parent's ring: touching it raises ``RuntimeError``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import threading
from collections.abc import Callable
from math import inf
from typing import TYPE_CHECKING, Any, ClassVar, Final, cast

import trio
from trio import current_effective_deadline
from trio.lowlevel import (
    checkpoint,
    checkpoint_if_cancelled,
    reschedule,
)

from . import _kernels, _readiness, _shutdown, _sqe, _timeouts, _trio_compat
from ._constants import (
    CQE_F_MORE,
    FEAT_CQE_SKIP,
    IOSQE_CQE_SKIP_SUCCESS,
    MAX_RW_COUNT,
    POLL_ADD_MULTI,
    SQ_CQ_OVERFLOW,
    SQ_TASKRUN,
    Op,
)
from ._operation import (
    ABANDONED,
    CANCELLING,
    EXPIRED,
    SUBMITTED,
    UD_FIRST,
    UD_IGNORE,
    UD_WAKEUP,
    Operation,
    export,
)
from ._ring import CQE_SIZE, DEFAULT_ENTRIES, Ring, ext
from ._ring_cffi import ffi, lib
from ._shutdown import lingering as lingering  # (re-exported: tests and tools read it here)
from ._sqe import Sqe, restartable
from ._statistics import UringStatistics as UringStatistics  # (re-exported)
from ._trio_compat import READY

if TYPE_CHECKING:
    RaiseCancel = Callable[[], object]

_POLLIN: Final = 0x001
_EINTR: Final = -errno.EINTR
_ETIME: Final = -errno.ETIME
_SPLICE: Final = int(Op.SPLICE)

#: user_data values below _UD_FIRST are internal (see _operation.py).
_UD_IGNORE: Final = UD_IGNORE
_UD_WAKEUP: Final = UD_WAKEUP
_UD_FIRST: Final = UD_FIRST

# Final: a compiled build keeps these in C statics instead of looking them up by name.
_unpack_cqes: Final = struct.Struct("=QiI").iter_unpack
_from_buffer: Final = ffi.from_buffer
_run_context: Final = _trio_compat.GLOBAL_RUN_CONTEXT
_DEADLINES: Final = _trio_compat.DEADLINES
_tu_prep: Final = lib.tu_prep
#: The ring extension's export and SQE prep (None: cffi's ``from_buffer``/``tu_prep``).
_ext_export: Final[Any] = None if ext is None else ext.export
_ext_prep: Final[Any] = None if ext is None else ext.prep
_NULL: Final = ffi.NULL
_READY: Final = READY

#: Called with the manager at the first loop tick of every run on io_uring, on the
#: trio thread with the run context set (before any task has run).  Used to set
#: per-run state such as trio's custom socket factory.
run_start_hooks: list[Callable[[UringIOManager], None]] = []


class _WakeupOp(Operation):
    """Multishot poll on the eventfd that ``force_wakeup`` writes."""

    __slots__ = ()

    def on_cqe(self, res: int, flags: int) -> None:
        try:
            os.eventfd_read(self.fd)
        except (BlockingIOError, OSError):
            pass
        if not flags & CQE_F_MORE and not self.manager._closed:
            self.manager._arm_wakeup()


class UringIOManager:
    """trio's I/O manager protocol, driven by one io_uring instance."""

    #: Submission queue size; the completion queue is ``cq_factor`` times larger.
    #: A full SQ is submitted and filling continues; CQ overflow is kept by the
    #: kernel (``IORING_FEAT_NODROP``) and flushed on the next ``io_uring_enter``.
    sq_entries: ClassVar[int] = DEFAULT_ENTRIES
    #: Link an operation to a LINK_TIMEOUT only if some deadline of the run is
    #: within this many seconds (see ``_deadline_is_near``).
    link_horizon: ClassVar[float] = 2.0
    #: The completion queue's size as a multiple of the submission queue's.
    cq_factor: ClassVar[int] = 8
    #: How long ``close()`` waits for cancelled requests to end before it leaves
    #: the rest to the kernel (see ``trio_uring._core._manager.lingering()``).
    drain_timeout: ClassVar[float] = 1.0

    def __init__(self, sq_entries: int | None = None, cq_factor: int | None = None) -> None:
        self._closed = True
        self._draining = False
        self._forked_from: int | None = None
        _shutdown.reap_lingering()
        self._ring = Ring(sq_entries or self.sq_entries, cq_factor or self.cq_factor)
        self._r = self._ring.handle
        #: The ring's C state as an address, for the ring extension (kept boxed).
        self._r_addr: object = self._ring.address
        self._closed = False
        self._fresh = True
        self._owner = threading.get_ident()
        self._pid = os.getpid()
        self._guest: bool | None = None
        self._next_ud = _UD_FIRST
        #: The run's ``Runner.reschedule`` once bound (trio's public wrapper until then;
        #: the ring extension's equivalent where ``_trio_compat.fast_reschedule`` allows).
        self.reschedule: Callable[..., None] = reschedule
        #: Every operation whose final CQE has not arrived, by user_data.
        self._ops: dict[int, Operation] = {}
        #: Operations by fd (``_fd_ops[fd]``), for notify_closing: an operation is
        #: appended at submit; finished ones are dropped in bulk (every 64th submit
        #: prunes its fd's list) or when the fd is closed.  No hashing or removal on
        #: the hot path.
        self._fd_ops: list[list[Operation]] = []
        self._readiness = _readiness.Readiness(self)
        self._timeouts = _timeouts.LinkedTimeouts(self)
        self._stash: list[bytes] = []
        #: Operations whose owner was dropped unclosed (:meth:`end_dropped`): ended at
        #: the next :meth:`process_events`, on the run's thread.
        self._dropped: list[Operation] = []
        #: Guest mode reaps in the worker thread; a full SQ may make the trio thread reap.
        self._reap_lock = threading.Lock()
        self._cqbuf = ffi.new("char[]", self._ring.cq_entries * CQE_SIZE)
        self._cqbuf_max = self._ring.cq_entries
        self._skip_flag = IOSQE_CQE_SKIP_SUCCESS if self._ring.features & FEAT_CQE_SKIP else 0
        #: Link deadlines to IORING_OP_LINK_TIMEOUT (Linux 5.5+); else trio cancels via ASYNC_CANCEL.
        self.linked_timeouts_enabled = self._ring.supports(Op.LINK_TIMEOUT)
        #: The ``RegisteredBuffers`` set of this ring, kept alive until unregistered.
        self.registered_buffers: Any = None
        self._async_cancels = 0
        #: Counters of zero-copy sends (``trio_uring._ops._zerocopy`` counts them):
        #: ``IORING_OP_SEND_ZC`` requests submitted, ...
        self.zerocopy_sends = 0
        #: ... their notifications received, ...
        self.zerocopy_notifications = 0
        #: ... and those that reported the kernel copied the data anyway (see
        #: :class:`UringStatistics`).
        self.zerocopy_copied = 0
        #: None, or a dict that counts readiness waits (``wait_readable``,
        #: ``wait_writable``) by fd: tests set it to check a path moves data without them.
        self.readiness_waits: dict[int, int] | None = None
        try:
            self._wakefd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except BaseException:
            self._ring.close()
            self._closed = True
            raise
        self._wakeup = _WakeupOp(self, self._wakefd)
        self._wakeup.user_data = _UD_WAKEUP
        self._arm_wakeup()
        self._fork_handle = _shutdown.track(self)

    # ------------------------------------------------------------------ ring
    @property
    def ring(self) -> Ring:
        """This manager's ring (its set-up, features, and the opcodes it supports:
        ``Ring.has``, ``Ring.supports``)."""
        return self._ring

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran or is running (the ring takes no new requests).

        While ``close`` drains, operations that end must not start new ones (a
        multishot that would re-arm itself): they see True here.
        """
        return self._closed or self._draining

    @property
    def guest(self) -> bool:
        """Whether this run is a guest run (SQEs are submitted at once)."""
        if self._guest is None:
            self._bind_run()
        return bool(self._guest)

    def supports(self, op: Op) -> bool:
        """Whether the running kernel implements ``op`` (``IORING_REGISTER_PROBE``)."""
        return self._ring.supports(op)

    def register(self, opcode: int, arg: Any, nr_args: int) -> int:
        """``io_uring_register(2)`` on this ring; returns the result (``-errno`` on failure)."""
        self._check_owner()
        if self._closed:
            return -errno.EBADF
        rc: int = lib.tu_register(self._r, opcode, arg, nr_args)
        return rc

    def _check_owner(self) -> None:
        if self._forked_from is not None:
            raise RuntimeError(
                f"this trio_uring run belongs to process {self._forked_from}: an io_uring is "
                "not inherited across fork(); a forked child must start its own run"
            )

    def _arm_wakeup(self) -> None:
        """(Re-)arm the poll on the wake-up eventfd: multishot where the kernel has it (5.13)."""
        multi = POLL_ADD_MULTI if self._ring.has(_kernels.MULTISHOT_POLL) else 0
        self._ops[_UD_WAKEUP] = self._wakeup  # a one-shot poll's final CQE removed it
        self._prep(_sqe.poll_add(self._wakefd, _POLLIN, multishot=bool(multi)), _UD_WAKEUP)

    def _prep(self, sqe: Sqe, user_data: int, link: int = 0) -> int:
        """Write ``sqe`` (with the extra ``link`` flags); return its SQ position.

        Makes room if the SQ is full.
        """
        opcode, sqe_flags, fd, off, addr, length, op_flags, buf_index, file_index, ioprio = sqe
        sqe_flags |= link
        pos: int = lib.tu_prep(
            self._r, opcode, sqe_flags, fd, off, addr, length, op_flags,
            user_data, buf_index, file_index, ioprio,
        )  # fmt: skip
        while pos < 0:
            self._make_room(pos)
            pos = lib.tu_prep(
                self._r, opcode, sqe_flags, fd, off, addr, length, op_flags,
                user_data, buf_index, file_index, ioprio,
            )  # fmt: skip
        return pos

    def _make_room(self, err: int) -> None:
        """The SQ was full and submitting failed (CQ overflow): reap, then retry."""
        self._check_owner()
        if err not in (-errno.EBUSY, -errno.EAGAIN, _EINTR):
            raise OSError(-err, "io_uring submission failed: " + os.strerror(-err))
        with self._reap_lock:  # guest mode: the worker thread may be reaping too
            self._stash.append(self._reap_locked())

    def _write_async_cancel(self, target: int) -> None:
        """Write an ``IORING_OP_ASYNC_CANCEL`` SQE for the user_data ``target``; its own CQE
        is ignored.  (Only the SQE: :meth:`withdraw` and :meth:`async_cancel` decide.)"""
        self._async_cancels += 1
        pos = lib.tu_prep_u64(
            self._r, Op.ASYNC_CANCEL, self._skip_flag, -1, 0, target, 0, 0, _UD_IGNORE
        )
        while pos < 0:
            self._make_room(pos)
            pos = lib.tu_prep_u64(
                self._r, Op.ASYNC_CANCEL, self._skip_flag, -1, 0, target, 0, 0, _UD_IGNORE
            )
        if self._guest:
            self._submit_now()

    def _unsubmit(self, op: Operation) -> bool:
        """Turn ``op``'s SQE (and its linked timeout) into NOPs if not yet submitted."""
        if self._guest:
            return False
        if lib.tu_nop_if_unsubmitted(self._r, op.sq_pos, op.user_data):
            if op.link_pos >= 0:  # (written right after it, in the same tick)
                lib.tu_nop_if_unsubmitted(self._r, op.link_pos, _UD_IGNORE)
            return True
        return False

    # ------------------------------------------------ the operation lifecycle
    def withdraw(self, op: Operation) -> bool:
        """Take back ``op``: the one cancellation path, which decides how an operation is cancelled.

        If the kernel has not consumed its SQE, the SQE becomes a NOP, the
        operation completes without having happened (its memory is released) and
        True is returned.  Otherwise ``ASYNC_CANCEL`` is submitted, the operation
        is ``CANCELLING`` and False is returned: its own CQE is still coming.
        On a closed manager True is returned (nobody can wait any more), but an
        operation the kernel may still hold (a lingering ring's) keeps its memory
        until its final CQE: it is only detached.
        """
        if self._closed:
            if self._ops.get(op.user_data) is op and self._forked_from is None:
                # A run that ended with this request still in the kernel (a lingering
                # ring): its memory stays referenced until the final CQE, which the
                # lingering ring's reaper dispatches.  Nobody waits for it any more.
                op.detach()
            else:
                op.retire()
            return True
        if self._unsubmit(op):
            self._ops.pop(op.user_data, None)
            op.retire()
            return True
        if op.state != CANCELLING:
            op.cancelling()
            self._write_async_cancel(op.user_data)
        return False

    def submit(
        self,
        sqe: Sqe,
        *,
        keep: object = None,
        op: Operation | None = None,
        deadline: float = inf,
        buffer: object = None,
        writable: bool = False,
        waiter: bool = True,
    ) -> Operation:
        """Start one operation: the one place that writes an operation's SQE and tracks it.

        ``sqe`` comes from the builder for its opcode in ``trio_uring._core._sqe``.

        ``await op`` is :meth:`perform`'s wait: the same cancellation, results and
        errors.  The caller must await the returned op before its next checkpoint,
        and in guest mode must have passed ``checkpoint_if_cancelled()`` first
        (``perform`` does both, and picks ``deadline``: a finite one links the SQE
        to an ``IORING_OP_LINK_TIMEOUT`` at that trio time).  Hot paths that need no
        deadline link call this directly.

        ``buffer``: a caller's buffer the kernel reads (or, ``writable``, writes);
        the operation exports it and releases the export at completion.  Then the
        SQE's ``buf`` is a byte offset into it and a negative length means "the
        rest of it"; the address and length are taken from that one export, in
        this call, and a range outside it raises ``ValueError``.  A buffer of the
        wrong type raises ``TypeError`` before anything is submitted.  ``keep``:
        other memory the kernel touches, held until completion.

        ``op`` is a record of an :class:`~trio_uring._core._operation.Operation`
        subclass, or one the caller recycles (a stream's send slot); it must not be
        in flight.  ``waiter``: the current task waits for it (False for operations
        nobody parks on).  If this raises, ``op`` is ``COMPLETED`` and its memory
        released: nothing reached the kernel.
        """
        opcode, sqe_flags, fd, off, addr, length, op_flags, buf_index, file_index, ioprio = sqe
        if op is None:
            op = Operation(self, fd)
        else:
            op.fd = fd
            if op.raise_cancel is not None or op.closing or op.sqe is not None:
                # A recycled record that was cancelled, closed or linked: forget that.
                op.raise_cancel = None
                op.closing = False
                op.link_pos = -1
                op.sqe = None
        ud = self._next_ud
        self._next_ud = ud + 1
        try:
            # With the ring extension, an SQE whose ``buf`` is a buffer offset (or NULL)
            # is written by its ``prep``, which checks the range in C: ``base`` is the
            # extension's export (or None).
            base: object = None
            fast = _ext_prep is not None and deadline == inf
            if buffer is not None:
                # Operation.export() with the ring extension's export when it writes the SQE.
                try:
                    if fast:
                        cbuf = base = _ext_export(buffer, writable)
                    elif writable:
                        cbuf = _from_buffer(buffer, require_writable=True)
                    else:
                        cbuf = _from_buffer(buffer)
                except (TypeError, BufferError):
                    export(buffer, writable)  # raises the stdlib's TypeError for it
                    raise
                op.hold(cbuf)
                if not fast:
                    # The address and the length come from this one export, checked here.
                    size = len(cbuf)
                    if length < 0:
                        length = size - addr
                        if length > MAX_RW_COUNT:
                            length = MAX_RW_COUNT
                    if addr < 0 or length < 0 or addr + length > size:
                        raise ValueError(
                            f"the SQE's buffer range [{addr}, {addr + length}) lies outside "
                            f"the {size}-byte buffer"
                        )
                    addr = cbuf + addr if addr else cbuf
            elif fast and addr is _NULL:
                addr = 0
            else:
                fast = False
            op.start(ud, _run_context.task if waiter else None, keep)
            if fast:
                pos: int = _ext_prep(
                    self._r_addr, opcode, sqe_flags, fd, off, addr, length, op_flags, ud,
                    buf_index, file_index, ioprio, base,
                )  # fmt: skip
                while pos < 0:
                    self._make_room(pos)
                    pos = _ext_prep(
                        self._r_addr, opcode, sqe_flags, fd, off, addr, length, op_flags, ud,
                        buf_index, file_index, ioprio, base,
                    )  # fmt: skip
                op.sq_pos = pos
            elif deadline == inf:
                # _prep(), inlined: this is every operation's path without the extension.
                pos = _tu_prep(
                    self._r, opcode, sqe_flags, fd, off, addr, length, op_flags, ud, buf_index,
                    file_index, ioprio,
                )  # fmt: skip
                while pos < 0:
                    self._make_room(pos)
                    pos = _tu_prep(
                        self._r, opcode, sqe_flags, fd, off, addr, length, op_flags, ud,
                        buf_index, file_index, ioprio,
                    )  # fmt: skip
                op.sq_pos = pos
            else:
                op.sqe = (opcode, sqe_flags, fd, off, addr, length, op_flags, buf_index, file_index, ioprio)  # fmt: skip
                self._timeouts.submit_linked(op, deadline)
        except BaseException:
            op.retire()  # the one rollback: nothing reached the kernel
            raise
        self._ops[ud] = op
        if opcode == _SPLICE:
            # A splice uses two fds: notify_closing of either must reach it.
            op.fd_in = fd_in = file_index if file_index < 0x80000000 else -1
            if fd_in >= 0:
                listed = self._fd_index(fd_in)
                listed.append(op)
                if len(listed) > 64:
                    listed[:] = [o for o in listed if SUBMITTED <= o.state <= EXPIRED]
        elif op.fd_in >= 0:
            op.fd_in = -1
        if fd >= 0 and not op.sticky:  # (AT_FDCWD, -1: not an fd anyone closes)
            try:
                same_fd = self._fd_ops[fd]
            except IndexError:
                same_fd = self._grow_fd_index(fd)
            same_fd.append(op)
            if not ud & 63:
                # Finished operations stay listed until here (or notify_closing):
                # dropping them in bulk is cheaper than removing each at completion.
                same_fd[:] = [o for o in same_fd if SUBMITTED <= o.state <= EXPIRED or o.sticky]
        if self._guest:
            self._submit_now()
        return op

    def recycled_operation(self, fd: int) -> Operation:
        """A record its caller submits again and again on ``fd``, one operation at a time.

        It stays in the notify_closing index for good (a stream's send slot), so
        each submit saves the index update.
        """
        op = Operation(self, fd)
        op.sticky = True
        if fd >= len(self._fd_ops):
            self._grow_fd_index(fd)
        self._fd_ops[fd].append(op)
        return op

    def _fd_index(self, fd: int) -> list[Operation]:
        """The notify_closing index's list for ``fd``."""
        try:
            return self._fd_ops[fd]
        except IndexError:
            return self._grow_fd_index(fd)

    def _grow_fd_index(self, fd: int) -> list[Operation]:
        """Make room in the notify_closing index for ``fd``; return its list."""
        fd_ops = self._fd_ops
        fd_ops.extend([] for _ in range(fd + 1 - len(fd_ops)))
        return fd_ops[fd]

    def async_cancel(self, op: Operation) -> None:
        """Ask the kernel to end ``op`` (``ASYNC_CANCEL``), which must have no waiter.

        For operations nobody parks on (a multishot receive that should stop);
        their final CQE still comes and completes them.  Unlike :meth:`withdraw`
        (a waiter's cancel), it never turns the SQE into a NOP and never wakes or
        forgets anyone.
        """
        if not self._closed and op.state == SUBMITTED:
            op.cancelling()
            self._write_async_cancel(op.user_data)

    def end_dropped(self, op: Operation) -> None:
        """Ask for ``op`` (which has no waiter) to be ended with ``ASYNC_CANCEL`` at the next
        :meth:`process_events`, as :meth:`async_cancel` would.

        For finalizers (``__del__`` of an object dropped without being closed), which
        the garbage collector may run at any point and on any thread: this only
        appends to a list, which the run's thread reads before its next wait (and in
        guest mode when it processes events), woken at once if it is waiting (the
        finalizer may run on another thread).  ``op`` stays in the manager's table
        until its final CQE.
        """
        self._dropped.append(op)
        self.force_wakeup()

    def _end_dropped(self) -> None:
        dropped = self._dropped
        while dropped:
            self.async_cancel(dropped.pop())

    def linked_timeout_expired(self, op: Operation) -> None:
        """``op``'s linked timeout ended it, but trio has not cancelled its task (yet).

        trio stays authoritative: the task stays parked; if trio aborts the wait,
        it gets ``Cancelled``; else the next loop tick resubmits the operation.
        """
        self._timeouts.expire(op)

    def forget_expired(self, op: Operation) -> None:
        """``op`` is ``EXPIRED`` and will not be started again (trio cancelled it, or its fd
        was closed): drop it from the list the next loop tick resubmits."""
        self._timeouts.forget(op)

    def _submit_now(self) -> None:
        rc = lib.tu_submit(self._r)
        while rc < 0:
            if rc == _EINTR:
                rc = lib.tu_submit(self._r)
                continue
            self._make_room(rc)
            rc = lib.tu_submit(self._r)

    def _bind_run(self) -> bool:
        """Learn what only the running Runner knows: guest mode, its clock, its deadlines."""
        runner = _trio_compat.current_runner()
        self._guest = guest = bool(runner.is_guest)
        self._timeouts.bind(runner)
        _trio_compat.speed_up_instrument_checks(runner)
        # trio's Runner.reschedule, compiled by the ring extension where it can be.
        self.reschedule = _trio_compat.fast_reschedule(runner, ext)
        return guest

    # ------------------------------------------------------- trio's protocol
    def get_events(self, timeout: float) -> bytes:
        """Submit queued SQEs, wait up to ``timeout`` seconds, return the CQEs reaped.

        The result is falsy only if the timeout expired with nothing to do:
        ``force_wakeup`` and signals (EINTR) never look like a timeout.
        """
        r = self._r
        if threading.get_ident() != self._owner:
            # Guest mode worker thread: only wait; the trio thread submits.
            ns = int(timeout * 1e9)
            rc = lib.tu_wait(r, 0, 1, ns)
            if rc == _EINTR:
                return b"\0" * CQE_SIZE  # a CQE for user_data 0: truthy, ignored
            return self._reap()
        if self._forked_from is not None:
            self._check_owner()
        if self._dropped:  # (before the wait: their cancels go in this enter)
            self._end_dropped()
        timeouts = self._timeouts
        if timeouts.expired:
            timeouts.resubmit_expired()
        if timeout <= 0 or lib.tu_cq_ready(r) or self._stash:
            # Enter only to submit, to flush an overflowed CQ, or to run completions
            # the kernel left for our next entry (COOP_TASKRUN sets SQ_TASKRUN).
            if lib.tu_unsubmitted(r) or lib.tu_sq_flags(r) & (SQ_CQ_OVERFLOW | SQ_TASKRUN):
                rc = lib.tu_wait(r, 1, 0, 0)
                if rc < 0 and rc not in (_ETIME, _EINTR, -errno.EBUSY, -errno.EAGAIN):
                    raise OSError(-rc, os.strerror(-rc))
        else:
            rc = lib.tu_wait(r, 1, 1, int(timeout * 1e9))
            if rc == _EINTR:
                # A signal arrived; trio's wakeup fd will tell the loop why.
                return self._reap() or b"\0" * CQE_SIZE
            if rc < 0 and rc not in (_ETIME, -errno.EBUSY, -errno.EAGAIN):
                raise OSError(-rc, os.strerror(-rc))
        return self._reap()

    def _reap(self) -> bytes:
        with self._reap_lock:
            return self._reap_locked()

    def _reap_locked(self) -> bytes:
        r = self._r
        buf = self._cqbuf
        n = lib.tu_reap(r, buf, self._cqbuf_max)
        data: bytes = ffi.buffer(buf, n * CQE_SIZE)[:]
        if self._stash:
            data = b"".join(self._stash) + data
            self._stash.clear()
        while n == self._cqbuf_max:
            n = lib.tu_reap(r, buf, self._cqbuf_max)
            data += ffi.buffer(buf, n * CQE_SIZE)[:]
        return data

    def process_events(self, events: bytes | list[object]) -> None:
        """Dispatch reaped CQEs: wake the tasks whose operations completed."""
        if self._fresh:
            self._fresh = False
            if self._guest is None:
                with contextlib.suppress(RuntimeError):  # a manager driven outside a run
                    self._bind_run()
            for hook in run_start_hooks:
                hook(self)
        if self._dropped:
            self._end_dropped()
        if not events:
            return
        ops = self._ops
        for user_data, res, flags in _unpack_cqes(cast("bytes", events)):
            if flags & CQE_F_MORE:
                op = ops.get(user_data)
            else:
                op = ops.pop(user_data, None)
            if op is not None:
                op.on_cqe(res, flags)

    def force_wakeup(self) -> None:
        """Make a concurrent or the next ``get_events`` return at once.

        Thread-safe and async-signal-safe: it only writes an eventfd.
        """
        try:
            os.eventfd_write(self._wakefd, 1)
        except OSError:
            pass

    def statistics(self) -> UringStatistics:
        """What ``trio.lowlevel.current_statistics().io_statistics`` returns: see
        :class:`UringStatistics`."""
        self._check_owner()
        r = self._r
        ops = self._ops
        return UringStatistics(
            tasks_waiting_read=len(self._readiness.readers),
            tasks_waiting_write=len(self._readiness.writers),
            operations_in_flight=len(ops) - (1 if _UD_WAKEUP in ops else 0),
            sqes_submitted=r.sqes_prepared - lib.tu_unsubmitted(r)
            if not self._closed
            else r.sqes_prepared,
            cqes_reaped=r.cqes_reaped,
            enter_calls=r.enter_calls,
            linked_timeouts=self._timeouts.linked,
            linked_timeouts_fired=self._timeouts.fired,
            async_cancels=self._async_cancels,
            zerocopy_sends=self.zerocopy_sends,
            zerocopy_notifications=self.zerocopy_notifications,
            zerocopy_copied=self.zerocopy_copied,
            operations_abandoned=sum(1 for op in ops.values() if op.state == ABANDONED),
        )

    def close(self) -> None:
        """Cancel and drain every in-flight request, then release the ring.  Never raises.

        Waits at most :attr:`drain_timeout` for cancelled requests to end, and never
        for zero-copy notifications: whatever the kernel still holds then stays
        referenced, with the ring, until it lets go (see
        ``trio_uring._core._manager.lingering()``), and a ``ResourceWarning`` says how
        much (``trio_uring._core._shutdown``).
        """
        _shutdown.close(self)

    # ---------------------------------------------------- readiness waits
    async def wait_readable(self, fd: int | _trio_compat.HasFileno) -> None:
        """Block until ``fd`` is readable.  Same contract as ``trio.lowlevel.wait_readable``."""
        await self._readiness.wait(fd, False)

    async def wait_writable(self, fd: int | _trio_compat.HasFileno) -> None:
        """Block until ``fd`` is writable.  Same contract as ``trio.lowlevel.wait_writable``."""
        await self._readiness.wait(fd, True)

    def notify_closing(self, fd: int | _trio_compat.HasFileno) -> None:
        """Wake every task using ``fd`` with ``ClosedResourceError``; call before closing it.

        Readiness waiters wake at once.  Completion-based operations on ``fd`` get
        ``ASYNC_CANCEL`` submitted before this returns (the kernel holds its own
        reference to the file, so closing the fd would not end them); their tasks
        get ``ClosedResourceError`` unless the operation completed anyway, in which
        case they get its real result.  An unknown fd is a no-op.  Costs O(the
        operations on ``fd``), not O(all operations).
        """
        if not isinstance(fd, int):
            fd = fd.fileno()
        if self._forked_from is not None:
            self._check_owner()
        raise_at_end = self._readiness.notify_closing(fd)
        same_fd = self._fd_ops[fd] if 0 <= fd < len(self._fd_ops) else None
        if same_fd:
            on_fd = same_fd[:]
            same_fd.clear()
            live = False
            for op in on_fd:
                if (op.fd == fd or op.fd_in == fd) and SUBMITTED <= op.state <= EXPIRED:
                    live = True
                    op.on_closing()
            if live and not self._closed and lib.tu_unsubmitted(self._r):
                # Submit the cancels now: the caller closes the fd as soon as we return.
                # (Nothing else on the ring can name this fd: every operation on it is
                # listed here, and one the kernel has not seen became a NOP.)
                self._submit_now()
        if raise_at_end:
            raise trio.ClosedResourceError("another task closed this fd")

    # ------------------------------------------------- completion-based ops
    async def perform(
        self,
        sqe: Sqe,
        *,
        keep: object = None,
        buffer: object = None,
        writable: bool = False,
        op: Operation | None = None,
    ) -> int:
        """Submit one operation and wait for its result (``cqe->res``, >= 0).

        Internal, like :meth:`submit`: for trio_uring's own operation modules (the
        ``sqe`` comes from the private ``trio_uring._core._sqe``); the public
        operations are :mod:`trio_uring.lowlevel`'s functions.

        How it is cancelled (by :meth:`withdraw`, through ``Operation.abort``):

        * aborted before the kernel saw it: dropped, no cancel SQE; raises ``Cancelled``;
        * aborted after: ``ASYNC_CANCEL`` is submitted and the task stays parked
          until the operation's own CQE.  ``-ECANCELED`` raises ``Cancelled``; any
          other result is the operation's real result and is returned;
        * under trio's real clock with a finite deadline, the SQE is linked to an
          ``IORING_OP_LINK_TIMEOUT`` if the operation may be resubmitted
          (``trio_uring._core._sqe.restartable``: the op table, and never at
          the file's current position).  If the timeout fired but
          trio did not cancel (deadline moved, shield), the operation is resubmitted;
        * ``notify_closing(fd)`` makes a pending operation raise ``ClosedResourceError``.

        ``buffer`` (exported by the operation, see :meth:`submit`) and ``keep`` stay
        referenced until the final CQE; the wait returns or raises only after it,
        so the caller's buffer is free again then.  Errors raise ``OSError`` with
        the errno from the CQE.  ``op``: a prepared record (an
        :class:`~trio_uring._core._operation.Operation` subclass, or one that already
        exported buffers with :meth:`~trio_uring._core._operation.Operation.export`);
        it is released if this raises before submitting it.
        """
        if self._guest is None:
            self._bind_run()
        if self._guest:
            # Guest mode submits at once, so a doomed SQE could not be dropped later.
            try:
                await checkpoint_if_cancelled()
            except BaseException:
                if op is not None:
                    op.release()
                raise
        deadline = inf
        timeouts = self._timeouts
        if (
            timeouts.clock_offset is not None
            and self.linked_timeouts_enabled
            and timeouts.deadline_is_near()
            and restartable(sqe)
        ):
            deadline = current_effective_deadline()
            if deadline == -inf:
                # The task is already cancelled; its SQE is dropped before submission.
                deadline = inf
        try:
            started = self.submit(
                sqe, keep=keep, op=op, deadline=deadline, buffer=buffer, writable=writable
            )
        except TypeError:
            await checkpoint()  # a buffer of the wrong type: still a checkpoint, as in trio
            raise
        return await started


def current_manager() -> UringIOManager:
    """The io_uring manager of the current run.

    Raises ``RuntimeError`` outside a run, or inside a run that is not on io_uring
    (plain ``trio.run`` without :func:`trio_uring.install`, or the epoll fallback).
    """
    manager = _trio_compat.current_runner().io_manager
    if not isinstance(manager, UringIOManager):
        raise RuntimeError(
            "trio_uring.lowlevel needs a run on the io_uring manager: use trio_uring.run() "
            "or trio_uring.install() (this run uses " + type(manager).__name__ + ")"
        )
    return manager


# From writing an SQE to parking its task nothing may unwind (a KeyboardInterrupt
# there would leave the kernel a request nobody owns): as trio's own waits, these
# run KeyboardInterrupt-protected, and an interrupt arrives through the abort.
_trio_compat.ki_protect(
    UringIOManager.submit,
    UringIOManager.perform,
    UringIOManager.withdraw,
    UringIOManager.async_cancel,
    UringIOManager.notify_closing,
    UringIOManager.wait_readable,
    UringIOManager.wait_writable,
    UringIOManager._prep,
    UringIOManager._make_room,
    UringIOManager._write_async_cancel,
    UringIOManager._unsubmit,
    UringIOManager._submit_now,
    UringIOManager.recycled_operation,
    UringIOManager._fd_index,
    UringIOManager._grow_fd_index,
)

# Compiled: the public objects become real coroutine functions (and get their
# docstrings and signatures) over the compiled bodies; see _core/_public.py.
from ._public import dress  # noqa: E402

dress(__name__)
