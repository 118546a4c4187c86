"""``trio_uring.AsyncTextFile`` (trio_uring/_files/_text_file.py): decoding, newlines, cookies.

The comparison tests run the same body against ``trio.open_file`` (see
tests/_against_trio.py); the last test is io_uring-only (cancellation).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from tests._against_trio import Opener, both
from trio_uring import open_file

TEXT = "first line\nsecond\r\nthird\rfourth\n\nünïcødé ✓ line\nlast without newline"


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


async def test_text_write_type_error(tmp_path: Path) -> None:
    async def body(op: Opener) -> Any:
        async with await op(tmp_path / "f", "w") as f:
            try:
                await f.write(b"bytes")
            except TypeError:
                return TypeError
        return None

    assert await both(body) is TypeError


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
