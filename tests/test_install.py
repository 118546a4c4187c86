"""Putting the io_uring manager under trio (``trio_uring/_run/_install.py``): ``run``,
``start_guest_run``, ``install``/``uninstall``, the epoll fallback and
``TRIO_URING_REQUIRE``/``TRIO_URING_DISABLE``, and ``current_manager``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest
import trio

import trio_uring
from tests._child import child_env, run_child
from trio_uring.lowlevel import current_manager


def test_run_returns_value_and_uses_uring() -> None:
    async def main(x: int) -> str:
        return trio.lowlevel.current_statistics().io_statistics.backend + str(x)

    assert trio_uring.run(main, 1) == "io_uring1"


def test_install_and_uninstall() -> None:
    # conftest installed trio_uring for the session
    assert trio_uring.installed()

    async def backend() -> str:
        return str(trio.lowlevel.current_statistics().io_statistics.backend)

    trio_uring.uninstall()
    try:
        assert trio.run(backend) == "epoll"
        assert trio_uring.run(backend) == "io_uring"
        assert trio.run(backend) == "epoll"
    finally:
        trio_uring.install()
    assert trio.run(backend) == "io_uring"


def test_anyio_on_trio_uses_uring() -> None:
    anyio = pytest.importorskip("anyio")

    async def main() -> str:
        return str(trio.lowlevel.current_statistics().io_statistics.backend)

    assert anyio.run(main, backend="trio") == "io_uring"


def test_run_in_thread_while_other_thread_runs() -> None:
    results: list[str] = []

    async def main() -> None:
        await trio.sleep(0.01)
        results.append(trio.lowlevel.current_statistics().io_statistics.backend)

    threads = [threading.Thread(target=trio_uring.run, args=(main,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["io_uring"] * 4


SECCOMP_CHILD = textwrap.dedent(
    """
    import ctypes, os, struct, sys, warnings
    # A seccomp filter that makes io_uring_setup (425) fail with EPERM, as Docker's does.
    libc = ctypes.CDLL(None, use_errno=True)
    BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
    RET_ALLOW, RET_ERRNO = 0x7FFF0000, 0x00050000
    prog = [
        (BPF_LD_W_ABS, 0, 0, 0),              # load seccomp_data.nr
        (BPF_JEQ_K, 0, 1, 425),               # io_uring_setup?
        (BPF_RET_K, 0, 0, RET_ERRNO | 1),     # -> EPERM
        (BPF_RET_K, 0, 0, RET_ALLOW),
    ]
    raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw)
    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    fprog = SockFprog(len(prog), ctypes.addressof(buf))
    assert libc.prctl(38, 1, 0, 0, 0) == 0                       # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0     # PR_SET_SECCOMP, FILTER
    import trio, trio_uring
    async def main():
        return trio.lowlevel.current_statistics().io_statistics.backend
    print(trio_uring.unavailable_reason())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        print(trio_uring.run(main))
    print([type(w.message).__name__ for w in caught])
    """
)


@pytest.mark.no_uring_ok
@pytest.mark.parametrize("require", ["", "1"])
def test_seccomp_refusal_falls_back_or_errors(require: str) -> None:
    env = dict(os.environ, TRIO_URING_REQUIRE=require)
    proc = subprocess.run(
        [sys.executable, "-c", SECCOMP_CHILD], env=env, capture_output=True, text=True, timeout=60
    )
    if require:
        assert proc.returncode != 0
        assert "UringUnavailableError" in proc.stderr
        assert "EPERM" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert "EPERM" in lines[0]
        assert lines[1] == "epoll"
        assert lines[2] == "['UringUnavailableWarning']"


def test_current_manager_outside_a_run_or_on_epoll() -> None:
    with pytest.raises(RuntimeError):
        current_manager()

    async def on_epoll() -> str:
        with pytest.raises(RuntimeError, match="EpollIOManager") as info:
            current_manager()
        return str(info.value)

    trio_uring.uninstall()
    try:
        message = trio.run(on_epoll)
    finally:
        trio_uring.install()
    assert "trio_uring.run()" in message


async def test_current_manager_is_the_runs_manager() -> None:
    manager = current_manager()
    assert isinstance(manager, trio_uring.UringIOManager)
    assert not manager.closed
    assert manager is current_manager()


@pytest.mark.no_uring_ok
@pytest.mark.parametrize("require", ["", "1"])
def test_disable_forces_the_fallback(require: str) -> None:
    code = """
        import warnings, trio, trio_uring
        async def backend():
            return trio.lowlevel.current_statistics().io_statistics.backend
        print(trio_uring.unavailable_reason())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            print(trio_uring.run(backend), trio_uring.install(), trio_uring.installed())
        print(sorted({type(w.message).__name__ for w in caught}))
        print(trio.run(backend))
    """
    env = child_env(TRIO_URING_DISABLE="1", TRIO_URING_REQUIRE=require)
    proc = run_child(code, env=env, check=not require)
    if require:
        assert proc.returncode == 1
        assert "UringUnavailableError" in proc.stderr
        assert "TRIO_URING_DISABLE is set" in proc.stderr
    else:
        assert proc.stdout.splitlines() == [
            "TRIO_URING_DISABLE is set",
            "epoll False False",
            "['UringUnavailableWarning']",
            "epoll",
        ]


def test_run_leaves_later_plain_runs_alone() -> None:
    # Without install(), only the run that trio_uring.run() starts is on io_uring,
    # also when another thread runs plain trio at the same time.
    code = """
        import threading, trio, trio_uring
        async def backend():
            return trio.lowlevel.current_statistics().io_statistics.backend
        seen = {}
        ready = threading.Event()
        release = threading.Event()
        async def plain_main():
            ready.set()
            await trio.to_thread.run_sync(release.wait)
            return await backend()
        def plain():
            seen["plain"] = trio.run(plain_main)
        t = threading.Thread(target=plain)
        t.start()
        ready.wait()
        seen["uring"] = trio_uring.run(backend)
        release.set()
        t.join()
        seen["after"] = trio.run(backend)
        print(seen["uring"], seen["plain"], seen["after"], trio_uring.installed())
    """
    proc = run_child(code)
    assert proc.stdout.split() == ["io_uring", "epoll", "epoll", "False"]


def test_start_guest_run_is_on_io_uring() -> None:
    code = """
        import trio, trio_uring
        from trio_uring.lowlevel import current_manager
        import queue
        todo = queue.SimpleQueue()
        result = []
        async def main():
            assert current_manager().guest
            await trio.sleep(0)
            return trio.lowlevel.current_statistics().io_statistics.backend
        trio_uring.start_guest_run(
            main,
            run_sync_soon_threadsafe=todo.put,
            done_callback=result.append,
        )
        while not result:
            todo.get()()  # the host loop: run what trio asks for, blocking until it does
        print(result[0].unwrap())
    """
    assert run_child(code).stdout.split() == ["io_uring"]
