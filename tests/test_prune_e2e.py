"""Retention through the real prune orchestration, on the proving ground and the virtual clock.

Nights here copy no data: each one writes a page into a disk's backup blob, takes a blob snapshot and
records the restore point in the catalog, as a night does (a few requests), then the prune orchestration
runs through the local Durable host against Azurite, at that night's time. So 400 nights take seconds,
and what is tested is the pruning: which restore points stay, that the others' blob snapshots are gone and
their rows marked Expired, that a failed night never displaces a good one, that a snapshot Azure refuses
to delete is kept, reported and not retried every night, and that the nightly timer starts one prune per
run, which waits for the run to end.

The expected counts below were worked out by hand from the policy's definition (and checked against a
brute-force count independent of :mod:`backup.retention`), not from the code under test.
"""

from __future__ import annotations

import functools
import http.client
import io
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from cleanup import remove_group_contents

from backup import clients as clients_module
from backup.app.blueprint import build_app
from backup.azure.blob import BlobAddress
from backup.azure.page_range import PageRange
from backup.azure.retry import RetryPolicy
from backup.azure.transport import Transport
from backup.clients import AzureClients, build_clients
from backup.local.cli import main
from backup.local.durable_host import LocalHost, VirtualClock
from backup.local.durable_host.history import EventType
from backup.settings import Settings
from backup.workflow import activity_names as act
from backup.workflow.chain import chain_blob_name
from backup.workflow.models import RUN_ORCHESTRATOR, RestorePointRecord, Selection, iso
from backup.workflow.prune_activities import HELD_RETRY_DAYS
from backup.workflow.restore_models import PRUNE_ORCHESTRATOR
from backup.workflow.restore_startup import prune_input
from testbed.devenv import proving_ground_settings
from testbed.fault_proxy import FaultProxy
from testbed.proving_ground import ProvingGround

pytestmark = pytest.mark.slow

MiB = 1 << 20
START = datetime(2025, 1, 1, 1, 0, tzinfo=UTC)  # a Wednesday
TAG_POLICY = "daily=3,weekly=2,monthly=3,yearly=1"
#: Nights whose backup failed (the last day of a year, and one inside the last week).
FAILED = {date(2025, 12, 31), date(2026, 2, 3)}
#: After N nights: (points kept under the app's policy daily=7,weekly=4,monthly=12,yearly=3, kept under
#: the disk tag's daily=3,weekly=2,monthly=3,yearly=1).
EXPECTED = {
    1: (1, 1),
    7: (7, 3),  # a week of nights; the tag: three days (its 2 weeks and 1 month hold nothing older)
    8: (7, 4),  # 2025-01-08: the tag's second ISO week (Dec 30-Jan 5) keeps its Sunday, Jan 5
    30: (9, 4),
    60: (10, 5),  # 2025-03-01: 7 days + Sundays Feb 16 and 9 + Jan 31; the tag: 3 days + Feb 23 + Jan 31
    100: (12, 6),
    200: (15, 6),
    365: (20, 5),  # 2025-12-31 failed: the day before is the newest good point
    366: (19, 5),
    400: (19, 5),
}
#: What stays after 400 nights (2026-02-04), by the date of its night.
FINAL_DEFAULT = {
    *(date(2026, 2, d) for d in (4, 2, 1)),  # daily: the 7 newest days with a good point (Feb 3 failed)
    *(date(2026, 1, d) for d in (31, 30, 29, 28)),
    date(2026, 1, 25),  # weekly: the Sundays of ISO weeks 4 and 3 (weeks 6 and 5 are in the daily set)
    date(2026, 1, 18),
    date(2025, 12, 30),  # monthly: December's newest good night (Dec 31 failed: it displaces nothing)
    *(date(2025, m, d) for m, d in ((11, 30), (10, 31), (9, 30), (8, 31), (7, 31), (6, 30), (5, 31))),
    *(date(2025, m, d) for m, d in ((4, 30), (3, 31))),
}
FINAL_TAGGED = {date(2026, 2, 4), date(2026, 2, 2), date(2026, 2, 1), date(2026, 1, 31), date(2025, 12, 30)}


class RefusingProxy:
    """A loopback proxy in front of a blob endpoint that answers the requests ``refuse`` picks with the
    error it names (status, code, message: what Azure answers and Azurite never does), and forwards the
    rest unchanged (Shared Key signs no host, so signatures hold). ``seen`` logs (method, path, status)."""

    def __init__(self, upstream: str, refuse: Callable[[str, str], tuple[int, str, str] | None]) -> None:
        parts = urlsplit(upstream)
        target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.seen: list[tuple[str, str, int]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                refusal = refuse(self.command, self.path)
                if refusal is not None:
                    status, code, message = refusal
                    xml = (
                        f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}'
                    )
                    payload = (xml + "</Message></Error>").encode()
                    self.send_response(status)
                    self.send_header("x-ms-error-code", code)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    proxy.seen.append((self.command, self.path, status))
                    return
                connection = http.client.HTTPConnection(*target, timeout=30)
                try:
                    skip = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                    connection.request(self.command, self.path, body=body or None, headers=headers)
                    answer = connection.getresponse()
                    data = answer.read()
                finally:
                    connection.close()
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in (
                        "connection",
                        "keep-alive",
                        "transfer-encoding",
                        "content-length",
                    ):
                        self.send_header(name, value)
                # A HEAD answer's Content-Length is the blob's size, not the (empty) body's.
                length_header = answer.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length_header or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                proxy.seen.append((self.command, self.path, answer.status))

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="refusing-proxy", daemon=True)

    def __enter__(self) -> RefusingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@dataclass
class Bed:
    """One test's corner of the proving ground: a resource group, a container, a catalog, its disks."""

    ground: ProvingGround
    settings: Settings
    clients: AzureClients
    group: str
    env: dict[str, str]
    snapshots: dict[tuple[str, int], str] = field(default_factory=dict)  # (disk, night) -> blob snapshot

    def disk_id(self, name: str) -> str:
        return self.ground.disk_id(name, self.group)

    def make_disk(self, name: str, tags: dict[str, str] | None = None) -> str:
        body = {"size_bytes": MiB, "fill": {"seed": 1, "fraction": 0.1}, "tags": tags or {}}
        self.ground.control("PUT", f"/resourceGroups/{self.group}/disks/{name}", body)
        return self.disk_id(name)

    def backup_blob(self, disk: str) -> BlobAddress:
        name = chain_blob_name(self.settings.subscription_id, self.group, disk)
        return self.clients.backup_blob(self.settings.container, name)

    def record_night(self, disk: str, night: int, *, failed: bool = False) -> None:
        """A night of ``disk`` as the chain leaves it: a page written, a blob snapshot, a catalog row."""
        when = START + timedelta(days=night)
        blob = self.backup_blob(disk)
        taken = None
        if not failed:
            # Straight to Azurite (the same account and blob), not through the data plane's front: faster.
            direct = BlobAddress.in_account(
                self.ground.azurite.blob_endpoint(self.ground.backup_account),
                self.settings.container,
                blob.url.split(f"/{self.settings.container}/", 1)[1],
                self.clients.container.authorize,
            )
            self.clients.blob.put_page(direct, PageRange.at(0, 512), bytes([night % 251]) * 512)
            taken = self.clients.blob.snapshot(direct)
            self.snapshots[(disk, night)] = taken
        record = RestorePointRecord(
            run_id=f"night-{night:03d}",
            run_started_at=iso(when),
            disk_id=self.disk_id(disk),
            container=self.settings.container,
            blob_name=blob.url.split(f"/{self.settings.container}/", 1)[1],
            size_bytes=MiB,
            started_at=iso(when + timedelta(minutes=1)),
            finished_at=iso(when + timedelta(minutes=5)),
            status="Failed" if failed else "Succeeded",
            kind="incremental",
            blob_snapshot=taken,
            reason="snapshot: the disk was busy" if failed else None,
            code="RequestRejected" if failed else None,
        )
        self.clients.catalog.record_restore_point(record)

    def prune(self, host: LocalHost, disks: list[str], prune_id: str) -> dict[str, Any]:
        selection = Selection(kind="diskIds", disk_ids=tuple(self.disk_id(d) for d in disks))
        request = prune_input(self.settings, "cli", selection)
        host.start_new(PRUNE_ORCHESTRATOR, input=request.to_json(), instance_id=prune_id)
        status = host.wait_for_completion(prune_id, timeout=60)
        assert status.runtime_status == "Completed", status.output
        return dict(status.output)

    def blob_snapshots(self, disk: str) -> set[str]:
        name = chain_blob_name(self.settings.subscription_id, self.group, disk)
        items = self.clients.blob.list_blobs(
            self.clients.backup_container(self.settings.container), prefix=name, snapshots=True
        )
        return {i.snapshot for i in items if i.name == name and i.snapshot is not None}

    def rows(self, disk: str) -> list[Any]:
        return list(
            self.clients.catalog.list_restore_points(
                self.disk_id(disk), include_failed=True, include_expired=True, top=None
            ).items
        )


def _bed(ground: ProvingGround, unique_name: str, **overrides: str) -> Bed:
    group = f"rg-{unique_name}"
    ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    env = proving_ground_settings(
        ground,
        ground.arm_ca_cert,
        BACKUP_SELECT_RESOURCE_GROUP=group,
        BACKUP_CONTAINER=unique_name,
        BACKUP_CATALOG_TABLE=unique_name,
        **overrides,
    )
    settings = Settings.from_env(env)
    clients = build_clients(settings)
    clients.blob.create_container(clients.container)
    return Bed(ground, settings, clients, group, env)


@pytest.fixture
def bed(proving_ground: ProvingGround, unique_name: str) -> Iterator[Bed]:
    made = _bed(proving_ground, unique_name)
    yield made
    remove_group_contents(made.clients, made.settings.subscription_id, made.group)


def _night_of(run_id: str) -> date:
    return (START + timedelta(days=int(run_id.rsplit("-", 1)[1]))).date()


# -- 400 nights --------------------------------------------------------------------------------------------


def test_four_hundred_nights_leave_exactly_the_points_the_policy_names(bed: Bed) -> None:
    bed.make_disk("aged")
    bed.make_disk("tagged", {"diskbackup-retention": TAG_POLICY})
    for disk in ("aged", "tagged"):
        bed.clients.blob.create_page_blob(bed.backup_blob(disk), MiB + 512)
    seen: dict[int, tuple[int, int]] = {}
    with LocalHost(build_app(bed.settings), clock=VirtualClock(START + timedelta(hours=2))) as host:
        for night in range(400):
            failed = (START + timedelta(days=night)).date() in FAILED
            for disk in ("aged", "tagged"):
                bed.record_night(disk, night, failed=failed)
            summary = bed.prune(host, ["aged", "tagged"], f"prune-{night:03d}")
            if night + 1 in EXPECTED:
                by_disk = {r["diskId"].rsplit("/", 1)[1]: r for r in summary["results"]}
                seen[night + 1] = (by_disk["aged"]["kept"], by_disk["tagged"]["kept"])
            host.advance_clock(timedelta(days=1))
        histories = [host.history(i.instance_id) for i in host.list_instances()]
    assert seen == EXPECTED
    assert by_disk["tagged"]["policySource"] == "tag" and by_disk["aged"]["policySource"] == "setting"

    for disk, final in (("aged", FINAL_DEFAULT), ("tagged", FINAL_TAGGED)):
        rows = bed.rows(disk)
        assert len(rows) == 400  # no row is ever deleted: a person can still see what existed
        good = {_night_of(r.run_id) for r in rows if r.status == "Succeeded"}
        assert good == final, disk
        # The blob snapshots left are exactly the kept points'; the others were deleted.
        kept_snapshots = {r.blob_snapshot for r in rows if r.status == "Succeeded"}
        assert bed.blob_snapshots(disk) == kept_snapshots
        expired = [r for r in rows if r.status == "Expired"]
        assert len(expired) == 400 - len(final)
        assert all(r.expired_at is not None and r.expired_reason for r in expired)
        failed_rows = [r for r in expired if r.blob_snapshot is None]
        assert {_night_of(r.run_id) for r in failed_rows} == FAILED
        assert all(r.expired_reason == "failed: holds no backup" for r in failed_rows)
        assert all("in no bucket kept by" in r.expired_reason for r in expired if r.blob_snapshot)
        # The backup blob itself lives on (its newest point is always kept).
        assert bed.clients.blob.get_properties(bed.backup_blob(disk)).size == MiB + 512
        # Expired points are listed only when asked for.
        listed = bed.clients.catalog.list_restore_points(bed.disk_id(disk), top=None).items
        assert {_night_of(p.run_id) for p in listed} == final

    # A prune's history is small: no point list, no SAS.
    for history in histories:
        text = json.dumps(history, default=str)
        assert "sig=" not in text or all(v == "REDACTED" for v in re.findall(r"sig=([^&\\s\"']*)", text))
        assert len(history) < 40


def test_a_snapshot_azure_refuses_to_delete_is_kept_reported_and_not_retried_every_night(
    proving_ground: ProvingGround, unique_name: str
) -> None:
    refusing = {"snapshot": "", "leased": ""}

    def legal_hold(method: str, path: str) -> tuple[int, str, str] | None:
        # Azure's answer to deleting a blob (or snapshot) under a legal hold (Blob service error codes).
        held, leased = refusing["snapshot"], refusing["leased"]
        if method == "DELETE" and held and f"snapshot={held}" in unquote(path):
            message = "This operation is not permitted as the blob is immutable due to one or more "
            message += "legal holds."
            return 409, "BlobImmutableDueToLegalHold", message
        if method == "DELETE" and leased and f"snapshot={leased}" in unquote(path):
            refusing["leased"] = ""  # once: a writer's lease passes
            return (
                412,
                "LeaseIdMissing",
                "There is currently a lease on the blob and no lease ID was specified.",
            )
        return None

    upstream = proving_ground.backup_blob_endpoint
    with RefusingProxy(upstream, legal_hold) as proxy:
        account = upstream.rsplit("/", 1)[1]
        bed = _bed(proving_ground, unique_name, BACKUP_BLOB_ENDPOINT=f"{proxy.url}/{account}")
        try:
            bed.make_disk("held", {"diskbackup-retention": "daily=1,weekly=0,monthly=0,yearly=0"})
            bed.clients.blob.create_page_blob(bed.backup_blob("held"), MiB + 512)
            for night in range(3):
                bed.record_night("held", night)
            refusing["snapshot"] = bed.snapshots[("held", 0)]

            on_hold = refusing["snapshot"]

            def tries() -> int:
                return sum(1 for m, p, _ in proxy.seen if m == "DELETE" and on_hold in unquote(p))

            clock = VirtualClock(START + timedelta(days=2, hours=2))
            with LocalHost(build_app(bed.settings), clock=clock) as host:
                first = bed.prune(host, ["held"], "prune-a")
                [report] = first["results"]
                assert (report["expired"], report["deleted"], report["heldCount"]) == (1, 1, 1)
                [held] = report["held"]
                assert held["runId"] == "night-000"
                assert "409 BlobImmutableDueToLegalHold" in held["problem"]
                assert "legal holds" in held["problem"]
                assert tries() == 1
                rows = {r.run_id: r for r in bed.rows("held")}
                assert rows["night-000"].status == "Succeeded"
                assert rows["night-000"].prune_held == held["problem"]
                assert rows["night-001"].status == "Expired" and rows["night-002"].status == "Succeeded"
                assert bed.blob_snapshots("held") == {bed.snapshots[("held", n)] for n in (0, 2)}

                # The next night: the held point is reported, not tried again while the hold is young; a
                # point whose deletion meets a writer's lease is deferred (nothing recorded), then goes.
                host.advance_clock(timedelta(days=1))
                bed.record_night("held", 3)
                refusing["leased"] = bed.snapshots[("held", 2)]
                deferred = bed.prune(host, ["held"], "prune-b")
                assert (deferred["deleted"], deferred["deferred"], deferred["heldCount"]) == (0, 1, 1)
                [report] = deferred["results"]
                assert "412 LeaseIdMissing" in report["deferredProblem"]
                assert bed.rows("held")[1].run_id == "night-002" and bed.rows("held")[1].prune_held is None
                second = bed.prune(host, ["held"], "prune-b2")
                assert (second["deleted"], second["heldCount"]) == (1, 1)
                assert tries() == 1

                # A month later the hold is gone: the point goes like any other.
                host.advance_clock(timedelta(days=HELD_RETRY_DAYS))
                refusing["snapshot"] = ""
                third = bed.prune(host, ["held"], "prune-c")
                assert (third["deleted"], third["heldCount"]) == (1, 0)
                rows = {r.run_id: r for r in bed.rows("held")}
                assert [n for n, r in sorted(rows.items()) if r.status == "Succeeded"] == ["night-003"]
                assert bed.blob_snapshots("held") == {bed.snapshots[("held", 3)]}
        finally:
            remove_group_contents(bed.clients, bed.settings.subscription_id, bed.group)


def test_the_nightly_timer_starts_one_prune_per_run_which_waits_for_the_run(bed: Bed) -> None:
    bed.make_disk("nightly", {"diskbackup-retention": "daily=1,weekly=0,monthly=0,yearly=0"})
    bed.clients.blob.create_page_blob(bed.backup_blob("nightly"), MiB + 512)
    for night in range(2):  # two old nights, before tonight's real one
        bed.record_night("nightly", night)
    clock = VirtualClock(START + timedelta(days=30))
    with LocalHost(build_app(bed.settings), clock=clock) as host:
        timer = TimerRequest(past_due=False)
        host.invoke_function("nightly_backup", timer=timer)
        host.invoke_function("nightly_backup", timer=timer)  # fired twice: still one run and one prune
        [run] = [i.instance_id for i in host.list_instances() if i.name == RUN_ORCHESTRATOR]
        [prune] = [i.instance_id for i in host.list_instances() if i.name == PRUNE_ORCHESTRATOR]
        assert prune == f"{run}-prune"
        ran = host.wait_for_completion(run, timeout=120)
        pruned = host.wait_for_completion(prune, timeout=120)
        history = host.history(prune)
    assert ran.output["status"] == "Succeeded", ran.output
    summary = pruned.output
    assert (summary["afterRunId"], summary["disks"], summary["expired"]) == (run, 1, 2)
    assert "warnings" not in summary
    # It polled the run's state until the run had ended, then pruned.
    answers = [json.loads(e["Result"]) for e in history if e.get("Result") and '"finished"' in e["Result"]]
    assert answers[0]["finished"] is False and answers[-1] == {"finished": True, "status": "Succeeded"}
    rows = {r.run_id: r.status for r in bed.rows("nightly")}
    assert rows == {"night-000": "Expired", "night-001": "Expired", run: "Succeeded"}


def test_the_preview_and_prune_dry_run_say_what_would_go_and_why_then_prune_prunes(
    bed: Bed, tmp_path: Path
) -> None:
    bed.make_disk("cli", {"diskbackup-retention": "daily=1,weekly=0,monthly=0,yearly=0"})
    bed.clients.blob.create_page_blob(bed.backup_blob("cli"), MiB + 512)
    for night in range(3):
        bed.record_night("cli", night)
    with LocalHost(build_app(bed.settings), clock=VirtualClock(START + timedelta(days=3))) as host:
        request = func.HttpRequest(
            method="GET",
            url="http://localhost/api/retention/preview",
            body=b"",
            params={"disk": bed.disk_id("cli")},
        )
        response = host.invoke_function("retention_preview", req=request)
    assert response.status_code == 200
    preview = json.loads(response.get_body())
    assert (preview["policy"], preview["policySource"]) == ("daily=1,weekly=0,monthly=0,yearly=0", "tag")
    assert [p["runId"] for p in preview["keep"]] == ["night-002"]
    assert preview["keep"][0]["reasons"] == ["daily 2025-01-03", "newest good point", "current diff base"]
    assert [(p["runId"], p["reasons"]) for p in preview["expire"]] == [
        ("night-001", ["in no bucket kept by daily=1,weekly=0,monthly=0,yearly=0"]),
        ("night-000", ["in no bucket kept by daily=1,weekly=0,monthly=0,yearly=0"]),
    ]

    def cli(*args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(
            ["--state-dir", str(tmp_path), "prune", "--disk", bed.disk_id("cli"), *args],
            env=bed.env,
            out=out,
            err=err,
        )
        return code, out.getvalue(), err.getvalue()

    code, out, err = cli("--dry-run")
    assert code == 0, err
    assert "prune (dry run)" in out and "1 disks: 2 points would go, 1 kept" in out
    assert "would expire: run night-001 of 2025-01-02T01:00:00.000Z: in no bucket kept by daily=1" in out
    assert len(bed.blob_snapshots("cli")) == 3 and all(r.status == "Succeeded" for r in bed.rows("cli"))

    code, out, err = cli("--json")
    assert code == 0, err
    summary = json.loads(out)["result"]
    assert (summary["expired"], summary["deleted"], summary["kept"]) == (2, 2, 1)
    assert bed.blob_snapshots("cli") == {bed.snapshots[("cli", 2)]}
    assert [r.status for r in bed.rows("cli")] == ["Succeeded", "Expired", "Expired"]
    # The restore-points route lists expired points only when asked, with when and why.
    with LocalHost(build_app(bed.settings), clock=VirtualClock(START + timedelta(days=3))) as host:
        listed = {}
        for flag in ("false", "true"):
            request = func.HttpRequest(
                method="GET",
                url="http://localhost/api/restore-points",
                body=b"",
                params={"disk": bed.disk_id("cli"), "includeExpired": flag},
            )
            response = host.invoke_function("list_restore_points", req=request)
            assert response.status_code == 200
            listed[flag] = json.loads(response.get_body())["restorePoints"]
    assert [p["runId"] for p in listed["false"]] == ["night-002"]
    assert [(p["runId"], p["status"]) for p in listed["true"]] == [
        ("night-002", "Succeeded"),
        ("night-001", "Expired"),
        ("night-000", "Expired"),
    ]
    assert listed["true"][1]["expiredReason"] == "in no bucket kept by daily=1,weekly=0,monthly=0,yearly=0"


# -- transient faults: the prune still deletes what the policy says, and nothing else ----------------------

#: The transport's retries, quick: five attempts within milliseconds.
QUICK = RetryPolicy(max_attempts=5, backoff=0.002, max_delay=0.01, max_server_delay=30.0)


@pytest.fixture
def faulty_bed(
    proving_ground: ProvingGround, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Bed, FaultProxy, FaultProxy]]:
    """A bed whose app reaches blob and table storage through fault proxies, with a quick transport."""
    monkeypatch.setattr(clients_module, "Transport", functools.partial(Transport, policy=QUICK))
    with (
        FaultProxy(proving_ground.backup_blob_endpoint) as blob_proxy,
        FaultProxy(proving_ground.backup_table_endpoint) as table_proxy,
    ):
        made = _bed(
            proving_ground,
            unique_name,
            BACKUP_BLOB_ENDPOINT=blob_proxy.url,
            BACKUP_TABLE_ENDPOINT=table_proxy.url,
        )
        try:
            yield made, blob_proxy, table_proxy
        finally:
            remove_group_contents(made.clients, made.settings.subscription_id, made.group)


def _prune_with(bed: Bed, host: LocalHost, disks: list[str], prune_id: str, **options: Any) -> dict[str, Any]:
    selection = Selection(kind="diskIds", disk_ids=tuple(bed.disk_id(d) for d in disks))
    request = prune_input(bed.settings, "cli", selection)
    request = replace(request, options=replace(request.options, **options))
    host.start_new(PRUNE_ORCHESTRATOR, input=request.to_json(), instance_id=prune_id)
    status = host.wait_for_completion(prune_id, timeout=60)
    assert status.runtime_status == "Completed", status.output
    return dict(status.output)


def test_a_prune_that_meets_503_bursts_on_the_catalog_and_the_blobs_deletes_what_the_policy_says(
    faulty_bed: tuple[Bed, FaultProxy, FaultProxy],
) -> None:
    bed, blob_proxy, table_proxy = faulty_bed
    policy = {"diskbackup-retention": "daily=2,weekly=0,monthly=0,yearly=0"}
    for disk in ("one", "two"):
        bed.make_disk(disk, policy)
        bed.clients.blob.create_page_blob(bed.backup_blob(disk), MiB + 512)
        for night in range(7):
            bed.record_night(disk, night, failed=disk == "one" and night == 3)
    # Each disk keeps its two newest nights; the others expire (one's failed night holds no data).
    expired = {"one": {0, 1, 2, 3, 4}, "two": {0, 1, 2, 3, 4}}
    # Bursts of 503 while both disks are pruned at once: the catalog's listing (as many in a row as the
    # transport tries), then the blob snapshots' deletion and the marking of rows Expired (a DELETE and a
    # conditional merge, which the transport does not repeat by itself: each 503 stops a call), after
    # some of each went through, so that a call meets one before it changed anything (and is called
    # again after a wait) or after (and answers what it did, with more). However the two disks' calls
    # interleave, no call is tried more often than the policy allows (five failures at most).
    table_proxy.fail_next("busy", 5, method="GET")
    blob_proxy.fail_next("busy", 2, method="DELETE", after=1)
    table_proxy.fail_next("busy", 2, method="MERGE", after=2)
    with LocalHost(build_app(bed.settings), clock=VirtualClock(START + timedelta(days=6, hours=2))) as host:
        summary = _prune_with(bed, host, ["one", "two"], "prune-faults", deletes_per_call=2)
        history = host.history("prune-faults")
    # Every fault was met, and the prune still did exactly what the policy says.
    assert [s.count for s in blob_proxy.plan.scripted + table_proxy.plan.scripted] == [0, 0, 0]
    assert (summary["failedDisks"], summary["deferred"], summary["heldCount"]) == (0, 0, 0), summary
    assert (summary["expired"], summary["deleted"]) == (10, 9), summary
    assert {r["diskId"].rsplit("/", 1)[1]: (r["expired"], r["deleted"]) for r in summary["results"]} == {
        "one": (5, 4),
        "two": (5, 5),
    }
    for disk in ("one", "two"):
        rows = {int(r.run_id.rsplit("-", 1)[1]): r for r in bed.rows(disk)}
        assert {n for n, r in rows.items() if r.status == "Expired"} == expired[disk]
        assert {n for n, r in rows.items() if r.status == "Succeeded"} == {5, 6}
        assert bed.blob_snapshots(disk) == {bed.snapshots[(disk, 5)], bed.snapshots[(disk, 6)]}
    # The disks' calls were made again, after durable timers: without faults, two calls prune one (four
    # deletions, two a call) and three prune two (five).
    scheduled = [e for e in history if e["EventType"] == EventType.TASK_SCHEDULED]
    assert sum(1 for e in scheduled if e["Name"] == act.PRUNE_DISK) > 5
    assert any(e["EventType"] == EventType.TIMER_CREATED for e in history)


def test_a_prune_that_is_refused_by_the_catalog_fails_that_disk_at_once(
    faulty_bed: tuple[Bed, FaultProxy, FaultProxy],
) -> None:
    bed, _, table_proxy = faulty_bed
    bed.make_disk("refused", {"diskbackup-retention": "daily=1,weekly=0,monthly=0,yearly=0"})
    bed.clients.blob.create_page_blob(bed.backup_blob("refused"), MiB + 512)
    for night in range(3):
        bed.record_night("refused", night)
    table_proxy.fail_next("forbid", 1, method="GET")
    with LocalHost(build_app(bed.settings), clock=VirtualClock(START + timedelta(days=3))) as host:
        summary = _prune_with(bed, host, ["refused"], "prune-refused")
        history = host.history("prune-refused")
    [report] = summary["results"]
    assert (summary["failedDisks"], report["code"]) == (1, "AccessDenied"), summary
    assert "answered HTTP 403 AuthorizationFailure" in report["reason"]
    assert [action for action, _, _ in table_proxy.faults] == ["forbid"]  # one request, no retry
    scheduled = [e for e in history if e["EventType"] == EventType.TASK_SCHEDULED]
    assert [e["Name"] for e in scheduled] == [act.PRUNE_DISK]
    assert not any(e["EventType"] == EventType.TIMER_CREATED for e in history)
    assert [r.status for r in bed.rows("refused")] == ["Succeeded"] * 3  # nothing changed
