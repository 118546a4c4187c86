"""The full benchmark (``make bench``): every server variant, every scenario, repeated.

    python benchmarks/run.py [--reps 3] [--duration 3] [--warmup 1]
                             [--variants a,b,...] [--scenarios "echo 1x64B,bulk 1MiB"]
                             [--syscalls separate|inline|off] [--no-plot] [--python-loadgen]

Scenarios: echo ping-pong at 1, 16 and 256 connections x 64 B and 16 x 4 KiB;
bulk 64 KiB and 1 MiB ``send_all`` chunks into a sink.  Further suites (``--suites``):
keep-alive HTTP-style requests at 64 connections (trio on epoll, the same trio code
under ``trio_uring.run``, trio_uring's streams; requests/s, server CPU and syscalls
per request), connection per request, serving a file.  Variants: trio on
epoll (the baseline), the same trio code under ``trio_uring.run``, trio_uring's
streams and lowlevel ops, asyncio streams/protocol, and both on uvloop (see
``servers.py``).  Runs are interleaved (rep 1 of every cell, then rep 2, ...,
with the variant order rotated) and the median is reported.  The server runs
on one CPU and the C load generator (``trio_uring/bench/_loadgen.c``, compiled into
``benchmarks/.build/``) on another.  Syscalls are counted with ``perf stat`` in
a separate short run per cell, so the timed runs carry no tracing overhead.

Writes ``benchmarks/results/<date>.json``, ``<date>.md`` (the table, ratios
against trio on epoll) and ``<date>.png`` (if matplotlib is importable).
The machinery is ``trio_uring.bench`` (``_measure``, ``_report``, ...) (shared with ``python -m trio_uring bench``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from servers import ALL_VARIANTS  # noqa: E402

from trio_uring.bench import (  # noqa: E402
    BASELINE,
    FULL_SCENARIOS,
    SUITES,
    Loadgen,
    find_loadgen,
    format_conn_bench,
    format_file_bench,
    format_header,
    format_req_bench,
    format_table,
    run_bench,
    run_conn_bench,
    run_file_bench,
    run_req_bench,
)


def server_cmd(variant: str) -> list[str]:
    return [sys.executable, str(HERE / "servers.py"), variant]


def plot(doc: dict[str, Any], path: Path) -> bool:
    """Bar charts of msgs/s and CPU per message relative to trio on epoll; False if no matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    summary = doc["summary"]
    scenarios = list(dict.fromkeys(e["scenario"] for e in summary))
    variants = list(dict.fromkeys(e["variant"] for e in summary))
    by = {(e["scenario"], e["variant"]): e for e in summary}
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.6 * len(scenarios)), 8), sharex=True)
    width = 0.8 / max(len(variants), 1)
    for ax, field, title in (
        (axes[0], "ratio", "msgs/s relative to trio on epoll (higher is better)"),
        (
            axes[1],
            "cpu_ratio",
            "server CPU per message relative to trio on epoll (lower is better)",
        ),
    ):
        for i, v in enumerate(variants):
            xs, ys = [], []
            for j, s in enumerate(scenarios):
                value = by.get((s, v), {}).get(field)
                if value is not None:
                    xs.append(j + (i - (len(variants) - 1) / 2) * width)
                    ys.append(value)
            ax.bar(xs, ys, width, label=v)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_title(title)
        ax.set_xticks(range(len(scenarios)), scenarios)
    axes[0].legend(fontsize="small", ncol=2)
    m = doc["machine"]
    fig.suptitle(f"trio_uring benchmarks {doc['date'][:10]}, Linux {m.get('kernel', '?')}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--variants", help="comma-separated variant names (default: all)")
    parser.add_argument("--scenarios", help='comma-separated, e.g. "echo 256x64B,bulk 1MiB"')
    parser.add_argument("--syscalls", choices=("separate", "inline", "off"), default="separate")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server/loadgen to CPUs")
    parser.add_argument("--python-loadgen", action="store_true", help="(testing) skip the C one")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--list", action="store_true", help="list variants and scenarios")
    parser.add_argument(
        "--suites",
        default=",".join(SUITES),
        help="comma-separated: echo (the variants x scenarios table), connections "
        "(connection per request), files (serving a 256 MiB file), requests (keep-alive "
        "request/response); default: all",
    )
    args = parser.parse_args(argv)

    if args.list:
        for v in ALL_VARIANTS:
            print(f"{v.name:<18} {v.description}" + (f"  [{v.missing()}]" if v.missing() else ""))
        for s in FULL_SCENARIOS:
            print(s.name)
        return 0
    variants = list(ALL_VARIANTS)
    if args.variants:
        wanted = [n.strip() for n in args.variants.split(",")]
        unknown = set(wanted) - {v.name for v in ALL_VARIANTS}
        if unknown:
            parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
        if BASELINE not in wanted:
            wanted.insert(0, BASELINE)  # ratios need it
        variants = [v for v in ALL_VARIANTS if v.name in wanted]
    scenarios = list(FULL_SCENARIOS)
    if args.scenarios:
        wanted_s = [n.strip() for n in args.scenarios.split(",")]
        scenarios = [s for s in FULL_SCENARIOS if s.name in wanted_s]
        if len(scenarios) != len(wanted_s):
            parser.error(f"scenarios are: {', '.join(s.name for s in FULL_SCENARIOS)}")

    suites = [x.strip() for x in args.suites.split(",") if x.strip()]
    if not suites or set(suites) - set(SUITES):
        parser.error(f"--suites takes a comma-separated subset of {', '.join(SUITES)}")
    extra: list[str] = []
    if "echo" not in suites:
        doc: dict[str, Any] = {"date": datetime.datetime.now().isoformat(timespec="seconds")}
        doc["command"] = _command(argv)
        _extra_suites(doc, suites, args, extra)
        return _write(doc, args.out, "```\n" + "\n\n".join(extra) + "\n```\n", [])
    loadgen: Loadgen = find_loadgen(cache_dir=HERE / ".build", force_python=args.python_loadgen)
    doc = run_bench(
        variants,
        scenarios,
        reps=args.reps,
        warmup=args.warmup,
        duration=args.duration,
        syscalls=args.syscalls,
        loadgen=loadgen,
        server_cmd=server_cmd,
        pin=not args.no_pin,
    )
    doc["command"] = _command(argv)
    header, table = format_header(doc), format_table(doc, markdown=True)
    print(header)
    print()
    print(format_table(doc))
    _extra_suites(doc, suites, args, extra)
    body = (
        "```\n" + header + "\n```\n\n" + table + "\n\nRatios against trio on epoll. msgs/s: "
        "higher is better; CPU us/msg (server utime+stime per message): lower is better. "
        "Bulk rows: one message = one chunk.\n"
    )
    if extra:
        body += "\n```\n" + "\n\n".join(extra) + "\n```\n"
    pngs = [] if args.no_plot else [doc]
    return _write(doc, args.out, body, pngs)


def _command(argv: list[str] | None) -> str:
    return " ".join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])])


def _extra_suites(
    doc: dict[str, Any], suites: list[str], args: argparse.Namespace, out: list[str]
) -> None:
    """Keep-alive requests, connection per request and file serving, when asked for
    (into ``doc`` and ``out``)."""
    reps = args.reps
    if "requests" in suites:
        doc["requests"] = run_req_bench(
            reps=reps,
            warmup=args.warmup,
            duration=args.duration,
            syscalls=args.syscalls,
            loadgen=find_loadgen(cache_dir=HERE / ".build", force_python=args.python_loadgen),
            server_cmd=server_cmd,
            variant_table=ALL_VARIANTS,
        )
        out.append(format_req_bench(doc["requests"]))
        print()
        print(out[-1])
    if "connections" in suites:
        doc["connections"] = run_conn_bench(False, reps=reps)
        out.append(format_conn_bench(doc["connections"]))
        print()
        print(out[-1])
    if "files" in suites:
        doc["files"] = run_file_bench(runs=reps, progress=True)
        out.append(format_file_bench(doc["files"]))
        print()
        print(out[-1])


def _write(doc: dict[str, Any], out: Path, body: str, plots: list[dict[str, Any]]) -> int:
    """``<date>.json``, ``<date>.md`` (and ``<date>.png`` of the echo table) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    json_path = out / f"{stamp}.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    md_path = out / f"{stamp}.md"
    md_path.write_text("# trio_uring benchmark results\n\n" + body)
    written = [json_path, md_path]
    for echo_doc in plots:
        png = out / f"{stamp}.png"
        if plot(echo_doc, png):
            written.append(png)
        else:
            print("(matplotlib not importable: no plot)")
    print("\nwritten: " + ", ".join(map(str, written)))
    ok = bool(doc.get("summary")) or "summary" not in doc
    for name in ("connections", "files", "requests"):
        if name in doc:
            ok = ok and bool(doc[name].get("summary"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
