"""Every private trio name trio_uring relies on, checked once at import.

trio has no public hook for a custom I/O manager, so trio_uring touches a few
private names.  They are all here, so a trio release that moves one fails at
import with a message naming the trio version, not deep inside a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import trio

SUPPORTED_TRIO = ">=0.30,<0.36"

try:
    from trio._core import _run as _trio_run
    from trio._core._io_epoll import EpollIOManager as EpollIOManager

    GLOBAL_RUN_CONTEXT: Any = _trio_run.GLOBAL_RUN_CONTEXT
    SystemClock: type = _trio_run.SystemClock
    for _name in ("setup_runner", "TheIOManager"):
        getattr(_trio_run, _name)
    getattr(_trio_run.Task, "_cancel_status")  # noqa: B009
    getattr(_trio_run.CancelStatus, "effective_deadline")  # noqa: B009
    getattr(_trio_run.Deadlines, "_heap")  # noqa: B009
except (ImportError, AttributeError) as exc:  # pragma: no cover - depends on trio version
    raise ImportError(
        f"trio_uring needs trio {SUPPORTED_TRIO}; trio {trio.__version__} lacks a private name "
        f"it relies on ({exc})"
    ) from exc

if TYPE_CHECKING:
    from trio.lowlevel import Task


class HasFileno(Protocol):
    def fileno(self) -> int: ...


def run_module() -> Any:
    """``trio._core._run``, where trio picks its I/O manager class."""
    return _trio_run


def current_runner() -> Any:
    """The Runner of the run this thread is in; ``RuntimeError`` outside a run."""
    try:
        return GLOBAL_RUN_CONTEXT.runner
    except AttributeError:
        raise RuntimeError("must be called from async context") from None


def task_deadline(task: Task) -> float:
    """The effective deadline of ``task`` (trio exposes only the current task's)."""
    return float(task._cancel_status.effective_deadline())
