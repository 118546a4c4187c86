"""Sleeping on the kernel's clock: ``IORING_OP_TIMEOUT`` with an absolute deadline.

trio's :class:`~trio.lowlevel.SystemClock` is ``CLOCK_MONOTONIC`` plus a
per-run offset, so a trio deadline converts exactly to the absolute
``CLOCK_MONOTONIC`` time the kernel's timer takes.  Under any other clock
(``trio.testing.MockClock``) the kernel's time means nothing to trio and these
functions are :func:`trio.sleep_until` / :func:`trio.sleep`.
"""

from __future__ import annotations

import errno
from math import isnan

import trio

from .._core import _sqe, _trio_compat
from .._core._constants import TIMEOUT_ABS
from .._core._manager import current_manager
from .._core._ring_cffi import ffi

_NS = 1_000_000_000
#: The kernel's timers count signed 64-bit nanoseconds (``ktime_t``).
_MAX_NS = (1 << 63) - 1


async def sleep_until(deadline: float) -> None:
    """Sleep until ``deadline`` on trio's clock; same contract as :func:`trio.sleep_until`.

    A deadline in the past is a checkpoint that does not block.  Cancelled: the
    kernel timer is removed (``ASYNC_CANCEL``) and ``Cancelled`` raised; if the
    timer fired in the same instant, the call returns and the next checkpoint
    raises.  Raises ``ValueError`` if ``deadline`` is NaN.  A deadline the
    kernel's signed 64-bit nanoseconds cannot hold (``inf``, or more than 292
    years after boot) is left to :func:`trio.sleep_until`, as under a mock clock.
    """
    manager = current_manager()
    if isnan(deadline):
        await trio.lowlevel.checkpoint()
        raise ValueError("deadline must not be NaN")
    clock = trio.lowlevel.current_clock()
    if type(clock) is not _trio_compat.SystemClock:
        await trio.sleep_until(deadline)
        return
    ns = (deadline - float(getattr(clock, "offset"))) * _NS  # noqa: B009
    if not ns < _MAX_NS:
        # inf, or CLOCK_MONOTONIC beyond 2**63 ns (292 years after boot): more
        # than the kernel's timer holds.  trio's own deadlines sleep just as well.
        await trio.sleep_until(deadline)
        return
    timespec = ffi.new("long long[2]", divmod(int(ns) if ns > 0 else 0, _NS))
    try:
        await manager.perform(_sqe.timeout(timespec, 0, TIMEOUT_ABS), keep=timespec)
    except OSError as exc:
        if exc.errno != errno.ETIME:  # a timer that fires completes with -ETIME
            raise


async def sleep(seconds: float) -> None:
    """Sleep for ``seconds``; same contract as :func:`trio.sleep`.

    ``0`` is a plain checkpoint.  Raises ``ValueError`` if ``seconds`` is negative or NaN.
    """
    current_manager()
    if seconds < 0:
        await trio.lowlevel.checkpoint()
        raise ValueError("`seconds` must be non-negative")
    if seconds == 0:
        await trio.lowlevel.checkpoint()
        return
    await sleep_until(trio.current_time() + seconds)
