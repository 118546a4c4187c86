"""The C load generator (``trio_uring/bench/_loadgen.c``, package data): built with the
system C compiler into a cache directory; without a compiler the Python stand-in
(:mod:`trio_uring.bench._pyloadgen`) runs, and the results say so."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

#: The C load generator's source, shipped with the package (``trio_uring/bench/_loadgen.c``).
LOADGEN_C = (resources.files("trio_uring.bench") / "_loadgen.c").read_text()


@dataclasses.dataclass(frozen=True)
class Loadgen:
    """How to start the load generator: ``argv`` + ``echo|sink --port ...``."""

    kind: str  # "c" or "python"
    argv: tuple[str, ...]
    note: str = ""

    def command(self, mode: str, port: int, conns: int, size: int, **options: object) -> list[str]:
        """The command line for one load: ``mode`` is ``echo`` or ``sink``; ``options``
        are further ``--name value`` pairs (``stat_pid=...`` becomes ``--stat-pid``),
        ``None`` values left out."""
        cmd = [*self.argv, mode, "--port", str(port), "--conns", str(conns), "--size", str(size)]
        for name, value in options.items():
            if value is not None:
                cmd += ["--" + name.replace("_", "-"), str(value)]
        return cmd


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trio_uring"


def build_loadgen(source: str = LOADGEN_C, cache_dir: Path | None = None) -> Path | None:
    """Compile the C load generator (cached by source hash); None without a working compiler."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return None
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    dirs = [cache_dir] if cache_dir is not None else []
    dirs += [default_cache_dir(), Path(tempfile.gettempdir()) / f"trio_uring-{os.getuid()}"]
    for directory in dirs:
        if directory is None:
            continue
        exe = directory / f"loadgen-{digest}"
        if exe.exists():
            return exe
        try:
            directory.mkdir(parents=True, exist_ok=True)
            src = directory / f"loadgen-{digest}.c"
            src.write_text(source)
            tmp = directory / f"loadgen-{digest}.{os.getpid()}.tmp"
            subprocess.run(
                [cc, "-O2", "-o", str(tmp), str(src)],
                check=True,
                capture_output=True,
                timeout=120,
            )
            os.replace(tmp, exe)
            return exe
        except (OSError, subprocess.SubprocessError):
            continue
    return None


def find_loadgen(
    source: str = LOADGEN_C, cache_dir: Path | None = None, *, force_python: bool = False
) -> Loadgen:
    """The compiled C generator, or the Python stand-in if there is no C compiler."""
    exe = None if force_python else build_loadgen(source, cache_dir)
    if exe is not None:
        return Loadgen("c", (str(exe),))
    code = "import sys; from trio_uring.bench._pyloadgen import pyloadgen_main; sys.exit(pyloadgen_main())"
    return Loadgen(
        "python",
        (sys.executable, "-c", code),
        "no C compiler: the Python load generator was used and is likely the bottleneck",
    )
