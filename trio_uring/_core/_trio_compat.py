"""Every private trio name trio_uring relies on, checked once at import.

trio has no public hook for a custom I/O manager, so trio_uring touches a few
private names.  They are all here, so a trio release that moves one fails at
import with a message naming the trio version, not deep inside a run.
"""

from __future__ import annotations

import socket as _socket
import sys
import types
import warnings
from collections.abc import Awaitable, Callable, Generator
from math import inf
from typing import TYPE_CHECKING, Any, Final, Protocol, TypedDict

import outcome
import trio

from ._fingerprint import fingerprint, fingerprint_target
from ._ring import ext
from ._trio_fingerprints import KNOWN_FINGERPRINTS

#: The trio releases trio_uring is tested with (``make test-trio-versions``); a newer
#: one installs and runs (see :data:`TRIO_MIRRORS`), a missing private name fails here.
SUPPORTED_TRIO = ">=0.30"
TESTED_TRIO: Final = ("0.30.0", "0.31.0", "0.32.0", "0.33.0", "0.34.0", "0.35.0")

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


class TrioVersionWarning(RuntimeWarning):
    """A piece of trio that trio_uring mirrors is not the code trio_uring checked its
    copy against (a trio release, or a Python minor, newer than the recorded ones).

    That piece then runs trio's own function, or trio_uring's plain path, instead of
    the copy: the run is correct and a little slower.  The message names the piece,
    the trio version, and the copies in trio_uring that follow it.  Exposed as
    ``trio_uring.TrioVersionWarning``.
    """


class Mirror(TypedDict):
    """One entry of :data:`TRIO_MIRRORS`."""

    piece: str
    trio: tuple[str, ...]
    copies: tuple[str, ...]
    fallback: str


#: Every piece of trio that trio_uring copies, or reads privately at a lower level
#: than a name (slot offsets), in one list: ``trio`` the targets whose code it
#: follows (``module:qualname``; ``Class.__slots__`` is a class's slot layout),
#: ``copies`` the places in trio_uring that follow it (re-read them when a
#: fingerprint changes), ``fallback`` what runs instead when a target's fingerprint
#: is not one recorded in ``_trio_fingerprints.KNOWN_FINGERPRINTS`` for this Python
#: minor (see ``_fingerprint``; ``make trio-fingerprints`` records them).  Plain
#: private names that are only called or looked up are checked above, at import.
#: (A literal: ``tools/trio_fingerprints.py`` reads it without importing trio_uring.)
TRIO_MIRRORS: Final[tuple[Mirror, ...]] = (
    {
        "piece": "reschedule",
        "trio": ("trio._core._run:Runner.reschedule",),
        "copies": (
            "trio_uring/_core/_ringext.c: Waker (waker_vectorcall)",
            "trio_uring/_core/_trio_compat.py: fast_reschedule",
        ),
        "fallback": "trio's own Runner.reschedule",
    },
    {
        "piece": "slot layout",
        "trio": (
            "trio._core._run:Task.__slots__",
            "trio._core._run:Runner.__slots__",
            "trio._core._run:CancelStatus.__slots__",
        ),
        "copies": (
            "trio_uring/_core/_ringext.c: Waker, task_cancel_pending (fields at slot offsets)",
            "trio_uring/_core/_trio_compat.py: fast_reschedule, _bind_ext (the field names)",
        ),
        "fallback": "no field read at a slot offset: trio's Runner.reschedule, and "
        "park/completed_checkpoint/enter in Python",
    },
    {
        "piece": "cancel test",
        "trio": ("trio._core._run:checkpoint_if_cancelled",),
        "copies": (
            "trio_uring/_core/_trio_compat.py: cancel_pending (also _trio_fast.enter's)",
            "trio_uring/_core/_ringext.c: task_cancel_pending (enter, completed_checkpoint)",
        ),
        "fallback": "trio's own checkpoint_if_cancelled at every completed operation; "
        "no syscall-first path for sockets and streams",
    },
    {
        "piece": "park",
        "trio": ("trio._core._traps:wait_task_rescheduled", "trio._core._traps:_async_yield"),
        "copies": (
            "trio_uring/_core/_trio_compat.py: _park",
            "trio_uring/_core/_ringext.c: park (PARK)",
        ),
        "fallback": "trio's own wait_task_rescheduled",
    },
    {
        "piece": "shielded checkpoint",
        "trio": ("trio._core._traps:cancel_shielded_checkpoint",),
        "copies": (
            "trio_uring/_core/_trio_compat.py: _completed_checkpoint",
            "trio_uring/_core/_ringext.c: completed_checkpoint (CHECKPOINT)",
            "trio_uring/_core/_trio_fast.py: shielded_checkpoint",
            "trio_uring/_net/_streams.py: _send_now, _receive_now (yield CancelShieldedCheckpoint)",
        ),
        "fallback": "trio's own checkpoint_if_cancelled and cancel_shielded_checkpoint; "
        "no syscall-first path for sockets and streams",
    },
    {
        "piece": "socket syscall-first path",
        "trio": (
            "trio._socket:_SocketType._nonblocking_helper",
            "trio._socket:_try_sync",
            "trio._socket:_make_simple_sock_method_wrapper",
            "trio._socket:_SocketType.accept",
        ),
        "copies": (
            "trio_uring/_net/_trio_sockets.py: UringSocket.recv, recv_into, send, accept",
            "trio_uring/_net/_streams.py: _send_now, _receive_now",
        ),
        "fallback": "one SQE per socket call (as TRIO_URING_SOCKETS_TRY_FIRST=0); "
        "streams submit without trying the syscall first",
    },
    {
        "piece": "socket connect",
        "trio": ("trio._socket:_SocketType.connect",),
        "copies": ("trio_uring/_net/_trio_sockets.py: UringSocket.connect",),
        "fallback": "trio's own connect (non-blocking connect, then wait_writable)",
    },
    {
        "piece": "socket constructor",
        "trio": ("trio._socket:from_stdlib_socket", "trio._socket:_SocketType.__init__"),
        "copies": ("trio_uring/_net/_trio_sockets.py: from_stdlib_socket, UringSocket.dup",),
        "fallback": "completion sockets off by default: trio's own sockets, on io_uring readiness",
    },
    {
        "piece": "socket fields",
        "trio": (
            "trio._socket:_SocketType.fileno",
            "trio._socket:_SocketType.did_shutdown_SHUT_WR",
        ),
        "copies": (
            "trio_uring/_core/_trio_compat.py: plain_trio_socket, STDLIB_SOCKET_FIELD, "
            "SHUT_WR_FIELD",
            "trio_uring/_net/_streams.py: SocketStream.send_all (reads them)",
        ),
        "fallback": "the socket's public fileno() and did_shutdown_SHUT_WR",
    },
    {
        "piece": "deadlines",
        "trio": ("trio._core._run:Deadlines", "trio._core._run:CancelStatus.effective_deadline"),
        "copies": (
            "trio_uring/_core/_timeouts.py: LinkedTimeouts.deadline_is_near (Deadlines._heap[0][0])",
            "trio_uring/_core/_trio_compat.py: task_deadline",
        ),
        "fallback": "no linked timeouts: trio cancels at a deadline through ASYNC_CANCEL",
    },
)

#: This Python's minor version, which the recorded fingerprints are keyed by.
PYTHON_MINOR: Final = f"{sys.version_info[0]}.{sys.version_info[1]}"


#: trio's own objects for targets that trio_uring replaces during a run (its socket
#: factory: ``set_socket_factory``), so a fingerprint is always of trio's code.
_ORIGINALS: Final[dict[str, object]] = {"trio._socket:from_stdlib_socket": trio_from_stdlib_socket}


def trio_fingerprint(target: str) -> str:
    """The fingerprint of trio's ``target`` (``_fingerprint.fingerprint_target``), of
    trio's own object where trio_uring has put its replacement in that place."""
    original = _ORIGINALS.get(target)
    if original is not None:
        try:
            return fingerprint(original)
        except TypeError:
            return "missing"
    return fingerprint_target(target)


def unknown_targets(piece: str) -> list[tuple[str, str]]:
    """``(target, fingerprint)`` of each target of ``piece`` whose fingerprint (now,
    in the installed trio) is not recorded for this Python minor."""
    known = KNOWN_FINGERPRINTS.get(PYTHON_MINOR, {})
    (entry,) = [entry for entry in TRIO_MIRRORS if entry["piece"] == piece]
    return [
        (target, found)
        for target in entry["trio"]
        if (found := trio_fingerprint(target)) not in known.get(target, {})
    ]


def _check_mirrors() -> dict[str, bool]:
    """Whether each piece's copies may be used; a :class:`TrioVersionWarning` for each
    piece that may not."""
    result = {}
    for entry in TRIO_MIRRORS:
        piece = entry["piece"]
        unknown = unknown_targets(piece)
        result[piece] = not unknown
        if unknown:
            which = ", ".join(f"{target} (fingerprint {found[:12]})" for target, found in unknown)
            warnings.warn(
                TrioVersionWarning(
                    f"trio_uring mirrors trio code that changed: in trio {trio.__version__} "
                    f"on Python {PYTHON_MINOR}, the {piece!r} piece is not the code "
                    f"trio_uring was checked against ({which}); trio_uring uses "
                    f"{entry['fallback']} instead (correct, slower). Copies to re-read: "
                    f"{'; '.join(entry['copies'])}"
                ),
                stacklevel=2,
            )
    return result


#: ``MIRRORED[piece]``: whether the copies of that :data:`TRIO_MIRRORS` piece are used.
MIRRORED: Final = _check_mirrors()
_SOCKET_FIELDS: Final = MIRRORED["socket fields"]
#: Whether the manager may read trio's deadline heap and tasks' effective deadlines.
DEADLINES: Final = MIRRORED["deadlines"]
#: Whether trio's sockets and trio_uring's streams may try the syscall first, with
#: trio's ``_nonblocking_helper`` inlined (its cancel test and shielded checkpoint too).
SYSCALL_FIRST: Final = (
    MIRRORED["socket syscall-first path"]
    and MIRRORED["cancel test"]
    and MIRRORED["shielded checkpoint"]
)
#: Whether :func:`cancel_pending` is trio's own test (the "cancel test" piece), so that
#: a task it answers True for has a cancel or ``KeyboardInterrupt`` that trio delivers
#: at the task's next park.
CANCEL_TEST: Final = MIRRORED["cancel test"]
#: Whether ``UringSocket.connect`` (one ``IORING_OP_CONNECT``) replaces trio's.
SOCKET_CONNECT: Final = MIRRORED["socket connect"]
#: Whether trio_uring's socket factory (``UringSocket``) may be on by default.
SOCKET_CONSTRUCTOR: Final = MIRRORED["socket constructor"]


#: trio's socket fields behind ``fileno()`` (the stdlib socket) and
#: ``did_shutdown_SHUT_WR``, for :func:`plain_trio_socket` sockets.
STDLIB_SOCKET_FIELD: Final = "_sock"
SHUT_WR_FIELD: Final = "_did_shutdown_SHUT_WR"


def plain_trio_socket(sock: object) -> bool:
    """Whether ``sock`` is a trio socket whose ``fileno()`` is
    ``getattr(sock, STDLIB_SOCKET_FIELD).fileno()`` and whose ``did_shutdown_SHUT_WR``
    is ``getattr(sock, SHUT_WR_FIELD)`` (trio's own methods, not overridden).  False when
    trio's ``fileno``/``did_shutdown_SHUT_WR`` are not the recorded ones (the "socket
    fields" piece of :data:`TRIO_MIRRORS`)."""
    if not _SOCKET_FIELDS:
        return False
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
    bytecode, so a signal cannot be handled inside them; they are recorded
    instead, and the coroutine function that stands for one in the public API
    (``_core/_public.py``) is protected in its place (:func:`ki_protected`).
    Plain functions, methods (pass the function from the class), coroutine and
    generator functions are accepted.
    """
    for function in functions:
        fn: Any = getattr(function, "__func__", function)
        # (Not "has a __code__": a compiled coroutine function has a stand-in one, for
        # inspect.iscoroutinefunction, that no frame ever runs.)
        if isinstance(fn, types.FunctionType):
            trio.lowlevel.enable_ki_protection(fn)
        else:
            _protected_compiled[id(fn)] = fn


#: The compiled functions given to :func:`ki_protect` (by id; the values keep them alive).
_protected_compiled: dict[int, object] = {}


def ki_protected(compiled: object) -> bool:
    """Whether the compiled function ``compiled`` was given to :func:`ki_protect`."""
    return _protected_compiled.get(id(compiled)) is compiled


def current_runner() -> Any:
    """The Runner of the run this thread is in; ``RuntimeError`` outside a run."""
    try:
        return GLOBAL_RUN_CONTEXT.runner
    except AttributeError:
        raise RuntimeError("must be called from async context") from None


def task_deadline(task: Task) -> float:
    """The effective deadline of ``task`` (trio exposes only the current task's);
    ``inf`` (no linked timeout: trio still cancels at the deadline) when the
    "deadlines" piece of :data:`TRIO_MIRRORS` is not the recorded one."""
    if not DEADLINES:
        return inf
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


async def _park_trio(trap: WaitTaskRescheduled) -> None:
    """:func:`_park` as trio's own ``wait_task_rescheduled`` (the "park" piece of
    :data:`TRIO_MIRRORS` is not the recorded one)."""
    await trio.lowlevel.wait_task_rescheduled(trap.abort_func)


async def _completed_checkpoint_trio() -> None:
    """:func:`_completed_checkpoint` as trio's own two calls (the "cancel test" or
    "shielded checkpoint" piece is not the recorded one)."""
    await trio.lowlevel.checkpoint_if_cancelled()
    await trio.lowlevel.cancel_shielded_checkpoint()


ki_protect(_park_trio, _completed_checkpoint_trio)


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


if MIRRORED["cancel test"]:

    def cancel_pending() -> bool:
        """The test of ``trio.lowlevel.checkpoint_if_cancelled()``, as a plain call.

        True if the current task must not go on (cancelled, or the main task with a
        ``KeyboardInterrupt`` pending): the caller then does
        ``yield from checkpoint_if_cancelled()``, which raises.  False counts a cancel
        point, as trio does (``trio.testing.assert_checkpoints`` reads the count).
        Saves the coroutine of ``checkpoint_if_cancelled`` on every fast path.
        (Always True when trio's ``checkpoint_if_cancelled`` is not the recorded
        one: the caller then runs trio's own, which raises or counts the point.)
        """
        task = GLOBAL_RUN_CONTEXT.task
        if task._cancel_status.effectively_cancelled or (
            task is task._runner.main_task and task._runner.ki_pending
        ):
            return True
        task._cancel_points += 1
        return False

else:

    def cancel_pending() -> bool:
        """Always True: trio's own ``checkpoint_if_cancelled`` decides (see above)."""
        return True


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
    used only if trio's method and both classes' slot layouts have recorded
    fingerprints (the "reschedule" and "slot layout" pieces of :data:`TRIO_MIRRORS`)
    and the fields are plain slots; otherwise (or without ``ext``) trio's own method runs.
    A call with one argument or keywords goes to trio's method as well.
    """
    reschedule = runner.reschedule
    if ext is None or not (MIRRORED["reschedule"] and MIRRORED["slot layout"]):
        return reschedule
    task_type = _trio_run.Task
    if (
        type(runner) is not _trio_run.Runner
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


def bind_trio_args() -> tuple[Any, ...]:
    """The arguments of the ring extension's ``bind_trio``: what its ``park``,
    ``completed_checkpoint`` and ``enter`` use, and the trio fields they read."""
    return (
        GLOBAL_RUN_CONTEXT, READY, CancelShieldedCheckpoint,
        trio.lowlevel.checkpoint_if_cancelled,
        _trio_run.Task, ("_cancel_status", "_runner", "_cancel_points"),
        _trio_run.CancelStatus, ("effectively_cancelled",),
        _trio_run.Runner, ("main_task", "ki_pending"),
    )  # fmt: skip


def _bind_ext() -> tuple[
    Callable[[WaitTaskRescheduled], Awaitable[None]], Callable[[], Awaitable[None]]
]:
    """``park`` and ``completed_checkpoint``: the ring extension's, else the generators above.

    The extension's do what the generators do (``cancel_pending`` included, reading
    the same trio fields at their ``__slots__`` offsets), as one small C object per
    wait; they are used only if those fields are plain slots and the pieces they
    copy have recorded fingerprints (:data:`TRIO_MIRRORS`).  A piece that has not
    runs trio's own code (:func:`_park_trio`, :func:`_completed_checkpoint_trio`).
    """
    python_park = _park if MIRRORED["park"] else _park_trio
    python_checkpoint = (
        _completed_checkpoint
        if MIRRORED["cancel test"] and MIRRORED["shielded checkpoint"]
        else _completed_checkpoint_trio
    )
    if ext is None or not all(
        MIRRORED[piece] for piece in ("slot layout", "cancel test", "park", "shielded checkpoint")
    ):
        return python_park, python_checkpoint
    try:
        ext.bind_trio(*bind_trio_args())
    except (TypeError, AttributeError):  # a field is no longer a plain slot
        return python_park, python_checkpoint
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
    getattr(ext, "enter", None) if park not in (_park, _park_trio) else None
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
