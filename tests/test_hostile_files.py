"""Hostile (but legal) callers of the file APIs and ``send_file`` (issue 19, findings 3, 7, 9).

* ``send_file`` never reads an fd number after its file (or writes one after its
  stream's socket) was closed: another file or connection may own the number by
  then.  It raises ``ClosedResourceError`` instead.
* A call that spans several SQEs over one caller buffer holds one export for the
  whole call: a concurrent resize fails in the resizer with ``BufferError``.
* An ``__index__`` that resizes or releases the buffer never makes the kernel
  touch memory outside it: the call raises what the stdlib raises, or stays inside.
"""

from __future__ import annotations

import os
import socket as stdsocket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

import trio_uring
from tests._pairs import tcp_stream_pair
from tests.conftest import assert_idle
from trio_uring import _sendfile
from trio_uring._streams import SocketStream

MiB = 1 << 20
PUBLIC = b"P"
SECRET = b"S"


# ------------------------------------------------------------------ helpers
@pytest.fixture(params=["splice", "sendfile", "read"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(
        _sendfile, "force_path", None if request.param == "splice" else request.param
    )
    yield request.param


@pytest.fixture
async def pair() -> AsyncIterator[tuple[SocketStream, SocketStream]]:
    a, b = await tcp_stream_pair()
    a.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, 32768)
    b.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_RCVBUF, 32768)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    public = tmp_path / "public.bin"
    public.write_bytes(PUBLIC * (8 * MiB))
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET * (8 * MiB))
    return public, secret


def _take_number(fd: int, path: Path) -> int:
    """Open ``path`` so that it gets the (just closed) number ``fd``, as a later open would."""
    new = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    if new != fd:
        os.dup2(new, fd)
        os.close(new)
    return fd


async def _receive_all(b: SocketStream) -> bytes:
    """Everything the peer gets until EOF or a reset."""
    got = bytearray()
    try:
        while data := await b.socket.recv(65536):
            got += data
    except OSError:
        pass
    return bytes(got)


async def _send_then_close(
    a: SocketStream, file: object, errors: list[BaseException], **kwargs: object
) -> None:
    try:
        await a.send_file(file, **kwargs)  # type: ignore[arg-type]
    except (trio.ClosedResourceError, trio.BrokenResourceError, OSError) as exc:
        errors.append(exc)
    finally:
        await a.aclose()  # the peer sees EOF (or the reset) and stops reading


# ------------------------------------------------------- send_file: finding 7
@pytest.mark.parametrize("owner", ["trio_uring", "stdlib"])
async def test_send_file_stops_when_its_file_is_closed(
    path: str, owner: str, files: tuple[Path, Path], pair: tuple[SocketStream, SocketStream]
) -> None:
    """The socket is full; another task closes the public file and opens a secret one,
    which gets the same number: the peer gets no byte of it, send_file raises
    ``ClosedResourceError``."""
    public, secret = files
    a, b = pair
    if owner == "trio_uring":
        f: object = await trio_uring.open_file(public, "rb")
    else:
        f = open(public, "rb")
    fd = f.fileno()  # type: ignore[attr-defined]
    errors: list[BaseException] = []
    taken = -1
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_send_then_close, a, f, errors)
                await trio.testing.wait_all_tasks_blocked()  # the socket is full
                if owner == "trio_uring":
                    await f.aclose()  # type: ignore[attr-defined]
                else:
                    f.close()  # type: ignore[attr-defined]
                taken = _take_number(fd, secret)
                got = await _receive_all(b)
    finally:
        if taken >= 0:
            os.close(taken)
        if owner == "stdlib":
            f.close()  # type: ignore[attr-defined]
    assert SECRET not in got, f"the peer got {got.count(SECRET)} bytes of the secret file"
    assert got == PUBLIC * len(got)
    assert len(errors) == 1 and type(errors[0]) is trio.ClosedResourceError, errors
    await assert_idle()


async def test_send_file_stops_when_its_pipe_is_closed(
    files: tuple[Path, Path], pair: tuple[SocketStream, SocketStream]
) -> None:
    """The same with a pipe as the source (trio_uring's file over the read end)."""
    _, secret = files
    a, b = pair
    r, w = os.pipe()
    f = await trio_uring.open_file(r, "rb", buffering=0)
    writer = trio.lowlevel.FdStream(w)
    errors: list[BaseException] = []
    taken = -1

    async def feed() -> None:
        try:
            await writer.send_all(PUBLIC * (8 * MiB))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the read end went away

    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                nursery.start_soon(_send_then_close, a, f, errors)
                await trio.testing.wait_all_tasks_blocked()  # socket and pipe full
                await f.aclose()
                taken = _take_number(r, secret)
                got = await _receive_all(b)
                await writer.aclose()
    finally:
        if taken >= 0:
            os.close(taken)
        await writer.aclose()
    assert SECRET not in got, f"the peer got {got.count(SECRET)} bytes of the secret file"
    assert got == PUBLIC * len(got)
    assert len(errors) == 1 and type(errors[0]) is trio.ClosedResourceError, errors
    await assert_idle()


async def test_send_file_waiting_on_an_empty_pipe_ends_at_its_close(
    pair: tuple[SocketStream, SocketStream],
) -> None:
    """The splice waits in the kernel for pipe data; the pipe's ``aclose()`` ends it at
    once with ``ClosedResourceError``, and data written afterwards never reaches the peer."""
    a, b = pair
    r, w = os.pipe()
    f = await trio_uring.open_file(r, "rb", buffering=0)
    errors: list[BaseException] = []
    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_send_then_close, a, f, errors)
                await trio.testing.wait_all_tasks_blocked()  # the splice waits for data
                await f.aclose()
                try:
                    os.write(w, b"late")  # a splice still in the kernel would take it
                except BrokenPipeError:
                    pass  # no reader is left: as it should be
                got = await _receive_all(b)
    finally:
        os.close(w)
    assert got == b""
    assert len(errors) == 1 and type(errors[0]) is trio.ClosedResourceError, errors
    await assert_idle()


async def test_send_file_never_writes_into_a_socket_number_reused_after_close(
    path: str, files: tuple[Path, Path], pair: tuple[SocketStream, SocketStream]
) -> None:
    """``stream.socket.close()`` (not ``aclose``) while send_file waits on the full
    socket, then a new connection gets the number: it receives nothing."""
    public, _ = files
    a, _b = pair
    sock_fd = a.socket.fileno()
    errors: list[BaseException] = []
    with open(public, "rb") as f:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_then_close, a, f, errors)
            await trio.testing.wait_all_tasks_blocked()
            a.socket.close()
            v1, v2 = stdsocket.socketpair()
            with v1, v2:
                if v1.fileno() != sock_fd:
                    os.dup2(v1.fileno(), sock_fd)
                    v1.close()
                try:
                    await trio.testing.wait_all_tasks_blocked()
                    v2.setblocking(False)
                    with pytest.raises(BlockingIOError):
                        leaked = v2.recv(65536)
                        pytest.fail(f"the new connection received {len(leaked)} bytes")
                finally:
                    if v1.fileno() == -1:
                        os.close(sock_fd)
    assert len(errors) == 1 and type(errors[0]) is trio.ClosedResourceError, errors
