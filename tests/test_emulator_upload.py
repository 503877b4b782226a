"""Direct upload on the emulator: createOption Upload, ReadyToUpload -> ActiveUpload -> Unattached, write SAS.

Every ARM answer is checked against DiskRP.json (:class:`spec_oracle.ArmClient`); the write SAS is driven
with raw ``requests`` (exact headers, malformed requests) and with the official ``azure-storage-blob`` and
``azure-mgmt-compute`` SDKs as independent clients. The disk's content is read back through the control
surface (``/content``, ``/digest``) after revoke: only the first ``uploadSizeBytes - 512`` bytes.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import CreationData, Disk, DiskSku, GrantAccessData
from azure.storage.blob import BlobClient as SdkBlobClient
from spec_oracle import ArmClient, SpecOracle

from backup.azure.blob import STORAGE_API_VERSION, BlobAddress, BlobClient, ContainerAddress
from backup.azure.page_range import PageRange
from backup.azure.storage_auth import SharedKeyAuthorizer, StorageService
from backup.errors import ConflictError
from testbed.proving_ground import ProvingGround

API = "api-version=2026-03-02"
MIB = 1 << 20
FOOTER = 512
SMALLEST = 20 * MIB + FOOTER  # the smallest upload Compute takes


@pytest.fixture(scope="module")
def oracle() -> SpecOracle:
    return SpecOracle()


@pytest.fixture
def arm(proving_ground: ProvingGround, oracle: SpecOracle) -> Iterator[ArmClient]:
    client = ArmClient(
        proving_ground.arm_endpoint, proving_ground.arm_token, proving_ground.arm_ca_cert, oracle
    )
    yield client
    client.close()
    assert client.checked > 0
    proving_ground.control("DELETE", "/faults")
    proving_ground.control("PATCH", "/config", {"operation_polls": 2, "page_size": 2, "retry_after": 1})


@pytest.fixture
def rg(proving_ground: ProvingGround, unique_name: str) -> str:
    proving_ground.control("PUT", f"/resourceGroups/{unique_name}", {"location": "westus"})
    return unique_name


def disks(pg: ProvingGround, rg: str) -> str:
    return f"/subscriptions/{pg.subscription_id}/resourceGroups/{rg}/providers/Microsoft.Compute/disks"


def upload_body(size: int, **properties: Any) -> dict[str, Any]:
    return {
        "location": "westus",
        "sku": {"name": "Premium_LRS"},
        "properties": {"creationData": {"createOption": "Upload", "uploadSizeBytes": size}, **properties},
    }


def create(arm: ArmClient, pg: ProvingGround, rg: str, name: str, size: int = SMALLEST) -> dict[str, Any]:
    accepted = arm.put(f"{disks(pg, rg)}/{name}?{API}", upload_body(size))
    assert accepted.status_code == 202, accepted.text
    final = arm.wait(accepted)
    assert final.status_code == 200
    return final.json()


def grant(arm: ArmClient, pg: ProvingGround, rg: str, name: str, access: str = "Write", seconds: int = 600
          ) -> requests.Response:  # fmt: skip
    accepted = arm.post(
        f"{disks(pg, rg)}/{name}/beginGetAccess?{API}", {"access": access, "durationInSeconds": seconds}
    )
    return arm.wait(accepted) if accepted.status_code == 202 else accepted


def revoke(arm: ArmClient, pg: ProvingGround, rg: str, name: str) -> None:
    assert arm.wait(arm.post(f"{disks(pg, rg)}/{name}/endGetAccess?{API}")).status_code == 200


def state(arm: ArmClient, pg: ProvingGround, rg: str, name: str) -> str:
    return str(arm.get(f"{disks(pg, rg)}/{name}?{API}").json()["properties"]["diskState"])


def code(response: requests.Response) -> str:
    return str(response.json()["error"]["code"])


def put_page(sas: str, offset: int, data: bytes, **headers: str) -> requests.Response:
    return requests.put(
        sas + "&comp=page",
        data=data,
        headers={
            "x-ms-version": STORAGE_API_VERSION,
            "x-ms-page-write": "update",
            "x-ms-range": f"bytes={offset}-{offset + len(data) - 1}",
            **headers,
        },
        timeout=60,
    )


def storage_code(response: requests.Response) -> str | None:
    return response.headers.get("x-ms-error-code")


# -- creating a disk for upload ----------------------------------------------------------------------------


def test_an_upload_disk_is_ready_to_upload_and_its_size_leaves_out_the_footer(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    size = 33 * MIB + FOOTER
    body = create(arm, proving_ground, rg, "up", size)
    properties = body["properties"]
    assert properties["creationData"] == {"createOption": "Upload", "uploadSizeBytes": size}
    assert properties["diskState"] == "ReadyToUpload"
    assert properties["diskSizeBytes"] == 33 * MIB  # "Azure omits the footer when returning the disk size"
    assert properties["diskSizeGB"] == 1
    assert properties["provisioningState"] == "Succeeded"
    assert body["sku"]["name"] == "Premium_LRS"
    assert state(arm, proving_ground, rg, "up") == "ReadyToUpload"
    digest = proving_ground.control("GET", f"/resourceGroups/{rg}/disks/up/digest")
    assert (digest["size"], digest["populated_bytes"]) == (33 * MIB, 0)


@pytest.mark.parametrize(
    ("size", "status", "error", "says"),
    [
        (SMALLEST - MIB, 400, "BadRequest", "must be between 20972032 (20 MiB + 512 bytes"),
        (20 * MIB, 400, "BadRequest", "must be between"),
        (32767 * (1 << 30) + MIB + FOOTER, 400, "BadRequest", "and 35183298347520 (32 TiB + 512 bytes"),
        (
            21 * MIB + 2 * FOOTER,
            400,
            "BadRequest",
            "The upload size in bytes 22021120 - 512 bytes for the VHD footer (22020608 in this case) must "
            "be a multiple of MiB.",
        ),
        (SMALLEST + 1, 400, "BadRequest", "must be a multiple of MiB"),
    ],
)
def test_upload_sizes_are_held_to_computes_rule(
    arm: ArmClient, proving_ground: ProvingGround, rg: str, size: int, status: int, error: str, says: str
) -> None:
    refused = arm.put(f"{disks(proving_ground, rg)}/bad?{API}", upload_body(size))
    assert (refused.status_code, code(refused)) == (status, error)
    assert says in refused.json()["error"]["message"]
    assert "target" not in refused.json()["error"]  # Compute's BadRequest names no target
    missing = arm.get(f"{disks(proving_ground, rg)}/bad?{API}")
    assert missing.status_code == 404


def test_other_upload_bodies_are_checked(arm: ArmClient, proving_ground: ProvingGround, rg: str) -> None:
    url = f"{disks(proving_ground, rg)}/other?{API}"
    no_size = arm.put(url, {"location": "westus", "properties": {"creationData": {"createOption": "Upload"}}})
    assert (no_size.status_code, no_size.json()["error"]["target"]) == (
        400,
        "properties.creationData.uploadSizeBytes",
    )
    text_size = arm.put(url, upload_body("21496320"))  # type: ignore[arg-type]
    assert (text_size.status_code, code(text_size)) == (400, "InvalidParameter")
    wrong_gib = arm.put(url, upload_body(SMALLEST, diskSizeGB=2))
    assert (wrong_gib.status_code, wrong_gib.json()["error"]["target"]) == (400, "properties.diskSizeGB")
    right_gib = arm.put(url, upload_body(SMALLEST, diskSizeGB=1))
    assert arm.wait(right_gib).json()["properties"]["diskSizeBytes"] == 20 * MIB
    snapshot = arm.put(
        f"/subscriptions/{proving_ground.subscription_id}/resourceGroups/{rg}/providers/Microsoft.Compute"
        f"/snapshots/s?{API}",
        {
            "location": "westus",
            "properties": {"creationData": {"createOption": "Upload", "uploadSizeBytes": SMALLEST}},
        },
    )
    assert (snapshot.status_code, snapshot.json()["error"]["target"]) == (
        400,
        "properties.creationData.createOption",
    )
    changed = arm.put(url, upload_body(SMALLEST + MIB))
    assert (changed.status_code, code(changed)) == (409, "PropertyChangeNotAllowed")
    same_again = arm.put(url, {**upload_body(SMALLEST), "tags": {"restore": "r1"}})
    assert arm.wait(same_again).json()["tags"] == {"restore": "r1"}
    resize = arm.put(url, upload_body(SMALLEST, diskSizeGB=4))
    assert (resize.status_code, code(resize)) == (409, "OperationNotAllowed")


# -- the write SAS ---------------------------------------------------------------------------------------


def test_upload_through_the_write_sas_then_revoke_makes_the_disk(
    arm: ArmClient, proving_ground: ProvingGround, rg: str, unique_name: str
) -> None:
    create(arm, proving_ground, rg, "up")
    granted = grant(arm, proving_ground, rg, "up")
    assert granted.status_code == 200
    sas = granted.json()["accessSAS"]
    query = parse_qs(urlsplit(sas).query)
    # Azure's shape: a stored access policy (si) instead of sp/se in the token.
    assert set(query) == {"sv", "sr", "si", "sig"} and query["sr"] == ["b"]
    assert urlsplit(sas).path.endswith("/abcd")
    assert state(arm, proving_ground, rg, "up") == "ActiveUpload"

    head = requests.head(sas, timeout=30)
    assert (head.status_code, int(head.headers["Content-Length"])) == (200, SMALLEST)
    assert head.headers["x-ms-blob-type"] == "PageBlob"
    first = os.urandom(MIB)
    written = put_page(sas, 4 * MIB, first)
    assert written.status_code == 201 and written.headers["ETag"] != head.headers["ETag"]

    # Put Page From URL from a blob snapshot of the backup account, read through a Shared Key SAS (sr=bs).
    signer = SharedKeyAuthorizer(
        proving_ground.backup_account, proving_ground.backup_account_key, service=StorageService.BLOB
    )
    client = BlobClient()
    container = ContainerAddress.in_account(proving_ground.backup_blob_endpoint, unique_name, signer)
    client.create_container(container)
    backup = container.blob("backup.vhd")
    client.create_page_blob(backup, SMALLEST)
    second = os.urandom(2 * MIB)
    for offset in range(0, 2 * MIB, MIB):
        client.put_page(backup, PageRange.at(8 * MIB + offset, MIB), second[offset : offset + MIB])
    footer = os.urandom(FOOTER)
    client.put_page(backup, PageRange.at(20 * MIB, FOOTER), footer)
    snapshot = client.snapshot(backup)
    source = backup.at_snapshot(snapshot).with_sas(
        signer.blob_sas(unique_name, "backup.vhd", lifetime=timedelta(minutes=10), snapshot=snapshot)
    )
    disk_blob = BlobAddress.from_sas_url(sas)
    for chunk in (PageRange.at(8 * MIB, MIB), PageRange.at(9 * MIB, MIB), PageRange.at(20 * MIB, FOOTER)):
        client.put_page_from_url(disk_blob, chunk, source, chunk)
    clear = {"x-ms-page-write": "clear", "x-ms-range": f"bytes={4 * MIB}-{4 * MIB + 4095}"}
    cleared = requests.put(
        sas + "&comp=page", headers={"x-ms-version": STORAGE_API_VERSION, **clear}, timeout=30
    )
    assert cleared.status_code == 201
    ranges = client.get_page_ranges(disk_blob)
    assert ranges.page_ranges == (
        PageRange(4 * MIB + 4096, 5 * MIB - 1),
        PageRange.at(8 * MIB, 2 * MIB),
        PageRange.at(20 * MIB, FOOTER),
    )
    assert ranges.blob_size == SMALLEST
    assert client.read_range(disk_blob, PageRange.at(8 * MIB, 2 * MIB)) == second

    expected = bytearray(20 * MIB)
    expected[4 * MIB + 4096 : 5 * MIB] = first[4096:]
    expected[8 * MIB : 10 * MIB] = second
    revoke(arm, proving_ground, rg, "up")
    assert state(arm, proving_ground, rg, "up") == "Unattached"
    digest = proving_ground.control("GET", f"/resourceGroups/{rg}/disks/up/digest")
    assert digest["size"] == 20 * MIB  # the footer is not disk content
    assert digest["sha256"] == hashlib.sha256(expected).hexdigest()
    content = requests.get(
        f"{proving_ground.control_url}/resourceGroups/{rg}/disks/up/content",
        params={"offset": 8 * MIB, "length": 2 * MIB},
        verify=str(proving_ground.arm_ca_cert),
        timeout=60,
    )
    assert content.content == second
    after = put_page(sas, 0, bytes(512))
    assert (after.status_code, storage_code(after)) == (403, "AuthenticationFailed")
    assert requests.head(sas, timeout=30).status_code == 403
    # Now an ordinary disk: readable through a read grant, deletable.
    read_sas = grant(arm, proving_ground, rg, "up", access="Read").json()["accessSAS"]
    assert (
        requests.get(read_sas, headers={"x-ms-range": f"bytes={8 * MIB}-{10 * MIB - 1}"}, timeout=60).content
        == second
    )
    revoke(arm, proving_ground, rg, "up")
    assert arm.wait(arm.delete(f"{disks(proving_ground, rg)}/up?{API}")).status_code == 200
    client.delete_container(container)


def test_the_write_sas_writes_pages_and_nothing_else(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    create(arm, proving_ground, rg, "strict")
    sas = grant(arm, proving_ground, rg, "strict").json()["accessSAS"]
    base = sas.partition("?")[0]
    version = {"x-ms-version": STORAGE_API_VERSION}

    def send(method: str, comp: str, **headers: str) -> requests.Response:
        url = sas + (f"&comp={comp}" if comp else "")
        return requests.request(method, url, data=b"", headers={**version, **headers}, timeout=30)

    refused = {
        "Put Blob": send("PUT", "", **{"x-ms-blob-type": "BlockBlob"}),
        "resize": send("PUT", "properties", **{"x-ms-blob-content-length": "1024"}),
        "delete": send("DELETE", ""),
        "snapshot": send("PUT", "snapshot"),
        "lease": send("PUT", "lease", **{"x-ms-lease-action": "acquire"}),
    }
    for what, answer in refused.items():
        assert (answer.status_code, storage_code(answer)) == (403, "AuthorizationPermissionMismatch"), what
    too_far = put_page(sas, 20 * MIB, bytes(1024))
    assert (too_far.status_code, storage_code(too_far)) == (416, "InvalidPageRange")
    misaligned = put_page(sas, 100, bytes(512))
    assert (misaligned.status_code, storage_code(misaligned)) == (400, "InvalidHeaderValue")
    too_big = put_page(sas, 0, bytes(4 * MIB + 512))
    assert (too_big.status_code, storage_code(too_big)) == (413, "RequestBodyTooLarge")
    short = put_page(sas, 0, bytes(512), **{"x-ms-range": "bytes=0-1023"})
    assert (short.status_code, storage_code(short)) == (400, "InvalidHeaderValue")
    stale = put_page(sas, 0, bytes(512), **{"If-Match": '"0x8DE0000000001"'})
    assert (stale.status_code, storage_code(stale)) == (412, "ConditionNotMet")
    anonymous = requests.head(base, timeout=30)
    assert anonymous.status_code == 404
    tampered = put_page(sas.replace("sig=", "sig=A"), 0, bytes(512))
    assert (tampered.status_code, storage_code(tampered)) == (403, "AuthenticationFailed")
    signer = SharedKeyAuthorizer(
        proving_ground.backup_account, proving_ground.backup_account_key, service=StorageService.BLOB
    )
    destination = BlobAddress.in_account(proving_ground.backup_blob_endpoint, "nowhere", "blob", signer)
    with pytest.raises(ConflictError) as no_copy:  # a disk being uploaded is not a Copy Blob source here
        BlobClient().start_copy(destination, BlobAddress.from_sas_url(sas))
    assert no_copy.value.code == "CannotVerifyCopySource"
    assert put_page(sas, 0, bytes(512)).status_code == 201
    revoke(arm, proving_ground, rg, "strict")


def test_state_rules_of_an_upload_disk(arm: ArmClient, proving_ground: ProvingGround, rg: str) -> None:
    create(arm, proving_ground, rg, "rules")
    base = disks(proving_ground, rg)
    early_read = grant(arm, proving_ground, rg, "rules", access="Read")
    assert (early_read.status_code, code(early_read), early_read.json()["error"]["target"]) == (
        409,
        "OperationNotAllowed",
        "access",
    )
    copy = {"createOption": "Copy", "sourceResourceId": f"{base}/rules"}
    snapshot = arm.put(
        base.replace("/disks", "/snapshots") + f"/s?{API}",
        {"location": "westus", "properties": {"creationData": copy}},
    )
    assert (snapshot.status_code, code(snapshot)) == (409, "OperationNotAllowed")
    revoke(arm, proving_ground, rg, "rules")  # nothing granted: nothing to end
    assert state(arm, proving_ground, rg, "rules") == "ReadyToUpload"

    first = grant(arm, proving_ground, rg, "rules").json()["accessSAS"]
    assert put_page(first, 0, b"\x01" * 512).status_code == 201
    read_now = grant(arm, proving_ground, rg, "rules", access="Read")
    assert (read_now.status_code, code(read_now)) == (409, "OperationNotAllowed")
    delete = arm.delete(f"{base}/rules?{API}")
    assert (delete.status_code, code(delete)) == (409, "OperationNotAllowed")
    control = proving_ground.control(
        "POST", f"/resourceGroups/{rg}/disks/rules/write", {"offset": 0, "length": 512, "seed": 1}
    )
    assert control["error"]["code"] == "OperationNotAllowed"

    second = grant(arm, proving_ground, rg, "rules").json()["accessSAS"]  # a new grant replaces the SAS ...
    assert second != first
    assert put_page(first, 512, b"\x02" * 512).status_code == 403
    assert put_page(second, 512, b"\x03" * 512).status_code == 201
    revoke(arm, proving_ground, rg, "rules")  # ... and keeps what was written
    start = requests.get(
        f"{proving_ground.control_url}/resourceGroups/{rg}/disks/rules/content",
        params={"offset": 0, "length": 1024},
        verify=str(proving_ground.arm_ca_cert),
        timeout=30,
    ).content
    assert start == b"\x01" * 512 + b"\x03" * 512
    again = grant(arm, proving_ground, rg, "rules")  # Unattached now: no more uploading
    assert (again.status_code, code(again)) == (409, "OperationNotAllowed")
    ordinary = proving_ground.control("PUT", f"/resourceGroups/{rg}/disks/plain", {"size_bytes": MIB})
    assert "error" not in ordinary
    assert code(grant(arm, proving_ground, rg, "plain")) == "OperationNotAllowed"
    ready = create(arm, proving_ground, rg, "deletable")
    assert ready["properties"]["diskState"] == "ReadyToUpload"
    assert arm.wait(arm.delete(f"{base}/deletable?{API}")).status_code == 200


def test_an_expired_write_sas_stops_writing_but_the_upload_stays_active(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    create(arm, proving_ground, rg, "expiring")
    sas = grant(arm, proving_ground, rg, "expiring", seconds=1).json()["accessSAS"]
    assert put_page(sas, 0, b"\x07" * 512).status_code == 201
    time.sleep(1.5)
    late = put_page(sas, 512, b"\x07" * 512)
    assert (late.status_code, storage_code(late)) == (403, "AuthenticationFailed")
    assert state(arm, proving_ground, rg, "expiring") == "ActiveUpload"  # until revoke, as Azure bills it
    delete = arm.delete(f"{disks(proving_ground, rg)}/expiring?{API}")
    assert (delete.status_code, code(delete)) == (409, "OperationNotAllowed")
    fresh = grant(arm, proving_ground, rg, "expiring").json()["accessSAS"]
    assert put_page(fresh, 512, b"\x08" * 512).status_code == 201
    revoke(arm, proving_ground, rg, "expiring")
    digest = proving_ground.control("GET", f"/resourceGroups/{rg}/disks/expiring/digest")
    assert digest["populated_bytes"] == 1024


def test_a_failed_write_grant_leaves_no_sas(arm: ArmClient, proving_ground: ProvingGround, rg: str) -> None:
    create(arm, proving_ground, rg, "failing")
    proving_ground.control(
        "POST", "/faults", {"operation": "Disks_GrantAccess", "action": "Failed", "resource_name": "failing"}
    )
    accepted = arm.post(
        f"{disks(proving_ground, rg)}/failing/beginGetAccess?{API}",
        {"access": "Write", "durationInSeconds": 60},
    )
    failed = arm.wait(accepted, via="Azure-AsyncOperation")
    assert failed.json()["status"] == "Failed"
    assert state(arm, proving_ground, rg, "failing") == "ReadyToUpload"
    holding = proving_ground.control("GET", "/grants")["resources"]
    assert not any(r["id"].endswith("/failing") for r in holding)


# -- the official SDKs as independent clients -------------------------------------------------------------


class StaticCredential:
    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


def test_the_sdks_upload_a_disk(proving_ground: ProvingGround, rg: str) -> None:
    proving_ground.control("PATCH", "/config", {"retry_after": 0})
    compute = ComputeManagementClient(
        StaticCredential(proving_ground.arm_token),  # type: ignore[arg-type]
        proving_ground.subscription_id,
        base_url=proving_ground.arm_endpoint,
        polling_interval=0,
        connection_verify=str(proving_ground.arm_ca_cert),
    )
    try:
        disk = compute.disks.begin_create_or_update(
            rg,
            "sdk-upload",
            Disk(
                location="westus",
                sku=DiskSku(name="StandardSSD_LRS"),
                creation_data=CreationData(create_option="Upload", upload_size_bytes=SMALLEST),
            ),
        ).result()
        assert (disk.disk_state, disk.disk_size_bytes) == ("ReadyToUpload", 20 * MIB)
        with pytest.raises(HttpResponseError) as refused:
            compute.disks.begin_grant_access(
                rg, "sdk-upload", GrantAccessData(access="Read", duration_in_seconds=60)
            ).result()
        assert refused.value.error is not None and refused.value.error.code == "OperationNotAllowed"
        access = compute.disks.begin_grant_access(
            rg, "sdk-upload", GrantAccessData(access="Write", duration_in_seconds=600)
        ).result()
        page_blob = SdkBlobClient.from_blob_url(access.access_sas)
        assert page_blob.get_blob_properties().size == SMALLEST
        data = os.urandom(3 * MIB)
        page_blob.upload_page(data, offset=MIB, length=3 * MIB)
        assert page_blob.download_blob(offset=MIB, length=3 * MIB).readall() == data
        assert compute.disks.get(rg, "sdk-upload").disk_state == "ActiveUpload"
        compute.disks.begin_revoke_access(rg, "sdk-upload").result()
        final = compute.disks.get(rg, "sdk-upload")
        assert (final.disk_state, final.creation_data.upload_size_bytes) == ("Unattached", SMALLEST)
        digest = proving_ground.control("GET", f"/resourceGroups/{rg}/disks/sdk-upload/digest")
        assert digest["sha256"] == hashlib.sha256(bytes(MIB) + data + bytes(16 * MIB)).hexdigest()
        compute.disks.begin_delete(rg, "sdk-upload").result()
    finally:
        compute.close()
        proving_ground.control("PATCH", "/config", {"retry_after": 1})
