"""The run report: one self-contained HTML page a person would rather read than JSON.

What it shows: the run's status, trigger, times and totals; per disk a row with its status, kind (full
or incremental), the bytes it moved against its size as a bar, its duration, and why it failed; and,
for the disks whose history is given, their restore points over time (a small inline SVG chart: one bar
per night, its height the bytes moved, its colour the kind; failed nights marked).

It is a pure function of the run's summary and the disks' restore points: no I/O here. The page holds
no script and no external asset (styles inline, charts as SVG), so it opens from a mail attachment or a
file share the same as from the HTTP API, and every value in it is escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from backup.workflow.models import DiskResult, RunSummary, parse_iso

#: At most this many restore points are drawn per disk (newest), and history for this many disks.
HISTORY_POINTS = 30
HISTORY_DISKS = 20

_STATUS_CLASS = {
    "Succeeded": "ok",
    "PartiallySucceeded": "warn",
    "Failed": "bad",
    "Running": "run",
    "Expired": "muted",
}

_STYLE = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1b1f24;margin:24px;
 max-width:1100px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.meta{color:#57606a;margin-bottom:16px}.meta span{margin-right:16px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.ok{background:#dafbe1;color:#116329}.warn{background:#fff8c5;color:#7d4e00}
.bad{background:#ffebe9;color:#a40e26}.run{background:#ddf4ff;color:#0550ae}
.muted{background:#eaeef2;color:#57606a}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #d0d7de;vertical-align:top}
th{font-size:12px;color:#57606a;font-weight:600}td.num{text-align:right;white-space:nowrap}
.bar{position:relative;background:#eaeef2;border-radius:3px;height:10px;width:180px}
.bar>i{position:absolute;left:0;top:0;bottom:0;border-radius:3px;background:#0969da}
.bar.full>i{background:#8250df}
.totals{display:flex;gap:24px;flex-wrap:wrap;margin:12px 0}
.totals div{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:8px 12px}
.totals b{display:block;font-size:18px}
.reason{color:#a40e26;font-size:12px}.warning{color:#7d4e00;font-size:12px}
.legend span{margin-right:12px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;
 margin-right:4px;vertical-align:middle}
footer{margin-top:32px;color:#8c959f;font-size:12px}
"""


@dataclass(frozen=True)
class HistoryPoint:
    """One restore point (or failed attempt) of a disk, as the chart needs it."""

    run_id: str
    at: datetime
    status: str
    kind: str | None
    bytes_moved: int

    @classmethod
    def from_json(cls, point: Mapping[str, Any]) -> HistoryPoint:
        """From a catalog restore point's JSON (``RestorePoint.to_json``)."""
        return cls(
            run_id=str(point.get("runId", "")),
            at=parse_iso(str(point.get("finishedAt") or point.get("startedAt")), "finishedAt"),
            status=str(point.get("status", "")),
            kind=point.get("kind"),
            bytes_moved=int(point.get("bytesMoved") or point.get("bytesCopied") or 0),
        )


def render_run_report(
    summary: RunSummary,
    history: Mapping[str, Sequence[HistoryPoint]] | None = None,
    *,
    generated_at: datetime,
) -> str:
    """The report of a run (running or finished) as one HTML document."""
    history = history or {}
    started = parse_iso(summary.started_at, "startedAt")
    finished = parse_iso(summary.finished_at, "finishedAt") if summary.finished_at else None
    moved = sum(d.bytes_moved or 0 for d in summary.disks)
    size = sum(d.size_bytes or 0 for d in summary.disks)
    kinds = [d.kind for d in summary.disks if d.status == "Succeeded"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>diskbackup run {escape(summary.run_id)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Run {escape(summary.run_id)} {_badge(summary.status)}</h1>",
        '<div class="meta">',
        f"<span>trigger: {escape(summary.trigger)}</span>",
        f"<span>started: {escape(_when(started))}</span>",
        f"<span>finished: {escape(_when(finished)) if finished else 'not yet'}</span>",
        f"<span>duration: {escape(_duration(started, finished)) if finished else '—'}</span>",
        "</div>",
    ]
    if summary.reason:
        parts.append(f'<p class="reason">{escape(summary.reason)}</p>')
    parts += [
        '<div class="totals">',
        _total("disks", str(summary.disk_count)),
        _total("succeeded", str(summary.succeeded)),
        _total("failed", str(summary.failed)),
        _total("incremental", str(kinds.count("incremental"))),
        _total("full copies", str(kinds.count("full"))),
        _total("moved", human_bytes(moved)),
        _total("total disk size", human_bytes(size)),
        "</div>",
    ]
    parts += _disk_table(summary.disks)
    parts += [f'<p class="warning">warning: {escape(w)}</p>' for w in summary.warnings]
    if history:
        parts.append("<h2>Restore points over time</h2>")
        parts.append(
            '<p class="legend"><span><i style="background:#0969da"></i>incremental</span>'
            '<span><i style="background:#8250df"></i>full</span>'
            '<span><i style="background:#cf222e"></i>failed</span>'
            "bar height: bytes moved that night</p>"
        )
        names = {d.disk_id.lower(): d.disk_name for d in summary.disks}
        for disk_id, points in list(history.items())[:HISTORY_DISKS]:
            parts.append(f"<h3>{escape(names.get(disk_id.lower(), disk_id.rsplit('/', 1)[-1]))}</h3>")
            parts.append(history_chart(points))
    parts.append(
        f"<footer>diskbackup report, made {escape(_when(generated_at))}. "
        "Sizes in binary units (1 MiB = 1,048,576 bytes).</footer>"
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def history_disks(summary: RunSummary) -> list[DiskResult]:
    """The disks whose history a report draws: failed ones first, then the rest, at most
    :data:`HISTORY_DISKS` (a report of a thousand disks reads the catalog twenty times, not a thousand)."""
    ordered = sorted(summary.disks, key=lambda d: (d.status == "Succeeded", d.disk_name))
    return ordered[:HISTORY_DISKS]


def gather_history(
    summary: RunSummary, restore_points: Callable[[str], Sequence[Mapping[str, Any]]]
) -> dict[str, list[HistoryPoint]]:
    """Each history disk's recent points, from ``restore_points(disk_id)`` (catalog rows as JSON)."""
    history: dict[str, list[HistoryPoint]] = {}
    for disk in history_disks(summary):
        history[disk.disk_id] = [HistoryPoint.from_json(point) for point in restore_points(disk.disk_id)]
    return history


def render_message_page(title: str, message: str) -> str:
    """A small page saying why there is no report (yet)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>{escape(message)}</p></body></html>\n"
    )


def _disk_table(disks: Sequence[DiskResult]) -> list[str]:
    if not disks:
        return ["<p>No disks in this run.</p>"]
    rows = [
        "<h2>Disks</h2><table><thead><tr><th>disk</th><th>status</th><th>kind</th>"
        "<th>moved / size</th><th></th><th>duration</th></tr></thead><tbody>"
    ]
    for disk in disks:
        size, moved = disk.size_bytes or 0, disk.bytes_moved or 0
        share = min(1.0, moved / size) if size else 0.0
        bar_class = "bar full" if disk.kind == "full" else "bar"
        duration = "—"
        if disk.started_at and disk.finished_at:
            duration = _duration(
                parse_iso(disk.started_at, "startedAt"), parse_iso(disk.finished_at, "finishedAt")
            )
        detail = ""
        if disk.status != "Succeeded":
            code = f"[{disk.code}] " if disk.code else ""
            detail = f'<div class="reason">{escape(code + (disk.reason or "failed"))}</div>'
        elif disk.full_copy_reason:
            detail = f'<div class="warning">full copy: {escape(disk.full_copy_reason)}</div>'
        detail += "".join(f'<div class="warning">warning: {escape(w)}</div>' for w in disk.warnings)
        rows.append(
            f"<tr><td>{escape(disk.disk_name)}{detail}</td>"
            f"<td>{_badge(disk.status)}</td>"
            f"<td>{escape(disk.kind or '—')}</td>"
            f'<td class="num">{escape(human_bytes(moved))} / {escape(human_bytes(size))}</td>'
            f'<td><div class="{bar_class}" title="{share * 100:.1f}% of the disk">'
            f'<i style="width:{share * 100:.1f}%"></i></div></td>'
            f'<td class="num">{escape(duration)}</td></tr>'
        )
    rows.append("</tbody></table>")
    return rows


def history_chart(points: Sequence[HistoryPoint]) -> str:
    """An inline SVG bar chart of a disk's restore points, oldest left (at most :data:`HISTORY_POINTS`)."""
    shown = sorted(points, key=lambda p: p.at)[-HISTORY_POINTS:]
    if not shown:
        return "<p>No restore points recorded.</p>"
    width, height, gap = 18, 80, 4
    tallest = max((p.bytes_moved for p in shown), default=0) or 1
    bars = []
    for index, point in enumerate(shown):
        x = index * (width + gap)
        if point.status == "Failed":
            colour, bar = "#cf222e", 6
        else:
            colour = "#8250df" if point.kind == "full" else "#0969da"
            bar = max(2, round(point.bytes_moved / tallest * height))
        label = f"{_when(point.at)} · {point.status} · {point.kind or '—'} · {human_bytes(point.bytes_moved)}"
        bars.append(
            f'<rect x="{x}" y="{height - bar}" width="{width}" height="{bar}" fill="{colour}">'
            f"<title>{escape(label)}</title></rect>"
        )
    # Wide enough for both dates under the bars, however few bars there are.
    total = max(len(shown) * (width + gap), 170)
    first, last = _when(shown[0].at)[:10], _when(shown[-1].at)[:10]
    labels = f'<text x="0" y="{height + 14}" font-size="11" fill="#57606a">{escape(first)}</text>'
    if len(shown) > 1:
        labels += (
            f'<text x="{total}" y="{height + 14}" font-size="11" fill="#57606a" text-anchor="end">'
            f"{escape(last)}</text>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{height + 18}" role="img" '
        f'aria-label="{len(shown)} restore points from {escape(first)} to {escape(last)}">'
        + "".join(bars)
        + labels
        + "</svg>"
    )


def human_bytes(count: int) -> str:
    """Bytes in binary units with one decimal (``1.5 GiB``); below a KiB, whole bytes."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # unreachable; keeps mypy content


def _badge(status: str) -> str:
    return f'<span class="badge {_STATUS_CLASS.get(status, "muted")}">{escape(status)}</span>'


def _total(label: str, value: str) -> str:
    return f"<div><b>{escape(value)}</b>{escape(label)}</div>"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(start: datetime, end: datetime) -> str:
    seconds = max(0, int((end - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"
