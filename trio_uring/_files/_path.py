"""Whole-file helpers and ``trio_uring.Path``: ``stat``/``read_*``/``write_*`` as io_uring SQEs.

:class:`Path` is a :class:`trio.Path` whose ``open``, ``stat``, ``lstat``,
``read_bytes``, ``read_text``, ``write_bytes`` and ``write_text`` go through
the ring (``OPENAT``, ``STATX``, ``READ``, ``WRITE``, ``CLOSE``) instead of a
worker thread; every other method is trio's (a thread).  The module functions
do the same for any path-like.

Cancellation: ``stat`` has no side effect.  A cancelled ``read_*`` returns
nothing and leaves nothing open.  A cancelled ``write_*`` may have created or
truncated the file and written part of the data, as a cancelled
``trio.Path.write_bytes`` would; the file is always closed.
"""

from __future__ import annotations

import io
import os
import pathlib
from typing import TYPE_CHECKING, ClassVar

import trio

from .._ops import _files
from ._binary_file import AsyncBinaryFile
from ._open_file import open_file
from ._text_file import AsyncTextFile

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from .._ops._files import StrOrBytesPath

__all__ = ["Path", "read_bytes", "read_text", "stat", "write_bytes", "write_text"]


async def stat(path: StrOrBytesPath, *, follow_symlinks: bool = True) -> os.stat_result:
    """``os.stat`` through ``IORING_OP_STATX`` (``follow_symlinks=False``: ``os.lstat``)."""
    flags = 0 if follow_symlinks else _files.AT_SYMLINK_NOFOLLOW
    try:
        return await _files.statx(path, flags=flags)
    except OSError as exc:
        if exc.filename is None:
            raise type(exc)(exc.errno, exc.strerror, os.fspath(path)) from None
        raise


async def read_bytes(path: StrOrBytesPath) -> bytes:
    """The whole file, like :meth:`pathlib.Path.read_bytes`."""
    f = await open_file(path, "rb")
    assert isinstance(f, AsyncBinaryFile)
    async with f:
        return await f.read()


async def read_text(
    path: StrOrBytesPath, encoding: str | None = None, errors: str | None = None
) -> str:
    """The whole file decoded, like :meth:`pathlib.Path.read_text` (universal newlines)."""
    encoding = io.text_encoding(encoding)
    f = await open_file(path, "r", encoding=encoding, errors=errors)
    assert isinstance(f, AsyncTextFile)
    async with f:
        return await f.read()


async def write_bytes(path: StrOrBytesPath, data: Buffer) -> int:
    """Replace the file's contents with ``data``, like :meth:`pathlib.Path.write_bytes`."""
    view = memoryview(data)  # TypeError for str, as pathlib
    f = await open_file(path, "wb")
    assert isinstance(f, AsyncBinaryFile)
    async with f:
        return await f.write(view)


async def write_text(
    path: StrOrBytesPath,
    data: str,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
) -> int:
    """Replace the file's contents with ``data`` encoded, like :meth:`pathlib.Path.write_text`."""
    if not isinstance(data, str):
        raise TypeError(f"data must be str, not {data.__class__.__name__}")
    encoding = io.text_encoding(encoding)
    f = await open_file(path, "w", encoding=encoding, errors=errors, newline=newline)
    assert isinstance(f, AsyncTextFile)
    async with f:
        return await f.write(data)


class Path(trio.Path, pathlib.PurePosixPath):
    """A :class:`trio.Path` whose file I/O and ``stat`` are io_uring SQEs.

    ``open``, ``stat``, ``lstat``, ``read_bytes``, ``read_text``, ``write_bytes`` and
    ``write_text`` go through the ring (``OPENAT``, ``STATX``, ``READ``, ``WRITE``,
    ``CLOSE``) instead of a worker thread; every other method is :class:`trio.Path`'s
    (a thread).  Cancellation: ``stat`` has no side effect; a cancelled ``read_*``
    returns nothing and leaves nothing open; a cancelled ``write_*`` may have created
    or truncated the file and written part of the data, as a cancelled
    :meth:`trio.Path.write_bytes` would, and the file is always closed.
    """

    __slots__ = ()

    _wrapped_cls: ClassVar[type[pathlib.Path]] = pathlib.PosixPath

    async def open(  # type: ignore[override]
        self,
        mode: str = "r",
        buffering: int = -1,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> AsyncTextFile | AsyncBinaryFile:
        """:func:`trio_uring.open_file` on this path."""
        return await open_file(self, mode, buffering, encoding, errors, newline)

    async def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        """``os.stat`` through ``IORING_OP_STATX``."""
        return await stat(self, follow_symlinks=follow_symlinks)

    async def lstat(self) -> os.stat_result:
        """``os.lstat`` through ``IORING_OP_STATX``."""
        return await stat(self, follow_symlinks=False)

    async def read_bytes(self) -> bytes:
        """The whole file (SQEs, no thread)."""
        return await read_bytes(self)

    async def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        """The whole file decoded (SQEs, no thread)."""
        return await read_text(self, encoding, errors)

    async def write_bytes(self, data: Buffer) -> int:
        """Replace the contents with ``data`` (SQEs, no thread)."""
        return await write_bytes(self, data)

    async def write_text(
        self,
        data: str,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> int:
        """Replace the contents with ``data`` encoded (SQEs, no thread)."""
        return await write_text(self, data, encoding, errors, newline)
