"""What ``trio.lowlevel.current_statistics().io_statistics`` returns under io_uring.

:meth:`UringIOManager.statistics <trio_uring._core._manager.UringIOManager.statistics>`
fills one :class:`UringStatistics` from the ring's counters and the manager's.
"""

from __future__ import annotations

import attrs

__all__ = ["UringStatistics"]


@attrs.frozen
class UringStatistics:
    """What ``trio.lowlevel.current_statistics().io_statistics`` returns under io_uring.

    ``tasks_waiting_read`` / ``tasks_waiting_write`` mean what they mean for
    trio's epoll backend.  The rest count what the ring did since the run began.

    Attributes:
      tasks_waiting_read (int): tasks in ``wait_readable`` (trio's readiness waits).
      tasks_waiting_write (int): tasks in ``wait_writable``.
      operations_in_flight (int): requests submitted to the kernel and not finished yet.
      sqes_submitted (int): SQEs handed to the kernel.
      cqes_reaped (int): CQEs read from the completion queue.
      enter_calls (int): ``io_uring_enter`` system calls made.
      linked_timeouts (int): requests submitted with a linked ``IORING_OP_LINK_TIMEOUT``
          (a trio deadline close enough to arm one, see docs/semantics.rst).
      linked_timeouts_fired (int): linked timeouts that ended their request.
      async_cancels (int): ``IORING_OP_ASYNC_CANCEL`` requests submitted.
      zerocopy_sends (int): ``IORING_OP_SEND_ZC`` requests submitted.
      zerocopy_notifications (int): their notifications received (the kernel let go of
          the buffer).
      zerocopy_copied (int): notifications that reported the kernel copied the data
          anyway (``IORING_NOTIF_USAGE_ZC_COPIED``: always so on loopback).
      operations_abandoned (int): requests nobody waits for but the kernel still
          holds (their memory stays referenced until they end).
      backend (str): ``"io_uring"`` (trio's epoll backend says ``"epoll"``).
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
    #: Requests nobody waits for but the kernel still holds (their memory stays referenced).
    operations_abandoned: int = 0
    backend: str = "io_uring"
