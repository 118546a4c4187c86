"""A static file server (HTTP/1.0-ish) whose file bodies go out with ``SocketStream.send_file``.

    python examples/static_file_server.py DIRECTORY [--port 8000] [--host 127.0.0.1]
    curl -o /dev/null http://127.0.0.1:8000/some/file

One request per connection: ``GET`` or ``HEAD``, an optional ``Range: bytes=A-B``
(one range, ``206 Partial Content``), then the connection closes.  Paths are
resolved inside DIRECTORY only.  The body never passes through Python: the
kernel moves it from the page cache into the socket (``IORING_OP_SPLICE``).
Public API only: ``import trio_uring``.
"""

from __future__ import annotations

import argparse
import functools
import mimetypes
import os
import re
import stat
import sys
import urllib.parse
from pathlib import Path

import trio

import trio_uring

MAX_HEAD = 16384
RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


async def read_head(stream: trio_uring.SocketStream) -> bytes | None:
    """The request head (up to the blank line), or None if the client went away."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf and b"\n\n" not in buf:
        if len(buf) > MAX_HEAD:
            return None
        data = await stream.receive_some()
        if not data:
            return None
        buf += data
    return bytes(buf)


def response_head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.0 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def send_error(stream: trio_uring.SocketStream, status: str) -> None:
    body = f"{status}\n".encode()
    head = response_head(status, {"Content-Type": "text/plain", "Content-Length": str(len(body))})
    await stream.send_all(head + body)


def resolve(root: Path, target: str) -> Path | None:
    """The file ``target`` names under ``root``, or None if it points outside it."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
    candidate = (root / path.lstrip("/")).resolve()
    if candidate != root and root not in candidate.parents:
        return None
    if candidate.is_dir():
        candidate = candidate / "index.html"
    return candidate


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """``(offset, count)`` for one ``bytes=A-B`` range, or None if it is not satisfiable."""
    match = RANGE.match(value.strip())
    if match is None or match[1] == match[2] == "":
        return None
    if match[1] == "":  # the last B bytes
        count = min(int(match[2]), size)
        return size - count, count
    start = int(match[1])
    end = min(int(match[2]), size - 1) if match[2] else size - 1
    if start >= size or end < start:
        return None
    return start, end - start + 1


async def handle(root: Path, stream: trio_uring.SocketStream) -> None:
    async with stream:
        try:
            head = await read_head(stream)
            if head is None:
                return
            request_line, *header_lines = head.decode("latin-1").splitlines()
            parts = request_line.split()
            if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                await send_error(stream, "405 Method Not Allowed")
                return
            headers = {}
            for line in header_lines:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            path = resolve(root, parts[1])
            if path is None:
                await send_error(stream, "403 Forbidden")
                return
            try:
                f = await trio_uring.open_file(path, "rb")
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                await send_error(stream, "404 Not Found")
                return
            except PermissionError:
                await send_error(stream, "403 Forbidden")
                return
            async with f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    await send_error(stream, "404 Not Found")
                    return
                size = st.st_size
                offset, count, status = 0, size, "200 OK"
                out = {
                    "Content-Type": mimetypes.guess_type(path.name)[0]
                    or "application/octet-stream",
                    "Accept-Ranges": "bytes",
                }
                if "range" in headers:
                    wanted = parse_range(headers["range"], size)
                    if wanted is None:
                        out = {"Content-Range": f"bytes */{size}", "Content-Length": "0"}
                        await stream.send_all(response_head("416 Range Not Satisfiable", out))
                        return
                    offset, count = wanted
                    status = "206 Partial Content"
                    out["Content-Range"] = f"bytes {offset}-{offset + count - 1}/{size}"
                out["Content-Length"] = str(count)
                await stream.send_all(response_head(status, out))
                if parts[0] == "GET":
                    sent = await stream.send_file(f, offset=offset, count=count)
                    if sent < count:  # the file shrank meanwhile: the client sees a short body
                        return
        except trio.BrokenResourceError:
            pass  # the client went away


async def main(root: Path, host: str, port: int) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(
                trio_uring.serve_tcp, functools.partial(handle, root), port, host=host
            )
        )
        bound = listeners[0].socket.getsockname()
        print(f"serving {root} on http://{bound[0]}:{bound[1]}/", flush=True)


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is Ctrl-C: a ``KeyboardInterrupt``, alone or in the exception
    groups trio's nurseries wrap it in (``except KeyboardInterrupt`` misses those)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    group = getattr(exc, "exceptions", None)  # a BaseExceptionGroup
    return bool(group) and all(interrupted(e) for e in group)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    trio_uring.run(main, args.directory.resolve(), args.host, args.port)


if __name__ == "__main__":
    try:
        cli()
    except BaseException as exc:
        if not interrupted(exc):
            raise
        # One line and exit status 130 (128 + SIGINT, what a shell reports for a
        # program Ctrl-C ended), no traceback.
        print("stopped (Ctrl-C)", file=sys.stderr)
        sys.exit(130)
