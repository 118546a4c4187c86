"""The operations: each fills one SQE and reads its CQE, nothing else.

Modules here build on :mod:`trio_uring._core` (the manager's public methods:
``submit``, ``perform``, ``withdraw``, ``cancel``, ``register``) and are
re-exported by :mod:`trio_uring.lowlevel`; the streams, trio's sockets and the
files build on them.  ``_sockets`` (recv/send/accept/connect/...), ``_files``
(openat/read/write/close/fsync/statx/...), ``_timers`` (timeouts),
``_zerocopy`` (SEND_ZC and its notification), ``_registered`` (fixed buffers),
``_provided`` (provided-buffer rings), ``_sockaddr`` (address encoding).
"""
