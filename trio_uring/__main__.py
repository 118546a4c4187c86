"""``python -m trio_uring``: ``info`` (feature probe), ``bench`` (side-by-side benchmark),
``run`` (a Python program, unchanged, on io_uring) and ``docs`` (the documentation pages)."""

from __future__ import annotations

import argparse
import sys

#: ``--help``'s text (plain: the module docstring is reStructuredText).
DESCRIPTION = (
    "trio_uring's command line: info (what the kernel offers, which build runs), bench "
    "(benchmarks against trio's epoll backend), run (a Python program, unchanged, on "
    "io_uring), docs (the documentation pages)."
)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["run"]:
        # The program's arguments are not ours to parse: argparse would take the
        # program's options (``-m pytest -q``) for the launcher's.
        from ._run._launcher import main as run_main

        return run_main(args_in[1:])
    parser = argparse.ArgumentParser(prog="python -m trio_uring", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser(
        "info", help="kernel, io_uring support, probed operations, active fallbacks"
    )
    bench = sub.add_parser(
        "bench",
        help="echo, bulk, connection-per-request, keep-alive request/response, file-serving "
        "and idle-connection memory benchmarks against trio's epoll backend",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="one short run per cell (about 45 seconds): a smoke test of the machine",
    )
    bench.add_argument(
        "--suites",
        default="echo,connections,files,idle,requests",
        help="comma-separated subset of: echo (echo and bulk streams), connections "
        "(connection per request), files (serving a file), idle (server memory holding "
        "many quiet connections), requests (keep-alive request/response); default: all",
    )
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    sub.add_parser(
        "run",
        help="run a Python program (script or -m module) unchanged with every trio run on "
        "io_uring; see: python -m trio_uring run --help",
        add_help=False,
    ).add_argument("argv", nargs=argparse.REMAINDER)
    docs = sub.add_parser(
        "docs",
        help="list the documentation pages the README names as docs/PAGE.rst, or print one",
    )
    docs.add_argument("page", nargs="?", help="a page, e.g. performance (default: list them)")
    # A sub-command's bad option is reported with that sub-command's usage (argparse
    # would report it with the top-level one).
    args, unknown = parser.parse_known_args(args_in)
    if unknown:
        {"info": info, "bench": bench, "docs": docs}[args.command].error(
            f"unrecognized arguments: {' '.join(unknown)}"
        )
    if args.command == "info":
        from ._run._info import main as info_main

        return info_main()
    if args.command == "docs":
        from ._run._docs import main as docs_main

        return docs_main(args.page)
    from .bench._harness import SUITES
    from .bench._harness import main as bench_main

    suites = [name.strip() for name in args.suites.split(",") if name.strip()]
    if not suites or set(suites) - set(SUITES):
        bench.error(f"--suites takes a comma-separated subset of {', '.join(SUITES)}")
    return bench_main(quick=args.quick, json_path=args.json, suites=suites)


if __name__ == "__main__":
    sys.exit(main())
