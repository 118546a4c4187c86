"""Real servers and clients, unchanged, on trio_uring: hypercorn, trio-websocket, httpx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import assert_idle
from tests.test_trio_sockets import counting_readiness
from trio_uring._net._trio_sockets import UringSocket
from trio_uring.lowlevel import current_manager

httpx = pytest.importorskip("httpx", reason="httpx is not installed (test extra)")
hypercorn_trio = pytest.importorskip("hypercorn.trio", reason="hypercorn is not installed")
trio_websocket = pytest.importorskip("trio_websocket", reason="trio-websocket is not installed")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import hypercorn_app  # noqa: E402


def record_sockets(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every socket wrapped by ``trio.socket.from_stdlib_socket`` from now on.

    Call inside the run: trio_uring routes that name at the start of the first run.
    """
    made: list[Any] = []
    real = trio.socket.from_stdlib_socket

    def recording(sock: Any) -> Any:
        wrapped = real(sock)
        made.append(wrapped)
        return wrapped

    monkeypatch.setattr(trio.socket, "from_stdlib_socket", recording)
    return made


def http_requests(base: str) -> list[tuple[int, bytes]]:
    """A real HTTP/1.1 client (httpx, blocking, keep-alive) in a worker thread."""
    big = os.urandom(300_000)
    with httpx.Client(base_url=base, timeout=10) as client:
        out = [(r.status_code, r.content) for r in (client.get("/"), client.get("/nope"))]
        r = client.post("/echo", content=big)
        out.append((r.status_code, hashlib_sha(r.content) + hashlib_sha(big)))
        r = client.get("/stats")
        out.append((r.status_code, r.content))
    return out


def hashlib_sha(data: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(data).digest()


async def test_hypercorn_in_process_answers_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    manager = current_manager()
    recorded_sockets = record_sockets(monkeypatch)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            lambda task_status: hypercorn_app.serve(
                "127.0.0.1:0", shutdown_trigger=shutdown.wait, task_status=task_status
            )
        )
        listeners = [s for s in recorded_sockets if s.fileno() != -1]
        assert listeners and all(type(s) is UringSocket for s in listeners)
        with counting_readiness(manager) as counter:
            before = manager.statistics().sqes_submitted
            results = await trio.to_thread.run_sync(http_requests, urls[0])
            sqes = manager.statistics().sqes_submitted - before
        assert counter.on({s.fileno() for s in listeners}) == 0
        shutdown.set()
    (s1, hello), (s2, _), (s3, digests), (s4, stats) = results
    assert (s1, hello) == (200, b"hello from trio on io_uring\n")
    assert s2 == 404
    assert s3 == 200 and digests[:32] == digests[32:]
    assert s4 == 200 and json.loads(stats)["backend"] == "io_uring"
    # Whatever had to wait (the accepts, the reads before a request arrived) went
    # through the ring as SQEs, never as readiness waits; the rest completed at once.
    assert sqes >= 2
    await assert_idle()


async def test_trio_websocket_echo_on_uring() -> None:
    manager = current_manager()

    async def handler(request: Any) -> None:
        ws = await request.accept()
        try:
            while True:
                message = await ws.get_message()
                await ws.send_message(message)
        except trio_websocket.ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
        assert all(type(listener.socket) is UringSocket for listener in server._listeners)
        big = os.urandom(1 << 20)
        with counting_readiness(manager) as counter:
            async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
                assert type(ws._stream.socket) is UringSocket
                for message in ("hello", b"\x00binary\xff", "ünïcode", big):
                    await ws.send_message(message)
                    assert await ws.get_message() == message
        # No readiness wait at all: every byte both ways moved as an SQE.
        assert counter.waits == {}
        nursery.cancel_scope.cancel()
    await assert_idle()


def test_example_runs_as_a_program() -> None:
    """``python examples/hypercorn_app.py`` serves on io_uring and answers a raw HTTP client."""
    import socket

    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "hypercorn_app.py"), "--bind", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["backend"] == "io_uring"
        host, port = ready["urls"][0].removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                         b"Connection: close\r\n\r\nuring")  # fmt: skip
            response = b""
            while chunk := conn.recv(65536):
                response += chunk
        assert response.startswith(b"HTTP/1.1 200")
        assert response.endswith(b"\r\n\r\nuring")
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
