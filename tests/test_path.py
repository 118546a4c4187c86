"""``trio_uring.Path`` and the whole-file helpers (trio_uring/_files/_path.py), against ``trio.Path``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from trio_uring import Path as UringPath


async def test_path_functions_match_trio_path(tmp_path: Path) -> None:
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
