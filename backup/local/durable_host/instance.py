"""One orchestration instance as the host keeps it: status, history, inbox and replay bookkeeping.

The history holds the current execution's events (``continue_as_new`` starts a new one, as in DTFx).
The inbox holds events that have arrived but not yet been delivered to an episode; an episode's batch
leaves the inbox only when the episode commits, so a record saved meanwhile still has it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backup.local.durable_host import history as h
from backup.local.durable_host.replay import ExecutionState
from backup.local.durable_host.status import Counts, InstanceStatus, RuntimeStatus, decode_input

__all__ = ["Instance", "ParentLink"]


class EncodedEvents(list[str]):
    """History events already encoded as JSON text (compact separators), one string each: the store
    splices them into a record's file as they are (:meth:`Instance.to_store_record`)."""


@dataclass(frozen=True)
class ParentLink:
    """The orchestration that started this one as a sub-orchestration, and under which task number."""

    instance_id: str
    execution_id: str
    seq: int
    name: str

    def as_event_field(self) -> dict[str, Any]:
        """The ``ParentInstance`` field of ``ExecutionStarted``."""
        return {
            "Name": self.name,
            "Version": "",
            "TaskScheduleId": self.seq,
            "OrchestrationInstance": {"InstanceId": self.instance_id, "ExecutionId": self.execution_id},
        }


@dataclass
class Instance:
    """The mutable record of one instance; the host guards it with its lock."""

    instance_id: str
    name: str
    execution_id: str
    input_json: str | None
    created_time: datetime
    last_updated_time: datetime
    runtime_status: RuntimeStatus = RuntimeStatus.PENDING
    output: Any = None
    custom_status: Any = None
    parent: ParentLink | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    inbox: list[dict[str, Any]] = field(default_factory=list)
    state: ExecutionState = field(default_factory=ExecutionState)
    replays: int = 0
    activity_executions: int = 0
    # Timers armed for the current execution (sequence number -> fire time); rebuilt on load.
    armed: dict[int, datetime] = field(default_factory=dict)
    # The history's events encoded as a context carries them (played), for the execution named.
    _played_json: list[str] = field(default_factory=list, repr=False, compare=False)
    _played_execution: str | None = field(default=None, repr=False, compare=False)
    _stored_json: list[str] = field(default_factory=list, repr=False, compare=False)
    _stored_execution: str | None = field(default=None, repr=False, compare=False)

    def status(self) -> InstanceStatus:
        """A snapshot for callers."""
        return InstanceStatus(
            instance_id=self.instance_id,
            name=self.name,
            runtime_status=self.runtime_status,
            input=decode_input(self.input_json),
            input_json=self.input_json,
            output=self.output,
            custom_status=self.custom_status,
            created_time=self.created_time,
            last_updated_time=self.last_updated_time,
        )

    def counts(self) -> Counts:
        """What this instance has cost so far."""
        return Counts(self.replays, self.activity_executions, len(self.history))

    def to_record(self) -> dict[str, Any]:
        """Everything worth keeping across a restart, JSON-ready, and the host's to change afterwards
        (lists are copied; the events in them are never changed once recorded).

        The input is kept once: when the execution's ``ExecutionStarted`` (in the history, or still in
        the inbox) carries it, ``input_json`` is left out (a lane's input is most of its record).
        """
        started = self._execution_started()
        in_event = started is not None and started.get("Input") == self.input_json
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "execution_id": self.execution_id,
            "input_json": None if in_event else self.input_json,
            "input_in_history": in_event,
            "created_time": h.format_timestamp(self.created_time),
            "last_updated_time": h.format_timestamp(self.last_updated_time),
            "runtime_status": str(self.runtime_status),
            "output": self.output,
            "custom_status": self.custom_status,
            "parent": None if self.parent is None else vars(self.parent),
            "history": list(self.history),
            "inbox": list(self.inbox),
            "state": self.state.to_json(),
            "replays": self.replays,
            "activity_executions": self.activity_executions,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Instance:
        """Rebuild an instance saved by :meth:`to_record`."""
        parent = record.get("parent")
        instance = cls(
            instance_id=record["instance_id"],
            name=record["name"],
            execution_id=record["execution_id"],
            input_json=record.get("input_json"),
            created_time=h.parse_timestamp(record["created_time"]),
            last_updated_time=h.parse_timestamp(record["last_updated_time"]),
            runtime_status=RuntimeStatus(record["runtime_status"]),
            output=record.get("output"),
            custom_status=record.get("custom_status"),
            parent=None if parent is None else ParentLink(**parent),
            history=list(record.get("history", [])),
            inbox=list(record.get("inbox", [])),
            state=ExecutionState.from_json(record.get("state", {})),
            replays=int(record.get("replays", 0)),
            activity_executions=int(record.get("activity_executions", 0)),
        )
        if record.get("input_in_history"):
            started = instance._execution_started()
            instance.input_json = None if started is None else started.get("Input")
        return instance

    def _execution_started(self) -> dict[str, Any] | None:
        """The current execution's ``ExecutionStarted`` event (recorded, or waiting in the inbox)."""
        for events in (self.history[:2], self.inbox[:1]):
            for event in events:
                if event.get("EventType") == h.EventType.EXECUTION_STARTED:
                    return event
        return None

    def to_store_record(self) -> dict[str, Any]:
        """:meth:`to_record` with the history as :class:`EncodedEvents`, each event encoded once.

        The store writes an instance again at every change, history and all; a history only grows, so
        each event is encoded for the store the first time it is written (a lane's history holds its
        disks' jobs: re-encoding them every second was most of the store writer's time)."""
        if self._stored_execution != self.execution_id or len(self._stored_json) > len(self.history):
            self._stored_json, self._stored_execution = [], self.execution_id
        done = len(self._stored_json)
        self._stored_json.extend(json.dumps(event, separators=(",", ":")) for event in self.history[done:])
        record = self.to_record()
        record["history"] = EncodedEvents(self._stored_json)
        return record

    def played_history_json(self) -> list[str]:
        """The history encoded for a context (:func:`history.played_event_json`), each event encoded
        once: the history of an execution only grows."""
        if self._played_execution != self.execution_id or len(self._played_json) > len(self.history):
            self._played_json, self._played_execution = [], self.execution_id
        done = len(self._played_json)
        self._played_json.extend(h.played_event_json(event) for event in self.history[done:])
        return self._played_json

    def history_copy(self) -> list[dict[str, Any]]:
        """A deep copy of the history (callers must not reach into the live one)."""
        copied: list[dict[str, Any]] = json.loads(json.dumps(self.history))
        return copied
