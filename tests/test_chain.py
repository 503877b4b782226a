"""The chain's pure decisions (backup/workflow/chain.py): names, segments, batches, sample windows, and
which kind a night is. Tables of cases; the I/O around them runs against the proving ground elsewhere."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backup.azure.page_range import MAX_WRITE_BYTES, PAGE_SIZE, PageRange
from backup.errors import InvalidInputError
from backup.workflow.chain import (
    Batch,
    BlobFacts,
    ChainFacts,
    LastPoint,
    SnapshotFacts,
    batch_plan,
    chain_blob_name,
    choose_kind,
    plan_batch_name,
    sample_windows,
    segments,
    writer_lease_id,
)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
SUB = "00000000-0000-0000-0000-0000000000AA"
DISK = f"/subscriptions/{SUB}/resourceGroups/RG/providers/Microsoft.Compute/disks/Data1"


def _r(start: int, length: int) -> PageRange:
    return PageRange.at(start, length)


# -- names ----------------------------------------------------------------------------------------------


def test_names_are_stable_per_disk_and_run() -> None:
    assert chain_blob_name(SUB, "RG", "Data1") == f"{SUB.lower()}/rg/data1/chain.vhd"
    assert chain_blob_name(SUB, "rg", "data1") == chain_blob_name(SUB, "RG", "DATA1")
    name = chain_blob_name(SUB, "rg", "data1")
    assert plan_batch_name(name, "run-1", 3, 12) == f"{name}.plan/run-1/000003-00012.json"
    lease = writer_lease_id("run-1", DISK)
    assert lease == writer_lease_id("run-1", DISK.lower())  # ARM ids are case-insensitive
    assert lease != writer_lease_id("run-2", DISK)
    assert len(lease) == 36 and lease.count("-") == 4
    with pytest.raises(InvalidInputError):
        chain_blob_name(SUB, "rg/x", "d")


# -- segments and batches ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("disk", "segment", "expected"),
    [
        (8 * MiB, 32 * GiB, [_r(0, 8 * MiB)]),
        (8 * MiB, 4 * MiB, [_r(0, 4 * MiB), _r(4 * MiB, 4 * MiB)]),
        (9 * MiB, 4 * MiB, [_r(0, 4 * MiB), _r(4 * MiB, 4 * MiB), _r(8 * MiB, MiB)]),
        (512, 512, [_r(0, 512)]),
    ],
)
def test_segments(disk: int, segment: int, expected: list[PageRange]) -> None:
    assert segments(disk, segment) == expected


def test_segments_refuse_unaligned_sizes() -> None:
    for disk, segment in ((0, MiB), (1000, MiB), (MiB, 0), (MiB, 1000)):
        with pytest.raises(InvalidInputError):
            segments(disk, segment)


@pytest.mark.parametrize(
    ("writes", "clears", "max_bytes", "max_requests", "expected"),
    [
        ([], [], 8 * MiB, 10, []),
        ([_r(0, MiB)], [], 8 * MiB, 10, [Batch((_r(0, MiB),))]),
        (
            [_r(0, 4 * MiB), _r(8 * MiB, 4 * MiB), _r(16 * MiB, 4 * MiB)],
            [],
            8 * MiB,
            10,
            [Batch((_r(0, 4 * MiB), _r(8 * MiB, 4 * MiB))), Batch((_r(16 * MiB, 4 * MiB),))],
        ),
        (
            [_r(0, 512), _r(MiB, 512), _r(2 * MiB, 512)],
            [_r(512 * KiB, 4 * KiB)],
            8 * MiB,
            2,
            [Batch((_r(0, 512),), (_r(512 * KiB, 4 * KiB),)), Batch((_r(MiB, 512), _r(2 * MiB, 512)))],
        ),
        (
            [],
            [_r(0, 8 * GiB), _r(16 * GiB, 512)],
            4 * MiB,
            10,
            [Batch((), (_r(0, 8 * GiB), _r(16 * GiB, 512)))],  # clears move no bytes, whatever their size
        ),
    ],
)
def test_batch_plan(
    writes: list[PageRange],
    clears: list[PageRange],
    max_bytes: int,
    max_requests: int,
    expected: list[Batch],
) -> None:
    assert batch_plan(writes, clears, max_bytes=max_bytes, max_requests=max_requests) == expected


@given(
    st.lists(st.integers(0, 5000), max_size=60, unique=True),
    st.integers(1, 8),
    st.integers(1, 12),
)
def test_batch_plan_bounds_every_batch(starts: list[int], clear_every: int, max_requests: int) -> None:
    ranges = [_r(s * 8 * MiB, (s % 8 + 1) * 512 * KiB) for s in sorted(starts)]
    clears = [r for i, r in enumerate(ranges) if i % clear_every == 0]
    writes = [r for i, r in enumerate(ranges) if i % clear_every != 0]
    batches = batch_plan(writes, clears, max_bytes=8 * MiB, max_requests=max_requests)
    assert [w for b in batches for w in b.writes] == writes
    assert [c for b in batches for c in b.clears] == clears
    assert all(0 < b.requests <= max_requests and b.bytes <= 8 * MiB for b in batches)
    for a, b in itertools.pairwise(batches):  # in offset order, batch after batch
        assert max(r.end for r in (*a.writes, *a.clears)) < min(r.start for r in (*b.writes, *b.clears))


def test_a_batch_round_trips_and_a_bad_one_is_refused() -> None:
    batch = Batch((_r(0, 4 * MiB),), (_r(8 * MiB, MiB),))
    assert Batch.from_json(batch.to_json()) == batch
    for bad in (
        {"writes": [[0, 100]]},
        {"writes": [[0, 8 * MiB - 1]]},
        {"clears": "x"},
        [],
        {"writes": [[1]]},
    ):
        with pytest.raises(InvalidInputError):
            Batch.from_json(bad)


def test_batch_plan_refuses_limits_below_one_write() -> None:
    with pytest.raises(InvalidInputError):
        batch_plan([], [], max_bytes=MAX_WRITE_BYTES - 512, max_requests=1)
    with pytest.raises(InvalidInputError):
        batch_plan([], [], max_bytes=MAX_WRITE_BYTES, max_requests=0)


# -- sample windows ---------------------------------------------------------------------------------------


def test_sample_windows_are_seeded_bounded_and_start_with_changes() -> None:
    changed = [_r(i * 4 * MiB, 64 * KiB) for i in range(64)]
    windows = sample_windows("run-1/disk", 256 * MiB, changed, 16 * MiB)
    assert windows == sample_windows("run-1/disk", 256 * MiB, changed, 16 * MiB)  # deterministic
    assert windows != sample_windows("run-2/disk", 256 * MiB, changed, 16 * MiB)
    assert sum(w.length for w in windows) <= 16 * MiB
    assert all(w.length <= MiB and w.end < 256 * MiB for w in windows)
    assert len(set(windows)) == len(windows)
    in_changes = [w for w in windows if any(c.start <= w.start and w.end <= c.end for c in changed)]
    assert sum(w.length for w in in_changes) == 64 * 64 * KiB  # every change fits in half the budget
    assert sum(w.length for w in windows) > 12 * MiB  # and random windows spend most of the rest


@pytest.mark.parametrize(
    ("disk", "changed", "budget", "spent"),
    [
        (64 * MiB, [], 0, 0),  # 0 turns sampling off
        (64 * MiB, [_r(0, 64 * MiB)], 4 * MiB, 4 * MiB),
        (4 * MiB, [], 64 * MiB, 4 * MiB),  # a small disk: all of it, once
        (64 * MiB, [_r(i * MiB, 512) for i in range(64)], 1024, 1024),
    ],
)
def test_sample_windows_budgets(disk: int, changed: list[PageRange], budget: int, spent: int) -> None:
    windows = sample_windows("seed", disk, changed, budget)
    assert sum(w.length for w in windows) == spent
    assert all(w.start % PAGE_SIZE == 0 and w.end < disk for w in windows)


# -- full or incremental ------------------------------------------------------------------------------------

BLOB_URL = "https://acct.blob.core.windows.net/disk-backups/sub/rg/data1/chain.vhd"
GOOD = ChainFacts(
    disk_bytes=8 * MiB,
    expected_blob_url=BLOB_URL,
    last_point=LastPoint("run-1", BLOB_URL, "2026-11-26T01:03:00.0000000Z", "/snap/base", 8 * MiB),
    base=SnapshotFacts(True, True, "family-1", 8 * MiB),
    new_snapshot=SnapshotFacts(True, True, "family-1", 8 * MiB),
    blob=BlobFacts(True, 8 * MiB + 512, "2026-11-26T01:03:00.0000000Z", False),
)


@pytest.mark.parametrize(
    ("facts", "reason"),
    [
        (GOOD, None),
        (replace(GOOD, force_full=True), "a full copy was asked for (options.kind 'full')"),
        (replace(GOOD, catalog_problem="the newest row cannot be read"), "the newest row cannot be read"),
        (replace(GOOD, last_point=None), "no earlier restore point of this disk"),
        (
            replace(GOOD, last_point=replace(GOOD.last_point, blob_snapshot=None)),  # type: ignore[type-var]
            "the last restore point is a whole-blob backup from before the chain",
        ),
        (
            replace(GOOD, expected_blob_url=BLOB_URL.replace("disk-backups", "other")),
            f"the last restore point is in another blob ({BLOB_URL})",
        ),
        (
            replace(GOOD, last_point=replace(GOOD.last_point, snapshot_id=None)),  # type: ignore[type-var]
            "the last restore point names no managed snapshot to diff against",
        ),
        (replace(GOOD, base=SnapshotFacts(False)), "the base snapshot base is gone"),
        (replace(GOOD, base=None), "the base snapshot base is gone"),
        (
            replace(GOOD, base=SnapshotFacts(True, False, None, 8 * MiB)),
            "the base snapshot is not incremental",
        ),
        (replace(GOOD, new_snapshot=None), "tonight's snapshot cannot be read"),
        (
            replace(GOOD, new_snapshot=SnapshotFacts(True, True, "family-2", 8 * MiB)),
            "the base snapshot is of another snapshot family (was the disk re-created?)",
        ),
        (
            replace(GOOD, disk_bytes=16 * MiB, new_snapshot=SnapshotFacts(True, True, "family-1", 16 * MiB)),
            f"the disk's size changed ({8 * MiB} to {16 * MiB} bytes)",
        ),
        (
            replace(GOOD, base=SnapshotFacts(True, True, "family-1", None)),
            "a snapshot does not report its size",
        ),
        (replace(GOOD, blob=BlobFacts(False)), "the backup blob was missing"),
        (replace(GOOD, blob_created=True), "the backup blob was missing"),
        (
            replace(GOOD, blob=replace(GOOD.blob, size=512)),  # type: ignore[type-var]
            f"the backup blob is 512 bytes, not the disk's {8 * MiB} + 512",
        ),
        (
            replace(GOOD, blob=replace(GOOD.blob, newest_snapshot="2026-11-27T01:00:00.0000000Z")),  # type: ignore[type-var]
            "the backup blob's newest snapshot (2026-11-27T01:00:00.0000000Z) is not the last restore point "
            "(2026-11-26T01:03:00.0000000Z)",
        ),
        (
            replace(GOOD, blob=replace(GOOD.blob, newest_snapshot=None)),  # type: ignore[type-var]
            "the backup blob's newest snapshot (none) is not the last restore point "
            "(2026-11-26T01:03:00.0000000Z)",
        ),
        (
            replace(GOOD, blob=replace(GOOD.blob, changed_since_newest=True)),  # type: ignore[type-var]
            "the backup blob was written after its last restore point",
        ),
        (
            replace(GOOD, blob=replace(GOOD.blob, changed_since_newest=None)),  # type: ignore[type-var]
            "the backup blob was written after its last restore point",
        ),
    ],
)
def test_choose_kind(facts: ChainFacts, reason: str | None) -> None:
    assert choose_kind(facts) == ("incremental" if reason is None else "full", reason)
