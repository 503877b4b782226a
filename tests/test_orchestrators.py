"""The orchestrators' own logic under the real replay engine, with activities we own standing in for Azure.

The end-to-end tests run the real activities against the proving ground; these swap in small activity
functions (a seam the app owns: activities are called by name) to reach paths the emulator cannot
easily produce, such as the catalog failing only at the very end of a run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df

from backup.app.blueprint import register_orchestrators
from backup.local.durable_host import LocalHost, VirtualClock
from backup.workflow import activity_names as act
from backup.workflow.models import RUN_ORCHESTRATOR, RunInput, RunOptions, Selection

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
        act.BEGIN_SNAPSHOT: record(
            act.BEGIN_SNAPSHOT, lambda d: {**done, "snapshotId": d["disk"]["id"] + "-snap"}
        ),
        act.POLL_OPERATION: record(act.POLL_OPERATION, done),
        act.BEGIN_GRANT_ACCESS: record(act.BEGIN_GRANT_ACCESS, done),
        act.START_COPY: record(
            act.START_COPY, {"copyId": "c1", "status": "success", "copied": 9, "total": 9}
        ),
        act.COPY_STATUS: record(
            act.COPY_STATUS, {"copyId": "c1", "status": "success", "copied": 9, "total": 9}
        ),
        act.VERIFY_BACKUP: record(act.VERIFY_BACKUP, {"sizeBytes": (1 << 20) + 512, "diskBytes": 1 << 20}),
        act.BEGIN_REVOKE_ACCESS: record(act.BEGIN_REVOKE_ACCESS, done),
        act.RECORD_RESTORE_POINT: record(act.RECORD_RESTORE_POINT, {"blobUrl": "https://x/c/b.vhd"}),
        act.BEGIN_DELETE_SNAPSHOT: record(act.BEGIN_DELETE_SNAPSHOT, done),
    }


def _run(activities: dict[str, Callable[[Any], Any]], max_parallel: int = 2) -> Any:
    run = RunInput(
        "http",
        Selection(kind="resourceGroup", resource_group="rg"),
        RunOptions("c", max_parallel=max_parallel),
    )
    with LocalHost(_app(activities), clock=VirtualClock(datetime(2026, 11, 26, 1, tzinfo=UTC))) as host:
        host.start_new(RUN_ORCHESTRATOR, input=run.to_json(), instance_id="run-1")
        return host.wait_for_completion("run-1", timeout=60)


def test_every_disk_through_every_phase_in_lanes() -> None:
    calls: list[tuple[str, Any]] = []
    status = _run(_happy_activities(calls))
    assert status.runtime_status == "Completed"
    assert status.output["status"] == "Succeeded" and status.output["succeeded"] == 3
    names = [name for name, _ in calls]
    # Every operation answered Succeeded at once, so no polls: one call of each step per disk.
    for step in (
        act.BEGIN_SNAPSHOT,
        act.BEGIN_GRANT_ACCESS,
        act.START_COPY,
        act.VERIFY_BACKUP,
        act.BEGIN_REVOKE_ACCESS,
        act.RECORD_RESTORE_POINT,
        act.BEGIN_DELETE_SNAPSHOT,
    ):
        assert names.count(step) == 3, step
    assert names.count(act.POLL_OPERATION) == names.count(act.COPY_STATUS) == 0
    assert [data["status"] for name, data in calls if name == act.RECORD_RUN] == ["Running", "Succeeded"]
    assert [d["diskName"] for d in status.output["disks"]] == ["a", "b", "c"]  # in selection order


def test_a_catalog_that_fails_at_the_end_does_not_undo_the_backups() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)
    record = activities[act.RECORD_RUN]

    def record_run(data: Any) -> Any:
        if data["status"] != "Running":
            raise ConnectionError("the table service is down")
        return record(data)

    record_run.__name__ = act.RECORD_RUN
    activities[act.RECORD_RUN] = record_run
    status = _run(activities)
    assert status.runtime_status == "Completed"
    assert status.output["status"] == "Succeeded"
    assert status.output["warnings"] == [
        "run not recorded in the catalog: Activity function 'record_run' failed: "
        "ConnectionError: the table service is down"
    ]


def test_a_failing_activity_fails_its_disk_revokes_and_cleans_up() -> None:
    calls: list[tuple[str, Any]] = []
    activities = _happy_activities(calls)

    def verify_backup(data: Any) -> Any:
        raise RuntimeError("size is 1 bytes")

    activities[act.VERIFY_BACKUP] = verify_backup
    status = _run(activities, max_parallel=1)
    assert status.output["status"] == "Failed" and status.output["failed"] == 3
    reasons = {d["reason"] for d in status.output["disks"]}
    assert reasons == {"verify: Activity function 'verify_backup' failed: RuntimeError: size is 1 bytes"}
    names = [name for name, _ in calls]
    assert names.count(act.BEGIN_REVOKE_ACCESS) == 3 and names.count(act.BEGIN_DELETE_SNAPSHOT) == 3
    failed_points = [data for name, data in calls if name == act.RECORD_RESTORE_POINT]
    assert [p["status"] for p in failed_points] == ["Failed"] * 3
