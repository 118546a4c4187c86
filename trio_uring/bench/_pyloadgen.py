"""The Python stand-in for ``_loadgen.c`` (selectors, one process): same options, same
JSON; used where no C compiler is (it is then the bottleneck)."""

from __future__ import annotations

import json
import os
import selectors
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from ._servers import pin_cpu


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
