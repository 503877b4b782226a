"""The pure parts of backup.azure.compute: snapshot names, tags, tag matching, reading ARM bodies.

ARM bodies come from the spec's own examples (tests/spec), with their placeholder IDs made real.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backup.azure.compute import (
    MAX_TAG_VALUE,
    Disk,
    Snapshot,
    copies_in_background,
    matches_tags,
    snapshot_name,
    snapshot_readable,
    snapshot_tags,
    source_disk_tag,
    validate_run_id,
)
from backup.azure.resource_id import disk_id, validate_new_name
from backup.errors import InvalidInputError, UnexpectedResponseError

SPEC = Path(__file__).parent / "spec"
SUB = "5f1c2d3e-aaaa-4bbb-8ccc-0123456789ab"
DISK = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/disks/data-1"
RUN = "nightly-20261126T010000Z"


def _example(path: str) -> dict[str, Any]:
    body = json.loads((SPEC / path).read_text())["responses"]["200"]["body"]
    text = json.dumps(body).replace("{subscriptionId}", SUB).replace("{subscription-id}", SUB)
    return dict(json.loads(text))


# -- snapshot names ---------------------------------------------------------------------------------


def test_snapshot_name_reads_well_and_is_deterministic() -> None:
    name = snapshot_name(RUN, DISK)
    assert re.fullmatch(r"data-1-nightly-20261126T010000Z-[0-9a-f]{12}", name)
    assert snapshot_name(RUN, DISK) == name


def test_snapshot_name_ignores_the_casing_of_the_disk_id() -> None:
    assert snapshot_name(RUN, DISK.upper().replace("SUBSCRIPTIONS", "subscriptions")).lower() == (
        snapshot_name(RUN, DISK).lower()
    )


def test_same_disk_name_in_two_resource_groups_gets_two_names() -> None:
    other = DISK.replace("/rg/", "/rg-other/")
    assert snapshot_name(RUN, DISK) != snapshot_name(RUN, other)


def test_long_names_stay_within_80_and_distinct() -> None:
    a = disk_id(SUB, "rg", "d" * 79 + "a")
    b = disk_id(SUB, "rg", "d" * 79 + "b")
    long_run = "run-" + "x" * 96
    name_a, name_b = snapshot_name(long_run, a), snapshot_name(long_run, b)
    assert len(name_a) == len(name_b) == 80
    assert name_a != name_b


def test_run_ids_differing_only_in_punctuation_get_distinct_names() -> None:
    assert snapshot_name("run:1", DISK) != snapshot_name("run.1", DISK)


def test_a_disk_name_azure_allows_but_we_could_not_create_still_gives_a_valid_name() -> None:
    name = snapshot_name(RUN, disk_id(SUB, "rg", "data.disk.1_"))
    assert name.startswith("data-disk-1_-")
    validate_new_name(name)


@pytest.mark.parametrize("run_id", ["", "-starts-with-dash", "has space", "a/b", "x" * 101, "naïve"])
def test_bad_run_ids_are_refused(run_id: str) -> None:
    with pytest.raises(InvalidInputError, match="run id"):
        snapshot_name(run_id, DISK)


# Azure's rule for disk names (backup.azure.names).
_disk_names = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?", fullmatch=True)
_run_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}", fullmatch=True)


@given(_run_ids, _disk_names)
def test_every_snapshot_name_is_valid(run_id: str, name: str) -> None:
    result = snapshot_name(run_id, disk_id(SUB, "rg", name))
    assert len(result) <= 80
    validate_new_name(result)


@given(_run_ids, _disk_names, _run_ids, _disk_names)
def test_distinct_run_and_disk_give_distinct_names(run_a: str, disk_a: str, run_b: str, disk_b: str) -> None:
    same = run_a == run_b and disk_a.lower() == disk_b.lower()
    a = snapshot_name(run_a, disk_id(SUB, "rg", disk_a))
    b = snapshot_name(run_b, disk_id(SUB, "rg", disk_b))
    assert (a.lower() == b.lower()) == same


def test_validate_run_id_accepts_durable_instance_ids() -> None:
    assert validate_run_id("0f3c2b1a9e8d4c7b6a5f4e3d2c1b0a99") == "0f3c2b1a9e8d4c7b6a5f4e3d2c1b0a99"
    assert validate_run_id(RUN) == RUN


# -- tags ---------------------------------------------------------------------------------------------


def test_snapshot_tags() -> None:
    assert snapshot_tags(DISK, RUN) == {
        "createdBy": "diskbackup",
        "runId": RUN,
        "sourceDiskId": DISK.lower(),
    }


def test_a_disk_id_too_long_for_a_tag_is_hashed() -> None:
    long_id = disk_id(SUB, "g" * 90, "n" * 80)
    assert len(str(long_id)) > MAX_TAG_VALUE
    value = source_disk_tag(long_id)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", value)
    # Stable whatever the casing of the ID it is computed from.
    assert source_disk_tag(str(long_id).upper().replace("SUBSCRIPTIONS", "subscriptions")) == value


def test_source_disk_tag_is_lower_case_so_any_casing_matches() -> None:
    assert source_disk_tag(DISK.replace("data-1", "DATA-1")) == source_disk_tag(DISK)


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ({"backup": "nightly"}, True),
        ({"BACKUP": "nightly"}, True),  # names compare case-insensitively
        ({"backup": "Nightly"}, False),  # values exactly
        ({"backup": None}, True),  # presence only
        ({"missing": None}, False),
        ({"backup": "nightly", "env": "prod"}, True),
        ({"backup": "nightly", "env": "dev"}, False),
        ({}, True),
    ],
)
def test_matches_tags(wanted: dict[str, str | None], expected: bool) -> None:
    assert matches_tags({"Backup": "nightly", "env": "prod"}, wanted) is expected


# -- reading ARM bodies --------------------------------------------------------------------------------


def test_disk_from_the_spec_example() -> None:
    disk = Disk.from_arm(_example("examples-2026-03-02/diskExamples/Disk_Get.json"))
    assert disk.name == "myManagedDisk"
    assert disk.location == "westus"
    assert disk.size_bytes == 10 << 30  # from diskSizeGB: the example has no diskSizeBytes
    assert disk.sku == "Standard_LRS"
    assert disk.provisioning_state == "Succeeded"
    assert disk.tags == {"department": "Development", "project": "ManagedDisks"}
    assert disk.managed_by is not None and disk.managed_by.endswith("TestVM414689371c88843d65ec")
    assert not disk.snapshot_copies_in_background
    assert disk.resource_id.name == "myManagedDisk"


def test_incremental_snapshot_from_the_spec_example() -> None:
    snap = Snapshot.from_arm(
        _example("examples-2025-01-02/snapshotExamples/Snapshot_GetIncrementalSnapshot.json")
    )
    assert snap.incremental is True
    assert snap.family_id == "d1a341d5-1ea7-4a85-b304-944ad8021639"
    assert snap.size_bytes == 10737418240  # diskSizeBytes wins over diskSizeGB
    assert snap.source_disk_id is not None and snap.source_disk_id.endswith("/disks/myDisk")
    assert snap.source_unique_id == "d633885d-d102-4481-901e-5b2413d1a7be"
    assert snap.ready


def test_premium_v2_disk_snapshots_copy_in_background() -> None:
    body = _example("examples-2026-03-02/diskExamples/Disk_Get.json")
    body["sku"] = {"name": "PremiumV2_LRS"}
    assert Disk.from_arm(body).snapshot_copies_in_background


def test_a_snapshot_still_copying_is_not_ready() -> None:
    body = _example("examples-2025-01-02/snapshotExamples/Snapshot_GetIncrementalSnapshot.json")
    body["properties"]["completionPercent"] = 42.5
    body["properties"]["snapshotAccessState"] = "Pending"
    snap = Snapshot.from_arm(body)
    assert (snap.completion_percent, snap.access_state) == (42.5, "Pending")
    assert not snap.ready
    body["properties"].update(completionPercent=100, snapshotAccessState="available")
    snap = Snapshot.from_arm(body)
    assert (snap.completion_percent, snap.access_state) == (100.0, "Available")  # the spec's casing
    assert snap.ready


@pytest.mark.parametrize(
    ("sku", "expected"),
    [
        ("PremiumV2_LRS", True),
        ("UltraSSD_LRS", True),
        ("Premium_LRS", False),
        ("StandardSSD_ZRS", False),
        ("Standard_LRS", False),
        (None, False),
    ],
)
def test_which_skus_copy_in_the_background(sku: str | None, expected: bool) -> None:
    assert copies_in_background(sku) is expected


@pytest.mark.parametrize(
    ("provisioning", "percent", "state", "error", "readable"),
    [
        # Premium SSD v2 / Ultra: readable once the copy is complete, and only then.
        ("Succeeded", 0.0, "Pending", None, False),
        ("Succeeded", 99.9, "Pending", None, False),
        ("Succeeded", 100.0, "Pending", None, False),  # the state has the last word
        ("Succeeded", 100.0, "Available", None, True),
        # Instant access: disks can be restored from it, its data cannot be downloaded until copied.
        ("Succeeded", 40.0, "InstantAccess", None, False),
        ("Succeeded", 100.0, "InstantAccess", None, False),
        ("Succeeded", 100.0, "AvailableWithInstantAccess", None, True),
        # Other disk types: no state or the default one, percent absent or 100.
        ("Succeeded", None, None, None, True),
        ("Succeeded", 100.0, None, None, True),
        ("Succeeded", None, "Unknown", None, True),
        ("Succeeded", 50.0, None, None, False),
        ("Succeeded", None, "Available", None, True),
        # Not provisioned, or the copy failed, or a state we do not know: not readable.
        ("Updating", 100.0, "Available", None, False),
        ("Failed", None, None, None, False),
        (None, None, None, None, False),
        ("Succeeded", 100.0, "Available", "CopySourceNotFound: gone", False),
        ("Succeeded", 100.0, "SomethingNew", None, False),
    ],
)
def test_when_a_snapshot_can_be_read_through_a_grant(
    provisioning: str | None, percent: float | None, state: str | None, error: str | None, readable: bool
) -> None:
    assert snapshot_readable(provisioning, percent, state, error) is readable


def test_a_failed_background_copy_is_read() -> None:
    body = _example("examples-2025-01-02/snapshotExamples/Snapshot_GetIncrementalSnapshot.json")
    body["properties"]["copyCompletionError"] = {
        "errorCode": "CopySourceNotFound",
        "errorMessage": "The source was deleted.",
    }
    snap = Snapshot.from_arm(body)
    assert snap.copy_error == "CopySourceNotFound: The source was deleted."
    assert not snap.ready


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"completionPercent": "50"}, "snapshot.properties.completionPercent"),
        ({"completionPercent": True}, "snapshot.properties.completionPercent"),
        ({"completionPercent": -1}, "snapshot.properties.completionPercent"),
        ({"completionPercent": 100.5}, "snapshot.properties.completionPercent"),
        ({"snapshotAccessState": 3}, "snapshot.properties.snapshotAccessState"),
        ({"snapshotAccessState": ""}, "snapshot.properties.snapshotAccessState"),
        ({"copyCompletionError": "broken"}, "snapshot.properties.copyCompletionError"),
        ({"copyCompletionError": {"errorMessage": "x"}}, "snapshot.properties.copyCompletionError"),
    ],
)
def test_malformed_background_copy_state_is_refused(properties: dict[str, Any], field: str) -> None:
    body = _example("examples-2025-01-02/snapshotExamples/Snapshot_GetIncrementalSnapshot.json")
    body["properties"].update(properties)
    with pytest.raises(InvalidInputError) as caught:
        Snapshot.from_arm(body)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": None}, "disk.id"),
        ({"name": 3}, "disk.name"),
        ({"location": ""}, "disk.location"),
        ({"id": "/subscriptions/x/y"}, "disk.id"),
    ],
)
def test_malformed_disk_bodies_are_refused(change: dict[str, Any], field: str) -> None:
    body = _example("examples-2026-03-02/diskExamples/Disk_Get.json") | change
    with pytest.raises(UnexpectedResponseError) as caught:
        Disk.from_arm(body)
    assert caught.value.field == field


def test_a_snapshot_id_is_not_a_disk() -> None:
    body = _example("examples-2025-01-02/snapshotExamples/Snapshot_GetIncrementalSnapshot.json")
    with pytest.raises(UnexpectedResponseError, match="must be a disk ID"):
        Disk.from_arm(body)
