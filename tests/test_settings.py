"""Settings: defaults, validation that names the setting, and the sample file kept in step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backup.errors import ConfigurationError
from backup.retention import RetentionPolicy
from backup.settings import SETTINGS, Settings

ROOT = Path(__file__).resolve().parent.parent
SUB = "00000000-0000-0000-0000-0000000000aa"
BASE = {"BACKUP_SUBSCRIPTION_ID": SUB, "BACKUP_STORAGE_ACCOUNT": "backupacct"}


def test_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.subscription_id == SUB
    assert settings.arm_endpoint == "https://management.azure.com"
    assert settings.blob_endpoint == "https://backupacct.blob.core.windows.net"
    assert settings.table_endpoint == "https://backupacct.table.core.windows.net"
    assert settings.schedule.expression == "0 0 1 * * *"
    assert settings.max_parallel == 4
    assert settings.select_tag == ("diskbackup", "enabled")
    assert settings.storage_key is None and settings.arm_token is None
    assert (settings.poll_initial_seconds, settings.poll_max_seconds) == (5, 60)
    assert settings.keep_snapshots is False
    assert settings.snapshot_copy_timeout_minutes == 720
    assert settings.retention == RetentionPolicy(daily=7, weekly=4, monthly=12, yearly=3)
    assert (settings.full_copy_percent, settings.verify_sample_mib, settings.writes_per_blob) == (60, 64, 8)


def test_retention_names_only_what_it_changes() -> None:
    settings = Settings.from_env({**BASE, "BACKUP_RETENTION": "daily=30, yearly=0"})
    assert settings.retention == RetentionPolicy(daily=30, weekly=4, monthly=12, yearly=0)


def test_overrides_parse() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "BACKUP_ARM_ENDPOINT": "http://127.0.0.1:8443/",
            "BACKUP_ARM_TOKEN": "emulator-token",
            "BACKUP_BLOB_ENDPOINT": "http://127.0.0.1:10000/devstoreaccount1",
            "BACKUP_STORAGE_KEY": "a2V5",
            "BACKUP_SCHEDULE": "0 30 2 * * Mon-Fri",
            "BACKUP_MAX_PARALLEL": "10",
            "BACKUP_SELECT_RESOURCE_GROUP": "rg-prod",
            "BACKUP_KEEP_SNAPSHOTS": "TRUE",
            "BACKUP_FULL_COPY_PERCENT": "35",
            "BACKUP_VERIFY_SAMPLE_MIB": "0",
            "BACKUP_WRITES_PER_BLOB": "2",
        }
    )
    assert (settings.full_copy_percent, settings.verify_sample_mib, settings.writes_per_blob) == (35, 0, 2)
    assert settings.arm_endpoint == "http://127.0.0.1:8443"
    assert settings.select_resource_group == "rg-prod" and settings.select_tag is None
    assert settings.keep_snapshots is True
    assert settings.max_parallel == 10
    assert "emulator-token" not in repr(settings) and "a2V5" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "setting", "problem"),
    [
        ({"BACKUP_STORAGE_ACCOUNT": "acct"}, "BACKUP_SUBSCRIPTION_ID", "required"),
        ({"BACKUP_SUBSCRIPTION_ID": SUB}, "BACKUP_STORAGE_ACCOUNT", "required"),
        ({**BASE, "BACKUP_SUBSCRIPTION_ID": "not-a-guid"}, "BACKUP_SUBSCRIPTION_ID", "GUID"),
        (
            {**BASE, "BACKUP_STORAGE_ACCOUNT": "Bad_Name"},
            "BACKUP_STORAGE_ACCOUNT",
            "3-24 lowercase letters and digits",
        ),
        ({**BASE, "BACKUP_ARM_ENDPOINT": "http://management.azure.com"}, "BACKUP_ARM_ENDPOINT", "https"),
        ({**BASE, "BACKUP_BLOB_ENDPOINT": "https://x/?sig=abc"}, "BACKUP_BLOB_ENDPOINT", "query"),
        ({**BASE, "BACKUP_ARM_TOKEN": "t"}, "BACKUP_ARM_TOKEN", "loopback"),
        ({**BASE, "BACKUP_STORAGE_KEY": "***"}, "BACKUP_STORAGE_KEY", "base64"),
        ({**BASE, "BACKUP_SCHEDULE": "0 0 1 * *"}, "BACKUP_SCHEDULE", "6"),
        ({**BASE, "BACKUP_MAX_PARALLEL": "0"}, "BACKUP_MAX_PARALLEL", "outside 1-50"),
        ({**BASE, "BACKUP_MAX_PARALLEL": "four"}, "BACKUP_MAX_PARALLEL", "whole number"),
        ({**BASE, "BACKUP_CONTAINER": "Backups"}, "BACKUP_CONTAINER", "lowercase"),
        ({**BASE, "BACKUP_CATALOG_TABLE": "1table"}, "BACKUP_CATALOG_TABLE", "starting with a letter"),
        ({**BASE, "BACKUP_KEEP_SNAPSHOTS": "maybe"}, "BACKUP_KEEP_SNAPSHOTS", "true or false"),
        (
            {**BASE, "BACKUP_SNAPSHOT_COPY_TIMEOUT_MINUTES": "10081"},
            "BACKUP_SNAPSHOT_COPY_TIMEOUT_MINUTES",
            "outside 1-10080",
        ),
        ({**BASE, "BACKUP_FULL_COPY_PERCENT": "0"}, "BACKUP_FULL_COPY_PERCENT", "outside 1-100"),
        ({**BASE, "BACKUP_FULL_COPY_PERCENT": "60%"}, "BACKUP_FULL_COPY_PERCENT", "whole number"),
        ({**BASE, "BACKUP_VERIFY_SAMPLE_MIB": "-1"}, "BACKUP_VERIFY_SAMPLE_MIB", "whole number"),
        ({**BASE, "BACKUP_WRITES_PER_BLOB": "65"}, "BACKUP_WRITES_PER_BLOB", "outside 1-64"),
        ({**BASE, "BACKUP_SELECT_TAG": "novalue"}, "BACKUP_SELECT_TAG", "name=value"),
        ({**BASE, "BACKUP_RETENTION": "hourly=24"}, "BACKUP_RETENTION", "'hourly' is not a bucket kind"),
        ({**BASE, "BACKUP_RETENTION": "daily=7,daily=8"}, "BACKUP_RETENTION", "more than once"),
        ({**BASE, "BACKUP_RETENTION": "monthly=500"}, "BACKUP_RETENTION", "most allowed, 120"),
        ({**BASE, "BACKUP_SELECT_DISK_IDS": "/subscriptions/x"}, "BACKUP_SELECT_DISK_IDS", "expected /sub"),
        (
            {**BASE, "BACKUP_SELECT_TAG": "a=b", "BACKUP_SELECT_RESOURCE_GROUP": "rg"},
            "BACKUP_SELECT_RESOURCE_GROUP",
            "only one",
        ),
        (
            {**BASE, "BACKUP_POLL_INITIAL_SECONDS": "30", "BACKUP_POLL_MAX_SECONDS": "10"},
            "BACKUP_POLL_MAX_SECONDS",
            "below",
        ),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], setting: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    assert info.value.setting == setting
    assert str(info.value).startswith(f"setting {setting}: ")
    assert problem in str(info.value)


def test_secret_values_never_appear_in_errors() -> None:
    secret = "c2VjcmV0LWtleS0xMjM0NTY3ODkw!!"  # not base64 because of the bangs
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({**BASE, "BACKUP_STORAGE_KEY": secret})
    assert secret not in str(info.value)


def test_sample_file_lists_every_setting_with_valid_defaults() -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    names = [spec.name for spec in SETTINGS]
    assert [n for n in sample if n.startswith("BACKUP_")] == names
    # The sample, as written, is a valid configuration.
    Settings.from_env({k: v for k, v in sample.items() if isinstance(v, str)})


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [spec.name for spec in SETTINGS if f"`{spec.name}`" not in readme]
    assert not missing, f"README.md does not document {missing}"
