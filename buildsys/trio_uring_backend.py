"""trio_uring's PEP 517 build backend: setuptools', asking for mypy only when compiling.

``pyproject.toml`` names it (``build-backend``, ``backend-path = ["buildsys"]``).  It
is ``setuptools.build_meta`` with one change: :func:`get_requires_for_build_wheel`
and :func:`get_requires_for_build_editable` add :data:`COMPILE_REQUIRES` (mypy, which
ships mypyc, and what mypyc type-checks the hot path against) unless
``TRIO_URING_COMPILE=0`` asks for the pure build, so a pure build downloads no mypy.
mypy is pinned to the releases the compiled build is tested with: mypyc's output
and what it accepts change between releases (raise the cap after ``make test``
passes compiled with the newer mypy).
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401  (the rest of the PEP 517 interface)
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

#: The build requirements of the compiled hot path (``setup.py``: ``mypycify``).
COMPILE_REQUIRES: tuple[str, ...] = (
    "mypy>=2.4,<2.5",
    "trio>=0.30",
    "outcome>=1.3",
    "attrs>=23.1",
    "mypy_extensions>=1.0",
)


def compiling() -> bool:
    """Whether this build compiles the hot path (``TRIO_URING_COMPILE`` is not ``0``)."""
    return os.environ.get("TRIO_URING_COMPILE", "1") != "0"


def _extra() -> list[str]:
    return list(COMPILE_REQUIRES) if compiling() else []


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    """setuptools' requirements, plus :data:`COMPILE_REQUIRES` when compiling."""
    return [*_setuptools.get_requires_for_build_wheel(config_settings), *_extra()]


def get_requires_for_build_editable(
    config_settings: dict[str, Any] | None = None,
) -> list[str]:
    """setuptools' requirements, plus :data:`COMPILE_REQUIRES` when compiling."""
    return [*_setuptools.get_requires_for_build_editable(config_settings), *_extra()]
