"""ENOMEM from ``io_uring_setup`` and ``IORING_REGISTER_BUFFERS``: messages that name the cause.

For a process without ``CAP_IPC_LOCK``, a ring's memory counts against
``RLIMIT_MEMLOCK`` before Linux 5.12 and again since 6.14 (the rings became
accounted memory regions); 5.12 to 6.13 charge it to the memory cgroup only.
Registered buffers are pinned and always count against it.  The real-kernel
tests run in a child process that drops ``CAP_IPC_LOCK`` and lowers the limit.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import trio_uring
from trio_uring._core._ring import _explain_setup_errno, _kernel_version

pytestmark = pytest.mark.no_uring_ok


@pytest.mark.parametrize(
    ("release", "version"),
    [
        ("6.18.44-fc-v657", (6, 18)),
        ("5.10.0-21-amd64", (5, 10)),
        ("6.1.0", (6, 1)),
        ("6.14-rc1", (6, 14)),
        ("4.19.128-microsoft-standard", (4, 19)),
        ("", None),
        ("unknown", None),
        ("6", None),
    ],
)
def test_kernel_version(release: str, version: tuple[int, int] | None) -> None:
    assert _kernel_version(release) == version


@pytest.mark.parametrize("release", ["5.10.0-21-amd64", "5.11.22", "6.14.0", "6.18.44-fc-v657"])
def test_enomem_blames_memlock_where_rings_count_against_it(release: str) -> None:
    message = _explain_setup_errno(errno.ENOMEM, release)
    assert message.startswith("io_uring_setup failed with ENOMEM: RLIMIT_MEMLOCK too low")
    assert "CAP_IPC_LOCK" in message and "out of memory" in message
    assert "Linux " + ".".join(release.split(".")[:2]) in message


@pytest.mark.parametrize("release", ["5.12.0", "5.15.0-91-generic", "6.1.0", "6.13.12"])
def test_enomem_is_out_of_memory_where_rings_are_memcg_only(release: str) -> None:
    message = _explain_setup_errno(errno.ENOMEM, release)
    assert message.startswith("io_uring_setup failed with ENOMEM: out of memory")
    assert "RLIMIT_MEMLOCK too low" not in message
    assert "does not count against RLIMIT_MEMLOCK" in message


def test_enomem_on_an_unknown_kernel_names_both() -> None:
    message = _explain_setup_errno(errno.ENOMEM, "not-a-version")
    assert "out of memory, or RLIMIT_MEMLOCK too low" in message


def test_release_defaults_to_this_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.uname()

    def uname(release: str) -> os.uname_result:
        return os.uname_result((real.sysname, real.nodename, release, real.version, real.machine))

    monkeypatch.setattr(os, "uname", lambda: uname("5.10.0"))
    assert "RLIMIT_MEMLOCK too low" in _explain_setup_errno(errno.ENOMEM)
    monkeypatch.setattr(os, "uname", lambda: uname("6.1.0"))
    assert _explain_setup_errno(errno.ENOMEM).startswith(
        "io_uring_setup failed with ENOMEM: out of memory"
    )


def test_other_errnos_unchanged() -> None:
    assert "EPERM" in _explain_setup_errno(errno.EPERM, "6.18.0")
    assert _explain_setup_errno(errno.EINVAL, "6.18.0") == (
        f"io_uring_setup failed: [Errno {errno.EINVAL}] {os.strerror(errno.EINVAL)}"
    )


# ----------------------------------------------------------- the real kernel
CHILD_PRELUDE = """
import ctypes, json, resource, sys

class Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

class Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]

# Drop CAP_IPC_LOCK (14): with it the kernel accounts no locked memory at all.
libc = ctypes.CDLL(None, use_errno=True)
header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
data = (Data * 2)()
if libc.capget(ctypes.byref(header), data) == 0:
    data[0].effective &= ~(1 << 14)
    data[0].permitted &= ~(1 << 14)
    libc.capset(ctypes.byref(header), data)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_MEMLOCK, (limit, limit))  # lowering is always allowed

def report(**result):
    print(json.dumps(result))
"""

RING_CHILD = """
from trio_uring._core._ring import Ring
try:
    Ring().close()
except OSError as exc:
    report(refused=True, errno=exc.errno, message=str(exc))
else:
    report(refused=False)
"""

REGISTER_CHILD = """
import trio, trio_uring
from trio_uring.lowlevel import register_buffers

async def main():
    buffer = bytearray(16 << 20)
    try:
        register_buffers([buffer]).unregister()
    except OSError as exc:
        report(refused=True, errno=exc.errno, message=str(exc))
    else:
        report(refused=False)

trio_uring.run(main)
"""


def run_child(code: str, memlock: int) -> dict[str, Any]:
    """Run ``code`` in a child without CAP_IPC_LOCK and with RLIMIT_MEMLOCK ``memlock``."""
    package_parent = str(Path(trio_uring.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=package_parent)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD_PRELUDE + code, str(memlock)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(trio_uring.unavailable_reason() is not None, reason="io_uring unavailable")
def test_ring_setup_enomem_from_memlock_is_explained() -> None:
    result = run_child(RING_CHILD, 4096)  # one page: less than any ring needs
    if not result["refused"]:
        pytest.skip(f"this kernel ({os.uname().release}) does not count rings against memlock")
    assert result["errno"] == errno.ENOMEM
    assert "RLIMIT_MEMLOCK too low (it is 4096 bytes" in result["message"]


@pytest.mark.skipif(trio_uring.unavailable_reason() is not None, reason="io_uring unavailable")
def test_register_buffers_enomem_names_memlock() -> None:
    # 1 MiB: room for the ring (which may count against the limit too), not for 16 MiB of buffers.
    result = run_child(REGISTER_CHILD, 1 << 20)
    if not result["refused"]:
        pytest.skip("the kernel registered 16 MiB past RLIMIT_MEMLOCK (CAP_IPC_LOCK kept?)")
    assert result["errno"] == errno.ENOMEM
    message = result["message"]
    assert message.startswith(f"[Errno {errno.ENOMEM}] IORING_REGISTER_BUFFERS: ")
    assert "RLIMIT_MEMLOCK (it is 1048576 bytes)" in message
    assert f"({16 << 20} bytes)" in message
