"""OData literals and filters for Azure Table queries, and reversible encoding of entity keys.

A ``$filter`` is code the table service runs, so no value is ever pasted into one. :func:`literal` is the
one function that turns a Python value into an OData literal (strings single-quoted with inner quotes
doubled, ``datetime'...'``, Int64 with its ``L`` suffix, ``guid'...'``); the builders (:func:`eq`,
:func:`and_`, ...) validate property names and use only :func:`literal`, and return a :class:`Filter`,
the only thing :meth:`backup.azure.table.TableClient.query` accepts.

PartitionKey and RowKey may not hold ``/ \\ # ?`` or control characters, and a ``%`` in a key breaks some
Table APIs (Azure Storage team blog, 2012; Azurite issues 1377, 1418). Resource IDs are full of ``/``.
:func:`encode_key` replaces each such character by ``~XX`` (its code in hex; ``~`` itself becomes
``~7E``) and :func:`decode_key` reverses it exactly.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from backup.errors import InvalidInputError

__all__ = [
    "Filter",
    "and_",
    "decode_key",
    "encode_key",
    "eq",
    "format_datetime",
    "ge",
    "gt",
    "le",
    "literal",
    "lt",
    "ne",
    "not_",
    "or_",
    "property_name",
]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# OData/EDM property names: an identifier, at most 255 characters.
_PROPERTY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
# Characters a key may not hold (Azure: / \ # ? and U+0000-U+001F, U+007F-U+009F), plus % (breaks some
# APIs) and ~ (our escape character).
_KEY_UNSAFE = re.compile(r"[/\\#?%~\x00-\x1f\x7f-\x9f]")
_KEY_ESCAPE = re.compile(r"~(.{0,2})", re.DOTALL)


@dataclass(frozen=True)
class Filter:
    """A ``$filter`` expression built by this module's functions (never from raw text)."""

    text: str

    def __str__(self) -> str:
        return self.text


def literal(value: str | bool | int | float | datetime | uuid.UUID) -> str:
    """The OData literal for ``value``; the one place values become filter text.

    str -> ``'it''s'``; bool -> ``true``/``false``; int -> ``42L`` (Edm.Int64, how the table client
    stores every int); float -> ``2.5`` (finite, never an exponent); tz-aware datetime ->
    ``datetime'...Z'`` in UTC; UUID -> ``guid'...'``. Anything else is refused.
    """
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise InvalidInputError("filter value", f"{value} does not fit in Edm.Int64")
        return f"{value}L"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError("filter value", f"{value} is not a finite number")
        # Positional notation of the shortest repr: exponents ("1e+300") are not read by every parser
        # (Azurite matches nothing with them); digits and a decimal point are read by all.
        text = format(Decimal(repr(value)), "f")
        return text if "." in text else text + ".0"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, datetime):
        return f"datetime'{format_datetime(value)}'"
    if isinstance(value, uuid.UUID):
        return f"guid'{value}'"
    raise InvalidInputError("filter value", f"cannot be a {type(value).__name__}")


def format_datetime(value: datetime) -> str:
    """A tz-aware datetime as the service writes Edm.DateTime: UTC, microseconds, ``Z``."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError("datetime", f"{value.isoformat()} has no timezone; use UTC")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def property_name(name: str) -> str:
    """``name`` if it is a valid property name (an identifier of at most 255 characters)."""
    if not isinstance(name, str) or not _PROPERTY_NAME.fullmatch(name):
        raise InvalidInputError("property name", f"{name!r} is not an identifier of at most 255 characters")
    return name


def _compare(operator: str, name: str, value: str | bool | int | float | datetime | uuid.UUID) -> Filter:
    return Filter(f"{property_name(name)} {operator} {literal(value)}")


def eq(name: str, value: str | bool | int | float | datetime | uuid.UUID) -> Filter:
    """``name eq value``."""
    return _compare("eq", name, value)


def ne(name: str, value: str | bool | int | float | datetime | uuid.UUID) -> Filter:
    """``name ne value``."""
    return _compare("ne", name, value)


def gt(name: str, value: str | bool | int | float | datetime | uuid.UUID) -> Filter:
    """``name gt value``."""
    return _compare("gt", name, value)


def ge(name: str, value: str | bool | int | float | datetime | uuid.UUID) -> Filter:
    """``name ge value``."""
    return _compare("ge", name, value)


def lt(name: str, value: str | bool | int | float | datetime | uuid.UUID) -> Filter:
    """``name lt value``."""
    return _compare("lt", name, value)


def le(name: str, value: str | bool | int | float | datetime | uuid.UUID) -> Filter:
    """``name le value``."""
    return _compare("le", name, value)


def _join(operator: str, filters: tuple[Filter, ...]) -> Filter:
    if not filters:
        raise InvalidInputError("filter", f"'{operator}' needs at least one clause")
    for clause in filters:
        if not isinstance(clause, Filter):
            raise InvalidInputError(
                "filter", f"clauses must be built with backup.azure.odata, got {type(clause).__name__}"
            )
    if len(filters) == 1:
        return filters[0]
    return Filter(f" {operator} ".join(f"({clause.text})" for clause in filters))


def and_(*filters: Filter) -> Filter:
    """All of ``filters``."""
    return _join("and", filters)


def or_(*filters: Filter) -> Filter:
    """Any of ``filters``."""
    return _join("or", filters)


def not_(clause: Filter) -> Filter:
    """The negation of ``clause``."""
    if not isinstance(clause, Filter):
        raise InvalidInputError(
            "filter", f"clauses must be built with backup.azure.odata, got {type(clause).__name__}"
        )
    return Filter(f"not ({clause.text})")


def encode_key(value: str) -> str:
    """``value`` made safe as a PartitionKey/RowKey: unsafe characters become ``~XX`` (reversible)."""
    if not isinstance(value, str):
        raise InvalidInputError("key", f"must be a string, got {type(value).__name__}")
    return _KEY_UNSAFE.sub(lambda match: f"~{ord(match.group()):02X}", value)


def decode_key(encoded: str) -> str:
    """The original of :func:`encode_key`'s output; malformed escapes are refused."""

    def unescape(match: re.Match[str]) -> str:
        digits = match.group(1)
        if len(digits) != 2 or not all(c in "0123456789ABCDEF" for c in digits):
            raise InvalidInputError("encoded key", f"bad escape '~{digits}' (expected ~ and two hex digits)")
        char = chr(int(digits, 16))
        if not _KEY_UNSAFE.fullmatch(char):
            raise InvalidInputError("encoded key", f"'~{digits}' escapes a character that is never escaped")
        return char

    return _KEY_ESCAPE.sub(unescape, encoded)
