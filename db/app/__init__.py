"""The app tables: small rows that many processes write in real transactions (SQLAlchemy on the same
SQLite or PostgreSQL database as the DuckLake catalog; schema changes through Alembic in ``migrations/``).

- ``engine``: one SQLAlchemy engine per process and catalog URL (write transactions that lock first);
- ``models``: the tables, and the job and unit states;
- ``jobs``: jobs and work units (claims, leases, phases, logs, workers);
- ``users``, ``sessions``, ``sign_in``: people, roles and permissions, web sessions, throttled sign-in;
- ``named_rows``: rows users address by name; ``saved_filters``, ``pilots`` (with their labels),
  ``snapshots`` (the records; their member lists are in ``db.lake.snapshot_members``), ``training``
  (training and evaluation runs).
"""
