"""Azure Blob Storage REST for page blobs, over :class:`backup.azure.transport.Transport`.

A blob is addressed by a :class:`BlobAddress`, one of two kinds:

- a blob in an account we authorize for: ``BlobAddress.in_account(endpoint, container, name, authorize)``
  where ``authorize`` is a :mod:`backup.azure.storage_auth` authorizer (Shared Key or bearer);
- a blob given by a full SAS URL: ``BlobAddress.from_sas_url(url)``; the SAS is the authorization. The
  copy source and the page-range diff base are such URLs (a snapshot's grant-access SAS). A blob of our
  own account becomes one with :meth:`BlobAddress.with_sas` and a SAS signed by
  :meth:`backup.azure.storage_auth.SharedKeyAuthorizer.blob_sas`.

The source of Put Page From URL is authorized either by a SAS in its URL
(:meth:`BlobClient.put_page_from_url`) or by an Azure AD token sent as ``x-ms-copy-source-authorization:
Bearer <token>`` (:meth:`BlobClient.put_page_from_url_with_token`; x-ms-version 2020-10-02 or later, and
the token's identity needs read access to the source, e.g. Storage Blob Data Reader). The token goes to
the *destination's* host, which reads the source with it: so only to https, or plain http on loopback
(the emulator).

:class:`BlobClient` sends the operations the backup needs: create the container if missing; List Blobs
(with snapshots and metadata); create and resize a page blob; Put Page (update, clear) and Put Page From
URL; Get Page Ranges, with a diff against an earlier snapshot, one page at a time or NextMarker followed
to the end; Copy Blob start, its status from Get Blob Properties (HEAD), abort; properties and metadata;
a blob snapshot; Lease Blob (acquire, release, break); ranged reads; Put Blob and Get Blob of small block
blobs; delete with snapshots. Writes take the ``lease_id`` of a leased blob. Results are small frozen
dataclasses. Storage's error answers (``x-ms-error-code``, XML ``<Code>``/``<Message>``) become the
:mod:`backup.errors` tree.

A SAS is a secret: :class:`BlobAddress` keeps it out of ``repr`` and :attr:`BlobAddress.display_url`,
Transport logs URLs without their query, and error text is redacted.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Literal, TypeGuard
from urllib.parse import quote, urlsplit

import requests

from backup.azure.credentials import TokenProvider
from backup.azure.names import validate_container_name
from backup.azure.page_range import PAGE_SIZE, PageRange
from backup.azure.transport import (
    Authorizer,
    Transport,
    error_from_response,
    is_loopback_url,
    reading,
    unexpected_response,
)
from backup.errors import InvalidInputError, UnexpectedResponseError
from backup.redact import get_logger, strip_query

log = get_logger(__name__)

__all__ = [
    "INFINITE_LEASE",
    "MAX_PAGE_BLOB_SIZE",
    "MAX_SMALL_BLOB",
    "STORAGE_API_VERSION",
    "BlobAddress",
    "BlobClient",
    "BlobItem",
    "BlobProperties",
    "ContainerAddress",
    "CopyStarted",
    "CopyStatus",
    "PageRangeDiff",
    "parse_blob_list",
    "parse_page_list",
    "parse_storage_error",
    "properties_from_headers",
]

#: The one x-ms-version we speak: new enough for everything used here (Put Page From URL needs
#: 2018-11-09, previous-snapshot-url 2019-07-07, Get Page Ranges marker paging and
#: x-ms-copy-source-authorization 2020-10-02).
STORAGE_API_VERSION = "2025-01-05"
#: The largest page blob Azure allows.
MAX_PAGE_BLOB_SIZE = 8 * 1024**4
#: The largest small block blob (a plan document) written or read whole here.
MAX_SMALL_BLOB = 16 * 1024**2

_METADATA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
# Snapshot timestamps look like 2024-01-02T03:04:05.1234567Z.
_SNAPSHOT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z")
_LEASE_ID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
#: Lease Blob's duration for a lease that lasts until released or broken.
INFINITE_LEASE = -1


class CopyStatus(StrEnum):
    """``x-ms-copy-status`` of a blob that was the destination of Copy Blob."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILED = "failed"
    ABORTED = "aborted"


@dataclass(frozen=True)
class ContainerAddress:
    """A container in an account: its URL (no query) and the authorizer for requests to it."""

    url: str
    authorize: Authorizer = field(repr=False, compare=False)

    @classmethod
    def in_account(cls, endpoint: str, container: str, authorize: Authorizer) -> ContainerAddress:
        """The container ``container`` under the account's blob ``endpoint``.

        ``endpoint`` is ``https://<account>.blob.core.windows.net`` on Azure or path-style
        ``http://127.0.0.1:<port>/<account>`` on Azurite and the emulator front.
        """
        validate_container_name(container)
        return cls(f"{_validated_endpoint(endpoint)}/{container}", authorize)

    def blob(self, name: str) -> BlobAddress:
        """The blob ``name`` in this container."""
        return BlobAddress(url=f"{self.url}/{_quoted_blob_name(name)}", authorize=self.authorize)


@dataclass(frozen=True)
class BlobAddress:
    """Where a blob (or one of its snapshots) is, and what authorizes requests to it.

    ``url`` has no query. Exactly one of ``authorize`` (an account we hold credentials for) and
    ``sas`` (the query string of a SAS URL, a secret) is set. ``snapshot`` selects a blob snapshot.
    """

    url: str
    authorize: Authorizer | None = field(default=None, repr=False, compare=False)
    sas: str = field(default="", repr=False)
    snapshot: str | None = None

    def __post_init__(self) -> None:
        if (self.authorize is None) == (not self.sas):
            raise InvalidInputError("blob address", "needs exactly one of an authorizer and a SAS")
        if self.snapshot is not None and not _SNAPSHOT.fullmatch(self.snapshot):
            raise InvalidInputError("snapshot", f"{self.snapshot!r} is not a snapshot timestamp")

    @classmethod
    def in_account(cls, endpoint: str, container: str, name: str, authorize: Authorizer) -> BlobAddress:
        """The blob ``container/name`` under the blob ``endpoint`` (see :class:`ContainerAddress`)."""
        return ContainerAddress.in_account(endpoint, container, authorize).blob(name)

    @classmethod
    def from_sas_url(cls, sas_url: str) -> BlobAddress:
        """A blob given by a full SAS URL (``https://.../container/blob?sv=...&sig=...``).

        A ``snapshot=`` parameter in the URL (a snapshot's SAS) is kept in the query as given.
        """
        parts = urlsplit(sas_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInputError("sas url", "must be an http(s) URL")
        if parts.fragment:
            raise InvalidInputError("sas url", "must not have a fragment")
        if "sig=" not in parts.query:
            raise InvalidInputError("sas url", "has no SAS signature (sig=)")
        if parts.path.count("/") < 2:
            raise InvalidInputError("sas url", "does not name a container and a blob")
        return cls(url=f"{parts.scheme}://{parts.netloc}{parts.path}", sas=parts.query)

    @property
    def display_url(self) -> str:
        """The URL without SAS, for logs, errors and the catalog."""
        return self.url if self.snapshot is None else f"{self.url}?snapshot={self.snapshot}"

    def at_snapshot(self, snapshot: str | None) -> BlobAddress:
        """The same blob at ``snapshot`` (a timestamp from :meth:`BlobClient.snapshot`), or the base blob."""
        return replace(self, snapshot=snapshot)

    def request_url(self, **params: str) -> str:
        """The URL of a request: ``params``, the snapshot and the SAS (secret) in the query."""
        query = [f"{name}={quote(value, safe='')}" for name, value in params.items()]
        if self.snapshot is not None:
            query.append(f"snapshot={quote(self.snapshot, safe='')}")
        if self.sas:
            query.append(self.sas)
        return self.url + ("?" + "&".join(query) if query else "")

    def source_url(self) -> str:
        """This blob as the source of a copy: the URL with its SAS. Contains a secret when SAS-addressed."""
        return self.request_url()

    def with_sas(self, sas: str) -> BlobAddress:
        """The same blob (and snapshot) addressed by the SAS query ``sas`` instead of an authorizer.

        For handing one of our blobs to another service as a copy source: sign the SAS with
        :meth:`backup.azure.storage_auth.SharedKeyAuthorizer.blob_sas` (``snapshot=`` the same timestamp
        for a blob snapshot).
        """
        if not isinstance(sas, str) or "sig=" not in sas or sas.startswith("?"):
            raise InvalidInputError("sas", "must be a SAS query string (with sig=, without '?')")
        return replace(self, authorize=None, sas=sas)


@dataclass(frozen=True)
class BlobProperties:
    """Get Blob Properties of a blob: its size, ETag, metadata and the state of the last copy into it.

    ``copy_progress`` is ``(bytes copied, bytes total)``; ``copy_source`` the source URL without query.
    """

    size: int
    etag: str
    last_modified: datetime
    metadata: dict[str, str]
    blob_type: str | None = None
    sequence_number: int | None = None
    copy_id: str | None = None
    copy_status: CopyStatus | None = None
    copy_progress: tuple[int, int] | None = None
    copy_status_description: str | None = None
    copy_source: str | None = None
    copy_completion_time: datetime | None = None
    lease_state: str | None = None  # available, leased, expired, breaking, broken
    lease_status: str | None = None  # locked, unlocked

    @property
    def leased(self) -> bool:
        """Whether a lease holds the blob (writes need its lease id)."""
        return self.lease_status == "locked"


@dataclass(frozen=True)
class CopyStarted:
    """What Copy Blob answered: the copy's id and its first status (``success`` or ``pending``)."""

    copy_id: str
    status: CopyStatus


@dataclass(frozen=True)
class BlobItem:
    """One entry of List Blobs: a blob, or one of its snapshots (``snapshot`` set), with its metadata.

    Only what the backup reads from a listing; the copy source Azure lists is left out on purpose (it
    may carry the source's SAS).
    """

    name: str
    snapshot: str | None
    size: int
    metadata: dict[str, str]
    blob_type: str | None = None


@dataclass(frozen=True)
class PageRangeDiff:
    """Get Page Ranges: valid (or, with a diff, changed) ``page_ranges`` and, with a diff, ``clear_ranges``.

    ``blob_size`` is the blob's size when answered.
    """

    page_ranges: tuple[PageRange, ...]
    clear_ranges: tuple[PageRange, ...]
    blob_size: int


# -- pure parts: validation, parsing --------------------------------------------------------------------


def _validated_endpoint(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInputError("blob endpoint", f"{strip_query(endpoint)!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise InvalidInputError("blob endpoint", "must not have a query or fragment")
    return endpoint.rstrip("/")


def _quoted_blob_name(name: str) -> str:
    if not name or len(name) > 1024:
        raise InvalidInputError("blob name", "must be 1 to 1024 characters")
    if name.endswith((".", "/")) or any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        raise InvalidInputError("blob name", f"{name!r} ends with '.' or '/' or holds a control character")
    # Every character outside the unreserved set is percent-encoded, so the path we sign is the path
    # requests sends (requests re-quotes only what is not already encoded).
    return quote(name, safe="/~")


def _metadata_headers(metadata: Mapping[str, str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in metadata.items():
        if not _METADATA_NAME.fullmatch(name):
            raise InvalidInputError("metadata", f"name {name!r} is not a C# identifier")
        if not isinstance(value, str) or not _PRINTABLE_ASCII.fullmatch(value) or value != value.strip():
            # Azure trims header values before checking the signature and storing them, and headers are
            # ASCII: anything else would be silently changed or fail authorization.
            raise InvalidInputError(
                "metadata", f"value of {name} must be printable ASCII without edge spaces"
            )
        if f"x-ms-meta-{name.lower()}" in {h.lower() for h in headers}:
            raise InvalidInputError("metadata", f"name {name!r} given twice (names are case-insensitive)")
        headers[f"x-ms-meta-{name}"] = value
    return headers


def _xml(text: str) -> ET.Element:
    # The standard library parser expands internal entities; service answers never declare any, so a
    # DOCTYPE is refused rather than parsed (what defusedxml would do, without the dependency).
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise UnexpectedResponseError("response body", "XML with a DOCTYPE is not accepted")
    try:
        return ET.fromstring(text)  # noqa: S314 -- see above
    except ET.ParseError as exc:
        raise UnexpectedResponseError("response body", f"malformed XML: {exc}") from None


def parse_storage_error(response: requests.Response) -> tuple[str | None, str | None]:
    """A storage error answer's code (``x-ms-error-code`` or XML ``<Code>``) and first message line."""
    code = response.headers.get("x-ms-error-code")
    message = None
    text = response.text if response.content else ""
    if text.lstrip().startswith("<"):
        root = _xml(text)
        code = code or root.findtext("Code")
        full = root.findtext("Message")
        # Azure appends "RequestId:...\nTime:..." to the message; the request id is carried apart.
        message = full.strip().splitlines()[0] if full and full.strip() else None
    return code, message or response.reason or None


def parse_page_list(text: str) -> tuple[list[PageRange], list[PageRange], str | None]:
    """A Get Page Ranges answer: page ranges, clear ranges (in order) and the NextMarker, if any.

    Anything else is an :class:`~backup.errors.UnexpectedResponseError`.
    """
    root = _xml(text)
    if root.tag != "PageList":
        raise UnexpectedResponseError("response body", f"expected a PageList, got {root.tag[:100]}")
    pages: list[PageRange] = []
    clears: list[PageRange] = []
    for element in root:
        if element.tag in ("PageRange", "ClearRange"):
            start, end = element.findtext("Start"), element.findtext("End")
            if not _is_number(start) or not _is_number(end):
                raise UnexpectedResponseError("response body", f"{element.tag} without numeric Start/End")
            try:
                found = PageRange(int(start), int(end))
            except InvalidInputError as exc:
                raise UnexpectedResponseError(f"response body: {element.tag}", exc.message) from None
            (pages if element.tag == "PageRange" else clears).append(found)
    marker = (root.findtext("NextMarker") or "").strip()
    return pages, clears, marker or None


def parse_blob_list(text: str) -> tuple[list[BlobItem], str | None]:
    """A List Blobs answer: its blobs (and snapshots, in the order listed) and the NextMarker, if any."""
    root = _xml(text)
    if root.tag != "EnumerationResults":
        raise InvalidInputError("response body", f"expected EnumerationResults, got {root.tag}")
    items: list[BlobItem] = []
    blobs = root.find("Blobs")
    for element in blobs if blobs is not None else ():
        if element.tag != "Blob":
            continue  # BlobPrefix entries appear only with a delimiter, which is never sent
        name = element.findtext("Name")
        snapshot = (element.findtext("Snapshot") or "").strip() or None
        properties = element.find("Properties")
        length = properties.findtext("Content-Length") if properties is not None else None
        if not name or length is None or not length.strip().isdigit():
            raise InvalidInputError("response body", "a listed blob without Name or Content-Length")
        if snapshot is not None and not _SNAPSHOT.fullmatch(snapshot):
            raise InvalidInputError("response body", f"{snapshot!r} is not a snapshot timestamp")
        found = element.find("Metadata")
        metadata = {child.tag: child.text or "" for child in found} if found is not None else {}
        blob_type = properties.findtext("BlobType") if properties is not None else None
        items.append(BlobItem(name, snapshot, int(length.strip()), metadata, blob_type))
    marker = (root.findtext("NextMarker") or "").strip()
    return items, marker or None


def _copy_progress(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    copied, _, total = value.partition("/")
    if not _is_number(copied) or not _is_number(total):
        raise UnexpectedResponseError("x-ms-copy-progress", f"{value[:100]!r} is not 'copied/total'")
    return int(copied), int(total)


def _copy_status(value: str | None) -> CopyStatus | None:
    if value is None:
        return None
    try:
        return CopyStatus(value)
    except ValueError:
        raise UnexpectedResponseError("x-ms-copy-status", f"unknown status {value[:100]!r}") from None


def _http_time(value: str | None, header: str) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise UnexpectedResponseError(header, f"{value[:100]!r} is not an HTTP date") from None


def _is_number(text: str | None) -> TypeGuard[str]:
    # str.isdigit() also admits digits int() refuses (superscripts): ASCII digits only.
    return text is not None and re.fullmatch(r"[0-9]+", text) is not None


def properties_from_headers(headers: Mapping[str, str]) -> BlobProperties:
    """:class:`BlobProperties` from Get Blob Properties' answer headers (case-insensitive mapping).

    Headers that are missing or not what the service documents are an
    :class:`~backup.errors.UnexpectedResponseError`.
    """
    last_modified = _http_time(headers.get("Last-Modified"), "Last-Modified")
    size = headers.get("Content-Length", "")
    if last_modified is None or not _is_number(size):
        raise UnexpectedResponseError(
            "response headers", "Get Blob Properties without Content-Length/Last-Modified"
        )
    metadata = {
        name[len("x-ms-meta-") :]: value
        for name, value in headers.items()
        if name.lower().startswith("x-ms-meta-")
    }
    sequence = headers.get("x-ms-blob-sequence-number")
    source = headers.get("x-ms-copy-source")
    return BlobProperties(
        size=int(size),
        etag=headers.get("ETag", ""),
        last_modified=last_modified,
        metadata=metadata,
        blob_type=headers.get("x-ms-blob-type"),
        sequence_number=int(sequence) if _is_number(sequence) else None,
        copy_id=headers.get("x-ms-copy-id"),
        copy_status=_copy_status(headers.get("x-ms-copy-status")),
        copy_progress=_copy_progress(headers.get("x-ms-copy-progress")),
        copy_status_description=headers.get("x-ms-copy-status-description"),
        copy_source=strip_query(source) if source else None,
        copy_completion_time=_http_time(
            headers.get("x-ms-copy-completion-time"), "x-ms-copy-completion-time"
        ),
        lease_state=headers.get("x-ms-lease-state"),
        lease_status=headers.get("x-ms-lease-status"),
    )


def _checked_lease_id(lease_id: str) -> str:
    if not isinstance(lease_id, str) or not _LEASE_ID.fullmatch(lease_id):
        raise InvalidInputError("lease_id", f"{lease_id!r} is not a lease id (a GUID)")
    return lease_id


def _lease_header(lease_id: str | None) -> dict[str, str]:
    return {} if lease_id is None else {"x-ms-lease-id": _checked_lease_id(lease_id)}


def _checked_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0 or size % PAGE_SIZE:
        raise InvalidInputError("size", f"must be a non-negative multiple of {PAGE_SIZE}, got {size!r}")
    if size > MAX_PAGE_BLOB_SIZE:
        raise InvalidInputError("size", f"{size} is above the page blob maximum of {MAX_PAGE_BLOB_SIZE}")
    return size


# -- the client ---------------------------------------------------------------------------------------


class BlobClient:
    """Blob operations over one :class:`~backup.azure.transport.Transport` (pooled, retrying)."""

    def __init__(self, transport: Transport | None = None) -> None:
        self.transport = transport or Transport()

    def _send(
        self,
        method: str,
        address: BlobAddress | ContainerAddress,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        idempotent: bool | None = None,
        ok: tuple[int, ...] | None = None,
    ) -> requests.Response:
        authorize: Authorizer | None = address.authorize
        if isinstance(address, ContainerAddress):
            query = "&".join(f"{k}={quote(v, safe='')}" for k, v in (params or {}).items())
            url = address.url + (f"?{query}" if query else "")
        else:
            url = address.request_url(**(params or {}))
        sent = {"x-ms-version": STORAGE_API_VERSION, **(headers or {})}
        return self.transport.request(
            method,
            url,
            headers=sent,
            body=body,
            authorize=authorize,
            idempotent=idempotent,
            ok=ok,
            parse_error=parse_storage_error,
        )

    # -- containers ------------------------------------------------------------------------------------

    def create_container(self, container: ContainerAddress) -> bool:
        """Create the container unless it exists; True when this call created it."""
        response = self._send(
            "PUT", container, params={"restype": "container"}, idempotent=True, ok=(201, 409)
        )
        if response.status_code == 409:
            code = response.headers.get("x-ms-error-code")
            if code != "ContainerAlreadyExists":
                raise error_from_response(response, parse_storage_error)
            return False
        return True

    def delete_container(self, container: ContainerAddress) -> None:
        """Delete the container and everything in it."""
        self._send("DELETE", container, params={"restype": "container"})

    # -- page blobs ------------------------------------------------------------------------------------

    def create_page_blob(
        self,
        blob: BlobAddress,
        size: int,
        *,
        metadata: Mapping[str, str] | None = None,
        overwrite: bool = True,
        lease_id: str | None = None,
    ) -> str:
        """Create an empty page blob of ``size`` bytes (a 512 multiple); returns its ETag.

        With ``overwrite=False`` an existing blob is left alone and :class:`ConflictError` raised.
        """
        headers = {
            "x-ms-blob-type": "PageBlob",
            "x-ms-blob-content-length": str(_checked_size(size)),
            **_metadata_headers(metadata or {}),
            **_lease_header(lease_id),
        }
        if not overwrite:
            headers["If-None-Match"] = "*"
        response = self._send("PUT", blob, headers=headers, idempotent=overwrite)
        return response.headers.get("ETag", "")

    def resize(self, blob: BlobAddress, size: int, *, lease_id: str | None = None) -> str:
        """Set the page blob's size (a 512 multiple; shrinking drops pages past it); returns the ETag."""
        headers = {"x-ms-blob-content-length": str(_checked_size(size)), **_lease_header(lease_id)}
        response = self._send("PUT", blob, params={"comp": "properties"}, headers=headers, idempotent=True)
        return response.headers.get("ETag", "")

    def put_page(
        self,
        blob: BlobAddress,
        page_range: PageRange,
        data: bytes,
        *,
        if_match: str | None = None,
        lease_id: str | None = None,
    ) -> str:
        """Write ``data`` (the range's length, at most 4 MiB) into ``page_range``; returns the ETag."""
        if len(data) != page_range.length:
            raise InvalidInputError(
                "data", f"is {len(data)} bytes but {page_range.header()} needs {page_range.length}"
            )
        headers = {
            "x-ms-page-write": "update",
            "x-ms-range": page_range.write_header(),
            **_lease_header(lease_id),
        }
        if if_match is not None:
            headers["If-Match"] = if_match
        response = self._send(
            "PUT", blob, params={"comp": "page"}, headers=headers, body=data, idempotent=True
        )
        return response.headers.get("ETag", "")

    def clear_pages(self, blob: BlobAddress, page_range: PageRange, *, lease_id: str | None = None) -> str:
        """Clear (trim) ``page_range``: its pages become unpopulated zeros; returns the ETag.

        Clear is not limited to 4 MiB per call.
        """
        headers = {"x-ms-page-write": "clear", "x-ms-range": page_range.header(), **_lease_header(lease_id)}
        response = self._send("PUT", blob, params={"comp": "page"}, headers=headers, idempotent=True)
        return response.headers.get("ETag", "")

    def put_page_from_url(
        self,
        blob: BlobAddress,
        page_range: PageRange,
        source: BlobAddress,
        source_range: PageRange,
        *,
        lease_id: str | None = None,
    ) -> str:
        """Write ``page_range`` of ``blob`` from ``source_range`` of ``source`` (SAS URL), server-side.

        Both ranges have the same length, at most 4 MiB. Returns the ETag. Safe to repeat: it writes the
        same bytes again.
        """
        if source.sas == "":
            raise InvalidInputError("source", "must be addressed by a SAS URL")
        if page_range.length != source_range.length:
            raise InvalidInputError(
                "source_range", f"{source_range.header()} differs in length from {page_range.header()}"
            )
        headers = {
            "x-ms-page-write": "update",
            "x-ms-range": page_range.write_header(),
            "x-ms-source-range": source_range.write_header(),
            "x-ms-copy-source": source.source_url(),
            **_lease_header(lease_id),
        }
        response = self._send("PUT", blob, params={"comp": "page"}, headers=headers, idempotent=True)
        return response.headers.get("ETag", "")

    def put_page_from_url_with_token(
        self,
        blob: BlobAddress,
        page_range: PageRange,
        source: BlobAddress,
        source_range: PageRange,
        source_token: TokenProvider,
    ) -> str:
        """Put Page From URL whose source is read with an Azure AD token, not a SAS; returns the ETag.

        ``source`` names the blob (or blob snapshot) by URL alone: any SAS or authorizer it carries is not
        sent. ``source_token`` gives a token for Azure Storage (scope ``https://storage.azure.com``),
        sent as ``x-ms-copy-source-authorization: Bearer ...`` to ``blob``'s host, which must therefore be
        https (or loopback). Both ranges have the same length, at most 4 MiB.
        """
        if source.sas:
            raise InvalidInputError("source", "is addressed by a SAS: use put_page_from_url")
        if urlsplit(blob.url).scheme != "https" and not is_loopback_url(blob.url):
            raise InvalidInputError(
                "blob", "the source token would travel over plain http; the destination must be https"
            )
        if page_range.length != source_range.length:
            raise InvalidInputError(
                "source_range", f"{source_range.header()} differs in length from {page_range.header()}"
            )
        source_url = source.url
        if source.snapshot is not None:
            source_url += f"?snapshot={quote(source.snapshot, safe='')}"
        headers = {
            "x-ms-page-write": "update",
            "x-ms-range": page_range.write_header(),
            "x-ms-source-range": source_range.write_header(),
            "x-ms-copy-source": source_url,
            "x-ms-copy-source-authorization": f"Bearer {source_token.get_token()}",
        }
        response = self._send("PUT", blob, params={"comp": "page"}, headers=headers, idempotent=True)
        return response.headers.get("ETag", "")

    def get_page_ranges(
        self,
        blob: BlobAddress,
        *,
        previous_snapshot: str | None = None,
        previous_snapshot_url: BlobAddress | None = None,
        within: PageRange | None = None,
        page_size: int | None = None,
    ) -> PageRangeDiff:
        """The blob's valid page ranges, or with a previous snapshot the changes since it.

        ``previous_snapshot`` is a snapshot timestamp of this same blob (``prevsnapshot``);
        ``previous_snapshot_url`` a SAS-addressed older snapshot (``x-ms-previous-snapshot-url``, what
        managed-disk incremental snapshots need). ``within`` limits the answer to a range; ``page_size``
        asks for at most that many ranges per response. NextMarker is followed to the end: for a blob
        that may hold millions of ranges, call :meth:`get_page_ranges_page` segment by segment instead.
        """
        pages: list[PageRange] = []
        clears: list[PageRange] = []
        marker: str | None = None
        while True:
            answer, marker = self.get_page_ranges_page(
                blob,
                previous_snapshot=previous_snapshot,
                previous_snapshot_url=previous_snapshot_url,
                within=within,
                page_size=page_size,
                marker=marker,
            )
            pages.extend(answer.page_ranges)
            clears.extend(answer.clear_ranges)
            if marker is None:
                return PageRangeDiff(tuple(pages), tuple(clears), answer.blob_size)

    def get_page_ranges_page(
        self,
        blob: BlobAddress,
        *,
        previous_snapshot: str | None = None,
        previous_snapshot_url: BlobAddress | None = None,
        within: PageRange | None = None,
        page_size: int | None = None,
        marker: str | None = None,
    ) -> tuple[PageRangeDiff, str | None]:
        """One response of Get Page Ranges (see :meth:`get_page_ranges`) and its NextMarker, if any.

        Pass the marker back to get the next response: a bounded step of an unbounded listing.
        """
        if previous_snapshot is not None and previous_snapshot_url is not None:
            raise InvalidInputError("previous snapshot", "give a timestamp or a URL, not both")
        if page_size is not None and (isinstance(page_size, bool) or not 1 <= page_size <= 10_000):
            raise InvalidInputError("page_size", f"must be 1 to 10000, got {page_size!r}")
        params: dict[str, str] = {"comp": "pagelist"}
        if previous_snapshot is not None:
            if not _SNAPSHOT.fullmatch(previous_snapshot):
                raise InvalidInputError(
                    "previous_snapshot", f"{previous_snapshot!r} is not a snapshot timestamp"
                )
            params["prevsnapshot"] = previous_snapshot
        if page_size is not None:
            params["maxresults"] = str(page_size)
        if marker:
            params["marker"] = marker
        headers: dict[str, str] = {}
        if previous_snapshot_url is not None:
            if not previous_snapshot_url.sas:
                raise InvalidInputError("previous_snapshot_url", "must be addressed by a SAS URL")
            headers["x-ms-previous-snapshot-url"] = previous_snapshot_url.source_url()
        if within is not None:
            headers["x-ms-range"] = within.header()
        response = self._send("GET", blob, params=params, headers=headers)
        with reading(response):
            pages, clears, next_marker = parse_page_list(response.text)
        size_header = response.headers.get("x-ms-blob-content-length") or "0"
        if not _is_number(size_header):
            raise unexpected_response(response, "x-ms-blob-content-length", f"{size_header[:100]!r}")
        return PageRangeDiff(tuple(pages), tuple(clears), int(size_header)), next_marker

    def read_range(self, blob: BlobAddress, page_range: PageRange) -> bytes:
        """The bytes of ``page_range`` (Get Blob with ``x-ms-range``); holes read as zeros."""
        response = self._send("GET", blob, headers={"x-ms-range": page_range.header()}, ok=(200, 206))
        data = response.content
        if len(data) != page_range.length:
            raise unexpected_response(
                response,
                "response body",
                f"{len(data)} bytes for {page_range.header()} ({page_range.length} expected)",
            )
        return data

    # -- small block blobs ---------------------------------------------------------------------------

    def put_block_blob(
        self, blob: BlobAddress, data: bytes, *, content_type: str = "application/octet-stream"
    ) -> str:
        """Put Blob: ``data`` (at most :data:`MAX_SMALL_BLOB` bytes) as a block blob, replacing any; the ETag.

        For small documents the backup keeps beside its page blobs (a copy plan), not for disk data.
        """
        if len(data) > MAX_SMALL_BLOB:
            raise InvalidInputError(
                "data", f"is {len(data)} bytes; at most {MAX_SMALL_BLOB} in one Put Blob here"
            )
        headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": content_type}
        response = self._send("PUT", blob, headers=headers, body=data, idempotent=True)
        return response.headers.get("ETag", "")

    def get_blob(self, blob: BlobAddress) -> bytes:
        """Get Blob: the whole content of a small blob (at most :data:`MAX_SMALL_BLOB` bytes)."""
        response = self._send("GET", blob)
        if len(response.content) > MAX_SMALL_BLOB:
            raise InvalidInputError(
                "blob", f"{blob.display_url} holds more than {MAX_SMALL_BLOB} bytes; too big to read whole"
            )
        return response.content

    # -- listing ---------------------------------------------------------------------------------------

    def list_blobs(
        self,
        container: ContainerAddress,
        *,
        prefix: str = "",
        snapshots: bool = False,
        metadata: bool = False,
    ) -> list[BlobItem]:
        """List Blobs of ``container`` whose names start with ``prefix``, NextMarker followed to the end.

        ``snapshots`` lists each blob's snapshots too (each an item with its timestamp), ``metadata``
        fills every item's metadata.
        """
        include = [name for name, wanted in (("snapshots", snapshots), ("metadata", metadata)) if wanted]
        params = {"restype": "container", "comp": "list"}
        if prefix:
            params["prefix"] = prefix
        if include:
            params["include"] = ",".join(include)
        items: list[BlobItem] = []
        marker: str | None = None
        while True:
            request_params = dict(params, marker=marker) if marker else params
            response = self._send("GET", container, params=request_params)
            more, marker = parse_blob_list(response.text)
            items.extend(more)
            if marker is None:
                return items

    # -- copies ----------------------------------------------------------------------------------------

    def start_copy(
        self,
        destination: BlobAddress,
        source: BlobAddress,
        *,
        metadata: Mapping[str, str] | None = None,
        lease_id: str | None = None,
    ) -> CopyStarted:
        """Start Copy Blob from ``source`` (usually a SAS URL) into ``destination``.

        Azure may finish at once (``success``) or later (``pending``): poll :meth:`get_properties`. A
        leased destination needs its ``lease_id``; the lease stays. The destination's snapshots stay.
        """
        headers = {
            "x-ms-copy-source": source.source_url(),
            **_metadata_headers(metadata or {}),
            **_lease_header(lease_id),
        }
        response = self._send("PUT", destination, headers=headers)
        copy_id = response.headers.get("x-ms-copy-id")
        with reading(response):
            status = _copy_status(response.headers.get("x-ms-copy-status"))
        if not copy_id or status is None:
            raise unexpected_response(
                response, "response headers", "Copy Blob answered without x-ms-copy-id/x-ms-copy-status"
            )
        log.info("copy %s into %s: %s", copy_id, destination.display_url, status.value)
        return CopyStarted(copy_id, status)

    def abort_copy(self, destination: BlobAddress, copy_id: str) -> None:
        """Abort the pending copy ``copy_id`` into ``destination`` (409 when none is pending)."""
        if not re.fullmatch(r"[0-9A-Fa-f-]{1,64}", copy_id):
            raise InvalidInputError("copy_id", f"{copy_id!r} is not a copy id")
        self._send(
            "PUT",
            destination,
            params={"comp": "copy", "copyid": copy_id},
            headers={"x-ms-copy-action": "abort"},
        )

    # -- properties, metadata, snapshots, delete -----------------------------------------------------------

    def get_properties(self, blob: BlobAddress) -> BlobProperties:
        """Get Blob Properties (HEAD): size, ETag, metadata, copy state, lease state."""
        response = self._send("HEAD", blob)
        with reading(response):
            return properties_from_headers(response.headers)

    def set_metadata(
        self,
        blob: BlobAddress,
        metadata: Mapping[str, str],
        *,
        if_match: str | None = None,
        lease_id: str | None = None,
    ) -> str:
        """Replace the blob's metadata with ``metadata``; returns the new ETag."""
        headers = {**_metadata_headers(metadata), **_lease_header(lease_id)}
        if if_match is not None:
            headers["If-Match"] = if_match
        response = self._send("PUT", blob, params={"comp": "metadata"}, headers=headers, idempotent=True)
        return response.headers.get("ETag", "")

    def snapshot(self, blob: BlobAddress, *, metadata: Mapping[str, str] | None = None) -> str:
        """Take a blob snapshot; returns its timestamp (address it with :meth:`BlobAddress.at_snapshot`).

        ``metadata`` becomes the snapshot's own (else it keeps the blob's). A leased blob needs no lease id.
        """
        response = self._send(
            "PUT", blob, params={"comp": "snapshot"}, headers=_metadata_headers(metadata or {})
        )
        snapshot = response.headers.get("x-ms-snapshot", "")
        if not _SNAPSHOT.fullmatch(snapshot):
            raise unexpected_response(
                response, "x-ms-snapshot", f"{snapshot[:100]!r} is not a snapshot timestamp"
            )
        return snapshot

    def delete(
        self,
        blob: BlobAddress,
        *,
        snapshots: Literal["include", "only"] | None = "include",
        lease_id: str | None = None,
    ) -> None:
        """Delete the blob with its snapshots (``include``), only its snapshots, or a single snapshot.

        An address with a snapshot deletes that snapshot alone; ``snapshots`` is then ignored, as Azure
        refuses the header on a snapshot.
        """
        headers = _lease_header(lease_id)
        if blob.snapshot is None and snapshots is not None:
            headers["x-ms-delete-snapshots"] = snapshots
        self._send("DELETE", blob, headers=headers)

    # -- leases --------------------------------------------------------------------------------------------

    def acquire_lease(self, blob: BlobAddress, lease_id: str, *, duration: int = INFINITE_LEASE) -> str:
        """Lease Blob ``acquire`` with the proposed ``lease_id`` (a GUID the caller chose); the lease id.

        ``duration`` is 15-60 seconds or :data:`INFINITE_LEASE`. Acquiring a lease already held under the
        same id succeeds again (so a repeat is harmless); one held under another id answers 409
        ``LeaseAlreadyPresent`` (:class:`~backup.errors.ConflictError`).
        """
        if duration != INFINITE_LEASE and not 15 <= duration <= 60:
            raise InvalidInputError("duration", f"must be 15-60 seconds or -1 (infinite), got {duration!r}")
        headers = {
            "x-ms-lease-action": "acquire",
            "x-ms-lease-duration": str(duration),
            "x-ms-proposed-lease-id": _checked_lease_id(lease_id),
        }
        response = self._send("PUT", blob, params={"comp": "lease"}, headers=headers, idempotent=True)
        return response.headers.get("x-ms-lease-id", lease_id)

    def release_lease(self, blob: BlobAddress, lease_id: str) -> None:
        """Lease Blob ``release``: the blob is free for another writer at once."""
        headers = {"x-ms-lease-action": "release", **_lease_header(lease_id)}
        self._send("PUT", blob, params={"comp": "lease"}, headers=headers, idempotent=True)

    def break_lease(self, blob: BlobAddress, *, break_period: int = 0) -> None:
        """Lease Blob ``break``: end whoever's lease after ``break_period`` seconds (0-60), without its id."""
        if isinstance(break_period, bool) or not isinstance(break_period, int) or not 0 <= break_period <= 60:
            raise InvalidInputError("break_period", f"must be 0-60 seconds, got {break_period!r}")
        headers = {"x-ms-lease-action": "break", "x-ms-lease-break-period": str(break_period)}
        self._send("PUT", blob, params={"comp": "lease"}, headers=headers, idempotent=True)
