"""Run one test body against ``trio.open_file`` and ``trio_uring.open_file``.

The comparison tests of the file modules (tests/test_binary_file.py,
test_text_file.py, test_open_file.py) run the same body against both
implementations and check that they observed the same thing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from trio_uring import open_file

Opener = Callable[..., Awaitable[Any]]


async def both(body: Callable[[Opener], Awaitable[Any]]) -> Any:
    """Run ``body`` against both implementations; return what they both returned."""
    want = await body(trio.open_file)
    got = await body(open_file)
    assert got == want
    return got


def outcome(exc: BaseException | None) -> tuple[Any, ...]:
    """What a comparison checks of an exception: type, errno, filename (``("ok",)`` if none)."""
    if exc is None:
        return ("ok",)
    return (type(exc), getattr(exc, "errno", None), getattr(exc, "filename", None))
