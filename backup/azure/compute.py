"""Managed disks and snapshots (Microsoft.Compute, API version 2026-03-02) on :class:`ArmClient`.

Reads answer small frozen dataclasses (:class:`Disk`, :class:`Snapshot`). Changes are long-running
operations: each ``begin_*`` sends one request and answers the operation's
:class:`~backup.azure.lro.LroStatus`; :meth:`ComputeClient.poll` makes one poll. The orchestrator waits in
between.

Snapshots we take are named by :func:`snapshot_name` (deterministic per run and disk, so a retried PUT
names the same snapshot and cannot make a second one) and tagged by :func:`snapshot_tags`:

- ``createdBy: diskbackup``;
- ``runId``: the backup run;
- ``sourceDiskId``: the source disk's ID in lower case, so one disk always yields one value whatever
  casing its ID was given in. A tag value holds at most 256 characters and a disk ID can reach 272 (90
  for the resource group, 80 for the name); such an ID is tagged ``sha256:<hex of the lower-case ID>``
  instead. :func:`source_disk_tag` computes the value both for tagging and for searching. The snapshot's
  own ``creationData.sourceResourceId`` (read-only, set by Azure) stays the authoritative link; the tag is
  for finding snapshots by disk with a tag filter.

Grant access answers a SAS: the only secret here. :meth:`ComputeClient.read_access_sas` fetches it from
the finished grant operation (the status body's ``properties.output.accessSAS`` or the ``Location`` final
result's ``accessSAS``) and returns it to its caller, an activity, and to nobody else: it is never logged,
stored in an :class:`LroStatus`, or put into an error.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from backup.azure.arm import ArmClient
from backup.azure.lro import LroStatus
from backup.azure.resource_id import (
    ResourceId,
    ResourceType,
    parse_disk_id,
    parse_resource_id,
    parse_snapshot_id,
    parse_storage_account_id,
    validate_new_name,
    validate_resource_group,
    validate_subscription_id,
)
from backup.errors import InvalidInputError
from backup.redact import get_logger

__all__ = [
    "API_VERSION",
    "CREATED_BY",
    "MAX_TAG_VALUE",
    "TAG_CREATED_BY",
    "TAG_RUN_ID",
    "TAG_SOURCE_DISK",
    "ComputeClient",
    "Disk",
    "Snapshot",
    "SnapshotStarted",
    "matches_tags",
    "snapshot_name",
    "snapshot_tags",
    "source_disk_tag",
    "validate_run_id",
]

log = get_logger(__name__)

API_VERSION = "2026-03-02"
GIB = 1 << 30

TAG_CREATED_BY = "createdBy"
TAG_RUN_ID = "runId"
TAG_SOURCE_DISK = "sourceDiskId"
CREATED_BY = "diskbackup"
#: ARM's limit on a tag value's length.
MAX_TAG_VALUE = 256
#: GrantAccessData.durationInSeconds is an int32.
MAX_GRANT_SECONDS = 2**31 - 1
#: Snapshots of these disk types are copied in the background: wait for completionPercent 100.
BACKGROUND_COPY_SKUS = frozenset({"PremiumV2_LRS", "UltraSSD_LRS"})

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}")
_NOT_NAME_CHAR = re.compile(r"[^A-Za-z0-9_-]")
_HASH_LENGTH = 12
_RUN_PART_MAX = 30


# -- names and tags (pure) -----------------------------------------------------------------------------


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is 1-100 characters of letters, digits and ``_ . : @ -``; else raise."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise InvalidInputError(
            "run id",
            "1-100 characters of letters, digits, '_', '.', ':', '@' and '-', starting with a letter or "
            f"digit; got {run_id!r}",
        )
    return run_id


def snapshot_name(run_id: str, disk_id: str | ResourceId) -> str:
    """The name of the snapshot run ``run_id`` takes of disk ``disk_id``: deterministic, at most 80 chars.

    ``{disk name}-{run id}-{hash}``, with characters ARM refuses in a name turned into ``-`` and the disk
    name cut to fit. The hash (12 hex digits of SHA-256 over the run id and the lower-cased disk *ID*)
    keeps names distinct when cutting or character replacement would not: two long names sharing a
    prefix, run ids differing only in punctuation, or two disks of one name in different resource
    groups whose snapshots share a resource group.
    """
    validate_run_id(run_id)
    disk = disk_id if isinstance(disk_id, ResourceId) else parse_disk_id(disk_id)
    digest = hashlib.sha256(f"{run_id}\n{disk.key}".encode()).hexdigest()[:_HASH_LENGTH]
    run_part = _NOT_NAME_CHAR.sub("-", run_id)[:_RUN_PART_MAX]
    # Azure wants a name to start with a letter or digit; a disk name from Azure may not (we accept
    # those on reading), so leading punctuation is dropped.
    disk_part = _NOT_NAME_CHAR.sub("-", disk.name).lstrip("-_") or "disk"
    room = 80 - len(run_part) - len(digest) - 2
    name = f"{disk_part[:room]}-{run_part}-{digest}"
    return validate_new_name(name, "snapshot name")


def source_disk_tag(disk_id: str | ResourceId) -> str:
    """The ``sourceDiskId`` tag value for a disk (see the module docstring)."""
    disk = disk_id if isinstance(disk_id, ResourceId) else parse_disk_id(disk_id)
    if len(disk.key) <= MAX_TAG_VALUE:
        return disk.key
    return "sha256:" + hashlib.sha256(disk.key.encode()).hexdigest()


def snapshot_tags(disk_id: str | ResourceId, run_id: str) -> dict[str, str]:
    """The tags of a snapshot taken by run ``run_id`` of disk ``disk_id``."""
    return {
        TAG_CREATED_BY: CREATED_BY,
        TAG_RUN_ID: validate_run_id(run_id),
        TAG_SOURCE_DISK: source_disk_tag(disk_id),
    }


def matches_tags(tags: Mapping[str, str], wanted: Mapping[str, str | None]) -> bool:
    """Whether ``tags`` has every wanted tag; a ``None`` value asks only that the tag exists.

    Tag names compare case-insensitively and values exactly, as ARM's tag filters do.
    """
    lowered = {name.lower(): value for name, value in tags.items()}
    for name, value in wanted.items():
        have = lowered.get(name.lower())
        if have is None or (value is not None and have != value):
            return False
    return True


# -- what ARM answers, as small values ----------------------------------------------------------------


@dataclass(frozen=True)
class Disk:
    """A managed disk, as a backup needs to know it."""

    id: str
    name: str
    location: str
    size_bytes: int | None
    sku: str | None
    state: str | None  # diskState: Unattached, Attached, ActiveSAS, ...
    provisioning_state: str | None
    tags: dict[str, str] = field(default_factory=dict)
    unique_id: str | None = None
    managed_by: str | None = None
    zones: tuple[str, ...] = ()
    time_created: str | None = None

    @property
    def resource_id(self) -> ResourceId:
        """The parsed ID."""
        return parse_disk_id(self.id)

    @property
    def snapshot_copies_in_background(self) -> bool:
        """Whether a snapshot of this disk is usable only after ``completionPercent`` reaches 100.

        Premium SSD v2 and Ultra disks: their (incremental) snapshots fill in the background.
        """
        return self.sku in BACKGROUND_COPY_SKUS

    @classmethod
    def from_arm(cls, body: Any) -> Disk:
        """Read an ARM ``Disk`` body; raise :class:`InvalidInputError` naming what is missing."""
        data, properties = _resource_body(body, "disk")
        return cls(
            id=str(parse_disk_id(data["id"], "disk.id")),
            name=data["name"],
            location=data["location"],
            size_bytes=_size_bytes(properties),
            sku=_sku(data),
            state=_opt_str(properties.get("diskState")),
            provisioning_state=_opt_str(properties.get("provisioningState")),
            tags=_tags(data),
            unique_id=_opt_str(properties.get("uniqueId")),
            managed_by=_opt_str(data.get("managedBy")),
            zones=tuple(z for z in data.get("zones") or () if isinstance(z, str)),
            time_created=_opt_str(properties.get("timeCreated")),
        )


@dataclass(frozen=True)
class Snapshot:
    """A snapshot of a managed disk."""

    id: str
    name: str
    location: str
    incremental: bool
    family_id: str | None  # incrementalSnapshotFamilyId
    size_bytes: int | None
    source_disk_id: str | None  # creationData.sourceResourceId
    source_unique_id: str | None
    provisioning_state: str | None
    time_created: str | None
    tags: dict[str, str] = field(default_factory=dict)
    sku: str | None = None
    completion_percent: float | None = None
    access_state: str | None = None  # snapshotAccessState
    disk_state: str | None = None  # ActiveSAS while a grant is open

    @property
    def resource_id(self) -> ResourceId:
        """The parsed ID."""
        return parse_snapshot_id(self.id)

    @property
    def ready(self) -> bool:
        """Provisioned and, where the copy runs in the background, fully copied."""
        if self.provisioning_state != "Succeeded":
            return False
        return self.completion_percent is None or self.completion_percent >= 100

    @classmethod
    def from_arm(cls, body: Any) -> Snapshot:
        """Read an ARM ``Snapshot`` body; raise :class:`InvalidInputError` naming what is missing."""
        data, properties = _resource_body(body, "snapshot")
        creation = properties.get("creationData")
        creation = creation if isinstance(creation, Mapping) else {}
        percent = properties.get("completionPercent")
        return cls(
            id=str(parse_snapshot_id(data["id"], "snapshot.id")),
            name=data["name"],
            location=data["location"],
            incremental=properties.get("incremental") is True,
            family_id=_opt_str(properties.get("incrementalSnapshotFamilyId")),
            size_bytes=_size_bytes(properties),
            source_disk_id=_opt_str(creation.get("sourceResourceId")),
            source_unique_id=_opt_str(creation.get("sourceUniqueId")),
            provisioning_state=_opt_str(properties.get("provisioningState")),
            time_created=_opt_str(properties.get("timeCreated")),
            tags=_tags(data),
            sku=_sku(data),
            completion_percent=float(percent) if isinstance(percent, int | float) else None,
            access_state=_opt_str(properties.get("snapshotAccessState")),
            disk_state=_opt_str(properties.get("diskState")),
        )


@dataclass(frozen=True)
class SnapshotStarted:
    """A snapshot creation in flight: the snapshot's ID and the operation to poll."""

    snapshot_id: str
    operation: LroStatus


# -- the client ----------------------------------------------------------------------------------------


class ComputeClient:
    """Compute operations on disks and snapshots through one :class:`ArmClient`."""

    def __init__(self, arm: ArmClient) -> None:
        self.arm = arm

    # -- disks ---------------------------------------------------------------------------------------

    def get_disk(self, disk_id: str | ResourceId) -> Disk:
        """The disk ``disk_id``; :class:`~backup.errors.NotFoundError` if it does not exist."""
        rid = _as_id(disk_id, "disks", "disk id")
        return Disk.from_arm(self.arm.get(rid.path, api_version=API_VERSION))

    def list_disks(
        self,
        subscription_id: str,
        resource_group: str | None = None,
        *,
        tags: Mapping[str, str | None] | None = None,
    ) -> list[Disk]:
        """Every disk of a subscription, or of one resource group, that has all ``tags``.

        ARM's disk list has no tag filter, so :func:`matches_tags` is applied here, page by page.
        """
        return [
            Disk.from_arm(item)
            for item in self._list("disks", subscription_id, resource_group)
            if tags is None or matches_tags(_tags(item), tags)
        ]

    def begin_create_disk_from_blob(
        self,
        disk_id: str | ResourceId,
        *,
        location: str,
        source_uri: str,
        storage_account_id: str,
        sku: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> LroStatus:
        """Start creating disk ``disk_id`` from a VHD page blob (``createOption: Import``).

        ``storage_account_id`` is the account holding the blob (the spec requires it for Import).
        """
        rid = _as_new_id(disk_id, "disks", "disk id")
        creation = {
            "createOption": "Import",
            "sourceUri": _blob_url(source_uri),
            "storageAccountId": parse_storage_account_id(storage_account_id),
        }
        return self._begin_put(rid, location, creation, sku=sku, tags=tags)

    def begin_create_disk_from_snapshot(
        self,
        disk_id: str | ResourceId,
        *,
        location: str,
        snapshot_id: str | ResourceId,
        sku: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> LroStatus:
        """Start creating disk ``disk_id`` as a copy of a snapshot (``createOption: Copy``)."""
        rid = _as_new_id(disk_id, "disks", "disk id")
        source = _as_id(snapshot_id, "snapshots", "snapshot id")
        creation = {"createOption": "Copy", "sourceResourceId": str(source)}
        return self._begin_put(rid, location, creation, sku=sku, tags=tags)

    # -- snapshots -----------------------------------------------------------------------------------

    def get_snapshot(self, snapshot_id: str | ResourceId) -> Snapshot:
        """The snapshot ``snapshot_id``; :class:`~backup.errors.NotFoundError` if it does not exist."""
        rid = _as_id(snapshot_id, "snapshots", "snapshot id")
        return Snapshot.from_arm(self.arm.get(rid.path, api_version=API_VERSION))

    def list_snapshots(
        self,
        subscription_id: str,
        resource_group: str | None = None,
        *,
        tags: Mapping[str, str | None] | None = None,
    ) -> list[Snapshot]:
        """Every snapshot of a subscription or resource group with all ``tags`` (filtered here)."""
        return [
            Snapshot.from_arm(item)
            for item in self._list("snapshots", subscription_id, resource_group)
            if tags is None or matches_tags(_tags(item), tags)
        ]

    def begin_create_snapshot(
        self,
        disk_id: str | ResourceId,
        *,
        location: str,
        run_id: str,
        incremental: bool = True,
        resource_group: str | None = None,
    ) -> SnapshotStarted:
        """Start a snapshot of disk ``disk_id`` (``createOption: Copy``), named by :func:`snapshot_name`.

        The snapshot lives in ``location`` (the disk's region: ARM requires it) and in
        ``resource_group`` of the disk's subscription (default: the disk's own group). The PUT is safe to
        retry: its name is fixed by run and disk, so a repeat can only meet the same snapshot.
        """
        disk = _as_id(disk_id, "disks", "disk id")
        group = validate_resource_group(resource_group) if resource_group else disk.resource_group
        target = ResourceId(disk.subscription_id, group, "snapshots", snapshot_name(run_id, disk))
        creation = {"createOption": "Copy", "sourceResourceId": str(disk)}
        operation = self._begin_put(
            target,
            location,
            creation,
            tags=snapshot_tags(disk, run_id),
            incremental=incremental,
        )
        return SnapshotStarted(str(target), operation)

    def begin_update_snapshot_tags(self, snapshot_id: str | ResourceId, tags: Mapping[str, str]) -> LroStatus:
        """Start replacing a snapshot's tags with ``tags`` (``Snapshots_Update``, PATCH).

        A PATCH's tags replace the old ones whole: to add a tag, send the old ones with it. Safe to retry.
        """
        rid = _as_id(snapshot_id, "snapshots", "snapshot id")
        return self.arm.begin("PATCH", rid.path, api_version=API_VERSION, body={"tags": _checked_tags(tags)})

    def begin_delete_snapshot(self, snapshot_id: str | ResourceId) -> LroStatus:
        """Start deleting a snapshot (safe to retry: deleting twice leaves the same state)."""
        rid = _as_id(snapshot_id, "snapshots", "snapshot id")
        return self.arm.begin("DELETE", rid.path, api_version=API_VERSION)

    # -- access --------------------------------------------------------------------------------------

    def begin_grant_access(self, resource_id: str | ResourceId, duration_seconds: int) -> LroStatus:
        """Start granting read access to a snapshot or disk for ``duration_seconds``.

        The SAS is not in the answer: fetch it with :meth:`read_access_sas` once the operation succeeded.
        Safe to retry: a repeated grant on the same resource replaces the SAS, and revoking ends them all.
        """
        rid = _as_id(resource_id, None, "resource id")
        if isinstance(duration_seconds, bool) or not isinstance(duration_seconds, int):
            raise InvalidInputError("durationSeconds", "must be an integer number of seconds")
        if not 1 <= duration_seconds <= MAX_GRANT_SECONDS:
            raise InvalidInputError("durationSeconds", f"must be between 1 and {MAX_GRANT_SECONDS}")
        body = {"access": "Read", "durationInSeconds": duration_seconds}
        return self.arm.begin(
            "POST", f"{rid.path}/beginGetAccess", api_version=API_VERSION, body=body, idempotent=True
        )

    def read_access_sas(self, grant: LroStatus) -> str:
        """The SAS URL a succeeded grant-access operation issued (one GET of its result).

        A secret: for the activity that starts the copy, and nobody else.
        """
        if grant.method != "POST" or not urlsplit(grant.resource_url).path.lower().endswith(
            "/begingetaccess"
        ):
            raise InvalidInputError("grant", "is not a grant-access (beginGetAccess) operation")
        result = self.arm.fetch_result(grant)
        sas = result.get("accessSAS") if result else None
        if not isinstance(sas, str) or not sas:
            raise InvalidInputError("grant result", "has no accessSAS")
        parts = urlsplit(sas)
        if parts.scheme not in ("https", "http") or not parts.netloc or not parts.query:
            # Never show the value: it may be a SAS that is merely malformed.
            raise InvalidInputError("grant result", "accessSAS is not a URL with a SAS token")
        return sas

    def begin_revoke_access(self, resource_id: str | ResourceId) -> LroStatus:
        """Start revoking access to a snapshot or disk (safe to retry; harmless if none was granted)."""
        rid = _as_id(resource_id, None, "resource id")
        return self.arm.begin("POST", f"{rid.path}/endGetAccess", api_version=API_VERSION, idempotent=True)

    # -- operations ----------------------------------------------------------------------------------

    def poll(self, operation: LroStatus) -> LroStatus:
        """One poll of a compute operation."""
        return self.arm.poll(operation)

    # -- internals -----------------------------------------------------------------------------------

    def _list(self, kind: str, subscription_id: str, resource_group: str | None) -> Iterator[dict[str, Any]]:
        scope = f"/subscriptions/{validate_subscription_id(subscription_id)}"
        if resource_group is not None:
            scope += f"/resourceGroups/{validate_resource_group(resource_group)}"
        for page in self.arm.list_pages(
            f"{scope}/providers/Microsoft.Compute/{kind}", api_version=API_VERSION
        ):
            yield from page

    def _begin_put(
        self,
        rid: ResourceId,
        location: str,
        creation: dict[str, Any],
        *,
        sku: str | None = None,
        tags: Mapping[str, str] | None = None,
        incremental: bool | None = None,
    ) -> LroStatus:
        if not isinstance(location, str) or not location.strip():
            raise InvalidInputError("location", "must not be empty")
        properties: dict[str, Any] = {"creationData": creation}
        if incremental is not None:
            properties["incremental"] = incremental
        body: dict[str, Any] = {"location": location, "properties": properties}
        if tags:
            body["tags"] = _checked_tags(tags)
        if sku is not None:
            body["sku"] = {"name": sku}
        return self.arm.begin("PUT", rid.path, api_version=API_VERSION, body=body)


# -- small pieces --------------------------------------------------------------------------------------


def _as_id(value: str | ResourceId, kind: ResourceType | None, field: str) -> ResourceId:
    if isinstance(value, ResourceId):
        if kind is not None and value.resource_type != kind:
            raise InvalidInputError(field, f"must be a {kind[:-1]} ID, got a {value.resource_type[:-1]} ID")
        return value
    return parse_resource_id(value, field, kind)


def _as_new_id(value: str | ResourceId, kind: ResourceType, field: str) -> ResourceId:
    rid = _as_id(value, kind, field)
    validate_new_name(rid.name, f"{field}: name")
    return rid


def _blob_url(value: str) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("https", "http") or not parts.netloc or parts.path in ("", "/"):
        raise InvalidInputError("sourceUri", "must be the absolute URL of a blob")
    return value


def _checked_tags(tags: Mapping[str, str]) -> dict[str, str]:
    if len(tags) > 50:
        raise InvalidInputError("tags", "at most 50 tags per resource")
    for name, value in tags.items():
        if not isinstance(name, str) or not 1 <= len(name) <= 512 or any(c in name for c in "<>%&\\?/"):
            raise InvalidInputError("tags", f"invalid tag name {name!r}")
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE:
            raise InvalidInputError("tags", f"tag {name!r}: the value must be a string of at most 256 chars")
    return dict(tags)


def _resource_body(body: Any, what: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    if not isinstance(body, Mapping):
        raise InvalidInputError(what, "expected a JSON object")
    for name in ("id", "name", "location"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise InvalidInputError(f"{what}.{name}", "missing or not a string")
    properties = body.get("properties")
    return body, properties if isinstance(properties, Mapping) else {}


def _size_bytes(properties: Mapping[str, Any]) -> int | None:
    exact = properties.get("diskSizeBytes")
    if isinstance(exact, int) and not isinstance(exact, bool) and exact > 0:
        return exact
    gib = properties.get("diskSizeGB")
    if isinstance(gib, int) and not isinstance(gib, bool) and gib > 0:
        return gib * GIB
    return None


def _sku(data: Mapping[str, Any]) -> str | None:
    sku = data.get("sku")
    return _opt_str(sku.get("name")) if isinstance(sku, Mapping) else None


def _tags(data: Mapping[str, Any]) -> dict[str, str]:
    tags = data.get("tags")
    if not isinstance(tags, Mapping):
        return {}
    return {str(k): v for k, v in tags.items() if isinstance(v, str)}


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
