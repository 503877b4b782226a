"""Grandfather-father-son retention: which restore points of a disk to keep, which expire, and why.

A policy names how many *buckets* of each kind to keep, e.g. ``daily=7,weekly=4,monthly=12,yearly=3``.
A bucket is a UTC calendar day, an ISO week (Monday to Sunday), a calendar month or a calendar year. For
each kind, the newest good point of each of the ``n`` most recent buckets *that hold a good point* is
kept. Buckets without a good point (nights the backup failed or did not run) do not use up the count, so
history is never lost only because time passed: if backups stop, the points they left stay. This is
the rule restic's and borg's ``--keep-daily`` etc. follow; Azure Backup's rule is by age instead.

Besides the buckets, two points are always kept, whatever the policy says:

- the newest good point (the newest restore point there is to restore);
- the current diff base (the point the incremental chain builds on).

Failed points never take a bucket (a failed night cannot push a good point out) and expire themselves:
they hold no data. Points newer than ``now`` (a clock that disagrees) are kept and take no bucket, so a
wrong timestamp cannot crowd out real points. Applying a policy to what it kept keeps all of it again
(idempotent), and at most the policy's sum plus the two protected points are kept from points at or
before ``now``.

Where a policy comes from, each layer naming only what it changes (a bucket kind not named keeps the
value of the layer below; write ``weekly=0`` to turn one off):

1. :data:`DEFAULT_POLICY` (``daily=7,weekly=4,monthly=12,yearly=3``);
2. the app setting ``BACKUP_RETENTION``;
3. the disk's tag ``diskbackup-retention`` (:func:`policy_for_disk`). A tag that does not parse keeps
   every point of that disk and says why: a typo must not delete backups.

Everything here is pure: no I/O, the current time is an argument.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from backup.errors import InvalidInputError

__all__ = [
    "BUCKET_KINDS",
    "DEFAULT_POLICY",
    "DEFAULT_POLICY_TEXT",
    "MAX_COUNTS",
    "RETENTION_TAG",
    "Decision",
    "DiskPolicy",
    "Plan",
    "PointStatus",
    "RetentionPoint",
    "RetentionPolicy",
    "apply_policy",
    "bucket_key",
    "parse_policy",
    "policy_for_disk",
]

#: The disk tag that overrides the app's policy for one disk (tag names compare case-insensitively).
RETENTION_TAG = "diskbackup-retention"

BucketKind = Literal["daily", "weekly", "monthly", "yearly"]
#: The bucket kinds, finest first: the order in which reasons are listed.
BUCKET_KINDS: tuple[BucketKind, ...] = ("daily", "weekly", "monthly", "yearly")

#: The largest count of each kind: ten years of each (a typo like ``daily=70000`` is refused, not obeyed).
MAX_COUNTS: Mapping[BucketKind, int] = {"daily": 3660, "weekly": 520, "monthly": 120, "yearly": 10}

PointStatus = Literal["Succeeded", "Failed"]

_KIND_NAMES: Mapping[str, BucketKind] = {kind: kind for kind in BUCKET_KINDS}
_ITEM = re.compile(r"^\s*(?P<kind>[A-Za-z]+)\s*=\s*(?P<count>[0-9]+)\s*$")


@dataclass(frozen=True)
class RetentionPolicy:
    """How many buckets of each kind to keep; see the module docstring."""

    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    def __post_init__(self) -> None:
        for kind in BUCKET_KINDS:
            count = getattr(self, kind)
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNTS[kind]:
                raise InvalidInputError(
                    f"retention {kind}", f"must be a whole number from 0 to {MAX_COUNTS[kind]}, got {count!r}"
                )

    def count(self, kind: BucketKind) -> int:
        """The count of one bucket kind."""
        return int(getattr(self, kind))

    @property
    def total(self) -> int:
        """The sum of the counts: at most this many points are kept by buckets."""
        return sum(self.count(kind) for kind in BUCKET_KINDS)

    def text(self) -> str:
        """The policy in the syntax :func:`parse_policy` reads, every kind named."""
        return ",".join(f"{kind}={self.count(kind)}" for kind in BUCKET_KINDS)

    def __str__(self) -> str:
        return self.text()


#: The built-in policy: a week of nights, a month of weeks, a year of months, three years.
DEFAULT_POLICY_TEXT = "daily=7,weekly=4,monthly=12,yearly=3"
DEFAULT_POLICY = RetentionPolicy(daily=7, weekly=4, monthly=12, yearly=3)


def parse_policy(
    text: str, base: RetentionPolicy | None = None, *, field_name: str = "retention"
) -> RetentionPolicy:
    """Read ``daily=7,weekly=4,...`` on top of ``base`` (default: all zero); raise naming what is wrong.

    Kinds are ``daily``, ``weekly``, ``monthly`` and ``yearly`` (any case), each at most once, counts
    whole numbers from 0 to :data:`MAX_COUNTS`. Kinds not named keep ``base``'s count.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(field_name, f"is empty; write e.g. {DEFAULT_POLICY_TEXT}")
    counts = {kind: (base.count(kind) if base else 0) for kind in BUCKET_KINDS}
    seen: set[str] = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            raise InvalidInputError(
                field_name, f"{item.strip()!r} is not kind=count (e.g. daily=7); in {text!r}"
            )
        kind = _KIND_NAMES.get(match["kind"].lower())
        if kind is None:
            raise InvalidInputError(
                field_name, f"{match['kind']!r} is not a bucket kind (use daily, weekly, monthly, yearly)"
            )
        if kind in seen:
            raise InvalidInputError(field_name, f"{kind} is given more than once in {text!r}")
        seen.add(kind)
        count = int(match["count"])
        limit = MAX_COUNTS[kind]
        if count > limit:
            raise InvalidInputError(field_name, f"{kind}={count} is more than the most allowed, {limit}")
        counts[kind] = count
    return RetentionPolicy(**counts)


@dataclass(frozen=True)
class DiskPolicy:
    """The policy that applies to one disk and where it came from.

    ``policy`` is ``None`` when the disk's tag does not parse: then nothing of that disk may expire, and
    ``problem`` says why (for the prune report).
    """

    policy: RetentionPolicy | None
    source: Literal["setting", "tag"]
    problem: str | None = None


def policy_for_disk(tags: Mapping[str, str] | None, setting: RetentionPolicy) -> DiskPolicy:
    """The policy of a disk with ``tags``: ``setting``, overridden by its ``diskbackup-retention`` tag."""
    value = None
    for name, tag_value in (tags or {}).items():
        if name.lower() == RETENTION_TAG:
            value = tag_value
    if value is None:
        return DiskPolicy(setting, "setting")
    try:
        return DiskPolicy(parse_policy(value, setting, field_name=f"tag {RETENTION_TAG}"), "tag")
    except InvalidInputError as error:
        return DiskPolicy(None, "tag", f"{error.message}; every restore point of this disk is kept")


# -- points and decisions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionPoint:
    """What retention needs to know of a restore point: its id, time, status, and if it is the diff base."""

    id: str
    time: datetime
    status: PointStatus
    diff_base: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InvalidInputError("restore point id", "must be a non-empty string")
        if not isinstance(self.time, datetime) or self.time.tzinfo is None:
            raise InvalidInputError(f"restore point {self.id} time", "must be a timezone-aware datetime")
        if self.status not in ("Succeeded", "Failed"):
            raise InvalidInputError(
                f"restore point {self.id} status", f"{self.status!r} is not Succeeded/Failed"
            )

    @property
    def good(self) -> bool:
        """Whether the point holds a restorable backup."""
        return self.status == "Succeeded"

    @property
    def utc(self) -> datetime:
        """The time in UTC."""
        return self.time.astimezone(UTC)


@dataclass(frozen=True)
class Decision:
    """One point's verdict: kept (``keep``) or expired, and every reason for it."""

    point: RetentionPoint
    keep: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """What a policy does to a disk's points: the kept and the expired, each newest first."""

    policy: RetentionPolicy
    keep: tuple[Decision, ...] = field(default=())
    expire: tuple[Decision, ...] = field(default=())

    def kept_ids(self) -> list[str]:
        """The ids of the kept points, newest first."""
        return [decision.point.id for decision in self.keep]

    def expired_ids(self) -> list[str]:
        """The ids of the expired points, newest first."""
        return [decision.point.id for decision in self.expire]


def bucket_key(kind: BucketKind, moment: datetime) -> str:
    """The name of the ``kind`` bucket holding ``moment`` (in UTC).

    ``2024-02-29`` (daily), ``2024-W09`` (weekly: ISO weeks, Monday first; 2024-12-30 is in ``2025-W01``),
    ``2024-02`` (monthly), ``2024`` (yearly).
    """
    utc = moment.astimezone(UTC)
    if kind == "daily":
        return utc.strftime("%Y-%m-%d")
    if kind == "weekly":
        year, week, _ = utc.isocalendar()
        return f"{year:04d}-W{week:02d}"
    if kind == "monthly":
        return utc.strftime("%Y-%m")
    return f"{utc.year:04d}"


def _newest_first(point: RetentionPoint) -> tuple[datetime, str]:
    # Ties in time are broken by id so the verdict never depends on input order.
    return point.utc, point.id


def apply_policy(points: Iterable[RetentionPoint], policy: RetentionPolicy, now: datetime) -> Plan:
    """Decide which of one disk's ``points`` to keep under ``policy`` at ``now``; see the module docstring.

    Ids must be unique. Every point ends in exactly one of ``Plan.keep`` and ``Plan.expire``.
    """
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise InvalidInputError("now", "must be a timezone-aware datetime")
    ordered = sorted(points, key=_newest_first, reverse=True)
    ids = [point.id for point in ordered]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise InvalidInputError("restore points", f"id {duplicate!r} is given more than once")
    now_utc = now.astimezone(UTC)
    reasons: dict[str, list[str]] = {point.id: [] for point in ordered}
    future = [p for p in ordered if p.utc > now_utc]
    good = [p for p in ordered if p.good and p.utc <= now_utc]
    for point in future:
        reasons[point.id].append("newer than now: kept, takes no bucket")
    for kind in BUCKET_KINDS:
        _keep_buckets(good, kind, policy.count(kind), lambda point, why: reasons[point.id].append(why))
    if good:
        reasons[good[0].id].append("newest good point")
    for point in ordered:
        if point.diff_base:
            reasons[point.id].append("current diff base")
    keep: list[Decision] = []
    expire: list[Decision] = []
    for point in ordered:
        why = reasons[point.id]
        if why:
            keep.append(Decision(point, True, tuple(why)))
        elif not point.good:
            expire.append(Decision(point, False, ("failed: holds no backup",)))
        else:
            expire.append(Decision(point, False, (f"in no bucket kept by {policy.text()}",)))
    return Plan(policy, tuple(keep), tuple(expire))


def _keep_buckets(
    good_newest_first: Sequence[RetentionPoint],
    kind: BucketKind,
    count: int,
    mark: Callable[[RetentionPoint, str], None],
) -> None:
    """Mark the newest point of each of the ``count`` most recent ``kind`` buckets holding a good point."""
    seen: set[str] = set()
    for point in good_newest_first:
        if len(seen) >= count:
            return
        key = bucket_key(kind, point.utc)
        if key in seen:
            continue  # an older point of a bucket already kept
        seen.add(key)
        mark(point, f"{kind} {key}")
