"""The core's memory-safety rules (issue 19), tested where they are enforced.

* an SQE's address and length come from one export, checked in the call that
  writes the SQE (the ring extension's prep, and the cffi path of ``submit``);
* a queued SQE is turned into a NOP only if its slot still holds that request;
* a splice is filed under both its fds, so ``notify_closing`` of either ends it;
* a closed run's manager never releases what the kernel may still hold;
* the ring extension's park is seen by the garbage collector;
* at interpreter exit, what lingers in the kernel is never freed.
"""

from __future__ import annotations

import gc
import os
import socket
import warnings
import weakref
from typing import cast

import pytest
import trio

import trio_uring
from tests._child import run_child
from tests._pairs import tcp_socketpair
from trio_uring._core import _sqe
from trio_uring._core._manager import UringIOManager, lingering
from trio_uring._core._operation import ABANDONED, COMPLETED, Operation
from trio_uring._core._ring import Ring, ext
from trio_uring._core._ring_cffi import ffi, lib
from trio_uring.lowlevel import current_manager


# ----------------------------------------------------- one export, one check
@pytest.mark.parametrize(("offset", "length"), [(0, 17), (8, 9), (17, 0), (17, -1), (4, 1 << 20)])
async def test_submit_refuses_a_range_outside_the_export(offset: int, length: int) -> None:
    manager = current_manager()
    a, b = socket.socketpair()
    with a, b:
        buf = bytearray(16)
        before = manager.statistics().operations_in_flight
        with pytest.raises(ValueError, match=r"outside|past the end"):
            manager.submit(_sqe.recv(a.fileno(), length, 0, offset), buffer=buf, writable=True)
        assert manager.statistics().operations_in_flight == before
        buf.extend(b"x")  # the export was released: the buffer is resizable again
        await trio.lowlevel.checkpoint()


async def test_submit_takes_the_whole_rest_of_the_export() -> None:
    manager = current_manager()
    a, b = socket.socketpair()
    with a, b:
        buf = bytearray(b"-" * 16)
        b.send(b"0123456789abcdefXYZ")
        op = manager.submit(_sqe.recv(a.fileno(), -1, 0, 4), buffer=buf, writable=True)
        assert await op == 12
        assert buf == b"----0123456789ab"
        assert a.recv(100) == b"cdefXYZ"


@pytest.mark.parametrize("what", ["wrong type", "outside"])
async def test_a_refused_submit_releases_what_the_operation_held(what: str) -> None:
    """One rollback for every way ``submit`` can fail: the record the caller handed in is
    ``COMPLETED`` with every export released (its earlier ones too)."""
    manager = current_manager()
    a, b = socket.socketpair()
    with a, b:
        earlier = bytearray(8)
        op = Operation(manager, a.fileno())
        op.export(earlier, writable=True)
        buf: object = "not a buffer" if what == "wrong type" else bytearray(4)
        with pytest.raises(TypeError if what == "wrong type" else ValueError):
            manager.submit(_sqe.recv(a.fileno(), 8, 0, 0), op=op, buffer=buf, writable=True)
        assert op.state == COMPLETED
        assert op.exports is None
        earlier.extend(b"x")  # not exported any more: resizable
        await trio.lowlevel.checkpoint()


async def test_submit_takes_only_the_sqe_positionally() -> None:
    manager = current_manager()
    a, b = socket.socketpair()
    with a, b:
        before = manager.statistics().operations_in_flight
        with pytest.raises(TypeError):
            manager.submit(_sqe.poll_add(a.fileno(), 1), None)  # type: ignore[misc]
        assert manager.statistics().operations_in_flight == before
        await trio.lowlevel.checkpoint()


@pytest.mark.skipif(ext is None, reason="the ring extension is not in use")
def test_ring_extension_prep_takes_only_ints() -> None:
    class Sneaky:
        def __index__(self) -> int:  # pragma: no cover - must never run
            raise AssertionError("user code ran while an SQE was written")

    ring = Ring(entries=8)
    try:
        base = ext.export(bytearray(8), True)
        try:
            with pytest.raises(TypeError, match="must be int"):
                ext.prep(ring.address, 0, 0, -1, 0, 0, Sneaky(), 0, 99, 0, 0, 0, base)
            with pytest.raises(ValueError, match="outside"):
                ext.prep(ring.address, 0, 0, -1, 0, 4, 5, 0, 99, 0, 0, 0, base)
            assert lib.tu_unsubmitted(ring.handle) == 0
        finally:
            ext.release(base)
    finally:
        ring.close()


# -------------------------------------------------- NOP only the same request
def test_nop_only_the_request_the_slot_still_holds() -> None:
    """After the 32-bit SQ counter wraps, an old position can name another request's
    slot: the slot's user_data must match before it becomes a NOP."""
    ring = Ring(entries=8)
    try:
        r = ring.handle
        pos = lib.tu_prep(r, 0, 0, -1, 0, ffi.NULL, 0, 0, 1234, 0, 0, 0)
        assert pos >= 0
        assert lib.tu_nop_if_unsubmitted(r, pos, 999) == 0  # another request's position
        assert lib.tu_nop_if_unsubmitted(r, pos + (1 << 32), 999) == 0  # (wrapped)
        assert lib.tu_nop_if_unsubmitted(r, pos, 1234) == 1
        assert lib.tu_nop_if_unsubmitted(r, pos, 1234) == 0  # now user_data 0: not it
    finally:
        ring.close()


@pytest.mark.skipif(ext is None, reason="the ring extension is not in use")
def test_prep_that_cannot_return_its_position_leaves_a_nop() -> None:
    """If boxing the SQ position fails after the SQE was queued, the caller cannot
    know the position and releases the buffer: the SQE must already be a NOP."""
    run_child(
        """
        import _testcapi
        from trio_uring._core._ring import Ring, ext
        from trio_uring._core._ring_cffi import lib
        ring = Ring(entries=512)
        r = ring.handle
        for _ in range(300):  # positions above 256 are not cached small ints
            assert ext.prep(ring.address, 0, 0, -1, 0, 0, 0, 0, 7, 0, 0, 0, None) >= 0
            lib.tu_submit(r)
        base = ext.export(bytearray(64), True)
        args = (ring.address, 0, 0, -1, 0, 0, 64, 0, 4242, 0, 0, 0, base)
        for start in range(0, 8):
            _testcapi.set_nomemory(start, start + 1)
            try:
                ext.prep(*args)
            except MemoryError:
                _testcapi.remove_mem_hooks()
                break
            finally:
                _testcapi.remove_mem_hooks()
            lib.tu_submit(r)
        else:
            raise SystemExit("no allocation failed")
        pos = lib.tu_unsubmitted(r)
        assert pos == 1, pos
        # The queued slot no longer names request 4242: it is a NOP.
        assert lib.tu_nop_if_unsubmitted(r, 300 + start, 4242) == 0
        ext.release(base)
        ring.close()
        print("ok")
        """
    )


# ------------------------------------------------------ a splice's two fds
async def test_notify_closing_of_a_splice_input_ends_it() -> None:
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        result: list[BaseException] = []

        async def splice() -> None:
            try:
                await trio_uring.lowlevel.splice(in_r, -1, out_w, -1, 4096)
            except trio.ClosedResourceError as exc:
                result.append(exc)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(splice)
                await trio.testing.wait_all_tasks_blocked()
                trio.lowlevel.notify_closing(in_r)  # the input side, not the SQE's fd
        assert len(result) == 1
    finally:
        for fd in (in_r, in_w, out_r, out_w):
            os.close(fd)


# ------------------------------------------ a closed run's lingering requests
def _leave_a_zerocopy_send_lingering(
    sock: socket.socket, buf: bytearray
) -> tuple[object, object, int]:
    """Run a zero-copy send of ``buf`` (larger than the socket buffers) to a peer that
    does not read: the run ends with its notification pending (the queued part stays
    pinned until the peer reads it).  Returns the manager, the operation and the count
    the kernel took."""
    from trio_uring._ops._zerocopy import submit_zc

    box: list[object] = []

    async def main() -> None:
        manager = current_manager()
        op = submit_zc(manager, sock.fileno(), buf, 0, -1, socket.MSG_NOSIGNAL, False)
        sent = await op  # the result; the notification is still to come
        assert 0 < sent < len(buf)
        box[:] = [manager, op, sent]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # "the kernel still holds ..."
        trio_uring.run(main)
    return box[0], box[1], cast(int, box[2])


@pytest.mark.needs_kernel("IORING_SEND_ZC_REPORT_USAGE")
def test_withdraw_after_the_run_keeps_what_the_kernel_holds() -> None:
    a, b = tcp_socketpair()
    with a, b:
        buf = bytearray(b"z" * (16 << 20))
        manager, op, sent = _leave_a_zerocopy_send_lingering(a, buf)
        assert lingering() == 1
        assert isinstance(manager, UringIOManager) and isinstance(op, Operation)
        assert manager.withdraw(op)  # e.g. an aclose() of an object left from that run
        assert op.state == ABANDONED
        with pytest.raises(BufferError):
            buf.extend(b"x")  # still exported: the kernel may read it
        assert _read_all(b, sent) == bytes(buf[:sent])  # the peer reads: the pages are let go
        for _ in range(10_000):
            if lingering() == 0:
                break
            os.sched_yield()
        assert lingering() == 0
        assert op.state == COMPLETED
        buf.extend(b"x")  # released at the notification


def _read_all(sock: socket.socket, n: int) -> bytes:
    sock.setblocking(True)
    data = b""
    while len(data) < n:
        data += sock.recv(n - len(data))
    return data


# ---------------------------------------------------------- the C park
@pytest.mark.skipif(ext is None, reason="the ring extension is not in use")
def test_ring_extension_park_is_collectable() -> None:
    class Trap:
        park: object

    trap = Trap()
    trap.park = ext.park(trap)  # a cycle through the C object
    alive = weakref.ref(trap)
    del trap
    gc.collect()
    assert alive() is None


# ---------------------------------------------------- interpreter exit
@pytest.mark.needs_kernel("IORING_SEND_ZC_REPORT_USAGE")
def test_interpreter_exit_never_frees_what_the_kernel_holds() -> None:
    """A zero-copy send still lingering at exit: its buffer is never freed by Python."""
    proc = run_child(
        """
        import os, weakref
        from tests._pairs import tcp_socketpair
        from tests.test_core_safety import _leave_a_zerocopy_send_lingering

        class Buf(bytearray):
            pass

        def freed(_):
            os.write(1, b"freed while the kernel held it\\n")

        a, b = tcp_socketpair()
        buf = Buf(b"z" * (16 << 20))
        _leave_a_zerocopy_send_lingering(a, buf)
        watch = weakref.ref(buf, freed)
        del buf
        print("exiting", flush=True)
        """
    )
    assert proc.stdout == "exiting\n"
