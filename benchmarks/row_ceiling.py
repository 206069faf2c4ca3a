"""Row ceiling: how fast the rows the engine must write per node can be written at all, by plain
`sqlite3` on durableflow's own schema, as a ratio to workflow_overhead.py's floor measured in the
same run. It is the highest ratio an engine that writes these rows could reach on this machine if
its own work (reading definitions, routing, state machines, JSON) cost nothing.

    python benchmarks/row_ceiling.py                 # about half a minute
    python benchmarks/row_ceiling.py --batch 50 --repeats 5

What each node writes here is a subset of what the engine writes (no leases, no run reads, no
claim checks), with rows shaped like the engine's (payload, input, output and event data as a
Noop node's), every write through `executemany`, `--batch` nodes per `BEGIN IMMEDIATE`
transaction (a recording transaction of the engine holds 40 to 200 cheap nodes):

  handed   a node recorded in one go (a chain step or a fan-out branch run in the transaction that
           queued it, storage/handoff.py): its message INSERTed acked, its node_instances row
           INSERTed completed, and the five events SPEC section 4 asks for (node.pending,
           message.leased, node.running, message.acked, node.completed).
  handed+join   the same, plus what a fan-in adds per branch: its join_inputs row (and one joins
           UPDATE per transaction).
  queued   3-node runs, every node through the queue (the runs figure): the runs and their first
           node are written before the clock starts; then each transaction claims --batch ready
           messages (the engine's claim statement), and for each: its node row UPDATEd completed
           (by its id), its message acked, four events, and the next node's message and node row
           INSERTed with its node.pending event (the batch's in one executemany each, their ids
           consecutive), or, for a run's last node, the run's row UPDATEd completed with
           run.completed.

Each shape is also run without event rows: what the five-rows-per-node audit trail costs.
Reports µs per node, the ratio of the floor's µs per node to it (median over --repeats, each
bracketed by floor chains as workflow_overhead does), and, for the shapes with a target, what
is left per node for the engine's own work if it is to reach that target
(floor µs / target - rows µs): a negative or near-zero figure is a target no engine writing these
rows can meet here.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import format_table, now, progress, remove_db, scratch_dir  # noqa: E402
from workflow_overhead import floor_chain, floor_connect  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AT = "2026-12-07T05:32:33.438Z"
RUN = "01a24efd4f13f17cce1a9f0bebf3ee67"
INPUT = '{"x":1}'
EVENTS = (("node.pending", '{{"id":{},"attempt":1,"iteration":0}}'),
          ("message.leased", '{{"id":{},"from":"ready","worker":"vm:7819:3eabd4"}}'),
          ("node.running", '{{"id":{},"attempt":1}}'),
          ("message.acked", '{{"id":{},"from":"leased"}}'),
          ("node.completed", '{{"id":{},"from":"running"}}'))
TARGETS = {"handed": 0.6, "handed+join": 1.5, "queued": 0.8}   # chain, fan-out, runs (issue 12)

INSERT_MESSAGE = ("INSERT INTO messages (run_id, kind, target_node_id, iteration, payload, status, priority, "
                  "visible_at, held, max_attempts, created_at, finished_at) "
                  "VALUES (?, 'node', ?, 0, ?, ?, 4, ?, 0, 5, ?, ?)")
INSERT_NODE = ("INSERT INTO node_instances (run_id, node_id, iteration, attempt, status, message_id, input, "
               "output, worker_id, created_at, started_at, finished_at) VALUES (?, ?, 0, 1, ?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_EVENT = "INSERT INTO events (run_id, node_id, type, data, at) VALUES (?, ?, ?, ?, ?)"
CLAIM = ("UPDATE messages SET status = 'leased' WHERE id IN (SELECT id FROM messages INDEXED BY messages_claimable "
         "WHERE status = 'ready' AND held = 0 AND visible_at <= ? ORDER BY priority DESC, id LIMIT ?) "
         "RETURNING id, run_id, target_node_id")
FINISH_NODE = ("UPDATE node_instances SET status = 'completed', output = ?, worker_id = ?, started_at = ?, "
               "finished_at = ? WHERE id = ? AND status = 'pending'")
ACK = "UPDATE messages SET status = 'acked', finished_at = ? WHERE id = ? AND status = 'leased'"


def fresh(path: str) -> sqlite3.Connection:
    remove_db(path)
    conn = floor_connect(path, "NORMAL")
    with open(os.path.join(ROOT, "schema.sql"), encoding="utf-8") as f:
        conn.executescript(f.read())
    conn.execute("INSERT INTO workflows (workflow_id, version, checksum, definition, created_at) "
                 "VALUES ('w', 1, 'c', '{}', ?)", (AT,))
    return conn


def events_of(run_id: str, node_id: str, mid: int, which: tuple, events: int) -> list[tuple]:
    return [(run_id, node_id, kind, data.format(mid), AT) for kind, data in which[:events]]


def handed(path: str, nodes: int, batch: int, events: int, join: bool) -> float:
    conn = fresh(path)
    conn.execute("INSERT INTO runs (run_id, workflow_id, workflow_version, status, created_at) "
                 "VALUES (?, 'w', 1, 'running', ?)", (RUN, AT))
    if join:
        conn.execute("INSERT INTO joins (run_id, node_id) VALUES (?, 'end')", (RUN,))
    t0 = now()
    done = 0
    while done < nodes:
        conn.execute("BEGIN IMMEDIATE")
        msgs, rows, evs, inputs = [], [], [], []
        for mid in range(done + 1, min(nodes, done + batch) + 1):
            node_id = f"m{mid}"
            msgs.append((RUN, node_id, f'{{"input":{INPUT},"inputs":{{"start":{INPUT}}}}}', "acked", AT, AT, AT))
            rows.append((RUN, node_id, "completed", mid, INPUT, INPUT, "vm:7819:3eabd4", AT, AT, AT))
            evs += events_of(RUN, node_id, mid, EVENTS, events)
            inputs.append((RUN, "end", node_id, INPUT))
        conn.executemany(INSERT_MESSAGE, msgs)
        conn.executemany(INSERT_NODE, rows)
        conn.executemany(INSERT_EVENT, evs)
        if join:
            conn.executemany("INSERT OR REPLACE INTO join_inputs (run_id, node_id, key, payload) VALUES (?, ?, ?, ?)",
                             inputs)
            conn.execute("UPDATE joins SET resolved = resolved + ?, delivered = delivered + ? "
                         "WHERE run_id = ? AND node_id = 'end'", (len(inputs), len(inputs), RUN))
        conn.execute("COMMIT")
        done += len(msgs)
    seconds = now() - t0
    conn.close()
    return seconds


def queued(path: str, runs: int, batch: int, events: int) -> float:
    conn = fresh(path)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO runs (run_id, workflow_id, workflow_version, status, created_at) "
                     "VALUES (?, 'w', 1, 'running', ?)", [(f"{r:012x}{RUN[12:]}", AT) for r in range(runs)])
    attempt_of = enqueue(conn, [(f"{r:012x}{RUN[12:]}", "n0") for r in range(runs)], events)
    conn.execute("COMMIT")
    t0 = now()
    while True:
        conn.execute("BEGIN IMMEDIATE")
        claimed = conn.execute(CLAIM, (AT, batch)).fetchall()
        if not claimed:
            conn.execute("COMMIT")
            break
        finish, acks, evs, ended, following = [], [], [], [], []
        for mid, run_id, node_id in claimed:
            finish.append((INPUT, "vm:7819:3eabd4", AT, AT, attempt_of.pop(mid)))
            acks.append((AT, mid))
            evs += events_of(run_id, node_id, mid, EVENTS[1:], max(0, events - 1))
            step = int(node_id[1:])
            if step < 2:
                following.append((run_id, f"n{step + 1}"))
            else:
                ended.append(run_id)
        conn.executemany(FINISH_NODE, finish)
        conn.executemany(ACK, acks)
        conn.executemany(INSERT_EVENT, evs)
        attempt_of.update(enqueue(conn, following, events))
        conn.executemany("UPDATE runs SET status = 'completed', outputs = ?, finished_at = ? "
                         "WHERE run_id = ? AND status = 'running'", [(INPUT, AT, r) for r in ended])
        if events:
            conn.executemany(INSERT_EVENT, [(r, None, "run.completed", '{"from":"running"}', AT) for r in ended])
        conn.execute("COMMIT")
    seconds = now() - t0
    left = conn.execute("SELECT count(*) FROM runs WHERE status != 'completed'").fetchone()[0]
    conn.close()
    if left:
        raise RuntimeError(f"queued: {left} runs not completed")
    return seconds


def enqueue(conn: sqlite3.Connection, targets: list[tuple[str, str]], events: int) -> dict[int, int]:
    """Each (run, node): its ready message, its pending attempt, its node.pending event, in one
    executemany each (a batch's rows get consecutive ids). Returns message id -> attempt id."""
    if not targets:
        return {}
    conn.executemany("INSERT INTO messages (run_id, kind, target_node_id, iteration, payload, status, priority, "
                     "visible_at, held, max_attempts, created_at) VALUES (?, 'node', ?, 0, ?, 'ready', 4, ?, 0, 5, ?)",
                     [(run_id, node_id, f'{{"input":{INPUT},"inputs":{{}}}}', AT, AT) for run_id, node_id in targets])
    last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
    mids = range(last - len(targets) + 1, last + 1)
    conn.executemany("INSERT INTO node_instances (run_id, node_id, iteration, attempt, status, message_id, input, "
                     "created_at) VALUES (?, ?, 0, 1, 'pending', ?, ?, ?)",
                     [(run_id, node_id, mid, INPUT, AT) for (run_id, node_id), mid in zip(targets, mids)])
    last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
    if events:
        conn.executemany(INSERT_EVENT, [events_of(run_id, node_id, mid, EVENTS, 1)[0]
                                        for (run_id, node_id), mid in zip(targets, mids)])
    return dict(zip(mids, range(last - len(targets) + 1, last + 1)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=6000, help="nodes per measurement (queued: runs x 3)")
    p.add_argument("--batch", type=int, default=100, help="nodes per transaction")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--floor-nodes", type=int, default=1000, help="nodes of each floor chain")
    args = p.parse_args(argv)
    shapes = {
        "handed": lambda path, ev: handed(path, args.nodes, args.batch, ev, False),
        "handed+join": lambda path, ev: handed(path, args.nodes, args.batch, ev, True),
        "queued": lambda path, ev: queued(path, args.nodes // 3, args.batch, ev),
    }
    rows, all_floors = [], []
    with scratch_dir() as d:
        path = os.path.join(d, "ceiling.db")
        for name, shape in shapes.items():
            for events in (5, 0):
                ratios, costs, floors = [], [], []
                for _ in range(args.repeats):
                    floor = [floor_chain(path, args.floor_nodes, "NORMAL") / args.floor_nodes for _ in range(2)]
                    per_node = shape(path, events) / (args.nodes // 3 * 3 if name == "queued" else args.nodes)
                    floor += [floor_chain(path, args.floor_nodes, "NORMAL") / args.floor_nodes for _ in range(2)]
                    all_floors += [f * 1e6 for f in floor]
                    costs.append(per_node * 1e6)
                    floors.append(statistics.median(floor) * 1e6)
                    ratios.append(statistics.median(floor) / per_node)
                ratio = statistics.median(ratios)
                target = TARGETS[name] if events == 5 else None
                # What a node may cost beyond these rows for the engine to reach its target.
                left = None if target is None else statistics.median(f / target - c for f, c in zip(floors, costs))
                progress(f"{name} events={events}: {statistics.median(costs):.1f} us/node, ratio {ratio:.2f}")
                rows.append((name, events, f"{statistics.median(costs):.1f}", f"{ratio:.2f}",
                             "" if target is None else f"{target}",
                             "" if left is None else f"{left:.1f}",
                             " ".join(f"{r:.2f}" for r in ratios)))
    print(f"floor: {statistics.median(all_floors):.1f} us/node (median of {len(all_floors)} chains of {args.floor_nodes})")
    print(format_table(("shape", "events/node", "us/node", "ceiling (x floor)", "engine's target",
                        "us/node left for the engine at the target", "ceiling per repeat"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
