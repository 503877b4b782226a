"""Restore, proven on the proving ground: restore points written into new managed disks by direct upload.

Four nights of a 24 MiB disk (the direct-upload minimum is 20 MiB + 512) go through the real backup
orchestrators, with churn between them, and the disk's SHA-256 is kept for each night. Then restores run
through the real restore orchestration (the local Durable host; the compute emulator's direct upload;
Put Page From URL through the data plane's front, the source a short-lived Shared Key SAS of a blob
snapshot in Azurite), and each restored disk is compared with the disk as it was that night, byte for
byte, by the emulator's own digest (independent of the restore's verification).

Proved: the newest point (chosen by time) and an older one (by run id, through ``diskbackup restore``)
restore into another resource group and region; an existing disk is never written (409 before anything
starts, and refused by the create if it appears meanwhile), and stays as it was; a restore whose process
dies in the middle of writing carries on and ends with the same bytes; a failed restore revokes and
deletes its half-made disk, or keeps it when asked; ``diskbackup verify`` passes, and fails once the
point's content changes (a page of its blob snapshot corrupted in Azurite directly); a point whose
neighbouring blob snapshots were pruned restores; no SAS in any history, status, output, catalog row or
log. The last test prunes the story's nights: it runs last.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
import pytest
import requests
from azure.functions.timer import TimerRequest
from cleanup import remove_group_contents

from backup import vhd
from backup.app.blueprint import build_app
from backup.azure.blob import BlobClient, ContainerAddress
from backup.azure.compute import ComputeClient
from backup.azure.page_range import PageRange, split
from backup.azure.storage_auth import SharedKeyAuthorizer, StorageService
from backup.clients import AzureClients, build_clients
from backup.errors import CopyFailedError, NotFoundError
from backup.local.cli import main
from backup.local.durable_host import LocalHost, VirtualClock
from backup.local.durable_host.history import EventType
from backup.settings import Settings
from backup.workflow import activity_names as act
from backup.workflow import restore_activities
from backup.workflow.chain import chain_blob_name, sample_windows
from backup.workflow.models import RUN_ORCHESTRATOR, ChainOptions, RestorePointRecord, RunInput, iso
from backup.workflow.restore_models import (
    PRUNE_ORCHESTRATOR,
    RESTORE_ORCHESTRATOR,
    RESTORE_TESTS_ORCHESTRATOR,
    RestoreInput,
)
from backup.workflow.restore_startup import prune_input, restore_input, restore_test_input
from backup.workflow.startup import run_options
from testbed.devenv import proving_ground_settings
from testbed.digest import blob_sha256
from testbed.proving_ground import ProvingGround

pytestmark = pytest.mark.slow

MiB = 1 << 20
DISK_SIZE = 24 * MiB
FIRST_NIGHT = datetime(2026, 1, 30, 1, 0, tzinfo=UTC)  # nights: Jan 30, Jan 31, Feb 1, Feb 2
AFTER = FIRST_NIGHT + timedelta(days=4)  # when the restores run


@dataclass(frozen=True)
class Night:
    run_id: str
    digest: str  # the disk's SHA-256 when the night began
    blob_snapshot: str


@dataclass
class Story:
    """Four nights of one disk, and a second resource group (another region) to restore into."""

    ground: ProvingGround
    env: dict[str, str]
    settings: Settings
    clients: AzureClients
    group: str
    other: str  # in eastus; the disk lives in westus
    disk: str = "data"
    nights: list[Night] = field(default_factory=list)

    @property
    def disk_id(self) -> str:
        return self.ground.disk_id(self.disk, self.group)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.ground.control(method, path, body)
        assert not (isinstance(answer, dict) and "error" in answer), answer
        return answer

    def digest(self, group: str, name: str) -> str:
        return str(self.control("GET", f"/resourceGroups/{group}/disks/{name}/digest")["sha256"])

    def host(self, store: Path | None = None) -> LocalHost:
        return LocalHost(build_app(self.settings), clock=VirtualClock(AFTER), store_dir=store)

    def request(self, name: str, **kwargs: Any) -> RestoreInput:
        target = {
            "resourceGroup": self.other,
            "diskName": name,
            "location": "eastus",
            **kwargs.pop("target", {}),
        }
        return restore_input(self.settings, "http", disk_id=self.disk_id, target=target, **kwargs)

    def restore(self, host: LocalHost, request: RestoreInput, restore_id: str) -> dict[str, Any]:
        host.start_new(RESTORE_ORCHESTRATOR, input=request.to_json(), instance_id=restore_id)
        status = host.wait_for_completion(restore_id, timeout=120)
        assert status.runtime_status == "Completed", status.output
        return dict(status.output)

    def grants(self) -> list[str]:
        groups = (f"/resourcegroups/{self.group}/", f"/resourcegroups/{self.other}/")
        return [
            g["id"]
            for g in self.ground.control("GET", "/grants")["resources"]
            if any(x in g["id"].lower() for x in groups)
        ]

    def exists(self, disk_id: str) -> bool:
        try:
            self.clients.compute.get_disk(disk_id)
        except NotFoundError:
            return False
        return True


@pytest.fixture(scope="module")
def story(proving_ground: ProvingGround) -> Iterator[Story]:
    name = "r" + uuid.uuid4().hex[:12]
    group, other = f"rg-{name}", f"rg2-{name}"
    proving_ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    proving_ground.control("PUT", f"/resourceGroups/{other}", {"location": "eastus"})
    env = proving_ground_settings(
        proving_ground,
        proving_ground.arm_ca_cert,
        BACKUP_SELECT_RESOURCE_GROUP=group,
        BACKUP_CONTAINER=name,
        BACKUP_CATALOG_TABLE=name,
        BACKUP_VERIFY_SAMPLE_MIB="4",
    )
    settings = Settings.from_env(env)
    story = Story(proving_ground, env, settings, build_clients(settings), group, other)
    story.control(
        "PUT",
        f"/resourceGroups/{group}/disks/data",
        {"size_bytes": DISK_SIZE, "fill": {"seed": 1, "fraction": 0.3}},
    )
    for night in range(4):
        if night:
            story.control(
                "POST",
                f"/resourceGroups/{group}/disks/data/churn",
                {"seed": 10 + night, "write_fraction": 0.05, "trim_fraction": 0.02},
            )
        digest = story.digest(group, "data")
        run_id = f"night-{night}"
        clock = VirtualClock(FIRST_NIGHT + timedelta(days=night))
        with LocalHost(build_app(settings), clock=clock) as host:
            selection = {"kind": "diskIds", "diskIds": [story.disk_id]}
            run = RunInput.from_json(
                {"trigger": "http", "selection": selection, "options": run_options(settings).to_json()}
            )
            host.start_new(RUN_ORCHESTRATOR, input=run.to_json(), instance_id=run_id)
            [result] = host.wait_for_completion(run_id, timeout=120).output["disks"]
        assert result["status"] == "Succeeded", result
        story.nights.append(Night(run_id, digest, result["blobSnapshot"]))
    assert len({n.digest for n in story.nights}) == 4  # every night differs
    yield story
    for each in (group, other):
        remove_group_contents(story.clients, settings.subscription_id, each)


@pytest.fixture
def quick_operations(proving_ground: ProvingGround) -> Iterator[None]:
    """Compute operations end at their first poll, for command-line runs on the real clock (not in their
    first answer: a grant's SAS is read from its finished operation, which then keeps no result)."""
    saved = proving_ground.control("GET", "/config")
    proving_ground.control("PATCH", "/config", {"operation_polls": 1})
    try:
        yield
    finally:
        proving_ground.control("PATCH", "/config", {"operation_polls": saved["operation_polls"]})


def _cli(story: Story, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), env=story.env, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _http(
    host: LocalHost, function: str, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    request = func.HttpRequest(
        method=method,
        url=f"http://localhost/api/{path}",
        body=kwargs.get("body", b""),
        headers={"Content-Type": "application/json"},
        params=kwargs.get("params", {}),
        route_params=kwargs.get("route", {}),
    )
    response = host.invoke_function(function, req=request)
    return response.status_code, json.loads(response.get_body())


# -- restoring, byte for byte -------------------------------------------------------------------------------


def test_the_newest_and_an_older_point_restore_into_another_group_and_region(
    story: Story,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    quick_operations: None,
) -> None:
    caplog.set_level(logging.DEBUG)
    issued: list[str] = []  # every SAS the restores used: the disks' write and read SAS, the sources' SAS
    read_sas = ComputeClient.read_access_sas
    sign = SharedKeyAuthorizer.blob_sas

    def recording_grant(self: ComputeClient, grant: Any) -> str:
        issued.append(read_sas(self, grant))
        return issued[-1]

    def recording_sign(self: SharedKeyAuthorizer, *args: Any, **kwargs: Any) -> str:
        issued.append(sign(self, *args, **kwargs))
        return issued[-1]

    monkeypatch.setattr(ComputeClient, "read_access_sas", recording_grant)
    monkeypatch.setattr(SharedKeyAuthorizer, "blob_sas", recording_sign)

    # The newest point, chosen by time, through the orchestration.
    with story.host() as host:
        newest = story.restore(host, story.request("newest", at="2026-02-02T12:00:00Z"), "restore-newest")
        states = [
            (i.instance_id, host.history(i.instance_id), i.custom_status, i.output)
            for i in host.list_instances()
        ]
    assert (newest["status"], newest["runId"], newest["verdict"]) == ("Succeeded", "night-3", "Passed"), (
        newest
    )
    assert newest["blobSnapshot"] == story.nights[3].blob_snapshot
    assert newest["sourceDigest"] == newest["diskDigest"] and newest["windows"] == 6
    assert (
        newest["bytesCompared"] == DISK_SIZE and 0 < newest["bytesWritten"] < DISK_SIZE
    )  # populated pages only
    assert story.digest(story.other, "newest") == story.nights[3].digest
    disk = story.clients.compute.get_disk(newest["targetDiskId"])
    assert (disk.location, disk.state, disk.size_bytes, disk.sku) == (
        "eastus",
        "Unattached",
        DISK_SIZE,
        "Standard_LRS",
    )
    assert disk.tags["restoreId"] == "restore-newest"

    # An older point, by run id, through the command line (its own host, the real clock).
    code, out, err = _cli(
        story,
        "--state-dir",
        str(tmp_path),
        "restore",
        story.disk_id,
        "--run",
        "night-0",
        "--to-resource-group",
        story.other,
        "--to-disk",
        "older",
        "--location",
        "eastus",
        "--sku",
        "Premium_LRS",
    )
    assert code == 0, err + out
    assert "Succeeded: run night-0's restore point" in out and "verified in full: 6 windows" in out
    assert story.digest(story.other, "older") == story.nights[0].digest
    assert (
        story.clients.compute.get_disk(story.request("older", run_id="night-0").target.disk_id).sku
        == "Premium_LRS"
    )

    # The catalog has both restores, with their digests.
    records = {r.result.restore_id: r.result for r in story.clients.catalog.list_restores().items}
    assert records["restore-newest"].status == "Succeeded"
    assert records["restore-newest"].source_digest == newest["sourceDigest"]
    [cli_record] = [r for r in records.values() if r.run_id == "night-0"]
    assert cli_record.status == "Succeeded" and cli_record.verdict == "Passed"

    # No SAS in any history, status, output, catalog row, command-line output or log line.
    assert len(issued) >= 4
    signatures = [dict(parse_qsl(urlsplit(sas).query if "?" in sas else sas))["sig"] for sas in issued]
    rows = [e.properties for e in story.clients.catalog.table.query()]
    everything = json.dumps([states, rows], default=str) + out + err + caplog.text
    everything += (tmp_path / "diskbackup.log").read_text()
    assert not any(signature in everything for signature in signatures)
    assert all(value == "REDACTED" for value in re.findall(r"sig=([^&\s\"'<>]*)", everything))
    assert story.grants() == []


# -- an existing disk, the HTTP API -------------------------------------------------------------------------


def test_a_restore_over_an_existing_disk_is_refused_and_the_disk_stays_as_it_was(
    story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = story.digest(story.group, "data")
    existing = {"resourceGroup": story.group, "diskName": "data"}
    with story.host() as host:
        body = json.dumps({"diskId": story.disk_id, "runId": "night-1", "target": existing}).encode()
        status, answer = _http(host, "start_restore", "POST", "restores", body=body)
        assert status == 409 and answer["error"]["code"] == "TargetExists", answer
        assert answer["error"]["field"] == "target.diskName"
        assert not [i for i in host.list_instances() if i.name == RESTORE_ORCHESTRATOR]  # nothing started

        # A disk that appears after the check is refused by the create itself, and is not deleted.
        monkeypatch.setattr(restore_activities, "_refuse_existing", lambda *args: None)
        raced = story.restore(host, story.request("data", run_id="night-1", target=existing), "restore-race")
    assert (raced["status"], raced["code"], raced["phase"]) == ("Failed", "TargetExists", "create"), raced
    assert not raced["diskDeleted"] and not raced["diskKept"]
    assert story.digest(story.group, "data") == before
    assert "restoreId" not in story.clients.compute.get_disk(story.disk_id).tags
    assert story.grants() == []


def test_the_http_api_starts_a_restore_and_reports_it(story: Story) -> None:
    with story.host() as host:
        body = {
            "diskId": story.disk_id,
            "runId": "night-3",
            "target": {"resourceGroup": story.other, "diskName": "sampled", "location": "eastus"},
            "verify": "sample",
        }
        status, started = _http(host, "start_restore", "POST", "restores", body=json.dumps(body).encode())
        assert status == 202, started
        restore_id = started["restoreId"]
        assert started["statusUri"] == f"http://localhost/api/restores/{restore_id}"  # ours, no system key
        host.wait_for_completion(restore_id, timeout=120)
        status, report = _http(
            host, "get_restore", "GET", f"restores/{restore_id}", route={"restoreId": restore_id}
        )
        assert status == 200 and report["runtimeStatus"] == "Completed"
        assert (report["phase"], report["bytesWritten"]) == ("done", report["result"]["bytesWritten"])
        result = report["result"]
        assert (result["status"], result["verify"], result["verdict"]) == ("Succeeded", "sample", "Passed")
        assert result["windows"] > 0 and result["sourceDigest"] is None
        assert story.digest(story.other, "sampled") == story.nights[3].digest

        status, missing = _http(host, "get_restore", "GET", "restores/nope", route={"restoreId": "nope"})
        assert status == 404 and missing["error"]["code"] == "RestoreNotFound"
        body["runId"], body["target"]["diskName"] = "night-9", "never"
        status, refused = _http(host, "start_restore", "POST", "restores", body=json.dumps(body).encode())
        assert status == 404 and refused["error"]["code"] == "NoRestorePoint"
        status, early = _http(
            host,
            "start_restore",
            "POST",
            "restores",
            body=json.dumps({**body, "runId": None, "at": "2026-01-01T00:00:00Z"}).encode(),
        )
        assert status == 404 and early["error"]["field"] == "at"


# -- crashes and failures ---------------------------------------------------------------------------------


def test_a_crash_in_the_middle_of_a_restore_resumes_and_ends_with_the_same_bytes(
    story: Story, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    small = ChainOptions(segment_bytes=8 * MiB, batch_requests=2, diff_page_size=4, diff_pages_per_call=1)
    request = story.request("resumed", run_id="night-2")
    request = replace(request, options=replace(request.options, chain=small))
    apply_batch = restore_activities.apply_restore_batch
    calls = {"count": 0}
    in_flight, release = threading.Event(), threading.Event()

    def dying(clients: AzureClients, data: Any) -> Any:
        calls["count"] += 1
        if calls["count"] == 3:  # the third batch is being written when the process dies
            in_flight.set()
            release.wait(60)
            raise RuntimeError("this process is gone")
        return apply_batch(clients, data)

    monkeypatch.setattr(restore_activities, "apply_restore_batch", dying)
    first = story.host(tmp_path)
    first.start()
    try:
        first.start_new(RESTORE_ORCHESTRATOR, input=request.to_json(), instance_id="restore-crash")
        assert in_flight.wait(120), "the third batch never started"
    finally:
        first.stop(wait_for_activities=False)
        release.set()
    monkeypatch.setattr(restore_activities, "apply_restore_batch", apply_batch)

    with story.host(tmp_path) as second:
        status = second.wait_for_completion("restore-crash", timeout=120)
        history = second.history("restore-crash")
    result = status.output
    assert (result["status"], result["verdict"]) == ("Succeeded", "Passed"), result
    applied = [
        json.loads(e["Input"])["planBlob"]
        for e in history
        if e["EventType"] == EventType.TASK_SCHEDULED and e["Name"] == act.APPLY_RESTORE_BATCH
    ]
    assert len(applied) == len(set(applied)) > 3  # each batch scheduled once, and there were many
    assert story.digest(story.other, "resumed") == story.nights[2].digest
    assert story.grants() == []


def test_a_failed_restore_deletes_its_half_made_disk_or_keeps_it_when_asked(
    story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(clients: AzureClients, data: Any) -> Any:
        raise CopyFailedError("the copy source stopped answering")

    monkeypatch.setattr(restore_activities, "apply_restore_batch", failing)
    with story.host() as host:
        dropped = story.restore(host, story.request("dropped", run_id="night-1"), "restore-dropped")
        kept = story.restore(
            host, story.request("kept", run_id="night-1", keep_on_failure=True), "restore-kept"
        )
    assert (dropped["status"], dropped["code"], dropped["phase"]) == ("Failed", "CopyFailed", "write")
    assert dropped["reason"] == "write: the copy source stopped answering"
    assert dropped["diskDeleted"] and not story.exists(dropped["targetDiskId"])
    assert (kept["status"], kept["diskKept"], kept["diskDeleted"]) == ("Failed", True, False)
    disk = story.clients.compute.get_disk(kept["targetDiskId"])
    assert disk.state == "Unattached"  # revoked: the upload ended
    record = story.clients.catalog.get_restore("restore-dropped")
    assert record is not None and (record.result.status, record.result.code) == ("Failed", "CopyFailed")
    assert story.grants() == []
    operation = story.clients.compute.begin_delete_disk(kept["targetDiskId"], restore_id="restore-kept")
    while operation is not None and not operation.done:
        operation = story.clients.compute.poll(operation)


def test_a_sampled_verification_that_finds_a_difference_fails_the_restore_and_deletes_the_disk(
    story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``verify: sample`` end to end: a page of the restored disk changed once its upload ended (through
    the emulator's control surface, while no SAS is active, before the read grant of the sampled
    comparison) fails the restore with the window named, and the disk is deleted as after any failed
    restore."""
    request = story.request("changed", run_id="night-3", verify="sample")
    # A page inside the first window the restore will sample (seeded by its id).
    budget = request.options.chain.verify_sample_mib * MiB
    [first, *_] = sample_windows("sampled-bad", DISK_SIZE, [], budget)
    check = restore_activities.check_restored_disk
    changed: list[str] = []

    def after_a_change(clients: AzureClients, data: Any) -> Any:
        if not changed:
            changed.append(f"/resourceGroups/{story.other}/disks/changed/write")
            garbage = base64.b64encode(b"\xee" * 512).decode()
            story.control("POST", changed[0], {"offset": first.start, "data": garbage})
        return check(clients, data)

    monkeypatch.setattr(restore_activities, "check_restored_disk", after_a_change)
    with story.host() as host:
        failed = story.restore(host, request, "sampled-bad")
    assert changed, "the restored disk was never checked"
    assert (failed["status"], failed["code"], failed["verdict"]) == ("Failed", "VerificationFailed", "Failed")
    assert (
        f"the disk differs from the restore point in 1 of {failed['windows']} sampled windows"
        in (failed["reason"])
    )
    assert failed["diskDeleted"] and not story.exists(failed["targetDiskId"])
    assert story.grants() == []


def test_a_whole_blob_recorded_before_the_chain_restores(story: Story) -> None:
    # Before the chain, each run copied a disk into a blob of its own: the disk's bytes and a VHD footer.
    blob_name = f"{story.settings.subscription_id}/{story.group}/data/prechain-1.vhd".lower()
    blob = story.clients.backup_blob(story.settings.container, blob_name)
    story.clients.blob.create_page_blob(blob, DISK_SIZE + 512)
    ranges = story.control("GET", f"/resourceGroups/{story.group}/disks/data/ranges")["ranges"]
    for chunk in split([PageRange(start, end) for start, end in ranges]):
        content = requests.get(
            f"{story.ground.control_url}/resourceGroups/{story.group}/disks/data/content",
            params={"offset": chunk.start, "length": chunk.length},
            verify=str(story.ground.arm_ca_cert),
            timeout=60,
        ).content
        story.clients.blob.put_page(blob, chunk, content)
    story.clients.blob.put_page(blob, PageRange.at(DISK_SIZE, 512), vhd.build_footer(DISK_SIZE, uuid.uuid4()))
    taken = FIRST_NIGHT - timedelta(days=10)
    story.clients.catalog.record_restore_point(
        RestorePointRecord(
            run_id="prechain-1",
            run_started_at=iso(taken),
            disk_id=story.disk_id,
            container=story.settings.container,
            blob_name=blob_name,
            size_bytes=DISK_SIZE,
            started_at=iso(taken),
            finished_at=iso(taken + timedelta(minutes=5)),
            status="Succeeded",
            kind="full",
            bytes_copied=DISK_SIZE,
        )
    )
    with story.host() as host:
        result = story.restore(host, story.request("prechain", run_id="prechain-1"), "restore-prechain")
    assert (result["status"], result["verdict"], result["blobSnapshot"]) == ("Succeeded", "Passed", None), (
        result
    )
    assert story.digest(story.other, "prechain") == story.digest(story.group, "data")


# -- restore tests ------------------------------------------------------------------------------------------


def test_verify_passes_and_fails_once_the_point_is_corrupted(
    story: Story, tmp_path: Path, quick_operations: None
) -> None:
    night = story.nights[2]
    code, out, err = _cli(
        story, "--state-dir", str(tmp_path), "verify", story.disk_id, "--run", night.run_id, "--json"
    )
    assert code == 0, err + out
    passed = json.loads(out)["result"]
    assert (passed["purpose"], passed["verdict"], passed["diskDeleted"]) == ("test", "Passed", True)
    assert not story.exists(passed["targetDiskId"])  # the temporary disk is gone
    point = story.clients.catalog.find_restore_point(story.disk_id, night.run_id)
    assert point is not None and point.verdict == "Passed" and point.verified_digest == passed["sourceDigest"]

    # A page of the restore point corrupted in Azurite itself: a Copy Blob from a blob snapshot shares
    # its page list in Azurite, so writing the copy writes the snapshot (docs: azurite.md).
    signer = SharedKeyAuthorizer(
        story.ground.backup_account, story.ground.backup_account_key, service=StorageService.BLOB
    )
    azurite = ContainerAddress.in_account(
        story.ground.azurite.blob_endpoint(story.ground.backup_account), story.settings.container, signer
    )
    blob_name = story.clients.catalog.blob_location(point.blob_url)[1]
    source = azurite.blob(blob_name).at_snapshot(night.blob_snapshot)
    source = source.with_sas(
        signer.blob_sas(
            story.settings.container, blob_name, lifetime=timedelta(minutes=5), snapshot=night.blob_snapshot
        )
    )
    blobs = BlobClient()
    other_point = story.clients.backup_blob(story.settings.container, blob_name).at_snapshot(
        story.nights[3].blob_snapshot
    )
    other_before = blob_sha256(blobs, other_point, length=DISK_SIZE)[0]
    scratch = azurite.blob(f"scratch-{night.run_id}")
    blobs.start_copy(scratch, source)
    blobs.put_page(scratch, PageRange.at(3 * MiB, 512), b"\xee" * 512)
    corrupted = story.clients.backup_blob(story.settings.container, blob_name).at_snapshot(
        night.blob_snapshot
    )
    assert blob_sha256(blobs, corrupted, length=DISK_SIZE)[0] != night.digest
    assert blob_sha256(blobs, other_point, length=DISK_SIZE)[0] == other_before  # only that point changed

    # The second test through the orchestration itself, on the virtual clock.
    test = restore_test_input(
        story.settings,
        "cli",
        disk_id=story.disk_id,
        run_id=night.run_id,
        restore_id="test-2",
        resource_group=story.group,
    )
    with story.host() as host:
        failed = story.restore(host, test, "test-2")
    assert (failed["status"], failed["code"], failed["verdict"]) == ("Failed", "VerificationFailed", "Failed")
    assert "the restore point's content changed since an earlier restore test verified it" in failed["reason"]
    assert failed["diskDeleted"] and not story.exists(failed["targetDiskId"])
    point = story.clients.catalog.find_restore_point(story.disk_id, night.run_id)
    assert point is not None and point.verdict == "Failed" and point.verdict_reason == failed["reason"]
    assert point.verified_digest == passed["sourceDigest"]  # the reference stays the verified one
    assert story.grants() == []


def test_scheduled_restore_tests_test_the_newest_point_of_each_disk(story: Story) -> None:
    story.control(
        "PUT",
        f"/resourceGroups/{story.group}/disks/fresh",
        {"size_bytes": DISK_SIZE, "fill": {"seed": 5, "fraction": 0.1}},
    )
    env = {**story.env, "BACKUP_VERIFY_SCHEDULE": "0 0 4 * * Sun"}
    settings = Settings.from_env(env)
    with LocalHost(build_app(settings), clock=VirtualClock(AFTER)) as host:
        timer = TimerRequest(past_due=False)
        host.invoke_function("scheduled_restore_tests", timer=timer)
        host.invoke_function("scheduled_restore_tests", timer=timer)  # fired twice: tested once
        [tests] = [i.instance_id for i in host.list_instances() if i.name == RESTORE_TESTS_ORCHESTRATOR]
        assert re.fullmatch(r"restore-tests-\d{8}T\d{6}Z", tests)
        summary = host.wait_for_completion(tests, timeout=120).output
    by_disk = {r["diskId"].rsplit("/", 1)[1]: r for r in summary["results"]}
    assert (summary["disks"], summary["passed"], summary["failed"]) == (2, 1, 1), summary
    assert (by_disk["data"]["verdict"], by_disk["data"]["runId"]) == ("Passed", "night-3")
    assert (by_disk["fresh"]["verdict"], by_disk["fresh"]["code"]) == ("Failed", "NoRestorePoint")
    point = story.clients.catalog.find_restore_point(story.disk_id, "night-3")
    assert point is not None and point.verdict == "Passed" and point.verify_restore_id == f"{tests}-test-0000"
    # Every temporary disk is gone again: only the disks that were there are left.
    names = {d.name for d in story.clients.compute.list_disks(story.settings.subscription_id, story.group)}
    assert names == {"data", "fresh"}
    assert story.grants() == []


# -- pruned neighbours (last: it prunes the story's nights) ------------------------------------------------


def test_a_point_whose_neighbouring_snapshots_were_pruned_restores(story: Story) -> None:
    # Keep the newest night and the newest of each of two months: Feb 2 and Jan 31. Jan 30 and Feb 1,
    # the blob snapshots on either side of Jan 31, go (and January's whole blob from before the chain).
    prune = replace(prune_input(story.settings, "cli"), policy="daily=1,weekly=0,monthly=2,yearly=0")
    with story.host() as host:
        host.start_new(PRUNE_ORCHESTRATOR, input=prune.to_json(), instance_id="prune-neighbours")
        pruned = host.wait_for_completion("prune-neighbours", timeout=60).output
        assert (pruned["expired"], pruned["deleted"]) == (3, 3), pruned  # and the whole blob of before
        restored = story.restore(host, story.request("between", run_id="night-1"), "restore-between")
        gone = story.restore(host, story.request("gone", run_id="night-2"), "restore-gone")
    name = chain_blob(story)
    left = {
        i.snapshot
        for i in story.clients.blob.list_blobs(
            story.clients.backup_container(story.settings.container), prefix=name, snapshots=True
        )
        if i.name == name and i.snapshot
    }
    assert left == {story.nights[1].blob_snapshot, story.nights[3].blob_snapshot}
    prechain = story.clients.backup_blob(story.settings.container, f"{name.rsplit('/', 1)[0]}/prechain-1.vhd")
    with pytest.raises(NotFoundError):
        story.clients.blob.get_properties(prechain)  # a point from before the chain goes whole
    assert (restored["status"], restored["verdict"]) == ("Succeeded", "Passed"), restored
    assert story.digest(story.other, "between") == story.nights[1].digest
    assert (gone["status"], gone["code"], gone["phase"]) == ("Failed", "NoRestorePoint", "resolve")
    assert "expired" in gone["reason"] and not story.exists(gone["targetDiskId"])


def chain_blob(story: Story) -> str:
    return chain_blob_name(story.settings.subscription_id, story.group, story.disk)
