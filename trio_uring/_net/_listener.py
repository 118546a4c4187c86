"""``SocketListener`` on io_uring completions: one multishot ``IORING_OP_ACCEPT``.

Where the kernel has ``IORING_ACCEPT_MULTISHOT`` (Linux 5.19) a listener takes
connections from one multishot ``ACCEPT`` (:class:`_AcceptOp`) whose completions queue
the new connections' fds in the listener, through a bounded queue (see
:class:`SocketListener`); elsewhere, and outside an io_uring run, one ``accept`` of the
trio socket per call.  Each accepted connection becomes a :class:`SocketStream`.
"""

from __future__ import annotations

import errno
import os
import socket as _stdlib_socket
from collections import deque
from contextlib import suppress
from typing import TYPE_CHECKING, Final

import outcome
import trio
from trio import socket as tsocket
from trio.lowlevel import Abort, checkpoint, reschedule

from .._core import _kernels, _sqe
from .._core._constants import CQE_F_MORE
from .._core._manager import UringIOManager
from .._core._operation import Operation
from .._core._ring_cffi import ffi
from .._core._trio_compat import (
    GLOBAL_RUN_CONTEXT,
    READY,
    WaitTaskRescheduled,
    completed_checkpoint,
    current_runner,
    ki_protect,
    park,
)
from ._errors import CLOSED_ERRNOS as _CLOSED_ERRNOS
from ._streams import SocketStream, ZeroCopyPolicy, _zc_threshold

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio.lowlevel import Task

__all__ = ["SocketListener"]

# (Final: a compiled build keeps them in C statics, not a module-dict lookup per use.)
_park: Final = park
_completed_checkpoint: Final = completed_checkpoint
_READY: Final = READY
_run_context: Final = GLOBAL_RUN_CONTEXT
_ECANCELED: Final = -errno.ECANCELED
_EINVAL: Final = -errno.EINVAL
_ACCEPT_FLAGS: Final = int(_stdlib_socket.SOCK_CLOEXEC | _stdlib_socket.SOCK_NONBLOCK)

_ignorable_accept_errnos: set[int] = set()
for _name in (
    "EPERM", "ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET",
    "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "ENOSR", "ESOCKTNOSUPPORT",
    "EPROTONOSUPPORT", "ETIMEDOUT", "ECONNRESET",
):  # fmt: skip
    with suppress(AttributeError):
        _ignorable_accept_errnos.add(getattr(errno, _name))


#: Accepted connections a :class:`SocketListener` queues before it stops its multishot
#: ACCEPT (the kernel's listen backlog holds further ones) ...
ACCEPT_QUEUE_MAX: Final = 64
#: ... and at or below which ``accept`` arms it again.
ACCEPT_QUEUE_LOW: Final = 16


class _AcceptOp(Operation):
    """The listener's multishot ACCEPT; nobody parks on it, its CQEs queue fds in the listener."""

    __slots__ = ("accepted", "listener", "stopping")

    def __init__(self, listener: SocketListener, manager: UringIOManager, fd: int) -> None:
        super().__init__(manager, fd)
        self.listener = listener
        self.stopping = False
        self.accepted = False

    def on_cqe(self, res: int, flags: int) -> None:
        lst = self.listener
        if res >= 0:
            self.accepted = True
            if lst._closed:
                os.close(res)  # accepted while the listener closed: nobody will take it
            else:
                lst._queue.append(res)
                if len(lst._queue) >= ACCEPT_QUEUE_MAX and not self.stopping:
                    # Backpressure: stop accepting; the kernel's backlog holds the rest.
                    self.stopping = True
                    self.manager.async_cancel(self)
        elif res != _ECANCELED and -res not in _ignorable_accept_errnos:
            if res == _EINVAL and not self.accepted:
                lst._multishot = False  # this listener takes one ACCEPT per call instead
            elif lst._error is None:
                lst._error = OSError(-res, os.strerror(-res))
        if not flags & CQE_F_MORE:
            self.complete()
            if lst._accept_op is self:
                lst._accept_op = None
            if not (
                self.closing
                or self.stopping
                or lst._closed
                or lst._error is not None
                or not lst._multishot
                or self.manager.closed
                or len(lst._queue) >= ACCEPT_QUEUE_MAX
            ):
                lst._arm(self.manager)  # ended for another reason (CQ overflow, ...)
        task = lst._waiter
        if task is not None and (lst._queue or lst._error is not None or not lst._multishot):
            lst._waiter = None
            self.manager.reschedule(task, _READY)

    def on_closing(self) -> None:
        """The listening socket is being closed (``notify_closing``)."""
        if not self.closing:
            self.closing = True
            lst = self.listener
            if self.manager.withdraw(self) and lst._accept_op is self:
                lst._accept_op = None
            lst._shutdown()


class SocketListener(trio.abc.Listener[SocketStream]):
    """A :class:`trio.abc.Listener` accepting connections as trio_uring :class:`SocketStream`.

    Same contract as :class:`trio.SocketListener`; it owns the listening socket.
    ``zerocopy`` is passed on to every accepted stream.

    Where the kernel has ``IORING_ACCEPT_MULTISHOT`` (5.19), the first ``accept``
    arms one multishot ``ACCEPT`` whose completions queue the new connections'
    fds in the listener; ``accept`` takes them from that queue.  The queue is
    bounded: at ``ACCEPT_QUEUE_MAX`` (64) fds the multishot is cancelled (the
    kernel's listen backlog holds further connections; the queue may exceed the
    bound by the connections the kernel accepted before the cancel reached it,
    those of one loop tick), and ``accept`` re-arms it once the queue is down to
    ``ACCEPT_QUEUE_LOW`` (16).  Older kernels (and trio's epoll fallback) submit
    one ``ACCEPT`` per call.

    Attributes:
      socket (trio.socket.SocketType): the listening socket the listener owns (as
          :attr:`trio.SocketListener.socket`).
    """

    def __init__(self, socket: tsocket.SocketType, *, zerocopy: ZeroCopyPolicy = "auto") -> None:
        if not isinstance(socket, tsocket.SocketType):
            raise TypeError("SocketListener requires a Trio socket object")
        if socket.type != tsocket.SOCK_STREAM:
            raise ValueError("SocketListener requires a SOCK_STREAM socket")
        try:
            listening = socket.getsockopt(tsocket.SOL_SOCKET, tsocket.SO_ACCEPTCONN)
        except OSError:
            pass
        else:
            if not listening:
                raise ValueError("SocketListener requires a listening socket")
        _zc_threshold(zerocopy)
        self._zerocopy: ZeroCopyPolicy = zerocopy
        self.socket = socket
        #: (family, type, proto) of accepted sockets, as plain ints (no enum per accept).
        self._kind = (int(socket.family), int(socket.type), int(socket.proto))
        #: Accepted fds not yet handed out (multishot path).
        self._queue: deque[int] = deque()
        self._accept_op: _AcceptOp | None = None
        self._waiter: Task | None = None
        self._trap = WaitTaskRescheduled(self._abort_accept)
        #: An error the multishot ended with, raised by the next ``accept``.
        self._error: OSError | None = None
        #: None: not decided yet (decided at the first accept, from the run's kernel).
        self._multishot: bool | None = None
        self._closed = False

    async def accept(self) -> SocketStream:
        """Accept a connection; routine errors (``ECONNABORTED``, ...) are skipped.

        Raises ``ClosedResourceError`` if the listener was closed (also while
        waiting), ``BusyResourceError`` if another task is accepting, and
        ``OSError`` for other errors, like trio: ``EMFILE``/``ENFILE``/``ENOMEM``/
        ``ENOBUFS`` are raised, and ``trio.serve_listeners`` logs them, sleeps
        and retries (the connection stays in the kernel's backlog).
        Cancellation loses no connection: connections accepted meanwhile stay
        queued for the next ``accept``.
        """
        while True:
            manager = self._multishot_manager()
            if manager is None:
                if self._queue and not self._closed:
                    # Accepted by a multishot of an earlier run: hand those out first.
                    await checkpoint()
                    if self._queue and not self._closed:
                        return self._stream(None, self._queue.popleft())
                return await self._accept_one()
            if self._closed or self.socket.fileno() == -1:
                await checkpoint()
                raise trio.ClosedResourceError("this listener was already closed")
            if self._waiter is not None:
                raise trio.BusyResourceError("another task is already accepting on this listener")
            queue = self._queue
            if queue or self._error is not None:
                await _completed_checkpoint()
            else:
                if self._accept_op is None:
                    self._arm(manager)
                self._waiter = _run_context.task
                await _park(self._trap)
            if self._closed:
                raise trio.ClosedResourceError("another task closed this listener")
            if queue:
                return self._stream(manager, queue.popleft())
            err = self._error
            if err is not None:
                self._error = None
                if err.errno in _CLOSED_ERRNOS:
                    raise trio.ClosedResourceError from None
                raise err

    def _multishot_manager(self) -> UringIOManager | None:
        """The current run's manager if ``accept`` takes connections from a multishot.

        None on trio's own backend, on a kernel without multishot ``ACCEPT``, or once
        the kernel refused it for this listener.  A listener holds no state of a
        finished run: a multishot armed in one is forgotten (its ring is closed).
        """
        op = self._accept_op
        if op is not None:
            manager = op.manager
            if not manager.closed:
                return manager  # armed in this run
            self._accept_op = None
        if self._multishot is False:
            return None
        try:
            io_manager = current_runner().io_manager
        except RuntimeError:
            return None  # (the one-shot path raises trio's error)
        if not isinstance(io_manager, UringIOManager):
            return None
        if self._multishot is None:
            self._multishot = io_manager.ring.has(_kernels.MULTISHOT_ACCEPT)
            if not self._multishot:
                return None
        return io_manager

    def _stream(self, manager: UringIOManager | None, fd: int) -> SocketStream:
        """Wrap an accepted fd (closed if that fails); re-arm the multishot if due."""
        if (
            manager is not None
            and self._accept_op is None
            and len(self._queue) <= ACCEPT_QUEUE_LOW
            and self._error is None
            and self._multishot
        ):
            self._arm(manager)
        family, type_, proto = self._kind
        try:
            sock = tsocket.from_stdlib_socket(
                _stdlib_socket.socket(family, type_, proto, fileno=fd)
            )
        except BaseException:
            os.close(fd)
            raise
        return SocketStream._accepted(sock, self._zerocopy)

    def _arm(self, manager: UringIOManager) -> None:
        fd = self.socket.fileno()
        op = _AcceptOp(self, manager, fd)
        manager.submit(
            _sqe.accept(fd, ffi.NULL, 0, _ACCEPT_FLAGS, multishot=True), op=op, waiter=False
        )
        self._accept_op = op

    def _abort_accept(self, _: Callable[[], object]) -> Abort:
        self._waiter = None
        return Abort.SUCCEEDED

    def __del__(self) -> None:
        # Dropped without aclose() (its multishot ended with the run or the socket):
        # the connections accepted for it go with it, as an unclosed listening
        # socket's backlog goes with that socket.
        try:
            queue = self._queue
        except AttributeError:  # __init__ raised before the queue existed
            return
        while queue:
            with suppress(OSError):
                os.close(queue.popleft())

    def _shutdown(self) -> None:
        """Closed: close every queued fd, wake the waiter with ``ClosedResourceError``."""
        self._closed = True
        queue = self._queue
        while queue:
            os.close(queue.popleft())
        task = self._waiter
        if task is not None:
            self._waiter = None
            reschedule(
                task, outcome.Error(trio.ClosedResourceError("another task closed this listener"))
            )

    async def _accept_one(self) -> SocketStream:
        """One ``accept`` on the trio socket (one ACCEPT SQE under io_uring)."""
        while True:
            try:
                sock, _ = await self.socket.accept()
            except OSError as exc:
                if exc.errno in _CLOSED_ERRNOS:
                    raise trio.ClosedResourceError from None
                if exc.errno not in _ignorable_accept_errnos:
                    raise
            else:
                return SocketStream(sock, zerocopy=self._zerocopy)

    async def aclose(self) -> None:
        """Close the listening socket and every queued connection."""
        op = self._accept_op
        if op is not None and not op.closing:
            op.on_closing()
        self._shutdown()
        self.socket.close()
        await checkpoint()


# KeyboardInterrupt protection (issue 19, finding 3): every function whose frame is
# live between writing an SQE and parking on it (or recording the operation it
# submitted); see _streams.py.
ki_protect(
    SocketListener.accept,
    SocketListener._stream,
    SocketListener._arm,
    SocketListener._accept_one,
)

# Compiled: the public objects become real coroutine functions (and get their
# docstrings and signatures) over the compiled bodies; see _core/_public.py.
from .._core._public import dress  # noqa: E402
from .._core._ring import guard_weakrefs  # noqa: E402

dress(__name__)
# Weak references to a SocketListener are safe in the compiled build too (see guard_weakrefs).
guard_weakrefs(SocketListener)
