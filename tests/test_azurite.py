"""Azurite's lifecycle: kernel-chosen ports, a temporary folder, stopped by its own node PID."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import requests

from testbed.azurite import DEV_ACCOUNT, Azurite, AzuriteError, new_account_key


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _listening(url: str) -> bool:
    host, port = url.split("//", 1)[1].split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def test_start_and_stop_leave_nothing_behind() -> None:
    accounts = {DEV_ACCOUNT: new_account_key(), "second": new_account_key()}
    with Azurite(accounts=accounts) as first, Azurite() as second:
        pids = [first.pid, second.pid]
        assert all(pid is not None and _alive(pid) for pid in pids)
        urls = {first.blob_url, first.table_url, first.queue_url, second.blob_url, second.table_url}
        assert len(urls) == 5  # every service on its own port, two servers side by side
        assert first.location is not None and first.location.is_dir()
        location = first.location
        # Ready means answering: an unsigned list is refused by the server itself (403), not by a socket.
        assert requests.get(first.blob_endpoint("second") + "?comp=list", timeout=10).status_code == 403
        assert "AccountKey=" in first.connection_string("second")
    assert not any(_alive(pid) for pid in pids if pid is not None)
    assert not location.exists()
    assert not _listening(first.blob_url) and not _listening(second.table_url)


def test_a_given_folder_is_kept(tmp_path: Path) -> None:
    with Azurite(location=tmp_path) as server:
        pid = server.pid
    assert pid is not None and not _alive(pid)
    assert tmp_path.is_dir() and any(tmp_path.iterdir())  # Azurite's own files stay for the caller


def test_an_in_memory_azurite_keeps_blobs_while_it_runs_and_no_folder(tmp_path: Path) -> None:
    from azure.storage.blob import BlobServiceClient

    with Azurite(in_memory=True) as server:
        assert server.location is None
        service = BlobServiceClient.from_connection_string(server.connection_string())
        service.create_container("kept").upload_blob("b", b"held in memory")
        assert service.get_container_client("kept").download_blob("b").readall() == b"held in memory"
    with pytest.raises(AzuriteError, match="no data folder"):
        Azurite(in_memory=True, location=tmp_path).start()


def test_a_missing_azurite_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AZURITE_JS", str(tmp_path / "nowhere.js"))
    fake = tmp_path / "node_modules"
    monkeypatch.setattr("testbed.azurite._PROJECT_ROOT", fake)
    with pytest.raises(AzuriteError, match=r"azurite\.js not found"):
        Azurite().start()


def test_a_server_that_dies_at_start_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "azurite.js"
    broken.write_text("console.log('not azurite'); process.exit(3);\n")
    monkeypatch.setenv("AZURITE_JS", str(broken))
    with pytest.raises(AzuriteError, match="exited before listening"):
        Azurite().start()
