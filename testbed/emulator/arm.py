"""The emulated ARM endpoint for managed disks and snapshots: HTTPS on loopback, spec routes, LRO URLs.

:class:`ComputeEmulator` serves the DiskRP.json operations the product needs (see ``docs/emulator.md``)
in front of a :class:`~testbed.emulator.service.ComputeService`, and the control surface under
``/_emulator/``. Every ARM call goes through the same gate, in ARM's order:

1. ``Authorization: Bearer <token>`` checked (401 ``AuthenticationFailed`` / ``InvalidAuthenticationToken``
   / ``ExpiredAuthenticationToken``);
2. ``api-version`` present and ``2026-03-02`` (400 ``MissingApiVersionParameter`` /
   ``NoRegisteredProviderFound``);
3. the route named by the spec's path (404 ``InvalidResourceType`` otherwise, 405 for another verb);
4. injected call faults (429 with ``Retry-After``, 500, a TCP reset, a malformed 200, or the call
   carried out and its answer lost to a reset);
5. the operation itself.

Long-running answers are 202 with ``Location`` (``...&monitor=true``), ``Azure-AsyncOperation`` and
``Retry-After``; see :mod:`testbed.emulator.operations`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from backup.redact import get_logger, redact
from testbed.emulator import arm_errors, control, tls
from testbed.emulator.arm_errors import ArmError
from testbed.emulator.operations import STATUS_OPERATION, Operation
from testbed.emulator.resources import ResourceKey, ResourceType
from testbed.emulator.schema import API_VERSION
from testbed.emulator.service import Accepted, ComputeService, DataPlanePort, Reply, Settings
from testbed.emulator.tokens import TokenAuthority

log = get_logger(__name__)

_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = r"/resourceGroups/(?P<rg>[^/]+)"
_TYPE = r"/providers/Microsoft\.Compute/(?P<type>disks|snapshots)"


@dataclass(frozen=True)
class Route:
    """One spec path: its pattern and the operationId of each verb it takes."""

    pattern: re.Pattern[str]
    verbs: dict[str, str]  # HTTP method -> operationId template ("{Type}" is Disks or Snapshots)


ROUTES = (
    Route(re.compile(f"{_SUB}{_TYPE}/?", re.I), {"GET": "{Type}_List"}),
    # Snapshots alone take PATCH here (Snapshots_Update, tags only); a disk's PATCH stays 405.
    Route(
        re.compile(rf"{_SUB}{_RG}/providers/Microsoft\.Compute/(?P<type>snapshots)/(?P<name>[^/]+)/?", re.I),
        {
            "GET": "{Type}_Get",
            "PUT": "{Type}_CreateOrUpdate",
            "DELETE": "{Type}_Delete",
            "PATCH": "{Type}_Update",
        },
    ),
    Route(re.compile(f"{_SUB}{_RG}{_TYPE}/?", re.I), {"GET": "{Type}_ListByResourceGroup"}),
    Route(
        re.compile(f"{_SUB}{_RG}{_TYPE}/(?P<name>[^/]+)/?", re.I),
        {"GET": "{Type}_Get", "PUT": "{Type}_CreateOrUpdate", "DELETE": "{Type}_Delete"},
    ),
    Route(
        re.compile(f"{_SUB}{_RG}{_TYPE}/(?P<name>[^/]+)/beginGetAccess", re.I),
        {"POST": "{Type}_GrantAccess"},
    ),
    Route(
        re.compile(f"{_SUB}{_RG}{_TYPE}/(?P<name>[^/]+)/endGetAccess", re.I),
        {"POST": "{Type}_RevokeAccess"},
    ),
    Route(
        re.compile(
            rf"{_SUB}/providers/Microsoft\.Compute/locations/(?P<loc>[^/]+)/DiskOperations/(?P<op>[^/]+)",
            re.I,
        ),
        {"GET": STATUS_OPERATION},
    ),
)
_COMPUTE_PATH = re.compile(r"/providers/Microsoft\.Compute/(?P<type>[^/?]+)", re.I)


class _Reset(Exception):
    """Answer this request by resetting the connection (an injected fault)."""


class _Malformed(Exception):
    """Answer this request 200 with an HTML page instead of ARM's JSON (an injected fault)."""


#: What a ``malformed`` fault answers: a page a gateway in the way might send, with a 200.
MALFORMED_PAGE = b"<html><body><h1>Welcome</h1><p>an answer off ARM's spec (injected fault)</p></body></html>"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Loopback only, and restarts in tests must not wait for TIME_WAIT.
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], emulator: ComputeEmulator, context: ssl.SSLContext | None
    ) -> None:
        self.emulator = emulator
        self.tls_context = context
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        if self.tls_context is None:
            return sock, address
        # The handshake runs lazily in the connection's own thread, so one slow client cannot stall accept().
        return self.tls_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm the body would wait for the
    # client's delayed ACK of the headers: about 40 ms on every answer.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):  # every request passes here: redact only what is logged
            log.debug("%s " + format, self.address_string(), *(redact(str(a)) for a in args))

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        emulator = self.server.emulator
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        body = self._read_body()
        try:
            if parts.path.rstrip("/") == control.PREFIX or parts.path.startswith(control.PREFIX + "/"):
                status, content_type, payload = control.handle(
                    emulator, method, parts.path[len(control.PREFIX) :], query, body
                )
                self._send(status, payload, {"Content-Type": content_type})
                return
            self._send_arm(
                *emulator.handle_arm(method, parts.path, query, body, self.headers.get("Authorization"))
            )
        except _Reset:
            self._reset_connection()
        except _Malformed:
            headers = {"Content-Type": "text/html", "x-ms-request-id": str(uuid.uuid4())}
            self._send(200, MALFORMED_PAGE, headers)
        except ArmError as error:
            self._send_arm(error.status, error.body(), error.headers)
        except Exception:
            log.exception("emulator failed on %s %s", method, parts.path)
            failure = arm_errors.internal_error()
            self._send_arm(failure.status, failure.body(), {})

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_arm(self, status: int, body: dict[str, Any] | None, headers: dict[str, str]) -> None:
        out = dict(headers)
        out["x-ms-request-id"] = str(uuid.uuid4())
        out["x-ms-correlation-request-id"] = self.headers.get("x-ms-correlation-request-id") or str(
            uuid.uuid4()
        )
        if "x-ms-client-request-id" in self.headers:
            out["x-ms-client-request-id"] = self.headers["x-ms-client-request-id"]
        payload = b""
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            out["Content-Type"] = "application/json; charset=utf-8"
        self._send(status, payload, out)

    def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    def _reset_connection(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN: a "connection reset by peer".
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        try:
            raw = self.connection.unwrap() if isinstance(self.connection, ssl.SSLSocket) else self.connection
        except (OSError, ValueError):
            raw = self.connection
        raw.close()


class ComputeEmulator:
    """ARM for disks and snapshots on a loopback port; see the module docstring and ``docs/emulator.md``.

    ``operation_polls`` is how many polls a long-running operation stays ``InProgress`` (0: answer
    synchronously with 200); ``page_size`` is how many items a list page holds (small, so clients page);
    ``retry_after`` is the ``Retry-After`` sent with 202s. ``tls`` serves HTTPS with a fresh self-signed
    certificate (``ca_cert``); without it, plain HTTP.
    """

    def __init__(
        self,
        data_plane: DataPlanePort,
        *,
        operation_polls: int = 2,
        page_size: int = 2,
        retry_after: int = 1,
        subscription_id: str | None = None,
        tls_enabled: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Configure; nothing listens until :meth:`start`."""
        self.data_plane = data_plane
        settings = Settings(operation_polls=operation_polls, page_size=page_size, retry_after=retry_after)
        self.service = ComputeService(
            data_plane, subscription_id=subscription_id or str(uuid.uuid4()), settings=settings
        )
        self.authority = TokenAuthority()
        self.token = self.authority.mint()
        self._tls = tls_enabled
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._folder: Path | None = None
        self.ca_cert: Path | None = None
        self.endpoint = ""

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> ComputeEmulator:
        """Listen (on a kernel-chosen port by default) and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("the compute emulator is already running")
        context = None
        if self._tls:
            self._folder = Path(tempfile.mkdtemp(prefix="compute-emulator-"))
            cert, key = tls.write_self_signed(self._folder)
            self.ca_cert = cert
            context = tls.server_context(cert, key)
        self._server = _Server((self._host, self._port), self, context)
        port = self._server.server_address[1]
        self.endpoint = f"{'https' if self._tls else 'http'}://{self._host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="compute-emulator",
            kwargs={"poll_interval": 0.2},
            daemon=True,
        )
        self._thread.start()
        log.info("compute emulator listening at %s (subscription %s)", self.endpoint, self.subscription_id)
        return self

    def stop(self) -> None:
        """Stop serving, close the port and remove the certificate folder."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> ComputeEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- facts for clients --------------------------------------------------------------------------

    @property
    def subscription_id(self) -> str:
        """The one subscription this ARM knows."""
        return self.service.subscription_id

    @property
    def control_url(self) -> str:
        """Base URL of the control surface."""
        return self.endpoint + control.PREFIX

    def mint_token(self, lifetime_seconds: int = 3600) -> str:
        """Another bearer token this emulator accepts (negative lifetime: an expired one, for tests)."""
        return self.authority.mint(lifetime_seconds)

    # -- ARM ----------------------------------------------------------------------------------------

    def handle_arm(
        self, method: str, path: str, query: dict[str, str], body: bytes, authorization: str | None
    ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        """Answer one ARM request: ``(status, JSON body or None, headers)``; raises ArmError or _Reset."""
        self.authority.check(authorization)
        match, operation_id = _route(method, path)
        resource_type = _type_of(path, match)
        version = query.get("api-version")
        if not version:
            raise arm_errors.missing_api_version()
        if version != API_VERSION:
            raise arm_errors.unsupported_api_version(version, resource_type, API_VERSION)
        name = match.groupdict().get("name")
        fault = self.service.faults.take_call_fault(operation_id, name)
        if fault is not None and fault.action == "lost":
            # The call takes effect; only its answer is lost.
            log.info("injected fault on %s (%s): lost (the call is carried out)", operation_id, name)
            # Refused (ArmError): nothing happened, and the client hears nothing either way.
            with contextlib.suppress(ArmError):
                self._carry_out(method, path, query, body, operation_id, match, resource_type)
            raise _Reset()
        if fault is not None:
            log.info("injected fault on %s (%s): %s", operation_id, name, fault.action)
            if fault.action == "reset":
                raise _Reset()
            if fault.action == "malformed":
                raise _Malformed()
            if fault.action == "429":
                raise arm_errors.too_many_requests(fault.retry_after)
            raise arm_errors.internal_error()
        return self._carry_out(method, path, query, body, operation_id, match, resource_type)

    def _carry_out(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: bytes,
        operation_id: str,
        match: re.Match[str],
        resource_type: str,
    ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        """Do what an authorised ARM request asks; its answer (raises :class:`ArmError`)."""
        groups = match.groupdict()
        if operation_id == STATUS_OPERATION:
            self.service.check_scope(groups["sub"], None)
            return self._operation_status(groups["op"], monitor=query.get("monitor", "").lower() == "true")
        kind: ResourceType = "disks" if resource_type.lower() == "disks" else "snapshots"
        if operation_id.endswith("_List") or operation_id.endswith("_ListByResourceGroup"):
            items, token = self.service.list(groups["sub"], groups.get("rg"), kind, query.get("$skiptoken"))
            page: dict[str, Any] = {"value": items}
            if token is not None:
                page["nextLink"] = (
                    f"{self.endpoint}{path}?api-version={API_VERSION}&$skiptoken={quote(token)}"
                )
            return 200, page, {}
        key = ResourceKey(groups["sub"], groups["rg"], kind, groups["name"])
        action: Callable[[], Reply | Accepted]
        if operation_id.endswith("_Get"):
            action = lambda: self.service.get(key)  # noqa: E731
        elif operation_id.endswith("_CreateOrUpdate"):
            parsed = _json_body(body, required=True)
            action = lambda: self.service.create_or_update(key, parsed)  # noqa: E731
        elif operation_id.endswith("_Delete"):
            action = lambda: self.service.delete(key)  # noqa: E731
        elif operation_id.endswith("_Update"):
            parsed = _json_body(body, required=True)
            action = lambda: self.service.update_tags(key, parsed)  # noqa: E731
        elif operation_id.endswith("_GrantAccess"):
            parsed = _json_body(body, required=True)
            action = lambda: self.service.grant_access(key, parsed)  # noqa: E731
        else:
            action = lambda: self.service.revoke_access(key)  # noqa: E731
        return self._answer(action())

    def _answer(self, result: Reply | Accepted) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        if isinstance(result, Reply):
            return result.status, result.body, {}
        return 202, result.body, self._operation_headers(result.operation)

    def _operation_headers(self, operation: Operation) -> dict[str, str]:
        status_url = (
            f"{self.endpoint}/subscriptions/{self.subscription_id}/providers/Microsoft.Compute/locations/"
            f"{operation.location}/DiskOperations/{operation.id}?api-version={API_VERSION}"
        )
        return {
            "Azure-AsyncOperation": status_url,
            "Location": status_url + "&monitor=true",
            "Retry-After": str(self.service.settings.retry_after),
        }

    def _operation_status(
        self, operation_id: str, *, monitor: bool
    ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        operation = self.service.operation(operation_id)
        operation.advance()
        if not monitor:
            headers = {} if operation.done else {"Retry-After": str(self.service.settings.retry_after)}
            return 200, operation.status_body(), headers
        if not operation.done:
            return 202, None, self._operation_headers(operation)
        if operation.status != "Succeeded":
            assert operation.error is not None
            raise operation.error
        return 200, operation.result, {}


def _route(method: str, path: str) -> tuple[re.Match[str], str]:
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match is None:
            continue
        template = route.verbs.get(method)
        if template is None:
            raise arm_errors.method_not_allowed(method)
        kind = (match.groupdict().get("type") or "").lower()
        return match, template.replace("{Type}", "Disks" if kind == "disks" else "Snapshots")
    compute = _COMPUTE_PATH.search(path)
    raise arm_errors.invalid_resource_type(compute["type"] if compute else path.strip("/").split("/")[-1])


def _type_of(path: str, match: re.Match[str]) -> str:
    kind = match.groupdict().get("type")
    if kind:
        return str(kind)
    return "locations/DiskOperations"


def _json_body(body: bytes, *, required: bool) -> Any:
    if not body.strip():
        if required:
            raise arm_errors.invalid_request_content("the request body is empty")
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise arm_errors.invalid_request_content(str(error)) from None
