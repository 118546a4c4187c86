"""File I/O benchmark: trio_uring.open_file (SQEs) vs trio.open_file (worker threads).

Workloads on one file in the page cache (default 64 MiB in $TMPDIR):

* ``rand4k_qd1``: 4 KiB reads at random aligned offsets, one at a time;
* ``rand4k_qd32``: the same with 32 tasks reading at once;
* ``seq1m``: sequential 1 MiB ``read()`` calls through the whole file.

trio_uring runs under ``trio_uring.run`` (``f.pread`` for random reads);
trio runs under plain ``trio.run`` on its epoll backend, with the two ways a
trio program reads at an offset: ``trio.open_file`` + ``seek``/``read`` (two
thread hops) and ``trio.to_thread.run_sync(os.pread, ...)`` (one).
Prints a table and writes JSON.  A full run takes about 15 s::

    python benchmarks/bench_file.py [--size-mib 64] [--seconds 1.0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

import trio_uring

BLOCK = 4096
MIB = 1 << 20


async def _timed(seconds: float, step: Callable[[], Awaitable[int]]) -> tuple[int, int, float]:
    """Call ``step`` until ``seconds`` passed; return (ops, bytes, elapsed)."""
    ops = nbytes = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(16):
            nbytes += await step()
            ops += 1
        now = time.perf_counter()
        if now >= deadline:
            return ops, nbytes, now - start


async def _parallel(
    seconds: float, tasks: int, make_step: Callable[[], Callable[[], Awaitable[int]]]
) -> tuple[int, int, float]:
    totals = [0, 0]
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        step = make_step()
        while time.perf_counter() < deadline:
            n = await step()
            totals[1] += n
            totals[0] += 1

    async with trio.open_nursery() as nursery:
        for _ in range(tasks):
            nursery.start_soon(worker)
    return totals[0], totals[1], time.perf_counter() - start


def _offsets(size: int, seed: int) -> Callable[[], int]:
    rng = random.Random(seed)
    blocks = size // BLOCK
    return lambda: rng.randrange(blocks) * BLOCK


async def bench_uring(path: str, size: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    f = await trio_uring.open_file(path, "rb")
    assert isinstance(f, trio_uring.AsyncBinaryFile)
    async with f:
        nxt = _offsets(size, 1)

        async def pread() -> int:
            return len(await f.pread(BLOCK, nxt()))

        out["rand4k_qd1/pread"] = await _timed(seconds, pread)

        async def seek_read() -> int:
            await f.seek(nxt())
            return len(await f.read(BLOCK))

        out["rand4k_qd1/seek+read"] = await _timed(seconds, seek_read)

        def make() -> Callable[[], Awaitable[int]]:
            offs = _offsets(size, random.randrange(1 << 30))

            async def step() -> int:
                return len(await f.pread(BLOCK, offs()))

            return step

        out["rand4k_qd32/pread"] = await _parallel(seconds, 32, make)
    out["seq1m/read"] = await _seq(path, seconds, trio_uring.open_file)
    return out


async def _seq(path: str, seconds: float, opener: Any) -> tuple[int, int, float]:
    ops = nbytes = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        async with await opener(path, "rb") as f:
            while data := await f.read(MIB):
                ops += 1
                nbytes += len(data)
    return ops, nbytes, time.perf_counter() - start


async def bench_trio(path: str, size: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with await trio.open_file(path, "rb") as f:
        nxt = _offsets(size, 1)

        async def seek_read() -> int:
            await f.seek(nxt())
            return len(await f.read(BLOCK))

        out["rand4k_qd1/seek+read"] = await _timed(seconds, seek_read)
        fd = f.fileno()

        async def pread() -> int:
            return len(await trio.to_thread.run_sync(os.pread, fd, BLOCK, nxt()))

        out["rand4k_qd1/pread"] = await _timed(seconds, pread)

        def make() -> Callable[[], Awaitable[int]]:
            offs = _offsets(size, random.randrange(1 << 30))

            async def step() -> int:
                return len(await trio.to_thread.run_sync(os.pread, fd, BLOCK, offs()))

            return step

        out["rand4k_qd32/pread"] = await _parallel(seconds, 32, make)
    out["seq1m/read"] = await _seq(path, seconds, trio.open_file)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=1.0, help="per workload and backend")
    parser.add_argument("--json", default="bench_file.json")
    args = parser.parse_args()
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.bin")
        with open(path, "wb") as fh:
            for _ in range(args.size_mib):
                fh.write(os.urandom(MIB))
        with open(path, "rb") as fh:  # warm the page cache
            while fh.read(8 * MIB):
                pass
        uring = trio_uring.run(bench_uring, path, size, args.seconds)
        plain = trio.run(bench_trio, path, size, args.seconds)
    rows = []
    print(f"{'workload':24} {'backend':34} {'ops/s':>10} {'MiB/s':>9} {'us/op':>8}")
    for name, results, label in (
        *((k, uring, "trio_uring (io_uring SQEs)") for k in uring),
        *((k, plain, "trio (worker threads)") for k in plain),
    ):
        ops, nbytes, elapsed = results[name]
        row = {
            "workload": name,
            "backend": label,
            "ops": ops,
            "ops_per_s": ops / elapsed,
            "mib_per_s": nbytes / elapsed / MIB,
            "us_per_op": elapsed / ops * 1e6,
        }
        rows.append(row)
    rows.sort(key=lambda r: (r["workload"], r["backend"]))
    for r in rows:
        print(
            f"{r['workload']:24} {r['backend']:34} {r['ops_per_s']:10.0f} "
            f"{r['mib_per_s']:9.1f} {r['us_per_op']:8.1f}"
        )
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "trio": trio.__version__,
        "cpus": os.cpu_count(),
        "file_mib": args.size_mib,
        "seconds_per_workload": args.seconds,
    }
    with open(args.json, "w") as fh:
        json.dump({"meta": meta, "results": rows}, fh, indent=2)
    print(f"\n{meta['date']}  Linux {meta['kernel']}  Python {meta['python']}  trio {meta['trio']}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
