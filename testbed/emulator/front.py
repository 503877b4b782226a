"""The HTTP plumbing of the data-plane front: a loopback server that forwards to Azurite byte for byte.

The front listens on its own loopback port. Each request is read whole into a :class:`Request` and
handed to one callable (the data plane's dispatcher), which either answers it (a :class:`Reply`) or
sends it on to Azurite unchanged through :class:`Forwarder`: same method, path, query, headers (the
``Host`` header too: Azurite compares it with a copy source's host, and Shared Key does not sign it) and
body. Replies stream their body, so reading a whole disk through the front never holds it in memory.

Storage error answers are built by :func:`storage_error` in the shape Azure uses: an XML ``Error``
document with ``Code`` and ``Message`` (and ``AuthenticationErrorDetail`` or ``HeaderName`` where Azure
adds them), ``x-ms-error-code`` and ``x-ms-request-id`` headers.
"""

from __future__ import annotations

import http.client
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

from backup.redact import get_logger, strip_query

__all__ = ["Forwarder", "FrontServer", "Reply", "Request", "storage_error", "storage_headers"]

log = get_logger(__name__)

#: The x-ms-version the front states on the answers it makes itself when the caller did not say one.
DEFAULT_VERSION = "2021-08-06"
_STREAM_CHUNK = 1 << 20
# Hop-by-hop headers (RFC 9110 section 7.6.1) are the connection's business, not the message's.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}
)


@dataclass
class Request:
    """One HTTP request as the front received it; ``path`` is the raw target (path and query)."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    host: str  # the front's own "host:port", for building URLs the caller would recognise

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    @property
    def url_path(self) -> str:
        """The path without the query, still percent-encoded as sent."""
        return urlsplit(self.path).path

    @property
    def query(self) -> str:
        """The raw query string (no ``?``)."""
        return urlsplit(self.path).query

    def query_param(self, name: str) -> str | None:
        """The decoded value of query parameter ``name`` (names compared case-insensitively)."""
        wanted = name.lower()
        return next(
            (value for key, value in parse_qsl(self.query, keep_blank_values=True) if key.lower() == wanted),
            None,
        )

    @property
    def url(self) -> str:
        """The full URL the caller addressed."""
        return f"http://{self.host}{self.path}"


@dataclass
class Reply:
    """An answer: status, headers, and a body given as bytes or an iterable of byte chunks."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | Iterable[bytes] = b""
    length: int | None = None  # Content-Length when ``body`` is an iterable; None means chunked

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def set_header(self, name: str, value: str | None) -> None:
        """Replace every ``name`` header with ``value`` (remove them when ``value`` is ``None``)."""
        wanted = name.lower()
        self.headers = [(key, old) for key, old in self.headers if key.lower() != wanted]
        if value is not None:
            self.headers.append((name, value))


def http_now() -> str:
    """The current time as an HTTP date."""
    return format_datetime(datetime.now(UTC), usegmt=True)


def storage_headers(request: Request) -> list[tuple[str, str]]:
    """The headers every storage answer carries: request id, version, date, server."""
    headers = [
        ("x-ms-request-id", str(uuid.uuid4())),
        ("x-ms-version", request.header("x-ms-version") or DEFAULT_VERSION),
        ("Date", http_now()),
        ("Server", "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0"),
    ]
    client_id = request.header("x-ms-client-request-id")
    if client_id:
        headers.append(("x-ms-client-request-id", client_id))
    return headers


def storage_error(request: Request, status: int, code: str, message: str, **extra: str) -> Reply:
    """An error answer as Azure Storage words it; ``extra`` adds elements (e.g. ``HeaderName=...``)."""
    headers = storage_headers(request)
    request_id = headers[0][1]
    time = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    elements = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in extra.items())
    document = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}\nRequestId:{request_id}\nTime:{time}"
        f"</Message>{elements}</Error>"
    )
    body = document.encode("utf-8")
    headers += [("x-ms-error-code", code), ("Content-Type", "application/xml")]
    if request.method == "HEAD":
        body = b""  # HEAD answers carry the code in x-ms-error-code only
    return Reply(status, headers, body)


class Forwarder:
    """Sends requests on to Azurite unchanged, over one kept-alive connection per thread."""

    def __init__(self, upstream: str, *, timeout: float = 300.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self._local = threading.local()

    def _connection(self, fresh: bool) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None or fresh:
            if connection is not None:
                connection.close()
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.connection = connection
        return connection

    def release(self) -> None:
        """Close this thread's connection to Azurite (its client went away)."""
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def forward(self, request: Request) -> Reply:
        """Send ``request`` to Azurite as it came and return Azurite's answer (body streamed)."""
        headers = [(k, v) for k, v in request.headers if k.lower() not in _HOP_BY_HOP]
        chunked = (request.header("transfer-encoding") or "").lower() == "chunked"
        for attempt in (1, 2):
            connection = self._connection(fresh=attempt == 2)
            try:
                connection.putrequest(request.method, request.path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    connection.putheader(name, value)
                if chunked:
                    # The caller signed a request without Content-Length; keep it so.
                    connection.putheader("Transfer-Encoding", "chunked")
                    connection.endheaders()
                    if request.body:
                        connection.send(f"{len(request.body):X}\r\n".encode() + request.body + b"\r\n")
                    connection.send(b"0\r\n\r\n")
                else:
                    connection.endheaders(request.body or None)
                response = connection.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection Azurite had closed: the request never arrived, send it again.
                if attempt == 2:
                    raise
                continue
            break
        reply_headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
        length = response.getheader("Content-Length")
        if request.method == "HEAD" or response.status in (204, 304):
            response.read()
            return Reply(response.status, reply_headers, b"")
        return Reply(
            response.status, reply_headers, _drain(response, connection), int(length) if length else None
        )


def _drain(response: http.client.HTTPResponse, connection: http.client.HTTPConnection) -> Iterator[bytes]:
    complete = False
    try:
        while chunk := response.read(_STREAM_CHUNK):
            yield chunk
        complete = True
    finally:
        if not complete:
            connection.close()  # unread bytes would corrupt the next answer on this connection


Handler = Callable[[Request], Reply]


class _FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients pool connections to the front
    # Headers and body go out in separate writes; with Nagle's algorithm the body would wait for the
    # client's delayed ACK of the headers: about 40 ms on every answer with a body.
    disable_nagle_algorithm = True
    server: _FrontHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # the default writes every request to stderr; errors are logged below

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.on_close()  # one thread per client connection: free its upstream one too

    def _handle(self) -> None:
        try:
            request = Request(
                self.command, self.path, list(self.headers.items()), self._body(), self.server.host
            )
        except ValueError as error:
            self.send_error(400, str(error))
            return
        try:
            reply = self.server.handler(request)
        except Exception:
            log.exception("front: %s %s failed", self.command, strip_query(self.path))
            reply = storage_error(
                request,
                500,
                "InternalError",
                "The server encountered an internal error. Please retry the request.",
            )
        self._send(reply)

    def _body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            pieces: list[bytes] = []
            while True:
                size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                size = int(size_line, 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(pieces)
                pieces.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _send(self, reply: Reply) -> None:
        self.send_response_only(reply.status)
        for name, value in reply.headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        head_only = self.command == "HEAD" or reply.status in (204, 304)
        if isinstance(reply.body, bytes | bytearray):
            body: bytes | Iterable[bytes] = reply.body
            length: int | None = len(reply.body)
        else:
            body, length = reply.body, reply.length
        if head_only:
            original = reply.header("Content-Length")
            if original is not None and reply.status not in (204, 304):
                self.send_header("Content-Length", original)
            elif reply.status not in (204, 304):
                self.send_header("Content-Length", "0")
            self.end_headers()
            if not isinstance(body, bytes | bytearray):
                for _ in body:
                    pass
            return
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        try:
            if isinstance(body, bytes | bytearray):
                self.wfile.write(body)
            else:
                for chunk in body:
                    if not chunk:
                        continue
                    if length is None:
                        self.wfile.write(f"{len(chunk):X}\r\n".encode() + chunk + b"\r\n")
                    else:
                        self.wfile.write(chunk)
                if length is None:
                    self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_MERGE = do_OPTIONS = do_PATCH = _handle


class _FrontHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: Handler, on_close: Callable[[], None]) -> None:
        self.handler = handler
        self.on_close = on_close
        super().__init__(("127.0.0.1", 0), _FrontHandler)
        self.host = f"127.0.0.1:{self.server_address[1]}"


class FrontServer:
    """The loopback server: ``start()`` binds a kernel-chosen port, ``url`` says where, ``stop()`` ends it.

    ``on_close`` runs on a connection's thread when its client hangs up (e.g. :meth:`Forwarder.release`).
    """

    def __init__(self, handler: Handler, on_close: Callable[[], None] = lambda: None) -> None:
        self._handler = handler
        self._on_close = on_close
        self._server: _FrontHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> None:
        """Listen on 127.0.0.1 and serve on a background thread."""
        if self._server is not None:
            raise RuntimeError("the front is already running")
        self._server = _FrontHTTPServer(self._handler, self._on_close)
        self.url = f"http://{self._server.host}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dataplane-front", daemon=True
        )
        self._thread.start()
        log.info("data-plane front listening at %s", self.url)

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    @property
    def running(self) -> bool:
        """Whether the server is up."""
        return self._server is not None
