"""The app's settings: read once from app settings (environment variables) at the edge, validated, frozen.

Every setting the product reads is defined here, with its default and its check; nothing deeper in the
package reads ``os.environ``. A bad value raises :class:`~backup.errors.ConfigurationError` naming the
setting. ``local.settings.sample.json`` and the README list the same settings (a test keeps them in step).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from backup.azure.names import (
    validate_container_name,
    validate_resource_group_name,
    validate_storage_account_name,
    validate_table_name,
    validate_tag_name,
    validate_tag_value,
    validate_task_hub_name,
)
from backup.azure.resource_id import parse_disk_id, validate_subscription_id
from backup.azure.transport import is_loopback_url
from backup.errors import ConfigurationError, InvalidInputError
from backup.redact import add_url_secret
from backup.retention import DEFAULT_POLICY, DEFAULT_POLICY_TEXT, RetentionPolicy, parse_policy
from backup.schedule import Schedule, parse_schedule

T = TypeVar("T")


@dataclass(frozen=True)
class SettingSpec:
    """One app setting: its name, default (``None`` = required or optional-empty) and description."""

    name: str
    default: str | None
    description: str
    required: bool = False
    secret: bool = False


#: Every app setting diskbackup reads, in the order the README documents them.
SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "BACKUP_SUBSCRIPTION_ID",
        None,
        "Subscription (GUID) whose disks are backed up.",
        required=True,
    ),
    SettingSpec("BACKUP_ARM_ENDPOINT", "https://management.azure.com", "Azure Resource Manager endpoint."),
    SettingSpec(
        "BACKUP_ARM_TOKEN",
        None,
        "A fixed ARM bearer token, for the compute emulator only (loopback endpoints). Unset in Azure.",
        secret=True,
    ),
    SettingSpec(
        "BACKUP_ARM_CA_BUNDLE",
        None,
        "A PEM file of certificates to trust for ARM instead of the system's (the emulator's own CA).",
    ),
    SettingSpec(
        "BACKUP_MANAGED_IDENTITY_CLIENT_ID",
        None,
        "Client id of a user-assigned managed identity; unset = DefaultAzureCredential.",
    ),
    SettingSpec(
        "BACKUP_STORAGE_ACCOUNT",
        None,
        "Name of the Storage account that holds the backups.",
        required=True,
    ),
    SettingSpec(
        "BACKUP_STORAGE_KEY",
        None,
        "Shared Key of that account; unset = Azure AD (the identity needs Storage Blob/Table Data roles).",
        secret=True,
    ),
    SettingSpec(
        "BACKUP_BLOB_ENDPOINT",
        None,
        "Blob endpoint; default https://{account}.blob.core.windows.net.",
    ),
    SettingSpec(
        "BACKUP_TABLE_ENDPOINT",
        None,
        "Table endpoint; default https://{account}.table.core.windows.net.",
    ),
    SettingSpec("BACKUP_CONTAINER", "disk-backups", "Blob container the backup page blobs are written to."),
    SettingSpec(
        "BACKUP_CATALOG_TABLE",
        "diskbackupcatalog",
        "Table holding the catalog of runs and restore points.",
    ),
    SettingSpec("BACKUP_TASK_HUB", "diskbackup", "Durable Functions task hub name (host.json reads it)."),
    SettingSpec("BACKUP_SCHEDULE", "0 0 1 * * *", "NCRONTAB schedule of the nightly run (UTC)."),
    SettingSpec("BACKUP_MAX_PARALLEL", "4", "Disks backed up at the same time within one run (1-50)."),
    SettingSpec(
        "BACKUP_SELECT_TAG",
        None,
        "Configured selection: disks carrying this tag, as name=value (default diskbackup=enabled).",
    ),
    SettingSpec(
        "BACKUP_SELECT_RESOURCE_GROUP",
        None,
        "Configured selection: every disk of this resource group.",
    ),
    SettingSpec("BACKUP_SELECT_DISK_IDS", None, "Configured selection: comma-separated disk resource IDs."),
    SettingSpec(
        "BACKUP_KEEP_SNAPSHOTS",
        "false",
        "Keep each run's snapshot after its copy is verified (true/false).",
    ),
    SettingSpec("BACKUP_POLL_INITIAL_SECONDS", "5", "First wait between status polls, in seconds (1-600)."),
    SettingSpec("BACKUP_POLL_MAX_SECONDS", "60", "Longest wait between status polls, in seconds (1-3600)."),
    SettingSpec(
        "BACKUP_SNAPSHOT_TIMEOUT_MINUTES",
        "60",
        "Deadline for a snapshot or an access grant to complete (1-1440).",
    ),
    SettingSpec(
        "BACKUP_COPY_TIMEOUT_MINUTES",
        "1440",
        "Deadline for a copy to complete, in minutes (1-20160).",
    ),
    SettingSpec(
        "BACKUP_SAS_MINUTES",
        "120",
        "How long a snapshot's read access (SAS) lasts, in minutes (5-1440); renewed when work outlives it, "
        "and a copy's lasts as long as the copy is expected to take.",
    ),
    # Azure publishes no duration: one 1 GiB Premium SSD v2 snapshot took about 8 minutes (Azure/AKS
    # #4555), and Azure Backup schedules these disks at most every 12 hours (its support matrix).
    SettingSpec(
        "BACKUP_SNAPSHOT_COPY_TIMEOUT_MINUTES",
        "720",
        "Deadline for a Premium SSD v2 / Ultra snapshot's background copy to complete (1-10080).",
    ),
    SettingSpec(
        "BACKUP_ALERT_WEBHOOK",
        None,
        "HTTPS URL (Teams, Slack or any JSON endpoint) told when a run ends other than Succeeded or a disk "
        "has no recent good restore point; unset = no alerts.",
        secret=True,
    ),
    SettingSpec(
        "BACKUP_ALERT_STALE_HOURS",
        "36",
        "Alert when a disk's newest good restore point is older than this many hours (1-8760).",
    ),
    SettingSpec(
        "BACKUP_RETENTION",
        DEFAULT_POLICY_TEXT,
        "Restore points kept per disk: newest of each of the last N days/ISO weeks/months/years that have "
        "one (kinds not named keep the default; the disk tag diskbackup-retention overrides per disk).",
    ),
    SettingSpec(
        "BACKUP_VERIFY_SCHEDULE",
        None,
        "NCRONTAB schedule (UTC) of restore tests: the newest restore point of each selected disk restored "
        "to a temporary disk, verified in full, deleted, the verdict recorded; unset = no scheduled tests.",
    ),
    SettingSpec(
        "BACKUP_FULL_COPY_PERCENT",
        "60",
        "A night whose changes exceed this share of the disk copies it whole instead (1-100).",
    ),
    SettingSpec(
        "BACKUP_VERIFY_SAMPLE_MIB",
        "64",
        "MiB of each backed-up disk read back and compared by SHA-256 every night (0-1048576; 0: none).",
    ),
    SettingSpec(
        "BACKUP_WRITES_PER_BLOB",
        "8",
        "Writes in flight into one backup blob during an incremental copy (1-64).",
    ),
)

DEFAULT_SELECT_TAG = "diskbackup=enabled"


@dataclass(frozen=True)
class Settings:
    """The validated, typed settings. Build it with :meth:`from_env`; pass it down, never re-read env."""

    subscription_id: str
    storage_account: str
    arm_endpoint: str = "https://management.azure.com"
    arm_token: str | None = field(default=None, repr=False)
    arm_ca_bundle: str | None = None
    managed_identity_client_id: str | None = None
    storage_key: str | None = field(default=None, repr=False)
    blob_endpoint: str = ""
    table_endpoint: str = ""
    container: str = "disk-backups"
    catalog_table: str = "diskbackupcatalog"
    task_hub: str = "diskbackup"
    schedule: Schedule = field(default_factory=lambda: parse_schedule("0 0 1 * * *"))
    max_parallel: int = 4
    select_tag: tuple[str, str] | None = None
    select_resource_group: str | None = None
    select_disk_ids: tuple[str, ...] = ()
    keep_snapshots: bool = False
    poll_initial_seconds: int = 5
    poll_max_seconds: int = 60
    snapshot_timeout_minutes: int = 60
    copy_timeout_minutes: int = 1440
    sas_minutes: int = 120
    snapshot_copy_timeout_minutes: int = 720
    alert_webhook: str | None = field(default=None, repr=False)
    alert_stale_hours: int = 36
    retention: RetentionPolicy = DEFAULT_POLICY
    verify_schedule: Schedule | None = None
    full_copy_percent: int = 60
    verify_sample_mib: int = 64
    writes_per_blob: int = 8

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; the first problem raises :class:`ConfigurationError`."""
        source = os.environ if env is None else env

        def raw(name: str) -> str | None:
            value = source.get(name)
            if value is None or not value.strip():
                spec = _SPECS[name]
                if spec.required:
                    raise ConfigurationError(name, "is required but not set")
                return spec.default
            return value.strip()

        def read(name: str, parse: Callable[[str], T]) -> T | None:
            value = raw(name)
            if value is None:
                return None
            try:
                return parse(value)
            except (InvalidInputError, ValueError) as exc:
                problem = exc.problem if isinstance(exc, InvalidInputError) else str(exc)
                raise ConfigurationError(name, problem) from None

        account = read("BACKUP_STORAGE_ACCOUNT", validate_storage_account_name)
        assert account is not None
        selectors = ("BACKUP_SELECT_TAG", "BACKUP_SELECT_RESOURCE_GROUP", "BACKUP_SELECT_DISK_IDS")
        selection_settings = [name for name in selectors if raw(name)]
        if len(selection_settings) > 1:
            raise ConfigurationError(
                selection_settings[1],
                f"set only one of {', '.join(selection_settings)} (they select differently)",
            )
        select_tag = read("BACKUP_SELECT_TAG", parse_tag_selector)
        if not selection_settings:
            select_tag = parse_tag_selector(DEFAULT_SELECT_TAG)
        arm_endpoint = read("BACKUP_ARM_ENDPOINT", _endpoint)
        arm_token = raw("BACKUP_ARM_TOKEN")
        if arm_token is not None and arm_endpoint is not None and not is_loopback_url(arm_endpoint):
            raise ConfigurationError(
                "BACKUP_ARM_TOKEN", "a fixed token is only for the compute emulator on a loopback endpoint"
            )
        poll_initial = read("BACKUP_POLL_INITIAL_SECONDS", _int_between(1, 600))
        poll_max = read("BACKUP_POLL_MAX_SECONDS", _int_between(1, 3600))
        assert poll_initial is not None and poll_max is not None
        if poll_max < poll_initial:
            raise ConfigurationError(
                "BACKUP_POLL_MAX_SECONDS", f"{poll_max} is below BACKUP_POLL_INITIAL_SECONDS"
            )
        values: dict[str, Any] = {
            "subscription_id": read("BACKUP_SUBSCRIPTION_ID", _guid),
            "storage_account": account,
            "arm_endpoint": arm_endpoint,
            "arm_token": arm_token,
            "arm_ca_bundle": read("BACKUP_ARM_CA_BUNDLE", _existing_file),
            "managed_identity_client_id": read("BACKUP_MANAGED_IDENTITY_CLIENT_ID", _guid),
            "storage_key": read("BACKUP_STORAGE_KEY", _base64_key),
            "blob_endpoint": read("BACKUP_BLOB_ENDPOINT", _endpoint)
            or f"https://{account}.blob.core.windows.net",
            "table_endpoint": read("BACKUP_TABLE_ENDPOINT", _endpoint)
            or f"https://{account}.table.core.windows.net",
            "container": read("BACKUP_CONTAINER", validate_container_name),
            "catalog_table": read("BACKUP_CATALOG_TABLE", validate_table_name),
            "task_hub": read("BACKUP_TASK_HUB", validate_task_hub_name),
            "schedule": read("BACKUP_SCHEDULE", parse_schedule),
            "max_parallel": read("BACKUP_MAX_PARALLEL", _int_between(1, 50)),
            "select_tag": select_tag,
            "select_resource_group": read("BACKUP_SELECT_RESOURCE_GROUP", parse_resource_group_name),
            "select_disk_ids": read("BACKUP_SELECT_DISK_IDS", _disk_id_list) or (),
            "keep_snapshots": read("BACKUP_KEEP_SNAPSHOTS", _bool),
            "poll_initial_seconds": poll_initial,
            "poll_max_seconds": poll_max,
            "snapshot_timeout_minutes": read("BACKUP_SNAPSHOT_TIMEOUT_MINUTES", _int_between(1, 1440)),
            "copy_timeout_minutes": read("BACKUP_COPY_TIMEOUT_MINUTES", _int_between(1, 20160)),
            "sas_minutes": read("BACKUP_SAS_MINUTES", _int_between(5, 1440)),
            "snapshot_copy_timeout_minutes": read(
                "BACKUP_SNAPSHOT_COPY_TIMEOUT_MINUTES", _int_between(1, 10080)
            ),
            "alert_webhook": read("BACKUP_ALERT_WEBHOOK", _webhook),
            "alert_stale_hours": read("BACKUP_ALERT_STALE_HOURS", _int_between(1, 8760)),
            "retention": read("BACKUP_RETENTION", _retention_policy),
            "verify_schedule": read("BACKUP_VERIFY_SCHEDULE", parse_schedule),
            "full_copy_percent": read("BACKUP_FULL_COPY_PERCENT", _int_between(1, 100)),
            "verify_sample_mib": read("BACKUP_VERIFY_SAMPLE_MIB", _int_between(0, 1 << 20)),
            "writes_per_blob": read("BACKUP_WRITES_PER_BLOB", _int_between(1, 64)),
        }
        return cls(**values)


_SPECS = {spec.name: spec for spec in SETTINGS}


# -- value parsers (each raises ValueError/InvalidInputError with a problem statement) --------------


def _guid(value: str) -> str:
    return validate_subscription_id(value, "value").lower()


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not re.fullmatch(r"[0-9]+", value):
            raise ValueError(f"{value!r} is not a whole number")
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"{number} is outside {low}-{high}")
        return number

    return parse


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"{value!r} is not true or false")


def _webhook(value: str) -> str:
    """An https URL (plain http only on a loopback host, for tests); its path and query become secrets."""
    parts = urlsplit(value)
    if parts.scheme == "http" and is_loopback_url(value):
        pass
    elif parts.scheme != "https":
        raise ValueError("must be an https:// URL")
    if not parts.hostname or parts.fragment or parts.username or parts.password:
        raise ValueError("must be an absolute URL with a host, without a fragment or user name")
    add_url_secret(value)
    return value


def _existing_file(value: str) -> str:
    if not os.path.isfile(value):
        raise ValueError(f"{value!r} is not a readable file")
    return value


def _base64_key(value: str) -> str:
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64 (an account key is)") from None
    if not decoded:
        raise ValueError("is empty")
    return value


def _endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment (no SAS in endpoints)")
    if parts.scheme == "http" and not is_loopback_url(value):
        raise ValueError("plain http is allowed only for loopback emulators; use https")
    return value.rstrip("/")


def parse_tag_selector(value: str) -> tuple[str, str]:
    """``name=value`` into ``(name, value)``, split at the first ``=``, each under Azure's tag rules.

    So a selector's tag name never holds ``=``; the value may (it is everything after the first one).
    """
    name, sep, tag_value = value.partition("=")
    if not sep:
        raise InvalidInputError("tag", f"{value[:80]!r} is not name=value")
    return validate_tag_name(name, "tag"), validate_tag_value(tag_value, "tag")


def parse_resource_group_name(value: str) -> str:
    """A resource group name (:func:`backup.azure.names.validate_resource_group_name`)."""
    return validate_resource_group_name(value, "resourceGroup")


def _retention_policy(value: str) -> RetentionPolicy:
    # Layered on the built-in default: a setting of "daily=30" keeps the default weeks, months, years.
    return parse_policy(value, DEFAULT_POLICY)


def _disk_id_list(value: str) -> tuple[str, ...]:
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if not ids:
        raise ValueError("lists no disk IDs")
    return tuple(str(parse_disk_id(disk_id)) for disk_id in ids)
