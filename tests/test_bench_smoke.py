"""The benchmark machinery runs end to end (not a timing test: any positive rate passes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from trio_uring import bench as _bench

pytestmark = pytest.mark.no_uring_ok

ROOT = Path(__file__).resolve().parent.parent


def _check(doc: dict[str, Any], loadgen_kind: str) -> None:
    doc = json.loads(json.dumps(doc))  # JSON-serializable
    assert doc["config"]["loadgen"] == loadgen_kind
    rows = doc["results"]
    assert isinstance(rows, list) and len(rows) == 1, rows
    row = rows[0]
    assert "error" not in row, row
    assert row["variant"] == "trio-epoll" and row["backend"] == "epoll"
    assert row["messages"] > 0 and row["msgs_per_s"] > 0
    assert 0 < row["p50_us"] <= row["p99_us"] <= row["max_us"]
    assert row["server_cpu_s"] >= 0
    (entry,) = doc["summary"]
    assert entry["ratio"] == 1.0
    table = _bench.format_table(doc)
    assert "trio-epoll" in table and "1.00x" in table
    assert _bench.format_header(doc)


@pytest.mark.parametrize("force_python", [False, True], ids=["c-loadgen", "python-loadgen"])
def test_quick_bench_runs(force_python: bool, tmp_path: Path) -> None:
    loadgen = _bench.find_loadgen(cache_dir=tmp_path, force_python=force_python)
    if not force_python and loadgen.kind != "c":
        pytest.skip("no C compiler")
    variants = [v for v in _bench.TRIO_VARIANTS if v.name == "trio-epoll"]
    doc = _bench.run_bench(
        variants,
        [_bench.Scenario("echo", 4, 64)],
        warmup=0.05,
        duration=0.25,
        syscalls="off",
        loadgen=loadgen,
        progress=False,
    )
    _check(doc, loadgen.kind)


def test_loadgen_source_ships_with_the_package() -> None:
    """The C load generator is package data, so an installed trio_uring can benchmark itself."""
    assert "int main(" in _bench.LOADGEN_C
    assert "epoll_wait" in _bench.LOADGEN_C


def test_summary_ratios() -> None:
    rows = [
        {"scenario": "s", "variant": "trio-epoll", "backend": "epoll", "msgs_per_s": m, "cpu_us_per_msg": 10.0}
        for m in (90.0, 100.0, 300.0)
    ] + [
        {"scenario": "s", "variant": "x", "backend": "io_uring", "msgs_per_s": 250.0, "cpu_us_per_msg": 5.0},
        {"scenario": "s", "variant": "x", "backend": "io_uring", "error": "boom"},
        {"scenario": "s", "variant": "x", "backend": "io_uring", "messages": 10, "syscall_run": True,
         "syscalls_per_msg": 0.5, "waits_per_msg": 0.1},
    ]  # fmt: skip
    by = {e["variant"]: e for e in _bench.summarize(rows)}
    assert by["trio-epoll"]["msgs_per_s"] == 100.0  # median
    assert by["x"]["ratio"] == 2.5 and by["x"]["cpu_ratio"] == 0.5
    assert by["x"]["runs"] == 1 and by["x"]["syscalls_per_msg"] == 0.5


def test_bench_cli_rejects_unknown_suites() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "trio_uring", "bench", "--quick", "--suites", "echo,nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "echo, connections, files" in proc.stderr
    with pytest.raises(ValueError, match="unknown suites"):
        _bench.main(quick=True, suites=["nope"])


def test_idle_bench_measures_a_server_holding_connections() -> None:
    from trio_uring.bench import _idle

    doc = _idle.run_idle_bench(50, ["trio-epoll"])
    (row,) = doc["results"]
    assert "error" not in row, row
    assert row["backend"] == "epoll" and row["conns"] == 50
    assert 0 < row["rss_before_kib"] and row["rss_kib"] <= row["peak_kib"]
    assert "trio-epoll" in _idle.format_idle_bench(doc)


def _c_loadgen_or_skip(tmp_path: Path) -> _bench.Loadgen:
    loadgen = _bench.find_loadgen(cache_dir=tmp_path)
    if loadgen.kind != "c":
        pytest.skip("no C compiler")
    return loadgen


def test_keepalive_request_bench_runs(tmp_path: Path) -> None:
    """``make bench``'s "requests" suite: every variant answered keep-alive requests."""
    import trio_uring

    loadgen = _c_loadgen_or_skip(tmp_path)
    doc = _bench.run_req_bench(
        reps=1, warmup=0.05, duration=0.3, syscalls="off", loadgen=loadgen, progress=False
    )
    doc = json.loads(json.dumps(doc))
    rows = doc["results"]
    assert [r["variant"] for r in rows] == list(_bench.REQ_VARIANTS), rows
    uring = "io_uring" if trio_uring.unavailable_reason() is None else "epoll"
    for row in rows:
        assert "error" not in row, row
        assert row["scenario"] == "keep-alive 64x" and row["mode"] == "req"
        assert row["backend"] == ("epoll" if row["variant"] == "trio-epoll" else uring)
        assert row["messages"] > 0 and row["msgs_per_s"] > 0
        # every reply arrived whole: bytes are whole replies
        assert row["bytes"] == row["messages"] * _bench.req_scenario().size
        assert 0 < row["p50_us"] <= row["p99_us"]
        assert row["cpu_us_per_msg"] >= 0
    by = {e["variant"]: e for e in doc["summary"]}
    assert by["trio-epoll"]["ratio"] == 1.0 and set(by) == set(_bench.REQ_VARIANTS)
    table = _bench.format_req_bench(doc)
    assert "keep-alive 64x" in table and "uring-streams" in table


def test_keepalive_handler_replies_in_two_sends() -> None:
    """The server side of the scenario: head and body per request, until the peer closes."""
    import trio
    import trio.testing

    async def main() -> bytes:
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_bench.http_keepalive, server)
            got = b""
            for i in range(1, 3):
                await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                while len(got) < i * _bench.req_scenario().size:
                    got += await client.receive_some()
            await client.aclose()
        return got

    reply = _bench.RESPONSE_HEAD + _bench.RESPONSE_BODY
    assert trio.run(main) == reply * 2


@pytest.mark.skipif(
    not (shutil.which("valgrind") and shutil.which("callgrind_control")), reason="no valgrind"
)
def test_bench_instr_counts_requests_and_connections(tmp_path: Path) -> None:
    """``make bench-instr``'s new scenarios on a short run: counts per request and per
    connection, every request answered."""
    import sys

    loadgen = _c_loadgen_or_skip(tmp_path)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import instructions
        from servers import ALL_VARIANTS
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    epoll = next(v for v in ALL_VARIANTS if v.name == "trio-epoll")
    req = _bench.req_scenario()
    row = instructions.count(epoll, req.conns, req.size, 300, loadgen, "req", warmup=100)
    assert row["scenario"] == "req" and row["backend"] == "epoll"
    assert row["messages"] >= 300 and row["per_message"] > 1000
    conn = instructions._count_conn("uring-streams", 30, None, warmup=10)
    assert conn["scenario"] == "conn" and conn["messages"] >= 30
    assert conn["per_message"] > 1000
