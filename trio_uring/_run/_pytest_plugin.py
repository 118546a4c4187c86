"""pytest plugin: ``--trio-uring`` runs every trio run of the session on io_uring.

It calls :func:`trio_uring.install` before collection, so pytest-trio tests,
anyio's trio backend, Hypothesis tests and plain ``trio.run`` calls in tests
all use the io_uring manager.  Python subprocesses started by the tests get it
too, through a ``sitecustomize`` module put on ``PYTHONPATH``.

``--trio-uring-kernel=5.15`` makes every ring of the session, and of its child
processes, answer for that Linux release (``TRIO_URING_EMULATE_KERNEL``, see
``trio_uring._core._kernels``).  It is set before any conftest is loaded, so before
any ring is made.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import pytest

from .._core import _kernels


def _release(text: str) -> str:
    try:
        _kernels.parse_release(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trio_uring")
    group.addoption(
        "--trio-uring",
        action="store_true",
        default=False,
        help="run every trio run (and trio subprocesses) on trio_uring's io_uring I/O manager",
    )
    group.addoption(
        "--trio-uring-kernel",
        metavar="RELEASE",
        type=_release,
        default=None,
        help="emulate the io_uring of Linux RELEASE (e.g. 5.15): the probe reports only what "
        "that release has (sets TRIO_URING_EMULATE_KERNEL, for child processes too)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Set the emulated release before conftests (and their rings) are loaded."""
    release = getattr(early_config.known_args_namespace, "trio_uring_kernel", None)
    if release is not None:
        os.environ[_kernels.ENV] = release
        from ._install import unavailable_reason

        unavailable_reason.cache_clear()  # in case something asked before


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--trio-uring", default=False):
        return
    from ._install import install, install_in_children

    if install():
        install_in_children()
        config.stash[_installed_key] = True


_installed_key = pytest.StashKey[bool]()


def _emulation() -> str:
    release = _kernels.emulated()
    if release is None:
        return ""
    return f" (emulating Linux {release[0]}.{release[1]}: {_kernels.ENV})"


def pytest_report_header(config: pytest.Config) -> Any:
    if config.getoption("--trio-uring", default=False):
        from ._install import unavailable_reason

        if config.stash.get(_installed_key, False):
            return "trio_uring: every trio run uses the io_uring I/O manager" + _emulation()
        return f"trio_uring: io_uring unavailable ({unavailable_reason()}); epoll"
    if _kernels.emulated() is not None:
        return "trio_uring:" + _emulation()
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
    used += _emulation()
    terminalreporter.write_line(
        "trio_uring: backend "
        + used
        + "; "
        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    )
