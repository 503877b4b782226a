"""Which lane of a run backs up which disk: by expected cost, largest first, to the least loaded lane.

A run keeps ``maxParallel`` lanes busy, each backing up its share of the disks one after another. Dealt
round-robin, one 4 TiB disk holds up every disk dealt to its lane while the other lanes run dry. Dealt
*largest first, each to the lane with the least total so far* (the LPT rule of scheduling), the large
disks start at once on lanes of their own and the small ones fill the other lanes around them, so a
run takes about as long as its longest disk, or as its total over the lanes, whichever is more.

Pure functions of data; the run orchestrator calls them (replays included: the same disks always give
the same lanes).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from backup.workflow.models import DiskRef

__all__ = ["deal_to_lanes", "expected_cost"]


def expected_cost(disk: DiskRef) -> int:
    """What backing ``disk`` up is expected to cost, in bytes moved: its size (a full copy).

    When last night's bytes moved are known for a disk (incremental copies move only changed pages),
    they are the better estimate; :func:`deal_to_lanes` takes any such numbers.
    """
    return disk.size_bytes


def deal_to_lanes(costs: Sequence[int], lanes: int) -> list[list[int]]:
    """Deal items ``0 .. len(costs) - 1`` to ``lanes`` lanes; answer each lane's items in running order.

    Largest cost first, each to the lane with the least total so far; ties go to the lower item
    number and the lower lane number, so equal costs are dealt round-robin in item order. A lane runs
    its items largest first. Negative costs count as zero.
    """
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, got {lanes!r}")
    order = sorted(range(len(costs)), key=lambda item: (-max(costs[item], 0), item))
    shares: list[list[int]] = [[] for _ in range(lanes)]
    loads = [(0, lane) for lane in range(lanes)]  # (total so far, lane): a heap, least total first
    for item in order:
        total, lane = heapq.heappop(loads)
        shares[lane].append(item)
        heapq.heappush(loads, (total + max(costs[item], 0), lane))
    return shares
