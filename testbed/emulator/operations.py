"""Long-running operations as ARM runs them, counted in polls instead of seconds.

An accepted PUT, DELETE, beginGetAccess or endGetAccess becomes an :class:`Operation`. The client learns
two URLs for it (ARM RPC, "Asynchronous operations"):

- ``Azure-AsyncOperation``: ``.../locations/{loc}/DiskOperations/{id}?p=...&api-version=...``, always
  200 with a status body ``{name, status, startTime[, endTime][, properties.output][, error]}``;
- ``Location``: the same URL plus ``&monitor=true``: 202 while running, then the result the synchronous
  call would have given (the resource; the ``AccessUri``; 200 with no body for revoke/delete), or the
  operation's error status with its ``CloudError`` body.

Each poll of either URL (and each GET of the resource being changed) counts: after ``polls`` of them
the operation ends. No wall clock is involved, so a test with a virtual clock runs at full speed; the
``Retry-After`` the server sends is only advice to the client.

The effect of an operation is the server's business: it passes ``complete`` (run once, when the
operation succeeds, returning the final body) and ``fail`` (run once if it ends Failed or Canceled).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from testbed.emulator.arm_errors import ArmError
from testbed.emulator.resources import ResourceKey, iso, utc_now

Outcome = Literal["Succeeded", "Failed", "Canceled"]

#: The operationId the emulator gives the operation-status poll (ARM has none in DiskRP.json).
STATUS_OPERATION = "DiskOperations_Get"


@dataclass
class Operation:
    """One long-running operation; see the module docstring."""

    name: str  # the spec's operationId, e.g. "Snapshots_GrantAccess"
    key: ResourceKey
    location: str
    polls_left: int
    complete: Callable[[], dict[str, Any] | None]
    fail: Callable[[], None]
    outcome: Outcome = "Succeeded"
    error: ArmError | None = None  # the error a Failed/Canceled outcome reports
    #: Whether the status body carries ``properties.output`` (Compute puts the result there).
    output_in_status: bool = True
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    start_time: datetime = field(default_factory=utc_now)
    end_time: datetime | None = None
    status: str = "InProgress"
    result: dict[str, Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def done(self) -> bool:
        """Whether the operation reached a terminal status."""
        return self.status != "InProgress"

    def advance(self) -> None:
        """Count one poll; finish the operation when its polls are used up."""
        with self._lock:
            if self.done:
                return
            self.polls_left -= 1
            if self.polls_left > 0:
                return
            self._finish()

    def finish_now(self) -> None:
        """End the operation at once (for the synchronous 200 path, when ``polls`` is 0)."""
        with self._lock:
            if not self.done:
                self._finish()

    def _finish(self) -> None:
        self.end_time = utc_now()
        if self.outcome == "Succeeded":
            try:
                self.result = self.complete()
            except ArmError as error:
                # The effect itself failed (e.g. the data plane refused): the operation fails with it.
                self.outcome, self.error = "Failed", error
            else:
                self.status = "Succeeded"
                return
        self.status = self.outcome
        self.fail()

    def status_body(self) -> dict[str, Any]:
        """The ``Azure-AsyncOperation`` body."""
        body: dict[str, Any] = {"name": self.id, "startTime": iso(self.start_time), "status": self.status}
        if self.end_time is not None and self.done:
            body["endTime"] = iso(self.end_time)
        if self.status == "Succeeded" and self.output_in_status and self.result is not None:
            body["properties"] = {"output": self.result}
        if self.status in ("Failed", "Canceled") and self.error is not None:
            body["error"] = {"code": self.error.code, "message": self.error.message}
        return body


def failure_error(outcome: Outcome, code: str | None, message: str | None) -> ArmError:
    """The error an operation forced to end ``Failed`` or ``Canceled`` reports.

    On the ``Location`` URL a Failed operation answers 500 and a Canceled one 409, with the same code.
    """
    if outcome == "Canceled":
        return ArmError(
            409,
            code or "OperationPreempted",
            message or "Operation execution has been preempted by a more recent operation.",
        )
    return ArmError(
        500,
        code or "InternalExecutionError",
        message or "An internal execution error occurred. Please retry later.",
    )
