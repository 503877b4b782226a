"""Showing a run's progress: bars redrawn in place on a terminal, plain lines of changes elsewhere.

A run of many disks shows one line of counts by phase and a bar for each disk at work (at most one per
lane), not a line per disk.
"""

from __future__ import annotations

from typing import TextIO

from backup.local.runner import DiskProgress, RunProgress
from backup.workflow.models import RunSummary

_BAR = 24
_PHASES = ("snapshot", "grant", "copy", "verify", "revoke", "record", "cleanup", "done")


def mib(value: int) -> str:
    """Bytes as MiB with one decimal."""
    return f"{value / (1 << 20):.1f} MiB"


def counts_line(counts: dict[str, int]) -> str:
    """``  12 disks: 3 copy, 1 snapshot, 5 waiting, 3 succeeded, 0 failed`` (phases in workflow order)."""
    if not counts:
        return ""
    total = counts.get("total", 0)
    order = ["waiting", *_PHASES[:-1], "succeeded", "failed"]
    shown = [k for k in order if counts.get(k)] or ["waiting"]
    shown += [k for k in counts if k not in order and k != "total" and counts[k]]
    for always in ("succeeded", "failed"):
        if always not in shown:
            shown.append(always)
    return f"  {total} disks: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in shown)


def disk_line(disk: DiskProgress, name_width: int) -> str:
    """One disk: name, a bar, percent copied, phase, bytes."""
    if disk.phase in ("done",):
        fraction = 1.0
    elif disk.bytes_total > 0:
        fraction = min(1.0, disk.bytes_copied / disk.bytes_total)
    else:
        fraction = 0.0
    filled = round(fraction * _BAR)
    bar = "#" * filled + "-" * (_BAR - filled)
    copied = f"{mib(disk.bytes_copied)} / {mib(disk.bytes_total)}" if disk.bytes_total else ""
    return f"  {disk.name:<{name_width}} [{bar}] {fraction * 100:5.1f}%  {disk.phase:<8} {copied}"


class ProgressView:
    """Draws :class:`RunProgress` reports to ``out``: redrawn in place on a TTY, changes only otherwise."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self._lines_drawn = 0
        self._seen: dict[int, str] = {}
        self._phase = ""

    def __call__(self, progress: RunProgress) -> None:
        """Show one report."""
        if self.tty:
            self._redraw(progress)
        else:
            self._log_changes(progress)

    def _redraw(self, progress: RunProgress) -> None:
        width = max((len(d.name) for d in progress.disks), default=4)
        lines = [f"run {progress.run_id}: {progress.runtime_status.lower()} ({progress.phase or 'starting'})"]
        if progress.counts:
            lines.append(counts_line(progress.counts))
        lines += [disk_line(d, width) for d in progress.disks]
        if self._lines_drawn:
            self.out.write(f"\x1b[{self._lines_drawn}F")  # back to the first line drawn last time
        for line in lines:
            self.out.write("\x1b[2K" + line + "\n")
        if len(lines) < self._lines_drawn:
            self.out.write("\x1b[J")  # fewer disks at work than last time: clear what is left below
        self._lines_drawn = len(lines)
        self.out.flush()

    def _log_changes(self, progress: RunProgress) -> None:
        if progress.phase != self._phase:
            self._phase = progress.phase
            self.out.write(f"run {progress.run_id}: {progress.phase or 'starting'}\n")
        for disk in progress.disks:
            if self._seen.get(disk.index) != disk.phase:
                self._seen[disk.index] = disk.phase
                self.out.write(f"  {disk.name}: {disk.phase}\n")
        self.out.flush()


def summary_lines(output: object) -> list[str]:
    """A finished run's summary, one line per disk (the run orchestrator's output).

    An output that is not a summary (the orchestration itself failed: a bug) is not shown here: it is
    the platform's text, with stack traces, for the log.
    """
    summary = RunSummary.read(output)
    if summary is None:
        return ["run failed: an unexpected error occurred; the log has the details"]
    backed_up = f"{summary.succeeded} of {summary.disk_count} disks backed up"
    lines = [f"run {summary.run_id}: {summary.status} — {backed_up}"]
    if summary.reason:
        code = f" [{summary.code}]" if summary.code else ""
        lines.append(f"  reason{code}: {summary.reason}")
    for disk in summary.disks:
        if disk.status == "Succeeded":
            point = f"{disk.blob_url}?snapshot={disk.blob_snapshot}" if disk.blob_snapshot else disk.blob_url
            how = f"{disk.kind or 'full'}, {mib(disk.bytes_moved or disk.bytes_copied or 0)} moved"
            lines.append(f"  ok      {disk.disk_name}: {mib(disk.size_bytes or 0)} ({how}) -> {point}")
            if disk.kind == "full" and disk.full_copy_reason:
                lines.append(f"          full copy: {disk.full_copy_reason}")
        else:
            code = f" [{disk.code}]" if disk.code else ""
            lines.append(f"  FAILED  {disk.disk_name}: {disk.reason}{code}")
        lines.extend(f"          warning: {w}" for w in disk.warnings)
    lines.extend(f"  warning: {w}" for w in summary.warnings)
    return lines
