"""Answers off the services' spec are Azure's fault, not the caller's: UnexpectedResponseError, 502, exit 1.

Neither Azurite nor the compute emulator answers off its spec, so each client here talks to a real
loopback server (:class:`tests.scripted_server.ScriptedServer`) that answers what a broken service or a
proxy before it might: HTML where JSON belongs, a header missing or garbled, a link to somewhere else.
Each must end in :class:`~backup.errors.UnexpectedResponseError` naming what was wrong and the request
(method, URL without query, ``x-ms-request-id``), never :class:`~backup.errors.InvalidInputError`, and
never with a secret in its text. The HTTP API answers it 502 and the CLI one line with exit 1.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from contextlib import redirect_stderr
from typing import Any

import azure.functions as func
import pytest

from backup.app import http_routes
from backup.azure.arm import ArmClient
from backup.azure.blob import BlobAddress, BlobClient
from backup.azure.compute import ComputeClient
from backup.azure.credentials import IdentityTokenProvider, StaticTokenProvider
from backup.azure.lro import LroState, LroStatus, PollKind, ResultSource
from backup.azure.page_range import PageRange
from backup.azure.storage_auth import STORAGE_SCOPE, BearerAuthorizer, SharedKeyAuthorizer, StorageService
from backup.azure.table import TableClient
from backup.catalog import Catalog
from backup.errors import InvalidInputError, UnexpectedResponseError
from backup.local.cli import main
from testbed.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY
from tests.scripted_server import Answer, ScriptedServer

SUB = "00000000-0000-0000-0000-0000000000aa"
DISK = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/disks/d1"
SECRET = "S3CRETSIGNATURE"
SAS_QUERY = f"sv=2022-11-02&sr=b&sp=r&sig={SECRET}"
RID = {"x-ms-request-id": "req-0001"}
TOKEN = StaticTokenProvider("t0ken")
BLOB_SIGNER = SharedKeyAuthorizer(DEV_ACCOUNT, DEV_ACCOUNT_KEY, service=StorageService.BLOB)
TABLE_SIGNER = SharedKeyAuthorizer(DEV_ACCOUNT, DEV_ACCOUNT_KEY, service=StorageService.TABLE)


def _json(body: Any, status: int = 200, **headers: str) -> Answer:
    return Answer(status, {"Content-Type": "application/json", **RID, **headers}, json.dumps(body))


def _disk_body(**changes: Any) -> dict[str, Any]:
    body = {
        "id": DISK,
        "name": "d1",
        "location": "westus",
        "properties": {"diskSizeGB": 1, "provisioningState": "Succeeded"},
    }
    return body | changes


def _expect_unexpected(action: Callable[[], object], field: str) -> UnexpectedResponseError:
    with pytest.raises(UnexpectedResponseError) as caught:
        action()
    error = caught.value
    assert not isinstance(error, InvalidInputError)
    assert field in error.field, (field, error.field)
    assert not error.retryable
    assert SECRET not in str(error) and "\n" not in str(error)
    return error


# -- ARM and compute ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "field"),
    [
        (Answer(200, {"Content-Type": "text/html", **RID}, "<html>gateway says hi</html>"), "response body"),
        (_json(["a", "list"]), "response body"),
        (_json(_disk_body(location=None)), "disk.location"),
        (_json(_disk_body(id="/subscriptions/x/oops")), "disk.id"),
        (_json(_disk_body(id=DISK.replace("/d1", "/.."))), "disk.id"),
    ],
)
def test_a_disk_read_that_is_not_a_disk(answer: Answer, field: str) -> None:
    with ScriptedServer(answer) as server:
        compute = ComputeClient(ArmClient(server.url, TOKEN))
        error = _expect_unexpected(lambda: compute.get_disk(DISK), field)
    assert error.method == "GET" and error.url is not None and error.url.endswith("/disks/d1")
    assert "api-version" not in str(error)
    if field == "response body":
        assert error.request_id == "req-0001" and "req-0001" in str(error)


def test_a_disk_list_whose_next_link_leaves_the_endpoint() -> None:
    page = {"value": [_disk_body()], "nextLink": f"https://elsewhere.example/next?{SAS_QUERY}"}
    with ScriptedServer(_json(page)) as server:
        compute = ComputeClient(ArmClient(server.url, TOKEN))
        error = _expect_unexpected(lambda: compute.list_disks(SUB), "nextLink")
    assert "elsewhere.example" in str(error)
    assert len(server.seen) == 1  # the token never went there


def test_a_disk_list_whose_next_link_loops() -> None:
    with ScriptedServer() as server:
        again = f"{server.url}/subscriptions/{SUB}/providers/Microsoft.Compute/disks?page=2"
        server.script.extend([_json({"value": [], "nextLink": again})] * 2)
        compute = ComputeClient(ArmClient(server.url, TOKEN))
        _expect_unexpected(lambda: compute.list_disks(SUB), "nextLink")
    assert len(server.seen) == 2


def test_a_list_page_without_a_value_list() -> None:
    with ScriptedServer(_json({"value": "nope"})) as server:
        compute = ComputeClient(ArmClient(server.url, TOKEN))
        error = _expect_unexpected(lambda: compute.list_disks(SUB), "response body")
    assert error.request_id == "req-0001"


_FOREIGN_OPERATION = f"https://elsewhere.example/op?{SAS_QUERY}"


@pytest.mark.parametrize(
    ("answer", "field"),
    [
        (Answer(202, {"Location": "/relative/operation", **RID}), "Location header"),
        (Answer(202, {"Azure-AsyncOperation": _FOREIGN_OPERATION, **RID}), "poll_url"),
        (Answer(302, {"Location": "https://elsewhere.example/", **RID}), "status code"),
    ],
)
def test_a_snapshot_start_answered_off_the_lro_spec(answer: Answer, field: str) -> None:
    with ScriptedServer(answer) as server:
        compute = ComputeClient(ArmClient(server.url, TOKEN))
        error = _expect_unexpected(
            lambda: compute.begin_create_snapshot(DISK, location="westus", run_id="run-1"), field
        )
    assert error.method == "PUT" and error.request_id == "req-0001"


def test_a_grant_accepted_with_nothing_to_poll() -> None:
    # A PUT without a status URL is polled at the resource itself; a POST has nothing else to poll.
    with ScriptedServer(Answer(202, RID)) as server:
        compute = ComputeClient(ArmClient(server.url, TOKEN))
        error = _expect_unexpected(lambda: compute.begin_grant_access(DISK, 3600), "Location header")
    assert error.method == "POST" and error.request_id == "req-0001"


def _async_status(server_url: str, method: str = "POST") -> LroStatus:
    return LroStatus(
        method=method,
        resource_url=f"{server_url}{DISK}/beginGetAccess?api-version=2026-03-02",
        state=LroState.IN_PROGRESS,
        poll_kind=PollKind.ASYNC_OPERATION,
        poll_url=f"{server_url}/subscriptions/{SUB}/providers/Microsoft.Compute/locations/westus/"
        "DiskOperations/op-1?api-version=2026-03-02",
    )


@pytest.mark.parametrize(
    ("answer", "field"),
    [
        (_json({"nothing": "here"}), "operation status body"),
        (Answer(200, RID, "not json at all"), "operation status body"),  # a poll reads leniently
        (_json({"status": "InProgress"}, status=204), "operation status"),
    ],
)
def test_an_operation_status_that_is_not_one(answer: Answer, field: str) -> None:
    with ScriptedServer(answer) as server:
        compute = ComputeClient(ArmClient(server.url, TOKEN))
        error = _expect_unexpected(lambda: compute.poll(_async_status(server.url)), field)
    assert error.method == "GET" and error.request_id == "req-0001"


@pytest.mark.parametrize(
    ("output", "field"),
    [
        ({}, "grant result"),  # no accessSAS
        ({"accessSAS": f"not-a-url?{SAS_QUERY}"}, "grant result"),  # malformed, and a secret
        ({"accessSAS": 42}, "grant result"),
    ],
)
def test_a_grant_whose_result_holds_no_usable_sas(output: dict[str, Any], field: str) -> None:
    with ScriptedServer(_json({"status": "Succeeded", "properties": {"output": output}})) as server:
        compute = ComputeClient(ArmClient(server.url, TOKEN))
        done = LroStatus(
            method="POST",
            resource_url=f"{server.url}{DISK}/beginGetAccess?api-version=2026-03-02",
            state=LroState.SUCCEEDED,
            result_source=ResultSource.ASYNC_OUTPUT,
            result_url=f"{server.url}/op?api-version=2026-03-02",
        )
        error = _expect_unexpected(lambda: compute.read_access_sas(done), field)
    assert error.method == "GET" and error.url == f"{server.url}/op"


# -- blob ---------------------------------------------------------------------------------------------


def _blob(url: str) -> BlobAddress:
    return BlobAddress.in_account(f"{url}/{DEV_ACCOUNT}", "backups", "disk.vhd", BLOB_SIGNER)


_PROPERTIES = {"Content-Length": "512", "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT", **RID}


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({**_PROPERTIES, "x-ms-copy-status": "exploded"}, "x-ms-copy-status"),
        ({**_PROPERTIES, "x-ms-copy-status": "pending", "x-ms-copy-progress": "half"}, "x-ms-copy-progress"),
        ({**_PROPERTIES, "Last-Modified": "the day before yesterday"}, "Last-Modified"),
        ({"Content-Length": "512", **RID}, "response headers"),
    ],
)
def test_blob_properties_that_are_not_what_storage_documents(headers: dict[str, str], field: str) -> None:
    with ScriptedServer(Answer(200, headers)) as server:
        error = _expect_unexpected(lambda: BlobClient().get_properties(_blob(server.url)), field)
    assert error.method == "HEAD" and error.request_id == "req-0001"


@pytest.mark.parametrize(
    "body",
    [
        "<html>proxy error</html>",
        "not xml",
        "<PageList><PageRange><Start>1</Start><End>511</End></PageRange></PageList>",
        '<!DOCTYPE x [<!ENTITY a "b">]><PageList/>',
    ],
)
def test_a_page_list_that_is_not_one(body: str) -> None:
    with ScriptedServer(Answer(200, {"Content-Type": "application/xml", **RID}, body)) as server:
        error = _expect_unexpected(lambda: BlobClient().get_page_ranges(_blob(server.url)), "response body")
    assert error.method == "GET" and error.request_id == "req-0001"
    assert error.url is not None and "comp=pagelist" not in error.url


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        (RID, "response headers"),  # no x-ms-copy-id, no x-ms-copy-status
        ({"x-ms-copy-id": "abc", "x-ms-copy-status": "teleported", **RID}, "x-ms-copy-status"),
    ],
)
def test_a_copy_start_answered_without_its_copy(headers: dict[str, str], field: str) -> None:
    source = BlobAddress.from_sas_url(f"https://md-xyz.blob.core.windows.net/c/abcd?{SAS_QUERY}")
    with ScriptedServer(Answer(202, headers)) as server:
        error = _expect_unexpected(lambda: BlobClient().start_copy(_blob(server.url), source), field)
    assert error.method == "PUT" and error.request_id == "req-0001"


def test_a_ranged_read_of_the_wrong_length_and_a_garbled_snapshot_stamp() -> None:
    with ScriptedServer(
        Answer(206, RID, b"\0" * 100), Answer(201, {"x-ms-snapshot": "yesterday", **RID})
    ) as server:
        blob = _blob(server.url)
        _expect_unexpected(lambda: BlobClient().read_range(blob, PageRange(0, 511)), "response body")
        _expect_unexpected(lambda: BlobClient().snapshot(blob), "x-ms-snapshot")


# -- table ------------------------------------------------------------------------------------------


def _table(url: str) -> TableClient:
    return TableClient(f"{url}/{DEV_ACCOUNT}", "catalog", TABLE_SIGNER)


@pytest.mark.parametrize(
    ("answer", "field"),
    [
        (Answer(200, RID, "<html>not json</html>"), "response body"),
        (_json(["not", "an", "object"]), "response body"),
        (_json({"value": "nope"}), "response body"),
        (_json({"value": [{"RowKey": "r"}]}), "response body"),
        (
            _json({"value": [{"PartitionKey": "p", "RowKey": "r", "N@odata.type": "Edm.Int64", "N": "x"}]}),
            "property N",
        ),
        (
            _json({"value": [{"PartitionKey": "p", "RowKey": "r", "Timestamp": "2024-13-01T00:00:00Z"}]}),
            "Edm.DateTime",
        ),
    ],
)
def test_a_table_query_answered_with_what_is_no_entity_set(answer: Answer, field: str) -> None:
    with ScriptedServer(answer) as server:
        error = _expect_unexpected(lambda: list(_table(server.url).query()), field)
    assert error.method == "GET" and error.request_id == "req-0001"


def test_a_table_get_that_is_not_an_entity() -> None:
    with ScriptedServer(Answer(200, RID, "{truncated")) as server:
        error = _expect_unexpected(lambda: _table(server.url).get("p", "r"), "response body")
    assert error.request_id == "req-0001"


def test_a_continuation_that_repeats_is_not_followed_forever() -> None:
    more = {"x-ms-continuation-NextPartitionKey": "1!4!cA--", "x-ms-continuation-NextRowKey": "1!4!cg--"}
    with ScriptedServer(*[_json({"value": []}, **more)] * 3) as server:
        _expect_unexpected(lambda: list(_table(server.url).query()), "x-ms-continuation-NextPartitionKey")
    assert len(server.seen) == 2


# -- the edges: the HTTP API answers 502, the CLI one line and exit 1 -------------------------------------


def test_the_http_api_answers_502_not_400() -> None:
    with ScriptedServer(Answer(200, RID, f"<html>oops {SAS_QUERY}</html>")) as server:
        catalog = Catalog(_table(server.url), blob_endpoint=f"{server.url}/{DEV_ACCOUNT}")
        request = func.HttpRequest(method="GET", url="http://localhost/api/backups", body=b"")
        response = asyncio.run(http_routes.guarded(lambda: http_routes.list_backups(request, catalog)))
    assert response.status_code == 502
    body = json.loads(response.get_body())
    assert body["error"]["code"] == "BadGateway"
    assert "field" not in body["error"]  # nothing the caller sent is wrong
    assert "response body" in body["error"]["message"] and "req-0001" in body["error"]["message"]
    assert SECRET not in response.get_body().decode()


def test_a_setting_that_does_not_work_in_a_route_is_a_500_naming_it_not_a_bare_internal_error() -> None:
    class NoIdentity:
        """An azure-identity credential on a host without a managed identity."""

        def get_token(self, *scopes: str) -> Any:
            raise RuntimeError(f"ManagedIdentityCredential: no response from IMDS {SECRET}")

    tokens = IdentityTokenProvider(STORAGE_SCOPE, credential=NoIdentity())
    table = TableClient("https://127.0.0.1:1/devstoreaccount1", "catalog", BearerAuthorizer(tokens))
    catalog = Catalog(table, blob_endpoint="https://127.0.0.1:1/devstoreaccount1")
    request = func.HttpRequest(method="GET", url="http://localhost/api/backups", body=b"")
    response = asyncio.run(http_routes.guarded(lambda: http_routes.list_backups(request, catalog)))
    # 500: the request is fine, and waiting will not mend it (503 would invite retries); the code says a
    # setting needs a person, the message which one, and the credential's own words stay in the log.
    assert response.status_code == 500
    error = json.loads(response.get_body())["error"]
    assert error["code"] == "InvalidSettings" and "field" not in error
    assert error["message"].startswith("the app's settings do not work: credential (DefaultAzureCredential")
    assert SECRET not in response.get_body().decode() and "IMDS" not in error["message"]


def test_the_cli_reports_one_line_and_exits_1() -> None:
    with ScriptedServer(Answer(200, RID, "<html>oops</html>")) as server:
        env = {
            "BACKUP_SUBSCRIPTION_ID": SUB,
            "BACKUP_STORAGE_ACCOUNT": DEV_ACCOUNT,
            "BACKUP_STORAGE_KEY": DEV_ACCOUNT_KEY,
            "BACKUP_ARM_ENDPOINT": server.url,
            "BACKUP_ARM_TOKEN": "t0ken",
            "BACKUP_BLOB_ENDPOINT": f"{server.url}/{DEV_ACCOUNT}",
            "BACKUP_TABLE_ENDPOINT": f"{server.url}/{DEV_ACCOUNT}",
        }
        errors = io.StringIO()
        with redirect_stderr(errors):
            code = main(["list"], env=env, out=io.StringIO())
    assert code == 1
    lines = errors.getvalue().splitlines()
    assert len(lines) == 1, lines
    # One line naming what answered and what was wrong (the request's URL stays in the log).
    assert lines[0].startswith("diskbackup: unexpected answer from Azure (Table storage): ")
    assert "req-0001" in lines[0]
