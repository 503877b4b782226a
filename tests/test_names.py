"""Azure's naming rules (backup/azure/names.py), one table per rule, and the doors that use them.

Each table holds the edges that are names (shortest, longest, every allowed character) and one example of
every way to break the rule, a trailing newline always among them: a pattern checked with ``$`` instead
of ``fullmatch`` lets one through.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from backup.azure import names
from backup.azure.resource_id import parse_disk_id
from backup.errors import ConfigurationError, InvalidInputError
from backup.settings import Settings, parse_tag_selector
from backup.workflow.startup import disk_ids_selection, resource_group_selection, tag_selection

Rule = Callable[..., str]


def _accepts(rule: Rule, value: str) -> None:
    assert rule(value) == value


def _refuses(rule: Rule, value: object, field: str = "the field") -> str:
    with pytest.raises(InvalidInputError) as caught:
        rule(value, field)
    assert caught.value.field == field
    return caught.value.problem


# -- storage accounts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "a" * 24, "backup01", "0123456789"])
def test_storage_account_names(value: str) -> None:
    _accepts(names.validate_storage_account_name, value)


@pytest.mark.parametrize(
    "value",
    ["ab", "a" * 25, "Backup", "back-up", "back_up", "bäckup", "", "backup\n", " backup", 42],
)
def test_storage_account_names_refused(value: object) -> None:
    _refuses(names.validate_storage_account_name, value)


# -- containers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "a" * 63, "disk-backups", "a-b-c", "0day", "x9y"])
def test_container_names(value: str) -> None:
    _accepts(names.validate_container_name, value)


@pytest.mark.parametrize(
    "value",
    [
        "ab",  # too short
        "a" * 64,  # too long
        "Backups",  # upper case
        "-backups",  # hyphen first
        "backups-",  # hyphen last
        "disk--backups",  # two hyphens together
        "disk_backups",
        "disk.backups",
        "backups\n",
        "",
    ],
)
def test_container_names_refused(value: str) -> None:
    _refuses(names.validate_container_name, value)


# -- tables ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "A" * 63, "diskbackupcatalog", "Catalog2026", "Tables2"])
def test_table_names(value: str) -> None:
    _accepts(names.validate_table_name, value)


@pytest.mark.parametrize(
    "value",
    ["ab", "a" * 64, "1catalog", "disk-backups", "disk_backups", "tables", "TABLES", "catalog\n", ""],
)
def test_table_names_refused(value: str) -> None:
    _refuses(names.validate_table_name, value)


# -- resource groups ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["r", "r" * 90, "rg-prod", "rg_(test).1", "grün", "RG.prod.1", "(rg)"])
def test_resource_group_names(value: str) -> None:
    _accepts(names.validate_resource_group_name, value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "empty"),
        ("r" * 91, "at most 90"),
        ("rg.", "period"),
        ("rg prod", "only letters"),
        ("rg/prod", "only letters"),
        ("rg#1", "only letters"),
        ("rg-prod\n", "only letters"),
    ],
)
def test_resource_group_names_refused(value: str, fragment: str) -> None:
    assert fragment in _refuses(names.validate_resource_group_name, value)


# -- disks and snapshots (Microsoft.Compute) -----------------------------------------------------------


COMPUTE_NAMES = ["d", "9", "a" * 80, "data-disk_01", "data.1", "myVM_OsDisk_1_abc", "disk_", "a.b.c"]
NOT_COMPUTE_NAMES = [
    ("", "empty"),
    ("a" * 81, "at most 80"),
    (".", "starting with a letter or digit"),
    ("..", "starting with a letter or digit"),
    ("-disk", "starting with a letter or digit"),
    ("_disk", "starting with a letter or digit"),
    ("disk.", "ending with a letter, digit or '_'"),
    ("disk-", "ending with a letter, digit or '_'"),
    ("data disk", "only letters"),
    ("dísk", "only letters"),
    ("disk/1", "only letters"),
    ("disk\n", "only letters"),
]


@pytest.mark.parametrize("rule", [names.validate_disk_name, names.validate_snapshot_name])
@pytest.mark.parametrize("value", COMPUTE_NAMES)
def test_disk_and_snapshot_names(rule: Rule, value: str) -> None:
    _accepts(rule, value)


@pytest.mark.parametrize("rule", [names.validate_disk_name, names.validate_snapshot_name])
@pytest.mark.parametrize(("value", "fragment"), NOT_COMPUTE_NAMES)
def test_disk_and_snapshot_names_refused(rule: Rule, value: str, fragment: str) -> None:
    assert fragment in _refuses(rule, value)


@pytest.mark.parametrize("value", ["d", "a" * 80, "data-disk_01", "disk_", "Snap-2026-x_1"])
def test_names_we_create(value: str) -> None:
    _accepts(names.validate_new_compute_name, value)


@pytest.mark.parametrize("value", ["data.1", "a.b", *(value for value, _ in NOT_COMPUTE_NAMES)])
def test_names_we_create_refused(value: str) -> None:
    _refuses(names.validate_new_compute_name, value)


# -- tags ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["t", "t" * 512, "backup", "Cost Center", "a=b", "team:ops", "ünïcode"])
def test_tag_names(value: str) -> None:
    _accepts(names.validate_tag_name, value)


@pytest.mark.parametrize("value", ["", "t" * 513, "a<b", "a>b", "50%", "a&b", "a\\b", "a?b", "a/b"])
def test_tag_names_refused(value: str) -> None:
    _refuses(names.validate_tag_name, value)


@pytest.mark.parametrize("value", ["", "v" * 256, "enabled", "a=b", "with space", "line\n"])
def test_tag_values(value: str) -> None:
    _accepts(names.validate_tag_value, value)  # kept exactly as given, a trailing newline included


def test_tag_values_refused() -> None:
    _refuses(names.validate_tag_value, "v" * 257)
    _refuses(names.validate_tag_value, None)


# -- task hubs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "A" * 45, "diskbackup", "TestHubName", "hub2026"])
def test_task_hub_names(value: str) -> None:
    _accepts(names.validate_task_hub_name, value)


@pytest.mark.parametrize("value", ["ab", "a" * 46, "2hub", "disk-backup", "disk_backup", "hub\n", ""])
def test_task_hub_names_refused(value: str) -> None:
    _refuses(names.validate_task_hub_name, value)


def test_long_values_are_not_echoed_whole() -> None:
    problem = _refuses(names.validate_container_name, "x" * 100_000)
    assert len(problem) < 300


# -- the doors use them -------------------------------------------------------------------------------

SUB = "00000000-0000-0000-0000-0000000000aa"
DISK = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/disks/"


@pytest.mark.parametrize("name", [".", "..", "disk.", "-disk"])
def test_a_disk_list_refuses_names_that_are_no_disk(name: str) -> None:
    # '.' or '..' as the last path segment would make ARM see the disk list (or the group) instead.
    with pytest.raises(InvalidInputError) as caught:
        disk_ids_selection([DISK + "ok", DISK + name])
    assert caught.value.field == "diskIds[1]: name"
    with pytest.raises(InvalidInputError):
        parse_disk_id(DISK + name)


def test_a_disk_id_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        disk_ids_selection([DISK + "ok\n"])


def test_a_tag_selection_checks_name_and_value_as_given() -> None:
    chosen = tag_selection("team", "a=b")
    assert (chosen.tag_name, chosen.tag_value) == ("team", "a=b")
    with pytest.raises(InvalidInputError, match="may not contain '='") as caught:
        tag_selection("a=b", "c")  # once joined and split, this became name 'a', value 'b=c'
    assert caught.value.field == "tag"
    for name, value in (("a/b", "c"), ("", "c"), ("t" * 513, "c"), ("team", "v" * 257)):
        with pytest.raises(InvalidInputError) as caught:
            tag_selection(name, value)
        assert caught.value.field == "tag"


def test_a_tag_selector_keeps_its_value_exactly() -> None:
    assert parse_tag_selector("team=ops=1") == ("team", "ops=1")
    assert parse_tag_selector("team=ops\n") == ("team", "ops\n")  # not silently cut at the newline
    for bad in ("novalue", "=x", "a/b=c"):
        with pytest.raises(InvalidInputError):
            parse_tag_selector(bad)


def test_a_resource_group_selection_refuses_a_trailing_newline() -> None:
    assert resource_group_selection("rg-prod").resource_group == "rg-prod"
    with pytest.raises(InvalidInputError) as caught:
        resource_group_selection("rg-prod\n")
    assert caught.value.field == "resourceGroup"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("BACKUP_STORAGE_ACCOUNT", "Backup_Acct"),
        ("BACKUP_CONTAINER", "disk--backups"),
        ("BACKUP_CATALOG_TABLE", "tables"),
        ("BACKUP_TASK_HUB", "disk-backup"),
        ("BACKUP_SELECT_TAG", "a<b=c"),
        ("BACKUP_SELECT_RESOURCE_GROUP", "rg."),
    ],
)
def test_settings_use_the_same_rules(setting: str, value: str) -> None:
    env = {"BACKUP_SUBSCRIPTION_ID": SUB, "BACKUP_STORAGE_ACCOUNT": "backupacct", setting: value}
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    assert caught.value.setting == setting
