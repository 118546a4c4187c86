"""Run test code in a fresh Python process, so that a crash is a named test failure.

A segfault (or an abort, or a hang) in the pytest process would take every later
test with it.  Code that may crash runs through :func:`run_child` instead: the
child is ``python -X dev -X faulthandler``, imports the same ``trio_uring`` as this
process (``PYTHONPATH``), must use io_uring (``TRIO_URING_REQUIRE=1``), and the
test fails with the child's exit status, signal name and stderr unless it exits 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import trio_uring

#: The directory holding the ``trio_uring`` package this process imported.
PACKAGE_ROOT = str(Path(trio_uring.__file__).resolve().parent.parent)
#: The directory holding ``tests/`` (children may ``import tests._stress``).
TESTS_ROOT = str(Path(__file__).resolve().parent.parent)


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    paths = [PACKAGE_ROOT, TESTS_ROOT]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["TRIO_URING_REQUIRE"] = "1"
    env.pop("PYTHONWARNINGS", None)
    env.update(extra)
    return env


def describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def run_child(
    code: str,
    *,
    timeout: float = 60,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) in a child interpreter; assert it exits 0 (unless not ``check``).

    ``args`` replaces ``["-c", code]`` (e.g. ``["-m", "tests._stress", ...]``).
    Returns the completed process (``stdout`` for the caller to check).
    """
    argv = [sys.executable, "-X", "dev", "-X", "faulthandler"]
    argv += args if args is not None else ["-c", textwrap.dedent(code)]
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=TESTS_ROOT,
            env=env if env is not None else child_env(),
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise AssertionError(
            f"child did not finish within {timeout} s\n--- stdout\n{out[-3000:]}\n"
            f"--- stderr\n{err[-6000:]}"
        ) from None
    if check:
        assert_exited_cleanly(proc)
    return proc


def assert_exited_cleanly(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, (
        f"child {describe(proc.returncode)}\n--- stdout\n{proc.stdout[-3000:]}\n"
        f"--- stderr\n{proc.stderr[-6000:]}"
    )
