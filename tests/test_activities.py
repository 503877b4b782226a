"""The activities (backup/workflow/activities.py) against the proving ground, called as the host calls them.

The Durable host delivers an activity at least once, so each one here is run twice with the same input:
one snapshot, one grant, one copy (the same copy id), one catalog row must come of it. Then what they
refuse: a backup blob that is not what it should be, a grant that has not succeeded, input of the wrong
shape; and what they answer when ARM throttles them (``Throttled`` and the call to repeat, so that the
orchestrator waits on a durable timer rather than a thread sleeping here).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from backup import vhd
from backup.azure.blob import BlobAddress, BlobProperties, CopyStatus
from backup.azure.compute import snapshot_name
from backup.azure.odata import eq
from backup.azure.page_range import PageRange
from backup.catalog import RUN_PARTITION, disk_partition
from backup.clients import AzureClients, build_clients
from backup.errors import (
    ConflictError,
    CopyFailedError,
    InvalidInputError,
    OperationFailedError,
    UnexpectedResponseError,
)
from backup.settings import Settings
from backup.workflow import activities, chain_activities
from backup.workflow import activity_names as act
from testbed.devenv import proving_ground_settings
from testbed.proving_ground import ProvingGround

RUN = "manual-20261126T010000Z-acts"
DISK_SIZE = 1 << 20


@dataclass
class Corner:
    """One test's resource group, container and catalog table on the shared proving ground."""

    ground: ProvingGround
    settings: Settings
    clients: AzureClients
    group: str
    container: str

    def make_disk(self, name: str, seed: int = 1, sku: str = "Standard_LRS") -> dict[str, Any]:
        """A small disk with some content; returns its DiskRef JSON as resolve_selection answers it."""
        body = {"size_bytes": DISK_SIZE, "fill": {"seed": seed, "fraction": 0.3}, "sku": sku}
        self.ground.control("PUT", f"/resourceGroups/{self.group}/disks/{name}", body)
        disk_id = self.ground.disk_id(name, self.group)
        [disk] = activities.resolve_selection(self.clients, {"kind": "diskIds", "diskIds": [disk_id]})
        return disk

    def fault(self, **fault: Any) -> None:
        answer = self.ground.control("POST", "/faults", fault)
        assert "error" not in answer, answer

    def snapshots(self) -> list[str]:
        return [s.id for s in self.clients.compute.list_snapshots(self.settings.subscription_id, self.group)]

    def grants(self) -> list[str]:
        return [
            g["id"]
            for g in self.ground.control("GET", "/grants")["resources"]
            if f"/resourcegroups/{self.group}/" in g["id"].lower()
        ]

    def blob(self, name: str) -> BlobAddress:
        return self.clients.backup_blob(self.container, name)

    # -- the steps, as the disk orchestrator takes them (without its timers) --------------------------

    def finish(self, answer: dict[str, Any]) -> dict[str, Any]:
        """Poll an operation answer until it succeeded, as the orchestrator's wait does."""
        for _ in range(20):
            if answer["state"] == "Succeeded":
                return answer
            if answer["state"] == "Throttled":
                answer = call(self.clients, answer["retry"]["activity"], answer["retry"]["input"])
            else:
                answer = activities.poll_operation(self.clients, {"operation": answer["operation"]})
        raise AssertionError(f"operation did not finish: {answer}")

    def snapshot(self, disk: dict[str, Any]) -> str:
        started = activities.begin_snapshot(self.clients, snapshot_input(disk))
        self.finish(started)
        return str(started["snapshotId"])

    def grant(self, snapshot_id: str) -> dict[str, Any]:
        answer = activities.begin_grant_access(self.clients, grant_input(snapshot_id))
        return self.finish(answer)["operation"]

    def copy(self, disk: dict[str, Any], snapshot_id: str, blob_name: str) -> dict[str, Any]:
        """Start the copy from a fresh grant and follow it to success."""
        copy = activities.start_copy(
            self.clients, copy_input(self.container, blob_name, snapshot_id, self.grant(snapshot_id), disk)
        )
        for _ in range(20):
            if copy["status"] == "success":
                return copy
            copy = activities.copy_status(
                self.clients, {"container": self.container, "blobName": blob_name, "copyId": copy["copyId"]}
            )
        raise AssertionError(f"copy did not finish: {copy}")


def call(clients: AzureClients, name: str, data: Any) -> Any:
    """Call an activity by its registered name, as the host does."""
    module = activities if hasattr(activities, name) else chain_activities
    function: Callable[[AzureClients, Any], Any] = getattr(module, name)
    return function(clients, data)


def snapshot_input(disk: dict[str, Any], run_id: str = RUN) -> dict[str, Any]:
    return {"runId": run_id, "disk": disk, "incremental": True}


def grant_input(snapshot_id: str) -> dict[str, Any]:
    return {"snapshotId": snapshot_id, "durationSeconds": 3600}


def copy_input(
    container: str, blob_name: str, snapshot_id: str, grant: dict[str, Any], disk: dict[str, Any]
) -> dict[str, Any]:
    return {
        "container": container,
        "blobName": blob_name,
        "snapshotId": snapshot_id,
        "grant": grant,
        "metadata": {"runId": RUN, "diskId": disk["id"], "snapshotId": snapshot_id},
    }


@pytest.fixture
def corner(proving_ground: ProvingGround, unique_name: str) -> Iterator[Corner]:
    group = f"rg-{unique_name}"
    proving_ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    env = proving_ground_settings(
        proving_ground,
        proving_ground.arm_ca_cert,
        BACKUP_SELECT_RESOURCE_GROUP=group,
        BACKUP_CONTAINER=unique_name,
        BACKUP_CATALOG_TABLE=unique_name,
    )
    settings = Settings.from_env(env)
    corner = Corner(proving_ground, settings, build_clients(settings), group, unique_name)
    try:
        yield corner
    finally:
        # Leave no SAS active (a family allows five) and no injected fault behind.
        for resource_id in corner.grants():
            corner.finish(activities.begin_revoke_access(corner.clients, {"snapshotId": resource_id}))
        proving_ground.control("DELETE", "/faults")


# -- twice with the same input -----------------------------------------------------------------------------


def twice(clients: AzureClients, name: str, data: Any) -> tuple[Any, Any]:
    return call(clients, name, data), call(clients, name, data)


def test_every_activity_twice_leaves_one_snapshot_one_copy_one_catalog_row(corner: Corner) -> None:
    clients = corner.clients
    disk = corner.make_disk("d1")
    selection = {"kind": "resourceGroup", "resourceGroup": corner.group}
    first, again = twice(clients, act.RESOLVE_SELECTION, selection)
    assert first == again == [disk]

    run = {
        "runId": RUN,
        "trigger": "http",
        "selection": selection,
        "startedAt": "2026-11-26T01:00:00.000Z",
        "status": "Running",
        "diskCount": 1,
    }
    assert twice(clients, act.RECORD_RUN, run) == ({"runId": RUN, "status": "Running"},) * 2

    # The snapshot: both begins name the same snapshot; polling the same state twice is harmless.
    first, again = twice(clients, act.BEGIN_SNAPSHOT, snapshot_input(disk))
    assert first["snapshotId"] == again["snapshotId"]
    snapshot_id = first["snapshotId"]
    polled = twice(clients, act.POLL_OPERATION, {"operation": first["operation"]})
    assert all(p["state"] in ("InProgress", "Succeeded") for p in polled)
    corner.finish(first)
    corner.finish(again)
    assert corner.snapshots() == [snapshot_id]

    # Access: a repeated grant replaces the SAS; one grant stays active.
    first, again = twice(clients, act.BEGIN_GRANT_ACCESS, grant_input(snapshot_id))
    corner.finish(first)
    grant = corner.finish(again)["operation"]
    assert corner.grants() == [snapshot_id]

    # The copy: the repeat finds the first attempt's copy and follows it instead of starting another.
    blob_name = "sub/rg/d1/20261126T010000Z-acts.vhd"
    data = copy_input(corner.container, blob_name, snapshot_id, grant, disk)
    first, again = twice(clients, act.START_COPY, data)
    copy_id = first["copyId"]
    assert again["copyId"] == copy_id
    status_input = {"container": corner.container, "blobName": blob_name, "copyId": copy_id}
    copy = first
    while copy["status"] != "success":
        copy, repeat = twice(clients, act.COPY_STATUS, status_input)
        assert repeat["copyId"] == copy_id
    assert copy == {
        "copyId": copy_id,
        "status": "success",
        "copied": DISK_SIZE + 512,
        "total": DISK_SIZE + 512,
    }
    # Even once the copy is done, a late repeat of start_copy answers it rather than copying again.
    assert call(clients, act.START_COPY, data) == copy
    assert clients.blob.get_properties(corner.blob(blob_name)).copy_id == copy_id

    verify = {
        "container": corner.container,
        "blobName": blob_name,
        "copyId": copy_id,
        "grant": grant,
        "diskBytes": DISK_SIZE,
        "sampleBytes": 64 << 10,
        "seed": RUN,
        "planBlobs": [],
    }
    first, again = twice(clients, act.VERIFY_CONTENT, verify)
    assert first == again and first["equal"] and first["bytesCompared"] == 64 << 10

    first, again = twice(clients, act.BEGIN_REVOKE_ACCESS, {"snapshotId": snapshot_id})
    corner.finish(first)
    corner.finish(again)
    assert corner.grants() == []

    point = {
        "runId": RUN,
        "runStartedAt": "2026-11-26T01:00:00.000Z",
        "diskId": disk["id"],
        "snapshotId": snapshot_id,
        "container": corner.container,
        "blobName": blob_name,
        "sizeBytes": DISK_SIZE,
        "bytesCopied": copy["copied"],
        "kind": "full",
        "startedAt": "2026-11-26T01:00:01.000Z",
        "finishedAt": "2026-11-26T01:02:00.000Z",
        "status": "Succeeded",
        "copyId": copy_id,
    }
    first, again = twice(clients, act.RECORD_RESTORE_POINT, point)
    assert first == again and "?" not in first["blobUrl"]
    table = clients.catalog.table
    assert len(list(table.query(eq("PartitionKey", disk_partition(disk["id"]))))) == 1
    assert len(list(table.query(eq("PartitionKey", RUN_PARTITION)))) == 1

    first, again = twice(clients, act.BEGIN_DELETE_SNAPSHOT, {"snapshotId": snapshot_id})
    corner.finish(first)
    corner.finish(again)
    assert corner.snapshots() == []
    # Deleting what is gone counts as deleted.
    assert call(clients, act.BEGIN_DELETE_SNAPSHOT, {"snapshotId": snapshot_id})["state"] == "Succeeded"


# -- verifying a whole copy -------------------------------------------------------------------------------


def test_verifying_a_whole_copy_rejects_a_blob_that_is_not_the_backup(corner: Corner) -> None:
    """verify_content with ``copyId``: our copy, ended with success, of the disk's size plus a footer that
    describes a fixed disk of exactly that size; anything else is unequal, with the reason."""
    disk = corner.make_disk("d1")
    snapshot_id = corner.snapshot(disk)
    copy = corner.copy(disk, snapshot_id, "d1.vhd")
    good = {
        "container": corner.container,
        "blobName": "d1.vhd",
        "copyId": copy["copyId"],
        "diskBytes": DISK_SIZE,
        "sampleBytes": 0,
        "seed": RUN,
    }
    assert chain_activities.verify_content(corner.clients, good)["equal"]

    def refused(change: dict[str, Any]) -> str:
        verdict = chain_activities.verify_content(corner.clients, {**good, **change})
        assert not verdict["equal"]
        return str(verdict["problem"])

    assert f"the backup blob is {DISK_SIZE + 512} bytes, expected the disk's {DISK_SIZE * 2}" in refused(
        {"diskBytes": DISK_SIZE * 2}
    )
    other = str(uuid.uuid4())
    assert f"its last copy is {copy['copyId']}, expected {other}" in refused({"copyId": other})

    blob = corner.blob("d1.vhd")
    footer_range = PageRange.at(DISK_SIZE, vhd.FOOTER_SIZE)
    corner.clients.blob.put_page(blob, footer_range, bytes(vhd.FOOTER_SIZE))
    assert "not an intact VHD footer" in refused({})

    # An intact footer, but of another disk size.
    corner.clients.blob.put_page(blob, footer_range, vhd.build_footer(DISK_SIZE // 2, uuid.uuid4()))
    assert f"disk of {DISK_SIZE // 2} bytes, expected a fixed disk of {DISK_SIZE}" in refused({})


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, None),
        ({"copy_status": CopyStatus.PENDING}, "copy status is pending, expected success"),
        ({"copy_status": None}, "copy status is none, expected success"),
        ({"copy_progress": (512, 1024)}, "copy progress is 512/1024"),
        ({"blob_type": "BlockBlob"}, "blob type is BlockBlob, expected PageBlob"),
        ({"copy_id": "theirs"}, "its last copy is theirs, expected ours"),
    ],
)
def test_a_whole_copy_must_show_as_ours_done_in_full_into_a_page_blob(
    change: dict[str, Any], problem: str | None
) -> None:
    """What Azurite cannot be made to show (a copy pending or cut short, a block blob), on properties."""
    done = BlobProperties(
        size=1024,
        etag='"e"',
        last_modified=datetime(2026, 11, 26, tzinfo=UTC),
        metadata={},
        blob_type="PageBlob",
        copy_id="ours",
        copy_status=CopyStatus.SUCCESS,
        copy_progress=(1024, 1024),
    )
    found = chain_activities._copy_problem(replace(done, **change), "ours")
    assert found == (None if problem is None else f"the backup blob's copy: {problem}")


# -- start_copy and copy_status ------------------------------------------------------------------------------


def test_start_copy_refuses_a_grant_that_did_not_succeed(corner: Corner) -> None:
    disk = corner.make_disk("d1")
    snapshot_id = corner.snapshot(disk)
    pending = activities.begin_grant_access(corner.clients, grant_input(snapshot_id))
    assert pending["state"] == "InProgress"
    failed = {**pending["operation"], "state": "Failed", "error_code": "InternalExecutionError"}
    for grant in (pending["operation"], failed):
        with pytest.raises(InvalidInputError) as caught:
            activities.start_copy(
                corner.clients, copy_input(corner.container, "d1.vhd", snapshot_id, grant, disk)
            )
        assert caught.value.field == "grant"

    # A succeeded operation that is not a grant has no SAS to copy from.
    create = activities.begin_snapshot(corner.clients, snapshot_input(disk))
    done = corner.finish(create)["operation"]
    with pytest.raises(InvalidInputError) as caught:
        activities.start_copy(corner.clients, copy_input(corner.container, "d1.vhd", snapshot_id, done, disk))
    assert caught.value.field == "grant"
    corner.finish(pending)


def test_copy_status_raises_for_a_failed_copy_and_for_someone_elses(corner: Corner) -> None:
    disk = corner.make_disk("d1")
    snapshot_id = corner.snapshot(disk)
    assert corner.ground.data_plane is not None
    corner.ground.data_plane.fail_next_copy(snapshot_id, "the source could not be read")
    copy = activities.start_copy(
        corner.clients, copy_input(corner.container, "d1.vhd", snapshot_id, corner.grant(snapshot_id), disk)
    )
    status_input = {"container": corner.container, "blobName": "d1.vhd", "copyId": copy["copyId"]}
    with pytest.raises(CopyFailedError, match="the source could not be read"):
        for _ in range(20):
            activities.copy_status(corner.clients, status_input)
    with pytest.raises(CopyFailedError, match="not ours"):
        activities.copy_status(corner.clients, {**status_input, "copyId": str(uuid.uuid4())})


# -- throttling and failures ---------------------------------------------------------------------------------

#: Longer than the transport waits by itself (RetryPolicy.max_server_delay, 30 s): it gives up at once.
LONG_RETRY_AFTER = 120


@pytest.mark.parametrize(
    ("activity", "operation", "needs_snapshot"),
    [
        (act.BEGIN_SNAPSHOT, "Snapshots_CreateOrUpdate", False),
        (act.BEGIN_GRANT_ACCESS, "Snapshots_GrantAccess", True),
        (act.BEGIN_REVOKE_ACCESS, "Snapshots_RevokeAccess", True),
        (act.BEGIN_DELETE_SNAPSHOT, "Snapshots_Delete", True),
    ],
)
def test_a_throttled_begin_answers_throttled_with_the_call_to_repeat(
    corner: Corner, activity: str, operation: str, needs_snapshot: bool
) -> None:
    disk = corner.make_disk("d1")
    snapshot_id = corner.snapshot(disk) if needs_snapshot else None
    data: dict[str, Any] = (
        snapshot_input(disk)
        if activity == act.BEGIN_SNAPSHOT
        else grant_input(str(snapshot_id))
        if activity == act.BEGIN_GRANT_ACCESS
        else {"snapshotId": snapshot_id}
    )
    corner.fault(
        operation=operation,
        action="429",
        retry_after=LONG_RETRY_AFTER,
        resource_name=snapshot_name(RUN, disk["id"]),
    )

    answer = call(corner.clients, activity, data)
    assert answer["state"] == "Throttled"
    assert answer["retryAfter"] == LONG_RETRY_AFTER
    assert answer["operation"] is None
    assert answer["retry"] == {"activity": activity, "input": data}
    if activity == act.BEGIN_SNAPSHOT:
        # The orchestrator needs the snapshot's id even when its creation has to wait (cleanup, status).
        assert answer["snapshotId"] == corner.ground.disk_id("d1", corner.group).replace(
            "/disks/d1", f"/snapshots/{snapshot_name(RUN, disk['id'])}"
        )

    # Repeating the call after the wait goes through (the fault was for one call).
    repeated = call(corner.clients, answer["retry"]["activity"], answer["retry"]["input"])
    assert repeated["state"] in ("InProgress", "Succeeded")
    corner.finish(repeated)


def test_a_throttled_poll_keeps_the_operation_and_asks_to_wait(corner: Corner) -> None:
    disk = corner.make_disk("d1")
    started = activities.begin_snapshot(corner.clients, snapshot_input(disk))
    assert started["state"] == "InProgress"
    # Status polls name no resource; nothing else polls the shared emulator while this test runs.
    corner.fault(operation="DiskOperations_Get", action="429", retry_after=90)
    answer = activities.poll_operation(corner.clients, {"operation": started["operation"]})
    assert answer == {"state": "InProgress", "retryAfter": 90, "operation": started["operation"]}
    assert corner.finish(answer)["state"] == "Succeeded"


def test_a_failed_operation_makes_the_activity_raise(corner: Corner) -> None:
    disk = corner.make_disk("d1")
    corner.fault(
        operation="Snapshots_CreateOrUpdate",
        action="Failed",
        code="InternalDiskManagementError",
        message="the disk is busy",
        resource_name=snapshot_name(RUN, disk["id"]),
    )
    started = activities.begin_snapshot(corner.clients, snapshot_input(disk))
    with pytest.raises(OperationFailedError, match="InternalDiskManagementError"):
        corner.finish(started)


def test_a_malformed_answer_makes_the_activity_raise_azures_error_not_the_callers(corner: Corner) -> None:
    disk = corner.make_disk("d1")
    corner.fault(
        operation="Snapshots_CreateOrUpdate",
        action="malformed",
        resource_name=snapshot_name(RUN, disk["id"]),
    )
    with pytest.raises(UnexpectedResponseError) as caught:
        activities.begin_snapshot(corner.clients, snapshot_input(disk))
    error = caught.value
    assert not isinstance(error, InvalidInputError)
    assert (error.field, error.method) == ("response body", "PUT")
    assert error.request_id and error.request_id in str(error)
    assert "api-version" not in str(error)  # the URL is shown without its query
    assert corner.snapshots() == []  # the call did nothing; repeating it later is safe


# -- a snapshot's background copy (Premium SSD v2 / Ultra) -------------------------------------------------


def test_snapshot_readiness_follows_a_premium_v2_snapshots_background_copy(corner: Corner) -> None:
    saved = corner.ground.control("GET", "/config")
    corner.ground.control("PATCH", "/config", {"background_copy_polls": 2})
    try:
        disk = corner.make_disk("v2", sku="PremiumV2_LRS")
        snapshot_id = corner.snapshot(disk)
    finally:
        corner.ground.control("PATCH", "/config", saved)
    assert disk["sku"] == "PremiumV2_LRS"  # resolve_selection passes the SKU on

    # Each look is one GET, and a GET moves the emulated copy on by one of its two steps.
    first = activities.snapshot_readiness(corner.clients, {"snapshotId": snapshot_id})
    assert first == {"ready": False, "completionPercent": 50.0, "accessState": "Pending", "retryAfter": None}
    with pytest.raises(ConflictError, match="OperationNotAllowed"):
        corner.grant(snapshot_id)
    second = activities.snapshot_readiness(corner.clients, {"snapshotId": snapshot_id})
    assert second == {
        "ready": True,
        "completionPercent": 100.0,
        "accessState": "Available",
        "retryAfter": None,
    }
    corner.grant(snapshot_id)  # now it is granted (the grant's operation succeeds)
    assert [g.lower() for g in corner.grants()] == [snapshot_id.lower()]


def test_other_skus_snapshots_are_ready_at_once(corner: Corner) -> None:
    disk = corner.make_disk("std", sku="Premium_LRS")
    answer = activities.snapshot_readiness(corner.clients, {"snapshotId": corner.snapshot(disk)})
    assert answer == {
        "ready": True,
        "completionPercent": None,
        "accessState": "Available",
        "retryAfter": None,
    }


def test_a_throttled_readiness_look_is_not_ready_and_asks_to_wait(corner: Corner) -> None:
    disk = corner.make_disk("v2", sku="UltraSSD_LRS")
    snapshot_id = corner.snapshot(disk)
    corner.fault(
        operation="Snapshots_Get",
        action="429",
        retry_after=LONG_RETRY_AFTER,
        resource_name=snapshot_name(RUN, disk["id"]),
    )
    answer = activities.snapshot_readiness(corner.clients, {"snapshotId": snapshot_id})
    assert answer == {
        "ready": False,
        "completionPercent": None,
        "accessState": None,
        "retryAfter": LONG_RETRY_AFTER,
    }


# -- input from outside -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("activity", "data", "field"),
    [
        (act.RESOLVE_SELECTION, {"kind": "everything"}, "selection.kind"),
        (act.RESOLVE_SELECTION, {"kind": "configured"}, "selection.kind"),
        (act.RESOLVE_SELECTION, {"kind": "diskIds", "diskIds": []}, "selection.diskIds"),
        (act.BEGIN_SNAPSHOT, {"runId": RUN, "disk": {"id": "x"}, "incremental": True}, "disk.name"),
        (act.BEGIN_SNAPSHOT, "not an object", "activity input"),
        (act.POLL_OPERATION, {"operation": "https://example/op"}, "operation"),
        (act.POLL_OPERATION, {"operation": {"method": "PUT", "evil": 1}}, "lro status"),
        (act.BEGIN_GRANT_ACCESS, {"snapshotId": "s", "durationSeconds": "3600"}, "durationSeconds"),
        (act.BEGIN_REVOKE_ACCESS, {"snapshotId": ""}, "snapshotId"),
        (act.BEGIN_DELETE_SNAPSHOT, {}, "snapshotId"),
        (act.SNAPSHOT_READINESS, {"snapshotId": 7}, "snapshotId"),
        (act.START_COPY, {"snapshotId": "s", "metadata": {"a": 1}}, "metadata"),
        (act.COPY_STATUS, {"container": "c", "blobName": "b"}, "copyId"),
        (act.VERIFY_CONTENT, {"copyId": "", "diskBytes": 1, "sampleBytes": 0}, "copyId"),
        (act.VERIFY_CONTENT, {"copyId": "c", "diskBytes": True, "sampleBytes": 0}, "diskBytes"),
        (act.RECORD_RESTORE_POINT, {"status": "Succeeded"}, "restore point.diskId"),
        (act.RECORD_RUN, {"status": "Running"}, "run.runId"),
    ],
)
def test_bad_input_is_refused_naming_the_field(corner: Corner, activity: str, data: Any, field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        call(corner.clients, activity, data)
    assert caught.value.field == field


def test_selecting_a_disk_that_does_not_exist_names_it(corner: Corner) -> None:
    disk = corner.make_disk("d1")
    missing = corner.ground.disk_id("nope", corner.group)
    with pytest.raises(InvalidInputError) as caught:
        activities.resolve_selection(corner.clients, {"kind": "diskIds", "diskIds": [disk["id"], missing]})
    assert caught.value.field == "diskIds[1]" and missing in str(caught.value)
