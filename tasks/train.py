"""Training: accepted partitions → deterministic split → xgboost.dask → a registered model version.

Rows are assigned to train/validation/test by a hash of the key column (or of the whole row
when there is no key), so the split never depends on file order, partitioning or the
cluster. A model version's id is the hash of its inputs (partitions, training spec, XGBoost
version): the same inputs give the same version, which is reused instead of retrained.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from prefect import task
from pydantic import BaseModel

from blocks.registry import ModelRegistry
from tasks.checkpoint import (
    PROGRESS_TOPIC,
    Checkpoints,
    History,
    best_round,
    checkpoint_callback,
    merge_history,
    progress_callback,
    stopped_early,
)
from tasks.cluster import stage_client
from tasks.errors import TrainingError, ValidationFailed
from tasks.lake import Lake
from tasks.models import (
    DatasetVersion,
    FeatureLayout,
    ModelCandidate,
    ModelMetadata,
    ValidationReport,
    WarmStart,
)
from tasks.observability import StageProgress
from tasks.retries import IO_RETRIES, TRAINING_RETRIES
from tasks.spec import DatasetSpec, stable_hash
from tasks.storage import storage_options
from tasks.validate import report_path

if TYPE_CHECKING:
    import dask.dataframe as dd
    import xgboost
    from distributed import Client

SPLIT_COLUMN = "__split__"
LABEL_COLUMN = "__label__"
SPLITS = {"train": 0, "validation": 1, "test": 2}


# Layout and labels (pure) ------------------------------------------------------------------
def _natural_order(values: set[str]) -> list[str]:
    """Sort class labels numerically when they are numbers, else as text."""
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def feature_layout(
    spec: DatasetSpec, version: DatasetVersion, accepted: list[str]
) -> FeatureLayout:
    """Features, categories and classes for training on the accepted partitions of ``version``."""
    parts = [p for p in version.partitions if p.partition_id in set(accepted)]
    categories: dict[str, list[str]] = {}
    for name in spec.feature_columns:
        column = spec.columns[name]
        if column.type != "category":
            continue
        seen = set().union(*(p.distinct.get(name, []) for p in parts)) if parts else set()
        categories[name] = list(column.categories) if column.categories else sorted(seen)
    classes: list[str] | None = None
    if spec.task != "regression":
        seen = set().union(*(p.distinct.get(spec.target, []) for p in parts)) if parts else set()
        classes = _natural_order(seen)
        if len(classes) < 2:
            raise TrainingError(
                f"target '{spec.target}' has {len(classes)} class(es) "
                f"({', '.join(classes) or 'none'}) in the accepted partitions of dataset "
                f"'{spec.name}' version {version.version}; a {spec.task} task needs at least two"
            )
        if spec.task == "binary" and len(classes) > 2:
            raise TrainingError(
                f"target '{spec.target}' has {len(classes)} classes ({', '.join(classes[:10])}) "
                f"but the spec's task is binary; use task: multiclass"
            )
    return FeatureLayout(
        task=spec.task,
        target=spec.target,
        key=spec.key,
        features=spec.feature_columns,
        feature_types={f: spec.columns[f].type for f in spec.feature_columns},
        categories=categories,
        classes=classes,
        # The columns the split hashes are part of the model's record: a champion can only
        # be compared on a candidate's test rows when both drew them the same way.
        split={
            **spec.split.model_dump(mode="json"),
            "columns": [spec.key] if spec.key else sorted(spec.columns),
        },
    )


def _canonical(series: pd.Series) -> pd.Series:
    """One representation per value, whatever dtype the column was read back with.

    A key column read as int64 from one file and float64 from another (because it held
    nulls) must hash the same, or a row could land in train from one file and test from
    another.
    """
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.astype("float64")
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return pd.to_datetime(series).astype("datetime64[us]").astype("int64").astype("float64")
    values = series.astype("object").where(series.notna(), None)
    is_text = isinstance(series.dtype, pd.CategoricalDtype) and pd.api.types.is_string_dtype(
        series.dtype.categories.dtype
    )
    if is_text or pd.api.types.is_string_dtype(series.dtype):
        return values
    # Mixed objects (e.g. nullable booleans): spell each value the way class labels are.
    return values.map(lambda v: None if v is None else class_name(v))


def split_codes(frame: pd.DataFrame, *, key: str | None, split: dict[str, Any]) -> np.ndarray:
    """0 = train, 1 = validation, 2 = test for each row, from a stable hash."""
    # Without a key, a row is identified by all its columns (in name order, so reading
    # columns in another order cannot move a row to another split).
    columns = split.get("columns") or (
        [key] if key else sorted(c for c in frame.columns if not c.startswith("__"))
    )
    canonical = pd.DataFrame({c: _canonical(frame[c]) for c in columns}, index=frame.index)
    hashed = pd.util.hash_pandas_object(canonical, index=False).to_numpy()
    salt = str(split.get("salt", ""))
    if salt:
        # Mix the salt into every hash (pandas only salts text values).
        seed = np.uint64(int(hashlib.sha256(salt.encode()).hexdigest()[:16], 16))
        hashed = pd.util.hash_array(hashed ^ seed)
    u = (hashed % np.uint64(10_000)).astype("float64") / 10_000.0
    test, validation = float(split["test"]), float(split["validation"])
    return np.where(u < test, 2, np.where(u < test + validation, 1, 0)).astype("int8")


def class_name(value: object) -> str:
    """A class label as text, the way ingestion records it (an int column read back as
    floats because it held nulls still names its classes ``1``, not ``1.0``)."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def _as_float(series: pd.Series, kind: str) -> pd.Series:
    """A feature as float32: what XGBoost stores features as anyway, so nothing it sees
    changes, while the prepared partitions held in worker memory take half the space."""
    if kind == "bool":
        values = series.map({True: 1.0, False: 0.0})
    elif kind == "datetime":
        # XGBoost has no time type: seconds since the epoch keep order and spacing.
        values = (pd.to_datetime(series) - pd.Timestamp(0)).dt.total_seconds()
    else:
        values = pd.to_numeric(series, errors="coerce")
    return values.astype("float32")


def prepare_frame(
    frame: pd.DataFrame, layout: FeatureLayout, keep: tuple[int, ...] | None = None
) -> pd.DataFrame:
    """Model inputs, label and split code for one partition (rows without a target dropped;
    with ``keep``, only the rows of those split codes)."""
    frame = frame[frame[layout.target].notna()]
    split = split_codes(frame, key=layout.key, split=layout.split)
    if keep is not None:
        # Drop what will not be used before the work of encoding it.
        wanted = np.isin(split, keep)
        frame, split = frame[wanted], split[wanted]
    out = pd.DataFrame(index=frame.index)
    for name in layout.features:
        kind = layout.feature_types[name]
        if kind == "category":
            values = frame[name].astype("object").where(frame[name].notna(), None)
            out[name] = pd.Categorical(values, categories=layout.categories[name])
        else:
            out[name] = _as_float(frame[name], kind)
    target = frame[layout.target]
    if layout.classes is not None:
        index = {c: i for i, c in enumerate(layout.classes)}
        # Name each distinct value once, not each row (a per-row lambda was half the cost
        # of preparing a partition).
        codes, uniques = pd.factorize(target)
        lookup = np.array([index.get(class_name(v), -1) for v in uniques], dtype="int32")
        out[LABEL_COLUMN] = lookup[codes] if len(lookup) else np.full(len(codes), -1, "int32")
        out[SPLIT_COLUMN] = split
        return out[out[LABEL_COLUMN] >= 0]  # a class unknown to this model cannot be scored
    out[LABEL_COLUMN] = pd.to_numeric(target).astype("float64")
    out[SPLIT_COLUMN] = split
    return out


# Metrics (pure) ---------------------------------------------------------------------------------
def evaluate(task_kind: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Test metrics fitting the task (scikit-learn)."""
    from sklearn import metrics

    if task_kind == "binary":
        if len(np.unique(y_true)) < 2:
            raise TrainingError(
                "the test split holds a single class; need more (or more varied) data"
            )
        return {
            "roc_auc": float(metrics.roc_auc_score(y_true, y_pred)),
            "logloss": float(metrics.log_loss(y_true, y_pred, labels=[0, 1])),
            "accuracy": float(metrics.accuracy_score(y_true, y_pred >= 0.5)),
            "f1": float(metrics.f1_score(y_true, y_pred >= 0.5)),
        }
    if task_kind == "multiclass":
        labels = list(range(y_pred.shape[1]))
        predicted = y_pred.argmax(axis=1)
        return {
            "logloss": float(metrics.log_loss(y_true, y_pred, labels=labels)),
            "accuracy": float(metrics.accuracy_score(y_true, predicted)),
            "f1_macro": float(metrics.f1_score(y_true, predicted, average="macro", labels=labels)),
        }
    return {
        "rmse": float(np.sqrt(metrics.mean_squared_error(y_true, y_pred))),
        "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
        "r2": float(metrics.r2_score(y_true, y_pred)),
    }


# Distributed parts --------------------------------------------------------------------------------
def load_prepared(
    client: Client, uris: list[str], layout: FeatureLayout, keep: tuple[int, ...] | None = None
) -> dd.DataFrame:
    """Read the partitions once on the cluster, prepare them (the rows of the ``keep`` split
    codes only, if given), and keep them in worker memory."""
    import dask.dataframe as dd

    # A keyless split hashes whole rows, so it needs every column.
    columns = (
        [*dict.fromkeys([*layout.features, layout.target, layout.key])] if layout.key else None
    )
    raw = dd.read_parquet(uris, columns=columns, storage_options=storage_options(uris[0]))
    meta = prepare_frame(raw._meta, layout)
    prepared = raw.map_partitions(prepare_frame, layout, keep, meta=meta)
    return client.persist(prepared)


def split_sizes(client: Client, prepared: dd.DataFrame) -> dict[str, int]:
    # Three sums in one pass (a value_counts would shuffle).
    sums = client.gather(
        client.compute([(prepared[SPLIT_COLUMN] == code).sum() for code in SPLITS.values()])
    )
    return {name: int(n) for name, n in zip(SPLITS, sums, strict=True)}


def predict(
    client: Client, booster: xgboost.Booster, frame: dd.DataFrame, layout: FeatureLayout
) -> np.ndarray:
    """Predictions for a prepared frame, computed on the cluster, gathered here."""
    from xgboost import dask as dxgb

    prediction = dxgb.inplace_predict(client, booster, frame[layout.features])
    return np.asarray(client.compute(prediction).result())


def score(
    client: Client,
    booster: xgboost.Booster,
    prepared: dd.DataFrame,
    layout: FeatureLayout,
    split: str,
) -> dict[str, float]:
    """Metrics of ``booster`` on one split of a prepared frame."""
    return score_each(client, [booster], prepared, layout, split)[0]


def score_each(
    client: Client,
    boosters: list[xgboost.Booster],
    prepared: dd.DataFrame,
    layout: FeatureLayout,
    split: str,
) -> list[dict[str, float]]:
    """Metrics of each booster on one split of a prepared frame (its labels gathered once)."""
    rows = client.persist(prepared[prepared[SPLIT_COLUMN] == SPLITS[split]])
    y_true = np.asarray(client.compute(rows[LABEL_COLUMN]).result())
    return [evaluate(layout.task, y_true, predict(client, b, rows, layout)) for b in boosters]


@dataclass(frozen=True)
class TrainedModel:
    booster: xgboost.Booster
    history: dict[str, dict[str, list[float]]]
    best_iteration: int
    best_score: float | None
    metrics: dict[str, float]
    rows: dict[str, int]
    workers: int
    timings: dict[str, float]
    resumed_from_round: int | None = None
    base_metrics: dict[str, float] = field(default_factory=dict)


def train_distributed(
    client: Client,
    *,
    uris: list[str],
    layout: FeatureLayout,
    params: dict[str, Any],
    num_boost_round: int,
    early_stopping_rounds: int | None,
    checkpoints: Checkpoints | None = None,
    checkpoint_every: int = 10,
    report_progress: bool = False,
    base: xgboost.Booster | None = None,
    train_uris: list[str] | None = None,
) -> TrainedModel:
    """Train with xgboost.dask on the client's cluster and evaluate on the test split.

    With ``checkpoints``, the booster is saved every ``checkpoint_every`` rounds, and a
    training that finds a checkpoint continues from it (``xgb_model=``) instead of round 0.
    With ``report_progress``, rank 0 reports rounds on ``PROGRESS_TOPIC``.
    A warm start adds ``num_boost_round`` rounds to ``base``, fitted on the train rows of
    ``train_uris`` only; early stopping and the test metrics still use the validation and
    test rows of all ``uris``.
    """
    from xgboost import dask as dxgb

    timings: dict[str, float] = {}
    started = time.perf_counter()
    warm = train_uris is not None and sorted(train_uris) != sorted(uris)
    # A warm start fits on the new partitions' train rows and judges on everyone's
    # validation and test rows: each read keeps only the rows it is used for.
    prepared = load_prepared(client, uris, layout, keep=(1, 2) if warm else None)
    rows = split_sizes(client, prepared)
    fitted = prepared
    if warm and train_uris is not None:
        fitted = load_prepared(client, train_uris, layout, keep=(0,))
        rows["train"] = split_sizes(client, fitted)["train"]
    timings["load_seconds"] = time.perf_counter() - started
    empty = [name for name, n in rows.items() if n == 0]
    if empty:
        raise TrainingError(
            f"the {', '.join(empty)} split(s) would be empty ({rows}); "
            "the accepted data is too small"
        )

    def part(frame: dd.DataFrame, split: str) -> tuple[dd.DataFrame, dd.Series]:
        rows_of = frame[frame[SPLIT_COLUMN] == SPLITS[split]]
        return rows_of[layout.features], rows_of[LABEL_COLUMN]

    x_train, y_train = part(fitted, "train")
    x_valid, y_valid = part(prepared, "validation")
    started = time.perf_counter()
    dtrain = dxgb.DaskQuantileDMatrix(client, x_train, y_train, enable_categorical=True)
    dvalid = dxgb.DaskQuantileDMatrix(client, x_valid, y_valid, ref=dtrain, enable_categorical=True)
    timings["dmatrix_seconds"] = time.perf_counter() - started
    # Rounds are counted after the base's trees: a checkpoint holds base + rounds done.
    offset = base.num_boosted_rounds() if base is not None else 0
    resumed = checkpoints.latest() if checkpoints else None
    booster: xgboost.Booster | None = resumed[0] if resumed else base
    history: History = resumed[1].history if resumed else {}
    remaining = num_boost_round - (booster.num_boosted_rounds() - offset if booster else 0)
    started = time.perf_counter()
    if remaining > 0 and not stopped_early(history, early_stopping_rounds):
        callbacks = (
            [checkpoint_callback(checkpoints, every=checkpoint_every, history_before=history)]
            if checkpoints
            else []
        )
        if report_progress:
            callbacks.append(progress_callback(total=num_boost_round, offset=offset))
        output = dxgb.train(
            client,
            params,
            dtrain,
            num_boost_round=remaining,
            evals=[(dtrain, "train"), (dvalid, "validation")],
            early_stopping_rounds=early_stopping_rounds,
            xgb_model=booster,
            callbacks=callbacks,
            verbose_eval=False,
        )
        booster = output["booster"]
        history = merge_history(history, output["history"])
    timings["train_seconds"] = time.perf_counter() - started
    assert booster is not None
    rounds = booster.num_boosted_rounds()
    # The best round over the whole history (before and after a resume), as early stopping
    # judges it; without early stopping, every round is kept.
    best = best_round(history) if early_stopping_rounds else None
    best_iteration, best_score = (offset + best[0], best[1]) if best else (rounds - 1, None)
    # Keep exactly the best trees: every later user of the model then predicts the same way.
    if best_iteration + 1 < rounds:
        booster = booster[: best_iteration + 1]
    started = time.perf_counter()
    metrics, *base_scores = score_each(
        client, [booster, *([base] if base is not None else [])], prepared, layout, "test"
    )
    base_metrics = base_scores[0] if base_scores else {}
    timings["evaluate_seconds"] = time.perf_counter() - started
    return TrainedModel(
        booster=booster,
        history=history,
        best_iteration=best_iteration,
        best_score=best_score,
        resumed_from_round=resumed[1].rounds if resumed else None,
        metrics=metrics,
        rows=rows,
        workers=len(client.scheduler_info()["workers"]),
        timings=timings,
        base_metrics=base_metrics,
    )


# Planning and registering -------------------------------------------------------------------------
class TrainingPlan(BaseModel):
    model_version: str
    layout: FeatureLayout
    partition_uris: list[str]
    params: dict[str, Any]
    # Set when the model continues the champion on the new partitions only.
    warm_start: WarmStart | None = None


def warm_start_plan(
    spec: DatasetSpec,
    *,
    layout: FeatureLayout,
    rows_by_uri: dict[str, int],
    champion: ModelMetadata | None,
) -> WarmStart | None:
    """How to continue ``champion`` on the partitions added since, or None to train from
    scratch: warm start is off, there is no comparable champion, partitions were removed
    (the champion learned from data no longer accepted), or too many rows were added since
    the last full training."""
    settings = spec.training.warm_start
    if settings is None or champion is None:
        return None
    if champion.training_hash != spec.training_hash() or champion.layout != layout:
        return None
    base = set(champion.partitions)
    new = sorted(set(rows_by_uri) - base)
    if not new or not base <= set(rows_by_uri):
        return None
    new_rows = sum(rows_by_uri[u] for u in new)
    chain = champion.warm_start
    full_rows = chain.full_rows if chain else sum(champion.rows.values())
    rows_since_full = (chain.rows_since_full if chain else 0) + new_rows
    if full_rows <= 0 or rows_since_full > settings.max_new_fraction * full_rows:
        return None
    share = new_rows / full_rows
    rounds = settings.rounds or max(10, math.ceil(spec.training.num_boost_round * share))
    return WarmStart(
        base_version=champion.version,
        base_rounds=champion.best_iteration + 1,
        rounds=rounds,
        new_partitions=new,
        new_rows=new_rows,
        full_version=chain.full_version if chain else champion.version,
        full_rows=full_rows,
        rows_since_full=rows_since_full,
    )


def plan_training(
    *,
    spec: DatasetSpec,
    version: DatasetVersion,
    report: ValidationReport,
    champion: ModelMetadata | None = None,
) -> TrainingPlan:
    """What to train on and the content-addressed id the model will get.

    With the spec's ``training.warm_start`` and a ``champion`` that the accepted partitions
    only add to, the plan continues the champion on the new partitions. A champion trained
    on exactly the accepted partitions is the model for them: its version is planned.
    """
    if not report.passed:
        raise ValidationFailed(
            f"dataset '{spec.name}' version {version.version} did not pass validation; "
            "refusing to train"
        )
    layout = feature_layout(spec, version, report.accepted)
    accepted = set(report.accepted)
    rows_by_uri = {p.uri: p.rows for p in version.partitions if p.partition_id in accepted}
    uris = sorted(rows_by_uri)
    num_class = len(layout.classes) if layout.classes and spec.task == "multiclass" else None
    params = spec.xgboost_params(num_class=num_class)
    if (
        champion is not None
        and champion.warm_start is not None
        and set(champion.partitions) == set(uris)
        and champion.training_hash == spec.training_hash()
        and champion.layout == layout
    ):
        # Warm-started on exactly these partitions: it is the model for them (training
        # from scratch here would undo the warm start on every run with nothing new).
        return TrainingPlan(
            model_version=champion.version, layout=layout, partition_uris=uris, params=params
        )
    warm = warm_start_plan(spec, layout=layout, rows_by_uri=rows_by_uri, champion=champion)
    model_version = stable_hash(
        {
            "partitions": sorted(accepted),
            "training": spec.training_hash(),
            "layout": layout.model_dump(mode="json"),
            # The installed version, without importing XGBoost (a warm run never trains).
            "xgboost": importlib_metadata.version("xgboost"),
            # A warm-started model is another model than one trained from scratch.
            **({"warm_start": warm.model_dump(mode="json")} if warm else {}),
        }
    )
    return TrainingPlan(
        model_version=model_version,
        layout=layout,
        partition_uris=uris,
        params=params,
        warm_start=warm,
    )


def candidate_from(
    metadata: ModelMetadata, *, registry: ModelRegistry, reused: bool
) -> ModelCandidate:
    return ModelCandidate(
        model_name=metadata.model_name,
        version=metadata.version,
        dataset_version=metadata.dataset_version,
        metric=metadata.metric,
        metrics=metadata.metrics,
        best_iteration=metadata.best_iteration,
        rows=metadata.rows,
        model_uri=registry.model_uri(metadata.model_name, metadata.version),
        created_at=metadata.created_at,
        reused=reused,
    )


def package_version() -> str:
    try:
        return importlib_metadata.version("mlops-pipelines")
    except importlib_metadata.PackageNotFoundError:
        return "0+unknown"


def train_and_register(
    client: Client,
    *,
    spec: DatasetSpec,
    lake: Lake,
    version: DatasetVersion,
    plan: TrainingPlan,
) -> ModelCandidate:
    """Train on the cluster, then register model and metadata as a new immutable version."""
    import xgboost

    registry = ModelRegistry(lake=lake.uri)
    checkpoints = Checkpoints(lake.uri, spec.name, plan.model_version)
    warm = plan.warm_start
    trained = train_distributed(
        client,
        uris=plan.partition_uris,
        layout=plan.layout,
        params=plan.params,
        num_boost_round=planned_rounds(spec, plan),
        early_stopping_rounds=spec.training.early_stopping_rounds,
        checkpoints=checkpoints,
        checkpoint_every=spec.training.checkpoint_every,
        report_progress=True,
        base=registry.load_booster(spec.name, warm.base_version) if warm else None,
        train_uris=warm.new_partitions if warm else None,
    )
    metadata = ModelMetadata(
        model_name=spec.name,
        version=plan.model_version,
        layout=plan.layout,
        params=plan.params,
        num_boost_round=(warm.base_rounds if warm else 0) + planned_rounds(spec, plan),
        early_stopping_rounds=spec.training.early_stopping_rounds,
        best_iteration=trained.best_iteration,
        best_score=trained.best_score,
        metric=spec.metric,
        direction=spec.direction,
        metrics=trained.metrics,
        rows=trained.rows,
        eval_history=trained.history,
        dataset=spec.name,
        dataset_version=version.version,
        partitions=plan.partition_uris,
        spec_hash=spec.spec_hash(),
        training_hash=spec.training_hash(),
        package_version=package_version(),
        xgboost_version=xgboost.__version__,
        workers=trained.workers,
        timings=trained.timings,
        resumed_from_round=trained.resumed_from_round,
        warm_start=warm.model_copy(update={"base_metrics": trained.base_metrics}) if warm else None,
    )
    registry.register(metadata, bytes(trained.booster.save_raw(raw_format="ubj")))
    # Registered: the version exists, so nothing will resume these any more.
    checkpoints.clear()
    return candidate_from(metadata, registry=registry, reused=False)


def warm_start_candidate(lake: str, spec: DatasetSpec) -> ModelMetadata | None:
    """The champion's metadata when the spec allows warm starts (else None: not read)."""
    if spec.training.warm_start is None:
        return None
    registry = ModelRegistry(lake=lake)
    champion = registry.champion(spec.name)
    return registry.metadata(spec.name, champion) if champion else None


def planned_rounds(spec: DatasetSpec, plan: TrainingPlan) -> int:
    """Rounds this training boosts: the spec's, or a warm start's on top of its base."""
    return plan.warm_start.rounds if plan.warm_start else spec.training.num_boost_round


def load_report(lake: Lake, spec: DatasetSpec, version: DatasetVersion) -> ValidationReport:
    path = report_path(lake, spec, version.version)
    if not lake.exists(path):
        raise ValidationFailed(
            f"dataset '{spec.name}' version {version.version} has not been validated with the "
            "current expectations; run validation first"
        )
    return ValidationReport.model_validate(lake.read_json(path))


# Tasks --------------------------------------------------------------------------------
@task(name="load-validation-report", **IO_RETRIES)
def load_report_task(*, lake: str, spec: DatasetSpec, version: DatasetVersion) -> ValidationReport:
    """Read the validation report of a dataset version under the spec's suite and policy."""
    return load_report(Lake(lake), spec, version)


@task(name="find-registered-model", **IO_RETRIES)
def registered_candidate_task(*, lake: str, model_name: str, version: str) -> ModelCandidate | None:
    """The registered model for these inputs, if training them already happened."""
    registry = ModelRegistry(lake=lake)
    if not registry.has_version(model_name, version):
        return None
    return candidate_from(registry.metadata(model_name, version), registry=registry, reused=True)


@task(name="plan-training")
def plan_training_task(
    *, spec: DatasetSpec, version: DatasetVersion, report: ValidationReport, lake: str
) -> TrainingPlan:
    """Check the data can train a model and compute the model version id (a warm start of
    the champion when the spec allows it)."""
    return plan_training(
        spec=spec, version=version, report=report, champion=warm_start_candidate(lake, spec)
    )


# A lost worker fails XGBoost's collective at once; the retry waits for the cluster to be
# back to size and resumes from the last checkpoint.
@task(name="train-model", **TRAINING_RETRIES)
def train_model_task(
    *,
    scheduler: str,
    workers: int,
    spec: DatasetSpec,
    lake: str,
    version: DatasetVersion,
    plan: TrainingPlan,
    worker_timeout: float,
) -> ModelCandidate:
    """Train with xgboost.dask on the cluster at ``scheduler`` and register the model."""
    with stage_client(scheduler) as client:
        # XGBoost trains on the workers present when it starts; a replaced worker must be
        # back first, or the retry would train on fewer (and lose their share of the data).
        client.wait_for_workers(workers, timeout=worker_timeout)
        with follow_training(client, spec, total=planned_rounds(spec, plan)):
            return train_and_register(
                client, spec=spec, lake=Lake(lake), version=version, plan=plan
            )


@contextmanager
def follow_training(client: Client, spec: DatasetSpec, *, total: int) -> Iterator[None]:
    """A progress artifact of the training rounds, fed by rank 0's progress callback."""
    progress = StageProgress(stage="train", dataset=spec.name, total=total, unit="rounds")

    def on_round(event: tuple[float, dict[str, Any]]) -> None:
        message = event[1]
        detail = ", ".join(f"{k} {v:.4f}" for k, v in sorted(message["latest"].items()))
        progress.update(int(message["round"]), detail)

    client.subscribe_topic(PROGRESS_TOPIC, on_round)
    try:
        yield
        # Early stopping ends before the last round: the training is done all the same.
        progress.update(progress.total, "finished")
    finally:
        client.unsubscribe_topic(PROGRESS_TOPIC)
