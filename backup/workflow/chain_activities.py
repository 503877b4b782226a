"""The chain's activities: one bounded piece of an incremental night each, answering small JSON.

Like :mod:`backup.workflow.activities`, each is safe to run twice with the same input, raises on failure
and never returns a secret. The SAS of the two grants (tonight's snapshot, the base) is read inside the
activity that uses it (:meth:`backup.clients.AzureClients.read_access_sas`). Range lists never leave
storage: :func:`list_changes` writes the night's plan as batch blobs beside the backup blob and answers
counts; :func:`apply_batch` reads one batch back and applies it. A verification that finds a difference
answers ``{"equal": false, "problem": ...}`` (a verdict, which the orchestrator turns into a full copy),
while a check that cannot run raises.

    acquire_writer_lease   the one writer's lease on the disk's backup blob (creates the blob if missing)
    inspect_chain          full or incremental tonight, and why (catalog, snapshots, backup blob)
    list_changes           one bounded step of the diff of one segment -> plan batches in storage
    apply_batch            Put Page From URL / Clear of one batch, a few writes in flight, paced
    sync_footer            the VHD footer, rewritten only if it changed
    verify_pages           one segment: the backup blob's populated pages == the snapshot's
    verify_content         size, footer (and a whole copy's properties), SHA-256 of sampled windows
    snapshot_backup_blob   the restore point: a blob snapshot (found again if already taken)
    finish_writing         the plan blobs deleted, then the lease given back, once the night is over
    begin_tag_base         tags tonight's snapshot as the disk's diff base (an ARM operation)
    begin_retire_base      deletes the base it replaces (or, if a person kept it, only untags it)
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import timedelta
from itertools import pairwise, zip_longest
from typing import Any

from backup import vhd
from backup.azure.blob import BlobAddress, BlobProperties, CopyStatus
from backup.azure.page_range import DEFAULT_MAX_GAP, PageRange, coalesce_writes, merge
from backup.catalog import parse_time
from backup.clients import AzureClients
from backup.errors import (
    ConflictError,
    DiskBackupError,
    InvalidInputError,
    NotFoundError,
    PreconditionFailedError,
    ThrottledError,
)
from backup.failures import describe
from backup.redact import get_logger
from backup.workflow import activity_names as act
from backup.workflow.activities import (
    CHANGING,
    _busy,
    _metadata_value,
    _object,
    _operation,
    _operation_answer,
    _text,
    _throttled,
)
from backup.workflow.chain import (
    TAG_BASE,
    TAG_KEEP,
    Batch,
    BlobFacts,
    ChainFacts,
    LastPoint,
    SnapshotFacts,
    batch_plan,
    choose_kind,
    plan_batch_name,
    sample_windows,
)
from backup.workflow.models import iso

log = get_logger(__name__)

#: What one page blob sustains (Azure's scalability targets): stay under both.
BLOB_BYTES_PER_SECOND = 60 * 1024 * 1024
BLOB_REQUESTS_PER_SECOND = 500
#: Windows compared at once by verify_content.
_READERS = 4


# -- pacing ---------------------------------------------------------------------------------------------


class WritePacer:
    """Keeps writes into one blob under a byte rate and a request rate (thread-safe).

    Each write asks :meth:`wait` before it starts and is given the next free start time: one write's
    bytes at the byte rate, and at least one request's interval at the request rate, after the one
    before it. Idle time is not saved up, so no burst ever exceeds the rates. ``clock`` and ``sleep``
    are seams for tests.
    """

    def __init__(
        self,
        bytes_per_second: float = BLOB_BYTES_PER_SECOND,
        requests_per_second: float = BLOB_REQUESTS_PER_SECOND,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._byte_rate = bytes_per_second
        self._request_interval = 1.0 / requests_per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_free = float("-inf")

    def wait(self, nbytes: int) -> None:
        """Block until a write of ``nbytes`` may start."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next_free)
            self._next_free = start + max(nbytes / self._byte_rate, self._request_interval)
        if start > now:
            self._sleep(start - now)


# -- the writer's lease ---------------------------------------------------------------------------------


def acquire_writer_lease(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Take the backup blob's lease for this run (creating the blob, empty, if it does not exist yet).

    Answers ``{"acquired": true, "created", "brokeStale", "etag"}`` (the blob's ETag before tonight
    writes) or, when another run writes this disk's
    backup, ``{"acquired": false, "holder", "since"}``. A lease older than ``staleAfterMinutes`` (longer
    than any disk orchestration runs) belongs to a run that died: it is broken and taken over. Times are
    the orchestration's (``now``), as the holder wrote them.

    Safe to repeat: the lease id is fixed by run and disk, and acquiring a lease the blob already holds
    under that id succeeds; a blob an earlier attempt created is found (``created`` is then false, and
    tonight is a full copy all the same: the new blob has no restore point).
    """
    payload = _object(data)
    lease_id = _text(payload, "leaseId")
    run_id = _text(payload, "runId")
    now = parse_time(_text(payload, "now"), "now")
    stale_after = timedelta(minutes=_positive_int(payload, "staleAfterMinutes"))
    disk_bytes = _positive_int(payload, "diskBytes")
    container = _text(payload, "container")
    destination = clients.backup_blob(container, _text(payload, "blobName"))
    writer = {"writerRunId": run_id, "writerSince": iso(now)}
    # Create it only if it is missing (If-None-Match: *), with the writer's metadata: one request where
    # a HEAD, a create and a metadata update were three on a first night. A blob that exists (made by an
    # earlier night, or by another run meanwhile) answers 409, or 412 should the service check another
    # run's lease first, and stays as it was: the lease decides who writes.
    created_etag: str | None = None
    with suppress(ConflictError, PreconditionFailedError):
        created_etag = _create_missing_blob(clients, container, destination, disk_bytes, writer)
    broke: str | None = None
    try:
        clients.blob.acquire_lease(destination, lease_id)
    except ConflictError:
        props = clients.blob.get_properties(destination)
        holder = _metadata_value(props.metadata, "writerRunId") or "an unknown run"
        if holder == run_id:
            # Our own record from creating the blob: the run that leased it first has not written its own
            # yet (the lease id is fixed by run and disk, so a lease of ours would not have refused us).
            holder = "another run"
        since_text = _metadata_value(props.metadata, "writerSince")
        try:
            since = parse_time(since_text, "writerSince") if since_text else props.last_modified
        except InvalidInputError:
            since = props.last_modified
        if now - since <= stale_after:
            log.info("backup blob %s is being written by %s; not taking it", destination.display_url, holder)
            return {"acquired": False, "holder": holder, "since": iso(since)}
        log.warning(
            "breaking the writer lease of %s (since %s) on %s", holder, iso(since), destination.display_url
        )
        clients.blob.break_lease(destination)
        clients.blob.acquire_lease(destination, lease_id)
        broke = holder
    # The ETag before this night writes anything (the metadata below changes it): if it is the one the
    # last restore point recorded, nothing has written the blob since that point. A blob this activity
    # just created has the writer's metadata already and the ETag its creation answered (taking a lease
    # leaves the ETag as it was), so only a blob that was there is read and given the writer's record.
    created = created_etag is not None
    if created_etag and broke is None:
        return {"acquired": True, "created": True, "brokeStale": None, "etag": created_etag}
    props = clients.blob.get_properties(destination)
    metadata = {**props.metadata, **writer}
    clients.blob.set_metadata(destination, _cased(metadata), lease_id=lease_id)
    return {"acquired": True, "created": created, "brokeStale": broke, "etag": props.etag}


def _create_missing_blob(
    clients: AzureClients, container: str, destination: BlobAddress, disk_bytes: int, metadata: dict[str, str]
) -> str:
    """Create the backup blob, empty, with ``metadata``, unless it exists (409/412 raised then); its
    container first if that is missing too (a first backup, or someone deleted it). Answers the ETag."""
    size = disk_bytes + vhd.FOOTER_SIZE
    try:
        return clients.blob.create_page_blob(destination, size, metadata=_cased(metadata), overwrite=False)
    except NotFoundError as exc:
        if exc.code != "ContainerNotFound":
            raise
    clients.blob.create_container(clients.backup_container(container))
    return clients.blob.create_page_blob(destination, size, metadata=_cased(metadata), overwrite=False)


def finish_writing(clients: AzureClients, data: Any) -> dict[str, Any]:
    """The night is over: delete the plan blobs beside the backup blob (tonight's, and any a dead run
    left), then give the writer's lease back.

    One activity for the two, in this order: the plan goes while the lease still keeps other runs off
    the blob (a run that takes the lease next may write a plan of its own). A plan that cannot be
    deleted for good does not keep the lease: it is answered in ``planProblem`` (the next night deletes
    it); a transient failure is raised, for the orchestrator to call again (both steps are safe to
    repeat). A lease already gone (released, broken, no blob) is no error. Answers ``{"planDeleted",
    "planProblem", "released"}``.
    """
    payload = _object(data)
    container = _text(payload, "container")
    blob_name = _text(payload, "blobName")
    lease_id = _text(payload, "leaseId")
    deleted, problem = 0, None
    try:
        deleted = _delete_plan(clients, container, blob_name)
    except DiskBackupError as exc:
        failure = describe(exc)
        if failure.code.retryable:
            raise
        problem = failure.message
    destination = clients.backup_blob(container, blob_name)
    try:
        clients.blob.release_lease(destination, lease_id)
    except (ConflictError, NotFoundError) as exc:
        log.info("writer lease on %s was already gone: %s", destination.display_url, exc)
        return {"planDeleted": deleted, "planProblem": problem, "released": False}
    return {"planDeleted": deleted, "planProblem": problem, "released": True}


def _delete_plan(clients: AzureClients, container_name: str, blob_name: str) -> int:
    """Delete every plan blob of ``blob_name``; answers how many were deleted."""
    container = clients.backup_container(container_name)
    deleted = 0
    for item in clients.blob.list_blobs(container, prefix=blob_name + ".plan/"):
        try:
            clients.blob.delete(container.blob(item.name), snapshots=None)
            deleted += 1
        except NotFoundError:
            pass
    return deleted


# -- which kind tonight -----------------------------------------------------------------------------------


def inspect_chain(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Decide whether tonight is incremental or full (:func:`backup.workflow.chain.choose_kind`).

    Gathers the facts in order and stops asking once one is missing: the disk's newest good restore
    point (catalog), its base snapshot and tonight's (ARM), the backup blob, its newest blob snapshot and
    whether the blob was written since (Get Page Ranges against that snapshot, one range is enough).
    Answers ``{"kind", "reason", "base": {"snapshotId", "blobSnapshot", "runId"} | None,
    "previousBase": snapshot id | None}``; ``previousBase`` is the last chain point's snapshot, which a
    good night retires.
    """
    payload = _object(data)
    disk_id = _text(payload, "diskId")
    disk_bytes = _positive_int(payload, "diskBytes")
    container, blob_name = _text(payload, "container"), _text(payload, "blobName")
    facts = ChainFacts(
        disk_bytes=disk_bytes,
        expected_blob_url=clients.catalog.blob_url(container, blob_name),
        force_full=payload.get("forceFull") is True,
        blob_created=payload.get("blobCreated") is True,
    )
    point, problem = clients.catalog.last_good_point(disk_id)
    last = None
    if point is not None:
        last = LastPoint(
            point.run_id,
            point.blob_url,
            point.blob_snapshot,
            point.snapshot_id,
            point.size_bytes,
            point.blob_etag,
        )
    facts = replace(facts, catalog_problem=problem, last_point=last)
    if last is not None and last.blob_snapshot is not None and last.snapshot_id is not None:
        etag = payload.get("blobEtag")
        facts = replace(
            facts,
            base=_snapshot_facts(clients, last.snapshot_id),
            new_snapshot=_snapshot_facts(clients, _text(payload, "snapshotId")),
            blob=_blob_facts(
                clients,
                container,
                blob_name,
                last.blob_snapshot,
                unchanged=last.blob_etag is not None and etag == last.blob_etag,
            ),
        )
    kind, reason = choose_kind(facts)
    chain_point = last is not None and last.blob_snapshot is not None
    answer: dict[str, Any] = {
        "kind": kind,
        "reason": reason,
        "base": None,
        "previousBase": last.snapshot_id if chain_point and last is not None else None,
    }
    if kind == "incremental" and last is not None:
        answer["base"] = {
            "snapshotId": last.snapshot_id,
            "blobSnapshot": last.blob_snapshot,
            "runId": last.run_id,
        }
    log.info("%s: %s tonight%s", disk_id, kind, f" ({reason})" if reason else "")
    return answer


def _snapshot_facts(clients: AzureClients, snapshot_id: str) -> SnapshotFacts:
    try:
        snapshot = clients.compute.get_snapshot(snapshot_id)
    except NotFoundError:
        return SnapshotFacts(False)
    return SnapshotFacts(True, snapshot.incremental, snapshot.family_id, snapshot.size_bytes)


def _blob_facts(
    clients: AzureClients, container: str, name: str, expected_snapshot: str, *, unchanged: bool
) -> BlobFacts:
    """The backup blob's facts. ``unchanged``: its ETag is still the one recorded just after the last
    restore point, so nothing wrote it since; otherwise Get Page Ranges against that snapshot tells
    (an ETag also moves for a change of metadata, which leaves the pages as they were)."""
    blob = clients.backup_blob(container, name)
    try:
        props = clients.blob.get_properties(blob)
    except NotFoundError:
        return BlobFacts(False)
    snapshots = _snapshots(clients, container, name)
    newest = snapshots[-1][0] if snapshots else None
    changed: bool | None = None
    if newest is not None and newest == expected_snapshot:
        if unchanged:
            changed = False
        else:
            diff, _ = clients.blob.get_page_ranges_page(blob, previous_snapshot=newest, page_size=1)
            changed = bool(diff.page_ranges or diff.clear_ranges)
    return BlobFacts(True, props.size, newest, changed)


def _snapshots(clients: AzureClients, container: str, name: str) -> list[tuple[str, dict[str, str]]]:
    """The blob's snapshots, oldest first (timestamps sort as times), with their metadata."""
    items = clients.blob.list_blobs(
        clients.backup_container(container), prefix=name, snapshots=True, metadata=True
    )
    return sorted((i.snapshot, i.metadata) for i in items if i.name == name and i.snapshot is not None)


# -- the diff, into a plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListingStep:
    """Where one bounded listing step of a segment starts, and how far it goes: the input a diff step
    (:func:`list_changes`) and a restore's planning step (``plan_restore``) share."""

    segment: PageRange
    marker: str | None  # where the last step stopped (None: the segment's start)
    page_size: int | None  # Get Page Ranges answers of at most this many ranges (None: the service's)
    pages_per_call: int  # answers this step reads at most
    part: int  # the plan part its batches are stored as

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ListingStep:
        """Read and validate ``segment``, ``marker``, ``pageSize``, ``pagesPerCall`` and ``part``."""
        marker = payload.get("marker")
        if marker is not None and not isinstance(marker, str):
            raise InvalidInputError("marker", "must be a string or null")
        page_size = None if payload.get("pageSize") is None else _positive_int(payload, "pageSize")
        return cls(
            segment=_range(payload, "segment"),
            marker=marker,
            page_size=page_size,
            pages_per_call=_positive_int(payload, "pagesPerCall"),
            part=_whole(payload, "part"),
        )

    def read(
        self, clients: AzureClients, blob: BlobAddress, *, previous_snapshot_url: BlobAddress | None = None
    ) -> tuple[list[PageRange], list[PageRange], str | None, int]:
        """This step's Get Page Ranges answers of ``blob`` (against ``previous_snapshot_url``: a diff),
        clipped to the segment: ``(page ranges, clear ranges, the next step's marker or None, requests)``."""
        pages: list[PageRange] = []
        cleared: list[PageRange] = []
        marker, requests = self.marker, 0
        while requests < self.pages_per_call:
            answer, marker = clients.blob.get_page_ranges_page(
                blob,
                previous_snapshot_url=previous_snapshot_url,
                within=self.segment,
                page_size=self.page_size,
                marker=marker,
            )
            requests += 1
            pages.extend(_clipped(answer.page_ranges, self.segment))
            cleared.extend(_clipped(answer.clear_ranges, self.segment))
            if marker is None:
                break
        return pages, cleared, marker, requests


def list_changes(clients: AzureClients, data: Any) -> dict[str, Any]:
    """One bounded step of the diff of one segment: up to ``pagesPerCall`` Get Page Ranges answers.

    The changed ranges become writes (small populated gaps bridged: the populated ranges around them are
    listed too, a bounded few pages), then batches, stored as plan part ``part``. Answers counts and
    ``nextMarker`` (``None`` once the segment is done); the ranges themselves stay in storage.
    """
    payload = _object(data)
    step = ListingStep.from_payload(payload)
    part = step.part
    new = BlobAddress.from_sas_url(clients.read_access_sas(_operation(payload, "grant")))
    old = BlobAddress.from_sas_url(clients.read_access_sas(_operation(payload, "baseGrant")))
    changed, cleared, marker, requests = step.read(clients, new, previous_snapshot_url=old)
    changed, cleared = merge(changed), merge(cleared)
    populated, listed = _populated_near_gaps(clients, new, changed, step.page_size, step.pages_per_call)
    writes = coalesce_writes(changed, populated=populated)
    batches = batch_plan(
        writes,
        cleared,
        max_bytes=_positive_int(payload, "batchBytes"),
        max_requests=_positive_int(payload, "batchRequests"),
    )
    blob_name, run_id = _text(payload, "blobName"), _text(payload, "runId")
    write_plan_batches(
        clients,
        _text(payload, "container"),
        [(plan_batch_name(blob_name, run_id, part, index), batch) for index, batch in enumerate(batches)],
    )
    return {
        "part": part,
        "batches": len(batches),
        "changedBytes": sum(r.length for r in changed),
        "clearedBytes": sum(r.length for r in cleared),
        "moveBytes": sum(w.length for w in writes),
        "ranges": len(changed) + len(cleared),
        "writes": len(writes),
        "clears": len(cleared),
        "listRequests": requests + listed,
        "nextMarker": marker,
    }


def _populated_near_gaps(
    clients: AzureClients,
    source: BlobAddress,
    changed: list[PageRange],
    page_size: int | None,
    pages: int,
) -> tuple[list[PageRange] | None, int]:
    """The source's populated ranges across the span of small gaps between changes (a bounded listing).

    Only what was listed is known populated; a gap beyond what a bounded listing reached stays unknown
    and is not bridged. ``(None, 0)`` when no gap is small enough to bridge.
    """
    gaps = [
        PageRange(a.end + 1, b.start - 1)
        for a, b in pairwise(changed)
        if 0 < b.start - a.end - 1 <= DEFAULT_MAX_GAP
    ]
    if not gaps:
        return None, 0
    span = PageRange(gaps[0].start, gaps[-1].end)
    found: list[PageRange] = []
    marker: str | None = None
    requests = 0
    while requests < pages:
        answer, marker = clients.blob.get_page_ranges_page(
            source, within=span, page_size=page_size, marker=marker
        )
        requests += 1
        found.extend(_clipped(answer.page_ranges, span))
        if marker is None:
            break
    return merge(found), requests


# -- applying the plan --------------------------------------------------------------------------------------


def apply_batch(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Apply one stored batch to the backup blob: Put Page From URL from tonight's snapshot, Clear Pages.

    At most ``writesPerBlob`` requests in flight, paced under a page blob's byte and request targets.
    Re-running it writes the same bytes from the same snapshot again: idempotent, so a crash in the
    middle is repaired by running the batch once more.
    """
    payload = _object(data)
    lease_id = _text(payload, "leaseId")
    batch = read_plan_batch(clients, _text(payload, "container"), _text(payload, "planBlob"))
    destination = clients.backup_blob(_text(payload, "container"), _text(payload, "blobName"))
    source = BlobAddress.from_sas_url(clients.read_access_sas(_operation(payload, "grant")))
    moved = apply_plan_batch(
        batch,
        write=lambda page_range: clients.blob.put_page_from_url(
            destination, page_range, source, page_range, lease_id=lease_id
        ),
        clear=lambda page_range: clients.blob.clear_pages(destination, page_range, lease_id=lease_id),
        writers=_positive_int(payload, "writesPerBlob"),
    )
    return {"bytesMoved": moved, "writes": len(batch.writes), "clears": len(batch.clears)}


# -- plans in storage, and applying a batch (restores write with these too) -------------------------------


def write_plan_batches(clients: AzureClients, container: str, named: list[tuple[str, Batch]]) -> None:
    """Store each batch as a small JSON blob under its name in ``container`` (replacing any: idempotent)."""
    for name, batch in named:
        document = json.dumps(batch.to_json(), separators=(",", ":")).encode()
        clients.blob.put_block_blob(
            clients.backup_blob(container, name), document, content_type="application/json"
        )


def read_plan_batch(clients: AzureClients, container: str, name: str) -> Batch:
    """A stored batch, read back and checked (storage is outside the orchestration)."""
    plan = clients.backup_blob(container, name)
    return Batch.from_json(_json_document(clients.blob.get_blob(plan), plan.display_url))


def apply_plan_batch(
    batch: Batch,
    *,
    write: Callable[[PageRange], object],
    clear: Callable[[PageRange], object] | None = None,
    writers: int,
    pacer: WritePacer | None = None,
) -> int:
    """Run ``write`` for each of the batch's writes and ``clear`` for each clear, ``writers`` at a time,
    paced under one page blob's byte and request targets; answers the bytes written.

    A batch with clears needs ``clear``. Each call is one request that is safe to repeat, so running a
    batch again after a crash rewrites the same pages.
    """
    if batch.clears and clear is None:
        raise InvalidInputError("plan batch", "has clears, but nothing to clear with")
    pacing = pacer or WritePacer()

    def one(job: tuple[bool, PageRange]) -> int:
        is_clear, page_range = job
        if is_clear:
            assert clear is not None
            pacing.wait(0)
            clear(page_range)
            return 0
        pacing.wait(page_range.length)
        write(page_range)
        return page_range.length

    jobs = [(False, w) for w in batch.writes] + [(True, c) for c in batch.clears]
    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="apply") as pool:
        return sum(pool.map(one, jobs))


def sync_footer(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Make the backup blob's last 512 bytes the snapshot's VHD footer, writing only if they differ."""
    payload = _object(data)
    disk_bytes = _positive_int(payload, "diskBytes")
    footer = PageRange.at(disk_bytes, vhd.FOOTER_SIZE)
    source = BlobAddress.from_sas_url(clients.read_access_sas(_operation(payload, "grant")))
    destination = clients.backup_blob(_text(payload, "container"), _text(payload, "blobName"))
    if clients.blob.read_range(source, footer) == clients.blob.read_range(destination, footer):
        return {"rewritten": False, "bytesMoved": 0}
    clients.blob.put_page_from_url(destination, footer, source, footer, lease_id=_text(payload, "leaseId"))
    return {"rewritten": True, "bytesMoved": vhd.FOOTER_SIZE}


# -- verification ------------------------------------------------------------------------------------------


def verify_pages(clients: AzureClients, data: Any) -> dict[str, Any]:
    """One segment: are the backup blob's populated pages exactly the snapshot's? (compared as page sets)

    Both listings are read page by page and compared as they come, so memory stays one answer each.
    Answers ``{"equal", "problem", "populatedBytes", "ranges"}`` (the snapshot's, in the segment).
    """
    payload = _object(data)
    segment = _range(payload, "segment")
    page_size = payload.get("pageSize")
    if page_size is not None:
        page_size = _positive_int(payload, "pageSize")
    source = BlobAddress.from_sas_url(clients.read_access_sas(_operation(payload, "grant")))
    destination = clients.backup_blob(_text(payload, "container"), _text(payload, "blobName"))
    populated = ranges = 0
    for expected, found in zip_longest(
        _joined(_listing(clients, source, segment, page_size)),
        _joined(_listing(clients, destination, segment, page_size)),
    ):
        if expected != found:
            where = expected.header() if expected is not None else "nothing"
            got = found.header() if found is not None else "nothing"
            return {
                "equal": False,
                "problem": f"populated pages differ in {segment.header()}: the snapshot has {where}, "
                f"the backup blob {got}",
                "populatedBytes": populated,
                "ranges": ranges,
            }
        populated += expected.length
        ranges += 1
    return {"equal": True, "problem": None, "populatedBytes": populated, "ranges": ranges}


def verify_content(clients: AzureClients, data: Any) -> dict[str, Any]:
    """The backup blob's size and footer, then SHA-256 of sampled windows, snapshot against backup blob.

    After a whole copy (``copyId`` given), the blob's properties must also show that copy, ended with
    success, every byte of it, into a page blob. Windows (:func:`backup.workflow.chain.sample_windows`,
    seeded by ``seed``) take the writes of the plan batches named in ``planBlobs`` first, then random
    places; ``sampleBytes`` bounds them (0: no content compared). Answers ``{"equal", "problem",
    "windows", "bytesCompared"}``.
    """
    payload = _object(data)
    disk_bytes = _positive_int(payload, "diskBytes")
    sample_bytes = _whole(payload, "sampleBytes")
    copy_id = payload.get("copyId")
    if copy_id is not None and (not isinstance(copy_id, str) or not copy_id):
        raise InvalidInputError("copyId", "must be a non-empty string")
    container = _text(payload, "container")
    destination = clients.backup_blob(container, _text(payload, "blobName"))
    props = clients.blob.get_properties(destination)
    if copy_id is not None:
        problem = _copy_problem(props, copy_id)
        if problem is not None:
            return _unequal(problem)
    if props.size != disk_bytes + vhd.FOOTER_SIZE:
        return _unequal(f"the backup blob is {props.size} bytes, expected the disk's {disk_bytes} + 512")
    footer = clients.blob.read_range(destination, PageRange.at(disk_bytes, vhd.FOOTER_SIZE))
    problem = vhd.fixed_disk_problem(footer, disk_bytes)
    if problem is not None:
        return _unequal(problem)
    plan_blobs = payload.get("planBlobs") or []
    if not isinstance(plan_blobs, list) or not all(isinstance(name, str) for name in plan_blobs):
        raise InvalidInputError("planBlobs", "must be a list of blob names")
    changed: list[PageRange] = []
    for name in plan_blobs:
        changed.extend(read_plan_batch(clients, container, name).writes)
    windows = sample_windows(_text(payload, "seed"), disk_bytes, changed, sample_bytes)
    if not windows:
        return {"equal": True, "problem": None, "windows": 0, "bytesCompared": 0}
    source = BlobAddress.from_sas_url(clients.read_access_sas(_operation(payload, "grant")))
    wrong = windows_that_differ(clients, source, destination, windows)
    compared = sum(w.length for w in windows)
    if wrong:
        shown = ", ".join(w.header() for w in wrong[:3])
        answer = _unequal(
            f"content differs from the snapshot in {len(wrong)} of {len(windows)} windows ({shown})"
        )
        return {**answer, "windows": len(windows), "bytesCompared": compared}
    return {"equal": True, "problem": None, "windows": len(windows), "bytesCompared": compared}


def _copy_problem(props: BlobProperties, copy_id: str) -> str | None:
    """What is wrong with the whole copy ``copy_id`` as the blob's properties show it, or ``None``."""
    problems = []
    if props.copy_id != copy_id:
        problems.append(f"its last copy is {props.copy_id}, expected {copy_id}")
    if props.copy_status is not CopyStatus.SUCCESS:
        status = props.copy_status.value if props.copy_status is not None else "none"
        problems.append(f"copy status is {status}, expected success")
    if props.copy_progress is not None and props.copy_progress[0] != props.copy_progress[1]:
        problems.append(f"copy progress is {props.copy_progress[0]}/{props.copy_progress[1]}")
    if props.blob_type is not None and props.blob_type != "PageBlob":
        problems.append(f"blob type is {props.blob_type}, expected PageBlob")
    return "the backup blob's copy: " + "; ".join(problems) if problems else None


def windows_that_differ(
    clients: AzureClients, one: BlobAddress, other: BlobAddress, windows: list[PageRange]
) -> list[PageRange]:
    """The windows whose bytes differ between blobs ``one`` and ``other`` (SHA-256 of each side), read a
    few at a time; in the order given."""

    def differs(window: PageRange) -> bool:
        theirs = hashlib.sha256(clients.blob.read_range(one, window)).digest()
        ours = hashlib.sha256(clients.blob.read_range(other, window)).digest()
        return theirs != ours

    with ThreadPoolExecutor(max_workers=_READERS, thread_name_prefix="verify") as pool:
        verdicts = list(pool.map(differs, windows))
    return [w for w, bad in zip(windows, verdicts, strict=True) if bad]


def _unequal(problem: str) -> dict[str, Any]:
    return {"equal": False, "problem": problem, "windows": 0, "bytesCompared": 0}


def _listing(
    clients: AzureClients, blob: BlobAddress, segment: PageRange, page_size: int | None
) -> Iterator[PageRange]:
    marker: str | None = None
    while True:
        answer, marker = clients.blob.get_page_ranges_page(
            blob, within=segment, page_size=page_size, marker=marker
        )
        yield from _clipped(answer.page_ranges, segment)
        if marker is None:
            return


def _joined(ranges: Iterator[PageRange]) -> Iterator[PageRange]:
    """Sorted ranges with touching and overlapping ones joined, one at a time (a streaming merge)."""
    current: PageRange | None = None
    for item in ranges:
        if current is not None and item.start <= current.end + 1:
            current = PageRange(current.start, max(current.end, item.end))
            continue
        if current is not None:
            yield current
        current = item
    if current is not None:
        yield current


# -- the restore point, the plan, the base -------------------------------------------------------------------


def snapshot_backup_blob(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Take the restore point: a blob snapshot of the backup blob, its metadata naming run and snapshot.

    If an earlier attempt of this activity took it already (the newest snapshot carries this run's id),
    that one is answered: one restore point per night however often this runs. Answers the snapshot's
    timestamp and the blob's ETag after it (recorded, so the next night can tell nothing wrote since).
    """
    payload = _object(data)
    run_id = _text(payload, "runId")
    container, name = _text(payload, "container"), _text(payload, "blobName")
    destination = clients.backup_blob(container, name)
    earlier = _snapshots(clients, container, name)
    if earlier and _metadata_value(earlier[-1][1], "runId") == run_id:
        taken = earlier[-1][0]
    else:
        metadata = {
            "runId": run_id,
            "diskId": _text(payload, "diskId"),
            "snapshotId": _text(payload, "snapshotId"),
            "kind": _text(payload, "kind"),
        }
        taken = clients.blob.snapshot(destination, metadata=_cased(metadata))
    return {"blobSnapshot": taken, "blobEtag": clients.blob.get_properties(destination).etag}


def begin_tag_base(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Start tagging tonight's snapshot as the disk's diff base (and as kept, if ``keep``).

    Safe to repeat: tags already in place cost nothing more; while an earlier attempt's update is still
    under way (its answer lost), the orchestrator is told to call again rather than overlap it.
    """
    payload = _object(data)
    snapshot_id = _text(payload, "snapshotId")
    snapshot = clients.compute.get_snapshot(snapshot_id)
    if snapshot.provisioning_state in CHANGING:
        return _busy(act.BEGIN_TAG_BASE, payload)
    tags = {**snapshot.tags, TAG_BASE: "true"}
    if payload.get("keep") is True:
        tags[TAG_KEEP] = "true"
    if tags == snapshot.tags:
        return {"state": "Succeeded", "retryAfter": None, "operation": None}
    try:
        operation = clients.compute.begin_update_snapshot_tags(snapshot_id, tags)
    except ThrottledError as exc:
        return _throttled(act.BEGIN_TAG_BASE, payload, exc)
    except ConflictError:
        # ARM refuses an update that overlaps another (an earlier attempt's, whose answer was lost).
        if clients.compute.get_snapshot(snapshot_id).provisioning_state in CHANGING:
            return _busy(act.BEGIN_TAG_BASE, payload)
        raise
    return _operation_answer(operation)


def begin_retire_base(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Start retiring a base a newer one replaced: delete it, or only untag it if a person kept it.

    Only a snapshot tagged as a base is deleted (never one the chain did not mark); one already gone is
    retired. Answers an operation answer with ``"action": "deleted" | "untagged" | "none"``.
    """
    payload = _object(data)
    snapshot_id = _text(payload, "snapshotId")
    done = {"state": "Succeeded", "retryAfter": None, "operation": None}
    try:
        snapshot = clients.compute.get_snapshot(snapshot_id)
    except NotFoundError:
        return {**done, "action": "none"}
    if snapshot.provisioning_state in CHANGING:
        return _busy(act.BEGIN_RETIRE_BASE, payload)  # an earlier attempt's untagging is under way
    if snapshot.tags.get(TAG_BASE) != "true":
        return {**done, "action": "none"}  # not marked by the chain: not ours to delete
    try:
        if snapshot.tags.get(TAG_KEEP) == "true":
            tags = {k: v for k, v in snapshot.tags.items() if k != TAG_BASE}
            untagging = clients.compute.begin_update_snapshot_tags(snapshot_id, tags)
            return {**_operation_answer(untagging), "action": "untagged"}
        return {**_operation_answer(clients.compute.begin_delete_snapshot(snapshot_id)), "action": "deleted"}
    except ThrottledError as exc:
        return _throttled(act.BEGIN_RETIRE_BASE, payload, exc)


# -- small parts ---------------------------------------------------------------------------------------------


def _cased(metadata: dict[str, str]) -> dict[str, str]:
    """Metadata with one entry per name, compared case-insensitively (Azure folds the names' case)."""
    out: dict[str, str] = {}
    for key, value in metadata.items():
        for existing in [k for k in out if k.lower() == key.lower()]:
            del out[existing]
        out[key] = value
    return out


def _clipped(ranges: Any, within: PageRange) -> list[PageRange]:
    out = []
    for item in ranges:
        start, end = max(item.start, within.start), min(item.end, within.end)
        if start <= end:
            out.append(PageRange(start, end))
    return out


def _json_document(raw: bytes, where: str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInputError(where, "is not a JSON plan document") from None


def _range(payload: dict[str, Any], key: str) -> PageRange:
    value = payload.get(key)
    if not (isinstance(value, list) and len(value) == 2):
        raise InvalidInputError(key, "must be a [start, end] pair")
    return PageRange(value[0], value[1])


def _positive_int(payload: dict[str, Any], key: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInputError(key, "must be a positive whole number")
    return value


def _whole(payload: dict[str, Any], key: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(key, "must be a whole number, 0 or more")
    return value
