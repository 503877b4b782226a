"""Progress output: bars redrawn in place on a terminal, change lines elsewhere, and the summary."""

from __future__ import annotations

import io

from backup.local.progress import ProgressView, counts_line, disk_line, summary_lines
from backup.local.runner import DiskProgress, RunProgress


def _report(phase: str, copied: int) -> RunProgress:
    disks = [
        DiskProgress(0, "os", "copy", copied, 1 << 20, "Running"),
        DiskProgress(1, "data-disk", "snapshot", 0, 2 << 20, "Running"),
    ]
    return RunProgress("run-1", "Running", phase, disks)


def test_bar_shows_fraction_phase_and_bytes() -> None:
    line = disk_line(DiskProgress(0, "os", "copy", 1 << 19, 1 << 20, "Running"), 4)
    assert line == "  os   [############------------]  50.0%  copy     0.5 MiB / 1.0 MiB"
    done = disk_line(DiskProgress(0, "os", "done", 0, 0, "Completed"), 2)
    assert "[########################] 100.0%  done" in done


def test_terminal_output_redraws_in_place() -> None:
    out = io.StringIO()
    view = ProgressView(out, tty=True)
    view(_report("backing up", 0))
    first = out.getvalue()
    assert first.startswith("\x1b[2K")  # the first draw moves nowhere: it just writes its lines
    view(_report("backing up", 1 << 20))
    second = out.getvalue()[len(first) :]
    assert second.startswith("\x1b[3F")  # back over the three lines drawn before
    assert second.count("\x1b[2K") == 3 and "100.0%" in second


def test_plain_output_logs_only_changes() -> None:
    out = io.StringIO()
    view = ProgressView(out, tty=False, clock=lambda: 7.0)
    view(_report("backing up", 0))
    view(_report("backing up", 1 << 19))  # progress only: nothing new to say
    assert out.getvalue() == "run run-1: backing up (elapsed 0:00)\n  os: copy\n  data-disk: snapshot\n"


def test_summary_lines() -> None:
    lines = summary_lines(
        {
            "runId": "r",
            "trigger": "cli",
            "selection": {"kind": "configured"},
            "startedAt": "2026-11-29T01:00:00.000Z",
            "finishedAt": "2026-11-29T01:02:05.000Z",
            "status": "PartiallySucceeded",
            "succeeded": 1,
            "diskCount": 2,
            "disks": [
                {
                    "diskId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/a",
                    "status": "Succeeded",
                    "phase": "done",
                    "diskName": "a",
                    "sizeBytes": 1 << 20,
                    "blobUrl": "https://x/c/a/chain.vhd",
                    "blobSnapshot": "2026-11-29T01:00:09.0000000Z",
                    "kind": "incremental",
                    "bytesMoved": 1 << 19,
                },
                {
                    "diskId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/b",
                    "status": "Failed",
                    "phase": "copy",
                    "diskName": "b",
                    "reason": "copy: failed",
                    "warnings": ["snapshot kept"],
                },
            ],
        }
    )
    assert lines == [
        "run r: PartiallySucceeded — 1 of 2 disks backed up",
        "  moved 512.0 KiB of disks totalling 1.0 MiB in 2:05 (1 incremental, 0 full)",
        "  ok      a: 1.0 MiB (incremental, 0.5 MiB moved) -> "
        "https://x/c/a/chain.vhd?snapshot=2026-11-29T01:00:09.0000000Z",
        "  FAILED  b: copy: failed",
        "          warning: snapshot kept",
    ]
    # An orchestration that failed outright: its text (stack traces) is for the log, not the screen.
    assert summary_lines("Orchestrator function 'backup_run' failed: Traceback ...") == [
        "run failed: an unexpected error occurred; the log has the details"
    ]


def test_counts_line_in_workflow_order() -> None:
    counts = {"waiting": 5, "copy": 3, "snapshot": 1, "succeeded": 3, "failed": 0, "total": 12}
    assert counts_line(counts) == "  12 disks: 5 waiting, 1 snapshot, 3 copy, 3 succeeded, 0 failed"
    assert counts_line({}) == ""


def test_terminal_output_clears_lines_of_disks_no_longer_at_work() -> None:
    out = io.StringIO()
    view = ProgressView(out, tty=True)
    view(_report("backing up", 0))
    drawn = len(out.getvalue())
    view(RunProgress("run-1", "Running", "backing up", [], counts={"succeeded": 2, "total": 2}))
    again = out.getvalue()[drawn:]
    assert again.startswith("\x1b[3F") and again.endswith("\x1b[J")  # two lines now: the rest cleared
    assert "2 disks: 2 succeeded, 0 failed" in again
