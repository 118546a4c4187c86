"""trio_uring.lowlevel socket and timer operations on real sockets: results, errors, bad input."""

from __future__ import annotations

import array
import errno
import fcntl
import math
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring
from tests._pairs import Pair, tcp_socketpair
from trio_uring import lowlevel as ll
from trio_uring.lowlevel import current_manager


@pytest.fixture
async def listener() -> AsyncIterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    with sock:
        yield sock


def sqes_prepared() -> int:
    return int(current_manager().ring.handle.sqes_prepared)


def in_flight() -> int:
    return current_manager().statistics().operations_in_flight


def closed_fd() -> int:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    return r


async def expect_rejected(
    exc_type: type[BaseException], call: Callable[[], Any], match: str | None = None
) -> BaseException:
    """``call()`` raises ``exc_type`` at a checkpoint, without submitting anything."""
    before = sqes_prepared()
    with trio.testing.assert_checkpoints(), pytest.raises(exc_type, match=match) as info:
        await call()
    assert sqes_prepared() == before
    return info.value


# ------------------------------------------------------------------ context
def test_needs_a_uring_run() -> None:
    coro = ll.recv(0, 1)
    with pytest.raises(RuntimeError):
        coro.send(None)
    coro.close()

    async def under_epoll() -> str:
        with pytest.raises(RuntimeError, match="io_uring manager"):
            await ll.sleep(0)
        return str(trio.lowlevel.current_statistics().io_statistics.backend)

    trio_uring.uninstall()
    try:
        assert trio.run(under_epoll) == "epoll"
    finally:
        trio_uring.install()


# ---------------------------------------------------------------- recv/send
async def test_send_recv_roundtrip(pair: Pair) -> None:
    a, b = pair
    with trio.testing.assert_checkpoints():
        assert await ll.send(a, b"hello world") == 11
    with trio.testing.assert_checkpoints():
        assert await ll.recv(b, 5) == b"hello"
    assert await ll.recv(b, 100) == b" world"
    # memoryview / bytearray / array inputs, and the trio socket wrapper
    tb = trio.socket.from_stdlib_socket(b)
    assert await ll.send(a, memoryview(b"xxabcxx")[2:5]) == 3
    assert await ll.recv(tb, 10, socket.MSG_PEEK) == b"abc"
    assert await ll.recv(tb.fileno(), 10) == b"abc"


async def test_recv_waits_for_data(pair: Pair) -> None:
    a, b = pair
    got: list[bytes] = []

    async def receiver() -> None:
        got.append(await ll.recv(b, 10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        a.send(b"late")
    assert got == [b"late"]


async def test_two_tasks_may_recv_one_socket(pair: Pair) -> None:
    a, b = pair
    got: list[bytes] = []

    async def receiver() -> None:
        got.append(await ll.recv(b, 1))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        a.send(b"12")
    assert sorted(got) == [b"1", b"2"]


async def test_recv_eof(pair: Pair) -> None:
    a, b = pair
    a.shutdown(socket.SHUT_WR)
    assert await ll.recv(b, 10) == b""
    assert await ll.recv(b, 0) == b""


async def test_recv_into(pair: Pair) -> None:
    a, b = pair
    a.send(b"abcdef")
    buf = bytearray(10)
    with trio.testing.assert_checkpoints():
        assert await ll.recv_into(b, buf, 2) == 2
    assert buf[:2] == b"ab"
    view = memoryview(buf)[4:]
    assert await ll.recv_into(b, view) == 4
    assert buf == b"ab\0\0cdef\0\0"
    ints = array.array("i", [0])
    a.send(struct.pack("i", 12345))
    assert await ll.recv_into(b, ints) == 4
    assert ints[0] == 12345
    # the buffer is no longer exported once the call returned: it can be resized
    view.release()
    buf.extend(b"!")


async def test_recv_bad_arguments(pair: Pair) -> None:
    _, b = pair
    await expect_rejected(ValueError, lambda: ll.recv(b, -1), "negative buffersize")
    await expect_rejected(TypeError, lambda: ll.recv(b, "10"))  # type: ignore[arg-type]
    await expect_rejected(OverflowError, lambda: ll.recv(b, 1, 1 << 40))
    await expect_rejected(TypeError, lambda: ll.recv(object(), 1), "fileno")  # type: ignore[arg-type]
    await expect_rejected(TypeError, lambda: ll.recv_into(b, b"read-only"), "read-write")
    await expect_rejected(
        TypeError,
        lambda: ll.recv_into(b, memoryview(bytearray(10))[::2]),
        "read-write",
    )
    await expect_rejected(ValueError, lambda: ll.recv_into(b, bytearray(3), 5), "too small")
    await expect_rejected(ValueError, lambda: ll.recv_into(b, bytearray(3), -1), "negative")
    await expect_rejected(TypeError, lambda: ll.send(b, "text"), "bytes-like")  # type: ignore[arg-type]
    await expect_rejected(TypeError, lambda: ll.send(b, 5), "bytes-like")  # type: ignore[arg-type]
    # A non-contiguous view: the pin's own export fails, the message says why.
    strided = memoryview(b"abcdef")[::2]
    await expect_rejected(TypeError, lambda: ll.send(b, strided), "contiguous")
    await expect_rejected(TypeError, lambda: ll.send_zc(b, strided), "contiguous")


async def test_bad_arguments_still_honour_cancellation(pair: Pair) -> None:
    _, b = pair
    with trio.CancelScope() as scope:
        scope.cancel()
        await ll.recv(b, -1)
    assert scope.cancelled_caught


async def test_closed_sockets_give_ebadf() -> None:
    a, b = trio.socket.socketpair()
    b.close()
    a.close()
    for call in (
        lambda: ll.recv(a, 1),
        lambda: ll.send(a, b"x"),
        lambda: ll.recv_into(a, bytearray(1)),
        lambda: ll.accept(a),
        lambda: ll.shutdown(a, socket.SHUT_RDWR),
    ):
        exc = await expect_rejected(OSError, call)
        assert isinstance(exc, OSError) and exc.errno == errno.EBADF
    # a raw fd that is not open: the kernel says EBADF
    with pytest.raises(OSError) as info:
        await ll.recv(closed_fd(), 1)
    assert info.value.errno == errno.EBADF


async def test_send_to_closed_peer_is_epipe_without_sigpipe() -> None:
    a, b = socket.socketpair()
    with a:
        b.close()
        with pytest.raises(BrokenPipeError):
            await ll.send(a, b"x")
        with pytest.raises(BrokenPipeError):
            await ll.sendmsg(a, [b"x"])


async def test_recv_after_reset_is_econnreset() -> None:
    a, b = tcp_socketpair()
    with a:
        b.send(b"unread")  # a never reads it: closing a with unread data sends RST
        a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        a.close()
        with b:
            await trio.lowlevel.wait_readable(b)
            with pytest.raises(ConnectionResetError):
                await ll.recv(b, 10)


# ---------------------------------------------------------- sendmsg/recvmsg
async def test_sendmsg_recvmsg_gather_and_flags(pair: Pair) -> None:
    a, b = pair
    with trio.testing.assert_checkpoints():
        assert await ll.sendmsg(a, [b"ab", bytearray(b"cd"), memoryview(b"ef")]) == 6
    with trio.testing.assert_checkpoints():
        data, anc, flags, address = await ll.recvmsg(b, 4)
    assert (data, anc, flags) == (b"abcd", [], 0)
    assert address is None  # connected stream sockets report no address, as the stdlib
    assert await ll.recvmsg(b, 10) == (b"ef", [], 0, None)
    assert await ll.sendmsg(a, []) == 0


async def test_scm_rights_over_af_unix() -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        fds = array.array("i", [r, w])
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
        assert await ll.sendmsg(a, [b"fds"], anc) == 3
        data, ancdata, flags, _ = await ll.recvmsg(
            b, 10, socket.CMSG_SPACE(2 * fds.itemsize), socket.MSG_CMSG_CLOEXEC
        )
        assert data == b"fds"
        assert flags & socket.MSG_CTRUNC == 0
        [(level, kind, payload)] = ancdata
        assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
        got = array.array("i")
        got.frombytes(payload)
        assert len(got) == 2 and r not in got and w not in got
        try:
            assert fcntl.fcntl(got[0], fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            os.write(got[1], b"through the passed fd")
            assert os.read(r, 100) == b"through the passed fd"
        finally:
            os.close(got[0])
            os.close(got[1])
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        b.close()


async def test_recvmsg_truncated_ancillary_data() -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    with a, b:
        try:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r, w]))]
            await ll.sendmsg(a, [b"x"], anc)
            # room for one fd only: the kernel closes the other and sets MSG_CTRUNC
            data, ancdata, flags, _ = await ll.recvmsg(b, 10, socket.CMSG_LEN(4))
            assert data == b"x"
            assert flags & socket.MSG_CTRUNC
            for _, _, payload in ancdata:
                for fd in array.array("i", payload[: len(payload) // 4 * 4]):
                    os.close(fd)
        finally:
            os.close(r)
            os.close(w)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
async def test_datagram_sendmsg_to_address_and_recvmsg_source(family: int) -> None:
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    try:
        rx = socket.socket(family, socket.SOCK_DGRAM)
    except OSError:  # pragma: no cover - no IPv6 here
        pytest.skip("address family unavailable")
    with rx, socket.socket(family, socket.SOCK_DGRAM) as tx:
        rx.bind((host, 0))
        tx.bind((host, 0))
        dest = rx.getsockname()
        sent = await ll.sendmsg(tx, [b"dgram"], (), 0, dest[:2])
        assert sent == 5
        data, _, flags, source = await ll.recvmsg(rx, 100)
        assert data == b"dgram" and flags == 0
        assert source == tx.getsockname()
        # a datagram larger than the buffer is truncated and flagged
        await ll.sendmsg(tx, [b"0123456789"], (), 0, dest)
        data, _, flags, _ = await ll.recvmsg(rx, 4)
        assert data == b"0123" and flags & socket.MSG_TRUNC


async def test_sendmsg_to_unix_datagram_path(tmp_path: Any) -> None:
    path = str(tmp_path / "sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as tx:
            tx.bind(path + "2")
            assert await ll.sendmsg(tx.fileno(), [b"hi"], (), 0, path) == 2
            assert await ll.recvmsg(rx, 10) == (b"hi", [], 0, path + "2")
            abstract = b"\0trio_uring_test_%d" % os.getpid()
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx2:
                rx2.bind(abstract)
                await ll.sendmsg(tx, [b"abs"], (), 0, abstract)
                assert rx2.recv(10) == b"abs"


async def test_sendmsg_recvmsg_bad_arguments(pair: Pair) -> None:
    a, _ = pair
    await expect_rejected(TypeError, lambda: ll.sendmsg(a, 5), "iterable")  # type: ignore[arg-type]
    await expect_rejected(TypeError, lambda: ll.sendmsg(a, ["x"]), "bytes-like")  # type: ignore[list-item]
    await expect_rejected(TypeError, lambda: ll.sendmsg(a, [b"x"], [(1, 2)]), "length 3")  # type: ignore[list-item]
    await expect_rejected(TypeError, lambda: ll.sendmsg(a, [b"x"], [(1, 2, "s")]), "bytes-like")  # type: ignore[list-item]
    await expect_rejected(ValueError, lambda: ll.recvmsg(a, -1), "negative buffer size")
    await expect_rejected(ValueError, lambda: ll.recvmsg(a, 1, -1), "ancillary")
    if a.family == socket.AF_INET:
        await expect_rejected(ValueError, lambda: ll.sendmsg(a, [b"x"], (), 0, ("127.0.0.1",)))


# --------------------------------------------------------- accept/connect
async def test_accept_and_connect_tcp(listener: socket.socket) -> None:
    client = trio.socket.socket()
    with client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ll.connect, client, listener.getsockname())
            with trio.testing.assert_checkpoints():
                server, address = await ll.accept(listener)
        with server:
            assert isinstance(server, trio.socket.SocketType)
            assert address == client.getsockname()
            assert server.getpeername() == client.getsockname()
            assert fcntl.fcntl(server.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK
            assert not server.get_inheritable()
            assert (server.family, server.type) == (socket.AF_INET, socket.SOCK_STREAM)
            await ll.send(client, b"ping")
            assert await server.recv(10) == b"ping"


async def test_accept_on_raw_fd_and_unix_socket(tmp_path: Any) -> None:
    path = str(tmp_path / "listen")
    with socket.socket(socket.AF_UNIX) as lst:
        lst.bind(path)
        lst.listen()
        with socket.socket(socket.AF_UNIX) as client:
            client.setblocking(False)
            await ll.connect(client, path)
            server, address = await ll.accept(lst.fileno())
            with server:
                assert address == ""  # unnamed client socket, as the stdlib reports
                assert server.family == socket.AF_UNIX
                client.send(b"u")
                assert await ll.recv(server, 1) == b"u"


async def test_connect_refused_and_bad_addresses() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nobody listens there
    with socket.socket() as sock:
        sock.setblocking(False)
        with pytest.raises(ConnectionRefusedError, match="Error connecting to"):
            await ll.connect(sock, ("127.0.0.1", port))
    with socket.socket() as sock:
        await expect_rejected(
            socket.gaierror, lambda: ll.connect(sock, ("localhost", 1)), "numeric"
        )
        await expect_rejected(ValueError, lambda: ll.connect(sock, ("127.0.0.1",)), "tuple")
        await expect_rejected(TypeError, lambda: ll.connect(sock, ("127.0.0.1", "x")))
        await expect_rejected(OverflowError, lambda: ll.connect(sock, ("127.0.0.1", 70000)))
        await expect_rejected(ValueError, lambda: ll.connect(sock, "/not/a/tuple"))
    r, w = os.pipe()
    try:
        exc = await expect_rejected(OSError, lambda: ll.connect(r, ("127.0.0.1", 1)))
        assert isinstance(exc, OSError) and exc.errno == errno.ENOTSOCK
    finally:
        os.close(r)
        os.close(w)


async def test_connect_ipv6_numeric_with_scope(listener: socket.socket) -> None:
    try:
        lst6 = socket.socket(socket.AF_INET6)
        lst6.bind(("::1", 0))
    except OSError:  # pragma: no cover
        pytest.skip("no IPv6 loopback")
    with lst6, socket.socket(socket.AF_INET6) as client:
        lst6.listen()
        client.setblocking(False)
        await ll.connect(client, ("::1", lst6.getsockname()[1], 0, 0))
        server, address = await ll.accept(lst6)
        with server:
            assert address == client.getsockname()


async def test_accept_error_not_listening() -> None:
    with socket.socket() as sock:
        with pytest.raises(OSError) as info:
            await ll.accept(sock)
        assert info.value.errno == errno.EINVAL


# ----------------------------------------------------------- shutdown/poll
async def test_shutdown(pair: Pair) -> None:
    a, b = pair
    with trio.testing.assert_checkpoints():
        await ll.shutdown(a, socket.SHUT_WR)
    assert await ll.recv(b, 10) == b""
    with pytest.raises(BrokenPipeError):
        await ll.send(a, b"after shutdown")
    with pytest.raises(OSError) as info:
        await ll.shutdown(a, 7)
    assert info.value.errno == errno.EINVAL


async def test_shutdown_not_connected() -> None:
    with socket.socket() as sock:
        with pytest.raises(OSError) as info:
            await ll.shutdown(sock, socket.SHUT_RDWR)
        assert info.value.errno == errno.ENOTCONN


async def test_poll(pair: Pair) -> None:
    a, b = pair
    assert await ll.poll(a, 4) & 4  # POLLOUT
    got: list[int] = []

    async def poller() -> None:
        got.append(await ll.poll(b, 1))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poller)
        nursery.start_soon(poller)  # two pollers on one fd are fine (no BusyResourceError)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        a.send(b"x")
    assert len(got) == 2 and all(r & 1 for r in got)
    a.close()
    b.shutdown(socket.SHUT_WR)
    assert await ll.poll(b, 0) & 0x010  # POLLHUP is always reported
    with pytest.raises(OSError) as info:
        await ll.poll(closed_fd(), 1)
    assert info.value.errno == errno.EBADF or info.value.errno is None


# ------------------------------------------------------------------ timers
async def test_sleep_on_the_kernel_timer() -> None:
    manager = current_manager()
    before = sqes_prepared()
    start = trio.current_time()
    with trio.testing.assert_checkpoints():
        await ll.sleep(0.03)
    assert trio.current_time() - start >= 0.03
    assert sqes_prepared() > before
    deadline = trio.current_time() + 0.02
    await ll.sleep_until(deadline)
    assert trio.current_time() >= deadline
    # past deadlines and zero are checkpoints that do not block
    with trio.testing.assert_checkpoints():
        await ll.sleep_until(trio.current_time() - 10)
    with trio.testing.assert_checkpoints():
        await ll.sleep(0)
    assert manager.statistics().linked_timeouts == 0


async def test_sleep_bad_arguments() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        await ll.sleep(-1)
    with pytest.raises(ValueError, match="NaN"):
        await ll.sleep_until(math.nan)
    with pytest.raises(ValueError, match="NaN"):
        await ll.sleep(math.nan)


async def test_sleep_cancelled_and_forever() -> None:
    stats = current_manager().statistics
    base = stats().async_cancels
    with trio.move_on_after(0.01) as scope:
        await ll.sleep(10)
    assert scope.cancelled_caught
    assert stats().async_cancels == base + 1
    with trio.move_on_after(0.01) as scope:
        await ll.sleep_until(math.inf)
    assert scope.cancelled_caught


async def test_sleep_under_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    stats = current_manager().statistics
    before = sqes_prepared()
    start = trio.current_time()
    await ll.sleep(1000)
    assert trio.current_time() - start == 1000
    await ll.sleep_until(start + 2000)
    assert trio.current_time() == start + 2000
    assert sqes_prepared() == before  # no kernel timer: the kernel's clock means nothing here
    assert stats().linked_timeouts == 0


# ---------------------------------------------------------------- surface
def test_public_surface() -> None:
    from trio_uring._ops import _files as _fd_ops
    from trio_uring._ops import _registered, _zerocopy

    for name in ll.__all__:
        assert getattr(ll, name) is not None, name
    assert ll.read is _fd_ops.read and ll.openat is _fd_ops.openat
    assert ll.read_fixed is _registered.read_fixed
    assert ll.send_zc is _zerocopy.send_zc
    assert {"recv", "send", "accept", "connect", "sleep", "read", "write", "splice"} <= set(
        ll.__all__
    )


async def test_fd_ops_through_lowlevel_on_a_socket() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert await ll.write(a.fileno(), b"via write") == 9
        assert await ll.recv(b, 100) == b"via write"
        await ll.send(b, b"via send")
        assert await ll.read(a.fileno(), 100) == b"via send"
