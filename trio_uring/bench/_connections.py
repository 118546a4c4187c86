"""Short connections: requests per second when every request is its own connection.

``python -m trio_uring.bench._connections [--quick] [--json PATH]``

The server's handler reads one HTTP/1.0 request, answers a 13-byte body and
closes; the C load generator (``_loadgen.c``, mode ``conn``) keeps ``--conns``
clients each in a closed loop of connect, request, read to EOF, close.  So the
figure is what a connection costs to accept, set up, serve once and tear down:
accept, the first receive, one send, close (and with io_uring: arming and
cancelling per-connection machinery).  Servers run in their own processes,
pinned like the echo harness pins them (:func:`~trio_uring.bench._measure.cpu_plan`);
the generator reads the server's utime+stime at the window edges, so ``cpu_us``
is server CPU per connection.

Variants: ``trio-epoll`` (:func:`trio.serve_tcp` under ``trio.run``),
``trio-uring`` (the same code under ``trio_uring.run``), ``uring-streams``
(:func:`trio_uring.serve_tcp`, trio_uring's own streams).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from ._loadgen import Loadgen, find_loadgen
from ._measure import Progress, ServerFailed, _tail, cpu_plan, machine_info, start_server, summarize
from ._report import _fmt
from ._servers import pin_cpu, ready_line
from ._variants import BASELINE

#: The handler's answer: a complete HTTP/1.0 response with a 13-byte body.
RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!"
#: Concurrent clients of the load generator.
CONNS = 32
SCENARIO = f"conn {CONNS}x"

VARIANTS: dict[str, str] = {
    "trio-epoll": "trio.serve_tcp + trio.SocketStream under trio.run (epoll)",
    "trio-uring": "the same trio code under trio_uring.run (trio sockets as SQEs)",
    "uring-streams": "trio_uring.serve_tcp + trio_uring SocketStream",
}


# ------------------------------------------------------------------ the server (child process)
async def http_once(stream: Any) -> None:
    """Read one request (to the blank line), answer :data:`RESPONSE`, close."""
    import trio

    try:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            data += chunk
        await stream.send_all(RESPONSE)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()


async def _serve(serve_tcp: Any, host: str, port: int) -> None:
    import trio

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(serve_tcp, http_once, port, host=host, backlog=4096)
        )
        backend = trio.lowlevel.current_statistics().io_statistics.backend
        ready_line(listeners[0].socket.getsockname()[1], backend)


def run_server(variant: str, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve ``variant`` (one of :data:`VARIANTS`) until killed."""
    import trio

    if variant == "trio-epoll":
        trio.run(_serve, trio.serve_tcp, host, port)
        return
    import trio_uring

    if variant == "trio-uring":
        trio_uring.run(_serve, trio.serve_tcp, host, port)
    elif variant == "uring-streams":
        trio_uring.run(_serve, trio_uring.serve_tcp, host, port)
    else:
        raise SystemExit(f"unknown variant {variant!r}")


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a server process: ``serve_main([VARIANT, --cpu, N])``."""
    parser = argparse.ArgumentParser(description="one short-connection benchmark server")
    parser.add_argument("variant", choices=list(VARIANTS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args(argv)
    pin_cpu(args.cpu)
    with contextlib.suppress(KeyboardInterrupt):
        run_server(args.variant, args.host, args.port)
    return 0


def server_cmd(variant: str) -> list[str]:
    """The command line that starts a server for ``variant`` in a fresh interpreter."""
    code = (
        "import sys; from trio_uring.bench._connections import serve_main; sys.exit(serve_main())"
    )
    return [sys.executable, "-c", code, variant]


# ------------------------------------------------------------------ one measurement
def measure(
    variant: str,
    loadgen: Loadgen,
    *,
    conns: int = CONNS,
    warmup: float = 0.5,
    duration: float = 2.0,
    cpus: tuple[int | None, int | None] = (None, None),
) -> dict[str, Any]:
    """Start ``variant``'s server, run the generator's ``conn`` mode, return one row."""
    if loadgen.kind != "c":
        raise ServerFailed(
            "the short-connection benchmark needs the C load generator (no compiler)"
        )
    server_cpu, client_cpu = cpus
    cmd = server_cmd(variant)
    if server_cpu is not None:
        cmd += ["--cpu", str(server_cpu)]
    env = dict(os.environ)
    env["PYTHONWARNINGS"] = "default"
    with start_server(cmd, env) as (_proc, ready, errfile):
        lg = loadgen.command(
            "conn", ready["port"], conns, 1, warmup=warmup, duration=duration,
            stat_pid=ready["pid"], cpu=client_cpu,
        )  # fmt: skip
        proc = subprocess.run(lg, capture_output=True, text=True, timeout=warmup + duration + 60)
        if proc.returncode != 0:
            raise ServerFailed(
                f"load generator failed ({proc.returncode}): {proc.stderr.strip()[-400:]}; "
                "server: " + _tail(errfile)
            )
        row: dict[str, Any] = json.loads(proc.stdout)
    row.update(scenario=SCENARIO, variant=variant, backend=ready["backend"])
    done = max(int(row["messages"]), 1)
    if "server_cpu_s" in row:
        row["cpu_us_per_msg"] = row["server_cpu_s"] / done * 1e6
        row["sys_us_per_msg"] = row.get("server_sys_s", 0.0) / done * 1e6
        row["server_util"] = row["server_cpu_s"] / row["elapsed"]
    return row


def run_conn_bench(
    quick: bool,
    *,
    variants: Sequence[str] = tuple(VARIANTS),
    reps: int | None = None,
    duration: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Every variant, ``reps`` times (quick: 1 x 2 s; else 3 x 3 s), interleaved; the JSON doc.

    Rows that failed carry ``error``; ``summary`` has the median per variant with
    ``ratio`` (connections/s) and ``cpu_ratio`` (server CPU per connection)
    against ``trio-epoll``.
    """
    reps = reps if reps is not None else (1 if quick else 3)
    duration = duration if duration is not None else (2.0 if quick else 3.0)
    warmup = 0.5
    loadgen = find_loadgen()
    cpus = cpu_plan()
    started = datetime.datetime.now(datetime.timezone.utc)
    rows: list[dict[str, Any]] = []
    bar = Progress(reps * len(variants), progress)
    for rep in range(reps):
        k = rep % len(variants)
        for v in [*variants[k:], *variants[:k]]:  # rotate: no variant always follows another
            bar.step(f"{SCENARIO} {v} (run {rep + 1}/{reps})")
            for attempt in (1, 2):
                try:
                    row = measure(v, loadgen, warmup=warmup, duration=duration, cpus=cpus)
                except (ServerFailed, subprocess.SubprocessError, OSError, ValueError) as exc:
                    if attempt == 2:
                        rows.append(
                            {"scenario": SCENARIO, "variant": v, "rep": rep, "error": str(exc)}
                        )
                    else:
                        time.sleep(1.0)
                    continue
                row["rep"] = rep
                rows.append(row)
                break
    bar.finish()
    summary = summarize(rows, [(SCENARIO, v) for v in variants])
    for entry in summary:
        errors = [int(r.get("errors", 0)) for r in rows if r.get("variant") == entry["variant"]]
        entry["errors"] = sum(errors)
    return {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {
            "reps": reps,
            "warmup_s": warmup,
            "duration_s": duration,
            "conns": CONNS,
            "pinning": {"server_cpu": cpus[0], "loadgen_cpu": cpus[1]},
            "loadgen": loadgen.kind,
            "baseline": BASELINE,
            "response_bytes": len(RESPONSE),
        },
        "variants": {v: VARIANTS[v] for v in variants},
        "results": rows,
        "summary": summary,
    }


def format_conn_bench(doc: dict[str, Any]) -> str:
    """The summary as a text table: connections/s, ratio, server CPU per connection, p99."""
    cfg = doc.get("config", {})
    machine = doc.get("machine", {})
    lines = [
        f"Short connections ({cfg.get('conns', CONNS)} clients; connect, one request, "
        f"read to EOF, close), {doc.get('date', '?')}, Linux {machine.get('kernel', '?')}, "
        f"{cfg.get('reps', '?')} x {cfg.get('duration_s', '?')} s, "
        f"pinning {cfg.get('pinning')}",
        f"{'variant':<15} {'conn/s':>9} {'min-max':>15} {'vs epoll':>9} "
        f"{'cpu us/conn':>12} {'vs epoll':>9} {'p99 us':>8} {'errors':>6}",
    ]
    for e in doc.get("summary", []):
        lo, hi = e.get("msgs_per_s_min"), e.get("msgs_per_s_max")
        span = f"{lo:,.0f}-{hi:,.0f}" if lo is not None and hi is not None else "-"
        lines.append(
            f"{e['variant']:<15} {_fmt(e.get('msgs_per_s'), ',.0f'):>9} {span:>15} "
            f"{_fmt(e.get('ratio'), '.2f', 'x'):>9} {_fmt(e.get('cpu_us_per_msg'), '.1f'):>12} "
            f"{_fmt(e.get('cpu_ratio'), '.2f', 'x'):>9} {_fmt(e.get('p99_us'), ',.0f'):>8} "
            f"{e.get('errors', 0):>6}"
        )
    for r in doc.get("results", []):
        if "error" in r:
            lines.append(f"{r['variant']}: failed: {r['error']}")
    return "\n".join(lines)


def count_instructions(
    variant: str, connections: int = 3000, *, keep: str | None = None, warmup: int = 500
) -> dict[str, Any]:
    """User-space instructions per connection of ``variant``'s server, counted by callgrind.

    As ``benchmarks/instructions.py`` does for echo: the server runs under
    ``valgrind --tool=callgrind --instr-atstart=no``, ``warmup`` connections (500) warm
    it up, then ``connections`` are counted.  ``keep``: copy the dump there (for
    ``callgrind_annotate``).
    """
    import shutil
    import tempfile
    from pathlib import Path

    loadgen = find_loadgen()
    if loadgen.kind != "c":
        raise ServerFailed("needs the C load generator")

    def drive(n: int) -> int:
        cmd = loadgen.command("conn", port, 8, 1, messages=n, warmup=0, duration=3600)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=3600)
        return int(json.loads(out.stdout)["messages"])

    def control(*args: str) -> None:
        subprocess.run(["callgrind_control", *args], capture_output=True, check=True, timeout=600)

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={tmp}/cg.%p", *server_cmd(variant),
        ]  # fmt: skip
        with start_server(cmd, dict(os.environ, PYTHONWARNINGS="default"), timeout=300) as (
            _proc,
            ready,
            _err,
        ):
            pid, port = str(ready["pid"]), int(ready["port"])
            drive(warmup)
            control("-i", "on", pid)
            done = drive(connections)
            control("-d", pid)
            control("-i", "off", pid)
            dumps = sorted(Path(tmp).glob(f"cg.{pid}.*"), key=lambda p: p.stat().st_mtime)
            if not dumps:
                raise ServerFailed(f"callgrind wrote no dump for {variant}")
            total = 0
            for line in dumps[-1].read_text(errors="replace").splitlines():
                if line.startswith(("summary:", "totals:")):
                    total = int(line.split()[1])
                    break
            if keep:
                shutil.copy(dumps[-1], keep)
    return {"variant": variant, "connections": done, "instructions": total,
            "per_connection": total / max(done, 1)}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one 2 s run per variant")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--json", default=None, help="also write the JSON document here")
    parser.add_argument(
        "--instructions", type=int, default=0, metavar="N",
        help="instead: callgrind instructions per connection over N connections",
    )  # fmt: skip
    parser.add_argument("--keep", default=None, help="--instructions: copy dumps to KEEP.VARIANT")
    args = parser.parse_args(argv)
    names = [n for n in args.variants.split(",") if n]
    for n in names:
        if n not in VARIANTS:
            parser.error(f"unknown variant {n!r}; known: {', '.join(VARIANTS)}")
    if args.instructions:
        base = None
        for n in names:
            keep = f"{args.keep}.{n}" if args.keep else None
            r = count_instructions(n, args.instructions, keep=keep)
            base = base or (r["per_connection"] if n == BASELINE else None)
            ratio = f"{r['per_connection'] / base:.2f}x" if base else "-"
            print(f"{n:<15} {r['per_connection']:>10,.0f} instr/conn {ratio:>7}", flush=True)
        return 0
    doc = run_conn_bench(args.quick, variants=names, reps=args.reps, duration=args.duration)
    print(format_conn_bench(doc))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
