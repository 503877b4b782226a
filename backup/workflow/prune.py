"""Retention as its own orchestration: after a nightly run ends, each selected disk's policy is applied to
its restore points (:mod:`backup.workflow.prune_activities` does the work, one disk per activity).

The nightly timer starts one prune per run, as an instance of its own (``{run id}-prune``), so a slow
prune never delays a backup. It first waits, on durable timers, until the run's catalog row says the run
has ended (tonight's restore points count), or until its deadline (then it prunes anyway: what it keeps
never depends on tonight's points being there, the newest good point is always kept). A long wait
continues as new every :data:`POLLS_PER_EXECUTION` polls, so its history stays small. ``diskbackup prune``
starts the same orchestration without a run to wait for, and with ``dryRun`` only reports.

Disks are pruned a few at a time (``maxParallel``); a disk with more expired points than one activity
deletes (``deletesPerCall``) is called again. A disk whose prune fails is reported and the others go on.

Every activity here is safe to run twice with the same input (each says why), so each is called with the
prune's retry policy (:mod:`backup.workflow.retries`): a busy or unreachable catalog or blob service
(``Throttled``, ``BackendUnavailable``, after the transport's own retries) costs a few durable timers, and
the prune still deletes what the policy says. A disk's prune that meets a transient failure after it has
changed something answers what it did and asks to be called again (``more``), so what it did is counted
once; one that meets it before raises, and is retried. (A row marked ``Expired`` whose answer was lost
on every one of the transport's tries is done, but not counted: the call that raised does not know it.)
A failure that will not change fails that disk's prune at once, with its reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from backup.failures import failure_of
from backup.workflow import activity_names as act
from backup.workflow.models import DiskRef, iso, parse_iso
from backup.workflow.restore_models import PruneInput
from backup.workflow.retries import call_activity
from backup.workflow.watch import next_delay

Orchestration = Generator[Any, Any, Any]

#: Polls of the run's state before the orchestration continues as new (a bounded history).
POLLS_PER_EXECUTION = 40
#: Calls of one disk's prune in one orchestration at most (each deletes ``deletesPerCall``).
MAX_ROUNDS = 100
#: Disks listed in a prune's answer (counts cover all).
_LISTED_DISKS = 100
_COUNTS = ("kept", "expiring", "expired", "deleted", "heldCount", "deferred")


def prune_run(context: df.DurableOrchestrationContext) -> Orchestration:
    """Wait for the run (if any), then prune every selected disk; answers the prune's summary."""
    request = PruneInput.from_json(context.get_input())
    options = request.options
    retry = options.retry
    warnings: list[str] = []

    # 1. The run this prune follows, until it ended or the deadline passed.
    if request.after_run_id is not None:
        started = context.current_utc_datetime
        deadline = started + timedelta(minutes=options.wait_minutes)
        if request.wait_until is not None:  # continued as new: the first execution's deadline holds
            deadline = parse_iso(request.wait_until, "waitUntil")
            if started.tzinfo is None:  # the SDK's clock is naive UTC
                deadline = deadline.replace(tzinfo=None)
        delay: float | None = None
        polls = 0
        while True:
            context.set_custom_status({"phase": "waiting", "runId": request.after_run_id})
            try:
                state = yield from call_activity(
                    context, act.RUN_FINISHED, {"runId": request.after_run_id}, retry, deadline=deadline
                )
            except Exception as exc:
                # What is kept never depends on tonight's points being there: prune, as at the deadline.
                warnings.append(
                    f"whether run {request.after_run_id} had ended could not be read "
                    f"({failure_of(exc).message}); pruned without waiting longer"
                )
                break
            if state["finished"]:
                break
            now = context.current_utc_datetime
            if now >= deadline:
                warnings.append(
                    f"run {request.after_run_id} had not ended by {iso(deadline)}; "
                    "pruned without waiting longer"
                )
                break
            if polls >= POLLS_PER_EXECUTION:
                context.continue_as_new(replace(request, wait_until=iso(deadline)).to_json())
                return None
            delay = next_delay(delay, options.poll_initial_seconds, options.poll_max_seconds, None)
            yield context.create_timer(min(now + timedelta(seconds=delay), deadline))
            polls += 1

    # 2. The disks: the ones named, or the selection's as Compute lists them now.
    now_text = iso(context.current_utc_datetime)
    summary: dict[str, Any] = {
        "pruneId": context.instance_id,
        "asOf": now_text,
        "dryRun": request.dry_run,
        "policy": request.policy,
        "afterRunId": request.after_run_id,
        "disks": 0,
        **{name: 0 for name in _COUNTS},
        "failedDisks": 0,
        "results": [],
    }
    if request.selection.kind == "diskIds":
        disk_ids = list(request.selection.disk_ids)
    else:
        context.set_custom_status({"phase": "resolving"})
        try:
            found = yield from call_activity(
                context, act.RESOLVE_SELECTION, request.selection.to_json(), retry
            )
            disk_ids = [DiskRef.from_json(item).id for item in found]
        except Exception as exc:
            failure = failure_of(exc)
            context.set_custom_status({"phase": "failed"})
            return {
                **summary,
                "code": failure.code.value,
                "reason": f"selecting the disks: {failure.message}",
            }
    summary["disks"] = len(disk_ids)

    # 3. Each disk, a few at a time.
    results: list[dict[str, Any]] = []
    for first in range(0, len(disk_ids), options.max_parallel):
        context.set_custom_status({"phase": "pruning", "disks": len(disk_ids), "done": first})
        wave = disk_ids[first : first + options.max_parallel]
        for report in (yield from _prune_wave(context, request, wave, now_text)):
            results.append(report)
            if "code" in report:
                summary["failedDisks"] += 1
            for name in _COUNTS:
                summary[name] += report.get(name, 0)
    summary["results"] = results[:_LISTED_DISKS]
    if warnings:
        summary["warnings"] = warnings
    context.set_custom_status({"phase": "done", "disks": len(disk_ids), "expired": summary["expired"]})
    return summary


def _prune_wave(
    context: df.DurableOrchestrationContext, request: PruneInput, disk_ids: list[str], now: str
) -> Orchestration:
    """Prune ``disk_ids`` together; a disk whose call failed transiently is called again after a durable
    timer, and a disk with more to go is called again (one after another)."""
    retry = request.options.retry

    def payload(disk_id: str) -> dict[str, Any]:
        return {
            "diskId": disk_id,
            "policy": request.policy,
            "now": now,
            "dryRun": request.dry_run,
            "maxDeletes": request.options.deletes_per_call,
        }

    # Safe to repeat: a prune_disk call that failed transiently changed nothing (once it has changed
    # rows it answers them instead, with more: prune_activities.prune_disk), and a call repeated after
    # its outcome was lost finds what its first attempt did already done.
    tasks = [context.call_activity(act.PRUNE_DISK, payload(disk_id)) for disk_id in disk_ids]
    # All the wave's first calls at once. If one fails, each call's own outcome is read below (a task
    # yielded again answers its own outcome), and only the failed ones are called again.
    with contextlib.suppress(Exception):
        yield context.task_all(tasks)
    reports = []
    for disk_id, task in zip(disk_ids, tasks, strict=True):
        try:
            report = yield from call_activity(context, act.PRUNE_DISK, payload(disk_id), retry, first=task)
        except Exception as exc:
            failure = failure_of(exc)
            reports.append({"diskId": disk_id, "code": failure.code.value, "reason": failure.message})
            continue
        rounds = 1
        while report.get("more") and rounds < MAX_ROUNDS:
            try:
                again = yield from call_activity(context, act.PRUNE_DISK, payload(disk_id), retry)
            except Exception as exc:
                failure = failure_of(exc)
                report = {**report, "more": False, "code": failure.code.value, "reason": failure.message}
                break
            report = _added(report, again)
            rounds += 1
        reports.append(report)
    return reports


def _added(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """One disk's reports of two calls as one: what was done adds up; what is left is the last call's."""
    merged = dict(after)
    merged["expiring"] = before.get("expiring", 0)  # as the first call's plan had it
    for name in ("expired", "deleted", "deferred"):
        merged[name] = before.get(name, 0) + after.get(name, 0)
    merged["items"] = (before.get("items", []) + after.get("items", []))[:20]
    return merged
