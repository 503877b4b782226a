"""The host's memos of what the SDK redoes on every replay: same answers, computed once."""

from __future__ import annotations

import collections
import importlib
from datetime import UTC, datetime, timedelta

import dateutil.parser

from backup.local.durable_host import sdk_memos
from backup.local.durable_host.history import format_timestamp

HISTORY_EVENT = importlib.import_module("azure.durable_functions.models.history.HistoryEvent")
EXECUTOR = importlib.import_module("azure.durable_functions.models.TaskOrchestrationExecutor")
CODEC = importlib.import_module("azure.functions._durable_functions")


def test_install_is_idempotent() -> None:
    sdk_memos.install()
    sdk_memos.install()
    assert sdk_memos.installed()
    assert not hasattr(HISTORY_EVENT.dt_parse.__memo_of__, "__memo_of__")  # one layer
    assert not hasattr(EXECUTOR.namedtuple.__memo_of__, "__memo_of__")
    assert not hasattr(CODEC._is_strict_mode.__memo_of__, "__memo_of__")
    assert not hasattr(collections.namedtuple, "__memo_of__")  # only the SDK module's name changed


def test_the_timestamp_memo_answers_what_dateutil_answers() -> None:
    sdk_memos.install()
    when = datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC)
    for text in (format_timestamp(when), "2026-11-26T01:02:03.4567891Z", "2026-11-26T01:02:03Z"):
        parsed = HISTORY_EVENT.dt_parse(text)
        assert parsed == dateutil.parser.parse(text)
        assert parsed.utcoffset() == timedelta(0)
        assert HISTORY_EVENT.dt_parse(text) is parsed  # the second time, from the memo


def test_anything_but_one_string_goes_to_dateutil_untouched() -> None:
    sdk_memos.install()
    default = datetime(2020, 1, 1)
    # dateutil fills what the text lacks from `default`: such a call must never come from the memo.
    assert HISTORY_EVENT.dt_parse("10:30", default=default) == datetime(2020, 1, 1, 10, 30)
    assert HISTORY_EVENT.dt_parse("10:30", default=default.replace(year=2021)) == datetime(2021, 1, 1, 10, 30)


def test_executors_share_one_payload_class_of_plain_tuples() -> None:
    sdk_memos.install()
    first, second = EXECUTOR.TaskOrchestrationExecutor(), EXECUTOR.TaskOrchestrationExecutor()
    a = next(iter(first.event_to_SetTaskValuePayload.values()))
    b = next(iter(second.event_to_SetTaskValuePayload.values()))
    assert type(a) is type(b) and isinstance(a, tuple) and a._fields == ("is_success", "task_id_key")
    assert EXECUTOR.namedtuple("Other", "x y") is not type(a)
    assert EXECUTOR.namedtuple("P", "a", defaults=(1,))().a == 1  # keyword arguments: not memoized


def test_the_codecs_app_setting_is_read_once_and_answers_what_the_codec_reads() -> None:
    sdk_memos.install()
    memo = CODEC._is_strict_mode
    assert memo() == memo.__memo_of__()  # the setting as the codec reads it (unset here: loose mode)
    assert memo() is memo()
    assert not hasattr(memo.__memo_of__, "__memo_of__")  # one layer, however often installed
