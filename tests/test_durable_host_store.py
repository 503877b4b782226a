"""Runs survive a host restart: a second ``LocalHost`` on the same ``store_dir`` carries on.

A host is stopped at three points of one orchestration: waiting for an event (nothing in flight), with
an activity running (abandoned as in a crash, then run again: at least once), and with a durable timer
armed. The second host must finish the run without repeating completed work.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from backup.local.durable_host import LocalHost, VirtualClock
from backup.local.durable_host.history import EventType

START = datetime(2026, 3, 1, tzinfo=UTC)
app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
calls: Counter[str] = Counter()
gates: dict[str, threading.Event] = {}


@app.activity_trigger(input_name="key")
def prepare(key: str) -> str:
    calls[f"prepare:{key}"] += 1
    return f"prepared {key}"


@app.activity_trigger(input_name="key")
def copy_data(key: str) -> str:
    calls[f"copy:{key}"] += 1
    if not gates[key].wait(10):
        raise TimeoutError("never released")
    return f"copied {key}"


@app.orchestration_trigger(context_name="context")
def two_phase(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    key = context.get_input()
    prepared = yield context.call_activity("prepare", key)
    context.set_custom_status("waiting for go")
    yield context.wait_for_external_event("go")
    context.set_custom_status("copying")
    copied = yield context.call_activity("copy_data", key)
    yield context.create_timer(context.current_utc_datetime + timedelta(minutes=5))
    return [prepared, copied, context.current_utc_datetime.isoformat()]


@app.activity_trigger(input_name="n")
def tick(n: int) -> int:
    calls["tick"] += 1
    return n


@app.orchestration_trigger(context_name="context")
def ticker(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    # Like the copy watch: one timer and one activity per execution, then continue as new.
    n = context.get_input()
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=10))
    yield context.call_activity("tick", n)
    if n < 4:
        context.continue_as_new(n + 1)
        return None
    return {"ticks": n + 1, "at": context.current_utc_datetime.isoformat()}


@app.activity_trigger(input_name="key")
def gated(key: str) -> str:
    calls[f"gated:{key}"] += 1
    if not gates[key].wait(10):
        raise TimeoutError("never released")
    return key


@app.orchestration_trigger(context_name="context")
def gated_parent(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    key = context.get_input()
    yield context.call_activity("gated", key)
    result = yield context.call_sub_orchestrator("ticker", 3, f"{context.instance_id}-ticker")
    yield context.wait_for_external_event("finish")
    return result


@app.orchestration_trigger(context_name="context")
def ticker_parent(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    result = yield context.call_sub_orchestrator("ticker", 0, f"{context.instance_id}-ticker")
    return result


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.01)
    raise AssertionError("condition not reached")


def custom_status(host: LocalHost, instance_id: str) -> Any:
    status = host.get_status(instance_id)
    return status.custom_status if status else None


def test_restart_while_waiting_for_an_event(tmp_path: Path) -> None:
    key = "waiting"
    gates[key] = threading.Event()
    gates[key].set()
    with LocalHost(app, clock=VirtualClock(START), store_dir=tmp_path) as first:
        instance_id = first.start_new("two_phase", key, instance_id="run-waiting")
        wait_until(lambda: custom_status(first, instance_id) == "waiting for go")
        replays_before = first.counts(instance_id).replays
    record = json.loads((tmp_path / "run-waiting.json").read_text())
    # The input is kept once, in the ExecutionStarted event.
    assert record["input_json"] is None and record["input_in_history"] is True
    assert record["history"][1]["Input"] == json.dumps(json.dumps(key))

    second = LocalHost(app, clock=VirtualClock(START), store_dir=tmp_path)
    before_start = second.get_status(instance_id)
    assert before_start is not None and before_start.runtime_status == "Running"
    assert before_start.input == key and before_start.input_json == json.dumps(json.dumps(key))
    with second:
        second.raise_event(instance_id, "go")
        status = second.wait_for_completion(instance_id)
        counts = second.counts(instance_id)
    assert status.output[:2] == [f"prepared {key}", f"copied {key}"]
    assert calls[f"prepare:{key}"] == 1  # completed work is not repeated
    assert counts.replays > replays_before


def test_restart_with_an_activity_in_flight_runs_it_again(tmp_path: Path) -> None:
    key = "in-flight"
    gates[key] = threading.Event()
    first = LocalHost(app, clock=VirtualClock(START), store_dir=tmp_path)
    first.start()
    try:
        instance_id = first.start_new("two_phase", key)
        wait_until(lambda: custom_status(first, instance_id) == "waiting for go")
        first.raise_event(instance_id, "go")
        wait_until(lambda: calls[f"copy:{key}"] == 1)
    finally:
        first.stop(wait_for_activities=False)  # the process "dies" with copy_data running
    gates[key].set()  # the abandoned call ends; its result must not count

    with LocalHost(app, clock=VirtualClock(START), store_dir=tmp_path) as second:
        status = second.wait_for_completion(instance_id)
        history = second.history(instance_id)
    assert status.runtime_status == "Completed"
    assert status.output[1] == f"copied {key}"
    assert calls[f"copy:{key}"] == 2  # at least once: the second host ran it again
    completed = [e for e in history if e["EventType"] == EventType.TASK_COMPLETED]
    assert len(completed) == 2  # prepare and one copy_data: the abandoned result was dropped


def test_restart_with_a_timer_armed(tmp_path: Path) -> None:
    key = "timer"
    gates[key] = threading.Event()
    gates[key].set()
    with LocalHost(app, clock=VirtualClock(START, auto_advance=False), store_dir=tmp_path) as first:
        instance_id = first.start_new("two_phase", key)
        wait_until(lambda: custom_status(first, instance_id) == "waiting for go")
        first.raise_event(instance_id, "go")
        wait_until(lambda: any(e["EventType"] == EventType.TIMER_CREATED for e in first.history(instance_id)))

    with LocalHost(app, clock=VirtualClock(START), store_dir=tmp_path) as second:
        status = second.wait_for_completion(instance_id)
    assert datetime.fromisoformat(status.output[2]) == START + timedelta(minutes=5)
    assert calls[f"copy:{key}"] == 1


def test_restart_between_executions_of_a_sub_orchestration_that_continues_as_new(tmp_path: Path) -> None:
    child = "run-ticker-ticker"

    def execution_input(host: LocalHost) -> Any:
        history = host.history(child) if host.get_status(child) else []
        timer_armed = any(e["EventType"] == EventType.TIMER_CREATED for e in history)
        return history[1]["Input"] if timer_armed else None

    with LocalHost(app, clock=VirtualClock(START, auto_advance=False), store_dir=tmp_path) as first:
        first.start_new("ticker_parent", instance_id="run-ticker")
        for n in range(2):  # two executions done; the third waits on its timer when the host stops
            wait_until(lambda n=n: execution_input(first) == f'"{n}"')
            first.advance_clock(timedelta(seconds=10))
        wait_until(lambda: execution_input(first) == '"2"')
        assert calls["tick"] == 2

    second = LocalHost(app, clock=VirtualClock(START + timedelta(seconds=20)), store_dir=tmp_path)
    resumed = second.get_status(child)
    assert resumed is not None and resumed.runtime_status == "Running" and resumed.input == 2
    with second:
        status = second.wait_for_completion("run-ticker")
        history = second.history(child)
        counts = second.counts(child)
    assert status.runtime_status == "Completed"
    assert status.output == {"ticks": 5, "at": (START + timedelta(seconds=50)).isoformat()}
    assert calls["tick"] == 5  # nothing was in flight at the stop: no tick ran twice
    # Only the last execution is kept, and what the host counted survived the restart.
    assert history[1]["EventType"] == EventType.EXECUTION_STARTED and history[1]["Input"] == '"4"'
    assert counts.history_events == len(history) <= 12
    assert counts.activity_executions == 5


@pytest.mark.parametrize("child_done", [False, True], ids=["child running", "child finished"])
def test_a_parent_whose_record_is_older_than_its_childs_finds_its_child_again(
    tmp_path: Path, child_done: bool
) -> None:
    # The store writes one file per instance: a crash can leave a child's record newer than its
    # parent's. The parent then starts the same child (same id, same task) again on replay.
    key = f"rollback-{child_done}"
    gates[key] = threading.Event()
    parent, child = f"run-{key}", f"run-{key}-ticker"
    with LocalHost(app, clock=VirtualClock(START, auto_advance=child_done), store_dir=tmp_path) as first:
        first.start_new("gated_parent", key, instance_id=parent)
        wait_until(lambda: calls[f"gated:{key}"] == 1)
        first.flush()
        before_child = (tmp_path / f"{parent}.json").read_bytes()  # the activity still running
        ticks_before = calls["tick"]
        gates[key].set()
        if child_done:
            wait_until(lambda: (s := first.get_status(child)) and s.runtime_status == "Completed")
        else:
            wait_until(lambda: first.get_status(child) and first.history(child))
        assert first.get_status(parent).runtime_status == "Running"
    ticks_first = calls["tick"] - ticks_before
    (tmp_path / f"{parent}.json").write_bytes(before_child)

    with LocalHost(app, clock=VirtualClock(START), store_dir=tmp_path) as second:
        wait_until(
            lambda: any(
                e["EventType"] == EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED
                for e in second.history(parent)
            )
        )
        second.raise_event(parent, "finish")
        status = second.wait_for_completion(parent)
    assert status.runtime_status == "Completed", status.output
    assert status.output["ticks"] == 5
    assert calls[f"gated:{key}"] == 2  # the parent's activity ran again: its result was not stored
    assert ticks_first == (2 if child_done else 0)
    assert calls["tick"] - ticks_before == 2  # the child ran once, across both hosts


def test_files_that_are_not_records_are_named_and_skipped(tmp_path: Path) -> None:
    with LocalHost(app, clock=VirtualClock(START), store_dir=tmp_path) as first:
        instance_id = first.start_new("two_phase", input="skip")
    (tmp_path / "junk.json").write_text("[1, 2]")
    (tmp_path / "cut.json").write_text('{"version": 1, "instance_id": "x"')  # truncated mid-write
    (tmp_path / "old.json").write_text('{"version": 1, "instance_id": "y"}')  # fields missing
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "folder.json").mkdir()
    host = LocalHost(app, clock=VirtualClock(START), store_dir=tmp_path)
    problems = host.store_problems
    assert [p.split(": ", 1)[0] for p in problems] == [
        str(tmp_path / name) for name in ("binary.json", "cut.json", "folder.json", "junk.json", "old.json")
    ]
    assert all(p.endswith("; skipped") for p in problems)
    assert host.get_status(instance_id) is not None  # the good record still loads


def test_a_record_written_from_encoded_events_is_the_record_itself() -> None:
    """The store writer encodes each history event once (``Instance.to_store_record``); the file it
    writes reads back as the plain record, as the history grows and after a continue-as-new."""
    from backup.local.durable_host import history as h
    from backup.local.durable_host.instance import EncodedEvents, Instance
    from backup.local.durable_host.status import RuntimeStatus
    from backup.local.durable_host.store import InstanceStore

    instance = Instance(
        instance_id="i",
        name="orch",
        execution_id="e1",
        input_json='"x"',
        created_time=START,
        last_updated_time=START,
    )
    instance.runtime_status = RuntimeStatus.RUNNING
    instance.history.extend([h.orchestrator_started(START), h.timer_fired(START, seq=0, fire_at=START)])
    for grown in (False, True, True):
        if grown:
            instance.history.append(h.task_completed(START, seq=1, result_json='{"a": "é\\n"}'))
        stored = instance.to_store_record()
        assert isinstance(stored["history"], EncodedEvents)
        plain = InstanceStore.encode(instance.to_record())
        assert json.loads(InstanceStore.encode(stored)) == json.loads(plain)
    instance.execution_id, instance.history = "e2", [h.orchestrator_started(START)]
    assert json.loads(InstanceStore.encode(instance.to_store_record()))["history"] == instance.history
