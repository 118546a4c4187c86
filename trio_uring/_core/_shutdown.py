"""The end of a ring: closing a run's manager, rings the kernel still holds, fork.

Three ways a ring stops being used, kept apart from the loop protocol of
:mod:`trio_uring._core._manager`:

* :func:`close` (``UringIOManager.close``): cancel and drain every request, then
  release the ring, or keep it open as *lingering* while the kernel still holds
  memory of ours (zero-copy notifications waiting for a peer's ACK, requests that
  ignored the cancel);
* lingering rings are reaped, without waiting, by every new or closing manager,
  and kept referenced for good at interpreter exit (never freed under the kernel);
* a forked child has none of its parent's rings (they are ``MADV_DONTFORK``):
  every manager is marked so that touching it raises ``RuntimeError``.

Plain Python (not compiled): nothing here is on a hot path.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import struct
import warnings
import weakref
from time import perf_counter
from typing import TYPE_CHECKING, Final

from mypy_extensions import mypyc_attr

from ._constants import CQE_F_MORE
from ._operation import COMPLETED
from ._ring_cffi import lib

if TYPE_CHECKING:
    from ._manager import UringIOManager

#: The wake-up poll's user_data (the manager's ``_UD_WAKEUP``).
UD_WAKEUP: Final = 1
_unpack_cqes: Final = struct.Struct("=QiI").iter_unpack


@mypyc_attr(native_class=False)
class _ForkHandle:
    """Stands for a manager in ``_live_managers``; dies with it (they form a cycle)."""

    def __init__(self, manager: UringIOManager) -> None:
        self.manager = manager


#: Managers alive in this process (the fork handler must find them).
_live_managers: weakref.WeakSet[_ForkHandle] = weakref.WeakSet()

#: Closed managers whose ring still has requests the kernel holds (zero-copy
#: notifications waiting for a peer's ACK, requests that ignored the cancel).
#: Their memory stays referenced and their ring open until the kernel lets go;
#: every new or closing manager reaps them without waiting.
_lingering: list[UringIOManager] = []


def track(manager: UringIOManager) -> object:
    """Register a new manager for the fork handler; keep the returned handle on it.

    (A mypyc-compiled class has no weak references: the set holds the handle.)
    """
    handle = _ForkHandle(manager)
    _live_managers.add(handle)
    return handle


def reap_lingering() -> None:
    """Reap the lingering rings' late CQEs; close those the kernel let go of."""
    if _lingering:
        _lingering[:] = [m for m in _lingering if not _poll_lingering(m)]


def lingering() -> int:
    """How many requests of closed runs the kernel still holds (their memory stays referenced)."""
    reap_lingering()
    return sum(len(m._ops) for m in _lingering)


def close(manager: UringIOManager) -> None:
    """``UringIOManager.close``: cancel and drain every request, then release the ring.

    Never raises.  Waits at most ``drain_timeout`` for cancelled requests to end,
    and never for zero-copy notifications: whatever the kernel still holds then
    stays referenced, with the ring, until it lets go (see :func:`lingering`), and
    a ``ResourceWarning`` says how much.
    """
    if manager._closed:
        return
    _live_managers.discard(manager._fork_handle)  # type: ignore[arg-type]
    if manager._forked_from is not None:
        manager._closed = True
        return
    leftover = 0
    manager._draining = True
    try:
        _drain(manager)
    except BaseException:  # close() must never raise: it would poison the thread
        pass
    finally:
        manager._closed = True
        manager._readiness.clear()
        manager._timeouts.expired.clear()
        for op in manager._ops.values():
            op.detach()
        leftover = len(manager._ops)
        try:
            if leftover:
                _lingering.append(manager)  # the ring stays open until the kernel lets go
            else:
                manager._ring.close()
        finally:
            try:
                os.close(manager._wakefd)
            except OSError:
                pass
    if leftover:
        nbytes = sum(op.pinned_bytes() for op in manager._ops.values())
        with contextlib.suppress(Warning):
            warnings.warn(
                f"trio_uring: the run ended with {leftover} request(s) the kernel still "
                f"holds ({nbytes} bytes of buffers, e.g. zero-copy sends waiting for the "
                "peer's ACK); they stay referenced until the kernel lets go",
                ResourceWarning,
                stacklevel=3,
            )


def _drain(manager: UringIOManager) -> None:
    """Withdraw or cancel every request; wait a little for the cancellations to land."""
    manager._ops.pop(UD_WAKEUP, None)
    manager._guest = False
    ops = manager._ops
    if not ops:
        return
    for op in list(ops.values()):
        if op.cancellable():  # (not: a zero-copy send waiting for its notification)
            manager.withdraw(op)
    lib.tu_submit(manager._r)
    end = perf_counter() + manager.drain_timeout
    while any(op.cancellable() for op in ops.values()):
        left = end - perf_counter()
        if left <= 0:
            break
        lib.tu_wait(manager._r, 1, 1, int(min(left, 0.05) * 1e9))
        _finish_quietly(manager, manager._reap())
    _finish_quietly(manager, manager._reap())


def _finish_quietly(manager: UringIOManager, events: bytes) -> None:
    """Dispatch CQEs after the run: nobody is woken; memory is released at final CQEs."""
    ops = manager._ops
    for user_data, res, flags in _unpack_cqes(events):
        op = ops.get(user_data) if flags & CQE_F_MORE else ops.pop(user_data, None)
        if op is not None:
            op.detach()
            op.on_cqe(res, flags)
            if not flags & CQE_F_MORE and op.state != COMPLETED:
                op.retire()  # (whatever its kind would have waited for next)


def _poll_lingering(manager: UringIOManager) -> bool:
    """Reap a closed ring's late CQEs; True once the kernel let go of everything."""
    if manager._forked_from is not None:
        return True
    _finish_quietly(manager, manager._reap())
    if manager._ops:
        return False
    manager._ring.close()
    return True


def _keep_lingering_at_exit() -> None:
    """At interpreter exit, never free what the kernel may still read or write.

    Finalization clears module globals, which would free the lingering managers'
    operations and with them the buffers a zero-copy send's pinned pages or a
    request that ignored its cancel still reference, while Python goes on running
    (and reusing that memory) until the process ends.  Whatever still lingers is
    given one reference that is never dropped: the process's exit, not Python,
    ends it (the kernel tears the ring down then).
    """
    reap_lingering()
    if _lingering:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(list(_lingering)))


atexit.register(_keep_lingering_at_exit)


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's rings (they are MADV_DONTFORK).

    Mark every manager so that touching it raises ``RuntimeError`` instead of
    reading unmapped memory, close the child's copies of their fds, and forget the
    lingering rings (the parent still owns their memory).
    """
    parent = os.getppid()
    for manager in [h.manager for h in _live_managers] + _lingering:
        manager._forked_from = parent
        manager._closed = True
        lib.tu_forget(manager._r)
        with contextlib.suppress(OSError):
            os.close(manager._wakefd)
        manager._ops.clear()
        manager._fd_ops.clear()
        manager._timeouts.expired.clear()
    _live_managers.clear()
    _lingering.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
