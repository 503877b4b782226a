"""The managed-disk data plane against a real Azurite: grants, SAS, diffs, Put Page From URL, copies.

One Azurite per module with two accounts (the backup account and ``mdisks``), one DataPlane front on it.
The official ``azure-storage-blob`` SDK is the independent client where it fits; raw ``requests`` (signed
with the product's Shared Key signer) where a test needs exact headers or a malformed request.
"""

from __future__ import annotations

import logging
import random
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient as SdkBlobClient
from azure.storage.blob import BlobServiceClient, ContainerClient, generate_blob_sas

from backup import vhd
from backup.azure.blob import BlobAddress, BlobClient
from backup.azure.storage_auth import SharedKeyAuthorizer, StorageService
from backup.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from testbed.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY, Azurite, new_account_key
from testbed.emulator import sas
from testbed.emulator.dataplane import DataPlane
from testbed.emulator.page_list import PageListItem
from testbed.emulator.pages import PAGE_SIZE, PageMap, diff, fill_sparse

MD = "mdisks"
MD_KEY = new_account_key()
MIB = 1 << 20
P = PAGE_SIZE
KEYS = {DEV_ACCOUNT: DEV_ACCOUNT_KEY, MD: MD_KEY}
SIGNER = SharedKeyAuthorizer(DEV_ACCOUNT, DEV_ACCOUNT_KEY, service=StorageService.BLOB)


class Clock:
    """Real time plus an offset the expiry tests move forward (never back)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture(scope="module")
def md_azurite() -> Iterator[Azurite]:
    with Azurite(accounts=KEYS) as server:
        yield server


@pytest.fixture(scope="module")
def plane_server(md_azurite: Azurite) -> Iterator[DataPlane]:
    plane = DataPlane(md_azurite, md_account=MD, account_keys=KEYS)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def clocked_plane(md_azurite: Azurite, clock: Clock) -> Iterator[DataPlane]:
    """A data plane of its own whose clock the test moves (expiry), on the module's Azurite."""
    plane = DataPlane(md_azurite, md_account=MD, account_keys=KEYS, clock=clock)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def plane(plane_server: DataPlane) -> Iterator[DataPlane]:
    plane_server.copy_pending_polls = 0
    yield plane_server
    plane_server.copy_pending_polls = 0


@pytest.fixture
def container(plane: DataPlane, unique_name: str) -> ContainerClient:
    """A fresh container of the backup account, reached through the front with the SDK."""
    service = BlobServiceClient(
        account_url=plane.blob_endpoint(DEV_ACCOUNT),
        credential={"account_name": DEV_ACCOUNT, "account_key": DEV_ACCOUNT_KEY},
    )
    client = service.get_container_client(unique_name)
    client.create_container()
    return client


def _snapshot_id() -> str:
    group = f"/subscriptions/{uuid.uuid4()}/resourceGroups/rg"
    return f"{group}/providers/Microsoft.Compute/snapshots/s{uuid.uuid4().hex[:8]}"


def _disk(size: int = 8 * MIB, seed: int = 1, fraction: float = 0.2) -> PageMap:
    pm = PageMap(size)
    fill_sparse(pm, seed=seed, fraction=fraction, mean_run_bytes=64 * 1024)
    return pm


def _get(url: str, **headers: str) -> requests.Response:
    return requests.get(url, headers={"x-ms-version": "2021-08-06", **headers}, timeout=30)


def _signed(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> requests.Response:
    """A request through the front signed with the backup account's key (the product's signer)."""
    sent = {"x-ms-version": "2021-08-06", **(headers or {})}
    if body or method in ("PUT", "POST"):
        sent["Content-Length"] = str(len(body))
    SIGNER(method, url, sent)
    return requests.request(method, url, headers=sent, data=body, timeout=30)


def _wait_copy(blob: SdkBlobClient, limit: int = 20) -> list[tuple[str, str | None]]:
    """HEAD the destination until the copy is no longer pending; the (status, progress) seen."""
    seen = []
    for _ in range(limit):
        properties = blob.get_blob_properties()
        seen.append((properties.copy.status, properties.copy.progress))
        if properties.copy.status != "pending":
            return seen
    raise AssertionError(f"copy still pending after {limit} polls: {seen}")


def _xml(body: bytes) -> ET.Element:
    return ET.fromstring(body)  # noqa: S314 - answers of our own loopback servers


def _page_list(response: requests.Response) -> list[PageListItem]:
    assert response.status_code == 200, response.text
    items = []
    for element in _xml(response.content):
        if element.tag in ("PageRange", "ClearRange"):
            start, end = int(element.findtext("Start", "")), int(element.findtext("End", ""))
            items.append(PageListItem(start, end, element.tag == "ClearRange"))
    return items


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _error_code(response: requests.Response) -> str | None:
    return response.headers.get("x-ms-error-code")


# -- (a) grant, Copy Blob through the front, byte-identical read-back ------------------------------------


def test_grant_sas_is_a_copy_source_and_the_copy_reads_back_identical(
    plane: DataPlane, container: ContainerClient
) -> None:
    content = _disk()
    sas_url = plane.grant(
        resource_id=_snapshot_id(), family_id=None, content=content.frozen(), duration_seconds=600
    )
    assert sas_url.startswith(f"{plane.blob_url}/{MD}/") and "/abcd?" in sas_url and "sp=r" in sas_url

    destination = container.get_blob_client("disk.vhd")
    started = destination.start_copy_from_url(sas_url)
    assert started["copy_status"] == "success"  # no pacing asked for
    assert _wait_copy(destination)[-1][0] == "success"

    data = destination.download_blob().readall()
    assert len(data) == content.size + vhd.FOOTER_SIZE
    assert data[: content.size] == content.read(0, content.size)
    footer = vhd.parse_footer(data[content.size :])
    assert footer.cookie == b"conectix" and footer.current_size == content.size and footer.checksum_ok
    # Page ranges of the copy: the content's, plus the footer's page.
    ranges = [(r["start"], r["end"]) for r in destination.get_page_ranges()[0]]
    expected = [*content.ranges(), (content.size, content.size + P - 1)]
    assert _merged(ranges) == _merged(expected)


def test_copy_sent_to_azurite_directly_fails_on_the_host_check(
    plane: DataPlane, md_azurite: Azurite, unique_name: str
) -> None:
    """Why the front exists: Azurite refuses a copy source on another host:port (verified, 3.37.0)."""
    sas_url = plane.grant(
        resource_id=_snapshot_id(), family_id=None, content=_disk(MIB), duration_seconds=600
    )
    service = BlobServiceClient(
        account_url=md_azurite.blob_endpoint(DEV_ACCOUNT),
        credential={"account_name": DEV_ACCOUNT, "account_key": DEV_ACCOUNT_KEY},
    )
    direct = service.get_container_client(unique_name)
    direct.create_container()
    with pytest.raises(HttpResponseError) as caught:
        direct.get_blob_client("x").start_copy_from_url(sas_url)
    assert caught.value.status_code == 404
    assert caught.value.error_code == "CannotVerifyCopySource"


def test_sas_reads_headers_and_ranges(plane: DataPlane) -> None:
    content = _disk(2 * MIB)
    sas_url = plane.grant(resource_id=_snapshot_id(), family_id=None, content=content, duration_seconds=600)
    size = content.size + vhd.FOOTER_SIZE
    head = requests.head(sas_url, timeout=30)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(size)
    assert head.headers["x-ms-blob-type"] == "PageBlob"
    assert head.headers["ETag"] and head.headers["Last-Modified"] and head.headers["x-ms-request-id"]

    part = _get(sas_url, **{"x-ms-range": "bytes=1000-5000"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 1000-5000/{size}"
    assert part.content == content.read(1000, 4001)
    tail = _get(sas_url, Range=f"bytes={content.size}-")
    assert tail.status_code == 206 and vhd.parse_footer(tail.content).checksum_ok
    beyond = _get(sas_url, Range=f"bytes={size}-")
    assert beyond.status_code == 416 and _error_code(beyond) == "InvalidRange"
    whole = _get(sas_url)
    assert whole.status_code == 200 and whole.content[: content.size] == content.read(0, content.size)

    listed = _page_list(_get(sas_url + "&comp=pagelist"))
    assert [(i.start, i.end) for i in listed] == _merged([*content.ranges(), (content.size, size - 1)])
    assert not any(i.cleared for i in listed)

    # The official SDK, an independent reader, sees the same blob.
    reader = SdkBlobClient.from_blob_url(sas_url, max_chunk_get_size=MIB, max_single_get_size=MIB)
    properties = reader.get_blob_properties()
    assert properties.size == size and properties.blob_type == "PageBlob"
    assert reader.download_blob(max_concurrency=2).readall() == whole.content
    assert [(r["start"], r["end"]) for r in reader.get_page_ranges()[0]] == [(i.start, i.end) for i in listed]

    # Writes are refused: the SAS is read-only; container calls are refused too.
    put = requests.put(
        sas_url + "&comp=metadata", headers={"x-ms-meta-a": "b", "Content-Length": "0"}, timeout=30
    )
    assert put.status_code == 403 and _error_code(put) == "AuthorizationPermissionMismatch"
    listing = _get(sas_url.replace("/abcd?", "?") + "&restype=container&comp=list")
    assert listing.status_code == 403


# -- (b) diffs between two incremental snapshots ---------------------------------------------------------


@dataclass
class Day:
    """A day of known writes and trims on a disk: the ground truth a diff must reproduce."""

    written: set[int]
    trimmed: set[int]


def _day_of_writes(disk: PageMap, rng: random.Random, writes: int, trims: int) -> Day:
    day = Day(set(), set())
    pages = disk.size // P
    for _ in range(writes):
        first, count = rng.randrange(pages - 64), rng.randint(1, 64)
        disk.write(first * P, rng.randbytes(count * P))
        day.written |= set(range(first, first + count))
        day.trimmed -= set(range(first, first + count))
    for _ in range(trims):
        first, count = rng.randrange(pages - 256), rng.randint(1, 256)
        disk.clear(first * P, count * P)
        day.trimmed |= set(range(first, first + count))
        day.written -= set(range(first, first + count))
    return day


def _as_ranges(pages: set[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for page in sorted(pages):
        if ranges and ranges[-1][1] == page * P - 1:
            ranges[-1] = (ranges[-1][0], page * P + P - 1)
        else:
            ranges.append((page * P, page * P + P - 1))
    return ranges


@pytest.fixture
def two_snapshots(plane: DataPlane) -> tuple[str, str, PageMap, PageMap, Day]:
    """Two incremental snapshots of one disk, a day of known writes and trims apart, both granted."""
    disk = _disk(8 * MIB, seed=5, fraction=0.3)
    older = disk.frozen()
    day = _day_of_writes(disk, random.Random(9), writes=40, trims=12)
    newer = disk.frozen()
    family = str(uuid.uuid4())
    now = datetime.now(UTC)
    old_sas = plane.grant(
        resource_id=_snapshot_id(), family_id=family, content=older, duration_seconds=600, taken_at=now
    )
    new_sas = plane.grant(
        resource_id=_snapshot_id(),
        family_id=family,
        content=newer,
        duration_seconds=600,
        taken_at=now + timedelta(days=1),
    )
    return old_sas, new_sas, older, newer, day


def test_diff_between_incremental_snapshots_is_exact(
    two_snapshots: tuple[str, str, PageMap, PageMap, Day],
) -> None:
    old_sas, new_sas, older, newer, day = two_snapshots
    answer = _page_list(_get(new_sas + "&comp=pagelist", **{"x-ms-previous-snapshot-url": old_sas}))
    changed = [(i.start, i.end) for i in answer if not i.cleared]
    cleared = [(i.start, i.end) for i in answer if i.cleared]
    assert [i.start for i in answer] == sorted(i.start for i in answer)  # one list, in offset order

    # Against the page maps' own diff...
    assert (changed, cleared) == diff(older, newer)
    # ...and against the ground truth of the writes: every page written that day (random bytes, so changed)
    # and every page trimmed that held data the day before.
    populated_before = {p // P for start, end in older.ranges() for p in range(start, end + 1, P)}
    assert changed == _as_ranges(day.written)
    assert cleared == _as_ranges(day.trimmed & populated_before)


def test_diff_paging_with_maxresults_and_markers(
    two_snapshots: tuple[str, str, PageMap, PageMap, Day],
) -> None:
    old_sas, new_sas, older, newer, _ = two_snapshots
    whole = _page_list(_get(new_sas + "&comp=pagelist", **{"x-ms-previous-snapshot-url": old_sas}))
    assert len(whole) > 7
    collected: list[PageListItem] = []
    marker = ""
    pages = 0
    while True:
        query = "&comp=pagelist&maxresults=3" + (f"&marker={marker}" if marker else "")
        response = _get(new_sas + query, **{"x-ms-previous-snapshot-url": old_sas})
        items = _page_list(response)
        assert len(items) <= 3
        collected += items
        pages += 1
        marker = _xml(response.content).findtext("NextMarker") or ""
        if not marker:
            break
    assert collected == whole and pages == -(-len(whole) // 3)

    # The product's blob client follows NextMarker the same way and agrees.
    client = BlobClient()
    result = client.get_page_ranges(
        BlobAddress.from_sas_url(new_sas),
        previous_snapshot_url=BlobAddress.from_sas_url(old_sas),
        page_size=2,
    )
    changed, cleared = diff(older, newer)
    assert [(r.start, r.end) for r in result.page_ranges] == changed
    assert [(r.start, r.end) for r in result.clear_ranges] == cleared
    assert result.blob_size == newer.size + vhd.FOOTER_SIZE


def test_diff_within_a_range(two_snapshots: tuple[str, str, PageMap, PageMap, Day]) -> None:
    old_sas, new_sas, older, newer, _ = two_snapshots
    low, high = 2 * MIB, 5 * MIB - 1
    answer = _page_list(
        _get(
            new_sas + "&comp=pagelist",
            **{"x-ms-previous-snapshot-url": old_sas, "x-ms-range": f"bytes={low}-{high}"},
        )
    )
    changed, _ = diff(older, newer)
    expected = [(max(s, low), min(e, high)) for s, e in changed if s <= high and e >= low]
    assert [(i.start, i.end) for i in answer if not i.cleared] == expected
    bad = _get(new_sas + "&comp=pagelist", **{"x-ms-range": "bytes=1-100"})
    assert bad.status_code == 400 and _error_code(bad) == "InvalidHeaderValue"


def test_azurite_alone_answers_the_diff_wrongly(
    two_snapshots: tuple[str, str, PageMap, PageMap, Day], md_azurite: Azurite, plane: DataPlane
) -> None:
    """The reason diffs are answered by the front: Azurite returns the full ranges, no ClearRange."""
    old_sas, new_sas, _, newer, _ = two_snapshots
    for sas_url in (old_sas, new_sas):
        plane.materialise(sas_url)  # into Azurite, as before a Copy Blob (only copies need it there)
    direct = new_sas.replace(plane.blob_url, md_azurite.blob_url)  # our SAS is one Azurite accepts too
    answer = _page_list(_get(direct + "&comp=pagelist", **{"x-ms-previous-snapshot-url": old_sas}))
    assert not any(item.cleared for item in answer)
    assert [(i.start, i.end) for i in answer] == _merged([*newer.ranges(), (newer.size, newer.size + P - 1)])


def test_diff_refusals(plane: DataPlane, two_snapshots: tuple[str, str, PageMap, PageMap, Day]) -> None:
    old_sas, new_sas, _, newer, _ = two_snapshots
    # previous newer than current
    reversed_answer = _get(old_sas + "&comp=pagelist", **{"x-ms-previous-snapshot-url": new_sas})
    assert (
        reversed_answer.status_code == 400 and _error_code(reversed_answer) == "PreviousSnapshotCannotBeNewer"
    )
    # another family / a full snapshot / not a snapshot of this front / prevsnapshot on an md blob
    stranger = plane.grant(resource_id=_snapshot_id(), family_id="other", content=newer, duration_seconds=60)
    full = plane.grant(resource_id=_snapshot_id(), family_id=None, content=newer, duration_seconds=60)
    cases = [
        (stranger, "PreviousSnapshotNotFound", 409),
        (full, "PreviousSnapshotOperationNotSupported", 409),
        ("http://example.invalid/mdisks/c/abcd?sig=x", "PreviousSnapshotNotFound", 409),
    ]
    for previous, code, status in cases:
        answer = _get(new_sas + "&comp=pagelist", **{"x-ms-previous-snapshot-url": previous})
        assert (answer.status_code, _error_code(answer)) == (status, code)
    answer = _get(new_sas + "&comp=pagelist&prevsnapshot=2026-01-01T00:00:00.0000000Z")
    assert (answer.status_code, _error_code(answer)) == (409, "PreviousSnapshotNotFound")
    for query in ("&maxresults=0", "&marker=bm9wZQ"):
        answer = _get(new_sas + "&comp=pagelist" + query)
        assert answer.status_code == 400


# -- (c) a SAS stops at revoke and at expiry ---------------------------------------------------------------


def test_sas_fails_after_revoke(plane: DataPlane) -> None:
    resource = _snapshot_id()
    sas_url = plane.grant(resource_id=resource, family_id=None, content=_disk(MIB), duration_seconds=600)
    assert requests.head(sas_url, timeout=30).status_code == 200
    plane.revoke(resource)
    for response in (requests.head(sas_url, timeout=30), _get(sas_url), _get(sas_url + "&comp=pagelist")):
        assert response.status_code == 403
        assert _error_code(response) == "AuthenticationFailed"
    plane.revoke(resource)  # idempotent


def test_sas_fails_after_expiry(clocked_plane: DataPlane, clock: Clock) -> None:
    plane = clocked_plane
    sas_url = plane.grant(resource_id=_snapshot_id(), family_id=None, content=_disk(MIB), duration_seconds=60)
    assert _get(sas_url, Range="bytes=0-511").status_code == 206
    clock.offset += timedelta(seconds=61)
    response = _get(sas_url, Range="bytes=0-511")
    assert response.status_code == 403 and _error_code(response) == "AuthenticationFailed"
    assert b"Signature not valid in the specified time frame" in response.content


def test_tampered_or_missing_sas(plane: DataPlane) -> None:
    sas_url = plane.grant(
        resource_id=_snapshot_id(), family_id=None, content=_disk(MIB), duration_seconds=600
    )
    base, query = sas_url.split("?", 1)
    tampered = _get(base + "?" + query.replace("sp=r", "sp=rw"))
    assert tampered.status_code == 403 and _error_code(tampered) == "AuthenticationFailed"
    anonymous = _get(base)
    assert anonymous.status_code == 404 and _error_code(anonymous) == "ResourceNotFound"
    other_blob = _get(base.replace("/abcd", "/other") + "?" + query)
    assert other_blob.status_code == 403  # the signature names the blob


# -- (d) active grants per family -----------------------------------------------------------------------


def test_active_grants_counts_per_family(clocked_plane: DataPlane, clock: Clock) -> None:
    plane = clocked_plane
    family, other = str(uuid.uuid4()), str(uuid.uuid4())
    content = _disk(MIB)
    ids = [_snapshot_id() for _ in range(4)]
    for resource in ids[:3]:
        plane.grant(resource_id=resource, family_id=family, content=content, duration_seconds=600)
    plane.grant(resource_id=ids[3], family_id=other, content=content, duration_seconds=600)
    assert plane.active_grants(family) == 3 and plane.active_grants(other) == 1
    plane.grant(
        resource_id=ids[0], family_id=family, content=content, duration_seconds=30
    )  # re-grant: replaces
    assert plane.active_grants(family) == 3
    plane.revoke(ids[1])
    assert plane.active_grants(family) == 2
    clock.offset += timedelta(seconds=31)  # ids[0]'s new grant expires
    assert plane.active_grants(family) == 1
    plane.forget(ids[2])
    assert plane.active_grants(family) == 0 and plane.active_grants(other) == 1
    assert plane.active_grants("no-such-family") == 0


def test_grant_validates_input(plane: DataPlane) -> None:
    for duration in (0, -5, True, 1.5):
        with pytest.raises(InvalidInputError, match="duration_seconds"):
            plane.grant(resource_id="x", family_id=None, content=PageMap(MIB), duration_seconds=duration)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="resource_id"):
        plane.grant(resource_id="", family_id=None, content=PageMap(MIB), duration_seconds=5)


# -- (e) a snapshot's content never changes --------------------------------------------------------------


def test_snapshot_content_never_changes(
    plane: DataPlane, container: ContainerClient, md_azurite: Azurite
) -> None:
    disk = _disk(4 * MIB, seed=3)
    snapshot = disk.frozen()
    expected = snapshot.read(0, snapshot.size)
    sas_url = plane.grant(resource_id=_snapshot_id(), family_id=None, content=snapshot, duration_seconds=600)

    disk.write(0, b"\xee" * MIB)  # the disk moves on after the snapshot
    assert _get(sas_url).content[: snapshot.size] == expected

    first = container.get_blob_client("first")
    first.start_copy_from_url(sas_url)
    first.upload_page(b"\xaa" * MIB, offset=0, length=MIB)  # write into the copy (Azurite aliases it)
    # Azurite's own md blob has changed under the copy's write: what the front must never serve.
    direct = _get(sas_url.replace(plane.blob_url, md_azurite.blob_url), Range=f"bytes=0-{MIB - 1}")
    assert direct.content == b"\xaa" * MIB

    assert _get(sas_url).content[: snapshot.size] == expected  # reads come from the frozen map
    second = container.get_blob_client("second")
    second.start_copy_from_url(sas_url)  # re-materialised first: a clean copy
    assert second.download_blob().readall()[: snapshot.size] == expected
    assert (
        first.download_blob(offset=0, length=MIB).readall() == b"\xaa" * MIB
    )  # the first copy kept its write


def test_copy_survives_revoke_and_md_blob_deletion(plane: DataPlane, container: ContainerClient) -> None:
    content = _disk(4 * MIB, seed=8)
    resource = _snapshot_id()
    sas_url = plane.grant(resource_id=resource, family_id=None, content=content, duration_seconds=600)
    destination = container.get_blob_client("kept")
    destination.start_copy_from_url(sas_url)
    plane.revoke(resource)  # deletes the md container in Azurite
    assert requests.head(sas_url, timeout=30).status_code == 403
    assert destination.download_blob().readall()[: content.size] == content.read(0, content.size)


@pytest.mark.slow
def test_copy_survives_md_deletion_across_an_azurite_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """After the md blob is deleted, Azurite's GC (it runs at start-up) must keep the copy's extents."""
    content = _disk(4 * MIB, seed=21)
    resource = _snapshot_id()
    with Azurite(accounts=KEYS, location=tmp_path) as first:
        plane = DataPlane(first, md_account=MD, account_keys=KEYS)
        plane.start()
        try:
            sas_url = plane.grant(resource_id=resource, family_id=None, content=content, duration_seconds=600)
            service = BlobServiceClient(
                account_url=plane.blob_endpoint(DEV_ACCOUNT),
                credential={"account_name": DEV_ACCOUNT, "account_key": DEV_ACCOUNT_KEY},
            )
            service.create_container("restart")
            copy = service.get_blob_client("restart", "disk")
            copy.start_copy_from_url(sas_url)
            assert _wait_copy(copy)[-1][0] == "success"  # revoke only after the copy ended, as Azure needs
            plane.revoke(resource)
        finally:
            plane.stop()
    with Azurite(accounts=KEYS, location=tmp_path) as second:
        blob = SdkBlobClient(
            account_url=second.blob_endpoint(DEV_ACCOUNT),
            container_name="restart",
            blob_name="disk",
            credential={"account_name": DEV_ACCOUNT, "account_key": DEV_ACCOUNT_KEY},
        )
        for _ in range(3):  # read more than once: GC started with the server
            assert blob.download_blob().readall()[: content.size] == content.read(0, content.size)


# -- Put Page From URL ------------------------------------------------------------------------------------


@pytest.fixture
def target(container: ContainerClient) -> SdkBlobClient:
    """An 8 MiB page blob in the backup account, filled with 0x5A, reached through the front."""
    blob = container.get_blob_client("target")
    blob.create_page_blob(8 * MIB)
    for offset in range(0, 8 * MIB, 4 * MIB):
        blob.upload_page(b"\x5a" * (4 * MIB), offset=offset, length=4 * MIB)
    return blob


def _page_from_url(
    target: SdkBlobClient, source: str, dest: str, src: str, **extra: str
) -> requests.Response:
    headers = {
        "x-ms-copy-source": source,
        "x-ms-range": dest,
        "x-ms-source-range": src,
        "x-ms-page-write": "update",
    }
    headers.update(extra)
    return _signed("PUT", target.url + "?comp=page", headers)


def test_put_page_from_url_moves_exactly_the_bytes_asked(plane: DataPlane, target: SdkBlobClient) -> None:
    content = _disk(8 * MIB, seed=4, fraction=0.6)
    sas_url = plane.grant(resource_id=_snapshot_id(), family_id=None, content=content, duration_seconds=600)
    # the SDK, as an independent client: 4 MiB from source offset 1 MiB + 512 to target offset 2 MiB
    target.upload_pages_from_url(sas_url, offset=2 * MIB, length=4 * MIB, source_offset=MIB + P)
    after = target.download_blob().readall()
    assert after[: 2 * MIB] == b"\x5a" * (2 * MIB)
    assert after[2 * MIB : 6 * MIB] == content.read(MIB + P, 4 * MIB)
    assert after[6 * MIB :] == b"\x5a" * (2 * MIB)

    # raw, one page, with the answer's headers
    response = _page_from_url(target, sas_url, "bytes=0-511", f"bytes={7 * MIB}-{7 * MIB + 511}")
    assert response.status_code == 201, response.text
    assert response.headers["ETag"] and response.headers["x-ms-request-id"]
    assert target.download_blob(offset=0, length=P).readall() == content.read(7 * MIB, P)


def test_put_page_from_url_with_a_backup_account_source(
    target: SdkBlobClient, container: ContainerClient
) -> None:
    source = container.get_blob_client("source")
    source.create_page_blob(MIB)
    payload = random.Random(2).randbytes(MIB)
    source.upload_page(payload, offset=0, length=MIB)
    token = generate_blob_sas(
        DEV_ACCOUNT,
        container.container_name,
        "source",
        account_key=DEV_ACCOUNT_KEY,
        permission="r",
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    response = _page_from_url(
        target, f"{source.url}?{token}", f"bytes={MIB}-{2 * MIB - 1}", f"bytes=0-{MIB - 1}"
    )
    assert response.status_code == 201, response.text
    assert target.download_blob(offset=MIB, length=MIB).readall() == payload


def test_put_page_from_url_refusals(plane: DataPlane, target: SdkBlobClient) -> None:
    resource = _snapshot_id()
    sas_url = plane.grant(resource_id=resource, family_id=None, content=_disk(16 * MIB), duration_seconds=600)
    five = 5 * MIB
    cases = [
        # (target range, source range, extra headers) -> (status, code)
        ((f"bytes=0-{five - 1}", f"bytes=0-{five - 1}", {}), (400, "InvalidHeaderValue")),  # over 4 MiB
        (("bytes=1-512", "bytes=0-511", {}), (400, "InvalidHeaderValue")),  # misaligned target
        (("bytes=0-511", "bytes=100-611", {}), (400, "InvalidHeaderValue")),  # misaligned source
        (("bytes=0-1023", "bytes=0-511", {}), (400, "InvalidHeaderValue")),  # lengths differ
        (("bytes=0-511", "bytes=0-511", {"x-ms-page-write": "clear"}), (400, "InvalidHeaderValue")),
        (("bytes=0-511", "bytes=0-511", {"If-Match": '"0x1"'}), (412, "ConditionNotMet")),  # Azurite's check
        ((f"bytes={8 * MIB}-{8 * MIB + 511}", "bytes=0-511", {}), (416, None)),  # past the target's end
    ]
    before = target.download_blob().readall()
    for (dest, src, extra), (status, code) in cases:
        response = _page_from_url(target, sas_url, dest, src, **extra)
        assert response.status_code == status, (dest, src, extra, response.text)
        if code:
            assert _error_code(response) == code, (dest, src, extra)
    missing = _signed(
        "PUT", target.url + "?comp=page", {"x-ms-copy-source": sas_url, "x-ms-range": "bytes=0-511"}
    )
    assert (missing.status_code, _error_code(missing)) == (400, "MissingRequiredHeader")

    # bad authentication of the caller
    headers = {"x-ms-copy-source": sas_url, "x-ms-range": "bytes=0-511", "x-ms-source-range": "bytes=0-511",
               "x-ms-page-write": "update", "x-ms-version": "2021-08-06", "Content-Length": "0"}  # fmt: skip
    SharedKeyAuthorizer(DEV_ACCOUNT, new_account_key(), service=StorageService.BLOB)(
        "PUT", target.url + "?comp=page", headers
    )
    forged = requests.put(target.url + "?comp=page", headers=headers, timeout=30)
    assert (forged.status_code, _error_code(forged)) == (403, "AuthenticationFailed")
    headers.pop("Authorization")
    anonymous = requests.put(target.url + "?comp=page", headers=headers, timeout=30)
    assert anonymous.status_code == 404
    read_only = generate_blob_sas(
        DEV_ACCOUNT, target.container_name, target.blob_name, account_key=DEV_ACCOUNT_KEY, permission="r",
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )  # fmt: skip
    by_sas = requests.put(f"{target.url}?comp=page&{read_only}", headers=headers, timeout=30)
    assert (by_sas.status_code, _error_code(by_sas)) == (403, "AuthorizationPermissionMismatch")
    writable = read_only.replace("sp=r", "sp=w")  # signature no longer matches
    assert requests.put(f"{target.url}?comp=page&{writable}", headers=headers, timeout=30).status_code == 403

    # a source whose grant was revoked
    plane.revoke(resource)
    response = _page_from_url(target, sas_url, "bytes=0-511", "bytes=0-511")
    assert (response.status_code, _error_code(response)) == (403, "CannotVerifyCopySource")
    assert target.download_blob().readall() == before  # nothing above wrote a byte


def test_put_page_from_url_with_a_writable_sas(plane: DataPlane, target: SdkBlobClient) -> None:
    content = _disk(MIB, seed=6, fraction=1.0)
    sas_url = plane.grant(resource_id=_snapshot_id(), family_id=None, content=content, duration_seconds=600)
    token = generate_blob_sas(
        DEV_ACCOUNT, target.container_name, target.blob_name, account_key=DEV_ACCOUNT_KEY, permission="w",
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )  # fmt: skip
    headers = {"x-ms-copy-source": sas_url, "x-ms-range": "bytes=512-1023",
               "x-ms-source-range": "bytes=0-511", "x-ms-page-write": "update",
               "x-ms-version": "2021-08-06", "Content-Length": "0"}  # fmt: skip
    response = requests.put(f"{target.url}?comp=page&{token}", headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    assert target.download_blob(offset=P, length=P).readall() == content.read(0, P)


# -- copy pacing and faults ------------------------------------------------------------------------------


def test_paced_copy_shows_pending_and_progress_then_success(
    plane: DataPlane, container: ContainerClient
) -> None:
    plane.copy_pending_polls = 3
    content = _disk(4 * MIB)
    sas_url = plane.grant(resource_id=_snapshot_id(), family_id=None, content=content, duration_seconds=600)
    destination = container.get_blob_client("paced")
    assert destination.start_copy_from_url(sas_url)["copy_status"] == "pending"
    total = content.size + vhd.FOOTER_SIZE
    seen = _wait_copy(destination)
    assert [status for status, _ in seen] == ["pending", "pending", "pending", "success"]
    copied = [int(progress.split("/")[0]) for _, progress in seen]
    assert copied == sorted(copied) and copied[0] > 0 and copied[-1] == total
    assert all(progress.endswith(f"/{total}") for _, progress in seen)
    head = requests.head(destination.url, headers=_sign_head(destination.url), timeout=30)
    assert head.headers["x-ms-copy-status"] == "success" and "x-ms-copy-completion-time" in head.headers


def _sign_head(url: str) -> dict[str, str]:
    headers = {"x-ms-version": "2021-08-06"}
    SIGNER("HEAD", url, headers)
    return headers


def test_pending_copy_headers_are_azures(plane: DataPlane, container: ContainerClient) -> None:
    plane.copy_pending_polls = 1
    sas_url = plane.grant(
        resource_id=_snapshot_id(), family_id=None, content=_disk(MIB), duration_seconds=600
    )
    destination = container.get_blob_client("headers")
    copy_id = destination.start_copy_from_url(sas_url)["copy_id"]
    head = requests.head(destination.url, headers=_sign_head(destination.url), timeout=30)
    assert head.headers["x-ms-copy-status"] == "pending"
    assert head.headers["x-ms-copy-id"] == copy_id
    assert "x-ms-copy-completion-time" not in head.headers  # Azure shows it only once the copy ended
    assert "x-ms-copy-status-description" not in head.headers
    assert urlsplit(head.headers["x-ms-copy-source"]).path == urlsplit(sas_url).path


def test_fail_next_copy(plane: DataPlane, container: ContainerClient) -> None:
    plane.copy_pending_polls = 2
    resource = _snapshot_id()
    sas_url = plane.grant(resource_id=resource, family_id=None, content=_disk(MIB), duration_seconds=600)
    plane.fail_next_copy(resource, '500 InternalError "Copy failed."')
    failing = container.get_blob_client("failing")
    failing.start_copy_from_url(sas_url)
    seen = _wait_copy(failing)
    assert [status for status, _ in seen] == ["pending", "pending", "failed"]
    properties = failing.get_blob_properties()
    assert properties.copy.status == "failed"
    assert properties.copy.status_description == '500 InternalError "Copy failed."'
    assert properties.copy.completion_time is not None
    assert properties.size == 0  # Azure leaves a failed copy's destination empty
    # only the next copy fails
    again = container.get_blob_client("again")
    again.start_copy_from_url(sas_url)
    assert _wait_copy(again)[-1][0] == "success"
    with pytest.raises(InvalidInputError):
        plane.fail_next_copy(resource, "  ")


def test_source_disappears(plane: DataPlane, container: ContainerClient) -> None:
    plane.copy_pending_polls = 3
    resource = _snapshot_id()
    sas_url = plane.grant(resource_id=resource, family_id=None, content=_disk(MIB), duration_seconds=600)
    pending = container.get_blob_client("pending")
    pending.start_copy_from_url(sas_url)
    assert pending.get_blob_properties().copy.status == "pending"
    plane.make_source_disappear(resource)
    assert _wait_copy(pending)[-1][0] == "failed"
    properties = pending.get_blob_properties()
    assert "BlobNotFound" in (properties.copy.status_description or "") and properties.size == 0
    response = _get(sas_url)
    assert (response.status_code, _error_code(response)) == (404, "BlobNotFound")
    with pytest.raises(HttpResponseError) as caught:
        container.get_blob_client("late").start_copy_from_url(sas_url)
    assert (caught.value.status_code, caught.value.error_code) == (404, "CannotVerifyCopySource")


def test_revoke_during_a_pending_copy_fails_it(plane: DataPlane, container: ContainerClient) -> None:
    plane.copy_pending_polls = 3
    resource = _snapshot_id()
    sas_url = plane.grant(resource_id=resource, family_id=None, content=_disk(MIB), duration_seconds=600)
    destination = container.get_blob_client("revoked")
    destination.start_copy_from_url(sas_url)
    plane.revoke(resource)
    properties = destination.get_blob_properties()
    assert properties.copy.status == "failed" and "revoked" in (properties.copy.status_description or "")
    assert properties.size == 0


def test_abort_a_pending_copy(plane: DataPlane, container: ContainerClient) -> None:
    plane.copy_pending_polls = 5
    sas_url = plane.grant(
        resource_id=_snapshot_id(), family_id=None, content=_disk(MIB), duration_seconds=600
    )
    destination = container.get_blob_client("aborted")
    copy_id = destination.start_copy_from_url(sas_url)["copy_id"]
    wrong = _signed(
        "PUT", destination.url + f"?comp=copy&copyid={uuid.uuid4()}", {"x-ms-copy-action": "abort"}
    )
    assert (wrong.status_code, _error_code(wrong)) == (409, "CopyIdMismatch")
    destination.abort_copy(copy_id)
    properties = destination.get_blob_properties()
    assert properties.copy.status == "aborted" and properties.size == 0  # zero length, as documented
    # nothing pending any more: Azurite's own answer
    again = _signed("PUT", destination.url + f"?comp=copy&copyid={copy_id}", {"x-ms-copy-action": "abort"})
    assert (again.status_code, _error_code(again)) == (409, "NoPendingCopyOperation")


# -- Import: read_blob ----------------------------------------------------------------------------------


def test_read_blob_of_a_copied_vhd(plane: DataPlane, container: ContainerClient) -> None:
    content = _disk(4 * MIB, seed=12)
    sas_url = plane.grant(resource_id=_snapshot_id(), family_id=None, content=content, duration_seconds=600)
    copy = container.get_blob_client("restore-me.vhd")
    copy.start_copy_from_url(sas_url)
    imported = plane.read_blob(copy.url)
    assert imported.size == content.size
    assert imported.sha256() == content.sha256() and imported.ranges() == content.ranges()
    assert not imported.read_only  # a disk made from it is writable
    # through a SAS URL too, and a blob snapshot of it
    snapshot = copy.create_snapshot()["snapshot"]
    assert plane.read_blob(f"{copy.url}?snapshot={snapshot}").sha256() == content.sha256()


def test_read_blob_refuses_what_is_not_a_fixed_vhd(plane: DataPlane, container: ContainerClient) -> None:
    raw = container.get_blob_client("raw")
    raw.create_page_blob(2 * MIB + P)
    raw.upload_page(b"\x01" * P, offset=0, length=P)
    with pytest.raises(InvalidInputError, match="conectix"):
        plane.read_blob(raw.url)
    odd = container.get_blob_client("odd")
    odd.create_page_blob(MIB + 2 * P)
    with pytest.raises(InvalidInputError, match="multiple of MiB"):
        plane.read_blob(odd.url)
    block = container.get_blob_client("block")
    block.upload_blob(b"hello")
    with pytest.raises(InvalidInputError, match="not a page blob"):
        plane.read_blob(block.url)
    with pytest.raises(NotFoundError):
        plane.read_blob(container.get_blob_client("absent").url)
    with pytest.raises(InvalidInputError, match="sourceUri"):
        plane.read_blob("ftp://nowhere/x")


# -- the front forwards everything else unchanged ------------------------------------------------------


def test_front_forwards_other_requests_unchanged(plane: DataPlane, container: ContainerClient) -> None:
    blob = container.get_blob_client("plain.txt")
    blob.upload_blob(b"plain bytes", metadata={"k": "v"})
    assert blob.download_blob().readall() == b"plain bytes"
    assert blob.get_blob_properties().metadata == {"k": "v"}
    assert [b.name for b in container.list_blobs()] == ["plain.txt"]
    page = container.get_blob_client("p")
    page.create_page_blob(MIB)
    page.upload_page(b"\x07" * P, offset=P, length=P)
    assert [(r["start"], r["end"]) for r in page.get_page_ranges()[0]] == [(P, 2 * P - 1)]
    with pytest.raises(HttpResponseError) as caught:
        container.get_blob_client("missing").get_blob_properties()
    assert caught.value.status_code == 404
    blob.delete_blob()


def test_copy_between_backup_blobs_is_not_paced(plane: DataPlane, container: ContainerClient) -> None:
    plane.copy_pending_polls = 3
    source = container.get_blob_client("src")
    source.upload_blob(b"x" * 1000)
    destination = container.get_blob_client("dst")
    assert destination.start_copy_from_url(source.url)["copy_status"] == "success"
    assert destination.get_blob_properties().copy.status == "success"


# -- secrets ----------------------------------------------------------------------------------------------


def test_no_sas_signature_or_md_key_in_logs(
    plane: DataPlane, container: ContainerClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    resource = _snapshot_id()
    sas_url = plane.grant(resource_id=resource, family_id="f", content=_disk(MIB), duration_seconds=600)
    signature = sas.sas_fields(urlsplit(sas_url).query)["sig"]
    destination = container.get_blob_client("logged")
    destination.start_copy_from_url(sas_url)
    _get(sas_url + "&comp=pagelist", **{"x-ms-previous-snapshot-url": sas_url})
    plane.revoke(resource)
    _page_from_url(destination, sas_url, "bytes=0-511", "bytes=0-511")  # refused: revoked source
    with pytest.raises(InvalidInputError):
        plane.read_blob(sas_url)
    assert caplog.records  # the data plane did log
    for secret in (signature, quote(signature, safe=""), MD_KEY):
        assert secret not in caplog.text


def test_front_forwards_a_chunked_body_as_azurite_would_see_it(
    plane: DataPlane, container: ContainerClient, md_azurite: Azurite
) -> None:
    """A chunked upload reaches Azurite chunked: the answers through the front and direct are the same."""

    def body() -> Iterator[bytes]:
        yield b"first part, "
        yield b"second part"

    answers = []
    for base in (plane.blob_url, md_azurite.blob_url):
        url = f"{base}/{DEV_ACCOUNT}/{container.container_name}/chunked.bin"
        headers = {"x-ms-version": "2021-08-06", "x-ms-blob-type": "BlockBlob"}
        SIGNER("PUT", url, headers)  # no Content-Length: the signature covers an empty one, as sent
        response = requests.put(url, headers=headers, data=body(), timeout=30)
        answers.append((response.status_code, response.headers.get("x-ms-error-code"), response.content))
    assert answers[0] == answers[1]
    assert answers[0][0] == 400  # Azurite, like Azure, wants a Content-Length on Put Blob


def test_prevsnapshot_diff_on_a_backup_blob_is_right(
    plane: DataPlane, container: ContainerClient, md_azurite: Azurite
) -> None:
    """Azurite answers ``prevsnapshot`` with the full ranges; through the front the answer is the change."""
    blob = container.get_blob_client("base.vhd")
    blob.create_page_blob(4 * MIB)
    blob.upload_page(b"\x01" * MIB, offset=0, length=MIB)
    blob.upload_page(b"\x02" * MIB, offset=2 * MIB, length=MIB)
    first = blob.create_snapshot()["snapshot"]
    blob.upload_page(b"\x03" * P, offset=P, length=P)  # changed
    blob.clear_page(offset=2 * MIB, length=MIB // 2)  # cleared
    # Rewritten with the same bytes: the emulator compares content and leaves it out (Azure, which
    # tracks writes, may list it too; a backup applying either answer ends with the same bytes).
    blob.upload_page(b"\x01" * P, offset=4 * P, length=P)
    second = blob.create_snapshot()["snapshot"]
    blob.upload_page(b"\x04" * P, offset=3 * MIB, length=P)  # after the second snapshot

    client = BlobClient()
    base = BlobAddress.in_account(
        plane.blob_endpoint(DEV_ACCOUNT), container.container_name, "base.vhd", SIGNER
    )
    between = client.get_page_ranges(base.at_snapshot(second), previous_snapshot=first, page_size=1)
    assert [(r.start, r.end) for r in between.page_ranges] == [(P, 2 * P - 1)]
    assert [(r.start, r.end) for r in between.clear_ranges] == [(2 * MIB, 2 * MIB + MIB // 2 - 1)]
    since = client.get_page_ranges(base, previous_snapshot=first)
    assert [(r.start, r.end) for r in since.page_ranges] == [(P, 2 * P - 1), (3 * MIB, 3 * MIB + P - 1)]

    direct = BlobAddress.in_account(
        md_azurite.blob_endpoint(DEV_ACCOUNT), container.container_name, "base.vhd", SIGNER
    )
    wrong = client.get_page_ranges(direct.at_snapshot(second), previous_snapshot=first)
    assert not wrong.clear_ranges and len(wrong.page_ranges) > 1  # Azurite's full listing

    stranger = SharedKeyAuthorizer(DEV_ACCOUNT, new_account_key(), service=StorageService.BLOB)
    with pytest.raises(AuthenticationError):
        client.get_page_ranges(
            BlobAddress.in_account(
                plane.blob_endpoint(DEV_ACCOUNT), container.container_name, "base.vhd", stranger
            ),
            previous_snapshot=first,
        )
    with pytest.raises(ConflictError):
        client.get_page_ranges(base, previous_snapshot="2020-01-01T00:00:00.0000000Z")
