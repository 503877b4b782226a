"""The test bed: everything that stands in for Azure on a machine without it. Never deployed, never in
the wheel, never imported by the product (a test holds that).

- :mod:`~testbed.azurite`: Microsoft's storage emulator, started and stopped;
- :mod:`~testbed.emulator`: the compute emulator (ARM for disks and snapshots) and the managed-disk data
  plane in front of Azurite;
- :mod:`~testbed.proving_ground`: all of it at once, for tests, ``make dev`` and ``make demo``;
- :mod:`~testbed.devenv`, :mod:`~testbed.demo`: ``make dev`` and ``make demo``;
- :mod:`~testbed.digest`: byte-for-byte digests of blobs, to compare a backup with its disk.
"""
