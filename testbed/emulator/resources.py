"""The emulated Compute resources: disks and snapshots as records, their ARM ids, and their JSON bodies.

A :class:`ManagedResource` is one disk or snapshot: its ARM identity (subscription, resource group, type,
name), what the client asked for (location, tags, sku, creation data) and what the service decides (unique
id, size, provisioning state, incremental-snapshot family, the page content). :func:`render` turns it
into the body ARM returns, shaped like the spec's examples. The helpers here are pure; the server in
:mod:`testbed.emulator.arm` owns the store and the locking.

ARM treats names and ids case-insensitively: records are keyed by :meth:`ResourceKey.folded`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from testbed.emulator.pages import PageMap

ResourceType = Literal["disks", "snapshots"]

GIB = 1 << 30

#: Name rule of both path parameters (``diskName``, ``snapshotName``) in the spec.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
#: Resource group names (types.json ``ResourceGroupNameParameter``).
_RESOURCE_GROUP = re.compile(r"[-\w._()]{1,90}")

_COMPUTE_ID = re.compile(
    r"/?subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute/"
    r"(?P<type>disks|snapshots)/(?P<name>[^/]+)/?",
    re.IGNORECASE,
)
_STORAGE_ACCOUNT_ID = re.compile(
    r"/?subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Storage/"
    r"storageAccounts/(?P<name>[^/]+)/?",
    re.IGNORECASE,
)

_SKU_TIERS = {
    "Standard_LRS": "Standard",
    "Premium_LRS": "Premium",
    "StandardSSD_LRS": "StandardSSD",
    "UltraSSD_LRS": "Ultra",
    "Premium_ZRS": "Premium",
    "StandardSSD_ZRS": "StandardSSD",
    "PremiumV2_LRS": "PremiumV2",
    "Standard_ZRS": "Standard",
}


#: Disk SKUs (``DiskStorageAccountTypes`` in the spec).
DISK_SKUS = frozenset(
    {
        "Standard_LRS",
        "Premium_LRS",
        "StandardSSD_LRS",
        "UltraSSD_LRS",
        "Premium_ZRS",
        "StandardSSD_ZRS",
        "PremiumV2_LRS",
    }
)
#: Disk SKUs whose snapshots fill in the background before they can be used:
#: Premium SSD v2 and Ultra (learn.microsoft.com: disks-incremental-snapshots, "Check snapshot status").
BACKGROUND_COPY_SKUS = frozenset({"PremiumV2_LRS", "UltraSSD_LRS"})


def is_valid_name(name: str) -> bool:
    """Whether ``name`` follows the spec's rule: a-z, A-Z, 0-9, ``_`` and ``-``, at most 80 characters."""
    return bool(_NAME.fullmatch(name))


def is_valid_resource_group(name: str) -> bool:
    """Whether ``name`` is a well-formed resource group name (ARM's pattern, at most 90 characters)."""
    return bool(_RESOURCE_GROUP.fullmatch(name)) and not name.endswith(".")


@dataclass(frozen=True)
class ResourceKey:
    """Where a resource lives: subscription, resource group, type and name (as the client spelled them)."""

    subscription_id: str
    resource_group: str
    resource_type: ResourceType
    name: str

    @property
    def id(self) -> str:
        """The ARM resource id."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Compute/{self.resource_type}/{self.name}"
        )

    def folded(self) -> tuple[str, str, str, str]:
        """The case-insensitive identity used as the store key."""
        return (
            self.subscription_id.lower(),
            self.resource_group.lower(),
            self.resource_type,
            self.name.lower(),
        )


def parse_compute_id(resource_id: str) -> ResourceKey | None:
    """A disk or snapshot id (with or without the leading ``/``, any case) as a key; ``None`` if not one."""
    match = _COMPUTE_ID.fullmatch(resource_id.strip())
    if match is None:
        return None
    kind: ResourceType = "disks" if match["type"].lower() == "disks" else "snapshots"
    return ResourceKey(match["sub"], match["rg"], kind, match["name"])


def parse_storage_account_id(resource_id: str) -> str | None:
    """The account name of a ``Microsoft.Storage/storageAccounts`` id, or ``None`` if it is not one."""
    match = _STORAGE_ACCOUNT_ID.fullmatch(resource_id.strip())
    return match["name"] if match else None


def normalize_location(location: str) -> str:
    """ARM's canonical region name: ``"West US"`` becomes ``"westus"``."""
    return location.replace(" ", "").lower()


def size_gb(size_bytes: int) -> int:
    """``diskSizeGB`` for a byte size: whole GiB, rounded up (the emulator allows sub-GiB test disks)."""
    return max(1, -(-size_bytes // GIB))


def utc_now() -> datetime:
    """The current UTC time (one seam, so records and bodies agree on the clock)."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ARM's timestamp format: ISO 8601 with microseconds and ``+00:00``."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass
class ManagedResource:
    """One disk or snapshot. ``content`` is live for a disk and frozen for a snapshot."""

    key: ResourceKey
    location: str
    content: PageMap
    creation_data: dict[str, Any]
    sku_name: str
    tags: dict[str, str] = field(default_factory=dict)
    unique_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time_created: datetime = field(default_factory=utc_now)
    provisioning_state: str = "Succeeded"
    #: Snapshots: whether incremental. Disks: unused.
    incremental: bool = False
    #: Disks: the family every incremental snapshot of this disk joins. Snapshots: their family, if any.
    family_id: str | None = None
    #: When the active SAS ends, or ``None`` when there is none (never granted, revoked, or deleted).
    sas_expires_at: datetime | None = None
    #: Client-supplied properties echoed back (``osType``, ``networkAccessPolicy``...).
    extra_properties: dict[str, Any] = field(default_factory=dict)
    #: Snapshots of Premium SSD v2 / Ultra disks: a background copy, counted in GETs of the snapshot once
    #: it is created (``copy_polls_left`` of ``copy_polls_total`` still to go; none left = complete).
    background_copy: bool = False
    copy_polls_total: int = 0
    copy_polls_left: int = 0
    #: Asked for with ``creationData.instantAccessDurationMinutes`` (Premium SSD v2 / Ultra only).
    instant_access: bool = False
    #: Disks made with ``createOption: Upload``: ``ReadyToUpload`` until a write grant, ``ActiveUpload``
    #: until revoke, then ``None`` (an ordinary disk).
    upload_state: Literal["ReadyToUpload", "ActiveUpload"] | None = None

    @property
    def id(self) -> str:
        """The ARM resource id."""
        return self.key.id

    @property
    def copying(self) -> bool:
        """Whether a background copy is still running (or has not begun: the snapshot is being created)."""
        return self.background_copy and (self.provisioning_state != "Succeeded" or self.copy_polls_left > 0)

    def completion_percent(self) -> float:
        """The background copy's ``completionPercent`` (0 until the snapshot is created)."""
        if self.provisioning_state != "Succeeded":
            return 0.0
        if self.copy_polls_total <= 0:
            return 100.0
        done = self.copy_polls_total - self.copy_polls_left
        return round(100.0 * done / self.copy_polls_total, 1)

    def access_state(self) -> str:
        """``snapshotAccessState`` as the instant-access page's table gives it for this snapshot's state."""
        if self.background_copy:
            if self.copying:
                created = self.provisioning_state == "Succeeded"
                return "InstantAccess" if self.instant_access and created else "Pending"
            return "AvailableWithInstantAccess" if self.instant_access else "Available"
        return "Available" if self.provisioning_state == "Succeeded" else "Pending"

    @property
    def readable(self) -> bool:
        """Whether its data may be read (a SAS granted, a copy to another region made): not while a
        background copy runs, even in ``InstantAccess``, which serves only new disks."""
        return not self.copying

    def has_active_sas(self, now: datetime | None = None) -> bool:
        """Whether a SAS granted on this resource is still in force."""
        return self.sas_expires_at is not None and (now or utc_now()) < self.sas_expires_at


def render(resource: ManagedResource, now: datetime | None = None) -> dict[str, Any]:
    """The ARM body of a disk or snapshot, shaped like the spec's GET examples."""
    is_snapshot = resource.key.resource_type == "snapshots"
    size = resource.content.size
    properties: dict[str, Any] = dict(resource.extra_properties)
    properties.update(
        {
            "creationData": dict(resource.creation_data),
            "diskSizeGB": size_gb(size),
            "diskSizeBytes": size,
            "uniqueId": resource.unique_id,
            "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
            "networkAccessPolicy": properties.get("networkAccessPolicy", "AllowAll"),
            "publicNetworkAccess": properties.get("publicNetworkAccess", "Enabled"),
            "timeCreated": iso(resource.time_created),
            "provisioningState": resource.provisioning_state,
            "diskState": resource.upload_state
            or ("ActiveSAS" if resource.has_active_sas(now) else "Unattached"),
        }
    )
    if is_snapshot:
        properties["incremental"] = resource.incremental
        if resource.family_id is not None:
            properties["incrementalSnapshotFamilyId"] = resource.family_id
        properties["snapshotAccessState"] = resource.access_state()
        if resource.background_copy:
            properties["completionPercent"] = resource.completion_percent()
    body: dict[str, Any] = {
        "name": resource.key.name,
        "id": resource.id,
        "type": f"Microsoft.Compute/{resource.key.resource_type}",
        "location": resource.location,
    }
    if resource.tags:
        body["tags"] = dict(resource.tags)
    body["sku"] = {"name": resource.sku_name, "tier": _SKU_TIERS.get(resource.sku_name, "Standard")}
    body["properties"] = properties
    return body
