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
* ``dispatch``: line events of ``trio_uring``'s code in the run loop's
  ``process_events`` calls that hand out CQEs (KeyboardInterrupt-protected, as
  all of trio's run loop: the interrupt must still reach the task).
* ``task-lines``: line events of every Python frame (trio's, attrs', the
  stdlib's, ``trio_uring``'s) run by the main task during the operation: in the
  compiled build these are the only points at which a signal can be handled
  while compiled code is on the stack.
* ``steps``: an Instrument raises the signal at each ``before_task_step`` /
  ``after_task_step`` / ``task_scheduled`` of the main task (every checkpoint and
  wake-up of the operation).

Each run must end with ``KeyboardInterrupt`` out of ``trio_uring.run`` (nothing
else, no hang), leave no operation whose waiter is the task the interrupt
unwound (an orphan: its CQE would reschedule a task that moved on), no stale
waiter (once the peer acts after the interrupt, nothing may wake the task while
it parks on something else), no write
past or after the caller's buffer (a guard pattern after it; its export must be
released once the run is over), and no request of the closed run still held by
the kernel (``lingering() == 0``).
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
from trio_uring import lowlevel
from trio_uring._core import _manager
from trio_uring._core._trio_compat import GLOBAL_RUN_CONTEXT
from trio_uring._net._streams import SocketStream
from trio_uring._ops import _provided

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
        self._dispatch_depth = 0

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
        # "dispatch": the run loop handing out CQEs (always KI-protected: the interrupt
        # must reach the task through its abort, or at its next checkpoint).
        if code.co_name == "process_events" and frame.f_locals.get("events"):
            self._dispatch_depth += 1
            return self._local_dispatch
        if self._dispatch_depth:
            return self._local
        return None

    def _local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line" and self.armed:
            code = frame.f_code
            self._hit(f"{code.co_filename}:{frame.f_lineno} {code.co_name}")
        return self._local

    def _local_dispatch(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "return":
            self._dispatch_depth -= 1
        self._local(frame, event, arg)
        return self._local_dispatch

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


async def drain(sock: socket.socket) -> None:
    """Peer: read everything (stdlib, non-blocking) each time the other tasks block."""
    while True:
        await trio.testing.wait_all_tasks_blocked()
        try:
            while sock.recv(1 << 20):
                pass
        except BlockingIOError:
            pass
        except OSError:  # reset: a cancelled zero-copy send resets its connection
            return


def fill(sock: socket.socket) -> None:
    """Fill ``sock``'s send buffer (and the peer's receive buffer)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.setblocking(False)
    try:
        while True:
            sock.send(b"f" * 65536)
    except BlockingIOError:
        pass


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

    async def start(self) -> None:
        pass

    async def op(self) -> None:
        raise NotImplementedError

    async def peer(self) -> None:
        pass

    def poke(self) -> None:
        """After an interrupt: what the peer would have done once the operation parked."""

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
    size = 65536
    kind = "unix"

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = self.sockets(self.kind)
        self.data = bytearray(b"s" * self.size)

    async def start(self) -> None:
        fill(self.a)

    async def peer(self) -> None:
        await drain(self.b)


class LowlevelSend(_SendBase):
    async def op(self) -> None:
        self.result = await lowlevel.send(self.a, self.data)


class SocketSend(_SendBase):
    async def start(self) -> None:
        fill(self.a)
        self.ts = trio.socket.from_stdlib_socket(self.a)

    async def op(self) -> None:
        self.result = await self.ts.send(self.data)


class StreamSendAll(_SendBase):
    size = 1 << 18

    async def start(self) -> None:
        fill(self.a)
        self.stream = SocketStream(trio.socket.from_stdlib_socket(self.a), zerocopy="never")

    async def op(self) -> None:
        await self.stream.send_all(self.data)


class LowlevelSendZc(_SendBase):
    kind = "tcp"

    async def op(self) -> None:
        self.result = await lowlevel.send_zc(self.a, self.data)


class StreamSendAllZc(_SendBase):
    kind = "tcp"
    size = 1 << 18

    async def start(self) -> None:
        fill(self.a)
        self.stream = SocketStream(trio.socket.from_stdlib_socket(self.a), zerocopy="always")

    async def op(self) -> None:
        await self.stream.send_all(self.data)


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
        fill(self.a)
        self.stream = SocketStream(trio.socket.from_stdlib_socket(self.a), zerocopy="never")

    async def op(self) -> None:
        self.result = await self.stream.send_file(self.file_fd)

    def check(self, errors: list[str]) -> None:
        if self.result is not None and self.result != self.size:
            errors.append(f"send_file sent {self.result} of {self.size}")


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

    def finish(self) -> None:
        # Refused while the set counts an operation in flight: none may be left.
        self.registered.unregister()

    def check(self, errors: list[str]) -> None:
        self.buf.check(errors, self.result, self.data)


class LowlevelWritePipe(_PipeBase):
    data = b"w" * 65536

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
        inj.arm(me)
        try:
            await sc.op()
        except KeyboardInterrupt:
            inj.disarm()
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
    sc.check(errors)
    sc.close()
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
