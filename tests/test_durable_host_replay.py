"""The host's replay decisions as pure functions: tables of cases, no threads, no SDK run.

Actions are written in the SDK's JSON shape (``actionType``, ``functionName``, ``compoundActions``...);
events come from :mod:`backup.local.durable_host.history`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backup.local.durable_host import history as h
from backup.local.durable_host.replay import (
    ContinuedAsNew,
    ExecutionState,
    Failed,
    Kind,
    Leaf,
    Phase,
    expects,
    find_nondeterminism,
    is_retry_sensitive,
    outstanding,
    plan_episode,
    select_batch,
)
from backup.local.durable_host.status import history_for_status

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
RETRY = {"firstRetryIntervalInMilliseconds": 5000, "maxNumberOfAttempts": 3}


def activity(name: str, value: Any = None, retry: bool = False) -> dict[str, Any]:
    action: dict[str, Any] = {
        "actionType": 1 if retry else 0,
        "functionName": name,
        "input": json.dumps(value),
    }
    if retry:
        action["retryOptions"] = RETRY
    return action


def timer(seconds: int, cancelled: bool = False) -> dict[str, Any]:
    fire_at = (NOW + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"actionType": 5, "fireAt": fire_at, "isCanceled": cancelled}


def when_all(*children: dict[str, Any]) -> dict[str, Any]:
    return {"actionType": 12, "compoundActions": list(children)}


def wait_event(name: str) -> dict[str, Any]:
    return {"actionType": 6, "externalEventName": name, "reason": "ExternalEvent"}


def plan(
    state: ExecutionState, batch: list[dict[str, Any]], actions: list[dict[str, Any]], **output: Any
) -> Any:
    return plan_episode(
        state,
        batch,
        h.OrchestratorOutput(actions=actions, **output),
        orchestrator="orch",
        execution_id="exec1",
        now=NOW,
        activities={"a", "b", "c"},
        orchestrators={"orch", "child"},
    )


def done(seq: int, result: Any = None) -> dict[str, Any]:
    return h.task_completed(NOW, seq=seq, result_json=json.dumps(result))


def failed(seq: int) -> dict[str, Any]:
    return h.task_failed(NOW, seq=seq, reason="boom", details="trace")


def fired(seq: int, seconds: int = 5) -> dict[str, Any]:
    return h.timer_fired(NOW, seq=seq, fire_at=NOW + timedelta(seconds=seconds))


def running_retry(attempts: int = 1) -> Leaf:
    return Leaf(
        Kind.ACTIVITY, "a", seq=0, phase=Phase.RUNNING, attempts=attempts, current_seq=0, max_attempts=3
    )


# --- batches ---------------------------------------------------------------------------------------

BATCH_STATE = ExecutionState(
    leaves=[running_retry(), Leaf(Kind.ACTIVITY, "b", seq=1, phase=Phase.RUNNING, attempts=1, current_seq=1)],
    next_seq=2,
)


@pytest.mark.parametrize(
    ("inbox", "size"),
    [
        ([], 0),
        ([done(1)], 1),
        ([done(1), failed(0)], 1),  # a retry failure must open its own batch
        ([failed(0), done(1)], 2),
        ([h.event_raised(NOW, name="x", input_json="1"), done(1)], 2),
    ],
)
def test_select_batch(inbox: list[dict[str, Any]], size: int) -> None:
    assert select_batch(BATCH_STATE, inbox) == size


@pytest.mark.parametrize(("attempts", "sensitive"), [(1, True), (2, True), (3, False)])
def test_retry_timer_is_sensitive_only_while_attempts_remain(attempts: int, sensitive: bool) -> None:
    leaf = Leaf(
        Kind.ACTIVITY,
        "a",
        seq=0,
        phase=Phase.RETRY_WAIT,
        attempts=attempts,
        max_attempts=3,
        retry_timer_seq=2,
    )
    assert is_retry_sensitive(ExecutionState([leaf], next_seq=3), fired(2)) is sensitive


def test_expects_rejects_duplicates_and_strangers() -> None:
    assert expects(BATCH_STATE, [], done(1))
    assert not expects(BATCH_STATE, [done(1)], done(1))
    assert not expects(BATCH_STATE, [], done(7))
    assert not expects(BATCH_STATE, [], fired(1))
    assert expects(BATCH_STATE, [], h.event_raised(NOW, name="anything", input_json="null"))


# --- non-determinism -------------------------------------------------------------------------------

RECORDED = [Leaf(Kind.ACTIVITY, "a", seq=0), Leaf(Kind.TIMER, "", seq=1), Leaf(Kind.EXTERNAL_EVENT, "go")]


@pytest.mark.parametrize(
    ("actions", "problem"),
    [
        ([activity("a"), timer(5), wait_event("go"), activity("b")], None),
        (
            [activity("b"), timer(5), wait_event("go")],
            "sequence number 0 named 'a', but the current orchestration",
        ),
        (
            [activity("a"), activity("a")],
            "a timer task with sequence number 1, but the current orchestration replay",
        ),
        ([activity("a"), timer(5), wait_event("stop")], "a wait for external event 'go'"),
        ([activity("a")], "hasn't (yet?) scheduled this task"),
    ],
)
def test_find_nondeterminism(actions: list[dict[str, Any]], problem: str | None) -> None:
    found = find_nondeterminism(RECORDED, actions)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_nondeterminism_fails_the_execution_with_dtfx_wording() -> None:
    state = ExecutionState([Leaf(Kind.ACTIVITY, "a", seq=0, phase=Phase.RUNNING, current_seq=0)], next_seq=1)
    result = plan(state, [done(0)], [activity("b")])
    assert isinstance(result.outcome, Failed)
    assert result.outcome.reason.startswith("Non-Deterministic workflow detected: A previous execution")
    assert result.activities == []


# --- scheduling and retries ------------------------------------------------------------------------


def test_first_episode_schedules_in_order_and_event_waits_take_no_number() -> None:
    result = plan(ExecutionState(), [], [when_all(activity("a", 1), wait_event("go"), timer(30))])
    assert [(e["EventType"], e["EventId"]) for e in result.events] == [
        (h.EventType.TASK_SCHEDULED, 0),
        (h.EventType.TIMER_CREATED, 1),
    ]
    assert [(c.seq, c.name, c.input_json) for c in result.activities] == [(0, "a", "1")]
    assert [(t.seq, t.fire_at) for t in result.timers] == [(1, NOW + timedelta(seconds=30))]
    assert result.state.next_seq == 2 and result.outcome is None


def test_retry_allocates_a_timer_then_a_new_attempt() -> None:
    first = plan(ExecutionState(), [], [activity("a", retry=True)])
    after_failure = plan(first.state, [failed(0)], [activity("a", retry=True)])
    created = after_failure.events[0]
    assert (created["EventType"], created["EventId"]) == (h.EventType.TIMER_CREATED, 1)
    assert h.parse_timestamp(created["FireAt"]) == NOW + timedelta(seconds=5)
    assert after_failure.activities == [] and after_failure.state.leaves[0].phase is Phase.RETRY_WAIT
    after_timer = plan(after_failure.state, [fired(1)], [activity("a", retry=True)])
    assert [(c.seq, c.name) for c in after_timer.activities] == [(2, "a")]
    assert after_timer.state.leaves[0].attempts == 2 and after_timer.state.next_seq == 3


def test_retry_failure_opening_a_batch_numbers_before_new_actions() -> None:
    state = ExecutionState(
        [running_retry(), Leaf(Kind.ACTIVITY, "b", seq=1, phase=Phase.RUNNING, attempts=1, current_seq=1)],
        next_seq=2,
    )
    # The SDK allocates the retry timer when it sees TaskFailed, before b's completion resumes the code
    # that yields c: timer 2, c 3.
    actions = [
        {"actionType": 11, "compoundActions": [activity("a", retry=True), activity("b")]},
        activity("c"),
    ]
    result = plan(state, [failed(0), done(1)], actions)
    assert [(e["EventType"], e["EventId"]) for e in result.events] == [
        (h.EventType.TIMER_CREATED, 2),
        (h.EventType.TASK_SCHEDULED, 3),
    ]


def test_later_actions_wait_for_earlier_ones_like_the_extension() -> None:
    state = ExecutionState(
        [Leaf(Kind.ACTIVITY, "a", seq=0, phase=Phase.RUNNING, attempts=1, current_seq=0)], 1
    )
    gated = plan(state, [], [activity("a"), activity("b")])
    assert gated.activities == []  # b waits until a is done...
    assert gated.state.leaves[1].seq == 1 and gated.state.leaves[1].phase is Phase.PENDING
    released = plan(gated.state, [done(0)], [activity("a"), activity("b")])
    assert [(c.seq, c.name) for c in released.activities] == [(1, "b")]  # ...then runs with its number


def test_failure_counts_only_once_every_when_all_child_is_done() -> None:
    first = plan(ExecutionState(), [], [when_all(activity("a"), activity("b"))])
    error = {"error": "Activity function 'a' failed: boom"}
    waiting = plan(first.state, [failed(0)], [when_all(activity("a"), activity("b"))], **error)
    assert waiting.outcome is None
    finished = plan(waiting.state, [done(1)], [when_all(activity("a"), activity("b"))], **error)
    assert finished.outcome == Failed(
        reason="Orchestrator function 'orch' failed: Activity function 'a' failed: boom",
        details="Activity function 'a' failed: boom",
    )


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (activity("missing"), "The function 'missing' doesn't exist, is disabled, or is not an activity"),
        ({"actionType": 2, "functionName": "nope", "input": "null"}, "is not an orchestrator function"),
        ({"actionType": 8, "httpRequest": {}}, "does not support CallHttp actions"),
    ],
)
def test_actions_the_host_cannot_run_fail_the_orchestration(action: dict[str, Any], message: str) -> None:
    result = plan(ExecutionState(), [], [action])
    assert isinstance(result.outcome, Failed)
    assert result.outcome.reason.startswith("Orchestrator function 'orch' failed: ")
    assert message in result.outcome.reason


def test_continue_as_new_double_encodes_the_input_like_the_extension() -> None:
    result = plan(ExecutionState(), [], [{"actionType": 4, "input": '{"n": 2}'}], is_done=True)
    assert result.outcome == ContinuedAsNew(input_json=json.dumps('{"n": 2}'))


def test_cancelled_timer_is_disarmed() -> None:
    first = plan(ExecutionState(), [], [{"actionType": 11, "compoundActions": [timer(60), activity("a")]}])
    later = plan(
        first.state,
        [done(1)],
        [{"actionType": 11, "compoundActions": [timer(60, cancelled=True), activity("a")]}],
        is_done=True,
        output="a won",
    )
    assert later.cancelled_timers == [0]
    assert later.outcome is not None and later.outcome.output == "a won"  # type: ignore[union-attr]


def test_an_orchestrator_failing_before_reporting_state_just_fails() -> None:
    output = h.OrchestratorOutput(error="generator crashed")
    result = plan_episode(
        ExecutionState(),
        [],
        output,
        orchestrator="orch",
        execution_id="e",
        now=NOW,
        activities=set(),
        orchestrators=set(),
        has_state=False,
    )
    assert result.outcome == Failed(
        "Orchestrator function 'orch' failed: generator crashed", "generator crashed"
    )


def test_outstanding_work_after_a_restart() -> None:
    state = ExecutionState(
        [
            Leaf(Kind.ACTIVITY, "a", seq=0, phase=Phase.RUNNING, attempts=1, current_seq=0, input_json="1"),
            Leaf(Kind.ACTIVITY, "b", seq=1, phase=Phase.RUNNING, attempts=1, current_seq=1),
            Leaf(Kind.TIMER, "", seq=2, phase=Phase.RUNNING, fire_at=h.format_timestamp(NOW)),
            Leaf(Kind.SUB_ORCHESTRATION, "child", seq=3, phase=Phase.RUNNING, attempts=1, current_seq=3),
        ],
        next_seq=4,
    )
    work = outstanding(state, [done(1)], execution_id="exec1")
    assert [(c.seq, c.name, c.input_json) for c in work.activities] == [(0, "a", "1")]  # b already reported
    assert [(t.seq, t.fire_at) for t in work.timers] == [(2, NOW)]
    assert [(c.seq, c.instance_id) for c in work.children] == [(3, "exec1:3")]


def test_state_survives_a_json_round_trip() -> None:
    result = plan(ExecutionState(), [], [activity("a", retry=True), wait_event("go")])
    encoded = json.loads(json.dumps(result.state.to_json()))
    assert ExecutionState.from_json(encoded) == result.state


def test_a_copy_of_the_state_is_equal_and_independent() -> None:
    state = plan(ExecutionState(), [], [activity("a", retry=True), wait_event("go")]).state
    state.raised["go"] = 1
    twin = state.copy()
    assert twin == state and twin.leaves[0] is not state.leaves[0] and type(twin.leaves[0]) is Leaf
    twin.leaves[0].phase = Phase.DONE
    twin.raised["go"] = 2
    twin.next_seq += 1
    assert state.leaves[0].phase is not Phase.DONE and state.raised == {"go": 1} and twin != state


# --- wire formats ----------------------------------------------------------------------------------


def test_parse_a_failing_orchestrators_exception() -> None:
    state = {"isDone": False, "actions": [[activity("a")]], "error": "boom", "customStatus": {"k": 1}}
    exc = Exception(f"boom{h.OUT_OF_PROC_LABEL}{json.dumps(state)}")
    parsed = h.parse_orchestrator_result(exception=exc)
    assert parsed.error == "boom" and parsed.custom_status == {"k": 1} and parsed.actions == [activity("a")]
    plain = h.parse_orchestrator_result(exception=ValueError("no state"))
    assert plain.error == "no state" and plain.actions == []


def test_context_marks_past_events_played() -> None:
    past = [
        h.orchestrator_started(NOW),
        h.execution_started(NOW, name="o", input_json='"\\"x\\""', instance_id="i", execution_id="e"),
    ]
    context = json.loads(
        h.orchestration_context(
            past=past,
            new=[h.orchestrator_started(NOW)],
            input_json='"\\"x\\""',
            instance_id="i",
            parent_instance_id=None,
        )
    )
    assert [e["IsPlayed"] for e in context["history"]] == [True, True, False]
    assert context["input"] == '"x"'  # parsed once: the JSON text the orchestrator's get_input decodes
    assert context["history"][1]["Version"] == ""
    # Past events encoded once beforehand give the very same context.
    encoded = [h.played_event_json(event) for event in past]
    same = h.orchestration_context(
        past=past,
        past_json=encoded,
        new=[h.orchestrator_started(NOW)],
        input_json='"\\"x\\""',
        instance_id="i",
        parent_instance_id=None,
    )
    assert json.loads(same) == context
    with pytest.raises(ValueError, match="past_json holds 1 events"):
        h.orchestration_context(
            past=past,
            past_json=encoded[:1],
            new=[],
            input_json=None,
            instance_id="i",
            parent_instance_id=None,
        )


def test_status_history_merges_completions_with_their_scheduling() -> None:
    stored = [
        h.orchestrator_started(NOW),
        h.execution_started(NOW, name="o", input_json=None, instance_id="i", execution_id="e"),
        h.task_scheduled(NOW, seq=0, name="a", input_json="1"),
        h.orchestrator_completed(NOW),
        h.orchestrator_started(NOW),
        h.task_completed(NOW, seq=0, result_json='{"ok": true}'),
        h.execution_completed(NOW, status="Completed", result='"done"'),
        h.orchestrator_completed(NOW),
    ]
    shown = history_for_status(stored, show_output=True)
    assert [e["EventType"] for e in shown] == ["ExecutionStarted", "TaskCompleted", "ExecutionCompleted"]
    assert shown[0]["FunctionName"] == "o" and "Input" not in shown[0]
    assert shown[1]["FunctionName"] == "a" and shown[1]["Result"] == {"ok": True}
    assert shown[1]["ScheduledTime"] == h.format_timestamp(NOW)
    assert all("EventId" not in e and "IsPlayed" not in e for e in shown)
    assert "Result" not in history_for_status(stored, show_output=False)[1]
