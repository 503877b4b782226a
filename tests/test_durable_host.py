"""The local Durable host runs small orchestrations of this file through the SDK's real replay engine.

Each test drives a ``df.DFApp`` defined here through ``LocalHost`` and checks the outcome, the stored
history and the counts. Activities are real Python functions run on the host's thread pool; where a test
needs an activity to be "in flight" it blocks on an event the test controls (no sleeps, no timing
assertions).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from backup.errors import ConflictError, InvalidInputError, NotFoundError
from backup.local.durable_host import LocalHost, RealClock, VirtualClock
from backup.local.durable_host.history import EventType, parse_timestamp

START = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

# Shared between activities and tests; keys are unique per test.
calls: Counter[str] = Counter()
calls_lock = threading.Lock()
gates: dict[str, threading.Event] = {}
in_flight = {"now": 0, "max": 0}
barrier: dict[str, threading.Barrier] = {}


def count_call(key: str) -> int:
    with calls_lock:
        calls[key] += 1
        return calls[key]


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll until ``predicate`` is truthy (waiting on the host's threads, not measuring time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not reached")


# --- activities ----------------------------------------------------------------------------------


@app.activity_trigger(input_name="value")
def double(value: int) -> int:
    return value * 2


@app.activity_trigger(input_name="key")
def flaky(key: str) -> str:
    attempt = count_call(key)
    if attempt <= 2:
        raise ConnectionError(f"attempt {attempt} of {key} failed")
    return f"{key} ok after {attempt}"


@app.activity_trigger(input_name="key")
def always_fails(key: str) -> str:
    count_call(key)
    raise RuntimeError(f"{key} is broken for good")


@app.activity_trigger(input_name="key")
def leaks_a_secret(key: str) -> str:
    raise RuntimeError("GET https://acct.blob.core.windows.net/c/b?sv=2024-11-04&sig=SECRETSIG123 failed")


@app.activity_trigger(input_name="key")
def blocked(key: str) -> str:
    count_call(key)
    if not gates[key].wait(10):
        raise TimeoutError(f"{key} was never released")
    return f"{key} released"


@app.activity_trigger(input_name="job")
def tracked_work(job: dict[str, Any]) -> str:
    with calls_lock:
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
    try:
        if job["index"] < job["bound"]:
            # The first `bound` jobs must all be running at once: proves the fan-out is concurrent.
            barrier[job["key"]].wait(10)
        return f"job {job['index']}"
    finally:
        with calls_lock:
            in_flight["now"] -= 1


# --- orchestrators -------------------------------------------------------------------------------


@app.orchestration_trigger(context_name="context")
def one_activity(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    result = yield context.call_activity("double", context.get_input())
    return result


@app.orchestration_trigger(context_name="context")
def with_retry(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    options = df.RetryOptions(first_retry_interval_in_milliseconds=5000, max_number_of_attempts=4)
    result = yield context.call_activity_with_retry("flaky", options, context.get_input())
    return result


@app.orchestration_trigger(context_name="context")
def retry_exhausted(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=3)
    result = yield context.call_activity_with_retry("always_fails", options, context.get_input())
    return result


@app.orchestration_trigger(context_name="context")
def sleeper(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    seconds = context.get_input()
    before = context.current_utc_datetime
    fire_at = before + timedelta(seconds=seconds)
    yield context.create_timer(fire_at)
    after = context.current_utc_datetime
    return {"before": before.isoformat(), "fire_at": fire_at.isoformat(), "after": after.isoformat()}


@app.orchestration_trigger(context_name="context")
def child(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    doubled = yield context.call_activity("double", context.get_input())
    return {"doubled": doubled, "parent": context.parent_instance_id, "me": context.instance_id}


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    first = yield context.call_sub_orchestrator("child", 21)
    second = yield context.call_sub_orchestrator("child", 5, instance_id=f"{context.instance_id}-named")
    return [first, second]


@app.orchestration_trigger(context_name="context")
def flaky_child(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    key = context.get_input()
    result = yield context.call_activity("flaky", key)
    return result


@app.orchestration_trigger(context_name="context")
def parent_with_retry(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    options = df.RetryOptions(first_retry_interval_in_milliseconds=2000, max_number_of_attempts=3)
    # flaky fails twice per key; each child calls it once, so the third child attempt succeeds.
    result = yield context.call_sub_orchestrator_with_retry("flaky_child", options, context.get_input())
    return result


@app.orchestration_trigger(context_name="context")
def all_and_any(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    doubled = yield context.task_all([context.call_activity("double", n) for n in (1, 2, 3)])
    timer = context.create_timer(context.current_utc_datetime + timedelta(hours=1))
    quick = context.call_activity("double", 50)
    winner = yield context.task_any([timer, quick])
    if not timer.is_completed:
        timer.cancel()
    never = context.wait_for_external_event("never-sent")
    deadline = context.create_timer(context.current_utc_datetime + timedelta(minutes=10))
    second = yield context.task_any([never, deadline])
    return {
        "doubled": doubled,
        "first_winner": winner.result,
        "second_winner_is_timer": second is deadline,
        "now": context.current_utc_datetime.isoformat(),
    }


@app.orchestration_trigger(context_name="context")
def bounded_fan_out(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    spec = context.get_input()
    bound, total, key = spec["bound"], spec["total"], spec["key"]
    pending = list(range(total))
    running: list[Any] = []
    results: list[Any] = []
    while pending or running:
        while pending and len(running) < bound:
            index = pending.pop(0)
            job = {"index": index, "bound": bound, "key": key}
            running.append(context.call_sub_orchestrator("fan_child", job))
        done = yield context.task_any(running)
        running.remove(done)
        results.append(done.result)
    return sorted(results)


@app.orchestration_trigger(context_name="context")
def fan_child(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    result = yield context.call_activity("tracked_work", context.get_input())
    return result


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    context.set_custom_status(
        {"stage": "waiting for approval", "since": context.current_utc_datetime.isoformat()}
    )
    decision = yield context.wait_for_external_event("approve")
    context.set_custom_status({"stage": "approved"})
    return {"decision": decision}


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    n = context.get_input()
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=10))
    if n < 3:
        context.continue_as_new(n + 1)
        return None
    return {"final": n, "now": context.current_utc_datetime.isoformat()}


nondeterminism_calls = itertools.count()


@app.orchestration_trigger(context_name="context")
def nondeterministic(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    # Reads process state instead of its history: the first run schedules step_a, every replay step_b.
    step = "step_a" if next(nondeterminism_calls) == 0 else "step_b"
    result = yield context.call_activity(step, 1)
    return result


@app.activity_trigger(input_name="value")
def step_a(value: int) -> str:
    return "a"


@app.activity_trigger(input_name="value")
def step_b(value: int) -> str:
    return "b"


@app.orchestration_trigger(context_name="context")
def uncaught_activity_failure(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    result = yield context.call_activity("always_fails", context.get_input())
    return result


@app.orchestration_trigger(context_name="context")
def raises_itself(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    value = yield context.call_activity("double", 2)
    raise ValueError(f"orchestrator gave up at {value}")


@app.orchestration_trigger(context_name="context")
def secret_failure(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    result = yield context.call_activity("leaks_a_secret", "x")
    return result


@app.orchestration_trigger(context_name="context")
def all_after_failure(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    key = context.get_input()
    try:
        yield context.task_all(
            [context.call_activity("always_fails", key), context.call_activity("blocked", key)]
        )
    except Exception as exc:
        return f"caught: {str(exc).splitlines()[0]}"
    return "no failure"


@app.orchestration_trigger(context_name="context")
def json_shapes(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    value = context.get_input()
    context.set_custom_status({"echo": value, "list": [1, 2.5, None, True], "text": "zürich ✓"})
    doubled = yield context.call_activity("double", 4)
    return {"input": value, "doubled": doubled, "nested": {"a": [{"b": None}], "f": 0.125}, "u": "ß→∑"}


@app.orchestration_trigger(context_name="context")
def waits_forever(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    yield context.wait_for_external_event("never")
    return "unreachable"


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def host() -> Iterator[LocalHost]:
    with LocalHost(app, clock=VirtualClock(START)) as running:
        yield running


def events_of(host: LocalHost, instance_id: str, event_type: EventType) -> list[dict[str, Any]]:
    return [e for e in host.history(instance_id) if e["EventType"] == event_type]


def unique(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns()}"


# --- tests -----------------------------------------------------------------------------------------


def test_activity_result_flows_back_and_counts_are_exact(host: LocalHost) -> None:
    instance_id = host.start_new("one_activity", 21)
    status = host.wait_for_completion(instance_id)
    assert status.runtime_status == "Completed"
    assert status.output == 42
    assert status.input == 21
    history = host.history(instance_id)
    assert [e["EventType"] for e in history] == [
        EventType.ORCHESTRATOR_STARTED,
        EventType.EXECUTION_STARTED,
        EventType.TASK_SCHEDULED,
        EventType.ORCHESTRATOR_COMPLETED,
        EventType.ORCHESTRATOR_STARTED,
        EventType.TASK_COMPLETED,
        EventType.EXECUTION_COMPLETED,
        EventType.ORCHESTRATOR_COMPLETED,
    ]
    counts = host.counts(instance_id)
    assert (counts.replays, counts.activity_executions, counts.history_events) == (2, 1, 8)
    assert host.counts().replays >= 2


def test_activity_retry_follows_retry_options(host: LocalHost) -> None:
    key = unique("flaky")
    status = host.wait_for_completion(host.start_new("with_retry", key))
    assert status.output == f"{key} ok after 3"
    assert calls[key] == 3
    scheduled = events_of(host, status.instance_id, EventType.TASK_SCHEDULED)
    failed = events_of(host, status.instance_id, EventType.TASK_FAILED)
    timers = events_of(host, status.instance_id, EventType.TIMER_CREATED)
    # attempt 0, retry timer 1, attempt 2, retry timer 3, attempt 4: the SDK's numbering.
    assert [e["EventId"] for e in scheduled] == [0, 2, 4]
    assert [e["EventId"] for e in timers] == [1, 3]
    assert [e["TaskScheduledId"] for e in failed] == [0, 2]
    assert "ConnectionError: attempt 1" in failed[0]["Reason"]
    for timer, fail, retry in zip(timers, failed, scheduled[1:], strict=True):
        fire_at = parse_timestamp(timer["FireAt"])
        assert fire_at - parse_timestamp(fail["Timestamp"]) == timedelta(seconds=5)
        assert parse_timestamp(retry["Timestamp"]) >= fire_at
    assert host.counts(status.instance_id).activity_executions == 3


def test_retry_gives_up_after_max_attempts(host: LocalHost) -> None:
    key = unique("broken")
    status = host.wait_for_completion(host.start_new("retry_exhausted", key))
    assert status.runtime_status == "Failed"
    assert status.output.startswith("Orchestrator function 'retry_exhausted' failed: ")
    assert f"{key} is broken for good" in status.output
    assert calls[key] == 3
    # DTFx waits one more retry timer after the last failed attempt before failing the task.
    assert len(events_of(host, status.instance_id, EventType.TIMER_FIRED)) == 3


def test_virtual_clock_timer_fires_without_waiting(host: LocalHost) -> None:
    status = host.wait_for_completion(host.start_new("sleeper", 3600))
    output = status.output
    assert datetime.fromisoformat(output["before"]) == START
    assert datetime.fromisoformat(output["after"]) >= datetime.fromisoformat(output["fire_at"])
    assert host.clock.now() >= START + timedelta(hours=1)
    fired = events_of(host, status.instance_id, EventType.TIMER_FIRED)
    assert len(fired) == 1


def test_real_clock_timer_waits_real_time() -> None:
    with LocalHost(app, clock=RealClock()) as host:
        instance_id = host.start_new("sleeper", 0.3)
        status = host.wait_for_completion(instance_id, timeout=10)
    output = status.output
    assert datetime.fromisoformat(output["after"]) >= datetime.fromisoformat(output["fire_at"])
    assert datetime.fromisoformat(output["before"]).year >= 2025


def test_sub_orchestrations_get_host_ids_and_parent(host: LocalHost) -> None:
    instance_id = host.start_new("parent", instance_id=unique("parent"))
    status = host.wait_for_completion(instance_id)
    first, second = status.output
    assert first["doubled"] == 42 and second["doubled"] == 10
    assert first["parent"] == second["parent"] == instance_id
    execution_id = host.history(instance_id)[1]["OrchestrationInstance"]["ExecutionId"]
    assert first["me"] == f"{execution_id}:0"
    assert second["me"] == f"{instance_id}-named"
    created = events_of(host, instance_id, EventType.SUB_ORCHESTRATION_INSTANCE_CREATED)
    assert [e["InstanceId"] for e in created] == [first["me"], second["me"]]
    assert host.get_status(first["me"]).runtime_status == "Completed"


def test_sub_orchestration_retry_starts_a_new_child_per_attempt(host: LocalHost) -> None:
    key = unique("child")
    instance_id = host.start_new("parent_with_retry", key)
    status = host.wait_for_completion(instance_id)
    assert status.output == f"{key} ok after 3"
    created = events_of(host, instance_id, EventType.SUB_ORCHESTRATION_INSTANCE_CREATED)
    assert [e["EventId"] for e in created] == [0, 2, 4]
    children = [host.get_status(e["InstanceId"]) for e in created]
    assert [c.runtime_status for c in children] == ["Failed", "Failed", "Completed"]
    failed = events_of(host, instance_id, EventType.SUB_ORCHESTRATION_INSTANCE_FAILED)
    assert "Orchestrator function 'flaky_child' failed" in failed[0]["Reason"]


def test_task_all_and_task_any(host: LocalHost) -> None:
    status = host.wait_for_completion(host.start_new("all_and_any"))
    output = status.output
    assert output["doubled"] == [2, 4, 6]
    assert output["first_winner"] == 100
    assert output["second_winner_is_timer"] is True
    # The 1 h timer lost and was cancelled: only the 10 min timer moved the clock.
    assert datetime.fromisoformat(output["now"]) == START + timedelta(minutes=10)
    assert len(events_of(host, status.instance_id, EventType.TIMER_FIRED)) == 1


def test_bounded_fan_out_keeps_at_most_n_in_flight(host: LocalHost) -> None:
    key = unique("fan")
    bound = 3
    barrier[key] = threading.Barrier(bound)
    in_flight.update(now=0, max=0)
    status = host.wait_for_completion(
        host.start_new("bounded_fan_out", {"bound": bound, "total": 7, "key": key})
    )
    assert status.output == sorted(f"job {i}" for i in range(7))
    assert in_flight["max"] == bound
    created = events_of(host, status.instance_id, EventType.SUB_ORCHESTRATION_INSTANCE_CREATED)
    assert len(created) == 7


def test_custom_status_visible_while_running_and_external_event(host: LocalHost) -> None:
    instance_id = host.start_new("approval")
    running = wait_until(lambda: (s := host.get_status(instance_id)) and s.custom_status and s)
    assert running.runtime_status == "Running"
    assert running.custom_status == {"stage": "waiting for approval", "since": START.isoformat()}
    host.raise_event(instance_id, "approve", {"by": "operator", "ok": True})
    status = host.wait_for_completion(instance_id)
    assert status.output == {"decision": {"by": "operator", "ok": True}}
    assert status.custom_status == {"stage": "approved"}
    raised = events_of(host, instance_id, EventType.EVENT_RAISED)
    assert raised[0]["Name"] == "approve"


def test_continue_as_new_restarts_with_a_fresh_history(host: LocalHost) -> None:
    instance_id = host.start_new("counter", 0)
    status = host.wait_for_completion(instance_id)
    assert status.output["final"] == 3
    assert datetime.fromisoformat(status.output["now"]) == START + timedelta(seconds=40)
    history = host.history(instance_id)
    assert history[1]["EventType"] == EventType.EXECUTION_STARTED
    assert history[1]["Input"] == '"3"'
    counts = host.counts(instance_id)
    assert counts.replays == 8  # two episodes per execution, four executions
    assert counts.history_events == len(history) == 8


def test_non_deterministic_orchestrator_is_rejected(host: LocalHost) -> None:
    status = host.wait_for_completion(host.start_new("nondeterministic"))
    assert status.runtime_status == "Failed"
    assert status.output.startswith("Non-Deterministic workflow detected: ")
    assert "activity task with sequence number 0 named 'step_a'" in status.output
    assert "named 'step_b'" in status.output
    completed = events_of(host, status.instance_id, EventType.EXECUTION_COMPLETED)
    assert completed[0]["OrchestrationStatus"] == "Failed"


def test_activity_failure_fails_the_orchestration_with_reason(host: LocalHost) -> None:
    key = unique("uncaught")
    status = host.wait_for_completion(host.start_new("uncaught_activity_failure", key))
    assert status.runtime_status == "Failed"
    assert status.output.startswith(
        f"Orchestrator function 'uncaught_activity_failure' failed: Activity function 'always_fails' "
        f"failed: RuntimeError: {key} is broken for good"
    )
    failed = events_of(host, status.instance_id, EventType.TASK_FAILED)[0]
    assert (
        failed["Reason"] == f"Activity function 'always_fails' failed: RuntimeError: {key} is broken for good"
    )
    assert "Traceback" in failed["Details"]


def test_orchestrator_exception_ends_failed_with_its_text(host: LocalHost) -> None:
    status = host.wait_for_completion(host.start_new("raises_itself"))
    assert status.runtime_status == "Failed"
    assert status.output == "Orchestrator function 'raises_itself' failed: orchestrator gave up at 4"


def test_failure_text_is_redacted(host: LocalHost) -> None:
    status = host.wait_for_completion(host.start_new("secret_failure"))
    assert "SECRETSIG123" not in status.output
    assert "sig=REDACTED" in status.output
    assert "SECRETSIG123" not in str(host.history(status.instance_id))


def test_task_all_waits_for_every_child_after_one_fails(host: LocalHost) -> None:
    key = unique("all")
    gates[key] = threading.Event()
    instance_id = host.start_new("all_after_failure", key)
    wait_until(lambda: events_of(host, instance_id, EventType.TASK_FAILED))
    # always_fails has failed and the SDK raised into the orchestrator, but its sibling still runs:
    # like the extension, the host does not finish the orchestration before the WhenAll completes.
    assert host.get_status(instance_id).runtime_status == "Running"
    gates[key].set()
    status = host.wait_for_completion(instance_id)
    assert (
        status.output
        == f"caught: Activity function 'always_fails' failed: RuntimeError: {key} is broken for good "
    )
    types = [e["EventType"] for e in host.history(instance_id)]
    assert types.index(EventType.TASK_COMPLETED) < types.index(EventType.EXECUTION_COMPLETED)


def test_output_and_custom_status_round_trip_as_json(host: LocalHost) -> None:
    value = {"disks": ["d1", "d2"], "n": 3, "ratio": 0.5, "on": False, "none": None, "name": "Ωmega"}
    status = host.wait_for_completion(host.start_new("json_shapes", value))
    assert status.input == value
    assert status.output == {
        "input": value,
        "doubled": 8,
        "nested": {"a": [{"b": None}], "f": 0.125},
        "u": "ß→∑",
    }
    assert status.custom_status == {"echo": value, "list": [1, 2.5, None, True], "text": "zürich ✓"}


def test_terminate_a_running_instance(host: LocalHost) -> None:
    instance_id = host.start_new("waits_forever")
    wait_until(lambda: host.get_status(instance_id).runtime_status == "Running")
    assert host.terminate(instance_id, "operator said stop") is True
    status = host.wait_for_completion(instance_id)
    assert status.runtime_status == "Terminated"
    assert status.output == "operator said stop"
    assert host.terminate(instance_id, "again") is False
    with pytest.raises(Exception, match="is gone"):
        host.raise_event(instance_id, "never", 1)


def test_unknown_ids_and_names_are_clear_errors(host: LocalHost) -> None:
    assert host.get_status("no-such-instance") is None
    with pytest.raises(NotFoundError, match="No instance with ID 'no-such-instance' found"):
        host.raise_event("no-such-instance", "x", 1)
    with pytest.raises(NotFoundError):
        host.terminate("no-such-instance", "why")
    with pytest.raises(NotFoundError):
        host.wait_for_completion("no-such-instance", timeout=1)
    with pytest.raises(InvalidInputError, match="The function 'nope' doesn't exist"):
        host.start_new("nope")
    with pytest.raises(InvalidInputError, match="must not start with @"):
        host.start_new("one_activity", 1, instance_id="@entity")
    with pytest.raises(InvalidInputError, match="must be JSON-serializable"):
        host.start_new("one_activity", object())


def test_starting_an_unfinished_instance_id_conflicts_and_a_finished_one_restarts(host: LocalHost) -> None:
    instance_id = unique("singleton")
    host.start_new("waits_forever", instance_id=instance_id)
    with pytest.raises(ConflictError, match="already exists"):
        host.start_new("waits_forever", instance_id=instance_id)
    host.terminate(instance_id, "make room")
    host.wait_for_completion(instance_id)
    host.start_new("one_activity", 4, instance_id=instance_id)
    status = host.wait_for_completion(instance_id)
    assert (status.name, status.output) == ("one_activity", 8)
    assert host.purge(instance_id) is True
    assert host.get_status(instance_id) is None


def test_virtual_clock_can_be_driven_by_hand() -> None:
    clock = VirtualClock(START, auto_advance=False)
    with LocalHost(app, clock=clock) as host:
        instance_id = host.start_new("sleeper", 60)
        wait_until(lambda: events_of(host, instance_id, EventType.TIMER_CREATED))
        host.advance_clock(timedelta(seconds=59))
        assert host.get_status(instance_id).runtime_status == "Running"
        host.advance_clock(timedelta(seconds=1))
        status = host.wait_for_completion(instance_id)
    assert datetime.fromisoformat(status.output["after"]) == START + timedelta(seconds=60)


def test_wait_for_completion_times_out_clearly(host: LocalHost) -> None:
    from backup.errors import DeadlineExceededError

    instance_id = host.start_new("waits_forever")
    with pytest.raises(DeadlineExceededError, match=f"instance {instance_id} still"):
        host.wait_for_completion(instance_id, timeout=0.2)


def test_discovery_reads_blueprints_and_leaves_get_functions_to_the_worker() -> None:
    blueprint = df.Blueprint()

    @blueprint.activity_trigger(input_name="text")
    def from_blueprint(text: str) -> str:
        return text[::-1]

    @blueprint.orchestration_trigger(context_name="context")
    def blueprint_orchestrator(context: df.DurableOrchestrationContext) -> Iterator[Any]:
        result = yield context.call_activity("from_blueprint", "abc")
        return result

    combined = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    combined.register_functions(blueprint)
    with LocalHost(combined, clock=VirtualClock(START)) as host:
        status = host.wait_for_completion(host.start_new("blueprint_orchestrator"))
    assert status.output == "cba"
    # The Python worker may index an app only once; the host never did.
    assert {f.get_function_name() for f in combined.get_functions()} == {
        "from_blueprint",
        "blueprint_orchestrator",
    }
