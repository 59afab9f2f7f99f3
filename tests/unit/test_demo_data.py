from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.demo_data import make_frame, write_demo_data

pytestmark = pytest.mark.timeout(60)


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_writes_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    write_demo_data(str(tmp_path / "a"), rows=3000, files=3, seed=5)
    write_demo_data(str(tmp_path / "b"), rows=3000, files=3, seed=5)
    write_demo_data(str(tmp_path / "c"), rows=3000, files=3, seed=6)
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    assert _bytes(tmp_path / "a") != _bytes(tmp_path / "c")


def test_files_mix_formats_and_split_rows(tmp_path: Path) -> None:
    written = write_demo_data(str(tmp_path), rows=1001, files=4, seed=1)
    assert [Path(f.path).name for f in written] == [
        "customers-0000.csv",
        "customers-0001.csv.gz",
        "customers-0002.parquet",
        "customers-0003.csv",
    ]
    assert sum(f.rows for f in written) == 1001
    assert all(f.defect is None for f in written)


def test_defects_damage_files_after_the_first(tmp_path: Path) -> None:
    written = write_demo_data(str(tmp_path), rows=2000, files=6, seed=1, defects=True)
    assert [f.defect for f in written] == [
        None,
        "wrong-types",
        "out-of-range",
        "missing-column",
        "truncated",
        None,
    ]


def test_target_has_a_learnable_signal() -> None:
    frame = make_frame(20_000, seed=3)
    churn = frame.groupby("contract", observed=True)["churned"].mean()
    assert churn["month-to-month"] > 2 * churn["two-year"]
    assert 0.15 < frame["churned"].mean() < 0.6
    assert frame["total_charges"].isna().mean() == pytest.approx(0.03, abs=0.01)
    assert np.corrcoef(frame["support_calls"], frame["churned"])[0, 1] > 0.1


def test_rejects_impossible_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least --files"):
        write_demo_data(str(tmp_path), rows=2, files=3, seed=1)


def test_a_scoring_batch_can_drift_and_come_without_the_target(tmp_path: Path) -> None:
    import pandas as pd

    write_demo_data(str(tmp_path / "base"), rows=2000, files=1, seed=5)
    write_demo_data(
        str(tmp_path / "moved"),
        rows=2000,
        files=1,
        seed=5,
        drift=["monthly_charges", "region"],
        unlabeled=True,
    )
    base = pd.read_csv(tmp_path / "base" / "customers-0000.csv")
    moved = pd.read_csv(tmp_path / "moved" / "customers-0000.csv")
    assert "churned" not in moved.columns
    assert moved["monthly_charges"].mean() == pytest.approx(
        base["monthly_charges"].mean() * 1.5, rel=0.01
    )
    assert 0.15 < (moved["region"] == "region-new").mean() < 0.25
    with pytest.raises(ValueError, match="'nope' is not a column"):
        write_demo_data(str(tmp_path / "x"), rows=10, files=1, seed=1, drift=["nope"])
