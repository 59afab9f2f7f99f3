from __future__ import annotations

import pytest

from tasks.promote.card import model_card
from tasks.promote.decide import decide, incompatibility, make_decision
from tasks.records import PromotionDecision
from tasks.spec import load_spec
from tests.support.models import metadata

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("candidate", "champion", "direction", "margin", "promoted", "reason"),
    [
        (0.80, None, "maximize", 0.0, True, "no champion yet"),
        (0.85, 0.80, "maximize", 0.01, True, "candidate better by 0.050000"),
        (0.805, 0.80, "maximize", 0.01, False, "below the required 0.01"),
        (0.80, 0.80, "maximize", 0.0, False, "not better"),
        (0.75, 0.80, "maximize", 0.0, False, "not better"),
        (0.30, 0.40, "minimize", 0.05, True, "candidate better by 0.100000"),
        (0.42, 0.40, "minimize", 0.0, False, "not better"),
        (float("nan"), 0.40, "maximize", 0.0, False, "candidate metric is nan"),
        (float("nan"), None, "maximize", 0.0, False, "candidate metric is nan"),
        (0.9, float("nan"), "maximize", 0.0, False, "champion re-scored as nan"),
    ],
)
def test_decide(candidate, champion, direction, margin, promoted, reason) -> None:
    got, why = decide(
        candidate_value=candidate,
        champion_value=champion,
        direction=direction,
        min_improvement=margin,
    )
    assert got is promoted and reason in why


def test_same_version_is_never_promoted_again(demo_spec: str) -> None:
    spec = load_spec(demo_spec)
    candidate = metadata("v1", 0.9)
    decision = make_decision(spec=spec, candidate=candidate, champion="v1", champion_value=None)
    assert not decision.promoted and decision.champion_after == "v1"
    assert "already the champion" in decision.reason


def test_incompatible_champion_is_not_replaced_silently(demo_spec: str) -> None:
    spec = load_spec(demo_spec)
    champion = metadata("v0")
    candidate = metadata("v1")
    candidate = candidate.model_copy(
        update={"layout": candidate.layout.model_copy(update={"classes": ["a", "b"]})}
    )
    why = incompatibility(champion, candidate)
    assert why is not None and "classes" in why
    decision = make_decision(
        spec=spec, candidate=candidate, champion="v0", champion_value=None, incompatible=why
    )
    assert not decision.promoted and decision.champion_after == "v0"
    assert "mlops registry promote customers v1" in decision.reason


def test_model_card_shows_decision_metrics_and_importance() -> None:
    candidate = metadata("v1", 0.9)
    decision = PromotionDecision(
        model_name="m",
        candidate="v1",
        champion_before="v0",
        champion_after="v1",
        metric="roc_auc",
        direction="maximize",
        candidate_value=0.9,
        champion_value=0.8,
        min_improvement=0.0,
        promoted=True,
        reason="candidate better by 0.1",
    )
    card = model_card(candidate=candidate, decision=decision, importance={"a": 2.0, "b": 5.0})
    assert card.startswith("# Model card: m @ v1")
    assert "promoted to champion: candidate better by 0.1" in card
    assert "| roc_auc | 0.900000 |" in card
    assert "candidate 0.900000, champion 0.800000" in card
    assert card.index("| b |") < card.index("| a |")  # most important first


def test_a_champion_split_another_way_cannot_be_compared() -> None:
    champion = metadata("v0")
    candidate = metadata("v1")
    salted = candidate.layout.model_copy(update={"split": {**candidate.layout.split, "salt": "x"}})
    why = incompatibility(champion, candidate.model_copy(update={"layout": salted}))
    assert why is not None and "test rows may include the champion's training rows" in why


def test_a_policy_metric_the_model_lacks_is_a_clear_error(demo_spec: str) -> None:
    from tasks.errors import RegistryError

    spec = load_spec(demo_spec)
    spec = spec.model_copy(update={"promotion": spec.promotion.model_copy(update={"metric": "f1"})})
    with pytest.raises(RegistryError, match=r"promotion\.metric: model customers@v1 has no 'f1'"):
        make_decision(spec=spec, candidate=metadata("v1"), champion=None, champion_value=None)
