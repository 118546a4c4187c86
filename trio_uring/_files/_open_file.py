"""``trio_uring.open_file``: ``io.open``'s argument checks, then ``OPENAT`` and the file objects.

The arguments are checked before anything is submitted (:func:`_parse_open_args`,
CPython's ``_pyio.open``); the open is ``IORING_OP_OPENAT`` and
``IORING_OP_STATX``; the result is an :class:`~trio_uring.AsyncBinaryFile`,
wrapped in an :class:`~trio_uring.AsyncTextFile` in text modes.
"""

from __future__ import annotations

import codecs
import errno
import fcntl
import io
import os
import stat as stat_module
from typing import TYPE_CHECKING, Any, Literal, overload

import trio

from .._ops import _files
from ._binary_file import DEFAULT_BUFFER_SIZE, AsyncBinaryFile
from ._text_file import AsyncTextFile

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._ops._files import StrOrBytesPath

__all__ = ["open_file"]


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
            buffering = st.st_blksize if st.st_blksize > 1 else DEFAULT_BUFFER_SIZE
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
