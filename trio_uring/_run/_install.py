"""Putting the io_uring manager under trio: ``run``, ``start_guest_run``, ``install``.

trio builds its I/O manager in ``setup_runner`` by calling the module global
``trio._core._run.TheIOManager()``.  ``install()`` rebinds that global for the
whole process.  ``run()``/``start_guest_run()`` rebind it only for the one
runner they create, through a selector class that hands the io_uring manager to
the thread that asked for it and trio's own manager to everyone else.

Where io_uring cannot be used, all of these fall back to trio's epoll backend
with a :class:`UringUnavailableWarning` naming the reason, unless the
environment variable ``TRIO_URING_REQUIRE=1`` is set, which makes it an error.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from .._core import _trio_compat
from .._core._manager import UringIOManager
from .._core._ring import Ring, RingUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from typing_extensions import TypeVarTuple, Unpack

    PosArgs = TypeVarTuple("PosArgs")

T = TypeVar("T")

_lock = threading.RLock()
_local = threading.local()
_armed = 0
_installed = False


class UringUnavailableWarning(RuntimeWarning):
    """io_uring cannot be used here; trio_uring fell back to trio's epoll backend."""


class UringUnavailableError(RuntimeError):
    """io_uring cannot be used here and ``TRIO_URING_REQUIRE=1`` forbids the fallback."""


def require() -> bool:
    """Whether ``TRIO_URING_REQUIRE=1`` forbids falling back to epoll."""
    return os.environ.get("TRIO_URING_REQUIRE", "") not in ("", "0")


@functools.cache
def unavailable_reason() -> str | None:
    """Why io_uring cannot drive trio in this process, or ``None`` if it can.

    The answer comes from really setting up (and closing) a ring once.  Setting
    ``TRIO_URING_DISABLE=1`` forces the epoll fallback.
    """
    if os.environ.get("TRIO_URING_DISABLE", "") not in ("", "0"):
        return "TRIO_URING_DISABLE is set"
    try:
        ring = Ring(entries=8)
    except RingUnavailable as exc:
        return str(exc.strerror)
    except OSError as exc:
        return f"io_uring setup failed: {exc}"
    ring.close()
    return None


def usable() -> bool:
    """True if io_uring can drive trio here (see :func:`unavailable_reason`)."""
    reason = unavailable_reason()
    if reason is None:
        return True
    if require():
        raise UringUnavailableError(
            f"io_uring is unavailable ({reason}) and TRIO_URING_REQUIRE=1 forbids the "
            "fallback to trio's epoll backend"
        )
    warnings.warn(
        f"trio_uring: io_uring is unavailable ({reason}); using trio's epoll backend",
        UringUnavailableWarning,
        stacklevel=3,
    )
    return False


class _Selector:
    """Stands in for ``TheIOManager`` while a ``run()`` call is setting up its runner."""

    def __new__(cls) -> Any:
        if getattr(_local, "want", False):
            _local.want = False
            return UringIOManager()
        return _trio_compat.EpollIOManager()


def _arm() -> None:
    global _armed
    with _lock:
        _local.want = True
        _armed += 1
        if not _installed:
            _trio_compat.run_module().TheIOManager = _Selector


def _disarm() -> None:
    global _armed
    with _lock:
        _local.want = False
        _armed -= 1
        if not _installed and _armed == 0:
            _trio_compat.run_module().TheIOManager = _trio_compat.EpollIOManager


def run(
    async_fn: Callable[[Unpack[PosArgs]], Awaitable[T]],
    *args: Unpack[PosArgs],
    **kwargs: Any,
) -> T:
    """Exactly :func:`trio.run`, with every wait going through one io_uring instance.

    Takes the same arguments (``clock``, ``instruments``, ``restrict_keyboard_interrupt_to_checkpoints``,
    ``strict_exception_groups``) and returns or raises what ``async_fn`` does.
    Where io_uring is unavailable it warns (:class:`UringUnavailableWarning`) and
    runs on trio's epoll backend, or raises :class:`UringUnavailableError` under
    ``TRIO_URING_REQUIRE=1``.
    """
    if not usable():
        return trio.run(async_fn, *args, **kwargs)
    _arm()
    try:
        return trio.run(async_fn, *args, **kwargs)
    finally:
        _disarm()


def start_guest_run(
    async_fn: Callable[..., Awaitable[T]],
    *args: object,
    **kwargs: Any,
) -> None:
    """Exactly :func:`trio.lowlevel.start_guest_run`, on an io_uring I/O manager.

    In guest mode trio waits for I/O in a worker thread; trio_uring then submits
    every SQE from the host thread at once and only waits in the worker.
    """
    if not usable():
        trio.lowlevel.start_guest_run(async_fn, *args, **kwargs)
        return
    _arm()
    try:
        trio.lowlevel.start_guest_run(async_fn, *args, **kwargs)
    finally:
        _disarm()


def install(*, streams: bool | None = None) -> bool:
    """Make every later ``trio.run`` / ``start_guest_run`` in this process use io_uring.

    That includes anyio's trio backend and pytest-trio.  Idempotent.  Returns
    True if installed, False if io_uring is unavailable (after warning, or
    raising under ``TRIO_URING_REQUIRE=1``).  ``streams``, if given, is
    :func:`~trio_uring.set_completion_streams`: whether ``trio.SocketStream``
    runs on trio_uring's stream machinery (default: yes, unless
    ``TRIO_URING_STREAMS=0``).
    """
    global _installed
    if streams is not None:
        from .._net import _trio_streams  # (not at import: it imports the hot path)

        _trio_streams.set_completion_streams(streams)
    if not usable():
        return False
    with _lock:
        _installed = True
        _trio_compat.run_module().TheIOManager = UringIOManager
    return True


def uninstall() -> None:
    """Undo :func:`install`: later runs use trio's own backend again, and
    ``trio.SocketStream.__init__`` is trio's own (the next run on io_uring wraps it
    again).  Idempotent."""
    global _installed
    from .._net import _trio_streams  # (not at import: it imports the hot path)

    _trio_streams._uninstall_patch()
    with _lock:
        _installed = False
        module = _trio_compat.run_module()
        module.TheIOManager = _Selector if _armed else _trio_compat.EpollIOManager


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    return _installed


SITE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_site")
"""The directory whose ``sitecustomize`` installs trio_uring in a starting Python process."""


def install_in_children(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Make the Python processes started with ``environ`` call :func:`~trio_uring.install`
    at start-up.

    The one mechanism behind ``pytest --trio-uring`` and ``python -m trio_uring run
    --children``: it puts ``trio_uring/_site`` first on ``PYTHONPATH`` (its ``sitecustomize``
    runs any ``sitecustomize`` it shadows, then installs trio_uring when
    ``TRIO_URING_INSTALL`` is set) and sets ``TRIO_URING_INSTALL=1``.  ``environ`` defaults
    to ``os.environ``, which every later subprocess (``subprocess``, ``trio.run_process``,
    multiprocessing's spawn and forkserver) inherits; pass a copy to prepare one child's
    environment.  Idempotent.  This process is not affected: call
    :func:`~trio_uring.install` for it.

    Returns the variables it set, name to new value.  Children started with ``python -I``
    or ``-E`` ignore ``PYTHONPATH`` and stay on trio's own backend.
    """
    env = os.environ if environ is None else environ
    old = env.get("PYTHONPATH", "")
    parts = old.split(os.pathsep) if old else []
    if SITE_DIR not in parts:
        parts.insert(0, SITE_DIR)
    values = {"PYTHONPATH": os.pathsep.join(parts), "TRIO_URING_INSTALL": "1"}
    env.update(values)
    return values
