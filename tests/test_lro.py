"""The pure classification of long-running ARM operations, case by case.

Cases come from ARM's "Asynchronous API Reference" (Azure/azure-resource-manager-rpc,
``v1.0/async-api-reference.md``: a Location URL answers 202 until done and then the operation's own
result; an Azure-AsyncOperation URL answers a status body whose terminal words are Succeeded, Failed
and Canceled; 60 s between polls without Retry-After), the DiskRP 2026-03-02 spec and examples
(``testbed/emulator/spec``: 202 + Location + Retry-After; final-state-via location), and observed Compute
behaviour (Azure-AsyncOperation as well; the grant's SAS at ``properties.output.accessSAS``, as reported
in Azure/azure-sdk-for-js issue 17499).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from backup.azure.lro import (
    DEFAULT_RETRY_AFTER,
    LroState,
    LroStatus,
    PollKind,
    ResultSource,
    classify_initial,
    classify_poll,
    extract_result,
)
from backup.errors import DiskBackupError, InvalidInputError, OperationFailedError, UnexpectedResponseError

BASE = "https://management.azure.com/subscriptions/5f1c2d3e-aaaa-4bbb-8ccc-0123456789ab"
SNAP = f"{BASE}/resourceGroups/rg/providers/Microsoft.Compute/snapshots/s1?api-version=2026-03-02"
GRANT = SNAP.replace("/s1?", "/s1/beginGetAccess?")
ASYNC = f"{BASE}/providers/Microsoft.Compute/locations/westus/DiskOperations/op-1?api-version=2026-03-02"
LOCATION = ASYNC + "&monitor=true"
SAS = "https://md-x.blob.storage.azure.net/abcd/abcd?sv=2018-03-28&sr=b&si=x&sig=TOPSECRETsig%3D&sp=r"

E = LroState
K = PollKind
R = ResultSource


# -- the first answer -----------------------------------------------------------------------------

INITIAL_CASES: list[tuple[str, str, int, dict[str, str], Any, dict[str, Any]]] = [
    # id, method, status, headers, body -> expected fields
    (
        "202 + Location only (spec: grant/revoke/delete)",
        "POST",
        202,
        {"Location": LOCATION, "Retry-After": "5"},
        None,
        {"state": E.IN_PROGRESS, "poll_kind": K.LOCATION, "poll_url": LOCATION, "retry_after": 5.0},
    ),
    (
        "202 + Azure-AsyncOperation + Location: async wins, Location kept",
        "POST",
        202,
        {"Azure-AsyncOperation": ASYNC, "Location": LOCATION, "Retry-After": "2"},
        None,
        {"poll_kind": K.ASYNC_OPERATION, "poll_url": ASYNC, "location_url": LOCATION, "retry_after": 2.0},
    ),
    (
        "200 PUT + Azure-AsyncOperation: running whatever the body says",
        "PUT",
        200,
        {"azure-asyncoperation": ASYNC},
        {"properties": {"provisioningState": "Succeeded"}},
        {"state": E.IN_PROGRESS, "poll_kind": K.ASYNC_OPERATION},
    ),
    (
        "201 PUT + Location",
        "PUT",
        201,
        {"Location": LOCATION},
        {"properties": {"provisioningState": "Creating"}},
        {"state": E.IN_PROGRESS, "poll_kind": K.LOCATION},
    ),
    (
        "200 PUT provisioningState Updating (spec example): poll the resource",
        "PUT",
        200,
        {},
        {"properties": {"provisioningState": "Updating"}},
        {"state": E.IN_PROGRESS, "poll_kind": K.RESOURCE, "poll_url": SNAP},
    ),
    (
        "202 PUT without headers: poll the resource",
        "PUT",
        202,
        {},
        {"properties": {"provisioningState": "Succeeded"}},
        {"state": E.IN_PROGRESS, "poll_kind": K.RESOURCE},
    ),
    (
        "201 PUT without provisioningState: still running",
        "PUT",
        201,
        {},
        {"name": "s1"},
        {"state": E.IN_PROGRESS, "poll_kind": K.RESOURCE},
    ),
    (
        "200 PUT provisioningState Succeeded: done, the resource is the result",
        "PUT",
        200,
        {},
        {"properties": {"provisioningState": "succeeded"}},
        {"state": E.SUCCEEDED, "result_source": R.RESOURCE, "result_url": SNAP, "retry_after": 0.0},
    ),
    (
        "200 PATCH without provisioningState: a resource without one counts as Succeeded",
        "PATCH",
        200,
        {},
        {"tags": {}},
        {"state": E.SUCCEEDED, "result_source": R.RESOURCE},
    ),
    (
        "200 PUT provisioningState Failed",
        "PUT",
        200,
        {},
        {"properties": {"provisioningState": "Failed"}},
        {"state": E.FAILED, "error_message": "provisioningState is Failed", "result_source": R.NONE},
    ),
    (
        "200 PUT provisioningState Canceled",
        "PUT",
        200,
        {},
        {"properties": {"provisioningState": "Canceled"}},
        {"state": E.CANCELED},
    ),
    ("204 DELETE", "DELETE", 204, {}, None, {"state": E.SUCCEEDED, "result_source": R.NONE}),
    ("200 DELETE", "DELETE", 200, {}, None, {"state": E.SUCCEEDED, "result_source": R.NONE}),
    (
        "200 POST AccessUri (spec's synchronous grant): the result was only in this answer",
        "POST",
        200,
        {},
        {"accessSAS": SAS},
        {"state": E.SUCCEEDED, "result_source": R.INITIAL, "result_url": None},
    ),
    ("200 POST no body (synchronous revoke)", "POST", 200, {}, None, {"result_source": R.NONE}),
    (
        "missing Retry-After: the default",
        "DELETE",
        202,
        {"Location": LOCATION},
        None,
        {"retry_after": DEFAULT_RETRY_AFTER},
    ),
    (
        "retry-after-ms wins over Retry-After",
        "DELETE",
        202,
        {"Location": LOCATION, "Retry-After": "9", "retry-after-ms": "1500"},
        None,
        {"retry_after": 1.5},
    ),
    (
        "x-ms-retry-after-ms",
        "DELETE",
        202,
        {"Location": LOCATION, "x-ms-retry-after-ms": "250"},
        None,
        {"retry_after": 0.25},
    ),
    (
        "Retry-After as an HTTP date in the past: poll now",
        "DELETE",
        202,
        {"Location": LOCATION, "Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
        None,
        {"retry_after": 0.0},
    ),
    (
        "unparseable Retry-After: the default",
        "DELETE",
        202,
        {"Location": LOCATION, "Retry-After": "soon"},
        None,
        {"retry_after": DEFAULT_RETRY_AFTER},
    ),
]


@pytest.mark.parametrize(
    ("method", "status_code", "headers", "body", "expected"),
    [case[1:] for case in INITIAL_CASES],
    ids=[case[0] for case in INITIAL_CASES],
)
def test_initial_answer(
    method: str, status_code: int, headers: dict[str, str], body: Any, expected: dict[str, Any]
) -> None:
    url = GRANT if method == "POST" else SNAP
    status = classify_initial(method, url, status_code, headers, body)
    assert status.method == method
    assert status.resource_url == url
    for name, value in expected.items():
        assert getattr(status, name) == value, name


def test_initial_retry_after_as_a_future_http_date() -> None:
    when = datetime.now(UTC) + timedelta(hours=1)
    status = classify_initial(
        "DELETE", SNAP, 202, {"Location": LOCATION, "Retry-After": format_datetime(when)}, None
    )
    assert 3000 < status.retry_after <= 3600


def test_default_retry_after_is_configurable() -> None:
    status = classify_initial("DELETE", SNAP, 202, {"Location": LOCATION}, None, default_retry_after=3)
    assert status.retry_after == 3


@pytest.mark.parametrize(
    ("method", "url", "status_code", "headers", "field", "error"),
    [
        # Answers off the spec are Azure's fault ...
        ("POST", GRANT, 202, {}, "Location header", UnexpectedResponseError),
        ("DELETE", SNAP, 202, {"Retry-After": "1"}, "Location header", UnexpectedResponseError),
        ("PUT", SNAP, 400, {}, "status code", UnexpectedResponseError),
        ("PUT", SNAP, 302, {"Location": LOCATION}, "status code", UnexpectedResponseError),
        (
            "POST",
            GRANT,
            202,
            {"Location": "/subscriptions/x/operations/1"},
            "Location header",
            UnexpectedResponseError,
        ),
        (
            "POST",
            GRANT,
            202,
            {"Azure-AsyncOperation": "ftp://example/op"},
            "Azure-AsyncOperation header",
            UnexpectedResponseError,
        ),
        # ... requests that are no long-running operation are the caller's.
        ("GET", SNAP, 200, {}, "method", InvalidInputError),
        ("PUT", "/relative/path", 200, {}, "request url", InvalidInputError),
    ],
)
def test_initial_answers_that_are_refused(
    method: str,
    url: str,
    status_code: int,
    headers: dict[str, str],
    field: str,
    error: type[DiskBackupError],
) -> None:
    with pytest.raises(error) as caught:
        classify_initial(method, url, status_code, headers, None)
    assert getattr(caught.value, "field", None) == field
    if error is UnexpectedResponseError:
        assert not isinstance(caught.value, InvalidInputError)


# -- polling the Azure-AsyncOperation URL ---------------------------------------------------------


def _async(method: str, url: str = GRANT, location: bool = True) -> LroStatus:
    headers = {"Azure-AsyncOperation": ASYNC, "Retry-After": "1"}
    if location:
        headers["Location"] = LOCATION
    return classify_initial(method, url, 202, headers, None)


ASYNC_CASES: list[tuple[str, LroStatus, int, dict[str, str], Any, dict[str, Any]]] = [
    (
        "InProgress",
        _async("POST"),
        200,
        {"Retry-After": "3"},
        {"status": "InProgress"},
        {"state": E.IN_PROGRESS, "poll_url": ASYNC, "retry_after": 3.0},
    ),
    (
        "any other word is still running; no Retry-After means the default",
        _async("PUT", SNAP),
        200,
        {},
        {"status": "Updating"},
        {"state": E.IN_PROGRESS, "retry_after": DEFAULT_RETRY_AFTER},
    ),
    (
        "grant Succeeded with properties.output: the result is on the status body",
        _async("POST"),
        200,
        {},
        {"status": "Succeeded", "properties": {"output": {"accessSAS": SAS}}},
        {"state": E.SUCCEEDED, "result_source": R.ASYNC_OUTPUT, "result_url": ASYNC},
    ),
    (
        "POST Succeeded without output: the Location final result",
        _async("POST"),
        200,
        {},
        {"status": "Succeeded"},
        {"result_source": R.RESOURCE, "result_url": LOCATION},
    ),
    (
        "POST Succeeded without output or Location: no result",
        _async("POST", location=False),
        200,
        {},
        {"status": "Succeeded"},
        {"result_source": R.NONE, "result_url": None},
    ),
    (
        "PUT Succeeded: GET the resource",
        _async("PUT", SNAP),
        200,
        {},
        {"status": "succeeded"},
        {"state": E.SUCCEEDED, "result_source": R.RESOURCE, "result_url": SNAP},
    ),
    (
        "DELETE Succeeded: nothing to fetch",
        _async("DELETE", SNAP),
        200,
        {},
        {"status": "Succeeded", "properties": {"output": {}}},
        {"result_source": R.NONE},
    ),
    (
        "Failed with error",
        _async("PUT", SNAP),
        200,
        {},
        {"status": "Failed", "error": {"code": "InternalDiskManagementError", "message": "boom"}},
        {"state": E.FAILED, "error_code": "InternalDiskManagementError", "error_message": "boom"},
    ),
    (
        "Canceled with error",
        _async("POST"),
        200,
        {},
        {"status": "Canceled", "error": {"code": "OperationCanceled", "message": "canceled by user"}},
        {"state": E.CANCELED, "error_code": "OperationCanceled", "result_source": R.NONE},
    ),
    (
        "Failed without an error object",
        _async("POST"),
        200,
        {},
        {"status": "Failed"},
        {"state": E.FAILED, "error_code": None, "error_message": None},
    ),
    (
        "an error message holding a SAS is redacted",
        _async("POST"),
        200,
        {},
        {"status": "Failed", "error": {"code": "X", "message": f"cannot read {SAS}"}},
        {"error_message": f"cannot read {SAS.replace('TOPSECRETsig%3D', 'REDACTED')}"},
    ),
]


@pytest.mark.parametrize(
    ("previous", "status_code", "headers", "body", "expected"),
    [case[1:] for case in ASYNC_CASES],
    ids=[case[0] for case in ASYNC_CASES],
)
def test_async_operation_poll(
    previous: LroStatus, status_code: int, headers: dict[str, str], body: Any, expected: dict[str, Any]
) -> None:
    status = classify_poll(previous, status_code, headers, body)
    assert status.poll_kind is PollKind.ASYNC_OPERATION
    for name, value in expected.items():
        assert getattr(status, name) == value, name


@pytest.mark.parametrize(
    ("status_code", "body"),
    [(200, {}), (200, None), (200, {"status": ""}), (200, {"status": 3}), (204, None)],
)
def test_async_status_bodies_that_are_refused(status_code: int, body: Any) -> None:
    with pytest.raises(UnexpectedResponseError):
        classify_poll(_async("POST"), status_code, {}, body)


# -- polling the Location URL ---------------------------------------------------------------------


def _location(method: str, url: str = GRANT) -> LroStatus:
    return classify_initial(method, url, 202, {"Location": LOCATION, "Retry-After": "1"}, None)


MOVED = LOCATION.replace("op-1", "op-2")

LOCATION_CASES: list[tuple[str, LroStatus, int, dict[str, str], Any, dict[str, Any]]] = [
    (
        "202: running",
        _location("POST"),
        202,
        {"Retry-After": "4"},
        None,
        {"state": E.IN_PROGRESS, "retry_after": 4},
    ),
    (
        "202 with a new Location: follow it",
        _location("POST"),
        202,
        {"Location": MOVED},
        None,
        {"poll_url": MOVED},
    ),
    (
        "grant 200 AccessUri: the Location URL is where the result is fetched",
        _location("POST"),
        200,
        {},
        {"accessSAS": SAS},
        {"state": E.SUCCEEDED, "result_source": R.RESOURCE, "result_url": LOCATION},
    ),
    (
        "revoke 200 without body",
        _location("POST"),
        200,
        {},
        None,
        {"state": E.SUCCEEDED, "result_source": R.NONE},
    ),
    ("DELETE 204", _location("DELETE", SNAP), 204, {}, None, {"state": E.SUCCEEDED, "result_source": R.NONE}),
    ("DELETE 200", _location("DELETE", SNAP), 200, {}, None, {"result_source": R.NONE}),
    (
        "PUT 200 with the snapshot: GET the resource",
        _location("PUT", SNAP),
        200,
        {},
        {"name": "s1", "properties": {"provisioningState": "Succeeded"}},
        {"result_source": R.RESOURCE, "result_url": SNAP},
    ),
    (
        "PUT 204 without a body: the resource is still the result",
        _location("PUT", SNAP),
        204,
        {},
        None,
        {"result_source": R.RESOURCE, "result_url": SNAP},
    ),
    (
        "an error status with CloudError: the operation failed",
        _location("PUT", SNAP),
        409,
        {},
        {"error": {"code": "OperationNotAllowed", "message": "too many"}},
        {"state": E.FAILED, "error_code": "OperationNotAllowed", "error_message": "too many"},
    ),
    (
        "an error status without a body",
        _location("POST"),
        400,
        {},
        None,
        {"state": E.FAILED, "error_code": None, "error_message": "HTTP 400 from the Location URL"},
    ),
]


@pytest.mark.parametrize(
    ("previous", "status_code", "headers", "body", "expected"),
    [case[1:] for case in LOCATION_CASES],
    ids=[case[0] for case in LOCATION_CASES],
)
def test_location_poll(
    previous: LroStatus, status_code: int, headers: dict[str, str], body: Any, expected: dict[str, Any]
) -> None:
    status = classify_poll(previous, status_code, headers, body)
    assert status.poll_kind is PollKind.LOCATION
    for name, value in expected.items():
        assert getattr(status, name) == value, name


def test_location_server_error_is_not_a_verdict() -> None:
    # 5xx is the transport's business (retried, then raised); here it is refused, not read as Failed.
    with pytest.raises(UnexpectedResponseError):
        classify_poll(_location("POST"), 500, {}, None)


# -- polling the resource (provisioningState) -----------------------------------------------------


def _resource() -> LroStatus:
    return classify_initial("PUT", SNAP, 200, {}, {"properties": {"provisioningState": "Creating"}})


@pytest.mark.parametrize(
    ("status_code", "body", "expected"),
    [
        (200, {"properties": {"provisioningState": "Updating"}}, {"state": E.IN_PROGRESS}),
        (202, None, {"state": E.IN_PROGRESS}),
        (200, {"properties": {"provisioningState": "Succeeded"}}, {"state": E.SUCCEEDED, "result_url": SNAP}),
        (200, {"properties": {}}, {"state": E.SUCCEEDED, "result_source": R.RESOURCE}),
        (200, {"properties": {"provisioningState": "Failed"}}, {"state": E.FAILED}),
        (200, {"properties": {"provisioningState": "Canceled"}}, {"state": E.CANCELED}),
    ],
)
def test_resource_poll(status_code: int, body: Any, expected: dict[str, Any]) -> None:
    status = classify_poll(_resource(), status_code, {}, body)
    assert status.poll_kind is PollKind.RESOURCE
    for name, value in expected.items():
        assert getattr(status, name) == value, name


# -- the whole conversation, and what travels between activities -----------------------------------


def test_grant_access_end_to_end_keeps_the_sas_out_of_the_state() -> None:
    status = classify_initial(
        "POST", GRANT, 202, {"Azure-AsyncOperation": ASYNC, "Location": LOCATION, "Retry-After": "1"}, None
    )
    status = classify_poll(status, 200, {"Retry-After": "1"}, {"status": "InProgress"})
    assert not status.done
    final_body = {"status": "Succeeded", "properties": {"output": {"accessSAS": SAS}}}
    status = classify_poll(status, 200, {}, final_body)
    assert status.succeeded
    carried = json.dumps(status.to_dict())
    assert "TOPSECRET" not in carried and "accessSAS" not in carried
    # The activity that needs the SAS GETs result_url (the status URL again) and reads it there.
    assert status.result_url == ASYNC
    assert extract_result(status, final_body) == {"accessSAS": SAS}


def test_location_result_is_read_from_the_final_get() -> None:
    status = classify_poll(_location("POST"), 200, {}, {"accessSAS": SAS})
    assert extract_result(status, {"accessSAS": SAS}) == {"accessSAS": SAS}


def test_extract_result_refuses_a_status_body_without_output() -> None:
    status = classify_poll(_async("POST"), 200, {}, {"status": "Succeeded", "properties": {"output": {}}})
    with pytest.raises(UnexpectedResponseError, match=r"properties\.output"):
        extract_result(status, {"status": "Succeeded"})


def test_revoke_through_the_async_url_has_an_empty_location_result() -> None:
    # endGetAccess: the status body has no output, so the result is looked for at Location, which
    # answers 200 without a body: no result, not an error.
    status = classify_poll(_async("POST"), 200, {}, {"status": "Succeeded"})
    assert status.result_source is ResultSource.RESOURCE
    assert extract_result(status, None) is None
    with pytest.raises(UnexpectedResponseError, match="JSON object"):
        extract_result(status, ["not", "an", "object"])


def test_extract_result_when_there_is_none() -> None:
    status = classify_poll(_location("DELETE", SNAP), 204, {}, None)
    assert extract_result(status, None) is None


def test_polling_a_finished_operation_is_refused() -> None:
    done = classify_initial("DELETE", SNAP, 204, {}, None)
    with pytest.raises(InvalidInputError, match="already ended Succeeded"):
        classify_poll(done, 200, {}, {})


def test_raise_for_failure() -> None:
    failed = classify_poll(
        _async("PUT", SNAP), 200, {}, {"status": "Failed", "error": {"code": "Boom", "message": "it broke"}}
    )
    with pytest.raises(OperationFailedError) as caught:
        failed.raise_for_failure()
    assert caught.value.status == "Failed"
    assert caught.value.code == "Boom"
    assert "it broke" in str(caught.value)
    _resource().raise_for_failure()  # in progress: nothing to raise


def test_json_round_trip() -> None:
    for status in (_async("POST"), _location("DELETE", SNAP), _resource()):
        data = json.loads(json.dumps(status.to_dict()))
        assert LroStatus.from_dict(data) == status
    done = classify_poll(_async("POST"), 200, {}, {"status": "Succeeded", "properties": {"output": {"a": 1}}})
    assert LroStatus.from_dict(json.loads(json.dumps(done.to_dict()))) == done


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"state": "Running"}, "lro status.state"),
        ({"method": "GET"}, "lro status.method"),
        ({"poll_url": "/relative"}, "lro status.poll_url"),
        ({"poll_url": None}, "lro status"),
        ({"retry_after": -1}, "lro status.retry_after"),
        ({"retry_after": "5"}, "lro status.retry_after"),
        ({"extra": 1}, "lro status"),
        ({"resource_url": ""}, "lro status.resource_url"),
        ({"state": "Succeeded", "result_source": "resource", "result_url": None}, "lro status.result_url"),
    ],
)
def test_from_dict_refuses_bad_input(change: dict[str, Any], field: str) -> None:
    data = _async("POST").to_dict() | change
    with pytest.raises(InvalidInputError) as caught:
        LroStatus.from_dict(data)
    assert caught.value.field == field
