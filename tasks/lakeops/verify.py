"""Integrity: every record's objects are there, whole, and what the record says they are.

Quick mode checks presence and sizes from one listing of the lake; deep mode also reads the
data: each partition and model file against the SHA-256 recorded when it was written
(files written before those were recorded: partitions must decode to their rows, models
must load).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from tasks.errors import LakeError
from tasks.lake import Lake
from tasks.lakeops.identity import check_format
from tasks.lakeops.inventory import LakeObject, inventory
from tasks.lakeops.mark import READ_THREADS, lake_refs
from tasks.records import (
    DatasetVersion,
    LakeProblem,
    LandingIndex,
    ModelMetadata,
    ScoringManifest,
    VerifyReport,
)
from tasks.storage import file_sha256, open_file

logger = logging.getLogger(__name__)

# Records verify reads, and what each is.
_RECORDS: dict[str, Callable[[Any], Any]] = {
    "dataset-version": DatasetVersion.model_validate,
    "model-metadata": ModelMetadata.model_validate,
    "landing-index": LandingIndex.model_validate,
    "scoring-manifest": ScoringManifest.model_validate,
}


class _Checker:
    def __init__(self, lake: Lake, objects: list[LakeObject], *, deep: bool, grace_s: float):
        self.lake = lake
        self.deep = deep
        self.grace_s = grace_s
        self.files = {o.path: o for o in objects}
        self.problems: list[LakeProblem] = []
        self.checked: dict[str, int] = {}
        # Data files to re-hash in deep mode: path -> (expected sha256 or None, rows or None).
        self.to_hash: dict[str, tuple[str | None, int | None, str]] = {}

    def problem(self, path: str, what: str) -> None:
        self.problems.append(LakeProblem(uri=self.lake.url(path), problem=what))

    def count(self, kind: str) -> None:
        self.checked[kind] = self.checked.get(kind, 0) + 1

    def present(self, path: str, what: str, *, size: int | None = None) -> bool:
        """Whether ``path`` is in the lake (with ``size``); a problem named if not."""
        found = self.files.get(path)
        if found is None:
            self.problem(path, f"missing: {what}")
            return False
        if size is not None and found.bytes != size:
            self.problem(path, f"{found.bytes} bytes, {size} recorded: {what}")
            return False
        return True

    def read(self, kind: str) -> dict[str, Any]:
        paths = [p for p, o in self.files.items() if o.kind == kind]
        parse = _RECORDS[kind]

        def one(path: str) -> Any:
            try:
                return parse(self.lake.read_json(self.lake.path(path)))
            except FileNotFoundError:
                return None
            except (ValueError, ValidationError) as err:
                self.problem(path, f"unreadable {kind}: {str(err).splitlines()[0]}")
                return None

        if not paths:
            return {}
        with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(paths))) as pool:
            found = dict(zip(paths, pool.map(one, paths), strict=True))
        return {p: r for p, r in found.items() if r is not None}

    def partition(self, dataset: str, ref: Any, why: str) -> None:
        path = f"datasets/{dataset}/partitions/{ref.partition_id}.parquet"
        if self.present(path, why, size=ref.bytes):
            self.to_hash.setdefault(path, (ref.sha256, ref.rows, why))

    def run(self) -> None:
        versions = self.read("dataset-version")
        for v in versions.values():
            self.count("dataset-version")
            for p in v.partitions:
                self.partition(v.dataset, p, f"partition of dataset version {v.version}")
        metadata = self.read("model-metadata")
        for path, m in metadata.items():
            self.count("model-version")
            folder = path.rsplit("/", 1)[0]
            model = f"{folder}/model.ubj"
            if self.present(model, f"model file of {m.model_name}@{m.version}", size=m.model_bytes):
                self.to_hash[model] = (m.model_sha256, None, f"model {m.model_name}@{m.version}")
            dsv = f"datasets/{m.dataset}/versions/{m.dataset_version}.json"
            self.present(dsv, f"dataset version {m.model_name}@{m.version} was trained on")
            for partition in (p for uri in m.partitions for p in lake_refs(uri)):
                self.present(partition, f"partition {m.model_name}@{m.version} was trained on")
        models = {(m.model_name, m.version) for m in metadata.values()}
        for path, o in self.files.items():
            if path.endswith("/aliases.json") and o.kind == "pointer":
                self.aliases(path, models)
            elif o.kind == "pointer" and path.startswith("datasets/"):
                self.count("pointer")
                name = path.split("/")[1]
                version = self.pointer(path, "version")
                if version:
                    self.present(f"datasets/{name}/versions/{version}.json", "the latest version")
            elif o.kind == "temporary" and o.modified < time.time() - self.grace_s:
                self.problem(path, "temporary file older than the grace period (a writer died)")
        for path, index in self.read("landing-index").items():
            self.count("landing-index")
            name = path.split("/")[1]
            for split in index.splits:
                for p in split.partitions:
                    self.partition(
                        name, p, f"partition the landing index of {index.source_uri} keeps"
                    )
        for manifest in self.read("scoring-manifest").values():
            self.count("scoring-manifest")
            for output in manifest.outputs:
                for relative in lake_refs(output):
                    self.present(relative, f"predictions of scoring run {manifest.run_id}")
        if self.deep:
            self.rehash()

    def pointer(self, path: str, key: str) -> str | None:
        """The ``key`` a pointer file names; a problem named (and None) when it cannot be read."""
        try:
            document = self.lake.read_json(self.lake.path(path))
        except FileNotFoundError:
            return None  # replaced meanwhile
        except ValueError as err:
            self.problem(path, f"unreadable pointer (not JSON): {err}")
            return None
        value = document.get(key) if isinstance(document, dict) else None
        return str(value) if value else None

    def aliases(self, path: str, models: set[tuple[str, str]]) -> None:
        self.count("aliases")
        name = path.split("/")[1]
        champion = self.pointer(path, "champion")
        if champion and (name, champion) not in models:
            self.problem(path, f"champion {champion} is not a registered version of {name}")

    def rehash(self) -> None:
        def one(item: tuple[str, tuple[str | None, int | None, str]]) -> str | None:
            path, (sha, rows, why) = item
            uri = self.lake.url(path)
            try:
                if sha is not None:
                    found = file_sha256(uri)
                    return None if found == sha else f"content differs from its SHA-256: {why}"
                if path.endswith(".parquet"):
                    with open_file(uri, "rb") as fh:
                        table = pq.read_table(fh)
                    if rows is not None and table.num_rows != rows:
                        return f"{table.num_rows} rows, {rows} recorded: {why}"
                    return None
                return _loads_as_model(uri, why)
            except (OSError, ValueError, pa.ArrowException) as err:
                return f"unreadable ({err}): {why}"

        items = sorted(self.to_hash.items())
        with ThreadPoolExecutor(max_workers=max(1, min(4, len(items)))) as pool:
            for (path, _), found in zip(items, pool.map(one, items), strict=True):
                self.count("rehashed")
                if found is not None:
                    self.problem(path, found)


def _loads_as_model(uri: str, why: str) -> str | None:
    import xgboost  # seconds to import: only a deep check of an old model needs it

    with open_file(uri, "rb") as fh:
        raw = fh.read()
    try:
        xgboost.Booster().load_model(bytearray(raw))
    except xgboost.core.XGBoostError as err:
        return f"not a loadable XGBoost model ({str(err).splitlines()[0]}): {why}"
    return None


def verify(lake: Lake, *, deep: bool = False, grace_hours: float = 24.0) -> VerifyReport:
    """Every problem found in ``lake`` (see the module); the report's ``ok`` when none."""
    check_format(lake)
    objects = inventory(lake)
    if not objects:
        raise LakeError(f"{lake.uri}: no lake there (nothing to verify)")
    checker = _Checker(lake, objects, deep=deep, grace_s=grace_hours * 3600)
    checker.run()
    # One problem per file: a partition missing from five versions is one missing partition.
    problems = sorted({p.uri: p for p in reversed(checker.problems)}.values(), key=lambda p: p.uri)
    return VerifyReport(lake=lake.uri, deep=deep, checked=checker.checked, problems=problems)
