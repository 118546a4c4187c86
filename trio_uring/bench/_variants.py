"""The benchmark's scenarios (load shapes) and server variants, and the request
scenario's constants (``python -m trio_uring bench``, ``benchmarks/``)."""

from __future__ import annotations

import dataclasses
import importlib.util

#: The reference variant every ratio is computed against.
BASELINE = "trio-epoll"


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One load shape: ``echo`` (closed-loop ping-pong), ``bulk`` (server streams to a
    sink) or ``req`` (keep-alive HTTP-style requests: ``size`` is the reply's length,
    :func:`http_keepalive` serves them)."""

    mode: str
    conns: int
    size: int

    @property
    def name(self) -> str:
        if self.mode == "bulk":
            return f"bulk {_size_label(self.size)}"
        if self.mode == "req":
            return f"keep-alive {self.conns}x"
        return f"echo {self.conns}x{_size_label(self.size)}"


@dataclasses.dataclass(frozen=True)
class Variant:
    """A server implementation, started as ``<server command> NAME --mode ...``."""

    name: str
    description: str
    requires: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    bulk: bool = True
    #: Serves ``--mode req`` (:func:`http_keepalive`).
    req: bool = False

    def serves(self, mode: str) -> bool:
        """Whether this variant's server has a ``--mode mode``."""
        return mode == "echo" or (mode == "bulk" and self.bulk) or (mode == "req" and self.req)

    def missing(self) -> str | None:
        """Why this variant cannot run here (a module it needs is missing), or None."""
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                return f"module {module} not available"
        return None


TRIO_VARIANTS: tuple[Variant, ...] = (
    Variant("trio-epoll", "trio.serve_tcp + SocketStream under trio.run (epoll)", req=True),
    Variant(
        "trio-uring",
        "the same trio code under trio_uring.run (trio sockets as SQEs where available)",
        req=True,
    ),
    Variant(
        "trio-uring-poll",
        "the same trio code under trio_uring.run, TRIO_URING_SOCKETS=0 (readiness via POLL_ADD)",
        env=(("TRIO_URING_SOCKETS", "0"),),
        req=True,
    ),
    Variant(
        "uring-streams",
        "trio_uring._net._highlevel.serve_tcp + trio_uring SocketStream",
        requires=("trio_uring._net._highlevel", "trio_uring._net._streams"),
        req=True,
    ),
    Variant(
        "uring-lowlevel",
        "trio_uring.lowlevel accept/recv/send loop per connection",
        requires=("trio_uring.lowlevel",),
    ),
)

QUICK_VARIANTS = ("trio-epoll", "trio-uring", "uring-streams")
QUICK_SCENARIOS = (
    Scenario("echo", 16, 64),
    Scenario("echo", 256, 64),
    Scenario("bulk", 1, 1 << 20),
)
FULL_SCENARIOS = (
    Scenario("echo", 1, 64),
    Scenario("echo", 16, 64),
    Scenario("echo", 256, 64),
    Scenario("echo", 16, 4096),
    Scenario("bulk", 1, 64 << 10),
    Scenario("bulk", 1, 1 << 20),
)


#: The keep-alive request/response scenario (``make bench``'s "requests" suite): 64
#: connections, each a closed loop of one request and its reply.
REQ_CONNS = 64
#: Its variants: trio on epoll, the same trio code on io_uring, trio_uring's streams.
REQ_VARIANTS = ("trio-epoll", "trio-uring", "uring-streams")
#: :func:`http_keepalive`'s reply, sent as two ``send_all`` calls (head, then body), as
#: HTTP/1.1 servers on h11 send them.
RESPONSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n"
    b"server: trio_uring-bench\r\n\r\n"
)
RESPONSE_BODY = b"Hello, world!"
#: :func:`http_keepalive` waits this long for the next request (``trio.fail_after``),
#: as hypercorn's keep-alive timeout (5 s) does.
REQUEST_TIMEOUT = 5.0


def req_scenario(conns: int = REQ_CONNS) -> Scenario:
    """The keep-alive request/response scenario at ``conns`` connections."""
    return Scenario("req", conns, len(RESPONSE_HEAD) + len(RESPONSE_BODY))


def _size_label(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}MiB"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10}KiB"
    return f"{n}B"
