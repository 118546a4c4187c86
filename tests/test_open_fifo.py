"""Opening FIFOs: blocking like ``os.open``, cancellable, and no fd or thread left behind.

io_uring's non-blocking first attempt at ``IORING_OP_OPENAT`` fails a
write-only open of a FIFO without a reader with ``ENXIO`` and lets a read-only
open through before any writer came; ``os.open`` blocks in both cases.
``trio_uring`` waits in a worker thread then.  A cancelled open leaves that
thread blocked until the FIFO gets a peer, so every test that cancels one opens
the peer itself before it ends and waits until the thread closed its fd.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring
from tests.conftest import assert_idle
from trio_uring import AsyncBinaryFile
from trio_uring import lowlevel as ll
from trio_uring._ops import _files as fdops

RD_NB = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
WR_NB = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def has_reader(path: Path) -> bool:
    """Is the FIFO open for reading anywhere (a non-blocking writer gets ENXIO if not)?

    Not while a read-only open waits: the probe is a writer that comes and goes.
    The kernel drops a file's last reference (an fd closed through io_uring, a
    request that held it) in task work that runs when this thread next returns
    from a syscall, so one throwaway syscall comes first.
    """
    os.stat(path)
    try:
        os.close(os.open(path, WR_NB))
    except OSError as exc:
        assert exc.errno == errno.ENXIO
        return False
    return True


@pytest.fixture
def thread_opens(monkeypatch: pytest.MonkeyPatch) -> list[fdops._ThreadOpen]:
    """Every ``os.open`` that openat hands to a worker thread, in order."""
    opens: list[fdops._ThreadOpen] = []

    class Recorded(fdops._ThreadOpen):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            opens.append(self)

    monkeypatch.setattr(fdops, "_ThreadOpen", Recorded)
    return opens


async def release_blocked_writer(path: Path, opener: fdops._ThreadOpen) -> None:
    """Give the abandoned thread of ``opener``, a writer blocked in ``open``, a reader.

    The reader stays open until the thread closed the fd it got: POLLHUP then
    (nothing is written).  A thread that had not started when the task gave
    up never opens.
    """
    assert opener._abandoned
    r = os.open(path, RD_NB)
    try:
        if opener._started:
            with trio.fail_after(10):
                await trio.lowlevel.wait_readable(r)
        assert os.read(r, 1) == b""  # nothing written, and no writer left
    finally:
        os.close(r)


async def release_blocked_reader(path: Path) -> None:
    """Give a reader blocked in ``open`` (an abandoned thread) a writer; wait until it closed.

    The thread holds a reader (its duplicate of the FIFO) until its own open
    returned; the writer stays open until no reader is left.
    """
    try:
        w = os.open(path, WR_NB)  # succeeds while the thread's reader is there
    except OSError as exc:
        assert exc.errno == errno.ENXIO
        return  # the thread is done already
    try:
        # Fill the FIFO so POLLOUT cannot come; POLLERR does, once no reader is left.
        try:
            while True:
                os.write(w, bytes(65536))
        except BlockingIOError:
            pass
        except BrokenPipeError:
            pass  # already gone
        with trio.fail_after(10):
            await trio.lowlevel.wait_writable(w)
    finally:
        os.close(w)
    assert not has_reader(path)


# ------------------------------------------------------------------ cancellation
@pytest.mark.parametrize("how", ["cancel", "deadline"])
async def test_cancelled_blocking_open_raises_cancelled(fifo: Path, how: str) -> None:
    """'wb' (O_CREAT|O_TRUNC) blocks in an io-wq worker; cancelled it raises Cancelled, not errno 512."""
    if how == "deadline":
        with trio.move_on_after(0.05) as scope:
            await trio_uring.open_file(fifo, "wb")
        assert scope.cancelled_caught
    else:
        async with trio.open_nursery() as nursery:

            async def opener(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
                with trio.CancelScope() as scope:
                    task_status.started(scope)
                    await trio_uring.open_file(fifo, "wb")
                    pytest.fail("opened without a reader")  # pragma: no cover
                assert scope.cancelled_caught

            scope = await nursery.start(opener)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
    # Nothing is left waiting: no reader, no writer.
    assert not has_reader(fifo)
    r = os.open(fifo, RD_NB)
    try:
        assert os.read(r, 1) == b""  # no writer
    finally:
        os.close(r)


async def test_cancelled_write_only_open_thread_closes_its_fd(
    fifo: Path, thread_opens: list[fdops._ThreadOpen]
) -> None:
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def opener() -> None:
            with scope:
                await fdops.openat(fifo, os.O_WRONLY)
                pytest.fail("opened without a reader")  # pragma: no cover

        nursery.start_soon(opener)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
    assert scope.cancelled_caught
    # The abandoned thread is still a writer blocked in open; a reader lets it
    # through and it closes what it got.
    (thread_open,) = thread_opens
    assert thread_open._limiter is not None  # not the run's default limiter
    await release_blocked_writer(fifo, thread_open)


@pytest.mark.parametrize("api", ["openat", "open_file"])
async def test_cancelled_read_only_open_closes_everything(fifo: Path, api: str) -> None:
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def opener() -> None:
            with scope:
                if api == "openat":
                    await fdops.openat(fifo, os.O_RDONLY)
                else:
                    await trio_uring.open_file(fifo, "rb")
                pytest.fail("opened without a writer")  # pragma: no cover

        nursery.start_soon(opener)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
    assert scope.cancelled_caught
    await release_blocked_reader(fifo)


async def test_cancel_before_the_open_started(fifo: Path) -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        await fdops.openat(fifo, os.O_RDONLY)
    assert scope.cancelled_caught
    assert not has_reader(fifo)


# ---------------------------------------------------------- blocking like os.open
async def test_write_only_open_waits_for_a_reader(fifo: Path) -> None:
    got: list[int] = []
    async with trio.open_nursery() as nursery:

        async def opener() -> None:
            got.append(await fdops.openat(fifo, os.O_WRONLY))

        nursery.start_soon(opener)
        await trio.testing.wait_all_tasks_blocked()
        assert not got
        r = os.open(fifo, RD_NB)
    try:
        (w,) = got
        assert await fdops.write(w, b"through the fifo") == 16
        await fdops.close(w)
        assert os.read(r, 100) == b"through the fifo"
        assert os.read(r, 100) == b""
    finally:
        os.close(r)


async def test_waiting_opens_hold_no_default_thread_limiter_token(
    fifo: Path, tmp_path: Path
) -> None:
    """Opens that wait for a peer neither queue behind nor starve the run's other threads."""
    trio.to_thread.current_default_thread_limiter().total_tokens = 1  # this run's only
    second = tmp_path / "second"
    os.mkfifo(second)
    got: list[int] = []
    async with trio.open_nursery() as nursery:

        async def opener(path: Path) -> None:
            got.append(await fdops.openat(path, os.O_WRONLY))

        nursery.start_soon(opener, fifo)
        nursery.start_soon(opener, second)
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(10):
            assert await trio.to_thread.run_sync(lambda: 42) == 42
        readers = [os.open(fifo, RD_NB), os.open(second, RD_NB)]
    for fd in got + readers:
        os.close(fd)


async def test_write_only_open_relative_to_dir_fd(fifo: Path) -> None:
    got: list[int] = []
    dfd = os.open(fifo.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        async with trio.open_nursery() as nursery:

            async def opener() -> None:
                got.append(await fdops.openat(fifo.name, os.O_WRONLY, dir_fd=dfd))

            nursery.start_soon(opener)
            await trio.testing.wait_all_tasks_blocked()
            r = os.open(fifo, RD_NB)
    finally:
        os.close(dfd)
    os.close(got[0])
    os.close(r)


@pytest.mark.parametrize("api", ["openat", "open_file"])
async def test_read_only_open_waits_for_a_writer(fifo: Path, api: str) -> None:
    """The open returns when a writer opens, before it wrote anything."""
    got: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def opener() -> None:
            if api == "openat":
                got.append(await fdops.openat(fifo, os.O_RDONLY))
            else:
                got.append(await trio_uring.open_file(fifo, "rb"))

        nursery.start_soon(opener)
        await trio.testing.wait_all_tasks_blocked()
        assert not got
        w = os.open(fifo, WR_NB)  # the blocked open counts as a reader
    try:
        fd = got[0] if api == "openat" else got[0].fileno()
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK  # a blocking fd, as os.open's
        os.write(w, b"first")
        if api == "openat":
            assert await fdops.read(got[0], 100) == b"first"
        else:
            assert await got[0].read(5) == b"first"
        os.write(w, b"second")
    finally:
        os.close(w)
    if api == "openat":
        assert await fdops.read(got[0], 100) == b"second"
        assert await fdops.read(got[0], 100) == b""
        await fdops.close(got[0])
    else:
        assert await got[0].read() == b"second"
        await got[0].aclose()
    assert not has_reader(fifo)


@pytest.mark.parametrize("api", ["open_file", "trio.open_file"])
async def test_writer_opened_first(fifo: Path, api: str) -> None:
    """``echo hi > fifo`` started before the reader: the reader gets it all, the writer no EPIPE."""
    for i in range(20):
        payload = b"round %d\n" % i

        def writer(payload: bytes) -> None:
            fd = os.open(fifo, os.O_WRONLY)  # blocks until the reader opens
            try:
                os.write(fd, payload)
            finally:
                os.close(fd)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, writer, payload)
            if i % 2:
                await trio.testing.wait_all_tasks_blocked()
            opener = trio_uring.open_file if api == "open_file" else trio.open_file
            async with await opener(fifo, "rb") as f:
                assert await f.read() == payload
        assert not has_reader(fifo)  # no thread of ours left waiting as a reader


@pytest.mark.parametrize("seen", [True, False], ids=["before-the-check", "after-the-check"])
async def test_writer_came_and_left_after_the_uring_open(
    fifo: Path, monkeypatch: pytest.MonkeyPatch, seen: bool
) -> None:
    """The race of ``echo hi > fifo`` started first, made deterministic.

    A writer arrives after io_uring's open and writes and closes before the
    worker thread's open (which would then wait for a second writer): a
    blocking open would have returned.  Seen by the first check, no thread
    starts; seen only by the watcher, a writer of openat's own releases the
    thread, so no reader is left behind.
    """
    real = fdops._fifo_hung_up

    def hung_up(fd: int) -> bool:
        w = os.open(fifo, WR_NB)
        os.write(w, b"early")
        os.close(w)
        assert real(fd)
        return seen

    monkeypatch.setattr(fdops, "_fifo_hung_up", hung_up)
    with trio.fail_after(10):
        fd = await fdops.openat(fifo, os.O_RDONLY)
    try:
        assert await fdops.read(fd, 100) == b"early"
        assert await fdops.read(fd, 100) == b""
    finally:
        os.close(fd)
    assert not has_reader(fifo)  # the thread is gone


async def test_stale_data_is_not_a_writer(fifo: Path) -> None:
    """Data written before the open, with no writer left, does not end the wait (as os.open)."""
    keep = os.open(fifo, RD_NB)
    try:
        w = os.open(fifo, WR_NB)
        os.write(w, b"old")
        os.close(w)
        got: list[int] = []
        async with trio.open_nursery() as nursery:

            async def opener() -> None:
                got.append(await fdops.openat(fifo, os.O_RDONLY))

            nursery.start_soon(opener)
            await trio.testing.wait_all_tasks_blocked()
            assert not got
            w = os.open(fifo, WR_NB)
        os.close(w)
        assert await fdops.read(got[0], 100) == b"old"
        os.close(got[0])
    finally:
        os.close(keep)


# -------------------------------------------------------- kernel semantics kept
async def test_nonblock_keeps_kernel_semantics(fifo: Path) -> None:
    with pytest.raises(OSError) as info:
        await fdops.openat(fifo, os.O_WRONLY | os.O_NONBLOCK)
    assert info.value.errno == errno.ENXIO
    with pytest.raises(OSError) as info:
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    assert info.value.errno == errno.ENXIO
    r = await fdops.openat(fifo, os.O_RDONLY | os.O_NONBLOCK)  # no writer needed
    try:
        w = await fdops.openat(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(w)
    finally:
        os.close(r)


async def test_rdwr_never_blocks(fifo: Path) -> None:
    fd = await fdops.openat(fifo, os.O_RDWR)
    os.close(fd)
    async with await trio_uring.open_file(fifo, "r+b", buffering=0) as f:
        assert isinstance(f, AsyncBinaryFile)
        await f.write(b"self")
        assert await f.read(4) == b"self"


async def test_enxio_from_a_socket_path(tmp_path: Path) -> None:
    """A write-only open of a socket fails with ENXIO, as with os.open (also after the retry)."""
    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(OSError) as info:
            await fdops.openat(path, os.O_WRONLY)
        assert info.value.errno == errno.ENXIO


# ------------------------------------------------------------- thread fallback
@pytest.fixture
def no_uring(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(fdops, "_uring", lambda opcode: None)
    yield


async def test_thread_fallback_blocks_and_cancels(
    fifo: Path, no_uring: None, thread_opens: list[fdops._ThreadOpen]
) -> None:
    got: list[int] = []
    async with trio.open_nursery() as nursery:

        async def opener() -> None:
            got.append(await fdops.openat(fifo, os.O_RDONLY))

        nursery.start_soon(opener)
        await trio.testing.wait_all_tasks_blocked()
        assert not got
        # The thread may not be in the kernel yet: a blocking writer meets it either way.
        w = await trio.to_thread.run_sync(os.open, fifo, os.O_WRONLY | os.O_CLOEXEC)
    os.close(w)
    os.close(got[0])

    scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:

        async def cancelled_opener() -> None:
            with scope:
                await fdops.openat(fifo, os.O_WRONLY)

        nursery.start_soon(cancelled_opener)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
    assert scope.cancelled_caught
    await release_blocked_writer(fifo, thread_opens[-1])


async def test_thread_open_owner_race(tmp_path: Path) -> None:
    """Whoever gives up last owns the fd: abandoning before or after the hand-over leaks nothing."""
    path = tmp_path / "file"
    path.write_bytes(b"")
    # Abandoned before the thread started: it never opens.
    opener = fdops._ThreadOpen(bytes(path), os.O_RDONLY | os.O_CLOEXEC, 0, None)
    with trio.CancelScope() as scope:
        scope.cancel()
        await opener.run()
    assert opener._open() == -1
    # Handed over, then the task gave up before the fd arrived: the task closes it.
    opener = fdops._ThreadOpen(bytes(path), os.O_RDONLY | os.O_CLOEXEC, 0, None)
    entered = threading.Event()
    release = threading.Event()

    def slow_open() -> int:
        fd = fdops._ThreadOpen._open(opener)
        entered.set()
        release.wait()
        return fd

    opener._open = slow_open  # type: ignore[method-assign]
    with trio.CancelScope() as scope:

        async def cancel_when_handed_over() -> None:
            await trio.to_thread.run_sync(entered.wait)
            scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_when_handed_over)
            await opener.run()
    release.set()
    assert scope.cancelled_caught
    assert opener._fd == -1 and opener._abandoned


# ---------------------------------------------------------------------------
# Moved from test_lifecycle_regressions.py (its findings 7 and 8): blocking opens.
# ---------------------------------------------------------------------------
async def test_open_file_of_a_fifo_cancelled_is_a_cancellation(fifo: Path) -> None:
    """Finding 7: ``open_file(fifo, "wb")`` with no reader blocks in the kernel; cancelled
    by ``move_on_after(0.2)`` it must end as a cancellation the scope catches, not as
    ``OSError(512)`` (``ERESTARTSYS`` leaking out of the interrupted io-wq worker), and
    leak no fd.  A watchdog opens a reader after 8 s so a stuck open fails the test."""
    watchdog_fired = False

    async def watchdog() -> None:
        nonlocal watchdog_fired
        await trio.sleep(8)
        watchdog_fired = True
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            await trio.sleep(1)
        finally:
            os.close(fd)

    opened: list[object] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watchdog)
            start = trio.current_time()
            with trio.move_on_after(0.2) as scope:
                opened.append(await trio_uring.open_file(fifo, "wb"))
            elapsed = trio.current_time() - start
            nursery.cancel_scope.cancel()
    for f in opened:  # pragma: no cover - only if the open was not cancelled
        await f.aclose()  # type: ignore[attr-defined]
    assert not watchdog_fired
    assert scope.cancelled_caught
    assert opened == []
    assert elapsed < 5, elapsed
    await assert_idle()


async def test_lowlevel_openat_for_writing_waits_for_a_reader(fifo: Path) -> None:
    """Finding 8: ``lowlevel.openat(fifo, O_WRONLY)`` behaves like ``os.open``: it waits
    for a reader instead of failing with ``ENXIO`` (what an ``O_NONBLOCK`` open gives,
    which io_uring tries first), and the fd it returns is blocking."""
    got: list[int] = []
    reader = -1

    async def opener() -> None:
        got.append(await ll.openat(fifo, os.O_WRONLY))

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(opener)
                await trio.testing.wait_all_tasks_blocked()
                assert got == []
                reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the reader opens later
        [writer] = got
        assert not fcntl.fcntl(writer, fcntl.F_GETFL) & os.O_NONBLOCK
        os.write(writer, b"through the fifo")
        assert os.read(reader, 100) == b"through the fifo"
    finally:
        for fd in [*got, reader]:
            if fd >= 0:
                os.close(fd)


async def test_lowlevel_openat_for_reading_waits_for_a_writer(fifo: Path) -> None:
    """Finding 8: ``lowlevel.openat(fifo, O_RDONLY)`` does not return before a writer
    opens (as ``os.open``; io_uring's first, non-blocking attempt returns at once),
    and the fd it returns is blocking."""
    got: list[int] = []
    writer = -1

    async def opener() -> None:
        got.append(await ll.openat(fifo, os.O_RDONLY))

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(opener)
                await trio.testing.wait_all_tasks_blocked()
                assert got == [], "the read-only open returned before any writer opened"
                # A blocking open for writing returns once our reader is in the kernel's open.
                writer = await trio.to_thread.run_sync(
                    os.open, fifo, os.O_WRONLY, abandon_on_cancel=True
                )
        [reader] = got
        assert not fcntl.fcntl(reader, fcntl.F_GETFL) & os.O_NONBLOCK
        os.write(writer, b"data")
        assert os.read(reader, 100) == b"data"
    finally:
        for fd in [*got, writer]:
            if fd >= 0:
                os.close(fd)
