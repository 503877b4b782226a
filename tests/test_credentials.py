"""Token providers: which azure-identity credential, caching, refresh, thread safety, no leaks.

The azure-identity credential object is the seam: a fake stands in for it (it would otherwise call
IMDS or Entra ID, which no machine here reaches).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from backup.azure.credentials import ARM_SCOPE, IdentityTokenProvider, StaticTokenProvider
from backup.errors import ConfigurationError, InvalidInputError


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeCredential:
    """Issues token-1, token-2, ... each valid ``lifetime`` seconds from the clock's now."""

    def __init__(self, clock: FakeClock, lifetime: float = 3600.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls: list[tuple[str, ...]] = []
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        with self._lock:
            self.calls.append(scopes)
            n = len(self.calls)
        return AccessToken(f"token-{n}", int(self.clock() + self.lifetime))


def test_static_provider_returns_its_token_and_hides_it() -> None:
    provider = StaticTokenProvider("emulator-secret-token")
    assert provider.get_token() == "emulator-secret-token"
    assert "emulator-secret-token" not in repr(provider)


def test_static_provider_refuses_an_empty_token() -> None:
    with pytest.raises(InvalidInputError, match="token"):
        StaticTokenProvider(" ")


def test_token_is_cached_until_five_minutes_before_expiry() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock, lifetime=3600)
    provider = IdentityTokenProvider(credential=credential, clock=clock)
    assert provider.get_token() == "token-1"
    assert credential.calls == [(ARM_SCOPE,)]

    clock.now += 3600 - 301  # 301 s left: still good
    assert provider.get_token() == "token-1"
    assert len(credential.calls) == 1

    clock.now += 1  # exactly 300 s left: refresh
    assert provider.get_token() == "token-2"
    assert len(credential.calls) == 2


def test_short_lived_token_is_reused_for_half_its_life() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock, lifetime=120)  # shorter than the 5-minute margin
    provider = IdentityTokenProvider(credential=credential, clock=clock)
    assert provider.get_token() == "token-1"
    clock.now += 59
    assert provider.get_token() == "token-1"
    clock.now += 1
    assert provider.get_token() == "token-2"


def test_the_scope_is_passed_through() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock)
    provider = IdentityTokenProvider("https://storage.azure.com/.default", credential=credential, clock=clock)
    provider.get_token()
    assert credential.calls == [("https://storage.azure.com/.default",)]


def test_concurrent_callers_share_one_fetch() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock)
    provider = IdentityTokenProvider(credential=credential, clock=clock)
    results: list[str] = []
    start = threading.Barrier(16)

    def call() -> None:
        start.wait()
        results.append(provider.get_token())

    threads = [threading.Thread(target=call) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["token-1"] * 16
    assert len(credential.calls) == 1


def test_credential_failure_becomes_a_configuration_error_naming_the_identity() -> None:
    class Broken:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            raise ClientAuthenticationError("ManagedIdentityCredential authentication unavailable")

    provider = IdentityTokenProvider(managed_identity_client_id="1111-client", credential=Broken())
    with pytest.raises(ConfigurationError) as caught:
        provider.get_token()
    assert "client id 1111-client" in str(caught.value)
    assert "authentication unavailable" in str(caught.value)


def test_a_credential_returning_garbage_is_refused() -> None:
    class Garbage:
        def get_token(self, *scopes: str, **kwargs: Any) -> object:
            return object()

    with pytest.raises(ConfigurationError, match="no usable token"):
        IdentityTokenProvider(credential=Garbage()).get_token()


def test_default_credential_without_client_id() -> None:
    assert isinstance(IdentityTokenProvider().credential, DefaultAzureCredential)


def test_managed_identity_credential_with_client_id() -> None:
    provider = IdentityTokenProvider(managed_identity_client_id="0f0e0d0c-0000-4000-8000-000000000001")
    assert isinstance(provider.credential, ManagedIdentityCredential)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"scope": "management.azure.com"}, "scope"),
        ({"managed_identity_client_id": "  "}, "managed identity client id"),
        ({"refresh_margin": -1}, "refresh_margin"),
    ],
)
def test_bad_construction_is_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        IdentityTokenProvider(**kwargs)
    assert caught.value.field == field


def test_token_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    provider = IdentityTokenProvider(credential=FakeCredential(clock), clock=clock)
    with caplog.at_level(logging.DEBUG, logger="backup"):
        token = provider.get_token()
    assert caplog.records, "expected the debug line about the fetched token"
    assert all(token not in r.getMessage() for r in caplog.records)
    assert token not in repr(provider)
