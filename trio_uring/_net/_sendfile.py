"""``SocketStream.send_file``: serve a file without its bytes passing through Python.

Three paths, best first (:func:`path_for` picks one per call):

``splice`` (io_uring runs whose kernel has ``IORING_OP_SPLICE``, i.e. always at the 5.11 minimum)
    one ``IORING_OP_SPLICE`` moves up to a pipe's capacity (1 MiB) of page-cache
    pages from the file into a pipe; the io-wq worker that runs it is the one that
    may block on the disk, never the event loop.  The pipe is then drained into the
    socket with a non-blocking ``splice(2)`` from the loop thread (the pages are
    already in memory: it never blocks; only a full socket waits, through
    ``trio.lowlevel.wait_writable``, a ``POLL_ADD`` on io_uring).  No byte is copied
    into user space; the socket references the page-cache pages.  The pipes come
    from a small per-run pool (an empty pipe is reused; the pool is closed when the
    run ends), which saves a ``pipe2``/``fcntl``/two ``close`` per call.

    Measured against the other routes on loopback (``python -m
    trio_uring.bench._sendfile``-style runs, 256 MiB in the page cache): draining
    the pipe with a second ``IORING_OP_SPLICE`` instead costs one more io-wq
    round trip per chunk and ``-EAGAIN`` handling (io-wq does not poll for a
    splice into a non-blocking socket), and was no faster; ``sendfile(2)`` from
    the loop thread is as fast on a warm cache but blocks the whole run on a
    cold one.
``sendfile`` (the run is on trio's epoll backend, the kernel lacks ``SPLICE``, or the file is
regular but the splice path is switched off)
    ``os.sendfile`` on the non-blocking socket, waiting for writability through
    trio between calls.  Still zero-copy; a page-cache miss blocks the event loop
    for the disk read.
``read``
    where the kernel refuses to splice or sendfile from this kind of file
    (``EINVAL``): read chunks (``trio_uring.lowlevel.read``: ``IORING_OP_READ``, or a
    worker thread off io_uring) and send them.  Copies, but works for anything
    readable.

:data:`force_path` switches the choice (tests only).
"""

from __future__ import annotations

import errno
import fcntl
import operator
import os
import socket as _stdlib_socket
import stat
from typing import TYPE_CHECKING, Final, Protocol, SupportsIndex

import trio
from trio.lowlevel import RunVar, checkpoint

from .._core import _sqe
from .._core._constants import MAX_RW_COUNT, MSG_NOSIGNAL, Op
from .._core._operation import COMPLETED, PREPARED, Operation
from .._core._ring_cffi import lib
from .._core._trio_compat import ki_protect
from .._ops import _files
from ._errors import translate as _translate

if TYPE_CHECKING:
    from trio.socket import SocketType

    from .._core._manager import UringIOManager

__all__ = [
    "PATHS",
    "HasFileno",
    "Request",
    "check_arguments",
    "describe_path",
    "force_path",
    "path_for",
    "send_file",
]

#: The paths, best first.
PATHS: Final = ("splice", "sendfile", "read")
#: Tests only: ``"sendfile"`` or ``"read"`` makes every later call take that path
#: (``"sendfile"`` only for regular files and block devices; others then read).
force_path: str | None = None

#: The pipe size asked for (``F_SETPIPE_SZ``); 1 MiB is ``/proc/sys/fs/pipe-max-size``'s
#: default, the most an unprivileged process may ask for.
PIPE_SIZE: Final = 1 << 20
#: Pipes kept per run for reuse (more concurrent calls make more, closed after use).
POOL_SIZE: Final = 16
#: Bytes per read on the read path.
READ_CHUNK: Final = 256 * 1024

_F_SETPIPE_SZ: Final = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ: Final = getattr(fcntl, "F_GETPIPE_SZ", 1032)
_SPLICE_F_NONBLOCK: Final = 2
_U64: Final = (1 << 64) - 1
#: Errors of ``sendfile``/``splice`` into the socket that mean the connection (not the
#: file) failed: translated as ``send_all`` translates them.
_SOCKET_ERRNOS: Final = frozenset(
    getattr(errno, name)
    for name in (
        "EPIPE", "ECONNRESET", "ENOTCONN", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH",
        "ENETDOWN", "ECONNABORTED", "EHOSTDOWN", "ENOTSOCK", "EBADF", "EDESTADDRREQ",
    )
    if hasattr(errno, name)
)  # fmt: skip
#: A kernel that cannot splice/sendfile from this file says so with these.
_UNSUPPORTED_ERRNOS: Final = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


class HasFileno(Protocol):
    def fileno(self) -> int: ...


# ------------------------------------------------------------------ which path
def path_for(manager: UringIOManager | None) -> str:
    """The path a call takes for a regular file: ``"splice"``, ``"sendfile"`` or ``"read"``."""
    if force_path is not None:
        return force_path
    if manager is not None and manager.supports(Op.SPLICE):
        return "splice"
    return "sendfile"


def describe_path(has_splice: bool) -> str:
    """One line for ``python -m trio_uring info``: the path ``send_file`` takes on this ring."""
    if has_splice:
        return (
            "splice: IORING_OP_SPLICE file->pipe (io-wq), splice(2) pipe->socket; "
            "zero-copy, never blocks the loop on the disk"
        )
    return "sendfile(2) with readiness waits (no IORING_OP_SPLICE); zero-copy"


# ------------------------------------------------------------------ pipes
class _Pipe:
    __slots__ = ("r", "size", "w")

    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_CLOEXEC)
        try:
            self.size = fcntl.fcntl(self.w, _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # EPERM: above pipe-max-size or the user's pipe quota
            try:
                self.size = fcntl.fcntl(self.w, _F_GETPIPE_SZ)
            except OSError:
                self.size = 65536

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


class _PipePool:
    """Empty pipes of one run; closed (with every later return) when the run ends."""

    __slots__ = ("closed", "free")

    def __init__(self) -> None:
        self.free: list[_Pipe] = []
        self.closed = False

    def take(self) -> _Pipe:
        return self.free.pop() if self.free else _Pipe()

    def give(self, pipe: _Pipe) -> None:
        """Return an empty pipe."""
        if self.closed or len(self.free) >= POOL_SIZE:
            pipe.close()
        else:
            self.free.append(pipe)

    def close(self) -> None:
        self.closed = True
        while self.free:
            self.free.pop().close()


_POOL: RunVar[_PipePool] = RunVar("trio_uring.send_file.pipes")


def _pool() -> _PipePool:
    try:
        return _POOL.get()
    except LookupError:
        pool = _PipePool()
        _POOL.set(pool)
        trio.lowlevel.spawn_system_task(_close_at_run_exit, pool, name="trio_uring send_file pipes")
        return pool


async def _close_at_run_exit(pool: _PipePool) -> None:
    try:
        await trio.sleep_forever()
    finally:
        pool.close()


# ------------------------------------------------------------------ arguments
class _Source:
    """The file a call reads: the fd number taken when the call started, and its owner.

    ``fd`` is the caller's number, which :meth:`check` compares with its owner
    right before each SQE or syscall: it raises ``ClosedResourceError`` once
    the owner (a file object: ``trio_uring.open_file``'s, ``trio.open_file``'s,
    a Python file, a trio ``FdStream``) is closed or names another fd, since
    after a close the number may already belong to a file the caller never
    meant to send.  A bare int has no owner to ask: its caller must not close
    it during the call (trio's rule for fds), or must call
    ``trio.lowlevel.notify_closing`` first.

    ``kernel_fd`` is the number the SQEs carry.  For a regular file (or block
    device) it is a private duplicate, made by :meth:`own_duplicate`: the
    kernel resolves a splice's input fd only when an io-wq worker runs it,
    later than the check, and the caller's number may have been closed and
    reused in between; the duplicate is closed only when no operation on it
    is left in the kernel.  (Not for pipes and sockets: a splice may wait on
    them for good, and ``notify_closing`` of the caller's number must reach it.)
    """

    __slots__ = ("fd", "in_kernel", "kernel_fd", "owner")

    def __init__(self, file: object) -> None:
        self.owner = None if isinstance(file, int) else file
        self.fd = self.kernel_fd = _file_fd(file)
        #: An operation on ``kernel_fd`` may still be in the kernel: never close it.
        self.in_kernel = False

    def own_duplicate(self) -> None:
        if self.kernel_fd == self.fd:
            self.kernel_fd = os.dup(self.fd)

    def release(self) -> None:
        """Close the duplicate, unless an operation on it may still be in the kernel."""
        if self.kernel_fd != self.fd and not self.in_kernel:
            os.close(self.kernel_fd)
            self.kernel_fd = self.fd

    def check(self) -> None:
        owner = self.owner
        if owner is None:
            return
        if getattr(owner, "closed", False) is True:
            raise trio.ClosedResourceError("another task closed the file")
        try:
            fd = _file_fd(owner)
        except (TypeError, ValueError, OSError):  # a closed file's fileno() raises ValueError
            raise trio.ClosedResourceError("another task closed the file") from None
        if fd != self.fd:
            raise trio.ClosedResourceError("the file no longer has the descriptor it had")


def _file_fd(file: object) -> int:
    if isinstance(file, int):
        fd = operator.index(file)
    else:
        get = getattr(file, "fileno", None)
        if get is None:
            wrapped = getattr(file, "wrapped", None)
            get = getattr(wrapped, "fileno", None)
        if get is None:
            raise TypeError(
                f"file must be an int fd or have a fileno() method, not {type(file).__name__}"
            )
        fd = operator.index(get())
    if fd < 0:
        raise ValueError(f"file descriptor cannot be negative: {fd}")
    return fd


def _check_count(count: SupportsIndex | None) -> int | None:
    return None if count is None else _files.check_count(count, "count")


def _check_offset(offset: SupportsIndex) -> int:
    value = _files.check_offset(offset)
    if value == -1:  # (send_file never moves the file position: no "current position")
        raise ValueError("offset must be >= 0, not -1")
    return value


class Request:
    """One call's checked arguments: the file (its fd taken now), the range, its kind."""

    __slots__ = ("count", "offset", "seekable", "source")

    def __init__(self, source: _Source, offset: int, count: int | None, seekable: bool) -> None:
        self.source = source
        self.offset = offset
        #: Bytes to send; None: to the EOF of a file that is not regular (a regular
        #: file's ``None`` is its size minus ``offset`` when the call started).
        self.count = count
        self.seekable = seekable

    def release(self) -> None:
        """Close the file's duplicate this call made, if no operation still uses it."""
        self.source.release()


async def check_arguments(
    file: object, offset_arg: SupportsIndex, count_arg: SupportsIndex | None
) -> Request:
    """``send_file``'s arguments, checked as trio checks them: ``TypeError``,
    ``ValueError``, ``OverflowError`` or ``OSError`` (``EBADF`` for a file not open for
    reading, ``EISDIR``), raised after a checkpoint.  Index-like arguments are read
    first (their ``__index__`` is user code), then the fd."""
    try:
        offset = _check_offset(offset_arg)
        count = _check_count(count_arg)
        source = _Source(file)
        fd = source.fd
        st = os.fstat(fd)
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
            raise OSError(errno.EBADF, "send_file: the file is not open for reading")
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        seekable = stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)
        if not seekable and offset:
            raise ValueError(
                "offset must be 0 for a file that is not seekable (a pipe, socket or "
                "character device is read from where it is)"
            )
    except (TypeError, ValueError, OverflowError, OSError):
        await checkpoint()  # bad arguments are still a checkpoint, as in trio
        raise
    if stat.S_ISREG(st.st_mode) and count is None:
        count = max(0, st.st_size - offset)  # "to EOF": the size when the call starts
    return Request(source, offset, count, seekable)


# ------------------------------------------------------------------ the call
async def send_file(
    request: Request, manager: UringIOManager | None, sock: SocketType, sock_fd: int
) -> int:
    """Send ``request``'s range into ``sock`` (whose fd is ``sock_fd``), on this run's
    ``manager`` (None: trio's own backend); :meth:`SocketStream.send_file` says what
    this guarantees.

    The stream calls it with ``request.count`` not 0, holding its send slot, inside a
    cancel scope its ``aclose`` cancels (closing the socket wakes waits on the socket,
    not on the file), and releases ``request`` afterwards.  Every syscall and SQE on
    ``sock_fd`` is made only while ``sock`` still owns that number.
    """
    source = request.source
    seekable = request.seekable
    offset = request.offset
    count = request.count
    path = path_for(manager)
    if path == "sendfile" and not seekable:
        path = "read"  # sendfile's EAGAIN could not say which side is not ready
    if seekable and path != "sendfile":
        source.own_duplicate()
    if path == "splice":
        assert manager is not None
        sent, unsupported = await _splice_path(
            sock, manager, sock_fd, source, seekable, offset, count
        )
    elif path == "sendfile":
        assert count is not None
        sent, unsupported = await _sendfile_path(sock, sock_fd, source, offset, count)
    else:
        sent, unsupported = 0, True
    if unsupported:  # the kernel refused this file before any byte went
        if seekable:
            source.own_duplicate()
        sent = await _read_path(sock, sock_fd, source, seekable, offset, count)
    return sent


def _owns(sock: SocketType, sock_fd: int) -> bool:
    """Is ``sock_fd`` still the socket's (not closed by the stream's ``aclose`` or
    ``socket.close``)?  (``aclose`` closes the socket as it marks the stream closed.)"""
    return sock.fileno() == sock_fd


def _check_open(sock: SocketType, sock_fd: int) -> None:
    """Right before each syscall or SQE on ``sock_fd``: raise if the stream let it go."""
    if not _owns(sock, sock_fd):
        raise trio.ClosedResourceError("another task closed this stream")


async def _splice_path(
    sock: SocketType,
    manager: UringIOManager,
    sock_fd: int,
    source: _Source,
    seekable: bool,
    offset: int,
    count: int | None,
) -> tuple[int, bool]:
    """File → pool pipe with ``IORING_OP_SPLICE``, pipe → socket with ``splice(2)``.

    The pipe goes back to the pool only if it is empty and no splice into it is
    still in the kernel (:func:`_splice_in`); else it is closed, or, while a
    splice may still write into it, left to that operation.
    """
    pool = _pool()
    pipe = pool.take()
    size = pipe.size
    fd = source.kernel_fd
    in_pipe = 0
    sent = 0
    off_in = offset if seekable else -1
    reusable = True
    try:
        while count is None or sent < count:
            want = size if count is None else min(size, count - sent)
            source.check()
            _check_open(sock, sock_fd)
            op = Operation(manager, pipe.w)
            try:
                n = await manager.perform(_sqe.splice(fd, off_in, pipe.w, -1, want, 0), op=op)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)  # a non-blocking pipe or socket as input
                continue
            except OSError as exc:
                if exc.errno in _UNSUPPORTED_ERRNOS and sent == 0:
                    return 0, True
                raise
            finally:
                if op.state != PREPARED and op.state != COMPLETED:
                    # Never the case when perform returns or raises normally (it waits
                    # for the final CQE); should anything unwind earlier, the kernel may
                    # still write into the pipe: it must not be reused or closed (its
                    # number could name another file by then).  The operation keeps it.
                    op.keep = pipe
                    reusable = False
                    source.in_kernel = True
            if n == 0:
                break  # EOF
            in_pipe = n
            if seekable:
                off_in += n
            while in_pipe:
                _check_open(sock, sock_fd)
                try:
                    k = os.splice(pipe.r, sock_fd, in_pipe, flags=_SPLICE_F_NONBLOCK)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock_fd)
                    continue
                except OSError as exc:
                    raise _translate(exc)  # noqa: B904 - chained as trio chains it
                in_pipe -= k
                sent += k
        return sent, False
    except BaseException:
        if in_pipe and reusable:
            in_pipe = _drain_or_reset(sock, pipe, sock_fd, in_pipe)
        raise
    finally:
        if not reusable:
            pass  # still the kernel's (see above)
        elif in_pipe:
            pipe.close()  # the stream was reset or closed: its bytes go nowhere
        else:
            pool.give(pipe)


def _drain_or_reset(sock: SocketType, pipe: _Pipe, sock_fd: int, in_pipe: int) -> int:
    """Cancelled (or failed) with bytes in the pipe: push them out now or break the stream.

    The bytes already left the file for this stream; dropping them and letting
    later sends follow would put a hole in the stream.  So they go into the
    socket if it takes them without waiting; else the connection is reset
    (TCP: ``connect(AF_UNSPEC)``, the peer gets ``ECONNRESET``; other sockets:
    ``shutdown(SHUT_RDWR)``), so every later send raises ``BrokenResourceError``.
    Nothing happens once the stream let ``sock_fd`` go (closed, or its socket
    closed): the number may name another connection by then.
    Returns the bytes left in the pipe.
    """
    while in_pipe:
        if not _owns(sock, sock_fd):
            return in_pipe
        try:
            in_pipe -= os.splice(pipe.r, sock_fd, in_pipe, flags=_SPLICE_F_NONBLOCK)
        except OSError:
            break
    if in_pipe and _owns(sock, sock_fd):
        _reset(sock_fd)
    return in_pipe


def _reset(sock_fd: int) -> None:
    if lib.tu_disconnect(sock_fd) == 0:
        return
    s = _stdlib_socket.socket(fileno=sock_fd)
    try:
        s.shutdown(_stdlib_socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        s.detach()


async def _sendfile_path(
    sock: SocketType, sock_fd: int, source: _Source, offset: int, count: int
) -> tuple[int, bool]:
    await trio.lowlevel.checkpoint_if_cancelled()  # cancelled already: nothing goes
    fd = source.fd
    sent = 0
    waited = False
    while sent < count:
        source.check()
        _check_open(sock, sock_fd)
        try:
            k = os.sendfile(sock_fd, fd, offset + sent, min(count - sent, MAX_RW_COUNT))
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock_fd)
            waited = True
            continue
        except OSError as exc:
            if exc.errno in _UNSUPPORTED_ERRNOS and sent == 0:
                return 0, True
            if exc.errno in _SOCKET_ERRNOS:
                raise _translate(exc)  # noqa: B904 - chained as trio chains it
            raise
        if k == 0:
            break  # EOF
        sent += k
        if sent < count:
            await checkpoint()  # a peer that keeps up must not starve the other tasks
            waited = True
    if not waited:
        await checkpoint()
    return sent, False


async def _read_path(
    sock: SocketType,
    sock_fd: int,
    source: _Source,
    seekable: bool,
    offset: int,
    count: int | None,
) -> int:
    fd = source.kernel_fd
    sent = 0
    while count is None or sent < count:
        want = READ_CHUNK if count is None else min(READ_CHUNK, count - sent)
        source.check()
        try:
            data = await _files.read(fd, want, offset + sent if seekable else -1)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(fd)
            continue
        if not data:
            break
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            _check_open(sock, sock_fd)
            try:
                pos += await sock.send(view[pos:], MSG_NOSIGNAL)
            except OSError as exc:
                raise _translate(exc)  # noqa: B904 - chained as trio chains it
        sent += len(data)
    return sent


# The frames that call the manager's submit-and-park (perform, wait_readable,
# wait_writable): a KeyboardInterrupt between the two arrives at the park instead.
# (Their callers need no mark: trio asks the innermost frame with a mark.)
ki_protect(_splice_path, _sendfile_path, _read_path)
