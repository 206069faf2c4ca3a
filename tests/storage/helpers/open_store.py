"""Open (create and migrate) a Store at a given instant; print what happened as one JSON line.

argv: DB_PATH START_AT_EPOCH
"""

import json
import sys
import time

from durableflow.storage import Store
from durableflow.storage import migrate as migrator

applied: list[int] = []
_real_migrate = migrator.migrate


def counting_migrate(*args, **kwargs):
    done = _real_migrate(*args, **kwargs)
    applied.extend(done)
    return done


migrator.migrate = counting_migrate


def main() -> int:
    path, start_at = sys.argv[1], float(sys.argv[2])
    while time.time() < start_at:  # line up with the other processes, to make them race
        pass
    try:
        with Store(path) as store:
            version = store.schema_version()
    except Exception as exc:  # report everything: the test asserts there was nothing
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"version": version, "applied": applied}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
