"""The operation lifecycle (``trio_uring/_core/_operation.py``): its states and transitions.

The diagram in the module docstring and in docs/contributing.rst is the transition table;
the real-ring tests watch an operation go through the states that table names.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import trio
import trio.testing

from tests._pairs import Pair
from trio_uring._core import _sqe
from trio_uring._core._operation import (
    COMPLETED,
    EXPIRED,
    PREPARED,
    STATE_NAMES,
    SUBMITTED,
    TRANSITIONS,
    Operation,
)
from trio_uring.lowlevel import current_manager

ROOT = Path(__file__).resolve().parent.parent
_EDGE = re.compile(r"^\s*([A-Z]+)\s+──([a-z_]+)─*▶\s+([A-Z]+)\b", re.MULTILINE)


def edges(text: str) -> dict[tuple[str, str], str]:
    """The ``STATE ──transition──▶ STATE`` lines of a diagram."""
    found: dict[tuple[str, str], str] = {}
    for before, name, after in _EDGE.findall(text):
        assert (before, name) not in found, f"{before} --{name}--> drawn twice"
        found[before, name] = after
    return found


def test_the_docstring_draws_the_transition_table() -> None:
    # (from the source: a compiled module keeps no docstring)
    source = (ROOT / "trio_uring" / "_core" / "_operation.py").read_text()
    doc = ast.get_docstring(ast.parse(source))
    assert doc is not None
    assert edges(doc) == TRANSITIONS


def test_the_docs_draw_the_same_diagram() -> None:
    for page in ("contributing.rst", "semantics.rst"):
        assert edges((ROOT / "docs" / page).read_text()) == TRANSITIONS, page


def test_every_transition_is_a_method_between_named_states() -> None:
    for (before, name), after in TRANSITIONS.items():
        assert before in STATE_NAMES and after in STATE_NAMES
        assert callable(getattr(Operation, name))
    # every state but PREPARED is reached, every state is left
    assert {after for after in TRANSITIONS.values()} == set(STATE_NAMES) - {"PREPARED"}
    assert {before for before, _ in TRANSITIONS} == set(STATE_NAMES)


def test_only_the_operation_module_assigns_state() -> None:
    package = ROOT / "trio_uring"
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in package.rglob("*.py")
        if path.name != "_operation.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\.state = ", line)
    ]
    assert offenders == []


async def test_withdrawn_before_the_kernel_saw_it(pair: Pair) -> None:
    _, b = pair
    manager = current_manager()
    base = manager.statistics().async_cancels
    op = Operation(manager, b.fileno())
    assert op.state == PREPARED
    seen: list[int] = []
    with trio.CancelScope() as scope:
        started = manager.submit(
            _sqe.recv(b.fileno(), -1), buffer=bytearray(8), writable=True, op=op
        )
        seen.append(started.state)
        scope.cancel()  # before the loop's io_uring_enter: the SQE becomes a NOP
        await started
    assert scope.cancelled_caught
    seen.append(op.state)
    assert [STATE_NAMES[s] for s in seen] == ["SUBMITTED", "COMPLETED"]
    assert manager.statistics().async_cancels == base  # no ASYNC_CANCEL was needed
    assert op.exports is None  # released


async def test_cancelled_in_the_kernel_is_cancelling_until_its_cqe(pair: Pair) -> None:
    _, b = pair
    manager = current_manager()
    op = Operation(manager, b.fileno())
    states: list[int] = []
    scope = trio.CancelScope()

    async def receiver() -> None:
        with scope:
            await manager.perform(
                _sqe.recv(b.fileno(), -1), buffer=bytearray(8), writable=True, op=op
            )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        states.append(op.state)
        scope.cancel()  # the abort runs now: the kernel has the SQE, ASYNC_CANCEL goes out
        states.append(op.state)
    states.append(op.state)
    assert scope.cancelled_caught
    assert [STATE_NAMES[s] for s in states] == ["SUBMITTED", "CANCELLING", "COMPLETED"]


async def test_a_fired_linked_timeout_is_the_expired_state(pair: Pair) -> None:
    """The deadline moved later after submission: the kernel's linked timeout ends the
    receive (EXPIRED, the task still parked), the next tick starts it again."""
    a, b = pair
    manager = current_manager()
    op = Operation(manager, b.fileno())
    got: list[int] = []
    scope = trio.CancelScope(deadline=trio.current_time() + 0.03)

    async def receiver() -> None:
        with scope:
            got.append(
                await manager.perform(
                    _sqe.recv(b.fileno(), -1), buffer=bytearray(16), writable=True, op=op
                )
            )

    base = manager.statistics().linked_timeouts_fired
    states = [op.state]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        assert op.sqe is not None  # linked to an IORING_OP_LINK_TIMEOUT
        scope.deadline = trio.current_time() + 30
        with trio.fail_after(5):
            # One check per loop tick: EXPIRED lasts from the CQE to the next tick.
            while manager.statistics().linked_timeouts_fired == base or op.state != SUBMITTED:
                await trio.lowlevel.cancel_shielded_checkpoint()
                if op.state != states[-1]:
                    states.append(op.state)
        a.send(b"late data")
    assert got == [len(b"late data")]
    assert [STATE_NAMES[s] for s in states] == ["PREPARED", "SUBMITTED", "EXPIRED", "SUBMITTED"]
    assert op.state == COMPLETED


async def test_an_expired_operation_cancelled_by_trio_completes(pair: Pair) -> None:
    _, b = pair
    manager = current_manager()
    op = Operation(manager, b.fileno())
    scope = trio.CancelScope(deadline=trio.current_time() + 0.03)
    states: list[int] = []

    async def receiver() -> None:
        with scope:
            await manager.perform(
                _sqe.recv(b.fileno(), -1), buffer=bytearray(16), writable=True, op=op
            )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        scope.deadline = trio.current_time() + 30
        with trio.fail_after(5):
            while op.state != EXPIRED:
                await trio.lowlevel.cancel_shielded_checkpoint()
        base = manager.statistics().async_cancels
        states.append(op.state)
        scope.cancel()  # in the same tick: nothing is left to cancel in the ring
        states.append(op.state)
    assert scope.cancelled_caught
    assert [STATE_NAMES[s] for s in states] == ["EXPIRED", "COMPLETED"]
    assert manager.statistics().async_cancels == base
    assert op.exports is None
