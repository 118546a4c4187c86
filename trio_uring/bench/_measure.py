"""One measurement and the matrix: one server process per measurement, pinned to one CPU
with the load generator on another; the generator reports msgs/s and round-trip
percentiles and reads the server's utime+stime from ``/proc`` at the edges of the
measured window; optionally ``perf stat`` counts the server's syscalls over that window."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ._loadgen import Loadgen, find_loadgen
from ._perf import _PerfSession, perf_events
from ._servers import package_server_cmd
from ._variants import (
    BASELINE,
    REQ_CONNS,
    REQ_VARIANTS,
    TRIO_VARIANTS,
    Scenario,
    Variant,
    req_scenario,
)


class ServerFailed(RuntimeError):
    """The server process did not come up (missing module, crash); the message says why."""


ServerCmd = Callable[[str], list[str]]


def cpu_plan() -> tuple[int | None, int | None]:
    """(server CPU, load generator CPU): two different CPUs if we may use >= 2, else no pinning."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if len(cpus) >= 2:
        return cpus[0], cpus[1]
    return None, None


@contextlib.contextmanager
def start_server(
    cmd: list[str], env: dict[str, str], timeout: float = 30.0
) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any], Any]]:
    """Start a server, wait for its ready line; kill it (and what it runs under) on exit."""
    errfile = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=errfile, text=True, env=env, start_new_session=True
    )
    ready: dict[str, Any] | None = None
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while ready is None:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise ServerFailed("server did not report ready in time: " + _tail(errfile))
            line = proc.stdout.readline()
            if not line:
                proc.wait(5)
                raise ServerFailed(f"server exited ({proc.returncode}): " + _tail(errfile))
            with contextlib.suppress(ValueError):
                msg = json.loads(line)
                if isinstance(msg, dict) and msg.get("ready"):
                    ready = msg
        sel.close()
        yield proc, ready, errfile
    finally:
        if ready is not None:  # under perf: stop the server itself, then perf ends
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(ready["pid"]), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            if proc.poll() is None:
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        errfile.close()


def _tail(errfile: Any, n: int = 600) -> str:
    errfile.flush()
    errfile.seek(0)
    text: str = errfile.read().strip()
    return text[-n:] if text else "(no output)"


#: The load generator's mode for each scenario mode.
_LOADGEN_MODES = {"echo": "echo", "bulk": "sink", "req": "req"}


def measure(
    variant: Variant,
    scenario: Scenario,
    loadgen: Loadgen,
    *,
    server_cmd: ServerCmd = package_server_cmd,
    warmup: float = 0.5,
    duration: float = 2.0,
    count_syscalls: bool = False,
    cpus: tuple[int | None, int | None] = (None, None),
) -> dict[str, Any]:
    """Start ``variant``'s server, load it with ``scenario``, return one result row."""
    server_cpu, client_cpu = cpus
    cmd = [*server_cmd(variant.name), "--mode", scenario.mode, "--chunk", str(scenario.size)]
    if server_cpu is not None:
        cmd += ["--cpu", str(server_cpu)]
    env = dict(os.environ)
    env.update(variant.env)
    env["PYTHONWARNINGS"] = "default"
    events = perf_events() if count_syscalls else None
    with tempfile.TemporaryDirectory(prefix="trio_uring-bench-") as tmp:
        perf = _PerfSession(events, Path(tmp)) if events else None
        if perf is not None:
            cmd = perf.wrap(cmd)
        with start_server(cmd, env) as (_proc, ready, errfile):
            lg = loadgen.command(
                _LOADGEN_MODES[scenario.mode], ready["port"], scenario.conns,
                scenario.size, warmup=warmup, duration=duration, stat_pid=ready["pid"],
                cpu=client_cpu,
            )  # fmt: skip
            pass_fds: tuple[int, ...] = ()
            if perf is not None:
                perf.open()
                lg += ["--ctl-fd", str(perf.ctl_fd), "--ack-fd", str(perf.ack_fd)]
                pass_fds = (perf.ctl_fd, perf.ack_fd)
            proc = subprocess.run(
                lg,
                capture_output=True,
                text=True,
                timeout=warmup + duration + 60,
                pass_fds=pass_fds,
            )
            if proc.returncode != 0:
                raise ServerFailed(
                    f"load generator failed ({proc.returncode}): {proc.stderr.strip()[-400:]}; "
                    "server: " + _tail(errfile)
                )
            row: dict[str, Any] = json.loads(proc.stdout)
        syscalls = perf.counts() if perf is not None else {}
    row.update(scenario=scenario.name, variant=variant.name, backend=ready["backend"])
    messages = max(int(row["messages"]), 1)
    if "server_cpu_s" in row:
        row["cpu_us_per_msg"] = row["server_cpu_s"] / messages * 1e6
        row["sys_us_per_msg"] = row.get("server_sys_s", 0.0) / messages * 1e6
        row["server_util"] = row["server_cpu_s"] / row["elapsed"]
    if syscalls:
        row["syscalls"] = syscalls
        row["syscalls_per_msg"] = syscalls.get("raw_syscalls:sys_enter", 0) / messages
        waits = sum(v for k, v in syscalls.items() if k != "raw_syscalls:sys_enter")
        row["waits_per_msg"] = waits / messages
    return row


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(
    rows: list[dict[str, Any]],
    order: Sequence[tuple[str, str]] = (),
    baseline: str = BASELINE,
) -> list[dict[str, Any]]:
    """Median per (scenario, variant) over repetitions, with ratios against ``baseline``.

    Entries come in ``order`` (pairs of scenario and variant name), then any others.
    """
    keys: dict[tuple[str, str], list[dict[str, Any]]] = {k: [] for k in order}
    for row in rows:
        if "error" not in row:
            keys.setdefault((row["scenario"], row["variant"]), []).append(row)
    out: list[dict[str, Any]] = []
    for (scen, var), group in keys.items():
        if not group:
            continue
        timed = [r for r in group if not r.get("syscall_run")]
        counted = [r for r in group if "syscalls_per_msg" in r]
        entry: dict[str, Any] = {"scenario": scen, "variant": var, "runs": len(timed)}
        entry["backend"] = group[0]["backend"]
        for field in (
            "msgs_per_s", "bytes_per_s", "p50_us", "p99_us", "cpu_us_per_msg", "sys_us_per_msg"
        ):  # fmt: skip
            vals = [float(r[field]) for r in timed if field in r]
            entry[field] = _median(vals)
            if field == "msgs_per_s" and vals:
                entry["msgs_per_s_min"], entry["msgs_per_s_max"] = min(vals), max(vals)
        for field in ("server_util", "client_cpu"):
            entry[field] = _median([float(r[field]) for r in timed if field in r])
        entry["syscalls_per_msg"] = _median([float(r["syscalls_per_msg"]) for r in counted])
        entry["waits_per_msg"] = _median([float(r["waits_per_msg"]) for r in counted])
        out.append(entry)
    base = {e["scenario"]: e for e in out if e["variant"] == baseline}
    for entry in out:
        b = base.get(entry["scenario"], {})
        entry["ratio"] = _ratio(entry.get("msgs_per_s"), b.get("msgs_per_s"))
        entry["cpu_ratio"] = _ratio(entry.get("cpu_us_per_msg"), b.get("cpu_us_per_msg"))
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


class Progress:
    """A one-line progress bar on stderr (one line per step when stderr is not a terminal)."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.done, self.enabled = max(total, 1), 0, enabled
        self.tty = sys.stderr.isatty()
        self.start = time.monotonic()

    def step(self, label: str) -> None:
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // self.total
        bar = "#" * filled + "." * (width - filled)
        line = f"[{bar}] {self.done}/{self.total} {time.monotonic() - self.start:5.1f}s {label}"
        if self.tty:
            sys.stderr.write("\r\x1b[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
        self.done += 1

    def finish(self) -> None:
        if self.enabled:
            self.done = self.total
            self.step("done")
            if self.tty:
                sys.stderr.write("\n")


def machine_info() -> dict[str, Any]:
    """Kernel/feature info (``trio_uring._run._info.gather``), CPU model, versions."""
    from .._run._info import gather

    info: dict[str, Any] = {}
    try:
        info.update(gather())
    except Exception as exc:  # the benchmark still runs on epoll
        info["info_error"] = repr(exc)
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    info["cpus_online"] = os.cpu_count()
    with contextlib.suppress(OSError):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError):
        info["loadavg"] = os.getloadavg()
    info["platform"] = platform.platform()
    for module in ("uvloop",):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            info[module] = version(module)
    return info


def run_bench(
    variants: Sequence[Variant],
    scenarios: Sequence[Scenario],
    *,
    reps: int = 1,
    warmup: float = 0.5,
    duration: float = 2.0,
    syscalls: str = "separate",
    syscall_duration: float | None = None,
    loadgen: Loadgen | None = None,
    server_cmd: ServerCmd = package_server_cmd,
    progress: bool = True,
    pin: bool = True,
) -> dict[str, Any]:
    """Every variant against every scenario, ``reps`` times, interleaved; returns the JSON doc.

    ``syscalls``: ``"separate"`` counts syscalls with perf in one extra run per
    cell (the timed runs stay unperturbed), ``"inline"`` counts during the timed
    runs (perf's tracepoints add a little per-syscall cost), ``"off"``.
    """
    loadgen = loadgen or find_loadgen()
    cpus = cpu_plan() if pin else (None, None)
    skipped: dict[str, str] = {}
    runnable = []
    for v in variants:
        why = v.missing()
        if why:
            skipped[v.name] = why
        else:
            runnable.append(v)
    if syscalls != "off" and perf_events() is None:
        skipped["(syscall counts)"] = "perf stat cannot count raw_syscalls:sys_enter here"
        syscalls = "off"
    cells = [(s, v) for s in scenarios for v in runnable if v.serves(s.mode)]
    total = len(cells) * reps + (len(cells) if syscalls == "separate" else 0)
    bar = Progress(total, progress)
    rows: list[dict[str, Any]] = []
    started = datetime.datetime.now(datetime.timezone.utc)

    def one(v: Variant, s: Scenario, rep: int, counting: bool, dur: float) -> None:
        for attempt in (1, 2):  # one retry: a server can fail for passing reasons (busy box)
            try:
                row = measure(
                    v,
                    s,
                    loadgen,
                    server_cmd=server_cmd,
                    warmup=warmup,
                    duration=dur,
                    count_syscalls=counting,
                    cpus=cpus,
                )
                break
            except (ServerFailed, subprocess.SubprocessError, OSError, ValueError) as exc:
                if attempt == 2:
                    rows.append(
                        {"scenario": s.name, "variant": v.name, "rep": rep, "error": str(exc)}
                    )
                    return
                time.sleep(1.0)
        row["rep"] = rep
        if counting and syscalls == "separate":
            row["syscall_run"] = True
        rows.append(row)

    for rep in range(reps):
        for si, s in enumerate(scenarios):
            order = [v for v in runnable if v.serves(s.mode)]
            k = (rep + si) % len(order) if order else 0
            for v in order[k:] + order[:k]:  # rotate so no variant always follows the same one
                bar.step(f"{s.name} {v.name} (run {rep + 1}/{reps})")
                one(v, s, rep, syscalls == "inline", duration)
    if syscalls == "separate":
        for s, v in cells:
            bar.step(f"{s.name} {v.name} (syscall count)")
            one(v, s, 0, True, syscall_duration or min(duration, 1.5))
    bar.finish()
    return {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {
            "reps": reps,
            "warmup_s": warmup,
            "duration_s": duration,
            "syscalls": syscalls,
            "pinning": {"server_cpu": cpus[0], "loadgen_cpu": cpus[1]},
            "loadgen": loadgen.kind,
            "loadgen_note": loadgen.note,
            "baseline": BASELINE,
        },
        "variants": {v.name: v.description for v in variants},
        "skipped": skipped,
        "results": rows,
        "summary": summarize(rows, [(s.name, v.name) for s, v in cells]),
    }


def run_req_bench(
    *,
    quick: bool = False,
    variants: Sequence[str] = REQ_VARIANTS,
    conns: int = REQ_CONNS,
    reps: int | None = None,
    warmup: float | None = None,
    duration: float | None = None,
    syscalls: str | None = None,
    loadgen: Loadgen | None = None,
    server_cmd: ServerCmd = package_server_cmd,
    variant_table: Sequence[Variant] = TRIO_VARIANTS,
    progress: bool = True,
) -> dict[str, Any]:
    """The keep-alive request/response scenario (:func:`req_scenario`) for ``variants``
    (names in ``variant_table``), through :func:`run_bench`: requests/s (``msgs_per_s``),
    server CPU per request (``cpu_us_per_msg``) and, unless ``syscalls="off"``,
    syscalls per request, with ratios against trio on epoll.  Quick: one 1.5 s run
    per variant, syscalls counted inline; else 3 x 3 s and a separate counting run."""
    known = {v.name: v for v in variant_table}
    chosen = [known[n] for n in variants]
    return run_bench(
        chosen,
        [req_scenario(conns)],
        reps=reps if reps is not None else (1 if quick else 3),
        warmup=warmup if warmup is not None else (0.4 if quick else 1.0),
        duration=duration if duration is not None else (1.5 if quick else 3.0),
        syscalls=syscalls or ("inline" if quick else "separate"),
        loadgen=loadgen,
        server_cmd=server_cmd,
        progress=progress,
    )
