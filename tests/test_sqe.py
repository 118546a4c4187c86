"""The SQE builders (``trio_uring/_core/_sqe.py``): where each argument goes, which
operations may be linked to a timeout, and that the kernel reads them as meant."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import trio

from trio_uring._core import _sqe
from trio_uring._core._constants import IOSQE_BUFFER_SELECT, Op
from trio_uring._core._ring_cffi import ffi
from trio_uring.lowlevel import current_manager

FIELDS = ("opcode", "sqe_flags", "fd", "off", "addr", "len", "op_flags", "buf_index",
          "file_index", "ioprio")  # fmt: skip


def fields(sqe: _sqe.Sqe) -> dict[str, object]:
    return dict(zip(FIELDS, sqe, strict=True))


def test_each_opcode_puts_its_arguments_where_the_kernel_reads_them() -> None:
    # splice: the input fd in splice_fd_in, the input offset in addr, the output in fd/off
    s = fields(_sqe.splice(3, 10, 4, -1, 100, 0))
    assert (s["fd"], s["file_index"], s["len"]) == (4, 3, 100)
    assert s["off"] == _sqe.CURRENT_POSITION and _sqe._addr_int(s["addr"]) == 10
    # accept: the address length pointer in off; shutdown: how in len
    assert fields(_sqe.accept(5, ffi.NULL, 1234, 0))["off"] == 1234
    assert fields(_sqe.shutdown(5, socket.SHUT_WR))["len"] == socket.SHUT_WR
    # ftruncate: the length in off; openat: flags in op_flags, mode in len
    assert fields(_sqe.ftruncate(5, 4096))["off"] == 4096
    o = fields(_sqe.openat(-100, ffi.NULL, os.O_RDONLY | os.O_CLOEXEC, 0o644))
    assert (o["op_flags"], o["len"]) == (os.O_RDONLY | os.O_CLOEXEC, 0o644)
    # a negative file offset is the kernel's u64 -1 ("the current position")
    assert fields(_sqe.read(5, 10, -1))["off"] == (1 << 64) - 1
    # a provided-buffer receive names the group in buf_index and asks the kernel to pick
    r = fields(_sqe.recv_select(5, 10, 7))
    assert (r["sqe_flags"], r["buf_index"]) == (IOSQE_BUFFER_SELECT, 7)
    assert all(
        len(sqe) == len(FIELDS) for sqe in (_sqe.close(5), _sqe.fsync(5), _sqe.poll_add(5, 1))
    )


def test_restartable_applies_the_op_table_and_the_position_rule() -> None:
    assert _sqe.restartable(_sqe.recv(5, 10))
    assert _sqe.restartable(_sqe.read(5, 10, 0))
    assert not _sqe.restartable(_sqe.read(5, 10, -1))  # at the file position: never
    assert not _sqe.restartable(_sqe.splice(3, -1, 4, 0, 10, 0))
    assert _sqe.restartable(_sqe.splice(3, 0, 4, 0, 10, 0))
    assert not _sqe.restartable(_sqe.connect(5, ffi.NULL, 16))  # a second connect: EALREADY
    assert not _sqe.restartable(_sqe.close(5))
    assert int(Op.SEND_ZC) not in _sqe.RESTARTABLE


async def test_the_kernel_reads_a_file_sqe_as_built(tmp_path: Path) -> None:
    """write at an offset, read at an offset, ftruncate's length in ``off``: a real file."""
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    manager = current_manager()
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        assert await manager.perform(_sqe.write(fd, -1, 4), buffer=b"WXYZ") == 4
        buf = bytearray(6)
        assert await manager.perform(_sqe.read(fd, -1, 2), buffer=buf, writable=True) == 6
        assert buf == b"23WXYZ"
        if manager.supports(Op.FTRUNCATE):
            assert await manager.perform(_sqe.ftruncate(fd, 3)) == 0
            assert os.fstat(fd).st_size == 3
    finally:
        os.close(fd)


async def test_the_kernel_reads_a_shutdown_sqe_as_built() -> None:
    a, b = socket.socketpair()
    with a, b:
        manager = current_manager()
        assert await manager.perform(_sqe.shutdown(a.fileno(), socket.SHUT_WR)) == 0
        assert b.recv(10) == b""  # the peer sees the end of the stream
        a.setblocking(False)
        with pytest.raises(BlockingIOError):
            a.recv(10)  # reading was not shut down
        await trio.lowlevel.checkpoint()
