"""Transport behaviour that is not about redaction: which failures are retried."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from backup.azure.retry import RetryPolicy
from backup.azure.transport import USER_AGENT, Transport
from backup.errors import TransportError
from testbed.emulator.tls import server_context, write_self_signed


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_certificate_that_does_not_verify_fails_at_once(tmp_path: Path) -> None:
    """TLS verification failures are not retried: the same certificate fails the same way every time."""
    cert, key = write_self_signed(tmp_path)
    server = HTTPServer(("127.0.0.1", 0), _Ok)
    server.socket = server_context(cert, key).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/"
    slept: list[float] = []
    try:
        with pytest.raises(TransportError, match="SSLError"):
            Transport(sleep=slept.append).request("GET", url)  # system CAs: this certificate is not one
        assert slept == []
        # Trusting the certificate makes the same request succeed: the failure was the trust, not the server.
        assert Transport(verify=str(cert)).request("GET", url).status_code == 200
    finally:
        server.shutdown()
        server.server_close()


class _Recorder(BaseHTTPRequestHandler):
    """A forward proxy stand-in: records each request line (a proxied one holds the whole URL)."""

    lines: list[str] = []

    def do_GET(self) -> None:
        _Recorder.lines.append(self.requestline)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.lines = []
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_environments_proxy_settings_are_honoured_and_read_once_per_endpoint(
    recorder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A request for another host goes through the proxy HTTP_PROXY names (the request line holds the
    # whole URL); NO_PROXY hosts are asked directly.
    monkeypatch.setenv("HTTP_PROXY", recorder)
    monkeypatch.setenv("NO_PROXY", "direct.invalid")
    transport = Transport()
    assert transport.request("GET", "http://storage.invalid/c/blob?comp=x").status_code == 200
    assert _Recorder.lines == ["GET http://storage.invalid/c/blob?comp=x HTTP/1.1"]
    with pytest.raises(TransportError):  # not proxied: direct.invalid does not resolve
        Transport(policy=RetryPolicy(max_attempts=1)).request("GET", "http://direct.invalid/x")
    # Read once per endpoint: a change of the environment after the first request goes unseen by
    # this transport (a worker's environment does not change), and a new one sees it.
    monkeypatch.delenv("HTTP_PROXY")
    assert transport.request("GET", "http://storage.invalid/again").status_code == 200
    assert _Recorder.lines[-1] == "GET http://storage.invalid/again HTTP/1.1"
    with pytest.raises(TransportError):
        Transport(policy=RetryPolicy(max_attempts=1)).request("GET", "http://storage.invalid/x")


def test_a_ca_bundle_from_the_environment_is_trusted_when_verify_is_left_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = write_self_signed(tmp_path)
    server = HTTPServer(("127.0.0.1", 0), _Ok)
    server.socket = server_context(cert, key).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/"
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        assert Transport().request("GET", url).status_code == 200
        (tmp_path / "other").mkdir()
        other, _ = write_self_signed(tmp_path / "other")
        with pytest.raises(TransportError, match="SSLError"):  # an explicit verify is what it says
            Transport(verify=str(other)).request("GET", url)
    finally:
        server.shutdown()
        server.server_close()


def test_netrc_credentials_never_replace_the_authorization_header(
    recorder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    seen: list[str | None] = []

    class Auth(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Auth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        Transport().request(
            "GET", f"http://127.0.0.1:{server.server_address[1]}/", headers={"Authorization": "Bearer t"}
        )
        Transport().request("GET", f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["Bearer t", None]


def test_a_request_goes_out_as_the_session_itself_would_send_it() -> None:
    """Transport prepares each attempt itself rather than through ``Session.request`` (for CPU): what
    reaches the server is the same, header for header and byte for byte, the session's own default
    headers and a cookie it was given included; no redirect is followed."""
    seen: list[tuple[str, str, list[tuple[str, str]], bytes]] = []

    class Record(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.command, self.path, sorted(self.headers.items()), body))
            self.send_response(302 if self.path.startswith("/moved") else 200)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_GET = do_PUT = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Record)  # kept-alive connections, one thread each
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for send in ("transport", "session"):
            session = requests.Session()
            session.trust_env = False
            session.cookies.set("affinity", "a1", domain="127.0.0.1", path="/")
            headers = {"x-ms-version": "2021-08-06", "Content-Length": "3", "User-Agent": USER_AGENT}
            url = f"{base}/c/blob%20name?comp=page&x=a%2Fb"
            if send == "transport":
                answer = Transport(session=session).request("PUT", url, headers=dict(headers), body=b"abc")
                moved = Transport(session=session).request("GET", f"{base}/moved")
            else:
                answer = session.request("PUT", url, headers=headers, data=b"abc", allow_redirects=False)
                agent = {"User-Agent": USER_AGENT}
                moved = session.request("GET", f"{base}/moved", headers=agent, allow_redirects=False)
            assert (answer.status_code, answer.content, moved.status_code) == (200, b"ok", 302)
    finally:
        server.shutdown()
        server.server_close()
    ours, theirs = seen[:2], seen[2:]
    assert ours == theirs
    assert ("Cookie", "affinity=a1") in ours[0][2] and ours[0][3] == b"abc"
