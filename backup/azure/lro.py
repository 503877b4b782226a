"""Long-running ARM operations, decided from data alone: no I/O, no sleeping.

ARM reports an operation's progress in one of four ways, tried in this order (as azure-core's
``ARMPolling`` does) on the answer that started it:

1. ``Azure-AsyncOperation`` header: poll that URL; its body says ``status``: InProgress (or any other
   non-terminal word) | Succeeded | Failed | Canceled, with ``error`` {code, message} when it failed.
   Compute puts a grant-access result there too, at ``properties.output`` (observed, not in the spec).
2. ``Location`` header: poll that URL; 202 means running; any other success status means done and its
   body *is* the final result ("the same response as had the operation been synchronous"); an error
   status with a ``CloudError`` body means the operation failed.
3. PUT/PATCH without either header: poll the resource itself; ``properties.provisioningState`` is the
   state (a resource without one counts as Succeeded).
4. Anything else: the status code alone (200/201/204 done; 202 without a URL to poll is refused).

:func:`classify_initial` turns the first answer into an :class:`LroStatus`; :func:`classify_poll`
turns each poll answer into the next one. The orchestrator waits ``retry_after`` seconds on a durable
timer between polls; nothing here sleeps.

:class:`LroStatus` travels between activities as JSON (:meth:`LroStatus.to_dict`), so it never holds a
result body: a result may be a secret (grant access returns a SAS). It says instead where the result can
be fetched (``result_source`` and ``result_url``); the activity that needs it fetches it and reads it with
:func:`extract_result`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any, ClassVar
from urllib.parse import urlsplit

from backup.azure.retry import parse_retry_after
from backup.errors import InvalidInputError, OperationFailedError, UnexpectedResponseError
from backup.redact import redact

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "LroState",
    "LroStatus",
    "PollKind",
    "ResultSource",
    "classify_initial",
    "classify_poll",
    "extract_result",
]

#: Seconds between polls when the server does not say (the ARM async API reference's default).
DEFAULT_RETRY_AFTER = 60.0

_LRO_METHODS = frozenset({"PUT", "PATCH", "POST", "DELETE"})
_STARTED = frozenset({200, 201, 202, 204})


class LroState(StrEnum):
    """Where an operation stands. Anything but InProgress is terminal."""

    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"


class PollKind(StrEnum):
    """Which URL the operation is polled at, and so how a poll answer is read."""

    ASYNC_OPERATION = "azure-async-operation"
    LOCATION = "location"
    RESOURCE = "resource"


class ResultSource(StrEnum):
    """Where a succeeded operation's result can be fetched."""

    NONE = "none"  # no result: DELETE, revoke, a POST that answered without a body, or not succeeded
    RESOURCE = "resource"  # GET result_url: the whole body is the result
    ASYNC_OUTPUT = "async-output"  # GET result_url (the operation status): body.properties.output
    INITIAL = "initial"  # only the synchronous first answer held it; it cannot be fetched again


@dataclass(frozen=True)
class LroStatus:
    """An operation's state after one answer; JSON-safe, never holding a result or a secret."""

    method: str
    resource_url: str
    state: LroState
    poll_kind: PollKind | None = None
    poll_url: str | None = None
    location_url: str | None = None
    retry_after: float = 0.0
    result_source: ResultSource = ResultSource.NONE
    result_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def done(self) -> bool:
        """True once the operation is Succeeded, Failed or Canceled."""
        return self.state is not LroState.IN_PROGRESS

    @property
    def succeeded(self) -> bool:
        """True if the operation ended Succeeded."""
        return self.state is LroState.SUCCEEDED

    def raise_for_failure(self) -> None:
        """Raise :class:`OperationFailedError` if the operation ended Failed or Canceled."""
        if self.state in (LroState.FAILED, LroState.CANCELED):
            raise OperationFailedError(
                status=self.state.value, code=self.error_code, error_message=self.error_message
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, for an activity's return value or an orchestrator's input."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.value if isinstance(value, StrEnum) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LroStatus:
        """The inverse of :meth:`to_dict`; every field is checked (the dict comes from outside)."""
        if not isinstance(data, Mapping):
            raise InvalidInputError("lro status", f"must be an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError("lro status", f"unknown fields {unknown}")
        method = _require_str(data, "method")
        if method not in _LRO_METHODS:
            raise InvalidInputError("lro status.method", f"must be one of {sorted(_LRO_METHODS)}")
        retry_after = data.get("retry_after", 0.0)
        if isinstance(retry_after, bool) or not isinstance(retry_after, int | float) or retry_after < 0:
            raise InvalidInputError("lro status.retry_after", "must be a non-negative number")
        status = cls(
            method=method,
            resource_url=_url(_require_str(data, "resource_url"), "lro status.resource_url"),
            state=_enum(LroState, data, "state"),
            poll_kind=_enum(PollKind, data, "poll_kind", optional=True),
            poll_url=_optional_url(data, "poll_url"),
            location_url=_optional_url(data, "location_url"),
            retry_after=float(retry_after),
            result_source=_enum(ResultSource, data, "result_source", optional=True) or ResultSource.NONE,
            result_url=_optional_url(data, "result_url"),
            error_code=_optional_str(data, "error_code"),
            error_message=_optional_str(data, "error_message"),
        )
        if not status.done and (status.poll_kind is None or status.poll_url is None):
            raise InvalidInputError("lro status", "an operation in progress needs poll_kind and poll_url")
        if (
            status.result_source in (ResultSource.RESOURCE, ResultSource.ASYNC_OUTPUT)
            and not status.result_url
        ):
            raise InvalidInputError(
                "lro status.result_url", f"required for result_source {status.result_source}"
            )
        return status


# -- the strategies: one per way ARM reports progress (azure-core's shape, without the I/O) ----------


@dataclass(frozen=True)
class _Progress:
    state: LroState
    error_code: str | None = None
    error_message: str | None = None


class _AsyncOperation:
    kind: ClassVar[PollKind] = PollKind.ASYNC_OPERATION

    @staticmethod
    def can_poll(method: str, headers: Mapping[str, str]) -> bool:
        return "azure-asyncoperation" in headers

    @staticmethod
    def polling_url(request_url: str, headers: Mapping[str, str]) -> str:
        return _answered_url(headers["azure-asyncoperation"], "Azure-AsyncOperation header")

    @staticmethod
    def progress(status_code: int, body: Any) -> _Progress:
        if status_code not in (200, 201, 202):
            raise UnexpectedResponseError(
                "operation status", f"expected HTTP 200 from the Azure-AsyncOperation URL, got {status_code}"
            )
        if not isinstance(body, Mapping) or not isinstance(body.get("status"), str) or not body["status"]:
            raise UnexpectedResponseError("operation status body", "has no 'status'")
        state = _state(body["status"])
        if state in (LroState.FAILED, LroState.CANCELED):
            code, message = _error_of(body)
            return _Progress(state, code, message)
        return _Progress(state)

    @staticmethod
    def result(status: LroStatus, body: Any) -> tuple[ResultSource, str | None]:
        if status.method == "DELETE":
            return ResultSource.NONE, None
        if status.method in ("PUT", "PATCH"):
            return ResultSource.RESOURCE, status.resource_url
        # POST: Compute's status body carries the result at properties.output (grant access's SAS);
        # else the final-state-via-location result, else nothing.
        properties = body.get("properties") if isinstance(body, Mapping) else None
        if isinstance(properties, Mapping) and isinstance(properties.get("output"), Mapping):
            return ResultSource.ASYNC_OUTPUT, status.poll_url
        if status.location_url:
            return ResultSource.RESOURCE, status.location_url
        return ResultSource.NONE, None


class _Location:
    kind: ClassVar[PollKind] = PollKind.LOCATION

    @staticmethod
    def can_poll(method: str, headers: Mapping[str, str]) -> bool:
        return "location" in headers

    @staticmethod
    def polling_url(request_url: str, headers: Mapping[str, str]) -> str:
        return _answered_url(headers["location"], "Location header")

    @staticmethod
    def progress(status_code: int, body: Any) -> _Progress:
        if status_code == 202:
            return _Progress(LroState.IN_PROGRESS)
        if status_code in (200, 201, 204):
            return _Progress(LroState.SUCCEEDED)
        if 400 <= status_code < 500:
            code, message = _error_of(body)
            return _Progress(LroState.FAILED, code, message or f"HTTP {status_code} from the Location URL")
        raise UnexpectedResponseError(
            "operation status", f"unexpected HTTP {status_code} from the Location URL"
        )

    @staticmethod
    def result(status: LroStatus, body: Any) -> tuple[ResultSource, str | None]:
        if status.method in ("PUT", "PATCH"):
            # The resource itself is the result, whatever the Location URL's last answer held.
            return ResultSource.RESOURCE, status.resource_url
        if status.method == "DELETE" or not isinstance(body, Mapping) or not body:
            return ResultSource.NONE, None
        # The Location URL keeps answering with the final result, so it is where to fetch it again.
        return ResultSource.RESOURCE, status.poll_url


class _ProvisioningState:
    kind: ClassVar[PollKind] = PollKind.RESOURCE

    @staticmethod
    def can_poll(method: str, headers: Mapping[str, str]) -> bool:
        return method in ("PUT", "PATCH")

    @staticmethod
    def polling_url(request_url: str, headers: Mapping[str, str]) -> str:
        return request_url

    @staticmethod
    def progress(status_code: int, body: Any) -> _Progress:
        provisioning = _provisioning_state(body)
        if status_code == 202:
            return _Progress(LroState.IN_PROGRESS)
        if status_code == 201:
            state = _state(provisioning) if provisioning else LroState.IN_PROGRESS
        elif status_code == 200:
            state = _state(provisioning) if provisioning else LroState.SUCCEEDED
        elif status_code == 204:
            state = LroState.SUCCEEDED
        else:
            raise UnexpectedResponseError(
                "operation status", f"unexpected HTTP {status_code} from the resource"
            )
        if state in (LroState.FAILED, LroState.CANCELED):
            return _Progress(state, None, f"provisioningState is {provisioning}")
        return _Progress(state)

    @staticmethod
    def result(status: LroStatus, body: Any) -> tuple[ResultSource, str | None]:
        return ResultSource.RESOURCE, status.resource_url


_STRATEGIES: dict[PollKind, type[_AsyncOperation | _Location | _ProvisioningState]] = {
    PollKind.ASYNC_OPERATION: _AsyncOperation,
    PollKind.LOCATION: _Location,
    PollKind.RESOURCE: _ProvisioningState,
}


def classify_initial(
    method: str,
    request_url: str,
    status_code: int,
    headers: Mapping[str, str],
    body: Any,
    *,
    default_retry_after: float = DEFAULT_RETRY_AFTER,
) -> LroStatus:
    """The state of an operation after the answer to the request that started it.

    ``headers`` in any case; ``body`` the parsed JSON (``None`` when empty). Raises
    :class:`~backup.errors.UnexpectedResponseError` for an answer that neither starts nor finishes an
    operation, and :class:`InvalidInputError` for a request that is not a long-running one.
    """
    method = method.upper()
    if method not in _LRO_METHODS:
        raise InvalidInputError("method", f"a long-running operation is one of {sorted(_LRO_METHODS)}")
    request_url = _url(request_url, "request url")
    if status_code not in _STARTED:
        raise UnexpectedResponseError(
            "status code", f"HTTP {status_code} neither starts nor finishes an operation"
        )
    headers = _lower(headers)
    location = _answered_url(headers["location"], "Location header") if "location" in headers else None
    base = LroStatus(
        method=method, resource_url=request_url, state=LroState.IN_PROGRESS, location_url=location
    )

    for strategy in (_AsyncOperation, _Location, _ProvisioningState):
        if not strategy.can_poll(method, headers):
            continue
        poll_url = strategy.polling_url(request_url, headers)
        if strategy is _ProvisioningState:
            progress = strategy.progress(status_code, body)
        else:
            # A status URL means the operation runs, whatever the first body says.
            progress = _Progress(LroState.IN_PROGRESS)
        status = replace(base, poll_kind=strategy.kind, poll_url=poll_url)
        return _advance(status, strategy, progress, headers, body, default_retry_after)

    # Status code alone.
    if status_code == 202:
        raise UnexpectedResponseError(
            "Location header", "HTTP 202 Accepted without Azure-AsyncOperation or Location: nothing to poll"
        )
    has_body = isinstance(body, Mapping) and bool(body)
    source = ResultSource.INITIAL if method == "POST" and has_body else ResultSource.NONE
    return replace(base, state=LroState.SUCCEEDED, result_source=source)


def classify_poll(
    previous: LroStatus,
    status_code: int,
    headers: Mapping[str, str],
    body: Any,
    *,
    default_retry_after: float = DEFAULT_RETRY_AFTER,
) -> LroStatus:
    """The state after the answer to a GET of ``previous.poll_url``.

    For a Location poll, pass error answers (4xx) here too: they mean the operation failed.
    """
    if previous.done:
        raise InvalidInputError("lro status", f"the operation already ended {previous.state.value}")
    if previous.poll_kind is None or previous.poll_url is None:
        raise InvalidInputError("lro status", "has nothing to poll")
    strategy = _STRATEGIES[previous.poll_kind]
    headers = _lower(headers)
    status = previous
    if previous.poll_kind is PollKind.LOCATION and status_code == 202 and "location" in headers:
        # ARM may move the operation on; follow it, as azure-core does.
        status = replace(status, poll_url=_answered_url(headers["location"], "Location header"))
    progress = strategy.progress(status_code, body)
    return _advance(status, strategy, progress, headers, body, default_retry_after)


def extract_result(status: LroStatus, body: Any) -> dict[str, Any] | None:
    """The result of a succeeded operation, from the body that ``GET status.result_url`` answered.

    May hold a secret (a grant's ``accessSAS``): return it only to the code that needs it.
    """
    if status.result_source is ResultSource.ASYNC_OUTPUT:
        properties = body.get("properties") if isinstance(body, Mapping) else None
        output = properties.get("output") if isinstance(properties, Mapping) else None
        if not isinstance(output, Mapping):
            raise UnexpectedResponseError("operation status body", "has no properties.output")
        return dict(output)
    if status.result_source is ResultSource.RESOURCE:
        if body is None:
            # A POST polled through Azure-AsyncOperation cannot tell in advance whether its Location
            # result has a body (revoke answers 200 without one): an empty answer is "no result".
            return None
        if not isinstance(body, Mapping):
            raise UnexpectedResponseError("operation result", "expected a JSON object")
        return dict(body)
    return None


# -- small pieces ----------------------------------------------------------------------------------


def _advance(
    status: LroStatus,
    strategy: type[_AsyncOperation | _Location | _ProvisioningState],
    progress: _Progress,
    headers: Mapping[str, str],
    body: Any,
    default_retry_after: float,
) -> LroStatus:
    if progress.state is LroState.IN_PROGRESS:
        retry_after = parse_retry_after(headers)
        return replace(
            status,
            state=LroState.IN_PROGRESS,
            retry_after=default_retry_after if retry_after is None else retry_after,
        )
    if progress.state is LroState.SUCCEEDED:
        source, url = strategy.result(status, body)
        return replace(status, state=progress.state, retry_after=0.0, result_source=source, result_url=url)
    return replace(
        status,
        state=progress.state,
        retry_after=0.0,
        error_code=progress.error_code,
        error_message=redact(progress.error_message) if progress.error_message else None,
    )


def _state(word: str) -> LroState:
    """ARM's terminal words, in any case; every other word means still running."""
    lowered = word.lower()
    if lowered == "succeeded":
        return LroState.SUCCEEDED
    if lowered == "failed":
        return LroState.FAILED
    if lowered in ("canceled", "cancelled"):
        return LroState.CANCELED
    return LroState.IN_PROGRESS


def _provisioning_state(body: Any) -> str | None:
    if not isinstance(body, Mapping):
        return None
    properties = body.get("properties")
    if not isinstance(properties, Mapping):
        return None
    value = properties.get("provisioningState")
    return value if isinstance(value, str) and value else None


def _error_of(body: Any) -> tuple[str | None, str | None]:
    """Code and message of ``{"error": {...}}`` (ARM's CloudError and the status body) or a bare error."""
    if not isinstance(body, Mapping):
        return None, None
    error = body.get("error", body)
    if not isinstance(error, Mapping):
        return None, None
    code, message = error.get("code"), error.get("message")
    return (code if isinstance(code, str) else None, message if isinstance(message, str) else None)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): v for k, v in headers.items()}


def _is_absolute_url(value: object) -> bool:
    parts = urlsplit(value) if isinstance(value, str) else None
    return parts is not None and parts.scheme in ("https", "http") and bool(parts.netloc)


def _url(value: str, field: str) -> str:
    """A URL we were given (a request URL, a status from an orchestration)."""
    if not _is_absolute_url(value):
        raise InvalidInputError(field, f"must be an absolute http(s) URL, got {value!r}")
    return value


def _answered_url(value: str, field: str) -> str:
    """A URL Azure answered with (Location, Azure-AsyncOperation)."""
    if not _is_absolute_url(value):
        raise UnexpectedResponseError(field, f"must be an absolute http(s) URL, got {value!r}")
    return value


def _require_str(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"lro status.{name}", "must be a non-empty string")
    return value


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(f"lro status.{name}", "must be a string or null")
    return value


def _optional_url(data: Mapping[str, Any], name: str) -> str | None:
    value = _optional_str(data, name)
    return _url(value, f"lro status.{name}") if value else None


def _enum(kind: type[StrEnum], data: Mapping[str, Any], name: str, optional: bool = False) -> Any:
    value = data.get(name)
    if value is None and optional:
        return None
    allowed = [m.value for m in kind]
    if value not in allowed:
        raise InvalidInputError(f"lro status.{name}", f"must be one of {', '.join(allowed)}, got {value!r}")
    return kind(value)
