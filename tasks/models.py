"""Transitional alias of :mod:`tasks.records`, the typed objects that cross task boundaries.

Until 0.2 they lived here, and the cached result records that release wrote into lakes
(``<lake>/runs/results``) name their classes ``tasks.models.<Class>``. Prefect loads a record
by that name, so this alias keeps a lake written by 0.1 reusable. New code imports
``tasks.records``. Remove it once no lake holds 0.1 records (README, "Upgrading").
"""

from tasks.records import (
    DatasetVersion,
    ExpectationOutcome,
    FeatureLayout,
    IngestResult,
    LandingFile,
    ModelCandidate,
    ModelMetadata,
    PartitionRef,
    PartitionValidation,
    PipelineResult,
    PromotionDecision,
    QuarantineRecord,
    ValidationReport,
    WarmStart,
)

__all__ = [
    "DatasetVersion",
    "ExpectationOutcome",
    "FeatureLayout",
    "IngestResult",
    "LandingFile",
    "ModelCandidate",
    "ModelMetadata",
    "PartitionRef",
    "PartitionValidation",
    "PipelineResult",
    "PromotionDecision",
    "QuarantineRecord",
    "ValidationReport",
    "WarmStart",
]
