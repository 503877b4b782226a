"""A run's progress at any size, read from a bounded number of Durable status queries.

A run of a thousand disks has a thousand disk orchestrations; asking each for its status on every look
does not scale. What the HTTP status route and ``diskbackup status`` read instead:

1. the run orchestration's status (its custom status counts its disks and lanes; its output, once it
   ended, is the :class:`~backup.workflow.models.RunSummary`);
2. its lanes (at most ``maxParallel``, 50), whose custom statuses count the disks each has finished
   (:func:`backup.workflow.orchestrators.lane_status`);
3. its disk orchestrations that are running (at most one per lane), for the phase each is in;
4. its waits that are running (at most one per lane: ``backup.workflow.watch``), for the progress of
   the copies under way: a copy watch continues as new after every poll, so its custom status, not
   its disk's, has the copy's bytes, and a readiness watch the percent of a snapshot's background copy
   (:func:`with_copy_progress`);
5. one page of its disk orchestrations, in index order, through the instance query
   (``instanceIdPrefix`` + ``top`` + a continuation token).

:func:`phase_counts` turns 1-3 into counts by phase; :func:`disk_view` reads one disk orchestration's
status. Both take the status JSON of the Durable HTTP API (``name``, ``instanceId``, ``runtimeStatus``,
``customStatus``, ``output``), which the local host renders the same way. Continuation tokens are
wrapped (:func:`wrap_token`) so that a token is bound to its run and checked before it is used.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from backup.errors import InvalidInputError
from backup.workflow.models import DiskResult, DiskStatus, RunSummary, sub_orchestration_id
from backup.workflow.watch import copy_watch_id, readiness_watch_id

__all__ = [
    "ACTIVE_STATUSES",
    "MAX_LANES",
    "DiskView",
    "disk_prefix",
    "disk_view",
    "lane_prefix",
    "phase_counts",
    "unwrap_token",
    "wait_prefix",
    "with_copy_progress",
    "wrap_token",
]

#: The most lanes a run has (``maxParallel`` is at most 50): a query for them fits one page.
MAX_LANES = 50
#: Runtime statuses of a disk orchestration that has started and not ended.
ACTIVE_STATUSES = ("Pending", "Running", "ContinuedAsNew")
#: Counts always reported, whatever the run's state (phases appear as disks reach them).
BASE_COUNTS = ("waiting", "succeeded", "failed")
MAX_TOKEN_LENGTH = 2048
_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_TOKEN_LENGTH}}}")


def disk_prefix(run_id: str) -> str:
    """The instance-id prefix of the run's disk orchestrations (``{run}-disk-``)."""
    return f"{run_id}-disk-"


def lane_prefix(run_id: str) -> str:
    """The instance-id prefix of the run's lane orchestrations (``{run}-lane-``)."""
    return f"{run_id}-lane-"


def wait_prefix(run_id: str) -> str:
    """The instance-id prefix of the run's waits (``{run}-wait-``; disk 3's copy watch is
    ``{run}-wait-0003-copy``)."""
    return f"{run_id}-wait-"  # what backup.workflow.watch.waits_prefix gives a disk of the run


@dataclass(frozen=True)
class DiskView:
    """One disk of a run, as its orchestration's status shows it."""

    index: int
    instance_id: str
    runtime_status: str
    name: str | None = None
    phase: str = "starting"
    bytes_copied: int = 0
    bytes_total: int = 0
    result: DiskResult | None = None
    snapshot_copy_percent: float | None = None  # a Premium SSD v2 / Ultra snapshot's background copy
    kind: str | None = None  # once the night is decided: "full" or "incremental"

    def to_json(self) -> dict[str, Any]:
        """The JSON a status page lists per disk."""
        view: dict[str, Any] = {
            "index": self.index,
            "instanceId": self.instance_id,
            "runtimeStatus": self.runtime_status,
            "disk": self.name,
            "phase": self.phase,
            "bytesCopied": self.bytes_copied,
            "bytesTotal": self.bytes_total,
        }
        if self.snapshot_copy_percent is not None:
            view["snapshotCopyPercent"] = self.snapshot_copy_percent
        if self.kind is not None:
            view["kind"] = self.kind
        if self.result is not None:
            view["result"] = self.result.to_json()
            view["kind"] = self.result.kind
            view["bytesMoved"] = self.result.bytes_moved
        return view


def disk_view(run_id: str, status: Mapping[str, Any]) -> DiskView:
    """A disk orchestration's status JSON as a :class:`DiskView` (its index from its instance id)."""
    instance_id = str(status.get("instanceId", ""))
    suffix = instance_id[len(disk_prefix(run_id)) :]
    index = int(suffix) if instance_id.startswith(disk_prefix(run_id)) and suffix.isdigit() else -1
    view = DiskView(index=index, instance_id=instance_id, runtime_status=str(status.get("runtimeStatus")))
    custom = DiskStatus.read(status.get("customStatus"))
    if custom is not None:
        view = replace(
            view,
            name=custom.disk,
            phase=custom.phase,
            bytes_copied=custom.bytes_copied,
            bytes_total=custom.bytes_total,
            snapshot_copy_percent=custom.snapshot_copy_percent,
            kind=custom.kind,
        )
    if view.runtime_status == "Completed":
        try:
            result = DiskResult.from_json(status.get("output"))
        except InvalidInputError:
            result = None
        if result is not None:
            phase = "done" if result.status == "Succeeded" else "failed"
            return replace(view, name=result.disk_name, phase=phase, result=result)
    return view


def with_copy_progress(
    run_id: str, views: Iterable[DiskView], waits: Iterable[Mapping[str, Any]]
) -> list[DiskView]:
    """``views``, each disk that is copying with the bytes its copy watch reports, and each disk whose
    snapshot finishes its background copy with the percent its readiness watch reports (``waits``:
    status JSON of the run's waits; any that is not such a watch of this run is ignored)."""
    progress: dict[int, tuple[int, int]] = {}
    percents: dict[int, float] = {}
    for wait in waits:
        instance_id = str(wait.get("instanceId", ""))
        custom = wait.get("customStatus")
        if not isinstance(custom, Mapping):
            continue
        index = _watch_index(run_id, instance_id, "-copy", copy_watch_id)
        if index is not None:
            copied, total = _count(custom.get("bytesCopied")), _count(custom.get("bytesTotal"))
            if total:
                progress[index] = (min(copied, total), total)
            continue
        index = _watch_index(run_id, instance_id, "-snapshot-copy", readiness_watch_id)
        percent = custom.get("snapshotCopyPercent")
        if index is not None and isinstance(percent, int | float) and not isinstance(percent, bool):
            percents[index] = min(max(float(percent), 0.0), 100.0)
    shown = []
    for view in views:
        if view.phase == "copy" and view.index in progress:
            view = replace(view, bytes_copied=progress[view.index][0], bytes_total=progress[view.index][1])
        elif view.phase == "snapshot-copy" and view.index in percents:
            view = replace(view, snapshot_copy_percent=percents[view.index])
        shown.append(view)
    return shown


def _watch_index(run_id: str, instance_id: str, suffix: str, name: Callable[[str], str]) -> int | None:
    """The index of the disk whose watch (named by ``name`` from the disk's id) ``instance_id`` is
    (``None``: not one of this run's)."""
    middle = instance_id.removeprefix(wait_prefix(run_id)).removesuffix(suffix)
    if not middle.isdigit() or name(sub_orchestration_id(run_id, int(middle))) != instance_id:
        return None
    return int(middle)


def phase_counts(
    run_custom_status: Any,
    summary: RunSummary | None,
    lanes: Iterable[Mapping[str, Any]],
    active: Iterable[DiskView],
) -> dict[str, int]:
    """How many of the run's disks are in each phase: waiting, each phase of a disk at work,
    succeeded, failed (and ``total``).

    A finished run counts from its summary. A running one counts finished disks from its lanes' custom
    statuses and the phase of each disk at work from its own status; the rest are waiting. A disk that
    has just ended may be counted as waiting for a moment, until its lane has taken its result.
    """
    if summary is not None:
        counts = dict.fromkeys(BASE_COUNTS, 0)
        counts.update(succeeded=summary.succeeded, failed=summary.failed, total=summary.disk_count)
        return counts
    custom = run_custom_status if isinstance(run_custom_status, Mapping) else {}
    total = custom.get("disks")
    total = total if isinstance(total, int) and total >= 0 else 0
    counts = dict.fromkeys(BASE_COUNTS, 0)
    for lane in lanes:
        lane_custom = lane.get("customStatus")
        if isinstance(lane_custom, Mapping):
            counts["succeeded"] += _count(lane_custom.get("succeeded"))
            counts["failed"] += _count(lane_custom.get("failed"))
    for disk in active:
        # A disk whose last phase is set but whose lane has not yet taken its result.
        phase = {"done": "succeeded"}.get(disk.phase, disk.phase)
        counts[phase] = counts.get(phase, 0) + 1
    counts["waiting"] = max(0, total - sum(counts.values()))
    counts["total"] = total
    return counts


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


# -- continuation tokens ------------------------------------------------------------------------------


def wrap_token(run_id: str, durable_token: str) -> str:
    """A page token for callers: the Durable query's continuation token, bound to its run."""
    payload = json.dumps({"run": run_id, "token": durable_token}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def unwrap_token(run_id: str, token: str, field: str = "continuationToken") -> str:
    """The Durable continuation token inside a page token of run ``run_id``; a 400 naming ``field``
    for anything else (not ours, another run's, malformed)."""
    problem = "is not a continuation token this run's status gave out"
    if not _TOKEN.fullmatch(token or ""):
        raise InvalidInputError(field, problem)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidInputError(field, problem) from None
    if (
        not isinstance(data, dict)
        or data.get("run") != run_id
        or not isinstance(data.get("token"), str)
        or not data["token"]
    ):
        raise InvalidInputError(field, problem)
    return str(data["token"])
