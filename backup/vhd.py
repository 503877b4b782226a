"""The 512-byte footer of a fixed VHD: what a managed disk's blob ends with.

The blob behind a disk or snapshot SAS is a fixed-format VHD: the disk's bytes followed by one 512-byte
footer, so its length is the disk size + 512 (a 32 GiB disk's blob is 34,359,738,880 bytes; Azure's
upload errors say "upload size in bytes - 512 bytes for the VHD footer must be a multiple of MiB").
Creating a disk by Import checks the footer ("Disk is expected to have cookie value 'conectix'").

Footer layout (Microsoft "Virtual Hard Disk Image Format Specification", big-endian)::

    0 cookie "conectix" | 8 features 2 | 12 version 0x00010000 | 16 data offset all ones (fixed)
    24 timestamp (s since 2000-01-01) | 28 creator app | 32 creator version | 36 creator OS
    40 original size | 48 current size | 56 geometry (cylinders u16, heads u8, sectors u8)
    60 disk type 2 (fixed) | 64 checksum (ones' complement of the byte sum) | 68 unique id (16)
    84 saved state | 85 reserved (427 zero bytes)
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

__all__ = ["FOOTER_SIZE", "VhdFooter", "build_footer", "fixed_disk_problem", "parse_footer"]

FOOTER_SIZE = 512
_COOKIE = b"conectix"
_FIXED = 2
_LAYOUT = struct.Struct(">8sIIQI4sI4sQQHBBII16sB427s")


@dataclass(frozen=True)
class VhdFooter:
    """The fields of a footer that matter to a disk: its size and type, and whether it is intact."""

    cookie: bytes
    disk_type: int
    current_size: int
    checksum_ok: bool


def _geometry(size: int) -> tuple[int, int, int]:
    """Cylinders, heads, sectors per track for ``size`` bytes (the VHD specification's algorithm)."""
    total = min(size // 512, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        sectors, heads = 255, 16
        cylinder_heads = total // sectors
    else:
        sectors = 17
        cylinder_heads = total // sectors
        heads = max(4, (cylinder_heads + 1023) // 1024)
        if cylinder_heads >= heads * 1024 or heads > 16:
            sectors, heads = 31, 16
            cylinder_heads = total // sectors
        if cylinder_heads >= heads * 1024:
            sectors, heads = 63, 16
            cylinder_heads = total // sectors
    return min(cylinder_heads // heads, 65535), heads, sectors


def _checksum(footer: bytes) -> int:
    # The checksum field (bytes 64-67) counts as zero.
    return ~(sum(footer[:64]) + sum(footer[68:])) & 0xFFFFFFFF


def build_footer(size: int, unique_id: uuid.UUID) -> bytes:
    """The footer of a fixed VHD of ``size`` bytes; the same arguments always give the same bytes."""
    cylinders, heads, sectors = _geometry(size)
    fields = (
        _COOKIE, 2, 0x00010000, 0xFFFFFFFFFFFFFFFF, 0, b"dbkp", 0x000A0000, b"Wi2k",
        size, size, cylinders, heads, sectors, _FIXED, 0, unique_id.bytes, 0, bytes(427),
    )  # fmt: skip
    unsigned = _LAYOUT.pack(*fields)
    return unsigned[:64] + struct.pack(">I", _checksum(unsigned)) + unsigned[68:]


def parse_footer(footer: bytes) -> VhdFooter:
    """The fields of a 512-byte footer (no judgement: see :attr:`VhdFooter.checksum_ok` and the others)."""
    if len(footer) != FOOTER_SIZE:
        raise ValueError(f"a VHD footer is {FOOTER_SIZE} bytes, got {len(footer)}")
    fields = _LAYOUT.unpack(footer)
    stored = struct.unpack(">I", footer[64:68])[0]
    return VhdFooter(
        cookie=fields[0],
        disk_type=fields[13],
        current_size=fields[9],
        checksum_ok=stored == _checksum(footer),
    )


def fixed_disk_problem(footer: bytes, disk_bytes: int) -> str | None:
    """What is wrong with ``footer`` as the footer of a fixed disk of ``disk_bytes``, or ``None``."""
    parsed = parse_footer(footer)
    if parsed.cookie != _COOKIE or not parsed.checksum_ok:
        return "the last 512 bytes are not an intact VHD footer"
    if parsed.disk_type != _FIXED or parsed.current_size != disk_bytes:
        return (
            f"the VHD footer describes a type-{parsed.disk_type} disk of {parsed.current_size} bytes, "
            f"expected a fixed disk of {disk_bytes}"
        )
    return None
