"""An interrupted ``diskbackup run`` finished by ``diskbackup resume``, for real.

``diskbackup run`` runs as its own process against the proving ground with slow copies; it is killed
(SIGKILL: no chance to clean up, like a closed laptop) or interrupted (Ctrl-C) while copies are under
way and their snapshots' read access is granted. ``diskbackup resume`` then drives the same run to its
end from the state folder: every disk backed up byte for byte, and every grant the run made revoked (a
resumed run revokes what it granted because its orchestrations carry on from their histories).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backup.azure.blob import BlobClient, ContainerAddress
from backup.azure.storage_auth import SharedKeyAuthorizer, StorageService
from backup.clients import clients_for
from backup.local.cli import main
from backup.local.runner import open_host, read_progress, unfinished_runs
from backup.settings import Settings
from testbed.devenv import proving_ground_settings, write_env_file
from testbed.digest import blob_sha256
from testbed.proving_ground import ProvingGround

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DISKS = {"alpha": 3 << 20, "bravo": 2 << 20, "charlie": 4 << 20, "delta": 1 << 20}


@pytest.fixture
def slow_copies(proving_ground: ProvingGround) -> Iterator[None]:
    """Copies stay pending for 6 status polls (about 6 s at one poll a second)."""
    before = proving_ground.control("GET", "/config")["copy_pending_polls"]
    proving_ground.control("PATCH", "/config", {"copy_pending_polls": 6})
    try:
        yield
    finally:
        proving_ground.control("PATCH", "/config", {"copy_pending_polls": before})


@pytest.fixture
def bed(proving_ground: ProvingGround, unique_name: str, tmp_path: Path) -> dict[str, Any]:
    group = f"rg-{unique_name}"
    proving_ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    for seed, (name, size) in enumerate(DISKS.items()):
        proving_ground.control(
            "PUT",
            f"/resourceGroups/{group}/disks/{name}",
            {"size_bytes": size, "fill": {"seed": 40 + seed, "fraction": 0.3}},
        )
    env = proving_ground_settings(
        proving_ground,
        proving_ground.arm_ca_cert,
        BACKUP_SELECT_RESOURCE_GROUP=group,
        BACKUP_CONTAINER=unique_name,
        BACKUP_CATALOG_TABLE=unique_name,
        BACKUP_POLL_INITIAL_SECONDS="1",
        BACKUP_POLL_MAX_SECONDS="1",
        BACKUP_MAX_PARALLEL="4",
    )
    env_file = tmp_path / "env"
    write_env_file(env_file, env)
    return {"group": group, "env": env, "env_file": env_file, "state": tmp_path / "state"}


def _start_run(bed: dict[str, Any], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "backup", "--env-file", str(bed["env_file"])]
    command += ["--state-dir", str(bed["state"]), "run", "--json"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BACKUP_")}
    with open(log, "wb") as stream:
        return subprocess.Popen(command, cwd=ROOT, env=environment, stdout=stream, stderr=subprocess.STDOUT)


def _wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _copying(bed: dict[str, Any], at_least: int) -> Callable[[], str | None]:
    """The run id, once at least ``at_least`` of its disks are copying (read from the state folder)."""
    settings = Settings.from_env(bed["env"])

    def check() -> str | None:
        if not bed["state"].is_dir():
            return None
        host = open_host(settings, bed["state"])
        for run_id in unfinished_runs(host):
            progress = read_progress(host, run_id)
            if progress is not None and progress.counts.get("copy", 0) >= at_least:
                return run_id
        return None

    return check


def _grants(ground: ProvingGround, group: str) -> list[str]:
    return [
        g["id"]
        for g in ground.control("GET", "/grants")["resources"]
        if f"/resourcegroups/{group}/" in g["id"].lower()
    ]


def _resume(bed: dict[str, Any], *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["--env-file", str(bed["env_file"]), "--state-dir", str(bed["state"]), "resume", *args],
        env={},
        out=out,
        err=err,
    )
    return code, out.getvalue(), err.getvalue()


def _check_backups(ground: ProvingGround, bed: dict[str, Any], summary: dict[str, Any]) -> None:
    """Every disk backed up byte for byte; no grant left; no snapshot left but each disk's diff base."""
    settings = Settings.from_env(bed["env"])
    key = settings.storage_key or ""
    authorize = SharedKeyAuthorizer(settings.storage_account, key, service=StorageService.BLOB)
    container = ContainerAddress.in_account(settings.blob_endpoint, settings.container, authorize)
    prefix = f"{settings.blob_endpoint}/{settings.container}/"
    assert (summary["status"], summary["succeeded"], summary["diskCount"]) == ("Succeeded", 4, 4)
    for disk in summary["disks"]:
        name, size = disk["diskName"], DISKS[disk["diskName"]]
        digest, blob_size = blob_sha256(
            BlobClient(), container.blob(disk["blobUrl"][len(prefix) :]), length=size
        )
        expected = ground.control("GET", f"/resourceGroups/{bed['group']}/disks/{name}/digest")["sha256"]
        assert (digest, blob_size) == (expected, size + 512), f"{name}: the backup differs from the disk"
    assert _grants(ground, bed["group"]) == []
    kept = clients_for(settings).compute.list_snapshots(settings.subscription_id, bed["group"])
    assert sorted(s.id.lower() for s in kept) == sorted(d["snapshotId"].lower() for d in summary["disks"])


def test_a_killed_run_is_finished_by_resume(
    proving_ground: ProvingGround, bed: dict[str, Any], slow_copies: None, tmp_path: Path
) -> None:
    process = _start_run(bed, tmp_path / "run.log")
    try:
        run_id = _wait_for("two disks copying", _copying(bed, at_least=2))
        granted = _grants(proving_ground, bed["group"])
        assert len(granted) >= 2  # read access is granted while the copies run: the resume must revoke it
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert _grants(proving_ground, bed["group"]) == granted  # nothing cleaned up after a kill

    # What the state folder says now, as `status` reads it: the run is unfinished.
    out = io.StringIO()
    main(
        ["--state-dir", str(bed["state"]), "status", run_id, "--json"],
        env=bed["env"],
        out=out,
        err=io.StringIO(),
    )
    assert json.loads(out.getvalue())["runtimeStatus"] == "Running"

    code, text, err = _resume(bed, "--json")  # no id: every unfinished run of the folder
    assert code == 0, text + err
    documents = json.loads(text)["runs"]
    assert [d["result"]["runId"] for d in documents] == [run_id]
    assert documents[0]["runtimeStatus"] == "Completed"
    _check_backups(proving_ground, bed, documents[0]["result"])
    assert "Traceback" not in err


def test_ctrl_c_names_the_command_that_finishes_the_run(
    proving_ground: ProvingGround, bed: dict[str, Any], slow_copies: None, tmp_path: Path
) -> None:
    log = tmp_path / "run.log"
    process = _start_run(bed, log)
    try:
        run_id = _wait_for("a disk copying", _copying(bed, at_least=1))
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    said = log.read_text()
    finish = f"diskbackup --env-file {bed['env_file']} --state-dir {bed['state']} resume {run_id}"
    assert f"interrupted; the run goes on from where it stopped with: {finish}" in said
    assert json.loads(said[said.index("{") :])["error"]["code"] == "Interrupted"
    assert "Traceback" not in said

    code, text, err = _resume(bed, run_id, "--json")  # the same document as run's
    assert code == 0, text + err
    document = json.loads(text)
    assert document["runtimeStatus"] == "Completed" and document["result"]["runId"] == run_id
    _check_backups(proving_ground, bed, document["result"])
