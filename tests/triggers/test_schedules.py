"""Timer schedules on a real file, moved through days of time with a ManualClock: one row per
(workflow, Timer node), fires that start runs from the Timer node and stand for their fire time,
catch-up after downtime, overlap policies, pause/resume, trigger and backfill."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone

import pytest

from durableflow import Engine, ValidationError
from durableflow.clock import ManualClock, iso
from durableflow.errors import ScheduleNotFound


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


T0 = at("2027-01-15 08:00:00")


def timed(workflow_id: str = "nightly", **timer) -> dict:
    timer = timer or {"cron": "0 2 * * *"}
    return {"workflowId": workflow_id, "nodes": [
        {"nodeId": "tick", "runtimeType": "Timer", **timer},
        {"nodeId": "by_hand", "runtimeType": "Manual"},
        {"nodeId": "work", "runtimeType": "Python",
         "script": "output = {'day': ctx.scheduled_at, 'input': ctx.input}"}],
        "connections": [{"sourceNodeId": "tick", "targetNodeId": "work"},
                        {"sourceNodeId": "by_hand", "targetNodeId": "work"}]}


@pytest.fixture
def clock():
    return ManualClock(T0)


@pytest.fixture
def engine(tmp_path, clock):
    eng = Engine(tmp_path / "s.db", clock=clock)
    yield eng
    eng.close()


def drain(engine: Engine) -> None:
    """Work until nothing is claimable now (runs waiting for a signal or a timer wait on)."""
    with engine.worker(concurrency=2, schedules=False) as w:
        deadline = engine.clock.monotonic() + 30
        while not (w.idle.is_set() and w.busy == 0 and engine.store.leased_count() == 0
                   and engine.store.read(lambda c: c.execute(
                       "SELECT count(*) FROM messages WHERE status = 'ready' AND held = 0").fetchone()[0]) == 0):
            assert engine.clock.monotonic() < deadline, "still working after 30 s"
            w.idle.wait(0.05)


def fires(engine: Engine, schedule_id: str = "nightly:tick") -> list[tuple]:
    return [(f["fire_at"], f["status"]) for f in reversed(engine.schedule(schedule_id, 1000)["fires"])]


def test_registering_keeps_one_schedule_per_timer_node_not_per_version(engine, clock):
    engine.register(timed())
    (row,) = engine.schedules()
    assert (row["schedule_id"], row["expression"], row["timezone"], row["state"]) == (
        "nightly:tick", "0 2 * * *", "UTC", "active")
    assert row["next_at"] == "2027-01-16T02:00:00.000Z"
    engine.register(timed(cron="30 3 * * *", timezone="Europe/Berlin"))    # version 2, changed
    (row,) = engine.schedules()
    assert (row["expression"], row["next_at"]) == ("30 3 * * *", "2027-01-16T02:30:00.000Z")
    without = timed()
    without["nodes"][0] = {"nodeId": "tick", "runtimeType": "Manual"}
    engine.register(without)                                                # version 3: no Timer
    assert engine.schedules() == []


def test_a_fire_starts_one_run_from_the_timer_node_that_knows_its_fire_time(engine, clock):
    engine.register(timed())
    clock.set(at("2027-01-16 02:00:00.200"))
    (run_id,) = engine.service.scheduler.tick()
    assert engine.service.scheduler.tick() == []          # the same fire time, never twice
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == "completed" and run.scheduled_at == "2027-01-16T02:00:00.000Z"
    assert run.outputs["work"] == {"day": "2027-01-16T02:00:00.000Z", "input": {
        "scheduledAt": "2027-01-16T02:00:00.000Z", "scheduleId": "nightly:tick"}}
    assert run.node("by_hand").status == "skipped"        # other entry nodes are skipped
    by_hand = engine.execute("nightly", {"day": "x"}, timeout=30)
    assert by_hand.node("tick").status == "skipped" and by_hand.scheduled_at is None


def test_downtime_catch_up_none_one_and_all(tmp_path):
    for policy, started in (("none", []), ("one", ["2027-01-19T02:00:00.000Z"]),
                            ("all", ["2027-01-17T02:00:00.000Z", "2027-01-18T02:00:00.000Z",
                                     "2027-01-19T02:00:00.000Z"])):
        clock = ManualClock(T0)
        with Engine(tmp_path / f"{policy}.db", clock=clock) as engine:
            engine.register(timed(cron="0 2 * * *", catchUp=policy))
            clock.set(at("2027-01-16 02:00:10"))
            engine.service.scheduler.tick()                # on time: runs
            drain(engine)
            clock.set(at("2027-01-19 09:00"))              # three days down
            engine.service.scheduler.tick()
            for _ in range(3):                             # caught-up fires run one after another
                drain(engine)
                engine.service.scheduler.refresh()
                engine.service.scheduler.tick()
            got = fires(engine)
            assert got[0] == ("2027-01-16T02:00:00.000Z", "started")
            assert [f for f, s in got[1:] if s == "started"] == started, policy
            assert [s for _f, s in got[1:]].count("skipped") == 3 - len(started), policy
            assert engine.schedules()[0]["next_at"] == "2027-01-20T02:00:00.000Z"


def test_a_fire_later_than_its_grace_is_missed(engine, clock):
    engine.register(timed(interval="10m", misfireGrace="30s"))
    clock.set(at("2027-01-15 08:10:40"))                   # 40 s late
    assert engine.service.scheduler.tick() == []
    assert fires(engine) == [("2027-01-15T08:10:00.000Z", "skipped")]
    clock.set(at("2027-01-15 08:20:05"))
    assert len(engine.service.scheduler.tick()) == 1


@pytest.mark.parametrize("policy, statuses", [
    ("skip", ["started", "skipped", "skipped"]),
    ("allow", ["started", "started", "started"]),
    ("bufferOne", ["started", "skipped", "started"]),
    ("bufferAll", ["started", "started", "started"]),
    ("cancelOther", ["started", "started", "started"]),
])
def test_overlap_policies(tmp_path, policy, statuses):
    """Three fire times a minute apart while each run waits for a signal."""
    clock = ManualClock(T0)
    with Engine(tmp_path / f"{policy}.db", clock=clock) as engine:
        wf = timed(interval="1m", overlap=policy)
        wf["nodes"][2] = {"nodeId": "work", "runtimeType": "WaitForSignal", "signal": "go"}
        engine.register(wf)
        for minute in (1, 2, 3):
            clock.set(T0 + minute * 60 + 1)
            engine.service.scheduler.tick()
            drain(engine)
        for _ in range(4):                     # each run in turn gets its signal and ends
            for run in engine.runs(status="running", limit=10):
                engine.signal(run["run_id"], "go")
            drain(engine)
            engine.service.scheduler.refresh()      # look for buffered fires now
            engine.service.scheduler.tick()
            drain(engine)
        assert [s for _f, s in fires(engine)] == statuses
        ended = sorted(r["status"] for r in engine.runs(limit=10))
        expected = {"cancelOther": ["cancelled", "cancelled", "completed"]}.get(
            policy, ["completed"] * statuses.count("started"))
        assert ended == expected


def test_pause_fires_nothing_and_resume_follows_catch_up(engine, clock):
    engine.register(timed(interval="1h", catchUp="one"))
    assert engine.pause_schedule("nightly:tick") is True
    assert engine.pause_schedule("nightly:tick") is False
    clock.set(at("2027-01-15 12:30"))
    assert engine.service.scheduler.tick() == []
    assert engine.schedules()[0]["state"] == "paused"
    engine.resume_schedule("nightly:tick")
    (run_id,) = engine.service.scheduler.tick()
    assert engine.get_run(run_id).scheduled_at == "2027-01-15T12:00:00.000Z"
    with pytest.raises(ScheduleNotFound, match="workflow_id:node_id"):
        engine.pause_schedule("nightly")


def test_trigger_fires_once_now(engine, clock):
    engine.register(timed())
    run_id = engine.trigger_schedule("nightly:tick")
    other = engine.trigger_schedule("nightly:tick")
    assert run_id != other
    assert engine.get_run(run_id).scheduled_at == iso(T0)


def test_backfill_runs_each_fire_time_once_and_may_run_a_skipped_one(engine, clock):
    engine.register(timed(cron="0 2 * * *"))
    clock.set(at("2027-01-16 09:00"))
    engine.service.scheduler.tick()                        # 01-16 02:00 missed: skipped
    report = engine.backfill_schedule("nightly:tick", "2027-01-10T00:00:00Z", "2027-01-16T08:00:00Z")
    assert report["fire_times"] == 7 and len(report["started"]) == 1 and report["buffered"] == 6
    again = engine.backfill_schedule("nightly:tick", "2027-01-10T00:00:00Z", "2027-01-16T08:00:00Z")
    assert again["started"] == [] and again["already"] == 7
    for _ in range(8):
        engine.service.scheduler.refresh()
        engine.service.scheduler.tick()
        drain(engine)
    days = sorted(engine.get_run(r["run_id"]).scheduled_at for r in engine.runs(limit=20))
    assert days == [f"2027-01-{d}T02:00:00.000Z" for d in range(10, 17)]
    with pytest.raises(ValidationError, match="in the future"):
        engine.backfill_schedule("nightly:tick", "2027-01-10T00:00:00Z", "2027-02-10T00:00:00Z")
    with pytest.raises(ValidationError, match="time zone"):
        engine.backfill_schedule("nightly:tick", "2027-01-10T00:00:00", "2027-01-11T00:00:00Z")


def test_execute_and_run_do_not_fire_schedules(engine, clock):
    engine.register(timed(interval="1m"))
    clock.set(T0 + 3600)                        # many fire times are due
    other = {"workflowId": "other", "nodes": [{"nodeId": "a", "runtimeType": "Noop"}]}
    assert engine.execute(other, timeout=30).status == "completed"
    assert engine.schedule("nightly:tick")["fires"] == []


def test_schedules_from_the_command_line(tmp_path):
    import subprocess
    import sys
    db = tmp_path / "cli.db"
    with Engine(db) as engine:
        engine.register(timed(cron="0 2 * * *", timezone="Europe/Berlin"))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "durableflow", "--db", str(db), "schedules", *args],
                              capture_output=True, text=True, timeout=60)

    listed = cli("--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["schedule_id"], row["expression"], row["timezone"], row["state"]) == (
        "nightly:tick", "0 2 * * *", "Europe/Berlin", "active")
    assert cli("pause", "nightly:tick").stdout.strip() == "schedule nightly:tick paused"
    assert json.loads(cli("--json").stdout)[0]["state"] == "paused"
    assert cli("resume", "nightly:tick").returncode == 0
    fired = cli("trigger", "nightly:tick")
    assert fired.returncode == 0 and len(fired.stdout.strip()) == 32
    shown = cli("show", "nightly:tick", "--json")
    assert [f["status"] for f in json.loads(shown.stdout)["fires"]] == ["started"]
    back = cli("backfill", "nightly:tick", "--from", "2026-12-01T00:00:00Z", "--to", "2026-12-03T00:00:00Z",
               "--json")
    assert back.returncode == 0, back.stderr
    report = json.loads(back.stdout)
    assert report["fire_times"] == 2 and len(report["started"]) + report["buffered"] == 2
    missing = cli("pause", "nightly")
    assert missing.returncode == 1 and "workflow_id:node_id" in missing.stderr
    bad = cli("backfill", "nightly:tick", "--from", "yesterday", "--to", "2026-12-03T00:00:00Z")
    assert bad.returncode == 2 and "not an ISO-8601 time" in bad.stderr
