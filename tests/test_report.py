"""The run report: what a person sees, that every value is escaped, and that it needs nothing from outside.

The pure renderer is read back with the standard library's HTML parser (always); end to end, two nights
on the proving ground give a report through the HTTP route and the command line (from the state folder,
and from the catalog alone); where Debian's Chromium is installed it renders the page headless.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from backup.app.blueprint import build_app
from backup.local.cli import main
from backup.local.durable_host import LocalHost, VirtualClock
from backup.local.progress import DiskProgress, PaceMeter, ProgressView, clock_text, disk_line, totals_line
from backup.local.runner import RunProgress
from backup.report import (
    HISTORY_POINTS,
    HistoryPoint,
    history_chart,
    human_bytes,
    render_message_page,
    render_run_report,
)
from backup.settings import Settings
from backup.telemetry import PREFIX, parse
from backup.workflow.models import RUN_ORCHESTRATOR, DiskResult, RunSummary, Selection
from backup.workflow.startup import run_input
from testbed.devenv import proving_ground_settings
from testbed.proving_ground import ProvingGround

NOW = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
SUB = "00000000-0000-0000-0000-0000000000aa"
GIB, MIB = 1 << 30, 1 << 20


def disk_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/disks/{name}"


def summary() -> RunSummary:
    disks = (
        DiskResult(
            disk_id("web-os"), "web-os", "Succeeded", "done", size_bytes=GIB, kind="incremental",
            bytes_moved=10 * MIB, blob_url="https://a/c/web-os/chain.vhd",
            blob_snapshot="2026-11-29T01:20:00Z",
            started_at="2026-11-29T01:00:05.000Z", finished_at="2026-11-29T01:03:35.000Z",
        ),
        DiskResult(
            disk_id("db"), "db", "Succeeded", "done", size_bytes=4 * GIB, kind="full", bytes_moved=GIB,
            full_copy_reason="no earlier restore point of this disk", warnings=("snapshot kept",),
            started_at="2026-11-29T01:00:05.000Z", finished_at="2026-11-29T02:12:00.000Z",
        ),
        DiskResult(
            disk_id("logs"), "logs", "Failed", "copy", code="CopyFailed", size_bytes=2 * GIB,
            reason="copy: <script>alert('x')</script> & the source vanished",
        ),
    )  # fmt: skip
    return RunSummary(
        run_id="nightly-20261129T010000Z",
        trigger="schedule",
        selection=Selection(kind="configured"),
        started_at="2026-11-29T01:00:00.000Z",
        status="PartiallySucceeded",
        finished_at="2026-11-29T02:12:30.000Z",
        disk_count=3,
        succeeded=2,
        failed=1,
        disks=disks,
        warnings=("alert not sent: the alert webhook https://hooks.example/… did not take the alert",),
    )


@dataclass
class Page(HTMLParser):
    """What a report page holds, read back with the standard parser."""

    tags: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    _row: list[str] | None = None
    _cell: list[str] | None = None
    _in_body: bool = False

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data + " ")


def read(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def assert_self_contained(html: str) -> None:
    page = read(html)
    names = [tag for tag, _ in page.tags]
    assert "script" not in names and "link" not in names and "iframe" not in names and "img" not in names
    for _, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), name  # no event handlers
            if name in ("src", "href", "action"):
                assert not value.startswith(("http", "//")), (name, value)
    assert "@import" not in html and "url(" not in html


# -- the renderer (pure) ---------------------------------------------------------------------------


def test_a_row_per_disk_with_status_kind_bytes_and_duration() -> None:
    html = render_run_report(summary(), generated_at=NOW)
    page = read(html)
    assert [row[0].split()[0] for row in page.rows] == ["web-os", "db", "logs"]
    web, db, logs = page.rows
    assert web[1:4] == ["Succeeded", "incremental", "10.0 MiB / 1.0 GiB"] and web[5] == "3 min 30 s"
    assert db[1:4] == ["Succeeded", "full", "1.0 GiB / 4.0 GiB"] and db[5] == "1 h 11 min"
    assert "full copy: no earlier restore point of this disk" in db[0] and "warning: snapshot kept" in db[0]
    assert logs[1:4] == ["Failed", "—", "0 B / 2.0 GiB"] and logs[5] == "—"
    assert "[CopyFailed] copy: <script>alert('x')</script> & the source vanished" in logs[0]
    # The bars: bytes moved against the disk's size.
    widths = [attrs["style"] for tag, attrs in page.tags if tag == "i" and "width" in attrs.get("style", "")]
    assert widths == ["width:1.0%", "width:25.0%", "width:0.0%"]


def test_totals_times_and_warnings() -> None:
    text = " ".join(" ".join(read(render_run_report(summary(), generated_at=NOW)).text).split())
    assert "Run nightly-20261129T010000Z PartiallySucceeded" in text
    assert "trigger: schedule" in text and "duration: 1 h 12 min" in text
    for total in (
        "3 disks",
        "2 succeeded",
        "1 failed",
        "1 incremental",
        "1 full copies",
        "1.0 GiB moved",
        "7.0 GiB total disk size",
    ):
        assert total in text, total
    assert "warning: alert not sent" in text


def test_every_value_is_escaped_and_nothing_is_fetched() -> None:
    html = render_run_report(summary(), generated_at=NOW)
    assert "<script>" not in html and "&lt;script&gt;" in html and "&amp; the source" in html
    assert_self_contained(html)
    assert html.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in html


def _points(count: int) -> list[HistoryPoint]:
    return [
        HistoryPoint(
            f"r{i}",
            NOW - timedelta(days=count - i),
            "Failed" if i == 3 else "Succeeded",
            "full" if i == 0 else "incremental",
            (GIB if i == 0 else (i + 1) * MIB),
        )
        for i in range(count)
    ]


def test_a_disks_history_is_a_bar_per_night_coloured_by_kind() -> None:
    chart = read(history_chart(_points(5)))
    bars = [attrs for tag, attrs in chart.tags if tag == "rect"]
    assert [b["fill"] for b in bars] == ["#8250df", "#0969da", "#0969da", "#cf222e", "#0969da"]
    assert int(bars[0]["height"]) == 80 and int(bars[1]["height"]) == 2  # a full night dwarfs the rest
    assert any("2026-11-24" in t for t in chart.text) and any("2026-11-28" in t for t in chart.text)


def test_a_long_history_shows_the_newest_nights() -> None:
    points = _points(HISTORY_POINTS + 12)
    chart = read(history_chart(points))
    assert sum(1 for tag, _ in chart.tags if tag == "rect") == HISTORY_POINTS
    newest = max(points, key=lambda p: p.at).at.strftime("%Y-%m-%d")
    assert newest in "".join(chart.text)


def test_a_report_with_history_has_a_chart_per_disk() -> None:
    history = {disk_id("web-os"): _points(4), disk_id("logs"): []}
    page = read(render_run_report(summary(), history, generated_at=NOW))
    assert sum(1 for tag, _ in page.tags if tag == "svg") == 1
    assert "No restore points recorded." in "".join(page.text)


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1536, "1.5 KiB"),
        (5 * MIB, "5.0 MiB"),
        (3 * GIB, "3.0 GiB"),
        (5 << 40, "5.0 TiB"),
    ],
)
def test_human_bytes(count: int, text: str) -> None:
    assert human_bytes(count) == text


def test_a_message_page_is_escaped_too() -> None:
    html = render_message_page("Run <x>", "running & busy")
    assert "<x>" not in html and "&lt;x&gt;" in html and "&amp;" in html
    assert_self_contained(html)


# -- the terminal view ------------------------------------------------------------------------------


def test_the_pace_of_a_disk_and_of_the_run() -> None:
    now = [100.0]
    meter = PaceMeter(lambda: now[0])
    disk = DiskProgress(0, "web-os", "apply", 10 * MIB, 70 * MIB, "Running", "incremental")
    assert meter.disk(disk).bytes_per_second is None  # first sighting: nothing to measure yet
    now[0] = 110.0
    pace = meter.disk(DiskProgress(0, "web-os", "apply", 30 * MIB, 70 * MIB, "Running", "incremental"))
    assert pace.bytes_per_second == 2 * MIB and pace.seconds_left == 20
    line = disk_line(DiskProgress(0, "web-os", "apply", 30 * MIB, 70 * MIB, "Running"), 8, pace)
    assert line.endswith("2.0 MiB/s, 0:20 left")
    assert meter.run_left({"total": 10}) is None
    assert meter.run_left({"total": 10, "succeeded": 3, "failed": 1}) == pytest.approx(10 / 4 * 6)
    assert (clock_text(3723), clock_text(62), clock_text(None)) == ("1:02:03", "1:02", "--:--")


def test_the_view_shows_elapsed_and_time_left() -> None:
    now = [0.0]
    out = io.StringIO()
    view = ProgressView(out, tty=True, clock=lambda: now[0])
    disks = [DiskProgress(0, "web-os", "apply", 0, 40 * MIB, "Running")]
    view(RunProgress("r1", "Running", "backing up", disks, counts={"total": 4, "succeeded": 1}))
    now[0] = 30.0
    disks = [DiskProgress(0, "web-os", "apply", 20 * MIB, 40 * MIB, "Running")]
    view(RunProgress("r1", "Running", "backing up", disks, counts={"total": 4, "succeeded": 2}))
    screen = out.getvalue().split("\x1b[2K")
    assert "elapsed 0:30, about 0:30 left" in screen[-3]
    assert screen[-1].rstrip().endswith("0.7 MiB/s, 0:30 left")


def test_the_closing_summary_says_what_moved_and_how_long_it_took() -> None:
    assert (
        totals_line(summary())
        == "  moved 1.0 GiB of disks totalling 7.0 GiB in 1:12:30 (1 incremental, 1 full)"
    )


# -- end to end: two nights on the proving ground ----------------------------------------------------


@dataclass
class Nights:
    ground: ProvingGround
    group: str
    env: dict[str, str]
    names: tuple[str, ...] = ("alpha", "beta")

    def run(self, run_id: str, at: datetime, state: Path | None = None) -> dict[str, Any]:
        settings = Settings.from_env(self.env)
        with LocalHost(build_app(settings), clock=VirtualClock(at), store_dir=state) as host:
            host.start_new(RUN_ORCHESTRATOR, input=run_input(settings, "cli").to_json(), instance_id=run_id)
            status = host.wait_for_completion(run_id, timeout=120)
        assert status.runtime_status == "Completed", status.output
        return dict(status.output)

    def churn(self, seed: int) -> None:
        for name in self.names:
            self.ground.control("POST", f"/resourceGroups/{self.group}/disks/{name}/churn", {"seed": seed})


@pytest.fixture
def nights(proving_ground: ProvingGround, unique_name: str) -> Nights:
    group = f"rg-{unique_name}"
    proving_ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    for index, name in enumerate(("alpha", "beta")):
        body = {"size_bytes": (4 + 4 * index) << 20, "fill": {"seed": 40 + index, "fraction": 0.2}}
        proving_ground.control("PUT", f"/resourceGroups/{group}/disks/{name}", body)
    env = proving_ground_settings(
        proving_ground,
        proving_ground.arm_ca_cert,
        BACKUP_SELECT_RESOURCE_GROUP=group,
        BACKUP_CONTAINER=unique_name,
        BACKUP_CATALOG_TABLE=unique_name,
    )
    return Nights(proving_ground, group, env)


def _report_through_http(settings: Settings, state: Path | None, run_id: str) -> func.HttpResponse:
    with LocalHost(build_app(settings), clock=VirtualClock(NOW), store_dir=state) as host:
        request = func.HttpRequest(
            method="GET",
            url=f"http://localhost/api/backups/{run_id}/report",
            body=b"",
            route_params={"instanceId": run_id},
        )
        response = host.invoke_function("get_backup_report", req=request)
    assert isinstance(response, func.HttpResponse)
    return response


@pytest.mark.slow
def test_two_nights_make_a_report_through_the_route_and_the_command_line(
    nights: Nights, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="diskbackup.telemetry")
    state = tmp_path / "state"
    nights.run("night-1", NOW - timedelta(days=1), state)
    nights.churn(7)
    second = nights.run("night-2", NOW, state)
    settings = Settings.from_env(nights.env)

    # The route, from the run's Durable state: a row per disk, a chart per disk with both nights.
    response = _report_through_http(settings, state, "night-2")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    html = response.get_body().decode()
    assert_self_contained(html)
    page = read(html)
    rows = {row[0].split()[0]: row for row in page.rows}
    assert set(rows) == {"alpha", "beta"} and {row[2] for row in rows.values()} == {"incremental"}
    charts = [attrs for tag, attrs in page.tags if tag == "svg"]
    assert [c["aria-label"].split()[0] for c in charts] == ["2", "2"]
    moved = {d["diskName"]: d["bytesMoved"] for d in second["disks"]}
    assert rows["alpha"][3].startswith(human_bytes(moved["alpha"]))

    # A run the task hub does not know (another machine's, or purged) is reported from the catalog.
    fresh = tmp_path / "elsewhere"
    from_catalog = read(_report_through_http(settings, fresh, "night-2").get_body().decode())
    assert [row[:4] for row in from_catalog.rows] == [row[:4] for row in page.rows]
    assert _report_through_http(settings, fresh, "night-9").status_code == 404

    # The command line writes it where asked, or into the state folder.
    out = io.StringIO()
    target = tmp_path / "r.html"
    assert (
        main(["--state-dir", str(state), "report", "night-2", "-o", str(target)], env=nights.env, out=out)
        == 0
    )
    assert out.getvalue() == f"report: {target}\n" and read(target.read_text()).rows == page.rows
    out = io.StringIO()
    assert main(["--state-dir", str(fresh), "report", "night-1", "--json"], env=nights.env, out=out) == 0
    written = Path(json.loads(out.getvalue())["report"])
    assert written == fresh / "reports" / "night-1.html" and written.is_file()
    err = io.StringIO()
    code = main(["--state-dir", str(fresh), "report", "night-7"], env=nights.env, out=io.StringIO(), err=err)
    assert code == 2 and "no run 'night-7'" in err.getvalue()

    # One structured record per disk phase, per disk and per run, each written once (not on replays).
    records = [parse(r.getMessage()) for r in caplog.records if r.getMessage().startswith(PREFIX)]
    night = [r for r in records if r is not None and r["runId"] == "night-2"]
    runs = [r for r in night if r["event"] == "run"]
    assert len(runs) == 1 and runs[0]["status"] == "Succeeded" and runs[0]["bytes"] == sum(moved.values())
    for name in ("alpha", "beta"):
        phases = [r["phase"] for r in night if r["event"] == "diskPhase" and r["disk"] == name]
        assert len(phases) == len(set(phases)) or phases.count("plan") <= 1, phases
        assert phases[0] == "lease" and "apply" in phases and "record" in phases
        (done,) = [r for r in night if r["event"] == "disk" and r["disk"] == name]
        assert (
            done["status"] == "Succeeded" and done["kind"] == "incremental" and done["bytes"] == moved[name]
        )
        assert done["durationMs"] >= sum(done["phasesMs"].values()) - 1
    assert not re.search(r"sig=(?!REDACTED)|AccountKey|Bearer ", caplog.text)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed here")
def test_chromium_renders_the_report(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_run_report(summary(), {disk_id("web-os"): _points(6)}, generated_at=NOW))
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = read(dom.stdout)
    assert [row[0].split()[0] for row in rendered.rows] == ["web-os", "db", "logs"]
    shot = tmp_path / "report.png"
    done = subprocess.run(
        ["chromium", *flags, f"--screenshot={shot}", "--window-size=1200,900", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0 and shot.stat().st_size > 10_000
