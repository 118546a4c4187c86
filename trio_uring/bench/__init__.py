"""The benchmark harness behind ``python -m trio_uring bench`` and ``benchmarks/``.

It is shipped with the package so an installed trio_uring can measure itself
against trio's epoll backend; the repository's ``benchmarks/`` scripts add
asyncio/uvloop servers, instruction counts, plots and result files on top of
the names exported here.  Nothing in the I/O manager imports this package.
"""

from ._connections import format_conn_bench, run_conn_bench
from ._harness import SUITES, main
from ._loadgen import LOADGEN_C, Loadgen, find_loadgen
from ._measure import (
    ServerFailed,
    cpu_plan,
    measure,
    run_bench,
    run_req_bench,
    start_server,
    summarize,
)
from ._report import format_header, format_req_bench, format_table
from ._sendfile import format_file_bench, run_file_bench
from ._servers import (
    http_keepalive,
    pin_cpu,
    ready_line,
    run_trio_server,
    serve_main,
    server_arg_parser,
    trio_echo,
)
from ._variants import (
    BASELINE,
    FULL_SCENARIOS,
    QUICK_SCENARIOS,
    QUICK_VARIANTS,
    REQ_CONNS,
    REQ_VARIANTS,
    REQUEST_TIMEOUT,
    RESPONSE_BODY,
    RESPONSE_HEAD,
    TRIO_VARIANTS,
    Scenario,
    Variant,
    req_scenario,
)

__all__ = [
    "BASELINE",
    "FULL_SCENARIOS",
    "LOADGEN_C",
    "QUICK_SCENARIOS",
    "QUICK_VARIANTS",
    "REQ_CONNS",
    "REQ_VARIANTS",
    "REQUEST_TIMEOUT",
    "RESPONSE_BODY",
    "RESPONSE_HEAD",
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
    "format_req_bench",
    "format_table",
    "http_keepalive",
    "main",
    "measure",
    "pin_cpu",
    "ready_line",
    "req_scenario",
    "run_bench",
    "run_conn_bench",
    "run_file_bench",
    "run_req_bench",
    "run_trio_server",
    "serve_main",
    "server_arg_parser",
    "start_server",
    "summarize",
    "trio_echo",
]
