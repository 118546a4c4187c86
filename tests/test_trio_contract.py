"""The contract with trio's internals (``_trio_compat.TRIO_MIRRORS``).

* The installed trio's code is what trio_uring's copies were checked against: every
  mirrored target's fingerprint is a recorded one (else: the copies to re-read).
* Each copy behaves as trio's own code on the same inputs: the ring extension's
  ``Waker`` as ``Runner.reschedule`` (field by field, the instrument hook, the asserts),
  every copy of ``checkpoint_if_cancelled``'s test (including the
  KeyboardInterrupt-pending branch), ``park`` as ``wait_task_rescheduled``,
  ``completed_checkpoint`` as trio's two checkpoints.
* A trio whose code differs (one target replaced, in a child process) gives a
  ``TrioVersionWarning`` naming the piece and the trio version, takes the fallback, and
  a workload gives the same results as with the recorded trio.

The C copies are tested in both builds (the ring extension is imported directly when
``TRIO_URING_PURE=1`` leaves it unused).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import pytest
import trio
import trio.testing

import trio_uring
from tests._child import run_child
from trio_uring._core import _fingerprint, _trio_compat, _trio_fast
from trio_uring._core._trio_fingerprints import KNOWN_FINGERPRINTS

pytestmark = pytest.mark.no_uring_ok


def _ringext() -> Any:
    try:
        module = importlib.import_module("trio_uring._core._ringext")
    except ImportError:
        pytest.skip("no ring extension in this install")
    module.bind_trio(*_trio_compat.bind_trio_args())
    return module


# ------------------------------------------------------------------ fingerprints


def test_every_mirrored_piece_has_a_recorded_fingerprint() -> None:
    known = KNOWN_FINGERPRINTS.get(_trio_compat.PYTHON_MINOR, {})
    changed = []
    for entry in _trio_compat.TRIO_MIRRORS:
        for target in entry["trio"]:
            found = _trio_compat.trio_fingerprint(target)
            versions = known.get(target, {}).get(found)
            if versions is None:
                changed.append(
                    f"{entry['piece']}: {target} has fingerprint {found} (recorded: "
                    f"{sorted(known.get(target, {}))}); re-read {list(entry['copies'])}"
                )
            elif trio.__version__ in _trio_compat.TESTED_TRIO:
                assert trio.__version__ in versions, (target, found, versions)
    assert not changed, (
        f"trio {trio.__version__} on Python {_trio_compat.PYTHON_MINOR} changed code that "
        "trio_uring copies: re-read the copies, then `make trio-fingerprints`:\n"
        + "\n".join(changed)
    )
    assert all(_trio_compat.MIRRORED.values()), _trio_compat.MIRRORED


def test_the_list_names_every_piece_once_with_copies_and_a_fallback() -> None:
    pieces = [entry["piece"] for entry in _trio_compat.TRIO_MIRRORS]
    assert len(pieces) == len(set(pieces))
    for entry in _trio_compat.TRIO_MIRRORS:
        assert entry["trio"] and entry["copies"] and entry["fallback"], entry
        for copy in entry["copies"]:
            path = copy.partition(":")[0]
            assert (trio_uring_root() / path).exists(), copy


def trio_uring_root() -> Any:
    from pathlib import Path

    return Path(trio_uring.__file__).resolve().parent.parent


_BASE = '''
def f(task, value):
    """Docstring."""
    task.x = value
    return [v + 1 for v in value]
'''


def _fingerprint_of(source: str) -> str:
    namespace: dict[str, Any] = {}
    exec(compile(source, "<test>", "exec"), namespace)
    return _fingerprint.fingerprint(namespace["f"])


@pytest.mark.parametrize(
    ("variant", "same"),
    [
        (_BASE.replace("Docstring.", "Re-worded."), True),
        ("\n\n\n" + _BASE, True),  # moved: other line numbers
        (_BASE.replace("task.x", "task.y"), False),  # another field
        (_BASE.replace("v + 1", "v + 2"), False),  # a constant, in a nested code object
        (_BASE.replace("task, value", "task, value, extra=None"), False),
    ],
)
def test_fingerprint_follows_names_and_constants_not_docstrings_or_lines(
    variant: str, same: bool
) -> None:
    assert (_fingerprint_of(variant) == _fingerprint_of(_BASE)) is same


def test_fingerprint_of_a_missing_target_is_missing() -> None:
    assert _fingerprint.fingerprint_target("trio._core._run:Runner.no_such_thing") == "missing"
    assert _fingerprint.fingerprint_target("trio.no_such_module:x") == "missing"


# ------------------------------------------------------------ Waker vs reschedule


class _Scheduled(trio.abc.Instrument):
    def __init__(self) -> None:
        self.tasks: list[trio.lowlevel.Task] = []

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        self.tasks.append(task)


def test_waker_does_what_runner_reschedule_does() -> None:
    ringext = _ringext()
    hook = _Scheduled()
    fields = (*_trio_compat._TASK_FIELDS, "_next_send_fn")
    seen: dict[str, Any] = {}

    async def main() -> None:
        runner = _trio_compat.current_runner()
        waker = _trio_compat.fast_reschedule(runner, ringext)
        assert type(waker) is ringext.Waker
        tasks: dict[str, trio.lowlevel.Task] = {}
        woken: dict[str, object] = {}

        async def parked(name: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            tasks[name] = trio.lowlevel.current_task()
            task_status.started()
            woken[name] = await trio.lowlevel.wait_task_rescheduled(
                lambda _: trio.lowlevel.Abort.FAILED
            )

        async with trio.open_nursery() as nursery:
            for name in ("trio", "waker", "trio-1arg", "waker-1arg"):
                await nursery.start(parked, name)
            await trio.testing.wait_all_tasks_blocked()
            for task in tasks.values():
                task.custom_sleep_data = "sleeping"
            # An instrument added after the Waker was made: it must still be called.
            trio.lowlevel.add_instrument(hook)
            seen["values"] = values = {"trio": outcome.Value(42), "waker": outcome.Value(42)}
            queued = len(runner.runq)
            runner.reschedule(tasks["trio"], values["trio"])
            waker(tasks["waker"], values["waker"])
            runner.reschedule(tasks["trio-1arg"])
            waker(tasks["waker-1arg"])
            for name, task in tasks.items():
                seen[name] = {field: getattr(task, field) for field in fields}
            seen["runq"] = list(runner.runq)[queued:]
            seen["hooked"] = list(hook.tasks)
            # A second wake of a task already woken fails trio's assert, and the Waker's.
            for wake, name in ((runner.reschedule, "trio"), (waker, "waker")):
                with pytest.raises(AssertionError):
                    wake(tasks[name], outcome.Value(0))
            seen["tasks"] = tasks
        trio.lowlevel.remove_instrument(hook)
        seen["woken"] = woken

    trio_uring.run(main)
    tasks = seen["tasks"]
    for kind in ("", "-1arg"):
        mine, theirs = seen["waker" + kind], seen["trio" + kind]
        assert mine["_next_send_fn"] == tasks["waker" + kind].coro.send
        assert theirs["_next_send_fn"] == tasks["trio" + kind].coro.send
        assert mine["_abort_func"] is theirs["_abort_func"] is None
        assert mine["custom_sleep_data"] is theirs["custom_sleep_data"] is None
        assert mine["_runner"] is theirs["_runner"]
    assert seen["waker"]["_next_send"] is seen["values"]["waker"]
    assert seen["trio"]["_next_send"] is seen["values"]["trio"]
    assert seen["waker-1arg"]["_next_send"] == seen["trio-1arg"]["_next_send"]
    order = [tasks[name] for name in ("trio", "waker", "trio-1arg", "waker-1arg")]
    assert seen["runq"] == order
    assert seen["hooked"] == order
    assert seen["woken"] == {"trio": 42, "waker": 42, "trio-1arg": None, "waker-1arg": None}


def test_waker_ticks_a_guest_run_host_as_runner_reschedule_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Guest mode: a wake onto an empty run queue asks the host for a tick (once)."""
    import asyncio

    ringext = _ringext()
    from trio._core._run import Runner

    ticks: list[int] = []
    original = Runner.force_guest_tick_asap

    def counting(self: Any) -> None:
        ticks.append(len(self.runq))
        original(self)

    monkeypatch.setattr(Runner, "force_guest_tick_asap", counting)

    async def trio_main() -> dict[str, list[int]]:
        runner = _trio_compat.current_runner()
        assert runner.is_guest
        waker = _trio_compat.fast_reschedule(runner, ringext)
        assert type(waker) is ringext.Waker
        seen: dict[str, list[int]] = {}
        for name, wake in (("trio", runner.reschedule), ("waker", waker)):
            tasks: list[trio.lowlevel.Task] = []

            async def parked(
                task_status: Any = trio.TASK_STATUS_IGNORED,
                tasks: list[trio.lowlevel.Task] = tasks,
            ) -> None:
                tasks.append(trio.lowlevel.current_task())
                task_status.started()
                await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)

            async with trio.open_nursery() as nursery:
                await nursery.start(parked)
                await nursery.start(parked)
                await trio.testing.wait_all_tasks_blocked()
                assert not runner.runq
                before = len(ticks)
                wake(tasks[0], outcome.Value(None))  # onto an empty run queue: a tick
                wake(tasks[1], outcome.Value(None))  # onto a non-empty one: none
                seen[name] = ticks[before:]
        return seen

    async def host() -> dict[str, list[int]]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[outcome.Outcome[dict[str, list[int]]]] = loop.create_future()
        trio_uring.start_guest_run(
            trio_main, run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
        )  # fmt: skip
        return (await done).unwrap()

    assert asyncio.run(host()) == {"trio": [0], "waker": [0]}


# --------------------------------------------------- the cancel test, every copy


def _copies_of_the_cancel_test() -> dict[str, Callable[[], bool]]:
    """Each copy of checkpoint_if_cancelled's test: True if the task must not go on."""
    ringext = _ringext()
    copies: dict[str, Callable[[], bool]] = {
        "_trio_compat.cancel_pending": _trio_compat.cancel_pending,
        "_trio_fast.enter": lambda: _trio_fast.enter() is _trio_fast.CANCEL_PENDING,
        "_ringext.enter": lambda: ringext.enter() is False,
    }
    return copies


async def _trio_checkpoint_if_cancelled() -> str:
    try:
        await trio.lowlevel.checkpoint_if_cancelled()
    except trio.Cancelled:
        return "Cancelled"
    except KeyboardInterrupt:
        return "KeyboardInterrupt"
    return "returned"


def _cancel_test_cases(copies: dict[str, Callable[[], bool]]) -> dict[str, Any]:
    """For each case, each copy's (answer, cancel points counted) and what trio's own
    ``checkpoint_if_cancelled`` did (in the main task, for the KeyboardInterrupt case)."""
    results: dict[str, Any] = {}

    def ask(task: Any) -> dict[str, tuple[bool, int]]:
        answers = {}
        for name, copy in copies.items():
            before = task._cancel_points
            answers[name] = (copy(), task._cancel_points - before)
        return answers

    async def main() -> None:
        task = trio.lowlevel.current_task()
        runner = task._runner
        results["go on"] = ask(task), await _trio_checkpoint_if_cancelled()
        with trio.CancelScope() as scope:
            scope.cancel()
            results["cancelled"] = ask(task), await _trio_checkpoint_if_cancelled()
        with trio.CancelScope(shield=True):
            with trio.CancelScope() as scope:
                scope.cancel()
                with trio.CancelScope(shield=True):
                    results["shielded"] = ask(task), await _trio_checkpoint_if_cancelled()
        runner.ki_pending = True
        answers = ask(task)
        results["KeyboardInterrupt pending"] = answers, await _trio_checkpoint_if_cancelled()
        results["ki_pending cleared"] = not runner.ki_pending

        async def child() -> None:  # not the main task: a pending KI is not its business
            runner.ki_pending = True
            try:
                results["KI pending, other task"] = (
                    ask(trio.lowlevel.current_task()),
                    await _trio_checkpoint_if_cancelled(),
                )
            finally:
                runner.ki_pending = False

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)

    trio_uring.run(main)
    return results


def test_every_copy_of_the_cancel_test_answers_as_checkpoint_if_cancelled() -> None:
    copies = _copies_of_the_cancel_test()
    results = _cancel_test_cases(copies)
    expected = {
        "go on": ((False, 1), "returned"),
        "cancelled": ((True, 0), "Cancelled"),
        "shielded": ((False, 1), "returned"),
        "KeyboardInterrupt pending": ((True, 0), "KeyboardInterrupt"),
        "KI pending, other task": ((False, 1), "returned"),
    }
    for case, (answer, trio_did) in expected.items():
        answers, theirs = results[case]
        assert theirs == trio_did, case
        assert answers == dict.fromkeys(copies, answer), case
    assert results["ki_pending cleared"]


# ------------------------------------------------------- park, completed_checkpoint


def _parks() -> dict[str, Callable[[Any], Awaitable[None]]]:
    ringext = _ringext()

    async def trio_own(trap: Any) -> None:
        result = await trio.lowlevel.wait_task_rescheduled(trap.abort_func)
        assert result is None

    return {
        "trio": trio_own,
        "_trio_compat._park": _trio_compat._park,
        "_trio_compat._park_trio": _trio_compat._park_trio,
        "_ringext.park": ringext.park,
    }


@pytest.mark.parametrize("wake", ["READY", "Error", "cancel"])
def test_park_does_what_wait_task_rescheduled_does(wake: str) -> None:
    results: dict[str, Any] = {}

    async def main() -> None:
        for name, park in _parks().items():
            aborted: list[object] = []

            def abort(raise_cancel: Any, aborted: list[object] = aborted) -> trio.lowlevel.Abort:
                aborted.append(raise_cancel)
                return trio.lowlevel.Abort.SUCCEEDED

            trap = _trio_compat.WaitTaskRescheduled(abort)
            box: dict[str, Any] = {}

            async def waiter(park: Any = park, trap: Any = trap, box: dict[str, Any] = box) -> None:
                box["task"] = trio.lowlevel.current_task()
                with trio.CancelScope() as box["scope"]:
                    try:
                        await park(trap)
                    except BaseException as exc:  # recorded, compared below
                        box["raised"] = type(exc).__name__
                        if not isinstance(exc, ValueError):
                            raise  # (Cancelled: caught by the scope)
                        return
                    box["returned"] = True

            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                task = box["task"]
                box["abort_func"] = task._abort_func is abort
                if wake == "READY":
                    trio.lowlevel.reschedule(task, _trio_compat.READY)
                elif wake == "Error":
                    trio.lowlevel.reschedule(task, outcome.Error(ValueError("boom")))
                else:
                    box["scope"].cancel()
                await trio.testing.wait_all_tasks_blocked()
            box.pop("task")
            box.pop("scope")
            box["aborted"] = len(aborted)
            results[name] = box

    trio_uring.run(main)
    assert len({json.dumps(box, sort_keys=True) for box in results.values()}) == 1, results
    box = results["trio"]
    assert box["abort_func"]
    if wake == "READY":
        assert box == {"abort_func": True, "returned": True, "aborted": 0}
    elif wake == "Error":
        assert box["raised"] == "ValueError"
    else:
        assert box["raised"] == "Cancelled" and box["aborted"] == 1


def test_completed_checkpoint_does_what_trios_two_checkpoints_do() -> None:
    ringext = _ringext()

    async def trio_own() -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        await trio.lowlevel.cancel_shielded_checkpoint()

    kinds: dict[str, Callable[[], Awaitable[None]]] = {
        "trio": trio_own,
        "_trio_compat._completed_checkpoint": _trio_compat._completed_checkpoint,
        "_trio_compat._completed_checkpoint_trio": _trio_compat._completed_checkpoint_trio,
        "_ringext.completed_checkpoint": ringext.completed_checkpoint,
    }
    results: dict[str, list[object]] = {name: [] for name in kinds}

    async def main() -> None:
        task = trio.lowlevel.current_task()
        runner = task._runner
        for name, checkpoint in kinds.items():
            before = task._cancel_points
            with trio.testing.assert_checkpoints():
                await checkpoint()
            results[name].append(task._cancel_points - before)
            with trio.CancelScope() as scope:
                scope.cancel()
                try:
                    await checkpoint()
                except trio.Cancelled:
                    results[name].append("Cancelled")
            runner.ki_pending = True
            try:
                await checkpoint()
            except KeyboardInterrupt:
                results[name].append("KeyboardInterrupt")
            results[name].append(runner.ki_pending)

    trio_uring.run(main)
    assert results == {name: [1, "Cancelled", "KeyboardInterrupt", False] for name in kinds}


# --------------------------------------------- a trio whose code differs: fallback


def _workload(*targets: str) -> dict[str, Any]:
    proc = run_child("", args=["-m", "tests._contract_workload", *targets], timeout=120)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    """The workload's results with the installed (recorded) trio."""
    result = _workload()
    assert result["warnings"] == []
    assert all(result["mirrored"].values())
    return result


@pytest.mark.parametrize(
    "target",
    [
        # one target of each piece (the slot layout: Task's; the socket path: the helper)
        "trio._core._run:Runner.reschedule",
        "trio._core._run:Task.__slots__",
        "trio._core._run:checkpoint_if_cancelled",
        "trio._core._traps:wait_task_rescheduled",
        "trio._core._traps:cancel_shielded_checkpoint",
        "trio._socket:_SocketType._nonblocking_helper",
        "trio._socket:_SocketType.connect",
        "trio._socket:from_stdlib_socket",
        "trio._socket:_SocketType.did_shutdown_SHUT_WR",
        "trio._core._run:Deadlines",
    ],
)
def test_a_changed_trio_warns_falls_back_and_gives_the_same_results(
    target: str, reference: dict[str, Any]
) -> None:
    (piece,) = [e["piece"] for e in _trio_compat.TRIO_MIRRORS if target in e["trio"]]
    result = _workload(target)  # (under TRIO_URING_REQUIRE=1: a slower path is no error)
    (warning,) = result["warnings"]
    assert warning[0] == "TrioVersionWarning"
    assert f"trio {trio.__version__}" in warning[1]
    assert repr(piece) in warning[1] and target in warning[1]
    assert "Copies to re-read" in warning[1]
    assert result["mirrored"] == {name: name != piece for name in reference["mirrored"]}
    expected = dict(reference["results"])
    if piece == "socket constructor":
        expected["socket_class"] = "_SocketType"  # completion sockets off by default
    assert result["results"] == expected
    taken = result["paths"]
    fallback = {
        "reschedule": ("reschedule", "method"),
        "slot layout": ("reschedule", "method"),
        "cancel test": ("cancel_pending", "always"),
        "park": ("park", "_park_trio"),
        "shielded checkpoint": ("completed_checkpoint", "_completed_checkpoint_trio"),
        "socket syscall-first path": ("try_first", False),
        "socket connect": ("connect_mirrored", False),
        "socket constructor": ("sockets_enabled", False),
        "socket fields": ("plain_trio_socket", False),
        "deadlines": ("task_deadline", "inf"),
    }[piece]
    assert taken[fallback[0]] == fallback[1], taken
    if taken["ext"] or piece not in ("reschedule", "slot layout"):
        assert reference["paths"][fallback[0]] != fallback[1], reference["paths"]
