"""evacuate / restore end to end: real traffic from the client behind the core to the anycast service
of both sites, real Ceph noout, real OSPF cost-out, the approval answered through Prefect's API as the
UI does. In file order; the set-up is idempotent, so after the image-rollout module it only checks."""

from __future__ import annotations

import pynetbox
import pytest
from prefect.flow_runs import resume_flow_run

from atlas.core.model import Device
from atlas.lab.lab import Lab
from atlas.net.intent import SERVICE_INTERFACE
from atlas.net.sessions import ssh_exec
from atlas.runbooks.evacuation import EvacuationRefused
from atlas.runbooks.traffic import Answers, probe
from atlas.secrets import Vault
from atlas.sot.read import read_site, site_names
from atlas.workloads.systemd_services import IMAGE_TARGET, SystemdServices
from flows.evacuate import NotApproved, evacuate, restore
from tests.e2e.runs import asked_throughout, kill_when, paused_runs, run_answering
from tests.e2e.setups import serving

pytestmark = pytest.mark.usefixtures("flow_env")
RACK = ["fra1-r01-cmp1", "fra1-r01-cmp2", "fra1-r01-sto1"]
APPROVE = {"approve": True, "approver": "on-call", "comment": "go"}
WHY = {"reason": "power work on the rack PDUs", "ticket": "CHG-4711"}


@pytest.fixture(scope="module", autouse=True)
def both_sites_serving(vault: Vault, nb: pynetbox.api, tmp_path_factory: pytest.TempPathFactory) -> None:
    serving(vault, nb, tmp_path_factory.mktemp("img"))


@pytest.fixture
def devices(nb: pynetbox.api) -> dict[str, Device]:
    return {d.name: d for name in site_names(nb) for d in read_site(nb, name).devices}


def who_answers(devices: dict[str, Device], vault: Vault, count: int = 40) -> Answers:
    client = devices["client1"]
    service = devices["fra1-r01-cmp1"].anycast[0].ip
    return probe(client, vault.credential("core", "client"), service, count=count)


def sites_of(answers: Answers, devices: dict[str, Device]) -> set[str]:
    return set(answers.by_site({n: d.site for n, d in devices.items()}))


def state(nb: pynetbox.api, lab: Lab, devices: dict[str, Device], vault: Vault) -> dict[str, object]:
    """Everything an evacuation of fra1-r01 would change."""
    services = SystemdServices(lambda d: vault.credential(d.site, d.role.value))
    records = {n: nb.dcim.devices.get(name=n) for n in [*RACK, "fra1-r01-leaf1", "fra1-r01-leaf2"]}
    return {
        "netbox": {
            n: (r.status.value, r.custom_fields.get("evacuation"), r.custom_fields.get("ospf_cost_out"))
            for n, r in records.items()
        },
        "drained": {n: services.drained(devices[n]) for n in RACK},
        "noout": lab.ceph.ceph.group_flags().get("fra1-r01", set()),
    }


def test_a_dry_run_shows_the_plan_and_changes_nothing(
    nb: pynetbox.api, lab: Lab, devices: dict[str, Device], vault: Vault
) -> None:
    before = state(nb, lab, devices, vault)
    report = evacuate(site="fra1", rack="fra1-r01", dry_run=True, **WHY)
    assert report.plan["servers"] == RACK and report.plan["switches"] == ["fra1-r01-leaf1", "fra1-r01-leaf2"]
    assert report.plan["ceph noout"] == ["fra1-r01"] and report.timeline == []
    assert state(nb, lab, devices, vault) == before


def test_a_denied_or_unanswered_approval_changes_nothing(
    nb: pynetbox.api, lab: Lab, devices: dict[str, Device], vault: Vault
) -> None:
    before = state(nb, lab, devices, vault)
    denied = run_answering(
        lambda: evacuate(site="fra1", rack="fra1-r01", dry_run=False, **WHY),
        {"approve": False, "approver": "duty-manager", "comment": "not during the sale"},
    )
    assert isinstance(denied.error, NotApproved) and "refused by duty-manager" in str(denied.error)
    unanswered = run_answering(
        lambda: evacuate(site="fra1", rack="fra1-r01", approval_timeout_s=10, dry_run=False, **WHY), None
    )
    assert isinstance(unanswered.error, NotApproved) and "no answer within 10 s" in str(unanswered.error)
    assert state(nb, lab, devices, vault) == before
    assert {"fra1"} <= sites_of(who_answers(devices, vault), devices)


def test_evacuating_a_rack_moves_its_traffic_without_a_failed_request(
    nb: pynetbox.api, lab: Lab, devices: dict[str, Device], vault: Vault
) -> None:
    with asked_throughout(lambda: who_answers(devices, vault, count=10)) as during:
        outcome = run_answering(lambda: evacuate(site="fra1", rack="fra1-r01", dry_run=False, **WHY), APPROVE)
    assert outcome.error is None, outcome.error
    assert outcome.pauses == 1 and outcome.result.approval == "approved by on-call: go"
    total = sum(during, Answers())
    assert not total.errors and sum(total.by_host.values()) >= 20  # every request answered, throughout
    after = who_answers(devices, vault)
    assert not after.errors and not set(after.by_host) & set(RACK)
    now = state(nb, lab, devices, vault)
    assert now["noout"] == {"noout"} and all(now["drained"].values())  # type: ignore[union-attr]
    assert now["netbox"]["fra1-r01-cmp1"] == ("offline", "CHG-4711", None)  # type: ignore[index]
    assert now["netbox"]["fra1-r01-leaf1"] == ("active", "CHG-4711", True)  # type: ignore[index]
    journal = nb.extras.journal_entries.filter(
        assigned_object_type="dcim.rack", assigned_object_id=nb.dcim.racks.get(name="fra1-r01").id
    )
    assert any("approved by on-call" in e.comments for e in journal)
    steps = [s.step for s in outcome.result.timeline]
    assert steps == [
        "NetBox: mark the scope",
        "Ceph noout on",
        "drain",
        "cost out",
        "verify the service",
        "NetBox: servers offline",
    ]


def test_evacuating_again_changes_nothing_and_asks_nobody(
    nb: pynetbox.api, lab: Lab, devices: dict[str, Device], vault: Vault
) -> None:
    before = state(nb, lab, devices, vault)
    report = evacuate(site="fra1", rack="fra1-r01", dry_run=False, **WHY)
    assert report.changed == [] and report.approval is None
    assert state(nb, lab, devices, vault) == before


def test_the_other_site_cannot_be_evacuated_meanwhile() -> None:
    with pytest.raises(EvacuationRefused, match="site fra1 is evacuated: restore it first"):
        evacuate(site="ams1", dry_run=True, **WHY)


def test_a_server_rebooted_while_evacuated_stays_out_of_service_until_restore(
    lab: Lab, devices: dict[str, Device], vault: Vault
) -> None:
    host = devices[RACK[0]]
    cred = vault.credential(host.site, host.role.value)
    lab.reboot(host.name)
    # nothing of its service came back by itself: units stopped, address withdrawn, no request
    assert ssh_exec(host, cred, f"systemctl is-enabled {IMAGE_TARGET} || true").strip() == "disabled"
    assert ssh_exec(host, cred, f"systemctl is-active {IMAGE_TARGET} || true").strip() == "inactive"
    assert "DOWN" in ssh_exec(host, cred, f"ip -br link show {SERVICE_INTERFACE}")
    after = who_answers(devices, vault)
    assert not after.errors and not set(after.by_host) & set(RACK)


def test_a_restore_dry_run_shows_the_plan_and_changes_nothing(
    nb: pynetbox.api, lab: Lab, devices: dict[str, Device], vault: Vault
) -> None:
    before = state(nb, lab, devices, vault)
    report = restore(site="fra1", rack="fra1-r01", dry_run=True, **WHY)
    assert report.plan["servers"] == RACK and report.plan["switches"] == ["fra1-r01-leaf1", "fra1-r01-leaf2"]
    assert report.plan["ceph noout"] == ["fra1-r01"] and report.timeline == []
    assert state(nb, lab, devices, vault) == before


def test_restore_brings_the_rack_back_and_a_second_restore_changes_nothing(
    nb: pynetbox.api, lab: Lab, devices: dict[str, Device], vault: Vault
) -> None:
    report = restore(site="fra1", rack="fra1-r01", dry_run=False, **WHY)
    assert [s.step for s in report.timeline] == [
        "NetBox: servers active",
        "cost in",
        "undrain",
        "verify the service",
        "Ceph noout off",
        "NetBox: marks cleared",
    ]
    now = state(nb, lab, devices, vault)
    assert now["noout"] == set() and not any(now["drained"].values())  # type: ignore[union-attr]
    assert now["netbox"]["fra1-r01-cmp1"] == ("active", None, None)  # type: ignore[index]
    assert now["netbox"]["fra1-r01-leaf1"] == ("active", None, False)  # type: ignore[index]
    assert {"fra1-r01-cmp1", "fra1-r01-cmp2"} <= set(who_answers(devices, vault).by_host)
    assert restore(site="fra1", rack="fra1-r01", dry_run=False, **WHY).changed == []


def test_an_evacuation_killed_half_way_is_finished_by_the_next_run_without_asking_again(
    nb: pynetbox.api, lab: Lab, devices: dict[str, Device], vault: Vault
) -> None:
    code = (
        "from flows.evacuate import evacuate; "
        f"evacuate(site='fra1', rack='fra1-r01', dry_run=False, reason={WHY['reason']!r}, ticket={WHY['ticket']!r})"
    )

    def approve() -> None:
        for run_id in paused_runs():
            resume_flow_run(run_id, run_input=APPROVE)

    # killed once approved, marked and under noout: drain and cost-out may have begun
    kill_when(code, lambda: "noout" in lab.ceph.ceph.group_flags().get("fra1-r01", set()), approve)
    assert nb.dcim.devices.get(name="fra1-r01-cmp1").custom_fields["evacuation"] == WHY["ticket"]
    report = evacuate(site="fra1", rack="fra1-r01", dry_run=False, **WHY)
    assert report.approval is None  # approved once, recorded in the marks
    assert "verify the service" in [s.step for s in report.timeline]
    after = who_answers(devices, vault)
    assert not after.errors and not set(after.by_host) & set(RACK)
    restore(site="fra1", rack="fra1-r01", dry_run=False, **WHY)
    assert {"fra1-r01-cmp1", "fra1-r01-cmp2"} <= set(who_answers(devices, vault).by_host)


def test_a_whole_site_is_evacuated_to_the_other_and_restored(
    nb: pynetbox.api, lab: Lab, devices: dict[str, Device], vault: Vault
) -> None:
    # fra1 may have more serving servers than ams1 (its second rack is up after the image tests)
    outcome = run_answering(lambda: evacuate(site="fra1", headroom=2.0, dry_run=False, **WHY), APPROVE)
    assert outcome.error is None, outcome.error
    assert "fra1-spine1" in outcome.result.plan["switches"]
    away = who_answers(devices, vault)
    assert not away.errors and sites_of(away, devices) == {"ams1"}
    assert "noout" in lab.ceph.ceph.group_flags().get("fra1", set())
    restore(site="fra1", dry_run=False, **WHY)
    back = who_answers(devices, vault)
    assert not back.errors and sites_of(back, devices) == {"fra1", "ams1"}
    assert lab.ceph.ceph.group_flags().get("fra1", set()) == set()
