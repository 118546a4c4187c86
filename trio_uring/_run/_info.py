"""``python -m trio_uring info``: what the kernel offers and which paths trio_uring takes.

Everything it says about kernel features comes from the one table,
:data:`trio_uring._core._kernels.TABLE`; under ``TRIO_URING_EMULATE_KERNEL`` it shows
the emulated release and its fallbacks.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import trio

from .. import _pure
from .._core import _kernels
from .._core._ring import Ring
from .._net._sendfile import describe_path
from ._install import unavailable_reason

#: Every opcode trio_uring uses: ``(entry, what for, what happens without it)``.
USED_OPS: tuple[_kernels.Entry, ...] = tuple(
    item for item in _kernels.TABLE if item.kind == _kernels.OPCODE and item.uses
)


def in_effect(ring: Ring, item: _kernels.Entry) -> bool:
    """Whether ``ring`` uses ``item``: a setup flag it was made with, else :meth:`Ring.has`."""
    if item.kind == _kernels.SETUP:
        return bool(ring.setup_flags & item.value)
    return ring.has(item)


def fallbacks(ring: Ring) -> list[str]:
    """One line per used feature ``ring`` lacks: the feature, its release, what happens instead."""
    return [
        f"{item.name} (Linux {item.version}) missing: {item.uses} -> {item.without}"
        for item in _kernels.TABLE
        if item.uses and item.without and not in_effect(ring, item)
    ]


def _ring_extension() -> str:
    """Whether the hot path calls the ring extension (``_core/_ringext.c``) or cffi."""
    from .._core import _ring

    if _ring.ext is not None:
        return "in use (SQE prep, buffer take, task wake-up in C)"
    if os.environ.get("TRIO_URING_PURE") == "1":
        return "not used (TRIO_URING_PURE=1): cffi calls"
    if os.environ.get("TRIO_URING_RINGEXT") == "0":
        return "not used (TRIO_URING_RINGEXT=0): cffi calls"
    why = _pure.build_record().get("ring_extension_reason")
    if why is not None:
        return f"not built because {why}: cffi calls"
    return "not built (TRIO_URING_COMPILE=0 or no C compiler at install): cffi calls"


def _trio_mirrors() -> str:
    """Whether every piece of trio that trio_uring mirrors is the recorded code."""
    from .._core import _trio_compat

    changed = [piece for piece, ok in _trio_compat.MIRRORED.items() if not ok]
    if not changed:
        return "all recorded (trio's code is what trio_uring's copies follow)"
    return "trio's own code (changed in this trio) for: " + ", ".join(changed)


def _trio_streams_mode() -> str:
    """Which code ``trio.SocketStream`` runs under io_uring (``TRIO_URING_STREAMS``)."""
    from .._net._trio_streams import completion_streams_enabled

    if completion_streams_enabled():
        return (
            "trio.SocketStream on trio_uring's stream machinery (multishot receive, one "
            "SEND per chunk, no zero-copy; kernel 6.0+; TRIO_URING_STREAMS=0: trio's own)"
        )
    return "trio.SocketStream runs trio's own code (TRIO_URING_STREAMS=0 or set_completion_streams)"


def gather() -> dict[str, Any]:
    """Everything ``info`` prints, as a dict (also used by the benchmarks' JSON)."""
    emulated = _kernels.emulated()
    info: dict[str, Any] = {
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "trio": trio.__version__,
        "hot_path": _pure.build(),
        "hot_path_reason": _pure.pure_reason(),
        "ring_extension": _ring_extension(),
        "trio_mirrors": _trio_mirrors(),
        "trio_streams": _trio_streams_mode(),
        "io_uring_disabled_sysctl": _read("/proc/sys/kernel/io_uring_disabled"),
        "emulated": None if emulated is None else f"{emulated[0]}.{emulated[1]}",
    }
    reason = unavailable_reason()
    info["usable"] = reason is None
    info["reason"] = reason
    if reason is not None:
        info["fallbacks"] = ["everything: trio's epoll backend"]
        return info
    ring = Ring(entries=8)
    try:
        info["release"] = f"{ring.release[0]}.{ring.release[1]}"
        info["features"] = ring.feature_names()
        info["setup_flags"] = hex(ring.setup_flags)
        info["setup"] = ring.setup_flag_names()
        info["ops"] = {item.short: ring.has(item) for item in USED_OPS}
        info["fallbacks"] = fallbacks(ring)
    finally:
        ring.close()
    return info


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def main() -> int:
    info = gather()
    print(f"kernel           {info['kernel']} ({info['machine']})")
    if info["emulated"] is not None:
        print(
            f"emulated kernel  Linux {info['emulated']} ({_kernels.ENV}: a testing aid; "
            "the probe reports only what that release has)"
        )
    print(f"python / trio    {info['python']} / {info['trio']}")
    why = info["hot_path_reason"]
    if info["hot_path"] == "pure" and why is not None:
        print(f"hot path         pure because {why}")
    else:
        print(f"hot path         {info['hot_path']} (TRIO_URING_PURE=1: the .py files)")
    print(f"ring extension   {info['ring_extension']}")
    print(f"trio mirrors     {info['trio_mirrors']}")
    print(f"trio streams     {info['trio_streams']}")
    if info["io_uring_disabled_sysctl"] is not None:
        print(f"io_uring_disabled sysctl  {info['io_uring_disabled_sysctl']}")
    if not info["usable"]:
        print(f"io_uring         UNAVAILABLE: {info['reason']}")
        print("fallback         trio_uring.run() uses trio's epoll backend (with a warning)")
        return 1
    print(f"io_uring         usable (as of Linux {info['release']})")
    print(f"features         {' '.join(info['features'])}")
    print(f"setup flags      {' '.join(info['setup'])}")
    print("operations:")
    for item in USED_OPS:
        ok = info["ops"][item.short]
        print(f"  {item.short:<14} {'yes' if ok else 'NO':<4} {item.uses}")
    print(f"send_file        {describe_path(info['ops'].get('SPLICE', False))}")
    if info["fallbacks"]:
        print("fallbacks in effect:")
        for line in info["fallbacks"]:
            print(f"  - {line}")
    else:
        print("fallbacks in effect: none")
    return 0
