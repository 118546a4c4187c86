"""trio's own ``trio.SocketStream`` on trio_uring's stream machinery (issue 21).

Under a run on io_uring a ``trio.SocketStream`` over a ``UringSocket`` gets an engine (a
``trio_uring.SocketStream`` over the same socket) unless ``TRIO_URING_STREAMS=0`` /
``set_completion_streams(False)``.  The hostile-caller tests run in both modes: the
behaviour trio documents must not depend on it.
"""

from __future__ import annotations

import errno
import functools
import gc
import socket
import subprocess
import sys
import threading
import warnings
import weakref
from collections.abc import Iterator

import pytest
import trio
import trio.testing
from trio import socket as tsocket

import trio_uring
from tests._child import child_env
from tests.conftest import assert_idle, kernel_lacks, run_on_epoll
from trio_uring._net import _trio_streams
from trio_uring._net._trio_sockets import UringSocket
from trio_uring.lowlevel import current_manager


@pytest.fixture(params=[True, False], ids=["streams", "trio-code"])
def mode(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Both modes: ``True`` trio_uring's machinery, ``False`` trio's own stream code."""
    old = trio_uring.set_completion_streams(request.param)
    yield request.param
    trio_uring.set_completion_streams(old)


@pytest.fixture
def upgraded() -> Iterator[None]:
    old = trio_uring.set_completion_streams(True)
    yield
    trio_uring.set_completion_streams(old)


async def trio_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """A connected loopback (client, server) pair of ``trio.SocketStream``."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    (listener,) = listeners
    async with listener:
        port = listener.socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listener.accept()
    assert type(client) is trio.SocketStream and type(server) is trio.SocketStream
    return client, server


def multishot() -> bool:
    """Whether the engine receives through a multishot here (not on an emulated 5.15)."""
    return kernel_lacks("IORING_REGISTER_PBUF_RING", "IORING_RECV_MULTISHOT") is None


def multishot_cqes() -> int:
    """CQEs the ring reaped beyond its SQEs so far (only multishot requests make those)."""
    stats = current_manager().statistics()
    return stats.cqes_reaped - stats.sqes_submitted


async def test_serve_tcp_and_open_tcp_stream_run_on_the_engine(mode: bool) -> None:
    """Streams trio makes get an engine (or not) as the mode says; echo works either way,
    and with the engine the receives come from a multishot (more CQEs than SQEs)."""
    seen: list[trio.SocketStream] = []

    async def echo(stream: trio.SocketStream) -> None:
        seen.append(stream)
        async for data in stream:
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(
            functools.partial(trio.serve_tcp, echo, 0, host="127.0.0.1")
        )
        client = await trio.open_tcp_stream("127.0.0.1", listener.socket.getsockname()[1])
        before = multishot_cqes()
        for i in range(100):
            message = b"%03d" % i * 20
            await client.send_all(message)
            got = b""
            while len(got) < len(message):
                got += await client.receive_some(len(message) - len(got))
            assert got == message
        extra = multishot_cqes() - before
        await client.aclose()
        nursery.cancel_scope.cancel()
    (server,) = seen
    assert type(client.socket) is UringSocket and type(server.socket) is UringSocket
    assert (_trio_streams.engine_of(client) is not None) is (mode and multishot())
    assert (_trio_streams.engine_of(server) is not None) is (mode and multishot())
    if mode and multishot():
        assert extra >= 150  # ~200 receives, nearly all without an SQE of their own
    else:
        assert extra <= 5
    await assert_idle()


async def test_user_made_stream_keeps_trio_api(upgraded: None) -> None:
    """``trio.SocketStream(sock)`` in user code: the documented attributes and errors."""
    a_sock, b_sock = tsocket.socketpair()
    with tsocket.socket(type=tsocket.SOCK_DGRAM) as udp:
        with pytest.raises(ValueError, match="SOCK_STREAM"):
            trio.SocketStream(udp)
    with socket.socket() as plain:
        with pytest.raises(TypeError, match="Trio socket"):
            trio.SocketStream(plain)  # type: ignore[arg-type]
    a = trio.SocketStream(a_sock)
    b = trio.SocketStream(b_sock)
    assert (_trio_streams.engine_of(a) is not None) is multishot() and a.socket is a_sock
    assert isinstance(a, trio.abc.HalfCloseableStream)
    a.setsockopt(tsocket.SOL_SOCKET, tsocket.SO_SNDBUF, 1 << 16)
    assert a.getsockopt(tsocket.SOL_SOCKET, tsocket.SO_SNDBUF) >= 1 << 16
    with pytest.raises(ValueError, match="max_bytes"):
        await a.receive_some(0)
    await a.send_all(b"hello")
    assert await b.receive_some(3) == b"hel"
    assert await b.receive_some() == b"lo"
    await a.send_eof()
    assert a.socket.did_shutdown_SHUT_WR
    assert await b.receive_some() == b""
    with pytest.raises(trio.ClosedResourceError, match="EOF"):
        await a.send_all(b"x")
    await a.send_eof()  # idempotent
    await a.aclose()
    await a.aclose()
    for call in (a.receive_some(), a.send_all(b"x"), a.wait_send_all_might_not_block()):
        with pytest.raises(trio.ClosedResourceError):
            await call
    await b.aclose()
    await assert_idle()


async def test_broken_is_chained_as_trio_chains_it(mode: bool) -> None:
    client, server = await trio_pair()
    # A reset: the peer closes with unread data in its buffer (SO_LINGER 0).
    server.setsockopt(tsocket.SOL_SOCKET, tsocket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    await client.send_all(b"unread")
    await trio.testing.wait_all_tasks_blocked()
    await server.aclose()
    with pytest.raises(trio.BrokenResourceError) as info:
        while True:
            await client.receive_some()
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ECONNRESET
    await client.aclose()
    await assert_idle()


async def test_concurrent_use_is_busy(mode: bool) -> None:
    client, server = await trio_pair()
    data = bytearray(8 * 1024 * 1024)  # far more than the buffers: the first send blocks

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, data)
        nursery.start_soon(client.receive_some)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await client.send_all(b"x")
        with pytest.raises(trio.BusyResourceError):
            await client.wait_send_all_might_not_block()
        with pytest.raises(trio.BusyResourceError):
            await client.send_eof()
        with pytest.raises(trio.BusyResourceError):
            await client.receive_some()
        nursery.cancel_scope.cancel()
    await client.aclose()
    await server.aclose()
    data.append(0)  # nothing holds the buffer any more
    await assert_idle()


@pytest.mark.parametrize("side", ["receive", "send"])
async def test_socket_closed_by_another_task(mode: bool, side: str) -> None:
    """``stream.socket.close()`` while a call waits: ``ClosedResourceError`` promptly,
    and nothing left in the ring."""
    client, server = await trio_pair()
    data = bytearray(8 * 1024 * 1024)

    async def closer() -> None:
        await trio.testing.wait_all_tasks_blocked()
        client.socket.close()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(closer)
            with pytest.raises(trio.ClosedResourceError):
                if side == "receive":
                    await client.receive_some()
                else:
                    await client.send_all(data)
    data.append(0)
    with pytest.raises(trio.ClosedResourceError):
        await client.receive_some()
    await client.aclose()
    await server.aclose()
    await assert_idle()


async def test_a_closed_stream_makes_no_reference_cycle(mode: bool) -> None:
    """A closed stream and its socket are freed by reference counting (no cycle through
    the engine), as trio's own are."""
    client, server = await trio_pair()
    for _ in range(3):  # (the engine's receive and send park at least once)
        await client.send_all(b"x")
        assert await server.receive_some() == b"x"
        await server.send_all(b"y")
        assert await client.receive_some() == b"y"
    await server.aclose()
    await client.aclose()
    refs = [weakref.ref(client), weakref.ref(client.socket)]
    await trio.testing.wait_all_tasks_blocked()  # (the multishot's final CQE)
    gc.collect()
    gc.disable()
    try:
        del client
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()


def test_trio_code_on_epoll_and_after_uninstall() -> None:
    """On trio's backend ``__init__`` is trio's own (after ``uninstall``) and so are the
    methods; the next run on io_uring wraps it again."""
    trio_init = _trio_streams._trio_init
    made: list[trio.SocketStream] = []

    async def main() -> None:
        a, b = tsocket.socketpair()
        made.append(trio.SocketStream(a))
        await b.send(b"x")
        assert await made[0].receive_some() == b"x"
        await made[0].aclose()
        b.close()

    run_on_epoll(main)
    assert _trio_streams.engine_of(made[0]) is None
    assert "send_all" not in vars(made[0])

    async def on_uring() -> None:
        assert trio.SocketStream.__init__ is not trio_init

    trio_uring.run(on_uring)
    trio_uring.uninstall()
    try:
        assert trio.SocketStream.__init__ is trio_init
    finally:
        trio_uring.install()


def test_install_keyword_sets_the_mode() -> None:
    old = trio_uring.completion_streams_enabled()
    try:
        trio_uring.install(streams=False)
        assert not trio_uring.completion_streams_enabled()
        trio_uring.install(streams=True)
        assert trio_uring.completion_streams_enabled()
    finally:
        trio_uring.set_completion_streams(old)


async def test_trio_websocket_runs_on_the_engine(mode: bool) -> None:
    """trio-websocket (``trio.serve_tcp``/``open_tcp_stream`` inside) on the upgraded
    streams: its receives come from multishot CQEs (more CQEs than SQEs) only then."""
    trio_websocket = pytest.importorskip("trio_websocket")

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except trio_websocket.ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
        async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
            assert type(ws._stream) is trio.SocketStream
            assert (_trio_streams.engine_of(ws._stream) is not None) is (mode and multishot())
            before = multishot_cqes()
            for i in range(50):
                await ws.send_message(f"message {i}")
                assert await ws.get_message() == f"message {i}"
            extra = multishot_cqes() - before
        nursery.cancel_scope.cancel()
    if mode and multishot():
        assert extra >= 75  # ~100 receives (both ends), nearly all from the multishots
    else:
        assert extra <= 5
    await assert_idle()


@pytest.mark.parametrize(("env", "says"), [("1", "stream machinery"), ("0", "trio's own code")])
def test_info_says_which_mode(env: str, says: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trio_uring", "info"],
        env=child_env(TRIO_URING_STREAMS=env),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    (line,) = [line for line in out.splitlines() if line.startswith("trio streams")]
    assert says in line


async def test_a_dropped_stream_closes_its_socket(mode: bool) -> None:
    """A stream dropped without ``aclose()`` while its multishot receive is armed is
    closed as trio's is (its socket's finalizer, with a ``ResourceWarning``): the peer
    sees EOF, and the receive ends in the kernel (nothing left in flight)."""
    client, server = await trio_pair()
    for data in (b"x", b"y"):  # (the second receive arms the multishot)
        await client.send_all(data)
        assert await server.receive_some() == data
    engine = _trio_streams.engine_of(server)
    if engine is not None and multishot():
        assert engine._recv_op is not None
    del engine
    with pytest.warns(ResourceWarning):
        del server
        gc.collect()  # (a stream whose receive parked is in a cycle with its trap)
    with trio.fail_after(5):
        assert await client.receive_some() == b""
    await client.aclose()
    await assert_idle()


async def test_a_stream_dropped_on_another_thread_is_closed_without_another_event(
    mode: bool,
) -> None:
    """The garbage collector may finalize a dropped stream on another thread while the
    run waits in the kernel: the run is woken to end the stream's receive, so the peer
    sees EOF without any other event arriving (before: only at the deadline)."""
    client, server = await trio_pair()
    for data in (b"x", b"y"):  # (the second receive arms the multishot)
        await client.send_all(data)
        assert await server.receive_some() == data
    box = [server]
    del server
    waiting = threading.Event()

    class BeforeWait(trio.abc.Instrument):
        def before_io_wait(self, timeout: float) -> None:
            waiting.set()

    def drop() -> None:
        waiting.wait()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            box.clear()
            gc.collect()

    instrument = BeforeWait()
    trio.lowlevel.add_instrument(instrument)
    thread = threading.Thread(target=drop)
    thread.start()
    try:
        with trio.fail_after(5):
            assert await client.receive_some() == b""
    finally:
        trio.lowlevel.remove_instrument(instrument)
        waiting.set()
        thread.join()
    await client.aclose()
    await assert_idle()


async def test_aclose_after_another_task_closed_the_socket_frees_the_stream(
    mode: bool,
) -> None:
    """``aclose`` after ``stream.socket.close()`` by another task (which marks the stream
    closed) still lets go of what refers back to the stream: it is freed by reference
    counting, not left to the cycle collector."""
    client, server = await trio_pair()
    for _ in range(3):  # (the receive arms its multishot and parks)
        await client.send_all(b"x")
        assert await server.receive_some() == b"x"
    async with trio.open_nursery() as nursery:

        async def receive(stream: trio.SocketStream) -> None:
            with pytest.raises(trio.ClosedResourceError):
                await stream.receive_some()

        nursery.start_soon(receive, server)
        await trio.testing.wait_all_tasks_blocked()
        server.socket.close()
    await server.aclose()
    engine = _trio_streams.engine_of(server)
    assert (engine is not None) is (mode and multishot())
    refs = [weakref.ref(server), weakref.ref(server.socket)]
    if engine is not None:
        refs.append(weakref.ref(engine))
    del engine
    await trio.testing.wait_all_tasks_blocked()  # (the multishot's final CQE)
    gc.collect()
    gc.disable()
    try:
        del server
        assert [ref() for ref in refs] == [None] * len(refs)
    finally:
        gc.enable()
    await client.aclose()
    await assert_idle()
