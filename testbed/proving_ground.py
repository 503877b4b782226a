"""The whole local stand-in for Azure in one object: Azurite, the managed-disk data plane, and compute ARM.

``ProvingGround`` starts, in order:

1. Azurite with two accounts: ``devstoreaccount1`` (the backup account, well-known key) and the
   managed-disk account (``mdisks``, a random key only the data plane knows), where snapshot content
   behind grant-access SAS URLs is written before a Copy Blob reads it;
2. the data plane's *front* (:class:`testbed.emulator.dataplane.DataPlane`): the blob endpoint the app
   uses, forwarding to Azurite and answering what Azurite gets wrong;
3. the compute emulator (:class:`testbed.emulator.arm.ComputeEmulator`): ARM over HTTPS with a bearer
   token, plus its control surface.

It stops them in reverse order. Tests, ``make demo`` and ``make dev`` use it; the attributes below are
what an app needs to point at it. With ``emulator_process=True`` the front and the compute emulator run
in a Python process of their own (:mod:`testbed.emulator.process`), so that they do not share an
interpreter lock with the app under test: for runs that reach the proving ground over HTTP only (the
benchmarks), since ``data_plane`` and ``emulator`` are then not in this process.

The ARM endpoint is HTTPS with a self-signed certificate: clients trust ``arm_ca_cert`` (``requests``:
``verify=``; Azure SDK: ``connection_verify=``).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from backup.redact import get_logger
from testbed.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY, Azurite, new_account_key
from testbed.emulator.arm import ComputeEmulator
from testbed.emulator.dataplane import DataPlane
from testbed.emulator.process import EmulatorProcess, Endpoints

log = get_logger(__name__)

#: The account holding grant-access content; never the backup account.
MD_ACCOUNT = "mdisks"

#: What :meth:`ProvingGround.seed_example_disks` creates: name, size, fill fraction, seed, tags.
EXAMPLE_DISKS: tuple[tuple[str, int, float, int, dict[str, str]], ...] = (
    ("web-os", 64 << 20, 0.20, 11, {"backup": "nightly", "env": "prod", "app": "web"}),
    ("web-data", 128 << 20, 0.05, 12, {"backup": "nightly", "env": "prod", "app": "web"}),
    ("db-data", 96 << 20, 0.10, 13, {"backup": "hourly", "env": "prod", "app": "db"}),
    ("scratch", 32 << 20, 0.02, 14, {"env": "dev"}),
)


class ProvingGround:
    """Azurite (both accounts) + DataPlane + ComputeEmulator; a context manager. See the module docstring."""

    def __init__(
        self,
        *,
        resource_group: str = "rg-diskbackup",
        location: str = "westus",
        operation_polls: int = 2,
        page_size: int = 2,
        retry_after: int = 1,
        azurite_location: Path | None = None,
        emulator_process: bool = False,
        azurite_in_memory: bool = False,
    ) -> None:
        """Configure; nothing runs until :meth:`start`. The knobs are the emulator's (see ComputeEmulator);
        ``emulator_process`` runs the front and the emulator in a child process (see the module docstring);
        ``azurite_in_memory`` keeps Azurite's data in memory (:class:`~testbed.azurite.Azurite`)."""
        self.resource_group = resource_group
        self.location = location
        self.backup_account = DEV_ACCOUNT
        self.backup_account_key = DEV_ACCOUNT_KEY
        self._md_key = new_account_key()
        self.azurite = Azurite(
            accounts={DEV_ACCOUNT: DEV_ACCOUNT_KEY, MD_ACCOUNT: self._md_key},
            location=azurite_location,
            in_memory=azurite_in_memory,
        )
        self._emulator_options: dict[str, Any] = {
            "operation_polls": operation_polls,
            "page_size": page_size,
            "retry_after": retry_after,
        }
        self._emulator_process = emulator_process
        self.data_plane: DataPlane | None = None
        self.emulator: ComputeEmulator | None = None
        self.process: EmulatorProcess | None = None
        self._endpoints: Endpoints | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> ProvingGround:
        """Start Azurite, the data plane's front and the compute emulator; create the resource group."""
        try:
            self.azurite.start()
            if self._emulator_process:
                self.process = EmulatorProcess(
                    azurite_blob_url=self.azurite.blob_url,
                    md_account=MD_ACCOUNT,
                    account_keys={DEV_ACCOUNT: DEV_ACCOUNT_KEY, MD_ACCOUNT: self._md_key},
                    options=self._emulator_options,
                    resource_group=self.resource_group,
                    location=self.location,
                ).start()
                self._endpoints = self.process.endpoints
                return self._started()
            self.data_plane = DataPlane(
                self.azurite,
                md_account=MD_ACCOUNT,
                account_keys={DEV_ACCOUNT: DEV_ACCOUNT_KEY, MD_ACCOUNT: self._md_key},
            )
            self.data_plane.start()
            self.emulator = ComputeEmulator(self.data_plane, **self._emulator_options)
            self.emulator.start()
            self.emulator.service.ensure_resource_group(self.resource_group, self.location)
            assert self.emulator.ca_cert is not None
            self._endpoints = Endpoints(
                arm_endpoint=self.emulator.endpoint,
                token=self.emulator.token,
                ca_cert=self.emulator.ca_cert,
                subscription_id=self.emulator.subscription_id,
                control_url=self.emulator.control_url,
                blob_url=self.data_plane.blob_url,
            )
        except BaseException:
            self.stop()
            raise
        return self._started()

    def _started(self) -> ProvingGround:
        log.info(
            "proving ground up: ARM %s, blob %s, table %s",
            self.arm_endpoint,
            self.backup_blob_endpoint,
            self.backup_table_endpoint,
        )
        return self

    def stop(self) -> None:
        """Stop everything that was started, newest first."""
        self._endpoints = None
        if self.process is not None:
            self.process.stop()
            self.process = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None
        if self.data_plane is not None:
            self.data_plane.stop()
            self.data_plane = None
        self.azurite.stop()

    def __enter__(self) -> ProvingGround:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what an app points at ----------------------------------------------------------------------

    def _running(self) -> Endpoints:
        if self._endpoints is None:
            raise RuntimeError("the proving ground is not running; call start() first")
        return self._endpoints

    @property
    def arm_endpoint(self) -> str:
        """The ARM base URL (``https://127.0.0.1:<port>``)."""
        return self._running().arm_endpoint

    @property
    def arm_token(self) -> str:
        """A bearer token the ARM endpoint accepts."""
        return self._running().token

    @property
    def arm_ca_cert(self) -> Path:
        """The certificate (PEM) to trust for the ARM endpoint."""
        return self._running().ca_cert

    @property
    def subscription_id(self) -> str:
        """The subscription the emulator serves."""
        return self._running().subscription_id

    @property
    def control_url(self) -> str:
        """The control surface's base URL (``<arm>/_emulator``)."""
        return self._running().control_url

    @property
    def backup_blob_endpoint(self) -> str:
        """The backup account's blob endpoint: the data plane's front (path style)."""
        return f"{self._running().blob_url}/{self.backup_account}"

    @property
    def backup_table_endpoint(self) -> str:
        """The backup account's table endpoint: Azurite's own."""
        return self.azurite.table_endpoint(self.backup_account)

    def disk_id(self, name: str, resource_group: str | None = None) -> str:
        """The ARM id of a disk in this subscription."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{resource_group or self.resource_group}"
            f"/providers/Microsoft.Compute/disks/{name}"
        )

    # -- content ------------------------------------------------------------------------------------

    def control(self, method: str, path: str, body: Any = None) -> Any:
        """Call the control surface (``path`` below ``/_emulator``) and return its JSON answer.

        Error answers are returned too (``{"error": {...}}``), so a caller can look at what was refused.
        """
        response = requests.request(
            method,
            self.control_url + path,
            json=body,
            verify=str(self.arm_ca_cert),  # per request: REQUESTS_CA_BUNDLE would override a session's
            timeout=120,
        )
        return response.json()

    def seed_example_disks(self) -> list[dict[str, Any]]:
        """Create a few tagged disks with sparse content in the resource group; return their ARM bodies.

        Deterministic (fixed seeds), small (32-128 MiB, 2-20 % populated) so a demo backs them up in seconds.
        """
        made = []
        for name, size, fraction, seed, tags in EXAMPLE_DISKS:
            made.append(
                self.control(
                    "PUT",
                    f"/resourceGroups/{self.resource_group}/disks/{name}",
                    {"size_bytes": size, "fill": {"seed": seed, "fraction": fraction}, "tags": tags},
                )
            )
        return made
