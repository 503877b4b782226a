"""Per-instance status and counts, and the JSON the extension's status endpoint returns for them.

:class:`InstanceStatus` is what ``LocalHost.get_status`` returns. :func:`status_payload` renders it the
way the Durable extension's HTTP API does (``createdTime`` to the second with ``Z``; ``input``,
``output`` and ``customStatus`` as JSON values), and :func:`history_for_status` turns a stored history
into the ``historyEvents`` list of ``?showHistory=true``: event types by name, each completion merged
with its scheduling event (``FunctionName``, ``ScheduledTime``), episode markers and ids dropped,
results shown only with ``showHistoryOutput``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from azure.durable_functions.models.utils.df_serialization import df_loads

from backup.local.durable_host.history import EventType

__all__ = ["Counts", "InstanceStatus", "RuntimeStatus", "history_for_status", "status_payload"]


class RuntimeStatus(StrEnum):
    """An instance's runtime status, spelled as the extension spells it."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    CONTINUED_AS_NEW = "ContinuedAsNew"
    FAILED = "Failed"
    TERMINATED = "Terminated"

    @property
    def is_terminal(self) -> bool:
        """Completed, Failed or Terminated: the instance will not run again (unless restarted)."""
        return self in (RuntimeStatus.COMPLETED, RuntimeStatus.FAILED, RuntimeStatus.TERMINATED)


@dataclass(frozen=True)
class Counts:
    """What an instance (or the whole host) cost.

    ``replays`` counts orchestrator episodes (each replays the whole history), ``activity_executions``
    activity invocations (retries and re-runs after a restart included), ``history_events`` the events in
    the current execution's history (the replay cost driver).
    """

    replays: int = 0
    activity_executions: int = 0
    history_events: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.replays + other.replays,
            self.activity_executions + other.activity_executions,
            self.history_events + other.history_events,
        )


@dataclass(frozen=True)
class InstanceStatus:
    """A snapshot of one orchestration instance.

    ``input`` is the input as ``context.get_input()`` sees it; ``input_json`` the JSON text the
    extension stores (for an instance started by a Python client, the JSON text of the JSON text).
    ``output`` is the orchestrator's return value, or for a failed instance the failure message, or for
    a terminated one the reason. ``custom_status`` is the last one the orchestrator set.
    """

    instance_id: str
    name: str
    runtime_status: RuntimeStatus
    input: Any
    input_json: str | None
    output: Any
    custom_status: Any
    created_time: datetime
    last_updated_time: datetime

    @property
    def is_terminal(self) -> bool:
        """Whether the instance has finished."""
        return self.runtime_status.is_terminal


def decode_input(input_json: str | None) -> Any:
    """The input as the orchestrator's ``get_input()`` decodes it from the stored JSON text."""
    if input_json is None:
        return None
    value = json.loads(input_json)
    if isinstance(value, str):
        try:
            return df_loads(value)
        except ValueError:
            return value
    return value


def _status_time(when: datetime) -> str:
    # .NET DateTime.ToString("s") + "Z"
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_payload(
    status: InstanceStatus, *, show_input: bool = True, history_events: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The status endpoint's JSON object for ``status``."""
    payload: dict[str, Any] = {
        "name": status.name,
        "instanceId": status.instance_id,
        "runtimeStatus": str(status.runtime_status),
        "input": json.loads(status.input_json) if show_input and status.input_json is not None else None,
        "customStatus": status.custom_status,
        "output": status.output,
        "createdTime": _status_time(status.created_time),
        "lastUpdatedTime": _status_time(status.last_updated_time),
    }
    if history_events is not None:
        payload["historyEvents"] = history_events
    return payload


def _parse_json_text(text: Any) -> Any:
    # The extension's ParseToJToken: JSON if it parses, else the raw string.
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    if not stripped:
        return ""
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        return text


def history_for_status(history: Sequence[dict[str, Any]], *, show_output: bool) -> list[dict[str, Any]]:
    """The ``historyEvents`` of a status response, built from stored history events."""
    events = [dict(event) for event in history]
    scheduled: dict[tuple[str, Any], tuple[int, Any, Any]] = {}
    dropped: set[int] = set()
    completions = {
        EventType.TASK_COMPLETED: ("TaskScheduled", EventType.TASK_COMPLETED),
        EventType.TASK_FAILED: ("TaskScheduled", EventType.TASK_COMPLETED),
        EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED: (
            "SubOrchestrationInstanceCreated",
            EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
        ),
        EventType.SUB_ORCHESTRATION_INSTANCE_FAILED: (
            "SubOrchestrationInstanceCreated",
            EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
        ),
    }
    for index, event in enumerate(events):
        try:
            event_type = EventType(event["EventType"])
        except ValueError:
            continue
        type_name = _event_type_name(event_type)
        event["EventType"] = type_name
        if event_type in (EventType.TASK_SCHEDULED, EventType.SUB_ORCHESTRATION_INSTANCE_CREATED):
            scheduled[(type_name, event.get("EventId"))] = (index, event.get("Name"), event.get("Timestamp"))
            event.pop("Version", None)
            event.pop("Input", None)
        elif event_type in completions:
            prefix, success = completions[event_type]
            found = scheduled.get((prefix, event.get("TaskScheduledId")))
            if found is not None:
                where, name, when = found
                event["ScheduledTime"] = when
                event["FunctionName"] = name
                dropped.add(where)
            event.pop("TaskScheduledId", None)
            if event_type == success:
                if show_output:
                    event["Result"] = _parse_json_text(event.get("Result"))
                else:
                    event.pop("Result", None)
        elif event_type == EventType.EXECUTION_STARTED:
            event["FunctionName"] = event.pop("Name", None)
            for key in ("OrchestrationInstance", "ParentInstance", "Version", "Tags", "Input"):
                event.pop(key, None)
        elif event_type == EventType.EXECUTION_COMPLETED:
            if show_output:
                event["Result"] = _parse_json_text(event.get("Result"))
            else:
                event.pop("Result", None)
        elif event_type == EventType.TIMER_FIRED:
            event.pop("TimerId", None)
        elif event_type in (EventType.EXECUTION_TERMINATED, EventType.EVENT_RAISED):
            event.pop("Input", None)
        elif event_type in (EventType.ORCHESTRATOR_STARTED, EventType.ORCHESTRATOR_COMPLETED):
            dropped.add(index)
        event.pop("EventId", None)
        event.pop("IsPlayed", None)
    return [event for index, event in enumerate(events) if index not in dropped]


def _event_type_name(event_type: EventType) -> str:
    # DTFx's enum names: EXECUTION_STARTED -> ExecutionStarted.
    return "".join(part.capitalize() for part in event_type.name.split("_"))
