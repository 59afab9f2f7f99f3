"""Kubernetes mode as data: every generated DaskCluster validates offline against the
operator's CRD schema (shipped with dask-kubernetes) and its pods against Kubernetes' own."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import dask_kubernetes
import jsonschema
import kubernetes_validate
import pytest
import yaml

from blocks.cluster import DaskClusterConfig
from tasks.errors import ClusterError
from tasks.runtime.kube import (
    FLOW_RUN_POD_LABELS,
    OPERATOR_POD_LABELS,
    dask_cluster_resource,
    label_value,
)
from tasks.runtime.plan import plan_stage
from tasks.runtime.runner import cluster_name

# The oldest Kubernetes minor the manifests promise to work on (README "Running on a
# cluster"); validating against it catches fields newer clusters added.
KUBERNETES_VERSION = "1.30"
RUN_ID = "5f0c3c1e-9a6b-4b7e-8c1d-2e3f4a5b6c7d"
LABELS = {
    "app.kubernetes.io/name": "mlops-pipelines",
    "mlops.io/stage": "train",
    "prefect.io/flow-run-id": RUN_ID,
    "prefect.io/flow-run-name": "gentle-otter",
    "prefect.io/flow-name": "train",
}
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@cache
def crd_schema(kind: str) -> dict[str, Any]:

    crds = Path(dask_kubernetes.__file__).parent / "operator/deployment/helm"
    path = crds / f"dask-kubernetes-operator/crds/{kind.lower()}.yaml"
    crd = yaml.safe_load(path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["storage"])
    return dict(version["schema"]["openAPIV3Schema"])


def validate_dask_cluster(resource: dict[str, Any]) -> None:
    """CRD schema for the resource, Kubernetes' Pod schema (strict) for each pod template."""
    assert resource["apiVersion"] == "kubernetes.dask.org/v1"
    assert resource["kind"] == "DaskCluster"
    jsonschema.validate({"spec": resource["spec"]}, crd_schema("DaskCluster"))
    metadata = resource["metadata"]
    for key, value in metadata["labels"].items():
        assert LABEL_VALUE.match(value) and len(value) <= 63, (key, value)
    for role in ("scheduler", "worker"):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{metadata['name']}-{role}",
                **resource["spec"][role]["metadata"],
            },
            "spec": resource["spec"][role]["spec"],
        }
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{metadata['name']}-scheduler"},
        "spec": resource["spec"]["scheduler"]["service"],
    }
    kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)


def resource_for(
    config: DaskClusterConfig, stage: str = "train", workers: int = 3
) -> dict[str, Any]:
    return dask_cluster_resource(
        config,
        name=cluster_name(stage, RUN_ID),
        workers=workers,
        env={"PREFECT_API_URL": "http://prefect-server.prefect.svc:4200/api"},
        labels={**LABELS, "mlops.io/stage": stage},
    )


CONFIGS = {
    "defaults": DaskClusterConfig(mode="kubernetes"),
    "everything": DaskClusterConfig(
        mode="kubernetes",
        image="registry.example.com/mlops-pipelines:1.2.3",
        namespace="ml-prod",
        threads_per_worker=4,
        memory_per_worker="16GiB",
        env={"AWS_REGION": "eu-west-1"},
        env_from_secret="mlops-s3-credentials",
        node_selector={"node.kubernetes.io/instance-type": "m6i.2xlarge"},
        tolerations=[
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
        ],
        service_account="ml-prod-runner",
        scheduler_service_type="LoadBalancer",
        idle_timeout=300,
    ),
    "explicit resources, no service account": DaskClusterConfig(
        mode="kubernetes",
        resources={"requests": {"cpu": "1500m", "memory": "6Gi"}, "limits": {"memory": "8Gi"}},
        service_account=None,
    ),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("stage", ["ingest", "validate", "train", "promote"])
def test_generated_dask_clusters_validate(config: DaskClusterConfig, stage: str) -> None:
    validate_dask_cluster(resource_for(config, stage))


@pytest.mark.timeout(30)
def test_the_spec_carries_every_setting_of_the_block() -> None:
    config = CONFIGS["everything"]
    resource = resource_for(config, "validate", workers=5)
    assert resource["metadata"]["name"] == "mlops-validate-5f0c3c1e9a6b"
    assert resource["metadata"]["namespace"] == "ml-prod"
    assert resource["metadata"]["labels"]["prefect.io/flow-run-id"] == RUN_ID
    assert resource["metadata"]["labels"]["mlops.io/stage"] == "validate"
    spec = resource["spec"]
    assert spec["idleTimeout"] == 300
    assert spec["worker"]["replicas"] == 5
    assert spec["scheduler"]["service"]["type"] == "LoadBalancer"
    for role in ("scheduler", "worker"):
        pod = spec[role]["spec"]
        assert spec[role]["metadata"]["labels"] == resource["metadata"]["labels"]
        assert pod["serviceAccountName"] == "ml-prod-runner"
        assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "m6i.2xlarge"}
        assert pod["tolerations"][0]["key"] == "dedicated"
        (container,) = pod["containers"]
        assert container["image"] == "registry.example.com/mlops-pipelines:1.2.3"
        assert container["envFrom"] == [{"secretRef": {"name": "mlops-s3-credentials"}}]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["PREFECT_API_URL"].startswith("http://prefect-server")
        assert env["AWS_REGION"] == "eu-west-1"
    worker = spec["worker"]["spec"]["containers"][0]
    # Dask's memory limit and the container's agree, and threads match the CPU request.
    assert worker["args"][:6] == [
        "dask",
        "worker",
        "--nthreads",
        "4",
        "--memory-limit",
        str(16 * 2**30),
    ]
    assert worker["resources"] == {
        "requests": {"cpu": "4", "memory": str(16 * 2**30)},
        "limits": {"memory": str(16 * 2**30)},
    }
    scheduler = spec["scheduler"]["spec"]["containers"][0]
    # The current name of the scheduler command (no dask-scheduler script any more).
    assert scheduler["args"][:2] == ["dask", "scheduler"]
    assert scheduler["resources"]["limits"]["memory"] == "2Gi"


@pytest.mark.timeout(30)
def test_an_overlong_cluster_name_is_refused() -> None:
    with pytest.raises(ClusterError, match="DaskCluster name must also be under"):
        dask_cluster_resource(
            CONFIGS["defaults"], name="mlops-" + "x" * 60, workers=1, env={}, labels={}
        )


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gentle-otter", "gentle-otter"),
        ("ml pipeline / nightly", "ml-pipeline-nightly"),
        ("-x-", "x"),
        ("a" * 80, "a" * 63),
    ],
)
def test_label_values_are_made_valid(text: str, expected: str) -> None:
    assert label_value(text) == expected
    assert LABEL_VALUE.match(label_value(text))


@pytest.mark.timeout(30)
def test_a_broken_spec_is_caught_by_the_validation() -> None:
    # The validation has teeth: a misspelt pod field and a wrong CRD type both fail.
    resource = resource_for(CONFIGS["defaults"])
    resource["spec"]["worker"]["spec"]["nodeSelektor"] = {"a": "b"}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_dask_cluster(resource)
    resource = resource_for(CONFIGS["defaults"])
    resource["spec"]["worker"]["replicas"] = "three"
    with pytest.raises(jsonschema.ValidationError):
        validate_dask_cluster(resource)


@pytest.mark.timeout(60)
def test_each_stage_cluster_lets_in_only_its_own_pods_flow_runs_and_the_operator() -> None:
    config = DaskClusterConfig(mode="kubernetes", namespace="ml-prod", operator_namespace="ops")
    stage_plan = plan_stage(
        config, stage="train", name="mlops-train-5f0c3c1e", partitions=4, total_bytes=None,
        cpus=2, labels=LABELS,
    )  # fmt: skip
    policy = stage_plan.cluster_kwargs["network_policy"]
    kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)
    cluster = stage_plan.cluster_kwargs["custom_cluster_spec"]["metadata"]["name"]
    assert policy["metadata"]["namespace"] == "ml-prod"
    own = {"matchLabels": {"dask.org/cluster-name": cluster}}
    assert policy["spec"]["podSelector"] == own and policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert "ports" not in rule  # workers listen on ports chosen at start
    peers = rule["from"]
    assert peers[0] == {"podSelector": own}
    assert peers[1] == {"podSelector": {"matchLabels": FLOW_RUN_POD_LABELS}}
    assert peers[2]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "ops"}}
    # The operator's pods as its chart labels them (Chart.yaml's name, no nameOverride in
    # infra/k8s/dask-operator-values.yaml).
    chart = Path(dask_kubernetes.__file__).parent / "operator/deployment/helm"
    chart_yaml = yaml.safe_load((chart / "dask-kubernetes-operator/Chart.yaml").read_text())
    assert {"app.kubernetes.io/name": chart_yaml["name"]} == OPERATOR_POD_LABELS
    assert peers[2]["podSelector"] == {"matchLabels": OPERATOR_POD_LABELS}
    off = DaskClusterConfig(mode="kubernetes", network_policy=False)
    plan_off = plan_stage(
        off, stage="train", name="mlops-train-5f0c3c1e", partitions=4, total_bytes=None, cpus=2
    )
    assert plan_off.cluster_kwargs["network_policy"] is None
