"""The diskbackup command line against the proving ground (real clock: a short real run)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from backup.local.cli import main, read_env_file
from backup.local.runner import StateLock, open_host
from backup.settings import Settings
from backup.workflow.models import RUN_ORCHESTRATOR
from backup.workflow.startup import disk_ids_selection, run_input
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
    code, out, _ = run_cli_err(args, env)
    return code, out


def run_cli_err(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of one command."""
    out, err = io.StringIO(), io.StringIO()
    code = main(args, env=env, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


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
    assert status["counts"] == {"waiting": 0, "succeeded": 1, "failed": 0, "total": 1}
    assert status["disks"][0]["result"]["status"] == "Succeeded" and status["nextContinuationToken"] is None
    code, text = run_cli([*state, "status", run_id], cli_env)
    assert code == 0 and "1 disks: 1 succeeded, 0 failed" in text and "ok      cli-disk" in text

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
    [disk_view] = json.loads(text)["disks"]
    assert (disk_view["kind"], disk_view["bytesMoved"]) == ("incremental", second["bytesMoved"])
    assert disk_view["result"]["kind"] == "incremental"
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
    # A missing file, a folder, a file that is not text: exit 2 with one line naming --env-file.
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    for bad in (tmp_path / "missing", tmp_path, tmp_path / "binary"):
        code, out, err = run_cli_err(["--env-file", str(bad), "list", "--json"], {})
        assert code == 2
        assert err.startswith("diskbackup: --env-file: ") and err.count("\n") == 1
        assert json.loads(out)["error"]["code"] == "InvalidInput"


def test_backend_failures_are_one_line_and_a_json_error(cli_env: dict[str, str], tmp_path: Path) -> None:
    # A run whose catalog refuses it (the wrong key: 403, which no retry mends; an unreachable catalog
    # is ridden out for minutes first, as tests/test_fault_suite.py shows on a virtual clock): no
    # traceback anywhere, exit 1.
    wrong_key = base64.b64encode(b"not the account key").decode()
    refused = {**cli_env, "BACKUP_STORAGE_KEY": wrong_key}
    state = ["--state-dir", str(tmp_path)]
    code, out, err = run_cli_err([*state, "run"], refused)
    assert code == 1 and "Traceback" not in out + err
    assert "reason [AccessDenied]: recording the run in the catalog: Table storage answered HTTP 403" in out

    code, out, err = run_cli_err([*state, "run", "--json"], refused)
    result = json.loads(out)["result"]
    assert code == 1 and "Traceback" not in out + err
    assert (result["status"], result["code"], result["disks"]) == ("Failed", "AccessDenied", [])

    # The catalog unreachable (nothing listens on port 1).
    env = {**cli_env, "BACKUP_TABLE_ENDPOINT": "http://127.0.0.1:1/devstoreaccount1"}

    code, out, err = run_cli_err([*state, "list", "--json"], env)
    assert code == 1
    assert json.loads(out) == {
        "error": {
            "code": "BackendUnavailable",
            "message": "could not reach Table storage at 127.0.0.1:1: connection refused",
        }
    }
    assert err == "diskbackup: could not reach Table storage at 127.0.0.1:1: connection refused\n"
    assert "Traceback" in (tmp_path / "diskbackup.log").read_text()  # the details are in the log


def test_files_in_the_state_folder_that_are_not_records_are_named_and_skipped(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "junk.json").write_text("{not json")
    code, out, err = run_cli_err(["--state-dir", str(tmp_path), "run"], cli_env)
    assert code == 0, out + err
    assert err.count(str(tmp_path / "junk.json")) == 1 and "warning:" in err and "Traceback" not in err
    run_id = next(line.split()[1].rstrip(":") for line in out.splitlines() if " — " in line)
    code, out, err = run_cli_err(["--state-dir", str(tmp_path), "status", run_id], cli_env)
    assert code == 0 and "junk.json" in err


def test_run_names_unfinished_runs_and_resume_finishes_them(
    cli_env: dict[str, str], tmp_path: Path, proving_ground: ProvingGround
) -> None:
    # A run left unfinished in the folder: started, then its process gone before it did anything. It
    # backs up another disk than the new run below: runs of one disk have one writer at a time, and
    # starting the host carries the unfinished run on beside the new one.
    settings = Settings.from_env(cli_env)
    group = cli_env["BACKUP_SELECT_RESOURCE_GROUP"]
    proving_ground.control("PUT", f"/resourceGroups/{group}/disks/left-disk", {"size_bytes": 1 << 20})
    left = disk_ids_selection([proving_ground.disk_id("left-disk", group)])
    pending = run_input(settings, "cli", left)
    open_host(settings, tmp_path).start_new(RUN_ORCHESTRATOR, input=pending.to_json(), instance_id="left-1")
    state = ["--state-dir", str(tmp_path)]

    code, out, err = run_cli_err(
        [*state, "run", "--disk", proving_ground.disk_id("cli-disk", group)], cli_env
    )
    assert code == 0, out + err
    assert "1 unfinished run(s)" in err and "left-1" in err and f"--state-dir {tmp_path} resume" in err

    code, out, err = run_cli_err([*state, "resume", "left-1", "--json"], cli_env)
    assert code == 0, out + err
    document = json.loads(out)
    assert document["runtimeStatus"] == "Completed" and document["result"]["status"] == "Succeeded"
    assert document["result"]["runId"] == "left-1"

    code, out, _ = run_cli_err([*state, "resume"], cli_env)
    assert (code, out) == (0, f"no unfinished runs in {tmp_path}\n")
    code, out, _ = run_cli_err([*state, "resume", "--json"], cli_env)
    assert (code, json.loads(out)) == (0, {"runs": []})
    assert run_cli_err([*state, "resume", "no-such-run"], cli_env)[0] == 2


def test_one_process_at_a_time_drives_a_state_folder(cli_env: dict[str, str], tmp_path: Path) -> None:
    with StateLock(tmp_path):
        code, out, err = run_cli_err(["--state-dir", str(tmp_path), "run", "--json"], cli_env)
    assert code == 1
    assert json.loads(out)["error"]["code"] == "StateInUse" and "is in use by diskbackup (pid " in err


def test_a_run_with_a_failure_exits_1(
    cli_env: dict[str, str], tmp_path: Path, proving_ground: ProvingGround
) -> None:
    proving_ground.control(
        "POST", "/faults", {"operation": "Snapshots_CreateOrUpdate", "action": "Failed", "count": 1}
    )
    try:
        code, text = run_cli(["--state-dir", str(tmp_path), "run"], cli_env)
    finally:
        proving_ground.control("DELETE", "/faults")
    assert code == 1
    assert "FAILED  cli-disk: snapshot:" in text
