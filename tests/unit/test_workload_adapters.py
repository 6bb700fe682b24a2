"""The Kubernetes and Mesos adapters' logic against transports that answer as those APIs document.
These check which calls are made, in which order and with which bodies; no Kubernetes or Mesos runs
here, so they do not claim the adapters work against a live scheduler."""

from __future__ import annotations

from ipaddress import IPv4Interface
from typing import Any

import pytest

from atlas.core.model import Device, DeviceStatus, Role
from atlas.workloads import DrainFailed
from atlas.workloads.kubernetes import KubernetesNodes
from atlas.workloads.mesos import MesosMaintenance

HOST = Device(
    name="fra1-r01-cmp1",
    site="fra1",
    role=Role.COMPUTE,
    status=DeviceStatus.ACTIVE,
    device_type="srv",
    mgmt_address=IPv4Interface("198.18.0.7/22"),
)


def pod(name: str, owner: str = "ReplicaSet", namespace: str = "web") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "ownerReferences": [{"kind": owner}]}}


class KubernetesApi:
    """A node and its pods; one pod's PodDisruptionBudget refuses its first eviction (HTTP 429)."""

    def __init__(self) -> None:
        self.unschedulable = False
        self.pods = [
            pod("web-1"),
            pod("web-2"),
            pod("node-exporter", owner="DaemonSet", namespace="monitoring"),
        ]
        self.refused_once = {"web-2"}
        self.calls: list[tuple[str, str]] = []

    def __call__(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        self.calls.append((method, path))
        if path == "/api/v1/nodes/fra1-r01-cmp1":
            if method == "PATCH":
                assert headers == {"Content-Type": "application/merge-patch+json"}
                self.unschedulable = body["spec"]["unschedulable"]
            return 200, {"spec": {"unschedulable": self.unschedulable}}
        if path == "/api/v1/pods?fieldSelector=spec.nodeName%3Dfra1-r01-cmp1":
            return 200, {"items": self.pods}
        if path.endswith("/eviction"):
            name = body["metadata"]["name"]
            assert body["apiVersion"] == "policy/v1" and body["kind"] == "Eviction"
            if name in self.refused_once:
                self.refused_once.discard(name)
                return 429, {"message": "Cannot evict pod as it would violate the pod's disruption budget."}
            self.pods = [p for p in self.pods if p["metadata"]["name"] != name]
            return 201, {}
        return 404, {"message": "not found"}


def test_kubernetes_drain_cordons_evicts_through_budgets_and_keeps_daemonsets() -> None:
    api = KubernetesApi()
    nodes = KubernetesNodes(api, timeout_s=10, poll_s=0)
    nodes.drain(HOST)
    assert api.unschedulable and nodes.drained(HOST)
    assert [p["metadata"]["name"] for p in api.pods] == ["node-exporter"]
    assert api.calls[0] == ("PATCH", "/api/v1/nodes/fra1-r01-cmp1")  # cordoned before any eviction
    evictions = [p for m, p in api.calls if p.endswith("/eviction")]
    assert evictions.count("/api/v1/namespaces/web/pods/web-2/eviction") == 2  # asked again after the 429
    nodes.undrain(HOST)
    assert not nodes.drained(HOST)


def test_kubernetes_drain_gives_up_naming_the_pods_left() -> None:
    api = KubernetesApi()
    api.refused_once = {"web-1", "web-2"}
    nodes = KubernetesNodes(api, timeout_s=0, poll_s=0)
    with pytest.raises(DrainFailed, match="pods still on the node after 0 s: web/web-1, web/web-2"):
        nodes.drain(HOST)


class MesosMaster:
    def __init__(self) -> None:
        other = {"hostname": "ams1-r01-cmp1", "ip": "198.18.0.20"}
        self.windows: list[dict[str, Any]] = [
            {"machine_ids": [other], "unavailability": {"start": {"nanoseconds": 1}}}
        ]
        self.down: list[dict[str, str]] = []

    def __call__(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        if (method, path) == ("GET", "/maintenance/schedule"):
            return 200, {"windows": self.windows}
        if (method, path) == ("POST", "/maintenance/schedule"):
            self.windows = body["windows"]
            return 200, None
        if (method, path) == ("GET", "/maintenance/status"):
            return 200, {"down_machines": self.down, "draining_machines": []}
        if (method, path) == ("POST", "/machine/down"):
            scheduled = [m for w in self.windows for m in w["machine_ids"]]
            if any(m not in scheduled for m in body):
                return 400, None  # the master refuses to down a machine with no maintenance window
            self.down += body
            return 200, None
        if (method, path) == ("POST", "/machine/up"):
            self.down = [m for m in self.down if m not in body]
            return 200, None
        return 404, None


def test_mesos_drain_schedules_then_downs_and_undrain_reverses_without_touching_other_windows() -> None:
    master = MesosMaster()
    mesos = MesosMaintenance(master)
    mesos.drain(HOST)
    me = {"hostname": "fra1-r01-cmp1", "ip": "198.18.0.7"}
    assert mesos.drained(HOST) and master.down == [me]
    assert len(master.windows) == 2  # the other machine's window kept
    mesos.drain(HOST)  # again: nothing doubled
    assert len(master.windows) == 2 and master.down == [me]
    mesos.undrain(HOST)
    assert not mesos.drained(HOST)
    assert [w["machine_ids"] for w in master.windows] == [
        [{"hostname": "ams1-r01-cmp1", "ip": "198.18.0.20"}]
    ]
