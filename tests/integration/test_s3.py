"""The pipeline against s3://: moto's S3 server in its own process, over real HTTP, behind a
proxy that fails 30% of the requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from blocks.registry import ModelRegistry
from flows.pipeline import ml_pipeline
from flows.score import score_flow
from tasks.demo_data import write_demo_data
from tasks.lake import Lake
from tasks.runtime.lease import Lease
from tests.support.paths import DEMO_SPEC
from tests.support.processes import free_port, wait_for_port

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow, pytest.mark.s3]


@pytest.fixture
def faulty_s3(s3_endpoint: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The moto server behind a proxy that fails 30% of requests; every process of the test
    (this one and the Dask workers it starts) talks to S3 through the proxy."""
    import fsspec

    port = free_port()
    faults = tmp_path / "faults.log"
    with faults.open("w") as log:
        proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.faulty_proxy",
                str(port),
                s3_endpoint,
                "0.3",
                "7",
            ],
            cwd=Path(__file__).resolve().parents[2],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    endpoint = f"http://127.0.0.1:{port}"
    wait_for_port(port, proxy, what="the faulty proxy")
    # Cached S3 filesystems would keep talking to moto directly.
    fsspec.get_filesystem_class("s3").clear_instance_cache()
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        yield endpoint, faults
    finally:
        os.environ["AWS_ENDPOINT_URL"] = s3_endpoint
        fsspec.get_filesystem_class("s3").clear_instance_cache()
        proxy.terminate()
        proxy.wait(timeout=10)


def test_pipeline_on_s3_survives_thirty_percent_faults(
    s3_endpoint: str, faulty_s3: tuple[str, Path], demo_source: Path, tmp_path: Path
) -> None:
    """Source, spec and lake on S3, with 30% of requests failing (throttling, 5xx, dropped
    connections): the run completes, and nothing is lost or written twice."""
    import fsspec

    # Set up through moto directly: the faults are for the pipeline, not the fixture.
    direct = fsspec.filesystem(
        "s3", skip_instance_cache=True, client_kwargs={"endpoint_url": s3_endpoint}
    )
    direct.mkdir("landing-zone")
    direct.mkdir("lake-bucket")
    for path in sorted(demo_source.iterdir()):
        direct.put_file(str(path), f"landing-zone/incoming/{path.name}")
    direct.put_file(str(DEMO_SPEC), "landing-zone/specs/customers.yaml")

    lake = "s3://lake-bucket/ml"
    result = ml_pipeline(
        spec="s3://landing-zone/specs/customers.yaml",
        source="s3://landing-zone/incoming",
        lake=lake,
    )
    assert result.promoted and result.files_accepted == 4 and result.rows == 6000
    _, faults = faulty_s3
    injected = faults.read_text().splitlines()
    assert len(injected) >= 20, injected  # the run really went through a stormy S3

    registry = ModelRegistry(lake=lake)
    assert registry.champion("customers") == result.model_version
    metadata = registry.metadata("customers", result.model_version)
    assert metadata.partitions[0].startswith("s3://lake-bucket/ml/")
    assert registry.load_booster("customers", result.model_version).num_boosted_rounds() > 0
    # Nothing lost or written twice.
    keys = direct.find("lake-bucket/ml", refresh=True)
    partitions = "lake-bucket/ml/datasets/customers/partitions/"
    assert len([k for k in keys if k.startswith(partitions)]) == result.partitions_total
    version_files = f"lake-bucket/ml/models/customers/versions/{result.model_version}/"
    assert len([k for k in keys if k.startswith(version_files)]) == 5  # with its test rows
    datasets = [k for k in keys if k.startswith("lake-bucket/ml/datasets/customers/versions/")]
    assert len(datasets) == 1
    assert len([k for k in keys if k.endswith("/metadata.json")]) == 1
    aliases = json.loads(direct.cat_file("lake-bucket/ml/models/customers/aliases.json"))
    assert [h["champion"] for h in aliases["history"]] == [result.model_version]
    assert not [k for k in keys if "/.tmp-" in k]

    # The warm re-run and scoring talk to moto directly: the storm above already showed that
    # every store request retries, and they read and write through the same code (through
    # the storm they would add ~45 s of retries to the suite and prove nothing more).
    os.environ["AWS_ENDPOINT_URL"] = s3_endpoint
    fsspec.get_filesystem_class("s3").clear_instance_cache()
    again = ml_pipeline(spec=str(DEMO_SPEC), source="s3://landing-zone/incoming", lake=lake)
    assert again.new_partitions == 0 and again.files_read == 0
    assert again.model_reused and not again.promoted
    assert again.champion == result.model_version

    # The champion scores a batch on S3.
    scoring = tmp_path / "scoring"
    write_demo_data(str(scoring), rows=2000, files=2, seed=44, unlabeled=True)
    for path in sorted(scoring.iterdir()):
        direct.put_file(str(path), f"landing-zone/scoring/{path.name}")
    scored = score_flow(spec=str(DEMO_SPEC), source="s3://landing-zone/scoring", lake=lake)
    assert (scored.rows_scored, scored.files_quarantined) == (2000, 0)
    assert scored.model_version == result.model_version
    (uri,) = scored.predictions
    assert uri.startswith("s3://lake-bucket/ml/predictions/customers/")
    with fsspec.open(uri, "rb", client_kwargs={"endpoint_url": s3_endpoint}) as fh:
        ids = pq.read_table(fh, columns=["customer_id"]).column(0).to_pylist()
    assert len(ids) == len(set(ids)) == 2000
    assert direct.exists(scored.manifest_uri.removeprefix("s3://"))
    assert not [k for k in direct.find("lake-bucket/ml", refresh=True) if "/.tmp-" in k]


def test_a_lease_on_s3_has_one_holder(s3_endpoint: str) -> None:
    """S3's conditional PUT (If-None-Match) makes creating a lease generation exclusive."""
    import fsspec

    fsspec.filesystem("s3", skip_instance_cache=True).mkdir("lease-bucket")
    lake = Lake("s3://lease-bucket/lake")
    assert lake.create("lease-bucket/lake/once.json", b"1") is True
    assert lake.create("lease-bucket/lake/once.json", b"2") is False
    assert lake.read_bytes("lease-bucket/lake/once.json") == b"1"
    leases = [Lease(lake, "train/m/v1", what=f"run {i}", seconds=30) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        holders = list(pool.map(lambda lease: lease.try_acquire(), leases))
    assert holders.count(None) == 1
    winner = leases[holders.index(None)]
    assert {h.owner for h in holders if h is not None} == {winner.owner}
    winner.release()
    assert leases[0 if winner is not leases[0] else 1].try_acquire() is None
