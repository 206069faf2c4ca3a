"""History queries: what reading the history costs on a big file, and what one upkeep pass costs
when many runs wait.

    python benchmarks/history_queries.py                    # 100,000 finished runs, 100,000 waiting
    python benchmarks/history_queries.py --quick            # 10,000 and 10,000, well under a minute
    python benchmarks/history_queries.py --db big.db --json hq.json   # build big.db once, reuse it
    python benchmarks/history_queries.py --only history --db big.db   # only the finished-runs part

Part 1, history (a file of N finished 3-node runs; default 100,000, --quick 10,000): the
milliseconds (median of --repeats, default 5, after one warm-up) of

  * each of the thirteen queries of README.md's "History in SQL" (its ```sql blocks, numbered 1..13
    in order, read at start-up from the README beside the durableflow package being measured,
    else this checkout's, or --readme: the figures follow the README as it changes, and an older
    checkout is measured with its own queries); `:run_id` is bound to a run from the middle of
    the file;
  * `SELECT * FROM run_summary ORDER BY created_at DESC LIMIT 20`;
  * the engine's own reads: `engine.runs(limit=20)` (the list `durableflow runs` prints), the
    same with child runs (`runs --all`), for a status and for a workflow (where the engine
    measured has these), `engine.workflows()` (`durableflow workflows`), `engine.get_run(run_id)`,
    `engine.recover()` and opening the file (`Engine(path)`), timed in Python;

and, for each SQL statement, whether its `EXPLAIN QUERY PLAN` has a full `SCAN` (through the
table or through one of its indexes) of runs, node_instances, messages or events; the offending
plan lines are printed (a scan of a partial index says which rows that index holds). A plan is
not the whole story (a SEARCH over a wide index range visits as many rows as a scan), so each
statement's SQLite virtual-machine instructions are counted too, in one more untimed execution
(a progress handler every 100 instructions): "~VM ops", work done whatever the machine. SQL runs
on a plain `sqlite3` connection, as `sqlite3 app.db` would.

Part 2, waiting (a file of W runs that are `running` with their middle node parked on a 1-day
`Wait`, each run with a 2-day timeout; default 100,000, --quick 10,000): what one upkeep pass
costs. Every worker runs upkeep every second: `engine.recover()` plus the statements
`runs_due_resume` and `runs_past_deadline` of the durableflow measured (read from its
storage/sqlite/runs.sql, so each version is measured with its own). Each is timed (median of
repeats) and its plan printed and checked the same way; "one upkeep pass" is the sum of the
three. Timed apart, not in the pass: `runs_next_due` and the queue's `next_visible` (what an idle
`worker --until-idle` reads to know what is due within --max-wait).

How the files are built: a few hundred real runs go through the engine (`Engine.start` and one
worker), on a clock set back in time; their rows (runs, node_instances, messages, events) are then
copied with plain SQL, `INSERT ... SELECT`, in big transactions, with new run ids (the engine's
time-ordered format), node instance, message and event ids moved past the originals (and the ids
inside event data with them), and every timestamp shifted by the clone's offset (wakeAt,
retryAt, `timer until` texts included). Finished runs are spread over the last --days (7), one
in --failed-every (20) a failed run (a Python node that raises, retried once); waiting runs are
spread over the last hour. The result is a file the engine could have written: the build opens
it with `Engine` and compares `get_run` of cloned runs with their originals, runs SQLite's
`quick_check` and `foreign_key_check`, and checks that the ids in events and node rows point into
their own run. `--db FILE` / `--waiting-db FILE` keep the file (built if it does not exist,
reused as it is if it does; `engine.recover()` writes to it, as any worker's start would).
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import re
import secrets
import sqlite3
import statistics
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    environment, format_table, now, progress, scratch_dir, write_json,
)

# --- what is measured (update these when the engine's statements change) ------------------------

# The upkeep statements a worker runs every second, as the durableflow measured has them
# (durableflow/storage/sqlite/runs.sql), each bound to the current time as ISO-8601 text.
UPKEEP = (("upkeep_due_resumes", "upkeep: paused runs due to resume", "runs_due_resume"),
          ("upkeep_past_deadline", "upkeep: runs past their deadline", "runs_past_deadline"))
IDLE = (("runs_next_due", "idle: next pause end or deadline (runs_next_due)", "runs", "runs_next_due"),
        ("next_visible", "idle: next message due (next_visible)", "queue", "next_visible"))


def engine_statement(family: str, name: str) -> str:
    from durableflow.storage.statements import SQLITE
    return getattr(getattr(SQLITE, family), name)


RUN_SUMMARY_LATEST = "SELECT * FROM run_summary ORDER BY created_at DESC LIMIT 20"

# A full SCAN of one of these (directly or through an index) grows with the history.
BIG_TABLES = ("runs", "node_instances", "messages", "events")

README_QUERIES = 13   # an older checkout's README has fewer (10 before issue 15)
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def measured_readme() -> str:
    """The README beside the durableflow package measured (its history queries go with its
    schema), else this checkout's."""
    import durableflow
    beside = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(durableflow.__file__))), "README.md")
    return beside if os.path.exists(beside) else README
NAMES = ("history", "waiting")
LOAD_AT_START = [round(x, 2) for x in os.getloadavg()]

TEMPLATES = 200            # real runs per file, the rest are copies of them


# --- definitions ---------------------------------------------------------------------------------

def chain_def(workflow_id: str = "chain3") -> dict:
    return {"workflowId": workflow_id,
            "nodes": [{"nodeId": f"n{i}", "runtimeType": "Noop"} for i in range(3)],
            "connections": [{"sourceNodeId": f"n{i}", "targetNodeId": f"n{i + 1}"} for i in range(2)]}


def failing_def(workflow_id: str = "chain3-fails") -> dict:
    """n0 -> n1 (raises; retried once, 10 ms later) -> n2: the run fails at n1."""
    return {"workflowId": workflow_id,
            "nodes": [{"nodeId": "n0", "runtimeType": "Noop"},
                      {"nodeId": "n1", "runtimeType": "Python", "script": "raise RuntimeError('boom')",
                       "retry": {"strategy": "fixed", "maxAttempts": 2, "initialDelay": "10ms"}},
                      {"nodeId": "n2", "runtimeType": "Noop"}],
            "connections": [{"sourceNodeId": "n0", "targetNodeId": "n1"},
                            {"sourceNodeId": "n1", "targetNodeId": "n2"}]}


def waiting_def(workflow_id: str = "wait3", duration: str = "1d", timeout: str = "2d") -> dict:
    """n0 -> n1 (Wait `duration`) -> n2, the run timing out after `timeout`: it waits at n1."""
    return {"workflowId": workflow_id, "timeout": timeout,
            "nodes": [{"nodeId": "n0", "runtimeType": "Noop"},
                      {"nodeId": "n1", "runtimeType": "Wait", "duration": duration},
                      {"nodeId": "n2", "runtimeType": "Noop"}],
            "connections": [{"sourceNodeId": "n0", "targetNodeId": "n1"},
                            {"sourceNodeId": "n1", "targetNodeId": "n2"}]}


# --- building the files --------------------------------------------------------------------------

def offset_clock(seconds: float):
    """The engine's wall clock, set back by `seconds` (so copies can be spread up to now)."""
    from durableflow import Clock

    class OffsetClock(Clock):
        def now(self) -> float:
            return time.time() - seconds

    return OffsetClock()


def _plain(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    conn.execute("PRAGMA busy_timeout = 60000")
    return conn


def _poll(conn: sqlite3.Connection, sql: str, target: int, timeout: float, what: str) -> None:
    deadline = now() + timeout
    while conn.execute(sql).fetchone()[0] != target:
        if now() > deadline:
            raise TimeoutError(f"{what}: not reached after {timeout}s")
        time.sleep(0.01)


def make_templates(path: str, kind: str, count: int, *, back_s: float, failed_every: int = 0) -> None:
    """Run `count` real runs through the engine on a clock `back_s` seconds behind: finished
    3-node runs (one in `failed_every` a failing one) or runs parked on a 1-day Wait."""
    from durableflow import Engine
    engine = Engine(path, clock=offset_clock(back_s))
    try:
        if kind == "finished":
            engine.register(chain_def())
            engine.register(failing_def())
            for i in range(count):
                fails = failed_every and i % failed_every == failed_every - 1
                engine.start("chain3-fails" if fails else "chain3")
            done_sql = ("SELECT count(*) FROM runs WHERE status IN "
                        "('pending', 'running', 'paused', 'compensating')")
            target = 0
        else:
            engine.register(waiting_def())
            for _ in range(count):
                engine.start("wait3")
            done_sql = "SELECT count(*) FROM node_instances WHERE node_id = 'n1' AND status = 'waiting'"
            target = count
        conn = _plain(path)
        try:
            with engine.worker(concurrency=1):
                _poll(conn, done_sql, target, 300, f"{count} {kind} template runs")
        finally:
            conn.close()
    finally:
        engine.close()


# Every stored timestamp of the copied rows moves by the clone's offset (:d, an SQLite modifier
# such as '+3600.000 seconds'); strftime keeps the engine's text form (milliseconds, Z).
def _sh(col: str) -> str:
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', {col}, m.d)"


_RUNS_COPY = f"""
INSERT INTO runs (run_id, workflow_id, workflow_version, parent_run_id, parent_node_id, status,
                  inputs, variables, outputs, error, priority, idempotency_key, paused_until,
                  deadline_at, retries_used, created_at, started_at, finished_at)
SELECT m.new, r.workflow_id, r.workflow_version, NULL, NULL, r.status, r.inputs, r.variables,
       r.outputs, r.error, r.priority, NULL, {_sh('r.paused_until')}, {_sh('r.deadline_at')},
       r.retries_used, {_sh('r.created_at')}, {_sh('r.started_at')}, {_sh('r.finished_at')}
FROM clone_map m JOIN runs r ON r.run_id = m.old
WHERE m.k BETWEEN :k0 AND :k1 ORDER BY m.new
"""

_NODES_COPY = f"""
INSERT INTO node_instances (id, run_id, node_id, iteration, attempt, status, message_id, input,
                            output, error, error_type, port, waiting_reason, progress,
                            progress_message, worker_id, created_at, started_at, finished_at)
SELECT n.id + m.k * :ni_stride, m.new, n.node_id, n.iteration, n.attempt, n.status,
       n.message_id + m.k * :msg_stride, n.input, n.output, n.error, n.error_type, n.port,
       CASE WHEN n.waiting_reason LIKE 'timer until %'
            THEN 'timer until ' || {_sh('substr(n.waiting_reason, 13)')}
            ELSE n.waiting_reason END,
       n.progress, n.progress_message, n.worker_id,
       {_sh('n.created_at')}, {_sh('n.started_at')}, {_sh('n.finished_at')}
FROM clone_map m JOIN node_instances n ON n.run_id = m.old
WHERE m.k BETWEEN :k0 AND :k1 ORDER BY 1
"""

_MESSAGES_COPY = f"""
INSERT INTO messages (id, run_id, kind, target_node_id, iteration, payload, status, priority,
                      visible_at, held, attempts, max_attempts, last_error, created_at, finished_at)
SELECT g.id + m.k * :msg_stride, m.new, g.kind, g.target_node_id, g.iteration,
       CASE WHEN json_extract(g.payload, '$.wakeAt') IS NOT NULL
            THEN json_set(g.payload, '$.wakeAt', json_extract(g.payload, '$.wakeAt') + m.dms / 1000.0)
            ELSE g.payload END,
       g.status, g.priority, {_sh('g.visible_at')}, g.held, g.attempts, g.max_attempts,
       g.last_error, {_sh('g.created_at')}, {_sh('g.finished_at')}
FROM clone_map m JOIN messages g ON g.run_id = m.old
WHERE m.k BETWEEN :k0 AND :k1 ORDER BY 1
"""

# node.* events carry a node instance id, message.* events a message id: both move with the copy.
_EVENTS_COPY = f"""
INSERT INTO events (seq, run_id, node_id, type, data, at)
SELECT seq, run_id, node_id, type,
       CASE WHEN json_extract(d, '$.retryAt') IS NOT NULL
            THEN json_set(d, '$.retryAt', strftime('%Y-%m-%dT%H:%M:%fZ', json_extract(d, '$.retryAt'), md))
            WHEN json_extract(d, '$.reason') LIKE 'timer until %'
            THEN json_set(d, '$.reason', 'timer until ' ||
                          strftime('%Y-%m-%dT%H:%M:%fZ', substr(json_extract(d, '$.reason'), 13), md))
            ELSE d END,
       at
FROM (
    SELECT e.seq + m.k * :ev_stride AS seq, m.new AS run_id, e.node_id, e.type, m.d AS md,
           CASE WHEN e.type LIKE 'node.%' AND json_extract(e.data, '$.id') IS NOT NULL
                THEN json_set(e.data, '$.id', json_extract(e.data, '$.id') + m.k * :ni_stride)
                WHEN e.type LIKE 'message.%' AND json_extract(e.data, '$.id') IS NOT NULL
                THEN json_set(e.data, '$.id', json_extract(e.data, '$.id') + m.k * :msg_stride)
                ELSE e.data END AS d,
           {_sh('e.at')} AS at
    FROM clone_map m JOIN events e ON e.run_id = m.old
    WHERE m.k BETWEEN :k0 AND :k1)
ORDER BY seq
"""

KNOWN_EVENT_PREFIXES = ("run.", "node.", "message.")


def clone_runs(path: str, total: int, span_s: float, batch_runs: int = 10_000) -> dict:
    """Copy the runs in `path` until it holds `total`: copy k (1 .. copies-1) shifted by
    k * span_s / (copies - 1), so the copies reach span_s past the originals."""
    conn = _plain(path)
    try:
        conn.execute("PRAGMA synchronous = OFF")          # a scratch build: durability not needed
        conn.execute("PRAGMA cache_size = -262144")       # 256 MiB
        conn.execute("PRAGMA temp_store = MEMORY")
        tmpl = conn.execute("SELECT run_id, parent_run_id, idempotency_key FROM runs ORDER BY run_id").fetchall()
        if any(p is not None or i is not None for _, p, i in tmpl):
            raise RuntimeError("template runs must have no parent and no idempotency key")
        types = {t for (t,) in conn.execute("SELECT DISTINCT type FROM events WHERE run_id IS NOT NULL")}
        odd = sorted(t for t in types if not t.startswith(KNOWN_EVENT_PREFIXES))
        if odd:
            raise RuntimeError(f"template events of unexpected types: {odd}")
        if conn.execute("SELECT count(*) FROM leases").fetchone()[0]:
            raise RuntimeError("template runs hold leases")
        for t in ("joins", "join_inputs", "signals", "dead_letters"):
            if conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]:
                raise RuntimeError(f"template runs have rows in {t}: the copy does not handle them")
        strides = {
            "ni_stride": conn.execute("SELECT max(id) FROM node_instances").fetchone()[0],
            "msg_stride": conn.execute("SELECT max(id) FROM messages").fetchone()[0],
            "ev_stride": conn.execute("SELECT max(seq) FROM events").fetchone()[0],
        }
        t_count = len(tmpl)
        copies = math.ceil(total / t_count)               # copy 0 is the templates themselves
        conn.execute("CREATE TEMP TABLE clone_map (new TEXT PRIMARY KEY, old TEXT NOT NULL, "
                     "k INTEGER NOT NULL, d TEXT NOT NULL, dms INTEGER NOT NULL)")
        conn.execute("CREATE INDEX temp.clone_map_k ON clone_map (k)")
        per_txn = max(1, batch_runs // t_count)
        made = t_count
        k = 1
        while k < copies:
            k1 = min(copies - 1, k + per_txn - 1)
            rows = []
            for kk in range(k, k1 + 1):
                dms = round(kk * span_s * 1000 / (copies - 1))    # the last copy: span_s later
                take = min(t_count, total - made)
                for run_id, _, _ in tmpl[:take]:
                    ms = int(run_id[:12], 16) + dms
                    rows.append((f"{ms:012x}{secrets.token_hex(10)}", run_id, kk,
                                 f"+{dms / 1000:.3f} seconds", dms))
                made += take
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT INTO clone_map VALUES (?, ?, ?, ?, ?)", rows)
                params = {"k0": k, "k1": k1, **strides}
                for sql in (_RUNS_COPY, _NODES_COPY, _MESSAGES_COPY, _EVENTS_COPY):
                    conn.execute(sql, {p: v for p, v in params.items() if f":{p}" in sql})
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            k = k1 + 1
            if made % 50_000 < per_txn * t_count or made >= total:
                progress(f"  copied: {made:,} / {total:,} runs")
        sample = conn.execute("SELECT new, old FROM clone_map ORDER BY k DESC, new LIMIT 3").fetchall()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {"templates": t_count, "copies": copies, "sample_clones": sample}
    finally:
        conn.close()


# Ids that must point into their own run after the copy (each count must be 0).
_DANGLING = {
    "node events naming another run's node instance": """
        SELECT count(*) FROM events e WHERE e.run_id IS NOT NULL AND e.type LIKE 'node.%'
        AND json_extract(e.data, '$.id') IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM node_instances n WHERE n.id = json_extract(e.data, '$.id') AND n.run_id = e.run_id)""",
    "message events naming another run's message": """
        SELECT count(*) FROM events e WHERE e.run_id IS NOT NULL AND e.type LIKE 'message.%'
        AND json_extract(e.data, '$.id') IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM messages m WHERE m.id = json_extract(e.data, '$.id') AND m.run_id = e.run_id)""",
    "node instances whose message is another run's": """
        SELECT count(*) FROM node_instances n WHERE n.message_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM messages m WHERE m.id = n.message_id AND m.run_id = n.run_id)""",
}


def _shape(run) -> tuple:
    """What a copy must share with its original (ids and times aside; durations included)."""
    nodes = sorted((n.node_id, n.iteration, n.attempt, n.status, n.input, n.output, n.error, n.error_type,
                    n.port, n.waiting_reason is None, None if n.duration is None else round(n.duration, 3))
                   for n in run.nodes)
    return (run.workflow_id, run.workflow_version, run.status, run.inputs, run.outputs, run.error,
            run.variables, run.paused_until is None, nodes)


def verify(path: str, pairs: list[tuple[str, str]]) -> dict:
    """Open the file with the engine and compare cloned runs with their originals; run SQLite's
    own checks. Raises if anything differs."""
    from durableflow import Engine
    problems = []
    with Engine(path) as engine:
        for new, old in pairs:
            a, b = engine.get_run(new), engine.get_run(old)
            sa, sb = _shape(a), _shape(b)
            if sa != sb:
                problems.append(f"run {new} (copy of {old}): {sa} != {sb}")
    conn = _plain(path)
    try:
        t0 = now()
        qc = [r[0] for r in conn.execute("PRAGMA quick_check")]
        fk = conn.execute("PRAGMA foreign_key_check").fetchall()
        dangling = {what: conn.execute(sql).fetchone()[0] for what, sql in _DANGLING.items()}
        checks_s = now() - t0
    finally:
        conn.close()
    if qc != ["ok"]:
        problems.append(f"quick_check: {qc[:5]}")
    if fk:
        problems.append(f"foreign_key_check: {len(fk)} rows, e.g. {fk[:3]}")
    problems += [f"{n:,} {what}" for what, n in dangling.items() if n]
    if problems:
        raise RuntimeError("the built file is not one the engine could have written: " + "; ".join(problems))
    return {"runs_compared": len(pairs), "quick_check": "ok", "foreign_key_check": "ok",
            "ids_within_their_run": "ok", "checks_s": round(checks_s, 2)}


def build_db(path: str, kind: str, total: int, *, span_s: float, failed_every: int = 0,
             templates: int = TEMPLATES) -> dict:
    """A file of `total` runs of `kind` ('finished' or 'waiting'): real template runs, then copies."""
    t0 = now()
    templates = max(1, min(templates, total))
    progress(f"building {path}: {total:,} {kind} runs ({templates} real, the rest copies)")
    make_templates(path, kind, templates, back_s=span_s + 60, failed_every=failed_every)
    t1 = now()
    info = clone_runs(path, total, span_s) if total > templates else \
        {"templates": templates, "copies": 1, "sample_clones": []}
    t2 = now()
    pairs = [tuple(p) for p in info.pop("sample_clones")]
    conn = _plain(path)
    try:   # a failed run too, if there is one
        row = conn.execute("SELECT run_id FROM runs WHERE status = 'failed' ORDER BY run_id DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    checked = verify(path, pairs) if pairs else {"runs_compared": 0}
    if row is not None and pairs:
        checked["failed_run_opened"] = engine_status(path, row[0])
    info.update(kind=kind, runs=total, templates_s=round(t1 - t0, 2), copy_s=round(t2 - t1, 2),
                seconds=round(now() - t0, 2), verified=checked,
                db_mb=round(os.path.getsize(path) / 2**20, 1))
    progress(f"  built in {info['seconds']} s ({info['db_mb']} MB); copies verified: {checked}")
    return info


def engine_status(path: str, run_id: str) -> str:
    from durableflow import Engine
    with Engine(path) as engine:
        return engine.get_run(run_id).status


def count_runs(path: str) -> dict:
    conn = _plain(path)
    try:
        return dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
    finally:
        conn.close()


def ensure_db(path: str | None, workdir: str, name: str, kind: str, total: int, *, span_s: float,
              failed_every: int = 0) -> tuple[str, dict]:
    if path and os.path.exists(path):
        progress(f"reusing {path} as it is")
        return path, {"kind": kind, "reused": True, "runs_by_status": count_runs(path),
                      "db_mb": round(os.path.getsize(path) / 2**20, 1)}
    target = path or os.path.join(workdir, name)
    info = build_db(target, kind, total, span_s=span_s, failed_every=failed_every)
    info["reused"] = False
    info["runs_by_status"] = count_runs(target)
    return target, info


# --- the queries ---------------------------------------------------------------------------------

def readme_queries(readme: str = README) -> list[dict]:
    """The ```sql blocks of README.md, in order; each labelled by its leading `-- N. ...` comment."""
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"^```sql[ \t]*\n(.*?)^```", text, flags=re.S | re.M)
    out = []
    for i, block in enumerate(blocks, 1):
        m = re.match(r"\s*--\s*(\d+)\.\s*(.*)", block)
        title = m.group(2).strip() if m else block.strip().splitlines()[0]
        short = re.split(r"\?|\.(?:\s|$)| \(|:", title, maxsplit=1)[0].strip()
        short += "?" if title[len(short):].startswith("?") else ""
        out.append({"key": f"readme_{i}", "number": i, "title": title, "short": short,
                    "sql": block.strip()})
    return out


_ALIAS_RE = re.compile(r"\b(?:FROM|JOIN)\s+([A-Za-z_]\w*)(?:\s+(?:AS\s+)?([A-Za-z_]\w*))?", re.I)
_KEYWORDS = {"where", "on", "join", "left", "inner", "cross", "group", "order", "limit", "using",
             "natural", "outer", "having", "union", "indexed", "not", "as", "window", "select"}


def alias_map(conn: sqlite3.Connection, sql: str) -> dict[str, str]:
    """Plan lines name tables by alias ('SCAN r'): map aliases to tables, views' bodies included."""
    texts = [sql] + [r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'view'")]
    out: dict[str, str] = {}
    for text in texts:
        for table, alias in _ALIAS_RE.findall(text):
            out.setdefault(table, table)
            if alias and alias.lower() not in _KEYWORDS:
                out.setdefault(alias, table)
    return out


def plan_of(conn: sqlite3.Connection, sql: str, params) -> tuple[list[str], list[str]]:
    """(plan lines, those that fully SCAN one of BIG_TABLES)."""
    rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    aliases = alias_map(conn, sql)
    partial = {name: re.split(r"\bWHERE\b", text, flags=re.I)[1].strip().rstrip(";")
               for name, text in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                              "AND sql IS NOT NULL")
               if re.search(r"\bWHERE\b", text, flags=re.I)}
    lines, scans = [], []
    # An index read in its order up to a LIMIT (no sort) is a SCAN in the plan, but it stops early.
    ordered = (re.search(r"\bLIMIT\b", sql, flags=re.I) is not None
               and not any(r[3] == "USE TEMP B-TREE FOR ORDER BY" for r in rows))
    for _id, _parent, _notused, detail in rows:
        lines.append(detail)
        m = re.match(r"SCAN (\w+)(?: USING (?:COVERING )?INDEX (\w+))?", detail)
        if not m:
            continue
        table = aliases.get(m.group(1), m.group(1))
        if table not in BIG_TABLES:
            continue
        notes = [] if table == m.group(1) else [f"{m.group(1)} = {table}"]
        if m.group(2) in partial:   # a partial index holds only its rows: say which
            notes.append(f"partial index: rows WHERE {partial[m.group(2)]}")
        if m.group(2) and ordered:
            notes.append("in index order, up to the LIMIT")
        scans.append(detail + (f"  ({'; '.join(notes)})" if notes else ""))
    return lines, scans


def bind(sql: str, values: dict) -> dict:
    names = set(re.findall(r"(?<!:):([A-Za-z_]\w*)", re.sub(r"--[^\n]*", "", sql)))
    missing = names - set(values)
    if missing:
        raise KeyError(f"no value for {', '.join(sorted(missing))}")
    return {n: values[n] for n in names}


def time_ms(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[list[float], Any]:
    result = None
    for _ in range(warmup):
        result = fn()
    samples = []
    for _ in range(repeats):
        t0 = now()
        result = fn()
        samples.append((now() - t0) * 1000)
    return samples, result


def _row(key: str, label: str, samples: list[float], *, rows=None, plan=None, scans=None,
         sql: str | None = None) -> dict:
    out = {"key": key, "label": label, "ms": round(statistics.median(samples), 3),
           "samples_ms": [round(s, 3) for s in samples], "rows": rows}
    if sql is not None:
        out.update(sql=sql, plan=plan, full_scans=scans)
    return out


VM_STEP = 100


def vm_ops(conn: sqlite3.Connection, sql: str, params) -> int:
    """SQLite virtual-machine instructions one execution takes (to VM_STEP), counted with a
    progress handler in a separate, untimed execution: the work done, whatever the plan says
    (a SEARCH over a wide index range is no SCAN, and may cost as much)."""
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    conn.set_progress_handler(tick, VM_STEP)
    try:
        conn.execute(sql, params).fetchall()
    finally:
        conn.set_progress_handler(None, VM_STEP)
    return count[0] * VM_STEP


def sql_row(conn: sqlite3.Connection, key: str, label: str, sql: str, params, repeats: int) -> dict:
    plan, scans = plan_of(conn, sql, params)
    samples, rows = time_ms(lambda: conn.execute(sql, params).fetchall(), repeats)
    ops = vm_ops(conn, sql, params)
    progress(f"  {label}: {statistics.median(samples):,.1f} ms, {len(rows):,} rows, ~{ops:,} VM ops"
             + (f"; full scan: {' | '.join(scans)}" if scans else ""))
    out = _row(key, label, samples, rows=len(rows), plan=plan, scans=scans, sql=sql)
    out["vm_ops"] = ops
    return out


def call_row(key: str, label: str, fn: Callable[[], Any], repeats: int, warmup: int = 1) -> dict:
    samples, result = time_ms(fn, repeats, warmup)
    n = len(result) if isinstance(result, (list, tuple)) else None
    progress(f"  {label}: {statistics.median(samples):,.1f} ms")
    return _row(key, label, samples, rows=n)


def iso_now() -> str:
    """Now as the engine stores time: ISO-8601 UTC with milliseconds."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def middle_run(conn: sqlite3.Connection, status: str | None = None) -> str:
    where = "WHERE status = ?" if status else ""
    args = (status,) if status else ()
    n = conn.execute(f"SELECT count(*) FROM runs {where}", args).fetchone()[0]
    return conn.execute(f"SELECT run_id FROM runs {where} ORDER BY run_id LIMIT 1 OFFSET ?",
                        (*args, n // 2)).fetchone()[0]


def measure_history(path: str, repeats: int, readme: str | None = None) -> dict:
    from durableflow import Engine
    Engine(path).close()   # an older file migrates forward first, as any engine's opening does
    conn = _plain(path)
    rows = []
    try:
        run_id = middle_run(conn, "completed")
        values = {"run_id": run_id}
        readme = readme or measured_readme()
        progress(f"  README queries from {readme}")
        queries = readme_queries(readme)
        if len(queries) != README_QUERIES:
            progress(f"WARNING: README.md has {len(queries)} ```sql blocks, not {README_QUERIES}")
        for q in queries:
            rows.append(sql_row(conn, q["key"], f"README {q['number']}. {q['short']}", q["sql"],
                                bind(q["sql"], values), repeats))
        rows.append(sql_row(conn, "run_summary_latest", RUN_SUMMARY_LATEST, RUN_SUMMARY_LATEST, (), repeats))
    finally:
        conn.close()
    engines = []
    rows.append(call_row("engine_open", "Engine(path) (open an existing file)",
                         lambda: engines.append(Engine(path)) or engines[-1], repeats))
    for e in engines[1:]:
        e.close()
    engine = engines[0]
    try:
        rows.append(call_row("engine_runs", "engine.runs(limit=20)  (durableflow runs)",
                             lambda: engine.runs(limit=20), repeats))
        if "top_level" in inspect.signature(engine.runs).parameters:
            rows.append(call_row("engine_runs_all", "engine.runs(limit=20, top_level=False)  (runs --all)",
                                 lambda: engine.runs(limit=20, top_level=False), repeats))
        rows.append(call_row("engine_runs_status", "engine.runs(status='failed', limit=20)  (runs --status failed)",
                             lambda: engine.runs(status="failed", limit=20), repeats))
        rows.append(call_row("engine_runs_workflow", "engine.runs(workflow_id='chain3', limit=20)  (runs --workflow)",
                             lambda: engine.runs(workflow_id="chain3", limit=20), repeats))
        rows.append(call_row("engine_workflows", "engine.workflows()  (durableflow workflows)",
                             engine.workflows, repeats))
        rows.append(call_row("engine_get_run", "engine.get_run(run_id)  (durableflow status)",
                             lambda: engine.get_run(run_id), repeats))
        rows.append(call_row("engine_recover", "engine.recover()", engine.recover, repeats))
    finally:
        engine.close()
    return {"run_id": run_id, "rows": rows}


def measure_waiting(path: str, repeats: int) -> dict:
    from durableflow import Engine
    Engine(path).close()   # an older file migrates forward first, as any engine's opening does
    conn = _plain(path)
    rows, idle = [], []
    try:
        now_s = iso_now()
        for key, label, name in UPKEEP:
            rows.append(sql_row(conn, key, label, engine_statement("runs", name), (now_s,), repeats))
        for key, label, family, name in IDLE:
            idle.append(sql_row(conn, key, label, engine_statement(family, name), (), repeats))
        waiting = conn.execute("SELECT count(*) FROM node_instances WHERE status = 'waiting'").fetchone()[0]
        parked = conn.execute("SELECT count(*) FROM messages WHERE status = 'ready' AND visible_at > ?",
                              (now_s,)).fetchone()[0]
        deadlines = conn.execute("SELECT count(*) FROM runs WHERE deadline_at IS NOT NULL").fetchone()[0]
    finally:
        conn.close()
    with Engine(path) as engine:
        rows.append(call_row("upkeep_recover", "upkeep: engine.recover()", engine.recover, repeats))
    total = sum(r["ms"] for r in rows)
    return {"waiting_nodes": waiting, "parked_messages": parked, "runs_with_deadline": deadlines,
            "rows": rows + idle, "upkeep_pass_ms": round(total, 3)}


# --- output ----------------------------------------------------------------------------------------

def _ms(x: float) -> str:
    return f"{x:,.1f}" if x >= 1 else f"{x:.3f}"


def table(rows: list[dict], show_plan: bool = False) -> str:
    """show_plan: the last column gives the whole plan where nothing is fully scanned."""
    out = []
    for r in rows:
        scans = r.get("full_scans")
        if scans is None:
            last = "n/a"
        elif scans:
            last = "; ".join(scans)
        else:
            last = "- (plan: " + "; ".join(r["plan"]) + ")" if show_plan else "-"
        out.append([r["label"], _ms(r["ms"]), "" if r["rows"] is None else f"{r['rows']:,}",
                    "" if r.get("vm_ops") is None else (f"{r['vm_ops']:,}" if r["vm_ops"] else f"<{VM_STEP}"), last])
    return format_table(["query", "median ms", "rows", "~VM ops",
                         "full SCAN of runs/node_instances/messages/events"], out, "lrrrl")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller files (10,000 runs each)")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(NAMES)}")
    p.add_argument("--runs", type=int, help="finished runs (default 100000; quick 10000)")
    p.add_argument("--waiting", type=int, help="waiting runs (default 100000; quick 10000)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up (default 5)")
    p.add_argument("--days", type=float, default=7.0, help="finished runs are spread over the last DAYS")
    p.add_argument("--failed-every", type=int, default=20, help="one finished run in N is a failed one")
    p.add_argument("--db", metavar="FILE", help="the finished-runs file: reused if it exists, else built and kept")
    p.add_argument("--waiting-db", metavar="FILE", help="the waiting-runs file: reused if it exists, else built and kept")
    p.add_argument("--readme", metavar="FILE", help="take the history queries from this README "
                                                    "(default: the one beside the durableflow measured)")
    p.add_argument("--json", metavar="FILE", help="write the JSON document here ('-' = stdout)")
    p.add_argument("--dir", help="folder for the temporary database files (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the temporary database files")
    args = p.parse_args(argv)
    args.runs = args.runs or (10_000 if args.quick else 100_000)
    args.waiting = args.waiting or (10_000 if args.quick else 100_000)
    only = NAMES if not args.only else tuple(x.strip() for x in args.only.split(","))
    if set(only) - set(NAMES):
        p.error(f"--only: choose from {', '.join(NAMES)}")

    import durableflow
    env = environment() | {"durableflow": durableflow.__file__, "durableflow_git": git_state(durableflow.__file__)}
    results: dict[str, Any] = {}
    builds: dict[str, Any] = {}
    errors: dict[str, str] = {}
    t_start = now()
    with scratch_dir(args.dir, keep=args.keep, prefix="dfbench-history-") as workdir:
        if "history" in only:
            progress("== history")
            try:
                path, builds["history"] = ensure_db(args.db, workdir, "finished.db", "finished", args.runs,
                                                    span_s=args.days * 86400, failed_every=args.failed_every)
                results["history"] = measure_history(path, args.repeats, args.readme)
            except Exception as exc:
                traceback.print_exc()
                errors["history"] = f"{type(exc).__name__}: {exc}"
        if "waiting" in only:
            progress("== waiting")
            try:
                path, builds["waiting"] = ensure_db(args.waiting_db, workdir, "waiting.db", "waiting",
                                                    args.waiting, span_s=3600)
                results["waiting"] = measure_waiting(path, args.repeats)
            except Exception as exc:
                traceback.print_exc()
                errors["waiting"] = f"{type(exc).__name__}: {exc}"
        if args.keep:
            progress(f"database files kept in {workdir}")

    doc = {
        "benchmark": "history_queries",
        "environment": env,
        "loadavg_at_start": LOAD_AT_START, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "settings": {"quick": args.quick, "runs": args.runs, "waiting_runs": args.waiting,
                     "repeats": args.repeats, "warmup": 1, "days": args.days,
                     "failed_every": args.failed_every, "db": args.db, "waiting_db": args.waiting_db,
                     "readme": args.readme or measured_readme(),
                     "upkeep_statements": [engine_statement("runs", name) for _k, _l, name in UPKEEP]},
        "builds": builds,
        "results": results,
        "errors": errors,
        "seconds": round(now() - t_start, 1),
    }
    write_json(doc, args.json if args.json and args.json != "-" else None)
    if "history" in results:
        b = builds.get("history", {})
        print(f"\nHistory: {sum(b.get('runs_by_status', {}).values()):,} runs "
              f"({', '.join(f'{v:,} {k}' for k, v in b.get('runs_by_status', {}).items())}), "
              f"{b.get('db_mb')} MB; :run_id = {results['history']['run_id']}; "
              f"median of {args.repeats} after a warm-up")
        print(table(results["history"]["rows"]))
    if "waiting" in results:
        w, b = results["waiting"], builds.get("waiting", {})
        print(f"\nOne upkeep pass with {sum(b.get('runs_by_status', {}).values()):,} runs "
              f"({', '.join(f'{v:,} {k}' for k, v in b.get('runs_by_status', {}).items())}; "
              f"{w.get('runs_with_deadline', 0):,} with a deadline; {w['waiting_nodes']:,} nodes waiting, "
              f"{w['parked_messages']:,} messages parked), "
              f"{b.get('db_mb')} MB: {_ms(w['upkeep_pass_ms'])} ms in all")
        print(table(w["rows"], show_plan=True))
    for key in ("history", "waiting"):
        if key in builds and not builds[key].get("reused"):
            b = builds[key]
            print(f"({key} file built in {b['seconds']} s: {b['templates']} real runs in "
                  f"{b['templates_s']} s, copies in {b['copy_s']} s; verified: {b['verified']})")
    print(f"\n{env_line(env)}")
    print(f"load average (1/5/15 min) at start {LOAD_AT_START}, at end {doc['loadavg_at_end']}; "
          f"{doc['seconds']} s")
    for k, v in errors.items():
        print(f"ERROR {k}: {v}")
    return 1 if errors else 0


def env_line(env: dict) -> str:
    return (f"environment: Python {env.get('python')} ({env.get('implementation')}), SQLite {env.get('sqlite')}, "
            f"{env.get('cpus')} x {env.get('cpu', env.get('machine'))}, {env.get('platform')}; "
            f"durableflow from {env.get('durableflow')}"
            + (f" ({env['durableflow_git']})" if env.get("durableflow_git") else ""))


def git_state(module_file: str) -> str | None:
    """The commit of the durableflow being measured (and whether its tree has changes)."""
    folder = os.path.dirname(os.path.dirname(os.path.abspath(module_file)))
    try:
        head = subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "--no-optional-locks", "-C", folder, "status", "--porcelain", "--", "durableflow"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
