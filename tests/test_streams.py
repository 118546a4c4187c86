"""trio_uring.SocketStream / SocketListener: trio's generic stream checks, multishot receive,
bounded queueing, cancellation, listeners and high-level helpers, 1,000 connections."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import random
import resource
import socket as stdsocket
import tempfile

import pytest
import trio
import trio.testing
from trio import socket as tsocket

import trio_uring.lowlevel
from tests._child import run_child
from tests._pairs import tcp_stream_pair
from tests.conftest import assert_idle, run_on_epoll
from trio_uring._core._ring_cffi import lib
from trio_uring._net._highlevel import (
    open_tcp_listeners,
    open_tcp_stream,
    open_unix_socket,
    serve_listeners,
    serve_tcp,
)
from trio_uring._net._listener import SocketListener
from trio_uring._net._streams import (
    RECEIVE_HIGH_WATER,
    SocketStream,
)
from trio_uring._ops import _provided as _bufring
from trio_uring.lowlevel import current_manager

tcp_pair = tcp_stream_pair

#: The streams' multishot receive into the provided-buffer ring.
MULTISHOT = pytest.mark.needs_kernel("IORING_REGISTER_PBUF_RING", "IORING_RECV_MULTISHOT")


async def unix_pair() -> tuple[SocketStream, SocketStream]:
    a, b = tsocket.socketpair()
    return SocketStream(a), SocketStream(b)


async def fill_stream(s: SocketStream) -> None:
    async def sender() -> None:
        while True:
            await s.send_all(b"x" * 10000)

    async def waiter(nursery: trio.Nursery) -> None:
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(waiter, nursery)


@pytest.mark.parametrize("maker", [tcp_pair, unix_pair], ids=["tcp", "unix"])
async def test_check_half_closeable_stream(maker: object) -> None:
    async def stream_maker() -> tuple[SocketStream, SocketStream]:
        return await maker()  # type: ignore[operator, no-any-return]

    async def clogged_stream_maker() -> tuple[SocketStream, SocketStream]:
        left, right = await stream_maker()
        await fill_stream(left)
        await fill_stream(right)
        return left, right

    await trio.testing.check_half_closeable_stream(stream_maker, clogged_stream_maker)
    await assert_idle()


async def test_async_for_receives_until_eof_as_trio() -> None:
    """``async for data in stream`` (the stream's own ``__anext__``) gives what
    ``receive_some`` gives, stops at EOF, and raises what it raises once closed."""
    a, b = await unix_pair()
    got: list[bytes] = []
    async with a, b:
        async with trio.open_nursery() as nursery:

            async def read_all() -> None:
                async for data in b:
                    got.append(data)

            nursery.start_soon(read_all)
            for chunk in (b"one", b"two", b"three"):
                await a.send_all(chunk)
                await trio.testing.wait_all_tasks_blocked()
            await a.send_eof()
        assert got == [b"one", b"two", b"three"]
        with pytest.raises(StopAsyncIteration):
            await b.__anext__()
    with pytest.raises(trio.ClosedResourceError):
        await b.__anext__()


async def test_constructor_errors_and_options() -> None:
    with stdsocket.socket() as raw, pytest.raises(TypeError):
        SocketStream(raw)  # type: ignore[arg-type]
    udp = tsocket.socket(type=tsocket.SOCK_DGRAM)
    with udp:
        with pytest.raises(ValueError, match="SOCK_STREAM"):
            SocketStream(udp)
    a, b = await tcp_pair()
    with pytest.raises(ValueError, match="zerocopy"):
        SocketStream(a.socket, zerocopy="sometimes")  # type: ignore[arg-type]
    assert a.getsockopt(tsocket.IPPROTO_TCP, tsocket.TCP_NODELAY)
    a.setsockopt(tsocket.IPPROTO_TCP, tsocket.TCP_NODELAY, False)
    assert not a.getsockopt(tsocket.IPPROTO_TCP, tsocket.TCP_NODELAY)
    assert len(a.getsockopt(tsocket.IPPROTO_TCP, tsocket.TCP_NODELAY, 4)) == 4
    with pytest.raises(TypeError):
        a.setsockopt(tsocket.IPPROTO_TCP, tsocket.TCP_NODELAY, None)
    with pytest.raises(TypeError):
        a.setsockopt(tsocket.IPPROTO_TCP, tsocket.TCP_NODELAY, 1, 4)
    with pytest.raises(TypeError):
        await a.send_all("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await a.receive_some(0)
    with pytest.raises(TypeError):
        await a.receive_some(1.5)  # type: ignore[arg-type]
    assert current_manager().statistics().operations_in_flight <= 1
    await a.aclose()
    await b.aclose()


@MULTISHOT
async def test_multishot_receive_uses_no_sqe_per_message() -> None:
    a, b = await tcp_pair()
    manager = current_manager()
    assert _bufring.stream_ring(manager) is not None
    b._fresh = False  # (a first receive tries recv(2) before arming: not under test here)
    await a.send_all(b"first")
    assert await b.receive_some() == b"first"  # arms the multishot
    before = manager.statistics().sqes_submitted
    for i in range(50):
        await a.send_all(b"m%d" % i)
        assert await b.receive_some() == b"m%d" % i
    # 50 SENDs; the receives submitted nothing.
    assert manager.statistics().sqes_submitted - before == 50
    await a.aclose()
    await b.aclose()
    await assert_idle()


@MULTISHOT
async def test_dropped_stream_ends_its_receive_and_closes_its_socket() -> None:
    """A stream dropped without ``aclose()`` while its multishot receive is armed: the
    receive ends in the kernel (the manager's table is back to what it was) and the
    socket is closed as trio's would be (``ResourceWarning``), so the peer sees EOF."""
    manager = current_manager()
    await trio.testing.wait_all_tasks_blocked()
    baseline = manager.statistics().operations_in_flight
    a, b = await tcp_pair()
    b._fresh = False  # (a first receive tries recv(2) before arming: not under test here)
    for data in (b"one", b"two"):
        await a.send_all(data)
        assert await b.receive_some() == data
    assert b._recv_op is not None
    assert manager.statistics().operations_in_flight == baseline + 1
    with pytest.warns(ResourceWarning):
        del b
        gc.collect()  # (a stream whose receive parked is in a cycle with its trap)
    with trio.fail_after(5):
        assert await a.receive_some() == b""
    await trio.testing.wait_all_tasks_blocked()
    assert manager.statistics().operations_in_flight == baseline
    await a.aclose()
    await assert_idle()


async def test_receive_joins_and_splits_queued_chunks() -> None:
    a, b = await tcp_pair()
    for part in (b"ab", b"cd", b"ef"):
        await a.send_all(part)
    await a.send_eof()
    await trio.testing.wait_all_tasks_blocked()
    got = b""
    while chunk := await b.receive_some(3):
        assert len(chunk) <= 3
        got += chunk
    assert got == b"abcdef"
    assert await b.receive_some() == b""  # EOF is sticky
    await a.aclose()
    await b.aclose()


@MULTISHOT
async def test_queue_is_bounded_and_rearmed() -> None:
    a, b = await tcp_pair()
    b._fresh = False  # (a first receive tries recv(2) before arming: not under test here)
    await a.send_all(b"x")
    assert await b.receive_some() == b"x"  # multishot armed, nobody receiving now
    total = 16 * 1024 * 1024
    payload = random.Random(1).randbytes(total)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send_all, payload)
        await trio.testing.wait_all_tasks_blocked()
        # The sender is blocked: the stream stopped receiving.  The bound is soft
        # (what arrives in the loop tick that crosses it is queued too).
        assert RECEIVE_HIGH_WATER <= b._rq_bytes < total // 2
        assert b._recv_op is None
        got = bytearray()
        while len(got) < total:
            got += await b.receive_some()
    assert got == payload
    await a.aclose()
    await b.aclose()
    await assert_idle()


@MULTISHOT
@pytest.mark.needs_kernel("IORING_REGISTER_PBUF_STATUS")
async def test_idle_connections_hold_no_buffer() -> None:
    streams = [await tcp_pair() for _ in range(4)]
    async with trio.open_nursery() as nursery:
        for _, b in streams:
            nursery.start_soon(b.receive_some)
        await trio.testing.wait_all_tasks_blocked()
        ring = _bufring.stream_ring(current_manager())
        assert ring is not None
        # Four armed multishot receives, and every buffer is still free for the kernel to pick.
        assert all(b._recv_op is not None for _, b in streams)
        try:
            available = ring.available(current_manager())
        except OSError as exc:
            pytest.skip(f"IORING_REGISTER_PBUF_STATUS unavailable: {exc}")
        assert available == ring.entries
        nursery.cancel_scope.cancel()
    for a, b in streams:
        await a.aclose()
        await b.aclose()
    await assert_idle()


async def test_send_all_cancelled_before_submission_sends_nothing() -> None:
    a, b = await tcp_pair()
    with trio.CancelScope() as scope:
        scope.cancel()
        await a.send_all(b"never sent")
    assert scope.cancelled_caught
    # the stream's send slot is free again and holds no buffer
    assert not a._sending and (a._s_op is None or a._s_op.keep is None)
    await a.send_all(b"after cancel")
    assert await b.receive_some() == b"after cancel"
    await a.aclose()
    await b.aclose()


async def test_send_all_cancelled_while_clogged_then_stream_still_closes() -> None:
    a, b = await tcp_pair()
    await fill_stream(a)  # its send_all was parked on a SEND and cancelled
    assert not a._sending and a._s_op is not None and a._s_op.keep is None
    await a.aclose()
    got = 0
    while data := await b.receive_some():
        assert set(data) == {ord("x")}
        got += len(data)
    assert got > 0
    await assert_idle()
    await b.aclose()


async def test_cancel_mid_receive_some_loses_nothing() -> None:
    a, b = await tcp_pair()
    with trio.move_on_after(0.01) as scope:
        await b.receive_some()
    assert scope.cancelled_caught
    await a.send_all(b"after cancel")
    assert await b.receive_some() == b"after cancel"
    await a.aclose()
    await b.aclose()
    await assert_idle()


async def test_randomized_deadlines_lose_and_duplicate_nothing() -> None:
    rng = random.Random(4)
    a, b = await tcp_pair()
    total = 300_000
    payload = rng.randbytes(total)
    got = bytearray()

    async def sender() -> None:
        pos = 0
        while pos < total:
            n = rng.randint(1, 20000)
            await a.send_all(payload[pos : pos + n])
            pos += n
            if rng.random() < 0.3:
                await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        while len(got) < total:
            with trio.move_on_after(rng.choice([0, 0, 1e-6, 1e-5, 1e-4])):
                got += await b.receive_some(rng.randint(1, 70000))
    assert bytes(got) == payload
    await a.aclose()
    await b.aclose()
    await assert_idle()


async def test_closing_stream_wakes_blocked_receiver_and_sender() -> None:
    a, b = await tcp_pair()
    await fill_stream(a)

    async def expect_closed(fn: object) -> None:
        with pytest.raises(trio.ClosedResourceError):
            await fn()  # type: ignore[operator]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(expect_closed, a.receive_some)
        nursery.start_soon(expect_closed, lambda: a.send_all(b"y" * 100000))
        await trio.testing.wait_all_tasks_blocked()
        await a.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await a.receive_some()
    await b.aclose()
    await assert_idle()


async def test_socket_closed_underfoot() -> None:
    a, b = await tcp_pair()

    async def receiver() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await b.receive_some()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        b.socket.close()
    with pytest.raises(trio.ClosedResourceError):
        await b.send_all(b"x")
    await a.aclose()
    await b.aclose()
    await assert_idle()


async def test_peer_reset_is_broken_resource() -> None:
    a, b = await tcp_pair()
    a.socket.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    await b.send_all(b"unread")
    await trio.testing.wait_all_tasks_blocked()
    await a.aclose()  # unread data + linger 0: RST
    with pytest.raises(trio.BrokenResourceError):
        for _ in range(10):
            await b.receive_some()
            await b.send_all(b"x" * 1000)
    await b.aclose()
    await assert_idle()


async def test_fallback_one_recv_per_call() -> None:
    a, b = await tcp_pair()
    b._get_manager()
    b._ring = None  # as on a kernel without multishot recv / PBUF_RING
    b._fresh = False  # (a first receive tries recv(2) first: not under test here)
    manager = current_manager()
    await a.send_all(b"hello")
    before = manager.statistics().sqes_submitted
    assert await b.receive_some(3) == b"hel"
    assert await b.receive_some(3) == b"lo"
    assert manager.statistics().sqes_submitted - before == 2
    with trio.move_on_after(0.01):
        await b.receive_some()
    await a.send_eof()
    assert await b.receive_some() == b""
    await a.aclose()
    await b.aclose()
    await assert_idle()


async def test_listener_accept_and_close() -> None:
    listeners = await open_tcp_listeners(0, host="127.0.0.1")
    assert len(listeners) == 1
    (listener,) = listeners
    assert isinstance(listener, SocketListener)
    with stdsocket.socket() as raw, pytest.raises(TypeError):
        SocketListener(raw)  # type: ignore[arg-type]
    unbound = tsocket.socket()
    with unbound:
        with pytest.raises(ValueError, match="listening"):
            SocketListener(unbound)
    port = listener.socket.getsockname()[1]
    client = await open_tcp_stream("127.0.0.1", port)
    server = await listener.accept()
    assert isinstance(client, SocketStream) and isinstance(server, SocketStream)
    await client.send_all(b"ping")
    assert await server.receive_some() == b"ping"
    await server.send_all(b"pong")
    assert await client.receive_some() == b"pong"
    await client.aclose()
    await server.aclose()

    async def accept_closed() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await listener.accept()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_closed)
        await trio.testing.wait_all_tasks_blocked()
        await listener.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await listener.accept()
    await assert_idle()


async def test_serve_tcp_and_serve_listeners() -> None:
    async def handler(stream: SocketStream) -> None:
        assert isinstance(stream, SocketStream)
        while data := await stream.receive_some():
            await stream.send_all(data.upper())

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        client = await open_tcp_stream("127.0.0.1", port)
        await client.send_all(b"abc")
        assert await client.receive_some() == b"ABC"
        await client.aclose()
        more = await open_tcp_listeners(0, host="127.0.0.1")
        listeners2 = await nursery.start(serve_listeners, handler, more)
        client = await open_tcp_stream("127.0.0.1", listeners2[0].socket.getsockname()[1])
        await client.send_all(b"def")
        assert await client.receive_some() == b"DEF"
        await client.aclose()
        nursery.cancel_scope.cancel()
    await assert_idle()


async def test_open_unix_socket() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sock")
        raw = tsocket.socket(tsocket.AF_UNIX)
        await raw.bind(path)
        raw.listen(1)
        listener = SocketListener(raw)
        client = await open_unix_socket(path)
        server = await listener.accept()
        await client.send_all(b"unix")
        assert await server.receive_some() == b"unix"
        for s in (client, server, listener):
            await s.aclose()
    await assert_idle()


async def test_thousand_connections_echo() -> None:
    n = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * n:
        if hard != resource.RLIM_INFINITY and hard < 4 * n:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low")
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (4 * n if hard == resource.RLIM_INFINITY else hard, hard)
        )

    async def echo(stream: SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some():
                await stream.send_all(data)

    async def client(i: int, port: int) -> None:
        stream = await open_tcp_stream("127.0.0.1", port)
        async with stream:
            for j in range(3):
                message = b"%d/%d." % (i, j) * (1 + i % 7)
                await stream.send_all(message)
                got = b""
                while len(got) < len(message):
                    got += await stream.receive_some()
                assert got == message
            await stream.send_eof()
            assert await stream.receive_some() == b""

    try:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(serve_tcp, echo, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as clients:
                for i in range(n):
                    clients.start_soon(client, i, port)
            nursery.cancel_scope.cancel()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    await assert_idle()


@MULTISHOT
async def test_enobufs_ends_multishot_and_is_rearmed() -> None:
    manager = current_manager()
    tiny = _bufring.BufferRing(manager, 0x7400, entries=2, size=64)
    a, b = await tcp_pair()
    b._get_manager()
    b._ring = tiny  # two 64-byte buffers: the multishot runs dry every tick
    payload = random.Random(7).randbytes(200_000)
    before = manager.statistics().sqes_submitted
    got = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send_all, payload)
        while len(got) < len(payload):
            got += await b.receive_some()
    assert got == payload
    # One SEND, and many re-armed receives after -ENOBUFS.
    assert manager.statistics().sqes_submitted - before > 10
    await a.aclose()
    await b.aclose()
    await assert_idle()
    tiny.unregister(manager)


def test_streams_work_on_trios_own_backend() -> None:
    """Outside an io_uring run (epoll fallback) the streams forward to trio's SocketStream."""

    async def main() -> None:
        a, b = await unix_pair()
        await a.send_all(b"epoll")
        assert await b.receive_some() == b"epoll"
        assert b._compat is not None
        await a.send_eof()
        assert await b.receive_some() == b""
        await a.aclose()
        await b.aclose()

    run_on_epoll(main)


async def test_completions_reach_a_busy_loop_without_an_interrupt() -> None:
    """With COOP_TASKRUN the kernel leaves completions for our next kernel entry; a run
    loop that never goes idle must still enter for them (IORING_SQ_TASKRUN) instead of
    waiting for a timer interrupt.  The data comes from another process, and the loop
    polls shared memory, so nothing here makes a syscall by accident."""
    import mmap

    a, b = stdsocket.socketpair()
    stream = SocketStream(tsocket.from_stdlib_socket(b))
    got: list[bytes] = []

    async def reader() -> None:
        got.append(await stream.receive_some())

    flag = mmap.mmap(-1, 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()  # the multishot RECV is armed and waiting
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child only sends
            try:
                a.send(b"ping")
                flag[0] = 1
            finally:
                os._exit(0)
        while flag[0] == 0:  # busy: the run loop never waits in io_uring_enter
            await trio.sleep(0)
        ticks = 0
        while not got:
            await trio.sleep(0)
            ticks += 1
    os.waitpid(pid, 0)
    assert got == [b"ping"]
    # The tick after the child sent enters the kernel and sees the data.  Without the
    # SQ_TASKRUN check it takes until a timer interrupt: tens of loop ticks here.
    assert ticks <= 2, ticks
    a.close()
    await stream.aclose()


async def test_closing_finds_a_parked_send_after_many_other_operations_on_its_fd() -> None:
    """notify_closing finds a stream's send slot even after the fd's index was pruned.

    The manager drops finished operations from its per-fd index in bulk; the
    stream's recycled send record must survive that (it is idle between sends).
    """
    a, b = await tcp_pair(zerocopy="never")  # every send_all uses the stream's send slot
    await a.send_all(b"x")  # the send slot exists and is idle (completed)
    assert await b.receive_some(1) == b"x"
    fd = a.socket.fileno()
    for _ in range(200):  # completes at once: prunes fd's index several times
        await trio_uring.lowlevel.poll(fd, 0x004)
    outcome: list[str] = []

    async def sender() -> None:
        try:
            await a.send_all(b"y" * (64 * 1024 * 1024))  # b never reads: parks
        except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
            outcome.append(type(exc).__name__)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            await trio.testing.wait_all_tasks_blocked()
            a.socket.close()  # notify_closing, then close
    assert outcome == ["ClosedResourceError"]
    await a.aclose()
    await b.aclose()
    await assert_idle()


async def test_broken_stream_error_is_chained_to_the_oserror_as_in_trio() -> None:
    """Like trio's SocketStream: BrokenResourceError's __cause__ is the OSError."""
    a, b = await tcp_pair()
    b.socket.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    await b.aclose()  # linger 0: an RST
    with pytest.raises(trio.BrokenResourceError) as info:
        for _ in range(100):
            await a.send_all(b"x" * 65536)
            await a.receive_some()
    assert isinstance(info.value.__cause__, OSError)
    await a.aclose()


@MULTISHOT
async def test_reset_behind_queued_data_is_not_swallowed() -> None:
    """A reset that arrives while the kernel still holds unread data is reported.

    The peer streams data and resets the connection at a random point while the
    receiver reads in small and large pieces, so its multishot receive keeps
    stopping at the high-water mark and re-arming.  A multishot that drains a
    backlog behind which the reset arrived finds the socket empty and waits for a
    wake-up that already happened (Linux 6.18): without the stream's own check
    about 1 round in 30 waited forever (found by the send_file work).
    """
    rng = random.Random(1)
    outcomes = {"reset": 0, "eof": 0}
    for _ in range(240):
        a, b = await tcp_stream_pair(zerocopy="never")
        cut = rng.randrange(0, 3 << 20)
        got = 0

        async def send(a: SocketStream = a) -> None:
            with contextlib.suppress(trio.BrokenResourceError):
                for _ in range(100):
                    await a.send_all(b"x" * 65536)

        async with a, b, trio.open_nursery() as nursery:
            nursery.start_soon(send)
            with trio.fail_after(10):
                try:
                    while data := await b.receive_some(rng.choice([1000, 65536])):
                        got += len(data)
                        if got >= cut and a.socket.fileno() >= 0:
                            assert lib.tu_disconnect(a.socket.fileno()) == 0
                            cut = 1 << 62
                    outcomes["eof"] += 1  # everything arrived before the reset
                except trio.BrokenResourceError as exc:
                    assert isinstance(exc.__cause__, ConnectionResetError)
                    outcomes["reset"] += 1
    assert outcomes["reset"] > 100, outcomes
    await assert_idle()


@pytest.mark.parametrize("what", ["stream", "listener"])
def test_weak_references_outlive_streams_and_listeners_safely(what: str) -> None:
    """A weak reference (or a ``WeakSet``) to a stream or listener that was freed says
    so (``None``, empty) in every build.  Compiled, the classes' deallocator left weak
    references pointing at freed memory: the next ``ref()`` crashed (in a child)."""
    run_child(
        f"""
        import gc, weakref
        import trio, trio_uring

        async def main():
            a, b = trio.socket.socketpair()
            if {what!r} == "stream":
                obj = trio_uring.SocketStream(a)
                await obj.send_all(b"x")
                assert await b.recv(1) == b"x"
            else:
                (obj,) = await trio_uring.open_tcp_listeners(0, host="127.0.0.1")
            ref, group = weakref.ref(obj), weakref.WeakSet([obj])
            await obj.aclose()
            del obj
            gc.collect()
            assert ref() is None and len(group) == 0, (ref(), len(group))
            a.close()
            b.close()

        trio_uring.run(main)
        """
    )
