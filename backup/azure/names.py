"""Azure's own naming rules, in one place: each a small function that returns a valid name or raises.

Every name diskbackup takes from a setting, a request, a resource ID or an answer, and every name it
makes, is checked here, so a rule is written once and a caller cannot pick a looser copy. Each function
returns its value unchanged when valid and otherwise raises :class:`~backup.errors.InvalidInputError`
naming ``field`` and the rule broken. Patterns are applied with ``fullmatch`` (``$`` would let a
trailing newline through).

Sources (Microsoft Learn):

- Resource names: "Naming rules and restrictions for Azure resources",
  https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules
  (Microsoft.Resources resourcegroups; Microsoft.Compute disks and snapshots; Microsoft.Storage
  storageAccounts).
- Containers: "Naming and Referencing Containers, Blobs, and Metadata",
  https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
- Tables: "Understanding the Table service data model",
  https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model
- Tags: "Use tags to organize your Azure resources" (Limitations),
  https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources
- Task hubs: "Task hubs in Durable Functions" (Azure Storage provider),
  https://learn.microsoft.com/azure/azure-functions/durable/durable-functions-task-hubs
- The DiskRP spec (``testbed/emulator/spec/DiskRP.json``, ``diskName``/``snapshotName``): "Supported
  characters for the name are a-z, A-Z, 0-9, _ and -. The max name length is 80 characters."
"""

from __future__ import annotations

import re

from backup.errors import InvalidInputError

__all__ = [
    "MAX_COMPUTE_NAME_LENGTH",
    "MAX_RESOURCE_GROUP_LENGTH",
    "MAX_TAG_NAME_LENGTH",
    "MAX_TAG_VALUE_LENGTH",
    "validate_container_name",
    "validate_disk_name",
    "validate_new_compute_name",
    "validate_resource_group_name",
    "validate_snapshot_name",
    "validate_storage_account_name",
    "validate_table_name",
    "validate_tag_name",
    "validate_tag_value",
    "validate_task_hub_name",
]

MAX_COMPUTE_NAME_LENGTH = 80
MAX_RESOURCE_GROUP_LENGTH = 90
MAX_TAG_NAME_LENGTH = 512
MAX_TAG_VALUE_LENGTH = 256

_STORAGE_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
# Letters, digits and single hyphens between them; the length is checked apart (a lookahead would need $).
_CONTAINER = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_TABLE_RESERVED = frozenset({"tables"})
# \w admits Unicode letters and digits (and '_'), as .NET's Char.IsLetterOrDigit does for ARM.
_RESOURCE_GROUP = re.compile(r"[-\w.()]+")
# Microsoft.Compute disks and snapshots: alphanumerics, '_', '.', '-'; start alphanumeric; end
# alphanumeric or '_'.
_COMPUTE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_SPEC_NAME_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_TAG_NAME_FORBIDDEN = re.compile(r"[<>%&\\?/]")
_TASK_HUB = re.compile(r"[A-Za-z][A-Za-z0-9]{2,44}")


def _shown(value: object) -> str:
    """``value`` for an error message: its repr, cut short (a caller may send anything, of any size)."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(field, f"must be a string, got {type(value).__name__}")
    return value


def validate_storage_account_name(value: object, field: str = "storage account") -> str:
    """A storage account name: 3-24 lowercase letters and digits (resource-name-rules, Microsoft.Storage)."""
    name = _text(value, field)
    if not _STORAGE_ACCOUNT.fullmatch(name):
        raise InvalidInputError(field, f"{_shown(name)} is not 3-24 lowercase letters and digits")
    return name


def validate_container_name(value: object, field: str = "container") -> str:
    """A blob container name: 3-63 lowercase letters, digits and hyphens; a letter or digit first and
    last; no two hyphens together (Naming and Referencing Containers, Blobs, and Metadata)."""
    name = _text(value, field)
    if not 3 <= len(name) <= 63 or not _CONTAINER.fullmatch(name):
        raise InvalidInputError(
            field,
            f"{_shown(name)} is not 3-63 lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit",
        )
    return name


def validate_table_name(value: object, field: str = "table") -> str:
    """A table name: 3-63 letters and digits, a letter first, not the reserved ``tables``
    (Understanding the Table service data model)."""
    name = _text(value, field)
    if not _TABLE.fullmatch(name):
        raise InvalidInputError(
            field, f"{_shown(name)} is not 3-63 letters and digits starting with a letter"
        )
    if name.lower() in _TABLE_RESERVED:
        raise InvalidInputError(field, f"{name!r} is a reserved table name")
    return name


def validate_resource_group_name(value: object, field: str = "resource group") -> str:
    """A resource group name: 1-90 letters, digits, ``_ - . ( )``, not ending in a period
    (resource-name-rules, Microsoft.Resources)."""
    name = _text(value, field)
    if not name:
        raise InvalidInputError(field, "must not be empty")
    if len(name) > MAX_RESOURCE_GROUP_LENGTH:
        raise InvalidInputError(field, f"at most {MAX_RESOURCE_GROUP_LENGTH} characters, got {len(name)}")
    if not _RESOURCE_GROUP.fullmatch(name):
        raise InvalidInputError(
            field, f"only letters, digits, '_', '-', '.', '(' and ')' are allowed, got {_shown(name)}"
        )
    if name.endswith("."):
        raise InvalidInputError(field, f"must not end with a period, got {_shown(name)}")
    return name


def _compute_name(value: object, field: str) -> str:
    name = _text(value, field)
    if not name:
        raise InvalidInputError(field, "must not be empty")
    if len(name) > MAX_COMPUTE_NAME_LENGTH:
        raise InvalidInputError(field, f"at most {MAX_COMPUTE_NAME_LENGTH} characters, got {len(name)}")
    if not _COMPUTE_NAME.fullmatch(name):
        raise InvalidInputError(
            field,
            "only letters, digits, '_', '.' and '-', starting with a letter or digit and ending with a "
            f"letter, digit or '_', are allowed, got {_shown(name)}",
        )
    return name


def validate_disk_name(value: object, field: str = "disk name") -> str:
    """A managed disk's name: 1-80 letters, digits, ``_ . -``; a letter or digit first; a letter, digit
    or ``_`` last (resource-name-rules, Microsoft.Compute disks). So ``.`` and ``..`` are no names."""
    return _compute_name(value, field)


def validate_snapshot_name(value: object, field: str = "snapshot name") -> str:
    """A snapshot's name: the same rule as a disk's (resource-name-rules, Microsoft.Compute snapshots)."""
    return _compute_name(value, field)


def validate_new_compute_name(value: object, field: str = "name") -> str:
    """A name for a disk or snapshot we create: Azure's rule and the DiskRP spec's characters (no ``.``).

    The spec's ``diskName``/``snapshotName`` admit a-z, A-Z, 0-9, ``_`` and ``-``; Azure's naming rules
    add periods but ask for a letter or digit first and a letter, digit or ``_`` last. A name that
    satisfies both is accepted by either reading.
    """
    name = _compute_name(value, field)
    if not _SPEC_NAME_CHARS.fullmatch(name):
        raise InvalidInputError(
            field, f"a name we create uses only letters, digits, '_' and '-' (no '.'), got {_shown(name)}"
        )
    return name


def validate_tag_name(value: object, field: str = "tag name") -> str:
    """A tag name: 1-512 characters, none of ``< > % & \\ ? /`` (tag-resources, Limitations)."""
    name = _text(value, field)
    if not 1 <= len(name) <= MAX_TAG_NAME_LENGTH:
        raise InvalidInputError(field, f"must be 1-{MAX_TAG_NAME_LENGTH} characters, got {len(name)}")
    found = _TAG_NAME_FORBIDDEN.search(name)
    if found:
        raise InvalidInputError(field, f"{_shown(name)} holds {found.group()!r}; tag names exclude <>%&\\?/")
    return name


def validate_tag_value(value: object, field: str = "tag value") -> str:
    """A tag value: at most 256 characters, any of them (tag-resources, Limitations)."""
    text = _text(value, field)
    if len(text) > MAX_TAG_VALUE_LENGTH:
        raise InvalidInputError(field, f"at most {MAX_TAG_VALUE_LENGTH} characters, got {len(text)}")
    return text


def validate_task_hub_name(value: object, field: str = "task hub") -> str:
    """A Durable Functions task hub name: 3-45 letters and digits, a letter first (Task hubs in Durable
    Functions, Azure Storage provider)."""
    name = _text(value, field)
    if not _TASK_HUB.fullmatch(name):
        raise InvalidInputError(
            field, f"{_shown(name)} is not 3-45 letters and digits starting with a letter"
        )
    return name
