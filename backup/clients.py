"""The Azure clients an activity works with, built once per process from :class:`Settings`.

ARM goes through one :class:`ArmClient` (tokens from azure-identity, or the emulator's fixed token);
storage through one blob and one table client, authorised with the account's Shared Key when one is
configured, else with Azure AD tokens. All of them share one pooled :class:`Transport` per service kind.

A grant's SAS is fetched from its finished operation by the activity that needs it
(:meth:`AzureClients.read_access_sas`) and kept in this process's memory only, by grant: an incremental
night's many bounded activities read the same two SAS, and Compute allows few operation reads per
resource a minute (15), so they fetch each one once per worker rather than once per activity. The SAS
never leaves the process: not into a return value, a log line or storage.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
import requests.adapters

from backup.azure.arm import ArmClient
from backup.azure.blob import BlobAddress, BlobClient, ContainerAddress
from backup.azure.compute import ComputeClient
from backup.azure.credentials import ARM_SCOPE, IdentityTokenProvider, StaticTokenProvider, TokenProvider
from backup.azure.lro import LroStatus
from backup.azure.storage_auth import STORAGE_SCOPE, BearerAuthorizer, SharedKeyAuthorizer, StorageService
from backup.azure.table import TableClient
from backup.azure.transport import Authorizer, Transport
from backup.catalog import Catalog
from backup.settings import Settings


class GrantSasCache:
    """The SAS of recent grants, by grant operation, in this process only (see the module docstring)."""

    def __init__(self, capacity: int = 64) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], str] = OrderedDict()

    def __repr__(self) -> str:  # never the values
        return f"GrantSasCache({len(self._entries)} grants)"

    def get(self, grant: LroStatus, fetch: Callable[[LroStatus], str]) -> str:
        """The SAS of ``grant``: remembered, or fetched once with ``fetch`` and remembered."""
        key = (grant.resource_url, grant.result_url or grant.poll_url or grant.location_url or "")
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        sas = fetch(grant)
        with self._lock:
            self._entries[key] = sas
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return sas

    def forget(self, resource_id: str) -> None:
        """Drop every SAS granted on the resource ``resource_id`` (its access was revoked)."""
        wanted = resource_id.lower().rstrip("/") + "/"
        with self._lock:
            for key in [k for k in self._entries if wanted in k[0].lower()]:
                del self._entries[key]


@dataclass(frozen=True)
class AzureClients:
    """What activities call: compute (ARM), the backup container (blob) and the catalog (table)."""

    settings: Settings
    compute: ComputeClient
    blob: BlobClient
    container: ContainerAddress
    catalog: Catalog
    grants: GrantSasCache = field(default_factory=GrantSasCache, compare=False, repr=False)

    def read_access_sas(self, grant: LroStatus) -> str:
        """The SAS a succeeded grant issued (a secret: for the activity that uses it, and no one else)."""
        return self.grants.get(grant, self.compute.read_access_sas)

    def backup_container(self, container: str) -> ContainerAddress:
        """The container ``container`` of the backup account (the configured one, or another by name)."""
        if container == self.settings.container:
            return self.container
        return ContainerAddress.in_account(self.settings.blob_endpoint, container, self.container.authorize)

    def backup_blob(self, container: str, name: str) -> BlobAddress:
        """The backup blob ``name`` in ``container`` of the backup account."""
        return self.backup_container(container).blob(name)


#: Connections kept per storage host: lanes of disks, each with a few writes or reads in flight.
_STORAGE_CONNECTIONS = 64


def _pooled_session(connections: int) -> requests.Session:
    """A session keeping up to ``connections`` connections per host (requests keeps 10 by default)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=connections)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def build_clients(settings: Settings) -> AzureClients:
    """Build every client from settings (no network calls)."""
    arm_tokens: TokenProvider
    if settings.arm_token is not None:
        arm_tokens = StaticTokenProvider(settings.arm_token)
    else:
        arm_tokens = IdentityTokenProvider(ARM_SCOPE, settings.managed_identity_client_id)
    arm_transport = Transport(verify=settings.arm_ca_bundle or True)
    # Without a Retry-After from ARM, the orchestrator's own backoff (BACKUP_POLL_*) decides the wait;
    # a default here would act as a floor under it.
    arm = ArmClient(settings.arm_endpoint, arm_tokens, arm_transport, default_retry_after=0)

    blob_auth: Authorizer
    table_auth: Authorizer
    if settings.storage_key is not None:
        blob_auth = SharedKeyAuthorizer(
            settings.storage_account, settings.storage_key, service=StorageService.BLOB
        )
        table_auth = SharedKeyAuthorizer(
            settings.storage_account, settings.storage_key, service=StorageService.TABLE
        )
    else:
        storage_tokens = IdentityTokenProvider(STORAGE_SCOPE, settings.managed_identity_client_id)
        blob_auth = table_auth = BearerAuthorizer(storage_tokens)
    storage_transport = Transport(session=_pooled_session(_STORAGE_CONNECTIONS))
    table = TableClient(settings.table_endpoint, settings.catalog_table, table_auth, storage_transport)
    return AzureClients(
        settings=settings,
        compute=ComputeClient(arm),
        blob=BlobClient(storage_transport),
        container=ContainerAddress.in_account(settings.blob_endpoint, settings.container, blob_auth),
        catalog=Catalog(table, blob_endpoint=settings.blob_endpoint),
    )


_lock = threading.Lock()
_cached: tuple[Settings, AzureClients] | None = None


def clients_for(settings: Settings) -> AzureClients:
    """The process's clients for ``settings``: built on first use, rebuilt only if the settings change."""
    global _cached
    with _lock:
        if _cached is None or _cached[0] != settings:
            _cached = (settings, build_clients(settings))
        return _cached[1]
