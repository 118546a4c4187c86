"""``python -m trio_uring run``: an unchanged program, and with ``--children`` its Python
children (a ``trio.run_process`` child, hypercorn's spawned workers), on io_uring.

Every test starts real processes; the hypercorn ones serve real HTTP on loopback.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from trio_uring._run._install import SITE_DIR, install_in_children
from trio_uring._run._launcher import Program, parse

URING = "UringIOManager"
EPOLL = "EpollIOManager"
TIMEOUT = 60

# Prints what the program saw, as JSON, then exits with the status in argv[1] (if any).
PROBE = textwrap.dedent(
    """
    import json, os, sys
    import trio

    async def main():
        runner = trio._core._run.GLOBAL_RUN_CONTEXT.runner
        return type(runner.io_manager).__name__

    print(json.dumps({
        "manager": trio.run(main),
        "argv": sys.argv,
        "path0": sys.path[0],
        "name": __name__,
        "file": globals().get("__file__"),
        "install": os.environ.get("TRIO_URING_INSTALL"),
    }))
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 0)
    """
)

# Starts a Python child with trio.run_process; prints both runs' I/O manager classes.
PARENT = textwrap.dedent(
    """
    import sys
    import trio

    CHILD = (
        "import trio\\n"
        "async def main():\\n"
        "    return type(trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager).__name__\\n"
        "print(trio.run(main))\\n"
    )

    async def main():
        child = await trio.run_process(
            [sys.executable, "-c", CHILD], capture_stdout=True, capture_stderr=True, check=False
        )
        me = type(trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager).__name__
        print(me, child.stdout.decode().strip(), child.returncode)
        sys.stderr.write(child.stderr.decode())

    trio.run(main)
    """
)

# A tiny ASGI app: lifespan startup reports "<pid> <manager>" on stderr, GET answers
# with the I/O manager class of the run serving it.
APP = textwrap.dedent(
    """
    import os, sys
    import trio

    def manager():
        return type(trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager).__name__

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    sys.stderr.write(f"APP-STARTED {os.getpid()} {manager()}\\n")
                    sys.stderr.flush()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            body = manager().encode()
            headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
    """
)


def _env(**extra: str) -> dict[str, str]:
    """This environment without any trio_uring switch (the suite may run under them)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TRIO_URING_INSTALL", "TRIO_URING_REQUIRE", "TRIO_URING_DISABLE")
    }
    site = os.path.realpath(SITE_DIR)
    path = [p for p in env.pop("PYTHONPATH", "").split(os.pathsep) if p]
    path = [p for p in path if os.path.realpath(p) != site]
    if path:
        env["PYTHONPATH"] = os.pathsep.join(path)
    env.update(extra)
    return env


def _python(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def _launch(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return _python("-m", "trio_uring", "run", *args, cwd=cwd, env=env)


def _seen(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    result: dict[str, object] = json.loads(lines[-1])
    return result


# --- the program runs as python would run it, on io_uring --------------------------------


def test_script_runs_on_uring_with_pythons_argv_path_and_status(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(PROBE)
    proc = _launch("script.py", "3", "b", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    seen = _seen(proc)
    assert seen["manager"] == URING
    assert seen["argv"] == ["script.py", "3", "b"]
    assert seen["path0"] == str(tmp_path.resolve())
    assert seen["name"] == "__main__"
    assert seen["install"] is None  # no --children: nothing for child processes
    plain = _python("script.py", "3", "b", cwd=tmp_path)
    assert plain.returncode == 3
    assert _seen(plain) | {"manager": URING} == seen


def test_script_through_a_symlink_gets_the_real_directory(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "script.py").write_text(PROBE)
    (tmp_path / "link.py").symlink_to(tmp_path / "real" / "script.py")
    seen = _seen(_launch("link.py", cwd=tmp_path))
    assert seen["path0"] == str((tmp_path / "real").resolve())
    assert seen["path0"] == _seen(_python("link.py", cwd=tmp_path))["path0"]


CHDIR = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    os.chdir(sys.argv[1])
    print((Path(__file__).parent / "data.txt").read_text())
    """
)


@pytest.mark.parametrize("how", ["plain", "dot", "directory"])
def test_file_is_absolute_like_python(tmp_path: Path, how: str) -> None:
    """``__file__`` is absolute as python makes it (joined to the working directory), so
    a program that changes directory still finds files beside it."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "prog").mkdir()
    (tmp_path / "prog" / "data.txt").write_text("found")
    if how in ("plain", "dot"):
        (tmp_path / "prog" / "script.py").write_text(CHDIR)
        target = "prog/script.py" if how == "plain" else "./prog/script.py"
    else:
        (tmp_path / "prog" / "__main__.py").write_text(CHDIR)
        target = "prog"
    launched = _launch(target, "elsewhere", cwd=tmp_path)
    plain = _python(target, "elsewhere", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert (launched.returncode, launched.stdout) == (0, "found\n"), launched.stderr


def test_module_runs_on_uring_like_python_m(tmp_path: Path) -> None:
    (tmp_path / "probe_mod.py").write_text(PROBE)
    proc = _launch("-m", "probe_mod", "5", "-q", "--children", cwd=tmp_path)
    assert proc.returncode == 5, proc.stderr
    seen = _seen(proc)
    assert seen["manager"] == URING
    assert seen["argv"] == [str(tmp_path / "probe_mod.py"), "5", "-q", "--children"]
    assert seen["install"] is None  # --children after -m belongs to the program
    plain = _python("-m", "probe_mod", "5", "-q", "--children", cwd=tmp_path)
    assert _seen(plain) | {"manager": URING} == seen


def test_package_and_directory_with_main(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "__main__.py").write_text(PROBE)
    seen = _seen(_launch("-m", "pkg", "x", cwd=tmp_path))
    assert seen["manager"] == URING
    assert seen["argv"] == [str(tmp_path / "pkg" / "__main__.py"), "x"]
    seen = _seen(_launch("pkg", "x", cwd=tmp_path))
    assert seen["manager"] == URING
    assert seen["argv"] == ["pkg", "x"]


ANYIO_AND_GUEST = textwrap.dedent(
    """
    import asyncio
    import anyio
    import trio

    def manager():
        return type(trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager).__name__

    async def anyio_main():
        return manager()

    print("anyio", anyio.run(anyio_main, backend="trio"))

    async def host():
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        async def guest():
            return manager()

        trio.lowlevel.start_guest_run(
            guest,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=lambda outcome: done.set_result(outcome.unwrap()),
        )
        return await done

    print("guest", asyncio.run(host()))
    """
)


def test_anyio_and_guest_runs_are_on_uring(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(ANYIO_AND_GUEST)
    proc = _launch("script.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"anyio {URING}", f"guest {URING}"]


def test_double_dash_and_program_options(tmp_path: Path) -> None:
    (tmp_path / "-dash.py").write_text(PROBE)
    seen = _seen(_launch("--", "-dash.py", "x", cwd=tmp_path))
    assert seen["argv"] == ["-dash.py", "x"]
    (tmp_path / "script.py").write_text(PROBE)
    seen = _seen(_launch("script.py", "--", "--children", "-m", "x", cwd=tmp_path))
    assert seen["argv"] == ["script.py", "--", "--children", "-m", "x"]
    assert seen["install"] is None


def test_command_runs_on_uring_like_python_c(tmp_path: Path) -> None:
    proc = _launch("-c", PROBE, "4", "-m", "x", cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    seen = _seen(proc)
    assert seen["manager"] == URING
    assert seen["argv"] == ["-c", "4", "-m", "x"]
    assert seen["path0"] == ""
    assert seen["name"] == "__main__"
    plain = _python("-c", PROBE, "4", "-m", "x", cwd=tmp_path)
    assert _seen(plain) | {"manager": URING} == seen


@pytest.mark.parametrize(
    "body",
    [
        "def f():\n    raise ValueError('boom')\nf()\n",
        "def f(:\n",
        "import sys\nsys.exit(3)\n",
    ],
    ids=["traceback", "syntax-error", "exit-3"],
)
def test_command_errors_look_like_python(tmp_path: Path, body: str) -> None:
    proc = _launch("-c", body, cwd=tmp_path)
    plain = _python("-c", body, cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )


def test_parse() -> None:
    assert parse(["-c", "pass", "-m", "x"]) == Program(None, None, ["-m", "x"], False, "pass")
    assert parse(["--children", "-cpass"]) == Program(None, None, [], True, "pass")
    assert parse(["--children", "-m", "mod", "-q"]) == Program("mod", None, ["-q"], True)
    assert parse(["-mmod", "a"]) == Program("mod", None, ["a"], False)
    assert parse(["s.py", "--children"]) == Program(None, "s.py", ["--children"], False)
    assert parse(["--chil", "--", "-s.py"]) == Program(None, "-s.py", [], True)


# --- errors look as they do under python -------------------------------------------------


@pytest.mark.no_uring_ok
@pytest.mark.parametrize(
    "args",
    [["missing.py"], ["-m", "no_such_module_here"], ["-m", "json"], ["empty_dir"]],
    ids=["missing-script", "missing-module", "package-without-main", "dir-without-main"],
)
def test_not_found_like_python(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "empty_dir").mkdir()
    proc = _launch(*args, cwd=tmp_path)
    plain = _python(*args, cwd=tmp_path)
    assert plain.returncode in (1, 2)
    assert proc.returncode == plain.returncode
    assert proc.stdout == ""
    if args[0] == "empty_dir":  # runpy names the directory as given, python absolute
        assert "can't find '__main__' module in" in proc.stderr
    else:
        assert proc.stderr == plain.stderr


@pytest.mark.parametrize(
    "body",
    [
        "def f():\n    raise ValueError('boom')\nf()\n",
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    raise KeyError('x')\n",
        "def f(:\n",
        "raise SystemExit('bye')\n",
        "import sys\nsys.exit(0)\n",
        "raise ImportError('mine')\n",
    ],
    ids=["traceback", "chained", "syntax-error", "system-exit-message", "exit-0", "importerror"],
)
def test_errors_look_like_python(tmp_path: Path, body: str) -> None:
    script = tmp_path / "err.py"
    script.write_text("import trio\n" + body)
    proc = _launch(str(script), cwd=tmp_path)
    plain = _python(str(script), cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )


def test_keyboard_interrupt_ends_by_sigint_after_atexit(tmp_path: Path) -> None:
    script = tmp_path / "ki.py"
    script.write_text(
        "import atexit, trio\n"
        "atexit.register(print, 'atexit ran', flush=True)\n"
        "async def main():\n"
        "    raise KeyboardInterrupt\n"
        "trio.run(main)\n"
    )
    proc = _launch(str(script), cwd=tmp_path)
    plain = _python(str(script), cwd=tmp_path)
    assert plain.returncode == proc.returncode == -2
    assert proc.stdout == plain.stdout == "atexit ran\n"
    assert proc.stderr.splitlines()[-1] == "KeyboardInterrupt"
    assert proc.stderr.splitlines()[:2] == plain.stderr.splitlines()[:2]


@pytest.mark.no_uring_ok
def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in ([], ["--bogus", "x.py"], ["-m"], ["-c"], ["--"], ["-"]):
        proc = _launch(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("usage: python -m trio_uring run"), proc.stderr
    proc = _launch("--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "--children" in proc.stdout
    proc = _python("-m", "trio_uring", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "run" in proc.stdout


@pytest.mark.no_uring_ok
def test_require_forbids_the_fallback(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(PROBE)
    env = _env(TRIO_URING_DISABLE="1", TRIO_URING_REQUIRE="1")
    proc = _launch("script.py", cwd=tmp_path, env=env)
    assert proc.returncode == 1
    assert proc.stdout == ""  # the program did not run
    assert "TRIO_URING_REQUIRE=1 forbids the fallback" in proc.stderr
    proc = _python("-W", "error", "-m", "trio_uring", "run", "script.py", cwd=tmp_path,
                   env=_env(TRIO_URING_DISABLE="1"))  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "io_uring is unavailable" in proc.stderr


@pytest.mark.no_uring_ok
def test_without_uring_the_program_runs_on_epoll_after_a_warning(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(PROBE)
    proc = _launch("--children", "script.py", cwd=tmp_path, env=_env(TRIO_URING_DISABLE="1"))
    assert proc.returncode == 0, proc.stderr
    assert "UringUnavailableWarning" in proc.stderr
    # The launcher's message, not a warning at a line of the launcher's source.
    assert proc.stderr.startswith("python -m trio_uring run: UringUnavailableWarning: "), (
        proc.stderr
    )
    assert "_launcher.py" not in proc.stderr
    seen = _seen(proc)
    assert seen["manager"] == EPOLL
    assert seen["install"] is None  # nothing to hand down


# --- --children ----------------------------------------------------------------------------


@pytest.mark.parametrize("children", [True, False])
def test_children_flag_puts_run_process_children_on_uring(tmp_path: Path, children: bool) -> None:
    (tmp_path / "parent.py").write_text(PARENT)
    proc = _launch(*(["--children"] if children else []), "parent.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    me, child, status = proc.stdout.split()
    assert me == URING
    assert (child, status) == (URING if children else EPOLL, "0"), proc.stderr


def test_children_keep_the_sitecustomize_they_shadow(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("import sys\nsys.stderr.write('THEIRS RAN\\n')\n")
    (tmp_path / "parent.py").write_text(PARENT)
    env = _env(PYTHONPATH=str(theirs))
    proc = _launch("--children", "parent.py", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [URING, URING, "0"]
    assert proc.stderr.count("THEIRS RAN") == 2  # the launcher's own process and the child


def test_child_under_require_without_uring_exits_1(tmp_path: Path) -> None:
    script = PARENT.replace(
        "check=False",
        "check=False, env={**__import__('os').environ, "
        "'TRIO_URING_DISABLE': '1', 'TRIO_URING_REQUIRE': '1'}",
    )
    (tmp_path / "parent.py").write_text(script)
    proc = _launch("--children", "parent.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [URING, "1"]  # the child printed nothing and exited 1
    assert "TRIO_URING_REQUIRE=1 forbids the fallback" in proc.stderr


def test_install_in_children_is_idempotent_and_returns_what_it_set() -> None:
    env = {"PYTHONPATH": "/somewhere"}
    first = install_in_children(env)
    assert first == {
        "PYTHONPATH": SITE_DIR + os.pathsep + "/somewhere",
        "TRIO_URING_INSTALL": "1",
    }
    assert env == first
    assert install_in_children(env) == first
    assert install_in_children({}) == {"PYTHONPATH": SITE_DIR, "TRIO_URING_INSTALL": "1"}


# --- hypercorn, unchanged ----------------------------------------------------------------


@contextmanager
def _hypercorn(tmp_path: Path, *launcher: str, workers: int) -> Iterator[tuple[int, list[str]]]:
    """Serve ``app:app`` under the launcher; yield the port and the app's startup lines."""
    (tmp_path / "app.py").write_text(APP)
    argv = [sys.executable, "-m", "trio_uring", "run", *launcher, "-m", "hypercorn",
            "--worker-class", "trio", "--workers", str(workers), "--bind", "127.0.0.1:0",
            "app:app"]  # fmt: skip
    with subprocess.Popen(
        argv, cwd=tmp_path, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        assert proc.stderr is not None
        stderr = proc.stderr
        lines: queue.Queue[str | None] = queue.Queue()
        log: list[str] = []

        def read() -> None:
            for line in stderr:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            port = None
            started: list[str] = []
            deadline = time.monotonic() + TIMEOUT
            while port is None or len(started) < max(workers, 1):
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                assert line is not None, "hypercorn exited:\n" + "".join(log)
                log.append(line)
                if match := re.search(r"Running on http://127\.0\.0\.1:(\d+)", line):
                    port = int(match.group(1))
                if line.startswith("APP-STARTED "):
                    started.append(line.split(maxsplit=1)[1].strip())
            yield port, started
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            reader.join(timeout=TIMEOUT)
        # hypercorn's parent shuts its workers down on SIGTERM; its in-process trio worker
        # leaves SIGTERM to the default action, as under plain python
        assert proc.returncode in (0, -signal.SIGTERM), "".join(log)


def _get(port: int) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=TIMEOUT) as client:
        return client.get(f"http://127.0.0.1:{port}/")


def test_hypercorn_in_process_serves_on_uring(tmp_path: Path) -> None:
    with _hypercorn(tmp_path, workers=0) as (port, started):
        response = _get(port)
        assert response.status_code == 200
        assert response.text == URING
        assert [line.split()[1] for line in started] == [URING]


def test_hypercorn_spawned_workers_on_uring_with_children(tmp_path: Path) -> None:
    with _hypercorn(tmp_path, "--children", workers=2) as (port, started):
        assert len(started) == 2
        pids = {line.split()[0] for line in started}
        assert len(pids) == 2, started  # two worker processes
        assert all(line.split()[1] == URING for line in started), started
        response = _get(port)
        assert response.status_code == 200
        assert response.text == URING
