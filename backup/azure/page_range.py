"""Byte ranges of page blobs: the one place that does range math.

Page blobs are written in 512-byte pages. Azure names a range by its first and last byte, both included
(``bytes=0-511`` is the first page), and a single Put Page / Put Page From URL moves at most 4 MiB.
:class:`PageRange` is such a range, validated when built; :func:`split` cuts ranges into chunks a
single write may carry (each chunk starting at its range's start plus the chunks before it: Microsoft's
incremental-snapshot sample forgets that offset); :func:`merge` coalesces overlapping and adjacent
ranges; :func:`coalesce_writes` packs changed ranges into as few writes as it can while moving at most a
few percent more bytes than changed. Everything here is pure.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from backup.errors import InvalidInputError

__all__ = [
    "DEFAULT_MAX_GAP",
    "DEFAULT_MAX_OVERHEAD",
    "MAX_WRITE_BYTES",
    "PAGE_SIZE",
    "PageRange",
    "coalesce_writes",
    "covers",
    "merge",
    "split",
    "total_bytes",
]

#: Bytes in a page: every offset and length of a page blob is a multiple of it.
PAGE_SIZE = 512
#: The most a single Put Page or Put Page From URL may carry.
MAX_WRITE_BYTES = 4 * 1024 * 1024
#: The widest gap between two changed ranges that one write may bridge. One request more costs about
#: what moving 64 KiB does (a few milliseconds at a page blob's 60 MiB/s), so wider gaps are not worth it.
DEFAULT_MAX_GAP = 64 * 1024
#: Bridged gaps may add at most this share of the changed bytes to the bytes moved.
DEFAULT_MAX_OVERHEAD = 0.05


@dataclass(frozen=True, order=True)
class PageRange:
    """Bytes ``start`` to ``end`` of a page blob, ``end`` included; page-aligned at both ends.

    ``start`` is a multiple of 512 and ``end + 1`` is too, so the range holds whole pages. A range may
    be any size (Get Page Ranges answers with ranges of gigabytes); :meth:`write_header` is what checks
    the 4 MiB limit of a single write.
    """

    start: int
    end: int

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInputError(f"range {name}", f"must be an integer, got {value!r}")
        if self.start < 0:
            raise InvalidInputError("range start", f"must not be negative, got {self.start}")
        if self.start % PAGE_SIZE:
            raise InvalidInputError("range start", f"{self.start} is not a multiple of {PAGE_SIZE}")
        if self.end < self.start:
            raise InvalidInputError("range end", f"{self.end} is before start {self.start}")
        if (self.end + 1) % PAGE_SIZE:
            raise InvalidInputError("range end", f"{self.end} + 1 is not a multiple of {PAGE_SIZE}")

    @classmethod
    def at(cls, offset: int, length: int) -> PageRange:
        """The range of ``length`` bytes from ``offset`` (both page multiples, length above 0)."""
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise InvalidInputError("range length", f"must be a positive integer, got {length!r}")
        return cls(offset, offset + length - 1)

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.end - self.start + 1

    def header(self) -> str:
        """The range as an ``x-ms-range``/``Range`` header value: ``bytes=start-end``."""
        return f"bytes={self.start}-{self.end}"

    def write_header(self) -> str:
        """:meth:`header` for a single Put Page / Put Page From URL; raises above 4 MiB."""
        if self.length > MAX_WRITE_BYTES:
            raise InvalidInputError(
                "range",
                f"{self.header()} is {self.length} bytes; one write carries at most {MAX_WRITE_BYTES}",
            )
        return self.header()


def split(ranges: Iterable[PageRange], max_bytes: int = MAX_WRITE_BYTES) -> list[PageRange]:
    """Cut each range into consecutive chunks of at most ``max_bytes``, in order.

    The k-th chunk of a range starts at ``range.start + k * max_bytes``: the offset of its range plus
    the chunks before it. ``max_bytes`` is a page multiple between 512 and 4 MiB.
    """
    if (
        isinstance(max_bytes, bool)
        or not isinstance(max_bytes, int)
        or not PAGE_SIZE <= max_bytes <= MAX_WRITE_BYTES
        or max_bytes % PAGE_SIZE
    ):
        raise InvalidInputError(
            "max_bytes",
            f"must be a multiple of {PAGE_SIZE} from {PAGE_SIZE} to {MAX_WRITE_BYTES}, got {max_bytes!r}",
        )
    chunks: list[PageRange] = []
    for whole in ranges:
        for offset in range(whole.start, whole.end + 1, max_bytes):
            chunks.append(PageRange(offset, min(offset + max_bytes - 1, whole.end)))
    return chunks


def merge(ranges: Iterable[PageRange]) -> list[PageRange]:
    """The same pages as ``ranges``, sorted, with overlapping and touching ranges joined."""
    merged: list[PageRange] = []
    for current in sorted(ranges):
        if merged and current.start <= merged[-1].end + 1:
            if current.end > merged[-1].end:
                merged[-1] = PageRange(merged[-1].start, current.end)
        else:
            merged.append(current)
    return merged


def total_bytes(ranges: Iterable[PageRange]) -> int:
    """Bytes the ranges cover, each byte counted once however the ranges overlap."""
    return sum(r.length for r in merge(ranges))


def covers(ranges: Sequence[PageRange], wanted: PageRange) -> bool:
    """Whether ``wanted`` lies wholly inside one of ``ranges`` (sorted, merged: see :func:`merge`)."""
    index = bisect.bisect_right(ranges, PageRange(wanted.start, 2**63 - 1)) - 1
    return index >= 0 and ranges[index].start <= wanted.start and wanted.end <= ranges[index].end


def coalesce_writes(
    changed: Iterable[PageRange],
    *,
    populated: Sequence[PageRange] | None = None,
    max_bytes: int = MAX_WRITE_BYTES,
    max_gap: int = DEFAULT_MAX_GAP,
    max_overhead: float = DEFAULT_MAX_OVERHEAD,
) -> list[PageRange]:
    """The writes (each at most ``max_bytes``, in offset order) that carry every byte of ``changed``.

    Touching ranges share writes. A write also bridges the gap to the next changed range when all of
    these hold, and otherwise the next range starts a write of its own:

    - the gap is at most ``max_gap`` bytes;
    - the gap lies wholly inside ``populated`` (merged ranges the source holds). Bridged bytes are
      unchanged, so rewriting them from the source is harmless, but writing a *hole* would populate
      pages the source leaves empty. ``None`` (unknown) bridges nothing;
    - the bridged bytes so far stay within ``max_overhead`` of the changed bytes so far, so the bytes
      moved never exceed ``(1 + max_overhead)`` times the bytes changed.

    A bridged write is filled up to ``max_bytes`` and the rest of the next range starts a new write, so
    requests stay near the fewest that can carry the bytes.
    """
    if (
        isinstance(max_bytes, bool)
        or not isinstance(max_bytes, int)
        or not PAGE_SIZE <= max_bytes <= MAX_WRITE_BYTES
        or max_bytes % PAGE_SIZE
    ):
        raise InvalidInputError(
            "max_bytes",
            f"must be a multiple of {PAGE_SIZE} from {PAGE_SIZE} to {MAX_WRITE_BYTES}, got {max_bytes!r}",
        )
    if isinstance(max_gap, bool) or not isinstance(max_gap, int) or max_gap < 0 or max_gap % PAGE_SIZE:
        raise InvalidInputError("max_gap", f"must be a non-negative multiple of {PAGE_SIZE}, got {max_gap!r}")
    if not 0 <= max_overhead <= 1:
        raise InvalidInputError("max_overhead", f"must be between 0 and 1, got {max_overhead!r}")
    known = merge(populated) if populated is not None else None
    writes: list[PageRange] = []
    open_start: int | None = None  # the write being built: [open_start, open_end]
    open_end = 0
    changed_so_far = 0
    bridged = 0
    for current in merge(changed):
        changed_so_far += current.length
        start = current.start
        if open_start is not None:
            gap = current.start - open_end - 1
            room_end = open_start + max_bytes - 1
            bridge = (
                0 < gap <= max_gap
                and current.start <= room_end
                and known is not None
                and covers(known, PageRange(open_end + 1, current.start - 1))
                and bridged + gap <= max_overhead * changed_so_far
            )
            if bridge:
                bridged += gap
                if current.end <= room_end:
                    open_end = current.end  # still room: the write stays open for the next range
                    continue
                writes.append(PageRange(open_start, room_end))  # full: the rest starts a new write
                start = room_end + 1
            else:
                writes.append(PageRange(open_start, open_end))
            open_start = None
        while current.end - start + 1 > max_bytes:
            writes.append(PageRange(start, start + max_bytes - 1))
            start += max_bytes
        open_start, open_end = start, current.end
    if open_start is not None:
        writes.append(PageRange(open_start, open_end))
    return writes
