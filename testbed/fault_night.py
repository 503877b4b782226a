"""A bad night, end to end: ``diskbackup run`` under transient faults, killed mid-run, finished by ``resume``.

The disks live on the proving ground; the app reaches blob and table storage through two fault proxies
(:mod:`testbed.fault_proxy`) that answer some requests ``503 ServerBusy``, reset some connections and
drop some answers after the server acted (by default 8 %, 4 % and 3 % of all requests, from seeded
dice), and ARM answers some calls of every operation the night makes 429 (with ``Retry-After``), 500,
or resets them (counted faults, through the compute emulator's control surface). ``diskbackup run`` runs
as its own process (the command line, its real clock and transport); once some copies are under way it
is killed with SIGKILL, as a closed laptop would stop it, and ``diskbackup resume`` (in this process)
drives the run to its end from the state folder.

:func:`killed_and_resumed` answers what came of it (:class:`Outcome`): how many disks were backed up,
whether each restore point is its disk byte for byte, the SAS still active, the snapshots left over, and
what the faults and the night cost. ``bench/faults.py`` runs twelve disks; a test runs fewer.

Why the plan cannot beat the retries by chance (the odds, for the default rates): a request meets a fault
with p = 0.15. A request the transport may repeat (reads, puts of pages, leases, metadata, table
upserts) fails only after five faults in a row: 0.15^5 = 7.6e-5, and its activity is then called again.
A request it may not repeat (Copy Blob, a blob snapshot, a page blob's creation: three per disk-night)
fails its activity with p = 0.15, and the orchestrator calls the activity again up to six times in all
(each safe to repeat: it finds what an earlier attempt did): 0.15^6 = 1.1e-5 per request, so with twelve
disks about 36 x 1.1e-5 = 4e-4 that a disk is lost to the dice; a watch polls through five failed polls
in a row. The ARM faults are counted, fewer in a row than the transport and the orchestrator ride out.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backup.azure.blob import BlobClient
from backup.clients import build_clients
from backup.local.cli import main as cli
from backup.local.runner import open_host, read_progress, unfinished_runs
from backup.settings import Settings
from backup.workflow.chain import chain_blob_name
from testbed.devenv import proving_ground_settings, write_env_file
from testbed.digest import blob_sha256
from testbed.fault_proxy import FaultPlan, FaultProxy
from testbed.proving_ground import ProvingGround

__all__ = ["ARM_FAULTS", "Outcome", "killed_and_resumed"]

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
#: The ARM operations a first night makes, and the transient faults each meets.
ARM_FAULTS: tuple[dict[str, Any], ...] = tuple(
    fault
    for operation in (
        "Disks_ListByResourceGroup",
        "Snapshots_CreateOrUpdate",
        "DiskOperations_Get",
        "Snapshots_Get",
        "Snapshots_GrantAccess",
        "Snapshots_RevokeAccess",
        "Snapshots_Update",
    )
    for fault in (
        {"operation": operation, "action": "429", "count": 2, "retry_after": 1},
        {"operation": operation, "action": "500", "count": 2},
        {"operation": operation, "action": "reset", "count": 2},
    )
)


@dataclass
class Outcome:
    """What a killed and resumed night came to."""

    disks: int
    succeeded: int = 0
    verified: int = 0  # restore points equal to their disk, byte for byte
    active_sas: list[str] = field(default_factory=list)
    granted_at_kill: int = 0
    leftover_snapshots: list[str] = field(default_factory=list)
    run_seconds: float = 0.0  # from starting ``run`` to killing it
    resume_seconds: float = 0.0
    storage_faults: dict[str, int] = field(default_factory=dict)
    arm_faults_left: int = 0
    failures: list[str] = field(default_factory=list)  # a disk's reason, if any failed

    @property
    def ok(self) -> bool:
        """Every disk backed up and verified, no SAS active, nothing left over."""
        done = self.succeeded == self.verified == self.disks
        return done and not self.active_sas and not self.leftover_snapshots


def killed_and_resumed(
    ground: ProvingGround,
    work: Path,
    *,
    name: str,
    disks: int = 12,
    max_parallel: int = 4,
    seed: int = 2026,
    rates: tuple[float, float, float] = (0.08, 0.04, 0.03),
    kill_when_copying: int = 2,
    copy_polls: int = 6,
    arm_faults: Sequence[dict[str, Any]] = ARM_FAULTS,
) -> Outcome:
    """Back up ``disks`` disks (resource group ``rg-{name}``, container and catalog ``name``) under the
    faults of the module docstring (``rates`` of busy, reset and lost; ``arm_faults`` for the control
    surface), kill ``diskbackup run`` once ``kill_when_copying`` disks are copying, finish with
    ``diskbackup resume``; answer the :class:`Outcome`. ``work`` holds the env file, the
    state folder and the run's output; the caller removes the group's disks and snapshots."""
    group = f"rg-{name}"
    ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    sizes = {}
    for index in range(disks):
        disk = f"disk-{index:02d}"
        size = (1 + index % 4) * MiB
        ground.control(
            "PUT",
            f"/resourceGroups/{group}/disks/{disk}",
            {"size_bytes": size, "fill": {"seed": seed + index, "fraction": 0.3}},
        )
        sizes[disk] = size
    digests = {
        disk: ground.control("GET", f"/resourceGroups/{group}/disks/{disk}/digest")["sha256"]
        for disk in sizes
    }
    busy, reset, lost = rates
    outcome = Outcome(disks)
    with (
        FaultProxy(
            ground.backup_blob_endpoint, FaultPlan(busy=busy, reset=reset, lost=lost, seed=seed)
        ) as blob,
        FaultProxy(
            ground.backup_table_endpoint, FaultPlan(busy=busy, reset=reset, lost=lost, seed=seed + 1)
        ) as table,
        _slow_copies(ground, copy_polls),
    ):
        direct_env = proving_ground_settings(
            ground,
            ground.arm_ca_cert,
            BACKUP_SELECT_RESOURCE_GROUP=group,
            BACKUP_CONTAINER=name,
            BACKUP_CATALOG_TABLE=name,
            BACKUP_POLL_INITIAL_SECONDS="1",
            BACKUP_POLL_MAX_SECONDS="1",
            BACKUP_MAX_PARALLEL=str(max_parallel),
            BACKUP_VERIFY_SAMPLE_MIB="1",
        )
        env = {**direct_env, "BACKUP_BLOB_ENDPOINT": blob.url, "BACKUP_TABLE_ENDPOINT": table.url}
        env_file, state = work / "env", work / "state"
        write_env_file(env_file, env)
        for fault in arm_faults:
            ground.control("POST", "/faults", fault)
        started = time.monotonic()
        process = _run(env_file, state, work / "run.log")
        try:
            run_id = _wait_for_copies(Settings.from_env(env), state, kill_when_copying, process)
            outcome.granted_at_kill = len(_grants(ground, group))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        outcome.run_seconds = time.monotonic() - started
        started = time.monotonic()
        out, err = io.StringIO(), io.StringIO()
        code = cli(
            ["--env-file", str(env_file), "--state-dir", str(state), "resume", run_id, "--json"],
            env={},
            out=out,
            err=err,
        )
        outcome.resume_seconds = time.monotonic() - started
        outcome.storage_faults = {
            f"blob {k}": v for k, v in blob.stats.items() if k not in ("requests", "forwarded")
        } | {f"table {k}": v for k, v in table.stats.items() if k not in ("requests", "forwarded")}
        outcome.storage_faults["requests"] = blob.stats["requests"] + table.stats["requests"]
    outcome.arm_faults_left = len(ground.control("GET", "/faults")["faults"])
    ground.control("DELETE", "/faults")
    if code not in (0, 1):
        raise RuntimeError(f"diskbackup resume exited {code}: {err.getvalue()[-2000:]}")
    summary = json.loads(out.getvalue())["result"]
    _check(ground, Settings.from_env(direct_env), group, summary, sizes, digests, outcome)
    return outcome


def _check(
    ground: ProvingGround,
    settings: Settings,
    group: str,
    summary: dict[str, Any],
    sizes: dict[str, int],
    digests: dict[str, str],
    outcome: Outcome,
) -> None:
    """Fill in the outcome: disks backed up, restore points equal to their disks, SAS and snapshots left."""
    clients = build_clients(settings)
    blob = BlobClient()
    good_snapshots = set()
    for result in summary["disks"]:
        if result["status"] != "Succeeded":
            outcome.failures.append(f"{result['diskName']}: {result.get('code')}: {result.get('reason')}")
            continue
        outcome.succeeded += 1
        good_snapshots.add(result["snapshotId"].lower())
        name = result["diskName"]
        address = clients.backup_blob(
            settings.container, chain_blob_name(settings.subscription_id, group, name)
        )
        digest, _ = blob_sha256(blob, address.at_snapshot(result["blobSnapshot"]), length=sizes[name])
        if digest == digests[name]:
            outcome.verified += 1
    outcome.active_sas = _grants(ground, group)
    snapshots = clients.compute.list_snapshots(settings.subscription_id, group)
    outcome.leftover_snapshots = sorted(s.id for s in snapshots if s.id.lower() not in good_snapshots)


def _run(env_file: Path, state: Path, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "backup", "--env-file", str(env_file), "--state-dir", str(state)]
    command += ["run", "--json"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BACKUP_")}
    with open(log, "wb") as stream:
        return subprocess.Popen(command, cwd=ROOT, env=environment, stdout=stream, stderr=subprocess.STDOUT)


def _wait_for_copies(
    settings: Settings, state: Path, at_least: int, process: subprocess.Popen[bytes], timeout: float = 240.0
) -> str:
    """The run's id, once at least ``at_least`` of its disks are copying (read from the state folder)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"diskbackup run ended (exit {process.returncode}) before it could be killed")
        if state.is_dir():
            host = open_host(settings, state)
            for run_id in unfinished_runs(host):
                progress = read_progress(host, run_id)
                if progress is not None and progress.counts.get("copy", 0) >= at_least:
                    return run_id
        time.sleep(0.2)
    raise TimeoutError(f"no {at_least} disks were copying within {timeout:.0f} s")


def _grants(ground: ProvingGround, group: str) -> list[str]:
    return [
        g["id"]
        for g in ground.control("GET", "/grants")["resources"]
        if f"/resourcegroups/{group.lower()}/" in g["id"].lower()
    ]


@contextmanager
def _slow_copies(ground: ProvingGround, polls: int) -> Iterator[None]:
    """Copies stay pending for ``polls`` status polls (so some are under way when the run is killed)."""
    before = ground.control("GET", "/config")["copy_pending_polls"]
    ground.control("PATCH", "/config", {"copy_pending_polls": polls})
    try:
        yield
    finally:
        ground.control("PATCH", "/config", {"copy_pending_polls": before})
