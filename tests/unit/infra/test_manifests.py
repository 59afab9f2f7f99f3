"""infra/ as data: every manifest validates offline, and they agree with each other and with
the code (namespace, service account, image, RBAC)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from blocks.cluster import DaskClusterConfig
from tests.support.paths import REPO

K8S = REPO / "infra" / "k8s"
KUBERNETES_VERSION = "1.30"
DEFAULTS = DaskClusterConfig(mode="kubernetes")
pytestmark = pytest.mark.timeout(60)


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


MANIFESTS = ["namespace.yaml", "rbac.yaml", "rbac-port-forward.yaml"]


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifests_validate_against_the_kubernetes_schemas(name: str) -> None:
    for document in documents(name):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_the_manifests_to_apply() -> None:
    (kustomization,) = documents("kustomization.yaml")
    assert kustomization["resources"] == ["namespace.yaml", "rbac.yaml"]
    assert all((K8S / r).is_file() for r in kustomization["resources"])


def test_everything_is_in_the_namespace_the_block_uses() -> None:
    (namespace,) = documents("namespace.yaml")
    assert namespace["metadata"]["name"] == DEFAULTS.namespace
    for name in ("rbac.yaml", "rbac-port-forward.yaml"):
        for document in documents(name):
            assert document["metadata"]["namespace"] == DEFAULTS.namespace


def test_the_flow_run_account_may_manage_dask_clusters_and_nothing_else() -> None:
    by_kind = {d["kind"]: d for d in documents("rbac.yaml")}
    account, role, binding = by_kind["ServiceAccount"], by_kind["Role"], by_kind["RoleBinding"]
    assert account["metadata"]["name"] == DEFAULTS.service_account
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": DEFAULTS.service_account, "namespace": "mlops"}
    ]
    granted = {
        (group, resource): sorted(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    # Exactly what KubeCluster's client calls (create, scale, adapt, wait, logs, close).
    assert granted == {
        ("kubernetes.dask.org", "daskclusters"): ["create", "delete", "get", "list"],
        ("kubernetes.dask.org", "daskworkergroups"): ["get", "list", "patch"],
        ("kubernetes.dask.org", "daskautoscalers"): ["create", "delete", "patch"],
        ("", "pods"): ["get", "list"],
        ("", "services"): ["get", "list"],
        ("", "pods/log"): ["get"],
        ("networking.k8s.io", "networkpolicies"): ["create", "delete", "get", "list", "patch"],
    }
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in role["rules"])


def render_job_template(template: dict[str, Any], **values: Any) -> dict[str, Any]:
    """What the Prefect kubernetes worker fills in for a flow run: the variables' defaults
    plus the run's values (Prefect's own templating; unset placeholders are dropped)."""
    from prefect.utilities.templating import apply_values

    defaults = {
        key: spec["default"]
        for key, spec in template["variables"]["properties"].items()
        if spec.get("default") is not None
    }
    rendered: dict[str, Any] = apply_values(
        template["job_configuration"], {**defaults, **values}, remove_notset=True
    )
    return rendered


def test_the_work_pool_job_template_renders_a_valid_job() -> None:
    template = json.loads((K8S / "base-job-template.json").read_text())
    configuration = render_job_template(
        template,
        name="gentle-otter",
        command="prefect flow-run execute",
        env={"PREFECT_API_URL": "http://prefect-server.prefect.svc:4200/api"},
        labels={"prefect.io/flow-run-id": "5f0c3c1e-9a6b-4b7e-8c1d-2e3f4a5b6c7d"},
    )
    job = copy.deepcopy(configuration["job_manifest"])
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == DEFAULTS.service_account
    assert job["metadata"]["namespace"] == DEFAULTS.namespace
    assert pod["containers"][0]["image"] == DEFAULTS.image
    # Prefect's stock template puts these two Job fields in the pod spec and its worker
    # expects them there; they are Prefect's, not ours, so only they are set aside.
    assert (pod.pop("parallelism"), pod.pop("completions")) == (1, 1)
    # Prefect turns env/command into the container's list form when it submits the Job.
    container = pod["containers"][0]
    container["env"] = [{"name": k, "value": v} for k, v in container["env"].items()]
    container["args"] = container["args"].split()
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def test_the_work_pool_job_template_passes_the_servers_check() -> None:
    # The check the Prefect server runs when the pool is created or updated: every
    # placeholder is a declared variable.
    from prefect.server.schemas.actions import WorkPoolCreate

    template = json.loads((K8S / "base-job-template.json").read_text())
    pool = WorkPoolCreate(name="kubernetes", type="kubernetes", base_job_template=template)
    assert pool.base_job_template["variables"]["properties"]["namespace"]["default"] == "mlops"
    template["job_configuration"]["namespace"] = "{{ namespace_typo }}"
    with pytest.raises(ValueError, match="undeclared variable"):
        WorkPoolCreate(name="kubernetes", type="kubernetes", base_job_template=template)


def merged(defaults: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of user values over chart defaults (maps merge, everything else wins)."""
    out = copy.deepcopy(defaults)
    for key, value in ours.items():
        both_maps = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both_maps else value
    return out


def prefect_worker_values() -> dict[str, Any]:
    chart = REPO / "tests" / "data" / "prefect-worker-chart"
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    (ours,) = documents("prefect-worker-values.yaml")
    values = merged(defaults, ours)
    # What `--set-file worker.config.baseJobTemplate.configuration=...` adds (README).
    template = (K8S / "base-job-template.json").read_text()
    values["worker"]["config"]["baseJobTemplate"]["configuration"] = template
    return values


def test_prefect_worker_values_validate_against_the_charts_schema() -> None:
    schema = json.loads((REPO / "tests/data/prefect-worker-chart/values.schema.json").read_text())
    values = prefect_worker_values()
    jsonschema.Draft7Validator(schema).validate(values)
    worker = values["worker"]
    assert worker["config"]["type"] == "kubernetes"
    assert worker["apiConfig"] == "selfHostedServer"
    # The validation has teeth: the pre-2025.3 key layout is refused.
    old = merged(values, {"worker": {"apiConfig": "server", "serverApiConfig": {"apiUrl": "x"}}})
    assert list(jsonschema.Draft7Validator(schema).iter_errors(old))


def test_the_worker_and_flow_runs_use_different_accounts() -> None:
    values = prefect_worker_values()
    assert values["serviceAccount"]["name"] != DEFAULTS.service_account
    assert values["namespaceOverride"] == DEFAULTS.namespace


def test_dask_operator_values_only_set_keys_the_chart_has() -> None:
    import dask_kubernetes

    chart = Path(dask_kubernetes.__file__).parent / "operator/deployment/helm"
    defaults = yaml.safe_load((chart / "dask-kubernetes-operator/values.yaml").read_text())
    (ours,) = documents("dask-operator-values.yaml")

    def unknown(ours: dict[str, Any], theirs: dict[str, Any], at: str = "") -> list[str]:
        found = []
        for key, value in ours.items():
            if key not in theirs:
                found.append(f"{at}{key}")
            elif isinstance(value, dict) and isinstance(theirs[key], dict) and theirs[key]:
                found += unknown(value, theirs[key], f"{at}{key}.")
        return found

    assert unknown(ours, defaults) == []


def test_the_image_runs_as_a_non_root_user_with_the_package_installed() -> None:
    dockerfile = (REPO / "infra/docker/Dockerfile").read_text()
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    users = re.findall(r"^USER\s+(\S+)", final_stage, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    # The package and its dependencies come from pyproject.toml, as for `make run`.
    assert "COPY pyproject.toml" in dockerfile and "pip install --no-deps ." in dockerfile
    for package in ("blocks", "deployments", "flows", "tasks"):
        assert f"COPY {package}/ {package}/" in dockerfile
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*") :].count("!pyproject.toml") == 1
    for package in ("blocks", "deployments", "flows", "tasks", "datasets"):
        assert f"!{package}/" in ignored


def test_flow_run_pods_carry_the_labels_the_stage_network_policies_let_in() -> None:
    from tasks.runtime.kube import FLOW_RUN_POD_LABELS

    template = json.loads((K8S / "base-job-template.json").read_text())
    job = render_job_template(template, name="run", namespace="mlops", image="mlops:1")
    assert job["job_manifest"]["spec"]["template"]["metadata"]["labels"] == FLOW_RUN_POD_LABELS
