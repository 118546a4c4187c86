"""Work per short connection that issue 21 cut from trio_uring's streams, pinned down in
scheduler trips (deterministic), not time: closing a stream in a cancelled scope (what
``aclose_forcefully`` does to every ``serve_tcp`` handler's stream)."""

from __future__ import annotations

import inspect

import trio
import trio.testing

import trio_uring
from tests._pairs import tcp_stream_pair


class _Steps(trio.abc.Instrument):
    """Counts the steps of one task (one per trip through the scheduler)."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


#: Whether this trio's ``CancelScope.cancel`` takes a reason (trio >= 0.31).
REASONS = "reason" in inspect.signature(trio.CancelScope.cancel).parameters


async def _aclose_cancelled(stream: trio.abc.AsyncResource) -> tuple[int, str]:
    """``aclose()`` in a cancelled scope: (the task's scheduler trips, str(Cancelled))."""
    steps = _Steps(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(steps)
    caught: list[str] = []
    try:
        with trio.CancelScope() as scope:
            if REASONS:
                scope.cancel(reason="closing forcefully")
            else:
                scope.cancel()
            try:
                await stream.aclose()
            except trio.Cancelled as exc:
                caught.append(str(exc))
                raise
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert scope.cancelled_caught
    (message,) = caught
    return steps.steps, message


async def test_aclose_with_a_pending_cancel_parks_once() -> None:
    """The stream is closed and ``Cancelled`` raised as by trio's own stream, with the
    scope's reason, in one trip through the scheduler (trio's ``checkpoint()`` takes two
    and a cancel scope)."""
    client, server = await tcp_stream_pair()
    old = trio_uring.set_completion_streams(False)  # trio's own stream code, to compare
    try:
        theirs = trio.SocketStream(client.socket)
    finally:
        trio_uring.set_completion_streams(old)
    ours_steps, ours = await _aclose_cancelled(server)
    trio_steps, trios = await _aclose_cancelled(theirs)
    assert server.socket.fileno() == -1 and client.socket.fileno() == -1
    assert ours == trios and (not REASONS or "closing forcefully" in ours)
    assert (ours_steps, trio_steps) == (1, 2)
    await client.aclose()  # (already closed through trio's stream: a checkpoint only)


async def test_aclose_is_still_a_checkpoint() -> None:
    client, server = await tcp_stream_pair()
    with trio.testing.assert_checkpoints():
        await server.aclose()
    with trio.testing.assert_checkpoints():
        await server.aclose()  # closed already: still a checkpoint, as trio's
    await client.aclose()
