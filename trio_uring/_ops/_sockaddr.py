"""Socket addresses in Python's tuple form <-> ``struct sockaddr`` bytes.

The kernel reads and writes raw ``struct sockaddr`` memory for CONNECT, ACCEPT,
SENDMSG and RECVMSG.  This module converts between that memory and the forms the
:mod:`socket` module uses (``(host, port)``, ``(host, port, flowinfo, scope_id)``,
``str``/``bytes`` paths), without any DNS: only numeric hosts are accepted.
"""

from __future__ import annotations

import operator
import os
import socket
import struct
from typing import Any, Final

#: ``sizeof(struct sockaddr_storage)``: room for any address the kernel returns.
SOCKADDR_STORAGE_SIZE: Final = 128

_AF_INET: Final = int(socket.AF_INET)
_AF_INET6: Final = int(socket.AF_INET6)
_AF_UNIX: Final = int(socket.AF_UNIX)
_SUN_PATH_OFFSET: Final = 2
_SUN_PATH_MAX: Final = 108

# sa_family is host order; port and IPv4 address are network order.
_sockaddr_in = struct.Struct("=H2s4s8x")
_sockaddr_in6 = struct.Struct("=H2s4s16sI")
_port = struct.Struct("!H")
_flowinfo = struct.Struct("!I")
_family = struct.Struct("=H")


def _check_port(port: object) -> int:
    value = operator.index(port)  # type: ignore[arg-type]
    if not 0 <= value <= 0xFFFF:
        raise OverflowError("connect(): port must be 0-65535.")
    return value


def _numeric_host(family: int, host: object, port: int) -> tuple[bytes, int]:
    """The packed address of a numeric ``host`` (and an IPv6 scope id, or 0)."""
    if not isinstance(host, str):
        if isinstance(host, bytes | bytearray):
            host = bytes(host).decode("idna")
        else:
            raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
    if host == "":
        host = "0.0.0.0" if family == _AF_INET else "::"
    elif host == "<broadcast>" and family == _AF_INET:
        host = "255.255.255.255"
    try:
        return socket.inet_pton(family, host), 0
    except OSError:
        pass
    flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
    if family == _AF_INET6:
        flags |= socket.AI_V4MAPPED
    try:
        # AI_NUMERICHOST never touches DNS; it handles "fe80::1%lo" and v4-mapped forms.
        info = socket.getaddrinfo(host, port, family, 0, 0, flags)
    except socket.gaierror:
        raise socket.gaierror(
            socket.EAI_NONAME,
            f"trio_uring.lowlevel takes numeric addresses only; resolve {host!r} with "
            "trio.socket.getaddrinfo() first",
        ) from None
    addr: tuple[Any, ...] = info[0][4]
    scope = int(addr[3]) if family == _AF_INET6 else 0
    return socket.inet_pton(family, str(addr[0])), scope


def pack(family: int, address: Any) -> bytes:
    """``address`` (the :mod:`socket` module's form for ``family``) as ``struct sockaddr`` bytes.

    Raises ``ValueError`` for a malformed tuple (as trio does), ``TypeError`` /
    ``OverflowError`` for a bad port (as the stdlib does), ``socket.gaierror`` for a
    host that is not numeric, and ``OSError(EAFNOSUPPORT)`` for other families.
    """
    if family == _AF_INET:
        if not isinstance(address, tuple) or len(address) != 2:
            raise ValueError("address should be a (host, port) tuple")
        port = _check_port(address[1])
        packed, _ = _numeric_host(family, address[0], port)
        return _sockaddr_in.pack(family, _port.pack(port), packed)
    if family == _AF_INET6:
        if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
            raise ValueError("address should be a (host, port, [flowinfo, [scopeid]]) tuple")
        port = _check_port(address[1])
        packed, scope = _numeric_host(family, address[0], port)
        flowinfo = operator.index(address[2]) if len(address) > 2 else 0
        if not 0 <= flowinfo <= 0xFFFFF:
            raise OverflowError("flowinfo must be 0-1048575.")
        if len(address) > 3:
            scope = operator.index(address[3])
        return _sockaddr_in6.pack(
            family, _port.pack(port), _flowinfo.pack(flowinfo), packed, scope & 0xFFFFFFFF
        )
    if family == _AF_UNIX:
        if isinstance(address, str | os.PathLike):
            path = os.fsencode(address)
        elif isinstance(address, bytes | bytearray | memoryview):
            path = bytes(address)
        else:
            raise TypeError(f"AF_UNIX address must be str or bytes, not {type(address).__name__}")
        if len(path) >= _SUN_PATH_MAX + (1 if path[:1] == b"\0" else 0):
            raise OSError(36, "AF_UNIX path too long")  # ENAMETOOLONG, as the stdlib says
        return _family.pack(family) + path
    raise OSError(97, f"trio_uring.lowlevel does not handle address family {family}")


def unpack(raw: bytes, length: int) -> Any:
    """The :mod:`socket` module's form of the ``length``-byte ``struct sockaddr`` in ``raw``.

    ``length`` 0 (an unnamed peer, e.g. a socketpair) gives ``None``, as the stdlib does.
    """
    if length <= 0:
        return None
    length = min(length, len(raw))
    (family,) = _family.unpack_from(raw)
    if family == _AF_INET and length >= _sockaddr_in.size - 8:
        _, port, packed = _sockaddr_in.unpack_from(raw)
        return (socket.inet_ntop(family, packed), _port.unpack(port)[0])
    if family == _AF_INET6 and length >= _sockaddr_in6.size:
        _, port, flow, packed, scope = _sockaddr_in6.unpack_from(raw)
        host = socket.inet_ntop(family, packed)
        return (host, _port.unpack(port)[0], _flowinfo.unpack(flow)[0], scope)
    if family == _AF_UNIX:
        path = raw[_SUN_PATH_OFFSET:length]
        if path[:1] == b"\0":
            return path  # Linux abstract namespace: bytes, as the stdlib returns
        return os.fsdecode(path.split(b"\0", 1)[0])
    return (family, raw[2:length])


# KeyboardInterrupt protection (issue 19, finding 3): an accept decodes the peer's
# address here after its socket object exists (in the compiled build this is the only
# Python code on that path): an interrupt would drop the new socket unclosed.
# Deferred to the caller's next checkpoint instead.
from .._core._trio_compat import ki_protect  # noqa: E402

ki_protect(unpack)
