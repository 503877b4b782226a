"""Failure codes and messages: the one mapping from the exception tree, and the marker that carries a code
from an activity to its orchestrator through whatever text the Functions host wraps around it."""

from __future__ import annotations

import pytest
import requests

from backup.alerts import AlertError
from backup.azure.transport import connection_failure
from backup.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
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
from backup.failures import (
    INTERNAL_MESSAGE,
    ActivityFailure,
    Failure,
    FailureCode,
    describe,
    failure_of,
    for_phase,
    retry_after_of,
)

ARM = "https://management.azure.com/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d"
BLOB = "https://acct.blob.core.windows.net/c/b.vhd?sv=1&sig=SECRETSIG"


def _http(cls: type, status: int, code: str, url: str = ARM) -> DiskBackupError:
    return cls(  # type: ignore[no-any-return]
        status=status, code=code, error_message="Azure's words", request_id="rid-1", method="PUT", url=url
    )


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (InvalidInputError("diskIds[0]", "is not a disk ID"), "InvalidInput", "diskIds[0]: is not a disk ID"),
        (DiskNotFoundError("diskIds[1]", "disk /x does not exist"), "DiskNotFound", "disk /x does not exist"),
        (ConfigurationError("BACKUP_X", "is required"), "InvalidSettings", "setting BACKUP_X: is required"),
        (
            TransportError(
                "GET http://h:1/p: ConnectionError: urllib3 noise", url="http://h:1/p?sig=S", cause="x"
            ),
            "BackendUnavailable",
            "could not reach Azure at h:1: x",
        ),
        (TransportError("bare"), "BackendUnavailable", "could not reach Azure: the connection failed"),
        (
            _http(AuthenticationError, 403, "AuthorizationFailed"),
            "AccessDenied",
            "Azure Resource Manager answered HTTP 403 AuthorizationFailed: Azure's words "
            "(x-ms-request-id rid-1)",
        ),
        (
            _http(NotFoundError, 404, "ContainerNotFound", BLOB),
            "NotFound",
            "Blob storage answered HTTP 404 ContainerNotFound: Azure's words (x-ms-request-id rid-1)",
        ),
        (_http(ThrottledError, 429, "TooManyRequests"), "Throttled", None),
        (_http(ServerError, 503, "ServerBusy"), "BackendUnavailable", None),
        (_http(BadRequestError, 400, "InvalidParameter"), "RequestRejected", None),
        (_http(ConflictError, 409, "OperationNotAllowed"), "RequestRejected", None),
        (
            OperationFailedError(status="Failed", code="InternalError", error_message="busy"),
            "OperationFailed",
            "operation ended Failed: InternalError: busy",
        ),
        (
            UnexpectedResponseError("x-ms-copy-status", "'maybe' is not a copy status").for_request(
                method="HEAD", url=BLOB, request_id="rid-2"
            ),
            "UnexpectedResponse",
            "unexpected answer from Azure (Blob storage): x-ms-copy-status: 'maybe' is not a copy status "
            "(x-ms-request-id rid-2)",
        ),
        (CopyFailedError("copy failed: gone"), "CopyFailed", "copy failed: gone"),
        (VerificationError("size is 1"), "VerificationFailed", "size is 1"),
        (DeadlineExceededError("copy did not finish"), "DeadlineExceeded", "copy did not finish"),
        (DiskBackupError("something of ours"), "InternalError", INTERNAL_MESSAGE),
        (AlertError("the alert webhook h did not take the alert: HTTP 503"), "BackendUnavailable", None),
        (KeyError("state"), "InternalError", INTERNAL_MESSAGE),
    ],
)
def test_every_error_of_the_tree_has_its_code(error: BaseException, code: str, message: str | None) -> None:
    failure = describe(error)
    assert failure.code == code
    if message is not None:
        assert failure.message == message
    assert "Error" not in failure.message.replace("InternalError", "")  # no class names
    assert "SECRETSIG" not in failure.message and "urllib3" not in failure.message


def test_a_throttled_failure_carries_its_retry_after_across_the_activity_boundary() -> None:
    throttled = ThrottledError(
        status=429, code="TooManyRequests", error_message="slow down", url=ARM, retry_after=40.2
    )
    failure = describe(throttled)
    assert failure.message.endswith("; retry after 41 s")
    assert retry_after_of(failure) == 41
    assert retry_after_of(failure_of(ActivityFailure(failure))) == 41  # as an orchestrator reads it back
    assert retry_after_of(describe(_http(ThrottledError, 429, "TooManyRequests"))) is None  # not said
    busy = describe(_http(ServerError, 503, "ServerBusy"))
    assert retry_after_of(busy) is None


def test_retryable_codes() -> None:
    assert {code for code in FailureCode if code.retryable} == {"Throttled", "BackendUnavailable"}


@pytest.mark.parametrize(
    ("host_text"),
    [
        # Our local host's wording, and the Functions host's for an out-of-process worker.
        "Activity function 'start_copy' failed: ActivityFailure: [AccessDenied] Blob storage answered "
        "HTTP 403 AuthenticationFailed \n Traceback (most recent call last): ...",
        "Activity function 'start_copy' failed: Result: Failure\nException: ActivityFailure: [AccessDenied] "
        'Blob storage answered HTTP 403 AuthenticationFailed\nStack:   File "/home/site/..."',
    ],
)
def test_the_code_crosses_the_host_as_a_marker(host_text: str) -> None:
    assert failure_of(Exception(host_text)) == Failure(
        FailureCode.ACCESS_DENIED, "Blob storage answered HTTP 403 AuthenticationFailed"
    )


def test_text_without_our_marker_is_an_internal_error() -> None:
    assert failure_of(Exception("Activity function 'x' failed: KeyError: 'state'\nTraceback")) == Failure(
        FailureCode.INTERNAL, INTERNAL_MESSAGE
    )
    assert failure_of(Exception("[NotACode] hello")).code == FailureCode.INTERNAL
    terminated = failure_of(Exception("The sub-orchestration 'r-disk-0001' was terminated: by hand"))
    assert terminated.code == FailureCode.TERMINATED


def test_an_activity_failure_round_trips() -> None:
    original = describe(VerificationError("the footer\nis  wrong"))
    raised = ActivityFailure(original)
    assert str(raised) == "[VerificationFailed] the footer is wrong"  # one line
    assert (
        failure_of(Exception(f"Activity function 'verify_backup' failed: ActivityFailure: {raised}"))
        == original
    )
    assert failure_of(DeadlineExceededError("late")) == Failure(FailureCode.DEADLINE_EXCEEDED, "late")


def test_phase_makes_a_failure_specific() -> None:
    failed = Failure(FailureCode.OPERATION_FAILED, "operation ended Failed")
    assert for_phase(failed, "snapshot").code == FailureCode.SNAPSHOT_FAILED
    assert for_phase(failed, "snapshot-copy").code == FailureCode.SNAPSHOT_FAILED
    assert for_phase(failed, "grant").code == FailureCode.OPERATION_FAILED
    gone = Failure(FailureCode.NOT_FOUND, "ARM answered 404")
    assert for_phase(gone, "snapshot").code == FailureCode.DISK_NOT_FOUND
    assert for_phase(gone, "copy").code == FailureCode.NOT_FOUND


def test_messages_are_one_bounded_redacted_line() -> None:
    failure = Failure(FailureCode.INTERNAL, "a\nb " + "x" * 2000 + " sig=abc")
    assert "\n" not in failure.message and len(failure.message) == 500 and failure.message.endswith("…")
    assert Failure(FailureCode.INTERNAL, "url?sig=abc&x=1").message == "url?sig=REDACTED&x=1"


def test_connection_failures_in_a_persons_words() -> None:
    assert (
        connection_failure(requests.ConnectionError("[Errno 111] Connection refused")) == "connection refused"
    )
    assert connection_failure(requests.exceptions.ConnectTimeout("x")) == "connecting timed out"
    assert connection_failure(requests.exceptions.ReadTimeout("x")) == "it did not answer in time"
    assert connection_failure(requests.exceptions.SSLError("x")) == "its TLS certificate did not verify"
    reset = requests.ConnectionError("('Connection aborted.', ConnectionResetError(104, 'reset by peer'))")
    assert connection_failure(reset) == "the connection was closed before an answer arrived"
    assert connection_failure(requests.ConnectionError("other")) == "the connection failed"
