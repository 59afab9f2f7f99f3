"""Keeping a lake for years: what is in it, what may go, and copies of it.

``inventory``  every object in the lake, classified by what it is (partition, manifest,
               model file, cache record, ...) with its size and age.
``identity``   the lake's ``lake.json``: its format and identity, so a newer format or a
               foreign backup target is refused before anything is deleted or copied.
``policy``     the retention policy (typed configuration only).
``mark``       mark and sweep planning: the roots the policy keeps, and everything they
               reference through the records the lake already holds.
``sweep``      deleting what the mark left, references before what they reference.
``verify``     integrity: manifests against the objects they name (sizes, hashes).
``backup``     incremental, dependency-ordered copies between any two lakes.
``lineage``    a model's path back to its landing files, and forward to its scoring runs.
``tasks``      the thin Prefect tasks of ``flows/lake.py``; ``publish`` their artifacts.

This stage sits above ``score``: it reads every earlier stage's records and writes none.
"""
