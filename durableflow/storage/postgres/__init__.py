"""The PostgreSQL backend (issue 18): chosen once, when a Store is opened with a `postgresql://`
DSN. Its statements are the `.sql` files beside this package (same families and names as
../sqlite/); the Python here gives them what the engine uses of a sqlite3 connection."""
