"""A loopback HTTP server for tests that answers each request with the next answer of a script.

It plays a service that answers *off its spec* (a body that is not JSON, a header that is missing, a
link to somewhere else), which neither Azurite nor the compute emulator will do: the seam for showing
that such answers become :class:`~backup.errors.UnexpectedResponseError`, not the caller's fault. Every
request is recorded (method, path with query, headers) so a test can check what was asked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass(frozen=True)
class Answer:
    """One scripted answer: status, headers and body (bytes, or text sent as UTF-8)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | str = b""


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


class ScriptedServer:
    """``with ScriptedServer(Answer(...), ...) as server:`` talk to ``server.url``; ``server.seen`` logs.

    Answers are given out in order; an answer may also be a function of the request's path (for
    links that must point back at this server). Past the end of the script every request gets 599.
    """

    def __init__(self, *script: Answer | Callable[[str], Answer]) -> None:
        self.script = list(script)
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output quiet

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received = self.rfile.read(length) if length else b""
                with server._lock:
                    server.seen.append(Seen(self.command, self.path, dict(self.headers.items()), received))
                    step = server.script.pop(0) if server.script else Answer(599, body="script ended")
                answer = step(self.path) if callable(step) else step
                body = answer.body.encode() if isinstance(answer.body, str) else answer.body
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if not any(name.lower() == "content-length" for name in answer.headers):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_MERGE = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        # A short poll interval: shutdown() waits for the loop's next look, 0.5 s by default.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
