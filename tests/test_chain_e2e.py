"""The incremental chain end to end: nights of churn through the real orchestrators, on the proving ground.

Each night is a run through the function app under the local Durable host (virtual clock, a day after the
last), with real HTTP to the compute emulator and to Azurite through the data plane's front, whose
page-range diffs are right (Azurite's are not) and which answers Put Page From URL. Disks are small and
the chain's bounds smaller still (4 MiB segments, 3 ranges a listing answer, 3 requests a batch), so a
16 MiB disk is diffed in segments, paged by marker and applied in many batches.

What is proved: the first night is a full copy and the next ones incremental; trimmed pages are cleared;
every restore point read back at its blob snapshot equals the disk that night, byte for byte; the diff
base rotates (one managed snapshot per disk survives); each fallback to a full copy happens when its
cause is made, with the reason recorded; a crash in the middle of applying resumes and ends with the
same bytes; two overlapping runs never write one backup blob at once; no SAS, range list or plan is in
any orchestration's history.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from cleanup import remove_group_contents
from history_reading import every_history, record_executions, with_waits

from backup.app.blueprint import build_app
from backup.azure.blob import BlobAddress, BlobClient
from backup.azure.compute import API_VERSION, ComputeClient
from backup.azure.page_range import PageRange, merge
from backup.clients import AzureClients, build_clients
from backup.local.durable_host import LocalHost, VirtualClock
from backup.local.durable_host.history import EventType
from backup.settings import Settings
from backup.workflow import activity_names as act
from backup.workflow import chain_activities
from backup.workflow.chain import TAG_BASE, chain_blob_name, writer_lease_id
from backup.workflow.models import RUN_ORCHESTRATOR, RunInput, sub_orchestration_id
from backup.workflow.startup import run_options
from backup.workflow.watch import operation_watch_id
from testbed.devenv import proving_ground_settings
from testbed.digest import blob_sha256
from testbed.proving_ground import ProvingGround

pytestmark = pytest.mark.slow

START = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
MiB = 1 << 20
DISK_SIZE = 16 * MiB
#: The chain's bounds, made small so that a 16 MiB disk exercises segments, markers and batches.
SMALL = {"segmentBytes": 4 * MiB, "diffPageSize": 3, "diffPagesPerCall": 1, "batchRequests": 3}


@dataclass
class Night:
    """What one night's run left: its result for the disk, the disk's digest then, its histories."""

    run_id: str
    result: dict[str, Any]
    digest: str
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Chain:
    """One test's corner of the proving ground: a resource group, container, catalog and one disk."""

    ground: ProvingGround
    settings: Settings
    clients: AzureClients
    group: str
    disk: str = "data"
    nights: list[Night] = field(default_factory=list)
    day: int = 0  # each run starts a day after the last

    @property
    def disk_id(self) -> str:
        return self.ground.disk_id(self.disk, self.group)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.ground.control(method, path, body)
        assert not (isinstance(answer, dict) and "error" in answer), answer
        return answer

    def make_disk(self, size: int = DISK_SIZE, seed: int = 1) -> None:
        body = {"size_bytes": size, "fill": {"seed": seed, "fraction": 0.3}}
        self.control("PUT", f"/resourceGroups/{self.group}/disks/{self.disk}", body)

    def churn(self, seed: int, write: float = 0.05, trim: float = 0.02) -> None:
        self.control(
            "POST",
            f"/resourceGroups/{self.group}/disks/{self.disk}/churn",
            {"seed": seed, "write_fraction": write, "trim_fraction": trim},
        )

    def disk_digest(self) -> str:
        return str(self.control("GET", f"/resourceGroups/{self.group}/disks/{self.disk}/digest")["sha256"])

    def disk_ranges(self) -> list[PageRange]:
        ranges = self.control("GET", f"/resourceGroups/{self.group}/disks/{self.disk}/ranges")["ranges"]
        return [PageRange(start, end) for start, end in ranges]

    @property
    def blob_name(self) -> str:
        return chain_blob_name(self.ground.subscription_id, self.group, self.disk)

    def backup_blob(self, snapshot: str | None = None) -> BlobAddress:
        return self.clients.backup_blob(self.settings.container, self.blob_name).at_snapshot(snapshot)

    def options(self, **chain: Any) -> dict[str, Any]:
        options = run_options(self.settings).to_json()
        options["chain"].update(SMALL)
        options["chain"].update(chain)
        return options

    def host(self, night: int, store: Path | None = None) -> LocalHost:
        return LocalHost(
            build_app(self.settings), clock=VirtualClock(START + timedelta(days=night)), store_dir=store
        )

    def start(self, host: LocalHost, run_id: str, options: dict[str, Any] | None = None) -> None:
        selection = {"kind": "diskIds", "diskIds": [self.disk_id]}
        run = RunInput.from_json(
            {"trigger": "http", "selection": selection, "options": options or self.options()}
        )
        host.start_new(RUN_ORCHESTRATOR, input=run.to_json(), instance_id=run_id)

    def night(self, options: dict[str, Any] | None = None, expect: str = "Succeeded") -> Night:
        """Run one night (a day after the last) and keep what it left."""
        number = self.day
        self.day += 1
        run_id = f"night-{number}-{uuid.uuid4().hex[:6]}"
        digest = self.disk_digest()
        with self.host(number) as host:
            executions = record_executions(host, finished=True)
            self.start(host, run_id, options)
            status = host.wait_for_completion(run_id, timeout=180)
            histories = every_history(host, executions)
        assert status.runtime_status == "Completed", status.output
        [result] = status.output["disks"]
        assert result["status"] == expect, result
        night = Night(run_id, result, digest, histories)
        self.nights.append(night)
        return night

    def snapshots(self) -> list[Any]:
        return self.clients.compute.list_snapshots(self.settings.subscription_id, self.group)

    def grants(self) -> list[str]:
        return [
            g["id"]
            for g in self.ground.control("GET", "/grants")["resources"]
            if f"/resourcegroups/{self.group}/" in g["id"].lower()
        ]

    def points(self, include_failed: bool = False) -> list[Any]:
        return list(
            self.clients.catalog.list_restore_points(self.disk_id, include_failed=include_failed).items
        )

    def assert_every_point_is_its_night(self) -> None:
        """Each good night's restore point, read at its blob snapshot, is the disk as it was that night."""
        by_run = {p.run_id: p for p in self.points()}
        blob = BlobClient()
        for night in self.nights:
            if night.result["status"] != "Succeeded":
                continue
            point = by_run[night.run_id]
            assert point.blob_snapshot == night.result["blobSnapshot"] and point.blob_url.endswith(
                self.blob_name
            )
            digest, _ = blob_sha256(blob, self.backup_blob(point.blob_snapshot), length=point.size_bytes)
            assert digest == night.digest, f"{night.run_id} ({point.kind}) differs from the disk that night"


@pytest.fixture
def chain(proving_ground: ProvingGround, unique_name: str) -> Iterator[Chain]:
    group = f"rg-{unique_name}"
    proving_ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    env = proving_ground_settings(
        proving_ground,
        proving_ground.arm_ca_cert,
        BACKUP_SELECT_RESOURCE_GROUP=group,
        BACKUP_CONTAINER=unique_name,
        BACKUP_CATALOG_TABLE=unique_name,
        BACKUP_VERIFY_SAMPLE_MIB="4",
    )
    settings = Settings.from_env(env)
    bed = Chain(proving_ground, settings, build_clients(settings), group)
    bed.make_disk()
    yield bed
    assert bed.grants() == [], "every grant is revoked on every path"
    remove_group_contents(bed.clients, settings.subscription_id, group)


def _scheduled(history: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in history if e["EventType"] == EventType.TASK_SCHEDULED and e["Name"] == name]


# -- the chain, night after night ------------------------------------------------------------------------


def test_nights_of_churn_full_then_incremental_and_every_point_is_its_night(chain: Chain) -> None:
    first = chain.night()
    assert (first.result["kind"], first.result["fullCopyReason"]) == (
        "full",
        "no earlier restore point of this disk",
    )
    for seed in (2, 3):
        chain.churn(seed)
        night = chain.night()
        result = night.result
        assert result["kind"] == "incremental" and result["fullCopyReason"] is None, result
        # Only what changed moved: a few percent of the disk, at most 5% more than the changed bytes.
        assert 0 < result["bytesChanged"] <= result["bytesMoved"] <= 1.05 * result["bytesChanged"]
        assert result["bytesMoved"] < first.result["bytesMoved"] / 3

        # Trimmed pages are cleared: the backup's populated pages are exactly the disk's.
        listed = BlobClient().get_page_ranges(chain.backup_blob(result["blobSnapshot"]))
        inside = [
            PageRange(r.start, min(r.end, DISK_SIZE - 1)) for r in listed.page_ranges if r.start < DISK_SIZE
        ]
        assert merge(inside) == merge(chain.disk_ranges())

    chain.assert_every_point_is_its_night()

    # The catalog has each night as a restore point of one blob, with its figures.
    points = chain.points()
    assert [p.kind for p in points] == ["incremental", "incremental", "full"]
    assert len({p.blob_url for p in points}) == 1 and len({p.blob_snapshot for p in points}) == 3
    for point, night in zip(points, reversed(chain.nights), strict=True):
        assert (point.bytes_moved, point.bytes_changed) == (
            night.result["bytesMoved"],
            night.result["bytesChanged"],
        )
        assert point.ranges and point.requests and point.size_bytes == DISK_SIZE
    assert points[0].base_snapshot_id == chain.nights[1].result["snapshotId"]

    # The diff base rotated: only the last night's snapshot is left, tagged as the base.
    [base] = chain.snapshots()
    assert base.id.lower() == chain.nights[-1].result["snapshotId"].lower() and base.tags[TAG_BASE] == "true"

    # Segmented (4 MiB segments of a 16 MiB disk) and paged (3 ranges an answer, one answer a step).
    history = chain.nights[1].histories[sub_orchestration_id(chain.nights[1].run_id, 0)]
    listings = [json.loads(e["Input"]) for e in _scheduled(history, act.LIST_CHANGES)]
    segments = {tuple(step["segment"]) for step in listings}
    assert segments == {(s, s + 4 * MiB - 1) for s in range(0, DISK_SIZE, 4 * MiB)}
    assert any(step["marker"] for step in listings), "some segment needed a second listing step"
    assert len(_scheduled(history, act.APPLY_BATCH)) > 4  # three requests a batch


def test_no_sas_range_list_or_plan_enters_any_history(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    issued: list[str] = []
    read = ComputeClient.read_access_sas

    def recording(self: ComputeClient, grant: Any) -> str:
        sas = read(self, grant)
        issued.append(sas)
        return sas

    monkeypatch.setattr(ComputeClient, "read_access_sas", recording)
    chain.night()
    chain.churn(5)
    chain.night()
    assert len(issued) >= 3  # tonight's snapshot twice, the base once
    signatures = [dict(parse_qsl(urlsplit(sas).query))["sig"] for sas in issued]
    for night in chain.nights:
        for instance, history in night.histories.items():
            text = json.dumps(history, default=str)
            assert not any(sig in text for sig in signatures), instance
            assert all(v == "REDACTED" for v in re.findall(r"sig=([^&\\s\"'<>]*)", text)), instance
            for event in history:
                for key in ("Input", "Result"):
                    if event.get(key):
                        _assert_small(json.loads(event[key]), f"{instance} {event['EventType']} {key}")


def _assert_small(value: Any, where: str) -> None:
    """No list longer than a handful (a range list would be) and no range-list keys, at any depth."""
    if isinstance(value, list):
        assert len(value) <= 8 or all(isinstance(v, dict) and "diskId" in v for v in value), where
        for item in value:
            _assert_small(item, where)
    elif isinstance(value, dict):
        assert not {"writes", "clears", "pageRanges", "clearRanges"} & {
            k for k, v in value.items() if isinstance(v, list)
        }, where
        for item in value.values():
            _assert_small(item, where)


# -- every fallback, when its cause is made -----------------------------------------------------------------


def _delete_base(chain: Chain) -> str:
    [base] = chain.snapshots()
    operation = chain.clients.compute.begin_delete_snapshot(base.id)
    while not operation.done:
        operation = chain.clients.compute.poll(operation)
    return f"the base snapshot {base.name} is gone"


def _resize_disk(chain: Chain) -> str:
    body = {"location": "westus", "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 1}}
    path = chain.clients.compute.get_disk(chain.disk_id).resource_id.path
    operation = chain.clients.compute.arm.begin("PUT", path, api_version=API_VERSION, body=body)
    while not operation.done:
        operation = chain.clients.compute.poll(operation)
    return f"the disk's size changed ({DISK_SIZE} to {1 << 30} bytes)"


def _recreate_disk(chain: Chain) -> str:
    chain.make_disk(seed=7)
    return "the base snapshot is of another snapshot family (was the disk re-created?)"


def _delete_blob(chain: Chain) -> str:
    BlobClient().delete(chain.backup_blob())
    chain.nights.clear()  # their restore points went with the blob
    return "the backup blob was missing"


def _extra_blob_snapshot(chain: Chain) -> str:
    taken = BlobClient().snapshot(chain.backup_blob())
    return (
        f"the backup blob's newest snapshot ({taken}) is not the last restore point "
        f"({chain.nights[-1].result['blobSnapshot']})"
    )


def _write_into_blob(chain: Chain) -> str:
    BlobClient().put_page(chain.backup_blob(), PageRange.at(MiB, 512), b"\x07" * 512)
    return "the backup blob was written after its last restore point"


@pytest.mark.parametrize(
    "cause",
    [_delete_base, _resize_disk, _recreate_disk, _delete_blob, _extra_blob_snapshot, _write_into_blob],
)
def test_a_chain_that_cannot_serve_falls_back_to_a_full_copy(
    chain: Chain, cause: Callable[[Chain], str]
) -> None:
    options = chain.options(
        segmentBytes=256 * MiB
    )  # one segment of the 16 MiB disk, four of a grown 1 GiB one
    chain.night(options)
    chain.churn(11)
    reason = cause(chain)
    night = chain.night(options)
    assert (night.result["kind"], night.result["fullCopyReason"]) == ("full", reason)
    point = chain.points()[0]
    assert (point.kind, point.full_copy_reason, point.run_id) == ("full", reason, night.run_id)
    chain.assert_every_point_is_its_night()
    # The base rotated all the same: tonight's snapshot is the only one left.
    assert [s.id.lower() for s in chain.snapshots()] == [night.result["snapshotId"].lower()]


def test_the_chain_goes_on_incrementally_after_a_fallback(chain: Chain) -> None:
    chain.night()
    chain.churn(13)
    _write_into_blob(chain)
    assert chain.night().result["kind"] == "full"
    chain.churn(14)
    assert chain.night().result["kind"] == "incremental"
    chain.assert_every_point_is_its_night()


def test_a_diff_above_the_configured_share_is_copied_whole(chain: Chain) -> None:
    chain.night()
    chain.churn(21, write=0.05, trim=0.0)
    night = chain.night(chain.options(fullCopyPercent=2))
    assert night.result["kind"] == "full"
    assert re.fullmatch(
        r"the diff is \d+% of the disk, above the 2% \(BACKUP_FULL_COPY_PERCENT\) where one server-side copy "
        r"is cheaper",
        night.result["fullCopyReason"],
    )
    chain.assert_every_point_is_its_night()


def test_a_full_copy_asked_for_is_made(chain: Chain) -> None:
    chain.night()
    chain.churn(31)
    options = chain.options()
    options["forceFull"] = True
    night = chain.night(options)
    assert (night.result["kind"], night.result["fullCopyReason"]) == (
        "full",
        "a full copy was asked for (options.kind 'full')",
    )
    chain.assert_every_point_is_its_night()


def test_a_failed_verification_falls_back_to_a_full_copy_in_the_same_run(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain.night()
    chain.churn(41)
    apply_batch = chain_activities.apply_batch

    def corrupting(clients: AzureClients, data: Any) -> Any:
        # Apply the batch, then spoil the first page it wrote (as a torn or misdirected write would).
        answer = apply_batch(clients, data)
        plan = json.loads(clients.blob.get_blob(clients.backup_blob(data["container"], data["planBlob"])))
        if plan["writes"]:
            start = plan["writes"][0][0]
            destination = clients.backup_blob(data["container"], data["blobName"])
            clients.blob.put_page(
                destination, PageRange.at(start, 512), b"\xee" * 512, lease_id=data["leaseId"]
            )
        return answer

    monkeypatch.setattr(chain_activities, "apply_batch", corrupting)
    night = chain.night(chain.options(verifySampleMiB=64))
    assert night.result["kind"] == "full"
    assert night.result["fullCopyReason"].startswith("verification failed: content differs from the snapshot")
    history = with_waits(
        night.histories, sub_orchestration_id(night.run_id, 0)
    )  # the copy starts in its watch
    assert _scheduled(history, act.APPLY_BATCH) and len(_scheduled(history, act.START_COPY)) == 1
    chain.assert_every_point_is_its_night()


# -- crashes and concurrent runs ----------------------------------------------------------------------------


def test_a_crash_in_the_middle_of_applying_resumes_and_ends_with_the_same_bytes(
    chain: Chain, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    chain.night()
    chain.churn(51)
    digest = chain.disk_digest()
    apply_batch = chain_activities.apply_batch
    calls = {"count": 0}
    in_flight = threading.Event()
    release = threading.Event()

    def dying(clients: AzureClients, data: Any) -> Any:
        calls["count"] += 1
        if calls["count"] == 3:  # the third batch is running when the process dies
            in_flight.set()
            release.wait(60)
            raise RuntimeError("this process is gone")
        return apply_batch(clients, data)

    monkeypatch.setattr(chain_activities, "apply_batch", dying)
    run_id = "night-1-crash"
    first = chain.host(1, tmp_path)
    first.start()
    try:
        chain.start(first, run_id)
        assert in_flight.wait(120), "the third batch never started"
    finally:
        first.stop(wait_for_activities=False)
        release.set()
    monkeypatch.setattr(chain_activities, "apply_batch", apply_batch)

    with chain.host(1, tmp_path) as second:
        status = second.wait_for_completion(run_id, timeout=180)
        history = second.history(sub_orchestration_id(run_id, 0))
    [result] = status.output["disks"]
    assert result["status"] == "Succeeded" and result["kind"] == "incremental", result
    completed = [e for e in history if e["EventType"] == EventType.TASK_COMPLETED]
    applied = _scheduled(history, act.APPLY_BATCH)
    assert len({json.loads(e["Input"])["planBlob"] for e in applied}) == len(applied) > 3  # each batch once
    assert len(completed) >= len(applied)
    chain.nights.append(Night(run_id, result, digest))
    chain.day += 1
    chain.assert_every_point_is_its_night()
    assert [s.id.lower() for s in chain.snapshots()] == [result["snapshotId"].lower()]


def test_two_overlapping_runs_never_write_one_backup_blob_at_once(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain.night()
    chain.churn(61)
    inspect_chain = chain_activities.inspect_chain
    other_done = threading.Event()

    def slow_first(clients: AzureClients, data: Any) -> Any:
        # The first run holds the lease and waits here until the second has given up on the disk.
        other_done.wait(60)
        return inspect_chain(clients, data)

    monkeypatch.setattr(chain_activities, "inspect_chain", slow_first)
    digest = chain.disk_digest()
    writer = sub_orchestration_id("nightly-20261127T010000Z", 0)
    with chain.host(1) as host:
        chain.start(host, "nightly-20261127T010000Z")
        _wait(
            # Past its lease: its snapshot's creation (started in a watch of its own) is under way.
            lambda: host.get_status(operation_watch_id(writer, "snapshot creation")) is not None
        )
        chain.start(host, "manual-20261127T010500Z-ondemand")
        second = host.wait_for_completion("manual-20261127T010500Z-ondemand", timeout=120)
        other_done.set()
        first = host.wait_for_completion("nightly-20261127T010000Z", timeout=180)
    [won] = first.output["disks"]
    [skipped] = second.output["disks"]
    assert won["status"] == "Succeeded" and won["kind"] == "incremental", won
    assert (skipped["status"], skipped["phase"]) == ("Failed", "lease")
    assert skipped["reason"].startswith(
        "lease: skipped: run nightly-20261127T010000Z has been writing this disk's backup since "
    )
    assert skipped["snapshotId"] is None  # it took no snapshot: nothing of the writer's was touched
    statuses = {p.run_id: p.status for p in chain.points(include_failed=True)}
    assert statuses["nightly-20261127T010000Z"] == "Succeeded"
    assert statuses["manual-20261127T010500Z-ondemand"] == "Failed"
    chain.nights.append(Night("nightly-20261127T010000Z", won, digest))
    chain.day += 1
    chain.assert_every_point_is_its_night()
    # The lease was given back: the next night writes again.
    chain.churn(62)
    assert chain.night().result["kind"] == "incremental"


def test_a_stale_writer_lease_is_broken_and_taken_over(chain: Chain) -> None:
    chain.night()
    # A run that died two days ago, holding the lease.
    blob = chain.backup_blob()
    client = BlobClient()
    dead = writer_lease_id("night-dead", chain.disk_id)
    client.acquire_lease(blob, dead)
    props = client.get_properties(blob)
    old = (START - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    client.set_metadata(
        blob, {**props.metadata, "writerRunId": "night-dead", "writerSince": old}, lease_id=dead
    )
    chain.churn(71)
    night = chain.night()
    assert night.result["kind"] == "incremental"
    assert night.result["warnings"] == [
        "took over the backup blob from run night-dead, whose lease had gone stale"
    ]
    assert not client.get_properties(blob).leased  # and given back


def _wait(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("the condition never held")
