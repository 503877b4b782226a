"""A loopback proxy in front of a storage endpoint that makes the faults a real network and Azure make.

Put it between the app and a blob or table endpoint (Azurite, or the data plane's front): it forwards
every request unchanged — method, path, query, headers and body — and relays the answer, except where its
plan says otherwise. Only ``Host`` is set to the upstream's, as a client addressing the endpoint itself
would send it (Shared Key signs neither host nor port, so signatures made for the proxy's URL hold; and a
Copy Blob whose source is on the upstream's host is recognised there, as Azurite and the data plane's
front require).

- ``busy``: answer ``503 Server Busy`` itself, as Azure Storage does under load (an XML error body,
  ``x-ms-error-code: ServerBusy``), without forwarding;
- ``throttle``: answer ``429`` with ``Retry-After`` (what ARM and some storage front ends send);
- ``reset``: close the connection without an answer, without forwarding (the request never arrived);
- ``lost``: forward the request, let the server act on it, then close the connection without relaying
  the answer (the request arrived and took effect; the client never hears so) — the fault that tests
  whether a retried call is really idempotent;
- ``forbid``: answer ``403 AuthorizationFailure`` itself, as Azure Storage does to a caller its firewall
  or role assignments refuse — a failure that waiting will not mend, without forwarding.

A plan is either random, per request (``busy=0.08, reset=0.04, lost=0.03``: each request draws once,
from a seeded generator, so a run can be replayed) or scripted (``fail_next(action, count, match=...)``:
the next N requests whose method, path and headers match, after letting the first ``after`` of them
through). ``only`` limits faults to some methods, and ``max_faults`` bounds them in all, so a test or a
soak always ends. Every request is counted in :attr:`FaultProxy.stats` by what happened to it.
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

__all__ = ["ACTIONS", "FaultPlan", "FaultProxy"]

#: The faults a plan may make (see the module docstring).
ACTIONS = ("busy", "throttle", "reset", "lost", "forbid")

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
)
_BUSY_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
    b"<Message>The server is busy. (fault injected by the test bed)</Message></Error>"
)
_FORBID_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationFailure</Code>'
    b"<Message>This request is not authorized to perform this operation. (fault injected by the test bed)"
    b"</Message></Error>"
)


@dataclass
class _Scripted:
    action: str
    count: int
    method: str | None
    path: re.Pattern[str] | None
    header: str | None = None  # a header the request must carry (lower-case name)
    after: int = 0  # matching requests still to let through before the faults


@dataclass
class FaultPlan:
    """What the proxy does to requests: random rates per action, scripted faults, and bounds."""

    busy: float = 0.0
    throttle: float = 0.0
    reset: float = 0.0
    lost: float = 0.0
    forbid: float = 0.0
    seed: int = 0
    only: frozenset[str] | None = None  # methods faults may hit (None: every method)
    max_faults: int | None = None  # faults made in all, at most
    retry_after: int = 1  # seconds, on a throttle
    scripted: list[_Scripted] = field(default_factory=list)  # fail_next's faults, in order

    def __post_init__(self) -> None:
        rates = [self.busy, self.throttle, self.reset, self.lost, self.forbid]
        if any(not 0.0 <= rate <= 1.0 for rate in rates) or sum(rates) > 1.0:
            raise ValueError("fault rates must be 0-1 and add up to at most 1")
        self._random = random.Random(self.seed)  # noqa: S311 - a test's dice, not a secret


class FaultProxy:
    """``with FaultProxy(upstream, FaultPlan(busy=0.1)) as proxy:`` point the client at ``proxy.url``."""

    def __init__(self, upstream: str, plan: FaultPlan | None = None) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"the upstream must be a plain http URL, got {upstream!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.prefix = parts.path.rstrip("/")  # the endpoint's own path (path-style: /account)
        self.plan = plan or FaultPlan()
        self.stats: Counter[str] = Counter()
        self.faults: list[tuple[str, str, str]] = []  # (action, method, path) of each fault made
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the stats say what happened

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                action = proxy._decide(self.command, self.path, {k.lower() for k in self.headers})
                if action == "reset":
                    self._drop()
                    return
                if action in ("busy", "throttle", "forbid"):
                    self._answer_fault(action)
                    return
                try:
                    status, reason, headers, data = proxy._forward(
                        self.command, self.path, list(self.headers.items()), body
                    )
                except OSError:
                    proxy._count("upstream-error")
                    self._drop()
                    return
                if action == "lost":
                    self._drop()  # the server acted; its answer goes nowhere
                    return
                self.send_response(status, reason)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                # A HEAD answer's Content-Length is the resource's size, not the (empty) body's.
                length_header = dict((k.lower(), v) for k, v in headers).get("content-length")
                sent_length = length_header if self.command == "HEAD" and length_header else str(len(data))
                self.send_header("Content-Length", sent_length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                proxy._count("forwarded")

            def _answer_fault(self, action: str) -> None:
                body, code = (
                    (_FORBID_BODY, "AuthorizationFailure")
                    if action == "forbid"
                    else (_BUSY_BODY, "ServerBusy")
                )
                payload = b"" if self.command == "HEAD" else body
                if action == "busy":
                    self.send_response(503, "Server Busy")
                elif action == "forbid":
                    self.send_response(403, "Forbidden")
                else:
                    self.send_response(429, "Too Many Requests")
                    self.send_header("Retry-After", str(proxy.plan.retry_after))
                self.send_header("x-ms-error-code", code)
                self.send_header("x-ms-request-id", "fault-proxy")
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _drop(self) -> None:
                # No answer at all: close the socket hard (RST), as a dropped connection looks to a client.
                self.close_connection = True
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_MERGE = do_PATCH = do_OPTIONS = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fault-proxy", daemon=True
        )

    # -- the plan -------------------------------------------------------------------------------------

    def fail_next(
        self,
        action: str,
        count: int = 1,
        *,
        method: str | None = None,
        path: str | None = None,
        header: str | None = None,
        after: int = 0,
    ) -> None:
        """Make ``action`` happen to the next ``count`` requests of ``method`` whose path (and query)
        matches the regular expression ``path`` and which carry the header ``header`` (``x-ms-copy-source``
        tells a Copy Blob or Put Page From URL from other PUTs), once ``after`` such requests went through."""
        if action not in ACTIONS:
            raise ValueError(f"{action!r} is not one of {', '.join(ACTIONS)}")
        if count < 0 or after < 0:
            raise ValueError("count and after must not be negative")
        with self._lock:
            pattern = re.compile(path) if path else None
            self.plan.scripted.append(
                _Scripted(
                    action,
                    count,
                    method.upper() if method else None,
                    pattern,
                    header.lower() if header else None,
                    after,
                )
            )

    def clear_scripted(self) -> None:
        """Forget every scripted fault not made yet (the random rates stay)."""
        with self._lock:
            self.plan.scripted.clear()

    def set_rates(self, **rates: float) -> None:
        """Change the random rates (``busy=0.08, reset=0.04, lost=0.03``; the others stay)."""
        with self._lock:
            for name, rate in rates.items():
                if name not in ACTIONS:
                    raise ValueError(f"{name!r} is not one of {', '.join(ACTIONS)}")
                setattr(self.plan, name, rate)
            self.plan.__post_init__()

    def _decide(self, method: str, path: str, headers: set[str]) -> str | None:
        with self._lock:
            self.stats["requests"] += 1
            plan = self.plan
            if plan.max_faults is not None and len(self.faults) >= plan.max_faults:
                return None
            action: str | None = None
            for scripted in plan.scripted:
                if scripted.count > 0 and _matches(scripted, method, path, headers):
                    if scripted.after > 0:
                        scripted.after -= 1
                        break  # let this one through
                    scripted.count -= 1
                    action = scripted.action
                    break
            if action is None and (plan.only is None or method in plan.only):
                draw = plan._random.random()
                edge = 0.0
                for name in ACTIONS:
                    edge += getattr(plan, name)
                    if draw < edge:
                        action = name
                        break
            if action is not None:
                self.faults.append((action, method, path))
                self.stats[action] += 1
            return action

    def _count(self, what: str) -> None:
        with self._lock:
            self.stats[what] += 1

    def _forward(
        self, method: str, path: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            sent = {k: v for k, v in headers if k.lower() not in _HOP_BY_HOP and k.lower() != "host"}
            sent["Host"] = f"{self.upstream[0]}:{self.upstream[1]}"
            connection.request(method, path, body=body or None, headers=sent)
            answer = connection.getresponse()
            data = answer.read()
            return answer.status, answer.reason, answer.getheaders(), data
        finally:
            connection.close()

    # -- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _matches(scripted: _Scripted, method: str, path: str, headers: set[str]) -> bool:
    if scripted.method is not None and scripted.method != method:
        return False
    if scripted.header is not None and scripted.header not in headers:
        return False
    return scripted.path is None or scripted.path.search(path) is not None
