"""How the workflow waits, end to end: polling delays, Retry-After, deadlines, keeping snapshots, and a
Premium SSD v2 / Ultra snapshot's background copy.

The pattern of ``tests/test_backup_e2e.py``: the real function app under the local Durable host with a
virtual clock, real HTTP to the compute emulator and Azurite, a resource group, container and catalog
table of the test's own on the session's proving ground. The emulator's knobs (``operation_polls``) are
the session's too, so a test that turns one restores it in a ``finally``.

The delays are read where the Durable host keeps them: each ``TimerCreated`` event of a disk
orchestration's history and of its waits' sub-orchestrations (``backup.workflow.watch``), against the
orchestration time of the episode that created it. A wait continues as new after every poll, and the
host keeps only an instance's current execution: the bed records each execution's history as it ends
(a seam of the host we own: :func:`record_executions`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import azure.functions as func
import pytest
from history_reading import record_executions

from backup.app.blueprint import build_app
from backup.azure.blob import BlobAddress, BlobClient, ContainerAddress
from backup.azure.compute import snapshot_name
from backup.azure.storage_auth import SharedKeyAuthorizer, StorageService
from backup.clients import build_clients
from backup.local.durable_host import LocalHost, VirtualClock
from backup.local.durable_host.history import EventType, parse_timestamp
from backup.local.runner import read_progress
from backup.settings import Settings
from backup.workflow import activity_names as act
from backup.workflow.models import RUN_ORCHESTRATOR, RunInput, sub_orchestration_id
from backup.workflow.orchestrators import next_delay
from backup.workflow.startup import run_options
from backup.workflow.watch import copy_watch_id, operation_watch_id, readiness_watch_id, waits_prefix
from testbed.devenv import proving_ground_settings
from testbed.digest import blob_sha256
from testbed.proving_ground import ProvingGround

START = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
DISK_SIZE = 1 << 20

#: Which wait an activity opens (the polls after it belong to the same wait).
PHASE_OF = {
    act.BEGIN_SNAPSHOT: "snapshot",
    act.SNAPSHOT_READINESS: "snapshot-copy",
    act.BEGIN_GRANT_ACCESS: "grant",
    act.START_COPY: "copy",
    act.BEGIN_REVOKE_ACCESS: "revoke",
    act.BEGIN_DELETE_SNAPSHOT: "delete",
    act.BEGIN_TAG_BASE: "tag",
    act.BEGIN_RETIRE_BASE: "retire",
}


# -- the pure part: next_delay -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "initial", "cap", "retry_after", "expected"),
    [
        (None, 5, 60, None, 5),  # the first wait
        (5, 5, 60, None, 10),  # doubles
        (20, 5, 60, None, 40),
        (40, 5, 60, None, 60),  # up to the cap
        (60, 5, 60, None, 60),  # and stays there
        (None, 5, 60, 1, 5),  # a shorter Retry-After does not hurry us
        (None, 5, 60, 0.0, 5),
        (10, 5, 60, 15, 20),  # nor does one shorter than the doubled wait
        (None, 5, 60, 120, 120),  # a longer one is honoured, even past the cap
        (10, 5, 60, 45.5, 45.5),
        (120, 5, 60, None, 60),  # after a long Retry-After, back to the cap
        (None, 1, 1, None, 1),
        (1, 1, 1, None, 1),
    ],
)
def test_next_delay(
    previous: float | None, initial: int, cap: int, retry_after: float | None, expected: float
) -> None:
    assert next_delay(previous, initial, cap, retry_after) == expected


# -- the bed ---------------------------------------------------------------------------------------------


@dataclass
class Bed:
    """One test's corner of the proving ground, and a host running the app against it."""

    ground: ProvingGround
    settings: Settings
    host: LocalHost
    group: str
    executions: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)

    def make_disk(self, name: str, seed: int, sku: str = "Standard_LRS") -> str:
        body = {"size_bytes": DISK_SIZE, "fill": {"seed": seed, "fraction": 0.2}, "sku": sku}
        self.ground.control("PUT", f"/resourceGroups/{self.group}/disks/{name}", body)
        return self.ground.disk_id(name, self.group)

    def start_run(self, run_id: str, keep_snapshot: bool = False) -> None:
        options = run_options(self.settings, keep_snapshot=keep_snapshot).to_json()
        selection = {"kind": "resourceGroup", "resourceGroup": self.group}
        run = RunInput.from_json({"trigger": "http", "selection": selection, "options": options})
        self.host.start_new(RUN_ORCHESTRATOR, input=run.to_json(), instance_id=run_id)

    def fault(self, **fault: Any) -> None:
        answer = self.ground.control("POST", "/faults", fault)
        assert "error" not in answer, answer

    def grants(self) -> list[str]:
        return [
            g["id"]
            for g in self.ground.control("GET", "/grants")["resources"]
            if f"/resourcegroups/{self.group}/" in g["id"].lower()
        ]

    def snapshots(self) -> list[str]:
        compute = build_clients(self.settings).compute
        return [s.id for s in compute.list_snapshots(self.settings.subscription_id, self.group)]

    def restore_points(self, disk_id: str) -> list[dict[str, Any]]:
        request = func.HttpRequest(
            method="GET",
            url="http://localhost/api/restore-points",
            body=b"",
            params={"disk": disk_id, "includeFailed": "true"},
        )
        response = self.host.invoke_function("list_restore_points", req=request)
        assert response.status_code == 200, response.get_body()
        return list(json.loads(response.get_body())["restorePoints"])

    def waits(self, instance_id: str) -> dict[str, list[float]]:
        """The durable timers of an orchestration and its waits, in seconds, by the wait they belong to."""
        waits: dict[str, list[float]] = {}
        self._collect_waits(instance_id, "none", waits)
        return waits

    def _collect_waits(self, instance_id: str, phase: str, waits: dict[str, list[float]]) -> None:
        now: datetime | None = None
        ended = [event for history in self.executions.get(instance_id, []) for event in history]
        for event in [*ended, *self.host.history(instance_id)]:
            kind = event["EventType"]
            if kind == EventType.ORCHESTRATOR_STARTED:
                now = parse_timestamp(event["Timestamp"])
            elif kind == EventType.TASK_SCHEDULED:
                phase = PHASE_OF.get(event["Name"], phase)
            elif kind == EventType.TIMER_CREATED:
                assert now is not None
                delay = (parse_timestamp(event["FireAt"]) - now).total_seconds()
                waits.setdefault(phase, []).append(delay)
            elif kind == EventType.SUB_ORCHESTRATION_INSTANCE_CREATED:
                self._collect_waits(event["InstanceId"], phase, waits)

    def copy_polls_before_last(self, disk_instance_id: str) -> int:
        """How many polls the copy watch of a disk made before its last execution."""
        started = self.host.history(copy_watch_id(disk_instance_id))[1]
        assert started["EventType"] == EventType.EXECUTION_STARTED
        return int(json.loads(json.loads(started["Input"]))["polls"])


def make_bed(ground: ProvingGround, name: str, clock: VirtualClock, **settings: str) -> Bed:
    group = f"rg-{name}"
    ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    env = proving_ground_settings(
        ground,
        ground.arm_ca_cert,
        BACKUP_SELECT_RESOURCE_GROUP=group,
        BACKUP_CONTAINER=name,
        BACKUP_CATALOG_TABLE=name,
        **settings,
    )
    app_settings = Settings.from_env(env)
    host = LocalHost(build_app(app_settings), clock=clock)
    return Bed(ground, app_settings, host, group, record_executions(host))


@pytest.fixture
def emulator_config(proving_ground: ProvingGround) -> Iterator[dict[str, Any]]:
    """The emulator's config as it was; put back after the test, whatever the test changed."""
    saved = proving_ground.control("GET", "/config")
    try:
        yield saved
    finally:
        proving_ground.control("PATCH", "/config", saved)
        proving_ground.control("DELETE", "/faults")


def doubling(initial: float, cap: float, count: int) -> list[float]:
    delays: list[float] = []
    for _ in range(count):
        delays.append(initial if not delays else min(delays[-1] * 2, cap))
    return delays


# -- the tests -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_delays_double_to_the_cap_and_honour_retry_after(
    proving_ground: ProvingGround, unique_name: str, emulator_config: dict[str, Any]
) -> None:
    bed = make_bed(
        proving_ground,
        unique_name,
        VirtualClock(START),
        BACKUP_POLL_INITIAL_SECONDS="2",
        BACKUP_POLL_MAX_SECONDS="10",
    )
    ids = {name: bed.make_disk(name, seed) for seed, name in enumerate(("a-plain", "b-grant", "c-snap"))}
    run_id = "manual-20261126T010000Z-waits"
    # Long operations (six polls each), so the delays reach the cap.
    proving_ground.control("PATCH", "/config", {"operation_polls": 6})
    # Throttled begins, each asking for longer than the transport waits by itself (30 s).
    bed.fault(
        operation="Snapshots_GrantAccess",
        action="429",
        retry_after=45,
        resource_name=snapshot_name(run_id, ids["b-grant"]),
    )
    bed.fault(
        operation="Snapshots_CreateOrUpdate",
        action="429",
        retry_after=75,
        resource_name=snapshot_name(run_id, ids["c-snap"]),
    )

    with bed.host:
        bed.start_run(run_id)
        status = bed.host.wait_for_completion(run_id, timeout=180)
        assert status.runtime_status == "Completed", status.output
        results = {r["diskName"]: r for r in status.output["disks"]}
        assert {name: r["status"] for name, r in results.items()} == dict.fromkeys(ids, "Succeeded"), results
        waits = {name: bed.waits(sub_orchestration_id(run_id, i)) for i, name in enumerate(sorted(ids))}

    six = doubling(2, 10, 6)
    assert six == [2, 4, 8, 10, 10, 10]
    plain = waits["a-plain"]
    # (A first night: tonight's snapshot is tagged as the diff base, and nothing is deleted.)
    for phase in ("snapshot", "grant", "revoke", "tag"):
        assert plain[phase] == six, (phase, plain)
    assert "delete" not in plain
    # The copy watch's delays went on doubling from one execution to the next.
    copy_polls = bed.copy_polls_before_last(sub_orchestration_id(run_id, 0)) + 1
    assert copy_polls >= 2 and plain["copy"] == doubling(2, 10, copy_polls)

    # A throttled begin waits what it was asked to, then polls at the cap (the doubling goes on from
    # the long wait); the other waits of the same disk are untouched.
    assert waits["b-grant"]["grant"] == [45, *[10] * 6]
    assert waits["b-grant"]["snapshot"] == six
    assert waits["c-snap"]["snapshot"] == [75, *[10] * 6]
    assert waits["c-snap"]["grant"] == six


@pytest.mark.slow
def test_an_operations_own_retry_after_sets_the_floor(
    proving_ground: ProvingGround, unique_name: str, emulator_config: dict[str, Any]
) -> None:
    bed = make_bed(
        proving_ground,
        unique_name,
        VirtualClock(START),
        BACKUP_POLL_INITIAL_SECONDS="2",
        BACKUP_POLL_MAX_SECONDS="10",
    )
    bed.make_disk("only", 1)
    run_id = "manual-20261126T010000Z-retryafter"
    # Every 202 and in-progress status answer now says Retry-After: 7; operations take three polls.
    proving_ground.control("PATCH", "/config", {"operation_polls": 3, "retry_after": 7})

    with bed.host:
        bed.start_run(run_id)
        status = bed.host.wait_for_completion(run_id, timeout=120)
        assert status.runtime_status == "Completed" and status.output["succeeded"] == 1, status.output
        waits = bed.waits(sub_orchestration_id(run_id, 0))

    # 7 rather than the initial 2, then doubling on from there to the cap.
    for phase in ("snapshot", "grant", "revoke", "tag"):
        assert waits[phase] == [7, 10, 10], (phase, waits)


@pytest.mark.slow
def test_a_snapshot_that_never_finishes_fails_its_disk_at_the_deadline(
    proving_ground: ProvingGround, unique_name: str, emulator_config: dict[str, Any]
) -> None:
    # The clock stands still until the slow disk's snapshot has started, so that only that snapshot
    # is made endless: the emulator fixes an operation's length when the operation starts.
    clock = VirtualClock(START, auto_advance=False)
    bed = make_bed(
        proving_ground,
        unique_name,
        clock,
        BACKUP_SNAPSHOT_TIMEOUT_MINUTES="1",
        BACKUP_MAX_PARALLEL="1",  # one disk after another, in ID order: a-slow first
    )
    ids = {name: bed.make_disk(name, seed) for seed, name in enumerate(("a-slow", "b-ok", "c-ok"))}
    run_id = "manual-20261126T010000Z-deadline"
    slow = sub_orchestration_id(run_id, 0)

    with bed.host:
        proving_ground.control("PATCH", "/config", {"operation_polls": 10**6})
        try:
            bed.start_run(run_id)
            _wait_for_first_timer(bed.host, slow)
        finally:
            proving_ground.control(
                "PATCH", "/config", {"operation_polls": emulator_config["operation_polls"]}
            )
        clock.auto_advance = True
        bed.host.advance_clock(timedelta(0))  # wake the dispatcher: time may run now
        status = bed.host.wait_for_completion(run_id, timeout=180)
        waits = bed.waits(slow)
        slow_started = parse_timestamp(bed.host.history(slow)[0]["Timestamp"])
        points = {name: bed.restore_points(disk_id) for name, disk_id in ids.items()}

    assert status.runtime_status == "Completed", status.output
    summary = status.output
    assert summary["status"] == "PartiallySucceeded"
    assert (summary["succeeded"], summary["failed"]) == (2, 1)
    results = {r["diskName"]: r for r in summary["disks"]}
    assert results["b-ok"]["status"] == results["c-ok"]["status"] == "Succeeded"
    failed = results["a-slow"]
    assert failed["status"] == "Failed" and failed["phase"] == "snapshot"
    assert failed["reason"].startswith("snapshot: snapshot creation did not finish by its deadline (")
    assert failed["snapshotId"] and failed["snapshotId"].lower().endswith(
        snapshot_name(run_id, ids["a-slow"]).lower()
    )

    # It polled, doubling to the cap (BACKUP_POLL_*: 1 s to 5 s); the last wait was cut to end at the
    # deadline one minute after the snapshot began, so the last poll happened at the deadline itself.
    snapshot_waits = waits["snapshot"]
    assert snapshot_waits[:-1] == doubling(1, 5, len(snapshot_waits) - 1)
    assert 0 < snapshot_waits[-1] <= 5
    assert sum(snapshot_waits) == 60

    # The failure is in the catalog with its reason, at the deadline; no access was left granted.
    [point] = points["a-slow"]
    assert (point["status"], point["reason"], point["runId"]) == ("Failed", failed["reason"], run_id)
    failed_at = datetime.fromisoformat(point["finishedAt"].replace("Z", "+00:00"))
    assert timedelta(seconds=60) <= failed_at - slow_started <= timedelta(seconds=61)
    assert [p["status"] for p in points["b-ok"]] == ["Succeeded"]
    assert bed.grants() == []
    # The unfinished snapshot was deleted (nothing is left to pay for); the two good disks keep theirs
    # as the diff base of their next night.
    assert failed["warnings"] == []
    assert sorted(s.lower() for s in bed.snapshots()) == sorted(
        results[name]["snapshotId"].lower() for name in ("b-ok", "c-ok")
    )


def _wait_for_first_timer(host: LocalHost, instance_id: str) -> None:
    """Until the orchestration or one of its waits has created a durable timer (the clock stands still
    meanwhile)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        waits = [status.instance_id for status in host.list_instances(prefix=waits_prefix(instance_id))]
        for found in [instance_id, *waits] if host.get_status(instance_id) else waits:
            if any(e["EventType"] == EventType.TIMER_CREATED for e in host.history(found)):
                return
        time.sleep(0.02)
    raise AssertionError(f"{instance_id} created no timer")


@pytest.mark.slow
def test_keep_snapshot_keeps_it_and_still_revokes_access(
    proving_ground: ProvingGround, unique_name: str
) -> None:
    bed = make_bed(proving_ground, unique_name, VirtualClock(START))
    ids = [bed.make_disk(name, seed) for seed, name in enumerate(("d1", "d2"))]

    with bed.host:
        request = func.HttpRequest(
            method="POST",
            url="http://localhost/api/backups",
            body=json.dumps({"options": {"keepSnapshot": True}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        response = bed.host.invoke_function("start_backup", req=request)
        assert response.status_code == 202, response.get_body()
        run_id = json.loads(response.get_body())["runId"]
        status = bed.host.wait_for_completion(run_id, timeout=120)
        history = [bed.host.history(sub_orchestration_id(run_id, i)) for i in range(len(ids))]
        points = [bed.restore_points(disk_id) for disk_id in ids]

    assert status.runtime_status == "Completed" and status.output["status"] == "Succeeded", status.output
    kept = sorted(r["snapshotId"] for r in status.output["disks"])
    assert len(kept) == 2 and sorted(s.lower() for s in bed.snapshots()) == [s.lower() for s in kept]
    assert bed.grants() == []
    compute = build_clients(bed.settings).compute
    for snapshot_id in kept:
        assert compute.get_snapshot(snapshot_id).disk_state != "ActiveSAS"
    for index, events in enumerate(history):
        # Access was revoked (in the revocation's watch), and no snapshot was deleted.
        disk = sub_orchestration_id(run_id, index)
        waits = [
            e["InstanceId"] for e in events if e["EventType"] == EventType.SUB_ORCHESTRATION_INSTANCE_CREATED
        ]
        assert operation_watch_id(disk, "access revocation") in waits
        assert operation_watch_id(disk, "snapshot deletion") not in waits
    for disk_points in points:
        [point] = disk_points
        assert point["status"] == "Succeeded" and point["snapshotId"] in kept


# -- Premium SSD v2 / Ultra: the snapshot's background copy ----------------------------------------------


def _readiness_answers(bed: Bed, instance_id: str) -> list[dict[str, Any]]:
    """What each snapshot_readiness call of a disk orchestration answered, in order: its own first
    look, then every execution of its readiness watch."""
    answers = []
    watch = readiness_watch_id(instance_id)
    histories = [bed.host.history(instance_id), *bed.executions.get(watch, [])]
    if bed.host.get_status(watch) is not None:  # a disk that never waited has no readiness watch
        histories.append(bed.host.history(watch))
    for history in histories:
        asked = {
            e["EventId"]
            for e in history
            if e["EventType"] == EventType.TASK_SCHEDULED and e["Name"] == act.SNAPSHOT_READINESS
        }
        answers += [
            json.loads(e["Result"])
            for e in history
            if e["EventType"] == EventType.TASK_COMPLETED and e["TaskScheduledId"] in asked
        ]
    return answers


def _backup_blob(settings: Settings, blob_url: str) -> BlobAddress:
    prefix = f"{settings.blob_endpoint}/{settings.container}/"
    assert blob_url.startswith(prefix), blob_url
    authorize = SharedKeyAuthorizer(
        settings.storage_account, settings.storage_key or "", service=StorageService.BLOB
    )
    container = ContainerAddress.in_account(settings.blob_endpoint, settings.container, authorize)
    return container.blob(unquote(blob_url[len(prefix) :]))


@pytest.mark.slow
def test_a_premium_v2_disk_waits_for_its_snapshots_background_copy_then_backs_up(
    proving_ground: ProvingGround, unique_name: str, emulator_config: dict[str, Any]
) -> None:
    bed = make_bed(
        proving_ground,
        unique_name,
        VirtualClock(START),
        BACKUP_POLL_INITIAL_SECONDS="2",
        BACKUP_POLL_MAX_SECONDS="10",
    )
    ids = {"a-v2": bed.make_disk("a-v2", 1, sku="PremiumV2_LRS"), "b-std": bed.make_disk("b-std", 2)}
    run_id = "manual-20261126T010000Z-bgcopy"
    # The v2 snapshot's copy takes four GETs: three looks that find it copying, the fourth finds it done.
    proving_ground.control("PATCH", "/config", {"background_copy_polls": 4})

    with bed.host:
        bed.start_run(run_id)
        status = bed.host.wait_for_completion(run_id, timeout=180)
        v2, std = sub_orchestration_id(run_id, 0), sub_orchestration_id(run_id, 1)
        waits = {"a-v2": bed.waits(v2), "b-std": bed.waits(std)}
        answers = {"a-v2": _readiness_answers(bed, v2), "b-std": _readiness_answers(bed, std)}
        # The disk's steps in order: the activities it called, the waits it started (by instance id).
        scheduled = [
            e["Name"] if e["EventType"] == EventType.TASK_SCHEDULED else e["InstanceId"]
            for e in bed.host.history(v2)
            if e["EventType"] in (EventType.TASK_SCHEDULED, EventType.SUB_ORCHESTRATION_INSTANCE_CREATED)
        ]
        points = bed.restore_points(ids["a-v2"])

    assert status.runtime_status == "Completed", status.output
    results = {r["diskName"]: r for r in status.output["disks"]}
    assert {name: r["status"] for name, r in results.items()} == dict.fromkeys(ids, "Succeeded"), results

    # It looked at the snapshot until Azure said it could be read, on durable timers, and only then
    # asked for access; the Standard disk never asked.
    assert [(a["completionPercent"], a["accessState"], a["ready"]) for a in answers["a-v2"]] == [
        (25.0, "Pending", False),
        (50.0, "Pending", False),
        (75.0, "Pending", False),
        (100.0, "Available", True),
    ]
    assert waits["a-v2"]["snapshot-copy"] == [2, 4, 8]
    # The disk looked once itself; the rest of the wait was its readiness watch's, before the grant.
    assert scheduled.count(act.SNAPSHOT_READINESS) == 1
    assert scheduled.index(operation_watch_id(v2, "snapshot creation")) < scheduled.index(
        act.SNAPSHOT_READINESS
    )
    assert scheduled.index(act.SNAPSHOT_READINESS) < scheduled.index(operation_watch_id(v2, "access grant"))
    assert answers["b-std"] == [] and "snapshot-copy" not in waits["b-std"]

    # Both backups are the disks, byte for byte; nothing is left granted, and each disk keeps only
    # tonight's snapshot, as the diff base of its next night.
    blob = BlobClient()
    for name, result in results.items():
        digest, size = blob_sha256(blob, _backup_blob(bed.settings, result["blobUrl"]), length=DISK_SIZE)
        assert size == DISK_SIZE + 512
        disk = proving_ground.control("GET", f"/resourceGroups/{bed.group}/disks/{name}/digest")
        assert digest == disk["sha256"], f"{name}: backup differs from the disk"
    assert bed.grants() == []
    assert sorted(s.lower() for s in bed.snapshots()) == sorted(
        r["snapshotId"].lower() for r in results.values()
    )
    assert [p["status"] for p in points] == ["Succeeded"]


@pytest.mark.slow
def test_a_background_copy_past_its_deadline_fails_the_disk_and_cleans_up(
    proving_ground: ProvingGround, unique_name: str, emulator_config: dict[str, Any]
) -> None:
    bed = make_bed(
        proving_ground,
        unique_name,
        VirtualClock(START),
        BACKUP_POLL_INITIAL_SECONDS="1",
        BACKUP_POLL_MAX_SECONDS="5",
        BACKUP_SNAPSHOT_COPY_TIMEOUT_MINUTES="1",
    )
    disk_id = bed.make_disk("ultra", 3, sku="UltraSSD_LRS")
    run_id = "manual-20261126T010000Z-bgdeadline"
    # A copy that will not end within any test (its length is fixed when the snapshot is created).
    proving_ground.control("PATCH", "/config", {"background_copy_polls": 10**6})

    with bed.host:
        bed.start_run(run_id)
        status = bed.host.wait_for_completion(run_id, timeout=180)
        disk = sub_orchestration_id(run_id, 0)
        waits = bed.waits(disk)
        custom = bed.host.get_status(disk).custom_status  # type: ignore[union-attr]
        [point] = bed.restore_points(disk_id)
        request = func.HttpRequest(
            method="GET",
            url=f"http://localhost/api/backups/{run_id}",
            body=b"",
            route_params={"instanceId": run_id},
        )
        view = json.loads(bed.host.invoke_function("get_backup", req=request).get_body())

    assert status.runtime_status == "Completed", status.output
    assert status.output["status"] == "Failed"
    [result] = status.output["disks"]
    assert (result["status"], result["phase"]) == ("Failed", "snapshot-copy")
    assert result["reason"].startswith(
        "snapshot-copy: the snapshot's background copy (at 0%, Pending) did not finish by its deadline ("
    ), result["reason"]
    # It polled, doubling 1 s to the 5 s cap, for the minute the setting allows, and not a second more.
    copy_waits = waits["snapshot-copy"]
    assert copy_waits[:-1] == doubling(1, 5, len(copy_waits) - 1)
    assert sum(copy_waits) == 60
    assert custom["phase"] == "failed" and custom["snapshotCopyPercent"] == 0.0
    [disk_view] = view["disks"]  # the HTTP status route shows it too
    assert (disk_view["phase"], disk_view["snapshotCopyPercent"]) == ("failed", 0.0)

    # Recorded as a failure with that reason; no access was granted; the pending snapshot was deleted.
    assert (point["status"], point["reason"]) == ("Failed", result["reason"])
    assert bed.grants() == [] and bed.snapshots() == []
    assert result["warnings"] == []


@pytest.mark.slow
def test_an_hour_long_copy_keeps_every_disk_history_bounded_and_the_backup_verifies(
    proving_ground: ProvingGround, unique_name: str, emulator_config: dict[str, Any]
) -> None:
    # Polls as configured by default (5 s doubling to 60 s); each copy stays pending for an hour of
    # the host's virtual time.
    clock = VirtualClock(START)
    bed = make_bed(
        proving_ground, unique_name, clock, BACKUP_POLL_INITIAL_SECONDS="5", BACKUP_POLL_MAX_SECONDS="60"
    )
    names = ("long-a", "long-b")
    for seed, name in enumerate(names):
        bed.make_disk(name, seed)
    run_id = "manual-20261126T010000Z-hourcopy"
    plane = proving_ground.data_plane
    assert plane is not None
    proving_ground.control("PATCH", "/config", {"copy_pending_seconds": 3600})
    real_clock, plane.pacing_clock = plane.pacing_clock, clock.now
    try:
        with bed.host:
            bed.start_run(run_id)
            status = bed.host.wait_for_completion(run_id, timeout=120)
            per_disk = []
            for index in range(len(names)):
                disk = sub_orchestration_id(run_id, index)
                waits = bed.host.list_instances(prefix=waits_prefix(disk))
                instances = [disk, *(s.instance_id for s in waits)]
                history = bed.host.history(disk)
                watch = bed.host.counts(copy_watch_id(disk))
                per_disk.append(
                    {
                        "events": sum(bed.host.counts(i).history_events for i in instances),
                        "disk events": len(history),
                        "polls": watch.activity_executions,
                        "copy seconds": _copy_seconds(history),
                    }
                )
    finally:
        plane.pacing_clock = real_clock

    assert status.runtime_status == "Completed" and status.output["status"] == "Succeeded", status.output
    for figures in per_disk:
        assert 3600 <= figures["copy seconds"] <= 3600 + 60, figures
        # About 63 polls in an hour (5, 10, 20, 40, then every 60 s), under 150 events for all it holds:
        # its own orchestration and its five waits' last executions.
        assert 55 <= figures["polls"] <= 70, figures
        assert figures["events"] <= 150 and figures["disk events"] <= 90, figures
    # Byte for byte, and nothing left granted.
    clients = build_clients(bed.settings)
    prefix = f"{bed.settings.blob_endpoint}/{bed.settings.container}/"
    for result, name in zip(status.output["disks"], names, strict=True):
        assert result["diskName"] == name and result["blobUrl"].startswith(prefix)
        address = clients.backup_blob(bed.settings.container, unquote(result["blobUrl"][len(prefix) :]))
        digest, size = blob_sha256(clients.blob, address, length=DISK_SIZE)
        assert size == DISK_SIZE + 512
        disk_digest = proving_ground.control("GET", f"/resourceGroups/{bed.group}/disks/{name}/digest")
        assert digest == disk_digest["sha256"]
    assert bed.grants() == []


def _copy_seconds(disk_history: list[dict[str, Any]]) -> float:
    """From the copy watch's start to its end, in the disk's history (orchestration time)."""
    now: datetime | None = None
    started: dict[int, datetime] = {}
    for event in disk_history:
        if event["EventType"] == EventType.ORCHESTRATOR_STARTED:
            now = parse_timestamp(event["Timestamp"])
        elif (
            event["EventType"] == EventType.SUB_ORCHESTRATION_INSTANCE_CREATED
            and event["Name"] == "watch_copy"
        ):
            assert now is not None
            started[event["EventId"]] = now
        elif (
            event["EventType"] == EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED
            and event["TaskScheduledId"] in started
        ):
            assert now is not None
            return (now - started[event["TaskScheduledId"]]).total_seconds()
    raise AssertionError("no copy watch in this history")


@pytest.mark.slow
def test_a_copy_under_way_shows_its_progress_from_its_copy_watch(
    proving_ground: ProvingGround, unique_name: str, emulator_config: dict[str, Any]
) -> None:
    # Time stands still but when the test moves it: the copy (ten minutes of the host's time) is
    # caught half done, its watch between polls.
    clock = VirtualClock(START, auto_advance=False)
    bed = make_bed(proving_ground, unique_name, clock)
    bed.make_disk("halfway", 1)
    run_id = "manual-20261126T010000Z-progress"
    plane = proving_ground.data_plane
    assert plane is not None
    proving_ground.control("PATCH", "/config", {"copy_pending_seconds": 600})
    real_clock, plane.pacing_clock = plane.pacing_clock, clock.now
    watch = copy_watch_id(sub_orchestration_id(run_id, 0))
    try:
        with bed.host:
            bed.start_run(run_id)
            deadline = time.monotonic() + 60
            while (polls := _watch_polls(bed.host, watch)) < 3 and time.monotonic() < deadline:
                bed.host.advance_clock(timedelta(seconds=5))
                time.sleep(0.02)
            assert polls >= 3, "the copy watch did not poll"
            bed.host.flush()  # what `diskbackup status` reads in another process
            progress = read_progress(bed.host, run_id)
            clock.auto_advance = True
            bed.host.advance_clock(timedelta(0))
            status = bed.host.wait_for_completion(run_id, timeout=120)
    finally:
        plane.pacing_clock = real_clock
    assert progress is not None
    [disk] = progress.disks
    assert disk.phase == "copy" and 0 < disk.bytes_copied < disk.bytes_total == DISK_SIZE + 512, disk
    assert status.output["status"] == "Succeeded"


def _watch_polls(host: LocalHost, watch: str) -> int:
    status = host.get_status(watch)
    custom = status.custom_status if status is not None else None
    return int(custom.get("polls", 0)) if isinstance(custom, dict) else 0
