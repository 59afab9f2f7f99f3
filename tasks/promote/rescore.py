"""The champion's score on a candidate's test rows, computed on the stage's cluster."""

from __future__ import annotations

from distributed import Client

from blocks.registry import ModelRegistry
from tasks.errors import RegistryError
from tasks.records import ModelMetadata
from tasks.runtime.runner import stage_client
from tasks.train.distributed import load_prepared, score


def rescore_champion(
    *,
    scheduler: str,
    registry: ModelRegistry,
    champion: ModelMetadata,
    candidate: ModelMetadata,
    metric: str,
) -> float:
    """The champion's ``metric`` on the candidate's test split, on the cluster at ``scheduler``."""
    with stage_client(scheduler) as client:
        return champion_score(
            client, registry=registry, champion=champion, candidate=candidate, metric=metric
        )


def champion_score(
    client: Client,
    *,
    registry: ModelRegistry,
    champion: ModelMetadata,
    candidate: ModelMetadata,
    metric: str,
) -> float:
    """The champion's ``metric`` on the candidate's test split, computed on the client's cluster."""
    # Compatible models split rows the same way, so the champion's own layout selects the
    # candidate's test rows and encodes them as the champion was trained.
    layout = champion.layout
    booster = registry.load_booster(champion.model_name, champion.version)
    prepared = load_prepared(client, candidate.partitions, layout, excluded=candidate.excluded_rows)
    metrics = score(client, booster, prepared, layout, "test")
    if metric not in metrics:
        raise RegistryError(f"metric '{metric}' is not computed for a {layout.task} model")
    return metrics[metric]
