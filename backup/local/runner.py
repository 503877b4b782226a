"""Running the backup orchestrators outside Azure Functions: the same code, through the local Durable host.

``diskbackup run`` and ``make demo`` use this. The orchestrators, activities and triggers are the Function
App's own (:func:`backup.app.blueprint.build_app`); :class:`backup.local.durable_host.LocalHost` plays the
Functions host with the real clock, so the durable timers between polls wait real time. Run state is kept
in a folder (``--state-dir``), so ``diskbackup status`` can report on a run later, and an interrupted run
resumes when the next command opens the same folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backup.app.blueprint import build_app
from backup.local.durable_host import Clock, InstanceStatus, LocalHost, RealClock
from backup.settings import Settings
from backup.workflow.models import RUN_ORCHESTRATOR, DiskStatus, RunInput, RunSummary, sub_orchestration_id
from backup.workflow.startup import new_run_id

TERMINAL = frozenset({"Completed", "Failed", "Terminated"})


@dataclass(frozen=True)
class DiskProgress:
    """One disk's state, as the disk orchestration's custom status says."""

    index: int
    name: str
    phase: str
    bytes_copied: int
    bytes_total: int
    runtime_status: str
    kind: str | None = None  # once the disk's night is decided: "full" or "incremental"


@dataclass(frozen=True)
class RunProgress:
    """A run's state: its runtime status, its phase and its disks."""

    run_id: str
    runtime_status: str
    phase: str
    disks: list[DiskProgress] = field(default_factory=list)
    output: Any = None

    @property
    def done(self) -> bool:
        """Whether the run reached a terminal state."""
        return self.runtime_status in TERMINAL


def read_progress(host: LocalHost, run_id: str) -> RunProgress | None:
    """The run's progress from its own status and its disks' statuses (``None`` if there is no such run)."""
    status = host.get_status(run_id)
    if status is None or status.name != RUN_ORCHESTRATOR:
        return None
    custom = status.custom_status if isinstance(status.custom_status, dict) else {}
    summary = RunSummary.read(status.output)
    total = summary.disk_count if summary is not None else custom.get("disks")
    disks: list[DiskProgress] = []
    for index in range(total if isinstance(total, int) else 0):
        disk = host.get_status(sub_orchestration_id(run_id, index))
        disks.append(_disk_progress(index, disk))
    return RunProgress(
        run_id=run_id,
        runtime_status=str(status.runtime_status),
        phase=str(custom.get("phase", "")),
        disks=disks,
        output=status.output,
    )


def _disk_progress(index: int, status: InstanceStatus | None) -> DiskProgress:
    if status is None:
        return DiskProgress(index, f"disk {index}", "waiting", 0, 0, "Pending")
    custom = DiskStatus.read(status.custom_status)
    if custom is None:  # started, no status set yet
        return DiskProgress(index, f"disk {index}", "starting", 0, 0, str(status.runtime_status))
    return DiskProgress(
        index=index,
        name=custom.disk,
        phase=custom.phase,
        bytes_copied=custom.bytes_copied,
        bytes_total=custom.bytes_total,
        runtime_status=str(status.runtime_status),
        kind=custom.kind,
    )


def open_host(settings: Settings, state_dir: Path | None, clock: Clock | None = None) -> LocalHost:
    """A local host for the app built from ``settings`` (not started), keeping state in ``state_dir``."""
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
    return LocalHost(build_app(settings), clock=clock or RealClock(), store_dir=state_dir)


def run_backup(
    settings: Settings,
    run: RunInput,
    *,
    state_dir: Path | None,
    on_progress: Callable[[RunProgress], None] = lambda progress: None,
    poll_seconds: float = 0.5,
    clock: Clock | None = None,
) -> RunProgress:
    """Start a run, report its progress every ``poll_seconds`` until it ends, and return the last report."""
    with open_host(settings, state_dir, clock) as host:
        run_id = host.start_new(
            RUN_ORCHESTRATOR, input=run.to_json(), instance_id=new_run_id(datetime.now(UTC))
        )
        return follow(host, run_id, on_progress=on_progress, poll_seconds=poll_seconds)


def follow(
    host: LocalHost,
    run_id: str,
    *,
    on_progress: Callable[[RunProgress], None],
    poll_seconds: float = 0.5,
) -> RunProgress:
    """Report a running run's progress until it ends."""
    while True:
        progress = read_progress(host, run_id)
        if progress is None:
            time.sleep(poll_seconds)
            continue
        on_progress(progress)
        if progress.done:
            return progress
        time.sleep(poll_seconds)
