"""Get Page Ranges answers, as pure functions: which ranges, which page of them, and the XML.

The data plane's front answers Get Page Ranges for managed-disk blobs itself (Azurite's diffs are wrong
and it ignores ``maxresults``). Everything it decides is here, free of I/O:

- :func:`diff_items` turns two page maps into the one offset-ordered list of ``PageRange`` (changed) and
  ``ClearRange`` (trimmed) elements that Azure answers a diff with;
- :func:`select` applies the request's range (``x-ms-range``/``Range``), ``marker`` and ``maxresults``
  (at most 10,000 per answer, as Azure) and says where the next page starts;
- :func:`page_list_xml` writes the ``PageList`` document.

A request that cannot be answered gets a :class:`QueryProblem`: the status, error code and message
Azure would answer with.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from testbed.emulator.pages import PAGE_SIZE, PageMap, diff

__all__ = [
    "MAX_ITEMS",
    "PageListItem",
    "QueryProblem",
    "diff_items",
    "page_list_xml",
    "parse_byte_range",
    "select",
]

#: The most ranges one Get Page Ranges answer holds (Azure: 10,000; ``maxresults`` may ask for fewer).
MAX_ITEMS = 10_000


@dataclass(frozen=True)
class PageListItem:
    """One element of a Get Page Ranges answer: a ``PageRange`` or a ``ClearRange``, inclusive."""

    start: int
    end: int
    cleared: bool = False


@dataclass(frozen=True)
class QueryProblem:
    """Why a Get Page Ranges request cannot be answered: Azure's status, error code, message, details."""

    status: int
    code: str
    message: str
    details: dict[str, str] = field(default_factory=dict)


def parse_byte_range(value: str) -> tuple[int, int | None] | None:
    """``bytes=start-end`` or ``bytes=start-`` as ``(start, end or None)``; ``None`` when malformed."""
    text = value.strip()
    if not text.startswith("bytes="):
        return None
    first, dash, last = text[len("bytes=") :].partition("-")
    if not dash or not first.isdigit() or (last and not last.isdigit()):
        return None
    start, end = int(first), int(last) if last else None
    if end is not None and end < start:
        return None
    return start, end


def diff_items(older: PageMap, newer: PageMap) -> list[PageListItem]:
    """The changes from ``older`` to ``newer`` as one list in offset order (ranges never overlap)."""
    changed, cleared = diff(older, newer)
    items = [PageListItem(s, e) for s, e in changed] + [PageListItem(s, e, True) for s, e in cleared]
    return sorted(items, key=lambda item: item.start)


def _encode_marker(offset: int) -> str:
    return base64.urlsafe_b64encode(f"pagelist!{offset}".encode()).decode("ascii")


def _decode_marker(marker: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(marker.encode("ascii")).decode("ascii")
    except (ValueError, UnicodeError):
        return None
    prefix, _, number = text.partition("!")
    return int(number) if prefix == "pagelist" and number.isdigit() else None


def _clip(items: list[PageListItem], low: int, high: int) -> list[PageListItem]:
    """The parts of ``items`` inside ``[low, high]`` (inclusive)."""
    clipped = []
    for item in items:
        start, end = max(item.start, low), min(item.end, high)
        if start <= end:
            clipped.append(PageListItem(start, end, item.cleared))
    return clipped


def _bad_query(name: str, value: str, *, out_of_range: bool = False) -> QueryProblem:
    if out_of_range:
        message = "One of the query parameters specified in the request URI is outside the permissible range."
        code = "OutOfRangeQueryParameterValue"
    else:
        message = "Value for one of the query parameters specified in the request URI is invalid."
        code = "InvalidQueryParameterValue"
    return QueryProblem(400, code, message, {"QueryParameterName": name, "QueryParameterValue": value})


def select(
    items: list[PageListItem],
    *,
    size: int,
    within: tuple[str, str] | None = None,
    maxresults: str | None = None,
    marker: str | None = None,
) -> tuple[list[PageListItem], str | None] | QueryProblem:
    """The items this request gets, and the marker of the next page (``None`` when this is the last).

    ``within`` is the range header as ``(name, value)``: its start and end must be page-aligned (an
    open end means the blob's end). ``maxresults`` and ``marker`` are the query's raw values.
    """
    if within is not None:
        name, value = within
        parsed = parse_byte_range(value)
        if parsed is None or parsed[0] % PAGE_SIZE or (parsed[1] is not None and (parsed[1] + 1) % PAGE_SIZE):
            return QueryProblem(
                400,
                "InvalidHeaderValue",
                "The value for one of the HTTP headers is not in the correct format.",
                {"HeaderName": name, "HeaderValue": value},
            )
        items = _clip(items, parsed[0], parsed[1] if parsed[1] is not None else size - 1)
    limit = MAX_ITEMS
    if maxresults is not None:
        if not maxresults.isdigit() or int(maxresults) < 1:
            return _bad_query("maxresults", maxresults, out_of_range=True)
        limit = min(limit, int(maxresults))
    if marker:
        resume = _decode_marker(marker)
        if resume is None:
            return _bad_query("marker", marker)
        items = [item for item in items if item.start >= resume]
    page, rest = items[:limit], items[limit:]
    return page, _encode_marker(rest[0].start) if rest else None


def page_list_xml(items: list[PageListItem], next_marker: str | None) -> bytes:
    """The ``PageList`` document of a Get Page Ranges answer, ranges in offset order."""
    parts = ['<?xml version="1.0" encoding="utf-8"?><PageList>']
    for item in items:
        tag = "ClearRange" if item.cleared else "PageRange"
        parts.append(f"<{tag}><Start>{item.start}</Start><End>{item.end}</End></{tag}>")
    parts.append(f"<NextMarker>{next_marker}</NextMarker>" if next_marker else "<NextMarker />")
    parts.append("</PageList>")
    return "".join(parts).encode("utf-8")
