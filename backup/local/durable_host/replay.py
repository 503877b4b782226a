"""The host's decisions in the replay loop, as pure functions of an execution's data.

One *episode*: the host appends ``OrchestratorStarted`` and a batch of new events to the history, runs
the orchestrator over the whole history, and gets back every action the orchestrator has taken since
the execution started. :func:`plan_episode` turns that into what the host must do next; the host
(:mod:`backup.local.durable_host.host`) only carries the plan out. The rules, each one the real host's:

**Sequence numbers.** Every task the SDK creates gets the next number of one per-execution counter, in
the order the orchestrator yields them (compound children in order). Actions appear in the action list
in that same order, so the n-th new action gets the n-th new number. External-event waits take no
number. Retries take numbers that never appear as actions: after a ``TaskFailed`` the SDK's retry task
creates a timer (next number), and when that timer fires a new attempt (the number after). The host
hands out those numbers when it delivers the event. For its count to match the SDK's, a retry
allocation must happen before any new action of the same episode: :func:`select_batch` puts at most one
such event in a batch, and only first.

**Non-determinism.** The SDK matches completions by number only and never notices a changed
orchestrator. The host compares each replayed action with the one recorded at the same position (kind,
name, sequence number) and fails the instance with DTFx's ``Non-Deterministic workflow detected``
message on a mismatch or a missing action.

**Awaiting in order.** The extension replays an out-of-process orchestrator's actions one top-level
action at a time, awaiting each before invoking the next (exceptions swallowed): a ``WhenAll`` waits for
all of its children even after one failed, a later action is only scheduled once the earlier ones are
done, and the orchestration's completion or failure only counts once every action is. The host applies
the same gate.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from backup.local.durable_host import history as h
from backup.redact import redact

__all__ = [
    "ActivityCall",
    "ChildStart",
    "Completed",
    "ContinuedAsNew",
    "EpisodePlan",
    "ExecutionState",
    "Failed",
    "Kind",
    "Leaf",
    "Node",
    "Outcome",
    "Outstanding",
    "Phase",
    "TimerArm",
    "expects",
    "find_nondeterminism",
    "is_retry_sensitive",
    "outstanding",
    "parse_actions",
    "plan_episode",
    "select_batch",
]

NON_DETERMINISM_PREFIX = "Non-Deterministic workflow detected: "
_CHANGED_CODE = "Was a change made to the orchestrator code after this instance had already started running?"


class Kind(StrEnum):
    """What a leaf action does."""

    ACTIVITY = "activity"
    SUB_ORCHESTRATION = "sub-orchestration"
    TIMER = "timer"
    EXTERNAL_EVENT = "external event"
    CONTINUE_AS_NEW = "continue-as-new"
    UNSUPPORTED = "unsupported"


class Phase(StrEnum):
    """Where a leaf is: not yet invoked (gated), running, waiting on a retry timer, or done."""

    PENDING = "pending"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    DONE = "done"


# SDK actionType -> kind; WhenAny (11) and WhenAll (12) are compound.
_KINDS = {
    0: Kind.ACTIVITY,
    1: Kind.ACTIVITY,
    2: Kind.SUB_ORCHESTRATION,
    3: Kind.SUB_ORCHESTRATION,
    4: Kind.CONTINUE_AS_NEW,
    5: Kind.TIMER,
    6: Kind.EXTERNAL_EVENT,
}
_UNSUPPORTED = {7: "CallEntity", 8: "CallHttp", 9: "SignalEntity", 10: "ScheduledSignalEntity"}
_WITH_RETRY = frozenset({1, 3})
_WHEN_ANY, _WHEN_ALL = 11, 12


@dataclass
class Leaf:
    """One non-compound action of an execution, with what the host has done about it.

    ``seq`` is the action's sequence number (``None`` for external-event waits). A retrying action keeps
    its attempt in ``current_seq`` and its pending retry timer in ``retry_timer_seq``.
    """

    kind: Kind
    name: str
    seq: int | None = None
    phase: Phase = Phase.PENDING
    input_json: str | None = None
    instance_id: str | None = None
    fire_at: str | None = None
    cancelled: bool = False
    max_attempts: int = 0
    retry_interval_ms: int = 0
    attempts: int = 0
    current_seq: int | None = None
    child_instance_id: str | None = None
    retry_timer_seq: int | None = None
    retry_fire_at: str | None = None

    @property
    def retries(self) -> bool:
        """Whether this action was scheduled ``..._with_retry``."""
        return self.max_attempts > 0

    def twin(self) -> Leaf:
        """A shallow copy: the same field values (all immutable), in a leaf of its own."""
        twin = object.__new__(Leaf)
        twin.__dict__.update(self.__dict__)
        return twin


@dataclass
class ExecutionState:
    """The host's bookkeeping for one execution: its leaves, the sequence counter, events delivered."""

    leaves: list[Leaf] = field(default_factory=list)
    next_seq: int = 0
    raised: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for the store). Leaves hold only plain values (``Kind`` and ``Phase`` are
        strings), so a copy of each one's fields will do (``asdict`` deep-copies, at some cost)."""
        return {
            "leaves": [dict(vars(leaf)) for leaf in self.leaves],
            "next_seq": self.next_seq,
            "raised": dict(self.raised),
        }

    def copy(self) -> ExecutionState:
        """An independent copy, made at every episode. A leaf holds only immutable values, so a shallow
        copy of each will do: its fields copied as they are (``copy.deepcopy`` was a tenth of all replay
        time; ``dataclasses.replace``, which runs ``__init__`` again, four times this)."""
        return ExecutionState(
            leaves=[leaf.twin() for leaf in self.leaves], next_seq=self.next_seq, raised=dict(self.raised)
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExecutionState:
        """Rebuild from :meth:`to_json` output."""
        leaves = []
        for item in data.get("leaves", []):
            values = dict(item)
            values["kind"] = Kind(values["kind"])
            values["phase"] = Phase(values["phase"])
            leaves.append(Leaf(**values))
        return cls(
            leaves=leaves,
            next_seq=int(data.get("next_seq", 0)),
            raised={str(k): int(v) for k, v in data.get("raised", {}).items()},
        )


@dataclass(frozen=True)
class Node:
    """The shape of one top-level action: a leaf (by index into the flat list) or WhenAll/WhenAny."""

    leaf: int | None = None
    mode: str = "leaf"
    children: tuple[Node, ...] = ()


@dataclass(frozen=True)
class ActivityCall:
    """Run activity ``name`` for task ``seq`` with JSON text ``input_json``."""

    seq: int
    name: str
    input_json: str | None


@dataclass(frozen=True)
class TimerArm:
    """Fire timer ``seq`` at ``fire_at``."""

    seq: int
    fire_at: datetime


@dataclass(frozen=True)
class ChildStart:
    """Start sub-orchestration ``name`` as ``instance_id`` for task ``seq``."""

    seq: int
    name: str
    instance_id: str
    input_json: str | None


@dataclass(frozen=True)
class Completed:
    """The execution returned ``output`` (a JSON value)."""

    output: Any


@dataclass(frozen=True)
class Failed:
    """The execution failed: ``reason`` is what the status shows, ``details`` the error text."""

    reason: str
    details: str


@dataclass(frozen=True)
class ContinuedAsNew:
    """The execution continues as a new one with ``input_json``."""

    input_json: str | None


Outcome = Completed | Failed | ContinuedAsNew


@dataclass
class EpisodePlan:
    """What the host must do after an episode (all of it, or nothing if it crashes first)."""

    state: ExecutionState
    events: list[dict[str, Any]] = field(default_factory=list)
    activities: list[ActivityCall] = field(default_factory=list)
    timers: list[TimerArm] = field(default_factory=list)
    cancelled_timers: list[int] = field(default_factory=list)
    children: list[ChildStart] = field(default_factory=list)
    outcome: Outcome | None = None
    custom_status: Any = None


@dataclass(frozen=True)
class Outstanding:
    """Work a restarted host must pick up again: in-flight activities, armed timers, running children."""

    activities: list[ActivityCall]
    timers: list[TimerArm]
    children: list[ChildStart]


# --- actions ---------------------------------------------------------------------------------------


def parse_actions(actions: Sequence[dict[str, Any]]) -> tuple[list[Node], list[dict[str, Any]]]:
    """Split the SDK's top-level actions into their shape and the flat list of leaf actions."""
    flat: list[dict[str, Any]] = []

    def walk(action: dict[str, Any]) -> Node:
        if not isinstance(action, dict) or not isinstance(action.get("actionType"), int):
            raise ValueError(f"malformed action from the orchestrator: {action!r}")
        action_type = action["actionType"]
        if action_type in (_WHEN_ALL, _WHEN_ANY):
            children = tuple(walk(child) for child in action.get("compoundActions") or [])
            return Node(mode="all" if action_type == _WHEN_ALL else "any", children=children)
        flat.append(action)
        return Node(leaf=len(flat) - 1)

    nodes = [walk(action) for action in actions]
    return nodes, flat


def _identity(action: dict[str, Any]) -> tuple[Kind, str]:
    action_type = action["actionType"]
    if action_type in _UNSUPPORTED:
        return Kind.UNSUPPORTED, _UNSUPPORTED[action_type]
    kind = _KINDS.get(action_type)
    if kind is None:
        return Kind.UNSUPPORTED, f"actionType {action_type}"
    if kind in (Kind.ACTIVITY, Kind.SUB_ORCHESTRATION):
        return kind, str(action.get("functionName", ""))
    if kind is Kind.EXTERNAL_EVENT:
        return kind, str(action.get("externalEventName", ""))
    return kind, ""


def _new_leaf(action: dict[str, Any]) -> Leaf:
    kind, name = _identity(action)
    leaf = Leaf(kind=kind, name=name)
    if kind in (Kind.ACTIVITY, Kind.SUB_ORCHESTRATION, Kind.CONTINUE_AS_NEW):
        leaf.input_json = action.get("input")
    if kind is Kind.SUB_ORCHESTRATION:
        leaf.instance_id = action.get("instanceId") or None
    if kind is Kind.TIMER:
        leaf.fire_at = h.format_timestamp(h.parse_timestamp(str(action.get("fireAt"))))
        leaf.cancelled = bool(action.get("isCanceled", False))
    if action["actionType"] in _WITH_RETRY:
        options = action.get("retryOptions") or {}
        leaf.max_attempts = _positive_int(options, "maxNumberOfAttempts")
        leaf.retry_interval_ms = _positive_int(options, "firstRetryIntervalInMilliseconds")
    return leaf


def _positive_int(options: dict[str, Any], key: str) -> int:
    value = options.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"retryOptions.{key} must be a positive integer, got {value!r}")
    return value


# --- non-determinism -------------------------------------------------------------------------------


def _describe(kind: Kind, name: str, seq: int | None, position: int) -> str:
    number = f"sequence number {seq}" if seq is not None else f"position {position}"
    if kind is Kind.ACTIVITY:
        return f"an activity task with {number} named '{name}'"
    if kind is Kind.SUB_ORCHESTRATION:
        return f"a sub-orchestration task with {number} named '{name}'"
    if kind is Kind.TIMER:
        return f"a timer task with {number}"
    if kind is Kind.EXTERNAL_EVENT:
        return f"a wait for external event '{name}' at {number}"
    if kind is Kind.CONTINUE_AS_NEW:
        return f"a continue-as-new with {number}"
    return f"a {name} action with {number}"


def find_nondeterminism(recorded: Sequence[Leaf], actions: Sequence[dict[str, Any]]) -> str | None:
    """Why the replayed ``actions`` contradict the ``recorded`` leaves, or ``None`` if they agree.

    Compares kind and name position by position, as DTFx compares sequence number, action type and name.
    """
    for position, leaf in enumerate(recorded):
        # Described only on a mismatch: this runs over every recorded action at every episode.
        if position >= len(actions):
            previous = _describe(leaf.kind, leaf.name, leaf.seq, position)
            return (
                f"A previous execution of this orchestration scheduled {previous}, but the current "
                f"replay execution hasn't (yet?) scheduled this task. {_CHANGED_CODE}"
            )
        kind, name = _identity(actions[position])
        if (kind, name) != (leaf.kind, leaf.name):
            previous = _describe(leaf.kind, leaf.name, leaf.seq, position)
            current = _describe(kind, name, leaf.seq, position)
            return (
                f"A previous execution of this orchestration scheduled {previous}, but the current "
                f"orchestration replay instead produced {current}. {_CHANGED_CODE}"
            )
    return None


# --- which events go into an episode ---------------------------------------------------------------


def _owners(state: ExecutionState) -> dict[int, Leaf]:
    owners: dict[int, Leaf] = {}
    for leaf in state.leaves:
        if leaf.kind is Kind.TIMER and leaf.seq is not None:
            owners[leaf.seq] = leaf
        if leaf.current_seq is not None:
            owners[leaf.current_seq] = leaf
        if leaf.retry_timer_seq is not None:
            owners[leaf.retry_timer_seq] = leaf
    return owners


_TASK_DONE = {h.EventType.TASK_COMPLETED, h.EventType.TASK_FAILED}
_CHILD_DONE = {
    h.EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
    h.EventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
}
_FAILURES = {h.EventType.TASK_FAILED, h.EventType.SUB_ORCHESTRATION_INSTANCE_FAILED}


def _target(event: dict[str, Any]) -> int | None:
    value = (
        event.get("TimerId")
        if event["EventType"] == h.EventType.TIMER_FIRED
        else event.get("TaskScheduledId")
    )
    return value if isinstance(value, int) else None


def is_retry_sensitive(state: ExecutionState, event: dict[str, Any]) -> bool:
    """Whether delivering ``event`` makes the SDK allocate a sequence number outside the action list.

    That is a failed attempt of a retrying task (the SDK creates a retry timer) and the firing of a
    retry timer with attempts left (the SDK reschedules the task).
    """
    event_type = event["EventType"]
    seq = _target(event)
    leaf = _owners(state).get(seq) if seq is not None else None
    if leaf is None or not leaf.retries:
        return False
    if event_type in _FAILURES:
        return leaf.phase is Phase.RUNNING and leaf.current_seq == seq
    if event_type == h.EventType.TIMER_FIRED:
        return (
            leaf.phase is Phase.RETRY_WAIT
            and leaf.retry_timer_seq == seq
            and leaf.attempts < leaf.max_attempts
        )
    return False


def select_batch(state: ExecutionState, inbox: Sequence[dict[str, Any]]) -> int:
    """How many leading inbox events the next episode delivers.

    As many as are waiting, except that a retry-sensitive event (:func:`is_retry_sensitive`) must come
    first in its batch, so at most one goes per episode.
    """
    count = 0
    for event in inbox:
        if count > 0 and is_retry_sensitive(state, event):
            break
        count += 1
    return count


def expects(state: ExecutionState, waiting: Sequence[dict[str, Any]], event: dict[str, Any]) -> bool:
    """Whether ``event`` completes something this execution is waiting for (and is not a duplicate).

    External events are always welcome (the SDK buffers them). ``waiting`` is the undelivered inbox.
    """
    event_type = event["EventType"]
    if event_type == h.EventType.EVENT_RAISED:
        return True
    seq = _target(event)
    leaf = _owners(state).get(seq) if seq is not None else None
    if leaf is None:
        return False
    if event_type in _TASK_DONE or event_type in _CHILD_DONE:
        kind = Kind.ACTIVITY if event_type in _TASK_DONE else Kind.SUB_ORCHESTRATION
        ok = leaf.kind is kind and leaf.phase is Phase.RUNNING and leaf.current_seq == seq
        group = _TASK_DONE if kind is Kind.ACTIVITY else _CHILD_DONE
    elif event_type == h.EventType.TIMER_FIRED:
        ok = (leaf.kind is Kind.TIMER and leaf.phase is Phase.RUNNING and leaf.seq == seq) or (
            leaf.phase is Phase.RETRY_WAIT and leaf.retry_timer_seq == seq
        )
        group = {h.EventType.TIMER_FIRED}
    else:
        return False
    duplicate = any(other["EventType"] in group and _target(other) == seq for other in waiting)
    return ok and not duplicate


def outstanding(
    state: ExecutionState, waiting: Sequence[dict[str, Any]], *, execution_id: str
) -> Outstanding:
    """What was in flight when a host stopped: re-run those activities, re-arm those timers, re-check
    those children (activities run at least once, as on the real host)."""
    arrived = {(event["EventType"], _target(event)) for event in waiting}
    activities: list[ActivityCall] = []
    timers: list[TimerArm] = []
    children: list[ChildStart] = []
    for leaf in state.leaves:
        seq = leaf.current_seq
        if leaf.phase is Phase.RUNNING and leaf.kind is Kind.ACTIVITY and seq is not None:
            if not any((t, seq) in arrived for t in _TASK_DONE):
                activities.append(ActivityCall(seq, leaf.name, leaf.input_json))
        elif leaf.phase is Phase.RUNNING and leaf.kind is Kind.SUB_ORCHESTRATION and seq is not None:
            if not any((t, seq) in arrived for t in _CHILD_DONE):
                instance_id = leaf.child_instance_id or f"{execution_id}:{seq}"
                children.append(ChildStart(seq, leaf.name, instance_id, _child_input(leaf)))
        elif leaf.phase is Phase.RUNNING and leaf.kind is Kind.TIMER and leaf.seq is not None:
            if (h.EventType.TIMER_FIRED, leaf.seq) not in arrived and leaf.fire_at:
                timers.append(TimerArm(leaf.seq, h.parse_timestamp(leaf.fire_at)))
        elif (
            leaf.phase is Phase.RETRY_WAIT
            and leaf.retry_timer_seq is not None
            and leaf.retry_fire_at
            and (h.EventType.TIMER_FIRED, leaf.retry_timer_seq) not in arrived
        ):
            timers.append(TimerArm(leaf.retry_timer_seq, h.parse_timestamp(leaf.retry_fire_at)))
    return Outstanding(activities, timers, children)


def _child_input(leaf: Leaf) -> str | None:
    # The extension hands the SDK's input text to DTFx as a .NET string, which serializes it again:
    # the child's stored input is the JSON text of that text (what a Python client sends, too).
    return json.dumps(leaf.input_json) if leaf.input_json is not None else None


# --- the episode -----------------------------------------------------------------------------------


class _EpisodeFailed(Exception):
    """The episode ends the execution as failed (unknown function, unsupported action)."""


class _Planner:
    def __init__(
        self,
        state: ExecutionState,
        *,
        orchestrator: str,
        execution_id: str,
        now: datetime,
        activities: Collection[str],
        orchestrators: Collection[str],
    ) -> None:
        self.plan = EpisodePlan(state=state)
        self.state = state
        self.orchestrator = orchestrator
        self.execution_id = execution_id
        self.now = now
        self.activities = activities
        self.orchestrators = orchestrators

    # deliveries

    def deliver(self, batch: Sequence[dict[str, Any]]) -> None:
        for position, event in enumerate(batch):
            event_type = event["EventType"]
            if event_type == h.EventType.EVENT_RAISED:
                name = str(event.get("Name"))
                self.state.raised[name] = self.state.raised.get(name, 0) + 1
                continue
            seq = _target(event)
            leaf = _owners(self.state).get(seq) if seq is not None else None
            if leaf is None:
                continue
            sensitive = is_retry_sensitive(self.state, event)
            if sensitive and position != 0:
                raise RuntimeError("durable host bug: a retry-sensitive event must open its batch")
            if event_type in _TASK_DONE or event_type in _CHILD_DONE:
                if sensitive:
                    self._arm_retry_timer(leaf)
                elif leaf.current_seq == seq:
                    leaf.phase = Phase.DONE
            elif event_type == h.EventType.TIMER_FIRED:
                if leaf.kind is Kind.TIMER and leaf.seq == seq:
                    leaf.phase = Phase.DONE
                elif sensitive:
                    self._start_attempt(leaf, self._allocate())
                elif leaf.retry_timer_seq == seq:
                    leaf.phase = Phase.DONE  # attempts exhausted: the SDK fails the task now

    def _allocate(self) -> int:
        seq = self.state.next_seq
        self.state.next_seq += 1
        return seq

    def _arm_retry_timer(self, leaf: Leaf) -> None:
        # DTFx's retry: a timer at "now + interval" (Python's RetryOptions has no backoff coefficient).
        seq = self._allocate()
        fire_at = self.now + timedelta(milliseconds=leaf.retry_interval_ms)
        leaf.phase = Phase.RETRY_WAIT
        leaf.retry_timer_seq = seq
        leaf.retry_fire_at = h.format_timestamp(fire_at)
        self.plan.events.append(h.timer_created(self.now, seq=seq, fire_at=fire_at))
        self.plan.timers.append(TimerArm(seq, fire_at))

    def _start_attempt(self, leaf: Leaf, seq: int) -> None:
        # The first attempt runs under the action's own number; retries under freshly allocated ones.
        leaf.attempts += 1
        leaf.current_seq = seq
        leaf.retry_timer_seq = None
        leaf.retry_fire_at = None
        leaf.phase = Phase.RUNNING
        if leaf.kind is Kind.ACTIVITY:
            self.plan.events.append(
                h.task_scheduled(self.now, seq=seq, name=leaf.name, input_json=leaf.input_json)
            )
            self.plan.activities.append(ActivityCall(seq, leaf.name, leaf.input_json))
        else:
            instance_id = leaf.instance_id or f"{self.execution_id}:{seq}"
            leaf.child_instance_id = instance_id
            child_input = _child_input(leaf)
            self.plan.events.append(
                h.sub_orchestration_created(
                    self.now, seq=seq, name=leaf.name, instance_id=instance_id, input_json=child_input
                )
            )
            self.plan.children.append(ChildStart(seq, leaf.name, instance_id, child_input))

    # new and changed actions

    def record(self, flat: Sequence[dict[str, Any]]) -> None:
        for leaf, action in zip(self.state.leaves, flat, strict=False):
            if leaf.kind is Kind.TIMER and action.get("isCanceled") and not leaf.cancelled:
                leaf.cancelled = True
                if leaf.phase is Phase.RUNNING and leaf.seq is not None:
                    leaf.phase = Phase.DONE
                    self.plan.cancelled_timers.append(leaf.seq)
        for action in flat[len(self.state.leaves) :]:
            leaf = _new_leaf(action)
            if leaf.kind is not Kind.EXTERNAL_EVENT:
                leaf.seq = self._allocate()
            self.state.leaves.append(leaf)

    # the gate

    def advance(self, nodes: Sequence[Node]) -> bool:
        """Invoke top-level actions in order, each only once all before it are done."""
        self._ranks = self._event_ranks()
        for node in nodes:
            self._invoke(node)
            if not self._complete(node):
                return False
        return True

    def _event_ranks(self) -> dict[int, int]:
        seen: dict[str, int] = {}
        ranks: dict[int, int] = {}
        for index, leaf in enumerate(self.state.leaves):
            if leaf.kind is Kind.EXTERNAL_EVENT:
                seen[leaf.name] = seen.get(leaf.name, 0) + 1
                ranks[index] = seen[leaf.name]
        return ranks

    def _invoke(self, node: Node) -> None:
        if node.leaf is None:
            for child in node.children:
                self._invoke(child)
            return
        leaf = self.state.leaves[node.leaf]
        if leaf.phase is not Phase.PENDING:
            return
        seq = leaf.seq
        if leaf.kind is Kind.ACTIVITY and seq is not None:
            if leaf.name not in self.activities:
                raise _EpisodeFailed(_unknown_function(leaf.name, "activity", self.activities))
            self._start_attempt(leaf, seq)
        elif leaf.kind is Kind.SUB_ORCHESTRATION and seq is not None:
            if leaf.name not in self.orchestrators:
                raise _EpisodeFailed(_unknown_function(leaf.name, "orchestrator", self.orchestrators))
            self._start_attempt(leaf, seq)
        elif leaf.kind is Kind.TIMER and seq is not None and leaf.fire_at:
            fire_at = h.parse_timestamp(leaf.fire_at)
            self.plan.events.append(h.timer_created(self.now, seq=seq, fire_at=fire_at))
            if leaf.cancelled:
                leaf.phase = Phase.DONE
            else:
                leaf.phase = Phase.RUNNING
                self.plan.timers.append(TimerArm(seq, fire_at))
        elif leaf.kind is Kind.EXTERNAL_EVENT:
            leaf.phase = Phase.RUNNING
        elif leaf.kind is Kind.CONTINUE_AS_NEW:
            leaf.phase = Phase.DONE
        else:
            raise _EpisodeFailed(
                f"The local Durable host does not support {leaf.name} actions (entities and durable HTTP "
                "are not modelled)."
            )

    def _complete(self, node: Node) -> bool:
        if node.leaf is None:
            results = [self._complete(child) for child in node.children]
            if not results:
                return True
            return all(results) if node.mode == "all" else any(results)
        leaf = self.state.leaves[node.leaf]
        waited_for = self.state.raised.get(leaf.name, 0) >= self._ranks.get(node.leaf, 0)
        if leaf.kind is Kind.EXTERNAL_EVENT and leaf.phase is Phase.RUNNING and waited_for:
            leaf.phase = Phase.DONE
        return leaf.phase is Phase.DONE


def _unknown_function(name: str, kind: str, known: Collection[str]) -> str:
    # The extension's own wording (DurableTaskExtension.GetInvalid...FunctionMessage).
    message = (
        f"The function '{name}' doesn't exist, is disabled, or is not an {kind} function. Additional info: "
    )
    if known:
        listed = "', '".join(sorted(known))
        return message + f"The following are the known {kind} functions: '{listed}'."
    return message + f"No {kind} functions are currently registered!"


def unknown_orchestrator_message(name: str, known: Collection[str]) -> str:
    """The extension's message for starting an orchestrator that does not exist."""
    return _unknown_function(name, "orchestrator", known)


def plan_episode(
    state: ExecutionState,
    batch: Sequence[dict[str, Any]],
    output: h.OrchestratorOutput,
    *,
    orchestrator: str,
    execution_id: str,
    now: datetime,
    activities: Collection[str],
    orchestrators: Collection[str],
    has_state: bool = True,
) -> EpisodePlan:
    """Decide what follows an episode that delivered ``batch`` and produced ``output``.

    ``state`` is not modified; the plan carries the new state. ``has_state`` is false when the
    orchestrator failed before the SDK could report its actions (then it simply fails).
    """
    planner = _Planner(
        state.copy(),
        orchestrator=orchestrator,
        execution_id=execution_id,
        now=now,
        activities=activities,
        orchestrators=orchestrators,
    )
    plan = planner.plan
    plan.custom_status = output.custom_status
    failed_as = f"Orchestrator function '{orchestrator}' failed: "
    if not has_state:
        error = redact(output.error or "unknown error")
        plan.outcome = Failed(reason=failed_as + error, details=error)
        return plan
    try:
        nodes, flat = parse_actions(output.actions)
        problem = find_nondeterminism(planner.state.leaves, flat)
        if problem is not None:
            plan.outcome = Failed(reason=NON_DETERMINISM_PREFIX + problem, details=problem)
            return plan
        planner.deliver(batch)
        planner.record(flat)
        all_done = planner.advance(nodes)
    except (_EpisodeFailed, ValueError) as exc:
        message = redact(str(exc))
        plan.outcome = Failed(reason=failed_as + message, details=message)
        return plan
    if not all_done:
        return plan
    if output.error is not None:
        error = redact(output.error)
        plan.outcome = Failed(reason=failed_as + error, details=error)
    elif output.is_done:
        restart = [leaf for leaf in planner.state.leaves if leaf.kind is Kind.CONTINUE_AS_NEW]
        if restart:
            plan.outcome = ContinuedAsNew(input_json=_child_input(restart[-1]))
        else:
            plan.outcome = Completed(output=output.output)
    return plan
