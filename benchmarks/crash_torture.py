"""The crash torture of tests/crash at any length: SIGKILL `durableflow worker` many times.

    python benchmarks/crash_torture.py --kills 300 --runs 5 --seed 1

Prints how many workers were killed and whether every invariant held (exit 1 if not).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.crash.torture import Torture, check_invariants, read_run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200, help="SIGKILLs at most (default 200)")
    parser.add_argument("--runs", type=int, default=5, help="runs in flight together (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="random seed for kill moments")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        torture = Torture(Path(tmp), kills=args.kills, runs=args.runs, seed=args.seed)
        expected = torture.reference()
        db, ledger, run_ids = torture.tortured(min_kills=args.kills)
        problems = []
        for run_id in run_ids:
            got = read_run(db, run_id)
            if got != expected:
                problems.append(f"run {run_id}: {got} != {expected}")
            problems += [f"run {run_id}: {p}" for p in check_invariants(db, ledger, run_id)]
    report = {"kills": sum(e[0] == "killed" for e in torture.log), "runs": len(run_ids),
              "seconds": round(time.monotonic() - started, 1), "problems": problems}
    print(json.dumps(report, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
