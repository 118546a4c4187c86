"""The benchmark harness behind ``python -m trio_uring bench`` and ``benchmarks/``.

It is shipped with the package so an installed trio_uring can measure itself
against trio's epoll backend; the repository's ``benchmarks/`` scripts add
asyncio/uvloop servers, instruction counts, plots and result files on top of
the names exported here.  Nothing in the I/O manager imports this package.
"""

from ._connections import format_conn_bench, run_conn_bench
from ._harness import (
    BASELINE,
    FULL_SCENARIOS,
    LOADGEN_C,
    QUICK_SCENARIOS,
    QUICK_VARIANTS,
    SUITES,
    TRIO_VARIANTS,
    Loadgen,
    Scenario,
    ServerFailed,
    Variant,
    cpu_plan,
    find_loadgen,
    format_header,
    format_table,
    main,
    measure,
    pin_cpu,
    ready_line,
    run_bench,
    run_trio_server,
    serve_main,
    server_arg_parser,
    start_server,
    summarize,
    trio_echo,
)
from ._sendfile import format_file_bench, run_file_bench

__all__ = [
    "BASELINE",
    "FULL_SCENARIOS",
    "LOADGEN_C",
    "QUICK_SCENARIOS",
    "QUICK_VARIANTS",
    "TRIO_VARIANTS",
    "Loadgen",
    "Scenario",
    "ServerFailed",
    "SUITES",
    "Variant",
    "cpu_plan",
    "format_conn_bench",
    "format_file_bench",
    "find_loadgen",
    "format_header",
    "format_table",
    "main",
    "measure",
    "pin_cpu",
    "ready_line",
    "run_bench",
    "run_conn_bench",
    "run_file_bench",
    "run_trio_server",
    "serve_main",
    "server_arg_parser",
    "start_server",
    "summarize",
    "trio_echo",
]
