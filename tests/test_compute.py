"""Every compute operation against the compute emulator (HTTPS ARM on loopback): success and failure.

The proving ground is shared by the session; each test makes its own disks (unique names, often a
resource group of its own) and clears any fault it injected. Transport's ``sleep`` is the seam that
keeps retries instant: the test records the delays asked for instead of waiting them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from backup.azure.arm import ArmClient
from backup.azure.compute import (
    API_VERSION,
    ComputeClient,
    snapshot_name,
    source_disk_tag,
)
from backup.azure.credentials import StaticTokenProvider
from backup.azure.lro import LroState, LroStatus, PollKind, ResultSource
from backup.azure.resource_id import parse_snapshot_id
from backup.azure.retry import RetryPolicy
from backup.azure.transport import Transport
from backup.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    OperationFailedError,
    ServerError,
    ThrottledError,
    TransportError,
)
from testbed.proving_ground import ProvingGround

MIB = 1 << 20


@dataclass
class Env:
    """What a test works with: the ground, a compute client, its ARM client and the recorded sleeps."""

    ground: ProvingGround
    compute: ComputeClient
    arm: ArmClient
    sleeps: list[float]

    @property
    def group(self) -> str:
        return self.ground.resource_group

    def disk(self, name: str, *, size: int = 4 * MIB, group: str | None = None, **extra: Any) -> str:
        """Make a disk with sparse content through the control surface; its ID."""
        group = group or self.group
        body = {"size_bytes": size, "fill": {"seed": len(name), "fraction": 0.2}, **extra}
        made = self.ground.control("PUT", f"/resourceGroups/{group}/disks/{name}", body)
        assert "error" not in made, made
        return self.ground.disk_id(name, group)

    def group_of_its_own(self, name: str) -> str:
        made = self.ground.control("PUT", f"/resourceGroups/{name}", {"location": "westus"})
        assert made["name"] == name
        return name

    def fault(self, **fault: Any) -> None:
        answer = self.ground.control("POST", "/faults", fault)
        assert answer.get("added") == 1, answer

    def pending_faults(self) -> list[dict[str, Any]]:
        return list(self.ground.control("GET", "/faults")["faults"])

    def finish(self, status: LroStatus, limit: int = 20) -> LroStatus:
        """Poll until the operation ends (the emulator ends one after a few polls)."""
        for _ in range(limit):
            if status.done:
                return status
            status = self.compute.poll(status)
        raise AssertionError(f"operation still running after {limit} polls: {status}")

    def snapshot(self, disk: str, run_id: str, *, incremental: bool = True) -> str:
        started = self.compute.begin_create_snapshot(
            disk, location="westus", run_id=run_id, incremental=incremental
        )
        assert self.finish(started.operation).succeeded
        return started.snapshot_id

    def granted(self, resource_id: str, seconds: int = 600) -> LroStatus:
        status = self.finish(self.compute.begin_grant_access(resource_id, seconds))
        assert status.succeeded, status
        return status

    def head(self, url: str) -> int:
        """HEAD a (SAS) URL through the product's transport; its status code."""
        return self.arm.transport.request("HEAD", url, ok=range(100, 600)).status_code


@pytest.fixture
def env(proving_ground: ProvingGround) -> Iterator[Env]:
    sleeps: list[float] = []
    transport = Transport(verify=str(proving_ground.arm_ca_cert), sleep=sleeps.append, rand=lambda: 1.0)
    arm = ArmClient(
        proving_ground.arm_endpoint,
        StaticTokenProvider(proving_ground.arm_token),
        transport,
        default_retry_after=1,
    )
    yield Env(proving_ground, ComputeClient(arm), arm, sleeps)
    proving_ground.control("DELETE", "/faults")


# -- disks ---------------------------------------------------------------------------------------------


def test_get_disk(env: Env, unique_name: str) -> None:
    disk_id = env.disk(unique_name, size=8 * MIB, tags={"backup": "nightly"})
    disk = env.compute.get_disk(disk_id)
    assert disk.id == disk_id
    assert disk.name == unique_name
    assert disk.location == "westus"
    assert disk.size_bytes == 8 * MIB
    assert disk.tags == {"backup": "nightly"}
    assert disk.sku == "Standard_LRS"
    assert disk.state == "Unattached"
    assert disk.provisioning_state == "Succeeded"
    assert disk.unique_id


def test_unknown_disk_is_404_with_arm_details(env: Env, unique_name: str) -> None:
    with pytest.raises(NotFoundError) as caught:
        env.compute.get_disk(env.ground.disk_id(unique_name))
    error = caught.value
    assert error.status == 404
    assert error.code == "ResourceNotFound"
    assert error.error_message is not None and unique_name in error.error_message
    assert error.request_id
    assert error.method == "GET" and error.url is not None and "?" not in error.url
    assert env.sleeps == []  # a 404 is not retried


def test_unknown_resource_group_is_404(env: Env, unique_name: str) -> None:
    with pytest.raises(NotFoundError) as caught:
        env.compute.list_disks(env.ground.subscription_id, unique_name)
    assert caught.value.code == "ResourceGroupNotFound"


def test_a_wrong_token_is_refused(env: Env, unique_name: str) -> None:
    arm = ArmClient(env.ground.arm_endpoint, StaticTokenProvider("not-the-token"), env.arm.transport)
    with pytest.raises(AuthenticationError) as caught:
        ComputeClient(arm).get_disk(env.ground.disk_id(unique_name))
    assert caught.value.status == 401
    assert caught.value.code
    assert "not-the-token" not in str(caught.value)


def test_list_disks_follows_next_link(env: Env, unique_name: str) -> None:
    group = env.group_of_its_own(unique_name)
    names = [f"d{i}" for i in range(5)]
    for name in names:
        env.disk(name, group=group)
    scope = f"/subscriptions/{env.ground.subscription_id}/resourceGroups/{group}"
    scope += "/providers/Microsoft.Compute/disks"
    pages = list(env.arm.list_pages(scope, api_version=API_VERSION))
    assert len(pages) == 3  # the emulator's page size is 2
    listed = env.compute.list_disks(env.ground.subscription_id, group)
    assert sorted(d.name for d in listed) == names


def test_list_disks_of_the_subscription_spans_groups(env: Env, unique_name: str) -> None:
    first = env.disk(unique_name + "a")
    second = env.disk(unique_name + "b", group=env.group_of_its_own(unique_name))
    ids = {d.id.lower() for d in env.compute.list_disks(env.ground.subscription_id)}
    assert {first.lower(), second.lower()} <= ids


def test_list_disks_with_a_tag_filter(env: Env, unique_name: str) -> None:
    group = env.group_of_its_own(unique_name)
    env.disk("nightly1", group=group, tags={"Backup": "nightly", "env": "prod"})
    env.disk("nightly2", group=group, tags={"backup": "nightly"})
    env.disk("hourly", group=group, tags={"backup": "hourly"})
    env.disk("untagged", group=group)
    sub = env.ground.subscription_id
    assert sorted(d.name for d in env.compute.list_disks(sub, group, tags={"backup": "nightly"})) == [
        "nightly1",
        "nightly2",
    ]
    assert [
        d.name for d in env.compute.list_disks(sub, group, tags={"backup": "nightly", "env": "prod"})
    ] == ["nightly1"]
    assert len(env.compute.list_disks(sub, group, tags={"backup": None})) == 3


# -- snapshots -----------------------------------------------------------------------------------------


def test_incremental_snapshot(env: Env, unique_name: str) -> None:
    disk_id = env.disk(unique_name)
    started = env.compute.begin_create_snapshot(disk_id, location="westus", run_id="run-1")
    assert started.snapshot_id.endswith("/snapshots/" + snapshot_name("run-1", disk_id))
    assert not started.operation.done
    assert env.finish(started.operation).succeeded
    snap = env.compute.get_snapshot(started.snapshot_id)
    disk = env.compute.get_disk(disk_id)
    assert snap.incremental is True
    assert snap.family_id
    assert snap.source_disk_id is not None and snap.source_disk_id.lower() == disk_id.lower()
    assert snap.size_bytes == disk.size_bytes
    assert snap.provisioning_state == "Succeeded" and snap.ready
    assert snap.time_created
    assert snap.tags == {
        "createdBy": "diskbackup",
        "runId": "run-1",
        "sourceDiskId": source_disk_tag(disk_id),
    }
    # Two incremental snapshots of one disk share a family.
    second = env.compute.get_snapshot(env.snapshot(disk_id, "run-2"))
    assert second.family_id == snap.family_id


def test_full_snapshot(env: Env, unique_name: str) -> None:
    snap = env.compute.get_snapshot(env.snapshot(env.disk(unique_name), "run-1", incremental=False))
    assert snap.incremental is False


def test_snapshot_in_another_resource_group(env: Env, unique_name: str) -> None:
    group = env.group_of_its_own(unique_name)
    disk_id = env.disk(unique_name)
    started = env.compute.begin_create_snapshot(disk_id, location="westus", run_id="r", resource_group=group)
    assert f"/resourceGroups/{group}/" in started.snapshot_id
    assert env.finish(started.operation).succeeded
    assert [s.name for s in env.compute.list_snapshots(env.ground.subscription_id, group)] == [
        snapshot_name("r", disk_id)
    ]


def test_list_snapshots_by_source_disk_tag(env: Env, unique_name: str) -> None:
    group = env.group_of_its_own(unique_name)
    mine, other = env.disk("mine", group=group), env.disk("other", group=group)
    env.snapshot(mine, "r1")
    env.snapshot(mine, "r2")
    env.snapshot(other, "r1")
    found = env.compute.list_snapshots(
        env.ground.subscription_id, group, tags={"sourceDiskId": source_disk_tag(mine.upper().lower())}
    )
    assert sorted(s.tags["runId"] for s in found) == ["r1", "r2"]


def test_update_snapshot_tags_replaces_them_and_nothing_else_is_patched(env: Env, unique_name: str) -> None:
    snap_id = env.snapshot(env.disk(unique_name), "r")
    before = env.compute.get_snapshot(snap_id)
    wanted = {**before.tags, "diskbackupBase": "true"}
    operation = env.compute.begin_update_snapshot_tags(snap_id, wanted)
    assert env.finish(operation).succeeded
    after = env.compute.get_snapshot(snap_id)
    assert after.tags == wanted
    assert (after.family_id, after.size_bytes, after.incremental) == (
        before.family_id,
        before.size_bytes,
        before.incremental,
    )
    assert env.finish(env.compute.begin_update_snapshot_tags(snap_id, {"only": "this"})).succeeded
    assert env.compute.get_snapshot(snap_id).tags == {"only": "this"}  # a PATCH's tags replace them whole
    # The emulator patches tags only: anything else is refused, not half-applied.
    with pytest.raises(BadRequestError) as refused:
        env.arm.patch(
            parse_snapshot_id(snap_id).path, {"properties": {"diskSizeGB": 2}}, api_version=API_VERSION
        )
    assert refused.value.code == "InvalidParameter" and "tags only" in str(refused.value)
    with pytest.raises(NotFoundError):
        env.compute.begin_update_snapshot_tags(snap_id.replace("/snapshots/", "/snapshots/no-"), {})
    with pytest.raises(InvalidInputError):
        env.compute.begin_update_snapshot_tags(snap_id, {"bad/name": "x"})


def test_delete_snapshot(env: Env, unique_name: str) -> None:
    snap_id = env.snapshot(env.disk(unique_name), "r")
    assert env.finish(env.compute.begin_delete_snapshot(snap_id)).succeeded
    with pytest.raises(NotFoundError):
        env.compute.get_snapshot(snap_id)


# -- access ------------------------------------------------------------------------------------------


def test_grant_sas_from_the_async_status_then_revoke(env: Env, unique_name: str) -> None:
    snap_id = env.snapshot(env.disk(unique_name), "r")
    grant = env.granted(snap_id)
    assert grant.poll_kind is PollKind.ASYNC_OPERATION
    assert grant.result_source is ResultSource.ASYNC_OUTPUT
    sas = env.compute.read_access_sas(grant)
    assert "sig=" in sas
    assert "sig=" not in json.dumps(grant.to_dict())
    assert env.head(sas) == 200  # a working SAS
    assert env.compute.get_snapshot(snap_id).disk_state == "ActiveSAS"

    revoke = env.finish(env.compute.begin_revoke_access(snap_id))
    assert revoke.succeeded
    assert env.arm.fetch_result(revoke) is None  # revoke has no result
    assert env.head(sas) == 403  # the SAS stopped working


def test_grant_sas_from_the_location_final_result(env: Env, unique_name: str) -> None:
    snap_id = env.snapshot(env.disk(unique_name), "r")
    started = env.compute.begin_grant_access(snap_id, 600)
    assert started.location_url is not None
    # Follow the Location URL instead, as a client must when ARM sends only Location.
    by_location = replace(started, poll_kind=PollKind.LOCATION, poll_url=started.location_url)
    done = env.finish(by_location)
    assert done.succeeded
    assert done.result_source is ResultSource.RESOURCE and done.result_url == started.location_url
    sas = env.compute.read_access_sas(done)
    # The same operation's status body carries the same SAS.
    by_status = env.finish(started)
    assert env.compute.read_access_sas(by_status) == sas
    assert env.head(sas) == 200
    env.finish(env.compute.begin_revoke_access(snap_id))


def test_a_disk_can_be_granted_too(env: Env, unique_name: str) -> None:
    disk_id = env.disk(unique_name)
    sas = env.compute.read_access_sas(env.granted(disk_id))
    assert env.head(sas) == 200
    env.finish(env.compute.begin_revoke_access(disk_id))


def test_a_sixth_sas_in_one_snapshot_family_is_a_409(env: Env, unique_name: str) -> None:
    disk_id = env.disk(unique_name)
    snaps = [env.snapshot(disk_id, f"r{i}") for i in range(6)]
    try:
        for snap in snaps[:5]:
            env.granted(snap)
        with pytest.raises(ConflictError) as caught:
            env.compute.begin_grant_access(snaps[5], 600)
        assert caught.value.status == 409
        assert caught.value.code == "OperationNotAllowed"
        assert caught.value.request_id
        assert env.sleeps == []  # a 409 is not retried
    finally:
        for snap in snaps[:5]:
            env.finish(env.compute.begin_revoke_access(snap))
    env.granted(snaps[5])  # room again
    env.finish(env.compute.begin_revoke_access(snaps[5]))


def test_read_access_sas_refuses_an_operation_that_is_not_a_grant(env: Env, unique_name: str) -> None:
    started = env.compute.begin_create_snapshot(env.disk(unique_name), location="westus", run_id="r")
    with pytest.raises(InvalidInputError, match="not a grant-access"):
        env.compute.read_access_sas(env.finish(started.operation))


# -- restore: disks from a snapshot and from a blob -------------------------------------------------


def _digest(env: Env, kind: str, name: str, group: str | None = None) -> str:
    return str(
        env.ground.control("GET", f"/resourceGroups/{group or env.group}/{kind}/{name}/digest")["sha256"]
    )


def test_create_disk_from_snapshot(env: Env, unique_name: str) -> None:
    source = env.disk(unique_name)
    snap_id = env.snapshot(source, "r")
    target = env.ground.disk_id(unique_name + "-restored")
    status = env.compute.begin_create_disk_from_snapshot(target, location="westus", snapshot_id=snap_id)
    assert env.finish(status).succeeded
    restored = env.compute.get_disk(target)
    assert restored.size_bytes == env.compute.get_disk(source).size_bytes
    assert _digest(env, "disks", unique_name + "-restored") == _digest(env, "disks", unique_name)


def test_create_disk_from_blob(env: Env, unique_name: str) -> None:
    from azure.storage.blob import BlobServiceClient  # the official SDK, as an independent client

    ground = env.ground
    source = env.disk(unique_name)
    snap_id = env.snapshot(source, "r")
    sas = env.compute.read_access_sas(env.granted(snap_id))
    blobs = BlobServiceClient(ground.backup_blob_endpoint, credential=ground.backup_account_key)
    container = blobs.get_container_client(unique_name)
    container.create_container()
    blob = container.get_blob_client("disk.vhd")
    blob.start_copy_from_url(sas)
    for _ in range(20):  # the front paces copies from a disk SAS: pending for a few polls
        if blob.get_blob_properties().copy.status == "success":
            break
    else:
        raise AssertionError("copy did not finish")
    env.finish(env.compute.begin_revoke_access(snap_id))

    account_id = (
        f"/subscriptions/{ground.subscription_id}/resourceGroups/{env.group}"
        f"/providers/Microsoft.Storage/storageAccounts/{ground.backup_account}"
    )
    target = ground.disk_id(unique_name + "-imported")
    status = env.compute.begin_create_disk_from_blob(
        target,
        location="westus",
        source_uri=blob.url,
        storage_account_id=account_id,
        tags={"restoredFrom": "r"},
    )
    assert env.finish(status).succeeded
    imported = env.compute.get_disk(target)
    assert imported.tags == {"restoredFrom": "r"}
    assert _digest(env, "disks", unique_name + "-imported") == _digest(env, "disks", unique_name)


def test_create_disk_from_a_missing_blob_is_a_400_with_arm_details(env: Env, unique_name: str) -> None:
    ground = env.ground
    account_id = (
        f"/subscriptions/{ground.subscription_id}/resourceGroups/{env.group}"
        f"/providers/Microsoft.Storage/storageAccounts/{ground.backup_account}"
    )
    with pytest.raises(BadRequestError) as caught:
        env.compute.begin_create_disk_from_blob(
            ground.disk_id(unique_name),
            location="westus",
            source_uri=f"{ground.backup_blob_endpoint}/nocontainer/missing.vhd",
            storage_account_id=account_id,
        )
    assert caught.value.code == "InvalidParameter"
    assert caught.value.error_message is not None and "missing.vhd" in caught.value.error_message
    with pytest.raises(NotFoundError):
        env.compute.get_disk(ground.disk_id(unique_name))


# -- throttling, retries, faults -----------------------------------------------------------------------


def test_429_then_success_honours_retry_after(env: Env, unique_name: str) -> None:
    disk_id = env.disk(unique_name)
    env.fault(operation="Disks_Get", action="429", count=2, retry_after=3, resource_name=unique_name)
    assert env.compute.get_disk(disk_id).name == unique_name
    assert env.sleeps == [3.0, 3.0]
    assert env.pending_faults() == []


def test_429_on_a_poll_then_success(env: Env, unique_name: str) -> None:
    started = env.compute.begin_create_snapshot(env.disk(unique_name), location="westus", run_id="r")
    env.fault(operation="DiskOperations_Get", action="429", count=1, retry_after=2)
    assert env.finish(started.operation).succeeded
    assert env.sleeps == [2.0]


def test_429_longer_than_the_policy_waits_is_handed_to_the_caller(env: Env, unique_name: str) -> None:
    # The orchestrator waits on a durable timer instead of a thread sleeping.
    disk_id = env.disk(unique_name)
    env.fault(operation="Disks_Get", action="429", count=1, retry_after=300, resource_name=unique_name)
    with pytest.raises(ThrottledError) as caught:
        env.compute.get_disk(disk_id)
    assert caught.value.status == 429
    assert caught.value.code == "TooManyRequests"
    assert caught.value.retry_after == 300
    assert caught.value.retryable
    assert env.sleeps == []


def test_snapshot_put_retried_after_a_500_makes_one_snapshot(env: Env, unique_name: str) -> None:
    group = env.group_of_its_own(unique_name)
    disk_id = env.disk(unique_name, group=group)
    env.fault(operation="Snapshots_CreateOrUpdate", action="500", count=1)
    started = env.compute.begin_create_snapshot(disk_id, location="westus", run_id="r")
    assert len(env.sleeps) == 1  # one retry, after the backoff
    assert env.finish(started.operation).succeeded
    assert len(env.compute.list_snapshots(env.ground.subscription_id, group)) == 1


def test_a_post_not_marked_safe_is_not_retried_after_a_500(env: Env, unique_name: str) -> None:
    snap_id = env.snapshot(env.disk(unique_name), "r")
    env.fault(
        operation="Snapshots_GrantAccess",
        action="500",
        count=2,
        resource_name=snapshot_name("r", env.ground.disk_id(unique_name)),
    )
    path = f"{snap_id}/beginGetAccess"
    body = {"access": "Read", "durationInSeconds": 60}
    with pytest.raises(ServerError):
        env.arm.begin("POST", path, api_version=API_VERSION, body=body, idempotent=False)
    assert env.sleeps == []
    assert [f["remaining"] for f in env.pending_faults()] == [1]  # exactly one attempt was made
    # Grant access is safe to repeat (see ComputeClient.begin_grant_access): it is retried.
    grant = env.finish(env.compute.begin_grant_access(snap_id, 60))
    assert grant.succeeded and len(env.sleeps) == 1
    env.finish(env.compute.begin_revoke_access(snap_id))


def test_a_429_is_retried_even_for_a_post_not_marked_safe(env: Env, unique_name: str) -> None:
    # 429 means the request was refused before any work: always safe to repeat.
    snap_id = env.snapshot(env.disk(unique_name), "r")
    env.fault(operation="Snapshots_GrantAccess", action="429", count=1, retry_after=1)
    body = {"access": "Read", "durationInSeconds": 60}
    status = env.arm.begin(
        "POST", f"{snap_id}/beginGetAccess", api_version=API_VERSION, body=body, idempotent=False
    )
    assert env.sleeps == [1.0]
    assert env.finish(status).succeeded
    env.finish(env.compute.begin_revoke_access(snap_id))


def test_a_connection_reset_is_retried_only_where_safe(env: Env, unique_name: str) -> None:
    snap_id = env.snapshot(env.disk(unique_name), "r")
    env.granted(snap_id)
    env.fault(operation="Snapshots_RevokeAccess", action="reset", count=1)
    with pytest.raises(TransportError):
        env.arm.begin("POST", f"{snap_id}/endGetAccess", api_version=API_VERSION, idempotent=False)
    assert env.sleeps == []
    env.fault(operation="Snapshots_RevokeAccess", action="reset", count=1)
    assert env.finish(env.compute.begin_revoke_access(snap_id)).succeeded
    assert len(env.sleeps) == 1


def test_retries_are_bounded(env: Env, unique_name: str) -> None:
    disk_id = env.disk(unique_name)
    env.arm.transport.policy = RetryPolicy(max_attempts=3)
    env.fault(operation="Disks_Get", action="500", count=5, resource_name=unique_name)
    with pytest.raises(ServerError) as caught:
        env.compute.get_disk(disk_id)
    assert caught.value.status == 500 and caught.value.code == "InternalExecutionError"
    assert len(env.sleeps) == 2  # three attempts
    assert env.pending_faults()[0]["remaining"] == 2


# -- operations ending Failed or Canceled --------------------------------------------------------------


def test_snapshot_operation_ends_failed(env: Env, unique_name: str) -> None:
    disk_id = env.disk(unique_name)
    env.fault(
        operation="Snapshots_CreateOrUpdate",
        action="Failed",
        code="InternalDiskManagementError",
        message="the disk could not be read",
    )
    started = env.compute.begin_create_snapshot(disk_id, location="westus", run_id="r")
    done = env.finish(started.operation)
    assert done.state is LroState.FAILED
    assert done.error_code == "InternalDiskManagementError"
    assert done.error_message == "the disk could not be read"
    with pytest.raises(OperationFailedError) as caught:
        done.raise_for_failure()
    assert caught.value.code == "InternalDiskManagementError"


def test_grant_operation_ends_canceled(env: Env, unique_name: str) -> None:
    snap_id = env.snapshot(env.disk(unique_name), "r")
    env.fault(operation="Snapshots_GrantAccess", action="Canceled")
    done = env.finish(env.compute.begin_grant_access(snap_id, 60))
    assert done.state is LroState.CANCELED
    assert done.error_code
    with pytest.raises(OperationFailedError, match="Canceled"):
        env.compute.read_access_sas(done)


def test_canceled_seen_through_location_is_a_failure_with_the_arm_code(env: Env, unique_name: str) -> None:
    # A Location URL answers a canceled operation with 409 + CloudError: it can only say "failed".
    snap_id = env.snapshot(env.disk(unique_name), "r")
    env.fault(operation="Snapshots_GrantAccess", action="Canceled", code="OperationPreempted")
    started = env.compute.begin_grant_access(snap_id, 60)
    assert started.location_url is not None
    done = env.finish(replace(started, poll_kind=PollKind.LOCATION, poll_url=started.location_url))
    assert done.state is LroState.FAILED
    assert done.error_code == "OperationPreempted"


def test_failed_seen_through_location_is_a_server_error_after_retries(env: Env, unique_name: str) -> None:
    # The emulator answers a Failed operation's Location URL with 500, which a client cannot tell from a
    # passing server fault: retried, then raised as retryable ServerError for the orchestrator to bound.
    disk_id = env.disk(unique_name)
    env.fault(operation="Snapshots_CreateOrUpdate", action="Failed", code="InternalExecutionError")
    started = env.compute.begin_create_snapshot(disk_id, location="westus", run_id="r")
    assert started.operation.location_url is not None
    by_location = replace(
        started.operation, poll_kind=PollKind.LOCATION, poll_url=started.operation.location_url
    )
    with pytest.raises(ServerError) as caught:
        env.finish(by_location)
    assert caught.value.code == "InternalExecutionError"


# -- no secrets --------------------------------------------------------------------------------------------


def test_no_sas_key_or_token_in_logs_errors_or_operation_state(
    env: Env, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    ground = env.ground
    token = ground.arm_token
    errors: list[BaseException] = []
    states: list[str] = []
    with caplog.at_level(logging.DEBUG):
        disk_id = env.disk(unique_name)
        snap_id = env.snapshot(disk_id, "r")
        env.fault(operation="Snapshots_GrantAccess", action="429", count=1, retry_after=1)
        grant = env.granted(snap_id)
        states.append(json.dumps(grant.to_dict()))
        sas = env.compute.read_access_sas(grant)
        assert env.head(sas) == 200  # the SAS travels in a URL: through the transport's logging too
        signature = sas.split("sig=", 1)[1].split("&", 1)[0]
        assert signature
        # Errors from every layer, some handed the SAS or the token directly.
        for action in (
            lambda: env.compute.get_disk(sas),  # a SAS where an ID belongs
            lambda: env.compute.get_disk(ground.disk_id(unique_name + "-missing")),
            lambda: ComputeClient(
                ArmClient(ground.arm_endpoint, StaticTokenProvider(token + "x"), env.arm.transport)
            ).get_disk(disk_id),
            lambda: env.compute.begin_create_disk_from_blob(
                ground.disk_id(unique_name + "-x"),
                location="westus",
                source_uri=sas,
                storage_account_id=(
                    f"/subscriptions/{ground.subscription_id}/resourceGroups/{env.group}"
                    f"/providers/Microsoft.Storage/storageAccounts/{ground.backup_account}"
                ),
            ),
        ):
            try:
                action()
            except Exception as exc:
                errors.append(exc)
        env.finish(env.compute.begin_revoke_access(snap_id))
        assert env.head(sas) == 403
    assert len(errors) == 4
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + states
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(getattr(e, "body_excerpt", "")) for e in errors]
    assert caplog.records, "expected log lines to inspect"
    for text in texts:
        assert signature not in text, text
        assert token not in text, text
        assert ground.backup_account_key not in text, text
