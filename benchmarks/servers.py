"""Benchmark servers: ``python benchmarks/servers.py VARIANT [--port P] [--mode echo|bulk] ...``.

The trio and trio_uring variants are the package's own (``trio_uring.bench._servers``,
the same code ``python -m trio_uring bench`` runs); this file adds the asyncio
ones.  Each server prints one JSON "ready" line (port, pid, backend) on stdout
once it listens, then serves until killed.

    echo: every connection echoes what it receives.
    bulk: every connection is sent ``--chunk``-byte chunks (send_all / write +
          drain) until the peer goes away.

New variants: add a :class:`trio_uring.bench._variants.Variant` to ``ASYNCIO_VARIANTS``
(or to ``TRIO_VARIANTS`` in the package) with the modules it needs in
``requires``; a variant whose module is missing is skipped with a note.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Coroutine
from typing import Any, cast

from trio_uring.bench import (
    TRIO_VARIANTS,
    Variant,
    pin_cpu,
    ready_line,
    run_trio_server,
    server_arg_parser,
)

ASYNCIO_VARIANTS: tuple[Variant, ...] = (
    Variant("asyncio-streams", "asyncio.start_server, reader.read + writer.write/drain"),
    Variant("asyncio-protocol", "asyncio Protocol, transport.write in data_received"),
    Variant("uvloop-streams", "asyncio streams on uvloop", requires=("uvloop",)),
    Variant("uvloop-protocol", "asyncio Protocol on uvloop", requires=("uvloop",)),
)

ALL_VARIANTS: tuple[Variant, ...] = TRIO_VARIANTS + ASYNCIO_VARIANTS


async def _stream_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


def _stream_bulk(chunk: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    data = b"x" * chunk

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(data)
                await writer.drain()
        writer.close()

    return handler


class _EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class _BulkProtocol(asyncio.Protocol):
    def __init__(self, chunk: int) -> None:
        self.data = b"x" * chunk
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is no subclass
        self._fill()

    def _fill(self) -> None:
        # write() calls pause_writing() synchronously once the buffer passes the high-water mark
        while not self.paused and not self.transport.is_closing():
            self.transport.write(self.data)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._fill()


async def _serve_asyncio(kind: str, host: str, port: int, mode: str, chunk: int) -> None:
    loop = asyncio.get_running_loop()
    server: asyncio.AbstractServer
    if kind == "streams":
        handler = _stream_echo if mode == "echo" else _stream_bulk(chunk)
        server = await asyncio.start_server(handler, host, port, backlog=4096)
    else:
        factory: Callable[[], asyncio.Protocol] = (
            _EchoProtocol if mode == "echo" else (lambda: _BulkProtocol(chunk))
        )
        server = await loop.create_server(factory, host, port, backlog=4096)
    sock = server.sockets[0]
    backend = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
    ready_line(sock.getsockname()[1], backend)
    async with server:
        await server.serve_forever()


def run_asyncio_server(variant: str, host: str, port: int, mode: str, chunk: int) -> None:
    kind = variant.split("-", 1)[1]
    main: Coroutine[Any, Any, None] = _serve_asyncio(kind, host, port, mode, chunk)
    if variant.startswith("uvloop"):
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


def main(argv: list[str] | None = None) -> int:
    args = server_arg_parser([v.name for v in ALL_VARIANTS]).parse_args(argv)
    pin_cpu(args.cpu)
    runner = run_trio_server if args.variant in {v.name for v in TRIO_VARIANTS} else None
    with contextlib.suppress(KeyboardInterrupt):
        (runner or run_asyncio_server)(args.variant, args.host, args.port, args.mode, args.chunk)
    return 0


if __name__ == "__main__":
    sys.exit(main())
