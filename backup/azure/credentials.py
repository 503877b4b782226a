"""Bearer tokens for ARM (and any other Entra-protected API): where they come from, and caching them.

:class:`TokenProvider` is all a client needs: ``get_token()`` returns the current token text. Two kinds:

- :class:`IdentityTokenProvider`, over ``azure-identity``. With no client id it uses
  ``DefaultAzureCredential``: the app's system-assigned managed identity in Azure, ``az login`` or
  environment service-principal settings on a developer's machine. With a user-assigned identity's client
  id it uses ``ManagedIdentityCredential(client_id=...)`` alone: a configured client id says "run as
  *this* identity", so falling through a chain to some other principal (an environment service
  principal, a CLI login) would silently run the backup with other rights; and a managed identity that
  cannot be reached should fail loudly, naming the setting, not be masked by the next credential.
- :class:`StaticTokenProvider`, a fixed token: what the compute emulator accepts.

Tokens are cached until shortly before they expire (thread-safe; one fetch at a time). A token never
appears in a log line, an exception or a ``repr``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from backup.errors import ConfigurationError, InvalidInputError
from backup.redact import get_logger

__all__ = [
    "ARM_SCOPE",
    "DEFAULT_REFRESH_MARGIN",
    "IdentityTokenProvider",
    "StaticTokenProvider",
    "TokenProvider",
]

log = get_logger(__name__)

#: The scope of Azure Resource Manager in the public cloud.
ARM_SCOPE = "https://management.azure.com/.default"
#: Refresh a cached token this many seconds before it expires.
DEFAULT_REFRESH_MARGIN = 300.0


class TokenProvider(Protocol):
    """Something that hands out a valid bearer token."""

    def get_token(self) -> str:
        """The current bearer token (without the ``Bearer`` prefix)."""
        ...


class _Credential(Protocol):
    """The part of an azure-identity credential used here (``azure.core.credentials.TokenCredential``)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


class StaticTokenProvider:
    """Always the same token: for the compute emulator, which accepts one fixed token."""

    def __init__(self, token: str) -> None:
        if not isinstance(token, str) or not token.strip():
            raise InvalidInputError("token", "must be a non-empty string")
        self._token = token

    def get_token(self) -> str:
        """The fixed token."""
        return self._token

    def __repr__(self) -> str:
        return "StaticTokenProvider(token=<hidden>)"


class IdentityTokenProvider:
    """Tokens for ``scope`` from azure-identity, cached until ``refresh_margin`` seconds before expiry.

    ``credential`` and ``clock`` are seams for tests (a fake credential, a fake clock); production
    passes neither and gets the credential described in the module docstring.
    """

    def __init__(
        self,
        scope: str = ARM_SCOPE,
        managed_identity_client_id: str | None = None,
        *,
        credential: _Credential | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(scope, str) or not scope.startswith(("https://", "api://")):
            raise InvalidInputError("scope", f"must be an https:// or api:// scope, got {scope!r}")
        if managed_identity_client_id is not None and not managed_identity_client_id.strip():
            raise InvalidInputError("managed identity client id", "must not be blank when given")
        if refresh_margin < 0:
            raise InvalidInputError("refresh_margin", "must not be negative")
        self.scope = scope
        self.managed_identity_client_id = managed_identity_client_id
        self._credential = credential
        self._margin = refresh_margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def __repr__(self) -> str:
        return (
            f"IdentityTokenProvider(scope={self.scope!r}, "
            f"managed_identity_client_id={self.managed_identity_client_id!r})"
        )

    def get_token(self) -> str:
        """A token valid for at least the refresh margin (or half its lifetime, if shorter)."""
        with self._lock:
            now = self._clock()
            if self._token is not None and now < self._refresh_at:
                return self._token
            token, expires_on = self._fetch()
            # A token that lives less than twice the margin is refreshed halfway through its life, so a
            # short-lived token is still reused rather than fetched on every call.
            lifetime = max(0.0, expires_on - now)
            self._refresh_at = expires_on - min(self._margin, lifetime / 2)
            self._token = token
            log.debug("token for %s fetched; valid for %.0f s", self.scope, lifetime)
            return token

    @property
    def credential(self) -> _Credential:
        """The azure-identity credential in use (created on first use; see the module docstring)."""
        if self._credential is None:
            # Imported here: azure-identity is heavy, and the emulator path never needs it.
            from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

            if self.managed_identity_client_id:
                self._credential = ManagedIdentityCredential(client_id=self.managed_identity_client_id)
            else:
                self._credential = DefaultAzureCredential()
        return self._credential

    def _fetch(self) -> tuple[str, float]:
        credential = self.credential
        try:
            access = credential.get_token(self.scope)
        except Exception as exc:  # azure-identity raises ClientAuthenticationError and friends
            raise ConfigurationError(self._setting_name(), f"no token for {self.scope}: {exc}") from None
        token = getattr(access, "token", None)
        expires_on = getattr(access, "expires_on", None)
        if not isinstance(token, str) or not token or not isinstance(expires_on, int | float):
            raise ConfigurationError(self._setting_name(), "the credential returned no usable token")
        return token, float(expires_on)

    def _setting_name(self) -> str:
        if self.managed_identity_client_id:
            return f"managed identity (client id {self.managed_identity_client_id})"
        return "credential (DefaultAzureCredential: managed identity, environment or az login)"
