"""The catalog (backup/catalog.py) against a real Azurite table.

Runs and restore points are written as the orchestrators write them and read back newest first; writing
the same thing twice leaves one row; disk resource IDs (full of ``/``) make valid keys; and rows edited
by hand come back as problems naming the row and the field, next to the rows that are fine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

from backup.app import http_routes
from backup.azure.odata import eq
from backup.azure.storage_auth import SharedKeyAuthorizer, StorageService
from backup.azure.table import EntityValue, TableClient, UpsertMode
from backup.catalog import RUN_PARTITION, Catalog, RestorePoint, RunRecord, disk_partition, inverted_time
from backup.errors import InvalidInputError, NotFoundError
from backup.workflow.models import RestorePointRecord, RunSummary, iso
from testbed.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY, Azurite

SIGNER = SharedKeyAuthorizer(DEV_ACCOUNT, DEV_ACCOUNT_KEY, service=StorageService.TABLE)
BLOB_ENDPOINT = "https://backupacct.blob.core.windows.net"
SUB = "00000000-0000-0000-0000-0000000000aa"
T0 = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


def disk_id(name: str, group: str = "rg-prod") -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Compute/disks/{name}"


DISK_A = disk_id("web-os")
DISK_B = disk_id("web-data")


def record_run(catalog: Catalog, data: Any) -> RunRecord:
    """Record a run as the ``record_run`` activity does: its JSON read back as the typed summary."""
    return catalog.record_run(RunSummary.from_json(data))


def record_point(catalog: Catalog, data: Any) -> RestorePoint:
    """Record a restore point as the ``record_restore_point`` activity does."""
    return catalog.record_restore_point(RestorePointRecord.from_json(data))


def run_summary(run_id: str, started: datetime, status: str = "Succeeded", **extra: Any) -> dict[str, Any]:
    """What the run orchestrator hands ``record_run``."""
    summary: dict[str, Any] = {
        "runId": run_id,
        "trigger": "schedule",
        "selection": {"kind": "tag", "name": "backup", "value": "nightly"},
        "startedAt": iso(started),
        "status": status,
        "diskCount": 2,
    }
    if status != "Running":
        summary.update(finishedAt=iso(started + timedelta(minutes=30)), succeeded=2, failed=0)
    summary.update(extra)
    return summary


def point_input(
    disk: str, run_id: str, started: datetime, status: str = "Succeeded", **extra: Any
) -> dict[str, Any]:
    """What the disk orchestrator hands ``record_restore_point``."""
    data: dict[str, Any] = {
        "runId": run_id,
        "runStartedAt": iso(started),
        "diskId": disk,
        "snapshotId": disk.replace("/disks/", "/snapshots/") + f"-{run_id}",
        "container": "disk-backups",
        "blobName": f"{SUB}/rg-prod/{disk.rsplit('/', 1)[1]}/{run_id}.vhd",
        "sizeBytes": 8 << 20,
        "bytesCopied": 8 << 20,
        "kind": "full",
        "startedAt": iso(started + timedelta(seconds=5)),
        "finishedAt": iso(started + timedelta(minutes=3)),
        "status": status,
        "copyId": f"copy-{run_id}",
    }
    if status == "Failed":
        data.update(reason="copy: the source could not be read", code="CopyFailed")
    data.update(extra)
    return data


@pytest.fixture
def table(azurite: Azurite, unique_name: str) -> Iterator[TableClient]:
    client = TableClient(azurite.table_endpoint(), unique_name, SIGNER)
    yield client
    with contextlib.suppress(NotFoundError):
        client.delete_table()


@pytest.fixture
def catalog(table: TableClient) -> Catalog:
    return Catalog(table, blob_endpoint=BLOB_ENDPOINT + "/")


def rows(table: TableClient, partition: str) -> list[Any]:
    return list(table.query(eq("PartitionKey", partition)))


# -- runs ----------------------------------------------------------------------------------------------


def test_nothing_recorded_yet_lists_nothing(catalog: Catalog) -> None:
    # The table does not exist until the first write.
    assert catalog.list_runs().items == [] and catalog.list_runs().problems == []
    assert catalog.list_restore_points(DISK_A, include_failed=True).items == []


def test_a_run_is_recorded_at_start_and_replaced_at_its_end(catalog: Catalog, table: TableClient) -> None:
    record_run(catalog, run_summary("nightly-1", T0, "Running"))
    [running] = catalog.list_runs().items
    assert (running.status, running.finished_at, running.succeeded) == ("Running", None, 0)

    ended = run_summary(
        "nightly-1", T0, "PartiallySucceeded", succeeded=1, failed=1, reason="x", code="Throttled"
    )
    record_run(catalog, ended)
    record_run(catalog, ended)
    listing = catalog.list_runs()
    assert listing.problems == []
    [run] = listing.items
    assert len(rows(table, RUN_PARTITION)) == 1
    assert run.to_json() == {
        "runId": "nightly-1",
        "trigger": "schedule",
        "status": "PartiallySucceeded",
        "startedAt": "2026-11-26T01:00:00.000Z",
        "finishedAt": "2026-11-26T01:30:00.000Z",
        "diskCount": 2,
        "succeeded": 1,
        "failed": 1,
        "code": "Throttled",
        "reason": "x",
        "selection": {"kind": "tag", "name": "backup", "value": "nightly"},
    }


def test_runs_newest_first_and_top(catalog: Catalog) -> None:
    starts = {f"run-{i}": T0 + timedelta(days=i, milliseconds=i) for i in (3, 0, 4, 1, 2)}
    for run_id, started in starts.items():
        record_run(catalog, run_summary(run_id, started))
    assert [r.run_id for r in catalog.list_runs().items] == ["run-4", "run-3", "run-2", "run-1", "run-0"]
    assert [r.run_id for r in catalog.list_runs(top=2).items] == ["run-4", "run-3"]


def test_runs_a_millisecond_apart_keep_their_order(catalog: Catalog) -> None:
    record_run(catalog, run_summary("b-earlier", T0))
    record_run(catalog, run_summary("a-later", T0 + timedelta(milliseconds=1)))
    assert [r.run_id for r in catalog.list_runs().items] == ["a-later", "b-earlier"]


# -- restore points ----------------------------------------------------------------------------------------


def test_a_restore_point_keeps_everything_a_restore_needs(catalog: Catalog) -> None:
    recorded = record_point(catalog, point_input(DISK_A, "nightly-1", T0))
    assert recorded.blob_url == f"{BLOB_ENDPOINT}/disk-backups/{SUB}/rg-prod/web-os/nightly-1.vhd"

    [point] = catalog.list_restore_points(DISK_A).items
    assert point == recorded
    assert point.to_json() == {
        "diskId": DISK_A,
        "runId": "nightly-1",
        "status": "Succeeded",
        "kind": "full",
        "blobUrl": recorded.blob_url,
        "snapshotId": DISK_A.replace("/disks/", "/snapshots/") + "-nightly-1",
        "sizeBytes": 8 << 20,
        "bytesCopied": 8 << 20,
        "startedAt": "2026-11-26T01:00:05.000Z",
        "finishedAt": "2026-11-26T01:03:00.000Z",
        "code": None,
        "reason": None,
        "copyId": "copy-nightly-1",
        "blobSnapshot": None,
        "bytesMoved": 8 << 20,
        "bytesChanged": None,
        "ranges": None,
        "requests": None,
        "fullCopyReason": None,
        "baseSnapshotId": None,
        "expiredAt": None,
        "expiredReason": None,
        "pruneHeld": None,
        "verdict": None,
        "verifiedAt": None,
        "verifyRestoreId": None,
        "verdictReason": None,
    }


CHAIN_BLOB = f"{SUB}/rg-prod/web-os/chain.vhd"


def test_a_chain_restore_point_is_a_blob_snapshot_with_its_figures(catalog: Catalog) -> None:
    record_point(
        catalog,
        point_input(
            DISK_A,
            "nightly-1",
            T0,
            blobName=CHAIN_BLOB,
            blobSnapshot="2026-11-26T01:03:00.1234567Z",
            bytesCopied=8 << 20,
            bytesMoved=8 << 20,
            bytesChanged=8 << 20,
            ranges=12,
            requests=1,
            fullCopyReason="no earlier restore point of this disk",
        ),
    )
    second = point_input(
        DISK_A,
        "nightly-2",
        T0 + timedelta(days=1),
        blobName=CHAIN_BLOB,
        kind="incremental",
        blobSnapshot="2026-11-27T01:02:00.7654321Z",
        bytesCopied=180 << 10,
        bytesMoved=180 << 10,
        bytesChanged=176 << 10,
        ranges=9,
        requests=7,
        baseSnapshotId=DISK_A.replace("/disks/", "/snapshots/") + "-nightly-1",
    )
    record_point(catalog, second)
    newest, older = catalog.list_restore_points(DISK_A).items
    assert newest.blob_url == older.blob_url == f"{BLOB_ENDPOINT}/disk-backups/{CHAIN_BLOB}"
    view = newest.to_json()
    assert {
        k: view[k] for k in ("kind", "blobSnapshot", "bytesMoved", "bytesChanged", "ranges", "requests")
    } == {
        "kind": "incremental",
        "blobSnapshot": "2026-11-27T01:02:00.7654321Z",
        "bytesMoved": 180 << 10,
        "bytesChanged": 176 << 10,
        "ranges": 9,
        "requests": 7,
    }
    assert view["baseSnapshotId"] == second["baseSnapshotId"] and view["fullCopyReason"] is None
    assert older.kind == "full" and older.full_copy_reason == "no earlier restore point of this disk"
    assert catalog.last_good_point(DISK_A) == (newest, None)


def test_a_restore_point_recorded_before_the_chain_reads_back(catalog: Catalog, table: TableClient) -> None:
    # Exactly the properties the pre-chain code wrote: a whole blob per run, no BlobSnapshot, no figures.
    started = T0 - timedelta(days=30)
    old = {
        "DiskId": DISK_A,
        "RunId": "nightly-old",
        "RunStartedAt": started,
        "BlobUrl": f"{BLOB_ENDPOINT}/disk-backups/{SUB}/rg-prod/web-os/20261027T010000Z-nightly-old.vhd",
        "SizeBytes": 8 << 20,
        "BytesCopied": (8 << 20) + 512,
        "Kind": "full",
        "StartedAt": started,
        "FinishedAt": started + timedelta(minutes=3),
        "Status": "Succeeded",
        "SnapshotId": DISK_A.replace("/disks/", "/snapshots/") + "-old",
        "CopyId": "copy-old",
    }
    table.create_if_missing()
    table.upsert(
        disk_partition(DISK_A), f"{inverted_time(started)}_nightly-old", old, mode=UpsertMode.REPLACE
    )
    listing = catalog.list_restore_points(DISK_A)
    assert listing.problems == []
    [point] = listing.items
    assert (point.blob_snapshot, point.kind, point.bytes_moved) == (None, "full", (8 << 20) + 512)
    assert point.blob_url == old["BlobUrl"]
    assert catalog.last_good_point(DISK_A) == (point, None)


def test_last_good_point_is_the_newest_succeeded_row_or_a_problem(
    catalog: Catalog, table: TableClient
) -> None:
    assert catalog.last_good_point(DISK_A) == (None, None)
    record_point(catalog, point_input(DISK_A, "run-0", T0))
    record_point(catalog, point_input(DISK_A, "run-1", T0 + timedelta(days=1), status="Failed"))
    point, problem = catalog.last_good_point(DISK_A)
    assert problem is None and point is not None and point.run_id == "run-0"  # a failure is no base
    record_point(catalog, point_input(DISK_A, "run-2", T0 + timedelta(days=2)))
    _tamper(table, disk_partition(DISK_A), f"{inverted_time(T0 + timedelta(days=2))}_run-2", SizeBytes="x")
    point, problem = catalog.last_good_point(DISK_A)
    assert point is None and problem is not None and "SizeBytes" in problem  # never an older one instead


def test_restore_points_per_disk_newest_first(catalog: Catalog) -> None:
    for day in (2, 0, 3, 1):
        started = T0 + timedelta(days=day)
        record_point(catalog, point_input(DISK_A, f"run-{day}", started))
        if day != 3:
            record_point(catalog, point_input(DISK_B, f"run-{day}", started))
    newest_first = ["run-3", "run-2", "run-1", "run-0"]
    assert [p.run_id for p in catalog.list_restore_points(DISK_A).items] == newest_first
    assert [p.run_id for p in catalog.list_restore_points(DISK_B).items] == newest_first[1:]
    assert {p.disk_id for p in catalog.list_restore_points(DISK_B).items} == {DISK_B}
    assert [p.run_id for p in catalog.list_restore_points(DISK_A, top=2).items] == ["run-3", "run-2"]


def test_failed_attempts_only_when_asked(catalog: Catalog) -> None:
    record_point(catalog, point_input(DISK_A, "run-0", T0))
    record_point(catalog, point_input(DISK_A, "run-1", T0 + timedelta(days=1), "Failed"))
    record_point(catalog, point_input(DISK_A, "run-2", T0 + timedelta(days=2)))

    assert [p.run_id for p in catalog.list_restore_points(DISK_A).items] == ["run-2", "run-0"]
    everything = catalog.list_restore_points(DISK_A, include_failed=True).items
    assert [(p.run_id, p.status) for p in everything] == [
        ("run-2", "Succeeded"),
        ("run-1", "Failed"),
        ("run-0", "Succeeded"),
    ]
    assert (everything[1].code, everything[1].reason) == ("CopyFailed", "copy: the source could not be read")
    # top counts what is listed: the newest two succeeded, not the newest two rows.
    assert [p.run_id for p in catalog.list_restore_points(DISK_A, top=2).items] == ["run-2", "run-0"]


def test_recording_twice_leaves_one_row(catalog: Catalog, table: TableClient) -> None:
    data = point_input(DISK_A, "run-1", T0)
    record_point(catalog, data)
    record_point(catalog, data)
    assert len(rows(table, disk_partition(DISK_A))) == 1
    assert len(catalog.list_restore_points(DISK_A, include_failed=True).items) == 1


def test_a_later_write_of_the_same_run_replaces_the_whole_row(catalog: Catalog, table: TableClient) -> None:
    # A failed attempt, then (the activity retried) the same run's success: no stale Reason survives.
    record_point(catalog, point_input(DISK_A, "run-1", T0, "Failed"))
    record_point(catalog, point_input(DISK_A, "run-1", T0))
    [row] = rows(table, disk_partition(DISK_A))
    assert row.properties["Status"] == "Succeeded" and "Reason" not in row.properties
    [point] = catalog.list_restore_points(DISK_A, include_failed=True).items
    assert (point.status, point.reason) == ("Succeeded", None)


def test_disk_ids_make_valid_keys_and_are_case_insensitive(catalog: Catalog, table: TableClient) -> None:
    odd = disk_id("Data_Disk-1", group="rg.(prod)_é")
    prefix = disk_id("Data_Disk")  # a disk whose ID is a prefix of another's shares nothing with it
    record_point(catalog, point_input(odd, "run-1", T0))
    record_point(catalog, point_input(prefix, "run-1", T0))

    partition = disk_partition(odd)
    assert "/" not in partition and partition == disk_partition(odd.upper())
    assert Catalog.disk_id_of_partition(partition) == odd.lower()
    [row] = rows(table, partition)
    assert row.properties["DiskId"] == odd  # the ID as given, for people
    assert [p.disk_id for p in catalog.list_restore_points(odd.upper()).items] == [odd]
    assert [p.disk_id for p in catalog.list_restore_points(prefix).items] == [prefix]


def test_blob_urls_never_carry_a_query(catalog: Catalog) -> None:
    point = record_point(catalog, point_input(DISK_A, "run-1", T0, blobName="odd?sig=abc&x=1.vhd"))
    assert "?" not in point.blob_url and "sig=abc" not in point.blob_url
    assert point.blob_url.endswith("/disk-backups/odd%3Fsig%3Dabc%26x%3D1.vhd")


def test_secrets_in_a_failure_reason_are_redacted(catalog: Catalog, table: TableClient) -> None:
    reason = "copy: https://md.blob/x?sv=2024&sig=SECRETSIG&se=1 refused"
    record_point(catalog, point_input(DISK_A, "run-1", T0, "Failed", reason=reason))
    record_run(catalog, run_summary("run-1", T0, "Failed", reason=reason))
    stored = json.dumps([r.properties for r in rows(table, disk_partition(DISK_A))], default=str)
    stored += json.dumps([r.properties for r in rows(table, RUN_PARTITION)], default=str)
    assert "SECRETSIG" not in stored and "copy: https://md.blob/x?" in stored


# -- validation of what is written -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "Maybe"}, "restore point.status"),
        ({"diskId": ""}, "restore point.diskId"),
        ({"runId": None}, "restore point.runId"),
        ({"runStartedAt": "yesterday"}, "restore point.runStartedAt"),
        ({"startedAt": "2026-11-26T01:00:00"}, "restore point.startedAt"),  # no time zone
        ({"finishedAt": 17}, "restore point.finishedAt"),
        ({"sizeBytes": -1}, "restore point.sizeBytes"),
        ({"bytesCopied": True}, "restore point.bytesCopied"),
        ({"sizeBytes": "8388608"}, "restore point.sizeBytes"),
        ({"kind": 3}, "restore point.kind"),
        ({"kind": "weekly"}, "restore point.kind"),
        ({"bytesMoved": -1}, "restore point.bytesMoved"),
        ({"blobSnapshot": 7}, "restore point.blobSnapshot"),
        ({"container": ""}, "restore point.container"),
        ({"snapshotId": 5}, "restore point.snapshotId"),
        ({"copyId": ["a"]}, "restore point.copyId"),
    ],
)
def test_bad_restore_point_input_names_the_field(
    catalog: Catalog, table: TableClient, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        record_point(catalog, point_input(DISK_A, "run-1", T0, **change))
    assert caught.value.field == field
    assert catalog.list_restore_points(DISK_A, include_failed=True).items == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "Done"}, "run.status"),
        ({"runId": ""}, "run.runId"),
        ({"startedAt": None}, "run.startedAt"),
        ({"finishedAt": "tomorrow"}, "run.finishedAt"),
        ({"diskCount": -2}, "run.diskCount"),
    ],
)
def test_bad_run_input_names_the_field(catalog: Catalog, change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        record_run(catalog, run_summary("run-1", T0, **change))
    assert caught.value.field == field


def test_input_that_is_not_an_object_is_refused(catalog: Catalog) -> None:
    with pytest.raises(InvalidInputError):
        record_point(catalog, ["not", "an", "object"])
    with pytest.raises(InvalidInputError):
        record_run(catalog, "run-1")


# -- rows edited by hand -----------------------------------------------------------------------------------


def _tamper(table: TableClient, partition: str, row_key: str, **changes: EntityValue | None) -> str:
    """Rewrite one row with some properties changed (``None`` removes one); returns its label."""
    entity = table.get(partition, row_key)
    properties = {k: v for k, v in entity.properties.items() if k not in changes}
    properties.update({k: v for k, v in changes.items() if v is not None})
    table.upsert(partition, row_key, properties, mode=UpsertMode.REPLACE)
    return f"catalog row {partition}/{row_key}"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"SizeBytes": "eight megabytes"}, "SizeBytes"),
        ({"BytesCopied": -5}, "BytesCopied"),
        ({"FinishedAt": None}, "FinishedAt"),
        ({"StartedAt": "2026-11-26T01:00:05Z"}, "StartedAt"),  # text, not an Edm.DateTime
        ({"Status": "Sort of"}, "Status"),
        ({"Kind": None}, "Kind"),
        ({"BlobUrl": f"{BLOB_ENDPOINT}/disk-backups/x.vhd?sv=2024&sig=LEAKEDSIG"}, "BlobUrl"),
        ({"DiskId": DISK_B}, "keys do not match"),
        ({"RunId": "run-other"}, "keys do not match"),
        ({"RunStartedAt": T0 + timedelta(hours=1)}, "keys do not match"),
        ({"SnapshotId": 12}, "SnapshotId"),
        ({"CopyId": True}, "CopyId"),
        ({"Kind": "weekly"}, "Kind"),
        ({"BlobSnapshot": "yesterday"}, "BlobSnapshot"),
        ({"BytesMoved": "lots"}, "BytesMoved"),
    ],
)
def test_a_tampered_restore_point_is_reported_not_used(
    catalog: Catalog, table: TableClient, changes: dict[str, EntityValue | None], field: str
) -> None:
    for day in range(3):
        record_point(catalog, point_input(DISK_A, f"run-{day}", T0 + timedelta(days=day)))
    partition = disk_partition(DISK_A)
    label = _tamper(table, partition, f"{inverted_time(T0 + timedelta(days=1))}_run-1", **changes)

    listing = catalog.list_restore_points(DISK_A, include_failed=True)
    assert [p.run_id for p in listing.items] == ["run-2", "run-0"]
    [problem] = listing.problems
    assert problem.startswith(label) and field in problem
    assert "LEAKEDSIG" not in problem


def test_tampered_run_rows_are_reported_not_used(catalog: Catalog, table: TableClient) -> None:
    for day in range(4):
        record_run(catalog, run_summary(f"run-{day}", T0 + timedelta(days=day)))
    key = {day: f"{inverted_time(T0 + timedelta(days=day))}_run-{day}" for day in range(4)}
    labels = [
        _tamper(table, RUN_PARTITION, key[0], DiskCount="two"),
        _tamper(table, RUN_PARTITION, key[1], Selection="{not json"),
        _tamper(table, RUN_PARTITION, key[2], RunId="run-renamed"),
    ]
    listing = catalog.list_runs()
    assert [r.run_id for r in listing.items] == ["run-3"]
    assert len(listing.problems) == 3
    for label, field in zip(labels, ("DiskCount", "Selection", "RowKey"), strict=True):
        [problem] = [p for p in listing.problems if p.startswith(label)]
        assert field in problem


def test_the_http_listing_shows_unreadable_rows_beside_the_good_ones(
    catalog: Catalog, table: TableClient
) -> None:
    record_point(catalog, point_input(DISK_A, "run-0", T0))
    record_point(catalog, point_input(DISK_A, "run-1", T0 + timedelta(days=1)))
    label = _tamper(table, disk_partition(DISK_A), f"{inverted_time(T0)}_run-0", SizeBytes="big")
    request = func.HttpRequest(
        method="GET", url="http://localhost/api/restore-points", body=b"", params={"disk": DISK_A}
    )
    response = asyncio.run(http_routes.list_restore_points(request, catalog))
    assert response.status_code == 200
    body = json.loads(response.get_body())
    assert [p["runId"] for p in body["restorePoints"]] == ["run-1"]
    [problem] = body["unreadableRows"]
    assert problem.startswith(label) and "SizeBytes" in problem
