"""Lineage: where a model came from and where it went, from the records the lake holds.

model → dataset version → partitions → landing files (URIs and content identities) → the
spec and training hashes and package versions → the decisions that promoted or demoted it
→ the scoring runs that used it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from blocks.registry import ModelRegistry
from tasks.errors import LakeError, RegistryError
from tasks.ingest.versions import load_version
from tasks.lake import Lake, partition_of
from tasks.records import PromotionDecision, ScoringManifest


class LineageFile(BaseModel):
    uri: str
    sha256: str
    tag: str | None
    rows: int


class LineagePartition(BaseModel):
    partition_id: str
    rows: int
    bytes: int
    sha256: str | None
    files: list[LineageFile]


class LineageScoring(BaseModel):
    run_id: str
    created_at: datetime
    source: str
    rows: int
    files: int
    drift: str
    manifest_uri: str


class Lineage(BaseModel):
    model: str
    version: str
    champion: bool
    created_at: datetime
    metric: str
    value: float | None
    # How it was made.
    spec_hash: str
    training_hash: str
    package_version: str
    xgboost_version: str
    params: dict[str, Any]
    warm_started_from: str | None = None
    resumed_from_round: int | None = None
    # What it learned from; None when the lake no longer holds that dataset version.
    dataset: str
    dataset_version: str
    source_uri: str | None = None
    rows: dict[str, int] = Field(default_factory=dict)
    partitions: list[LineagePartition] = Field(default_factory=list)
    quarantined: dict[str, str] = Field(default_factory=dict)
    # What was decided about it, and what it scored.
    decisions: list[PromotionDecision] = Field(default_factory=list)
    alias_history: list[dict[str, Any]] = Field(default_factory=list)
    scoring_runs: list[LineageScoring] = Field(default_factory=list)

    @property
    def files(self) -> list[LineageFile]:
        return list({f.uri: f for p in self.partitions for f in p.files}.values())


def parse_reference(reference: str) -> tuple[str, str | None]:
    """``NAME`` (the champion) or ``NAME@VERSION``."""
    name, _, version = reference.partition("@")
    if not name:
        raise ValueError(f"{reference!r}: expected NAME or NAME@VERSION")
    return name, version or None


def lineage(lake: Lake, name: str, version: str | None = None) -> Lineage:
    """The lineage of ``name@version`` (default: the champion) in ``lake``."""
    registry = ModelRegistry(lake=lake.uri)
    champion = registry.champion(name)
    version = version or champion
    if version is None:
        raise RegistryError(f"model '{name}' has no champion in {lake.uri}; name a version")
    m = registry.metadata(name, version)
    found = Lineage(
        model=name,
        version=version,
        champion=version == champion,
        created_at=m.created_at,
        metric=m.metric,
        value=m.metrics.get(m.metric),
        spec_hash=m.spec_hash,
        training_hash=m.training_hash,
        package_version=m.package_version,
        xgboost_version=m.xgboost_version,
        params=m.params,
        warm_started_from=m.warm_start.base_version if m.warm_start else None,
        resumed_from_round=m.resumed_from_round,
        dataset=m.dataset,
        dataset_version=m.dataset_version,
        rows=m.rows,
    )
    trained_on = {partition_of(uri) for uri in m.partitions}
    try:
        data = load_version(lake, m.dataset, m.dataset_version)
    except LakeError:
        data = None
    if data is not None:
        found.source_uri = data.source_uri
        found.partitions = [
            LineagePartition(
                partition_id=p.partition_id,
                rows=p.rows,
                bytes=p.bytes,
                sha256=p.sha256,
                files=[
                    LineageFile(uri=s.source_uri, sha256=s.sha256, tag=s.tag, rows=s.rows)
                    for s in p.segments
                ],
            )
            for p in data.partitions
            if p.partition_id in trained_on
        ]
        found.quarantined = {q.source_uri: q.reason for q in data.quarantined}
    found.decisions = [
        d
        for d in registry.decisions(name)
        if version in (d.candidate, d.champion_before, d.champion_after)
    ]
    found.alias_history = [
        h
        for h in registry.aliases(name).get("history", [])
        if version in (h.get("champion"), h.get("previous"))
    ]
    found.scoring_runs = scoring_runs(lake, name, version)
    return found


def scoring_runs(lake: Lake, name: str, version: str) -> list[LineageScoring]:
    """The scoring runs whose predictions ``name@version`` made, oldest first."""
    paths = lake.list_files(lake.path("predictions", name, version, "manifests"), ".json")
    runs = []
    for path in paths:
        manifest = ScoringManifest.model_validate(lake.read_json(path))
        runs.append(
            LineageScoring(
                run_id=manifest.run_id,
                created_at=manifest.created_at,
                source=manifest.source_uri,
                rows=manifest.rows,
                files=len(manifest.files),
                drift=manifest.drift.status,
                manifest_uri=lake.url_of(path),
            )
        )
    return sorted(runs, key=lambda r: r.created_at)


def render(found: Lineage, *, files_shown: int = 20) -> str:
    """The lineage as text for a terminal (``--json`` gives all of it)."""
    value = "n/a" if found.value is None else f"{found.value:.4f}"
    lines = [
        f"model      {found.model}@{found.version}"
        + (" (champion)" if found.champion else "")
        + f", registered {found.created_at:%Y-%m-%d %H:%M:%S}, test {found.metric} {value}",
        f"made by    spec {found.spec_hash}, training {found.training_hash}, "
        f"mlops-pipelines {found.package_version}, xgboost {found.xgboost_version}",
    ]
    if found.warm_started_from:
        lines.append(f"           warm-started from {found.model}@{found.warm_started_from}")
    if found.resumed_from_round is not None:
        lines.append(f"           resumed from the checkpoint at round {found.resumed_from_round}")
    rows = ", ".join(f"{k} {v:,}" for k, v in found.rows.items())
    lines.append(f"data       {found.dataset} version {found.dataset_version} ({rows})")
    if found.source_uri is None:
        lines.append("           (that dataset version is no longer in the lake)")
    else:
        files = found.files
        lines.append(
            f"           from {found.source_uri}: {len(files)} landing file(s) in "
            f"{len(found.partitions)} partition(s)"
        )
        lines += [
            f"           {f.uri}  sha256 {f.sha256[:16]}  {f.rows:,} rows"
            for f in files[:files_shown]
        ]
        if len(files) > files_shown:
            lines.append(f"           ... {len(files) - files_shown} more (--json lists all)")
        lines += [f"           quarantined {uri}: {why}" for uri, why in found.quarantined.items()]
    for d in found.decisions:
        if d.candidate == found.version:
            what = "promoted" if d.promoted else "not promoted"
        elif d.champion_before == found.version and d.champion_after != found.version:
            what = f"replaced by {d.champion_after}"
        else:
            what = "made champion again" if d.champion_after == found.version else "kept"
        lines.append(f"decision   {d.decided_at:%Y-%m-%d %H:%M:%S} {what}: {d.reason}")
    for run in found.scoring_runs:
        lines.append(
            f"scored     {run.created_at:%Y-%m-%d %H:%M:%S} {run.rows:,} rows from {run.source} "
            f"(drift {run.drift}) {run.manifest_uri}"
        )
    if not found.scoring_runs:
        lines.append("scored     never")
    return "\n".join(lines)
