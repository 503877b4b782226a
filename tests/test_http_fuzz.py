"""Every HTTP route, fuzzed: whatever a caller sends, no 500 and no secret in the answer.

The real route handlers run through the local host (``invoke_function``), with the SDK's real
``DurableOrchestrationClient`` talking to the host's webhook, the catalog on Azurite and the compute
emulator behind them: the same path a request takes in Azure. Hypothesis generates bodies (JSON of any
shape, near-valid requests with hostile values, raw bytes, deep nesting, huge numbers), query parameters
and route parameters. Every answer must be below 500, JSON, free of every secret the app holds, without
a stack trace or an exception's class name, and a 400 must name a field and stay small (nothing a caller
sent is echoed whole). Runs a valid request starts go on in the background against the proving ground.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import azure.functions as func
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from backup.app.blueprint import build_app
from backup.local.durable_host import LocalHost, VirtualClock
from backup.settings import Settings
from backup.workflow.run_progress import wrap_token
from testbed.devenv import proving_ground_settings
from testbed.proving_ground import ProvingGround

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
START = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
# What an answer may never show: a stack trace, or a class name of ours or of the HTTP libraries.
INTERNALS = re.compile(r"Traceback|File \"|\b\w+(Error|Exception)\b:|urllib3|HTTPConnectionPool|requests\.")


class Bed:
    def __init__(self, ground: ProvingGround, host: LocalHost, settings: Settings, run_id: str) -> None:
        self.ground, self.host, self.settings, self.run_id = ground, host, settings, run_id
        self.secrets = [s for s in (settings.storage_key, settings.arm_token, ground.backup_account_key) if s]

    def call(
        self,
        function: str,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        params: dict[str, str] | None = None,
        route: dict[str, str] | None = None,
        allowed: tuple[int, ...] = (200, 202, 400, 404),
    ) -> func.HttpResponse:
        request = func.HttpRequest(
            method=method,
            url=f"http://localhost/api/{path}",
            body=body,
            headers={"Content-Type": "application/json"},
            params=params or {},
            route_params=route or {},
        )
        response = self.host.invoke_function(function, req=request)
        assert isinstance(response, func.HttpResponse)
        self.check(response, allowed)
        return response

    def check(self, response: func.HttpResponse, allowed: tuple[int, ...] = (200, 202, 400, 404)) -> None:
        status = response.status_code
        text = response.get_body().decode("utf-8")
        headers = json.dumps(dict(response.headers.items()))
        assert status < 500, text[:500]
        assert status in allowed, (status, text[:500])
        for secret in self.secrets:
            for form in (secret, quote(secret, safe="")):
                assert form not in text and form not in headers
        if status == 200 and (response.mimetype or "").startswith("text/html"):
            # The run report: self-contained (no script, nothing fetched from elsewhere), no SAS.
            assert "<script" not in text.lower() and 'src="http' not in text and "sig=" not in text
            return
        document = json.loads(text)  # every other answer is JSON
        for secret in self.secrets:
            for form in (secret, quote(secret, safe="")):
                assert form not in text and form not in headers
        assert all(value == "REDACTED" for value in re.findall(r"sig=([^&\s\"']*)", text + headers))
        if status >= 400:
            error = document["error"]
            assert set(error) <= {"code", "message", "field"} and error["code"] and error["message"]
            assert not INTERNALS.search(error["message"]), error["message"]
            assert len(text) < 1000, "an error answer echoes what was sent"
            if status == 400:
                assert error["field"]


@pytest.fixture(scope="module")
def bed(proving_ground: ProvingGround) -> Iterator[Bed]:
    name = "f" + uuid.uuid4().hex[:12]
    group = f"rg-{name}"
    proving_ground.control("PUT", f"/resourceGroups/{group}", {"location": "westus"})
    proving_ground.control(
        "PUT",
        f"/resourceGroups/{group}/disks/fuzzed",
        {"size_bytes": 1 << 20, "fill": {"seed": 3, "fraction": 0.1}},
    )
    env = proving_ground_settings(
        proving_ground,
        proving_ground.arm_ca_cert,
        BACKUP_SELECT_RESOURCE_GROUP=group,
        BACKUP_CONTAINER=name,
        BACKUP_CATALOG_TABLE=name,
    )
    app_settings = Settings.from_env(env)
    with LocalHost(build_app(app_settings), clock=VirtualClock(START)) as host:
        bed = Bed(proving_ground, host, app_settings, "")
        started = bed.call("start_backup", "POST", "backups", body=b"{}")
        bed.run_id = json.loads(started.get_body())["runId"]
        assert host.wait_for_completion(bed.run_id, timeout=120).output["status"] == "Succeeded"
        yield bed


# -- strategies -----------------------------------------------------------------------------------------

EDGE_TEXT = st.sampled_from(
    [
        "",
        " ",
        ".",
        "..",
        "a\n",
        "\x00",
        "ü",
        "\U0001d518",  # outside the BMP
        "a" * 300,
        "/",
        "%2F",
        "?",
        "#",
        "=",
        "a=b",
        "null",
        "true",
        "[]",
        "{}",
        "../../etc",
        "sig=abc",
        "diskbackup=enabled",
    ]
)
TEXT = EDGE_TEXT | st.text(max_size=40) | st.text(alphabet="abc-_.()0123456789", max_size=90)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def _disk_id(parts: tuple[str, str, str]) -> str:
    subscription, group, name = parts
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/disks/{name}"


SUBSCRIPTIONS = st.sampled_from(["00000000-0000-0000-0000-000000000000", "not-a-guid", ""]) | TEXT
DISK_IDS = st.tuples(SUBSCRIPTIONS, TEXT, TEXT).map(_disk_id) | TEXT
NEAR_VALID = st.fixed_dictionaries(
    {},
    optional={
        "diskIds": st.lists(DISK_IDS, max_size=3) | JSON,
        "tag": st.fixed_dictionaries({"name": TEXT, "value": TEXT}) | JSON,
        "resourceGroup": TEXT | JSON,
        "options": st.fixed_dictionaries(
            {}, optional={"kind": st.sampled_from(["full", "incremental"]) | JSON, "keepSnapshot": JSON}
        )
        | JSON,
        "extra": JSON,
    },
)
BODIES = (
    NEAR_VALID.map(lambda value: json.dumps(value).encode())
    | JSON.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=200)
    | st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n)
    | st.integers(1, 5000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n)
    | st.integers(4000, 6000).map(lambda n: b'{"diskIds": [' + b"9" * n + b"]}")
    | st.sampled_from([b"NaN", b"[Infinity]", b'{"a": 1e999}', b"\xef\xbb\xbf{}", b'{"a":1,"a":2}', b""])
)
PARAM_VALUE = (
    TEXT | st.integers(-5, 2000).map(str) | st.sampled_from(["0", "1", "100", "1000", "1001", "true", "True"])
)
PARAMS = st.dictionaries(
    st.sampled_from(["top", "disk", "includeFailed", "continuationToken", "code", "x"]) | TEXT,
    PARAM_VALUE,
    max_size=4,
)


# -- the routes -----------------------------------------------------------------------------------------


@settings(FUZZ, max_examples=300)
@given(body=BODIES)
def test_post_backups(bed: Bed, body: bytes) -> None:
    response = bed.call("start_backup", "POST", "backups", body=body)
    if response.status_code == 202:
        assert json.loads(response.get_body())["runId"]


@FUZZ
@given(
    instance_id=TEXT | st.sampled_from(["RUN", "RUN\n", "RUN-lane-00", "RUN-disk-0000", "RUN "]),
    params=PARAMS,
)
def test_get_backup(bed: Bed, instance_id: str, params: dict[str, str]) -> None:
    instance_id = instance_id.replace("RUN", bed.run_id)
    response = bed.call(
        "get_backup", "GET", f"backups/{quote(instance_id)}", params=params, route={"instanceId": instance_id}
    )
    if response.status_code == 200:
        assert json.loads(response.get_body())["instanceId"] == bed.run_id


@FUZZ
@given(
    top=st.none() | PARAM_VALUE,
    token=st.none() | TEXT | st.builds(lambda inner: wrap_token("RUN", inner), TEXT),
)
def test_get_backup_pages(bed: Bed, top: str | None, token: str | None) -> None:
    params = {key: value for key, value in (("top", top), ("continuationToken", token)) if value is not None}
    params = {key: value.replace("RUN", bed.run_id) for key, value in params.items()}
    bed.call("get_backup", "GET", f"backups/{bed.run_id}", params=params, route={"instanceId": bed.run_id})


@FUZZ
@given(instance_id=TEXT | st.sampled_from(["RUN", "RUN\n", "RUN-lane-00", "RUN-disk-0000", "RUN/../x"]))
def test_get_backup_report(bed: Bed, instance_id: str) -> None:
    instance_id = instance_id.replace("RUN", bed.run_id)
    response = bed.call(
        "get_backup_report", "GET", f"backups/{quote(instance_id)}/report", route={"instanceId": instance_id}
    )
    if response.status_code == 200:
        assert f"Run {bed.run_id}" in response.get_body().decode()


@FUZZ
@given(params=PARAMS)
def test_list_backups(bed: Bed, params: dict[str, str]) -> None:
    bed.call("list_backups", "GET", "backups", params=params)


@FUZZ
@given(params=PARAMS, disk=st.none() | DISK_IDS | st.just("REAL"))
def test_list_restore_points(bed: Bed, params: dict[str, str], disk: str | None) -> None:
    if disk is not None:
        params = {**params, "disk": disk}
    if params.get("disk") == "REAL":
        params["disk"] = bed.ground.disk_id("fuzzed", bed.settings.select_resource_group)
    bed.call("list_restore_points", "GET", "restore-points", params=params)


# -- restore and retention ------------------------------------------------------------------------------

TARGETS = st.fixed_dictionaries(
    {},
    optional={
        "resourceGroup": TEXT | JSON | st.just("REAL_GROUP"),
        "diskName": TEXT | JSON | st.sampled_from(["restored", "fuzzed"]),
        "location": TEXT | st.sampled_from(["westus", "eastus", "West US"]),
        "sku": TEXT | st.sampled_from(["Premium_LRS", "standard_lrs", "UltraSSD_LRS"]) | JSON,
        "zone": TEXT | st.sampled_from(["1", "0", "99"]) | JSON,
        "subscriptionId": SUBSCRIPTIONS | JSON,
        "tags": st.dictionaries(TEXT, TEXT, max_size=3) | JSON,
        "extra": JSON,
    },
)
RESTORE_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "diskId": DISK_IDS | JSON | st.just("REAL"),
        "runId": TEXT | JSON | st.just("RUN"),
        "at": TEXT
        | JSON
        | st.sampled_from(
            ["2026-12-02T01:00:00Z", "2030-01-01T00:00:00+01:00", "2026-12-02T01:00:00", "1999"]
        ),
        "target": TARGETS | JSON,
        "verify": st.sampled_from(["full", "sample", "none", "half"]) | JSON,
        "keepOnFailure": JSON,
        "extra": JSON,
    },
)


def _real(bed: Bed, value: Any) -> Any:
    """Hypothesis's placeholders made real: the fuzzed disk, its group, its run."""
    if isinstance(value, dict):
        return {key: _real(bed, item) for key, item in value.items()}
    if value == "REAL":
        return bed.ground.disk_id("fuzzed", bed.settings.select_resource_group)
    if value == "REAL_GROUP":
        return bed.settings.select_resource_group
    if value == "RUN":
        return bed.run_id
    return value


def _restore_body(**fields: Any) -> bytes:
    return json.dumps({"diskId": "REAL", "runId": "RUN", **fields}).encode()


@settings(FUZZ, max_examples=200)
@given(body=RESTORE_BODIES.map(lambda value: json.dumps(value).encode()) | BODIES)
@example(body=_restore_body(target={"resourceGroup": "REAL_GROUP", "diskName": "restored"}))  # 202
@example(body=_restore_body(target={"resourceGroup": "REAL_GROUP", "diskName": "fuzzed"}))  # 409
@example(body=_restore_body(runId="nightly-never", target={"resourceGroup": "REAL_GROUP", "diskName": "x"}))
@example(
    body=_restore_body(runId=None, at="2030-01-01T00:00:00Z", target={"resourceGroup": "g", "diskName": "y"})
)
def test_post_restores(bed: Bed, body: bytes) -> None:
    with contextlib.suppress(ValueError, RecursionError):  # not JSON: sent as it is
        body = json.dumps(_real(bed, json.loads(body))).encode()
    response = bed.call("start_restore", "POST", "restores", body=body, allowed=(202, 400, 404, 409))
    document = json.loads(response.get_body())
    if response.status_code == 202:
        assert document["statusUri"].endswith(f"/api/restores/{document['restoreId']}")
    if response.status_code == 409:
        assert document["error"]["code"] == "TargetExists"


@FUZZ
@given(restore_id=TEXT | st.sampled_from(["restore-1", "RUN", "a\n"]), params=PARAMS)
def test_get_restore(bed: Bed, restore_id: str, params: dict[str, str]) -> None:
    restore_id = restore_id.replace("RUN", bed.run_id)  # a run is not a restore: 404
    response = bed.call(
        "get_restore", "GET", f"restores/{quote(restore_id)}", params=params, route={"restoreId": restore_id}
    )
    assert response.status_code in (400, 404)


@FUZZ
@given(params=PARAMS, disk=st.none() | DISK_IDS | st.just("REAL"))
def test_retention_preview(bed: Bed, params: dict[str, str], disk: str | None) -> None:
    if disk is not None:
        params = {**params, "disk": _real(bed, disk)}
    response = bed.call("retention_preview", "GET", "retention/preview", params=params)
    document = json.loads(response.get_body())
    if response.status_code == 200 and disk == "REAL":
        assert document["policy"] and document["keep"]  # the fuzzed disk's one point is kept


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"target": {"resourceGroup": "REAL_GROUP", "diskName": "restored-too"}}, 202, None),
        ({"target": {"resourceGroup": "REAL_GROUP", "diskName": "fuzzed"}}, 409, "TargetExists"),
        (
            {"runId": "nightly-never", "target": {"resourceGroup": "g", "diskName": "x"}},
            404,
            "NoRestorePoint",
        ),
        (
            {"runId": None, "at": "2020-01-01T00:00:00Z", "target": {"resourceGroup": "g", "diskName": "x"}},
            404,
            "NoRestorePoint",
        ),
        ({"target": {"resourceGroup": "g", "diskName": "x", "sku": "Fast"}}, 400, "InvalidInput"),
    ],
)
def test_the_restore_route_answers(bed: Bed, fields: dict[str, Any], status: int, code: str | None) -> None:
    body = json.dumps(_real(bed, json.loads(_restore_body(**fields)))).encode()
    response = bed.call("start_restore", "POST", "restores", body=body, allowed=(status,))
    if code is not None:
        assert json.loads(response.get_body())["error"]["code"] == code
