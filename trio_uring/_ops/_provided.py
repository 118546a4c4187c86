"""Provided-buffer rings (``IORING_REGISTER_PBUF_RING``) for multishot receives.

A :class:`BufferRing` is a ring of ``entries`` buffers of ``size`` bytes each in
one anonymous, page-aligned ``mmap``, registered under a buffer-group id.  A
multishot ``IORING_OP_RECV`` with ``IOSQE_BUFFER_SELECT`` picks a buffer only
when data arrives, so an idle connection holds no buffer.  The CQE names the
buffer (``cqe->flags >> 16``); :meth:`BufferRing.take` copies the data out and
gives the buffer back to the kernel at once, inside ``process_events``.  So a
buffer is lent to the kernel, filled, copied and returned within one loop tick,
and the ring only has to cover the receives of one tick.

The kernel reads the ring tail (a ``u16`` aliasing ``bufs[0].resv``) with an
acquire load, so the entry must be visible before the new tail: the C part's
``tu_pbuf_give`` writes the entry and publishes the tail with a release store,
in one call per buffer.  The ring's address, its buffers and our tail live in a
small C struct (``tu_pbuf``), so that call takes two arguments: each cffi
argument costs ~50-100 ns here.

The mmap is referenced by every operation that may write into it (``op.keep``),
so it stays mapped while any of them is in flight, even after a run closed
(see ``UringIOManager.close``).
"""

from __future__ import annotations

import errno
import mmap
import struct
import weakref
from typing import TYPE_CHECKING, Final

from .._core import _sqe, _trio_compat
from .._core._constants import (
    CQE_BUFFER_SHIFT,
    CQE_F_BUFFER,
    REGISTER_PBUF_RING,
    REGISTER_PBUF_STATUS,
    UNREGISTER_PBUF_RING,
)
from .._core._operation import Operation
from .._core._ring import ext
from .._core._ring_cffi import ffi, lib

if TYPE_CHECKING:
    from .._core._manager import UringIOManager
    from .._core._ring import Ring

#: Buffers per ring and bytes per buffer for the streams' shared ring.
DEFAULT_ENTRIES: Final = 1024
DEFAULT_BUFFER_SIZE: Final = 4096
#: Buffer-group id of the streams' shared ring (one per manager).
STREAM_GROUP: Final = 0x7475  # "tu"

_ENOBUFS: Final = errno.ENOBUFS
_give: Final = lib.tu_pbuf_give
#: The ring extension's copy-out-and-give-back (None: a slice of the mmap, then ``_give``).
_ext_take: Final = None if ext is None else ext.take


class BufferRing:
    """One registered provided-buffer ring.  Use :func:`stream_ring` for the shared one."""

    __slots__ = (
        "_addr",
        "_boxed",
        "_data_off",
        "_pb",
        "bgid",
        "entries",
        "mask",
        "mem",
        "size",
    )

    def __init__(self, manager: UringIOManager, bgid: int, entries: int, size: int) -> None:
        if entries < 1 or entries & (entries - 1) or entries > 32768:
            raise ValueError("entries must be a power of two <= 32768")
        self.bgid = bgid
        self.entries = entries
        self.mask = entries - 1
        self.size = size
        ring_bytes = max(entries * 16, mmap.PAGESIZE)  # struct io_uring_buf: 16 bytes
        # One mapping: the ring (page-aligned) followed by the buffers.
        self.mem = mmap.mmap(-1, ring_bytes + entries * size)
        base = ffi.from_buffer(self.mem)
        ring_addr = int(ffi.cast("uintptr_t", base))
        ffi.release(base)  # the address stays valid while self.mem is mapped
        self._addr = ring_addr + ring_bytes
        self._data_off = ring_bytes
        # The ring's C-side state: where it is, its buffers, and our tail.
        self._pb = ffi.new("tu_pbuf *", (ring_addr, self._addr, self.mask, size, 0))
        #: (tu_pbuf address, buffers' address, size) for the ring extension's take,
        #: boxed once.
        self._boxed: tuple[object, object, object] = (
            int(ffi.cast("uintptr_t", self._pb)),
            self._addr,
            size,
        )
        reg = bytearray(40)  # struct io_uring_buf_reg
        struct.pack_into("<QIHH", reg, 0, ring_addr, entries, bgid, 0)
        rc = manager.register(REGISTER_PBUF_RING, ffi.from_buffer(reg), 1)
        if rc < 0:
            self.mem.close()
            raise OSError(-rc, "IORING_REGISTER_PBUF_RING failed")
        for bid in range(entries):
            self.recycle(bid)

    def recycle(self, bid: int) -> None:
        """Give buffer ``bid`` back to the kernel."""
        _give(self._pb, bid)

    def take(self, bid: int, nbytes: int) -> bytes:
        """Copy ``nbytes`` out of buffer ``bid`` and give the buffer back to the kernel."""
        if _ext_take is not None:
            pb, base, size = self._boxed
            data: bytes = _ext_take(pb, base, size, bid, nbytes)
            return data
        off = self._data_off + bid * self.size
        copied = self.mem[off : off + nbytes]
        _give(self._pb, bid)
        return copied

    def data(self, res: int, flags: int) -> bytes | None:
        """What a receive's CQE (``res``, ``flags``) carries in one of this ring's buffers,
        copied out, the buffer given back; ``None`` if the CQE names no buffer.

        The one place a CQE's buffer goes back to the kernel: with the data, or at
        once when the receive got nothing (``res <= 0``, which gives ``b""``).
        """
        if not flags & CQE_F_BUFFER:
            return None
        bid = flags >> CQE_BUFFER_SHIFT
        if res > 0:
            return self.take(bid, res)
        self.recycle(bid)
        return b""

    def available(self, manager: UringIOManager) -> int:
        """Buffers the kernel may still pick (``IORING_REGISTER_PBUF_STATUS``, Linux 6.8)."""
        status = bytearray(40)  # struct io_uring_buf_status {u32 buf_group; u32 head; u32 resv[8]}
        struct.pack_into("<I", status, 0, self.bgid)
        rc = manager.register(REGISTER_PBUF_STATUS, ffi.from_buffer(status), 1)
        if rc < 0:
            raise OSError(-rc, "IORING_REGISTER_PBUF_STATUS failed")
        head: int = struct.unpack_from("<I", status, 4)[0]
        tail: int = self._pb.tail
        return (tail - head) & 0xFFFF

    def unregister(self, manager: UringIOManager) -> None:
        """Unregister the group (the memory stays mapped until this object dies)."""
        reg = bytearray(40)
        struct.pack_into("<QIH", reg, 0, 0, 0, self.bgid)
        manager.register(UNREGISTER_PBUF_RING, ffi.from_buffer(reg), 1)


class SelectedRecv(Operation):
    """A one-shot ``IORING_OP_RECV`` into a buffer of a :class:`BufferRing` (see :func:`recv`).

    The kernel picks the buffer only when data arrives; the CQE's data is copied out
    and the buffer given back inside ``process_events``, so the waiter finds it in
    :attr:`data` and no buffer is held while the receive waits.
    """

    __slots__ = ("data", "ring")

    def __init__(self, manager: UringIOManager, ring: BufferRing) -> None:
        super().__init__(manager)
        self.ring = ring
        self.data = b""

    def on_cqe(self, res: int, flags: int) -> None:
        data = self.ring.data(res, flags)
        if data is not None:
            self.data = data
        Operation.on_cqe(self, res, flags)


async def recv(
    manager: UringIOManager, ring: BufferRing, fd: int, nbytes: int, flags: int
) -> bytes | None:
    """Receive up to ``min(nbytes, ring.size)`` bytes from stream socket ``fd`` into a buffer
    of ``ring``, picked only when data arrives: a receive that waits holds no memory.

    Returns the data (``b""`` at end of file), or ``None`` if the ring had no free
    buffer (``ENOBUFS``: nothing was received; the caller receives another way).
    Not for datagrams (a datagram longer than a buffer would be cut) nor
    ``MSG_WAITALL`` (the kernel ignores it with a provided buffer).  Cancellation and
    errors are :meth:`UringIOManager.perform`'s: data that arrived while the receive
    was being cancelled is returned, never lost.
    """
    op = SelectedRecv(manager, ring)
    try:
        await manager.perform(_sqe.recv_select(fd, nbytes, ring.bgid, flags), keep=ring, op=op)
    except OSError as exc:
        if exc.errno == _ENOBUFS:
            return None
        raise
    return op.data


# Per manager (keyed by its Ring: a compiled manager has no weak references):
# the streams' ring, or None if the kernel refused it.
_stream_rings: weakref.WeakKeyDictionary[Ring, BufferRing | None] = weakref.WeakKeyDictionary()


def stream_ring(manager: UringIOManager) -> BufferRing | None:
    """The manager's shared ring for stream receives, set up on first use.

    ``None`` if multishot receive is unavailable: a kernel without
    ``IORING_REGISTER_PBUF_RING`` (5.19) or multishot recv (6.0) (see
    ``trio_uring._core._kernels``), a refused registration (e.g. ``RLIMIT_MEMLOCK``).
    """
    try:
        return _stream_rings[manager.ring]
    except KeyError:
        pass
    ring: BufferRing | None = None
    from .._core._constants import Op
    from .._core._kernels import MULTISHOT_RECV, PBUF_RING

    kernel = manager.ring
    if kernel.has(PBUF_RING) and kernel.has(MULTISHOT_RECV) and manager.supports(Op.RECV):
        try:
            ring = BufferRing(manager, STREAM_GROUP, DEFAULT_ENTRIES, DEFAULT_BUFFER_SIZE)
        except OSError:
            ring = None
    _stream_rings[manager.ring] = ring
    return ring


# Its frame is live between writing the SQE and parking (see _trio_compat.ki_protect).
_trio_compat.ki_protect(recv)
