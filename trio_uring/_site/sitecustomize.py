"""Installs trio_uring in every Python process started with ``TRIO_URING_INSTALL=1``.

``trio_uring._run._install.install_in_children`` (used by ``pytest --trio-uring`` and
``python -m trio_uring run --children``) puts this directory first on ``PYTHONPATH``.
The ``sitecustomize`` it shadows (a later one on ``sys.path``, e.g. a distribution's)
still runs, first.  Under ``TRIO_URING_REQUIRE=1`` a process that cannot use io_uring
exits with status 1 instead of running on epoll.
"""

import os
import sys


def _run_shadowed() -> None:
    import importlib.machinery
    import importlib.util

    here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    path = [p for p in sys.path if os.path.realpath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


def _install() -> None:
    if os.environ.get("TRIO_URING_INSTALL", "") in ("", "0"):
        return
    try:
        import trio_uring

        trio_uring.install()
    except Exception as exc:  # never break the child's start-up with a traceback
        print(f"trio_uring: could not install in a child process: {exc}", file=sys.stderr)
        if type(exc).__name__ == "UringUnavailableError":
            sys.stderr.flush()
            os._exit(1)  # SystemExit here would be a fatal error in site


try:
    _run_shadowed()
finally:
    _install()
