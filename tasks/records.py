"""The small typed objects that cross task and flow boundaries: references, never data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator


def utcnow() -> datetime:
    return datetime.now(UTC)


class Segment(BaseModel):
    """Consecutive rows of one landing file inside a partition."""

    source_uri: str
    sha256: str
    format: str
    rows: int
    # First row of the segment in the file, and in the partition.
    file_start: int = 0
    start: int = 0
    # The store's identity of the file's bytes when it was read (None: written by 0.1,
    # which kept only the content hash).
    tag: str | None = None
    # Distinct values of category columns and of a classification target in these rows,
    # per column where they are fewer than the partition's (else the partition's hold).
    distinct: dict[str, list[str]] = Field(default_factory=dict)

    @property
    def stop(self) -> int:
        """One past the segment's last row in the partition."""
        return self.start + self.rows


class PartitionRef(BaseModel):
    """One typed Parquet partition in the lake: rows of one or more landing files."""

    partition_id: str
    uri: str
    rows: int
    bytes: int
    segments: list[Segment]
    # SHA-256 of the Parquet file (None: written before lake operations, by 0.1 or 0.2).
    sha256: str | None = None
    # The split (one ingest task's landing files) that wrote it.
    split_id: str = ""
    # Distinct values of category columns and of a classification target, so training
    # knows every category and class without another pass over the data.
    distinct: dict[str, list[str]] = Field(default_factory=dict)
    dropped_columns: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _one_file_partition_of_release_0_1(cls, data: Any) -> Any:
        """0.1 wrote one partition per file and described the file in the partition."""
        if isinstance(data, dict) and "segments" not in data and "source_uri" in data:
            data = dict(data)
            segment = {
                "source_uri": data.pop("source_uri"),
                "sha256": data.pop("source_hash"),
                "format": data.pop("source_format", ""),
                "rows": data.get("rows", 0),
            }
            data["segments"] = [segment]
        return data

    @property
    def sources(self) -> list[str]:
        """The landing files whose rows it holds, in order."""
        return list(dict.fromkeys(s.source_uri for s in self.segments))

    @property
    def label(self) -> str:
        """How people find it: its landing file, or the first of them and how many more."""
        sources = self.sources
        if len(sources) <= 1:
            return sources[0] if sources else self.partition_id
        return f"{sources[0]} (+{len(sources) - 1} files)"


class PartitionValidation(BaseModel):
    """What Great Expectations found in one partition."""

    partition_id: str
    # The landing file (or the partition's label) the result is about.
    source_uri: str
    success: bool
    rows: int
    evaluated: int
    failed: int
    unexpected_total: int
    expectations: list[ExpectationOutcome]
    # Great Expectations' own result (its JSON form), from which the Data Docs are built.
    gx_result: dict[str, Any] | None = None
    # A result about one file's rows of a partition: where they start in the partition.
    start: int | None = None


class ExpectationOutcome(BaseModel):
    type: str
    column: str | None = None
    success: bool
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    partial_unexpected: list[str] = Field(default_factory=list)
    error: str | None = None


class QuarantineRecord(BaseModel):
    """Why a landing file or a partition was set aside. Its data is kept, never deleted."""

    record_id: str
    stage: Literal["ingest", "validate", "score"]
    source_uri: str
    reason: str
    partition_id: str | None = None
    detected_at: datetime = Field(default_factory=utcnow)
    report: PartitionValidation | None = None


class LandingFile(BaseModel):
    """One landing file as the listing saw it."""

    uri: str
    bytes: int
    # What the store says identifies the file's bytes (S3 ETag; size, mtime and inode on a
    # disk): a changed file gets a new tag without being read. Keys the ingest cache.
    tag: str


class Split(BaseModel):
    """Landing files that one ingest task reads, in order, into partitions of bounded size:
    small files packed together, or one large file cut into pieces."""

    split_id: str
    files: list[LandingFile]
    estimated_bytes: int


class SplitOutcome(BaseModel):
    """What ingesting a split made: its partitions, and the files that were set aside."""

    split_id: str
    files: list[LandingFile]
    partitions: list[PartitionRef]
    quarantined: list[QuarantineRecord] = Field(default_factory=list)
    # Partitions this ingestion wrote; the others existed already (the same rows before).
    written: list[str] = Field(default_factory=list)
    # When a run with a cache expiry ingested it: the landing index keeps it until then.
    expires_at: datetime | None = None


class IngestPlan(BaseModel):
    """What an ingest run does: splits whose files are unchanged since the last run of this
    landing folder are kept as they are; the other files form new splits to ingest."""

    kept: list[SplitOutcome]
    todo: list[Split]
    # Partitions of a 0.1 lake adopted after re-hashing their landing file once.
    adopted: int = 0


class LandingIndex(BaseModel):
    """The splits of the last ingestion of one landing folder (the planner's memory)."""

    source_uri: str
    schema_hash: str
    partition_bytes: int
    partition_rows: int | None = None
    splits: list[SplitOutcome]


class DatasetVersion(BaseModel):
    """A dataset version manifest. Its id is the hash of its contents, so it is immutable."""

    dataset: str
    version: str
    created_at: datetime = Field(default_factory=utcnow)
    source_uri: str
    spec_hash: str
    schema_hash: str
    partitions: list[PartitionRef]
    quarantined: list[QuarantineRecord] = Field(default_factory=list)
    manifest_uri: str = ""

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.partitions)

    def bytes_of(self, partition_ids: list[str]) -> int:
        """Bytes of the given partitions of this version (e.g. the accepted ones)."""
        wanted = set(partition_ids)
        return sum(p.bytes for p in self.partitions if p.partition_id in wanted)

    @property
    def files(self) -> list[str]:
        """Every landing file of the version: those in its partitions and those set aside."""
        named = [s for p in self.partitions for s in p.sources]
        return list(dict.fromkeys([*named, *(q.source_uri for q in self.quarantined)]))


class IngestResult(BaseModel):
    """A dataset version plus what this run had to do to produce it."""

    version: DatasetVersion
    new_partitions: list[str]
    reused_partitions: list[str]
    # Landing files read by this run (new or changed ones, and those sharing a partition
    # with a changed or removed file); the rest were known and not read again.
    files_read: int = 0


class ValidationReport(BaseModel):
    dataset: str
    dataset_version: str
    expectations_hash: str
    created_at: datetime = Field(default_factory=utcnow)
    partitions: list[PartitionValidation]
    # Partitions with accepted rows, and those with none.
    accepted: list[str]
    rejected: list[str]
    ingest_quarantined: int
    total_files: int
    # Landing files whose rows failed (with why), and the rows of theirs each partition
    # must skip ([start, stop) in the partition). A packed partition that fails is
    # validated again per file (``segments``), so one bad file does not take its
    # partition-mates down.
    accepted_files: int = 0
    rejected_files: dict[str, str] = Field(default_factory=dict)
    excluded_rows: dict[str, list[tuple[int, int]]] = Field(default_factory=dict)
    segments: list[PartitionValidation] = Field(default_factory=list)
    accepted_fraction: float
    threshold: float
    passed: bool
    report_uri: str = ""


class ModelCandidate(BaseModel):
    """A registered model version and its test metrics."""

    model_name: str
    version: str
    dataset_version: str
    metric: str
    metrics: dict[str, float]
    best_iteration: int
    rows: dict[str, int]
    model_uri: str
    created_at: datetime
    reused: bool = False


class FeatureLayout(BaseModel):
    """How rows become a model's inputs: the model's features, categories, classes and split.

    Stored with every model, so a champion can be re-scored on a later candidate's data
    exactly as it was trained.
    """

    task: Literal["binary", "multiclass", "regression"]
    target: str
    key: str | None
    features: list[str]
    feature_types: dict[str, str]
    categories: dict[str, list[str]]
    classes: list[str] | None
    split: dict[str, Any]


class WarmStart(BaseModel):
    """How a model continues its base (the champion when it was trained) on new partitions."""

    base_version: str
    base_rounds: int
    rounds: int
    new_partitions: list[str]
    new_rows: int
    # The chain since the last model trained from scratch: after max_new_fraction of its
    # rows were added, training starts over.
    full_version: str
    full_rows: int
    rows_since_full: int
    # The base's test metrics on this model's test rows, scored while they were loaded:
    # promotion against the base (the champion) needs no second pass over the data.
    base_metrics: dict[str, float] = Field(default_factory=dict)


class ModelCurves(BaseModel):
    """One model's evaluation on a candidate's test rows, compact enough to keep with it:
    the curves a reviewer looks for by task (points downsampled)."""

    version: str
    role: Literal["candidate", "champion"]
    metrics: dict[str, float]
    # Binary: ROC (false positive rate, true positive rate), precision-recall (recall,
    # precision), calibration per bin (mean predicted, fraction positive, rows).
    roc: list[tuple[float, float]] = Field(default_factory=list)
    pr: list[tuple[float, float]] = Field(default_factory=list)
    calibration: list[tuple[float, float, int]] = Field(default_factory=list)
    # Multiclass: rows by true class (outer) and predicted class (inner).
    confusion: list[list[int]] = Field(default_factory=list)
    # Regression: (prediction, residual) for a sample of the test rows.
    residuals: list[tuple[float, float]] = Field(default_factory=list)


class Evaluation(BaseModel):
    """``evaluation.json`` beside a model: the candidate (and the champion when it encodes
    rows the same way) on the candidate's test rows, and global SHAP importance."""

    task: Literal["binary", "multiclass", "regression"]
    classes: list[str] | None = None
    test_rows: int
    models: list[ModelCurves]
    # Mean |TreeSHAP contribution| per feature on a sample of the test rows.
    shap: dict[str, float] = Field(default_factory=dict)
    shap_rows: int = 0


class ModelMetadata(BaseModel):
    """``metadata.json`` next to ``model.ubj``: everything needed to trust and re-score a model."""

    model_name: str
    version: str
    created_at: datetime = Field(default_factory=utcnow)
    layout: FeatureLayout
    params: dict[str, Any]
    num_boost_round: int
    early_stopping_rounds: int | None
    best_iteration: int
    best_score: float | None
    metric: str
    direction: Literal["maximize", "minimize"]
    metrics: dict[str, float]
    rows: dict[str, int]
    eval_history: dict[str, dict[str, list[float]]]
    dataset: str
    dataset_version: str
    partitions: list[str]
    # Rows of rejected landing files in the partitions above, skipped ([start, stop)).
    excluded_rows: dict[str, list[tuple[int, int]]] = Field(default_factory=dict)
    spec_hash: str
    training_hash: str
    package_version: str
    xgboost_version: str
    workers: int
    timings: dict[str, float]
    # Set when training continued from a checkpoint (after a lost worker or a crash).
    resumed_from_round: int | None = None
    # Set when the model boosted its base further on new partitions only.
    warm_start: WarmStart | None = None
    # Each feature's average gain (XGBoost's importance), for cards and reports.
    importance: dict[str, float] = Field(default_factory=dict)
    # Of model.ubj, set when registered (None: registered before lake operations).
    model_sha256: str | None = None
    model_bytes: int | None = None


class PromotionDecision(BaseModel):
    model_name: str
    candidate: str
    champion_before: str | None
    champion_after: str | None
    metric: str
    direction: Literal["maximize", "minimize"]
    candidate_value: float | None
    champion_value: float | None
    min_improvement: float
    promoted: bool
    reason: str
    decided_at: datetime = Field(default_factory=utcnow)


class FeatureProfile(BaseModel):
    """One column's distribution, compact and mergeable: bins (or categories) with counts.

    Numeric: ``edges`` are the inner bin edges (quantiles of the training rows), ``counts``
    one per bin (``len(edges) + 1``: below the first edge, between each pair, from the last
    up). Categorical: a count per category. Profiles of the same edges merge by adding counts.
    """

    kind: Literal["numeric", "categorical"]
    rows: int = 0
    nulls: int = 0
    edges: list[float] = Field(default_factory=list)
    counts: list[int] = Field(default_factory=list)
    categories: dict[str, int] = Field(default_factory=dict)

    @property
    def null_fraction(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0


class DataProfile(BaseModel):
    """The distribution of a model's inputs (and of its predictions) over some rows: a model's
    training rows (``profile.json`` beside the model) or a scoring run's rows."""

    rows: int
    features: dict[str, FeatureProfile]
    # Positive-class probability (binary), predicted class (multiclass) or value (regression).
    prediction: FeatureProfile | None = None
    # Which rows: "train" (a model trained from scratch), "validation" (a warm start: every
    # partition's validation rows, a hash sample of the same data) or "scored".
    rows_of: str = "train"


class ScoringModel(BaseModel):
    """The model a scoring run uses, resolved (and checked against the spec) before any data
    is read."""

    model_name: str
    version: str
    model_uri: str
    layout: FeatureLayout
    # The model's test metrics and the one promotion compares (for the realized metric).
    metric: str
    metrics: dict[str, float] = Field(default_factory=dict)
    # The model's training profile, when it has one (models of 0.1 have none).
    profile: DataProfile | None = None
    # Whether the caller asked for the champion (and so which version was the champion).
    champion: bool = False
    # The landing location the model's dataset version was ingested from (what a retraining
    # reads again); "" when the lake no longer has that version.
    training_source: str = ""


class ScoredSplit(BaseModel):
    """What scoring one split of landing files made: a Parquet file of predictions, the
    profile of the scored rows, and the files set aside."""

    split_id: str
    files: list[LandingFile]
    model_version: str
    predictions_uri: str | None
    rows: int
    profile: DataProfile
    quarantined: list[QuarantineRecord] = Field(default_factory=list)
    # Sums for the realized metric over the scored rows that carry the target (else empty).
    labeled: dict[str, list[float]] = Field(default_factory=dict)
    # The files scored whose every row carries the target.
    labeled_files: list[str] = Field(default_factory=list)
    # Where the split's time went: check, predict, profile, write, and the total (the rest
    # is reading and casting).
    seconds: dict[str, float] = Field(default_factory=dict)


class FeatureDrift(BaseModel):
    """How one feature (or the prediction) of the scored rows moved from the training rows."""

    feature: str
    kind: Literal["numeric", "categorical"]
    psi: float
    js_distance: float
    null_fraction_train: float
    null_fraction_scored: float
    # Share of the scored (non-null) values that are categories the model never saw.
    unseen_share: float = 0.0
    unseen: list[str] = Field(default_factory=list)
    verdict: Literal["ok", "warn", "alert"]


class DriftReport(BaseModel):
    """A scoring run's rows compared with the model's training profile."""

    model_name: str
    model_version: str
    rows: int
    # "no-profile": the model has none; "too-few-rows": fewer than monitoring.min_rows.
    status: Literal["ok", "warn", "alert", "no-profile", "too-few-rows"]
    features: list[FeatureDrift] = Field(default_factory=list)
    prediction: FeatureDrift | None = None
    # The realized metric on scored rows that carry the target, against the model's test value.
    metric: str | None = None
    realized: float | None = None
    expected: float | None = None
    thresholds: dict[str, float] = Field(default_factory=dict)
    # The scored rows' profile (on the training profile's bins), for the report page.
    scored_profile: DataProfile | None = None

    @property
    def drifted(self) -> list[str]:
        """Features whose drift is at the alert level."""
        return [f.feature for f in self.features if f.verdict == "alert"]


class ScoringManifest(BaseModel):
    """One scoring run, written last: every prediction file it stands for, one model version."""

    run_id: str
    dataset: str
    model_name: str
    model_version: str
    source_uri: str
    created_at: datetime = Field(default_factory=utcnow)
    outputs: list[str]
    rows: int
    files: list[str]
    quarantined: list[QuarantineRecord] = Field(default_factory=list)
    drift: DriftReport
    manifest_uri: str = ""


class ScoringResult(BaseModel):
    """What one ``score_flow`` run did."""

    dataset: str
    model_version: str
    champion: bool
    rows_scored: int
    files_total: int
    files_new: int
    files_cached: int
    files_quarantined: int
    predictions: list[str]
    manifest_uri: str
    drift: DriftReport
    quarantined: list[str] = Field(default_factory=list)
    lake: str = ""
    # The spec and the scored location as the run was given them, and where the model's
    # training data landed: what a retraining started by the drift event needs.
    spec: str = ""
    source: str = ""
    training_source: str = ""
    # Labeled files of a drifted batch copied into the training landing
    # (``monitoring.retrain_with_scored``).
    added_to_training: list[str] = Field(default_factory=list)
    # Why the model is not the one asked for (an earlier champion's predictions stand).
    note: str = ""
    # Seconds of the splits scored now, added up by phase (worker time, not wall time).
    split_seconds: dict[str, float] = Field(default_factory=dict)

    def summary(self) -> str:
        """A few lines for a human at a terminal."""
        which = "champion" if self.champion else self.note or "as named"
        lines = [
            f"model     {self.dataset}@{self.model_version} ({which})",
            f"scored    {self.rows_scored:,} rows from {self.files_total} file(s): "
            f"{self.files_new} new, {self.files_cached} cached, "
            f"{self.files_quarantined} quarantined",
            f"manifest  {self.manifest_uri}",
        ]
        drift = self.drift
        if drift.status in ("no-profile", "too-few-rows"):
            why = (
                "the model has no training profile"
                if drift.status == "no-profile"
                else f"fewer scored rows than monitoring.min_rows ({drift.rows:,})"
            )
            lines.append(f"drift     not judged: {why}")
        else:
            lines.append(
                f"drift     {drift.status}"
                + (f": {', '.join(drift.drifted)}" if drift.drifted else "")
            )
            # Every feature that moved, or at least the one that moved most.
            ranked = sorted(drift.features, key=lambda f: -f.psi)
            shown = [f for f in ranked if f.verdict != "ok"] or ranked[:1]
            for f in shown:
                extra = f", unseen {f.unseen_share:.1%}" if f.unseen_share else ""
                lines.append(f"  {f.verdict:<5} {f.feature}: PSI {f.psi:.3f}{extra}")
            if drift.prediction is not None:
                lines.append(f"  prediction PSI {drift.prediction.psi:.3f}")
            if drift.realized is not None and drift.metric is not None:
                lines.append(
                    f"  realized {drift.metric} {drift.realized:.4f} "
                    f"(test: {drift.expected if drift.expected is not None else float('nan'):.4f})"
                )
        if self.added_to_training:
            lines.append(
                f"training  {len(self.added_to_training)} labeled file(s) added to "
                f"{self.training_source} for the retraining"
            )
        lines += [f"quarantined  {q}" for q in self.quarantined]
        return "\n".join(lines)


class PipelineResult(BaseModel):
    """What one ``ml_pipeline`` run did, end to end."""

    dataset: str
    dataset_version: str
    # Landing files: all of them, those whose rows were accepted, those set aside (at
    # ingestion or validation), and those this run read (the others were known).
    files_total: int
    files_accepted: int
    files_quarantined: int
    files_read: int
    # Partitions of the version, those with accepted rows, and those written by this run.
    partitions_total: int
    partitions_accepted: int
    new_partitions: int
    rows: int
    model_version: str
    model_reused: bool
    metric: str
    metrics: dict[str, float]
    promoted: bool
    champion: str | None
    reason: str
    lake: str
    quarantined: list[str] = Field(default_factory=list)
    # Wall time of each stage in this run, and rows by split (train, validation, test).
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    split_rows: dict[str, int] = Field(default_factory=dict)

    def summary(self) -> str:
        """A few lines for a human at a terminal."""
        outcome = "promoted to champion" if self.promoted else "not promoted"
        metric_value = self.metrics.get(self.metric)
        shown = f"{metric_value:.4f}" if metric_value is not None else "n/a"
        lines = [
            f"dataset   {self.dataset} version {self.dataset_version}: {self.rows:,} rows from "
            f"{self.files_accepted}/{self.files_total} accepted landing files "
            f"({self.files_read} read now, {self.files_quarantined} quarantined) in "
            f"{self.partitions_accepted} partition(s) ({self.new_partitions} new)",
            f"model     {self.model_name_version()}: test {self.metric} = {shown}"
            + (" (reused: same data and spec as before)" if self.model_reused else ""),
            f"decision  {outcome}: {self.reason}",
            f"champion  {self.champion or 'none'}",
            f"lake      {self.lake}",
        ]
        if self.stage_seconds:
            lines.append(
                "stages    " + ", ".join(f"{k} {v:.1f} s" for k, v in self.stage_seconds.items())
            )
        lines += [f"quarantined  {q}" for q in self.quarantined]
        return "\n".join(lines)

    def model_name_version(self) -> str:
        return f"{self.dataset}@{self.model_version}"


class KindTotal(BaseModel):
    objects: int = 0
    bytes: int = 0


class GcReport(BaseModel):
    """What one garbage collection found (a dry run) or deleted (``applied``)."""

    lake: str
    dataset: str | None = None
    applied: bool
    policy: dict[str, Any]
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    objects: int
    bytes: int
    # The garbage by kind (in the order it is deleted), and every path of it.
    garbage: dict[str, KindTotal]
    paths: list[str]
    # Why what is kept is kept: per model or dataset, its roots.
    roots: dict[str, list[str]] = Field(default_factory=dict)
    record_uri: str = ""

    @property
    def garbage_objects(self) -> int:
        return sum(t.objects for t in self.garbage.values())

    @property
    def garbage_bytes(self) -> int:
        return sum(t.bytes for t in self.garbage.values())


class LakeProblem(BaseModel):
    """One thing wrong in a lake: the file, and what is wrong with it."""

    uri: str
    problem: str


class VerifyReport(BaseModel):
    lake: str
    deep: bool
    checked: dict[str, int]
    problems: list[LakeProblem]

    @property
    def ok(self) -> bool:
        return not self.problems


class BackupReport(BaseModel):
    source: str
    target: str
    objects: int
    copied: int
    copied_bytes: int
    skipped: int
    # The target's check after the copy.
    verified: VerifyReport
    seconds: float


PartitionValidation.model_rebuild()
