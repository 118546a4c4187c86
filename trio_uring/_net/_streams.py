"""``SocketStream`` on io_uring completions.

Sending: ``send_all`` submits one ``IORING_OP_SEND`` (``MSG_WAITALL``) for the
whole buffer, or ``IORING_OP_SEND_ZC`` at or above the stream's zero-copy
threshold (see :mod:`trio_uring._ops._zerocopy` for when the buffer is free again).
A stream's first ``send_all`` (below the threshold) tries ``write(2)`` first: a new
connection's send buffer is empty, so it takes the data with no SQE.

Receiving: the first ``receive_some`` tries ``read(2)`` first (a short connection's
request is usually there already: then it never arms, and never has to cancel, a
multishot); if that would block, or from the second call on, it arms one multishot
``IORING_OP_RECV`` over the manager's provided-buffer ring
(:mod:`trio_uring._ops._provided`).  From then on
every CQE's data is copied out of its buffer inside ``process_events`` (the
buffer goes straight back to the kernel) and queued in the stream, so a
``receive_some`` normally completes with no new SQE and one scheduler trip.
The queue is bounded: above ``RECEIVE_HIGH_WATER`` bytes the multishot is
cancelled, and it is re-armed when ``receive_some`` drains the queue below
``RECEIVE_LOW_WATER``.  A multishot that ends without ``IORING_CQE_F_MORE``
(``-ENOBUFS``, CQ overflow, ...) is re-armed; data never goes to a task
directly, so a cancelled ``receive_some`` loses no byte.  Where multishot
receive is unavailable each call submits one ``IORING_OP_RECV``.

Accepting: :class:`~trio_uring.SocketListener` (``_listener.py``) makes these streams.

Outside an io_uring run (trio's epoll fallback) the streams forward to
:class:`trio.SocketStream`.
"""

from __future__ import annotations

import errno
import operator
import os
import socket as _stdlib_socket
import sys
import types
import weakref
from collections import deque
from contextlib import suppress
from math import inf
from typing import TYPE_CHECKING, Final, Literal, SupportsIndex, overload

import outcome
import trio
from mypy_extensions import mypyc_attr
from trio import socket as tsocket
from trio.lowlevel import (
    Abort,
    checkpoint,
    checkpoint_if_cancelled,
    reschedule,
)

from .._core import _kernels, _sqe
from .._core._constants import (
    CQE_F_MORE,
    CQE_F_SOCK_NONEMPTY,
    MSG_NOSIGNAL,
    Op,
)
from .._core._manager import UringIOManager, current_manager
from .._core._operation import Operation, buffer_nbytes
from .._core._ring_cffi import ffi, lib
from .._core._trio_compat import (
    CANCEL_TEST,
    GLOBAL_RUN_CONTEXT,
    READY,
    SHUT_WR_FIELD,
    STDLIB_SOCKET_FIELD,
    SYSCALL_FIRST,
    CancelShieldedCheckpoint,
    TrioSocketType,
    WaitTaskRescheduled,
    cancel_pending,
    completed_checkpoint,
    current_runner,
    ki_protect,
    park,
    plain_trio_socket,
)
from .._ops import _provided
from .._ops._zerocopy import submit_zc
from . import _sendfile
from ._errors import translate as _translate
from ._trio_sockets import UringSocket, _raw_type

if TYPE_CHECKING:
    from collections.abc import Callable, Generator
    from typing import Any

    from trio.lowlevel import Task

    from .._core._ring import Ring

    if sys.version_info >= (3, 12):
        from collections.abc import Buffer
    else:
        from typing_extensions import Buffer

__all__ = ["SocketStream"]

DEFAULT_RECEIVE_SIZE: Final = 65536
#: Zero-copy threshold of ``zerocopy="auto"``: SEND below, SEND_ZC at or above.
#: Published break-even points are 4-16 KiB (docs/performance-history.rst,
#: "Measurements once in docstrings", has the sources and the loopback figures).
ZEROCOPY_THRESHOLD: Final = 16384
#: Bytes queued in a stream before its multishot receive is stopped ...
RECEIVE_HIGH_WATER: Final = 256 * 1024
#: ... and below which it is re-armed.
RECEIVE_LOW_WATER: Final = 64 * 1024

#: A stream's first ``send_all`` below this size tries the syscall first.
_FIRST_SEND_MAX: Final = ZEROCOPY_THRESHOLD
_MSG_WAITALL: Final = 0x100
_SEND_FLAGS: Final = _MSG_WAITALL | MSG_NOSIGNAL
# (Final: a compiled build keeps them in C statics, not a module-dict lookup per use.)
_park: Final = park
_completed_checkpoint: Final = completed_checkpoint
_READY: Final = READY
_run_context: Final = GLOBAL_RUN_CONTEXT
#: Whether trio's ``_nonblocking_helper`` is the one :func:`_send_now` and
#: :func:`_receive_now` copy (``_trio_compat.TRIO_MIRRORS``); else they never try.
_SYSCALL_FIRST: Final = SYSCALL_FIRST
_ENOBUFS: Final = -errno.ENOBUFS
_ECANCELED: Final = -errno.ECANCELED
_EINVAL: Final = -errno.EINVAL
_ZC_FALLBACK_ERRNOS: Final = frozenset({errno.EOPNOTSUPP, errno.ENOMEM, errno.EINVAL})
_SOCK_STREAM: Final = int(_stdlib_socket.SOCK_STREAM)
_IPPROTO_TCP: Final = int(_stdlib_socket.IPPROTO_TCP)
_TCP_NODELAY: Final = int(_stdlib_socket.TCP_NODELAY)
_TCP_NOTSENT_LOWAT: Final = getattr(_stdlib_socket, "TCP_NOTSENT_LOWAT", None)
#: Receive buffers the kernel fills are copied out at once: no need to zero them.
_alloc: Final = ffi.new_allocator(should_clear_after_alloc=False)

ZeroCopyPolicy = Literal["auto", "always", "never"]


def _abort_pending(_: Callable[[], object]) -> Abort:
    return Abort.SUCCEEDED


#: A park that only the cancel (or ``KeyboardInterrupt``) already pending for the task
#: ends: trio delivers it as the task parks (see :func:`_close_checkpoint`).
_DELIVER_PENDING: Final = WaitTaskRescheduled(_abort_pending)
_CANCEL_TEST: Final = CANCEL_TEST

#: The last manager a stream bound to (by its ring: a compiled manager has no weak
#: references), with its zero-copy answer and stream ring.
_bound: tuple[weakref.ref[Ring], bool, _provided.BufferRing | None] | None = None


def _zc_threshold(policy: str) -> float:
    if policy == "auto":
        return ZEROCOPY_THRESHOLD
    if policy == "always":
        return 1
    if policy == "never":
        return inf
    raise ValueError(f"zerocopy must be 'auto', 'always' or 'never', not {policy!r}")


@mypyc_attr(native_class=False)
class _Anchor:
    """What a multishot receive holds of its stream: a weak reference to this.

    The stream and its anchor refer to each other (``aclose`` breaks that cycle), so
    a stream dropped unclosed is freed by the garbage collector, which clears the
    receive's weak reference first and then runs ``SocketStream.__del__``.  (A weak
    reference to the compiled stream itself would not do: mypyc's deallocator of a
    native class does not clear the weak references to it.)
    """

    __slots__ = ("__weakref__", "stream")

    def __init__(self, stream: SocketStream) -> None:
        self.stream: SocketStream | None = stream


class _RecvOp(Operation):
    """The stream's multishot RECV; nobody parks on it, its CQEs feed the stream's queue.

    The buffer ring it reads into is the manager's and stays referenced (``keep``)
    until the final CQE.  It holds the stream weakly (through its :class:`_Anchor`):
    the manager's table holds the operation until its final CQE, and must not keep a
    stream its user dropped (and its socket) alive; ``SocketStream.__del__`` ends it
    instead.  After that its CQEs' buffers go straight back to the ring.
    """

    __slots__ = ("anchor", "draining", "got_data", "ring", "stopping")

    def __init__(self, anchor: _Anchor, manager: UringIOManager, ring: _provided.BufferRing):
        super().__init__(manager)
        self.anchor: weakref.ref[_Anchor] = weakref.ref(anchor)
        self.ring = ring
        self.stopping = False
        self.got_data = False
        # Taking data the kernel had queued (SOCK_NONEMPTY), or not yet seen any.
        self.draining = True

    def on_cqe(self, res: int, flags: int) -> None:
        anchor = self.anchor()
        s = anchor.stream if anchor is not None else None
        data = self.ring.data(res, flags)  # (b"" or None unless res > 0)
        if s is None:  # dropped unclosed: its __del__ asked the manager to end this
            if not flags & CQE_F_MORE:
                self.complete()
            return
        if data:
            rq = s._rq
            if rq is None:
                rq = s._rq = deque()
            rq.append(data)
            s._rq_bytes += res
            self.got_data = True
            if flags & CQE_F_MORE:  # the hot path
                if flags & CQE_F_SOCK_NONEMPTY:
                    self.draining = True
                elif self.draining:
                    self.draining = False
                    self._check_hung_up(s)
                if s._rq_bytes >= RECEIVE_HIGH_WATER and not self.stopping:
                    self.stopping = True
                    self.manager.async_cancel(self)
                task = s._r_waiter
                if task is not None:
                    s._r_waiter = None
                    self.manager.reschedule(task, _READY)
                return
        if res == 0:
            s._r_eof = True
        elif res < 0 and res != _ENOBUFS and res != _ECANCELED:
            if res == _EINVAL and not self.got_data:
                # This socket (or the kernel) does not do a multishot recv: this one
                # stream falls back to one RECV per call; the others keep theirs.
                s._ring = None
            else:
                s._r_err = OSError(-res, os.strerror(-res))
        if not flags & CQE_F_MORE:
            self.complete()
            if s._recv_op is self:
                s._recv_op = None
            if not (
                self.closing
                or s._closed
                or s._r_eof
                or s._r_err is not None
                or s._ring is None
                or self.manager.closed
                or (self.stopping and s._rq_bytes >= RECEIVE_LOW_WATER)
            ):
                s._arm_recv()
        task = s._r_waiter
        if task is not None and (s._rq or s._r_eof or s._r_err is not None or s._ring is None):
            s._r_waiter = None
            self.manager.reschedule(task, _READY)

    def _check_hung_up(self, s: SocketStream) -> None:
        """After draining a backlog: learn of a reset or close that came in behind it.

        The kernel's multishot receive stops taking data when the socket reports
        no more queued, and then waits for a wake-up; a reset that arrived while
        it was still draining was that wake-up, so it would wait forever (seen on
        Linux 6.18).  One ``poll(fd, 0)`` tells; a socket that has hung up then
        gives its error (or EOF) to a plain receive, and the multishot is cancelled.
        """
        fd = s.socket.fileno()
        if fd < 0 or not lib.tu_hung_up(fd):
            return
        try:
            data = os.read(fd, DEFAULT_RECEIVE_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            s._r_err = exc
        else:
            if not data:
                s._r_eof = True
            else:  # (data after a hang-up: none can arrive, but never drop it)
                if s._rq is None:
                    s._rq = deque()
                s._rq.append(data)
                s._rq_bytes += len(data)
                return
        if not self.stopping:
            self.stopping = True
            self.manager.async_cancel(self)

    def on_closing(self) -> None:
        anchor = self.anchor()
        s = anchor.stream if anchor is not None else None
        if s is not None:
            s._closed = True
        if not self.closing:
            self.closing = True
            if self.manager.withdraw(self) and s is not None and s._recv_op is self:
                s._recv_op = None
        if s is not None:
            s._wake_receiver_closed()


@types.coroutine
def _send_now(
    fd: int, data: bytes | bytearray | memoryview, total: int
) -> Generator[Any, Any, int]:
    """The non-blocking ``send`` as trio does it; returns the bytes sent (0: would block).

    A pending cancel raises ``Cancelled`` first (nothing sent); only when all of
    ``data`` went is a schedule point made (else the caller's wait is the
    checkpoint).  Errors raise as ``send_all`` raises them.  With a trio whose
    ``_nonblocking_helper`` is not the recorded one, only trio's own cancel test runs
    and 0 is returned (the caller's SQE does the rest).
    """
    if not _SYSCALL_FIRST:
        yield from checkpoint_if_cancelled().__await__()
        return 0
    if cancel_pending():
        # (.__await__(): a compiled generator cannot ``yield from`` a coroutine)
        yield from checkpoint_if_cancelled().__await__()  # raises Cancelled
    try:
        # A trio socket's fd is non-blocking; write(2) on a socket is send(fd, 0)
        # (EPIPE as OSError: Python ignores SIGPIPE, as trio's own send relies on).
        n = os.write(fd, data)
    except BlockingIOError:
        return 0
    except OSError as exc:
        yield CancelShieldedCheckpoint  # a checkpoint before the error, as trio's sockets
        raise _translate(exc)  # noqa: B904 - chained as trio chains it
    if n == total:
        yield CancelShieldedCheckpoint
    return n


@types.coroutine
def _receive_now(stream: SocketStream, max_bytes: int) -> Generator[Any, Any, bytes | None]:
    """The non-blocking ``recv`` as trio does it: data (``b""`` at EOF), or None if it
    would block (nothing happened, and no checkpoint was made yet).

    A pending cancel raises ``Cancelled`` first; data received is followed by a
    schedule point.  Errors raise as ``receive_some`` raises them.  With a trio whose
    ``_nonblocking_helper`` is not the recorded one, only trio's own cancel test runs
    and None is returned.
    """
    if not _SYSCALL_FIRST:
        yield from checkpoint_if_cancelled().__await__()
        return None
    if cancel_pending():
        # (.__await__(): a compiled generator cannot ``yield from`` a coroutine)
        yield from checkpoint_if_cancelled().__await__()  # raises Cancelled
    try:
        # A trio socket's fd is non-blocking; read(2) on a socket is recv(fd, 0).
        data = os.read(stream.socket.fileno(), min(max_bytes, DEFAULT_RECEIVE_SIZE))
    except BlockingIOError:
        return None
    except OSError as exc:
        yield CancelShieldedCheckpoint  # a checkpoint before the error, as trio's sockets
        raise _translate(exc)  # noqa: B904 - chained as trio chains it
    if not data:
        stream._r_eof = True
    yield CancelShieldedCheckpoint
    return data


async def _close_checkpoint() -> None:
    """``aclose``'s checkpoint: ``trio.lowlevel.checkpoint()``, except that a task
    whose cancel is already pending parks once and gets it there.

    trio's ``checkpoint`` would first make a schedule point and only then, finding
    the cancel, enter a new cancel scope and park in it (two trips through the
    scheduler and a scope); every ``trio.serve_tcp`` handler's stream is closed
    that way, by ``aclose_forcefully`` in a cancelled scope.  The ``Cancelled`` (or
    ``KeyboardInterrupt``) is the one trio's path raises: trio delivers a pending
    cancel to a task as it parks, with its scope's reason.
    """
    if _CANCEL_TEST and cancel_pending():
        await _park(_DELIVER_PENDING)
        raise AssertionError("a pending cancel was not delivered")  # pragma: no cover
    await checkpoint()


def _socket_kind(sock: tsocket.SocketType) -> int:
    """``sock.type``, for trio's own socket classes read as the plain int under the
    stdlib's ``SocketKind`` (whose construction is most of a stream's type check)."""
    cls = type(sock)
    if cls is UringSocket or cls is TrioSocketType:
        raw = getattr(sock, STDLIB_SOCKET_FIELD)
        if type(raw) is _stdlib_socket.socket:
            kind: int = _raw_type.__get__(raw)
            return kind
    return sock.type


def _hold(data: object) -> memoryview:
    """A view of ``data`` that ``send_all`` holds for the whole call (C-contiguous).

    ``TypeError`` as the stdlib's socket functions raise it for a non-buffer.
    """
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        buffer_nbytes(data)  # raises the stdlib's TypeError for it
        raise
    if not view.c_contiguous:
        view.release()
        raise TypeError(f"a contiguous bytes-like object is required, not {view!r}")
    return view


class SocketStream(trio.abc.HalfCloseableStream):
    """A :class:`trio.abc.HalfCloseableStream` over a connected ``SOCK_STREAM`` trio socket.

    Drop-in for :class:`trio.SocketStream` (same errors, ``TCP_NODELAY`` on,
    ``setsockopt``/``getsockopt``, ``.socket``), driven by io_uring completions.

    Args:
      socket: a connected trio socket of type ``SOCK_STREAM``; the stream owns it.
      zerocopy: ``"auto"`` (default) sends chunks of at least
          ``ZEROCOPY_THRESHOLD`` (16 KiB) bytes with ``SEND_ZC`` until a notification
          reports the data was copied anyway (always the case on loopback);
          ``"always"`` uses ``SEND_ZC`` for every ``send_all`` and keeps using it
          when copied; ``"never"`` only uses ``SEND``.  All modes fall back to
          ``SEND`` for good on ``EOPNOTSUPP`` (AF_UNIX), ``ENOMEM``
          (``RLIMIT_MEMLOCK``) and ``EINVAL`` (kernel without ``SEND_ZC`` usage
          reports).

    ``send_all`` returns when the kernel has taken all the data.  The caller's
    buffer is held (exported) for the whole call, as trio's ``send_all`` holds a
    ``memoryview`` of it: another task that resizes a ``bytearray`` meanwhile
    gets ``BufferError``, and the peer receives exactly the bytes the buffer
    held when the call started.  For a zero-copy send of any buffer except
    ``bytes`` it returns only after the notification, so the caller may reuse
    the buffer at once; a ``bytes`` object stays referenced until its
    notification.  If cancelled, ``send_all`` still waits for the kernel to let
    go of the buffer (the result CQE, and for zero-copy the notification)
    before raising ``Cancelled``; some data may have been sent, and the stream
    should then be closed, as with trio.

    Closed by another task (``aclose()``, or ``stream.socket.close()``), a
    waiting ``send_all`` or ``receive_some`` raises ``ClosedResourceError``
    promptly, and nothing more is sent: every SQE is written only while the
    socket still owns the fd number the call started with, and operations are
    ended while the fd is still open.  A zero-copy send in flight then resets
    the connection (the kernel would otherwise keep the pages until a peer
    that may never read does), and its buffer stays exported until the
    kernel's notification, which the reset makes come at once.

    A stream holds no state of a run: it may be used in one
    ``trio_uring.run()`` after another, or under trio's own backend.

    ``receive_some`` never loses data to a cancellation: received data is queued
    in the stream until a ``receive_some`` takes it.

    Attributes:
      socket (trio.socket.SocketType): the socket the stream owns (as
          :attr:`trio.SocketStream.socket`).
    """

    def __init__(self, socket: tsocket.SocketType, *, zerocopy: ZeroCopyPolicy = "auto") -> None:
        if not isinstance(socket, tsocket.SocketType):
            raise TypeError("SocketStream requires a Trio socket object")
        if _socket_kind(socket) != _SOCK_STREAM:
            raise ValueError("SocketStream requires a SOCK_STREAM socket")
        self._setup(socket, zerocopy)

    @classmethod
    def _accepted(cls, socket: tsocket.SocketType, zerocopy: ZeroCopyPolicy) -> SocketStream:
        """A stream over a socket a :class:`SocketListener` accepted (known to be fit)."""
        # (Through __init__ and its checks, ~20 instructions per message at 78 messages
        # per connection: a compiled class cannot be made with cls.__new__.)
        return cls(socket, zerocopy=zerocopy)

    def _setup(self, socket: tsocket.SocketType, zerocopy: ZeroCopyPolicy) -> None:
        # (Every attribute is set here, also those that start as constants: reading a
        # class-level default on the hot paths costs more than setting it once.)
        self._zc_policy = zerocopy
        self._zc_threshold = _zc_threshold(zerocopy)
        self.socket = socket
        #: trio's own socket class: send_all reads the two fields behind ``fileno()``
        #: and ``did_shutdown_SHUT_WR`` instead of calling them (same answers).
        self._plain = plain_trio_socket(socket)
        self._manager: UringIOManager | None = None
        self._guest = False
        self._compat: trio.SocketStream | None = None
        self._sending = False
        #: The running ``send_file``'s scope while it waits on the file side (which
        #: closing the socket does not wake): ``aclose`` cancels it.
        self._send_file_scope: trio.CancelScope | None = None
        self._receiving = False
        self._closed = False
        #: Data the multishot receive queued; made at its first data (an empty deque
        #: is 624 bytes, and an idle connection's receive has queued nothing).
        self._rq: deque[bytes] | None = None
        self._rq_bytes = 0
        self._r_eof = False
        self._r_err: OSError | None = None
        self._r_waiter: Task | None = None
        #: The traps a receive / a SEND parks on, made at the first park (a short
        #: connection's first receive and send try the syscall and often never park).
        self._r_trap: WaitTaskRescheduled | None = None
        #: The record of this stream's SEND, reused by every send_all (one at a time).
        self._s_op: Operation | None = None
        self._s_trap: WaitTaskRescheduled | None = None
        self._recv_op: _RecvOp | None = None
        #: Made at the first multishot receive (see :class:`_Anchor`).
        self._anchor: _Anchor | None = None
        self._ring: _provided.BufferRing | None = None
        #: No receive yet: the first one tries the syscall before arming a multishot.
        self._fresh = True
        #: No send yet: the first one tries the syscall before submitting.
        self._fresh_send = True
        # (try/except, not `with suppress(OSError)`: two context managers per stream.)
        try:
            socket.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, True)
        except OSError:
            pass
        if _TCP_NOTSENT_LOWAT is not None:
            try:
                socket.setsockopt(_IPPROTO_TCP, _TCP_NOTSENT_LOWAT, 2**14)
            except OSError:
                pass

    # --------------------------------------------------------------- set-up
    def _get_manager(self) -> UringIOManager | None:
        """Bind to the current run's manager (or trio's SocketStream outside io_uring).

        Called when the stream is not bound yet or its manager's run has ended: a
        stream holds no state of a finished run (as trio's streams), so the records
        of the last run (the send slot, the multishot receive, the buffer ring) are
        dropped here and made again for this one.  Data already queued stays.
        """
        try:
            io_manager = current_runner().io_manager
        except RuntimeError:
            _ = trio.lowlevel.current_task()  # outside a run: RuntimeError as trio would
            raise
        if not isinstance(io_manager, UringIOManager):
            # trio's own backend (epoll): trio's stream does the work, in this run.
            self._manager = None
            if self._compat is None:
                self._compat = trio.SocketStream(self.socket)
            return None
        manager: UringIOManager = io_manager
        self._compat = None
        if self._manager is not manager:
            self._manager = manager
            self._s_op = None
            op = self._recv_op
            if op is not None and op.manager is not manager:
                self._recv_op = None
        global _bound
        bound = _bound
        ring = manager.ring
        if bound is None or bound[0]() is not ring:
            # Once per manager: the kernel's answers and the shared buffer ring.
            zc = manager.supports(Op.SEND_ZC) and manager.ring.has(_kernels.ZC_REPORT_USAGE)
            bound = _bound = (weakref.ref(ring), zc, _provided.stream_ring(manager))
        self._guest = manager.guest  # (also binds the manager to this run)
        if not bound[1]:
            self._zc_threshold = inf
        self._ring = bound[2]
        return manager

    def _current_manager(self) -> UringIOManager | None:
        """This run's manager (None on trio's backend): for calls off the hot paths,
        which inline it."""
        manager = self._manager
        if manager is None or manager.closed:  # (not bound yet, or bound in an earlier run)
            manager = self._get_manager()
        return manager

    def _zerocopy_copied(self) -> None:
        """A notification reported ``IORING_NOTIF_USAGE_ZC_COPIED``."""
        if self._zc_policy == "auto":
            self._zc_threshold = inf

    @property
    def zerocopy(self) -> bool:
        """Whether the next large ``send_all`` would use ``SEND_ZC`` (False off io_uring)."""
        if self._compat is not None:
            return False
        if self._manager is None:
            try:
                manager = current_manager()
            except RuntimeError:
                return False
            if not (manager.supports(Op.SEND_ZC) and manager.ring.has(_kernels.ZC_REPORT_USAGE)):
                return False
        return self._zc_threshold != inf

    # ---------------------------------------------------------------- send
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``; see the class docstring for buffer release and cancellation.

        ``data`` stays exported for the whole call (as trio's ``send_all`` holds a
        ``memoryview``): another task that resizes it meanwhile gets ``BufferError``,
        and the peer receives exactly the bytes ``data`` held when the call started.
        Raises ``ClosedResourceError`` if the stream is closed, also by another task
        while this call waits (``aclose()`` or ``stream.socket.close()``); nothing
        is sent after that, whoever owns the fd number next.
        """
        if self._sending:
            raise trio.BusyResourceError(
                "another task is currently sending data on this SocketStream"
            )
        manager = self._manager
        if manager is None or manager.closed:  # (not bound yet, or bound in an earlier run)
            manager = self._get_manager()
        if manager is None:
            assert self._compat is not None
            # Marked as ours too, so that send_file (which trio's stream does not
            # know) is busy meanwhile.
            self._sending = True
            try:
                return await self._compat.send_all(data)
            finally:
                self._sending = False
        sock = self.socket
        if getattr(sock, SHUT_WR_FIELD) if self._plain else sock.did_shutdown_SHUT_WR:
            raise trio.ClosedResourceError("can't send data after sending EOF")
        # One export of the caller's buffer for the whole call (trio: `with
        # memoryview(data)`): every SQE's length comes from it, and a concurrent
        # resize fails in the resizer.  `bytes` cannot change: no view needed.
        view: memoryview | None = None
        buf: bytes | memoryview
        if type(data) is bytes:
            buf = data
            total = len(data)
        else:
            buf = view = _hold(data)
            total = view.nbytes
        fd: int = getattr(sock, STDLIB_SOCKET_FIELD).fileno() if self._plain else sock.fileno()
        if self._closed or fd < 0:
            if view is not None:
                view.release()
            raise trio.ClosedResourceError("socket was already closed")
        if not total:
            if view is not None:
                view.release()
            await checkpoint()
            return
        self._sending = True
        try:
            sent = 0
            if self._fresh_send and total < _FIRST_SEND_MAX and total < self._zc_threshold:
                self._fresh_send = False
                # The stream's first send: a new connection's send buffer is empty, so
                # the syscall takes it all, with no SQE and no operation record.
                sent = await _send_now(fd, buf, total)
                if sent == total:
                    return
            elif self._guest:
                # Guest mode submits at once (see UringIOManager.submit).
                await checkpoint_if_cancelled()
            while sent < total:
                n = total - sent
                try:
                    if n >= self._zc_threshold:
                        sent += await self._send_zc(manager, fd, buf, sent, n, view is not None)
                    else:
                        # The operation exports `buf` and releases it at its final CQE.
                        op = self._s_op
                        if op is None:
                            op = self._s_op = manager.recycled_operation(fd)
                        trap = self._s_trap
                        if trap is None:  # (made before the SQE: nothing runs between)
                            trap = self._s_trap = WaitTaskRescheduled(self._abort_send)
                        manager.submit(_sqe.send(fd, n, _SEND_FLAGS, sent), op=op, buffer=buf)
                        await _park(trap)  # as `await op`, with a trap made once
                        res = op.res
                        sent += res if res >= 0 else op.result()
                except OSError as exc:
                    raise _translate(exc)  # noqa: B904 - chained as trio chains it
                # Before every further SQE: the socket must still own `fd` (another task
                # may have closed it while we waited, and its number be another socket's).
                # (The first SQE follows the checks above with no schedule point between.)
                if sent < total and (
                    self._closed
                    or (
                        getattr(sock, STDLIB_SOCKET_FIELD).fileno()
                        if self._plain
                        else sock.fileno()
                    )
                    != fd
                ):
                    raise trio.ClosedResourceError("another task closed this fd")
        finally:
            self._sending = False
            if view is not None:
                # (An operation the kernel still holds has its own export of the view:
                # then the view is released with it, never before.)
                with suppress(BufferError):
                    view.release()

    def _abort_send(self, raise_cancel: Callable[[], object]) -> Abort:
        op = self._s_op
        assert op is not None
        return op.abort(raise_cancel)

    async def _send_zc(
        self, manager: UringIOManager, fd: int, data: object, offset: int, n: int, mutable: bool
    ) -> int:
        op = submit_zc(manager, fd, data, offset, n, _SEND_FLAGS, mutable)
        op.owner = self
        try:
            return await op
        except OSError as exc:
            if exc.errno in _ZC_FALLBACK_ERRNOS and op.raise_cancel is None and not op.closing:
                # AF_UNIX, RLIMIT_MEMLOCK, no usage reports: plain SEND from now on.
                self._zc_threshold = inf
                return 0
            raise

    async def send_file(
        self,
        file: int | _sendfile.HasFileno,
        *,
        offset: SupportsIndex = 0,
        count: SupportsIndex | None = None,
    ) -> int:
        """Send ``count`` bytes of ``file`` from ``offset`` (``None``: to its end), zero-copy.

        ``file``: an fd, or anything with ``fileno()`` (``trio_uring.open_file``'s and
        ``trio.open_file``'s files, Python files).  The bytes go from the page cache
        to the socket without passing through Python (``IORING_OP_SPLICE`` into a
        pipe, then ``splice(2)`` into the socket; ``sendfile(2)`` on trio's epoll
        backend; a read+send loop where the kernel refuses both for this kind of
        file; ``python -m trio_uring info`` says which).  Returns the bytes sent:
        fewer than ``count`` only if the file ended first; 0 for ``count=0`` or an
        ``offset`` at or past the end.  ``count=None`` on a regular file means up to
        its size when the call starts.

        The file's position does not change (as ``os.sendfile`` with an offset),
        and data still in a Python-level write buffer is not seen: flush first.  A
        pipe, socket or character device is read from where it is (``offset``
        must be 0; ``count=None`` reads to its EOF, which ``/dev/zero`` never
        reaches).

        Raises ``TypeError``/``ValueError`` for bad arguments (a closed file
        object's ``fileno()`` error included), ``OSError`` for the file
        (``EBADF`` if it is not open for reading, ``EISDIR`` for a directory, a
        read error), all after a checkpoint; ``BusyResourceError`` if another
        task is in ``send_all``/``send_file``; ``ClosedResourceError`` if the
        stream is (or gets) closed or after ``send_eof``; ``BrokenResourceError``
        (caused by the ``OSError``) if the connection fails.

        Cancellation: some prefix of the range was sent (the peer receives
        exactly ``file[offset:offset + k]`` for some unknown ``k``, never a
        byte out of order or twice).  On the splice path the bytes already
        moved into the pipe are pushed into the socket if it takes them without
        waiting; if not, the connection is reset (TCP: the peer gets
        ``ECONNRESET``) rather than let later sends follow a hole, and later
        sends raise ``BrokenResourceError``.  Otherwise the stream stays usable
        and what is sent next follows that prefix.  As with ``send_all``,
        close the stream after a cancelled call unless you can tell how much
        the peer got.
        """
        if self._sending:
            raise trio.BusyResourceError(
                "another task is currently sending data on this SocketStream"
            )
        request = await _sendfile.check_arguments(file, offset, count)
        manager = self._current_manager()  # (this run's: a stream outlives runs)
        sock = self.socket
        if sock.did_shutdown_SHUT_WR:
            raise trio.ClosedResourceError("can't send data after sending EOF")
        sock_fd = sock.fileno()
        if self._closed or sock_fd < 0:
            raise trio.ClosedResourceError("socket was already closed")
        if request.count == 0:
            await checkpoint()
            return 0
        self._sending = True
        # Closing the socket wakes waits on the socket, not on the file (an empty pipe):
        # aclose() cancels this scope, and that cancel is the stream's ClosedResourceError.
        closed_scope = self._send_file_scope = trio.CancelScope()
        try:
            with closed_scope:
                return await _sendfile.send_file(request, manager, sock, sock_fd)
            raise trio.ClosedResourceError("another task closed this stream")
        finally:
            self._send_file_scope = None
            self._sending = False
            request.release()

    async def wait_send_all_might_not_block(self) -> None:
        """Block until the socket is writable (``send_all`` may then not block)."""
        if self._sending:
            raise trio.BusyResourceError(
                "another task is currently sending data on this SocketStream"
            )
        manager = self._current_manager()
        self._sending = True  # (on trio's backend too: a send_file meanwhile is busy)
        try:
            if manager is None:
                assert self._compat is not None
                return await self._compat.wait_send_all_might_not_block()
            if self._closed or self.socket.fileno() == -1:
                raise trio.ClosedResourceError
            try:
                await self.socket.wait_writable()
            except OSError as exc:
                raise _translate(exc)  # noqa: B904 - chained as trio chains it
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        """Shut down the sending side (``SHUT_WR``); idempotent."""
        if self._sending:
            raise trio.BusyResourceError(
                "another task is currently sending data on this SocketStream"
            )
        self._sending = True
        try:
            await checkpoint()
            if self.socket.did_shutdown_SHUT_WR:
                return
            try:
                self.socket.shutdown(tsocket.SHUT_WR)
            except OSError as exc:
                raise _translate(exc)  # noqa: B904 - chained as trio chains it
        finally:
            self._sending = False

    # ------------------------------------------------------------- receive
    async def receive_some(self, max_bytes: SupportsIndex | None = None) -> bytes:
        """Return up to ``max_bytes`` bytes (default 64 KiB), ``b""`` at EOF.

        Cancellation loses no data: bytes that arrive meanwhile stay queued.
        Raises ``ClosedResourceError`` if the stream is closed, also at once when
        another task closes it while this call waits.
        """
        if max_bytes is None:
            n = DEFAULT_RECEIVE_SIZE
        else:
            n = operator.index(max_bytes)
            if n < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is currently receiving on this SocketStream")
        manager = self._manager
        if manager is None or manager.closed:  # (not bound yet, or bound in an earlier run)
            manager = self._get_manager()
        if manager is None:
            assert self._compat is not None
            return await self._compat.receive_some(n)
        # An armed multishot learns of a close through notify_closing (on_closing).
        if self._closed or (self._recv_op is None and self.socket.fileno() == -1):
            raise trio.ClosedResourceError("this socket was already closed")
        self._receiving = True
        try:
            if self._rq or self._r_eof or self._r_err is not None:
                await _completed_checkpoint()
            elif self._fresh:
                # The first receive tries the syscall before arming anything: a short
                # connection's request is usually there already, and a stream that is
                # read once and closed then never arms (and cancels) a multishot.
                self._fresh = False
                data = await _receive_now(self, n)
                if data is not None:
                    return data
                if self._ring is not None:
                    self._arm_recv()
                    await self._wait_queue()
            elif self._ring is not None:
                if self._recv_op is None:
                    self._arm_recv()
                # The checkpoint owed anyway comes first: the peer's data often
                # arrives during that loop tick, and then no park is needed (at one
                # connection this saves a blocking io_uring_enter per message).
                await _completed_checkpoint()
                await self._wait_queue()
            if self._closed:
                raise trio.ClosedResourceError("another task closed this stream")
            rq = self._rq
            if rq:
                return self._take(rq, n)
            if self._r_err is not None:
                raise _translate(self._r_err)
            if self._r_eof:
                return b""
            return await self._receive_one(manager, n)
        finally:
            self._receiving = False

    async def __anext__(self) -> bytes:
        # (trio's ReceiveStream.__anext__, compiled: ``async for data in stream`` then
        # awaits the compiled receive_some directly, not through the public coroutine
        # function that stands for it (_core/_public.py) and an interpreted __anext__.)
        data = await _receive_some(self, None)
        if not data:
            raise StopAsyncIteration
        return data

    async def _wait_queue(self) -> None:
        """Park until the multishot receive queued data, EOF or an error (or fell back).

        (Anything that happened meanwhile, a multishot that turned out to be
        unsupported included, found no waiter to wake: look before parking.)
        """
        if not (
            self._rq or self._r_eof or self._r_err is not None or self._closed or self._ring is None
        ):
            trap = self._r_trap
            if trap is None:
                trap = self._r_trap = WaitTaskRescheduled(self._abort_receive)
            self._r_waiter = _run_context.task
            await _park(trap)

    def _take(self, rq: deque[bytes], max_bytes: int) -> bytes:
        chunk = rq.popleft()
        n = len(chunk)
        if n > max_bytes:
            rq.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
            n = max_bytes
        elif rq and n < max_bytes:
            parts = [chunk]
            while rq and n < max_bytes:
                more = rq.popleft()
                if n + len(more) > max_bytes:
                    rq.appendleft(more[max_bytes - n :])
                    more = more[: max_bytes - n]
                parts.append(more)
                n += len(more)
            chunk = b"".join(parts)
        self._rq_bytes -= n
        if (
            self._recv_op is None
            and self._rq_bytes < RECEIVE_LOW_WATER
            and self._ring is not None
            and not self._r_eof
            and self._r_err is None
        ):
            self._arm_recv()
        return chunk

    async def _receive_one(self, manager: UringIOManager, max_bytes: int) -> bytes:
        """No multishot receive: one ``IORING_OP_RECV`` into a fresh buffer."""
        buf = _alloc("char[]", max_bytes)
        try:
            n = await manager.perform(_sqe.recv(self.socket.fileno(), max_bytes, 0, buf), keep=buf)
        except OSError as exc:
            raise _translate(exc)  # noqa: B904 - chained as trio chains it
        data: bytes = ffi.unpack(buf, n)
        return data

    def _abort_receive(self, _: Callable[[], object]) -> Abort:
        self._r_waiter = None
        return Abort.SUCCEEDED

    def _arm_recv(self) -> None:
        manager = self._manager
        ring = self._ring
        assert manager is not None and ring is not None
        anchor = self._anchor
        if anchor is None:
            anchor = self._anchor = _Anchor(self)
        op = _RecvOp(anchor, manager, ring)
        manager.submit(
            _sqe.recv_multishot(self.socket.fileno(), ring.bgid), keep=ring, op=op, waiter=False
        )
        self._recv_op = op

    def _wake_receiver_closed(self) -> None:
        task = self._r_waiter
        if task is not None:
            self._r_waiter = None
            reschedule(
                task, outcome.Error(trio.ClosedResourceError("another task closed this stream"))
            )

    # --------------------------------------------------------------- close
    async def aclose(self) -> None:
        """Close the socket.  Tasks blocked on this stream get ``ClosedResourceError``.

        The stream's operations in the kernel are ended (withdrawn, cancelled, or
        for a zero-copy send the connection reset) while the fd is still open,
        then it is closed: nothing of this stream ever acts on the fd's number
        afterwards, which the next socket or file may get.
        """
        if not self._closed:
            self._closed = True
            op = self._recv_op
            if op is not None and not op.closing:
                op.on_closing()
            self.socket.close()
            self._wake_receiver_closed()
            scope = self._send_file_scope
            if scope is not None:
                scope.cancel()  # send_file raises ClosedResourceError (see send_file)
        # Also when another task closed the socket first (which marks the stream closed):
        # the traps hold bound methods of this stream (a task parked on one holds it
        # itself) and the anchor refers back to it; dropped, a closed stream and its
        # socket are freed by reference counting, not left to the cycle collector.
        self._r_trap = None
        self._s_trap = None
        anchor = self._anchor
        if anchor is not None:
            anchor.stream = None
            self._anchor = None
        await _close_checkpoint()

    def __del__(self) -> None:
        # Dropped without aclose() (as trio's SocketStream, the socket is then closed
        # by its own finalizer, with a ResourceWarning): the multishot receive, which
        # holds this stream only weakly (_Anchor), is ended.  Only asked for here (a finalizer
        # runs wherever the last reference goes, or in the garbage collector): the
        # cancel names the operation, never the fd, which may be closed by then.
        if getattr(self, "_anchor", None) is None:  # (never armed, closed, or not set up)
            return
        op = self._recv_op
        if op is not None and not (self._closed or op.closing or op.stopping or op.manager.closed):
            op.manager.end_dropped(op)  # (first: asked for before it is marked stopping)
            op.stopping = True

    # ------------------------------------------------------------- options
    @overload
    def setsockopt(self, level: int, option: int, value: int | Buffer) -> None: ...

    @overload
    def setsockopt(self, level: int, option: int, value: None, length: int) -> None: ...

    def setsockopt(
        self, level: int, option: int, value: int | Buffer | None, length: int | None = None
    ) -> None:
        """Set an option on the underlying socket (:meth:`socket.socket.setsockopt`)."""
        if length is None:
            if value is None:
                raise TypeError(
                    "invalid value for argument 'value', must not be None when specifying length"
                )
            return self.socket.setsockopt(level, option, value)
        if value is not None:
            raise TypeError(
                f"invalid value for argument 'value': {value!r}, must be None when specifying optlen"
            )
        return self.socket.setsockopt(level, option, value, length)

    @overload
    def getsockopt(self, level: int, option: int) -> int: ...

    @overload
    def getsockopt(self, level: int, option: int, buffersize: int) -> bytes: ...

    def getsockopt(self, level: int, option: int, buffersize: int = 0) -> int | bytes:
        """Read an option of the underlying socket (:meth:`socket.socket.getsockopt`)."""
        if buffersize == 0:
            return self.socket.getsockopt(level, option)
        return self.socket.getsockopt(level, option, buffersize)


# KeyboardInterrupt protection (issue 19, finding 3): every function whose frame is
# live between writing an SQE and parking on it (or recording the operation it
# submitted): a SIGINT there would unwind with the operation in the kernel, unknown
# to the stream.  trio delivers it at the park instead, through the operation's abort.
ki_protect(
    SocketStream.send_all,
    SocketStream._send_zc,
    SocketStream.receive_some,
    SocketStream._take,
    SocketStream._wait_queue,
    SocketStream._receive_one,
    SocketStream._arm_recv,
    SocketStream.wait_send_all_might_not_block,
    # (A finalizer that runs in a task: a Ctrl-C there would be lost, "ignored in __del__".)
    SocketStream.__del__,
)

# Compiled: the public objects become real coroutine functions (and get their
# docstrings and signatures) over the compiled bodies; see _core/_public.py.
#: The compiled receive_some, for ``__anext__`` (dress replaces the class attribute).
_receive_some: Final = SocketStream.receive_some

from .._core._public import dress  # noqa: E402
from .._core._ring import guard_weakrefs  # noqa: E402

dress(__name__)
# Weak references to a SocketStream are safe in the compiled build too (see guard_weakrefs).
guard_weakrefs(SocketStream)
