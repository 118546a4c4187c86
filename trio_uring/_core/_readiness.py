"""Readiness waits: trio's ``wait_readable`` / ``wait_writable`` as one-shot ``POLL_ADD``.

The manager (:mod:`trio_uring._core._manager`) owns one :class:`Readiness`; trio's
API reaches it through ``UringIOManager.wait_readable``/``wait_writable`` and
``notify_closing``.  What it keeps, as trio's epoll backend does: one waiter per
fd and direction (a second raises ``BusyResourceError``), and an abort that
always succeeds at once (a readiness wait has nothing to lose: the poll is
withdrawn, or cancelled and left ``ABANDONED`` until its CQE).
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Final

import trio
from trio.lowlevel import Abort, current_task

from . import _sqe
from ._operation import Operation
from ._trio_compat import HasFileno, WaitTaskRescheduled, ki_protect, park

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio.lowlevel import Task

    from ._manager import UringIOManager

POLLIN: Final = 0x001
POLLOUT: Final = 0x004
_POLLERR_HUP_NVAL: Final = 0x008 | 0x010 | 0x020
_ECANCELED: Final = -errno.ECANCELED


class PollOp(Operation):
    """``wait_readable`` / ``wait_writable``: a one-shot POLL_ADD."""

    __slots__ = ("mask", "waiters")

    mask: int
    waiters: dict[int, PollOp]

    def on_cqe(self, res: int, flags: int) -> None:
        task = self.task
        if task is None:
            self.complete()
            return
        if res >= 0 and not res & (self.mask | _POLLERR_HUP_NVAL):
            # The kernel reports the wake-up's key, which need not include what we
            # asked for (AF_UNIX wakes writers with other bits).  epoll would not
            # report it; wait again under a fresh user_data.
            self.manager.submit(_sqe.poll_add(self.fd, self.mask), op=self, waiter=False)
            self.task = task  # (submit ran outside the task: it keeps its waiter)
            return
        if self.waiters.get(self.fd) is self:
            del self.waiters[self.fd]
        self.res = res
        self.complete()

    def leave(self) -> None:
        """Stop waiting: free the fd's waiter slot, withdraw the poll or leave it ``ABANDONED``."""
        if self.waiters.get(self.fd) is self:
            del self.waiters[self.fd]
        if not self.manager.withdraw(self):
            task = self.task
            self.detach()
            self.task = task  # (the caller decides how the waiter wakes)

    def abort(self, _: Callable[[], object]) -> Abort:
        self.leave()
        self.task = None
        return Abort.SUCCEEDED

    def on_closing(self) -> None:
        self.leave()
        self.wake_closed("fd")


class Readiness:
    """The tasks waiting for an fd to become readable or writable, one per fd and direction."""

    __slots__ = ("manager", "readers", "writers")

    def __init__(self, manager: UringIOManager) -> None:
        self.manager = manager
        self.readers: dict[int, PollOp] = {}
        self.writers: dict[int, PollOp] = {}

    async def wait(self, fd: int | HasFileno, writable: bool) -> None:
        """Block until ``fd`` is readable (or ``writable``): trio's ``wait_readable`` contract."""
        if not isinstance(fd, int):
            fd = fd.fileno()
        waiters = self.writers if writable else self.readers
        if fd in waiters:
            raise trio.BusyResourceError("another task is already reading / writing this fd")
        manager = self.manager
        manager.guest  # noqa: B018  (learns the run: guest mode submits at once)
        log = manager.readiness_waits
        if log is not None:
            log[fd] = log.get(fd, 0) + 1
        op = PollOp(manager, fd)
        op.waiters = waiters
        op.mask = mask = POLLOUT if writable else POLLIN
        manager.submit(_sqe.poll_add(fd, mask), op=op)
        waiters[fd] = op
        await park(WaitTaskRescheduled(op.abort))
        res = op.res
        if res < 0 and res != _ECANCELED:
            raise OSError(-res, os.strerror(-res))

    def notify_closing(self, fd: int) -> bool:
        """Wake the readiness waiters of ``fd`` with ``ClosedResourceError``.

        True if the calling task itself was one of them (it is not woken: the
        caller raises ``ClosedResourceError`` once it has done the rest).
        """
        if not self.readers and not self.writers:
            return False
        try:
            me: Task | None = current_task()
        except RuntimeError:
            me = None
        mine = False
        for waiters in (self.readers, self.writers):
            poll = waiters.get(fd)
            if poll is not None:
                if poll.task is me and me is not None:
                    mine = True
                    poll.leave()
                    poll.task = None
                else:
                    poll.on_closing()
        return mine

    def clear(self) -> None:
        """Forget every waiter (the run ended)."""
        self.readers.clear()
        self.writers.clear()


# From writing the SQE to parking the task nothing may unwind (see _manager's list).
ki_protect(Readiness.wait, Readiness.notify_closing, PollOp.leave)
