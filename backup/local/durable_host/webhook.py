"""The Durable extension's HTTP management API, served on loopback for the SDK's client.

``DurableOrchestrationClient`` (what ``@app.durable_client_input`` gives a function) is built from a
JSON *client binding* and talks HTTP (aiohttp) to its ``rpcBaseUrl``. This server plays that endpoint:
the same routes, status codes and JSON shapes as the extension's ``HttpApiHandler``, under both the
local RPC prefix (``/durabletask/``) and the public webhook prefix (``/runtime/webhooks/durabletask/``)
that the management URLs in a check-status response point to.

    POST   orchestrators/{name}[/{id}]        202 + management links; 400 unknown name or bad JSON;
                                              409 an unfinished instance has that id
    GET    instances/{id}                     200 finished, 202 running (Location, Retry-After: 5),
                                              404 unknown (empty body); showHistory, showHistoryOutput,
                                              showInput (default true), returnInternalServerErrorOnFailure
    GET    instances/                         200 + one page (instance-id order); instanceIdPrefix,
                                              createdTimeFrom/To, runtimeStatus, showInput, top
                                              (default 100); the x-ms-continuation-token request
                                              header asks for the next page, the response header
                                              gives it (empty after the last); 400 a bad token
    DELETE instances/{id}                     200 {"instancesDeleted": 1}, 404, 412 if not finished
    DELETE instances/                         purge by createdTimeFrom (required)/To, runtimeStatus;
                                              404 when nothing was purged
    POST   instances/{id}/terminate?reason=   202, 404, 410 when already finished
    POST   instances/{id}/raiseEvent/{name}   202, 404, 410 when finished, 400 not application/json

Not served: entities, rewind, restart, suspend/resume (501), create-and-wait (``timeout``).
Error bodies are ASP.NET ``HttpError`` objects (``Message``, and ``ExceptionMessage`` where the SDK
reads it).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from backup.errors import AzureHttpError, InvalidInputError
from backup.local.durable_host.history import parse_timestamp
from backup.local.durable_host.host import DEFAULT_PAGE_SIZE
from backup.local.durable_host.status import RuntimeStatus, history_for_status, status_payload
from backup.redact import get_logger

if TYPE_CHECKING:
    from backup.local.durable_host.host import LocalHost

__all__ = ["RPC_PREFIX", "WEBHOOK_PREFIX", "Response", "WebhookServer", "route"]

log = get_logger(__name__)

RPC_PREFIX = "/durabletask/"
WEBHOOK_PREFIX = "/runtime/webhooks/durabletask/"
INSTANCE_ID_PLACEHOLDER = "INSTANCEID"
#: Request header with the continuation token of an instance query, and response header with the next.
CONTINUATION_HEADER = "x-ms-continuation-token"


@dataclass
class Response:
    """An HTTP answer: status, JSON body (``None`` for an empty one) and headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _error(status: int, message: str, exception_message: str | None = None) -> Response:
    body: dict[str, Any] = {"Message": message}
    if exception_message is not None:
        body["ExceptionMessage"] = exception_message
        body["ExceptionType"] = "System.ArgumentException"
        body["StackTrace"] = None
    return Response(status, body)


def _flag(query: dict[str, str], name: str, default: bool) -> bool:
    value = query.get(name, "").strip().lower()
    return {"true": True, "false": False}.get(value, default)


def _int(query: dict[str, str], name: str, default: int) -> int:
    # The extension's int.TryParse: anything that is not a whole number leaves the default.
    value = query.get(name, "").strip()
    try:
        number = int(value) if len(value) <= 10 else default
    except ValueError:
        return default
    return number if number > 0 else default


def _time(query: dict[str, str], name: str) -> datetime | None:
    value = query.get(name)
    if not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def _statuses(query: dict[str, str]) -> list[RuntimeStatus]:
    found = []
    for part in query.get("runtimeStatus", "").split(","):
        try:
            found.append(RuntimeStatus(part.strip()))
        except ValueError:
            continue  # the extension skips values it cannot parse
    return found


class Links:
    """The management URLs of an instance, as the extension builds them."""

    def __init__(self, origin: str, task_hub: str) -> None:
        self.base = origin + WEBHOOK_PREFIX.rstrip("/")
        self.query = f"taskHub={quote(task_hub, safe='')}&connection=Storage"

    def management(self, instance_id: str) -> dict[str, str]:
        """The ``managementUrls``/check-status payload for ``instance_id``."""
        prefix = f"{self.base}/instances/{quote(instance_id, safe='')}"
        q = self.query
        return {
            "id": instance_id,
            "statusQueryGetUri": f"{prefix}?{q}",
            "sendEventPostUri": f"{prefix}/raiseEvent/{{eventName}}?{q}",
            "terminatePostUri": f"{prefix}/terminate?reason={{text}}&{q}",
            "rewindPostUri": f"{prefix}/rewind?reason={{text}}&{q}",
            "purgeHistoryDeleteUri": f"{prefix}?{q}",
            "restartPostUri": f"{prefix}/restart?{q}",
            "suspendPostUri": f"{prefix}/suspend?reason={{text}}&{q}",
            "resumePostUri": f"{prefix}/resume?reason={{text}}&{q}",
        }

    def check_status(self, instance_id: str) -> Response:
        """The 202 answer to a start: links, ``Location`` and ``Retry-After: 10``."""
        links = self.management(instance_id)
        body = {
            key: links[key]
            for key in (
                "id",
                "statusQueryGetUri",
                "sendEventPostUri",
                "terminatePostUri",
                "purgeHistoryDeleteUri",
                "restartPostUri",
                "suspendPostUri",
                "resumePostUri",
            )
        }
        return Response(202, body, {"Location": links["statusQueryGetUri"], "Retry-After": "10"})


def route(
    host: LocalHost,
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
    origin: str,
) -> Response:
    """Answer one request of the management API (``target`` is the path with its query)."""
    parts = urlsplit(target)
    path = unquote(parts.path)
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    for prefix in (RPC_PREFIX, WEBHOOK_PREFIX):
        if path.startswith(prefix) or path == prefix.rstrip("/"):
            path = path[len(prefix) :].strip("/")
            break
    else:
        return Response(404)
    segments = path.split("/") if path else []
    links = Links(origin, host.task_hub)
    try:
        if segments[:1] == ["orchestrators"] and len(segments) in (2, 3):
            if method != "POST":
                return Response(404)
            return _start(host, links, segments[1], segments[2] if len(segments) == 3 else None, body)
        if segments[:1] == ["instances"]:
            return _instances(host, method, segments[1:], query, headers, body, origin)
        return Response(404)
    except InvalidInputError as exc:
        return _error(400, exc.message)
    except AzureHttpError as exc:
        return Response(exc.status)


def _start(host: LocalHost, links: Links, name: str, instance_id: str | None, body: bytes) -> Response:
    text = body.decode("utf-8") if body else None
    if text is not None and text.strip():
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            return _error(400, "Invalid JSON content", str(exc))
    else:
        text = None
    try:
        started = host.start_new_json(name, text, instance_id or None)
    except InvalidInputError as exc:
        if exc.field == "orchestrator":
            return _error(400, "One or more of the arguments submitted is incorrect", exc.problem)
        return _error(400, exc.problem, exc.problem)
    except AzureHttpError as exc:
        if exc.status == 409:
            return _error(409, exc.error_message or "conflict")
        raise
    return links.check_status(started)


def _instances(
    host: LocalHost,
    method: str,
    rest: list[str],
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    origin: str,
) -> Response:
    if not rest or rest == [""]:
        if method == "GET":
            found, token = host.query_instances(
                prefix=query.get("instanceIdPrefix"),
                statuses=_statuses(query),
                created_from=_time(query, "createdTimeFrom"),
                created_to=_time(query, "createdTimeTo"),
                top=_int(query, "top", DEFAULT_PAGE_SIZE),
                continuation=headers.get(CONTINUATION_HEADER) or None,
            )
            show_input = _flag(query, "showInput", True)
            page = [status_payload(s, show_input=show_input) for s in found]
            # The extension always sends the header; it is empty after the last page.
            return Response(200, page, {CONTINUATION_HEADER: token or ""})
        if method == "DELETE":
            created_from = _time(query, "createdTimeFrom")
            if created_from is None:
                return Response(400, "Please provide value for 'createdTimeFrom' parameter.")
            purged = host.purge_where(
                created_from=created_from, created_to=_time(query, "createdTimeTo"), statuses=_statuses(query)
            )
            return Response(200, {"instancesDeleted": purged}) if purged else Response(404)
        return Response(404)
    instance_id = rest[0]
    if len(rest) == 1:
        if method == "GET":
            return _status(host, instance_id, query, origin)
        if method == "DELETE":
            status = host.get_status(instance_id)
            if status is None:
                return Response(404)
            if not status.is_terminal:
                return Response(
                    412,
                    "Only orchestrations in a terminal state can be purged, but the orchestration with "
                    f"instance ID {instance_id} has status {status.runtime_status}",
                )
            host.purge(instance_id)
            return Response(200, {"instancesDeleted": 1})
        return Response(404)
    if method != "POST":
        return Response(404)
    operation = rest[1].lower()
    if operation == "terminate" and len(rest) == 2:
        if host.get_status(instance_id) is None:
            return Response(404)
        return Response(202) if host.terminate(instance_id, query.get("reason", "")) else Response(410)
    if operation == "raiseevent" and len(rest) == 3:
        return _raise_event(host, instance_id, rest[2], headers, body)
    if operation in ("rewind", "restart", "suspend", "resume"):
        return _error(501, f"The local Durable host does not support {rest[1]}.")
    return Response(404)


def _status(host: LocalHost, instance_id: str, query: dict[str, str], origin: str) -> Response:
    status = host.get_status(instance_id)
    if status is None:
        return Response(404)
    history = None
    if _flag(query, "showHistory", False) and status.runtime_status is not RuntimeStatus.PENDING:
        history = history_for_status(
            host.history(instance_id), show_output=_flag(query, "showHistoryOutput", False)
        )
    payload = status_payload(status, show_input=_flag(query, "showInput", True), history_events=history)
    if not status.is_terminal:
        target = f"{origin}{RPC_PREFIX}instances/{quote(instance_id, safe='')}"
        return Response(202, payload, {"Location": target, "Retry-After": "5"})
    failed_as_500 = _flag(query, "returnInternalServerErrorOnFailure", False)
    if status.runtime_status is RuntimeStatus.FAILED and failed_as_500:
        return Response(500, payload)
    return Response(200, payload)


def _raise_event(
    host: LocalHost, instance_id: str, name: str, headers: dict[str, str], body: bytes
) -> Response:
    status = host.get_status(instance_id)
    if status is None:
        return Response(404)
    if status.is_terminal:
        return Response(410)
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        return _error(400, "Only application/json request content is supported")
    text = body.decode("utf-8") if body else "null"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return _error(400, "Invalid JSON content", str(exc))
    host.raise_event_json(instance_id, name, text)
    return Response(202)


class WebhookServer:
    """The management API on ``127.0.0.1`` at a kernel-chosen port, served from a background thread."""

    def __init__(self, host: LocalHost) -> None:
        self._host = host
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve."""
        host = self._host

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length > 0 else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                origin = f"http://{self.headers.get('Host') or '127.0.0.1'}"
                try:
                    answer = route(host, self.command, self.path, headers, body, origin)
                except Exception as exc:  # the extension answers 500 with its message
                    log.exception("webhook %s %s failed", self.command, self.path)
                    answer = _error(500, "Something went wrong while processing your request", str(exc))
                payload = b"" if answer.body is None else json.dumps(answer.body).encode("utf-8")
                self.send_response(answer.status, HTTPStatus(answer.status).phrase)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if payload:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("webhook: " + format, *args)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown() quick (it waits for the serving loop's next poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="durable-webhook", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._server is None:
            raise RuntimeError("the webhook server is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def rpc_base_url(self) -> str:
        """Where the SDK client sends its requests (``.../durabletask/``)."""
        return self.origin + RPC_PREFIX

    @property
    def base_url(self) -> str:
        """The public webhook base the management URLs use."""
        return self.origin + WEBHOOK_PREFIX.rstrip("/")

    def client_binding(self) -> str:
        """The client binding JSON the Functions host passes to a durable client argument."""
        links = Links(self.origin, self._host.task_hub)
        create = f"{links.base}/orchestrators/{{functionName}}[/{{instanceId}}]"
        payload = {
            "taskHubName": self._host.task_hub,
            "creationUrls": {
                "createNewInstancePostUri": f"{create}?",
                "createAndWaitOnNewInstancePostUri": f"{create}?timeout={{timeoutInSeconds}}"
                "&pollingInterval={intervalInSeconds}&",
            },
            "managementUrls": links.management(INSTANCE_ID_PLACEHOLDER),
            "baseUrl": links.base,
            "requiredQueryStringParameters": "",
            "rpcBaseUrl": self.rpc_base_url,
        }
        return json.dumps(payload)
