"""trio's high-level networking helpers on trio_uring's streams (``trio_uring/_net/_highlevel.py``)."""

from __future__ import annotations

import functools
import os
import socket
import sys

import pytest
import trio
import trio.testing

import trio_uring

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup
from tests.conftest import assert_idle


async def echo_once(stream: trio_uring.SocketStream) -> None:
    async with stream:
        data = await stream.receive_some()
        await stream.send_all(data.upper())


async def test_serve_tcp_hands_out_uring_streams() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio_uring.serve_tcp, echo_once, 0, host="127.0.0.1")
        )
        assert listeners and all(isinstance(x, trio_uring.SocketListener) for x in listeners)
        port = listeners[0].socket.getsockname()[1]
        for _ in range(3):
            stream = await trio_uring.open_tcp_stream("127.0.0.1", port)
            assert isinstance(stream, trio_uring.SocketStream)
            async with stream:
                await stream.send_all(b"ping")
                assert await stream.receive_some() == b"PING"
                assert await stream.receive_some() == b""
        nursery.cancel_scope.cancel()
    await assert_idle()


async def test_open_tcp_listeners_and_serve_listeners() -> None:
    listeners = await trio_uring.open_tcp_listeners(0, host="127.0.0.1", backlog=5)
    assert [type(x) for x in listeners] == [trio_uring.SocketListener]
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio_uring.serve_listeners, echo_once, listeners)
        async with await trio_uring.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"abc")
            assert await stream.receive_some() == b"ABC"
        nursery.cancel_scope.cancel()
    # serve_listeners closed them when it was cancelled
    assert listeners[0].socket.fileno() == -1


async def test_open_tcp_stream_local_address_and_refusal() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: connecting is refused
        with pytest.raises(OSError) as info:
            await trio_uring.open_tcp_stream("127.0.0.1", port, local_address="127.0.0.1")
    # trio's own error: every attempt failed, the causes are the connects' errors
    causes = info.value.__cause__
    assert isinstance(causes, BaseExceptionGroup)
    assert all(isinstance(exc, ConnectionRefusedError) for exc in causes.exceptions)
    await assert_idle()


async def test_open_unix_socket(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "sock")
    server = trio.socket.socket(socket.AF_UNIX)
    with server:
        await server.bind(path)
        server.listen()
        listener = trio_uring.SocketListener(server)
        stream = await trio_uring.open_unix_socket(path)
        assert isinstance(stream, trio_uring.SocketStream)
        peer = await listener.accept()
        async with stream, peer:
            await stream.send_all(b"over unix")
            assert await peer.receive_some() == b"over unix"


async def test_cancelled_connect_leaves_nothing_open() -> None:
    # a listener whose backlog we never drain; connect itself completes at once on
    # loopback, so cancel before it starts: no socket may be left behind
    with trio.CancelScope() as scope:
        scope.cancel()
        await trio_uring.open_tcp_stream("127.0.0.1", 9)
    assert scope.cancelled_caught
    await assert_idle()
