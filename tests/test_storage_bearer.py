"""Bearer tokens against a real Azurite over HTTPS (``--oauth basic``), blob and table.

Azurite checks a token's issuer, audience and lifetime but not its signature, so the test builds the JWT
itself. TLS is verified against the self-signed certificate made for 127.0.0.1 (never disabled).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup.azure.blob import BlobClient, ContainerAddress
from backup.azure.credentials import StaticTokenProvider
from backup.azure.odata import eq
from backup.azure.page_range import PageRange
from backup.azure.storage_auth import BearerAuthorizer
from backup.azure.table import TableClient
from backup.azure.transport import Transport
from backup.errors import AuthenticationError, InvalidInputError, TransportError
from testbed.azurite import Azurite
from testbed.emulator.tls import write_self_signed

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def make_jwt(
    *, audience: str = "https://storage.azure.com", lifetime: int = 3600, issuer: str | None = None
) -> str:
    """An unsigned-in-spirit JWT with the claims Azurite checks (its signature part is random bytes)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": issuer or f"https://sts.windows.net/{TENANT}/",
        "tid": TENANT,
        "oid": str(uuid.uuid4()),
        "iat": now,
        "nbf": now - 60,
        "exp": now + lifetime,
    }
    header = {"alg": "RS256", "typ": "JWT"}
    return ".".join(
        [part(json.dumps(header).encode()), part(json.dumps(claims).encode()), part(uuid.uuid4().bytes * 8)]
    )


@pytest.fixture(scope="module")
def tls_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Azurite, Path]]:
    cert, key = write_self_signed(tmp_path_factory.mktemp("azurite-tls"), common_name="azurite test")
    with Azurite(oauth_cert=(cert, key)) as server:
        yield server, cert


def _transport(cert: Path) -> Transport:
    return Transport(verify=str(cert))


def test_endpoints_are_https(tls_azurite: tuple[Azurite, Path]) -> None:
    server, _ = tls_azurite
    assert server.blob_url.startswith("https://127.0.0.1:")
    assert server.table_url.startswith("https://127.0.0.1:")


def test_blob_operations_with_a_bearer_token(tls_azurite: tuple[Azurite, Path], unique_name: str) -> None:
    server, cert = tls_azurite
    authorize = BearerAuthorizer(StaticTokenProvider(make_jwt()))
    client = BlobClient(_transport(cert))
    container = ContainerAddress.in_account(server.blob_endpoint(), unique_name, authorize)
    assert client.create_container(container) is True
    blob = container.blob("disk.vhd")
    client.create_page_blob(blob, 4096, metadata={"via": "bearer"})
    client.put_page(blob, PageRange.at(512, 512), b"\x42" * 512)
    assert client.read_range(blob, PageRange.at(512, 512)) == b"\x42" * 512
    assert client.get_page_ranges(blob).page_ranges == (PageRange.at(512, 512),)
    snapshot = client.snapshot(blob)
    assert client.get_properties(blob.at_snapshot(snapshot)).metadata == {"via": "bearer"}
    client.delete(blob)
    client.delete_container(container)


def test_table_operations_with_a_bearer_token(tls_azurite: tuple[Azurite, Path], unique_name: str) -> None:
    server, cert = tls_azurite
    authorize = BearerAuthorizer(StaticTokenProvider(make_jwt()))
    table = TableClient(server.table_endpoint(), unique_name, authorize, _transport(cert))
    assert table.create_if_missing() is True
    etag = table.insert("p", "r", {"Size": 2**40}).etag
    assert table.get("p", "r").properties == {"Size": 2**40}
    assert [e.row_key for e in table.query(eq("PartitionKey", "p"))] == ["r"]
    assert etag is not None
    table.delete("p", "r", etag=etag)
    table.delete_table()


@pytest.mark.parametrize(
    "token",
    [
        make_jwt(audience="https://management.azure.com"),
        make_jwt(lifetime=-120),
        make_jwt(issuer="https://evil.example/"),
    ],
    ids=["wrong-audience", "expired", "wrong-issuer"],
)
def test_bad_tokens_are_refused(tls_azurite: tuple[Azurite, Path], unique_name: str, token: str) -> None:
    server, cert = tls_azurite
    authorize = BearerAuthorizer(StaticTokenProvider(token))
    blob_client = BlobClient(_transport(cert))
    with pytest.raises(AuthenticationError) as caught:
        blob_client.create_container(
            ContainerAddress.in_account(server.blob_endpoint(), unique_name, authorize)
        )
    assert caught.value.status in (401, 403)
    table = TableClient(server.table_endpoint(), unique_name, authorize, _transport(cert))
    with pytest.raises(AuthenticationError) as caught_table:
        table.create_if_missing()
    assert caught_table.value.status in (401, 403)


def test_tls_is_verified(tls_azurite: tuple[Azurite, Path], unique_name: str) -> None:
    # Without trusting the test certificate, the connection fails: verification is on. (Transport counts
    # a certificate failure as a connection error and retries it; the sleep seam skips the waits.)
    server, _ = tls_azurite
    authorize = BearerAuthorizer(StaticTokenProvider(make_jwt()))
    with pytest.raises(TransportError, match="SSLError"):
        BlobClient(Transport(sleep=lambda _: None)).create_container(
            ContainerAddress.in_account(server.blob_endpoint(), unique_name, authorize)
        )


def test_bearer_is_never_sent_over_http(azurite: Azurite, unique_name: str) -> None:
    authorize = BearerAuthorizer(StaticTokenProvider(make_jwt()))
    with pytest.raises(InvalidInputError, match="HTTPS"):
        BlobClient().create_container(
            ContainerAddress.in_account(azurite.blob_endpoint(), unique_name, authorize)
        )
