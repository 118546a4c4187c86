"""The benchmark's results as tables (text or Markdown) and their header."""

from __future__ import annotations

from typing import Any

from ._variants import REQUEST_TIMEOUT, RESPONSE_BODY, RESPONSE_HEAD


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
