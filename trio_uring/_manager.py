"""``UringIOManager``: trio's I/O manager protocol on one io_uring instance.

trio's Runner calls ``get_events``/``process_events`` once per loop tick and the
``wait_readable``/``wait_writable``/``notify_closing`` trio API dispatches here.
Completion-based operations (``trio_uring.lowlevel``) are submitted through
:meth:`UringIOManager.perform`, the one cancellation path for every operation.

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
  its final CQE.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import threading
from collections.abc import Callable, Generator
from math import inf
from time import perf_counter
from typing import TYPE_CHECKING, Any, ClassVar, Final, cast

import attrs
import outcome
import trio
from trio import current_effective_deadline
from trio.lowlevel import (
    Abort,
    checkpoint_if_cancelled,
    current_task,
    reschedule,
)

from . import _trio_compat
from ._constants import (
    CQE_F_MORE,
    FEAT_CQE_SKIP,
    IOSQE_CQE_SKIP_SUCCESS,
    IOSQE_IO_LINK,
    POLL_ADD_MULTI,
    SQ_CQ_OVERFLOW,
    SQ_TASKRUN,
    TIMEOUT_ABS,
    Op,
)
from ._ring import CQE_SIZE, DEFAULT_ENTRIES, Ring
from ._ring_cffi import ffi, lib
from ._trio_compat import READY, WaitTaskRescheduled, park

if TYPE_CHECKING:
    from trio.lowlevel import Task

    RaiseCancel = Callable[[], object]

_POLLIN: Final = 0x001
_POLLOUT: Final = 0x004
_POLLERR_HUP_NVAL: Final = 0x008 | 0x010 | 0x020
_ECANCELED: Final = -errno.ECANCELED
_EINTR: Final = -errno.EINTR
_ETIME: Final = -errno.ETIME

#: user_data values below this are internal; 0 is "ignore this CQE".
_UD_IGNORE: Final = 0
_UD_WAKEUP: Final = 1
_UD_FIRST: Final = 16

_unpack_cqes = struct.Struct("=QiI").iter_unpack
_run_context = _trio_compat.GLOBAL_RUN_CONTEXT

#: Called with the manager at the first loop tick of every run on io_uring, on the
#: trio thread with the run context set (before any task has run).  Used to set
#: per-run state such as trio's custom socket factory.
run_start_hooks: list[Callable[[UringIOManager], None]] = []

#: Buffers of operations still in flight when a manager was closed without
#: draining them (a kernel that never completed them).  Kept forever so the
#: kernel never writes into freed memory.
_graveyard: list[object] = []


@attrs.frozen
class UringStatistics:
    """What ``trio.lowlevel.current_statistics().io_statistics`` returns under io_uring.

    ``tasks_waiting_read`` / ``tasks_waiting_write`` mean what they mean for
    trio's epoll backend.  The rest count what the ring did since the run began.
    """

    tasks_waiting_read: int
    tasks_waiting_write: int
    operations_in_flight: int
    sqes_submitted: int
    cqes_reaped: int
    enter_calls: int
    linked_timeouts: int
    linked_timeouts_fired: int
    async_cancels: int
    zerocopy_sends: int
    zerocopy_notifications: int
    zerocopy_copied: int
    backend: str = "io_uring"


class _Op:
    """One in-flight request.  Subclasses decide what its CQEs mean."""

    __slots__ = ("cqe_flags", "fd", "keep", "manager", "res", "sq_pos", "task", "user_data")

    def __init__(self, manager: UringIOManager, user_data: int, fd: int, task: Task | None) -> None:
        self.manager = manager
        self.user_data = user_data
        self.fd = fd
        self.task = task
        self.sq_pos = -1
        self.res = 0
        self.cqe_flags = 0
        self.keep: object = None

    def on_cqe(self, res: int, flags: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_closing(self) -> None:
        """``notify_closing`` was called for this op's fd."""


class _WakeupOp(_Op):
    """Multishot poll on the eventfd that ``force_wakeup`` writes."""

    __slots__ = ()

    def on_cqe(self, res: int, flags: int) -> None:
        try:
            os.eventfd_read(self.fd)
        except (BlockingIOError, OSError):
            pass
        if not flags & CQE_F_MORE and not self.manager._closed:
            self.manager._arm_wakeup()


class _IgnoredOp(_Op):
    """A request nobody waits for any more (aborted poll, detached op)."""

    __slots__ = ()

    def on_cqe(self, res: int, flags: int) -> None:
        pass


class _PollOp(_Op):
    """``wait_readable`` / ``wait_writable``: a one-shot POLL_ADD."""

    __slots__ = ("mask", "waiters")

    mask: int
    waiters: dict[int, _PollOp]

    def on_cqe(self, res: int, flags: int) -> None:
        task = self.task
        if task is None:
            return
        if res >= 0 and not res & (self.mask | _POLLERR_HUP_NVAL):
            # The kernel reports the wake-up's key, which need not include what we
            # asked for (AF_UNIX wakes writers with other bits).  epoll would not
            # report it; wait again under a fresh user_data.
            self.manager._rearm_poll(self)
            return
        self.task = None
        if self.waiters.get(self.fd) is self:
            del self.waiters[self.fd]
        self.res = res
        self.manager.reschedule(task, READY)

    def abort(self, _: RaiseCancel) -> Abort:
        self.task = None
        if self.waiters.get(self.fd) is self:
            del self.waiters[self.fd]
        self.manager._discard(self)
        return Abort.SUCCEEDED

    def on_closing(self) -> None:
        task = self.task
        self.task = None
        if self.waiters.get(self.fd) is self:
            del self.waiters[self.fd]
        self.manager._discard(self)
        if task is not None:
            reschedule(task, outcome.Error(trio.ClosedResourceError("another task closed this fd")))


class _DataOp(_Op):
    """A completion-based operation whose result must never be lost."""

    __slots__ = ("args", "closing", "expired", "link_pos", "raise_cancel")

    def __init__(self, manager: UringIOManager, user_data: int, fd: int, task: Task | None) -> None:
        # (inlined _Op.__init__: this runs once per operation)
        self.manager = manager
        self.user_data = user_data
        self.fd = fd
        self.task = task
        self.sq_pos = -1
        self.res = 0
        self.cqe_flags = 0
        self.keep: object = None
        self.raise_cancel: RaiseCancel | None = None
        self.closing = False
        self.expired = False
        self.link_pos = -1
        self.args: tuple[Any, ...] | None = None

    def on_cqe(self, res: int, flags: int) -> None:
        self.res = res
        self.cqe_flags = flags
        task = self.task
        if task is None:
            return
        if (
            res == _ECANCELED
            and self.raise_cancel is None
            and not self.closing
            and self.args is not None
        ):
            # Our linked timeout fired, but trio has not cancelled the task (yet).
            # trio stays authoritative: park until it aborts, else resubmit.
            self.expired = True
            self.manager._linked_timeouts_fired += 1
            self.manager._expired.append(self)
            return
        self.task = None
        self.manager.reschedule(task, READY)

    def __await__(self) -> Generator[Any, Any, int]:
        """Park until the final CQE; return ``cqe->res`` or raise (see ``perform``)."""
        msg = yield WaitTaskRescheduled(self.abort)
        if msg is not READY:
            msg.unwrap()
        res = self.res
        return res if res >= 0 else self.result()

    def abort(self, raise_cancel: RaiseCancel) -> Abort:
        manager = self.manager
        if self.expired:
            # The kernel already ended it at the deadline: nothing left to cancel.
            self.expired = False
            self.task = None
            return Abort.SUCCEEDED
        if manager._withdraw(self):
            self.task = None
            return Abort.SUCCEEDED
        self.raise_cancel = raise_cancel  # its CQE decides: -ECANCELED -> raise_cancel()
        return Abort.FAILED

    def on_closing(self) -> None:
        if self.task is None or self.closing:
            return
        self.closing = True
        manager = self.manager
        if self.expired:
            self.expired = False
            manager._expired.remove(self)
            task, self.task = self.task, None
            reschedule(
                task, outcome.Error(trio.ClosedResourceError("another task closed this resource"))
            )
        elif manager._withdraw(self):
            task, self.task = self.task, None
            reschedule(
                task, outcome.Error(trio.ClosedResourceError("another task closed this resource"))
            )

    def result(self) -> int:
        """Turn the final CQE into the operation's result, or raise."""
        res = self.res
        if res >= 0:
            return res
        if res == _ECANCELED or (res == _EINTR and self.raise_cancel is not None):
            if self.raise_cancel is not None:
                self.raise_cancel()
            if self.closing:
                raise trio.ClosedResourceError("another task closed this resource")
        raise OSError(-res, os.strerror(-res))


class UringIOManager:
    """trio's I/O manager protocol, driven by one io_uring instance."""

    #: Submission queue size; the completion queue is ``cq_factor`` times larger.
    #: A full SQ is submitted and filling continues; CQ overflow is kept by the
    #: kernel (``IORING_FEAT_NODROP``) and flushed on the next ``io_uring_enter``.
    sq_entries: ClassVar[int] = DEFAULT_ENTRIES
    #: Link an operation to a LINK_TIMEOUT only if some deadline of the run is
    #: within this many seconds (see ``_deadline_is_near``).
    link_horizon: ClassVar[float] = 2.0
    cq_factor: ClassVar[int] = 8

    def __init__(self) -> None:
        self._closed = True
        self._ring = Ring(self.sq_entries, self.cq_factor)
        self._r = self._ring.handle
        self._closed = False
        self._fresh = True
        self._owner = threading.get_ident()
        self._guest: bool | None = None
        self._clock_offset: float | None = None
        self._deadlines: Any = None
        self._next_ud = _UD_FIRST
        #: The run's ``Runner.reschedule`` once bound (trio's public wrapper until then).
        self.reschedule: Callable[..., None] = reschedule
        self._ops: dict[int, _Op] = {}
        self._readers: dict[int, _PollOp] = {}
        self._writers: dict[int, _PollOp] = {}
        self._expired: list[_DataOp] = []
        self._stash: list[bytes] = []
        self._cqbuf = ffi.new("char[]", self._ring.cq_entries * CQE_SIZE)
        self._cqbuf_max = self._ring.cq_entries
        self._skip_flag = IOSQE_CQE_SKIP_SUCCESS if self._ring.features & FEAT_CQE_SKIP else 0
        #: Link deadlines to IORING_OP_LINK_TIMEOUT (Linux 5.5+); else trio cancels via ASYNC_CANCEL.
        self.linked_timeouts_enabled = self._ring.supports(Op.LINK_TIMEOUT)
        #: The ``RegisteredBuffers`` set of this ring, kept alive until unregistered.
        self.registered_buffers: Any = None
        self._linked_timeouts = 0
        self._linked_timeouts_fired = 0
        self._async_cancels = 0
        self.zerocopy_sends = 0
        self.zerocopy_notifications = 0
        self.zerocopy_copied = 0
        try:
            self._wakefd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except BaseException:
            self._ring.close()
            self._closed = True
            raise
        self._wakeup = _WakeupOp(self, _UD_WAKEUP, self._wakefd, None)
        self._ops[_UD_WAKEUP] = self._wakeup
        self._arm_wakeup()

    # ------------------------------------------------------------------ ring
    @property
    def ring(self) -> Ring:
        return self._ring

    def supports(self, op: Op) -> bool:
        """Whether the running kernel implements ``op`` (``IORING_REGISTER_PROBE``)."""
        return self._ring.supports(op)

    def _arm_wakeup(self) -> None:
        multi = POLL_ADD_MULTI
        self._prep(Op.POLL_ADD, 0, self._wakefd, 0, ffi.NULL, multi, _POLLIN, _UD_WAKEUP)

    def _prep(
        self,
        opcode: int,
        sqe_flags: int,
        fd: int,
        off: int,
        addr: Any,
        length: int,
        op_flags: int,
        user_data: int,
        buf_index: int = 0,
        file_index: int = 0,
        ioprio: int = 0,
    ) -> int:
        """Write one SQE; return its SQ position.  Makes room if the SQ is full."""
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
        if err not in (-errno.EBUSY, -errno.EAGAIN, _EINTR):
            raise OSError(-err, "io_uring submission failed: " + os.strerror(-err))
        self._stash.append(self._reap())

    def _cancel(self, target: int) -> None:
        """Submit ``IORING_OP_ASYNC_CANCEL`` for ``target``; its own CQE is ignored."""
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

    def _unsubmit(self, op: _Op) -> bool:
        """Turn ``op``'s SQE (and its linked timeout) into NOPs if not yet submitted."""
        if self._guest:
            return False
        if lib.tu_nop_if_unsubmitted(self._r, op.sq_pos):
            if isinstance(op, _DataOp) and op.link_pos >= 0:
                lib.tu_nop_if_unsubmitted(self._r, op.link_pos)
            return True
        return False

    def _withdraw(self, op: _Op) -> bool:
        """Take back ``op``: the one place that decides how an operation is cancelled.

        If the kernel has not consumed its SQE (or the ring is closed), the SQE
        becomes a NOP, the record is dropped and True is returned: the operation
        never happened.  Otherwise ``ASYNC_CANCEL`` is submitted and False is
        returned: the operation's own CQE is still coming.
        """
        if self._closed or self._unsubmit(op):
            self._ops.pop(op.user_data, None)
            return True
        self._cancel(op.user_data)
        return False

    def _discard(self, op: _Op) -> None:
        """Nobody waits for ``op`` any more: withdraw it and ignore its late CQE."""
        if self._closed or self._unsubmit(op):
            self._ops.pop(op.user_data, None)
        else:
            detached = _IgnoredOp(self, op.user_data, op.fd, None)
            detached.keep = op.keep
            if op.user_data in self._ops:
                self._ops[op.user_data] = detached
                self._cancel(op.user_data)

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
        self._deadlines = runner.deadlines
        self.reschedule = runner.reschedule
        _trio_compat.speed_up_instrument_checks(runner)
        clock: Any = runner.clock
        if type(clock) is _trio_compat.SystemClock:
            self._clock_offset = float(getattr(clock, "offset"))  # noqa: B009
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
        if self._expired:
            self._resubmit_expired()
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
        r = self._r
        return UringStatistics(
            tasks_waiting_read=len(self._readers),
            tasks_waiting_write=len(self._writers),
            operations_in_flight=len(self._ops) - (1 if _UD_WAKEUP in self._ops else 0),
            sqes_submitted=r.sqes_prepared - lib.tu_unsubmitted(r)
            if not self._closed
            else r.sqes_prepared,
            cqes_reaped=r.cqes_reaped,
            enter_calls=r.enter_calls,
            linked_timeouts=self._linked_timeouts,
            linked_timeouts_fired=self._linked_timeouts_fired,
            async_cancels=self._async_cancels,
            zerocopy_sends=self.zerocopy_sends,
            zerocopy_notifications=self.zerocopy_notifications,
            zerocopy_copied=self.zerocopy_copied,
        )

    def close(self) -> None:
        """Cancel and drain every in-flight request, then release the ring.  Never raises."""
        if self._closed:
            return
        try:
            self._drain()
        except BaseException:  # close() must never raise: it would poison the thread
            pass
        finally:
            self._closed = True
            leftovers = [op.keep for op in self._ops.values() if op.keep is not None]
            if leftovers and self._undrained:
                _graveyard.extend(leftovers)
            self._ops.clear()
            self._readers.clear()
            self._writers.clear()
            self._expired.clear()
            try:
                self._ring.close()
            finally:
                try:
                    os.close(self._wakefd)
                except OSError:
                    pass

    _undrained = False

    def _drain(self) -> None:
        self._ops.pop(_UD_WAKEUP, None)
        self._guest = False
        if not self._ops:
            self._undrained = False
            return
        self._undrained = True
        for ud in list(self._ops):
            if isinstance(self._ops[ud], _DataOp | _PollOp) and self._unsubmit(self._ops[ud]):
                del self._ops[ud]
                continue
            if lib.tu_reserve(self._r, 1) == 0:
                lib.tu_prep_u64(self._r, Op.ASYNC_CANCEL, 0, -1, 0, ud, 0, 0, _UD_IGNORE)
        lib.tu_submit(self._r)
        for _ in range(50):  # up to ~5 s for the kernel to finish cancelling
            if not self._ops:
                break
            lib.tu_wait(self._r, 1, 1, 100_000_000)
            for user_data, _res, flags in _unpack_cqes(self._reap()):
                if not flags & CQE_F_MORE:
                    self._ops.pop(user_data, None)
        self._undrained = bool(self._ops)

    # ---------------------------------------------------- readiness waits
    async def wait_readable(self, fd: int | _trio_compat.HasFileno) -> None:
        """Block until ``fd`` is readable.  Same contract as ``trio.lowlevel.wait_readable``."""
        await self._wait_poll(fd, self._readers, _POLLIN)

    async def wait_writable(self, fd: int | _trio_compat.HasFileno) -> None:
        """Block until ``fd`` is writable.  Same contract as ``trio.lowlevel.wait_writable``."""
        await self._wait_poll(fd, self._writers, _POLLOUT)

    async def _wait_poll(
        self, fd: int | _trio_compat.HasFileno, waiters: dict[int, _PollOp], mask: int
    ) -> None:
        if not isinstance(fd, int):
            fd = fd.fileno()
        if fd in waiters:
            raise trio.BusyResourceError("another task is already reading / writing this fd")
        if self._guest is None:
            self._bind_run()
        ud = self._next_ud
        self._next_ud = ud + 1
        op = _PollOp(self, ud, fd, current_task())
        op.waiters = waiters
        op.mask = mask
        op.sq_pos = self._prep(Op.POLL_ADD, 0, fd, 0, ffi.NULL, 0, mask, ud)
        self._ops[ud] = op
        waiters[fd] = op
        if self._guest:
            self._submit_now()
        await park(WaitTaskRescheduled(op.abort))
        res = op.res
        if res < 0 and res != _ECANCELED:
            raise OSError(-res, os.strerror(-res))

    def _rearm_poll(self, op: _PollOp) -> None:
        ud = self._next_ud
        self._next_ud = ud + 1
        op.user_data = ud
        op.sq_pos = self._prep(Op.POLL_ADD, 0, op.fd, 0, ffi.NULL, 0, op.mask, ud)
        self._ops[ud] = op
        if self._guest:
            self._submit_now()

    def notify_closing(self, fd: int | _trio_compat.HasFileno) -> None:
        """Wake every task using ``fd`` with ``ClosedResourceError``; call before closing it.

        Readiness waiters wake at once.  Completion-based operations on ``fd`` get
        ``ASYNC_CANCEL`` submitted before this returns (the kernel holds its own
        reference to the file, so closing the fd would not end them); their tasks
        get ``ClosedResourceError`` unless the operation completed anyway, in which
        case they get its real result.  An unknown fd is a no-op.
        """
        if not isinstance(fd, int):
            fd = fd.fileno()
        try:
            me: Task | None = current_task()
        except RuntimeError:
            me = None
        raise_at_end = False
        for waiters in (self._readers, self._writers):
            poll = waiters.get(fd)
            if poll is not None:
                if poll.task is me and me is not None:
                    raise_at_end = True
                    poll.task = None
                    del waiters[fd]
                    self._discard(poll)
                else:
                    poll.on_closing()
        for op in [o for o in self._ops.values() if o.fd == fd and isinstance(o, _DataOp)]:
            op.on_closing()
        if not self._closed and lib.tu_unsubmitted(self._r):
            # Submit now: the caller closes the fd as soon as we return.
            self._submit_now()
        if raise_at_end:
            raise trio.ClosedResourceError("another task closed this fd")

    # ------------------------------------------------- completion-based ops
    async def perform(
        self,
        opcode: int,
        fd: int,
        off: int = 0,
        addr: Any = ffi.NULL,
        length: int = 0,
        op_flags: int = 0,
        *,
        keep: object = None,
        buf_index: int = 0,
        file_index: int = 0,
        ioprio: int = 0,
        linkable: bool = True,
    ) -> int:
        """Submit one operation and wait for its result (``cqe->res``, >= 0).

        This is the one cancellation path for every completion-based operation:

        * aborted before the kernel saw it: dropped, no cancel SQE; raises ``Cancelled``;
        * aborted after: ``ASYNC_CANCEL`` is submitted and the task stays parked
          until the operation's own CQE.  ``-ECANCELED`` raises ``Cancelled``; any
          other result is the operation's real result and is returned;
        * under trio's real clock with a finite deadline, the SQE is linked to an
          ``IORING_OP_LINK_TIMEOUT`` (``linkable`` ops only), so the kernel ends it at
          the deadline.  If trio did not cancel (deadline moved, shield), the
          operation is resubmitted;
        * ``notify_closing(fd)`` makes a pending operation raise ``ClosedResourceError``.

        ``keep`` (the buffers the kernel reads or writes) stays referenced until
        the final CQE.  Errors raise ``OSError`` with the errno from the CQE.
        """
        if self._guest is None:
            self._bind_run()
        if self._guest:
            # Guest mode submits at once, so a doomed SQE could not be dropped later.
            await checkpoint_if_cancelled()
        deadline = inf
        if (
            linkable
            and self._clock_offset is not None
            and self.linked_timeouts_enabled
            and self._deadline_is_near()
        ):
            deadline = current_effective_deadline()
            if deadline == -inf:
                # The task is already cancelled; its SQE is dropped before submission.
                deadline = inf
        return await self.submit(
            opcode, fd, off, addr, length, op_flags, keep, buf_index, file_index, ioprio,
            deadline=deadline,
        )  # fmt: skip

    def submit(
        self,
        opcode: int,
        fd: int,
        off: int,
        addr: Any,
        length: int,
        op_flags: int,
        keep: object,
        buf_index: int = 0,
        file_index: int = 0,
        ioprio: int = 0,
        op: _DataOp | None = None,
        deadline: float = inf,
    ) -> _DataOp:
        """Queue one operation for the current task; ``await`` it at once.

        ``await op`` is :meth:`perform`'s wait: the same cancellation, results and
        errors.  The caller must await the returned op before its next checkpoint,
        and in guest mode must have passed ``checkpoint_if_cancelled()`` first
        (``perform`` does both, and picks ``deadline``: a finite one links the SQE
        to an ``IORING_OP_LINK_TIMEOUT`` at that trio time).  Hot paths that need no
        deadline link call this directly.

        ``op`` recycles a record the caller keeps for one operation at a time (a
        stream's send slot) instead of allocating one; it must be finished, i.e.
        its previous wait has returned or raised.
        """
        ud = self._next_ud
        self._next_ud = ud + 1
        if op is None:
            op = _DataOp(self, ud, fd, _run_context.task)
        else:
            op.user_data = ud
            op.fd = fd
            op.task = _run_context.task
            op.raise_cancel = None
            op.closing = False
            op.args = None
            op.link_pos = -1
        op.keep = keep
        if deadline == inf:
            # _prep(), inlined: this is every operation's path.
            pos: int = lib.tu_prep(
                self._r, opcode, 0, fd, off, addr, length, op_flags, ud, buf_index, file_index,
                ioprio,
            )  # fmt: skip
            if pos < 0:
                pos = self._prep(
                    opcode, 0, fd, off, addr, length, op_flags, ud, buf_index, file_index, ioprio
                )
            op.sq_pos = pos
        else:
            op.args = (opcode, fd, off, addr, length, op_flags, buf_index, file_index, ioprio)
            self._submit_linked(op, deadline)
        self._ops[ud] = op
        if self._guest:
            self._submit_now()
        return op

    def _deadline_is_near(self) -> bool:
        """Is any deadline of this run within :attr:`link_horizon` seconds?

        A linked timeout only pays when it fires; looking up a task's effective
        deadline walks its cancel scopes, so skip it when no deadline in the whole
        run (the earliest entry of trio's deadline heap) is near.  An operation
        that outlives this check is still cancelled at its deadline, by trio,
        through ``ASYNC_CANCEL``.
        """
        heap = self._deadlines._heap
        if not heap:
            return False
        assert self._clock_offset is not None
        return bool(heap[0][0] - self._clock_offset - perf_counter() < self.link_horizon)

    def _submit_linked(self, op: _DataOp, deadline: float) -> None:
        assert op.args is not None and self._clock_offset is not None
        opcode, fd, off, addr, length, op_flags, buf_index, file_index, ioprio = op.args
        while (rc := lib.tu_reserve(self._r, 2)) < 0:
            self._make_room(rc)
        op.sq_pos = self._prep(
            opcode, IOSQE_IO_LINK, fd, off, addr, length, op_flags, op.user_data,
            buf_index, file_index, ioprio,
        )  # fmt: skip
        ns = int((deadline - self._clock_offset) * 1e9) if deadline > -inf else 0
        op.link_pos = lib.tu_prep_timeout(
            self._r, Op.LINK_TIMEOUT, self._skip_flag, ns, 0, TIMEOUT_ABS, _UD_IGNORE
        )
        self._linked_timeouts += 1

    def _resubmit_expired(self) -> None:
        """Operations our linked timeout ended but trio did not cancel: start them again."""
        expired, self._expired = self._expired, []
        for op in expired:
            if not op.expired or op.task is None:
                continue
            op.expired = False
            task = op.task
            deadline = current_effective_deadline_of(task)
            self._ops[op.user_data] = op
            if deadline != inf:
                self._submit_linked(op, deadline)
            else:
                assert op.args is not None
                opcode, fd, off, addr, length, op_flags, buf_index, file_index, ioprio = op.args
                op.link_pos = -1
                op.sq_pos = self._prep(
                    opcode, 0, fd, off, addr, length, op_flags, op.user_data,
                    buf_index, file_index, ioprio,
                )  # fmt: skip

    def register_op(self, op: _Op) -> None:
        """Track an op created by another module (streams, zero-copy sends)."""
        self._ops[op.user_data] = op

    def new_user_data(self) -> int:
        ud = self._next_ud
        self._next_ud = ud + 1
        return ud


def current_effective_deadline_of(task: Task) -> float:
    """The effective deadline of a parked task (trio only exposes the current task's)."""
    return _trio_compat.task_deadline(task)
