"""The managed-disk data plane: snapshot content behind SAS URLs, in front of a real Azurite.

Azure serves a disk's or snapshot's bytes from a hidden storage account behind the SAS that grant
access returns. Here that account is a second Azurite account (the *md account*, its key known only to
this module), and a *front* server stands before Azurite's blob port (see :mod:`testbed.emulator.front`):

    client ──> front (127.0.0.1:<front>) ──> Azurite blob port      every request, Host header unchanged
                 │
                 ├─ md account, SAS reads       answered here from the grant's frozen PageMap
                 ├─ md account, upload SAS      Put Page, Put Page From URL, reads: answered here
                 ├─ Get Page Ranges (+ diff)    answered here: Azurite gets diffs wrong
                 │   (md: x-ms-previous-snapshot-url; other accounts: prevsnapshot)
                 ├─ Put Page From URL           answered here: Azurite has none (501)
                 ├─ Copy Blob from an md SAS    forwarded, then paced (pending, progress) and faulted
                 └─ anything else               forwarded untouched: storage stays real Azurite

Why each piece (verified in Azurite 3.37.0's source):

- Azurite's Copy Blob takes a source only on its own instance: it compares the copy request's ``Host``
  with the source URL's host, checks access with a HEAD of the source URL, then copies the page list
  from its own store. So a grant's SAS names a fresh, never-reused page blob of the md account (its
  service SAS, ``sp=r``, ``se`` = grant end, signed with the md key, is the accessSAS, on the front's
  host), and before the first Copy Blob from it the grant is *materialised* there: its content written
  with Put Page (never Copy Blob). Only a copy needs that; every other use of the SAS (reads, diffs,
  Put Page From URL, the HEAD Azurite sends) is answered by the front from the grant, so an incremental
  night's grants cost no writes at all.
- Azurite's Copy Blob makes the destination share the source's page list until Azurite restarts, so a
  write to a copy changes its source. Reads through a SAS are therefore answered from the grant's own
  frozen PageMap (never from Azurite), and a second Copy Blob from one grant first re-materialises the
  md blob (deleting the old one leaves the first copy's data to that copy).
- The md blob is a fixed VHD: the disk's bytes then a 512-byte footer (:mod:`backup.vhd`), as
  Azure's managed-disk blobs are (a 32 GiB disk's SAS blob is 32 GiB + 512 bytes). Import checks it.

Revoke ends the grant (the SAS answers 403 ``AuthenticationFailed``, a pending copy from it fails) and
deletes the md blob. A SAS also stops at its expiry (``se``), by the clock given to :class:`DataPlane`.

A disk made for upload gets a *write* SAS (Azure's shape: ``sv&sr=b&si=<policy id>&sig``, the stored
access policy holding ``rw`` and the expiry). Its blob (the disk's bytes, then the 512-byte footer, all
``uploadSizeBytes``) lives in a page map here, never in Azurite: the front answers Put Page (update and
clear), Put Page From URL (sources read as for any copy), ranged reads, properties and Get Page Ranges on
it, and refuses every other write. Revoke hands the first ``uploadSizeBytes - 512`` bytes to the disk.

Diffs compare content (:func:`testbed.emulator.pages.diff`): a page rewritten with the same bytes is not
listed, where Azure, tracking writes, may list it. Applying either answer to a copy of the older
snapshot gives the same bytes.
"""

from __future__ import annotations

import threading
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qs, unquote, urlsplit

import requests

from backup import vhd
from backup.azure.blob import STORAGE_API_VERSION, BlobAddress, BlobClient, BlobProperties, ContainerAddress
from backup.azure.page_range import MAX_WRITE_BYTES, PageRange, split
from backup.azure.retry import RetryPolicy
from backup.azure.storage_auth import SharedKeyAuthorizer, StorageService
from backup.azure.transport import Transport
from backup.errors import DiskBackupError, InvalidInputError, NotFoundError
from backup.redact import get_logger, strip_query
from testbed.azurite import Azurite
from testbed.emulator import sas
from testbed.emulator.copy_pacing import PacedCopy
from testbed.emulator.front import Forwarder, FrontServer, Reply, Request, storage_error, storage_headers
from testbed.emulator.page_list import (
    PageListItem,
    QueryProblem,
    diff_items,
    page_list_xml,
    parse_byte_range,
    select,
)
from testbed.emulator.pages import PageMap

__all__ = ["MD_BLOB_NAME", "DataPlane"]

log = get_logger(__name__)

#: Azure names the blob behind every managed-disk SAS "abcd"; so do we.
MD_BLOB_NAME = "abcd"
_MIB = 1 << 20
_READ_CHUNK = 4 << 20
_WRITERS = 4
_AUTHENTICATION_FAILED = (
    "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
    "correctly including the signature."
)
# Conditions of a write that the destination account must check: passed on to Azurite as they came.
_DESTINATION_CONDITIONS = (
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "x-ms-lease-id",
    "x-ms-if-sequence-number-le",
    "x-ms-if-sequence-number-lt",
    "x-ms-if-sequence-number-eq",
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _split_path(path: str) -> tuple[str, str, str]:
    """``/account/container/blob/name`` as ``(account, container, blob)``; missing parts are empty."""
    parts = path.lstrip("/").split("/", 2)
    parts += [""] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


# -- state -----------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Grant:
    """One grant of access: an md blob, its SAS, and the frozen content it serves."""

    resource_id: str
    family_id: str | None
    taken_at: datetime | None
    content: PageMap | None  # the disk's bytes (frozen); dropped when the grant ends
    blob: PageMap | None  # content + VHD footer (frozen): what the SAS reads
    blob_size: int
    container: str
    issued_at: datetime
    expires_at: datetime
    etag: str = ""
    last_modified: str = ""
    revoked: bool = False
    vanished: bool = False
    copies: int = 0
    materialised: bool = False  # the md blob was written (by a copy, or materialise()) at least once
    lock: threading.Lock = field(default_factory=threading.Lock)

    def active(self, now: datetime) -> bool:
        return not self.revoked and now < self.expires_at


@dataclass(eq=False)
class _UploadTarget:
    """A disk being uploaded: its blob (disk bytes + VHD footer), written through write SAS."""

    resource_id: str
    blob: PageMap  # uploadSizeBytes long; the disk is all but the last 512 bytes
    etag: str
    last_modified: str
    created: str
    writes: int = 0

    def touch(self) -> None:
        """A write changed the blob: new ETag and Last-Modified."""
        self.writes += 1
        self.etag = f'"0x8DE{uuid.uuid4().hex[:13].upper()}"'
        self.last_modified = _http_date(_utc_now())


@dataclass(eq=False)
class _UploadSas:
    """One write SAS onto an upload (a new grant replaces the SAS; the target stays)."""

    resource_id: str
    container: str
    identifier: str  # the stored access policy the SAS names
    issued_at: datetime
    expires_at: datetime
    revoked: bool = False


# -- Azurite as the md account's (and destinations') storage ---------------------------------------


class _AzuriteAccounts:
    """Blobs of Azurite's accounts, authorized with their keys (requests go straight to Azurite)."""

    def __init__(self, blob_url: str, account_keys: Mapping[str, str]) -> None:
        self.blob_url = blob_url
        self.signers = {
            name: SharedKeyAuthorizer(name, key, service=StorageService.BLOB)
            for name, key in account_keys.items()
        }

    def container(self, account: str, container: str) -> ContainerAddress:
        return ContainerAddress.in_account(f"{self.blob_url}/{account}", container, self.signers[account])

    def blob(self, account: str, container: str, blob: str) -> BlobAddress:
        return self.container(account, container).blob(blob)


# -- the data plane --------------------------------------------------------------------------------


class DataPlane:
    """The managed-disk data plane and its front; see the module docstring.

    ``account_keys`` maps every Azurite account name to its key; it must include ``md_account``.
    ``clock`` (a seam for tests of expiry) gives the current UTC time. ``copy_pending_polls`` is how
    many HEADs of a copy destination show ``pending`` before the copy's outcome; ``copy_pending_seconds``
    (when above 0, instead) how long a copy stays pending by ``pacing_clock``, the clock copies are
    paced by (by default ``clock``; a virtual clock makes an hour's copy cost no real hour).
    ``copy_source_verify`` is what the front trusts when it reads a Put Page From URL source over https
    itself (``requests``' ``verify``: a CA bundle path, e.g. of an Azurite started with ``--oauth``, or
    True for the system's).
    """

    def __init__(
        self,
        azurite: Azurite,
        *,
        md_account: str,
        account_keys: Mapping[str, str],
        clock: Callable[[], datetime] = _utc_now,
        copy_pending_polls: int = 3,
        copy_source_verify: bool | str = True,
        copy_pending_seconds: float = 0,
    ) -> None:
        if md_account not in account_keys:
            raise InvalidInputError("account_keys", f"must hold the key of the md account {md_account!r}")
        if not azurite.blob_url:
            raise InvalidInputError("azurite", "must be running (no blob endpoint yet)")
        self.md_account = md_account
        self.copy_pending_polls = copy_pending_polls
        self.copy_source_verify = copy_source_verify
        self.copy_pending_seconds = copy_pending_seconds
        self.pacing_clock: Callable[[], datetime] = clock
        self._keys = dict(account_keys)
        self._clock = clock
        self._accounts = _AzuriteAccounts(azurite.blob_url, account_keys)
        self._blobs = BlobClient()
        # Put Page From URL passes Azurite's answer back as it is (status, error code, conditions), so it
        # sends that one request itself, signed by the same Shared Key signer.
        self._relay = Transport(policy=RetryPolicy(max_attempts=1))
        self._forwarder = Forwarder(azurite.blob_url)
        self._front = FrontServer(self._dispatch, on_close=self._forwarder.release)
        self._session = requests.Session()
        self._lock = threading.RLock()
        self._current: dict[str, _Grant] = {}  # resource id -> its latest grant
        self._by_container: dict[str, _Grant] = {}  # every grant ever issued (ended ones hold no content)
        self._copies: dict[str, PacedCopy] = {}  # destination path -> its paced copy
        self._copy_failures: dict[str, deque[str]] = {}
        self._vanished: set[str] = set()
        self._upload_targets: dict[str, _UploadTarget] = {}  # resource id -> the upload in progress
        self._upload_sas: dict[str, _UploadSas] = {}  # md container -> every write SAS ever issued
        self._current_upload_sas: dict[str, _UploadSas] = {}  # resource id -> its latest write SAS

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the front on a free loopback port."""
        self._front.start()

    def stop(self) -> None:
        """Stop the front (Azurite's data is the caller's to keep or remove)."""
        self._front.stop()
        self._session.close()

    @property
    def blob_url(self) -> str:
        """The front's base URL, e.g. ``http://127.0.0.1:41234``; account URLs are path-style below it."""
        if not self._front.running:
            raise RuntimeError("the data-plane front is not running; call start() first")
        return self._front.url

    def blob_endpoint(self, account: str) -> str:
        """The front's blob endpoint of ``account`` (what the app uses)."""
        return f"{self.blob_url}/{account}"

    # -- grants -------------------------------------------------------------------------------------

    def grant(
        self,
        *,
        resource_id: str,
        family_id: str | None,
        content: PageMap,
        duration_seconds: int,
        taken_at: datetime | None = None,
    ) -> str:
        """Materialise ``content`` as a fresh md blob and return its read SAS URL (the accessSAS).

        A resource's earlier grant ends first (one SAS per resource). ``family_id`` groups the
        incremental snapshots of one disk (diffs are allowed only within a family); ``taken_at``, when
        given, lets a diff refuse a "previous" snapshot that is newer.
        """
        base = self.blob_url  # fails early when the front is not running
        if not resource_id:
            raise InvalidInputError("resource_id", "must not be empty")
        if (
            isinstance(duration_seconds, bool)
            or not isinstance(duration_seconds, int)
            or duration_seconds <= 0
        ):
            raise InvalidInputError(
                "duration_seconds", f"must be a positive integer, got {duration_seconds!r}"
            )
        self.revoke(resource_id)
        frozen = content.frozen()
        blob = frozen.copy()
        blob.resize(frozen.size + vhd.FOOTER_SIZE)
        blob.write(
            frozen.size,
            vhd.build_footer(frozen.size, uuid.uuid5(uuid.NAMESPACE_URL, family_id or resource_id)),
        )
        now = self._clock()
        grant = _Grant(
            resource_id=resource_id,
            family_id=family_id,
            taken_at=taken_at,
            content=frozen,
            blob=blob.frozen(),
            blob_size=blob.size,
            container=uuid.uuid4().hex,
            issued_at=now,
            expires_at=now + timedelta(seconds=duration_seconds),
            vanished=resource_id in self._vanished,
            # What Azure shows for the blob behind a disk SAS; fixed for the grant's life, as its content.
            etag=f'"0x{uuid.uuid4().hex[:15].upper()}"',
            last_modified=_http_date(now),
        )
        self._blobs.create_container(self._accounts.container(self.md_account, grant.container))
        with self._lock:
            self._current[resource_id] = grant
            self._by_container[grant.container] = grant
        self._sweep()
        query = sas.generate_blob_sas(
            account=self.md_account,
            account_key=self._keys[self.md_account],
            container=grant.container,
            blob=MD_BLOB_NAME,
            permissions="r",
            start=grant.issued_at,
            expiry=grant.expires_at,
        )
        log.info("granted %s for %d s (md container %s)", resource_id, duration_seconds, grant.container)
        return f"{base}/{self.md_account}/{grant.container}/{MD_BLOB_NAME}?{query}"

    def _materialise(self, grant: _Grant) -> None:
        """Write the grant's blob into a fresh page blob of the md account with Put Page (never Copy Blob).

        Called (under the grant's lock) before each Copy Blob from the grant: Azurite copies from its own
        store, and an earlier copy shares (and may have changed) the page list of the blob written before.
        """
        assert grant.blob is not None
        address = self._accounts.blob(self.md_account, grant.container, MD_BLOB_NAME)
        if grant.materialised:  # the grant's container is new: until now, nothing was there to delete
            with suppress(NotFoundError):
                self._blobs.delete(address)
        grant.materialised = True
        self._blobs.create_page_blob(address, grant.blob_size)
        content = grant.blob
        ranges = [PageRange(start, end) for start, end in content.ranges()]

        def put(chunk: PageRange) -> None:
            self._blobs.put_page(address, chunk, content.read(chunk.start, chunk.length))

        # A few writes at once: Azurite takes them in parallel, and a GiB disk's grant stays seconds.
        with ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="md-writer") as pool:
            for _ in pool.map(put, split(ranges)):
                pass

    def materialise(self, sas_url: str) -> None:
        """Write the content behind a grant's SAS into its md blob now, as a Copy Blob from it would.

        For tests that show what Azurite alone does with that blob; the front never needs it otherwise.
        """
        _, container, _ = _split_path(urlsplit(sas_url).path)
        with self._lock:
            grant = self._by_container.get(container)
        if grant is None or grant.blob is None:
            raise InvalidInputError("sas_url", "names no active grant of this data plane")
        with grant.lock:
            self._materialise(grant)

    def revoke(self, resource_id: str) -> None:
        """End ``resource_id``'s grant: its SAS answers 403, a copy still pending from it fails.

        A write SAS stops too; what was uploaded stays (a new write grant goes on with it).
        """
        with self._lock:
            grant = self._current.pop(resource_id, None)
            upload_sas = self._current_upload_sas.pop(resource_id, None)
            if upload_sas is not None:
                upload_sas.revoked = True
        if grant is not None:
            self._end(grant, "revoked")

    # -- uploads ------------------------------------------------------------------------------------

    def grant_upload(self, *, resource_id: str, upload_size: int, duration_seconds: int) -> str:
        """A write SAS URL onto the upload blob of ``resource_id`` (``upload_size`` bytes, zeros at first).

        The resource's earlier write SAS ends; the blob and what was written to it stay.
        """
        base = self.blob_url
        if not resource_id:
            raise InvalidInputError("resource_id", "must not be empty")
        if (
            isinstance(upload_size, bool)
            or not isinstance(upload_size, int)
            or upload_size <= vhd.FOOTER_SIZE
        ):
            raise InvalidInputError("upload_size", f"must be more than {vhd.FOOTER_SIZE} bytes")
        if (
            isinstance(duration_seconds, bool)
            or not isinstance(duration_seconds, int)
            or duration_seconds <= 0
        ):
            raise InvalidInputError(
                "duration_seconds", f"must be a positive integer, got {duration_seconds!r}"
            )
        now = self._clock()
        with self._lock:
            target = self._upload_targets.get(resource_id)
            if target is None or target.blob.size != upload_size:
                stamp = _http_date(now)
                target = _UploadTarget(resource_id, PageMap(upload_size), '"0x8DE0000000000"', stamp, stamp)
                self._upload_targets[resource_id] = target
            earlier = self._current_upload_sas.pop(resource_id, None)
            if earlier is not None:
                earlier.revoked = True
            grant = _UploadSas(
                resource_id=resource_id,
                container=uuid.uuid4().hex,
                identifier=str(uuid.uuid4()),
                issued_at=now,
                expires_at=now + timedelta(seconds=duration_seconds),
            )
            self._upload_sas[grant.container] = grant
            self._current_upload_sas[resource_id] = grant
        query = sas.generate_policy_blob_sas(
            account=self.md_account,
            account_key=self._keys[self.md_account],
            container=grant.container,
            blob=MD_BLOB_NAME,
            identifier=grant.identifier,
        )
        log.info(
            "write access to %s for %d s (md container %s)", resource_id, duration_seconds, grant.container
        )
        return f"{base}/{self.md_account}/{grant.container}/{MD_BLOB_NAME}?{query}"

    def finish_upload(self, resource_id: str) -> PageMap | None:
        """End the upload of ``resource_id``: its write SAS stops; the disk's bytes (the blob less its
        footer), or ``None`` if it was never granted write access."""
        with self._lock:
            upload_sas = self._current_upload_sas.pop(resource_id, None)
            if upload_sas is not None:
                upload_sas.revoked = True
            target = self._upload_targets.pop(resource_id, None)
        if target is None:
            return None
        content = target.blob.copy()
        content.resize(target.blob.size - vhd.FOOTER_SIZE)  # the footer is not disk content
        log.info("upload of %s finished after %d writes", resource_id, target.writes)
        return content

    def _end(self, grant: _Grant, why: str) -> None:
        with self._lock:
            if why == "revoked":
                grant.revoked = True
            grant.content = grant.blob = None
        # Azure: a copy still reading from the SAS when access is revoked (or runs out) fails.
        self._fail_copies_from(
            grant.container, f'403 AuthenticationFailed "Access to the copy source {why}."'
        )
        try:
            with suppress(NotFoundError):
                self._blobs.delete_container(self._accounts.container(self.md_account, grant.container))
        except DiskBackupError as error:  # the grant is over either way; a leftover md blob is only space
            log.warning("could not delete md container %s: %s", grant.container, error)
        log.info("grant of %s %s (md container %s)", grant.resource_id, why, grant.container)

    def _sweep(self) -> None:
        """Drop the md blobs of grants that expired (the SAS already refuses them)."""
        now = self._clock()
        with self._lock:
            expired = [g for g in self._current.values() if not g.revoked and now >= g.expires_at]
            for grant in expired:
                del self._current[grant.resource_id]
        for grant in expired:
            self._end(grant, "expired")

    def active_grants(self, family_id: str) -> int:
        """How many snapshots of ``family_id`` hold a SAS that is neither revoked nor expired."""
        self._sweep()
        now = self._clock()
        with self._lock:
            return sum(1 for g in self._current.values() if g.family_id == family_id and g.active(now))

    def forget(self, resource_id: str) -> None:
        """The resource was deleted: end its grant and drop what the data plane kept about it."""
        self.revoke(resource_id)
        with self._lock:
            self._copy_failures.pop(resource_id, None)
            self._vanished.discard(resource_id)
            self._upload_targets.pop(resource_id, None)

    def expire(self, resource_id: str) -> bool:
        """End ``resource_id``'s read grant now, as its expiry does (its SAS answers 403, a copy still
        pending from it fails with ``403 AuthenticationFailed``); whether there was one."""
        with self._lock:
            grant = self._current.pop(resource_id, None)
        if grant is None:
            return False
        self._end(grant, "expired")
        return True

    # -- faults -------------------------------------------------------------------------------------

    def fail_next_copy(self, resource_id: str, description: str) -> None:
        """The next Copy Blob from ``resource_id``'s SAS ends ``failed`` with ``description``."""
        if not description or not description.strip():
            raise InvalidInputError("description", "must not be empty")
        with self._lock:
            self._copy_failures.setdefault(resource_id, deque()).append(description.strip())

    def make_source_disappear(self, resource_id: str) -> None:
        """``resource_id``'s blob is gone: its SAS answers 404, copies from it fail (pending or new)."""
        with self._lock:
            self._vanished.add(resource_id)
            grant = self._current.get(resource_id)
            if grant is None:
                return
            grant.vanished = True
        self._fail_copies_from(grant.container, '404 BlobNotFound "The specified blob does not exist."')

    # -- Import ---------------------------------------------------------------------------------------

    def read_blob(self, source_uri: str) -> PageMap:
        """The disk content of a fixed-VHD page blob in an Azurite account (for ``createOption: Import``).

        ``source_uri`` may carry a SAS; without one the blob is read with the account's key, as Azure
        reads it with its own access to ``storageAccountId``. The blob must be a page blob ending in a
        valid fixed-VHD footer whose size is the blob's less 512 bytes, a multiple of 1 MiB. Raises
        :class:`InvalidInputError` (field ``sourceUri``) for a blob that is no such VHD, and the HTTP
        errors of :mod:`backup.errors` (e.g. ``NotFoundError``) when it cannot be read.
        """
        parts = urlsplit(source_uri)
        account, container, blob = _split_path(parts.path)
        if parts.scheme not in ("http", "https") or not account or not container or not blob:
            raise InvalidInputError("sourceUri", f"{strip_query(source_uri)!r} is not a blob URL")
        if account == self.md_account:
            with self._lock:
                grant = self._by_container.get(container)
            if grant is None or grant.content is None:
                raise InvalidInputError("sourceUri", f"{strip_query(source_uri)!r} is not an active disk SAS")
            return grant.content.copy()
        if account in self._keys:
            snapshot = parse_qs(parts.query).get("snapshot", [None])[0]
            address = self._accounts.blob(account, container, unquote(blob)).at_snapshot(snapshot)
        else:
            # No key: the URL's own SAS must do, sent straight to Azurite.
            address = BlobAddress.from_sas_url(f"{self._accounts.blob_url}{parts.path}?{parts.query}")
        properties = self._blobs.get_properties(address)
        shown = strip_query(source_uri)
        if properties.blob_type != "PageBlob":
            raise InvalidInputError(
                "sourceUri", f"The blob {shown} is not a page blob; Import needs a fixed VHD."
            )
        size = properties.size
        if size < vhd.FOOTER_SIZE + _MIB or (size - vhd.FOOTER_SIZE) % _MIB:
            raise InvalidInputError(
                "sourceUri",
                f"The size in bytes {size} of {shown} - 512 bytes for the VHD footer "
                f"({size - vhd.FOOTER_SIZE} in this case) must be a positive multiple of MiB.",
            )
        disk_size = size - vhd.FOOTER_SIZE
        footer = vhd.parse_footer(self._blobs.read_range(address, PageRange.at(disk_size, vhd.FOOTER_SIZE)))
        if footer.cookie != b"conectix":
            raise InvalidInputError(
                "sourceUri",
                f"The specified cookie value in VHD footer indicates that the blob {shown} is not a "
                "supported VHD. Disk is expected to have cookie value 'conectix'.",
            )
        if footer.disk_type != 2 or not footer.checksum_ok or footer.current_size != disk_size:
            raise InvalidInputError(
                "sourceUri", f"The VHD {shown} is not a valid fixed VHD of {disk_size} bytes (footer check)."
            )
        # Plain Get Page Ranges (no diff) is one thing Azurite answers right.
        listed = self._blobs.get_page_ranges(address)
        ranges = [
            PageRange(r.start, min(r.end, disk_size - 1)) for r in listed.page_ranges if r.start < disk_size
        ]
        content = PageMap(disk_size)
        for chunk in split(ranges):
            content.write(chunk.start, self._blobs.read_range(address, chunk))
        return content

    # -- the front's dispatcher ---------------------------------------------------------------------

    def _dispatch(self, request: Request) -> Reply:
        account, container, blob = _split_path(request.url_path)
        if account == self.md_account:
            return self._md_request(request, container, blob)
        method, comp = request.method, request.query_param("comp")
        copy_source = request.header("x-ms-copy-source")
        if method == "PUT" and blob and copy_source:
            if comp == "page":
                return self._put_page_from_url(request, account, container, blob, copy_source)
            if comp is None and self._upload_of_url(request, copy_source) is not None:
                refusal = self._authorize(request, account, container, blob, "w")
                return refusal or storage_error(
                    request,
                    409,
                    "CannotVerifyCopySource",
                    "Copy Blob from a disk being uploaded is not modelled by the emulator.",
                )
            if comp is None and (request.header("x-ms-requires-sync") or "").lower() != "true":
                grant = self._grant_of_url(request, copy_source)
                if grant is not None:
                    return self._copy_from_grant(request, grant)
        if (
            method == "PUT"
            and blob
            and comp == "copy"
            and (request.header("x-ms-copy-action") or "").lower() == "abort"
        ):
            abort = self._abort_copy(request, account, container, blob)
            if abort is not None:
                return abort
        if (
            method == "GET"
            and blob
            and comp == "pagelist"
            and request.query_param("prevsnapshot")
            and account in self._keys
        ):
            return self._blob_snapshot_diff(request, account, container, blob)
        watched = method in ("GET", "HEAD") and bool(blob) and comp in (None, "properties")
        if watched:
            self._advance_copy(request.url_path)
        reply = self._forwarder.forward(request)
        if watched:
            self._show_copy_state(request.url_path, reply)
        return reply

    # -- md account: reads through a SAS --------------------------------------------------------------

    def _grant_of_url(self, request: Request, url: str) -> _Grant | None:
        """The grant a URL on this front names (None for any other URL)."""
        parts = urlsplit(url)
        account, container, _ = _split_path(parts.path)
        if parts.netloc != request.host or account != self.md_account:
            return None
        with self._lock:
            return self._by_container.get(container)

    def _upload_of_url(self, request: Request, url: str) -> _UploadSas | None:
        """The write SAS a URL on this front names (None for any other URL)."""
        parts = urlsplit(url)
        account, container, _ = _split_path(parts.path)
        if parts.netloc != request.host or account != self.md_account:
            return None
        with self._lock:
            return self._upload_sas.get(container)

    def _check_md_sas(
        self, request: Request, query: str, container: str, blob: str, permission: str
    ) -> Reply | None:
        """The error answer for a SAS that does not let this request at the md blob, else ``None``."""
        fields = sas.sas_fields(query)
        if "sig" not in fields:
            # Anonymous access to a private container: Azure does not even admit the blob exists.
            return storage_error(request, 404, "ResourceNotFound", "The specified resource does not exist.")
        problem = sas.check_blob_sas(
            fields,
            account=self.md_account,
            account_key=self._keys[self.md_account],
            container=container,
            blob=blob,
            permission=permission,
            now=self._clock(),
        )
        if problem is not None:
            return self._sas_error(request, problem)
        with self._lock:
            grant = self._by_container.get(container)
        if grant is None or blob != MD_BLOB_NAME:
            return storage_error(request, 404, "BlobNotFound", "The specified blob does not exist.")
        if grant.revoked or grant.blob is None:
            return storage_error(
                request,
                403,
                "AuthenticationFailed",
                _AUTHENTICATION_FAILED,
                AuthenticationErrorDetail="Access to the disk or snapshot has been revoked.",
            )
        if grant.vanished:
            return storage_error(request, 404, "BlobNotFound", "The specified blob does not exist.")
        return None

    @staticmethod
    def _sas_error(request: Request, problem: sas.SasProblem) -> Reply:
        if problem.code == "AuthenticationFailed":
            return storage_error(
                request,
                problem.status,
                problem.code,
                _AUTHENTICATION_FAILED,
                AuthenticationErrorDetail=problem.detail,
            )
        return storage_error(request, problem.status, problem.code, problem.detail)

    def _md_request(self, request: Request, container: str, blob: str) -> Reply:
        if not container or not blob:
            return storage_error(
                request,
                403,
                "AuthorizationFailure",
                "This request is not authorized to perform this operation.",
            )
        with self._lock:
            upload = self._upload_sas.get(container)
        if upload is not None:
            return self._upload_request(request, upload, blob)
        permission = "r" if request.method in ("GET", "HEAD") else "w"
        refusal = self._check_md_sas(request, request.query, container, blob, permission)
        if refusal is not None:
            return refusal
        with self._lock:
            grant = self._by_container[container]
            frozen = grant.blob
        if frozen is None:  # ended between the check and now
            return storage_error(request, 404, "BlobNotFound", "The specified blob does not exist.")
        comp = request.query_param("comp")
        if comp == "pagelist":
            return self._page_list(request, grant, frozen)
        if comp in (None, "metadata"):
            return self._read(request, grant, frozen, metadata_only=comp == "metadata")
        return storage_error(
            request,
            400,
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid.",
            QueryParameterName="comp",
            QueryParameterValue=comp,
        )

    def _blob_headers(self, request: Request, grant: _Grant | _UploadTarget) -> list[tuple[str, str]]:
        return [
            *storage_headers(request),
            ("ETag", grant.etag),
            ("Last-Modified", grant.last_modified),
            ("x-ms-creation-time", grant.last_modified),
            ("x-ms-blob-type", "PageBlob"),
            ("x-ms-blob-sequence-number", "0"),
            ("x-ms-lease-status", "unlocked"),
            ("x-ms-lease-state", "available"),
            ("x-ms-server-encrypted", "true"),
            ("Accept-Ranges", "bytes"),
        ]

    def _read(
        self, request: Request, grant: _Grant | _UploadTarget, frozen: PageMap, *, metadata_only: bool
    ) -> Reply:
        headers = self._blob_headers(request, grant)
        if metadata_only:
            return Reply(200, headers, b"")
        size = frozen.size
        wanted = request.header("x-ms-range") or request.header("Range")
        start, end, status = 0, size - 1, 200
        if wanted:
            parsed = parse_byte_range(wanted)
            if parsed is None or parsed[0] >= size:
                reply = storage_error(
                    request,
                    416,
                    "InvalidRange",
                    "The range specified is invalid for the current size of the resource.",
                )
                reply.set_header("Content-Range", f"bytes */{size}")
                return reply
            start, end = parsed[0], min(parsed[1] if parsed[1] is not None else size - 1, size - 1)
            status = 206
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        headers += [("Content-Type", "application/octet-stream"), ("Content-Length", str(end - start + 1))]

        def body() -> Iterator[bytes]:
            for offset in range(start, end + 1, _READ_CHUNK):
                yield frozen.read(offset, min(_READ_CHUNK, end + 1 - offset))

        return Reply(status, headers, body(), end - start + 1)

    # -- md account: the write SAS of an upload -----------------------------------------------------

    def _upload_request(self, request: Request, upload: _UploadSas, blob: str) -> Reply:
        """A request through a disk's write SAS: reads, Put Page and Put Page From URL; nothing else."""
        method, comp = request.method, request.query_param("comp")
        permission = "r" if method in ("GET", "HEAD") else "w"
        fields = sas.sas_fields(request.query)
        if "sig" not in fields:
            return storage_error(request, 404, "ResourceNotFound", "The specified resource does not exist.")
        policy = sas.StoredPolicy("rw", upload.expires_at, upload.issued_at)
        problem = sas.check_blob_sas(
            fields,
            account=self.md_account,
            account_key=self._keys[self.md_account],
            container=upload.container,
            blob=blob,
            permission=permission,
            now=self._clock(),
            policies={upload.identifier: policy},
        )
        if problem is not None:
            return self._sas_error(request, problem)
        with self._lock:
            target = None if upload.revoked else self._upload_targets.get(upload.resource_id)
        if target is None:
            return storage_error(
                request,
                403,
                "AuthenticationFailed",
                _AUTHENTICATION_FAILED,
                AuthenticationErrorDetail="Access to the disk or snapshot has been revoked.",
            )
        if blob != MD_BLOB_NAME:
            return storage_error(request, 404, "BlobNotFound", "The specified blob does not exist.")
        if method in ("GET", "HEAD") and comp in (None, "metadata"):
            return self._read(request, target, target.blob, metadata_only=comp == "metadata")
        if method == "GET" and comp == "pagelist":
            if request.query_param("prevsnapshot") is not None or request.header(
                "x-ms-previous-snapshot-url"
            ):
                return storage_error(
                    request, 409, "PreviousSnapshotNotFound", "The previous snapshot is not found."
                )
            items = [PageListItem(s, e) for s, e in target.blob.ranges()]
            return self._page_list_reply(request, items, target.blob.size, target.etag, target.last_modified)
        if method == "PUT" and comp == "page":
            return self._upload_write(request, target)
        # A disk's write SAS writes pages and nothing else: no Put Blob, resize, lease, snapshot, delete.
        return storage_error(
            request,
            403,
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission.",
        )

    def _upload_write(self, request: Request, target: _UploadTarget) -> Reply:
        """Put Page (update or clear) or Put Page From URL into an upload blob."""
        if_match, if_none_match = request.header("If-Match"), request.header("If-None-Match")
        if (if_match and if_match not in ("*", target.etag)) or (
            if_none_match and if_none_match in ("*", target.etag)
        ):
            message = "The condition specified using HTTP conditional header(s) is not met."
            return storage_error(request, 412, "ConditionNotMet", message)
        page_write = (request.header("x-ms-page-write") or "").lower()
        source = request.header("x-ms-copy-source")
        name = "x-ms-range" if request.header("x-ms-range") else "Range"
        value = request.header(name) or ""
        if page_write == "clear" and not source:
            parsed = parse_byte_range(value)
            try:
                cleared = PageRange(parsed[0], parsed[1]) if parsed and parsed[1] is not None else None
            except InvalidInputError:
                cleared = None
            if cleared is None or request.body:  # clear carries no body and is not held to 4 MiB
                return _bad_header(request, name, value)
            if cleared.end >= target.blob.size:
                return _invalid_page_range(request)
            target.blob.clear(cleared.start, cleared.length)
            return self._written(request, target)
        if page_write != "update":
            return _bad_header(request, "x-ms-page-write", request.header("x-ms-page-write") or "")
        if not source and len(request.body) > MAX_WRITE_BYTES:
            return storage_error(
                request,
                413,
                "RequestBodyTooLarge",
                "The request body is too large and exceeds the maximum permissible limit.",
                MaxLimit=str(MAX_WRITE_BYTES),
            )
        chunk = self._write_range(request, name, request.header(name))
        if isinstance(chunk, Reply):
            return chunk
        if not source:
            if len(request.body) != chunk.length:
                return _bad_header(request, "Content-Length", str(len(request.body)))
            if chunk.end >= target.blob.size:
                return _invalid_page_range(request)
            target.blob.write(chunk.start, request.body)
            return self._written(request, target)
        source_range = self._write_range(request, "x-ms-source-range", request.header("x-ms-source-range"))
        if isinstance(source_range, Reply):
            return source_range
        if source_range.length != chunk.length:
            return _bad_header(request, "x-ms-source-range", request.header("x-ms-source-range") or "")
        if request.body:
            return _bad_header(request, "Content-Length", str(len(request.body)))
        if chunk.end >= target.blob.size:
            return _invalid_page_range(request)
        data = self._read_source(request, source, source_range)
        if isinstance(data, Reply):
            return data
        target.blob.write(chunk.start, data)
        return self._written(request, target)

    @staticmethod
    def _written(request: Request, target: _UploadTarget) -> Reply:
        """The 201 of a page write into an upload blob."""
        target.touch()
        headers = [
            *storage_headers(request),
            ("ETag", target.etag),
            ("Last-Modified", target.last_modified),
            ("x-ms-blob-sequence-number", "0"),
            ("x-ms-request-server-encrypted", "true"),
        ]
        return Reply(201, headers, b"")

    # -- md account: Get Page Ranges, with and without a previous snapshot ---------------------------

    def _page_list(self, request: Request, grant: _Grant, frozen: PageMap) -> Reply:
        previous_url = request.header("x-ms-previous-snapshot-url")
        if request.query_param("prevsnapshot") is not None:
            # The md blob has no blob snapshots: a diff between managed snapshots goes by URL.
            return storage_error(
                request, 409, "PreviousSnapshotNotFound", "The previous snapshot is not found."
            )
        if previous_url:
            outcome = self._previous_grant(request, grant, previous_url)
            if isinstance(outcome, Reply):
                return outcome
            items = diff_items(outcome, frozen)
        else:
            items = [PageListItem(s, e) for s, e in frozen.ranges()]
        return self._page_list_reply(request, items, frozen.size, grant.etag, grant.last_modified)

    @staticmethod
    def _page_list_reply(
        request: Request, items: list[PageListItem], size: int, etag: str, last_modified: str
    ) -> Reply:
        """The Get Page Ranges answer: ``items`` narrowed by the request's range, marker and maxresults."""
        within_name = "x-ms-range" if request.header("x-ms-range") else "Range"
        within_value = request.header(within_name)
        chosen = select(
            items,
            size=size,
            within=(within_name, within_value) if within_value else None,
            maxresults=request.query_param("maxresults"),
            marker=request.query_param("marker"),
        )
        if isinstance(chosen, QueryProblem):
            return storage_error(request, chosen.status, chosen.code, chosen.message, **chosen.details)
        page, next_marker = chosen
        headers = [
            *storage_headers(request),
            ("ETag", etag),
            ("Last-Modified", last_modified),
            ("x-ms-blob-content-length", str(size)),
            ("Content-Type", "application/xml"),
        ]
        return Reply(200, headers, page_list_xml(page, next_marker))

    def _previous_grant(self, request: Request, grant: _Grant, previous_url: str) -> PageMap | Reply:
        """The older snapshot's frozen blob named by ``x-ms-previous-snapshot-url``, or the error answer."""
        parts = urlsplit(previous_url)
        account, container, blob = _split_path(parts.path)
        if parts.netloc != request.host or account != self.md_account:
            return storage_error(
                request, 409, "PreviousSnapshotNotFound", "The previous snapshot is not found."
            )
        refusal = self._check_md_sas(request, parts.query, container, blob, "r")
        if refusal is not None:
            return refusal
        with self._lock:
            previous = self._by_container[container]
            older = previous.blob
        if older is None:
            return storage_error(
                request, 409, "PreviousSnapshotNotFound", "The previous snapshot is not found."
            )
        if grant.family_id is None or previous.family_id is None:
            return storage_error(
                request,
                409,
                "PreviousSnapshotOperationNotSupported",
                "Differential Get Page Ranges is not supported on the previous snapshot.",
            )
        if previous.family_id != grant.family_id:
            return storage_error(
                request, 409, "PreviousSnapshotNotFound", "The previous snapshot is not found."
            )
        if previous.taken_at and grant.taken_at and previous.taken_at > grant.taken_at:
            return storage_error(
                request,
                400,
                "PreviousSnapshotCannotBeNewer",
                "The prevsnapshot query parameter value cannot be newer than snapshot query parameter value.",
            )
        return older

    # -- Get Page Ranges with prevsnapshot on the other accounts -------------------------------------

    def _blob_snapshot_diff(self, request: Request, account: str, container: str, blob: str) -> Reply:
        """Get Page Ranges ``prevsnapshot`` on a blob of another account: Azurite's answer is wrong.

        Both versions are read back from Azurite (plain page ranges and ranged reads, which it answers
        right) and compared as page maps. Costs a read of both; fine for a test bed.
        """
        refusal = self._authorize(request, account, container, blob, "r")
        if refusal is not None:
            return refusal
        base = self._accounts.blob(account, container, unquote(blob))
        try:
            newer, properties = self._load(base.at_snapshot(request.query_param("snapshot")))
        except NotFoundError:
            return storage_error(request, 404, "BlobNotFound", "The specified blob does not exist.")
        except InvalidInputError:
            return storage_error(
                request, 400, "InvalidQueryParameterValue", "The snapshot parameter is not valid.",
                QueryParameterName="snapshot",
            )  # fmt: skip
        try:
            older, _ = self._load(base.at_snapshot(request.query_param("prevsnapshot")))
        except (NotFoundError, InvalidInputError):
            return storage_error(
                request, 409, "PreviousSnapshotNotFound", "The previous snapshot is not found."
            )
        if newer is None:
            items = []
        elif older is None:
            items = [PageListItem(s, e) for s, e in newer.ranges()]
        else:
            items = diff_items(older, newer)
        last_modified = _http_date(properties.last_modified)
        return self._page_list_reply(request, items, properties.size, properties.etag, last_modified)

    def _load(self, address: BlobAddress) -> tuple[PageMap | None, BlobProperties]:
        """A page blob version read back from Azurite as a page map (``None`` when it is empty)."""
        properties = self._blobs.get_properties(address)
        if properties.size == 0:
            return None, properties
        content = PageMap(properties.size)
        listed = self._blobs.get_page_ranges(address)
        for chunk in split(list(listed.page_ranges)):
            content.write(chunk.start, self._blobs.read_range(address, chunk))
        return content, properties

    # -- copies from a grant: forwarded, then paced -------------------------------------------------

    def _copy_from_grant(self, request: Request, grant: _Grant) -> Reply:
        with grant.lock:
            usable = not grant.revoked and not grant.vanished and grant.blob is not None
            if usable:
                # Azurite copies from its own store: the content goes there now (afresh for a second
                # copy, since an earlier copy shares, and may have changed, the md blob's pages).
                self._materialise(grant)
            reply = self._forwarder.forward(request)
            if reply.status != 202:
                return reply
            grant.copies += 1
        with self._lock:
            failures = self._copy_failures.get(grant.resource_id)
            failure = failures.popleft() if failures else None
        timed = self.copy_pending_seconds > 0
        if self.copy_pending_polls <= 0 and not timed and failure is None:
            return reply
        copy_id = reply.header("x-ms-copy-id") or ""
        started = self.pacing_clock()
        with self._lock:
            self._copies[request.url_path] = PacedCopy(
                copy_id,
                grant.container,
                grant.blob_size,
                max(0, self.copy_pending_polls),
                failure,
                started=started,
                until=started + timedelta(seconds=self.copy_pending_seconds) if timed else None,
            )
        reply.set_header("x-ms-copy-status", "pending")
        return reply

    def _fail_copies_from(self, source: str, description: str) -> None:
        """End every copy still pending from the md container ``source`` as ``failed``."""
        now = self._clock()
        with self._lock:
            ended = [path for path, paced in self._copies.items() if paced.source == source and paced.pending]
            for path in ended:
                self._copies[path].settle("failed", description, now)
        for path in ended:
            self._truncate(path)

    def _truncate(self, path: str) -> None:
        """Leave a failed or aborted copy's destination with zero length, as Azure does."""
        account, container, blob = _split_path(path)
        if account not in self._keys:
            return
        try:
            self._blobs.resize(self._accounts.blob(account, container, unquote(blob)), 0)
        except DiskBackupError as error:  # the status still says failed; the length is a detail
            log.warning("could not truncate the copy destination %s: %s", path, error.message)

    def _advance_copy(self, path: str) -> None:
        """A HEAD/GET of a paced copy's destination is coming: move the copy one poll on."""
        with self._lock:
            paced = self._copies.get(path)
            if paced is None or not paced.pending:
                return
            paced.observe(self.pacing_clock())
            failed = paced.outcome == "failed"
        if failed:
            self._truncate(path)  # before the HEAD goes on, so it shows the length Azure would

    def _show_copy_state(self, path: str, reply: Reply) -> None:
        """Overlay a paced copy's state on the answer to a HEAD/GET of its destination."""
        with self._lock:
            paced = self._copies.get(path)
            if paced is None or reply.status not in (200, 206):
                return
            if reply.header("x-ms-copy-id") != paced.copy_id or paced.outcome == "success":
                # Overwritten since, or done: from now on Azurite's own headers tell the truth.
                del self._copies[path]
                return
            shown = paced.headers()
        for name, value in shown.items():
            reply.set_header(name, value)

    def _abort_copy(self, request: Request, account: str, container: str, blob: str) -> Reply | None:
        """Abort Copy Blob of a copy still shown pending; ``None`` to let Azurite answer (409)."""
        with self._lock:
            paced = self._copies.get(request.url_path)
            pending = paced is not None and paced.pending
        if paced is None or not pending:
            return None
        refusal = self._authorize(request, account, container, blob, "w")
        if refusal is not None:
            return refusal
        if request.query_param("copyid") != paced.copy_id:
            return storage_error(
                request,
                409,
                "CopyIdMismatch",
                "The specified copy ID did not match the copy ID for the pending copy operation.",
            )
        with self._lock:
            paced.settle("aborted", None, self._clock())
        self._truncate(request.url_path)  # Abort Copy Blob leaves the destination with zero length
        return Reply(204, storage_headers(request), b"")

    # -- Put Page From URL --------------------------------------------------------------------------

    def _authorize(
        self, request: Request, account: str, container: str, blob: str, permission: str
    ) -> Reply | None:
        """Check the caller's Shared Key or SAS on ``account`` as Azure would: the error answer, or None.

        ``permission`` is the SAS permission the operation needs (``r`` to read, ``w`` to write).
        """
        authorization = request.header("Authorization")
        fields = sas.sas_fields(request.query)
        failed = _AUTHENTICATION_FAILED
        key = self._keys.get(account)
        if authorization:
            scheme, _, credential = authorization.strip().partition(" ")
            if scheme != "SharedKey":
                detail = f"Authorization scheme {scheme} is not supported by the emulator's front."
                return storage_error(
                    request, 403, "AuthenticationFailed", failed, AuthenticationErrorDetail=detail
                )
            name = credential.partition(":")[0]
            if name != account or key is None or not (request.header("x-ms-date") or request.header("Date")):
                return storage_error(request, 403, "AuthenticationFailed", failed)
            try:
                verified = self._accounts.signers[account].verify(
                    authorization, request.method, request.url, dict(request.headers)
                )
            except InvalidInputError:  # headers the signer cannot canonicalize cannot be signed right
                verified = False
            if not verified:
                detail = (
                    "The MAC signature found in the HTTP request is not the same as any computed signature."
                )
                return storage_error(
                    request, 403, "AuthenticationFailed", failed, AuthenticationErrorDetail=detail
                )
            return None
        if "sig" in fields:
            if key is None:
                return storage_error(request, 403, "AuthenticationFailed", failed)
            now = self._clock()
            if "ss" in fields:
                problem = sas.check_account_sas(
                    fields,
                    account=account,
                    account_key=key,
                    permission=permission,
                    resource_type="o",
                    now=now,
                )
            else:
                problem = sas.check_blob_sas(
                    fields,
                    account=account,
                    account_key=key,
                    container=container,
                    blob=unquote(blob),  # a SAS signs the blob's name, not its URL encoding
                    permission=permission,
                    now=now,
                )
            return None if problem is None else self._sas_error(request, problem)
        return storage_error(request, 404, "ResourceNotFound", "The specified resource does not exist.")

    def _put_page_from_url(
        self, request: Request, account: str, container: str, blob: str, source: str
    ) -> Reply:
        refusal = self._authorize(request, account, container, blob, "w")
        if refusal is not None:
            return refusal
        target_name = "x-ms-range" if request.header("x-ms-range") else "Range"
        target = self._write_range(request, target_name, request.header(target_name))
        if isinstance(target, Reply):
            return target
        source_range = self._write_range(request, "x-ms-source-range", request.header("x-ms-source-range"))
        if isinstance(source_range, Reply):
            return source_range
        if source_range.length != target.length:
            return _bad_header(request, "x-ms-source-range", request.header("x-ms-source-range") or "")
        page_write = request.header("x-ms-page-write") or ""
        if page_write.lower() != "update":
            return _bad_header(request, "x-ms-page-write", page_write)
        if request.body:
            return _bad_header(request, "Content-Length", str(len(request.body)))
        data = self._read_source(request, source, source_range)
        if isinstance(data, Reply):
            return data
        headers = {
            "x-ms-version": STORAGE_API_VERSION,
            "x-ms-page-write": "update",
            "x-ms-range": target.header(),
        }
        for name, value in request.headers:
            if name.lower() in _DESTINATION_CONDITIONS:
                headers[name] = value
        url = self._accounts.blob(account, container, unquote(blob)).request_url(comp="page")
        response = self._relay.request(
            "PUT",
            url,
            headers=headers,
            body=data,
            authorize=self._accounts.signers[account],
            ok=range(100, 600),
        )
        hop = ("content-length", "connection", "keep-alive", "transfer-encoding")
        passed = [(k, v) for k, v in response.headers.items() if k.lower() not in hop]
        return Reply(response.status_code, passed, response.content)

    @staticmethod
    def _write_range(request: Request, name: str, value: str | None) -> PageRange | Reply:
        if not value:
            message = "An HTTP header that's mandatory for this request is not specified."
            return storage_error(request, 400, "MissingRequiredHeader", message, HeaderName=name)
        parsed = parse_byte_range(value)
        if parsed is None or parsed[1] is None:
            return _bad_header(request, name, value)
        try:
            chunk = PageRange(parsed[0], parsed[1])
        except InvalidInputError:
            return _bad_header(request, name, value)
        if chunk.length > MAX_WRITE_BYTES:
            return _bad_header(request, name, value)
        return chunk

    def _read_source(self, request: Request, source: str, chunk: PageRange) -> bytes | Reply:
        """The bytes of ``chunk`` of the copy source, or the error answer (``CannotVerifyCopySource``)."""
        parts = urlsplit(source)
        account, container, blob = _split_path(parts.path)
        if parts.netloc == request.host and account == self.md_account:
            refusal = self._check_md_sas(request, parts.query, container, blob, "r")
            if refusal is not None:
                return _cannot_verify(request, refusal)
            with self._lock:
                frozen = self._by_container[container].blob
            if frozen is None:
                return storage_error(
                    request, 404, "CannotVerifyCopySource", "The specified blob does not exist."
                )
            if chunk.end >= frozen.size:
                return storage_error(
                    request,
                    416,
                    "CannotVerifyCopySource",
                    "The range specified is invalid for the current size of the resource.",
                )
            return frozen.read(chunk.start, chunk.length)
        headers = {"x-ms-version": STORAGE_API_VERSION, "x-ms-range": chunk.header()}
        source_auth = request.header("x-ms-copy-source-authorization")
        if source_auth:
            headers["Authorization"] = source_auth
        try:
            response = self._session.get(
                source, headers=headers, timeout=(10, 120), verify=self.copy_source_verify
            )
        except requests.RequestException as error:
            log.warning("copy source %s unreachable: %s", strip_query(source), type(error).__name__)
            return storage_error(
                request,
                500,
                "CannotVerifyCopySource",
                "Could not verify the copy source within the specified time.",
            )
        if response.status_code not in (200, 206) or len(response.content) != chunk.length:
            message = _xml_message(response.content) or response.reason or "Could not read the copy source."
            return storage_error(
                request,
                response.status_code if response.status_code >= 400 else 500,
                "CannotVerifyCopySource",
                message,
            )
        return response.content


def _bad_header(request: Request, name: str, value: str) -> Reply:
    return storage_error(
        request,
        400,
        "InvalidHeaderValue",
        "The value for one of the HTTP headers is not in the correct format.",
        HeaderName=name,
        HeaderValue=value,
    )


def _invalid_page_range(request: Request) -> Reply:
    return storage_error(request, 416, "InvalidPageRange", "The page range specified is invalid.")


def _xml_message(body: bytes) -> str | None:
    try:
        text = ET.fromstring(body).findtext("Message")  # noqa: S314 - a storage error body, loopback only
    except ET.ParseError:
        return None
    return text.split("\n", 1)[0] if text else None


def _cannot_verify(request: Request, refusal: Reply) -> Reply:
    """A source refusal restated as Azure does for a copy: same status, ``CannotVerifyCopySource``."""
    body = refusal.body if isinstance(refusal.body, bytes) else b""
    message = _xml_message(body) or "Could not verify the copy source."
    return storage_error(request, refusal.status, "CannotVerifyCopySource", message)
