"""The ring extension (``trio_uring/_core/_ringext.c``): the hot path's C calls.

A compiled install has it; ``TRIO_URING_PURE=1`` (and ``TRIO_URING_COMPILE=0``) runs
without it, through cffi, and the rest of the suite runs both ways.  These tests
check what the extension adds: its buffer export keeps the one buffer rule, its
SQE prep refuses what cffi would, and its ``Waker`` does what trio's
``Runner.reschedule`` does (instrument hook, asserts, guest mode).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring
from trio_uring._core import _ring, _trio_compat
from trio_uring._core._manager import current_manager
from trio_uring._core._ring import ext

needs_ext = pytest.mark.skipif(
    ext is None, reason="no ring extension (pure or TRIO_URING_COMPILE=0)"
)


def test_pure_runs_without_the_extension() -> None:
    code = "from trio_uring._core._ring import ext; print(ext is None)"
    env = dict(os.environ, TRIO_URING_PURE="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "True"


@needs_ext
def test_export_holds_the_buffer_until_released_once() -> None:
    buf = bytearray(b"abcdef")
    held = ext.export(buf, True)
    assert len(held) == 6
    with pytest.raises(BufferError):
        buf.extend(b"x")  # exported: cannot resize
    ext.release(held)
    buf.extend(b"x")
    assert len(held) == 0
    ext.release(held)  # idempotent, as Operation.release is


@needs_ext
@pytest.mark.parametrize("bad", ["text", 5, None])
def test_export_refuses_non_buffers(bad: object) -> None:
    with pytest.raises(TypeError):
        ext.export(bad, False)


@needs_ext
def test_export_refuses_read_only_for_writing() -> None:
    with pytest.raises(BufferError):
        ext.export(b"bytes", True)
    ext.release(ext.export(b"bytes", False))


@needs_ext
def test_release_forwards_cffi_exports() -> None:
    from trio_uring._core._ring_cffi import ffi

    buf = bytearray(4)
    cdata = ffi.from_buffer(buf)
    ext.release(cdata)
    buf.extend(b"x")  # released by ffi.release


@needs_ext
async def test_prep_refuses_out_of_range_fields() -> None:
    manager = current_manager()
    held = ext.export(b"data", False)
    try:
        args: list[Any] = [manager.ring.address, 26, 0, 0, 0, 0, -1, 0, 1, 0, 0, 0, held]
        for index, value in ((1, 256), (3, 2**31), (4, -1), (9, 2**16), (11, 2**16)):
            bad = list(args)
            bad[index] = value
            with pytest.raises(OverflowError):
                ext.prep(*bad)
        bad = list(args)
        bad[5] = 5  # offset past the end of the 4-byte buffer
        with pytest.raises(ValueError):
            ext.prep(*bad)
        bad = list(args)
        bad[12] = None  # length -1 without a buffer
        with pytest.raises(OverflowError):
            ext.prep(*bad)
    finally:
        ext.release(held)


@needs_ext
async def test_send_through_the_extension_releases_at_completion() -> None:
    a, b = trio.socket.socketpair()
    with a, b:
        data = bytearray(b"x" * 1000)
        assert await trio_uring.lowlevel.send(a, data) == 1000
        data.extend(b"y")  # the export was released when send returned
        assert await b.recv(2000) == b"x" * 1000


@needs_ext
async def test_manager_reschedule_is_the_waker() -> None:
    assert type(current_manager().reschedule) is ext.Waker


class _Scheduled(trio.abc.Instrument):
    def __init__(self) -> None:
        self.tasks: list[trio.lowlevel.Task] = []

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        self.tasks.append(task)


async def test_waker_calls_the_task_scheduled_hook() -> None:
    manager = current_manager()
    me = trio.lowlevel.current_task()
    instrument = _Scheduled()
    trio.lowlevel.add_instrument(instrument)
    try:

        async def wake_me() -> None:
            await trio.testing.wait_all_tasks_blocked()
            manager.reschedule(me, outcome_value())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wake_me)
            assert (
                await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED) == 7
            )
    finally:
        trio.lowlevel.remove_instrument(instrument)
    assert me in instrument.tasks


def outcome_value() -> Any:
    import outcome

    return outcome.Value(7)


async def test_waker_asserts_as_trio_does() -> None:
    manager = current_manager()
    me = trio.lowlevel.current_task()

    async def wake_me_twice() -> None:
        await trio.testing.wait_all_tasks_blocked()
        manager.reschedule(me, outcome_value())
        with pytest.raises(AssertionError):  # already rescheduled: _next_send_fn is set
            manager.reschedule(me, _trio_compat.READY)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wake_me_twice)
        assert await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED) == 7


async def test_waker_forwards_other_call_shapes_to_trio() -> None:
    manager = current_manager()
    me = trio.lowlevel.current_task()

    async def wake_me() -> None:
        await trio.testing.wait_all_tasks_blocked()
        manager.reschedule(me)  # one argument: trio's own (Value(None))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wake_me)
        assert (
            await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED) is None
        )


async def test_fast_reschedule_falls_back_without_the_extension() -> None:
    runner = _trio_compat.current_runner()
    assert _trio_compat.fast_reschedule(runner, None) == runner.reschedule
    if ext is not None:
        assert type(_trio_compat.fast_reschedule(runner, ext)) is ext.Waker


def test_ring_address_is_the_handle() -> None:
    ring = _ring.Ring(8)
    try:
        from trio_uring._core._ring_cffi import ffi

        assert ring.address == int(ffi.cast("uintptr_t", ring.handle))
    finally:
        ring.close()


# ----------------------------------------------- park / completed_checkpoint
# (_trio_compat's: the extension's objects in a compiled install, the generators
# under TRIO_URING_PURE=1; both must behave alike)


def _iterator(awaitable: Any) -> Any:
    return awaitable.__await__() if hasattr(awaitable, "__await__") else awaitable


async def test_completed_checkpoint_is_a_checkpoint() -> None:
    with trio.testing.assert_checkpoints():
        await _trio_compat.completed_checkpoint()
    reached = False
    with trio.CancelScope() as scope:
        scope.cancel()
        await _trio_compat.completed_checkpoint()  # raises Cancelled
        reached = True  # pragma: no cover
    assert scope.cancelled_caught
    assert not reached


async def test_park_wakes_with_ready_a_value_or_an_error() -> None:
    import outcome

    me = trio.lowlevel.current_task()
    abort = _trio_compat.WaitTaskRescheduled(lambda _: trio.lowlevel.Abort.FAILED)
    for wake_with in (_trio_compat.READY, outcome.Value(5), outcome.Error(KeyError("k"))):

        async def waker(value: Any = wake_with) -> None:
            await trio.testing.wait_all_tasks_blocked()
            trio.lowlevel.reschedule(me, value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waker)
            if isinstance(wake_with, outcome.Error):
                with pytest.raises(KeyError):
                    await _trio_compat.park(abort)
            else:
                assert await _trio_compat.park(abort) is None


async def test_park_cancelled() -> None:
    trap = _trio_compat.WaitTaskRescheduled(lambda _: trio.lowlevel.Abort.SUCCEEDED)
    with trio.move_on_after(0) as scope:
        await _trio_compat.park(trap)
    assert scope.cancelled_caught


def test_park_protocol_outside_a_run() -> None:
    trap = object()
    it = _iterator(_trio_compat.park(trap))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        it.send(1)  # a just-started coroutine takes only None
    it = _iterator(_trio_compat.park(trap))  # type: ignore[arg-type]
    assert it.send(None) is trap
    with pytest.raises(StopIteration):
        it.send(_trio_compat.READY)
    with pytest.raises((RuntimeError, StopIteration)):
        it.send(None)  # used up
    it = _iterator(_trio_compat.park(trap))  # type: ignore[arg-type]
    assert next(it) is trap
    with pytest.raises(ValueError, match="thrown"):
        it.throw(ValueError("thrown"))
    it = _iterator(_trio_compat.park(trap))  # type: ignore[arg-type]
    assert next(it) is trap
    it.close()


async def test_plain_trio_socket() -> None:
    sock = trio.socket.socket()
    with sock:
        assert _trio_compat.plain_trio_socket(sock)
        std = getattr(sock, _trio_compat.STDLIB_SOCKET_FIELD)
        assert std.fileno() == sock.fileno()
        assert getattr(sock, _trio_compat.SHUT_WR_FIELD) is sock.did_shutdown_SHUT_WR

    class Overridden(type(sock)):  # type: ignore[misc]
        def fileno(self) -> int:
            return super().fileno()

    other = Overridden(socket.socket())
    with other:
        assert not _trio_compat.plain_trio_socket(other)
    assert not _trio_compat.plain_trio_socket(object())


async def test_enter_is_trios_cancel_test_with_a_counted_cancel_point() -> None:
    """``_trio_fast.enter()`` (the extension's ``enter()`` when bound, else Python):
    the current task with a cancel point counted, ``False`` without counting when the
    task must not go on, ``None`` outside a task."""
    from trio_uring._core import _trio_fast

    assert (_trio_fast._ext_enter is not None) == (ext is not None)
    task = trio.lowlevel.current_task()
    points = task._cancel_points
    assert _trio_fast.enter() is task
    assert task._cancel_points == points + 1
    with trio.CancelScope() as scope:
        scope.cancel()
        assert _trio_fast.enter() is _trio_fast.CANCEL_PENDING is False
        assert task._cancel_points == points + 1
    with trio.CancelScope(shield=True) as scope:
        scope.cancel()
        assert _trio_fast.enter() is False  # (its own scope is cancelled)
    with trio.CancelScope() as outer:
        outer.cancel()
        with trio.CancelScope(shield=True):
            assert _trio_fast.enter() is task  # shielded from the cancelled one


def test_enter_outside_a_task() -> None:
    from trio_uring._core import _trio_fast

    assert _trio_fast.enter() is None
    assert _trio_fast.current_task() is None


# ------------------------------------------------ one declaration of the C ABI
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _c_params(decl: str) -> list[str]:
    """A C parameter list's types, names dropped and whitespace normalised; the ring
    extension does not know ``tu_ring`` and ``tu_pbuf`` and says ``void *``."""
    import re

    types = []
    for param in decl.split(","):
        param = re.sub(r"\s+", " ", param.replace("*", " * ")).strip()
        words = param.split(" ")
        if words[-1] not in ("*",) and len(words) > 1:
            words = words[:-1]  # the parameter's name
        kind = " ".join(words).replace(" *", "*")
        types.append(re.sub(r"^tu_(ring|pbuf)\*$", "void*", kind))
    return types


def test_ring_extension_and_cffi_share_one_declaration() -> None:
    """The extension calls ``tu_prep``, ``tu_pbuf_give`` and ``tu_nop_if_unsubmitted``
    through pointers typed from ``_ring_api.h``, the header the cffi cdef reads (cffi
    checks the definitions in ``_build_ring.C_SOURCE`` against it): no second copy."""
    import re

    from trio_uring._core import _build_ring

    core = os.path.join(_ROOT, "trio_uring", "_core")
    with open(os.path.join(core, "_ringext.c")) as f:
        ringext = f.read()
    with open(os.path.join(core, "_ring_api.h")) as f:
        header = f.read()
    declared = set(re.findall(r"\b(tu_\w+)\(", header))
    assert declared == {"tu_prep", "tu_nop_if_unsubmitted", "tu_pbuf_give"}
    assert header in _build_ring.CDEF
    assert '#include "_ring_api.h"' in ringext
    # Neither the cdef outside the header nor the extension declares them again.
    rest = _build_ring.CDEF.replace(header, "")
    assert not declared & set(re.findall(r"\b(tu_\w+)\(", rest))
    assert not re.search(r"typedef [^;]*\(\*tu_\w+", ringext)
    assert not declared & set(re.findall(r"\b(tu_\w+)\(", ringext))


def test_ring_extension_max_rw_count_is_the_kernel_constant() -> None:
    import re

    from trio_uring._core._constants import MAX_RW_COUNT

    with open(os.path.join(_ROOT, "trio_uring", "_core", "_ringext.c")) as f:
        (value,) = re.findall(r"#define TU_MAX_RW_COUNT (0x[0-9A-Fa-f]+)LL", f.read())
    assert int(value, 16) == MAX_RW_COUNT
    if ext is not None:
        assert ext.MAX_RW_COUNT == MAX_RW_COUNT
