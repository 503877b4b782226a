"""``make dev``: the proving ground in the foreground, described in ``.dev/env``, until Ctrl-C.

Starts Azurite and the compute emulator on free loopback ports, seeds a few example disks, and writes
``.dev/env`` (``KEY=VALUE`` lines): the app settings that point diskbackup at the proving ground, plus
``DEV_*`` lines for people and scripts (ARM endpoint and token, subscription, resource group, Azurite's
connection string, the control surface). Ctrl-C (or SIGTERM) stops everything it started and removes the
file, so a stale one never points at dead ports.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from testbed.proving_ground import ProvingGround

DEV_DIR = Path(".dev")


def proving_ground_settings(ground: ProvingGround, ca_bundle: Path | str, **overrides: str) -> dict[str, str]:
    """The app settings that point diskbackup at a running proving ground.

    Polls are short (1 s doubling to 5 s) because the emulator finishes operations in a few polls; the
    configured selection is the proving ground's resource group. ``overrides`` replace any of them.
    """
    settings = {
        "BACKUP_SUBSCRIPTION_ID": ground.subscription_id,
        "BACKUP_ARM_ENDPOINT": ground.arm_endpoint,
        "BACKUP_ARM_TOKEN": ground.arm_token,
        "BACKUP_ARM_CA_BUNDLE": str(ca_bundle),
        "BACKUP_STORAGE_ACCOUNT": ground.backup_account,
        "BACKUP_STORAGE_KEY": ground.backup_account_key,
        "BACKUP_BLOB_ENDPOINT": ground.backup_blob_endpoint,
        "BACKUP_TABLE_ENDPOINT": ground.backup_table_endpoint,
        "BACKUP_SELECT_RESOURCE_GROUP": ground.resource_group,
        "BACKUP_POLL_INITIAL_SECONDS": "1",
        "BACKUP_POLL_MAX_SECONDS": "5",
        "AzureWebJobsStorage": ground.azurite.connection_string(ground.backup_account),
    }
    settings.update(overrides)
    return settings


def dev_env(ground: ProvingGround, ca_bundle: Path) -> dict[str, str]:
    """Everything ``.dev/env`` holds: the app settings and the ``DEV_*`` descriptions."""
    env = proving_ground_settings(ground, ca_bundle)
    env.update(
        DEV_ARM_ENDPOINT=ground.arm_endpoint,
        DEV_ARM_TOKEN=ground.arm_token,
        DEV_ARM_CA_BUNDLE=str(ca_bundle),
        DEV_SUBSCRIPTION_ID=ground.subscription_id,
        DEV_RESOURCE_GROUP=ground.resource_group,
        DEV_STORAGE_CONNECTION_STRING=ground.azurite.connection_string(ground.backup_account),
        DEV_CONTROL_URL=ground.control_url,
    )
    return env


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """Write ``KEY=VALUE`` lines (values single-quoted for shells when they hold ``;`` or spaces)."""
    lines = []
    for key, value in env.items():
        if any(c in value for c in " ;\"'$`\\&|<>"):
            value = "'" + value.replace("'", "'\\''") + "'"
        lines.append(f"{key}={value}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # it holds the dev account key and the emulator's token


def main(argv: list[str] | None = None) -> int:
    """Run the proving ground until interrupted."""
    parser = argparse.ArgumentParser(prog="make dev", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=DEV_DIR, help="where to write env (default .dev)")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    args.dir.mkdir(parents=True, exist_ok=True)
    env_file = args.dir / "env"
    with ProvingGround() as ground:
        ca_bundle = args.dir / "arm-ca.pem"
        shutil.copyfile(ground.arm_ca_cert, ca_bundle)
        disks = ground.seed_example_disks()
        write_env_file(env_file, dev_env(ground, ca_bundle.resolve()))
        print(f"proving ground running; settings in {env_file}")
        print(f"  ARM (compute emulator): {ground.arm_endpoint}   control surface: {ground.control_url}")
        print(f"  blob: {ground.backup_blob_endpoint}   table: {ground.backup_table_endpoint}")
        print(f"  example disks in {ground.resource_group}: " + ", ".join(d["name"] for d in disks))
        print("  in another shell:  set -a; . .dev/env; set +a; .venv/bin/diskbackup run")
        print("Ctrl-C stops everything.", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            # A second Ctrl-C must not cut the shutdown short and orphan Azurite.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            env_file.unlink(missing_ok=True)
            print("\nstopping...", flush=True)
    print("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
