"""Test set-up: every trio run in this session goes through trio_uring.

Where the kernel refuses io_uring the tests skip with the reason, except under
``TRIO_URING_REQUIRE=1`` (set by CI), where they fail.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Iterator

import pytest
import trio

import trio_uring
from tests._pairs import Pair, make_pair
from trio_uring._core import _kernels
from trio_uring._core._ring import Ring
from trio_uring.lowlevel import current_manager


def pytest_configure(config: pytest.Config) -> None:
    reason = trio_uring.unavailable_reason()
    if reason is None:
        trio_uring.install()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = trio_uring.unavailable_reason()
    if reason is None:
        for item in items:
            for mark in item.iter_markers("needs_kernel"):
                lacks = kernel_lacks(*mark.args)
                if lacks is not None:
                    item.add_marker(pytest.mark.skip(reason=lacks))
        return
    if os.environ.get("TRIO_URING_REQUIRE", "") not in ("", "0"):
        raise pytest.UsageError(f"TRIO_URING_REQUIRE=1 but io_uring is unavailable: {reason}")
    skip = pytest.mark.skip(reason=f"io_uring unavailable: {reason}")
    for item in items:
        if "no_uring_ok" not in item.keywords:
            item.add_marker(skip)


@functools.cache
def _ring_has() -> dict[str, bool]:
    """Which entries of ``trio_uring._core._kernels.TABLE`` this kernel (or the emulated release) has."""
    ring = Ring(entries=8)
    try:
        return {item.name: ring.has(item) for item in _kernels.TABLE}
    finally:
        ring.close()


def kernel_lacks(*names: str) -> str | None:
    """Why a test that needs the ``_kernels`` entries ``names`` cannot run here, or None.

    The ``needs_kernel(*names)`` mark skips a test with this reason.
    """
    has = _ring_has()
    missing = [_kernels.entry(name) for name in names if not has[_kernels.entry(name).name]]
    if not missing:
        return None
    emulated = _kernels.emulated()
    where = "this kernel" if emulated is None else f"the emulated Linux {emulated[0]}.{emulated[1]}"
    needs = ", ".join(f"{item.name} (Linux {item.version})" for item in missing)
    return f"needs {needs}, which {where} lacks"


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


@pytest.fixture(autouse=True)
def no_fd_leaks() -> Iterator[None]:
    """No test may leak a file descriptor."""
    before = open_fds()
    yield
    leaked = open_fds() - before
    # give the garbage collector a chance for sockets dropped without close
    if leaked:
        import gc

        gc.collect()
        leaked = open_fds() - before
    assert not leaked, f"leaked fds: {sorted(leaked)}"


async def assert_idle() -> None:
    """After the test body, the ring has nothing in flight but trio's own waits."""
    await trio.testing.wait_all_tasks_blocked()
    stats = current_manager().statistics()
    # trio's run_sync_soon task always waits on its wakeup socket.
    assert stats.operations_in_flight <= stats.tasks_waiting_read + stats.tasks_waiting_write


@pytest.fixture(params=["socketpair", "tcp"])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """A connected non-blocking stdlib socket pair, once AF_UNIX and once loopback TCP."""
    a, b = make_pair(request.param)
    with a, b:
        yield a, b


def run_on_epoll(main: Callable[[], Awaitable[object]]) -> None:
    """``trio.run(main)`` on trio's own epoll backend, though the session installed io_uring."""
    installed = trio_uring.installed()
    trio_uring.uninstall()
    try:
        trio.run(main)
    finally:
        if installed:
            trio_uring.install()


@pytest.fixture
def manager() -> trio_uring.UringIOManager:
    return current_manager()
