"""Ingestion: landing files become typed, content-addressed Parquet partitions and a dataset
version manifest.

``landing`` lists what arrived, ``read`` parses and casts a file to the spec's schema,
``partitions`` writes (or reuses) a file's partition, ``versions`` writes and reads dataset
version manifests, ``publish`` shows the result, and ``tasks`` holds the Prefect tasks the
ingest flow runs.
"""
