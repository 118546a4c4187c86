"""``python -m trio_uring info``: what the kernel offers and which paths trio_uring takes."""

from __future__ import annotations

import platform
from typing import Any

import trio

from ._constants import FEAT_CQE_SKIP, SETUP_COOP_TASKRUN, Op
from ._install import unavailable_reason
from ._ring import Ring

#: Every opcode trio_uring uses, what for, and what happens without it.
USED_OPS: tuple[tuple[Op, str, str], ...] = (
    (Op.POLL_ADD, "wait_readable / wait_writable, force_wakeup", "required"),
    (Op.ASYNC_CANCEL, "cancelling in-flight operations", "required"),
    (Op.LINK_TIMEOUT, "deadlines ended by the kernel", "trio cancels with ASYNC_CANCEL"),
    (Op.TIMEOUT, "lowlevel.sleep_until", "trio's own timer"),
    (Op.RECV, "recv, receive_some", "readiness wait + recv()"),
    (Op.SEND, "send, send_all", "readiness wait + send()"),
    (Op.SEND_ZC, "zero-copy send_all", "plain SEND"),
    (Op.SENDMSG, "sendmsg", "readiness wait + sendmsg()"),
    (Op.RECVMSG, "recvmsg", "readiness wait + recvmsg()"),
    (Op.ACCEPT, "accept", "readiness wait + accept()"),
    (Op.CONNECT, "connect", "readiness wait + connect()"),
    (Op.SHUTDOWN, "shutdown", "shutdown() syscall"),
    (Op.READ, "read / pread, file reads", "thread"),
    (Op.WRITE, "write / pwrite, file writes", "thread"),
    (Op.OPENAT, "openat, open_file", "thread"),
    (Op.CLOSE, "close", "close() syscall"),
    (Op.FSYNC, "fsync, flush", "thread"),
    (Op.STATX, "statx, Path.stat", "thread"),
    (Op.SPLICE, "splice", "thread"),
)


def gather() -> dict[str, Any]:
    """Everything ``info`` prints, as a dict (also used by the benchmarks' JSON)."""
    info: dict[str, Any] = {
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "trio": trio.__version__,
        "io_uring_disabled_sysctl": _read("/proc/sys/kernel/io_uring_disabled"),
    }
    reason = unavailable_reason()
    info["usable"] = reason is None
    info["reason"] = reason
    if reason is not None:
        info["fallbacks"] = ["everything: trio's epoll backend"]
        return info
    ring = Ring(entries=8)
    try:
        info["features"] = ring.feature_names()
        info["setup_flags"] = hex(ring.setup_flags)
        info["setup"] = ring.setup_flag_names()
        info["ops"] = {op.name: op in ring.supported_ops for op, _, _ in USED_OPS}
        fallbacks = [
            f"{op.name} missing: {what} uses {fallback}"
            for op, what, fallback in USED_OPS
            if op not in ring.supported_ops
        ]
        if not ring.features & FEAT_CQE_SKIP:
            fallbacks.append("CQE_SKIP missing: internal cancels and timeouts post ignored CQEs")
        if not ring.setup_flags & SETUP_COOP_TASKRUN:
            fallbacks.append(
                "COOP_TASKRUN missing (Linux < 5.19): completions interrupt the running thread"
            )
        info["fallbacks"] = fallbacks
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
    print(f"python / trio    {info['python']} / {info['trio']}")
    if info["io_uring_disabled_sysctl"] is not None:
        print(f"io_uring_disabled sysctl  {info['io_uring_disabled_sysctl']}")
    if not info["usable"]:
        print(f"io_uring         UNAVAILABLE: {info['reason']}")
        print("fallback         trio_uring.run() uses trio's epoll backend (with a warning)")
        return 1
    print("io_uring         usable")
    print(f"features         {' '.join(info['features'])}")
    print(f"setup flags      {' '.join(info['setup'])}")
    print("operations:")
    for op, what, fallback in USED_OPS:
        ok = info["ops"][op.name]
        mark = "yes" if ok else f"NO  -> {fallback}"
        print(f"  {op.name:<14} {mark:<8} {what}")
    if info["fallbacks"]:
        print("fallbacks in effect:")
        for line in info["fallbacks"]:
            print(f"  - {line}")
    else:
        print("fallbacks in effect: none")
    return 0
