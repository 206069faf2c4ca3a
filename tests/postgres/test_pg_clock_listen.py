"""What PostgreSQL changes for time and wake-ups (issue 18): the server's clock is every host's
default clock (so a host whose own clock runs ahead cannot take live work nor fire a schedule
early), an injected clock
still wins, the offset is measured again from time to time; and an idle worker is woken by
LISTEN/NOTIFY when another connection commits work, and again after its listening connection
was cut."""

from __future__ import annotations

import time

import pytest

from durableflow import Engine
from durableflow.clock import ManualClock, parse_iso
from durableflow.notify import Notifier
from durableflow.records import NewMessage
from durableflow.storage import Store
from durableflow.storage.postgres.clock import ServerClock
from tests.integration.fixtures.df_it_support import wait_until

pytest.importorskip("psycopg", reason="psycopg not installed (pip install -e '.[test]')")

HOUR = 3600.0
FLOW = {"workflowId": "woken", "nodes": [{"nodeId": "a", "runtimeType": "Python", "script": "output = 1"}]}


def skew(store: Store, seconds: float) -> None:
    """Make the store's host clock run `seconds` ahead, and let the server clock measure it."""
    store.clock._local = lambda: time.time() + seconds
    store.clock.measure()


def test_the_default_clock_is_the_servers_whatever_this_hosts_clock_says(pg_dsn):
    with Store(pg_dsn) as store:
        assert isinstance(store.clock, ServerClock)
        skew(store, HOUR)
        assert abs(store.clock.offset + HOUR) < 1.0
        assert abs(store.clock.now() - time.time()) < 1.0        # the server runs on this machine


def test_a_host_whose_clock_runs_ahead_cannot_take_live_work(pg_dsn):
    with Store(pg_dsn) as a, Store(pg_dsn) as ahead:
        [mid] = a.enqueue(NewMessage(kind="t"))
        [held] = a.claim("worker-a", lease_seconds=30)
        skew(ahead, HOUR)
        assert ahead.reclaim() == [] and ahead.claim("worker-b") == []
        assert a.message(mid)["status"] == "leased"
        a.ack(held.id, held.token)


def test_an_injected_clock_replaces_the_servers(pg_dsn):
    """The same host an hour ahead, told so by an injected clock, does take the lease: the
    test above passes because of the server clock, not by chance."""
    with Store(pg_dsn) as a, Store(pg_dsn, clock=ManualClock(time.time() + HOUR)) as ahead:
        assert not isinstance(ahead.clock, ServerClock)
        [mid] = a.enqueue(NewMessage(kind="t"))
        a.claim("worker-a", lease_seconds=30)
        assert [r.message_id for r in ahead.reclaim()] == [mid]


def test_the_offset_is_measured_again_from_time_to_time(pg_dsn):
    with Store(pg_dsn) as store:
        clock = store.clock
        assert abs(clock.offset) < 1.0
        clock.refresh_seconds = 0.0
        clock._local = lambda: time.time() - HOUR    # this host's clock was set back an hour
        clock.now()
        clock.now()                                   # the refresh is due at each read now
        assert abs(clock.offset - HOUR) < 1.0
        assert abs(clock.now() - time.time()) < 1.0


def test_a_server_clock_keeps_its_offset_when_a_refresh_fails():
    calls = []

    def server() -> float:
        calls.append(1)
        if len(calls) > 3:
            raise OSError("server gone")
        return time.time() + 100

    clock = ServerClock(server, refresh_seconds=0.0)
    assert abs(clock.offset - 100) < 1.0
    assert abs(clock.now() - (time.time() + 100)) < 1.0     # the refresh failed: old offset kept
    assert len(calls) == 4


def test_a_commit_elsewhere_wakes_the_listener_and_a_claim_that_found_nothing_does_not(pg_dsn, pg_cluster_session):
    with Store(pg_dsn) as here, Store(pg_dsn) as elsewhere:
        notifier = Notifier()
        watcher = here.change_watcher(notifier)
        watcher.start()
        try:
            wait_until(lambda: watcher.listening.is_set(), what="the listener to LISTEN")
            gen = notifier.generation()
            assert elsewhere.claim("w") == []               # a write transaction that wrote nothing
            assert not notifier.wait(gen, 0.5)
            elsewhere.enqueue(NewMessage(kind="t"))
            assert notifier.wait(gen, 5)
            # Cut the listening connection: it comes back, and wakes the worker again.
            pg_cluster_session.admin_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'")
            wait_until(lambda: not watcher.listening.is_set(), what="the listener to notice")
            wait_until(lambda: watcher.listening.is_set(), what="the listener to reconnect")
            gen = notifier.generation()
            elsewhere.enqueue(NewMessage(kind="t"))
            assert notifier.wait(gen, 5)
        finally:
            watcher.stop()


def test_a_worker_runs_what_another_engine_starts(pg_dsn):
    with Engine(pg_dsn) as worker_side, Engine(pg_dsn) as other:
        with worker_side.worker(concurrency=1, poll_max=30.0):
            wait_until(lambda: worker_side.service.watcher.listening.is_set(), what="the worker's process to LISTEN")
            for _ in range(3):
                run_id = other.start(FLOW)
                assert worker_side.wait(run_id, timeout=10).status == "completed"


def test_a_host_whose_clock_runs_ahead_does_not_fire_a_schedule_early(pg_dsn):
    timed = {"workflowId": "hourly", "nodes": [
        {"nodeId": "tick", "runtimeType": "Timer", "cron": "0 3 * * *"},
        {"nodeId": "work", "runtimeType": "Python", "script": "output = 1"}],
        "connections": [{"sourceNodeId": "tick", "targetNodeId": "work"}]}
    with Engine(pg_dsn) as first:
        first.register(timed)
        next_at = parse_iso(first.schedules()[0]["next_at"])
    assert next_at - time.time() > 5, "the fire is due within seconds: nothing to tell apart"
    with Engine(pg_dsn) as ahead:
        skew(ahead.store, next_at + 1 - time.time())       # this host thinks the fire is past
        assert ahead.clock.now() < next_at - 4
        assert ahead.service.scheduler.tick() == []
    # The same moment from an injected clock fires it: what held the fire back was the server's.
    with Engine(pg_dsn, clock=ManualClock(next_at + 1)) as told:
        assert len(told.service.scheduler.tick()) == 1
