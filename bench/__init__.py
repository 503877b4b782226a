"""Benchmarks: ``make bench`` runs every module of this package that defines ``main()``, in name order.

Benchmarks print figures (and end each with a ``bench: ...`` line); they assert nothing about time.
They run on the test bed (Azurite, the compute emulator, the local Durable host, often on the virtual
clock) and are no part of the product or of ``make test``.
"""
