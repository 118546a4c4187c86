"""The text layer of :func:`trio_uring.open_file`: :class:`AsyncTextFile` and its ``tell()`` cookies.

A port of CPython's ``_pyio.TextIOWrapper`` (the reference implementation of
``io.TextIOWrapper``) with awaits where it calls the binary layer
(:class:`~trio_uring.AsyncBinaryFile`): the same incremental codecs,
``io.IncrementalNewlineDecoder``, BOM handling and opaque ``tell()`` cookies.
A cancelled text read puts the bytes it consumed back into the binary layer
and restores the decoder, so it loses nothing.  See docs/files.rst.
"""

from __future__ import annotations

import codecs
import io
import os
from typing import TYPE_CHECKING, Any

import trio

from ._file_base import FileBase, as_index, as_size

if TYPE_CHECKING:
    from collections.abc import Iterable

    from typing_extensions import Buffer, Self

    from ._binary_file import AsyncBinaryFile

__all__ = ["AsyncTextFile"]

_TEXT_CHUNK_SIZE = 8192


class AsyncTextFile(FileBase):
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
        """The :class:`AsyncBinaryFile` under this text file."""
        return self._buffer

    @property
    def name(self) -> str | bytes | int:
        """The path (or file descriptor) the file was opened with."""
        return self._buffer.name

    @property
    def closed(self) -> bool:
        """Whether the file is closed."""
        return self._buffer.closed

    @property
    def closefd(self) -> bool:
        """Whether closing the file closes its file descriptor (:func:`open`'s ``closefd``)."""
        return self._buffer.closefd

    @property
    def encoding(self) -> str:
        """The encoding text is decoded and encoded with."""
        return self._encoding

    @property
    def errors(self) -> str:
        """The encoding's error handler (``"strict"``, ``"replace"``, ...)."""
        return self._errors

    @property
    def line_buffering(self) -> bool:
        """Whether a write that contains a newline flushes (as :class:`io.TextIOWrapper`)."""
        return self._line_buffering

    @property
    def newlines(self) -> str | tuple[str, ...] | None:
        """The newlines read so far (as :attr:`io.TextIOBase.newlines`), or None."""
        newlines: str | tuple[str, ...] | None = getattr(self._decoder, "newlines", None)
        return newlines

    def fileno(self) -> int:
        """The file descriptor; ``ValueError`` (:class:`ClosedFileError`) once closed."""
        return self._buffer.fileno()

    def readable(self) -> bool:
        """Whether the file was opened for reading."""
        return self._buffer.readable()

    def writable(self) -> bool:
        """Whether the file was opened for writing."""
        return self._buffer.writable()

    def seekable(self) -> bool:
        """Whether the file supports ``seek`` (False for pipes, sockets, terminals)."""
        return self._buffer.seekable()

    def isatty(self) -> bool:
        """Whether the file descriptor is a terminal."""
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
        n = as_size(size)
        async with self._call():
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
        limit = as_size(size)
        async with self._call():
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
        limit = as_size(hint)
        async with self._call():
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
        async with self._call():
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
        async with self._call():
            await self._buffer.flush()
            self._count_ios()
            self._telling = self._seekable

    # ---------------------------------------------------------- positioning
    async def tell(self) -> int:
        """An opaque cookie for :meth:`seek` (a byte offset in simple cases), as in ``io``."""
        async with self._call():
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
        cookie = as_index(cookie)
        whence = as_index(whence)
        async with self._call():
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
        async with self._call():
            if not self._buffer._writable:
                raise io.UnsupportedOperation("File not open for writing")
            await self._buffer.flush()
            pos = self._tell_cookie() if size is None else as_index(size)
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
