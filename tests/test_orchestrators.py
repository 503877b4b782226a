"""The orchestrators' own logic under the real replay engine, with activities we own standing in for Azure.

The end-to-end tests run the real activities against the proving ground; these swap in small activity
functions (a seam the app owns: activities are called by name) to reach paths the emulator cannot
easily produce, such as the catalog failing only at the very end of a run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import azure.durable_functions as df
import pytest

from backup.app.blueprint import register_orchestrators
from backup.azure.compute import snapshot_name
from backup.errors import (
    AuthenticationError,
    CopyFailedError,
    OperationFailedError,
    ServerError,
    ThrottledError,
    TransportError,
    VerificationError,
)
from backup.failures import ActivityFailure, describe
from backup.local.durable_host import LocalHost, VirtualClock
from backup.local.durable_host.history import EventType, parse_timestamp
from backup.workflow import activity_names as act
from backup.workflow.models import (
    RUN_ORCHESTRATOR,
    DiskStatus,
    RunInput,
    RunOptions,
    Selection,
    lane_id,
    sub_orchestration_id,
)
from backup.workflow.orchestrators import LANE_DISKS_PER_EXECUTION
from backup.workflow.restore_models import PRUNE_ORCHESTRATOR, PruneInput, PruneOptions
from backup.workflow.retries import ActivityRetry
from backup.workflow.watch import (
    COPY_WATCH_ORCHESTRATOR,
    OPERATION_WATCH_ORCHESTRATOR,
    copy_watch_id,
    operation_watch_id,
    readiness_watch_id,
)

SUB = "00000000-0000-0000-0000-0000000000aa"


def _disk(name: str) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/disks/{name}",
        "name": name,
        "resourceGroup": "rg",
        "subscriptionId": SUB,
        "location": "westus",
        "sizeBytes": 1 << 20,
    }


def _app(activities: dict[str, Callable[[Any], Any]]) -> df.DFApp:
    app = df.DFApp()

    register_orchestrators(app)  # the app's own registration, with our activities beside it
    for name, function in activities.items():
        function.__name__ = name
        app.activity_trigger(input_name="data")(function)
    return app


def _happy_activities(calls: list[tuple[str, Any]]) -> dict[str, Callable[[Any], Any]]:
    done = {"state": "Succeeded", "retryAfter": None, "operation": {"kind": "done"}}

    def record(name: str, answer: Any) -> Callable[[Any], Any]:
        def activity(data: Any) -> Any:
            calls.append((name, data))
            return answer(data) if callable(answer) else answer

        return activity

    return {
        act.RESOLVE_SELECTION: record(act.RESOLVE_SELECTION, [_disk("a"), _disk("b"), _disk("c")]),
        act.RECORD_RUN: record(act.RECORD_RUN, {"ok": True}),
        act.SEND_RUN_ALERT: record(act.SEND_RUN_ALERT, {"sent": False, "why": "no webhook configured"}),
        act.BEGIN_SNAPSHOT: record(
            act.BEGIN_SNAPSHOT, lambda d: {**done, "snapshotId": d["disk"]["id"] + "-snap"}
        ),
        act.POLL_OPERATION: record(act.POLL_OPERATION, done),
        act.SNAPSHOT_READINESS: record(
            act.SNAPSHOT_READINESS,
            {"ready": True, "completionPercent": 100.0, "accessState": "Available", "retryAfter": None},
        ),
        act.BEGIN_GRANT_ACCESS: record(act.BEGIN_GRANT_ACCESS, done),
        act.START_COPY: record(
            act.START_COPY, {"copyId": "c1", "status": "success", "copied": 9, "total": 9}
        ),
        act.COPY_STATUS: record(
            act.COPY_STATUS, {"copyId": "c1", "status": "success", "copied": 9, "total": 9}
        ),
        act.BEGIN_REVOKE_ACCESS: record(act.BEGIN_REVOKE_ACCESS, done),
        act.RECORD_RESTORE_POINT: record(act.RECORD_RESTORE_POINT, {"blobUrl": "https://x/c/b.vhd"}),
        act.BEGIN_DELETE_SNAPSHOT: record(act.BEGIN_DELETE_SNAPSHOT, done),
        act.ACQUIRE_WRITER_LEASE: record(
            act.ACQUIRE_WRITER_LEASE, {"acquired": True, "created": True, "brokeStale": None}
        ),
        act.FINISH_WRITING: record(
            act.FINISH_WRITING, {"planDeleted": 0, "planProblem": None, "released": True}
        ),
        act.INSPECT_CHAIN: record(
            act.INSPECT_CHAIN,
            {
                "kind": "full",
                "reason": "no earlier restore point of this disk",
                "base": None,
                "previousBase": None,
            },
        ),
        act.LIST_CHANGES: record(
            act.LIST_CHANGES,
            lambda d: {
                "part": d["part"],
                "batches": 2,
                "changedBytes": 64 << 10,
                "clearedBytes": 0,
                "moveBytes": 64 << 10,
                "ranges": 3,
                "writes": 3,
                "clears": 0,
                "listRequests": 1,
                "nextMarker": None,
            },
        ),
        act.APPLY_BATCH: record(act.APPLY_BATCH, {"bytesMoved": 32 << 10, "writes": 2, "clears": 0}),
        act.SYNC_FOOTER: record(act.SYNC_FOOTER, {"rewritten": False, "bytesMoved": 0}),
        act.VERIFY_PAGES: record(
            act.VERIFY_PAGES, {"equal": True, "problem": None, "populatedBytes": 4096, "ranges": 2}
        ),
        act.VERIFY_CONTENT: record(
            act.VERIFY_CONTENT, {"equal": True, "problem": None, "windows": 1, "bytesCompared": 4096}
        ),
        act.SNAPSHOT_BACKUP_BLOB: record(
            act.SNAPSHOT_BACKUP_BLOB, {"blobSnapshot": "2026-11-26T01:00:09.0000000Z"}
        ),
        act.BEGIN_TAG_BASE: record(act.BEGIN_TAG_BASE, done),
        act.BEGIN_RETIRE_BASE: record(act.BEGIN_RETIRE_BASE, {**done, "action": "deleted"}),
    }


def _run(
    activities: dict[str, Callable[[Any], Any]],
    max_parallel: int = 2,
    lanes: list[Any] | None = None,
    inspect: Callable[[LocalHost], None] = lambda host: None,
    **options: Any,
) -> Any:
    run = RunInput(
        "http",
        Selection(kind="resourceGroup", resource_group="rg"),
        RunOptions("c", max_parallel=max_parallel, **options),
    )
    with LocalHost(_app(activities), clock=VirtualClock(datetime(2026, 11, 26, 1, tzinfo=UTC))) as host:
        host.start_new(RUN_ORCHESTRATOR, input=run.to_json(), instance_id="run-1")
        status = host.wait_for_completion("run-1", timeout=60)
        for lane in range(max_parallel):
            found = host.get_status(lane_id("run-1", lane))
            if lanes is not None and found is not None:
                lanes.append(found.custom_status)
        inspect(host)
        return status


def _table_down() -> ActivityFailure:
    """What the app's activity wrapper raises when the table endpoint refuses connections."""
    down = TransportError(
        "POST http://127.0.0.1:1/devstoreaccount1/Tables: ConnectionError: HTTPConnectionPool(...)",
        url="http://127.0.0.1:1/devstoreaccount1/Tables",
        cause="connection refused",
    )
    return ActivityFailure(describe(down))


def _answers(*answers: Any) -> Callable[[Any], Any]:
    """An activity that answers each of ``answers`` in turn (an exception is raised), then the last."""
    given = list(answers)

    def activity(data: Any) -> Any:
        answer = given.pop(0) if len(given) > 1 else given[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return activity


def test_every_disk_through_every_phase_in_lanes() -> None:
    calls: list[tuple[str, Any]] = []
    status = _run(_happy_activities(calls))
    assert status.runtime_status == "Completed"
    assert status.output["status"] == "Succeeded" and status.output["succeeded"] == 3
    names = [name for name, _ in calls]
    # Every operation answered Succeeded at once, so no polls: one call of each step per disk.
    # The first night of a chain: a full copy, verified, snapshotted, its snapshot made the base.
    for step in (
        act.ACQUIRE_WRITER_LEASE,
        act.BEGIN_SNAPSHOT,
        act.INSPECT_CHAIN,
        act.BEGIN_GRANT_ACCESS,
        act.START_COPY,
        act.VERIFY_PAGES,
        act.VERIFY_CONTENT,
        act.BEGIN_REVOKE_ACCESS,
        act.SNAPSHOT_BACKUP_BLOB,
        act.RECORD_RESTORE_POINT,
        act.BEGIN_TAG_BASE,
        act.FINISH_WRITING,
    ):
        assert names.count(step) == 3, step
    assert names.count(act.POLL_OPERATION) == names.count(act.COPY_STATUS) == 0
    # Nothing to retire on the first night, and the new base is never deleted.
    assert names.count(act.BEGIN_RETIRE_BASE) == names.count(act.BEGIN_DELETE_SNAPSHOT) == 0
    assert {d["kind"] for d in status.output["disks"]} == {"full"}
    assert {d["fullCopyReason"] for d in status.output["disks"]} == {"no earlier restore point of this disk"}
    assert [data["status"] for name, data in calls if name == act.RECORD_RUN] == ["Running", "Succeeded"]
    assert [d["diskName"] for d in status.output["disks"]] == ["a", "b", "c"]  # in selection order


def test_a_catalog_that_fails_at_the_end_does_not_undo_the_backups() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    record = activities[act.RECORD_RUN]

    def record_run(data: Any) -> Any:
        if data["status"] != "Running":
            raise _table_down()
        return record(data)

    record_run.__name__ = act.RECORD_RUN
    activities[act.RECORD_RUN] = record_run
    status = _run(activities)
    assert status.runtime_status == "Completed"
    assert status.output["status"] == "Succeeded"
    assert status.output["warnings"] == [
        "run not recorded in the catalog: could not reach Table storage at 127.0.0.1:1: connection refused"
    ]


def test_a_catalog_that_fails_at_the_start_ends_the_run_with_a_code_and_nothing_started() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)

    def record_run(data: Any) -> Any:
        calls.append((act.RECORD_RUN, data))
        raise _table_down()

    activities[act.RECORD_RUN] = record_run
    status = _run(activities)
    assert status.runtime_status == "Completed"  # a clean result, not a failed orchestration
    summary = status.output
    assert (summary["status"], summary["code"], summary["diskCount"]) == ("Failed", "BackendUnavailable", 3)
    assert summary["reason"] == (
        "recording the run in the catalog: could not reach Table storage at 127.0.0.1:1: connection refused"
    )
    assert summary["warnings"] == [
        "run not recorded in the catalog: could not reach Table storage at 127.0.0.1:1: connection refused"
    ]
    # No disk was touched: a snapshot would have left work the catalog could not record.
    assert {name for name, _ in calls} == {act.RESOLVE_SELECTION, act.RECORD_RUN, act.SEND_RUN_ALERT}


def test_lanes_count_their_disks_in_their_custom_status() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    snapshot = activities[act.BEGIN_SNAPSHOT]

    def begin_snapshot(data: Any) -> Any:
        if data["disk"]["name"] == "b":
            raise ActivityFailure(describe(VerificationError("not really")))
        return snapshot(data)

    activities[act.BEGIN_SNAPSHOT] = begin_snapshot
    lanes: list[Any] = []
    _run(activities, max_parallel=2, lanes=lanes)
    # Disks a and c went to lane 0, b to lane 1 (dealt in turn).
    assert lanes == [{"disks": 2, "succeeded": 2, "failed": 0}, {"disks": 1, "succeeded": 0, "failed": 1}]


def test_a_failing_activity_fails_its_disk_revokes_and_cleans_up() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)

    def verify_content(data: Any) -> Any:
        if "/b/" in data["blobName"]:
            raise RuntimeError("a bug in verify_content: size is 1 bytes")  # not ours: an internal error
        raise ActivityFailure(describe(VerificationError("size is 1 bytes, expected 1049088")))

    activities[act.VERIFY_CONTENT] = verify_content
    status = _run(activities, max_parallel=1)
    assert status.output["status"] == "Failed" and status.output["failed"] == 3
    results = {d["diskName"]: (d["code"], d["reason"]) for d in status.output["disks"]}
    assert results == {
        "a": ("VerificationFailed", "verify: size is 1 bytes, expected 1049088"),
        "b": ("InternalError", "verify: an unexpected error occurred; the app's logs have the details"),
        "c": ("VerificationFailed", "verify: size is 1 bytes, expected 1049088"),
    }
    names = [name for name, _ in calls]
    assert names.count(act.BEGIN_REVOKE_ACCESS) == 3 and names.count(act.BEGIN_DELETE_SNAPSHOT) == 3
    assert names.count(act.FINISH_WRITING) == 3 and names.count(act.SNAPSHOT_BACKUP_BLOB) == 0
    failed_points = [data for name, data in calls if name == act.RECORD_RESTORE_POINT]
    assert [p["status"] for p in failed_points] == ["Failed"] * 3


# -- Premium SSD v2 / Ultra: waiting for the snapshot's background copy ------------------------------------

START = datetime(2026, 11, 26, 1, tzinfo=UTC)


def _copying(percents: list[float | None], calls: list[tuple[str, Any]]) -> Callable[[Any], Any]:
    """A readiness activity: not ready at each of ``percents`` in turn, then ready (at 100)."""
    answers = iter(percents)

    def snapshot_readiness(data: Any) -> Any:
        calls.append((act.SNAPSHOT_READINESS, data))
        percent = next(answers, 100.0)
        ready = percent == 100.0
        return {
            "ready": ready,
            "completionPercent": percent,
            "accessState": "Available" if ready else "Pending",
            "retryAfter": None,
        }

    return snapshot_readiness


def _run_disks(
    activities: dict[str, Callable[[Any], Any]],
    disks: list[dict[str, Any]],
    options: RunOptions,
    hosts: list[LocalHost] | None = None,
) -> tuple[Any, LocalHost]:
    """Run a backup of ``disks``; the host goes into ``hosts`` before it starts (for activities to look)."""
    activities[act.RESOLVE_SELECTION] = lambda data: disks
    run = RunInput("http", Selection(kind="resourceGroup", resource_group="rg"), options)
    host = LocalHost(_app(activities), clock=VirtualClock(START))
    if hosts is not None:
        hosts.append(host)
    with host:
        host.start_new(RUN_ORCHESTRATOR, input=run.to_json(), instance_id="run-1")
        return host.wait_for_completion("run-1", timeout=60), host


def test_a_premium_v2_disk_waits_for_its_snapshots_background_copy_before_the_grant() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    readiness = _copying([0.0, 25.0, 80.0], calls)
    seen: list[tuple[str, float | None]] = []  # the disk's custom status each time readiness is asked
    watched: list[Any] = []  # the readiness watch's custom status then
    asked_at: list[datetime] = []
    hosts: list[LocalHost] = []
    disk_instance = sub_orchestration_id("run-1", 0)

    def snapshot_readiness(data: Any) -> Any:
        status = hosts[0].get_status(disk_instance)
        custom = DiskStatus.read(status.custom_status if status else None)
        assert custom is not None
        seen.append((custom.phase, custom.snapshot_copy_percent))
        watch_status = hosts[0].get_status(readiness_watch_id(disk_instance))
        watched.append(watch_status.custom_status if watch_status else None)
        asked_at.append(hosts[0].clock.now())
        return readiness(data)

    activities[act.SNAPSHOT_READINESS] = snapshot_readiness
    disks = [{**_disk("v2"), "sku": "PremiumV2_LRS"}]
    options = RunOptions("c", poll_initial_seconds=10, poll_max_seconds=40)
    status, host = _run_disks(activities, disks, options, hosts)

    assert status.output["status"] == "Succeeded", status.output
    names = [name for name, _ in calls]
    # Four looks at the snapshot (0, 25, 80, then 100 %), all after it was created and before the grant.
    assert names.count(act.SNAPSHOT_READINESS) == 4
    looks = [i for i, name in enumerate(names) if name == act.SNAPSHOT_READINESS]
    assert names.index(act.BEGIN_SNAPSHOT) < looks[0] and looks[-1] < names.index(act.BEGIN_GRANT_ACCESS)
    asked = {data["snapshotId"] for name, data in calls if name == act.SNAPSHOT_READINESS}
    assert asked == {disks[0]["id"] + "-snap"}
    # The disk's status showed the phase and, after its own first look, that look's percent; from then
    # on the readiness watch (a sub-orchestration: the disk's history does not grow with the wait) had
    # the percent of the last look.
    assert seen == [("snapshot-copy", None)] + [("snapshot-copy", 0.0)] * 3
    assert watched == [
        None,
        {"snapshotCopyPercent": 0.0, "accessState": "Pending", "polls": 0},
        {"snapshotCopyPercent": 25.0, "accessState": "Pending", "polls": 1},
        {"snapshotCopyPercent": 80.0, "accessState": "Pending", "polls": 2},
    ]
    final = DiskStatus.read(host.get_status(disk_instance).custom_status)  # type: ignore[union-attr]
    assert final is not None and final.snapshot_copy_percent == 100.0
    # Durable timers between the looks, doubling from the initial delay to the cap; none in the disk's.
    assert [(b - a).total_seconds() for a, b in pairwise(asked_at)] == [10, 20, 40]
    assert _timer_delays(host.history(disk_instance)) == []


def _timer_delays(history: list[dict[str, Any]]) -> list[float]:
    delays, now = [], None
    for event in history:
        if event["EventType"] == EventType.ORCHESTRATOR_STARTED:
            now = parse_timestamp(event["Timestamp"])
        elif event["EventType"] == EventType.TIMER_CREATED:
            assert now is not None
            delays.append((parse_timestamp(event["FireAt"]) - now).total_seconds())
    return delays


def test_other_skus_do_not_ask_and_an_unknown_sku_asks_once() -> None:
    calls: list[tuple[str, Any]] = []
    disks = [{**_disk("std"), "sku": "Premium_LRS"}, {**_disk("unknown")}]
    status, _ = _run_disks(_happy_activities(calls), disks, RunOptions("c"))
    assert status.output["status"] == "Succeeded", status.output
    asked = [data["snapshotId"] for name, data in calls if name == act.SNAPSHOT_READINESS]
    assert asked == [_disk("unknown")["id"] + "-snap"]


def test_a_background_copy_that_never_ends_fails_its_disk_at_the_deadline() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    activities[act.SNAPSHOT_READINESS] = _copying([12.5] * 10**6, calls)
    disks = [{**_disk("ultra"), "sku": "UltraSSD_LRS"}]
    options = RunOptions("c", poll_initial_seconds=60, poll_max_seconds=600, snapshot_copy_timeout_minutes=30)
    status, host = _run_disks(activities, disks, options)

    [result] = status.output["disks"]
    assert (result["status"], result["phase"]) == ("Failed", "snapshot-copy")
    assert result["reason"].startswith(
        "snapshot-copy: the snapshot's background copy (at 12.5%, Pending) did not finish by its deadline ("
    )
    # Waited 30 minutes in all (the last wait cut to end at the deadline), in the readiness watch;
    # never granted access.
    watch = host.get_status(readiness_watch_id(sub_orchestration_id("run-1", 0)))
    assert watch is not None and watch.output["failed"]["code"] == "DeadlineExceeded"
    assert host.clock.now() - START >= timedelta(minutes=30)
    assert _timer_delays(host.history(sub_orchestration_id("run-1", 0))) == []
    names = [name for name, _ in calls]
    assert act.BEGIN_GRANT_ACCESS not in names and act.BEGIN_REVOKE_ACCESS not in names
    # Recorded as failed, and the snapshot deleted.
    [point] = [data for name, data in calls if name == act.RECORD_RESTORE_POINT]
    assert point["status"] == "Failed" and point["reason"] == result["reason"]
    assert names.count(act.BEGIN_DELETE_SNAPSHOT) == 1
    final = DiskStatus.read(host.get_status(sub_orchestration_id("run-1", 0)).custom_status)  # type: ignore[union-attr]
    assert final is not None and (final.phase, final.snapshot_copy_percent) == ("failed", 12.5)


def test_a_failed_background_copy_fails_its_disk_at_once() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)

    def snapshot_readiness(data: Any) -> Any:
        failed = OperationFailedError(
            status="Failed", code="CopySourceNotFound", error_message="the snapshot's background copy failed"
        )
        raise ActivityFailure(describe(failed))  # as the app's activity wrapper raises it

    activities[act.SNAPSHOT_READINESS] = snapshot_readiness
    status, host = _run_disks(activities, [{**_disk("v2"), "sku": "PremiumV2_LRS"}], RunOptions("c"))
    [result] = status.output["disks"]
    assert result["status"] == "Failed" and result["phase"] == "snapshot-copy"
    assert result["code"] == "SnapshotFailed"
    assert result["reason"] == (
        "snapshot-copy: operation ended Failed: CopySourceNotFound: the snapshot's background copy failed"
    )
    assert _timer_delays(host.history(sub_orchestration_id("run-1", 0))) == []
    names = [name for name, _ in calls]
    assert act.BEGIN_GRANT_ACCESS not in names and names.count(act.BEGIN_DELETE_SNAPSHOT) == 1


# -- the chain's decisions, with activities we own ------------------------------------------------------

BASE = {
    "snapshotId": _disk("a")["id"].replace("/disks/", "/snapshots/") + "-base",
    "blobSnapshot": "t",
    "runId": "r0",
}


def _incremental(activities: dict[str, Callable[[Any], Any]], calls: list[tuple[str, Any]]) -> None:
    """Make the fakes say: the chain can serve (a base exists), so tonight is incremental."""

    def inspect(data: Any) -> Any:
        calls.append((act.INSPECT_CHAIN, data))
        return {"kind": "incremental", "reason": None, "base": BASE, "previousBase": BASE["snapshotId"]}

    inspect.__name__ = act.INSPECT_CHAIN
    activities[act.INSPECT_CHAIN] = inspect


def test_an_incremental_night_applies_its_plan_verifies_and_rotates_the_base() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    _incremental(activities, calls)
    status = _run(activities, max_parallel=1)
    assert status.output["status"] == "Succeeded"
    assert {d["kind"] for d in status.output["disks"]} == {"incremental"}
    assert {(d["bytesMoved"], d["bytesChanged"]) for d in status.output["disks"]} == {(64 << 10, 64 << 10)}
    names = [name for name, _ in calls]
    # Two grants a disk (tonight's snapshot and the base), both revoked; one listing and two batches.
    assert names.count(act.BEGIN_GRANT_ACCESS) == names.count(act.BEGIN_REVOKE_ACCESS) == 6
    assert names.count(act.LIST_CHANGES) == 3 and names.count(act.APPLY_BATCH) == 6
    assert names.count(act.START_COPY) == 0
    # The old base is retired after the new point is recorded, never before.
    for disk in ("a", "b", "c"):
        mine = [n for n, d in calls if isinstance(d, dict) and disk in json.dumps(d)]
        assert mine.index(act.RECORD_RESTORE_POINT) < mine.index(act.BEGIN_RETIRE_BASE)
    points = [d for n, d in calls if n == act.RECORD_RESTORE_POINT]
    assert {(p["kind"], p["baseSnapshotId"], p["requests"]) for p in points} == {
        ("incremental", BASE["snapshotId"], 3)
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            # Wrong after the incremental apply (it names plan blobs), right after the full copy.
            {act.VERIFY_CONTENT: lambda d: {"equal": not d["planBlobs"], "problem": "content differs"}},
            "verification failed: content differs",
        ),
        (
            {act.LIST_CHANGES: lambda d: {
                "part": d["part"], "batches": 1, "changedBytes": 900 << 10, "clearedBytes": 0,
                "moveBytes": 900 << 10, "ranges": 1, "writes": 1, "clears": 0, "listRequests": 1,
                "nextMarker": None,
            }},
            "the diff is 88% of the disk, above the 60% (BACKUP_FULL_COPY_PERCENT) where one "
            "server-side copy is cheaper",
        ),
    ],
)  # fmt: skip
def test_an_incremental_night_that_cannot_serve_falls_back_to_a_full_copy_in_the_same_run(
    change: dict[str, Callable[[Any], Any]], reason: str
) -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    _incremental(activities, calls)
    for name, answer in change.items():

        def replaced(data: Any, answer: Callable[[Any], Any] = answer, name: str = name) -> Any:
            calls.append((name, data))
            return answer(data)

        replaced.__name__ = name
        activities[name] = replaced
    status = _run(activities, max_parallel=1)
    assert status.output["status"] == "Succeeded", status.output
    assert {(d["kind"], d["fullCopyReason"]) for d in status.output["disks"]} == {("full", reason)}
    names = [name for name, _ in calls]
    assert names.count(act.START_COPY) == 3  # the fallback copy, in this run
    points = [d for n, d in calls if n == act.RECORD_RESTORE_POINT]
    assert {(p["status"], p["kind"], p["fullCopyReason"]) for p in points} == {("Succeeded", "full", reason)}


def test_a_disk_another_run_is_writing_is_skipped_untouched() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    busy = {"acquired": False, "holder": "nightly-20261126T010000Z", "since": "2026-11-26T01:00:00.000Z"}

    def acquire(data: Any) -> Any:
        calls.append((act.ACQUIRE_WRITER_LEASE, data))
        return busy

    acquire.__name__ = act.ACQUIRE_WRITER_LEASE
    activities[act.ACQUIRE_WRITER_LEASE] = acquire
    status = _run(activities, max_parallel=1)
    assert status.output["status"] == "Failed"
    assert {d["code"] for d in status.output["disks"]} == {"WriterBusy"}
    assert {d["reason"] for d in status.output["disks"]} == {
        "lease: skipped: run nightly-20261126T010000Z has been writing this disk's backup since "
        "2026-11-26T01:00:00.000Z (one writer per disk)"
    }
    names = [name for name, _ in calls]
    # Nothing of the other run's is touched: no snapshot, no grant, no lease release, no plan deleted.
    for step in (act.BEGIN_SNAPSHOT, act.BEGIN_GRANT_ACCESS, act.FINISH_WRITING):
        assert names.count(step) == 0, step
    assert [d["status"] for n, d in calls if n == act.RECORD_RESTORE_POINT] == ["Failed"] * 3


# -- lanes ----------------------------------------------------------------------------------------------


def test_disks_are_dealt_to_lanes_largest_first_and_come_back_in_selection_order() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    sizes = {"a": 1 << 20, "b": 64 << 30, "c": 2 << 20, "d": 1 << 20, "e": 32 << 30, "f": 1 << 20}
    disks = [{**_disk(name), "sizeBytes": size} for name, size in sizes.items()]
    activities[act.RESOLVE_SELECTION] = _answers(disks)
    lanes: list[list[str]] = []

    def lane_inputs(host: LocalHost) -> None:
        for lane in range(2):
            status = host.get_status(lane_id("run-1", lane))
            assert status is not None
            lanes.append([job["disk"]["name"] for job in status.input["jobs"]])

    status = _run(activities, max_parallel=2, inspect=lane_inputs)
    assert status.output["status"] == "Succeeded"
    # The 64 GiB disk alone; the 32 GiB one first in the other lane, the small ones after it.
    assert lanes == [["b"], ["e", "c", "a", "d", "f"]]
    assert [d["diskName"] for d in status.output["disks"]] == list(sizes)
    assert [d["sizeBytes"] for d in status.output["disks"]] == list(sizes.values())


def test_a_lane_continues_as_new_and_keeps_every_result_in_order() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    names = [f"disk{i:02d}" for i in range(LANE_DISKS_PER_EXECUTION * 2 + 3)]
    activities[act.RESOLVE_SELECTION] = _answers([_disk(name) for name in names])
    lane_counts: list[Any] = []
    lanes: list[Any] = []
    status = _run(
        activities,
        max_parallel=1,
        lanes=lanes,
        inspect=lambda host: lane_counts.append(host.counts(lane_id("run-1", 0))),
    )
    assert status.output["status"] == "Succeeded" and status.output["succeeded"] == len(names)
    assert [d["diskName"] for d in status.output["disks"]] == names
    # Three executions; the history kept is the last one's: three disks, four events each, and a few.
    [counts] = lane_counts
    assert counts.history_events <= 3 * 4 + 6
    # Its custom status counts every disk it had, over all its executions.
    assert lanes == [{"disks": len(names), "succeeded": len(names), "failed": 0}]


# -- waits in sub-orchestrations ------------------------------------------------------------------------

IN_PROGRESS = {"state": "InProgress", "retryAfter": None, "operation": {"kind": "op"}}
DONE = {"state": "Succeeded", "retryAfter": None, "operation": {"kind": "op"}}


def _pending(copied: int) -> dict[str, Any]:
    return {"copyId": "c1", "status": "pending", "copied": copied, "total": 9}


def test_waits_run_as_watches_and_a_long_copy_keeps_a_short_history() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    activities[act.RESOLVE_SELECTION] = _answers([_disk("a")])
    activities[act.BEGIN_SNAPSHOT] = lambda data: {**IN_PROGRESS, "snapshotId": data["disk"]["id"] + "-snap"}
    activities[act.POLL_OPERATION] = _answers(IN_PROGRESS, DONE, DONE, DONE, DONE)
    activities[act.START_COPY] = _answers(_pending(0))
    polls = 40
    copy_answers = [_pending(i % 9) for i in range(1, polls)]
    activities[act.COPY_STATUS] = _answers(*copy_answers, {**_pending(9), "status": "success"})
    seen: dict[str, Any] = {}

    def histories(host: LocalHost) -> None:
        disk = sub_orchestration_id("run-1", 0)
        seen["disk"] = host.history(disk)
        seen["snapshot"] = host.history(operation_watch_id(disk, "snapshot creation"))
        seen["snapshot counts"] = host.counts(operation_watch_id(disk, "snapshot creation"))
        seen["copy"] = host.history(copy_watch_id(disk))
        seen["copy status"] = host.get_status(copy_watch_id(disk))
        seen["copy counts"] = host.counts(copy_watch_id(disk))

    status = _run(activities, max_parallel=1, inspect=histories, poll_initial_seconds=5, poll_max_seconds=60)
    assert status.output["status"] == "Succeeded", status.output
    # Each operation and the copy are started and followed in a watch: the snapshot's begin and two
    # polls, the copy's start and its polls, are none of them in the disk's history.
    kinds = [e["EventType"] for e in seen["disk"]]
    assert EventType.TIMER_CREATED not in kinds
    assert [
        e["Name"] for e in seen["disk"] if e["EventType"] == EventType.SUB_ORCHESTRATION_INSTANCE_CREATED
    ] == [
        OPERATION_WATCH_ORCHESTRATOR,  # snapshot creation
        OPERATION_WATCH_ORCHESTRATOR,  # access grant
        COPY_WATCH_ORCHESTRATOR,
        OPERATION_WATCH_ORCHESTRATOR,  # access revocation
        OPERATION_WATCH_ORCHESTRATOR,  # tagging the diff base
    ]
    scheduled = {e["Name"] for e in seen["disk"] if e["EventType"] == EventType.TASK_SCHEDULED}
    assert not scheduled & {act.BEGIN_SNAPSHOT, act.BEGIN_GRANT_ACCESS, act.START_COPY, act.POLL_OPERATION}
    # The begin and two polls, one poll per execution of its watch: the history kept is the last one's.
    assert seen["snapshot counts"].activity_executions == 3
    assert sum(1 for e in seen["snapshot"] if e["EventType"] == EventType.TIMER_CREATED) == 1
    assert len(seen["snapshot"]) <= 12
    # The start and forty polls of the copy, the same way.
    assert seen["copy counts"].activity_executions == 1 + polls
    assert len(seen["copy"]) <= 12 and len(seen["disk"]) <= 60
    assert seen["copy status"].custom_status == {"bytesCopied": 9, "bytesTotal": 9, "polls": polls}
    last = json.loads(json.loads(seen["copy"][1]["Input"]))
    assert (last["polls"], last["delay"]) == (polls - 1, 60)  # the delay doubled to the cap and stayed


@pytest.mark.parametrize(
    ("begin", "phase", "code"),
    [
        (act.BEGIN_GRANT_ACCESS, "grant", "OperationFailed"),
        (act.BEGIN_SNAPSHOT, "snapshot", "SnapshotFailed"),
    ],
)
def test_a_failure_in_a_watch_fails_the_disk_with_the_same_code_and_reason(
    begin: str, phase: str, code: str
) -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    activities[act.RESOLVE_SELECTION] = _answers([_disk("a"), _disk("b")])
    activities[begin] = lambda data: {**IN_PROGRESS, "snapshotId": "/subscriptions/s/snapshots/x"}
    busy = OperationFailedError(status="Failed", code="DiskBusy", error_message="the disk is busy")
    activities[act.POLL_OPERATION] = _answers(ActivityFailure(describe(busy)))  # as the app's wrapper raises
    status = _run(activities, max_parallel=2)
    assert status.output["status"] == "Failed"
    assert {(d["phase"], d["code"], d["reason"]) for d in status.output["disks"]} == {
        (phase, code, f"{phase}: operation ended Failed: DiskBusy: the disk is busy")
    }
    names = [name for name, _ in calls]
    assert names.count(act.BEGIN_DELETE_SNAPSHOT) == 2
    assert names.count(act.BEGIN_REVOKE_ACCESS) == (2 if phase == "grant" else 0)


def test_a_copy_that_outlives_its_deadline_fails_its_disk() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    activities[act.RESOLVE_SELECTION] = _answers([_disk("a")])
    activities[act.START_COPY] = _answers(_pending(0))
    activities[act.COPY_STATUS] = _answers(_pending(3))
    status = _run(activities, max_parallel=1, copy_timeout_minutes=2, poll_max_seconds=60)
    [disk] = status.output["disks"]
    assert (disk["status"], disk["phase"], disk["code"]) == ("Failed", "copy", "DeadlineExceeded")
    assert disk["reason"].startswith(
        "copy: copy (at 3 of 9 bytes) did not finish by its deadline (2026-11-26T01:02:"
    )


# -- retries of idempotent activities, read access that outlives its SAS -----------------------------


def _busy() -> ActivityFailure:
    """What the app's activity wrapper raises after the transport's own retries met 503 ServerBusy."""
    busy = ServerError(
        status=503,
        code="ServerBusy",
        error_message="The server is busy.",
        method="PUT",
        url="http://127.0.0.1:1/devstoreaccount1/c/b.vhd",
    )
    return ActivityFailure(describe(busy))


def _forbidden() -> ActivityFailure:
    denied = AuthenticationError(
        status=403, code="AuthorizationFailure", error_message="This request is not authorized."
    )
    return ActivityFailure(describe(denied))


def _counting(name: str, calls: list[tuple[str, Any]], *answers: Any) -> Callable[[Any], Any]:
    """An activity that records its calls and answers each of ``answers`` in turn (then the last); an
    answer that is a function is called with the input."""
    answer = _answers(*answers)

    def activity(data: Any) -> Any:
        calls.append((name, data))
        given = answer(data)
        return given(data) if callable(given) else given

    activity.__name__ = name
    return activity


def _started(history: list[dict[str, Any]], name: str) -> list[datetime]:
    """When each call of activity ``name`` was scheduled in ``history`` (by the orchestration's clock)."""
    now, out = None, []
    for event in history:
        if event["EventType"] == EventType.ORCHESTRATOR_STARTED:
            now = parse_timestamp(event["Timestamp"])
        elif event["EventType"] == EventType.TASK_SCHEDULED and event["Name"] == name:
            assert now is not None
            out.append(now)
    return out


def test_a_transient_failure_is_retried_after_a_durable_timer_and_costs_only_time() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    activities[act.RESOLVE_SELECTION] = _answers([_disk("a")])
    copy = {"copyId": "c1", "status": "success", "copied": 9, "total": 9}
    activities[act.START_COPY] = _counting(act.START_COPY, calls, _busy(), _busy(), copy)
    histories: list[Any] = []
    status = _run(
        activities,
        max_parallel=1,
        # The copy is started in its watch (which ends at once: the copy answered success).
        inspect=lambda host: histories.append(host.history(copy_watch_id("run-1-disk-0000"))),
    )
    [disk] = status.output["disks"]
    assert disk["status"] == "Succeeded", disk
    assert [name for name, _ in calls].count(act.START_COPY) == 3
    # The same input each time (the activity finds its own copy), after 5 s and then 10 s.
    inputs = [json.dumps(data, sort_keys=True) for name, data in calls if name == act.START_COPY]
    assert len(set(inputs)) == 1
    started = _started(histories[0], act.START_COPY)
    assert [(b - a).total_seconds() for a, b in pairwise(started)] == [5, 10]


def test_a_failure_that_will_not_change_is_not_retried() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    activities[act.RESOLVE_SELECTION] = _answers([_disk("a")])
    activities[act.START_COPY] = _counting(act.START_COPY, calls, _forbidden())
    status = _run(activities, max_parallel=1)
    [disk] = status.output["disks"]
    assert (disk["status"], disk["phase"], disk["code"]) == ("Failed", "copy", "AccessDenied")
    assert [name for name, _ in calls].count(act.START_COPY) == 1


def test_retries_are_bounded_by_their_count_and_by_the_phases_deadline() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    activities[act.RESOLVE_SELECTION] = _answers([_disk("a"), _disk("b")])
    activities[act.SNAPSHOT_BACKUP_BLOB] = _counting(act.SNAPSHOT_BACKUP_BLOB, calls, _busy())

    def begin_snapshot(data: Any) -> Any:
        calls.append((act.BEGIN_SNAPSHOT, data))
        if data["disk"]["name"] == "b":
            raise _busy()
        return {"state": "Succeeded", "retryAfter": None, "operation": {}, "snapshotId": "x-snap"}

    activities[act.BEGIN_SNAPSHOT] = begin_snapshot
    status = _run(activities, max_parallel=1, snapshot_timeout_minutes=1)
    results = {d["diskName"]: d for d in status.output["disks"]}
    # Disk a: the restore point's blob snapshot failed transiently six times (the default count).
    assert (results["a"]["phase"], results["a"]["code"]) == ("record", "BackendUnavailable")
    assert [name for name, _ in calls].count(act.SNAPSHOT_BACKUP_BLOB) == 6
    # Disk b: retries of its snapshot stop at the snapshot's 1-minute deadline: 5 + 10 + 20 s waited,
    # and a fourth wait (40 s) would end past it.
    begun = [data["disk"]["name"] for name, data in calls if name == act.BEGIN_SNAPSHOT]
    assert begun.count("b") == 4
    assert (results["b"]["phase"], results["b"]["code"]) == ("snapshot", "BackendUnavailable")
    assert results["b"]["reason"] == ("snapshot: Azure answered HTTP 503 ServerBusy: The server is busy.")
    # Its snapshot may exist though ARM never answered: the name it would have is deleted (no error if
    # absent), and nothing was granted.
    deleted = [data["snapshotId"] for name, data in calls if name == act.BEGIN_DELETE_SNAPSHOT]
    assert any(name.endswith(snapshot_name("run-1", _disk("b")["id"])) for name in deleted)


def test_a_watch_rides_out_a_transient_poll_failure() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    activities[act.RESOLVE_SELECTION] = _answers([_disk("a")])
    activities[act.BEGIN_SNAPSHOT] = lambda data: {**IN_PROGRESS, "snapshotId": data["disk"]["id"] + "-snap"}
    activities[act.POLL_OPERATION] = _answers(_busy(), _busy(), DONE)
    activities[act.START_COPY] = _answers(_pending(0))
    activities[act.COPY_STATUS] = _answers(_busy(), {**_pending(9), "status": "success"})
    status = _run(activities, max_parallel=1)
    assert status.output["status"] == "Succeeded", status.output


def test_a_copy_whose_source_access_ran_out_is_copied_again_with_a_longer_grant() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    activities[act.RESOLVE_SELECTION] = _answers([_disk("a")])
    grants = iter(range(100))
    activities[act.BEGIN_GRANT_ACCESS] = _counting(
        act.BEGIN_GRANT_ACCESS, calls, lambda data: {**DONE, "operation": {"grant": next(grants)}}
    )
    expired = CopyFailedError('copy failed: 403 AuthenticationFailed "Access to the copy source expired."')
    success = {**_pending(9), "status": "success"}
    activities[act.START_COPY] = _counting(act.START_COPY, calls, _pending(0))
    activities[act.COPY_STATUS] = _answers(ActivityFailure(describe(expired)), success)
    status = _run(activities, max_parallel=1, sas_minutes=60)
    [disk] = status.output["disks"]
    assert disk["status"] == "Succeeded", disk
    granted = [data for name, data in calls if name == act.BEGIN_GRANT_ACCESS]
    copies = [data for name, data in calls if name == act.START_COPY]
    # A second grant, twice as long as the first, and the copy started again from it.
    assert [g["durationSeconds"] for g in granted] == [60 * 60, 120 * 60]
    assert [c["grant"] for c in copies] == [{"grant": 0}, {"grant": 1}]


def test_a_copy_whose_source_is_gone_fails_at_once_and_is_not_copied_again() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    activities[act.RESOLVE_SELECTION] = _answers([_disk("a")])
    gone = CopyFailedError('copy failed: 404 BlobNotFound "The specified blob does not exist."')
    activities[act.START_COPY] = _counting(act.START_COPY, calls, _pending(0))
    activities[act.COPY_STATUS] = _answers(ActivityFailure(describe(gone)))
    status = _run(activities, max_parallel=1)
    [disk] = status.output["disks"]
    assert (disk["status"], disk["phase"], disk["code"]) == ("Failed", "copy", "CopyFailed")
    assert [name for name, _ in calls].count(act.START_COPY) == 1


def test_read_access_is_renewed_before_it_runs_out_and_the_work_reads_the_new_grant() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    _incremental(activities, calls)
    activities[act.RESOLVE_SELECTION] = _answers([_disk("a")])
    grants = iter(range(100))
    activities[act.BEGIN_GRANT_ACCESS] = _counting(
        act.BEGIN_GRANT_ACCESS, calls, lambda data: {**DONE, "operation": {"grant": next(grants)}}
    )
    applied = {"bytesMoved": 32 << 10, "writes": 2, "clears": 0}
    # The first batch meets a bad few minutes: retried after 100 s and 200 s (orchestration time), so
    # tonight's 5-minute grant has less than its margin (a quarter, 75 s) left when the next batch starts.
    activities[act.APPLY_BATCH] = _counting(act.APPLY_BATCH, calls, _busy(), _busy(), applied)
    status = _run(
        activities,
        max_parallel=1,
        sas_minutes=5,
        retry=ActivityRetry(attempts=6, first_seconds=100, max_seconds=600),
    )
    [disk] = status.output["disks"]
    assert disk["status"] == "Succeeded", disk
    granted = [data["snapshotId"] for name, data in calls if name == act.BEGIN_GRANT_ACCESS]
    tonight = _disk("a")["id"] + "-snap"
    assert granted[:2] == [tonight, BASE["snapshotId"]]
    assert granted[2:] == [tonight]  # renewed once; the base, read only while listing, was not
    batches = [data["grant"] for name, data in calls if name == act.APPLY_BATCH]
    assert batches[:3] == [{"grant": 0}] * 3 and set(map(str, batches[3:])) == {str({"grant": 2})}
    # Every grant is revoked at the end, each snapshot once.
    revoked = [data["snapshotId"] for name, data in calls if name == act.BEGIN_REVOKE_ACCESS]
    assert sorted(revoked) == sorted([tonight, BASE["snapshotId"]])


def test_a_throttled_activity_is_not_retried_before_the_retry_after_it_was_given() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    throttled = ThrottledError(
        status=429, code="TooManyRequests", error_message="slow down", url="https://x/", retry_after=40
    )
    activities[act.RESOLVE_SELECTION] = _counting(
        act.RESOLVE_SELECTION, calls, ActivityFailure(describe(throttled)), [_disk("a")]
    )
    histories: list[Any] = []
    status = _run(activities, max_parallel=1, inspect=lambda host: histories.append(host.history("run-1")))
    assert status.output["status"] == "Succeeded", status.output
    started = _started(histories[0], act.RESOLVE_SELECTION)
    assert [(b - a).total_seconds() for a, b in pairwise(started)] == [40]  # not the 5 s backoff


# -- prunes: a wave's failed calls only, each disk's work counted once ---------------------------------------


def _prune(
    activities: dict[str, Callable[[Any], Any]], disks: list[str], after_run_id: str | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run one prune of ``disks`` (named by their short names) to its end; its summary and history."""
    request = PruneInput(
        trigger="cli",
        selection=Selection(kind="diskIds", disk_ids=tuple(_disk(name)["id"] for name in disks)),
        policy="daily=1",
        options=PruneOptions("c", max_parallel=len(disks), deletes_per_call=2),
        after_run_id=after_run_id,
    )
    with LocalHost(_app(activities), clock=VirtualClock(datetime(2026, 11, 26, 3, tzinfo=UTC))) as host:
        host.start_new(PRUNE_ORCHESTRATOR, input=request.to_json(), instance_id="prune-1")
        status = host.wait_for_completion("prune-1", timeout=60)
        history = host.history("prune-1")
    assert status.runtime_status == "Completed", status.output
    return dict(status.output), history


def _pruned(data: Any, expired: int, *, more: bool = False) -> dict[str, Any]:
    """A prune_disk answer: ``expired`` points expired (and their data deleted) by this call."""
    return {
        "diskId": data["diskId"],
        "kept": 2,
        "expiring": 4,
        "expired": expired,
        "deleted": expired,
        "heldCount": 0,
        "held": [],
        "deferred": 0,
        "deferredProblem": None,
        "more": more,
        "items": [],
    }


def test_a_prune_wave_calls_again_only_the_disk_whose_call_failed_transiently() -> None:
    calls: list[tuple[str, Any]] = []
    # Disk b: its first call meets a busy catalog; c: a transient failure after it changed rows answers
    # what it did with "more", and is called again.
    answers = {
        "a": [lambda d: _pruned(d, 4)],
        "b": [_busy(), lambda d: _pruned(d, 4)],
        "c": [lambda d: _pruned(d, 1, more=True), lambda d: _pruned(d, 3)],
    }

    def prune_disk(data: Any) -> Any:
        name = data["diskId"].rsplit("/", 1)[1]
        calls.append((name, data))
        given = answers[name].pop(0) if len(answers[name]) > 1 else answers[name][0]
        if isinstance(given, Exception):
            raise given
        return given(data)

    summary, history = _prune({act.PRUNE_DISK: prune_disk}, ["a", "b", "c"])
    assert [name for name, _ in calls].count("a") == 1  # its first call's answer stands: not called again
    assert [name for name, _ in calls].count("b") == 2
    assert [name for name, _ in calls].count("c") == 2
    assert len({json.dumps(d, sort_keys=True) for name, d in calls if name == "b"}) == 1  # the same input
    assert (summary["disks"], summary["failedDisks"], summary["expired"], summary["deleted"]) == (
        3,
        0,
        12,
        12,
    )
    assert [r["expired"] for r in summary["results"]] == [4, 4, 4]
    # b's second call came after the policy's first wait (5 s), on a durable timer.
    started = _started(history, act.PRUNE_DISK)
    assert len(started) == 5 and (started[-1] - started[0]).total_seconds() >= 5
    assert any(e["EventType"] == EventType.TIMER_CREATED for e in history)


def test_a_prune_call_that_fails_for_good_is_reported_at_once_and_the_others_stand() -> None:
    calls: list[str] = []

    def prune_disk(data: Any) -> Any:
        name = data["diskId"].rsplit("/", 1)[1]
        calls.append(name)
        if name == "b":
            raise _forbidden()
        return _pruned(data, 4)

    summary, history = _prune({act.PRUNE_DISK: prune_disk}, ["a", "b"])
    assert sorted(calls) == ["a", "b"]  # no retry of b, and a not asked twice
    assert (summary["failedDisks"], summary["expired"]) == (1, 4)
    [a, b] = summary["results"]
    assert a["expired"] == 4 and b["code"] == "AccessDenied" and "403" in b["reason"]
    assert not any(e["EventType"] == EventType.TIMER_CREATED for e in history)


def test_a_prune_that_cannot_read_whether_its_run_ended_prunes_anyway_and_says_so() -> None:
    calls: list[str] = []
    run_finished = _counting(act.RUN_FINISHED, [], _forbidden())

    def prune_disk(data: Any) -> Any:
        calls.append(data["diskId"])
        return _pruned(data, 1)

    summary, _ = _prune({act.RUN_FINISHED: run_finished, act.PRUNE_DISK: prune_disk}, ["a"], "run-1")
    assert summary["expired"] == 1 and len(calls) == 1
    [warning] = summary["warnings"]
    assert warning.startswith("whether run run-1 had ended could not be read (") and "403" in warning
