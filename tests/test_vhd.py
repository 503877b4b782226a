"""The fixed-VHD footer that managed-disk blobs end with."""

from __future__ import annotations

import struct
import uuid

import pytest

from backup import vhd

ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.mark.parametrize(
    ("size", "geometry"),
    [
        (1 << 30, (2080, 16, 63)),  # 1 GiB: what qemu-img and Hyper-V write
        (32 << 20, (963, 4, 17)),
        (32 << 40, (65535, 16, 255)),  # past the geometry's reach: capped
    ],
)
def test_footer_fields(size: int, geometry: tuple[int, int, int]) -> None:
    footer = vhd.build_footer(size, ID)
    assert len(footer) == vhd.FOOTER_SIZE
    assert footer[:8] == b"conectix"
    assert struct.unpack(">IIQ", footer[8:24]) == (2, 0x00010000, 0xFFFFFFFFFFFFFFFF)
    assert struct.unpack(">QQ", footer[40:56]) == (size, size)
    assert struct.unpack(">HBB", footer[56:60]) == geometry
    assert struct.unpack(">I", footer[60:64]) == (2,)
    assert footer[68:84] == ID.bytes
    parsed = vhd.parse_footer(footer)
    assert parsed == vhd.VhdFooter(cookie=b"conectix", disk_type=2, current_size=size, checksum_ok=True)


def test_footer_is_deterministic_and_checksummed() -> None:
    assert vhd.build_footer(1 << 30, ID) == vhd.build_footer(1 << 30, ID)
    damaged = bytearray(vhd.build_footer(1 << 30, ID))
    damaged[48] ^= 1
    assert not vhd.parse_footer(bytes(damaged)).checksum_ok
    assert vhd.parse_footer(bytes(512)).cookie == bytes(8)
    with pytest.raises(ValueError, match="512"):
        vhd.parse_footer(b"short")
