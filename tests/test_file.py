"""``trio_uring.open_file`` against ``trio.open_file``: same data, same exceptions.

Every comparison test runs the same body against both implementations
(``opener`` fixture) and checks what it observed; the tests below the
comparisons are io_uring-only (pread/pwrite queue depth, cancellation, closing).
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import assert_idle
from trio_uring._file import AsyncBinaryFile, AsyncTextFile, ClosedFileError, open_file

Opener = Callable[..., Awaitable[Any]]

TEXT = "first line\nsecond\r\nthird\rfourth\n\nünïcødé ✓ line\nlast without newline"


@pytest.fixture(params=["trio", "trio_uring"])
def impl(request: pytest.FixtureRequest) -> Opener:
    if request.param == "trio":
        return trio.open_file  # type: ignore[return-value]
    return open_file


async def both(body: Callable[[Opener], Awaitable[Any]]) -> Any:
    """Run ``body`` against both implementations; return what they both returned."""
    want = await body(trio.open_file)
    got = await body(open_file)
    assert got == want
    return got


def _outcome(exc: BaseException | None) -> tuple[Any, ...]:
    if exc is None:
        return ("ok",)
    return (type(exc), getattr(exc, "errno", None), getattr(exc, "filename", None))


# ------------------------------------------------------------ binary reads
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


# ----------------------------------------------------------- binary writes
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


# -------------------------------------------------------------------- text
@pytest.mark.parametrize("newline", [None, "", "\n", "\r", "\r\n"])
async def test_text_read_newlines(tmp_path: Path, newline: str | None) -> None:
    p = tmp_path / "t.txt"
    p.write_bytes(TEXT.encode())

    async def body(op: Opener) -> list[Any]:
        async with await op(p, newline=newline, encoding="utf-8") as f:
            out: list[Any] = [await f.read(7), await f.readline()]
            cookie = await f.tell()
            out.append(await f.readline(4))
            out.append(await f.readlines())
            out.append(await f.seek(cookie))
            out.append(await f.read(12))
            out.append(f.newlines)
            out.append(await f.seek(0))
            out.append([line async for line in f])
            out.append(await f.seek(0))
            out.append(await f.read())
            out.append((f.name, f.mode, f.encoding, f.errors, f.line_buffering))
            return out

    await both(body)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "latin-1", "utf-32-be"])
@pytest.mark.parametrize("newline", [None, "", "\r\n"])
async def test_text_write_and_reread(tmp_path: Path, encoding: str, newline: str | None) -> None:
    text = "héllo\nwörld\r\nend" if encoding != "latin-1" else "hello\nworld\r\nend"

    async def body(op: Opener) -> list[Any]:
        p = tmp_path / f"{op.__module__}.txt"
        async with await op(p, "w", encoding=encoding, newline=newline) as f:
            out: list[Any] = [await f.write(text), await f.tell()]
            await f.writelines(["a\n", "b"])
        out.append(p.read_bytes())
        async with await op(p, "a", encoding=encoding, newline=newline) as f:
            out.append(await f.write("+more\n"))  # no second BOM
        out.append(p.read_bytes())
        async with await op(p, "r+", encoding=encoding, newline=newline) as f:
            out.append(await f.read(3))
            cookie = await f.tell()
            out.append(await f.read(4))
            out.append(await f.seek(cookie))
            out.append(await f.read(4))
            out.append(await f.seek(0, os.SEEK_END))
            out.append(await f.write("tail"))
            out.append(await f.seek(0))
            out.append(await f.read())
        return out

    await both(body)


async def test_text_errors_and_decoding_failure(tmp_path: Path) -> None:
    p = tmp_path / "bad.txt"
    p.write_bytes(b"ok\xff\xfe bytes\n")

    async def body(op: Opener) -> list[Any]:
        out: list[Any] = []
        async with await op(p, encoding="utf-8", errors="replace") as f:
            out.append(await f.read())
        async with await op(p, encoding="utf-8") as f:
            try:
                await f.read()
            except UnicodeDecodeError as exc:
                out.append((type(exc), exc.reason))
        async with await op(p, "a", encoding="ascii") as f:
            try:
                await f.write("é")
            except UnicodeEncodeError as exc:
                out.append(type(exc))
        return out

    assert len(await both(body)) == 3


# ------------------------------------------------------------------ errors
async def test_open_errors_match(tmp_path: Path) -> None:
    (tmp_path / "exists").write_text("x")
    cases: list[tuple[Any, ...]] = [
        (tmp_path / "missing", "r"),
        (tmp_path, "r"),
        (tmp_path, "wb"),
        (tmp_path / "exists", "x"),
        (tmp_path / "exists" / "sub", "r"),
        (str(tmp_path / "missing").encode(), "rb"),
    ]

    async def body(op: Opener) -> list[Any]:
        out = []
        for args in cases:
            try:
                f = await op(*args)
            except BaseException as exc:
                out.append(_outcome(exc))
            else:
                await f.aclose()
                out.append(_outcome(None))
        return out

    got = await both(body)
    assert [g[0] for g in got] == [
        FileNotFoundError,
        IsADirectoryError,
        IsADirectoryError,
        FileExistsError,
        NotADirectoryError,
        FileNotFoundError,
    ]


async def test_eacces_matches(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root bypasses file permissions; sysfs refuses to open a write-only
        # attribute for reading even to root.
        p = Path("/sys/bus/pci/rescan")
        if not p.exists():
            pytest.skip("running as root and no write-only sysfs attribute to provoke EACCES")
    else:
        p = tmp_path / "secret"
        p.write_text("x")
        p.chmod(0)

    async def body(op: Opener) -> Any:
        try:
            f = await op(p, "rb")
        except OSError as exc:
            return _outcome(exc)
        await f.aclose()
        return None

    assert await both(body) == (PermissionError, errno.EACCES, str(p))


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("rw",), {}),
        (("rb",), {"encoding": "utf-8"}),
        (("rb",), {"newline": ""}),
        (("rb",), {"errors": "strict"}),
        (("r",), {"buffering": 0}),
        (("w",), {"newline": "x"}),
        (("w",), {"newline": 5}),
        (("w",), {"encoding": "no-such-codec"}),
        (("w",), {"encoding": "hex"}),
        ((5,), {}),
        (("w",), {"closefd": False}),
        (("rt+b",), {}),
        (("",), {}),
    ],
)
async def test_bad_arguments_match_and_create_nothing(
    tmp_path: Path, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    p = tmp_path / "never"
    reading = isinstance(args[0], str) and "r" in args[0] and "+" not in args[0]
    if reading:
        p.write_text("exists")  # io opens before checking some arguments

    async def body(op: Opener) -> Any:
        try:
            f = await op(p, *args, **kwargs)
        except Exception as exc:
            return type(exc)
        await f.aclose()
        return None

    got = await body(open_file)
    assert got is not None
    assert p.exists() == reading  # trio_uring checked before opening: nothing created
    want = await body(trio.open_file)
    assert got == want


async def test_bad_file_argument_types() -> None:
    for op in (trio.open_file, open_file):
        with pytest.raises(TypeError):
            await op(3.5)  # type: ignore[call-overload]
        with pytest.raises(TypeError):
            await op(None)  # type: ignore[call-overload]


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


async def test_wrong_direction_raises_unsupported(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"data")

    async def body(op: Opener) -> list[Any]:
        out: list[Any] = []
        for mode, call in (
            ("rb", lambda f: f.write(b"x")),
            ("wb", lambda f: f.read()),
            ("r", lambda f: f.write("x")),
            ("a", lambda f: f.read()),
            ("rb", lambda f: f.truncate()),
            ("r", lambda f: f.truncate()),
        ):
            async with await op(p, mode) as f:
                try:
                    await call(f)
                except io.UnsupportedOperation as exc:
                    out.append((mode, type(exc)))
        return out

    assert len(await both(body)) == 6


async def test_text_write_type_error(tmp_path: Path) -> None:
    async def body(op: Opener) -> Any:
        async with await op(tmp_path / "f", "w") as f:
            try:
                await f.write(b"bytes")
            except TypeError:
                return TypeError
        return None

    assert await both(body) is TypeError


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


async def test_open_fd_and_closefd_false(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"0123456789")

    async def body(op: Opener) -> list[Any]:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.lseek(fd, 2, os.SEEK_SET)
            async with await op(fd, "rb", closefd=False) as f:
                out = [f.name == fd, await f.tell(), await f.read(3)]
            out.append(os.lseek(fd, 0, os.SEEK_CUR) >= 5)
            os.fstat(fd)  # still open
        finally:
            os.close(fd)
        return out

    assert await both(body) == [True, 2, b"234", True]


# ------------------------------------------------------- special files
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


# ======================================================== io_uring-only
async def test_returns_uring_file_objects(tmp_path: Path) -> None:
    async with await open_file(tmp_path / "f", "w") as t:
        assert isinstance(t, AsyncTextFile)
        assert isinstance(t.buffer, AsyncBinaryFile)
    async with await open_file(tmp_path / "f", "rb") as b:
        assert isinstance(b, AsyncBinaryFile)


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


async def test_cancelled_text_readline_loses_nothing() -> None:
    r, w = os.pipe()
    async with await open_file(r, "r", encoding="utf-8") as f:
        os.write(w, "abc é".encode()[:-1])  # half of a two-byte character
        with trio.move_on_after(0.02) as scope:
            await f.readline()
        assert scope.cancelled_caught
        os.write(w, "é".encode()[-1:] + b"def\nnext\n")
        assert await f.readline() == "abc édef\n"
        assert await f.readline() == "next\n"
    os.close(w)


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


# ------------------------------------------------------------------- Path
async def test_path_functions_match_trio_path(tmp_path: Path) -> None:
    from trio_uring._path import Path as UringPath

    async def body(cls: Any) -> list[Any]:
        p = cls(tmp_path / f"{cls.__module__}.txt")
        out: list[Any] = [await p.write_text("héllo\r\nworld\n", encoding="utf-8")]
        out.append(await p.read_text(encoding="utf-8"))
        out.append(await p.read_bytes())
        out.append(await p.write_bytes(bytearray(b"\0\1\2")))
        out.append(await p.read_bytes())
        st = await p.stat()
        out.append((st.st_size, st.st_mode))
        out.append(isinstance(p.parent, cls))
        for call in (lambda: p.write_bytes("str"), lambda: p.write_text(b"bytes")):
            try:
                await call()
            except TypeError as exc:
                out.append(type(exc))
        missing = cls(tmp_path / "missing")
        for call in (missing.stat, missing.read_bytes, missing.read_text):
            try:
                await call()
            except OSError as exc:
                out.append((type(exc), exc.errno, exc.filename))
        async with await p.open("rb") as f:
            out.append(await f.read())
        return out

    want = await body(trio.Path)
    got = await body(UringPath)
    assert got == want
    link = UringPath(tmp_path / "link")
    await link.symlink_to(tmp_path / "missing")
    assert (await link.lstat()).st_size == len(str(tmp_path / "missing"))
