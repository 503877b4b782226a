"""Waiting in sub-orchestrations, so that no history grows with the length of a wait.

A disk orchestration waits on ARM long-running operations (snapshot, grant, revoke, delete: seconds to
minutes) and on its blob copy (minutes, up to a day for a 4 TiB disk). Every poll is a durable timer
and an activity: eight history events (``TimerCreated``/``TimerFired``, ``TaskScheduled``/
``TaskCompleted`` and the two episodes' ``OrchestratorStarted``/``OrchestratorCompleted``), which every
later replay reads again. Polled inline, an hour's copy left 576 events in the disk's history, a day's
copy thousands, and the cost of each replay grew with them.

So each wait is a sub-orchestration of the disk, which makes **one** poll per execution and then
continues as new, carrying what it learnt, the current delay and the deadline. The first execution of
an operation or copy watch also makes the call that starts what it follows (the begin activity,
``start_copy``), retried there after transient failures: the disk's history holds one
sub-orchestration where it held an activity and then a sub-orchestration, and replays one episode less.

- ``watch_operation`` (:func:`run_operation`) starts one ARM operation (snapshot, grant, revoke, tag,
  delete) and follows it until it succeeded;
- ``watch_copy`` (:func:`copy_and_wait`) starts the blob copy and follows it, and keeps the copy's
  progress in its custom status;
- ``watch_readiness`` follows a Premium SSD v2 / Ultra snapshot's background copy until the snapshot
  can be read, and keeps its percent in its custom status.

However long the wait, its history is one execution of at most twelve events (the first, with the
start, a few more), the disk's own replays never read its polls, and the delays go on doubling to the
cap across executions (with the defaults, 5 s doubling to 60 s, about 63 polls per copy-hour). One poll
per execution rather than several costs one short extra episode per poll, and keeps everything a disk
holds under 150 events for an hour's copy (the disk's own orchestration about 52, its five waits twelve
each).

Either way the disk's history gains four events per wait (the sub-orchestration created, completed,
and the episode between), whatever the wait's length.

A poll that fails transiently (``Throttled``, ``BackendUnavailable``: the service was busy or did not
answer, even after the transport's own retries) is no news: the watch waits its next delay and polls
again, up to ``maxPollFailures`` such failures in a row, and never past its deadline. Every poll
(``poll_operation``, ``copy_status``, ``snapshot_readiness``) only reads, so asking again is safe.

A wait that fails (its deadline, a failed operation or copy, an activity that raised) does not fail its
sub-orchestration: the watch returns ``{"failed": {"code", "message"}}`` (:func:`backup.failures.failure_of`)
and the caller's helper raises it again as an :class:`~backup.failures.ActivityFailure`, so the disk's
failure has the code and reads as it did inline. Only a bug (a malformed input) fails a watch outright.

A watch's instance id names its caller and the wait (:func:`wait_id`: a disk
``{run}-disk-0003`` waits in ``{run}-wait-0003-copy``, outside the prefix a run's disks are queried by);
a caller runs one wait of a kind at a time, and a later wait of the same kind reuses the id of the
finished one. A status reader finds a running copy's progress in its copy watch's custom status
(``{"bytesCopied", "bytesTotal", "polls"}``).
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df

from backup.errors import DeadlineExceededError, InvalidInputError
from backup.failures import ActivityFailure, Failure, FailureCode, failure_of
from backup.workflow import activity_names as act
from backup.workflow.models import RunOptions, _object, _str, iso
from backup.workflow.retries import ActivityRetry, call_activity

__all__ = [
    "COPY_WATCH_ORCHESTRATOR",
    "OPERATION_WATCH_ORCHESTRATOR",
    "READINESS_WATCH_ORCHESTRATOR",
    "CopyWatch",
    "OperationWatch",
    "ReadinessWatch",
    "copy_and_wait",
    "copy_watch_id",
    "next_delay",
    "operation_watch_id",
    "readiness_watch_id",
    "run_operation",
    "sleep_until_next_poll",
    "wait_for_readiness",
    "wait_id",
    "waits_prefix",
    "watch_copy",
    "watch_operation",
    "watch_readiness",
]

Orchestration = Generator[Any, Any, Any]

#: Registered names of the two watch orchestrators.
OPERATION_WATCH_ORCHESTRATOR = "watch_operation"
COPY_WATCH_ORCHESTRATOR = "watch_copy"
READINESS_WATCH_ORCHESTRATOR = "watch_readiness"
#: Transient poll failures in a row a watch rides out (each followed by its next delay) before it fails.
MAX_POLL_FAILURES = 5


# -- ids and delays (pure) ----------------------------------------------------------------------------


def waits_prefix(caller_id: str) -> str:
    """What the instance ids of ``caller_id``'s waits start with: a disk orchestration's
    ``{run}-disk-{index}`` gives ``{run}-wait-{index}-`` (so a query for the run's disks, by the prefix
    ``{run}-disk-``, finds no wait), any other caller ``{caller}-wait-``."""
    head, marker, index = caller_id.rpartition("-disk-")
    return f"{head}-wait-{index}-" if marker and index else f"{caller_id}-wait-"


def wait_id(caller_id: str, kind: str) -> str:
    """The instance id of ``caller_id``'s wait of kind ``kind`` (``"copy"``, ``"snapshot-creation"``)."""
    return waits_prefix(caller_id) + kind


def operation_watch_id(caller_id: str, what: str) -> str:
    """The instance id of the watch of operation ``what`` (``"snapshot creation"``) for ``caller_id``."""
    return wait_id(caller_id, re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-") or "operation")


def copy_watch_id(caller_id: str) -> str:
    """The instance id of the copy watch of ``caller_id`` (a disk orchestration)."""
    return wait_id(caller_id, "copy")


def readiness_watch_id(caller_id: str) -> str:
    """The instance id of the watch of ``caller_id``'s snapshot's background copy."""
    return wait_id(caller_id, "snapshot-copy")


def next_delay(
    previous: float | None, options_initial: int, options_max: int, retry_after: float | None
) -> float:
    """Seconds to wait before the next poll: doubling from the initial delay to the cap, never less than
    what the service asked for (``Retry-After``)."""
    delay = float(options_initial) if previous is None else min(previous * 2, float(options_max))
    if retry_after is not None and retry_after > delay:
        delay = float(retry_after)
    return delay


def sleep_until_next_poll(
    context: df.DurableOrchestrationContext, seconds: float, deadline: datetime, what: str
) -> Orchestration:
    """Wait ``seconds``, but not past ``deadline``: the last poll happens at the deadline itself, and
    only a wait that would start at or after it fails (:class:`DeadlineExceededError`)."""
    now = _utc(context.current_utc_datetime)
    if now >= deadline:
        raise DeadlineExceededError(f"{what} did not finish by its deadline ({iso(deadline)})")
    yield context.create_timer(min(now + timedelta(seconds=seconds), deadline))


# -- what a watch is given ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Pacing:
    """What every watch carries from one execution to the next, besides what it follows."""

    deadline: datetime
    poll_initial_seconds: int
    poll_max_seconds: int
    delay: float | None = None  # the last wait, in seconds (None before the first)
    polls: int = 0  # polls made so far, over all executions
    failures: int = 0  # transient poll failures in a row, so far


@dataclass(frozen=True, kw_only=True)
class OperationWatch(_Pacing):
    """The input of ``watch_operation``, and what each execution hands the next one: an operation
    answer to follow until it succeeded, or (``begin``) the call that starts the operation."""

    op: dict[str, Any]  # an operation answer (activity_names describes it); never holds a secret
    what: str  # "snapshot creation": names the wait in a deadline's message
    begin: Begin | None = None  # the begin call still to make (first execution of run_operation only)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "op": self.op,
            "what": self.what,
            **({} if self.begin is None else {"begin": self.begin.to_json()}),
            **_pacing_json(self),
        }

    @classmethod
    def from_json(cls, data: Any) -> OperationWatch:
        """Rebuild and validate."""
        data = _object(data, "operation watch")
        op = _object(data.get("op"), "operation watch.op")
        if not isinstance(op.get("state"), str):
            raise InvalidInputError("operation watch.op.state", "must be a string")
        begin = None if data.get("begin") is None else Begin.from_json(data["begin"])
        return cls(
            op=op,
            what=_str(data, "what", "operation watch"),
            begin=begin,
            **_pacing(data, "operation watch"),
        )


#: The begin activities an operation watch may call to start its operation.
BEGIN_ACTIVITIES = frozenset(
    {
        act.BEGIN_SNAPSHOT,
        act.BEGIN_GRANT_ACCESS,
        act.BEGIN_REVOKE_ACCESS,
        act.BEGIN_DELETE_SNAPSHOT,
        act.BEGIN_TAG_BASE,
        act.BEGIN_RETIRE_BASE,
    }
)
#: The keys of an operation answer; whatever else a begin answers (a snapshot's id) is carried along.
_ANSWER_KEYS = frozenset({"state", "retryAfter", "operation", "retry"})


@dataclass(frozen=True)
class Begin:
    """The call that starts an operation: a begin activity, its input, and how it is retried."""

    activity: str
    input: dict[str, Any]
    retry: ActivityRetry

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"activity": self.activity, "input": self.input, "retry": self.retry.to_json()}

    @classmethod
    def from_json(
        cls, data: Any, *, where: str = "operation watch.begin", allowed: frozenset[str] = BEGIN_ACTIVITIES
    ) -> Begin:
        """Rebuild and validate (``allowed``: the activities this call may be)."""
        data = _object(data, where)
        activity = _str(data, "activity", where)
        if activity not in allowed:
            raise InvalidInputError(f"{where}.activity", f"{activity[:40]!r} is not a call a watch makes")
        return cls(
            activity, _object(data.get("input"), f"{where}.input"), ActivityRetry.from_json(data.get("retry"))
        )


@dataclass(frozen=True, kw_only=True)
class CopyWatch(_Pacing):
    """The input of ``watch_copy``, and what each execution hands the next one: a copy answer to follow,
    or (``start``) the ``start_copy`` call that starts the copy."""

    copy: dict[str, Any] | None  # a copy answer: copyId, status, copied, total (None before the start)
    blob: dict[str, str]  # container and blobName of the destination
    start: Begin | None = None  # the start_copy call still to make (first execution of copy_and_wait only)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "copy": self.copy,
            "blob": self.blob,
            **({} if self.start is None else {"start": self.start.to_json()}),
            **_pacing_json(self),
        }

    @classmethod
    def from_json(cls, data: Any) -> CopyWatch:
        """Rebuild and validate."""
        where = "copy watch"
        data = _object(data, where)
        start = None
        if data.get("start") is not None:
            start = Begin.from_json(
                data["start"], where=f"{where}.start", allowed=frozenset({act.START_COPY})
            )
        copy = None
        if start is None or data.get("copy") is not None:
            copy = _object(data.get("copy"), f"{where}.copy")
            for key in ("copied", "total"):
                if isinstance(copy.get(key), bool) or not isinstance(copy.get(key), int):
                    raise InvalidInputError(f"{where}.copy.{key}", "must be a whole number")
            _str(copy, "copyId", f"{where}.copy")
            _str(copy, "status", f"{where}.copy")
        blob = _object(data.get("blob"), f"{where}.blob")
        return cls(
            copy=copy,
            blob={
                "container": _str(blob, "container", f"{where}.blob"),
                "blobName": _str(blob, "blobName", f"{where}.blob"),
            },
            start=start,
            **_pacing(data, where),
        )


@dataclass(frozen=True, kw_only=True)
class ReadinessWatch(_Pacing):
    """The input of ``watch_readiness``, and what each execution hands the next one: a snapshot whose
    background copy is under way, and its last readiness answer."""

    snapshot_id: str
    state: dict[str, Any]  # a readiness answer (activity_names describes it)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "snapshotId": self.snapshot_id,
            "state": self.state,
            **_pacing_json(self),
        }

    @classmethod
    def from_json(cls, data: Any) -> ReadinessWatch:
        """Rebuild and validate."""
        where = "readiness watch"
        data = _object(data, where)
        state = _object(data.get("state"), f"{where}.state")
        if not isinstance(state.get("ready"), bool):
            raise InvalidInputError(f"{where}.state.ready", "must be true or false")
        return cls(
            snapshot_id=_str(data, "snapshotId", where),
            state=state,
            **_pacing(data, where),
        )


# -- the caller's side: drop-in waits -----------------------------------------------------------------


def run_operation(
    context: df.DurableOrchestrationContext,
    begin: str,
    data: dict[str, Any],
    deadline: datetime,
    options: RunOptions,
    what: str,
) -> Orchestration:
    """Start an ARM operation (begin activity ``begin`` with ``data``, retried after transient failures
    as :func:`~backup.workflow.retries.call_activity` retries) and follow it until it succeeded, both in
    one operation watch; answer its last state, with whatever else the begin answered (a snapshot's id).

    One sub-orchestration instead of an activity and then a watch: the caller's history gains the four
    events of the wait only, and one episode fewer to replay. Fails as :func:`wait_for_operation` does,
    and with the begin's own failure when the begin fails.
    """
    watch = OperationWatch(
        op={"state": "NotStarted"},
        begin=Begin(begin, data, options.retry),
        deadline=_utc(deadline),
        what=what,
        poll_initial_seconds=options.poll_initial_seconds,
        poll_max_seconds=options.poll_max_seconds,
    )
    outcome = yield context.call_sub_orchestrator(
        OPERATION_WATCH_ORCHESTRATOR, watch.to_json(), operation_watch_id(context.instance_id, what)
    )
    return _result(outcome)


def copy_and_wait(
    context: df.DurableOrchestrationContext,
    start: dict[str, Any],
    blob: dict[str, str],
    options: RunOptions,
    deadline: datetime,
) -> Orchestration:
    """Start the copy (``start_copy`` with ``start``, retried after transient failures as
    :func:`~backup.workflow.retries.call_activity` retries) and follow it (HEAD of the destination blob)
    until it succeeded, both in one copy watch; answer the last copy answer. The copy watch's custom
    status has the copy's progress meanwhile. A copy that failed, was aborted, or ran past ``deadline``
    raises an :class:`ActivityFailure` with the failure's code and message, as a failed start does."""
    watch = CopyWatch(
        copy=None,
        blob=dict(blob),
        start=Begin(act.START_COPY, start, options.retry),
        deadline=_utc(deadline),
        poll_initial_seconds=options.poll_initial_seconds,
        poll_max_seconds=options.poll_max_seconds,
    )
    outcome = yield context.call_sub_orchestrator(
        COPY_WATCH_ORCHESTRATOR, watch.to_json(), copy_watch_id(context.instance_id)
    )
    return _result(outcome)


def wait_for_readiness(
    context: df.DurableOrchestrationContext,
    snapshot_id: str,
    state: dict[str, Any],
    deadline: datetime,
    options: RunOptions,
) -> Orchestration:
    """Follow a snapshot's background copy (``snapshot_readiness``) from its last answer ``state`` until
    the snapshot is ready; answer the last readiness answer. Its percent, meanwhile, is in the watch's
    custom status (``{"snapshotCopyPercent", "accessState", "polls"}``)."""
    if state["ready"]:
        return state
    watch = ReadinessWatch(
        snapshot_id=snapshot_id,
        state=state,
        deadline=_utc(deadline),
        poll_initial_seconds=options.poll_initial_seconds,
        poll_max_seconds=options.poll_max_seconds,
    )
    outcome = yield context.call_sub_orchestrator(
        READINESS_WATCH_ORCHESTRATOR, watch.to_json(), readiness_watch_id(context.instance_id)
    )
    return _result(outcome)


def _result(outcome: Any) -> dict[str, Any]:
    """A watch's answer: its result, or its failure raised again with its code."""
    failed = outcome.get("failed") if isinstance(outcome, dict) else None
    if isinstance(failed, dict):
        code = failed.get("code")
        known = code if code in {c.value for c in FailureCode} else FailureCode.INTERNAL.value
        raise ActivityFailure(Failure(FailureCode(known), str(failed.get("message", ""))))
    if not isinstance(outcome, dict) or not isinstance(outcome.get("result"), dict):
        raise ActivityFailure(Failure(FailureCode.INTERNAL, "a wait ended without a result"))
    result: dict[str, Any] = outcome["result"]
    return result


# -- the watches (orchestrators) ----------------------------------------------------------------------


def watch_operation(context: df.DurableOrchestrationContext) -> Orchestration:
    """Wait, poll the ARM operation once (``poll_operation``), then finish or continue as new with its
    new state: ``{"result": <last answer>}`` once it succeeded.

    A ``Throttled`` answer names the call to repeat after the wait (a begin that was refused with 429).
    A transient failure of the poll is ridden out (the module docstring); any other failure ends the
    watch with ``{"failed": {"code", "message"}}``.
    """
    watch = OperationWatch.from_json(context.get_input())
    if watch.begin is not None:
        # run_operation's first execution starts the operation, then polls it as below.
        started, failed = yield from _start(context, watch.begin, watch.deadline)
        if failed is not None:
            return failed
        watch = replace(watch, begin=None, op=started)
    op = watch.op
    if op["state"] == "Succeeded":
        return {"result": op}
    carried = {key: value for key, value in op.items() if key not in _ANSWER_KEYS}
    delay = next_delay(watch.delay, watch.poll_initial_seconds, watch.poll_max_seconds, op.get("retryAfter"))
    try:
        yield from sleep_until_next_poll(context, delay, watch.deadline, watch.what)
        if op["state"] == "Throttled":
            op = yield context.call_activity(op["retry"]["activity"], op["retry"]["input"])
        else:
            op = yield context.call_activity(act.POLL_OPERATION, {"operation": op["operation"]})
        op = {**carried, **op}
    except Exception as exc:
        failure = failure_of(exc)
        if not _rides_out(failure, watch.failures):
            return {"failed": failure.to_json()}
        failed = replace(watch, delay=delay, polls=watch.polls + 1, failures=watch.failures + 1)
        context.continue_as_new(failed.to_json())
        return None
    if op["state"] == "Succeeded":
        return {"result": op}
    context.continue_as_new(replace(watch, op=op, delay=delay, polls=watch.polls + 1, failures=0).to_json())
    return None


def watch_copy(context: df.DurableOrchestrationContext) -> Orchestration:
    """Wait, poll the copy once (``copy_status``), then finish or continue as new with what it learnt.

    Ends with ``{"result": <copy answer>}`` once the copy succeeded, ``{"failed": {"code", "message"}}``
    when it failed, was aborted, or ran past its deadline (a transient failure of the poll is ridden out).
    """
    watch = CopyWatch.from_json(context.get_input())
    if watch.start is not None:
        # copy_and_wait's first execution starts the copy, then polls it as below.
        started, failed = yield from _start(context, watch.start, watch.deadline)
        if failed is not None:
            return failed
        watch = replace(watch, start=None, copy=started)
    copy = watch.copy
    assert copy is not None  # from_json requires one once started
    if copy["status"] == "success":
        context.set_custom_status({"bytesCopied": copy["copied"], "bytesTotal": copy["total"], "polls": 0})
        return {"result": copy}
    context.set_custom_status(
        {"bytesCopied": copy["copied"], "bytesTotal": copy["total"], "polls": watch.polls}
    )
    delay = next_delay(watch.delay, watch.poll_initial_seconds, watch.poll_max_seconds, None)
    what = f"copy (at {copy['copied']} of {copy['total']} bytes)"
    try:
        yield from sleep_until_next_poll(context, delay, watch.deadline, what)
        copy = yield context.call_activity(act.COPY_STATUS, {**watch.blob, "copyId": copy["copyId"]})
    except Exception as exc:
        failure = failure_of(exc)
        if not _rides_out(failure, watch.failures):
            return {"failed": failure.to_json()}
        failed = replace(watch, delay=delay, polls=watch.polls + 1, failures=watch.failures + 1)
        context.continue_as_new(failed.to_json())
        return None
    if copy["status"] == "success":
        context.set_custom_status(
            {"bytesCopied": copy["copied"], "bytesTotal": copy["total"], "polls": watch.polls + 1}
        )
        return {"result": copy}
    context.continue_as_new(
        replace(watch, copy=copy, delay=delay, polls=watch.polls + 1, failures=0).to_json()
    )
    return None


def watch_readiness(context: df.DurableOrchestrationContext) -> Orchestration:
    """Wait, look at the snapshot once (``snapshot_readiness``), then finish or continue as new.

    Ends with ``{"result": <readiness answer>}`` once the snapshot can be read, ``{"failed": {"code",
    "message"}}`` when its creation or background copy failed or the deadline passed.
    """
    watch = ReadinessWatch.from_json(context.get_input())
    state = watch.state
    percent = state.get("completionPercent")
    context.set_custom_status(
        {"snapshotCopyPercent": percent, "accessState": state.get("accessState"), "polls": watch.polls}
    )
    delay = next_delay(
        watch.delay, watch.poll_initial_seconds, watch.poll_max_seconds, state.get("retryAfter")
    )
    progress = "no progress reported" if percent is None else f"at {percent:g}%"
    access = state.get("accessState")
    what = f"the snapshot's background copy ({progress}" + (f", {access})" if access else ")")
    try:
        yield from sleep_until_next_poll(context, delay, watch.deadline, what)
        state = yield context.call_activity(act.SNAPSHOT_READINESS, {"snapshotId": watch.snapshot_id})
    except Exception as exc:
        failure = failure_of(exc)
        if not _rides_out(failure, watch.failures):
            return {"failed": failure.to_json()}
        failed = replace(watch, delay=delay, polls=watch.polls + 1, failures=watch.failures + 1)
        context.continue_as_new(failed.to_json())
        return None
    if state["ready"]:
        context.set_custom_status(
            {
                "snapshotCopyPercent": state.get("completionPercent"),
                "accessState": state.get("accessState"),
                "polls": watch.polls + 1,
            }
        )
        return {"result": state}
    context.continue_as_new(
        replace(watch, state=state, delay=delay, polls=watch.polls + 1, failures=0).to_json()
    )
    return None


def _start(context: df.DurableOrchestrationContext, call: Begin, deadline: datetime) -> Orchestration:
    """Make the call that starts what a watch follows (retried after transient failures, never past
    ``deadline``); answers ``(its answer, None)``, or ``(None, the watch's outcome)`` if it failed."""
    try:
        answer = yield from call_activity(context, call.activity, call.input, call.retry, deadline=deadline)
    except Exception as exc:
        return None, {"failed": failure_of(exc).to_json()}
    return answer, None


def _rides_out(failure: Failure, failures_so_far: int) -> bool:
    """Whether a watch polls again after ``failure`` (transient, and not too many in a row)."""
    return failure.code.retryable and failures_so_far < MAX_POLL_FAILURES


# -- small helpers ------------------------------------------------------------------------------------


def _utc(when: datetime) -> datetime:
    # The SDK hands out UTC datetimes, aware or naive depending on how the host wrote the timestamp.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _instant(when: datetime) -> str:
    # Full precision (models.iso keeps milliseconds): a deadline must not move when it is handed on.
    return _utc(when).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_instant(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidInputError(where, "must be an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(where, f"{value[:40]!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise InvalidInputError(where, "must carry a time zone")
    return parsed.astimezone(UTC)


def _pacing_json(watch: _Pacing) -> dict[str, Any]:
    """The JSON of what every watch carries: its deadline, poll delays and progress so far."""
    return {
        "deadline": _instant(watch.deadline),
        "pollInitialSeconds": watch.poll_initial_seconds,
        "pollMaxSeconds": watch.poll_max_seconds,
        "delay": watch.delay,
        "polls": watch.polls,
        "pollFailures": watch.failures,
    }


def _pacing(data: dict[str, Any], where: str) -> dict[str, Any]:
    """What every watch carries (:func:`_pacing_json`), validated, as keyword arguments of its type."""
    delay, polls, failures = _progress(data, where)
    return {
        "deadline": _parse_instant(data.get("deadline"), f"{where}.deadline"),
        "poll_initial_seconds": _seconds(data, "pollInitialSeconds", where),
        "poll_max_seconds": _seconds(data, "pollMaxSeconds", where),
        "delay": delay,
        "polls": polls,
        "failures": failures,
    }


def _progress(data: dict[str, Any], where: str) -> tuple[float | None, int, int]:
    """A watch's ``delay`` (the last wait, or null), ``polls`` and ``pollFailures`` so far, validated."""
    delay = data.get("delay")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0):
        raise InvalidInputError(f"{where}.delay", "must be a number of seconds or null")
    counts = []
    for key in ("polls", "pollFailures"):
        value = data.get(key, 0)  # pollFailures: absent from the watches of runs started before it
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInputError(f"{where}.{key}", "must be a whole number")
        counts.append(value)
    return (None if delay is None else float(delay)), counts[0], counts[1]


def _seconds(data: dict[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3600:
        raise InvalidInputError(f"{where}.{key}", "must be a whole number of seconds from 1 to 3600")
    return value
