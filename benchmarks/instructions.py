"""User-space instructions per echoed message, per keep-alive request and per short
connection, counted by callgrind (``make bench-instr``).

    python benchmarks/instructions.py [--variants trio-epoll,trio-uring,uring-streams]
                                      [--conns 256] [--size 64] [--messages 20000]
                                      [--scenarios echo,req,conn] [--req-messages 20000]
                                      [--connections 3000] [--jobs 2]
                                      [--out benchmarks/results]

Scenarios: ``echo`` (``--conns`` x ``--size`` B echo, ``--variants``); ``req``
(keep-alive HTTP-style requests at 64 connections: per request ``receive_some(65536)``
under ``trio.fail_after``, two small ``send_all``; ``trio_uring.bench.http_keepalive``)
and ``conn`` (connection per request: connect, one request, read to EOF, close;
``trio_uring.bench._connections``), each for trio on epoll, the same trio code under
``trio_uring.run`` and trio_uring's streams.

Wall-clock figures on a shared VM move by 20-50 % from run to run, and even CPU
time per message moves with whatever the hypervisor does to the core.  The
number of instructions the server executes per message does not: callgrind
(``valgrind --tool=callgrind``) counts them, and the same code under the same
load gives the same count within about 1 %.  That makes it the figure to compare
two versions of a hot path with.

Each server runs under callgrind with instrumentation off.  The C load generator
warms it up (3,000 messages), then ``callgrind_control -i on`` starts counting,
the generator sends ``--messages`` messages, and ``callgrind_control -d`` dumps
the count.  Only user-space instructions are counted: the kernel's share (the
syscalls, TCP over loopback) is not, and under valgrind the server runs ~50x
slower, so batches are larger than at full speed.  So this measures the Python
work per message, not a throughput.  Servers run ``--jobs`` at a time: counts do
not depend on contention.

Writes ``<out>/<date>-instructions.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from servers import ALL_VARIANTS  # noqa: E402

from trio_uring._pure import build as hot_path  # noqa: E402
from trio_uring.bench import (  # noqa: E402
    BASELINE,
    REQ_CONNS,
    REQ_VARIANTS,
    Loadgen,
    find_loadgen,
    req_scenario,
    start_server,
)
from trio_uring.bench._connections import count_instructions as count_connections  # noqa: E402

DEFAULT_VARIANTS = "trio-epoll,trio-uring,uring-streams,uring-lowlevel,asyncio-streams"
SCENARIOS = ("echo", "req", "conn")


def _loadgen(lg: Loadgen, mode: str, port: int, conns: int, size: int, messages: int) -> int:
    cmd = lg.command(mode, port, conns, size, messages=messages, duration=3600, warmup=0)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=3600)
    return int(json.loads(out.stdout)["messages"])


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], capture_output=True, check=True, timeout=600)


def _total(dump: Path) -> int:
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


def count(
    variant: Any,
    conns: int,
    size: int,
    messages: int,
    lg: Loadgen,
    mode: str = "echo",
    warmup: int = 3000,
) -> dict[str, Any]:
    """Instructions per message (``mode`` echo) or per request (``req``: ``size`` is the
    reply's length) for one variant (one server under callgrind), over ``messages``
    after ``warmup`` uncounted ones."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={tmp}/cg.%p",
            sys.executable, str(HERE / "servers.py"), variant.name, "--mode", mode,
            "--chunk", str(size),
        ]  # fmt: skip
        env = dict(os.environ, PYTHONWARNINGS="default")
        env.update(variant.env)
        with start_server(cmd, env, timeout=300) as (_proc, ready, _err):
            pid, port = str(ready["pid"]), int(ready["port"])
            _loadgen(lg, mode, port, conns, size, warmup)
            _control("-i", "on", pid)
            done = _loadgen(lg, mode, port, conns, size, messages)
            _control("-d", pid)
            _control("-i", "off", pid)
            dumps = sorted(Path(tmp).glob(f"cg.{pid}.*"), key=lambda p: p.stat().st_mtime)
            if not dumps:
                raise RuntimeError(f"callgrind wrote no dump for {variant.name}")
            total = _total(dumps[-1])
            keep = os.environ.get("INSTR_KEEP_DUMPS")
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                suffix = "" if mode == "echo" else f"-{mode}"
                shutil.copy(dumps[-1], Path(keep) / f"{variant.name}{suffix}.callgrind")
        return {
            "scenario": "echo" if mode == "echo" else "req",
            "variant": variant.name,
            "backend": ready.get("backend"),
            "messages": done,
            "instructions": total,
            "per_message": total / done,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=DEFAULT_VARIANTS)
    parser.add_argument("--conns", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--req-messages", type=int, default=20000, help="req: requests counted")
    parser.add_argument("--connections", type=int, default=3000, help="conn: connections counted")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: install valgrind (Debian: apt install valgrind)")
            return 1
    known = {v.name: v for v in ALL_VARIANTS}
    names = [n for n in args.variants.split(",") if n]
    for n in names:
        if n not in known:
            parser.error(f"unknown variant {n!r}; known: {', '.join(known)}")
    for n in [n for n in names if known[n].missing()]:
        print(f"skipping {n}: {known[n].missing()}")
    names = [n for n in names if known[n].missing() is None]
    scenarios = [s for s in args.scenarios.split(",") if s]
    if not scenarios or set(scenarios) - set(SCENARIOS):
        parser.error(f"--scenarios takes a subset of {', '.join(SCENARIOS)}")
    lg = find_loadgen()
    if lg.kind != "c":
        print("needs the C load generator (a C compiler)")
        return 1
    req = req_scenario()
    keep = os.environ.get("INSTR_KEEP_DUMPS")
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = []
        if "echo" in scenarios:
            futures += [
                pool.submit(count, known[n], args.conns, args.size, args.messages, lg)
                for n in names
            ]
        if "req" in scenarios:
            futures += [
                pool.submit(count, known[n], req.conns, req.size, args.req_messages, lg, "req")
                for n in REQ_VARIANTS
            ]
        if "conn" in scenarios:
            futures += [pool.submit(_count_conn, n, args.connections, keep) for n in REQ_VARIANTS]
        rows = [f.result() for f in futures]
    date = datetime.datetime.now(datetime.timezone.utc)
    lines = [
        f"{date:%Y-%m-%d %H:%M} UTC, Linux {platform.release()}, Python {platform.python_version()}"
        f", hot path {hot_path()}",
    ]
    titles = {
        "echo": f"echo {args.conns} connections x {args.size} B, {args.messages} messages "
        "counted: instructions per message",
        "req": f"keep-alive requests, {REQ_CONNS} connections, {args.req_messages} requests "
        "counted: instructions per request",
        "conn": f"connection per request, 8 clients, {args.connections} connections counted: "
        "instructions per connection",
    }
    for scenario in scenarios:
        group = [r for r in rows if r["scenario"] == scenario]
        base = next((r["per_message"] for r in group if r["variant"] == BASELINE), None)
        lines += [
            "",
            titles[scenario],
            f"{'variant':<18} {'instr/msg':>10} {'vs epoll':>9}",
            f"{'-' * 18} {'-' * 10} {'-' * 9}",
        ]
        for r in group:
            ratio = f"{r['per_message'] / base:.2f}x" if base else "-"
            lines.append(f"{r['variant']:<18} {r['per_message']:>10,.0f} {ratio:>9}")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{date:%Y-%m-%d-%H%M%S}-instructions"
    doc = {
        "date": date.isoformat(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "hot_path": hot_path(),  # compiled / pure (TRIO_URING_PURE=1 is inherited by servers)
        "config": vars(args),
        "results": rows,
    }
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    stem.with_suffix(".md").write_text("```\n" + table + "\n```\n")
    print(f"written: {stem}.json, {stem}.md")
    return 0


def _count_conn(
    variant: str, connections: int, keep: str | None, warmup: int = 500
) -> dict[str, Any]:
    """Instructions per short connection (``trio_uring.bench._connections``)."""
    dump = None
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        dump = str(Path(keep) / f"{variant}-conn.callgrind")
    r = count_connections(variant, connections, keep=dump, warmup=warmup)
    return {
        "scenario": "conn",
        "variant": variant,
        "messages": r["connections"],
        "instructions": r["instructions"],
        "per_message": r["per_connection"],
    }


if __name__ == "__main__":
    raise SystemExit(main())
