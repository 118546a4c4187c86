"""Connected socket pairs shared by the tests (real loopback TCP)."""

from __future__ import annotations

import socket

from trio import socket as tsocket

from trio_uring._net._streams import SocketStream, ZeroCopyPolicy

Pair = tuple[socket.socket, socket.socket]


def make_pair(kind: str) -> Pair:
    """A connected non-blocking pair: ``"socketpair"`` (AF_UNIX) or ``"tcp"`` (loopback)."""
    a, b = socket.socketpair() if kind == "socketpair" else tcp_socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def tcp_socketpair() -> tuple[socket.socket, socket.socket]:
    """A connected (client, server) pair of blocking stdlib TCP sockets."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


async def tcp_stream_pair(
    zerocopy: ZeroCopyPolicy = "auto",
) -> tuple[SocketStream, SocketStream]:
    """A connected (client, server) pair of trio_uring streams; ``zerocopy`` is the client's."""
    listener = tsocket.socket()
    with listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = tsocket.socket()
        await client.connect(listener.getsockname())
        server, _ = await listener.accept()
    return SocketStream(client, zerocopy=zerocopy), SocketStream(server)
