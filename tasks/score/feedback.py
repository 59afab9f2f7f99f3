"""Drifted, labeled scoring data becomes training data (``monitoring.retrain_with_scored``).

When a scored batch drifts to the alert level and some of its files carry the target on
every row, those files are copied into the landing folder the champion was trained from,
under ``scored/<scoring run>/``. The retraining the drift event starts then ingests them as
new files (the landing index reads only what is new), so the next model learns from the
distribution that moved. Files without labels stay where they are: land them again with
their labels and they are scored (with a realized metric) and copied then.
"""

from __future__ import annotations

import logging
import posixpath

from tasks.records import ScoredSplit, ScoringResult
from tasks.spec import DatasetSpec, stable_hash
from tasks.storage import copy_between, url_to_fs

logger = logging.getLogger(__name__)

SCORED_FOLDER = "scored"


def labeled_files(scored: list[ScoredSplit]) -> list[str]:
    """The scored files whose every row carries the target, in order."""
    return sorted({uri for split in scored for uri in split.labeled_files})


def destination(training_source: str, run: str, uri: str) -> str:
    """Where a scored file lands in the training folder: named by the scoring run and the
    file's own URI, so two files of one name never overwrite each other."""
    name = f"{stable_hash(uri)[:8]}-{posixpath.basename(uri)}"
    return posixpath.join(training_source.rstrip("/"), SCORED_FOLDER, run, name)


def add_to_training(
    spec: DatasetSpec, result: ScoringResult, scored: list[ScoredSplit]
) -> list[str]:
    """Copy the drifted batch's labeled files into the champion's landing folder when the
    spec asks for it; the URIs written (nothing when the policy is off or drift is not at
    the alert level)."""
    if not spec.monitoring.retrain_with_scored or result.drift.status != "alert":
        return []
    files = labeled_files(scored)
    if not files:
        logger.info("No scored file carries the target on every row: none added to training")
        return []
    if not result.training_source:
        logger.warning("The model's dataset version is gone from the lake: no files added")
        return []
    fs, root = url_to_fs(result.training_source)
    if not fs.isdir(root):
        logger.warning(
            "%s is one file, not a folder: the scored files are not added to it",
            result.training_source,
        )
        return []
    run = posixpath.basename(result.manifest_uri).split(".")[0]
    return [copy_file(uri, destination(result.training_source, run, uri)) for uri in files]


def copy_file(source: str, target: str) -> str:
    """Copy ``source`` to ``target`` (within one store by its own copy, across two stores
    streamed); the landing listing never sees a partial file, as it is written under a
    ``_``-prefixed name and then moved."""
    out_fs, out_path = url_to_fs(target)
    in_fs, in_path = url_to_fs(source)
    if out_fs.exists(out_path) and out_fs.size(out_path) == in_fs.size(in_path):
        return out_fs.unstrip_protocol(out_path)  # copied by an earlier try of this run
    folder, name = posixpath.split(out_path)
    copy_between(in_fs, in_path, out_fs, out_path, partial=posixpath.join(folder, f"_{name}.part"))
    return out_fs.unstrip_protocol(out_path)
