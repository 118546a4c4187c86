"""The in-tree build backend (``buildsys/trio_uring_backend.py``): mypy, pinned, is a
build requirement only of the compiled build.

The full check, a ``TRIO_URING_COMPILE=0`` install through pip that downloads no mypy,
is in ``tests/test_packaging.py`` (``make test-wheel``); these read the backend's and
``pyproject.toml``'s requirements without building anything.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent

# Prints the requirements the backend adds to setuptools' for a wheel and an editable
# install, one per line (setuptools' own hook is replaced by one returning nothing: it
# runs setup.py, which needs the build environment's setuptools).
EXTRA = """
import sys
sys.path.insert(0, "buildsys")
import trio_uring_backend as backend
backend._setuptools.get_requires_for_build_wheel = lambda config_settings=None: []
backend._setuptools.get_requires_for_build_editable = lambda config_settings=None: []
print(sorted(backend.get_requires_for_build_wheel()))
print(sorted(backend.get_requires_for_build_editable()))
"""


def _extra(compile_setting: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRIO_URING_COMPILE"}
    if compile_setting is not None:
        env["TRIO_URING_COMPILE"] = compile_setting
    proc = subprocess.run(
        [sys.executable, "-c", EXTRA], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    wheel, editable = proc.stdout.splitlines()
    assert wheel == editable
    return list(ast.literal_eval(wheel))


def _names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower().replace("_", "-") for r in requirements}


def test_static_build_requirements_have_no_mypy() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    build_system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    assert build_system["build-backend"] == "trio_uring_backend"
    assert build_system["backend-path"] == ["buildsys"]
    assert "mypy" not in _names(build_system["requires"])
    assert "cffi" in _names(build_system["requires"])


def test_a_pure_build_asks_for_no_mypy() -> None:
    assert _extra("0") == []


@pytest.mark.parametrize("setting", [None, "1"])
def test_a_compiled_build_asks_for_pinned_mypy(setting: str | None) -> None:
    extra = _extra(setting)
    assert {"mypy", "trio", "outcome", "attrs", "mypy-extensions"} <= _names(extra)
    (mypy,) = (Requirement(r) for r in extra if Requirement(r).name == "mypy")
    # Pinned: a lower bound and a cap (the releases the compiled build is tested with).
    assert {spec.operator for spec in mypy.specifier} == {">=", "<"}, mypy
