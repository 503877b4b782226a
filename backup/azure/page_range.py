"""Byte ranges of page blobs: the one place that does range math.

Page blobs are written in 512-byte pages. Azure names a range by its first and last byte, both included
(``bytes=0-511`` is the first page), and a single Put Page / Put Page From URL moves at most 4 MiB.
:class:`PageRange` is such a range, validated when built; :func:`split` cuts ranges into chunks a
single write may carry (each chunk starting at its range's start plus the chunks before it: Microsoft's
incremental-snapshot sample forgets that offset); :func:`merge` coalesces overlapping and adjacent
ranges. Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from backup.errors import InvalidInputError

__all__ = ["MAX_WRITE_BYTES", "PAGE_SIZE", "PageRange", "merge", "split", "total_bytes"]

#: Bytes in a page: every offset and length of a page blob is a multiple of it.
PAGE_SIZE = 512
#: The most a single Put Page or Put Page From URL may carry.
MAX_WRITE_BYTES = 4 * 1024 * 1024


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
