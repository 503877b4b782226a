"""The chain's activities (backup/workflow/chain_activities.py), called as the host calls them, twice.

The host delivers an activity at least once: each step of an incremental night run twice with the same
input must leave what one run leaves (one lease, one restore point, the same plan, the same bytes). The
activities run against the proving ground, whose front answers diffs and Put Page From URL as Azure does.
Then what they refuse, and the pacer that keeps a blob's writes under its rates.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cleanup import remove_group_contents

from backup.azure.blob import BlobAddress, BlobClient
from backup.azure.lro import LroStatus
from backup.azure.page_range import PageRange
from backup.clients import AzureClients, build_clients
from backup.errors import InvalidInputError, NotFoundError
from backup.settings import Settings
from backup.workflow import activities, chain_activities
from backup.workflow.chain import TAG_BASE, TAG_KEEP, chain_blob_name, writer_lease_id
from backup.workflow.chain_activities import WritePacer
from testbed.devenv import proving_ground_settings
from testbed.digest import blob_sha256
from testbed.proving_ground import ProvingGround

MiB = 1 << 20
DISK_SIZE = 8 * MiB
NOW = "2026-11-26T01:00:00.000Z"


@dataclass
class Corner:
    """A resource group, container and catalog of the test's own, with one disk in it."""

    ground: ProvingGround
    clients: AzureClients
    group: str
    container: str

    @property
    def disk_id(self) -> str:
        return self.ground.disk_id("d", self.group)

    @property
    def blob(self) -> dict[str, str]:
        return {
            "container": self.container,
            "blobName": chain_blob_name(self.ground.subscription_id, self.group, "d"),
        }

    def finish(self, answer: dict[str, Any]) -> dict[str, Any]:
        for _ in range(20):
            if answer["state"] == "Succeeded":
                return answer
            answer = activities.poll_operation(self.clients, {"operation": answer["operation"]})
        raise AssertionError(f"operation did not finish: {answer}")

    def snapshot(self, run_id: str) -> str:
        [disk] = activities.resolve_selection(self.clients, {"kind": "diskIds", "diskIds": [self.disk_id]})
        started = activities.begin_snapshot(
            self.clients, {"runId": run_id, "disk": disk, "incremental": True}
        )
        self.finish(started)
        return str(started["snapshotId"])

    def grant(self, snapshot_id: str) -> dict[str, Any]:
        answer = activities.begin_grant_access(
            self.clients, {"snapshotId": snapshot_id, "durationSeconds": 3600}
        )
        return dict(self.finish(answer)["operation"])

    def digest(self) -> str:
        address = self.clients.backup_blob(self.container, self.blob["blobName"])
        return blob_sha256(BlobClient(), address, length=DISK_SIZE)[0]

    def disk_digest(self) -> str:
        return str(self.ground.control("GET", f"/resourceGroups/{self.group}/disks/d/digest")["sha256"])


@pytest.fixture
def corner(proving_ground: ProvingGround, unique_name: str) -> Iterator[Corner]:
    group = f"rg-{unique_name}"
    proving_ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    proving_ground.control(
        "PUT",
        f"/resourceGroups/{group}/disks/d",
        {"size_bytes": DISK_SIZE, "fill": {"seed": 3, "fraction": 0.3}},
    )
    env = proving_ground_settings(
        proving_ground,
        proving_ground.arm_ca_cert,
        BACKUP_SELECT_RESOURCE_GROUP=group,
        BACKUP_CONTAINER=unique_name,
        BACKUP_CATALOG_TABLE=unique_name,
    )
    corner = Corner(proving_ground, build_clients(Settings.from_env(env)), group, unique_name)
    yield corner
    for grant in proving_ground.control("GET", "/grants")["resources"]:
        if f"/resourcegroups/{group}/" in grant["id"].lower():
            corner.finish(activities.begin_revoke_access(corner.clients, {"snapshotId": grant["id"]}))
    remove_group_contents(corner.clients, proving_ground.subscription_id, group)


def _lease_input(corner: Corner, run_id: str, now: str = NOW) -> dict[str, Any]:
    return {
        **corner.blob,
        "leaseId": writer_lease_id(run_id, corner.disk_id),
        "runId": run_id,
        "diskBytes": DISK_SIZE,
        "now": now,
        "staleAfterMinutes": 60,
    }


def test_a_plan_that_cannot_be_deleted_is_reported_and_does_not_keep_the_lease(corner: Corner) -> None:
    """finish_writing: a plan blob whose deletion fails for good (Azurite refuses to delete a leased blob
    without its lease: 412, not transient) is named in ``planProblem``; the others go, and the writer's
    lease is given back all the same."""
    clients = corner.clients
    chain_activities.acquire_writer_lease(clients, _lease_input(corner, "run-1"))
    container = clients.backup_container(corner.container)
    plan = [container.blob(f"{corner.blob['blobName']}.plan/run-1/{n}") for n in ("a", "b")]
    for blob in plan:
        clients.blob.create_page_blob(blob, 512)
    clients.blob.acquire_lease(plan[1], writer_lease_id("someone-else", corner.disk_id))
    done = chain_activities.finish_writing(
        clients, {**corner.blob, "leaseId": writer_lease_id("run-1", corner.disk_id)}
    )
    assert done["released"] and done["planProblem"] and "lease" in done["planProblem"].lower()
    assert not clients.blob.get_properties(clients.backup_blob(**_address(corner))).leased
    with pytest.raises(NotFoundError):
        clients.blob.get_properties(plan[0])  # deleted before the leased one refused
    assert clients.blob.get_properties(plan[1]).leased  # still there, for the next night


def test_the_writer_lease_is_held_once_refused_to_others_and_released(corner: Corner) -> None:
    clients = corner.clients
    first = chain_activities.acquire_writer_lease(clients, _lease_input(corner, "run-1"))
    again = chain_activities.acquire_writer_lease(clients, _lease_input(corner, "run-1"))
    assert {k: first[k] for k in ("acquired", "created", "brokeStale")} == {
        "acquired": True,
        "created": True,
        "brokeStale": None,
    }
    assert again["acquired"] and not again["created"]  # the same lease, again
    # The ETag is read before the writer's metadata is set: a blob nobody wrote keeps it from night to night
    # (the first call created the blob with its metadata, so nothing has moved it since).
    assert first["etag"] and again["etag"] == first["etag"]
    props = clients.blob.get_properties(clients.backup_blob(**_address(corner)))
    assert props.leased and props.size == DISK_SIZE + 512
    metadata = {name.lower(): value for name, value in props.metadata.items()}
    assert metadata == {"writerrunid": "run-1", "writersince": NOW}
    # Another run, half an hour later: refused, told who writes and since when.
    other = chain_activities.acquire_writer_lease(
        clients, _lease_input(corner, "run-2", "2026-11-26T01:30:00.000Z")
    )
    assert other == {"acquired": False, "holder": "run-1", "since": NOW}
    # Two hours later the lease counts as stale (staleAfterMinutes 60): broken and taken over.
    late = chain_activities.acquire_writer_lease(
        clients, _lease_input(corner, "run-3", "2026-11-26T03:00:00.000Z")
    )
    assert (late["acquired"], late["created"], late["brokeStale"]) == (True, False, "run-1")
    release = {**corner.blob, "leaseId": writer_lease_id("run-3", corner.disk_id)}
    finished = {"planDeleted": 0, "planProblem": None, "released": True}
    assert chain_activities.finish_writing(clients, release) == finished
    assert chain_activities.finish_writing(clients, release) == {
        **finished,
        "released": False,
    }  # already given back
    assert not clients.blob.get_properties(clients.backup_blob(**_address(corner))).leased


def test_a_first_night_creates_and_leases_the_blob_without_reading_it(
    corner: Corner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No HEAD on a first night: the blob is created if missing (If-None-Match: *) with the writer's
    metadata, its container first when that is missing too, then leased; the ETag answered is the one its
    creation returned. A later night reads it and writes its own record."""
    transport = corner.clients.blob.transport
    sent: list[tuple[str, str, str | None]] = []  # method, query, ETag answered (None: an error)
    send = transport.request

    def recording(method: str, url: str, **kwargs: Any) -> Any:
        query = url.partition("?")[2]
        sent.append((method, query, None))
        response = send(method, url, **kwargs)
        sent[-1] = (method, query, response.headers.get("ETag"))
        return response

    monkeypatch.setattr(transport, "request", recording)
    first = chain_activities.acquire_writer_lease(corner.clients, _lease_input(corner, "run-1"))
    assert [(method, query) for method, query, _ in sent] == [
        ("PUT", ""),  # 404 ContainerNotFound: nothing backed up into this container yet
        ("PUT", "restype=container"),
        ("PUT", ""),
        ("PUT", "comp=lease"),
    ]
    assert first["created"] and first["etag"] == sent[2][2]
    props = corner.clients.blob.get_properties(corner.clients.backup_blob(**_address(corner)))
    assert {k.lower(): v for k, v in props.metadata.items()}["writerrunid"] == "run-1"
    chain_activities.finish_writing(
        corner.clients, {**corner.blob, "leaseId": writer_lease_id("run-1", corner.disk_id)}
    )
    sent.clear()
    second = chain_activities.acquire_writer_lease(corner.clients, _lease_input(corner, "run-2"))
    # The blob is there (409), so it is read before its metadata is set.
    assert [(method, query) for method, query, _ in sent] == [
        ("PUT", ""),
        ("PUT", "comp=lease"),
        ("HEAD", ""),
        ("PUT", "comp=metadata"),
    ]
    assert sent[0][2] is None and second["etag"] == sent[2][2]
    assert not second["created"]
    props = corner.clients.blob.get_properties(corner.clients.backup_blob(**_address(corner)))
    assert {k.lower(): v for k, v in props.metadata.items()}["writerrunid"] == "run-2"


def test_a_blob_made_by_this_run_but_leased_first_by_another_names_no_holder_it_cannot_know(
    corner: Corner,
) -> None:
    """Two runs' first nights at once: this one created the blob (with its own record), the other took
    the lease first and has not written its record yet. The refusal must not name this run."""
    clients = corner.clients
    blob = clients.backup_blob(**_address(corner))
    clients.blob.create_container(clients.backup_container(corner.container))
    clients.blob.create_page_blob(
        blob, DISK_SIZE + 512, metadata={"writerRunId": "run-1", "writerSince": NOW}
    )
    clients.blob.acquire_lease(blob, writer_lease_id("run-2", corner.disk_id))
    refused = chain_activities.acquire_writer_lease(clients, _lease_input(corner, "run-1"))
    assert refused == {"acquired": False, "holder": "another run", "since": NOW}


def _address(corner: Corner) -> dict[str, str]:
    return {"container": corner.container, "name": corner.blob["blobName"]}


def test_each_step_of_a_night_twice_leaves_what_once_does(corner: Corner) -> None:
    clients = corner.clients
    lease_id = writer_lease_id("run-2", corner.disk_id)
    chain_activities.acquire_writer_lease(clients, _lease_input(corner, "run-2"))
    # Night 1 (by hand): the whole snapshot copied under the lease, then a blob snapshot.
    base = corner.snapshot("run-1")
    base_grant = corner.grant(base)
    copy = activities.start_copy(
        clients,
        {
            **corner.blob,
            "snapshotId": base,
            "grant": base_grant,
            "leaseId": lease_id,
            "metadata": {"runId": "run-1"},
        },
    )
    while copy["status"] != "success":
        copy = activities.copy_status(clients, {**corner.blob, "copyId": copy["copyId"]})
    point = {**corner.blob, "runId": "run-1", "diskId": corner.disk_id, "snapshotId": base, "kind": "full"}
    taken = chain_activities.snapshot_backup_blob(clients, point)
    assert chain_activities.snapshot_backup_blob(clients, point) == taken  # one restore point per night
    blob_props = clients.blob.get_properties(clients.backup_blob(**_address(corner)))
    assert taken["blobEtag"] == blob_props.etag
    chain_activities.finish_writing(clients, {**corner.blob, "leaseId": lease_id})
    # Releasing and taking the lease again leaves the ETag as the restore point recorded it.
    assert (
        chain_activities.acquire_writer_lease(clients, _lease_input(corner, "run-2"))["etag"]
        == taken["blobEtag"]
    )

    # Night 2: churn, a new snapshot, its diff against the base into a plan, twice.
    corner.ground.control("POST", f"/resourceGroups/{corner.group}/disks/d/churn", {"seed": 5})
    new = corner.snapshot("run-2")
    grant = corner.grant(new)
    listing = {
        **corner.blob,
        "runId": "run-2",
        "grant": grant,
        "baseGrant": base_grant,
        "segment": [0, DISK_SIZE - 1],
        "marker": None,
        "pageSize": None,
        "pagesPerCall": 5,
        "part": 0,
        "batchBytes": 4 * MiB,
        "batchRequests": 4,
    }
    planned = chain_activities.list_changes(clients, listing)
    plan_name = f"{corner.blob['blobName']}.plan/run-2/000000-00000.json"
    plan = clients.blob.get_blob(clients.backup_blob(corner.container, plan_name))
    assert chain_activities.list_changes(clients, listing) == planned
    assert clients.blob.get_blob(clients.backup_blob(corner.container, plan_name)) == plan
    assert planned["batches"] > 1 and planned["nextMarker"] is None
    assert planned["changedBytes"] <= planned["moveBytes"] <= 1.05 * planned["changedBytes"]

    # Apply every batch twice: the same bytes as once, and then the disk's.
    for batch in range(planned["batches"]):
        apply = {
            **corner.blob,
            "runId": "run-2",
            "grant": grant,
            "leaseId": lease_id,
            "planBlob": f"{corner.blob['blobName']}.plan/run-2/000000-{batch:05d}.json",
            "writesPerBlob": 3,
        }
        once = chain_activities.apply_batch(clients, apply)
        after_once = corner.digest()
        assert chain_activities.apply_batch(clients, apply) == once
        assert corner.digest() == after_once
    footer = {**corner.blob, "grant": grant, "leaseId": lease_id, "diskBytes": DISK_SIZE}
    assert chain_activities.sync_footer(clients, footer) == {"rewritten": False, "bytesMoved": 0}
    assert corner.digest() == corner.disk_digest()

    # Verified twice alike; the plan deleted once, the second time finds nothing.
    pages = {**corner.blob, "grant": grant, "segment": [0, DISK_SIZE - 1], "pageSize": 2}
    checked = chain_activities.verify_pages(clients, pages)
    assert checked["equal"] and checked == chain_activities.verify_pages(clients, pages)
    content = {
        **corner.blob,
        "grant": grant,
        "diskBytes": DISK_SIZE,
        "sampleBytes": 2 * MiB,
        "seed": "run-2",
        "planBlobs": [plan_name],
    }
    verdict = chain_activities.verify_content(clients, content)
    assert verdict["equal"] and verdict["bytesCompared"] == 2 * MiB
    assert verdict == chain_activities.verify_content(clients, content)
    # The night over: the plan deleted, then the lease given back; again, nothing is left to do.
    finish = {**corner.blob, "leaseId": lease_id}
    done = chain_activities.finish_writing(clients, finish)
    assert done == {"planDeleted": planned["batches"], "planProblem": None, "released": True}
    assert chain_activities.finish_writing(clients, finish) == {**done, "planDeleted": 0, "released": False}

    # The base rotates: the new one tagged (and kept, as asked), the old one deleted; twice is harmless.
    for snapshot_id in (new, base):
        corner.finish(activities.begin_revoke_access(clients, {"snapshotId": snapshot_id}))
        tagging = chain_activities.begin_tag_base(
            clients, {"snapshotId": snapshot_id, "keep": snapshot_id == new}
        )
        corner.finish(tagging)
    assert chain_activities.begin_tag_base(clients, {"snapshotId": new, "keep": True})["operation"] is None
    retired = chain_activities.begin_retire_base(clients, {"snapshotId": base})
    assert retired["action"] == "deleted"
    corner.finish(retired)
    assert chain_activities.begin_retire_base(clients, {"snapshotId": base})["action"] == "none"
    # A base a person asked to keep is only untagged when a newer base replaces it.
    kept = chain_activities.begin_retire_base(clients, {"snapshotId": new})
    assert kept["action"] == "untagged"
    corner.finish(kept)
    tags = clients.compute.get_snapshot(new).tags
    assert TAG_BASE not in tags and tags[TAG_KEEP] == "true"
    assert chain_activities.begin_retire_base(clients, {"snapshotId": new})["action"] == "none"


def test_tagging_the_base_while_an_earlier_update_is_still_under_way_asks_to_be_called_again(
    corner: Corner,
) -> None:
    # An earlier attempt's update whose answer was lost is still running (the emulator ends an
    # operation after two looks at it or its resource; each call below looks once).
    snapshot_id = corner.snapshot("run-busy")
    corner.clients.compute.begin_update_snapshot_tags(snapshot_id, {"earlier": "attempt"})
    data = {"snapshotId": snapshot_id, "keep": False}
    busy = chain_activities.begin_tag_base(corner.clients, data)
    assert busy["state"] == "Throttled" and busy["retry"] == {"activity": "begin_tag_base", "input": data}
    assert busy["retryAfter"] == activities.BUSY_WAIT
    # Once it ended, the tags go on (over what the earlier update left).
    corner.finish(chain_activities.begin_tag_base(corner.clients, data))
    assert corner.clients.compute.get_snapshot(snapshot_id).tags.get(TAG_BASE) == "true"


def test_a_corrupted_page_is_a_verdict_not_an_error(corner: Corner) -> None:
    clients = corner.clients
    lease_id = writer_lease_id("run-1", corner.disk_id)
    chain_activities.acquire_writer_lease(clients, _lease_input(corner, "run-1"))
    snapshot_id = corner.snapshot("run-1")
    grant = corner.grant(snapshot_id)
    copy = activities.start_copy(
        clients,
        {**corner.blob, "snapshotId": snapshot_id, "grant": grant, "leaseId": lease_id, "metadata": {}},
    )
    while copy["status"] != "success":
        copy = activities.copy_status(clients, {**corner.blob, "copyId": copy["copyId"]})
    ranges = corner.ground.control("GET", f"/resourceGroups/{corner.group}/disks/d/ranges")["ranges"]
    start = ranges[0][0]
    destination = clients.backup_blob(corner.container, corner.blob["blobName"])
    clients.blob.put_page(destination, PageRange.at(start, 512), b"\x01" * 512, lease_id=lease_id)
    content = {
        **corner.blob,
        "grant": grant,
        "diskBytes": DISK_SIZE,
        "sampleBytes": 2 * DISK_SIZE,  # everything
        "seed": "run-1",
        "planBlobs": [],
    }
    verdict = chain_activities.verify_content(clients, content)
    assert verdict["equal"] is False and verdict["problem"].startswith(
        "content differs from the snapshot in 1 of"
    )
    # The comparison both the night's and a restore's sampled check use names exactly that window.
    snapshot = BlobAddress.from_sas_url(clients.read_access_sas(LroStatus.from_dict(grant)))
    hit, miss = (
        PageRange.at(start - start % MiB, MiB),
        PageRange.at((start - start % MiB + MiB) % DISK_SIZE, MiB),
    )
    assert chain_activities.windows_that_differ(clients, snapshot, destination, [miss, hit, miss]) == [hit]
    # A page cleared that the snapshot holds: the page sets differ.
    clients.blob.clear_pages(destination, PageRange.at(start, 512), lease_id=lease_id)
    pages = chain_activities.verify_pages(
        clients, {**corner.blob, "grant": grant, "segment": [0, DISK_SIZE - 1], "pageSize": None}
    )
    assert pages["equal"] is False and "populated pages differ" in pages["problem"]
    # A footer that is not the disk's.
    clients.blob.put_page(destination, PageRange.at(DISK_SIZE, 512), bytes(512), lease_id=lease_id)
    verdict = chain_activities.verify_content(clients, content)
    assert verdict == {
        "equal": False,
        "problem": "the last 512 bytes are not an intact VHD footer",
        "windows": 0,
        "bytesCompared": 0,
    }


@pytest.mark.parametrize(
    ("activity", "data", "field"),
    [
        ("acquire_writer_lease", {"leaseId": "x", "runId": "r", "now": "never"}, "now"),
        (
            "acquire_writer_lease",
            {"leaseId": "x", "runId": "r", "now": NOW, "staleAfterMinutes": 0},
            "staleAfterMinutes",
        ),
        ("list_changes", {"segment": [0, 100]}, "range end"),
        ("list_changes", {"segment": [0, 511], "marker": 5}, "marker"),
        ("apply_batch", {}, "leaseId"),
        ("sync_footer", {"diskBytes": -1}, "diskBytes"),
        ("verify_pages", {"segment": "all"}, "segment"),
        ("verify_content", {"diskBytes": 512, "sampleBytes": -1}, "sampleBytes"),
        ("snapshot_backup_blob", {"runId": ""}, "runId"),
        ("begin_tag_base", [], "activity input"),
        ("inspect_chain", {"diskId": "d", "diskBytes": True}, "diskBytes"),
    ],
)
def test_bad_input_is_refused_naming_the_field(corner: Corner, activity: str, data: Any, field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        getattr(chain_activities, activity)(corner.clients, data)
    assert caught.value.field == field


def test_a_plan_blob_that_is_not_a_plan_is_refused(corner: Corner) -> None:
    clients = corner.clients
    name = f"{corner.blob['blobName']}.plan/run-x/000000-00000.json"
    clients.blob.create_container(clients.backup_container(corner.container))
    clients.blob.put_block_blob(clients.backup_blob(corner.container, name), b"<not json>")
    data = {**corner.blob, "leaseId": str(uuid.uuid4()), "planBlob": name, "grant": {}, "writesPerBlob": 1}
    with pytest.raises(InvalidInputError, match="not a JSON plan document"):
        chain_activities.apply_batch(clients, data)
    clients.blob.put_block_blob(
        clients.backup_blob(corner.container, name), json.dumps({"writes": [[0, 5]]}).encode()
    )
    with pytest.raises(InvalidInputError):
        chain_activities.apply_batch(clients, data)


# -- the pacer ---------------------------------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_the_pacer_keeps_bytes_and_requests_under_their_rates() -> None:
    fake = FakeTime()
    pacer = WritePacer(bytes_per_second=8 * MiB, requests_per_second=4, clock=fake.clock, sleep=fake.sleep)
    for _ in range(4):
        pacer.wait(4 * MiB)  # bytes bind: 4 MiB a request at 8 MiB/s is one every half second
    assert fake.slept == [0.5, 0.5, 0.5]
    fake.slept.clear()
    for _ in range(3):
        pacer.wait(0)  # clears move no bytes: the request rate binds, a quarter second each
    assert fake.slept == [0.5, 0.25, 0.25]  # (the first waits out the last write's half second)
    # Idle time is not saved up: after a pause the next write goes at once, the one after it waits.
    fake.now += 60
    fake.slept.clear()
    pacer.wait(4 * MiB)
    pacer.wait(4 * MiB)
    assert fake.slept == [0.5]
