"""The end of a ring (``trio_uring/_core/_shutdown.py``): fork.

A fork runs in a child process (:func:`tests._child.run_child`), never in the
pytest process's run.  (Close, drain and lingering rings: tests/test_core_safety.py
and tests/test_manager.py.)
"""

from __future__ import annotations

from tests._child import run_child

# ---------------------------------------------------------------------------
# A forked child and the parent's rings (_after_fork_in_child).
# ---------------------------------------------------------------------------
F10_FORK_INSIDE_RUN = """
import os, sys
import trio
import trio_uring

async def main():
    await trio.sleep(0)
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            trio.lowlevel.current_statistics()
            print("no error in the child", flush=True)
        except RuntimeError as exc:
            print("RuntimeError:", exc, flush=True)
            code = 0
        except BaseException as exc:
            print("unexpected:", repr(exc), flush=True)
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status

status = trio_uring.run(main)
print("grandchild", os.waitstatus_to_exitcode(status))
"""

F10_FORK_OUTSIDE_RUN = """
import os, socket, sys
import trio
import trio_uring
from trio_uring import lowlevel as ll

async def warm_up():
    # use the process-wide state a fork inherits: rings, stream buffer rings, trio sockets
    a, b = trio.socket.socketpair()
    sa, sb = trio_uring.SocketStream(a), trio_uring.SocketStream(b)
    await sa.send_all(b"x")
    assert await sb.receive_some() == b"x"
    await sa.aclose()
    await sb.aclose()
    await ll.sleep(0.001)

trio_uring.run(warm_up)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    code = 3
    try:
        async def child():
            data = await ll.read(r, 100)
            a, b = trio.socket.socketpair()
            sa, sb = trio_uring.SocketStream(a), trio_uring.SocketStream(b)
            await sa.send_all(data)
            echoed = await sb.receive_some()
            await sa.aclose()
            await sb.aclose()
            return echoed, trio.lowlevel.current_statistics().io_statistics.backend
        result = trio_uring.run(child)
        print("child got", result, flush=True)
        code = 0 if result == (b"hello", "io_uring") else 5
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 4
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
os.write(w, b"hello")
_, status = os.waitpid(pid, 0)
print("grandchild", os.waitstatus_to_exitcode(status))
"""


def test_fork_inside_a_run_gives_runtime_error_not_sigsegv() -> None:
    """Finding 10: a child forked inside a trio_uring run does not own the ring (its
    mappings are not inherited usefully); ``trio.lowlevel.current_statistics()`` there
    must raise a clear ``RuntimeError``, not read the ring's memory and segfault.
    The fork happens in a child process, never in the pytest process's run."""
    out = run_child(F10_FORK_INSIDE_RUN).stdout
    assert "grandchild 0" in out, out


def test_fork_outside_a_run_then_a_fresh_run_works() -> None:
    """Finding 10: a process forked (outside any run) from one that used trio_uring can
    start its own ``trio_uring.run``, and I/O in it works (a pipe read through
    ``lowlevel.read``, a stream echo)."""
    out = run_child(F10_FORK_OUTSIDE_RUN).stdout
    assert "grandchild 0" in out, out
