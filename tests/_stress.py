"""Randomized cancellation stress for every operation family (run in a child process).

``python -X dev -X faulthandler -m tests._stress FAMILY [--seed N] [--target N]``

runs one family under ``trio_uring.run`` and prints one JSON line with what
happened (see :func:`main`); it exits non-zero if a check failed.  The pytest
side is ``tests/test_cancel_stress.py``: one test per family, each a child
process, so that a segfault (a garbage collection tearing down a buffer that is
still exported, see finding 1) is a named failure.

How it works.  Workers move data through a channel (a socket pair, a pipe, a
stream pair, a file) with randomly chosen operations and buffer types
(``bytes``, ``bytearray``, memoryview slices of a ``bytearray``, ``mmap`` and
memoryview slices of an ``mmap``).  Every operation runs in its own cancel scope
(:meth:`Harness.call`), and most get a cancellation timer of 0-5 loop ticks
(:meth:`Harness.ticker`), so the cancel lands in the tick the operation parked
(before its SQE was submitted), in the kernel, or racing its completion; when
every task is blocked, :meth:`Harness.idle_canceller` cancels one operation
parked in the kernel.  A cancellation counts as *real* only if the operation was
in progress when it was cancelled (or a rare real-clock deadline, which engages a
linked timeout, cancelled it).  Checked:

* no byte lost or duplicated: what a channel's reader got is exactly what its
  writer's results say went (a count; ``Cancelled`` means nothing, except for
  ``SocketStream.send_all`` where it means "an unknown prefix": the connection
  is then closed and the reader must have got the confirmed bytes plus a prefix
  of the cancelled chunk); files are compared with an in-memory model.  A
  cancelled zero-copy send may reset its connection (docs/semantics.rst): the
  reader must then see the reset (or EOF) and have a prefix of what was sent;
* a reader whose writer is done sees EOF (or the reset) within
  :data:`READER_GRACE` seconds: a half-open connection is a violation, not a hang;
* no buffer left locked: after every operation the memoryviews are released,
  the bytearray resized and the mmap closed (a ``BufferError`` is a violation);
* the ring is idle again at the end (``operations_in_flight``), and no fd leaked;
* ``gc.collect()`` every few hundred operations, which is where finding 1 crashes.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import errno
import fcntl
import functools
import gc
import json
import mmap
import os
import random
import socket
import sys
import tempfile
import time
from array import array
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing

import trio_uring
from trio_uring import lowlevel as ll
from trio_uring._net._streams import SocketStream

#: Returned by :meth:`Harness.call` when the operation raised ``Cancelled``.
CANCELLED: Any = object()

READ_ONLY_KINDS = ("bytes", "bytearray", "bytearray_view", "mmap", "mmap_view")
WRITABLE_KINDS = ("bytearray", "bytearray_view", "mmap", "mmap_view")

#: A few operations get a real-clock deadline (a linked timeout) instead of an explicit cancel.
DEADLINE_PROBABILITY = 0.02
DEADLINES = (0.0, 1e-5, 1e-4, 5e-4, 2e-3)
#: Most operations get a cancellation timer of this many loop ticks.
CANCEL_PROBABILITY = 0.6
CANCEL_AFTER_TICKS = (0, 0, 1, 1, 2, 3, 5)
GC_EVERY = 300
F_SETPIPE_SZ = 1031


# ------------------------------------------------------------------ data
def pattern(offset: int, n: int) -> bytes:
    """``n`` bytes of the counter sequence (big-endian u32 0, 1, 2, ...) from ``offset``."""
    if n <= 0:
        return b""
    first, last = offset // 4, (offset + n + 3) // 4
    words = array("I", range(first, last))
    if sys.byteorder == "little":
        words.byteswap()
    raw = words.tobytes()
    start = offset - first * 4
    return raw[start : start + n]


KEEP_FOREVER: list[object] = []  # buffers found locked: never collected, so never crash


class Buf:
    """One buffer of one kind; :meth:`free` releases what must be free after the operation."""

    __slots__ = ("base", "kind", "obj", "size", "views")

    def __init__(self, rng: random.Random, kind: str, data: bytes | None = None, size: int = 0):
        if data is not None:
            size = len(data)
        self.kind = kind
        self.size = size
        self.views: list[memoryview] = []
        pad = rng.randint(0, 64)
        if kind == "bytes":
            assert data is not None
            self.base: Any = None
            self.obj: Any = data
        elif kind == "bytearray":
            self.base = self.obj = bytearray(data if data is not None else size)
        elif kind == "bytearray_view":
            self.base = bytearray(pad + size + rng.randint(0, 64))
            whole = memoryview(self.base)
            self.obj = whole[pad : pad + size]
            self.views = [self.obj, whole]
            if data is not None:
                self.obj[:] = data
        elif kind == "mmap":
            self.base = self.obj = mmap.mmap(-1, size)
            if data is not None:
                self.base[:] = data
        elif kind == "mmap_view":
            self.base = mmap.mmap(-1, pad + size + rng.randint(1, 64))
            whole = memoryview(self.base)
            self.obj = whole[pad : pad + size]
            self.views = [self.obj, whole]
            if data is not None:
                self.obj[:] = data
        else:  # pragma: no cover
            raise AssertionError(kind)

    def head(self, n: int) -> bytes:
        return bytes(self.obj[:n])

    def free(self) -> str | None:
        """Release the views, resize the bytearray, close the mmap; describe a failure."""
        try:
            for view in self.views:
                view.release()
            if isinstance(self.base, bytearray):
                self.base.append(0)
                del self.base[-1]
            elif isinstance(self.base, mmap.mmap):
                self.base.close()
        except BufferError as exc:
            KEEP_FOREVER.append((self.base, self.obj, self.views))
            return f"{type(exc).__name__}: {exc}"
        return None


# --------------------------------------------------------------- harness
class Slot:
    __slots__ = ("hit", "in_op", "name", "scope")

    def __init__(self, name: str, scope: trio.CancelScope) -> None:
        self.name = name
        self.scope = scope
        self.in_op = False
        self.hit = False


#: Each operation must have been really cancelled at least this often (the test checks it).
MIN_PER_OPERATION = 50


class Harness:
    """Runs operations in cancel scopes and cancels some of them while they are in progress.

    Most operations get a cancellation timer when they start (:meth:`call`): the
    :meth:`ticker` cancels them 0-5 loop ticks later, which lands before
    submission, in the kernel, or racing the completion.  The
    :meth:`idle_canceller` cancels one of the operations parked in the kernel when
    every task is blocked (a clogged socket, an empty pipe).  A few operations get a
    short real-clock deadline instead (a linked timeout ends them in the kernel).
    """

    def __init__(self, rng: random.Random, target: int) -> None:
        self.rng = rng
        self.target = target
        self.live: list[Slot] = []
        self.timers: list[list[Any]] = []
        self.timer_added = trio.Event()
        self.real = 0
        self.real_by: collections.Counter[str] = collections.Counter()
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.violations: collections.Counter[str] = collections.Counter()
        self.examples: list[str] = []
        self.ops = 0
        self.bytes_checked = 0

    def done(self) -> bool:
        """Enough real cancellations: ``target`` in all, and ``MIN_PER_OPERATION`` of each
        operation that was cancelled at all (the test checks both; the share of a slow
        operation varies with the machine), or three times ``target`` at the most."""
        if self.real < self.target:
            return False
        if self.real >= 3 * self.target:
            return True
        per_operation: collections.Counter[str] = collections.Counter()
        for label, n in self.real_by.items():
            per_operation[label.split("[")[0]] += n
        return min(per_operation.values(), default=0) >= MIN_PER_OPERATION

    async def call(self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``await fn(*args)`` in a fresh cancel scope; ``CANCELLED`` if it raised ``Cancelled``."""
        self.ops += 1
        if self.ops % GC_EVERY == 0:
            gc.collect()
        scope = trio.CancelScope()
        slot = Slot(name, scope)
        deadline = False
        if not self.done():
            r = self.rng.random()
            if r < DEADLINE_PROBABILITY:
                deadline = True
                scope.deadline = trio.current_time() + self.rng.choice(DEADLINES)
            elif r < CANCEL_PROBABILITY:
                self.timers.append([slot, self.rng.choice(CANCEL_AFTER_TICKS)])
                self.timer_added.set()
        self.live.append(slot)
        try:
            with scope:
                slot.in_op = True
                try:
                    result = await fn(*args)
                finally:
                    slot.in_op = False
        finally:
            self.live.remove(slot)
        if scope.cancelled_caught:
            if deadline and not slot.hit:
                self.hit(slot)
                self.outcomes[f"{name} cancelled by deadline"] += 1
            else:
                self.outcomes[f"{name} cancelled"] += 1
            return CANCELLED
        self.outcomes[f"{name} completed{' (raced a cancel)' if slot.hit else ''}"] += 1
        return result

    def hit(self, slot: Slot) -> None:
        slot.hit = True
        self.real += 1
        self.real_by[slot.name] += 1

    def cancel(self, slot: Slot) -> None:
        if slot.in_op and not slot.hit:
            self.hit(slot)
            slot.scope.cancel()

    async def ticker(self) -> None:
        """Fire the cancellation timers, one tick at a time (asleep while there are none)."""
        while True:
            if not self.timers:
                self.timer_added = trio.Event()
                await self.timer_added.wait()
            await trio.lowlevel.checkpoint()
            pending = []
            for entry in self.timers:
                if entry[1] <= 0:
                    self.cancel(entry[0])
                else:
                    entry[1] -= 1
                    pending.append(entry)
            self.timers = pending

    async def idle_canceller(self) -> None:
        """When every task is blocked, cancel one operation parked in the kernel."""
        while True:
            await trio.testing.wait_all_tasks_blocked()
            candidates = [s for s in self.live if s.in_op and not s.hit]
            if candidates and not self.done():
                self.cancel(self.rng.choice(candidates))
                await trio.lowlevel.checkpoint()
            else:
                await trio.sleep(0.001)

    def violation(self, what: str, detail: str) -> None:
        self.violations[what] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{what}: {detail}")

    def free(self, name: str, buf: Buf, outcome: object) -> None:
        problem = buf.free()
        if problem is not None:
            how = "cancelled" if outcome is CANCELLED else "completed"
            self.violation(f"buffer locked after {name} ({how})", problem)

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        if not ok:
            self.violation(what, detail)

    def summary(self, started: float) -> dict[str, Any]:
        return {
            "real_cancellations": self.real,
            "operations": self.ops,
            "bytes_checked": self.bytes_checked,
            "seconds": round(time.monotonic() - started, 2),
            "real_by_operation": dict(sorted(self.real_by.items())),
            "outcomes": dict(sorted(self.outcomes.items())),
            "violations": dict(self.violations),
            "examples": self.examples,
        }


# ------------------------------------------------------------ byte channels
SendOp = tuple[str, Callable[[Any], Awaitable[int]]]
RecvOp = tuple[str, bool, Callable[..., Awaitable[Any]]]


#: After its writer is done, a channel's reader must see EOF (or a reset) within this long.
READER_GRACE = 10.0
#: ... except after a reset: an RST is never retransmitted, and the peer drops one whose
#: sequence number is not exactly what it expects when its rate-limited challenge ACK is
#: skipped (RFC 5961), so a reader that only reads may be left on a half-open connection,
#: as after any abortive close.  Such channels wait this long, and the half-open ones
#: are counted (``half_open_after_reset``), not reported as violations.
RESET_GRACE = 2.0


async def run_pair(
    h: Harness,
    name: str,
    writer: Callable[[], Awaitable[None]],
    reader: Callable[[], Awaitable[None]],
    reset: Callable[[], bool] = lambda: False,
) -> bool:
    """Run a channel's writer and reader; a reader that never sees the end is a violation.

    (A reset whose RST the peer drops leaves it waiting forever on a half-open
    connection; this turns that hang into a reported failure.)
    """
    writer_done = trio.Event()
    reader_done = trio.Event()
    reader_scope = trio.CancelScope()

    async def run_writer() -> None:
        try:
            await writer()
        finally:
            writer_done.set()

    async def run_reader() -> None:
        with reader_scope:
            await reader()
        reader_done.set()

    async def overseer() -> None:
        await writer_done.wait()
        with trio.move_on_after(RESET_GRACE if reset() else READER_GRACE):
            await reader_done.wait()
        if not reader_done.is_set() and reset():
            h.outcomes["half_open_after_reset"] += 1
            reader_scope.cancel()
        elif not reader_done.is_set():
            h.violation(
                f"{name}: the reader never saw EOF or a reset after the writer finished",
                "half-open connection",
            )
            reader_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_writer)
        nursery.start_soon(run_reader)
        nursery.start_soon(overseer)
    return reader_done.is_set()


RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN})


async def exact_channel(
    h: Harness,
    name: str,
    send_ops: list[SendOp],
    recv_ops: list[RecvOp],
    finish: Callable[[], Awaitable[None]],
    max_chunk: int,
    send_kinds: tuple[str, ...] = READ_ONLY_KINDS,
    *,
    resets: bool = False,
) -> None:
    """A writer and a reader on one channel whose results say exactly what moved.

    ``send_ops``: ``(name, fn(buffer) -> count)``.  ``recv_ops``: ``(name, into, fn)``
    where ``into`` means ``fn(buffer) -> count`` and otherwise ``fn(n) -> bytes``.
    ``finish()`` ends the writing side (the reader then sees EOF).

    ``resets``: a cancelled send may reset the connection (a zero-copy send of a
    mutable buffer cancelled while its notification is pending does, see
    docs/semantics.rst).  The writer then stops at its first cancelled send, and the
    reader must have got the confirmed bytes plus a prefix of the cancelled chunk,
    or, if it saw the reset, a prefix of all that (a reset drops queued bytes).
    """
    rng = h.rng
    sent = 0
    pending = b""
    reset = False
    received = bytearray()

    async def writer() -> None:
        nonlocal sent, pending
        try:
            while not h.done():
                kind = rng.choice(send_kinds)
                op_name, fn = rng.choice(send_ops)
                chunk = pattern(sent, rng.randint(1, max_chunk))
                buf = Buf(rng, kind, chunk)
                label = f"{name}.{op_name}[{kind}]"
                res = await h.call(label, fn, buf.obj)
                h.free(label, buf, res)
                if res is CANCELLED:
                    if resets:
                        pending = chunk
                        break
                    continue
                h.check(
                    0 <= res <= len(chunk), f"{label} returned a bad count", f"{res}/{len(chunk)}"
                )
                sent += res
        finally:
            try:
                await finish()
            except OSError as exc:
                if not (resets and pending and exc.errno in RESET_ERRNOS):
                    raise

    async def reader() -> None:
        nonlocal reset
        while True:
            op_name, into, fn = rng.choice(recv_ops)
            n = rng.randint(1, max_chunk)
            try:
                if into:
                    kind = rng.choice(WRITABLE_KINDS)
                    buf = Buf(rng, kind, size=n)
                    label = f"{name}.{op_name}[{kind}]"
                    res = await h.call(label, fn, buf.obj)
                    data = b"" if res is CANCELLED else buf.head(res)
                    h.free(label, buf, res)
                else:
                    label = f"{name}.{op_name}"
                    res = await h.call(label, fn, n)
                    data = b"" if res is CANCELLED else bytes(res)
            except OSError as exc:
                if resets and exc.errno in RESET_ERRNOS:
                    reset = True
                    return
                raise
            if res is CANCELLED:
                continue
            if not data:
                return
            received.extend(data)

    if not await run_pair(h, name, writer, reader, lambda: resets and bool(pending)):
        return  # cut off: what it got says nothing
    expected = pattern(0, sent)
    got = bytes(received)
    if reset or (resets and pending):
        # After an abortive reset any prefix may arrive (the send queue is dropped),
        # whether or not this reader was the one that saw the reset.
        ok = bool(pending) and (expected + pending).startswith(got)
    else:
        ok = got[:sent] == expected and pending.startswith(got[sent:])
    if not ok:
        at = next(
            (i for i, (x, y) in enumerate(zip(got, expected + pending, strict=False)) if x != y),
            min(len(got), len(expected)),
        )
        h.violation(
            f"{name}: bytes lost or duplicated",
            f"sent {sent}, pending {len(pending)}, received {len(got)}, reset {reset}, "
            f"first difference at {at}",
        )
    h.bytes_checked += len(got)


async def stream_channel(
    h: Harness,
    name: str,
    make_pair: Callable[[], Awaitable[tuple[SocketStream, SocketStream]]],
    max_chunk: int,
    *,
    resets: bool = False,
) -> None:
    """``SocketStream.send_all`` / ``receive_some``; a new connection after a cancelled send.

    A cancelled ``send_all`` may have sent a prefix of its chunk, so the writer
    closes the stream; the reader must then have exactly the confirmed bytes plus
    a prefix of that chunk.  ``resets``: a cancelled zero-copy ``send_all`` may reset
    the connection; the reader then gets ``BrokenResourceError`` and must have a
    prefix of everything the writer tried to send.
    """
    connections = 0
    while not h.done() or connections == 0:
        connections += 1
        a, b = await make_pair()
        await stream_connection(h, name, a, b, max_chunk, resets)
    h.outcomes[f"{name} connections"] += connections


async def stream_connection(
    h: Harness, name: str, a: SocketStream, b: SocketStream, max_chunk: int, resets: bool
) -> None:
    rng = h.rng
    confirmed = 0
    pending = b""
    reset = False
    received = bytearray()

    async def writer() -> None:
        nonlocal confirmed, pending
        try:
            for _ in range(rng.randint(1, 400)):
                if h.done():
                    break
                kind = rng.choice(READ_ONLY_KINDS)
                chunk = pattern(confirmed, rng.randint(1, max_chunk))
                buf = Buf(rng, kind, chunk)
                label = f"{name}.send_all[{kind}]"
                res = await h.call(label, a.send_all, buf.obj)
                h.free(label, buf, res)
                if res is CANCELLED:
                    pending = chunk  # some prefix of it may have gone: this connection ends
                    break
                confirmed += len(chunk)
            else:
                with trio.CancelScope(shield=True):
                    await a.send_eof()
        finally:
            with trio.CancelScope(shield=True):
                await a.aclose()

    async def reader() -> None:
        nonlocal reset
        try:
            while True:
                try:
                    res = await h.call(
                        f"{name}.receive_some", b.receive_some, rng.randint(1, max_chunk)
                    )
                except trio.BrokenResourceError:
                    if resets:  # a cancelled zero-copy send reset the connection
                        reset = True
                        return
                    raise
                if res is CANCELLED:
                    continue
                if not res:
                    return
                received.extend(res)
        finally:
            with trio.CancelScope(shield=True):
                await b.aclose()

    if not await run_pair(h, name, writer, reader, lambda: resets and bool(pending)):
        return  # cut off: what it got says nothing
    got = bytes(received)
    expected = pattern(0, confirmed)
    if reset or (resets and pending):
        # After an abortive reset any prefix may arrive (the send queue is dropped),
        # whether or not this reader was the one that saw the reset.
        ok = bool(pending) and (expected + pending).startswith(got)
    else:
        ok = got[:confirmed] == expected and pending.startswith(got[confirmed:])
    h.check(
        ok,
        f"{name}: bytes lost or duplicated",
        f"confirmed {confirmed}, pending {len(pending)}, received {len(got)}, reset {reset}",
    )
    h.bytes_checked += len(got)


# ------------------------------------------------------------- file models
def apply(model: bytearray, offset: int, data: bytes) -> None:
    if offset > len(model):
        model.extend(bytes(offset - len(model)))
    model[offset : offset + len(data)] = data


async def lowlevel_regular_file(h: Harness, path: str) -> None:
    """``lowlevel.read/readinto/write`` on a regular file, at offsets and at the position."""
    rng = h.rng
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC)
    model = bytearray()
    pos = 0
    try:
        while not h.done():
            op = rng.choice(("pwrite", "pread", "preadinto", "write", "read", "readinto"))
            n = rng.randint(1, 8192)
            positional = op in ("write", "read", "readinto")
            offset = -1 if positional else rng.randint(0, len(model) + 64)
            at = pos if positional else offset
            if op in ("pwrite", "write"):
                kind = rng.choice(READ_ONLY_KINDS)
                data = rng.randbytes(n)
                buf = Buf(rng, kind, data)
                label = f"file.{op}[{kind}]"
                res = await h.call(label, ll.write, fd, buf.obj, offset)
                h.free(label, buf, res)
                if res is not CANCELLED:
                    h.check(res == n, f"{label}: short write", f"{res}/{n}")
                    apply(model, at, data[:res])
                    if positional:
                        pos += res
            elif op == "pread" or op == "read":
                label = f"file.{op}"
                res = await h.call(label, ll.read, fd, n, offset)
                if res is not CANCELLED:
                    h.check(res == model[at : at + n], f"{label}: wrong data", f"at {at}")
                    if positional:
                        pos += len(res)
            else:
                kind = rng.choice(WRITABLE_KINDS)
                buf = Buf(rng, kind, size=n)
                label = f"file.{op}[{kind}]"
                res = await h.call(label, ll.readinto, fd, buf.obj, offset)
                if res is not CANCELLED:
                    h.check(buf.head(res) == model[at : at + n], f"{label}: wrong data", f"at {at}")
                    if positional:
                        pos += res
                h.free(label, buf, res)
            h.check(os.lseek(fd, 0, os.SEEK_CUR) == pos, "file: position moved", f"{op}")
        with open(path, "rb") as f:
            h.check(f.read() == model, "file: contents differ from the model")
        h.bytes_checked += len(model)
    finally:
        os.close(fd)


async def raw_file_model(h: Harness, path: str) -> None:
    """``open_file(..., buffering=0)``: write/read at the position, seek, pread/pwrite."""
    rng = h.rng
    f = await trio_uring.open_file(path, "w+b", buffering=0)
    model = bytearray()
    pos = 0
    try:
        while not h.done():
            op = rng.choice(("write", "read", "readinto", "seek", "pwrite", "pread"))
            n = rng.randint(1, 8192)
            if op in ("write", "pwrite"):
                kind = rng.choice(READ_ONLY_KINDS)
                data = rng.randbytes(n)
                buf = Buf(rng, kind, data)
                label = f"raw.{op}[{kind}]"
                if op == "write":
                    res = await h.call(label, f.write, buf.obj)
                    at = pos
                else:
                    at = rng.randint(0, len(model) + 64)
                    res = await h.call(label, f.pwrite, buf.obj, at)
                h.free(label, buf, res)
                if res is not CANCELLED:
                    h.check(res == n, f"{label}: short write", f"{res}/{n}")
                    apply(model, at, data[:res])
                    if op == "write":
                        pos += res
            elif op == "read":
                res = await h.call("raw.read", f.read, n)
                if res is not CANCELLED:
                    h.check(res == model[pos : pos + n], "raw.read: wrong data", f"at {pos}")
                    pos += len(res)
            elif op == "readinto":
                kind = rng.choice(WRITABLE_KINDS)
                buf = Buf(rng, kind, size=n)
                label = f"raw.readinto[{kind}]"
                res = await h.call(label, f.readinto, buf.obj)
                if res is not CANCELLED:
                    h.check(buf.head(res) == model[pos : pos + n], f"{label}: wrong data")
                    pos += res
                h.free(label, buf, res)
            elif op == "pread":
                at = rng.randint(0, len(model) + 64)
                res = await h.call("raw.pread", f.pread, n, at)
                if res is not CANCELLED:
                    h.check(res == model[at : at + n], "raw.pread: wrong data", f"at {at}")
            else:
                target = rng.randint(0, len(model) + 64)
                res = await h.call("raw.seek", f.seek, target)
                if res is not CANCELLED:
                    pos = target
            with trio.CancelScope(shield=True):
                h.check(await f.tell() == pos, "raw: position differs from the model", op)
        with open(path, "rb") as g:
            h.check(g.read() == model, "raw: contents differ from the model")
        h.bytes_checked += len(model)
    finally:
        with trio.CancelScope(shield=True):
            await f.aclose()


async def buffered_file_model(h: Harness, path: str) -> None:
    """``open_file(..., buffering=512)``: buffered write/read/seek/flush against a model."""
    rng = h.rng
    f = await trio_uring.open_file(path, "w+b", buffering=512)
    model = bytearray()
    pos = 0
    try:
        while not h.done():
            op = rng.choice(("write", "write", "read", "seek", "flush"))
            n = rng.randint(1, 2048)
            if op == "write":
                kind = rng.choice(READ_ONLY_KINDS)
                data = rng.randbytes(n)
                buf = Buf(rng, kind, data)
                label = f"buffered.write[{kind}]"
                res = await h.call(label, f.write, buf.obj)
                h.free(label, buf, res)
                if res is not CANCELLED:
                    h.check(res == n, f"{label}: bad count", f"{res}/{n}")
                    apply(model, pos, data)
                    pos += n
            elif op == "read":
                res = await h.call("buffered.read", f.read, n)
                if res is not CANCELLED:
                    h.check(res == model[pos : pos + n], "buffered.read: wrong data", f"at {pos}")
                    pos += len(res)
            elif op == "seek":
                target = rng.randint(0, len(model) + 64)
                res = await h.call("buffered.seek", f.seek, target)
                if res is not CANCELLED:
                    pos = target
            else:
                await h.call("buffered.flush", f.flush)
            with trio.CancelScope(shield=True):
                h.check(await f.tell() == pos, "buffered: position differs from the model", op)
        with trio.CancelScope(shield=True):
            await f.flush()
        with open(path, "rb") as g:
            h.check(g.read() == model, "buffered: contents differ from the model")
        h.bytes_checked += len(model)
    finally:
        with trio.CancelScope(shield=True):
            await f.aclose()


# ------------------------------------------------------------- set-up helpers
def small_buffers(*socks: socket.socket, size: int = 4096) -> None:
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        s.setblocking(False)


def stdlib_tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A connected loopback TCP pair that behaves like a LAN link at small buffers.

    Loopback's MSS is ~64 KiB: with socket buffers of a few KiB the receiver's
    window updates and delayed ACKs (which zero-copy notifications wait for) would
    stall for tens of milliseconds.  A 1400-byte MSS and ``TCP_NODELAY`` keep the
    data moving while the buffers still fill up, so operations park in the kernel.
    """
    with socket.socket() as listener:
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.socket()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, server


def small_pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, F_SETPIPE_SZ, 4096)
    return r, w


def shutdown_write(sock: Any) -> Callable[[], Awaitable[None]]:
    async def finish() -> None:
        sock.shutdown(socket.SHUT_WR)

    return finish


def close_fd(fd: int) -> Callable[[], Awaitable[None]]:
    async def finish() -> None:
        os.close(fd)

    return finish


def socket_ops_lowlevel(a: Any, b: Any) -> tuple[list[SendOp], list[RecvOp]]:
    return (
        [("send", lambda buf: ll.send(a, buf))],
        [
            ("recv", False, lambda n: ll.recv(b, n)),
            ("recv_into", True, lambda buf: ll.recv_into(b, buf)),
            ("recv_into_nbytes", True, lambda buf: ll.recv_into(b, buf, max(1, len(buf) // 2))),
        ],
    )


# ----------------------------------------------------------------- families
async def family_lowlevel_socket(h: Harness, tmp: str) -> None:
    unix = socket.socketpair()
    tcp = stdlib_tcp_pair()
    small_buffers(*unix, *tcp)
    try:
        async with trio.open_nursery() as nursery:
            for name, (a, b) in (("unix", unix), ("tcp", tcp)):
                sends, recvs = socket_ops_lowlevel(a, b)
                nursery.start_soon(exact_channel, h, name, sends, recvs, shutdown_write(a), 6000)
    finally:
        for s in (*unix, *tcp):
            s.close()


async def family_lowlevel_file(h: Harness, tmp: str) -> None:
    r, w = small_pipe()
    closed: list[int] = []

    async def finish() -> None:
        os.close(w)
        closed.append(w)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                exact_channel,
                h,
                "pipe",
                [("write", lambda buf: ll.write(w, buf))],
                [
                    ("read", False, lambda n: ll.read(r, n)),
                    ("readinto", True, lambda buf: ll.readinto(r, buf)),
                ],
                finish,
                6000,
            )
            nursery.start_soon(lowlevel_regular_file, h, os.path.join(tmp, "lowlevel"))
    finally:
        os.close(r)
        if not closed:
            os.close(w)


async def family_trio_socket(h: Harness, tmp: str) -> None:
    ua, ub = trio.socket.socketpair()
    ta, tb = (trio.socket.from_stdlib_socket(s) for s in stdlib_tcp_pair())
    assert type(ua).__name__ == "UringSocket", type(ua)
    socks = (ua, ub, ta, tb)
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        async with trio.open_nursery() as nursery:
            for name, a, b in (("unix", ua, ub), ("tcp", ta, tb)):
                sends: list[SendOp] = [("send", a.send)]
                recvs: list[RecvOp] = [
                    ("recv", False, b.recv),
                    ("recv_into", True, b.recv_into),
                    (
                        "recv_into_nbytes",
                        True,
                        lambda buf, b=b: b.recv_into(buf, max(1, len(buf) // 2)),
                    ),
                ]
                nursery.start_soon(exact_channel, h, name, sends, recvs, shutdown_write(a), 6000)
    finally:
        for s in socks:
            s.close()


async def unix_stream_pair() -> tuple[SocketStream, SocketStream]:
    a, b = trio.socket.socketpair()
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return SocketStream(a), SocketStream(b)


def tcp_stream_pair_maker(
    zerocopy: str,
) -> Callable[[], Awaitable[tuple[SocketStream, SocketStream]]]:
    async def make() -> tuple[SocketStream, SocketStream]:
        a, b = stdlib_tcp_pair()
        small_buffers(a, b)
        return (
            SocketStream(trio.socket.from_stdlib_socket(a), zerocopy=zerocopy),  # type: ignore[arg-type]
            SocketStream(trio.socket.from_stdlib_socket(b)),
        )

    return make


async def family_stream(h: Harness, tmp: str) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream_channel, h, "unix_stream", unix_stream_pair, 6000)
        nursery.start_soon(stream_channel, h, "tcp_stream", tcp_stream_pair_maker("never"), 6000)


async def family_file(h: Harness, tmp: str) -> None:
    r, w = small_pipe()
    fr = await trio_uring.open_file(r, "rb", buffering=0)
    fw = await trio_uring.open_file(w, "wb", buffering=0)

    async def finish() -> None:
        with trio.CancelScope(shield=True):
            await fw.aclose()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                exact_channel,
                h,
                "pipe_file",
                [("write", fw.write)],
                [("read", False, fr.read), ("readinto", True, fr.readinto)],
                finish,
                6000,
            )
            nursery.start_soon(raw_file_model, h, os.path.join(tmp, "raw"))
            nursery.start_soon(buffered_file_model, h, os.path.join(tmp, "buffered"))
    finally:
        with trio.CancelScope(shield=True):
            await fr.aclose()
            await fw.aclose()


async def family_zerocopy(h: Harness, tmp: str) -> None:
    async def send_zc_connections() -> None:
        # A cancelled zero-copy send may reset its connection: a new one after each.
        connections = 0
        while not h.done() or connections == 0:
            connections += 1
            a, b = stdlib_tcp_pair()
            small_buffers(a, b)
            try:
                await exact_channel(
                    h,
                    "send_zc",
                    [("send_zc", lambda buf, a=a: ll.send_zc(a, buf))],
                    [
                        ("recv", False, lambda n, b=b: ll.recv(b, n)),
                        ("recv_into", True, lambda buf, b=b: ll.recv_into(b, buf)),
                    ],
                    shutdown_write(a),
                    12000,
                    resets=True,
                )
            finally:
                a.close()
                b.close()
        h.outcomes["send_zc connections"] += connections

    zc_pair = tcp_stream_pair_maker("always")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_zc_connections)
        nursery.start_soon(
            functools.partial(stream_channel, h, "zc_stream", zc_pair, 8000, resets=True)
        )


FAMILIES: dict[str, Callable[[Harness, str], Awaitable[None]]] = {
    "lowlevel_socket": family_lowlevel_socket,
    "lowlevel_file": family_lowlevel_file,
    "trio_socket": family_trio_socket,
    "stream": family_stream,
    "file": family_file,
    "zerocopy": family_zerocopy,
}


async def wait_idle(h: Harness) -> None:
    """The ring holds nothing but readiness waits (zero-copy notifications may lag: bounded wait)."""
    with trio.move_on_after(5):
        while True:
            await trio.testing.wait_all_tasks_blocked()
            stats = trio.lowlevel.current_statistics().io_statistics
            if stats.operations_in_flight <= stats.tasks_waiting_read + stats.tasks_waiting_write:
                return
            await trio.sleep(0.01)
    stats = trio.lowlevel.current_statistics().io_statistics
    h.violation("operations still in flight at the end", repr(stats))


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


async def run_family(family: str, seed: int, target: int) -> dict[str, Any]:
    h = Harness(random.Random(seed), target)
    started = time.monotonic()
    fds_before = open_fds()
    with tempfile.TemporaryDirectory() as tmp:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.ticker)
            nursery.start_soon(h.idle_canceller)
            await FAMILIES[family](h, tmp)
            nursery.cancel_scope.cancel()
    gc.collect()
    await wait_idle(h)
    leaked = open_fds() - fds_before
    if leaked:
        h.violation("file descriptors leaked", repr(sorted(leaked)))
    summary = h.summary(started)
    stats = trio.lowlevel.current_statistics().io_statistics
    summary["io_statistics"] = {
        name: getattr(stats, name)
        for name in ("async_cancels", "linked_timeouts", "linked_timeouts_fired", "sqes_submitted")
        if hasattr(stats, name)
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--target", type=int, default=10_000, help="real cancellations")
    args = parser.parse_args(argv)
    summary = trio_uring.run(run_family, args.family, args.seed, args.target)
    gc.collect()
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
