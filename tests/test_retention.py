"""Retention (grandfather-father-son), the pure part: policies, the per-disk tag, and keep/expire decisions.

Tables of hand-worked cases (day, ISO week, month and year boundaries, leap days, gaps, several points in
one day, failed nights, the diff base, clocks that disagree), hypothesis properties of the rule, and 400
simulated nights pruned one by one against a table of expected counts worked out by hand.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup.errors import InvalidInputError
from backup.retention import (
    DEFAULT_POLICY,
    DEFAULT_POLICY_TEXT,
    RETENTION_TAG,
    RetentionPoint,
    RetentionPolicy,
    apply_policy,
    bucket_key,
    parse_policy,
    policy_for_disk,
)


def at(text: str) -> datetime:
    """A UTC time from ``2024-02-29`` or ``2024-02-29T13:00``."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def point(
    text: str, status: str = "Succeeded", *, base: bool = False, name: str | None = None
) -> RetentionPoint:
    return RetentionPoint(name or text, at(text), status, base)  # type: ignore[arg-type]


def kept(points: list[RetentionPoint], policy: RetentionPolicy, now: str) -> list[str]:
    return apply_policy(points, policy, at(now)).kept_ids()


# -- parsing --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("daily=7,weekly=4,monthly=12,yearly=3", RetentionPolicy(7, 4, 12, 3)),
        (" Daily = 30 , YEARLY=1 ", RetentionPolicy(daily=30, yearly=1)),
        ("weekly=0", RetentionPolicy()),
        ("monthly=120", RetentionPolicy(monthly=120)),
        ("yearly=10,daily=3660,weekly=520", RetentionPolicy(daily=3660, weekly=520, yearly=10)),
    ],
)
def test_policies_parse(text: str, expected: RetentionPolicy) -> None:
    assert parse_policy(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("daily", "'daily' is not kind=count"),
        ("daily=seven", "'daily=seven' is not kind=count"),
        ("daily=-1", "'daily=-1' is not kind=count"),
        ("daily=7,", "'' is not kind=count"),
        ("daily=7;weekly=4", "is not kind=count"),
        ("hourly=24", "'hourly' is not a bucket kind"),
        ("daily=7,DAILY=8", "daily is given more than once"),
        ("daily=3661", "daily=3661 is more than the most allowed, 3660"),
        ("yearly=11", "yearly=11 is more than the most allowed, 10"),
        ("daily=1.5", "is not kind=count"),
    ],
)
def test_bad_policies_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_policy(text)
    assert caught.value.field == "retention"
    assert says in caught.value.message


def test_the_default_policy_is_documented_and_round_trips() -> None:
    assert DEFAULT_POLICY_TEXT == "daily=7,weekly=4,monthly=12,yearly=3"
    assert parse_policy(DEFAULT_POLICY_TEXT) == DEFAULT_POLICY
    assert parse_policy(DEFAULT_POLICY.text()) == DEFAULT_POLICY
    assert DEFAULT_POLICY.total == 26


def test_a_policy_layer_changes_only_the_kinds_it_names() -> None:
    assert parse_policy("daily=30", DEFAULT_POLICY) == RetentionPolicy(30, 4, 12, 3)
    assert parse_policy("weekly=0,yearly=10", DEFAULT_POLICY) == RetentionPolicy(7, 0, 12, 10)
    assert parse_policy("daily=30") == RetentionPolicy(daily=30)  # no base: the rest are zero


def test_counts_are_checked_when_built_directly() -> None:
    with pytest.raises(InvalidInputError, match="retention weekly"):
        RetentionPolicy(weekly=-1)
    with pytest.raises(InvalidInputError, match="retention daily"):
        RetentionPolicy(daily=True)  # type: ignore[arg-type]


def test_the_disk_tag_overrides_the_setting() -> None:
    setting = parse_policy("daily=14", DEFAULT_POLICY)
    plain = policy_for_disk({"env": "prod"}, setting)
    assert (plain.policy, plain.source, plain.problem) == (setting, "setting", None)
    assert policy_for_disk(None, setting).policy == setting
    tagged = policy_for_disk({"Diskbackup-Retention": "monthly=36,daily=3"}, setting)
    assert (tagged.policy, tagged.source) == (RetentionPolicy(3, 4, 36, 3), "tag")


def test_a_tag_that_does_not_parse_keeps_everything_and_says_why() -> None:
    broken = policy_for_disk({RETENTION_TAG: "monthly=12O"}, DEFAULT_POLICY)
    assert broken.policy is None
    assert broken.source == "tag"
    assert broken.problem is not None
    assert "tag diskbackup-retention" in broken.problem and "'monthly=12O'" in broken.problem
    assert "every restore point of this disk is kept" in broken.problem


# -- buckets --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "daily", "weekly", "monthly", "yearly"),
    [
        ("2024-02-29T23:59:59", "2024-02-29", "2024-W09", "2024-02", "2024"),
        ("2024-03-03T12:00", "2024-03-03", "2024-W09", "2024-03", "2024"),  # a Sunday ends the week
        ("2024-03-04T00:00", "2024-03-04", "2024-W10", "2024-03", "2024"),  # Monday starts the next
        ("2024-12-30T08:00", "2024-12-30", "2025-W01", "2024-12", "2024"),  # ISO week of the next year
        ("2027-01-01T08:00", "2027-01-01", "2026-W53", "2027-01", "2027"),  # ... and of the year before
        ("2024-03-01T00:30+02:00", "2024-02-29", "2024-W09", "2024-02", "2024"),  # counted in UTC
    ],
)
def test_bucket_keys(moment: str, daily: str, weekly: str, monthly: str, yearly: str) -> None:
    when = at(moment)
    assert [bucket_key(k, when) for k in ("daily", "weekly", "monthly", "yearly")] == [
        daily,
        weekly,
        monthly,
        yearly,
    ]


# -- decisions, case by case ---------------------------------------------------------------------------

NOW = "2024-06-30T12:00"

CASES: list[tuple[str, list[RetentionPoint], RetentionPolicy, str, list[str]]] = [
    ("nothing to decide", [], DEFAULT_POLICY, NOW, []),
    ("one point", [point("2024-06-30T01:00")], DEFAULT_POLICY, NOW, ["2024-06-30T01:00"]),
    (
        "several in one day: the newest of the day",
        [point("2024-06-29T01:00"), point("2024-06-29T09:00"), point("2024-06-29T17:00")],
        RetentionPolicy(daily=7),
        NOW,
        ["2024-06-29T17:00"],
    ),
    (
        "daily counts the most recent days",
        [point(f"2024-06-{d:02d}") for d in range(20, 30)],
        RetentionPolicy(daily=3),
        NOW,
        ["2024-06-29", "2024-06-28", "2024-06-27"],
    ),
    (
        "gaps do not use up the count",
        [point("2024-06-01"), point("2024-06-05"), point("2024-06-09"), point("2024-06-20")],
        RetentionPolicy(daily=3),
        NOW,
        ["2024-06-20", "2024-06-09", "2024-06-05"],
    ),
    (
        "a week runs Monday to Sunday",
        [point("2024-03-03"), point("2024-03-04"), point("2024-03-10")],
        RetentionPolicy(weekly=2),
        NOW,
        ["2024-03-10", "2024-03-03"],
    ),
    (
        "month ends and a leap day",
        [
            point("2024-01-31T23:59"),
            point("2024-02-01T00:00"),
            point("2024-02-29T12:00"),
            point("2024-03-01T00:00:01"),
        ],
        RetentionPolicy(monthly=2),
        NOW,
        ["2024-03-01T00:00:01", "2024-02-29T12:00"],
    ),
    (
        "the leap day is a day of its own",
        [point("2024-02-28"), point("2024-02-29"), point("2024-03-01")],
        RetentionPolicy(daily=2),
        NOW,
        ["2024-03-01", "2024-02-29"],
    ),
    (
        "a year ends inside an ISO week",
        [point("2024-12-30"), point("2024-12-31"), point("2025-01-01")],
        RetentionPolicy(weekly=1, yearly=2),
        "2025-01-01T12:00",
        ["2025-01-01", "2024-12-31"],
    ),
    (
        "yearly keeps each year's last point",
        [
            point("2021-12-31"),
            point("2022-06-01"),
            point("2022-12-30"),
            point("2023-01-01"),
            point("2024-06-30"),
        ],
        RetentionPolicy(yearly=3),
        NOW,
        ["2024-06-30", "2023-01-01", "2022-12-30"],
    ),
    (
        "failed nights take no bucket",
        [
            point("2024-06-26"),
            point("2024-06-27"),
            point("2024-06-28", "Failed"),
            point("2024-06-29", "Failed"),
        ],
        RetentionPolicy(daily=2),
        NOW,
        ["2024-06-27", "2024-06-26"],
    ),
    (
        "a failed run later that day does not hide the good one",
        [point("2024-06-29T01:00"), point("2024-06-29T13:00", "Failed")],
        RetentionPolicy(daily=1),
        NOW,
        ["2024-06-29T01:00"],
    ),
    (
        "the diff base is kept however old",
        [point("2024-06-01", base=True), *[point(f"2024-06-{d:02d}") for d in range(2, 6)]],
        RetentionPolicy(daily=1),
        NOW,
        ["2024-06-05", "2024-06-01"],
    ),
    (
        "an all-zero policy keeps the newest good point and the diff base",
        [
            point("2024-06-10", base=True),
            point("2024-06-11"),
            point("2024-06-12"),
            point("2024-06-13", "Failed"),
        ],
        RetentionPolicy(),
        NOW,
        ["2024-06-12", "2024-06-10"],
    ),
    (
        "only failed points: nothing kept",
        [point("2024-06-28", "Failed"), point("2024-06-29", "Failed")],
        DEFAULT_POLICY,
        NOW,
        [],
    ),
    (
        "a point newer than now is kept and takes no bucket",
        [point("2024-06-28"), point("2024-06-29"), point("2024-07-02")],
        RetentionPolicy(daily=1),
        NOW,
        ["2024-07-02", "2024-06-29"],
    ),
    (
        "times in other zones count in UTC",
        [point("2024-03-01T00:30+02:00", name="feb"), point("2024-02-29T20:00", name="earlier-feb")],
        RetentionPolicy(monthly=1),
        NOW,
        ["feb"],
    ),
    (
        "equal times are broken by id, whatever the input order",
        [point("2024-06-29T01:00", name="b"), point("2024-06-29T01:00", name="a")],
        RetentionPolicy(daily=1),
        NOW,
        ["b"],
    ),
    (
        "overlapping buckets keep a point once",
        [point("2024-05-31"), point("2024-06-30T01:00")],
        RetentionPolicy(daily=7, weekly=4, monthly=12, yearly=3),
        NOW,
        ["2024-06-30T01:00", "2024-05-31"],
    ),
]


@pytest.mark.parametrize(
    ("points", "policy", "now", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decisions(
    points: list[RetentionPoint], policy: RetentionPolicy, now: str, expected: list[str]
) -> None:
    plan = apply_policy(points, policy, at(now))
    assert plan.kept_ids() == expected
    assert sorted(plan.kept_ids() + plan.expired_ids()) == sorted(p.id for p in points)
    shuffled = list(points)
    random.Random(7).shuffle(shuffled)
    assert apply_policy(shuffled, policy, at(now)) == plan


def test_every_verdict_says_why() -> None:
    points = [
        point("2024-06-01", base=True),
        point("2024-06-28T01:00"),
        point("2024-06-28T02:00"),
        point("2024-06-29", "Failed"),
        point("2024-06-30T01:00"),
        point("2024-07-01"),
    ]
    plan = apply_policy(points, RetentionPolicy(daily=1, weekly=1, monthly=1, yearly=1), at(NOW))
    reasons = {d.point.id: d.reasons for d in (*plan.keep, *plan.expire)}
    assert reasons["2024-06-30T01:00"] == (
        "daily 2024-06-30",
        "weekly 2024-W26",
        "monthly 2024-06",
        "yearly 2024",
        "newest good point",
    )
    assert reasons["2024-06-01"] == ("current diff base",)
    assert reasons["2024-07-01"] == ("newer than now: kept, takes no bucket",)
    assert reasons["2024-06-29"] == ("failed: holds no backup",)
    assert reasons["2024-06-28T02:00"] == ("in no bucket kept by daily=1,weekly=1,monthly=1,yearly=1",)
    assert [d.keep for d in plan.keep] == [True] * 3 and [d.keep for d in plan.expire] == [False] * 3


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="id '2024-06-01' is given more than once"):
        apply_policy([point("2024-06-01"), point("2024-06-02", name="2024-06-01")], DEFAULT_POLICY, at(NOW))
    with pytest.raises(InvalidInputError, match="now"):
        apply_policy([], DEFAULT_POLICY, datetime(2024, 6, 30))
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        RetentionPoint("x", datetime(2024, 6, 30), "Succeeded")
    with pytest.raises(InvalidInputError, match="not Succeeded/Failed"):
        RetentionPoint("x", at(NOW), "Expired")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="non-empty"):
        RetentionPoint("", at(NOW), "Succeeded")


# -- properties -----------------------------------------------------------------------------------------

PROPERTY_NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@st.composite
def disk_points(draw: st.DrawFn, *, with_base: bool = True) -> list[RetentionPoint]:
    """Up to 60 points within about three years before now (minute resolution), some failed, maybe a base."""
    minutes = draw(st.lists(st.integers(0, 3 * 366 * 24 * 60), max_size=60))
    statuses = draw(
        st.lists(st.sampled_from(["Succeeded", "Failed"]), min_size=len(minutes), max_size=len(minutes))
    )
    points = [
        RetentionPoint(f"p{i}", PROPERTY_NOW - timedelta(minutes=m), s)  # type: ignore[arg-type]
        for i, (m, s) in enumerate(zip(minutes, statuses, strict=True))
    ]
    good = [p for p in points if p.good]
    if with_base and good and draw(st.booleans()):
        chosen = draw(st.sampled_from(good))
        points = [RetentionPoint(p.id, p.time, p.status, p is chosen) for p in points]
    return points


policies = st.builds(
    RetentionPolicy,
    daily=st.integers(0, 10),
    weekly=st.integers(0, 6),
    monthly=st.integers(0, 14),
    yearly=st.integers(0, 4),
)


@settings(max_examples=300, deadline=None)
@given(disk_points(), policies)
def test_the_newest_good_point_and_the_diff_base_are_never_dropped(
    points: list[RetentionPoint], policy: RetentionPolicy
) -> None:
    kept_ids = set(apply_policy(points, policy, PROPERTY_NOW).kept_ids())
    good = [p for p in points if p.good]
    if good:
        assert max(good, key=lambda p: (p.utc, p.id)).id in kept_ids
    for p in points:
        if p.diff_base:
            assert p.id in kept_ids


@settings(max_examples=300, deadline=None)
@given(disk_points(), policies)
def test_a_failed_point_never_displaces_a_good_one(
    points: list[RetentionPoint], policy: RetentionPolicy
) -> None:
    with_failures = apply_policy(points, policy, PROPERTY_NOW)
    without = apply_policy([p for p in points if p.good], policy, PROPERTY_NOW)
    good_kept = [pid for pid in with_failures.kept_ids() if pid in {p.id for p in points if p.good}]
    assert good_kept == without.kept_ids()
    assert all(not d.point.good for d in with_failures.expire if d.point.id not in set(without.expired_ids()))


@settings(max_examples=300, deadline=None)
@given(disk_points(), policies)
def test_applying_the_policy_twice_drops_nothing_more(
    points: list[RetentionPoint], policy: RetentionPolicy
) -> None:
    first = apply_policy(points, policy, PROPERTY_NOW)
    second = apply_policy([d.point for d in first.keep], policy, PROPERTY_NOW)
    assert second.expired_ids() == []
    assert second.kept_ids() == first.kept_ids()


@settings(max_examples=300, deadline=None)
@given(disk_points(), policies)
def test_keeps_never_exceed_the_policy_plus_the_two_protected_points(
    points: list[RetentionPoint], policy: RetentionPolicy
) -> None:
    plan = apply_policy(points, policy, PROPERTY_NOW)
    assert len(plan.keep) <= policy.total + 2
    for kind in ("daily", "weekly", "monthly", "yearly"):
        marked = [r for d in plan.keep for r in d.reasons if r.startswith(kind + " ")]
        assert len(marked) <= policy.count(kind)  # type: ignore[arg-type]
    assert all(not d.point.good for d in plan.expire if d.reasons[0].startswith("failed"))


@settings(max_examples=150, deadline=None)
@given(disk_points(with_base=False), policies)
def test_pruning_night_by_night_ends_where_pruning_once_does(
    points: list[RetentionPoint], policy: RetentionPolicy
) -> None:
    survivors: list[RetentionPoint] = []
    for new in sorted(points, key=lambda p: (p.utc, p.id)):
        survivors = [d.point for d in apply_policy([*survivors, new], policy, new.utc).keep]
    assert sorted(p.id for p in survivors) == sorted(apply_policy(points, policy, PROPERTY_NOW).kept_ids())


# -- 400 nights -----------------------------------------------------------------------------------------

#: The nights whose backup fails (a month end, a year end, and the night before the last).
FAILED_NIGHTS = {"2025-12-31", "2026-01-31", "2026-02-03"}

#: After the night of ..., worked out by hand for daily=7, weekly=4, monthly=12, yearly=3 (see the notes
#: below the table): points kept, points marked by each bucket kind, and the kept nights.
EXPECTED_AFTER_NIGHT = {
    # 2025-01-10, a Friday: ten nights, ISO weeks 2025-W01 (from Mon 2024-12-30) and W02.
    "2025-01-10": (
        7,
        {"daily": 7, "weekly": 2, "monthly": 1, "yearly": 1},
        [f"2025-01-{d:02d}" for d in range(10, 3, -1)],
    ),
    # 2025-12-31 failed: the newest good point is 12-30 (a Tuesday in 2026-W01, which began Mon 12-29).
    "2025-12-31": (
        20,
        {"daily": 7, "weekly": 4, "monthly": 12, "yearly": 1},
        [
            *[f"2025-12-{d:02d}" for d in (30, 29, 28, 27, 26, 25, 24, 21, 14)],
            *["2025-11-30", "2025-10-31", "2025-09-30", "2025-08-31", "2025-07-31", "2025-06-30"],
            *["2025-05-31", "2025-04-30", "2025-03-31", "2025-02-28", "2025-01-31"],
        ],
    ),
    # 2026-02-04, a Wednesday in 2026-W06, the 400th night. No 2024 point: two yearly buckets only.
    "2026-02-04": (
        19,
        {"daily": 7, "weekly": 4, "monthly": 12, "yearly": 2},
        [
            *["2026-02-04", "2026-02-02", "2026-02-01"],
            *[f"2026-01-{d:02d}" for d in (30, 29, 28, 27, 25, 18)],
            *["2025-12-30", "2025-11-30", "2025-10-31", "2025-09-30", "2025-08-31", "2025-07-31"],
            *["2025-06-30", "2025-05-31", "2025-04-30", "2025-03-31"],
        ],
    ),
}
# How the last row comes out: daily = the 7 newest good nights, skipping the failed 02-03 and 01-31
# (02-04, 02-02, 02-01, 01-30, 01-29, 01-28, 01-27). Weekly = the newest of W06 (02-04), W05 (Sun 02-01),
# W04 (Sun 01-25), W03 (Sun 01-18). Monthly = 02-04, then each month's last good night back to March 2025
# (01-30 and 12-30 because 01-31 and 12-31 failed). Yearly = 02-04 and 12-30. Union: 7 + 2 + 10 = 19.


def test_400_nights_pruned_after_each_leave_exactly_what_the_policy_names() -> None:
    first = datetime(2025, 1, 1, 1, 0, tzinfo=UTC)
    survivors: list[RetentionPoint] = []
    all_points: list[RetentionPoint] = []
    expired_total = 0
    checked = set()
    for night in range(400):
        when = first + timedelta(days=night)
        name = when.strftime("%Y-%m-%d")
        status = "Failed" if name in FAILED_NIGHTS else "Succeeded"
        new = RetentionPoint(name, when, status)  # type: ignore[arg-type]
        all_points.append(new)
        # The diff base is the newest good point: tonight's if it is good, else the one before.
        tonight = [*survivors, new]
        good = [p for p in tonight if p.good]
        base = max(good, key=lambda p: p.utc).id if good else None
        candidates = [RetentionPoint(p.id, p.time, p.status, p.id == base) for p in tonight]
        plan = apply_policy(candidates, DEFAULT_POLICY, when + timedelta(hours=1))
        expired_total += len(plan.expire)
        survivors = [d.point for d in plan.keep]
        if name in EXPECTED_AFTER_NIGHT:
            count, per_kind, nights = EXPECTED_AFTER_NIGHT[name]
            marked = Counter(r.split(" ")[0] for d in plan.keep for r in d.reasons)
            assert len(plan.keep) == count, name
            assert {k: marked[k] for k in per_kind} == per_kind, name
            assert marked["newest"] == 1 and marked["current"] == 1, name
            assert plan.kept_ids() == nights, name
            checked.add(name)
    assert checked == set(EXPECTED_AFTER_NIGHT)
    assert expired_total == 400 - 19  # every other night expired exactly once, the failed ones at once
    once = apply_policy(all_points, DEFAULT_POLICY, first + timedelta(days=399, hours=1))
    assert once.kept_ids() == [p.id for p in survivors]  # one prune at the end agrees with 400
    assert len(all_points) == 400 and all_points[-1].id == "2026-02-04"


def test_a_fixed_offset_zone_is_read_as_utc() -> None:
    east = timezone(timedelta(hours=10))
    p = RetentionPoint("x", datetime(2024, 7, 1, 5, tzinfo=east), "Succeeded")
    assert bucket_key("monthly", p.utc) == "2024-06"
