"""Mark: from the roots a retention policy keeps, everything they reference; the rest may go.

The references are the ones the lake already records (nothing new is written for gc):

    alias history, young versions ─▶ model versions ─▶ dataset version, partitions
    latest pointer, newest versions ─▶ dataset versions ─▶ partitions, validations, quarantine
    landing indexes (the next run's memory) ─▶ partitions, quarantine
    kept model versions ─▶ predictions, scoring manifests, reports
    cache records ─▶ whatever lake objects their result names

A cache record, a scoring index or a lease is kept only while everything it names is kept:
a cached ingest result naming a deleted partition would hand a later run a partition that
is not there. Kinds the layout does not name (``other``), pointers, decisions and the GC
records themselves are never deleted. Anything modified within the grace period is kept,
whatever references it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from tasks.lake import Lake, partition_of
from tasks.lakeops.inventory import LakeObject
from tasks.lakeops.policy import RetentionPolicy
from tasks.records import DatasetVersion, LandingIndex, ModelMetadata

logger = logging.getLogger(__name__)

_DATA_REF = re.compile(r"/((?:datasets/[^/]+/partitions|predictions/[^/]+/[^/]+)/[^/]+\.parquet)$")

# Small reads (manifests, cache records): on S3 their latency, not bandwidth, is the cost.
READ_THREADS = 16
GC_LEASES = "runs/leases/gc/"
NEVER_DELETED = frozenset({"identity", "pointer", "decision", "gc-record", "other"})
# Sweep order: what references goes before what it references, so a gc killed half-way
# leaves no record naming a deleted object.
SWEEP_ORDER = [
    "cache-record",
    "scoring-index",
    "lease",
    "scoring-manifest",
    "model-metadata",
    "landing-index",
    "dataset-version",
    "validation",
    "quarantine",
    "prediction",
    "model-file",
    "report",
    "partition",
    "checkpoint",
    "dask-report",
    "temporary",
]


@dataclass
class Marked:
    """What a mark found: what is kept (and why) and what is not."""

    objects: list[LakeObject]
    garbage: list[LakeObject]
    # Human descriptions of the roots, per model or dataset.
    roots: dict[str, list[str]] = field(default_factory=dict)
    kept_models: dict[str, set[str]] = field(default_factory=dict)
    kept_datasets: dict[str, set[str]] = field(default_factory=dict)

    @property
    def garbage_bytes(self) -> int:
        return sum(o.bytes for o in self.garbage)

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """(objects, bytes) of the garbage by kind, in sweep order."""
        totals: dict[str, tuple[int, int]] = {}
        for o in self.garbage:
            count, size = totals.get(o.kind, (0, 0))
            totals[o.kind] = (count + 1, size + o.bytes)
        return {k: totals[k] for k in SWEEP_ORDER if k in totals}


def _read_all(lake: Lake, paths: list[str], parse: Callable[[Any], Any]) -> dict[str, Any]:
    """``parse`` of each JSON object at ``paths`` (below the root); None where unreadable."""

    def one(path: str) -> Any:
        try:
            return parse(lake.read_json(lake.path(path)))
        except FileNotFoundError:
            return None  # deleted meanwhile (by a run replacing it, or another gc)
        except (ValueError, ValidationError) as err:
            logger.warning("%s cannot be read, so it is kept: %s", lake.url(path), err)
            return None

    if not paths:
        return {}
    with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(paths))) as pool:
        return dict(zip(paths, pool.map(one, paths), strict=True))


def _newest_history(aliases: dict[str, Any], keep: int) -> list[str]:
    """The current champion and the champions before it, newest first, ``keep`` of them."""
    order: list[str] = []
    champion = aliases.get("champion")
    if champion:
        order.append(str(champion))
    for entry in reversed(aliases.get("history", [])):
        for version in (entry.get("champion"), entry.get("previous")):
            if version and str(version) not in order:
                order.append(str(version))
    return order[:keep]


def lake_refs(value: Any) -> Iterable[str]:
    """Paths below the lake root of the partitions and prediction files ``value`` names.

    Matched by the layout, not the lake's URL: a lake restored or copied elsewhere still
    holds records naming the location they were written in, and their readers find the
    file in the lake they read (``tasks/ingest/versions.py``).
    """
    if isinstance(value, str):
        if "/" in value and (found := _DATA_REF.search(value)):
            yield found.group(1)
    elif isinstance(value, dict):
        for v in value.values():
            yield from lake_refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from lake_refs(v)


def _cache_record(document: Any) -> dict[str, Any]:
    """A Prefect result record: its expiry and the result's data (JSON-serialized)."""
    result = document.get("result")
    data = json.loads(result) if isinstance(result, str) else result
    return {"expiration": document.get("metadata", {}).get("expiration"), "data": data}


class _Marker:
    """One mark over one inventory (state while marking; :func:`mark` is the entry)."""

    def __init__(
        self, lake: Lake, objects: list[LakeObject], policy: RetentionPolicy, now: float
    ) -> None:
        self.lake = lake
        self.objects = objects
        self.policy = policy
        self.now = now
        self.young_after = now - policy.grace_hours * 3600
        self.recent_after = now - policy.keep_days * 86400
        self.keep: set[str] = set()
        self.roots: dict[str, list[str]] = {}
        self.of_kind: dict[str, list[LakeObject]] = {}
        for o in objects:
            self.of_kind.setdefault(o.kind, []).append(o)

    def paths(self, kind: str) -> list[str]:
        return [o.path for o in self.of_kind.get(kind, [])]

    def root(self, name: str, why: str) -> None:
        self.roots.setdefault(name, []).append(why)

    # Models ----------------------------------------------------------------------------
    def models(self) -> tuple[dict[str, set[str]], dict[str, ModelMetadata]]:
        metadata_paths = self.paths("model-metadata")
        metadata = {
            p: m
            for p, m in _read_all(self.lake, metadata_paths, ModelMetadata.model_validate).items()
            if m is not None
        }
        by_key = {(m.model_name, m.version): m for m in metadata.values()}
        aliases = _read_all(
            self.lake, [p for p in self.paths("pointer") if p.endswith("/aliases.json")], dict
        )
        latest = self.latest_datasets()
        kept: dict[str, set[str]] = {}
        for path, document in aliases.items():
            name = path.split("/")[1]
            history = _newest_history(document or {}, self.policy.keep_history)
            kept.setdefault(name, set()).update(history)
            if history:
                self.root(name, f"champion {history[0]}")
            if len(history) > 1:
                self.root(name, f"{len(history) - 1} rollback target(s): {', '.join(history[1:])}")
        for (name, version), m in by_key.items():
            why = None
            if m.created_at.timestamp() >= self.recent_after:
                why = f"registered within {self.policy.keep_days:g} days"
            elif latest.get(m.dataset) == m.dataset_version:
                why = "trained on the latest dataset version (a warm re-run reuses it)"
            elif self.is_young(f"models/{name}/versions/{version}/metadata.json"):
                why = "written within the grace period"
            if why and version not in kept.get(name, set()):
                kept.setdefault(name, set()).add(version)
                self.root(name, f"{version}: {why}")
        return kept, {f"{m.model_name}/{m.version}": m for m in by_key.values()}

    def latest_datasets(self) -> dict[str, str]:
        pointers = [
            p for p in self.paths("pointer") if p.startswith("datasets/") and p.count("/") == 2
        ]
        found = _read_all(self.lake, pointers, dict)
        return {
            p.split("/")[1]: str(d["version"]) for p, d in found.items() if d and "version" in d
        }

    # Datasets --------------------------------------------------------------------------
    def datasets(
        self, kept_models: dict[str, set[str]], metadata: dict[str, ModelMetadata]
    ) -> tuple[dict[str, set[str]], dict[str, DatasetVersion]]:
        versions = {
            p: v
            for p, v in _read_all(
                self.lake, self.paths("dataset-version"), DatasetVersion.model_validate
            ).items()
            if v is not None
        }
        latest = self.latest_datasets()
        by_dataset: dict[str, list[DatasetVersion]] = {}
        for v in versions.values():
            by_dataset.setdefault(v.dataset, []).append(v)
        kept: dict[str, set[str]] = {}
        for name, found in by_dataset.items():
            newest = sorted(found, key=lambda v: v.created_at, reverse=True)
            chosen = {v.version for v in newest[: self.policy.keep_datasets]}
            if name in latest:
                chosen.add(latest[name])
            self.root(name, f"{len(chosen)} newest dataset version(s)")
            kept[name] = chosen
        for name, versions_kept in kept_models.items():
            for version in versions_kept:
                m = metadata.get(f"{name}/{version}")
                if m is not None:
                    kept.setdefault(m.dataset, set()).add(m.dataset_version)
        for path, v in versions.items():
            if self.is_young(path):
                kept.setdefault(v.dataset, set()).add(v.version)
        return kept, {f"{v.dataset}/{v.version}": v for v in versions.values()}

    def is_young(self, path: str) -> bool:
        return self.modified.get(path, 0.0) >= self.young_after

    @property
    def modified(self) -> dict[str, float]:
        if not hasattr(self, "_modified"):
            self._modified = {o.path: o.modified for o in self.objects}
        return self._modified

    # The mark --------------------------------------------------------------------------
    def run(self) -> Marked:
        kept_models, metadata = self.models()
        kept_datasets, versions = self.datasets(kept_models, metadata)
        keep = self.keep
        partitions: set[str] = set()  # paths
        quarantined: set[str] = set()  # record ids
        for name, ids in kept_datasets.items():
            for version in ids:
                v = versions.get(f"{name}/{version}")
                keep.add(f"datasets/{name}/versions/{version}.json")
                if v is None:
                    continue
                partitions.update(
                    f"datasets/{name}/partitions/{p.partition_id}.parquet" for p in v.partitions
                )
                quarantined.update(q.record_id for q in v.quarantined)
        for name, ids in kept_models.items():
            for version in ids:
                m = metadata.get(f"{name}/{version}")
                if m is not None:
                    partitions.update(p for uri in m.partitions for p in lake_refs(uri))
        # Landing indexes: the next run's memory of a landing folder. One that was written
        # recently, or whose folder a kept version came from, is kept with what it names.
        kept_sources = {
            v.source_uri.rstrip("/")
            for name, ids in kept_datasets.items()
            for version in ids
            if (v := versions.get(f"{name}/{version}")) is not None
        }
        indexes = _read_all(self.lake, self.paths("landing-index"), LandingIndex.model_validate)
        for path, index in indexes.items():
            recent = self.modified.get(path, 0.0) >= self.recent_after
            if index is None or recent or index.source_uri.rstrip("/") in kept_sources:
                keep.add(path)
                if index is not None:
                    name = path.split("/")[1]
                    for split in index.splits:
                        partitions.update(
                            f"datasets/{name}/partitions/{p.partition_id}.parquet"
                            for p in split.partitions
                        )
                        quarantined.update(q.record_id for q in split.quarantined)
        keep.update(partitions)
        kept_partition_ids = {partition_of(p) for p in partitions}
        self.mark_dataset_files(kept_datasets, quarantined, kept_partition_ids)
        self.mark_model_files(kept_models, metadata)
        self.mark_records(kept_partition_ids, kept_models)
        garbage = [
            o
            for o in self.objects
            if o.path not in keep and o.kind not in NEVER_DELETED and not self.is_young(o.path)
        ]
        return Marked(
            objects=self.objects,
            garbage=garbage,
            roots=self.roots,
            kept_models=kept_models,
            kept_datasets=kept_datasets,
        )

    def mark_dataset_files(
        self, kept: dict[str, set[str]], quarantined: set[str], partition_ids: set[str]
    ) -> None:
        for path in self.paths("validation"):
            name, version = path.split("/")[1], path.rsplit("/", 1)[1].split("-", 1)[0]
            if version in kept.get(name, set()):
                self.keep.add(path)
        records = _read_all(self.lake, self.paths("quarantine"), dict)
        for path, record in records.items():
            record_id = path.rsplit("/", 1)[1].removesuffix(".json")
            named = (record or {}).get("partition_id")
            if record is None or record_id in quarantined or named in partition_ids:
                self.keep.add(path)

    def mark_model_files(
        self, kept: dict[str, set[str]], metadata: dict[str, ModelMetadata]
    ) -> None:
        for kind in ("model-metadata", "model-file", "prediction", "scoring-manifest", "report"):
            for path in self.paths(kind):
                parts = path.split("/")
                # models/<n>/versions/<v>/…, predictions/<n>/<v>/…, runs/reports/<n>/<v>/…
                name, version = {
                    "models": (parts[1], parts[3] if len(parts) > 3 else ""),
                    "predictions": (parts[1], parts[2]),
                    "runs": (parts[2], parts[3]),
                }[parts[0]]
                if version in kept.get(name, set()):
                    self.keep.add(path)
        # A checkpoint is cleared when its model is registered: one that is left belongs to
        # a training that did not finish, which a re-run resumes.
        for path in self.paths("checkpoint"):
            _, _, name, version, _ = path.split("/", 4)
            registered = f"{name}/{version}" in metadata
            if not registered and self.modified.get(path, 0.0) >= self.recent_after:
                self.keep.add(path)
        for path in self.paths("dask-report"):
            if self.modified.get(path, 0.0) >= self.recent_after:
                self.keep.add(path)

    def mark_records(self, partition_ids: set[str], kept_models: dict[str, set[str]]) -> None:
        """Cache records, scoring indexes and leases: kept while all they name is kept."""
        records = _read_all(self.lake, self.paths("cache-record"), _cache_record)
        now = datetime.fromtimestamp(self.now).astimezone()
        for path, record in records.items():
            if record is None:
                self.keep.add(path)
                continue
            expiration = record["expiration"]
            if expiration and datetime.fromisoformat(expiration) <= now:
                continue
            data = record["data"]
            named = set(lake_refs(data))
            body = data.get("data", {}) if isinstance(data, dict) else {}
            pid = body.get("partition_id") if isinstance(body, dict) else None
            if pid is not None and pid not in partition_ids:
                continue
            # Naming a file that is gone (or going) makes a record that would mislead.
            if all(p in self.keep for p in named):
                self.keep.add(path)
        indexes = _read_all(self.lake, self.paths("scoring-index"), dict)
        for path, index in indexes.items():
            name = path.split("/")[1]
            if index is None or str(index.get("model_version")) in kept_models.get(name, set()):
                self.keep.add(path)
        # The gc lease's generations are gc's own (each gc takes the next); the others go
        # once released or expired.
        leases = _read_all(
            self.lake, [p for p in self.paths("lease") if not p.startswith(GC_LEASES)], dict
        )
        self.keep.update(p for p in self.paths("lease") if p.startswith(GC_LEASES))
        for path, lease in leases.items():
            live = (
                lease is not None
                and not lease.get("released")
                and lease.get("expires_at", 0) > self.now
            )
            if lease is None or live:
                self.keep.add(path)


def mark(
    lake: Lake,
    objects: list[LakeObject],
    policy: RetentionPolicy,
    *,
    now: float,
    dataset: str | None = None,
) -> Marked:
    """What ``policy`` keeps of ``objects`` (an inventory of ``lake``) at ``now``, and the
    garbage: with ``dataset``, only that dataset's (and the cache records naming it)."""
    marked = _Marker(lake, objects, policy, now).run()
    if dataset is not None:
        own = f"/{dataset}/"
        dropped = {o.path for o in marked.garbage if own in f"/{o.path}"}
        mine = [o for o in marked.garbage if own in f"/{o.path}" and o.kind != "cache-record"]
        # Cache records are lake-wide: those naming this dataset's garbage go with it.
        records = _read_all(
            lake, [o.path for o in marked.garbage if o.kind == "cache-record"], _cache_record
        )
        naming = {p for p, r in records.items() if r and set(lake_refs(r["data"])) & dropped}
        marked.garbage = [o for o in marked.garbage if o.path in naming] + mine
    return marked
