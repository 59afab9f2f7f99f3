"""Kubernetes mode: the DaskCluster resource a stage asks the dask-kubernetes operator for.

Building the resource is a pure function (tested as data against the operator's CRD schema
and the Kubernetes Pod schema); creating it is ``KubeCluster(custom_cluster_spec=...)``,
done by the stage's task runner (``tasks/runtime/runner.py``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

from blocks.cluster import DaskClusterConfig
from tasks.errors import ClusterError
from tasks.runtime.probe import run_async

# dask-kubernetes (and its Kubernetes client) is imported only in Kubernetes mode.

# The scheduler gets what the dask-kubernetes examples give it: it holds task metadata,
# not data.
SCHEDULER_RESOURCES = {
    "requests": {"cpu": "250m", "memory": "512Mi"},
    "limits": {"memory": "2Gi"},
}
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]+")


def label_value(text: str) -> str:
    """``text`` made a valid label value: at most 63 of [A-Za-z0-9._-], alphanumeric ends."""
    return _LABEL_VALUE.sub("-", text)[:63].strip("-._")


def worker_resources(config: DaskClusterConfig) -> dict[str, dict[str, str]]:
    """Explicit ``resources`` or, by default, the worker's threads as CPU request and its
    memory limit as both memory request and limit (a worker above its limit gets OOM-killed
    by the kubelet before Dask could spill, so they must agree)."""
    if config.resources is not None:
        return config.resources
    memory = str(config.memory_bytes)
    return {
        "requests": {"cpu": str(config.threads_per_worker or 1), "memory": memory},
        "limits": {"memory": memory},
    }


def dask_cluster_resource(
    config: DaskClusterConfig,
    *,
    name: str,
    workers: int,
    env: dict[str, str],
    labels: dict[str, str],
) -> dict[str, Any]:
    """The ``DaskCluster`` for one stage, starting from dask-kubernetes' ``make_cluster_spec``.

    ``env`` is what the run adds (the Prefect API URL); the block's own ``env`` wins over it.
    """
    from dask_kubernetes.exceptions import ValidationError
    from dask_kubernetes.operator import make_cluster_spec
    from dask_kubernetes.operator.validation import validate_cluster_name

    try:
        validate_cluster_name(name)
    except ValidationError as err:
        raise ClusterError(getattr(err, "message", None) or str(err)) from None
    threads = config.threads_per_worker or 1
    resource: dict[str, Any] = make_cluster_spec(
        name=name,
        image=config.image,
        n_workers=workers,
        resources=worker_resources(config),
        env={**env, **config.env},
        # The worker's limits must match its container's, or Dask's memory manager would
        # plan for memory the kubelet does not give it.
        worker_command=(f"dask worker --nthreads {threads} --memory-limit {config.memory_bytes}"),
        scheduler_service_type=config.scheduler_service_type,
        idle_timeout=config.idle_timeout,
    )
    clean_labels = {key: label_value(value) for key, value in labels.items()}
    resource["metadata"]["labels"] = clean_labels
    resource["metadata"]["namespace"] = config.namespace
    scheduler = resource["spec"]["scheduler"]
    container = scheduler["spec"]["containers"][0]
    container["resources"] = SCHEDULER_RESOURCES
    # make_cluster_spec starts "dask-scheduler", a script distributed no longer installs;
    # "dask scheduler" is the same program under its current name.
    args = container["args"]
    if args and args[0] == "dask-scheduler":
        container["args"] = ["dask", "scheduler", *args[1:]]
    for role in (resource["spec"]["worker"], scheduler):
        role["metadata"] = {"labels": dict(clean_labels)}
        pod = role["spec"]
        if config.service_account:
            pod["serviceAccountName"] = config.service_account
        if config.node_selector:
            pod["nodeSelector"] = dict(config.node_selector)
        if config.tolerations:
            pod["tolerations"] = [dict(t) for t in config.tolerations]
        for container in pod["containers"]:
            if not container.get("env"):
                container.pop("env", None)
            if config.env_from_secret:
                container["envFrom"] = [{"secretRef": {"name": config.env_from_secret}}]
    return resource


# Flow-run pods as the work pool's job template labels them (infra/k8s/base-job-template.json).
FLOW_RUN_POD_LABELS = {
    "app.kubernetes.io/part-of": "mlops-pipelines",
    "app.kubernetes.io/component": "flow-run",
}
# The dask-kubernetes operator scales and retires workers through the scheduler.
OPERATOR_POD_LABELS = {"app.kubernetes.io/name": "dask-kubernetes-operator"}


def network_policy_resource(
    *, cluster: str, namespace: str, labels: dict[str, str], operator_namespace: str
) -> dict[str, Any]:
    """The ``NetworkPolicy`` that lets only the DaskCluster's own pods, the flow-run pods
    and the dask operator reach its scheduler and workers (any port: workers listen on
    random ones). Egress is not restricted: workers read the lake and report to Prefect."""
    own = {"matchLabels": {"dask.org/cluster-name": cluster}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": f"{cluster}-ingress"[:63].rstrip("-"),
            "namespace": namespace,
            "labels": {key: label_value(value) for key, value in labels.items()},
        },
        "spec": {
            "podSelector": own,
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": own},
                        {"podSelector": {"matchLabels": dict(FLOW_RUN_POD_LABELS)}},
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": operator_namespace}
                            },
                            "podSelector": {"matchLabels": dict(OPERATOR_POD_LABELS)},
                        },
                    ]
                }
            ],
        },
    }


def start_kube_cluster(
    *, startup_timeout: float, network_policy: dict[str, Any] | None = None, **kwargs: Any
) -> Any:
    """``KubeCluster(**kwargs)``, started within ``startup_timeout`` seconds or not at all.

    KubeCluster deletes its DaskCluster only when the operator times out; a scheduler pod
    stuck pending (no node fits, image cannot be pulled) would be waited for forever, and
    any other error leaves the resource behind. Here the start is bounded and cancelled on
    KubeCluster's own event loop, and every failure deletes the DaskCluster by name before
    the error is raised, so a failed start leaves nothing running and nothing polling.
    """
    from dask_kubernetes.operator.kubecluster.kubecluster import CreateMode

    # A name clash must not attach this stage to another run's cluster (and then delete
    # it on close): create, never connect.
    kwargs["create_mode"] = CreateMode.CREATE_ONLY
    name = kwargs["custom_cluster_spec"]["metadata"]["name"]
    namespace = kwargs["namespace"]
    # The policy exists before the pods do, so they are never reachable by others; once
    # the DaskCluster exists it owns the policy, and Kubernetes deletes both together.
    if network_policy is not None:
        run_async(_create_network_policy(network_policy), timeout=60)
    try:
        cluster = _bounded_kube_cluster(startup_timeout)(**kwargs)
        if network_policy is not None:
            run_async(_owned_by_cluster(network_policy, name), timeout=60)
        return cluster
    except TimeoutError:
        delete_dask_cluster(name, namespace, policy=network_policy)
        raise ClusterError(
            f"DaskCluster {name} in namespace {namespace} did not start within "
            f"{startup_timeout:g} s (scheduler pod pending? image pull failing?); deleted it"
        ) from None
    except BaseException as err:
        delete_dask_cluster(name, namespace, policy=network_policy)
        if not isinstance(err, Exception):  # interrupted: clean up, then let it through
            raise
        raise ClusterError(
            f"could not start DaskCluster {name} in namespace {namespace}: "
            f"{type(err).__name__}: {err}"
        ) from err


def _bounded_kube_cluster(startup_timeout: float) -> type[Any]:
    """A KubeCluster class whose start gives up after ``startup_timeout`` seconds."""
    from dask_kubernetes.operator import KubeCluster

    class BoundedKubeCluster(KubeCluster):
        def sync(self, func: Any, *args: Any, **kwargs: Any) -> Any:
            # KubeCluster.__init__ runs sync(self._start) without a timeout; with one,
            # distributed wraps _start in wait_for, which cancels it on the cluster's loop
            # (a thread left waiting instead would poll the API until the process exits).
            if getattr(func, "__name__", None) != "_start" or kwargs.get("callback_timeout"):
                return super().sync(func, *args, **kwargs)
            kwargs["callback_timeout"] = startup_timeout
            try:
                return super().sync(func, *args, **kwargs)
            except BaseException:
                self._abandon()
                raise

        def _abandon(self) -> None:
            # The caller deletes the resource; keep the at-exit reaper off this instance
            # and stop its event loop thread.
            self.shutdown_on_close = False
            with contextlib.suppress(BaseException):
                super().sync(self._close, callback_timeout=10)
            self._loop_runner.stop()

    return BoundedKubeCluster


async def _create_network_policy(resource: dict[str, Any]) -> None:
    from kr8s.asyncio.objects import NetworkPolicy

    try:
        await NetworkPolicy(resource).create()
    except Exception as err:
        raise ClusterError(
            f"could not create NetworkPolicy {resource['metadata']['name']} in namespace "
            f"{resource['metadata']['namespace']} ({type(err).__name__}: {err}); the flow-run "
            "service account needs networkpolicies in its Role (infra/k8s/rbac.yaml), or set "
            "network_policy: false on the cluster block"
        ) from None


async def _owned_by_cluster(resource: dict[str, Any], cluster: str) -> None:
    from dask_kubernetes.operator._objects import DaskCluster
    from kr8s.asyncio.objects import NetworkPolicy

    namespace = resource["metadata"]["namespace"]
    owner = await DaskCluster.get(cluster, namespace=namespace)
    policy = await NetworkPolicy.get(resource["metadata"]["name"], namespace=namespace)
    reference = {
        "apiVersion": owner.version,
        "kind": "DaskCluster",
        "name": cluster,
        "uid": owner.metadata.uid,
    }
    await policy.patch({"metadata": {"ownerReferences": [reference]}})


def delete_dask_cluster(
    name: str, namespace: str, *, timeout: float = 60, policy: dict[str, Any] | None = None
) -> bool:
    """Delete the DaskCluster ``name`` if it exists (the operator removes its pods), and
    the stage's NetworkPolicy ``policy`` if given.

    Returns whether a cluster was deleted. Best effort: a failure here is logged, because it
    must not hide the error that made the cleanup necessary.
    """

    async def delete() -> bool:
        import kr8s
        from dask_kubernetes.operator._objects import DaskCluster
        from kr8s.asyncio.objects import NetworkPolicy

        if policy is not None:
            with contextlib.suppress(kr8s.NotFoundError):
                found = await NetworkPolicy.get(policy["metadata"]["name"], namespace=namespace)
                await found.delete()
        try:
            cluster = await DaskCluster.get(name, namespace=namespace)
        except kr8s.NotFoundError:
            return False
        await cluster.delete()
        return True

    try:
        return run_async(delete(), timeout=timeout)
    except Exception as err:  # reported, never raised: see the docstring
        logging.getLogger(__name__).error(
            "Could not delete DaskCluster %s in namespace %s; delete it with "
            "`kubectl -n %s delete daskcluster %s`: %s",
            name,
            namespace,
            namespace,
            name,
            err,
        )
        return False
