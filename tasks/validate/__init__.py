"""Validation: the spec's Great Expectations suite on every partition of a dataset version.

``expectations`` builds the suite (and checks it once per GX version), ``partition`` runs it
on one partition where the partition is processed, ``report`` aggregates the results,
quarantines failures and persists the report, ``data_docs`` renders GX's Data Docs,
``publish`` shows the tables, and ``tasks`` holds the Prefect tasks the validate flow runs.
"""
