"""Read access to a disk-night's snapshots: granted for as long as the work needs, renewed when it runs out.

A snapshot's SAS is a bearer secret to the disk's bytes: the shorter it lives, the less a leak costs. So a
grant lasts what the work that reads through it is expected to take, not the worst case:

- **incremental nights and verification** read the SAS afresh in every bounded activity (the chain's
  activities fetch it from the grant operation each time). Their grants last ``sasMinutes``
  (``BACKUP_SAS_MINUTES``, 120 by default), and before each activity that reads through a grant the
  orchestrator renews it (a new grant) when less than :func:`renewal_margin` is left (15 minutes, or a
  quarter of the grant's life when that is shorter): an activity, bounded to a few minutes, never starts
  on a SAS that could run out under it.
- **a Copy Blob** reads from the URL it was given until the copy ends: a new grant cannot help a copy
  already reading, and Azure's answer to a second grant of the same snapshot is not documented to keep the
  first SAS working (the emulator ends it, as a new grant of a resource replaces its SAS: docs/emulator.md).
  So a copy's grant lasts what the copy is expected to take (:func:`copy_seconds`: the disk's size at a
  planning rate well below the Copy Blob speeds observed, and never less than ``sasMinutes``), and if the
  SAS still runs out mid-copy, the copy fails (Azure and the emulator answer 403 for the source) and is
  started again with a new, longer grant, at most :data:`COPY_RESTARTS` times, within the copy's deadline.

No SAS ever enters history: an :class:`Access` holds the grant *operation* (whose result the activities
fetch) and when it was granted, by the orchestration's clock. Renewal decisions are made on that clock, so
they replay deterministically.

Azure caps a disk or snapshot SAS at 60 days since 15 February 2025 (azure-docs
``articles/virtual-machines/includes/disks-sas-change.md``: "Trying to generate a SAS with an expiration
longer than 60 days results in an error"): :data:`MAX_SAS_SECONDS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df

from backup.azure.compute import MAX_GRANT_SECONDS
from backup.redact import get_logger
from backup.workflow import activity_names as act
from backup.workflow.models import MiB, RunOptions

__all__ = [
    "COPY_PLANNING_BYTES_PER_SECOND",
    "COPY_RESTARTS",
    "MAX_SAS_SECONDS",
    "Access",
    "ReadAccess",
    "copy_seconds",
    "expected_copy_seconds",
    "lifetime",
    "renewal_margin",
    "source_access_ended",
]

Orchestration = Generator[Any, Any, Any]

log = get_logger(__name__)

#: Azure's longest disk or snapshot SAS (60 days).
MAX_SAS_SECONDS = MAX_GRANT_SECONDS
#: The Copy Blob rate a copy's grant is planned at: half the slowest rate seen across accounts and regions
#: (33-44 MB/s: azure-sdk-for-java #2018, Azure/migAz #214), so that a copy rarely outlives its grant.
COPY_PLANNING_BYTES_PER_SECOND = 16 * MiB
#: How many times a copy whose source access ran out is started again (each with a grant twice as long).
COPY_RESTARTS = 2
#: Renew a grant when less than this is left (or a quarter of its life, when that is shorter): longer
#: than any one bounded activity runs (Functions stops an activity after 10 minutes on the consumption
#: plan, 30 by default on the others).
RENEW_BEFORE_SECONDS = 15 * 60


def renewal_margin(seconds: int) -> float:
    """How long before a grant of ``seconds`` ends it is renewed (see :data:`RENEW_BEFORE_SECONDS`)."""
    return min(float(RENEW_BEFORE_SECONDS), seconds / 4)


def expected_copy_seconds(disk_bytes: int) -> int:
    """How long a Copy Blob of ``disk_bytes`` is expected to take, at the planning rate."""
    return math.ceil(disk_bytes / COPY_PLANNING_BYTES_PER_SECOND)


def lifetime(work_seconds: int, options: RunOptions) -> int:
    """How long a grant for work of ``work_seconds`` lasts: ``sasMinutes``, or for longer work the work
    with room for two renewal margins (so the grant is not renewed before the work starts); at most
    Azure's 60 days."""
    longer = work_seconds + 2 * RENEW_BEFORE_SECONDS if work_seconds > 0 else 0
    return int(min(max(options.sas_minutes * 60, longer), MAX_SAS_SECONDS))


def copy_seconds(disk_bytes: int, options: RunOptions, restart: int = 0) -> int:
    """How long the grant for a Copy Blob of ``disk_bytes`` lasts (:func:`lifetime` of the expected copy
    time), doubled for each ``restart`` after the SAS ran out mid-copy; never past the copy's deadline
    plus an hour, nor Azure's 60 days."""
    seconds = lifetime(expected_copy_seconds(disk_bytes), options) * 2**restart
    return int(min(seconds, (options.copy_timeout_minutes + 60) * 60, MAX_SAS_SECONDS))


def source_access_ended(message: str) -> bool:
    """Whether a failed copy's message says its source refused access (a SAS that ran out or was ended).

    A failed copy's ``x-ms-copy-status-description`` starts with the source's HTTP status and error code
    (``403 AuthenticationFailed "..."``); our message is ``copy failed: <description>``. A 404 (the source
    is gone) or a 5xx is not an access problem: a new grant would not help those.
    """
    description = message.split("copy failed:", 1)[-1].strip()
    return description.startswith("403") or "AuthenticationFailed" in description.split('"', 1)[0]


@dataclass(frozen=True)
class Access:
    """Read access to one snapshot: its succeeded grant operation (no SAS in it) and how long it lasts."""

    snapshot_id: str
    grant: dict[str, Any]  # the grant operation answer, as activities take it
    granted_at: datetime
    seconds: int

    @property
    def operation(self) -> dict[str, Any]:
        """The secret-free grant operation an activity fetches the SAS from."""
        operation: dict[str, Any] = self.grant["operation"]
        return operation

    @property
    def expires_at(self) -> datetime:
        """When the SAS runs out, by the orchestration's clock (the grant began a little before)."""
        return self.granted_at + timedelta(seconds=self.seconds)

    def left(self, now: datetime) -> float:
        """Seconds of access left at ``now``."""
        return (self.expires_at - _utc(now)).total_seconds()


class ReadAccess:
    """The disk-night's grants, by snapshot: granted, renewed before they run out, listed for revoking.

    ``operate(context, begin activity, its input, deadline, what)`` starts an operation and follows it
    to its end (the disk orchestrator's :func:`~backup.workflow.watch.run_operation`). Each method is a
    generator for the orchestrator to ``yield from``.
    """

    def __init__(
        self,
        options: RunOptions,
        operate: Callable[
            [df.DurableOrchestrationContext, str, dict[str, Any], datetime, str], Orchestration
        ],
    ) -> None:
        self.options = options
        self._operate = operate
        self._grants: dict[str, Access] = {}

    def __getitem__(self, snapshot_id: str) -> Access:
        return self._grants[snapshot_id]

    def grant(
        self, context: df.DurableOrchestrationContext, snapshot_id: str, seconds: int | None = None
    ) -> Orchestration:
        """Grant read access to ``snapshot_id`` for ``seconds`` (default ``sasMinutes``), waited for."""
        seconds = min(seconds or self.options.sas_minutes * 60, MAX_SAS_SECONDS)
        now = _utc(context.current_utc_datetime)
        deadline = now + timedelta(minutes=self.options.snapshot_timeout_minutes)
        op = yield from self._operate(
            context,
            act.BEGIN_GRANT_ACCESS,
            {"snapshotId": snapshot_id, "durationSeconds": seconds},
            deadline,
            "access grant",
        )
        access = Access(snapshot_id, op, now, seconds)
        self._grants[snapshot_id] = access
        return access

    def fresh(
        self, context: df.DurableOrchestrationContext, snapshot_id: str, work_seconds: int = 0
    ) -> Orchestration:
        """The access to ``snapshot_id``, renewed first (a new grant, :func:`lifetime` of the work) if
        less than ``work_seconds`` plus the renewal margin is left."""
        access = self._grants[snapshot_id]
        if access.left(context.current_utc_datetime) >= work_seconds + renewal_margin(access.seconds):
            return access
        if not context.is_replaying:
            log.info(
                "renewing read access to %s (%.0f s left)",
                snapshot_id,
                access.left(context.current_utc_datetime),
            )
        return (yield from self.grant(context, snapshot_id, lifetime(work_seconds, self.options)))

    def fresh_all(self, context: df.DurableOrchestrationContext) -> Orchestration:
        """Renew every grant that is running out (before an activity that reads through them)."""
        for snapshot_id in list(self._grants):
            yield from self.fresh(context, snapshot_id)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
