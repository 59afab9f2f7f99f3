"""The same pipeline against s3:// — moto's S3 server in its own process, over real HTTP."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocks.registry import ModelRegistry
from flows.pipeline import ml_pipeline

from ..conftest import DEMO_SPEC

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow, pytest.mark.s3]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server process; the standard AWS variables point every process at it.

    Set in os.environ (not per-test) because the Dask workers that read and write the lake
    are separate processes that inherit the environment.
    """
    port = _free_port()
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_pipeline_on_s3_source_spec_and_lake(s3_endpoint: str, demo_source: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("landing-zone")
    fs.mkdir("lake-bucket")
    for path in sorted(demo_source.iterdir()):
        fs.put_file(str(path), f"landing-zone/incoming/{path.name}")
    fs.put_file(str(DEMO_SPEC), "landing-zone/specs/customers.yaml")

    lake = "s3://lake-bucket/ml"
    result = ml_pipeline(
        spec="s3://landing-zone/specs/customers.yaml",
        source="s3://landing-zone/incoming",
        lake=lake,
    )
    assert result.promoted and result.partitions_accepted == 4 and result.rows == 6000

    registry = ModelRegistry(lake=lake)
    assert registry.champion("customers") == result.model_version
    assert (
        registry.metadata("customers", result.model_version)
        .partitions[0]
        .startswith("s3://lake-bucket/ml/")
    )
    assert registry.load_booster("customers", result.model_version).num_boosted_rounds() > 0
    keys = fs.find("lake-bucket/ml", refresh=True)
    assert len([k for k in keys if k.endswith(".parquet")]) == 4
    assert "lake-bucket/ml/models/customers/aliases.json" in keys
    assert f"lake-bucket/ml/models/customers/versions/{result.model_version}/model.ubj" in keys

    again = ml_pipeline(spec=str(DEMO_SPEC), source="s3://landing-zone/incoming", lake=lake)
    assert again.new_partitions == 0 and again.model_reused and not again.promoted
    assert again.champion == result.model_version
