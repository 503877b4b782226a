"""Azurite, Microsoft's storage emulator, as a child process: started, awaited, stopped.

Azurite is started through ``node`` directly (never ``npx``: killing npx orphans the server) with port 0
for each service, so the kernel picks free ports and nothing races for them; the ports are read from the
lines Azurite prints once each service listens. It is stopped by its own node PID, and its data lives in
a temporary folder that is removed afterwards, unless the caller gave one.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from backup.redact import get_logger

log = get_logger(__name__)

#: The well-known development account every Azure storage tool knows; its key is public.
DEV_ACCOUNT = "devstoreaccount1"
DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at (http\S+)")
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class AzuriteError(RuntimeError):
    """Azurite could not be found, started or reached."""


def new_account_key() -> str:
    """A fresh random 64-byte account key, base64 encoded as Azure shows keys."""
    return base64.b64encode(os.urandom(64)).decode("ascii")


def find_azurite_script() -> Path:
    """The ``azurite.js`` entry point: ``$AZURITE_JS`` or the project's ``node_modules``."""
    configured = os.environ.get("AZURITE_JS")
    candidates = [Path(configured)] if configured else []
    candidates.append(_PROJECT_ROOT / "node_modules" / "azurite" / "dist" / "src" / "azurite.js")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise AzuriteError(
        "azurite.js not found (looked in: " + ", ".join(str(c) for c in candidates) + "); run `make install`"
    )


@dataclass
class Azurite:
    """One Azurite server (blob, queue and table) on loopback.

    ``accounts`` maps account name to base64 key; the default is the well-known dev account alone.
    ``oauth_cert`` (a ``(cert_path, key_path)`` pair) switches Azurite to HTTPS with ``--oauth basic``, so
    it accepts bearer tokens as well as Shared Key. ``in_memory`` keeps its data in memory
    (``--inMemoryPersistence``: the same services, answering the same way, without writing every blob
    and its metadata database to files), for runs whose data dies with the server anyway; it cannot
    be combined with a ``location``.
    """

    accounts: Mapping[str, str] = field(default_factory=lambda: {DEV_ACCOUNT: DEV_ACCOUNT_KEY})
    location: Path | None = None
    oauth_cert: tuple[Path, Path] | None = None
    startup_timeout: float = 60.0
    in_memory: bool = False

    blob_url: str = field(init=False, default="")
    queue_url: str = field(init=False, default="")
    table_url: str = field(init=False, default="")
    _process: subprocess.Popen[str] | None = field(init=False, default=None, repr=False)
    _own_location: bool = field(init=False, default=False, repr=False)
    _output: list[str] = field(init=False, default_factory=list, repr=False)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Azurite:
        """Start Azurite and wait until all three services listen."""
        if self._process is not None:
            raise AzuriteError("Azurite is already running")
        node = shutil.which("node")
        if node is None:
            raise AzuriteError("node is not on PATH; Azurite needs Node.js")
        if self.in_memory and self.location is not None:
            raise AzuriteError("an in-memory Azurite keeps no data folder: give no location")
        if self.location is None and not self.in_memory:
            self.location = Path(tempfile.mkdtemp(prefix="azurite-"))
            self._own_location = True
        storage = ["--inMemoryPersistence"] if self.in_memory else ["--location", str(self.location)]
        argv = [
            node, str(find_azurite_script()),
            *storage,
            "--blobHost", "127.0.0.1", "--blobPort", "0",
            "--queueHost", "127.0.0.1", "--queuePort", "0",
            "--tableHost", "127.0.0.1", "--tablePort", "0",
            "--skipApiVersionCheck", "--disableTelemetry", "--silent",
        ]  # fmt: skip
        if self.oauth_cert is not None:
            cert, key = self.oauth_cert
            argv += ["--oauth", "basic", "--cert", str(cert), "--key", str(key)]
        env = dict(os.environ)
        env["AZURITE_ACCOUNTS"] = ";".join(f"{name}:{key}" for name, key in self.accounts.items())
        self._process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            self._await_listening()
        except BaseException:
            self.stop()
            raise
        log.info(
            "Azurite started (pid %s): blob %s, table %s", self._process.pid, self.blob_url, self.table_url
        )
        return self

    def _await_listening(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        found: dict[str, str] = {}
        ready = threading.Event()
        stdout = self._process.stdout

        def pump() -> None:
            # Keep draining stdout for the server's whole life, so a chatty Azurite never blocks on a pipe.
            for line in stdout:
                if len(self._output) < 200:
                    self._output.append(line.rstrip())
                match = _LISTENING.search(line)
                if match:
                    found[match.group(1).lower()] = match.group(2).rstrip("/")
                    if len(found) == 3:
                        ready.set()
            ready.set()

        threading.Thread(target=pump, name="azurite-stdout", daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while not ready.wait(0.1):
            if time.monotonic() > deadline:
                raise AzuriteError(f"Azurite did not start within {self.startup_timeout:.0f} s")
        if len(found) != 3:
            tail = "\n".join(self._output[-20:])
            raise AzuriteError(f"Azurite exited before listening (code {self._process.poll()}):\n{tail}")
        self.blob_url, self.queue_url, self.table_url = found["blob"], found["queue"], found["table"]

    def stop(self) -> None:
        """Stop the node process (by its own PID) and remove a temporary data folder."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if self._own_location and self.location is not None:
            shutil.rmtree(self.location, ignore_errors=True)
            self.location = None
            self._own_location = False

    @property
    def pid(self) -> int | None:
        """The node process's PID while running."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- endpoints ---------------------------------------------------------------------------------

    def blob_endpoint(self, account: str = DEV_ACCOUNT) -> str:
        """Path-style blob service URL of ``account``."""
        return f"{self.blob_url}/{account}"

    def table_endpoint(self, account: str = DEV_ACCOUNT) -> str:
        """Path-style table service URL of ``account``."""
        return f"{self.table_url}/{account}"

    def connection_string(self, account: str = DEV_ACCOUNT) -> str:
        """A connection string for ``account`` (holds its key: for tests and ``.dev/env`` only)."""
        return (
            f"DefaultEndpointsProtocol={self.blob_url.split(':', 1)[0]};AccountName={account};"
            f"AccountKey={self.accounts[account]};BlobEndpoint={self.blob_endpoint(account)};"
            f"QueueEndpoint={self.queue_url}/{account};TableEndpoint={self.table_endpoint(account)};"
        )
