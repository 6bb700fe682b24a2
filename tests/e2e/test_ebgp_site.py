"""Two routing designs side by side: ams1 moved from OSPF to eBGP (RFC 7938, unnumbered on FRR) as
docs/fabric.md's maintenance procedure says (ASNs in NetBox, then fabric-apply of the site and its
border on the core, then a rack-bringup re-run for the servers), while fra1 stays on OSPF and the core
joins the two by eBGP. Real NetBox, FRR over SSH, systemd servers, the client behind the core. In
file order, from a reset lab; the last test moves ams1 back to OSPF."""

from __future__ import annotations

import json
from ipaddress import IPv4Network

import pynetbox
import pytest

from atlas.core.model import Device
from atlas.lab.lab import Lab
from atlas.net.platforms.frr import route_table
from atlas.runbooks.bringup import PreflightError
from atlas.runbooks.fabric import CostOutRefused, SelectionError
from atlas.runbooks.traffic import Answers, probe
from atlas.secrets import Vault
from atlas.sot.read import read_site, site_names
from flows.evacuate import evacuate, restore
from flows.fabric import fabric_apply, fabric_cost_in, fabric_cost_out
from flows.image_rollout import image_rollout
from flows.rack_bringup import rack_bringup
from tests.e2e.bgp import plan_ebgp, set_asns
from tests.e2e.runs import asked_throughout, run_answering
from tests.e2e.setups import serving

pytestmark = pytest.mark.usefixtures("flow_env")
FIRST = 65300  # ams1's ASN range starts here (its spines' ASN)
CORE_ASN = 65001
FRA1_ASN = 65000  # fra1's spines, at its border: fra1 itself stays on OSPF
SWITCHES = ["ams1-spine1", "ams1-spine2", "ams1-r01-leaf1", "ams1-r01-leaf2", "core1", "fra1-spine1"]
SERVERS = ["ams1-r01-cmp1", "ams1-r01-cmp2", "ams1-r01-sto1"]
APPROVE = {"approve": True, "approver": "on-call", "comment": "go"}
WHY = {"reason": "leaf firmware on ams1-r01", "ticket": "CHG-5150"}


@pytest.fixture(scope="module", autouse=True)
def both_sites_serving(
    lab: Lab, vault: Vault, nb: pynetbox.api, tmp_path_factory: pytest.TempPathFactory
) -> None:
    lab.reset()  # every serving server has the service's image: the client's requests may reach any
    serving(vault, nb, tmp_path_factory.mktemp("img"))


def devices(nb: pynetbox.api) -> dict[str, Device]:
    return {d.name: d for name in site_names(nb) for d in read_site(nb, name).devices}


def configs(lab: Lab) -> dict[str, str]:
    return {name: lab.fabric.vtysh(name, "show running-config") for name in SWITCHES}


def who_answers(nb: pynetbox.api, vault: Vault, count: int = 30) -> Answers:
    found = devices(nb)
    service = found["ams1-r01-cmp1"].anycast[0].ip
    return probe(found["client1"], vault.credential("core", "client"), service, count=count)


def test_bad_bgp_data_is_refused_by_fabric_apply_and_bringup_each_named_nothing_touched(
    nb: pynetbox.api, lab: Lab
) -> None:
    before = configs(lab)
    plan = plan_ebgp(nb, "ams1", FIRST, size=200)
    shared = plan["ams1-r01-leaf1"]
    set_asns(nb, {"ams1-r01-leaf2": None, "ams1-r02-leaf1": shared, "ams1-spine2": 64000})
    wanted = {
        "ams1-r01-leaf2: no ASN in NetBox (its custom field bgp_asn)",
        f"ams1-r01-leaf1: ASN {shared} is shared by leaves of racks ams1-r01, ams1-r02: a rack's leaves "
        "may share one, leaves of different racks never do",
        f"ams1-spine2: ASN 64000 is outside the site's ASN range ams1 ASNs ({FIRST}-{FIRST + 199})",
        "core1 (site core): no ASN in NetBox (its custom field bgp_asn): ams1-spine1:swp32 peers with it by eBGP",
    }
    with pytest.raises(SelectionError) as refused:
        fabric_apply(site="ams1", dry_run=False)
    assert wanted <= set(refused.value.problems), refused.value.problems
    with pytest.raises(PreflightError) as preflight:
        rack_bringup(site="ams1", rack="ams1-r01", dry_run=False)
    leaves = {p for p in wanted if p.startswith("ams1-r01-leaf")}
    assert leaves <= set(preflight.value.problems), preflight.value.problems
    assert configs(lab) == before


def test_moving_ams1_to_ebgp_is_a_fabric_apply_shown_whole_by_its_dry_run(
    nb: pynetbox.api, lab: Lab, vault: Vault
) -> None:
    plan = plan_ebgp(nb, "ams1", FIRST, size=200)  # the data put right
    # the core and fra1's spines meet ams1 by eBGP: the client's requests spread over both sites
    set_asns(nb, {"core1": CORE_ASN, "fra1-spine1": FRA1_ASN, "fra1-spine2": FRA1_ASN})
    before = configs(lab)
    preview = fabric_apply(site="ams1", dry_run=True)
    assert {r.target for r in preview} == set(SWITCHES[:4]) and all(r.changed for r in preview)
    [fra1_border] = fabric_apply(site="fra1", switches=["fra1-spine1"], dry_run=True)
    assert f"router bgp {FRA1_ASN}" in "\n".join(fra1_border.diff)
    spine = next(r for r in preview if r.target == "ams1-spine1")
    assert f"router bgp {FIRST}" in "\n".join(spine.diff) and "router ospf" in "\n".join(spine.diff)
    [core] = fabric_apply(site="core", dry_run=True)
    assert core.changed and f"router bgp {CORE_ASN}" in "\n".join(core.diff)
    assert configs(lab) == before

    assert not any(r.failed for r in fabric_apply(site="ams1", dry_run=False))
    border = fabric_apply(site="fra1", switches=["fra1-spine1", "fra1-spine2"], dry_run=False)
    assert all(r.changed and not r.failed for r in border), border
    assert not any(r.failed for r in fabric_apply(site="core", dry_run=False))
    report = rack_bringup(site="ams1", rack="ams1-r01", dry_run=False)  # the servers follow
    assert report.failed == 0, report.rows

    for leaf in ("ams1-r01-leaf1", "ams1-r01-leaf2"):
        running = lab.fabric.vtysh(leaf, "show running-config")
        assert "router ospf" not in running and f"router bgp {plan[leaf]}" in running
        summary = lab.fabric.vtysh(leaf, "show bgp summary json")
        assert '"state":"Established"' in summary.replace(" ", "")
        # every loopback of the site over both spines (ECMP)
        routes = route_table(json.loads(lab.fabric.vtysh(leaf, "show ip route json")))
        spines = [d for d in read_site(nb, "ams1").devices if d.role.value == "spine"]
        for spine_device in spines:
            assert spine_device.loopback is not None
            assert routes[spine_device.loopback.network]
        other = "ams1-r01-leaf2" if leaf.endswith("1") else "ams1-r01-leaf1"
        other_loopback = devices(nb)[other].loopback
        assert other_loopback is not None and routes[other_loopback.network] == {"swp1", "swp2"}
    answers = who_answers(nb, vault)
    # both sites answer: the eBGP site's and the OSPF site's servers
    assert not answers.errors and set(answers.by_host) & set(SERVERS), answers
    assert {h for h in answers.by_host if h.startswith("fra1-")}, answers
    again = rack_bringup(site="ams1", rack="ams1-r01", dry_run=False)
    assert again.failed == 0 and all(row["changes"] == "0" for row in again.rows), again.rows
    assert not any(r.changed for r in fabric_apply(site="core", dry_run=True))
    assert not any(r.changed for r in fabric_apply(site="fra1", dry_run=True))


def test_bringup_of_a_planned_rack_on_the_ebgp_site_peers_with_both_spines_and_reruns_to_nothing(
    nb: pynetbox.api, lab: Lab
) -> None:
    before = lab.fabric.vtysh("ams1-r02-leaf1", "show running-config")
    preview = rack_bringup(site="ams1", rack="ams1-r02", dry_run=True)
    assert preview.failed == 0 and lab.fabric.vtysh("ams1-r02-leaf1", "show running-config") == before
    report = rack_bringup(site="ams1", rack="ams1-r02", dry_run=False)
    assert report.failed == 0, report.rows
    assert nb.dcim.racks.get(name="ams1-r02").status.value == "active"
    found = devices(nb)
    for leaf in ("ams1-r02-leaf1", "ams1-r02-leaf2"):
        assert f"router bgp {found[leaf].asn}" in lab.fabric.vtysh(leaf, "show running-config")
        routes = routes_of(lab, leaf)
        for far in ("ams1-r01-leaf1", "ams1-r01-leaf2", "ams1-r01-cmp1"):
            loopback = found[far].loopback
            assert loopback is not None and routes[loopback.network] == {"swp1", "swp2"}, far
    again = rack_bringup(site="ams1", rack="ams1-r02", dry_run=False)
    assert again.failed == 0 and all(row["changes"] == "0" for row in again.rows), again.rows
    # the rack's servers get the service's image, as serving racks have: the client's requests may
    # reach them from now on
    image_rollout(
        version="v1", site="ams1", rack="ams1-r02", wave_size=3, dry_run=False
    )  # raises on a failure


def routes_of(lab: Lab, switch: str) -> dict[IPv4Network, frozenset[str]]:
    return route_table(json.loads(lab.fabric.vtysh(switch, "show ip route json")))


def test_costing_out_a_spine_of_the_ebgp_site_moves_its_traffic_and_the_last_one_is_refused(
    nb: pynetbox.api, lab: Lab, vault: Vault
) -> None:
    far = devices(nb)["ams1-r01-leaf2"].loopback
    assert far is not None
    assert routes_of(lab, "ams1-r01-leaf1")[far.network] == {"swp1", "swp2"}  # ECMP over both spines
    out = fabric_cost_out(switch="ams1-spine1", reason="optics swap", dry_run=False)
    assert out.changed and "traffic verified" in out.detail, out
    running = lab.fabric.vtysh("ams1-spine1", "show running-config")
    assert " set as-path prepend" in running and " set community graceful-shutdown additive" in running
    assert fabric_cost_out(switch="ams1-spine1", reason="optics swap", dry_run=False).changed is False
    assert routes_of(lab, "ams1-r01-leaf1")[far.network] == {"swp2"}  # spine2 only
    assert nb.dcim.devices.get(name="ams1-spine1").custom_fields["bgp_cost_out"] is True
    answers = who_answers(nb, vault, count=10)
    assert not answers.errors, answers
    before = lab.fabric.vtysh("ams1-spine2", "show running-config")
    with pytest.raises(CostOutRefused, match="no working path to any spine"):
        fabric_cost_out(switch="ams1-spine2", reason="second spine", dry_run=False)
    assert lab.fabric.vtysh("ams1-spine2", "show running-config") == before
    back = fabric_cost_in(switch="ams1-spine1", reason="optics swapped", dry_run=False)
    assert back.changed and "traffic verified" in back.detail, back
    assert routes_of(lab, "ams1-r01-leaf1")[far.network] == {"swp1", "swp2"}


def test_evacuating_a_rack_of_the_ebgp_site_fails_no_request_and_restore_brings_it_back(
    nb: pynetbox.api, vault: Vault
) -> None:
    with asked_throughout(lambda: who_answers(nb, vault, count=10)) as during:
        outcome = run_answering(lambda: evacuate(site="ams1", rack="ams1-r01", dry_run=False, **WHY), APPROVE)
        assert outcome.error is None, outcome.error
        away = who_answers(nb, vault)
        assert not away.errors and not set(away.by_host) & set(SERVERS)  # the other racks answer
        costed = nb.dcim.devices.get(name="ams1-r01-leaf1").custom_fields
        assert costed["bgp_cost_out"] is True and not costed["ospf_cost_out"]
        restore(site="ams1", rack="ams1-r01", dry_run=False, **WHY)
    total = sum(during, Answers())
    assert not total.errors and sum(total.by_host.values()) >= 20
    back = who_answers(nb, vault)
    assert not back.errors and set(back.by_host) & set(SERVERS)


def test_moving_ams1_back_to_ospf_is_the_same_procedure_and_leaves_the_lab_as_it_was(
    nb: pynetbox.api, lab: Lab, vault: Vault
) -> None:
    plan = plan_ebgp(nb, "ams1", FIRST, size=200, design="ospf")
    set_asns(nb, dict.fromkeys([*plan, "core1", "fra1-spine1", "fra1-spine2"]))
    assert not any(r.failed for r in fabric_apply(site="ams1", dry_run=False))
    assert not any(
        r.failed for r in fabric_apply(site="fra1", switches=["fra1-spine1", "fra1-spine2"], dry_run=False)
    )
    assert not any(r.failed for r in fabric_apply(site="core", dry_run=False))
    for rack in ("ams1-r01", "ams1-r02"):
        assert rack_bringup(site="ams1", rack=rack, dry_run=False).failed == 0
    for name in SWITCHES:
        assert "router bgp" not in lab.fabric.vtysh(name, "show running-config")
    assert "Full" in lab.fabric.vtysh("core1", "show ip ospf neighbor")
    answers = who_answers(nb, vault)
    assert not answers.errors and set(answers.by_host) & set(SERVERS), answers
