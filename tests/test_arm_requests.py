"""ArmClient's request building and refusals that happen before any I/O.

Everything here is decided without a server: endpoint rules, URLs, error parsing of ARM's CloudError,
and the rule that the bearer token never leaves the endpoint's origin. The HTTP behaviour is tested
against the compute emulator in test_compute.py.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import requests

from backup.azure.arm import ArmClient, parse_arm_error
from backup.azure.credentials import StaticTokenProvider
from backup.azure.lro import LroState, LroStatus, PollKind, ResultSource
from backup.errors import InvalidInputError

TOKEN = StaticTokenProvider("t0ken")


def _response(
    status: int, body: bytes, headers: dict[str, str] | None = None, reason: str = ""
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers or {})
    response.reason = reason
    return response


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://management.azure.com",
        "https://management.azure.com/",
        "http://127.0.0.1:8443",
        "http://localhost:1234",
        "http://[::1]:9000",
        "https://management.usgovcloudapi.net",
    ],
)
def test_endpoints_accepted(endpoint: str) -> None:
    client = ArmClient(endpoint, TOKEN)
    assert not client.endpoint.endswith("/")


@pytest.mark.parametrize(
    ("endpoint", "fragment"),
    [
        ("http://management.azure.com", "loopback"),
        ("http://10.0.0.1:8080", "loopback"),
        ("management.azure.com", "absolute https URL"),
        ("ftp://127.0.0.1", "absolute https URL"),
        ("https://management.azure.com/?x=1", "query"),
    ],
)
def test_endpoints_refused(endpoint: str, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        ArmClient(endpoint, TOKEN)
    assert caught.value.field == "ARM endpoint"
    assert fragment in str(caught.value)


def test_url_building() -> None:
    client = ArmClient("https://management.azure.com/", TOKEN)
    path = "/subscriptions/s/resourceGroups/rg(1)/providers/Microsoft.Compute/disks/d"
    assert client.url(path, "2026-03-02") == f"https://management.azure.com{path}?api-version=2026-03-02"
    assert client.url("/x", "v", {"$filter": "a eq 'b'"}) == (
        "https://management.azure.com/x?api-version=v&%24filter=a+eq+%27b%27"
    )
    # Unicode letters in a resource group are percent-encoded.
    assert client.url("/resourceGroups/grün", "v").endswith("/resourceGroups/gr%C3%BCn?api-version=v")


@pytest.mark.parametrize("path", ["relative/path", "/x?api-version=1", "/x#frag", ""])
def test_bad_paths_refused(path: str) -> None:
    with pytest.raises(InvalidInputError, match="path"):
        ArmClient("https://management.azure.com", TOKEN).url(path, "v")


def test_cloud_error_parsed() -> None:
    body = {
        "error": {"code": "ResourceNotFound", "message": "The Resource 'x' was not found.", "target": "x"}
    }
    assert parse_arm_error(_response(404, json.dumps(body).encode())) == (
        "ResourceNotFound",
        "The Resource 'x' was not found.",
    )


def test_bare_error_object_parsed() -> None:
    assert parse_arm_error(_response(400, b'{"code": "InvalidParameter", "message": "bad"}')) == (
        "InvalidParameter",
        "bad",
    )


def test_non_json_error_falls_back_to_headers() -> None:
    response = _response(502, b"<html>Bad Gateway</html>", {"x-ms-error-code": "Gateway"}, "Bad Gateway")
    assert parse_arm_error(response) == ("Gateway", "Bad Gateway")
    assert parse_arm_error(_response(503, b"", reason="Service Unavailable")) == (None, "Service Unavailable")


def _status(poll_url: str, **changes: object) -> LroStatus:
    base = LroStatus(
        method="POST",
        resource_url="https://management.azure.com/x?api-version=v",
        state=LroState.IN_PROGRESS,
        poll_kind=PollKind.ASYNC_OPERATION,
        poll_url=poll_url,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "foreign",
    [
        "https://evil.example.com/op?api-version=v",
        "http://management.azure.com/op",  # same host, but plain http
        "https://management.azure.com:8443/op",  # same host, other port
    ],
)
def test_token_never_sent_to_another_origin(foreign: str) -> None:
    class Recording:
        calls = 0

        def get_token(self) -> str:
            Recording.calls += 1
            return "t0ken"

    client = ArmClient("https://management.azure.com", Recording())
    with pytest.raises(InvalidInputError, match="not on the ARM endpoint"):
        client.poll(_status(foreign))
    done = _status(
        "https://management.azure.com/op",
        state=LroState.SUCCEEDED,
        result_source=ResultSource.RESOURCE,
        result_url=foreign,
    )
    with pytest.raises(InvalidInputError, match="not on the ARM endpoint"):
        client.fetch_result(done)
    assert Recording.calls == 0


def test_poll_refuses_a_finished_operation() -> None:
    client = ArmClient("https://management.azure.com", TOKEN)
    with pytest.raises(InvalidInputError, match="already ended"):
        client.poll(_status("https://management.azure.com/op", state=LroState.SUCCEEDED))


def test_fetch_result_of_a_synchronous_post_is_refused_clearly() -> None:
    client = ArmClient("https://management.azure.com", TOKEN)
    done = _status(
        "https://management.azure.com/op", state=LroState.SUCCEEDED, result_source=ResultSource.INITIAL
    )
    with pytest.raises(InvalidInputError, match="finished in its first answer"):
        client.fetch_result(done)


def test_fetch_result_with_nothing_to_fetch() -> None:
    client = ArmClient("https://management.azure.com", TOKEN)
    done = _status("https://management.azure.com/op", state=LroState.SUCCEEDED)
    assert client.fetch_result(done) is None


def test_repr_hides_the_token() -> None:
    assert "t0ken" not in repr(ArmClient("https://management.azure.com", TOKEN))
