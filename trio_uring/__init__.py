"""trio_uring: an io_uring I/O manager for trio.

``trio_uring.run(main)`` behaves exactly like ``trio.run(main)``, but every wait
goes through one io_uring instance.  ``trio_uring.install()`` does the same for
every later ``trio.run`` in the process.  Completion-based operations live in
:mod:`trio_uring.lowlevel`.
"""

from __future__ import annotations

from ._install import (
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
from ._manager import UringIOManager, UringStatistics

__version__ = "0.1.0"

__all__ = [
    "UringIOManager",
    "UringStatistics",
    "UringUnavailableError",
    "UringUnavailableWarning",
    "install",
    "installed",
    "run",
    "start_guest_run",
    "uninstall",
    "unavailable_reason",
    "usable",
]
