"""The two KeyboardInterrupt injectors the hostile-caller children share
(``tests/test_hostile_files.py``, ``tests/test_hostile_sockets.py``).

Each raises ``SIGINT`` (``signal.raise_signal``: trio's own handler decides what happens)
once, at the ``at``-th event it counts while ``armed``; ``fired`` says whether it did and
``count`` how many events it saw.  :class:`Injector` counts line events of trio_uring's
own code (a trace function: the pure build, where that code has frames);
:class:`StepInjector` counts scheduler events (an Instrument: the compiled build).
``tests/_ki_child.py`` has a finer injector of its own (one task, more kinds of point).
"""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

import trio

import trio_uring

#: trio_uring's source directory: the line events counted are those of its files.
PKG = os.path.dirname(trio_uring.__file__) + os.sep


class Injector:
    """A trace function: SIGINT at the ``at``-th line event of trio_uring's code."""

    def __init__(self, at: int) -> None:
        self.at, self.count, self.armed, self.fired = at, 0, False, False

    def global_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if self.armed and frame.f_code.co_filename.startswith(PKG):
            return self.local_trace
        return None

    def local_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and self.armed:
            self.count += 1
            if self.count == self.at:
                self.armed = False
                self.fired = True
                signal.raise_signal(signal.SIGINT)
        return self.local_trace


class StepInjector(trio.abc.Instrument):
    """SIGINT at the ``at``-th scheduler event (a task step or an I/O wait, before or
    after): for the compiled build, where there are no frames to trace."""

    def __init__(self, at: int) -> None:
        self.at, self.count, self.armed, self.fired = at, 0, False, False

    def _event(self, *args: object) -> None:
        if self.armed:
            self.count += 1
            if self.count == self.at:
                self.armed = False
                self.fired = True
                signal.raise_signal(signal.SIGINT)

    before_task_step = after_task_step = before_io_wait = after_io_wait = _event
