"""The Store: the only object that runs SQL. Each public method is one transaction
(storage/methods.py); the engine's own transactions call the `*_txn` helpers of the family modules
through `Store.write`."""

from __future__ import annotations

from durableflow.storage.base import StoreBase
from durableflow.storage.methods import StoreMethods
from durableflow.storage.postgres.dsn import is_dsn


class Store(StoreMethods, StoreBase):
    """Opens (creating and migrating) a durableflow database file, or, given a `postgresql://`
    DSN, a PostgreSQL database (a PgStore: the same methods over PostgreSQL's plumbing)."""

    def __new__(cls, path=None, *args, **kwargs):
        if cls is Store and is_dsn(path):
            # Imported here: a SQLite user never imports psycopg. A PgStore is not a Store
            # (storage/postgres imports nothing of this module), so it is opened here.
            from durableflow.storage.postgres.store import PgStore
            return PgStore(path, *args, **kwargs)
        return super().__new__(cls)
