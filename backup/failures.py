"""What went wrong, as callers see it: a short code and a message a person reads.

Every failure shown outside the code — a disk's or a run's result, an HTTP error body, a line of the
command line — is a :class:`Failure`: one :class:`FailureCode` from the small set below, and a one-line
message without internals (no exception class names, activity names, raw urllib3 text or stack traces;
those go to the logs). :func:`describe` is the one place that maps the exception tree
(:mod:`backup.errors`) to codes:

    code                 from                                                         retry may help
    InvalidInput         InvalidInputError: a request, selection or record is malformed        no
    InvalidSettings      ConfigurationError: an app setting is missing or wrong, no token      no
    DiskNotFound         DiskNotFoundError; a 404 while snapshotting the disk                  no
    NotFound             NotFoundError: a snapshot, container, blob or table is gone            no
    AccessDenied         AuthenticationError: 401 or 403 from Azure                             no
    Throttled            ThrottledError: 429 after the transport's own retries                  yes
    BackendUnavailable   TransportError (no answer), ServerError (5xx)                          yes
    RequestRejected      any other error answer from Azure (400, 409, 412, ...)                 no
    UnexpectedResponse   UnexpectedResponseError: Azure answered, but not as documented         no
    SnapshotFailed       OperationFailedError while creating the snapshot (or its background copy) no
    OperationFailed      OperationFailedError of another operation (grant, revoke, delete)     no
    CopyFailed           CopyFailedError: the blob copy ended failed or aborted                no
    VerificationFailed   VerificationError: the backup does not match its disk                 no
    WriterBusy           WriterBusyError: another run is writing this disk's backup (skipped)  no
    DeadlineExceeded     DeadlineExceededError: a wait ran past its deadline                   no
    TargetExists         TargetExistsError: a restore's target disk exists (never overwritten) no
    NoRestorePoint       NoRestorePointError: no good restore point matches a restore's choice no
    Terminated           the run or disk orchestration was terminated                          no
    InternalError        anything else: a bug (details in the logs)                            no

Activities run in another process than their orchestrator; what crosses over is text (a failed task's
reason and details). So an activity's failure is raised as :class:`ActivityFailure`, whose message
carries the code in brackets — ``[AccessDenied] Azure answered 403 ...`` — and the orchestrator reads
it back with :func:`failure_of`, whatever the Functions host wrapped around it. Anything without our
marker is an ``InternalError``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from backup.errors import (
    AuthenticationError,
    AzureHttpError,
    ConfigurationError,
    CopyFailedError,
    DeadlineExceededError,
    DiskBackupError,
    DiskNotFoundError,
    InvalidInputError,
    NotFoundError,
    OperationFailedError,
    ServerError,
    ThrottledError,
    TransportError,
    UnexpectedResponseError,
    VerificationError,
)
from backup.redact import redact

__all__ = [
    "MAX_MESSAGE",
    "ActivityFailure",
    "Failure",
    "FailureCode",
    "describe",
    "failure_of",
    "for_phase",
    "retry_after_of",
]

#: A failure message is one line of at most this many characters.
MAX_MESSAGE = 500

INTERNAL_MESSAGE = "an unexpected error occurred; the app's logs have the details"


class FailureCode(StrEnum):
    """The codes a failure is shown with (the table in the module docstring says what each means)."""

    INVALID_INPUT = "InvalidInput"
    INVALID_SETTINGS = "InvalidSettings"
    DISK_NOT_FOUND = "DiskNotFound"
    NOT_FOUND = "NotFound"
    ACCESS_DENIED = "AccessDenied"
    THROTTLED = "Throttled"
    BACKEND_UNAVAILABLE = "BackendUnavailable"
    REQUEST_REJECTED = "RequestRejected"
    UNEXPECTED_RESPONSE = "UnexpectedResponse"
    SNAPSHOT_FAILED = "SnapshotFailed"
    OPERATION_FAILED = "OperationFailed"
    COPY_FAILED = "CopyFailed"
    VERIFICATION_FAILED = "VerificationFailed"
    WRITER_BUSY = "WriterBusy"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    TARGET_EXISTS = "TargetExists"
    NO_RESTORE_POINT = "NoRestorePoint"
    TERMINATED = "Terminated"
    INTERNAL = "InternalError"

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed later (the service was busy or did not answer)."""
        return self in (FailureCode.THROTTLED, FailureCode.BACKEND_UNAVAILABLE)


@dataclass(frozen=True)
class Failure:
    """A failure as callers see it: a code and a one-line message for a person."""

    code: FailureCode
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", one_line(self.message))

    def to_json(self) -> dict[str, str]:
        """``{"code", "message"}``: the error object of the HTTP API and the command line."""
        return {"code": self.code.value, "message": self.message}


class ActivityFailure(Exception):
    """What an activity raises across the process boundary: ``[Code] message`` (see the docstring)."""

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        super().__init__(f"[{failure.code.value}] {failure.message}")


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` redacted, on one line, at most ``limit`` characters (cut with an ellipsis)."""
    flat = " ".join(redact(str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def describe(error: BaseException) -> Failure:
    """The one mapping from an exception (of :mod:`backup.errors`, or anything else) to a failure."""
    if isinstance(error, ActivityFailure):
        return error.failure
    if isinstance(error, DiskNotFoundError):
        return Failure(FailureCode.DISK_NOT_FOUND, error.problem)
    if isinstance(error, InvalidInputError):
        return Failure(FailureCode.INVALID_INPUT, error.message)
    if isinstance(error, ConfigurationError):
        return Failure(FailureCode.INVALID_SETTINGS, error.message)
    if isinstance(error, TransportError):
        return Failure(FailureCode.BACKEND_UNAVAILABLE, _unreachable(error))
    if isinstance(error, AzureHttpError):
        return Failure(_http_code(error), _answered(error))
    if isinstance(error, UnexpectedResponseError):
        return Failure(FailureCode.UNEXPECTED_RESPONSE, _off_spec(error))
    if isinstance(error, OperationFailedError):
        return Failure(FailureCode.OPERATION_FAILED, error.message)
    if isinstance(error, CopyFailedError):
        return Failure(FailureCode.COPY_FAILED, error.message)
    if isinstance(error, VerificationError):
        return Failure(FailureCode.VERIFICATION_FAILED, error.message)
    if isinstance(error, DeadlineExceededError):
        return Failure(FailureCode.DEADLINE_EXCEEDED, error.message)
    if isinstance(error, DiskBackupError) and error.failure_code in _CODES:
        return Failure(FailureCode(error.failure_code), error.message)
    return Failure(FailureCode.INTERNAL, INTERNAL_MESSAGE)


def for_phase(failure: Failure, phase: str) -> Failure:
    """A disk's failure, made specific to the phase it happened in.

    An operation that ended Failed while snapshotting (or while the snapshot's background copy ran) is
    the snapshot's failure; a 404 while snapshotting means the disk itself is gone (deleted, or its
    resource group).
    """
    if phase in ("snapshot", "snapshot-copy") and failure.code is FailureCode.OPERATION_FAILED:
        return Failure(FailureCode.SNAPSHOT_FAILED, failure.message)
    if phase == "snapshot" and failure.code is FailureCode.NOT_FOUND:
        return Failure(FailureCode.DISK_NOT_FOUND, failure.message)
    return failure


_CODES = frozenset(code.value for code in FailureCode)
_MARKER = re.compile(r"\[(" + "|".join(code.value for code in FailureCode) + r")\] ([^\r\n]*)")
_TERMINATED = re.compile(r"\bwas terminated\b|^Terminated\b")


def failure_of(error: Any) -> Failure:
    """What an orchestrator caught (a failed activity's or sub-orchestration's error, or our own
    exception), as a failure. The text's ``[Code]`` marker wins; without one it is an internal error."""
    if isinstance(error, (ActivityFailure, DiskBackupError)):
        return describe(error)
    # The SDK hands a failed task over as a bare Exception holding the host's reason and details.
    text = str(error)
    found = _MARKER.search(text)
    if found is not None:
        return Failure(FailureCode(found.group(1)), found.group(2).strip() or INTERNAL_MESSAGE)
    if _TERMINATED.search(text):
        return Failure(FailureCode.TERMINATED, "the orchestration was terminated")
    return Failure(FailureCode.INTERNAL, INTERNAL_MESSAGE)


def _http_code(error: AzureHttpError) -> FailureCode:
    if isinstance(error, AuthenticationError):
        return FailureCode.ACCESS_DENIED
    if isinstance(error, NotFoundError):
        return FailureCode.NOT_FOUND
    if isinstance(error, ThrottledError):
        return FailureCode.THROTTLED
    if isinstance(error, ServerError):
        return FailureCode.BACKEND_UNAVAILABLE
    return FailureCode.REQUEST_REJECTED


def _answered(error: AzureHttpError) -> str:
    """``<service> answered HTTP 403 AuthorizationFailed: <Azure's message> (x-ms-request-id ...)``; a
    throttled answer adds ``; retry after N s`` when the service said when (:func:`retry_after_of`)."""
    text = f"{_service(error.url)} answered HTTP {error.status}"
    if error.code:
        text += f" {error.code}"
    if error.error_message:
        text += f": {error.error_message}"
    if error.request_id:
        text += f" (x-ms-request-id {error.request_id})"
    if isinstance(error, ThrottledError) and error.retry_after is not None:
        text += f"; retry after {math.ceil(error.retry_after)} s"
    return text


_RETRY_AFTER = re.compile(r"; retry after (\d{1,9}) s\b")


def retry_after_of(failure: Failure) -> float | None:
    """How long a throttled failure asked to wait (the ``Retry-After`` its message carries across the
    activity boundary), or ``None``."""
    if failure.code is not FailureCode.THROTTLED:
        return None
    found = _RETRY_AFTER.search(failure.message)
    return float(found.group(1)) if found else None


def _off_spec(error: UnexpectedResponseError) -> str:
    """``unexpected answer from Azure (<service>): <field>: <problem> (x-ms-request-id ...)``."""
    service = _service(error.url)
    source = "Azure" if service == "Azure" else f"Azure ({service})"
    text = f"unexpected answer from {source}: {error.field}: {error.problem}"
    if error.request_id:
        text += f" (x-ms-request-id {error.request_id})"
    return text


def _unreachable(error: TransportError) -> str:
    """``could not reach <host>: <what happened>``, without the HTTP library's own wording."""
    where = urlsplit(error.url).netloc if error.url else ""
    text = f"could not reach {_service(error.url)}"
    if where:
        text += f" at {where}"
    return f"{text}: {error.cause or 'the connection failed'}"


def _service(url: str | None) -> str:
    """A person's name for the service a URL belongs to (ARM, blob or table storage), else 'Azure'."""
    parts = urlsplit(url or "")
    host, path = (parts.hostname or "").lower(), parts.path.lower()
    if host.startswith("management.") or path.startswith("/subscriptions/"):
        return "Azure Resource Manager"
    if ".table." in host or "/tables" in path or re.search(r"/[^/]+\(", path):  # OData: table(...)
        return "Table storage"
    if ".blob." in host:
        return "Blob storage"
    return "Azure"
