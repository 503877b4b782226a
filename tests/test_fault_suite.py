"""Nothing lost to a bad night: the whole backup under faults, each scenario ending with the same checks.

Every run goes through the real function app under the local Durable host (virtual clock), with the
storage endpoints behind the test bed's fault proxy (:mod:`testbed.fault_proxy`) and ARM's faults
injected by the compute emulator's control surface. The transport's own retries are made quick here (a
seam we own: its policy), so that a scenario that exhausts them costs milliseconds, not seconds; every
wait of the orchestrators is a durable timer on the virtual clock.

Each scenario ends with :func:`check_invariants`:

- every disk either succeeded, or failed with a reason and a code;
- no SAS is active;
- no snapshot is left that should not be: each disk keeps only the diff base of its newest good restore
  point (and a snapshot a person asked to keep);
- no blob is recorded that is not verified: every restore point the catalog holds as Succeeded, read back
  at its blob snapshot, is the disk as it was that night, byte for byte, and each good disk-night has
  exactly one restore point (a retry after a lost answer made no second one);
- the catalog's rows agree with the run's result (unless the catalog itself was down, which the run's
  warnings then say).

Transient faults cost time, never a backup: a disk hit only by transient faults succeeds.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cleanup import remove_group_contents
from history_reading import completed, every_history, record_executions, scheduled, with_waits

from backup import clients as clients_module
from backup.app.blueprint import build_app
from backup.azure.blob import BlobClient
from backup.azure.compute import snapshot_name
from backup.azure.lro import LroStatus
from backup.azure.retry import RetryPolicy
from backup.azure.transport import Transport
from backup.clients import AzureClients, build_clients
from backup.errors import NotFoundError
from backup.failures import FailureCode
from backup.local.durable_host import LocalHost, VirtualClock
from backup.settings import Settings
from backup.workflow import activities, chain_activities
from backup.workflow import activity_names as act
from backup.workflow.chain import chain_blob_name
from backup.workflow.models import RUN_ORCHESTRATOR, RunInput, parse_iso, sub_orchestration_id
from backup.workflow.startup import run_options
from testbed.devenv import proving_ground_settings
from testbed.digest import blob_sha256
from testbed.fault_proxy import FaultPlan, FaultProxy
from testbed.proving_ground import ProvingGround

pytestmark = pytest.mark.slow

START = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
MiB = 1 << 20
#: The transport's retries, quick: five attempts within a few milliseconds (Retry-After up to 30 s honoured).
QUICK = RetryPolicy(max_attempts=5, backoff=0.002, max_delay=0.01, max_server_delay=30.0)
#: Every ARM operation a first and a second night make.
ARM_OPERATIONS = (
    "Disks_ListByResourceGroup",
    "Snapshots_CreateOrUpdate",
    "DiskOperations_Get",
    "Snapshots_Get",
    "Snapshots_GrantAccess",
    "Snapshots_RevokeAccess",
    "Snapshots_Update",
    "Snapshots_Delete",
)
RESTORE_POINT_ROWS = r"\(PartitionKey=%27disk_"
RUN_ROWS = r"\(PartitionKey=%27run%27"
CODES = {code.value for code in FailureCode}


@dataclass
class Night:
    """One run: its result and the disks' digests when it started."""

    run_id: str
    summary: dict[str, Any]
    digests: dict[str, str]
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def disk(self, name: str) -> dict[str, Any]:
        [result] = [d for d in self.summary["disks"] if d["diskName"] == name]
        return result


@dataclass
class Suite:
    """One scenario's corner of the proving ground: a resource group, a container and a catalog behind
    fault proxies, and clients that reach everything directly (for the checks)."""

    ground: ProvingGround
    settings: Settings  # what the app uses: storage through the proxies
    direct: AzureClients  # what the checks use: storage directly
    group: str
    blob_proxy: FaultProxy
    table_proxy: FaultProxy
    sizes: dict[str, int] = field(default_factory=dict)
    nights: list[Night] = field(default_factory=list)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.ground.control(method, path, body)
        assert not (isinstance(answer, dict) and "error" in answer), answer
        return answer

    def make_disk(self, name: str, size: int = 2 * MiB, seed: int = 1, fraction: float = 0.3) -> str:
        body = {"size_bytes": size, "fill": {"seed": seed, "fraction": fraction}}
        self.control("PUT", f"/resourceGroups/{self.group}/disks/{name}", body)
        self.sizes[name] = size
        return self.disk_id(name)

    def disk_id(self, name: str) -> str:
        return self.ground.disk_id(name, self.group)

    def churn(self, name: str, seed: int) -> None:
        self.control(
            "POST",
            f"/resourceGroups/{self.group}/disks/{name}/churn",
            {"seed": seed, "write_fraction": 0.05, "trim_fraction": 0.02},
        )

    def fault(self, **fault: Any) -> None:
        self.control("POST", "/faults", fault)

    def snapshot_of(self, name: str, run_id: str) -> str:
        """The resource path (below the subscription) of run ``run_id``'s snapshot of disk ``name``."""
        return f"/resourceGroups/{self.group}/snapshots/{snapshot_name(run_id, self.disk_id(name))}"

    def blob_name(self, name: str) -> str:
        return chain_blob_name(self.ground.subscription_id, self.group, name)

    def host(self, store: Path | None = None) -> LocalHost:
        clock = VirtualClock(START + timedelta(days=len(self.nights)))
        return LocalHost(build_app(self.settings), clock=clock, store_dir=store)

    def start(
        self, host: LocalHost, run_id: str, max_parallel: int, chain: dict[str, Any] | None = None
    ) -> None:
        chosen = run_options(self.settings).to_json()
        chosen["maxParallel"] = max_parallel
        chosen["chain"].update(chain or {})
        selection = {"kind": "resourceGroup", "resourceGroup": self.group}
        run = RunInput.from_json({"trigger": "http", "selection": selection, "options": chosen})
        host.start_new(RUN_ORCHESTRATOR, input=run.to_json(), instance_id=run_id)

    def digests(self) -> dict[str, str]:
        return {
            name: self.control("GET", f"/resourceGroups/{self.group}/disks/{name}/digest")["sha256"]
            for name in self.sizes
        }

    def night(self, max_parallel: int = 2, chain: dict[str, Any] | None = None) -> Night:
        """One run, started a day after the last; what it left."""
        run_id = f"night-{len(self.nights)}-{uuid.uuid4().hex[:6]}"
        digests = self.digests()
        with self.host() as host:
            executions = record_executions(host, finished=True)
            self.start(host, run_id, max_parallel, chain)
            status = host.wait_for_completion(run_id, timeout=180)
            histories = every_history(host, executions)
        assert status.runtime_status == "Completed", status.output
        night = Night(run_id, status.output, digests, histories)
        self.nights.append(night)
        return night

    def grants(self) -> list[str]:
        return [
            g["id"]
            for g in self.ground.control("GET", "/grants")["resources"]
            if f"/resourcegroups/{self.group}/" in g["id"].lower()
        ]

    def snapshots(self) -> set[str]:
        compute = self.direct.compute
        return {s.id.lower() for s in compute.list_snapshots(self.settings.subscription_id, self.group)}

    def blob_snapshots(self, name: str) -> list[tuple[str, dict[str, str]]]:
        """The restore points in disk ``name``'s backup blob: (snapshot time, metadata)."""
        container = self.direct.container
        try:
            listed = self.direct.blob.list_blobs(
                container, prefix=self.blob_name(name), snapshots=True, metadata=True
            )
        except NotFoundError:  # no container: nothing was ever written
            return []
        return [(i.snapshot, i.metadata) for i in listed if i.name == self.blob_name(name) and i.snapshot]

    def delete_disk(self, name: str) -> None:
        compute = self.direct.compute
        operation = compute.arm.begin(
            "DELETE", compute.get_disk(self.disk_id(name)).resource_id.path, api_version="2026-03-02"
        )
        _finish(compute, operation)


def _finish(compute: Any, operation: LroStatus) -> None:
    while not operation.done:
        operation = compute.poll(operation)


@pytest.fixture
def suite(
    proving_ground: ProvingGround, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Suite]:
    monkeypatch.setattr(clients_module, "Transport", functools.partial(Transport, policy=QUICK))
    group = f"rg-{unique_name}"
    proving_ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    direct_env = proving_ground_settings(
        proving_ground,
        proving_ground.arm_ca_cert,
        BACKUP_SELECT_RESOURCE_GROUP=group,
        BACKUP_CONTAINER=unique_name,
        BACKUP_CATALOG_TABLE=unique_name,
        BACKUP_VERIFY_SAMPLE_MIB="1",
    )
    with (
        FaultProxy(proving_ground.backup_blob_endpoint) as blob_proxy,
        FaultProxy(proving_ground.backup_table_endpoint) as table_proxy,
    ):
        env = {**direct_env, "BACKUP_BLOB_ENDPOINT": blob_proxy.url, "BACKUP_TABLE_ENDPOINT": table_proxy.url}
        direct = build_clients(Settings.from_env(direct_env))
        bed = Suite(proving_ground, Settings.from_env(env), direct, group, blob_proxy, table_proxy)
        try:
            yield bed
        finally:
            proving_ground.control("DELETE", "/faults")
            blob_proxy.plan = FaultPlan()
            table_proxy.plan = FaultPlan()
            remove_group_contents(direct, direct.settings.subscription_id, group)


# -- the invariants ----------------------------------------------------------------------------------------


def check_invariants(suite: Suite, night: Night, *, catalog_down: bool = False) -> None:
    """What every scenario ends with (the module docstring lists them)."""
    summary = night.summary
    results = summary["disks"]
    # 1. Every disk either succeeded or failed with a reason and a code.
    for result in results:
        assert result["status"] in ("Succeeded", "Failed"), result
        if result["status"] == "Failed":
            assert result["reason"] and result["code"] in CODES, result
            assert result["reason"].startswith(f"{result['phase']}: "), result
    if summary["status"] == "Failed" and not results:
        assert summary["reason"] and summary["code"] in CODES, summary

    # 2. No SAS active.
    assert suite.grants() == [], "a SAS is still active"

    # 3. No snapshot left but each disk's diff base: the snapshot of its newest good restore point.
    catalog = suite.direct.catalog
    bases = set()
    for name in suite.sizes:
        point, problem = catalog.last_good_point(suite.disk_id(name))
        assert problem is None, problem
        if point is not None and point.snapshot_id is not None:
            bases.add(point.snapshot_id.lower())
    kept = {r["snapshotId"].lower() for r in results if r.get("snapshotId")} if _kept(summary) else set()
    assert suite.snapshots() == bases | kept, "a snapshot is left that should not be"

    # 4. No blob recorded that is not verified: every good restore point is its night's disk, byte for
    # byte, and a good disk-night has exactly one restore point.
    blob = BlobClient()
    by_run = {n.run_id: n for n in suite.nights}
    for name, size in suite.sizes.items():
        points = catalog.list_restore_points(suite.disk_id(name), include_failed=True, top=500).items
        taken = suite.blob_snapshots(name)
        for point in points:
            if point.status != "Succeeded":
                continue
            address = suite.direct.backup_blob(suite.settings.container, suite.blob_name(name))
            digest, _ = blob_sha256(blob, address.at_snapshot(point.blob_snapshot), length=size)
            assert digest == by_run[point.run_id].digests[name], f"{name} in {point.run_id} differs"
            mine = [t for t, metadata in taken if _meta(metadata, "runId") == point.run_id]
            assert mine == [point.blob_snapshot], f"{name} in {point.run_id}: restore points {mine}"

    # 5. The catalog agrees with the run's result.
    rows = {
        p.disk_id.lower(): p
        for result in results
        for p in catalog.list_restore_points(result["diskId"], include_failed=True, top=500).items
        if p.run_id == night.run_id
    }
    for result in results:
        row = rows.get(result["diskId"].lower())
        if row is None:
            assert catalog_down and result["status"] == "Failed", f"no catalog row for {result['diskName']}"
            assert any("not recorded in the catalog" in w for w in result["warnings"]), result
            continue
        assert row.status == result["status"], (row, result)
        if result["status"] == "Succeeded":
            assert row.blob_snapshot == result["blobSnapshot"]
        else:
            assert (row.code, row.reason) == (result["code"], result["reason"])
    run_row = catalog.get_run(night.run_id)
    recorded = not any(w.startswith("run not recorded") for w in summary.get("warnings", []))
    if recorded:
        assert run_row is not None and run_row.status == summary["status"], run_row
    else:
        assert catalog_down


def _kept(summary: dict[str, Any]) -> bool:
    return False  # no scenario here asks for keepSnapshot; the chain keeps only the diff base


def _meta(metadata: dict[str, str], name: str) -> str | None:
    return next((v for k, v in metadata.items() if k.lower() == name.lower()), None)


def _scheduled(night: Night, instance: str, name: str) -> list[dict[str, Any]]:
    """The calls of activity ``name`` by a disk orchestration and its waits (where begins, the copy's
    start and the polls are called)."""
    return scheduled(with_waits(night.histories, instance), name)


def _took(night: Night) -> timedelta:
    """How long the run took by the orchestration's clock."""
    return parse_iso(night.summary["finishedAt"], "f") - parse_iso(night.summary["startedAt"], "s")


def _all_succeeded(night: Night, names: set[str]) -> None:
    results = {d["diskName"]: d for d in night.summary["disks"]}
    assert set(results) == names
    failed = {n: (d["code"], d["reason"]) for n, d in results.items() if d["status"] != "Succeeded"}
    assert not failed, f"transient faults cost a backup: {failed}"


def _hook(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, before: Callable[[Any], None]) -> None:
    """Make activity ``name`` of ``module`` call ``before(data)`` first (a seam we own: activities are
    looked up by name when they run)."""
    real = getattr(module, name)

    def hooked(clients: AzureClients, data: Any) -> Any:
        before(data)
        return real(clients, data)

    monkeypatch.setattr(module, name, hooked)


# -- ARM: throttling, server errors, resets, lost answers, failed operations ---------------------------------


@pytest.mark.parametrize(("action", "count"), [("429", 2), ("500", 6)])
def test_throttling_and_server_errors_on_every_arm_operation_cost_time_only(
    suite: Suite, action: str, count: int
) -> None:
    suite.make_disk("alpha", seed=1)
    suite.make_disk("bravo", seed=2)
    for night in range(2):
        if night:
            suite.churn("alpha", 11)
        for operation in ARM_OPERATIONS:
            # A 429 asks for 40 s, longer than the transport waits by itself; 500 six times, more often
            # than the transport tries.
            suite.fault(operation=operation, action=action, count=count, retry_after=40)
        result = suite.night()
        _all_succeeded(result, {"alpha", "bravo"})
        check_invariants(suite, result)
        if action == "429":
            assert _took(result) >= timedelta(seconds=40), "Retry-After was not honoured"
    assert suite.ground.control("GET", "/faults")["faults"] == []  # every fault was met
    assert [d["kind"] for d in suite.nights[1].summary["disks"]] == ["incremental"] * 2


def test_resets_and_lost_answers_on_arm_cost_time_only(suite: Suite) -> None:
    suite.make_disk("alpha", seed=3)
    suite.make_disk("bravo", seed=4)
    run_id = "night-0-arm-lost"
    for operation in ("Snapshots_CreateOrUpdate", "DiskOperations_Get", "Snapshots_RevokeAccess"):
        suite.fault(operation=operation, action="reset", count=2)
        suite.fault(operation=operation, action="lost", count=2)
    # More lost answers in a row than the transport tries, each after the call took effect: alpha's
    # grant (made, made again: a new grant replaces the SAS), bravo's snapshot (a PUT of the same
    # snapshot again is an update) and bravo's tags.
    alpha, bravo = (
        snapshot_name(run_id, suite.disk_id("alpha")),
        snapshot_name(run_id, suite.disk_id("bravo")),
    )
    suite.fault(operation="Snapshots_GrantAccess", action="lost", count=6, resource_name=alpha)
    suite.fault(operation="Snapshots_CreateOrUpdate", action="lost", count=6, resource_name=bravo)
    suite.fault(operation="Snapshots_Update", action="lost", count=6, resource_name=bravo)
    night = _night_with_id(suite, run_id)
    _all_succeeded(night, {"alpha", "bravo"})
    check_invariants(suite, night)
    assert suite.ground.control("GET", "/faults")["faults"] == []
    # Each activity that met more lost answers than the transport tries was called again: alpha's grant
    # and bravo's tags exactly once more. Bravo's snapshot also shares the two resets and two lost
    # answers meant for every snapshot PUT with alpha's: as they fall, its six make two calls or three.
    for index, name in ((0, act.BEGIN_GRANT_ACCESS), (1, act.BEGIN_TAG_BASE)):
        assert len(_scheduled(night, sub_orchestration_id(run_id, index), name)) == 2, name
    assert len(_scheduled(night, sub_orchestration_id(run_id, 1), act.BEGIN_SNAPSHOT)) in (2, 3)


def test_an_operation_that_ends_failed_or_canceled_fails_its_disk_at_once(suite: Suite) -> None:
    suite.make_disk("alpha", seed=5)
    suite.make_disk("bravo", seed=6)
    suite.make_disk("charlie", seed=7)
    run_id = "night-0-lro"
    grant_of_alpha = snapshot_name(run_id, suite.disk_id("alpha"))
    suite.fault(
        operation="Snapshots_GrantAccess",
        action="Failed",
        resource_name=grant_of_alpha,
        code="InternalDiskManagementError",
        message="the grant could not be made",
    )
    suite.fault(
        operation="Snapshots_CreateOrUpdate",
        action="Canceled",
        resource_name=snapshot_name(run_id, suite.disk_id("bravo")),
    )
    digests = suite.digests()
    with suite.host() as host:
        executions = record_executions(host, finished=True)
        suite.start(host, run_id, max_parallel=3)
        status = host.wait_for_completion(run_id, timeout=180)
        histories = every_history(host, executions)
    night = Night(run_id, status.output, digests, histories)
    suite.nights.append(night)
    assert (night.disk("alpha")["phase"], night.disk("alpha")["code"]) == ("grant", "OperationFailed")
    assert night.disk("alpha")["reason"] == (
        "grant: operation ended Failed: InternalDiskManagementError: the grant could not be made"
    )
    assert (night.disk("bravo")["phase"], night.disk("bravo")["code"]) == ("snapshot", "SnapshotFailed")
    assert night.disk("charlie")["status"] == "Succeeded"
    # Not retried: one grant, though the policy would have allowed six.
    assert len(_scheduled(night, sub_orchestration_id(run_id, 0), act.BEGIN_GRANT_ACCESS)) == 1
    check_invariants(suite, night)


# -- storage: busy, resets and lost answers on blob and table ------------------------------------------------


def test_busy_resets_and_lost_answers_on_blob_storage_cost_time_only(suite: Suite) -> None:
    suite.make_disk("alpha", seed=8)
    suite.make_disk("bravo", seed=9)
    proxy = suite.blob_proxy
    # The fault of issue 10: 503 ServerBusy to the Copy Blob that starts a copy (not retried by the
    # transport: a PUT of Copy Blob is not idempotent), then a lost answer (the copy started; the retry
    # finds it), then resets on reads.
    proxy.fail_next("busy", 1, method="PUT", header="x-ms-copy-source")
    proxy.fail_next("lost", 1, method="PUT", header="x-ms-copy-source")
    proxy.fail_next("reset", 12, method="HEAD")
    proxy.fail_next("busy", 6, method="PUT", path=r"comp=lease")
    night = suite.night()
    _all_succeeded(night, {"alpha", "bravo"})
    check_invariants(suite, night)
    made = [(action, method) for action, method, _ in proxy.faults]
    assert (
        made.count(("busy", "PUT")) == 7 and ("lost", "PUT") in made and made.count(("reset", "HEAD")) == 12
    )
    # A start_copy call fails on the refused Copy Blob, on the lost answer, and on a HEAD (its look for
    # its own copy) reset five times in a row: 12 resets make at most two such failures. So the two disks
    # call it at most 2 + 4 times, each called again after each failure and never more (the call after
    # the lost answer finds the copy it started, which the invariants above show: one restore point per
    # disk-night, byte for byte).
    calls = [
        len(_scheduled(night, sub_orchestration_id(night.run_id, _index(night, name)), act.START_COPY))
        for name in ("alpha", "bravo")
    ]
    assert min(calls) >= 1 and 2 + 2 <= sum(calls) <= 2 + 4, calls


def test_a_lost_answer_on_the_blob_snapshot_makes_no_second_restore_point(suite: Suite) -> None:
    suite.make_disk("alpha", seed=10)
    suite.make_disk("bravo", seed=11)
    suite.blob_proxy.fail_next("lost", 2, method="PUT", path=r"comp=snapshot")
    night = suite.night()
    _all_succeeded(night, {"alpha", "bravo"})
    check_invariants(suite, night)  # exactly one restore point per disk-night among the blob's snapshots
    assert [a for a, _, _ in suite.blob_proxy.faults] == ["lost", "lost"]
    for name in ("alpha", "bravo"):
        instance = sub_orchestration_id(night.run_id, _index(night, name))
        assert len(_scheduled(night, instance, act.SNAPSHOT_BACKUP_BLOB)) == 2  # retried once each


def test_lost_answers_and_resets_on_table_storage_cost_time_only(suite: Suite) -> None:
    suite.make_disk("alpha", seed=12)
    suite.make_disk("bravo", seed=13)
    proxy = suite.table_proxy
    # More lost catalog writes in a row than the transport tries: the activity is retried, the row
    # written again (an upsert keyed by run and disk: still one row).
    proxy.fail_next("lost", 6, method="PUT", path=RESTORE_POINT_ROWS)
    proxy.fail_next("reset", 6, method="GET")
    proxy.fail_next("busy", 6, method="PUT", path=RUN_ROWS)
    night = suite.night()
    _all_succeeded(night, {"alpha", "bravo"})
    check_invariants(suite, night)
    assert len(proxy.faults) == 18


def test_a_lost_answer_on_put_page_from_url_applies_the_batch_again_with_the_same_bytes(suite: Suite) -> None:
    suite.make_disk("alpha", size=8 * MiB, seed=14)
    first = suite.night(max_parallel=1)
    _all_succeeded(first, {"alpha"})
    suite.churn("alpha", 15)
    # Put Page From URL (a PUT of comp=page carrying x-ms-copy-source), one write at a time: more lost
    # answers in a row than the transport tries, so the whole batch is applied again.
    suite.blob_proxy.fail_next("lost", 6, method="PUT", path=r"comp=page", header="x-ms-copy-source")
    night = suite.night(max_parallel=1, chain={"writesPerBlob": 1})
    _all_succeeded(night, {"alpha"})
    check_invariants(suite, night)
    result = night.disk("alpha")
    assert result["kind"] == "incremental"
    instance = sub_orchestration_id(night.run_id, 0)
    applied = _scheduled(night, instance, act.APPLY_BATCH)
    assert len(applied) > len({json.loads(e["Input"])["planBlob"] for e in applied})  # one applied again
    # Bytes moved are counted once: what the plan moves, not what the retries wrote.
    planned = _completed(night, instance, act.LIST_CHANGES)
    footer = _completed(night, instance, act.SYNC_FOOTER)
    expected = sum(p["moveBytes"] for p in planned) + sum(f["bytesMoved"] for f in footer)
    assert result["bytesMoved"] == expected


# -- copies: failed, aborted, their SAS run out, their source gone -------------------------------------------


def test_a_copy_that_failed_or_was_aborted_fails_its_disk_and_is_not_started_again(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.make_disk("alpha", seed=16)
    suite.make_disk("bravo", seed=17)
    suite.make_disk("charlie", seed=18)
    run_id = "night-0-copies"
    failing: list[str] = []

    def fail_alphas_copy(data: Any) -> None:
        if "/alpha/" in data["blobName"] and not failing:
            path = f"{suite.snapshot_of('alpha', run_id)}/copy-fails"
            failing.append(suite.control("POST", path, {"description": "disk read error"})["next_copy"])

    _hook(monkeypatch, activities, "start_copy", fail_alphas_copy)
    aborted: list[str] = []

    def abort_bravos_copy(data: Any) -> None:
        if "/bravo/" in data["blobName"] and not aborted:
            blob = suite.direct.backup_blob(data["container"], data["blobName"])
            suite.direct.blob.abort_copy(blob, data["copyId"])
            aborted.append(data["copyId"])

    _hook(monkeypatch, activities, "copy_status", abort_bravos_copy)
    night = _night_with_id(suite, run_id, max_parallel=3)
    assert (night.disk("alpha")["code"], night.disk("alpha")["reason"]) == (
        "CopyFailed",
        "copy: copy failed: disk read error",
    )
    assert night.disk("bravo")["code"] == "CopyFailed" and "copy aborted" in night.disk("bravo")["reason"]
    assert night.disk("charlie")["status"] == "Succeeded"
    for index in (0, 1):
        assert len(_scheduled(night, sub_orchestration_id(run_id, index), act.START_COPY)) == 1
    check_invariants(suite, night)


def test_a_sas_that_runs_out_during_a_copy_is_granted_again_and_the_copy_started_again(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.make_disk("alpha", seed=19)
    run_id = "night-0-expiry"
    expired: list[str] = []

    def expire_the_sas(data: Any) -> None:
        if not expired:
            expired.append(suite.control("POST", f"{suite.snapshot_of('alpha', run_id)}/sas-expires")["sas"])

    _hook(monkeypatch, activities, "copy_status", expire_the_sas)
    night = _night_with_id(suite, run_id, max_parallel=1)
    assert expired == ["expired"]
    _all_succeeded(night, {"alpha"})
    check_invariants(suite, night)
    instance = sub_orchestration_id(run_id, 0)
    grants = [json.loads(e["Input"]) for e in _scheduled(night, instance, act.BEGIN_GRANT_ACCESS)]
    assert len(grants) == 2 and grants[1]["durationSeconds"] == 2 * grants[0]["durationSeconds"]
    assert len(_scheduled(night, instance, act.START_COPY)) == 2


def test_a_copy_whose_source_disappears_fails_its_disk_cleanly(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.make_disk("alpha", seed=20)
    suite.make_disk("bravo", seed=21)
    run_id = "night-0-vanish"

    def source_disappears(data: Any) -> None:
        if "/alpha/" in data["blobName"]:
            suite.control("POST", f"{suite.snapshot_of('alpha', run_id)}/source-disappears")

    _hook(monkeypatch, activities, "copy_status", source_disappears)
    night = _night_with_id(suite, run_id)
    result = night.disk("alpha")
    assert (result["phase"], result["code"]) == ("copy", "CopyFailed") and "404" in result["reason"]
    assert night.disk("bravo")["status"] == "Succeeded"
    assert len(_scheduled(night, sub_orchestration_id(run_id, 0), act.START_COPY)) == 1  # no new grant helps
    check_invariants(suite, night)


# -- the host, the disk, the catalog and the container going away --------------------------------------


def test_a_host_stopped_mid_run_is_restarted_on_the_same_store_and_finishes(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    suite.make_disk("alpha", seed=22)
    suite.make_disk("bravo", seed=23)
    run_id = "night-0-restart"
    in_flight, release = threading.Event(), threading.Event()
    real = activities.start_copy

    def dying(clients: AzureClients, data: Any) -> Any:
        if "/bravo/" in data["blobName"] and not in_flight.is_set():
            real(clients, data)  # the copy started; the process dies before it reports back
            in_flight.set()
            release.wait(60)
            raise RuntimeError("this process is gone")
        return real(clients, data)

    monkeypatch.setattr(activities, "start_copy", dying)
    digests = suite.digests()
    first = suite.host(tmp_path)
    first.start()
    try:
        suite.start(first, run_id, max_parallel=2)
        assert in_flight.wait(120), "bravo's copy never started"
    finally:
        first.stop(wait_for_activities=False)
        release.set()
    monkeypatch.setattr(activities, "start_copy", real)
    with suite.host(tmp_path) as second:
        status = second.wait_for_completion(run_id, timeout=180)
        histories = every_history(second, {})
    night = Night(run_id, status.output, digests, histories)
    suite.nights.append(night)
    _all_succeeded(night, {"alpha", "bravo"})
    check_invariants(suite, night)


def test_a_disk_deleted_mid_run_fails_alone(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    suite.make_disk("alpha", seed=24)
    suite.make_disk("bravo", seed=25)

    def delete_bravo(data: Any) -> None:
        if data["blobName"].endswith("/bravo/chain.vhd"):
            suite.delete_disk("bravo")

    _hook(monkeypatch, chain_activities, "acquire_writer_lease", delete_bravo)
    night = suite.night()
    result = night.disk("bravo")
    assert (result["phase"], result["code"]) == ("snapshot", "DiskNotFound"), result
    assert night.disk("alpha")["status"] == "Succeeded"
    del suite.sizes["bravo"]  # gone: nothing of it to check but the run's result and its catalog row
    check_invariants(suite, night)
    point, _ = suite.direct.catalog.last_good_point(suite.disk_id("bravo"))
    assert point is None
    [failed] = suite.direct.catalog.list_restore_points(suite.disk_id("bravo"), include_failed=True).items
    assert (failed.status, failed.code) == ("Failed", "DiskNotFound")


def test_the_catalog_unavailable_at_the_start_starts_nothing_and_the_next_run_backs_up(suite: Suite) -> None:
    suite.make_disk("alpha", seed=26)
    suite.table_proxy.set_rates(busy=1.0)  # every catalog request: 503, however often it is asked
    night = suite.night()
    summary = night.summary
    assert (summary["status"], summary["code"], summary["disks"]) == ("Failed", "BackendUnavailable", [])
    assert summary["reason"].startswith("recording the run in the catalog: Table storage answered HTTP 503")
    check_invariants(suite, night, catalog_down=True)
    assert suite.snapshots() == set() and suite.direct.catalog.get_run(night.run_id) is None
    suite.table_proxy.set_rates(busy=0.0)
    after = suite.night()
    _all_succeeded(after, {"alpha"})
    check_invariants(suite, after)


def test_the_catalog_unavailable_at_the_end_records_nothing_it_cannot_verify(suite: Suite) -> None:
    suite.make_disk("alpha", seed=27)
    suite.make_disk("bravo", seed=28)
    proxy = suite.table_proxy
    proxy.fail_next("busy", 10**6, method="PUT", path=RESTORE_POINT_ROWS)
    proxy.fail_next("busy", 10**6, method="PUT", path=RUN_ROWS, after=1)  # the run's first row goes in
    night = suite.night()
    for name in ("alpha", "bravo"):
        result = night.disk(name)
        assert (result["phase"], result["code"]) == ("record", "BackendUnavailable"), result
    assert any(w.startswith("run not recorded in the catalog") for w in night.summary["warnings"])
    check_invariants(suite, night, catalog_down=True)
    # The run's row still says Running: the catalog never heard more; it holds no restore point.
    assert suite.direct.catalog.get_run(night.run_id).status == "Running"  # type: ignore[union-attr]


def test_the_backup_container_deleted_mid_run(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    suite.make_disk("alpha", seed=29)
    suite.make_disk("bravo", seed=30)
    deleted: list[bool] = []

    def delete_the_container(data: Any) -> None:
        if not deleted:
            suite.direct.blob.delete_container(suite.direct.container)
            deleted.append(True)

    _hook(monkeypatch, activities, "copy_status", delete_the_container)
    night = suite.night(max_parallel=1)  # alpha first; bravo after the container went
    alpha = night.disk("alpha")
    assert (alpha["status"], alpha["phase"], alpha["code"]) == ("Failed", "copy", "NotFound"), alpha
    assert night.disk("bravo")["status"] == "Succeeded"  # its lease made the container again
    check_invariants(suite, night)


# -- everything at once ------------------------------------------------------------------------------------


def test_a_transient_storm_on_every_endpoint_costs_time_never_a_backup(suite: Suite) -> None:
    for index, name in enumerate(("alpha", "bravo", "charlie", "delta")):
        suite.make_disk(name, size=(1 + index) * MiB, seed=31 + index)
    suite.blob_proxy.plan = FaultPlan(busy=0.08, reset=0.04, lost=0.03, seed=10)
    suite.table_proxy.plan = FaultPlan(busy=0.08, reset=0.04, lost=0.03, seed=11)
    for operation in ARM_OPERATIONS[:7]:
        suite.fault(operation=operation, action="429", count=1, retry_after=40)
        suite.fault(operation=operation, action="500", count=2)
        suite.fault(operation=operation, action="reset", count=2)
    night = suite.night(max_parallel=2)
    _all_succeeded(night, {"alpha", "bravo", "charlie", "delta"})
    check_invariants(suite, night)
    assert suite.blob_proxy.faults and suite.table_proxy.faults


# -- small helpers -------------------------------------------------------------------------------------------


def _night_with_id(suite: Suite, run_id: str, max_parallel: int = 2) -> Night:
    digests = suite.digests()
    with suite.host() as host:
        executions = record_executions(host, finished=True)
        suite.start(host, run_id, max_parallel)
        status = host.wait_for_completion(run_id, timeout=180)
        histories = every_history(host, executions)
    assert status.runtime_status == "Completed", status.output
    night = Night(run_id, status.output, digests, histories)
    suite.nights.append(night)
    return night


def _index(night: Night, name: str) -> int:
    return [d["diskName"] for d in night.summary["disks"]].index(name)


def _completed(night: Night, instance: str, name: str) -> list[Any]:
    return completed(with_waits(night.histories, instance), name)
