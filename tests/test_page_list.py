"""Get Page Ranges answers of the data plane: range parsing, selection, paging, XML (pure)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from testbed.emulator.page_list import (
    MAX_ITEMS,
    PageListItem,
    QueryProblem,
    diff_items,
    page_list_xml,
    parse_byte_range,
    select,
)
from testbed.emulator.pages import PageMap

P = 512
ITEMS = [PageListItem(0, 1023), PageListItem(2048, 4095, cleared=True), PageListItem(8192, 8703)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bytes=0-511", (0, 511)),
        ("bytes=512-", (512, None)),
        (" bytes=0-0 ", (0, 0)),
        ("bytes=5-4", None),
        ("bytes=-100", None),
        ("items=0-1", None),
        ("bytes=a-b", None),
        ("bytes=0-1,4-5", None),
    ],
)
def test_parse_byte_range(text: str, expected: tuple[int, int | None] | None) -> None:
    assert parse_byte_range(text) == expected


def test_diff_items_are_one_list_in_offset_order() -> None:
    older = PageMap(16 * P)
    older.write(0, b"\x01" * (8 * P))
    newer = older.copy()
    newer.clear(2 * P, P)
    newer.write(10 * P, b"\x02" * P)
    newer.write(0, b"\x03" * P)
    assert diff_items(older, newer) == [
        PageListItem(0, P - 1),
        PageListItem(2 * P, 3 * P - 1, cleared=True),
        PageListItem(10 * P, 11 * P - 1),
    ]


@pytest.mark.parametrize(
    ("within", "expected"),
    [
        (None, ITEMS),
        (("x-ms-range", "bytes=512-2559"), [PageListItem(512, 1023), PageListItem(2048, 2559, cleared=True)]),
        (("Range", "bytes=4096-"), [PageListItem(8192, 8703)]),
        (("x-ms-range", "bytes=4096-8191"), []),
    ],
)
def test_select_within_a_range(within: tuple[str, str] | None, expected: list[PageListItem]) -> None:
    assert select(ITEMS, size=16 * 1024, within=within) == (expected, None)


def test_select_pages_with_markers() -> None:
    first = select(ITEMS, size=16 * 1024, maxresults="2")
    assert not isinstance(first, QueryProblem)
    page, marker = first
    assert page == ITEMS[:2] and marker
    second = select(ITEMS, size=16 * 1024, maxresults="2", marker=marker)
    assert second == ([ITEMS[2]], None)
    many = [PageListItem(i * 2 * P, i * 2 * P + P - 1) for i in range(MAX_ITEMS + 1)]
    capped = select(many, size=(MAX_ITEMS + 1) * 2 * P, maxresults="20000")
    assert not isinstance(capped, QueryProblem)
    assert len(capped[0]) == MAX_ITEMS and capped[1]


@pytest.mark.parametrize(
    ("arguments", "status", "code"),
    [
        ({"within": ("x-ms-range", "bytes=1-512")}, 400, "InvalidHeaderValue"),
        ({"within": ("Range", "bytes=0-100")}, 400, "InvalidHeaderValue"),
        ({"within": ("Range", "pages=0-511")}, 400, "InvalidHeaderValue"),
        ({"maxresults": "0"}, 400, "OutOfRangeQueryParameterValue"),
        ({"maxresults": "ten"}, 400, "OutOfRangeQueryParameterValue"),
        ({"marker": "not-ours"}, 400, "InvalidQueryParameterValue"),
    ],
)
def test_select_refusals(arguments: dict, status: int, code: str) -> None:
    problem = select(ITEMS, size=16 * 1024, **arguments)
    assert isinstance(problem, QueryProblem)
    assert (problem.status, problem.code) == (status, code)
    assert problem.details  # names the header or parameter


def test_page_list_xml_shape() -> None:
    body = page_list_xml([PageListItem(0, 511), PageListItem(1024, 2047, cleared=True)], "abc")
    root = ET.fromstring(body)  # noqa: S314 - our own output
    assert [child.tag for child in root] == ["PageRange", "ClearRange", "NextMarker"]
    assert [(c.findtext("Start"), c.findtext("End")) for c in root][:2] == [("0", "511"), ("1024", "2047")]
    assert root.findtext("NextMarker") == "abc"
    assert ET.fromstring(page_list_xml([], None)).findtext("NextMarker") == ""  # noqa: S314
