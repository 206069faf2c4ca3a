"""recover, doctor, dead-letters."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from durableflow import Engine, ManualClock
from durableflow.storage.queue import NewMessage


@pytest.fixture
def dead_letters(db, chain):
    """Two dead letters: one of a run that then failed, one of no run. Returns their message ids.

    A message whose lease expires on its last allowed delivery is dead-lettered; a manual clock
    makes the lease expire without waiting."""
    clock = ManualClock()
    with Engine(db, clock=clock, max_deliveries=1) as engine:
        run_id = engine.start(chain)
        in_run = engine.store.claim("gone-worker", 1, 5)[0].id
        (loose,) = engine.store.enqueue(NewMessage(kind="ping", max_attempts=1))
        engine.store.claim("gone-worker", 1, 5)
        clock.advance(60)
        engine.recover()
        run = engine.get_run(run_id)
        assert run.status == "failed" and run.error.endswith("dead-lettered after 1 lost delivery")
    return in_run, loose


# --- recover -------------------------------------------------------------------------------------

def test_recover_on_a_quiet_database(invoke, chain):
    invoke("start", chain)
    result = invoke("recover")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["dead workers: 0", "messages reclaimed: 0", "dead-lettered: 0",
                                          "node processes stopped: 0"]
    assert json.loads(invoke("recover", "--json").stdout) == {
        "dead_workers": [], "reclaimed": 0, "dead_lettered": 0, "processes_killed": 0}


def test_recover_without_a_database(invoke, db):
    assert invoke("recover").exit_code == 1
    assert not db.exists()


# --- doctor --------------------------------------------------------------------------------------

def test_doctor_ok(invoke, chain, db):
    invoke("run", chain)
    result = invoke("doctor")
    assert result.exit_code == 0, result.stderr
    assert "integrity:      ok" in result.stdout
    assert "queue:          ready 0, leased 0, acked 2, dead 0" in result.stdout
    report = json.loads(invoke("doctor", "--json").stdout)
    assert report["ok"] is True and report["integrity"] == "ok"
    assert report["schema_version"] >= 1
    assert report["queue"]["acked"] == 2


def test_doctor_on_a_file_that_is_not_a_database(invoke, db):
    db.write_bytes(b"this is not sqlite" * 100)
    result = invoke("doctor")
    assert result.exit_code == 1
    assert result.stderr.startswith("durableflow: error: ")
    assert "not a durableflow database" in result.stderr


def test_doctor_reports_a_failed_integrity_check(invoke, chain, monkeypatch):
    invoke("run", chain)
    monkeypatch.setattr(Engine, "doctor", lambda self: {
        "path": "x.db", "integrity": ["row 3 missing from index"], "schema_version": 1,
        "queue": {}})
    result = invoke("doctor")
    assert result.exit_code == 1
    assert "integrity:      FAILED" in result.stdout and "row 3 missing from index" in result.stdout
    assert json.loads(invoke("doctor", "--json").stdout)["ok"] is False


def test_doctor_on_a_damaged_file_says_what_can_be_done(invoke, chain, db):
    invoke("run", chain)
    with open(db, "r+b") as f:      # the schema's page: nothing can be read any more
        f.seek(100)
        f.write(b"\xff" * 200)
    result = invoke("doctor")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "database is corrupt" in result.stderr and "run `durableflow doctor`" not in result.stderr
    assert "restore it from a backup" in result.stderr and ".recover" in result.stderr


def test_doctor_and_stats_name_a_killed_worker_until_it_is_recovered(invoke, chain, db):
    invoke("start", chain)
    code = ("import sys; from durableflow import Engine\n"
            "e = Engine(sys.argv[1]); w = e.worker(concurrency=1, quick_check=False).start()\n"
            "print(w.worker_id, flush=True); sys.stdin.read()")
    with subprocess.Popen([sys.executable, "-c", code, str(db)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as proc:
        worker_id = proc.stdout.readline().strip()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    result = invoke("doctor")
    assert result.exit_code == 0
    assert f"dead worker:    {worker_id} (pid {proc.pid} is gone;" in result.stdout
    assert json.loads(invoke("doctor", "--json").stdout)["dead_workers"] == [
        {"worker_id": worker_id, "pid": proc.pid}]
    stats = json.loads(invoke("stats", "--json").stdout)
    assert (stats["workers_running"], stats["workers_dead"]) == (1, 1)
    assert invoke("recover").exit_code == 0
    assert "dead worker" not in invoke("doctor").stdout
    stats = json.loads(invoke("stats", "--json").stdout)
    assert (stats["workers_running"], stats["workers_dead"]) == (0, 0)


# --- dead-letters --------------------------------------------------------------------------------

def test_dead_letters_empty(invoke, chain):
    invoke("run", chain)
    assert invoke("dead-letters").stdout.strip() == "no dead letters"
    assert json.loads(invoke("dead-letters", "--json").stdout) == []


def test_dead_letters_listed(invoke, dead_letters):
    in_run, loose = dead_letters
    result = invoke("dead-letters")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["message", "run", "node", "attempts"]
    assert [int(line.split()[0]) for line in lines[2:]] == [in_run, loose]
    rows = json.loads(invoke("dead-letters", "--json").stdout)
    assert [r["message_id"] for r in rows] == [in_run, loose]
    assert rows[0]["target_node_id"] == "a" and "lease expired" in rows[0]["error"]


def test_requeue_a_dead_letter(invoke, dead_letters, db):
    _, loose = dead_letters
    result = invoke("dead-letters", "--requeue", loose)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"message {loose} requeued"
    assert [r["message_id"] for r in json.loads(invoke("dead-letters", "--json").stdout)] != [loose]
    with Engine(db) as engine:
        assert engine.store.message(loose)["status"] == "ready"


def test_requeue_into_a_finished_run_is_refused(invoke, dead_letters):
    in_run, _ = dead_letters
    result = invoke("dead-letters", "--requeue", in_run)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"durableflow: error: message {in_run}: run ")
    assert "use `durableflow rerun`" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_requeue_unknown_or_not_dead(invoke, dead_letters):
    result = invoke("dead-letters", "--requeue", 999)
    assert result.exit_code == 1
    assert result.stderr == "durableflow: error: message 999 not found\n"
    assert invoke("dead-letters", "--requeue", "x").exit_code == 2


# --- prune ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["30", "2.5", "0s", "inf", "99999999999d", "soon"])
def test_prune_wants_a_duration_with_a_unit(invoke, chain, db, value):
    invoke("run", str(chain))
    result = invoke("prune", "--older-than", value)
    assert result.exit_code == 2 and "Invalid value for '--older-than'" in result.stderr
    if value in ("30", "2.5"):
        assert "has no unit" in result.stderr
    assert json.loads(invoke("runs", "--json").stdout)  # nothing was deleted


def test_prune_with_a_unit_deletes_only_older_runs(invoke, chain):
    invoke("run", str(chain))
    result = invoke("prune", "--older-than", "1d", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == {"deleted_runs": 0}


@pytest.mark.parametrize("bad", [-3600, 0, 0.5, float("inf"), float("nan"), "30 days", None])
def test_engine_prune_refuses_what_would_delete_too_much(db, bad):
    from durableflow.errors import ValidationError
    clock = ManualClock()
    with Engine(db, clock=clock) as engine:
        engine.execute({"workflowId": "p", "nodes": [{"nodeId": "a", "runtimeType": "Noop"}]}, timeout=30)
        with pytest.raises(ValidationError, match="prune older_than"):
            engine.prune(bad)
        clock.advance(2 * 86400)
        assert engine.prune("1d") == 1   # a duration string is fine too


def test_small_mistakes_get_one_clear_line(invoke, chain):
    empty = invoke("runs", db_path="")
    assert empty.exit_code == 1 and empty.stderr.strip() == (
        "durableflow: error: the database path is empty; give durableflow a file path")
    invoke("run", str(chain))
    huge = invoke("dead-letters", "--requeue", "99999999999999999999999")
    assert huge.exit_code == 2 and "Invalid value for '--requeue'" in huge.stderr


def test_doctor_on_a_damaged_file_does_not_send_you_back_to_doctor(invoke, db):
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4080)
    result = invoke("doctor")
    assert result.exit_code != 0 and "durableflow doctor" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
