"""``python -m trio_uring bench``: the suites (echo and bulk, connections, files, idle,
requests) against trio's epoll backend, run and reported.

The installed package runs it without the repository's ``benchmarks/`` directory, which
imports the same names from :mod:`trio_uring.bench` and adds asyncio/uvloop servers, more
scenarios, plots and result files.  The pieces: :mod:`~trio_uring.bench._variants`
(scenarios, variants), :mod:`~trio_uring.bench._servers` (the servers),
:mod:`~trio_uring.bench._loadgen` and :mod:`~trio_uring.bench._pyloadgen` (the load
generators), :mod:`~trio_uring.bench._perf` (syscall counts),
:mod:`~trio_uring.bench._measure` (measurements), :mod:`~trio_uring.bench._report`
(tables).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._measure import run_bench, run_req_bench
from ._report import format_header, format_req_bench, format_table
from ._variants import FULL_SCENARIOS, QUICK_SCENARIOS, QUICK_VARIANTS, TRIO_VARIANTS

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
