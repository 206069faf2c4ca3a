"""A queue consumer in its own process: claim, ack, report.

argv: DB_PATH WORKER_ID BATCH_SIZES(comma separated, cycled) MODE [START_AT_EPOCH]
MODE "drain": stop when a claim comes back empty (the queue was filled beforehand).
MODE "until-stop": run until it claims a message of kind "stop" (a producer sends them last).
Prints one JSON line: {"acked": [...ids of real messages], "errors": [...], "claims": n}.
"""

import itertools
import json
import sys
import time

from durableflow.storage import Store


def main() -> int:
    path, worker, sizes, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    start_at = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    batches = itertools.cycle(int(s) for s in sizes.split(","))
    acked: list[int] = []
    errors: list[str] = []
    claims = 0
    try:
        with Store(path) as store:
            time.sleep(max(0.0, start_at - time.time()))  # start together with the other consumers
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                got = store.claim(worker, limit=next(batches), lease_seconds=300)
                claims += 1
                if not got:
                    if mode == "drain":
                        break
                    time.sleep(0.001)  # idle poll of a consumer waiting for its producer
                    continue
                stops = [c for c in got if c.kind == "stop"]
                # One stop per consumer: hand back any extra one this batch took from a sibling.
                for extra in stops[1:]:
                    store.nack(extra.id, extra.token)
                done = [c for c in got if c.kind != "stop"] + stops[:1]
                if len(done) == 1:
                    store.ack(done[0].id, done[0].token)
                else:
                    store.ack_many(done)
                acked.extend(c.id for c in done if c.kind != "stop")
                if stops:
                    break
            else:
                errors.append("consumer deadline passed")
    except Exception as exc:  # report everything: the test asserts there was nothing
        errors.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps({"worker": worker, "acked": acked, "errors": errors, "claims": claims}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
