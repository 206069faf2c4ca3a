"""The one timestamp format: iso() must give exactly what the datetime formula gives."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given, strategies as st

from durableflow.clock import iso, parse_iso


def reference(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False, allow_infinity=False))
def test_iso_matches_datetime_everywhere(ts):
    assert iso(ts) == reference(ts)


def test_iso_at_the_edges_of_a_second_and_of_a_millisecond():
    base = 1_795_000_000
    for frac in (0.0, 0.0004999, 0.0005, 0.000999, 0.001, 0.4995, 0.9994999, 0.9995, 0.9999994,
                 0.9999995, 0.99999999):
        for ts in (base + frac, base - 1 + frac):
            assert iso(ts) == reference(ts), ts
    # The per-second cache is refreshed when the second changes, in either direction.
    assert [iso(t) for t in (base + 0.5, base + 1.5, base + 0.25)] == [
        reference(base + 0.5), reference(base + 1.5), reference(base + 0.25)]


def test_iso_cache_stays_small_and_right_across_many_seconds():
    from durableflow import clock
    base = 1_795_000_000.125
    stamps = [base + 30 * i + (i % 2) * 30 for i in range(500)]   # now and now + lease, in turn
    assert [iso(t) for t in stamps] == [reference(t) for t in stamps]
    assert 0 < len(clock._seconds) <= 64


def test_iso_round_trips_through_parse_iso_to_the_millisecond():
    ts = 1_795_000_123.456
    assert abs(parse_iso(iso(ts)) - ts) < 0.001


def test_the_wall_clock_reads_time_time_at_each_call(monkeypatch):
    # freezegun freezes time by assigning time.time = fake_time; a Clock that looks time.time up
    # at each call (not `from time import time`) follows it. Patched here directly: freezegun's
    # own start scans sys.modules, which a thread left by another test may be importing into.
    import time as time_module

    from durableflow.clock import Clock

    now = [1_772_366_400.25]   # 2026-03-01T12:00:00.250Z
    monkeypatch.setattr(time_module, "time", lambda: now[0])
    clock = Clock()
    assert clock.now_iso() == "2026-03-01T12:00:00.250Z"
    now[0] += 1.5
    assert clock.now_iso() == "2026-03-01T12:00:01.750Z"
