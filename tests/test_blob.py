"""Blob REST (backup/azure/blob.py) against a real Azurite: every operation, success and failure paths.

What plain Azurite (3.37.0, as pinned) cannot prove runs against the emulator's data-plane front (the
session ``proving_ground``; ``docs/emulator.md`` says why it exists): a correct page-range diff between two
snapshot SAS URLs (Azurite answers the full current ranges, never a ClearRange), Put Page From URL
(Azurite: 501) and Get Page Ranges marker paging (Azurite ignores maxresults). The marker loop is also
tested at a seam we own, the Transport.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobSasPermissions, generate_blob_sas

from backup.azure.blob import (
    MAX_SMALL_BLOB,
    BlobAddress,
    BlobClient,
    BlobItem,
    ContainerAddress,
    CopyStatus,
    PageRangeDiff,
    parse_blob_list,
    parse_page_list,
    parse_storage_error,
)
from backup.azure.page_range import PageRange
from backup.azure.retry import RetryPolicy
from backup.azure.storage_auth import SharedKeyAuthorizer, StorageService
from backup.azure.transport import Transport
from backup.errors import (
    AuthenticationError,
    AzureHttpError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PreconditionFailedError,
    ThrottledError,
    UnexpectedResponseError,
)
from testbed.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY, Azurite, new_account_key
from testbed.emulator.dataplane import DataPlane
from testbed.emulator.pages import PageMap
from testbed.fault_proxy import FaultPlan, FaultProxy
from testbed.proving_ground import ProvingGround

KiB = 1024
MiB = 1024 * KiB
SIGNER = SharedKeyAuthorizer(DEV_ACCOUNT, DEV_ACCOUNT_KEY, service=StorageService.BLOB)


def _bytes(length: int, seed: int) -> bytes:
    """Deterministic non-repeating content."""
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:length])


@pytest.fixture
def client() -> BlobClient:
    return BlobClient(Transport())


@pytest.fixture
def container(azurite: Azurite, client: BlobClient, unique_name: str) -> Iterator[ContainerAddress]:
    address = ContainerAddress.in_account(azurite.blob_endpoint(), unique_name, SIGNER)
    client.create_container(address)
    yield address
    client.delete_container(address)


def _sas_url(blob: BlobAddress, container: str, name: str, snapshot: str | None = None, **perms: bool) -> str:
    token = generate_blob_sas(
        DEV_ACCOUNT,
        container,
        name,
        snapshot=snapshot,
        account_key=DEV_ACCOUNT_KEY,
        permission=BlobSasPermissions(**(perms or {"read": True})),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    url = blob.url + (f"?snapshot={snapshot}&" if snapshot else "?")
    return url + token


# -- containers ------------------------------------------------------------------------------------------


def test_create_container_if_missing(azurite: Azurite, client: BlobClient, unique_name: str) -> None:
    address = ContainerAddress.in_account(azurite.blob_endpoint(), unique_name, SIGNER)
    assert client.create_container(address) is True
    assert client.create_container(address) is False  # 409 ContainerAlreadyExists is fine
    client.delete_container(address)
    with pytest.raises(NotFoundError) as caught:
        client.delete_container(address)
    assert caught.value.code == "ContainerNotFound"


# -- page blobs: create, write, clear, ranges, read, resize -------------------------------------------------


def test_page_blob_write_clear_ranges_and_read(client: BlobClient, container: ContainerAddress) -> None:
    blob = container.blob("disks/disk-1.vhd")
    client.create_page_blob(blob, 16 * MiB, metadata={"source": "disk1"})
    first, second = _bytes(4 * MiB, 1), _bytes(1024, 2)
    client.put_page(blob, PageRange.at(0, 4 * MiB), first)
    client.put_page(blob, PageRange.at(8 * MiB, 1024), second)
    client.clear_pages(blob, PageRange.at(MiB, MiB))

    ranges = client.get_page_ranges(blob)
    assert ranges == PageRangeDiff(
        page_ranges=(
            PageRange(0, MiB - 1),
            PageRange(2 * MiB, 4 * MiB - 1),
            PageRange(8 * MiB, 8 * MiB + 1023),
        ),
        clear_ranges=(),
        blob_size=16 * MiB,
    )
    within = client.get_page_ranges(blob, within=PageRange.at(8 * MiB, MiB))
    assert within.page_ranges == (PageRange(8 * MiB, 8 * MiB + 1023),)

    assert client.read_range(blob, PageRange.at(0, 4096)) == first[:4096]
    assert client.read_range(blob, PageRange.at(MiB, 512)) == b"\0" * 512  # cleared
    assert client.read_range(blob, PageRange.at(8 * MiB, 1024)) == second
    assert client.read_range(blob, PageRange.at(12 * MiB, 512)) == b"\0" * 512  # never written


def test_resize_grows_and_shrinks(client: BlobClient, container: ContainerAddress) -> None:
    blob = container.blob("resize.vhd")
    client.create_page_blob(blob, 4096)
    client.put_page(blob, PageRange.at(3072, 1024), _bytes(1024, 3))
    client.resize(blob, 8192)
    assert client.get_properties(blob).size == 8192
    client.resize(blob, 2048)
    assert client.get_properties(blob).size == 2048
    assert client.get_page_ranges(blob).page_ranges == ()  # the written pages were cut off


@pytest.mark.parametrize("size", [1000, -512, 8 * 1024**4 + 512])
def test_bad_sizes_are_refused_before_sending(
    client: BlobClient, container: ContainerAddress, size: int
) -> None:
    with pytest.raises(InvalidInputError, match="size"):
        client.create_page_blob(container.blob("x"), size)


def test_put_page_validates_data_and_4_mib(client: BlobClient, container: ContainerAddress) -> None:
    blob = container.blob("limits.vhd")
    with pytest.raises(InvalidInputError, match="data"):
        client.put_page(blob, PageRange.at(0, 1024), b"\1" * 512)
    with pytest.raises(InvalidInputError, match="at most 4194304"):
        client.put_page(blob, PageRange.at(0, 4 * MiB + 512), b"\1" * (4 * MiB + 512))


def test_unaligned_size_reaches_azurite_only_through_a_raw_request(
    azurite: Azurite, unique_name: str
) -> None:
    # Our helpers refuse unaligned sizes; this shows what Azurite itself says (400), i.e. why.
    transport = Transport()
    base = f"{azurite.blob_endpoint()}/{unique_name}"
    transport.request(
        "PUT", f"{base}?restype=container", headers={"x-ms-version": "2025-01-05"}, authorize=SIGNER
    )
    with pytest.raises(AzureHttpError) as caught:
        transport.request(
            "PUT",
            f"{base}/odd.vhd",
            headers={
                "x-ms-version": "2025-01-05",
                "x-ms-blob-type": "PageBlob",
                "x-ms-blob-content-length": "1000",
            },
            authorize=SIGNER,
            parse_error=parse_storage_error,
        )
    assert caught.value.status == 400


# -- properties and metadata ---------------------------------------------------------------------------


def test_properties_and_metadata(client: BlobClient, container: ContainerAddress) -> None:
    blob = container.blob("meta.vhd")
    etag = client.create_page_blob(blob, 1024, metadata={"SourceDisk": "disk-1", "kind": "full"})
    props = client.get_properties(blob)
    assert props.size == 1024
    assert props.etag == etag
    assert props.blob_type == "PageBlob"
    # Names are case-insensitive: Azure keeps the case they were set with, Azurite lower-cases them.
    assert {k.lower(): v for k, v in props.metadata.items()} == {"sourcedisk": "disk-1", "kind": "full"}
    assert props.last_modified.tzinfo is not None
    assert props.copy_status is None and props.copy_id is None
    new_etag = client.set_metadata(blob, {"verified": "true"}, if_match=etag)
    assert client.get_properties(blob).metadata == {"verified": "true"}
    assert new_etag != etag


@pytest.mark.parametrize(
    "metadata",
    [
        {"bad-name": "x"},
        {"1st": "x"},
        {"ok": " padded"},
        {"ok": "tab\there"},
        {"ok": "é"},
        {"a": "1", "A": "2"},
    ],
)
def test_bad_metadata_is_refused(
    client: BlobClient, container: ContainerAddress, metadata: dict[str, str]
) -> None:
    with pytest.raises(InvalidInputError, match="metadata"):
        client.create_page_blob(container.blob("m"), 512, metadata=metadata)


# -- snapshots and delete ------------------------------------------------------------------------------


def test_snapshot_keeps_its_content_and_delete_variants(
    client: BlobClient, container: ContainerAddress
) -> None:
    blob = container.blob("snap.vhd")
    client.create_page_blob(blob, 4096)
    before = _bytes(1024, 4)
    client.put_page(blob, PageRange.at(0, 1024), before)
    snapshot = client.snapshot(blob, metadata={"restorepoint": "1"})
    client.put_page(blob, PageRange.at(0, 1024), _bytes(1024, 5))
    client.clear_pages(blob, PageRange.at(0, 512))

    at_snapshot = blob.at_snapshot(snapshot)
    assert at_snapshot.display_url.endswith(f"?snapshot={snapshot}")
    assert client.read_range(at_snapshot, PageRange.at(0, 1024)) == before
    assert client.get_properties(at_snapshot).metadata == {"restorepoint": "1"}
    assert client.get_page_ranges(at_snapshot).page_ranges == (PageRange(0, 1023),)

    second = client.snapshot(blob)
    client.delete(blob.at_snapshot(second))  # one snapshot alone
    with pytest.raises(NotFoundError):
        client.get_properties(blob.at_snapshot(second))
    client.delete(blob, snapshots="only")  # the base stays
    assert client.get_properties(blob).size == 4096
    with pytest.raises(NotFoundError):
        client.get_properties(at_snapshot)

    third = client.snapshot(blob)
    with pytest.raises(ConflictError) as caught:
        client.delete(blob, snapshots=None)  # snapshots present and not mentioned
    assert caught.value.code == "SnapshotsPresent"
    client.delete(blob)  # include: base and snapshots
    for gone in (blob, blob.at_snapshot(third)):
        with pytest.raises(NotFoundError) as missing:
            client.get_properties(gone)
        assert missing.value.status == 404


# -- leases, listings, small block blobs --------------------------------------------------------------------


def test_a_lease_keeps_other_writers_out_until_released_or_broken(
    client: BlobClient, container: ContainerAddress
) -> None:
    blob = container.blob("leased.vhd")
    client.create_page_blob(blob, 4096)
    ours, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    assert client.acquire_lease(blob, ours) == ours
    assert client.acquire_lease(blob, ours) == ours  # again under the same id: harmless
    props = client.get_properties(blob)
    assert props.leased and props.lease_state == "leased"
    with pytest.raises(ConflictError) as caught:
        client.acquire_lease(blob, theirs)
    assert caught.value.code == "LeaseAlreadyPresent"

    page = PageRange.at(0, 512)
    with pytest.raises(PreconditionFailedError) as missing:
        client.put_page(blob, page, _bytes(512, 1))  # no lease id: refused
    assert missing.value.code == "LeaseIdMissing"
    client.put_page(blob, page, _bytes(512, 1), lease_id=ours)
    client.clear_pages(blob, page, lease_id=ours)
    client.set_metadata(blob, {"writer": "us"}, lease_id=ours)
    client.snapshot(blob)  # a snapshot needs no lease id

    client.release_lease(blob, ours)
    assert not client.get_properties(blob).leased
    client.acquire_lease(blob, theirs)
    client.break_lease(blob)  # without knowing the id
    assert client.get_properties(blob).lease_state == "broken"
    client.acquire_lease(blob, ours)
    client.release_lease(blob, ours)
    client.delete(blob)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c, b: c.acquire_lease(b, "not-a-guid"), "lease_id"),
        (lambda c, b: c.acquire_lease(b, str(uuid.uuid4()), duration=5), "duration"),
        (lambda c, b: c.break_lease(b, break_period=61), "break_period"),
        (lambda c, b: c.put_page(b, PageRange.at(0, 512), bytes(512), lease_id="x"), "lease_id"),
    ],
)
def test_bad_lease_arguments_are_refused_before_sending(
    client: BlobClient, container: ContainerAddress, call: Any, field: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        call(client, container.blob("never.vhd"))
    assert caught.value.field == field


def test_list_blobs_with_snapshots_and_metadata(client: BlobClient, container: ContainerAddress) -> None:
    chain = container.blob("disks/d1/chain.vhd")
    client.create_page_blob(chain, 1024, metadata={"diskid": "d1"})
    first = client.snapshot(chain, metadata={"runid": "r1"})
    second = client.snapshot(chain, metadata={"runid": "r2"})
    client.put_block_blob(container.blob("disks/d1/chain.vhd.plan/r3/0.json"), b"{}")
    client.create_page_blob(container.blob("disks/d2/chain.vhd"), 512)

    items = client.list_blobs(container, prefix="disks/d1/chain.vhd", snapshots=True, metadata=True)
    # Azure lists a blob's snapshots oldest first and then the blob; Azurite the blob first. Callers sort.
    items.sort(key=lambda i: (i.name, i.snapshot or "~"))
    listed = [(i.name, i.snapshot, i.metadata) for i in items]
    assert listed == [
        ("disks/d1/chain.vhd", first, {"runid": "r1"}),
        ("disks/d1/chain.vhd", second, {"runid": "r2"}),
        ("disks/d1/chain.vhd", None, {"diskid": "d1"}),
        ("disks/d1/chain.vhd.plan/r3/0.json", None, {}),
    ]
    assert [i.blob_type for i in items] == ["PageBlob"] * 3 + ["BlockBlob"]
    assert [i.size for i in items[:3]] == [1024] * 3
    plain = client.list_blobs(container, prefix="disks/")
    assert [(i.name, i.snapshot, i.metadata) for i in plain] == [
        ("disks/d1/chain.vhd", None, {}),
        ("disks/d1/chain.vhd.plan/r3/0.json", None, {}),
        ("disks/d2/chain.vhd", None, {}),
    ]
    assert client.list_blobs(container, prefix="nothing/") == []


def test_parse_blob_list_follows_the_marker_and_ignores_the_copy_source() -> None:
    text = (
        '<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="c"><Blobs>'
        "<Blob><Name>a.vhd</Name><Snapshot>2026-01-02T03:04:05.1234567Z</Snapshot><Properties>"
        "<Content-Length>1024</Content-Length><BlobType>PageBlob</BlobType>"
        "<CopySource>https://x/y?sv=1&amp;sig=SECRET</CopySource></Properties>"
        "<Metadata><runid>r1</runid></Metadata></Blob>"
        "<BlobPrefix><Name>dir/</Name></BlobPrefix>"
        "</Blobs><NextMarker>page2</NextMarker></EnumerationResults>"
    )
    items, marker = parse_blob_list(text)
    assert marker == "page2"
    assert items == [BlobItem("a.vhd", "2026-01-02T03:04:05.1234567Z", 1024, {"runid": "r1"}, "PageBlob")]
    assert "SECRET" not in repr(items)
    with pytest.raises(InvalidInputError):
        parse_blob_list("<EnumerationResults><Blobs><Blob><Name>x</Name></Blob></Blobs></EnumerationResults>")
    with pytest.raises(InvalidInputError):
        parse_blob_list("<PageList/>")


def test_small_block_blobs_round_trip(client: BlobClient, container: ContainerAddress) -> None:
    plan = container.blob("plan/0001.json")
    client.put_block_blob(plan, b'{"writes": []}', content_type="application/json")
    assert client.get_blob(plan) == b'{"writes": []}'
    client.put_block_blob(plan, b"{}")  # replaced whole
    assert client.get_blob(plan) == b"{}"
    with pytest.raises(InvalidInputError):
        client.put_block_blob(plan, bytes(MAX_SMALL_BLOB + 1))


# -- copies --------------------------------------------------------------------------------------------


def test_copy_from_sas_url_status_via_head_and_abort(
    client: BlobClient, container: ContainerAddress, unique_name: str
) -> None:
    source = container.blob("src.vhd")
    client.create_page_blob(source, 8192)
    content = _bytes(2048, 6)
    client.put_page(source, PageRange.at(1024, 2048), content)
    snapshot = client.snapshot(source)
    sas = BlobAddress.from_sas_url(_sas_url(source, unique_name, "src.vhd", snapshot=snapshot))

    destination = container.blob("copy.vhd")
    started = client.start_copy(destination, sas, metadata={"backupof": "src"})
    assert started.status is CopyStatus.SUCCESS  # Azurite completes at once; Azure may say pending
    props = client.get_properties(destination)
    assert props.copy_id == started.copy_id
    assert props.copy_status is CopyStatus.SUCCESS
    assert props.copy_progress == (8192, 8192)
    assert props.copy_source == source.url  # without the SAS query
    assert props.copy_completion_time is not None
    assert props.metadata == {"backupof": "src"}
    assert client.read_range(destination, PageRange.at(1024, 2048)) == content

    with pytest.raises(ConflictError) as caught:
        client.abort_copy(destination, started.copy_id)
    assert caught.value.code == "NoPendingCopyOperation"


def test_sas_read_and_tampered_sas(client: BlobClient, container: ContainerAddress, unique_name: str) -> None:
    blob = container.blob("sas.vhd")
    client.create_page_blob(blob, 1024)
    client.put_page(blob, PageRange.at(0, 512), _bytes(512, 7))
    url = _sas_url(blob, unique_name, "sas.vhd")
    assert client.read_range(BlobAddress.from_sas_url(url), PageRange.at(0, 512)) == _bytes(512, 7)
    tampered = url.replace("sp=r", "sp=rw")
    with pytest.raises(AuthenticationError) as caught:
        client.get_properties(BlobAddress.from_sas_url(tampered))
    assert caught.value.status == 403


def test_put_page_from_url_is_not_implemented_by_plain_azurite(
    client: BlobClient, container: ContainerAddress, unique_name: str
) -> None:
    # Records Azurite's gap; the behaviour itself is proven against the emulator front below.
    source = container.blob("pfu-src.vhd")
    client.create_page_blob(source, 1024)
    destination = container.blob("pfu-dst.vhd")
    client.create_page_blob(destination, 1024)
    sas = BlobAddress.from_sas_url(_sas_url(source, unique_name, "pfu-src.vhd"))
    with pytest.raises(AzureHttpError) as caught:
        client.put_page_from_url(destination, PageRange.at(0, 512), sas, PageRange.at(512, 512))
    assert caught.value.status == 501


def test_put_page_from_url_validates_before_sending(client: BlobClient, container: ContainerAddress) -> None:
    sas = BlobAddress.from_sas_url("http://127.0.0.1:1/a/c/b?sv=1&sig=x")
    with pytest.raises(InvalidInputError, match="source_range"):
        client.put_page_from_url(container.blob("d"), PageRange.at(0, 512), sas, PageRange.at(0, 1024))
    with pytest.raises(InvalidInputError, match="source"):
        client.put_page_from_url(
            container.blob("d"), PageRange.at(0, 512), container.blob("s"), PageRange.at(0, 512)
        )


# -- failure paths: 403, 404, 409, 412, 416, 429 ---------------------------------------------------------


def test_wrong_key_is_403(azurite: Azurite, client: BlobClient, container: ContainerAddress) -> None:
    wrong = SharedKeyAuthorizer(DEV_ACCOUNT, new_account_key(), service=StorageService.BLOB)
    blob = BlobAddress.in_account(azurite.blob_endpoint(), container.url.rsplit("/", 1)[1], "b", wrong)
    with pytest.raises(AuthenticationError) as caught:
        client.create_page_blob(blob, 512)
    assert caught.value.status == 403
    assert caught.value.code == "AuthorizationFailure"
    assert caught.value.retryable is False
    assert caught.value.request_id


def test_missing_blob_is_404(client: BlobClient, container: ContainerAddress) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.get_properties(container.blob("nope.vhd"))  # HEAD: no body, code from the header
    assert caught.value.code == "BlobNotFound"
    with pytest.raises(NotFoundError) as caught:
        client.get_page_ranges(container.blob("nope.vhd"))  # GET: code and message from the XML
    assert caught.value.code == "BlobNotFound"
    assert caught.value.error_message == "The specified blob does not exist."


def test_existing_blob_without_overwrite_is_409(client: BlobClient, container: ContainerAddress) -> None:
    blob = container.blob("once.vhd")
    client.create_page_blob(blob, 512, overwrite=False)
    with pytest.raises(ConflictError) as caught:
        client.create_page_blob(blob, 512, overwrite=False)
    assert caught.value.code == "BlobAlreadyExists"


def test_stale_etag_is_412(client: BlobClient, container: ContainerAddress) -> None:
    blob = container.blob("etag.vhd")
    stale = client.create_page_blob(blob, 1024)
    client.put_page(blob, PageRange.at(0, 512), _bytes(512, 8))
    with pytest.raises(PreconditionFailedError) as caught:
        client.put_page(blob, PageRange.at(512, 512), _bytes(512, 9), if_match=stale)
    assert caught.value.status == 412
    assert caught.value.code == "ConditionNotMet"
    with pytest.raises(PreconditionFailedError):
        client.set_metadata(blob, {"a": "b"}, if_match=stale)


def test_range_past_the_end_is_416(client: BlobClient, container: ContainerAddress) -> None:
    blob = container.blob("short.vhd")
    client.create_page_blob(blob, 1024)
    with pytest.raises(PreconditionFailedError) as caught:
        client.read_range(blob, PageRange.at(4096, 512))
    assert caught.value.status == 416


def test_429_then_success_honours_retry_after(azurite: Azurite, container: ContainerAddress) -> None:
    # Seam: the test bed's fault proxy answers 429 + Retry-After: 1 once, then forwards
    # to Azurite; the Transport's sleep seam records the wait instead of sleeping.
    waits: list[float] = []
    with FaultProxy(azurite.blob_url, FaultPlan(retry_after=1)) as proxy:
        proxy.fail_next("throttle", 1)
        client = BlobClient(Transport(sleep=waits.append))
        name = container.url.rsplit("/", 1)[1]
        via_proxy = BlobAddress.in_account(f"{proxy.url}/{DEV_ACCOUNT}", name, "throttled.vhd", SIGNER)
        client.create_page_blob(via_proxy, 512)  # a PUT: 429 is retried whatever the verb
        assert client.get_properties(via_proxy).size == 512
    assert waits == [1.0]
    assert [action for action, _, _ in proxy.faults] == ["throttle"] and proxy.stats["forwarded"] == 2


def test_429_beyond_the_budget_surfaces_as_throttled(azurite: Azurite, container: ContainerAddress) -> None:
    waits: list[float] = []
    with FaultProxy(azurite.blob_url, FaultPlan(retry_after=2)) as proxy:
        proxy.fail_next("throttle", 5)
        client = BlobClient(Transport(sleep=waits.append, policy=RetryPolicy(max_attempts=3)))
        name = container.url.rsplit("/", 1)[1]
        via_proxy = BlobAddress.in_account(f"{proxy.url}/{DEV_ACCOUNT}", name, "never.vhd", SIGNER)
        with pytest.raises(ThrottledError) as caught:
            client.get_properties(via_proxy)
    assert caught.value.retryable is True
    assert caught.value.retry_after == 2.0
    assert caught.value.code == "ServerBusy"
    assert waits == [2.0, 2.0]


# -- addresses -------------------------------------------------------------------------------------------


def test_addresses_encode_names_and_hide_the_sas(azurite: Azurite) -> None:
    blob = BlobAddress.in_account(azurite.blob_endpoint() + "/", "cc1", "a dir/b#?%.vhd", SIGNER)
    assert blob.url == f"{azurite.blob_endpoint()}/cc1/a%20dir/b%23%3F%25.vhd"
    sas = BlobAddress.from_sas_url("https://acct.blob.core.windows.net/c/b?sv=2021-08-06&sr=b&sig=SECRET%3D")
    assert "SECRET" not in repr(sas) and "SECRET" not in sas.display_url
    assert sas.source_url() == "https://acct.blob.core.windows.net/c/b?sv=2021-08-06&sr=b&sig=SECRET%3D"
    snap = sas.at_snapshot("2024-01-02T03:04:05.1234567Z")
    assert snap.request_url(comp="pagelist") == (
        "https://acct.blob.core.windows.net/c/b?comp=pagelist&snapshot=2024-01-02T03%3A04%3A05.1234567Z"
        "&sv=2021-08-06&sr=b&sig=SECRET%3D"
    )


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: BlobAddress.from_sas_url("https://a.blob.core.windows.net/c/b?sv=1"), "sas url"),
        (lambda: BlobAddress.from_sas_url("ftp://a/c/b?sig=x"), "sas url"),
        (lambda: BlobAddress.from_sas_url("https://a.blob.core.windows.net/b?sig=x"), "sas url"),
        (lambda: BlobAddress(url="https://a/c/b"), "blob address"),
        (lambda: BlobAddress(url="https://a/c/b", authorize=SIGNER, sas="sig=x"), "blob address"),
        (lambda: BlobAddress.in_account("https://a", "Bad_Name", "b", SIGNER), "container"),
        (lambda: BlobAddress.in_account("https://a", "c--c", "b", SIGNER), "container"),
        (lambda: BlobAddress.in_account("https://a", "cc", "b", SIGNER), "container"),
        (lambda: BlobAddress.in_account("https://a", "ccc", "dir/", SIGNER), "blob name"),
        (lambda: BlobAddress.in_account("https://a", "ccc", "", SIGNER), "blob name"),
        (lambda: BlobAddress.in_account("https://a", "ccc", "a\nb", SIGNER), "blob name"),
        (lambda: BlobAddress.in_account("a.blob.core.windows.net", "ccc", "b", SIGNER), "blob endpoint"),
        (lambda: BlobAddress.in_account("https://a?x=1", "ccc", "b", SIGNER), "blob endpoint"),
        (lambda: BlobAddress(url="https://a/c/b", authorize=SIGNER, snapshot="yesterday"), "snapshot"),
    ],
)
def test_bad_addresses_are_refused(make: Any, field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        make()
    assert caught.value.field == field


# -- Get Page Ranges paging: the pure parser, and the marker loop at the Transport seam ------------------

_PAGE_ONE = (
    '<?xml version="1.0" encoding="utf-8"?><PageList><PageRange><Start>0</Start><End>511</End></PageRange>'
    "<ClearRange><Start>1024</Start><End>2047</End></ClearRange><NextMarker>2!8!MTAyNA--</NextMarker></PageList>"
)
_PAGE_TWO = (
    '<?xml version="1.0" encoding="utf-8"?><PageList>'
    "<PageRange><Start>4096</Start><End>8191</End></PageRange><NextMarker /></PageList>"
)


def test_parse_page_list() -> None:
    assert parse_page_list(_PAGE_ONE) == ([PageRange(0, 511)], [PageRange(1024, 2047)], "2!8!MTAyNA--")
    assert parse_page_list(_PAGE_TWO) == ([PageRange(4096, 8191)], [], None)
    for bad in (
        "<PageList><PageRange><Start>1</Start><End>511</End></PageRange></PageList>",  # unaligned
        "<PageList><PageRange><Start>0</Start></PageRange></PageList>",
        "<Other/>",
        "not xml",
        '<!DOCTYPE x [<!ENTITY a "b">]><PageList/>',
        "<PageList><PageRange><Start>\u00b2</Start><End>511</End></PageRange></PageList>",  # not ASCII
    ):
        with pytest.raises(UnexpectedResponseError):
            parse_page_list(bad)


class _ScriptedTransport(Transport):
    """A Transport (our seam) that answers from a script and records the URLs and headers it got."""

    def __init__(self, bodies: list[str]) -> None:
        super().__init__()
        self.bodies = bodies
        self.calls: list[tuple[str, dict[str, str]]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        headers: MutableMapping[str, str] = kwargs.get("headers") or {}
        self.calls.append((url, dict(headers)))
        response = requests.Response()
        response.status_code = 200
        response._content = self.bodies.pop(0).encode()
        response.headers["x-ms-blob-content-length"] = "8192"
        return response


def test_get_page_ranges_follows_next_marker() -> None:
    transport = _ScriptedTransport([_PAGE_ONE, _PAGE_TWO])
    older = BlobAddress.from_sas_url("https://a.blob.core.windows.net/c/b?snapshot=x&sv=1&sig=OLD")
    newer = BlobAddress.from_sas_url("https://a.blob.core.windows.net/c/b?sv=1&sig=NEW")
    diff = BlobClient(transport).get_page_ranges(newer, previous_snapshot_url=older, page_size=1)
    assert diff == PageRangeDiff((PageRange(0, 511), PageRange(4096, 8191)), (PageRange(1024, 2047),), 8192)
    (first_url, first_headers), (second_url, _) = transport.calls
    assert first_url == "https://a.blob.core.windows.net/c/b?comp=pagelist&maxresults=1&sv=1&sig=NEW"
    assert (
        second_url
        == "https://a.blob.core.windows.net/c/b?comp=pagelist&maxresults=1&marker=2%218%21MTAyNA--&sv=1&sig=NEW"
    )
    assert (
        first_headers["x-ms-previous-snapshot-url"]
        == "https://a.blob.core.windows.net/c/b?snapshot=x&sv=1&sig=OLD"
    )
    assert first_headers["x-ms-version"] == "2025-01-05"


# -- against the emulator's data-plane front (what plain Azurite gets wrong) ------------------------------


@pytest.fixture
def front(proving_ground: ProvingGround) -> Iterator[tuple[DataPlane, list[str]]]:
    """The proving ground's data plane, and a list of granted resource ids to revoke afterwards."""
    assert proving_ground.data_plane is not None
    granted: list[str] = []
    yield proving_ground.data_plane, granted
    for resource_id in granted:
        proving_ground.data_plane.revoke(resource_id)


def _two_snapshots(front: tuple[DataPlane, list[str]]) -> tuple[BlobAddress, BlobAddress, PageMap]:
    plane, granted = front
    disk = PageMap(16 * MiB)
    disk.write(0, _bytes(2 * MiB, 10))
    disk.write(8 * MiB, _bytes(MiB, 11))
    older = disk.frozen()
    disk.write(MiB, _bytes(512 * KiB, 12))  # changed inside the first range
    disk.clear(8 * MiB, MiB)  # trimmed
    disk.write(12 * MiB, _bytes(3 * MiB, 13))  # new
    newer = disk.frozen()
    family = "family-" + uuid.uuid4().hex
    sas_urls = []
    for index, content in enumerate((older, newer)):
        resource_id = f"/snapshots/{family}/{index}"
        sas_urls.append(
            plane.grant(resource_id=resource_id, family_id=family, content=content, duration_seconds=600)
        )
        granted.append(resource_id)
    return BlobAddress.from_sas_url(sas_urls[0]), BlobAddress.from_sas_url(sas_urls[1]), newer


def test_page_range_diff_between_snapshot_sas_urls(front: tuple[DataPlane, list[str]]) -> None:
    old, new, _ = _two_snapshots(front)
    diff = BlobClient().get_page_ranges(new, previous_snapshot_url=old)
    assert diff.page_ranges == (PageRange.at(MiB, 512 * KiB), PageRange.at(12 * MiB, 3 * MiB))
    assert diff.clear_ranges == (PageRange.at(8 * MiB, MiB),)
    assert diff.blob_size == 16 * MiB + 512  # a managed disk's blob ends with its 512-byte VHD footer
    paged = BlobClient().get_page_ranges(new, previous_snapshot_url=old, page_size=1)  # NextMarker paging
    assert paged == diff
    # One response at a time, within a segment: what a bounded step of a long listing does.
    client = BlobClient()
    first, marker = client.get_page_ranges_page(
        new, previous_snapshot_url=old, within=PageRange.at(0, 10 * MiB), page_size=1
    )
    assert (first.page_ranges, first.clear_ranges, first.blob_size) == (
        diff.page_ranges[:1],
        (),
        16 * MiB + 512,
    )
    assert marker is not None
    second, marker = client.get_page_ranges_page(
        new, previous_snapshot_url=old, within=PageRange.at(0, 10 * MiB), page_size=1, marker=marker
    )
    assert (second.page_ranges, second.clear_ranges, marker) == ((), (PageRange.at(8 * MiB, MiB),), None)


def test_put_page_from_url_moves_exactly_the_bytes_asked(
    front: tuple[DataPlane, list[str]], proving_ground: ProvingGround, unique_name: str
) -> None:
    _, new, newer = _two_snapshots(front)
    client = BlobClient()
    container = ContainerAddress.in_account(proving_ground.backup_blob_endpoint, unique_name, SIGNER)
    client.create_container(container)
    target = container.blob("base.vhd")
    client.create_page_blob(target, 16 * MiB)
    client.put_page_from_url(target, PageRange.at(4 * MiB, 4 * MiB), new, PageRange.at(12 * MiB, 4 * MiB))
    assert client.read_range(target, PageRange.at(4 * MiB, 4 * MiB)) == newer.read(12 * MiB, 4 * MiB)
    # Put Page writes every page of its range, zeros included (only Clear makes holes).
    assert client.get_page_ranges(target).page_ranges == (PageRange.at(4 * MiB, 4 * MiB),)
    client.delete_container(container)
