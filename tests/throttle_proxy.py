"""A loopback HTTP proxy for tests: answers the first N requests 429 + Retry-After, forwards the rest.

It is the seam the storage tests use to show "429 then success" against a real Azurite: the client under
test talks to the proxy, which throttles as Azure does (status 429, ``x-ms-error-code``, ``Retry-After``)
and then forwards requests unchanged (method, path, query, headers, body) to the upstream server and
relays its answer. Shared Key does not sign the host, so signatures made for the proxy's URL hold.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}


class ThrottlingProxy:
    """``with ThrottlingProxy(upstream, throttle=1) as proxy:`` use ``proxy.url``; ``proxy.seen`` logs."""

    def __init__(self, upstream: str, *, throttle: int = 1, retry_after: str = "1") -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.throttle = throttle
        self.retry_after = retry_after
        self.seen: list[tuple[str, str, int]] = []  # (method, path, status answered)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output quiet

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    throttled = proxy.throttle > 0
                    if throttled:
                        proxy.throttle -= 1
                if throttled:
                    payload = b"" if self.command == "HEAD" else b'{"error":"ServerBusy"}'
                    self.send_response(429, "Too Many Requests")
                    self.send_header("Retry-After", proxy.retry_after)
                    self.send_header("x-ms-error-code", "ServerBusy")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    proxy.seen.append((self.command, self.path, 429))
                    return
                connection = http.client.HTTPConnection(*proxy._upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    connection.request(self.command, self.path, body=body or None, headers=headers)
                    answer = connection.getresponse()
                    data = answer.read()
                finally:
                    connection.close()
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                # A HEAD answer's Content-Length is the blob's size, not the (empty) body's.
                length_header = answer.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length_header or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                proxy.seen.append((self.command, self.path, answer.status))

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_MERGE = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="throttling-proxy", daemon=True
        )

    def __enter__(self) -> ThrottlingProxy:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
