"""Socket operations as io_uring requests: recv, send, sendmsg, recvmsg, accept, connect, ...

Every function here submits exactly one SQE through
:meth:`UringIOManager.perform <trio_uring._core._manager.UringIOManager.perform>` and
so inherits its cancellation rules (see ``docs/semantics.rst``):

* each call is a trio checkpoint, also when it raises;
* cancelled before the kernel saw the request: ``Cancelled``, nothing happened;
* cancelled after: ``IORING_OP_ASYNC_CANCEL`` is submitted and the call waits
  for the request's own completion.  If the kernel cancelled it, ``Cancelled``
  is raised and nothing happened; if it completed anyway, its real result is
  returned (data received, bytes sent, a connection accepted) and the *next*
  checkpoint raises ``Cancelled``.  Data is never lost or duplicated;
* ``trio.lowlevel.notify_closing(sock)`` (or closing a trio socket) makes a
  pending call raise ``trio.ClosedResourceError``;
* the memory the kernel reads or writes stays referenced until the request's
  final completion; a caller's buffer is never touched after the call returned
  or raised.

Arguments are checked before anything is submitted and raise what the stdlib
socket methods raise (``TypeError``, ``ValueError``, ``OverflowError``;
``OSError(EBADF)`` for a closed socket).
"""

from __future__ import annotations

import errno
import operator
import os
import socket
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, SupportsIndex

import trio

from .._core import _sqe, _trio_compat
from .._core._constants import MAX_RW_COUNT, MSG_NOSIGNAL
from .._core._manager import current_manager
from .._core._operation import Operation, buffer_nbytes, export
from .._core._ring_cffi import ffi
from . import _sockaddr

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from .._core._trio_compat import HasFileno

    FdLike = int | HasFileno
    AncData = list[tuple[int, int, bytes]]

#: The kernel moves at most this many bytes per request (``MAX_RW_COUNT``).
MAX_IO: Final = MAX_RW_COUNT

_MSG_NOSIGNAL: Final = MSG_NOSIGNAL
_ACCEPT_FLAGS: Final = int(socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
_POLL_DONE: Final = 0x008 | 0x010 | 0x020  # POLLERR | POLLHUP | POLLNVAL always end a poll

# struct msghdr {name, namelen, iov, iovlen, control, controllen, flags} (native layout)
_msghdr = struct.Struct("@PIPNPNi0P")
_MSG_NAMELEN_AT: Final = struct.calcsize("@P")
_MSG_CONTROLLEN_AT: Final = struct.calcsize("@PIPNP")
_MSG_FLAGS_AT: Final = struct.calcsize("@PIPNPN")
_iovec = struct.Struct("@PN")
_cmsghdr = struct.Struct("@Nii")
_CMSG_HDR: Final = socket.CMSG_LEN(0)
_ALIGN: Final = struct.calcsize("@N")
_socklen = struct.Struct("@I")

#: Allocations the kernel fills in completely before we read them need no zeroing.
_alloc = ffi.new_allocator(should_clear_after_alloc=False)


def _addr(cdata: Any) -> int:
    return int(ffi.cast("uintptr_t", cdata))


def _align(n: int) -> int:
    return (n + _ALIGN - 1) & ~(_ALIGN - 1)


# ----------------------------------------------------------------- arguments
def fileno_of(sock: FdLike) -> int:
    """The fd of ``sock`` (an int or anything with ``fileno()``); ``OSError(EBADF)`` if closed.

    Runs the caller's ``fileno()``: call it last, right before submitting, so that no
    user code runs between taking the number and writing the SQE.  Returns an exact
    ``int`` (an ``int`` subclass's methods are never called afterwards).
    """
    if isinstance(sock, int):
        fd = operator.index(sock)  # (an exact int, without calling a subclass's methods)
    else:
        try:
            get = sock.fileno
        except AttributeError:
            raise TypeError(
                f"argument must be an int, or have a fileno() method, not {type(sock).__name__}"
            ) from None
        got: object = get()
        if not isinstance(got, int):
            raise TypeError(f"fileno() returned a non-integer ({type(got).__name__})")
        fd = operator.index(got)
    if fd < 0:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    return fd


def checked_flags(flags: SupportsIndex) -> int:
    """``MSG_*`` / ``SHUT_*`` / poll flags as the kernel's unsigned 32 bits, checked like the stdlib."""
    value = operator.index(flags)
    if not -0x80000000 <= value <= 0xFFFFFFFF:
        raise OverflowError("signed integer is greater than maximum")
    return value & 0xFFFFFFFF


def _size(n: SupportsIndex, message: str) -> int:
    value = operator.index(n)
    if value < 0:
        raise ValueError(message)
    return value


def _sock_kind(sock: FdLike) -> tuple[int, int, int]:
    """``(family, type, proto)`` of a socket object, or of a raw fd (asked from the kernel)."""
    if not isinstance(sock, int):
        family = getattr(sock, "family", None)
        if family is not None:
            return int(family), int(getattr(sock, "type", 0)), int(getattr(sock, "proto", 0))
    probe = socket.socket(fileno=fileno_of(sock))  # EBADF / ENOTSOCK come from here
    try:
        return int(probe.family), int(probe.type), int(probe.proto)
    finally:
        probe.detach()


def _pin(obj: object, writable: bool = False) -> Any:
    """An export of the caller's buffer ``obj`` (``len()``: its size), to hold while the
    call converts its other arguments and submits, as CPython's socket methods hold
    their ``Py_buffer``; release it with ``ffi.release`` when the call ends.

    Index-like arguments (``nbytes``, ``flags``), ``fileno()`` and an address run the
    caller's code; while the pin is held, that code cannot resize ``obj`` (a
    ``bytearray``), release it (a ``memoryview``: a second ``memoryview`` would not
    stop that) or close it (an ``mmap``): the resizer raises ``BufferError``, as with
    the stdlib method.  So the size measured after those conversions is the size
    submitted.  The kernel never uses the pin (the operation takes its own export),
    so releasing it early is harmless.  Raises the ``TypeError`` of
    :func:`export` for anything that is not a contiguous (``writable``) buffer.
    """
    return export(obj, writable)


async def _raise_at_checkpoint() -> None:
    """Bad arguments still make the call a checkpoint; a pending cancel wins (as in trio)."""
    await trio.lowlevel.checkpoint()


# ---------------------------------------------------------------- recv/send
async def recv(sock: FdLike, nbytes: SupportsIndex, flags: SupportsIndex = 0) -> bytes:
    """Receive up to ``nbytes`` bytes (``IORING_OP_RECV``), like :meth:`socket.socket.recv`.

    Returns ``b""`` at end of stream, and at once (a checkpoint) for ``nbytes=0``,
    as the stdlib does.  Cancelled: either nothing was received and ``Cancelled``
    is raised, or the data that arrived is returned.
    """
    manager = current_manager()
    try:
        n = min(_size(nbytes, "negative buffersize in recv"), MAX_IO)
        fl = checked_flags(flags)
        fd = fileno_of(sock)  # last: no user code between taking the fd and submitting
    except Exception:
        await _raise_at_checkpoint()
        raise
    if n == 0:
        await trio.lowlevel.checkpoint()
        return b""
    buf = _alloc("char[]", n)
    res = await manager.perform(_sqe.recv(fd, n, fl, buf), keep=buf)
    data: bytes = ffi.buffer(buf, res)[:]
    return data


async def recv_into(
    sock: FdLike, buffer: Buffer, nbytes: SupportsIndex = 0, flags: SupportsIndex = 0
) -> int:
    """Receive into ``buffer`` (``IORING_OP_RECV``), like :meth:`socket.socket.recv_into`.

    Reads at most ``nbytes`` bytes (0: the whole buffer) and returns how many it
    read.  The kernel writes into ``buffer`` only while this call is running;
    ``buffer`` is free again (resizable, releasable) when it returns or raises.
    As in CPython, ``buffer`` is held from the start of the call: an ``nbytes``,
    ``flags`` or ``fileno()`` that tries to resize, release or close it gets
    ``BufferError``, and the size checked against ``nbytes`` is the size submitted.
    """
    manager = current_manager()
    try:
        try:
            pin = _pin(buffer, writable=True)
        except TypeError:
            raise TypeError(
                "recv_into() argument 1 must be read-write bytes-like object, "
                f"not {type(buffer).__name__}"
            ) from None
    except Exception:
        await _raise_at_checkpoint()
        raise
    try:
        try:
            n = _size(nbytes, "negative buffersize in recv_into")
            fl = checked_flags(flags)
            size = len(pin)
            if n == 0:
                n = size
            elif n > size:
                raise ValueError("buffer too small for requested bytes")
            fd = fileno_of(sock)  # last: no user code between taking the fd and submitting
        except Exception:
            await _raise_at_checkpoint()
            raise
        return await manager.perform(
            _sqe.recv(fd, min(n, MAX_IO), fl), buffer=buffer, writable=True
        )
    finally:
        ffi.release(pin)


async def send(sock: FdLike, data: Buffer, flags: SupportsIndex = 0) -> int:
    """Send ``data`` (``IORING_OP_SEND``), like :meth:`socket.socket.send`; returns bytes sent.

    May send less than ``len(data)``.  ``MSG_NOSIGNAL`` is always added: a closed
    peer gives ``BrokenPipeError``, never ``SIGPIPE``.  Cancelled: either nothing
    was sent and ``Cancelled`` is raised, or the count sent is returned.
    ``data`` is free again when this returns or raises; it is held from the start
    of the call, as in CPython (a ``flags`` or ``fileno()`` that tries to resize it
    gets ``BufferError``).
    """
    manager = current_manager()
    try:
        pin = _pin(data)
    except Exception:
        await _raise_at_checkpoint()
        raise
    try:
        try:
            fl = checked_flags(flags) | _MSG_NOSIGNAL
            fd = fileno_of(sock)  # last: no user code between taking the fd and submitting
        except Exception:
            await _raise_at_checkpoint()
            raise
        # length -1: all of `data` (at most MAX_IO), measured by the export that submits it.
        return await manager.perform(_sqe.send(fd, -1, fl), buffer=data)
    finally:
        ffi.release(pin)


# ------------------------------------------------------------------ msghdr
def _pack_ancdata(ancdata: Iterable[tuple[int, int, Buffer]]) -> bytes:
    parts: list[bytes] = []
    try:
        # (list[object]: the items are checked here, as the stdlib does; a compiled
        # build would otherwise reject a bad item with its own message)
        items: list[object] = list(ancdata)
    except TypeError:
        raise TypeError("sendmsg() argument 2 must be an iterable") from None
    for item in items:
        if not isinstance(item, tuple) or len(item) != 3:
            raise TypeError(
                "[sendmsg() ancillary data items]() argument must be sequence of length 3"
            )
        level, kind, payload = item
        buffer_nbytes(payload)
        raw = bytes(memoryview(payload))
        parts.append(
            _cmsghdr.pack(socket.CMSG_LEN(len(raw)), operator.index(level), operator.index(kind))
        )
        parts.append(raw)
        parts.append(b"\0" * (socket.CMSG_SPACE(len(raw)) - socket.CMSG_LEN(len(raw))))
    return b"".join(parts)


def _unpack_ancdata(control: bytes) -> AncData:
    out: AncData = []
    offset = 0
    end = len(control)
    while offset + _CMSG_HDR <= end:
        length, level, kind = _cmsghdr.unpack_from(control, offset)
        if length < _CMSG_HDR:
            break
        out.append((level, kind, control[offset + _CMSG_HDR : min(offset + length, end)]))
        offset += _align(length)
    return out


async def sendmsg(
    sock: FdLike,
    buffers: Iterable[Buffer],
    ancdata: Iterable[tuple[int, int, Buffer]] = (),
    flags: SupportsIndex = 0,
    address: Any = None,
) -> int:
    """Gather-send ``buffers`` with ancillary data (``IORING_OP_SENDMSG``); returns bytes sent.

    Like :meth:`socket.socket.sendmsg`: ``ancdata`` is ``(level, type, data)``
    items (e.g. ``(SOL_SOCKET, SCM_RIGHTS, array("i", fds))``), ``address`` a
    numeric address for unconnected datagram sockets.  ``MSG_NOSIGNAL`` is always
    added.  The buffers are referenced (not copied) until the request completes.

    Arguments are taken in CPython's order: ``flags``, ``address``, then the
    buffers (the iterable is read to its end first), each exported once; the
    lengths submitted are those exports'.  Code that runs afterwards (the
    ancillary items, ``fileno()``) cannot resize them (``BufferError``).
    """
    manager = current_manager()
    op = Operation(manager)
    try:
        fl = checked_flags(flags) | _MSG_NOSIGNAL
        name = b""
        if address is not None:
            name = _sockaddr.pack(_sock_kind(sock)[0], address)
        try:
            iterator = iter(buffers)
        except TypeError:
            raise TypeError("sendmsg() argument 1 must be an iterable") from None
        items: list[object] = list(iterator)
        # No user code from here to the last export: a buffer's export runs none.
        cbufs = [op.export(b) for b in items]
        del items
        control = _pack_ancdata(ancdata)
        fd = fileno_of(sock)  # last: no user code between taking the fd and submitting
    except Exception:
        op.release()
        await _raise_at_checkpoint()
        raise
    nbufs = len(cbufs)
    iov_at = _msghdr.size
    name_at = iov_at + _iovec.size * nbufs
    control_at = _align(name_at + len(name))
    block = ffi.new("char[]", control_at + len(control) or 1)
    base = _addr(block)
    view = ffi.buffer(block)
    for i, c in enumerate(cbufs):
        _iovec.pack_into(view, iov_at + i * _iovec.size, _addr(c), len(c))
    del cbufs  # the operation owns the exports
    view[name_at : name_at + len(name)] = name
    view[control_at : control_at + len(control)] = control
    _msghdr.pack_into(
        view, 0,
        base + name_at if name else 0, len(name),
        base + iov_at, nbufs,
        base + control_at if control else 0, len(control),
        0,
    )  # fmt: skip
    return await manager.perform(_sqe.sendmsg(fd, block, fl), keep=block, op=op)


async def recvmsg(
    sock: FdLike, bufsize: SupportsIndex, ancbufsize: SupportsIndex = 0, flags: SupportsIndex = 0
) -> tuple[bytes, AncData, int, Any]:
    """Receive data and ancillary data (``IORING_OP_RECVMSG``), like :meth:`socket.socket.recvmsg`.

    Returns ``(data, ancdata, msg_flags, address)``; ``address`` is ``None`` when
    the kernel reports none (connected stream sockets, socketpairs).  File
    descriptors received with ``SCM_RIGHTS`` belong to the caller; a call that
    completed is never turned into ``Cancelled``, so they cannot be lost.
    """
    manager = current_manager()
    try:
        n = min(_size(bufsize, "negative buffer size in recvmsg()"), MAX_IO)
        anc = _size(ancbufsize, "invalid ancillary data buffer length")
        fl = checked_flags(flags)
        fd = fileno_of(sock)  # last: no user code between taking the fd and submitting
    except Exception:
        await _raise_at_checkpoint()
        raise
    iov_at = _msghdr.size
    name_at = iov_at + _iovec.size
    control_at = name_at + _sockaddr.SOCKADDR_STORAGE_SIZE
    data_at = _align(control_at + anc)
    block = _alloc("char[]", data_at + n + 1)
    base = _addr(block)
    view = ffi.buffer(block)
    _iovec.pack_into(view, iov_at, base + data_at, n)
    _msghdr.pack_into(
        view, 0,
        base + name_at, _sockaddr.SOCKADDR_STORAGE_SIZE,
        base + iov_at, 1,
        base + control_at if anc else 0, anc,
        0,
    )  # fmt: skip
    res = await manager.perform(_sqe.recvmsg(fd, block, fl), keep=block)
    (namelen,) = _socklen.unpack_from(view, _MSG_NAMELEN_AT)
    (controllen,) = struct.unpack_from("@N", view, _MSG_CONTROLLEN_AT)
    (msg_flags,) = struct.unpack_from("@i", view, _MSG_FLAGS_AT)
    ancdata = _unpack_ancdata(view[control_at : control_at + min(controllen, anc)]) if anc else []
    address = _sockaddr.unpack(view[name_at:control_at], namelen)
    return view[data_at : data_at + res], ancdata, msg_flags, address


# ------------------------------------------------------ connection set-up
async def accept(sock: FdLike) -> tuple[trio.socket.SocketType, Any]:
    """Accept a connection (``IORING_OP_ACCEPT``), like trio's ``SocketType.accept``.

    Returns a non-blocking, close-on-exec trio socket and the peer's address.
    The accepted fd is never leaked: cancelled, either no connection was taken
    from the backlog (``Cancelled``), or the connection is returned and the next
    checkpoint raises ``Cancelled``.
    """
    manager = current_manager()
    try:
        family, kind, proto = _sock_kind(sock)
        fd = fileno_of(sock)  # last: no user code between taking the fd and submitting
    except Exception:
        await _raise_at_checkpoint()
        raise
    size = _sockaddr.SOCKADDR_STORAGE_SIZE
    block = _alloc("char[]", size + _socklen.size)
    view = ffi.buffer(block)
    _socklen.pack_into(view, size, size)
    new_fd = await manager.perform(
        _sqe.accept(fd, block, _addr(block) + size, _ACCEPT_FLAGS), keep=block
    )
    try:
        stdlib_sock = socket.socket(family, kind, proto, fileno=new_fd)  # (KI-protected)
    except BaseException:
        os.close(new_fd)
        raise
    try:
        (addrlen,) = _socklen.unpack_from(view, size)
        address = _sockaddr.unpack(view[0:size], addrlen)
        if address is None:
            address = "" if family == socket.AF_UNIX else None
        return trio.socket.from_stdlib_socket(stdlib_sock), address
    except BaseException:
        stdlib_sock.close()  # the socket owns the fd now: closed once, by its owner
        raise


async def connect(sock: FdLike, address: Any) -> None:
    """Connect to a numeric ``address`` (``IORING_OP_CONNECT``), like trio's ``connect``.

    Host names are not resolved (``socket.gaierror``): use ``trio.socket.getaddrinfo``.
    A connect cannot be taken back: if cancelled, a socket *object* is closed (as
    trio does) and ``Cancelled`` raised; a raw fd is left for the caller to close.
    Failures raise ``OSError`` (e.g. ``ConnectionRefusedError``).
    """
    manager = current_manager()
    try:
        raw = _sockaddr.pack(_sock_kind(sock)[0], address)
        fd = fileno_of(sock)  # last: no user code between taking the fd and submitting
    except Exception:
        await _raise_at_checkpoint()
        raise
    block = ffi.new("char[]", raw)
    try:
        await manager.perform(_sqe.connect(fd, block, len(raw)), keep=block)
    except trio.Cancelled:
        if not isinstance(sock, int):
            close = getattr(sock, "close", None)
            if close is not None:
                close()
        raise
    except OSError as exc:
        raise OSError(exc.errno, f"Error connecting to {address!r}: {exc.strerror}") from None


async def shutdown(sock: FdLike, how: SupportsIndex) -> None:
    """Shut down one or both directions (``IORING_OP_SHUTDOWN``), like :meth:`socket.socket.shutdown`.

    ``how`` is ``SHUT_RD``, ``SHUT_WR`` or ``SHUT_RDWR``; anything else gives
    ``OSError(EINVAL)`` from the kernel.
    """
    manager = current_manager()
    try:
        value = checked_flags(how)
        fd = fileno_of(sock)
    except Exception:
        await _raise_at_checkpoint()
        raise
    await manager.perform(_sqe.shutdown(fd, value))


async def poll(sock: FdLike, events: SupportsIndex) -> int:
    """Wait until ``sock`` has one of the poll ``events`` (``IORING_OP_POLL_ADD``); return revents.

    One-shot.  ``POLLERR``, ``POLLHUP`` and ``POLLNVAL`` are always reported.
    Unlike ``trio.lowlevel.wait_readable``, several tasks may poll one fd at once.
    """
    manager = current_manager()
    try:
        mask = checked_flags(events)
        fd = fileno_of(sock)
    except Exception:
        await _raise_at_checkpoint()
        raise
    wanted = mask | _POLL_DONE
    while True:
        revents = await manager.perform(_sqe.poll_add(fd, mask))
        if revents & wanted:
            return revents
        if not isinstance(sock, int):
            fd = fileno_of(sock)  # polled again: only while the object still owns an fd


# Between writing its SQE and parking, each of these has a live frame (``perform``'s
# caller): a KeyboardInterrupt there is deferred to the next checkpoint, as in trio's
# own waits, so it arrives through the operation's abort (no-op when compiled).
_trio_compat.ki_protect(recv, recv_into, send, sendmsg, recvmsg, accept, connect, shutdown, poll)

# Compiled: the public objects become real coroutine functions (and get their
# docstrings and signatures) over the compiled bodies; see _core/_public.py.
from .._core._public import dress  # noqa: E402

dress(__name__)
