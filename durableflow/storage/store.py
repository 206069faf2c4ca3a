"""The Store: the only object that runs SQL. Each public method is one transaction."""

from __future__ import annotations

from durableflow.storage.base import StoreBase
from durableflow.storage.queue import QueueOps
from durableflow.storage.runs import RunOps


class Store(QueueOps, RunOps, StoreBase):
    """Opens (creating and migrating) a durableflow database file."""
