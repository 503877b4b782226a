"""Reading a Durable history as the local host keeps it: which activities were called, and their answers."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from backup.local.durable_host import LocalHost
from backup.local.durable_host.history import EventType
from backup.local.durable_host.replay import ContinuedAsNew
from backup.workflow.watch import waits_prefix


def scheduled(history: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The ``TaskScheduled`` events of activity ``name``: one per call."""
    return [e for e in history if e["EventType"] == EventType.TASK_SCHEDULED and e["Name"] == name]


def completed(history: list[dict[str, Any]], name: str) -> list[Any]:
    """The answers of the calls of activity ``name`` that completed, in the order they arrived."""
    asked = {e["EventId"] for e in scheduled(history, name)}
    return [
        json.loads(e["Result"])
        for e in history
        if e["EventType"] == EventType.TASK_COMPLETED and e["TaskScheduledId"] in asked
    ]


def record_executions(host: LocalHost, *, finished: bool = False) -> dict[str, list[list[dict[str, Any]]]]:
    """Keep the history of every execution of ``host``'s instances that continues as new (the host
    keeps only the current one), and with ``finished`` of every one that ends too (a later wait of the
    same kind reuses a finished wait's instance id); answers instance id -> those histories, oldest
    first. (A seam of the host we own: its ``_finish_locked``.)"""
    executions: dict[str, list[list[dict[str, Any]]]] = {}
    finish = host._finish_locked

    def finishing(instance: Any, now: datetime, outcome: Any) -> None:
        if isinstance(outcome, ContinuedAsNew):
            executions.setdefault(instance.instance_id, []).append(list(instance.history))
            finish(instance, now, outcome)
            return
        finish(instance, now, outcome)
        if finished:
            executions.setdefault(instance.instance_id, []).append(list(instance.history))

    host._finish_locked = finishing  # type: ignore[method-assign]
    return executions


def every_history(
    host: LocalHost, executions: dict[str, list[list[dict[str, Any]]]]
) -> dict[str, list[dict[str, Any]]]:
    """Every instance of ``host`` -> the events of all its executions: those ``executions`` recorded
    (:func:`record_executions`), then the current one's unless it is the last recorded."""
    histories = {}
    for instance in host.list_instances():
        ended = executions.get(instance.instance_id, [])
        current = host.history(instance.instance_id)
        if ended and ended[-1] == current:
            current = []
        histories[instance.instance_id] = [*(e for history in ended for e in history), *current]
    return histories


def with_waits(histories: dict[str, list[dict[str, Any]]], caller: str) -> list[dict[str, Any]]:
    """The events of ``caller`` (a disk orchestration) and of its waits, where the begin activities,
    the copy's start and the polls are called (:mod:`backup.workflow.watch`): the caller's first, then
    each wait's, by instance id."""
    prefix = waits_prefix(caller)
    waits = sorted(i for i in histories if i.startswith(prefix))
    return [*histories.get(caller, []), *(e for wait in waits for e in histories[wait])]
