"""The wire formats of the replay protocol: history events in, orchestrator state out.

The host talks to an orchestrator in two JSON documents, both defined by the Durable extension and
read/written by the SDK (``azure.durable_functions``):

- **Context in** (:func:`orchestration_context`): the instance's whole history so far plus the new
  events of this episode, the input, ids and replay-schema settings. ``history[0]`` is
  ``OrchestratorStarted`` and ``history[1]`` ``ExecutionStarted``; every event carries ``EventType``,
  ``EventId``, ``IsPlayed`` and a ``Timestamp`` ending in ``Z``. Events before this episode's
  ``OrchestratorStarted`` are marked played.
- **State out** (:func:`parse_orchestrator_result`): ``{"isDone", "actions": [[...]], "output",
  "customStatus", "error"}``. Under replay schema V2/V3 the single inner list holds every action since
  the execution started, ``WhenAll``/``WhenAny`` as compound actions. A failing orchestrator makes the
  SDK *raise* ``Exception("<error>\\n\\n$OutOfProcData$:<state json>")`` instead of returning.

Event payloads follow DTFx: results and inputs are JSON *text*; ``EventId`` is the sequence number for
scheduling events (``TaskScheduled``, ``SubOrchestrationInstanceCreated``, ``TimerCreated``) and -1
otherwise; completions point back with ``TaskScheduledId``/``TimerId``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

__all__ = [
    "OUT_OF_PROC_LABEL",
    "EventType",
    "OrchestratorOutput",
    "event_raised",
    "execution_completed",
    "execution_started",
    "execution_terminated",
    "format_timestamp",
    "orchestration_context",
    "orchestrator_completed",
    "orchestrator_started",
    "parse_orchestrator_result",
    "parse_timestamp",
    "played_event_json",
    "sub_orchestration_completed",
    "sub_orchestration_created",
    "sub_orchestration_failed",
    "task_completed",
    "task_failed",
    "task_scheduled",
    "timer_created",
    "timer_fired",
]

OUT_OF_PROC_LABEL = "\n\n$OutOfProcData$:"

# The timer settings the extension sends with the Azure Storage backend: timers longer than 6 days are
# split by the SDK (replay schema V3) into 3-day pieces.
MAXIMUM_SHORT_TIMER_DURATION = "6.00:00:00"
LONG_RUNNING_TIMER_INTERVAL = "3.00:00:00"


class EventType(IntEnum):
    """DTFx history event types (``DurableTask.Core.History.EventType``)."""

    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_INSTANCE_CREATED = 7
    SUB_ORCHESTRATION_INSTANCE_COMPLETED = 8
    SUB_ORCHESTRATION_INSTANCE_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16
    GENERIC_EVENT = 17
    HISTORY_STATE = 18
    EXECUTION_SUSPENDED = 19
    EXECUTION_RESUMED = 20


# --- time ------------------------------------------------------------------------------------------


def format_timestamp(when: datetime) -> str:
    """A history timestamp: UTC, microseconds, ``Z`` (what the SDK's ``dateutil`` parses back)."""
    if when.tzinfo is None:
        raise ValueError("history timestamps must be timezone-aware")
    return _format_utc(when)


@functools.lru_cache(maxsize=4096)
def _format_utc(when: datetime) -> str:
    # Memoized: on a virtual clock every event of a burst shares one instant, and ``strftime`` was most
    # of the cost of making an event (equal instants in other zones format alike, so they may share).
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    """Parse a timestamp written by :func:`format_timestamp` or by the SDK (``fireAt``)."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, ValueError) as exc:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


# --- events ----------------------------------------------------------------------------------------


def _event(event_type: EventType, when: datetime, event_id: int = -1, **fields: Any) -> dict[str, Any]:
    return {
        "EventType": int(event_type),
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": format_timestamp(when),
        **fields,
    }


def orchestrator_started(when: datetime) -> dict[str, Any]:
    """Opens an episode; its timestamp becomes ``context.current_utc_datetime``."""
    return _event(EventType.ORCHESTRATOR_STARTED, when)


def orchestrator_completed(when: datetime) -> dict[str, Any]:
    """Closes an episode."""
    return _event(EventType.ORCHESTRATOR_COMPLETED, when)


def execution_started(
    when: datetime,
    *,
    name: str,
    input_json: str | None,
    instance_id: str,
    execution_id: str,
    parent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The first event of an execution. The SDK requires ``Version``."""
    return _event(
        EventType.EXECUTION_STARTED,
        when,
        Name=name,
        Version="",
        Input=input_json,
        OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
        ParentInstance=parent,
    )


def execution_completed(when: datetime, *, status: str, result: str | None) -> dict[str, Any]:
    """The last event of an execution: ``status`` is ``Completed``, ``Failed`` or ``Terminated``."""
    return _event(EventType.EXECUTION_COMPLETED, when, OrchestrationStatus=status, Result=result)


def execution_terminated(when: datetime, *, reason: str) -> dict[str, Any]:
    """A terminate request; in DTFx it is a message to the instance like any other."""
    return _event(EventType.EXECUTION_TERMINATED, when, Input=reason)


def task_scheduled(when: datetime, *, seq: int, name: str, input_json: str | None) -> dict[str, Any]:
    """An activity was scheduled with sequence number ``seq``."""
    return _event(EventType.TASK_SCHEDULED, when, seq, Name=name, Version="", Input=input_json)


def task_completed(when: datetime, *, seq: int, result_json: str | None) -> dict[str, Any]:
    """Activity ``seq`` returned ``result_json``."""
    return _event(EventType.TASK_COMPLETED, when, TaskScheduledId=seq, Result=result_json)


def task_failed(when: datetime, *, seq: int, reason: str, details: str) -> dict[str, Any]:
    """Activity ``seq`` raised."""
    return _event(EventType.TASK_FAILED, when, TaskScheduledId=seq, Reason=reason, Details=details)


def sub_orchestration_created(
    when: datetime, *, seq: int, name: str, instance_id: str, input_json: str | None
) -> dict[str, Any]:
    """A sub-orchestration was started with sequence number ``seq``."""
    return _event(
        EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
        when,
        seq,
        Name=name,
        Version="",
        InstanceId=instance_id,
        Input=input_json,
    )


def sub_orchestration_completed(when: datetime, *, seq: int, result_json: str | None) -> dict[str, Any]:
    """Sub-orchestration ``seq`` completed with ``result_json``."""
    return _event(
        EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED, when, TaskScheduledId=seq, Result=result_json
    )


def sub_orchestration_failed(when: datetime, *, seq: int, reason: str, details: str) -> dict[str, Any]:
    """Sub-orchestration ``seq`` failed (or was terminated)."""
    return _event(
        EventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
        when,
        TaskScheduledId=seq,
        Reason=reason,
        Details=details,
    )


def timer_created(when: datetime, *, seq: int, fire_at: datetime) -> dict[str, Any]:
    """A durable timer with sequence number ``seq`` was created."""
    return _event(EventType.TIMER_CREATED, when, seq, FireAt=format_timestamp(fire_at))


def timer_fired(when: datetime, *, seq: int, fire_at: datetime) -> dict[str, Any]:
    """Timer ``seq`` fired."""
    return _event(EventType.TIMER_FIRED, when, TimerId=seq, FireAt=format_timestamp(fire_at))


def event_raised(when: datetime, *, name: str, input_json: str | None) -> dict[str, Any]:
    """An external event arrived."""
    return _event(EventType.EVENT_RAISED, when, Name=name, Input=input_json)


# --- context in ------------------------------------------------------------------------------------


def played_event_json(event: dict[str, Any]) -> str:
    """A recorded event as a context carries it once played (``IsPlayed`` true), as JSON text."""
    return json.dumps(dict(event, IsPlayed=True))


def orchestration_context(
    *,
    past: Sequence[dict[str, Any]],
    new: Sequence[dict[str, Any]],
    input_json: str | None,
    instance_id: str,
    parent_instance_id: str | None,
    past_json: Sequence[str] | None = None,
) -> str:
    """The JSON string the extension hands an orchestrator function for one episode.

    ``past`` is the stored history (played), ``new`` this episode's events starting with its
    ``OrchestratorStarted``. ``input_json`` is the execution's input as the extension stores it; the
    context carries it parsed once (for a Python client's input that leaves the JSON text the client
    double-encoded, which is what ``context.get_input()`` decodes). ``past_json``, when given, is
    ``past`` already encoded by :func:`played_event_json`, event for event (a history only grows, so a
    host encodes each event once rather than at every replay).
    """
    if past_json is None:
        past_json = [played_event_json(event) for event in past]
    elif len(past_json) != len(past):
        raise ValueError(f"past_json holds {len(past_json)} events, the history {len(past)}")
    events = [*past_json, *(json.dumps(dict(event, IsPlayed=False)) for event in new)]
    document = _document_fields(input_json, instance_id, bool(past), parent_instance_id)
    return '{"history":[' + ",".join(events) + "]," + document


@functools.lru_cache(maxsize=1024)
def _document_fields(
    input_json: str | None, instance_id: str, is_replaying: bool, parent_instance_id: str | None
) -> str:
    """The context's fields after ``history``, as JSON text without the opening brace. Memoized: they
    are the same at every replay of an execution, and a lane's input (its disks' jobs) is long."""
    document = {
        "input": json.loads(input_json) if input_json is not None else None,
        "instanceId": instance_id,
        "isReplaying": is_replaying,
        "parentInstanceId": parent_instance_id,
        "upperSchemaVersion": 2,
        "upperSchemaVersionNew": 3,
        "maximumShortTimerDuration": MAXIMUM_SHORT_TIMER_DURATION,
        "longRunningTimerIntervalDuration": LONG_RUNNING_TIMER_INTERVAL,
    }
    return json.dumps(document)[1:]


# --- state out -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrchestratorOutput:
    """What one orchestrator invocation reported.

    ``actions`` are the top-level actions since the execution started (compound ones keep their
    ``compoundActions``). ``error`` is set when the orchestrator raised; ``custom_status`` is
    ``None`` when the SDK did not send one (it never sends a falsy one).
    """

    actions: list[dict[str, Any]] = field(default_factory=list)
    is_done: bool = False
    output: Any = None
    error: str | None = None
    custom_status: Any = None


def parse_orchestrator_result(
    result: Any = None, exception: BaseException | None = None
) -> OrchestratorOutput:
    """Turn what an orchestrator function returned or raised into an :class:`OrchestratorOutput`.

    An exception carrying ``$OutOfProcData$`` holds the state (with its actions and ``error``); any other
    exception failed before the SDK could build one, so it has no actions.
    """
    if exception is not None:
        text = str(exception)
        head, label, tail = text.partition(OUT_OF_PROC_LABEL)
        if not label:
            return OrchestratorOutput(error=text or type(exception).__name__)
        state = _load_state(tail)
        error = state.get("error") or head or type(exception).__name__
        return OrchestratorOutput(
            actions=_top_level_actions(state),
            is_done=False,
            output=None,
            error=str(error),
            custom_status=state.get("customStatus"),
        )
    state = _load_state(result)
    return OrchestratorOutput(
        actions=_top_level_actions(state),
        is_done=bool(state.get("isDone", False)),
        output=state.get("output"),
        error=state.get("error"),
        custom_status=state.get("customStatus"),
    )


def _load_state(payload: Any) -> dict[str, Any]:
    if isinstance(payload, dict):
        return payload
    if not isinstance(payload, str | bytes):
        raise ValueError(f"orchestrator returned {type(payload).__name__}, expected its state as JSON text")
    try:
        state = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ValueError(f"orchestrator state is not valid JSON: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError("orchestrator state must be a JSON object")
    return state


def _top_level_actions(state: dict[str, Any]) -> list[dict[str, Any]]:
    # Schema V2/V3 sends one inner list; V1 sent one list per episode. Joining them keeps the order.
    outer = state.get("actions") or []
    if not isinstance(outer, list):
        raise ValueError("orchestrator state: 'actions' must be a list")
    actions: list[dict[str, Any]] = []
    for inner in outer:
        if isinstance(inner, list):
            actions.extend(inner)
        elif isinstance(inner, dict):
            actions.append(inner)
        else:
            raise ValueError("orchestrator state: every action must be a JSON object")
    return actions
