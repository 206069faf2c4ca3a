"""What the web dashboard reads (statements in sqlite/ui.sql). Each function runs inside one
read transaction (`store.read(fn, ...)`), so a page is one consistent snapshot.

Lists page by cursor, never by OFFSET: a page of runs continues after the (created_at, rowid) of
the last run shown, a timeline before the oldest event shown, dead letters before the last id.
Each page reads the rows it shows from an index in its order, whatever the history holds.
"""

from __future__ import annotations

from durableflow.storage.runs import get_run_row, rerun_of

RUN_COLUMNS = ("run_id", "workflow_id", "workflow_version", "status", "created_at", "started_at",
               "finished_at", "error", "parent_run_id", "parent_node_id", "rerun_of", "rowid")
ATTEMPT_COLUMNS = ("id", "node_id", "iteration", "attempt", "status", "input", "input_length",
                   "output", "output_length", "error", "error_length", "error_type", "port",
                   "waiting_reason", "progress", "progress_message", "worker_id", "created_at",
                   "started_at", "finished_at")
EVENT_COLUMNS = ("seq", "node_id", "type", "data", "at")
CHILD_COLUMNS = ("run_id", "workflow_id", "workflow_version", "status", "parent_node_id",
                 "created_at", "finished_at", "error")
DEAD_LETTER_COLUMNS = ("id", "message_id", "run_id", "kind", "target_node_id", "payload", "error",
                       "attempts", "created_at")
ATTEMPT_FIELDS = ("input", "output", "error")

# Past every stored created_at and rowid: the first page.
_NEWEST = ("~", 2**63 - 1)


def runs_page(conn, *, status: str | None = None, workflow_id: str | None = None,
              top_level: bool = True, before: tuple[str, int] | None = None,
              limit: int = 50) -> list[dict]:
    """Runs newest first, continuing after `before` ((created_at, rowid) of the last run shown)."""
    q = conn.sql.ui
    at, rowid = before or _NEWEST
    args = {"status": status, "workflow_id": workflow_id, "top_level": 1 if top_level else 0,
            "at": at, "rowid": rowid, "limit": limit}
    if workflow_id is not None:
        # One page per version of the workflow (each from runs_by_workflow), merged.
        rows = [r for (version,) in conn.execute(conn.sql.workflows.workflow_versions, (workflow_id,))
                for r in conn.execute(q.runs_page_of_version, {**args, "version": version})]
        rows.sort(key=lambda r: (r[4], r[-1]), reverse=True)
        rows = rows[:limit]
    elif status is not None:
        rows = conn.execute(q.runs_page_in_status, args).fetchall()
    else:
        rows = conn.execute(q.runs_page_top if top_level else q.runs_page_all, args).fetchall()
    return [dict(zip(RUN_COLUMNS, r)) for r in rows]


def runs_by_id_prefix(conn, prefix: str, *, status: str | None = None, workflow_id: str | None = None,
                      top_level: bool = True, before: str | None = None, limit: int = 50) -> list[dict]:
    """Runs whose id starts with `prefix`, newest first (ids are time-ordered), continuing below
    the id `before`. An empty prefix matches nothing: that is the plain listing's job."""
    if not prefix:
        return []
    high = _after_prefix(prefix)
    if before is not None and before < high:
        high = before
    rows = conn.execute(conn.sql.ui.runs_by_id_prefix, {
        "low": prefix, "high": high, "status": status, "workflow_id": workflow_id,
        "top_level": 1 if top_level else 0, "limit": limit}).fetchall()
    return [dict(zip(RUN_COLUMNS, r)) for r in rows]


def _after_prefix(prefix: str) -> str:
    """The least text greater than every text that starts with `prefix`."""
    last = prefix[-1]
    if ord(last) >= 0x10FFFF:
        return prefix + "\U0010ffff"
    return prefix[:-1] + chr(ord(last) + 1)


def workflow_ids(conn) -> list[str]:
    return [r[0] for r in conn.execute(conn.sql.ui.workflow_ids)]


def run_page(conn, run_id: str, *, cap: int = 2000, attempts: int = 2000, events: int = 200,
             events_before: int | None = None, children: int = 50) -> dict:
    """A run's page in one snapshot: its row, every attempt (values cut to `cap` characters), the
    newest `events` events before `events_before` (oldest first), and its first child runs.
    RunNotFound when there is no such run."""
    q = conn.sql.ui
    row = get_run_row(conn, run_id)
    row["rerun_of"] = rerun_of(conn, run_id)
    attempt_rows = [dict(zip(ATTEMPT_COLUMNS, r)) for r in conn.execute(
        q.attempts_of_run, {"run_id": run_id, "cap": cap, "limit": attempts})]
    event_rows = run_events(conn, run_id, before=events_before, limit=events, cap=cap) if events else []
    child_rows, child_count = [], 0
    if children:
        child_rows = [dict(zip(CHILD_COLUMNS, r)) for r in conn.execute(
            q.child_runs, {"run_id": run_id, "limit": children})]
        child_count = (len(child_rows) if len(child_rows) < children
                       else conn.execute(q.child_run_count, {"run_id": run_id}).fetchone()[0])
    return {"run": row, "attempts": attempt_rows, "attempts_limit": attempts, "events": event_rows,
            "children": child_rows, "child_count": child_count}


def run_events(conn, run_id: str, *, before: int | None = None, limit: int = 200,
               cap: int = 2000) -> list[dict]:
    """Up to `limit` of the run's events before seq `before` (all when None), oldest first."""
    rows = conn.execute(conn.sql.ui.run_events_before, {
        "run_id": run_id, "before": 2**63 - 1 if before is None else before, "limit": limit,
        "cap": cap}).fetchall()
    return [dict(zip(EVENT_COLUMNS, r)) for r in reversed(rows)]


def attempt_value(conn, run_id: str, instance_id: int, field: str) -> str | None:
    """The whole stored input, output or error of one attempt of the run; None if there is no
    such attempt, or no such value."""
    if field not in ATTEMPT_FIELDS:
        raise ValueError(f"no attempt field {field!r}")
    row = conn.execute(conn.sql.ui.attempt_values, {"id": instance_id, "run_id": run_id}).fetchone()
    return None if row is None else row[ATTEMPT_FIELDS.index(field)]


def dead_letters_page(conn, *, before: int | None = None, limit: int = 50, cap: int = 500) -> list[dict]:
    """Dead letters newest first, below the id `before`."""
    rows = conn.execute(conn.sql.ui.dead_letters_page, {
        "before": 2**63 - 1 if before is None else before, "limit": limit, "cap": cap})
    return [dict(zip(DEAD_LETTER_COLUMNS, r)) for r in rows]


def breakers(conn, limit: int = 1000) -> tuple[list[str], list[tuple]]:
    """(column names, rows) of the circuit_breakers table, whatever its columns are."""
    cur = conn.execute(conn.sql.ui.breakers_all, {"limit": limit})
    return [d[0] for d in cur.description], cur.fetchall()


def stats(conn, *, since: str, slowest: int = 10) -> dict:
    """Runs by status (all of them, from an index); runs finished per hour since `since`; the
    slowest nodes, on average, of the runs started since `since`."""
    q = conn.sql.ui
    by_hour: dict[str, dict[str, int]] = {}
    for hour, status, count in conn.execute(q.stats_finished_by_hour, {"since": since}):
        by_hour.setdefault(hour, {})[status] = count
    slow = [dict(zip(("workflow_id", "node_id", "completed", "avg_s", "max_s"), r))
            for r in conn.execute(q.stats_slowest_nodes, {"since": since, "limit": slowest})]
    return {"runs_by_status": dict(conn.execute(q.stats_runs_by_status).fetchall()),
            "finished_by_hour": by_hour, "slowest_nodes": slow}


def events_since(conn, run_id: str, after: int, *, limit: int = 500, cap: int = 2000
                 ) -> tuple[list[dict], str | None]:
    """The run's events after seq `after` (oldest first, data cut to `cap` characters) and its
    status, read in one snapshot: when the status is final and no event came, none will."""
    rows = conn.execute(conn.sql.ui.run_events_after, {
        "run_id": run_id, "after": after, "limit": limit, "cap": cap}).fetchall()
    status = conn.execute(conn.sql.ui.run_status, {"run_id": run_id}).fetchone()
    return [dict(zip(EVENT_COLUMNS, r)) for r in rows], None if status is None else status[0]
