"""Ingesting landing files with the plain stage functions, as the ingest flow does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.ingest.landing import list_landing
from tasks.ingest.partitions import ingest_split
from tasks.ingest.plan import plan_ingest, split_id
from tasks.lake import Lake
from tasks.records import LandingFile, Split, SplitOutcome
from tasks.spec import DatasetSpec


def with_ingest(spec: DatasetSpec, **settings: Any) -> DatasetSpec:
    """``spec`` with other ``ingest`` settings (e.g. ``partition_rows=1500``)."""
    return spec.model_copy(update={"ingest": spec.ingest.model_copy(update=settings)})


def landing_file(path: Path | str) -> LandingFile:
    """One landing file as the listing sees it."""
    (found,) = list_landing(str(path))
    return found


def one_split(files: list[LandingFile], spec: DatasetSpec) -> Split:
    """``files`` as one split, in this order."""
    return Split(split_id=split_id(files, spec), files=files, estimated_bytes=0)


def ingest_paths(
    paths: list[Path], spec: DatasetSpec, lake: Lake, *, rewrite: bool = False
) -> SplitOutcome:
    """The files at ``paths`` ingested as one split, in this order."""
    split = one_split([landing_file(p) for p in paths], spec)
    return ingest_split(split=split, spec=spec, lake=lake, rewrite=rewrite)


def ingest_source(source: Path | str, spec: DatasetSpec, lake: Lake) -> list[SplitOutcome]:
    """Every landing file under ``source``, planned afresh and ingested split by split."""
    plan = plan_ingest(list_landing(str(source)), spec, index=None)
    return [ingest_split(split=s, spec=spec, lake=lake) for s in plan.todo]
