"""What every file object shares (trio_uring/_files/_file_base.py).

The closed error, the checkpoint of every call, and one task at a time on a
file's buffers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests._against_trio import Opener, both
from trio_uring import open_file


async def test_operations_after_close(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"data")

    async def body(op: Opener) -> list[Any]:
        f = await op(p, "rb+")
        await f.aclose()
        await f.aclose()  # idempotent
        out: list[Any] = [f.closed]
        for call in (
            f.read,
            f.readline,
            lambda: f.write(b"x"),
            f.tell,
            lambda: f.seek(0),
            f.flush,
            f.truncate,
        ):
            try:
                await call()
            except ValueError as exc:
                out.append(type(exc).__mro__[-3:])
        with pytest.raises(ValueError):
            f.fileno()
        return out

    got = await both(body)
    assert len(got) == 8
    f = await open_file(p, "rb")
    await f.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await f.read()


async def test_buffered_ops_are_checkpoints(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_text("a\nb\nc\n")
    async with await open_file(p) as f:
        with trio.testing.assert_checkpoints():
            await f.readline()
        with trio.testing.assert_checkpoints():
            await f.readline()  # served from the buffer: still a checkpoint
        with trio.testing.assert_checkpoints():
            await f.tell()


async def test_concurrent_buffered_reads_are_serialised(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"".join(b"%05d\n" % i for i in range(2000)))
    lines: list[bytes] = []
    async with await open_file(p, "rb") as f:

        async def reader() -> None:
            while line := await f.readline():
                lines.append(line)

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(reader)
    assert sorted(lines) == [b"%05d\n" % i for i in range(2000)]
