"""Send a large payload with SEND_ZC and show what the notifications reported.

    python examples/zerocopy_sender.py                      # loopback sender + sink, 64 KiB x 2000
    python examples/zerocopy_sender.py --host H --port P    # to a real sink (e.g. `nc -l P > /dev/null`)
    python examples/zerocopy_sender.py --compare            # bytes vs bytearray vs SEND, ping-pong

Over loopback every notification reports IORING_NOTIF_USAGE_ZC_COPIED (the
kernel copies looped-back data), so ``zerocopy="auto"`` streams switch to SEND
after the first one; this example uses ``zerocopy="always"`` to keep SEND_ZC on.

``--compare`` measures the return policy: a ``bytes`` send_all returns after
the result CQE (the object stays referenced until the notification), a
``bytearray`` one only after the notification.
"""

from __future__ import annotations

import argparse
import time

import trio

import trio_uring
from trio_uring import SocketStream, ZeroCopyPolicy, open_tcp_listeners, open_tcp_stream
from trio_uring.lowlevel import current_manager


async def sink(listener_stream: SocketStream, total: int, ack_every: int) -> None:
    got = 0
    pending = 0
    while got < total:
        chunk = await listener_stream.receive_some()
        got += len(chunk)
        pending += len(chunk)
        if ack_every and pending >= ack_every:
            pending -= ack_every
            await listener_stream.send_all(b"k")


async def run_once(size: int, count: int, kind: str, ping_pong: bool) -> float:
    listeners = await open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    policy: ZeroCopyPolicy = "never" if kind == "send" else "always"
    sender = SocketStream((await open_tcp_stream("127.0.0.1", port)).socket, zerocopy=policy)
    receiver = await listeners[0].accept()
    payload: bytes | bytearray = bytes(size) if kind == "bytes" else bytearray(size)
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sink, receiver, size * count, size if ping_pong else 0)
        for _ in range(count):
            await sender.send_all(payload)
            if ping_pong:
                assert await sender.receive_some(1) == b"k"
    elapsed = time.perf_counter() - start
    for resource in (sender, receiver, *listeners):
        await resource.aclose()
    return elapsed


async def main(args: argparse.Namespace) -> None:
    if args.compare:
        for kind in ("send", "bytes", "bytearray"):
            elapsed = await run_once(args.size, args.count, kind, ping_pong=True)
            print(f"{kind:>9}: {args.count / elapsed:,.0f} round trips/s of {args.size} B")
    elif args.host:
        stream = await open_tcp_stream(args.host, args.port)
        stream = SocketStream(stream.socket, zerocopy="always")
        # A bytearray: a zero-copy send_all of one returns only after the kernel's
        # notification (of bytes, at the result: the notification would come later),
        # so every notification has arrived when the counts below are read.
        payload = bytearray(args.size)
        start = time.perf_counter()
        for _ in range(args.count):
            await stream.send_all(payload)
        await stream.aclose()
        rate = args.size * args.count / (time.perf_counter() - start) / 1e6
        print(f"sent {args.size * args.count} bytes at {rate:,.0f} MB/s")
    else:
        elapsed = await run_once(args.size, args.count, "bytearray", ping_pong=False)
        print(
            f"sent {args.size * args.count} bytes at {args.size * args.count / elapsed / 1e6:,.0f} MB/s"
        )
    stats = current_manager().statistics()
    print(
        f"SEND_ZC requests: {stats.zerocopy_sends}, notifications: "
        f"{stats.zerocopy_notifications}, of which copied: {stats.zerocopy_copied}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--size", type=int, default=65536)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--compare", action="store_true")
    trio_uring.run(main, parser.parse_args())
