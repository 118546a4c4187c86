"""Low-level file-descriptor operations as io_uring SQEs (re-exported by ``trio_uring.lowlevel``).

Every function here is a trio checkpoint, validates its arguments before
anything is submitted (``TypeError`` / ``ValueError`` / ``OverflowError``, as
the matching :mod:`os` function would raise), and raises ``OSError`` with the
errno of the CQE.  They all go through :meth:`UringIOManager.perform`, so
cancellation behaves the same everywhere:

* cancelled before the kernel saw the SQE: nothing happened, ``Cancelled`` is raised;
* cancelled after: ``IORING_OP_ASYNC_CANCEL`` is submitted and the task waits
  for the operation's own CQE.  If the operation was really cancelled,
  ``Cancelled`` is raised and nothing was transferred; if it completed anyway,
  its real result is returned (a short read/write, an opened fd) and the
  cancellation is delivered at the caller's next checkpoint.

Buffers passed in (``readinto``, ``write``) are exported by the operation and
released at its final CQE, so they are free again (resizable, releasable) as
soon as the call returns or raises.

Thread fallback: if the run is not on the io_uring manager (plain ``trio.run``,
the epoll fallback), or the kernel lacks an opcode (``IORING_REGISTER_PROBE``),
the call runs the matching :mod:`os` function in ``trio.to_thread.run_sync``
instead; such a call cannot be cancelled once the thread started.
"""

from __future__ import annotations

import operator
import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, SupportsIndex, TypeVar

import trio

from .._core import _sqe
from .._core._constants import MAX_RW_COUNT, Op
from .._core._ring_cffi import ffi
from .._core._trio_compat import ki_protect

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from .._core._manager import UringIOManager

    StrOrBytesPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]

T = TypeVar("T")

#: ``dirfd`` meaning "relative to the current working directory".
AT_FDCWD: Final = -100
AT_SYMLINK_NOFOLLOW: Final = 0x100
AT_EMPTY_PATH: Final = 0x1000
AT_STATX_SYNC_AS_STAT: Final = 0x0000
STATX_BASIC_STATS: Final = 0x07FF

_U64: Final = (1 << 64) - 1
_INT_MIN: Final = -(1 << 31)
_INT_MAX: Final = (1 << 31) - 1

# struct statx (include/uapi/linux/stat.h): 256 bytes.
_STATX = struct.Struct("=IIQIIIHHQQQQ" + "qIi" * 4 + "IIII")
_STATX_SIZE: Final = 256


# ----------------------------------------------------------------- helpers
def _uring(opcode: Op) -> UringIOManager | None:
    """The run's io_uring manager if it can do ``opcode``, else None (thread fallback)."""
    from .._core._manager import current_manager

    try:
        manager = current_manager()
    except RuntimeError:
        trio.lowlevel.current_task()  # raises RuntimeError outside of trio
        return None
    return manager if manager.supports(opcode) else None


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await trio.to_thread.run_sync(fn, *args)


def check_fd(fd: int, name: str = "fd") -> int:
    try:
        fd = operator.index(fd)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(fd).__name__}") from None
    if not _INT_MIN <= fd <= _INT_MAX:
        raise OverflowError(f"{name} is out of range for a C int: {fd}")
    return fd


def check_offset(arg: SupportsIndex, name: str = "offset") -> int:
    """An offset: >= 0, or -1 for "the current file position" (also for pipes)."""
    try:
        offset = operator.index(arg)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(arg).__name__}") from None
    if offset < -1:
        raise ValueError(f"{name} must be >= 0, or -1 for the current position, not {offset}")
    if offset >= 1 << 63:
        raise OverflowError(f"{name} is too large: {offset}")
    return offset


def check_count(arg: SupportsIndex, name: str = "nbytes") -> int:
    try:
        n = operator.index(arg)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(arg).__name__}") from None
    if n < 0:
        raise ValueError(f"{name} must be >= 0, not {n}")
    return n


def fspath_bytes(path: StrOrBytesPath) -> bytes:
    """``path`` as the bytes the kernel sees; ``TypeError``/``ValueError`` like :func:`os.open`."""
    p = os.fspath(path)
    if isinstance(p, str):
        p = os.fsencode(p)
    if not isinstance(p, bytes):  # pragma: no cover - os.fspath already checks
        raise TypeError(f"expected str, bytes or os.PathLike object, not {type(path).__name__}")
    if b"\0" in p:
        raise ValueError("embedded null byte")
    return p


def _dir_fd(dir_fd: int | None) -> int:
    return AT_FDCWD if dir_fd is None else check_fd(dir_fd, "dir_fd")


# --------------------------------------------------------------- read/write
async def read(fd: int, nbytes: int, offset: int = -1) -> bytes:
    """Read up to ``nbytes`` from ``fd`` at ``offset`` (``IORING_OP_READ``); like ``os.pread``.

    ``offset=-1`` reads at (and advances) the file position, which is also what
    pipes, sockets and character devices need.  Returns ``b""`` at end of file.
    Unlike ``os.pread``, a non-seekable fd (pipe, socket) does not fail with
    ``ESPIPE``: the kernel ignores the offset and reads from the stream.
    A cancelled read that completed anyway returns its data (see module docs);
    one that was really cancelled read nothing and did not move the position.
    Thread fallback: ``os.pread`` / ``os.read``.
    """
    fd = check_fd(fd)
    nbytes = check_count(nbytes)
    offset = check_offset(offset)
    length = min(nbytes, MAX_RW_COUNT)
    manager = _uring(Op.READ)
    if manager is None:
        if offset == -1:
            return await _in_thread(os.read, fd, length)
        return await _in_thread(os.pread, fd, length, offset)
    if length == 0:
        cbuf = ffi.new("char[]", 1)
        await manager.perform(_sqe.read(fd, 0, offset, cbuf), keep=cbuf)
        return b""
    # The kernel reads straight into a fresh, still unshared bytes object (one
    # copy, like io's BufferedReader); it is only handed out after the final CQE.
    out = bytes(length)
    n = await manager.perform(_sqe.read(fd, length, offset), buffer=out)
    return out if n == length else out[:n]


async def readinto(fd: int, buffer: Buffer, offset: int = -1) -> int:
    """Read into the writable ``buffer`` from ``fd`` at ``offset``; return the byte count.

    Same semantics as :func:`read`.  ``buffer`` is free again when this returns
    or raises.  Thread fallback: ``os.preadv`` / ``os.readv``.
    """
    # Index-like arguments first (their __index__ is user code), then the buffer; the
    # operation measures it from its own export (length -1: all of it, up to
    # MAX_RW_COUNT), in the call that writes the SQE.
    fd = check_fd(fd)
    offset = check_offset(offset)
    with memoryview(buffer) as view:
        if view.readonly:
            raise TypeError("readinto() argument must be a writable bytes-like object")
    manager = _uring(Op.READ)
    if manager is None:
        if offset == -1:
            return await _in_thread(os.readv, fd, [buffer])
        return await _in_thread(os.preadv, fd, [buffer], offset)
    return await manager.perform(_sqe.read(fd, -1, offset), buffer=buffer, writable=True)


async def write(fd: int, data: Buffer, offset: int = -1) -> int:
    """Write ``data`` to ``fd`` at ``offset`` (``IORING_OP_WRITE``); return the bytes written.

    Like ``os.pwrite`` / ``os.write``: the count may be short (a pipe, a full
    disk, a cancelled write that had started).  ``offset=-1`` writes at (and
    advances) the file position, or appends under ``O_APPEND``.  ``data`` is
    free again when this returns or raises.  Thread fallback: ``os.pwrite`` / ``os.write``.
    """
    fd = check_fd(fd)  # index-like arguments first (see readinto)
    offset = check_offset(offset)
    memoryview(data).release()  # TypeError for a non-buffer, before anything else
    manager = _uring(Op.WRITE)
    if manager is None:
        if offset == -1:
            return await _in_thread(os.write, fd, data)
        return await _in_thread(os.pwrite, fd, data, offset)
    return await manager.perform(_sqe.write(fd, -1, offset), buffer=data)


# ----------------------------------------------------------- open / close
class _ThreadOpen:
    """``os.open`` in a worker thread that a cancelled task abandons without leaking the fd.

    ``os.open`` cannot be interrupted, so the task waits with
    ``abandon_on_cancel=True``, and ``_lock`` makes exactly one side own the
    new fd: the thread hands it over only while the task still waits for it;
    the task, when it gives up, marks the open abandoned and closes an fd that
    was handed over but had not arrived.  An abandoned thread closes what its
    ``os.open`` returns, whenever that is; one that had not started does not open.

    ``dir_fd``, if not None, is a duplicate this object owns (closed once the
    thread's ``os.open`` returned, or by the task if the thread never started),
    so the caller may close its own ``dir_fd`` while an abandoned thread still blocks.
    ``limiter`` is passed on to ``trio.to_thread.run_sync``.
    """

    def __init__(
        self,
        path: bytes,
        flags: int,
        mode: int,
        dir_fd: int | None,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        import threading

        self._path = path
        self._flags = flags
        self._mode = mode
        self._dir_fd = dir_fd
        self._limiter = limiter
        self._lock = threading.Lock()
        self._started = False
        self._abandoned = False
        self._fd = -1

    def _open(self) -> int:
        """The worker thread's part."""
        with self._lock:
            if self._abandoned:
                return -1
            self._started = True
        try:
            fd = os.open(self._path, self._flags, self._mode, dir_fd=self._dir_fd)
        finally:
            if self._dir_fd is not None:
                os.close(self._dir_fd)
        with self._lock:
            if not self._abandoned:
                self._fd = fd
                return fd
        os.close(fd)
        return -1

    async def run(self) -> int:
        try:
            return await trio.to_thread.run_sync(
                self._open, abandon_on_cancel=True, limiter=self._limiter
            )
        except BaseException:
            with self._lock:
                self._abandoned = True
                started = self._started
                fd, self._fd = self._fd, -1
            if fd >= 0:
                os.close(fd)
            if not started and self._dir_fd is not None:
                os.close(self._dir_fd)
            raise


async def _thread_open(raw: bytes, flags: int, mode: int, dfd: int, *, fifo: bool = False) -> int:
    """``os.open`` in a worker thread: blocks like it (a FIFO waits for a peer), but cancellable.

    ``fifo``: the open is expected to wait for a FIFO's peer, maybe for good if
    cancelled; it gets a limiter of its own, so it neither queues behind nor
    holds a token of the run's default limiter (40 writers waiting for readers
    whose opens queue behind them would deadlock).
    """
    limiter = trio.CapacityLimiter(1) if fifo else None
    dup = None if dfd == AT_FDCWD else os.dup(dfd)
    return await _ThreadOpen(raw, flags, mode, dup, limiter).run()


def _fifo_hung_up(fd: int) -> bool:
    """Does the FIFO read end ``fd`` report ``POLLHUP`` right now (a writer came and left)?"""
    import select

    poller = select.poll()
    poller.register(fd, 0)  # POLLHUP is reported whatever is asked for
    return any(revents & select.POLLHUP for _, revents in poller.poll(0))


async def _await_fifo_writer(fd: int) -> int:
    """Return the FIFO read end ``fd`` once a blocking ``open(O_RDONLY)`` would have returned.

    io_uring's non-blocking first attempt opened ``fd`` whether or not the FIFO
    has a writer; a blocking open returns only once one opened it.  A worker
    thread waits for that with a second, blocking open of the same FIFO
    (``/proc/self/fd/N`` of a duplicate: no path lookup that a rename or unlink
    could change) and closes it again.  ``fd`` stays open meanwhile, as a
    reader blocked in ``open`` counts as a reader: a writer that ``fd``
    already let through gets no ``EPIPE`` and loses nothing it wrote.

    A writer that comes and goes before the thread's open (``echo hi > fifo``
    started first) leaves ``POLLHUP`` on ``fd``, which the task watches: the
    open is then done, and a short-lived writer of our own (``O_NONBLOCK``,
    nothing written, needs write permission) releases the thread.  Cancelled:
    ``fd`` is closed, and the thread stays blocked until the FIFO gets a
    writer, then closes its fds.  If ``/proc/self/fd`` cannot be opened, the
    open does not wait.  Returns ``fd``, or closes it and raises.
    """
    from ._sockets import poll

    try:
        if _fifo_hung_up(fd):
            return fd
        token = trio.lowlevel.current_trio_token()
        thread_done = trio.Event()
        dup = os.dup(fd)

        def wait() -> None:  # worker thread; it owns dup
            try:
                os.close(os.open(b"/proc/self/fd/%d" % dup, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                pass  # no /proc: do not wait
            finally:
                os.close(dup)

        with trio.CancelScope() as watch:

            def finished() -> None:
                thread_done.set()
                watch.cancel()

            def deliver(result: object) -> None:  # worker thread, after wait()
                try:
                    token.run_sync_soon(finished)
                except trio.RunFinishedError:
                    pass

            trio.lowlevel.start_thread_soon(wait, deliver, name="trio_uring FIFO open")
            await poll(fd, 0)  # only POLLHUP/POLLERR: data alone may predate the open
            try:
                release = os.open(
                    b"/proc/self/fd/%d" % fd, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC
                )
            except OSError:
                return fd  # no write permission: the thread stays until the next writer
            try:
                # Woken by the release's open, or finding it there: the thread
                # returns at once.
                with trio.CancelScope(shield=True):
                    await thread_done.wait()
            finally:
                os.close(release)
        return fd
    except BaseException:
        os.close(fd)
        raise


async def openat(
    path: StrOrBytesPath, flags: int, mode: int = 0o666, *, dir_fd: int | None = None
) -> int:
    """Open ``path`` (``IORING_OP_OPENAT``) and return the new fd; like ``os.open``.

    ``O_CLOEXEC`` is always added (Python's fds are non-inheritable, PEP 446).
    ``dir_fd=None`` means relative to the current directory.  Never leaks an
    fd: if cancellation arrives after the kernel opened the file, the fd is
    returned (the caller owns it; the cancellation hits its next checkpoint).
    An open that blocks in the kernel (an io-wq worker) is cancelled too and
    raises ``Cancelled``; a cancelled open may still have created or
    truncated the file.

    FIFOs block like with ``os.open``: without ``O_NONBLOCK``, a write-only
    open waits for a reader and a read-only open for a writer (io_uring's
    non-blocking first attempt fails with ``ENXIO`` or returns at once).  The
    wait is a blocking ``os.open`` in a worker thread; for a read-only open
    the fd from io_uring stays open meanwhile and is the result (see
    ``_await_fifo_writer``).  Cancelled, the task raises ``Cancelled`` at
    once, but the thread stays blocked in the kernel until the FIFO gets a
    peer, then closes the fd it got; until then it counts as the FIFO's
    reader or writer, so that peer's open succeeds and it then sees end of
    file (or ``EPIPE``).  ``O_RDWR`` never blocks on a FIFO; with
    ``O_NONBLOCK`` the kernel's rules apply (``ENXIO`` for a write-only open
    without a reader), as with ``os.open``.

    Thread fallback: ``os.open``, cancellable the same way (the thread is
    abandoned and closes the fd it gets).
    """
    import errno
    import stat

    raw = fspath_bytes(path)
    flags = operator.index(flags) | os.O_CLOEXEC
    mode = operator.index(mode)
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"invalid mode: {mode:#o}")
    dfd = _dir_fd(dir_fd)
    manager = _uring(Op.OPENAT)
    if manager is None:
        return await _thread_open(raw, flags, mode, dfd)
    # Without O_NONBLOCK, a read-only or write-only open of a FIFO waits for a peer.
    blocking = not flags & (os.O_NONBLOCK | os.O_PATH)
    accmode = flags & os.O_ACCMODE
    cpath = ffi.new("char[]", raw)
    try:
        # A blocking open that a cancel interrupts in io-wq completes with a kernel
        # restart code: the operation's result() turns it into Cancelled.
        fd = await manager.perform(_sqe.openat(dfd, cpath, flags, mode), keep=cpath)
    except OSError as exc:
        if exc.errno == errno.ENXIO and blocking and accmode == os.O_WRONLY:
            # A FIFO without a reader (or a socket, a device without its
            # driver: os.open fails the same way).
            return await _thread_open(raw, flags, mode, dfd, fifo=True)
        raise
    if blocking and accmode == os.O_RDONLY and stat.S_ISFIFO(os.fstat(fd).st_mode):
        return await _await_fifo_writer(fd)
    return fd


async def close(fd: int) -> None:
    """Close ``fd`` (``IORING_OP_CLOSE``); like ``os.close``.

    Calls ``trio.lowlevel.notify_closing(fd)`` first, so other tasks' pending
    operations on ``fd`` raise ``trio.ClosedResourceError``.  Shielded from
    cancellation: the fd is always closed, then a pending cancellation is
    raised.  Thread fallback: ``os.close``.
    """
    fd = check_fd(fd)
    trio.lowlevel.notify_closing(fd)
    manager = _uring(Op.CLOSE)
    with trio.CancelScope(shield=True):
        if manager is None:
            await _in_thread(os.close, fd)
        else:
            await manager.perform(_sqe.close(fd))
    await trio.lowlevel.checkpoint_if_cancelled()


# ------------------------------------------------------- sync / truncate
async def fsync(fd: int, *, datasync: bool = False) -> None:
    """Flush ``fd`` to stable storage (``IORING_OP_FSYNC``); like ``os.fsync``/``os.fdatasync``.

    A cancelled fsync may or may not have flushed.  Thread fallback: ``os.fsync``
    / ``os.fdatasync``.
    """
    fd = check_fd(fd)
    manager = _uring(Op.FSYNC)
    if manager is None:
        await _in_thread(os.fdatasync if datasync else os.fsync, fd)
        return
    await manager.perform(_sqe.fsync(fd, datasync=datasync))


async def ftruncate(fd: int, length: int) -> None:
    """Set the size of ``fd`` to ``length`` (``IORING_OP_FTRUNCATE``, Linux 6.9); like ``os.ftruncate``.

    Thread fallback (older kernels): ``os.ftruncate``.
    """
    fd = check_fd(fd)
    length = check_count(length, "length")
    manager = _uring(Op.FTRUNCATE)
    if manager is None:
        await _in_thread(os.ftruncate, fd, length)
        return
    await manager.perform(_sqe.ftruncate(fd, length))


# ------------------------------------------------------------------- statx
def _unpack_statx(data: bytes) -> os.stat_result:
    (
        _mask, blksize, _attrs, nlink, uid, gid, mode, _s0, ino, size, blocks, _amask,
        a_s, a_ns, _r1, _b_s, _b_ns, _r2, c_s, c_ns, _r3, m_s, m_ns, _r4,
        rdev_maj, rdev_min, dev_maj, dev_min,
    ) = _STATX.unpack_from(data)  # fmt: skip
    atime_ns = a_s * 1_000_000_000 + a_ns
    mtime_ns = m_s * 1_000_000_000 + m_ns
    ctime_ns = c_s * 1_000_000_000 + c_ns
    return os.stat_result(
        (
            mode, ino, os.makedev(dev_maj, dev_min), nlink, uid, gid, size,
            a_s, m_s, c_s,
            a_s + a_ns * 1e-9, m_s + m_ns * 1e-9, c_s + c_ns * 1e-9,  # as CPython's fill_time
            atime_ns, mtime_ns, ctime_ns,
            blksize, blocks, os.makedev(rdev_maj, rdev_min),
        )
    )  # fmt: skip


async def statx(
    path: StrOrBytesPath,
    *,
    dir_fd: int | None = None,
    flags: int = AT_STATX_SYNC_AS_STAT,
    mask: int = STATX_BASIC_STATS,
) -> os.stat_result:
    """``statx(2)`` through ``IORING_OP_STATX``; returns an ``os.stat_result``.

    ``flags``: ``AT_SYMLINK_NOFOLLOW`` (like ``os.lstat``), ``AT_EMPTY_PATH``
    with ``path=""`` and ``dir_fd=fd`` (like ``os.fstat``).  The result has the
    same fields, with nanosecond timestamps, as ``os.stat``.  A cancelled
    statx raises ``Cancelled`` (it has no side effect).  Thread fallback:
    ``os.stat`` / ``os.lstat`` / ``os.fstat``.
    """
    raw = fspath_bytes(path)
    flags = operator.index(flags)
    mask = operator.index(mask)
    dfd = _dir_fd(dir_fd)
    manager = _uring(Op.STATX)
    if manager is None:

        def fallback() -> os.stat_result:
            if flags & AT_EMPTY_PATH and not raw:
                return os.stat(dfd)
            return os.stat(
                raw,
                dir_fd=None if dfd == AT_FDCWD else dfd,
                follow_symlinks=not flags & AT_SYMLINK_NOFOLLOW,
            )

        return await _in_thread(fallback)
    cpath = ffi.new("char[]", raw)
    out = ffi.new("char[]", _STATX_SIZE)
    await manager.perform(_sqe.statx(dfd, cpath, flags, mask, out), keep=(cpath, out))
    return _unpack_statx(ffi.buffer(out, _STATX_SIZE)[:])


async def fstat(fd: int) -> os.stat_result:
    """``os.fstat(fd)`` through ``IORING_OP_STATX`` (``AT_EMPTY_PATH``); see :func:`statx`."""
    fd = check_fd(fd)
    return await statx(b"", dir_fd=fd, flags=AT_EMPTY_PATH)


# ------------------------------------------------------------------ splice
async def splice(
    fd_in: int, off_in: int, fd_out: int, off_out: int, nbytes: int, flags: int = 0
) -> int:
    """Move up to ``nbytes`` between two fds, one a pipe (``IORING_OP_SPLICE``); like ``os.splice``.

    ``off_in`` / ``off_out`` are file offsets, or -1 for pipes / the current
    position.  Returns the bytes moved (0 at end of input).  A splice that was
    cancelled after moving some data returns that count.  Thread fallback:
    ``os.splice``.
    """
    fd_in = check_fd(fd_in, "fd_in")
    fd_out = check_fd(fd_out, "fd_out")
    off_in = check_offset(off_in, "off_in")
    off_out = check_offset(off_out, "off_out")
    nbytes = min(check_count(nbytes), MAX_RW_COUNT)
    flags = operator.index(flags)
    if flags < 0 or flags >= 1 << 31:
        raise ValueError(f"invalid splice flags: {flags:#x}")
    manager = _uring(Op.SPLICE)
    if manager is None:
        return await _in_thread(
            lambda: os.splice(
                fd_in,
                fd_out,
                nbytes,
                None if off_in == -1 else off_in,
                None if off_out == -1 else off_out,
                flags,
            )
        )
    return await manager.perform(_sqe.splice(fd_in, off_in, fd_out, off_out, nbytes, flags))


# The frames between each SQE's submit and its park (see _trio_compat.ki_protect):
# a KeyboardInterrupt there arrives at the park, through the operation's abort.
# (Their callers need no mark: trio asks the innermost frame with a mark.)
ki_protect(
    read, readinto, write, openat, close, fsync, ftruncate, statx, fstat, splice, _await_fifo_writer
)
