"""The binary layer of :func:`trio_uring.open_file`: :class:`AsyncBinaryFile`.

* It owns the file position.  Every read and write on a seekable file is an
  SQE at an explicit offset (``IORING_OP_READ`` / ``IORING_OP_WRITE``); the
  kernel's own file position is never used, except under ``O_APPEND`` (writes
  at offset -1 append, and ``os.lseek`` reads the new end back) and for
  non-seekable files (pipes, ttys), where offset -1 is the only choice.
  fsync, truncate, stat and closing are SQEs too (``FSYNC``, ``FTRUNCATE``,
  ``STATX``, ``CLOSE``).
* It buffers like :class:`io.BufferedRandom`: a read-ahead buffer holding the
  bytes at ``[pos, pos + len)`` and a write buffer holding the bytes that end
  at ``pos``.  Data read from the kernel goes into the read-ahead buffer
  *before* the next await and is consumed only after the last one, so a
  cancelled read never loses data or moves the position: it either raises
  ``Cancelled`` with the position unchanged, or returns its data.
* :meth:`AsyncBinaryFile.pread` / :meth:`AsyncBinaryFile.pwrite` bypass the
  buffers and the lock, so many tasks can have operations in flight at once.

See docs/files.rst.
"""

from __future__ import annotations

import contextlib
import errno
import io
import mmap
import os
from typing import TYPE_CHECKING

import trio

from .._ops import _files
from ._file_base import FileBase, as_index, as_size, closed_error

if TYPE_CHECKING:
    from collections.abc import Iterable

    from typing_extensions import Buffer, Self

__all__ = ["DEFAULT_BUFFER_SIZE", "AsyncBinaryFile"]

DEFAULT_BUFFER_SIZE = io.DEFAULT_BUFFER_SIZE
"""The buffer size when the file's ``st_blksize`` gives none (as in ``io``)."""


class AsyncBinaryFile(FileBase):
    """A binary file whose I/O is io_uring SQEs; the async surface of ``io.BufferedRandom``.

    Returned by :func:`open_file` in binary modes.  Methods mirror
    :func:`trio.wrap_file`'s asynchronous file object over a buffered (or, with
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
        self._bufsize = buffer_size if buffer_size > 0 else DEFAULT_BUFFER_SIZE
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
        """Whether the file is closed (:meth:`aclose` ran, or is running)."""
        return self._closed

    @property
    def closefd(self) -> bool:
        """Whether closing the file closes its file descriptor (:func:`open`'s ``closefd``)."""
        return self._closefd

    def fileno(self) -> int:
        """The file descriptor; ``ValueError`` (:class:`ClosedFileError`) once closed."""
        if self._closed:
            raise closed_error()
        return self._fd

    def readable(self) -> bool:
        """Whether the file was opened for reading."""
        if self._closed:
            raise closed_error()
        return self._readable

    def writable(self) -> bool:
        """Whether the file was opened for writing."""
        if self._closed:
            raise closed_error()
        return self._writable

    def seekable(self) -> bool:
        """Whether the file supports ``seek`` (False for pipes, sockets, terminals)."""
        if self._closed:
            raise closed_error()
        return self._seekable

    def isatty(self) -> bool:
        """Whether the file descriptor is a terminal."""
        if self._closed:
            raise closed_error()
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
            raise closed_error() from None
        self._rbuf += data
        return len(data)

    async def _kwrite(self, data: Buffer, offset: int) -> int:
        self._ios += 1
        try:
            n = await self._sys_write(data, offset)
        except trio.ClosedResourceError:
            raise closed_error() from None
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
        n = as_size(size)
        async with self._call():
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
                    raise closed_error() from None
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
        async with self._call():
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
        n = as_size(size)
        async with self._call():
            await self._prepare_read()
            if n < 0:
                n = self._bufsize
            if not self._rbuf and n:
                await self._kread(max(n, self._bufsize))
            return self._take(n)

    async def peek(self, size: int = 0) -> bytes:
        """The buffered bytes (after at most one kernel read), without consuming them."""
        async with self._call():
            await self._prepare_read()
            if not self._rbuf:
                await self._kread(self._bufsize)
            return bytes(self._rbuf)

    async def readinto(self, buffer: Buffer) -> int:
        """Read into ``buffer``; return the byte count (like :meth:`read`, ``len(buffer)``)."""
        # Exported for the whole call, as io's readinto holds it: a concurrent resize
        # fails (BufferError) instead of making the read land outside the buffer.
        with memoryview(buffer) as raw:
            if raw.readonly:
                raise TypeError("readinto() argument must be read-write bytes-like object")
            with raw.cast("B") as view:
                data = await self.read(view.nbytes)
                view[: len(data)] = data
        return len(data)

    async def readinto1(self, buffer: Buffer) -> int:
        """Like :meth:`readinto` with at most one kernel read."""
        with memoryview(buffer) as raw:
            if raw.readonly:
                raise TypeError("readinto1() argument must be read-write bytes-like object")
            with raw.cast("B") as view:
                data = await self.read1(view.nbytes)
                view[: len(data)] = data
        return len(data)

    async def readline(self, size: int | None = -1) -> bytes:
        """Read one line (up to and including ``b"\\n"``), at most ``size`` bytes."""
        limit = as_size(size)
        async with self._call():
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
        limit = as_size(hint)
        async with self._call():
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
        """Write ``data``; return ``len(data)`` (buffered) or the count written (``buffering=0``).

        ``data`` stays exported from the start of the call (before it waits for
        the file) to its end, as ``io``'s writers hold it: another task that
        resizes a ``bytearray`` meanwhile gets ``BufferError``, and exactly the
        bytes ``data`` had when the call started are written.
        """
        with memoryview(data) as raw, raw.cast("B") as view:
            async with self._call():
                self._prepare_write()
                return await self._write(view)

    async def _write(self, view: memoryview) -> int:
        """:meth:`write` of the flat, exported ``view``, under the file's lock."""
        n = view.nbytes
        if self._raw:
            if self._wbuf:
                await self._flush_wbuf()
            written = await self._kwrite(view, self._write_offset(0) if n else -1)
            self._pos += written
            self._after_append()
            return written
        if len(self._wbuf) + n <= self._bufsize:
            self._wbuf += view
            self._pos += n
            return n
        await self._flush_wbuf()  # Cancelled here: ``data`` was not accepted
        if n < self._bufsize:
            self._wbuf += view
            self._pos += n
            return n
        await self._write_direct(view, n)
        return n

    async def _write_direct(self, view: memoryview, n: int) -> None:
        # Every slice of ``view`` is released on the way out, also when a write raises:
        # a slice kept alive by the traceback would keep the caller's buffer exported.
        done = await self._kwrite(view, self._pos if self._seekable and not self._append else -1)
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
        """Write every item of ``lines`` (no separators are added), as one call.

        ``lines`` is consumed and every item exported when the call starts, and
        held to its end (see :meth:`write`); the items are written in order
        under the file's lock, so no other task's write comes between them.
        """
        with contextlib.ExitStack() as stack:
            views = []
            for line in lines:
                raw = stack.enter_context(memoryview(line))
                views.append(stack.enter_context(raw.cast("B")))
            async with self._call():
                self._prepare_write()
                for view in views:
                    await self._write(view)

    async def flush(self) -> None:
        """Write the buffered data.  Cancelled: what was not written stays buffered."""
        async with self._call():
            if self._wbuf:
                await self._flush_wbuf()

    # ---------------------------------------------------------- positioning
    async def tell(self) -> int:
        """The logical position (``OSError(ESPIPE)`` for pipes, like ``io``)."""
        async with self._call():
            if not self._seekable:
                raise OSError(errno.ESPIPE, os.strerror(errno.ESPIPE))
            return self._pos

    async def seek(self, target: int, whence: int = os.SEEK_SET) -> int:
        """Move the logical position; ``SEEK_END`` stats the file (``IORING_OP_STATX``)."""
        target = as_index(target)
        whence = as_index(whence)
        if whence not in (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END):
            raise ValueError(f"whence value {whence} unsupported")
        async with self._call():
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
        async with self._call():
            if not self._writable:
                raise io.UnsupportedOperation("File not open for writing")
            if self._wbuf:
                await self._flush_wbuf()
            new = self._pos if size is None else as_index(size)
            if new < 0:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            self._ios += 1
            await _files.ftruncate(self._fd, new)
            self._rbuf.clear()
            return new

    # ------------------------------------------------------- extras / sync
    async def fsync(self, *, datasync: bool = False) -> None:
        """Flush the buffer, then ``IORING_OP_FSYNC`` (``datasync``: fdatasync)."""
        async with self._call():
            if self._wbuf:
                await self._flush_wbuf()
            self._ios += 1
            await _files.fsync(self._fd, datasync=datasync)

    async def stat(self) -> os.stat_result:
        """``os.fstat`` of the file, through ``IORING_OP_STATX``."""
        async with self._call():
            self._ios += 1
            return await _files.fstat(self._fd)

    async def pread(self, size: int, offset: int) -> bytes:
        """Read up to ``size`` bytes at ``offset``, bypassing the buffers and the position.

        Any number of tasks can have ``pread``/``pwrite`` calls in flight on one
        file at once (real queue depth).  Short only at end of file.  Call
        :meth:`flush` first if you also use buffered writes.  Cancelled: nothing
        was read (``Cancelled``) or the data is returned.
        """
        size = as_index(size)
        offset = as_index(offset)
        if offset < 0:
            raise ValueError(f"negative offset: {offset}")
        if self._closed:
            raise closed_error()
        if not self._readable:
            raise io.UnsupportedOperation("read")
        try:
            return await self._sys_read(size, offset)
        except trio.ClosedResourceError:
            raise closed_error() from None

    async def pwrite(self, data: Buffer, offset: int) -> int:
        """Write all of ``data`` at ``offset``, bypassing the buffers; return ``len(data)``.

        Concurrent calls run in parallel.  Under ``O_APPEND`` Linux appends and
        ignores ``offset``.  Cancelled before the kernel started: nothing was
        written; once started, the rest is written shielded.
        """
        offset = as_index(offset)  # (user code: before ``data`` is measured)
        if offset < 0:
            raise ValueError(f"negative offset: {offset}")
        if self._closed:
            raise closed_error()
        if not self._writable:
            raise io.UnsupportedOperation("write")
        # One export for the whole call; every view of it is released on the way out.
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
                raise closed_error() from None
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
        """Not supported: raises :exc:`io.UnsupportedOperation` (the file owns its descriptor)."""
        raise io.UnsupportedOperation("detach")
