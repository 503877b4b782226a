"""A thousand small disks through the real orchestrators on the virtual clock, and one hour-long copy.

1. **A thousand disks.** 1,000 disks of 1 MiB in one resource group of the proving ground (Azurite, its
   data in memory; the data-plane front and the compute emulator, in a process of their own, with their
   default pacing: operations take two polls, copies three), backed up by one run with 16 lanes
   through the CLI's own local Durable host (``backup.local.runner.open_host``: the real function app,
   a state folder) on a virtual clock, so timers cost nothing and the wall time is the work: replays,
   activities, HTTP, the emulator. It prints the wall time from start to the run's end, activity
   executions, replays and history events per disk (all a disk's instances: its orchestration and its
   waits), the run's and the lanes' histories, checks a sample of the backups byte for byte, and where
   the time went: CPU seconds by thread role of this process, of the emulator's process and of
   Azurite, and how busy the machine was (other processes' CPU time, which the wall time depends on).
2. **An hour-long copy.** Two disks whose copies stay pending for an hour of virtual time (the data
   plane's time pacing on the host's clock), polled as the product polls by default (5 s doubling to
   60 s): the history events each disk holds at the end, and its polls.

Ends with ``bench: 1000 disks in S s; one-hour copy: H history events, P polls per disk`` (H and P the
most of the two disks). ``SCALE_DISKS=200 python -m bench scale`` runs fewer disks, for a quick look.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import requests

from backup.clients import build_clients
from backup.local.durable_host import LocalHost, VirtualClock
from backup.local.runner import open_host
from backup.settings import Settings
from backup.workflow.models import RUN_ORCHESTRATOR, RunInput, lane_id, sub_orchestration_id
from backup.workflow.run_progress import wait_prefix
from backup.workflow.startup import run_options
from backup.workflow.watch import copy_watch_id, waits_prefix
from bench._profile import ThreadProfile, cpu_seconds, machine_busy_seconds
from testbed.devenv import proving_ground_settings
from testbed.digest import blob_sha256
from testbed.proving_ground import ProvingGround

DISKS = int(os.environ.get("SCALE_DISKS", "1000"))
DISK_SIZE = 1 << 20
LANES = 16
VERIFIED_SAMPLE = 10
START = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


@dataclass
class Figures:
    """What one run cost."""

    disks: int
    wall_seconds: float
    succeeded: int
    failed: int
    activity_executions: int
    replays: int
    per_disk_events: dict[str, int] = field(default_factory=dict)
    per_disk_polls: dict[str, int] = field(default_factory=dict)
    disk_events: dict[str, int] = field(default_factory=dict)  # the disk orchestration's own history
    run_events: int = 0
    lane_events: int = 0
    verified: int = 0


def main() -> None:
    """Run both scenarios, each on a proving ground of its own, and print their figures."""
    # The front and the compute emulator in a process of their own: in this one they would share the
    # interpreter lock with the host and the activities, and the run would use one core of two. Azurite
    # keeps its data in memory: it dies with the run, and writing it to files cost Azurite a tenth more.
    with ProvingGround(emulator_process=True, azurite_in_memory=True) as ground:
        assert ground.process is not None
        started = time.perf_counter()
        _seed(ground, "rg-scale", DISKS)
        print(f"scale: {DISKS} disks of {DISK_SIZE >> 20} MiB made in {time.perf_counter() - started:.1f} s")
        profile = ThreadProfile()
        others = {
            "emulator's process: ARM and the data-plane front": ground.process.pid or 0,
            "Azurite (node, its own process)": ground.azurite.pid or 0,
        }
        before = {name: cpu_seconds(pid) or 0.0 for name, pid in others.items()}
        busy_before, load_before = machine_busy_seconds(), os.getloadavg()[0]
        thousand = _run(ground, "rg-scale", "scale", profile=profile)
        busy_after, load_after = machine_busy_seconds(), os.getloadavg()[0]
        spent = {name: (cpu_seconds(pid) or before[name]) - before[name] for name, pid in others.items()}
    print(
        f"scale: {thousand.succeeded} of {thousand.disks} disks backed up "
        f"({thousand.failed} failed) in {thousand.wall_seconds:.1f} s wall, {LANES} lanes, virtual clock"
    )
    events = list(thousand.per_disk_events.values())
    print(
        f"scale: per disk {thousand.activity_executions / DISKS:.1f} activity executions, "
        f"{thousand.replays / DISKS:.1f} replays, {sum(events) / len(events):.1f} history events "
        f"(most {max(events)}); the run's history {thousand.run_events} events, a lane's at most "
        f"{thousand.lane_events}"
    )
    print(f"scale: {thousand.verified} backups, spread over the run, match their disks byte for byte")
    for line in profile.summary(spent):
        print(line)
    if busy_before is not None and busy_after is not None:
        # The wall time depends on what else the machine runs: say how much of it this run had.
        cores = os.cpu_count() or 1
        ours = profile.process_cpu + sum(spent.values())
        busy = busy_after - busy_before
        print(
            f"machine: {cores} cores, busy {busy:.1f} of {cores * thousand.wall_seconds:.1f} CPU seconds "
            f"during the run: this run {ours:.1f} s, other processes {max(0.0, busy - ours):.1f} s; "
            f"load average {load_before:.1f} -> {load_after:.1f}"
        )

    # The hour-long copy is paced by the host's virtual clock, which the data plane reads in-process.
    with ProvingGround() as ground:
        _seed(ground, "rg-hour", 2)
        ground.control("PATCH", "/config", {"copy_pending_seconds": 3600})
        hour = _run(ground, "rg-hour", "hourcopy", poll=("5", "60"), paced=True)
    most_events = max(hour.per_disk_events.values())
    most_polls = max(hour.per_disk_polls.values())
    print(
        f"scale: one-hour copy ({hour.succeeded} of {hour.disks} backed up; polls 5 s doubling to 60 s): "
        f"{most_polls} polls; history events {most_events} a disk, of which its own orchestration "
        f"{max(hour.disk_events.values())} and its waits the rest"
    )
    print(
        f"bench: {DISKS} disks in {thousand.wall_seconds:.1f} s; one-hour copy: {most_events} history "
        f"events, {most_polls} polls per disk"
    )


def _seed(ground: ProvingGround, group: str, count: int) -> None:
    """``count`` disks of 1 MiB, a tenth written, through the control surface (one kept-alive session)."""
    ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    with requests.Session() as session:
        for index in range(count):
            body = {"size_bytes": DISK_SIZE, "fill": {"seed": index, "fraction": 0.1}}
            answer = session.put(
                f"{ground.control_url}/resourceGroups/{group}/disks/disk{index:04d}",
                json=body,
                verify=str(ground.arm_ca_cert),
                timeout=60,
            )
            answer.raise_for_status()


def _run(
    ground: ProvingGround,
    group: str,
    name: str,
    *,
    poll: tuple[str, str] | None = None,
    paced: bool = False,
    profile: ThreadProfile | None = None,
) -> Figures:
    """Back up every disk of ``group`` in one run; answer what it cost."""
    overrides = {
        "BACKUP_SELECT_RESOURCE_GROUP": group,
        "BACKUP_CONTAINER": name,
        "BACKUP_CATALOG_TABLE": name,
        "BACKUP_MAX_PARALLEL": str(LANES),
    }
    if poll is not None:
        overrides.update(BACKUP_POLL_INITIAL_SECONDS=poll[0], BACKUP_POLL_MAX_SECONDS=poll[1])
    settings = Settings.from_env(proving_ground_settings(ground, ground.arm_ca_cert, **overrides))
    run = RunInput.from_json(
        {
            "trigger": "cli",
            "selection": {"kind": "resourceGroup", "resourceGroup": group},
            "options": run_options(settings).to_json(),
        }
    )
    run_id = f"cli-20261126T010000Z-{name}"
    clock = VirtualClock(START)
    plane = ground.data_plane
    if paced:
        assert plane is not None, "a paced copy needs the data plane in this process"
        real_clock = plane.pacing_clock
        plane.pacing_clock = clock.now
    state_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    try:
        with open_host(settings, state_dir, clock) as host:
            started = time.perf_counter()
            if profile is not None:
                with profile:
                    host.start_new(RUN_ORCHESTRATOR, input=run.to_json(), instance_id=run_id)
                    status = host.wait_for_completion(run_id, timeout=3600)
            else:
                host.start_new(RUN_ORCHESTRATOR, input=run.to_json(), instance_id=run_id)
                status = host.wait_for_completion(run_id, timeout=3600)
            wall = time.perf_counter() - started
            figures = _figures(host, run_id, status.output, wall)
    finally:
        if paced and plane is not None:
            plane.pacing_clock = real_clock
        shutil.rmtree(state_dir, ignore_errors=True)
    if status.runtime_status != "Completed":
        raise SystemExit(f"scale: the run ended {status.runtime_status}: {status.output}")
    figures.verified = _verify_sample(ground, settings, group, status.output)
    return figures


def _figures(host: LocalHost, run_id: str, output: Any, wall: float) -> Figures:
    total = host.counts()
    summary = output if isinstance(output, dict) else {}
    disks = int(summary.get("diskCount", 0))
    figures = Figures(
        disks=disks,
        wall_seconds=wall,
        succeeded=int(summary.get("succeeded", 0)),
        failed=int(summary.get("failed", 0)),
        activity_executions=total.activity_executions,
        replays=total.replays,
        run_events=host.counts(run_id).history_events,
        lane_events=max(
            host.counts(lane_id(run_id, lane)).history_events for lane in range(min(LANES, disks))
        ),
    )
    # Everything a disk holds: its orchestration and its waits (backup.workflow.watch.waits_prefix).
    waits: dict[str, int] = defaultdict(int)
    for instance in host.list_instances(prefix=wait_prefix(run_id)):
        waits[instance.instance_id[: len(waits_prefix(sub_orchestration_id(run_id, 0)))]] += host.counts(
            instance.instance_id
        ).history_events
    for index in range(disks):
        disk = sub_orchestration_id(run_id, index)
        figures.disk_events[disk] = host.counts(disk).history_events
        figures.per_disk_events[disk] = figures.disk_events[disk] + waits[waits_prefix(disk)]
        # Polls: the copy watch counts them in its custom status (its activities include the copy's start).
        watch = host.get_status(copy_watch_id(disk))
        polls = watch.custom_status.get("polls") if watch and isinstance(watch.custom_status, dict) else 0
        figures.per_disk_polls[disk] = int(polls or 0)
    return figures


def _verify_sample(ground: ProvingGround, settings: Settings, group: str, output: Any) -> int:
    """A few backups, spread over the run, compared with their disks byte for byte (SHA-256)."""
    results = [r for r in output.get("disks", []) if r.get("status") == "Succeeded"]
    step = max(1, len(results) // VERIFIED_SAMPLE)
    clients = build_clients(settings)
    prefix = f"{settings.blob_endpoint}/{settings.container}/"
    verified = 0
    for result in results[::step][:VERIFIED_SAMPLE]:
        address = clients.backup_blob(settings.container, unquote(str(result["blobUrl"])[len(prefix) :]))
        digest, size = blob_sha256(clients.blob, address, length=DISK_SIZE)
        expected = ground.control("GET", f"/resourceGroups/{group}/disks/{result['diskName']}/digest")
        if digest != expected["sha256"] or size != DISK_SIZE + 512:
            raise SystemExit(f"scale: the backup of {result['diskName']} differs from the disk")
        verified += 1
    return verified
