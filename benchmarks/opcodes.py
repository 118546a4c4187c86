"""Python bytecodes executed per echoed message (or keep-alive request, or short
connection), by function.

    python benchmarks/opcodes.py [trio-epoll|trio-uring|uring-streams] [--conns 256]
                                 [--messages 3000] [--top 30] [--mode echo|req|conn]

``--mode req``: the keep-alive request/response server (``http_keepalive``, 64
connections unless ``--conns``), per request; ``--mode conn``: connection per request
(``trio_uring.bench._connections.http_once``, 8 clients unless ``--conns``), per
connection.

Runs the echo server in this process, warms it up with the C load generator, then
counts every bytecode executed while ``--messages`` more messages go through
(``sys.settrace`` with ``f_trace_opcodes``) and prints the functions that executed
the most, per message.  Tracing makes the server ~100x slower, so only the counts
mean anything: they are exact, and they say which Python code a change should
shorten.  The counts include the load generator's connection set-up (accept, task
spawn, close), spread over ``--messages``; use enough messages per connection.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import os
import sys
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import trio  # noqa: E402

from trio_uring.bench import (  # noqa: E402
    REQ_CONNS,
    find_loadgen,
    http_keepalive,
    req_scenario,
    trio_echo,
)
from trio_uring.bench._connections import http_once  # noqa: E402

Key = tuple[str, str, int]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", nargs="?", default="uring-streams",
                        choices=["trio-epoll", "trio-uring", "uring-streams", "uring-lowlevel"])  # fmt: skip
    parser.add_argument("--conns", type=int, default=None, help="256 (echo), 64 (req), 8 (conn)")
    parser.add_argument("--mode", choices=["echo", "req", "conn"], default="echo")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    if args.conns is None:
        args.conns = {"echo": 256, "req": REQ_CONNS, "conn": 8}[args.mode]
    if args.mode == "req":
        args.size = req_scenario(args.conns).size
    loadgen = find_loadgen()
    counts: collections.Counter[Key] = collections.Counter()

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            counts[(code.co_name, os.path.basename(code.co_filename), code.co_firstlineno)] += 1
        return tracer

    def load(port: int, messages: int) -> list[str]:
        return loadgen.command(
            args.mode, port, args.conns, args.size, messages=messages, duration=3600, warmup=0
        )

    async def lowlevel_echo(stream: Any) -> None:
        from trio_uring import lowlevel

        conn = stream.socket
        with contextlib.suppress(OSError):
            while data := await lowlevel.recv(conn, 65536):
                view = memoryview(data)
                while view:
                    view = view[await lowlevel.send(conn, view) :]

    async def serve() -> None:
        echo: Any = {"echo": trio_echo, "req": http_keepalive, "conn": http_once}[args.mode]
        if args.variant == "uring-streams":
            from trio_uring._net._highlevel import serve_tcp
        else:
            serve_tcp = trio.serve_tcp
            if args.variant == "uring-lowlevel":
                if args.mode != "echo":
                    parser.error("uring-lowlevel serves echo only")
                echo = lowlevel_echo
        async with trio.open_nursery() as nursery:
            handler = functools.partial(serve_tcp, echo, 0, host="127.0.0.1", backlog=4096)
            listeners = await nursery.start(handler)
            port = listeners[0].socket.getsockname()[1]
            await trio.run_process(load(port, 3000), capture_stdout=True)
            sys.settrace(tracer)
            done = await trio.run_process(load(port, args.messages), capture_stdout=True)
            sys.settrace(None)
            nursery.cancel_scope.cancel()
        messages = json.loads(done.stdout)["messages"]
        total = sum(counts.values())
        unit = {"echo": "message", "req": "request", "conn": "connection"}[args.mode]
        print(f"{args.variant}: {total / messages:,.0f} bytecodes per {unit} "
              f"({messages} {unit}s, {args.mode} mode, {args.conns} connections)")  # fmt: skip
        for (name, filename, line), n in counts.most_common(args.top):
            print(f"{n / messages:8.1f}  {name}  ({filename}:{line})")

    if args.variant == "trio-epoll":
        trio.run(serve)
    else:
        import trio_uring

        trio_uring.run(serve)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
