"""``python -m trio_uring``: ``info`` (feature probe) and ``bench`` (side-by-side benchmark)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trio_uring", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="kernel, io_uring support, probed operations, active fallbacks")
    bench = sub.add_parser("bench", help="echo and bulk benchmarks against trio's epoll backend")
    bench.add_argument("--quick", action="store_true", help="the under-a-minute version")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.command == "info":
        from ._info import main as info_main

        return info_main()
    from .bench._harness import main as bench_main

    return bench_main(quick=args.quick, json_path=args.json)


if __name__ == "__main__":
    sys.exit(main())
