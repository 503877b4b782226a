"""Transport behaviour that is not about redaction: which failures are retried."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from backup.azure.transport import Transport
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
