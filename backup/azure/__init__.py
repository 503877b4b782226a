"""The Azure clients: one module per REST boundary, each findable by its service's name.

- :mod:`~backup.azure.transport`, :mod:`~backup.azure.retry`: one pooled HTTP session; retries that
  honour ``Retry-After``.
- :mod:`~backup.azure.credentials`: bearer tokens (azure-identity, or a fixed token for the emulator).
- :mod:`~backup.azure.arm`, :mod:`~backup.azure.lro`, :mod:`~backup.azure.compute`,
  :mod:`~backup.azure.resource_id`: Azure Resource Manager, its long-running operations, managed disks
  and snapshots (DiskRP), resource IDs.
- :mod:`~backup.azure.names`: Azure's naming rules (accounts, containers, tables, resource groups,
  disks, snapshots, tags, task hubs), each once, with its source.
- :mod:`~backup.azure.storage_auth`, :mod:`~backup.azure.blob`, :mod:`~backup.azure.page_range`:
  Storage authorisation (Shared Key, Azure AD), page blobs, byte-range math.
- :mod:`~backup.azure.table`, :mod:`~backup.azure.odata`: Table storage over OData.

Nothing here knows about backups: the domain (catalog, workflow) sits on top.
"""
