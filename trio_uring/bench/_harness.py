"""``python -m trio_uring bench``: echo and bulk benchmarks against trio's epoll backend.

Everything the benchmark needs lives here, so the installed package can run it
without the repository's ``benchmarks/`` directory, which imports from this
module and adds asyncio/uvloop servers, more scenarios, plots and result files:

* ``LOADGEN_C``: a one-process epoll load generator in C (``trio_uring/bench/_loadgen.c``,
  package data), compiled with the system C compiler into a cache
  directory.  Without a compiler, :func:`pyloadgen_main` (selectors, one process)
  stands in, and the results say so: it is then the bottleneck.
* the trio servers (:data:`TRIO_VARIANTS`), each run in a fresh process by
  :func:`serve_main`: trio on epoll, the same trio code under
  :func:`trio_uring.run`, trio_uring's own streams, trio_uring.lowlevel ops.
* :func:`measure`, :func:`run_bench`: one server process per measurement,
  pinned to one CPU with the load generator on another; the generator reports
  msgs/s and round-trip percentiles and reads the server's utime+stime from
  ``/proc`` at the edges of the measured window; optionally ``perf stat``
  counts the server's syscalls over exactly that window.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import hashlib
import importlib.util
import json
import os
import platform
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

#: The reference variant every ratio is computed against.
BASELINE = "trio-epoll"


# ------------------------------------------------------------------ scenarios and variants
@dataclasses.dataclass(frozen=True)
class Scenario:
    """One load shape: ``echo`` (closed-loop ping-pong), ``bulk`` (server streams to a
    sink) or ``req`` (keep-alive HTTP-style requests: ``size`` is the reply's length,
    :func:`http_keepalive` serves them)."""

    mode: str
    conns: int
    size: int

    @property
    def name(self) -> str:
        if self.mode == "bulk":
            return f"bulk {_size_label(self.size)}"
        if self.mode == "req":
            return f"keep-alive {self.conns}x"
        return f"echo {self.conns}x{_size_label(self.size)}"


@dataclasses.dataclass(frozen=True)
class Variant:
    """A server implementation, started as ``<server command> NAME --mode ...``."""

    name: str
    description: str
    requires: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    bulk: bool = True
    #: Serves ``--mode req`` (:func:`http_keepalive`).
    req: bool = False

    def serves(self, mode: str) -> bool:
        """Whether this variant's server has a ``--mode mode``."""
        return mode == "echo" or (mode == "bulk" and self.bulk) or (mode == "req" and self.req)

    def missing(self) -> str | None:
        """Why this variant cannot run here (a module it needs is missing), or None."""
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                return f"module {module} not available"
        return None


TRIO_VARIANTS: tuple[Variant, ...] = (
    Variant("trio-epoll", "trio.serve_tcp + SocketStream under trio.run (epoll)", req=True),
    Variant(
        "trio-uring",
        "the same trio code under trio_uring.run (trio sockets as SQEs where available)",
        req=True,
    ),
    Variant(
        "trio-uring-poll",
        "the same trio code under trio_uring.run, TRIO_URING_SOCKETS=0 (readiness via POLL_ADD)",
        env=(("TRIO_URING_SOCKETS", "0"),),
        req=True,
    ),
    Variant(
        "uring-streams",
        "trio_uring._net._highlevel.serve_tcp + trio_uring SocketStream",
        requires=("trio_uring._net._highlevel", "trio_uring._net._streams"),
        req=True,
    ),
    Variant(
        "uring-lowlevel",
        "trio_uring.lowlevel accept/recv/send loop per connection",
        requires=("trio_uring.lowlevel",),
    ),
)

QUICK_VARIANTS = ("trio-epoll", "trio-uring", "uring-streams")
QUICK_SCENARIOS = (
    Scenario("echo", 16, 64),
    Scenario("echo", 256, 64),
    Scenario("bulk", 1, 1 << 20),
)
FULL_SCENARIOS = (
    Scenario("echo", 1, 64),
    Scenario("echo", 16, 64),
    Scenario("echo", 256, 64),
    Scenario("echo", 16, 4096),
    Scenario("bulk", 1, 64 << 10),
    Scenario("bulk", 1, 1 << 20),
)


#: The keep-alive request/response scenario (``make bench``'s "requests" suite): 64
#: connections, each a closed loop of one request and its reply.
REQ_CONNS = 64
#: Its variants: trio on epoll, the same trio code on io_uring, trio_uring's streams.
REQ_VARIANTS = ("trio-epoll", "trio-uring", "uring-streams")
#: :func:`http_keepalive`'s reply, sent as two ``send_all`` calls (head, then body), as
#: HTTP/1.1 servers on h11 send them.
RESPONSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n"
    b"server: trio_uring-bench\r\n\r\n"
)
RESPONSE_BODY = b"Hello, world!"
#: :func:`http_keepalive` waits this long for the next request (``trio.fail_after``),
#: as hypercorn's keep-alive timeout (5 s) does.
REQUEST_TIMEOUT = 5.0


def req_scenario(conns: int = REQ_CONNS) -> Scenario:
    """The keep-alive request/response scenario at ``conns`` connections."""
    return Scenario("req", conns, len(RESPONSE_HEAD) + len(RESPONSE_BODY))


def _size_label(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}MiB"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10}KiB"
    return f"{n}B"


# ------------------------------------------------------------------ servers (run in a child process)
def ready_line(port: int, backend: str) -> None:
    """Tell the harness the server listens: one JSON line on stdout."""
    print(json.dumps({"ready": True, "port": port, "pid": os.getpid(), "backend": backend}))
    sys.stdout.flush()


def pin_cpu(cpu: int | None) -> None:
    """Pin this process (and threads it starts later) to ``cpu``; best effort."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


async def trio_echo(stream: Any) -> None:
    import trio

    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        async for data in stream:
            await stream.send_all(data)


async def http_keepalive(stream: Any, timeout: float = REQUEST_TIMEOUT) -> None:
    """A keep-alive HTTP-style handler as trio HTTP servers write it: per request one
    ``receive_some(65536)`` under ``trio.fail_after(timeout)``, then the reply as two
    ``send_all`` calls (:data:`RESPONSE_HEAD`, :data:`RESPONSE_BODY`); it closes the
    stream when the peer does.  The requests are not parsed: the load generator sends
    one small request at a time, which one receive reads whole."""
    import trio

    try:
        while True:
            with trio.fail_after(timeout):
                data = await stream.receive_some(65536)
            if not data:
                break
            await stream.send_all(RESPONSE_HEAD)
            await stream.send_all(RESPONSE_BODY)
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
        pass
    finally:
        await stream.aclose()


async def _trio_bulk(chunk: int, stream: Any) -> None:
    import trio

    data = b"x" * chunk
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while True:
            await stream.send_all(data)


async def _serve_trio_streams(serve_tcp: Any, host: str, port: int, mode: str, chunk: int) -> None:
    import trio

    handler: Any = trio_echo
    if mode == "bulk":
        handler = functools.partial(_trio_bulk, chunk)
    elif mode == "req":
        handler = http_keepalive
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(serve_tcp, handler, port, host=host, backlog=4096)
        )
        backend = trio.lowlevel.current_statistics().io_statistics.backend
        ready_line(listeners[0].socket.getsockname()[1], backend)


async def _serve_lowlevel(host: str, port: int, mode: str, chunk: int) -> None:
    import trio

    from trio_uring import lowlevel

    async def echo(conn: Any) -> None:
        with conn, contextlib.suppress(OSError):
            while True:
                data = await lowlevel.recv(conn, 65536)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    view = view[await lowlevel.send(conn, view) :]

    async def bulk(conn: Any) -> None:
        data = memoryview(b"x" * chunk)
        with conn, contextlib.suppress(OSError):
            while True:
                view = data
                while view:
                    view = view[await lowlevel.send(conn, view) :]

    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    await sock.bind((host, port))
    sock.listen(4096)
    backend = trio.lowlevel.current_statistics().io_statistics.backend
    ready_line(sock.getsockname()[1], backend)
    async with trio.open_nursery() as nursery:
        while True:
            conn, _ = await lowlevel.accept(sock)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            nursery.start_soon(echo if mode == "echo" else bulk, conn)


def run_trio_server(variant: str, host: str, port: int, mode: str, chunk: int) -> None:
    """Serve ``variant`` (one of :data:`TRIO_VARIANTS`) until killed."""
    import trio

    if variant == "trio-epoll":
        trio.run(_serve_trio_streams, trio.serve_tcp, host, port, mode, chunk)
        return
    import trio_uring

    if variant in ("trio-uring", "trio-uring-poll"):
        trio_uring.run(_serve_trio_streams, trio.serve_tcp, host, port, mode, chunk)
    elif variant == "uring-streams":
        from trio_uring._net._highlevel import serve_tcp

        trio_uring.run(_serve_trio_streams, serve_tcp, host, port, mode, chunk)
    elif variant == "uring-lowlevel":
        trio_uring.run(_serve_lowlevel, host, port, mode, chunk)
    else:
        raise SystemExit(f"unknown variant {variant!r}")


def server_arg_parser(variants: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="one benchmark server")
    parser.add_argument("variant", choices=list(variants))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=("echo", "bulk", "req"), default="echo")
    parser.add_argument("--chunk", type=int, default=1 << 20, help="bulk: bytes per send_all")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    return parser


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a server process: ``serve_main([VARIANT, --mode, ...])``."""
    args = server_arg_parser([v.name for v in TRIO_VARIANTS]).parse_args(argv)
    pin_cpu(args.cpu)
    with contextlib.suppress(KeyboardInterrupt):
        run_trio_server(args.variant, args.host, args.port, args.mode, args.chunk)
    return 0


def package_server_cmd(variant: str) -> list[str]:
    """The command line that starts a :data:`TRIO_VARIANTS` server in a fresh interpreter."""
    code = "import sys; from trio_uring.bench._harness import serve_main; sys.exit(serve_main())"
    return [sys.executable, "-c", code, variant]


# ------------------------------------------------------------------ load generator
#: The C load generator's source, shipped with the package (``trio_uring/bench/_loadgen.c``).
LOADGEN_C = (resources.files("trio_uring.bench") / "_loadgen.c").read_text()


@dataclasses.dataclass(frozen=True)
class Loadgen:
    """How to start the load generator: ``argv`` + ``echo|sink --port ...``."""

    kind: str  # "c" or "python"
    argv: tuple[str, ...]
    note: str = ""

    def command(self, mode: str, port: int, conns: int, size: int, **options: object) -> list[str]:
        """The command line for one load: ``mode`` is ``echo`` or ``sink``; ``options``
        are further ``--name value`` pairs (``stat_pid=...`` becomes ``--stat-pid``),
        ``None`` values left out."""
        cmd = [*self.argv, mode, "--port", str(port), "--conns", str(conns), "--size", str(size)]
        for name, value in options.items():
            if value is not None:
                cmd += ["--" + name.replace("_", "-"), str(value)]
        return cmd


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trio_uring"


def build_loadgen(source: str = LOADGEN_C, cache_dir: Path | None = None) -> Path | None:
    """Compile the C load generator (cached by source hash); None without a working compiler."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return None
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    dirs = [cache_dir] if cache_dir is not None else []
    dirs += [default_cache_dir(), Path(tempfile.gettempdir()) / f"trio_uring-{os.getuid()}"]
    for directory in dirs:
        if directory is None:
            continue
        exe = directory / f"loadgen-{digest}"
        if exe.exists():
            return exe
        try:
            directory.mkdir(parents=True, exist_ok=True)
            src = directory / f"loadgen-{digest}.c"
            src.write_text(source)
            tmp = directory / f"loadgen-{digest}.{os.getpid()}.tmp"
            subprocess.run(
                [cc, "-O2", "-o", str(tmp), str(src)],
                check=True,
                capture_output=True,
                timeout=120,
            )
            os.replace(tmp, exe)
            return exe
        except (OSError, subprocess.SubprocessError):
            continue
    return None


def find_loadgen(
    source: str = LOADGEN_C, cache_dir: Path | None = None, *, force_python: bool = False
) -> Loadgen:
    """The compiled C generator, or the Python stand-in if there is no C compiler."""
    exe = None if force_python else build_loadgen(source, cache_dir)
    if exe is not None:
        return Loadgen("c", (str(exe),))
    code = "import sys; from trio_uring.bench._harness import pyloadgen_main; sys.exit(pyloadgen_main())"
    return Loadgen(
        "python",
        (sys.executable, "-c", code),
        "no C compiler: the Python load generator was used and is likely the bottleneck",
    )


def _proc_ticks(pid: int) -> tuple[int, int] | None:
    """(utime, stime) of a process, all threads, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[11]), int(fields[12])


def pyloadgen_main(argv: Sequence[str] | None = None) -> int:
    """The Python stand-in for ``loadgen.c``: same options, same JSON."""
    args = list(sys.argv[1:] if argv is None else argv)
    mode, opts = args[0], dict(zip(args[1::2], args[2::2], strict=False))
    port = int(opts["--port"])
    host = opts.get("--host", "127.0.0.1")
    conns, size = int(opts.get("--conns", 1)), int(opts.get("--size", 64))
    warmup, duration = float(opts.get("--warmup", 0.5)), float(opts.get("--duration", 2.0))
    max_messages = int(opts.get("--messages", 0))
    stat_pid = int(opts.get("--stat-pid", 0))
    ctl_fd, ack_fd = int(opts.get("--ctl-fd", -1)), int(opts.get("--ack-fd", -1))
    if "--cpu" in opts:
        pin_cpu(int(opts["--cpu"]))
    hz = os.sysconf("SC_CLK_TCK")
    socks = []
    for _ in range(conns if mode == "echo" else 1):
        s = socket.create_connection((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    window: dict[str, float] = {}

    def edge(which: str) -> None:
        if ctl_fd >= 0 and which == "start":
            os.write(ctl_fd, b"enable\n")
            if ack_fd >= 0:
                os.read(ack_fd, 16)
        ticks = _proc_ticks(stat_pid) if stat_pid else None
        window[which + "_ticks"] = -1 if ticks is None else sum(ticks)
        window[which + "_sys"] = -1 if ticks is None else ticks[1]
        window[which + "_cpu"] = time.process_time()
        window[which] = time.monotonic()
        if ctl_fd >= 0 and which == "end":
            os.write(ctl_fd, b"disable\n")
            if ack_fd >= 0:
                os.read(ack_fd, 16)

    t_warm = time.monotonic() + warmup
    t_end = t_warm + duration
    measuring, messages, nbytes = False, 0, 0
    lat: list[int] = []
    if mode == "sink":
        sock = socks[0]
        sock.settimeout(0.1)
        while True:
            now = time.monotonic()
            if not measuring and now >= t_warm:
                edge("start")
                measuring, nbytes = True, 0
            if measuring and now >= t_end:
                break
            try:
                data = sock.recv(4 << 20)
            except TimeoutError:
                continue
            if not data:
                print("pyloadgen: server closed the connection", file=sys.stderr)
                return 3
            nbytes += len(data)
        messages = nbytes // size
    else:
        sel = selectors.DefaultSelector()
        payload = b"x" * size
        state: dict[int, list[int]] = {}
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            state[s.fileno()] = [0, time.perf_counter_ns()]
            s.send(payload)
        while True:
            now = time.monotonic()
            if not measuring and now >= t_warm:
                edge("start")
                measuring, messages, lat = True, 0, []
            if measuring and (now >= t_end or (max_messages and messages >= max_messages)):
                break
            for key, _ in sel.select((t_end if measuring else t_warm) - now):
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                st = state[conn.fileno()]
                data = conn.recv(size - st[0])
                if not data:
                    print("pyloadgen: server closed a connection", file=sys.stderr)
                    return 3
                st[0] += len(data)
                if st[0] == size:
                    t1 = time.perf_counter_ns()
                    if measuring:
                        messages += 1
                        lat.append(t1 - st[1])
                    st[0], st[1] = 0, t1
                    conn.send(payload)  # small: always fits an empty buffer
        nbytes = messages * size
    edge("end")
    elapsed = window["end"] - window["start"]
    out: dict[str, Any] = {
        "mode": mode,
        "conns": len(socks),
        "size": size,
        "elapsed": elapsed,
        "messages": messages,
        "bytes": nbytes,
        "msgs_per_s": messages / elapsed,
        "bytes_per_s": nbytes / elapsed,
        "client_cpu": (window["end_cpu"] - window["start_cpu"]) / elapsed,
    }
    if window["start_ticks"] >= 0 and window["end_ticks"] >= 0:
        out["server_cpu_s"] = (window["end_ticks"] - window["start_ticks"]) / hz
        out["server_sys_s"] = (window["end_sys"] - window["start_sys"]) / hz
    if mode == "echo":
        lat.sort()
        for field, p in (("p50_us", 0.5), ("p90_us", 0.9), ("p99_us", 0.99), ("max_us", 1.0)):
            out[field] = lat[int((len(lat) - 1) * p)] / 1000.0 if lat else 0.0
    print(json.dumps(out))
    for s in socks:
        s.close()
    return 0


# ------------------------------------------------------------------ syscall counting
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


# ------------------------------------------------------------------ one measurement
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


# ------------------------------------------------------------------ the matrix
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


# ------------------------------------------------------------------ reporting
def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def format_table(doc: dict[str, Any], markdown: bool = False) -> str:
    """The summary as a table; ratios are against trio on epoll (x = higher is better for
    msgs/s, lower is better for CPU per message; "kernel us" is the stime part of it)."""
    headers = [
        "scenario", "variant", "msgs/s", "MiB/s", "vs epoll", "p50 us", "p99 us",
        "CPU us/msg", "kernel us", "CPU vs epoll", "syscalls/msg", "note",
    ]  # fmt: skip
    lines: list[list[str]] = []
    for e in doc["summary"]:
        note = []
        if e["variant"].startswith(("trio-uring", "uring")) and e["backend"] != "io_uring":
            note.append(f"FELL BACK TO {e['backend']}")
        if e.get("server_util") is not None and e["server_util"] < 0.85:
            note.append(f"server {e['server_util']:.0%} busy")
        if e.get("client_cpu") is not None and e["client_cpu"] > 0.9:
            note.append("loadgen saturated")
        if e.get("runs", 0) > 1 and e.get("msgs_per_s_min"):
            spread = (e["msgs_per_s_max"] - e["msgs_per_s_min"]) / e["msgs_per_s"]
            if spread > 0.15:
                note.append(f"spread {spread:.0%}")
        is_bulk = e["scenario"].startswith("bulk")
        lines.append(
            [
                e["scenario"],
                e["variant"],
                _fmt(e.get("msgs_per_s"), ",.0f"),
                _fmt(e["bytes_per_s"] / 2**20 if e.get("bytes_per_s") else None, ",.0f"),
                _fmt(e.get("ratio"), ".2f", "x"),
                "-" if is_bulk else _fmt(e.get("p50_us"), ".0f"),
                "-" if is_bulk else _fmt(e.get("p99_us"), ".0f"),
                _fmt(e.get("cpu_us_per_msg"), ".1f"),
                _fmt(e.get("sys_us_per_msg"), ".1f"),
                _fmt(e.get("cpu_ratio"), ".2f", "x"),
                _fmt(e.get("syscalls_per_msg"), ".2f"),
                ", ".join(note),
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(headers)]
    right = {2, 3, 4, 5, 6, 7, 8, 9, 10}

    def render(cells: list[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return ("| " + " | ".join(out) + " |") if markdown else "  ".join(out).rstrip()

    text = [render(headers)]
    if markdown:
        text.append(
            "|"
            + "|".join(
                ("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths)
            )
            + "|"
        )
    else:
        text.append("  ".join("-" * w for w in widths))
    prev = None
    for row in lines:
        if not markdown and prev is not None and row[0] != prev:
            text.append("")
        prev = row[0]
        text.append(render(row))
    return "\n".join(text)


def format_header(doc: dict[str, Any]) -> str:
    m, c = doc["machine"], doc["config"]
    pin = c["pinning"]
    lines = [
        f"{doc['date']}  Linux {m.get('kernel', '?')}  {m.get('cpu_model', '?')} "
        f"({m.get('cpus_usable', '?')} usable CPUs, load {', '.join(f'{x:.2f}' for x in m.get('loadavg', ()))})",
        f"python {m.get('python', '?')}  trio {m.get('trio', '?')}  io_uring "
        f"{'usable' if m.get('usable') else 'UNAVAILABLE: ' + str(m.get('reason'))}",
        f"{c['reps']} run(s) x {c['duration_s']}s after {c['warmup_s']}s warm-up, median shown; "
        f"server on CPU {pin['server_cpu']}, load generator ({c['loadgen']}) on CPU {pin['loadgen_cpu']}; "
        f"syscalls: {c['syscalls']}",
    ]
    if c.get("loadgen_note"):
        lines.append("NOTE: " + c["loadgen_note"])
    for name, why in doc["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    for row in doc["results"]:
        if "error" in row:
            last = row["error"].strip().splitlines()[-1][:200]
            lines.append(f"error {row['scenario']} {row['variant']} run {row['rep'] + 1}: {last}")
    return "\n".join(lines)


#: What ``python -m trio_uring bench`` can run (all by default).
SUITES = ("echo", "connections", "files", "idle", "requests")


def main(quick: bool = False, json_path: str | None = None, suites: Sequence[str] = SUITES) -> int:
    """``python -m trio_uring bench [--quick] [--json FILE] [--suites echo,connections,files,idle]``.

    ``echo``: the echo and bulk scenarios below; ``connections``: connection per
    request (:mod:`trio_uring.bench._connections`); ``files``: serving a file from
    the page cache (:mod:`trio_uring.bench._sendfile`); ``idle``: the server's memory
    holding 10,000 quiet connections (2,000 with ``--quick``,
    :mod:`trio_uring.bench._idle`); ``requests``: keep-alive request/response
    (:func:`run_req_bench`).
    """
    unknown = set(suites) - set(SUITES)
    if unknown:
        raise ValueError(f"unknown suites {sorted(unknown)}; they are {', '.join(SUITES)}")
    doc: dict[str, Any] = {}
    ok = True
    if "echo" in suites:
        doc = _echo_main(quick)
        ok = any("msgs_per_s" in r for r in doc["results"])
    if "connections" in suites:
        from ._connections import format_conn_bench, run_conn_bench

        doc["connections"] = conns = run_conn_bench(quick)
        print()
        print(format_conn_bench(conns))
        ok = ok and any("msgs_per_s" in r for r in conns["results"])
    if "files" in suites:
        from ._sendfile import format_file_bench, run_file_bench

        doc["files"] = files = run_file_bench(quick=quick, runs=1 if quick else 3)
        print()
        print(format_file_bench(files))
        ok = ok and bool(files["summary"])
    if "idle" in suites:
        from ._idle import format_idle_bench, run_idle_bench

        doc["idle"] = idle = run_idle_bench(2000 if quick else 10_000)
        print()
        print(format_idle_bench(idle))
        ok = ok and all("error" not in r for r in idle["results"])
    if "requests" in suites:
        doc["requests"] = reqs = run_req_bench(quick=quick)
        print()
        print(format_req_bench(reqs))
        ok = ok and any("msgs_per_s" in r for r in reqs["results"])
    if json_path:
        with open(json_path, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"results written to {json_path}")
    return 0 if ok else 1


def _echo_main(quick: bool) -> dict[str, Any]:
    names = QUICK_VARIANTS if quick else tuple(v.name for v in TRIO_VARIANTS)
    variants = [v for v in TRIO_VARIANTS if v.name in names]
    doc = run_bench(
        variants,
        QUICK_SCENARIOS if quick else FULL_SCENARIOS,
        reps=1 if quick else 3,
        warmup=0.4 if quick else 1.0,
        duration=1.5 if quick else 3.0,
        syscalls="inline" if quick else "separate",
    )
    print(format_header(doc))
    print()
    print(format_table(doc))
    print()
    print(
        "ratios: msgs/s vs trio on epoll (higher is better); CPU = server utime+stime per message "
        "(lower is better); bulk: messages = chunks of the given size"
    )
    if quick:
        print("quick run: one short run per cell on a possibly busy machine; use `make bench` "
              "(benchmarks/run.py) for repeated, interleaved runs")  # fmt: skip
    return doc


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


def format_req_bench(doc: dict[str, Any]) -> str:
    """The request/response table, headed by what was measured."""
    return (
        "Keep-alive requests (keep-alive Nx: N connections; per request the server does "
        f"receive_some(65536) under fail_after({REQUEST_TIMEOUT:g}), then two send_all: "
        f"{len(RESPONSE_HEAD)} + {len(RESPONSE_BODY)} B). msgs/s = requests/s; "
        "CPU us/msg and syscalls/msg are per request.\n"
        + format_header(doc)
        + "\n\n"
        + format_table(doc)
    )
