"""No log line and no exception text carries a SAS signature, an account key or a bearer token.

All log output (every logger, DEBUG, urllib3 included) and the full text of every exception raised
(str, repr, formatted traceback, the error's fields) are collected across a succeeding and a failing run
of blob and table operations with a SAS URL, a Shared Key and a bearer token, against real Azurite (HTTP
for Shared Key and SAS, HTTPS for the bearer). Then none of the secrets may appear in any of it.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from azure.storage.blob import BlobSasPermissions, generate_blob_sas
from test_storage_bearer import make_jwt

from backup.azure.blob import BlobAddress, BlobClient, ContainerAddress
from backup.azure.credentials import StaticTokenProvider
from backup.azure.odata import eq
from backup.azure.page_range import PageRange
from backup.azure.retry import RetryPolicy
from backup.azure.storage_auth import BearerAuthorizer, SharedKeyAuthorizer, StorageService
from backup.azure.table import TableClient
from backup.azure.transport import Transport
from backup.errors import AzureHttpError
from testbed.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY, Azurite, new_account_key
from testbed.emulator.tls import write_self_signed


@pytest.fixture(scope="module")
def tls_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Azurite, Path]]:
    cert, key = write_self_signed(tmp_path_factory.mktemp("azurite-tls"), common_name="azurite test")
    with Azurite(oauth_cert=(cert, key)) as server:
        yield server, cert


class _Collector:
    """Runs operations, keeping every exception's full text."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.failures = 0

    def run(self, operation: Callable[[], object]) -> None:
        try:
            result = operation()
            self.texts.append(repr(result))
        except Exception as exc:
            self.failures += 1
            self.texts.append(str(exc))
            self.texts.append(repr(exc))
            self.texts.append("".join(traceback.format_exception(exc)))
            if isinstance(exc, AzureHttpError):
                self.texts.extend(str(v) for v in (exc.url, exc.body_excerpt, exc.error_message, exc.code))


def test_no_secret_in_logs_or_exceptions(
    azurite: Azurite,
    tls_azurite: tuple[Azurite, Path],
    unique_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    https_server, cert = tls_azurite
    shared_key = SharedKeyAuthorizer(DEV_ACCOUNT, DEV_ACCOUNT_KEY, service=StorageService.BLOB)
    table_key = SharedKeyAuthorizer(DEV_ACCOUNT, DEV_ACCOUNT_KEY, service=StorageService.TABLE)
    wrong_key_text = new_account_key()
    wrong_key = SharedKeyAuthorizer(DEV_ACCOUNT, wrong_key_text, service=StorageService.BLOB)
    token = make_jwt()
    bad_token = make_jwt(audience="https://management.azure.com")
    bearer = BearerAuthorizer(StaticTokenProvider(token))
    bad_bearer = BearerAuthorizer(StaticTokenProvider(bad_token))
    quick = RetryPolicy(max_attempts=2, backoff=0.0)
    client = BlobClient(Transport(policy=quick, sleep=lambda _: None))
    tls_client = BlobClient(Transport(policy=quick, sleep=lambda _: None, verify=str(cert)))

    container = ContainerAddress.in_account(azurite.blob_endpoint(), unique_name, shared_key)
    source = container.blob("source.vhd")
    destination = container.blob("backup.vhd")
    sas_token = generate_blob_sas(
        DEV_ACCOUNT,
        unique_name,
        "source.vhd",
        account_key=DEV_ACCOUNT_KEY,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    sas_url = f"{source.url}?{sas_token}"
    signature = parse_qs(urlsplit(sas_url).query)["sig"][0]
    sas = BlobAddress.from_sas_url(sas_url)
    tampered = BlobAddress.from_sas_url(sas_url.replace("sp=r", "sp=rw"))
    missing_by_sas = BlobAddress.from_sas_url(sas_url.replace("source.vhd", "missing.vhd"))
    unreachable = BlobAddress.from_sas_url(f"http://127.0.0.1:9/{DEV_ACCOUNT}/c/b?{sas_token}")
    table = TableClient(azurite.table_endpoint(), unique_name, table_key, Transport(policy=quick))
    bearer_table = TableClient(
        https_server.table_endpoint(), unique_name, bearer, Transport(policy=quick, verify=str(cert))
    )
    bad_bearer_container = ContainerAddress.in_account(https_server.blob_endpoint(), unique_name, bad_bearer)
    bearer_container = ContainerAddress.in_account(https_server.blob_endpoint(), unique_name, bearer)

    collect = _Collector()
    with caplog.at_level(logging.DEBUG):
        # Succeeding run.
        succeeding: list[Callable[[], object]] = [
            lambda: client.create_container(container),
            lambda: client.create_page_blob(source, 4096),
            lambda: client.put_page(source, PageRange.at(0, 512), b"\1" * 512),
            lambda: client.start_copy(destination, sas),
            lambda: client.get_properties(destination),
            lambda: client.read_range(sas, PageRange.at(0, 512)),
            lambda: client.get_page_ranges(destination, previous_snapshot_url=sas),
            lambda: table.create_if_missing(),
            lambda: table.insert("p", "r", {"A": 1}),
            lambda: list(table.query(eq("PartitionKey", "p"))),
            lambda: tls_client.create_container(bearer_container),
            lambda: tls_client.create_page_blob(bearer_container.blob("b.vhd"), 512),
            lambda: bearer_table.create_if_missing(),
            lambda: bearer_table.insert("p", "r", {"A": 1}),
            lambda: [repr(x) for x in (sas, tampered, shared_key, wrong_key, bearer, container, table)],
        ]
        for step in succeeding:
            collect.run(step)
        assert collect.failures == 0, collect.texts
        # Failing run.
        failing: list[Callable[[], object]] = [
            lambda: client.get_properties(tampered),  # 403 for a SAS
            lambda: client.read_range(missing_by_sas, PageRange.at(0, 512)),  # 404 through a SAS
            lambda: client.start_copy(destination, missing_by_sas),  # copy source refused
            lambda: client.put_page_from_url(
                destination, PageRange.at(0, 512), sas, PageRange.at(0, 512)
            ),  # 501
            lambda: client.get_properties(unreachable),  # connection refused, SAS in the URL
            lambda: client.create_page_blob(
                ContainerAddress.in_account(azurite.blob_endpoint(), unique_name, wrong_key).blob("x"), 512
            ),  # 403 wrong key
            lambda: table.insert("p", "r", {"A": 2}),  # 409
            lambda: tls_client.create_container(bad_bearer_container),  # bearer refused
            lambda: client.create_container(
                ContainerAddress.in_account(azurite.blob_endpoint(), "abc", bearer)
            ),
            lambda: BlobAddress.from_sas_url(sas_url + "#frag"),
            lambda: SharedKeyAuthorizer(DEV_ACCOUNT, wrong_key_text + "!", service=StorageService.BLOB),
        ]
        for step in failing:
            collect.run(step)
        assert collect.failures == 11

    logged = [record.getMessage() for record in caplog.records]
    assert any(unique_name in line for line in logged), "the run was not logged at all"
    assert any("urllib3" in record.name for record in caplog.records), "urllib3's lines were not captured"
    everything = "\n".join(logged + collect.texts)
    secrets = {
        "SAS signature": signature,
        "SAS signature, URL-encoded": quote(signature, safe=""),
        "account key": DEV_ACCOUNT_KEY,
        "wrong account key": wrong_key_text,
        "bearer token": token,
        "rejected bearer token": bad_token,
        "bearer token payload": token.split(".")[1],
    }
    leaked = [name for name, secret in secrets.items() if secret in everything]
    assert leaked == []
    # A Shared Key signature is never shown either: the scheme may appear, the signature only redacted.
    assert not re.search(r"SharedKey(Lite)? \w+:(?!REDACTED)[A-Za-z0-9+/=]{20,}", everything)
