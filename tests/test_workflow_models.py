"""The workflow's records as JSON: what the background-copy wait added, and that older inputs still parse."""

from __future__ import annotations

from typing import Any

import pytest

from backup.errors import InvalidInputError
from backup.workflow.models import DiskRef, DiskStatus, RunOptions

SUB = "00000000-0000-0000-0000-0000000000aa"
DISK: dict[str, Any] = {
    "id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/disks/d",
    "name": "d",
    "resourceGroup": "rg",
    "subscriptionId": SUB,
    "location": "westus",
    "sizeBytes": 1 << 20,
}


def test_a_disk_ref_carries_its_sku_and_one_without_still_parses() -> None:
    old = DiskRef.from_json(DISK)
    assert old.sku is None and old.to_json() == DISK  # unchanged shape for inputs made before the sku
    v2 = DiskRef.from_json({**DISK, "sku": "PremiumV2_LRS"})
    assert v2.sku == "PremiumV2_LRS" and DiskRef.from_json(v2.to_json()) == v2


@pytest.mark.parametrize(
    ("sku", "may_copy"),
    [
        ("PremiumV2_LRS", True),
        ("UltraSSD_LRS", True),
        (None, True),
        ("Premium_LRS", False),
        ("Standard_LRS", False),
    ],
)
def test_which_disks_snapshots_may_copy_in_the_background(sku: str | None, may_copy: bool) -> None:
    assert DiskRef.from_json({**DISK, "sku": sku}).snapshot_may_copy_in_background is may_copy


def test_a_disk_refs_sku_must_be_a_string() -> None:
    with pytest.raises(InvalidInputError) as caught:
        DiskRef.from_json({**DISK, "sku": 7})
    assert caught.value.field == "disk.sku"


def test_run_options_carry_the_background_copy_deadline_with_a_default_for_older_inputs() -> None:
    options = RunOptions("c", snapshot_copy_timeout_minutes=90)
    data = options.to_json()
    assert data["snapshotCopyTimeoutMinutes"] == 90 and RunOptions.from_json(data) == options
    del data["snapshotCopyTimeoutMinutes"]
    assert RunOptions.from_json(data).snapshot_copy_timeout_minutes == 720
    for bad in (0, 10081, "60", True):
        with pytest.raises(InvalidInputError) as caught:
            RunOptions.from_json({**data, "snapshotCopyTimeoutMinutes": bad})
        assert caught.value.field == "options.snapshotCopyTimeoutMinutes"


def test_a_disk_status_shows_the_snapshot_copy_percent_only_when_there_is_one() -> None:
    plain = DiskStatus("d", "grant")
    assert "snapshotCopyPercent" not in plain.to_json()
    copying = DiskStatus("d", "snapshot-copy", snapshot_copy_percent=37.5)
    assert copying.to_json()["snapshotCopyPercent"] == 37.5
    assert DiskStatus.from_json(copying.to_json()) == copying
    for bad in (-1, 101, "50", False):
        assert DiskStatus.read({**copying.to_json(), "snapshotCopyPercent": bad}) is None
