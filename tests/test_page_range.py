"""The page-range helper (backup/azure/page_range.py): tables of cases plus hypothesis properties."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backup.azure.page_range import (
    MAX_WRITE_BYTES,
    PAGE_SIZE,
    PageRange,
    coalesce_writes,
    covers,
    merge,
    split,
    total_bytes,
)
from backup.errors import InvalidInputError

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("start", "end", "header", "length"),
    [
        (0, 511, "bytes=0-511", 512),
        (512, 1023, "bytes=512-1023", 512),
        (0, 4 * MiB - 1, "bytes=0-4194303", 4 * MiB),
        (8 * 1024**4 - 512, 8 * 1024**4 - 1, "bytes=8796093021696-8796093022207", 512),
    ],
)
def test_valid_ranges(start: int, end: int, header: str, length: int) -> None:
    page_range = PageRange(start, end)
    assert page_range.header() == header
    assert page_range.length == length
    assert PageRange.at(start, length) == page_range


@pytest.mark.parametrize(
    ("start", "end", "field", "words"),
    [
        (-512, 511, "range start", "negative"),
        (1, 512, "range start", "multiple of 512"),
        (0, 510, "range end", "+ 1 is not a multiple"),
        (0, 512, "range end", "+ 1 is not a multiple"),
        (1024, 511, "range end", "before start"),
        (0.0, 511, "range start", "integer"),
        (True, 511, "range start", "integer"),
        (0, "511", "range end", "integer"),
    ],
)
def test_invalid_ranges_name_what_is_wrong(start: object, end: object, field: str, words: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        PageRange(start, end)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert words in str(caught.value)


@pytest.mark.parametrize("length", [0, -512, 100])
def test_at_rejects_bad_lengths(length: int) -> None:
    with pytest.raises(InvalidInputError):
        PageRange.at(0, length)


def test_write_header_enforces_4_mib() -> None:
    assert PageRange(4 * MiB, 8 * MiB - 1).write_header() == "bytes=4194304-8388607"
    with pytest.raises(InvalidInputError, match="at most 4194304"):
        PageRange(0, 4 * MiB + 511).write_header()


def test_split_adds_each_chunk_offset_to_its_range_start() -> None:
    # A 9 MiB range starting at 1 GiB: the sample's bug would restart every range's chunks at 0.
    got = split([PageRange(1024 * MiB, 1024 * MiB + 9 * MiB - 1), PageRange(0, 511)])
    assert got == [
        PageRange(1024 * MiB, 1028 * MiB - 1),
        PageRange(1028 * MiB, 1032 * MiB - 1),
        PageRange(1032 * MiB, 1033 * MiB - 1),
        PageRange(0, 511),
    ]


@pytest.mark.parametrize(("max_bytes"), [0, 511, 513, 4 * MiB + 512, -512, True])
def test_split_rejects_bad_chunk_sizes(max_bytes: int) -> None:
    with pytest.raises(InvalidInputError, match="max_bytes"):
        split([PageRange(0, 511)], max_bytes)


@pytest.mark.parametrize(
    ("ranges", "merged"),
    [
        ([], []),
        ([(0, 511), (512, 1023)], [(0, 1023)]),  # touching
        ([(1024, 2047), (0, 1535)], [(0, 2047)]),  # overlapping, unsorted
        ([(0, 511), (1024, 1535)], [(0, 511), (1024, 1535)]),  # a gap stays
        ([(0, 4095), (512, 1023)], [(0, 4095)]),  # contained
        ([(512, 1023), (512, 1023)], [(512, 1023)]),  # duplicate
    ],
)
def test_merge(ranges: list[tuple[int, int]], merged: list[tuple[int, int]]) -> None:
    assert merge(PageRange(*r) for r in ranges) == [PageRange(*r) for r in merged]


def test_total_bytes_counts_overlap_once() -> None:
    assert total_bytes([PageRange(0, 1023), PageRange(512, 1535)]) == 1536


# -- properties -----------------------------------------------------------------------------------------

_PAGES = 4096  # a 2 MiB blob keeps examples small; chunk sizes scale down with it


@st.composite
def page_ranges(draw: st.DrawFn) -> PageRange:
    first = draw(st.integers(0, _PAGES - 1))
    count = draw(st.integers(1, _PAGES - first))
    return PageRange.at(first * PAGE_SIZE, count * PAGE_SIZE)


def _pages(ranges: list[PageRange]) -> set[int]:
    return {page for r in ranges for page in range(r.start // PAGE_SIZE, (r.end + 1) // PAGE_SIZE)}


@given(st.lists(page_ranges(), max_size=8), st.integers(1, 64).map(lambda n: n * PAGE_SIZE))
def test_split_covers_exactly_the_same_bytes_in_bounded_aligned_chunks(
    ranges: list[PageRange], max_bytes: int
) -> None:
    chunks = split(ranges, max_bytes)
    assert all(chunk.length <= max_bytes for chunk in chunks)
    assert sum(chunk.length for chunk in chunks) == sum(r.length for r in ranges)
    # Chunks of one range are consecutive and tile it.
    position = 0
    for whole in ranges:
        expected_start = whole.start
        while expected_start <= whole.end:
            chunk = chunks[position]
            assert chunk.start == expected_start
            expected_start = chunk.end + 1
            position += 1
        assert expected_start == whole.end + 1
    assert position == len(chunks)


@given(st.lists(page_ranges(), max_size=10))
def test_merge_keeps_the_pages_and_leaves_gaps_between(ranges: list[PageRange]) -> None:
    merged = merge(ranges)
    assert _pages(merged) == _pages(ranges)
    for before, after in itertools.pairwise(merged):
        assert before.end + 1 < after.start  # sorted, disjoint and not touching
    assert merge(merged) == merged
    assert total_bytes(ranges) == len(_pages(ranges)) * PAGE_SIZE


@given(st.lists(page_ranges(), max_size=6))
def test_every_chunk_of_default_split_is_writable(ranges: list[PageRange]) -> None:
    scaled = [PageRange(r.start * 64, (r.end + 1) * 64 - 1) for r in ranges]  # up to 128 MiB ranges
    for chunk in split(scaled):
        assert chunk.write_header() == chunk.header()
        assert chunk.length <= MAX_WRITE_BYTES


# -- coalesce_writes: the merging rule --------------------------------------------------------------------

KiB = 1024


def _r(start: int, length: int) -> PageRange:
    return PageRange.at(start, length)


def _everything(size: int = 64 * MiB) -> list[PageRange]:
    return [PageRange(0, size - 1)]


@pytest.mark.parametrize(
    ("changed", "populated", "expected"),
    [
        pytest.param([], None, [], id="nothing changed"),
        pytest.param([_r(0, 512)], None, [_r(0, 512)], id="one page"),
        pytest.param(
            [_r(0, 10 * MiB)],
            None,
            [_r(0, 4 * MiB), _r(4 * MiB, 4 * MiB), _r(8 * MiB, 2 * MiB)],
            id="a long range in 4 MiB writes, each at its own offset",
        ),
        pytest.param(
            [_r(0, 4 * KiB), _r(4 * KiB, 4 * KiB)], None, [_r(0, 8 * KiB)], id="touching ranges share"
        ),
        pytest.param(
            [_r(4 * KiB, 4 * KiB), _r(0, 4 * KiB)], None, [_r(0, 8 * KiB)], id="order does not matter"
        ),
        pytest.param(
            [_r(0, 64 * KiB), _r(64 * KiB + 512, 64 * KiB)],
            _everything(),
            [_r(0, 128 * KiB + 512)],
            id="a small populated gap is bridged",
        ),
        pytest.param(
            [_r(0, 64 * KiB), _r(64 * KiB + 512, 64 * KiB)],
            None,
            [_r(0, 64 * KiB), _r(64 * KiB + 512, 64 * KiB)],
            id="unknown gaps are never bridged",
        ),
        pytest.param(
            [_r(0, 64 * KiB), _r(64 * KiB + 512, 64 * KiB)],
            [_r(0, 64 * KiB)],
            [_r(0, 64 * KiB), _r(64 * KiB + 512, 64 * KiB)],
            id="a hole is never bridged",
        ),
        pytest.param(
            [_r(0, 64 * KiB), _r(64 * KiB + 512, 64 * KiB)],
            [_r(0, 64 * KiB + 512), _r(64 * KiB + 512, 64 * KiB)],
            [_r(0, 128 * KiB + 512)],
            id="populated pieces that touch cover the gap",
        ),
        pytest.param(
            [_r(0, 2 * MiB), _r(2 * MiB + 128 * KiB, 2 * MiB)],
            _everything(),
            [_r(0, 2 * MiB), _r(2 * MiB + 128 * KiB, 2 * MiB)],
            id="a gap over 64 KiB is not bridged",
        ),
        pytest.param(
            [_r(0, 512), _r(1024, 512)],
            _everything(),
            [_r(0, 512), _r(1024, 512)],
            id="a gap as large as the changes costs too much",
        ),
        pytest.param(
            [_r(0, 20 * KiB), _r(21 * KiB, 512)],
            _everything(),
            [_r(0, 21 * KiB + 512)],
            id="512 bridged bytes within 5% of 20.5 KiB changed",
        ),
        pytest.param(
            [_r(0, 512), _r(1024, 20 * KiB)],
            _everything(),
            [_r(0, 21 * KiB)],
            id="the budget counts the range being joined (it is moved either way)",
        ),
        pytest.param(
            [_r(0, 3 * MiB), _r(3 * MiB + 4 * KiB, 3 * MiB)],
            _everything(),
            [_r(0, 4 * MiB), _r(4 * MiB, 2 * MiB + 4 * KiB)],
            id="a bridged write fills to 4 MiB",
        ),
        pytest.param(
            [_r(0, 4 * MiB), _r(4 * MiB + 4 * KiB, 64 * KiB)],
            _everything(),
            [_r(0, 4 * MiB), _r(4 * MiB + 4 * KiB, 64 * KiB)],
            id="a full write takes no more",
        ),
        pytest.param(
            [_r(i * 66 * KiB, 64 * KiB) for i in range(100)],
            _everything(),
            [_r(0, 4 * MiB), _r(4 * MiB, 100 * 66 * KiB - 2 * KiB - 4 * MiB)],
            id="a hundred 64 KiB changes 2 KiB apart: two writes",
        ),
        pytest.param(
            [_r(i * 68 * KiB, 64 * KiB) for i in range(6)],
            _everything(),
            [_r(0, 4 * 68 * KiB + 64 * KiB), _r(5 * 68 * KiB, 64 * KiB)],
            id="4 KiB gaps (6%) are bridged only while the running budget lasts",
        ),
    ],
)
def test_coalesce_writes(
    changed: list[PageRange], populated: list[PageRange] | None, expected: list[PageRange]
) -> None:
    writes = coalesce_writes(changed, populated=populated)
    assert writes == expected
    assert total_bytes(writes) <= 1.05 * total_bytes(changed)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_bytes": 8 * MiB}, "max_bytes"),
        ({"max_bytes": 1000}, "max_bytes"),
        ({"max_gap": -512}, "max_gap"),
        ({"max_gap": 100}, "max_gap"),
        ({"max_overhead": 1.5}, "max_overhead"),
    ],
)
def test_coalesce_writes_refuses_bad_limits(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        coalesce_writes([_r(0, 512)], **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("ranges", "wanted", "covered"),
    [
        ([_r(0, 4 * KiB)], _r(512, 1024), True),
        ([_r(0, 4 * KiB)], _r(0, 4 * KiB), True),
        ([_r(0, 4 * KiB)], _r(3 * KiB, 2 * KiB), False),
        ([_r(0, 4 * KiB), _r(8 * KiB, 4 * KiB)], _r(8 * KiB, 512), True),
        ([_r(0, 4 * KiB), _r(8 * KiB, 4 * KiB)], _r(4 * KiB, 512), False),
        ([], _r(0, 512), False),
    ],
)
def test_covers(ranges: list[PageRange], wanted: PageRange, covered: bool) -> None:
    assert covers(ranges, wanted) is covered


_page_numbers = st.integers(min_value=0, max_value=40_000)


@st.composite
def _changes(draw: st.DrawFn) -> tuple[list[PageRange], list[PageRange]]:
    """Changed ranges and populated ranges that include them (changed pages are populated)."""
    starts = draw(st.lists(_page_numbers, max_size=40))
    changed = merge(_r(p * PAGE_SIZE, draw(st.integers(1, 40)) * PAGE_SIZE) for p in starts)
    extra = draw(st.lists(_page_numbers, max_size=40))
    populated = merge([*changed, *(_r(p * PAGE_SIZE, draw(st.integers(1, 400)) * PAGE_SIZE) for p in extra)])
    return changed, populated


@given(
    _changes(), st.sampled_from([8 * KiB, 64 * KiB, MAX_WRITE_BYTES]), st.sampled_from([0, 4 * KiB, 64 * KiB])
)
def test_coalesce_writes_properties(
    data: tuple[list[PageRange], list[PageRange]], max_bytes: int, max_gap: int
) -> None:
    changed, populated = data
    writes = coalesce_writes(changed, populated=populated, max_bytes=max_bytes, max_gap=max_gap)
    # Every changed byte is written, in order, without overlap, each write within the limit.
    assert all(w.length <= max_bytes for w in writes)
    assert all(a.end < b.start for a, b in itertools.pairwise(writes))
    for change in changed:
        assert (
            sum(max(0, min(w.end, change.end) - max(w.start, change.start) + 1) for w in writes)
            == change.length
        )
    # Bytes moved stay within 5% of the bytes changed, and every extra byte is populated in the source.
    assert total_bytes(writes) <= 1.05 * total_bytes(changed)
    assert all(covers(populated, w) for w in writes)
    # Never more writes than the changes cut at the limit.
    assert len(writes) <= len(split(changed, max_bytes))
