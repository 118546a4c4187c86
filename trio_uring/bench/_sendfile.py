"""File serving: trio's ``open_file`` + ``send_all`` against ``SocketStream.send_file``.

``python -m trio_uring.bench._sendfile [--quick] [--size MiB] [--runs N] [--json PATH]``

A file (256 MiB; ``--quick``: 64 MiB) is written to a temporary directory and
read once so it is in the page cache.  Each measurement starts one server
process that accepts one loopback TCP connection and sends it the whole file:

* ``trio-epoll``: ``trio.open_file`` + ``read(CHUNK)`` + ``SocketStream.send_all`` under
  ``trio.run`` (each read is a worker-thread call that copies into a ``bytes``,
  each send copies it into the kernel).  ``CHUNK`` is 64 KiB, the chunk of
  Starlette's ``FileResponse``;
* ``trio-uring``: the same code under ``trio_uring.run``;
* ``send_file``: ``trio_uring.open_file`` + ``trio_uring.SocketStream.send_file``
  under ``trio_uring.run``.

The client (this process) connects, reads into one reused buffer until EOF
and reports the throughput (file bytes / seconds from connect to EOF).  The
server reports its own CPU time (``getrusage(RUSAGE_SELF)``: utime + stime of
all its threads, trio's worker threads and io_uring's io-wq workers included)
from accept to the end of the send, as nanoseconds per byte.  Server and
client are pinned to two different CPUs when there are two; the variants are
interleaved (run 1 of each, then run 2, ...) and the medians reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from ._measure import cpu_plan, machine_info
from ._servers import pin_cpu

#: The variants, baseline first.
VARIANTS: tuple[tuple[str, str], ...] = (
    ("trio-epoll", "trio.open_file + read + send_all, trio.run on epoll"),
    ("trio-uring", "the same code under trio_uring.run"),
    ("send_file", "trio_uring SocketStream.send_file, trio_uring.run"),
)
BASELINE = "trio-epoll"
DEFAULT_SIZE = 256 << 20
QUICK_SIZE = 64 << 20
#: Bytes per read of the open_file + send_all servers (Starlette's FileResponse chunk).
CHUNK = 64 * 1024
_CLIENT_BUFFER = 1 << 20


# ------------------------------------------------------------------ servers
def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _serve(variant: str, path: str, chunk: int) -> None:
    import trio

    import trio_uring

    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    sock, _ = await listener.accept()
    listener.close()
    cpu0 = _cpu()
    t0 = time.perf_counter()
    sent = 0
    if variant == "send_file":
        stream = trio_uring.SocketStream(sock)
        async with await trio_uring.open_file(path, "rb") as f:
            sent = await stream.send_file(f)
        await stream.aclose()
    else:
        tstream = trio.SocketStream(sock)
        async with await trio.open_file(path, "rb") as af:
            while data := await af.read(chunk):
                await tstream.send_all(data)
                sent += len(data)
        await tstream.aclose()
    cpu = _cpu() - cpu0
    elapsed = time.perf_counter() - t0
    print(json.dumps({"sent": sent, "cpu_s": cpu, "elapsed_s": elapsed}), flush=True)


def serve_main(variant: str, path: str, chunk: int, cpu: int | None) -> int:
    """The server process: send ``path`` to one client with ``variant``."""
    import trio

    import trio_uring

    pin_cpu(cpu)
    runner = trio.run if variant == "trio-epoll" else trio_uring.run
    runner(_serve, variant, path, chunk)
    return 0


# ------------------------------------------------------------------ client
def _receive_all(port: int, size: int) -> tuple[int, float]:
    buf = bytearray(_CLIENT_BUFFER)
    got = 0
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        recv_into = s.recv_into
        while True:
            n = recv_into(buf)
            if not n:
                break
            got += n
    return got, time.perf_counter() - t0


def measure_one(variant: str, path: str, size: int, chunk: int = CHUNK) -> dict[str, Any]:
    """One server process, one transfer of the whole file: throughput and server CPU."""
    server_cpu, client_cpu = cpu_plan()
    cmd = [sys.executable, "-m", "trio_uring.bench._sendfile", "--serve", variant, path]
    cmd += ["--chunk", str(chunk)]
    if server_cpu is not None:
        cmd += ["--cpu", str(server_cpu)]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None
        try:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{variant} server exited before listening")
            port = json.loads(line)["port"]
            old = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
            pin_cpu(client_cpu)
            try:
                got, seconds = _receive_all(port, size)
            finally:
                if old is not None:
                    os.sched_setaffinity(0, old)
            report = json.loads(proc.stdout.readline() or "{}")
        finally:
            if proc.wait(timeout=60) != 0:
                raise RuntimeError(f"{variant} server failed ({proc.returncode})")
    if got != size or report.get("sent") != size:
        raise RuntimeError(f"{variant}: sent {report.get('sent')}, received {got} of {size}")
    return {
        "variant": variant,
        "bytes": size,
        "seconds": seconds,
        "gb_per_s": size / seconds / 1e9,
        "server_cpu_s": report["cpu_s"],
        "cpu_ns_per_byte": report["cpu_s"] * 1e9 / size,
    }


def _make_file(directory: str, size: int) -> str:
    path = os.path.join(directory, "payload.bin")
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left = size
        while left:
            left -= f.write(block[: min(left, len(block))])
    with open(path, "rb") as f:  # into the page cache
        while f.read(1 << 22):
            pass
    return path


def run_file_bench(
    size: int | None = None,
    quick: bool = False,
    *,
    runs: int = 3,
    chunk: int = CHUNK,
    progress: bool = False,
) -> dict[str, Any]:
    """Serve a ``size``-byte file (default 256 MiB, ``quick``: 64 MiB) three ways, ``runs`` times.

    Returns ``{"config", "machine", "results": [one dict per run], "summary": [per
    variant: medians and the ratios to trio-epoll]}`` (JSON-serializable).
    """
    if size is None:
        size = QUICK_SIZE if quick else DEFAULT_SIZE
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="trio_uring-sendfile-") as tmp:
        path = _make_file(tmp, size)
        for run in range(runs):
            for variant, _ in VARIANTS:
                row = measure_one(variant, path, size, chunk)
                row["run"] = run
                results.append(row)
                if progress:
                    print(
                        f"  run {run + 1}/{runs} {variant:<10} {row['gb_per_s']:6.2f} GB/s "
                        f"{row['cpu_ns_per_byte']:6.3f} ns/B",
                        file=sys.stderr,
                    )
    summary = []
    medians: dict[str, tuple[float, float]] = {}
    for variant, description in VARIANTS:
        rows = [r for r in results if r["variant"] == variant]
        gbps = statistics.median(r["gb_per_s"] for r in rows)
        cpu = statistics.median(r["cpu_ns_per_byte"] for r in rows)
        medians[variant] = (gbps, cpu)
        summary.append(
            {"variant": variant, "description": description, "gb_per_s": gbps,
             "cpu_ns_per_byte": cpu, "runs": len(rows)}
        )  # fmt: skip
    base_gbps, base_cpu = medians[BASELINE]
    for entry in summary:
        entry["throughput_ratio"] = entry["gb_per_s"] / base_gbps
        entry["cpu_ratio"] = entry["cpu_ns_per_byte"] / base_cpu if base_cpu else None
    return {
        "config": {"size": size, "runs": runs, "chunk": chunk, "quick": quick},
        "machine": machine_info(),
        "results": results,
        "summary": summary,
    }


def format_file_bench(doc: dict[str, Any]) -> str:
    """The summary of :func:`run_file_bench` as a text table."""
    cfg = doc["config"]
    lines = [
        f"file serving: {cfg['size'] >> 20} MiB from the page cache over loopback TCP, "
        f"median of {cfg['runs']} interleaved runs (open_file reads: {cfg['chunk'] >> 10} KiB)",
        f"{'variant':<12} {'GB/s':>7} {'vs trio':>8} {'CPU ns/B':>9} {'vs trio':>8}  what",
    ]
    for entry in doc["summary"]:
        cpu_ratio = entry["cpu_ratio"]
        lines.append(
            f"{entry['variant']:<12} {entry['gb_per_s']:>7.2f} {entry['throughput_ratio']:>7.2f}x "
            f"{entry['cpu_ns_per_byte']:>9.3f} "
            f"{'-' if cpu_ratio is None else f'{cpu_ratio:.2f}x':>8}  {entry['description']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trio_uring.bench._sendfile")
    parser.add_argument("--quick", action="store_true", help="64 MiB instead of 256 MiB")
    parser.add_argument("--size", type=int, help="file size in MiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=CHUNK, help="open_file read size (bytes)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--serve", nargs=2, metavar=("VARIANT", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve_main(args.serve[0], args.serve[1], args.chunk, args.cpu)
    size = None if args.size is None else args.size << 20
    doc = run_file_bench(size, args.quick, runs=args.runs, chunk=args.chunk, progress=True)
    print(format_file_bench(doc))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
