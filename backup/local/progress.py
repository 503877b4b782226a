"""Showing a run's progress: bars redrawn in place on a terminal, plain lines of changes elsewhere.

A run of many disks shows one line of counts by phase and a bar for each disk at work (at most one per
lane), not a line per disk. As a transfer tool's job view does, it shows the time elapsed, each disk's
throughput and an estimate of its time left (from what it moved since it was first seen), and for the
run an estimate from how fast its disks finish; the closing summary gives bytes moved and duration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from backup.local.runner import DiskProgress, RunProgress
from backup.report import human_bytes
from backup.workflow.models import RunSummary, parse_iso

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


def clock_text(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03`` (hours only when there are any); ``--:--`` when unknown."""
    if seconds is None or seconds < 0 or seconds != seconds:
        return "--:--"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def rate_text(bytes_per_second: float | None) -> str:
    """``12.3 MiB/s`` (``-`` when unknown)."""
    if bytes_per_second is None:
        return "-"
    return f"{bytes_per_second / (1 << 20):.1f} MiB/s"


@dataclass
class _Seen:
    """When a disk was first seen at work, and how far it had got."""

    at: float
    bytes_done: int


@dataclass(frozen=True)
class Pace:
    """A disk's throughput and time left, as far as the view can tell."""

    bytes_per_second: float | None
    seconds_left: float | None


class PaceMeter:
    """Throughput and time left per disk (from its first sighting), and for the run (from its disks).

    ``clock`` is a seam for tests (seconds, monotonic).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self._seen: dict[int, _Seen] = {}

    def elapsed(self) -> float:
        """Seconds since the view started."""
        return self.clock() - self.started

    def disk(self, disk: DiskProgress) -> Pace:
        """The pace of one disk at work."""
        now = self.clock()
        first = self._seen.setdefault(disk.index, _Seen(now, disk.bytes_copied))
        if disk.bytes_copied < first.bytes_done:  # a new copy started (a fallback to a full copy)
            first = self._seen[disk.index] = _Seen(now, disk.bytes_copied)
        took = now - first.at
        moved = disk.bytes_copied - first.bytes_done
        if took <= 0 or moved <= 0:
            return Pace(None, None)
        rate = moved / took
        left = max(0, disk.bytes_total - disk.bytes_copied) / rate if disk.bytes_total else None
        return Pace(rate, left)

    def run_left(self, counts: dict[str, int]) -> float | None:
        """Seconds left for the run, from how fast its disks have finished so far (``None``: no disk has)."""
        total = counts.get("total", 0)
        finished = counts.get("succeeded", 0) + counts.get("failed", 0)
        if not total or not finished:
            return None
        return self.elapsed() / finished * (total - finished)


def disk_line(disk: DiskProgress, name_width: int, pace: Pace | None = None) -> str:
    """One disk: name, a bar, percent copied, phase, bytes; its throughput and time left when known."""
    if disk.phase in ("done",):
        fraction = 1.0
    elif disk.bytes_total > 0:
        fraction = min(1.0, disk.bytes_copied / disk.bytes_total)
    else:
        fraction = 0.0
    filled = round(fraction * _BAR)
    bar = "#" * filled + "-" * (_BAR - filled)
    copied = f"{mib(disk.bytes_copied)} / {mib(disk.bytes_total)}" if disk.bytes_total else ""
    line = f"  {disk.name:<{name_width}} [{bar}] {fraction * 100:5.1f}%  {disk.phase:<8} {copied}"
    if pace is not None and pace.bytes_per_second is not None:
        line += f"  {rate_text(pace.bytes_per_second)}, {clock_text(pace.seconds_left)} left"
    return line


class ProgressView:
    """Draws :class:`RunProgress` reports to ``out``: redrawn in place on a TTY, changes only otherwise."""

    def __init__(self, out: TextIO, *, tty: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out
        self.tty = tty
        self.pace = PaceMeter(clock)
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
        state = f"{progress.runtime_status.lower()} ({progress.phase or 'starting'})"
        timing = f"elapsed {clock_text(self.pace.elapsed())}"
        if not progress.done:
            timing += f", about {clock_text(self.pace.run_left(progress.counts))} left"
        lines = [f"run {progress.run_id}: {state}, {timing}"]
        if progress.counts:
            lines.append(counts_line(progress.counts))
        lines += [disk_line(d, width, self.pace.disk(d)) for d in progress.disks]
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
            elapsed = clock_text(self.pace.elapsed())
            self.out.write(f"run {progress.run_id}: {progress.phase or 'starting'} (elapsed {elapsed})\n")
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
    if summary.disks:
        lines.append(totals_line(summary))
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


def totals_line(summary: RunSummary) -> str:
    """``  moved 61.2 MiB of disks totalling 3.0 GiB in 0:42 (2 incremental, 1 full)``."""
    moved = sum(d.bytes_moved or d.bytes_copied or 0 for d in summary.disks if d.status == "Succeeded")
    size = sum(d.size_bytes or 0 for d in summary.disks)
    kinds = [d.kind for d in summary.disks if d.status == "Succeeded"]
    took = None
    if summary.finished_at:
        took = (
            parse_iso(summary.finished_at, "finishedAt") - parse_iso(summary.started_at, "startedAt")
        ).total_seconds()
    return (
        f"  moved {human_bytes(moved)} of disks totalling {human_bytes(size)} in {clock_text(took)} "
        f"({kinds.count('incremental')} incremental, {kinds.count('full')} full)"
    )
