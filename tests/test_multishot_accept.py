"""Short connections: the listener's multishot ACCEPT (bounded queue, close, cancel, EMFILE),
the streams' first receive/send tried at once, trio sockets' accept tried at once, and
a close that has nothing in flight entering the kernel for nothing.

Every test runs on the real kernel; under ``--trio-uring-kernel=5.15`` (no multishot
accept) the same tests check the one-ACCEPT-per-call fallback."""

from __future__ import annotations

import errno
import os
import textwrap

import pytest
import trio
import trio.testing
from trio import socket as tsocket

from tests._child import run_child
from tests._pairs import tcp_stream_pair
from tests.conftest import _ring_has, assert_idle, open_fds
from trio_uring._core import _kernels
from trio_uring._net._highlevel import open_tcp_listeners
from trio_uring._net._listener import ACCEPT_QUEUE_LOW, ACCEPT_QUEUE_MAX, SocketListener
from trio_uring._net._streams import (
    SocketStream,
)
from trio_uring.lowlevel import current_manager

MULTISHOT_ACCEPT = pytest.mark.needs_kernel("IORING_ACCEPT_MULTISHOT")
#: What the kernel may accept between the loop tick that fills the queue and the
#: cancel reaching it (the tests below connect one client per loop tick or two).
SLACK = 8


def has_multishot_accept() -> bool:
    return _ring_has()[_kernels.MULTISHOT_ACCEPT.name]


async def listener_and_address() -> tuple[SocketListener, tuple[str, int]]:
    (listener,) = await open_tcp_listeners(0, host="127.0.0.1", backlog=1024)
    return listener, listener.socket.getsockname()


async def connect(address: tuple[str, int]) -> tsocket.SocketType:
    client = tsocket.socket()
    await client.connect(address)
    return client


async def test_many_connections_accepted_in_order() -> None:
    listener, address = await listener_and_address()
    manager = current_manager()
    clients = [await connect(address) for _ in range(3 * ACCEPT_QUEUE_MAX)]
    before = manager.statistics().sqes_submitted
    streams = [await listener.accept() for _ in clients]
    assert [s.socket.getpeername() for s in streams] == [c.getsockname() for c in clients]
    if has_multishot_accept():
        assert listener._multishot
        # One multishot per queue's worth, not one ACCEPT per connection.
        assert manager.statistics().sqes_submitted - before <= len(clients) // ACCEPT_QUEUE_LOW
    else:
        assert not listener._multishot
    for i, (client, stream) in enumerate(zip(clients, streams, strict=True)):
        await client.send(b"%d" % i)
        assert await stream.receive_some() == b"%d" % i
        await stream.aclose()
        client.close()
    await listener.aclose()
    await assert_idle()


def test_listener_dropped_unclosed_closes_its_queued_connections() -> None:
    """A listener the program never closed: once its run ended and nothing refers to
    it, the connections queued for it are closed, not leaked."""
    import gc
    import socket as stdlib_socket
    import warnings

    import trio_uring

    before = open_fds()

    async def main() -> list[stdlib_socket.socket]:
        listener, address = await listener_and_address()
        first = stdlib_socket.create_connection(address)
        (await listener.accept()).socket.close()  # arms the multishot
        clients = [first] + [stdlib_socket.create_connection(address) for _ in range(5)]
        await trio.testing.wait_all_tasks_blocked()
        if has_multishot_accept():
            assert len(listener._queue) == 5
        return clients  # the listener is dropped unclosed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the unclosed listening socket
        clients = trio_uring.run(main)
        gc.collect()
    try:
        assert open_fds() - before == {c.fileno() for c in clients}
    finally:
        for client in clients:
            client.close()


@MULTISHOT_ACCEPT
async def test_queue_is_bounded_when_nobody_accepts() -> None:
    listener, address = await listener_and_address()
    first = await connect(address)
    (await listener.accept()).socket.close()  # arms the multishot
    base = len(open_fds())
    clients = []
    for _ in range(4 * ACCEPT_QUEUE_MAX):
        clients.append(await connect(address))
        await trio.sleep(0)  # the loop runs: completions are reaped as they come
    await trio.testing.wait_all_tasks_blocked()
    queued = len(listener._queue)
    assert ACCEPT_QUEUE_MAX <= queued <= ACCEPT_QUEUE_MAX + SLACK
    assert listener._accept_op is None  # stopped: the kernel's backlog holds the rest
    # Only the clients' fds and the queued ones: the rest are not accepted yet.
    assert len(open_fds()) - base == len(clients) + queued
    # Nothing is lost: every connection is accepted, in order, and the multishot re-armed.
    streams = [await listener.accept() for _ in clients]
    assert [s.socket.getpeername() for s in streams] == [c.getsockname() for c in clients]
    assert listener._accept_op is not None
    for client, stream in zip(clients, streams, strict=True):
        await stream.aclose()
        client.close()
    first.close()
    await listener.aclose()
    await assert_idle()


async def test_close_with_connections_queued_closes_them() -> None:
    listener, address = await listener_and_address()
    before = open_fds()
    first = await connect(address)
    (await listener.accept()).socket.close()
    clients = [await connect(address) for _ in range(10)]
    await trio.testing.wait_all_tasks_blocked()
    if has_multishot_accept():
        assert len(listener._queue) == 10
    await listener.aclose()
    await trio.testing.wait_all_tasks_blocked()
    # The queued connections were closed: the clients see their end.
    for client in clients:
        with trio.fail_after(5):
            try:
                assert await client.recv(10) == b""
            except ConnectionResetError:
                pass
        client.close()
    first.close()
    assert open_fds() - before == set()
    with pytest.raises(trio.ClosedResourceError):
        await listener.accept()
    await assert_idle()


async def test_socket_closed_directly_closes_queued_connections() -> None:
    """``listener.socket.close()`` (notify_closing) instead of ``aclose``: the same cleanup."""
    listener, address = await listener_and_address()
    before = open_fds()
    first = await connect(address)
    (await listener.accept()).socket.close()
    clients = [await connect(address) for _ in range(5)]
    await trio.testing.wait_all_tasks_blocked()
    listener.socket.close()
    await trio.testing.wait_all_tasks_blocked()
    for client in [first, *clients]:
        client.close()
    assert open_fds() - before == set()
    with pytest.raises(trio.ClosedResourceError):
        await listener.accept()
    await assert_idle()


@MULTISHOT_ACCEPT
async def test_multishot_refused_falls_back_to_one_accept_per_call() -> None:
    """A multishot ending in EINVAL before it accepted anything: this listener falls back."""
    listener, address = await listener_and_address()
    async with trio.open_nursery() as nursery:
        results: list[SocketStream] = []

        async def accept() -> None:
            results.append(await listener.accept())

        nursery.start_soon(accept)
        await trio.testing.wait_all_tasks_blocked()
        op = listener._accept_op
        assert op is not None
        current_manager().withdraw(op)  # (its real CQE is withdrawn with it)
        listener._accept_op = None
        op.on_cqe(-errno.EINVAL, 0)  # as a kernel refusing it would answer
        assert listener._multishot is False
        client = await connect(address)
    (stream,) = results
    assert stream.socket.getpeername() == client.getsockname()
    assert listener._accept_op is None
    await stream.aclose()
    client.close()
    await listener.aclose()
    await assert_idle()


async def test_close_wakes_a_waiting_accept() -> None:
    listener, _ = await listener_and_address()
    async with trio.open_nursery() as nursery:

        async def accept() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await listener.accept()

        nursery.start_soon(accept)
        await trio.testing.wait_all_tasks_blocked()
        await listener.aclose()
    await assert_idle()


async def test_concurrent_accept_is_busy() -> None:
    listener, _ = await listener_and_address()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(listener.accept)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await listener.accept()
        nursery.cancel_scope.cancel()
    await listener.aclose()


async def test_cancelled_accept_loses_no_connection() -> None:
    listener, address = await listener_and_address()
    before = open_fds()
    with trio.move_on_after(0.01) as scope:
        await listener.accept()
    assert scope.cancelled_caught
    client = await connect(address)
    await trio.testing.wait_all_tasks_blocked()
    # Cancelled again while the connection waits (queued, or in the backlog).
    with trio.CancelScope() as scope:
        scope.cancel()
        await listener.accept()
    assert scope.cancelled_caught
    stream = await listener.accept()
    assert stream.socket.getpeername() == client.getsockname()
    await stream.aclose()
    client.close()
    await listener.aclose()
    assert open_fds() - before == set()
    await assert_idle()


async def test_ignorable_errors_are_skipped() -> None:
    """ECONNABORTED & co. end the multishot with nothing to report: accept goes on."""
    listener, address = await listener_and_address()
    client = await connect(address)
    if has_multishot_accept():
        op = listener._accept_op
        assert op is None
        (await listener.accept()).socket.close()  # a real one; arms the multishot
        op = listener._accept_op
        assert op is not None
        op.on_cqe(-errno.ECONNABORTED, 2)  # as the kernel would post it (F_MORE)
        assert listener._error is None and not listener._queue
    else:
        (await listener.accept()).socket.close()
    client.close()
    client = await connect(address)
    stream = await listener.accept()
    await stream.aclose()
    client.close()
    await listener.aclose()


async def test_fallback_listener_one_accept_per_call() -> None:
    listener, address = await listener_and_address()
    listener._multishot = False  # as on a kernel without multishot accept
    client = await connect(address)
    stream = await listener.accept()
    assert listener._accept_op is None and not listener._queue
    assert stream.socket.getpeername() == client.getsockname()
    await stream.aclose()
    client.close()
    await listener.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await listener.accept()


EMFILE_CHILD = """
import errno, os, resource, trio, trio_uring
from trio import socket as tsocket
from trio_uring._net._highlevel import open_tcp_listeners

async def main():
    (listener,) = await open_tcp_listeners(0, host="127.0.0.1")
    client = tsocket.socket()
    await client.connect(listener.socket.getsockname())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(n) for n in os.listdir("/proc/self/fd"))
    # No fd can be allocated any more (the listdir fd is closed again).
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest, hard))
    try:
        await listener.accept()
    except OSError as exc:
        assert exc.errno == errno.EMFILE, exc
    else:
        raise AssertionError("accept did not raise EMFILE")
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # As trio.serve_listeners does: the connection waited in the backlog.
    stream = await listener.accept()
    assert stream.socket.getpeername() == client.getsockname()
    await stream.aclose()
    client.close()
    await listener.aclose()
    print("ok")

trio_uring.run(main)
"""


def test_emfile_raises_like_trio_and_loses_no_connection() -> None:
    proc = run_child(textwrap.dedent(EMFILE_CHILD))
    assert proc.stdout.splitlines()[-1] == "ok"


async def test_serve_listeners_retries_after_emfile() -> None:
    """trio.serve_listeners handles our EMFILE as it handles trio's (log, sleep, retry)."""
    listener, address = await listener_and_address()
    calls = 0
    real_accept = listener.accept

    async def flaky_accept() -> SocketStream:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError(errno.EMFILE, "Too many open files")
        return await real_accept()

    listener.accept = flaky_accept  # type: ignore[method-assign]
    got = trio.Event()

    async def handler(stream: SocketStream) -> None:
        assert await stream.receive_some() == b"hi"
        got.set()

    client = await connect(address)
    await client.send(b"hi")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, [listener])
        await got.wait()
        nursery.cancel_scope.cancel()
    client.close()
    assert calls >= 2


# ----------------------------------------------------- the streams' first receive/send
async def test_first_receive_with_data_waiting_arms_nothing() -> None:
    a, b = await tcp_stream_pair()
    manager = current_manager()
    await a.send_all(b"request")
    await trio.testing.wait_all_tasks_blocked()
    before = manager.statistics().sqes_submitted
    assert await b.receive_some() == b"request"
    assert b._recv_op is None
    assert manager.statistics().sqes_submitted == before
    await a.aclose()
    await b.aclose()
    await assert_idle()


async def test_first_receive_that_would_block_arms_and_waits() -> None:
    a, b = await tcp_stream_pair()
    async with trio.open_nursery() as nursery:

        async def later() -> None:
            await trio.testing.wait_all_tasks_blocked()
            await a.send_all(b"late")

        nursery.start_soon(later)
        assert await b.receive_some() == b"late"
    await a.send_all(b"more")
    assert await b.receive_some() == b"more"
    await a.aclose()
    await b.aclose()
    await assert_idle()


async def test_first_receive_cancelled_consumes_nothing() -> None:
    a, b = await tcp_stream_pair()
    await a.send_all(b"kept")
    await trio.testing.wait_all_tasks_blocked()
    with trio.CancelScope() as scope:
        scope.cancel()
        await b.receive_some()
    assert scope.cancelled_caught
    assert await b.receive_some() == b"kept"
    await a.aclose()
    await b.aclose()


async def test_first_receive_eof_and_error() -> None:
    a, b = await tcp_stream_pair()
    await a.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert await b.receive_some() == b""
    assert await b.receive_some() == b""
    await b.aclose()
    c, d = await tcp_stream_pair()
    c.socket.setsockopt(tsocket.SOL_SOCKET, tsocket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    await c.aclose()  # RST
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(trio.BrokenResourceError) as info:
        await d.receive_some()
    assert isinstance(info.value.__cause__, ConnectionResetError)
    await d.aclose()


async def test_first_send_is_one_syscall_and_later_ones_sqes() -> None:
    a, b = await tcp_stream_pair()
    manager = current_manager()
    before = manager.statistics().sqes_submitted
    await a.send_all(b"first")
    assert manager.statistics().sqes_submitted == before
    assert a._s_op is None
    await a.send_all(memoryview(b"second"))
    assert manager.statistics().sqes_submitted > before
    got = b""
    while len(got) < 11:
        got += await b.receive_some()
    assert got == b"firstsecond"
    await a.aclose()
    await b.aclose()
    await assert_idle()


async def test_first_send_cancelled_sends_nothing_and_error_is_broken() -> None:
    a, b = await tcp_stream_pair()
    with trio.CancelScope() as scope:
        scope.cancel()
        await a.send_all(b"never")
    assert scope.cancelled_caught
    await a.send_all(b"sent")
    assert await b.receive_some() == b"sent"
    await a.aclose()
    await b.aclose()
    c, d = await tcp_stream_pair()
    d.socket.setsockopt(tsocket.SOL_SOCKET, tsocket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    await d.aclose()  # RST
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(trio.BrokenResourceError):
        await c.send_all(b"x")
    await c.aclose()


# ----------------------------------------------------- trio sockets and closing
async def test_trio_socket_accept_tries_first() -> None:
    listener = tsocket.socket()
    with listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        client = await connect(listener.getsockname())
        await trio.testing.wait_all_tasks_blocked()
        manager = current_manager()
        before = manager.statistics().sqes_submitted
        server, address = await listener.accept()
        assert manager.statistics().sqes_submitted == before  # the syscall took it
        assert address == client.getsockname()
        try:
            assert isinstance(server, type(listener))
            assert os.get_blocking(server.fileno()) is False
        finally:
            server.close()
            client.close()
        # Nothing waiting: one ACCEPT, as before.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listener.accept)
            await trio.testing.wait_all_tasks_blocked()
            assert manager.statistics().sqes_submitted > before
            nursery.cancel_scope.cancel()


async def test_close_with_nothing_in_flight_does_not_enter() -> None:
    a, b = await tcp_stream_pair()
    await a.send_all(b"x")
    assert await b.receive_some() == b"x"
    manager = current_manager()
    enters = manager.statistics().enter_calls
    a.socket.close()  # notify_closing finds nothing in flight on the fd
    assert manager.statistics().enter_calls == enters
    await b.aclose()
    await a.aclose()


def test_guest_mode_accepts_cancels_and_closes() -> None:
    """Guest mode submits every SQE at once: the multishot, its cancel and the close too."""
    import queue
    from collections.abc import Callable
    from typing import Any

    import trio_uring

    todo: queue.Queue[Callable[[], object]] = queue.Queue()
    result: list[Any] = []

    async def main() -> str:
        listener, address = await listener_and_address()
        clients = [await connect(address) for _ in range(5)]
        streams = [await listener.accept() for _ in range(3)]
        assert [s.socket.getpeername() for s in streams] == [c.getsockname() for c in clients[:3]]
        with trio.CancelScope() as scope:
            scope.cancel()
            await listener.accept()
        assert scope.cancelled_caught
        stream = await listener.accept()  # the cancelled call lost nothing
        assert stream.socket.getpeername() == clients[3].getsockname()
        await trio.testing.wait_all_tasks_blocked()
        await listener.aclose()  # the fifth connection, queued or in the backlog, goes
        for s in [*streams, stream]:
            await s.aclose()
        for c in clients:
            c.close()
        return "ok"

    before = open_fds()
    trio_uring.start_guest_run(main, run_sync_soon_threadsafe=todo.put, done_callback=result.append)
    while not result:
        todo.get()()
    assert result[0].unwrap() == "ok"
    assert open_fds() - before == set()


def test_listener_used_by_a_second_run() -> None:
    """A multishot armed in a run that ended does not keep the next run's accept waiting."""
    import socket as stdsocket

    import trio_uring

    raw = stdsocket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen(8)
    address = raw.getsockname()
    listener: list[SocketListener] = []

    async def one() -> None:
        if not listener:
            listener.append(SocketListener(tsocket.from_stdlib_socket(raw)))
        client = await connect(address)
        stream = await listener[0].accept()
        assert stream.socket.getpeername() == client.getsockname()
        await stream.aclose()
        client.close()

    trio_uring.run(one)
    trio_uring.run(one)

    async def close() -> None:
        await listener[0].aclose()

    trio_uring.run(close)


@pytest.mark.needs_kernel("IORING_REGISTER_PBUF_RING", "IORING_RECV_MULTISHOT")
def test_run_end_does_not_rearm_multishots() -> None:
    """While close() drains, a multishot that ends (cancelled) must not re-arm itself:
    it would outlive the run (a lingering ring, and close() waiting its whole timeout)."""
    import warnings

    import trio_uring
    from trio_uring._core._manager import lingering

    kept: list[object] = []

    async def main() -> None:
        listener, address = await listener_and_address()
        client = await connect(address)
        stream = await listener.accept()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.receive_some)  # would block: arms the multishot
            await trio.testing.wait_all_tasks_blocked()
            assert stream._recv_op is not None and listener._accept_op is not None
            nursery.cancel_scope.cancel()
        kept.extend([listener, client, stream])  # still open when the run ends

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)  # "the run ended with requests..."
        trio_uring.run(main)
    assert lingering() == 0
    listener, client, stream = kept
    assert isinstance(listener, SocketListener) and isinstance(stream, SocketStream)
    assert listener._accept_op is None and stream._recv_op is None

    async def close() -> None:
        await stream.aclose()
        await listener.aclose()
        client.close()  # type: ignore[attr-defined]

    trio_uring.run(close)
