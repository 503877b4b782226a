"""Page maps: tables of cases, and hypothesis properties against a plain bytearray model."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup.errors import InvalidInputError
from testbed.emulator.pages import EXTENT_SIZE, PAGE_SIZE, PageMap, churn, diff, fill_sparse

P = PAGE_SIZE
MIB = 1 << 20


def _data(seed: int, length: int) -> bytes:
    return random.Random(seed).randbytes(length)


class Model:
    """The obvious implementation: every byte, and a populated flag per page."""

    def __init__(self, size: int) -> None:
        self.content = bytearray(size)
        self.populated = [False] * (size // P)

    def write(self, offset: int, data: bytes) -> None:
        self.content[offset : offset + len(data)] = data
        for page in range(offset // P, (offset + len(data)) // P):
            self.populated[page] = True

    def clear(self, offset: int, length: int) -> None:
        self.content[offset : offset + length] = bytes(length)
        for page in range(offset // P, (offset + length) // P):
            self.populated[page] = False

    def ranges(self) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for page, flag in enumerate(self.populated):
            if not flag:
                continue
            if out and out[-1][1] == page * P - 1:
                out[-1] = (out[-1][0], page * P + P - 1)
            else:
                out.append((page * P, page * P + P - 1))
        return out


def apply_diff(older: PageMap, newer: PageMap) -> PageMap:
    """A copy of ``older`` with ``diff(older, newer)`` applied, the way a backup applies it."""
    changed, cleared = diff(older, newer)
    result = older.copy()
    if result.size != newer.size:
        result.resize(newer.size)
    for start, end in cleared:
        result.clear(start, end - start + 1)
    for start, end in changed:
        result.write(start, newer.read(start, end - start + 1))
    return result


def assert_well_formed(ranges: list[tuple[int, int]], size: int) -> None:
    """Sorted, disjoint, not touching (merged), page-aligned, inside the map."""
    for start, end in ranges:
        assert start % P == 0 and (end + 1) % P == 0 and start <= end < size
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert start > end + 1


def assert_same(pm: PageMap, model: Model) -> None:
    assert pm.read(0, pm.size) == bytes(model.content)
    assert pm.ranges() == model.ranges()
    assert pm.populated_bytes() == sum(model.populated) * P


# -- tables ----------------------------------------------------------------------------------------------


def test_new_map_is_empty_zeros() -> None:
    pm = PageMap(4 * P)
    assert pm.size == 4 * P
    assert pm.ranges() == []
    assert pm.read(0, 4 * P) == bytes(4 * P)
    assert pm.populated_bytes() == 0


@pytest.mark.parametrize(
    ("writes", "clears", "expected"),
    [
        ([(0, P)], [], [(0, P - 1)]),
        ([(0, P), (P, P)], [], [(0, 2 * P - 1)]),  # adjacent writes merge
        ([(0, P), (2 * P, P)], [], [(0, P - 1), (2 * P, 3 * P - 1)]),
        ([(0, 4 * P)], [(P, P)], [(0, P - 1), (2 * P, 4 * P - 1)]),  # trim splits
        ([(0, 4 * P)], [(0, 4 * P)], []),
        ([(EXTENT_SIZE - P, 2 * P)], [], [(EXTENT_SIZE - P, EXTENT_SIZE + P - 1)]),  # across extents
        ([(EXTENT_SIZE - P, P), (EXTENT_SIZE, P)], [], [(EXTENT_SIZE - P, EXTENT_SIZE + P - 1)]),
        ([(0, 3 * MIB)], [(MIB, MIB)], [(0, MIB - 1), (2 * MIB, 3 * MIB - 1)]),
    ],
)
def test_ranges_table(
    writes: list[tuple[int, int]], clears: list[tuple[int, int]], expected: list[tuple[int, int]]
) -> None:
    pm = PageMap(4 * MIB)
    for offset, length in writes:
        pm.write(offset, _data(offset, length))
    for offset, length in clears:
        pm.clear(offset, length)
    assert pm.ranges() == expected


def test_writing_zeros_populates() -> None:
    # A page blob reports a page written with zeros as valid; so must the map.
    pm = PageMap(4 * P)
    pm.write(P, bytes(P))
    assert pm.ranges() == [(P, 2 * P - 1)]
    assert pm.populated_bytes() == P


def test_read_any_alignment() -> None:
    pm = PageMap(EXTENT_SIZE * 2)
    payload = _data(1, 4 * P)
    pm.write(EXTENT_SIZE - 2 * P, payload)
    assert pm.read(EXTENT_SIZE - 2 * P + 3, 100) == payload[3:103]
    assert pm.read(EXTENT_SIZE - 3 * P, P + 7) == bytes(P) + payload[:7]
    assert pm.read(0, 0) == b""


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda pm: pm.write(1, bytes(P)), "offset"),
        (lambda pm: pm.write(0, bytes(P + 1)), "length"),
        (lambda pm: pm.write(0, b""), "length"),
        (lambda pm: pm.write(4 * P, bytes(P)), "offset"),
        (lambda pm: pm.write(-P, bytes(P)), "offset"),
        (lambda pm: pm.clear(0, 100), "length"),
        (lambda pm: pm.clear(3 * P, 2 * P), "offset"),
        (lambda pm: pm.read(0, 4 * P + 1), "range"),
        (lambda pm: pm.read(-1, 1), "range"),
        (lambda pm: pm.resize(1000), "size"),
        (lambda pm: pm.resize(0), "size"),
    ],
)
def test_bad_input_names_the_field(call: object, field: str) -> None:
    pm = PageMap(4 * P)
    with pytest.raises(InvalidInputError) as caught:
        call(pm)  # type: ignore[operator]
    assert caught.value.field == field


@pytest.mark.parametrize("size", [0, -512, 100, 513, 1.5, True])
def test_bad_size(size: object) -> None:
    with pytest.raises(InvalidInputError, match="size"):
        PageMap(size)  # type: ignore[arg-type]


def test_resize_drops_content_beyond_and_grows_empty() -> None:
    pm = PageMap(2 * MIB)
    pm.write(0, _data(1, 2 * MIB))
    pm.resize(MIB + P)
    assert pm.ranges() == [(0, MIB + P - 1)]
    pm.resize(3 * MIB)
    assert pm.ranges() == [(0, MIB + P - 1)]
    assert pm.read(MIB + P, P) == bytes(P)


def test_frozen_is_read_only_and_copy_is_writable() -> None:
    pm = PageMap(MIB)
    pm.write(0, _data(1, P))
    frozen = pm.frozen()
    assert frozen.read_only and frozen.frozen() is frozen
    for change in (lambda: frozen.write(0, bytes(P)), lambda: frozen.clear(0, P), lambda: frozen.resize(P)):
        with pytest.raises(InvalidInputError, match="read-only"):
            change()
    thawed = frozen.copy()
    thawed.write(P, _data(2, P))
    assert thawed.ranges() == [(0, 2 * P - 1)]
    assert frozen.ranges() == [(0, P - 1)]


def test_sha256_counts_holes_as_zeros() -> None:
    import hashlib

    pm = PageMap(2 * MIB + P)
    assert pm.sha256() == hashlib.sha256(bytes(2 * MIB + P)).hexdigest()
    pm.write(MIB - P, _data(3, 3 * P))
    assert pm.sha256() == hashlib.sha256(pm.read(0, pm.size)).hexdigest()
    frozen = pm.frozen()
    assert frozen.sha256() == pm.sha256()
    pm.clear(MIB, P)
    assert frozen.sha256() != pm.sha256()
    assert pm.sha256() == hashlib.sha256(pm.read(0, pm.size)).hexdigest()


@pytest.mark.parametrize(
    ("before", "after", "changed", "cleared"),
    [
        # (operations on the older map, operations on the newer copy) -> expected diff
        ([], [], [], []),
        ([], [("w", 0, P, 1)], [(0, P - 1)], []),
        ([("w", 0, 2 * P, 1)], [("c", 0, P)], [], [(0, P - 1)]),
        ([("w", 0, 2 * P, 1)], [("w", 0, 2 * P, 1)], [], []),  # same bytes rewritten: no content change
        ([("w", 0, 2 * P, 1)], [("w", P, P, 9)], [(P, 2 * P - 1)], []),
        ([], [("w", 0, P, 0)], [(0, P - 1)], []),  # zeros written into a hole: now populated
        ([("w", 0, P, 0)], [("c", 0, P)], [], [(0, P - 1)]),  # zeros trimmed: a hole again
        ([], [("c", 0, MIB)], [], []),  # trimming a hole changes nothing
        (
            [("w", EXTENT_SIZE - P, 2 * P, 1)],
            [("w", EXTENT_SIZE - P, 2 * P, 2)],
            [(EXTENT_SIZE - P, EXTENT_SIZE + P - 1)],  # merged across the extent boundary
            [],
        ),
        (
            [("w", 0, 8 * P, 1)],
            [("c", 2 * P, 2 * P), ("w", 5 * P, P, 4)],
            [(5 * P, 6 * P - 1)],
            [(2 * P, 4 * P - 1)],
        ),
    ],
)
def test_diff_table(
    before: list[tuple], after: list[tuple], changed: list[tuple[int, int]], cleared: list[tuple[int, int]]
) -> None:
    older = PageMap(4 * MIB)
    for op in before:
        _apply(older, op)
    older = older.frozen()
    newer = older.copy()
    for op in after:
        _apply(newer, op)
    assert diff(older, newer) == (changed, cleared)
    assert apply_diff(older, newer).read(0, newer.size) == newer.read(0, newer.size)


def _apply(pm: PageMap, op: tuple) -> None:
    if op[0] == "w":
        _, offset, length, seed = op
        pm.write(offset, _data(seed, length) if seed else bytes(length))
    else:
        _, offset, length = op
        pm.clear(offset, length)


def test_diff_of_unrelated_maps_compares_content() -> None:
    # Maps built separately share no extents; the diff still finds only real differences.
    a, b = PageMap(2 * MIB), PageMap(2 * MIB)
    for pm in (a, b):
        pm.write(0, _data(1, 4 * P))
    b.write(MIB, _data(2, P))
    assert diff(a, b) == ([(MIB, MIB + P - 1)], [])
    assert diff(b, a) == ([], [(MIB, MIB + P - 1)])


def test_diff_across_a_shrink_reports_nothing_beyond_the_new_size() -> None:
    older = PageMap(2 * MIB)
    older.write(0, _data(1, 2 * MIB))
    newer = older.copy()
    newer.resize(MIB)
    assert diff(older, newer) == ([], [])
    assert apply_diff(older, newer).ranges() == newer.ranges()


# -- synthetic content -----------------------------------------------------------------------------


def test_fill_sparse_is_deterministic_clustered_and_near_fraction() -> None:
    a, b, c = PageMap(64 * MIB), PageMap(64 * MIB), PageMap(64 * MIB)
    fill_sparse(a, seed=7, fraction=0.1)
    fill_sparse(b, seed=7, fraction=0.1)
    fill_sparse(c, seed=8, fraction=0.1)
    assert a.sha256() == b.sha256() != c.sha256()
    target = int(64 * MIB * 0.1) // P * P
    assert target <= a.populated_bytes() < target + 2 * 256 * 1024
    assert 5 < len(a.ranges()) < 200  # clusters, not scattered pages
    assert_well_formed(a.ranges(), a.size)


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_fill_sparse_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(InvalidInputError, match="fraction"):
        fill_sparse(PageMap(MIB), seed=1, fraction=fraction)


def test_churn_is_deterministic_and_changes_about_what_was_asked() -> None:
    base = PageMap(64 * MIB)
    fill_sparse(base, seed=1, fraction=0.2)
    base = base.frozen()
    one, two = base.copy(), base.copy()
    churn(one, seed=5, write_fraction=0.02, trim_fraction=0.01)
    churn(two, seed=5, write_fraction=0.02, trim_fraction=0.01)
    assert one.sha256() == two.sha256() != base.sha256()
    changed, cleared = diff(base, one)
    changed_bytes = sum(end - start + 1 for start, end in changed)
    cleared_bytes = sum(end - start + 1 for start, end in cleared)
    # Trims may land on pages that were just rewritten, and rewrites overlap: bounds, not equalities.
    assert 0 < changed_bytes <= int(64 * MIB * 0.02) + 2 * 64 * 1024
    assert 0 < cleared_bytes <= int(64 * MIB * 0.01) + 2 * 64 * 1024
    assert apply_diff(base, one).sha256() == one.sha256()


def test_churn_rejects_bad_fraction() -> None:
    with pytest.raises(InvalidInputError, match="trim_fraction"):
        churn(PageMap(MIB), seed=1, write_fraction=0.1, trim_fraction=2)


@pytest.mark.slow
def test_large_disk_snapshot_and_diff_stay_cheap() -> None:
    # 8 GiB with 10% populated: a frozen copy shares everything, and after a day's churn the diff only
    # compares the extents written since. Memory stays near the populated bytes.
    pm = PageMap(8 << 30)
    fill_sparse(pm, seed=3, fraction=0.1)
    older = pm.frozen()
    assert older.ranges() == pm.ranges()
    churn(pm, seed=4, write_fraction=0.005, trim_fraction=0.002)
    changed, cleared = diff(older, pm)
    assert changed and cleared
    for start, end in changed[:50]:
        assert pm.read(start, end - start + 1) != older.read(start, end - start + 1)
    for start, end in cleared[:50]:
        assert pm.read(start, end - start + 1) == bytes(end - start + 1)


# -- hypothesis: the map behaves like the model ---------------------------------------------------------

# 3 MiB + 8 pages: enough to cross extent boundaries, small enough for a bytearray model.
_SIZE = 3 * MIB + 8 * P
_PAGES = _SIZE // P
_BOUNDARY_PAGES = [EXTENT_SIZE // P * k for k in (1, 2, 3)]

_page = st.one_of(
    st.integers(0, _PAGES - 1),
    st.sampled_from(_BOUNDARY_PAGES).flatmap(lambda b: st.integers(b - 4, min(b + 4, _PAGES - 1))),
)


@st.composite
def _operation(draw: st.DrawFn) -> tuple[str, int, int, int]:
    first = draw(_page)
    count = draw(st.one_of(st.integers(1, 8), st.integers(1, 2100)))
    count = min(count, _PAGES - first)
    kind = draw(st.sampled_from(["write", "write", "clear"]))
    return kind, first * P, count * P, draw(st.integers(0, 2**32))


_operations = st.lists(_operation(), max_size=12)


def _run(pm: PageMap, model: Model | None, ops: list[tuple[str, int, int, int]]) -> None:
    for kind, offset, length, seed in ops:
        if kind == "write":
            data = _data(seed, length) if seed % 5 else bytes(length)  # zeros sometimes
            pm.write(offset, data)
            if model:
                model.write(offset, data)
        else:
            pm.clear(offset, length)
            if model:
                model.clear(offset, length)


_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(_operations)
def test_map_matches_model(ops: list[tuple[str, int, int, int]]) -> None:
    pm, model = PageMap(_SIZE), Model(_SIZE)
    _run(pm, model, ops)
    assert_same(pm, model)
    assert_well_formed(pm.ranges(), pm.size)


@_settings
@given(_operations, _operations)
def test_frozen_copies_never_change(first: list[tuple[str, int, int, int]], then: list) -> None:
    pm, model = PageMap(_SIZE), Model(_SIZE)
    _run(pm, model, first)
    frozen = pm.frozen()
    digest = frozen.sha256()
    _run(pm, None, then)
    assert_same(frozen, model)
    assert frozen.sha256() == digest
    frozen.copy().write(0, _data(1, P))  # a writable copy of it changes nothing either
    assert_same(frozen, model)


@_settings
@given(_operations, _operations, st.booleans())
def test_diff_applied_to_older_reproduces_newer(
    first: list[tuple[str, int, int, int]], then: list[tuple[str, int, int, int]], shared: bool
) -> None:
    older = PageMap(_SIZE)
    _run(older, None, first)
    older = older.frozen()
    if shared:
        newer = older.copy()  # shares extents: the diff must look past identity where written
    else:
        newer = PageMap(_SIZE)  # shares nothing: the diff must compare content
        _run(newer, None, first)
    _run(newer, None, then)
    changed, cleared = diff(older, newer)
    assert_well_formed(changed, _SIZE)
    assert_well_formed(cleared, _SIZE)
    for start, end in cleared:
        assert newer.read(start, end - start + 1) == bytes(end - start + 1)
    rebuilt = apply_diff(older, newer)
    assert rebuilt.read(0, _SIZE) == newer.read(0, _SIZE)
    assert rebuilt.ranges() == newer.ranges()


@_settings
@given(_operations)
def test_diff_is_minimal_by_content(ops: list[tuple[str, int, int, int]]) -> None:
    # Every page reported changed really differs (content or populated), every cleared page was populated.
    older = PageMap(_SIZE)
    _run(older, None, [("write", 0, 64 * P, 11), ("write", EXTENT_SIZE, 64 * P, 12)])
    older = older.frozen()
    newer = older.copy()
    _run(newer, None, ops)
    changed, cleared = diff(older, newer)
    old_pages = {p for s, e in older.ranges() for p in range(s, e + 1, P)}
    new_pages = {p for s, e in newer.ranges() for p in range(s, e + 1, P)}
    for start, end in changed:
        for page in range(start, end + 1, P):
            assert page in new_pages
            assert page not in old_pages or older.read(page, P) != newer.read(page, P)
    for start, end in cleared:
        for page in range(start, end + 1, P):
            assert page in old_pages and page not in new_pages
