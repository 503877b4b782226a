"""The incremental chain as pure functions: its names, the night's plan, and the full-or-incremental choice.

Every disk has **one backup page blob** (:func:`chain_blob_name`, stable for the disk's resource ID) and
every good night leaves **a restore point: a blob snapshot of it**, taken once the night's data is in
and checked. The **diff base** is the managed snapshot the newest good restore point came from; it stays
(tagged :data:`TAG_BASE`) until the next good point replaces it.

A night is *full* (Copy Blob of the new snapshot over the backup blob) when the chain cannot serve, and
*incremental* otherwise: Get Page Ranges between the base's SAS and the new snapshot's lists what changed,
segment by segment (:func:`segments`) and page by page; the changed ranges become writes
(:func:`backup.azure.page_range.coalesce_writes`) and, with the trimmed ranges, bounded batches
(:func:`batch_plan`) kept in storage beside the backup blob (:func:`plan_batch_name`), never in
orchestration history; each batch is applied by one activity. :func:`choose_kind` says which kind a
night is, and why a full one is; :func:`sample_windows` which bytes verification compares.

One writer per disk: a lease on the backup blob, whose id (:func:`writer_lease_id`) is fixed by run and
disk so that a repeated activity holds the same lease.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from backup.azure.page_range import MAX_WRITE_BYTES, PAGE_SIZE, PageRange, merge
from backup.errors import InvalidInputError

__all__ = [
    "SAMPLE_WINDOW_BYTES",
    "TAG_BASE",
    "TAG_KEEP",
    "Batch",
    "ChainFacts",
    "batch_plan",
    "chain_blob_name",
    "choose_kind",
    "plan_batch_name",
    "plan_prefix",
    "sample_windows",
    "segments",
    "writer_lease_id",
]

#: The tag that marks a managed snapshot as its disk's diff base (value ``true``).
TAG_BASE = "diskbackupBase"
#: The tag that marks a snapshot a person asked to keep (``keepSnapshot``): never deleted by rotation.
TAG_KEEP = "diskbackupKeep"
#: Verification compares content in windows of this size (at most).
SAMPLE_WINDOW_BYTES = 1 << 20

_LEASE_NAMESPACE = uuid.UUID("6f1d7f2e-8d0b-4a4e-9c53-3b1f0d2c9a71")


# -- names -----------------------------------------------------------------------------------------------


def chain_blob_name(subscription_id: str, resource_group: str, disk_name: str) -> str:
    """The disk's one backup blob: ``{subscription}/{resource group}/{disk}/chain.vhd``, lower-cased.

    ARM names are case-insensitive, so one disk always maps to one blob; it lists beside the per-run
    blobs of the whole-blob backups recorded before the chain.
    """
    for name, value in (
        ("subscription", subscription_id),
        ("resource group", resource_group),
        ("disk", disk_name),
    ):
        if not value or "/" in value:
            raise InvalidInputError(name, f"{value!r} cannot name a backup blob")
    return f"{subscription_id}/{resource_group}/{disk_name}/chain.vhd".lower()


def plan_prefix(blob_name: str, run_id: str) -> str:
    """Where a night's plan lives: beside the backup blob, by run (every plan: ``{blob}.plan/``)."""
    return f"{blob_name}.plan/{run_id}/"


def plan_batch_name(blob_name: str, run_id: str, part: int, batch: int) -> str:
    """The blob holding batch ``batch`` of plan part ``part`` (one part per listing activity)."""
    return f"{plan_prefix(blob_name, run_id)}{part:06d}-{batch:05d}.json"


def writer_lease_id(run_id: str, disk_id: str) -> str:
    """The lease id run ``run_id`` holds the backup blob of ``disk_id`` under: a GUID, the same each time."""
    return str(uuid.uuid5(_LEASE_NAMESPACE, f"{run_id}\n{disk_id.lower()}"))


# -- the night's plan ---------------------------------------------------------------------------------------


def segments(disk_bytes: int, segment_bytes: int) -> list[PageRange]:
    """The disk's bytes cut into consecutive segments of ``segment_bytes`` (the last may be shorter).

    A fragmented 4 TiB disk has millions of changed ranges: no single listing may hold them all, so the
    diff is asked for segment by segment (``x-ms-range``), each one paged by marker.
    """
    if disk_bytes <= 0 or disk_bytes % PAGE_SIZE:
        raise InvalidInputError("disk bytes", f"must be a positive multiple of {PAGE_SIZE}, got {disk_bytes}")
    if segment_bytes <= 0 or segment_bytes % PAGE_SIZE:
        raise InvalidInputError("segment bytes", f"must be a positive multiple of {PAGE_SIZE}")
    return [
        PageRange(start, min(start + segment_bytes, disk_bytes) - 1)
        for start in range(0, disk_bytes, segment_bytes)
    ]


@dataclass(frozen=True)
class Batch:
    """One apply activity's work: Put Page From URL of ``writes`` (each at most 4 MiB), Clear ``clears``."""

    writes: tuple[PageRange, ...] = ()
    clears: tuple[PageRange, ...] = ()

    @property
    def bytes(self) -> int:
        """Bytes the writes move."""
        return sum(w.length for w in self.writes)

    @property
    def requests(self) -> int:
        """Write and clear requests."""
        return len(self.writes) + len(self.clears)

    def to_json(self) -> dict[str, Any]:
        """The plan document stored for this batch."""
        return {
            "writes": [[w.start, w.end] for w in self.writes],
            "clears": [[c.start, c.end] for c in self.clears],
        }

    @classmethod
    def from_json(cls, data: Any) -> Batch:
        """Read a stored batch back; every range is checked (storage is outside the orchestration)."""
        if not isinstance(data, dict):
            raise InvalidInputError("plan batch", "must be a JSON object")

        def ranges(key: str) -> tuple[PageRange, ...]:
            items = data.get(key, [])
            if not isinstance(items, list):
                raise InvalidInputError(f"plan batch.{key}", "must be a list of [start, end] pairs")
            out = []
            for item in items:
                if not (isinstance(item, list) and len(item) == 2):
                    raise InvalidInputError(f"plan batch.{key}", f"{item!r:.40} is not a [start, end] pair")
                out.append(PageRange(item[0], item[1]))
            return tuple(out)

        batch = cls(ranges("writes"), ranges("clears"))
        if any(w.length > MAX_WRITE_BYTES for w in batch.writes):
            raise InvalidInputError("plan batch.writes", "a write is larger than 4 MiB")
        return batch


def batch_plan(
    writes: Iterable[PageRange], clears: Iterable[PageRange], *, max_bytes: int, max_requests: int
) -> list[Batch]:
    """Writes and clears, in offset order, cut into batches of at most ``max_bytes`` moved and
    ``max_requests`` requests each, so no apply activity comes near the Functions timeout."""
    if max_bytes < MAX_WRITE_BYTES:
        raise InvalidInputError("max_bytes", f"must be at least one write ({MAX_WRITE_BYTES} bytes)")
    if max_requests < 1:
        raise InvalidInputError("max_requests", "must be at least 1")
    operations = sorted([(w, False) for w in writes] + [(c, True) for c in clears], key=lambda op: op[0])
    batches: list[Batch] = []
    current_writes: list[PageRange] = []
    current_clears: list[PageRange] = []
    moved = 0
    for page_range, is_clear in operations:
        adds = 0 if is_clear else page_range.length
        if current_writes or current_clears:
            full = len(current_writes) + len(current_clears) >= max_requests or moved + adds > max_bytes
            if full:
                batches.append(Batch(tuple(current_writes), tuple(current_clears)))
                current_writes, current_clears, moved = [], [], 0
        (current_clears if is_clear else current_writes).append(page_range)
        moved += adds
    if current_writes or current_clears:
        batches.append(Batch(tuple(current_writes), tuple(current_clears)))
    return batches


def sample_windows(
    seed: str,
    disk_bytes: int,
    changed: Sequence[PageRange],
    budget_bytes: int,
    window_bytes: int = SAMPLE_WINDOW_BYTES,
) -> list[PageRange]:
    """The windows verification compares by SHA-256: the same for the same ``seed`` (the run and disk).

    Changed ranges first, picked in a seeded order, each cut to one window, for up to half of
    ``budget_bytes``; then seeded random slots of the disk (window-aligned, each at most once) until the
    budget is spent or the disk is covered. Windows are page-aligned, inside the disk, sorted; a random
    slot may overlap a changed window. A budget of 0 samples nothing.
    """
    if budget_bytes < 0:
        raise InvalidInputError("budget bytes", "must not be negative")
    if window_bytes < PAGE_SIZE or window_bytes % PAGE_SIZE:
        raise InvalidInputError("window bytes", f"must be a positive multiple of {PAGE_SIZE}")
    rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))  # noqa: S311
    chosen: list[PageRange] = []
    spent = 0
    inside = [PageRange(r.start, min(r.end, disk_bytes - 1)) for r in merge(changed) if r.start < disk_bytes]
    rng.shuffle(inside)
    for whole in inside:  # merged ranges do not overlap, so neither do windows inside them
        length = min(whole.length, window_bytes, budget_bytes // 2 - spent) // PAGE_SIZE * PAGE_SIZE
        if length < PAGE_SIZE:
            break
        offset = whole.start + rng.randrange((whole.length - length) // PAGE_SIZE + 1) * PAGE_SIZE
        chosen.append(PageRange.at(offset, length))
        spent += length
    slots = -(-disk_bytes // window_bytes)
    seen: set[int] = set()
    attempts = 4 * (budget_bytes // window_bytes) + 64  # enough to find free slots; bounded regardless
    while attempts > 0 and len(seen) < slots and budget_bytes - spent >= PAGE_SIZE:
        attempts -= 1
        slot = rng.randrange(slots)
        if slot in seen:
            continue
        seen.add(slot)
        start = slot * window_bytes
        length = min(disk_bytes - start, window_bytes, (budget_bytes - spent) // PAGE_SIZE * PAGE_SIZE)
        chosen.append(PageRange.at(start, length))
        spent += length
    return sorted(chosen)


# -- full or incremental ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LastPoint:
    """The disk's newest good restore point, as the catalog has it."""

    run_id: str
    blob_url: str
    blob_snapshot: str | None  # None: a whole-blob point from before the chain
    snapshot_id: str | None
    size_bytes: int
    blob_etag: str | None = None  # the backup blob's ETag just after this point was taken


@dataclass(frozen=True)
class SnapshotFacts:
    """A managed snapshot as ARM shows it (``exists`` False: gone)."""

    exists: bool
    incremental: bool = False
    family_id: str | None = None
    size_bytes: int | None = None


@dataclass(frozen=True)
class BlobFacts:
    """The backup blob: whether it exists, its size, its newest blob snapshot, and whether it was
    written since that snapshot (``None``: not asked)."""

    exists: bool
    size: int = 0
    newest_snapshot: str | None = None
    changed_since_newest: bool | None = None


@dataclass(frozen=True)
class ChainFacts:
    """Everything :func:`choose_kind` weighs; the ``inspect_chain`` activity gathers it."""

    disk_bytes: int
    expected_blob_url: str
    force_full: bool = False
    catalog_problem: str | None = None
    last_point: LastPoint | None = None
    base: SnapshotFacts | None = None
    new_snapshot: SnapshotFacts | None = None
    blob: BlobFacts | None = None
    blob_created: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def choose_kind(facts: ChainFacts) -> tuple[str, str | None]:
    """``("incremental", None)`` when the chain can serve tonight, else ``("full", why)``.

    The checks, in order: a full copy asked for; the catalog unreadable; no good restore point yet; the
    last one a whole blob from before the chain, or in another blob; no base snapshot recorded, or it is
    gone, not incremental, or of another snapshot family (the disk was re-created); the disk's size
    changed (the VHD footer moves, and Azure refuses diffs across a 4 TiB boundary); the backup blob
    missing, of the wrong size, its newest snapshot not the last restore point, or written since.
    """
    point = facts.last_point
    if facts.force_full:
        return "full", "a full copy was asked for (options.kind 'full')"
    if facts.catalog_problem:
        return "full", facts.catalog_problem
    if point is None:
        return "full", "no earlier restore point of this disk"
    if point.blob_snapshot is None:
        return "full", "the last restore point is a whole-blob backup from before the chain"
    if point.blob_url != facts.expected_blob_url:
        return "full", f"the last restore point is in another blob ({point.blob_url})"
    if point.snapshot_id is None:
        return "full", "the last restore point names no managed snapshot to diff against"
    base = facts.base
    if base is None or not base.exists:
        return "full", f"the base snapshot {point.snapshot_id.rsplit('/', 1)[-1]} is gone"
    if not base.incremental:
        return "full", "the base snapshot is not incremental"
    new = facts.new_snapshot
    if new is None or not new.exists:
        return "full", "tonight's snapshot cannot be read"
    if base.family_id is None or base.family_id != new.family_id:
        return "full", "the base snapshot is of another snapshot family (was the disk re-created?)"
    if base.size_bytes is None or new.size_bytes is None:
        return "full", "a snapshot does not report its size"
    sizes = {facts.disk_bytes, point.size_bytes, base.size_bytes, new.size_bytes}
    if len(sizes) != 1:
        old = base.size_bytes if base.size_bytes != facts.disk_bytes else point.size_bytes
        return "full", f"the disk's size changed ({old} to {facts.disk_bytes} bytes)"
    blob = facts.blob
    if blob is None or not blob.exists or facts.blob_created:
        return "full", "the backup blob was missing"
    if blob.size != facts.disk_bytes + 512:
        return "full", f"the backup blob is {blob.size} bytes, not the disk's {facts.disk_bytes} + 512"
    if blob.newest_snapshot != point.blob_snapshot:
        return "full", (
            f"the backup blob's newest snapshot ({blob.newest_snapshot or 'none'}) is not the last restore "
            f"point ({point.blob_snapshot})"
        )
    if blob.changed_since_newest is not False:
        return "full", "the backup blob was written after its last restore point"
    return "incremental", None
