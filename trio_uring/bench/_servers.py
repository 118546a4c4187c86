"""The benchmark servers, each run in a fresh process (:func:`serve_main`): trio on epoll,
the same trio code under :func:`trio_uring.run`, trio_uring's own streams, trio_uring.lowlevel
ops (:data:`~trio_uring.bench._variants.TRIO_VARIANTS`)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

from ._variants import REQUEST_TIMEOUT, RESPONSE_BODY, RESPONSE_HEAD, TRIO_VARIANTS


def ready_line(port: int, backend: str) -> None:
    """Tell the harness the server listens: one JSON line on stdout."""
    print(json.dumps({"ready": True, "port": port, "pid": os.getpid(), "backend": backend}))
    sys.stdout.flush()


def pin_cpu(cpu: int | None) -> None:
    """Pin this process (and threads it starts later) to ``cpu``; best effort."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


async def trio_echo(stream: Any) -> None:
    import trio

    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        async for data in stream:
            await stream.send_all(data)


async def http_keepalive(stream: Any, timeout: float = REQUEST_TIMEOUT) -> None:
    """A keep-alive HTTP-style handler as trio HTTP servers write it: per request one
    ``receive_some(65536)`` under ``trio.fail_after(timeout)``, then the reply as two
    ``send_all`` calls (:data:`RESPONSE_HEAD`, :data:`RESPONSE_BODY`); it closes the
    stream when the peer does.  The requests are not parsed: the load generator sends
    one small request at a time, which one receive reads whole."""
    import trio

    try:
        while True:
            with trio.fail_after(timeout):
                data = await stream.receive_some(65536)
            if not data:
                break
            await stream.send_all(RESPONSE_HEAD)
            await stream.send_all(RESPONSE_BODY)
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
        pass
    finally:
        await stream.aclose()


async def _trio_bulk(chunk: int, stream: Any) -> None:
    import trio

    data = b"x" * chunk
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while True:
            await stream.send_all(data)


async def _serve_trio_streams(serve_tcp: Any, host: str, port: int, mode: str, chunk: int) -> None:
    import trio

    handler: Any = trio_echo
    if mode == "bulk":
        handler = functools.partial(_trio_bulk, chunk)
    elif mode == "req":
        handler = http_keepalive
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(serve_tcp, handler, port, host=host, backlog=4096)
        )
        backend = trio.lowlevel.current_statistics().io_statistics.backend
        ready_line(listeners[0].socket.getsockname()[1], backend)


async def _serve_lowlevel(host: str, port: int, mode: str, chunk: int) -> None:
    import trio

    from trio_uring import lowlevel

    async def echo(conn: Any) -> None:
        with conn, contextlib.suppress(OSError):
            while True:
                data = await lowlevel.recv(conn, 65536)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    view = view[await lowlevel.send(conn, view) :]

    async def bulk(conn: Any) -> None:
        data = memoryview(b"x" * chunk)
        with conn, contextlib.suppress(OSError):
            while True:
                view = data
                while view:
                    view = view[await lowlevel.send(conn, view) :]

    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    await sock.bind((host, port))
    sock.listen(4096)
    backend = trio.lowlevel.current_statistics().io_statistics.backend
    ready_line(sock.getsockname()[1], backend)
    async with trio.open_nursery() as nursery:
        while True:
            conn, _ = await lowlevel.accept(sock)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            nursery.start_soon(echo if mode == "echo" else bulk, conn)


def run_trio_server(variant: str, host: str, port: int, mode: str, chunk: int) -> None:
    """Serve ``variant`` (one of :data:`TRIO_VARIANTS`) until killed."""
    import trio

    if variant == "trio-epoll":
        trio.run(_serve_trio_streams, trio.serve_tcp, host, port, mode, chunk)
        return
    import trio_uring

    if variant in ("trio-uring", "trio-uring-poll"):
        trio_uring.run(_serve_trio_streams, trio.serve_tcp, host, port, mode, chunk)
    elif variant == "uring-streams":
        from trio_uring._net._highlevel import serve_tcp

        trio_uring.run(_serve_trio_streams, serve_tcp, host, port, mode, chunk)
    elif variant == "uring-lowlevel":
        trio_uring.run(_serve_lowlevel, host, port, mode, chunk)
    else:
        raise SystemExit(f"unknown variant {variant!r}")


def server_arg_parser(variants: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="one benchmark server")
    parser.add_argument("variant", choices=list(variants))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=("echo", "bulk", "req"), default="echo")
    parser.add_argument("--chunk", type=int, default=1 << 20, help="bulk: bytes per send_all")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    return parser


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a server process: ``serve_main([VARIANT, --mode, ...])``."""
    args = server_arg_parser([v.name for v in TRIO_VARIANTS]).parse_args(argv)
    pin_cpu(args.cpu)
    with contextlib.suppress(KeyboardInterrupt):
        run_trio_server(args.variant, args.host, args.port, args.mode, args.chunk)
    return 0


def package_server_cmd(variant: str) -> list[str]:
    """The command line that starts a :data:`TRIO_VARIANTS` server in a fresh interpreter."""
    code = "import sys; from trio_uring.bench._servers import serve_main; sys.exit(serve_main())"
    return [sys.executable, "-c", code, variant]
