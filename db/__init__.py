"""Storage: everything the project keeps, and nothing about what it means (that is curation's).

One catalog database (SQLite, or PostgreSQL for a cluster) holds two kinds of tables, and files live in a
folder or an S3-compatible object store:

- ``db.store``: creates and opens the whole store (the lake's migrations and the app tables' Alembic
  migrations, in the one catalog); every process starts here;
- ``db.lake``: the DuckLake store (bulk rows in Parquet files): the connection, each table declared once,
  the lake's migrations, and every module that writes lake rows;
- ``db.reads``: read-only queries over the lake, one module per stage or page;
- ``db.app``: the app tables (SQLAlchemy, Alembic): jobs and units, users and sign-in, pilots, saved
  filters, snapshot records, training and evaluation runs;
- ``db.storage``: files, wherever they lie: local-or-S3 locations, the object-store client, the image blob
  store, model folders and finished exports.
"""
