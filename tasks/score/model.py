"""Which model a scoring run uses, checked against the spec before any data is read."""

from __future__ import annotations

from blocks.registry import ModelRegistry
from tasks.errors import LakeError, RegistryError
from tasks.ingest.versions import load_version
from tasks.lake import Lake
from tasks.records import FeatureLayout, ScoringModel, Split
from tasks.spec import DatasetSpec, stable_hash

CHAMPION = "champion"


def schema_differences(spec: DatasetSpec, layout: FeatureLayout) -> list[str]:
    """What the spec now declares differently from the columns the model was trained on."""
    problems = []
    for name in layout.features:
        column = spec.columns.get(name)
        trained = layout.feature_types[name]
        if column is None:
            problems.append(
                f"'{name}' ({trained}): the model needs it; the spec has no such column"
            )
        elif column.type != trained:
            problems.append(
                f"'{name}': the model was trained on {trained}, the spec declares {column.type}"
            )
    if layout.target != spec.target:
        problems.append(
            f"target: the model predicts '{layout.target}', the spec's is '{spec.target}'"
        )
    if layout.task != spec.task:
        problems.append(f"task: the model is {layout.task}, the spec's is {spec.task}")
    return problems


def resolve_model(lake: Lake, spec: DatasetSpec, model: str) -> ScoringModel:
    """The model to score with: the champion (``"champion"``) or a version id; a clear error
    naming the model when there is none, or when the spec no longer matches it."""
    registry = ModelRegistry(lake=lake.uri)
    champion = model.strip() in ("", CHAMPION)
    version = registry.champion(spec.name) if champion else model.strip()
    if version is None:
        raise RegistryError(
            f"model '{spec.name}' has no champion in {lake.uri} yet: run the pipeline "
            "first, or name a version to score with"
        )
    metadata = registry.metadata(spec.name, version)
    problems = schema_differences(spec, metadata.layout)
    if problems:
        raise RegistryError(
            f"model '{spec.name}@{version}' was trained on other columns than the spec now "
            "declares:\n  " + "\n  ".join(problems)
        )
    return ScoringModel(
        model_name=spec.name,
        version=version,
        model_uri=registry.model_uri(spec.name, version),
        layout=metadata.layout,
        metric=metadata.metric,
        metrics=metadata.metrics,
        profile=registry.profile(spec.name, version),
        champion=champion,
        training_source=training_source(lake, spec.name, metadata.dataset_version),
    )


def training_source(lake: Lake, dataset: str, version: str) -> str:
    """Where the dataset version a model learned from was ingested from; "" when the lake no
    longer has it (scoring does not need it, only a retraining does)."""
    try:
        return load_version(lake, dataset, version).source_uri
    except (LakeError, ValueError, OSError):
        return ""


def source_index_path(lake: Lake, dataset: str, source: str) -> str:
    """Where a lake remembers which model last scored a source, and its splits."""
    return lake.path("predictions", dataset, "sources", f"{stable_hash(source.rstrip('/'))}.json")


def earlier_model(
    lake: Lake, spec: DatasetSpec, source: str, splits: list[Split], chosen: ScoringModel
) -> ScoringModel:
    """The model to keep for ``source``: when the champion was asked for and every split was
    scored before by an earlier champion, that model (its predictions stand, nothing is
    scored again; ``rescore`` asks for the new champion). Otherwise ``chosen``: new files
    mean a new run, and one run's predictions never mix two models."""
    if not chosen.champion:
        return chosen
    path = source_index_path(lake, spec.name, source)
    if not lake.exists(path):
        return chosen
    index = lake.read_json(path)
    earlier = str(index.get("model_version", ""))
    scored = set(index.get("splits", []))
    if not earlier or earlier == chosen.version or not {s.split_id for s in splits} <= scored:
        return chosen
    try:
        return resolve_model(lake, spec, earlier).model_copy(update={"champion": False})
    except RegistryError:  # that version is gone or no longer fits the spec
        return chosen


def remember_source(
    lake: Lake, dataset: str, source: str, model: ScoringModel, splits: list[str]
) -> None:
    lake.write_json(
        source_index_path(lake, dataset, source),
        {"source": source, "model_version": model.version, "splits": sorted(splits)},
    )
