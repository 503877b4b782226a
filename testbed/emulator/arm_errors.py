"""The errors the emulated ARM answers with, as ARM words them: a status, a code and a ``CloudError`` body.

Every refusal inside the emulator is an :class:`ArmError`; the HTTP layer turns it into
``{"error": {"code", "message", "target"?}}`` (``CloudError`` in the spec's ``common.json``) plus any
headers it carries (``Retry-After`` on 429, ``WWW-Authenticate`` on 401). The constructors below hold the
codes and message texts real ARM and the Compute resource provider use, so a client tested here meets
the same strings it will meet in Azure.
"""

from __future__ import annotations

from typing import Any


class ArmError(Exception):
    """An ARM error answer: HTTP ``status``, ARM ``code``, ``message``, optional ``target`` and headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The ``CloudError`` body."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        return {"error": error}


_WWW_AUTHENTICATE = (
    'Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token"'
)


def missing_authorization() -> ArmError:
    """401 when the request has no ``Authorization`` header."""
    return ArmError(
        401,
        "AuthenticationFailed",
        "Authentication failed. The 'Authorization' header is missing.",
        headers={"WWW-Authenticate": _WWW_AUTHENTICATE},
    )


def malformed_authorization() -> ArmError:
    """401 when ``Authorization`` is not ``Bearer <token>``."""
    return ArmError(
        401,
        "AuthenticationFailedInvalidHeader",
        "Authentication failed. The 'Authorization' header is provided in an invalid format.",
        headers={"WWW-Authenticate": _WWW_AUTHENTICATE},
    )


def invalid_token() -> ArmError:
    """401 when the bearer token is not one this ARM issued."""
    return ArmError(
        401,
        "InvalidAuthenticationToken",
        "The access token is invalid.",
        headers={"WWW-Authenticate": _WWW_AUTHENTICATE},
    )


def expired_token() -> ArmError:
    """401 when the bearer token's ``exp`` has passed."""
    return ArmError(
        401,
        "ExpiredAuthenticationToken",
        "The access token expiry UTC time is earlier than current UTC time.",
        headers={"WWW-Authenticate": _WWW_AUTHENTICATE},
    )


def missing_api_version() -> ArmError:
    """400 when the ``api-version`` query parameter is absent."""
    return ArmError(
        400,
        "MissingApiVersionParameter",
        "The api-version query parameter (?api-version=) is required for all requests.",
    )


def unsupported_api_version(version: str, resource_type: str, supported: str) -> ArmError:
    """400 for an ``api-version`` the resource type does not offer (ARM's routing error)."""
    return ArmError(
        400,
        "NoRegisteredProviderFound",
        f"No registered resource provider found for location 'westus' and API version '{version}' for type "
        f"'{resource_type}'. The supported api-versions are '{supported}'.",
    )


def invalid_parameter(target: str, message: str) -> ArmError:
    """400 ``InvalidParameter`` naming the offending property in ``target``."""
    return ArmError(400, "InvalidParameter", message, target=target)


def bad_request(message: str) -> ArmError:
    """400 ``BadRequest``: how Compute words some checks of a disk body (e.g. an upload's size), no target."""
    return ArmError(400, "BadRequest", message)


def invalid_request_content(detail: str) -> ArmError:
    """400 when the body is not JSON at all."""
    return ArmError(
        400,
        "InvalidRequestContent",
        f"The request content was invalid and could not be deserialized: '{detail}'.",
    )


def resource_not_found(resource_type: str, name: str, resource_group: str) -> ArmError:
    """404 for a disk or snapshot that does not exist."""
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource 'Microsoft.Compute/{resource_type}/{name}' under resource group '{resource_group}' "
        "was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def resource_group_not_found(resource_group: str) -> ArmError:
    """404 for a resource group that does not exist."""
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{resource_group}' could not be found.")


def subscription_not_found(subscription_id: str) -> ArmError:
    """404 for a subscription other than the emulator's."""
    return ArmError(404, "SubscriptionNotFound", f"The subscription '{subscription_id}' could not be found.")


def operation_not_allowed(message: str, *, target: str | None = None) -> ArmError:
    """409 ``OperationNotAllowed``: the resource's state forbids the request."""
    return ArmError(409, "OperationNotAllowed", message, target=target)


def background_copy_in_progress(name: str, percent: float, *, target: str | None = None) -> ArmError:
    """409 ``OperationNotAllowed``: a Premium SSD v2 / Ultra snapshot is used before its background copy
    completed. Azure documents the rule ("The value of the property must be 100 before you can use the
    snapshot for restoring disk or generate a SAS URI"), not the error: this code is our choice."""
    return ArmError(
        409,
        "OperationNotAllowed",
        f"The snapshot '{name}' cannot be used until its background copy completes "
        f"(completionPercent {percent:g}).",
        target=target,
    )


def property_change_not_allowed(prop: str) -> ArmError:
    """409 when a PUT on an existing resource tries to change an immutable property."""
    return ArmError(
        409,
        "PropertyChangeNotAllowed",
        f"Changing property '{prop}' is not allowed.",
        target=prop,
    )


def too_many_requests(retry_after: int) -> ArmError:
    """429 with ``Retry-After`` (whole seconds), as ARM throttles."""
    return ArmError(
        429,
        "TooManyRequests",
        "The request is being throttled as the limit has been reached for operation type. "
        f"Please retry after {retry_after} seconds.",
        headers={"Retry-After": str(retry_after)},
    )


def internal_error() -> ArmError:
    """500 as Compute answers an internal failure."""
    return ArmError(
        500,
        "InternalExecutionError",
        "An internal execution error occurred. Please retry later.",
    )


def invalid_resource_type(resource_type: str) -> ArmError:
    """404 for a path naming no resource type this emulator serves."""
    return ArmError(
        404,
        "InvalidResourceType",
        f"The resource type '{resource_type}' could not be found in the namespace 'Microsoft.Compute' "
        "for api version '2026-03-02'.",
    )


def method_not_allowed(method: str) -> ArmError:
    """405 for a verb the route does not take."""
    return ArmError(
        405, "MethodNotAllowed", f"The requested resource does not support http method '{method}'."
    )


def operation_not_found(operation_id: str) -> ArmError:
    """404 for an operation-status URL naming no operation."""
    return ArmError(404, "NotFound", f"The operation '{operation_id}' was not found.")
