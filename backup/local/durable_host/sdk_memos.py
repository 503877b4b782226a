"""Three things the Durable SDK redoes on every replay that the host lets it do once.

On every episode the SDK rebuilds the whole history from JSON and builds a fresh executor. Profiled on
the 1,000-disk benchmark (py-spy, interpreter-lock samples of the dispatcher), two of its costs had
nothing to do with the orchestration:

- **Timestamps.** ``HistoryEvent`` parses every event's ``Timestamp`` with ``dateutil.parser.parse``,
  so an orchestration replayed *n* times parses its first event *n* times: about half of all replay
  time. The texts repeat replay after replay, and parsing a complete timestamp is a pure function with
  an immutable result (``datetime``), so the SDK module's ``dt_parse`` gets a bounded memo; any call
  but one string argument goes to dateutil untouched.
- **A class per replay.** ``TaskOrchestrationExecutor.__init__`` makes a new ``namedtuple`` class
  (``SetTaskValuePayload``) every time: a tenth of the dispatcher's time once timestamps were cheap.
  That module's ``namedtuple`` gets a memo by type name and fields, so every executor shares one class
  of plain tuples (nothing compares their classes).
- **An app setting per value.** ``azure.functions``' Durable JSON codec (``df_dumps``/``df_loads``:
  every activity's and sub-orchestration's input on every replay, every result in the history) reads
  ``AZURE_FUNCTIONS_DURABLE_STRICT_TYPING`` from ``os.environ`` at each call: about 5 % of the
  dispatcher. App settings are the worker's environment, fixed for its life (on Azure a changed
  setting restarts the worker), so the reading is memoized once per process.

None changes what the SDK computes, only what it costs. On Azure the worker pays both, which is why
orchestrations still keep their histories short (``backup.workflow.watch``).
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

__all__ = ["install", "installed"]

#: The SDK modules concerned (``from dateutil.parser import parse as dt_parse``,
#: ``from collections import namedtuple``).
_HISTORY_EVENT = "azure.durable_functions.models.history.HistoryEvent"
_EXECUTOR = "azure.durable_functions.models.TaskOrchestrationExecutor"
#: ``def _is_strict_mode() -> bool`` reads the codec's app setting.
_CODEC = "azure.functions._durable_functions"

#: Distinct timestamps kept; a virtual-clock run of 1,000 disks has a few tens of thousands.
CACHE_SIZE = 1 << 17

_lock = threading.Lock()


def _memoized_parse(parse: Callable[..., datetime]) -> Callable[..., datetime]:
    cached = functools.lru_cache(maxsize=CACHE_SIZE)(parse)

    @functools.wraps(parse)
    def dt_parse(timestr: Any, *args: Any, **kwargs: Any) -> datetime:
        if args or kwargs or not isinstance(timestr, str):
            return parse(timestr, *args, **kwargs)
        return cached(timestr)

    dt_parse.__memo_of__ = parse  # type: ignore[attr-defined]
    return dt_parse


def _memoized_namedtuple(factory: Callable[..., type]) -> Callable[..., type]:
    cached = functools.lru_cache(maxsize=64)(factory)

    @functools.wraps(factory)
    def namedtuple(typename: Any, field_names: Any, **kwargs: Any) -> type:
        if kwargs or not isinstance(typename, str) or not isinstance(field_names, str | tuple):
            return factory(typename, field_names, **kwargs)
        return cached(typename, field_names)

    namedtuple.__memo_of__ = factory  # type: ignore[attr-defined]
    return namedtuple


def _memoized_setting(read: Callable[[], bool]) -> Callable[[], bool]:
    cached = functools.lru_cache(maxsize=1)(read)

    @functools.wraps(read)
    def setting() -> bool:
        return cached()

    setting.__memo_of__ = read  # type: ignore[attr-defined]
    return setting


_MEMOS: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    (_HISTORY_EVENT, "dt_parse", _memoized_parse),
    (_EXECUTOR, "namedtuple", _memoized_namedtuple),
    (_CODEC, "_is_strict_mode", _memoized_setting),
)


def installed() -> bool:
    """Whether every memo is in place."""
    return all(
        hasattr(getattr(importlib.import_module(module), name, None), "__memo_of__")
        for module, name, _ in _MEMOS
    )


def install() -> None:
    """Put the memos in place (idempotent, process-wide; a module that lacks the name is left alone)."""
    with _lock:
        for module_name, name, memoize in _MEMOS:
            module = importlib.import_module(module_name)
            original = getattr(module, name, None)
            if original is None or hasattr(original, "__memo_of__"):
                continue
            setattr(module, name, memoize(original))
