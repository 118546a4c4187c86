"""``trio_uring.open_file`` (trio_uring/_files/_open_file.py): arguments, errors, fds, modes.

The comparison tests run the same body against ``trio.open_file`` (see
tests/_against_trio.py): same exceptions, and nothing created when an argument
is bad.
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from tests._against_trio import Opener, both, outcome
from trio_uring import AsyncBinaryFile, AsyncTextFile, open_file


async def test_returns_uring_file_objects(tmp_path: Path) -> None:
    async with await open_file(tmp_path / "f", "w") as t:
        assert isinstance(t, AsyncTextFile)
        assert isinstance(t.buffer, AsyncBinaryFile)
    async with await open_file(tmp_path / "f", "rb") as b:
        assert isinstance(b, AsyncBinaryFile)


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
                out.append(outcome(exc))
            else:
                await f.aclose()
                out.append(outcome(None))
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
            return outcome(exc)
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
