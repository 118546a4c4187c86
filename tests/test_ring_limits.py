"""A tiny ring: a full submission queue and completion-queue overflow lose nothing."""

from __future__ import annotations

import functools
import socket

import pytest
import trio
import trio.testing

import trio_uring
from trio_uring._core._constants import SQ_CQ_OVERFLOW
from trio_uring._core._ring_cffi import lib


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    # A 4-entry submission queue, an 8-entry completion queue.  (Not a subclass: a
    # mypyc-compiled manager cannot be subclassed by interpreted code.)
    tiny = functools.partial(trio_uring.UringIOManager, sq_entries=4, cq_factor=2)
    monkeypatch.setattr(trio._core._run, "TheIOManager", tiny)


def test_full_sq_and_cq_overflow_lose_nothing(tiny: None) -> None:
    pairs = [socket.socketpair() for _ in range(100)]
    overflowed: list[bool] = []

    async def main() -> int:
        manager = trio.lowlevel.current_statistics().io_statistics
        assert manager.backend == "io_uring"
        woken = 0

        async def waiter(sock: socket.socket) -> None:
            nonlocal woken
            await trio.lowlevel.wait_readable(sock)
            woken += 1

        async with trio.open_nursery() as nursery:
            for a, _ in pairs:
                nursery.start_soon(waiter, a)  # 100 POLL_ADDs through a 4-entry SQ
            await trio.testing.wait_all_tasks_blocked()
            for _, b in pairs:
                b.send(b"x")  # 100 completions into an 8-entry CQ
            mgr = trio_uring.lowlevel.current_manager()
            overflowed.append(bool(lib.tu_sq_flags(mgr._r) & SQ_CQ_OVERFLOW))
        return woken

    try:
        assert trio.run(main) == 100
    finally:
        for a, b in pairs:
            a.close()
            b.close()
    assert overflowed == [True]
