"""Child process of ``test_ki_injection``: a KeyboardInterrupt at each step of one operation.

``python -X dev tests/_ki_child.py MODE SCENARIO FIRST [LAST]`` runs the operation
``SCENARIO`` once without interruption to record its injection points (a point is
"the k-th time the run reaches this line", or this Instrument hook), then, for
each point from ``FIRST`` (1-based), one ``trio_uring.run`` in which reaching that
point calls ``signal.raise_signal(SIGINT)``, so that trio's own SIGINT handler
decides what happens (deferred to the next checkpoint in a
KeyboardInterrupt-protected frame, raised right there otherwise).  One JSON line
per run (the clean run first, ``"n": 0``).  A crash ends the child; the parent
starts a new one after the failed point.

MODE:

* ``lines``: line events of ``trio_uring``'s own Python code run by the main task
  (the task doing the operation).  Under ``TRIO_URING_PURE=1`` that is every line
  of the operation's path (the hot modules are plain Python); in the compiled
  build only the modules left uncompiled.
* ``dispatch``: line events of ``trio_uring``'s code run by the run loop itself
  (no task running): the ``process_events`` calls that hand out CQEs, and the
  I/O wait that submits and reaps (KeyboardInterrupt-protected, as all of trio's
  run loop: the interrupt must still reach the task).
* ``task-lines``: line events of every Python frame (trio's, attrs', the
  stdlib's, ``trio_uring``'s) run by the main task during the operation: in the
  compiled build these are the only points at which a signal can be handled
  while compiled code is on the stack.
* ``steps``: an Instrument raises the signal at each ``before_task_step`` /
  ``after_task_step`` / ``task_scheduled`` of the main task (every checkpoint and
  wake-up of the operation), and at each ``before_io_wait`` / ``after_io_wait``.

Each run must end with ``KeyboardInterrupt`` out of ``trio_uring.run`` (nothing
else, no hang), leave no operation whose waiter is the task the interrupt
unwound (an orphan: its CQE would reschedule a task that moved on), no stale
waiter (once the peer acts after the interrupt, nothing may wake the task while
it parks on something else), no write
past or after the caller's buffer (a guard pattern after it; its export must be
released once the run is over), nothing an operation the kernel still holds
references given back once the call is left (a trio socket's buffer re-pooled or
released, a ``send_file`` pipe back in its pool, a registered set's in-flight
count), what a peer received a prefix of what was sent, no fd leaked, and no
request of the closed run still held by the kernel (``lingering() == 0``).
"""

from __future__ import annotations

import fcntl
import gc
import json
import os
import signal
import socket
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import outcome
import trio
import trio.testing

import trio_uring
from trio_uring import _sendfile, _trio_sockets, lowlevel
from trio_uring._core import _manager
from trio_uring._core._operation import CANCELLING, SUBMITTED
from trio_uring._core._trio_compat import GLOBAL_RUN_CONTEXT
from trio_uring._ops import _provided
from trio_uring._streams import SocketListener, SocketStream

PKG_DIR = os.path.dirname(trio_uring.__file__) + os.sep
THIS_FILE = os.path.abspath(__file__)
GUARD = 0xA5
PEER = b"\x5a"
PAD = 4096
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


# ------------------------------------------------------------------ injectors
class Injector:
    """Records the injection points of a run while armed; raises SIGINT at ``target``.

    A point is ``(location, k)``: the ``k``-th time the run reaches ``location`` (a
    line of code, or an Instrument hook of the main task).  Naming points this way,
    not by their ordinal, makes every point of the clean run reachable in its own
    run even where the path's length varies a little between runs (the
    notify_closing index grows with the fd numbers the kernel hands out).
    """

    def __init__(self, mode: str, target: tuple[str, int] | None) -> None:
        self.mode = mode
        self.target = target
        self.points: list[tuple[str, int]] = []
        self._seen: dict[str, int] = {}
        self.fired = False
        self.task: Any = None
        self.armed = False

    # -- arming
    def arm(self, task: Any) -> None:
        self.task = task
        self.armed = True
        if self.mode != "steps":
            sys.settrace(self._global)

    def disarm(self) -> None:
        self.armed = False
        self.task = None  # (it holds the Runner, which holds the run's outcome)
        sys.settrace(None)

    def _hit(self, location: str) -> None:
        k = self._seen.get(location, 0) + 1
        self._seen[location] = k
        point = (location, k)
        self.points.append(point)
        if point == self.target and not self.fired:
            self.fired = True
            signal.raise_signal(signal.SIGINT)

    # -- sys.settrace modes
    def _in_main_task(self) -> bool:
        return getattr(GLOBAL_RUN_CONTEXT, "task", None) is self.task

    def _global(self, frame: Any, event: str, arg: Any) -> Any:
        if not self.armed:
            return None
        code = frame.f_code
        filename = code.co_filename
        if filename == THIS_FILE:
            return None
        if self.mode == "task-lines":
            return self._local if self._in_main_task() else None
        if not filename.startswith(PKG_DIR):
            return None
        if self.mode == "lines":
            return self._local if self._in_main_task() else None
        # "dispatch": the run loop itself (no task running), always KI-protected: the
        # CQE dispatch and the I/O wait.  The interrupt must reach the task through
        # its abort, or at its next checkpoint.
        if getattr(GLOBAL_RUN_CONTEXT, "task", None) is None:
            return self._local
        return None

    def _local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line" and self.armed:
            code = frame.f_code
            self._hit(f"{code.co_filename}:{frame.f_lineno} {code.co_name}")
        return self._local

    # -- Instrument mode (trio calls these hooks in the run loop)
    def _step(self, what: str, task: Any) -> None:
        if self.armed and task is self.task:
            self._hit(what)

    def before_task_step(self, task: Any) -> None:
        self._step("before_task_step", task)

    def after_task_step(self, task: Any) -> None:
        self._step("after_task_step", task)

    def task_scheduled(self, task: Any) -> None:
        self._step("task_scheduled", task)

    def before_io_wait(self, timeout: float) -> None:
        if self.armed:
            self._hit("before_io_wait")

    def after_io_wait(self, timeout: float) -> None:
        if self.armed:
            self._hit("after_io_wait")


# ------------------------------------------------------------------- helpers
class Guarded:
    """``view``: ``n`` bytes at the start of a bytearray, a guard pattern after them."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.store = bytearray([GUARD]) * (n + PAD)
        self.view = memoryview(self.store)[:n]

    def check(self, errors: list[str], got: int | None, expect: bytes) -> None:
        try:
            self.view.release()
            self.store.append(0)
            self.store.pop()
        except BufferError:
            errors.append("the buffer is still exported after the run")
        if self.store[self.n :] != bytes([GUARD]) * PAD:
            errors.append("the kernel wrote past the buffer")
        if got is not None and bytes(self.store[:got]) != expect[:got]:
            errors.append(f"received bytes differ from the peer's ({got})")
        rest = self.store[got or 0 : self.n]
        if rest != bytes([GUARD]) * len(rest):
            errors.append("bytes written beyond the reported count")


def read_now(sock: socket.socket, into: bytearray) -> bool:
    """Append what ``sock`` holds now to ``into`` (stdlib, non-blocking); False at EOF/reset."""
    try:
        while chunk := sock.recv(1 << 20):
            into += chunk
        return False
    except BlockingIOError:
        return True
    except OSError:  # reset: a cancelled zero-copy send resets its connection
        return False


async def drain(sock: socket.socket, into: bytearray) -> None:
    """Peer: read everything into ``into`` each time the other tasks block."""
    while True:
        await trio.testing.wait_all_tasks_blocked()
        if not read_now(sock, into):
            return


def fill(sock: socket.socket) -> int:
    """Fill ``sock``'s send buffer (and the peer's receive buffer) with ``b"f"``: the count."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.setblocking(False)
    sent = 0
    try:
        while True:
            sent += sock.send(b"f" * 65536)
    except BlockingIOError:
        return sent


def released(errors: list[str], data: bytearray, what: str = "the caller's buffer") -> None:
    """``data`` must be resizable again: no export of it outlived the call."""
    try:
        data.append(0)
        data.pop()
    except BufferError:
        errors.append(f"{what} is still exported after the run")


def given_back(manager: Any) -> list[str]:
    """Memory an operation the kernel may still act on references, given back already.

    (Test-only look inside.)  A trio socket's receive buffer back in its pool or
    released through ``ffi``, a ``send_file`` pipe back in the run's pool.
    """
    held = [op for op in manager._ops.values() if op.state in (SUBMITTED, CANCELLING)]
    bad = []
    for op in held:
        if op.keep is not None and any(op.keep is p for p in _trio_sockets._pool):
            bad.append(f"{op}'s buffer re-pooled")
        if op.keep is not None and any(op.keep is r for r in RELEASED):
            bad.append(f"{op}'s buffer released")
    try:
        pool = _sendfile._POOL.get()
    except LookupError:  # (no send_file in this run)
        return bad
    busy = {op.fd for op in held}
    if any(p.w in busy or p.r in busy for p in pool.free):
        bad.append("a pipe with a splice in the kernel went back to the pool")
    return bad


class _ReleaseSpy:
    """Stands in for ``ffi`` in the trio sockets module: remembers what it released."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def release(self, cdata: Any) -> None:
        RELEASED.append(cdata)
        self.real.release(cdata)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


RELEASED: list[Any] = []
_trio_sockets.ffi = _ReleaseSpy(_trio_sockets.ffi)  # type: ignore[attr-defined]


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def pair(kind: str = "unix") -> tuple[socket.socket, socket.socket]:
    if kind == "unix":
        a, b = socket.socketpair()
    else:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            a = socket.create_connection(listener.getsockname())
            b, _ = listener.accept()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


# ----------------------------------------------------------------- scenarios
class Scenario:
    """One operation: ``start`` (untraced set-up in the run), ``op`` (traced), ``peer``."""

    def __init__(self) -> None:
        self.closers: list[Callable[[], object]] = []
        self.result: Any = None
        self.fired = False  # (set before check(): the run was interrupted)

    async def start(self) -> None:
        pass

    async def op(self) -> None:
        raise NotImplementedError

    async def peer(self) -> None:
        pass

    def poke(self) -> None:
        """After an interrupt: what the peer would have done once the operation parked."""

    def settled(self, errors: list[str]) -> None:
        """Right after the operation returned or raised, before anything else ran."""

    def finish(self) -> None:
        """In the run, once the operation returned or raised (no checkpoint)."""

    def check(self, errors: list[str]) -> None:
        pass

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()

    def sockets(self, kind: str = "unix") -> tuple[socket.socket, socket.socket]:
        a, b = pair(kind)
        self.closers += [a.close, b.close]
        return a, b


class _RecvBase(Scenario):
    data = PEER * 100

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = self.sockets()

    async def peer(self) -> None:
        await trio.testing.wait_all_tasks_blocked()
        self.b.send(self.data)

    def poke(self) -> None:
        self.b.send(self.data)

    def check(self, errors: list[str]) -> None:
        if self.result is not None and self.result != self.data:
            errors.append(f"received {self.result!r:.60}")


class LowlevelRecv(_RecvBase):
    async def op(self) -> None:
        self.result = await lowlevel.recv(self.a, 1000)


class SocketRecv(_RecvBase):
    async def start(self) -> None:
        self.ts = trio.socket.from_stdlib_socket(self.a)

    async def op(self) -> None:
        self.result = await self.ts.recv(1000)


class SocketRecvLarge(SocketRecv):
    """Above the pool's buffer size: a buffer allocated (and freed) per call."""

    async def op(self) -> None:
        self.result = await self.ts.recv(100_000)


class StreamReceiveSome(_RecvBase):
    async def start(self) -> None:
        self.stream = SocketStream(trio.socket.from_stdlib_socket(self.a))

    async def op(self) -> None:
        self.result = await self.stream.receive_some(1000)


class LowlevelRecvmsg(_RecvBase):
    async def op(self) -> None:
        self.result = (await lowlevel.recvmsg(self.a, 1000, 64))[0]


class SocketRecvDgram(_RecvBase):
    """A datagram socket: the receive buffer comes from the module's pool."""

    size = 1000

    def __init__(self) -> None:
        Scenario.__init__(self)
        self.a, self.b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.closers += [self.a.close, self.b.close]

    async def start(self) -> None:
        self.ts = trio.socket.from_stdlib_socket(self.a)

    async def op(self) -> None:
        self.result = await self.ts.recv(self.size)


class SocketRecvDgramLarge(SocketRecvDgram):
    """Above the pool's buffer size: a buffer allocated (and released) per call."""

    size = 100_000


class StreamReceiveSomeQueued(Scenario):
    """Three ``receive_some()`` over TCP while the peer sends 256 KiB in two halves,
    each once the task parks: the peer's bytes, in order."""

    size = 1 << 18

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = self.sockets("tcp")
        self.data = bytes(range(256)) * (self.size // 256)
        self.chunks = [self.data[: self.size // 2], self.data[self.size // 2 :]]
        self.got = bytearray()

    async def start(self) -> None:
        self.stream = SocketStream(trio.socket.from_stdlib_socket(self.a))

    async def op(self) -> None:
        for _ in range(3):
            self.got += await self.stream.receive_some()

    async def peer(self) -> None:
        while self.chunks:
            await trio.testing.wait_all_tasks_blocked()
            self.poke()

    def poke(self) -> None:
        if self.chunks:
            self.b.send(self.chunks.pop(0))  # (fits in the socket buffers)

    def check(self, errors: list[str]) -> None:
        if bytes(self.got) != self.data[: len(self.got)]:
            errors.append("received other bytes than a prefix of the peer's")


class _RecvIntoBase(_RecvBase):
    data = PEER * 1500

    def __init__(self) -> None:
        super().__init__()
        self.buf = Guarded(1000)

    def check(self, errors: list[str]) -> None:
        self.buf.check(errors, self.result, self.data)


class LowlevelRecvInto(_RecvIntoBase):
    async def op(self) -> None:
        self.result = await lowlevel.recv_into(self.a, self.buf.view)


class SocketRecvInto(_RecvIntoBase):
    async def start(self) -> None:
        self.ts = trio.socket.from_stdlib_socket(self.a)

    async def op(self) -> None:
        self.result = await self.ts.recv_into(self.buf.view)


class _SendBase(Scenario):
    """A send into a full socket (``fill``): the peer drains it once the task parks.

    The peer must receive the fill, then a prefix of the data (all of it, or the
    count returned, when not interrupted), and the data's export must be released.
    """

    size = 65536
    kind = "unix"

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = self.sockets(self.kind)
        self.data = bytearray(bytes(range(256)) * (self.size // 256))
        self.head = b""  # what was sent before the operation
        self.got = bytearray()

    async def start(self) -> None:
        self.head = b"f" * fill(self.a)

    async def peer(self) -> None:
        await drain(self.b, self.got)

    def expected(self) -> bytes:
        return bytes(self.data)

    def check(self, errors: list[str]) -> None:
        released(errors, self.data)
        read_now(self.b, self.got)
        head, sent = bytes(self.got[: len(self.head)]), bytes(self.got[len(self.head) :])
        if head != self.head[: len(head)] or sent != self.expected()[: len(sent)]:
            errors.append("the peer received other bytes than a prefix of the data")
        elif not self.fired:
            count = self.result if isinstance(self.result, int) else len(self.expected())
            if len(sent) != count:
                errors.append(f"the peer received {len(sent)} bytes, not {count}")


class LowlevelSend(_SendBase):
    async def op(self) -> None:
        self.result = await lowlevel.send(self.a, self.data)


class SocketSend(_SendBase):
    async def start(self) -> None:
        await super().start()
        self.ts = trio.socket.from_stdlib_socket(self.a)

    async def op(self) -> None:
        self.result = await self.ts.send(self.data)


class StreamSendAll(_SendBase):
    size = 1 << 18
    zerocopy: Any = "never"

    async def start(self) -> None:
        await super().start()
        self.stream = SocketStream(trio.socket.from_stdlib_socket(self.a), zerocopy=self.zerocopy)

    async def op(self) -> None:
        await self.stream.send_all(self.data)


class StreamSendAllTcp(StreamSendAll):
    """Over TCP, the socket not full: the peer reads as the send goes on.  The first
    ``send_all`` of a stream (untraced) takes the syscall path; the traced one is the
    second."""

    kind = "tcp"

    async def start(self) -> None:
        self.stream = SocketStream(trio.socket.from_stdlib_socket(self.a), zerocopy=self.zerocopy)
        await self.stream.send_all(b"w")
        self.head = b"w"


class LowlevelSendZc(_SendBase):
    kind = "tcp"

    async def op(self) -> None:
        self.result = await lowlevel.send_zc(self.a, self.data)


class StreamSendAllZc(StreamSendAll):
    kind = "tcp"
    zerocopy = "always"


class StreamSendFile(_SendBase):
    """``send_file`` of a 64 KiB file into a full socket: SPLICEs through a pipe."""

    size = 1 << 16

    def __init__(self) -> None:
        super().__init__()
        fd, path = tempfile.mkstemp(prefix="ki-")
        os.write(fd, b"F" * self.size)
        os.close(fd)
        self.file_fd = os.open(path, os.O_RDONLY)
        os.unlink(path)
        self.closers.append(lambda: os.close(self.file_fd))

    async def start(self) -> None:
        await super().start()
        self.stream = SocketStream(trio.socket.from_stdlib_socket(self.a), zerocopy="never")

    async def op(self) -> None:
        self.result = await self.stream.send_file(self.file_fd)

    def expected(self) -> bytes:
        return b"F" * self.size


class StreamSendFilePipe(_SendBase):
    """``send_file(count=10)`` from an empty pipe the peer writes to once the task parks:
    the splice waits for the pipe, not the socket."""

    size = 10

    def __init__(self) -> None:
        super().__init__()
        self.r, self.w = os.pipe()
        self.closers += [lambda: os.close(self.r), lambda: os.close(self.w)]

    async def start(self) -> None:
        self.stream = SocketStream(trio.socket.from_stdlib_socket(self.a), zerocopy="never")

    async def op(self) -> None:
        self.result = await self.stream.send_file(self.r, count=self.size)

    async def peer(self) -> None:
        await trio.testing.wait_all_tasks_blocked()
        self.poke()
        await drain(self.b, self.got)

    def poke(self) -> None:
        os.write(self.w, b"x" * self.size)

    def expected(self) -> bytes:
        return b"x" * self.size


class _PipeBase(Scenario):
    def __init__(self) -> None:
        super().__init__()
        self.r, self.w = os.pipe()
        self.closers += [lambda: os.close(self.r), lambda: os.close(self.w)]


class LowlevelReadPipe(_PipeBase):
    data = PEER * 100

    async def op(self) -> None:
        self.result = await lowlevel.read(self.r, 1000)

    async def peer(self) -> None:
        await trio.testing.wait_all_tasks_blocked()
        os.write(self.w, self.data)

    def poke(self) -> None:
        os.write(self.w, self.data)

    def check(self, errors: list[str]) -> None:
        if self.result is not None and self.result != self.data:
            errors.append(f"read {self.result!r:.60}")


class LowlevelReadintoPipe(LowlevelReadPipe):
    data = PEER * 1500

    def __init__(self) -> None:
        super().__init__()
        self.buf = Guarded(1000)

    async def op(self) -> None:
        self.result = await lowlevel.readinto(self.r, self.buf.view)

    def check(self, errors: list[str]) -> None:
        self.buf.check(errors, self.result, self.data)


class LowlevelReadFixedPipe(LowlevelReadPipe):
    """A registered buffer: the set counts its in-flight operations until their CQE."""

    data = PEER * 1500

    def __init__(self) -> None:
        super().__init__()
        self.buf = Guarded(1000)

    async def start(self) -> None:
        self.registered = lowlevel.register_buffers([self.buf.view])

    async def op(self) -> None:
        self.result = await lowlevel.read_fixed(self.r, self.registered, 0)

    def settled(self, errors: list[str]) -> None:
        # (Test-only look inside.)  While the kernel may still read into the set, it
        # counts that operation.
        manager = lowlevel.current_manager()
        held = [op for op in manager._ops.values() if op.state in (SUBMITTED, CANCELLING)]
        if any(op.fd == self.r for op in held) and not self.registered._in_flight:
            errors.append("the registered set's in-flight count given back too early")

    def finish(self) -> None:
        # Refused while the set counts an operation in flight: none may be left.
        self.registered.unregister()

    def check(self, errors: list[str]) -> None:
        self.buf.check(errors, self.result, self.data)


class LowlevelWritePipe(_PipeBase):
    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray(b"w" * 65536)

    async def start(self) -> None:
        fcntl.fcntl(self.w, F_SETPIPE_SZ, 4096)
        os.set_blocking(self.w, False)
        try:
            while True:
                os.write(self.w, b"f" * 4096)
        except BlockingIOError:
            pass
        os.set_blocking(self.w, True)
        os.set_blocking(self.r, False)

    async def op(self) -> None:
        self.result = await lowlevel.write(self.w, self.data)

    async def peer(self) -> None:
        while True:
            await trio.testing.wait_all_tasks_blocked()
            try:
                while os.read(self.r, 1 << 16):
                    pass
            except BlockingIOError:
                pass

    def check(self, errors: list[str]) -> None:
        released(errors, self.data)


class FileWritePipe(LowlevelWritePipe):
    """``AsyncBinaryFile.write`` into a full pipe (an fd the file does not own): three
    partial writes, each once the peer drained the 4 KiB pipe."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray(b"w" * 10_000)

    async def start(self) -> None:
        await super().start()
        self.f: Any = await trio_uring.open_file(self.w, "wb", closefd=False)

    async def op(self) -> None:
        self.result = await self.f.write(self.data)


class _FileBase(Scenario):
    def __init__(self) -> None:
        super().__init__()
        fd, self.path = tempfile.mkstemp(prefix="ki-")
        os.write(fd, b"r" * 8192)
        os.close(fd)
        self.closers.append(lambda: os.unlink(self.path))


class OpenFileRead(_FileBase):
    async def start(self) -> None:
        self.f = await trio_uring.open_file(self.path, "rb", buffering=0)
        self.closers.append(lambda: os.close(self.f.fileno()) if not self.f.closed else None)

    async def op(self) -> None:
        self.result = await self.f.read(4096)

    def check(self, errors: list[str]) -> None:
        if self.result is not None and self.result != b"r" * 4096:
            errors.append(f"read {self.result!r:.60}")


class OpenFileWrite(_FileBase):
    async def start(self) -> None:
        self.f: Any = await trio_uring.open_file(self.path, "r+b", buffering=0)
        self.closers.append(lambda: os.close(self.f.fileno()) if not self.f.closed else None)

    async def op(self) -> None:
        self.result = await self.f.write(bytearray(b"W" * 4096))


class _ListenerBase(Scenario):
    def __init__(self) -> None:
        super().__init__()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.listener.setblocking(False)
        self.addr = self.listener.getsockname()
        self.closers.append(self.listener.close)

    def keep(self, sock: Any) -> None:
        if isinstance(sock, socket.socket):
            self.closers.append(sock.close)
        else:  # a trio socket: its close() needs a run
            self.closers.append(lambda: os.close(sock.detach()))


class LowlevelAccept(_ListenerBase):
    async def op(self) -> None:
        conn, _ = await lowlevel.accept(self.listener)
        self.keep(conn)

    async def peer(self) -> None:
        await trio.testing.wait_all_tasks_blocked()
        client = socket.socket()
        self.keep(client)
        client.setblocking(False)
        client.connect_ex(self.addr)


class SocketAccept(LowlevelAccept):
    async def start(self) -> None:
        self.tl = trio.socket.from_stdlib_socket(self.listener)

    async def op(self) -> None:
        conn, _ = await self.tl.accept()
        self.keep(conn)


class LowlevelConnect(_ListenerBase):
    async def start(self) -> None:
        self.client = socket.socket()
        self.client.setblocking(False)
        self.keep(self.client)

    async def op(self) -> None:
        await lowlevel.connect(self.client, self.addr)


class SocketConnect(_ListenerBase):
    async def start(self) -> None:
        self.client = trio.socket.socket()
        self.keep(self.client)

    async def op(self) -> None:
        await self.client.connect(self.addr)


class ListenerAccept(_ListenerBase):
    """Three ``SocketListener.accept`` while a peer connects (trio sockets) once the task
    parks; each stream is closed in the run."""

    async def start(self) -> None:
        self.sl = SocketListener(trio.socket.from_stdlib_socket(self.listener))

    async def op(self) -> None:
        for _ in range(3):
            stream = await self.sl.accept()
            await stream.aclose()

    async def peer(self) -> None:
        for _ in range(3):
            await trio.testing.wait_all_tasks_blocked()
            client = trio.socket.socket()
            self.keep(client)
            await client.connect(self.addr)

    def poke(self) -> None:
        client = socket.socket()
        self.keep(client)
        client.setblocking(False)
        client.connect_ex(self.addr)


SCENARIOS: dict[str, type[Scenario]] = {
    "lowlevel.recv": LowlevelRecv,
    "lowlevel.recv_into": LowlevelRecvInto,
    "lowlevel.send": LowlevelSend,
    "socket.recv": SocketRecv,
    "socket.recv-large": SocketRecvLarge,
    "socket.recv_into": SocketRecvInto,
    "socket.send": SocketSend,
    "stream.send_all": StreamSendAll,
    "stream.receive_some": StreamReceiveSome,
    "stream.send_file": StreamSendFile,
    "lowlevel.read": LowlevelReadPipe,
    "lowlevel.readinto": LowlevelReadintoPipe,
    "lowlevel.write": LowlevelWritePipe,
    "lowlevel.read_fixed": LowlevelReadFixedPipe,
    "file.read": OpenFileRead,
    "file.write": OpenFileWrite,
    "lowlevel.accept": LowlevelAccept,
    "socket.accept": SocketAccept,
    "lowlevel.connect": LowlevelConnect,
    "socket.connect": SocketConnect,
    "lowlevel.send_zc": LowlevelSendZc,
    "stream.send_all-zc": StreamSendAllZc,
    # (from the former KeyboardInterrupt tests of test_hostile_sockets/files/streams)
    "lowlevel.recvmsg": LowlevelRecvmsg,
    "socket.recv-dgram": SocketRecvDgram,
    "socket.recv-dgram-large": SocketRecvDgramLarge,
    "stream.send_all-tcp": StreamSendAllTcp,
    "stream.receive_some-queued": StreamReceiveSomeQueued,
    "stream.send_file-pipe": StreamSendFilePipe,
    "file.write-pipe": FileWritePipe,
    "listener.accept": ListenerAccept,
}


# ------------------------------------------------------------------- one run
async def wake_when_idle(task: Any) -> None:
    """Wake ``task`` with ``"idle"`` once every other task is blocked."""
    await trio.testing.wait_all_tasks_blocked()
    trio.lowlevel.reschedule(task, outcome.Value("idle"))


def one_run(
    mode: str, name: str, target: tuple[str, int] | None
) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    """One ``trio_uring.run`` of scenario ``name``, interrupted at ``target`` (None: never).

    Returns the report and the injection points the run went through.
    """
    gc.collect()  # (the last run's garbage holds fds: keep each run's fd numbers alike)
    fds = open_fds()
    sc = SCENARIOS[name]()
    inj = Injector(mode, target)
    errors: list[str] = []
    state: dict[str, Any] = {}

    async def main() -> None:
        # The run's shared provided-buffer ring is made on first use (thousands of
        # lines registering buffers): make it now, outside the traced operation.
        _provided.stream_ring(lowlevel.current_manager())
        await sc.start()
        trio.lowlevel.spawn_system_task(sc.peer)
        manager = lowlevel.current_manager()
        me = trio.lowlevel.current_task()

        def settled() -> None:
            errors.extend(given_back(manager))
            sc.settled(errors)

        inj.arm(me)
        try:
            await sc.op()
        except KeyboardInterrupt:
            inj.disarm()
            settled()
            # The interrupt left the operation: nothing may still wait for this task.
            orphans = [op for op in list(manager._ops.values()) if op.task is me]
            if orphans:
                errors.append(f"orphaned operation(s) {orphans} after KeyboardInterrupt")
            # Whatever the interrupted operation left armed now gets its event: a stale
            # waiter would be woken while this task waits for something else, and a
            # request left in the kernel writes into its buffer.
            sc.poke()
            trio.lowlevel.spawn_system_task(wake_when_idle, me)
            got = await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
            if got != "idle":
                errors.append(f"the interrupted task was woken by a stale waiter ({got!r})")
            raise
        else:
            inj.disarm()
            settled()
        finally:
            inj.disarm()
            try:
                sc.finish()
            except Exception as exc:
                errors.append(f"clean-up in the run failed: {exc!r}")
        state["done"] = True
        # A KeyboardInterrupt deferred by a protected frame is delivered here at the latest.
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()

    outcome = "returned"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            trio_uring.run(main, instruments=[inj] if mode == "steps" else [])
        except KeyboardInterrupt:
            outcome = "KeyboardInterrupt"
        except BaseException as exc:
            outcome = "".join(traceback.format_exception(exc))[-3000:]
        finally:
            inj.disarm()
        gc.collect()
    for w in caught:
        if issubclass(w.category, (ResourceWarning, RuntimeWarning)) and "coroutine" not in str(
            w.message
        ):
            errors.append(f"{w.category.__name__}: {w.message}")
    if inj.fired and outcome != "KeyboardInterrupt":
        errors.append(f"run ended with {outcome}, not KeyboardInterrupt")
    elif not inj.fired and outcome != "returned":
        errors.append(f"uninterrupted run ended with {outcome}")
    sc.fired = inj.fired
    sc.check(errors)
    sc.close()
    gc.collect()
    leaked = open_fds() - fds
    if leaked:
        errors.append(f"fd(s) leaked: {sorted(leaked)}")
    # (Checked once the sockets are closed: a zero-copy send's notification, which the
    # run's close does not wait for, comes when the kernel frees the data it pinned.)
    left = _manager.lingering()
    if left:
        errors.append(f"{left} request(s) of the closed run still held by the kernel")
    report = {
        "fired": inj.fired,
        "where": f"{target[0]} #{target[1]}" if target else "",
        "count": len(inj.points),
        "done": state.get("done", False),
        "lingering": left,
        "errors": errors,
    }
    return report, inj.points


def main() -> None:
    """``MODE SCENARIO FIRST [LAST]``: the clean run, then points FIRST..LAST (1-based)."""
    mode, name, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
    last = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    # Two clean runs: the first fills the process's caches (kernel probes, the streams'
    # per-ring binding), the second's points are the path every later run takes.
    first_clean, _ = one_run(mode, name, None)
    gc.freeze()  # (what exists now stays: each run's full collection scans only its own objects)
    clean, points = one_run(mode, name, None)
    clean["errors"] += first_clean["errors"]
    print(json.dumps({"n": 0, **clean}), flush=True)
    for n in range(first, (last or len(points)) + 1):
        report, _ = one_run(mode, name, points[n - 1])
        print(json.dumps({"n": n, **report}), flush=True)


if __name__ == "__main__":
    main()
