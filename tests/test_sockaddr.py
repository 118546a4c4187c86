"""Socket addresses <-> ``struct sockaddr`` bytes (``trio_uring/_ops/_sockaddr.py``).

The packed bytes are checked against the kernel's own: ``getsockname(2)``
called through ctypes returns the raw ``struct sockaddr`` of a bound socket,
which must equal ``pack()`` of the stdlib's form and ``unpack()`` back to it.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_uring._ops import _sockaddr

ports = st.integers(0, 0xFFFF)


@given(st.ip_addresses(v=4), ports)
def test_ipv4_round_trip(host: ipaddress.IPv4Address, port: int) -> None:
    raw = _sockaddr.pack(socket.AF_INET, (str(host), port))
    assert len(raw) == 16
    assert _sockaddr.unpack(raw, len(raw)) == (str(host), port)


@given(st.ip_addresses(v=6), ports, st.integers(0, 0xFFFFF), st.integers(0, 0xFFFFFFFF))
def test_ipv6_round_trip(host: ipaddress.IPv6Address, port: int, flow: int, scope: int) -> None:
    raw = _sockaddr.pack(socket.AF_INET6, (str(host), port, flow, scope))
    assert len(raw) == 28
    assert _sockaddr.unpack(raw, len(raw)) == (
        socket.inet_ntop(socket.AF_INET6, host.packed),
        port,
        flow,
        scope,
    )


def kernel_sockname(sock: socket.socket) -> bytes:
    """The raw ``struct sockaddr`` the kernel writes for ``getsockname(2)``."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(_sockaddr.SOCKADDR_STORAGE_SIZE)
    size = ctypes.c_uint32(len(buf))
    if libc.getsockname(sock.fileno(), buf, ctypes.byref(size)) != 0:
        raise OSError(ctypes.get_errno(), "getsockname")
    return buf.raw[: size.value]


@pytest.mark.parametrize(
    ("family", "address"),
    [
        (socket.AF_INET, ("127.0.0.1", 0)),
        (socket.AF_INET6, ("::1", 0)),
        (socket.AF_UNIX, "\0trio-uring-test-sockaddr"),
    ],
)
def test_packed_bytes_are_the_kernels(family: int, address: object) -> None:
    with socket.socket(family) as sock:
        try:
            sock.bind(address)
        except OSError as exc:  # pragma: no cover - a host without IPv6
            pytest.skip(f"cannot bind {address!r}: {exc}")
        raw = kernel_sockname(sock)
        name = sock.getsockname()
        assert _sockaddr.pack(family, name) == raw
        assert _sockaddr.unpack(raw, len(raw)) == name


def test_empty_and_broadcast_hosts() -> None:
    assert _sockaddr.unpack(_sockaddr.pack(socket.AF_INET, ("", 80)), 16) == ("0.0.0.0", 80)
    assert _sockaddr.unpack(_sockaddr.pack(socket.AF_INET6, ("", 80)), 28)[:2] == ("::", 80)
    broadcast = _sockaddr.pack(socket.AF_INET, ("<broadcast>", 9))
    assert _sockaddr.unpack(broadcast, 16) == ("255.255.255.255", 9)
    assert _sockaddr.unpack(_sockaddr.pack(socket.AF_INET, (b"10.0.0.1", 1)), 16) == ("10.0.0.1", 1)


def test_ipv6_scope_from_the_host_string() -> None:
    raw = _sockaddr.pack(socket.AF_INET6, ("fe80::1%lo", 7))
    assert _sockaddr.unpack(raw, len(raw)) == ("fe80::1", 7, 0, socket.if_nametoindex("lo"))
    mapped = _sockaddr.pack(socket.AF_INET6, ("::ffff:127.0.0.1", 7))
    assert _sockaddr.unpack(mapped, 28)[:2] == ("::ffff:127.0.0.1", 7)


def test_unix_paths(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "sock")
    raw = _sockaddr.pack(socket.AF_UNIX, path)
    assert _sockaddr.unpack(raw, len(raw)) == path
    # a path the kernel filled in: it may carry a trailing NUL
    assert _sockaddr.unpack(raw + b"\0", len(raw) + 1) == path
    assert _sockaddr.unpack(_sockaddr.pack(socket.AF_UNIX, path.encode()), len(raw)) == path
    abstract = _sockaddr.pack(socket.AF_UNIX, b"\0trio-uring")
    assert _sockaddr.unpack(abstract, len(abstract)) == b"\0trio-uring"


def test_unnamed_peer_and_unknown_family() -> None:
    assert _sockaddr.unpack(b"", 0) is None
    raw = socket.AF_PACKET.to_bytes(2, "little") + b"\x01\x02\x03"
    assert _sockaddr.unpack(raw, len(raw)) == (socket.AF_PACKET, b"\x01\x02\x03")


@pytest.mark.parametrize(
    ("family", "address", "error", "match"),
    [
        (socket.AF_INET, ("127.0.0.1",), ValueError, "(host, port)"),
        (socket.AF_INET, "127.0.0.1:80", ValueError, "(host, port)"),
        (socket.AF_INET6, ("::1", 1, 2, 3, 4), ValueError, "flowinfo"),
        (socket.AF_INET, ("127.0.0.1", 70000), OverflowError, "0-65535"),
        (socket.AF_INET, ("127.0.0.1", -1), OverflowError, "0-65535"),
        (socket.AF_INET, ("127.0.0.1", "80"), TypeError, ""),
        (socket.AF_INET, (127, 80), TypeError, "str, bytes or bytearray"),
        (socket.AF_INET6, ("::1", 1, 1 << 20), OverflowError, "flowinfo"),
        (socket.AF_UNIX, 5, TypeError, "AF_UNIX address"),
    ],
)
def test_malformed_addresses_raise_like_the_stdlib(
    family: int, address: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error) as info:
        _sockaddr.pack(family, address)
    assert match in str(info.value)


def test_names_are_never_resolved() -> None:
    with pytest.raises(socket.gaierror) as info:
        _sockaddr.pack(socket.AF_INET, ("localhost", 80))
    assert info.value.errno == socket.EAI_NONAME
    assert "getaddrinfo" in str(info.value)


def test_unix_path_too_long_and_other_families() -> None:
    with pytest.raises(OSError) as info:
        _sockaddr.pack(socket.AF_UNIX, "x" * 108)
    assert info.value.errno == errno.ENAMETOOLONG
    _sockaddr.pack(socket.AF_UNIX, b"\0" + b"x" * 107)  # abstract names may use all 108
    with pytest.raises(OSError) as info:
        _sockaddr.pack(socket.AF_PACKET, ("lo", 0))
    assert info.value.errno == errno.EAFNOSUPPORT
