"""When Timers fire: cron in a time zone across daylight-saving changes, intervals, catch-up
windows. Pure: no clock, no database."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from durableflow.timing import Timing, check_cron, check_zone


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() if "+" not in text \
        else datetime.fromisoformat(text).timestamp()


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M")


def test_a_daily_run_is_neither_skipped_nor_doubled_across_both_changes():
    """02:30 Europe/Berlin: on 2026-03-29 that wall time does not exist (02:00 -> 03:00): it fires
    at the instant it had before the change (03:30 on the wall, 01:30 UTC). On 2026-10-25 it
    happens twice: it fires at its first occurrence only (00:30 UTC)."""
    daily = Timing(cron="30 2 * * *", timezone="Europe/Berlin")
    spring = daily.fire_times(at("2026-03-27 00:00"), at("2026-03-31 00:00"))
    assert [utc(t) for t in spring] == ["2026-03-27 01:30", "2026-03-28 01:30", "2026-03-29 01:30",
                                        "2026-03-30 00:30"]
    autumn = daily.fire_times(at("2026-10-23 00:00"), at("2026-10-27 00:00"))
    assert [utc(t) for t in autumn] == ["2026-10-23 00:30", "2026-10-24 00:30", "2026-10-25 00:30",
                                        "2026-10-26 01:30"]


def test_every_wall_time_fires_once_and_no_instant_twice_on_the_change_days():
    half_hourly = Timing(cron="*/30 * * * *", timezone="Europe/Berlin")
    spring = half_hourly.fire_times(at("2026-03-28 23:00"), at("2026-03-29 03:00"))
    assert [utc(t)[11:] for t in spring] == ["23:30", "00:00", "00:30", "01:00", "01:30", "02:00",
                                             "02:30", "03:00"]
    autumn = half_hourly.fire_times(at("2026-10-24 23:00"), at("2026-10-25 02:00"))
    # 02:00 and 02:30 happen twice on the wall (00:00-01:00 and 01:00-02:00 UTC): once each.
    assert [utc(t)[11:] for t in autumn] == ["23:30", "00:00", "00:30", "02:00"]
    assert len(set(spring)) == len(spring) and spring == sorted(spring)


def test_next_after_is_strictly_after_and_walks_one_fire_at_a_time():
    hourly = Timing(cron="0 * * * *", timezone="America/New_York")
    t = at("2026-11-01 04:00")          # 00:00 EDT, the night clocks go back
    seen = []
    for _ in range(4):
        t = hourly.next_after(t)
        seen.append(utc(t))
    assert seen == ["2026-11-01 05:00", "2026-11-01 07:00", "2026-11-01 08:00", "2026-11-01 09:00"]
    assert hourly.next_after(at("2026-11-01 07:00")) == at("2026-11-01 08:00")


def test_intervals_count_from_the_epoch_so_every_process_agrees():
    every = Timing(interval=600)
    assert [utc(t) for t in every.fire_times(at("2026-01-01 00:05"), at("2026-01-01 00:30"))] == [
        "2026-01-01 00:10", "2026-01-01 00:20", "2026-01-01 00:30"]
    assert every.next_after(at("2026-01-01 00:10")) == at("2026-01-01 00:20")


def test_a_limit_keeps_the_latest_fire_times():
    every = Timing(interval=60)
    week = every.fire_times(at("2026-01-01 00:00"), at("2026-01-08 00:00"), limit=3)
    assert [utc(t) for t in week] == ["2026-01-07 23:58", "2026-01-07 23:59", "2026-01-08 00:00"]
    cron = Timing(cron="* * * * *")
    assert cron.fire_times(at("2026-01-01 00:00"), at("2026-01-01 01:00"), limit=2) == [
        at("2026-01-01 00:59"), at("2026-01-01 01:00")]


@pytest.mark.parametrize("expression, ok", [
    ("*/5 * * * *", True), ("@daily", True), ("0 9 * * MON-FRI", True),
    ("61 * * * *", False), ("* * *", False), ("", False), ("banana", False)])
def test_cron_expressions_are_checked_by_croniter(expression, ok):
    assert (check_cron(expression) is None) is ok


def test_time_zones_are_iana_names():
    assert check_zone("Europe/Berlin") and check_zone("UTC")
    assert not check_zone("Mars/Olympus") and not check_zone("not a zone")
