"""The proving ground end to end, as the product will use it: ARM snapshot + grant, Copy Blob via the front.

Real Azurite, real front, real emulator; the blob side is driven by the official azure-storage-blob SDK
(test-only) against the backup account's endpoint, which is the front.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest
import requests
from azure.storage.blob import BlobServiceClient, ContainerClient

from testbed.proving_ground import EXAMPLE_DISKS, ProvingGround

API = "api-version=2026-03-02"
MIB = 1 << 20


class Arm:
    """Just enough ARM for these tests (the checked client lives in the fidelity tests)."""

    def __init__(self, pg: ProvingGround) -> None:
        self.pg = pg
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {pg.arm_token}"

    def call(self, method: str, path: str, body: object = None) -> requests.Response:
        url = path if path.startswith("https://") else self.pg.arm_endpoint + path
        return self.session.request(method, url, json=body, verify=str(self.pg.arm_ca_cert), timeout=60)

    def done(self, response: requests.Response) -> requests.Response:
        while response.status_code == 202:
            response = self.call("GET", response.headers["Location"])
        assert response.status_code < 400, response.text
        return response

    def snapshot_and_grant(self, rg: str, disk: str, name: str) -> str:
        base = f"/subscriptions/{self.pg.subscription_id}/resourceGroups/{rg}/providers/Microsoft.Compute"
        body = {
            "location": "westus",
            "properties": {
                "creationData": {"createOption": "Copy", "sourceResourceId": self.pg.disk_id(disk, rg)},
                "incremental": True,
            },
        }
        self.done(self.call("PUT", f"{base}/snapshots/{name}?{API}", body))
        grant = {"access": "Read", "durationInSeconds": 3600}
        return str(
            self.done(self.call("POST", f"{base}/snapshots/{name}/beginGetAccess?{API}", grant)).json()[
                "accessSAS"
            ]
        )

    def revoke(self, rg: str, name: str) -> None:
        base = f"/subscriptions/{self.pg.subscription_id}/resourceGroups/{rg}/providers/Microsoft.Compute"
        self.done(self.call("POST", f"{base}/snapshots/{name}/endGetAccess?{API}"))


@pytest.fixture
def arm(proving_ground: ProvingGround) -> Iterator[Arm]:
    client = Arm(proving_ground)
    yield client
    client.session.close()


@pytest.fixture
def container(proving_ground: ProvingGround, unique_name: str) -> ContainerClient:
    key = {"account_name": proving_ground.backup_account, "account_key": proving_ground.backup_account_key}
    service = BlobServiceClient(proving_ground.backup_blob_endpoint, credential=key)
    return service.create_container(unique_name)


def wait_for_copy(blob: object) -> dict[str, object]:
    for _ in range(50):
        copy = blob.get_blob_properties().copy  # type: ignore[attr-defined]
        if copy.status != "pending":
            return {"status": copy.status, "progress": copy.progress, "description": copy.status_description}
    raise AssertionError("copy still pending after 50 polls")


def test_snapshot_copied_through_the_front_matches_and_outlives_its_sas(
    proving_ground: ProvingGround, arm: Arm, container: ContainerClient, unique_name: str
) -> None:
    rg = proving_ground.resource_group
    disk = f"e2e{unique_name}"
    proving_ground.control(
        "PUT",
        f"/resourceGroups/{rg}/disks/{disk}",
        {"size_bytes": 8 * MIB, "fill": {"seed": 21, "fraction": 0.25}},
    )
    sas = arm.snapshot_and_grant(rg, disk, f"{disk}-s1")
    expected = requests.get(
        f"{proving_ground.control_url}/resourceGroups/{rg}/snapshots/{disk}-s1/content",
        verify=str(proving_ground.arm_ca_cert), timeout=60,
    ).content  # fmt: skip
    # The disk changes after the snapshot: the copy must still be the snapshot.
    proving_ground.control(
        "POST",
        f"/resourceGroups/{rg}/disks/{disk}/churn",
        {"seed": 2, "write_fraction": 0.2, "trim_fraction": 0.1},
    )
    blob = container.get_blob_client("copy.vhd")
    blob.start_copy_from_url(sas)
    outcome = wait_for_copy(blob)
    assert outcome["status"] == "success", outcome
    copied = blob.download_blob(offset=0, length=8 * MIB).readall()
    assert hashlib.sha256(copied).hexdigest() == hashlib.sha256(expected).hexdigest()
    arm.revoke(rg, f"{disk}-s1")
    assert requests.head(sas, timeout=30).status_code == 403
    again = blob.download_blob(offset=0, length=8 * MIB).readall()
    assert again == copied  # the md blob is gone; the copy keeps its data
    assert not [g for g in proving_ground.control("GET", "/grants")["resources"] if disk in g["id"]]


def test_copy_failure_and_vanishing_source_are_injected_through_the_control_surface(
    proving_ground: ProvingGround, arm: Arm, container: ContainerClient, unique_name: str
) -> None:
    rg = proving_ground.resource_group
    disk = f"cf{unique_name}"
    proving_ground.control(
        "PUT",
        f"/resourceGroups/{rg}/disks/{disk}",
        {"size_bytes": 2 * MIB, "fill": {"seed": 4, "fraction": 0.5}},
    )
    sas = arm.snapshot_and_grant(rg, disk, f"{disk}-s")
    answer = proving_ground.control(
        "POST", f"/resourceGroups/{rg}/snapshots/{disk}-s/copy-fails", {"description": "500 InternalError"}
    )
    assert answer["next_copy"] == "fails"
    blob = container.get_blob_client("failed.vhd")
    blob.start_copy_from_url(sas)
    outcome = wait_for_copy(blob)
    assert outcome["status"] == "failed" and "InternalError" in str(outcome["description"])
    proving_ground.control("POST", f"/resourceGroups/{rg}/snapshots/{disk}-s/source-disappears", {})
    assert requests.head(sas, timeout=30).status_code == 404
    arm.revoke(rg, f"{disk}-s")
    bad = proving_ground.control("POST", f"/resourceGroups/{rg}/snapshots/nothing/copy-fails", {})
    assert bad["error"]["code"] == "ResourceNotFound"


def test_seed_example_disks_makes_tagged_sparse_disks(proving_ground: ProvingGround) -> None:
    made = proving_ground.seed_example_disks()
    assert [d["name"] for d in made] == [name for name, *_ in EXAMPLE_DISKS]
    for body, (name, size, fraction, _, tags) in zip(made, EXAMPLE_DISKS, strict=True):
        assert body["tags"] == tags
        assert body["properties"]["diskSizeBytes"] == size
        digest = proving_ground.control(
            "GET", f"/resourceGroups/{proving_ground.resource_group}/disks/{name}/digest"
        )
        assert 0 < digest["populated_bytes"] <= size * fraction + 512 * 1024
    assert proving_ground.backup_blob_endpoint.endswith("/devstoreaccount1")
    assert proving_ground.backup_table_endpoint.endswith("/devstoreaccount1")


@pytest.mark.slow
def test_emulator_in_its_own_process_serves_the_proving_ground_and_ends_with_it(unique_name: str) -> None:
    """``emulator_process=True``: ARM, the control surface and the front answer from a child process (a
    snapshot granted there is copied through its front, byte for byte), and stopping the ground ends it."""
    with ProvingGround(emulator_process=True) as ground:
        assert ground.process is not None and ground.emulator is None and ground.data_plane is None
        child = ground.process.pid
        assert child is not None and child != os.getpid()
        rg = ground.resource_group
        disk = f"p{unique_name}"
        ground.control("PUT", f"/resourceGroups/{rg}/disks/{disk}", {"size_bytes": MIB, "fill": {"seed": 5}})
        arm = Arm(ground)
        try:
            sas = arm.snapshot_and_grant(rg, disk, f"{disk}-s1")
        finally:
            arm.session.close()
        key = {"account_name": ground.backup_account, "account_key": ground.backup_account_key}
        blob = (
            BlobServiceClient(ground.backup_blob_endpoint, credential=key)
            .create_container(unique_name)
            .get_blob_client("copy.vhd")
        )
        blob.start_copy_from_url(sas)
        assert wait_for_copy(blob)["status"] == "success"
        expected = ground.control("GET", f"/resourceGroups/{rg}/snapshots/{disk}-s1/digest")
        copied = blob.download_blob(offset=0, length=MIB).readall()
        assert hashlib.sha256(copied).hexdigest() == expected["sha256"]
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
