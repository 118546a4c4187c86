"""A plain ASGI app served by hypercorn's trio worker on trio_uring.

Run it in-process on io_uring::

    python examples/hypercorn_app.py --bind 127.0.0.1:8000

or with hypercorn's command line (importing this module calls
``trio_uring.install()``, so the ``trio.run`` of hypercorn's trio worker uses
io_uring too)::

    hypercorn --worker-class trio examples.hypercorn_app:app

hypercorn wraps its listening sockets with ``trio.socket.from_stdlib_socket``, so
under trio_uring every accept, receive and send of the server is an io_uring SQE.

Routes: ``GET /`` says hello and names the I/O backend; ``POST /echo`` returns
the request body; ``GET /stats`` returns the ring's counters as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

import trio_uring

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

trio_uring.install()


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI application."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path == "/echo" and method == "POST":
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await _respond(send, 200, bytes(body), b"application/octet-stream")
    elif path == "/stats" and method == "GET":
        body = json.dumps(attrs.asdict(trio.lowlevel.current_statistics().io_statistics)).encode()
        await _respond(send, 200, body, b"application/json")
    elif path == "/" and method == "GET":
        backend = trio.lowlevel.current_statistics().io_statistics.backend
        await _respond(send, 200, f"hello from trio on {backend}\n".encode(), b"text/plain")
    else:
        await _respond(send, 404, b"not found\n", b"text/plain")


async def serve(
    bind: str,
    *,
    shutdown_trigger: Callable[..., Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve :func:`app` on ``bind`` (``host:port``); ``task_status`` gets the bound URLs."""
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve

    config = Config()
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = None
    await hypercorn_serve(
        app,  # type: ignore[arg-type]
        config,
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
        mode="asgi",
    )


async def _main(bind: str) -> None:
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(serve, bind)
        backend = trio.lowlevel.current_statistics().io_statistics.backend
        print(json.dumps({"urls": urls, "backend": backend}), flush=True)


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is Ctrl-C: a ``KeyboardInterrupt``, alone or in the exception
    groups trio's nurseries wrap it in (``except KeyboardInterrupt`` misses those)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    group = getattr(exc, "exceptions", None)  # a BaseExceptionGroup
    return bool(group) and all(interrupted(e) for e in group)


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C, which prints one line and gives exit status 130 (128 + SIGINT,
    what a shell reports for a program Ctrl-C ended), no traceback."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1:8000", help="host:port (port 0: any)")
    args = parser.parse_args(argv)
    try:
        trio_uring.run(_main, args.bind)
    except BaseException as exc:
        if not interrupted(exc):
            raise
        print("stopped (Ctrl-C)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
