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

Snapshots of Premium SSD v2 and Ultra disks fill in the background after their creation succeeded, and
cannot be granted or read until that copy completes: :attr:`Snapshot.ready` (:func:`snapshot_readable`)
reads ``completionPercent`` and ``snapshotAccessState`` to tell.
Restores create disks for *direct upload* (:meth:`ComputeClient.begin_create_upload_disk`: ``createOption:
Upload``, ``uploadSizeBytes`` = disk bytes + 512, ``diskState`` ``ReadyToUpload``), are granted ``Write``
access (``ActiveUpload``; the write SAS takes Put Page / Put Page From URL) and revoked (``Unattached``).
A restore never overwrites a disk. ARM makes no difference between create and update ("a PUT should
always be allowed to overwrite an existing resource", ARM RPC resource-api-reference), DiskRP.json
declares no ``If-Match``/``If-None-Match`` for disks and no ``etag`` on them, and ARM hands non-reserved
headers to the provider as they are; so ``If-None-Match: *`` is sent but not relied on: the disk is looked
up first, and one that exists is refused unless it is this very restore's (tags ``createdBy: diskbackup``
and ``restoreId``), which makes a repeated create safe. Between the look-up and the PUT another writer
could still create the disk; the restore's ``restoreId`` tag, read back after the create, tells.
:meth:`ComputeClient.begin_delete_disk` deletes only a disk carrying this restore's tags.

Grant access answers a SAS: the only secret here. :meth:`ComputeClient.read_access_sas` fetches it from
the finished grant operation (the status body's ``properties.output.accessSAS`` or the ``Location`` final
result's ``accessSAS``) and returns it to its caller, an activity, and to nobody else: it is never logged,
stored in an :class:`LroStatus`, or put into an error.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from backup import vhd
from backup.azure.arm import ArmClient
from backup.azure.lro import LroStatus
from backup.azure.names import (
    MAX_TAG_VALUE_LENGTH,
    validate_new_compute_name,
    validate_tag_name,
    validate_tag_value,
)
from backup.azure.resource_id import (
    ResourceId,
    ResourceType,
    parse_disk_id,
    parse_resource_id,
    parse_snapshot_id,
    parse_storage_account_id,
    validate_resource_group,
    validate_subscription_id,
)
from backup.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PreconditionFailedError,
    UnexpectedResponseError,
)
from backup.redact import get_logger

__all__ = [
    "API_VERSION",
    "BACKGROUND_COPY_SKUS",
    "CREATED_BY",
    "MAX_TAG_VALUE",
    "MAX_UPLOAD_SIZE",
    "MIN_UPLOAD_SIZE",
    "READABLE_ACCESS_STATES",
    "TAG_CREATED_BY",
    "TAG_RESTORE_ID",
    "TAG_RUN_ID",
    "TAG_SOURCE_DISK",
    "ComputeClient",
    "Disk",
    "Snapshot",
    "SnapshotStarted",
    "UploadDiskStarted",
    "copies_in_background",
    "matches_tags",
    "snapshot_name",
    "snapshot_readable",
    "snapshot_tags",
    "source_disk_tag",
    "upload_size_for",
    "validate_run_id",
]

log = get_logger(__name__)

T = TypeVar("T")

API_VERSION = "2026-03-02"
GIB = 1 << 30

TAG_CREATED_BY = "createdBy"
TAG_RUN_ID = "runId"
TAG_SOURCE_DISK = "sourceDiskId"
TAG_RESTORE_ID = "restoreId"
CREATED_BY = "diskbackup"
#: ARM's limit on a tag value's length.
MAX_TAG_VALUE = MAX_TAG_VALUE_LENGTH
#: ARM's limit on the tags of one resource (tag-resources, Limitations).
MAX_TAGS = 50
#: GrantAccessData.durationInSeconds is an int32, but since 15 February 2025 Azure refuses a disk or
#: snapshot SAS longer than 60 days (azure-docs articles/virtual-machines/includes/disks-sas-change.md).
MAX_GRANT_SECONDS = 60 * 24 * 3600
#: Snapshots of these disk types are copied in the background and cannot be read (granted, downloaded,
#: copied) until ``completionPercent`` reaches 100 (learn.microsoft.com: disks-incremental-snapshots,
#: "Check snapshot status"; disks-instant-access-snapshots). Other disk types' snapshots can be read at
#: once, and their ``completionPercent`` always says 100.
BACKGROUND_COPY_SKUS = frozenset({"PremiumV2_LRS", "UltraSSD_LRS"})
#: ``snapshotAccessState`` values (DiskRP 2026-03-02, ``Common.SnapshotAccessState``; an open enum).
SNAPSHOT_ACCESS_STATES = frozenset(
    {"Unknown", "Pending", "Available", "InstantAccess", "AvailableWithInstantAccess"}
)
#: The access states in which a snapshot's data "can be downloaded" and "copied to another region", that
#: is, read through a grant's SAS. ``Pending`` cannot be used at all; ``InstantAccess`` can restore disks
#: but "the underlying data can't be downloaded" until its background copy completes
#: (learn.microsoft.com: disks-instant-access-snapshots, "Check snapshot access state").
READABLE_ACCESS_STATES = frozenset({"Available", "AvailableWithInstantAccess"})
#: ``uploadSizeBytes`` bounds (DiskRP.json CreationData.uploadSizeBytes: "20 MiB + 512 bytes for the VHD
#: footer" to 35,183,298,347,520, which the spec calls 32 TiB + 512 and is 32,767 GiB + 512).
MIN_UPLOAD_SIZE = 20 * (1 << 20) + vhd.FOOTER_SIZE
MAX_UPLOAD_SIZE = 32767 * GIB + vhd.FOOTER_SIZE
_MIB = 1 << 20
_ZONE = re.compile(r"[1-9][0-9]?")

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
    # A disk's name starts with a letter or digit (backup.azure.names), so this name does too; the
    # periods Azure allows in it are not in the spec's characters for names we create.
    disk_part = _NOT_NAME_CHAR.sub("-", disk.name)
    room = 80 - len(run_part) - len(digest) - 2
    name = f"{disk_part[:room]}-{run_part}-{digest}"
    return validate_new_compute_name(name, "snapshot name")


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


# -- background copies (pure) --------------------------------------------------------------------------


def copies_in_background(sku: str | None) -> bool:
    """Whether snapshots of a disk of this SKU are readable only once their background copy completes."""
    return sku in BACKGROUND_COPY_SKUS


def snapshot_readable(
    provisioning_state: str | None,
    completion_percent: float | None,
    access_state: str | None,
    copy_error: str | None = None,
) -> bool:
    """Whether a snapshot in this state can be read through a grant (its data downloaded or copied).

    It must be provisioned, its background copy (if it reports one) at 100 %, without a copy error, and
    its ``snapshotAccessState`` (when it reports one other than the default ``Unknown``) one of
    :data:`READABLE_ACCESS_STATES`. A state this code does not know counts as not readable: waiting for
    it ends at the wait's deadline with the state named, which is better than a grant Azure refuses.
    """
    if provisioning_state != "Succeeded" or copy_error is not None:
        return False
    if completion_percent is not None and completion_percent < 100:
        return False
    return access_state in (None, "Unknown") or access_state in READABLE_ACCESS_STATES


def upload_size_for(disk_bytes: int) -> int:
    """``uploadSizeBytes`` for a disk of ``disk_bytes``: the bytes + the 512-byte VHD footer, checked as
    Compute checks it (whole MiB, 20 MiB to 32,767 GiB), so a bad size fails here and not at the PUT."""
    if isinstance(disk_bytes, bool) or not isinstance(disk_bytes, int):
        raise InvalidInputError("disk size", f"must be a whole number of bytes, got {disk_bytes!r}")
    return _checked_upload_size(disk_bytes + vhd.FOOTER_SIZE)


def _checked_upload_size(upload_size: int) -> int:
    if isinstance(upload_size, bool) or not isinstance(upload_size, int):
        raise InvalidInputError("uploadSizeBytes", f"must be a whole number of bytes, got {upload_size!r}")
    if not MIN_UPLOAD_SIZE <= upload_size <= MAX_UPLOAD_SIZE:
        raise InvalidInputError(
            "uploadSizeBytes",
            f"{upload_size} is outside {MIN_UPLOAD_SIZE}-{MAX_UPLOAD_SIZE} (20 MiB to 32,767 GiB, + 512)",
        )
    if (upload_size - vhd.FOOTER_SIZE) % _MIB:
        raise InvalidInputError(
            "uploadSizeBytes",
            f"{upload_size} - 512 bytes for the VHD footer is not a whole number of MiB",
        )
    return upload_size


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
    create_option: str | None = None  # creationData.createOption
    upload_size_bytes: int | None = None  # creationData.uploadSizeBytes (Upload disks)

    @property
    def resource_id(self) -> ResourceId:
        """The parsed ID."""
        return parse_disk_id(self.id)

    @property
    def snapshot_copies_in_background(self) -> bool:
        """Whether a snapshot of this disk is usable only after ``completionPercent`` reaches 100.

        Premium SSD v2 and Ultra disks: their (incremental) snapshots fill in the background.
        """
        return copies_in_background(self.sku)

    @classmethod
    def from_arm(cls, body: Any) -> Disk:
        """Read an ARM ``Disk`` body; :class:`UnexpectedResponseError` names what is wrong in it."""
        data, properties = _resource_body(body, "disk")
        creation = properties.get("creationData")
        creation = creation if isinstance(creation, Mapping) else {}
        upload_size = creation.get("uploadSizeBytes")
        return cls(
            id=_answered_id(parse_disk_id, data["id"], "disk.id"),
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
            create_option=_opt_str(creation.get("createOption")),
            upload_size_bytes=upload_size
            if isinstance(upload_size, int) and not isinstance(upload_size, bool)
            else None,
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
    completion_percent: float | None = None  # 0-100: the background copy's progress
    access_state: str | None = None  # snapshotAccessState
    disk_state: str | None = None  # ActiveSAS while a grant is open
    copy_error: str | None = None  # copyCompletionError, as "code: message"

    @property
    def resource_id(self) -> ResourceId:
        """The parsed ID."""
        return parse_snapshot_id(self.id)

    @property
    def ready(self) -> bool:
        """Whether the snapshot can be read through a grant: :func:`snapshot_readable` of its state."""
        return snapshot_readable(
            self.provisioning_state, self.completion_percent, self.access_state, self.copy_error
        )

    @classmethod
    def from_arm(cls, body: Any) -> Snapshot:
        """Read an ARM ``Snapshot`` body; :class:`UnexpectedResponseError` names what is wrong in it."""
        data, properties = _resource_body(body, "snapshot")
        creation = properties.get("creationData")
        creation = creation if isinstance(creation, Mapping) else {}
        return cls(
            id=_answered_id(parse_snapshot_id, data["id"], "snapshot.id"),
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
            completion_percent=_completion_percent(properties),
            access_state=_access_state(properties),
            disk_state=_opt_str(properties.get("diskState")),
            copy_error=_copy_error(properties),
        )


@dataclass(frozen=True)
class SnapshotStarted:
    """A snapshot creation in flight: the snapshot's ID and the operation to poll."""

    snapshot_id: str
    operation: LroStatus


@dataclass(frozen=True)
class UploadDiskStarted:
    """A disk made for upload: its ID and the creation to poll, or ``None`` when this same restore had
    already created it (a repeated call): then ``state`` and ``provisioning_state`` are the disk's
    (wait for ``Succeeded`` before granting access)."""

    disk_id: str
    operation: LroStatus | None
    state: str | None = None
    provisioning_state: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, for an activity's return value."""
        return {
            "disk_id": self.disk_id,
            "operation": self.operation.to_dict() if self.operation is not None else None,
            "state": self.state,
            "provisioning_state": self.provisioning_state,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UploadDiskStarted:
        """The inverse of :meth:`to_dict`, checked (the dict comes from outside)."""
        names = {"disk_id", "operation", "state", "provisioning_state"}
        if not isinstance(data, Mapping) or set(data) - names:
            raise InvalidInputError("upload disk", f"must be an object of {', '.join(sorted(names))}")
        operation = data.get("operation")
        texts = {name: data.get(name) for name in ("state", "provisioning_state")}
        for name, value in texts.items():
            if value is not None and not isinstance(value, str):
                raise InvalidInputError(f"upload disk.{name}", "must be a string")
        return cls(
            disk_id=str(parse_disk_id(str(data.get("disk_id", "")), "upload disk.disk_id")),
            operation=LroStatus.from_dict(operation) if operation is not None else None,
            state=texts["state"],
            provisioning_state=texts["provisioning_state"],
        )


# -- the client ----------------------------------------------------------------------------------------


class ComputeClient:
    """Compute operations on disks and snapshots through one :class:`ArmClient`."""

    def __init__(self, arm: ArmClient) -> None:
        self.arm = arm

    # -- disks ---------------------------------------------------------------------------------------

    def get_disk(self, disk_id: str | ResourceId) -> Disk:
        """The disk ``disk_id``; :class:`~backup.errors.NotFoundError` if it does not exist."""
        rid = _as_id(disk_id, "disks", "disk id")
        body = self.arm.get(rid.path, api_version=API_VERSION)
        with self._reading("GET", rid.path):
            return Disk.from_arm(body)

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
            _read_listed(Disk.from_arm, item)
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

    def get_disk_state(self, disk_id: str | ResourceId) -> str | None:
        """The disk's ``diskState`` (``ReadyToUpload``, ``ActiveUpload``, ``Unattached``, ``ActiveSAS``...).

        :class:`~backup.errors.NotFoundError` if it does not exist.
        """
        return self.get_disk(disk_id).state

    def begin_create_upload_disk(
        self,
        disk_id: str | ResourceId,
        *,
        location: str,
        upload_size_bytes: int,
        sku: str,
        restore_id: str,
        zone: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> UploadDiskStarted:
        """Create disk ``disk_id`` for direct upload, never over an existing disk (see the module docstring).

        ``upload_size_bytes`` is the disk's bytes + 512 (:func:`upload_size_for`). ``restore_id`` names
        the restore (letters, digits, ``_ . : @ -``): the disk is tagged with it (``restoreId``, and
        ``createdBy: diskbackup``), so a repeated call finds its own disk and answers it instead of a
        second PUT. Any other existing disk: :class:`~backup.errors.ConflictError` (``DiskAlreadyExists``).
        """
        rid = _as_new_id(disk_id, "disks", "disk id")
        location = _checked_location(location)
        upload_size = _checked_upload_size(upload_size_bytes)
        if not isinstance(sku, str) or not sku.strip():
            raise InvalidInputError("sku", "must name a disk SKU, e.g. Premium_LRS")
        if zone is not None and (not isinstance(zone, str) or not _ZONE.fullmatch(zone)):
            raise InvalidInputError("zone", f"must be an availability zone number like '1', got {zone!r}")
        claim = validate_run_id(restore_id)
        own_tags = {TAG_CREATED_BY: CREATED_BY, TAG_RESTORE_ID: claim}
        # Tag names are case-insensitive in ARM: a caller's "CreatedBy" must not stand beside ours.
        theirs = {k: v for k, v in (tags or {}).items() if k.lower() not in {n.lower() for n in own_tags}}
        all_tags = _checked_tags({**theirs, **own_tags})
        existing = self._own_upload_disk(rid, claim, upload_size)
        if existing is not None:
            return UploadDiskStarted(str(rid), None, existing.state, existing.provisioning_state)
        body: dict[str, Any] = {
            "location": location,
            "sku": {"name": sku},
            "tags": all_tags,
            "properties": {"creationData": {"createOption": "Upload", "uploadSizeBytes": upload_size}},
        }
        if zone is not None:
            body["zones"] = [zone]
        try:
            operation = self.arm.begin(
                "PUT", rid.path, api_version=API_VERSION, body=body, headers={"If-None-Match": "*"}
            )
        except PreconditionFailedError:
            # Compute honoured If-None-Match: the disk exists. Ours (a retried PUT that had landed)?
            existing = self._own_upload_disk(rid, claim, upload_size)
            if existing is None:
                raise
            return UploadDiskStarted(str(rid), None, existing.state, existing.provisioning_state)
        return UploadDiskStarted(str(rid), operation)

    def _own_upload_disk(self, rid: ResourceId, restore_id: str, upload_size: int) -> Disk | None:
        """``None`` if the disk does not exist; the disk if this restore made it; else ConflictError."""
        try:
            disk = self.get_disk(rid)
        except NotFoundError:
            return None
        ours = (
            matches_tags(disk.tags, {TAG_CREATED_BY: CREATED_BY, TAG_RESTORE_ID: restore_id})
            and (disk.create_option or "").lower() == "upload"
            and disk.upload_size_bytes == upload_size
        )
        if not ours:
            raise ConflictError(
                status=409,
                code="DiskAlreadyExists",
                error_message=f"the disk {rid} already exists; a restore never writes over a disk",
            )
        return disk

    def begin_delete_disk(self, disk_id: str | ResourceId, *, restore_id: str) -> LroStatus | None:
        """Start deleting a disk that restore ``restore_id`` created; ``None`` if it is gone already.

        Any other disk is refused (:class:`~backup.errors.ConflictError`, ``DiskNotOwned``): this
        deletes only what a restore made (a half-made disk, a temporary disk of a restore test). Safe to
        retry. A disk with an active SAS or ``ActiveUpload`` must be revoked first (Azure answers 409).
        """
        rid = _as_id(disk_id, "disks", "disk id")
        claim = validate_run_id(restore_id)
        try:
            disk = self.get_disk(rid)
        except NotFoundError:
            return None
        if not matches_tags(disk.tags, {TAG_CREATED_BY: CREATED_BY, TAG_RESTORE_ID: claim}):
            raise ConflictError(
                status=409,
                code="DiskNotOwned",
                error_message=f"the disk {rid} was not created by restore {claim}; it is not deleted",
            )
        return self.arm.begin("DELETE", rid.path, api_version=API_VERSION)

    # -- snapshots -----------------------------------------------------------------------------------

    def get_snapshot(self, snapshot_id: str | ResourceId) -> Snapshot:
        """The snapshot ``snapshot_id``; :class:`~backup.errors.NotFoundError` if it does not exist."""
        rid = _as_id(snapshot_id, "snapshots", "snapshot id")
        body = self.arm.get(rid.path, api_version=API_VERSION)
        with self._reading("GET", rid.path):
            return Snapshot.from_arm(body)

    def list_snapshots(
        self,
        subscription_id: str,
        resource_group: str | None = None,
        *,
        tags: Mapping[str, str | None] | None = None,
    ) -> list[Snapshot]:
        """Every snapshot of a subscription or resource group with all ``tags`` (filtered here)."""
        return [
            _read_listed(Snapshot.from_arm, item)
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

    def begin_grant_access(
        self,
        resource_id: str | ResourceId,
        duration_seconds: int,
        *,
        access: Literal["Read", "Write"] = "Read",
    ) -> LroStatus:
        """Start granting access to a snapshot or disk for ``duration_seconds``: ``Read``, or ``Write`` on
        a disk made for upload (its write SAS takes Put Page and Put Page From URL).

        The SAS is not in the answer: fetch it with :meth:`read_access_sas` once the operation succeeded.
        Safe to retry: a repeated grant on the same resource replaces the SAS (a write grant keeps what
        was uploaded), and revoking ends them all.
        """
        rid = _as_id(resource_id, None, "resource id")
        if access not in ("Read", "Write"):
            raise InvalidInputError("access", f"must be Read or Write, got {access!r}")
        if access == "Write" and rid.resource_type != "disks":
            raise InvalidInputError("access", "Write access is granted only on a disk made for upload")
        if isinstance(duration_seconds, bool) or not isinstance(duration_seconds, int):
            raise InvalidInputError("durationSeconds", "must be an integer number of seconds")
        if not 1 <= duration_seconds <= MAX_GRANT_SECONDS:
            raise InvalidInputError("durationSeconds", f"must be between 1 and {MAX_GRANT_SECONDS}")
        body = {"access": access, "durationInSeconds": duration_seconds}
        return self.arm.begin(
            "POST", f"{rid.path}/beginGetAccess", api_version=API_VERSION, body=body, idempotent=True
        )

    def read_access_sas(self, grant: LroStatus) -> str:
        """The SAS URL a succeeded grant-access operation issued (one GET of its result): a read SAS, or
        a disk's write SAS after a ``Write`` grant.

        A secret: for the activity that uses it (starts the copy, writes the pages), and nobody else.
        """
        if grant.method != "POST" or not urlsplit(grant.resource_url).path.lower().endswith(
            "/begingetaccess"
        ):
            raise InvalidInputError("grant", "is not a grant-access (beginGetAccess) operation")
        result = self.arm.fetch_result(grant)
        sas = result.get("accessSAS") if result else None
        with self._reading("GET", grant.result_url):
            if not isinstance(sas, str) or not sas:
                raise UnexpectedResponseError("grant result", "has no accessSAS")
            parts = urlsplit(sas)
            if parts.scheme not in ("https", "http") or not parts.netloc or not parts.query:
                # Never show the value: it may be a SAS that is merely malformed.
                raise UnexpectedResponseError("grant result", "accessSAS is not a URL with a SAS token")
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

    @contextmanager
    def _reading(self, method: str, path_or_url: str | None) -> Iterator[None]:
        """An :class:`UnexpectedResponseError` about a body read here names the request it answered."""
        try:
            yield
        except UnexpectedResponseError as exc:
            url = path_or_url
            if url is not None and url.startswith("/"):
                url = self.arm.url(url, API_VERSION)
            raise exc.for_request(method=method, url=url, request_id=None) from None

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
    validate_new_compute_name(rid.name, f"{field}: name")
    return rid


def _checked_location(location: str) -> str:
    if not isinstance(location, str) or not location.strip():
        raise InvalidInputError("location", "must not be empty")
    return location


def _blob_url(value: str) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("https", "http") or not parts.netloc or parts.path in ("", "/"):
        raise InvalidInputError("sourceUri", "must be the absolute URL of a blob")
    return value


def _checked_tags(tags: Mapping[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise InvalidInputError("tags", f"at most {MAX_TAGS} tags per resource")
    for name, value in tags.items():
        validate_tag_name(name, "tags")
        validate_tag_value(value, f"tags.{name}")
    return dict(tags)


def _answered_id(parse: Callable[[str, str], ResourceId], value: str, field: str) -> str:
    """A resource ID ARM answered with, parsed: a malformed one is ARM's fault, not the caller's."""
    try:
        return str(parse(value, field))
    except InvalidInputError as exc:
        raise UnexpectedResponseError(exc.field, exc.problem) from None


def _read_listed(read: Callable[[Any], T], item: Any) -> T:
    """One item of a list answer, read; an unreadable one names itself (its ID, when it has one)."""
    try:
        return read(item)
    except UnexpectedResponseError as exc:
        shown = item.get("id") if isinstance(item, Mapping) else None
        where = f"list item {shown}" if isinstance(shown, str) else "list item"
        raise UnexpectedResponseError(f"{where}: {exc.field}", exc.problem) from None


def _resource_body(body: Any, what: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    if not isinstance(body, Mapping):
        raise UnexpectedResponseError(what, "expected a JSON object")
    for name in ("id", "name", "location"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise UnexpectedResponseError(f"{what}.{name}", "missing or not a string")
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


def _completion_percent(properties: Mapping[str, Any]) -> float | None:
    value = properties.get("completionPercent")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise InvalidInputError(
            "snapshot.properties.completionPercent", f"must be a number from 0 to 100, not {value!r:.40}"
        )
    return float(value)


def _access_state(properties: Mapping[str, Any]) -> str | None:
    value = properties.get("snapshotAccessState")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInputError("snapshot.properties.snapshotAccessState", "must be a non-empty string")
    # An open enum ("modelAsString"): a value Azure adds later is kept as it is, in the casing of the spec
    # for the ones we know (ARM compares enum values case-insensitively).
    known = {state.lower(): state for state in SNAPSHOT_ACCESS_STATES}
    return known.get(value.lower(), value)


def _copy_error(properties: Mapping[str, Any]) -> str | None:
    value = properties.get("copyCompletionError")
    if value is None:
        return None
    code = value.get("errorCode") if isinstance(value, Mapping) else None
    message = value.get("errorMessage") if isinstance(value, Mapping) else None
    if not isinstance(code, str) or not code or not isinstance(message, str):
        raise InvalidInputError(
            "snapshot.properties.copyCompletionError", "must be an object with errorCode and errorMessage"
        )
    return f"{code}: {message}" if message else code


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
