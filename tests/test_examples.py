"""The programs in ``examples/``, run as a user runs them: in a child process, on real
sockets, stopped with Ctrl-C (SIGINT) the way a user stops a server."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 60


def _sigint_default() -> None:
    """In the child before exec: Ctrl-C's default action, as a terminal gives it (a shell
    starts background jobs with SIGINT ignored, and Python then installs no handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


Start = Callable[..., tuple[subprocess.Popen[str], str]]


@pytest.fixture
def start() -> Iterator[Start]:
    """Start an example; return it and its first line (printed once it serves).  Any
    still running at the end of the test is killed."""
    procs: list[subprocess.Popen[str]] = []

    def start(*argv: str) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [sys.executable, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_sigint_default,
        )
        procs.append(proc)
        assert proc.stdout is not None
        return proc, proc.stdout.readline()

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _interrupt(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C: SIGINT to a serving example; return its remaining stdout and its stderr."""
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=TIMEOUT)


def _echo_once(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        conn.sendall(b"m" * 64)
        got = b""
        while len(got) < 64:
            got += conn.recv(64)
        assert got == b"m" * 64


@pytest.mark.parametrize("served", [0, 1])
def test_echo_server_ctrl_c_prints_its_figures_and_exits_130(start: Start, served: int) -> None:
    proc, ready = start(str(EXAMPLES / "echo_server.py"), "--port", "0")
    match = re.fullmatch(r"echo server on 127\.0\.0\.1:(\d+) \(io_uring\)\n", ready)
    assert match, ready
    for _ in range(served):
        _echo_once(int(match[1]))
    out, err = _interrupt(proc)
    assert (proc.returncode, err) == (130, ""), err
    if served:
        assert re.match(r"1 messages, [\d.]+ us CPU per message\n", out), out
    else:  # nothing divided by nothing
        assert out == "no messages echoed\n", out


def test_hypercorn_app_ctrl_c_prints_one_line_and_exits_130(start: Start) -> None:
    proc, ready = start(str(EXAMPLES / "hypercorn_app.py"), "--bind", "127.0.0.1:0")
    assert '"backend": "io_uring"' in ready, ready
    out, err = _interrupt(proc)
    assert (proc.returncode, out, err) == (130, "", "stopped (Ctrl-C)\n"), err


def test_static_file_server_ctrl_c_prints_one_line_and_exits_130(
    start: Start, tmp_path: Path
) -> None:
    proc, ready = start(str(EXAMPLES / "static_file_server.py"), str(tmp_path), "--port", "0")
    assert ready.startswith(f"serving {tmp_path}"), ready
    out, err = _interrupt(proc)
    assert (proc.returncode, out, err) == (130, "", "stopped (Ctrl-C)\n"), err


@pytest.mark.needs_kernel("IORING_OP_SEND_ZC", "IORING_SEND_ZC_REPORT_USAGE")
def test_zerocopy_sender_to_a_host_counts_every_notification() -> None:
    """``--host``: every SEND_ZC's notification has arrived when the counts are printed."""
    received = 0
    with socket.create_server(("127.0.0.1", 0)) as server:

        def sink() -> None:
            nonlocal received
            conn, _ = server.accept()
            with conn:
                while chunk := conn.recv(1 << 20):
                    received += len(chunk)

        thread = threading.Thread(target=sink)
        thread.start()
        try:
            proc = subprocess.run(
                [sys.executable, str(EXAMPLES / "zerocopy_sender.py"), "--host", "127.0.0.1",
                 "--port", str(server.getsockname()[1]), "--count", "200"],
                capture_output=True, text=True, timeout=TIMEOUT,
            )  # fmt: skip
        finally:
            thread.join(TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert received == 200 * 65536
    match = re.search(r"SEND_ZC requests: (\d+), notifications: (\d+)", proc.stdout)
    assert match, proc.stdout
    assert int(match[1]) >= 200
    assert match[1] == match[2], proc.stdout
