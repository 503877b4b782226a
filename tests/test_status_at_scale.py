"""A run's status at scale: counts by phase and pages of disks, from a bounded number of Durable calls.

A run of 60 disks (6 lanes) through the real app, the local host's webhook and the proving ground. Its
status is read through the real HTTP route (the SDK's client against the webhook), mid-run and after
it, in pages of a few disks; every Durable HTTP call the route makes is counted, and ``diskbackup
status`` pages the same run from the host's state folder.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
import pytest

from backup.app.blueprint import build_app
from backup.local.cli import main
from backup.local.durable_host import LocalHost, VirtualClock
from backup.local.durable_host import webhook as webhook_module
from backup.settings import Settings
from backup.workflow.run_progress import wrap_token
from testbed.devenv import proving_ground_settings
from testbed.proving_ground import ProvingGround

pytestmark = pytest.mark.slow

DISKS = 60
LANES = 6
START = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


class Bed:
    """The app on a host whose virtual clock moves only when told, and a count of its webhook calls."""

    def __init__(self, host: LocalHost, clock: VirtualClock, env: dict[str, str], state: Path) -> None:
        self.host, self.clock, self.env, self.state = host, clock, env, state
        self.durable_calls: list[str] = []

    def get(self, run_id: str, query: str = "") -> tuple[int, dict[str, Any], int]:
        """``GET /api/backups/{run_id}?query``: status code, body, and the Durable calls it made."""
        url = f"http://localhost/api/backups/{run_id}" + (f"?{query}" if query else "")
        request = func.HttpRequest(
            method="GET",
            url=url,
            body=b"",
            params=dict(parse_qsl(urlsplit(url).query)),
            route_params={"instanceId": run_id},
        )
        before = len(self.durable_calls)
        response = self.host.invoke_function("get_backup", req=request)
        return response.status_code, json.loads(response.get_body()), len(self.durable_calls) - before

    def pages(self, run_id: str, top: int) -> list[list[dict[str, Any]]]:
        """Every page of the run's disks, following the continuation tokens."""
        pages, token = [], None
        while True:
            query = f"top={top}" + (f"&continuationToken={token}" if token else "")
            status, body, calls = self.get(run_id, query)
            assert status == 200, body
            assert calls <= 5, f"{calls} Durable calls for one page"
            pages.append(body["disks"])
            token = body["nextContinuationToken"]
            if token is None:
                return pages


@pytest.fixture
def bed(
    proving_ground: ProvingGround, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bed]:
    group = f"rg-{unique_name}"
    proving_ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    for i in range(DISKS):
        body = {"size_bytes": 1 << 20, "fill": {"seed": i, "fraction": 0.02}}
        proving_ground.control("PUT", f"/resourceGroups/{group}/disks/d{i:02d}", body)
    env = proving_ground_settings(
        proving_ground,
        proving_ground.arm_ca_cert,
        BACKUP_SELECT_RESOURCE_GROUP=group,
        BACKUP_CONTAINER=unique_name,
        BACKUP_CATALOG_TABLE=unique_name,
        BACKUP_MAX_PARALLEL=str(LANES),
    )
    clock = VirtualClock(START, auto_advance=False)  # timers wait until the test lets time run
    state = tmp_path / "state"
    host = LocalHost(build_app(Settings.from_env(env)), clock=clock, store_dir=state)
    bed = Bed(host, clock, env, state)
    route = webhook_module.route

    def counted(host: LocalHost, method: str, target: str, *args: Any) -> Any:
        bed.durable_calls.append(f"{method} {target}")
        return route(host, method, target, *args)

    monkeypatch.setattr(webhook_module, "route", counted)
    with host:
        yield bed


def _wait_for(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_sixty_disks_counted_by_phase_and_read_in_pages(bed: Bed) -> None:
    started = bed.host.invoke_function(
        "start_backup",
        req=func.HttpRequest(method="POST", url="http://localhost/api/backups", body=b"{}", params={}),
    )
    assert started.status_code == 202
    run_id = json.loads(started.get_body())["runId"]

    # Mid-run: each lane's first disk waits on its first poll timer (the clock stands still).
    def stalled() -> dict[str, Any] | None:
        status, body, _ = bed.get(run_id, "top=4")
        return body if status == 200 and body["counts"].get("snapshot") == LANES else None

    view = _wait_for("every lane's first disk to wait in its snapshot phase", stalled)
    assert view["counts"] == {
        "waiting": DISKS - LANES,
        "snapshot": LANES,
        "succeeded": 0,
        "failed": 0,
        "total": DISKS,
    }
    status, view, calls = bed.get(run_id, "top=4")
    assert calls == 5  # the run, its lanes, its disks and waits at work, one page: not one per disk
    assert [d["index"] for d in view["disks"]] == [0, 1, 2, 3]  # the started disks, in index order
    assert all(d["phase"] == "snapshot" and d["runtimeStatus"] == "Running" for d in view["disks"])
    following = bed.pages(run_id, top=4)
    assert [[d["index"] for d in page] for page in following] == [[0, 1, 2, 3], [4, 5]]

    # Let time run: the run ends.
    bed.clock.auto_advance = True
    bed.host.advance_clock(timedelta(0))
    assert bed.host.wait_for_completion(run_id, timeout=300).output["status"] == "Succeeded"

    status, view, calls = bed.get(run_id, "top=7")
    assert calls == 2  # a run that ended counts from its summary: its status and one page
    assert view["counts"] == {"waiting": 0, "succeeded": DISKS, "failed": 0, "total": DISKS}
    assert "disks" not in view["result"] and view["result"]["succeeded"] == DISKS
    pages = bed.pages(run_id, top=7)
    assert [len(page) for page in pages] == [7] * 8 + [4]
    disks = [disk for page in pages for disk in page]
    assert [d["index"] for d in disks] == list(range(DISKS))
    assert {d["disk"] for d in disks} == {f"d{i:02d}" for i in range(DISKS)}
    assert all(d["phase"] == "done" and d["result"]["status"] == "Succeeded" for d in disks)
    assert all(d["bytesCopied"] == d["bytesTotal"] == (1 << 20) + 512 for d in disks)  # a fixed VHD

    # top and the token are validated, each a 400 naming it.
    foreign = wrap_token("another-run", "x")
    for query, field in [
        ("top=0", "top"),
        ("top=1001", "top"),
        ("top=ten", "top"),
        ("continuationToken=%21%21", "continuationToken"),
        (f"continuationToken={foreign}", "continuationToken"),
        ("continuationToken=" + "A" * 5000, "continuationToken"),
    ]:
        status, body, _ = bed.get(run_id, query)
        assert (status, body["error"]["field"]) == (400, field), query

    # `diskbackup status` reads the host's state folder the same way, a page at a time. (A running host
    # writes its folder within a second; flush so that this read sees the end of the run now.)
    bed.host.flush()
    seen: list[int] = []
    token: str | None = None
    while True:
        out = io.StringIO()
        args = ["--state-dir", str(bed.state), "status", run_id, "--json", "--top", "25"]
        assert main([*args, *(["--continuation-token", token] if token else [])], env=bed.env, out=out) == 0
        document = json.loads(out.getvalue())
        assert document["counts"]["succeeded"] == DISKS
        seen += [d["index"] for d in document["disks"]]
        token = document["nextContinuationToken"]
        if token is None:
            break
    assert seen == list(range(DISKS))
