"""The data plane's front and the compute emulator in a Python process of their own.

In one process, everything that answers HTTP in Python (the emulator's ARM server, the data-plane front)
shares one interpreter lock with the app it serves (the local Durable host, the activities and their HTTP
clients), so a run is bound to one core however many the machine has. :class:`EmulatorProcess` starts
them in a child process instead (``python -m testbed.emulator.process``), pointed at an Azurite the
parent runs: the same servers, the same code, answering over the same loopback sockets, on another core.

The parent sends the child its configuration as one JSON line on standard input and reads back one JSON
line on standard output, once both servers listen: the endpoints, the bearer token, the certificate to
trust, the subscription. The child then serves until its standard input closes (the parent stopped it,
or died: the child never outlives it) and stops its servers. What a test reaches in-process
(``ground.emulator.service``, ``ground.data_plane``) is not there: a child is for runs that talk to the
proving ground over HTTP only, its control surface included (the benchmarks).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from backup.redact import get_logger

log = get_logger(__name__)

_PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


class EmulatorProcessError(RuntimeError):
    """The emulator's process could not be started or did not answer as agreed."""


@dataclass(frozen=True)
class Endpoints:
    """Where the child's servers listen, and what a client needs to reach them."""

    arm_endpoint: str  # https://127.0.0.1:<port>
    token: str  # a bearer token the ARM endpoint accepts
    ca_cert: Path  # the certificate (PEM) to trust for it
    subscription_id: str
    control_url: str  # <arm_endpoint>/_emulator
    blob_url: str  # the data-plane front: http://127.0.0.1:<port>

    @classmethod
    def from_json(cls, data: Any) -> Endpoints:
        """Read the child's announcement; anything else is an :class:`EmulatorProcessError`."""
        try:
            return cls(
                arm_endpoint=str(data["armEndpoint"]),
                token=str(data["token"]),
                ca_cert=Path(str(data["caCert"])),
                subscription_id=str(data["subscriptionId"]),
                control_url=str(data["controlUrl"]),
                blob_url=str(data["blobUrl"]),
            )
        except (KeyError, TypeError) as exc:
            raise EmulatorProcessError(f"the emulator's process announced no {exc}") from None


class EmulatorProcess:
    """The data-plane front and the compute emulator in a child process; a context manager.

    ``azurite_blob_url`` is the parent's Azurite blob endpoint; ``account_keys`` every Azurite account's
    key (the md account's included); ``options`` the compute emulator's knobs (``operation_polls``,
    ``page_size``, ``retry_after``). ``resource_group`` is made in ``location`` before the child
    announces itself.
    """

    def __init__(
        self,
        *,
        azurite_blob_url: str,
        md_account: str,
        account_keys: Mapping[str, str],
        options: Mapping[str, Any],
        resource_group: str,
        location: str,
        startup_timeout: float = 60.0,
    ) -> None:
        self._config = {
            "azuriteBlobUrl": azurite_blob_url,
            "mdAccount": md_account,
            "accountKeys": dict(account_keys),
            "options": dict(options),
            "resourceGroup": resource_group,
            "location": location,
        }
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self.endpoints: Endpoints | None = None

    def start(self) -> EmulatorProcess:
        """Start the child and wait until it announces its endpoints."""
        if self._process is not None:
            raise EmulatorProcessError("the emulator's process is already running")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "testbed.emulator.process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the parent, which stops the child
        )
        try:
            self.endpoints = self._handshake()
        except BaseException:
            self.stop()
            raise
        log.info(
            "emulator process %s: ARM %s, front %s",
            self.pid,
            self.endpoints.arm_endpoint,
            self.endpoints.blob_url,
        )
        return self

    def _handshake(self) -> Endpoints:
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(self._config) + "\n")
        process.stdin.flush()
        announced: list[str] = []
        stdout = process.stdout
        reader = threading.Thread(target=lambda: announced.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self._startup_timeout)
        line = announced[0] if announced else ""
        if not line:
            code = process.poll()
            raise EmulatorProcessError(
                f"the emulator's process did not start within {self._startup_timeout:.0f} s"
                if code is None
                else f"the emulator's process exited before listening (code {code}; its log is above)"
            )
        try:
            return Endpoints.from_json(json.loads(line))
        except json.JSONDecodeError:
            raise EmulatorProcessError(f"the emulator's process announced {line[:200]!r}") from None

    def stop(self) -> None:
        """Close the child's standard input (it stops its servers and exits); kill it if it does not."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):  # a child that died already closed its end
                process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    @property
    def pid(self) -> int | None:
        """The child's PID while it runs."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(config: Mapping[str, Any]) -> tuple[Any, Any, dict[str, str]]:
    """Start the data plane's front and the compute emulator as ``config`` says; answer both and the
    announcement (the child's side of :class:`EmulatorProcess`)."""
    # Imported here: the parent's side needs none of the servers.
    from testbed.azurite import Azurite
    from testbed.emulator.arm import ComputeEmulator
    from testbed.emulator.dataplane import DataPlane

    keys = dict(config["accountKeys"])
    azurite = Azurite(accounts=keys)
    azurite.blob_url = str(config["azuriteBlobUrl"])  # the parent's: this process never starts one
    data_plane = DataPlane(azurite, md_account=str(config["mdAccount"]), account_keys=keys)
    data_plane.start()
    emulator = ComputeEmulator(data_plane, **dict(config["options"]))
    try:
        emulator.start()
        emulator.service.ensure_resource_group(str(config["resourceGroup"]), str(config["location"]))
    except BaseException:
        emulator.stop()
        data_plane.stop()
        raise
    assert emulator.ca_cert is not None
    announcement = {
        "armEndpoint": emulator.endpoint,
        "token": emulator.token,
        "caCert": str(emulator.ca_cert),
        "subscriptionId": emulator.subscription_id,
        "controlUrl": emulator.control_url,
        "blobUrl": data_plane.blob_url,
    }
    return data_plane, emulator, announcement


def main() -> int:
    """The child: read the configuration, serve, announce, and stop when standard input closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this ends
    line = sys.stdin.readline()
    if not line:
        return 1
    data_plane, emulator, announcement = serve(json.loads(line))
    try:
        sys.stdout.write(json.dumps(announcement) + "\n")
        sys.stdout.flush()
        while sys.stdin.readline():  # nothing more is sent: EOF means the parent is done (or gone)
            pass
    finally:
        emulator.stop()
        data_plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
