"""``trio_uring.AsyncBinaryFile`` (trio_uring/_files/_binary_file.py).

The comparison tests run the same body against ``trio.open_file`` (see
tests/_against_trio.py); the tests after them are io_uring-only: pread/pwrite
queue depth, cancellation, closing, ``O_DIRECT``.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests._against_trio import Opener, both
from tests.conftest import assert_idle
from trio_uring import ClosedFileError, open_file


async def test_binary_read_methods(tmp_path: Path) -> None:
    p = tmp_path / "data.bin"
    payload = bytes(range(256)) * 300 + b"\nline two\nline three"
    p.write_bytes(payload)

    async def body(op: Opener) -> list[Any]:
        out: list[Any] = []
        async with await op(p, "rb") as f:
            out.append(await f.read(10))
            out.append(await f.tell())
            out.append(len(await f.read1(5)))
            buf = bytearray(1000)
            out.append(await f.readinto(buf))
            out.append(bytes(buf))
            out.append(await f.readline())
            out.append(await f.readline(3))
            out.append(await f.seek(-20, os.SEEK_END))
            out.append(await f.readlines())
            out.append(await f.read())
            out.append(await f.seek(5))
            out.append(await f.seek(10, os.SEEK_CUR))
            out.append(await f.read(70000))
            out.append(await f.tell())
            out.append(await f.seek(0))
            out.append(await f.read())
            out.append(await f.read(5))
            out.append((f.name, f.mode, f.closed, f.readable(), f.writable(), f.seekable()))
            out.append(await f.seek(0))
            out.append([line async for line in f])
        out.append(f.closed)
        return out

    got = await both(body)
    assert got[-1] is True
    assert got[15] == payload


@pytest.mark.parametrize("buffering", [0, -1, 7, 100000])
async def test_binary_buffering_sizes(tmp_path: Path, buffering: int) -> None:
    p = tmp_path / "data.bin"
    p.write_bytes(b"abc\ndef\n" * 5000)

    async def body(op: Opener) -> list[Any]:
        async with await op(p, "rb", buffering=buffering) as f:
            out = [await f.read(3), await f.readline(), await f.tell()]
            out.append(len(await f.read(20000)))
            out.append(await f.tell())
            out.append(len(await f.read()))
            out.append(await f.read(1))
            return out

    await both(body)


@pytest.mark.parametrize("mode", ["wb", "ab", "xb", "wb+", "ab+", "rb+", "xb+"])
async def test_binary_write_modes(tmp_path: Path, mode: str) -> None:
    async def body(op: Opener) -> list[Any]:
        p = tmp_path / f"{op.__module__}.bin"
        p.unlink(missing_ok=True)
        if "r" in mode or "a" in mode:
            p.write_bytes(b"0123456789")
        out: list[Any] = []
        async with await op(p, mode) as f:
            out.append(f.mode)
            out.append(await f.tell())
            out.append(await f.write(b"hello"))
            out.append(await f.write(memoryview(b"x" * 20000)))
            await f.writelines([b"a", bytearray(b"b"), b"c\n"])
            out.append(await f.tell())
            if "+" in mode:
                out.append(await f.seek(3))
                out.append(await f.read(4))
                out.append(await f.write(b"WXYZ"))
                out.append(await f.tell())
            await f.flush()
            out.append(p.read_bytes())
            if "a" not in mode:
                out.append(await f.truncate(50))
                out.append(await f.tell())
                out.append(await f.truncate())
        out.append(p.read_bytes())
        return out

    await both(body)


async def test_unbuffered_write_and_read_back(tmp_path: Path) -> None:
    async def body(op: Opener) -> list[Any]:
        p = tmp_path / f"{op.__module__}.bin"
        async with await op(p, "wb+", buffering=0) as f:
            out = [await f.write(b"abcdef"), await f.tell(), await f.seek(2), await f.read(2)]
            out.append(await f.write(b"ZZ"))
            out.append(await f.seek(0))
            out.append(await f.read())
        out.append(p.read_bytes())
        return out

    assert (await both(body))[-1] == b"abcdZZ"


async def test_ebadf_when_fd_closed_behind_our_back(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"data")

    async def body(op: Opener) -> Any:
        f = await op(p, "rb")
        os.close(f.fileno())
        try:
            await f.read()
        except OSError as exc:
            result = exc.errno
        try:
            await f.aclose()
        except OSError:
            pass
        return result

    assert await both(body) == errno.EBADF


async def test_dev_zero_and_dev_null() -> None:
    async def body(op: Opener) -> list[Any]:
        async with await op("/dev/zero", "rb") as f:
            out: list[Any] = [await f.read(100000), f.seekable()]
        async with await op("/dev/null", "wb") as f:
            out.append(await f.write(b"x" * 100000))
            await f.flush()
        async with await op("/dev/null", "r") as f:
            out.append(await f.read())
        return out

    got = await both(body)
    assert got[0] == bytes(100000)


async def test_pipes() -> None:
    async def body(op: Opener) -> list[Any]:
        r, w = os.pipe()
        async with await op(r, "rb") as rf, await op(w, "wb") as wf:
            out: list[Any] = [await wf.write(b"line1\nline2\nrest")]
            await wf.flush()
            out.append(await rf.readline())
            out.append(await rf.read(3))
            try:
                await rf.tell()
            except OSError as exc:
                out.append(exc.errno)
            try:
                await rf.seek(0)
            except io.UnsupportedOperation:
                out.append("unsupported")
            await wf.aclose()
            out.append(await rf.read())
        return out

    assert await both(body) == [16, b"line1\n", b"lin", errno.ESPIPE, "unsupported", b"e2\nrest"]


async def test_enospc_on_full_tmpfs(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:

        async def body(op: Opener) -> list[Any]:
            out: list[Any] = []
            f = await op(mnt / "big", "wb")
            try:
                await f.write(b"x" * 200_000)
                await f.flush()
            except OSError as exc:
                out.append(exc.errno)
            # after a partial write the position counts exactly the bytes written
            out.append(await f.tell() == os.stat(mnt / "big").st_size)
            try:
                await f.aclose()
            except OSError as exc:
                out.append(exc.errno)
            out.append(f.closed)
            (mnt / "big").unlink()
            return out

        got = await both(body)
        assert got[0] == errno.ENOSPC
        assert got[1] is True
        assert got[-1] is True
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


async def test_64_concurrent_preads(tmp_path: Path) -> None:
    p = tmp_path / "big"
    block = 4096
    payload = os.urandom(block * 64)
    p.write_bytes(payload)
    results: dict[int, bytes] = {}
    async with await open_file(p, "rb") as f:
        peak = 0

        async def one(i: int) -> None:
            results[i] = await f.pread(block, i * block)

        async def watch() -> None:
            nonlocal peak
            from trio_uring.lowlevel import current_manager

            await trio.testing.wait_all_tasks_blocked()
            peak = current_manager().statistics().operations_in_flight

        async with trio.open_nursery() as nursery:
            for i in reversed(range(64)):
                nursery.start_soon(one, i)
            nursery.start_soon(watch)
    assert b"".join(results[i] for i in range(64)) == payload
    assert peak >= 1
    await assert_idle()


async def test_many_concurrent_pwrites(tmp_path: Path) -> None:
    p = tmp_path / "out"
    chunks = [os.urandom(1000 + i) for i in range(100)]
    offsets = [sum(len(c) for c in chunks[:i]) for i in range(100)]
    async with await open_file(p, "wb") as f:
        async with trio.open_nursery() as nursery:
            for c, off in zip(chunks, offsets, strict=True):
                nursery.start_soon(f.pwrite, c, off)
    assert p.read_bytes() == b"".join(chunks)
    async with await open_file(p, "rb") as f:
        assert await f.pread(10, offsets[50]) == chunks[50][:10]
        with pytest.raises(ValueError):
            await f.pread(10, -1)
        with pytest.raises(io.UnsupportedOperation):
            await f.pwrite(b"x", 0)


async def test_cancelled_pipe_read_loses_nothing() -> None:
    r, w = os.pipe()
    async with await open_file(r, "rb") as f:
        with trio.move_on_after(0.01) as scope:
            await f.read(10)
        assert scope.cancelled_caught
        os.write(w, b"0123456789")
        assert await f.read(10) == b"0123456789"
    os.close(w)
    await assert_idle()


async def test_cancelled_read_keeps_position(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"0123456789" * 1000)
    async with await open_file(p, "rb") as f:
        await f.read(5)
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await f.read(20000)
        assert await f.tell() == 5
        assert await f.read(5) == b"56789"


async def test_cancelled_buffered_write_accepts_nothing(tmp_path: Path) -> None:
    p = tmp_path / "f"
    async with await open_file(p, "wb") as f:
        await f.write(b"kept")
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await f.write(b"dropped")
        assert await f.tell() == 4
    assert p.read_bytes() == b"kept"


async def test_aclose_wakes_pending_read_and_is_shielded() -> None:
    r, w = os.pipe()
    f = await open_file(r, "rb")
    errors: list[BaseException] = []

    async def reader() -> None:
        try:
            await f.read(10)
        except trio.ClosedResourceError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await f.aclose()
    assert f.closed
    assert len(errors) == 1 and isinstance(errors[0], ClosedFileError)
    with pytest.raises(OSError):
        os.fstat(r)
    os.close(w)
    await assert_idle()


async def test_o_direct_via_opener(tmp_path: Path) -> None:
    p = tmp_path / "direct"
    data = os.urandom(8192)
    p.write_bytes(data)

    def opener(path: str | bytes, flags: int) -> int:
        return os.open(path, flags | os.O_DIRECT)

    try:
        f = await open_file(p, "rb", buffering=0, opener=opener)
    except OSError as exc:
        pytest.skip(f"O_DIRECT unsupported on {tmp_path}: {exc}")
    async with f:
        buf = mmap.mmap(-1, 4096)
        with memoryview(buf) as view:
            assert await f.readinto(view) == 4096
            assert bytes(view) == data[:4096]
        assert await f.pread(4096, 4096) == data[4096:]
        buf.close()
