"""Structured records a person can query: one per disk phase, one per disk, one per run.

Application Insights keeps what the Functions host forwards of the worker's log lines. The Python worker
forwards the message and drops a record's ``extra`` fields (azure-functions-python-worker #1327, #1681),
so each record travels in the message itself as JSON after a fixed prefix — ``diskbackup {"event": ...}``
— which a Kusto query reads with ``parse_json`` (the README has the queries). The same fields ride on
the log record as attributes too, so an OpenTelemetry exporter (Functions' ``telemetryMode:
OpenTelemetry``) turns them into ``customDimensions`` as they are.

Records carry ids, names, phases, counts and durations: never a URL, a SAS or a key (every line still
passes :mod:`backup.redact`'s filter). Orchestrators emit them only when not replaying, so each phase is
logged once however often the orchestration replays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backup.redact import get_logger

log = get_logger("diskbackup.telemetry")

#: What every structured line starts with (the Kusto queries look for it).
PREFIX = "diskbackup "


def emit(record: dict[str, Any]) -> None:
    """Log one structured record (``event`` names its kind)."""
    log.info("%s%s", PREFIX, json.dumps(record, sort_keys=True, default=str), extra=dict(record))


def parse(line: str) -> dict[str, Any] | None:
    """The record a log line carries, or ``None`` if it is not one of ours (the inverse of :func:`emit`)."""
    if not line.startswith(PREFIX + "{"):
        return None
    try:
        record = json.loads(line[len(PREFIX) :])
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


@dataclass
class PhaseClock:
    """Times one disk's phases on the orchestration clock and logs a record as each one ends.

    ``replaying`` is asked at each change: records are written only by the execution that first reaches
    a phase change, never again on replay.
    """

    run_id: str
    disk_id: str
    disk: str
    phase: str | None = None
    since: datetime | None = None
    started: datetime | None = None
    durations_ms: dict[str, int] = field(default_factory=dict)

    def enter(self, phase: str, now: datetime, bytes_done: int, *, replaying: bool) -> None:
        """The disk is in ``phase`` from ``now``; if that ends another phase, log the one that ended."""
        if self.started is None:
            self.started = now
        if phase == self.phase:
            return
        if self.phase is not None and self.since is not None:
            took = _ms(now - self.since)
            self.durations_ms[self.phase] = self.durations_ms.get(self.phase, 0) + took
            if not replaying:
                emit(
                    {
                        "event": "diskPhase",
                        "runId": self.run_id,
                        "diskId": self.disk_id,
                        "disk": self.disk,
                        "phase": self.phase,
                        "bytes": bytes_done,
                        "durationMs": took,
                    }
                )
        self.phase, self.since = phase, now

    def finish(self, now: datetime, result: dict[str, Any], *, replaying: bool) -> None:
        """The disk's backup ended with ``result`` (a :class:`~backup.workflow.models.DiskResult`'s JSON)."""
        if replaying:
            return
        emit(
            {
                "event": "disk",
                "runId": self.run_id,
                "diskId": self.disk_id,
                "disk": self.disk,
                "status": result.get("status"),
                "phase": result.get("phase"),
                "code": result.get("code"),
                "reason": result.get("reason"),
                "kind": result.get("kind"),
                "bytes": result.get("bytesMoved") or 0,
                "sizeBytes": result.get("sizeBytes"),
                "durationMs": _ms(now - self.started) if self.started is not None else 0,
                "phasesMs": dict(self.durations_ms),
            }
        )


def run_record(summary: dict[str, Any], duration_ms: int) -> dict[str, Any]:
    """The record of a finished run (from its :class:`~backup.workflow.models.RunSummary` JSON)."""
    disks = summary.get("disks") or []
    return {
        "event": "run",
        "runId": summary.get("runId"),
        "trigger": summary.get("trigger"),
        "status": summary.get("status"),
        "diskCount": summary.get("diskCount"),
        "succeeded": summary.get("succeeded"),
        "failed": summary.get("failed"),
        "bytes": sum(int(d.get("bytesMoved") or 0) for d in disks),
        "durationMs": duration_ms,
    }


def _ms(delta: Any) -> int:
    return max(0, int(delta.total_seconds() * 1000))
