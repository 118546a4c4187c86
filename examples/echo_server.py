"""An echo server on trio_uring's streams (multishot receive, one SEND SQE per reply).

    python examples/echo_server.py --port 9000            # io_uring
    python examples/echo_server.py --port 9000 --trio     # trio's own SocketStream, to compare
    python examples/echo_server.py --port 9000 --client 256 --messages 200000 [--trio]
                                                          # load generator (64-byte messages)

The server prints its CPU time per echoed message and the io_uring statistics
(``enter_calls`` per message = syscalls per message) when stopped with Ctrl-C
or after ``--exit-after`` messages.  Ctrl-C ends it with those lines and exit
status 130 (128 + SIGINT, what a shell reports for a program Ctrl-C ended), no
traceback.  ``--port 0`` picks a free port; the first line names it.
"""

from __future__ import annotations

import argparse
import functools
import resource
import sys
import time

import trio

import trio_uring


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def server(port: int, use_trio: bool, exit_after: int) -> None:
    count = 0
    done = trio.Event()
    start_cpu = 0.0

    async def echo(stream: trio.abc.HalfCloseableStream) -> None:
        nonlocal count, start_cpu
        if count == 0:
            start_cpu = cpu_seconds()
        async with stream:
            try:
                while data := await stream.receive_some():
                    await stream.send_all(data)
                    count += 1
                    if count == exit_after:
                        done.set()
            except trio.BrokenResourceError:
                pass

    serve = trio.serve_tcp if use_trio else trio_uring.serve_tcp
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(serve, echo, port, host="127.0.0.1"))
        try:  # (a Ctrl-C right after the first line still reports)
            bound = listeners[0].socket.getsockname()[1]
            backend = "trio" if use_trio else "io_uring"
            print(f"echo server on 127.0.0.1:{bound} ({backend})", flush=True)
            await done.wait()
        finally:
            report(count, cpu_seconds() - start_cpu)
            nursery.cancel_scope.cancel()


def report(count: int, cpu: float) -> None:
    """Print the CPU time and ``io_uring_enter`` calls per echoed message (none: say so)."""
    if count == 0:
        print("no messages echoed", flush=True)
        return
    print(f"{count} messages, {cpu / count * 1e6:.1f} us CPU per message", flush=True)
    enters = getattr(trio.lowlevel.current_statistics().io_statistics, "enter_calls", None)
    if enters is not None:
        print(f"io_uring_enter calls per message: {enters / count:.3f}", flush=True)


async def client(port: int, connections: int, messages: int, use_trio: bool) -> None:
    per_connection = messages // connections
    payload = b"m" * 64
    connect = trio.open_tcp_stream if use_trio else trio_uring.open_tcp_stream

    async def one() -> None:
        stream: trio.abc.HalfCloseableStream = await connect("127.0.0.1", port)
        async with stream:
            for _ in range(per_connection):
                await stream.send_all(payload)
                got = 0
                while got < len(payload):
                    got += len(await stream.receive_some())

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(one)
    elapsed = time.perf_counter() - start
    total = per_connection * connections
    print(f"{total} messages over {connections} connections: {total / elapsed:,.0f} msgs/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--trio", action="store_true", help="use trio's own backend and streams")
    parser.add_argument("--client", type=int, metavar="N", help="run N client connections instead")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--exit-after", type=int, default=0, help="server: stop after N messages")
    args = parser.parse_args()
    if args.client:
        run = trio.run if args.trio else trio_uring.run
        run(client, args.port, args.client, args.messages, args.trio)
    elif args.trio:
        trio.run(server, args.port, True, args.exit_after)
    else:
        trio_uring.run(server, args.port, False, args.exit_after)


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is Ctrl-C: a ``KeyboardInterrupt``, alone or in the exception
    groups trio's nurseries wrap it in (``except KeyboardInterrupt`` misses those)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    group = getattr(exc, "exceptions", None)  # a BaseExceptionGroup
    return bool(group) and all(interrupted(e) for e in group)


if __name__ == "__main__":
    try:
        main()
    except BaseException as exc:
        if not interrupted(exc):
            raise
        sys.exit(130)
