"""Dealing disks to a run's lanes by expected cost (pure)."""

from __future__ import annotations

import pytest

from backup.workflow.lanes import deal_to_lanes, expected_cost
from backup.workflow.models import DiskRef

GIB = 1 << 30
TIB = 1 << 40


@pytest.mark.parametrize(
    ("costs", "lanes", "expected"),
    [
        ([], 3, [[], [], []]),
        ([5], 1, [[0]]),
        ([1, 1, 1, 1, 1], 2, [[0, 2, 4], [1, 3]]),  # equal costs: round-robin, in order
        ([1, 1, 1], 4, [[0], [1], [2], []]),
        # One 4 TiB disk gets a lane of its own; the small ones share the others.
        ([GIB, 4 * TIB, GIB, GIB, GIB, GIB], 2, [[1], [0, 2, 3, 4, 5]]),
        ([GIB, 4 * TIB, GIB, GIB, GIB, GIB], 3, [[1], [0, 3, 5], [2, 4]]),
        # Largest first, each to the least loaded lane (ties: the lower lane).
        ([3, 5, 8, 2, 7], 2, [[2, 0, 3], [4, 1]]),
        ([10, 10, 1, 9], 2, [[0, 3], [1, 2]]),
        ([0, -5, 3], 2, [[2], [0, 1]]),  # a negative cost counts as zero
    ],
)
def test_deal_to_lanes(costs: list[int], lanes: int, expected: list[list[int]]) -> None:
    shares = deal_to_lanes(costs, lanes)
    assert shares == expected
    assert sorted(i for share in shares for i in share) == list(range(len(costs)))


def test_the_longest_lane_approaches_the_longest_disk() -> None:
    costs = [4 * TIB] + [10 * GIB] * 200
    shares = deal_to_lanes(costs, 16)
    longest = max(sum(costs[i] for i in share) for share in shares)
    assert shares[0] == [0] and longest == 4 * TIB
    round_robin = max(sum(costs[i] for i in range(lane, len(costs), 16)) for lane in range(16))
    assert round_robin == 4 * TIB + 12 * 10 * GIB


@pytest.mark.parametrize("lanes", [0, -1, True, 1.5])
def test_lanes_must_be_a_positive_integer(lanes: object) -> None:
    with pytest.raises(ValueError, match="lanes must be a positive integer"):
        deal_to_lanes([1, 2], lanes)  # type: ignore[arg-type]


def test_expected_cost_is_the_disk_size() -> None:
    disk = DiskRef(
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d",
        "d",
        "rg",
        "s",
        "westus",
        3 * GIB,
    )
    assert expected_cost(disk) == 3 * GIB
