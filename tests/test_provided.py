"""Provided-buffer rings (``trio_uring/_ops/_provided.py``) on a real ring and real sockets."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from tests._pairs import Pair
from trio_uring._core._kernels import PBUF_STATUS
from trio_uring._ops import _provided
from trio_uring.lowlevel import current_manager

pytestmark = pytest.mark.needs_kernel("IORING_REGISTER_PBUF_RING")

GROUP = 0x7402


async def test_a_receive_takes_a_buffer_only_when_data_arrives(pair: Pair) -> None:
    a, b = pair
    manager = current_manager()
    ring = _provided.BufferRing(manager, GROUP, entries=4, size=16)
    try:
        got: list[bytes | None] = []

        async def receiver() -> None:
            got.append(await _provided.recv(manager, ring, b.fileno(), 100, 0))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            await trio.testing.wait_all_tasks_blocked()
            if manager.ring.has(PBUF_STATUS):
                assert ring.available(manager) == 4  # waiting holds no buffer
            a.send(b"hello, provided buffers")
        # at most one buffer's worth, copied out; the buffer is given back at once
        assert got == [b"hello, provided buffers"[:16]]
        if manager.ring.has(PBUF_STATUS):
            assert ring.available(manager) == 4
        assert b.recv(100) == b"hello, provided buffers"[16:]
    finally:
        ring.unregister(manager)


async def test_end_of_stream_gives_the_buffer_back() -> None:
    a, b = socket.socketpair()
    with a, b:
        manager = current_manager()
        ring = _provided.BufferRing(manager, GROUP, entries=2, size=32)
        try:
            a.shutdown(socket.SHUT_WR)
            assert await _provided.recv(manager, ring, b.fileno(), 32, 0) == b""
            if manager.ring.has(PBUF_STATUS):
                assert ring.available(manager) == 2
        finally:
            ring.unregister(manager)


async def test_an_empty_ring_is_none_not_an_error() -> None:
    a, b = socket.socketpair()
    with a, b:
        manager = current_manager()
        ring = _provided.BufferRing(manager, GROUP, entries=1, size=8)
        try:
            a.send(b"12345678abcdefgh")
            # The first receive takes the ring's only buffer ... and gives it back.
            assert await _provided.recv(manager, ring, b.fileno(), 8, 0) == b"12345678"
            assert await _provided.recv(manager, ring, b.fileno(), 8, 0) == b"abcdefgh"
        finally:
            ring.unregister(manager)


async def test_the_ring_size_must_be_a_power_of_two() -> None:
    for entries in (0, 3, 65536):
        with pytest.raises(ValueError, match="power of two"):
            _provided.BufferRing(current_manager(), GROUP, entries=entries, size=8)


async def test_a_cancelled_receive_loses_no_data(pair: Pair) -> None:
    """Cancelled after the kernel has it: data that arrived anyway is returned."""
    a, b = pair
    manager = current_manager()
    ring = _provided.BufferRing(manager, GROUP, entries=2, size=64)
    try:
        got: list[bytes | None] = []
        scope = trio.CancelScope()

        async def receiver() -> None:
            with scope:
                got.append(await _provided.recv(manager, ring, b.fileno(), 64, 0))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
        assert got == [] and scope.cancelled_caught
        a.send(b"after")
        assert b.recv(10) == b"after"  # the cancelled receive took nothing
    finally:
        ring.unregister(manager)
