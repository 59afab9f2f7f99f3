"""The dataset spec: everything the pipeline knows about one dataset, loaded from YAML.

Errors name the file and the field (``datasets/x.yaml: columns.age.type: ...``) because the
spec is the one place users configure the pipeline.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import yaml
from dask.utils import format_bytes, parse_bytes
from prefect import task
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.errors import SpecError
from tasks.retries import IO_RETRIES
from tasks.storage import open_file

ColumnType = Literal["int", "float", "bool", "category", "string", "datetime"]
Task = Literal["binary", "multiclass", "regression"]
Direction = Literal["maximize", "minimize"]

# Metrics each task reports on the test split, and which way is better.
METRICS: dict[Task, dict[str, Direction]] = {
    "binary": {
        "roc_auc": "maximize",
        "logloss": "minimize",
        "accuracy": "maximize",
        "f1": "maximize",
    },
    "multiclass": {"logloss": "minimize", "accuracy": "maximize", "f1_macro": "maximize"},
    "regression": {"rmse": "minimize", "mae": "minimize", "r2": "maximize"},
}
DEFAULT_METRIC: dict[Task, str] = {
    "binary": "roc_auc",
    "multiclass": "logloss",
    "regression": "rmse",
}
DEFAULT_OBJECTIVE: dict[Task, str] = {
    "binary": "binary:logistic",
    "multiclass": "multi:softprob",
    "regression": "reg:squarederror",
}
DEFAULT_EVAL_METRIC: dict[Task, str] = {
    "binary": "logloss",
    "multiclass": "mlogloss",
    "regression": "rmse",
}
PARTITION_FORMAT = 1
VALIDATION_FORMAT = 1
TRAINING_FORMAT = 1
# Characters XGBoost refuses in feature names; path separators and control characters (a
# pasted path or header line is a mistake in the spec, and would break the one-line logs and
# Markdown table rows names appear in); and the prefix of our own helper columns.
_BAD_NAME_CHARS = frozenset("[]</\\") | frozenset(map(chr, range(32))) | {"\x7f"}
RESERVED_PREFIX = "__"
# A dataset spec is a page of YAML; far larger is a mistake (a data file passed as --spec),
# refused before it is parsed into memory.
MAX_SPEC_BYTES = 1024 * 1024
# Expectation kwargs that name columns of the dataset.
_COLUMN_KWARGS = ("column", "column_A", "column_B")
# XGBoost consumes these directly; datetimes become epoch seconds, strings must be declared
# as categories to be used as features.
FEATURE_TYPES: frozenset[str] = frozenset({"int", "float", "bool", "category", "datetime"})


def checked_size(value: str, *, minimum: int, too_small: str) -> str:
    """``value`` if it is a size (``128MiB``, ``4GB``) of at least ``minimum`` bytes; a
    ``ValueError`` saying what is wrong with it otherwise (for field validators)."""
    try:
        parsed = parse_bytes(value)
    except (ValueError, TypeError):
        raise ValueError(f"'{value}' is not a size such as 128MiB or 4GiB") from None
    if parsed < minimum:
        raise ValueError(f"'{value}' is {too_small} ({format_bytes(minimum)} at least)")
    return value


class _Strict(BaseModel):
    # A typo in a field name is an error that names the field, not a silently ignored key.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    type: ColumnType = Field(description="Logical type the landing data is cast to.")
    nullable: bool = Field(True, description="Whether nulls are allowed (checked by validation).")
    categories: list[str] | None = Field(
        None, description="Allowed values of a category column; others fail validation."
    )
    description: str = ""

    @model_validator(mode="after")
    def _categories_only_for_category(self) -> ColumnSpec:
        if self.categories is not None and self.type != "category":
            raise ValueError("'categories' is only allowed on columns of type category")
        return self


class ExpectationSpec(_Strict):
    """A Great Expectations expectation config: ``{type: expect_..., kwargs: {...}}``."""

    type: str = Field(pattern=r"^expect_[a-z0-9_]+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)


class IngestSpec(_Strict):
    """How landing files become partitions: packed or cut to a bounded size."""

    partition_size: str = Field(
        "128MiB",
        description="Target in-memory (decoded Arrow) size of a partition, e.g. 128MiB: small "
        "files are packed together up to it, larger files are cut into pieces of about it.",
    )
    partition_rows: int | None = Field(
        None, ge=1, description="Also cut a partition once it holds this many rows."
    )

    @field_validator("partition_size")
    @classmethod
    def _size(cls, value: str) -> str:
        return checked_size(value, minimum=2**16, too_small="too small for a partition")

    @property
    def partition_bytes(self) -> int:
        return int(parse_bytes(self.partition_size))


class ValidationPolicy(_Strict):
    min_accepted_fraction: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Fraction of landing files that must be ingested and pass validation.",
    )


class SplitSpec(_Strict):
    validation: float = Field(0.15, gt=0.0, lt=1.0)
    test: float = Field(0.15, gt=0.0, lt=1.0)
    salt: str = Field("", description="Change to draw a different (still deterministic) split.")

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> SplitSpec:
        if self.validation + self.test >= 0.9:
            raise ValueError("validation + test must leave at least 10% of rows for training")
        return self


class WarmStartSpec(_Strict):
    """Continue the champion on new partitions instead of training again from round 0."""

    max_new_fraction: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Most rows added since the last full training, as a share of the rows "
        "it trained on, that warm starts may cover; beyond it, training starts over.",
    )
    rounds: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Rounds a warm start adds; default: num_boost_round times the new "
        "rows' share, at least 10.",
    )


class TrainingSpec(_Strict):
    params: dict[str, Any] = Field(default_factory=dict, description="XGBoost booster params.")
    num_boost_round: int = Field(200, ge=1, le=100_000)
    early_stopping_rounds: int | None = Field(20, ge=1)
    checkpoint_every: int = Field(
        10, ge=1, description="Rounds between training checkpoints in the lake."
    )
    warm_start: WarmStartSpec | None = Field(
        None,
        description="When only partitions were added, boost the champion further on them "
        "(xgb_model=) instead of training from scratch. Off when empty.",
    )


class PromotionPolicy(_Strict):
    metric: str | None = Field(None, description="Test metric compared; default per task.")
    direction: Direction | None = Field(None, description="Default: the metric's natural one.")
    min_improvement: float = Field(0.0, ge=0.0, description="Absolute margin over the champion.")


class ScoringSpec(_Strict):
    """How ``mlops score`` writes predictions."""

    explain: int = Field(
        0,
        ge=0,
        le=50,
        description="Top-k feature contributions per row (XGBoost's TreeSHAP, pred_contribs); "
        "0 for none.",
    )


class MonitoringSpec(_Strict):
    """When scored data counts as drifted from the model's training data.

    PSI (population stability index) per feature over the training profile's bins: below
    0.1 is usually read as no shift, 0.1-0.25 as a moderate one, above 0.25 as a major one.
    """

    psi_warn: float = Field(0.1, gt=0, description="PSI from which a feature is flagged warn.")
    psi_alert: float = Field(
        0.25, gt=0, description="PSI from which a feature is drifted (alert, event)."
    )
    unseen_alert: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Share of a categorical feature's scored values that are new categories "
        "from which it is drifted.",
    )
    min_rows: int = Field(
        1000, ge=1, description="Fewer scored rows than this are reported but not judged."
    )
    metric_drop: float = Field(
        0.05,
        gt=0,
        description="When the scored rows carry the target: how much worse than the model's "
        "test value the realized metric may be before it alerts.",
    )
    bins: int = Field(10, ge=2, le=100, description="Quantile bins per numeric feature.")
    retrain_with_scored: bool = Field(
        False,
        description="When scored data drifts to the alert level, copy the scored files that "
        "carry the target on every row into the landing folder the champion was trained "
        "from (under scored/), so the retraining the drift event starts learns from them.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> MonitoringSpec:
        if self.psi_alert < self.psi_warn:
            raise ValueError("psi_alert must be at least psi_warn")
        return self


class DatasetSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    description: str = ""
    columns: dict[str, ColumnSpec] = Field(min_length=1)
    target: str
    task: Task
    key: str | None = None
    features: list[str] | None = None
    expectations: list[ExpectationSpec] = Field(default_factory=list)
    ingest: IngestSpec = IngestSpec()
    validation: ValidationPolicy = ValidationPolicy()
    split: SplitSpec = SplitSpec()
    training: TrainingSpec = TrainingSpec()
    promotion: PromotionPolicy = PromotionPolicy()
    scoring: ScoringSpec = ScoringSpec()
    monitoring: MonitoringSpec = MonitoringSpec()

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        for name in self.columns:
            if name.startswith(RESERVED_PREFIX) or _BAD_NAME_CHARS & set(name):
                shown = name if name.isprintable() else repr(name)
                raise ValueError(
                    f"columns.{shown}: column names may not start with '__' or contain "
                    "[, ], <, /, \\ or control characters"
                )
        if self.target not in self.columns:
            raise ValueError(f"target: '{self.target}' is not one of the columns")
        target_type = self.columns[self.target].type
        if self.task == "regression" and target_type not in ("int", "float"):
            raise ValueError(f"target: a regression target must be int or float, not {target_type}")
        if self.task != "regression" and target_type in ("float", "datetime"):
            raise ValueError(f"target: a {self.task} target cannot be of type {target_type}")
        if self.key is not None and self.key not in self.columns:
            raise ValueError(f"key: '{self.key}' is not one of the columns")
        if self.key == self.target:
            raise ValueError("key: the key column cannot be the target")
        if self.features is not None and len(set(self.features)) != len(self.features):
            raise ValueError("features: a column is listed more than once")
        for i, expectation in enumerate(self.expectations):
            kwargs = expectation.kwargs
            named = [(k, kwargs[k]) for k in _COLUMN_KWARGS if k in kwargs]
            named += [(f"column_list.{j}", c) for j, c in enumerate(kwargs.get("column_list", []))]
            for where, column in named:
                if column not in self.columns:
                    raise ValueError(
                        f"expectations.{i}.kwargs.{where}: '{column}' is not one of the columns"
                    )
        for i, feature in enumerate(self.features or []):
            if feature not in self.columns:
                raise ValueError(f"features.{i}: '{feature}' is not one of the columns")
            if feature in (self.target, self.key):
                raise ValueError(f"features.{i}: '{feature}' is the target or key column")
            if self.columns[feature].type not in FEATURE_TYPES:
                raise ValueError(
                    f"features.{i}: '{feature}' is a string column; declare it as category "
                    "to use it as a feature"
                )
        if not self.feature_columns:
            raise ValueError(
                "features: no usable feature columns (int, float, bool, category, datetime)"
            )
        metrics = METRICS[self.task]
        if self.promotion.metric is not None and self.promotion.metric not in metrics:
            raise ValueError(
                f"promotion.metric: '{self.promotion.metric}' is not reported for a {self.task} "
                f"task; choose one of {sorted(metrics)}"
            )
        return self

    @property
    def feature_columns(self) -> list[str]:
        """Features to train on: as listed, else every usable column but target and key."""
        if self.features is not None:
            return list(self.features)
        return [
            name
            for name, col in self.columns.items()
            if name not in (self.target, self.key) and col.type in FEATURE_TYPES
        ]

    @property
    def metric(self) -> str:
        return self.promotion.metric or DEFAULT_METRIC[self.task]

    @property
    def direction(self) -> Direction:
        return self.promotion.direction or METRICS[self.task][self.metric]

    def all_expectations(self) -> list[ExpectationSpec]:
        """The spec's expectations plus those its column declarations imply."""
        implied: list[ExpectationSpec] = []
        for name, col in self.columns.items():
            if not col.nullable or name == self.target:
                implied.append(
                    ExpectationSpec(
                        type="expect_column_values_to_not_be_null", kwargs={"column": name}
                    )
                )
            if col.categories is not None:
                implied.append(
                    ExpectationSpec(
                        type="expect_column_values_to_be_in_set",
                        kwargs={"column": name, "value_set": list(col.categories)},
                    )
                )
        return implied + list(self.expectations)

    def scoring_expectations(self) -> list[ExpectationSpec]:
        """The expectations that do not concern the target: those run at scoring, where the
        target is optional."""
        return [e for e in self.all_expectations() if self.target not in expectation_columns(e)]

    def xgboost_params(self, *, num_class: int | None = None) -> dict[str, Any]:
        """Booster params with the task's defaults filled in (user values win)."""
        params: dict[str, Any] = {
            "tree_method": "hist",
            "objective": DEFAULT_OBJECTIVE[self.task],
            "eval_metric": DEFAULT_EVAL_METRIC[self.task],
            "seed": 0,
        }
        params.update(self.training.params)
        if self.task == "multiclass" and num_class is not None:
            params["num_class"] = num_class
        return params

    # Hashes: each covers exactly what the thing it keys depends on, so editing a column's
    # description or nullability does not re-ingest, an expectation does not retrain, and a
    # promotion policy changes nothing but the decision. Bump the FORMAT constants when the
    # code that produces a partition, a validation result or a model changes meaning.
    def schema_hash(self) -> str:
        """What a partition's bytes depend on: column names and types."""
        return stable_hash(
            {
                "format": PARTITION_FORMAT,
                "columns": {name: col.type for name, col in self.columns.items()},
            }
        )

    def expectations_hash(self) -> str:
        """What one partition's validation result depends on: the suite."""
        return stable_hash(
            {
                "format": VALIDATION_FORMAT,
                "expectations": [e.model_dump(mode="json") for e in self.all_expectations()],
            }
        )

    def report_hash(self) -> str:
        """What a dataset version's report depends on: the suite and the acceptance policy."""
        return stable_hash(
            {
                "suite": self.expectations_hash(),
                "validation": self.validation.model_dump(mode="json"),
            }
        )

    def training_hash(self) -> str:
        """What a model depends on besides its data."""
        return stable_hash(
            {
                "format": TRAINING_FORMAT,
                "target": [self.target, self.columns[self.target].type],
                "task": self.task,
                "key": self.key,
                "features": {f: self.columns[f].type for f in self.feature_columns},
                "categories": {
                    f: self.columns[f].categories
                    for f in self.feature_columns
                    if self.columns[f].categories is not None
                },
                "split": self.split.model_dump(mode="json"),
                # How often to checkpoint does not change the model; whether a model may be
                # warm-started is decided per model (its version hashes its base).
                "training": self.training.model_dump(
                    mode="json", exclude={"checkpoint_every", "warm_start"}
                ),
            }
        )

    def spec_hash(self) -> str:
        return stable_hash(self.model_dump(mode="json"))


def expectation_columns(expectation: ExpectationSpec) -> list[str]:
    """The dataset columns an expectation names in its kwargs."""
    kwargs = expectation.kwargs
    named = [str(kwargs[k]) for k in _COLUMN_KWARGS if k in kwargs]
    return named + [str(c) for c in kwargs.get("column_list", [])]


def stable_hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line per problem: ``<file>: <field.path>: <message>``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        # Whole-spec checks already start their message with the field they are about.
        lines.append(f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}")
    return "invalid dataset spec\n  " + "\n  ".join(lines)


def parse_spec(data: Any, *, source: str = "<spec>") -> DatasetSpec:
    """Validate an already-parsed spec document."""
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: a dataset spec must be a YAML mapping, got {type(data).__name__}"
        )
    try:
        return DatasetSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(format_validation_error(source, err)) from None


def load_spec(uri: str) -> DatasetSpec:
    """Read and validate a spec from a local path or any fsspec URI (e.g. ``s3://``)."""
    try:
        with open_file(uri, "rb") as fh:
            raw = fh.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{uri}: dataset spec not found") from None
    except IsADirectoryError:
        raise SpecError(f"{uri}: a dataset spec must be a YAML file, not a folder") from None
    except OSError as err:
        raise SpecError(f"{uri}: cannot read dataset spec: {err}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(
            f"{uri}: a dataset spec is at most {format_bytes(MAX_SPEC_BYTES)} of YAML; this is "
            "larger (a data file?)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{uri}: not UTF-8 text (byte {err.start}): not a YAML spec") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(f"{uri}: not valid YAML: {err}") from None
    return parse_spec(data, source=uri)


@task(name="load-spec", **IO_RETRIES)
def load_spec_task(uri: str) -> DatasetSpec:
    """Read and validate the dataset spec (a bad spec fails at once; I/O errors retry)."""
    return load_spec(uri)
