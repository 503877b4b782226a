"""Leaving the session's shared proving ground as a test found it: other tests count what it holds."""

from __future__ import annotations

from backup.azure.compute import API_VERSION, ComputeClient
from backup.azure.lro import LroStatus
from backup.clients import AzureClients


def remove_group_contents(clients: AzureClients, subscription_id: str, group: str) -> None:
    """Delete every snapshot, then every disk, of a test's resource group (each waited for)."""
    compute = clients.compute
    for snapshot in compute.list_snapshots(subscription_id, group):
        _finish(compute, compute.begin_delete_snapshot(snapshot.id))
    for disk in compute.list_disks(subscription_id, group):
        _finish(compute, compute.arm.begin("DELETE", disk.resource_id.path, api_version=API_VERSION))


def _finish(compute: ComputeClient, operation: LroStatus) -> None:
    while not operation.done:
        operation = compute.poll(operation)
