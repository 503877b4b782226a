"""The test bed's fault-injecting proxy, against real Azurite: each fault does what it says, and no more.

``busy``, ``throttle`` and ``forbid`` are answered by the proxy (Azurite never sees the request),
``reset`` drops the connection before forwarding, ``lost`` forwards (Azurite acts) and then drops the
answer; random plans replay from their seed; ``max_faults`` and ``only`` bound them; Shared Key signatures
made for the proxy's URL hold through it.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta

import pytest

from backup.azure.blob import BlobClient, ContainerAddress
from backup.azure.retry import RetryPolicy
from backup.azure.storage_auth import SharedKeyAuthorizer, StorageService
from backup.azure.table import TableClient, UpsertMode
from backup.azure.transport import Transport
from backup.errors import AuthenticationError, ServerError, ThrottledError, TransportError
from testbed.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY, Azurite
from testbed.fault_proxy import FaultPlan, FaultProxy

BLOB_KEY = SharedKeyAuthorizer(DEV_ACCOUNT, DEV_ACCOUNT_KEY, service=StorageService.BLOB)
TABLE_KEY = SharedKeyAuthorizer(DEV_ACCOUNT, DEV_ACCOUNT_KEY, service=StorageService.TABLE)


def _once() -> BlobClient:
    """A client that tries each request once, so every fault shows."""
    return BlobClient(Transport(policy=RetryPolicy(max_attempts=1), sleep=lambda _: None))


def _container(endpoint: str) -> ContainerAddress:
    return ContainerAddress.in_account(endpoint, "f" + uuid.uuid4().hex[:12], BLOB_KEY)


def test_without_a_plan_everything_passes_through_signed(azurite: Azurite) -> None:
    with FaultProxy(azurite.blob_endpoint()) as proxy:
        container = _container(proxy.url)
        client = _once()
        client.create_container(container)
        blob = container.blob("a.vhd")
        client.create_page_blob(blob, 4096)
        assert client.get_properties(blob).size == 4096  # HEAD keeps the blob's Content-Length
    assert proxy.stats["forwarded"] == proxy.stats["requests"] == 3 and not proxy.faults


@pytest.mark.parametrize(("action", "error"), [("busy", ServerError), ("throttle", ThrottledError)])
def test_busy_and_throttle_are_answered_by_the_proxy(
    azurite: Azurite, action: str, error: type[Exception]
) -> None:
    with FaultProxy(azurite.blob_endpoint()) as proxy:
        container = _container(proxy.url)
        proxy.fail_next(action, method="PUT")
        with pytest.raises(error) as caught:
            _once().create_container(container)
        assert caught.value.code == "ServerBusy"  # type: ignore[attr-defined]
        # Azurite never saw it: the container does not exist.
        direct = ContainerAddress.in_account(
            azurite.blob_endpoint(), container.url.rsplit("/", 1)[1], BLOB_KEY
        )
        assert _once().create_container(direct) is True  # made only now
    assert proxy.faults == [(action, "PUT", proxy.faults[0][2])]


def test_forbid_is_a_403_the_server_never_saw(azurite: Azurite) -> None:
    with FaultProxy(azurite.blob_endpoint()) as proxy:
        container = _container(proxy.url)
        proxy.fail_next("forbid", method="PUT")
        with pytest.raises(AuthenticationError) as caught:
            _once().create_container(container)
        assert (caught.value.status, caught.value.code) == (403, "AuthorizationFailure")
        assert "not authorized" in (caught.value.error_message or "")
        direct = ContainerAddress.in_account(
            azurite.blob_endpoint(), container.url.rsplit("/", 1)[1], BLOB_KEY
        )
        assert _once().create_container(direct) is True  # Azurite never saw the refused request
    assert [action for action, _, _ in proxy.faults] == ["forbid"]


def test_a_reset_never_reaches_the_server_and_a_lost_answer_did(azurite: Azurite) -> None:
    with FaultProxy(azurite.blob_endpoint()) as proxy:
        container = _container(proxy.url)
        name = container.url.rsplit("/", 1)[1]
        direct = ContainerAddress.in_account(azurite.blob_endpoint(), name, BLOB_KEY)
        proxy.fail_next("reset", method="PUT")
        with pytest.raises(TransportError):
            _once().create_container(container)
        assert _once().create_container(direct) is True  # the reset request never arrived
        other = _container(proxy.url)
        proxy.fail_next("lost", method="PUT")
        with pytest.raises(TransportError):
            _once().create_container(other)
        direct_other = ContainerAddress.in_account(
            azurite.blob_endpoint(), other.url.rsplit("/", 1)[1], BLOB_KEY
        )
        assert _once().create_container(direct_other) is False  # it was made: only the answer was lost
    assert [action for action, _, _ in proxy.faults] == ["reset", "lost"]


def test_scripted_faults_hit_only_what_they_match(azurite: Azurite) -> None:
    with FaultProxy(azurite.blob_endpoint()) as proxy:
        container = _container(proxy.url)
        client = _once()
        client.create_container(container)
        proxy.fail_next("busy", 2, method="HEAD", path=r"/b\.vhd")
        client.create_page_blob(container.blob("a.vhd"), 512)
        client.create_page_blob(container.blob("b.vhd"), 512)
        client.get_properties(container.blob("a.vhd"))  # not b: passes
        for _ in range(2):
            with pytest.raises(ServerError):
                client.get_properties(container.blob("b.vhd"))
        assert client.get_properties(container.blob("b.vhd")).size == 512  # the script is spent
    assert len(proxy.faults) == 2


def test_a_script_can_pick_requests_by_header_and_let_the_first_ones_through(azurite: Azurite) -> None:
    with FaultProxy(azurite.blob_endpoint()) as proxy:
        container = _container(proxy.url)
        client = _once()
        client.create_container(container)
        source = container.blob("source.vhd")
        client.create_page_blob(source, 512)
        # Only a PUT carrying x-ms-copy-source (Copy Blob), and only the second one.
        proxy.fail_next("busy", method="PUT", header="x-ms-copy-source", after=1)
        client.create_page_blob(container.blob("plain.vhd"), 512)  # no header: passes
        # A source on Azurite itself: Azurite takes a copy source only on the Host a copy was sent to,
        # which the proxy sets to Azurite's.
        name = container.url.rsplit("/", 1)[1]
        direct = ContainerAddress.in_account(azurite.blob_endpoint(), name, BLOB_KEY).blob("source.vhd")
        signed = direct.with_sas(BLOB_KEY.blob_sas(name, "source.vhd", lifetime=timedelta(minutes=5)))
        assert client.start_copy(container.blob("a.vhd"), signed).copy_id  # the first passes
        with pytest.raises(ServerError):
            client.start_copy(container.blob("b.vhd"), signed)
        assert client.start_copy(container.blob("b.vhd"), signed).copy_id  # the script is spent
    assert [(action, method) for action, method, _ in proxy.faults] == [("busy", "PUT")]
    with pytest.raises(ValueError, match="negative"):
        proxy.fail_next("busy", after=-1)


def test_a_random_plan_replays_from_its_seed_and_stays_bounded(azurite: Azurite) -> None:
    def faults(seed: int) -> list[str]:
        plan = FaultPlan(busy=0.3, reset=0.2, lost=0.1, seed=seed, only=frozenset({"HEAD"}), max_faults=6)
        with FaultProxy(azurite.blob_endpoint(), plan) as proxy:
            container = _container(proxy.url)
            client = _once()
            client.create_container(container)
            client.create_page_blob(container.blob("x.vhd"), 512)
            for _ in range(40):
                with contextlib.suppress(ServerError, TransportError):
                    client.get_properties(container.blob("x.vhd"))
        assert all(method == "HEAD" for _, method, _ in proxy.faults)
        assert proxy.stats["requests"] == 42
        return [action for action, _, _ in proxy.faults]

    first = faults(7)
    assert first == faults(7) and len(first) == 6 and set(first) <= {"busy", "reset", "lost"}
    assert first != faults(8)


def test_a_retrying_client_gets_through_a_table_endpoint_that_fails_often(azurite: Azurite) -> None:
    plan = FaultPlan(busy=0.2, reset=0.1, lost=0.1, seed=3)
    with FaultProxy(azurite.table_endpoint(), plan) as proxy:
        table = TableClient(
            proxy.url, "f" + uuid.uuid4().hex[:12], TABLE_KEY, Transport(sleep=lambda _: None)
        )
        table.create_if_missing()
        for row in range(30):
            table.upsert("p", f"r{row:02d}", {"Value": row}, mode=UpsertMode.REPLACE)
        assert [entity.properties["Value"] for entity in table.query(None)] == list(range(30))
    assert proxy.faults, "the plan made no fault: the test proves nothing"


def test_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="add up"):
        FaultPlan(busy=0.7, lost=0.5)
    proxy = FaultProxy("http://127.0.0.1:1/acct")
    with pytest.raises(ValueError, match="not one of"):
        proxy.fail_next("explode")
    with pytest.raises(ValueError, match="plain http"):
        FaultProxy("https://127.0.0.1:1/acct")
