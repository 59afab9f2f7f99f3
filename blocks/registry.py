"""The model registry: immutable model versions and a champion alias, stored in the lake.

Layout under ``<lake>/models/<name>/``::

    versions/<version>/model.ubj       XGBoost UBJSON (never pickle)
    versions/<version>/profile.json    its training profile (for drift), before the metadata
    versions/<version>/evaluation.json its test curves (and the champion's) and SHAP importance
    versions/<version>/test_predictions.parquet  its predictions of the test rows, by partition
    versions/<version>/metadata.json   written last: a version without it does not exist
    aliases.json                       {"champion": ..., "history": [...]}, replaced atomically
    decisions/<time>-<candidate>.json  one record per promotion decision, never rewritten
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, ClassVar

from prefect.blocks.core import Block
from pydantic import Field

from tasks.errors import RegistryError, VersionExists
from tasks.lake import Lake, partition_of
from tasks.records import DataProfile, Evaluation, ModelMetadata, PromotionDecision, utcnow
from tasks.storage import url_to_fs

if TYPE_CHECKING:
    import xgboost


def _exists(uri: str) -> bool:
    """Whether the file at ``uri`` is there (a location that cannot be reached: no)."""
    try:
        fs, path = url_to_fs(uri)
        return bool(fs.exists(path))
    except (OSError, ValueError):
        return False


class ModelRegistry(Block):
    """Where trained models are registered and which one is the champion."""

    _block_type_name: ClassVar[str] = "MLOps Model Registry"
    _description: ClassVar[str] = (
        "Immutable XGBoost model versions and a champion alias, stored in a lake (local or s3://)."
    )

    lake: str = Field(..., description="Lake URI (local path or s3://bucket/prefix).")

    @property
    def _lake(self) -> Lake:
        return Lake(self.lake)

    def _path(self, name: str, *parts: str) -> str:
        return self._lake.model(name, *parts)

    # Versions --------------------------------------------------------------------------
    def has_version(self, name: str, version: str) -> bool:
        return self._lake.exists(self._path(name, "versions", version, "metadata.json"))

    def metadata(self, name: str, version: str) -> ModelMetadata:
        path = self._path(name, "versions", version, "metadata.json")
        if not self._lake.exists(path):
            raise RegistryError(f"model '{name}' has no version '{version}' in {self.lake}")
        return self._in_this_lake(ModelMetadata.model_validate(self._lake.read_json(path)))

    def _in_this_lake(self, metadata: ModelMetadata) -> ModelMetadata:
        """The metadata with its partitions as files of this lake when it was moved: a lake
        restored from a backup, or read at another URI, holds metadata naming where it was
        written. Partitions that are still where the metadata says are read there."""
        lake = self._lake

        def here(uri: str) -> str:
            return lake.url_of(lake.partition(metadata.dataset, partition_of(uri)))

        first = metadata.partitions[0] if metadata.partitions else None
        if first is None or here(first) == first or _exists(first):
            return metadata
        return metadata.model_copy(
            update={
                "partitions": [here(u) for u in metadata.partitions],
                "excluded_rows": {here(u): r for u, r in metadata.excluded_rows.items()},
            }
        )

    def model_uri(self, name: str, version: str) -> str:
        return self._lake.url_of(self._path(name, "versions", version, "model.ubj"))

    def versions(self, name: str) -> list[ModelMetadata]:
        """Every complete version, oldest first."""
        found = []
        for directory in self._lake.list_files(self._path(name, "versions")):
            version = directory.rstrip("/").rsplit("/", 1)[-1]
            if self.has_version(name, version):
                found.append(self.metadata(name, version))
        return sorted(found, key=lambda m: m.created_at)

    def register(
        self,
        metadata: ModelMetadata,
        model: bytes,
        *,
        profile: DataProfile | None = None,
        evaluation: Evaluation | None = None,
        test_predictions: bytes | None = None,
    ) -> str:
        """Store a new version (model, training profile, then the metadata that commits it);
        versions are immutable, so an existing one is refused."""
        name, version = metadata.model_name, metadata.version
        if self.has_version(name, version):
            raise VersionExists(
                f"model '{name}' version '{version}' already exists; versions are immutable"
            )
        metadata = metadata.model_copy(
            update={"model_sha256": hashlib.sha256(model).hexdigest(), "model_bytes": len(model)}
        )
        self._lake.write_bytes(self._path(name, "versions", version, "model.ubj"), model)
        if profile is not None:
            self._lake.write_json(self._path(name, "versions", version, "profile.json"), profile)
        if evaluation is not None:
            self._lake.write_json(
                self._path(name, "versions", version, "evaluation.json"), evaluation
            )
        if test_predictions is not None:
            self._lake.write_bytes(
                self._path(name, "versions", version, "test_predictions.parquet"), test_predictions
            )
        # The metadata is the commit marker: readers ignore a version until it is there.
        self._lake.write_json(self._path(name, "versions", version, "metadata.json"), metadata)
        return self.model_uri(name, version)

    def profile(self, name: str, version: str) -> DataProfile | None:
        """The version's training profile; None for a model registered without one (0.1)."""
        path = self._path(name, "versions", version, "profile.json")
        if not self._lake.exists(path):
            return None
        return DataProfile.model_validate(self._lake.read_json(path))

    def evaluation(self, name: str, version: str) -> Evaluation | None:
        """The version's test curves and SHAP importance; None for older models."""
        path = self._path(name, "versions", version, "evaluation.json")
        if not self._lake.exists(path):
            return None
        return Evaluation.model_validate(self._lake.read_json(path))

    def test_predictions(self, name: str, version: str) -> bytes | None:
        """The version's predictions of its test rows (Parquet, by partition); None for
        older models (their champion's test rows are then predicted again)."""
        path = self._path(name, "versions", version, "test_predictions.parquet")
        if not self._lake.exists(path):
            return None
        return self._lake.read_bytes(path)

    def load_booster(self, name: str, version: str) -> xgboost.Booster:
        import xgboost

        raw = self._lake.read_bytes(self._path(name, "versions", version, "model.ubj"))
        booster = xgboost.Booster()
        booster.load_model(bytearray(raw))
        return booster

    # Aliases ------------------------------------------------------------------------------
    def aliases(self, name: str) -> dict[str, Any]:
        path = self._path(name, "aliases.json")
        if not self._lake.exists(path):
            return {"model": name, "champion": None, "history": []}
        data: dict[str, Any] = self._lake.read_json(path)
        return data

    def champion(self, name: str) -> str | None:
        champion = self.aliases(name).get("champion")
        return str(champion) if champion else None

    def restore_aliases(self, name: str, document: dict[str, Any]) -> None:
        """Put back ``aliases.json`` as read before a change that is being rolled back."""
        path = self._path(name, "aliases.json")
        if document.get("champion") is None and not document.get("history"):
            self._lake.remove(path)  # there was none
        else:
            self._lake.write_json(path, document)

    def set_champion(self, name: str, version: str, *, reason: str) -> None:
        """Point the champion alias at ``version`` (one atomic write of ``aliases.json``)."""
        if not self.has_version(name, version):
            raise RegistryError(f"model '{name}' has no version '{version}' in {self.lake}")
        current = self.aliases(name)
        if current.get("champion") == version:
            return  # already there (e.g. a retried write): no self-transition in the history
        now = utcnow().isoformat()
        history = [
            *current.get("history", []),
            {"champion": version, "previous": current.get("champion"), "at": now, "reason": reason},
        ]
        self._lake.write_json(
            self._path(name, "aliases.json"),
            {"model": name, "champion": version, "updated_at": now, "history": history},
        )

    # Decisions ----------------------------------------------------------------------------
    def record_decision(self, decision: PromotionDecision) -> str:
        stamp = decision.decided_at.strftime("%Y%m%dT%H%M%S%fZ")
        path = self._path(decision.model_name, "decisions", f"{stamp}-{decision.candidate}.json")
        self._lake.write_json(path, decision)
        return self._lake.url_of(path)

    def decisions(self, name: str) -> list[PromotionDecision]:
        """Every promotion decision, oldest first."""
        paths = self._lake.list_files(self._path(name, "decisions"), suffix=".json")
        records = [PromotionDecision.model_validate(self._lake.read_json(p)) for p in paths]
        return sorted(records, key=lambda d: d.decided_at)

    def rollback(self, name: str, *, to: str | None = None, reason: str = "") -> PromotionDecision:
        """Make ``to`` (default: the champion before the current one) the champion again."""
        current = self.champion(name)
        if current is None:
            raise RegistryError(f"model '{name}' has no champion to roll back")
        if to is None:
            previous = [
                h["previous"]
                for h in self.aliases(name)["history"]
                if h["champion"] == current and h["previous"] not in (None, current)
            ]
            to = previous[-1] if previous else None
            if to is None:
                raise RegistryError(
                    f"model '{name}': champion '{current}' has no predecessor; "
                    "pass a version to roll back to"
                )
        return self.promote(
            name, to, reason=reason or f"rollback from {current} to {to} by an operator"
        )

    def promote(self, name: str, version: str, *, reason: str = "") -> PromotionDecision:
        """Make ``version`` the champion by hand (recorded like any other decision)."""
        target = self.metadata(name, version)
        current = self.champion(name)
        decision = PromotionDecision(
            model_name=name,
            candidate=version,
            champion_before=current,
            champion_after=version,
            metric=target.metric,
            direction=target.direction,
            candidate_value=target.metrics.get(target.metric),
            champion_value=None,
            min_improvement=0.0,
            promoted=True,
            reason=reason or f"promoted by an operator (was {current or 'none'})",
        )
        self.set_champion(name, version, reason=decision.reason)
        self.record_decision(decision)
        return decision
