"""Registered (fixed) buffers against real files and sockets."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_uring._ops._registered import read_fixed, register_buffers, write_fixed


async def test_write_then_read_fixed(tmp_path: Path) -> None:
    bufs = [bytearray(4096) for _ in range(4)]
    bufs[1][:5] = b"hello"
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with register_buffers(bufs) as reg:
            assert await write_fixed(fd, reg, 1, 5, offset=10) == 5
            assert await read_fixed(fd, reg, 2, 5, offset=10) == 5
            assert bytes(reg[2][:5]) == b"hello"
            with pytest.raises(BufferError):
                bufs[2].extend(b"x")  # pinned while registered
        bufs[2].extend(b"x")  # released after unregister
        assert bufs[2][:5] == b"hello"
    finally:
        os.close(fd)


async def test_bad_use() -> None:
    with register_buffers([bytearray(16)]) as reg:
        with pytest.raises(trio.BusyResourceError):
            register_buffers([bytearray(16)])
        with pytest.raises(IndexError):
            await read_fixed(0, reg, 5)
        with pytest.raises(ValueError):
            await read_fixed(0, reg, 0, 17)
    with pytest.raises(trio.ClosedResourceError):
        await read_fixed(0, reg, 0)
    with pytest.raises(TypeError):
        register_buffers([b"read-only bytes"])
    good = bytearray(16)
    with pytest.raises(TypeError) as info:
        register_buffers([good, b"read-only bytes"])
    # The buffer exported before the bad one is free again, even while the
    # traceback (and so the half-built object) is still alive.
    good.extend(b"!")
    del info
    with pytest.raises(ValueError):
        register_buffers([])


async def test_unregister_refused_while_in_flight() -> None:
    a, b = socket.socketpair()
    with a, b:
        reg = register_buffers([bytearray(16)])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_fixed, a.fileno(), reg, 0)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                reg.unregister()
            b.send(b"data")
        assert bytes(reg[0][:4]) == b"data"
        reg.unregister()
        reg.unregister()  # idempotent
