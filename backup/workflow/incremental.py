"""An incremental night's steps, for the disk orchestrator to ``yield from``: the diff into a stored plan,
applying it batch by batch, the footer, and verification (which full copies share).

Deterministic like every orchestrator: what they decide comes from activity answers and the job's
options. What flows through history is references and counts: a segment's bounds, a listing's marker,
a plan batch's number. The ranges themselves are written to plan blobs by ``list_changes`` and read back
by ``apply_batch`` (:mod:`backup.workflow.chain_activities`).

Waiting (grants, revokes, the base's rotation) stays in :mod:`backup.workflow.orchestrators`; nothing
here waits on a timer but a retry's. Every activity here is safe to run twice with the same input (plan
batches are named by run, part and number; applying a batch writes the same bytes again; verification
only reads), so each is called with the run's retry policy (:mod:`backup.workflow.retries`), and before
each one that reads through a snapshot's SAS the grants are renewed if they are running out
(:class:`backup.workflow.access.ReadAccess`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import azure.durable_functions as df

from backup.azure.page_range import PageRange
from backup.workflow import activity_names as act
from backup.workflow.access import ReadAccess
from backup.workflow.chain import plan_batch_name, segments
from backup.workflow.models import DiskJob, MiB
from backup.workflow.retries import call_activity

Orchestration = Generator[Any, Any, Any]

#: Plan batches whose writes verification samples first (spread over the night's plan).
SAMPLED_BATCHES = 8


@dataclass(frozen=True)
class Night:
    """The fixed facts of one disk-night that every step needs."""

    job: DiskJob
    container: str
    blob_name: str
    lease_id: str
    snapshot_id: str

    @property
    def blob(self) -> dict[str, str]:
        """The backup blob, as activities take it."""
        return {"container": self.container, "blobName": self.blob_name}


@dataclass
class Figures:
    """What a night moved, for the catalog and the run's result."""

    bytes_moved: int = 0
    bytes_changed: int = 0
    ranges: int = 0
    requests: int = 0


@dataclass(frozen=True)
class Checked:
    """Verification's verdict (``problem`` None: verified) and the snapshot's populated bytes and ranges
    in the segments it listed."""

    problem: str | None
    populated_bytes: int = 0
    ranges: int = 0


@dataclass(frozen=True)
class Outcome:
    """How an incremental attempt ended: verified (``fallback`` None), or why a full copy must follow."""

    fallback: str | None
    figures: Figures


def copy_changes(
    context: df.DurableOrchestrationContext,
    night: Night,
    access: ReadAccess,
    base_id: str,
    phase: Callable[..., None],
) -> Orchestration:
    """List what changed since the base, apply it, rewrite the footer if it changed, and verify.

    ``access`` holds the grants of tonight's snapshot and of the base (``base_id``). Ends with an
    :class:`Outcome`; a diff above ``fullCopyPercent`` of the disk or a failed verification is a
    fallback, any other failure raises.
    """
    options = night.job.options
    chain = options.chain
    disk_bytes = night.job.disk.size_bytes

    def common() -> dict[str, Any]:
        return {**night.blob, "runId": night.job.run_id, "grant": access[night.snapshot_id].operation}

    # 1. The diff, segment by segment, each a few bounded listing steps: a plan in storage.
    phase("diff", kind="incremental")
    parts: list[tuple[int, int]] = []  # (part, batches)
    touched: list[PageRange] = []
    figures = Figures()
    to_move = 0
    for segment in segments(disk_bytes, chain.segment_bytes):
        marker: str | None = None
        changed_here = False
        while True:
            yield from access.fresh_all(context)
            listed = yield from call_activity(
                context,
                act.LIST_CHANGES,
                {
                    **common(),
                    "baseGrant": access[base_id].operation,
                    "segment": [segment.start, segment.end],
                    "marker": marker,
                    "pageSize": chain.diff_page_size,
                    "pagesPerCall": chain.diff_pages_per_call,
                    "part": len(parts),
                    "batchBytes": chain.batch_bytes,
                    "batchRequests": chain.batch_requests,
                },
                options.retry,
            )
            parts.append((listed["part"], listed["batches"]))
            figures.bytes_changed += listed["changedBytes"]
            figures.ranges += listed["ranges"]
            figures.requests += listed["writes"] + listed["clears"]
            to_move += listed["moveBytes"]
            changed_here = changed_here or listed["ranges"] > 0
            marker = listed["nextMarker"]
            if not marker:
                break
        if changed_here:
            touched.append(segment)
    if figures.bytes_changed * 100 > disk_bytes * chain.full_copy_percent:
        share = 100 * figures.bytes_changed / disk_bytes
        return Outcome(
            f"the diff is {share:.0f}% of the disk, above the {chain.full_copy_percent}% "
            "(BACKUP_FULL_COPY_PERCENT) where one server-side copy is cheaper",
            figures,
        )

    # 2. Apply the plan, batch after batch (each batch keeps a few writes in flight, paced).
    batch_names = [
        plan_batch_name(night.blob_name, night.job.run_id, part, batch)
        for part, count in parts
        for batch in range(count)
    ]
    moved = 0
    phase("apply", bytes_copied=0, bytes_total=to_move)
    for name in batch_names:
        yield from access.fresh(context, night.snapshot_id)
        applied = yield from call_activity(
            context,
            act.APPLY_BATCH,
            {**common(), "leaseId": night.lease_id, "planBlob": name, "writesPerBlob": chain.writes_per_blob},
            options.retry,
        )
        moved += applied["bytesMoved"]
        phase("apply", bytes_copied=moved, bytes_total=to_move)
    yield from access.fresh(context, night.snapshot_id)
    footer = yield from call_activity(
        context,
        act.SYNC_FOOTER,
        {**common(), "leaseId": night.lease_id, "diskBytes": disk_bytes},
        options.retry,
    )
    if footer["rewritten"]:
        moved += footer["bytesMoved"]
        figures.requests += 1
    figures.bytes_moved = moved

    # 3. Verify: page sets where anything changed (elsewhere both equal the last verified point), size,
    # footer, and sampled content, the changed bytes first.
    checked = yield from verify(context, night, access, touched, spread(batch_names, SAMPLED_BATCHES), phase)
    if checked.problem is not None:
        return Outcome(f"verification failed: {checked.problem}", figures)
    return Outcome(None, figures)


def verify(
    context: df.DurableOrchestrationContext,
    night: Night,
    access: ReadAccess,
    to_list: list[PageRange],
    plan_blobs: list[str],
    phase: Callable[..., None],
    *,
    copy_id: str | None = None,
) -> Orchestration:
    """Check the backup blob against tonight's snapshot (read through ``access``): populated pages in
    ``to_list`` segments, then size, footer (and, after a whole copy, that copy ``copy_id`` ended with
    success) and sampled content. Ends with :class:`Checked` (never raises for a mismatch)."""
    options = night.job.options
    chain = options.chain
    phase("verify")

    def common() -> dict[str, Any]:
        return {**night.blob, "grant": access[night.snapshot_id].operation}

    populated = ranges = 0
    for segment in to_list:
        yield from access.fresh(context, night.snapshot_id)
        pages = yield from call_activity(
            context,
            act.VERIFY_PAGES,
            {**common(), "segment": [segment.start, segment.end], "pageSize": chain.diff_page_size},
            options.retry,
        )
        if not pages["equal"]:
            return Checked(pages["problem"])
        populated += pages["populatedBytes"]
        ranges += pages["ranges"]
    yield from access.fresh(context, night.snapshot_id)
    content = yield from call_activity(
        context,
        act.VERIFY_CONTENT,
        {
            **common(),
            "diskBytes": night.job.disk.size_bytes,
            "sampleBytes": chain.verify_sample_mib * MiB,
            "seed": f"{night.job.run_id}\n{night.job.disk.id.lower()}",
            "planBlobs": plan_blobs,
            **({"copyId": copy_id} if copy_id is not None else {}),
        },
        options.retry,
    )
    if not content["equal"]:
        return Checked(content["problem"])
    return Checked(None, populated, ranges)


def all_segments(night: Night) -> list[PageRange]:
    """Every segment of the disk (what a full copy verifies)."""
    return segments(night.job.disk.size_bytes, night.job.options.chain.segment_bytes)


def spread(items: list[str], count: int) -> list[str]:
    """At most ``count`` of ``items``, evenly spread from first to last (all of them when fewer)."""
    if len(items) <= count:
        return list(items)
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]
