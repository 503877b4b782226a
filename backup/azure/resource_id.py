"""ARM resource IDs of managed disks and snapshots: parsed, validated, and written back canonically.

An ID looks like::

    /subscriptions/{guid}/resourceGroups/{group}/providers/Microsoft.Compute/disks/{name}
    /subscriptions/{guid}/resourceGroups/{group}/providers/Microsoft.Compute/snapshots/{name}

ARM treats every part of an ID case-insensitively (keywords, provider, type, even names), but keeps the
case a resource was created with. So parsing accepts any case, :class:`ResourceId` keeps the names' case
as given and writes the keywords in their canonical case, and two IDs compare equal regardless of case.

Name rules (resource group, disk and snapshot names, storage account names) are Azure's, kept in
:mod:`backup.azure.names` with their sources: an ID names its resource under the rule Azure applies
(a disk named ``data.1`` is a disk, ``.`` and ``..`` are none), and a name *we* create must also fit
the DiskRP spec's narrower characters (:func:`validate_new_name`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from backup.azure import names
from backup.errors import InvalidInputError

__all__ = [
    "COMPUTE_PROVIDER",
    "MAX_NAME_LENGTH",
    "ResourceId",
    "ResourceType",
    "disk_id",
    "parse_disk_id",
    "parse_resource_id",
    "parse_snapshot_id",
    "parse_storage_account_id",
    "snapshot_id",
    "validate_name",
    "validate_new_name",
    "validate_resource_group",
    "validate_subscription_id",
]

COMPUTE_PROVIDER = "Microsoft.Compute"
MAX_NAME_LENGTH = names.MAX_COMPUTE_NAME_LENGTH
MAX_RESOURCE_GROUP_LENGTH = names.MAX_RESOURCE_GROUP_LENGTH

ResourceType = Literal["disks", "snapshots"]
_TYPES: dict[str, ResourceType] = {"disks": "disks", "snapshots": "snapshots"}

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def validate_subscription_id(value: str, field: str = "subscription id") -> str:
    """Return ``value`` if it is a GUID, else raise :class:`InvalidInputError` naming ``field``."""
    if not isinstance(value, str) or not _GUID.fullmatch(value):
        raise InvalidInputError(
            field, f"must be a GUID like 00000000-0000-0000-0000-000000000000, got {value!r}"
        )
    return value


def validate_resource_group(value: str, field: str = "resource group") -> str:
    """Return ``value`` if it is a resource group name (the rule: :mod:`backup.azure.names`)."""
    return names.validate_resource_group_name(value, field)


def validate_name(value: str, field: str = "name") -> str:
    """Return ``value`` if it is a disk or snapshot name under Azure's rule, else raise.

    The rule is :func:`backup.azure.names.validate_disk_name` (snapshots share it): periods allowed, a
    letter or digit first, a letter, digit or ``_`` last.
    """
    return names.validate_disk_name(value, field)


def validate_new_name(value: str, field: str = "name") -> str:
    """Return ``value`` if it is safe as the name of a disk or snapshot we create, else raise.

    :func:`backup.azure.names.validate_new_compute_name`: Azure's rule and the spec's characters.
    """
    return names.validate_new_compute_name(value, field)


@dataclass(frozen=True, eq=False)
class ResourceId:
    """A managed disk's or snapshot's ARM ID. Equality and hashing ignore case, as ARM does."""

    subscription_id: str
    resource_group: str
    resource_type: ResourceType
    name: str

    def __post_init__(self) -> None:
        validate_subscription_id(self.subscription_id)
        validate_resource_group(self.resource_group)
        if self.resource_type not in _TYPES:
            raise InvalidInputError(
                "resource type", f"must be 'disks' or 'snapshots', got {self.resource_type!r}"
            )
        if self.resource_type == "disks":
            names.validate_disk_name(self.name, "disk name")
        else:
            names.validate_snapshot_name(self.name, "snapshot name")

    def __str__(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/{COMPUTE_PROVIDER}/{self.resource_type}/{self.name}"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResourceId):
            return NotImplemented
        return self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def key(self) -> str:
        """The ID in lower case: what two IDs of one resource have in common."""
        return str(self).lower()

    @property
    def path(self) -> str:
        """The ID as an ARM URL path (the same text; named for what callers use it as)."""
        return str(self)

    @property
    def resource_group_path(self) -> str:
        """``/subscriptions/{sub}/resourceGroups/{group}``: the scope of list-by-resource-group calls."""
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"

    def sibling(self, resource_type: ResourceType, name: str) -> ResourceId:
        """An ID of another compute resource in the same resource group."""
        return ResourceId(self.subscription_id, self.resource_group, resource_type, name)


def parse_resource_id(
    value: str, field: str = "resource id", expected_type: ResourceType | None = None
) -> ResourceId:
    """Parse a disk or snapshot ID; raise :class:`InvalidInputError` naming ``field`` and the problem."""
    if not isinstance(value, str) or not value:
        raise InvalidInputError(field, "must not be empty")
    shape = (
        "expected /subscriptions/{guid}/resourceGroups/{group}/providers/Microsoft.Compute/"
        f"{expected_type or '{disks|snapshots}'}/{{name}}"
    )
    if value.lower().startswith("subscriptions/"):
        value = "/" + value  # ARM accepts IDs without the leading slash (the spec's examples use them)
    if not value.startswith("/") or value.endswith("/"):
        raise InvalidInputError(field, f"{shape}, got {value!r}")
    parts = value[1:].split("/")
    if len(parts) != 8:
        raise InvalidInputError(field, f"{shape}, got {value!r}")
    keywords = (parts[0].lower(), parts[2].lower(), parts[4].lower(), parts[5].lower())
    if keywords != ("subscriptions", "resourcegroups", "providers", COMPUTE_PROVIDER.lower()):
        raise InvalidInputError(field, f"{shape}, got {value!r}")
    resource_type = _TYPES.get(parts[6].lower())
    if resource_type is None:
        raise InvalidInputError(field, f"resource type must be disks or snapshots, got {parts[6]!r}")
    if expected_type is not None and resource_type != expected_type:
        raise InvalidInputError(field, f"must be a {expected_type[:-1]} ID, got a {resource_type[:-1]} ID")
    subscription = validate_subscription_id(parts[1], f"{field}: subscription id")
    group = validate_resource_group(parts[3], f"{field}: resource group")
    if resource_type == "disks":
        name = names.validate_disk_name(parts[7], f"{field}: name")
    else:
        name = names.validate_snapshot_name(parts[7], f"{field}: name")
    return ResourceId(subscription, group, resource_type, name)


def parse_disk_id(value: str, field: str = "disk id") -> ResourceId:
    """Parse a managed disk ID (see :func:`parse_resource_id`)."""
    return parse_resource_id(value, field, "disks")


def parse_snapshot_id(value: str, field: str = "snapshot id") -> ResourceId:
    """Parse a snapshot ID (see :func:`parse_resource_id`)."""
    return parse_resource_id(value, field, "snapshots")


def disk_id(subscription_id: str, resource_group: str, name: str) -> ResourceId:
    """The ID of disk ``name`` in ``resource_group`` (validated)."""
    return ResourceId(subscription_id, resource_group, "disks", name)


def snapshot_id(subscription_id: str, resource_group: str, name: str) -> ResourceId:
    """The ID of snapshot ``name`` in ``resource_group`` (validated)."""
    return ResourceId(subscription_id, resource_group, "snapshots", name)


def parse_storage_account_id(value: str, field: str = "storage account id") -> str:
    """Validate a storage account's ARM ID; return it in canonical form.

    ``/subscriptions/{guid}/resourceGroups/{group}/providers/Microsoft.Storage/storageAccounts/{name}``,
    the name 3-24 lowercase letters and digits (Azure's rule for storage accounts).
    """
    shape = (
        "expected /subscriptions/{guid}/resourceGroups/{group}/providers/Microsoft.Storage/"
        "storageAccounts/{name}"
    )
    if not isinstance(value, str) or not value:
        raise InvalidInputError(field, "must not be empty")
    if value.lower().startswith("subscriptions/"):
        value = "/" + value
    parts = value[1:].split("/") if value.startswith("/") else []
    keywords = tuple(parts[i].lower() for i in (0, 2, 4, 5, 6)) if len(parts) == 8 else ()
    if keywords != ("subscriptions", "resourcegroups", "providers", "microsoft.storage", "storageaccounts"):
        raise InvalidInputError(field, f"{shape}, got {value!r}")
    subscription = validate_subscription_id(parts[1], f"{field}: subscription id")
    group = validate_resource_group(parts[3], f"{field}: resource group")
    names.validate_storage_account_name(parts[7], f"{field}: name")
    return (
        f"/subscriptions/{subscription}/resourceGroups/{group}"
        f"/providers/Microsoft.Storage/storageAccounts/{parts[7]}"
    )
