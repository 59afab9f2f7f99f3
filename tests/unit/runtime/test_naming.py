"""Run names carry the dataset, also when the spec cannot be read (the run then fails on it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow
from prefect.runtime import flow_run

from tasks.runtime.naming import dataset_of, dataset_run_name
from tests.support.paths import DEMO_SPEC

pytestmark = pytest.mark.timeout(60)


def test_the_dataset_comes_from_the_spec_or_its_file_name(tmp_path: Path) -> None:
    assert dataset_of(str(DEMO_SPEC)) == "customers"
    assert dataset_of(str(tmp_path / "orders.yaml")) == "orders"  # missing
    broken = tmp_path / "billing.yml"
    broken.write_text("columns: [")
    assert dataset_of(str(broken)) == "billing"
    assert dataset_of(str(tmp_path)) == tmp_path.name.split(".")[0]  # a folder


@flow(flow_run_name=dataset_run_name)
def named(spec: str) -> str:
    return str(flow_run.name)


def test_a_flow_run_is_named_after_its_dataset(prefect_api: str) -> None:
    name = named(str(DEMO_SPEC))
    prefix, *words = name.split("-")
    assert prefix == "customers" and len(words) == 2 and all(words)
