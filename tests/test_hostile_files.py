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
import select
import socket as stdsocket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

import trio_uring
from tests._pairs import tcp_stream_pair
from tests.conftest import assert_idle
from trio_uring._net import _sendfile
from trio_uring._net._streams import SocketStream
from trio_uring.lowlevel import current_manager

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


async def _until_socket_full(b: SocketStream, writers: int = 0) -> None:
    """Until the sender put bytes on the wire and every task is blocked: the sender now
    waits for the full socket (not for a splice still in the kernel).  ``writers``:
    also until that many tasks wait for writability (a splice path's sender does)."""
    while True:
        await trio.testing.wait_all_tasks_blocked()
        waiting = current_manager().statistics().tasks_waiting_write
        if select.select([b.socket.fileno()], [], [], 0)[0] and waiting >= writers:
            return


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
                await _until_socket_full(b)
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
                await _until_socket_full(b, writers=2)  # the sender and the feed
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
    a, b = pair
    sock_fd = a.socket.fileno()
    errors: list[BaseException] = []
    with open(public, "rb") as f, trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_then_close, a, f, errors)
            await _until_socket_full(b)
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


# ------------------------------------------- one export per call: finding 9
BUFSIZE = 8192
FIRST = b"F" * 200_000  # more than a pipe holds: the first write parks holding the lock


async def _drain_then_close(r: int, f: trio_uring.AsyncBinaryFile, resizer: _Resizer) -> bytes:
    """Read the pipe until EOF; close ``f`` (flushing it) once the writes are done."""
    got = bytearray()

    async def closer() -> None:
        while not resizer.stop:
            await trio.lowlevel.checkpoint()
        await f.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(closer)
        async with trio.lowlevel.FdStream(os.dup(r)) as reader:
            while data := await reader.receive_some(1 << 20):
                got += data
    return bytes(got)


class _Resizer:
    """Tries to grow (or shrink) ``buf`` at every checkpoint until stopped."""

    def __init__(self, buf: bytearray, grow: bool) -> None:
        self.buf = buf
        self.grow = grow
        self.refused = 0
        self.resized = 0
        self.stop = False
        self.armed = True
        self.tried = trio.Event()

    async def run(self) -> None:
        while not self.stop:
            if not self.armed:
                await trio.lowlevel.checkpoint()
                continue
            try:
                if self.grow:
                    self.buf += b"!" * 1000
                else:
                    del self.buf[1:]
                self.resized += 1
            except BufferError:
                self.refused += 1
            self.tried.set()
            await trio.lowlevel.checkpoint()


@pytest.mark.parametrize("kind", ["buffered", "direct", "raw", "writelines"])
async def test_write_holds_its_buffer_while_it_waits_for_the_file(kind: str) -> None:
    """A write that waits for the file's lock (another write is parked in the kernel)
    already holds ``data``: the resizer gets ``BufferError`` at every checkpoint, and
    the file gets exactly the bytes ``data`` had."""
    size = 100 if kind == "buffered" else 100_000
    data = bytearray(b"d" * size)
    r, w = os.pipe()
    try:
        f = await trio_uring.open_file(w, "wb", buffering=0 if kind == "raw" else BUFSIZE)
        assert isinstance(f, trio_uring.AsyncBinaryFile)
        resizer = _Resizer(data, grow=True)
        written: list[int] = []

        async def first() -> None:
            written.append(await f.write(FIRST))

        async def second() -> None:
            try:
                if kind == "writelines":
                    await f.writelines([b"<", data, b">"])
                    written.append(size + 2)
                else:
                    written.append(await f.write(data))
            finally:
                resizer.stop = True

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(first)
                await trio.testing.wait_all_tasks_blocked()  # parked: the pipe is full
                nursery.start_soon(second)
                await trio.testing.wait_all_tasks_blocked()  # waits for the lock
                nursery.start_soon(resizer.run)
                await resizer.tried.wait()
                got = await _drain_then_close(r, f, resizer)
    finally:
        os.close(r)
    assert resizer.resized == 0 and resizer.refused > 0, vars(resizer)
    first_len, second_len = written
    expected = b"<" + b"d" * size + b">" if kind == "writelines" else b"d" * second_len
    assert got == FIRST[:first_len] + expected
    assert kind == "raw" or first_len == len(FIRST)


async def test_pwrite_holds_its_buffer() -> None:
    """``pwrite`` bypasses the lock; its buffer is held from the start to the end (here
    parked on a full pipe, whose kernel write ignores the offset)."""
    data = bytearray(b"p" * MiB)
    r, w = os.pipe()
    try:
        f = await trio_uring.open_file(w, "wb")
        assert isinstance(f, trio_uring.AsyncBinaryFile)
        resizer = _Resizer(data, grow=False)
        resizer.armed = False

        async def writer() -> None:
            resizer.armed = True  # from here on, every attempt is during the call
            try:
                assert await f.pwrite(data, 0) == MiB
            finally:
                resizer.stop = True

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                nursery.start_soon(resizer.run)
                await resizer.tried.wait()
                got = await _drain_then_close(r, f, resizer)
    finally:
        os.close(r)
    assert resizer.resized == 0 and resizer.refused > 0, vars(resizer)
    assert got == b"p" * MiB


def test_write_of_a_buffer_shrunk_while_waiting_ends() -> None:
    """The shrinking resizer (before the fix: a write that never ended, shielded, at
    85k zero-length SQEs/s) gets ``BufferError``; in a child, a hang is a failure."""
    from tests._child import run_child

    proc = run_child(
        """
        import gc, os
        import trio, trio.testing, trio_uring
        from tests.test_hostile_files import FIRST, _Resizer, _drain_then_close

        async def main():
            data = bytearray(b"d" * 100_000)
            r, w = os.pipe()
            f = await trio_uring.open_file(w, "wb", buffering=8192)
            resizer = _Resizer(data, grow=False)

            async def second():
                try:
                    await f.write(data)
                finally:
                    resizer.stop = True

            async with trio.open_nursery() as nursery:
                nursery.start_soon(f.write, FIRST)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(second)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(resizer.run)
                await resizer.tried.wait()
                got = await _drain_then_close(r, f, resizer)
            os.close(r)
            assert resizer.resized == 0 and resizer.refused > 0, vars(resizer)
            assert got == FIRST + b"d" * 100_000
            print("ok")

        trio_uring.run(main)
        gc.collect()
        """,
        timeout=30,
    )
    assert proc.stdout.strip() == "ok"


# ------------------------------------------------- the __index__ kit: finding 9
_INDEX_KIT = """
import gc, os, sys
import trio, trio_uring
from trio_uring import lowlevel
from trio_uring._ops._registered import read_fixed, register_buffers, write_fixed

path = sys.argv[1]
SIZE = 4096
results = []


class Hostile:
    # An index-like argument whose __index__ runs ``action`` first.
    def __init__(self, value, action):
        self.value, self.action = value, action

    def __index__(self):
        self.action()
        return self.value


def guarded():
    # A SIZE-byte view with a guard pattern after it (the kernel must never reach it).
    big = bytearray(b"G" * (2 * SIZE))
    return big, memoryview(big)[:SIZE]


def check_guard(big):
    assert big[SIZE:] == b"G" * SIZE, "the kernel wrote past the buffer"


def content():
    with open(path, "rb") as f:
        return f.read()


def reset():
    with open(path, "wb") as f:
        f.write(b"x" * (4 * SIZE))


async def case(name, call, allowed, check=None):
    reset()
    try:
        got = await call()
    except allowed as exc:
        got = type(exc).__name__
    except BaseException as exc:
        raise AssertionError(f"{name}: raised {exc!r}") from exc
    if check is not None:
        check(got)
    results.append(f"{name}: {got}")
    gc.collect()


async def main():
    fd = os.open(path, os.O_RDWR)
    f = await trio_uring.open_file(path, "r+b", buffering=0)
    try:
        # lowlevel.readinto: the offset's or the fd's __index__ shrinks or releases the buffer.
        buf = bytearray(SIZE)
        def shrunk_read(n, buf=buf):
            assert 0 <= n <= len(buf) == 16 and buf == b"x" * n, (n, len(buf))
        await case("readinto/offset shrinks", lambda: lowlevel.readinto(
            fd, buf, Hostile(0, lambda: buf.__delitem__(slice(16, None)))),
            (BufferError, ValueError), shrunk_read)
        buf = bytearray(SIZE)
        await case("readinto/fd shrinks", lambda: lowlevel.readinto(
            Hostile(fd, lambda: buf.__delitem__(slice(16, None))), buf, 0),
            (BufferError, ValueError), lambda n, buf=buf: shrunk_read(n, buf))
        big, view = guarded()
        await case("readinto/offset releases", lambda: lowlevel.readinto(
            fd, view, Hostile(0, view.release)), (ValueError,), lambda _: check_guard(big))

        # lowlevel.write and AsyncBinaryFile.pwrite: the offset shrinks or releases ``data``.
        def wrote(n, data):
            assert isinstance(n, str) or (0 <= n <= len(data)), (n, len(data))
            if not isinstance(n, str):
                assert content() == bytes(data[:n]) + b"x" * (4 * SIZE - n)
        data = bytearray(b"y" * SIZE)
        await case("write/offset shrinks", lambda: lowlevel.write(
            fd, data, Hostile(0, lambda: data.__delitem__(slice(16, None)))),
            (BufferError, ValueError), lambda n, data=data: wrote(n, data))
        big, view = guarded()
        await case("write/offset releases", lambda: lowlevel.write(
            fd, view, Hostile(0, view.release)), (ValueError,), lambda n: check_guard(big))
        data = bytearray(b"y" * SIZE)
        await case("pwrite/offset shrinks", lambda: f.pwrite(
            data, Hostile(0, lambda: data.__delitem__(slice(16, None)))),
            (BufferError, ValueError), lambda n, data=data: wrote(n, data))
        big, view = guarded()
        await case("pwrite/offset releases", lambda: f.pwrite(
            view, Hostile(0, view.release)), (ValueError,), lambda n: check_guard(big))

        # Registered buffers: any index-like argument (or fileno()) unregisters the
        # set, tries to resize it, or asks for more than it holds.
        for op in (read_fixed, write_fixed):
            for arg in ("index", "nbytes", "offset", "buf_offset", "fd"):
                for action in ("unregister", "resize", "too_big"):
                    big = bytearray(b"G" * (2 * SIZE))
                    backing = memoryview(big)[:SIZE]
                    reg = register_buffers([backing])
                    def act(action=action, reg=reg, big=big):
                        if action == "unregister":
                            reg.unregister()
                        elif action == "resize":
                            big.extend(b"!")
                    index, nbytes, buf_offset = 0, SIZE, 0
                    if action == "too_big":
                        if arg == "index":
                            index = 1
                        elif arg == "buf_offset":
                            buf_offset, nbytes = SIZE + 1, None
                        else:
                            nbytes = SIZE + 1
                    kwargs = {"nbytes": nbytes, "offset": 0, "buf_offset": buf_offset}
                    target = fd
                    if arg == "index":
                        index = Hostile(index, act)
                    elif arg == "fd":
                        class Fd:
                            def fileno(self, act=act):
                                act()
                                return fd
                        target = Fd()
                    else:
                        kwargs[arg] = Hostile(kwargs[arg] if arg != "offset" else 0, act)
                    def done(n, big=big):
                        assert isinstance(n, str) or 0 <= n <= SIZE, n
                        check_guard(big)
                    try:
                        await case(f"{op.__name__}/{arg} {action}",
                                   lambda: op(target, reg, index, **kwargs),
                                   (BufferError, ValueError, IndexError,
                                    trio.ClosedResourceError), done)
                    finally:
                        reg.unregister()
                    del reg, backing
                    gc.collect()
    finally:
        await f.aclose()
        os.close(fd)


trio_uring.run(main)
gc.collect()
print("\\n".join(results))
"""


def test_index_like_arguments_cannot_move_the_buffer(tmp_path: Path) -> None:
    """For every file function taking a buffer and an index-like argument: an
    ``__index__`` (or ``fileno()``) that resizes or releases the buffer, or unregisters
    a registered set, ends in what CPython's os functions raise, or a transfer inside
    the buffer; never a kernel access past it (guard pattern, ``-X dev``, gc)."""
    from tests._child import run_child

    path = tmp_path / "f"
    path.write_bytes(b"")
    proc = run_child("", args=["-c", _INDEX_KIT, str(path)])
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    # An unregistered set is closed, whichever argument unregistered it.
    for op in ("read_fixed", "write_fixed"):
        for arg in ("index", "nbytes", "offset", "buf_offset", "fd"):
            assert lines[f"{op}/{arg} unregister"] == "ClosedResourceError", lines
            assert lines[f"{op}/{arg} resize"] == "BufferError", lines
            too_big = "IndexError" if arg == "index" else "ValueError"
            assert lines[f"{op}/{arg} too_big"] == too_big, lines
    assert lines["readinto/offset releases"] == "ValueError"
    assert lines["write/offset releases"] == "ValueError"
    assert lines["pwrite/offset releases"] == "ValueError"


# ------------------------------------------ KeyboardInterrupt: finding 3 (files)
_KI_FILES = r"""
import gc, os, signal, socket, sys
import trio, trio.testing, trio_uring
from trio_uring import lowlevel as ll
from trio_uring._net import _sendfile
from trio_uring._core import _manager
from trio_uring._core._operation import SUBMITTED, CANCELLING
from trio_uring._ops._registered import read_fixed, register_buffers
from trio_uring._net._streams import SocketStream

from tests._ki_inject import Injector, StepInjector

if MODE == "lines":
    assert _sendfile.__file__.endswith(".py")


def in_flight():
    # (test-only look inside) requests the kernel may still act on
    return [op for op in ll.current_manager()._ops.values() if op.state in (SUBMITTED, CANCELLING)]


def fill(fd):
    os.set_blocking(fd, False)
    try:
        while True:
            os.write(fd, b"z" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(fd, True)


def drain(fd):
    os.set_blocking(fd, False)
    try:
        while os.read(fd, 1 << 20):
            pass
    except BlockingIOError:
        pass


async def make(op, state):
    # (the call to interrupt, the feeder that completes it, violations(), a final check)
    r, w = os.pipe()
    state["fds"] = [r, w]
    base = bytearray(b"\xa5" * 8192)
    view = memoryview(base)[:4096]
    def guard():
        assert base[4096:] == b"\xa5" * 4096, "guard overwritten"
        view.release()
        base.extend(b"!")  # no export is left
    if op == "ll.readinto":
        return (lambda: ll.readinto(r, view)), (lambda: os.write(w, b"x" * 10)), list, guard
    if op == "ll.write":
        fill(w)
        data = bytearray(b"y" * 100000)
        def check():
            data.extend(b"!")
        return (lambda: ll.write(w, data)), (lambda: drain(r)), list, check
    if op == "file.write":
        fill(w)
        f = await trio_uring.open_file(w, "wb", closefd=False)
        data = bytearray(b"y" * 100000)
        def check():
            data.extend(b"!")
        return (lambda: f.write(data)), (lambda: drain(r)), list, check
    if op == "read_fixed":
        reg = register_buffers([view])
        def violations():
            on_r = [o for o in in_flight() if o.fd == r]
            return ["in_flight given back"] if on_r and not reg._in_flight else []
        def check():
            assert reg._in_flight == 0
            reg.unregister()
            guard()
        return (lambda: read_fixed(r, reg, 0)), (lambda: os.write(w, b"x" * 10)), violations, check
    if op == "send_file":
        a, b = socket.socketpair()
        state["fds"] += [b.detach()]
        stream = SocketStream(trio.socket.from_stdlib_socket(a))
        state["stream"] = stream
        def violations():
            pool = _sendfile._POOL.get(None)
            busy = {o.fd for o in in_flight()}
            if pool is not None and any(p.w in busy or p.r in busy for p in pool.free):
                return ["a pipe with a splice in the kernel went back to the pool"]
            return []
        return (lambda: stream.send_file(r, count=10)), (lambda: os.write(w, b"x" * 10)), violations, None
    raise AssertionError(op)


def one_run(op, at):
    injector = Injector(at) if MODE == "lines" else StepInjector(at)
    state = {}

    async def feeder(feed):
        await trio.testing.wait_all_tasks_blocked()
        injector.armed = False
        feed()

    async def main():
        call, feed, violations, check = await make(op, state)
        state["check"] = check
        trio.lowlevel.spawn_system_task(feeder, feed)
        if MODE == "lines":
            sys.settrace(injector.global_trace)
        else:
            trio.lowlevel.add_instrument(injector)
        injector.armed = True
        try:
            await call()
        except BaseException:
            state["violations"] = violations()
            raise
        finally:
            injector.armed = False
            sys.settrace(None)
        state["violations"] = violations()

    fds_before = set(os.listdir("/proc/self/fd"))
    try:
        trio_uring.run(main)
        outcome = "returned"
    except KeyboardInterrupt:
        outcome = "KeyboardInterrupt"
    if "stream" in state:
        state["stream"].socket._sock.close()
    for fd in state.get("fds", ()):
        os.close(fd)
    assert not state.get("violations"), (op, at, state["violations"])
    if state.get("check"):
        state["check"]()
    assert _manager.lingering() == 0, (op, at, "the kernel still holds requests of a closed run")
    gc.collect()
    leaked = set(os.listdir("/proc/self/fd")) - fds_before
    assert not leaked, (op, at, "leaked fds", leaked)
    assert outcome == ("KeyboardInterrupt" if injector.fired else "returned"), (op, at, outcome)
    return injector.fired, injector.count


for op in OPS:
    fired, lines = one_run(op, 0)
    assert not fired and lines > 2, (op, lines)
    # Every point up to 300 of them; beyond, every k-th (and the last 100 all).
    every = set(range(1, lines + 1, max(1, lines // 300)))
    points = sorted(every | set(range(max(1, lines - 99), lines + 1)))
    injected = sum(one_run(op, at)[0] for at in points)
    assert injected >= len(points) // 2, (op, injected, lines)
    print(op, lines, len(points), injected)
gc.collect()
print("CHILD-OK")
"""

_KI_FILE_OPS = ["ll.readinto", "ll.write", "file.write", "read_fixed", "send_file"]
_PURE = os.environ.get("TRIO_URING_PURE") == "1"


@pytest.mark.skipif(not _PURE, reason="line tracing needs the pure build (TRIO_URING_PURE=1)")
@pytest.mark.parametrize("op", _KI_FILE_OPS)
def test_keyboard_interrupt_at_every_line_of_a_file_operation(op: str) -> None:
    """A KeyboardInterrupt at any traced line of trio_uring's code on a file operation's
    path ends the run with KeyboardInterrupt, and nothing a queued SQE references (a
    buffer, the registered set's in-flight count, a pool pipe) was given back meanwhile;
    no fd leaks, no request outlives the run."""
    from tests._child import child_env, run_child

    code = f"OPS = [{op!r}]\nMODE = 'lines'\n" + _KI_FILES
    proc = run_child(code, env=child_env(TRIO_URING_PURE="1"), timeout=240)
    assert "CHILD-OK" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("op", _KI_FILE_OPS)
def test_keyboard_interrupt_at_every_scheduler_event_of_a_file_operation(op: str) -> None:
    """The same at every task step and I/O wait, in this build."""
    from tests._child import run_child

    proc = run_child(f"OPS = [{op!r}]\nMODE = 'steps'\n" + _KI_FILES, timeout=240)
    assert "CHILD-OK" in proc.stdout, proc.stdout + proc.stderr
