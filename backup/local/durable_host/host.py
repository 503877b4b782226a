"""The local host: runs a ``df.DFApp``'s orchestrations the way the Functions host and Durable extension do.

Threads, and what each may touch:

- **dispatcher** (one): picks an instance with undelivered events, runs one *episode* of its
  orchestrator through the SDK (without the lock), then commits the plan
  (:func:`backup.local.durable_host.replay.plan_episode`) under the lock: history appended, activities
  submitted, timers armed, children started, parents notified, record saved. One episode at a time, so
  one per instance. It also fires due timers, and with a virtual clock moves time to the next timer when
  nothing else can make progress.
- **activity workers** (``activity_workers``): run activity functions for real, concurrently, without
  the lock; each reports back by appending a completion to its instance's inbox.
- **webhook server** (:mod:`backup.local.durable_host.webhook`) and callers: start, query, raise events and
  terminate under the lock; a terminate is a message in the inbox, handled by the dispatcher.

With ``store_dir``, every state change is written to the folder by a **store writer** thread, at most
:data:`STORE_DELAY` seconds later: changed records are copied under the lock (a consistent cut of every
instance changed since the last write), encoded and written outside it, one file per instance, so the files
lag the running host by a moment and the disk's speed never holds the lock. A new host on the same
folder carries on; what the last moment before a crash had done is done again: activities that had
not reported back run again (at least once, as on Azure), timers are re-armed, and a sub-orchestration
a parent starts again is recognised as the one it already started (same parent, execution and task).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import heapq
import inspect
import itertools
import json
import os
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar, cast

from azure.durable_functions import DurableOrchestrationClient
from azure.durable_functions.models.utils.df_serialization import df_dumps

from backup.azure.names import validate_task_hub_name
from backup.errors import (
    ConflictError,
    DeadlineExceededError,
    InvalidInputError,
    PreconditionFailedError,
    http_error_class,
)
from backup.local.durable_host import history as h
from backup.local.durable_host import sdk_memos
from backup.local.durable_host.clock import Clock, RealClock, VirtualClock
from backup.local.durable_host.discovery import FunctionIndex
from backup.local.durable_host.instance import Instance, ParentLink
from backup.local.durable_host.replay import (
    ActivityCall,
    ChildStart,
    Completed,
    ContinuedAsNew,
    EpisodePlan,
    ExecutionState,
    Failed,
    expects,
    outstanding,
    plan_episode,
    select_batch,
    unknown_orchestrator_message,
)
from backup.local.durable_host.status import Counts, InstanceStatus, RuntimeStatus
from backup.local.durable_host.store import SOURCE_KEY, InstanceStore
from backup.redact import get_logger, redact

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_INSTANCE_ID_LENGTH",
    "MAX_PAGE_SIZE",
    "LocalHost",
    "validate_instance_id",
]

log = get_logger(__name__)

T = TypeVar("T")

MAX_INSTANCE_ID_LENGTH = 256
#: The instance query's page size when ``top`` is not given (the extension's default), and its cap
#: (a Table storage query answers at most 1,000 entities per page).
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

#: Seconds the store writer waits after a change, so that one write carries the changes of many
#: episodes (a record was written two or three times per episode: about 1 ms each on this machine's
#: disk, under the lock, a third of a 200-disk run's time; a lane, written at every disk it finished,
#: cost the writer 13 s of a 1,000-disk run at 0.1 s, 7 s at 1 s). A crash loses at most this much.
STORE_DELAY = 1.0


def validate_instance_id(instance_id: Any) -> str:
    """Check an instance id the way the extension does; return it."""
    if not isinstance(instance_id, str) or not instance_id:
        raise InvalidInputError("instance_id", "must be a non-empty string")
    if len(instance_id) > MAX_INSTANCE_ID_LENGTH:
        raise InvalidInputError("instance_id", f"must not exceed {MAX_INSTANCE_ID_LENGTH} characters")
    if instance_id.startswith("@"):
        raise InvalidInputError("instance_id", "must not start with @ (reserved for entities)")
    if any(c in "/\\#?" or ord(c) < 32 or ord(c) == 127 for c in instance_id):
        raise InvalidInputError("instance_id", "must not contain /, \\, #, ? or control characters")
    return instance_id


def _token_for(last_instance_id: str) -> str:
    """An opaque continuation token: where the next page starts (after this instance id)."""
    payload = json.dumps({"after": last_instance_id}).encode()
    return base64.urlsafe_b64encode(payload).decode()


def _token_position(token: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("after"), str):
        raise InvalidInputError("continuation token", "is not a token an instance query answered")
    return str(data["after"])


def _extension_error(status: int, message: str) -> Exception:
    """An error as the extension's HTTP API would answer it (404 not found, 410 gone, ...)."""
    return http_error_class(status)(status=status, code=None, error_message=message)


def _json_or_text(text: str) -> Any:
    # The extension shows stored strings parsed as JSON when they are JSON (a terminate reason "5" is 5).
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return text


@dataclass
class _Work:
    instance: Instance
    batch: list[dict[str, Any]]
    now: datetime
    started: dict[str, Any]  # the episode's OrchestratorStarted: in its context, then in its history


class _ClientLoop:
    """The one event loop client functions run on, like the Python worker's.

    The SDK's client keeps one aiohttp session in a module global; a session made on one loop cannot be
    used from another, so every client function must run on the same loop (never two ``asyncio.run``).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="durable-client-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        # Close the SDK's shared session on its own loop, so a later host's loop starts a fresh one.
        from azure.durable_functions.models.utils import http_utils

        closer = getattr(http_utils, "_close_session", None)
        if closer is not None:
            try:
                self.run(closer(), timeout=10)
            except Exception:  # a session left by another loop: nothing of ours to close
                log.debug("could not close the SDK client session", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class LocalHost:
    """Runs a ``df.DFApp``'s orchestrators and activities through the SDK's own replay engine.

    ``clock`` is a :class:`VirtualClock` for tests (timers fire as soon as nothing else can progress)
    or :class:`RealClock` (default) for real runs. ``store_dir`` keeps instance records on disk so a
    new host on the same folder resumes them. ``activity_workers`` bounds concurrent activities.
    ``task_hub`` only names the hub in client bindings and URLs.

    Use it as a context manager: entering starts the dispatcher, the activity workers and the webhook
    server; leaving stops them (waiting for running activities).
    """

    def __init__(
        self,
        app: Any,
        *,
        clock: Clock | None = None,
        store_dir: str | os.PathLike[str] | None = None,
        activity_workers: int = 8,
        task_hub: str = "TestHubName",
    ) -> None:
        if not isinstance(activity_workers, int) or activity_workers < 1:
            raise InvalidInputError(
                "activity_workers", f"must be a positive integer, got {activity_workers!r}"
            )
        validate_task_hub_name(task_hub, "task_hub")
        sdk_memos.install()  # what the SDK redoes on every replay, done once
        self._index = FunctionIndex.from_app(app)
        self._clock: Clock = clock if clock is not None else RealClock()
        self._store = InstanceStore(store_dir) if store_dir is not None else None
        self._activity_workers = activity_workers
        self.task_hub = task_hub
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # the dispatcher waits here for work
        # Callers of wait_for_completion wait here, woken only when an instance ends (they used to
        # wake at every change: a thread switch for every activity and episode of a run).
        self._finished = threading.Condition(lock)
        self._instances: dict[str, Instance] = {}
        self._ready: deque[str] = deque()
        self._timers: list[tuple[datetime, int, str, str, int]] = []
        self._tiebreak = itertools.count()
        self._in_flight = 0
        self._generation = 0
        self._running = False
        self._stopping = False
        self._dispatcher: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._webhook: Any = None
        self._client_loop: _ClientLoop | None = None
        # The store writer's work: instances changed since the last write, ids purged since.
        self._dirty: dict[str, Instance] = {}
        self._deleted: dict[str, None] = {}
        self._store_wanted = threading.Event()
        self._store_stop = threading.Event()
        self._store_lock = threading.Lock()  # one write of the store at a time
        self._store_writer: threading.Thread | None = None
        if self._store is not None:
            for record in self._store.load_all():
                source = record.pop(SOURCE_KEY, "a record")
                try:
                    instance = Instance.from_record(record)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    self._store.skip(source, f"not a complete instance record ({type(exc).__name__}: {exc})")
                    continue
                self._instances[instance.instance_id] = instance

    @property
    def store_problems(self) -> list[str]:
        """Files of ``store_dir`` that were skipped when loading, each named with why."""
        return list(self._store.problems) if self._store is not None else []

    # --- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> LocalHost:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the dispatcher, the activity workers and the webhook server; resume stored work."""
        from backup.local.durable_host.webhook import WebhookServer

        with self._cond:
            if self._running:
                raise RuntimeError("this LocalHost is already running")
            self._running = True
            self._stopping = False
            self._generation += 1
            self._in_flight = 0
            self._pool = ThreadPoolExecutor(self._activity_workers, thread_name_prefix="durable-activity")
            for instance in list(self._instances.values()):
                if not instance.runtime_status.is_terminal:
                    self._resume_locked(instance)
        if self._store is not None:
            self._store_stop.clear()
            self._store_writer = threading.Thread(
                target=self._store_loop, name="durable-store-writer", daemon=True
            )
            self._store_writer.start()
        self._webhook = WebhookServer(self)
        self._webhook.start()
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name="durable-dispatcher", daemon=True
        )
        self._dispatcher.start()

    def stop(self, *, wait_for_activities: bool = True) -> None:
        """Stop everything this host started.

        With ``wait_for_activities`` running activities finish and their results are recorded; without,
        they are abandoned like in a crash (a new host on the same store runs them again).
        """
        with self._cond:
            if not self._running:
                return
            self._stopping = True
            if not wait_for_activities:
                self._generation += 1  # late results of this generation are dropped
            self._cond.notify_all()
        if self._dispatcher is not None:
            self._dispatcher.join()
            self._dispatcher = None
        if self._pool is not None:
            self._pool.shutdown(wait=wait_for_activities, cancel_futures=True)
            self._pool = None
        if self._webhook is not None:
            self._webhook.stop()
            self._webhook = None
        if self._client_loop is not None:
            self._client_loop.close()
            self._client_loop = None
        if self._store_writer is not None:
            self._store_stop.set()
            self._store_wanted.set()
            self._store_writer.join()
            self._store_writer = None
            self.flush()
        with self._cond:
            self._running = False
            self._timers.clear()
            self._ready.clear()
            for instance in self._instances.values():
                instance.armed.clear()
            self._cond.notify_all()
            self._finished.notify_all()

    # --- client API --------------------------------------------------------------------------------

    def start_new(self, orchestrator: str, input: Any = None, instance_id: str | None = None) -> str:
        """Start orchestrator ``orchestrator`` with ``input`` (any JSON-serializable value); return its id.

        Starting an id whose instance has not finished is refused (``ConflictError``), as by the
        extension; a finished one is replaced.
        """
        try:
            input_json = json.dumps(df_dumps(input)) if input is not None else None
        except (TypeError, ValueError) as exc:
            raise InvalidInputError("input", f"must be JSON-serializable: {exc}") from exc
        return self.start_new_json(orchestrator, input_json, instance_id)

    def start_new_json(
        self, orchestrator: str, input_json: str | None, instance_id: str | None = None
    ) -> str:
        """Start ``orchestrator`` with the input as the extension stores it (the HTTP body's JSON text)."""
        if orchestrator not in self._index.orchestrators:
            raise InvalidInputError(
                "orchestrator", unknown_orchestrator_message(orchestrator, self._index.orchestrators)
            )
        if input_json is not None:
            try:
                json.loads(input_json)
            except json.JSONDecodeError as exc:
                raise InvalidInputError("input", f"invalid JSON content: {exc}") from exc
        instance_id = validate_instance_id(instance_id) if instance_id is not None else uuid.uuid4().hex
        with self._cond:
            existing = self._instances.get(instance_id)
            if existing is not None and not existing.runtime_status.is_terminal:
                raise ConflictError(
                    status=409,
                    code="OrchestrationAlreadyExists",
                    error_message=f"An Orchestration instance with the status {existing.runtime_status} "
                    "already exists.",
                )
            self._create_locked(orchestrator, instance_id, input_json, parent=None)
        log.info("started %s as instance %s", orchestrator, instance_id)
        return instance_id

    def get_status(self, instance_id: str) -> InstanceStatus | None:
        """The status of ``instance_id``, or ``None`` if there is no such instance."""
        with self._cond:
            instance = self._instances.get(instance_id)
            return None if instance is None else instance.status()

    def list_instances(
        self,
        *,
        prefix: str | None = None,
        statuses: Collection[RuntimeStatus] | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
    ) -> list[InstanceStatus]:
        """All instances (oldest first), optionally filtered like the extension's instance query."""
        with self._cond:
            found = [i.status() for i in self._instances.values()]
        return sorted(
            (
                s
                for s in found
                if (prefix is None or s.instance_id.startswith(prefix))
                and (not statuses or s.runtime_status in statuses)
                and (created_from is None or s.created_time >= created_from)
                and (created_to is None or s.created_time <= created_to)
            ),
            key=lambda s: (s.created_time, s.instance_id),
        )

    def query_instances(
        self,
        *,
        prefix: str | None = None,
        statuses: Collection[RuntimeStatus] | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        top: int = DEFAULT_PAGE_SIZE,
        continuation: str | None = None,
    ) -> tuple[list[InstanceStatus], str | None]:
        """One page of the extension's instance query: at most ``top`` instances in instance-id order
        (the Azure Storage provider's Instances table is keyed by instance id), and the token for the
        next page (``None`` after the last).

        ``continuation`` is a token an earlier page answered; a malformed one is an
        ``InvalidInputError``. ``top`` is capped at :data:`MAX_PAGE_SIZE`.
        """
        after = _token_position(continuation) if continuation else None
        top = max(1, min(top, MAX_PAGE_SIZE))
        with self._cond:
            found = sorted(
                (
                    i.status()
                    for i in self._instances.values()
                    if (prefix is None or i.instance_id.startswith(prefix))
                    and (after is None or i.instance_id > after)
                    and (not statuses or i.runtime_status in statuses)
                    and (created_from is None or i.created_time >= created_from)
                    and (created_to is None or i.created_time <= created_to)
                ),
                key=lambda s: s.instance_id,
            )
        page = found[:top]
        token = _token_for(page[-1].instance_id) if len(found) > top else None
        return page, token

    def wait_for_completion(self, instance_id: str, timeout: float = 60.0) -> InstanceStatus:
        """Block until ``instance_id`` is Completed, Failed or Terminated; return its status.

        Raises ``DeadlineExceededError`` after ``timeout`` real seconds, ``NotFoundError`` for an
        unknown id.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            if not self._running:
                raise RuntimeError("start the host (`with host:`) before waiting for an instance")
            while True:
                instance = self._instances.get(instance_id)
                if instance is None:
                    raise _extension_error(404, f"No instance with ID '{instance_id}' found.")
                if instance.runtime_status.is_terminal:
                    return instance.status()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineExceededError(
                        f"instance {instance_id} still {instance.runtime_status} after {timeout} s"
                    )
                self._finished.wait(remaining)

    def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        """Send external event ``name`` with ``data`` (JSON-serializable) to a running instance."""
        try:
            data_json = df_dumps(data)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError("data", f"must be JSON-serializable: {exc}") from exc
        self.raise_event_json(instance_id, name, data_json)

    def raise_event_json(self, instance_id: str, name: str, data_json: str) -> None:
        """Send external event ``name`` whose data is the JSON text ``data_json``."""
        if not isinstance(name, str) or not name:
            raise InvalidInputError("event name", "must be a non-empty string")
        try:
            json.loads(data_json)
        except (TypeError, json.JSONDecodeError) as exc:
            raise InvalidInputError("event data", f"invalid JSON content: {exc}") from exc
        with self._cond:
            instance = self._require_locked(instance_id)
            if instance.runtime_status.is_terminal:
                raise _extension_error(
                    410, f"Instance with ID {instance_id} is gone: either completed or failed"
                )
            self._enqueue_locked(instance, h.event_raised(self._clock.now(), name=name, input_json=data_json))

    def terminate(self, instance_id: str, reason: str) -> bool:
        """Ask a running instance to stop; ``False`` if it had already finished.

        Like the extension's, this is a message: the status turns Terminated when the host handles it.
        """
        with self._cond:
            instance = self._require_locked(instance_id)
            if instance.runtime_status.is_terminal:
                return False
            self._enqueue_locked(instance, h.execution_terminated(self._clock.now(), reason=str(reason)))
            return True

    def purge(self, instance_id: str) -> bool:
        """Delete a finished instance and its history; ``False`` if there is no such instance."""
        with self._cond:
            instance = self._instances.get(instance_id)
            if instance is None:
                return False
            if not instance.runtime_status.is_terminal:
                raise PreconditionFailedError(
                    status=412,
                    code=None,
                    error_message="Only orchestrations in a terminal state can be purged, but the "
                    f"orchestration with instance ID {instance_id} has status {instance.runtime_status}",
                )
            del self._instances[instance_id]
            if self._store is not None:
                self._dirty.pop(instance_id, None)
                if self._store_writer is None:
                    self._store.delete(instance_id)
                else:
                    self._deleted[instance_id] = None
                    self._store_wanted.set()
            return True

    def purge_where(
        self,
        *,
        created_from: datetime,
        created_to: datetime | None = None,
        statuses: Collection[RuntimeStatus] | None = None,
    ) -> int:
        """Purge the finished instances created in ``[created_from, created_to]``; return how many."""
        purged = 0
        for status in self.list_instances(
            statuses=statuses, created_from=created_from, created_to=created_to
        ):
            if status.is_terminal and self.purge(status.instance_id):
                purged += 1
        return purged

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        """A copy of the stored history of the instance's current execution."""
        with self._cond:
            return self._require_locked(instance_id).history_copy()

    def counts(self, instance_id: str | None = None) -> Counts:
        """Replays, activity executions and history events of one instance, or summed over all."""
        with self._cond:
            if instance_id is not None:
                return self._require_locked(instance_id).counts()
            total = Counts()
            for instance in self._instances.values():
                total = total + instance.counts()
            return total

    def advance_clock(self, delta: timedelta) -> None:
        """Move a virtual clock forward by ``delta`` (due timers then fire)."""
        if not isinstance(self._clock, VirtualClock):
            raise RuntimeError("advance_clock needs a VirtualClock")
        if delta < timedelta(0):
            raise InvalidInputError("delta", "time only moves forward")
        with self._cond:
            self._clock.advance_to(self._clock.now() + delta)
            self._cond.notify_all()

    @property
    def clock(self) -> Clock:
        """The clock this host stamps history with."""
        return self._clock

    # --- functions and bindings --------------------------------------------------------------------

    @property
    def webhook(self) -> Any:
        """The running webhook server (its URLs), or fail if the host is not started."""
        if self._webhook is None:
            raise RuntimeError("the webhook server runs only while the host is started")
        return self._webhook

    def client_binding(self) -> str:
        """The JSON string the Functions host passes to a ``durable_client_input`` argument."""
        return str(self.webhook.client_binding())

    def invoke_function(self, name: str, /, timeout: float = 60.0, **kwargs: Any) -> Any:
        """Call any function of the app (HTTP, timer, ...) as the worker would; return its result.

        A durable client argument not given in ``kwargs`` gets :meth:`client_binding`. Coroutines run on
        the host's single client event loop (the SDK client cannot span event loops).
        """
        function = self._index.functions.get(name)
        if function is None:
            raise InvalidInputError("function", f"no function named {name!r} in this app")
        if function.client_argument is not None and function.client_argument not in kwargs:
            kwargs[function.client_argument] = self.client_binding()
        result = function.function(**kwargs)
        if inspect.iscoroutine(result):
            return self._on_client_loop(result, timeout)
        return result

    def run_client(
        self, operation: Callable[[DurableOrchestrationClient], Awaitable[T]], timeout: float = 60.0
    ) -> T:
        """Run ``operation`` with the SDK's own ``DurableOrchestrationClient`` bound to this host.

        For tests and command-line tools that talk to the host the way a client function does, e.g.
        ``host.run_client(lambda client: client.get_status(instance_id))``.
        """

        async def call() -> T:
            return await operation(DurableOrchestrationClient(self.client_binding()))

        return cast(T, self._on_client_loop(call(), timeout))

    def _on_client_loop(self, coroutine: Coroutine[Any, Any, Any], timeout: float) -> Any:
        with self._cond:
            if not self._running:
                coroutine.close()
                raise RuntimeError("start the host before running client functions")
            if self._client_loop is None:
                self._client_loop = _ClientLoop()
            loop = self._client_loop
        return loop.run(coroutine, timeout)

    # --- internals: instances ----------------------------------------------------------------------

    def _require_locked(self, instance_id: str) -> Instance:
        instance = self._instances.get(instance_id)
        if instance is None:
            raise _extension_error(404, f"No instance with ID '{instance_id}' found.")
        return instance

    def _create_locked(
        self, name: str, instance_id: str, input_json: str | None, parent: ParentLink | None
    ) -> Instance:
        now = self._clock.now()
        execution_id = uuid.uuid4().hex
        instance = Instance(
            instance_id=instance_id,
            name=name,
            execution_id=execution_id,
            input_json=input_json,
            created_time=now,
            last_updated_time=now,
            parent=parent,
        )
        instance.inbox.append(self._execution_started(instance, now))
        self._instances[instance_id] = instance
        self._save_locked(instance)
        self._mark_ready_locked(instance)
        return instance

    @staticmethod
    def _execution_started(instance: Instance, now: datetime) -> dict[str, Any]:
        return h.execution_started(
            now,
            name=instance.name,
            input_json=instance.input_json,
            instance_id=instance.instance_id,
            execution_id=instance.execution_id,
            parent=None if instance.parent is None else instance.parent.as_event_field(),
        )

    def _save_locked(self, instance: Instance) -> None:
        if self._store is None or self._instances.get(instance.instance_id) is not instance:
            return
        if self._store_writer is None:  # not running (e.g. a purge before start): write it now
            self._store.save(instance.to_record())
            return
        self._dirty[instance.instance_id] = instance
        self._deleted.pop(instance.instance_id, None)
        self._store_wanted.set()

    def flush(self) -> None:
        """Write every change not yet in the store now (a running host writes them within
        :data:`STORE_DELAY` seconds anyway; :meth:`stop` writes the rest)."""
        if self._store is None:
            return
        with self._store_lock:
            with self._cond:  # a consistent cut of everything changed; encoded after the lock
                self._store_wanted.clear()
                records = [(key, instance.to_store_record()) for key, instance in self._dirty.items()]
                deletes = list(self._deleted)
                self._dirty.clear()
                self._deleted.clear()
            failed = []
            for instance_id, record in records:
                try:
                    self._store.write(instance_id, self._store.encode(record))
                except OSError as exc:
                    log.error("could not write the record of %s (will try again): %s", instance_id, exc)
                    failed.append(instance_id)
            for instance_id in deletes:
                try:
                    self._store.delete(instance_id)
                except OSError as exc:
                    log.error("could not delete the record of %s: %s", instance_id, exc)
        if failed:
            with self._cond:
                for instance_id in failed:
                    instance = self._instances.get(instance_id)
                    if instance is not None:
                        self._dirty.setdefault(instance_id, instance)
            self._store_wanted.set()

    def _store_loop(self) -> None:
        while True:
            self._store_wanted.wait()
            if self._store_stop.wait(STORE_DELAY):  # gather more changes; stop() writes the rest
                return
            self.flush()

    def _mark_ready_locked(self, instance: Instance) -> None:
        if instance.instance_id not in self._ready:
            self._ready.append(instance.instance_id)
        self._cond.notify_all()

    def _enqueue_locked(self, instance: Instance, event: dict[str, Any]) -> None:
        instance.inbox.append(event)
        self._save_locked(instance)
        self._mark_ready_locked(instance)

    def _deliver_locked(self, instance: Instance, execution_id: str, event: dict[str, Any]) -> None:
        """Hand a completion to an instance if its execution is still waiting for it."""
        if instance.execution_id != execution_id or instance.runtime_status.is_terminal:
            return
        if not expects(instance.state, instance.inbox, event):
            log.debug("instance %s: dropped unexpected event %s", instance.instance_id, event["EventType"])
            return
        self._enqueue_locked(instance, event)

    def _resume_locked(self, instance: Instance) -> None:
        """Pick up what a stopped host left in flight for ``instance``."""
        work = outstanding(instance.state, instance.inbox, execution_id=instance.execution_id)
        for call in work.activities:
            self._submit_locked(instance, call)
        for timer in work.timers:
            self._arm_locked(instance, timer.seq, timer.fire_at)
        for child in work.children:
            existing = self._instances.get(child.instance_id)
            if existing is None:
                self._start_child_locked(instance, child)
            elif existing.runtime_status.is_terminal:
                self._notify_parent_locked(existing)
        if instance.inbox:
            self._mark_ready_locked(instance)

    # --- internals: activities, timers, children ---------------------------------------------------

    def _submit_locked(self, instance: Instance, call: ActivityCall) -> None:
        if self._pool is None:
            return
        self._in_flight += 1
        self._pool.submit(
            self._run_activity, instance.instance_id, instance.execution_id, call, self._generation
        )

    def _run_activity(self, instance_id: str, execution_id: str, call: ActivityCall, generation: int) -> None:
        activity = self._index.activities[call.name]
        try:
            with self._cond:
                instance = self._instances.get(instance_id)
                if generation != self._generation or instance is None:
                    return
                instance.activity_executions += 1
            try:
                result = activity.call(call.input_json)
                event = h.task_completed(self._clock.now(), seq=call.seq, result_json=result)
            except Exception as exc:
                reason = redact(f"Activity function '{call.name}' failed: {type(exc).__name__}: {exc}")
                details = redact("".join(traceback.format_exception(exc)))
                event = h.task_failed(self._clock.now(), seq=call.seq, reason=reason, details=details)
                log.warning("instance %s: %s", instance_id, reason)
            with self._cond:
                if generation != self._generation:
                    return
                instance = self._instances.get(instance_id)
                if instance is not None:
                    self._deliver_locked(instance, execution_id, event)
        finally:
            with self._cond:
                if generation == self._generation:
                    self._in_flight -= 1
                self._cond.notify_all()

    def _arm_locked(self, instance: Instance, seq: int, fire_at: datetime) -> None:
        instance.armed[seq] = fire_at
        heapq.heappush(
            self._timers, (fire_at, next(self._tiebreak), instance.instance_id, instance.execution_id, seq)
        )
        self._cond.notify_all()

    def _timer_is_live(self, entry: tuple[datetime, int, str, str, int]) -> bool:
        fire_at, _, instance_id, execution_id, seq = entry
        instance = self._instances.get(instance_id)
        return (
            instance is not None
            and instance.execution_id == execution_id
            and instance.armed.get(seq) == fire_at
        )

    def _next_timer_locked(self) -> datetime | None:
        while self._timers and not self._timer_is_live(self._timers[0]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def _fire_due_timers_locked(self) -> bool:
        fired = False
        now = self._clock.now()
        while (due := self._next_timer_locked()) is not None and due <= now:
            fire_at, _, instance_id, execution_id, seq = heapq.heappop(self._timers)
            instance = self._instances[instance_id]
            del instance.armed[seq]
            self._deliver_locked(instance, execution_id, h.timer_fired(now, seq=seq, fire_at=fire_at))
            fired = True
        return fired

    def _start_child_locked(self, parent: Instance, child: ChildStart) -> None:
        link = ParentLink(parent.instance_id, parent.execution_id, child.seq, parent.name)
        try:
            validate_instance_id(child.instance_id)
        except InvalidInputError as exc:
            self._fail_child_start_locked(parent, child, exc.message)
            return
        existing = self._instances.get(child.instance_id)
        if existing is not None and existing.parent == link:
            # This very start (same parent, execution and task) happened before a restart whose store
            # had the child's record but not yet the parent's: the child runs on, or has finished.
            if existing.runtime_status.is_terminal:
                self._notify_parent_locked(existing)
            return
        if existing is not None and not existing.runtime_status.is_terminal:
            self._fail_child_start_locked(
                parent,
                child,
                f"An Orchestration instance with the status {existing.runtime_status} already exists.",
            )
            return
        self._create_locked(child.name, child.instance_id, child.input_json, parent=link)

    def _fail_child_start_locked(self, parent: Instance, child: ChildStart, message: str) -> None:
        event = h.sub_orchestration_failed(self._clock.now(), seq=child.seq, reason=message, details=message)
        self._deliver_locked(parent, parent.execution_id, event)

    def _notify_parent_locked(self, child: Instance) -> None:
        link = child.parent
        if link is None:
            return
        parent = self._instances.get(link.instance_id)
        if parent is None:
            return
        now = self._clock.now()
        if child.runtime_status is RuntimeStatus.COMPLETED:
            event = h.sub_orchestration_completed(now, seq=link.seq, result_json=json.dumps(child.output))
        else:
            reason = str(child.output)
            if child.runtime_status is RuntimeStatus.TERMINATED:
                reason = f"The sub-orchestration '{child.instance_id}' was terminated: {child.output}"
            event = h.sub_orchestration_failed(now, seq=link.seq, reason=reason, details=reason)
        self._deliver_locked(parent, link.execution_id, event)

    # --- internals: the dispatcher -----------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while True:
            with self._cond:
                work = self._next_work_locked()
            if work is None:
                return
            plan = self._run_episode(work)
            with self._cond:
                try:
                    self._commit_locked(work, plan)
                except Exception as exc:  # a host bug must not stop every other instance
                    log.exception("instance %s: commit failed", work.instance.instance_id)
                    self._finish_locked(
                        work.instance, work.now, Failed(f"durable host error: {exc}", repr(exc))
                    )
                self._cond.notify_all()

    def _next_work_locked(self) -> _Work | None:
        while not self._stopping:
            while self._ready:
                instance = self._instances.get(self._ready.popleft())
                if instance is None or instance.runtime_status.is_terminal or not instance.inbox:
                    continue
                terminate = next(
                    (e for e in instance.inbox if e["EventType"] == h.EventType.EXECUTION_TERMINATED), None
                )
                if terminate is not None:
                    self._terminate_locked(instance, terminate)
                    continue
                count = select_batch(instance.state, instance.inbox)
                now = self._clock.now()
                return _Work(instance, list(instance.inbox[:count]), now, h.orchestrator_started(now))
            if self._fire_due_timers_locked():
                continue
            next_fire = self._next_timer_locked()
            if isinstance(self._clock, VirtualClock):
                if next_fire is not None and self._in_flight == 0 and self._clock.auto_advance:
                    self._clock.advance_to(next_fire)
                    continue
                self._cond.wait()
            else:
                timeout = (
                    None if next_fire is None else max(0.0, (next_fire - self._clock.now()).total_seconds())
                )
                self._cond.wait(timeout)
        return None

    def _run_episode(self, work: _Work) -> EpisodePlan:
        """Run one episode of the orchestrator, outside the lock (only the dispatcher writes history)."""
        instance = work.instance
        handle = self._index.orchestrators.get(instance.name)
        common: dict[str, Any] = {
            "orchestrator": instance.name,
            "execution_id": instance.execution_id,
            "now": work.now,
            "activities": self._index.activities.keys(),
            "orchestrators": self._index.orchestrators.keys(),
        }
        if handle is None:
            message = unknown_orchestrator_message(instance.name, self._index.orchestrators)
            output = h.OrchestratorOutput(error=message)
            return plan_episode(instance.state, work.batch, output, has_state=False, **common)
        context = h.orchestration_context(
            past=instance.history,
            past_json=instance.played_history_json(),
            new=[work.started, *work.batch],
            input_json=instance.input_json,
            instance_id=instance.instance_id,
            parent_instance_id=instance.parent.instance_id if instance.parent else None,
        )
        has_state = True
        try:
            output = h.parse_orchestrator_result(handle(context))
        except Exception as exc:
            has_state = h.OUT_OF_PROC_LABEL in str(exc)
            try:
                output = h.parse_orchestrator_result(exception=exc)
            except ValueError as bad:
                output, has_state = h.OrchestratorOutput(error=str(bad)), False
        return plan_episode(instance.state, work.batch, output, has_state=has_state, **common)

    def _commit_locked(self, work: _Work, plan: EpisodePlan) -> None:
        instance = work.instance
        if self._instances.get(instance.instance_id) is not instance or instance.runtime_status.is_terminal:
            return
        del instance.inbox[: len(work.batch)]
        instance.replays += 1
        instance.history.append(work.started)
        instance.history.extend(work.batch)
        instance.history.extend(plan.events)
        instance.state = plan.state
        instance.last_updated_time = work.now
        if instance.runtime_status in (RuntimeStatus.PENDING, RuntimeStatus.CONTINUED_AS_NEW):
            instance.runtime_status = RuntimeStatus.RUNNING
        if plan.custom_status is not None:
            instance.custom_status = plan.custom_status
        for seq in plan.cancelled_timers:
            instance.armed.pop(seq, None)
        if plan.outcome is not None:
            self._finish_locked(instance, work.now, plan.outcome)
            return
        instance.history.append(h.orchestrator_completed(work.now))
        for call in plan.activities:
            self._submit_locked(instance, call)
        for timer in plan.timers:
            self._arm_locked(instance, timer.seq, timer.fire_at)
        for child in plan.children:
            self._start_child_locked(instance, child)
        self._save_locked(instance)
        if instance.inbox:
            self._mark_ready_locked(instance)

    def _finish_locked(
        self, instance: Instance, now: datetime, outcome: Completed | Failed | ContinuedAsNew
    ) -> None:
        instance.armed.clear()
        instance.last_updated_time = now
        if isinstance(outcome, ContinuedAsNew):
            instance.history.append(h.execution_completed(now, status="ContinuedAsNew", result=None))
            carried = [e for e in instance.inbox if e["EventType"] == h.EventType.EVENT_RAISED]
            instance.execution_id = uuid.uuid4().hex
            instance.input_json = outcome.input_json
            instance.history = []
            instance.state = ExecutionState()
            instance.output = None
            instance.runtime_status = RuntimeStatus.CONTINUED_AS_NEW
            instance.inbox = [self._execution_started(instance, now), *carried]
            self._save_locked(instance)
            self._mark_ready_locked(instance)
            return
        if isinstance(outcome, Completed):
            instance.runtime_status = RuntimeStatus.COMPLETED
            instance.output = outcome.output
            result = json.dumps(outcome.output)
        else:
            instance.runtime_status = RuntimeStatus.FAILED
            instance.output = outcome.reason
            result = outcome.reason
            log.warning("instance %s failed: %s", instance.instance_id, outcome.reason)
        instance.history.append(
            h.execution_completed(now, status=str(instance.runtime_status), result=result)
        )
        instance.history.append(h.orchestrator_completed(now))
        instance.inbox.clear()
        self._save_locked(instance)
        log.info("instance %s (%s) %s", instance.instance_id, instance.name, instance.runtime_status)
        self._notify_parent_locked(instance)
        self._finished.notify_all()

    def _terminate_locked(self, instance: Instance, request: dict[str, Any]) -> None:
        now = self._clock.now()
        reason = str(request.get("Input") or "")
        instance.history.append(h.orchestrator_started(now))
        if (
            not instance.history[:-1]
            and instance.inbox
            and instance.inbox[0]["EventType"] == h.EventType.EXECUTION_STARTED
        ):
            instance.history.append(instance.inbox[0])
        instance.history.append(request)
        instance.history.append(h.execution_completed(now, status="Terminated", result=reason))
        instance.history.append(h.orchestrator_completed(now))
        instance.inbox.clear()
        instance.armed.clear()
        instance.runtime_status = RuntimeStatus.TERMINATED
        instance.output = _json_or_text(reason)
        instance.last_updated_time = now
        self._save_locked(instance)
        log.info("instance %s (%s) terminated: %s", instance.instance_id, instance.name, redact(reason))
        self._notify_parent_locked(instance)
        self._cond.notify_all()
        self._finished.notify_all()
