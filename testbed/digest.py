"""Checking a backup byte for byte: the SHA-256 of a page blob's whole logical content.

A page blob (and a managed disk) is sparse: pages never written read as zeros. The digest here covers
every byte of the blob's size, holes included, but reads only the populated ranges (Get Page Ranges,
then ranged GETs of at most 4 MiB); holes are hashed as zeros without being downloaded. Two contents are
equal byte for byte exactly when their digests are, so a backup can be compared with its disk (whose
digest the compute emulator's control surface reports the same way) without moving either.
"""

from __future__ import annotations

import hashlib

from backup.azure.blob import BlobAddress, BlobClient
from backup.azure.page_range import PageRange, merge, split
from backup.errors import InvalidInputError

_ZEROS = bytes(1 << 20)


def blob_sha256(blob: BlobClient, address: BlobAddress, length: int | None = None) -> tuple[str, int]:
    """``(sha256 hex, blob size)`` of the blob's first ``length`` bytes (default: all), holes as zeros.

    A backup of a managed disk is a fixed VHD (the disk's bytes, then a 512-byte footer): pass the disk's
    size as ``length`` to compare it with the disk.
    """
    listing = blob.get_page_ranges(address)
    size = listing.blob_size
    end = size if length is None else length
    if not 0 <= end <= size:
        raise InvalidInputError("length", f"{end} is beyond the blob's {size} bytes")
    digest = hashlib.sha256()
    position = 0
    for chunk in split(merge(listing.page_ranges)):
        if chunk.start >= end:
            break
        if chunk.end >= end:
            chunk = PageRange(chunk.start, end - 1)
        _zeros(digest, chunk.start - position)
        digest.update(blob.read_range(address, chunk))
        position = chunk.end + 1
    _zeros(digest, end - position)
    return digest.hexdigest(), size


def _zeros(digest: hashlib._Hash, count: int) -> None:
    while count > 0:
        step = min(count, len(_ZEROS))
        digest.update(_ZEROS[:step])
        count -= step
