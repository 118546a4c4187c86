"""The I/O manager under trio's own APIs: readiness waits, errors, threads, guest mode."""

from __future__ import annotations

import errno
import functools
import os
import signal
import socket
import sys
import threading

import pytest
import trio
import trio.testing

import trio_uring
from trio_uring._core import _sqe
from trio_uring.lowlevel import current_manager


async def test_statistics_backend() -> None:
    stats = trio.lowlevel.current_statistics().io_statistics
    assert stats.backend == "io_uring"
    assert stats.tasks_waiting_read >= 1  # trio's run_sync_soon task
    assert stats.sqes_submitted >= 1
    assert stats.enter_calls >= 1


async def test_wait_readable_writable_roundtrip() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        with trio.testing.assert_checkpoints():
            await trio.lowlevel.wait_writable(a)
        a.send(b"x")
        with trio.testing.assert_checkpoints():
            await trio.lowlevel.wait_readable(b)
        assert b.recv(1) == b"x"


async def test_wait_on_bad_fd_raises_ebadf() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        await trio.lowlevel.wait_readable(r)
    assert info.value.errno == errno.EBADF
    assert current_manager().statistics().tasks_waiting_read == 1


async def test_second_waiter_is_busy() -> None:
    a, b = socket.socketpair()
    with a, b:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.lowlevel.wait_readable, a)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await trio.lowlevel.wait_readable(a)
            nursery.cancel_scope.cancel()
    stats = current_manager().statistics()
    assert stats.tasks_waiting_read == 1


async def test_notify_closing_wakes_waiters_and_unknown_fd_is_noop() -> None:
    a, b = socket.socketpair()
    trio.lowlevel.notify_closing(12345)  # unknown fd: no-op
    results: list[type[BaseException]] = []

    async def waiter() -> None:
        try:
            await trio.lowlevel.wait_readable(a)
        except trio.ClosedResourceError as exc:
            results.append(type(exc))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        trio.lowlevel.notify_closing(a)
        a.close()
    b.close()
    assert results == [trio.ClosedResourceError]


async def test_cancelled_waits_leave_nothing_in_flight() -> None:
    socks = [socket.socketpair() for _ in range(20)]
    try:
        with trio.move_on_after(0.01):
            async with trio.open_nursery() as nursery:
                for a, _ in socks:
                    nursery.start_soon(trio.lowlevel.wait_readable, a)
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(0)  # one more tick to reap the cancel CQEs
        stats = current_manager().statistics()
        assert stats.tasks_waiting_read == 1
        assert stats.operations_in_flight == 1
    finally:
        for a, b in socks:
            a.close()
            b.close()


async def test_serve_tcp_and_open_tcp_stream() -> None:
    async def echo(stream: trio.SocketStream) -> None:
        async for data in stream:
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, echo, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        async with await trio.open_tcp_stream("127.0.0.1", port) as client:
            for i in range(50):
                msg = f"hello {i}".encode()
                await client.send_all(msg)
                got = b""
                while len(got) < len(msg):
                    got += await client.receive_some(100)
                assert got == msg
        nursery.cancel_scope.cancel()


async def test_threads_both_ways() -> None:
    def in_thread() -> int:
        return trio.from_thread.run_sync(lambda: 41) + 1

    assert await trio.to_thread.run_sync(in_thread) == 42


async def test_subprocess() -> None:
    result = await trio.run_process(
        [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())"],
        stdin=b"hello",
        capture_stdout=True,
    )
    assert result.stdout == b"HELLO"


async def test_signal_receiver() -> None:
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        os.kill(os.getpid(), signal.SIGUSR1)
        async for signum in signals:
            assert signum == signal.SIGUSR1
            break


def test_keyboard_interrupt_reaches_the_run() -> None:
    async def main() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        await trio.sleep(10)

    with pytest.raises(KeyboardInterrupt):
        trio_uring.run(main)


def test_guest_mode_on_asyncio() -> None:
    import asyncio

    async def trio_main() -> str:
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.setblocking(False)

            async def later() -> None:
                await trio.sleep(0.01)
                a.send(b"ping")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(later)
                await trio.lowlevel.wait_readable(b)
            data = b.recv(10)
        await trio.to_thread.run_sync(lambda: None)
        backend = trio.lowlevel.current_statistics().io_statistics.backend
        return backend + data.decode()

    async def asyncio_main() -> str:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str] = loop.create_future()

        def finished(outcome: object) -> None:
            done.set_result(outcome.unwrap())  # type: ignore[attr-defined]

        trio_uring.start_guest_run(
            trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=finished,
        )
        return await done

    assert asyncio.run(asyncio_main()) == "io_uringping"


def test_guest_mode_cancel_from_host() -> None:
    import asyncio

    async def trio_main(scope_box: list[trio.CancelScope]) -> bool:
        a, b = socket.socketpair()
        with a, b, trio.CancelScope() as scope:
            scope_box.append(scope)
            await trio.lowlevel.wait_readable(a)
        return scope.cancelled_caught

    async def asyncio_main() -> bool:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        box: list[trio.CancelScope] = []
        trio_uring.start_guest_run(
            trio_main,
            box,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=lambda o: done.set_result(o.unwrap()),
        )
        while not box:
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        box[0].cancel()  # host code, while trio waits in its worker thread
        return await done

    assert asyncio.run(asyncio_main()) is True


def test_close_with_parked_task_never_raises() -> None:
    manager = trio_uring.UringIOManager()
    a, b = socket.socketpair()
    with a, b:
        manager._prep(_sqe.poll_add(a.fileno(), 1), 999)
        manager.get_events(0)
        manager.close()
        manager.close()  # idempotent
    assert manager.statistics().backend == "io_uring"


def test_force_wakeup_is_sticky_and_truthy() -> None:
    manager = trio_uring.UringIOManager()
    try:
        manager.get_events(0)  # submit the wakeup poll
        manager.force_wakeup()  # before the wait: the next get_events returns at once
        events = manager.get_events(30)
        assert events
        manager.process_events(events)
        # and from another thread while this one waits
        timer = threading.Timer(0.05, manager.force_wakeup)
        timer.start()
        events = manager.get_events(30)
        timer.join()
        assert events
        manager.process_events(events)
        # a real timeout is falsy
        assert not manager.get_events(0.01)
    finally:
        manager.close()


def test_signal_during_wait_is_not_a_timeout() -> None:
    manager = trio_uring.UringIOManager()
    received: list[int] = []
    old = signal.signal(signal.SIGUSR2, lambda signum, frame: received.append(signum))
    try:
        manager.get_events(0)
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR2))
        timer.start()
        events = manager.get_events(30)
        timer.join()
        assert events  # EINTR is reported as "something happened", never as a timeout
        manager.process_events(events)
    finally:
        signal.signal(signal.SIGUSR2, old)
        manager.close()
    assert received == [signal.SIGUSR2]


def test_close_drains_in_flight_requests() -> None:
    from trio_uring._core._manager import lingering
    from trio_uring._core._operation import COMPLETED

    manager = trio_uring.UringIOManager()
    a, b = socket.socketpair()
    with a, b:
        keep = bytearray(16)
        ops = [
            manager.submit(_sqe.poll_add(a.fileno(), 1), keep=keep, waiter=False) for _ in range(5)
        ]
        manager.get_events(0)  # submitted: the kernel holds five polls
        assert manager.statistics().operations_in_flight == 5
        manager.close()
        manager.close()  # idempotent
        # every request's final CQE arrived before the ring went; their memory is released
        assert lingering() == 0
        assert all(op.state == COMPLETED and op.keep is None for op in ops)
    assert manager.statistics().operations_in_flight == 0


async def test_instruments_work_with_the_fast_membership_test() -> None:
    """The run's Instruments object answers `in` from C; adding/removing hooks still works."""
    from trio_uring._core import _trio_compat

    runner = _trio_compat.current_runner()
    assert type(runner.instruments).__contains__ == runner.instruments.data.__contains__
    scheduled: list[object] = []

    class Recorder(trio.abc.Instrument):
        def task_scheduled(self, task: trio.lowlevel.Task) -> None:
            scheduled.append(task)

    recorder = Recorder()
    assert "task_scheduled" not in runner.instruments
    trio.lowlevel.add_instrument(recorder)
    assert "task_scheduled" in runner.instruments
    await trio.sleep(0)
    assert scheduled == [trio.lowlevel.current_task()]
    trio.lowlevel.remove_instrument(recorder)
    assert "task_scheduled" not in runner.instruments
    await trio.sleep(0)
    assert len(scheduled) == 1


async def test_ready_wakes_trios_own_wait_task_rescheduled_with_none() -> None:
    """The reusable READY outcome is a plain `None` to code that parks the trio way."""
    manager = current_manager()
    task = trio.lowlevel.current_task()
    results: list[object] = []
    for _ in range(2):  # the same outcome object twice: it is never "used up"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_wake_with_ready, manager, task)
            abort = lambda _: trio.lowlevel.Abort.FAILED  # noqa: E731
            results.append(await trio.lowlevel.wait_task_rescheduled(abort))
    assert results == [None, None]


async def _wake_with_ready(manager: trio_uring.UringIOManager, task: trio.lowlevel.Task) -> None:
    from trio_uring._core._trio_compat import READY

    await trio.testing.wait_all_tasks_blocked()
    manager.reschedule(task, READY)
