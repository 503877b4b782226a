"""The catalog: every run and every restore point, in one Azure Table.

Two kinds of rows share the table, told apart by their PartitionKey:

- a run: PartitionKey ``run``, RowKey ``{inverted start time}_{run id}``;
- a restore point (one disk backed up by one run, or a failed attempt): PartitionKey
  ``disk_{encoded disk id}`` (the lower-cased disk resource ID through :func:`backup.azure.odata.encode_key`,
  since IDs hold ``/``), RowKey ``{inverted run start time}_{run id}``.

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
from urllib.parse import quote

from backup.azure.odata import and_, decode_key, encode_key, eq, ne
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

log = get_logger(__name__)

RUN_PARTITION = "run"
_DISK_PARTITION_PREFIX = "disk_"
_INVERT_BASE = 10**15
_RUN_STATUSES = ("Running", "Succeeded", "PartiallySucceeded", "Failed")
_POINT_STATUSES = ("Succeeded", "Failed")
_MAX_REASON = 2000
_BLOB_SNAPSHOT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z")

RestorePointStatus = Literal["Succeeded", "Failed"]


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
        }
        props.update({name: value for name, value in optional.items() if value is not None})
        return props

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
            status="Succeeded" if status == "Succeeded" else "Failed",
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
        }


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

    def list_restore_points(self, disk_id: str, *, include_failed: bool = False, top: int = 100) -> Listing:
        """A disk's restore points, newest first (failed attempts too when asked)."""
        where = eq("PartitionKey", disk_partition(disk_id))
        if not include_failed:
            where = and_(where, eq("Status", "Succeeded"))
        return self._read(where, top, RestorePoint.from_entity)

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

    def get_run(self, run_id: str) -> RunRecord | None:
        """A run's row, by its id (``None`` if the catalog has none)."""
        found = self._read(
            and_(eq("PartitionKey", RUN_PARTITION), eq("RunId", run_id)), 1, RunRecord.from_entity
        )
        return found.items[0] if found.items else None

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
