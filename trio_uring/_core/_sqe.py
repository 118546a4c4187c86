"""One typed builder per opcode: the one place that knows which SQE field carries what.

An io_uring SQE has a handful of general fields that every opcode reuses for
its own purposes: ``IORING_OP_SPLICE`` puts the input fd in ``splice_fd_in``
(our ``file_index``) and the input offset in ``addr``; ``IORING_OP_ACCEPT``
puts a pointer to the address length in ``off``; ``IORING_OP_SHUTDOWN`` puts
``how`` in ``len``.  The functions below take each opcode's arguments by name
and return an :data:`Sqe`, the fields in the order the C part writes them
(``tu_prep``).  :meth:`UringIOManager.submit` and :meth:`~UringIOManager.perform`
take an :data:`Sqe` and nothing else describes an SQE, so adding an operation
means adding one function here (and, if it may be linked to a timeout and
resubmitted, its opcode to :data:`RESTARTABLE`).

``buf`` arguments: a C pointer the operation keeps alive (``keep=``), or, when the
caller hands the manager a Python buffer to export (``buffer=``), the byte
offset into that buffer (and a negative ``nbytes`` means "the rest of it").

Whether an operation may be linked to an ``IORING_OP_LINK_TIMEOUT`` (and so
resubmitted if the timeout fires while trio does not cancel) is decided in one
place too, :func:`restartable`: the op table, plus the rule that an operation
at the file's current position (offset -1) is never restarted.

These are plain functions returning plain tuples: they sit on every send's and
receive's path, where a class per SQE would cost more than it says.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

from ._constants import (
    ACCEPT_MULTISHOT,
    FSYNC_DATASYNC,
    IOSQE_BUFFER_SELECT,
    POLL_ADD_MULTI,
    RECV_MULTISHOT,
    Op,
)
from ._ring_cffi import ffi

#: ``(opcode, sqe_flags, fd, off, addr, len, op_flags, buf_index, file_index, ioprio)``:
#: an SQE's fields in the order the C part's ``tu_prep`` writes them.
Sqe: TypeAlias = tuple[int, int, int, int, Any, int, int, int, int, int]

NULL: Final = ffi.NULL
_U64: Final = (1 << 64) - 1
#: ``off`` meaning "the file's current position" (-1 as the kernel's u64).
CURRENT_POSITION: Final = _U64

_RECV: Final = int(Op.RECV)
_SEND: Final = int(Op.SEND)
_READ: Final = int(Op.READ)
_WRITE: Final = int(Op.WRITE)
_SPLICE: Final = int(Op.SPLICE)
_AT_POSITION: Final = frozenset((_READ, _WRITE, int(Op.READ_FIXED), int(Op.WRITE_FIXED)))


#: The op table: opcodes that may be linked to an ``IORING_OP_LINK_TIMEOUT`` and so
#: resubmitted when that timeout fired but trio did not cancel the task (its
#: deadline moved, a shield).  Only requests for which ``-ECANCELED`` means
#: "nothing happened, and doing it again is the same request" belong here.  Not:
#: ``CONNECT`` (a second connect gives ``EALREADY``), ``OPENAT``/``CLOSE``/
#: ``SHUTDOWN``/``TIMEOUT`` (side effects, or nothing to gain), ``SEND_ZC``
#: (two completions).  Reads, writes and splices at the file position are never
#: linked either: :func:`restartable` applies both rules.
RESTARTABLE: Final = frozenset(
    int(op)
    for op in (
        Op.RECV,
        Op.SEND,
        Op.RECVMSG,
        Op.SENDMSG,
        Op.ACCEPT,
        Op.READ,
        Op.WRITE,
        Op.READ_FIXED,
        Op.WRITE_FIXED,
        Op.POLL_ADD,
        Op.STATX,
        Op.FSYNC,
        Op.SPLICE,
    )
)


def file_offset(offset: int) -> int:
    """A Python file offset as the SQE's u64 (-1: the current position)."""
    return offset & _U64


def restartable(sqe: Sqe) -> bool:
    """Whether ``sqe`` may be linked to a timeout and resubmitted if that fires.

    The op table (:data:`RESTARTABLE`) says which opcodes; an operation at the
    file's current position is never restarted (a partial transfer would move it).
    """
    opcode = sqe[0]
    if opcode not in RESTARTABLE:
        return False
    if opcode in _AT_POSITION:
        return bool(sqe[3] != CURRENT_POSITION)
    if opcode == _SPLICE:
        return bool(sqe[3] != CURRENT_POSITION and _addr_int(sqe[4]) != CURRENT_POSITION)
    return True


def _addr_int(addr: Any) -> int:
    return addr if type(addr) is int else int(ffi.cast("uintptr_t", addr))


# ------------------------------------------------------------------ sockets
def recv(fd: int, nbytes: int, msg_flags: int = 0, buf: Any = 0) -> Sqe:
    """``IORING_OP_RECV`` of up to ``nbytes`` into ``buf``."""
    return (_RECV, 0, fd, 0, buf, nbytes, msg_flags, 0, 0, 0)


def recv_select(fd: int, nbytes: int, buf_group: int, msg_flags: int = 0) -> Sqe:
    """A one-shot ``IORING_OP_RECV`` of up to ``nbytes`` into a buffer the kernel picks from
    provided-buffer group ``buf_group`` when data arrives (``cqe->flags`` names it)."""
    return (_RECV, IOSQE_BUFFER_SELECT, fd, 0, NULL, nbytes, msg_flags, buf_group, 0, 0)


def recv_multishot(fd: int, buf_group: int, msg_flags: int = 0) -> Sqe:
    """A multishot ``IORING_OP_RECV`` into buffers picked from provided-buffer group ``buf_group``."""
    return (_RECV, IOSQE_BUFFER_SELECT, fd, 0, NULL, 0, msg_flags, buf_group, 0, RECV_MULTISHOT)


def send(fd: int, nbytes: int, msg_flags: int = 0, buf: Any = 0) -> Sqe:
    """``IORING_OP_SEND`` of ``nbytes`` from ``buf``."""
    return (_SEND, 0, fd, 0, buf, nbytes, msg_flags, 0, 0, 0)


def send_zc(fd: int, nbytes: int, msg_flags: int, buf: Any, zc_flags: int = 0) -> Sqe:
    """``IORING_OP_SEND_ZC``: ``zc_flags`` (``IORING_SEND_ZC_*``) go in ``ioprio``."""
    return (Op.SEND_ZC, 0, fd, 0, buf, nbytes, msg_flags, 0, 0, zc_flags)


def sendmsg(fd: int, msghdr: Any, msg_flags: int = 0) -> Sqe:
    """``IORING_OP_SENDMSG`` of the ``struct msghdr`` at ``msghdr``."""
    return (Op.SENDMSG, 0, fd, 0, msghdr, 1, msg_flags, 0, 0, 0)


def recvmsg(fd: int, msghdr: Any, msg_flags: int = 0) -> Sqe:
    """``IORING_OP_RECVMSG`` into the ``struct msghdr`` at ``msghdr``."""
    return (Op.RECVMSG, 0, fd, 0, msghdr, 1, msg_flags, 0, 0, 0)


def accept(fd: int, addr: Any, addrlen_ptr: int, flags: int, *, multishot: bool = False) -> Sqe:
    """``IORING_OP_ACCEPT``: the peer address goes to ``addr``, its length to ``*addrlen_ptr``.

    ``flags`` are ``accept4``'s (``SOCK_CLOEXEC``/``SOCK_NONBLOCK``); ``multishot``
    (Linux 5.19) keeps accepting, one CQE per connection, into no address (pass
    ``NULL, 0``).
    """
    ioprio = ACCEPT_MULTISHOT if multishot else 0
    return (Op.ACCEPT, 0, fd, addrlen_ptr, addr, 0, flags, 0, 0, ioprio)


def connect(fd: int, addr: Any, addrlen: int) -> Sqe:
    """``IORING_OP_CONNECT`` to the ``struct sockaddr`` at ``addr`` (``addrlen`` goes in ``off``)."""
    return (Op.CONNECT, 0, fd, addrlen, addr, 0, 0, 0, 0, 0)


def shutdown(fd: int, how: int) -> Sqe:
    """``IORING_OP_SHUTDOWN`` (``how`` goes in ``len``)."""
    return (Op.SHUTDOWN, 0, fd, 0, NULL, how, 0, 0, 0, 0)


def poll_add(fd: int, mask: int, *, multishot: bool = False) -> Sqe:
    """``IORING_OP_POLL_ADD`` for the ``POLL*`` events in ``mask`` (``len`` says multishot)."""
    return (Op.POLL_ADD, 0, fd, 0, NULL, POLL_ADD_MULTI if multishot else 0, mask, 0, 0, 0)


# -------------------------------------------------------------------- files
def read(fd: int, nbytes: int, offset: int, buf: Any = 0) -> Sqe:
    """``IORING_OP_READ`` of up to ``nbytes`` at ``offset`` (-1: the current position)."""
    return (_READ, 0, fd, offset & _U64, buf, nbytes, 0, 0, 0, 0)


def write(fd: int, nbytes: int, offset: int, buf: Any = 0) -> Sqe:
    """``IORING_OP_WRITE`` of ``nbytes`` at ``offset`` (-1: the current position)."""
    return (_WRITE, 0, fd, offset & _U64, buf, nbytes, 0, 0, 0, 0)


def read_fixed(fd: int, nbytes: int, offset: int, buf: Any, buf_index: int) -> Sqe:
    """``IORING_OP_READ_FIXED`` into registered buffer ``buf_index`` at address ``buf``."""
    return (Op.READ_FIXED, 0, fd, offset & _U64, buf, nbytes, 0, buf_index, 0, 0)


def write_fixed(fd: int, nbytes: int, offset: int, buf: Any, buf_index: int) -> Sqe:
    """``IORING_OP_WRITE_FIXED`` from registered buffer ``buf_index`` at address ``buf``."""
    return (Op.WRITE_FIXED, 0, fd, offset & _U64, buf, nbytes, 0, buf_index, 0, 0)


def openat(dirfd: int, path: Any, flags: int, mode: int) -> Sqe:
    """``IORING_OP_OPENAT`` of the NUL-terminated ``path`` (``mode`` goes in ``len``)."""
    return (Op.OPENAT, 0, dirfd, 0, path, mode, flags & 0xFFFFFFFF, 0, 0, 0)


def close(fd: int) -> Sqe:
    """``IORING_OP_CLOSE``."""
    return (Op.CLOSE, 0, fd, 0, NULL, 0, 0, 0, 0, 0)


def fsync(fd: int, *, datasync: bool = False) -> Sqe:
    """``IORING_OP_FSYNC`` (``fdatasync`` with ``datasync``)."""
    return (Op.FSYNC, 0, fd, 0, NULL, 0, FSYNC_DATASYNC if datasync else 0, 0, 0, 0)


def ftruncate(fd: int, length: int) -> Sqe:
    """``IORING_OP_FTRUNCATE`` (Linux 6.9; ``length`` goes in ``off``)."""
    return (Op.FTRUNCATE, 0, fd, length, NULL, 0, 0, 0, 0, 0)


def statx(dirfd: int, path: Any, flags: int, mask: int, statxbuf: Any) -> Sqe:
    """``IORING_OP_STATX``: ``mask`` goes in ``len``, the result buffer's address in ``off``."""
    out = _addr_int(statxbuf)
    return (Op.STATX, 0, dirfd, out, path, mask & 0xFFFFFFFF, flags & 0xFFFFFFFF, 0, 0, 0)


def splice(fd_in: int, off_in: int, fd_out: int, off_out: int, nbytes: int, flags: int) -> Sqe:
    """``IORING_OP_SPLICE`` of up to ``nbytes`` from ``fd_in`` to ``fd_out`` (one a pipe).

    ``off_in``/``off_out``: file offsets, -1 for a pipe or the current position.
    ``fd_in`` goes in ``splice_fd_in`` and ``off_in`` in ``addr``.
    """
    addr = ffi.cast("void *", off_in & _U64)
    return (_SPLICE, 0, fd_out, off_out & _U64, addr, nbytes, flags, 0, fd_in & 0xFFFFFFFF, 0)


# ------------------------------------------------------------------- timers
def timeout(timespec: Any, count: int, flags: int) -> Sqe:
    """``IORING_OP_TIMEOUT`` at the ``struct __kernel_timespec`` ``timespec``.

    ``count``: completions that also end it (0: only the time); ``flags``:
    ``IORING_TIMEOUT_*`` (e.g. ``ABS``).
    """
    return (Op.TIMEOUT, 0, -1, count, timespec, 1, flags, 0, 0, 0)
