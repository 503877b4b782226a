"""Azure Table Storage REST with JSON, over :class:`backup.azure.transport.Transport`.

:class:`TableClient` addresses one table (endpoint + name + authorizer) and does what the catalog needs:
create the table if missing; insert (409 on a duplicate); upsert by merge (``MERGE``) or replace
(``PUT``), conditional on an ETag when one is given; point get; query with ``$filter`` (a
:class:`backup.azure.odata.Filter`), ``$select`` and ``$top``, following continuation tokens; delete with an
ETag. Entities come back as :class:`Entity` with their ETag.

Values keep their Python type across a round trip: ``int`` is stored as ``Edm.Int64`` (annotated, the
value as a string, so no 53-bit JSON rounding), a tz-aware ``datetime`` as ``Edm.DateTime`` (UTC),
``float`` as ``Edm.Double``, ``UUID`` as ``Edm.Guid``, ``bytes`` as ``Edm.Binary``, ``str`` and ``bool``
as themselves. Reads ask for ``odata=minimalmetadata`` so the service sends those annotations back.

Keys may not hold ``/ \\ # ?``, ``%`` or control characters; encode such values with
:func:`backup.azure.odata.encode_key` first (resource IDs need it).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from backup.azure.names import validate_table_name
from backup.azure.odata import Filter, format_datetime, literal, property_name
from backup.azure.transport import Authorizer, Transport, error_from_response, reading, unexpected_response
from backup.errors import InvalidInputError, UnexpectedResponseError
from backup.redact import get_logger

log = get_logger(__name__)

__all__ = [
    "MAX_PAGE_SIZE",
    "TABLE_API_VERSION",
    "Entity",
    "EntityValue",
    "TableClient",
    "UpsertMode",
    "entity_from_json",
    "entity_to_json",
    "parse_table_error",
]

#: The x-ms-version we speak to the table service (what azure-data-tables uses).
TABLE_API_VERSION = "2019-02-02"
#: The most entities the service returns in one response.
MAX_PAGE_SIZE = 1000

EntityValue = str | bool | int | float | datetime | uuid.UUID | bytes

_KEY_FORBIDDEN = re.compile(r"[/\\#?%\x00-\x1f\x7f-\x9f]")
_SYSTEM_PROPERTIES = frozenset({"PartitionKey", "RowKey", "Timestamp"})
_EDM_DATETIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,7}))?Z")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_ODATA_HEADERS = {
    "Accept": "application/json;odata=minimalmetadata",
    "DataServiceVersion": "3.0",
    "MaxDataServiceVersion": "3.0;NetFx",
}


class UpsertMode(StrEnum):
    """How an upsert treats properties the entity already has: keep them (merge) or drop them (replace)."""

    MERGE = "merge"
    REPLACE = "replace"


@dataclass(frozen=True)
class Entity:
    """A table row: its keys, its typed properties, and (when read or written) its ETag and Timestamp."""

    partition_key: str
    row_key: str
    properties: dict[str, EntityValue] = field(default_factory=dict)
    etag: str | None = None
    timestamp: datetime | None = None


# -- pure parts: validation and (de)serialization ---------------------------------------------------------


def _checked_key(field_name: str, value: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(field_name, f"must be a string, got {type(value).__name__}")
    if len(value) > 1024:
        raise InvalidInputError(field_name, f"is {len(value)} characters; at most 1024")
    found = _KEY_FORBIDDEN.search(value)
    if found:
        raise InvalidInputError(
            field_name,
            f"holds {found.group()!r}, not allowed in a key; encode it with backup.azure.odata.encode_key",
        )
    return value


def _to_json_value(name: str, value: EntityValue) -> tuple[Any, str | None]:
    """The JSON value of a property and its ``@odata.type`` annotation (None when JSON says it all)."""
    if isinstance(value, bool):
        return value, None
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise InvalidInputError(f"property {name}", f"{value} does not fit in Edm.Int64")
        return str(value), "Edm.Int64"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"property {name}", f"{value} is not a finite number")
        return value, "Edm.Double"
    if isinstance(value, str):
        return value, None
    if isinstance(value, datetime):
        return format_datetime(value), "Edm.DateTime"
    if isinstance(value, uuid.UUID):
        return str(value), "Edm.Guid"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii"), "Edm.Binary"
    raise InvalidInputError(f"property {name}", f"cannot store a {type(value).__name__}")


def entity_to_json(partition_key: str, row_key: str, properties: Mapping[str, EntityValue]) -> dict[str, Any]:
    """The JSON body of an insert or update: keys, values, and type annotations where JSON is ambiguous."""
    body: dict[str, Any] = {
        "PartitionKey": _checked_key("partition_key", partition_key),
        "RowKey": _checked_key("row_key", row_key),
    }
    if len(properties) > 252:
        raise InvalidInputError("properties", f"{len(properties)} given; an entity holds at most 252")
    for name, value in properties.items():
        property_name(name)
        if name in _SYSTEM_PROPERTIES:
            raise InvalidInputError("properties", f"{name} is a system property")
        json_value, edm_type = _to_json_value(name, value)
        body[name] = json_value
        if edm_type is not None:
            body[f"{name}@odata.type"] = edm_type
    return body


def parse_edm_datetime(text: str) -> datetime:
    """An Edm.DateTime as the service writes it (``...T...[.fffffff]Z``) as a UTC datetime (to the µs)."""
    match = _EDM_DATETIME.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise UnexpectedResponseError("Edm.DateTime", f"{text!r:.100} is not a UTC timestamp")
    year, month, day, hour, minute, second, fraction = match.groups()
    micros = int((fraction or "0").ljust(7, "0")[:6])  # 100 ns ticks: the seventh digit is dropped
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=UTC
        )
    except ValueError:  # the shape of a timestamp, but no such day or time (month 13, hour 24)
        raise UnexpectedResponseError("Edm.DateTime", f"{text!r} is not a valid time") from None


def _from_json_value(name: str, value: Any, edm_type: str | None) -> EntityValue:
    try:
        if edm_type is None:
            if isinstance(value, str | bool | int | float):
                return value
        elif edm_type in ("Edm.Int64", "Edm.Int32"):
            return int(value)
        elif edm_type == "Edm.DateTime":
            return parse_edm_datetime(value)
        elif edm_type == "Edm.Double":
            return float(value)
        elif edm_type == "Edm.Guid":
            return uuid.UUID(value)
        elif edm_type == "Edm.Binary":
            return base64.b64decode(value, validate=True)
        elif edm_type == "Edm.String":
            return str(value)
        elif edm_type == "Edm.Boolean":
            return bool(value)
    except (ValueError, TypeError, binascii.Error):
        pass
    raise UnexpectedResponseError(
        f"property {name}", f"cannot read {value!r:.100} as {edm_type or 'a JSON value'}"
    )


def entity_from_json(item: Mapping[str, Any], etag: str | None = None) -> Entity:
    """An :class:`Entity` from the service's minimal-metadata JSON (its ETag from ``odata.etag``).

    An entity that is not what the service documents is an :class:`~backup.errors.UnexpectedResponseError`.
    """
    if not isinstance(item, Mapping):
        raise UnexpectedResponseError(
            "response body", f"an entity must be a JSON object, not {type(item).__name__}"
        )
    partition_key, row_key = item.get("PartitionKey"), item.get("RowKey")
    if not isinstance(partition_key, str) or not isinstance(row_key, str):
        raise UnexpectedResponseError("response body", "entity without PartitionKey/RowKey")
    timestamp = item.get("Timestamp")
    properties: dict[str, EntityValue] = {}
    for name, value in item.items():
        if "@" in name or name.startswith("odata.") or name in _SYSTEM_PROPERTIES:
            continue
        properties[name] = _from_json_value(name, value, item.get(f"{name}@odata.type"))
    return Entity(
        partition_key=partition_key,
        row_key=row_key,
        properties=properties,
        etag=item.get("odata.etag") or etag,
        timestamp=parse_edm_datetime(timestamp) if timestamp else None,
    )


def parse_table_error(response: requests.Response) -> tuple[str | None, str | None]:
    """A table error answer's code and first message line (``odata.error`` JSON or ``x-ms-error-code``)."""
    code = response.headers.get("x-ms-error-code")
    message = None
    try:
        error = response.json().get("odata.error", {})
    except (ValueError, AttributeError):
        error = {}
    if isinstance(error, dict):
        code = code or error.get("code")
        text = error.get("message", {})
        text = text.get("value") if isinstance(text, dict) else text
        if isinstance(text, str) and text.strip():
            message = text.strip().splitlines()[0]  # the rest is "RequestId:...\nTime:..."
    return code, message or response.reason or None


# -- the client ---------------------------------------------------------------------------------------


class TableClient:
    """One table of an account: ``endpoint`` is ``https://<account>.table.core.windows.net`` on Azure or
    path-style ``http://127.0.0.1:<port>/<account>`` on Azurite; ``authorize`` a table authorizer."""

    def __init__(
        self, endpoint: str, table: str, authorize: Authorizer, transport: Transport | None = None
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise InvalidInputError("table endpoint", f"{endpoint!r} is not an http(s) URL without query")
        validate_table_name(table)
        self.endpoint = endpoint.rstrip("/")
        self.table = table
        self._authorize = authorize
        self.transport = transport or Transport()

    def __repr__(self) -> str:
        return f"TableClient({self.endpoint!r}, {self.table!r})"

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
        ok: tuple[int, ...] | None = None,
    ) -> requests.Response:
        sent = {"x-ms-version": TABLE_API_VERSION, **_ODATA_HEADERS, **(headers or {})}
        data = None
        if body is not None:
            sent["Content-Type"] = "application/json"
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        return self.transport.request(
            method,
            url,
            headers=sent,
            body=data,
            authorize=self._authorize,
            idempotent=idempotent,
            ok=ok,
            parse_error=parse_table_error,
        )

    def _entity_url(self, partition_key: str, row_key: str) -> str:
        pk = quote(literal(_checked_key("partition_key", partition_key)), safe="")
        rk = quote(literal(_checked_key("row_key", row_key)), safe="")
        return f"{self.endpoint}/{self.table}(PartitionKey={pk},RowKey={rk})"

    # -- the table itself ------------------------------------------------------------------------------

    def create_if_missing(self) -> bool:
        """Create the table unless it exists; True when this call created it."""
        response = self._send(
            "POST",
            f"{self.endpoint}/Tables",
            headers={"Prefer": "return-no-content"},
            body={"TableName": self.table},
            idempotent=True,  # a repeat (say, after a lost answer) meets 409 TableAlreadyExists: done
            ok=(201, 204, 409),
        )
        if response.status_code == 409:
            code, _ = parse_table_error(response)
            if code != "TableAlreadyExists":
                raise error_from_response(response, parse_table_error)
            return False
        log.info("created table %s", self.table)
        return True

    def delete_table(self) -> None:
        """Delete the table and all its entities."""
        self._send("DELETE", f"{self.endpoint}/Tables({quote(literal(self.table), safe='')})")

    # -- entities --------------------------------------------------------------------------------------

    def insert(self, partition_key: str, row_key: str, properties: Mapping[str, EntityValue]) -> Entity:
        """Insert a new entity; :class:`ConflictError` (409 EntityAlreadyExists) if the keys are taken."""
        body = entity_to_json(partition_key, row_key, properties)
        response = self._send(
            "POST", f"{self.endpoint}/{self.table}", headers={"Prefer": "return-no-content"}, body=body
        )
        return Entity(partition_key, row_key, dict(properties), etag=response.headers.get("ETag"))

    def upsert(
        self,
        partition_key: str,
        row_key: str,
        properties: Mapping[str, EntityValue],
        *,
        mode: UpsertMode = UpsertMode.MERGE,
        etag: str | None = None,
    ) -> str:
        """Insert or update an entity; returns its new ETag.

        ``mode`` merge keeps properties not given, replace drops them. With ``etag`` the call becomes a
        conditional update: the entity must exist with that ETag (else 404 / 412 PreconditionFailed).
        """
        mode = UpsertMode(mode)
        body = entity_to_json(partition_key, row_key, properties)
        headers = {"If-Match": etag} if etag is not None else {}
        response = self._send(
            "MERGE" if mode is UpsertMode.MERGE else "PUT",
            self._entity_url(partition_key, row_key),
            headers=headers,
            body=body,
            idempotent=etag is None,
        )
        return response.headers.get("ETag", "")

    def get(self, partition_key: str, row_key: str, *, select: Sequence[str] | None = None) -> Entity:
        """The entity with these keys; :class:`NotFoundError` (404) if there is none."""
        url = self._entity_url(partition_key, row_key)
        if select is not None:
            url += "?$select=" + quote(_select(select), safe="")
        response = self._send("GET", url)
        with reading(response):
            return entity_from_json(_json_object(response), etag=response.headers.get("ETag"))

    def query(
        self,
        where: Filter | None = None,
        *,
        select: Sequence[str] | None = None,
        top: int | None = None,
        page_size: int | None = None,
    ) -> Iterator[Entity]:
        """Entities matching ``where`` (the ``$filter``), across continuation tokens, at most ``top`` of them.

        ``select`` names the properties wanted (the keys always come too). ``page_size`` is the ``$top``
        of each request (1 to 1000; the service's own page is 1000 rows).
        """
        if where is not None and not isinstance(where, Filter):
            raise InvalidInputError(
                "filter", "must be built with backup.azure.odata (eq, and_, ...), not raw text"
            )
        for name, value in (("top", top), ("page_size", page_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidInputError(name, f"must be a positive integer, got {value!r}")
        if page_size is not None and page_size > MAX_PAGE_SIZE:
            raise InvalidInputError("page_size", f"must be at most {MAX_PAGE_SIZE}, got {page_size}")
        params: dict[str, str] = {}
        if where is not None:
            params["$filter"] = where.text
        if select is not None:
            params["$select"] = _select(select)
        remaining = top
        continuation: dict[str, str] = {}
        seen: set[tuple[str, str]] = set()
        while True:
            request_params = dict(params)
            per_page = min(x for x in (page_size, remaining, MAX_PAGE_SIZE) if x is not None)
            if page_size is not None or remaining is not None:
                request_params["$top"] = str(per_page)
            request_params.update(continuation)
            query = "&".join(f"{name}={quote(value, safe='')}" for name, value in request_params.items())
            response = self._send("GET", f"{self.endpoint}/{self.table}()?{query}")
            with reading(response):
                items = _json_object(response).get("value", [])
                if not isinstance(items, list):
                    raise UnexpectedResponseError("response body", "'value' is not a list of entities")
                entities = [entity_from_json(item) for item in items]
            for entity in entities:
                yield entity
                if remaining is not None:
                    remaining -= 1
                    if remaining == 0:
                        return
            next_pk = response.headers.get("x-ms-continuation-NextPartitionKey")
            next_rk = response.headers.get("x-ms-continuation-NextRowKey")
            if not next_pk:
                return
            if (next_pk, next_rk or "") in seen:
                # The service never hands out one continuation twice: following it would loop forever.
                raise unexpected_response(
                    response, "x-ms-continuation-NextPartitionKey", "repeats an earlier page"
                )
            seen.add((next_pk, next_rk or ""))
            continuation = {"NextPartitionKey": next_pk}
            if next_rk:
                continuation["NextRowKey"] = next_rk

    def delete(self, partition_key: str, row_key: str, *, etag: str) -> None:
        """Delete the entity if its ETag is still ``etag`` (``"*"``: whatever it is); 412 if it changed."""
        if not etag:
            raise InvalidInputError("etag", "is required (use '*' to delete unconditionally)")
        self._send("DELETE", self._entity_url(partition_key, row_key), headers={"If-Match": etag})


def _json_object(response: requests.Response) -> dict[str, Any]:
    """The answer's body as a JSON object; anything else is Azure's fault, not the caller's."""
    try:
        body = json.loads(response.content)
    except ValueError:
        raise UnexpectedResponseError("response body", "is not JSON") from None
    if not isinstance(body, dict):
        raise UnexpectedResponseError("response body", f"must be a JSON object, not {type(body).__name__}")
    return body


def _select(names: Sequence[str]) -> str:
    if isinstance(names, str):
        raise InvalidInputError("select", "must be a list of property names, not one string")
    wanted = ["PartitionKey", "RowKey"] + [
        property_name(n) for n in names if n not in ("PartitionKey", "RowKey")
    ]
    return ",".join(dict.fromkeys(wanted))
