"""Handing a blob snapshot to another service: a short-lived Shared Key SAS (``sr=bs``) or an Azure AD token.

The product's own SAS signer is checked against the official storage SDK (string-to-sign and signature)
and against the test bed's independent checker; then both ways of authorising a Put Page From URL
source run for real: a snapshot SAS through Azurite and the data plane's front, and
``x-ms-copy-source-authorization: Bearer`` against an Azurite started with ``--oauth`` over TLS, which
checks the token the front relays. No secret reaches an error or a log line.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from azure.storage.blob import generate_blob_sas
from test_storage_bearer import make_jwt

from backup.azure.arm import ArmClient
from backup.azure.blob import STORAGE_API_VERSION, BlobAddress, BlobClient, ContainerAddress
from backup.azure.compute import ComputeClient, upload_size_for
from backup.azure.credentials import StaticTokenProvider
from backup.azure.lro import LroStatus
from backup.azure.page_range import PageRange
from backup.azure.storage_auth import (
    MAX_SAS_LIFETIME,
    SAS_VERSION,
    BearerAuthorizer,
    SharedKeyAuthorizer,
    StorageService,
    blob_service_sas,
    blob_service_sas_string_to_sign,
    sign,
)
from backup.azure.transport import Transport
from backup.errors import AuthenticationError, InvalidInputError
from testbed.azurite import Azurite, new_account_key
from testbed.emulator import sas as testbed_sas
from testbed.emulator.tls import write_self_signed
from testbed.proving_ground import ProvingGround

ACCOUNT = "backupacct"
KEY = new_account_key()
NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
SNAPSHOT = "2026-03-01T01:02:03.1234567Z"
KIB = 1024


def fields(query: str) -> dict[str, str]:
    return testbed_sas.sas_fields(query)


# -- the signer, against the SDK and the test bed's checker -------------------------------------------


def test_a_snapshot_sas_signs_what_the_sdk_signs() -> None:
    hooked: list[str] = []
    theirs = fields(
        generate_blob_sas(
            ACCOUNT,
            "backups",
            "disk one.vhd",
            snapshot=SNAPSHOT,
            account_key=KEY,
            permission="r",
            start=NOW,
            expiry=NOW + timedelta(hours=1),
            protocol="https",
            sts_hook=hooked.append,
        )
    )
    # The SDK, like us, leaves the snapshot out of the token: the URL names it.
    assert theirs["sr"] == "bs" and "snapshot" not in theirs
    signed = {**theirs, "snapshot": SNAPSHOT}
    assert hooked == [blob_service_sas_string_to_sign(signed, ACCOUNT, "backups", "disk one.vhd")]
    ours = fields(
        blob_service_sas(
            ACCOUNT,
            KEY,
            container="backups",
            blob="disk one.vhd",
            permissions="r",
            start=NOW,
            expiry=NOW + timedelta(hours=1),
            snapshot=SNAPSHOT,
            https_only=True,
            version=theirs["sv"],
        )
    )
    assert ours["sig"] == theirs["sig"] == sign(KEY, hooked[0])
    assert "snapshot" not in ours  # it travels in the blob's URL (BlobAddress.at_snapshot)
    assert {k: ours[k] for k in ("sr", "sp", "st", "se", "spr")} == {
        "sr": "bs",
        "sp": "r",
        "st": "2026-03-02T12:00:00Z",
        "se": "2026-03-02T13:00:00Z",
        "spr": "https",
    }


def test_the_test_beds_checker_agrees_and_holds_the_sas_to_its_snapshot() -> None:
    query = blob_service_sas(
        ACCOUNT, KEY, container="cc1", blob="b", permissions="r", expiry=NOW + timedelta(minutes=30),
        snapshot=SNAPSHOT,
    )  # fmt: skip
    assert fields(query)["sv"] == SAS_VERSION == STORAGE_API_VERSION

    def check(request_query: str, *, permission: str = "r", now: datetime = NOW) -> str | None:
        problem = testbed_sas.check_blob_sas(
            fields(request_query),
            account=ACCOUNT,
            account_key=KEY,
            container="cc1",
            blob="b",
            permission=permission,
            now=now,
        )
        return None if problem is None else problem.code

    assert check(f"snapshot={SNAPSHOT}&{query}") is None
    assert check(query) == "AuthenticationFailed"  # the base blob
    assert check(f"snapshot=2026-03-01T01:02:04.0000000Z&{query}") == "AuthenticationFailed"  # another one
    assert check(f"snapshot={SNAPSHOT}&{query}", permission="w") == "AuthorizationPermissionMismatch"
    assert check(f"snapshot={SNAPSHOT}&{query}", now=NOW + timedelta(hours=1)) == "AuthenticationFailed"


def test_a_plain_blob_sas_is_sr_b() -> None:
    query = blob_service_sas(ACCOUNT, KEY, container="cc1", blob="b", permissions="rw", expiry=NOW)
    assert fields(query)["sr"] == "b" and fields(query)["sp"] == "rw" and "st" not in fields(query)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"permissions": "wr"}, "in that order"),
        ({"permissions": "rq"}, "in that order"),
        ({"permissions": ""}, "at least one"),
        ({"snapshot": "yesterday"}, "not a snapshot timestamp"),
        ({"start": NOW + timedelta(hours=2)}, "after start"),
        ({"blob": ""}, "names a container and a blob"),
        ({"container": "c1"}, "container"),
    ],
)
def test_signer_input_is_checked(kwargs: dict[str, object], says: str) -> None:
    arguments: dict[str, object] = {
        "container": "cc1",
        "blob": "b",
        "permissions": "r",
        "expiry": NOW + timedelta(hours=1),
        **kwargs,
    }
    with pytest.raises(InvalidInputError, match=says):
        blob_service_sas(ACCOUNT, KEY, **arguments)  # type: ignore[arg-type]


def test_the_authorizer_signs_short_lived_sas_without_showing_its_key() -> None:
    authorizer = SharedKeyAuthorizer(ACCOUNT, KEY, service=StorageService.BLOB, clock=lambda: NOW)
    query = fields(authorizer.blob_sas("cc1", "b", lifetime=timedelta(minutes=20), snapshot=SNAPSHOT))
    assert (query["st"], query["se"], query["sp"], query["sr"]) == (
        "2026-03-02T11:55:00Z",
        "2026-03-02T12:20:00Z",
        "r",
        "bs",
    )
    assert KEY not in repr(authorizer)
    for lifetime in (timedelta(0), MAX_SAS_LIFETIME + timedelta(seconds=1)):
        with pytest.raises(InvalidInputError, match="lifetime"):
            authorizer.blob_sas("cc1", "b", lifetime=lifetime)
    table = SharedKeyAuthorizer(ACCOUNT, KEY, service=StorageService.TABLE)
    with pytest.raises(InvalidInputError, match="blob authorizer"):
        table.blob_sas("cc1", "b", lifetime=timedelta(minutes=1))


def test_with_sas_wants_a_sas() -> None:
    blob = BlobAddress.in_account("https://a.blob.core.windows.net", "cc1", "b", lambda m, u, h: None)
    for bad in ("", "sv=1&sr=b", "?sv=1&sig=x"):
        with pytest.raises(InvalidInputError, match="SAS query"):
            blob.with_sas(bad)
    addressed = blob.at_snapshot(SNAPSHOT).with_sas("sv=x&sig=secret")
    assert addressed.authorize is None and addressed.snapshot == SNAPSHOT
    assert "secret" not in repr(addressed) and "secret" not in addressed.display_url
    assert addressed.source_url() == f"{blob.url}?snapshot={SNAPSHOT.replace(':', '%3A')}&sv=x&sig=secret"


# -- a snapshot SAS against Azurite, through the front ---------------------------------------------------


def _write_snapshot(client: BlobClient, blob: BlobAddress) -> tuple[str, bytes, bytes]:
    """A 64 KiB page blob with content, its snapshot, then the base changed: (snapshot, then, now)."""
    client.create_page_blob(blob, 64 * KIB)
    first = os.urandom(16 * KIB)
    client.put_page(blob, PageRange.at(8 * KIB, 16 * KIB), first)
    snapshot = client.snapshot(blob)
    client.put_page(blob, PageRange.at(8 * KIB, 16 * KIB), os.urandom(16 * KIB))
    whole_then = bytes(8 * KIB) + first + bytes(40 * KIB)
    return snapshot, whole_then, client.read_range(blob, PageRange.at(0, 64 * KIB))


def test_a_snapshot_sas_reads_that_snapshot_only_and_serves_put_page_from_url(
    proving_ground: ProvingGround, unique_name: str
) -> None:
    key_signer = SharedKeyAuthorizer(
        proving_ground.backup_account, proving_ground.backup_account_key, service=StorageService.BLOB
    )
    client = BlobClient(Transport(sleep=lambda _: None))
    container = ContainerAddress.in_account(proving_ground.backup_blob_endpoint, unique_name, key_signer)
    client.create_container(container)
    source = container.blob("disk.vhd")
    snapshot, then, now = _write_snapshot(client, source)
    assert then != now
    query = key_signer.blob_sas(unique_name, "disk.vhd", lifetime=timedelta(minutes=10), snapshot=snapshot)
    readable = source.at_snapshot(snapshot).with_sas(query)
    assert client.read_range(readable, PageRange.at(0, 64 * KIB)) == then
    with pytest.raises(AuthenticationError) as base_refused:  # the same SAS does not open the base blob
        client.read_range(source.with_sas(query), PageRange.at(0, 512))
    with pytest.raises(AuthenticationError):  # nor write
        client.put_page(readable, PageRange.at(0, 512), bytes(512))
    expired = SharedKeyAuthorizer(
        proving_ground.backup_account,
        proving_ground.backup_account_key,
        service=StorageService.BLOB,
        clock=lambda: datetime.now(UTC) - timedelta(hours=2),
    ).blob_sas(unique_name, "disk.vhd", lifetime=timedelta(minutes=10), snapshot=snapshot)
    with pytest.raises(AuthenticationError) as expired_refused:
        client.read_range(source.at_snapshot(snapshot).with_sas(expired), PageRange.at(0, 512))
    for error in (base_refused.value, expired_refused.value):
        shown = str(error).replace("sig=REDACTED", "")
        assert parse_qs(query)["sig"][0] not in shown and "sig=" not in shown

    target = container.blob("restored.vhd")
    client.create_page_blob(target, 64 * KIB)
    client.put_page_from_url(target, PageRange.at(0, 32 * KIB), readable, PageRange.at(0, 32 * KIB))
    client.put_page_from_url(
        target, PageRange.at(32 * KIB, 32 * KIB), readable, PageRange.at(32 * KIB, 32 * KIB)
    )
    assert client.read_range(target, PageRange.at(0, 64 * KIB)) == then
    client.delete_container(container)


# -- an Azure AD token for the source ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def oauth_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Azurite, Path]]:
    cert, key = write_self_signed(tmp_path_factory.mktemp("oauth-azurite"), common_name="azurite oauth")
    with Azurite(oauth_cert=(cert, key)) as server:
        yield server, cert


@pytest.fixture
def front_trusts(proving_ground: ProvingGround, oauth_azurite: tuple[Azurite, Path]) -> Iterator[None]:
    """The front reads copy sources on the TLS Azurite, trusting its certificate, for one test."""
    plane = proving_ground.data_plane
    assert plane is not None
    before = plane.copy_source_verify
    plane.copy_source_verify = str(oauth_azurite[1])
    yield
    plane.copy_source_verify = before


def test_put_page_from_url_with_a_bearer_token_for_the_source(
    proving_ground: ProvingGround,
    oauth_azurite: tuple[Azurite, Path],
    front_trusts: None,
    unique_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, cert = oauth_azurite
    token = make_jwt()
    tls = BlobClient(Transport(verify=str(cert), sleep=lambda _: None))
    source_container = ContainerAddress.in_account(
        server.blob_endpoint(), unique_name, BearerAuthorizer(StaticTokenProvider(token))
    )
    tls.create_container(source_container)
    source = source_container.blob("disk.vhd")
    snapshot, then, _ = _write_snapshot(tls, source)

    client = BlobClient(Transport(sleep=lambda _: None))
    key_signer = SharedKeyAuthorizer(
        proving_ground.backup_account, proving_ground.backup_account_key, service=StorageService.BLOB
    )
    container = ContainerAddress.in_account(proving_ground.backup_blob_endpoint, unique_name, key_signer)
    client.create_container(container)
    target = container.blob("restored.vhd")
    client.create_page_blob(target, 64 * KIB)
    caplog.set_level(logging.DEBUG)
    for offset in range(0, 64 * KIB, 16 * KIB):
        chunk = PageRange.at(offset, 16 * KIB)
        client.put_page_from_url_with_token(
            target, chunk, source.at_snapshot(snapshot), chunk, StaticTokenProvider(token)
        )
    assert client.read_range(target, PageRange.at(0, 64 * KIB)) == then

    for bad in (make_jwt(audience="https://management.azure.com"), make_jwt(lifetime=-120)):
        with pytest.raises(AuthenticationError) as refused:
            client.put_page_from_url_with_token(
                target, PageRange.at(0, 512), source.at_snapshot(snapshot), PageRange.at(0, 512),
                StaticTokenProvider(bad),
            )  # fmt: skip
        assert refused.value.code == "CannotVerifyCopySource"
        assert bad not in str(refused.value)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert token not in logged
    client.delete_container(container)
    tls.delete_container(source_container)


def test_a_source_token_is_never_sent_over_plain_http_or_beside_a_sas() -> None:
    client = BlobClient(Transport(sleep=lambda _: None))
    source = BlobAddress.in_account("https://src.blob.core.windows.net", "cc1", "b", lambda m, u, h: None)
    chunk = PageRange.at(0, 512)
    plain = BlobAddress.from_sas_url("http://md-impexp.example.net/c/abcd?sv=1&sig=x")
    with pytest.raises(InvalidInputError, match="plain http"):
        client.put_page_from_url_with_token(plain, chunk, source, chunk, StaticTokenProvider("t"))
    secure = BlobAddress.from_sas_url("https://md-impexp.example.net/c/abcd?sv=1&sig=x")
    with pytest.raises(InvalidInputError, match="use put_page_from_url"):
        client.put_page_from_url_with_token(
            secure, chunk, source.with_sas("sv=1&sig=y"), chunk, StaticTokenProvider("t")
        )
    with pytest.raises(InvalidInputError, match="differs in length"):
        client.put_page_from_url_with_token(
            secure, chunk, source, PageRange.at(0, 1024), StaticTokenProvider("t")
        )
    assert STORAGE_API_VERSION >= "2020-10-02"  # x-ms-copy-source-authorization's first version


def test_a_disk_is_uploaded_from_a_source_read_with_a_token(
    proving_ground: ProvingGround, oauth_azurite: tuple[Azurite, Path], front_trusts: None, unique_name: str
) -> None:
    # The restore path without Shared Key: the backup account's blob snapshot read with an Azure AD token.
    server, cert = oauth_azurite
    token = make_jwt()
    tls = BlobClient(Transport(verify=str(cert), sleep=lambda _: None))
    source_container = ContainerAddress.in_account(
        server.blob_endpoint(), unique_name, BearerAuthorizer(StaticTokenProvider(token))
    )
    tls.create_container(source_container)
    source = source_container.blob("disk.vhd")
    size = 20 * 1024 * KIB
    tls.create_page_blob(source, size + 512)
    data = os.urandom(4 * 1024 * KIB)
    tls.put_page(source, PageRange.at(8 * 1024 * KIB, len(data)), data)
    snapshot = tls.snapshot(source)

    arm = ArmClient(
        proving_ground.arm_endpoint,
        StaticTokenProvider(proving_ground.arm_token),
        Transport(verify=str(proving_ground.arm_ca_cert), sleep=lambda _: None),
        default_retry_after=0,
    )
    compute = ComputeClient(arm)
    disk_id = proving_ground.disk_id(unique_name)

    def done(status: LroStatus) -> LroStatus:
        while not status.done:
            status = compute.poll(status)
        assert status.succeeded
        return status

    started = compute.begin_create_upload_disk(
        disk_id, location="westus", upload_size_bytes=upload_size_for(size), sku="Standard_LRS",
        restore_id=unique_name,
    )  # fmt: skip
    assert started.operation is not None
    done(started.operation)
    write_sas = compute.read_access_sas(done(compute.begin_grant_access(disk_id, 600, access="Write")))
    target = BlobAddress.from_sas_url(write_sas)
    client = BlobClient(Transport(sleep=lambda _: None))
    chunk = PageRange.at(8 * 1024 * KIB, len(data))
    client.put_page_from_url_with_token(
        target, chunk, source.at_snapshot(snapshot), chunk, StaticTokenProvider(token)
    )
    done(compute.begin_revoke_access(disk_id))
    digest = proving_ground.control(
        "GET", f"/resourceGroups/{proving_ground.resource_group}/disks/{unique_name}/digest"
    )
    expected = bytes(8 * 1024 * KIB) + data + bytes(size - 12 * 1024 * KIB)
    assert (digest["size"], digest["sha256"]) == (size, hashlib.sha256(expected).hexdigest())
    deleting = compute.begin_delete_disk(disk_id, restore_id=unique_name)
    assert deleting is not None
    done(deleting)
    tls.delete_container(source_container)
