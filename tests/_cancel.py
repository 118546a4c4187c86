"""The tests' one way to "cancel it once it is parked in the kernel"."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio
import trio.testing

T = TypeVar("T")


@dataclass
class Parked(Generic[T]):
    """How a call that was cancelled once parked ended."""

    #: its scope caught the ``Cancelled``: the call took nothing (no data, no connection)
    cancelled: bool
    #: what it returned instead, if it completed before the cancel reached it
    value: T | None = None


async def cancel_once_parked(
    call: Callable[[], Awaitable[T]],
    *,
    meanwhile: Callable[[], object] | None = None,
) -> Parked[T]:
    """Run ``await call()`` in a task of its own and cancel it once every task is blocked.

    "Every task is blocked" (:func:`trio.testing.wait_all_tasks_blocked`) means the
    call has submitted its SQE and parked.  ``meanwhile()`` (sync or async) runs
    after that and right before the cancel, in the same scheduling step: use it
    to check the ring or to make the kernel complete the call at that moment
    (data arrives, a client connects), so completion and cancellation race.
    Errors other than ``Cancelled`` propagate.
    """
    box: list[Parked[T]] = []
    scope = trio.CancelScope()

    async def runner() -> None:
        with scope:
            box.append(Parked(cancelled=False, value=await call()))
        if scope.cancelled_caught:
            box.append(Parked(cancelled=True))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner)
        await trio.testing.wait_all_tasks_blocked()
        if meanwhile is not None:
            result = meanwhile()
            if inspect.isawaitable(result):
                await result
        scope.cancel()
    [parked] = box
    return parked
