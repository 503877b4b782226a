"""The incremental chain: a few-GiB disk through 7 nights of churn, bytes moved against bytes changed.

A disk on the proving ground is backed up once (the chain's first night, a full copy), then through 7
nights of the emulator's churn (2% of the disk written, 0.5% trimmed a night), each night a run of the
real orchestrators under the local Durable host (virtual clock). Per night it prints what the chain
moved, what had changed, their ratio, the requests, the wall time, and the history events and activity
executions of the disk's orchestration; then the totals against the full-copy way of today (every night
a Copy Blob of the whole snapshot, which moves every populated byte). Times on Azure are estimated at
the rates the project's facts give (Copy Blob about 40 MB/s across accounts; a page blob takes about
60 MiB/s and 500 requests/s); the wall time is the test bed's. The last night's restore point is read
back and compared with the disk byte for byte.

Ends with ``bench: 7 nights, moved/changed = X.XXx, full-copy/incremental bytes = Y.Yx`` (goal: X at
most 1.05). ``python -m bench incremental``; ``BENCH_DISK_GIB`` sets the disk's size (default 3).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from backup.app.blueprint import build_app
from backup.azure.blob import BlobClient
from backup.clients import build_clients
from backup.local.durable_host import LocalHost, VirtualClock
from backup.local.durable_host.history import EventType
from backup.settings import Settings
from backup.workflow.models import RUN_ORCHESTRATOR, RunInput, sub_orchestration_id
from backup.workflow.startup import run_options
from testbed.devenv import proving_ground_settings
from testbed.digest import blob_sha256
from testbed.proving_ground import ProvingGround

NIGHTS = 7
WRITE_FRACTION = 0.02
TRIM_FRACTION = 0.005
FILL_FRACTION = 0.25
START = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
MiB = 1 << 20
GiB = 1 << 30
#: Copy Blob across accounts, observed (azure-sdk-for-java #2018, Azure/migAz #214): bytes per second.
COPY_BLOB_RATE = 40e6
#: One page blob's targets: bytes and requests per second.
BLOB_RATE, BLOB_REQUESTS = 60 * MiB, 500


@dataclass
class NightFigures:
    """One night of the chain."""

    night: int
    kind: str
    moved: int
    changed: int
    requests: int
    populated: int  # what the full-copy way would move tonight
    wall: float
    events: int
    activities: int

    @property
    def ratio(self) -> float:
        return self.moved / self.changed if self.changed else 1.0

    def azure_seconds(self) -> float:
        """Estimated on Azure: a full copy at Copy Blob's rate, an incremental one at the blob's."""
        if self.kind == "full":
            return self.moved / COPY_BLOB_RATE
        return max(self.moved / BLOB_RATE, self.requests / BLOB_REQUESTS)


def main() -> None:
    """Run the benchmark and print its figures."""
    logging.getLogger("backup").setLevel(logging.WARNING)
    disk_bytes = int(os.environ.get("BENCH_DISK_GIB", "3")) * GiB
    with ProvingGround() as ground:
        group = "rg-bench-incremental"
        ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
        env = proving_ground_settings(
            ground,
            ground.arm_ca_cert,
            BACKUP_SELECT_RESOURCE_GROUP=group,
            BACKUP_CONTAINER="bench-incremental",
            BACKUP_CATALOG_TABLE="benchincremental",
        )
        settings = Settings.from_env(env)
        disk_path = f"/resourceGroups/{group}/disks/data"
        ground.control(
            "PUT", disk_path, {"size_bytes": disk_bytes, "fill": {"seed": 1, "fraction": FILL_FRACTION}}
        )
        print(
            f"disk: {disk_bytes / GiB:.0f} GiB, {_populated(ground, disk_path) / MiB:.0f} MiB populated; "
            f"{NIGHTS} nights of churn ({WRITE_FRACTION:.0%} written, {TRIM_FRACTION:.1%} trimmed a night)",
            flush=True,
        )
        print(
            f"{'night':>5} {'kind':<12} {'moved MiB':>10} {'changed MiB':>12} {'ratio':>6} {'requests':>9} "
            f"{'wall s':>7} {'events':>7} {'activities':>10}",
            flush=True,
        )
        nights: list[NightFigures] = []
        for night in range(NIGHTS + 1):
            if night:
                ground.control(
                    "POST",
                    f"{disk_path}/churn",
                    {"seed": 100 + night, "write_fraction": WRITE_FRACTION, "trim_fraction": TRIM_FRACTION},
                )
            figures, result = _night(settings, ground.disk_id("data", group), night)
            figures.populated = _populated(ground, disk_path)
            nights.append(figures)
            print(
                f"{night:>5} {figures.kind:<12} {figures.moved / MiB:>10.1f} {figures.changed / MiB:>12.1f} "
                f"{figures.ratio:>5.3f}x {figures.requests:>9} {figures.wall:>7.1f} {figures.events:>7} "
                f"{figures.activities:>10}",
                flush=True,
            )
        verified = _verify_last(ground, settings, disk_path, result, disk_bytes)
        _report(nights, verified)


def _night(settings: Settings, disk_id: str, night: int) -> tuple[NightFigures, dict[str, Any]]:
    run_id = f"bench-night-{night}"
    run = RunInput.from_json(
        {
            "trigger": "cli",
            "selection": {"kind": "diskIds", "diskIds": [disk_id]},
            "options": run_options(settings).to_json(),
        }
    )
    started = time.perf_counter()
    with LocalHost(build_app(settings), clock=VirtualClock(START + timedelta(days=night))) as host:
        host.start_new(RUN_ORCHESTRATOR, input=run.to_json(), instance_id=run_id)
        status = host.wait_for_completion(run_id, timeout=3600)
        history = host.history(sub_orchestration_id(run_id, 0))
    wall = time.perf_counter() - started
    [result] = status.output["disks"]
    if result["status"] != "Succeeded":
        raise SystemExit(f"bench: night {night} failed: {result['reason']}")
    point = build_clients(settings).catalog.last_good_point(disk_id)[0]
    assert point is not None and point.run_id == run_id
    scheduled = sum(1 for e in history if e["EventType"] == EventType.TASK_SCHEDULED)
    figures = NightFigures(
        night=night,
        kind=result["kind"],
        moved=result["bytesMoved"],
        changed=result["bytesChanged"],
        requests=point.requests or 0,
        populated=0,
        wall=wall,
        events=len(history),
        activities=scheduled,
    )
    return figures, result


def _populated(ground: ProvingGround, disk_path: str) -> int:
    ranges = ground.control("GET", f"{disk_path}/ranges")["ranges"]
    return sum(end - start + 1 for start, end in ranges)


def _verify_last(
    ground: ProvingGround, settings: Settings, disk_path: str, result: dict[str, Any], disk_bytes: int
) -> bool:
    clients = build_clients(settings)
    prefix = f"{settings.blob_endpoint}/{settings.container}/"
    blob = clients.backup_blob(settings.container, result["blobUrl"][len(prefix) :]).at_snapshot(
        result["blobSnapshot"]
    )
    digest, _ = blob_sha256(BlobClient(), blob, length=disk_bytes)
    return bool(digest == ground.control("GET", f"{disk_path}/digest")["sha256"])


def _report(nights: list[NightFigures], verified: bool) -> None:
    incremental = [n for n in nights if n.night > 0]
    kinds = {n.kind for n in incremental}
    moved = sum(n.moved for n in incremental)
    changed = sum(n.changed for n in incremental)
    full_way = sum(n.populated for n in incremental)
    print()
    print(
        f"nights 1-{NIGHTS}: {', '.join(sorted(kinds))}; the last restore point equals the disk: {verified}"
    )
    requests = sum(n.requests for n in incremental)
    azure = sum(n.azure_seconds() for n in incremental)
    print(
        f"  chain:     {moved / MiB:9.1f} MiB moved ({changed / MiB:.1f} MiB changed), {requests} requests, "
        f"about {azure:.0f} s on Azure, {sum(n.wall for n in incremental):.0f} s here"
    )
    print(
        f"  full copy: {full_way / MiB:9.1f} MiB moved ({NIGHTS} Copy Blobs of every populated byte), "
        f"about {full_way / COPY_BLOB_RATE:.0f} s on Azure"
    )
    with_first = moved + nights[0].moved
    full_with_first = full_way + nights[0].populated
    print(
        f"  with the first night's full copy: {with_first / MiB:.1f} MiB against "
        f"{full_with_first / MiB:.1f} MiB ({full_with_first / with_first:.1f}x)"
    )
    print(
        f"  per disk-night: {sum(n.events for n in incremental) / len(incremental):.0f} history events, "
        f"{sum(n.activities for n in incremental) / len(incremental):.0f} activity executions "
        f"(first night: {nights[0].events} events, {nights[0].activities} activities)"
    )
    print(
        f"bench: {NIGHTS} nights, moved/changed = {moved / changed:.2f}x, "
        f"full-copy/incremental bytes = {full_way / moved:.1f}x",
        flush=True,
    )
