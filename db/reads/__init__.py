"""Read-only queries over the lake (SQL aggregates and point reads, never whole tables into Python).

- per stage, what it reads before it writes: ``ingest_reads``, ``ocr_reads``, ``scoring_reads``,
  ``generation_reads``, ``training_sets`` (a snapshot's rows as training plans them);
- ``samples_view``: the one way every read sees samples (each once; an item's category and brand);
- for the web app and the command line: ``browse`` (Overview and Inspect), ``browse_index`` (the in-memory
  index behind paging and percentiles), ``overview_stats``, ``sample_briefs``, ``queries`` (stage counts
  and score summaries), ``score_kinds``, ``quality`` (the generation quality report), ``demo_reads``.

What writes lake rows is in ``db.lake``.
"""
