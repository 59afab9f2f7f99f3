"""What each file of a lake is, from its path; anything the layout does not name is never
deleted."""

from __future__ import annotations

import pytest

from tasks.lakeops.inventory import kind_of
from tasks.lakeops.mark import NEVER_DELETED, SWEEP_ORDER

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("lake.json", "identity"),
        ("datasets/customers/partitions/3d6b5943257c008d809ade4f.parquet", "partition"),
        ("datasets/customers/partitions/.tmp-0a1b-partition.parquet", "temporary"),
        ("datasets/customers/versions/0d1faf99a2329e1d.json", "dataset-version"),
        ("datasets/customers/validations/0d1faf99a2329e1d-9f2c.json", "validation"),
        ("datasets/customers/quarantine/5e1d.json", "quarantine"),
        ("datasets/customers/landing/0f3a9c.json", "landing-index"),
        ("datasets/customers/latest.json", "pointer"),
        ("models/customers/versions/3103e60fe4b43f72/metadata.json", "model-metadata"),
        ("models/customers/versions/3103e60fe4b43f72/model.ubj", "model-file"),
        ("models/customers/versions/3103e60fe4b43f72/profile.json", "model-file"),
        ("models/customers/aliases.json", "pointer"),
        ("models/customers/decisions/20261201T130631Z-3103e60f.json", "decision"),
        ("predictions/customers/latest.json", "pointer"),
        ("predictions/customers/sources/ab12.json", "scoring-index"),
        ("predictions/customers/3103e60fe4b43f72/manifests/58727c91.json", "scoring-manifest"),
        ("predictions/customers/3103e60fe4b43f72/0a1846ac550c9319.parquet", "prediction"),
        ("runs/results/ingest-split/045cbd9fb3aae967", "cache-record"),
        ("runs/checkpoints/customers/57f0ad7b05762182/round-000040.ubj", "checkpoint"),
        ("runs/reports/dask/1b7590f6-c3de/score.html", "dask-report"),
        ("runs/reports/customers/3103e60fe4b43f72/training.html", "report"),
        ("runs/leases/train/customers/3103e60fe4b43f72/000000000001.json", "lease"),
        ("runs/leases/active/0a1b2c.json", "lease"),
        ("runs/gc/20261201T182424000000Z.json", "gc-record"),
        # Never deleted: Data Docs (GX's site), metrics, notes someone left.
        ("runs/data-docs/customers/index.html", "other"),
        ("runs/metrics/customers.prom", "other"),
        ("README.txt", "other"),
        ("datasets/customers/partitions/nested/x.parquet", "other"),
    ],
)
def test_each_file_of_the_layout_has_its_kind(path: str, kind: str) -> None:
    assert kind_of(path) == kind


def test_every_kind_is_either_swept_in_order_or_never_deleted() -> None:
    kinds = {
        "identity", "partition", "temporary", "dataset-version", "validation", "quarantine",
        "landing-index", "pointer", "model-metadata", "model-file", "decision", "scoring-index",
        "scoring-manifest", "prediction", "cache-record", "checkpoint", "dask-report", "report",
        "lease", "gc-record", "other",
    }  # fmt: skip
    assert set(SWEEP_ORDER) | NEVER_DELETED == kinds
    assert not set(SWEEP_ORDER) & NEVER_DELETED
    # What names comes before what it names.
    order = SWEEP_ORDER.index
    assert order("cache-record") < order("partition")
    assert order("model-metadata") < order("model-file")
    assert order("dataset-version") < order("partition")
    assert order("scoring-manifest") < order("prediction")
