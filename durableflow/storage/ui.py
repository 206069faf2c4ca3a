"""What the web dashboard reads (statements in sqlite/ui.sql). Each function runs inside one
read transaction (`store.read(fn, ...)`), so a page is one consistent snapshot.

Lists page by cursor, never by OFFSET: a page of runs continues after the (created_at, rowid) of
the last run read, a timeline before the oldest event shown, dead letters before the last id.
Each page reads the rows it shows from an index in its order, whatever the history holds, and
no more than SCAN_CAP rows it does not show.
"""

from __future__ import annotations

from dataclasses import dataclass

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
CHUNK = 500         # at most this many rows read at a time from an index, filtered here
SCAN_CAP = 5000     # rows one page may read without finding what it shows: then it stops there


@dataclass
class RunsPage:
    """Up to `limit` runs, newest first. `next` is where the following page starts (None at the
    end); `stopped` says the page stopped at SCAN_CAP rows read, short of `limit`."""
    runs: list[dict]
    next: tuple | str | None
    stopped: bool = False


def runs_page(conn, *, status: str | None = None, workflow_id: str | None = None,
              top_level: bool = True, before: tuple[str, int] | None = None,
              limit: int = 50) -> RunsPage:
    """Runs newest first, continuing after `before` ((created_at, rowid) of the last run read).
    Each list comes from the index that holds its order: runs_top_level, runs_by_created,
    runs_by_status for a status, runs_by_workflow for a workflow (one list per version,
    merged). What the index does not hold (a status within a workflow, top-level runs only
    within a status) is filtered here."""
    q = conn.sql.ui

    def keep(r: tuple) -> bool:
        return (status is None or r[3] == status) and (not top_level or r[8] is None)

    if workflow_id is not None:
        walks = [_walk(conn, q.runs_page_of_version, {"workflow_id": workflow_id, "version": version},
                       keep, before, limit + 1)
                 for (version,) in conn.execute(conn.sql.workflows.workflow_versions, (workflow_id,))]
        rows = sorted((r for found, _ in walks for r in found), key=_position, reverse=True)
        stops = [stop for _, stop in walks if stop is not None]
        if stops:   # one version's walk stopped there: older rows of the others would skip its rest
            rows = [r for r in rows if _position(r) > max(stops)]
        stop = max(stops) if stops and len(rows) <= limit else None
    else:
        sql = (q.runs_page_in_status if status is not None
               else q.runs_page_top if top_level else q.runs_page_all)
        rows, stop = _walk(conn, sql, {"status": status}, keep, before, limit + 1)
    runs = [dict(zip(RUN_COLUMNS, r)) for r in rows[:limit]]
    if len(rows) > limit:
        return RunsPage(runs, _position(rows[limit - 1]))
    return RunsPage(runs, stop, stop is not None)


def _position(row: tuple) -> tuple[str, int]:
    return row[4], row[-1]      # created_at, rowid


def _walk(conn, sql: str, args: dict, keep, before: tuple[str, int] | None, wanted: int):
    """Rows of `sql` that `keep` accepts, read CHUNK at a time from `before` on, until `wanted`
    are found, the index ends, or SCAN_CAP rows were read: then also where it stopped."""
    at, rowid = before or _NEWEST
    found: list[tuple] = []
    read, size = 0, wanted      # the first read is the page itself: most filters keep every row
    while True:
        chunk = conn.execute(sql, {**args, "at": at, "rowid": rowid, "limit": size}).fetchall()
        read += len(chunk)
        for row in chunk:
            if keep(row):
                found.append(row)
                if len(found) == wanted:
                    return found, None
        if len(chunk) < size:
            return found, None
        at, rowid = _position(chunk[-1])
        if read >= SCAN_CAP:
            return found, (at, rowid)
        size = min(CHUNK, SCAN_CAP - read, size * 4)


def runs_by_id_prefix(conn, prefix: str, *, status: str | None = None, workflow_id: str | None = None,
                      top_level: bool = True, before: str | None = None, limit: int = 50) -> RunsPage:
    """Runs whose id starts with `prefix`, newest first (ids are time-ordered), continuing below
    the id `before`; filtered here, a chunk at a time, as runs_page is. An empty prefix matches
    nothing: that is the plain listing's job."""
    if not prefix:
        return RunsPage([], None)
    high = _after_prefix(prefix)
    if before is not None and before < high:
        high = before
    found: list[tuple] = []
    read, size = 0, limit + 1
    while True:
        chunk = conn.execute(conn.sql.ui.runs_by_id_prefix,
                             {"low": prefix, "high": high, "limit": size}).fetchall()
        read += len(chunk)
        for row in chunk:
            if ((status is None or row[3] == status) and (workflow_id is None or row[1] == workflow_id)
                    and (not top_level or row[8] is None)):
                found.append(row)
                if len(found) > limit:
                    return RunsPage([dict(zip(RUN_COLUMNS, r)) for r in found[:limit]], found[limit - 1][0])
        if len(chunk) < size:
            return RunsPage([dict(zip(RUN_COLUMNS, r)) for r in found], None)
        high = chunk[-1][0]
        if read >= SCAN_CAP:
            return RunsPage([dict(zip(RUN_COLUMNS, r)) for r in found], high, True)
        size = min(CHUNK, SCAN_CAP - read, size * 4)


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
