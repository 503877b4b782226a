"""make dev: the proving ground in the foreground, .dev/env written, everything stopped by Ctrl-C."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from backup.local.cli import read_env_file

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _listening(url: str) -> bool:
    hostport = url.split("//", 1)[1].split("/", 1)[0]
    host, port = hostport.split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def test_make_dev_writes_env_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    folder = tmp_path / "dev"
    process = subprocess.Popen(
        [sys.executable, "-m", "testbed.devenv", "--dir", str(folder)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    env_file = folder / "env"
    try:
        deadline = time.monotonic() + 120
        while not env_file.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert env_file.exists(), process.stdout.read() if process.stdout else ""
        env = read_env_file(env_file)
        assert env_file.stat().st_mode & 0o777 == 0o600
        for key in (
            "BACKUP_SUBSCRIPTION_ID",
            "BACKUP_ARM_ENDPOINT",
            "BACKUP_STORAGE_ACCOUNT",
            "BACKUP_BLOB_ENDPOINT",
            "BACKUP_TABLE_ENDPOINT",
            "DEV_ARM_ENDPOINT",
            "DEV_ARM_TOKEN",
            "DEV_SUBSCRIPTION_ID",
            "DEV_RESOURCE_GROUP",
            "DEV_STORAGE_CONNECTION_STRING",
            "DEV_CONTROL_URL",
        ):
            assert env.get(key), key
        # The token works against the emulator, and the example disks are there.
        disks = requests.get(
            f"{env['DEV_ARM_ENDPOINT']}/subscriptions/{env['DEV_SUBSCRIPTION_ID']}/resourceGroups/"
            f"{env['DEV_RESOURCE_GROUP']}/providers/Microsoft.Compute/disks?api-version=2026-03-02",
            headers={"Authorization": f"Bearer {env['DEV_ARM_TOKEN']}"},
            verify=env["DEV_ARM_CA_BUNDLE"],
            timeout=30,
        )
        assert disks.status_code == 200 and disks.json()["value"]
        endpoints = [env["DEV_ARM_ENDPOINT"], env["BACKUP_BLOB_ENDPOINT"], env["BACKUP_TABLE_ENDPOINT"]]
        assert all(_listening(url) for url in endpoints)
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGINT)  # a second Ctrl-C must not cut the shutdown short
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not env_file.exists()
    assert not any(_listening(url) for url in endpoints)
