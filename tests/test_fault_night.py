"""The night of issue 10, smaller: ``diskbackup run`` under transient faults on every endpoint, killed
with SIGKILL while copies are under way, finished by ``diskbackup resume``: every disk backed up, byte
for byte, and no SAS left active.

The full night (twelve disks, every ARM operation faulted several times) is ``bench/faults.py``, about two
minutes with the command line's real clock; here three disks and one ARM fault of each kind on the
operations a night repeats most, with the same storage fault rates (8 % busy, 4 % reset, 3 % lost).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cleanup import remove_group_contents

from backup.clients import build_clients
from backup.settings import Settings
from testbed.devenv import proving_ground_settings
from testbed.fault_night import killed_and_resumed
from testbed.proving_ground import ProvingGround

pytestmark = pytest.mark.slow

ARM_FAULTS = [
    {"operation": operation, "action": action, "count": 1, "retry_after": 1}
    for operation in ("Snapshots_CreateOrUpdate", "DiskOperations_Get", "Snapshots_GrantAccess")
    for action in ("429", "500", "reset")
]


def test_a_night_of_transient_faults_killed_and_resumed_backs_up_every_disk(
    proving_ground: ProvingGround, unique_name: str, tmp_path: Path
) -> None:
    try:
        outcome = killed_and_resumed(
            proving_ground,
            tmp_path,
            name=unique_name,
            disks=3,
            max_parallel=3,
            seed=7,
            arm_faults=ARM_FAULTS,
            copy_polls=4,
        )
    finally:
        settings = Settings.from_env(proving_ground_settings(proving_ground, proving_ground.arm_ca_cert))
        remove_group_contents(build_clients(settings), settings.subscription_id, f"rg-{unique_name}")
    assert outcome.granted_at_kill >= 2  # killed while copies read through their SAS
    assert outcome.failures == []
    assert (outcome.succeeded, outcome.verified) == (3, 3)
    assert outcome.active_sas == [] and outcome.leftover_snapshots == []
    assert outcome.arm_faults_left == 0
    faults = sum(count for kind, count in outcome.storage_faults.items() if kind != "requests")
    assert faults > 0, "the dice made no storage fault: the test proves nothing"
