"""The Kubernetes and Mesos adapters' logic against transports that answer as those APIs document.
These check which calls are made, in which order and with which bodies; no Kubernetes or Mesos runs
here, so they do not claim the adapters work against a live scheduler. The systemd-services adapter's
commands against a host that answers as systemd and iproute2 do (no host runs here either). And the
registry: which adapter the settings choose, built from plain settings; a name Atlas does not know
refused with the value."""

from __future__ import annotations

import json
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from atlas.core.errors import Refused
from atlas.core.model import Credential, Device, DeviceStatus, Role
from atlas.core.settings import AtlasSettings, load_settings
from atlas.net.intent import SERVICE_DRAINED_DROPIN
from atlas.prefect.sources import sources
from atlas.secrets import Endpoint, SecretError
from atlas.workloads import (
    WORKLOADS,
    DrainFailed,
    Sources,
    systemd_services,
    workloads_from,
    workloads_problem,
)
from atlas.workloads.kubernetes import KubernetesNodes
from atlas.workloads.mesos import MesosMaintenance
from atlas.workloads.systemd_services import (
    ANNOUNCE,
    DRAINED,
    DRAINED_DROPIN_CONTENT,
    IMAGE_TARGET,
    INTERFACE_STATE,
    JOURNAL_OF_STOPPED,
    REMOVE_MARK,
    SET_MARK,
    START,
    STOP,
    UNITS_STATE,
    UNWITHDRAW,
    WITHDRAW,
    SystemdServices,
    image_unit,
    interface_up,
)

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


# --- the registry: the adapter the settings choose ------------------------------------------------
NOWHERE = "http://127.0.0.1:1"  # a Vault that never answers: an adapter that reads it fails loudly


def cred_of(device: Device) -> Credential:
    return Credential(username="root", ssh_private_key="key")


@pytest.fixture
def no_ambient_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing from this machine's environment or /etc/atlas: only what a test sets."""
    for prefix in ("", "ATLAS_"):
        for what in ("", "_URL", "_TOKEN", "_CA_FILE"):
            monkeypatch.delenv(f"{prefix}WORKLOADS{what}", raising=False)
    for name in ("VAULT_ADDR", "VAULT_TOKEN", "NETBOX_URL", "NETBOX_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "atlas.toml"
    monkeypatch.setenv("ATLAS_SETTINGS", str(path))
    return path


def settings(**values: Any) -> AtlasSettings:
    return AtlasSettings(vault_addr=NOWHERE, vault_token="t", **values)


@pytest.mark.usefixtures("no_ambient_settings")
def test_by_default_systemd_services_on_hosts_are_drained() -> None:
    assert settings().workloads == "systemd-services"
    assert isinstance(workloads_from(settings(), cred_of), SystemdServices)


@pytest.mark.usefixtures("no_ambient_settings")
@pytest.mark.parametrize(
    ("name", "adapter"),
    [("systemd-services", SystemdServices), ("kubernetes", KubernetesNodes), ("mesos", MesosMaintenance)],
)
def test_each_known_name_builds_its_adapter_from_plain_settings(name: str, adapter: type) -> None:
    chosen = settings(
        workloads=name, workloads_url="https://scheduler.example.net:6443", workloads_token="tk"
    )
    assert isinstance(workloads_from(chosen, cred_of), adapter)  # Vault (NOWHERE) never asked


def test_every_registered_name_is_one_of_those() -> None:
    assert WORKLOADS.names == ["kubernetes", "mesos", "systemd-services"]


@pytest.mark.usefixtures("no_ambient_settings")
def test_the_schedulers_api_comes_from_the_settings_or_else_from_vault() -> None:
    named = settings(
        workloads="kubernetes",
        workloads_url="https://k8s.example.net:6443/",
        workloads_token="tk",
        workloads_ca_file="/etc/atlas/k8s-ca.pem",
    )
    api = Sources(named, cred_of).endpoint("kubernetes")
    assert api == Endpoint("https://k8s.example.net:6443/", "tk", "/etc/atlas/k8s-ca.pem")
    assert "tk" not in repr(api)
    with pytest.raises(SecretError, match=f"Vault at {NOWHERE} did not answer"):
        workloads_from(settings(workloads="mesos"), cred_of)


def test_an_unknown_adapter_in_the_environment_is_refused_when_a_flow_reads_its_sources(
    no_ambient_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_ADDR", NOWHERE)
    monkeypatch.setenv("VAULT_TOKEN", "t")
    monkeypatch.setenv("ATLAS_WORKLOADS", "nomad")
    problem = workloads_problem(load_settings())
    assert problem is not None
    assert "workload adapter 'nomad' (the setting ATLAS_WORKLOADS / workloads in atlas.toml)" in problem
    assert "is not one Atlas knows (known: kubernetes, mesos, systemd-services)" in problem
    with pytest.raises(Refused, match="workload adapter 'nomad'"):
        sources()  # refused before Vault (NOWHERE) or NetBox is asked anything


def test_an_unknown_adapter_in_the_file_is_refused_too(no_ambient_settings: Path) -> None:
    no_ambient_settings.write_text(f'vault_addr = "{NOWHERE}"\nvault_token = "t"\nworkloads = "Kubernetes"\n')
    no_ambient_settings.chmod(0o600)
    assert "workload adapter 'Kubernetes'" in str(workloads_problem(load_settings()))
    no_ambient_settings.write_text(f'vault_addr = "{NOWHERE}"\nvault_token = "t"\nworkloads = "mesos"\n')
    assert load_settings().workloads == "mesos"
    assert workloads_problem(load_settings()) is None


@pytest.mark.usefixtures("no_ambient_settings")
def test_settings_made_without_validation_are_refused_when_the_adapter_is_built() -> None:
    unchecked = AtlasSettings.model_construct(vault_addr=NOWHERE, vault_token="t", workloads="nomad")
    with pytest.raises(Refused, match="settings: workload adapter 'nomad'"):
        workloads_from(unchecked, cred_of)


# --- systemd-services: the commands, against a host that answers as systemd and iproute2 do --------
APP = image_unit("atlas-app")
SERVER = HOST.model_copy(update={"anycast": (IPv4Interface("203.0.113.10/32"),)})


class SystemdHost:
    """One server: its image units' states, atlas-image.target, anycast0, the drop-in and the mark.
    Answers only the adapter's constant commands; any other command fails the test."""

    def __init__(self) -> None:
        self.units = {APP: "active", image_unit("atlas-worker"): "active"}
        self.target_enabled = True
        self.link_up = True
        self.dropin: str | None = None
        self.mark = False
        self.will_not_stop: set[str] = set()
        self.will_not_start: set[str] = set()
        self.commands: list[str] = []

    def __call__(self, device: Device, cred: Credential, command: str, timeout: float = 15.0) -> str:
        assert device.name not in command  # constant commands: nothing of the device reaches the shell
        self.commands.append(command)
        if command == WITHDRAW:
            self.dropin, self.link_up = DRAINED_DROPIN_CONTENT, False
        elif command == STOP:
            assert timeout >= 90  # systemd may take TimeoutStopSec to stop a unit
            self.target_enabled = False
            self.units = {u: "active" if u in self.will_not_stop else "inactive" for u in self.units}
        elif command == SET_MARK:
            self.mark = True
        elif command == REMOVE_MARK:
            self.mark = False
        elif command == START:
            self.target_enabled = True
            self.units = {u: "failed" if u in self.will_not_start else "active" for u in self.units}
        elif command == UNWITHDRAW:
            self.dropin = None
        elif command == ANNOUNCE:
            self.link_up = True
        elif command == DRAINED:
            return "yes\n" if self.mark else "no\n"
        elif command == UNITS_STATE:
            blocks = [
                f"Id={u}\nLoadState=loaded\nActiveState={s}\nSubState={'running' if s == 'active' else 'dead'}"
                for u, s in self.units.items()
            ]
            return "\n\n".join(
                [*blocks, "Id=atlas-image-gone.service\nLoadState=not-found\nActiveState=failed"]
            )
        elif command == INTERFACE_STATE:
            flags = ["BROADCAST", "NOARP", "UP", "LOWER_UP"] if self.link_up else ["BROADCAST", "NOARP"]
            return json.dumps([{"ifname": "anycast0", "flags": flags}])
        elif command == JOURNAL_OF_STOPPED:
            return "".join(
                f"== {u}\natlas-app: cannot start: bad release\n\n"
                for u, s in self.units.items()
                if s != "active"
            )
        else:
            raise AssertionError(f"unexpected command {command!r}")
        return ""


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> SystemdHost:
    host = SystemdHost()
    monkeypatch.setattr(systemd_services, "ssh_exec", host)
    return host


def adapter() -> SystemdServices:
    return SystemdServices(cred_of, settle_s=0, start_timeout_s=0, sleep=lambda s: None)


def test_systemd_drain_withdraws_then_stops_the_target_then_marks_and_undrain_reverses(
    server: SystemdHost,
) -> None:
    services = adapter()
    services.drain(SERVER)
    assert server.commands == [WITHDRAW, STOP, SET_MARK, UNITS_STATE, INTERFACE_STATE]
    assert server.dropin == DRAINED_DROPIN_CONTENT and not server.link_up and not server.target_enabled
    assert set(server.units.values()) == {"inactive"} and services.drained(SERVER)
    server.commands.clear()
    services.undrain(SERVER)
    assert server.commands == [REMOVE_MARK, START, UNITS_STATE, UNWITHDRAW, ANNOUNCE]  # serve, then announce
    assert server.dropin is None and server.link_up and server.target_enabled
    assert set(server.units.values()) == {"active"} and not services.drained(SERVER)


def test_a_host_without_anycast_addresses_keeps_its_interfaces(server: SystemdHost) -> None:
    adapter().drain(HOST)
    assert server.commands == [STOP, SET_MARK, UNITS_STATE]
    server.commands.clear()
    adapter().undrain(HOST)
    assert server.commands == [REMOVE_MARK, START, UNITS_STATE, UNWITHDRAW]  # a stale drop-in goes anyway


def test_a_drain_that_leaves_a_unit_running_fails_naming_it(server: SystemdHost) -> None:
    server.will_not_stop = {APP}
    with pytest.raises(
        DrainFailed, match=r"still up after the drain: atlas-image-atlas-app.service \(active/"
    ):
        adapter().drain(SERVER)


def test_an_undrain_whose_unit_does_not_start_fails_with_its_journal_and_announces_nothing(
    server: SystemdHost,
) -> None:
    services = adapter()
    services.drain(SERVER)
    server.will_not_start = {APP}
    with pytest.raises(DrainFailed) as failed:
        services.undrain(SERVER)
    assert "not running after the undrain: atlas-image-atlas-app.service (failed/dead)" in str(failed.value)
    assert "atlas-app: cannot start: bad release" in str(failed.value)
    assert UNWITHDRAW not in server.commands and not server.link_up and server.dropin is not None


def test_the_drain_commands_are_the_documented_ones() -> None:
    assert IMAGE_TARGET == "atlas-image.target" and APP == "atlas-image-atlas-app.service"
    assert (
        f"systemctl disable --now {IMAGE_TARGET}" in STOP
        and f"systemctl enable --now {IMAGE_TARGET}" in START
    )
    assert f"> {SERVICE_DRAINED_DROPIN}" in WITHDRAW and "networkctl reload" in WITHDRAW
    printf_format = WITHDRAW.split("printf '")[1].split("'")[0]
    assert printf_format.encode().decode("unicode_escape") == DRAINED_DROPIN_CONTENT
    assert "ip link set anycast0 down" in WITHDRAW and "ip link set anycast0 up" in ANNOUNCE
    assert 'journalctl -u "$u" -n 20 --no-pager -o cat' in JOURNAL_OF_STOPPED
    assert interface_up("[]") is False and interface_up("not json") is True
