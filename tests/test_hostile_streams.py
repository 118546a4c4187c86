"""SocketStream / SocketListener against hostile (yet legal) callers (issue 19).

* ``send_all`` holds one export of the caller's buffer for the whole call: a task
  that resizes the buffer meanwhile gets ``BufferError``, the peer gets exactly the
  original bytes (finding 2);
* ``send_all`` stops with ``ClosedResourceError`` once another task closed
  ``stream.socket``, and sends nothing into the fd number's next owner (finding 8);
* a zero-copy send never acts on an fd number after its stream was closed, and a
  ``send_all`` blocked in one raises ``ClosedResourceError`` promptly when another
  task closes the stream (findings 4, 5);
* streams and listeners hold no per-run state (finding 6).
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator

import pytest
import trio
import trio.testing
from trio import socket as tsocket

import trio_uring
from tests._child import run_child
from tests._pairs import tcp_socketpair, tcp_stream_pair
from tests.conftest import assert_idle, run_on_epoll
from trio_uring._net._listener import SocketListener
from trio_uring._net._streams import (
    ZEROCOPY_THRESHOLD,
    SocketStream,
    ZeroCopyPolicy,
)

ZEROCOPY = pytest.mark.needs_kernel("IORING_OP_SEND_ZC", "IORING_SEND_ZC_REPORT_USAGE")


def unix_stream_pair(
    zerocopy: ZeroCopyPolicy,
) -> tuple[SocketStream, socket.socket, socket.socket]:
    """A stream over one end of an AF_UNIX pair (SEND_ZC refused there), that end's
    stdlib socket, and the other end."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return SocketStream(tsocket.from_stdlib_socket(a), zerocopy=zerocopy), a, b


async def drain(sock: socket.socket, n: int) -> bytes:
    """Read ``n`` bytes from a plain non-blocking socket through trio."""
    got = bytearray()
    while len(got) < n:
        await trio.lowlevel.wait_readable(sock)
        try:
            chunk = sock.recv(n - len(got))
        except BlockingIOError:
            continue
        assert chunk, "unexpected EOF"
        got += chunk
    return bytes(got)


class Resizer(trio.abc.Instrument):
    """Before every step of ``task`` while ``armed``, try to shrink ``buf`` (and count)."""

    def __init__(self, task: trio.lowlevel.Task, buf: bytearray) -> None:
        self.task = task
        self.buf = buf
        self.armed = False
        self.refused = 0
        self.resized = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is not self.task or not self.armed:
            return
        try:
            del self.buf[len(self.buf) // 2 :]
        except BufferError:
            self.refused += 1
        else:
            self.resized += 1


# ----------------------------------------------------------------- finding 2
@pytest.mark.parametrize(
    ("zerocopy", "size"),
    [
        ("auto", ZEROCOPY_THRESHOLD * 4),  # SEND_ZC refused on AF_UNIX, then SEND
        ("always", 1000),  # the same with a small buffer
        ("never", 4 * 1024 * 1024),  # plain SEND, parked while the peer reads
        ("auto", 1000),  # the first send's syscall, then SEND for the rest
    ],
)
async def test_send_all_holds_the_buffer_for_the_whole_call(
    zerocopy: ZeroCopyPolicy, size: int
) -> None:
    stream, raw, peer = unix_stream_pair(zerocopy)
    with peer, raw:
        if size < ZEROCOPY_THRESHOLD and zerocopy == "auto":
            # Fill the socket so that the first send's syscall takes only part.
            filler = b"f" * 4096
            filled = 0
            with pytest.raises(BlockingIOError):
                while True:
                    filled += raw.send(filler)
        else:
            filled = 0
        buf = bytearray(os.urandom(size))
        expected = bytes(buf)
        resizer = Resizer(trio.lowlevel.current_task(), buf)
        trio.lowlevel.add_instrument(resizer)
        try:
            async with trio.open_nursery() as nursery:

                async def reader() -> None:
                    got = await drain(peer, filled + size)
                    assert got[filled:] == expected

                nursery.start_soon(reader)
                resizer.armed = True
                try:
                    await stream.send_all(buf)
                finally:
                    resizer.armed = False
        finally:
            trio.lowlevel.remove_instrument(resizer)
        assert resizer.resized == 0
        assert resizer.refused > 0
        assert buf == expected
        buf.append(0)  # free again once send_all returned
        await stream.aclose()
    await assert_idle()


# ----------------------------------------------------------------- finding 8
def same_number_socketpair(fd: int) -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair whose first socket has the number ``fd`` (just closed)."""
    spare: list[socket.socket] = []
    try:
        while True:
            a, b = tcp_socketpair()
            if a.fileno() == fd:
                return a, b
            spare += (a, b)
            assert len(spare) < 64, f"fd {fd} was not reused"
    finally:
        for s in spare:
            s.close()


@pytest.fixture
def reused() -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    yield sockets
    for s in sockets:
        s.close()


def untouched(a: socket.socket, b: socket.socket) -> None:
    """The pair ``a``-``b`` got no byte and was not reset: one byte goes through each way."""
    b.setblocking(False)
    with pytest.raises(BlockingIOError):
        b.recv(1 << 20)
    assert a.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    a.setblocking(True)
    b.setblocking(True)
    a.sendall(b"x")
    assert b.recv(1) == b"x"
    b.sendall(b"y")
    assert a.recv(1) == b"y"


@pytest.mark.parametrize("zerocopy", ["never", "always"])
async def test_send_all_stops_when_another_task_closes_the_socket(
    zerocopy: ZeroCopyPolicy, reused: list[socket.socket]
) -> None:
    if zerocopy == "always":
        from tests.conftest import kernel_lacks

        if kernel_lacks("IORING_OP_SEND_ZC", "IORING_SEND_ZC_REPORT_USAGE"):
            pytest.skip("no SEND_ZC")
    a, b = await tcp_stream_pair(zerocopy)
    fd = a.socket.fileno()
    data = bytearray(8 * 1024 * 1024)  # far more than the socket buffers: b never reads

    async def closer() -> None:
        await trio.testing.wait_all_tasks_blocked()
        a.socket.close()
        reused.extend(same_number_socketpair(fd))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(closer)
            with pytest.raises(trio.ClosedResourceError):
                await a.send_all(data)
    untouched(*reused)
    data.append(0)  # the send let go of the buffer
    await a.aclose()
    await b.aclose()
    await assert_idle()


# ------------------------------------------------------------- findings 4, 5
@ZEROCOPY
@pytest.mark.parametrize("size", [64 * 1024, 8 * 1024 * 1024])
async def test_zerocopy_send_all_raises_closed_promptly(size: int) -> None:
    """64 KiB: the result is in, the notification waits for the peer; 8 MiB: the send
    itself waits for the peer.  Either way aclose() ends it now."""
    a, b = await tcp_stream_pair("always")
    data = bytearray(size)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def closer() -> None:
                await trio.testing.wait_all_tasks_blocked()
                await a.aclose()

            nursery.start_soon(closer)
            with trio.move_on_after(10), pytest.raises(trio.ClosedResourceError):
                await a.send_all(data)
    await b.aclose()


@ZEROCOPY
async def test_cancelled_zerocopy_send_never_resets_the_fds_next_owner(
    reused: list[socket.socket],
) -> None:
    a, b = await tcp_stream_pair("always")
    fd = a.socket.fileno()
    data = bytearray(64 * 1024)  # the result comes; the notification waits for b
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def sender() -> None:
                # (Before the fix the close did not end the send, and the cancel
                # below reset the fd number, by then the new pair's.)
                with scope, pytest.raises(trio.ClosedResourceError):
                    await a.send_all(data)

            async def closer() -> None:
                await trio.testing.wait_all_tasks_blocked()
                await a.aclose()
                reused.extend(same_number_socketpair(fd))
                scope.cancel()

            nursery.start_soon(sender)
            nursery.start_soon(closer)
    untouched(*reused)
    await b.aclose()


@ZEROCOPY
@pytest.mark.parametrize("size", [64 * 1024, 8 * 1024 * 1024])
async def test_lowlevel_send_zc_closed_by_another_task(
    size: int, reused: list[socket.socket]
) -> None:
    """``trio_uring.lowlevel``'s zero-copy send on a trio socket that another task
    closes: ClosedResourceError at once, and the fd's next owner is never reset."""
    from trio_uring._ops._zerocopy import send_zc

    c, s = tcp_socketpair()
    c.setblocking(False)
    sock = tsocket.from_stdlib_socket(c)
    fd = sock.fileno()
    data = bytearray(size)
    with s, trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def closer() -> None:
                await trio.testing.wait_all_tasks_blocked()
                sock.close()
                reused.extend(same_number_socketpair(fd))
                scope.cancel()

            nursery.start_soon(closer)
            with scope, pytest.raises(trio.ClosedResourceError):
                await send_zc(sock, data, 0x100)  # MSG_WAITALL
        untouched(*reused)


@ZEROCOPY
def test_zerocopy_close_survives_dev_mode_and_gc() -> None:
    run_child(
        """
        import gc, os, socket
        import trio, trio.testing, trio_uring
        from trio import socket as tsocket
        from trio_uring import SocketStream

        async def main():
            for size in (64 * 1024, 8 * 1024 * 1024):
                lst = socket.socket()
                lst.bind(("127.0.0.1", 0))
                lst.listen()
                c = socket.create_connection(lst.getsockname())
                s, _ = lst.accept()
                lst.close()
                c.setblocking(False)
                a = SocketStream(tsocket.from_stdlib_socket(c), zerocopy="always")
                data = bytearray(os.urandom(size))
                async with trio.open_nursery() as nursery:
                    async def closer():
                        await trio.testing.wait_all_tasks_blocked()
                        await a.aclose()
                    nursery.start_soon(closer)
                    try:
                        with trio.fail_after(5):
                            await a.send_all(data)
                    except trio.ClosedResourceError:
                        pass
                    else:
                        raise AssertionError("send_all did not raise")
                del data, a
                gc.collect()
                s.close()

        trio_uring.run(main)
        gc.collect()
        print("ok")
        """,
    )


# ----------------------------------------------------------------- finding 6
def test_stream_works_across_runs() -> None:
    c, s = tcp_socketpair()
    c.setblocking(False)
    s.setblocking(False)
    a = SocketStream(tsocket.from_stdlib_socket(c))
    b = SocketStream(tsocket.from_stdlib_socket(s))

    async def exchange(tag: bytes) -> None:
        with trio.fail_after(5):
            await a.send_all(tag * 1000)
            got = b""
            while len(got) < 1000 * len(tag):
                got += await b.receive_some()
            assert got == tag * 1000
            big = bytearray(tag * 40000)  # above the zero-copy threshold
            async with trio.open_nursery() as nursery:
                nursery.start_soon(a.send_all, big)
                got = b""
                while len(got) < len(big):
                    got += await b.receive_some()
            assert got == big
            await b.send_all(b"r")
            assert await a.receive_some() == b"r"
            with tempfile.TemporaryFile() as f:
                f.write(tag * 3000)
                f.flush()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(a.send_file, f)
                    got = b""
                    while len(got) < 3000 * len(tag):
                        got += await b.receive_some()
                assert got == tag * 3000

    trio_uring.run(exchange, b"1")
    trio_uring.run(exchange, b"2")
    run_on_epoll(lambda: exchange(b"3"))
    trio_uring.run(exchange, b"4")

    async def close() -> None:
        await a.aclose()
        await b.aclose()

    trio_uring.run(close)


def test_listener_works_across_runs() -> None:
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen()
    raw.setblocking(False)
    listener = SocketListener(tsocket.from_stdlib_socket(raw))
    address = raw.getsockname()

    async def one_connection(tag: bytes) -> None:
        with trio.fail_after(5):
            client = tsocket.socket()
            with client:
                await client.connect(address)
                server = await listener.accept()
                await client.send(tag)
                assert await server.receive_some() == tag
                await server.send_all(tag)
                assert await client.recv(10) == tag
                await server.aclose()

    trio_uring.run(one_connection, b"1")
    trio_uring.run(one_connection, b"2")
    run_on_epoll(lambda: one_connection(b"3"))
    trio_uring.run(one_connection, b"4")

    # Connections a multishot accepted in one run are handed out in the next.
    clients = [socket.create_connection(address) for _ in range(2)]
    try:

        async def accept_one() -> SocketStream:
            with trio.fail_after(5):
                return await listener.accept()

        async def check(stream: SocketStream, client: socket.socket, tag: bytes) -> None:
            with trio.fail_after(5):
                await stream.send_all(tag)
                assert client.recv(10) == tag
                await stream.aclose()

        first = trio_uring.run(accept_one)
        second = None

        async def second_on_epoll() -> None:
            nonlocal second
            second = await accept_one()

        run_on_epoll(second_on_epoll)
        assert second is not None
        streams = {first.socket.getpeername(): first, second.socket.getpeername(): second}
        for tag, client in zip((b"5", b"6"), clients, strict=True):
            trio_uring.run(check, streams[client.getsockname()], client, tag)
    finally:
        for client in clients:
            client.close()
    trio_uring.run(listener.aclose)


# ------------------------------------------------------------- KI protection
def test_submit_to_park_paths_are_ki_protected() -> None:
    """Pure build: every function live between writing an SQE and parking is marked
    (trio then defers a Ctrl-C to the park).  Compiled functions run no bytecode."""
    from trio._core._ki import _CODE_KI_PROTECTION_STATUS_WMAP as protected

    from trio_uring._ops import _zerocopy
    from trio_uring._pure import build

    functions = [
        SocketStream.send_all,
        SocketStream._send_zc,
        SocketStream.receive_some,
        SocketStream._wait_queue,
        SocketStream._receive_one,
        SocketStream._arm_recv,
        SocketStream.wait_send_all_might_not_block,
        SocketListener.accept,
        SocketListener._arm,
        SocketListener._accept_one,
        _zerocopy.submit_zc,
        _zerocopy.send_zc,
    ]
    if build() != "pure":
        pytest.skip("compiled build: its functions have no frames to protect")

    def is_protected(function: object) -> bool:
        try:
            return bool(protected[function.__code__])  # type: ignore[attr-defined]
        except KeyError:
            return False

    assert [f.__qualname__ for f in functions if not is_protected(f)] == []


KI_CHILD = """
import signal, socket, sys
import trio, trio_uring
from trio import socket as tsocket
from trio_uring._net._listener import SocketListener
from trio_uring._net._streams import SocketStream
from trio_uring._core import _manager

mode, zerocopy, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
OURS = ("/_streams.py", "/_zerocopy.py", "/_manager.py", "/_operation.py", "/_trio_compat.py")


class Injector:
    # SIGINT at the at-th line event of trio_uring code run by the traced task.
    def __init__(self, at):
        self.at = at
        self.seen = 0
        self.task = None

    def call(self, frame, event, arg):
        if self.task is None or not frame.f_code.co_filename.endswith(OURS):
            return None
        return self.line

    def line(self, frame, event, arg):
        if event == "line" and self.task is not None:
            try:
                task = trio.lowlevel.current_task()
            except RuntimeError:  # the run loop itself
                return self.line
            if task is self.task:
                self.seen += 1
                if self.seen == self.at:
                    self.task = None
                    signal.raise_signal(signal.SIGINT)
        return self.line

    async def traced(self, fn, *args):
        self.task = trio.lowlevel.current_task()
        sys.settrace(self.call)
        try:
            return await fn(*args)
        finally:
            sys.settrace(None)
            self.task = None


def tcp_pair():
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen()
        c = socket.create_connection(lst.getsockname())
        s, _ = lst.accept()
    c.setblocking(False)
    s.setblocking(False)
    return c, s


async def send(inj, data, got):
    c, s = tcp_pair()
    a = SocketStream(tsocket.from_stdlib_socket(c), zerocopy=zerocopy)
    try:
        await a.send_all(b"w")  # (the first send takes the syscall path)

        async def reader():
            while len(got) < 1 + len(data):
                await trio.lowlevel.wait_readable(s)
                try:
                    got.extend(s.recv(1 << 20))
                except BlockingIOError:
                    pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await inj.traced(a.send_all, data)
            nursery.cancel_scope.cancel()
    finally:
        s.close()
        await a.aclose()


async def receive(inj, data, got):
    c, s = tcp_pair()
    a = SocketStream(tsocket.from_stdlib_socket(c))
    try:
        async with trio.open_nursery() as nursery:

            async def writer():
                for chunk in (data[:size // 2], data[size // 2:]):
                    await trio.testing.wait_all_tasks_blocked()
                    s.send(chunk)  # (fits in the socket buffers)

            nursery.start_soon(writer)

            async def three():
                for _ in range(3):
                    got.extend(await a.receive_some())

            await inj.traced(three)
            nursery.cancel_scope.cancel()
    finally:
        s.close()
        await a.aclose()


async def accept(inj, data, got):
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen()
    raw.setblocking(False)
    listener = SocketListener(tsocket.from_stdlib_socket(raw))
    clients = []
    try:
        async with trio.open_nursery() as nursery:

            async def connector():
                for _ in range(3):
                    await trio.testing.wait_all_tasks_blocked()
                    c = tsocket.socket()
                    clients.append(c)
                    await c.connect(raw.getsockname())

            nursery.start_soon(connector)

            async def three():
                for _ in range(3):
                    stream = await listener.accept()
                    got.append(1)
                    await stream.aclose()

            await inj.traced(three)
            nursery.cancel_scope.cancel()
    finally:
        for c in clients:
            c.close()
        await listener.aclose()


import gc, os, trio.testing, warnings

if mode == "accept":
    # A Ctrl-C can land in the caller's frame between accept() returning and its
    # result being stored (a signal is handled at the next bytecode boundary, as
    # with trio's own accept): that stream is closed by the GC, with a warning.
    # What must not happen is an fd leak: checked below.
    warnings.filterwarnings("ignore", category=ResourceWarning)
main = {"send": send, "receive": receive, "accept": accept}[mode]
fds = set(os.listdir("/proc/self/fd"))
at = 1
while True:
    inj = Injector(at)
    data = bytearray(bytes(range(256)) * (size // 256))
    got = bytearray()
    try:
        trio_uring.run(main, inj, data, got)
    except BaseException as exc:
        if isinstance(exc, BaseExceptionGroup):
            rest = exc.split(KeyboardInterrupt)[1]
            assert rest is None, f"line {at}: {exc!r}"
        else:
            assert isinstance(exc, KeyboardInterrupt), f"line {at}: {exc!r}"
    else:
        assert inj.seen < at, f"line {at}: the interrupt got lost"
    if mode == "send":
        sent = bytes(got[1:])
        assert got[:1] in (b"", b"w") and sent == data[: len(sent)], f"line {at}: other bytes"
    elif mode == "receive":
        assert got == data[: len(got)], f"line {at}: other bytes"
    data.append(0)  # released
    assert _manager.lingering() == 0, f"line {at}: {_manager.lingering()} requests left"
    gc.collect()
    assert set(os.listdir("/proc/self/fd")) == fds, f"line {at}: fds leaked"
    if inj.seen < at:
        break
    at += 1
assert at > 10, at
print(at - 1)
"""


@pytest.mark.parametrize(
    ("mode", "zerocopy"),
    [
        ("send", "never"),
        pytest.param("send", "always", marks=ZEROCOPY),
        ("receive", "auto"),
        ("accept", "auto"),
    ],
)
def test_keyboard_interrupt_at_every_line(mode: str, zerocopy: str) -> None:
    """Pure build: SIGINT at each line event of trio_uring code on the path of a
    ``send_all``, ``receive_some`` or ``accept`` ends the run with KeyboardInterrupt
    (never TrioInternalError); the peer gets a prefix of the data, the buffer is
    free afterwards, no request lingers and no fd leaks."""
    from tests._child import child_env

    run_child(
        "",
        args=["-c", KI_CHILD, mode, zerocopy, str(256 * 1024)],
        env=child_env(TRIO_URING_PURE="1"),
        timeout=300,
    )
