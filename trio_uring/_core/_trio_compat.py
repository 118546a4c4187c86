"""Every private trio name trio_uring relies on, checked once at import.

trio has no public hook for a custom I/O manager, so trio_uring touches a few
private names.  They are all here, so a trio release that moves one fails at
import with a message naming the trio version, not deep inside a run.
"""

from __future__ import annotations

import socket as _socket
import types
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Final, Protocol

import outcome
import trio

from ._ring import ext

SUPPORTED_TRIO = ">=0.30,<0.36"

try:
    from trio._core import _run as _trio_run
    from trio._core._instrumentation import Instruments
    from trio._core._io_epoll import EpollIOManager as EpollIOManager
    from trio._core._traps import CancelShieldedCheckpoint as CancelShieldedCheckpoint
    from trio._core._traps import WaitTaskRescheduled as WaitTaskRescheduled

    GLOBAL_RUN_CONTEXT: Any = _trio_run.GLOBAL_RUN_CONTEXT
    SystemClock: type = _trio_run.SystemClock
    for _name in ("setup_runner", "TheIOManager"):
        getattr(_trio_run, _name)
    getattr(_trio_run.Task, "_cancel_status")  # noqa: B009
    getattr(_trio_run.CancelStatus, "effective_deadline")  # noqa: B009
    getattr(_trio_run.CancelStatus, "effectively_cancelled")  # noqa: B009
    for _name in ("_cancel_points", "_schedule_points"):
        getattr(_trio_run.Task, _name)
    for _name in ("main_task", "ki_pending"):
        if _name not in _trio_run.Runner.__annotations__:
            raise AttributeError(f"Runner.{_name}")
    getattr(_trio_run.Deadlines, "_heap")  # noqa: B009
    getattr(_trio_run.Runner, "instruments")  # noqa: B009
    from trio import _socket as _trio_socket

    #: trio's socket class (``trio.socket.SocketType`` is its abstract base).  An alias
    #: of the class, not a variable annotated ``type``: mypyc builds a compiled class's
    #: bases from what mypy knows statically, and silently drops a base it cannot see.
    TrioSocketType = _trio_socket._SocketType
    #: trio's own ``from_stdlib_socket``, which every trio socket constructor calls.
    trio_from_stdlib_socket: Any = _trio_socket.from_stdlib_socket
    getattr(_trio_socket._SocketType, "_resolve_address_nocp")  # noqa: B009
except (ImportError, AttributeError) as exc:  # pragma: no cover - depends on trio version
    raise ImportError(
        f"trio_uring needs trio {SUPPORTED_TRIO}; trio {trio.__version__} lacks a private name "
        f"it relies on ({exc})"
    ) from exc

if TYPE_CHECKING:
    from trio.lowlevel import Task


#: trio's socket fields behind ``fileno()`` (the stdlib socket) and
#: ``did_shutdown_SHUT_WR``, for :func:`plain_trio_socket` sockets.
STDLIB_SOCKET_FIELD: Final = "_sock"
SHUT_WR_FIELD: Final = "_did_shutdown_SHUT_WR"


def plain_trio_socket(sock: object) -> bool:
    """Whether ``sock`` is a trio socket whose ``fileno()`` is
    ``getattr(sock, STDLIB_SOCKET_FIELD).fileno()`` and whose ``did_shutdown_SHUT_WR``
    is ``getattr(sock, SHUT_WR_FIELD)`` (trio's own methods, not overridden)."""
    cls = type(sock)
    return (
        isinstance(sock, TrioSocketType)
        and getattr(cls, "fileno", None) is getattr(TrioSocketType, "fileno", None)
        and getattr(cls, "did_shutdown_SHUT_WR", None)
        is getattr(TrioSocketType, "did_shutdown_SHUT_WR", None)
        and hasattr(sock, STDLIB_SOCKET_FIELD)
        and isinstance(getattr(sock, SHUT_WR_FIELD, None), bool)
    )


class HasFileno(Protocol):
    def fileno(self) -> int: ...


def set_socket_factory(from_stdlib_socket: Any) -> None:
    """Make trio build its socket objects with ``from_stdlib_socket`` (module-level names)."""
    _trio_socket.from_stdlib_socket = from_stdlib_socket
    trio.socket.from_stdlib_socket = from_stdlib_socket


def run_module() -> Any:
    """``trio._core._run``, where trio picks its I/O manager class."""
    return _trio_run


def ki_protect(*functions: object) -> None:
    """Mark ``functions`` KeyboardInterrupt-protected, as trio marks its own waits.

    trio's SIGINT handler defers the interrupt to the next checkpoint while a
    protected frame is running (``trio.lowlevel.enable_ki_protection`` records the
    code object).  trio_uring marks every function on the path from writing an SQE
    to parking the task, so a Ctrl-C can never unwind between the two: the
    operation is then parked and the interrupt arrives through its abort, like a
    cancellation.  Functions with no code object (mypyc-compiled ones) run no
    bytecode, so a signal cannot be handled inside them; they are skipped.
    Plain functions, methods (pass the function from the class), coroutine and
    generator functions are accepted.
    """
    for function in functions:
        fn: Any = getattr(function, "__func__", function)
        if getattr(fn, "__code__", None) is not None:
            trio.lowlevel.enable_ki_protection(fn)


def current_runner() -> Any:
    """The Runner of the run this thread is in; ``RuntimeError`` outside a run."""
    try:
        return GLOBAL_RUN_CONTEXT.runner
    except AttributeError:
        raise RuntimeError("must be called from async context") from None


def task_deadline(task: Task) -> float:
    """The effective deadline of ``task`` (trio exposes only the current task's)."""
    return float(task._cancel_status.effective_deadline())


class _Ready(outcome.Outcome[None]):
    """``Value(None)`` that can be sent any number of times (trio allocates one per wake)."""

    __slots__ = ()

    def unwrap(self) -> None:
        return None

    def send(self, gen: Generator[Any, None, Any]) -> Any:
        return gen.send(None)

    async def asend(self, agen: Any) -> Any:  # pragma: no cover - never used by trio
        return await agen.asend(None)


#: What trio_uring passes to ``Runner.reschedule`` to wake a task with ``None``.
#: Our own parking points compare with ``is`` and skip ``unwrap()``.
READY: Final = _Ready()


@types.coroutine
def _park(trap: WaitTaskRescheduled) -> Generator[Any, Any, None]:
    """``await trio.lowlevel.wait_task_rescheduled(abort)`` in one frame instead of two.

    ``trap`` is ``WaitTaskRescheduled(abort)``, which a caller that parks often
    creates once.  The task must be woken with :data:`READY` or an ``Outcome``;
    this raises what an ``Error`` outcome holds (``Cancelled`` when the abort
    function returned ``Abort.SUCCEEDED``).
    """
    msg = yield trap
    if msg is not READY:
        try:
            msg.unwrap()
        finally:
            # An Error outcome holds the exception, whose traceback holds this frame:
            # drop it so a cancelled wait leaves no reference cycle (as trio's traps).
            del msg


@types.coroutine
def _completed_checkpoint() -> Generator[Any, Any, None]:
    """The checkpoint of an operation that completed at once, in one frame.

    What trio's socket methods do around a syscall that succeeded:
    ``checkpoint_if_cancelled()`` (a pending cancel raises ``Cancelled`` and the
    operation must not happen) then ``cancel_shielded_checkpoint()`` (a schedule
    point).  trio answers that trap with a fresh ``Value(None)``; unwrapping it
    would only mark it used, so it is dropped unread.
    """
    if cancel_pending():
        yield from trio.lowlevel.checkpoint_if_cancelled()  # raises Cancelled
    yield CancelShieldedCheckpoint


def cancel_pending() -> bool:
    """The test of ``trio.lowlevel.checkpoint_if_cancelled()``, as a plain call.

    True if the current task must not go on (cancelled, or the main task with a
    ``KeyboardInterrupt`` pending): the caller then does
    ``yield from checkpoint_if_cancelled()``, which raises.  False counts a cancel
    point, as trio does (``trio.testing.assert_checkpoints`` reads the count).
    Saves the coroutine of ``checkpoint_if_cancelled`` on every fast path.
    """
    task = GLOBAL_RUN_CONTEXT.task
    if task._cancel_status.effectively_cancelled or (
        task is task._runner.main_task and task._runner.ki_pending
    ):
        return True
    task._cancel_points += 1
    return False


#: The names trio 0.30-0.35's ``Runner.reschedule`` uses, in order: the ring
#: extension's ``Waker`` does what that method does, and is used only while trio's
#: method still reads exactly these (else trio's own runs).
_RESCHEDULE_NAMES: Final = (
    "_NO_SEND", "Value", "_runner", "_next_send_fn", "coro", "send", "_next_send",
    "_abort_func", "custom_sleep_data", "runq", "is_guest", "force_guest_tick_asap",
    "append", "instruments", "call",
)  # fmt: skip
#: The Task fields it writes or checks, and the Runner's it reads, as the Waker takes them.
_TASK_FIELDS: Final = (
    "_runner", "_next_send_fn", "coro", "_next_send", "_abort_func", "custom_sleep_data",
)  # fmt: skip
_RUNNER_FIELDS: Final = ("runq", "is_guest", "instruments")


def fast_reschedule(runner: Any, ext: Any) -> Any:
    """``runner.reschedule``, or the same done by the ring extension ``ext`` (a ``Waker``).

    The ``Waker`` runs trio's ``Runner.reschedule`` statement by statement (the
    asserts, ``next_send``, ``abort_func`` and ``custom_sleep_data`` reset, the
    guest-mode tick, the ``runq`` append, the ``"task_scheduled"`` instrument hook),
    reading and writing Task's and Runner's ``__slots__`` fields directly.  It is
    used only if trio's method still names exactly what it mirrors and both classes
    keep plain slot fields; otherwise (or without ``ext``) trio's own method runs.
    A call with one argument or keywords goes to trio's method as well.
    """
    reschedule = runner.reschedule
    if ext is None:
        return reschedule
    code = getattr(_trio_run.Runner.reschedule, "__code__", None)
    task_type = _trio_run.Task
    if (
        code is None
        or code.co_names != _RESCHEDULE_NAMES
        or "task_scheduled" not in code.co_consts
        or type(runner) is not _trio_run.Runner
        or task_type.__setattr__ is not object.__setattr__
        or _trio_run.Runner.__setattr__ is not object.__setattr__
    ):
        return reschedule
    # As speed_up_instrument_checks: `"hook" in instruments` is a lookup in its dict.
    inst = runner.instruments
    data = getattr(inst, "data", None)
    if not isinstance(inst, Instruments) or type(inst).__contains__ not in (
        Instruments.__contains__,
        getattr(data, "__contains__", None),
    ):
        data = None
    if type(data) is not dict:
        data = None
    try:
        return ext.Waker(runner, task_type, _TASK_FIELDS, _RUNNER_FIELDS, data)
    except (TypeError, AttributeError):  # a field is no longer a plain slot
        return reschedule


def _bind_ext() -> tuple[
    Callable[[WaitTaskRescheduled], Awaitable[None]], Callable[[], Awaitable[None]]
]:
    """``park`` and ``completed_checkpoint``: the ring extension's, else the generators above.

    The extension's do what the generators do (``cancel_pending`` included, reading
    the same trio fields at their ``__slots__`` offsets), as one small C object per
    wait; they are used only if those fields are plain slots.
    """
    if ext is None:
        return _park, _completed_checkpoint
    try:
        ext.bind_trio(
            GLOBAL_RUN_CONTEXT, READY, CancelShieldedCheckpoint,
            trio.lowlevel.checkpoint_if_cancelled,
            _trio_run.Task, ("_cancel_status", "_runner", "_cancel_points"),
            _trio_run.CancelStatus, ("effectively_cancelled",),
            _trio_run.Runner, ("main_task", "ki_pending"),
        )  # fmt: skip
    except (TypeError, AttributeError):  # a field is no longer a plain slot
        return _park, _completed_checkpoint
    return ext.park, ext.completed_checkpoint


#: ``await park(trap)``: see :func:`_park`.
park: Callable[[WaitTaskRescheduled], Awaitable[None]]
#: ``await completed_checkpoint()``: see :func:`_completed_checkpoint`.
completed_checkpoint: Callable[[], Awaitable[None]]
park, completed_checkpoint = _bind_ext()
#: The ring extension's ``enter()`` (what :func:`._trio_fast.enter` does, reading the
#: same fields at their ``__slots__`` offsets) when it is bound (exactly when ``park`` is
#: the extension's), else None.
ext_enter: Final[Callable[[], Any] | None] = (
    getattr(ext, "enter", None) if park is not _park else None
)


def speed_up_instrument_checks(runner: Any) -> None:
    """Make the runner's ``"hook" in runner.instruments`` checks C-level dict lookups.

    trio's ``Instruments`` is a ``UserDict``, so every task step and every
    ``reschedule`` pays three Python-level ``UserDict.__contains__`` calls (about
    5 % of a busy server's CPU).  Give this run's instance a private subclass whose
    ``__contains__`` is the bound ``__contains__`` of the dict it wraps (trio only
    mutates that dict in place), so the answer is the same and costs a C call.
    Anything unexpected leaves the object alone.
    """
    inst = runner.instruments
    data = getattr(inst, "data", None)
    if type(inst) is not Instruments or type(data) is not dict:
        return
    namespace = {"__slots__": (), "__contains__": data.__contains__, "__module__": __name__}
    fast = type("Instruments", (Instruments,), namespace)
    inst.__class__ = fast


# The trap's constructor is attrs-generated Python: a compiled wait that makes its
# trap after writing the SQE (Operation.__await__) runs it with no protected frame
# of its own above it (compiled code has none), so mark it as trio marks its waits.
ki_protect(_park, _completed_checkpoint, cancel_pending, WaitTaskRescheduled.__init__)

# Python code that a compiled accept runs once the kernel handed it a new fd: the
# stdlib socket's and trio's constructors.  Unprotected (compiled code has no frame of
# its own above them), an interrupt inside would leave the fd owned by a half-built
# object that closes it again when collected (maybe after the number was reused), or
# drop it unclosed.
ki_protect(_socket.socket.__init__, trio_from_stdlib_socket, TrioSocketType.__init__)
