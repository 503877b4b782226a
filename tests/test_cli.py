"""The diskbackup command line against the proving ground (real clock: a short real run)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from backup.local.cli import main, read_env_file
from testbed.devenv import proving_ground_settings, write_env_file
from testbed.proving_ground import ProvingGround

pytestmark = pytest.mark.slow


@pytest.fixture
def cli_env(proving_ground: ProvingGround, unique_name: str) -> dict[str, str]:
    group = f"rg-{unique_name}"
    proving_ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    proving_ground.control(
        "PUT",
        f"/resourceGroups/{group}/disks/cli-disk",
        {"size_bytes": 2 << 20, "fill": {"seed": 9, "fraction": 0.25}, "tags": {"team": "cli"}},
    )
    return proving_ground_settings(
        proving_ground,
        proving_ground.arm_ca_cert,
        BACKUP_SELECT_RESOURCE_GROUP=group,
        BACKUP_CONTAINER=unique_name,
        BACKUP_CATALOG_TABLE=unique_name,
        BACKUP_POLL_MAX_SECONDS="1",
    )


def run_cli(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    out = io.StringIO()
    code = main(args, env=env, out=out)
    return code, out.getvalue()


def test_run_then_status_list_and_restore_points(
    cli_env: dict[str, str], tmp_path: Path, proving_ground: ProvingGround
) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    code, text = run_cli([*state, "run", "--tag", "team=cli", "--json"], cli_env)
    assert code == 0, text
    result = json.loads(text)
    assert result["runtimeStatus"] == "Completed"
    run = result["result"]
    assert (run["status"], run["succeeded"], run["diskCount"], run["trigger"]) == ("Succeeded", 1, 1, "cli")
    run_id = run["runId"]

    code, text = run_cli([*state, "status", run_id, "--json"], cli_env)
    assert code == 0
    status = json.loads(text)
    assert status["runtimeStatus"] == "Completed" and [d["phase"] for d in status["disks"]] == ["done"]

    code, text = run_cli([*state, "list", "--json"], cli_env)
    assert code == 0 and [r["runId"] for r in json.loads(text)["runs"]] == [run_id]

    group = cli_env["BACKUP_SELECT_RESOURCE_GROUP"]
    disk = proving_ground.disk_id("cli-disk", group)
    code, text = run_cli([*state, "restore-points", disk, "--json"], cli_env)
    points = json.loads(text)["restorePoints"]
    assert code == 0 and [(p["runId"], p["status"]) for p in points] == [(run_id, "Succeeded")]

    code, text = run_cli([*state, "list"], cli_env)  # the human form names the run
    assert code == 0 and run_id in text and "1/1 disks" in text

    # A second night copies only what changed: run, status and restore-points say so.
    proving_ground.control("POST", f"/resourceGroups/{group}/disks/cli-disk/churn", {"seed": 3})
    code, text = run_cli([*state, "run", "--tag", "team=cli"], cli_env)
    assert code == 0, text
    assert "(incremental, " in text and " MiB moved) -> " in text and "?snapshot=" in text
    code, text = run_cli([*state, "restore-points", disk, "--json"], cli_env)
    second, first = json.loads(text)["restorePoints"]
    assert (first["kind"], second["kind"]) == ("full", "incremental")
    assert first["fullCopyReason"] == "no earlier restore point of this disk"
    assert 0 < second["bytesMoved"] < first["bytesMoved"] and second["blobSnapshot"]
    code, text = run_cli([*state, "status", second["runId"], "--json"], cli_env)
    assert [d["kind"] for d in json.loads(text)["disks"]] == ["incremental"]
    [disk_result] = json.loads(text)["result"]["disks"]
    assert (disk_result["kind"], disk_result["bytesMoved"]) == ("incremental", second["bytesMoved"])
    code, text = run_cli([*state, "restore-points", disk], cli_env)
    lines = text.splitlines()
    assert "incremental" in lines[0] and second["runId"] in lines[0] and "MiB moved" in lines[0]
    assert "full copy: no earlier restore point of this disk" in text


def test_env_file_round_trip_and_bad_input_exits_2(cli_env: dict[str, str], tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    write_env_file(env_file, cli_env)
    assert read_env_file(env_file) == cli_env  # the connection string's ';' survive the quoting

    assert run_cli(["--env-file", str(env_file), "run", "--tag", "no-equals-sign"], {})[0] == 2
    assert run_cli(["--env-file", str(env_file), "restore-points", "/subscriptions/nope"], {})[0] == 2
    assert (
        run_cli(["--env-file", str(env_file), "--state-dir", str(tmp_path), "status", "missing"], {})[0] == 2
    )
    assert run_cli(["list"], {})[0] == 2  # no settings at all: BACKUP_SUBSCRIPTION_ID is required
    (tmp_path / "broken").write_text("this is not a setting\n")
    assert run_cli(["--env-file", str(tmp_path / "broken"), "list"], {})[0] == 2


def test_a_run_with_a_failure_exits_1(
    cli_env: dict[str, str], tmp_path: Path, proving_ground: ProvingGround
) -> None:
    proving_ground.control(
        "POST", "/faults", {"operation": "Snapshots_CreateOrUpdate", "action": "Failed", "count": 1}
    )
    try:
        code, text = run_cli(["--state-dir", str(tmp_path), "run", "--tag", "team=cli"], cli_env)
    finally:
        proving_ground.control("DELETE", "/faults")
    assert code == 1
    assert "FAILED  cli-disk: snapshot:" in text
