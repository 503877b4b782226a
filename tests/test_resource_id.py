"""Parsing and validating ARM resource IDs of disks and snapshots."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backup.azure.resource_id import (
    ResourceId,
    disk_id,
    parse_disk_id,
    parse_resource_id,
    parse_snapshot_id,
    parse_storage_account_id,
    validate_new_name,
    validate_resource_group,
)
from backup.errors import InvalidInputError

SUB = "5f1c2d3e-aaaa-4bbb-8ccc-0123456789ab"
DISK = f"/subscriptions/{SUB}/resourceGroups/rg-prod/providers/Microsoft.Compute/disks/data-disk_01"


def test_parses_a_disk_id() -> None:
    rid = parse_resource_id(DISK)
    assert rid == ResourceId(SUB, "rg-prod", "disks", "data-disk_01")
    assert rid.resource_type == "disks"
    assert str(rid) == DISK
    assert rid.resource_group_path == f"/subscriptions/{SUB}/resourceGroups/rg-prod"


def test_keywords_are_case_insensitive_and_written_canonically() -> None:
    shouted = (
        f"/SUBSCRIPTIONS/{SUB.upper()}/resourcegroups/RG-Prod/PROVIDERS/microsoft.compute/Disks/Data-Disk_01"
    )
    rid = parse_disk_id(shouted)
    # Names keep their case; keywords are canonical; the two IDs name the same resource.
    canonical = "/providers/Microsoft.Compute/disks/Data-Disk_01"
    assert str(rid) == f"/subscriptions/{SUB.upper()}/resourceGroups/RG-Prod{canonical}"
    assert rid == parse_disk_id(DISK)
    assert hash(rid) == hash(parse_disk_id(DISK))


def test_a_real_disk_name_with_a_period_is_accepted() -> None:
    assert parse_disk_id(DISK.replace("data-disk_01", "data.1")).name == "data.1"


def test_resource_group_with_parentheses_and_unicode_letters() -> None:
    assert validate_resource_group("rg_(test).ü-1") == "rg_(test).ü-1"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "must not be empty"),
        ("subscriptions/x", "expected /subscriptions/"),
        (DISK + "/", "expected /subscriptions/"),
        (DISK + "/extra", "expected /subscriptions/"),
        (DISK.replace("Microsoft.Compute", "Microsoft.Storage"), "expected /subscriptions/"),
        (DISK.replace("resourceGroups", "resourceGroup"), "expected /subscriptions/"),
        (DISK.replace("/disks/", "/virtualMachines/"), "must be disks or snapshots"),
        (DISK.replace(SUB, "not-a-guid"), "subscription id: must be a GUID"),
        (DISK.replace("rg-prod", "rg."), "must not end with a period"),
        (DISK.replace("rg-prod", "r" * 91), "at most 90 characters"),
        (DISK.replace("rg-prod", "rg prod"), "only letters"),
        (DISK.replace("data-disk_01", "d" * 81), "at most 80 characters"),
        (DISK.replace("data-disk_01", "data disk"), "only letters"),
        (DISK.replace("data-disk_01", "disk%2F1"), "only letters"),
        # '.' and '..' would turn the ARM path into the disk list (or its parent).
        (DISK.replace("data-disk_01", "."), "starting with a letter or digit"),
        (DISK.replace("data-disk_01", ".."), "starting with a letter or digit"),
        (DISK.replace("data-disk_01", "disk."), "ending with a letter, digit or '_'"),
        (DISK.replace("data-disk_01", "-disk"), "starting with a letter or digit"),
        (DISK + "\n", "only letters"),
    ],
)
def test_invalid_ids_are_refused_with_a_reason(value: str, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_resource_id(value, "sourceDisk")
    assert caught.value.field.startswith("sourceDisk")
    assert fragment in str(caught.value)


def test_expected_type_is_enforced() -> None:
    with pytest.raises(InvalidInputError, match="must be a snapshot ID, got a disk ID"):
        parse_snapshot_id(DISK)


@pytest.mark.parametrize("name", ["a", "disk-1", "Disk_", "a" * 80, "x-y_z9"])
def test_new_names_that_are_fine(name: str) -> None:
    assert validate_new_name(name) == name


@pytest.mark.parametrize("name", ["", "-disk", "_disk", "disk-", "disk.1", "a" * 81, "dísk"])
def test_new_names_that_are_refused(name: str) -> None:
    with pytest.raises(InvalidInputError):
        validate_new_name(name, "snapshot name")


def test_an_id_without_the_leading_slash_is_accepted_as_arm_does() -> None:
    # The spec's own examples write sourceResourceId as "subscriptions/...".
    assert parse_disk_id(DISK[1:]) == parse_disk_id(DISK)
    assert str(parse_disk_id(DISK[1:])) == DISK


STORAGE = (
    f"/subscriptions/{SUB}/resourceGroups/rg-backup/providers/Microsoft.Storage/storageAccounts/backups01"
)


def test_storage_account_id() -> None:
    assert parse_storage_account_id(STORAGE) == STORAGE
    shouted = STORAGE.replace("Microsoft.Storage/storageAccounts", "MICROSOFT.STORAGE/StorageAccounts")
    assert parse_storage_account_id(shouted[1:]) == STORAGE


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (STORAGE.replace("backups01", "Backups01"), "lowercase"),
        (STORAGE.replace("backups01", "ab"), "3-24"),
        (STORAGE.replace("backups01", "b" * 25), "3-24"),
        (STORAGE.replace("Microsoft.Storage", "Microsoft.Compute"), "expected /subscriptions/"),
        (DISK, "expected /subscriptions/"),
        (STORAGE.replace(SUB, "x"), "GUID"),
    ],
)
def test_bad_storage_account_ids(value: str, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        parse_storage_account_id(value)


def test_constructor_validates_too() -> None:
    with pytest.raises(InvalidInputError, match="GUID"):
        disk_id("nope", "rg", "d")


# -- properties --------------------------------------------------------------------------------------

_guids = st.uuids().map(str)
_groups = st.from_regex(r"[-\w.()]{0,89}[-\w()]", fullmatch=True).filter(lambda s: len(s) <= 90)
# Azure's rule for disk and snapshot names (backup.azure.names): a letter or digit first, a letter,
# digit or '_' last.
_names = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?", fullmatch=True)
_types = st.sampled_from(["disks", "snapshots"])


@given(_guids, _groups, _types, _names)
def test_round_trip(sub: str, group: str, rtype: str, name: str) -> None:
    rid = ResourceId(sub, group, rtype, name)  # type: ignore[arg-type]
    assert parse_resource_id(str(rid)) == rid
    assert str(parse_resource_id(str(rid))) == str(rid)


@given(_guids, _groups, _types, _names, st.randoms(use_true_random=False))
def test_any_keyword_casing_names_the_same_resource(
    sub: str, group: str, rtype: str, name: str, rnd: object
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    rid = ResourceId(sub, group, rtype, name)  # type: ignore[arg-type]
    text = str(rid)
    # ASCII only: Unicode case mappings do not round-trip (sharp s upper-cases to "SS", dotless i to "I").
    jumbled = "".join(c.upper() if c.isascii() and rnd.random() < 0.5 else c for c in text)
    assert parse_resource_id(jumbled) == rid
