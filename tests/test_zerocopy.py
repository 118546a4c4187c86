"""SEND_ZC: two CQEs, buffers held until the notification, fallbacks, cancellation."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio
import trio.testing
from trio import socket as tsocket

from tests._child import run_child
from tests._pairs import tcp_socketpair, tcp_stream_pair
from tests.conftest import assert_idle, run_on_epoll
from trio_uring import lowlevel as ll
from trio_uring._net._streams import ZEROCOPY_THRESHOLD, SocketStream
from trio_uring._ops._zerocopy import send_zc
from trio_uring.lowlevel import current_manager

MSG_WAITALL = 0x100

#: SEND_ZC as trio_uring submits it: with IORING_SEND_ZC_REPORT_USAGE.
ZEROCOPY = pytest.mark.needs_kernel("IORING_OP_SEND_ZC", "IORING_SEND_ZC_REPORT_USAGE")


async def receive_exactly(stream: SocketStream, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = await stream.receive_some(n - len(got))
        assert chunk, "unexpected EOF"
        got += chunk
    return bytes(got)


def zc_stats() -> tuple[int, int, int]:
    s = current_manager().statistics()
    return s.zerocopy_sends, s.zerocopy_notifications, s.zerocopy_copied


def resize_fails(buf: bytearray) -> bool:
    try:
        buf.append(0)
    except BufferError:
        return True
    del buf[-1]
    return False


@ZEROCOPY
async def test_send_zc_mutable_buffer_returns_after_notification() -> None:
    a, b = await tcp_stream_pair()
    buf = bytearray(os.urandom(65536))
    expected = bytes(buf)
    before = zc_stats()
    done = trio.Event()

    async def sender() -> None:
        n = await send_zc(a.socket, buf, MSG_WAITALL)
        assert n == len(expected)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        # The result CQE is in (64 KiB fit in the socket buffers) but loopback
        # defers the copy until the peer reads: no notification yet.
        sends, notifs, _ = zc_stats()
        assert sends == before[0] + 1
        assert notifs == before[1]
        assert not done.is_set()
        assert resize_fails(buf)  # still exported to the kernel
        assert await receive_exactly(b, len(expected)) == expected
    sends, notifs, copied = zc_stats()
    assert notifs == before[1] + 1
    assert copied == before[2] + 1  # loopback always copies
    assert not resize_fails(buf)
    await a.aclose()
    await b.aclose()
    await assert_idle()


@ZEROCOPY
async def test_send_zc_bytes_returns_after_result_and_keeps_reference() -> None:
    a, b = await tcp_stream_pair()
    data = os.urandom(65536)
    before = zc_stats()
    baseline = current_manager().statistics().operations_in_flight
    assert await send_zc(a.socket, data, MSG_WAITALL) == len(data)
    # Returned before the notification; the op (and the reference) is still in flight.
    assert zc_stats()[1] == before[1]
    assert current_manager().statistics().operations_in_flight == baseline + 1
    assert await receive_exactly(b, len(data)) == data
    await trio.testing.wait_all_tasks_blocked()
    assert zc_stats()[1] == before[1] + 1
    await a.aclose()
    await b.aclose()
    await assert_idle()


@ZEROCOPY
async def test_send_zc_errors() -> None:
    a, b = tsocket.socketpair()
    with a, b:
        before = zc_stats()
        with pytest.raises(OSError) as info:
            await send_zc(a, bytearray(100))
        assert info.value.errno == 95  # EOPNOTSUPP on AF_UNIX
        # The error still had F_MORE: we waited for its notification.
        assert zc_stats()[:2] == (before[0] + 1, before[1] + 1)
        with pytest.raises(TypeError):
            await send_zc(a, "text")
    with pytest.raises(OSError) as info:  # as lowlevel.send: the fd is closed
        await send_zc(a, b"x")
    assert info.value.errno == errno.EBADF
    await assert_idle()


@ZEROCOPY
async def test_stream_send_all_waits_for_every_notification() -> None:
    a, b = await tcp_stream_pair(zerocopy="always")
    buf = bytearray(os.urandom(3 * 65536))
    expected = bytes(buf)
    before = zc_stats()
    done = trio.Event()

    async def sender() -> None:
        await a.send_all(buf)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        assert zc_stats()[0] > before[0]
        assert resize_fails(buf)
        assert not done.is_set()
        got = await receive_exactly(b, len(expected))
    assert got == expected
    sends, notifs, _ = zc_stats()
    assert notifs - before[1] == sends - before[0] >= 1
    assert not resize_fails(buf)
    # "always" keeps using SEND_ZC although loopback copies.
    assert a.zerocopy
    await a.send_all(b"z" * 100)
    assert zc_stats()[0] == sends + 1
    assert await receive_exactly(b, 100) == b"z" * 100
    await a.aclose()
    await b.aclose()
    await assert_idle()


@ZEROCOPY
async def test_auto_uses_zerocopy_then_falls_back_when_copied() -> None:
    a, b = await tcp_stream_pair(zerocopy="auto")
    assert a.zerocopy
    before = zc_stats()
    small = os.urandom(ZEROCOPY_THRESHOLD - 1)
    await a.send_all(small)  # below the threshold: plain SEND
    assert zc_stats()[0] == before[0]
    assert await receive_exactly(b, len(small)) == small
    big = bytearray(os.urandom(4 * ZEROCOPY_THRESHOLD))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send_all, big)
        assert await receive_exactly(b, len(big)) == big
    sends, notifs, copied = zc_stats()
    assert (sends, notifs, copied) == (before[0] + 1, before[1] + 1, before[2] + 1)
    assert not a.zerocopy  # loopback reported ZC_COPIED: plain SEND from now on
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send_all, big)
        assert await receive_exactly(b, len(big)) == big
    assert zc_stats()[0] == sends
    await a.aclose()
    await b.aclose()
    await assert_idle()


async def test_never_policy() -> None:
    a, b = await tcp_stream_pair(zerocopy="never")
    before = zc_stats()
    data = os.urandom(200_000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send_all, data)
        assert await receive_exactly(b, len(data)) == data
    assert zc_stats() == before
    await a.aclose()
    await b.aclose()


@ZEROCOPY
async def test_af_unix_falls_back_to_send() -> None:
    left, right = tsocket.socketpair()
    a, b = SocketStream(left, zerocopy="always"), SocketStream(right)
    before = zc_stats()
    data = bytearray(os.urandom(100_000))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send_all, data)
        assert await receive_exactly(b, len(data)) == data
    sends, notifs, _ = zc_stats()
    assert sends == before[0] + 1 and notifs == before[1] + 1  # tried, got EOPNOTSUPP + notif
    assert not a.zerocopy
    await a.send_all(data)
    assert zc_stats()[0] == sends
    assert await receive_exactly(b, len(data)) == data
    await a.aclose()
    await b.aclose()
    await assert_idle()


@ZEROCOPY
async def test_cancel_mid_send_all_resets_the_connection_and_frees_the_buffer() -> None:
    """A cancelled zero-copy send_all to a peer that stops reading honours its scope.

    The kernel holds the pages until the peer ACKs, which it never does here; the
    stream resets the connection instead, the notification arrives at once, the
    buffer is free again, and the peer never sees bytes changed afterwards.
    """
    a, b = await tcp_stream_pair(zerocopy="always")
    buf = bytearray(b"a" * (8 * 1024 * 1024))
    before = zc_stats()
    outcome: list[str] = []

    async def sender(scope: trio.CancelScope) -> None:
        with scope:
            try:
                await a.send_all(buf)
            except trio.Cancelled:
                outcome.append("cancelled")
                raise
            outcome.append("returned")

    scope = trio.CancelScope()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender, scope)
            await trio.testing.wait_all_tasks_blocked()
            assert zc_stats()[0] == before[0] + 1
            assert resize_fails(buf)  # the kernel has the pages
            scope.cancel()
    assert outcome == ["cancelled"]
    assert zc_stats()[1] == before[1] + 1  # the notification came
    buf[:] = b"Z" * len(buf)  # changed after the call returned: must never reach the peer
    assert not resize_fails(buf)
    received = bytearray()
    with trio.fail_after(10):
        while True:
            try:
                chunk = await b.receive_some()
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            received += chunk
    assert len(received) < len(buf)
    assert b"Z" not in received
    with pytest.raises(trio.BrokenResourceError):
        await a.send_all(b"more")  # the stream was reset
    await a.aclose()
    await b.aclose()
    await assert_idle()


CHILD = textwrap.dedent(
    """
    import os, resource, sys
    import trio, trio.testing
    from trio import socket as tsocket
    import trio_uring
    from trio_uring.lowlevel import current_manager
    from trio_uring._net._streams import SocketStream

    async def main():
        listener = tsocket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = tsocket.socket()
        await client.connect(listener.getsockname())
        server, _ = await listener.accept()
        listener.close()
        a, b = SocketStream(client, zerocopy="always"), SocketStream(server)
        await a.send_all(b"warm-up")  # sets up the provided-buffer ring
        assert await b.receive_some() == b"warm-up"
        # From here on every page a SEND_ZC pins is charged against 4096 bytes.
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (4096, 4096))
        data = bytearray(os.urandom(1 << 20))
        got = bytearray()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.send_all, data)
            while len(got) < len(data):
                got += await b.receive_some()
        stats = current_manager().statistics()
        print(got == data, a.zerocopy, stats.zerocopy_sends, stats.zerocopy_notifications)
        await a.aclose()
        await b.aclose()

    # The ring must be created by the unprivileged user (a root-created ring is
    # never charged), and on 6.18 the ring itself is charged to RLIMIT_MEMLOCK,
    # so the 4096-byte limit is set inside the run, before the zero-copy send.
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (1 << 20, 1 << 20))
    os.setgid(65534)
    os.setuid(65534)
    trio_uring.run(main)
    """
)


@ZEROCOPY
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged uid")
def test_memlock_enomem_falls_back_in_unprivileged_child() -> None:
    env = dict(os.environ, TRIO_URING_REQUIRE="1")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env=env,
    )
    if proc.returncode != 0 and "Permission denied" in proc.stderr:
        pytest.skip(f"the unprivileged child cannot run Python here: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr
    ok, zerocopy, sends, notifs = proc.stdout.split()
    assert ok == "True"
    # "always" gives up only on ENOMEM / EOPNOTSUPP / EINVAL; the warm-up SEND_ZC on the
    # same TCP socket worked, so this was ENOMEM.
    assert zerocopy == "False"
    assert int(sends) == 2 and int(notifs) == 2  # warm-up (worked) + the ENOMEM one


# (From the operation-lifecycle review: findings 4, 5 and 11.)
@pytest.mark.needs_kernel("IORING_OP_SEND_ZC", "IORING_SEND_ZC_REPORT_USAGE")
async def test_cancelled_zerocopy_send_all_returns_and_frees_the_buffer() -> None:
    """Finding 4: ``send_all`` of a 4 MiB bytearray with ``zerocopy="always"`` to a peer
    that never reads, in ``move_on_after(0.5)``: it returns at the deadline (not when
    the peer finally drains the socket), the bytearray can be resized at once, and
    the peer never receives bytes the caller wrote into the buffer after the call
    returned.  A watchdog drains the peer after 8 s, so the bug fails instead of
    hanging (trio cannot interrupt a task parked with ``Abort.FAILED``)."""
    a, b = await tcp_stream_pair(zerocopy="always")
    assert a.zerocopy
    buf = bytearray(b"a" * (4 << 20))
    watchdog_fired = False
    received = bytearray()

    async def watchdog() -> None:
        nonlocal watchdog_fired
        await trio.sleep(8)
        watchdog_fired = True
        while data := await b.receive_some():
            received.extend(data)

    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watchdog)
                start = trio.current_time()
                with trio.move_on_after(0.5) as scope:
                    await a.send_all(buf)
                elapsed = trio.current_time() - start
                nursery.cancel_scope.cancel()
            assert not watchdog_fired, (
                f"send_all returned only after the peer drained ({elapsed:.1f} s)"
            )
            assert scope.cancelled_caught
            assert elapsed < 3, elapsed
            buf[:] = b"Z" * len(buf)  # in place: the same memory the kernel was given
            buf.clear()  # BufferError: the kernel (or an export) still holds the buffer
            await a.aclose()
            with contextlib.suppress(trio.BrokenResourceError):  # a reset is fine too
                while data := await b.receive_some():
                    received.extend(data)
        assert b"Z" not in received, "the peer received bytes written after send_all returned"
        assert set(received) <= {ord("a")}
    finally:
        await a.aclose()
        await b.aclose()
    await assert_idle()


F5_CHILD = """
import socket, time, warnings
warnings.simplefilter("ignore", ResourceWarning)  # memory the kernel still pins: allowed
import trio
import trio_uring
from trio_uring import SocketStream

# The peer's window is tiny and it never reads; the sender may queue a lot unsent
# (big SO_SNDBUF, TCP_NOTSENT_LOWAT raised over the stream's 16 KiB), so the
# SEND_ZC's result CQE arrives while its notification waits for the peer.
with socket.socket() as listener:
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    client.connect(listener.getsockname())
    peer, _ = listener.accept()
size = min(1 << 20, client.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 4) & ~4095

async def main():
    stream = SocketStream(trio.socket.from_stdlib_socket(client), zerocopy="always")
    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 64 << 20)
    with trio.fail_after(5):
        await stream.send_all(bytes(size))  # bytes: returns after the result CQE
    stats = trio.lowlevel.current_statistics().io_statistics
    await stream.aclose()
    return stats.zerocopy_sends - stats.zerocopy_notifications

start = time.monotonic()
pending = trio_uring.run(main)
elapsed = time.monotonic() - start
peer.close()
print(pending, elapsed)
"""


def test_run_exit_does_not_wait_for_zerocopy_notifications() -> None:
    """Finding 5: a run whose main returns while a zero-copy ``bytes`` send still waits
    for its notification (the peer never reads) must end promptly; the bug drains the
    ring for ~5 s at exit.  Child process; a ResourceWarning is allowed."""
    proc = run_child(F5_CHILD)
    pending, elapsed = proc.stdout.split()
    if int(pending) < 1:
        pytest.skip("could not leave a zero-copy notification pending at run exit")
    assert float(elapsed) < 2, f"the run took {float(elapsed):.2f} s to finish"


@pytest.fixture
def unix_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        yield a, b


async def _outcome(call: Callable[[], Awaitable[object]]) -> tuple[type[BaseException], Any]:
    try:
        await call()
    except BaseException as exc:
        return type(exc), getattr(exc, "errno", None)
    pytest.fail("the call did not raise")  # pragma: no cover


@pytest.mark.parametrize("bad", ["str_data", "fd_minus_one", "float_fd", "object_fd", "flags"])
async def test_send_zc_bad_arguments_raise_what_send_raises(
    bad: str, unix_pair: tuple[socket.socket, socket.socket]
) -> None:
    """Finding 11: ``lowlevel.send_zc`` rejects bad arguments as ``lowlevel.send`` does
    (``TypeError`` for a str, ``OSError(EBADF)`` for fd -1 rather than
    ``ClosedResourceError``, ``TypeError`` for a non-socket, ``OverflowError`` for
    flags), after a checkpoint."""
    a, _ = unix_pair
    sock: Any = a
    data: Any = b"data"
    flags = 0
    if bad == "str_data":
        data = "text"
    elif bad == "fd_minus_one":
        sock = -1
    elif bad == "float_fd":
        sock = 1.5
    elif bad == "object_fd":
        sock = object()
    else:
        flags = 1 << 40
    want = await _outcome(lambda: ll.send(sock, data, flags))
    got = await _outcome(lambda: ll.send_zc(sock, data, flags))
    assert got == want
    with trio.testing.assert_checkpoints():
        await _outcome(lambda: ll.send_zc(sock, data, flags))
    if bad == "str_data":
        with pytest.raises(TypeError, match="a bytes-like object is required, not 'str'"):
            await ll.send_zc(sock, data, flags)
    # Cancelled before the call: Cancelled wins over the argument error, as for send.
    with trio.CancelScope() as scope:
        scope.cancel()
        got_cancelled = await _outcome(lambda: ll.send_zc(sock, data, flags))
    assert got_cancelled[0] is trio.Cancelled


async def test_send_zc_is_a_checkpoint() -> None:
    """Finding 11: ``lowlevel.send_zc`` is a checkpoint (a completed call yields; a
    call in a cancelled scope raises ``Cancelled`` and sends nothing)."""
    a, b = tcp_socketpair()
    with a, b:
        with trio.testing.assert_checkpoints():
            assert await ll.send_zc(a, b"first") == 5
        with trio.CancelScope() as scope:
            scope.cancel()
            await ll.send_zc(a, b"never")
        assert scope.cancelled_caught
        await trio.lowlevel.wait_readable(b)
        assert b.recv(100) == b"first"


def test_stream_zerocopy_is_false_on_trios_epoll_backend() -> None:
    """Finding 11: outside an io_uring run (trio's epoll backend) a SocketStream never
    uses SEND_ZC, so its ``zerocopy`` property says False (before and after sending)."""
    seen: list[bool] = []

    async def main() -> None:
        assert trio.lowlevel.current_statistics().io_statistics.backend == "epoll"
        a, b = trio.socket.socketpair()
        sa, sb = SocketStream(a), SocketStream(b)
        seen.append(sa.zerocopy)
        await sa.send_all(b"x" * 65536)
        seen.append(sa.zerocopy)
        got = 0
        while got < 65536:
            got += len(await sb.receive_some())
        await sa.aclose()
        await sb.aclose()

    run_on_epoll(main)
    assert seen == [False, False]
