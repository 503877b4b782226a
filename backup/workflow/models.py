"""What flows through the orchestrations: run inputs, per-disk jobs, results, records and statuses.

- :class:`RunInput` (with :class:`Selection`, :class:`RunOptions` and its :class:`ChainOptions`): what
  starts a run;
- :class:`DiskJob` (with :class:`DiskRef`): what starts one disk's backup;
- :class:`DiskStatus`: a disk orchestration's custom status, its phase and bytes as they go;
- :class:`DiskResult`: how one disk's backup ended; :class:`RunSummary`: how a run ended;
- :class:`RestorePointRecord`: what a disk orchestration asks the catalog to record.

The orchestrators write them; the catalog, the HTTP status route and the command line read them. They
are JSON in the task hub, stored in plain text, so they hold no secret, and each is rebuilt from JSON
through a validating ``from_json``: an input that did not come from our own starter (a hand-made
``start_new``, an old history) fails with a clear error naming the field instead of half-running.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from backup.azure.compute import copies_in_background
from backup.errors import InvalidInputError
from backup.workflow.retries import ActivityRetry

SelectionKind = Literal["configured", "diskIds", "tag", "resourceGroup"]
Outcome = Literal["Succeeded", "Failed"]
RunStatus = Literal["Running", "Succeeded", "PartiallySucceeded", "Failed"]
Trigger = Literal["schedule", "http", "cli"]
#: How a restore point's data got into the backup blob.
KINDS = ("full", "incremental")

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


MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class ChainOptions:
    """How the incremental chain copies and checks a disk (see :mod:`backup.workflow.chain`).

    The first three come from settings; the rest bound each activity's work and are fixed here (tests
    make them small to exercise paging and batching on small disks).
    """

    full_copy_percent: int = 60  # a diff above this share of the disk is copied whole instead
    verify_sample_mib: int = 64  # bytes of content compared by SHA-256 per disk-night; 0: none
    writes_per_blob: int = 8  # Put Page From URL calls in flight into one backup blob
    batch_bytes: int = 256 * MiB  # at most this much written by one apply activity
    batch_requests: int = 1000  # and at most this many write or clear requests
    segment_bytes: int = 32 * GiB  # the disk is diffed and verified in segments of this size
    diff_page_size: int | None = None  # ranges per Get Page Ranges answer (None: the service's 10,000)
    diff_pages_per_call: int = 5  # answers one listing activity reads before handing back its marker

    def to_json(self) -> dict[str, Any]:
        """The JSON form carried in orchestration inputs."""
        return {
            "fullCopyPercent": self.full_copy_percent,
            "verifySampleMiB": self.verify_sample_mib,
            "writesPerBlob": self.writes_per_blob,
            "batchBytes": self.batch_bytes,
            "batchRequests": self.batch_requests,
            "segmentBytes": self.segment_bytes,
            "diffPageSize": self.diff_page_size,
            "diffPagesPerCall": self.diff_pages_per_call,
        }

    @classmethod
    def from_json(cls, data: Any) -> ChainOptions:
        """Rebuild from :meth:`to_json`'s output; absent fields take their defaults (older inputs)."""
        if data is None:
            return cls()
        where = "options.chain"
        data = _object(data, where)
        default = cls()

        def number(key: str, low: int, high: int, fallback: int) -> int:
            return fallback if data.get(key) is None else _int(data, key, where, low, high)

        segment = number("segmentBytes", MiB, 1 << 43, default.segment_bytes)
        if segment % 512:
            raise InvalidInputError(f"{where}.segmentBytes", "must be a multiple of 512")
        return cls(
            full_copy_percent=number("fullCopyPercent", 1, 100, default.full_copy_percent),
            verify_sample_mib=number("verifySampleMiB", 0, 1 << 20, default.verify_sample_mib),
            writes_per_blob=number("writesPerBlob", 1, 64, default.writes_per_blob),
            batch_bytes=number("batchBytes", 4 * MiB, 4 * GiB, default.batch_bytes),
            batch_requests=number("batchRequests", 1, 100_000, default.batch_requests),
            segment_bytes=segment,
            diff_page_size=None
            if data.get("diffPageSize") is None
            else _int(data, "diffPageSize", where, 1, 10_000),
            diff_pages_per_call=number("diffPagesPerCall", 1, 100, default.diff_pages_per_call),
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
    #: How long a Premium SSD v2 / Ultra snapshot may take to finish its background copy.
    snapshot_copy_timeout_minutes: int = 720
    force_full: bool = False  # options.kind "full": copy whole tonight whatever the chain could do
    chain: ChainOptions = field(default_factory=ChainOptions)
    #: How long a snapshot's read access lasts for work that renews it (backup.workflow.access).
    sas_minutes: int = 120
    #: How idempotent activities are retried after a transient failure (backup.workflow.retries).
    retry: ActivityRetry = field(default_factory=ActivityRetry)

    @property
    def sas_duration_seconds(self) -> int:
        """How long a snapshot's read access lasts for work that renews it (``sasMinutes``); a Copy
        Blob's grant lasts longer when its copy is expected to (``backup.workflow.access.copy_seconds``)."""
        return self.sas_minutes * 60

    @property
    def writer_stale_minutes(self) -> int:
        """After how long a backup blob's writer lease counts as abandoned and may be broken.

        Longer than any disk orchestration can run: every wait it makes has a deadline (snapshot, grants,
        copy with its restarts, revokes, deletes), so a lease older than all of them together, with an
        hour for retried activities, is a dead run's.
        """
        return self.copy_timeout_minutes + 8 * self.snapshot_timeout_minutes + 60

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
            "snapshotCopyTimeoutMinutes": self.snapshot_copy_timeout_minutes,
            "forceFull": self.force_full,
            "chain": self.chain.to_json(),
            "sasMinutes": self.sas_minutes,
            "retry": self.retry.to_json(),
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
            # Absent from the inputs of runs started before it existed: those get the default.
            snapshot_copy_timeout_minutes=(
                _int(data, "snapshotCopyTimeoutMinutes", "options", 1, 10080)
                if data.get("snapshotCopyTimeoutMinutes") is not None
                else cls.snapshot_copy_timeout_minutes
            ),
            force_full=_bool(data, "forceFull", "options") if "forceFull" in data else False,
            chain=ChainOptions.from_json(data.get("chain")),
            # Both absent from the inputs of runs started before they existed: those get the defaults.
            sas_minutes=(
                _int(data, "sasMinutes", "options", 5, 1440)
                if data.get("sasMinutes") is not None
                else cls.sas_minutes
            ),
            retry=ActivityRetry.from_json(data.get("retry")),
        )


@dataclass(frozen=True)
class RunInput:
    """The input of the run orchestrator."""

    trigger: Trigger
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
    sku: str | None = None  # sku.name: PremiumV2_LRS, Standard_LRS, ...; None when not known

    @property
    def snapshot_may_copy_in_background(self) -> bool:
        """Whether this disk's snapshot may need to finish a background copy before it can be read.

        Yes for Premium SSD v2 and Ultra disks, and for a disk whose SKU is not known (its snapshot says);
        no for the other SKUs, whose snapshots Azure documents as readable at once.
        """
        return self.sku is None or copies_in_background(self.sku)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "resourceGroup": self.resource_group,
            "subscriptionId": self.subscription_id,
            "location": self.location,
            "sizeBytes": self.size_bytes,
        }
        if self.sku is not None:
            data["sku"] = self.sku
        return data

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
            sku=_optional_str(data, "sku", "disk") or None,
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
    status: Outcome
    phase: str  # the last phase reached ("done" on success)
    reason: str | None = None  # a failure's message for a person (no internals)
    snapshot_id: str | None = None
    blob_url: str | None = None  # without query: never a SAS
    size_bytes: int | None = None
    bytes_copied: int | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    code: str | None = None  # a failure's code (backup.failures.FailureCode)
    kind: str | None = None  # "full" or "incremental": how tonight's data got into the backup blob
    bytes_moved: int | None = None  # bytes written into the backup blob tonight
    bytes_changed: int | None = None  # bytes in the diff's changed ranges (full: all populated bytes)
    blob_snapshot: str | None = None  # the restore point: this blob snapshot of blob_url
    full_copy_reason: str | None = None  # why tonight was a full copy (None for incremental)
    started_at: str | None = None  # ISO 8601 UTC: when the disk's backup started and ended
    finished_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form (camelCase keys)."""
        data = asdict(self)
        return {
            "diskId": data["disk_id"],
            "diskName": data["disk_name"],
            "status": data["status"],
            "phase": data["phase"],
            "code": data["code"],
            "reason": data["reason"],
            "snapshotId": data["snapshot_id"],
            "blobUrl": data["blob_url"],
            "sizeBytes": data["size_bytes"],
            "bytesCopied": data["bytes_copied"],
            "warnings": list(self.warnings),
            "kind": self.kind,
            "bytesMoved": self.bytes_moved,
            "bytesChanged": self.bytes_changed,
            "blobSnapshot": self.blob_snapshot,
            "fullCopyReason": self.full_copy_reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "disk result") -> DiskResult:
        """Rebuild and validate (a result that is not an object or lacks its disk fails, naming it)."""
        data = _object(data, where)
        status = data.get("status")
        if status not in ("Succeeded", "Failed"):
            raise InvalidInputError(f"{where}.status", f"{status!r} is not Succeeded or Failed")
        if data.get("kind") not in (None, *KINDS):
            raise InvalidInputError(f"{where}.kind", f"{data.get('kind')!r} is not one of {', '.join(KINDS)}")
        return cls(
            disk_id=_str(data, "diskId", where),
            disk_name=_str(data, "diskName", where),
            status=status,
            phase=_str(data, "phase", where),
            reason=_optional_str(data, "reason", where),
            snapshot_id=_optional_str(data, "snapshotId", where),
            blob_url=_optional_str(data, "blobUrl", where),
            size_bytes=_optional_int(data, "sizeBytes", where),
            bytes_copied=_optional_int(data, "bytesCopied", where),
            warnings=_str_tuple(data, "warnings", where),
            code=_optional_code(data, "code", where),
            kind=_optional_str(data, "kind", where),
            bytes_moved=_optional_int(data, "bytesMoved", where),
            bytes_changed=_optional_int(data, "bytesChanged", where),
            blob_snapshot=_optional_str(data, "blobSnapshot", where),
            full_copy_reason=_optional_str(data, "fullCopyReason", where),
            started_at=_time(data, "startedAt", where) if data.get("startedAt") is not None else None,
            finished_at=_time(data, "finishedAt", where) if data.get("finishedAt") is not None else None,
        )

    @classmethod
    def failed(cls, disk: DiskRef, phase: str, reason: str, code: str) -> DiskResult:
        """A disk that failed in ``phase`` with failure ``code`` for ``reason``."""
        return cls(disk.id, disk.name, "Failed", phase, reason=reason, code=code)


@dataclass(frozen=True)
class DiskStatus:
    """A disk orchestration's custom status: where its backup is, as it goes (no secret, small)."""

    disk: str
    phase: str
    bytes_copied: int = 0
    bytes_total: int = 0
    reason: str | None = None
    #: A Premium SSD v2 / Ultra snapshot's background copy, in percent, once the disk waited for one.
    snapshot_copy_percent: float | None = None
    kind: str | None = None  # once decided: "full" or "incremental"

    def to_json(self) -> dict[str, Any]:
        """JSON form (what ``set_custom_status`` stores)."""
        data: dict[str, Any] = {
            "disk": self.disk,
            "phase": self.phase,
            "bytesCopied": self.bytes_copied,
            "bytesTotal": self.bytes_total,
        }
        if self.reason is not None:
            data["reason"] = self.reason
        if self.snapshot_copy_percent is not None:
            data["snapshotCopyPercent"] = self.snapshot_copy_percent
        if self.kind is not None:
            data["kind"] = self.kind
        return data

    @classmethod
    def from_json(cls, data: Any) -> DiskStatus:
        """Rebuild and validate."""
        where = "disk status"
        data = _object(data, where)
        return cls(
            disk=_str(data, "disk", where),
            phase=_str(data, "phase", where),
            bytes_copied=_optional_int(data, "bytesCopied", where) or 0,
            bytes_total=_optional_int(data, "bytesTotal", where) or 0,
            reason=_optional_str(data, "reason", where),
            snapshot_copy_percent=_optional_percent(data, "snapshotCopyPercent", where),
            kind=_optional_str(data, "kind", where),
        )

    @classmethod
    def read(cls, custom_status: Any) -> DiskStatus | None:
        """A stored custom status, or ``None`` when there is none yet or it is not ours."""
        try:
            return cls.from_json(custom_status)
        except InvalidInputError:
            return None


@dataclass(frozen=True)
class RunSummary:
    """A run's catalog record and, once it ended, the run orchestrator's output."""

    run_id: str
    trigger: Trigger
    selection: Selection
    started_at: str  # ISO 8601 UTC
    status: RunStatus
    finished_at: str | None = None
    disk_count: int = 0
    succeeded: int = 0
    failed: int = 0
    reason: str | None = None
    disks: tuple[DiskResult, ...] = ()
    warnings: tuple[str, ...] = ()
    code: str | None = None  # why the run itself failed (backup.failures.FailureCode), with reason

    def to_json(self) -> dict[str, Any]:
        """JSON form (camelCase keys)."""
        data: dict[str, Any] = {
            "runId": self.run_id,
            "trigger": self.trigger,
            "selection": self.selection.to_json(),
            "startedAt": self.started_at,
            "status": self.status,
            "finishedAt": self.finished_at,
            "diskCount": self.disk_count,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "disks": [disk.to_json() for disk in self.disks],
        }
        if self.code is not None:
            data["code"] = self.code
        if self.reason is not None:
            data["reason"] = self.reason
        if self.warnings:
            data["warnings"] = list(self.warnings)
        return data

    @classmethod
    def from_json(cls, data: Any) -> RunSummary:
        """Rebuild and validate."""
        where = "run"
        data = _object(data, where)
        run_id = _str(data, "runId", where)
        status = data.get("status")
        if status not in ("Running", "Succeeded", "PartiallySucceeded", "Failed"):
            raise InvalidInputError(f"{where}.status", f"{status!r} is not a run status")
        trigger = data.get("trigger")
        if trigger not in ("schedule", "http", "cli"):
            raise InvalidInputError(f"{where}.trigger", f"{trigger!r} is not one of schedule, http, cli")
        disks = data.get("disks", [])
        if not isinstance(disks, list):
            raise InvalidInputError(f"{where}.disks", "must be a list")
        return cls(
            run_id=run_id,
            trigger=trigger,
            selection=Selection.from_json(data.get("selection")),
            started_at=_time(data, "startedAt", where),
            status=status,
            finished_at=_time(data, "finishedAt", where) if data.get("finishedAt") is not None else None,
            disk_count=_optional_int(data, "diskCount", where) or 0,
            succeeded=_optional_int(data, "succeeded", where) or 0,
            failed=_optional_int(data, "failed", where) or 0,
            reason=_optional_str(data, "reason", where),
            disks=tuple(DiskResult.from_json(d, f"{where}.disks[{i}]") for i, d in enumerate(disks)),
            warnings=_str_tuple(data, "warnings", where),
            code=_optional_code(data, "code", where),
        )

    @classmethod
    def read(cls, output: Any) -> RunSummary | None:
        """A run orchestration's output, or ``None`` when it has none (yet) or it is not a summary."""
        try:
            return cls.from_json(output)
        except InvalidInputError:
            return None


@dataclass(frozen=True)
class RestorePointRecord:
    """What the disk orchestrator asks the catalog to record: a restore point, or a failed attempt."""

    run_id: str
    run_started_at: str  # ISO 8601 UTC
    disk_id: str
    container: str
    blob_name: str
    size_bytes: int
    started_at: str
    finished_at: str
    status: Outcome
    kind: str = "full"
    bytes_copied: int = 0
    snapshot_id: str | None = None
    copy_id: str | None = None
    reason: str | None = None
    code: str | None = None  # a failed attempt's failure code (backup.failures.FailureCode)
    blob_snapshot: str | None = None  # the restore point is this blob snapshot of the blob
    bytes_moved: int | None = None
    bytes_changed: int | None = None
    ranges: int | None = None  # ranges the diff listed (full: populated ranges)
    requests: int | None = None  # write and clear requests (full: the one Copy Blob)
    full_copy_reason: str | None = None
    base_snapshot_id: str | None = None  # the managed snapshot an incremental night diffed against
    blob_etag: str | None = None  # the backup blob's ETag right after the restore point was taken

    def to_json(self) -> dict[str, Any]:
        """JSON form (camelCase keys): the ``record_restore_point`` activity's input."""
        return {
            "runId": self.run_id,
            "runStartedAt": self.run_started_at,
            "diskId": self.disk_id,
            "container": self.container,
            "blobName": self.blob_name,
            "sizeBytes": self.size_bytes,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "status": self.status,
            "kind": self.kind,
            "bytesCopied": self.bytes_copied,
            "snapshotId": self.snapshot_id,
            "copyId": self.copy_id,
            "reason": self.reason,
            "code": self.code,
            "blobSnapshot": self.blob_snapshot,
            "bytesMoved": self.bytes_moved,
            "bytesChanged": self.bytes_changed,
            "ranges": self.ranges,
            "requests": self.requests,
            "fullCopyReason": self.full_copy_reason,
            "baseSnapshotId": self.base_snapshot_id,
            "blobEtag": self.blob_etag,
        }

    @classmethod
    def from_json(cls, data: Any) -> RestorePointRecord:
        """Rebuild and validate."""
        where = "restore point"
        data = _object(data, where)
        status = data.get("status")
        if status not in ("Succeeded", "Failed"):
            raise InvalidInputError(f"{where}.status", f"{status!r} is not Succeeded or Failed")
        return cls(
            disk_id=_str(data, "diskId", where),
            run_id=_str(data, "runId", where),
            run_started_at=_time(data, "runStartedAt", where),
            container=_str(data, "container", where),
            blob_name=_str(data, "blobName", where),
            size_bytes=_optional_int(data, "sizeBytes", where) or 0,
            started_at=_time(data, "startedAt", where),
            finished_at=_time(data, "finishedAt", where),
            status=status,
            kind=_kind(data, where),
            bytes_copied=_optional_int(data, "bytesCopied", where) or 0,
            snapshot_id=_optional_str(data, "snapshotId", where),
            copy_id=_optional_str(data, "copyId", where),
            reason=_optional_str(data, "reason", where),
            code=_optional_code(data, "code", where),
            blob_snapshot=_optional_str(data, "blobSnapshot", where),
            bytes_moved=_optional_int(data, "bytesMoved", where),
            bytes_changed=_optional_int(data, "bytesChanged", where),
            ranges=_optional_int(data, "ranges", where),
            requests=_optional_int(data, "requests", where),
            full_copy_reason=_optional_str(data, "fullCopyReason", where),
            base_snapshot_id=_optional_str(data, "baseSnapshotId", where),
            blob_etag=_optional_str(data, "blobEtag", where),
        )


def iso(when: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a Z: how every time in these records is written.

    The orchestration clock is UTC, aware or naive (the SDK hands out naive UTC datetimes).
    """
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_iso(value: str, field: str) -> datetime:
    """An ISO 8601 time with its zone (what :func:`iso` writes, or any offset) as an aware UTC datetime.

    :class:`~backup.errors.InvalidInputError` names ``field`` if it is no such time.
    """
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(field, f"{value[:40]!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise InvalidInputError(field, "must carry a time zone")
    return parsed.astimezone(UTC)


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


def _kind(data: dict[str, Any], where: str) -> str:
    value = data.get("kind")
    if value not in KINDS:
        raise InvalidInputError(f"{where}.kind", f"{value!r:.40} is not one of {', '.join(KINDS)}")
    return str(value)


def _bool(data: dict[str, Any], key: str, where: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise InvalidInputError(f"{where}.{key}", "must be true or false")
    return value


def _time(data: dict[str, Any], key: str, where: str) -> str:
    """An ISO 8601 time with its zone (``...Z``), kept as written."""
    value = _str(data, key, where)
    parse_iso(value, f"{where}.{key}")
    return value


def _optional_str(data: dict[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{where}.{key}", "must be a string or null")
    return value


def _optional_code(data: dict[str, Any], key: str, where: str) -> str | None:
    """A failure code: a short word of letters (``SnapshotFailed``), or null."""
    value = _optional_str(data, key, where)
    if value is not None and not (value.isascii() and value.isalpha() and len(value) <= 40):
        raise InvalidInputError(f"{where}.{key}", "must be a failure code (letters only) or null")
    return value


def _optional_int(data: dict[str, Any], key: str, where: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"{where}.{key}", "must be a whole number, 0 or more, or null")
    return value


def _optional_percent(data: dict[str, Any], key: str, where: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise InvalidInputError(f"{where}.{key}", "must be a number from 0 to 100, or null")
    return float(value)


def _str_tuple(data: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInputError(f"{where}.{key}", "must be a list of strings")
    return tuple(value)


def _int(data: dict[str, Any], key: str, where: str, low: int, high: int) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInputError(f"{where}.{key}", f"must be a whole number from {low} to {high}")
    return value
