"""Fabric maintenance and the consistency sweep end to end in the lab: real NetBox, FRR switches over
SSH, LLDP, Ansible on hosts. The tests run in file order on fra1, brought up once at the start."""

from __future__ import annotations

import json
import time
from ipaddress import IPv4Network

import pynetbox
import pytest

from atlas.core.model import Site
from atlas.core.run import Result
from atlas.lab.lab import Lab
from atlas.net.platforms.frr import route_table
from atlas.net.sessions import ssh_exec
from atlas.runbooks.fabric import CostOutRefused, SelectionError
from atlas.secrets import Vault
from flows.config_sweep import SweepIncomplete, config_sweep
from flows.fabric import fabric_apply, fabric_cost_in, fabric_cost_out
from flows.rack_bringup import rack_bringup
from tests.e2e.runs import kill_when

pytestmark = pytest.mark.usefixtures("flow_env")
SPINE1, SPINE2 = "fra1-spine1", "fra1-spine2"


@pytest.fixture(scope="module", autouse=True)
def fra1_up(lab: Lab) -> None:
    lab.reset()
    for rack in ("fra1-r01", "fra1-r02"):
        assert rack_bringup(site="fra1", rack=rack, dry_run=False).failed == 0


def fra1(sites: list[Site]) -> Site:
    return next(s for s in sites if s.name == "fra1")


def journal(nb: pynetbox.api, device: str) -> list[str]:
    record = nb.dcim.devices.get(name=device)
    return [
        e.comments
        for e in nb.extras.journal_entries.filter(
            assigned_object_type="dcim.device", assigned_object_id=record.id
        )
    ]


def compliance(nb: pynetbox.api, device: str) -> str | None:
    value = nb.dcim.devices.get(name=device).custom_fields["config_compliance"]
    return None if value is None else str(value)


def rows_by(results: list[Result], device: str) -> dict[str, Result]:
    return {r.step: r for r in results if r.target == device}


def test_fabric_apply_shows_the_drift_then_pushes_only_it(lab: Lab) -> None:
    lab.fabric.vtysh(SPINE1, "configure terminal", "interface swp1", "description by hand")
    before = lab.fabric.vtysh(SPINE1, "show running-config")
    [preview] = fabric_apply(site="fra1", switches=[SPINE1], dry_run=True)
    assert preview.changed and "interface swp1: description to fra1-r01-leaf1:swp1" in preview.diff
    assert lab.fabric.vtysh(SPINE1, "show running-config") == before
    [applied] = fabric_apply(site="fra1", switches=[SPINE1], dry_run=False)
    assert applied.changed and not applied.failed and applied.diff == preview.diff
    assert "by hand" not in lab.fabric.vtysh(SPINE1, "show running-config")
    again = fabric_apply(site="fra1", dry_run=False)  # the whole site: every active switch
    assert len(again) == 6 and not any(r.changed or r.failed for r in again)


def test_fabric_apply_names_every_bad_choice_and_touches_nothing(lab: Lab) -> None:
    before = lab.fabric.vtysh(SPINE1, "show running-config")
    with pytest.raises(SelectionError) as info:
        fabric_apply(site="fra1", rack="fra1-r77", switches=["fra1-r01-cmp1", "nope"], dry_run=False)
    assert len(info.value.problems) == 3
    assert lab.fabric.vtysh(SPINE1, "show running-config") == before


def test_the_sweep_names_each_kind_of_drift(
    lab: Lab, nb: pynetbox.api, sites: list[Site], vault: Vault
) -> None:
    site = fra1(sites)
    lab.fabric.vtysh("fra1-r01-leaf1", "configure terminal", "interface swp3", "description by hand")
    host = site.device("fra1-r01-cmp2")
    assert host is not None
    ssh_exec(host, vault.credential("fra1", "compute"), "echo '{}' > /etc/atlas/facts.json")
    uplinks = sorted((c for c in site.cables_of("fra1-r02-leaf1") if "spine" in str(c)), key=str)
    crossed = lab.fabric.swap_cables(uplinks[0], uplinks[1])
    try:
        time.sleep(6)  # one LLDP advertisement interval
        results = config_sweep(sites=["fra1"])
    finally:
        lab.fabric.swap_cables(*crossed)
    switch = rows_by(results, "fra1-r01-leaf1")["switches"]
    assert switch.changed and any("description" in line for line in switch.diff)
    files = rows_by(results, "fra1-r01-cmp2")["hosts"]
    assert files.changed and any("facts.json" in line for line in files.diff)
    cabling = rows_by(results, "fra1-r02-leaf1")["cabling"]
    text = " ".join(cabling.diff)
    assert cabling.changed and "fra1-r02-leaf1:swp1" in text and "fra1-r02-leaf1:swp2" in text
    clean = rows_by(results, "fra1-r01-cmp1")
    assert not any(r.changed or r.failed for r in clean.values())
    for device in ("fra1-r01-leaf1", "fra1-r01-cmp2", "fra1-r02-leaf1"):
        assert compliance(nb, device) == "drift"
        assert any(e.startswith("config-sweep: never checked → drift") for e in journal(nb, device))
    assert compliance(nb, "fra1-r01-cmp1") == "compliant"
    assert not any("config-sweep" in e for e in journal(nb, "fra1-r01-cmp1"))


def test_remediation_fixes_switches_and_hosts_and_the_next_sweep_is_clean_and_quiet(
    nb: pynetbox.api, lab: Lab
) -> None:
    time.sleep(6)  # the cables are back: LLDP sees them again
    remediated = config_sweep(sites=["fra1"], remediate_areas=["switches", "hosts"])
    assert not any(r.changed or r.failed for r in remediated), [
        r for r in remediated if r.changed or r.failed
    ]
    assert "by hand" not in lab.fabric.vtysh("fra1-r01-leaf1", "show running-config")
    assert any("remediated" in e for e in journal(nb, "fra1-r01-leaf1"))
    entries = {d: len(journal(nb, d)) for d in ("fra1-r01-leaf1", "fra1-r01-cmp2", "fra1-spine1")}
    clean = config_sweep(sites=["fra1"])
    assert not any(r.changed or r.failed for r in clean)
    assert {d: len(journal(nb, d)) for d in entries} == entries  # no journal entry for no news
    assert compliance(nb, "fra1-r01-cmp2") == "compliant"


def test_a_device_down_is_reported_the_others_swept_and_the_run_fails(nb: pynetbox.api, lab: Lab) -> None:
    checked_before = nb.dcim.devices.get(name="fra1-r01-cmp1").custom_fields["config_checked_at"]
    assert lab.fabric.stop_sshd("fra1-r02-leaf2")
    try:
        with pytest.raises(SweepIncomplete, match="fra1-r02-leaf2"):
            config_sweep(sites=["fra1"], areas=["switches", "cabling"])
    finally:
        lab.fabric.start_sshd("fra1-r02-leaf2")
    assert compliance(nb, "fra1-r02-leaf2") == "not checked"
    assert nb.dcim.devices.get(name="fra1-r01-cmp1").custom_fields["config_checked_at"] != checked_before
    assert compliance(nb, "fra1-r01-leaf1") == "compliant"


def routes_of(lab: Lab, switch: str) -> dict[IPv4Network, frozenset[str]]:
    return route_table(json.loads(lab.fabric.vtysh(switch, "show ip route json")))


def test_spine_cost_out_moves_traffic_and_cost_in_restores_ecmp(
    lab: Lab, nb: pynetbox.api, sites: list[Site], vault: Vault
) -> None:
    site = fra1(sites)
    far_leaf = site.device("fra1-r02-leaf1")
    target = site.device("fra1-r02-cmp1")
    source = site.device("fra1-r01-cmp1")
    assert (
        far_leaf is not None and far_leaf.loopback is not None and target is not None and source is not None
    )
    assert target.loopback is not None
    assert routes_of(lab, "fra1-r01-leaf1")[far_leaf.loopback.network] == {"swp1", "swp2"}  # ECMP

    result = fabric_cost_out(switch=SPINE1, reason="optics swap", dry_run=False)
    assert result.changed and "traffic verified" in result.detail
    assert routes_of(lab, "fra1-r01-leaf1")[far_leaf.loopback.network] == {"swp2"}  # spine2 only
    ping = f"ping -c 3 -i 0.2 -W 2 {target.loopback.ip}"
    ssh_exec(source, vault.credential("fra1", "compute"), ping)  # still reaches the other rack
    assert nb.dcim.devices.get(name=SPINE1).custom_fields["ospf_cost_out"] is True
    assert fabric_cost_out(switch=SPINE1, reason="optics swap", dry_run=False).changed is False

    before = lab.fabric.vtysh(SPINE2, "show running-config")
    with pytest.raises(CostOutRefused, match="no working path to any spine"):
        fabric_cost_out(switch=SPINE2, reason="second spine", dry_run=False)
    assert lab.fabric.vtysh(SPINE2, "show running-config") == before

    sweep = config_sweep(sites=["fra1"], areas=["switches"])  # the cost-out is intent, not drift
    assert not any(r.changed or r.failed for r in sweep)

    back = fabric_cost_in(switch=SPINE1, reason="optics swapped", dry_run=False)
    assert back.changed and "traffic verified" in back.detail
    assert routes_of(lab, "fra1-r01-leaf1")[far_leaf.loopback.network] == {"swp1", "swp2"}
    entries = journal(nb, SPINE1)
    assert any(e.startswith("fabric-cost-out") and "optics swap" in e for e in entries)
    assert any(e.startswith("fabric-cost-in") and "optics swapped" in e for e in entries)


def test_a_cost_out_killed_after_netbox_recorded_it_is_finished_by_the_next(
    lab: Lab, nb: pynetbox.api, sites: list[Site]
) -> None:
    far_leaf = fra1(sites).device("fra1-r02-leaf1")
    assert far_leaf is not None and far_leaf.loopback is not None
    kill_when(
        "from flows.fabric import fabric_cost_out; "
        f"fabric_cost_out(switch={SPINE1!r}, reason='drill: killed', dry_run=False)",
        lambda: nb.dcim.devices.get(name=SPINE1).custom_fields["ospf_cost_out"] is True,
    )
    # killed with NetBox recording the cost-out, the push done or not: the next run finds out which
    result = fabric_cost_out(switch=SPINE1, reason="drill: killed", dry_run=False)
    assert "traffic verified" in result.detail
    assert routes_of(lab, "fra1-r01-leaf1")[far_leaf.loopback.network] == {"swp2"}
    assert "traffic verified" in fabric_cost_in(switch=SPINE1, reason="drill over", dry_run=False).detail
    assert routes_of(lab, "fra1-r01-leaf1")[far_leaf.loopback.network] == {"swp1", "swp2"}
