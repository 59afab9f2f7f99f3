"""A small lake ingested and validated by the plain stage functions (``tests/unit`` fixture)."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.lake import Lake
from tasks.records import DatasetVersion, ValidationReport
from tasks.spec import DatasetSpec


@dataclass(frozen=True)
class Ingested:
    spec: DatasetSpec
    lake: Lake
    version: DatasetVersion
    report: ValidationReport
