"""Kubernetes as a Workloads adapter: cordon the node, evict its pods through the Eviction API (so
PodDisruptionBudgets are honoured), wait until they are gone; undrain uncordons.

The calls are the documented core/v1 and policy/v1 ones (what `kubectl drain` does): PATCH
/api/v1/nodes/{name} with spec.unschedulable, GET /api/v1/pods?fieldSelector=spec.nodeName={name},
POST /api/v1/namespaces/{ns}/pods/{pod}/eviction. DaemonSet pods and mirror (static) pods stay, as
with `kubectl drain --ignore-daemonsets`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from atlas.core.model import Device
from atlas.core.run import poll_until
from atlas.workloads import DrainFailed, Sources
from atlas.workloads.http import RequestsTransport, Transport

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


class KubernetesNodes:
    """`node_name` maps a NetBox device to its Kubernetes node name (by default the same)."""

    def __init__(self, http: Transport, timeout_s: float = 300, poll_s: float = 2) -> None:
        self._http, self._timeout, self._poll = http, timeout_s, poll_s

    def _call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        status, answer = self._http(method, path, body, headers)
        if status >= 300:
            message = answer.get("message", "") if isinstance(answer, dict) else ""
            raise DrainFailed(f"Kubernetes {method} {path}: HTTP {status} {message}".strip())
        return answer

    def _node(self, host: Device) -> str:
        return f"/api/v1/nodes/{quote(host.name, safe='')}"

    def _cordon(self, host: Device, unschedulable: bool) -> None:
        self._call("PATCH", self._node(host), {"spec": {"unschedulable": unschedulable}}, MERGE_PATCH)

    def _evictable(self, host: Device) -> list[tuple[str, str]]:
        selector = quote(f"spec.nodeName={host.name}", safe="")
        pods = self._call("GET", f"/api/v1/pods?fieldSelector={selector}")["items"]
        found = []
        for pod in pods:
            meta = pod["metadata"]
            owners = {o.get("kind") for o in meta.get("ownerReferences", [])}
            if "DaemonSet" in owners or MIRROR_ANNOTATION in meta.get("annotations", {}):
                continue
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                continue
            found.append((meta["namespace"], meta["name"]))
        return found

    def drain(self, host: Device) -> None:
        self._cordon(host, True)
        left = poll_until(lambda: self._evict(host), lambda pods: not pods, self._timeout, pause=self._poll)
        if left:
            shown = ", ".join(f"{ns}/{n}" for ns, n in left)
            raise DrainFailed(f"{host.name}: pods still on the node after {self._timeout:.0f} s: {shown}")

    def _evict(self, host: Device) -> list[tuple[str, str]]:
        """Asks for every evictable pod's eviction; the pods that were still there."""
        pods = self._evictable(host)
        for namespace, name in pods:
            status, answer = self._http(
                "POST",
                f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}/eviction",
                {
                    "apiVersion": "policy/v1",
                    "kind": "Eviction",
                    "metadata": {"name": name, "namespace": namespace},
                },
                None,
            )
            # 429: a PodDisruptionBudget says not now; 404: already gone. Both: ask again later.
            if status >= 300 and status not in (404, 429):
                message = answer.get("message", "") if isinstance(answer, dict) else ""
                raise DrainFailed(
                    f"{host.name}: evicting {namespace}/{name}: HTTP {status} {message}".strip()
                )
        return pods

    def undrain(self, host: Device) -> None:
        self._cordon(host, False)

    def drained(self, host: Device) -> bool:
        return bool(self._call("GET", self._node(host)).get("spec", {}).get("unschedulable", False))


def from_sources(sources: Sources) -> KubernetesNodes:
    """Through the API the settings or Vault (secret/atlas/workloads/kubernetes) name."""
    api = sources.endpoint("kubernetes")
    return KubernetesNodes(RequestsTransport(api.url, api.token, api.ca_file))
