"""``trio_uring.lowlevel.sleep`` / ``sleep_until`` for deadlines the kernel's timer cannot hold.

The kernel's timers count signed 64-bit nanoseconds; a deadline further away
(``1e300`` seconds, ``inf``) is left to trio's own deadline handling, so it
sleeps like ``trio.sleep(1e300)`` instead of raising ``OverflowError``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

import trio_uring.lowlevel as ll
from trio_uring.lowlevel import current_manager

#: The kernel timer holds signed 64-bit nanoseconds.
MAX_NS = (1 << 63) - 1
NS = 1_000_000_000

Sleep = Callable[[], Awaitable[None]]

HUGE: dict[str, Sleep] = {
    "sleep(1e300)": lambda: ll.sleep(1e300),
    "sleep(inf)": lambda: ll.sleep(math.inf),
    "sleep(1e10)": lambda: ll.sleep(1e10),  # 317 years: just past 2**63 ns
    "sleep_until(1e300)": lambda: ll.sleep_until(1e300),
    "sleep_until(now + 1e300)": lambda: ll.sleep_until(trio.current_time() + 1e300),
    "sleep_until(inf)": lambda: ll.sleep_until(math.inf),
}


def in_flight() -> int:
    return current_manager().statistics().operations_in_flight


async def in_flight_while(call: Sleep) -> int:
    """How many more ring operations are in flight while ``call`` sleeps; then cancel it."""
    await trio.testing.wait_all_tasks_blocked()
    before = in_flight()
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def sleeper() -> None:
            with scope:
                await call()
                pytest.fail("woke up")  # pragma: no cover

        nursery.start_soon(sleeper)
        await trio.testing.wait_all_tasks_blocked()
        during = in_flight()
        scope.cancel()
    assert scope.cancelled_caught
    return during - before


@pytest.mark.parametrize("call", list(HUGE.values()), ids=list(HUGE))
async def test_huge_deadline_sleeps_until_cancelled(call: Sleep) -> None:
    # Cancelled by the task's own deadline...
    with trio.fail_after(5):
        with trio.move_on_after(0.01) as scope:
            await call()
    assert scope.cancelled_caught
    # ... and by another task; trio's timer, no kernel timer, waits meanwhile.
    assert await in_flight_while(call) == 0


async def test_deadlines_the_kernel_can_hold_stay_on_the_kernel_timer() -> None:
    assert await in_flight_while(lambda: ll.sleep(1e9)) == 1  # 31 years
    clock = trio.lowlevel.current_clock()
    offset = float(clock.offset)  # type: ignore[attr-defined]
    # The largest deadline below 2**63 ns: still a kernel timer.
    last = offset + math.nextafter(MAX_NS / NS, 0)
    while (last - offset) * NS >= MAX_NS:
        last = math.nextafter(last, 0)
    assert await in_flight_while(lambda: ll.sleep_until(last)) == 1
    first = math.nextafter(offset + MAX_NS / NS, math.inf)
    assert await in_flight_while(lambda: ll.sleep_until(first)) == 0


async def test_past_deadlines_return_at_once() -> None:
    for deadline in (-math.inf, -1e300, trio.current_time() - 1e10):
        with trio.testing.assert_checkpoints():
            await ll.sleep_until(deadline)
    with trio.CancelScope() as scope:
        scope.cancel()
        await ll.sleep_until(-math.inf)
    assert scope.cancelled_caught
