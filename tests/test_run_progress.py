"""Counting a run's disks by phase and reading one disk's status: pure functions, table tests."""

from __future__ import annotations

from typing import Any

import pytest

from backup.errors import InvalidInputError
from backup.workflow.models import RunSummary, sub_orchestration_id
from backup.workflow.run_progress import (
    DiskView,
    disk_prefix,
    disk_view,
    phase_counts,
    unwrap_token,
    wait_prefix,
    with_copy_progress,
    wrap_token,
)
from backup.workflow.watch import copy_watch_id, operation_watch_id, readiness_watch_id

RUN = "manual-20261201T010000Z-abcd1234"
DISK_ID = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d"


def _status(index: int, runtime: str, custom: Any = None, output: Any = None) -> dict[str, Any]:
    return {
        "name": "backup_disk",
        "instanceId": f"{RUN}-disk-{index:04d}",
        "runtimeStatus": runtime,
        "customStatus": custom,
        "output": output,
    }


def test_disk_view_reads_phase_bytes_and_result() -> None:
    copying = _status(7, "Running", {"disk": "d", "phase": "copy", "bytesCopied": 5, "bytesTotal": 9})
    assert disk_view(RUN, copying) == DiskView(7, f"{RUN}-disk-0007", "Running", "d", "copy", 5, 9)
    fresh = disk_view(RUN, _status(2, "Pending"))
    assert (fresh.index, fresh.name, fresh.phase) == (2, None, "starting")
    result = {"diskId": DISK_ID, "diskName": "d", "status": "Failed", "phase": "copy", "code": "CopyFailed"}
    ended = disk_view(RUN, _status(3, "Completed", {"disk": "d", "phase": "failed"}, result))
    assert ended.phase == "failed" and ended.result is not None and ended.result.code == "CopyFailed"
    assert ended.to_json()["result"]["code"] == "CopyFailed"
    odd = disk_view(RUN, {"instanceId": "elsewhere", "runtimeStatus": "Completed", "output": "text"})
    assert odd.index == -1 and odd.result is None  # not ours: shown, never a crash


def test_a_copying_disk_shows_the_bytes_its_copy_watch_reports() -> None:
    def copying(index: int, copied: int) -> DiskView:
        return DiskView(index, f"{RUN}-disk-{index:04d}", "Running", "d", "copy", copied, 9)

    def watch(instance_id: str, custom: Any) -> dict[str, Any]:
        return {
            "name": "watch_copy",
            "instanceId": instance_id,
            "runtimeStatus": "Running",
            "customStatus": custom,
        }

    disk = sub_orchestration_id(RUN, 3)
    waits = [
        watch(copy_watch_id(disk), {"bytesCopied": 6, "bytesTotal": 9, "polls": 4}),
        watch(copy_watch_id(sub_orchestration_id(RUN, 4)), {"bytesCopied": 99, "bytesTotal": 9}),  # capped
        watch(operation_watch_id(disk, "access grant"), {"bytesCopied": 1, "bytesTotal": 9}),  # not a copy
        watch(copy_watch_id(sub_orchestration_id("another-run", 5)), {"bytesCopied": 1, "bytesTotal": 9}),
        watch(copy_watch_id(sub_orchestration_id(RUN, 6)), "not ours"),
    ]
    views = [copying(3, 0), copying(4, 0), copying(5, 0), copying(6, 2)]
    views.append(DiskView(7, f"{RUN}-disk-0007", "Running", "d", "verify", 9, 9))
    shown = with_copy_progress(RUN, views, waits)
    assert [(v.index, v.bytes_copied, v.bytes_total) for v in shown] == [
        (3, 6, 9),
        (4, 9, 9),
        (5, 0, 9),  # its watch is another run's
        (6, 2, 9),  # its watch's status is not ours
        (7, 9, 9),  # not copying: as it was
    ]
    # A snapshot's background copy: the percent its readiness watch reports.
    waiting = DiskView(8, f"{RUN}-disk-0008", "Running", "v2", "snapshot-copy", snapshot_copy_percent=0.0)
    readiness = {
        "instanceId": readiness_watch_id(sub_orchestration_id(RUN, 8)),
        "customStatus": {"snapshotCopyPercent": 62.5, "accessState": "Pending", "polls": 3},
    }
    [seen] = with_copy_progress(RUN, [waiting], [readiness])
    assert seen.snapshot_copy_percent == 62.5 and seen.to_json()["snapshotCopyPercent"] == 62.5
    # A run's waits are found by their own prefix, never by its disks'.
    assert copy_watch_id(disk).startswith(wait_prefix(RUN)) and not copy_watch_id(disk).startswith(
        disk_prefix(RUN)
    )


@pytest.mark.parametrize(
    ("custom", "lanes", "active", "expected"),
    [
        # Before any lane reported: everything waits but the disks at work.
        ({"disks": 10}, [], ["snapshot", "copy"], {"waiting": 8, "snapshot": 1, "copy": 1}),
        # Lanes count what ended; a disk that set "done" but is not yet counted by its lane succeeded.
        (
            {"disks": 10},
            [{"customStatus": {"disks": 5, "succeeded": 2, "failed": 1}}, {"customStatus": {"succeeded": 3}}],
            ["copy", "done"],
            {"waiting": 2, "copy": 1, "succeeded": 6, "failed": 1},
        ),
        # Lane statuses that are not ours count nothing.
        ({"disks": 3}, [{"customStatus": "x"}, {"customStatus": {"succeeded": -4}}, {}], [], {"waiting": 3}),
        # No total yet (still resolving): nothing is negative.
        ({"phase": "resolving"}, [], ["snapshot"], {"waiting": 0, "snapshot": 1}),
        (None, [], [], {"waiting": 0}),
    ],
)
def test_phase_counts_while_running(
    custom: Any, lanes: list[dict[str, Any]], active: list[str], expected: dict[str, int]
) -> None:
    views = [DiskView(i, f"{RUN}-disk-{i:04d}", "Running", "d", phase) for i, phase in enumerate(active)]
    counts = phase_counts(custom, None, lanes, views)
    total = custom.get("disks", 0) if isinstance(custom, dict) else 0
    assert counts == {"succeeded": 0, "failed": 0, **expected, "total": total}


def test_phase_counts_of_a_finished_run_come_from_its_summary() -> None:
    summary = RunSummary.from_json(
        {
            "runId": RUN,
            "trigger": "cli",
            "selection": {"kind": "configured"},
            "startedAt": "2026-12-01T01:00:00.000Z",
            "status": "PartiallySucceeded",
            "diskCount": 1000,
            "succeeded": 998,
            "failed": 2,
        }
    )
    lanes = [{"customStatus": {"succeeded": 1}}]  # ignored: the summary is the truth
    assert phase_counts({"disks": 5}, summary, lanes, []) == {
        "waiting": 0,
        "succeeded": 998,
        "failed": 2,
        "total": 1000,
    }


def test_tokens_are_bound_to_their_run() -> None:
    token = wrap_token(RUN, "opaque/durable+token==")
    assert unwrap_token(RUN, token) == "opaque/durable+token=="
    for bad in ("", "!!", "x" * 3000, wrap_token("another-run", "t"), wrap_token(RUN, ""), "e30"):
        with pytest.raises(InvalidInputError) as caught:
            unwrap_token(RUN, bad, "continuationToken")
        assert caught.value.field == "continuationToken"
