"""trio's own sockets on the completion path: ``recv``/``send``/``accept``/``connect`` as SQEs.

Under a run on io_uring, every socket trio creates for an ``AF_INET``,
``AF_INET6`` or ``AF_UNIX`` family is a :class:`UringSocket`, a subclass of trio's
``_SocketType``.  Its ``recv``, ``recv_into``, ``send``, ``accept`` and ``connect``
are one ``IORING_OP_RECV``/``SEND``/``ACCEPT``/``CONNECT`` each, submitted through
:meth:`UringIOManager.perform`.  So unchanged trio code (``trio.SocketStream``,
``open_tcp_stream``, ``serve_tcp``, ``SSLStream`` over them, anyio's trio backend,
hypercorn, trio-websocket) moves its data with SQEs instead of "try the syscall,
``wait_readable``, try again".  Every other method (``recvfrom``, ``sendto``,
``recvmsg``, ``sendmsg``, ``wait_writable``, ``is_readable``, ...) is trio's own,
on io_uring readiness.

How sockets become :class:`UringSocket`
    trio builds every socket object in ``trio._socket.from_stdlib_socket`` (for
    ``trio.socket.socket()``, ``socketpair()``, ``fromfd()`` and the public
    ``trio.socket.from_stdlib_socket`` that anyio and hypercorn call).  At the start
    of the first run on io_uring, a run-start hook replaces both names with
    :func:`from_stdlib_socket`, which returns a :class:`UringSocket` only inside a
    run on io_uring with completion sockets enabled, and trio's class otherwise.
    ``trio.socket.set_custom_socket_factory`` is left to the user: a factory the
    user sets still wins for ``trio.socket.socket()``, and trio's own test suite
    (which checks that no factory is set) passes unchanged.

Semantics (the same as trio's)
    * Every call is a checkpoint (one scheduler trip).  An operation that had to
      wait parks until its CQE.  Cancelled before the kernel saw the SQE: ``Cancelled`` and nothing happened.
      Cancelled after: ``ASYNC_CANCEL``, and the task gets ``Cancelled`` only if the
      operation really did not happen; data received or a connection accepted
      meanwhile is returned, never lost.  In guest mode (where SQEs are submitted
      at once) a task that is already cancelled gets ``Cancelled`` before anything
      is submitted, like trio's ``checkpoint_if_cancelled``.
    * Errors are the kernel's errno as ``OSError`` (``ConnectionResetError``,
      ``BrokenPipeError``, ...), like the syscalls.  A failed ``connect`` raises
      ``OSError(errno, "Error connecting to <address>: <strerror>")`` and a
      cancelled one closes the socket, as trio does.
    * Arguments the stdlib would reject, sockets whose ``_sock`` is not a plain
      ``socket.socket``, and calls outside a run on io_uring go to trio's own
      method, so they fail (or work) exactly as in trio.
    * ``notify_closing`` (``SocketType.close``) wakes a pending operation with
      ``ClosedResourceError``.

Try first, then one SQE.  ``recv``, ``recv_into``, ``send`` and ``accept`` first
try the non-blocking syscall, exactly as trio does (``checkpoint_if_cancelled``,
the call, ``cancel_shielded_checkpoint``); only when it would block do they submit
one ``IORING_OP_RECV``/``SEND``/``ACCEPT`` and park until its CQE, instead of
trio's ``wait_readable`` (a ``POLL_ADD``) plus a second syscall (a busy server's
backlog usually has a connection waiting: docs/performance.rst, "Short
connections").  ``connect`` is always one SQE.  Trying first is what makes trio's
sockets faster than on epoll at all (docs/performance-history.rst, "Measurements
once in docstrings").

A ``recv`` that waits holds no receive buffer.  On a stream socket it is one
``IORING_OP_RECV`` with ``IOSQE_BUFFER_SELECT``: the kernel picks a 4 KiB buffer of
the manager's provided-buffer ring (the one trio_uring's streams use) only when data
arrives, the data is copied out and the buffer given back within the same loop
tick, and if that buffer came back full whatever else is queued is read at once, in
the same call.  So 10,000 idle connections served by unchanged trio code take no
more memory than on epoll (``python -m trio_uring bench --suites idle``;
docs/performance.rst, "Idle connections").  Datagrams, ``MSG_WAITALL``, a kernel
without provided-buffer rings (before 5.19/6.0), and a ring that ran out of buffers
in one tick (``ENOBUFS``: nothing was received) receive into a buffer of their own
instead.

An SQE round trip costs more Python (``perform``, CQE dispatch, a loop iteration
of latency) than a non-blocking syscall that succeeds, and in a busy server most
do; when one would block, a single SQE is cheaper than poll + retry.
``TRIO_URING_SOCKETS_TRY_FIRST=0`` makes every call one SQE (for measuring).

Switch: :func:`set_completion_sockets` (``False`` restores trio's readiness path
for sockets created afterwards); the environment variable
``TRIO_URING_SOCKETS=0`` sets the default.
"""

from __future__ import annotations

import operator
import os
import socket as _stdlib_socket
import struct
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Final

import trio
import trio._socket  # (compiled, UringSocket's class statement reads its base there)
from mypy_extensions import mypyc_attr
from trio.lowlevel import checkpoint_if_cancelled

from .._core import _sqe, _trio_compat
from .._core._manager import UringIOManager, run_start_hooks
from .._core._operation import buffer_nbytes
from .._core._ring_cffi import ffi
from .._core._trio_compat import TrioSocketType
from .._core._trio_fast import CANCEL_PENDING, current_task, enter, shielded_checkpoint
from .._ops import _provided, _sockaddr

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio.lowlevel import Task
    from trio.socket import SocketType

_trio_from_stdlib_socket: Callable[[_stdlib_socket.socket], SocketType] = (
    _trio_compat.trio_from_stdlib_socket
)


_AF_INET: Final = int(_stdlib_socket.AF_INET)
_AF_INET6: Final = int(_stdlib_socket.AF_INET6)
_AF_UNIX: Final = int(_stdlib_socket.AF_UNIX)
#: Families whose sockets get the completion path.
_FAMILIES: Final = frozenset({_AF_INET, _AF_INET6, _AF_UNIX})
_ACCEPT_FLAGS: Final = _stdlib_socket.SOCK_CLOEXEC | _stdlib_socket.SOCK_NONBLOCK
_plain_socket: Final = _stdlib_socket.socket
#: The C-level ``family``/``type`` getters of a ``socket.socket`` (plain ints): the
#: stdlib's properties over them build an ``AddressFamily``/``SocketKind`` member on
#: every read (~40 bytecodes each), three of them per accepted connection.
_raw_family: Final[Any] = _stdlib_socket.socket.__mro__[1].__dict__["family"]
_raw_type: Final[Any] = _stdlib_socket.socket.__mro__[1].__dict__["type"]
_SOCK_STREAM: Final = _stdlib_socket.SOCK_STREAM
_MSG_WAITALL: Final = int(_stdlib_socket.MSG_WAITALL)
_MSG_PEEK: Final = int(_stdlib_socket.MSG_PEEK)
_MSG_DONTWAIT: Final = int(_stdlib_socket.MSG_DONTWAIT)

#: ``sizeof(struct sockaddr_storage)``, then a ``socklen_t`` for ACCEPT's addrlen.
_SS_SIZE: Final = 128
_ss_len = struct.Struct("=I")

#: Receive buffers are copied out at once; zeroing them first would be wasted work.
_alloc = ffi.new_allocator(should_clear_after_alloc=False)
#: ``recv`` buffers of ``_POOLED`` bytes (trio's ``DEFAULT_RECEIVE_SIZE``) for receives the
#: ring does not serve (see the module docstring), reused once
#: their data has been copied out (never while the kernel may still write to them).
_POOLED: Final = 65536
_pool: list[Any] = []
_POOL_MAX: Final = 32
_run_context: Final = _trio_compat.GLOBAL_RUN_CONTEXT

# (Off by default, with a TrioVersionWarning, when trio's from_stdlib_socket or
# _SocketType.__init__ is not the recorded one: ``_trio_compat.TRIO_MIRRORS``.)
_enabled = _trio_compat.SOCKET_CONSTRUCTOR and os.environ.get(
    "TRIO_URING_SOCKETS", "1"
).strip() not in ("0", "false", "no", "off")
_patched = False
#: Try the non-blocking syscall first, as trio does, and submit an SQE only when it
#: would block (``TRIO_URING_SOCKETS_TRY_FIRST=0``: always submit; so does a trio whose
#: ``_nonblocking_helper`` is not the one inlined below: ``_trio_compat.TRIO_MIRRORS``).
_try_first: Final = _trio_compat.SYSCALL_FIRST and os.environ.get(
    "TRIO_URING_SOCKETS_TRY_FIRST", "1"
).strip() not in ("0", "off")
#: Whether trio's ``_SocketType.connect`` is the one :meth:`UringSocket.connect` follows.
_connect_mirrored: Final = _trio_compat.SOCKET_CONNECT


def set_completion_sockets(enabled: bool) -> bool:
    """Choose whether trio sockets created from now on use io_uring SQEs for their data.

    With ``True`` (the default unless ``TRIO_URING_SOCKETS=0``), sockets created
    by trio inside a run on io_uring are :class:`UringSocket`; with ``False``
    they are trio's own and wait for readiness.  Existing sockets keep their
    class.  Returns the previous setting.
    """
    global _enabled
    old, _enabled = _enabled, bool(enabled)
    return old


def completion_sockets_enabled() -> bool:
    """The current :func:`set_completion_sockets` setting."""
    return _enabled


def _current_uring() -> UringIOManager | None:
    """The io_uring manager of this thread's run, or ``None`` (no run, or not io_uring)."""
    try:
        manager = _run_context.runner.io_manager
    except AttributeError:
        return None
    if manager.__class__ is UringIOManager or isinstance(manager, UringIOManager):
        return manager
    return None


def from_stdlib_socket(sock: _stdlib_socket.socket) -> SocketType:
    """``trio.socket.from_stdlib_socket``, giving a :class:`UringSocket` where it applies."""
    if (
        _enabled
        and type(sock) is _plain_socket
        and _raw_family.__get__(sock) in _FAMILIES
        and _current_uring() is not None
    ):
        return UringSocket(sock)
    return _trio_from_stdlib_socket(sock)


def _install_patch(manager: UringIOManager) -> None:
    """Run-start hook: route trio's socket constructors through :func:`from_stdlib_socket`."""
    global _patched
    if _patched:
        return
    _patched = True
    _trio_compat.set_socket_factory(from_stdlib_socket)


def _uninstall_patch() -> None:
    """Give trio its own constructors back (tests)."""
    global _patched
    _patched = False
    _trio_compat.set_socket_factory(_trio_from_stdlib_socket)


run_start_hooks.append(_install_patch)


def _pack_sockaddr(family: int, address: Any) -> bytes | None:
    """``address`` (already resolved, numeric) as ``struct sockaddr``; ``None`` if unusual."""
    try:
        return _sockaddr.pack(family, address)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _unpack_sockaddr(family: int, raw: bytes, length: int) -> object:
    """The Python form of a ``struct sockaddr`` the kernel wrote (``None`` if unsure)."""
    if family == _AF_INET6 and length >= 28 and raw[24:28] != b"\0\0\0\0":
        return None  # Python spells link-local hosts with "%iface"; ask getpeername
    return _sockaddr.unpack(raw, length)


def _manager_for(sock: object) -> UringIOManager | None:
    """The manager to submit on for ``sock`` (a ``UringSocket``'s ``_sock``), or ``None``
    where trio's own method must run: outside a run on io_uring, and for a swapped-in
    ``_sock`` that is not a plain ``socket.socket``."""
    if type(sock) is not _plain_socket:
        return None
    return _current_uring()


# The methods below go to trio's own for arguments the stdlib would reject, for a
# swapped-in ``_sock`` that is not a plain ``socket.socket``, and outside a run.  Then
# comes trio's ``_nonblocking_helper``, inlined: a pending cancel raises first
# (``enter()``, then ``checkpoint_if_cancelled`` raises), then the non-blocking
# syscall; a call that completes, or fails, is followed by
# ``cancel_shielded_checkpoint`` (then its error raises).  Only a ``BlockingIOError``
# looks for the manager: in a run on io_uring one SQE (``perform`` is the checkpoint
# then), in any other run trio's own method (which tries again and waits for
# readiness: nothing has happened yet).  Inlined four times on purpose: one shared
# compiled ``async def _try_now(task, call, *args)`` measured +1,550 instructions per
# echoed message (72,848 against 71,298: a bound method, an argument tuple and a
# coroutine per call; docs/performance.rst, "trio's own sockets compiled").


#: (A decorated function: compiled code calls it as an object; a ``Final`` one is read
#: from a C static, not looked up in the module's dict on every call.)
_shielded_checkpoint: Final = shielded_checkpoint

_BUSY: Final = "another task is already reading / writing this fd"


def _exact_int(value: int) -> int:
    """``value`` (an ``int`` subclass: an ``IntFlag``, or a hostile one) as an exact ``int``,
    without running any of its methods: nothing between measuring a buffer and writing
    the SQE can then call back into user code, and the SQE gets a real ``int``."""
    return operator.index(value)  # (an int subclass: its value, never its __index__)


def _claim_receive(self: UringSocket, task: Task) -> None:
    """Take the receive-side slot for ``task`` (the current one), or ``BusyResourceError``
    if a task waits in it."""
    holder = self._uring_receiver
    if holder is not None and holder.custom_sleep_data is self:
        raise trio.BusyResourceError(_BUSY)
    self._uring_receiver = task
    task.custom_sleep_data = self


def _claim_send(self: UringSocket, task: Task) -> None:
    """Take the send-side slot (marked with ``self._sock``) for ``task`` (the current
    one), or ``BusyResourceError``."""
    holder = self._uring_sender
    if holder is not None and holder.custom_sleep_data is self._sock:
        raise trio.BusyResourceError(_BUSY)
    self._uring_sender = task
    task.custom_sleep_data = self._sock


@mypyc_attr(native_class=False)
class UringSocket(TrioSocketType):
    """trio's socket object, whose data operations are io_uring SQEs.

    A drop-in ``trio.socket.SocketType``: same methods, same exceptions, same
    checkpoints, same cancellation guarantees (see the module docstring).  As with
    trio's readiness waits, one task at a time may wait to receive (``recv``,
    ``recv_into``, ``accept``) and one to send (``send``, ``connect``); a second
    one gets ``BusyResourceError``.
    """

    # (``Any``, not ``socket.socket``: compiled, a declared type is checked when read,
    # and a swapped-in ``_sock`` must reach trio's own method instead.)
    _sock: Any
    #: The tasks that last started a receive-side / send-side SQE on this socket.
    #: Such a task still waits for its CQE while its ``custom_sleep_data`` is this
    #: object (receiving) or ``self._sock`` (sending); trio clears it on reschedule,
    #: so the slot frees itself when the CQE arrives, as epoll's readiness slot does
    #: when the event fires.  Two markers, because the task that last sent may
    #: now be the one receiving.
    _uring_receiver: Task | None = None
    _uring_sender: Task | None = None
    #: Whether this is a ``SOCK_STREAM`` socket (learnt at the first receive that waits).
    _uring_stream: bool | None = None

    def dup(self) -> SocketType:
        """Same as :meth:`socket.socket.dup`."""
        return UringSocket(self._sock.dup())

    # (Arguments are annotated ``object``: compiled, a narrower annotation would be
    # checked at the call, before trio's own method could reject them its own way.)

    # ------------------------------------------------------------- receive
    async def recv(self, buflen: object, flags: object = 0, /) -> bytes:
        sock = self._sock
        if type(flags) is not int and isinstance(flags, int):
            flags = _exact_int(flags)  # (MSG_* flags are IntFlag members)
        if (
            type(sock) is not _plain_socket
            or type(buflen) is not int
            or buflen <= 0
            or type(flags) is not int
            or flags < 0
        ):
            return await super().recv(buflen, flags)  # type: ignore[arg-type]
        task = enter() if _try_first else current_task()
        if task is None:
            return await super().recv(buflen, flags)
        if _try_first:
            if task is CANCEL_PENDING:
                await checkpoint_if_cancelled()  # raises Cancelled
            try:
                received: bytes = sock.recv(buflen, flags)
            except BlockingIOError:
                pass
            except BaseException:
                await _shielded_checkpoint()
                raise
            else:
                await _shielded_checkpoint()
                return received
        manager = _current_uring()
        if manager is None:
            return await super().recv(buflen, flags)
        _claim_receive(self, task)
        stream = self._uring_stream
        if stream is None:
            stream = self._uring_stream = sock.type == _SOCK_STREAM
        if stream and not flags & _MSG_WAITALL:
            ring = _provided.stream_ring(manager)
            if ring is not None:
                data = await _provided.recv(manager, ring, sock.fileno(), buflen, flags)
                if data is not None:
                    if len(data) == ring.size and buflen > ring.size and not flags & _MSG_PEEK:
                        # A full buffer: take what else is queued now, in this same call.
                        with suppress(OSError):
                            data += sock.recv(buflen - ring.size, flags | _MSG_DONTWAIT)
                    return data
        # The buffer belongs to the operation from its submit (``keep``) to its final
        # CQE.  It comes back here only with a result: perform() returned, so the
        # kernel is done.  Never in a ``finally``: an exception may leave before the
        # final CQE (a KeyboardInterrupt between submit and park), and then the
        # operation keeps it alive until the kernel lets go, and the GC frees it.
        if buflen > _POOLED:
            buf = _alloc("char[]", buflen)
            n = await manager.perform(_sqe.recv(sock.fileno(), buflen, flags, buf), keep=buf)
            received = ffi.unpack(buf, n)
            ffi.release(buf)  # free it now, not when the last reference goes
            return received
        buf = _pool.pop() if _pool else _alloc("char[]", _POOLED)
        n = await manager.perform(_sqe.recv(sock.fileno(), buflen, flags, buf), keep=buf)
        received = ffi.unpack(buf, n)
        if len(_pool) < _POOL_MAX:
            _pool.append(buf)
        return received

    async def recv_into(self, buffer: object, nbytes: object = 0, flags: object = 0) -> int:
        sock = self._sock
        if type(flags) is not int and isinstance(flags, int):
            flags = _exact_int(flags)
        if type(sock) is not _plain_socket or type(flags) is not int or flags < 0:
            return await super().recv_into(buffer, nbytes, flags)  # type: ignore[arg-type]
        try:
            size = buffer_nbytes(buffer, writable=True)
        except TypeError:
            return await super().recv_into(buffer, nbytes, flags)  # type: ignore[arg-type]
        if type(nbytes) is not int or nbytes < 0 or nbytes > size:
            return await super().recv_into(buffer, nbytes, flags)  # type: ignore[arg-type]
        if nbytes:
            size = nbytes
        task = enter() if _try_first else current_task()
        if task is None:
            return await super().recv_into(buffer, nbytes, flags)  # type: ignore[arg-type]
        if _try_first:
            if task is CANCEL_PENDING:
                await checkpoint_if_cancelled()  # raises Cancelled
            try:
                n: int = sock.recv_into(buffer, size, flags)  # type: ignore[arg-type]
            except BlockingIOError:
                pass
            except BaseException:
                await _shielded_checkpoint()
                raise
            else:
                await _shielded_checkpoint()
                return n
        manager = _current_uring()
        if manager is None:
            return await super().recv_into(buffer, nbytes, flags)  # type: ignore[arg-type]
        _claim_receive(self, task)
        # The operation exports `buffer` and releases it at the final CQE, before
        # this returns or raises: the caller may resize or release it at once.
        return await manager.perform(
            _sqe.recv(sock.fileno(), size, flags), buffer=buffer, writable=True
        )

    # ---------------------------------------------------------------- send
    async def send(self, data: object, flags: object = 0, /) -> int:
        sock = self._sock
        if type(flags) is not int and isinstance(flags, int):
            flags = _exact_int(flags)
        if type(sock) is not _plain_socket or type(flags) is not int or flags < 0:
            return await super().send(data, flags)  # type: ignore[arg-type]
        task = enter() if _try_first else current_task()
        if task is None:
            return await super().send(data, flags)  # type: ignore[arg-type]
        if _try_first:
            # Arguments the stdlib rejects raise here, as in trio.  The buffer is
            # exported to C only if the SQE path needs it (the common case ends here).
            if task is CANCEL_PENDING:
                await checkpoint_if_cancelled()  # raises Cancelled
            try:
                sent: int = sock.send(data, flags)  # type: ignore[arg-type]
            except BlockingIOError:
                pass
            except BaseException:
                await _shielded_checkpoint()
                raise
            else:
                await _shielded_checkpoint()
                return sent
        manager = _current_uring()
        try:
            size = buffer_nbytes(data)
        except TypeError:
            manager = None
        if manager is None:
            return await super().send(data, flags)  # type: ignore[arg-type]
        _claim_send(self, task)
        return await manager.perform(_sqe.send(sock.fileno(), size, flags), buffer=data)

    # -------------------------------------------------------------- accept
    async def accept(self) -> tuple[SocketType, Any]:
        """Like :meth:`socket.socket.accept`, but async; the new socket is a ``UringSocket``."""
        sock = self._sock
        if type(sock) is not _plain_socket:
            return await super().accept()
        task = enter() if _try_first else current_task()
        if task is None:
            return await super().accept()
        if _try_first:
            # A busy server's backlog usually holds a connection already.
            if task is CANCEL_PENDING:
                await checkpoint_if_cancelled()  # raises Cancelled
            # (``socket.accept`` inlined with the family and type as plain ints, read
            # before the fd exists.  Its "blocking if the listener had a timeout" step
            # is left out: trio's constructor makes the socket non-blocking anyway.)
            family, kind = _raw_family.__get__(sock), _raw_type.__get__(sock)
            try:
                fd, address = sock._accept()  # type: ignore[attr-defined]
            except BlockingIOError:
                pass
            except BaseException:
                await _shielded_checkpoint()
                raise
            else:
                try:
                    new_sock = _stdlib_socket.socket(family, kind, sock.proto, fileno=fd)
                except BaseException:
                    os.close(fd)
                    raise
                await _shielded_checkpoint()
                return UringSocket(new_sock), address
        manager = _current_uring()
        if manager is None:
            return await super().accept()
        _claim_receive(self, task)
        buf = ffi.new("char[]", _SS_SIZE + 4)
        ffi.buffer(buf)[_SS_SIZE:] = _ss_len.pack(_SS_SIZE)
        len_addr = int(ffi.cast("uintptr_t", buf)) + _SS_SIZE
        # (Read before the SQE: the stdlib's properties are Python code, and between the
        # kernel handing over the new fd and a socket object owning it nothing may run
        # that an interrupt could stop.)
        family, kind, proto = sock.family, sock.type, sock.proto
        fd = await manager.perform(
            _sqe.accept(sock.fileno(), buf, len_addr, _ACCEPT_FLAGS), keep=buf
        )
        try:
            new = _stdlib_socket.socket(family, kind, proto, fileno=fd)  # (KI-protected)
        except BaseException:
            os.close(fd)
            raise
        try:
            raw = ffi.buffer(buf)[:]
            (length,) = _ss_len.unpack_from(raw, _SS_SIZE)
            address = _unpack_sockaddr(family, raw, min(length, _SS_SIZE))
            if address is None:
                try:
                    address = new.getpeername()
                except OSError:
                    address = None
            return UringSocket(new), address
        except BaseException:
            new.close()  # the socket owns the fd now: closed once, by its owner
            raise

    # ------------------------------------------------------------- connect
    async def connect(self, address: Any) -> None:
        sock = self._sock
        manager = _manager_for(sock) if _connect_mirrored else None
        if manager is None:
            return await super().connect(address)
        try:
            address = await self._resolve_address_nocp(address, local=False)
            raw = _pack_sockaddr(sock.family, address)
            if raw is not None:
                _claim_send(self, _run_context.task)
                cbuf = ffi.new("char[]", raw)
                try:
                    # CONNECT is never linked to a timeout (not restartable: EALREADY).
                    await manager.perform(_sqe.connect(sock.fileno(), cbuf, len(raw)), keep=cbuf)
                except OSError as exc:
                    err = exc.errno or 0
                    msg = f"Error connecting to {address!r}: {os.strerror(err)}"
                    raise OSError(err, msg) from None
                return
        except trio.Cancelled:
            # Like trio: a cancelled connect leaves the socket in an unknown state.
            self.close()
            raise
        # An address we do not pack ourselves: trio's path gives the stdlib's answer.
        return await super().connect(address)


# Between writing its SQE and parking, each of these has a live frame (``perform``'s
# caller): a KeyboardInterrupt there is deferred to the next checkpoint, as in trio's
# own waits, so it arrives through the operation's abort (no-op when compiled).
_trio_compat.ki_protect(
    UringSocket.recv,
    UringSocket.recv_into,
    UringSocket.send,
    UringSocket.accept,
    UringSocket.connect,
)

# Compiled: the public objects become real coroutine functions (and get their
# docstrings and signatures) over the compiled bodies; see _core/_public.py.
from .._core._public import dress, like_trio  # noqa: E402

dress(__name__)
# trio's own socket methods: they read as trio's (name, docstring, signature).
like_trio(UringSocket, ("recv", "recv_into", "send", "accept", "connect"))
