"""SocketStream.send_file: ranges, file kinds, every path, errors, cancellation accounting."""

from __future__ import annotations

import errno
import os
import random
import socket as stdsocket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

import trio_uring
from tests._pairs import tcp_stream_pair
from tests.conftest import assert_idle, open_fds, run_on_epoll
from trio_uring._net import _sendfile
from trio_uring._net._streams import SocketStream
from trio_uring._run import _info

SIZE = 3 * 1024 * 1024 + 12345  # more than one pipe's worth, not a multiple of a page
MARK = b"--MARK--"


@pytest.fixture(params=["splice", "sendfile", "read"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test that takes this runs once per path (the fallbacks forced by the switch)."""
    monkeypatch.setattr(
        _sendfile, "force_path", None if request.param == "splice" else request.param
    )
    yield request.param


def _data(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, bytes]:
    data = _data(SIZE)
    p = tmp_path / "payload.bin"
    p.write_bytes(data)
    return p, data


@pytest.fixture
async def pair() -> AsyncIterator[tuple[SocketStream, SocketStream]]:
    a, b = await tcp_stream_pair()
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


def _small_buffers(a: SocketStream, b: SocketStream) -> None:
    """Make the connection fill up long before a pipe's worth (1 MiB) is in flight."""
    a.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, 32768)
    b.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_RCVBUF, 32768)


async def _receive(b: SocketStream, n: int) -> bytes:
    """Up to ``n`` bytes from the peer's socket: one RECV per call (not the stream's
    multishot receive, which can miss a reset: see the note in ``test_cancel_at_random_points``);
    ``BrokenResourceError`` for a reset connection."""
    try:
        return await b.socket.recv(n)
    except OSError as exc:
        raise trio.BrokenResourceError(exc) from exc


async def _receive_all(b: SocketStream, into: bytearray) -> bool:
    """Read until EOF (True) or a broken connection (False)."""
    try:
        while data := await _receive(b, 65536):
            into += data
    except trio.BrokenResourceError:
        return False
    return True


async def _until_waiting_to_write() -> None:
    """Until a task waits for a socket to become writable (the splice path: not while a
    splice into its pipe is still in flight)."""
    for _ in range(100_000):
        await trio.testing.wait_all_tasks_blocked()
        if trio.lowlevel.current_statistics().io_statistics.tasks_waiting_write:
            return
    raise AssertionError("nobody waits to write")


async def _send_and_receive(
    a: SocketStream, b: SocketStream, file: object, **kwargs: int | None
) -> tuple[int, bytes]:
    got = bytearray()
    result: list[int] = []

    async def sender() -> None:
        result.append(await a.send_file(file, **kwargs))  # type: ignore[arg-type]
        await a.send_all(MARK)
        await a.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        assert await _receive_all(b, got)
    assert got.endswith(MARK)
    return result[0], bytes(got[: -len(MARK)])


# ------------------------------------------------------------------ ranges and sizes
RANGES = [
    (0, None),
    (0, 1),
    (1, 1000),
    (4095, 4097),
    (100, SIZE - 100),
    (SIZE - 1, None),
    (SIZE - 10, 10),
    (1 << 20, 1 << 20),
]


@pytest.mark.parametrize(("offset", "count"), RANGES)
async def test_ranges(
    path: str, payload: tuple[Path, bytes], pair: tuple[SocketStream, SocketStream],
    offset: int, count: int | None,
) -> None:  # fmt: skip
    p, data = payload
    a, b = pair
    fd = os.open(p, os.O_RDONLY)
    try:
        n, got = await _send_and_receive(a, b, fd, offset=offset, count=count)
    finally:
        os.close(fd)
    want = data[offset:] if count is None else data[offset : offset + count]
    assert n == len(want)
    assert got == want


@pytest.mark.parametrize(("offset", "count"), [(SIZE, None), (SIZE, 10), (SIZE + 4096, None)])
async def test_offset_at_or_beyond_eof_sends_nothing(
    path: str, payload: tuple[Path, bytes], pair: tuple[SocketStream, SocketStream],
    offset: int, count: int | None,
) -> None:  # fmt: skip
    p, _ = payload
    a, b = pair
    with open(p, "rb") as f:
        with trio.testing.assert_checkpoints():
            assert await a.send_file(f, offset=offset, count=count) == 0
        n, got = await _send_and_receive(a, b, f, offset=offset, count=count)
    assert (n, got) == (0, b"")


async def test_eof_before_count(
    path: str, payload: tuple[Path, bytes], pair: tuple[SocketStream, SocketStream]
) -> None:
    p, data = payload
    a, b = pair
    with open(p, "rb") as f:
        n, got = await _send_and_receive(a, b, f, offset=SIZE - 5000, count=1 << 30)
    assert n == 5000
    assert got == data[-5000:]


async def test_count_zero_is_a_checkpoint(
    path: str, payload: tuple[Path, bytes], pair: tuple[SocketStream, SocketStream]
) -> None:
    p, _ = payload
    a, b = pair
    with open(p, "rb") as f:
        with trio.testing.assert_checkpoints():
            assert await a.send_file(f, count=0) == 0
        n, got = await _send_and_receive(a, b, f, count=0)
    assert (n, got) == (0, b"")


async def test_large_file_byte_exact(
    path: str, tmp_path: Path, pair: tuple[SocketStream, SocketStream]
) -> None:
    data = _data(8 << 20, seed=8)
    p = tmp_path / "big.bin"
    p.write_bytes(data)
    a, b = pair
    with open(p, "rb") as f:
        n, got = await _send_and_receive(a, b, f)
    assert n == len(data)
    assert got == data


async def test_many_small_files_in_a_row(
    tmp_path: Path, pair: tuple[SocketStream, SocketStream]
) -> None:
    """Back-to-back calls on one stream stay in order (the pooled pipe is reused empty)."""
    files = [_data(n, seed=n) for n in (1, 100, 4096, 70000, 3)]
    paths = []
    for i, d in enumerate(files):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_bytes(d)
    a, b = pair
    got = bytearray()

    async def sender() -> None:
        for p in paths:
            with open(p, "rb") as f:
                await a.send_file(f)
            await a.send_all(b"|")
        await a.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        assert await _receive_all(b, got)
    assert bytes(got) == b"".join(d + b"|" for d in files)
    assert _sendfile._POOL.get().free  # the pipe went back to the pool


# ------------------------------------------------------------------ file kinds
KINDS = ["fd", "python", "python-raw", "trio", "trio_uring", "wrapped-only"]


class _WrappedOnly:
    """Has no fileno() itself, only ``.wrapped`` (as a wrapper of a raw file would)."""

    def __init__(self, wrapped: object) -> None:
        self.wrapped = wrapped


@pytest.mark.parametrize("kind", KINDS)
async def test_every_file_kind(
    path: str, kind: str, payload: tuple[Path, bytes], pair: tuple[SocketStream, SocketStream]
) -> None:
    """Each accepted file kind works, and the file's position does not move."""
    p, data = payload
    a, b = pair
    if kind == "fd":
        fd = os.open(p, os.O_RDONLY)
        os.lseek(fd, 7, os.SEEK_SET)
        try:
            n, got = await _send_and_receive(a, b, fd, offset=10, count=100000)
            assert os.lseek(fd, 0, os.SEEK_CUR) == 7
        finally:
            os.close(fd)
    elif kind in ("python", "python-raw", "wrapped-only"):
        with open(p, "rb", buffering=0 if kind == "python-raw" else -1) as f:
            assert f.read(7) == data[:7]
            file = _WrappedOnly(f) if kind == "wrapped-only" else f
            n, got = await _send_and_receive(a, b, file, offset=10, count=100000)
            assert f.tell() == 7
            assert f.read(3) == data[7:10]
    elif kind == "trio":
        async with await trio.open_file(p, "rb") as tf:
            assert await tf.read(7) == data[:7]
            n, got = await _send_and_receive(a, b, tf, offset=10, count=100000)
            assert await tf.tell() == 7
    else:
        async with await trio_uring.open_file(p, "rb") as uf:
            assert await uf.read(7) == data[:7]
            n, got = await _send_and_receive(a, b, uf, offset=10, count=100000)
            assert await uf.tell() == 7
            assert await uf.read(3) == data[7:10]
    assert n == 100000
    assert got == data[10:100010]


async def test_pipe_input_to_eof(path: str, pair: tuple[SocketStream, SocketStream]) -> None:
    """A non-blocking pipe is read from where it is until its writer closes it."""
    data = _data(1_500_000, seed=3)
    r, w = os.pipe()
    os.set_blocking(r, False)
    a, b = pair
    got = bytearray()
    result: list[int] = []

    async def writer() -> None:
        async with trio.lowlevel.FdStream(w) as out:
            for i in range(0, len(data), 100_000):
                await out.send_all(data[i : i + 100_000])

    async def sender() -> None:
        result.append(await a.send_file(r))
        await a.send_eof()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            nursery.start_soon(sender)
            assert await _receive_all(b, got)
    finally:
        os.close(r)
    assert result == [len(data)]
    assert got == data


async def test_pipe_input_with_count(path: str, pair: tuple[SocketStream, SocketStream]) -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"0123456789")
        a, b = pair
        n, got = await _send_and_receive(a, b, r, count=4)
        assert (n, got) == (4, b"0123")
        assert os.read(r, 100) == b"456789"  # a pipe is consumed: the rest is still there
    finally:
        os.close(r)
        os.close(w)


async def test_socket_input(path: str, pair: tuple[SocketStream, SocketStream]) -> None:
    left, right = stdsocket.socketpair()
    with left, right:
        left.sendall(b"from a socket")
        left.shutdown(stdsocket.SHUT_WR)
        a, b = pair
        n, got = await _send_and_receive(a, b, right)
    assert (n, got) == (13, b"from a socket")


async def test_dev_zero_with_count(path: str, pair: tuple[SocketStream, SocketStream]) -> None:
    a, b = pair
    with open("/dev/zero", "rb") as f:
        n, got = await _send_and_receive(a, b, f, count=1_300_000)
    assert n == 1_300_000
    assert got == bytes(1_300_000)


# ------------------------------------------------------------------ bad arguments, errors
async def test_bad_arguments_raise_at_a_checkpoint(
    payload: tuple[Path, bytes], pair: tuple[SocketStream, SocketStream], tmp_path: Path
) -> None:
    p, _ = payload
    a, _b = pair
    f = open(p, "rb")  # closed below, to test a closed file
    try:
        bad: list[tuple[type[BaseException], dict[str, object]]] = [
            (TypeError, {"file": "a path is not a file"}),
            (TypeError, {"file": 1.5}),
            (TypeError, {"file": f, "offset": "0"}),
            (TypeError, {"file": f, "count": 2.0}),
            (ValueError, {"file": f, "offset": -1}),
            (ValueError, {"file": f, "count": -1}),
            (ValueError, {"file": -3}),
            (OverflowError, {"file": f, "offset": 1 << 63}),
        ]
        for exc, kwargs in bad:
            file = kwargs.pop("file")
            with trio.testing.assert_checkpoints(), pytest.raises(exc):
                await a.send_file(file, **kwargs)  # type: ignore[arg-type]
    finally:
        f.close()
    with trio.testing.assert_checkpoints(), pytest.raises(ValueError):
        await a.send_file(f)  # a closed Python file
    uf = await trio_uring.open_file(p, "rb")
    await uf.aclose()
    with trio.testing.assert_checkpoints(), pytest.raises(trio.ClosedResourceError):
        await a.send_file(uf)  # a closed trio_uring file (ClosedFileError is a ValueError)
    r, w = os.pipe()
    try:
        with trio.testing.assert_checkpoints(), pytest.raises(ValueError, match="seekable"):
            await a.send_file(r, offset=1)
    finally:
        os.close(r)
        os.close(w)


async def test_write_only_file_is_ebadf(
    path: str, tmp_path: Path, pair: tuple[SocketStream, SocketStream]
) -> None:
    a, _b = pair
    with open(tmp_path / "w", "wb") as f:
        f.write(b"data")
        f.flush()
        with trio.testing.assert_checkpoints(), pytest.raises(OSError) as info:
            await a.send_file(f)
    assert info.value.errno == errno.EBADF


async def test_directory_is_eisdir(tmp_path: Path, pair: tuple[SocketStream, SocketStream]) -> None:
    a, _b = pair
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(IsADirectoryError):
            await a.send_file(fd)
    finally:
        os.close(fd)


async def test_closed_fd_is_ebadf(pair: tuple[SocketStream, SocketStream]) -> None:
    a, _b = pair
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        await a.send_file(r)
    assert info.value.errno == errno.EBADF


async def test_closed_stream(payload: tuple[Path, bytes]) -> None:
    p, _ = payload
    a, b = await tcp_stream_pair()
    await a.aclose()
    with open(p, "rb") as f:
        with pytest.raises(trio.ClosedResourceError):
            await a.send_file(f)
    await b.aclose()


async def test_after_send_eof(
    payload: tuple[Path, bytes], pair: tuple[SocketStream, SocketStream]
) -> None:
    p, _ = payload
    a, _b = pair
    await a.send_eof()
    with open(p, "rb") as f, pytest.raises(trio.ClosedResourceError):
        await a.send_file(f)


async def test_closed_while_blocked(
    path: str, payload: tuple[Path, bytes], pair: tuple[SocketStream, SocketStream]
) -> None:
    p, _ = payload
    a, b = pair
    _small_buffers(a, b)
    with open(p, "rb") as f:

        async def closer() -> None:
            await trio.testing.wait_all_tasks_blocked()
            await a.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(closer)
            with pytest.raises(trio.ClosedResourceError):
                await a.send_file(f)


async def test_closed_while_reading_an_empty_pipe(
    path: str, pair: tuple[SocketStream, SocketStream]
) -> None:
    """Closing the stream wakes a ``send_file`` that waits on its file, not its socket."""
    a, _b = pair
    r, w = os.pipe()
    try:

        async def closer() -> None:
            await trio.testing.wait_all_tasks_blocked()
            await a.aclose()

        # (fail_after: a regression would wait on the pipe forever, not fail)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(closer)
                with pytest.raises(trio.ClosedResourceError):
                    await a.send_file(r)
        assert a._send_file_scope is None and not a._sending
    finally:
        os.close(r)
        os.close(w)
    await assert_idle()


async def test_concurrent_sends_are_busy(
    path: str, payload: tuple[Path, bytes], pair: tuple[SocketStream, SocketStream]
) -> None:
    p, _ = payload
    a, b = pair
    _small_buffers(a, b)
    with open(p, "rb") as f:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.send_file, f)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await a.send_all(b"x")
            with pytest.raises(trio.BusyResourceError):
                await a.send_file(f)
            with pytest.raises(trio.BusyResourceError):
                await a.wait_send_all_might_not_block()
            nursery.cancel_scope.cancel()


async def test_send_file_during_send_all_is_busy(
    payload: tuple[Path, bytes], pair: tuple[SocketStream, SocketStream]
) -> None:
    p, _ = payload
    a, b = pair
    _small_buffers(a, b)
    with open(p, "rb") as f:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.send_all, b"y" * (8 << 20))
            await trio.testing.wait_all_tasks_blocked()
            with trio.testing.assert_no_checkpoints(), pytest.raises(trio.BusyResourceError):
                await a.send_file(f)
            nursery.cancel_scope.cancel()


async def test_peer_closed_is_broken(path: str, payload: tuple[Path, bytes]) -> None:
    p, _ = payload
    a, b = await tcp_stream_pair()
    await b.aclose()
    try:
        with open(p, "rb") as f:
            with pytest.raises(trio.BrokenResourceError) as info:
                for _ in range(100):  # the first bytes may be queued before the RST comes back
                    await a.send_file(f)
        assert isinstance(info.value.__cause__, OSError)
        assert info.value.__cause__.errno in (errno.EPIPE, errno.ECONNRESET)
    finally:
        await a.aclose()


# ------------------------------------------------------------------ cancellation
async def test_cancelled_before_anything_moved(
    path: str, payload: tuple[Path, bytes], pair: tuple[SocketStream, SocketStream]
) -> None:
    """Cancelled at the first checkpoint: nothing sent, the stream goes on cleanly."""
    p, data = payload
    a, b = pair
    with open(p, "rb") as f:
        with trio.CancelScope() as scope:
            scope.cancel()
            await a.send_file(f)
        assert scope.cancelled_caught
        n, got = await _send_and_receive(a, b, f, count=1000)
    assert (n, got) == (1000, data[:1000])


async def test_cancelled_with_a_full_socket(
    path: str, payload: tuple[Path, bytes], pair: tuple[SocketStream, SocketStream]
) -> None:
    """The peer does not read: cancelled while waiting for room.  On the splice path the
    pipe still holds bytes the socket cannot take, so the connection is reset; the
    other paths hold nothing back and the stream goes on after the prefix."""
    p, data = payload
    a, b = pair
    _small_buffers(a, b)
    with open(p, "rb") as f:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.send_file, f)
            if path == "splice":
                await _until_waiting_to_write()
            else:  # a send in flight (read path), or a readiness wait: either will do
                await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    got = bytearray()
    if path == "splice":
        with pytest.raises(trio.BrokenResourceError):
            await a.send_all(MARK)
        assert not await _receive_all(b, got)  # ECONNRESET after some prefix
        assert got == data[: len(got)]
    else:

        async def finish() -> None:
            await a.send_all(MARK)
            await a.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(finish)
            assert await _receive_all(b, got)
        assert got.endswith(MARK)
        assert got[: -len(MARK)] == data[: len(got) - len(MARK)]


@pytest.mark.parametrize("seed", range(12))
async def test_cancel_at_random_points(path: str, payload: tuple[Path, bytes], seed: int) -> None:
    """The receiver cancels the sender once it has a random number of bytes: the peer then
    holds exactly a prefix of the range (no byte twice, none out of order), and the stream
    is either usable (the next bytes follow the prefix) or broken."""
    p, data = payload
    rng = random.Random(seed)
    offset = rng.choice([0, 1, 4096, 12345])
    cut = rng.randrange(0, SIZE - offset)
    a, b = await tcp_stream_pair()
    if rng.random() < 0.5:
        _small_buffers(a, b)
    got = bytearray()
    state: dict[str, object] = {}
    scope = trio.CancelScope()

    async def sender() -> None:
        with scope:
            state["sent"] = await a.send_file(fd, offset=offset)
        try:
            await a.send_all(MARK)
            await a.send_eof()
        except trio.BrokenResourceError:
            state["broken"] = True

    async def receiver() -> None:
        # (Through the stream's multishot receive, small reads here sometimes never
        # see the reset: the socket holds ECONNRESET while its multishot RECV stays
        # pending.  A receive-side problem, reported separately.)
        try:
            while data_ := await _receive(b, rng.choice([1000, 65536])):
                got.extend(data_)
                if len(got) >= cut:
                    scope.cancel()
        except trio.BrokenResourceError:
            state["reset_seen"] = True

    fd = os.open(p, os.O_RDONLY)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            nursery.start_soon(receiver)
    finally:
        os.close(fd)
        await a.aclose()
        await b.aclose()
    want = data[offset:]
    if state.get("broken"):
        assert got == want[: len(got)]
    else:
        assert got.endswith(MARK), (len(got), state)
        body = got[: -len(MARK)]
        assert body == want[: len(body)]
        if "sent" in state:
            assert state["sent"] == len(body) == len(want)
    # the run's pool holds only empty pipes: a fresh call is exact
    a2, b2 = await tcp_stream_pair()
    with open(p, "rb") as f:
        n, got2 = await _send_and_receive(a2, b2, f, offset=5, count=300_000)
    await a2.aclose()
    await b2.aclose()
    assert (n, got2) == (300_000, data[5:300_005])


# ------------------------------------------------------------------ resources, fallbacks
def test_no_fd_leaks_over_a_run(payload: tuple[Path, bytes]) -> None:
    """Pooled pipes are closed when the run ends; cancelled and failed calls close theirs."""
    p, data = payload

    async def main() -> None:
        for i in range(6):
            a, b = await tcp_stream_pair()
            _small_buffers(a, b)
            with open(p, "rb") as f:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(a.send_file, f)
                    if i % 2:  # cancelled with a full socket
                        await trio.testing.wait_all_tasks_blocked()
                    else:  # cancelled half-way
                        got = bytearray()
                        while len(got) < SIZE // 2:
                            got += await _receive(b, 65536)
                    nursery.cancel_scope.cancel()
            await a.aclose()
            await b.aclose()
        # and completed ones
        for _ in range(3):
            a, b = await tcp_stream_pair()
            with open(p, "rb") as f:
                _, got2 = await _send_and_receive(a, b, f, count=200_000)
            assert got2 == data[:200_000]
            await a.aclose()
            await b.aclose()

    before = open_fds()
    trio.run(main)
    assert open_fds() == before


def test_on_trios_epoll_backend(payload: tuple[Path, bytes]) -> None:
    """Outside an io_uring run the stream forwards to trio's, and send_file uses sendfile(2)."""
    p, data = payload

    async def main() -> None:
        a, b = await tcp_stream_pair()
        try:
            with open(p, "rb") as f:
                n, got = await _send_and_receive(a, b, f, offset=3, count=SIZE)
            assert a._compat is not None
            assert _sendfile.path_for(None) == "sendfile"
            assert (n, got) == (SIZE - 3, data[3:])
        finally:
            await a.aclose()
            await b.aclose()
        a, b = await tcp_stream_pair()
        r, w = os.pipe()  # a pipe: the read path, through a worker thread
        os.write(w, b"pipe data")
        os.close(w)
        try:
            assert await _send_and_receive(a, b, r) == (9, b"pipe data")
        finally:
            os.close(r)
            await a.aclose()
            await b.aclose()

    run_on_epoll(main)


def test_send_file_during_a_send_is_busy_on_trios_backend(payload: tuple[Path, bytes]) -> None:
    p, _ = payload

    async def main() -> None:
        a, b = await tcp_stream_pair()
        _small_buffers(a, b)
        try:
            with open(p, "rb") as f:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(a.send_all, b"y" * (8 << 20))
                    await trio.testing.wait_all_tasks_blocked()
                    # Refused by the stream before any byte could move, not only once
                    # it waits for the socket (trio's "already ... writing this fd").
                    with (
                        trio.testing.assert_no_checkpoints(),
                        pytest.raises(trio.BusyResourceError, match="currently sending"),
                    ):
                        await a.send_file(f)
                    nursery.cancel_scope.cancel()
                # The same while another task waits in wait_send_all_might_not_block
                # (the socket is still full: nobody reads).
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(a.wait_send_all_might_not_block)
                    await trio.testing.wait_all_tasks_blocked()
                    with (
                        trio.testing.assert_no_checkpoints(),
                        pytest.raises(trio.BusyResourceError, match="currently sending"),
                    ):
                        await a.send_file(f)
                    nursery.cancel_scope.cancel()
        finally:
            await a.aclose()
            await b.aclose()

    run_on_epoll(main)


def test_info_names_the_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert _info.main() == 0
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("send_file")]
    assert "IORING_OP_SPLICE" in line  # SPLICE is 5.7: every io_uring release we run on has it


def test_file_bench_runs() -> None:
    """The file-serving benchmark runs end to end (not a timing test: any positive rate passes)."""
    from trio_uring.bench import _sendfile as bench

    doc = bench.run_file_bench(1 << 20, quick=True, runs=1)
    assert [e["variant"] for e in doc["summary"]] == ["trio-epoll", "trio-uring", "send_file"]
    for entry in doc["summary"]:
        assert entry["gb_per_s"] > 0 and entry["cpu_ns_per_byte"] >= 0
    assert "send_file" in bench.format_file_bench(doc)
