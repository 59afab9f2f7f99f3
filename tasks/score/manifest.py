"""What a scoring run stands for, written last: one model version and its prediction files.

``predictions/<name>/<model version>/manifests/<run id>.json``; the run id hashes the model
version, the prediction files and the files set aside, so a re-run with nothing new finds
its manifest already there. ``predictions/<name>/latest.json`` points at the newest.
"""

from __future__ import annotations

from tasks.lake import Lake
from tasks.records import (
    DriftReport,
    ScoredSplit,
    ScoringManifest,
    ScoringModel,
    ScoringResult,
)
from tasks.score.model import remember_source
from tasks.spec import stable_hash


def manifest_path(lake: Lake, dataset: str, version: str, run_id: str) -> str:
    return lake.path("predictions", dataset, version, "manifests", f"{run_id}.json")


def write_manifest(
    *,
    lake: Lake,
    dataset: str,
    source: str,
    model: ScoringModel,
    scored: list[ScoredSplit],
    drift: DriftReport,
) -> ScoringManifest:
    """Write (or find) the run's manifest, then point ``latest.json`` at it."""
    mixed = {s.model_version for s in scored} - {model.version}
    if mixed:
        # Never one manifest over two models' predictions.
        raise ValueError(f"splits scored by {sorted(mixed)} in a run of {model.version}")
    outputs = sorted({s.predictions_uri for s in scored if s.predictions_uri})
    quarantined = [q for s in scored for q in s.quarantined]
    run_id = stable_hash(
        {
            "model": model.version,
            "outputs": outputs,
            "quarantined": sorted(q.record_id for q in quarantined),
        }
    )
    path = manifest_path(lake, dataset, model.version, run_id)
    manifest = ScoringManifest(
        run_id=run_id,
        dataset=dataset,
        model_name=model.model_name,
        model_version=model.version,
        source_uri=source,
        outputs=outputs,
        rows=sum(s.rows for s in scored),
        files=[f.uri for s in scored for f in s.files],
        quarantined=quarantined,
        drift=drift,
        manifest_uri=lake.url_of(path),
    )
    if lake.exists(path):
        manifest = manifest.model_copy(
            update={"created_at": ScoringManifest.model_validate(lake.read_json(path)).created_at}
        )
    lake.write_json(path, manifest)
    lake.write_json(
        lake.path("predictions", dataset, "latest.json"),
        {"model_version": model.version, "run_id": run_id, "manifest": manifest.manifest_uri},
    )
    remember_source(lake, dataset, source, model, [s.split_id for s in scored])
    return manifest


def scoring_result(
    *,
    lake: Lake,
    model: ScoringModel,
    manifest: ScoringManifest,
    scored: list[ScoredSplit],
    from_cache: list[bool],
    spec: str = "",
    champion: str | None = None,
) -> ScoringResult:
    """What the run did, for the caller (``ScoringResult``) and the CLI's summary."""
    files = [f for s in scored for f in s.files]
    cached = sum(len(s.files) for s, hit in zip(scored, from_cache, strict=True) if hit)
    phases: dict[str, float] = {}
    for split, hit in zip(scored, from_cache, strict=True):
        for phase, value in ({} if hit else split.seconds).items():
            phases[phase] = round(phases.get(phase, 0.0) + value, 4)
    return ScoringResult(
        dataset=manifest.dataset,
        model_version=model.version,
        champion=model.champion,
        rows_scored=manifest.rows,
        files_total=len(files),
        files_new=len(files) - cached,
        files_cached=cached,
        files_quarantined=len(manifest.quarantined),
        predictions=manifest.outputs,
        manifest_uri=manifest.manifest_uri,
        drift=manifest.drift,
        quarantined=[q.reason for q in manifest.quarantined],
        lake=lake.uri,
        spec=spec,
        source=manifest.source_uri,
        training_source=model.training_source,
        split_seconds=phases,
        note=(
            f"scored before by {model.version}, whose predictions stand; the champion is now "
            f"{champion}: rescore to score with it"
            if champion and champion != model.version
            else ""
        ),
    )
