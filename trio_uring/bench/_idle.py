"""Memory per idle connection: the server's RSS while it holds many quiet connections.

``python -m trio_uring.bench._idle [--conns 10000] [--variants a,b] [--json PATH]``

Each variant's echo server (the one the echo benchmark runs: ``trio-epoll``,
``trio-uring``, ``uring-streams``) starts in its own process.  The client (this
process, plain non-blocking sockets) opens ``--conns`` connections in batches, sends
64 bytes on each and reads the echo back, so every connection has been served once
and its handler is parked again in ``receive_some``.  Then it reads the server's
``VmRSS`` and ``VmHWM`` (peak) from ``/proc``, and the figure is the peak and its
growth per connection over the server's RSS before the first connection.  A server
that holds a receive buffer per parked receive shows it here; trio on epoll holds
none (it waits for readiness, then calls ``recv``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import resource
import selectors
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from ._measure import ServerFailed, machine_info, start_server
from ._variants import BASELINE

CONNS = 10_000
BATCH = 500
MESSAGE = b"x" * 64
VARIANTS = ("trio-epoll", "trio-uring", "uring-streams")


def raise_nofile(need: int) -> None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; ``SystemExit`` if below ``need``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < need:
        raise SystemExit(f"RLIMIT_NOFILE is {soft}; {need} descriptors are needed (ulimit -n)")


def server_cmd(variant: str, conns: int) -> list[str]:
    """The server process: the echo harness's server, with enough descriptors."""
    code = (
        "import sys; from trio_uring.bench._idle import raise_nofile; "
        f"raise_nofile({conns + 64}); "
        "from trio_uring.bench._servers import serve_main; sys.exit(serve_main())"
    )
    return [sys.executable, "-c", code, variant]


def _status(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in KiB."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


def _open_batch(port: int, n: int, timeout: float = 60.0) -> list[socket.socket]:
    """Open ``n`` connections, send :data:`MESSAGE` on each, read the echo back."""
    socks = []
    sel = selectors.DefaultSelector()
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            sel.register(s, selectors.EVENT_WRITE, [s, 0])
        pending = n
        deadline = time.monotonic() + timeout
        while pending:
            events = sel.select(deadline - time.monotonic())
            if not events:
                raise RuntimeError(f"{pending} connections not echoed in {timeout} s")
            for key, mask in events:
                s = key.data[0]
                if mask & selectors.EVENT_WRITE:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    s.sendall(MESSAGE)
                    sel.modify(s, selectors.EVENT_READ, key.data)
                    continue
                got = s.recv(4096)
                if not got:
                    raise RuntimeError("the server closed a connection")
                key.data[1] += len(got)
                if key.data[1] >= len(MESSAGE):
                    sel.unregister(s)
                    pending -= 1
    except BaseException:
        for s in socks:
            s.close()
        raise
    finally:
        sel.close()
    return socks


def measure(variant: str, conns: int) -> dict[str, Any]:
    """One server: its RSS before, holding ``conns`` idle served connections, and its peak."""
    env = dict(os.environ)
    with start_server(server_cmd(variant, conns), env) as (_proc, ready, _err):
        pid, port = int(ready["pid"]), int(ready["port"])
        before = _status(pid)["VmRSS"]
        held: list[socket.socket] = []
        try:
            while len(held) < conns:
                held += _open_batch(port, min(BATCH, conns - len(held)))
            after = _status(pid)
        finally:
            for s in held:
                s.close()
    return {
        "variant": variant,
        "backend": ready.get("backend"),
        "conns": conns,
        "rss_before_kib": before,
        "rss_kib": after["VmRSS"],
        "peak_kib": after["VmHWM"],
        "kib_per_conn": (after["VmRSS"] - before) / conns,
    }


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    base = next((r for r in rows if r["variant"] == BASELINE), None)
    lines = [
        f"{'variant':<15} {'before':>9} {'with conns':>11} {'peak':>9} {'KiB/conn':>9} {'peak vs epoll':>14}",
    ]
    for r in rows:
        ratio = f"{r['peak_kib'] / base['peak_kib']:.2f}x" if base is not None else "-"
        lines.append(
            f"{r['variant']:<15} {r['rss_before_kib'] / 1024:>7.1f}MB {r['rss_kib'] / 1024:>9.1f}MB "
            f"{r['peak_kib'] / 1024:>7.1f}MB {r['kib_per_conn']:>9.2f} {ratio:>14}"
        )
    return "\n".join(lines)


def run_idle_bench(conns: int = CONNS, variants: Sequence[str] = VARIANTS) -> dict[str, Any]:
    """Measure every variant (a server that fails to start is reported, not raised)."""
    raise_nofile(conns + 64)
    rows: list[dict[str, Any]] = []
    for variant in variants:
        try:
            rows.append(measure(variant, conns))
        except ServerFailed as exc:
            rows.append({"variant": variant, "error": str(exc)})
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "conns": conns,
        "results": rows,
    }


def format_idle_bench(doc: dict[str, Any]) -> str:
    """The table: RSS before, holding the connections, peak, per connection, peak vs epoll."""
    rows = [r for r in doc["results"] if "error" not in r]
    lines = [f"Idle connections: {doc['conns']} served once, then quiet (server RSS)"]
    lines.append(format_table(rows))
    lines += [f"{r['variant']}: {r['error']}" for r in doc["results"] if "error" in r]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--conns", type=int, default=CONNS)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    doc = run_idle_bench(args.conns, args.variants.split(","))
    print(format_idle_bench(doc))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    return 0 if all("error" not in r for r in doc["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
