"""The SDK's real ``DurableOrchestrationClient`` drives the host through its webhook API.

The client talks aiohttp to the ``rpcBaseUrl`` of the binding the host hands out, exactly as from a
function with ``@app.durable_client_input``; an HTTP trigger function of this file runs under the host
with ``invoke_function``. Raw ``requests`` calls check status codes and bodies the SDK does not expose.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest
import requests
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from backup.local.durable_host import LocalHost, VirtualClock

START = datetime(2026, 3, 1, tzinfo=UTC)
app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.activity_trigger(input_name="value")
def shout(value: str) -> str:
    return value.upper()


@app.orchestration_trigger(context_name="context")
def echo(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    loud = yield context.call_activity("shout", context.get_input()["text"])
    return {"loud": loud}


@app.orchestration_trigger(context_name="context")
def gatekeeper(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    context.set_custom_status("waiting")
    data = yield context.wait_for_external_event("open")
    return {"opened_with": data}


@app.route(route="orchestrators/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = await client.start_new(req.route_params["name"], None, req.get_json())
    return client.create_check_status_response(req, instance_id)


@pytest.fixture
def host() -> Iterator[LocalHost]:
    with LocalHost(app, clock=VirtualClock(START)) as running:
        yield running


def wait_for_status(host: LocalHost, instance_id: str, wanted: str) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = host.run_client(lambda client: client.get_status(instance_id))
        if status and status.runtime_status is not None and status.runtime_status.value == wanted:
            return status
        time.sleep(0.02)
    raise AssertionError(f"{instance_id} never reached {wanted}")


def test_http_trigger_starts_an_orchestration_and_returns_check_status_links(host: LocalHost) -> None:
    request = func.HttpRequest(
        method="POST",
        url="http://func.example:7071/api/orchestrators/echo",
        route_params={"name": "echo"},
        body=json.dumps({"text": "hello"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    response = host.invoke_function("http_start", req=request)
    assert response.status_code == 202
    body = json.loads(response.get_body())
    instance_id = body["id"]
    assert response.headers["Location"] == body["statusQueryGetUri"]
    assert body["statusQueryGetUri"].startswith(
        f"http://func.example:7071/runtime/webhooks/durabletask/instances/{instance_id}?taskHub=TestHubName"
    )
    status = wait_for_status(host, instance_id, "Completed")
    assert status.output == {"loud": "HELLO"}
    assert status.input_ == json.dumps({"text": "hello"})  # the extension shows the client's JSON text
    assert status.name == "echo"
    assert status.created_time is not None


def test_client_start_status_history_and_input(host: LocalHost) -> None:
    instance_id = host.run_client(lambda client: client.start_new("echo", "fixed-id-1", {"text": "abc"}))
    assert instance_id == "fixed-id-1"
    wait_for_status(host, instance_id, "Completed")
    status = host.run_client(
        lambda client: client.get_status(instance_id, show_history=True, show_history_output=True)
    )
    events = status.historyEvents
    assert [e["EventType"] for e in events] == ["ExecutionStarted", "TaskCompleted", "ExecutionCompleted"]
    assert events[0]["FunctionName"] == "echo"
    assert events[1]["FunctionName"] == "shout" and events[1]["Result"] == "ABC"
    assert "ScheduledTime" in events[1] and "TaskScheduledId" not in events[1]
    assert events[2]["OrchestrationStatus"] == "Completed" and events[2]["Result"] == {"loud": "ABC"}
    quiet = host.run_client(lambda client: client.get_status(instance_id, show_history=True))
    assert "Result" not in quiet.historyEvents[1]


def test_client_raise_event_and_custom_status(host: LocalHost) -> None:
    instance_id = host.run_client(lambda client: client.start_new("gatekeeper"))
    running = wait_for_status(host, instance_id, "Running")
    assert running.custom_status == "waiting"
    host.run_client(lambda client: client.raise_event(instance_id, "open", {"key": 7}))
    done = wait_for_status(host, instance_id, "Completed")
    # As on the real extension (azure-functions-durable-python issue #295): the SDK client JSON-encodes
    # the data before posting it as JSON, so the orchestrator receives the JSON text, not the object.
    assert done.output == {"opened_with": '{"key": 7}'}
    with pytest.raises(Exception, match="is gone"):
        host.run_client(lambda client: client.raise_event(instance_id, "open", 1))


def test_client_terminate(host: LocalHost) -> None:
    instance_id = host.run_client(lambda client: client.start_new("gatekeeper"))
    wait_for_status(host, instance_id, "Running")
    host.run_client(lambda client: client.terminate(instance_id, "no longer needed"))
    status = wait_for_status(host, instance_id, "Terminated")
    assert status.output == "no longer needed"
    host.run_client(lambda client: client.terminate(instance_id, "again"))  # 410: accepted by the SDK


def test_unknown_instances_are_404(host: LocalHost) -> None:
    status = host.run_client(lambda client: client.get_status("missing-instance"))
    assert not status  # the SDK's falsy "no such instance" status, from a 404 with an empty body
    with pytest.raises(Exception, match="No instance with ID missing-instance found"):
        host.run_client(lambda client: client.raise_event("missing-instance", "open", 1))
    with pytest.raises(Exception, match="No instance with ID 'missing-instance' found"):
        host.run_client(lambda client: client.terminate("missing-instance", "why"))
    purged = host.run_client(lambda client: client.purge_instance_history("missing-instance"))
    assert purged.instances_deleted == 0


def test_start_conflicts_and_unknown_orchestrators(host: LocalHost) -> None:
    host.run_client(lambda client: client.start_new("gatekeeper", "singleton"))
    with pytest.raises(
        Exception, match=r"An Orchestration instance with the status (Pending|Running) already"
    ):
        host.run_client(lambda client: client.start_new("gatekeeper", "singleton"))
    with pytest.raises(Exception, match="The function 'nope' doesn't exist, is disabled"):
        host.run_client(lambda client: client.start_new("nope"))


def test_query_and_purge(host: LocalHost) -> None:
    first = host.run_client(lambda client: client.start_new("echo", None, {"text": "x"}))
    second = host.run_client(lambda client: client.start_new("gatekeeper"))
    wait_for_status(host, first, "Completed")
    wait_for_status(host, second, "Running")
    everything = host.run_client(lambda client: client.get_status_all())
    assert {s.instance_id for s in everything} == {first, second}
    completed = host.run_client(
        lambda client: client.get_status_by(runtime_status=[OrchestrationRuntimeStatus.Completed])
    )
    assert [s.instance_id for s in completed] == [first]
    purged = host.run_client(lambda client: client.purge_instance_history(first))
    assert purged.instances_deleted == 1
    assert not host.run_client(lambda client: client.get_status(first))


def test_raw_status_codes_and_shapes(host: LocalHost) -> None:
    base = host.webhook.rpc_base_url
    running_id = host.start_new("gatekeeper")
    wait_for_status(host, running_id, "Running")
    running = requests.get(f"{base}instances/{running_id}", timeout=5)
    assert running.status_code == 202
    assert running.headers["Retry-After"] == "5"
    assert running.json()["runtimeStatus"] == "Running"
    assert running.json()["createdTime"] == "2026-03-01T00:00:00Z"
    assert requests.get(f"{base}instances/nope", timeout=5).status_code == 404
    assert requests.get(f"{base}instances/nope", timeout=5).content == b""
    not_json = requests.post(
        f"{base}instances/{running_id}/raiseEvent/open",
        data="hi",
        headers={"Content-Type": "text/plain"},
        timeout=5,
    )
    assert not_json.status_code == 400
    assert not_json.json() == {"Message": "Only application/json request content is supported"}
    still_running = requests.delete(f"{base}instances/{running_id}", timeout=5)
    assert still_running.status_code == 412
    bad_body = requests.post(f"{base}orchestrators/echo", data="{not json", timeout=5)
    assert bad_body.status_code == 400 and bad_body.json()["Message"] == "Invalid JSON content"
    started = requests.post(f"{base}orchestrators/echo/raw-1", json={"text": "raw"}, timeout=5)
    assert started.status_code == 202 and started.headers["Retry-After"] == "10"
    # The management links in the answer point at the public webhook path, which the host serves too.
    status_url = started.json()["statusQueryGetUri"]
    assert "/runtime/webhooks/durabletask/instances/raw-1?" in status_url
    deadline = time.monotonic() + 10
    while (answer := requests.get(status_url, timeout=5)).status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert answer.status_code == 200
    assert answer.json()["output"] == {"loud": "RAW"}
    assert answer.json()["input"] == {"text": "raw"}  # a raw JSON body is stored as the object itself


def test_client_works_across_hosts_in_one_process() -> None:
    # The SDK keeps one aiohttp session per process; each host closes it on its own loop when it stops.
    for _ in range(2):
        with LocalHost(app, clock=VirtualClock(START)) as host:
            instance_id = host.run_client(lambda client: client.start_new("echo", None, {"text": "again"}))
            assert wait_for_status(host, instance_id, "Completed").output == {"loud": "AGAIN"}


def test_instance_query_pages_in_instance_id_order(host: LocalHost) -> None:
    base = host.webhook.rpc_base_url
    ids = [f"run-a-disk-{i:04d}" for i in (4, 0, 3, 1, 2, 5, 6)]  # created out of order
    for instance_id in ids:
        host.start_new("gatekeeper", instance_id=instance_id)
    host.start_new("gatekeeper", instance_id="run-b-disk-0000")  # another prefix
    for instance_id in ids:
        wait_for_status(host, instance_id, "Running")
    host.raise_event("run-a-disk-0003", "open", 1)
    wait_for_status(host, "run-a-disk-0003", "Completed")

    pages, token = [], None
    while True:
        headers = {"x-ms-continuation-token": token} if token else {}
        answer = requests.get(
            f"{base}instances/?instanceIdPrefix=run-a-disk-&top=3&showInput=false", headers=headers, timeout=5
        )
        assert answer.status_code == 200
        assert "x-ms-continuation-token" in answer.headers  # always there; empty after the last page
        pages.append([s["instanceId"] for s in answer.json()])
        token = answer.headers["x-ms-continuation-token"]
        if not token:
            break
    assert pages == [
        ["run-a-disk-0000", "run-a-disk-0001", "run-a-disk-0002"],
        ["run-a-disk-0003", "run-a-disk-0004", "run-a-disk-0005"],
        ["run-a-disk-0006"],
    ]
    # Filters combine with paging: the running ones only.
    running = requests.get(
        f"{base}instances/?instanceIdPrefix=run-a-disk-&runtimeStatus=Running,Pending&top=100", timeout=5
    ).json()
    assert [s["instanceId"] for s in running] == sorted(set(ids) - {"run-a-disk-0003"})
    # Without top, a page holds at most 100 (the extension's default), as many as there are here.
    assert len(requests.get(f"{base}instances/", timeout=5).json()) == len(ids) + 1
    # A token that no query gave out is refused.
    bad = requests.get(f"{base}instances/", headers={"x-ms-continuation-token": "not-a-token"}, timeout=5)
    assert bad.status_code == 400


def test_instance_query_default_page_is_100(host: LocalHost) -> None:
    for i in range(105):
        host.start_new("echo", input={"text": "x"}, instance_id=f"many-{i:03d}")
    page, token = host.query_instances(prefix="many-")
    assert len(page) == 100 and token is not None
    rest, last = host.query_instances(prefix="many-", continuation=token)
    assert [s.instance_id for s in rest] == [f"many-{i:03d}" for i in range(100, 105)] and last is None
