"""Socket operations against hostile (yet legal) callers: the kernel only sees memory the call holds.

Every public socket function that takes a buffer together with an index-like
argument is called with an ``__index__`` (or ``fileno()``, or an iterator) that
resizes the ``bytearray``, releases the ``memoryview`` or closes the ``mmap``
behind the buffer.  The same hostile input is given to the stdlib socket method,
and trio_uring must do what it does: CPython holds the buffer's export across the
conversions, so the resizer raises ``BufferError``, and a length checked before
the conversions is the length used.  The bytes the peer receives (or the buffer
receives) are checked exactly, and a guard pattern after the buffer must never be
overwritten.  A kernel write past a heap block would crash, so each scenario runs
in a child process (``-X dev``: debug allocator hooks) that ends with
``gc.collect()``.

Then: buffers another task tries to resize while a receive or send waits,
KeyboardInterrupt at every line between a trio socket's submit and its park
(``TRIO_URING_PURE=1``), and fd numbers reused after another task closed a trio
socket.
"""

from __future__ import annotations

import os

import pytest

from tests._child import child_env, run_child

PURE = os.environ.get("TRIO_URING_PURE") == "1"

#: Shared by every child: hostile arguments, buffers with guards, the stdlib oracle.
PRELUDE = r"""
import gc, mmap, socket, sys
import trio, trio.testing, trio_uring
from trio_uring import lowlevel as ll

PAYLOAD = bytes(range(256))
GUARD = 0xA5
PAGE = mmap.PAGESIZE
KINDS = ("bytearray", "memoryview", "mmap")


class Evil:
    '''An index-like argument: runs ``action`` in ``__index__``, then returns ``value``.'''

    def __init__(self, action, value):
        self.action, self.value = action, value

    def __index__(self):
        self.action()
        return self.value


def attempt(action):
    '''``action`` that is expected to fail (the buffer is held); swallow its BufferError.'''
    def run():
        try:
            action()
        except BufferError:
            pass
        else:
            raise AssertionError("the resize/release/close succeeded while the call held the buffer")
    return run


class Target:
    '''A caller's buffer of 64 bytes with a guard after it, and a way to attack it.

    kind: "bytearray" (attack: shrink it to 16 bytes; the guard is the heap block's
    end, checked by -X dev's allocator), "memoryview" (a 64-byte slice of a larger
    bytearray; attack: release it), "mmap" (the first 64 bytes of a page-sized mmap,
    passed whole with nbytes 64 or as the whole map; attack: close it).
    '''

    def __init__(self, kind, fill=GUARD):
        self.kind = kind
        if kind == "bytearray":
            self.base = self.buffer = bytearray([fill]) * 64
        elif kind == "memoryview":
            self.base = bytearray([GUARD]) * 256
            self.base[:64] = bytes([fill]) * 64
            self.buffer = memoryview(self.base)[:64]
        else:
            self.base = self.buffer = mmap.mmap(-1, PAGE)
            self.base[:] = bytes([GUARD]) * PAGE
            self.base[:64] = bytes([fill]) * 64

    def attack(self):
        if self.kind == "bytearray":
            del self.buffer[16:]
        elif self.kind == "memoryview":
            self.buffer.release()
        else:
            self.base.close()

    def assert_held(self, what):
        # The attack fails with BufferError: the call holds the buffer's export.
        try:
            self.attack()
        except BufferError:
            return
        raise AssertionError(f"{what}: the buffer could be attacked while the kernel may use it")

    def head(self):
        return bytes(self.base[:64])

    def check_guard(self):
        if self.kind == "bytearray":
            assert len(self.base) == 64, len(self.base)
        elif self.kind == "memoryview":
            assert self.base[64:] == bytes([GUARD]) * 192, "guard after the view overwritten"
        else:
            assert not self.base.closed
            assert self.base[64:] == bytes([GUARD]) * (PAGE - 64), "guard after 64 bytes overwritten"


def outcome_of(call):
    try:
        return ("ok", call())
    except Exception as exc:
        return (type(exc).__name__, str(exc))


async def aoutcome_of(call):
    try:
        return ("ok", await call())
    except Exception as exc:
        return (type(exc).__name__, str(exc))


def pair(kind=socket.SOCK_STREAM):
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def drain(sock):
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def finish():
    gc.collect()
    print("CHILD-OK")
"""


def run_scenario(code: str, **env: str) -> str:
    proc = run_child(PRELUDE + code, env=child_env(**env) if env else None, timeout=120)
    assert "CHILD-OK" in proc.stdout, proc.stdout + proc.stderr
    return proc.stdout


# ------------------------------------------------------------------ lowlevel
LOWLEVEL_RECV_INTO = r"""
async def case(kind, where, mode):
    a, b = pair()
    b.send(PAYLOAD)
    consumed = 0
    outcomes = []
    for api in ("stdlib", "uring"):
        t = Target(kind, fill=0x11)
        size = len(t.buffer)
        if mode == "attack":
            evil, n = Evil(t.attack, 0 if where == "flags" else size), 0
        elif mode == "attempt":
            evil, n = Evil(attempt(t.attack), 0 if where == "flags" else 16), 16
        else:  # "toobig": the attack fails, then nbytes is larger than the buffer
            evil, n = Evil(attempt(t.attack), size + 1), 0
        args = (evil, 0) if where == "nbytes" else (n, evil)
        if api == "stdlib":
            got = outcome_of(lambda: a.recv_into(t.buffer, *args))
        else:
            got = await aoutcome_of(lambda: ll.recv_into(a, t.buffer, *args))
        outcomes.append(got)
        t.check_guard()
        if got[0] == "ok":
            assert got[1] == 16, got
            assert t.head() == PAYLOAD[consumed : consumed + 16] + b"\x11" * 48, (api, t.head())
            consumed += 16
        else:
            assert t.head() == b"\x11" * 64, (api, t.head())
    assert outcomes[0] == outcomes[1], (kind, where, mode, outcomes)
    expected = {"attack": "BufferError", "attempt": "ok", "toobig": "ValueError"}[mode]
    assert outcomes[0][0] == expected, outcomes
    assert drain(a) == PAYLOAD[consumed:], "the peer's bytes were not all left in place"
    a.close(); b.close()


async def evil_fileno(kind):
    a, b = pair()
    b.send(PAYLOAD)
    t = Target(kind, fill=0x11)

    class EvilSock:
        def fileno(self):
            t.attack()
            return a.fileno()

    got = await aoutcome_of(lambda: ll.recv_into(EvilSock(), t.buffer, 64))
    assert got[0] == "BufferError", got
    t.check_guard()
    assert t.head() == b"\x11" * 64
    assert drain(a) == PAYLOAD
    a.close(); b.close()


async def main():
    for kind in KINDS:
        for where in ("nbytes", "flags"):
            for mode in ("attack", "attempt") + (("toobig",) if where == "nbytes" else ()):
                await case(kind, where, mode)
        await evil_fileno(kind)

trio_uring.run(main)
finish()
"""


def test_lowlevel_recv_into_hostile_index() -> None:
    """Finding 1: ``recv_into`` measured the buffer, then ran ``__index__``, which shrank it;
    the RECV kept the old length (64 KiB into a 16-byte block: abort).  Now the buffer is
    held first: the resize raises ``BufferError``, as with ``socket.recv_into``."""
    run_scenario(LOWLEVEL_RECV_INTO)


LOWLEVEL_SEND = r"""
async def case(kind, mode):
    a, b = pair()
    outcomes = []
    sent = b""
    for api in ("stdlib", "uring"):
        t = Target(kind, fill=0x22)
        t.base[:64] = PAYLOAD[:64]
        if mode == "attack":
            evil = Evil(t.attack, 0)
        else:
            evil = Evil(attempt(t.attack), 0)
        if api == "stdlib":
            got = outcome_of(lambda: a.send(t.buffer, evil))
        else:
            got = await aoutcome_of(lambda: ll.send(a, t.buffer, evil))
        outcomes.append(got)
        t.check_guard()
        if got[0] == "ok":
            sent += PAYLOAD[:64] if kind != "mmap" else bytes(t.base[:])
    assert outcomes[0] == outcomes[1], (kind, mode, outcomes)
    assert outcomes[0][0] == ("BufferError" if mode == "attack" else "ok"), outcomes
    assert drain(b) == sent, "the peer received other bytes than the buffer's"
    a.close(); b.close()


async def evil_fileno(kind):
    a, b = pair()
    t = Target(kind, fill=0x22)

    class EvilSock:
        def fileno(self):
            t.attack()
            return a.fileno()

    got = await aoutcome_of(lambda: ll.send(EvilSock(), t.buffer))
    assert got[0] == "BufferError", got
    t.check_guard()
    assert drain(b) == b""
    a.close(); b.close()


async def main():
    for kind in ("bytearray", "memoryview", "mmap"):
        for mode in ("attack", "attempt"):
            await case(kind, mode)
        await evil_fileno(kind)

trio_uring.run(main)
finish()
"""


def test_lowlevel_send_hostile_flags() -> None:
    """``send``'s ``flags.__index__`` (or ``fileno()``) cannot change the buffer it sends:
    ``BufferError`` as with ``socket.send``; the peer gets exactly the buffer's bytes."""
    run_scenario(LOWLEVEL_SEND)


LOWLEVEL_SENDMSG = r"""
async def flags_case(kind):
    # CPython converts flags before it exports the buffers: a resize there succeeds
    # and the shorter buffer is sent; a release or close makes the send fail.
    a, b = pair()
    outcomes = []
    sent = b""
    for api in ("stdlib", "uring"):
        t = Target(kind, fill=0x33)
        t.base[:64] = PAYLOAD[:64]
        evil = Evil(t.attack, 0)
        if api == "stdlib":
            got = outcome_of(lambda: a.sendmsg([t.buffer, b"tail"], [], evil))
        else:
            got = await aoutcome_of(lambda: ll.sendmsg(a, [t.buffer, b"tail"], [], evil))
        outcomes.append(got)
        if got[0] == "ok":
            sent += PAYLOAD[:16] + b"tail"
    assert outcomes[0] == outcomes[1], (kind, outcomes)
    assert outcomes[0][0] == ("ok" if kind == "bytearray" else "ValueError"), outcomes
    assert drain(b) == sent, "the peer received other bytes than the buffers'"
    a.close(); b.close()


async def iterator_case(kind):
    # The iterable is read to its end before any buffer is exported (as CPython's
    # PySequence_Fast): an attack from the iterator on an earlier buffer succeeds
    # (a resize: the shorter buffer is sent) or fails the call (released/closed).
    a, b = pair()
    outcomes = []
    sent = b""
    for api in ("stdlib", "uring"):
        t = Target(kind, fill=0x33)
        t.base[:64] = PAYLOAD[:64]

        def buffers():
            yield t.buffer
            t.attack()
            yield b"tail"

        if api == "stdlib":
            got = outcome_of(lambda: a.sendmsg(buffers()))
        else:
            got = await aoutcome_of(lambda: ll.sendmsg(a, buffers()))
        outcomes.append(got)
        if got[0] == "ok":
            sent += PAYLOAD[:16] + b"tail"
    assert outcomes[0] == outcomes[1], (kind, outcomes)
    assert drain(b) == sent
    a.close(); b.close()


async def ancdata_case(kind):
    # The ancillary items are read after the buffers were exported: an attack there
    # raises BufferError in both.
    a, b = pair()
    outcomes = []
    for api in ("stdlib", "uring"):
        t = Target(kind, fill=0x33)
        level = Evil(t.attack, socket.SOL_SOCKET)
        anc = [(level, socket.SCM_RIGHTS, b"\0\0\0\0")]
        if api == "stdlib":
            got = outcome_of(lambda: a.sendmsg([t.buffer], anc))
        else:
            got = await aoutcome_of(lambda: ll.sendmsg(a, [t.buffer], anc))
        outcomes.append(got)
        t.check_guard()
    assert outcomes[0] == outcomes[1], (kind, outcomes)
    assert outcomes[0][0] == "BufferError", outcomes
    assert drain(b) == b""
    a.close(); b.close()


async def evil_fileno(kind):
    a, b = pair()
    t = Target(kind, fill=0x33)

    class EvilSock:
        def fileno(self):
            t.attack()
            return a.fileno()

    got = await aoutcome_of(lambda: ll.sendmsg(EvilSock(), [t.buffer, b"tail"]))
    assert got[0] == "BufferError", got
    t.check_guard()
    assert drain(b) == b""
    a.close(); b.close()


async def main():
    for kind in ("bytearray", "memoryview", "mmap"):
        await flags_case(kind)
        await iterator_case(kind)
        await ancdata_case(kind)
        await evil_fileno(kind)

trio_uring.run(main)
finish()
"""


def test_lowlevel_sendmsg_hostile_arguments() -> None:
    """``sendmsg`` takes its arguments in CPython's order and sends exactly what it exported:
    flags, then the whole iterable, then one export per buffer, then the ancillary items."""
    run_scenario(LOWLEVEL_SENDMSG)


# -------------------------------------------------------------- trio sockets
TRIO_SOCKETS_KIT = r"""
import trio_uring._net._trio_sockets as ts


def state_of(t):
    '''What the caller can observe of its buffer after the call.'''
    try:
        head = t.head()
    except ValueError:  # a closed mmap
        head = None
    try:
        t.check_guard()
        guard = True
    except AssertionError:
        guard = False
    return head, guard


def stdlib_pair(dgram):
    if not dgram:
        return pair()
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
    a.setblocking(False); b.setblocking(False)
    return a, b


async def trio_pair(dgram):
    if not dgram:
        a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        a = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await a.bind(("127.0.0.1", 0)); await b.bind(("127.0.0.1", 0))
    assert type(a) is ts.UringSocket, type(a)
    return a, b


def drain_any(sock):
    out = []
    while True:
        try:
            out.append(sock.recv(65536))
        except BlockingIOError:
            return out


# (name, datagram?, receives?, the index-like positions, the call)
def calls(t, evil, where, peer_addr):
    value = lambda default: evil if where == "value" else default
    fl = lambda: evil if where == "flags" else 0
    return {
        "recv_into": (False, True, lambda s: s.recv_into(t.buffer, value(16), fl())),
        "recvfrom_into": (True, True, lambda s: s.recvfrom_into(t.buffer, value(16), fl())),
        "recvmsg_into": (False, True, lambda s: s.recvmsg_into([t.buffer], value(0), fl())),
        "send": (False, False, lambda s: s.send(t.buffer, fl())),
        "sendto": (True, False, lambda s: s.sendto(t.buffer, fl(), peer_addr(s))),
        "sendmsg": (False, False, lambda s: s.sendmsg([t.buffer], [], fl())),
    }


async def world(name, method, kind, where, mode):
    '''``method`` with a hostile argument in one world ("stdlib" or "trio"): its outcome,
    the caller's buffer afterwards, and what is left unread at the receiving end.'''
    t = Target(kind, fill=0x44)
    if mode == "attack":
        evil = Evil(t.attack, 16 if method != "recvmsg_into" else 0)
    else:
        evil = Evil(attempt(t.attack), 16 if method != "recvmsg_into" else 0)
    if where == "flags":
        evil.value = 0
    peers = {}
    peer_addr = lambda s: peers["addr"]
    dgram, receives, call = calls(t, evil, where, peer_addr)[method]
    if name == "stdlib":
        a, b = stdlib_pair(dgram)
    else:
        a, b = await trio_pair(dgram)
    peers["addr"] = b.getsockname()
    if receives:
        if dgram:
            b.connect(a.getsockname()) if name == "stdlib" else await b.connect(a.getsockname())
        sender = b._sock if name != "stdlib" else b
        sender.send(PAYLOAD[:64])
        if not dgram:
            sender.send(PAYLOAD[64:])
    else:
        t.base[:64] = PAYLOAD[:64]
    if name == "stdlib":
        got = outcome_of(lambda: call(a))
    else:
        got = await aoutcome_of(lambda: call(a))
    if got[0] == "ok" and method in ("recvfrom_into", "recvmsg_into"):
        got = ("ok", got[1][0])  # (the byte count; the addresses differ between worlds)
    end = a if receives else b
    rest = drain_any(end._sock if name != "stdlib" else end)
    a.close(); b.close()
    return got, state_of(t), rest


async def main():
    for method in ("recv_into", "recvfrom_into", "recvmsg_into", "send", "sendto", "sendmsg"):
        for kind in ("bytearray", "memoryview", "mmap"):
            wheres = ("value", "flags") if method in ("recv_into", "recvfrom_into", "recvmsg_into") else ("flags",)
            for where in wheres:
                for mode in ("attack", "attempt"):
                    expected = await world("stdlib", method, kind, where, mode)
                    got = await world("trio", method, kind, where, mode)
                    assert got == expected, (method, kind, where, mode, got, expected)
                    print(method, kind, where, mode, expected[0])

trio_uring.run(main)
finish()
"""


@pytest.mark.parametrize("try_first", ["1", "0"])
def test_trio_socket_methods_hostile_index(try_first: str) -> None:
    """Every trio socket method taking a buffer and an index-like argument does, on a
    ``UringSocket``, what the stdlib method does with the same hostile argument (the same
    result or error, the same bytes in the buffer and at the peer, the guard intact);
    with ``TRIO_URING_SOCKETS_TRY_FIRST=0`` too (an SQE for every call it can take)."""
    out = run_scenario(TRIO_SOCKETS_KIT, TRIO_URING_SOCKETS_TRY_FIRST=try_first)
    assert out.count("\n") >= 40, out


CONCURRENT = r"""
import trio_uring._net._trio_sockets as ts


def fill_up(sock):
    '''Fill ``sock``'s send buffer; return what was queued.'''
    sent = bytearray()
    chunk = bytes([0x77]) * 65536
    while True:
        try:
            sent += chunk[: sock.send(chunk)]
        except BlockingIOError:
            return bytes(sent)


async def receive_case(api, kind):
    if api == "lowlevel":
        a, b = pair()
        receive = lambda buf: ll.recv_into(a, buf, 16)
        peer = b
    else:
        a, b = trio.socket.socketpair()
        assert type(a) is ts.UringSocket
        receive = lambda buf: a.recv_into(buf, 16)
        peer = b._sock
    t = Target(kind, fill=0x55)
    box = {}

    async def receiver():
        box["n"] = await receive(t.buffer)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        t.assert_held(f"{api} {kind}")
        peer.send(PAYLOAD)
    assert box["n"] == 16
    assert t.head() == PAYLOAD[:16] + b"\x55" * 48, t.head()
    t.check_guard()
    t.attack()  # free again once the call returned
    assert drain(a._sock if api != "lowlevel" else a) == PAYLOAD[16:]
    a.close(); b.close()


async def send_case(api, kind):
    if api == "lowlevel":
        a, b = pair()
        send = lambda buf: ll.send(a, buf)
        peer = b
        queued = fill_up(a)
    else:
        a, b = trio.socket.socketpair()
        send = lambda buf: a.send(buf)
        peer = b._sock
        queued = fill_up(a._sock)
    t = Target(kind, fill=0x55)
    t.base[:64] = PAYLOAD[:64]
    box = {}

    async def sender():
        box["n"] = await send(t.buffer)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        t.assert_held(f"{api} {kind}")
        got = b""
        while len(got) < len(queued):
            await trio.lowlevel.wait_readable(peer)
            got += drain(peer)
    whole = bytes(t.base[: len(t.buffer)])
    t.check_guard()
    t.attack()
    got += drain(peer)
    assert got == queued + whole[: box["n"]], (len(got), len(queued), box["n"])
    a.close(); b.close()


async def main():
    for api in ("lowlevel", "trio"):
        for kind in ("bytearray", "memoryview", "mmap"):
            await receive_case(api, kind)
            await send_case(api, kind)

trio_uring.run(main)
finish()
"""


def test_buffer_held_while_the_kernel_may_touch_it() -> None:
    """While a receive or send waits in the kernel, another task cannot resize, release or
    close its buffer (``BufferError``); the bytes are exact and the buffer is free again
    once the call returned."""
    run_scenario(CONCURRENT)


# ------------------------------------------------------- KeyboardInterrupt
KI_INJECTOR = r"""
import os, signal, threading
import trio_uring._net._trio_sockets as ts
from trio_uring._core import _manager
from trio_uring._core._operation import SUBMITTED, CANCELLING

from tests._ki_inject import Injector, StepInjector

if MODE == "lines":
    assert ts.__file__.endswith(".py"), "line injection needs the pure build (frames to trace)"


class ReleaseSpy:
    '''Stands in for ``ffi`` in the trio sockets module: remembers what it released.'''

    def __init__(self, real):
        self.real, self.released = real, []

    def release(self, cdata):
        self.released.append(cdata)
        self.real.release(cdata)

    def __getattr__(self, name):
        return getattr(self.real, name)


spy = ts.ffi = ReleaseSpy(ts.ffi)


def owned_by_kernel():
    '''Memory referenced by operations the kernel may still touch (this run's manager).'''
    held = []
    for op in ll.current_manager()._ops.values():  # (test-only look inside)
        if op.state in (SUBMITTED, CANCELLING):
            held.append(op.keep)
    return held


def violations():
    '''Memory a finished call gave back (pool, released) while the kernel may still use it.'''
    bad = []
    for keep in owned_by_kernel():
        if keep is None:
            continue
        if any(keep is p for p in ts._pool):
            bad.append("re-pooled")
        if any(keep is r for r in spy.released):
            bad.append("released")
    return bad


def fill_up(sock):
    chunk = b"\x77" * 65536
    while True:
        try:
            sock.send(chunk)
        except BlockingIOError:
            return


async def make(op):
    '''(the call to interrupt, the feeder that completes it, a check afterwards)'''
    if op in ("recv-pool", "recv-big"):
        a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        size = 1000 if op == "recv-pool" else 100000
        return a, b, (lambda: a.recv(size)), (lambda: b._sock.send(b"x" * 10)), None
    if op == "recv-provided":
        a, b = trio.socket.socketpair()
        return a, b, (lambda: a.recv(1000)), (lambda: b._sock.send(b"x" * 10)), None
    if op in ("recv_into", "ll.recv_into"):
        a, b = trio.socket.socketpair()
        base = bytearray(b"\xa5") * 128
        view = memoryview(base)[:64]
        if op == "recv_into":
            call = lambda: a.recv_into(view, 64)
        else:
            call = lambda: ll.recv_into(a, view, 64)
        def check():
            assert base[64:] == b"\xa5" * 64, "guard overwritten"
            view.release()  # the call's exports are gone
        return a, b, call, (lambda: b._sock.send(b"x" * 10)), check
    if op in ("send", "ll.send"):
        a, b = trio.socket.socketpair()
        fill_up(a._sock)
        data = bytearray(b"y" * 1000)
        call = (lambda: a.send(data)) if op == "send" else (lambda: ll.send(a, data))
        def check():
            del data[10:]  # the call's exports are gone
        return a, b, call, (lambda: drain(b._sock)), check
    if op in ("accept", "ll.accept"):
        a = trio.socket.socket()
        await a.bind(("127.0.0.1", 0))
        a.listen()
        b = trio.socket.socket()
        call = (lambda: a.accept()) if op == "accept" else (lambda: ll.accept(a))
        def feed():
            b._sock.setblocking(True)
            b._sock.connect(a.getsockname())
        return a, b, call, feed, None
    if op in ("ll.recv", "ll.recvmsg"):
        a, b = trio.socket.socketpair()
        call = (lambda: ll.recv(a, 1000)) if op == "ll.recv" else (lambda: ll.recvmsg(a, 1000, 64))
        return a, b, call, (lambda: b._sock.send(b"x" * 10)), None
    raise AssertionError(op)


def one_run(op, at):
    injector = Injector(at) if MODE == "lines" else StepInjector(at)
    result = {}

    async def feeder(feed):
        await trio.testing.wait_all_tasks_blocked()
        injector.armed = False
        result["fed"] = True
        feed()

    async def main():
        a, b, call, feed, check = await make(op)
        result["check"] = check
        result["socks"] = (a, b)
        trio.lowlevel.spawn_system_task(feeder, feed)
        if MODE == "lines":
            sys.settrace(injector.global_trace)
        else:
            trio.lowlevel.add_instrument(injector)
        injector.armed = True
        try:
            got = await call()
            if isinstance(got, tuple) and isinstance(got[0], trio.socket.SocketType):
                got[0].close()
        except BaseException:
            result["violations"] = violations()
            raise
        finally:
            injector.armed = False
            sys.settrace(None)
        result["violations"] = violations()

    try:
        trio_uring.run(main)
        outcome = "returned"
    except KeyboardInterrupt:
        outcome = "KeyboardInterrupt"
    for s in result.get("socks", ()):
        s._sock.close()  # (outside the run: trio's close would notify the run's manager)
    assert not result.get("violations"), (op, at, result["violations"])
    if result.get("check"):
        result["check"]()
    assert _manager.lingering() == 0, (op, at, "the kernel still holds requests of a closed run")
    # Injected: the run must end with KeyboardInterrupt (trio's TrioInternalError, or
    # anything else, fails the child).  Lines counted while the run loop waits depend
    # on timing: an injection point after the wait ended is not reached.
    assert outcome == ("KeyboardInterrupt" if injector.fired else "returned"), (op, at, outcome)
    return injector.fired, injector.count


for op in OPS:
    fired, lines = one_run(op, 0)  # count the lines (no injection)
    assert not fired and lines > (10 if MODE == "lines" else 2), (op, lines)
    injected = sum(one_run(op, at)[0] for at in range(1, lines + 1))
    assert injected >= lines // 2, (op, injected, lines)
    print(op, lines, injected)
finish()
"""

KI_OPS = [
    "recv-pool",
    "recv-big",
    "recv-provided",
    "recv_into",
    "send",
    "accept",
    "ll.recv",
    "ll.recv_into",
    "ll.send",
    "ll.recvmsg",
    "ll.accept",
]


@pytest.mark.skipif(not PURE, reason="line tracing needs the pure build (TRIO_URING_PURE=1)")
@pytest.mark.parametrize("op", KI_OPS)
def test_keyboard_interrupt_at_every_line(op: str) -> None:
    """Finding 3: a KeyboardInterrupt at any line of trio_uring's code on an operation's
    path ends the run with KeyboardInterrupt (never TrioInternalError), and no buffer a
    queued SQE references was re-pooled or released meanwhile; the ring ends idle."""
    out = run_scenario(f"OPS = [{op!r}]\nMODE = 'lines'\n" + KI_INJECTOR, TRIO_URING_PURE="1")
    assert out.startswith(op), out


@pytest.mark.parametrize("op", KI_OPS)
def test_keyboard_interrupt_at_every_scheduler_event(op: str) -> None:
    """The same, with the KeyboardInterrupt at every task step and I/O wait of the run, in
    this build (compiled code has no lines to trace)."""
    out = run_scenario(f"OPS = [{op!r}]\nMODE = 'steps'\n" + KI_INJECTOR)
    assert out.startswith(op), out


# ------------------------------------------------------------------ fd reuse
FD_REUSE = r"""
import errno, os


def describe(exc):
    if isinstance(exc, OSError):
        return f"OSError({errno.errorcode.get(exc.errno, exc.errno)})"
    return type(exc).__name__


async def waiting(call, closer):
    '''Start ``call`` in a task, wait until it blocks, run ``closer``; its outcome.'''
    box = {}

    async def task():
        try:
            await call()
            box["r"] = "returned"
        except Exception as exc:
            box["r"] = describe(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(task)
        await trio.testing.wait_all_tasks_blocked()
        closer()
    return box["r"]


async def after_close(call):
    try:
        await call()
        return "returned"
    except Exception as exc:
        return describe(exc)


async def reusing(fd, make):
    '''Make sockets until one gets number ``fd`` (the lowest free one: the first).'''
    made = await make()
    assert made[0].fileno() == fd, (made[0].fileno(), fd)
    return made


def fill_up(sock):
    chunk = b"\x77" * 65536
    while True:
        try:
            sock.send(chunk)
        except BlockingIOError:
            return


async def quiet(sock):
    '''Nothing arrives at ``sock`` while the loop runs a few rounds.'''
    for _ in range(20):
        await trio.sleep(0)
    try:
        got = sock._sock.recv(65536, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    return got == b""


async def recv_case():
    a, b = trio.socket.socketpair()
    fd = a.fileno()
    out = [await waiting(lambda: a.recv(100), a.close)]
    out.append(await after_close(lambda: a.recv(100)))
    c, d = await reusing(fd, lambda: _pair())
    await d.send(b"new")
    out.append(await c.recv(100))  # nothing of it taken by the old receive
    b.close(); c.close(); d.close()
    return out


async def _pair():
    return trio.socket.socketpair()


async def send_case():
    a, b = trio.socket.socketpair()
    fd = a.fileno()
    fill_up(a._sock)
    out = [await waiting(lambda: a.send(b"z" * 100000), a.close)]
    out.append(await after_close(lambda: a.send(b"z")))
    c, d = await reusing(fd, lambda: _pair())
    out.append(await quiet(d))  # the old send wrote nothing into the new connection
    got = b""
    while True:
        try:
            chunk = b._sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if not chunk:
            break
        got += chunk
    out.append(set(got) <= {0x77})  # the peer got filler only, no byte of the cancelled send
    b.close(); c.close(); d.close()
    return out


async def _listener():
    s = trio.socket.socket()
    await s.bind(("127.0.0.1", 0))
    s.listen()
    return (s,)


async def accept_case():
    (a,) = await _listener()
    fd = a.fileno()
    out = [await waiting(a.accept, a.close)]
    out.append(await after_close(a.accept))
    (c,) = await reusing(fd, _listener)
    client = trio.socket.socket()
    await client.connect(c.getsockname())
    conn, _ = await c.accept()  # the old accept did not take it
    out.append(True)
    conn.close(); client.close(); c.close()
    return out


async def connect_case():
    (lst,) = await _listener()
    lst.listen(0)
    first = trio.socket.socket()
    await first.connect(lst.getsockname())  # fills the accept queue
    a = trio.socket.socket()
    fd = a.fileno()
    address = lst.getsockname()
    out = [await waiting(lambda: a.connect(address), a.close)]
    out.append(await after_close(lambda: a.connect(address)))
    new = trio.socket.socket()
    assert new.fileno() == fd
    try:
        new.getpeername()
        out.append("connected by the old connect")
    except OSError as exc:
        out.append(describe(exc))
    new.close(); first.close(); lst.close()
    return out


async def main():
    return [await recv_case(), await send_case(), await accept_case(), await connect_case()]


on_epoll = trio.run(main)
on_uring = trio_uring.run(main)
print(on_epoll)
print(on_uring)
assert on_uring == on_epoll, (on_uring, on_epoll)
assert on_uring[0][0] == "ClosedResourceError", on_uring
assert on_uring[0][2] == b"new", on_uring
assert on_uring[1][2:] == [True, True], on_uring
finish()
"""


def test_fd_reuse_after_another_task_closed_the_socket() -> None:
    """A trio socket closed by another task while a recv/send/accept/connect waits: the
    waiter gets what it gets on trio's epoll backend (``ClosedResourceError``; a call
    afterwards ``OSError(EBADF)``), and a new socket with the same number is not touched
    by the old operation (its data not taken, nothing sent or accepted on it)."""
    run_scenario(FD_REUSE)


INT_SUBCLASS_FLAGS = r"""
import trio_uring._net._trio_sockets as ts

ATTACKS = []


def make_flags(t):
    class EvilFlags(int):
        '''An int subclass whose every method attacks the buffer (CPython calls none).'''

        def _attack(self, *args):
            ATTACKS.append(1)
            t.attack()
            return int.__index__(self)

        __index__ = __int__ = _attack
        __lt__ = __gt__ = __le__ = __ge__ = lambda self, other: (self._attack(), False)[1]
        __and__ = __rand__ = __or__ = __ror__ = lambda self, other: (self._attack(), 0)[1]

    return EvilFlags(0)


async def main():
    for kind in ("bytearray", "memoryview", "mmap"):
        # the stdlib calls none of the subclass's methods
        a, b = pair()
        b.send(PAYLOAD[:16])
        t = Target(kind, fill=0x66)
        assert a.recv_into(t.buffer, 16, make_flags(t)) == 16
        assert ATTACKS == []
        a.close(); b.close()
        # a waiting receive and a waiting send on a UringSocket: neither does trio_uring
        a, b = trio.socket.socketpair()
        assert type(a) is ts.UringSocket
        t = Target(kind, fill=0x66)
        box = {}

        async def receive():
            box["n"] = await a.recv_into(t.buffer, 16, make_flags(t))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            b._sock.send(PAYLOAD[:32])
        assert box["n"] == 16 and ATTACKS == [], (box, ATTACKS)
        assert t.head() == PAYLOAD[:16] + b"\x66" * 48
        t.check_guard()
        s = Target(kind, fill=0x66)
        s.base[:64] = PAYLOAD[64:128]
        assert await a.send(s.buffer, make_flags(s)) == len(s.buffer)
        assert await a.recv(5, make_flags(s)) == PAYLOAD[16:21]
        assert ATTACKS == []
        got = drain(b._sock)
        assert got == bytes(s.base[: len(s.buffer)]), got[:80]
        a.close(); b.close()

trio_uring.run(main)
finish()
"""


def test_int_subclass_flags_run_no_user_code() -> None:
    """``MSG_*`` flags are ``IntFlag`` members, so trio sockets accept ``int`` subclasses;
    like CPython, trio_uring calls none of their methods (``__index__``, ``__and__``,
    ``__lt__``...): the buffer measured is the buffer submitted, the SQE gets an ``int``."""
    run_scenario(INT_SUBCLASS_FLAGS)


FD_SWAP = r"""
import errno, os

SWAPPED = []


def swapper(sock, value):
    '''An index-like argument that closes ``sock`` and opens a new connection, whose
    first socket gets the closed number; returns ``value`` (a valid size or flags).'''
    fd = sock.fileno()

    def swap():
        sock.close()
        c, d = pair()
        assert c.fileno() == fd, (c.fileno(), fd)
        SWAPPED.append((c, d))

    return Evil(swap, value)


def stdlib_errors(name, sock, evil):
    calls = {
        "recv": lambda: sock.recv(evil),
        "recv_into": lambda: sock.recv_into(bytearray(64), 0, evil),
        "send": lambda: sock.send(b"leak", evil),
        "sendmsg": lambda: sock.sendmsg([b"leak"], [], evil),
        "recvmsg": lambda: sock.recvmsg(64, 0, evil),
        "shutdown": lambda: sock.shutdown(evil),
    }
    return outcome_of(calls[name])


async def uring_errors(name, sock, evil):
    calls = {
        "recv": lambda: ll.recv(sock, evil),
        "recv_into": lambda: ll.recv_into(sock, bytearray(64), 0, evil),
        "send": lambda: ll.send(sock, b"leak", evil),
        "sendmsg": lambda: ll.sendmsg(sock, [b"leak"], [], evil),
        "recvmsg": lambda: ll.recvmsg(sock, 64, 0, evil),
        "shutdown": lambda: ll.shutdown(sock, evil),
        "poll": lambda: ll.poll(sock, evil),
    }
    return await aoutcome_of(calls[name])


async def main():
    for name in ("recv", "recv_into", "send", "sendmsg", "recvmsg", "shutdown", "poll"):
        outcomes = []
        for world in ("stdlib", "uring"):
            if world == "stdlib" and name == "poll":
                outcomes.append(("OSError", os.strerror(errno.EBADF)))
                continue
            a, b = pair()
            evil = swapper(a, 64 if name == "recv" else 0)
            if world == "stdlib":
                got = stdlib_errors(name, a, evil)
            else:
                # (a guard: acting on the new connection's number would wait for its data)
                with trio.fail_after(10):
                    got = await uring_errors(name, a, evil)
            if got[0] == "OSError" and "Bad file descriptor" in got[1]:
                got = ("OSError", os.strerror(errno.EBADF))
            outcomes.append(got)
            c, d = SWAPPED.pop()
            # the new connection is untouched: nothing sent on it, nothing taken from it
            d.send(b"mine")
            assert drain(c) == b"mine", (world, name)
            assert drain(d) == b"", (world, name, "the old call sent into the new connection")
            c.shutdown(socket.SHUT_WR)
            assert drain(d) == b"", (world, name)
            b.close(); c.close(); d.close()
        assert outcomes[0] == outcomes[1] == ("OSError", os.strerror(errno.EBADF)), (name, outcomes)

trio_uring.run(main)
finish()
"""


def test_fd_taken_after_the_callers_code_ran() -> None:
    """An ``__index__`` that closes the socket and lets a new connection take its number:
    the call acts on the number only after all the caller's code ran, so it gets
    ``OSError(EBADF)`` (as the stdlib method does) and the new connection is untouched."""
    run_scenario(FD_SWAP)
