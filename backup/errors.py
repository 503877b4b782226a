"""Every error diskbackup raises, in one tree.

    DiskBackupError                       base of everything below
    ├── ConfigurationError  (ValueError)  an app setting is missing or malformed          not retryable
    ├── InvalidInputError   (ValueError)  a caller's input is malformed (HTTP body, resource ID,
    │   │                                 catalog row, range)                             not retryable
    │   └── DiskNotFoundError             a disk a caller named does not exist            not retryable
    ├── TransportError                    no HTTP answer: connection refused/reset, timeout  retryable
    ├── UnexpectedResponseError           Azure answered, but not as the service documents  not retryable
    │                                     (body, header, status code, link, LRO status, page list, entity)
    ├── AzureHttpError                    Azure answered with an error status               see subclasses
    │   ├── BadRequestError               400                                           not retryable
    │   ├── AuthenticationError           401, 403                                      not retryable
    │   ├── NotFoundError                 404                                           not retryable
    │   ├── ConflictError                 409                                           not retryable
    │   ├── PreconditionFailedError       412 (stale ETag), 416                         not retryable
    │   ├── ThrottledError                429 (carries retry_after)                     retryable
    │   └── ServerError                   500, 502, 503, 504                            retryable
    ├── OperationFailedError              a long-running operation ended Failed/Canceled  not retryable
    ├── CopyFailedError                   a blob copy ended failed or aborted              not retryable
    ├── VerificationError                 a finished backup does not match its source     not retryable
    ├── WriterBusyError                   another run is writing this disk's backup        not retryable
    ├── DeadlineExceededError             a wait ran past its deadline                     not retryable
    ├── TargetExistsError                 a restore's target disk exists already           not retryable
    └── NoRestorePointError               no good restore point matches a restore's choice not retryable

Each class says in ``retryable`` whether repeating the same request may succeed. Error text never holds
a secret: messages and body excerpts pass through :func:`backup.redact.redact` when the error is built.

``InvalidInputError`` is the caller's fault (the HTTP API answers 400); ``UnexpectedResponseError`` is
Azure's (or something between us and Azure): the HTTP API answers 502 and the disk's run fails with it.
What callers are shown of an error (a code and a message without internals) is :mod:`backup.failures`.
"""

from __future__ import annotations

from typing import ClassVar

from backup.redact import redact, strip_query

__all__ = [
    "AuthenticationError",
    "AzureHttpError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "CopyFailedError",
    "DeadlineExceededError",
    "DiskBackupError",
    "DiskNotFoundError",
    "InvalidInputError",
    "NoRestorePointError",
    "NotFoundError",
    "OperationFailedError",
    "PreconditionFailedError",
    "ServerError",
    "TargetExistsError",
    "ThrottledError",
    "TransportError",
    "UnexpectedResponseError",
    "VerificationError",
    "WriterBusyError",
    "http_error_class",
]


class DiskBackupError(Exception):
    """Base of every diskbackup error.

    ``failure_code`` lets a subclass defined elsewhere (``AlertError``) say which
    :class:`backup.failures.FailureCode` it is shown with, its message then being shown as it is;
    without one, :func:`backup.failures.describe` maps the classes of this module itself.
    """

    retryable: ClassVar[bool] = False
    failure_code: ClassVar[str | None] = None

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))

    @property
    def message(self) -> str:
        """The (redacted) message."""
        return str(self.args[0]) if self.args else ""


class ConfigurationError(DiskBackupError, ValueError):
    """An app setting is missing or malformed; the message names the setting. Not retryable."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        super().__init__(f"setting {setting}: {problem}")


class InvalidInputError(DiskBackupError, ValueError):
    """A caller's input is malformed; ``field`` names what is wrong. Not retryable."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = redact(problem)
        super().__init__(f"{field}: {problem}")


class DiskNotFoundError(InvalidInputError):
    """A disk a caller named (by resource ID) does not exist; ``field`` names where it was given."""


class TransportError(DiskBackupError):
    """No HTTP answer arrived (connection refused or reset, timeout). Retryable.

    ``url`` (without query) is where the request went; ``cause`` says in a few words what happened
    (``connection refused``, ``timed out``), without the HTTP library's own wording.
    """

    retryable = True

    def __init__(self, message: str, *, url: str | None = None, cause: str | None = None) -> None:
        self.url = strip_query(url) if url else None
        self.cause = cause
        super().__init__(message)


class UnexpectedResponseError(DiskBackupError):
    """Azure answered, but not as the service documents; ``field`` names what was wrong. Not retryable."""

    # Not retryable: a service (or a proxy before it) that answers off its spec tends to answer the same
    # way again, so repeating costs time and hides the fault. ``method``, ``url`` (query removed) and
    # ``request_id`` (x-ms-request-id) say which request got the answer, when known.

    def __init__(
        self,
        field: str,
        problem: str,
        *,
        method: str | None = None,
        url: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.field = field
        # One line, whatever the answer held: it ends up in one-line reasons and CLI messages.
        self.problem = " ".join(redact(problem).split())
        self.method = method
        self.url = strip_query(url) if url else None
        self.request_id = request_id
        where = f"{method} {self.url}: " if method and self.url else ""
        text = f"{where}unexpected answer from Azure: {field}: {self.problem}"
        if request_id:
            text += f" (x-ms-request-id {request_id})"
        super().__init__(text)

    def for_request(
        self, *, method: str | None, url: str | None, request_id: str | None
    ) -> UnexpectedResponseError:
        """The same error, naming the request that got the answer (what it already names is kept)."""
        return UnexpectedResponseError(
            self.field,
            self.problem,
            method=self.method or method,
            url=self.url or url,
            request_id=self.request_id or request_id,
        )


class AzureHttpError(DiskBackupError):
    """Azure answered with an error status.

    Carries the HTTP ``status``, the Azure error ``code`` (ARM ``error.code`` or the storage
    ``x-ms-error-code``/XML ``Code``), its ``error_message``, the ``request_id`` (``x-ms-request-id``),
    the request's ``method`` and ``url`` (query removed) and a redacted ``body_excerpt``.
    """

    def __init__(
        self,
        *,
        status: int,
        code: str | None,
        error_message: str | None,
        request_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
        body_excerpt: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.error_message = redact(error_message) if error_message else None
        self.request_id = request_id
        self.method = method
        self.url = strip_query(url) if url else None
        self.body_excerpt = redact(body_excerpt[:500]) if body_excerpt else None
        self.retry_after = retry_after
        where = f"{method} {self.url}: " if method and self.url else ""
        text = f"{where}HTTP {status}"
        if code:
            text += f" {code}"
        if self.error_message:
            text += f": {self.error_message}"
        if request_id:
            text += f" (x-ms-request-id {request_id})"
        super().__init__(text)


class BadRequestError(AzureHttpError):
    """400: the request was malformed or a parameter invalid. Not retryable."""


class AuthenticationError(AzureHttpError):
    """401 or 403: missing, wrong or insufficient credentials. Not retryable."""


class NotFoundError(AzureHttpError):
    """404: the resource does not exist. Not retryable."""


class ConflictError(AzureHttpError):
    """409: the resource's state forbids the request (exists already, busy, too many SAS). Not retryable."""


class PreconditionFailedError(AzureHttpError):
    """412 (stale ETag) or 416 (range not satisfiable). Not retryable."""


class ThrottledError(AzureHttpError):
    """429: throttled; ``retry_after`` says when to come back. Retryable."""

    retryable = True


class ServerError(AzureHttpError):
    """500, 502, 503 or 504: the service failed or is busy. Retryable."""

    retryable = True


class OperationFailedError(DiskBackupError):
    """A long-running ARM operation ended ``Failed`` or ``Canceled``. Not retryable."""

    def __init__(self, *, status: str, code: str | None, error_message: str | None) -> None:
        self.status = status
        self.code = code
        self.error_message = redact(error_message) if error_message else None
        text = f"operation ended {status}"
        if code:
            text += f": {code}"
        if self.error_message:
            text += f": {self.error_message}"
        super().__init__(text)


class CopyFailedError(DiskBackupError):
    """A blob copy ended ``failed`` or ``aborted``. Not retryable."""


class VerificationError(DiskBackupError):
    """A finished backup does not match its source (size, copy id, content). Not retryable."""


class WriterBusyError(DiskBackupError):
    """Another run holds this disk's backup blob (one writer per disk): the disk is skipped tonight.

    Not retryable now; the next run tries again.
    """

    failure_code: ClassVar[str | None] = "WriterBusy"


class DeadlineExceededError(DiskBackupError):
    """A wait ran past its deadline. Not retryable."""


class TargetExistsError(DiskBackupError):
    """A restore's target disk exists already: a restore never writes over a disk. Not retryable."""

    failure_code: ClassVar[str | None] = "TargetExists"


class NoRestorePointError(DiskBackupError):
    """No good restore point of the disk matches what a restore asked for (a run, a time). Not retryable."""

    failure_code: ClassVar[str | None] = "NoRestorePoint"


_BY_STATUS: dict[int, type[AzureHttpError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    412: PreconditionFailedError,
    416: PreconditionFailedError,
    429: ThrottledError,
    500: ServerError,
    502: ServerError,
    503: ServerError,
    504: ServerError,
}


def http_error_class(status: int) -> type[AzureHttpError]:
    """The most specific :class:`AzureHttpError` subclass for an HTTP status."""
    return _BY_STATUS.get(status, AzureHttpError)
