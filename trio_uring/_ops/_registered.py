"""Registered (fixed) buffers: memory pinned once with ``IORING_REGISTER_BUFFERS``.

A registered buffer skips the per-request page pinning the kernel otherwise does
for every read and write (``IORING_OP_READ_FIXED`` / ``WRITE_FIXED``).  Registration belongs to the ring of the
current run; a ring holds at most one registered set at a time.

Buffer ownership follows the project's one rule: every registered buffer stays
exported (it cannot be resized or freed) from :func:`register_buffers` until
:meth:`RegisteredBuffers.unregister` returns, and ``unregister`` refuses
(``trio.BusyResourceError``) while an operation on the set is in flight.  The
ring's teardown at the end of the run releases a set that was never unregistered.
"""

from __future__ import annotations

import operator
import os
import struct
from collections.abc import Callable, Sequence
from typing import Any

import trio

from .._core import _sqe
from .._core._constants import REGISTER_BUFFERS, UNREGISTER_BUFFERS
from .._core._manager import UringIOManager, current_manager
from .._core._operation import export
from .._core._ring_cffi import ffi
from .._core._trio_compat import ki_protect
from ._files import check_offset
from ._sockets import fileno_of

_iovec = struct.Struct("@PN")


class RegisteredBuffers:
    """A set of buffers registered with the current run's ring.

    Index ``i`` names ``buffers[i]``.  Use it as a context manager, or call
    :meth:`unregister` when done; it may only be used in the run that created it.
    """

    def __init__(self, manager: UringIOManager, buffers: Sequence[Any]) -> None:
        self._manager = manager
        self._views = [memoryview(b) for b in buffers]
        self._cdata: list[Any] = []
        try:
            for v in self._views:
                self._cdata.append(export(v, writable=True))
        except (TypeError, BufferError):
            self._release()  # the buffers exported before the bad one are free again
            raise TypeError("registered buffers must be writable (bytearray, mmap, ...)") from None
        self._in_flight = 0
        self._registered = False
        iov = ffi.new("char[]", _iovec.size * max(1, len(buffers)))
        view = ffi.buffer(iov)
        for i, (c, v) in enumerate(zip(self._cdata, self._views, strict=True)):
            _iovec.pack_into(view, i * _iovec.size, int(ffi.cast("uintptr_t", c)), v.nbytes)
        rc = manager.register(REGISTER_BUFFERS, iov, len(buffers))
        if rc < 0:
            import errno

            nbytes = sum(v.nbytes for v in self._views)
            self._release()
            message = "IORING_REGISTER_BUFFERS: " + os.strerror(-rc)
            if rc == -errno.ENOMEM:
                import resource

                soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
                limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft} bytes"
                message += (
                    f" ({nbytes} bytes): registered buffers are pinned and count against "
                    f"RLIMIT_MEMLOCK (it is {limit}) unless the process has CAP_IPC_LOCK; "
                    "raise it with ulimit -l, LimitMEMLOCK= or docker run --ulimit memlock=, "
                    "or register less"
                )
            raise OSError(-rc, message)
        self._registered = True
        manager.registered_buffers = self

    def __len__(self) -> int:
        return len(self._views)

    def __getitem__(self, index: int) -> memoryview:
        return self._views[index]

    def __enter__(self) -> RegisteredBuffers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unregister()

    @property
    def registered(self) -> bool:
        """Whether the buffers are registered with the ring (False after :meth:`unregister`)."""
        return self._registered

    def unregister(self) -> None:
        """Unregister the set and release the buffers (idempotent).

        The views ``self[i]`` are released too: the buffers are free again (can
        be resized) as soon as this returns, whoever still references a view.

        :raises trio.BusyResourceError: an operation on the set is still in flight.
        """
        if not self._registered:
            return
        if self._in_flight:
            raise trio.BusyResourceError("an operation on these registered buffers is in flight")
        manager = self._manager
        if not manager.closed:
            manager.register(UNREGISTER_BUFFERS, ffi.NULL, 0)
        if manager.registered_buffers is self:
            manager.registered_buffers = None
        self._registered = False
        self._release()

    def _release(self) -> None:
        """Give the buffers back: the exports, and the views themselves (a frame kept by
        a traceback may still reference one; it must not keep the buffer exported)."""
        for c in self._cdata:
            ffi.release(c)
        for v in self._views:
            try:
                v.release()
            except BufferError:  # pragma: no cover - an operation's export; freed at its CQE
                pass
        self._cdata = []
        self._views = []

    async def _perform(
        self,
        fd: Any,
        index: Any,
        buf_offset: Any,
        nbytes: Any,
        offset: Any,
        fixed: Callable[[int, int, int, Any, int], _sqe.Sqe],
        writable: bool,
    ) -> int:
        """Validate, submit one ``READ_FIXED``/``WRITE_FIXED`` on buffer ``index``, wait.

        Every argument that can run user code (``__index__``, ``fileno()``) is
        converted first; only then is the set's state checked and the SQE written,
        with no user code in between (an ``__index__`` that unregisters the set
        gets ``ClosedResourceError``, not a stale address).  The operation exports
        the buffer itself (the SQE's address is that export plus ``buf_offset``,
        its range checked against it) and the set counts it in flight: both are
        given back only at the final CQE, so neither ``unregister`` nor a resize
        can free memory the kernel may still write.
        """
        index = operator.index(index)
        buf_offset = operator.index(buf_offset)
        n = -1 if nbytes is None else operator.index(nbytes)
        offset = check_offset(offset)
        fileno = fileno_of(fd)
        if not self._registered:
            raise trio.ClosedResourceError("these registered buffers were unregistered")
        manager = self._manager
        if current_manager() is not manager:
            raise RuntimeError("registered buffers belong to the run that registered them")
        if not 0 <= index < len(self._views):
            raise IndexError("registered buffer index out of range")
        view = self._views[index]
        size = view.nbytes
        if not 0 <= buf_offset <= size:
            raise ValueError("buf_offset outside the buffer")
        if n < 0:
            if nbytes is not None:
                raise ValueError("nbytes outside the buffer")
            n = size - buf_offset
        elif buf_offset + n > size:
            raise ValueError("nbytes outside the buffer")
        self._in_flight += 1
        try:
            return await manager.perform(
                fixed(fileno, n, offset, buf_offset, index), buffer=view, writable=writable
            )
        finally:
            # perform returns or raises only after the final CQE (or without having
            # submitted): the kernel is done with the buffer.
            self._in_flight -= 1


def register_buffers(buffers: Sequence[Any]) -> RegisteredBuffers:
    """Register writable buffers (``bytearray``, ``memoryview``, ``mmap``) with the ring.

    :raises trio.BusyResourceError: the ring already has a registered set.
    :raises OSError: the kernel refused (``ENOMEM``: ``RLIMIT_MEMLOCK`` too low).
    :raises TypeError: a buffer is read-only.
    """
    manager = current_manager()
    current = manager.registered_buffers
    if isinstance(current, RegisteredBuffers) and current.registered:
        raise trio.BusyResourceError("this run's ring already has registered buffers")
    if not buffers:
        raise ValueError("no buffers to register")
    return RegisteredBuffers(manager, buffers)


async def read_fixed(
    fd: Any,
    buffers: RegisteredBuffers,
    index: int,
    nbytes: int | None = None,
    offset: int = -1,
    *,
    buf_offset: int = 0,
) -> int:
    """Read into registered buffer ``index`` (``IORING_OP_READ_FIXED``); returns the count.

    Cancellation follows :func:`trio_uring.lowlevel.read`: a read the kernel
    completed anyway is returned, not lost.
    """
    return await buffers._perform(fd, index, buf_offset, nbytes, offset, _sqe.read_fixed, True)


async def write_fixed(
    fd: Any,
    buffers: RegisteredBuffers,
    index: int,
    nbytes: int | None = None,
    offset: int = -1,
    *,
    buf_offset: int = 0,
) -> int:
    """Write from registered buffer ``index`` (``IORING_OP_WRITE_FIXED``); returns the count."""
    return await buffers._perform(fd, index, buf_offset, nbytes, offset, _sqe.write_fixed, False)


__all__ = [
    "RegisteredBuffers",
    "read_fixed",
    "register_buffers",
    "write_fixed",
]

# KeyboardInterrupt protection (issue 19, finding 3): the frames live between the SQE's
# submit and its park.  The in-flight count must match the operations the kernel holds:
# an interrupt between the increment and the ``try`` (or in the ``finally`` before the
# decrement) left it counting a finished operation, and ``unregister`` refused for good.
ki_protect(RegisteredBuffers._perform, read_fixed, write_fixed)
