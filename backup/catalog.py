"""The catalog: every run and every restore point, in one Azure Table.

Two kinds of rows share the table, told apart by their PartitionKey:

- a run: PartitionKey ``run``, RowKey ``{inverted start time}_{run id}``;
- a restore point (one disk backed up by one run, or a failed attempt): PartitionKey
  ``disk_{encoded disk id}`` (the lower-cased disk resource ID through :func:`backup.azure.odata.encode_key`,
  since IDs hold ``/``), RowKey ``{inverted run start time}_{run id}``;
- a restore (a restore point written into a new managed disk, or a restore test): PartitionKey
  ``restore``, RowKey ``{inverted start time}_{restore id}``.

Retention never deletes a restore point's row: it deletes the point's data (its blob snapshot) and marks
the row ``Expired`` (``ExpiredAt``, ``ExpiredReason``), so a person can still see what existed; listings
show expired rows only when asked. A blob snapshot that Azure refuses to delete (a legal hold, an
immutability policy) is kept and its row says why (``PruneHeld``, ``PruneHeldAt``). A restore test
records its verdict on the point it tested (``Verdict``, ``VerifiedAt``, ``VerifyRestoreId``, and the
window chain of a full verification that passed, ``VerifiedDigest``).

A restore point of the incremental chain is a blob snapshot of the disk's one backup blob: its row holds
the blob URL and ``BlobSnapshot`` (the snapshot's timestamp), ``BlobEtag`` (the blob's ETag just after,
to tell cheaply that nothing wrote it since), how the night's data got in (``Kind``
``full`` or ``incremental``, and for a full copy ``FullCopyReason``), ``BytesMoved``, ``BytesChanged``,
``Ranges``, ``Requests`` and the managed snapshots involved. A restore point recorded before the chain
is a whole blob of its own and has no ``BlobSnapshot``; it reads back as before.

The inverted time (``10**15`` minus milliseconds since the epoch, zero-padded) makes the table's natural
ascending key order newest-first, so "a disk's restore points, newest first" and "recent runs" are
single-partition queries that read only as many rows as asked for. Keys are functions of the run and the
disk alone, and writes replace whole rows, so recording the same thing twice leaves one row.

Rows are read back through validating constructors: a row that is not what we wrote (edited by hand,
from another version) is reported as a problem naming the row and the field, never half-used.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from backup.azure.odata import and_, decode_key, encode_key, eq, le, ne
from backup.azure.table import Entity, EntityValue, TableClient, UpsertMode
from backup.errors import InvalidInputError, NotFoundError
from backup.redact import get_logger, redact, strip_query
from backup.workflow.models import (
    KINDS,
    DiskResult,
    RestorePointRecord,
    RunSummary,
    Selection,
    iso,
    parse_iso,
)
from backup.workflow.restore_models import RestoreResult

log = get_logger(__name__)

RUN_PARTITION = "run"
RESTORE_PARTITION = "restore"
_DISK_PARTITION_PREFIX = "disk_"
_INVERT_BASE = 10**15
_RUN_STATUSES = ("Running", "Succeeded", "PartiallySucceeded", "Failed")
_POINT_STATUSES = ("Succeeded", "Failed", "Expired")
_RESTORE_STATUSES = ("Running", "Succeeded", "Failed")
_VERDICTS = ("Passed", "Failed")
_MAX_REASON = 2000
_BLOB_SNAPSHOT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z")

RestorePointStatus = Literal["Succeeded", "Failed", "Expired"]


def parse_time(value: Any, field: str) -> datetime:
    """An aware UTC datetime from a datetime or an ISO 8601 text (``...Z``)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInputError(field, "must carry a time zone")
        return value.astimezone(UTC)
    if not isinstance(value, str):
        raise InvalidInputError(field, "must be an ISO 8601 time")
    return parse_iso(value, field)


def inverted_time(when: datetime) -> str:
    """A key prefix that sorts newer times first."""
    millis = int(when.timestamp() * 1000)
    return f"{_INVERT_BASE - millis:015d}"


def disk_partition(disk_id: str) -> str:
    """The PartitionKey of a disk's restore points."""
    return _DISK_PARTITION_PREFIX + encode_key(disk_id.lower())


@dataclass(frozen=True)
class RunRecord:
    """A run as the catalog keeps it."""

    run_id: str
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    disk_count: int
    succeeded: int
    failed: int
    reason: str | None
    selection: dict[str, Any]
    code: str | None = None  # why the run failed (backup.failures.FailureCode), with reason

    @property
    def row_key(self) -> str:
        """This run's RowKey."""
        return f"{inverted_time(self.started_at)}_{self.run_id}"

    @classmethod
    def from_summary(cls, summary: RunSummary) -> RunRecord:
        """From the run orchestrator's summary (a running or a finished run)."""
        return cls(
            run_id=summary.run_id,
            trigger=summary.trigger,
            status=summary.status,
            started_at=parse_time(summary.started_at, "run.startedAt"),
            finished_at=parse_time(summary.finished_at, "run.finishedAt") if summary.finished_at else None,
            disk_count=summary.disk_count,
            succeeded=summary.succeeded,
            failed=summary.failed,
            reason=redact(summary.reason)[:_MAX_REASON] if summary.reason else None,
            selection=summary.selection.to_json(),
            code=summary.code,
        )

    def properties(self) -> dict[str, EntityValue]:
        """The row's properties."""
        props: dict[str, EntityValue] = {
            "RunId": self.run_id,
            "Trigger": self.trigger,
            "Status": self.status,
            "StartedAt": self.started_at,
            "DiskCount": self.disk_count,
            "Succeeded": self.succeeded,
            "Failed": self.failed,
            "Selection": json.dumps(self.selection, sort_keys=True),
        }
        if self.finished_at is not None:
            props["FinishedAt"] = self.finished_at
        if self.reason:
            props["Reason"] = self.reason
        if self.code:
            props["Code"] = self.code
        return props

    @classmethod
    def from_entity(cls, entity: Entity) -> RunRecord:
        """Read a run row back; :class:`InvalidInputError` names the row and the field that is wrong."""
        where = f"catalog row {entity.partition_key}/{entity.row_key}"
        p = entity.properties
        status = p.get("Status")
        if status not in _RUN_STATUSES:
            raise InvalidInputError(f"{where}.Status", f"{status!r} is not a run status")
        try:
            selection = json.loads(str(p.get("Selection", "{}")))
        except json.JSONDecodeError:
            raise InvalidInputError(f"{where}.Selection", "is not JSON") from None
        record = cls(
            run_id=_prop_text(p, "RunId", where),
            trigger=_prop_text(p, "Trigger", where),
            status=str(status),
            started_at=_prop_time(p, "StartedAt", where),
            finished_at=_prop_time(p, "FinishedAt", where) if "FinishedAt" in p else None,
            disk_count=_prop_int(p, "DiskCount", where),
            succeeded=_prop_int(p, "Succeeded", where),
            failed=_prop_int(p, "Failed", where),
            reason=_prop_optional_text(p, "Reason", where),
            selection=selection if isinstance(selection, dict) else {},
            code=_prop_optional_text(p, "Code", where),
        )
        if record.row_key != entity.row_key:
            raise InvalidInputError(f"{where}.RowKey", "does not match the run's start time and id")
        return record

    def to_json(self) -> dict[str, Any]:
        """For the HTTP API and the CLI."""
        return {
            "runId": self.run_id,
            "trigger": self.trigger,
            "status": self.status,
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at) if self.finished_at else None,
            "diskCount": self.disk_count,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "code": self.code,
            "reason": self.reason,
            "selection": self.selection,
        }


@dataclass(frozen=True)
class RestorePoint:
    """One disk's backup by one run (``status`` Succeeded), or a failed attempt (with ``reason``)."""

    disk_id: str
    run_id: str
    run_started_at: datetime
    snapshot_id: str | None
    blob_url: str  # never with a query: no SAS
    size_bytes: int
    bytes_copied: int
    kind: str
    started_at: datetime
    finished_at: datetime
    status: RestorePointStatus
    reason: str | None
    copy_id: str | None
    code: str | None = None  # a failed attempt's failure code (backup.failures.FailureCode)
    blob_snapshot: str | None = None  # None: a whole blob recorded before the chain
    bytes_moved: int | None = None
    bytes_changed: int | None = None
    ranges: int | None = None
    requests: int | None = None
    full_copy_reason: str | None = None
    base_snapshot_id: str | None = None
    blob_etag: str | None = None  # the backup blob's ETag just after this point: unchanged since if equal
    expired_at: datetime | None = None  # retention deleted its data then (status Expired)
    expired_reason: str | None = None
    prune_held: str | None = None  # why its data could not be deleted (a legal hold, a policy)
    prune_held_at: datetime | None = None
    verdict: str | None = None  # the last restore test's: Passed or Failed
    verified_at: datetime | None = None
    verify_restore_id: str | None = None
    verified_digest: str | None = None  # the window chain of a full verification that passed
    verdict_reason: str | None = None

    @property
    def partition_key(self) -> str:
        """This point's PartitionKey."""
        return disk_partition(self.disk_id)

    @property
    def row_key(self) -> str:
        """This point's RowKey."""
        return f"{inverted_time(self.run_started_at)}_{self.run_id}"

    def properties(self) -> dict[str, EntityValue]:
        """The row's properties."""
        props: dict[str, EntityValue] = {
            "DiskId": self.disk_id,
            "RunId": self.run_id,
            "RunStartedAt": self.run_started_at,
            "BlobUrl": self.blob_url,
            "SizeBytes": self.size_bytes,
            "BytesCopied": self.bytes_copied,
            "Kind": self.kind,
            "StartedAt": self.started_at,
            "FinishedAt": self.finished_at,
            "Status": self.status,
        }
        if self.snapshot_id:
            props["SnapshotId"] = self.snapshot_id
        if self.reason:
            props["Reason"] = self.reason
        if self.copy_id:
            props["CopyId"] = self.copy_id
        if self.code:
            props["Code"] = self.code
        optional: dict[str, EntityValue | None] = {
            "BlobSnapshot": self.blob_snapshot,
            "BytesMoved": self.bytes_moved,
            "BytesChanged": self.bytes_changed,
            "Ranges": self.ranges,
            "Requests": self.requests,
            "FullCopyReason": self.full_copy_reason,
            "BaseSnapshotId": self.base_snapshot_id,
            "BlobEtag": self.blob_etag,
            "ExpiredAt": self.expired_at,
            "ExpiredReason": self.expired_reason,
            "PruneHeld": self.prune_held,
            "PruneHeldAt": self.prune_held_at,
            "Verdict": self.verdict,
            "VerifiedAt": self.verified_at,
            "VerifyRestoreId": self.verify_restore_id,
            "VerifiedDigest": self.verified_digest,
            "VerdictReason": self.verdict_reason,
        }
        props.update({name: value for name, value in optional.items() if value is not None})
        return props

    @property
    def taken_at(self) -> datetime:
        """When the point's data was taken: the start of its disk's backup (its snapshot's time)."""
        return self.started_at

    @classmethod
    def from_entity(cls, entity: Entity) -> RestorePoint:
        """Read a restore point row back; :class:`InvalidInputError` names the row and the wrong field."""
        where = f"catalog row {entity.partition_key}/{entity.row_key}"
        p = entity.properties
        status = p.get("Status")
        if status not in _POINT_STATUSES:
            raise InvalidInputError(f"{where}.Status", f"{status!r} is not a restore point status")
        blob_url = _prop_text(p, "BlobUrl", where)
        if "?" in blob_url:
            raise InvalidInputError(f"{where}.BlobUrl", "carries a query; the catalog never stores one")
        blob_snapshot = _prop_optional_text(p, "BlobSnapshot", where)
        if blob_snapshot is not None and not _BLOB_SNAPSHOT.fullmatch(blob_snapshot):
            raise InvalidInputError(f"{where}.BlobSnapshot", f"{blob_snapshot[:40]!r} is not a snapshot time")
        kind = _prop_text(p, "Kind", where)
        if kind not in KINDS:
            raise InvalidInputError(f"{where}.Kind", f"{kind[:40]!r} is not one of {', '.join(KINDS)}")
        bytes_copied = _prop_int(p, "BytesCopied", where)
        verdict = _prop_optional_text(p, "Verdict", where)
        if verdict is not None and verdict not in _VERDICTS:
            raise InvalidInputError(f"{where}.Verdict", f"{verdict[:40]!r} is not Passed or Failed")
        point = cls(
            disk_id=_prop_text(p, "DiskId", where),
            run_id=_prop_text(p, "RunId", where),
            run_started_at=_prop_time(p, "RunStartedAt", where),
            snapshot_id=_prop_optional_text(p, "SnapshotId", where),
            blob_url=blob_url,
            size_bytes=_prop_int(p, "SizeBytes", where),
            bytes_copied=bytes_copied,
            kind=kind,
            started_at=_prop_time(p, "StartedAt", where),
            finished_at=_prop_time(p, "FinishedAt", where),
            status="Succeeded" if status == "Succeeded" else "Expired" if status == "Expired" else "Failed",
            reason=_prop_optional_text(p, "Reason", where),
            copy_id=_prop_optional_text(p, "CopyId", where),
            code=_prop_optional_text(p, "Code", where),
            blob_snapshot=blob_snapshot,
            # Before the chain every point was a full copy: what it copied is what it moved.
            bytes_moved=_prop_optional_int(p, "BytesMoved", where) if "BytesMoved" in p else bytes_copied,
            bytes_changed=_prop_optional_int(p, "BytesChanged", where),
            ranges=_prop_optional_int(p, "Ranges", where),
            requests=_prop_optional_int(p, "Requests", where),
            full_copy_reason=_prop_optional_text(p, "FullCopyReason", where),
            base_snapshot_id=_prop_optional_text(p, "BaseSnapshotId", where),
            blob_etag=_prop_optional_text(p, "BlobEtag", where),
            expired_at=_prop_time(p, "ExpiredAt", where) if "ExpiredAt" in p else None,
            expired_reason=_prop_optional_text(p, "ExpiredReason", where),
            prune_held=_prop_optional_text(p, "PruneHeld", where),
            prune_held_at=_prop_time(p, "PruneHeldAt", where) if "PruneHeldAt" in p else None,
            verdict=verdict,
            verified_at=_prop_time(p, "VerifiedAt", where) if "VerifiedAt" in p else None,
            verify_restore_id=_prop_optional_text(p, "VerifyRestoreId", where),
            verified_digest=_prop_optional_text(p, "VerifiedDigest", where),
            verdict_reason=_prop_optional_text(p, "VerdictReason", where),
        )
        if point.partition_key != entity.partition_key or point.row_key != entity.row_key:
            raise InvalidInputError(f"{where}", "keys do not match the row's DiskId, RunId and RunStartedAt")
        return point

    def to_json(self) -> dict[str, Any]:
        """For the HTTP API and the CLI."""
        return {
            "diskId": self.disk_id,
            "runId": self.run_id,
            "status": self.status,
            "kind": self.kind,
            "blobUrl": self.blob_url,
            "snapshotId": self.snapshot_id,
            "sizeBytes": self.size_bytes,
            "bytesCopied": self.bytes_copied,
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at),
            "code": self.code,
            "reason": self.reason,
            "copyId": self.copy_id,
            "blobSnapshot": self.blob_snapshot,
            "bytesMoved": self.bytes_moved,
            "bytesChanged": self.bytes_changed,
            "ranges": self.ranges,
            "requests": self.requests,
            "fullCopyReason": self.full_copy_reason,
            "baseSnapshotId": self.base_snapshot_id,
            "expiredAt": iso(self.expired_at) if self.expired_at else None,
            "expiredReason": self.expired_reason,
            "pruneHeld": self.prune_held,
            "verdict": self.verdict,
            "verifiedAt": iso(self.verified_at) if self.verified_at else None,
            "verifyRestoreId": self.verify_restore_id,
            "verdictReason": self.verdict_reason,
        }


@dataclass(frozen=True)
class RestoreRecord:
    """A restore as the catalog keeps it: what :class:`~backup.workflow.restore_models.RestoreResult`
    says, at the restore's start (``Running``) and at its end."""

    result: RestoreResult

    @property
    def row_key(self) -> str:
        """This restore's RowKey."""
        started = parse_time(self.result.started_at, "restore.startedAt")
        return f"{inverted_time(started)}_{self.result.restore_id}"

    def properties(self) -> dict[str, EntityValue]:
        """The row's properties (times as Edm.DateTime, the rest as the result's JSON names)."""
        r = self.result
        props: dict[str, EntityValue | None] = {
            "RestoreId": r.restore_id,
            "Status": r.status,
            "Phase": r.phase,
            "DiskId": r.disk_id,
            "RunId": r.run_id,
            "BlobSnapshot": r.blob_snapshot,
            "TargetDiskId": r.target_disk_id,
            "Location": r.location,
            "Sku": r.sku,
            "Purpose": r.purpose,
            "Verify": r.verify,
            "Verdict": r.verdict,
            "SizeBytes": r.size_bytes,
            "BytesWritten": r.bytes_written,
            "BytesTotal": r.bytes_total,
            "SourceDigest": r.source_digest,
            "DiskDigest": r.disk_digest,
            "Windows": r.windows,
            "BytesCompared": r.bytes_compared,
            "StartedAt": parse_time(r.started_at, "restore.startedAt"),
            "FinishedAt": parse_time(r.finished_at, "restore.finishedAt") if r.finished_at else None,
            "Code": r.code,
            "Reason": redact(r.reason)[:_MAX_REASON] if r.reason else None,
            "DiskKept": r.disk_kept,
            "DiskDeleted": r.disk_deleted,
            "Warnings": json.dumps([redact(w)[:_MAX_REASON] for w in r.warnings]) if r.warnings else None,
        }
        return {name: value for name, value in props.items() if value is not None}

    @classmethod
    def from_entity(cls, entity: Entity) -> RestoreRecord:
        """Read a restore row back; :class:`InvalidInputError` names the row and the field that is wrong."""
        where = f"catalog row {entity.partition_key}/{entity.row_key}"
        p = entity.properties
        status = p.get("Status")
        if status not in _RESTORE_STATUSES:
            raise InvalidInputError(f"{where}.Status", f"{status!r:.40} is not a restore status")
        try:
            warnings = json.loads(str(p.get("Warnings", "[]")))
        except json.JSONDecodeError:
            raise InvalidInputError(f"{where}.Warnings", "is not JSON") from None
        finished = _prop_time(p, "FinishedAt", where) if "FinishedAt" in p else None
        data = {
            "restoreId": _prop_text(p, "RestoreId", where),
            "status": status,
            "phase": _prop_text(p, "Phase", where),
            "diskId": _prop_text(p, "DiskId", where),
            "runId": _prop_optional_text(p, "RunId", where),
            "blobSnapshot": _prop_optional_text(p, "BlobSnapshot", where),
            "targetDiskId": _prop_text(p, "TargetDiskId", where),
            "location": _prop_optional_text(p, "Location", where),
            "sku": _prop_optional_text(p, "Sku", where),
            "purpose": p.get("Purpose"),
            "verify": p.get("Verify"),
            "verdict": p.get("Verdict"),
            "sizeBytes": _prop_int(p, "SizeBytes", where),
            "bytesWritten": _prop_int(p, "BytesWritten", where),
            "bytesTotal": _prop_int(p, "BytesTotal", where),
            "sourceDigest": _prop_optional_text(p, "SourceDigest", where),
            "diskDigest": _prop_optional_text(p, "DiskDigest", where),
            "windows": _prop_int(p, "Windows", where),
            "bytesCompared": _prop_int(p, "BytesCompared", where),
            "startedAt": iso(_prop_time(p, "StartedAt", where)),
            "finishedAt": iso(finished) if finished else None,
            "code": _prop_optional_text(p, "Code", where),
            "reason": _prop_optional_text(p, "Reason", where),
            "diskKept": p.get("DiskKept") is True,
            "diskDeleted": p.get("DiskDeleted") is True,
            "warnings": warnings if isinstance(warnings, list) else [],
        }
        try:
            record = cls(RestoreResult.from_json(data))
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}.{exc.field}", exc.problem) from None
        if record.row_key != entity.row_key:
            raise InvalidInputError(f"{where}.RowKey", "does not match the restore's start time and id")
        return record

    def to_json(self) -> dict[str, Any]:
        """For the HTTP API and the CLI."""
        return self.result.to_json()


@dataclass(frozen=True)
class Listing:
    """A page of catalog rows, and the rows that could not be read (each with what is wrong)."""

    items: list[Any]
    problems: list[str]


class Catalog:
    """Reads and writes runs and restore points in one table (see the module docstring)."""

    def __init__(self, table: TableClient, *, blob_endpoint: str) -> None:
        self.table = table
        self.blob_endpoint = blob_endpoint.rstrip("/")
        self._ready = False
        self._lock = threading.Lock()

    def _ensure_table(self) -> None:
        with self._lock:
            if not self._ready:
                self.table.create_if_missing()
                self._ready = True

    def blob_url(self, container: str, blob_name: str) -> str:
        """The URL of a backup blob, as the catalog stores it (no query)."""
        return strip_query(f"{self.blob_endpoint}/{container}/{quote(blob_name, safe='/')}")

    # -- writes --------------------------------------------------------------------------------------

    def record_run(self, summary: RunSummary) -> RunRecord:
        """Write a run's row (replacing any earlier state of the same run)."""
        record = RunRecord.from_summary(summary)
        self._ensure_table()
        self.table.upsert(RUN_PARTITION, record.row_key, record.properties(), mode=UpsertMode.REPLACE)
        return record

    def record_restore_point(self, record: RestorePointRecord) -> RestorePoint:
        """Write a restore point (or a failed attempt) as the disk orchestrator reported it."""
        point = RestorePoint(
            disk_id=record.disk_id,
            run_id=record.run_id,
            run_started_at=parse_time(record.run_started_at, "restore point.runStartedAt"),
            snapshot_id=record.snapshot_id,
            blob_url=self.blob_url(record.container, record.blob_name),
            size_bytes=record.size_bytes,
            bytes_copied=record.bytes_copied,
            kind=record.kind,
            started_at=parse_time(record.started_at, "restore point.startedAt"),
            finished_at=parse_time(record.finished_at, "restore point.finishedAt"),
            status=record.status,
            reason=redact(record.reason)[:_MAX_REASON] if record.reason else None,
            copy_id=record.copy_id,
            code=record.code,
            blob_snapshot=record.blob_snapshot,
            bytes_moved=record.bytes_moved if record.bytes_moved is not None else record.bytes_copied,
            bytes_changed=record.bytes_changed,
            ranges=record.ranges,
            requests=record.requests,
            full_copy_reason=redact(record.full_copy_reason)[:_MAX_REASON]
            if record.full_copy_reason
            else None,
            base_snapshot_id=record.base_snapshot_id,
            blob_etag=record.blob_etag,
        )
        self._ensure_table()
        self.table.upsert(point.partition_key, point.row_key, point.properties(), mode=UpsertMode.REPLACE)
        return point

    # -- reads ---------------------------------------------------------------------------------------

    def list_runs(self, top: int = 20) -> Listing:
        """The most recent runs, newest first."""
        return self._read(eq("PartitionKey", RUN_PARTITION), top, RunRecord.from_entity)

    def list_restore_points(
        self,
        disk_id: str,
        *,
        include_failed: bool = False,
        include_expired: bool = False,
        top: int | None = 100,
    ) -> Listing:
        """A disk's restore points, newest first: the good ones, and failed attempts and points retention
        expired when asked (``top`` None: all of them)."""
        where = eq("PartitionKey", disk_partition(disk_id))
        # Leave out what was not asked for by name, so a row with a status of its own is still read (and
        # reported as unreadable) whenever more than the good points are asked for.
        left_out = [
            status
            for status, wanted in (("Failed", include_failed), ("Expired", include_expired))
            if not wanted
        ]
        if len(left_out) == 2:
            where = and_(where, eq("Status", "Succeeded"))
        elif left_out:
            where = and_(where, ne("Status", left_out[0]))
        return self._read(where, top, RestorePoint.from_entity)

    def find_restore_point(self, disk_id: str, run_id: str) -> RestorePoint | None:
        """The row run ``run_id`` recorded for the disk (any status), or ``None``.

        :class:`InvalidInputError` names the row if it cannot be read.
        """
        where = and_(eq("PartitionKey", disk_partition(disk_id)), eq("RunId", run_id))
        listing = self._read(where, 1, RestorePoint.from_entity)
        if listing.problems:
            raise InvalidInputError("catalog", listing.problems[0])
        return listing.items[0] if listing.items else None

    def good_point_at(self, disk_id: str, at: datetime) -> RestorePoint | None:
        """The disk's newest good restore point taken at or before ``at`` (its backup's start), or ``None``.

        Rows are newest first, and a disk's backup starts later in a later run, so the first row that
        matches is the newest.
        """
        where = and_(
            eq("PartitionKey", disk_partition(disk_id)),
            eq("Status", "Succeeded"),
            le("StartedAt", at.astimezone(UTC)),
        )
        listing = self._read(where, 1, RestorePoint.from_entity)
        if listing.problems:
            raise InvalidInputError("catalog", listing.problems[0])
        return listing.items[0] if listing.items else None

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run ``run_id``'s row, or ``None`` if it has none (yet)."""
        listing = self._read(
            and_(eq("PartitionKey", RUN_PARTITION), eq("RunId", run_id)), 1, RunRecord.from_entity
        )
        if listing.problems:
            raise InvalidInputError("catalog", listing.problems[0])
        return listing.items[0] if listing.items else None

    def blob_location(self, blob_url: str) -> tuple[str, str]:
        """``(container, blob name)`` of a blob URL the catalog stored (:meth:`blob_url`'s inverse).

        :class:`InvalidInputError` if the URL is not in this catalog's backup account.
        """
        prefix = self.blob_endpoint + "/"
        if not blob_url.startswith(prefix) or urlsplit(blob_url).query:
            raise InvalidInputError("blobUrl", f"{blob_url[:200]} is not a blob of the backup account")
        container, sep, name = blob_url[len(prefix) :].partition("/")
        if not sep or not container or not name:
            raise InvalidInputError("blobUrl", f"{blob_url[:200]} names no container and blob")
        return container, unquote(name)

    # -- what retention and restore tests write on a point -----------------------------------------

    def mark_expired(self, point: RestorePoint, when: datetime, reason: str) -> None:
        """Mark a point ``Expired`` (its data is gone): the row stays, with when and why."""
        self._merge_point(
            point,
            {
                "Status": "Expired",
                "ExpiredAt": when.astimezone(UTC),
                "ExpiredReason": redact(reason)[:_MAX_REASON],
            },
        )

    def record_prune_held(self, point: RestorePoint, when: datetime, problem: str) -> None:
        """Note on a point that its data could not be deleted, and why (so it is not tried every night)."""
        self._merge_point(
            point, {"PruneHeld": redact(problem)[:_MAX_REASON], "PruneHeldAt": when.astimezone(UTC)}
        )

    def record_verdict(
        self,
        point: RestorePoint,
        *,
        verdict: str,
        when: datetime,
        restore_id: str,
        digest: str | None = None,
        reason: str | None = None,
    ) -> None:
        """A restore test's verdict on a point (``Passed`` or ``Failed``); a passed full verification's
        window chain is kept as ``VerifiedDigest``, for the next test to compare with."""
        if verdict not in _VERDICTS:
            raise InvalidInputError("verdict", f"{verdict!r:.40} is not Passed or Failed")
        props: dict[str, EntityValue] = {
            "Verdict": verdict,
            "VerifiedAt": when.astimezone(UTC),
            "VerifyRestoreId": restore_id,
            "VerdictReason": redact(reason)[:_MAX_REASON] if reason else "",
        }
        if digest is not None:
            props["VerifiedDigest"] = digest
        self._merge_point(point, props)

    def _merge_point(self, point: RestorePoint, properties: dict[str, EntityValue]) -> None:
        # If-Match "*": the row must still exist (a merge never creates a half row).
        self.table.upsert(point.partition_key, point.row_key, properties, mode=UpsertMode.MERGE, etag="*")

    # -- restores -----------------------------------------------------------------------------------

    def record_restore(self, result: RestoreResult) -> RestoreRecord:
        """Write a restore's row (at its start and again at its end)."""
        record = RestoreRecord(result)
        self._ensure_table()
        self.table.upsert(RESTORE_PARTITION, record.row_key, record.properties(), mode=UpsertMode.REPLACE)
        return record

    def get_restore(self, restore_id: str) -> RestoreRecord | None:
        """The restore ``restore_id``'s row, or ``None``."""
        where = and_(eq("PartitionKey", RESTORE_PARTITION), eq("RestoreId", restore_id))
        listing = self._read(where, 1, RestoreRecord.from_entity)
        if listing.problems:
            raise InvalidInputError("catalog", listing.problems[0])
        return listing.items[0] if listing.items else None

    def list_restores(self, top: int = 20) -> Listing:
        """The most recent restores and restore tests, newest first."""
        return self._read(eq("PartitionKey", RESTORE_PARTITION), top, RestoreRecord.from_entity)

    def last_good_point(self, disk_id: str) -> tuple[RestorePoint | None, str | None]:
        """A disk's newest good restore point, or why it cannot be told: ``(point, problem)``.

        The newest row recorded Succeeded is read alone; a row that cannot be read is a problem, never
        skipped for an older one (the chain must not build on anything but the newest point).
        """
        listing = self.list_restore_points(disk_id, top=1)
        if listing.problems:
            return (
                None,
                f"the disk's newest restore point in the catalog cannot be read ({listing.problems[0]})",
            )
        return (listing.items[0] if listing.items else None), None

    def run_restore_points(self, run_id: str) -> Listing:
        """Every disk's row of one run (good or failed): a query across the disks' partitions."""
        where = and_(ne("PartitionKey", RUN_PARTITION), eq("RunId", run_id))
        return self._read(where, None, RestorePoint.from_entity)

    def run_summary(self, run_id: str) -> RunSummary | None:
        """A run as the catalog recorded it, in the shape the run orchestrator returns (``None``: unknown).

        For runs whose orchestration state is out of reach (a nightly run in Azure, seen from a laptop):
        the run's row and its disks' rows, one per disk.
        """
        run = self.get_run(run_id)
        if run is None:
            return None
        points = sorted(self.run_restore_points(run_id).items, key=lambda p: p.disk_id.lower())
        disks = tuple(
            DiskResult(
                disk_id=point.disk_id,
                disk_name=point.disk_id.rsplit("/", 1)[-1],
                status=point.status,
                phase="done" if point.status == "Succeeded" else "failed",
                code=point.code,
                reason=point.reason,
                snapshot_id=point.snapshot_id,
                blob_url=point.blob_url,
                size_bytes=point.size_bytes,
                bytes_copied=point.bytes_copied,
                kind=point.kind,
                bytes_moved=point.bytes_moved,
                bytes_changed=point.bytes_changed,
                blob_snapshot=point.blob_snapshot,
                full_copy_reason=point.full_copy_reason,
                started_at=iso(point.started_at),
                finished_at=iso(point.finished_at),
            )
            for point in points
        )
        return RunSummary(
            run_id=run.run_id,
            trigger=run.trigger if run.trigger in ("schedule", "http", "cli") else "http",  # type: ignore[arg-type]
            selection=Selection.from_json(run.selection) if run.selection else Selection(kind="configured"),
            started_at=iso(run.started_at),
            status=run.status,  # type: ignore[arg-type]
            finished_at=iso(run.finished_at) if run.finished_at else None,
            disk_count=run.disk_count,
            succeeded=run.succeeded,
            failed=run.failed,
            reason=run.reason,
            disks=disks,
        )

    def _read(self, where: Any, top: int | None, parse: Any) -> Listing:
        items: list[Any] = []
        problems: list[str] = []
        try:
            rows = list(self.table.query(where, top=top))
        except NotFoundError:  # no table yet: nothing was ever recorded
            return Listing([], [])
        for entity in rows:
            try:
                items.append(parse(entity))
            except InvalidInputError as exc:
                log.warning("unreadable catalog row: %s", exc)
                problems.append(str(exc))
        return Listing(items, problems)

    @staticmethod
    def disk_id_of_partition(partition_key: str) -> str:
        """The (lower-cased) disk ID a restore-point partition belongs to."""
        if not partition_key.startswith(_DISK_PARTITION_PREFIX):
            raise InvalidInputError("partition key", f"{partition_key!r} is not a disk partition")
        return decode_key(partition_key[len(_DISK_PARTITION_PREFIX) :])


# -- validators -----------------------------------------------------------------------------------------


def _prop_text(p: dict[str, EntityValue], key: str, where: str) -> str:
    value = p.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{where}.{key}", "is missing or not text")
    return value


def _prop_optional_text(p: dict[str, EntityValue], key: str, where: str) -> str | None:
    value = p.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{where}.{key}", "is not text")
    return value


def _prop_optional_int(p: dict[str, EntityValue], key: str, where: str) -> int | None:
    if p.get(key) is None:
        return None
    return _prop_int(p, key, where)


def _prop_int(p: dict[str, EntityValue], key: str, where: str) -> int:
    value = p.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"{where}.{key}", "is missing or not a whole number")
    return value


def _prop_time(p: dict[str, EntityValue], key: str, where: str) -> datetime:
    value = p.get(key)
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{where}.{key}", "is missing or not an Edm.DateTime")
    return value.astimezone(UTC)
