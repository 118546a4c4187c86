"""Linked timeouts: a trio deadline handed to the kernel with the operation.

An operation submitted while a deadline of its task is near (within the manager's
``link_horizon``) gets an ``IORING_OP_LINK_TIMEOUT`` linked to its SQE, so the kernel
ends it at the deadline without an ``ASYNC_CANCEL`` round trip.  trio stays
authoritative (docs/semantics.rst): an operation the linked timeout ended while trio
has not cancelled its task is ``EXPIRED`` and started again at the next loop tick
(:meth:`LinkedTimeouts.resubmit_expired`), with the task's deadline as it is then.

The manager (:mod:`trio_uring._core._manager`) owns one :class:`LinkedTimeouts`;
:class:`~trio_uring._core._operation.Operation` reaches it through the manager's
``linked_timeout_expired`` and ``forget_expired``.
"""

from __future__ import annotations

import contextlib
from math import inf
from time import perf_counter
from typing import TYPE_CHECKING, Any

from . import _trio_compat
from ._constants import IOSQE_IO_LINK, TIMEOUT_ABS, Op
from ._operation import EXPIRED, UD_IGNORE, Operation
from ._ring_cffi import lib

if TYPE_CHECKING:
    from ._manager import UringIOManager


class LinkedTimeouts:
    """The linked timeouts of one manager: the run's clock and deadlines, the operations
    a linked timeout ended that wait to be started again, and two counters."""

    __slots__ = ("clock_offset", "deadlines", "expired", "fired", "linked", "manager")

    def __init__(self, manager: UringIOManager) -> None:
        self.manager = manager
        #: The run's ``SystemClock`` offset (None until bound, or for another clock:
        #: then no timeout is linked, and trio cancels through ``ASYNC_CANCEL``).
        self.clock_offset: float | None = None
        #: trio's ``Runner.deadlines`` of the run.
        self.deadlines: Any = None
        #: ``EXPIRED`` operations the next loop tick starts again.
        self.expired: list[Operation] = []
        #: Requests submitted with a linked timeout, and timeouts that ended their request.
        self.linked = 0
        self.fired = 0

    def bind(self, runner: Any) -> None:
        """Learn the run's deadlines and clock (the manager's first tick of a run)."""
        self.deadlines = runner.deadlines
        clock: Any = runner.clock
        if type(clock) is _trio_compat.SystemClock:
            self.clock_offset = float(getattr(clock, "offset"))  # noqa: B009

    def deadline_is_near(self) -> bool:
        """Is any deadline of this run within the manager's ``link_horizon`` seconds?

        A linked timeout only pays when it fires; looking up a task's effective
        deadline walks its cancel scopes, so skip it when no deadline in the whole
        run (the earliest entry of trio's deadline heap) is near.  An operation
        that outlives this check is still cancelled at its deadline, by trio,
        through ``ASYNC_CANCEL``.
        """
        if not _trio_compat.DEADLINES:
            return False  # trio's Deadlines is not the recorded one (TRIO_MIRRORS)
        heap = self.deadlines._heap
        if not heap:
            return False
        assert self.clock_offset is not None
        return bool(heap[0][0] - self.clock_offset - perf_counter() < self.manager.link_horizon)

    def submit_linked(self, op: Operation, deadline: float) -> None:
        """Write ``op``'s SQE (from ``op.sqe``) linked to a timeout at ``deadline``."""
        assert self.clock_offset is not None
        manager = self.manager
        r = manager._r
        while (rc := lib.tu_reserve(r, 2)) < 0:
            manager._make_room(rc)
        op.sq_pos = self._prep_sqe(op, IOSQE_IO_LINK)
        ns = int((deadline - self.clock_offset) * 1e9) if deadline > -inf else 0
        op.link_pos = lib.tu_prep_timeout(
            r, Op.LINK_TIMEOUT, manager._skip_flag, ns, 0, TIMEOUT_ABS, UD_IGNORE
        )
        self.linked += 1

    def _prep_sqe(self, op: Operation, link: int = 0) -> int:
        """Write ``op``'s SQE again from its saved fields (``op.sqe``), with ``link`` flags."""
        assert op.sqe is not None
        return self.manager._prep(op.sqe, op.user_data, link)

    def expire(self, op: Operation) -> None:
        """``op``'s linked timeout ended it, but trio has not cancelled its task (yet)."""
        op.expire()
        self.fired += 1
        self.expired.append(op)

    def forget(self, op: Operation) -> None:
        """``op`` will not be started again: drop it from :attr:`expired`."""
        with contextlib.suppress(ValueError):
            self.expired.remove(op)

    def resubmit_expired(self) -> None:
        """Operations our linked timeout ended but trio did not cancel: start them again."""
        expired, self.expired = self.expired, []
        ops = self.manager._ops
        for op in expired:
            if op.state != EXPIRED or op.task is None:
                continue
            op.restart()
            deadline = _trio_compat.task_deadline(op.task)
            ops[op.user_data] = op
            if deadline != inf:
                self.submit_linked(op, deadline)
            else:
                op.link_pos = -1
                op.sq_pos = self._prep_sqe(op)


# From writing an SQE to parking its task nothing may unwind (see _manager.py).
_trio_compat.ki_protect(LinkedTimeouts.submit_linked)
