"""Alerts: what a webhook is told, when, and that telling it never costs a run or leaks its URL.

The deciding part is pure (tables below). Sending goes to a real loopback HTTP server that answers from a
script (503s, a refusal, silence), and end to end a run through the real orchestrators on the proving
ground tells the webhook about its failed disk, and a run whose webhook is down still ends with its
result and a warning.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backup import alerts
from backup.alerts import AlertError, StaleDisk, build_alert, send_alert, stale_disks, webhook_display
from backup.app.blueprint import build_app
from backup.azure.compute import snapshot_name
from backup.errors import ConfigurationError
from backup.local.durable_host import LocalHost, VirtualClock
from backup.redact import redact
from backup.settings import Settings
from backup.workflow.models import RUN_ORCHESTRATOR, DiskResult, RunSummary, Selection
from backup.workflow.startup import run_input
from testbed.devenv import proving_ground_settings
from testbed.proving_ground import ProvingGround
from tests.scripted_server import Answer, ScriptedServer

NOW = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
SUB = "00000000-0000-0000-0000-0000000000aa"
SECRET_PATH = "/workflows/4f1d2c9e8b7a/triggers/manual/paths/invoke"
SECRET_QUERY = "sp=%2Ftriggers&sv=1.0&sig=Zm9vYmFyYmF6cXV4"


def disk_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/disks/{name}"


def result(name: str, ok: bool = True) -> DiskResult:
    if ok:
        return DiskResult(disk_id(name), name, "Succeeded", "done", blob_url=f"https://a/c/{name}.vhd")
    return DiskResult(disk_id(name), name, "Failed", "copy", reason=f"copy failed: {name} source vanished")


def summary(*disks: DiskResult, status: str | None = None, reason: str | None = None) -> RunSummary:
    failed = sum(1 for d in disks if d.status == "Failed")
    if status is None:
        status = "Succeeded" if not failed else "Failed" if failed == len(disks) else "PartiallySucceeded"
    return RunSummary(
        run_id="nightly-20261129T010000Z",
        trigger="schedule",
        selection=Selection(kind="configured"),
        started_at="2026-11-29T01:00:00.000Z",
        status=status,  # type: ignore[arg-type]
        finished_at="2026-11-29T01:40:00.000Z",
        disk_count=len(disks),
        succeeded=len(disks) - failed,
        failed=failed,
        reason=reason,
        disks=tuple(disks),
    )


# -- deciding (pure) -----------------------------------------------------------------------------------------


def test_a_good_night_says_nothing() -> None:
    assert build_alert(summary(result("a"), result("b")), [], NOW) is None


def test_failed_disks_are_named_with_their_reasons() -> None:
    message = build_alert(summary(result("a"), result("b", ok=False)), [], NOW)
    assert message is not None
    assert message["status"] == "PartiallySucceeded"
    assert (message["failedCount"], message["staleCount"]) == (1, 0)
    assert message["failed"] == [
        {"diskId": disk_id("b"), "diskName": "b", "phase": "copy", "reason": "copy failed: b source vanished"}
    ]
    assert message["text"].splitlines() == [
        "diskbackup: run nightly-20261129T010000Z PartiallySucceeded — 1 of 2 disks failed",
        "- b: copy failed: b source vanished",
    ]
    json.dumps(message)  # what is posted is JSON


def test_a_run_that_found_no_disks_says_why() -> None:
    message = build_alert(summary(status="Failed", reason="catalog unreachable"), [], NOW)
    assert message is not None
    assert message["text"] == "diskbackup: run nightly-20261129T010000Z Failed — catalog unreachable"


def test_a_stale_disk_alerts_even_when_the_run_succeeded() -> None:
    stale = [StaleDisk(disk_id("old"), NOW - timedelta(hours=50)), StaleDisk(disk_id("new"), None)]
    message = build_alert(summary(result("a")), stale, NOW)
    assert message is not None
    assert message["staleCount"] == 2
    assert message["text"].splitlines()[1:] == [
        "- old: last good restore point 50 h ago",
        "- new: never backed up",
    ]
    assert message["stale"][0]["lastGoodAt"] == "2026-11-27T00:00:00Z"


def test_long_lists_are_cut_but_counts_stay_exact() -> None:
    disks = [result(f"d{i:03d}", ok=False) for i in range(45)]
    message = build_alert(summary(*disks), [], NOW)
    assert message is not None
    assert message["failedCount"] == 45 and len(message["failed"]) == alerts.MAX_LISTED
    assert message["text"].splitlines()[-1] == f"- … and {45 - alerts.MAX_LISTED} more"


def test_secrets_in_reasons_do_not_reach_the_message() -> None:
    bad = DiskResult(disk_id("x"), "x", "Failed", "copy", reason="GET https://a/b?sv=1&sig=abcdefgh12345")
    message = build_alert(summary(bad), [], NOW)
    assert message is not None
    assert "abcdefgh12345" not in json.dumps(message)


@pytest.mark.parametrize(
    ("last_good", "hours", "stale"),
    [
        ({}, 36, []),
        ({"a": NOW - timedelta(hours=35)}, 36, []),
        ({"a": NOW - timedelta(hours=36)}, 36, []),  # exactly at the threshold: not yet
        ({"a": NOW - timedelta(hours=36, seconds=1)}, 36, ["a"]),
        ({"a": None}, 36, ["a"]),
        ({"b": NOW - timedelta(days=9), "a": NOW}, 24, ["b"]),
    ],
)
def test_stale_disks(last_good: dict[str, datetime | None], hours: int, stale: list[str]) -> None:
    assert [d.disk_id for d in stale_disks(last_good, NOW, hours)] == stale


def test_a_webhook_is_shown_by_its_host_only() -> None:
    assert webhook_display("https://prod-01.westus.logic.azure.com:443/workflows/x?sig=y") == (
        "https://prod-01.westus.logic.azure.com/…"
    )


# -- the setting ---------------------------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    return {"BACKUP_SUBSCRIPTION_ID": SUB, "BACKUP_STORAGE_ACCOUNT": "backupacct", **extra}


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/services/T0/B0/XXXX",  # plain http off loopback
        "ftp://hooks.example.com/x",
        "https:///no-host",
        "https://user:pw@hooks.example.com/x",
        "https://hooks.example.com/x#frag",
    ],
)
def test_a_webhook_must_be_https(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(_env(BACKUP_ALERT_WEBHOOK=url))
    assert caught.value.setting == "BACKUP_ALERT_WEBHOOK"
    assert "XXXX" not in str(caught.value) and "pw" not in str(caught.value)


def test_a_configured_webhook_is_a_secret_everywhere() -> None:
    url = f"https://prod-01.westus.logic.azure.com{SECRET_PATH}?{SECRET_QUERY}"
    settings = Settings.from_env(_env(BACKUP_ALERT_WEBHOOK=url, BACKUP_ALERT_STALE_HOURS="12"))
    assert settings.alert_stale_hours == 12
    assert SECRET_PATH not in repr(settings)
    assert SECRET_PATH not in redact(f"POST {url} failed")
    assert "4f1d2c9e8b7a" not in redact(f"POST {url} failed")


# -- sending (a real loopback server) ---------------------------------------------------------------------


@pytest.fixture
def no_sleep() -> list[float]:
    return []


def _send(server: ScriptedServer, naps: list[float]) -> int:
    return send_alert(f"{server.url}{SECRET_PATH}?{SECRET_QUERY}", {"text": "hello"}, sleep=naps.append)


def test_a_message_is_posted_as_json(no_sleep: list[float]) -> None:
    with ScriptedServer(Answer(200)) as server:
        assert _send(server, no_sleep) == 1
    (seen,) = server.seen
    assert (seen.method, seen.path) == ("POST", f"{SECRET_PATH}?{SECRET_QUERY}")
    assert seen.headers["Content-Type"] == "application/json"
    assert json.loads(seen.body) == {"text": "hello"}


def test_busy_answers_are_retried_a_few_times(no_sleep: list[float]) -> None:
    with ScriptedServer(Answer(503), Answer(429), Answer(202)) as server:
        assert _send(server, no_sleep) == 3
    assert no_sleep == [1.0, 2.0]


def test_a_refusal_is_not_retried_and_never_shows_the_url(
    no_sleep: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with ScriptedServer(Answer(403, body="forbidden")) as server, pytest.raises(AlertError) as caught:
        _send(server, no_sleep)
    assert len(server.seen) == 1 and no_sleep == []
    assert "HTTP 403" in str(caught.value) and "127.0.0.1/…" in str(caught.value)
    for text in (str(caught.value), caplog.text):
        assert SECRET_PATH not in text and "Zm9vYmFyYmF6cXV4" not in text


def test_a_webhook_that_does_not_answer_fails_after_every_attempt(
    no_sleep: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(AlertError, match="no answer") as caught:
        send_alert(f"http://127.0.0.1:{port}{SECRET_PATH}", {"text": "x"}, sleep=no_sleep.append)
    assert len(no_sleep) == alerts.ATTEMPTS - 1
    for text in (str(caught.value), caplog.text):
        assert SECRET_PATH not in text


# -- end to end: a night with a failed disk ---------------------------------------------------------------


@dataclass
class Night:
    """One test's resource group on the proving ground, and settings pointing at it."""

    ground: ProvingGround
    group: str
    env: dict[str, str]

    def run(
        self, webhook: str, run_id: str, *, at: datetime = NOW, fail: bool = True
    ) -> tuple[dict[str, Any], list[str]]:
        """Back up two disks at ``at`` (the second one's snapshot fails if ``fail``), telling ``webhook``."""
        env = {**self.env, "BACKUP_ALERT_WEBHOOK": webhook, "BACKUP_ALERT_STALE_HOURS": "24"}
        settings = Settings.from_env(env)
        ids = []
        for index, name in enumerate(("good", "bad")):
            body = {"size_bytes": 4 << 20, "fill": {"seed": index, "fraction": 0.1}}
            self.ground.control("PUT", f"/resourceGroups/{self.group}/disks/{name}", body)
            ids.append(self.ground.disk_id(name, self.group))
        if fail:
            fault = {
                "operation": "Snapshots_CreateOrUpdate",
                "action": "Failed",
                "resource_name": snapshot_name(run_id, ids[1]),
            }
            self.ground.control("POST", "/faults", fault)
        with LocalHost(build_app(settings), clock=VirtualClock(at)) as host:
            run = run_input(settings, "cli").to_json()
            host.start_new(RUN_ORCHESTRATOR, input=run, instance_id=run_id)
            status = host.wait_for_completion(run_id, timeout=120)
        assert status.runtime_status == "Completed", status.output
        return status.output, ids


@pytest.fixture
def night(proving_ground: ProvingGround, unique_name: str) -> Night:
    group = f"rg-{unique_name}"
    proving_ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    env = proving_ground_settings(
        proving_ground,
        proving_ground.arm_ca_cert,
        BACKUP_SELECT_RESOURCE_GROUP=group,
        BACKUP_CONTAINER=unique_name,
        BACKUP_CATALOG_TABLE=unique_name,
    )
    return Night(proving_ground, group, env)


@pytest.mark.slow
def test_a_night_with_a_failed_disk_tells_the_webhook(night: Night) -> None:
    with ScriptedServer(Answer(200)) as server:
        output, ids = night.run(server.url + SECRET_PATH, "run-a1")
    assert output["status"] == "PartiallySucceeded" and "warnings" not in output
    (seen,) = server.seen
    message = json.loads(seen.body)
    assert message["runId"] == "run-a1" and message["failedCount"] == 1
    assert [d["diskId"] for d in message["failed"]] == [ids[1]]
    # The failed disk was first attempted just now: not stale yet.
    assert message["staleCount"] == 0


@pytest.mark.slow
def test_a_disk_without_a_good_point_for_longer_than_the_threshold_is_stale(night: Night) -> None:
    with ScriptedServer(Answer(200), Answer(200)) as server:
        good, _ = night.run(server.url, "run-s1", at=NOW - timedelta(days=2), fail=False)
        again, ids = night.run(server.url, "run-s2", at=NOW)  # 'bad' fails tonight
    assert good["status"] == "Succeeded" and again["status"] == "PartiallySucceeded"
    (seen,) = server.seen  # the good night said nothing
    message = json.loads(seen.body)
    assert message["runId"] == "run-s2"
    assert message["stale"] == [{"diskId": ids[1], "lastGoodAt": message["stale"][0]["lastGoodAt"]}]
    last_good = datetime.fromisoformat(message["stale"][0]["lastGoodAt"].replace("Z", "+00:00"))
    assert NOW - timedelta(days=2) < last_good < NOW - timedelta(days=1)


@pytest.mark.slow
def test_a_webhook_that_is_down_costs_the_run_nothing_but_a_warning(
    night: Night, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with ScriptedServer(*[Answer(503)] * alerts.ATTEMPTS) as server:
        output, _ = night.run(server.url + SECRET_PATH, "run-a2")
    assert len(server.seen) == alerts.ATTEMPTS
    assert output["status"] == "PartiallySucceeded" and output["succeeded"] == 1
    (warning,) = output["warnings"]
    assert warning.startswith("alert not sent") and "HTTP 503" in warning
    assert SECRET_PATH not in json.dumps(output) and SECRET_PATH not in caplog.text
