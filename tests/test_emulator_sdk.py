"""The official azure-mgmt-compute SDK (test-only) drives the emulator with its own pipeline and LRO poller.

If the SDK's ARM polling, paging, error mapping or bearer policy disagrees with the emulator, these fail:
create snapshot -> grant access -> revoke -> delete, each through ``begin_*().result()``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import CreationData, GrantAccessData, Snapshot

from testbed.proving_ground import ProvingGround

MIB = 1 << 20


class StaticCredential:
    """A TokenCredential holding the emulator's token (the SDK's seam for credentials)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture
def client(proving_ground: ProvingGround) -> Iterator[tuple[ComputeManagementClient, StaticCredential]]:
    # azure-core's poller sleeps Retry-After when the server sends one; 0 lets polling_interval=0 rule.
    proving_ground.control("PATCH", "/config", {"retry_after": 0, "operation_polls": 2})
    credential = StaticCredential(proving_ground.arm_token)
    compute = ComputeManagementClient(
        credential,  # type: ignore[arg-type]
        proving_ground.subscription_id,
        base_url=proving_ground.arm_endpoint,
        polling_interval=0,
        connection_verify=str(proving_ground.arm_ca_cert),
    )
    yield compute, credential
    compute.close()
    proving_ground.control("PATCH", "/config", {"retry_after": 1, "operation_polls": 2, "page_size": 2})


def test_sdk_snapshot_grant_revoke_delete(
    client: tuple[ComputeManagementClient, StaticCredential], proving_ground: ProvingGround, unique_name: str
) -> None:
    compute, credential = client
    rg = proving_ground.resource_group
    disk = f"sdk{unique_name}"
    proving_ground.control(
        "PUT",
        f"/resourceGroups/{rg}/disks/{disk}",
        {"size_bytes": 4 * MIB, "fill": {"seed": 5, "fraction": 0.3}},
    )
    source = compute.disks.get(rg, disk)
    snapshot = compute.snapshots.begin_create_or_update(
        rg,
        f"{disk}-snap",
        Snapshot(
            location="westus",
            creation_data=CreationData(create_option="Copy", source_resource_id=source.id),
            incremental=True,
            tags={"made-by": "sdk"},
        ),
    ).result()
    assert snapshot.provisioning_state == "Succeeded"
    assert snapshot.incremental is True
    assert snapshot.incremental_snapshot_family_id
    assert snapshot.creation_data.source_unique_id == source.unique_id
    assert snapshot.disk_size_bytes == 4 * MIB

    access = compute.snapshots.begin_grant_access(
        rg, f"{disk}-snap", GrantAccessData(access="Read", duration_in_seconds=900)
    ).result()
    assert access.access_sas and "sig=" in access.access_sas
    assert requests.head(access.access_sas, timeout=30).status_code == 200
    assert compute.snapshots.get(rg, f"{disk}-snap").disk_state == "ActiveSAS"

    compute.snapshots.begin_revoke_access(rg, f"{disk}-snap").result()
    assert requests.head(access.access_sas, timeout=30).status_code == 403
    assert compute.snapshots.get(rg, f"{disk}-snap").disk_state == "Unattached"

    compute.snapshots.begin_delete(rg, f"{disk}-snap").result()
    with pytest.raises(ResourceNotFoundError) as missing:
        compute.snapshots.get(rg, f"{disk}-snap")
    assert missing.value.error is not None and missing.value.error.code == "ResourceNotFound"
    assert credential.scopes and credential.scopes[0] == ("https://management.azure.com/.default",)


def test_sdk_pages_lists_and_reads_errors(
    client: tuple[ComputeManagementClient, StaticCredential], proving_ground: ProvingGround, unique_name: str
) -> None:
    compute, _ = client
    proving_ground.control("PUT", f"/resourceGroups/{unique_name}", {})
    for index in range(5):
        proving_ground.control(
            "PUT",
            f"/resourceGroups/{unique_name}/disks/d{index}",
            {"size_bytes": MIB, "tags": {"i": str(index)}},
        )
    disks = list(compute.disks.list_by_resource_group(unique_name))  # three pages of two
    assert [d.name for d in disks] == [f"d{i}" for i in range(5)]
    assert [d.tags for d in disks] == [{"i": str(i)} for i in range(5)]
    proving_ground.control("POST", "/faults", {"operation": "Snapshots_GrantAccess", "action": "Failed"})
    snapshot = compute.snapshots.begin_create_or_update(
        unique_name,
        "s",
        Snapshot(
            location="westus",
            creation_data=CreationData(create_option="Copy", source_resource_id=disks[0].id),
        ),
    ).result()
    with pytest.raises(HttpResponseError) as failed:
        compute.snapshots.begin_grant_access(
            unique_name, snapshot.name, GrantAccessData(access="Read", duration_in_seconds=60)
        ).result()
    assert "InternalExecutionError" in str(failed.value)
