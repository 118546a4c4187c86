"""Syscall counting: ``perf stat`` over exactly the measured window, and its output parsed."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

PERF_EVENTS = (
    "raw_syscalls:sys_enter",
    "syscalls:sys_enter_io_uring_enter",
    "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_epoll_pwait",
)


@functools.cache
def perf_events() -> tuple[str, ...] | None:
    """The tracepoints ``perf stat`` can count here (raw_syscalls first), or None."""
    perf = shutil.which("perf")
    if perf is None:
        return None
    usable: list[str] = []
    for event in PERF_EVENTS:
        try:
            proc = subprocess.run(
                [perf, "stat", "-x,", "-e", event, "--", "true"],
                capture_output=True,
                text=True,
                timeout=20,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        counts = _parse_perf(proc.stderr)
        if proc.returncode == 0 and event in counts and (usable or counts[event] > 0):
            usable.append(event)
        elif not usable:
            return None
    return tuple(usable)


def _parse_perf(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) >= 3 and not line.startswith("#"):
            value = parts[0].strip()
            if value.isdigit():
                counts[parts[2].strip()] = int(value)
            elif value.startswith("<not"):
                counts[parts[2].strip()] = 0
    return counts


class _PerfSession:
    """``perf stat`` around the server, counting only while the load generator says so."""

    def __init__(self, events: Sequence[str], workdir: Path) -> None:
        self.events = list(events)
        self.ctl = workdir / "perf-ctl"
        self.ack = workdir / "perf-ack"
        self.out = workdir / "perf-out.txt"
        for fifo in (self.ctl, self.ack):
            with contextlib.suppress(FileNotFoundError):
                fifo.unlink()
            os.mkfifo(fifo)
        self.ctl_fd = -1
        self.ack_fd = -1

    def wrap(self, cmd: list[str]) -> list[str]:
        perf = shutil.which("perf") or "perf"
        return [
            perf, "stat", "-x,", "-D", "-1", "--control", f"fifo:{self.ctl},{self.ack}",
            "-o", str(self.out), "-e", ",".join(self.events), "--", *cmd,
        ]  # fmt: skip

    def open(self) -> None:
        """Call after perf started (it opens the fifos first); O_NONBLOCK avoids a hang if not."""
        deadline = time.monotonic() + 10
        while True:
            try:
                self.ctl_fd = os.open(self.ctl, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:  # ENXIO: perf has not opened its end yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        os.set_blocking(self.ctl_fd, True)
        self.ack_fd = os.open(self.ack, os.O_RDONLY)

    def counts(self) -> dict[str, int]:
        for fd in (self.ctl_fd, self.ack_fd):
            if fd >= 0:
                os.close(fd)
        self.ctl_fd = self.ack_fd = -1
        try:
            return _parse_perf(self.out.read_text())
        except OSError:
            return {}
