from __future__ import annotations

from pathlib import Path

import pytest

from blocks.registry import ModelRegistry
from tasks.errors import RegistryError
from tests.support.models import metadata, model_bytes

pytestmark = pytest.mark.timeout(60)


def test_register_is_immutable_and_model_round_trips(tmp_path: Path) -> None:
    registry = ModelRegistry(lake=str(tmp_path))
    raw = model_bytes()
    uri = registry.register(metadata("v1"), raw)
    assert uri.endswith("models/m/versions/v1/model.ubj")
    assert (tmp_path / "models/m/versions/v1/model.ubj").read_bytes()[:1] == b"{"  # UBJSON object
    with pytest.raises(RegistryError, match="already exists; versions are immutable"):
        registry.register(metadata("v1"), raw)
    booster = registry.load_booster("m", "v1")
    assert booster.num_boosted_rounds() == 2
    with pytest.raises(RegistryError, match="has no version 'v9'"):
        registry.metadata("m", "v9")


def test_a_version_without_metadata_does_not_exist(tmp_path: Path) -> None:
    registry = ModelRegistry(lake=str(tmp_path))
    registry.register(metadata("v1"), model_bytes())
    # A crash between the two writes leaves only the model file: not a version.
    half = tmp_path / "models/m/versions/v2"
    half.mkdir(parents=True)
    (half / "model.ubj").write_bytes(model_bytes())
    assert [m.version for m in registry.versions("m")] == ["v1"]
    assert not registry.has_version("m", "v2")
    with pytest.raises(RegistryError):
        registry.set_champion("m", "v2", reason="x")


def test_champion_alias_history_rollback_and_manual_promotion(tmp_path: Path) -> None:
    registry = ModelRegistry(lake=str(tmp_path))
    for v in ["v1", "v2", "v3"]:
        registry.register(metadata(v), model_bytes())
    assert registry.champion("m") is None
    with pytest.raises(RegistryError, match="no champion to roll back"):
        registry.rollback("m")
    registry.set_champion("m", "v1", reason="first")
    with pytest.raises(RegistryError, match="has no predecessor"):
        registry.rollback("m")
    registry.set_champion("m", "v2", reason="better")
    decision = registry.rollback("m")
    assert (decision.champion_before, decision.champion_after) == ("v2", "v1")
    assert registry.champion("m") == "v1"
    registry.promote("m", "v3", reason="by hand")
    history = registry.aliases("m")["history"]
    assert [(h["previous"], h["champion"]) for h in history] == [
        (None, "v1"),
        ("v1", "v2"),
        ("v2", "v1"),
        ("v1", "v3"),
    ]
    assert [d.reason for d in registry.decisions("m")][-1] == "by hand"
    assert len(registry.decisions("m")) == 2  # the manual switches are recorded decisions


def test_repeating_the_champion_is_no_transition_and_rollback_skips_it(tmp_path: Path) -> None:
    registry = ModelRegistry(lake=str(tmp_path))
    for v in ["v1", "v2"]:
        registry.register(metadata(v), model_bytes())
    registry.set_champion("m", "v1", reason="first")
    registry.set_champion("m", "v2", reason="better")
    registry.set_champion("m", "v2", reason="retried write")
    assert len(registry.aliases("m")["history"]) == 2
    assert registry.rollback("m").champion_after == "v1"


def test_restore_aliases_puts_back_what_a_rolled_back_promotion_replaced(tmp_path: Path) -> None:
    registry = ModelRegistry(lake=str(tmp_path))
    for version in ("v1", "v2"):
        registry.register(metadata(version), model_bytes())
    registry.set_champion("m", "v1", reason="first")
    before = registry.aliases("m")
    registry.set_champion("m", "v2", reason="second")
    registry.restore_aliases("m", before)
    assert registry.aliases("m") == before and registry.champion("m") == "v1"
