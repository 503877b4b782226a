"""Where a benchmark's time goes: CPU seconds by thread role, read from /proc.

One process runs the local Durable host, the activities and the emulator's servers; Azurite is a node
process of its own. :class:`ThreadProfile` reads, every ``interval`` seconds, each live thread's CPU
time from ``/proc/self/task/<tid>/stat`` and sums it by the thread's role (from its name). Exact and
cheap, where sampling Python stacks from inside the process is not (a sampler gets the interpreter
lock when the busy thread blocks, so it mostly sees waits). Linux only; elsewhere it reports nothing.
CPU of a thread that ended between two readings is lost (a server's connection thread: at most
``interval`` of it).
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from types import TracebackType

#: Thread role by a piece of its name (first match wins).
_ROLES = (
    ("durable-dispatcher", "dispatcher: orchestrator replays (Durable SDK) and host bookkeeping"),
    ("durable-activity", "activity workers: activities and their HTTP clients"),
    ("process_request_thread", "emulator's HTTP servers (ARM, data-plane front)"),
    ("md-writer", "data plane: snapshot content into Azurite"),
    ("durable-store-writer", "the host's store writer"),
    ("durable-webhook", "the host's webhook server"),
)

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int | str = "self", tid: int | None = None) -> float | None:
    """User + system CPU seconds of a process (or one of its threads), from /proc; None if unknown."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path, encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_busy_seconds() -> float | None:
    """CPU seconds every core of this machine has spent busy since boot (all processes), from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICKS


class ThreadProfile:
    """Reads this process's threads' CPU times while entered; :meth:`summary` says what it saw."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._cpu: dict[int, tuple[str, float]] = {}  # native thread id -> (role, latest CPU seconds)
        self._start_cpu: dict[int, float] = {}
        self._process_cpu = 0.0
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read_cpu, name="bench-cpu", daemon=True)

    def __enter__(self) -> ThreadProfile:
        self._process_cpu = -time.process_time()
        self._read_once(first=True)
        self._reader.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._reader.join()
        self._read_once()
        self._process_cpu += time.process_time()

    def _read_cpu(self) -> None:
        while not self._stop.wait(self.interval):
            self._read_once()

    def _read_once(self, first: bool = False) -> None:
        for thread in threading.enumerate():
            tid = thread.native_id
            if tid is None or thread.name.startswith("bench-"):
                continue
            seconds = cpu_seconds(tid=tid)
            if seconds is None:
                continue
            if tid not in self._start_cpu:  # threads started later count from zero
                self._start_cpu[tid] = seconds if first else 0.0
            role = next((name for piece, name in _ROLES if piece in thread.name), "other threads")
            self._cpu[tid] = (role, seconds)

    @property
    def process_cpu(self) -> float:
        """CPU seconds this whole process spent while the profile was entered."""
        return self._process_cpu

    def summary(self, other_processes: dict[str, float] | None = None, top: int = 6) -> list[str]:
        """Lines: CPU seconds by thread role (the ``top`` largest), then other processes' CPU."""
        by_role: dict[str, float] = defaultdict(float)
        for tid, (role, seconds) in self._cpu.items():
            by_role[role] += seconds - self._start_cpu.get(tid, 0.0)
        if not by_role:
            return ["profile: no per-thread CPU times here (they come from /proc)"]
        lines = [f"profile: CPU seconds by thread (this process: {self._process_cpu:.1f} s)"]
        ranked = sorted(by_role.items(), key=lambda item: -item[1])[:top]
        lines += [f"  {seconds:6.1f} s  {role}" for role, seconds in ranked]
        lines += [f"  {seconds:6.1f} s  {name}" for name, seconds in (other_processes or {}).items()]
        return lines
