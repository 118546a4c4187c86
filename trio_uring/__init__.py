"""trio_uring: an io_uring I/O manager for trio.

``trio_uring.run(main)`` behaves exactly like ``trio.run(main)``, but every wait
goes through one io_uring instance.  ``trio_uring.install()`` does the same for
every later ``trio.run`` in the process.  Completion-based operations live in
:mod:`trio_uring.lowlevel`; streams whose ``send_all`` uses ``IORING_OP_SEND_ZC``
and whose ``receive_some`` uses multishot receive are :class:`SocketStream` and
friends; thread-free file I/O is :func:`open_file` and :class:`Path`.
"""

from __future__ import annotations

# First: honours TRIO_URING_PURE=1 (the hot path from its .py files, not a compiled build).
from . import _pure  # noqa: F401
from ._core._manager import UringIOManager
from ._core._statistics import UringStatistics
from ._core._trio_compat import TrioVersionWarning
from ._files._binary_file import AsyncBinaryFile
from ._files._file_base import ClosedFileError
from ._files._open_file import open_file
from ._files._path import Path, read_bytes, read_text, stat, write_bytes, write_text
from ._files._text_file import AsyncTextFile
from ._net._highlevel import (
    open_tcp_listeners,
    open_tcp_stream,
    open_unix_socket,
    serve_listeners,
    serve_tcp,
)
from ._net._listener import SocketListener
from ._net._streams import SocketStream, ZeroCopyPolicy
from ._net._trio_sockets import UringSocket, completion_sockets_enabled, set_completion_sockets
from ._net._trio_streams import completion_streams_enabled, set_completion_streams
from ._run._install import (
    UringUnavailableError,
    UringUnavailableWarning,
    install,
    installed,
    run,
    start_guest_run,
    unavailable_reason,
    uninstall,
    usable,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncBinaryFile",
    "AsyncTextFile",
    "ClosedFileError",
    "Path",
    "SocketListener",
    "SocketStream",
    "TrioVersionWarning",
    "UringIOManager",
    "UringSocket",
    "UringStatistics",
    "UringUnavailableError",
    "UringUnavailableWarning",
    "ZeroCopyPolicy",
    "completion_sockets_enabled",
    "completion_streams_enabled",
    "install",
    "installed",
    "open_file",
    "open_tcp_listeners",
    "open_tcp_stream",
    "open_unix_socket",
    "read_bytes",
    "read_text",
    "run",
    "serve_listeners",
    "serve_tcp",
    "set_completion_sockets",
    "set_completion_streams",
    "start_guest_run",
    "stat",
    "uninstall",
    "unavailable_reason",
    "usable",
    "write_bytes",
    "write_text",
]

# Public objects say ``trio_uring`` (``trio_uring.lowlevel``), not the private module
# that defines them, as trio's do (trio's ``fixup_module_metadata``).  Except
# UringIOManager: its methods stay compiled objects (whose module cannot change), and
# the docs read its attributes' ``#:`` comments from its own module's source.
from ._core._public import fixup_module_metadata

fixup_module_metadata(__name__, globals(), keep=("UringIOManager",))
del fixup_module_metadata
