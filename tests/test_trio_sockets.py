"""trio's own sockets under trio_uring: data moves as SQEs, with trio's semantics."""

from __future__ import annotations

import contextlib
import errno
import functools
import socket as stdlib_socket
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import trio
import trio.testing
from trio import socket as tsocket

from tests._cancel import cancel_once_parked
from tests._pairs import tcp_stream_pair
from tests.conftest import assert_idle, run_on_epoll
from trio_uring import UringIOManager
from trio_uring._net._trio_sockets import UringSocket, _current_uring, set_completion_sockets
from trio_uring._ops import _provided
from trio_uring.lowlevel import current_manager

MULTISHOT_RECV = pytest.mark.needs_kernel("IORING_REGISTER_PBUF_RING", "IORING_RECV_MULTISHOT")


class ReadinessCounter:
    """Counts readiness waits (``wait_readable``/``wait_writable``) per fd on a manager."""

    def __init__(self, manager: UringIOManager) -> None:
        self.manager = manager
        self.waits: dict[int, int] = {}

    def count(self, fd: Any) -> None:
        if not isinstance(fd, int):
            fd = fd.fileno()
        self.waits[fd] = self.waits.get(fd, 0) + 1

    def on(self, fds: set[int]) -> int:
        return sum(n for fd, n in self.waits.items() if fd in fds)


@contextlib.contextmanager
def counting_readiness(manager: UringIOManager) -> Iterator[ReadinessCounter]:
    """Count readiness waits per fd (the manager's ``readiness_waits`` log)."""
    counter = ReadinessCounter(manager)
    manager.readiness_waits = counter.waits
    try:
        yield counter
    finally:
        manager.readiness_waits = None


@contextlib.contextmanager
def completion_sockets(enabled: bool) -> Iterator[None]:
    old = set_completion_sockets(enabled)
    try:
        yield
    finally:
        set_completion_sockets(old)


async def connected_pair() -> tuple[tsocket.SocketType, tsocket.SocketType]:
    """A TCP connection over loopback: (client, server side)."""
    with tsocket.socket() as listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = tsocket.socket()
        await client.connect(listener.getsockname())
        server, _ = await listener.accept()
    return client, server


# ----------------------------------------------------------------------------- classes
async def test_trio_constructors_give_uring_sockets() -> None:
    with tsocket.socket() as s:
        assert type(s) is UringSocket
        assert isinstance(s, tsocket.SocketType)
        with s.dup() as d:
            assert type(d) is UringSocket
    with tsocket.socket(tsocket.AF_INET6, tsocket.SOCK_DGRAM) as s:
        assert type(s) is UringSocket
    a, b = tsocket.socketpair()
    with a, b:
        assert type(a) is UringSocket and type(b) is UringSocket
    raw = stdlib_socket.socket()
    with tsocket.from_stdlib_socket(raw) as s:
        assert type(s) is UringSocket
    fd = stdlib_socket.socket().detach()
    with tsocket.socket(fileno=fd) as s:
        assert type(s) is UringSocket
    # Families we leave alone stay trio's own class.
    with tsocket.socket(stdlib_socket.AF_NETLINK, tsocket.SOCK_RAW, 0) as s:
        assert type(s) is not UringSocket
    # A user's factory still wins.
    assert tsocket.set_custom_socket_factory(None) is None


async def test_switch_off_gives_trio_sockets_that_still_work() -> None:
    with completion_sockets(False):
        a, b = tsocket.socketpair()
    with a, b:
        assert type(a) is not UringSocket
        await a.send(b"ping")
        assert await b.recv(10) == b"ping"
    assert set_completion_sockets(True) is True


def test_no_uring_sockets_outside_a_run() -> None:
    with tsocket.from_stdlib_socket(stdlib_socket.socket()) as s:
        assert type(s) is not UringSocket


# ------------------------------------------------------------------ SQEs carry the data
async def test_socket_stream_moves_data_with_sqes() -> None:
    """trio.serve_tcp + open_tcp_stream, unchanged: no readiness wait on the sockets."""
    manager = current_manager()
    messages = 50
    fds: set[int] = set()

    async def echo(stream: trio.SocketStream) -> None:
        fds.add(stream.socket.fileno())
        async for data in stream:
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, echo, 0)
        port = listeners[0].socket.getsockname()[1]
        with counting_readiness(manager) as counter:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                assert type(stream.socket) is UringSocket
                fds.add(stream.socket.fileno())
                fds.add(listeners[0].socket.fileno())
                before = manager.statistics().sqes_submitted
                for i in range(messages):
                    payload = b"%05d" % i * 13
                    await stream.send_all(payload)
                    got = b""
                    while len(got) < len(payload):
                        got += await stream.receive_some()
                    assert got == payload
                sqes = manager.statistics().sqes_submitted - before
                # Server side idle in receive_some: an SQE in flight, not a poll waiter.
                await trio.testing.wait_all_tasks_blocked()
                stats = manager.statistics()
                assert stats.tasks_waiting_read <= 1  # trio's own wakeup socket
                assert stats.operations_in_flight >= stats.tasks_waiting_read + 2
            assert counter.on(fds) == 0, counter.waits
        # Sends complete at once (the non-blocking try succeeds); a recv that would
        # block becomes one RECV SQE: at most two per message, and the waits that
        # happened were SQEs, never readiness polls (counter above).
        assert messages // 2 <= sqes <= 2 * messages + 4
        nursery.cancel_scope.cancel()
    await assert_idle()


async def test_readiness_path_when_switched_off() -> None:
    manager = current_manager()
    with completion_sockets(False):
        client, server = await connected_pair()
    with client, server, counting_readiness(manager) as counter:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.recv, 10)
            await trio.testing.wait_all_tasks_blocked()
            await client.send(b"x")
        assert counter.on({server.fileno()}) == 1


# ------------------------------------------------------------------------ semantics
async def test_methods_are_checkpoints_and_results_match() -> None:
    a, b = tsocket.socketpair()
    with a, b:
        with trio.testing.assert_checkpoints():
            assert await a.send(b"hello") == 5
        with trio.testing.assert_checkpoints():
            assert await b.recv(2, tsocket.MSG_PEEK) == b"he"
        buf = bytearray(8)
        with trio.testing.assert_checkpoints():
            assert await b.recv_into(buf, 3) == 3
        assert buf[:3] == b"hel"
        view = memoryview(buf)
        assert await b.recv_into(view[4:]) == 2
        view.release()  # no export left behind by the SQE
        buf.extend(b"!")  # resizable again
        assert bytes(buf[4:6]) == b"lo"
        # Arguments the stdlib rejects are rejected the same way, at a checkpoint.
        with trio.testing.assert_checkpoints(), pytest.raises(TypeError):
            await b.recv("x")  # type: ignore[arg-type]
        with trio.testing.assert_checkpoints(), pytest.raises(ValueError, match="buffer too small"):
            await b.recv_into(bytearray(2), 5)
        with pytest.raises(TypeError):
            await b.recv_into(b"read-only")
        with pytest.raises(TypeError):
            await a.send("text")  # type: ignore[arg-type]
        assert await b.recv(0) == b""


async def test_cancelled_before_the_call_does_nothing() -> None:
    a, b = tsocket.socketpair()
    with a, b:
        await a.send(b"1")
        with trio.CancelScope() as scope:
            scope.cancel()
            with trio.testing.assert_checkpoints(), pytest.raises(trio.Cancelled):
                await b.recv(10)
            with pytest.raises(trio.Cancelled):
                await b.send(b"2")
        assert await b.recv(10) == b"1"
        assert not a.is_readable()
    await assert_idle()


async def test_cancel_pending_recv_then_data_arrives_intact() -> None:
    a, b = tsocket.socketpair()
    with a, b:
        assert (await cancel_once_parked(lambda: b.recv(10))).cancelled
        await a.send(b"after")
        assert await b.recv(10) == b"after"
    await assert_idle()


async def test_recv_racing_cancel_never_loses_data() -> None:
    """Data and cancellation in the same tick: either returned, or still in the socket."""
    rounds = 200
    a, b = tsocket.socketpair()
    received = bytearray()
    outcomes = {"data": 0, "cancelled": 0}

    with a, b:
        for i in range(rounds):
            parked = await cancel_once_parked(
                lambda: b.recv(10), meanwhile=functools.partial(a.send, bytes([i % 256]))
            )
            if parked.cancelled:
                outcomes["cancelled"] += 1
            else:
                assert parked.value is not None
                received.extend(parked.value)
                outcomes["data"] += 1
        a.shutdown(stdlib_socket.SHUT_WR)
        while data := await b.recv(1000):
            received.extend(data)
    assert bytes(received) == bytes(i % 256 for i in range(rounds))
    assert outcomes["data"] + outcomes["cancelled"] == rounds
    await assert_idle()


async def test_accept_racing_cancel_never_loses_connections() -> None:
    accepted: list[tsocket.SocketType] = []
    clients: list[tsocket.SocketType] = []

    async def connect_one() -> None:
        client = tsocket.socket()
        clients.append(client)
        await client.connect(listener.getsockname())

    with tsocket.socket() as listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        try:
            for _ in range(30):
                parked = await cancel_once_parked(listener.accept, meanwhile=connect_one)
                if parked.value is not None:
                    sock, addr = parked.value
                    accepted.append(sock)
                    assert addr == sock.getpeername()
            # Connections whose accept was cancelled are still in the backlog.
            while len(accepted) < len(clients):
                sock, _ = await listener.accept()
                accepted.append(sock)
            assert {s.getpeername() for s in accepted} == {c.getsockname() for c in clients}
            assert all(type(s) is UringSocket for s in accepted)
        finally:
            for s in accepted + clients:
                s.close()
    await assert_idle()


async def test_cancel_pending_accept() -> None:
    with tsocket.socket() as listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert (await cancel_once_parked(listener.accept)).cancelled
        client = tsocket.socket()
        with client:
            await client.connect(listener.getsockname())
            server, addr = await listener.accept()
            with server:
                assert addr == client.getsockname()
    await assert_idle()


async def test_cancelled_connect_closes_the_socket() -> None:
    """A connect the kernel cannot finish (full backlog) is cancelled; the socket is closed."""
    done: list[tsocket.SocketType] = []

    with tsocket.socket() as listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        try:
            for _ in range(8):
                sock = tsocket.socket()
                parked = await cancel_once_parked(
                    functools.partial(sock.connect, listener.getsockname())
                )
                if not parked.cancelled:
                    done.append(sock)
                else:
                    assert sock.fileno() == -1
                    break
            else:  # pragma: no cover - the kernel accepted every connection
                pytest.fail("no connect ever blocked on a full backlog")
        finally:
            for s in done:
                s.close()
    await assert_idle()


async def test_connect_errors_like_trio() -> None:
    with tsocket.socket() as sock:
        with pytest.raises(
            ConnectionRefusedError,
            match=r"^\[Errno \d+\] Error connecting to \('127\.0\.0\.1', 2\): ",
        ):
            await sock.connect(("127.0.0.1", 2))
    with tsocket.socket() as sock:
        with pytest.raises(ValueError, match="address should be"):
            await sock.connect("localhost")
    with tsocket.socket(tsocket.AF_UNIX) as sock:
        with pytest.raises(FileNotFoundError):
            await sock.connect("/nonexistent/trio-uring-socket")
    with tsocket.socket(tsocket.AF_INET6) as listener, tsocket.socket(tsocket.AF_INET6) as sock:
        await listener.bind(("::1", 0))
        listener.listen()
        await sock.connect(listener.getsockname())
        server, addr = await listener.accept()
        with server:
            assert addr == sock.getsockname()
    await assert_idle()


async def test_unix_stream_accept_address_and_abstract_names() -> None:
    name = b"\0trio-uring-test-%d" % id(object())
    with tsocket.socket(tsocket.AF_UNIX) as listener:
        await listener.bind(name)
        listener.listen()
        with tsocket.socket(tsocket.AF_UNIX) as client:
            await client.connect(name)
            server, addr = await listener.accept()
            with server:
                assert addr == ""  # an unnamed peer, as socket.accept() reports it
                assert server.getsockname() == name
                await client.send(b"unix")
                assert await server.recv(10) == b"unix"


async def test_peer_errors_map_to_the_same_exceptions() -> None:
    client, server = await connected_pair()
    with client, server:
        server.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        server.close()  # RST
        with pytest.raises(ConnectionResetError):
            await client.recv(10)
        with pytest.raises(OSError) as info:
            await client.send(b"x" * 100000)
        assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)
    client2, server2 = await connected_pair()
    with client2, server2:
        server2.close()
        assert await client2.recv(10) == b""  # EOF
    await assert_idle()


async def test_close_wakes_pending_recv_with_closed_resource_error() -> None:
    a, b = tsocket.socketpair()
    with a, b:

        async def close_when_parked() -> None:
            await trio.testing.wait_all_tasks_blocked()
            b.close()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_when_parked)
            with pytest.raises(trio.ClosedResourceError):
                await b.recv(10)
        with pytest.raises(OSError) as info:
            await b.recv(10)
        assert info.value.errno == errno.EBADF
    await assert_idle()


async def test_udp_connected_and_unconnected() -> None:
    with tsocket.socket(type=tsocket.SOCK_DGRAM) as a, tsocket.socket(type=tsocket.SOCK_DGRAM) as b:
        await a.bind(("127.0.0.1", 0))
        await b.bind(("127.0.0.1", 0))
        await b.connect(a.getsockname())
        assert await b.send(b"dgram") == 5
        assert await a.recvfrom(100) == (b"dgram", b.getsockname())
        await a.sendto(b"back", b.getsockname())
        assert await b.recv(2) == b"ba"  # truncated datagram, like recv(2)
    await assert_idle()


async def test_large_transfer_through_socket_stream() -> None:
    a, b = tsocket.socketpair()
    left, right = trio.SocketStream(a), trio.SocketStream(b)
    data = bytes(range(256)) * 8192  # 2 MiB
    received = bytearray()

    async def reader() -> None:
        while len(received) < len(data):
            received.extend(await right.receive_some())

    async with left, right, trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await left.send_all(data)
    assert received == data
    await assert_idle()


# ------------------------------------------------- a waiting recv holds no receive buffer
def _vm_size_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1])
    raise AssertionError("no VmSize in /proc/self/status")


@MULTISHOT_RECV
async def test_waiting_recv_holds_no_receive_buffer() -> None:
    """200 receives of up to 1 MiB parked on idle connections: no 1 MiB buffer each
    (the kernel picks a 4 KiB buffer of the manager's ring when data arrives)."""
    pairs = [tsocket.socketpair() for _ in range(200)]
    try:
        before = _vm_size_kib()
        async with trio.open_nursery() as nursery:
            for _, b in pairs:
                nursery.start_soon(b.recv, 1 << 20)
            await trio.testing.wait_all_tasks_blocked()
            parked = _vm_size_kib()
            nursery.cancel_scope.cancel()
        # A buffer per receive would map 200 MiB more.
        assert parked - before < 50 * 1024, (before, parked)
    finally:
        for a, b in pairs:
            a.close()
            b.close()
    await assert_idle()


async def recv_once_parked(
    sock: tsocket.SocketType, args: tuple[int, ...], *feed: Callable[[], Any]
) -> list[bytes]:
    """``sock.recv(*args)`` parked first; then each of ``feed`` (sync or async), with the
    receive still waiting in between; what the receive returned (as a one-item list)."""
    got: list[bytes] = []

    async def receive() -> None:
        got.append(await sock.recv(*args))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        for step in feed:
            await trio.testing.wait_all_tasks_blocked()
            assert not got
            result = step()
            if result is not None:
                await result
    return got


async def test_recv_after_waiting_returns_what_else_is_queued() -> None:
    """A waiting ``recv(65536)`` woken by 10,000 bytes returns all of them, not one buffer's."""
    client, server = await connected_pair()
    payload = bytes(range(256)) * 40
    with client, server:
        # (one segment over loopback)
        assert await recv_once_parked(server, (65536,), lambda: client._sock.sendall(payload)) == [
            payload
        ]
    await assert_idle()


async def test_datagram_recv_after_waiting_is_not_cut() -> None:
    with tsocket.socket(type=tsocket.SOCK_DGRAM) as a, tsocket.socket(type=tsocket.SOCK_DGRAM) as b:
        await a.bind(("127.0.0.1", 0))
        await b.bind(("127.0.0.1", 0))
        await b.connect(a.getsockname())
        datagram = bytes(range(256)) * 36  # 9,216 bytes: more than one ring buffer
        got = await recv_once_parked(b, (65536,), lambda: a.sendto(datagram, b.getsockname()))
        assert got == [datagram]
    await assert_idle()


async def test_waitall_recv_after_waiting_waits_for_all() -> None:
    a, b = tsocket.socketpair()
    with a, b:
        got = await recv_once_parked(
            b, (8000, tsocket.MSG_WAITALL), lambda: a.send(b"x" * 4000), lambda: a.send(b"y" * 4000)
        )
        assert got == [b"x" * 4000 + b"y" * 4000]
    await assert_idle()


@MULTISHOT_RECV
async def test_receives_beyond_the_buffer_ring_fall_back_and_lose_nothing() -> None:
    """More receives complete in one tick than the ring has buffers: the rest get
    ``ENOBUFS`` from the kernel and receive again with a buffer of their own."""
    manager = current_manager()
    ring = _provided.stream_ring(manager)
    assert ring is not None
    n = ring.entries + 100
    pairs = [tsocket.socketpair() for _ in range(n)]
    try:
        results: list[bytes] = [b""] * n

        async def one(i: int) -> None:
            results[i] = await pairs[i][1].recv(65536)

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
            await trio.testing.wait_all_tasks_blocked()
            before = manager.statistics().sqes_submitted
            for i, (a, _) in enumerate(pairs):  # all in one tick: no checkpoint in between
                a._sock.send(b"%06d" % i)
        assert results == [b"%06d" % i for i in range(n)]
        assert manager.statistics().sqes_submitted - before > 0  # the fallback receives
    finally:
        for a, b in pairs:
            a.close()
            b.close()
    await assert_idle()


@MULTISHOT_RECV
async def test_buffer_ring_receive_without_buffers_gives_none_and_keeps_the_data() -> None:
    manager = current_manager()
    empty = _provided.BufferRing(manager, 0x7401, entries=1, size=64)
    empty.unregister(manager)  # the kernel knows no such group: every pick fails
    a, b = stdlib_socket.socketpair()
    with a, b:
        b.setblocking(False)
        a.send(b"kept")
        assert await _provided.recv(manager, empty, b.fileno(), 100, 0) is None
        assert b.recv(100) == b"kept"
    await assert_idle()


# ------------------------------------------------------------------------ anyio on trio
def test_anyio_on_trio_moves_data_with_sqes() -> None:
    async def main() -> tuple[bytes, int, int]:
        manager = current_manager()

        async def handle(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                async for data in stream:
                    await stream.send(data.upper())

        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, handle)
                with counting_readiness(manager) as counter:
                    async with await anyio.connect_tcp("127.0.0.1", port) as client:
                        fd = client.extra(anyio.abc.SocketAttribute.raw_socket).fileno()
                        got = b""
                        for word in (b"io", b"uring"):
                            await client.send(word)
                            got += await client.receive()
                tg.cancel_scope.cancel()
        return got, counter.on({fd}), manager.statistics().sqes_submitted

    got, waits, sqes = anyio.run(main, backend="trio")
    assert got == b"IOURING"
    assert waits == 0
    assert sqes > 0


# ------------------------------------------------------------------------ guest mode
def test_guest_mode_cancelled_before_call() -> None:
    """In guest mode SQEs are submitted at once: a cancelled task must not consume data."""
    import queue

    import trio_uring

    todo: queue.Queue[Callable[[], object]] = queue.Queue()
    result: list[object] = []

    async def main() -> bytes:
        a, b = tsocket.socketpair()
        with a, b:
            assert type(b) is UringSocket
            await a.send(b"kept")
            with trio.CancelScope() as scope:
                scope.cancel()
                with pytest.raises(trio.Cancelled):
                    await b.recv(10)
            return await b.recv(10)

    def done(outcome: Any) -> None:
        result.append(outcome)

    trio_uring.start_guest_run(main, run_sync_soon_threadsafe=todo.put, done_callback=done)
    while not result:
        todo.get()()
    assert result[0].unwrap() == b"kept"  # type: ignore[attr-defined]


async def test_one_receiver_and_one_sender_at_a_time() -> None:
    """Like trio's readiness waits: a second waiter per direction is Busy, the other
    direction is free, and the slot frees itself as soon as the operation completes."""
    a, b = tsocket.socketpair()
    with a, b:
        got: list[bytes] = []

        async def send_then_recv() -> None:
            await b.send(b"handshake")
            got.append(await b.recv(10))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_then_recv)
            await trio.testing.wait_all_tasks_blocked()
            assert await a.recv(100) == b"handshake"
            # The task that sent last now waits to receive: sending is still free.
            assert await b.send(b"free") == 4
            with pytest.raises(trio.BusyResourceError):
                await b.recv(10)
            with pytest.raises(trio.BusyResourceError):
                await b.recv_into(bytearray(10))
            await a.send(b"x")
        assert got == [b"x"]
        assert await a.recv(10) == b"free"
        await a.send(b"y")
        assert await b.recv(10) == b"y"  # the slot is free again
    with tsocket.socket() as listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listener.accept)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await listener.accept()
            nursery.cancel_scope.cancel()
    await assert_idle()


async def test_failed_try_first_is_still_a_checkpoint() -> None:
    """An error from the try-first syscall comes after a schedule point, as in trio."""
    with tsocket.socket() as listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.close()
        with trio.testing.assert_checkpoints(), pytest.raises(OSError):
            await listener.accept()
    stream_a, stream_b = await tcp_stream_pair()
    async with stream_a, stream_b:
        stream_b.socket.setsockopt(
            stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0"
        )
        await stream_a.send_all(b"unread")
        await trio.testing.wait_all_tasks_blocked()
        stream_b.socket.close()  # unread data + linger 0: RST
        # the first receive tries read(2) at once, which fails
        with trio.testing.assert_checkpoints(), pytest.raises(trio.BrokenResourceError):
            await stream_a.receive_some()
    await assert_idle()


def test_a_uring_socket_in_a_run_on_epoll_waits_as_trio_does() -> None:
    """Outside a run on io_uring a UringSocket is trio's socket: the syscall first (a
    checkpoint), trio's own readiness wait when it would block, trio's errors."""
    a, b = (UringSocket(s) for s in stdlib_socket.socketpair())

    async def main() -> None:
        assert _current_uring() is None  # trio's own I/O manager
        got: list[object] = []

        async def receive() -> None:
            got.append(await b.recv(10))
            buf = bytearray(4)
            got.append((await b.recv_into(buf), bytes(buf)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()  # parked in trio's wait_readable
            with trio.testing.assert_checkpoints():
                assert await a.send(b"hi") == 2
            await trio.testing.wait_all_tasks_blocked()
            await a.send(b"yo")
        assert got == [b"hi", (2, b"yo\0\0")]
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await a.send(b"lost")  # cancelled before the call: nothing sent
        with trio.move_on_after(0):
            await b.recv(10)
            raise AssertionError("received what was never sent")

    with a, b:
        run_on_epoll(main)
        coro = a.send(b"x")
        with pytest.raises(RuntimeError, match="async context"):
            coro.send(None)  # outside any run, as trio's own socket
        coro.close()
