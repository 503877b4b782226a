"""ARM resource IDs of managed disks and snapshots: parsed, validated, and written back canonically.

An ID looks like::

    /subscriptions/{guid}/resourceGroups/{group}/providers/Microsoft.Compute/disks/{name}
    /subscriptions/{guid}/resourceGroups/{group}/providers/Microsoft.Compute/snapshots/{name}

ARM treats every part of an ID case-insensitively (keywords, provider, type, even names), but keeps the
case a resource was created with. So parsing accepts any case, :class:`ResourceId` keeps the names' case
as given and writes the keywords in their canonical case, and two IDs compare equal regardless of case.

Name rules, and where they come from:

- subscription: a GUID (ARM's ``SubscriptionIdParameter``).
- resource group: 1-90 characters of letters, digits, ``_ - . ( )``, not ending in a period (ARM's
  ``^[-\\w\\._\\(\\)]+$``, where ``\\w`` admits Unicode letters and digits).
- disk and snapshot names: the DiskRP spec says "a-z, A-Z, 0-9, _ and -, at most 80 characters"; Azure's
  naming rules also admit periods, starting with a letter or digit and ending with one or ``_``. An ID
  that comes *from* Azure is accepted under the wider rule (a real disk named ``data.1`` must still be
  backed up); a name *we* create must satisfy both (:func:`validate_new_name`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

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
MAX_NAME_LENGTH = 80
MAX_RESOURCE_GROUP_LENGTH = 90

ResourceType = Literal["disks", "snapshots"]
_TYPES: dict[str, ResourceType] = {"disks": "disks", "snapshots": "snapshots"}

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# \w is Unicode-aware in Python as in .NET, which is what ARM's pattern runs on.
_RESOURCE_GROUP = re.compile(r"[-\w.()]+")
_NAME_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
_NEW_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")
_STORAGE_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")


def validate_subscription_id(value: str, field: str = "subscription id") -> str:
    """Return ``value`` if it is a GUID, else raise :class:`InvalidInputError` naming ``field``."""
    if not isinstance(value, str) or not _GUID.fullmatch(value):
        raise InvalidInputError(
            field, f"must be a GUID like 00000000-0000-0000-0000-000000000000, got {value!r}"
        )
    return value


def validate_resource_group(value: str, field: str = "resource group") -> str:
    """Return ``value`` if it is a valid resource group name, else raise :class:`InvalidInputError`."""
    if not isinstance(value, str) or not value:
        raise InvalidInputError(field, "must not be empty")
    if len(value) > MAX_RESOURCE_GROUP_LENGTH:
        raise InvalidInputError(field, f"at most {MAX_RESOURCE_GROUP_LENGTH} characters, got {len(value)}")
    if not _RESOURCE_GROUP.fullmatch(value):
        raise InvalidInputError(
            field, f"only letters, digits, '_', '-', '.', '(' and ')' are allowed, got {value!r}"
        )
    if value.endswith("."):
        raise InvalidInputError(field, f"must not end with a period, got {value!r}")
    return value


def validate_name(value: str, field: str = "name") -> str:
    """Return ``value`` if it is a disk or snapshot name Azure may have created, else raise.

    The wider rule (periods allowed): used for names read from IDs that Azure handed us.
    """
    if not isinstance(value, str) or not value:
        raise InvalidInputError(field, "must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInputError(field, f"at most {MAX_NAME_LENGTH} characters, got {len(value)}")
    if not _NAME_CHARS.fullmatch(value):
        raise InvalidInputError(field, f"only letters, digits, '_', '-' and '.' are allowed, got {value!r}")
    return value


def validate_new_name(value: str, field: str = "name") -> str:
    """Return ``value`` if it is safe as the name of a disk or snapshot we create, else raise.

    Both the spec's character set (letters, digits, ``_``, ``-``; at most 80) and Azure's naming rules
    (start with a letter or digit, end with one or ``_``).
    """
    validate_name(value, field)
    if not _NEW_NAME.fullmatch(value):
        raise InvalidInputError(
            field,
            "must use only letters, digits, '_' and '-', start with a letter or digit and end with "
            f"a letter, digit or '_', got {value!r}",
        )
    return value


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
        validate_name(self.name, f"{self.resource_type[:-1]} name")

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
    name = validate_name(parts[7], f"{field}: name")
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
    if not _STORAGE_ACCOUNT_NAME.fullmatch(parts[7]):
        raise InvalidInputError(f"{field}: name", f"3-24 lowercase letters and digits, got {parts[7]!r}")
    return (
        f"/subscriptions/{subscription}/resourceGroups/{group}"
        f"/providers/Microsoft.Storage/storageAccounts/{parts[7]}"
    )
