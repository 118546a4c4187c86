"""Low-level fd operations (``trio_uring._ops._files``) against the real kernel."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.conftest import assert_idle
from trio_uring._ops import _files as fdops
from trio_uring.lowlevel import current_manager


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    p = tmp_path / "data.bin"
    p.write_bytes(bytes(range(256)) * 64)  # 16 KiB
    return p


async def test_read_at_offset_and_position(data_file: Path) -> None:
    fd = os.open(data_file, os.O_RDONLY)
    try:
        with trio.testing.assert_checkpoints():
            assert await fdops.read(fd, 10, 250) == bytes(range(250, 256)) + bytes(range(4))
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # explicit offset: position untouched
        assert await fdops.read(fd, 3) == b"\0\1\2"
        assert os.lseek(fd, 0, os.SEEK_CUR) == 3  # offset -1: position advanced
        assert await fdops.read(fd, 100, 1 << 20) == b""  # past EOF
        assert await fdops.read(fd, 0, 0) == b""
    finally:
        os.close(fd)
    await assert_idle()


async def test_readinto_and_write(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        assert await fdops.write(fd, b"hello world", 0) == 11
        assert await fdops.write(fd, memoryview(b"HELLO"), 0) == 5
        buf = bytearray(20)
        assert await fdops.readinto(fd, buf, 0) == 11
        assert bytes(buf[:11]) == b"HELLO world"
        view = memoryview(buf)[2:6]
        assert await fdops.readinto(fd, view, 6) == 4
        assert bytes(buf[:6]) == b"HEworl"
        # current-position write then read
        assert await fdops.write(fd, b"abc") == 3
        assert os.lseek(fd, 0, os.SEEK_CUR) == 3
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"abcLO world"


async def test_pipe_read_write_current_position() -> None:
    r, w = os.pipe()
    try:
        async with trio.open_nursery() as nursery:
            got: list[bytes] = []

            async def reader() -> None:
                got.append(await fdops.read(r, 100))

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            assert await fdops.write(w, b"ping") == 4
        assert got == [b"ping"]
        # Unlike os.pread (ESPIPE), io_uring ignores the offset of a pipe.
        os.write(w, b"abcdef")
        assert await fdops.read(r, 3, 2) == b"abc"
        assert await fdops.write(w, b"xyz", 7) == 3
        assert os.read(r, 100) == b"defxyz"
    finally:
        os.close(r)
        os.close(w)


async def test_cancelled_pipe_read_reads_nothing() -> None:
    r, w = os.pipe()
    try:
        with trio.move_on_after(0.01) as scope:
            await fdops.read(r, 10)
        assert scope.cancelled_caught
        os.write(w, b"after")
        assert os.read(r, 10) == b"after"  # the cancelled read consumed nothing
    finally:
        os.close(r)
        os.close(w)
    await assert_idle()


async def test_openat_close_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "new.txt"
    fd = await fdops.openat(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    assert not os.get_inheritable(fd)
    assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o640 & ~_umask()
    await fdops.close(fd)
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF
    with pytest.raises(FileExistsError):
        await fdops.openat(str(p).encode(), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with pytest.raises(FileNotFoundError):
        await fdops.openat(tmp_path / "missing", os.O_RDONLY)
    with pytest.raises(IsADirectoryError):
        await fdops.openat(tmp_path, os.O_WRONLY)
    # dir_fd relative open
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = await fdops.openat("new.txt", os.O_RDONLY, dir_fd=dfd)
        assert os.path.samestat(os.fstat(fd), os.stat(p))
        await fdops.close(fd)
    finally:
        os.close(dfd)
    with pytest.raises(OSError) as info:
        await fdops.close(fd)
    assert info.value.errno == errno.EBADF


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


async def test_close_is_shielded_and_wakes_pending_ops() -> None:
    r, w = os.pipe()
    try:
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await fdops.close(w)
        with pytest.raises(OSError):
            os.fstat(w)  # closed despite the cancellation
        w = -1
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)

    r, w = os.pipe()
    errors: list[BaseException] = []

    async def reader() -> None:
        try:
            await fdops.read(r, 10)
        except trio.ClosedResourceError as exc:
            errors.append(exc)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            await fdops.close(r)
    finally:
        os.close(w)
    assert len(errors) == 1
    await assert_idle()


async def test_fsync_and_ftruncate(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"x" * 100)
        await fdops.fsync(fd)
        await fdops.fsync(fd, datasync=True)
        await fdops.ftruncate(fd, 10)
        assert os.fstat(fd).st_size == 10
    finally:
        os.close(fd)
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        await fdops.fsync(w)
    assert info.value.errno == errno.EBADF


async def test_statx_matches_os_stat(data_file: Path, tmp_path: Path) -> None:
    for path in (data_file, tmp_path, "/dev/null"):
        got = await fdops.statx(path)
        want = os.stat(path)
        assert tuple(got) == tuple(want)
        for field in (
            "st_atime_ns",
            "st_mtime_ns",
            "st_ctime_ns",
            "st_blksize",
            "st_blocks",
            "st_rdev",
            "st_dev",
            "st_mtime",
        ):
            assert getattr(got, field) == getattr(want, field), field
    link = tmp_path / "link"
    link.symlink_to(data_file)
    assert (await fdops.statx(link, flags=fdops.AT_SYMLINK_NOFOLLOW)) == os.lstat(link)
    assert (await fdops.statx(link)).st_ino == os.stat(data_file).st_ino
    fd = os.open(data_file, os.O_RDONLY)
    try:
        assert await fdops.fstat(fd) == os.fstat(fd)
    finally:
        os.close(fd)
    with pytest.raises(FileNotFoundError):
        await fdops.statx(tmp_path / "nope")


async def test_splice_file_to_pipe(data_file: Path) -> None:
    fd = os.open(data_file, os.O_RDONLY)
    r, w = os.pipe()
    try:
        assert await fdops.splice(fd, 100, w, -1, 50) == 50
        assert os.read(r, 100) == (bytes(range(256)) * 2)[100:150]
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
        os.write(w, b"spliced!")
        out = os.open(data_file.with_name("out"), os.O_RDWR | os.O_CREAT)
        try:
            assert await fdops.splice(r, -1, out, 4, 8) == 8
            assert os.pread(out, 20, 0) == b"\0\0\0\0spliced!"
        finally:
            os.close(out)
    finally:
        for x in (fd, r, w):
            os.close(x)


async def test_bad_arguments_raise_before_submitting() -> None:
    before = current_manager().statistics().sqes_submitted
    with pytest.raises(TypeError):
        await fdops.read("3", 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await fdops.read(0, -1)
    with pytest.raises(ValueError):
        await fdops.read(0, 1, -2)
    with pytest.raises(TypeError):
        await fdops.readinto(0, b"readonly")
    with pytest.raises(TypeError):
        await fdops.write(0, "text")  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        await fdops.write(1 << 40, b"x")
    with pytest.raises(ValueError, match="null byte"):
        await fdops.openat("a\0b", os.O_RDONLY)
    with pytest.raises(TypeError):
        await fdops.openat(3.5, os.O_RDONLY)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await fdops.statx(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await fdops.splice(0, -3, 1, -1, 10)
    assert current_manager().statistics().sqes_submitted == before


async def test_ebadf_from_the_cqe() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    for coro in (fdops.read(r, 1), fdops.write(w, b"x"), fdops.readinto(r, bytearray(1))):
        with pytest.raises(OSError) as info:
            await coro
        assert info.value.errno == errno.EBADF


async def test_thread_fallback_outside_uring(tmp_path: Path) -> None:
    """In a plain trio.run (epoll), the same calls work through threads."""
    p = tmp_path / "f"

    async def main() -> bytes:
        fd = await fdops.openat(p, os.O_RDWR | os.O_CREAT)
        try:
            await fdops.write(fd, b"threaded", 0)
            await fdops.fsync(fd)
            assert (await fdops.fstat(fd)).st_size == 8
            return await fdops.read(fd, 100, 0)
        finally:
            await fdops.close(fd)

    import trio_uring

    def run_plain() -> bytes:
        trio_uring.uninstall()
        try:
            return trio.run(main)
        finally:
            trio_uring.install()

    assert await trio.to_thread.run_sync(run_plain) == b"threaded"
