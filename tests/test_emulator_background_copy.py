"""The emulator's Premium SSD v2 / Ultra snapshots: a background copy before they can be read.

What Azure documents (learn.microsoft.com: disks-incremental-snapshots, "Check snapshot status" and the
restrictions for Premium SSD v2 and Ultra; disks-instant-access-snapshots, "Check snapshot access state"):
an incremental snapshot of such a disk copies in the background after its creation; ``completionPercent``
must reach 100 "before you can use the snapshot for restoring disk or generate a SAS URI"; its
``snapshotAccessState`` is ``Pending`` meanwhile (``InstantAccess`` for an instant-access snapshot, which
can restore disks but not be downloaded), then ``Available`` (``AvailableWithInstantAccess``); up to three
snapshots of a disk may be pending at once. Snapshots of the other disk types are readable at once.

Every ARM answer here is validated against DiskRP.json by :class:`spec_oracle.ArmClient`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from spec_oracle import ArmClient, SpecOracle

from testbed.proving_ground import ProvingGround

API = "api-version=2026-03-02"
MIB = 1 << 20


@pytest.fixture(scope="module")
def oracle() -> SpecOracle:
    return SpecOracle()


@pytest.fixture
def arm(proving_ground: ProvingGround, oracle: SpecOracle) -> Iterator[ArmClient]:
    saved = proving_ground.control("GET", "/config")
    client = ArmClient(
        proving_ground.arm_endpoint, proving_ground.arm_token, proving_ground.arm_ca_cert, oracle
    )
    try:
        yield client
    finally:
        client.close()
        # The proving ground is the session's: leave its knobs as they were.
        proving_ground.control("PATCH", "/config", saved)
    assert client.checked > 0


@pytest.fixture
def rg(proving_ground: ProvingGround, unique_name: str) -> str:
    proving_ground.control("PUT", f"/resourceGroups/{unique_name}", {"location": "westus"})
    return unique_name


class Corner:
    """One test's resource group, spoken to through ARM (checked) and the control surface."""

    def __init__(self, arm: ArmClient, ground: ProvingGround, group: str) -> None:
        self.arm, self.ground, self.group = arm, ground, group
        self.base = (
            f"/subscriptions/{ground.subscription_id}/resourceGroups/{group}/providers/Microsoft.Compute"
        )

    def disk(self, name: str, sku: str) -> str:
        body = {"size_bytes": 2 * MIB, "fill": {"seed": 3, "fraction": 0.3}, "sku": sku}
        made = self.ground.control("PUT", f"/resourceGroups/{self.group}/disks/{name}", body)
        assert made["sku"]["name"] == sku, made
        return self.ground.disk_id(name, self.group)

    def snapshot(self, name: str, disk_id: str, **creation: Any) -> requests.Response:
        body = {
            "location": "westus",
            "properties": {
                "creationData": {"createOption": "Copy", "sourceResourceId": disk_id, **creation},
                "incremental": True,
            },
        }
        accepted = self.arm.put(f"{self.base}/snapshots/{name}?{API}", body)
        return self.arm.wait(accepted) if accepted.status_code == 202 else accepted

    def get(self, name: str) -> dict[str, Any]:
        response = self.arm.get(f"{self.base}/snapshots/{name}?{API}")
        assert response.status_code == 200, response.text
        return dict(response.json()["properties"])

    def grant(self, name: str) -> requests.Response:
        accepted = self.arm.post(
            f"{self.base}/snapshots/{name}/beginGetAccess?{API}", {"access": "Read", "durationInSeconds": 600}
        )
        return self.arm.wait(accepted) if accepted.status_code == 202 else accepted

    def revoke(self, name: str) -> None:
        accepted = self.arm.post(f"{self.base}/snapshots/{name}/endGetAccess?{API}")
        assert self.arm.wait(accepted).status_code == 200

    def disk_from(self, name: str, snapshot: str) -> requests.Response:
        source = f"{self.base}/snapshots/{snapshot}"
        body = {
            "location": "westus",
            "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": source}},
        }
        accepted = self.arm.put(f"{self.base}/disks/{name}?{API}", body)
        return self.arm.wait(accepted) if accepted.status_code == 202 else accepted


@pytest.fixture
def corner(arm: ArmClient, proving_ground: ProvingGround, rg: str) -> Corner:
    return Corner(arm, proving_ground, rg)


def _error(response: requests.Response) -> tuple[int, str]:
    return response.status_code, str(response.json()["error"]["code"])


@pytest.mark.parametrize("sku", ["PremiumV2_LRS", "UltraSSD_LRS"])
def test_a_snapshot_copies_in_the_background_and_cannot_be_granted_until_done(
    corner: Corner, proving_ground: ProvingGround, sku: str
) -> None:
    proving_ground.control("PATCH", "/config", {"background_copy_polls": 3})
    disk_id = corner.disk("d", sku)
    created = corner.snapshot("s", disk_id)
    assert created.status_code == 200
    # The creation's own answer: created, its copy not begun.
    properties = created.json()["properties"]
    assert (properties["completionPercent"], properties["snapshotAccessState"]) == (0.0, "Pending")

    refused = corner.grant("s")
    assert _error(refused) == (409, "OperationNotAllowed")
    assert "background copy" in refused.json()["error"]["message"]
    # Each GET moves the copy on; the control surface's GET does not.
    seen = [(p["completionPercent"], p["snapshotAccessState"]) for p in (corner.get("s") for _ in range(2))]
    assert seen == [(33.3, "Pending"), (66.7, "Pending")]
    control = proving_ground.control("GET", f"/resourceGroups/{corner.group}/snapshots/s")
    assert control["properties"]["completionPercent"] == 66.7
    assert _error(corner.grant("s")) == (409, "OperationNotAllowed")
    assert _error(corner.disk_from("restored", "s")) == (409, "OperationNotAllowed")

    done = corner.get("s")
    assert (done["completionPercent"], done["snapshotAccessState"]) == (100.0, "Available")
    assert corner.get("s")["completionPercent"] == 100.0  # and it stays there
    granted = corner.grant("s")
    assert granted.status_code == 200 and granted.json()["accessSAS"].startswith("http")
    corner.revoke("s")
    assert corner.disk_from("restored", "s").status_code == 200


@pytest.mark.parametrize("sku", ["Standard_LRS", "Premium_LRS", "StandardSSD_ZRS"])
def test_other_skus_snapshots_are_readable_at_once(
    corner: Corner, proving_ground: ProvingGround, sku: str
) -> None:
    proving_ground.control("PATCH", "/config", {"background_copy_polls": 5})
    created = corner.snapshot("s", corner.disk("d", sku)).json()["properties"]
    assert created["snapshotAccessState"] == "Available" and "completionPercent" not in created
    assert corner.grant("s").status_code == 200
    corner.revoke("s")


def test_a_full_snapshot_is_not_background_copied(corner: Corner, proving_ground: ProvingGround) -> None:
    # Azure allows only incremental snapshots of these disks (disks FAQ); the emulator does not refuse a
    # full one, and it does not model a background copy for it either.
    proving_ground.control("PATCH", "/config", {"background_copy_polls": 5})
    source = corner.disk("d", "PremiumV2_LRS")
    body = {
        "location": "westus",
        "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": source}},
    }
    final = corner.arm.wait(corner.arm.put(f"{corner.base}/snapshots/full?{API}", body))
    assert "completionPercent" not in final.json()["properties"]
    assert corner.grant("full").status_code == 200
    corner.revoke("full")


def test_with_no_polls_the_copy_is_complete_when_the_snapshot_is(
    corner: Corner, proving_ground: ProvingGround
) -> None:
    proving_ground.control("PATCH", "/config", {"background_copy_polls": 0})
    created = corner.snapshot("s", corner.disk("d", "PremiumV2_LRS")).json()["properties"]
    assert (created["completionPercent"], created["snapshotAccessState"]) == (100.0, "Available")
    assert corner.grant("s").status_code == 200
    corner.revoke("s")


def test_an_instant_access_snapshot_restores_disks_but_is_not_read_until_copied(
    corner: Corner, proving_ground: ProvingGround
) -> None:
    proving_ground.control("PATCH", "/config", {"background_copy_polls": 2})
    created = corner.snapshot("ia", corner.disk("d", "UltraSSD_LRS"), instantAccessDurationMinutes=60)
    properties = created.json()["properties"]
    assert properties["snapshotAccessState"] == "InstantAccess"
    assert properties["creationData"]["instantAccessDurationMinutes"] == 60
    assert _error(corner.grant("ia")) == (409, "OperationNotAllowed")
    assert corner.disk_from("fast", "ia").status_code == 200  # what instant access is for
    assert corner.get("ia")["snapshotAccessState"] == "InstantAccess"
    done = corner.get("ia")
    assert (done["completionPercent"], done["snapshotAccessState"]) == (100.0, "AvailableWithInstantAccess")
    assert corner.grant("ia").status_code == 200
    corner.revoke("ia")


def test_at_most_three_snapshots_of_a_disk_are_pending(corner: Corner, proving_ground: ProvingGround) -> None:
    proving_ground.control("PATCH", "/config", {"background_copy_polls": 1})
    disk_id = corner.disk("d", "PremiumV2_LRS")
    for name in ("s1", "s2", "s3"):
        assert corner.snapshot(name, disk_id).status_code == 200
    fourth = corner.snapshot("s4", disk_id)
    assert _error(fourth) == (409, "OperationNotAllowed")
    assert "at most 3" in fourth.json()["error"]["message"]
    # Another disk is not held up by this one's.
    assert corner.snapshot("other", corner.disk("d2", "PremiumV2_LRS")).status_code == 200
    assert corner.get("s1")["completionPercent"] == 100.0  # one copy done: room for one more
    assert corner.snapshot("s4", disk_id).status_code == 200


def test_a_snapshot_whose_creation_failed_is_not_pending(
    corner: Corner, proving_ground: ProvingGround
) -> None:
    proving_ground.control("PATCH", "/config", {"background_copy_polls": 1})
    disk_id = corner.disk("d", "PremiumV2_LRS")
    fault = {"operation": "Snapshots_CreateOrUpdate", "action": "Failed", "resource_name": "bad"}
    proving_ground.control("POST", "/faults", fault)
    try:
        assert corner.snapshot("bad", disk_id).status_code == 500
    finally:
        proving_ground.control("DELETE", "/faults")
    for name in ("s1", "s2", "s3"):
        assert corner.snapshot(name, disk_id).status_code == 200


def test_the_knob_and_the_control_surfaces_sku_are_validated(proving_ground: ProvingGround, rg: str) -> None:
    bad = proving_ground.control("PATCH", "/config", {"background_copy_polls": -1})
    assert bad["error"]["code"] == "InvalidInput"
    config = proving_ground.control("GET", "/config")
    assert isinstance(config["background_copy_polls"], int) and config["background_copy_polls"] >= 0
    wrong = proving_ground.control("PUT", f"/resourceGroups/{rg}/disks/d", {"size_bytes": MIB, "sku": "Fast"})
    assert (wrong["error"]["code"], wrong["error"]["target"]) == ("InvalidInput", "sku")
