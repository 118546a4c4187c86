"""The per-call reads of trio's private run state on the fast paths, compiled.

The compiled half of :mod:`._trio_compat`: the private names used here are the ones
``_trio_compat`` checks at import (``GLOBAL_RUN_CONTEXT``, ``Task._cancel_status``,
``CancelStatus.effectively_cancelled``, ``Task._cancel_points``, ``Runner.main_task``,
``Runner.ki_pending``, the ``CancelShieldedCheckpoint`` trap); ``_trio_compat`` itself
stays interpreted (its generators are awaited by interpreted code too).  A fast path
that completes at once (a non-blocking syscall that did not block) pays these on
every call, so they are compiled functions here instead of interpreted ones there.
"""

from __future__ import annotations

import types
from collections.abc import Generator
from typing import Any, Final

from ._trio_compat import GLOBAL_RUN_CONTEXT, CancelShieldedCheckpoint, cancel_pending, ext_enter

#: The run context (a ``threading.local``): its per-thread ``__dict__`` holds ``runner``
#: during a run in this thread and ``task`` while a task runs.  Reading that dict is
#: one C-level lookup; ``GLOBAL_RUN_CONTEXT.task`` is a generic attribute lookup on a
#: subclass of ``local``, about twice the cost.
_run_context: Final = GLOBAL_RUN_CONTEXT
_CSC: Final = CancelShieldedCheckpoint
#: What :func:`enter` returns when the task must not go on.
CANCEL_PENDING: Final = False
_ext_enter: Final = ext_enter
_cancel_pending: Final = cancel_pending


def current_task() -> Any:
    """The task running in this thread, or ``None`` outside a run (no exception)."""
    context: dict[str, Any] = _run_context.__dict__
    return context.get("task")


def enter() -> Any:
    """The start of trio's ``_nonblocking_helper`` for the current task, as a plain call.

    Returns ``None`` outside a run (nothing counted: the caller goes to trio's own
    method, which raises); :data:`CANCEL_PENDING` if the task must not go on
    (cancelled, or the main task with a ``KeyboardInterrupt`` pending: the caller then
    awaits ``checkpoint_if_cancelled()``, which raises); otherwise the task, with a
    cancel point counted as trio counts it (``trio.testing.assert_checkpoints``).
    The test is :func:`._trio_compat.cancel_pending` (the one Python copy of trio's),
    or the ring extension's ``enter()`` when it is in use (one C call reading trio's
    slots at their offsets; ``tests/test_trio_contract.py`` checks both against trio).
    """
    if _ext_enter is not None:
        return _ext_enter()
    context: dict[str, Any] = _run_context.__dict__
    task = context.get("task")
    if task is None:
        return None
    if _cancel_pending():
        return CANCEL_PENDING
    return task


@types.coroutine
def shielded_checkpoint() -> Generator[Any, Any, None]:
    """``trio.lowlevel.cancel_shielded_checkpoint()``, its answer unread (for compiled
    callers: the generator is compiled, and interpreted code cannot ``await`` it)."""
    yield _CSC
