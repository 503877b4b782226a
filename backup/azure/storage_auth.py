"""Authorizing Azure Storage requests: Shared Key, Shared Key Lite and bearer tokens.

A Shared Key signature is an HMAC-SHA256, keyed with the account key, over a *string-to-sign* that
describes the request. That string is assembled here from small named pure parts, as the storage SDK's
policy does, with blob and table canonicalization kept apart because the two services sign different
things (Microsoft: "Authorize with Shared Key")::

    blob Shared Key       verb + 11 standard headers + canonicalized x-ms- headers
                          + canonicalized resource + canonical query (every parameter)
    blob Shared Key Lite  verb + Content-MD5 + Content-Type + Date + x-ms- headers
                          + canonicalized resource + "?comp=" only
    table Shared Key      verb + Content-MD5 + Content-Type + Date (x-ms-date wins) + resource + "?comp="
    table Shared Key Lite Date (x-ms-date wins) + resource + "?comp="

The canonicalized resource is ``/<account>`` followed by the URL's path exactly as it is sent. With a
path-style URL (Azurite, the emulator front: ``http://127.0.0.1:port/account/container/blob``) the path
already starts with the account, so the account appears twice; with Azure's
``https://account.blob.core.windows.net/container/blob`` it appears once. Both come out of the one rule.

A *service SAS* is signed with the same key over another string-to-sign (Microsoft: "Create a service
SAS", version 2020-12-06 and later; every field on its own line, empty when absent)::

    sp, st, se, /blob/<account>/<container>/<blob>, si, sip, spr, sv, sr, snapshot time, ses,
    rscc, rscd, rsce, rscl, rsct

:func:`blob_service_sas` makes one for a blob (``sr=b``) or one blob snapshot (``sr=bs``: the signed
snapshot time is the snapshot's timestamp, and only a request naming that ``snapshot=`` passes), and
:meth:`SharedKeyAuthorizer.blob_sas` makes a short-lived one without the key leaving the authorizer.
The canonicalized resource names the account once, path-style endpoint or not. An account whose
``allowSharedKeyAccess`` is false cannot sign one: use ``x-ms-copy-source-authorization`` instead.

Every authorizer here is an :class:`backup.azure.transport.Authorizer`: ``(method, url, headers) -> None``,
called by :class:`~backup.azure.transport.Transport` before each attempt. Shared Key authorizers stamp a fresh
``x-ms-date`` and sign; :class:`BearerAuthorizer` adds a token from a token provider (HTTPS only):
``backup.azure.credentials.IdentityTokenProvider(STORAGE_SCOPE)`` wraps azure-identity and caches the token.
A request authorized by a SAS needs no authorizer: the SAS in its URL is the authorization.

Secrets stay inside: the key is held as bytes, never shown by ``repr``, and no error text carries it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from enum import StrEnum
from urllib.parse import quote, unquote, urlsplit

from backup.azure.credentials import TokenProvider
from backup.azure.names import validate_container_name, validate_storage_account_name
from backup.errors import InvalidInputError
from backup.redact import get_logger

log = get_logger(__name__)

__all__ = [
    "BLOB_STANDARD_HEADERS",
    "MAX_SAS_LIFETIME",
    "SAS_VERSION",
    "STORAGE_SCOPE",
    "BearerAuthorizer",
    "SharedKeyAuthorizer",
    "StorageService",
    "blob_lite_string_to_sign",
    "blob_service_sas",
    "blob_service_sas_string_to_sign",
    "blob_string_to_sign",
    "canonical_query",
    "canonicalized_headers",
    "canonicalized_resource",
    "comp_query",
    "header_sort_key",
    "http_date",
    "sas_time",
    "sign",
    "standard_headers",
    "table_lite_string_to_sign",
    "table_string_to_sign",
    "verb",
]

#: The OAuth scope of Azure Storage (blob, queue, table) for Microsoft Entra tokens.
STORAGE_SCOPE = "https://storage.azure.com/.default"

#: The standard headers a blob Shared Key signature covers, in their order in the string-to-sign.
BLOB_STANDARD_HEADERS: tuple[str, ...] = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)
_LITE_STANDARD_HEADERS: tuple[str, ...] = ("content-md5", "content-type", "date")
_TABLE_STANDARD_HEADERS: tuple[str, ...] = ("content-md5", "content-type")

#: The ``sv`` of the SAS we sign: the storage version we speak (its service-SAS string-to-sign is the
#: 2020-12-06 one).
SAS_VERSION = "2025-01-05"
#: A read SAS we hand to another service is short-lived: at most this long.
MAX_SAS_LIFETIME = timedelta(days=7)
# Blob SAS permissions, in the order Azure requires them in ``sp``.
_SAS_PERMISSION_ORDER = "racwdxyltmeopi"
# Azure lets a SAS start a little before "now" on the signer's clock: servers' clocks differ.
_SAS_CLOCK_SKEW = timedelta(minutes=5)
# Blob snapshot timestamps, e.g. 2024-01-02T03:04:05.1234567Z.
_SNAPSHOT_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z")
# Azure account names: 3-24 lowercase letters and digits.
# An HTTP header name is a "token" (RFC 9110 section 5.6.2).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class StorageService(StrEnum):
    """Which service a request goes to: blob and table sign differently."""

    BLOB = "blob"
    TABLE = "table"


# -- the pure parts of a string-to-sign --------------------------------------------------------------


def verb(method: str) -> str:
    """The verb line: the HTTP method in upper case."""
    if not method or not method.isalpha():
        raise InvalidInputError("method", f"{method!r} is not an HTTP method")
    return method.upper() + "\n"


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names in lower case, values trimmed; a header given twice (in two cases) is an error.

    Values are trimmed because HTTP drops leading and trailing whitespace on the wire and Azure signs
    what it received (the SDKs that sign untrimmed metadata values get 403 from Azure: a known issue in
    azure-storage-net #950, azure-sdk-for-java #17939). Inner whitespace is kept, as Azure keeps it.
    """
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise InvalidInputError("headers", f"{name!r} is not a valid header name")
        if "\r" in value or "\n" in value:
            raise InvalidInputError("headers", f"value of {name} contains a line break")
        key = name.lower()
        if key in lowered:
            raise InvalidInputError("headers", f"{name} given more than once")
        lowered[key] = value.strip()
    return lowered


def standard_headers(headers: Mapping[str, str], names: Sequence[str]) -> str:
    """The values of the standard headers ``names``, one line each, empty when absent.

    A ``Content-Length`` of 0 signs as an empty line (version 2015-02-21 and later).
    """
    lowered = _lowered(headers)
    lines = []
    for name in names:
        value = lowered.get(name, "")
        if name == "content-length" and value == "0":
            value = ""
        lines.append(value + "\n")
    return "".join(lines)


# Azure orders canonicalized header names the way .NET's culture-aware comparison does, not by code
# point: letters case-blind after digits after punctuation, and '-' and "'" ignored at first, only
# breaking ties ("x-ms-blob-z" sorts after "x-ms-bloba"). The orders below are that collation
# restricted to the characters a header name may hold (the storage SDK's policy encodes the same
# order in weight tables, our tests compare the two).
_PRIMARY_RANK = {
    char: rank for rank, char in enumerate("!#$%&*.^_`|~+0123456789abcdefghijklmnopqrstuvwxyz", 2)
}
_TIE_RANK = {"'": 2, "-": 3}  # every other character ranks 0; the end of a name ranks 1


def header_sort_key(name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Sort key putting lower-case header names in the order Azure's Shared Key check expects."""
    name = name.lower()
    primary = tuple(_PRIMARY_RANK[char] for char in name if char not in _TIE_RANK)
    ties = (*(_TIE_RANK.get(char, 0) for char in name), 1)
    return primary, ties


def canonicalized_headers(headers: Mapping[str, str]) -> str:
    """Every ``x-ms-`` header as ``name:value\\n``, names lower-cased, in Azure's order."""
    lowered = _lowered(headers)
    names = sorted((name for name in lowered if name.startswith("x-ms-")), key=header_sort_key)
    return "".join(f"{name}:{lowered[name]}\n" for name in names)


def canonicalized_resource(account: str, url: str) -> str:
    """``/<account>`` + the URL's encoded path as sent (``/`` when empty); no query.

    Path-style URLs already name the account, which then appears twice, as Azurite expects.
    """
    path = urlsplit(url).path or "/"
    return f"/{account}{path}"


def _query_pairs(url: str) -> list[tuple[str, str]]:
    """The URL's query as (name, value) pairs, both percent-decoded, in order."""
    query = urlsplit(url).query
    pairs = []
    for part in query.split("&") if query else ():
        name, _, value = part.partition("=")
        if name:
            pairs.append((unquote(name), unquote(value)))
    return pairs


def canonical_query(url: str) -> str:
    """Every query parameter as ``\\nname:value``: names lower-cased and sorted, values decoded.

    A parameter given more than once signs as its values sorted and comma-joined (as documented; the
    Python SDK keeps only the last one, a difference our own client never exercises).
    """
    values: dict[str, list[str]] = {}
    for name, value in _query_pairs(url):
        values.setdefault(name.lower(), []).append(value)
    return "".join(f"\n{name}:{','.join(sorted(values[name]))}" for name in sorted(values))


def comp_query(url: str) -> str:
    """``?comp=<value>`` when the URL has a ``comp`` parameter, else empty (Lite and table format)."""
    for name, value in _query_pairs(url):
        if name.lower() == "comp":
            return f"?comp={value}"
    return ""


def _date_for_table(headers: Mapping[str, str]) -> str:
    # The table formats sign a date line that is never empty: x-ms-date when given, else Date.
    lowered = _lowered(headers)
    return lowered.get("x-ms-date") or lowered.get("date", "")


def blob_string_to_sign(account: str, method: str, url: str, headers: Mapping[str, str]) -> str:
    """String-to-sign of a blob (or queue) request under Shared Key, version 2009-09-19 and later."""
    return (
        verb(method)
        + standard_headers(headers, BLOB_STANDARD_HEADERS)
        + canonicalized_headers(headers)
        + canonicalized_resource(account, url)
        + canonical_query(url)
    )


def blob_lite_string_to_sign(account: str, method: str, url: str, headers: Mapping[str, str]) -> str:
    """String-to-sign of a blob request under Shared Key Lite (Azure only: Azurite refuses it)."""
    return (
        verb(method)
        + standard_headers(headers, _LITE_STANDARD_HEADERS)
        + canonicalized_headers(headers)
        + canonicalized_resource(account, url)
        + comp_query(url)
    )


def table_string_to_sign(account: str, method: str, url: str, headers: Mapping[str, str]) -> str:
    """String-to-sign of a table request under Shared Key: no x-ms- headers, only ``comp`` of the query."""
    return (
        verb(method)
        + standard_headers(headers, _TABLE_STANDARD_HEADERS)
        + _date_for_table(headers)
        + "\n"
        + canonicalized_resource(account, url)
        + comp_query(url)
    )


def table_lite_string_to_sign(account: str, method: str, url: str, headers: Mapping[str, str]) -> str:
    """String-to-sign of a table request under Shared Key Lite: the date and the resource."""
    return _date_for_table(headers) + "\n" + canonicalized_resource(account, url) + comp_query(url)


def _decode_key(account_key: str) -> bytes:
    try:
        key = base64.b64decode(account_key, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError("account_key", "is not valid base64") from None
    if not key:
        raise InvalidInputError("account_key", "is empty")
    return key


def sign(account_key: str | bytes, string_to_sign: str) -> str:
    """Base64 of HMAC-SHA256 over the UTF-8 string-to-sign; ``account_key`` base64 (str) or raw bytes."""
    key = account_key if isinstance(account_key, bytes) else _decode_key(account_key)
    digest = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def http_date(moment: datetime) -> str:
    """``moment`` as an RFC 1123 date in GMT, as ``x-ms-date`` wants it."""
    if moment.tzinfo is None:
        raise InvalidInputError("moment", "must be timezone-aware")
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def sas_time(moment: datetime) -> str:
    """``moment`` as a SAS time: ISO 8601 in UTC to the second, e.g. ``2026-03-02T10:00:00Z``."""
    if moment.tzinfo is None:
        raise InvalidInputError("moment", "must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def blob_service_sas_string_to_sign(
    fields: Mapping[str, str], account: str, container: str, blob: str
) -> str:
    """The string-to-sign of a blob service SAS (2020-12-06+) with these query ``fields``, decoded."""
    resource = f"/blob/{account}/{container}/{blob}"
    names_after = ("si", "sip", "spr", "sv", "sr", "snapshot", "ses", "rscc", "rscd", "rsce", "rscl", "rsct")
    lines = [fields.get("sp", ""), fields.get("st", ""), fields.get("se", ""), resource]
    lines += [fields.get(name, "") for name in names_after]
    return "\n".join(lines)


def _checked_permissions(permissions: str) -> str:
    if not isinstance(permissions, str) or not permissions:
        raise InvalidInputError("permissions", "must name at least one SAS permission, e.g. 'r'")
    positions = [_SAS_PERMISSION_ORDER.find(p) for p in permissions]
    if -1 in positions or positions != sorted(set(positions)):
        raise InvalidInputError(
            "permissions", f"{permissions!r} is not a subset of {_SAS_PERMISSION_ORDER!r} in that order"
        )
    return permissions


def blob_service_sas(
    account_name: str,
    account_key: str | bytes,
    *,
    container: str,
    blob: str,
    permissions: str,
    expiry: datetime,
    start: datetime | None = None,
    snapshot: str | None = None,
    https_only: bool = False,
    version: str = SAS_VERSION,
) -> str:
    """The query string (no ``?``) of a service SAS for one blob, or one blob snapshot; a secret.

    With ``snapshot`` (a snapshot timestamp) the SAS is ``sr=bs``: it opens that snapshot only, and the
    URL it is used with must carry the same ``snapshot=``; it does not open the base blob. ``blob`` is
    the blob's name (not URL-encoded). ``https_only`` adds ``spr=https`` (Azure then refuses plain HTTP).
    """
    validate_storage_account_name(account_name, "account_name")
    validate_container_name(container, "container")
    if not blob:
        raise InvalidInputError("blob", "a blob SAS names a container and a blob")
    if snapshot is not None and not _SNAPSHOT_TIME.fullmatch(snapshot):
        raise InvalidInputError("snapshot", f"{snapshot!r} is not a snapshot timestamp")
    if start is not None and start >= expiry:
        raise InvalidInputError("expiry", "must be after start")
    fields = {
        "sv": version,
        "sr": "bs" if snapshot is not None else "b",
        "se": sas_time(expiry),
        "sp": _checked_permissions(permissions),
    }
    if start is not None:
        fields["st"] = sas_time(start)
    if https_only:
        fields["spr"] = "https"
    if snapshot is not None:
        fields["snapshot"] = snapshot
    key = account_key if isinstance(account_key, bytes) else _decode_key(account_key)
    signature = sign(key, blob_service_sas_string_to_sign(fields, account_name, container, blob))
    # The snapshot travels in the blob's URL (BlobAddress.at_snapshot), not in the token.
    order = ("sv", "sr", "st", "se", "sp", "spr")
    query = [f"{name}={quote(fields[name], safe='')}" for name in order if name in fields]
    return "&".join([*query, f"sig={quote(signature, safe='')}"])


_STRING_TO_SIGN: dict[tuple[StorageService, bool], Callable[[str, str, str, Mapping[str, str]], str]] = {
    (StorageService.BLOB, False): blob_string_to_sign,
    (StorageService.BLOB, True): blob_lite_string_to_sign,
    (StorageService.TABLE, False): table_string_to_sign,
    (StorageService.TABLE, True): table_lite_string_to_sign,
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SharedKeyAuthorizer:
    """Signs requests with an account key: Shared Key, or Shared Key Lite with ``lite=True``.

    ``service`` picks the blob or table format. Calling the authorizer stamps ``x-ms-date`` with the
    current time (``clock``, a seam for tests) and sets ``Authorization``. :meth:`authorization` and
    :meth:`verify` are the pure halves, for a server that checks a caller's signature (the emulator).
    """

    def __init__(
        self,
        account_name: str,
        account_key: str,
        *,
        service: StorageService,
        lite: bool = False,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.account_name = validate_storage_account_name(account_name, "account_name")
        self.service = StorageService(service)
        self.lite = lite
        self.scheme = "SharedKeyLite" if lite else "SharedKey"
        self._key = _decode_key(account_key)
        self._clock = clock
        self._string_to_sign = _STRING_TO_SIGN[(self.service, lite)]

    def __repr__(self) -> str:
        return f"SharedKeyAuthorizer({self.account_name!r}, service={self.service.value!r}, lite={self.lite})"

    def string_to_sign(self, method: str, url: str, headers: Mapping[str, str]) -> str:
        """The string-to-sign of this request under this authorizer's scheme."""
        return self._string_to_sign(self.account_name, method, url, headers)

    def authorization(self, method: str, url: str, headers: Mapping[str, str]) -> str:
        """The ``Authorization`` value for this request exactly as given (no date is added)."""
        signature = sign(self._key, self.string_to_sign(method, url, headers))
        return f"{self.scheme} {self.account_name}:{signature}"

    def verify(self, authorization: str, method: str, url: str, headers: Mapping[str, str]) -> bool:
        """Whether ``authorization`` is the right signature for this request (constant-time compare)."""
        unsigned = {name: value for name, value in headers.items() if name.lower() != "authorization"}
        expected = self.authorization(method, url, unsigned)
        return hmac.compare_digest(expected.encode("utf-8"), authorization.strip().encode("utf-8"))

    def __call__(self, method: str, url: str, headers: MutableMapping[str, str]) -> None:
        """Stamp a fresh ``x-ms-date`` and set ``Authorization`` on ``headers``."""
        for name in [name for name in headers if name.lower() in ("x-ms-date", "authorization")]:
            del headers[name]
        headers["x-ms-date"] = http_date(self._clock())
        headers["Authorization"] = self.authorization(method, url, headers)

    def blob_sas(
        self,
        container: str,
        blob: str,
        *,
        lifetime: timedelta,
        permissions: str = "r",
        snapshot: str | None = None,
        https_only: bool = False,
    ) -> str:
        """A short-lived service SAS (query string, a secret) for a blob or one of its snapshots.

        Valid from a few minutes before now (servers' clocks differ) for ``lifetime`` (at most
        :data:`MAX_SAS_LIFETIME`). Only for blob-service authorizers: a SAS is signed with the account key.
        """
        if self.service is not StorageService.BLOB:
            raise InvalidInputError("service", "a blob SAS is signed by a blob authorizer")
        if not isinstance(lifetime, timedelta) or not timedelta(0) < lifetime <= MAX_SAS_LIFETIME:
            raise InvalidInputError("lifetime", f"must be positive and at most {MAX_SAS_LIFETIME}")
        now = self._clock()
        return blob_service_sas(
            self.account_name,
            self._key,
            container=container,
            blob=blob,
            permissions=permissions,
            start=now - _SAS_CLOCK_SKEW,
            expiry=now + lifetime,
            snapshot=snapshot,
            https_only=https_only,
        )


# -- bearer tokens -----------------------------------------------------------------------------------


class BearerAuthorizer:
    """Adds ``Authorization: Bearer <token>`` (and ``x-ms-date``) from a token provider.

    For Azure Storage build the provider with ``IdentityTokenProvider(STORAGE_SCOPE, ...)`` from
    :mod:`backup.azure.credentials` (cached, refreshed before expiry); any ``get_token() -> str``
    object works.

    Refuses plain-HTTP URLs: a bearer token is as good as a password to whoever reads it on the way.
    """

    def __init__(self, provider: TokenProvider, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._provider = provider
        self._clock = clock

    def __repr__(self) -> str:
        return f"BearerAuthorizer({self._provider!r})"

    @property
    def token_provider(self) -> TokenProvider:
        """Where the tokens come from (to authorise a copy source with the same identity)."""
        return self._provider

    def __call__(self, method: str, url: str, headers: MutableMapping[str, str]) -> None:
        """Set ``x-ms-date`` and ``Authorization`` on ``headers``; raise for a non-HTTPS URL."""
        if urlsplit(url).scheme.lower() != "https":
            raise InvalidInputError("url", "bearer tokens are only sent over HTTPS")
        for name in [name for name in headers if name.lower() in ("x-ms-date", "authorization")]:
            del headers[name]
        headers["x-ms-date"] = http_date(self._clock())
        headers["Authorization"] = "Bearer " + self._provider.get_token()
