"""Which Linux release introduced each io_uring feature, and the kernel emulation.

:data:`TABLE` lists every opcode, setup flag, feature flag, SQE flag,
operation flag and register opcode trio_uring declares (``_constants``), with
the first mainline release that has it, what trio_uring uses it for and what it
does without it.  The versions are those of the liburing manual pages
(``io_uring_setup(2)``, ``io_uring_enter(2)``, ``io_uring_register(2)``,
``io_uring_prep_*(3)``; ``ref`` names the page) or, where no page gives one, of
the kernel release that merged the change (``ref`` says so).

``TRIO_URING_EMULATE_KERNEL=5.15`` (a testing aid; ``pytest
--trio-uring-kernel=5.15`` sets it) makes every ring answer for that release:
setup flags it lacks are refused with ``EINVAL`` as an old kernel refuses
them, and the probe reports only its opcodes and feature flags (see
``trio_uring._core._ring.Ring``).  Below 5.11 the ring lacks ``EXT_ARG`` and io_uring
is unusable, as on such a kernel.  The emulation masks what trio_uring *asks*
the kernel; a request for a newer feature that nobody asked about still reaches
the running kernel, which performs it.

This module is part of the core: it imports nothing but ``_constants``.
"""

from __future__ import annotations

import os
import re
from typing import Final, NamedTuple

from ._constants import (
    ACCEPT_MULTISHOT,
    ASYNC_CANCEL_ALL,
    ASYNC_CANCEL_ANY,
    ASYNC_CANCEL_FD,
    FEAT_CQE_SKIP,
    FEAT_EXT_ARG,
    FEAT_FAST_POLL,
    FEAT_LINKED_FILE,
    FEAT_NATIVE_WORKERS,
    FEAT_NODROP,
    FEAT_POLL_32BITS,
    FEAT_RW_CUR_POS,
    FEAT_SINGLE_MMAP,
    FEAT_SUBMIT_STABLE,
    FSYNC_DATASYNC,
    IOSQE_ASYNC,
    IOSQE_BUFFER_SELECT,
    IOSQE_CQE_SKIP_SUCCESS,
    IOSQE_FIXED_FILE,
    IOSQE_IO_DRAIN,
    IOSQE_IO_HARDLINK,
    IOSQE_IO_LINK,
    POLL_ADD_MULTI,
    RECV_MULTISHOT,
    RECVSEND_FIXED_BUF,
    RECVSEND_POLL_FIRST,
    REGISTER_BUFFERS,
    REGISTER_PBUF_RING,
    REGISTER_PBUF_STATUS,
    REGISTER_PROBE,
    SEND_ZC_REPORT_USAGE,
    SETUP_CLAMP,
    SETUP_COOP_TASKRUN,
    SETUP_CQSIZE,
    SETUP_SUBMIT_ALL,
    SETUP_TASKRUN_FLAG,
    TIMEOUT_ABS,
    Op,
)

#: ``(major, minor)`` of a Linux release.
Release = tuple[int, int]

#: The oldest release trio_uring runs on (``IORING_FEAT_EXT_ARG``); below it, epoll.
MINIMUM: Final[Release] = (5, 11)
#: The environment variable that selects the emulated release.
ENV: Final = "TRIO_URING_EMULATE_KERNEL"

# Kinds of entries.
OPCODE: Final = "opcode"
SETUP: Final = "setup flag"
FEATURE: Final = "feature flag"
SQE_FLAG: Final = "SQE flag"
OP_FLAG: Final = "operation flag"
REGISTER: Final = "register opcode"

_ENTER: Final = "io_uring_enter(2)"
_SETUP: Final = "io_uring_setup(2)"
_REGISTER: Final = "io_uring_register(2)"
_EPOLL: Final = "io_uring is unusable: trio's epoll backend, with UringUnavailableWarning"
_THREAD: Final = "a worker thread runs the syscall, as trio does"


class Entry(NamedTuple):
    """One row of :data:`TABLE`."""

    kind: str
    #: The uapi name, e.g. ``IORING_OP_SEND_ZC``.
    name: str
    #: The opcode, or the flag's bit (op flags of different opcodes share bits).
    value: int
    #: The first Linux release that has it.
    since: Release
    #: What trio_uring uses it for ("" if trio_uring does not use it).
    uses: str
    #: What trio_uring does where the kernel lacks it ("" for unused entries).
    without: str
    #: Where ``since`` is documented.
    ref: str

    @property
    def short(self) -> str:
        """The name without its ``IORING_OP_``/``IORING_SETUP_``/... prefix."""
        for prefix in ("IORING_OP_", "IORING_SETUP_", "IORING_FEAT_", "IORING_REGISTER_"):
            if self.name.startswith(prefix):
                return self.name[len(prefix) :]
        return self.name

    @property
    def version(self) -> str:
        return f"{self.since[0]}.{self.since[1]}"


def _op(op: Op, since: Release, uses: str = "", without: str = "", ref: str = _ENTER) -> Entry:
    return Entry(OPCODE, f"IORING_OP_{op.name}", int(op), since, uses, without, ref)


#: Every io_uring opcode, flag and register opcode trio_uring declares, by kind.
# fmt: off
TABLE: Final[tuple[Entry, ...]] = (
    # ---------------------------------------------------------------- opcodes
    _op(Op.NOP, (5, 1), "an SQE cancelled before submission becomes a NOP", _EPOLL),
    _op(Op.READV, (5, 1)),
    _op(Op.WRITEV, (5, 1)),
    _op(Op.FSYNC, (5, 1), "lowlevel.fsync, AsyncFile.fsync / flush", _THREAD),
    _op(Op.READ_FIXED, (5, 1), "lowlevel.read_fixed (registered buffers)"),
    _op(Op.WRITE_FIXED, (5, 1), "lowlevel.write_fixed (registered buffers)"),
    _op(Op.POLL_ADD, (5, 1), "wait_readable / wait_writable, lowlevel.poll, force_wakeup", _EPOLL),
    _op(Op.POLL_REMOVE, (5, 1)),
    _op(Op.SYNC_FILE_RANGE, (5, 2)),
    _op(Op.SENDMSG, (5, 3), "lowlevel.sendmsg"),
    _op(Op.RECVMSG, (5, 3), "lowlevel.recvmsg"),
    _op(Op.TIMEOUT, (5, 4), "lowlevel.sleep / sleep_until"),
    _op(Op.TIMEOUT_REMOVE, (5, 5)),
    _op(Op.ACCEPT, (5, 5), "trio sockets' accept, lowlevel.accept"),
    _op(Op.ASYNC_CANCEL, (5, 5), "cancelling a submitted operation", _EPOLL),
    _op(
        Op.LINK_TIMEOUT, (5, 5), "deadlines the kernel enforces (linked timeouts)",
        "trio cancels at the deadline with ASYNC_CANCEL",
    ),
    _op(Op.CONNECT, (5, 5), "trio sockets' connect, lowlevel.connect"),
    _op(Op.FALLOCATE, (5, 6)),
    _op(Op.OPENAT, (5, 6), "lowlevel.openat, open_file", _THREAD),
    _op(Op.CLOSE, (5, 6), "lowlevel.close, closing files", _THREAD),
    _op(Op.FILES_UPDATE, (5, 6)),
    _op(Op.STATX, (5, 6), "lowlevel.statx / fstat, Path.stat", _THREAD),
    _op(Op.READ, (5, 6), "lowlevel.read / readinto, file reads", _THREAD),
    _op(Op.WRITE, (5, 6), "lowlevel.write, file writes", _THREAD),
    _op(Op.FADVISE, (5, 6)),
    _op(Op.MADVISE, (5, 6)),
    _op(Op.SEND, (5, 6), "trio sockets' send, SocketStream.send_all, lowlevel.send"),
    _op(Op.RECV, (5, 6), "trio sockets' recv, SocketStream.receive_some, lowlevel.recv"),
    _op(Op.OPENAT2, (5, 6)),
    _op(Op.EPOLL_CTL, (5, 6)),
    _op(Op.SPLICE, (5, 7), "lowlevel.splice", _THREAD),
    _op(Op.PROVIDE_BUFFERS, (5, 7)),
    _op(Op.REMOVE_BUFFERS, (5, 7)),
    _op(Op.TEE, (5, 8)),
    _op(Op.SHUTDOWN, (5, 11), "lowlevel.shutdown"),
    _op(Op.RENAMEAT, (5, 11)),
    _op(Op.UNLINKAT, (5, 11)),
    _op(Op.MKDIRAT, (5, 15)),
    _op(Op.SYMLINKAT, (5, 15)),
    _op(Op.LINKAT, (5, 15)),
    _op(Op.MSG_RING, (5, 18)),
    _op(Op.FSETXATTR, (5, 19)),
    _op(Op.SETXATTR, (5, 19)),
    _op(Op.FGETXATTR, (5, 19)),
    _op(Op.GETXATTR, (5, 19)),
    _op(Op.SOCKET, (5, 19)),  # not used: sockets are made with socket(2), as trio does
    _op(Op.URING_CMD, (5, 19)),
    _op(
        Op.SEND_ZC, (6, 0), "zero-copy SocketStream.send_all, lowlevel.send_zc",
        "streams send with SEND; lowlevel.send_zc gets EINVAL from the kernel",
    ),
    _op(Op.SENDMSG_ZC, (6, 1)),
    _op(Op.READ_MULTISHOT, (6, 7)),
    # io_uring_enter(2) says 6.5, but WAITID (50) is numbered after READ_MULTISHOT
    # (49, 6.7): both were merged for 6.7, with the futex opcodes.
    _op(Op.WAITID, (6, 7), ref="merged for Linux 6.7"),
    _op(Op.FUTEX_WAIT, (6, 7)),
    _op(Op.FUTEX_WAKE, (6, 7)),
    _op(Op.FUTEX_WAITV, (6, 7)),
    _op(Op.FIXED_FD_INSTALL, (6, 8)),
    _op(Op.FTRUNCATE, (6, 9), "lowlevel.ftruncate, AsyncFile.truncate", _THREAD),
    _op(Op.BIND, (6, 11)),
    _op(Op.LISTEN, (6, 11)),
    # ------------------------------------------------------------ setup flags
    Entry(
        SETUP, "IORING_SETUP_CQSIZE", SETUP_CQSIZE, (5, 5),
        "a completion queue 8 times the submission queue", _EPOLL,
        "merged for Linux 5.5 (io_uring_setup(2) gives no version)",
    ),
    Entry(
        SETUP, "IORING_SETUP_CLAMP", SETUP_CLAMP, (5, 6),
        "queue sizes clamped to the kernel's maxima", _EPOLL,
        "merged for Linux 5.6 (io_uring_setup(2) gives no version)",
    ),
    Entry(
        SETUP, "IORING_SETUP_SUBMIT_ALL", SETUP_SUBMIT_ALL, (5, 18),
        "one io_uring_enter submits every queued SQE even if one of them is refused",
        "the kernel stops at a refused SQE; the rest go in with the next io_uring_enter",
        _SETUP,
    ),
    Entry(
        SETUP, "IORING_SETUP_COOP_TASKRUN", SETUP_COOP_TASKRUN, (5, 19),
        "completions run at the thread's next kernel entry instead of interrupting it",
        "completions interrupt the running thread (an IPI); correct, a little slower",
        _SETUP,
    ),
    Entry(
        SETUP, "IORING_SETUP_TASKRUN_FLAG", SETUP_TASKRUN_FLAG, (5, 19),
        "with COOP_TASKRUN: IORING_SQ_TASKRUN says completions wait for a kernel entry",
        "", _SETUP,
    ),
    # ---------------------------------------------------------- feature flags
    Entry(FEATURE, "IORING_FEAT_SINGLE_MMAP", FEAT_SINGLE_MMAP, (5, 4),
          "one mmap for both queues", "two mmaps", _SETUP),
    Entry(FEATURE, "IORING_FEAT_NODROP", FEAT_NODROP, (5, 5),
          "no completion is lost when the completion queue is full", _EPOLL, _SETUP),
    Entry(FEATURE, "IORING_FEAT_SUBMIT_STABLE", FEAT_SUBMIT_STABLE, (5, 5), "", "", _SETUP),
    Entry(FEATURE, "IORING_FEAT_RW_CUR_POS", FEAT_RW_CUR_POS, (5, 6), "", "", _SETUP),
    Entry(FEATURE, "IORING_FEAT_CUR_PERSONALITY", 1 << 4, (5, 6), "", "", _SETUP),
    Entry(FEATURE, "IORING_FEAT_FAST_POLL", FEAT_FAST_POLL, (5, 7), "", "", _SETUP),
    Entry(FEATURE, "IORING_FEAT_POLL_32BITS", FEAT_POLL_32BITS, (5, 9), "", "", _SETUP),
    Entry(FEATURE, "IORING_FEAT_SQPOLL_NONFIXED", 1 << 7, (5, 11), "", "", _SETUP),
    Entry(FEATURE, "IORING_FEAT_EXT_ARG", FEAT_EXT_ARG, (5, 11),
          "a wait with a timeout in one io_uring_enter", _EPOLL, _SETUP),
    Entry(FEATURE, "IORING_FEAT_NATIVE_WORKERS", FEAT_NATIVE_WORKERS, (5, 12), "", "", _SETUP),
    Entry(FEATURE, "IORING_FEAT_RSRC_TAGS", 1 << 10, (5, 13), "", "", _SETUP),
    Entry(
        FEATURE, "IORING_FEAT_CQE_SKIP", FEAT_CQE_SKIP, (5, 17),
        "no completion for internal cancels and linked timeouts that succeed",
        "their completions are posted and ignored", _SETUP,
    ),
    Entry(FEATURE, "IORING_FEAT_LINKED_FILE", FEAT_LINKED_FILE, (5, 17), "", "", _SETUP),
    Entry(FEATURE, "IORING_FEAT_REG_REG_RING", 1 << 13, (6, 3), "", "", _SETUP),
    Entry(FEATURE, "IORING_FEAT_RECVSEND_BUNDLE", 1 << 14, (6, 10), "", "", "merged for Linux 6.10"),
    Entry(FEATURE, "IORING_FEAT_MIN_TIMEOUT", 1 << 15, (6, 12), "", "", "merged for Linux 6.12"),
    Entry(FEATURE, "IORING_FEAT_RW_ATTR", 1 << 16, (6, 14), "", "", "merged for Linux 6.14"),
    Entry(FEATURE, "IORING_FEAT_NO_IOWAIT", 1 << 17, (6, 15), "", "",
          "io_uring_set_iowait(3)"),
    # -------------------------------------------------------------- SQE flags
    Entry(SQE_FLAG, "IOSQE_FIXED_FILE", IOSQE_FIXED_FILE, (5, 1), "", "", _ENTER),
    Entry(SQE_FLAG, "IOSQE_IO_DRAIN", IOSQE_IO_DRAIN, (5, 2), "", "", _ENTER),
    Entry(SQE_FLAG, "IOSQE_IO_LINK", IOSQE_IO_LINK, (5, 3),
          "an operation linked to its LINK_TIMEOUT", "", _ENTER),
    Entry(SQE_FLAG, "IOSQE_IO_HARDLINK", IOSQE_IO_HARDLINK, (5, 5), "", "", _ENTER),
    Entry(SQE_FLAG, "IOSQE_ASYNC", IOSQE_ASYNC, (5, 6), "", "", _ENTER),
    Entry(SQE_FLAG, "IOSQE_BUFFER_SELECT", IOSQE_BUFFER_SELECT, (5, 7),
          "the streams' multishot receive picks a provided buffer", "", _ENTER),
    Entry(
        SQE_FLAG, "IOSQE_CQE_SKIP_SUCCESS", IOSQE_CQE_SKIP_SUCCESS, (5, 17),
        "where IORING_FEAT_CQE_SKIP says so: internal cancels and linked timeouts", "",
        _ENTER,
    ),
    # -------------------------------------------------------- operation flags
    Entry(OP_FLAG, "IORING_FSYNC_DATASYNC", FSYNC_DATASYNC, (5, 1),
          "fsync(datasync=True)", "", _ENTER),
    Entry(OP_FLAG, "IORING_TIMEOUT_ABS", TIMEOUT_ABS, (5, 4),
          "absolute deadlines of TIMEOUT and LINK_TIMEOUT", "", _ENTER),
    Entry(
        OP_FLAG, "IORING_POLL_ADD_MULTI", POLL_ADD_MULTI, (5, 13),
        "the manager's force_wakeup eventfd poll",
        "none yet: the manager asks for it anyway; 5.11 and 5.12 refuse the poll (EINVAL) "
        "and force_wakeup stops waking the loop (guest mode; see docs/kernels.rst)",
        _ENTER,
    ),
    Entry(OP_FLAG, "IORING_RECVSEND_POLL_FIRST", RECVSEND_POLL_FIRST, (5, 19), "", "",
          "io_uring_prep_recv(3)"),
    Entry(OP_FLAG, "IORING_ASYNC_CANCEL_ALL", ASYNC_CANCEL_ALL, (5, 19), "", "",
          "io_uring_prep_cancel(3)"),
    Entry(OP_FLAG, "IORING_ASYNC_CANCEL_FD", ASYNC_CANCEL_FD, (5, 19), "", "",
          "io_uring_prep_cancel(3)"),
    Entry(OP_FLAG, "IORING_ASYNC_CANCEL_ANY", ASYNC_CANCEL_ANY, (5, 19), "", "",
          "io_uring_prep_cancel(3)"),
    Entry(
        OP_FLAG, "IORING_ACCEPT_MULTISHOT", ACCEPT_MULTISHOT, (5, 19),
        "trio_uring.SocketListener: one multishot ACCEPT queues connections (bounded)",
        "one ACCEPT per SocketListener.accept call", "io_uring_prep_accept(3)",
    ),
    Entry(
        OP_FLAG, "IORING_RECV_MULTISHOT", RECV_MULTISHOT, (6, 0),
        "SocketStream.receive_some: one multishot RECV per stream into provided buffers",
        "one RECV per receive_some call", "io_uring_prep_recv(3)",
    ),
    Entry(OP_FLAG, "IORING_RECVSEND_FIXED_BUF", RECVSEND_FIXED_BUF, (6, 0), "", "",
          "io_uring_prep_send_zc(3), merged with SEND_ZC"),
    Entry(
        OP_FLAG, "IORING_SEND_ZC_REPORT_USAGE", SEND_ZC_REPORT_USAGE, (6, 2),
        "every SEND_ZC: the notification says whether the data was copied anyway",
        "streams send with SEND; lowlevel.send_zc gets EINVAL (it always asks for the report)",
        "merged for Linux 6.2 (io_uring_prep_send_zc(3) gives no version)",
    ),
    # -------------------------------------------------------- register opcodes
    Entry(REGISTER, "IORING_REGISTER_BUFFERS", REGISTER_BUFFERS, (5, 1),
          "lowlevel.register_buffers", "", _REGISTER),
    Entry(REGISTER, "IORING_REGISTER_PROBE", REGISTER_PROBE, (5, 6),
          "which opcodes the kernel has", _EPOLL, _REGISTER),
    Entry(
        REGISTER, "IORING_REGISTER_PBUF_RING", REGISTER_PBUF_RING, (5, 19),
        "the provided-buffer ring of the streams' multishot receive",
        "one RECV per receive_some call", _REGISTER,
    ),
    Entry(
        REGISTER, "IORING_REGISTER_PBUF_STATUS", REGISTER_PBUF_STATUS, (6, 8),
        "tests only: how many provided buffers the kernel still holds", "", _REGISTER,
    ),
)
# fmt: on

_BY_NAME: Final = {entry.name: entry for entry in TABLE}
_OP_SINCE: Final = {entry.value: entry.since for entry in TABLE if entry.kind == OPCODE}


def entry(name: str) -> Entry:
    """The entry named ``name`` (the uapi name: ``IORING_RECV_MULTISHOT``); KeyError if none."""
    return _BY_NAME[name]


# The entries code asks a ring about (``Ring.has``); ``entry(name)`` gives any other.
MULTISHOT_POLL: Final = entry("IORING_POLL_ADD_MULTI")
MULTISHOT_RECV: Final = entry("IORING_RECV_MULTISHOT")
MULTISHOT_ACCEPT: Final = entry("IORING_ACCEPT_MULTISHOT")
ZC_REPORT_USAGE: Final = entry("IORING_SEND_ZC_REPORT_USAGE")
PBUF_RING: Final = entry("IORING_REGISTER_PBUF_RING")
PBUF_STATUS: Final = entry("IORING_REGISTER_PBUF_STATUS")


def parse_release(text: str) -> Release:
    """``"5.15"`` (or ``"5.15.0-91-generic"``, ``"v6.1"``) as ``(5, 15)``; ValueError if not one."""
    match = re.match(r"\s*v?(\d+)\.(\d+)(?:[.\-+_~].*)?\s*$", text)
    if match is None:
        raise ValueError(f"{text!r} is not a Linux release like 5.15")
    return int(match[1]), int(match[2])


def emulated() -> Release | None:
    """The release ``TRIO_URING_EMULATE_KERNEL`` names, or None (unset, empty or ``0``).

    Read at every call (every ring), so a test harness may set it late.  A value
    that is not a release raises ValueError.
    """
    value = os.environ.get(ENV, "").strip()
    if value in ("", "0"):
        return None
    try:
        return parse_release(value)
    except ValueError:
        raise ValueError(f"{ENV}={value!r} is not a Linux release like 5.15") from None


def setup_flags(release: Release) -> int:
    """The setup flags of :data:`TABLE` that ``release`` accepts."""
    return _bits(SETUP, release)


def feature_flags(release: Release) -> int:
    """The feature flags of :data:`TABLE` that ``release`` reports."""
    return _bits(FEATURE, release)


def has_opcode(opcode: int, release: Release) -> bool:
    """Whether ``release`` has ``opcode`` (False for an opcode :data:`TABLE` lacks)."""
    since = _OP_SINCE.get(opcode)
    return since is not None and since <= release


def probed_release(opcodes: frozenset[int], features: int) -> Release:
    """The newest release among the opcodes and features a kernel reports.

    A distribution kernel with backported io_uring (RHEL 9's 5.14) is at least
    as new as what it reports, whatever its version says.
    """
    newest: Release = (5, 1)
    for item in TABLE:
        if (item.kind == OPCODE and item.value in opcodes) or (
            item.kind == FEATURE and features & item.value
        ):
            newest = max(newest, item.since)
    return newest


def _bits(kind: str, release: Release) -> int:
    bits = 0
    for item in TABLE:
        if item.kind == kind and item.since <= release:
            bits |= item.value
    return bits
