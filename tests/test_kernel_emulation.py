"""Older kernels, emulated on this one: ``TRIO_URING_EMULATE_KERNEL`` and the feature table.

Real rings and real runs throughout: the emulation sets up each ring without
the setup flags the release lacks and masks its probe, so the degraded paths
below run for real.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio
import trio.testing
from trio import socket as tsocket

import trio_uring
import trio_uring.lowlevel
from tests._pairs import tcp_stream_pair
from trio_uring._core import _kernels
from trio_uring._core._constants import (
    FEAT_CQE_SKIP,
    FEAT_EXT_ARG,
    FEATURE_NAMES,
    SETUP_COOP_TASKRUN,
    SETUP_NAMES,
    SETUP_SUBMIT_ALL,
    SETUP_TASKRUN_FLAG,
    Op,
)
from trio_uring._core._ring import REQUIRED_FEATURES, REQUIRED_OPS, Ring
from trio_uring._ops import _files as _fd_ops

ROOT = Path(__file__).resolve().parent.parent
ENV = _kernels.ENV


def native_ring() -> Ring:
    saved = os.environ.pop(ENV, None)
    try:
        return Ring(entries=8)
    finally:
        if saved is not None:
            os.environ[ENV] = saved


@pytest.fixture(scope="module")
def native() -> tuple[frozenset[int], int, tuple[int, int]]:
    """What this kernel reports without emulation: opcodes, features, release."""
    ring = native_ring()
    try:
        return ring.supported_ops, ring.features, ring.release
    finally:
        ring.close()


def emulated_ring(monkeypatch: pytest.MonkeyPatch, release: str) -> Ring:
    monkeypatch.setenv(ENV, release)
    return Ring(entries=8)


# ------------------------------------------------------------------- the table
def test_table_covers_every_opcode_and_flag_trio_uring_declares() -> None:
    names = [item.name for item in _kernels.TABLE]
    assert len(names) == len(set(names))
    opcodes = {item.value for item in _kernels.TABLE if item.kind == _kernels.OPCODE}
    assert opcodes == {int(op) for op in Op}
    features = {item.value for item in _kernels.TABLE if item.kind == _kernels.FEATURE}
    assert set(FEATURE_NAMES) <= features
    setup = {item.value for item in _kernels.TABLE if item.kind == _kernels.SETUP}
    assert set(SETUP_NAMES) == setup
    for item in _kernels.TABLE:
        assert (5, 1) <= item.since <= (6, 18), item
        assert item.ref, item
        if item.without:
            assert item.uses, item
    # What the ring requires is in every supported release.
    for bit in REQUIRED_FEATURES:
        (item,) = [i for i in _kernels.TABLE if i.kind == _kernels.FEATURE and i.value == bit]
        assert item.since <= _kernels.MINIMUM
    for op in REQUIRED_OPS:
        assert _kernels.has_opcode(op, _kernels.MINIMUM)


def test_opcode_versions_grow_with_their_numbers() -> None:
    """Opcodes are numbered in merge order, so their releases never go backwards."""
    entries = sorted(
        (item for item in _kernels.TABLE if item.kind == _kernels.OPCODE), key=lambda i: i.value
    )
    for earlier, later in itertools.pairwise(entries):
        assert earlier.since <= later.since, (earlier.name, later.name)


def test_feature_bits_are_in_release_order() -> None:
    entries = sorted(
        (item for item in _kernels.TABLE if item.kind == _kernels.FEATURE), key=lambda i: i.value
    )
    assert [item.value for item in entries] == [1 << n for n in range(len(entries))]
    for earlier, later in itertools.pairwise(entries):
        assert earlier.since <= later.since, (earlier.name, later.name)


@pytest.mark.parametrize(
    ("text", "release"),
    [("5.15", (5, 15)), ("5.15.0-91-generic", (5, 15)), ("v6.1", (6, 1)), (" 6.18.44 ", (6, 18))],
)
def test_parse_release(text: str, release: tuple[int, int]) -> None:
    assert _kernels.parse_release(text) == release


@pytest.mark.parametrize("text", ["", "5", "five.fifteen", "5.15x"])
def test_parse_release_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="not a Linux release"):
        _kernels.parse_release(text)


def test_a_bad_emulation_value_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=ENV):
        emulated_ring(monkeypatch, "latest")


# ---------------------------------------------------------------- the masks
def test_native_ring_masks_nothing(
    native: tuple[frozenset[int], int, tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    ring = Ring(entries=8)
    try:
        assert ring.emulated is None
        assert (ring.supported_ops, ring.features, ring.release) == native
        assert ring.release >= _kernels.probed_release(ring.supported_ops, ring.features)
    finally:
        ring.close()


@pytest.mark.parametrize("release", ["5.11", "5.15", "5.18", "5.19", "6.1", "6.8"])
def test_the_ring_reports_only_what_the_release_has(
    release: str,
    native: tuple[frozenset[int], int, tuple[int, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ops, features, real = native
    version = _kernels.parse_release(release)
    if version > real:
        pytest.skip(f"this kernel ({real}) is older than {release}")
    ring = emulated_ring(monkeypatch, release)
    try:
        assert ring.emulated == version
        assert ring.release == version
        for item in _kernels.TABLE:
            expected = item.since <= version
            if item.kind == _kernels.OPCODE:
                assert (item.value in ring.supported_ops) == (expected and item.value in ops)
            elif item.kind == _kernels.FEATURE:
                assert bool(ring.features & item.value) == bool(expected and features & item.value)
            elif item.kind == _kernels.SETUP:
                # Really set up without the flags the release would refuse.
                assert bool(ring.setup_flags & item.value) == expected
            assert ring.has(item) == bool(
                expected
                and (item.kind != _kernels.OPCODE or item.value in ops)
                and (item.kind != _kernels.FEATURE or features & item.value)
            ), item.name
        assert not set(ring.supported_ops) - set(ops)
    finally:
        ring.close()


def test_a_515_ring_lacks_what_ubuntu_2204_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = emulated_ring(monkeypatch, "5.15")
    try:
        assert not ring.supports(Op.SEND_ZC)
        assert not ring.supports(Op.FTRUNCATE)
        assert not ring.supports(Op.SOCKET)
        assert ring.supports(Op.MKDIRAT) and ring.supports(Op.SHUTDOWN)
        assert not ring.setup_flags & (SETUP_COOP_TASKRUN | SETUP_TASKRUN_FLAG | SETUP_SUBMIT_ALL)
        assert ring.setup_flag_names() == ["CQSIZE", "CLAMP"]
        assert not ring.features & FEAT_CQE_SKIP
        assert ring.features & FEAT_EXT_ARG
        assert not ring.has(_kernels.MULTISHOT_RECV)
        assert not ring.has(_kernels.PBUF_RING)
        assert not ring.has(_kernels.ZC_REPORT_USAGE)
        assert not ring.has(_kernels.entry("IORING_ACCEPT_MULTISHOT"))
        assert not ring.has(_kernels.entry("IORING_RECVSEND_POLL_FIRST"))
        assert not ring.has(_kernels.entry("IORING_ASYNC_CANCEL_FD"))
        assert ring.has(_kernels.MULTISHOT_POLL)  # 5.13
    finally:
        ring.close()


def test_61_has_send_zc_but_not_its_usage_report(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = emulated_ring(monkeypatch, "6.1")
    try:
        assert ring.supports(Op.SEND_ZC) and ring.has(_kernels.MULTISHOT_RECV)
        assert not ring.has(_kernels.ZC_REPORT_USAGE)
        assert not ring.has(_kernels.PBUF_STATUS)
    finally:
        ring.close()


@pytest.mark.parametrize(
    ("release", "why"),
    [
        ("5.10", "the kernel's io_uring lacks EXT_ARG (Linux 5.11)"),
        ("5.4", "trio_uring needs Linux 5.11 or newer"),
        ("4.19", "io_uring_setup failed with ENOSYS"),
    ],
)
def test_below_511_io_uring_is_unavailable(
    release: str, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(OSError) as info:
        emulated_ring(monkeypatch, release)
    assert why in str(info.value)
    assert f"(emulating Linux {release}: {ENV})" in str(info.value)


# ------------------------------------------------------------- runs under 5.15
def run_under(monkeypatch: pytest.MonkeyPatch, release: str, main: object) -> object:
    """``trio_uring.run(main)`` on a manager whose ring emulates ``release``."""
    monkeypatch.setenv(ENV, release)
    return trio_uring.run(main)  # type: ignore[arg-type]


def test_streams_work_under_515(monkeypatch: pytest.MonkeyPatch) -> None:
    """Echo through SocketStream: one RECV per receive_some, SEND for "always"."""

    async def main() -> None:
        manager = trio_uring.lowlevel.current_manager()
        assert manager.ring.emulated == (5, 15)
        assert not manager.ring.setup_flags & SETUP_COOP_TASKRUN
        a, b = await tcp_stream_pair(zerocopy="always")
        assert not a.zerocopy  # no SEND_ZC: "always" sends with SEND
        payload = os.urandom(4 << 20)

        async def echo() -> None:
            while data := await b.receive_some():
                await b.send_all(data)
            await b.send_eof()

        got = bytearray()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            nursery.start_soon(a.send_all, payload)
            while len(got) < len(payload):
                got += await a.receive_some()
            await a.send_eof()
            assert await a.receive_some() == b""
        assert got == payload
        assert a._ring is None and b._ring is None  # no multishot receive
        stats = manager.statistics()
        assert stats.zerocopy_sends == 0
        await a.aclose()
        await b.aclose()

    run_under(monkeypatch, "5.15", main)


def test_cancellation_and_deadlines_lose_nothing_under_511(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CQE_SKIP: every internal cancel and linked timeout posts a CQE the manager ignores."""

    async def main() -> None:
        manager = trio_uring.lowlevel.current_manager()
        assert not manager.ring.features & FEAT_CQE_SKIP
        a, b = await tcp_stream_pair()
        for i in range(20):
            with trio.move_on_after(0.002):  # a linked timeout ends the RECV
                await b.receive_some()
            with trio.CancelScope() as scope:  # trio cancels the submitted RECV
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(b.receive_some)
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()
            await a.send_all(b"%d;" % i)
            assert await b.receive_some() == b"%d;" % i
        stats = manager.statistics()
        assert stats.async_cancels >= 20
        await a.aclose()
        await b.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert manager.statistics().operations_in_flight <= 1  # trio's wakeup socket

    run_under(monkeypatch, "5.11", main)


def test_files_without_newer_opcodes_use_a_thread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "f"

    async def main() -> None:
        manager = trio_uring.lowlevel.current_manager()
        assert not manager.supports(Op.FTRUNCATE)
        fd = await trio_uring.lowlevel.openat(path, os.O_RDWR | os.O_CREAT)
        try:
            await trio_uring.lowlevel.write(fd, b"x" * 1000, 0)
            assert _fd_ops._uring(Op.FTRUNCATE) is None  # the thread fallback
            assert _fd_ops._uring(Op.WRITE) is manager
            await trio_uring.lowlevel.ftruncate(fd, 10)
            assert os.fstat(fd).st_size == 10
        finally:
            await trio_uring.lowlevel.close(fd)

    run_under(monkeypatch, "6.8", main)


def test_trio_sockets_and_listeners_work_under_511(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        listeners = await trio_uring.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:

            async def serve_one() -> None:
                stream = await listeners[0].accept()
                async with stream:
                    await stream.send_all((await stream.receive_some()).upper())

            nursery.start_soon(serve_one)
            client = tsocket.socket()
            with client:
                await client.connect(("127.0.0.1", port))
                await client.send(b"hello")
                assert await client.recv(10) == b"HELLO"
        for listener in listeners:
            await listener.aclose()

    run_under(monkeypatch, "5.11", main)


# ------------------------------------------------------- below 5.11: epoll
CHILD = textwrap.dedent(
    """
    import warnings, trio, trio_uring

    async def main():
        return trio.lowlevel.current_statistics().io_statistics.backend

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = trio_uring.run(main)
    print(backend)
    for w in caught:
        print(w.category.__name__, w.message)
    """
)


def run_child(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def test_510_falls_back_to_epoll_with_a_warning() -> None:
    proc = run_child(**{ENV: "5.10", "TRIO_URING_REQUIRE": "0"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "epoll"
    assert lines[1].startswith("UringUnavailableWarning trio_uring: io_uring is unavailable")
    assert "lacks EXT_ARG (Linux 5.11) (emulating Linux 5.10" in lines[1]


def test_510_under_require_is_an_error() -> None:
    proc = run_child(**{ENV: "5.10", "TRIO_URING_REQUIRE": "1"})
    assert proc.returncode != 0
    assert "UringUnavailableError" in proc.stderr
    assert "emulating Linux 5.10" in proc.stderr


def test_info_shows_the_emulated_release_and_its_fallbacks() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "trio_uring", "info"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, ENV: "5.15"},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "emulated kernel  Linux 5.15" in out
    assert "io_uring         usable (as of Linux 5.15)" in out
    assert re.search(r"SEND_ZC +NO", out)
    for name in (
        "IORING_OP_SEND_ZC (Linux 6.0) missing",
        "IORING_OP_FTRUNCATE (Linux 6.9) missing",
        "IORING_SETUP_COOP_TASKRUN (Linux 5.19) missing",
        "IORING_FEAT_CQE_SKIP (Linux 5.17) missing",
        "IORING_RECV_MULTISHOT (Linux 6.0) missing",
        "IORING_REGISTER_PBUF_RING (Linux 5.19) missing",
    ):
        assert name in out, out
    proc = subprocess.run(
        [sys.executable, "-m", "trio_uring", "info"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, ENV: "5.10"},
    )
    assert proc.returncode == 1
    assert "UNAVAILABLE: the kernel's io_uring lacks EXT_ARG (Linux 5.11)" in proc.stdout


# ------------------------------------------------------------ pytest plugin
INNER = textwrap.dedent(
    """
    import os, subprocess, sys
    import trio, trio_uring.lowlevel

    def test_rings_and_children_emulate():
        assert os.environ["TRIO_URING_EMULATE_KERNEL"] == "5.15"
        async def main():
            ring = trio_uring.lowlevel.current_manager().ring
            return ring.emulated
        assert trio.run(main) == (5, 15)
        child = "import trio_uring._core._kernels as k; print(k.emulated())"
        out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
        assert out.stdout.strip() == "(5, 15)", out.stderr
    """
)


def run_pytest(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(INNER)
    env = {k: v for k, v in os.environ.items() if k not in ("TRIO_URING_INSTALL", "PYTHONPATH")}
    env[ENV] = "6.1"  # the option wins over the environment
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:anyio",
         "-W", "error", *flags, str(tmp_path / "test_inner.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_plugin_option_emulates_for_the_session_and_its_children(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, "--trio-uring", "--trio-uring-kernel=5.15")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert "emulating Linux 5.15" in proc.stdout  # the header and the summary say so


def test_plugin_option_rejects_a_bad_release(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, "--trio-uring-kernel=newest")
    assert proc.returncode == 4, proc.stdout + proc.stderr  # a usage error
    assert "not a Linux release" in proc.stderr


def test_docs_table_lists_every_used_entry_with_its_release() -> None:
    text = (ROOT / "docs" / "kernels.rst").read_text(encoding="utf-8")
    for item in _kernels.TABLE:
        if item.uses:
            row = re.search(rf"``{item.name}``\s*\n\s*- (\S+)", text)
            assert row is not None, item.name
            assert row[1] == item.version, item.name


def test_socketstream_binds_under_emulation_only_to_its_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stream made in an emulated run decides from that run's ring (no global state)."""

    async def probe() -> tuple[bool, bool]:
        a, b = await tcp_stream_pair()
        await a.send_all(b"x")
        assert await b.receive_some() == b"x"
        result = (a.zerocopy, b._ring is not None)
        await a.aclose()
        await b.aclose()
        return result

    assert run_under(monkeypatch, "5.15", probe) == (False, False)
    native = native_ring()
    try:
        full = native.has(_kernels.MULTISHOT_RECV) and native.has(_kernels.ZC_REPORT_USAGE)
    finally:
        native.close()
    monkeypatch.delenv(ENV)
    if full:
        assert trio_uring.run(probe) == (True, True)
