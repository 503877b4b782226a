"""What flows through the orchestrations: run inputs, per-disk jobs, per-disk results, run summaries.

Orchestration inputs and outputs are JSON and stored in plain text by the task hub, so these types hold
no secret, and every one of them is rebuilt from JSON through a validating ``from_json``: an input that
did not come from our own starter (a hand-made ``start_new``, an old history) fails with a clear error
instead of half-running.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from backup.errors import InvalidInputError

SelectionKind = Literal["configured", "diskIds", "tag", "resourceGroup"]
DiskStatus = Literal["Succeeded", "Failed"]
RunStatus = Literal["Running", "Succeeded", "PartiallySucceeded", "Failed"]

#: Registered names of the orchestrators and activities (strings: ``call_activity`` needs names).
RUN_ORCHESTRATOR = "backup_run"
LANE_ORCHESTRATOR = "backup_lane"
DISK_ORCHESTRATOR = "backup_disk"


@dataclass(frozen=True)
class Selection:
    """Which disks a run backs up: explicit IDs, a tag, a resource group, or the configured default."""

    kind: SelectionKind
    disk_ids: tuple[str, ...] = ()
    tag_name: str | None = None
    tag_value: str | None = None
    resource_group: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form carried in the run's input."""
        if self.kind == "diskIds":
            return {"kind": "diskIds", "diskIds": list(self.disk_ids)}
        if self.kind == "tag":
            return {"kind": "tag", "name": self.tag_name, "value": self.tag_value}
        if self.kind == "resourceGroup":
            return {"kind": "resourceGroup", "resourceGroup": self.resource_group}
        return {"kind": "configured"}

    @classmethod
    def from_json(cls, data: Any) -> Selection:
        """Rebuild from :meth:`to_json`'s output, validating shape and types."""
        data = _object(data, "selection")
        kind = data.get("kind")
        if kind == "diskIds":
            ids = data.get("diskIds")
            if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
                raise InvalidInputError("selection.diskIds", "must be a non-empty list of strings")
            return cls(kind="diskIds", disk_ids=tuple(ids))
        if kind == "tag":
            name, value = data.get("name"), data.get("value")
            if not isinstance(name, str) or not name or not isinstance(value, str):
                raise InvalidInputError("selection", "a tag selection needs string 'name' and 'value'")
            return cls(kind="tag", tag_name=name, tag_value=value)
        if kind == "resourceGroup":
            group = data.get("resourceGroup")
            if not isinstance(group, str) or not group:
                raise InvalidInputError("selection.resourceGroup", "must be a non-empty string")
            return cls(kind="resourceGroup", resource_group=group)
        if kind == "configured":
            return cls(kind="configured")
        raise InvalidInputError(
            "selection.kind", f"{kind!r} is not one of configured, diskIds, tag, resourceGroup"
        )


@dataclass(frozen=True)
class RunOptions:
    """How a run backs each disk up, and how patiently it waits.

    Chosen by the starter from settings and the request; carried in the run's input so that the
    orchestrators are pure functions of their input (they never read settings).
    """

    container: str
    keep_snapshot: bool = False
    incremental_snapshot: bool = True
    max_parallel: int = 4
    poll_initial_seconds: int = 5
    poll_max_seconds: int = 60
    snapshot_timeout_minutes: int = 60
    copy_timeout_minutes: int = 1440

    @property
    def sas_duration_seconds(self) -> int:
        """How long the snapshot's read access lasts: the copy's deadline plus an hour of slack."""
        return (self.copy_timeout_minutes + 60) * 60

    def to_json(self) -> dict[str, Any]:
        """The JSON form carried in orchestration inputs."""
        return {
            "container": self.container,
            "keepSnapshot": self.keep_snapshot,
            "incrementalSnapshot": self.incremental_snapshot,
            "maxParallel": self.max_parallel,
            "pollInitialSeconds": self.poll_initial_seconds,
            "pollMaxSeconds": self.poll_max_seconds,
            "snapshotTimeoutMinutes": self.snapshot_timeout_minutes,
            "copyTimeoutMinutes": self.copy_timeout_minutes,
        }

    @classmethod
    def from_json(cls, data: Any) -> RunOptions:
        """Rebuild from :meth:`to_json`'s output, validating every field."""
        data = _object(data, "options")
        return cls(
            container=_str(data, "container", "options"),
            keep_snapshot=_bool(data, "keepSnapshot", "options"),
            incremental_snapshot=_bool(data, "incrementalSnapshot", "options"),
            max_parallel=_int(data, "maxParallel", "options", 1, 50),
            poll_initial_seconds=_int(data, "pollInitialSeconds", "options", 1, 3600),
            poll_max_seconds=_int(data, "pollMaxSeconds", "options", 1, 3600),
            snapshot_timeout_minutes=_int(data, "snapshotTimeoutMinutes", "options", 1, 1440),
            copy_timeout_minutes=_int(data, "copyTimeoutMinutes", "options", 1, 20160),
        )


@dataclass(frozen=True)
class RunInput:
    """The input of the run orchestrator."""

    trigger: Literal["schedule", "http", "cli"]
    selection: Selection
    options: RunOptions

    def to_json(self) -> dict[str, Any]:
        """The JSON form passed to ``start_new``."""
        return {
            "trigger": self.trigger,
            "selection": self.selection.to_json(),
            "options": self.options.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> RunInput:
        """Rebuild and validate a run input."""
        data = _object(data, "run input")
        trigger = data.get("trigger")
        if trigger not in ("schedule", "http", "cli"):
            raise InvalidInputError("trigger", f"{trigger!r} is not one of schedule, http, cli")
        return cls(
            trigger=trigger,
            selection=Selection.from_json(data.get("selection")),
            options=RunOptions.from_json(data.get("options")),
        )


@dataclass(frozen=True)
class DiskRef:
    """A disk selected for backup, as the selection activity found it."""

    id: str
    name: str
    resource_group: str
    subscription_id: str
    location: str
    size_bytes: int

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "id": self.id,
            "name": self.name,
            "resourceGroup": self.resource_group,
            "subscriptionId": self.subscription_id,
            "location": self.location,
            "sizeBytes": self.size_bytes,
        }

    @classmethod
    def from_json(cls, data: Any) -> DiskRef:
        """Rebuild and validate."""
        data = _object(data, "disk")
        return cls(
            id=_str(data, "id", "disk"),
            name=_str(data, "name", "disk"),
            resource_group=_str(data, "resourceGroup", "disk"),
            subscription_id=_str(data, "subscriptionId", "disk"),
            location=_str(data, "location", "disk"),
            size_bytes=_int(data, "sizeBytes", "disk", 512, 2**50),
        )


@dataclass(frozen=True)
class DiskJob:
    """The input of the disk orchestrator: one disk of one run."""

    run_id: str
    run_started_at: str  # ISO 8601 UTC; names the blob and orders the catalog
    index: int
    disk: DiskRef
    options: RunOptions

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "runId": self.run_id,
            "runStartedAt": self.run_started_at,
            "index": self.index,
            "disk": self.disk.to_json(),
            "options": self.options.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> DiskJob:
        """Rebuild and validate."""
        data = _object(data, "disk job")
        return cls(
            run_id=_str(data, "runId", "disk job"),
            run_started_at=_str(data, "runStartedAt", "disk job"),
            index=_int(data, "index", "disk job", 0, 10**6),
            disk=DiskRef.from_json(data.get("disk")),
            options=RunOptions.from_json(data.get("options")),
        )


@dataclass(frozen=True)
class DiskResult:
    """How one disk's backup ended: the disk orchestrator's output."""

    disk_id: str
    disk_name: str
    status: DiskStatus
    phase: str  # the last phase reached ("done" on success)
    reason: str | None = None
    snapshot_id: str | None = None
    blob_url: str | None = None  # without query: never a SAS
    size_bytes: int | None = None
    bytes_copied: int | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """JSON form (camelCase keys)."""
        data = asdict(self)
        return {
            "diskId": data["disk_id"],
            "diskName": data["disk_name"],
            "status": data["status"],
            "phase": data["phase"],
            "reason": data["reason"],
            "snapshotId": data["snapshot_id"],
            "blobUrl": data["blob_url"],
            "sizeBytes": data["size_bytes"],
            "bytesCopied": data["bytes_copied"],
            "warnings": list(self.warnings),
        }


def sub_orchestration_id(run_id: str, index: int) -> str:
    """The instance id of the disk orchestration for disk ``index`` of run ``run_id``.

    Deterministic, so the status endpoint can find every disk of a run from the run's id and count.
    """
    return f"{run_id}-disk-{index:04d}"


def lane_id(run_id: str, lane: int) -> str:
    """The instance id of lane ``lane`` of run ``run_id`` (see the run orchestrator)."""
    return f"{run_id}-lane-{lane:02d}"


def run_status(results: list[DiskResult]) -> RunStatus:
    """A finished run's status from its disks' results."""
    failed = sum(1 for r in results if r.status == "Failed")
    if failed == 0:
        return "Succeeded"
    if failed == len(results):
        return "Failed"
    return "PartiallySucceeded"


# -- small validators ---------------------------------------------------------------------------------


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInputError(what, f"must be a JSON object, not {type(data).__name__}")
    return data


def _str(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{where}.{key}", "must be a non-empty string")
    return value


def _bool(data: dict[str, Any], key: str, where: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise InvalidInputError(f"{where}.{key}", "must be true or false")
    return value


def _int(data: dict[str, Any], key: str, where: str, low: int, high: int) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInputError(f"{where}.{key}", f"must be a whole number from {low} to {high}")
    return value
