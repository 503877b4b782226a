"""The host's memo of the SDK's history-timestamp parser: same answers as dateutil, parsed once per text."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import dateutil.parser

from backup.local.durable_host import timestamps
from backup.local.durable_host.history import format_timestamp

SDK = importlib.import_module("azure.durable_functions.models.history.HistoryEvent")


def test_the_memo_answers_what_dateutil_answers() -> None:
    timestamps.install()
    timestamps.install()  # idempotent: still one layer
    assert timestamps.installed()
    assert not hasattr(SDK.dt_parse.__wrapped_parse__, "__wrapped_parse__")
    when = datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC)
    for text in (format_timestamp(when), "2026-11-26T01:02:03.4567891Z", "2026-11-26T01:02:03Z"):
        parsed = SDK.dt_parse(text)
        assert parsed == dateutil.parser.parse(text)
        assert parsed.utcoffset() == timedelta(0)
        assert SDK.dt_parse(text) is parsed  # the second time, from the memo


def test_anything_but_one_string_goes_to_dateutil_untouched() -> None:
    timestamps.install()
    default = datetime(2020, 1, 1)
    # dateutil fills what the text lacks from `default`: such a call must never come from the memo.
    assert SDK.dt_parse("10:30", default=default) == datetime(2020, 1, 1, 10, 30)
    assert SDK.dt_parse("10:30", default=default.replace(year=2021)) == datetime(2021, 1, 1, 10, 30)
