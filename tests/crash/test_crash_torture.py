"""SIGKILL a real `durableflow worker` at random moments, many times; the run must end as if
nothing had happened, with nothing lost and nothing recorded twice."""

import os

import pytest

from tests.backends import target
from tests.crash.torture import Torture, check_invariants, read_run

pytestmark = pytest.mark.slow


def test_sigkill_at_random_moments_changes_nothing(tmp_path, backend):
    kills = int(os.environ.get("DURABLEFLOW_TORTURE_KILLS", "25"))
    torture = Torture(tmp_path, kills=kills, seed=int(os.environ.get("DURABLEFLOW_TORTURE_SEED", "7")),
                      target=lambda name: target(backend, tmp_path, name))
    expected = torture.reference()
    assert expected["status"] == "completed", expected

    db, ledger, run_ids = torture.tortured(min_kills=min(kills, 8))

    for run_id in run_ids:
        assert read_run(db, run_id) == expected, torture.log
        assert check_invariants(db, ledger, run_id) == []
    assert sum(entry[0] == "killed" for entry in torture.log) >= min(kills, 8), torture.log
