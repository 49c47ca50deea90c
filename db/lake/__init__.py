"""The DuckLake store: bulk rows as Parquet files under the data path, ordered by the catalog database.

- ``connection``: :class:`~db.lake.connection.Lake`, the process's DuckDB connection with the lake
  attached (optimistic commits retried), ``at_version`` for time travel, the catalog's attach string;
- ``tables``: every lake table's columns, declared once (the DDL and the Arrow schemas come from it);
- ``schema``: the lake's numbered migrations, built from ``tables``;
- ``metrics``: the stats the ``scores`` table may hold, declared once;
- the writers, each also reading back what it wrote: ``batches`` (the stages' idempotent batch writes),
  ``sampling`` (stratified samples written as named selections), ``exclusions`` (the append-only log of
  samples taken out), ``snapshot_members`` (each snapshot's member ids).

Read-only queries are in ``db.reads``.
"""
