"""The whole pipeline with every stage on a DaskCluster of a real Kubernetes cluster.

Skipped unless a cluster is configured (this suite's CI has none). To run it (README
"Running on a cluster" sets up the cluster side):

    export KUBECONFIG=~/.kube/config                 # a cluster with the dask operator
    export MLOPS_K8S_LAKE=s3://my-bucket/mlops-test  # readable by this machine and the pods
    export MLOPS_K8S_PREFECT_API_URL=http://...      # a Prefect API the pods can reach
    # optional: MLOPS_K8S_IMAGE (mlops-pipelines:latest), MLOPS_K8S_NAMESPACE (mlops),
    #           MLOPS_K8S_ENV_SECRET (a Secret with the pods' AWS credentials)
    make test PYTEST_ARGS="-m kubernetes"

Run it from outside the cluster and bind ``infra/k8s/rbac-port-forward.yaml`` to yourself:
the scheduler service name only resolves inside the cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow, pytest.mark.timeout(1800)]
REQUIRED = ("KUBECONFIG", "MLOPS_K8S_LAKE", "MLOPS_K8S_PREFECT_API_URL")
missing = [name for name in REQUIRED if not os.environ.get(name)]
if missing:
    pytest.skip(
        f"no Kubernetes cluster configured ({', '.join(missing)} not set)",
        allow_module_level=True,
    )


def test_pipeline_runs_every_stage_on_kubernetes_and_leaves_no_cluster(
    demo_spec: str, demo_source: Path
) -> None:
    import uuid

    import fsspec
    import kr8s
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from blocks.cluster import DaskClusterConfig
    from flows.pipeline import ml_pipeline

    namespace = os.environ.get("MLOPS_K8S_NAMESPACE", "mlops")
    root = f"{os.environ['MLOPS_K8S_LAKE'].rstrip('/')}/{uuid.uuid4().hex[:8]}"
    fs, _ = fsspec.core.url_to_fs(root)
    fs.put(str(demo_source), f"{root}/landing", recursive=True)
    with temporary_settings({PREFECT_API_URL: os.environ["MLOPS_K8S_PREFECT_API_URL"]}):
        DaskClusterConfig(
            mode="kubernetes",
            image=os.environ.get("MLOPS_K8S_IMAGE", "mlops-pipelines:latest"),
            namespace=namespace,
            env_from_secret=os.environ.get("MLOPS_K8S_ENV_SECRET"),
            max_workers=2,
            memory_per_worker="2GiB",
        ).save("kubernetes-test", overwrite=True)
        result = ml_pipeline(
            spec=demo_spec,
            source=f"{root}/landing",
            lake=f"{root}/lake",
            cluster="kubernetes-test",
        )
    assert result.promoted and result.files_accepted == 4
    # Every stage's DaskCluster was deleted when its stage ended.
    left = list(kr8s.get("daskclusters", namespace=namespace, label_selector="mlops.io/stage"))
    assert [c.name for c in left] == []
    fs.rm(root, recursive=True)
