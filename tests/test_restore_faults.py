"""Restores under transient faults: they cost time, never the restore; a failure that will not change
still fails at once.

One night of a 24 MiB disk is backed up without faults (the direct-upload minimum is 20 MiB + 512). Then
restores run through the real app under the local Durable host (virtual clock), with the backup
account's blob and table endpoints behind the test bed's fault proxies (:mod:`testbed.fault_proxy`) and
ARM's faults injected by the compute emulator. The restored disk's SAS (written, then read to verify) is
reached through the blob proxy too: the test hands the app the SAS Compute issued with the proxy's
address in place of the data plane's (a SAS signs no host), so the page writes and the verification's
reads meet the proxy's faults, and the data plane reads each write's source, the restore point, back
through the proxy as well. The transport's own retries are made quick (a seam we own: its policy), so a
burst that outlasts them costs milliseconds; every wait of the orchestrators is a durable timer.

Each restore that meets only transient faults ends ``Succeeded`` with its disk equal to the disk that
night, byte for byte (the emulator's own digest, independent of the restore's verification), and no SAS
left active; a restore test also deletes its disk and records its verdict. A missing restore point, and
a 403, fail at once: one call, no retry.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from cleanup import remove_group_contents
from history_reading import completed, scheduled

from backup import clients as clients_module
from backup import vhd
from backup.app.blueprint import build_app
from backup.azure.compute import ComputeClient
from backup.azure.retry import RetryPolicy
from backup.azure.transport import Transport
from backup.clients import AzureClients, build_clients
from backup.errors import NotFoundError
from backup.local.durable_host import LocalHost, VirtualClock
from backup.local.durable_host.history import EventType
from backup.settings import Settings
from backup.workflow import activity_names as act
from backup.workflow.models import RUN_ORCHESTRATOR, RunInput, parse_iso
from backup.workflow.restore_models import RESTORE_ORCHESTRATOR, RestoreInput
from backup.workflow.restore_plan import temporary_disk_name
from backup.workflow.restore_startup import restore_input, restore_test_input
from backup.workflow.startup import run_options
from testbed.devenv import proving_ground_settings
from testbed.fault_proxy import FaultPlan, FaultProxy
from testbed.proving_ground import ProvingGround

pytestmark = pytest.mark.slow

MiB = 1 << 20
DISK_SIZE = 24 * MiB
NIGHT = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
#: The transport's retries, quick: five attempts within milliseconds (Retry-After up to 30 s honoured).
QUICK = RetryPolicy(max_attempts=5, backoff=0.002, max_delay=0.01, max_server_delay=30.0)


@dataclass
class Bed:
    """The night's restore point, and a second resource group (another region) to restore into."""

    ground: ProvingGround
    settings: Settings  # what the app uses: storage through the proxies
    direct: AzureClients  # what the checks use: storage directly
    group: str
    other: str
    blob_proxy: FaultProxy
    table_proxy: FaultProxy
    run_id: str = "night-0"
    digest: str = ""  # the disk's SHA-256 that night
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def disk_id(self) -> str:
        return self.ground.disk_id("data", self.group)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.ground.control(method, path, body)
        assert not (isinstance(answer, dict) and "error" in answer), answer
        return answer

    def fault(self, **fault: Any) -> None:
        self.control("POST", "/faults", fault)

    def request(self, name: str, **kwargs: Any) -> RestoreInput:
        target = {"resourceGroup": self.other, "diskName": name, "location": "eastus"}
        return restore_input(self.settings, "http", disk_id=self.disk_id, target=target, **kwargs)

    def restore(self, request: RestoreInput, restore_id: str) -> dict[str, Any]:
        """Run one restore to its end on the virtual clock; keeps every instance's history."""
        with LocalHost(build_app(self.settings), clock=VirtualClock(NIGHT + timedelta(days=1))) as host:
            host.start_new(RESTORE_ORCHESTRATOR, input=request.to_json(), instance_id=restore_id)
            status = host.wait_for_completion(restore_id, timeout=120)
            self.histories = {i.instance_id: host.history(i.instance_id) for i in host.list_instances()}
        assert status.runtime_status == "Completed", status.output
        return dict(status.output)

    def scheduled(self, instance: str, name: str) -> list[dict[str, Any]]:
        """The inputs of every call of activity ``name`` that ``instance`` scheduled."""
        return [json.loads(e["Input"]) for e in scheduled(self.histories[instance], name)]

    def completed(self, instance: str, name: str) -> list[Any]:
        """The answers of the calls of activity ``name`` that completed."""
        return completed(self.histories[instance], name)

    def timers(self, instance: str) -> int:
        return sum(1 for e in self.histories[instance] if e["EventType"] == EventType.TIMER_CREATED)

    def digest_of(self, group: str, name: str) -> str:
        return str(self.control("GET", f"/resourceGroups/{group}/disks/{name}/digest")["sha256"])

    def grants(self) -> list[str]:
        groups = (f"/resourcegroups/{self.group}/", f"/resourcegroups/{self.other}/")
        return [
            g["id"]
            for g in self.ground.control("GET", "/grants")["resources"]
            if any(x in g["id"].lower() for x in groups)
        ]

    def exists(self, disk_id: str) -> bool:
        try:
            self.direct.compute.get_disk(disk_id)
        except NotFoundError:
            return False
        return True

    def every_fault_met(self) -> None:
        assert self.ground.control("GET", "/faults")["faults"] == [], "an ARM fault was never met"
        for proxy in (self.blob_proxy, self.table_proxy):
            left = [(s.action, s.count, s.method) for s in proxy.plan.scripted if s.count]
            assert not left, f"storage faults never met: {left}"


@pytest.fixture(scope="module")
def module_bed(proving_ground: ProvingGround) -> Iterator[Bed]:
    name = "f" + uuid.uuid4().hex[:12]
    group, other = f"rg-{name}", f"rg2-{name}"
    proving_ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    proving_ground.control("PUT", f"/resourceGroups/{other}", {"location": "eastus"})
    direct_env = proving_ground_settings(
        proving_ground,
        proving_ground.arm_ca_cert,
        BACKUP_SELECT_RESOURCE_GROUP=group,
        BACKUP_CONTAINER=name,
        BACKUP_CATALOG_TABLE=name,
    )
    direct = build_clients(Settings.from_env(direct_env))
    with (
        pytest.MonkeyPatch.context() as patch,
        FaultProxy(proving_ground.backup_blob_endpoint) as blob_proxy,
        FaultProxy(proving_ground.backup_table_endpoint) as table_proxy,
    ):
        # The app's clients are built on first use for this module's settings: with the quick transport.
        patch.setattr(clients_module, "Transport", functools.partial(Transport, policy=QUICK))
        env = {**direct_env, "BACKUP_BLOB_ENDPOINT": blob_proxy.url, "BACKUP_TABLE_ENDPOINT": table_proxy.url}
        settings = Settings.from_env(env)
        bed = Bed(proving_ground, settings, direct, group, other, blob_proxy, table_proxy)
        bed.control(
            "PUT",
            f"/resourceGroups/{group}/disks/data",
            {"size_bytes": DISK_SIZE, "fill": {"seed": 7, "fraction": 0.3}},
        )
        bed.digest = bed.digest_of(group, "data")
        # The night, without faults (through the proxies: the catalog records the blob by its address).
        with LocalHost(build_app(settings), clock=VirtualClock(NIGHT)) as host:
            selection = {"kind": "diskIds", "diskIds": [bed.disk_id]}
            run = RunInput.from_json(
                {"trigger": "http", "selection": selection, "options": run_options(settings).to_json()}
            )
            host.start_new(RUN_ORCHESTRATOR, input=run.to_json(), instance_id=bed.run_id)
            [night] = host.wait_for_completion(bed.run_id, timeout=120).output["disks"]
        assert night["status"] == "Succeeded", night
        try:
            yield bed
        finally:
            for each in (group, other):
                remove_group_contents(direct, direct.settings.subscription_id, each)


@pytest.fixture
def bed(module_bed: Bed, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bed]:
    """The module's bed, with the restored disk's SAS through the blob proxy, and no fault left over
    afterwards."""
    proxy_netloc = urlsplit(module_bed.blob_proxy.url).netloc
    issued = ComputeClient.read_access_sas

    def through_the_proxy(self: ComputeClient, grant: Any) -> str:
        return urlsplit(issued(self, grant))._replace(netloc=proxy_netloc).geturl()

    monkeypatch.setattr(ComputeClient, "read_access_sas", through_the_proxy)
    for proxy in (module_bed.blob_proxy, module_bed.table_proxy):
        proxy.faults.clear()  # each test counts its own
    try:
        yield module_bed
    finally:
        module_bed.ground.control("DELETE", "/faults")
        module_bed.blob_proxy.plan = FaultPlan()
        module_bed.table_proxy.plan = FaultPlan()


def _took(result: dict[str, Any]) -> timedelta:
    """How long a restore took by the orchestration's clock."""
    return parse_iso(result["finishedAt"], "f") - parse_iso(result["startedAt"], "s")


def _succeeded_byte_for_byte(bed: Bed, result: dict[str, Any], name: str) -> None:
    assert (result["status"], result["verdict"], result["runId"]) == ("Succeeded", "Passed", bed.run_id), (
        result
    )
    assert result["sourceDigest"] == result["diskDigest"] and result["bytesCompared"] == DISK_SIZE
    assert bed.digest_of(bed.other, name) == bed.digest  # the emulator's own digest, every byte
    disk = bed.direct.compute.get_disk(result["targetDiskId"])
    assert (disk.state, disk.size_bytes) == ("Unattached", DISK_SIZE)
    assert bed.grants() == [], "a SAS is still active"


# -- transient faults: time, not the restore ---------------------------------------------------------------


def test_a_restore_rides_out_throttling_server_errors_and_lost_answers_on_arm(bed: Bed) -> None:
    restore_id = "restore-arm-faults"
    name = "arm-faults"
    # Reading the source disk (its SKU): 500 more often than the transport tries.
    bed.fault(operation="Disks_Get", action="500", count=6, resource_name="data")
    # Creating the disk: five answers lost after the disk was made; the call again finds its own disk.
    bed.fault(operation="Disks_CreateOrUpdate", action="lost", count=5, resource_name=name)
    # Granting write access: 500 six times.
    bed.fault(operation="Disks_GrantAccess", action="500", count=6, resource_name=name)
    # Polling an operation: 429 asking for 40 s, longer than the transport waits by itself.
    bed.fault(operation="DiskOperations_Get", action="429", count=2, retry_after=40)
    # Revoking (the upload becomes the disk): answers lost, the revoke done already.
    bed.fault(operation="Disks_RevokeAccess", action="lost", count=5, resource_name=name)
    result = bed.restore(bed.request(name, run_id=bed.run_id), restore_id)
    _succeeded_byte_for_byte(bed, result, name)
    bed.every_fault_met()
    assert _took(result) >= timedelta(seconds=80), "Retry-After was not honoured"
    # Each activity that met more faults than the transport tries was called again, with the same input.
    assert len(bed.scheduled(restore_id, act.FIND_RESTORE_POINT)) == 2
    assert len(bed.scheduled(restore_id, act.BEGIN_GRANT_DISK_ACCESS)) == 3  # write twice, then read
    create = bed.scheduled(restore_id, act.BEGIN_CREATE_RESTORE_DISK)
    assert len(create) >= 2 and all(c == create[0] for c in create)
    assert len(bed.scheduled(restore_id, act.BEGIN_REVOKE_DISK_ACCESS)) >= 3  # the write's twice, the read's
    assert bed.timers(restore_id) > 0
    # One disk of that name, made by this restore.
    disks = [
        d for d in bed.direct.compute.list_disks(bed.settings.subscription_id, bed.other) if d.name == name
    ]
    assert len(disks) == 1 and disks[0].tags["restoreId"] == restore_id


def test_a_restore_rides_out_503_bursts_on_the_page_writes_reads_and_catalog(bed: Bed) -> None:
    restore_id = "restore-storage-faults"
    name = "storage-faults"
    blob, table = bed.blob_proxy, bed.table_proxy
    account = bed.ground.backup_account
    # The catalog: its reads (the restore point) and the restore's row, more often than the transport tries.
    table.fail_next("busy", 6, method="GET")
    table.fail_next("busy", 6, method="PUT", path=r"\(PartitionKey=%27restore%27")
    # The plan's listing of the point's pages.
    blob.fail_next("busy", 6, method="GET", path=rf"^/{account}/.*comp=pagelist")
    # Put Page From URL into the new disk (through its write SAS), one write at a time here, so that one
    # write meets more of the burst than the transport tries.
    blob.fail_next("busy", 6, method="PUT", path=r"comp=page", header="x-ms-copy-source")
    # The data plane reading a write's source, the restore point, through its short-lived SAS: it answers
    # the write with 503 CannotVerifyCopySource.
    blob.fail_next("busy", 6, method="GET", path=rf"^/{account}/.*[?&]sig=")
    # The verification listing the new disk's pages through its read SAS.
    blob.fail_next("busy", 6, method="GET", path=r"^/mdisks/.*comp=pagelist")
    request = bed.request(name, run_id=bed.run_id)
    one_write = replace(request.options.chain, writes_per_blob=1)
    result = bed.restore(replace(request, options=replace(request.options, chain=one_write)), restore_id)
    _succeeded_byte_for_byte(bed, result, name)
    bed.every_fault_met()
    assert len(blob.faults) == 24 and len(table.faults) == 12
    # A batch met the burst and was applied again, writing the same bytes; what the restore says it wrote
    # is what the plan writes, counted once.
    applied = bed.scheduled(restore_id, act.APPLY_RESTORE_BATCH)
    assert len(applied) > len({a["planBlob"] for a in applied})
    planned = sum(p["moveBytes"] for p in bed.completed(restore_id, act.PLAN_RESTORE))
    assert result["bytesWritten"] == result["bytesTotal"] == planned + vhd.FOOTER_SIZE
    assert len(bed.scheduled(restore_id, act.FIND_RESTORE_POINT)) == 2
    assert len(bed.scheduled(restore_id, act.PLAN_RESTORE)) > len(bed.completed(restore_id, act.PLAN_RESTORE))
    spans = bed.scheduled(restore_id, act.VERIFY_RESTORE_SPAN)
    assert len(spans) > len({json.dumps(s["span"]) for s in spans})
    assert len(bed.scheduled(restore_id, act.RECORD_RESTORE)) == 3  # its start, retried; its end
    record = bed.direct.catalog.get_restore(restore_id)
    assert record is not None and (record.result.status, record.result.verdict) == ("Succeeded", "Passed")
    assert result["warnings"] == []


def test_a_restore_test_rides_out_faults_on_deleting_its_disk_and_recording_its_verdict(bed: Bed) -> None:
    restore_id = "test-under-faults"
    temporary = temporary_disk_name(restore_id)
    bed.fault(operation="Disks_Delete", action="500", count=6, resource_name=temporary)
    # The verdict merged into the restore point's row: a conditional merge (If-Match: *), which the
    # transport does not repeat by itself; three calls of the activity meet a 503, the fourth records it.
    bed.table_proxy.fail_next("busy", 3, method="MERGE", path=r"\(PartitionKey=%27disk_")
    test = restore_test_input(
        bed.settings,
        "cli",
        disk_id=bed.disk_id,
        run_id=bed.run_id,
        restore_id=restore_id,
        resource_group=bed.group,
    )
    result = bed.restore(test, restore_id)
    assert (result["status"], result["verdict"], result["diskDeleted"]) == ("Succeeded", "Passed", True), (
        result
    )
    assert result["warnings"] == []
    bed.every_fault_met()
    assert not bed.exists(result["targetDiskId"])
    point = bed.direct.catalog.find_restore_point(bed.disk_id, bed.run_id)
    assert point is not None and point.verdict == "Passed" and point.verify_restore_id == restore_id
    assert point.verified_digest == result["sourceDigest"]
    assert len(bed.scheduled(restore_id, act.BEGIN_DELETE_RESTORE_DISK)) == 2
    assert len(bed.scheduled(restore_id, act.RECORD_POINT_VERDICT)) == 4
    assert bed.grants() == []


# -- failures that will not change: at once, with the reason ----------------------------------------------


def test_a_missing_restore_point_fails_at_once_without_a_retry(bed: Bed) -> None:
    restore_id = "restore-missing-point"
    result = bed.restore(bed.request("never", run_id="night-9"), restore_id)
    assert (result["status"], result["phase"], result["code"]) == ("Failed", "resolve", "NoRestorePoint")
    assert result["reason"].startswith("resolve: run night-9 recorded no restore point of /subscriptions/")
    assert len(bed.scheduled(restore_id, act.FIND_RESTORE_POINT)) == 1
    assert bed.timers(restore_id) == 0  # no retry waited for
    assert not bed.exists(result["targetDiskId"])


def test_a_403_on_a_page_write_fails_the_restore_at_once_and_cleans_up(bed: Bed) -> None:
    restore_id = "restore-forbidden"
    name = "forbidden"
    bed.blob_proxy.fail_next("forbid", 1, method="PUT", path=r"comp=page", header="x-ms-copy-source")
    result = bed.restore(bed.request(name, run_id=bed.run_id), restore_id)
    assert (result["status"], result["phase"], result["code"]) == ("Failed", "write", "AccessDenied"), result
    assert "answered HTTP 403 AuthorizationFailure" in result["reason"]
    assert result["reason"].startswith("write: ")
    # One write refused, once: no retry of the batch, no retry of the request.
    assert [action for action, _, _ in bed.blob_proxy.faults] == ["forbid"]
    assert len(bed.scheduled(restore_id, act.APPLY_RESTORE_BATCH)) == 1
    # Cleaned up: revoked, the half-made disk deleted, the failure recorded.
    assert result["diskDeleted"] and not bed.exists(result["targetDiskId"])
    assert bed.grants() == []
    record = bed.direct.catalog.get_restore(restore_id)
    assert record is not None and (record.result.code, record.result.reason) == (
        "AccessDenied",
        result["reason"],
    )
