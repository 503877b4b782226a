"""The SDK's history timestamps, parsed once per distinct text instead of once per replay.

On every episode the SDK rebuilds the whole history from JSON and parses every event's ``Timestamp``
with ``dateutil.parser.parse`` (``azure.durable_functions.models.history.HistoryEvent``), so an
orchestration that has replayed *n* times has parsed its first event *n* times. Profiled on the
1,000-disk benchmark, that parse was about half of all replay time, the largest single cost of the
local host.

The same texts come back replay after replay (a history only grows), and parsing a complete ISO 8601
timestamp is a pure function whose results (``datetime``) are immutable, so the host memoizes it:
:func:`install` wraps the SDK module's ``dt_parse`` in a bounded cache. The SDK sees the very objects
dateutil returns; anything other than one string argument goes to dateutil untouched. This changes no
outcome, only the cost; on Azure the worker pays the full cost, which is why orchestrations still keep
their histories short (``backup.workflow.watch``).
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

__all__ = ["install", "installed"]

#: The SDK module that parses history timestamps (``from dateutil.parser import parse as dt_parse``).
_SDK_MODULE = "azure.durable_functions.models.history.HistoryEvent"

#: Distinct timestamps kept; a virtual-clock run of 1,000 disks has a few tens of thousands.
CACHE_SIZE = 1 << 17

_lock = threading.Lock()


def _memoized(parse: Callable[..., datetime]) -> Callable[..., datetime]:
    cached = functools.lru_cache(maxsize=CACHE_SIZE)(parse)

    @functools.wraps(parse)
    def dt_parse(timestr: Any, *args: Any, **kwargs: Any) -> datetime:
        if args or kwargs or not isinstance(timestr, str):
            return parse(timestr, *args, **kwargs)
        return cached(timestr)

    dt_parse.__wrapped_parse__ = parse  # type: ignore[attr-defined]
    return dt_parse


def installed() -> bool:
    """Whether the SDK's timestamp parser is the memoized one."""
    module = importlib.import_module(_SDK_MODULE)
    return hasattr(getattr(module, "dt_parse", None), "__wrapped_parse__")


def install() -> None:
    """Memoize the SDK's history timestamp parser (idempotent, process-wide)."""
    module = importlib.import_module(_SDK_MODULE)
    with _lock:
        parse = getattr(module, "dt_parse", None)
        if parse is None or hasattr(parse, "__wrapped_parse__"):
            return
        module.dt_parse = _memoized(parse)  # type: ignore[attr-defined]
