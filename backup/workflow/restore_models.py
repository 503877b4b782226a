"""What flows through the restore, restore-test and prune orchestrations: inputs, statuses, results.

- :class:`RestoreInput` (with :class:`RestoreTarget` and :class:`RestoreOptions`): what starts one restore
  of a disk's restore point into a new managed disk (:mod:`backup.workflow.restore`);
- :class:`PointRef`: the restore point a restore reads, as the catalog has it;
- :class:`RestoreStatus`: a restore's custom status (phase and bytes as they go);
- :class:`RestoreResult`: how a restore ended (the orchestration's output, and the catalog's record);
- :class:`RestoreTestsInput`: the scheduled restore tests of the newest point of each disk;
- :class:`PruneInput`: one pass of retention over a selection of disks (:mod:`backup.workflow.prune`).

Like :mod:`backup.workflow.models`, every record is JSON in the task hub, holds no secret, and is rebuilt
through a validating ``from_json`` that names the field that is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from backup.azure.names import (
    validate_new_compute_name,
    validate_resource_group_name,
    validate_tag_name,
    validate_tag_value,
)
from backup.azure.resource_id import disk_id, parse_disk_id, validate_subscription_id
from backup.errors import InvalidInputError
from backup.workflow.models import (
    ChainOptions,
    Selection,
    Trigger,
    _bool,
    _int,
    _object,
    _optional_code,
    _optional_int,
    _optional_str,
    _str,
    _str_tuple,
    _time,
)
from backup.workflow.restore_plan import is_digest
from backup.workflow.retries import ActivityRetry

__all__ = [
    "PRUNE_ORCHESTRATOR",
    "PURPOSES",
    "RESTORE_ORCHESTRATOR",
    "RESTORE_TESTS_ORCHESTRATOR",
    "SKUS",
    "VERIFY_MODES",
    "PointRef",
    "PruneInput",
    "PruneOptions",
    "RestoreInput",
    "RestoreOptions",
    "RestoreResult",
    "RestoreStatus",
    "RestoreTarget",
    "RestoreTestsInput",
    "validate_location",
    "validate_sku",
    "validate_zone",
]

#: Registered names of the orchestrators.
RESTORE_ORCHESTRATOR = "restore_disk"
RESTORE_TESTS_ORCHESTRATOR = "restore_tests"
PRUNE_ORCHESTRATOR = "prune_run"

VerifyMode = Literal["full", "sample", "none"]
Purpose = Literal["restore", "test"]
#: How a restore checks the disk it made: every byte, sampled windows, or not at all.
VERIFY_MODES: tuple[VerifyMode, ...] = ("full", "sample", "none")
#: A restore for a person (the disk stays), or a restore test (a temporary disk, deleted afterwards).
PURPOSES: tuple[Purpose, ...] = ("restore", "test")
#: Disk SKUs (DiskRP 2026-03-02 ``DiskStorageAccountTypes``).
SKUS = (
    "Standard_LRS",
    "Premium_LRS",
    "StandardSSD_LRS",
    "UltraSSD_LRS",
    "Premium_ZRS",
    "StandardSSD_ZRS",
    "PremiumV2_LRS",
)
#: The most tags a caller may give a restored disk (ARM allows 50; the restore adds two of its own).
MAX_TARGET_TAGS = 48
#: A restore's outcome as the verification judged it.
VERDICTS = ("Passed", "Failed", "NotVerified")

# Azure region names: lower-case letters and digits ("westeurope", "eastus2"); the emulator's too.
_LOCATION = re.compile(r"[a-z][a-z0-9]{1,39}")
_ZONE = re.compile(r"[1-9][0-9]?")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}")


def validate_location(value: object, field_name: str = "location") -> str:
    """An Azure region name as ARM writes it: lower-case letters and digits (``westeurope``)."""
    if not isinstance(value, str) or not _LOCATION.fullmatch(value):
        raise InvalidInputError(
            field_name, "must be a region name of lower-case letters and digits, e.g. westeurope"
        )
    return value


def validate_sku(value: object, field_name: str = "sku") -> str:
    """A disk SKU name (``Premium_LRS``, ...), in the spec's spelling whatever case it was given in."""
    if isinstance(value, str):
        for sku in SKUS:
            if sku.lower() == value.lower():
                return sku
    raise InvalidInputError(field_name, f"must be one of {', '.join(SKUS)}")


def validate_zone(value: object, field_name: str = "zone") -> str:
    """An availability zone: a small number as text (``"1"``)."""
    if not isinstance(value, str) or not _ZONE.fullmatch(value):
        raise InvalidInputError(field_name, "must be an availability zone number such as '1'")
    return value


def validate_point_run_id(value: object, field_name: str = "runId") -> str:
    """A backup run's id as restore points name it: 1-100 letters, digits and ``_ . : @ -``."""
    if not isinstance(value, str) or not _RUN_ID.fullmatch(value):
        raise InvalidInputError(field_name, "must be a run id: 1-100 letters, digits and _ . : @ -")
    return value


def validate_target_tags(value: object, field_name: str = "tags") -> dict[str, str]:
    """Tags for a restored disk: an object of at most :data:`MAX_TARGET_TAGS` names to values, each under
    Azure's rules, no two names differing in case only (ARM's tag names are case-insensitive)."""
    if not isinstance(value, dict):
        raise InvalidInputError(field_name, "must be an object of tag names to values")
    if len(value) > MAX_TARGET_TAGS:
        raise InvalidInputError(field_name, f"at most {MAX_TARGET_TAGS} tags, got {len(value)}")
    tags: dict[str, str] = {}
    seen: set[str] = set()
    for name, tag_value in value.items():
        validate_tag_name(name, f"{field_name} name")
        validate_tag_value(tag_value, f"{field_name}.{name[:40]}")
        if name.lower() in seen:
            raise InvalidInputError(field_name, f"tag {name[:40]!r} is given twice (names ignore case)")
        seen.add(name.lower())
        tags[name] = tag_value
    return tags


@dataclass(frozen=True)
class RestoreTarget:
    """Where a restore makes its disk. ``location`` and ``sku`` ``None``: the source disk's (see
    :func:`backup.workflow.restore_activities.find_restore_point`)."""

    subscription_id: str
    resource_group: str
    disk_name: str
    location: str | None = None
    sku: str | None = None
    zone: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def disk_id(self) -> str:
        """The new disk's resource ID."""
        return str(disk_id(self.subscription_id, self.resource_group, self.disk_name))

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "subscriptionId": self.subscription_id,
            "resourceGroup": self.resource_group,
            "diskName": self.disk_name,
            "location": self.location,
            "sku": self.sku,
            "zone": self.zone,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "target") -> RestoreTarget:
        """Rebuild and validate every field under Azure's rules."""
        data = _object(data, where)
        known = {"subscriptionId", "resourceGroup", "diskName", "location", "sku", "zone", "tags"}
        unknown = sorted(str(key) for key in set(data) - known)
        if unknown:
            raise InvalidInputError(
                f"{where}.{unknown[0][:40]}", f"is not a known field ({', '.join(sorted(known))})"
            )
        subscription = data.get("subscriptionId")
        if not isinstance(subscription, str):
            raise InvalidInputError(f"{where}.subscriptionId", "must be a subscription id (a GUID)")
        optional = {name: data.get(name) for name in ("location", "sku", "zone")}
        return cls(
            subscription_id=validate_subscription_id(subscription, f"{where}.subscriptionId").lower(),
            resource_group=validate_resource_group_name(data.get("resourceGroup"), f"{where}.resourceGroup"),
            disk_name=validate_new_compute_name(data.get("diskName"), f"{where}.diskName"),
            location=None
            if optional["location"] is None
            else validate_location(optional["location"], f"{where}.location"),
            sku=None if optional["sku"] is None else validate_sku(optional["sku"], f"{where}.sku"),
            zone=None if optional["zone"] is None else validate_zone(optional["zone"], f"{where}.zone"),
            tags=validate_target_tags(data.get("tags") or {}, f"{where}.tags"),
        )


@dataclass(frozen=True)
class RestoreOptions:
    """How a restore waits and how it bounds its work; chosen from settings by the starter."""

    container: str
    poll_initial_seconds: int = 5
    poll_max_seconds: int = 60
    #: Deadline of each ARM operation (create, grant, revoke, delete).
    operation_timeout_minutes: int = 60
    chain: ChainOptions = field(default_factory=ChainOptions)
    #: How idempotent activities are retried after a transient failure (backup.workflow.retries).
    retry: ActivityRetry = field(default_factory=ActivityRetry)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "container": self.container,
            "pollInitialSeconds": self.poll_initial_seconds,
            "pollMaxSeconds": self.poll_max_seconds,
            "operationTimeoutMinutes": self.operation_timeout_minutes,
            "chain": self.chain.to_json(),
            "retry": self.retry.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> RestoreOptions:
        """Rebuild and validate."""
        where = "options"
        data = _object(data, where)
        return cls(
            container=_str(data, "container", where),
            poll_initial_seconds=_int(data, "pollInitialSeconds", where, 1, 3600),
            poll_max_seconds=_int(data, "pollMaxSeconds", where, 1, 3600),
            operation_timeout_minutes=_int(data, "operationTimeoutMinutes", where, 1, 1440),
            chain=ChainOptions.from_json(data.get("chain")),
            # Absent from the inputs of restores started before retries existed: those get the defaults.
            retry=ActivityRetry.from_json(data.get("retry")),
        )


@dataclass(frozen=True)
class RestoreInput:
    """The input of the restore orchestrator: which point of which disk, where to, and how to check it.

    Exactly one of ``run_id`` (that run's point) and ``at`` (the newest good point taken at or before
    it, ISO 8601 with its zone) chooses the point.
    """

    disk_id: str
    target: RestoreTarget
    options: RestoreOptions
    run_id: str | None = None
    at: str | None = None
    verify: VerifyMode = "full"
    purpose: Purpose = "restore"
    keep_on_failure: bool = False
    trigger: Trigger = "http"

    def to_json(self) -> dict[str, Any]:
        """JSON form (what ``start_new`` is given)."""
        return {
            "diskId": self.disk_id,
            "runId": self.run_id,
            "at": self.at,
            "target": self.target.to_json(),
            "verify": self.verify,
            "purpose": self.purpose,
            "keepOnFailure": self.keep_on_failure,
            "trigger": self.trigger,
            "options": self.options.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> RestoreInput:
        """Rebuild and validate."""
        where = "restore"
        data = _object(data, where)
        run_id, at = data.get("runId"), data.get("at")
        if (run_id is None) == (at is None):
            raise InvalidInputError(f"{where}.runId", "give exactly one of runId and at")
        verify = data.get("verify", "full")
        if verify not in VERIFY_MODES:
            raise InvalidInputError(f"{where}.verify", f"must be one of {', '.join(VERIFY_MODES)}")
        purpose = data.get("purpose", "restore")
        if purpose not in PURPOSES:
            raise InvalidInputError(f"{where}.purpose", f"must be one of {', '.join(PURPOSES)}")
        trigger = data.get("trigger", "http")
        if trigger not in ("schedule", "http", "cli"):
            raise InvalidInputError(f"{where}.trigger", "must be one of schedule, http, cli")
        raw_disk = data.get("diskId")
        if not isinstance(raw_disk, str):
            raise InvalidInputError(f"{where}.diskId", "must be a disk resource ID")
        return cls(
            disk_id=str(parse_disk_id(raw_disk, f"{where}.diskId")),
            run_id=None if run_id is None else validate_point_run_id(run_id, f"{where}.runId"),
            at=None if at is None else _time(data, "at", where),
            target=RestoreTarget.from_json(data.get("target"), f"{where}.target"),
            verify=verify,
            purpose=purpose,
            keep_on_failure=_bool(data, "keepOnFailure", where) if "keepOnFailure" in data else False,
            trigger=trigger,
            options=RestoreOptions.from_json(data.get("options")),
        )


@dataclass(frozen=True)
class PointRef:
    """The restore point a restore reads, as the ``find_restore_point`` activity found it in the catalog."""

    run_id: str
    container: str
    blob_name: str
    blob_snapshot: str | None  # None: a whole blob recorded before the chain
    size_bytes: int
    kind: str
    taken_at: str  # when the disk's backup started (its snapshot's time), ISO
    verified_digest: str | None = None  # the window chain an earlier full verification recorded

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "runId": self.run_id,
            "container": self.container,
            "blobName": self.blob_name,
            "blobSnapshot": self.blob_snapshot,
            "sizeBytes": self.size_bytes,
            "kind": self.kind,
            "takenAt": self.taken_at,
            "verifiedDigest": self.verified_digest,
        }

    @classmethod
    def from_json(cls, data: Any) -> PointRef:
        """Rebuild and validate."""
        where = "point"
        data = _object(data, where)
        digest = _optional_str(data, "verifiedDigest", where)
        if digest is not None and not is_digest(digest):
            raise InvalidInputError(f"{where}.verifiedDigest", "must be 64 lowercase hex digits")
        return cls(
            run_id=_str(data, "runId", where),
            container=_str(data, "container", where),
            blob_name=_str(data, "blobName", where),
            blob_snapshot=_optional_str(data, "blobSnapshot", where),
            size_bytes=_int(data, "sizeBytes", where, 512, 2**50),
            kind=_str(data, "kind", where),
            taken_at=_time(data, "takenAt", where),
            verified_digest=digest,
        )


@dataclass(frozen=True)
class RestoreStatus:
    """A restore orchestration's custom status: where it is, as it goes (no secret, small)."""

    phase: str
    disk: str  # the target disk's name
    bytes_written: int = 0
    bytes_total: int = 0
    run_id: str | None = None  # the restore point's run, once chosen
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form (what ``set_custom_status`` stores)."""
        data: dict[str, Any] = {
            "phase": self.phase,
            "disk": self.disk,
            "bytesWritten": self.bytes_written,
            "bytesTotal": self.bytes_total,
            "runId": self.run_id,
        }
        if self.reason is not None:
            data["reason"] = self.reason
        return data

    @classmethod
    def read(cls, custom_status: Any) -> RestoreStatus | None:
        """A stored custom status, or ``None`` when there is none yet or it is not a restore's."""
        try:
            data = _object(custom_status, "restore status")
            return cls(
                phase=_str(data, "phase", "restore status"),
                disk=_str(data, "disk", "restore status"),
                bytes_written=_optional_int(data, "bytesWritten", "restore status") or 0,
                bytes_total=_optional_int(data, "bytesTotal", "restore status") or 0,
                run_id=_optional_str(data, "runId", "restore status"),
                reason=_optional_str(data, "reason", "restore status"),
            )
        except InvalidInputError:
            return None


@dataclass(frozen=True)
class RestoreResult:
    """How a restore ended: the orchestration's output, and (as :class:`backup.catalog.RestoreRecord`)
    the catalog's record of it."""

    restore_id: str
    status: Literal["Running", "Succeeded", "Failed"]
    phase: str
    disk_id: str  # the source disk
    target_disk_id: str
    purpose: Purpose
    verify: VerifyMode
    started_at: str
    finished_at: str | None = None
    run_id: str | None = None  # the restore point's run
    blob_snapshot: str | None = None
    location: str | None = None
    sku: str | None = None
    verdict: str | None = None  # Passed, Failed, NotVerified (None until verified or failed)
    size_bytes: int = 0  # the disk's (the restore point's) size
    bytes_written: int = 0  # into the disk: the point's populated pages (small holes bridged), the footer
    bytes_total: int = 0  # what the plan writes, all told
    source_digest: str | None = None  # full: the restore point's window chain
    disk_digest: str | None = None  # full: the restored disk's window chain
    windows: int = 0
    bytes_compared: int = 0
    code: str | None = None
    reason: str | None = None
    disk_kept: bool = False  # a failed restore's disk left for inspection (keepOnFailure)
    disk_deleted: bool = False  # the disk was deleted (a restore test's, or a failed restore's)
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON form (camelCase keys)."""
        return {
            "restoreId": self.restore_id,
            "status": self.status,
            "phase": self.phase,
            "diskId": self.disk_id,
            "runId": self.run_id,
            "blobSnapshot": self.blob_snapshot,
            "targetDiskId": self.target_disk_id,
            "location": self.location,
            "sku": self.sku,
            "purpose": self.purpose,
            "verify": self.verify,
            "verdict": self.verdict,
            "sizeBytes": self.size_bytes,
            "bytesWritten": self.bytes_written,
            "bytesTotal": self.bytes_total,
            "sourceDigest": self.source_digest,
            "diskDigest": self.disk_digest,
            "windows": self.windows,
            "bytesCompared": self.bytes_compared,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "code": self.code,
            "reason": self.reason,
            "diskKept": self.disk_kept,
            "diskDeleted": self.disk_deleted,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, data: Any) -> RestoreResult:
        """Rebuild and validate."""
        where = "restore result"
        data = _object(data, where)
        status = data.get("status")
        if status not in ("Running", "Succeeded", "Failed"):
            raise InvalidInputError(f"{where}.status", f"{status!r:.40} is not Running, Succeeded or Failed")
        purpose, verify, verdict = data.get("purpose"), data.get("verify"), data.get("verdict")
        if purpose not in PURPOSES:
            raise InvalidInputError(f"{where}.purpose", f"must be one of {', '.join(PURPOSES)}")
        if verify not in VERIFY_MODES:
            raise InvalidInputError(f"{where}.verify", f"must be one of {', '.join(VERIFY_MODES)}")
        if verdict is not None and verdict not in VERDICTS:
            raise InvalidInputError(f"{where}.verdict", f"must be one of {', '.join(VERDICTS)} or null")
        digests = {name: _optional_str(data, name, where) for name in ("sourceDigest", "diskDigest")}
        for name, value in digests.items():
            if value is not None and not is_digest(value):
                raise InvalidInputError(f"{where}.{name}", "must be 64 lowercase hex digits")
        return cls(
            restore_id=_str(data, "restoreId", where),
            status=status,
            phase=_str(data, "phase", where),
            disk_id=_str(data, "diskId", where),
            target_disk_id=_str(data, "targetDiskId", where),
            purpose=purpose,
            verify=verify,
            started_at=_time(data, "startedAt", where),
            finished_at=_time(data, "finishedAt", where) if data.get("finishedAt") is not None else None,
            run_id=_optional_str(data, "runId", where),
            blob_snapshot=_optional_str(data, "blobSnapshot", where),
            location=_optional_str(data, "location", where),
            sku=_optional_str(data, "sku", where),
            verdict=verdict,
            size_bytes=_optional_int(data, "sizeBytes", where) or 0,
            bytes_written=_optional_int(data, "bytesWritten", where) or 0,
            bytes_total=_optional_int(data, "bytesTotal", where) or 0,
            source_digest=digests["sourceDigest"],
            disk_digest=digests["diskDigest"],
            windows=_optional_int(data, "windows", where) or 0,
            bytes_compared=_optional_int(data, "bytesCompared", where) or 0,
            code=_optional_code(data, "code", where),
            reason=_optional_str(data, "reason", where),
            disk_kept=data.get("diskKept") is True,
            disk_deleted=data.get("diskDeleted") is True,
            warnings=_str_tuple(data, "warnings", where),
        )

    @classmethod
    def read(cls, output: Any) -> RestoreResult | None:
        """A restore orchestration's output, or ``None`` when it has none (yet) or it is not a result."""
        try:
            return cls.from_json(output)
        except InvalidInputError:
            return None


@dataclass(frozen=True)
class RestoreTestsInput:
    """The input of the restore-tests orchestrator: test the newest point of each selected disk."""

    trigger: Trigger
    selection: Selection
    options: RestoreOptions
    max_parallel: int = 4

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "trigger": self.trigger,
            "selection": self.selection.to_json(),
            "options": self.options.to_json(),
            "maxParallel": self.max_parallel,
        }

    @classmethod
    def from_json(cls, data: Any) -> RestoreTestsInput:
        """Rebuild and validate."""
        where = "restore tests"
        data = _object(data, where)
        trigger = data.get("trigger")
        if trigger not in ("schedule", "http", "cli"):
            raise InvalidInputError(f"{where}.trigger", "must be one of schedule, http, cli")
        return cls(
            trigger=trigger,
            selection=Selection.from_json(data.get("selection")),
            options=RestoreOptions.from_json(data.get("options")),
            max_parallel=_int(data, "maxParallel", where, 1, 50),
        )


@dataclass(frozen=True)
class PruneOptions:
    """How a prune waits for its run and bounds its work."""

    container: str
    poll_initial_seconds: int = 60
    poll_max_seconds: int = 900
    #: How long to wait for the run it follows to end before pruning anyway.
    wait_minutes: int = 1500
    max_parallel: int = 4
    #: Blob snapshots one activity deletes at most (a disk with more to go is called again).
    deletes_per_call: int = 50
    #: How idempotent activities are retried after a transient failure (backup.workflow.retries).
    retry: ActivityRetry = field(default_factory=ActivityRetry)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "container": self.container,
            "pollInitialSeconds": self.poll_initial_seconds,
            "pollMaxSeconds": self.poll_max_seconds,
            "waitMinutes": self.wait_minutes,
            "maxParallel": self.max_parallel,
            "deletesPerCall": self.deletes_per_call,
            "retry": self.retry.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> PruneOptions:
        """Rebuild and validate."""
        where = "options"
        data = _object(data, where)
        return cls(
            container=_str(data, "container", where),
            poll_initial_seconds=_int(data, "pollInitialSeconds", where, 1, 3600),
            poll_max_seconds=_int(data, "pollMaxSeconds", where, 1, 3600),
            wait_minutes=_int(data, "waitMinutes", where, 0, 30 * 1440),
            max_parallel=_int(data, "maxParallel", where, 1, 50),
            deletes_per_call=_int(data, "deletesPerCall", where, 1, 1000),
            # Absent from the inputs of prunes started before retries existed: those get the defaults.
            retry=ActivityRetry.from_json(data.get("retry")),
        )


@dataclass(frozen=True)
class PruneInput:
    """The input of the prune orchestrator.

    ``after_run_id``: the run to wait for before pruning (the nightly run that started this prune);
    ``wait_until``: set when the orchestration continues as new while it waits, so the deadline holds.
    ``policy`` is the app's policy (``BACKUP_RETENTION``); a disk's tag may override it.
    """

    trigger: Trigger
    selection: Selection
    policy: str
    options: PruneOptions
    dry_run: bool = False
    after_run_id: str | None = None
    wait_until: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "trigger": self.trigger,
            "selection": self.selection.to_json(),
            "policy": self.policy,
            "dryRun": self.dry_run,
            "afterRunId": self.after_run_id,
            "waitUntil": self.wait_until,
            "options": self.options.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> PruneInput:
        """Rebuild and validate."""
        where = "prune"
        data = _object(data, where)
        trigger = data.get("trigger")
        if trigger not in ("schedule", "http", "cli"):
            raise InvalidInputError(f"{where}.trigger", "must be one of schedule, http, cli")
        after = data.get("afterRunId")
        return cls(
            trigger=trigger,
            selection=Selection.from_json(data.get("selection")),
            policy=_str(data, "policy", where),
            options=PruneOptions.from_json(data.get("options")),
            dry_run=_bool(data, "dryRun", where),
            after_run_id=None if after is None else validate_point_run_id(after, f"{where}.afterRunId"),
            wait_until=_time(data, "waitUntil", where) if data.get("waitUntil") is not None else None,
        )
