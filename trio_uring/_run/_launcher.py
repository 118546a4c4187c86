"""``python -m trio_uring run``: run an unchanged Python program with every trio run on io_uring.

Like ``python -m cProfile`` or ``coverage run``: it calls :func:`trio_uring.install`, sets
``sys.argv`` and ``sys.path[0]`` as ``python script.py`` / ``python -m module`` would, and
runs the program with :mod:`runpy` as ``__main__``.  ``--children`` makes the Python
processes the program starts install trio_uring too
(:func:`trio_uring._run._install.install_in_children`, the mechanism of ``pytest --trio-uring``).

The program's exit status is the launcher's; an uncaught exception is printed by
``sys.excepthook`` without the launcher's frames and gives status 1; an uncaught
``KeyboardInterrupt`` ends the process by ``SIGINT``, as Python does.
"""

from __future__ import annotations

import argparse
import atexit
import builtins
import importlib.abc
import importlib.machinery
import io
import os
import pkgutil
import runpy
import signal
import sys
import types
import warnings
import zipfile
from dataclasses import dataclass, field
from types import TracebackType

from ._install import (
    UringUnavailableError,
    UringUnavailableWarning,
    install,
    install_in_children,
)

PROG = "python -m trio_uring run"

USAGE = f"{PROG} [-h] [--children] (-m module | -c command | [--] script) [args ...]"

DESCRIPTION = """\
Run a Python program unchanged with every trio.run in it (anyio's trio backend and
trio.lowlevel.start_guest_run included) on trio_uring's io_uring I/O manager.  The
program sees the sys.argv and sys.path[0] that python would give it.  Where io_uring
is unavailable the program runs on trio's epoll backend after a warning, or not at all
under TRIO_URING_REQUIRE=1 (exit status 1)."""

EPILOG = """\
examples:
  python -m trio_uring run server.py --port 8000
  python -m trio_uring run -m hypercorn --worker-class trio --workers 0 app:app
  python -m trio_uring run --children -m hypercorn --worker-class trio --workers 2 app:app
  python -m trio_uring run -c "import trio; trio.run(...)"

Launcher options come first; everything after the script or module belongs to the
program.  Use "--" before a script whose name starts with "-"."""


@dataclass
class Program:
    """What to run: a module (``-m``), a script path or a command (``-c``), and its arguments."""

    module: str | None = None
    script: str | None = None
    args: list[str] = field(default_factory=list)
    children: bool = False
    command: str | None = None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=USAGE,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--children",
        action="store_true",
        help="the Python processes the program starts (subprocess, trio.run_process, "
        "multiprocessing spawn, hypercorn's workers) install trio_uring too: sets "
        "TRIO_URING_INSTALL=1 and puts trio_uring's sitecustomize first on PYTHONPATH",
    )
    parser.add_argument(
        "-m",
        dest="module",
        metavar="module",
        help="run a library module as the program, like python -m (the rest of the "
        "command line is its arguments)",
    )
    parser.add_argument(
        "-c",
        dest="command",
        metavar="command",
        help="run the program passed in as a string, like python -c (the rest of the "
        "command line is its arguments)",
    )
    parser.add_argument(
        "script",
        nargs="?",
        help="the program's file, or a directory or zip file with a __main__.py",
    )
    parser.add_argument("args", nargs="*", help="the program's arguments (sys.argv[1:])")
    return parser


def parse(argv: list[str]) -> Program:
    """Split the command line into launcher options and the program, as python does.

    Launcher options end at ``-m module``, ``-c command``, ``--`` or the first argument that is not an
    option; everything after belongs to the program (``--`` included, as under python).
    Usage errors exit with status 2, ``--help`` with 0 (:class:`SystemExit`).
    """
    parser = _parser()
    options: list[str] = []
    program = Program()
    for index, arg in enumerate(argv):
        if arg == "--":
            if index + 1 == len(argv):
                parser.error("a script is needed after --")
            program.script, program.args = argv[index + 1], argv[index + 2 :]
            break
        if arg[:2] in ("-m", "-c"):
            if arg in ("-m", "-c"):
                if index + 1 == len(argv):
                    parser.error(f"argument {arg}: expected one argument")
                what, program.args = argv[index + 1], argv[index + 2 :]
            else:
                what, program.args = arg[2:], argv[index + 1 :]
            if arg[1] == "m":
                program.module = what
            else:
                program.command = what
            break
        if arg == "-":
            parser.error("reading the program from standard input is not supported")
        if arg.startswith("-"):
            options.append(arg)
            continue
        program.script, program.args = arg, argv[index + 1 :]
        break
    namespace = parser.parse_args(options)
    program.children = namespace.children
    if program.module is None and program.script is None and program.command is None:
        parser.error("give the program: -m module, -c command or a script")
    return program


# Frames of runpy, importlib and this module lead every traceback of the program; the
# program's own frames follow.
_OWN_FILES = frozenset(
    {
        os.path.abspath(__file__),
        os.path.abspath(runpy.__file__),
        "<frozen runpy>",
        "<frozen importlib._bootstrap>",
        "<frozen importlib._bootstrap_external>",
    }
)


def _strip(tb: TracebackType | None) -> tuple[TracebackType | None, bool]:
    """Drop the launcher's leading frames; also say whether any frame was the program's."""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename not in _OWN_FILES and os.path.abspath(filename) not in _OWN_FILES:
            return tb, True
        tb = tb.tb_next
    return None, False


_interrupted = False


def _end_by_sigint() -> None:
    """At exit after an uncaught KeyboardInterrupt: die by SIGINT, as python does."""
    if not _interrupted:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


def _report(exc: BaseException) -> int:
    """Print an exception that left the program as python would; return the exit status."""
    global _interrupted
    tb, in_program = _strip(exc.__traceback__)
    if isinstance(exc, ImportError) and not in_program:
        # runpy could not find the program (-m nosuch, a directory without __main__.py)
        print(f"{sys.executable}: {exc}", file=sys.stderr)
        return 1
    exc.__traceback__ = tb
    sys.excepthook(type(exc), exc, tb)
    if isinstance(exc, KeyboardInterrupt):
        _interrupted = True
    return 1


def _set_sys_path(program: Program) -> None:
    """``sys.path[0]`` as python sets it: the script's real directory, the cwd for -m,
    ``""`` for -c."""
    if getattr(sys.flags, "safe_path", False):  # python -P (3.11+): nothing is prepended
        return
    if program.command is not None:
        if sys.path and sys.path[0] == os.getcwd():
            sys.path[0] = ""  # python -m trio_uring put the cwd there; -c puts ""
        return
    if program.script is None:
        return  # python -m trio_uring already put the cwd first
    script = program.script
    if os.path.isdir(script) or zipfile.is_zipfile(script):
        first = os.path.abspath(script)  # a directory or zip file with __main__.py
    else:
        first = os.path.dirname(os.path.realpath(script))
    if sys.path and sys.path[0] in ("", os.getcwd()):
        sys.path[0] = first
    else:
        sys.path.insert(0, first)


def run(program: Program) -> int:
    """Install trio_uring and run ``program`` as ``__main__``; return its exit status.

    :class:`SystemExit` raised by the program passes through.  Returns 1 (after a message)
    if io_uring is unavailable under ``TRIO_URING_REQUIRE=1`` or the program raised, 2 if
    the script cannot be opened.
    """
    if program.script is not None and not os.path.isdir(program.script):
        try:
            with open(program.script, "rb"):
                pass
        except OSError as exc:
            path = os.path.abspath(program.script)
            print(
                f"{sys.executable}: can't open file {path!r}: [Errno {exc.errno}] {exc.strerror}",
                file=sys.stderr,
            )
            return 2
    try:
        # The fallback's warning is about the launcher's own choice: shown as the
        # launcher's message, not as a warning at a line of the launcher's source.
        # (The warning filters still apply: -W error raises, -W ignore hides it.)
        with warnings.catch_warnings(record=True) as caught:
            installed = install()
    except (UringUnavailableError, UringUnavailableWarning) as exc:  # the latter: -W error
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    for warning in caught:
        print(f"{PROG}: {warning.category.__name__}: {warning.message}", file=sys.stderr)
    if installed and program.children:
        install_in_children()
    _set_sys_path(program)
    atexit.register(_end_by_sigint)  # before the program's handlers, so it runs after them
    sys.argv = [program.module or program.script or "-c", *program.args]
    try:
        if program.command is not None:
            _run_command(program.command)
        elif program.module is not None:
            runpy.run_module(program.module, run_name="__main__", alter_sys=True)
        else:
            assert program.script is not None
            _run_script(program.script)
    except SystemExit:
        raise
    except BaseException as exc:
        return _report(exc)
    return 0


def _new_main() -> dict[str, object]:
    """A fresh ``__main__`` module in ``sys.modules`` (the launcher's own ``__main__`` is
    ``trio_uring.__main__``); return its namespace."""
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    return main.__dict__


def _run_script(script: str) -> None:
    """Run ``script`` as ``python script`` does: ``__file__`` (and the code's file name,
    so tracebacks) absolute, joined to the working directory as python joins it, so a
    program that changes directory still finds ``Path(__file__).parent``;
    ``sys.argv[0]`` stays as given (:func:`run` set it).  A directory or zip file runs
    its ``__main__`` module from ``sys.path[0]``, where :func:`_set_sys_path` put its
    absolute path (or, under ``python -P``, where this puts it)."""
    path = script if os.path.isabs(script) else os.path.join(os.getcwd(), script)
    if os.path.isdir(path) or zipfile.is_zipfile(path):
        if not sys.path or sys.path[0] != os.path.abspath(path):
            sys.path.insert(0, os.path.abspath(path))
        _new_main()
        # What python itself calls for a directory or zip file (sys.argv untouched).
        runpy._run_module_as_main("__main__", alter_argv=False)  # type: ignore[attr-defined]
        return
    with io.open_code(path) as f:
        code = pkgutil.read_code(f)  # a compiled .pyc, as python accepts
    loader: importlib.abc.Loader
    if code is None:
        with io.open_code(path) as f:
            code = compile(f.read(), path, "exec")
        loader = importlib.machinery.SourceFileLoader("__main__", path)
    else:
        loader = importlib.machinery.SourcelessFileLoader("__main__", path)
    namespace = _new_main()
    namespace.update(__file__=path, __cached__=None, __loader__=loader, __package__=None)
    exec(code, namespace)


def _run_command(command: str) -> None:
    """Run ``command`` as python -c does: compiled as ``<string>``, in a new ``__main__``."""
    exec(compile(command, "<string>", "exec"), _new_main())


def main(argv: list[str]) -> int:
    """``python -m trio_uring run ARGS``: parse ``argv`` (after ``run``) and run the program."""
    return run(parse(argv))
