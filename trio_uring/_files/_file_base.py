"""What the file objects of :func:`trio_uring.open_file` share.

* :class:`ClosedFileError`, raised by every method of a closed file.
* :class:`FileCall`, the frame of every public buffered method
  (``async with self._call():``).  One task at a time uses a file's buffers: a
  ``trio.Lock`` per layer, so concurrent calls queue like ``io``'s internal
  lock makes threads queue.  :meth:`AsyncBinaryFile.pread` /
  :meth:`AsyncBinaryFile.pwrite` do not use it, so many tasks can have them in
  flight at once.
* :func:`as_index` / :func:`as_size`: integer arguments checked as ``io`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["ClosedFileError", "FileBase", "FileCall", "as_index", "as_size", "closed_error"]


class ClosedFileError(trio.ClosedResourceError, ValueError):
    """A file object was used after (or while) being closed.

    Both a :class:`trio.ClosedResourceError` and a :class:`ValueError` (what
    :mod:`io` raises), so code written for either keeps working.
    """


def closed_error() -> ClosedFileError:
    """The error a method raises on a closed file (the message is ``io``'s)."""
    return ClosedFileError("I/O operation on closed file.")


class FileCall:
    """``async with self._call():`` - the frame of every public buffered method of a file.

    Checkpoint on entry (raise if already cancelled), take the file's lock,
    check it is open; on a clean exit without any kernel I/O, a
    cancel-shielded checkpoint, so every call is a full trio checkpoint.
    """

    __slots__ = ("file", "ios")

    def __init__(self, file: FileBase) -> None:
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
            raise closed_error()

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


class FileBase:
    """The state :class:`FileCall` uses: the lock, the closed flag, the kernel I/O count."""

    _lock: trio.Lock
    _closed: bool
    _ios: int

    def _call(self) -> FileCall:
        return FileCall(self)


def as_index(value: int) -> int:
    """``value.__index__()``; ``TypeError`` for anything that is not an integer."""
    try:
        return value.__index__()
    except AttributeError:
        raise TypeError(f"{value!r} is not an integer") from None


def as_size(size: int | None) -> int:
    """A size argument: ``None`` means ``-1`` (all); otherwise :func:`as_index`."""
    if size is None:
        return -1
    return as_index(size)
