"""parse_duration: every duration in definitions, on the command line and in the API."""

from __future__ import annotations

import pytest

from durableflow.durations import MAX_DURATION, format_duration, parse_duration


@pytest.mark.parametrize("value, seconds", [
    ("500ms", 0.5), ("10s", 10), ("1h30m", 5400), ("2d", 172800), (" 5 m ", 300), ("30", 30),
    (30, 30), (0.25, 0.25), ("1.5e-07", 1.5e-07), ("36500d", 36500 * 86400),
])
def test_good_durations(value, seconds):
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value, message", [
    ("inf", "not a duration"), ("infinity", "not a duration"), ("nan", "not a duration"),
    (float("inf"), "not a duration"), (float("nan"), "not a duration"), (-1, "not a duration"),
    ("-5s", "not a duration"), ("5 minutes", "not a duration"), (True, "not a duration"),
    (None, "not a duration"), ("", "empty duration"),
    ("99999999999d", "too long"), ("36501d", "too long"), (10**30, "too long"),
])
def test_bad_durations_are_refused_with_a_reason(value, message):
    with pytest.raises(ValueError, match=message):
        parse_duration(value)


def test_the_longest_duration_round_trips():
    assert parse_duration(format_duration(MAX_DURATION)) == MAX_DURATION


@pytest.mark.parametrize("seconds", [5e-324, 1e-9, 0.0004999, 0.001, 0.25, 90.0, 0.0])
def test_short_durations_round_trip_and_never_become_zero(seconds):
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert (text == "0s") == (seconds == 0)
