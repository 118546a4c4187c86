"""Cancellation of completion-based operations: before, during and racing the kernel.

Every test checks what the task saw (``Cancelled``, data, ``ClosedResourceError``)
*and* what the ring did (``statistics()``: async cancels, linked timeouts), and
that nothing is left in flight afterwards.
"""

from __future__ import annotations

import math
import random
import socket

import pytest
import trio
import trio.testing

from tests._cancel import cancel_once_parked
from tests._pairs import Pair
from trio_uring import lowlevel as ll
from trio_uring._core._statistics import UringStatistics
from trio_uring.lowlevel import current_manager


def stats() -> UringStatistics:
    return current_manager().statistics()


async def settle(baseline: int) -> None:
    """Every task is parked or done and the ring holds only ``baseline`` operations."""
    await trio.testing.wait_all_tasks_blocked()
    assert stats().operations_in_flight == baseline


async def wait_for(predicate: object, what: str) -> None:
    """Wait (bounded) for a kernel-side event that only real time brings about."""
    with trio.fail_after(5):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.002)


# ------------------------------------------------------------ before/during
@pytest.mark.parametrize("how", ["cancel", "past_deadline"])
async def test_cancelled_before_the_call(pair: Pair, how: str) -> None:
    a, b = pair
    base = stats()
    a.send(b"queued")  # even with data ready, a cancelled call must not take it
    # (entering a scope whose deadline has passed cancels it at once, as cancel() does)
    deadline = trio.current_time() - 1 if how == "past_deadline" else math.inf
    with trio.CancelScope(deadline=deadline) as scope:
        if how == "cancel":
            scope.cancel()
        await ll.recv(b, 100)
        pytest.fail("recv returned in a cancelled scope")  # pragma: no cover
    assert scope.cancelled_caught
    after = stats()
    assert after.async_cancels == base.async_cancels  # dropped before submission
    assert after.linked_timeouts == base.linked_timeouts
    assert b.recv(100) == b"queued"
    await settle(base.operations_in_flight)


async def test_deadline_passed_inside_the_scope(pair: Pair) -> None:
    """A deadline that passed after the scope was entered is acted on at trio's next
    deadline check, not at once: as with trio's own recv, data that is ready is
    returned and the cancel lands at the next checkpoint."""
    a, b = pair
    base = stats()
    a.send(b"ready")
    got: list[bytes] = []
    with trio.CancelScope() as scope:
        scope.deadline = trio.current_time() - 1
        got.append(await ll.recv(b, 10))
        await trio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert got == [b"ready"]
    with trio.CancelScope() as scope:
        scope.deadline = trio.current_time() - 1
        await ll.recv(b, 10)
        pytest.fail("recv returned")  # pragma: no cover
    assert scope.cancelled_caught
    assert stats().linked_timeouts == base.linked_timeouts + 2
    await settle(base.operations_in_flight)


@pytest.mark.parametrize("op", ["recv", "recv_into", "recvmsg", "poll", "sleep", "accept"])
async def test_parked_operation_cancelled(op: str) -> None:
    a, b = socket.socketpair()
    listener = socket.socket()
    with a, b, listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        calls = {
            "recv": lambda: ll.recv(b, 10),
            "recv_into": lambda: ll.recv_into(b, bytearray(10)),
            "recvmsg": lambda: ll.recvmsg(b, 10, 64),
            "poll": lambda: ll.poll(b, 1),
            "sleep": lambda: ll.sleep(100),
            "accept": lambda: ll.accept(listener),
        }
        base = stats()

        def in_the_kernel() -> None:
            assert stats().operations_in_flight == base.operations_in_flight + 1

        parked = await cancel_once_parked(calls[op], meanwhile=in_the_kernel)
        assert parked.cancelled
        assert stats().async_cancels == base.async_cancels + 1
        await settle(base.operations_in_flight)
        a.send(b"still works")
        assert b.recv(100) == b"still works"


async def test_completion_racing_the_cancel_returns_the_data(pair: Pair) -> None:
    """The kernel completed the recv, but the cancel came before trio saw the CQE."""
    a, b = pair
    base = stats()
    got: list[bytes] = []
    scope = trio.CancelScope()

    async def receiver() -> None:
        with scope:
            got.append(await ll.recv(b, 100))
            await trio.lowlevel.checkpoint()  # the cancel arrives here instead
            got.append(b"not reached")  # pragma: no cover

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()  # the recv is in the kernel
        # In one step: data arrives (the kernel completes the recv as the peer's
        # send returns) and the task is cancelled before trio reaped its CQE.
        a.send(b"raced")
        scope.cancel()
    assert scope.cancelled_caught
    leftover = b""
    try:
        leftover = b.recv(100)
    except BlockingIOError:
        pass
    # Never lost, never duplicated: the data is either returned or still queued.
    # Never lost, never duplicated.  On Linux the peer's send() completes the parked
    # recv before it returns (the poll wake-up runs the request as task work), so
    # the kernel answers the ASYNC_CANCEL with -ENOENT and the data is returned.
    assert (got, leftover) == ([b"raced"], b"")
    assert stats().async_cancels == base.async_cancels + 1
    await settle(base.operations_in_flight)


async def test_many_operations_cancelled_at_once() -> None:
    pairs = [socket.socketpair() for _ in range(8)]
    try:
        base = stats()
        count = 400  # more than the SQ holds: the manager must submit on the way
        ended: list[bool] = []

        async def recv_one(sock: socket.socket) -> None:
            try:
                await ll.recv(sock, 10)
            finally:
                ended.append(True)

        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(recv_one, pairs[i % len(pairs)][1])
            await trio.testing.wait_all_tasks_blocked()
            assert stats().operations_in_flight == base.operations_in_flight + count
            nursery.cancel_scope.cancel()
        assert len(ended) == count
        assert stats().async_cancels == base.async_cancels + count
        await settle(base.operations_in_flight)
        for a, b in pairs:  # no recv survived to steal later data
            a.send(b"ok")
            assert b.recv(10) == b"ok"
    finally:
        for a, b in pairs:
            a.close()
            b.close()


async def test_many_cancelled_before_submission_cost_no_cancel_sqe() -> None:
    a, b = socket.socketpair()
    with a, b:
        base = stats()

        async def recv_one() -> None:
            await ll.recv(b, 10)

        async with trio.open_nursery() as nursery:
            for _ in range(200):
                nursery.start_soon(recv_one)
            # the tasks start and park in the same batch in which they are cancelled
            nursery.cancel_scope.cancel()
        assert stats().async_cancels == base.async_cancels
        await settle(base.operations_in_flight)


# ------------------------------------------------------------ deadlines
async def test_deadline_uses_a_linked_timeout(pair: Pair) -> None:
    _, b = pair
    base = stats()
    start = trio.current_time()
    with trio.move_on_after(0.05) as scope:
        await ll.recv(b, 10)
    assert scope.cancelled_caught
    assert trio.current_time() - start >= 0.05
    after = stats()
    assert after.linked_timeouts == base.linked_timeouts + 1
    # Two mechanisms race at the deadline and either may win: the kernel's linked
    # timeout (then trio's abort finds nothing to cancel) or trio's own deadline
    # (then the abort submits ASYNC_CANCEL and the timeout never counts as fired).
    # Exactly one of them ended the request.
    fired = after.linked_timeouts_fired - base.linked_timeouts_fired
    cancels = after.async_cancels - base.async_cancels
    assert (fired, cancels) in ((1, 0), (0, 1))
    await settle(base.operations_in_flight)


async def test_deadline_moved_later_resubmits(pair: Pair) -> None:
    a, b = pair
    base = stats()
    got: list[bytes] = []
    scope = trio.CancelScope(deadline=trio.current_time() + 0.03)

    async def receiver() -> None:
        with scope:
            got.append(await ll.recv(b, 10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        scope.deadline = trio.current_time() + 30  # later, after submission
        # the kernel's linked timeout still fires at the old deadline ...
        await wait_for(
            lambda: stats().linked_timeouts_fired > base.linked_timeouts_fired, "timeout"
        )
        # ... and the recv is resubmitted, with a timeout for the new deadline
        await wait_for(lambda: stats().linked_timeouts == base.linked_timeouts + 2, "resubmit")
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        assert stats().operations_in_flight == base.operations_in_flight + 1
        a.send(b"late data")
    assert got == [b"late data"]
    assert not scope.cancelled_caught
    assert stats().async_cancels == base.async_cancels
    await settle(base.operations_in_flight)


async def test_deadline_moved_earlier_cancels_through_trio(pair: Pair) -> None:
    _, b = pair
    base = stats()
    scope = trio.CancelScope(deadline=trio.current_time() + 30)

    async def receiver() -> None:
        with scope:
            await ll.recv(b, 10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        scope.deadline = trio.current_time() + 0.01
    assert scope.cancelled_caught
    assert stats().async_cancels == base.async_cancels + 1  # trio cancelled, not the kernel
    await settle(base.operations_in_flight)


async def test_shield_keeps_the_operation(pair: Pair) -> None:
    a, b = pair
    base = stats()
    got: list[bytes] = []

    async def receiver() -> None:
        with trio.move_on_after(0.02) as outer:
            with trio.CancelScope(shield=True):
                got.append(await ll.recv(b, 10))
            await trio.lowlevel.checkpoint()
        got.append(b"outer cancelled" if outer.cancelled_caught else b"??")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(0.04)  # let the outer deadline pass while the recv waits
        assert got == []
        a.send(b"shielded")
    assert got == [b"shielded", b"outer cancelled"]
    after = stats()
    assert after.linked_timeouts == base.linked_timeouts  # no deadline inside a shield
    assert after.async_cancels == base.async_cancels
    await settle(base.operations_in_flight)


async def test_mock_clock_uses_no_linked_timeout(
    pair: Pair, autojump_clock: trio.testing.MockClock
) -> None:
    _, b = pair
    base = stats()
    with trio.move_on_after(10) as scope:
        await ll.recv(b, 10)
    assert scope.cancelled_caught
    after = stats()
    assert after.linked_timeouts == base.linked_timeouts
    assert after.async_cancels == base.async_cancels + 1
    await settle(base.operations_in_flight)


# ------------------------------------------------------- notify_closing
async def test_notify_closing_with_recv_in_flight(pair: Pair) -> None:
    a, b = pair
    base = stats()
    sock = trio.socket.from_stdlib_socket(a)
    results: list[str] = []

    async def receiver() -> None:
        try:
            await ll.recv(sock, 10)
        except trio.ClosedResourceError:
            results.append("closed")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        sock.close()  # notify_closing, then close
    assert results == ["closed", "closed"]
    await trio.lowlevel.wait_readable(b)
    assert b.recv(10) == b""  # the peer sees EOF: nothing kept the socket open
    await settle(base.operations_in_flight)


async def test_notify_closing_raw_fd_then_close() -> None:
    a, b = socket.socketpair()
    with b:
        results: list[BaseException] = []

        async def poller() -> None:
            try:
                await ll.poll(a, 1)
            except trio.ClosedResourceError as exc:
                results.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poller)
            await trio.testing.wait_all_tasks_blocked()
            trio.lowlevel.notify_closing(a.fileno())
            a.close()
        assert len(results) == 1


# ----------------------------------------------------------- accept/connect
async def test_accept_cancelled_as_a_connection_arrives() -> None:
    listener = socket.socket()
    with listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        accepted: list[trio.socket.SocketType] = []
        client = socket.socket()
        with client:
            parked = await cancel_once_parked(
                lambda: ll.accept(listener),
                meanwhile=lambda: client.connect(listener.getsockname()),  # loopback: at once
            )
            if parked.value is not None:
                accepted.append(parked.value[0])
            if not accepted:
                # cancelled for real: the connection is still in the backlog
                server, _ = await ll.accept(listener)
                accepted.append(server)
            [server] = accepted
            with server:
                client.send(b"hi")
                assert await server.recv(10) == b"hi"


async def test_connect_cancelled_closes_the_socket() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        # fill the accept queue: further SYNs are dropped, so a connect stays pending
        fillers = [socket.socket() for _ in range(4)]
        for s in fillers:
            s.setblocking(False)
            s.connect_ex(listener.getsockname())
        sock = trio.socket.socket()
        try:
            base = stats()
            with trio.move_on_after(0.05) as scope:
                await ll.connect(sock, listener.getsockname())
            if scope.cancelled_caught:
                assert sock.fileno() == -1  # as trio does: a half-done connect is closed
                assert stats().linked_timeouts == base.linked_timeouts  # connect is not linkable
            else:  # pragma: no cover - the kernel accepted one more than asked
                sock.close()
        finally:
            sock.close()
            for s in fillers:
                s.close()


# ----------------------------------------------------------- randomized
async def test_randomized_cancellation_never_loses_or_duplicates_bytes() -> None:
    """Thousands of cancellations on both ends of a stream; the bytes arrive exactly once."""
    rng = random.Random(20261122)
    payload = rng.randbytes(400_000)
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    received = bytearray()
    counts = {"send_cancelled": 0, "recv_cancelled": 0, "explicit": 0}
    scopes: list[trio.CancelScope] = []
    base = stats()

    async def maybe_stall() -> None:
        # let the other side run dry (or fill up), so its operation parks in the kernel
        if rng.random() < 0.3:
            for _ in range(rng.randint(1, 4)):
                await trio.lowlevel.checkpoint()

    def random_scope() -> trio.CancelScope:
        r = rng.random()
        if r < 0.35:
            scope = trio.move_on_after(rng.choice([0, 1e-6, 1e-5, 1e-4, 5e-4, 2e-3]))
        else:
            scope = trio.CancelScope()
        scopes.append(scope)
        return scope

    async def sender() -> None:
        sent = 0
        while sent < len(payload):
            await maybe_stall()
            chunk = payload[sent : sent + rng.randint(1, 120)]
            with random_scope() as scope:
                sent += await ll.send(a, chunk)
            if scope.cancelled_caught:
                counts["send_cancelled"] += 1
        a.shutdown(socket.SHUT_WR)

    async def receiver() -> None:
        while True:
            await maybe_stall()
            with random_scope() as scope:
                data = await ll.recv(b, rng.randint(1, 120))
                received.extend(data)
                if not data:
                    return
            if scope.cancelled_caught:
                counts["recv_cancelled"] += 1

    async def canceller() -> None:
        older: list[trio.CancelScope] = []
        while True:
            await trio.lowlevel.checkpoint()
            r = rng.random()
            if r < 0.25 and scopes:
                rng.choice(scopes).cancel()  # same tick: mostly before submission
                counts["explicit"] += 1
            elif r < 0.75 and older:
                rng.choice(older).cancel()  # a tick later: mostly in the kernel
                counts["explicit"] += 1
            older = scopes[:]
            scopes.clear()

    with a, b:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(canceller)
            async with trio.open_nursery() as inner:
                inner.start_soon(sender)
                inner.start_soon(receiver)
            nursery.cancel_scope.cancel()
    assert bytes(received) == payload
    cancelled = counts["send_cancelled"] + counts["recv_cancelled"]
    assert cancelled >= 1000, counts
    after = stats()
    assert after.async_cancels - base.async_cancels >= 100  # many were in the kernel
    await settle(base.operations_in_flight)


# ------------------------------------------------------------- guest mode
def test_guest_mode_cancel_from_the_host_and_race() -> None:
    """In guest mode SQEs are submitted at once; host code cancels a parked recv."""
    import asyncio

    import outcome

    import trio_uring

    async def trio_main(box: list[trio.CancelScope]) -> tuple[bool, bytes, int]:
        a, b = socket.socketpair()
        with a, b:
            await trio.testing.wait_all_tasks_blocked()  # trio's own waits are armed
            base = stats()
            with trio.CancelScope() as scope:
                box.append(scope)
                await ll.recv(b, 10)
            # a call in an already cancelled scope is still dropped cleanly
            with trio.CancelScope() as pre:
                pre.cancel()
                await ll.recv(b, 10)
            assert pre.cancelled_caught
            a.send(b"after")
            data = await ll.recv(b, 10)
            await settle(base.operations_in_flight)
            return scope.cancelled_caught, data, stats().async_cancels - base.async_cancels

    async def asyncio_main() -> tuple[bool, bytes, int]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[outcome.Outcome[tuple[bool, bytes, int]]] = loop.create_future()
        box: list[trio.CancelScope] = []
        trio_uring.start_guest_run(
            trio_main,
            box,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
        )
        while not box:
            await asyncio.sleep(0)
        await asyncio.sleep(0.02)  # trio is parked in its worker thread, the recv in the kernel
        box[0].cancel()
        return (await done).unwrap()

    cancelled, data, cancels = asyncio.run(asyncio_main())
    assert cancelled
    assert data == b"after"
    # the host's cancel needs an ASYNC_CANCEL; the pre-cancelled call needs one too unless
    # perform() checks for a pending cancel before submitting in guest mode
    assert cancels in (1, 2)
