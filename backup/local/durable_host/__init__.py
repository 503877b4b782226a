"""A local Durable Functions host: runs a ``df.DFApp`` through the SDK's own replay engine.

The Functions host and its Durable extension cannot run here, so this package plays their part of the
out-of-process replay protocol (``azure-functions-durable`` 1.7.0):

1. **Context in.** For every *episode* the host sends the orchestrator a JSON context: the instance's
   history so far (played) plus ``OrchestratorStarted`` and the newly arrived events (not played).
2. **Actions out.** The SDK replays the generator over that history and returns every action it has
   taken since the execution started (or raises ``...$OutOfProcData$:<state>`` when it failed).
3. **History appended.** The host checks the replayed actions against the recorded ones
   (non-determinism fails the instance), schedules the new ones in order (activities on a thread pool,
   timers, sub-orchestrations), appends the episode's events to the history and, as results arrive,
   runs the next episode: replay until done.

Modules: :mod:`.history` (wire formats), :mod:`.replay` (the host's decisions, pure),
:mod:`.host` (threads and state), :mod:`.webhook` (the extension's HTTP API for the SDK client),
:mod:`.store` (records on disk), :mod:`.clock`, :mod:`.discovery`, :mod:`.status`. See
``docs/durable-host.md`` for the API and what is not modelled.
"""

from backup.local.durable_host.clock import Clock, RealClock, VirtualClock
from backup.local.durable_host.host import LocalHost
from backup.local.durable_host.status import Counts, InstanceStatus, RuntimeStatus

__all__ = ["Clock", "Counts", "InstanceStatus", "LocalHost", "RealClock", "RuntimeStatus", "VirtualClock"]
