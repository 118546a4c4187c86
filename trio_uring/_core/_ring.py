"""The ring: setup with graceful flag fallback, feature probe, and the cffi handle.

This module decides *how* a ring is made on the running kernel; it knows nothing
about trio.  Everything that talks to the kernel goes through the C part in
``_build_ring.py``.
"""

from __future__ import annotations

import errno
import os
import types
from typing import Any, Final

from . import _kernels
from ._constants import (
    FEATURE_NAMES,
    SETUP_CLAMP,
    SETUP_COOP_TASKRUN,
    SETUP_CQSIZE,
    SETUP_NAMES,
    SETUP_SUBMIT_ALL,
    SETUP_TASKRUN_FLAG,
    Op,
)
from ._ring_cffi import ffi, lib

#: Default submission queue size; the completion queue is 8x that.
DEFAULT_ENTRIES: Final = 256
CQE_SIZE: Final = 16

#: Features without which the manager refuses the ring (and trio_uring falls back to epoll).
REQUIRED_FEATURES: Final = {
    item.value: f"{item.short} (Linux {item.version})"
    for item in map(_kernels.entry, ("IORING_FEAT_EXT_ARG", "IORING_FEAT_NODROP"))
}
#: Opcodes without which the manager refuses the ring.
REQUIRED_OPS: Final = (Op.POLL_ADD, Op.ASYNC_CANCEL, Op.NOP)


def _load_ext() -> Any:
    """The ring extension (``_ringext.c``) bound to this cffi module, or None.

    None where the install built none (``TRIO_URING_COMPILE=0``, a failed build) and
    under ``TRIO_URING_PURE=1`` or ``TRIO_URING_RINGEXT=0`` (a compiled hot path without
    the extension, as an install whose extension failed to build runs; ``make test``
    tests it): then the hot path calls the cffi module itself.
    """
    if os.environ.get("TRIO_URING_PURE") == "1" or os.environ.get("TRIO_URING_RINGEXT") == "0":
        return None
    try:
        from . import _ringext  # type: ignore[attr-defined]
    except ImportError:
        return None

    def address(name: str) -> int:
        return int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))

    _ringext.bind(
        address("tu_prep"), address("tu_pbuf_give"), ffi.release, address("tu_nop_if_unsubmitted")
    )
    return _ringext


def guard_weakrefs(*classes: type) -> None:
    """Make weak references to instances of the compiled ``classes`` safe.

    mypyc gives a compiled class with an interpreted base (``SocketStream``'s
    ``trio.abc`` bases) a ``__weakref__`` slot but a deallocator that never clears
    the weak references: an instance freed by reference counting would leave them
    pointing at freed memory (the next ``ref()`` crashes the interpreter).  The ring
    extension's ``guard_weakrefs`` clears them before the class's deallocator runs, as
    CPython's does.  Interpreted classes (the pure build) need nothing.  (It is used
    under ``TRIO_URING_RINGEXT=0`` too; a compiled install whose ring extension did not
    build has no guard.)
    """
    try:
        from . import _ringext  # type: ignore[attr-defined]
    except ImportError:
        return
    for cls in classes:
        if not isinstance(vars(cls).get("__init__"), types.FunctionType):
            _ringext.guard_weakrefs(cls)


#: The ring extension, or None (see :func:`_load_ext`).  Its ``prep`` writes an SQE
#: through the same ``tu_prep``; its ``export``/``release`` keep the buffer rule of
#: :mod:`trio_uring._core._operation`.
ext: Final[Any] = _load_ext()


class RingUnavailable(OSError):
    """io_uring cannot be used here; ``str()`` says why."""


def _kernel_version(release: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a kernel release string (``os.uname().release``), or None."""
    import re

    match = re.match(r"(\d+)\.(\d+)", release)
    return None if match is None else (int(match[1]), int(match[2]))


def _explain_setup_errno(err: int, release: str | None = None) -> str:
    """Why ``io_uring_setup`` failed with ``err``, on the kernel ``release`` (default: this one)."""
    if err == errno.EPERM:
        return (
            "io_uring_setup failed with EPERM: io_uring is disabled by the "
            "kernel.io_uring_disabled sysctl or blocked by a seccomp profile "
            "(Docker >= 25 and containerd 2.0 block it by default)"
        )
    if err == errno.ENOSYS:
        return (
            "io_uring_setup failed with ENOSYS: the kernel lacks io_uring "
            "(CONFIG_IO_URING) or a seccomp profile hides the syscall"
        )
    if err == errno.ENOMEM:
        # For a process without CAP_IPC_LOCK, the ring's memory counts against
        # RLIMIT_MEMLOCK before Linux 5.12, and again since 6.14 (the rings became
        # accounted "memory regions"); 5.12 to 6.13 charge it to the memory cgroup.
        version = _kernel_version(os.uname().release if release is None else release)
        linux = "" if version is None else f"Linux {version[0]}.{version[1]}"
        if version is not None and (5, 12) <= version < (6, 14):
            return (
                "io_uring_setup failed with ENOMEM: out of memory, or the memory "
                f"cgroup's limit (on {linux} the ring does not count against RLIMIT_MEMLOCK)"
            )
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft} bytes"
        if version is None:
            return (
                "io_uring_setup failed with ENOMEM: out of memory, or RLIMIT_MEMLOCK "
                f"too low (it is {limit}; Linux before 5.12 and since 6.14 counts the "
                "ring's memory against it unless the process has CAP_IPC_LOCK)"
            )
        return (
            f"io_uring_setup failed with ENOMEM: RLIMIT_MEMLOCK too low (it is {limit}; "
            f"{linux} counts the ring's memory against it unless the process has "
            "CAP_IPC_LOCK: raise it with ulimit -l, LimitMEMLOCK= or docker run "
            "--ulimit memlock=), or out of memory"
        )
    return f"io_uring_setup failed: [Errno {err}] {os.strerror(err)}"


class Ring:
    """One io_uring instance: its cffi handle, features, and supported opcodes.

    Under ``TRIO_URING_EMULATE_KERNEL`` (see :mod:`trio_uring._core._kernels`) the ring
    answers for that release: setup flags it lacks are refused with ``EINVAL``,
    as its kernel would, so the ring is really set up without them, and
    :attr:`features`, :attr:`supported_ops` and :meth:`has` report only what it has.
    """

    def __init__(self, entries: int = DEFAULT_ENTRIES, cq_factor: int = 8) -> None:
        self.handle: Any = ffi.new("tu_ring *")
        self.handle.fd = -1
        #: The release ``TRIO_URING_EMULATE_KERNEL`` names, or None.
        self.emulated: _kernels.Release | None = _kernels.emulated()
        emulated = self.emulated
        note = ""
        if emulated is not None:
            note = f" (emulating Linux {emulated[0]}.{emulated[1]}: {_kernels.ENV})"
            if emulated < (5, 1):  # io_uring_setup arrived in 5.1
                raise RingUnavailable(errno.ENOSYS, _explain_setup_errno(errno.ENOSYS) + note)
        # COOP_TASKRUN (5.19): completions are not pushed into the running thread
        # with an interrupt (an IPI, a VM exit under a hypervisor) but run at its next
        # kernel entry; TASKRUN_FLAG sets IORING_SQ_TASKRUN meanwhile, so the manager
        # knows to enter.  A sleeping thread is still woken.
        flags = (
            SETUP_CQSIZE | SETUP_CLAMP | SETUP_SUBMIT_ALL | SETUP_COOP_TASKRUN | SETUP_TASKRUN_FLAG
        )
        rc = self._setup(entries, entries * cq_factor, flags)
        if rc == -errno.EINVAL:
            # Older kernels reject unknown flags: COOP_TASKRUN/TASKRUN_FLAG (5.19) first,
            # then SUBMIT_ALL (5.18).
            flags &= ~(SETUP_COOP_TASKRUN | SETUP_TASKRUN_FLAG)
            rc = self._setup(entries, entries * cq_factor, flags)
        if rc == -errno.EINVAL:
            flags &= ~SETUP_SUBMIT_ALL
            rc = self._setup(entries, entries * cq_factor, flags)
        if rc < 0:
            reason = _explain_setup_errno(-rc)
            if (
                rc == -errno.EINVAL
                and (emulated or _kernel_version(os.uname().release) or _kernels.MINIMUM)
                < _kernels.MINIMUM
            ):
                reason += "; trio_uring needs Linux 5.11 or newer"
            raise RingUnavailable(-rc, reason + note)
        self.fd: int = self.handle.fd
        #: The address of the C-side ring state (``tu_ring *``), for the ring extension.
        self.address: int = int(ffi.cast("uintptr_t", self.handle))
        self.setup_flags: int = flags
        self.sq_entries: int = self.handle.sq_entries
        self.cq_entries: int = self.handle.cq_entries
        features: int = self.handle.features
        supported = ffi.new("unsigned char[]", 256)
        last = lib.tu_probe(self.handle, supported, 256)
        ops = frozenset(i for i in range(256) if supported[i]) if last >= 0 else frozenset()
        # The release this ring answers for: the kernel's version, or newer where its
        # probe reports newer features (backports); the emulated one if that is older.
        version = _kernel_version(os.uname().release) or _kernels.MINIMUM
        release = max(version, _kernels.probed_release(ops, features))
        if emulated is not None:
            release = min(release, emulated)
            features &= _kernels.feature_flags(emulated)
            if emulated < _kernels.entry("IORING_REGISTER_PROBE").since:
                ops = frozenset()
            ops = frozenset(op for op in ops if _kernels.has_opcode(op, emulated))
        #: ``IORING_FEAT_*`` bits of the kernel (of the emulated release).
        self.features: int = features
        #: Opcodes ``IORING_REGISTER_PROBE`` reports (it arrived in 5.6; below that,
        #: none are known).
        self.supported_ops: frozenset[int] = ops
        #: The Linux release this ring answers :meth:`has` for.
        self.release: _kernels.Release = release
        missing = [name for bit, name in REQUIRED_FEATURES.items() if not self.features & bit]
        missing += [f"IORING_OP_{op.name}" for op in REQUIRED_OPS if op not in self.supported_ops]
        if missing:
            self.close()
            raise RingUnavailable(
                errno.ENOSYS, "the kernel's io_uring lacks " + ", ".join(missing) + note
            )

    def _setup(self, entries: int, cq_entries: int, flags: int) -> int:
        """``io_uring_setup``; under emulation, flags the release lacks give ``-EINVAL``."""
        emulated = self.emulated
        if emulated is not None and flags & ~_kernels.setup_flags(emulated):
            return -errno.EINVAL  # as that kernel answers a flag it does not know
        rc: int = lib.tu_setup(self.handle, entries, cq_entries, flags)
        return rc

    def has(self, item: _kernels.Entry) -> bool:
        """Whether this ring's kernel has ``item`` (an entry of ``_kernels.TABLE``).

        Opcodes answer from the probe, feature flags from the ring's features;
        setup, SQE and operation flags and register opcodes, which no probe
        reports, from :attr:`release`.  A kernel may still refuse a flag at run
        time (``EINVAL``); the paths that use one fall back then too.
        """
        if item.kind == _kernels.OPCODE:
            return item.value in self.supported_ops
        if item.kind == _kernels.FEATURE:
            return bool(self.features & item.value)
        return item.since <= self.release

    def supports(self, op: Op) -> bool:
        return op in self.supported_ops

    def feature_names(self) -> list[str]:
        return [name for bit, name in FEATURE_NAMES.items() if self.features & bit]

    def setup_flag_names(self) -> list[str]:
        return [name for bit, name in SETUP_NAMES.items() if self.setup_flags & bit]

    def close(self) -> None:
        if self.handle.fd >= 0:
            lib.tu_teardown(self.handle)
