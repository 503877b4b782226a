"""Fault injection for the emulated ARM: what the next calls to an operation should suffer.

Two kinds, both consumed in the order they were added and optionally limited to one resource name:

- a *call fault* answers the next ``count`` calls of an operation with 429 (``Retry-After``), 500, a
  connection reset, or ``malformed``: 200 with an HTML page where ARM's JSON belongs (what a proxy or
  gateway in the way might send), before the call does anything; or ``lost``: the call is carried out
  and then its connection reset, so the client never hears that it was (what tests whether repeating
  the call is safe);
- an *outcome fault* lets the next ``count`` long-running operations of that kind be accepted as usual
  and then end ``Failed`` or ``Canceled`` with an error.

Operations are named by the spec's operationId (``Snapshots_GrantAccess``), plus
``DiskOperations_Get`` for the operation-status poll. :meth:`FaultPlan.add` validates a control-surface
request and raises :class:`~backup.errors.InvalidInputError` naming the bad field.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from backup.errors import InvalidInputError
from testbed.emulator.operations import STATUS_OPERATION

CallAction = Literal["429", "500", "reset", "malformed", "lost"]
OutcomeAction = Literal["Failed", "Canceled"]

#: Every operation the emulator serves, by the spec's operationId.
OPERATIONS = frozenset(
    {
        "Disks_Get",
        "Disks_List",
        "Disks_ListByResourceGroup",
        "Disks_CreateOrUpdate",
        "Disks_Delete",
        "Disks_GrantAccess",
        "Disks_RevokeAccess",
        "Snapshots_Get",
        "Snapshots_List",
        "Snapshots_ListByResourceGroup",
        "Snapshots_CreateOrUpdate",
        "Snapshots_Delete",
        "Snapshots_Update",
        "Snapshots_GrantAccess",
        "Snapshots_RevokeAccess",
        STATUS_OPERATION,
    }
)
#: The operations that run long, so an outcome fault can apply to them.
LONG_RUNNING = frozenset(
    {
        "Disks_CreateOrUpdate",
        "Disks_Delete",
        "Disks_GrantAccess",
        "Disks_RevokeAccess",
        "Snapshots_CreateOrUpdate",
        "Snapshots_Delete",
        "Snapshots_Update",
        "Snapshots_GrantAccess",
        "Snapshots_RevokeAccess",
    }
)


@dataclass
class Fault:
    """One injected fault; ``remaining`` counts the calls (or operations) it still applies to."""

    operation: str
    action: str  # "429" | "500" | "reset" | "malformed" | "lost" | "Failed" | "Canceled"
    remaining: int
    resource_name: str | None = None
    retry_after: int = 1
    code: str | None = None
    message: str | None = None

    @property
    def is_outcome(self) -> bool:
        """Whether this fault changes how an operation ends rather than how a call is answered."""
        return self.action in ("Failed", "Canceled")

    def matches(self, operation: str, resource_name: str | None) -> bool:
        """Whether this fault applies to a call of ``operation`` on ``resource_name``."""
        if self.remaining <= 0 or self.operation != operation:
            return False
        if self.resource_name is None:
            return True
        return resource_name is not None and resource_name.lower() == self.resource_name.lower()


class FaultPlan:
    """The faults waiting to happen; thread-safe."""

    def __init__(self) -> None:
        """An empty plan."""
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, request: Any) -> Fault:
        """Add a fault from a control-surface JSON object; see ``docs/emulator.md`` for its fields."""
        fault = parse_fault(request)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take_call_fault(self, operation: str, resource_name: str | None) -> Fault | None:
        """The first call fault for this call, counted as used; ``None`` if there is none."""
        return self._take(operation, resource_name, outcome=False)

    def take_outcome_fault(self, operation: str, resource_name: str | None) -> Fault | None:
        """The first outcome fault for this operation, counted as used; ``None`` if there is none."""
        return self._take(operation, resource_name, outcome=True)

    def _take(self, operation: str, resource_name: str | None, *, outcome: bool) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.is_outcome == outcome and fault.matches(operation, resource_name):
                    fault.remaining -= 1
                    self._faults = [f for f in self._faults if f.remaining > 0]
                    return fault
        return None

    def pending(self) -> list[dict[str, Any]]:
        """The faults not yet used up, as JSON objects."""
        with self._lock:
            return [asdict(f) for f in self._faults]

    def clear(self) -> None:
        """Forget every fault."""
        with self._lock:
            self._faults.clear()


def parse_fault(request: Any) -> Fault:
    """Validate a fault request (``operation``, ``action``, ``count``, ``resource_name``, ...)."""
    if not isinstance(request, dict):
        raise InvalidInputError("body", "must be a JSON object")
    operation = request.get("operation")
    if operation not in OPERATIONS:
        raise InvalidInputError(
            "operation", f"must be one of {', '.join(sorted(OPERATIONS))}; got {operation!r}"
        )
    action = request.get("action")
    if action not in ("429", "500", "reset", "malformed", "lost", "Failed", "Canceled"):
        raise InvalidInputError(
            "action", f"must be 429, 500, reset, malformed, lost, Failed or Canceled; got {action!r}"
        )
    if action in ("Failed", "Canceled") and operation not in LONG_RUNNING:
        raise InvalidInputError(
            "action", f"{operation} is not a long-running operation; it cannot end {action}"
        )
    count = request.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidInputError("count", f"must be a positive integer; got {count!r}")
    resource_name = request.get("resource_name")
    if resource_name is not None and not isinstance(resource_name, str):
        raise InvalidInputError("resource_name", "must be a string")
    retry_after = request.get("retry_after", 1)
    if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
        raise InvalidInputError("retry_after", f"must be a non-negative integer; got {retry_after!r}")
    code, message = request.get("code"), request.get("message")
    for name, value in (("code", code), ("message", message)):
        if value is not None and not isinstance(value, str):
            raise InvalidInputError(name, "must be a string")
    return Fault(
        operation=cast(str, operation),
        action=cast(str, action),
        remaining=count,
        resource_name=resource_name,
        retry_after=retry_after,
        code=code,
        message=message,
    )
