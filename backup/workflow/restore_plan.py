"""A restore as pure functions: where its plan lives, how long its write grant lasts, which windows its
verification reads, and the digest a full verification records.

A restore writes a restore point (a blob snapshot of a disk's backup blob, or a whole blob recorded before
the chain) into a new managed disk made for direct upload. Its writes are planned like an incremental
night's (:func:`backup.workflow.chain.batch_plan`): the point's populated ranges, segment by segment,
cut into Put Page From URL calls of at most 4 MiB and into bounded batches kept in storage
(:func:`restore_batch_name`, under :func:`restore_prefix`), never in orchestration history.

A **full** verification reads the restored disk (through a read grant) and the restore point in windows
of :data:`FULL_WINDOW_BYTES`, compares each window's SHA-256, and records one digest of the whole: the
*window chain* (:func:`chain_digest`): ``h_0`` is 32 zero bytes, and
``h_i = SHA-256(h_{i-1} || SHA-256(window_i))``, shown in hex. It is a function of the content and the
window size alone, however the windows are split among activities (each carries the chain on from the
last), so two verifications of one restore point give the same digest, and a later one tells whether
the point's content changed since.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable

from backup.azure.page_range import PAGE_SIZE, PageRange
from backup.errors import InvalidInputError

__all__ = [
    "FULL_WINDOW_BYTES",
    "GENESIS",
    "chain_digest",
    "full_windows",
    "is_digest",
    "restore_batch_name",
    "restore_prefix",
    "spans",
    "temporary_disk_name",
    "write_grant_seconds",
]

#: A full verification compares (and chains) windows of this size.
FULL_WINDOW_BYTES = 4 << 20
#: The window chain before any window: 32 zero bytes, in hex.
GENESIS = "00" * 32
#: Direct upload goes at the speed of the equivalent Standard HDD: 60 MiB/s up to 4 TiB (Azure's
#: documentation). A write grant is sized for half that, and an hour more, so it outlives a slow restore.
_PLANNED_BYTES_PER_SECOND = 30 << 20
_GRANT_SLACK_SECONDS = 3600
_MAX_GRANT_SECONDS = 7 * 24 * 3600
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_RESTORE_NAMESPACE = uuid.UUID("2b8f9d43-6c1e-4a57-9f0e-0d3e6a1c5b72")


def restore_prefix(restore_id: str) -> str:
    """Where one restore keeps its plan, in the backup container: ``restores/{restore id}/``.

    Apart from the backup blobs (``{subscription}/...``), so a night's cleanup of its own plan never
    touches a restore's, and a restore's cleanup never touches a backup.
    """
    if not restore_id or "/" in restore_id:
        raise InvalidInputError("restore id", f"{restore_id!r:.60} cannot name a restore's folder")
    return f"restores/{restore_id}/"


def restore_batch_name(restore_id: str, part: int, batch: int) -> str:
    """The blob holding batch ``batch`` of plan part ``part`` (one part per listing activity)."""
    return f"{restore_prefix(restore_id)}plan/{part:06d}-{batch:05d}.json"


def write_grant_seconds(disk_bytes: int) -> int:
    """How long a restore's write grant lasts: the disk at half of direct upload's speed, plus an hour."""
    if disk_bytes <= 0:
        raise InvalidInputError("disk bytes", "must be positive")
    seconds = _GRANT_SLACK_SECONDS + -(-disk_bytes // _PLANNED_BYTES_PER_SECOND)
    return min(seconds, _MAX_GRANT_SECONDS)


def temporary_disk_name(restore_id: str) -> str:
    """The name of a restore test's temporary disk: ``diskbackup-test-`` and 12 hex digits of the
    restore's id (a valid disk name, the same each time for the same restore)."""
    return "diskbackup-test-" + uuid.uuid5(_RESTORE_NAMESPACE, restore_id).hex[:12]


def spans(disk_bytes: int, span_bytes: int) -> list[PageRange]:
    """The disk cut into spans of ``span_bytes`` (a multiple of the window), each verified by one activity."""
    if disk_bytes <= 0 or disk_bytes % PAGE_SIZE:
        raise InvalidInputError("disk bytes", f"must be a positive multiple of {PAGE_SIZE}")
    if span_bytes < FULL_WINDOW_BYTES or span_bytes % FULL_WINDOW_BYTES:
        raise InvalidInputError("span bytes", f"must be a positive multiple of {FULL_WINDOW_BYTES}")
    return [
        PageRange(start, min(start + span_bytes, disk_bytes) - 1)
        for start in range(0, disk_bytes, span_bytes)
    ]


def full_windows(span: PageRange) -> list[PageRange]:
    """The windows of a span, in order: :data:`FULL_WINDOW_BYTES` each, the last one shorter if need be.

    A span starts on a window boundary (:func:`spans`), so the windows of all spans are the disk's.
    """
    if span.start % FULL_WINDOW_BYTES:
        raise InvalidInputError("span", f"{span.header()} does not start on a window boundary")
    return [
        PageRange(start, min(start + FULL_WINDOW_BYTES - 1, span.end))
        for start in range(span.start, span.end + 1, FULL_WINDOW_BYTES)
    ]


def chain_digest(previous: str, window_digests: Iterable[bytes]) -> str:
    """The window chain carried over ``window_digests`` (each a window's SHA-256), from ``previous`` (hex)."""
    if not isinstance(previous, str) or not _HEX_DIGEST.fullmatch(previous):
        raise InvalidInputError("chain", "must be 64 lowercase hex digits")
    state = bytes.fromhex(previous)
    for digest in window_digests:
        if len(digest) != 32:
            raise InvalidInputError("window digest", "must be a SHA-256 digest (32 bytes)")
        state = hashlib.sha256(state + digest).digest()
    return state.hex()


def is_digest(value: object) -> bool:
    """Whether ``value`` is a digest as recorded here: 64 lowercase hex digits."""
    return isinstance(value, str) and _HEX_DIGEST.fullmatch(value) is not None
