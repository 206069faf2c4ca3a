"""Timer schedules inside the engine's transactions: kept in step with each workflow's latest
version at register, and fired by the workers' scheduler, by `schedules trigger` and by
`schedules backfill`.

A fire time is dealt with once: its `schedule_fires` row is the proof (its primary key settles a
race between workers of any number of processes), and the run it starts commits with it.
"""

from __future__ import annotations

from typing import Callable

from durableflow.clock import iso, parse_iso
from durableflow.model import WorkflowDef
from durableflow.plan import Plan, Plans
from durableflow.storage import schedules, workflows
from durableflow.timing import Timing
from durableflow.execution.runs import RunLifecycle

ACTIVE_RUN = ("pending", "running", "paused", "compensating")


def timing_of(node) -> Timing:
    """A Timer node's schedule, from its (validated) definition."""
    from durableflow.durations import parse_duration
    config = node.config
    interval = config.get("interval")
    return Timing(
        cron=config.get("cron"),
        interval=None if interval is None else parse_duration(interval),
        timezone=config.get("timezone") or "UTC",
        catch_up=config.get("catchUp") or "none",
        misfire_grace=parse_duration(config["misfireGrace"]) if config.get("misfireGrace") is not None else 60.0,
        overlap=config.get("overlap") or "skip",
        max_catch_up=int(config.get("maxCatchUp") or 100),
    )


def timing_of_row(row: dict) -> Timing:
    return Timing(cron=row["cron"], interval=row["interval_s"], timezone=row["timezone"],
                  catch_up=row["catch_up"], misfire_grace=row["misfire_grace_s"],
                  overlap=row["overlap"], max_catch_up=row["max_catch_up"])


def _values(schedule_id: str, workflow_id: str, node_id: str, t: Timing, next_at: str) -> dict:
    return {"schedule_id": schedule_id, "workflow_id": workflow_id, "node_id": node_id,
            "cron": t.cron, "interval_s": t.interval, "timezone": t.timezone, "catch_up": t.catch_up,
            "misfire_grace_s": t.misfire_grace, "overlap": t.overlap, "max_catch_up": t.max_catch_up,
            "next_at": next_at}


def sync_txn(conn, defn: WorkflowDef, version: int, now: float) -> None:
    """After registering `version`: if it is the workflow's latest, its Timer nodes are its
    schedules (a changed one gets a new next fire time; an unchanged one keeps its own) and its
    Event nodes its listeners; schedules and listeners of nodes it no longer has go."""
    latest = workflows.get_workflow(conn, defn.workflow_id)["version"]
    if version < latest:
        return
    now_s = iso(now)
    wanted = {n.node_id: timing_of(n) for n in defn.nodes if n.runtime_type == "Timer"}
    have = {row["node_id"]: row for row in schedules.schedules_of_workflow(conn, defn.workflow_id)}
    for node_id, row in have.items():
        if node_id not in wanted:
            schedules.delete_schedule_txn(conn, row["schedule_id"], now_s)
    for node_id, timing in wanted.items():
        row = have.get(node_id)
        if row is not None and timing_of_row(row) == timing:
            continue
        schedule_id = f"{defn.workflow_id}:{node_id}"
        schedules.put_schedule_txn(conn, _values(schedule_id, defn.workflow_id, node_id, timing,
                                                 iso(timing.next_after(now))), now_s, new=row is None)
    listening = {(str(n.config.get("event")), n.node_id) for n in defn.nodes if n.runtime_type == "Event"}
    current = schedules.event_triggers_of_workflow(conn, defn.workflow_id)
    for event, node_id in current - listening:
        schedules.delete_event_trigger_txn(conn, event, defn.workflow_id, node_id)
    for event, node_id in listening - current:
        schedules.put_event_trigger_txn(conn, event, defn.workflow_id, node_id)


class Firing:
    """What the scheduler, `trigger` and `backfill` do to a schedule, in one transaction each.
    `plans` and `start` come from the execution package; `new_run_id` from the engine."""

    def __init__(self, run_lifecycle: RunLifecycle, plans: Plans, new_run_id: Callable[[], str]):
        self.runs = run_lifecycle
        self.plans = plans
        self.new_run_id = new_run_id

    # --- the scheduler ---------------------------------------------------------------------

    def fire_due_txn(self, conn, schedule_id: str, now: float) -> list[str]:
        """Deal with the schedule's fire times up to `now`: start, skip or buffer each by its
        catch-up, misfire and overlap rules. Returns the runs started."""
        row = schedules.get_schedule(conn, schedule_id)
        if row["paused"] or row["next_at"] is None or parse_iso(row["next_at"]) > now:
            return []   # another worker dealt with it first, or it was paused meanwhile
        timing = timing_of_row(row)
        since = parse_iso(row["last_at"]) if row["last_at"] else parse_iso(row["next_at"]) - 1e-3
        due = timing.fire_times(since, now)
        on_time = [t for t in due if now - t <= timing.misfire_grace]
        late = [t for t in due if now - t > timing.misfire_grace]
        start: list[float] = list(on_time)
        skipped: list[float] = []
        if late:
            if timing.catch_up == "all":
                keep = late[-timing.max_catch_up:]
                skipped, start = late[:len(late) - len(keep)], keep + start
            elif timing.catch_up == "one" and not on_time:
                skipped, start = late[:-1], [late[-1]]
            else:
                skipped = late
        now_s = iso(now)
        for t in skipped[-timing.max_catch_up:]:   # a week of downtime is not a million rows
            schedules.insert_fire_txn(conn, schedule_id, iso(t), "skipped",
                                      None, f"missed: not started within misfireGrace "
                                            f"{timing.misfire_grace:g}s (catchUp {timing.catch_up})", now_s)
        started = []
        caught_up = set(late) & set(start)
        for t in start:
            # Fires caught up after downtime are never dropped by overlap: they wait their turn
            # (unless the schedule allows overlap), one after another, in order.
            overlap = "bufferAll" if t in caught_up and timing.overlap != "allow" else timing.overlap
            run_id = self._fire_txn(conn, row, timing, t, now, overlap=overlap)
            if run_id:
                started.append(run_id)
        last = due[-1] if due else parse_iso(row["next_at"])
        schedules.advance_txn(conn, schedule_id, iso(last), iso(timing.next_after(max(last, now))))
        return started

    def start_buffered_txn(self, conn, schedule_id: str, now: float) -> list[str]:
        """Buffered fires whose turn came (the schedule's previous run ended)."""
        row = schedules.get_schedule(conn, schedule_id)
        if row["paused"] or schedules.active_runs(conn, schedule_id):
            return []
        pending = schedules.buffered(conn, schedule_id)
        if not pending:
            return []
        run_id = self._start_txn(conn, row, parse_iso(pending[0]), now, reason="its turn came")
        return [run_id] if run_id else []

    # --- by hand ---------------------------------------------------------------------------

    def trigger_txn(self, conn, schedule_id: str, now: float) -> str:
        """Fire once now (whatever the schedule's state or overlap): the run stands for now."""
        row = schedules.get_schedule(conn, schedule_id)
        fire_at = now
        while schedules.fire(conn, schedule_id, iso(fire_at)) is not None:
            fire_at += 1e-3   # a fire time is unique: two triggers in one millisecond stand apart
        run_id = self._start_txn(conn, row, fire_at, now, reason="triggered by hand")
        return run_id

    def backfill_txn(self, conn, schedule_id: str, start: float, end: float, overlap: str,
                     now: float, limit: int = 10_000) -> dict:
        """Run the schedule's workflow once per fire time in [start, end] that no run stands for
        yet (a fire recorded as skipped may run now); each fire time at most once."""
        row = schedules.get_schedule(conn, schedule_id)
        timing = timing_of_row(row)
        times = timing.fire_times(start - 1e-3, end)
        if len(times) > limit:
            raise ValueError(f"backfill: {len(times):,} fire times between {iso(start)} and "
                             f"{iso(end)}; at most {limit:,} at once")
        started, buffered, already = [], 0, 0
        for t in times:
            existing = schedules.fire(conn, schedule_id, iso(t))
            if existing is not None and existing[0] in ("started", "buffered"):
                already += 1
                continue
            run_id = self._fire_txn(conn, row, timing, t, now, overlap=overlap, backfill=True)
            if run_id:
                started.append(run_id)
            else:
                buffered += 1
        return {"fire_times": len(times), "started": started, "buffered": buffered, "already": already}

    # --- one fire time ---------------------------------------------------------------------

    def _fire_txn(self, conn, row: dict, timing: Timing, fire_at: float, now: float, *,
                  overlap: str, backfill: bool = False) -> str | None:
        """Apply the overlap policy to one fire time; start its run or record why not."""
        schedule_id, fire_s, now_s = row["schedule_id"], iso(fire_at), iso(now)
        if schedules.fire(conn, schedule_id, fire_s) is not None and not backfill:
            return None   # dealt with already (another worker, or an earlier tick)
        active = schedules.active_runs(conn, schedule_id)
        if active and overlap != "allow":
            if overlap == "skip":
                schedules.insert_fire_txn(conn, schedule_id, fire_s, "skipped", None,
                                          f"overlap skip: run {active[-1][0]} still {active[-1][1]}", now_s)
                return None
            if overlap in ("bufferOne", "bufferAll"):
                if overlap == "bufferOne":
                    for earlier in schedules.buffered(conn, schedule_id):
                        schedules.drop_buffered_txn(conn, schedule_id, earlier,
                                                    f"overlap bufferOne: replaced by the fire of {fire_s}")
                schedules.buffer_fire_txn(conn, schedule_id, fire_s,
                                          f"overlap {overlap}: waits for run {active[-1][0]}", now_s)
                return None
            if overlap == "cancelOther":
                for run_id, status in active:
                    self.runs.cancel(conn, run_id, now, reason=f"schedule {schedule_id}: cancelled "
                                                               f"for the fire of {fire_s} (overlap cancelOther)")
        return self._start_txn(conn, row, fire_at, now, reason="backfill" if backfill else None)

    def _start_txn(self, conn, row: dict, fire_at: float, now: float, reason: str | None) -> str | None:
        """Start the run a fire time stands for: the workflow's latest version at `now`, from the
        Timer node only, the fire time as its input and as ctx.scheduled_at."""
        schedule_id, fire_s = row["schedule_id"], iso(fire_at)
        version = workflows.get_workflow(conn, row["workflow_id"])["version"]
        plan: Plan = self.plans.get(row["workflow_id"], version, conn)
        run_id = self.new_run_id()
        if not schedules.insert_fire_txn(conn, schedule_id, fire_s, "started", run_id, reason, iso(now)):
            if not schedules.fire_started_txn(conn, schedule_id, fire_s, run_id, reason):
                return None
        inputs = {"scheduledAt": fire_s, "scheduleId": schedule_id}
        self.runs.start_run(conn, plan, run_id, inputs, now, entries=(row["node_id"],), scheduled_at=fire_at)
        return run_id
