"""A producer in its own process: enqueue N messages in batches, then one "stop" per consumer.

argv: DB_PATH COUNT BATCH CONSUMERS
Prints one JSON line: {"ids": [...], "errors": [...]}.
"""

import json
import sys

from durableflow.storage import NewMessage, Store


def main() -> int:
    path, count, batch, consumers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    ids: list[int] = []
    errors: list[str] = []
    try:
        with Store(path) as store:
            for start in range(0, count, batch):
                n = min(batch, count - start)
                ids.extend(store.enqueue(*[NewMessage("task", payload=str(start + i)) for i in range(n)]))
            # Enqueued after every real message, so a consumer that claims one has nothing left to do.
            store.enqueue(*[NewMessage("stop") for _ in range(consumers)])
    except Exception as exc:  # report everything: the test asserts there was nothing
        errors.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps({"ids": ids, "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
