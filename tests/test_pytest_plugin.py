"""``pytest --trio-uring``: every trio run in the session, and trio subprocesses, use io_uring."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

INNER_TESTS = textwrap.dedent(
    """
    import subprocess, sys
    import trio
    import pytest

    CHILD = (
        "import trio\\n"
        "async def main():\\n"
        "    return trio.lowlevel.current_statistics().io_statistics.backend\\n"
        "print(trio.run(main))\\n"
    )

    @pytest.mark.trio
    async def test_pytest_trio_run_is_on_uring():
        assert trio.lowlevel.current_statistics().io_statistics.backend == "io_uring"

    def test_plain_trio_run_is_on_uring():
        async def main():
            return trio.lowlevel.current_statistics().io_statistics.backend
        assert trio.run(main) == "io_uring"

    def test_trio_subprocess_is_on_uring():
        out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True)
        assert out.stdout.strip() == "io_uring", out.stderr
    """
)


def _run_pytest(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    env = {k: v for k, v in os.environ.items() if k not in ("TRIO_URING_INSTALL", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:anyio",
         "-W", "error", *flags, str(tmp_path / "test_inner.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_flag_puts_everything_on_uring(tmp_path: Path) -> None:
    proc = _run_pytest(tmp_path, "--trio-uring")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
    assert "trio_uring: backend io_uring" in proc.stdout


def test_without_flag_trio_stays_on_epoll(tmp_path: Path) -> None:
    proc = _run_pytest(tmp_path)
    assert proc.returncode == 1
    assert "3 failed" in proc.stdout


@pytest.mark.parametrize("command", [["info"]])
def test_cli_info(command: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "trio_uring", *command], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "io_uring         usable" in proc.stdout
    assert "POLL_ADD" in proc.stdout


def test_cli_info_says_which_hot_path_runs() -> None:
    from trio_uring._core import _ring

    proc = subprocess.run(
        [sys.executable, "-m", "trio_uring", "info"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("ring extension"))
    assert ("in use" in line) == (_ring.ext is not None), line
    assert any(x.startswith("hot path") for x in proc.stdout.splitlines())
