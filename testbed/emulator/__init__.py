"""The compute emulator: ARM for managed disks and snapshots, and their data plane in front of Azurite."""
