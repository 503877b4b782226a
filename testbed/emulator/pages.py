"""The content of an emulated managed disk or snapshot: sparse 512-byte pages with cheap frozen copies.

A :class:`PageMap` is ``size`` bytes of logical content in 512-byte pages. A page is *populated* once
written and until trimmed (cleared); an unpopulated page reads as zeros and is not reported by
:meth:`PageMap.ranges`, exactly as a page blob's Get Page Ranges leaves it out.

Layout, chosen so a snapshot of an 8 GiB disk costs microseconds and no bytes::

    address space:  | extent 0 (1 MiB) | extent 1 | extent 2 | ... |
    _extents:       {0: _Extent, 2: _Extent, ...}           (absent: nothing populated there)
    _Extent.runs:   ((offset, bytes), (offset, bytes), ...) sorted, non-overlapping, 512-aligned

Extents are immutable: a write or trim builds new extents for the ones it touches and puts them in the
table. :meth:`PageMap.frozen` copies only the table (a dict of at most 8,192 references for 8 GiB), so
the frozen map and the live one share every extent until the live one writes: copy-on-write at extent
granularity. :func:`diff` relies on that sharing: an extent both maps hold by identity cannot differ, so
only the extents written since are compared, run by run, and page by page only where bytes differ.

Memory is proportional to the populated bytes (runs hold only written pages), not to the disk size.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from backup.errors import InvalidInputError

__all__ = [
    "EXTENT_SIZE",
    "PAGE_SIZE",
    "PageMap",
    "churn",
    "diff",
    "fill_sparse",
]

#: The page size of page blobs and managed disks: every write and trim is aligned to it.
PAGE_SIZE = 512

#: The copy-on-write granularity: 1 MiB, 2,048 pages.
EXTENT_SIZE = 1 << 20

#: An inclusive byte range ``(start, end)``, as Get Page Ranges reports it.
Range = tuple[int, int]

_ZEROS = bytes(EXTENT_SIZE)


@dataclass(frozen=True, slots=True, eq=False)
class _Extent:
    """The populated runs of one extent: ``(offset within the extent, bytes)``, sorted, disjoint.

    Compared by identity on purpose (``eq=False``): identity is what :func:`diff` uses to skip extents
    two maps share.
    """

    runs: tuple[tuple[int, bytes], ...]

    def populated(self) -> int:
        return sum(len(data) for _, data in self.runs)


def _splice(runs: tuple[tuple[int, bytes], ...], start: int, end: int, data: bytes | None) -> _Extent | None:
    """``runs`` with ``[start, end)`` replaced by ``data`` (``None``: trimmed); ``None`` if none remain."""
    out: list[tuple[int, bytes]] = []
    for run_start, run_data in runs:
        run_end = run_start + len(run_data)
        if run_end <= start or run_start >= end:
            out.append((run_start, run_data))
            continue
        # The run overlaps [start, end): keep only what sticks out on either side.
        if run_start < start:
            out.append((run_start, run_data[: start - run_start]))
        if run_end > end:
            out.append((end, run_data[end - run_start :]))
    if data is not None:
        out.append((start, data))
    if not out:
        return None
    out.sort(key=lambda run: run[0])
    return _Extent(tuple(out))


def _check_aligned(field: str, value: int) -> None:
    if value % PAGE_SIZE:
        raise InvalidInputError(field, f"{value} is not a multiple of {PAGE_SIZE}")


class PageMap:
    """Sparse, 512-aligned content of a disk or snapshot; thread-safe. See the module docstring.

    A map made by :meth:`frozen` is read-only: writing to it raises, so a snapshot's content cannot
    change after it is taken. :meth:`copy` makes a writable point-in-time copy (a disk created from a
    snapshot).
    """

    def __init__(self, size: int) -> None:
        """An all-unpopulated map of ``size`` bytes (a positive multiple of 512)."""
        self._check_size(size)
        self._size = size
        self._extents: dict[int, _Extent] = {}
        self._populated = 0
        self._read_only = False
        self._sha256: str | None = None  # cached for read-only maps only
        self._lock = threading.RLock()

    @staticmethod
    def _check_size(size: int) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise InvalidInputError("size", f"must be a positive number of bytes, got {size!r}")
        _check_aligned("size", size)

    # -- properties ---------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """The logical size in bytes."""
        return self._size

    @property
    def read_only(self) -> bool:
        """True for a map made by :meth:`frozen`."""
        return self._read_only

    def populated_bytes(self) -> int:
        """How many bytes are populated (written and not trimmed)."""
        with self._lock:
            return self._populated

    # -- changes ------------------------------------------------------------------------------------

    def write(self, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset``; both offset and length must be 512-aligned and inside the map."""
        self._check_change("offset", offset, len(data))
        payload = bytes(data)
        with self._lock:
            self._check_writable()
            self._apply(offset, offset + len(payload), payload)

    def clear(self, offset: int, length: int) -> None:
        """Trim ``length`` bytes at ``offset``: the pages become unpopulated (they read as zeros)."""
        self._check_change("offset", offset, length)
        with self._lock:
            self._check_writable()
            self._apply(offset, offset + length, None)

    def resize(self, size: int) -> None:
        """Change the size; shrinking drops the content beyond the new size."""
        self._check_size(size)
        with self._lock:
            self._check_writable()
            if size < self._size:
                self._apply(size, self._size, None)
            self._size = size

    def _check_change(self, field: str, offset: int, length: int) -> None:
        _check_aligned(field, offset)
        _check_aligned("length", length)
        if length <= 0:
            raise InvalidInputError("length", "must be positive")
        if offset < 0 or offset + length > self._size:
            raise InvalidInputError(
                field, f"range {offset}-{offset + length - 1} is outside the map of {self._size} bytes"
            )

    def _check_writable(self) -> None:
        if self._read_only:
            raise InvalidInputError("PageMap", "a frozen map is read-only (snapshot content never changes)")

    def _apply(self, start: int, end: int, data: bytes | None) -> None:
        """Replace ``[start, end)`` with ``data`` (or trim it), extent by extent. Caller holds the lock."""
        position = start
        while position < end:
            index = position // EXTENT_SIZE
            base = index * EXTENT_SIZE
            piece_end = min(end, base + EXTENT_SIZE)
            old = self._extents.get(index)
            piece = None if data is None else data[position - start : piece_end - start]
            if old is None and piece is None:
                position = piece_end
                continue
            new = _splice(old.runs if old else (), position - base, piece_end - base, piece)
            self._populated += (new.populated() if new else 0) - (old.populated() if old else 0)
            if new is None:
                del self._extents[index]
            else:
                self._extents[index] = new
            position = piece_end

    # -- reading ------------------------------------------------------------------------------------

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (any alignment), zeros where unpopulated."""
        if offset < 0 or length < 0 or offset + length > self._size:
            raise InvalidInputError("range", f"{offset}+{length} is outside the map of {self._size} bytes")
        out = bytearray(length)
        end = offset + length
        with self._lock:
            for index in range(offset // EXTENT_SIZE, (end - 1) // EXTENT_SIZE + 1 if length else 0):
                extent = self._extents.get(index)
                if extent is None:
                    continue
                base = index * EXTENT_SIZE
                for run_start, run_data in extent.runs:
                    lo = max(offset, base + run_start)
                    hi = min(end, base + run_start + len(run_data))
                    if lo < hi:
                        out[lo - offset : hi - offset] = run_data[
                            lo - base - run_start : hi - base - run_start
                        ]
        return bytes(out)

    def ranges(self) -> list[Range]:
        """The populated ranges, merged and sorted, as inclusive ``(start, end)`` byte pairs."""
        with self._lock:
            extents = sorted(self._extents.items())
        merged: list[list[int]] = []
        for index, extent in extents:
            base = index * EXTENT_SIZE
            for run_start, run_data in extent.runs:
                start, end = base + run_start, base + run_start + len(run_data)
                if merged and merged[-1][1] == start:
                    merged[-1][1] = end
                else:
                    merged.append([start, end])
        return [(start, end - 1) for start, end in merged]

    def sha256(self) -> str:
        """Hex SHA-256 of the full logical content (``size`` bytes, holes as zeros)."""
        with self._lock:
            if self._sha256 is not None:
                return self._sha256
            extents = dict(self._extents)
            size = self._size
            read_only = self._read_only
        digest = hashlib.sha256()
        for index in range((size + EXTENT_SIZE - 1) // EXTENT_SIZE):
            span = min(EXTENT_SIZE, size - index * EXTENT_SIZE)
            extent = extents.get(index)
            if extent is None:
                digest.update(memoryview(_ZEROS)[:span])
                continue
            position = 0
            for run_start, run_data in extent.runs:
                digest.update(memoryview(_ZEROS)[: run_start - position])
                digest.update(run_data)
                position = run_start + len(run_data)
            digest.update(memoryview(_ZEROS)[: span - position])
        value = digest.hexdigest()
        if read_only:
            self._sha256 = value
        return value

    # -- copies -------------------------------------------------------------------------------------

    def frozen(self) -> PageMap:
        """A read-only point-in-time copy; it shares extents with this map (no bytes are copied)."""
        if self._read_only:
            return self
        return self._clone(read_only=True)

    def copy(self) -> PageMap:
        """A writable point-in-time copy (shares extents until either side writes)."""
        return self._clone(read_only=False)

    def _clone(self, *, read_only: bool) -> PageMap:
        clone = PageMap.__new__(PageMap)
        with self._lock:
            clone._size = self._size
            clone._extents = dict(self._extents)
            clone._populated = self._populated
        clone._read_only = read_only
        clone._sha256 = None
        clone._lock = threading.RLock()
        return clone

    def __repr__(self) -> str:
        kind = "frozen " if self._read_only else ""
        return f"<{kind}PageMap size={self._size} populated={self._populated}>"


# -- diffs -------------------------------------------------------------------------------------------


def diff(older: PageMap, newer: PageMap) -> tuple[list[Range], list[Range]]:
    """What changed from ``older`` to ``newer``: ``(changed, cleared)`` inclusive byte ranges.

    ``changed`` are pages populated in ``newer`` that were unpopulated in ``older`` or hold other bytes;
    ``cleared`` are pages populated in ``older`` and unpopulated in ``newer`` (within ``newer``'s size).
    Applying them to a copy of ``older`` resized to ``newer.size`` (write ``changed`` from ``newer``,
    trim ``cleared``) reproduces ``newer`` exactly: content and populated ranges. This compares content,
    where Azure tracks writes: Azure may also report pages rewritten with identical bytes, never fewer.
    """
    with older._lock:
        old_extents = dict(older._extents)
    with newer._lock:
        new_extents = dict(newer._extents)
        limit = newer._size
    changed: list[Range] = []
    cleared: list[Range] = []
    for index in sorted(old_extents.keys() | new_extents.keys()):
        old, new = old_extents.get(index), new_extents.get(index)
        if old is new:
            continue  # shared by both maps: written by neither since the older was frozen
        base = index * EXTENT_SIZE
        for start, end, kind in _diff_extent(old.runs if old else (), new.runs if new else ()):
            start, end = base + start, min(base + end, limit)
            if start >= end:
                continue
            _append_merged(changed if kind == "changed" else cleared, start, end)
    return [(s, e - 1) for s, e in changed], [(s, e - 1) for s, e in cleared]


def _append_merged(ranges: list[Range], start: int, end: int) -> None:
    """Append half-open ``[start, end)``, merging with the last range if they touch."""
    if ranges and ranges[-1][1] == start:
        ranges[-1] = (ranges[-1][0], end)
    else:
        ranges.append((start, end))


def _diff_extent(
    old: tuple[tuple[int, bytes], ...], new: tuple[tuple[int, bytes], ...]
) -> Iterator[tuple[int, int, str]]:
    """Half-open ``(start, end, "changed"|"cleared")`` pieces of one extent, in order."""
    # Elementary segments between every run boundary of either side: inside one, each side is either
    # one run's bytes or a hole.
    cuts = sorted({0, EXTENT_SIZE} | {s for s, _ in old} | {s + len(d) for s, d in old}
                  | {s for s, _ in new} | {s + len(d) for s, d in new})  # fmt: skip
    old_starts = [s for s, _ in old]
    new_starts = [s for s, _ in new]
    for lo, hi in itertools.pairwise(cuts):
        before = _bytes_at(old, old_starts, lo, hi)
        after = _bytes_at(new, new_starts, lo, hi)
        if after is None:
            if before is not None:
                yield lo, hi, "cleared"
        elif before is None:
            yield lo, hi, "changed"
        elif before != after:
            # Page by page only here, where both sides hold bytes and they differ somewhere.
            run_start: int | None = None
            for page in range(0, hi - lo, PAGE_SIZE):
                differs = before[page : page + PAGE_SIZE] != after[page : page + PAGE_SIZE]
                if differs and run_start is None:
                    run_start = page
                elif not differs and run_start is not None:
                    yield lo + run_start, lo + page, "changed"
                    run_start = None
            if run_start is not None:
                yield lo + run_start, hi, "changed"


def _bytes_at(runs: tuple[tuple[int, bytes], ...], starts: list[int], lo: int, hi: int) -> memoryview | None:
    """The bytes of ``[lo, hi)`` if a run covers it, else ``None`` (segments never straddle a boundary)."""
    position = bisect.bisect_right(starts, lo) - 1
    if position < 0:
        return None
    run_start, data = runs[position]
    if lo >= run_start + len(data):
        return None
    return memoryview(data)[lo - run_start : hi - run_start]


# -- synthetic content ---------------------------------------------------------------------------------


def fill_sparse(
    pm: PageMap,
    *,
    seed: int,
    fraction: float,
    mean_run_bytes: int = 256 * 1024,
) -> None:
    """Write deterministic random content over about ``fraction`` of ``pm`` in clustered runs.

    Real disks are populated in clusters (file system metadata, files), not page by page, so content
    goes in runs of 4 KiB up to twice ``mean_run_bytes``. The same ``seed``, size and arguments always
    give the same content. Populated bytes end within one run of ``fraction * size``.
    """
    _check_fraction("fraction", fraction)
    if mean_run_bytes < PAGE_SIZE or mean_run_bytes % PAGE_SIZE:
        raise InvalidInputError("mean_run_bytes", f"must be a positive multiple of {PAGE_SIZE}")
    rng = random.Random(seed)  # noqa: S311 - synthetic test content, reproducible by seed
    target = int(pm.size * fraction) // PAGE_SIZE * PAGE_SIZE
    pages = pm.size // PAGE_SIZE
    while pm.populated_bytes() < target:
        run_pages = _run_pages(rng, mean_run_bytes, pages)
        run_pages = min(run_pages, (target - pm.populated_bytes()) // PAGE_SIZE) or 1
        first = rng.randrange(pages - run_pages + 1)
        pm.write(first * PAGE_SIZE, rng.randbytes(run_pages * PAGE_SIZE))


def churn(
    pm: PageMap,
    *,
    seed: int,
    write_fraction: float,
    trim_fraction: float,
    mean_run_bytes: int = 64 * 1024,
) -> None:
    """Apply "a day of churn": rewrite about ``write_fraction`` of the size and trim ``trim_fraction``.

    Most writes (three in four) land on populated data, as files being modified; the rest land anywhere,
    as new files. Trims start inside populated data, as deleted files. Deterministic for a given seed
    and starting content.
    """
    _check_fraction("write_fraction", write_fraction)
    _check_fraction("trim_fraction", trim_fraction)
    if mean_run_bytes < PAGE_SIZE or mean_run_bytes % PAGE_SIZE:
        raise InvalidInputError("mean_run_bytes", f"must be a positive multiple of {PAGE_SIZE}")
    rng = random.Random(seed)  # noqa: S311 - synthetic test content, reproducible by seed
    pages = pm.size // PAGE_SIZE
    for budget, trim in ((int(pm.size * write_fraction), False), (int(pm.size * trim_fraction), True)):
        # Where data lies at the start of each phase; not refreshed per run, which would cost a scan each.
        populated = pm.ranges()
        done = 0
        while done < budget:
            run_pages = min(_run_pages(rng, mean_run_bytes, pages), max(1, (budget - done) // PAGE_SIZE))
            prefer_populated = trim or rng.random() < 0.75
            first = _churn_start(populated, rng, pages, run_pages, prefer_populated=prefer_populated)
            if trim:
                pm.clear(first * PAGE_SIZE, run_pages * PAGE_SIZE)
            else:
                pm.write(first * PAGE_SIZE, rng.randbytes(run_pages * PAGE_SIZE))
            done += run_pages * PAGE_SIZE


def _check_fraction(field: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise InvalidInputError(field, f"must be between 0 and 1, got {value!r}")


def _run_pages(rng: random.Random, mean_run_bytes: int, pages: int) -> int:
    """A run length in pages: uniform between 8 pages (4 KiB) and twice the mean, at most the map."""
    low = 8
    high = max(low, 2 * mean_run_bytes // PAGE_SIZE)
    return min(rng.randint(low, high), pages)


def _churn_start(
    ranges: list[Range], rng: random.Random, pages: int, run_pages: int, *, prefer_populated: bool
) -> int:
    """First page of a churn run: inside one of ``ranges`` if asked and any exist, else anywhere."""
    if prefer_populated and ranges:
        start, end = ranges[rng.randrange(len(ranges))]
        page = rng.randrange(start // PAGE_SIZE, end // PAGE_SIZE + 1)
        return min(page, pages - run_pages)
    return rng.randrange(pages - run_pages + 1)
