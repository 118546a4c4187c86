"""pytest plugin: ``--trio-uring`` runs every trio run of the session on io_uring.

It calls :func:`trio_uring.install` before collection, so pytest-trio tests,
anyio's trio backend, Hypothesis tests and plain ``trio.run`` calls in tests
all use the io_uring manager.  Python subprocesses started by the tests get it
too, through a ``sitecustomize`` module put on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trio_uring")
    group.addoption(
        "--trio-uring",
        action="store_true",
        default=False,
        help="run every trio run (and trio subprocesses) on trio_uring's io_uring I/O manager",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--trio-uring", default=False):
        return
    import trio_uring

    if trio_uring.install():
        site = str(Path(trio_uring.__file__).parent / "_site")
        os.environ["TRIO_URING_INSTALL"] = "1"
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = site if not old else site + os.pathsep + old
        config.stash[_installed_key] = True


_installed_key = pytest.StashKey[bool]()


def pytest_report_header(config: pytest.Config) -> Any:
    if config.getoption("--trio-uring", default=False):
        import trio_uring

        if config.stash.get(_installed_key, False):
            return "trio_uring: every trio run uses the io_uring I/O manager"
        return f"trio_uring: io_uring unavailable ({trio_uring.unavailable_reason()}); epoll"
    return None


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not config.getoption("--trio-uring", default=False):
        return
    stats = terminalreporter.stats
    counts = {
        k: len(v)
        for k, v in stats.items()
        if k in ("passed", "failed", "skipped", "xfailed", "error")
    }
    used = "io_uring" if config.stash.get(_installed_key, False) else "epoll (fallback)"
    terminalreporter.write_line(
        "trio_uring: backend "
        + used
        + "; "
        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    )
