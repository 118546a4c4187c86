"""Issue 19, finding 3: a KeyboardInterrupt at any point of an operation is safe.

trio raises ``KeyboardInterrupt`` at any bytecode of code that is not
KeyboardInterrupt-protected, and defers it to the next checkpoint (delivered
through the parked task's abort, like a cancellation) in code that is.  So the
path from an SQE's write to the task's park must be protected: otherwise the
interrupt unwinds a task whose operation the kernel still holds (its CQE then
reschedules a task that moved on), and a ``finally`` on the way may release or
re-pool memory the kernel is about to write.

For each operation, a child process (``tests/_ki_child.py``) counts the
injection points of one clean run, then does one ``trio_uring.run`` per point
in which that point raises ``SIGINT`` through trio's own handler, and checks:
``KeyboardInterrupt`` out of the run (no ``TrioInternalError``, no hang), no
operation left waiting for the interrupted task, no write past or after the
caller's buffer, the buffer's export released, and no request still held by the
kernel after the run.  Points: every line of ``trio_uring``'s Python code on
the operation's path (``lines``: all of it under ``TRIO_URING_PURE=1``), every
line of any Python code the main task runs during the operation
(``task-lines``: in the compiled build, the only places a signal handler runs
while compiled code is on the stack), and every checkpoint and wake-up of the
task (``steps``, an Instrument).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests._child import TESTS_ROOT, child_env

from tests import _ki_child

PURE = os.environ.get("TRIO_URING_PURE") == "1"
CHILD = os.path.join(TESTS_ROOT, "tests", "_ki_child.py")
#: Every operation, in every mode under TRIO_URING_PURE=1; in the compiled build the
#: line trace still covers the modules that stay Python and the other two modes
#: cover the rest.
MODES = ("lines", "dispatch", "task-lines", "steps")
#: The task-lines mode goes through trio's own code as well: a subset keeps it short.
TASK_LINE_OPS = (
    "lowlevel.recv",
    "socket.recv",
    "socket.recv_into",
    "stream.send_all",
    "stream.receive_some",
    "lowlevel.send_zc",
    "stream.send_all-zc",
    "lowlevel.write",
    "file.read",
    "socket.accept",
)
CHILD_TIMEOUT = 60


def run_injector(mode: str, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """All runs of ``name`` in ``mode``: the clean run and one per injection point.

    A child that dies (a crash, a hang) is a failed run at the point after its
    last report; the next child starts after it.
    """
    clean: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = []
    first = 1
    while True:
        argv = [sys.executable, "-X", "dev", "-X", "faulthandler", CHILD, mode, name, str(first)]
        timed_out = False
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=CHILD_TIMEOUT,
                cwd=TESTS_ROOT,
                env=child_env(),
            )
            out, err, rc = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
            rc, timed_out = -1, True
        reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        if reports and clean is None:
            clean = reports[0]
        runs += reports[1:]
        count = clean["count"] if clean is not None else 0
        last = runs[-1]["n"] if runs else first - 1
        if rc == 0 and not timed_out:
            break
        why = "hung" if timed_out else f"exited with {rc}"
        runs.append({"n": last + 1, "fired": True, "errors": [f"child {why}: {err[-1500:]}"]})
        if clean is None or last + 1 >= count:
            break
        first = last + 2
    assert clean is not None, "the child reported nothing"
    return clean, runs


CASES = [
    pytest.param(mode, name, id=f"{mode}-{name}")
    for mode in MODES
    for name in _ki_child.SCENARIOS
    if (mode != "task-lines" or name in TASK_LINE_OPS) and (mode != "dispatch" or PURE)
]


@pytest.mark.parametrize(("mode", "name"), CASES)
def test_keyboard_interrupt_at_every_point(mode: str, name: str) -> None:
    clean, runs = run_injector(mode, name)
    assert not clean["errors"], clean
    assert clean["done"], clean
    if not clean["count"] and not PURE:
        pytest.skip("compiled build: no Python line of trio_uring on this operation's path")
    assert clean["count"] > 0, "no injection point on the operation's path"
    # Every point was reached by its own run (the path is deterministic enough).
    fired = [r for r in runs if r["fired"]]
    assert len(fired) >= 0.9 * clean["count"], (len(fired), clean["count"])
    failures = [r for r in runs if r["errors"]]
    assert not failures, "\n".join(
        f"n={r['n']} at {r.get('where', '?')}: {r['errors']}" for r in failures[:12]
    ) + f"\n({len(failures)} of {len(runs)} runs failed)"
