"""Kernel constants for io_uring, declared here so an old system header does not matter.

Values are from ``include/uapi/linux/io_uring.h`` (Linux 6.18).
"""

from __future__ import annotations

import enum
from typing import Final


class Op(enum.IntEnum):
    """``IORING_OP_*`` opcodes."""

    NOP = 0
    READV = 1
    WRITEV = 2
    FSYNC = 3
    READ_FIXED = 4
    WRITE_FIXED = 5
    POLL_ADD = 6
    POLL_REMOVE = 7
    SYNC_FILE_RANGE = 8
    SENDMSG = 9
    RECVMSG = 10
    TIMEOUT = 11
    TIMEOUT_REMOVE = 12
    ACCEPT = 13
    ASYNC_CANCEL = 14
    LINK_TIMEOUT = 15
    CONNECT = 16
    FALLOCATE = 17
    OPENAT = 18
    CLOSE = 19
    FILES_UPDATE = 20
    STATX = 21
    READ = 22
    WRITE = 23
    FADVISE = 24
    MADVISE = 25
    SEND = 26
    RECV = 27
    OPENAT2 = 28
    EPOLL_CTL = 29
    SPLICE = 30
    PROVIDE_BUFFERS = 31
    REMOVE_BUFFERS = 32
    TEE = 33
    SHUTDOWN = 34
    RENAMEAT = 35
    UNLINKAT = 36
    MKDIRAT = 37
    SYMLINKAT = 38
    LINKAT = 39
    MSG_RING = 40
    FSETXATTR = 41
    SETXATTR = 42
    FGETXATTR = 43
    GETXATTR = 44
    SOCKET = 45
    URING_CMD = 46
    SEND_ZC = 47
    SENDMSG_ZC = 48
    READ_MULTISHOT = 49
    WAITID = 50
    FUTEX_WAIT = 51
    FUTEX_WAKE = 52
    FUTEX_WAITV = 53
    FIXED_FD_INSTALL = 54
    FTRUNCATE = 55
    BIND = 56
    LISTEN = 57


# io_uring_setup flags
SETUP_CQSIZE = 1 << 3
SETUP_CLAMP = 1 << 4
SETUP_SUBMIT_ALL = 1 << 7
SETUP_COOP_TASKRUN = 1 << 8
SETUP_TASKRUN_FLAG = 1 << 9

SETUP_NAMES = {
    SETUP_CQSIZE: "CQSIZE",
    SETUP_CLAMP: "CLAMP",
    SETUP_SUBMIT_ALL: "SUBMIT_ALL",
    SETUP_COOP_TASKRUN: "COOP_TASKRUN",
    SETUP_TASKRUN_FLAG: "TASKRUN_FLAG",
}

# io_uring_params.features
FEAT_SINGLE_MMAP = 1 << 0
FEAT_NODROP = 1 << 1
FEAT_SUBMIT_STABLE = 1 << 2
FEAT_RW_CUR_POS = 1 << 3
FEAT_FAST_POLL = 1 << 5
FEAT_POLL_32BITS = 1 << 6
FEAT_EXT_ARG = 1 << 8
FEAT_NATIVE_WORKERS = 1 << 9
FEAT_CQE_SKIP = 1 << 11
FEAT_LINKED_FILE = 1 << 12

FEATURE_NAMES = {
    FEAT_SINGLE_MMAP: "SINGLE_MMAP",
    FEAT_NODROP: "NODROP",
    FEAT_SUBMIT_STABLE: "SUBMIT_STABLE",
    FEAT_RW_CUR_POS: "RW_CUR_POS",
    FEAT_FAST_POLL: "FAST_POLL",
    FEAT_POLL_32BITS: "POLL_32BITS",
    FEAT_EXT_ARG: "EXT_ARG",
    FEAT_NATIVE_WORKERS: "NATIVE_WORKERS",
    FEAT_CQE_SKIP: "CQE_SKIP",
    FEAT_LINKED_FILE: "LINKED_FILE",
}

# sqe->flags
IOSQE_FIXED_FILE = 1 << 0
IOSQE_IO_DRAIN = 1 << 1
IOSQE_IO_LINK = 1 << 2
IOSQE_IO_HARDLINK = 1 << 3
IOSQE_ASYNC = 1 << 4
IOSQE_BUFFER_SELECT = 1 << 5
IOSQE_CQE_SKIP_SUCCESS = 1 << 6

# cqe->flags
CQE_F_BUFFER = 1 << 0
CQE_F_MORE = 1 << 1
CQE_F_SOCK_NONEMPTY = 1 << 2
CQE_F_NOTIF = 1 << 3
CQE_BUFFER_SHIFT = 16

# poll
POLL_ADD_MULTI = 1 << 0

# timeouts
TIMEOUT_ABS = 1 << 0

# async cancel
ASYNC_CANCEL_ALL = 1 << 0
ASYNC_CANCEL_FD = 1 << 1
ASYNC_CANCEL_ANY = 1 << 2

# accept ioprio flags
ACCEPT_MULTISHOT = 1 << 0

# send/recv ioprio flags
RECVSEND_POLL_FIRST = 1 << 0
RECV_MULTISHOT = 1 << 1
RECVSEND_FIXED_BUF = 1 << 2
SEND_ZC_REPORT_USAGE = 1 << 3
NOTIF_USAGE_ZC_COPIED = 1 << 31

# fsync
FSYNC_DATASYNC = 1 << 0

# register opcodes
REGISTER_BUFFERS = 0
UNREGISTER_BUFFERS = 1
REGISTER_PROBE = 8
REGISTER_PBUF_RING = 22
UNREGISTER_PBUF_RING = 23

# sq ring flags
SQ_CQ_OVERFLOW = 1 << 1
SQ_TASKRUN = 1 << 2

# The kernel's limits and the flags every request of a kind carries.  The one home of
# each: the modules above import them from here; the ring extension's C copy
# (TU_MAX_RW_COUNT in _ringext.c) is checked against this by tests/test_ringext.py.
#: The kernel never transfers more than this in one request (``MAX_RW_COUNT``).
MAX_RW_COUNT: Final = 0x7FFFF000
#: ``MSG_NOSIGNAL``: a send to a closed peer fails with EPIPE instead of raising SIGPIPE.
MSG_NOSIGNAL: Final = 0x4000
#: ``IORING_REGISTER_PBUF_STATUS`` (Linux 6.8): where a provided-buffer ring's head is.
REGISTER_PBUF_STATUS: Final = 26
