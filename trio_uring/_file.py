"""Thread-free async files: ``trio_uring.open_file``.

Design (see docs/files.rst):

* The binary layer (:class:`AsyncBinaryFile`) owns the file position.  Every
  read and write on a seekable file is an SQE at an explicit offset
  (``IORING_OP_READ`` / ``IORING_OP_WRITE``); the kernel's own file position is
  never used, except under ``O_APPEND`` (writes at offset -1 append, and
  ``os.lseek`` reads the new end back) and for non-seekable files (pipes,
  ttys), where offset -1 is the only choice.  Opening, fsync, truncate, stat
  and closing are SQEs too (``OPENAT``, ``FSYNC``, ``FTRUNCATE``, ``STATX``,
  ``CLOSE``).
* It buffers like :class:`io.BufferedRandom`: a read-ahead buffer holding the
  bytes at ``[pos, pos + len)`` and a write buffer holding the bytes that end
  at ``pos``.  Data read from the kernel goes into the read-ahead buffer
  *before* the next await and is consumed only after the last one, so a
  cancelled read never loses data or moves the position: it either raises
  ``Cancelled`` with the position unchanged, or returns its data.
* The text layer (:class:`AsyncTextFile`) is a port of CPython's
  ``_pyio.TextIOWrapper`` (the reference implementation of ``io.TextIOWrapper``)
  with awaits: the same incremental codecs, ``io.IncrementalNewlineDecoder``,
  BOM handling and opaque ``tell()`` cookies.  A cancelled text read puts the
  bytes it consumed back into the binary layer and restores the decoder, so it
  loses nothing either.
* One task at a time uses a file's buffers (a ``trio.Lock`` per layer, so
  concurrent calls queue like ``io``'s internal lock makes threads queue).
  :meth:`AsyncBinaryFile.pread` / :meth:`AsyncBinaryFile.pwrite` bypass the
  buffers and the lock, so many tasks can have operations in flight at once.
"""

from __future__ import annotations

import codecs
import errno
import fcntl
import io
import mmap
import os
import stat as stat_module
from typing import TYPE_CHECKING, Any, Literal, overload

import trio

from ._ops import _files

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

    from typing_extensions import Buffer, Self

    from ._ops._files import StrOrBytesPath

__all__ = ["AsyncBinaryFile", "AsyncTextFile", "ClosedFileError", "open_file"]

_DEFAULT_BUFFER_SIZE = io.DEFAULT_BUFFER_SIZE
_TEXT_CHUNK_SIZE = 8192


class ClosedFileError(trio.ClosedResourceError, ValueError):
    """A file object was used after (or while) being closed.

    Both a :class:`trio.ClosedResourceError` and a :class:`ValueError` (what
    :mod:`io` raises), so code written for either keeps working.
    """


def _closed_error() -> ClosedFileError:
    return ClosedFileError("I/O operation on closed file.")


class _Op:
    """``async with self._op():`` - the frame of every public buffered operation.

    Checkpoint on entry (raise if already cancelled), take the file's lock,
    check it is open; on a clean exit without any kernel I/O, a
    cancel-shielded checkpoint, so every operation is a full trio checkpoint.
    """

    __slots__ = ("file", "ios")

    def __init__(self, file: _Base) -> None:
        self.file = file
        self.ios = 0

    async def __aenter__(self) -> None:
        file = self.file
        await trio.lowlevel.checkpoint_if_cancelled()
        self.ios = file._ios
        lock = file._lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
            self.ios = -1
        if file._closed:
            lock.release()
            raise _closed_error()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        file = self.file
        file._lock.release()
        if exc_type is None and self.ios == file._ios:
            await trio.lowlevel.cancel_shielded_checkpoint()


class _Base:
    _lock: trio.Lock
    _closed: bool
    _ios: int

    def _op(self) -> _Op:
        return _Op(self)


# ====================================================================== binary
class AsyncBinaryFile(_Base):
    """A binary file whose I/O is io_uring SQEs; the async surface of ``io.BufferedRandom``.

    Returned by :func:`open_file` in binary modes.  Methods mirror
    :class:`trio._file_io.AsyncIOWrapper` over a buffered (or, with
    ``buffering=0``, raw) binary file.  Every async method is a trio checkpoint.

    Cancellation: a cancelled read raises ``Cancelled`` and leaves the position
    and the buffered data as they were (bytes the kernel delivered anyway stay
    buffered for the next read).  A cancelled ``write`` either accepted nothing
    (``Cancelled``) or, once the kernel started writing it, finishes writing it
    shielded and returns normally (the cancellation is delivered at the next
    checkpoint).  A cancelled ``flush`` keeps what it did not write buffered.
    The ``data`` passed to ``write`` is free again when ``write`` returns.

    After :meth:`aclose` (and for calls pending while it runs) every method
    raises :class:`ClosedFileError`.
    """

    def __init__(
        self,
        fd: int,
        *,
        name: str | bytes | int,
        mode: str,
        readable: bool,
        writable: bool,
        append: bool,
        seekable: bool,
        position: int,
        buffer_size: int,
        closefd: bool,
    ) -> None:
        self._fd = fd
        self.name = name
        self.mode = mode
        self._readable = readable
        self._writable = writable
        self._append = append
        self._seekable = seekable
        self._pos = position
        self._bufsize = buffer_size if buffer_size > 0 else _DEFAULT_BUFFER_SIZE
        self._raw = buffer_size == 0
        self._closefd = closefd
        self._rbuf = bytearray()
        self._wbuf = bytearray()
        self._closed = False
        self._ios = 0
        self._lock = trio.Lock()

    def __repr__(self) -> str:
        kind = "raw" if self._raw else "buffered"
        return f"<trio_uring.AsyncBinaryFile ({kind}) name={self.name!r} mode={self.mode!r}>"

    # ------------------------------------------------------------ sync API
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def closefd(self) -> bool:
        return self._closefd

    def fileno(self) -> int:
        if self._closed:
            raise _closed_error()
        return self._fd

    def readable(self) -> bool:
        if self._closed:
            raise _closed_error()
        return self._readable

    def writable(self) -> bool:
        if self._closed:
            raise _closed_error()
        return self._writable

    def seekable(self) -> bool:
        if self._closed:
            raise _closed_error()
        return self._seekable

    def isatty(self) -> bool:
        if self._closed:
            raise _closed_error()
        return os.isatty(self._fd)

    def _tell(self) -> int:
        return self._pos

    _direct = False

    async def _sys_read(self, n: int, offset: int) -> bytes:
        """One ``IORING_OP_READ``; through a page-aligned buffer under ``O_DIRECT``."""
        if not self._direct:
            return await _files.read(self._fd, n, offset)
        with mmap.mmap(-1, max(-(-n // mmap.PAGESIZE) * mmap.PAGESIZE, mmap.PAGESIZE)) as m:
            # Both views are released on the way out, also when the read raises: a
            # traceback that still held an unreleased slice would keep the mmap from closing.
            with memoryview(m) as view, view[:n] as part:
                got = await _files.readinto(self._fd, part, offset)
            return m[:got]

    async def _sys_write(self, data: Buffer, offset: int) -> int:
        """One ``IORING_OP_WRITE``; through a page-aligned buffer under ``O_DIRECT``."""
        if not self._direct:
            return await _files.write(self._fd, data, offset)
        with memoryview(data) as src, src.cast("B") as flat:
            n = flat.nbytes
            with mmap.mmap(-1, max(-(-n // mmap.PAGESIZE) * mmap.PAGESIZE, mmap.PAGESIZE)) as m:
                m[:n] = flat
                with memoryview(m) as view, view[:n] as part:
                    return await _files.write(self._fd, part, offset)

    # ------------------------------------------------------- kernel access
    async def _kread(self, n: int) -> int:
        """Append up to ``n`` bytes from the kernel to the read-ahead buffer."""
        offset = self._pos + len(self._rbuf) if self._seekable else -1
        self._ios += 1
        try:
            data = await self._sys_read(n, offset)
        except trio.ClosedResourceError:
            raise _closed_error() from None
        self._rbuf += data
        return len(data)

    async def _kwrite(self, data: Buffer, offset: int) -> int:
        self._ios += 1
        try:
            n = await self._sys_write(data, offset)
        except trio.ClosedResourceError:
            raise _closed_error() from None
        if n == 0 and memoryview(data).nbytes:
            raise OSError(errno.EIO, "write() returned 0")
        return n

    def _write_offset(self, length: int) -> int:
        """Kernel offset for bytes ending at the logical position (``-1``: append/stream)."""
        if self._append or not self._seekable:
            return -1
        return self._pos - length

    def _after_append(self) -> None:
        if self._append and self._seekable:
            self._pos = os.lseek(self._fd, 0, os.SEEK_CUR)

    async def _flush_wbuf(self) -> None:
        """Write the write buffer out; what a cancellation or error left unwritten stays."""
        wbuf = self._wbuf
        while wbuf:
            n = await self._kwrite(wbuf, self._write_offset(len(wbuf)))
            del wbuf[:n]
        self._after_append()

    async def _prepare_read(self) -> None:
        if not self._readable:
            raise io.UnsupportedOperation("read")
        if self._wbuf:
            await self._flush_wbuf()

    def _prepare_write(self) -> None:
        if not self._writable:
            raise io.UnsupportedOperation("write")
        if self._rbuf and self._seekable:
            self._rbuf.clear()  # the logical position stays where it is

    def _take(self, n: int) -> bytes:
        rbuf = self._rbuf
        out = bytes(rbuf[:n]) if n < len(rbuf) else bytes(rbuf)
        del rbuf[:n]
        if self._seekable:
            self._pos += len(out)
        return out

    def _unread(self, data: bytes) -> None:
        """Put ``data`` back in front of the read-ahead buffer (text layer cancellation)."""
        if data:
            self._rbuf[:0] = data
            if self._seekable:
                self._pos -= len(data)

    # ---------------------------------------------------------------- reads
    async def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all, to end of file, if negative or None).

        Buffered: returns fewer bytes only at end of file.  ``buffering=0``: one
        kernel read, like ``FileIO.read``.
        """
        n = _size(size)
        async with self._op():
            await self._prepare_read()
            if n < 0:
                return await self._readall()
            if not self._rbuf and (self._raw or n >= self._bufsize):
                # Large read with nothing buffered: no copy through the buffer.
                offset = self._pos if self._seekable else -1
                self._ios += 1
                try:
                    data = await self._sys_read(n, offset)
                except trio.ClosedResourceError:
                    raise _closed_error() from None
                if self._raw or len(data) == n or not data:
                    if self._seekable:
                        self._pos += len(data)
                    return data
                self._rbuf += data  # short read: keep it before awaiting more
            while len(self._rbuf) < n:
                want = n - len(self._rbuf)
                if not await self._kread(want if want >= self._bufsize else self._bufsize):
                    break
            return self._take(n)

    async def readall(self) -> bytes:
        """Read to end of file."""
        async with self._op():
            await self._prepare_read()
            return await self._readall()

    async def _readall(self) -> bytes:
        chunk = self._bufsize
        if self._seekable:
            self._ios += 1
            size = (await _files.fstat(self._fd)).st_size
            chunk = max(chunk, size - self._pos - len(self._rbuf) + 1)
        while await self._kread(chunk):
            chunk = max(chunk, min(len(self._rbuf), 1 << 26))
        return self._take(len(self._rbuf))

    async def read1(self, size: int | None = -1) -> bytes:
        """At most one kernel read: buffered bytes if there are any, else one read."""
        n = _size(size)
        async with self._op():
            await self._prepare_read()
            if n < 0:
                n = self._bufsize
            if not self._rbuf and n:
                await self._kread(max(n, self._bufsize))
            return self._take(n)

    async def peek(self, size: int = 0) -> bytes:
        """The buffered bytes (after at most one kernel read), without consuming them."""
        async with self._op():
            await self._prepare_read()
            if not self._rbuf:
                await self._kread(self._bufsize)
            return bytes(self._rbuf)

    async def readinto(self, buffer: Buffer) -> int:
        """Read into ``buffer``; return the byte count (like :meth:`read`, ``len(buffer)``)."""
        with memoryview(buffer) as view:
            if view.readonly:
                raise TypeError("readinto() argument must be read-write bytes-like object")
            n = view.nbytes
        data = await self.read(n)
        with memoryview(buffer) as view:
            view.cast("B")[: len(data)] = data
        return len(data)

    async def readinto1(self, buffer: Buffer) -> int:
        """Like :meth:`readinto` with at most one kernel read."""
        with memoryview(buffer) as view:
            if view.readonly:
                raise TypeError("readinto1() argument must be read-write bytes-like object")
            n = view.nbytes
        data = await self.read1(n)
        with memoryview(buffer) as view:
            view.cast("B")[: len(data)] = data
        return len(data)

    async def readline(self, size: int | None = -1) -> bytes:
        """Read one line (up to and including ``b"\\n"``), at most ``size`` bytes."""
        limit = _size(size)
        async with self._op():
            await self._prepare_read()
            return await self._readline(limit)

    async def _readline(self, limit: int) -> bytes:
        start = 0
        while True:
            i = self._rbuf.find(b"\n", start)
            if i >= 0:
                end = i + 1
                break
            start = len(self._rbuf)
            if 0 <= limit <= start:
                end = limit
                break
            if not await self._kread(self._bufsize):
                end = len(self._rbuf)
                break
        if 0 <= limit < end:
            end = limit
        return self._take(end)

    async def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Read lines until end of file, or until their total size reaches ``hint``."""
        limit = _size(hint)
        async with self._op():
            await self._prepare_read()
            lines: list[bytes] = []
            total = 0
            while line := await self._readline(-1):
                lines.append(line)
                total += len(line)
                if 0 < limit <= total:
                    break
            return lines

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    # --------------------------------------------------------------- writes
    async def write(self, data: Buffer) -> int:
        """Write ``data``; return ``len(data)`` (buffered) or the count written (``buffering=0``)."""
        with memoryview(data) as view:
            n = view.nbytes
        async with self._op():
            self._prepare_write()
            if self._raw:
                if self._wbuf:
                    await self._flush_wbuf()
                written = await self._kwrite(data, self._write_offset(0) if n else -1)
                self._pos += written
                self._after_append()
                return written
            if len(self._wbuf) + n <= self._bufsize:
                self._wbuf += data
                self._pos += n
                return n
            await self._flush_wbuf()  # Cancelled here: ``data`` was not accepted
            if n < self._bufsize:
                self._wbuf += data
                self._pos += n
                return n
            await self._write_direct(data, n)
            return n

    async def _write_direct(self, data: Buffer, n: int) -> None:
        # Every view of ``data`` is released on the way out, also when a write raises:
        # a view kept alive by the traceback would keep the caller's buffer exported.
        with memoryview(data) as raw, raw.cast("B") as view:
            done = await self._kwrite(
                view, self._pos if self._seekable and not self._append else -1
            )
            self._pos += done
            if done < n:
                # The kernel started: finish it, whatever happens to this task.
                with trio.CancelScope(shield=True):
                    while done < n:
                        with view[done:] as rest:
                            w = await self._kwrite(
                                rest, self._pos if self._seekable and not self._append else -1
                            )
                        done += w
                        self._pos += w
            self._after_append()

    async def writelines(self, lines: Iterable[Buffer]) -> None:
        """Write every item of ``lines`` (no separators are added)."""
        async with self._op():
            self._prepare_write()
        for line in lines:
            await self.write(line)

    async def flush(self) -> None:
        """Write the buffered data.  Cancelled: what was not written stays buffered."""
        async with self._op():
            if self._wbuf:
                await self._flush_wbuf()

    # ---------------------------------------------------------- positioning
    async def tell(self) -> int:
        """The logical position (``OSError(ESPIPE)`` for pipes, like ``io``)."""
        async with self._op():
            if not self._seekable:
                raise OSError(errno.ESPIPE, os.strerror(errno.ESPIPE))
            return self._pos

    async def seek(self, target: int, whence: int = os.SEEK_SET) -> int:
        """Move the logical position; ``SEEK_END`` stats the file (``IORING_OP_STATX``)."""
        target = _index(target)
        whence = _index(whence)
        if whence not in (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END):
            raise ValueError(f"whence value {whence} unsupported")
        async with self._op():
            if not self._seekable:
                raise io.UnsupportedOperation("File or stream is not seekable.")
            if self._wbuf:
                await self._flush_wbuf()
            if whence == os.SEEK_SET:
                new = target
            elif whence == os.SEEK_CUR:
                new = self._pos + target
            else:
                self._ios += 1
                new = (await _files.fstat(self._fd)).st_size + target
            if new < 0:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            if new != self._pos:
                self._rbuf.clear()
                self._pos = new
            return new

    async def truncate(self, size: int | None = None) -> int:
        """Resize the file to ``size`` (default: the position); the position does not move.

        ``IORING_OP_FTRUNCATE`` (thread fallback before Linux 6.9).
        """
        async with self._op():
            if not self._writable:
                raise io.UnsupportedOperation("File not open for writing")
            if self._wbuf:
                await self._flush_wbuf()
            new = self._pos if size is None else _index(size)
            if new < 0:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            self._ios += 1
            await _files.ftruncate(self._fd, new)
            self._rbuf.clear()
            return new

    # ------------------------------------------------------- extras / sync
    async def fsync(self, *, datasync: bool = False) -> None:
        """Flush the buffer, then ``IORING_OP_FSYNC`` (``datasync``: fdatasync)."""
        async with self._op():
            if self._wbuf:
                await self._flush_wbuf()
            self._ios += 1
            await _files.fsync(self._fd, datasync=datasync)

    async def stat(self) -> os.stat_result:
        """``os.fstat`` of the file, through ``IORING_OP_STATX``."""
        async with self._op():
            self._ios += 1
            return await _files.fstat(self._fd)

    async def pread(self, size: int, offset: int) -> bytes:
        """Read up to ``size`` bytes at ``offset``, bypassing the buffers and the position.

        Any number of tasks can have ``pread``/``pwrite`` calls in flight on one
        file at once (real queue depth).  Short only at end of file.  Call
        :meth:`flush` first if you also use buffered writes.  Cancelled: nothing
        was read (``Cancelled``) or the data is returned.
        """
        if offset < 0:
            raise ValueError(f"negative offset: {offset}")
        if self._closed:
            raise _closed_error()
        if not self._readable:
            raise io.UnsupportedOperation("read")
        try:
            return await self._sys_read(size, offset)
        except trio.ClosedResourceError:
            raise _closed_error() from None

    async def pwrite(self, data: Buffer, offset: int) -> int:
        """Write all of ``data`` at ``offset``, bypassing the buffers; return ``len(data)``.

        Concurrent calls run in parallel.  Under ``O_APPEND`` Linux appends and
        ignores ``offset``.  Cancelled before the kernel started: nothing was
        written; once started, the rest is written shielded.
        """
        if offset < 0:
            raise ValueError(f"negative offset: {offset}")
        if self._closed:
            raise _closed_error()
        if not self._writable:
            raise io.UnsupportedOperation("write")
        # Every view of ``data`` is released on the way out (see _write_direct).
        with memoryview(data) as raw, raw.cast("B") as view:
            total = view.nbytes
            try:
                done = await self._sys_write(view, offset)
                if done < total:
                    with trio.CancelScope(shield=True):
                        while done < total:
                            with view[done:] as rest:
                                w = await self._sys_write(rest, offset + done)
                            if w == 0:
                                raise OSError(errno.EIO, "write() returned 0")
                            done += w
            except trio.ClosedResourceError:
                raise _closed_error() from None
        return total

    # ---------------------------------------------------------------- close
    async def aclose(self) -> None:
        """Flush and close (``IORING_OP_CLOSE``); shielded from cancellation, like trio's.

        Pending calls on this file from other tasks raise :class:`ClosedFileError`.
        The fd is closed (if ``closefd``) even if the final flush fails; the
        flush error is then raised.  Closing twice is a no-op checkpoint.
        With ``closefd=False`` the kernel file position is set to the logical one.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        if self._closefd:
            trio.lowlevel.notify_closing(self._fd)
        with trio.CancelScope(shield=True):
            await self._lock.acquire()
            try:
                if self._wbuf:
                    await self._flush_wbuf()
            finally:
                self._lock.release()
                if self._closefd:
                    await _files.close(self._fd)
                elif self._seekable and not self._append:
                    try:
                        os.lseek(self._fd, self._pos, os.SEEK_SET)
                    except OSError:
                        pass
        await trio.lowlevel.checkpoint_if_cancelled()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.aclose()

    def detach(self) -> None:  # pragma: no cover - io compatibility
        raise io.UnsupportedOperation("detach")


# ======================================================================== text
class AsyncTextFile(_Base):
    """A text file over :class:`AsyncBinaryFile`; the async surface of ``io.TextIOWrapper``.

    Decoding, newline translation, BOMs and ``tell()`` cookies behave exactly as
    in ``io`` (the logic is CPython's ``_pyio.TextIOWrapper``).  Cancellation:
    a cancelled read raises ``Cancelled`` with nothing consumed (bytes read
    from the kernel are pushed back into the binary layer and the decoder state
    is restored); a cancelled write raises ``Cancelled`` having written nothing,
    or completes.  After :meth:`aclose` every method raises :class:`ClosedFileError`.
    """

    def __init__(
        self,
        buffer: AsyncBinaryFile,
        encoding: str,
        errors: str | None,
        newline: str | None,
        line_buffering: bool,
        mode: str,
    ) -> None:
        self._buffer = buffer
        self.mode = mode
        self._lock = trio.Lock()
        self._closed = False
        self._ios = 0
        self._decoded_chars = ""
        self._decoded_chars_used = 0
        self._snapshot: tuple[int, bytes] | None = None
        self._seekable = self._telling = buffer._seekable
        self._encoding = encoding
        self._errors = errors or "strict"
        self._encoder: codecs.IncrementalEncoder | None = None
        self._decoder: Any = None
        self._b2cratio = 0.0
        self._readuniversal = not newline
        self._readtranslate = newline is None
        self._readnl = newline
        self._writetranslate = newline != ""
        self._writenl = newline or os.linesep
        self._line_buffering = line_buffering
        self._consumed: list[bytes] | None = None
        if self._seekable and buffer._writable and buffer._tell() != 0:
            # don't write a BOM in the middle of a file
            try:
                self._get_encoder().setstate(0)
            except LookupError:  # pragma: no cover
                pass

    def __repr__(self) -> str:
        return (
            f"<trio_uring.AsyncTextFile name={self.name!r} mode={self.mode!r} "
            f"encoding={self._encoding!r}>"
        )

    # ----------------------------------------------------------- sync API
    @property
    def buffer(self) -> AsyncBinaryFile:
        return self._buffer

    @property
    def name(self) -> str | bytes | int:
        return self._buffer.name

    @property
    def closed(self) -> bool:
        return self._buffer.closed

    @property
    def closefd(self) -> bool:
        return self._buffer.closefd

    @property
    def encoding(self) -> str:
        return self._encoding

    @property
    def errors(self) -> str:
        return self._errors

    @property
    def line_buffering(self) -> bool:
        return self._line_buffering

    @property
    def newlines(self) -> str | tuple[str, ...] | None:
        newlines: str | tuple[str, ...] | None = getattr(self._decoder, "newlines", None)
        return newlines

    def fileno(self) -> int:
        return self._buffer.fileno()

    def readable(self) -> bool:
        return self._buffer.readable()

    def writable(self) -> bool:
        return self._buffer.writable()

    def seekable(self) -> bool:
        return self._buffer.seekable()

    def isatty(self) -> bool:
        return self._buffer.isatty()

    def _count_ios(self) -> None:
        self._ios += 1

    def _check_readable(self) -> None:
        if not self._buffer._readable:
            raise io.UnsupportedOperation("not readable")

    # ---------------------------------------------------- codec machinery
    def _get_encoder(self) -> codecs.IncrementalEncoder:
        make_encoder = codecs.getincrementalencoder(self._encoding)
        self._encoder = make_encoder(self._errors)
        return self._encoder

    def _get_decoder(self) -> Any:
        make_decoder = codecs.getincrementaldecoder(self._encoding)
        decoder: Any = make_decoder(self._errors)
        if self._readuniversal:
            decoder = io.IncrementalNewlineDecoder(decoder, self._readtranslate)
        self._decoder = decoder
        return decoder

    def _set_decoded_chars(self, chars: str) -> None:
        self._decoded_chars = chars
        self._decoded_chars_used = 0

    def _get_decoded_chars(self, n: int | None = None) -> str:
        offset = self._decoded_chars_used
        if n is None:
            chars = self._decoded_chars[offset:]
        else:
            chars = self._decoded_chars[offset : offset + n]
        self._decoded_chars_used += len(chars)
        return chars

    def _rewind_decoded_chars(self, n: int) -> None:
        if self._decoded_chars_used < n:  # pragma: no cover
            raise AssertionError("rewind decoded_chars out of bounds")
        self._decoded_chars_used -= n

    def _save(self) -> tuple[Any, ...]:
        self._consumed = []
        dec_state = self._decoder.getstate() if self._decoder is not None else None
        return (
            dec_state,
            self._decoded_chars,
            self._decoded_chars_used,
            self._snapshot,
            self._b2cratio,
        )

    def _restore(self, saved: tuple[Any, ...]) -> None:
        """Undo a read that was interrupted (cancelled): nothing is consumed."""
        dec_state, chars, used, snapshot, ratio = saved
        consumed, self._consumed = self._consumed, None
        if consumed:
            self._buffer._unread(b"".join(consumed))
        if self._decoder is not None:
            if dec_state is None:
                self._decoder.reset()
            else:
                self._decoder.setstate(dec_state)
        self._decoded_chars = chars
        self._decoded_chars_used = used
        self._snapshot = snapshot
        self._b2cratio = ratio

    async def _buffer_read(self, n: int, *, one: bool = True) -> bytes:
        before = self._buffer._ios
        data = await (self._buffer.read1(n) if one else self._buffer.read(n))
        if self._buffer._ios != before:
            self._count_ios()
        if self._consumed is not None and data:
            self._consumed.append(data)
        return data

    async def _read_chunk(self) -> bool:
        if self._decoder is None:  # pragma: no cover
            raise ValueError("no decoder")
        dec_buffer = b""
        dec_flags = 0
        if self._telling:
            dec_buffer, dec_flags = self._decoder.getstate()
        input_chunk = await self._buffer_read(_TEXT_CHUNK_SIZE)
        eof = not input_chunk
        decoded_chars = self._decoder.decode(input_chunk, eof)
        self._set_decoded_chars(decoded_chars)
        if decoded_chars:
            self._b2cratio = len(input_chunk) / len(self._decoded_chars)
        else:
            self._b2cratio = 0.0
        if self._telling:
            self._snapshot = (dec_flags, dec_buffer + input_chunk)
        return not eof

    # ---------------------------------------------------------------- reads
    async def read(self, size: int | None = -1) -> str:
        """Read up to ``size`` characters (all, to end of file, if negative or None)."""
        n = _size(size)
        async with self._op():
            self._check_readable()
            decoder = self._decoder or self._get_decoder()
            saved = self._save()
            try:
                if n < 0:
                    data = await self._buffer_read(-1, one=False)
                    result: str = self._get_decoded_chars() + decoder.decode(data, final=True)
                    self._set_decoded_chars("")
                    self._snapshot = None
                    return result
                eof = False
                result = self._get_decoded_chars(n)
                while len(result) < n and not eof:
                    eof = not await self._read_chunk()
                    result += self._get_decoded_chars(n - len(result))
                return result
            except BaseException:
                self._restore(saved)
                raise
            finally:
                self._consumed = None

    async def readline(self, size: int | None = -1) -> str:
        """Read one line, with ``io``'s newline rules; at most ``size`` characters."""
        limit = _size(size)
        async with self._op():
            self._check_readable()
            saved = self._save()
            try:
                return await self._readline(limit)
            except BaseException:
                self._restore(saved)
                raise
            finally:
                self._consumed = None

    async def _readline(self, size: int) -> str:
        line = self._get_decoded_chars()
        start = 0
        if not self._decoder:
            self._get_decoder()
        endpos = 0
        while True:
            if self._readtranslate:
                pos = line.find("\n", start)
                if pos >= 0:
                    endpos = pos + 1
                    break
                start = len(line)
            elif self._readuniversal:
                nlpos = line.find("\n", start)
                crpos = line.find("\r", start)
                if crpos == -1:
                    if nlpos == -1:
                        start = len(line)
                    else:
                        endpos = nlpos + 1
                        break
                elif nlpos == -1:
                    endpos = crpos + 1
                    break
                elif nlpos < crpos:
                    endpos = nlpos + 1
                    break
                elif nlpos == crpos + 1:
                    endpos = crpos + 2
                    break
                else:
                    endpos = crpos + 1
                    break
            else:
                assert self._readnl is not None
                pos = line.find(self._readnl)
                if pos >= 0:
                    endpos = pos + len(self._readnl)
                    break
            if size >= 0 and len(line) >= size:
                endpos = size
                break
            while await self._read_chunk():
                if self._decoded_chars:
                    break
            if self._decoded_chars:
                line += self._get_decoded_chars()
            else:
                self._set_decoded_chars("")
                self._snapshot = None
                return line
        if size >= 0 and endpos > size:
            endpos = size
        self._rewind_decoded_chars(len(line) - endpos)
        return line[:endpos]

    async def readlines(self, hint: int | None = -1) -> list[str]:
        """Read lines until end of file, or until their total length reaches ``hint``."""
        limit = _size(hint)
        async with self._op():
            self._check_readable()
            lines: list[str] = []
            total = 0
            while True:
                saved = self._save()
                try:
                    line = await self._readline(-1)
                except BaseException:
                    self._restore(saved)
                    raise
                finally:
                    self._consumed = None
                if not line:
                    return lines
                lines.append(line)
                total += len(line)
                if 0 < limit <= total:
                    return lines

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    # --------------------------------------------------------------- writes
    async def write(self, s: str) -> int:
        """Write ``s`` (newline-translated, encoded); return ``len(s)``."""
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        async with self._op():
            if not self._buffer._writable:
                raise io.UnsupportedOperation("not writable")
            await self._write(s)
            return len(s)

    async def _write(self, s: str) -> None:
        haslf = (self._writetranslate or self._line_buffering) and "\n" in s
        if haslf and self._writetranslate and self._writenl != "\n":
            s = s.replace("\n", self._writenl)
        encoder = self._encoder or self._get_encoder()
        enc_state = encoder.getstate()
        b = encoder.encode(s)
        before = self._buffer._ios
        try:
            await self._buffer.write(b)
        except BaseException:
            encoder.setstate(enc_state)
            raise
        if self._buffer._ios != before:
            self._count_ios()
        if self._line_buffering and (haslf or "\r" in s):
            await self._buffer.flush()
            self._count_ios()
        self._set_decoded_chars("")
        self._snapshot = None
        if self._decoder:
            self._decoder.reset()

    async def writelines(self, lines: Iterable[str]) -> None:
        """Write every string of ``lines`` (no separators are added)."""
        for line in lines:
            await self.write(line)

    async def flush(self) -> None:
        """Flush the binary layer's write buffer."""
        async with self._op():
            await self._buffer.flush()
            self._count_ios()
            self._telling = self._seekable

    # ---------------------------------------------------------- positioning
    async def tell(self) -> int:
        """An opaque cookie for :meth:`seek` (a byte offset in simple cases), as in ``io``."""
        async with self._op():
            if not self._seekable:
                raise io.UnsupportedOperation("underlying stream is not seekable")
            if not self._telling:  # pragma: no cover
                raise OSError("telling position disabled by next() call")
            await self._buffer.flush()
            self._count_ios()
            return self._tell_cookie()

    def _tell_cookie(self) -> int:
        position = self._buffer._tell()
        decoder = self._decoder
        if decoder is None or self._snapshot is None:
            if self._decoded_chars:  # pragma: no cover
                raise AssertionError("pending decoded text")
            return position
        dec_flags, next_input = self._snapshot
        position -= len(next_input)
        chars_to_skip = self._decoded_chars_used
        if chars_to_skip == 0:
            return _pack_cookie(position, dec_flags)
        saved_state = decoder.getstate()
        try:
            skip_bytes = int(self._b2cratio * chars_to_skip)
            skip_back = 1
            assert skip_bytes <= len(next_input)
            while skip_bytes > 0:
                decoder.setstate((b"", dec_flags))
                n = len(decoder.decode(next_input[:skip_bytes]))
                if n <= chars_to_skip:
                    b, d = decoder.getstate()
                    if not b:
                        dec_flags = d
                        chars_to_skip -= n
                        break
                    skip_bytes -= len(b)
                    skip_back = 1
                else:
                    skip_bytes -= skip_back
                    skip_back = skip_back * 2
            else:
                skip_bytes = 0
                decoder.setstate((b"", dec_flags))
            start_pos = position + skip_bytes
            start_flags = dec_flags
            if chars_to_skip == 0:
                return _pack_cookie(start_pos, start_flags)
            bytes_fed = 0
            need_eof = False
            chars_decoded = 0
            for i in range(skip_bytes, len(next_input)):
                bytes_fed += 1
                chars_decoded += len(decoder.decode(next_input[i : i + 1]))
                dec_buffer, dec_flags = decoder.getstate()
                if not dec_buffer and chars_decoded <= chars_to_skip:
                    start_pos += bytes_fed
                    chars_to_skip -= chars_decoded
                    start_flags, bytes_fed, chars_decoded = dec_flags, 0, 0
                if chars_decoded >= chars_to_skip:
                    break
            else:
                chars_decoded += len(decoder.decode(b"", final=True))
                need_eof = True
                if chars_decoded < chars_to_skip:
                    raise OSError("can't reconstruct logical file position")
            return _pack_cookie(start_pos, start_flags, bytes_fed, need_eof, chars_to_skip)
        finally:
            decoder.setstate(saved_state)

    async def seek(self, cookie: int, whence: int = os.SEEK_SET) -> int:
        """Seek to a :meth:`tell` cookie (or to 0 / the end), as in ``io``."""
        cookie = _index(cookie)
        whence = _index(whence)
        async with self._op():
            return await self._seek(cookie, whence)

    def _reset_encoder(self, position: int) -> None:
        try:
            encoder = self._encoder or self._get_encoder()
        except LookupError:  # pragma: no cover
            return
        if position != 0:
            encoder.setstate(0)
        else:
            encoder.reset()

    async def _seek(self, cookie: int, whence: int) -> int:
        if not self._seekable:
            raise io.UnsupportedOperation("underlying stream is not seekable")
        if whence == os.SEEK_CUR:
            if cookie != 0:
                raise io.UnsupportedOperation("can't do nonzero cur-relative seeks")
            await self._buffer.flush()
            whence = os.SEEK_SET
            cookie = self._tell_cookie()
        elif whence == os.SEEK_END:
            if cookie != 0:
                raise io.UnsupportedOperation("can't do nonzero end-relative seeks")
            await self._buffer.flush()
            position = await self._buffer.seek(0, whence)
            self._count_ios()
            self._set_decoded_chars("")
            self._snapshot = None
            if self._decoder:
                self._decoder.reset()
            self._reset_encoder(position)
            return position
        if whence != os.SEEK_SET:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if cookie < 0:
            raise ValueError(f"negative seek position {cookie}")
        await self._buffer.flush()
        start_pos, dec_flags, bytes_to_feed, need_eof, chars_to_skip = _unpack_cookie(cookie)
        await self._buffer.seek(start_pos)
        self._count_ios()
        self._set_decoded_chars("")
        self._snapshot = None
        if cookie == 0 and self._decoder:
            self._decoder.reset()
        elif self._decoder or dec_flags or chars_to_skip:
            self._decoder = self._decoder or self._get_decoder()
            self._decoder.setstate((b"", dec_flags))
            self._snapshot = (dec_flags, b"")
        if chars_to_skip:
            input_chunk = await self._buffer.read(bytes_to_feed)
            self._set_decoded_chars(self._decoder.decode(input_chunk, need_eof))
            self._snapshot = (dec_flags, input_chunk)
            if len(self._decoded_chars) < chars_to_skip:
                raise OSError("can't restore logical file position")
            self._decoded_chars_used = chars_to_skip
        self._reset_encoder(cookie)
        return cookie

    async def truncate(self, size: int | None = None) -> int:
        """Resize the file to ``size`` (default: the position); the position does not move."""
        async with self._op():
            if not self._buffer._writable:
                raise io.UnsupportedOperation("File not open for writing")
            await self._buffer.flush()
            pos = self._tell_cookie() if size is None else _index(size)
            self._count_ios()
            return await self._buffer.truncate(pos)

    # ------------------------------------------------------------ extras
    async def fsync(self, *, datasync: bool = False) -> None:
        """Flush, then ``IORING_OP_FSYNC``."""
        await self._buffer.fsync(datasync=datasync)

    async def stat(self) -> os.stat_result:
        """``os.fstat`` of the file, through ``IORING_OP_STATX``."""
        return await self._buffer.stat()

    async def pread(self, size: int, offset: int) -> bytes:
        """Bytes at a byte ``offset``, bypassing buffers; see :meth:`AsyncBinaryFile.pread`."""
        return await self._buffer.pread(size, offset)

    async def pwrite(self, data: Buffer, offset: int) -> int:
        """Bytes at a byte ``offset``, bypassing buffers; see :meth:`AsyncBinaryFile.pwrite`."""
        return await self._buffer.pwrite(data, offset)

    async def aclose(self) -> None:
        """Flush and close; shielded from cancellation, like trio's ``aclose``."""
        if self._buffer.closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        await self._buffer.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.aclose()


def _pack_cookie(
    position: int,
    dec_flags: int = 0,
    bytes_to_feed: int = 0,
    need_eof: bool = False,
    chars_to_skip: int = 0,
) -> int:
    return (
        position
        | (dec_flags << 64)
        | (bytes_to_feed << 128)
        | (chars_to_skip << 192)
        | bool(need_eof) << 256
    )


def _unpack_cookie(bigint: int) -> tuple[int, int, int, bool, int]:
    rest, position = divmod(bigint, 1 << 64)
    rest, dec_flags = divmod(rest, 1 << 64)
    rest, bytes_to_feed = divmod(rest, 1 << 64)
    need_eof, chars_to_skip = divmod(rest, 1 << 64)
    return position, dec_flags, bytes_to_feed, bool(need_eof), chars_to_skip


def _index(value: int) -> int:
    try:
        return value.__index__()
    except AttributeError:
        raise TypeError(f"{value!r} is not an integer") from None


def _size(size: int | None) -> int:
    if size is None:
        return -1
    return _index(size)


# ==================================================================== open_file
@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: Literal["r", "w", "a", "x", "r+", "w+", "a+", "x+", "rt", "wt", "at", "xt"] = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Callable[[str | bytes, int], int] | None = None,
) -> AsyncTextFile: ...


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: str,
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Callable[[str | bytes, int], int] | None = None,
) -> AsyncTextFile | AsyncBinaryFile: ...


async def open_file(
    file: StrOrBytesPath | int,
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Callable[[str | bytes, int], int] | None = None,
) -> AsyncTextFile | AsyncBinaryFile:
    """Like :func:`trio.open_file` / :func:`io.open`, with io_uring SQEs instead of threads.

    Same arguments, same validation errors (raised before anything is
    submitted), same modes, encodings and newline handling.  Returns an
    :class:`AsyncTextFile` (text modes) or :class:`AsyncBinaryFile` (binary
    modes), with the async surface of trio's ``AsyncIOWrapper`` plus
    ``pread``/``pwrite``/``fsync``/``stat``.

    The open is ``IORING_OP_OPENAT`` (never resubmitted; if cancellation races
    a successful open the file is closed again before ``Cancelled`` propagates)
    followed by ``IORING_OP_STATX`` on the new fd.  A FIFO blocks until its peer
    opens it, as with ``io.open``: the wait is in a worker thread, and a
    cancelled open raises ``Cancelled`` at once while that thread stays blocked
    until the FIFO gets a peer (see :func:`trio_uring.lowlevel.openat`).
    ``opener``, if given, is a synchronous callable and runs in
    ``trio.to_thread.run_sync``.  Errors are the ``OSError`` subclasses
    ``io.open`` raises, with ``filename`` set.
    """
    spec = _parse_open_args(file, mode, buffering, encoding, errors, newline, closefd)
    name, flags, text, fio_mode, buffering, encoding = spec
    owned = False
    if isinstance(name, int):
        fd = name
    else:
        try:
            if opener is not None:
                path = name
                fd = await trio.to_thread.run_sync(lambda: opener(path, flags | os.O_CLOEXEC))
                if not isinstance(fd, int):
                    raise TypeError(f"expected integer from opener, got {type(fd).__name__}")
                if fd < 0:
                    raise ValueError(f"opener returned {fd}")
            else:
                fd = await _files.openat(name, flags, 0o666)
        except OSError as exc:
            if exc.filename is None:
                raise type(exc)(exc.errno, exc.strerror, name) from None
            raise
        owned = True
    try:
        with trio.CancelScope(shield=owned):
            st = await _files.fstat(fd)
        if stat_module.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
        try:
            position = os.lseek(fd, 0, os.SEEK_END if flags & os.O_APPEND else os.SEEK_CUR)
            seekable = True
        except OSError:
            position = 0
            seekable = False
        line_buffering = False
        if buffering == 1 or (buffering < 0 and os.isatty(fd)):
            buffering = -1
            line_buffering = True
        if buffering < 0:
            buffering = st.st_blksize if st.st_blksize > 1 else _DEFAULT_BUFFER_SIZE
        accmode = flags & os.O_ACCMODE
        binary = AsyncBinaryFile(
            fd,
            name=name,
            mode=fio_mode,
            readable=accmode in (os.O_RDONLY, os.O_RDWR),
            writable=accmode in (os.O_WRONLY, os.O_RDWR),
            append=bool(flags & os.O_APPEND),
            seekable=seekable,
            position=position,
            buffer_size=buffering,
            closefd=closefd,
        )
        binary._direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        if not text:
            result: AsyncBinaryFile | AsyncTextFile = binary
        else:
            assert encoding is not None
            result = AsyncTextFile(binary, encoding, errors, newline, line_buffering, mode)
        # A checkpoint that cannot lose the file: if cancelled here, close it.
        await trio.lowlevel.checkpoint_if_cancelled()
        return result
    except BaseException:
        if owned:
            with trio.CancelScope(shield=True):
                await _files.close(fd)
        raise


def _parse_open_args(
    file: Any,
    mode: Any,
    buffering: Any,
    encoding: Any,
    errors: Any,
    newline: Any,
    closefd: bool,
) -> tuple[str | bytes | int, int, bool, str, int, str | None]:
    """``io.open``'s argument checks (CPython's ``_pyio.open``), before any I/O."""
    if not isinstance(file, int):
        file = os.fspath(file)
    if not isinstance(file, (str, bytes, int)):
        raise TypeError(f"invalid file: {file!r}")
    if not isinstance(mode, str):
        raise TypeError(f"invalid mode: {mode!r}")
    if not isinstance(buffering, int):
        raise TypeError(f"invalid buffering: {buffering!r}")
    if encoding is not None and not isinstance(encoding, str):
        raise TypeError(f"invalid encoding: {encoding!r}")
    if errors is not None and not isinstance(errors, str):
        raise TypeError(f"invalid errors: {errors!r}")
    modes = set(mode)
    if modes - set("axrwb+t") or len(mode) > len(modes):
        raise ValueError(f"invalid mode: {mode!r}")
    creating = "x" in modes
    reading = "r" in modes
    writing = "w" in modes
    appending = "a" in modes
    updating = "+" in modes
    text = "t" in modes
    binary = "b" in modes
    if text and binary:
        raise ValueError("can't have text and binary mode at once")
    if creating + reading + writing + appending > 1:
        raise ValueError("can't have read/write/append mode at once")
    if not (creating or reading or writing or appending):
        raise ValueError("must have exactly one of read/write/append mode")
    if binary and encoding is not None:
        raise ValueError("binary mode doesn't take an encoding argument")
    if binary and errors is not None:
        raise ValueError("binary mode doesn't take an errors argument")
    if binary and newline is not None:
        raise ValueError("binary mode doesn't take a newline argument")
    if binary and buffering == 1:
        import warnings

        warnings.warn(
            "line buffering (buffering=1) isn't supported in binary mode, "
            "the default buffer size will be used",
            RuntimeWarning,
            3,
        )
        buffering = -1
    if buffering == 0 and not binary:
        raise ValueError("can't have unbuffered text I/O")
    if buffering < -1:
        buffering = -1
    if not binary:
        if newline is not None and not isinstance(newline, str):
            raise TypeError(f"illegal newline type: {type(newline)!r}")
        if newline not in (None, "", "\n", "\r", "\r\n"):
            raise ValueError(f"illegal newline value: {newline!r}")
        encoding = io.text_encoding(encoding, 3)
        if encoding == "locale":
            import locale

            getencoding = getattr(locale, "getencoding", None)
            encoding = getencoding() if getencoding else locale.getpreferredencoding(False)
        if not codecs.lookup(encoding)._is_text_encoding:
            raise LookupError(
                f"{encoding!r} is not a text encoding; use codecs.open() to handle arbitrary codecs"
            )
        if errors is not None:
            codecs.lookup_error(errors)
    if not isinstance(file, int) and not closefd:
        raise ValueError("Cannot use closefd=False with file name")
    if isinstance(file, int) and file < 0:
        raise ValueError("negative file descriptor")
    readable = reading or updating
    writable = writing or creating or appending or updating
    flags = os.O_RDWR if readable and writable else (os.O_WRONLY if writable else os.O_RDONLY)
    if creating:
        flags |= os.O_EXCL | os.O_CREAT
    if writing:
        flags |= os.O_CREAT | os.O_TRUNC
    if appending:
        flags |= os.O_APPEND | os.O_CREAT
    if creating:
        fio_mode = "xb+" if readable else "xb"
    elif appending:
        fio_mode = "ab+" if readable else "ab"
    elif readable:
        fio_mode = "rb+" if writable else "rb"
    else:
        fio_mode = "wb"
    return file, flags, not binary, fio_mode, buffering, encoding
