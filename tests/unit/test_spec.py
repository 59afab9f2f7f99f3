from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tasks.errors import SpecError
from tasks.spec import DatasetSpec, load_spec, parse_spec

pytestmark = pytest.mark.timeout(30)


def _demo(demo_spec: str) -> dict:
    return yaml.safe_load(Path(demo_spec).read_text())


def test_demo_spec_loads_with_defaults_filled_in(demo_spec: str) -> None:
    spec = load_spec(demo_spec)
    assert spec.name == "customers"
    assert spec.task == "binary" and spec.target == "churned" and spec.key == "customer_id"
    # Default features: every usable column but target and key (strings are not usable).
    assert "customer_id" not in spec.feature_columns
    assert "churned" not in spec.feature_columns
    assert {"age", "contract", "signup_date", "is_senior"} <= set(spec.feature_columns)
    assert spec.metric == "roc_auc" and spec.direction == "maximize"
    params = spec.xgboost_params()
    assert params["objective"] == "binary:logistic" and params["tree_method"] == "hist"
    assert params["max_depth"] == 6  # the spec's own params win over defaults


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"columns": {"age": {"type": "integer"}}}, "columns.age.type"),
        ({"colums": {}}, "colums: Extra inputs are not permitted"),
        ({"target": "nope"}, "target: 'nope' is not one of the columns"),
        ({"key": "nope"}, "key: 'nope' is not one of the columns"),
        ({"task": "ranking"}, "task: Input should be 'binary', 'multiclass' or 'regression'"),
        ({"features": ["customer_id"]}, "features.0: 'customer_id' is the target or key column"),
        ({"features": ["age", "nope"]}, "features.1: 'nope' is not one of the columns"),
        (
            {"promotion": {"metric": "rmse"}},
            "promotion.metric: 'rmse' is not reported for a binary",
        ),
        ({"validation": {"min_accepted_fraction": 1.5}}, "validation.min_accepted_fraction"),
        ({"split": {"validation": 0.5, "test": 0.45}}, "split: validation + test must leave"),
        ({"name": "Bad Name"}, "name: String should match pattern"),
        ({"expectations": [{"kwargs": {}}]}, "expectations.0.type: Field required"),
        (
            {"expectations": [{"type": "expect_column_to_exist", "kwargs": {"column": "agee"}}]},
            "expectations.0.kwargs.column: 'agee' is not one of the columns",
        ),
        ({"features": ["age", "age"]}, "features: a column is listed more than once"),
        (
            {"columns": {"price[usd]": {"type": "float"}}},
            "columns.price[usd]: column names may not",
        ),
        ({"columns": {"__split__": {"type": "int"}}}, "columns.__split__: column names may not"),
        (
            {"ingest": {"partition_size": "big"}},
            "ingest.partition_size: 'big' is not a size such as 128MiB",
        ),
        (
            {"ingest": {"partition_size": "1KiB"}},
            "ingest.partition_size: '1KiB' is too small for a partition",
        ),
        ({"ingest": {"partition_rows": 0}}, "ingest.partition_rows: Input should be greater"),
        ({"ingest": {"partiton_size": "1MiB"}}, "ingest.partiton_size: Extra inputs"),
    ],
)
def test_bad_spec_error_names_file_and_field(
    demo_spec: str, tmp_path: Path, change: dict, expected: str
) -> None:
    data = _demo(demo_spec)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            for sub, subvalue in value.items():
                if isinstance(subvalue, dict) and isinstance(data[key].get(sub), dict):
                    data[key][sub].update(subvalue)
                else:
                    data[key][sub] = subvalue
        else:
            data[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as err:
        load_spec(str(path))
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_regression_target_must_be_numeric(demo_spec: str) -> None:
    data = _demo(demo_spec)
    data["task"] = "regression"
    with pytest.raises(SpecError, match="regression target must be int or float"):
        parse_spec(data, source="s.yaml")


def test_string_feature_must_be_declared_category(demo_spec: str) -> None:
    data = _demo(demo_spec)
    data["key"] = None
    data["features"] = ["customer_id"]
    with pytest.raises(SpecError, match=r"features\.0: 'customer_id' is a string column"):
        parse_spec(data, source="s.yaml")


def test_missing_unparsable_and_non_mapping_specs(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="dataset spec not found"):
        load_spec(str(tmp_path / "absent.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(str(broken))
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        load_spec(str(listy))


def test_hashes_change_only_with_what_they_cover(spec_variant: Callable[..., str]) -> None:
    base = load_spec(spec_variant("a.yaml"))
    new_expectation = load_spec(
        spec_variant(
            "b.yaml", expectations=[{"type": "expect_column_to_exist", "kwargs": {"column": "age"}}]
        )
    )
    new_policy = load_spec(spec_variant("c.yaml", promotion__min_improvement=0.5))
    new_params = load_spec(spec_variant("d.yaml", training__num_boost_round=10))
    # Changing an expectation must not re-ingest (schema) or retrain (training) anything.
    assert new_expectation.schema_hash() == base.schema_hash()
    assert new_expectation.training_hash() == base.training_hash()
    assert new_expectation.expectations_hash() != base.expectations_hash()
    # A promotion policy change retrains nothing.
    assert new_policy.training_hash() == base.training_hash()
    assert new_policy.spec_hash() != base.spec_hash()
    assert new_params.training_hash() != base.training_hash()
    assert base.spec_hash() == load_spec(spec_variant("a2.yaml")).spec_hash()
    # Descriptions and nullability do not change how files are cast or models trained.
    described = load_spec(
        spec_variant("e.yaml", columns__age={"type": "int", "nullable": True, "description": "x"})
    )
    assert described.schema_hash() == base.schema_hash()
    assert described.training_hash() == base.training_hash()
    assert described.expectations_hash() != base.expectations_hash()  # one not-null check fewer
    retyped = load_spec(spec_variant("f.yaml", columns__age={"type": "float", "nullable": False}))
    assert retyped.schema_hash() != base.schema_hash()
    # The acceptance threshold changes the report, not any partition's result.
    stricter = load_spec(spec_variant("g.yaml", validation={"min_accepted_fraction": 0.9}))
    assert stricter.expectations_hash() == base.expectations_hash()
    assert stricter.report_hash() != base.report_hash()


def test_implied_expectations_cover_nullability_and_categories(demo_spec: str) -> None:
    spec: DatasetSpec = load_spec(demo_spec)
    implied = [e for e in spec.all_expectations() if e not in spec.expectations]
    not_null = {
        e.kwargs["column"] for e in implied if e.type == "expect_column_values_to_not_be_null"
    }
    assert not_null == {n for n, c in spec.columns.items() if not c.nullable} | {spec.target}
    in_set = [e for e in implied if e.type == "expect_column_values_to_be_in_set"]
    assert [e.kwargs["column"] for e in in_set] == ["contract"]


def test_scoring_runs_the_expectations_that_do_not_concern_the_target(demo_spec: str) -> None:
    spec = load_spec(demo_spec)
    at_scoring = spec.scoring_expectations()
    assert at_scoring and len(at_scoring) < len(spec.all_expectations())
    assert all(e.kwargs.get("column") != spec.target for e in at_scoring)
    assert (spec.scoring.explain, spec.monitoring.psi_alert) == (0, 0.25)


def test_monitoring_thresholds_are_checked(tmp_path: Path, demo_spec: str) -> None:
    data = yaml.safe_load(Path(demo_spec).read_text())
    data["monitoring"] = {"psi_warn": 0.3, "psi_alert": 0.2}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match="psi_alert must be at least psi_warn"):
        load_spec(str(path))
