"""Restoring by direct upload with the product's compute client, against the compute emulator.

Create a disk for upload (never over an existing disk; a repeated create finds its own), grant write
access, write it with Put Page From URL from a blob snapshot of the backup account (Shared Key SAS,
``sr=bs``), revoke, compare the disk with the source, delete it (only a disk this restore made).
``azure-mgmt-compute`` reads what the client made, as an independent oracle. The write SAS appears in no
operation state, error or log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.mgmt.compute import ComputeManagementClient

from backup.azure.arm import ArmClient
from backup.azure.blob import BlobAddress, BlobClient, ContainerAddress
from backup.azure.compute import (
    MAX_UPLOAD_SIZE,
    MIN_UPLOAD_SIZE,
    TAG_CREATED_BY,
    TAG_RESTORE_ID,
    ComputeClient,
    UploadDiskStarted,
    upload_size_for,
)
from backup.azure.credentials import StaticTokenProvider
from backup.azure.lro import LroStatus
from backup.azure.page_range import PageRange
from backup.azure.storage_auth import SharedKeyAuthorizer, StorageService
from backup.azure.transport import Transport
from backup.errors import ConflictError, InvalidInputError, NotFoundError, PreconditionFailedError
from testbed.proving_ground import ProvingGround

MIB = 1 << 20


@dataclass
class Env:
    ground: ProvingGround
    compute: ComputeClient
    arm: ArmClient
    sent: list[tuple[str, str, dict[str, str]]]  # (method, url, headers) of every ARM request

    def group(self, name: str) -> str:
        made = self.ground.control("PUT", f"/resourceGroups/{name}", {"location": "westus"})
        assert made["name"] == name
        return name

    def disk_id(self, group: str, name: str) -> str:
        return self.ground.disk_id(name, group)

    def finish(self, status: LroStatus, limit: int = 20) -> LroStatus:
        for _ in range(limit):
            if status.done:
                assert status.succeeded, status
                return status
            status = self.compute.poll(status)
        raise AssertionError(f"still running: {status}")

    def digest(self, group: str, name: str) -> dict[str, Any]:
        return dict(self.ground.control("GET", f"/resourceGroups/{group}/disks/{name}/digest"))

    def puts(self) -> list[str]:
        return [url for method, url, _ in self.sent if method == "PUT"]


@pytest.fixture
def env(proving_ground: ProvingGround) -> Iterator[Env]:
    transport = Transport(verify=str(proving_ground.arm_ca_cert), sleep=lambda _: None, rand=lambda: 1.0)
    sent: list[tuple[str, str, dict[str, str]]] = []
    original = transport.request

    def recording(method: str, url: str, **kwargs: Any) -> requests.Response:
        sent.append((method, url, dict(kwargs.get("headers") or {})))
        return original(method, url, **kwargs)

    transport.request = recording  # type: ignore[method-assign]
    arm = ArmClient(
        proving_ground.arm_endpoint,
        StaticTokenProvider(proving_ground.arm_token),
        transport,
        default_retry_after=1,
    )
    yield Env(proving_ground, ComputeClient(arm), arm, sent)
    proving_ground.control("DELETE", "/faults")


def create(
    env: Env, disk_id: str, *, size: int = 24 * MIB, restore_id: str = "restore-1", **kw: Any
) -> UploadDiskStarted:
    started = env.compute.begin_create_upload_disk(
        disk_id,
        location="westus",
        upload_size_bytes=upload_size_for(size),
        sku=kw.pop("sku", "Premium_LRS"),
        restore_id=restore_id,
        **kw,
    )
    if started.operation is not None:
        env.finish(started.operation)
    return started


# -- creating ------------------------------------------------------------------------------------------


def test_create_a_disk_for_upload(env: Env, unique_name: str) -> None:
    group = env.group(unique_name)
    disk_id = env.disk_id(group, "restored")
    started = create(env, disk_id, tags={"env": "test", "RestoreID": "mine"}, zone="2")
    assert started.disk_id == disk_id and started.operation is not None
    disk = env.compute.get_disk(disk_id)
    assert (disk.state, disk.size_bytes, disk.create_option, disk.upload_size_bytes) == (
        "ReadyToUpload",
        24 * MIB,
        "Upload",
        24 * MIB + 512,
    )
    assert disk.tags == {"env": "test", TAG_CREATED_BY: "diskbackup", TAG_RESTORE_ID: "restore-1"}
    assert disk.sku == "Premium_LRS"
    assert env.compute.get_disk_state(disk_id) == "ReadyToUpload"
    put = [(url, headers) for method, url, headers in env.sent if method == "PUT"]
    assert len(put) == 1 and put[0][1]["If-None-Match"] == "*"  # sent; not relied on (see compute.py)
    # The official SDK reads the same disk.
    sdk = ComputeManagementClient(
        _Credential(env.ground.arm_token),  # type: ignore[arg-type]
        env.ground.subscription_id,
        base_url=env.ground.arm_endpoint,
        connection_verify=str(env.ground.arm_ca_cert),
    )
    try:
        seen = sdk.disks.get(group, "restored")
    finally:
        sdk.close()
    assert seen.creation_data.create_option == "Upload"
    assert seen.creation_data.upload_size_bytes == 24 * MIB + 512
    assert (seen.disk_state, seen.disk_size_bytes) == ("ReadyToUpload", 24 * MIB)


def test_an_existing_disk_is_never_overwritten(env: Env, unique_name: str) -> None:
    group = env.group(unique_name)
    body = {"size_bytes": 24 * MIB, "fill": {"seed": 3, "fraction": 0.5}, "tags": {"app": "db"}}
    made = env.ground.control("PUT", f"/resourceGroups/{group}/disks/taken", body)
    before = env.digest(group, "taken")
    with pytest.raises(ConflictError) as refused:
        create(env, env.disk_id(group, "taken"))
    assert (refused.value.status, refused.value.code) == (409, "DiskAlreadyExists")
    assert "never writes over a disk" in str(refused.value)
    assert env.puts() == []
    assert env.digest(group, "taken") == before
    assert env.compute.get_disk(env.disk_id(group, "taken")).tags == made["tags"] == {"app": "db"}


def test_a_repeated_create_finds_its_own_disk_and_no_other(env: Env, unique_name: str) -> None:
    group = env.group(unique_name)
    disk_id = env.disk_id(group, "again")
    first = create(env, disk_id)
    assert first.operation is not None
    again = create(env, disk_id)
    assert (again.operation, again.state, again.provisioning_state) == (None, "ReadyToUpload", "Succeeded")
    assert len(env.puts()) == 1
    assert UploadDiskStarted.from_dict(json.loads(json.dumps(again.to_dict()))) == again
    assert UploadDiskStarted.from_dict(json.loads(json.dumps(first.to_dict()))) == first
    with pytest.raises(ConflictError, match="DiskAlreadyExists"):
        create(env, disk_id, restore_id="restore-2")
    with pytest.raises(ConflictError, match="DiskAlreadyExists"):
        create(env, disk_id, size=32 * MIB)
    assert len(env.puts()) == 1


def _answer_412_to_puts(env: Env, *, forward: bool) -> None:
    """Make the next disk PUT answer 412, as Compute would if it honoured If-None-Match on a retry."""
    transport = env.arm.transport
    inner: Callable[..., requests.Response] = transport.request

    def precondition(method: str, url: str, **kwargs: Any) -> requests.Response:
        if method == "PUT":
            transport.request = inner  # type: ignore[method-assign]
            if forward:
                inner(method, url, **kwargs)  # the first attempt had landed
            raise PreconditionFailedError(
                status=412, code="PreconditionFailed", error_message="If-None-Match"
            )
        return inner(method, url, **kwargs)

    transport.request = precondition  # type: ignore[method-assign]


def test_a_412_on_the_create_is_answered_by_looking(env: Env, unique_name: str) -> None:
    group = env.group(unique_name)
    _answer_412_to_puts(env, forward=True)
    landed = env.compute.begin_create_upload_disk(
        env.disk_id(group, "landed"), location="westus", upload_size_bytes=upload_size_for(20 * MIB),
        sku="Standard_LRS", restore_id="r-412",
    )  # fmt: skip
    assert landed.operation is None and landed.state == "ReadyToUpload"
    _answer_412_to_puts(env, forward=False)
    with pytest.raises(PreconditionFailedError):  # nothing there to be ours: the 412 stands
        env.compute.begin_create_upload_disk(
            env.disk_id(group, "ghost"), location="westus", upload_size_bytes=upload_size_for(20 * MIB),
            sku="Standard_LRS", restore_id="r-412",
        )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"upload_size_bytes": 20 * MIB}, "uploadSizeBytes"),
        ({"upload_size_bytes": MIN_UPLOAD_SIZE - MIB}, "uploadSizeBytes"),
        ({"upload_size_bytes": MAX_UPLOAD_SIZE + MIB}, "uploadSizeBytes"),
        ({"upload_size_bytes": 21 * MIB + 1024}, "uploadSizeBytes"),
        ({"upload_size_bytes": True}, "uploadSizeBytes"),
        ({"sku": " "}, "sku"),
        ({"zone": "east"}, "zone"),
        ({"restore_id": "not an id!"}, "run id"),
        ({"location": ""}, "location"),
        ({"tags": {f"t{i}": "v" for i in range(49)}}, "tags"),  # 49 + our two is over ARM's 50
        ({"tags": {"a/b": "v"}}, "tags"),
    ],
)
def test_bad_input_fails_before_any_request(
    env: Env, unique_name: str, change: dict[str, Any], field: str
) -> None:
    arguments: dict[str, Any] = {
        "location": "westus",
        "upload_size_bytes": upload_size_for(20 * MIB),
        "sku": "Premium_LRS",
        "restore_id": "restore-1",
        **change,
    }
    with pytest.raises(InvalidInputError) as refused:
        env.compute.begin_create_upload_disk(env.ground.disk_id(unique_name), **arguments)
    assert refused.value.field == field
    assert env.sent == []


def test_upload_size_for_a_disk() -> None:
    assert upload_size_for(20 * MIB) == MIN_UPLOAD_SIZE == 20 * MIB + 512
    assert upload_size_for(32767 << 30) == MAX_UPLOAD_SIZE == 35183298347520
    for bad in (20 * MIB - MIB, 20 * MIB + 512, 32768 << 30):
        with pytest.raises(InvalidInputError, match="uploadSizeBytes"):
            upload_size_for(bad)


# -- writing, revoking, deleting ------------------------------------------------------------------------


def test_restore_by_direct_upload_end_to_end(
    env: Env, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    group = env.group(unique_name)
    disk_id = env.disk_id(group, "restored")
    size = 20 * MIB
    # The restore point: a blob snapshot of a backup page blob (a fixed VHD: disk bytes + footer).
    signer = SharedKeyAuthorizer(
        env.ground.backup_account, env.ground.backup_account_key, service=StorageService.BLOB
    )
    blobs = BlobClient()
    container = ContainerAddress.in_account(env.ground.backup_blob_endpoint, unique_name, signer)
    blobs.create_container(container)
    backup = container.blob("disk.vhd")
    blobs.create_page_blob(backup, size + 512)
    disk_bytes = bytearray(size)
    for offset in (0, 5 * MIB, 19 * MIB):
        data = os.urandom(MIB)
        blobs.put_page(backup, PageRange.at(offset, MIB), data)
        disk_bytes[offset : offset + MIB] = data
    blobs.put_page(backup, PageRange.at(size, 512), os.urandom(512))
    snapshot = blobs.snapshot(backup)
    blobs.put_page(backup, PageRange.at(0, MIB), os.urandom(MIB))  # the night after: not in the point
    source = backup.at_snapshot(snapshot).with_sas(
        signer.blob_sas(unique_name, "disk.vhd", lifetime=timedelta(minutes=15), snapshot=snapshot)
    )

    create(env, disk_id, size=size)
    grant = env.finish(env.compute.begin_grant_access(disk_id, 3600, access="Write"))
    write_sas = env.compute.read_access_sas(grant)
    assert env.compute.get_disk_state(disk_id) == "ActiveUpload"
    target = BlobAddress.from_sas_url(write_sas)
    for chunk in blobs.get_page_ranges(source).page_ranges:
        blobs.put_page_from_url(target, chunk, source, chunk)  # each at most 1 MiB here
    revoke = env.finish(env.compute.begin_revoke_access(disk_id))
    assert env.compute.get_disk_state(disk_id) == "Unattached"
    digest = env.digest(group, "restored")
    assert (digest["size"], digest["sha256"]) == (size, hashlib.sha256(disk_bytes).hexdigest())

    signature = write_sas.split("sig=", 1)[1].split("&", 1)[0]
    for state in (grant.to_dict(), revoke.to_dict()):
        assert signature not in json.dumps(state)
    assert signature not in "\n".join(r.getMessage() for r in caplog.records)

    deleting = env.compute.begin_delete_disk(disk_id, restore_id="restore-1")
    assert deleting is not None
    env.finish(deleting)
    with pytest.raises(NotFoundError):
        env.compute.get_disk(disk_id)
    assert env.compute.begin_delete_disk(disk_id, restore_id="restore-1") is None  # gone already
    blobs.delete_container(container)


def test_access_levels(env: Env, unique_name: str) -> None:
    group = env.group(unique_name)
    upload = env.disk_id(group, "upload")
    create(env, upload)
    with pytest.raises(ConflictError) as read_refused:  # nothing to read while uploading
        env.compute.begin_grant_access(upload, 60)
    assert read_refused.value.code == "OperationNotAllowed"
    env.ground.control("PUT", f"/resourceGroups/{group}/disks/plain", {"size_bytes": MIB})
    with pytest.raises(ConflictError) as write_refused:  # no writing to an ordinary disk
        env.compute.begin_grant_access(env.disk_id(group, "plain"), 60, access="Write")
    assert write_refused.value.code == "OperationNotAllowed"
    snapshot_id = env.disk_id(group, "x").replace("/disks/", "/snapshots/")
    with pytest.raises(InvalidInputError, match="only on a disk"):
        env.compute.begin_grant_access(snapshot_id, 60, access="Write")
    with pytest.raises(InvalidInputError, match="Read or Write"):
        env.compute.begin_grant_access(upload, 60, access="Delete")  # type: ignore[arg-type]
    first = env.compute.read_access_sas(
        env.finish(env.compute.begin_grant_access(upload, 60, access="Write"))
    )
    second = env.compute.read_access_sas(
        env.finish(env.compute.begin_grant_access(upload, 60, access="Write"))
    )
    assert first != second  # a repeated grant replaces the SAS: a resumed restore asks for a new one
    with pytest.raises(ConflictError) as busy:  # Azure refuses to delete a disk being uploaded
        deleting = env.compute.begin_delete_disk(upload, restore_id="restore-1")
        assert deleting is not None
        env.finish(deleting)
    assert busy.value.code == "OperationNotAllowed"
    env.finish(env.compute.begin_revoke_access(upload))
    deleting = env.compute.begin_delete_disk(upload, restore_id="restore-1")
    assert deleting is not None
    env.finish(deleting)


def test_only_a_disk_the_restore_made_is_deleted(env: Env, unique_name: str) -> None:
    group = env.group(unique_name)
    env.ground.control("PUT", f"/resourceGroups/{group}/disks/customer", {"size_bytes": MIB})
    env.ground.control(
        "PUT",
        f"/resourceGroups/{group}/disks/other-restore",
        {"size_bytes": MIB, "tags": {TAG_CREATED_BY: "diskbackup", TAG_RESTORE_ID: "restore-9"}},
    )
    for name in ("customer", "other-restore"):
        with pytest.raises(ConflictError) as refused:
            env.compute.begin_delete_disk(env.disk_id(group, name), restore_id="restore-1")
        assert refused.value.code == "DiskNotOwned"
        assert env.compute.get_disk(env.disk_id(group, name))  # still there
    assert env.compute.begin_delete_disk(env.disk_id(group, "never-made"), restore_id="restore-1") is None
    assert [m for m, _, _ in env.sent if m == "DELETE"] == []


class _Credential:
    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)
