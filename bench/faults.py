"""A bad night: twelve disks under transient faults, ``diskbackup run`` killed mid-run and resumed.

Twelve disks (1-4 MiB) on a proving ground of its own; blob and table storage behind fault proxies that
answer 8 % of requests 503 ServerBusy, reset 4 % of connections and drop 3 % of answers after the server
acted (seeded dice), and ARM answering every operation of the night 429 with
Retry-After, 500 and resets a few times each (:mod:`testbed.fault_night`, whose docstring computes the
odds). ``diskbackup run`` runs as a process with its real clock, is killed with SIGKILL once two disks are
copying, and ``diskbackup resume`` finishes the run.

Ends with ``bench: faults: S of 12 backed up, V verified byte for byte, A SAS active; killed after K s,
resumed in R s; F storage faults in N requests``; exits 1 unless all twelve are backed up and verified
and no SAS is left. ``FAULT_DISKS=4 python -m bench faults`` runs fewer disks.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from testbed.fault_night import killed_and_resumed
from testbed.proving_ground import ProvingGround

DISKS = int(os.environ.get("FAULT_DISKS", "12"))


def main() -> None:
    """Run the night and print its outcome."""
    with ProvingGround() as ground, tempfile.TemporaryDirectory(prefix="bench-faults-") as work:
        outcome = killed_and_resumed(ground, Path(work), name="benchfaults", disks=DISKS, max_parallel=4)
    faults = sum(v for k, v in outcome.storage_faults.items() if k != "requests")
    print(f"faults: storage faults by kind: {outcome.storage_faults}")
    print(
        f"faults: SAS active when killed: {outcome.granted_at_kill}; "
        f"ARM faults not met: {outcome.arm_faults_left}"
    )
    for failure in outcome.failures:
        print(f"faults: FAILED {failure}")
    if outcome.leftover_snapshots:
        print(f"faults: snapshots left over: {outcome.leftover_snapshots}")
    print(
        f"bench: faults: {outcome.succeeded} of {outcome.disks} backed up, {outcome.verified} verified byte "
        f"for byte, {len(outcome.active_sas)} SAS active; killed after {outcome.run_seconds:.1f} s, resumed "
        f"in {outcome.resume_seconds:.1f} s; {faults} storage faults in {outcome.storage_faults['requests']} "
        "requests"
    )
    if not outcome.ok:
        sys.exit(1)
