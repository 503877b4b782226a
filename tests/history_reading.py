"""Reading a Durable history as the local host keeps it: which activities were called, and their answers."""

from __future__ import annotations

import json
from typing import Any

from backup.local.durable_host.history import EventType


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
