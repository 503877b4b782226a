"""The whole backup, end to end: triggers, orchestrators, activities, Azurite and the compute emulator.

Every run goes through the real function app (``build_app``), the SDK's replay engine under our local
Durable host (virtual clock: the polling timers cost nothing), real HTTP to the compute emulator's ARM
and to Azurite through the data-plane front. Each test has its own resource group, container and catalog
table on the shared proving ground.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from backup.app.blueprint import build_app
from backup.app.starter import start_scheduled_run
from backup.azure.blob import BlobAddress, BlobClient, ContainerAddress
from backup.azure.compute import ComputeClient, snapshot_name
from backup.azure.storage_auth import SharedKeyAuthorizer, StorageService
from backup.azure.table import TableClient
from backup.clients import clients_for
from backup.local.durable_host import LocalHost, VirtualClock
from backup.schedule import occurrence_instance_id
from backup.settings import Settings
from backup.workflow.models import RUN_ORCHESTRATOR, RunInput
from testbed.devenv import proving_ground_settings
from testbed.digest import blob_sha256
from testbed.proving_ground import ProvingGround

pytestmark = pytest.mark.slow

START = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


@dataclass
class Bed:
    """One test's corner of the proving ground, and a host running the app against it."""

    ground: ProvingGround
    settings: Settings
    host: LocalHost
    resource_group: str

    def control(self, method: str, path: str, body: Any = None) -> Any:
        return self.ground.control(method, path, body)

    def make_disk(
        self, name: str, size: int, fraction: float, seed: int, tags: dict[str, str] | None = None
    ) -> str:
        body = {"size_bytes": size, "fill": {"seed": seed, "fraction": fraction}, "tags": tags or {}}
        self.control("PUT", f"/resourceGroups/{self.resource_group}/disks/{name}", body)
        return self.ground.disk_id(name, self.resource_group)

    def disk_digest(self, name: str) -> str:
        return str(
            self.control("GET", f"/resourceGroups/{self.resource_group}/disks/{name}/digest")["sha256"]
        )

    def http(
        self,
        function: str,
        method: str,
        url: str,
        body: bytes = b"",
        route_params: dict[str, str] | None = None,
    ) -> func.HttpResponse:
        request = func.HttpRequest(
            method=method,
            url=url,
            body=body,
            headers={"Content-Type": "application/json"},
            params=_query(url),
            route_params=route_params or {},
        )
        response = self.host.invoke_function(function, req=request)
        assert isinstance(response, func.HttpResponse)
        return response

    def backup_blob(self, blob_url: str) -> BlobAddress:
        prefix = f"{self.settings.blob_endpoint}/{self.settings.container}/"
        assert blob_url.startswith(prefix), blob_url
        authorize = SharedKeyAuthorizer(
            self.settings.storage_account, self.settings.storage_key or "", service=StorageService.BLOB
        )
        container = ContainerAddress.in_account(
            self.settings.blob_endpoint, self.settings.container, authorize
        )
        return container.blob(unquote(blob_url[len(prefix) :]))

    def active_grants(self) -> list[str]:
        grants = self.control("GET", "/grants")
        return [
            g["id"]
            for g in grants["resources"]
            if f"/resourcegroups/{self.resource_group}/" in g["id"].lower()
        ]

    def snapshots(self) -> list[str]:
        clients = clients_for(self.settings)
        return [
            s.id for s in clients.compute.list_snapshots(self.settings.subscription_id, self.resource_group)
        ]


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


@pytest.fixture
def bed(proving_ground: ProvingGround, unique_name: str) -> Iterator[Bed]:
    group = f"rg-{unique_name}"
    proving_ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    env = proving_ground_settings(
        proving_ground,
        proving_ground.arm_ca_cert,
        BACKUP_SELECT_RESOURCE_GROUP=group,
        BACKUP_CONTAINER=unique_name,
        BACKUP_CATALOG_TABLE=unique_name,
        BACKUP_MAX_PARALLEL="3",
    )
    settings = Settings.from_env(env)
    host = LocalHost(build_app(settings), clock=VirtualClock(START))
    with host:
        yield Bed(proving_ground, settings, host, group)


def _start_via_http(bed: Bed, body: dict[str, Any] | None = None) -> str:
    response = bed.http(
        "start_backup", "POST", "http://localhost/api/backups", json.dumps(body or {}).encode()
    )
    assert response.status_code == 202, response.get_body()
    payload = json.loads(response.get_body())
    run_id = str(payload["runId"])
    assert payload["statusUri"] == f"http://localhost/api/backups/{run_id}" == response.headers["Location"]
    # Not the Durable management URLs: they carry the system key (terminate, purge any instance).
    assert "statusQueryGetUri" not in payload and "code=" not in response.get_body().decode()
    return run_id


def test_three_disks_backed_up_verified_and_catalogued(bed: Bed) -> None:
    names = {"os": (8 << 20, 0.2, 1), "data": (12 << 20, 0.05, 2), "logs": (4 << 20, 0.5, 3)}
    ids = {name: bed.make_disk(name, size, fraction, seed) for name, (size, fraction, seed) in names.items()}

    run_id = _start_via_http(bed)
    status = bed.host.wait_for_completion(run_id, timeout=120)

    assert status.runtime_status == "Completed", status.output
    summary = status.output
    assert summary["status"] == "Succeeded"
    assert (summary["diskCount"], summary["succeeded"], summary["failed"]) == (3, 3, 0)
    blob = BlobClient()
    for result in summary["disks"]:
        name = result["diskName"]
        assert result["status"] == "Succeeded" and result["diskId"] == ids[name]
        assert "?" not in result["blobUrl"]
        disk_size = names[name][0]
        # The restore point is a blob snapshot of the disk's one backup blob.
        assert (
            result["kind"] == "full" and result["fullCopyReason"] == "no earlier restore point of this disk"
        )
        point = bed.backup_blob(result["blobUrl"]).at_snapshot(result["blobSnapshot"])
        digest, size = blob_sha256(blob, point, length=disk_size)
        assert size == disk_size + 512  # a fixed VHD: the disk, then its footer
        assert digest == bed.disk_digest(name), f"{name}: backup differs from the disk"
        assert result["bytesMoved"] == result["bytesChanged"] > 0  # a full copy moves every populated byte

    # Access revoked; each disk's snapshot kept, tagged, as the diff base of its next night.
    assert bed.active_grants() == []
    kept = {s.lower() for s in bed.snapshots()}
    assert kept == {r["snapshotId"].lower() for r in summary["disks"]}
    compute = clients_for(bed.settings).compute
    assert all(compute.get_snapshot(s).tags.get("diskbackupBase") == "true" for s in kept)

    # The catalog: one restore point per disk, newest first, and the run.
    for name, disk_id in ids.items():
        response = bed.http(
            "list_restore_points", "GET", f"http://localhost/api/restore-points?disk={disk_id}"
        )
        assert response.status_code == 200
        points = json.loads(response.get_body())["restorePoints"]
        assert [p["runId"] for p in points] == [run_id]
        assert points[0]["status"] == "Succeeded" and points[0]["sizeBytes"] == names[name][0]
    runs = json.loads(bed.http("list_backups", "GET", "http://localhost/api/backups").get_body())["runs"]
    assert [(r["runId"], r["status"], r["succeeded"]) for r in runs] == [(run_id, "Succeeded", 3)]

    # The status endpoint shows every disk's final phase and full copy progress.
    response = bed.http(
        "get_backup", "GET", f"http://localhost/api/backups/{run_id}", route_params={"instanceId": run_id}
    )
    view = json.loads(response.get_body())
    assert view["runtimeStatus"] == "Completed"
    assert [d["phase"] for d in view["disks"]] == ["done"] * 3
    assert all(d["bytesCopied"] == d["bytesTotal"] > 0 for d in view["disks"])
    assert [d["kind"] for d in view["disks"]] == ["full"] * 3
    assert [d["bytesMoved"] for d in view["disks"]] == [r["bytesMoved"] for r in summary["disks"]]


def test_failing_disks_fail_alone_and_access_is_always_revoked(
    bed: Bed, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    # Observe (not replace) every SAS the workflow reads, so the scan below knows what to look for.
    issued: list[str] = []
    read_access_sas = ComputeClient.read_access_sas

    def recording(self: ComputeClient, grant: Any) -> str:
        sas = read_access_sas(self, grant)
        issued.append(sas)
        return sas

    monkeypatch.setattr(ComputeClient, "read_access_sas", recording)
    ids = [bed.make_disk(f"disk{i}", (4 + i) << 20, 0.1, 10 + i) for i in range(5)]
    run_id = "manual-20261126T010000Z-fivedisk"
    ground = bed.ground
    # Disk 1: its snapshot operation ends Failed. Disk 3: its copy fails.
    ground.control(
        "POST",
        "/faults",
        {
            "operation": "Snapshots_CreateOrUpdate",
            "action": "Failed",
            "code": "InternalDiskManagementError",
            "message": "the disk is busy",
            "resource_name": snapshot_name(run_id, ids[1]),
        },
    )
    snapshot_of_3 = (
        ids[3].replace("/disks/", "/snapshots/").rsplit("/", 1)[0] + "/" + snapshot_name(run_id, ids[3])
    )
    assert ground.data_plane is not None
    ground.data_plane.fail_next_copy(snapshot_of_3, "the source could not be read")

    run = RunInput.from_json(
        {
            "trigger": "http",
            "selection": {"kind": "resourceGroup", "resourceGroup": bed.resource_group},
            "options": _options(bed.settings),
        }
    )
    bed.host.start_new(RUN_ORCHESTRATOR, input=run.to_json(), instance_id=run_id)
    status = bed.host.wait_for_completion(run_id, timeout=120)

    assert status.runtime_status == "Completed", status.output
    summary = status.output
    assert summary["status"] == "PartiallySucceeded"
    assert (summary["succeeded"], summary["failed"]) == (3, 2)
    by_disk = {r["diskId"]: r for r in summary["disks"]}
    assert by_disk[ids[1]]["status"] == "Failed" and by_disk[ids[1]]["phase"] == "snapshot"
    assert by_disk[ids[1]]["code"] == "SnapshotFailed"
    assert by_disk[ids[1]]["reason"] == (
        "snapshot: operation ended Failed: InternalDiskManagementError: the disk is busy"
    )
    assert by_disk[ids[3]]["status"] == "Failed" and by_disk[ids[3]]["phase"] == "copy"
    assert by_disk[ids[3]]["code"] == "CopyFailed"
    assert by_disk[ids[3]]["reason"] == "copy: copy failed: the source could not be read"
    for i in (0, 2, 4):
        assert by_disk[ids[i]]["status"] == "Succeeded"

    # Every snapshot's access revoked; the failures recorded with their reasons.
    assert bed.active_grants() == []
    for i in (1, 3):
        url = f"http://localhost/api/restore-points?disk={ids[i]}&includeFailed=true"
        points = json.loads(bed.http("list_restore_points", "GET", url).get_body())["restorePoints"]
        assert [(p["status"], p["runId"]) for p in points] == [("Failed", run_id)]
        assert points[0]["reason"] == by_disk[ids[i]]["reason"]
        assert points[0]["code"] == by_disk[ids[i]]["code"]
        url = f"http://localhost/api/restore-points?disk={ids[i]}"
        assert json.loads(bed.http("list_restore_points", "GET", url).get_body())["restorePoints"] == []

    assert len(issued) == 4  # the disk whose snapshot failed never got a SAS
    _assert_no_secrets(bed, caplog, issued)


def test_a_malformed_answer_from_azure_fails_its_disk_with_a_clear_reason(bed: Bed) -> None:
    ids = [bed.make_disk(f"disk{i}", 2 << 20, 0.1, 20 + i) for i in range(2)]
    run_id = "manual-20261126T010000Z-malformed"
    # Disk 0: ARM answers its snapshot PUT with a gateway's HTML page and a 200.
    bed.control(
        "POST",
        "/faults",
        {
            "operation": "Snapshots_CreateOrUpdate",
            "action": "malformed",
            "resource_name": snapshot_name(run_id, ids[0]),
        },
    )
    run = RunInput.from_json(
        {
            "trigger": "http",
            "selection": {"kind": "resourceGroup", "resourceGroup": bed.resource_group},
            "options": _options(bed.settings),
        }
    )
    bed.host.start_new(RUN_ORCHESTRATOR, input=run.to_json(), instance_id=run_id)
    status = bed.host.wait_for_completion(run_id, timeout=120)

    assert status.runtime_status == "Completed", status.output
    summary = status.output
    assert (summary["succeeded"], summary["failed"]) == (1, 1)
    failed = {r["diskId"]: r for r in summary["disks"]}[ids[0]]
    assert (failed["status"], failed["phase"]) == ("Failed", "snapshot")
    reason = failed["reason"]
    assert "unexpected answer from Azure" in reason and "response body" in reason, reason
    assert "x-ms-request-id" in reason and "api-version" not in reason
    assert bed.active_grants() == []


def _options(settings: Settings) -> dict[str, Any]:
    from backup.workflow.startup import run_options

    return run_options(settings).to_json()


def _assert_no_secrets(bed: Bed, caplog: pytest.LogCaptureFixture, issued_sas: list[str]) -> None:
    """No SAS signature, account key or bearer token in histories, statuses, outputs, catalog or logs."""
    signatures = [dict(parse_qsl(urlsplit(sas).query))["sig"] for sas in issued_sas]
    secrets = [bed.settings.storage_key, bed.settings.arm_token, bed.ground.backup_account_key, *signatures]
    texts: list[str] = []
    for instance in bed.host.list_instances():
        texts.append(json.dumps(bed.host.history(instance.instance_id), default=str))
        texts.append(json.dumps([instance.custom_status, instance.output, instance.input], default=str))
    authorize = SharedKeyAuthorizer(
        bed.settings.storage_account, bed.settings.storage_key or "", service=StorageService.TABLE
    )
    table = TableClient(bed.settings.table_endpoint, bed.settings.catalog_table, authorize)
    rows = list(table.query())
    assert rows, "the catalog should hold rows to scan"
    texts.append(json.dumps([r.properties for r in rows], default=str))
    texts.extend(record.getMessage() for record in caplog.records)
    everything = "\n".join(texts)
    for secret in secrets:
        assert secret and secret not in everything and quote(secret, safe="") not in everything
    found = re.findall(r"sig=([^&\s\"'<>]*)", everything)
    assert all(value == "REDACTED" for value in found), found[:3]


def test_timer_starts_each_occurrence_once(bed: Bed) -> None:
    bed.make_disk("only", 2 << 20, 0.1, 5)
    fired = datetime(2026, 11, 27, 1, 0, 2, tzinfo=UTC)

    first = bed.host.run_client(lambda client: start_scheduled_run(client, bed.settings, fired))
    again = bed.host.run_client(
        lambda client: start_scheduled_run(client, bed.settings, fired + timedelta(minutes=3))
    )
    assert first == (occurrence_instance_id(datetime(2026, 11, 27, 1, 0, tzinfo=UTC)), True)
    assert again == (first[0], False)  # still running: not started again
    status = bed.host.wait_for_completion(first[0], timeout=120)
    assert status.runtime_status == "Completed" and status.output["succeeded"] == 1
    late = bed.host.run_client(
        lambda client: start_scheduled_run(client, bed.settings, fired + timedelta(hours=5))
    )
    assert late == (first[0], False)  # finished: not started again either
    nxt = bed.host.run_client(
        lambda client: start_scheduled_run(client, bed.settings, fired + timedelta(days=1))
    )
    assert nxt == ("nightly-20261128T010000Z", True)
    bed.host.wait_for_completion(nxt[0], timeout=120)

    # The timer function itself, as the host calls it: one run for its occurrence, however often it fires.
    timer = TimerRequest(past_due=False)
    bed.host.invoke_function("nightly_backup", timer=timer)
    bed.host.invoke_function("nightly_backup", timer=timer)
    runs = [i.instance_id for i in bed.host.list_instances() if i.name == RUN_ORCHESTRATOR]
    assert len(runs) == 3, runs
    today = (set(runs) - {first[0], nxt[0]}).pop()
    assert today.startswith("nightly-")
    assert bed.host.wait_for_completion(today, timeout=120).runtime_status == "Completed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{", "body"),
        (b"[]", "body"),
        (b'{"disks": []}', "disks"),
        (b'{"diskIds": []}', "diskIds"),
        (b'{"diskIds": ["/subscriptions/x/disks/y"]}', "diskIds[0]"),
        (b'{"diskIds": [7]}', "diskIds[0]"),
        (b'{"tag": "a=b"}', "tag"),
        (b'{"tag": {"name": "a/b", "value": "c"}}', "tag"),
        (b'{"resourceGroup": "bad/group"}', "resourceGroup"),
        (b'{"resourceGroup": "rg", "tag": {"name": "a", "value": "b"}}', "resourceGroup"),
        (b'{"options": {"kind": "weekly"}}', "options.kind"),
        (b'{"options": {"keepSnapshot": "yes"}}', "options.keepSnapshot"),
        (b'{"options": {"retention": 3}}', "options.retention"),
        (b'{"options": []}', "options"),
        (b"[" * 1024 + b"]" * 1024, "body"),  # 2 KB of nesting: was the parser's RecursionError, a 500
        (b'{"options": {"kind": ' + b"7" * 4301 + b"}}", "body"),  # was int()'s digit limit, a 500
        (b'{"diskIds": [NaN]}', "body"),
        (b'{"x' + b"y" * 200_000 + b'": 1}', "'x" + "y" * 97 + "…"),  # a 200 KB key, echoed in part
        (b'{"options": {"kind": "' + b"w" * 200_000 + b'"}}', "options.kind"),
    ],
)
def test_bad_start_requests_get_400_naming_the_field(bed: Bed, body: bytes, field: str) -> None:
    response = bed.http("start_backup", "POST", "http://localhost/api/backups", body)
    assert response.status_code == 400, response.get_body()[:300]
    error = json.loads(response.get_body())["error"]
    assert error["code"] == "InvalidInput" and error["field"] == field
    assert len(response.get_body()) < 1000  # what was sent is never echoed whole
    assert bed.host.list_instances() == []


@pytest.mark.parametrize(
    ("function", "url", "route", "status", "field"),
    [
        ("get_backup", "http://localhost/api/backups/nope", {"instanceId": "no-such-run"}, 404, None),
        ("get_backup", "http://localhost/api/backups/x", {"instanceId": "bad id!"}, 400, "instanceId"),
        ("list_backups", "http://localhost/api/backups?top=0", {}, 400, "top"),
        ("list_backups", "http://localhost/api/backups?top=many", {}, 400, "top"),
        ("list_restore_points", "http://localhost/api/restore-points", {}, 400, "disk"),
        ("list_restore_points", "http://localhost/api/restore-points?disk=/subscriptions/1", {}, 400, "disk"),
        (
            "list_restore_points",
            "http://localhost/api/restore-points?disk=/subscriptions/00000000-0000-0000-0000-000000000000"
            "/resourceGroups/rg/providers/Microsoft.Compute/disks/d&includeFailed=maybe",
            {},
            400,
            "includeFailed",
        ),
    ],
)
def test_bad_queries_get_4xx(
    bed: Bed, function: str, url: str, route: dict[str, str], status: int, field: str | None
) -> None:
    response = bed.http(function, "GET", url, route_params=route)
    assert response.status_code == status, response.get_body()
    error = json.loads(response.get_body())["error"]
    assert error.get("field") == field
