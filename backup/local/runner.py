"""Running the backup orchestrators outside Azure Functions: the same code, through the local Durable host.

``diskbackup run``/``resume`` and ``make demo`` use this. The orchestrators, activities and triggers are
the Function App's own (:func:`backup.app.blueprint.build_app`); :class:`backup.local.durable_host.LocalHost`
plays the Functions host with the real clock, so the durable timers between polls wait real time. Run
state is kept in a folder (``--state-dir``): ``diskbackup status`` reports on a run from it, and a run
whose process died (killed, a laptop closed) carries on from it when a host is started on the folder
again (``diskbackup resume``), its activities re-run at least once as on Azure.

One process at a time drives a folder: :class:`StateLock` (an advisory lock on ``<folder>/.lock``,
released by the kernel however the process ends) makes a second one fail at once instead of running the
same orchestrations twice. Take it before :func:`open_host`, so the records loaded are the last ones.

A run's progress is read as the HTTP status route reads it (:mod:`backup.workflow.run_progress`): the
run, its lanes and its disks at work, never every disk, so following a thousand-disk run stays cheap.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from backup.app.blueprint import build_app
from backup.errors import DiskBackupError
from backup.local.durable_host import Clock, LocalHost, RealClock, RuntimeStatus
from backup.local.durable_host.status import status_payload
from backup.settings import Settings
from backup.workflow.models import RUN_ORCHESTRATOR, RunSummary
from backup.workflow.run_progress import (
    ACTIVE_STATUSES,
    MAX_LANES,
    DiskView,
    disk_prefix,
    disk_view,
    lane_prefix,
    phase_counts,
    unwrap_token,
    wait_prefix,
    with_copy_progress,
    wrap_token,
)

try:  # advisory file locks: POSIX only; elsewhere a folder is not guarded
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

TERMINAL = frozenset({"Completed", "Failed", "Terminated"})
_ACTIVE = tuple(RuntimeStatus(status) for status in ACTIVE_STATUSES)


@dataclass(frozen=True)
class DiskProgress:
    """One disk at work, as the disk orchestration's custom status says."""

    index: int
    name: str
    phase: str
    bytes_copied: int
    bytes_total: int
    runtime_status: str
    kind: str | None = None  # once the disk's night is decided: "full" or "incremental"


@dataclass(frozen=True)
class RunProgress:
    """A run's state: its runtime status, its phase, its disks at work and its disks counted by phase."""

    run_id: str
    runtime_status: str
    phase: str
    disks: list[DiskProgress] = field(default_factory=list)
    output: Any = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Whether the run reached a terminal state."""
        return self.runtime_status in TERMINAL

    @property
    def summary(self) -> RunSummary | None:
        """The run's summary once it ended with one."""
        return RunSummary.read(self.output)


class StateInUseError(DiskBackupError):
    """Another process is driving the runs of this state folder."""


class StateLock:
    """An exclusive advisory lock on ``<state_dir>/.lock`` while a host runs there (see the module)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / ".lock"
        self._handle: Any = None

    def __enter__(self) -> StateLock:
        if fcntl is None:
            return self
        handle = open(self.path, "a+", encoding="utf-8")  # held (and the lock with it) until __exit__
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StateInUseError(
                f"{self.path.parent} is in use by {holder}; wait for it to end, or use another --state-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"diskbackup (pid {os.getpid()})")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the lock
            self._handle = None


def read_progress(host: LocalHost, run_id: str) -> RunProgress | None:
    """The run's progress (``None`` if there is no such run), from at most four reads of the host:
    the run's status and, while it has no summary, its lanes, its disks at work and their waits."""
    status = host.get_status(run_id)
    if status is None or status.name != RUN_ORCHESTRATOR:
        return None
    custom = status.custom_status if isinstance(status.custom_status, dict) else {}
    summary = RunSummary.read(status.output)
    lanes: list[dict[str, Any]] = []
    at_work: list[DiskView] = []
    if summary is None:
        found, _ = host.query_instances(prefix=lane_prefix(run_id), top=MAX_LANES)
        lanes = [status_payload(lane, show_input=False) for lane in found]
        active, _ = host.query_instances(prefix=disk_prefix(run_id), statuses=_ACTIVE, top=MAX_LANES)
        at_work = [disk_view(run_id, status_payload(disk, show_input=False)) for disk in active]
        at_work = with_copy_progress(run_id, at_work, _running_waits(host, run_id))
    return RunProgress(
        run_id=run_id,
        runtime_status=str(status.runtime_status),
        phase=str(custom.get("phase", "")),
        disks=[_disk_progress(view) for view in at_work],
        output=status.output,
        counts=phase_counts(custom, summary, lanes, at_work),
    )


def read_disk_page(
    host: LocalHost, run_id: str, *, top: int = 100, token: str | None = None
) -> tuple[list[DiskView], str | None]:
    """One page of the run's disks in index order, and the token of the next page (``None`` after the
    last); ``token`` is one an earlier page gave out (an ``InvalidInputError`` naming
    ``--continuation-token`` otherwise)."""
    continuation = unwrap_token(run_id, token, "--continuation-token") if token is not None else None
    page, following = host.query_instances(prefix=disk_prefix(run_id), top=top, continuation=continuation)
    views = [disk_view(run_id, status_payload(disk, show_input=False)) for disk in page]
    if any(view.phase == "copy" for view in views):
        views = with_copy_progress(run_id, views, _running_waits(host, run_id))
    return views, (wrap_token(run_id, following) if following else None)


def _running_waits(host: LocalHost, run_id: str) -> list[dict[str, Any]]:
    """The run's waits under way (a copy's progress is in its copy watch), as status JSON."""
    waits, _ = host.query_instances(prefix=wait_prefix(run_id), statuses=_ACTIVE, top=MAX_LANES)
    return [status_payload(wait, show_input=False) for wait in waits]


def _disk_progress(view: DiskView) -> DiskProgress:
    return DiskProgress(
        index=view.index,
        name=view.name or f"disk {view.index}",
        phase=view.phase,
        bytes_copied=view.bytes_copied,
        bytes_total=view.bytes_total,
        runtime_status=view.runtime_status,
        kind=view.kind,
    )


def open_host(settings: Settings, state_dir: Path | None, clock: Clock | None = None) -> LocalHost:
    """A local host for the app built from ``settings`` (not started), keeping state in ``state_dir``.

    Files of the folder that are not instance records are skipped (``host.store_problems`` names them).
    """
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
    return LocalHost(build_app(settings), clock=clock or RealClock(), store_dir=state_dir)


def unfinished_runs(host: LocalHost) -> list[str]:
    """The runs of the host's folder that have not ended, oldest first."""
    return [
        status.instance_id
        for status in host.list_instances(statuses=_ACTIVE)
        if status.name == RUN_ORCHESTRATOR
    ]


def follow(
    host: LocalHost,
    run_id: str,
    *,
    on_progress: Callable[[RunProgress], None],
    poll_seconds: float = 0.5,
    interrupted: threading.Event | None = None,
) -> RunProgress:
    """Report a running run's progress until it ends.

    ``interrupted`` (set by a Ctrl-C handler) ends the wait with ``KeyboardInterrupt`` raised here,
    between two reads: never inside the host's lock, where an interrupt arriving at any moment could
    leave the lock held and the host unable to stop.
    """
    while True:
        if interrupted is not None and interrupted.is_set():
            raise KeyboardInterrupt
        progress = read_progress(host, run_id)
        if progress is None:
            _pause(poll_seconds, interrupted)
            continue
        on_progress(progress)
        if progress.done:
            return progress
        _pause(poll_seconds, interrupted)


def _pause(seconds: float, interrupted: threading.Event | None) -> None:
    if interrupted is None:
        time.sleep(seconds)
    else:
        interrupted.wait(seconds)
