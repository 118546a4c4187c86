"""The distributions ``make wheel`` and ``make sdist`` build, installed in fresh virtualenvs.

* The compiled manylinux wheel installs and runs where no C compiler can be found
  (``CC=false``, a ``PATH`` without ``cc``/``gcc``): ``python -m trio_uring info`` says
  compiled, ring extension in use, and a smoke run on io_uring works.
* The sdist builds where mypyc is missing: the install says why it stays pure Python
  and runs (pure hot path, ring extension built); ``info`` and importing it say why.
* ``TRIO_URING_COMPILE=0`` builds the sdist pure without asking for mypy (the in-tree
  backend, ``buildsys/trio_uring_backend.py``), and nothing warns about it.
* The sdist carries the docs the README points at; the wheel too, for
  ``python -m trio_uring docs``.

Each needs the distributions in ``dist/`` and installs packages, so they run under
``make test-wheel`` (``TRIO_URING_PACKAGING_TESTS=1``; ``.ci/run``), not in every
``pytest tests`` run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("TRIO_URING_PACKAGING_TESTS") != "1",
        reason="make test-wheel runs these (they need dist/ and install packages)",
    ),
]

SMOKE = """
import os, sys, tempfile
import trio, trio_uring
from trio_uring._pure import build
from trio_uring._core._ring import ext

async def main():
    a, b = trio.socket.socketpair()
    with a, b:
        assert type(a).__name__ == "UringSocket", type(a)
        await a.send(b"ping")
        assert await b.recv(10) == b"ping"
    path = os.path.join(tempfile.mkdtemp(), "f")
    async with await trio_uring.open_file(path, "wb") as f:
        await f.write(b"data")
    async with await trio_uring.open_file(path, "rb") as f:
        assert await f.read() == b"data"
    manager = trio.lowlevel.current_task()._runner.io_manager
    return type(manager).__name__

assert trio_uring.run(main) == "UringIOManager"
print("module", trio_uring.__file__)
print("build", build())
print("ext", ext is not None)
"""


def _venv(path: Path) -> Path:
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


def _no_compiler_env(venv: Path) -> dict[str, str]:
    """An environment where no C compiler can be found: only the virtualenv's bin on
    ``PATH`` (checked), ``CC``/``CXX``/``LDSHARED`` set to ``false``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIO_URING_")}
    env.update(
        PATH=str(venv / "bin"), CC="false", CXX="false", LDSHARED="false", PYTHONNOUSERSITE="1"
    )
    env.pop("PYTHONPATH", None)
    for compiler in ("cc", "gcc", "clang"):
        assert shutil.which(compiler, path=env["PATH"]) is None, compiler
    return env


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (
        f"{argv}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    )
    return proc


def _one(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {DIST} (make wheel / make sdist): {found}"
    return found[0]


def test_the_wheel_installs_and_runs_without_a_compiler(tmp_path: Path) -> None:
    wheel = _one("trio_uring-*-manylinux*.whl")
    python = _venv(tmp_path / "venv")
    env = _no_compiler_env(tmp_path / "venv")
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)], env, tmp_path)
    info = _run([str(python), "-m", "trio_uring", "info"], env, tmp_path).stdout
    assert "hot path         compiled" in info, info
    assert "ring extension   in use" in info, info
    assert "trio mirrors     all recorded" in info, info
    out = _run([str(python), "-c", SMOKE], env, tmp_path).stdout
    assert f"module {tmp_path}" in out, out  # the installed wheel, not this checkout
    assert "build compiled" in out and "ext True" in out, out


def test_the_sdist_without_mypyc_installs_pure_and_says_why(tmp_path: Path) -> None:
    sdist = _one("trio_uring-*.tar.gz")
    python = _venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIO_URING_")}
    env.pop("PYTHONPATH", None)
    # The build requirements but mypy (so no mypyc), then a build in this virtualenv.
    build_deps = ["setuptools>=77", "wheel", "cffi>=1.16", "trio>=0.30", "outcome>=1.3",
                  "attrs>=23.1", "mypy_extensions>=1.0"]  # fmt: skip
    _run([str(python), "-m", "pip", "install", "-q", *build_deps], env, tmp_path)
    proc = _run(
        [str(python), "-m", "pip", "install", "-v", "--no-build-isolation", str(sdist)],
        env,
        tmp_path,
    )
    said = proc.stdout + proc.stderr
    assert "mypyc could not compile the hot path" in said, said[-4000:]
    assert "the hot path stays pure Python" in said, said[-4000:]
    info = _run([str(python), "-m", "trio_uring", "info"], env, tmp_path).stdout
    assert "hot path         pure because mypyc could not compile the hot path" in info, info
    assert "ring extension   in use" in info, info
    # pip hid the build's warning (without -v): importing says it.
    warned = _run([str(python), "-c", "import trio_uring"], env, tmp_path).stderr
    assert "RuntimeWarning: trio_uring: pure build because mypyc could not" in warned, warned
    out = _run([str(python), "-c", SMOKE], env, tmp_path).stdout
    assert f"module {tmp_path}" in out and "build pure" in out and "ext True" in out, out


def test_a_pure_build_downloads_no_mypy_and_does_not_warn(tmp_path: Path) -> None:
    sdist = _one("trio_uring-*.tar.gz")
    python = _venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIO_URING_")}
    env.pop("PYTHONPATH", None)
    env["TRIO_URING_COMPILE"] = "0"
    proc = _run([str(python), "-m", "pip", "install", "-v", str(sdist)], env, tmp_path)
    said = proc.stdout + proc.stderr
    assert "Getting requirements to build wheel" in said, said[-4000:]  # the backend's hook
    assert not re.search(r"(Collecting|Requirement already satisfied:) mypy(?![-_])", said), [
        line for line in said.splitlines() if "mypy" in line
    ]
    env.pop("TRIO_URING_COMPILE")
    info = _run([str(python), "-m", "trio_uring", "info"], env, tmp_path).stdout
    assert "hot path         pure because TRIO_URING_COMPILE=0 at install" in info, info
    assert "ring extension   not built because TRIO_URING_COMPILE=0 at install" in info, info
    quiet = _run([str(python), "-W", "error", "-c", "import trio_uring"], env, tmp_path)
    assert quiet.stderr == "", quiet.stderr
    docs = _run([str(python), "-m", "trio_uring", "docs", "performance"], env, tmp_path)
    assert docs.stdout.startswith("Performance\n"), docs.stdout[:200]


def test_the_sdist_carries_the_backend_and_the_docs() -> None:
    import tarfile

    sdist = _one("trio_uring-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert "buildsys/trio_uring_backend.py" in names
    readme_links = set(re.findall(r"docs/[a-z-]+\.rst", (ROOT / "README.md").read_text()))
    assert readme_links and readme_links <= names, readme_links - names
    assert "trio_uring/_build_record.json" not in names
