"""Errors users see. Each names the file or field at fault, in plain words."""

from __future__ import annotations


class MlopsError(Exception):
    """Base class: a problem with the user's input or data, reported in plain words."""


class SpecError(MlopsError):
    """The dataset spec is missing, unparsable or inconsistent."""


class SourceError(MlopsError):
    """The landing zone is missing, empty or unreadable."""


class LakeError(MlopsError):
    """The lake lacks something a stage needs (a dataset version, a report, a model)."""


class PartitionError(MlopsError):
    """One landing file cannot be read or cast to the spec's schema (it gets quarantined)."""


class ValidationFailed(MlopsError):
    """Too few partitions passed validation to go on."""


class TrainingError(MlopsError):
    """The accepted data cannot train a model (e.g. a target with one class)."""


class RegistryError(MlopsError):
    """A registry operation was refused (unknown version, immutable version exists, ...)."""


class VersionExists(RegistryError):
    """The model version is registered already (by this inputs' earlier or overlapping run)."""


class ClusterError(MlopsError):
    """A stage's Dask cluster cannot be configured, reached or started."""
