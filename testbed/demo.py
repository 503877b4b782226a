"""``make demo``: a real nightly backup of three disks on the proving ground, checked byte for byte.

1. Starts the proving ground: Azurite, the managed-disk data plane, the compute emulator.
2. Creates three sparse disks of different sizes with content, tagged ``diskbackup=enabled``.
3. Fires the Function App's own timer function once, under the local Durable host with the real clock:
   the nightly run goes through the real orchestrators and activities, over real HTTP.
4. Checks every backup blob against its disk, byte for byte (SHA-256 of the whole content, holes as
   zeros: the blob's first disk-size bytes against the disk's), and the VHD footer after them.
5. Writes the run's HTML report (``.diskbackup/reports/<run id>.html``, the place ``diskbackup run``
   leaves its reports) and names it.
6. Prints a summary ending ``demo: N/3 disks backed up, M verified byte-for-byte`` and stops everything.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from azure.functions.timer import TimerRequest

from backup.azure.blob import BlobClient
from backup.clients import clients_for
from backup.local.progress import ProgressView, mib, summary_lines
from backup.local.reports import default_report_path, write_run_report
from backup.local.runner import follow, open_host
from backup.settings import Settings
from backup.workflow.models import RUN_ORCHESTRATOR
from testbed.devenv import proving_ground_settings
from testbed.digest import blob_sha256
from testbed.proving_ground import ProvingGround

RESOURCE_GROUP = "rg-demo"
#: Where the run's report is left (the command line's default state folder), to open after the demo.
REPORTS_STATE_DIR = Path(".diskbackup")
#: name, size, populated fraction, content seed
DISKS: tuple[tuple[str, int, float, int], ...] = (
    ("app-os", 256 << 20, 0.10, 101),
    ("app-data", 512 << 20, 0.05, 102),
    ("db-log", 1 << 30, 0.02, 103),
)


@dataclass(frozen=True)
class Check:
    """One disk's byte-for-byte check."""

    name: str
    backed_up: bool
    verified: bool
    detail: str


def main() -> int:
    """Run the demo; 0 when every disk was backed up and verified."""
    started = time.monotonic()
    state_dir = Path(tempfile.mkdtemp(prefix="diskbackup-demo-"))
    print("demo: starting the proving ground (Azurite, data plane, compute emulator)...", flush=True)
    try:
        with ProvingGround(resource_group=RESOURCE_GROUP) as ground:
            for name, size, fraction, seed in DISKS:
                ground.control(
                    "PUT",
                    f"/resourceGroups/{RESOURCE_GROUP}/disks/{name}",
                    {
                        "size_bytes": size,
                        "fill": {"seed": seed, "fraction": fraction},
                        "tags": {"diskbackup": "enabled"},
                    },
                )
                print(f"demo: disk {name}: {mib(size)}, {fraction:.0%} populated", flush=True)
            settings = Settings.from_env(
                proving_ground_settings(
                    ground,
                    ground.arm_ca_cert,
                    BACKUP_SELECT_RESOURCE_GROUP="",
                    BACKUP_SELECT_TAG="diskbackup=enabled",
                    BACKUP_POLL_MAX_SECONDS="2",
                )
            )
            checks, report = _backup_and_verify(ground, settings, state_dir)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    backed_up = sum(c.backed_up for c in checks)
    verified = sum(c.verified for c in checks)
    print()
    for check in checks:
        print(f"  {check.name:<10} {'verified' if check.verified else 'NOT verified':<13} {check.detail}")
    if report is not None:
        print(f"demo: the run's report: {report}")
    print(f"demo: done in {time.monotonic() - started:.0f} s; everything it started is stopped")
    print(f"demo: {backed_up}/{len(DISKS)} disks backed up, {verified} verified byte-for-byte")
    return 0 if verified == len(DISKS) else 1


def _backup_and_verify(
    ground: ProvingGround, settings: Settings, state_dir: Path
) -> tuple[list[Check], Path | None]:
    with open_host(settings, state_dir) as host:
        print("demo: firing the nightly timer...", flush=True)
        host.invoke_function("nightly_backup", timer=TimerRequest(past_due=False))
        runs = [i.instance_id for i in host.list_instances() if i.name == RUN_ORCHESTRATOR]
        if len(runs) != 1:
            raise SystemExit(f"demo: expected one nightly run, found {runs}")
        progress = follow(host, runs[0], on_progress=ProgressView(sys.stdout, tty=sys.stdout.isatty()))
    for line in summary_lines(progress.output):
        print(line)
    output = progress.output if isinstance(progress.output, dict) else {}
    results = {d.get("diskName"): d for d in output.get("disks", [])}
    blob = BlobClient()
    container = clients_for(settings).container
    checks = []
    for name, size, _, _ in DISKS:
        result = results.get(name)
        if not result or result.get("status") != "Succeeded":
            checks.append(Check(name, False, False, (result or {}).get("reason") or "not backed up"))
            continue
        prefix = f"{container.url}/"
        blob_name = unquote(str(result["blobUrl"])[len(prefix) :])
        # The restore point is the backup blob at its blob snapshot.
        point = container.blob(blob_name).at_snapshot(result.get("blobSnapshot"))
        digest, blob_size = blob_sha256(blob, point, length=size)
        expected = ground.control("GET", f"/resourceGroups/{RESOURCE_GROUP}/disks/{name}/digest")["sha256"]
        same = digest == expected and blob_size == size + 512
        detail = f"sha256 {digest[:16]}... {'==' if digest == expected else '!='} disk's {expected[:16]}..."
        checks.append(Check(name, True, same, detail))
    summary = progress.summary
    report = None
    if summary is not None:
        report, _ = write_run_report(
            clients_for(settings).catalog, summary, default_report_path(REPORTS_STATE_DIR, summary.run_id)
        )
    return checks, report


if __name__ == "__main__":
    sys.exit(main())
